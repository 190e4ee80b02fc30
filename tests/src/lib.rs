//! The end-to-end harness: moto's server per test (from the CLI's `local` module, the same
//! code the demo uses), and helpers shared by the end-to-end and CLI tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cordon::runner::{DecisionMode, RunReport, Runner};
use cordon_core::CordonError;

pub mod aws_model;
pub mod cfn;
pub mod faults;
pub mod runtime_api;
pub mod witness;

pub use cordon::local::{finding_for, finding_in_vpc, EntryView, World, REGION};

/// Runs one of the Chromium scripts in `tests/browser/` (`approval.mjs`, `sign_in.mjs`) with
/// `args`, and returns the JSON it prints.
pub fn browser_script(script: &str, args: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new("node")
        .arg(repo_root().join("tests/browser").join(script))
        .args(args)
        .current_dir(repo_root().join("tests"))
        .output()
        .expect("node runs (scripts/test installs the browser tools)");
    assert!(
        output.status.success(),
        "the browser script {script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The GuardDuty findings the tests rely on, kept in the repository (`tests/findings`), written
/// from AWS's documented finding format: one per case the trigger policy must tell apart.
pub fn findings_dir() -> PathBuf {
    repo_root().join("tests/findings")
}

/// A wider corpus of findings kept outside the repository (`CORDON_FINDINGS_DIR`), if any:
/// tests that can check any finding run over it too.
pub fn extra_findings_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("CORDON_FINDINGS_DIR")?);
    assert!(
        dir.is_dir(),
        "CORDON_FINDINGS_DIR={} is not a directory",
        dir.display()
    );
    Some(dir)
}

/// The `.json` files of `dir`, sorted.
pub fn json_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// A moto server of this test's own, stopped when dropped, behind a witness of every call
/// (`witness.rs`): its `endpoint` is the witness's, so that whatever the test points at it
/// (the runner, the workers' binaries, the `cordon` command) is seen.
pub struct Moto {
    moto: cordon::local::Moto,
    witness: witness::Witness,
}

impl Moto {
    /// The emulator of the repository's `.venv` (tests may run from any directory), or
    /// `MOTO_SERVER`. With `CORDON_WITNESS_DIR` set, the witness writes the test's calls there.
    pub fn start() -> Moto {
        let path = cordon::local::moto_server_path(&repo_root());
        let mut moto = cordon::local::Moto::start_at(&path).unwrap_or_else(|e| panic!("{e}"));
        let witness = witness::Witness::start(&moto.endpoint, witness_file());
        moto.endpoint = witness.endpoint.clone();
        Moto { moto, witness }
    }

    /// Every call made to this server so far, as the witness saw it.
    pub fn witness(&self) -> &witness::Witness {
        &self.witness
    }
}

/// A file of its own under `CORDON_WITNESS_DIR` for one witness: named after the test (the
/// thread the test harness runs it on is named so), the process and a count, so that no two
/// tests or servers share one.
fn witness_file() -> Option<PathBuf> {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = PathBuf::from(std::env::var_os("CORDON_WITNESS_DIR")?);
    std::fs::create_dir_all(&dir).unwrap();
    let test: String = std::thread::current()
        .name()
        .unwrap_or("test")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '.'
            }
        })
        .collect();
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(dir.join(format!("{test}-{}-{n}.jsonl", std::process::id())))
}

impl std::ops::Deref for Moto {
    type Target = cordon::local::Moto;
    fn deref(&self) -> &Self::Target {
        &self.moto
    }
}

/// An instance and what restore must give back to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub instance: String,
    pub vpc: String,
    pub eni: String,
    pub groups: Vec<String>,
    pub acl: String,
}

/// `count` instances, ten to a VPC (VPC octets from `first_vpc`), each alone in its subnet
/// with its own ACL (so that ACL quotas do not make containment partial), each on two groups.
pub async fn fleet(world: &World, count: usize, first_vpc: usize) -> Vec<Member> {
    let mut members = Vec::new();
    for vpc_index in 0..count.div_ceil(10) {
        let octet = first_vpc + vpc_index;
        let vpc = world.vpc(&format!("10.{octet}.0.0/16"), false).await;
        let web = world.security_group(&vpc, "web", 443).await;
        let ssh = world.security_group(&vpc, "ssh", 22).await;
        for slot in 0..(count - vpc_index * 10).min(10) {
            let subnet = world
                .subnet(&vpc, &format!("10.{octet}.{slot}.0/24"), None)
                .await;
            let acl = world
                .custom_acl(
                    &vpc,
                    &[&subnet],
                    &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
                )
                .await;
            let (instance, enis) = world
                .instance(&[(&subnet, &[web.as_str(), ssh.as_str()])], false)
                .await;
            members.push(Member {
                instance,
                vpc: vpc.clone(),
                eni: enis[0].clone(),
                groups: vec![web.clone(), ssh.clone()],
                acl,
            });
        }
    }
    members
}

/// Writes one row of RELIABILITY.md's table (`scripts/reliability` renders the rows it finds
/// in target/reliability/), for scenarios that live outside cli/tests/reliability.rs.
pub fn write_reliability_row(slug: &str, row: &serde_json::Value) {
    let dir = repo_root().join("target/reliability");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{slug}.json")),
        serde_json::to_vec_pretty(row).unwrap(),
    )
    .unwrap();
}

/// The parameters of every task the execution scheduled, in order (JSON, tokens resolved),
/// read from its history in one page.
pub async fn scheduled_tasks(moto: &Moto, execution_arn: &str) -> Vec<serde_json::Value> {
    let sfn = aws_sdk_sfn::Client::new(&moto.sdk_config());
    let history = sfn
        .get_execution_history()
        .execution_arn(execution_arn)
        .include_execution_data(true)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    assert!(history.next_token().is_none(), "one page holds the history");
    history
        .events()
        .iter()
        .filter_map(|e| e.task_scheduled_event_details())
        .map(|s| serde_json::from_str(s.parameters()).unwrap())
        .collect()
}

/// The token RequestApproval waits on (from its `TaskScheduled` event).
pub async fn approval_token(moto: &Moto, execution_arn: &str) -> String {
    scheduled_tasks(moto, execution_arn)
        .await
        .iter()
        .find_map(|p| p["Payload"]["task_token"].as_str().map(String::from))
        .expect("the execution waits for approval")
}

/// An execution waiting for a decision: its runner's work in the background (which does not
/// answer the approval request) and the links of its email.
pub struct AwaitingDecision {
    pub arn: String,
    pub follow: tokio::task::JoinHandle<Result<RunReport, CordonError>>,
    pub approve: String,
    pub reject: String,
}

/// Starts an execution for the EventBridge `event` and returns once its approval email is out
/// (within 90 seconds, or the test fails).
pub async fn until_decision(runner: &Arc<Runner>, event: &serde_json::Value) -> AwaitingDecision {
    let arn = runner.start_execution(event, 600).await.unwrap();
    let follow = tokio::spawn({
        let (runner, arn) = (runner.clone(), arn.clone());
        async move { runner.follow(&arn, DecisionMode::Wait).await }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // moto's /moto-api/data.json (where the email is read) can fail while EC2 objects
        // change under it (here: this execution's own containment), so a failed read is
        // read again.
        if let Ok(Some((approve, reject))) = runner.approval_links(&arn).await {
            return AwaitingDecision {
                arn,
                follow,
                approve,
                reject,
            };
        }
        assert!(
            !follow.is_finished() && Instant::now() < deadline,
            "the workflow never asked for approval"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
