//! Cordon's benchmark (issue 6), on moto on loopback, in one run, side by side with the seed's
//! Python/boto3 handler (`../shared/bench`):
//!
//! 1. time to containment of one finding, cold processes: `cordon isolate`, the release
//!    bootstraps behind a local Lambda Runtime API (capture-state, then isolate-sg and
//!    block-nacl at once, as the state machine runs them), and the seed's handler;
//! 2. the EC2 calls on the critical path to "egress blocked", in steady state (another
//!    containment under way in the VPC, so both of Cordon's groups exist) and on first use in
//!    a VPC (which a quiet VPC, its conversion group deleted after use, takes too), and the
//!    measured time against (those calls x a trivial call's latency);
//! 3. each bootstrap's cold start against Python + boto3 start-up;
//! 4. each worker's peak RSS handling one event, and each Lambda zip's size;
//! 5. a burst of findings through the local runner at once;
//! 6. the modelled AWS (`modelled.rs`): one finding and bursts of 100 and 1,000 on AWS's
//!    modelled latencies and EC2's token buckets.
//!
//! Run by `scripts/bench`, which builds what it needs first. Sizes: `BENCH_RUNS` (cold runs
//! of each contestant, 5) and `BENCH_BURST` (findings in the burst, 100). Writes BENCHMARKS.md
//! and BENCHMARKS-burst.svg at the repository root, and prints the tables.

mod figures;
mod modelled;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cordon::local::emulator_config;
use cordon::runner::{DecisionMode, Runner};
use cordon_core::config::Config;
use cordon_tests::faults::{FaultPlan, FaultProxy, ProxiedCall};
use cordon_tests::{finding_for, finding_in_vpc, repo_root, Moto, World, REGION};
use serde_json::{json, Value};

use cordon_tests::runtime_api::{self, RuntimeApi};
use figures::{critical_path, median, ms, percentile, since, spread};

const WORKERS: [&str; 6] = [
    "capture-state",
    "isolate-sg",
    "block-nacl",
    "restore",
    "notify",
    "approval",
];
const REMOTE: &str = "198.51.100.7";
const TARGET_COLD_START_MS: f64 = 30.0;
const TARGET_RSS_MB: f64 = 128.0;
const TARGET_ZIP_MB: f64 = 8.0;
/// The fewest EC2 round trips one after another that can contain a single-ENI instance whose
/// VPC already has Cordon's groups: describe it (its groups found at the same time), write
/// the record, swap to the conversion group, swap to the isolation group.
const MIN_SEQUENTIAL_CALLS: usize = 4;

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where `cargo bench` put the `cordon` binary; `scripts/bench` builds the workers beside it.
fn release_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_cordon"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn python() -> PathBuf {
    repo_root().join(".venv/bin/python")
}

/// The seed's Python baseline, kept outside the repository: `CORDON_SEED_DIR`, or
/// `../shared/bench` beside the clone. None when it is not there; the rest is measured.
fn seed_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CORDON_SEED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/bench"));
    dir.join("run_seed.py").is_file().then_some(dir)
}

fn event(finding: Value) -> Value {
    json!({"version": "0", "id": "bench", "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty", "account": "123456789012", "region": REGION,
        "resources": [], "detail": finding})
}

/// The environment of every process measured: the emulator (through `endpoint`), dummy
/// credentials, nothing read from this machine's AWS configuration.
fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", REGION.into()),
        ("AWS_DEFAULT_REGION", REGION.into()),
        ("AWS_ENDPOINT_URL", endpoint.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
    ]
}

fn command(program: &Path, endpoint: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(aws_env(endpoint))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// One instance alone in a new VPC: one ENI on two groups, in a subnet under the VPC's
/// default network ACL (rule 100 allows everything, as in every new VPC).
struct Target {
    instance: String,
    vpc: String,
}

async fn lone_instance(world: &World, octet: usize) -> Target {
    let vpc = world.vpc(&format!("10.{octet}.0.0/16"), false).await;
    let subnet = world
        .subnet(&vpc, &format!("10.{octet}.1.0/24"), None)
        .await;
    let web = world.security_group(&vpc, "web", 443).await;
    let ssh = world.security_group(&vpc, "ssh", 22).await;
    let (instance, _) = world
        .instance(&[(&subnet, &[web.as_str(), ssh.as_str()])], false)
        .await;
    Target { instance, vpc }
}

/// A second instance in `vpc`, in a subnet of its own: Cordon's groups already exist there.
async fn neighbour(world: &World, vpc: &str, octet: usize, slot: usize) -> Target {
    let subnet = world
        .subnet(vpc, &format!("10.{octet}.{slot}.0/24"), None)
        .await;
    let web = world.security_group(vpc, &format!("web-{slot}"), 443).await;
    let (instance, _) = world.instance(&[(&subnet, &[web.as_str()])], false).await;
    Target {
        instance,
        vpc: vpc.to_string(),
    }
}

/// Both of Cordon's groups in `vpc`, as while another containment is under way there: each
/// isolation deletes the conversion group after its swaps, so the first containment left
/// none, and a containment in a VPC where none is under way takes the first-use path.
async fn containment_under_way(moto: &Moto, vpc: &str) {
    cordon_core::isolate::ensure_groups(
        &moto.cordon_ec2(),
        &[vpc.to_string()],
        Default::default(),
        None,
    )
    .await
    .unwrap();
}

/// What one containment run measured, in milliseconds from the first process's start.
#[derive(Debug, Default, Clone)]
struct Containment {
    /// Every ENI on the isolation group (the seed: the instance on its one group).
    isolated_ms: Option<f64>,
    /// The deny entries in the network ACL.
    acl_ms: Option<f64>,
    /// The last process ended (or the last bootstrap answered).
    done_ms: f64,
    /// The first EC2 call started (the end of start-up).
    first_call_ms: Option<f64>,
    ec2_calls: usize,
    /// Sequential EC2 calls up to the isolating swap, and which.
    critical: Option<Vec<ProxiedCall>>,
    /// (action, milliseconds) of every call.
    latencies: Vec<(String, f64)>,
    ok: bool,
    error: Option<String>,
}

/// Reads the proxy's calls since `start`: when the ENI went onto `isolation_group`, when the
/// last deny entry was made, the critical path to the isolating swap.
fn containment_from_calls(
    start: Instant,
    calls: &[ProxiedCall],
    isolation_group: Option<&str>,
) -> Containment {
    // EC2's calls only: the other faulted services' (`service:Action`) are other measures'
    // branches, beside isolation and off its path.
    let calls: Vec<ProxiedCall> = calls
        .iter()
        .filter(|c| !c.action.contains(':'))
        .cloned()
        .collect();
    let isolating = calls
        .iter()
        .filter(|c| c.fault == "ok")
        .filter(|c| match c.action.as_str() {
            "ModifyNetworkInterfaceAttribute" => {
                isolation_group.is_some_and(|g| c.field("SecurityGroupId.1") == Some(g))
            }
            // The seed sets its group on the instance.
            "ModifyInstanceAttribute" => c.field("GroupId.1").is_some(),
            _ => false,
        })
        .max_by_key(|c| c.finished);
    let acl = calls
        .iter()
        .filter(|c| c.fault == "ok" && c.action == "CreateNetworkAclEntry")
        .max_by_key(|c| c.finished);
    // The ACL branch runs alongside the swaps and nothing on the way to them waits for it.
    let towards_isolation: Vec<ProxiedCall> = calls
        .iter()
        .filter(|c| !is_acl_branch(c))
        .cloned()
        .collect();
    Containment {
        isolated_ms: isolating.map(|c| since(start, c.finished)),
        acl_ms: acl.map(|c| since(start, c.finished)),
        first_call_ms: calls
            .iter()
            .map(|c| since(start, c.started))
            .reduce(f64::min),
        ec2_calls: calls.len(),
        critical: isolating.map(|last| critical_path(&towards_isolation, last)),
        latencies: calls
            .iter()
            .map(|c| (c.action.clone(), ms(c.finished - c.started)))
            .collect(),
        ..Containment::default()
    }
}

/// A call of the network ACL branch (or the protection flag set after the swaps).
fn is_acl_branch(call: &ProxiedCall) -> bool {
    let on_acl = call
        .field("ResourceId.1")
        .is_some_and(|r| r.starts_with("acl-"));
    match call.action.as_str() {
        "DescribeNetworkAcls"
        | "DescribeVpcs"
        | "CreateNetworkAclEntry"
        | "DeleteNetworkAclEntry" => true,
        "CreateTags" | "DeleteTags" => on_acl,
        "ModifyInstanceAttribute" => call.field("DisableApiTermination.Value").is_some(),
        _ => false,
    }
}

async fn isolation_group(world: &World, vpc: &str) -> Option<String> {
    world.cordon_group_ids(vpc).await.get("isolation").cloned()
}

/// `cordon isolate --finding` in a fresh process.
async fn cordon_isolate(world: &World, proxy: &FaultProxy, target: &Target) -> Containment {
    let dir = std::env::temp_dir().join(format!("cordon-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let finding = dir.join(format!("{}.json", target.instance));
    std::fs::write(
        &finding,
        finding_in_vpc(&target.instance, &target.vpc, 8.0, REMOTE).to_string(),
    )
    .unwrap();
    proxy.clear_calls();
    let cordon = PathBuf::from(env!("CARGO_BIN_EXE_cordon"));
    let start = Instant::now();
    let output = command(&cordon, &proxy.endpoint)
        .args(["isolate", "--finding", finding.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let done = Instant::now();
    let group = isolation_group(world, &target.vpc).await;
    let mut run = containment_from_calls(start, &proxy.calls(), group.as_deref());
    run.done_ms = since(start, done);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    run.ok = output.status.success()
        && report["status"] == "isolated"
        && group.is_some_and(|g| report["enis"][0]["groups_now"] == json!([g]));
    if !run.ok {
        run.error = Some(format!(
            "exit {:?}: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    run
}

/// The seed's handler once, in a fresh Python process (`run_seed.py`). Its isolation is the
/// answer to its ModifyInstanceAttribute (Groups): EC2 puts that group on the primary ENI,
/// where moto keeps it on the instance only, so the seed is credited as EC2 would act.
async fn seed(seed_dir: &Path, proxy: &FaultProxy, target: &Target) -> Containment {
    let event_file =
        std::env::temp_dir().join(format!("cordon-bench-seed-{}.json", target.instance));
    std::fs::write(
        &event_file,
        event(finding_for(&target.instance, 8.0, REMOTE)).to_string(),
    )
    .unwrap();
    proxy.clear_calls();
    let start = Instant::now();
    let output = command(&python(), &proxy.endpoint)
        .arg(seed_dir.join("run_seed.py"))
        .arg(&event_file)
        .output()
        .await
        .unwrap();
    let done = Instant::now();
    let mut run = containment_from_calls(start, &proxy.calls(), None);
    run.done_ms = since(start, done);
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    run.ok = answer["ok"] == true;
    run.error = answer["error"]
        .as_str()
        .map(String::from)
        .or_else(|| (!run.ok).then(|| String::from_utf8_lossy(&output.stderr).into_owned()));
    run
}

/// A release bootstrap running behind its own Runtime API, handed `event`.
struct Bootstrap {
    api: RuntimeApi,
    child: tokio::process::Child,
    started: Instant,
}

fn worker_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        (
            "CORDON_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:cordon-bench".into(),
        ),
        ("CORDON_APPROVAL_URL", "http://127.0.0.1:9/approval".into()),
        (
            "CORDON_APPROVAL_KEY_ID",
            LINK_KEY.get().expect("the link key is made first").clone(),
        ),
        // The stack seals decisions with a key of their own; any HMAC key serves here.
        (
            "CORDON_DECISION_KEY_ID",
            LINK_KEY.get().expect("the link key is made first").clone(),
        ),
        // And the records kept in tags with another (capture, block-nacl and restore).
        (
            "CORDON_RECORD_KEY_ID",
            LINK_KEY.get().expect("the link key is made first").clone(),
        ),
    ]
}

/// The ARN of the KMS HMAC key on moto that notify signs the bench's links with.
static LINK_KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl Bootstrap {
    async fn start(worker: &str, endpoint: &str, event: Option<Value>) -> Bootstrap {
        let api = RuntimeApi::start(event).await;
        let path = release_dir().join(worker);
        assert!(
            path.exists(),
            "{} is missing: run scripts/bench, which builds the release workers",
            path.display()
        );
        let started = Instant::now();
        let child = command(&path, endpoint)
            .envs(worker_env())
            .env("AWS_LAMBDA_FUNCTION_NAME", worker)
            .env("AWS_LAMBDA_RUNTIME_API", &api.address)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Bootstrap {
            api,
            child,
            started,
        }
    }

    async fn cold_start_ms(&self) -> Option<f64> {
        let at = self.api.first_next(Duration::from_secs(10)).await?;
        Some(since(self.started, at))
    }

    /// The answer, then the peak RSS in MB of the process that gave it; the process is killed.
    /// Without an answer (the bootstrap exited, or a minute passed), what it wrote to stderr.
    async fn finish(mut self) -> (Option<(Instant, runtime_api::Answer)>, Option<f64>) {
        let until = Instant::now() + Duration::from_secs(60);
        let answer = loop {
            if let Some(answer) = self.api.answer(Duration::ZERO).await {
                break Some(answer);
            }
            if Instant::now() > until || matches!(self.child.try_wait(), Ok(Some(_))) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let rss = self.child.id().and_then(peak_rss_mb);
        let _ = self.child.kill().await;
        if answer.is_none() {
            let mut stderr = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            let reason = stderr.lines().last().unwrap_or("no output").to_string();
            return (Some((Instant::now(), Err(reason))), rss);
        }
        (answer, rss)
    }
}

/// VmHWM of a live process, in MB.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// What the pipeline of bootstraps measured, besides containment.
#[derive(Default)]
struct WorkerFigures {
    cold_start_ms: BTreeMap<String, Vec<f64>>,
    rss_mb: BTreeMap<String, Vec<f64>>,
}

impl WorkerFigures {
    fn note(&mut self, worker: &str, cold: Option<f64>, rss: Option<f64>) {
        if let Some(cold) = cold {
            self.cold_start_ms
                .entry(worker.into())
                .or_default()
                .push(cold);
        }
        if let Some(rss) = rss {
            self.rss_mb.entry(worker.into()).or_default().push(rss);
        }
    }
}

/// capture-state, then isolate-sg and block-nacl at once on its output, each a cold
/// bootstrap (as a first execution after a deployment runs them); then restore, cold too.
async fn lambda_pipeline(
    world: &World,
    proxy: &FaultProxy,
    target: &Target,
    workers: &mut WorkerFigures,
) -> Containment {
    proxy.clear_calls();
    let delivery = json!({"event": event(finding_in_vpc(&target.instance, &target.vpc, 8.0, REMOTE)),
        "execution": "arn:aws:states:us-east-1:123456789012:execution:cordon:bench",
        "approval_timeout_seconds": 3600});
    let capture = Bootstrap::start("capture-state", &proxy.endpoint, Some(delivery)).await;
    let start = capture.started;
    let cold = capture.cold_start_ms().await;
    let (answer, rss) = capture.finish().await;
    workers.note("capture-state", cold, rss);
    let captured = match answer {
        Some((_, Ok(output))) => output,
        other => {
            return Containment {
                error: Some(format!("capture-state: {other:?}")),
                ..Containment::default()
            }
        }
    };
    // As the state machine hands it over on the step's first attempt.
    let isolate_input = json!({"capture": captured, "retry_count": 0});
    let isolate = Bootstrap::start("isolate-sg", &proxy.endpoint, Some(isolate_input)).await;
    let block = Bootstrap::start("block-nacl", &proxy.endpoint, Some(captured.clone())).await;
    let (isolate_cold, block_cold) = tokio::join!(isolate.cold_start_ms(), block.cold_start_ms());
    let ((isolated, isolate_rss), (blocked, block_rss)) =
        tokio::join!(isolate.finish(), block.finish());
    workers.note("isolate-sg", isolate_cold, isolate_rss);
    workers.note("block-nacl", block_cold, block_rss);
    let group = isolation_group(world, &target.vpc).await;
    let mut run = containment_from_calls(start, &proxy.calls(), group.as_deref());
    let ends: Vec<Instant> = [&isolated, &blocked]
        .iter()
        .filter_map(|a| a.as_ref().map(|(at, _)| *at))
        .collect();
    run.done_ms = ends.iter().map(|at| since(start, *at)).fold(0.0, f64::max);
    let isolated_ok = matches!(&isolated, Some((_, Ok(v))) if v["status"] == "done");
    let blocked_ok = matches!(&blocked, Some((_, Ok(v))) if v["status"] == "done");
    run.ok = isolated_ok && blocked_ok && ends.len() == 2;
    if !run.ok {
        run.error = Some(format!("isolate-sg: {isolated:?}; block-nacl: {blocked:?}"));
    }

    // Restore, to measure its worker too (and leave the instance as it was).
    let nacl_entries = blocked
        .and_then(|(_, a)| a.ok())
        .map(|v| v["nacl_entries"].clone())
        .unwrap_or(json!([]));
    let restore_input = json!({"instance_id": target.instance, "record": captured["record"],
        "nacl_entries": nacl_entries});
    let restore = Bootstrap::start("restore", &proxy.endpoint, Some(restore_input)).await;
    let cold = restore.cold_start_ms().await;
    let (_, rss) = restore.finish().await;
    workers.note("restore", cold, rss);
    run
}

/// notify (an approval request to a real moto topic) and approval (a GET with a link that
/// is not signed: the refusal page), each one event, cold.
async fn other_workers(moto_endpoint: &str, runs: usize, workers: &mut WorkerFigures) {
    let sns = aws_sdk_sns::Client::new(&emulator_config(moto_endpoint));
    sns.create_topic()
        .name("cordon-bench")
        .send()
        .await
        .unwrap();
    let state = json!({"instance_id": "i-0123456789abcdef0",
        "finding": {"id": "f-1", "type": "UnauthorizedAccess:EC2/TorClient", "severity": 8.0,
            "account_id": "123456789012", "region": REGION},
        "record": null, "containment": {}, "approval_timeout_seconds": 3600});
    let notify_event = json!({"kind": "approval_request",
        "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:cordon:bench",
        "task_token": "bench-token", "state": state});
    let approval_event = json!({"version": "2.0", "routeKey": "$default", "rawPath": "/",
        "rawQueryString": "token=forged&action=approve", "headers": {"host": "bench"},
        "requestContext": {"accountId": "123456789012", "apiId": "bench",
            "domainName": "bench.lambda-url.us-east-1.on.aws", "domainPrefix": "bench",
            "http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "bench", "routeKey": "$default", "stage": "$default",
            "time": "30/Nov/2026:00:00:00 +0000", "timeEpoch": 0},
        "isBase64Encoded": false});
    for _ in 0..runs {
        for (worker, event) in [("notify", &notify_event), ("approval", &approval_event)] {
            let bootstrap = Bootstrap::start(worker, moto_endpoint, Some(event.clone())).await;
            let cold = bootstrap.cold_start_ms().await;
            let (answer, rss) = bootstrap.finish().await;
            if let Some((_, Err(error))) = answer {
                eprintln!("bench: {worker} answered an error: {error}");
            }
            workers.note(worker, cold, rss);
        }
    }
}

/// Python + boto3 start-up: from process start to its first request to the Runtime API,
/// having imported boto3 and made its EC2 client (as a Python handler's module does).
async fn python_cold_start(endpoint: &str) -> Option<f64> {
    let api = RuntimeApi::start(None).await;
    let script = "import os, urllib.request, boto3\n\
                  boto3.client('ec2')\n\
                  urllib.request.urlopen('http://' + os.environ['AWS_LAMBDA_RUNTIME_API'] + '/2018-06-01/runtime/invocation/next', timeout=5)\n";
    let started = Instant::now();
    let mut child = command(&python(), endpoint)
        .args(["-c", script])
        .env("AWS_LAMBDA_RUNTIME_API", &api.address)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let at = api.first_next(Duration::from_secs(30)).await;
    let _ = child.kill().await;
    at.map(|at| since(started, at))
}

/// The median latency of a trivial EC2 call (DescribeRegions) through the proxy, warm client.
async fn trivial_call_ms(proxy: &FaultProxy) -> f64 {
    let ec2 = aws_sdk_ec2::Client::new(&emulator_config(&proxy.endpoint));
    let mut samples = Vec::new();
    for _ in 0..60 {
        let start = Instant::now();
        ec2.describe_regions().send().await.unwrap();
        samples.push(ms(start.elapsed()));
    }
    median(&samples[10..])
}

/// N findings on N instances through the local runner at once.
struct Burst {
    findings: usize,
    contained: usize,
    restored: usize,
    /// Seconds from the burst's start to each finding's containment.
    seconds: Vec<f64>,
    makespan: f64,
    /// What went through moto during the burst (through a pass-through proxy).
    ec2_calls: u64,
    other_calls: u64,
    ec2_latency_p50: f64,
    ec2_latency_p99: f64,
}

async fn burst(moto: &Moto, count: usize) -> Burst {
    let world = moto.world();
    let members = cordon_tests::fleet(&world, count, 100).await;
    let proxy = FaultProxy::start(&moto.endpoint, FaultPlan::none()).await;
    let runner = Arc::new(
        Runner::start(&proxy.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for member in &members {
        let delivery = event(finding_in_vpc(&member.instance, &member.vpc, 8.0, REMOTE));
        let arn = runner.start_execution(&delivery, 3600).await.unwrap();
        let submitted = start.elapsed().as_secs_f64();
        let runner = runner.clone();
        tasks.push(tokio::spawn(async move {
            let report = runner.follow(&arn, DecisionMode::Approve).await;
            (submitted, report)
        }));
    }
    let mut seconds = Vec::new();
    let (mut contained, mut restored) = (0, 0);
    for task in tasks {
        let (submitted, report) = task.await.unwrap();
        let Ok(report) = report else { continue };
        let both_done = ["isolation", "nacl"]
            .iter()
            .all(|branch| report.containment[*branch]["status"] == "done");
        let at = report
            .timeline
            .iter()
            .find(|visit| visit.name == "ContainmentOutcome")
            .map(|visit| visit.at);
        if let (true, Some(at)) = (both_done, at) {
            contained += 1;
            seconds.push(submitted + at);
        } else {
            eprintln!(
                "bench: {} not contained: states {:?}, containment {}",
                report.execution_arn, report.states, report.containment
            );
        }
        restored += usize::from(report.outcome == "restored");
    }
    let makespan = seconds.iter().copied().fold(0.0, f64::max);
    let totals = proxy.totals();
    let latencies: Vec<f64> = proxy
        .calls()
        .iter()
        .filter(|c| !c.action.contains(':'))
        .map(|c| ms(c.finished - c.started))
        .collect();
    Burst {
        findings: count,
        contained,
        restored,
        seconds,
        makespan,
        ec2_calls: proxy.calls_by_service().get("ec2").copied().unwrap_or(0),
        other_calls: totals.other_calls,
        ec2_latency_p50: percentile(&latencies, 50.0),
        ec2_latency_p99: percentile(&latencies, 99.0),
    }
}

fn run_line(runs: &[Containment], pick: impl Fn(&Containment) -> Option<f64>) -> String {
    let values: Vec<f64> = runs.iter().filter_map(pick).collect();
    if values.is_empty() {
        "—".into()
    } else {
        spread(&values)
    }
}

fn outcome_line(runs: &[Containment]) -> String {
    let ok = runs.iter().filter(|r| r.ok).count();
    let mut errors: Vec<String> = runs
        .iter()
        .filter_map(|r| r.error.as_ref())
        .map(|e| e.lines().last().unwrap_or("").chars().take(120).collect())
        .collect();
    errors.dedup();
    if errors.is_empty() {
        format!("{ok}/{} succeeded", runs.len())
    } else {
        format!("{ok}/{} succeeded; {}", runs.len(), errors.join("; "))
    }
}

fn shell(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let kb: f64 = info
                .lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(format!("{:.1} GB", kb / 1024.0 / 1024.0))
        })
        .unwrap_or_default();
    let python_versions = shell(
        python().to_str().unwrap(),
        &["-c", "import sys, boto3, moto; print(f'Python {sys.version.split()[0]}, boto3 {boto3.__version__}, moto {moto.__version__}')"],
    );
    format!(
        "{} ({} cores, {memory}), {}; {}; {python_versions}",
        cpu,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        shell("uname", &["-srm"]),
        shell("rustc", &["--version"])
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let runs = size("BENCH_RUNS", 5);
    let burst_size = size("BENCH_BURST", 100);
    let moto = Moto::start();
    if std::env::var("BENCH_WORLDS").as_deref() == Ok("modelled") {
        // The modelled AWS alone, printed (BENCHMARKS.md is written only by the whole run).
        let (section, rows) = modelled::render(&modelled_world(&moto).await);
        println!("{section}");
        for (target, measured, ok, _) in rows {
            println!("{target}: {measured} ({})", met(ok));
        }
        return;
    }
    let world = moto.world();
    LINK_KEY
        .set(
            cordon::local::create_hmac_key(&emulator_config(&moto.endpoint), "bench links")
                .await
                .unwrap(),
        )
        .expect("made once");
    // Every measured process talks to moto through a pass-through proxy that times each EC2
    // call; the trivial call is timed through it too, so the limit and the measure agree.
    let proxy = FaultProxy::start(&moto.endpoint, FaultPlan::none()).await;
    let trivial = trivial_call_ms(&proxy).await;
    eprintln!("bench: trivial EC2 call {trivial:.2} ms");

    // 1 and 2: cold processes, each contestant on its own fresh instance of the same shape.
    let seed_dir = seed_dir();
    if seed_dir.is_none() {
        eprintln!(
            "bench: the seed's Python baseline (run_seed.py) is not in ../shared/bench or CORDON_SEED_DIR: its rows are left out, the rest is measured"
        );
    }
    let (mut cli_first, mut cli_steady, mut lambda_first, mut lambda_steady, mut seeds) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut workers = WorkerFigures::default();
    for run in 0..runs {
        let octet = 10 + run * 3;
        eprintln!("bench: cold run {} of {runs}", run + 1);
        let first = lone_instance(&world, octet).await;
        cli_first.push(cordon_isolate(&world, &proxy, &first).await);
        let steady = neighbour(&world, &first.vpc, octet, 2).await;
        containment_under_way(&moto, &steady.vpc).await;
        cli_steady.push(cordon_isolate(&world, &proxy, &steady).await);

        let first = lone_instance(&world, octet + 1).await;
        lambda_first.push(lambda_pipeline(&world, &proxy, &first, &mut workers).await);
        let steady = neighbour(&world, &first.vpc, octet + 1, 2).await;
        containment_under_way(&moto, &steady.vpc).await;
        lambda_steady.push(lambda_pipeline(&world, &proxy, &steady, &mut workers).await);

        if let Some(dir) = &seed_dir {
            let target = lone_instance(&world, octet + 2).await;
            seeds.push(seed(dir, &proxy, &target).await);
        }
    }
    other_workers(&moto.endpoint, runs, &mut workers).await;
    let mut python_starts = Vec::new();
    for _ in 0..runs {
        python_starts.extend(python_cold_start(&proxy.endpoint).await);
    }
    eprintln!("bench: burst of {burst_size}");
    let burst = burst(&moto, burst_size).await;
    let modelled = modelled_world(&moto).await;

    let report = render(&Figures {
        runs,
        trivial,
        cli_first,
        cli_steady,
        lambda_first,
        lambda_steady,
        seeds,
        workers,
        python_starts,
        burst,
        modelled,
    });
    println!("{report}");
    std::fs::write(repo_root().join("BENCHMARKS.md"), &report).unwrap();
}

/// The modelled AWS (section 6): one finding in steady state and on first use in a VPC, then
/// the bursts of `BENCH_MODELLED_BURSTS` (100,1000), latencies scaled by `BENCH_LATENCY_SCALE`.
async fn modelled_world(moto: &Moto) -> modelled::Modelled {
    let scale = std::env::var("BENCH_LATENCY_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    let sizes: Vec<usize> = std::env::var("BENCH_MODELLED_BURSTS")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    eprintln!("bench: modelled AWS, one finding");
    let singles = vec![
        modelled::single(moto, scale, modelled::VpcState::Steady, 200).await,
        modelled::single(moto, scale, modelled::VpcState::Quiet, 202).await,
        modelled::single(moto, scale, modelled::VpcState::FirstUse, 201).await,
    ];
    // A burst's executions still running this many seconds after it began are stopped (a
    // burst of 1,000 keeps EC2's ACL bucket busy for an hour); None: every one runs to its end.
    let cutoff = std::env::var("BENCH_MODELLED_CUTOFF")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut bursts = Vec::new();
    for size in sizes {
        eprintln!("bench: modelled AWS, a burst of {size}");
        bursts.push(modelled::burst(size, scale, cutoff).await);
    }
    modelled::Modelled {
        scale,
        singles,
        bursts,
    }
}

struct Figures {
    runs: usize,
    trivial: f64,
    cli_first: Vec<Containment>,
    cli_steady: Vec<Containment>,
    lambda_first: Vec<Containment>,
    lambda_steady: Vec<Containment>,
    seeds: Vec<Containment>,
    workers: WorkerFigures,
    python_starts: Vec<f64>,
    burst: Burst,
    modelled: modelled::Modelled,
}

fn zip_size_mb(worker: &str) -> Option<f64> {
    let path = repo_root().join(format!("target/lambda/{worker}/bootstrap.zip"));
    std::fs::metadata(path)
        .ok()
        .map(|m| m.len() as f64 / 1_000_000.0)
}

fn critical_line(runs: &[Containment]) -> (String, Option<usize>) {
    let paths: Vec<&Vec<ProxiedCall>> = runs.iter().filter_map(|r| r.critical.as_ref()).collect();
    let Some(shortest) = paths.iter().min_by_key(|p| p.len()) else {
        return ("—".into(), None);
    };
    let longest = paths.iter().map(|p| p.len()).max().unwrap_or(0);
    let count = if longest == shortest.len() {
        shortest.len().to_string()
    } else {
        format!("{}–{longest}", shortest.len())
    };
    (
        format!("{count}: {}", figures::actions(shortest)),
        Some(shortest.len()),
    )
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// The targets against this run's figures; a miss says what stands in the way.
fn targets(f: &Figures) -> String {
    let limit = MIN_SEQUENTIAL_CALLS as f64 * f.trivial;
    let python = median(&f.python_starts);
    let colds: Vec<(&str, f64)> = WORKERS
        .iter()
        .filter_map(|w| Some((*w, median(f.workers.cold_start_ms.get(*w)?))))
        .collect();
    let slowest = colds
        .iter()
        .cloned()
        .fold(("none", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let sequential = |runs: &[Containment]| {
        runs.iter()
            .filter_map(|r| r.critical.as_ref().map(Vec::len))
            .max()
            .unwrap_or(usize::MAX)
    };
    let (cli_calls, lambda_calls) = (sequential(&f.cli_steady), sequential(&f.lambda_steady));
    let isolated = |runs: &[Containment]| {
        median(
            &runs
                .iter()
                .filter_map(|r| r.isolated_ms)
                .collect::<Vec<_>>(),
        )
    };
    let in_calls = median(
        &f.cli_steady
            .iter()
            .filter_map(|r| Some(r.isolated_ms? - r.first_call_ms?))
            .collect::<Vec<_>>(),
    );
    let cli_ratio = isolated(&f.cli_steady) / limit;
    let rss = f
        .workers
        .rss_mb
        .values()
        .flatten()
        .copied()
        .fold(0.0, f64::max);
    let zip = WORKERS
        .iter()
        .filter_map(|w| zip_size_mb(w))
        .fold(0.0, f64::max);
    let zips_built = WORKERS.iter().all(|w| zip_size_mb(w).is_some());
    let mut rows = vec![
        (
            "Worker cold start ≤ 30 ms".to_string(),
            format!("slowest {} {:.1} ms", slowest.0, slowest.1),
            met(slowest.1 <= TARGET_COLD_START_MS),
            String::new(),
        ),
        (
            "Cold start ≥ 20x faster than Python + boto3".into(),
            format!("{:.0}x ({} vs {python:.0} ms)", python / slowest.1, slowest.0),
            met(python / slowest.1 >= 20.0),
            String::new(),
        ),
        (
            "Steady state: ≤ 5 sequential EC2 calls to isolation, `cordon isolate`".into(),
            cli_calls.to_string(),
            met(cli_calls <= 5),
            String::new(),
        ),
        (
            "Steady state: ≤ 5 sequential EC2 calls to isolation, the workflow's bootstraps".into(),
            lambda_calls.to_string(),
            met(lambda_calls <= 5),
            "see section 2's path".into(),
        ),
        (
            "Time to isolation ≤ 1.5x the limit, `cordon isolate`, steady state".into(),
            format!(
                "{cli_ratio:.1}x from the process's start ({:.1} of {limit:.1} ms); {:.1}x from its first EC2 call",
                isolated(&f.cli_steady),
                in_calls / limit
            ),
            met(cli_ratio <= 1.5),
            "the limit counts EC2 calls only: the process's start-up (see section 2) comes on top, and moto answers the writes more slowly than DescribeRegions (see the latency table)".into(),
        ),
        (
            format!("Burst of {}: all contained, none lost", f.burst.findings),
            format!("{} contained, {} restored", f.burst.contained, f.burst.restored),
            met(f.burst.contained == f.burst.findings),
            String::new(),
        ),
        (
            "Each worker ≤ 128 MB".into(),
            format!("largest peak RSS {rss:.1} MB"),
            met(rss > 0.0 && rss <= TARGET_RSS_MB),
            String::new(),
        ),
        (
            "Each zip ≤ 8 MB".into(),
            if zips_built {
                format!("largest {zip:.2} MB")
            } else {
                "not built".into()
            },
            met(zips_built && zip <= TARGET_ZIP_MB),
            String::new(),
        ),
    ];
    let (_, modelled_rows) = modelled::render(&f.modelled);
    rows.extend(
        modelled_rows
            .into_iter()
            .map(|(target, measured, ok, cause)| (target, measured, met(ok), cause)),
    );
    let mut out = String::from(
        "## Targets\n\n| Target | This run | | What stands in the way |\n|---|---|---|---|\n",
    );
    for (target, measured, verdict, cause) in rows.drain(..) {
        let cause = if verdict == "met" {
            String::new()
        } else {
            cause
        };
        out.push_str(&format!(
            "| {target} | {measured} | {verdict} | {cause} |\n"
        ));
    }
    out.push('\n');
    out
}

fn render(f: &Figures) -> String {
    let mut out = String::new();
    let now = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    out.push_str(&format!(
        "# Benchmarks\n\n\
         Generated by `scripts/bench` on {now}; {} cold runs of each contestant, a burst of {}.\n\n\
         Machine: {}.\n\n\
         Everything runs against moto's server on loopback; each process measured talks to it \
         through a pass-through proxy that times every EC2 call (`cordon_tests::faults`), so the \
         figures include one loopback hop per call. Times are medians, with the range over the runs \
         in brackets, in milliseconds from the first process's start.\n\n",
        f.runs,
        f.burst.findings,
        machine()
    ));

    out.push_str(&targets(f));
    out.push_str("## 1. Time to containment of one finding, cold processes\n\n");
    out.push_str("Each run contains a fresh single-ENI instance (two groups, the VPC's default network ACL). \
        The seed's isolation is the answer to its ModifyInstanceAttribute (Groups): EC2 would put that group on the primary ENI, \
        moto keeps it on the instance only, so the seed is credited as EC2 would act.\n\n");
    if f.seeds.is_empty() {
        out.push_str("The seed's Python baseline was not beside the clone (`../shared/bench`, or `CORDON_SEED_DIR`): its rows are left out.\n\n");
    }
    out.push_str("| Contestant | VPC | ENI on the isolation group | NACL deny in place | Process(es) ended | EC2 calls | Outcome |\n|---|---|---:|---:|---:|---:|---|\n");
    for (name, vpc, runs) in [
        (
            "`cordon isolate` (fresh process)",
            "first use",
            &f.cli_first,
        ),
        (
            "`cordon isolate` (fresh process)",
            "groups exist",
            &f.cli_steady,
        ),
        (
            "release bootstraps: capture-state, then isolate-sg ‖ block-nacl",
            "first use",
            &f.lambda_first,
        ),
        (
            "release bootstraps: capture-state, then isolate-sg ‖ block-nacl",
            "groups exist",
            &f.lambda_steady,
        ),
        (
            "seed `seed_handler.py` (Python 3 + boto3, fresh process)",
            "first use",
            &f.seeds,
        ),
    ] {
        if runs.is_empty() {
            continue; // The seed, when its baseline is not beside the clone.
        }
        let calls: Vec<f64> = runs.iter().map(|r| r.ec2_calls as f64).collect();
        out.push_str(&format!(
            "| {name} | {vpc} | {} | {} | {} | {:.0} | {} |\n",
            run_line(runs, |r| r.isolated_ms),
            run_line(runs, |r| r.acl_ms),
            run_line(runs, |r| Some(r.done_ms)),
            median(&calls),
            outcome_line(runs)
        ));
    }

    out.push_str("\n## 2. EC2 calls on the critical path to \"egress blocked\"\n\n");
    out.push_str(&format!(
        "Calls that had to happen one after another (each started after the one before it ended), up to the swap onto the isolation group; calls made at the same time count once. \
         Limit = {MIN_SEQUENTIAL_CALLS} sequential calls (describe the instance while finding the groups, write the record, swap to the conversion group, swap to the isolation group) \
         x {:.2} ms, the median latency of a trivial EC2 call (DescribeRegions) measured in this run = **{:.1} ms**.\n\n",
        f.trivial,
        MIN_SEQUENTIAL_CALLS as f64 * f.trivial
    ));
    out.push_str("| Path | VPC | Sequential EC2 calls | Start-up before the first call | First call to isolated | vs limit | Process start to isolated | vs limit |\n|---|---|---|---:|---:|---:|---:|---:|\n");
    let limit = MIN_SEQUENTIAL_CALLS as f64 * f.trivial;
    for (name, vpc, runs) in [
        ("`cordon isolate`", "groups exist", &f.cli_steady),
        ("`cordon isolate`", "first use", &f.cli_first),
        ("bootstraps", "groups exist", &f.lambda_steady),
        ("bootstraps", "first use", &f.lambda_first),
        ("seed handler", "first use", &f.seeds),
    ] {
        if runs.is_empty() {
            continue;
        }
        let (critical, _) = critical_line(runs);
        let in_calls: Vec<f64> = runs
            .iter()
            .filter_map(|r| Some(r.isolated_ms? - r.first_call_ms?))
            .collect();
        let whole: Vec<f64> = runs.iter().filter_map(|r| r.isolated_ms).collect();
        out.push_str(&format!(
            "| {name} | {vpc} | {critical} | {} | {} | {:.1}x | {} | {:.1}x |\n",
            run_line(runs, |r| r.first_call_ms),
            spread(&in_calls),
            median(&in_calls) / limit,
            spread(&whole),
            median(&whole) / limit,
        ));
    }

    let mut by_action: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for run in f.cli_steady.iter().chain(&f.cli_first) {
        for (action, latency) in &run.latencies {
            by_action.entry(action).or_default().push(*latency);
        }
    }
    out.push_str(&format!(
        "\nWhere the time goes: the latency of each EC2 action in the `cordon isolate` runs, as the proxy saw it \
         (the calls of the two branches share moto's one Python process), against DescribeRegions' {:.2} ms.\n\n\
         | EC2 action | Calls | Median (ms) | Max (ms) |\n|---|---:|---:|---:|\n",
        f.trivial
    ));
    for (action, latencies) in &by_action {
        out.push_str(&format!(
            "| {action} | {} | {:.1} | {:.1} |\n",
            latencies.len(),
            median(latencies),
            percentile(latencies, 100.0)
        ));
    }

    out.push_str("\n## 3. Cold start and 4. memory and size of each worker\n\n");
    let python = median(&f.python_starts);
    out.push_str(&format!(
        "Cold start: from the process's start to its first request to a local Lambda Runtime API (a stub in the benchmark). \
         Python 3 + boto3, doing the same (import boto3, make an EC2 client, ask for the next event): **{}** ms. \
         Peak RSS: VmHWM after handling one event. Zip: the arm64 artifact from `scripts/build-lambdas`.\n\n",
        spread(&f.python_starts)
    ));
    out.push_str(&format!(
        "| Worker | Cold start (ms) | vs Python + boto3 | Peak RSS (MB) | Zip (MB) | Targets (≤ {TARGET_COLD_START_MS} ms, ≥ 20x, ≤ {TARGET_RSS_MB} MB, ≤ {TARGET_ZIP_MB} MB) |\n|---|---:|---:|---:|---:|---|\n"
    ));
    for worker in WORKERS {
        let cold = f
            .workers
            .cold_start_ms
            .get(worker)
            .cloned()
            .unwrap_or_default();
        let rss = f.workers.rss_mb.get(worker).cloned().unwrap_or_default();
        let zip = zip_size_mb(worker);
        let speedup = python / median(&cold);
        let met = median(&cold) <= TARGET_COLD_START_MS
            && speedup >= 20.0
            && percentile(&rss, 100.0) <= TARGET_RSS_MB
            && zip.is_some_and(|z| z <= TARGET_ZIP_MB);
        out.push_str(&format!(
            "| {worker} | {} | {speedup:.0}x | {:.1} | {} | {} |\n",
            if cold.is_empty() {
                "—".into()
            } else {
                spread(&cold)
            },
            percentile(&rss, 100.0),
            zip.map_or("not built".into(), |z| format!("{z:.2}")),
            if met { "met" } else { "**missed**" }
        ));
    }

    let b = &f.burst;
    out.push_str(&format!(
        "\n## 5. Burst: {} findings on {} instances through the local runner at once\n\n\
         The local runner (`cordon::runner`) starts one Step Functions execution per finding on moto and runs the workers in process; \
         time to containment is from the burst's start to the execution entering `ContainmentOutcome` with both branches done. \
         Each execution is then approved and restored.\n\n\
         | Findings | Contained | Restored | Makespan | p50 | p99 |\n|---:|---:|---:|---:|---:|---:|\n\
         | {} | {} | {} | {:.1} s | {:.1} s | {:.1} s |\n\n\
         Through moto during the burst (containment, approval and restore): {} EC2 calls, answered in {:.1} ms at the median and {:.1} ms at p99 \
         (DescribeRegions alone: {:.2} ms), and {} other calls (Step Functions, SNS, the runner reading moto's recorded emails). \
         moto serves all of them, and runs every execution's interpreter, in one Python process: the burst measures that process's throughput as much as Cordon's.\n\n\
         ![Burst: time to containment](BENCHMARKS-burst.svg)\n",
        b.findings,
        b.findings,
        b.findings,
        b.contained,
        b.restored,
        b.makespan,
        percentile(&b.seconds, 50.0),
        percentile(&b.seconds, 99.0),
        b.ec2_calls,
        b.ec2_latency_p50,
        b.ec2_latency_p99,
        f.trivial,
        b.other_calls,
    ));
    std::fs::write(
        repo_root().join("BENCHMARKS-burst.svg"),
        figures::burst_svg(
            &b.seconds,
            &format!(
                "{} findings at once: time to containment ({} contained)",
                b.findings, b.contained
            ),
            None,
        ),
    )
    .unwrap();
    out.push_str(&modelled::render(&f.modelled).0);
    out
}
