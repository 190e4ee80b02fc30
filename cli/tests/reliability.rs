//! Reliability under faults, duplicates, kills and lost executions (issue 5), against moto
//! through the fault proxy (`cordon_tests::faults`). Each scenario asserts its outcome and
//! writes its row of RELIABILITY.md to `target/reliability/`; `scripts/reliability` runs them
//! at full size and renders the table.
//!
//! Sizes: `RELIABILITY_RUNS` (the fault run's workflows, 8 in CI, 50 by the script) and
//! `RELIABILITY_CONCURRENCY` (how many `cordon run` at once, 4). `RELIABILITY_FAULT_PERCENT`
//! (30) raises the fault rate to make a rare failure show up more often while it is hunted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use cordon::runner::{DecisionMode, Runner};
use cordon_core::config::Config;
use cordon_tests::faults::{FaultPlan, FaultProxy};
use cordon_tests::{finding_for, fleet, repo_root, Member, Moto, World};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

// The measures beyond the network, in a file of their own (not a test crate of its own).
#[path = "reliability/measures.rs"]
mod measures;

/// One row of RELIABILITY.md.
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    order: u32,
    scenario: String,
    runs: usize,
    faults_injected: String,
    contained: usize,
    restored_exactly: usize,
    lost_originals: usize,
    panics: usize,
    notes: String,
}

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Calls per service, as a row says them: `7346 EC2, 120 Auto Scaling`.
fn by_service(counts: &BTreeMap<String, u64>) -> String {
    let name = |service: &str| {
        match service {
            "ec2" => "EC2",
            "autoscaling" => "Auto Scaling",
            "iam" => "IAM",
            "elasticloadbalancing" => "ELB",
            other => other,
        }
        .to_string()
    };
    counts
        .iter()
        .map(|(service, count)| format!("{count} {}", name(service)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn write_row(slug: &str, row: &Row) {
    cordon_tests::write_reliability_row(slug, &serde_json::to_value(row).unwrap());
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-rel-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn event(finding: Value) -> Value {
    json!({"version": "0", "id": "e-1", "detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "account": "123456789012", "region": cordon_tests::REGION, "resources": [], "detail": finding})
}

/// `cordon` as a user runs it, pointed at `endpoint` (moto, or the proxy in front of it).
fn cordon_command(endpoint: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cordon"));
    command.args(args);
    for key in ["AWS_PROFILE", "AWS_DEFAULT_REGION"] {
        command.env_remove(key);
    }
    command
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", cordon_tests::REGION)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .kill_on_drop(true);
    command
}

async fn cordon(endpoint: &str, args: &[&str]) -> Output {
    cordon_command(endpoint, args).output().await.unwrap()
}

fn panicked(output: &Output) -> bool {
    output.status.code() == Some(101)
        || String::from_utf8_lossy(&output.stderr).contains("panicked")
}

/// What restore must give back, read from EC2.
#[derive(Debug, PartialEq)]
struct Snapshot {
    groups: Vec<String>,
    tags: BTreeMap<String, String>,
    protection: bool,
    acl: Value,
    claims: usize,
}

async fn snapshot(world: &World, member: &Member) -> Snapshot {
    let acls = world.acls(&member.vpc).await;
    let claim = format!("cordon-claim-{}", member.instance);
    Snapshot {
        groups: world.eni_groups(&member.eni).await,
        tags: world.instance_tags(&member.instance).await,
        protection: world.termination_protection(&member.instance).await,
        acl: serde_json::to_value(&acls[&member.acl]).unwrap(),
        claims: world
            .group_names(&member.vpc)
            .await
            .values()
            .filter(|name| **name == claim)
            .count(),
    }
}

fn contained(report: &Value) -> bool {
    let reached = report["states"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s == "RequestApproval"));
    reached
        && ["isolation", "nacl"].iter().all(|branch| {
            let result = &report["containment"][*branch];
            result["status"] == "done" && result["errors"].as_array().is_none_or(|e| e.is_empty())
        })
}

/// The originals as the execution recorded them, compared with the truth.
fn record_keeps(report: &Value, member: &Member) -> bool {
    report["output"]["record"]["interfaces"][0]["groups"] == json!(member.groups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_30_percent_ec2_faults_every_workflow_contains_and_restores_exactly() {
    let runs = size("RELIABILITY_RUNS", 8);
    let concurrency = size("RELIABILITY_CONCURRENCY", 4);
    let moto = Moto::start();
    let world = moto.world();
    let members = fleet(&world, runs, 0).await;
    let dir = temp_dir("faults");

    // One workflow without faults: the calls a workflow needs. A workflow blocks in every ACL
    // of its VPC, so the baseline's VPC holds as many instances (and ACLs) as theirs.
    let clean = FaultProxy::start(&moto.endpoint, FaultPlan::none()).await;
    let baseline_member = &fleet(&world, runs.min(10), 200).await[0];
    let finding = dir.join("baseline.json");
    std::fs::write(
        &finding,
        finding_for(&baseline_member.instance, 8.0, "198.51.100.7").to_string(),
    )
    .unwrap();
    let args = [
        "run",
        "--endpoint-url",
        &clean.endpoint,
        "--finding",
        finding.to_str().unwrap(),
        "--decision",
        "approve",
    ];
    let output = cordon(&clean.endpoint, &args).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let calls_per_workflow = clean.totals().calls;

    let percent = size("RELIABILITY_FAULT_PERCENT", 30);
    let proxy = Arc::new(
        FaultProxy::start(
            &moto.endpoint,
            FaultPlan::failing(percent as f64 / 100.0, 42),
        )
        .await,
    );
    let mut before = Vec::new();
    for member in &members[..runs] {
        before.push(snapshot(&world, member).await);
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for (n, member) in members[..runs].iter().enumerate() {
        let finding = dir.join(format!("finding-{n}.json"));
        std::fs::write(
            &finding,
            finding_for(&member.instance, 8.0, "198.51.100.7").to_string(),
        )
        .unwrap();
        let (gate, endpoint) = (gate.clone(), proxy.endpoint.clone());
        tasks.push(tokio::spawn(async move {
            let _turn = gate.acquire().await.unwrap();
            let path = finding.to_str().unwrap().to_string();
            cordon(
                &endpoint,
                &[
                    "run",
                    "--endpoint-url",
                    &endpoint,
                    "--finding",
                    &path,
                    "--decision",
                    "approve",
                ],
            )
            .await
        }));
    }
    let (mut contained_count, mut restored, mut lost, mut panics) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    // Every workflow blocks its instance in every ACL of the VPC: an ACL is as it was only
    // once all of them have ended.
    for ((output, member), before) in outputs.iter().zip(&members).zip(&before) {
        panics += usize::from(panicked(output));
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if contained(&report) {
            contained_count += 1;
        } else {
            failures.push(format!(
                "{}: not contained: states {}, containment {}\n{}",
                member.instance,
                report["states"],
                report["containment"],
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        // Without a report (the runner itself failed) nothing says the record was wrong; the
        // snapshot below still decides whether the instance came back exactly.
        lost +=
            usize::from(report["output"]["record"].is_object() && !record_keeps(&report, member));
        let after = snapshot(&world, member).await;
        if report["outcome"] == "restored" && &after == before {
            restored += 1;
        } else {
            failures.push(format!(
                "{}: outcome {}, states {}, restore {}, {after:?} vs {before:?}\n{}",
                member.instance,
                report["outcome"],
                report["states"],
                report["output"]["restore"],
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    let totals = proxy.totals();
    let ratio = totals.calls as f64 / (calls_per_workflow as f64 * runs as f64);
    write_row(
        "1-faults",
        &Row {
            order: 1,
            scenario: format!(
                "`cordon run`, approve, {percent}% of EC2, Auto Scaling, IAM and ELB calls failing, {concurrency} at once"
            ),
            runs,
            faults_injected: format!(
                "{} of {} calls ({}): {} throttled, {} HTTP 500, {} reset, {} answer lost",
                totals.faults(),
                totals.calls,
                by_service(&proxy.calls_by_service()),
                totals.throttled,
                totals.server_errors,
                totals.resets,
                totals.lost_answers
            ),
            contained: contained_count,
            restored_exactly: restored,
            lost_originals: lost,
            panics,
            notes: format!(
                "{calls_per_workflow} calls per workflow without faults; {:.2}x that under faults (no retry storm)",
                ratio
            ),
        },
    );
    if !failures.is_empty() {
        let trace = repo_root().join("target/reliability/faults-trace.log");
        std::fs::write(&trace, proxy.trace().join("\n")).unwrap();
        panic!(
            "{}\n\nevery faulted call and its fault: {}",
            failures.join("\n\n"),
            trace.display()
        );
    }
    assert_eq!(
        (contained_count, restored, lost, panics),
        (runs, runs, 0, 0)
    );
    assert!(totals.faults() > 0, "the proxy injected faults");
    // Every faulted call is retried at most a few times: the SDK's three attempts and the
    // state machine's step retries must not multiply into a storm.
    assert!(ratio < 3.0, "{ratio:.2}x the calls of a clean run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_finding_delivered_ten_times_at_once_is_contained_once_and_asks_once() {
    let moto = Moto::start();
    let world = moto.world();
    let member = fleet(&world, 1, 0).await.remove(0);
    let before = snapshot(&world, &member).await;
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let delivery = event(finding_for(&member.instance, 8.0, "198.51.100.7"));

    let mut executions = Vec::new();
    for _ in 0..10 {
        executions.push(runner.start_execution(&delivery, 600).await.unwrap());
    }
    let followers: Vec<_> = executions
        .iter()
        .map(|arn| {
            let (runner, arn) = (runner.clone(), arn.clone());
            tokio::spawn(async move { runner.follow(&arn, DecisionMode::Wait).await })
        })
        .collect();
    // Wait for the one approval request.
    let (owner, approve) = loop {
        let mut found = None;
        for arn in &executions {
            if let Some((approve, _)) = runner.approval_links(arn).await.unwrap() {
                found = Some((arn.clone(), approve));
            }
        }
        if let Some(found) = found {
            break found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // A second finding for the isolated instance, another address: no second request.
    let later = event(finding_for(&member.instance, 9.0, "203.0.113.9"));
    let second = runner
        .run(&later, DecisionMode::Approve, 600)
        .await
        .unwrap();
    assert_eq!(second.outcome, "already_quarantined", "{:?}", second.states);
    let acl_while_isolated = world.acls(&member.vpc).await[&member.acl].clone();
    assert!(
        !serde_json::to_string(&acl_while_isolated)
            .unwrap()
            .contains("203.0.113.9"),
        "the second finding added nothing"
    );
    let record = world
        .kept_record(&member.instance)
        .await
        .unwrap()
        .expect("the record is kept");
    assert_eq!(
        record.interfaces[0].groups, member.groups,
        "the true originals"
    );

    runner.decide_as_a_person(&approve).await.unwrap();
    let mut reports = Vec::new();
    for follower in followers {
        reports.push(follower.await.unwrap().unwrap());
    }
    let captured = reports
        .iter()
        .filter(|r| r.output["status"] == "captured")
        .count();
    let restored: Vec<_> = reports.iter().filter(|r| r.outcome == "restored").collect();
    let backed_off = reports
        .iter()
        .filter(|r| r.outcome == "already_quarantined")
        .count();
    let requests: usize = runner
        .messages()
        .await
        .unwrap()
        .iter()
        .filter(|(subject, _)| subject.contains("approve restore?"))
        .count();
    let after = snapshot(&world, &member).await;
    write_row(
        "2-duplicates",
        &Row {
            order: 2,
            scenario: "one finding delivered 10 times at once, then a second finding while isolated".into(),
            runs: 11,
            faults_injected: "10 simultaneous executions for one instance + 1 later".into(),
            contained: usize::from(restored.len() == 1),
            restored_exactly: usize::from(after == before),
            lost_originals: usize::from(record.interfaces[0].groups != member.groups),
            panics: 0,
            notes: format!(
                "{captured} captured record, {requests} approval request, {} executions ended already quarantined",
                backed_off + 1
            ),
        },
    );
    assert_eq!(captured, 1, "exactly one execution captured");
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].execution_arn, owner);
    assert_eq!(backed_off, 9);
    assert_eq!(requests, 1, "one approval request in all");
    assert_eq!(after, before, "restored exactly, claim released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_in_one_vpc_isolated_at_once_share_groups_and_never_collide() {
    let moto = Moto::start();
    let world = moto.world();
    // Four instances in one new VPC (no Cordon groups yet), two to a subnet sharing its ACL.
    let vpc = world.vpc("10.40.0.0/16", false).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let mut members = Vec::new();
    for half in 0..2 {
        let subnet = world
            .subnet(&vpc, &format!("10.40.{half}.0/24"), None)
            .await;
        let acl = world
            .custom_acl(
                &vpc,
                &[&subnet],
                &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
            )
            .await;
        for _ in 0..2 {
            let (instance, enis) = world.instance(&[(&subnet, &[web.as_str()])], false).await;
            members.push(Member {
                instance,
                vpc: vpc.clone(),
                eni: enis[0].clone(),
                groups: vec![web.clone()],
                acl: acl.clone(),
            });
        }
    }
    let mut before = Vec::new();
    for member in &members {
        before.push(snapshot(&world, member).await);
    }
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let mut executions = Vec::new();
    for (n, member) in members.iter().enumerate() {
        let remote = format!("198.51.100.{}", n + 1);
        let delivery = event(finding_for(&member.instance, 8.0, &remote));
        executions.push(runner.start_execution(&delivery, 600).await.unwrap());
    }
    let followers: Vec<_> = executions
        .iter()
        .map(|arn| {
            let (runner, arn) = (runner.clone(), arn.clone());
            tokio::spawn(async move { runner.follow(&arn, DecisionMode::Approve).await })
        })
        .collect();
    let mut reports = Vec::new();
    for follower in followers {
        reports.push(follower.await.unwrap().unwrap());
    }
    let mut isolation_groups = BTreeSet::new();
    let mut numbers: BTreeMap<(String, bool), Vec<i64>> = BTreeMap::new();
    let mut contained_count = 0;
    for report in &reports {
        let value = serde_json::to_value(report).unwrap();
        contained_count += usize::from(contained(&value));
        for eni in report.containment["isolation"]["enis"].as_array().unwrap() {
            isolation_groups.insert(eni["groups_now"].to_string());
        }
        let entries = report.containment["nacl"]["nacl_entries"].as_array();
        for entry in entries.unwrap_or_else(|| panic!("no NACL entries: {}", report.containment)) {
            numbers
                .entry((
                    entry["acl_id"].as_str().unwrap().into(),
                    entry["egress"].as_bool().unwrap(),
                ))
                .or_default()
                .push(entry["rule_number"].as_i64().unwrap());
        }
    }
    let collisions: usize = numbers
        .values()
        .map(|n| n.len() - n.iter().collect::<BTreeSet<_>>().len())
        .sum();
    let cordon_groups = world.cordon_group_ids(&vpc).await;
    let mut restored = 0;
    for (member, before) in members.iter().zip(&before) {
        restored += usize::from(snapshot(&world, member).await == *before);
    }
    write_row(
        "3-same-vpc",
        &Row {
            order: 3,
            scenario: "4 instances in one new VPC (2 per ACL) contained at the same moment".into(),
            runs: members.len(),
            faults_injected: "simultaneous group creation and ACL rule allocation".into(),
            contained: contained_count,
            restored_exactly: restored,
            lost_originals: 0,
            panics: 0,
            notes: format!(
                "{} isolation group(s) on the ENIs, {} rule-number collisions",
                isolation_groups.len(),
                collisions
            ),
        },
    );
    assert_eq!(
        contained_count,
        members.len(),
        "{:?}",
        reports.iter().map(|r| &r.containment).collect::<Vec<_>>()
    );
    assert_eq!(
        isolation_groups.len(),
        1,
        "one shared isolation group: {isolation_groups:?}"
    );
    // The isolation group stays after every restore; the conversion group goes with the last
    // restore that finds no other claim in the VPC (restores ending at once may each see
    // another's, and leave it).
    assert!(cordon_groups.contains_key("isolation"), "{cordon_groups:?}");
    assert_eq!(collisions, 0, "{numbers:?}");
    assert_eq!(restored, members.len());
}

/// Runs `cordon isolate` on the finding at `path` and SIGKILLs it while its call `k + 1` (of
/// the faulted services) is held. A run that needs fewer calls this time (the order of
/// concurrent branches varies) ends by itself, and is checked the same way by the caller.
async fn isolate_killed_at(endpoint: &str, path: &Path, k: usize) {
    let proxy = FaultProxy::start(endpoint, FaultPlan::holding_after(k as u64)).await;
    let mut child = cordon_command(
        &proxy.endpoint,
        &["isolate", "--finding", path.to_str().unwrap()],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    tokio::select! {
        _ = proxy.until_held() => child.kill().await.unwrap(),
        ended = child.wait() => {
            ended.unwrap();
            eprintln!("kill point {}: the run made fewer calls and ended", k + 1);
        }
    }
}

/// Kills `cordon isolate` at every call it makes (SIGKILL while the call is held), runs it
/// again, and checks that it converges on the uninterrupted outcome; then restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_at_any_ec2_call_is_rerun_and_converges() {
    let moto = Moto::start();
    let world = moto.world();
    let dir = temp_dir("kill");
    let finding_of = |member: &Member| -> PathBuf {
        let path = dir.join(format!("{}.json", member.instance));
        std::fs::write(
            &path,
            finding_for(&member.instance, 8.0, "198.51.100.7").to_string(),
        )
        .unwrap();
        path
    };
    // The uninterrupted run in a fresh VPC: how many calls, and the outcome to reach.
    let reference = fleet(&world, 1, 100).await.remove(0);
    let counting = FaultProxy::start(&moto.endpoint, FaultPlan::none()).await;
    let path = finding_of(&reference);
    let output = cordon(
        &counting.endpoint,
        &["isolate", "--finding", path.to_str().unwrap()],
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let calls = counting.actions();
    let expected_entries = world.denies(&reference.acl).await.len();

    let points = calls.len();
    let members = fleet(&world, points, 110).await;
    let (mut converged, mut restored, mut lost, mut panics) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for (k, member) in members.iter().enumerate() {
        let before = snapshot(&world, member).await;
        let path = finding_of(member);
        isolate_killed_at(&moto.endpoint, &path, k).await;

        let rerun = cordon(
            &moto.endpoint,
            &["isolate", "--finding", path.to_str().unwrap()],
        )
        .await;
        panics += usize::from(panicked(&rerun));
        let isolation = world
            .cordon_group_ids(&member.vpc)
            .await
            .get("isolation")
            .cloned();
        let record = world.kept_record(&member.instance).await.ok().flatten();
        let keeps = record
            .as_ref()
            .is_some_and(|r| r.interfaces[0].groups == member.groups);
        lost += usize::from(!keeps);
        let denies = world.denies(&member.acl).await;
        let ok = rerun.status.code() == Some(0)
            && Some(world.eni_groups(&member.eni).await) == isolation.map(|g| vec![g])
            && denies.len() == expected_entries
            && keeps;
        converged += usize::from(ok);
        let back = cordon(
            &moto.endpoint,
            &[
                "restore",
                "--instance",
                &member.instance,
                "--trust-unverified",
            ],
        )
        .await;
        panics += usize::from(panicked(&back));
        let after = snapshot(&world, member).await;
        if back.status.code() == Some(0) && after == before {
            restored += 1;
        }
        if !ok || after != before {
            failures.push(format!(
                "killed at call {} ({}): rerun {:?} {}, denies {denies:?} (want {expected_entries}), restore {:?} {} {}, after {after:?} vs {before:?}",
                k + 1,
                calls[k],
                rerun.status.code(),
                String::from_utf8_lossy(&rerun.stderr),
                back.status.code(),
                String::from_utf8_lossy(&back.stdout),
                String::from_utf8_lossy(&back.stderr),
            ));
        }
    }
    write_row(
        "4-kill",
        &Row {
            order: 4,
            scenario: "`cordon isolate` SIGKILLed at each of its EC2, Auto Scaling, IAM and ELB calls (first use in a VPC), re-run, then `cordon restore`".into(),
            runs: points,
            faults_injected: format!("kill at call 1..{points}: {}", calls.join(", ")),
            contained: converged,
            restored_exactly: restored,
            lost_originals: lost,
            panics,
            notes: "each re-run reaches the uninterrupted outcome: ENI on the isolation group only, the same deny entries, the true originals in the tags".into(),
        },
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!((converged, restored, lost, panics), (points, points, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_execution_leaves_enough_on_the_instance_for_cordon_restore() {
    let moto = Moto::start();
    let world = moto.world();
    let member = fleet(&world, 1, 0).await.remove(0);
    let before = snapshot(&world, &member).await;
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let arn = runner
        .start_execution(
            &event(finding_for(&member.instance, 8.0, "198.51.100.7")),
            600,
        )
        .await
        .unwrap();
    let follower = {
        let (runner, arn) = (runner.clone(), arn.clone());
        tokio::spawn(async move { runner.follow(&arn, DecisionMode::Wait).await })
    };
    while runner.approval_links(&arn).await.unwrap().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The execution is lost: stopped, its history of no use to anyone.
    let sfn = aws_sdk_sfn::Client::new(&moto.sdk_config());
    sfn.stop_execution()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap();
    // moto's interpreter keeps a stopped execution's waiting task until its timeout: the
    // follower is not waited for; the execution is gone for Cordon's purposes.
    follower.abort();
    let isolated = snapshot(&world, &member).await;
    assert_ne!(isolated.groups, before.groups, "still isolated");

    // The claim's record, sealed by the execution's capture, checked with the stack's key.
    let output = cordon(
        &moto.endpoint,
        &[
            "restore",
            "--instance",
            &member.instance,
            "--record-key",
            &runner.record_key.key_id,
        ],
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after = snapshot(&world, &member).await;
    write_row(
        "5-lost-execution",
        &Row {
            order: 5,
            scenario: "execution stopped while waiting for approval; `cordon restore` from the instance's tags".into(),
            runs: 1,
            faults_injected: "StopExecution".into(),
            contained: usize::from(isolated.groups != before.groups),
            restored_exactly: usize::from(after == before),
            lost_originals: usize::from(after.groups != before.groups),
            panics: usize::from(panicked(&output)),
            notes: "groups, ACL entries, tags, termination protection and claim all as before".into(),
        },
    );
    assert_eq!(after, before);
}

/// An execution waiting for approval is lost (stopped), so break glass is the way back, and
/// meanwhile whoever may tag the claim group rewrites the record it keeps to name a group of
/// their choosing. `cordon restore` with the stack's record key refuses that record and
/// changes nothing; only `--trust-unverified` uses it, with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewritten_record_is_refused_by_cordon_restore() {
    let moto = Moto::start();
    let world = moto.world();
    let member = fleet(&world, 1, 0).await.remove(0);
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let arn = runner
        .start_execution(
            &event(finding_for(&member.instance, 8.0, "198.51.100.7")),
            600,
        )
        .await
        .unwrap();
    let follower = {
        let (runner, arn) = (runner.clone(), arn.clone());
        tokio::spawn(async move { runner.follow(&arn, DecisionMode::Wait).await })
    };
    while runner.approval_links(&arn).await.unwrap().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let sfn = aws_sdk_sfn::Client::new(&moto.sdk_config());
    sfn.stop_execution()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap();
    follower.abort();
    // An administrator's own deny, which a record anyone may write names as Cordon's.
    world
        .acl_entry(
            &member.acl,
            150,
            false,
            aws_sdk_ec2::types::RuleAction::Deny,
            "192.0.2.0/24",
        )
        .await;
    let forged_acl_record = format!("cordon:{}:deadbeef:0", member.instance);
    world
        .tag(&member.acl, &forged_acl_record, "in:150:192.0.2.0/24")
        .await;
    let isolated = snapshot(&world, &member).await;

    // The attacker's choice: a group that lets everything in.
    let open = world.security_group(&member.vpc, "wide-open", 0).await;
    let claim = world.cordon_group_ids(&member.vpc).await["claim"].clone();
    let mut forged = world.kept_record(&member.instance).await.unwrap().unwrap();
    assert_eq!(forged.interfaces[0].groups, member.groups);
    // As long as the original (two group ids), so that it spans the same chunks.
    let chosen = vec![open.clone(), member.groups[1].clone()];
    forged.interfaces[0].groups = chosen.clone();
    for (key, value) in cordon_core::record::state_tags(&forged) {
        world.tag(&claim, &key, &value).await;
    }
    let key = runner.record_key.key_id.clone();
    let restore = |extra: &'static [&'static str]| {
        let (endpoint, instance, key) =
            (moto.endpoint.clone(), member.instance.clone(), key.clone());
        async move {
            let mut args = vec!["restore", "--instance", &instance, "--record-key", &key];
            args.extend(extra);
            cordon(&endpoint, &args).await
        }
    };

    let refused = restore(&[]).await;
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let report: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(report["records_refused"][0]["resource"], claim.as_str());
    assert!(
        report["records_refused"].to_string().contains("cordon:i-"),
        "the forged ACL record is refused too: {report}"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused the record"));
    assert_eq!(
        snapshot(&world, &member).await,
        isolated,
        "nothing changed: still isolated, the denies and the claim in place"
    );

    let trusted = restore(&["--trust-unverified"]).await;
    assert_eq!(
        trusted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(
        String::from_utf8_lossy(&trusted.stderr).contains("WARNING: used the UNVERIFIED record")
    );
    assert_eq!(world.eni_groups(&member.eni).await, chosen);
}

/// Five `cordon isolate` of one instance at the same moment (break glass beside break glass),
/// then one `cordon restore`: every ACL exactly as before. Each containment keeps its own
/// record of the denies it adds; before, they overwrote one shared record and left denies
/// that no record named (about one round in three).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_break_glass_isolations_leave_no_deny_that_no_record_names() {
    let moto = Moto::start();
    let world = moto.world();
    let rounds = size("RELIABILITY_CONCURRENT_ROUNDS", 4);
    let (mut contained, mut restored, mut lost, mut panics, mut orphans) = (0, 0, 0, 0, 0);
    for round in 0..rounds {
        // Two instances of one VPC, each in a subnet with its own ACL: the remote address is
        // denied on the first one's ACL, its own address on the other's.
        let members = fleet(&world, 2, round).await;
        let member = &members[0];
        let acls_before = world.acls(&member.vpc).await;
        let groups_before = world.eni_groups(&member.eni).await;
        let isolations: Vec<_> = (0..5)
            .map(|_| {
                let (endpoint, instance) = (moto.endpoint.clone(), member.instance.clone());
                tokio::spawn(async move {
                    let args = [
                        "isolate",
                        "--instance",
                        &instance,
                        "--remote-ip",
                        "198.51.100.7",
                    ];
                    cordon(&endpoint, &args).await
                })
            })
            .collect();
        let mut outputs = Vec::new();
        for isolation in isolations {
            outputs.push(isolation.await.unwrap());
        }
        panics += outputs.iter().filter(|o| panicked(o)).count();
        let isolated = world.eni_groups(&member.eni).await;
        contained += usize::from(isolated != groups_before && isolated.len() == 1);
        let output = cordon(
            &moto.endpoint,
            &[
                "restore",
                "--instance",
                &member.instance,
                "--trust-unverified",
            ],
        )
        .await;
        panics += usize::from(panicked(&output));
        let acls_after = world.acls(&member.vpc).await;
        let groups_after = world.eni_groups(&member.eni).await;
        lost += usize::from(groups_after != groups_before);
        let left: usize = acls_after
            .iter()
            .map(|(id, (entries, _))| {
                entries
                    .iter()
                    .filter(|e| !acls_before[id].0.contains(e))
                    .count()
            })
            .sum();
        orphans += left;
        restored += usize::from(acls_after == acls_before && groups_after == groups_before);
    }
    write_row(
        "6-concurrent-break-glass",
        &Row {
            order: 6,
            scenario: "5 `cordon isolate` of one instance at once, then one `cordon restore`"
                .into(),
            runs: rounds,
            faults_injected: "5 simultaneous containments of one instance per round".into(),
            contained,
            restored_exactly: restored,
            lost_originals: lost,
            panics,
            notes: format!("{orphans} orphan deny entries left after restore"),
        },
    );
    assert_eq!((restored, orphans, lost, panics), (rounds, 0, 0, 0));
}

/// Renders RELIABILITY.md from the rows the scenarios wrote (`scripts/reliability`).
#[test]
#[ignore = "run by scripts/reliability after the scenarios"]
fn render_reliability_table() {
    let dir = repo_root().join("target/reliability");
    let mut rows: Vec<Row> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
        .collect();
    rows.sort_by_key(|row| row.order);
    let mut table = String::from(
        "| Scenario | Runs | Faults injected | Contained | Restored exactly | Lost originals | Panics | Notes |\n|---|---:|---|---:|---:|---:|---:|---|\n",
    );
    for row in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.scenario,
            row.runs,
            row.faults_injected,
            row.contained,
            row.restored_exactly,
            row.lost_originals,
            row.panics,
            row.notes
        ));
    }
    let path: &Path = &repo_root().join("RELIABILITY.md");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (head, tail) = match (text.find("<!-- table -->"), text.find("<!-- /table -->")) {
        (Some(start), Some(end)) => (text[..start].to_string(), text[end..].to_string()),
        _ => (
            "# Reliability\n\n".to_string(),
            "<!-- /table -->\n".to_string(),
        ),
    };
    std::fs::write(path, format!("{head}<!-- table -->\n{table}{tail}")).unwrap();
    println!("{table}");
}
