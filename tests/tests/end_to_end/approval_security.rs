//! The approval endpoint under attack, on real executions of the state machine on moto: GET
//! never decides, and an altered, forged, replayed or borrowed link gets a clear page and
//! changes nothing — the execution still waits in RequestApproval with the same history, and
//! the instance is still on Cordon's isolation group.
//!
//! Expiry itself is tested in `workers/core/src/approval.rs` (the runner's signing key is
//! private, so no test here can sign a link that expires): moving `e` of a real link is
//! refused here as a forgery, because the signature covers it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cordon::runner::Runner;
use cordon_core::config::Config;
use cordon_tests::{finding_for, until_decision, AwaitingDecision, Moto, World};
use reqwest::Url;
use serde_json::{json, Value};

fn event(finding: Value) -> Value {
    json!({"version": "0", "id": "e-1", "detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "account": "123456789012", "region": cordon_tests::REGION, "resources": [], "detail": finding})
}

/// moto's Step Functions, read raw (its JSON protocol): this crate has no Step Functions SDK,
/// and reading is all the test does with it.
async fn sfn(moto: &Moto, operation: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/", moto.endpoint))
        .header("x-amz-target", format!("AWSStepFunctions.{operation}"))
        .header("content-type", "application/x-amz-json-1.0")
        // The test's own call, named as the harness's are (the IAM judgement of the suite's
        // calls leaves them out, and fails on a call that names no one).
        .header("user-agent", "app/cordon-local")
        // moto routes a request by the service named in its credential scope.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/states/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{operation}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

async fn history(moto: &Moto, execution_arn: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut next = Value::Null;
    loop {
        let mut request = json!({"executionArn": execution_arn, "includeExecutionData": true});
        if !next.is_null() {
            request["nextToken"] = next;
        }
        let page = sfn(moto, "GetExecutionHistory", request).await;
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        next = page["nextToken"].clone();
        if next.is_null() {
            return events;
        }
    }
}

/// Everything a wrongly accepted request would change: the execution's status, the state it
/// is in, its history, and the instance's interfaces' groups.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    status: String,
    state: String,
    events: usize,
    groups: Vec<Vec<String>>,
}

async fn snapshot(moto: &Moto, world: &World, execution_arn: &str, enis: &[String]) -> Snapshot {
    let described = sfn(
        moto,
        "DescribeExecution",
        json!({"executionArn": execution_arn}),
    )
    .await;
    let events = history(moto, execution_arn).await;
    let state = events
        .iter()
        .rev()
        .find_map(|e| e["stateEnteredEventDetails"]["name"].as_str())
        .unwrap_or_default()
        .to_string();
    let mut groups = Vec::new();
    for eni in enis {
        groups.push(world.eni_groups(eni).await);
    }
    Snapshot {
        status: described["status"].as_str().unwrap().to_string(),
        state,
        events: events.len(),
        groups,
    }
}

/// The execution, once it is running in `state` and its history has settled (moto adds a
/// task's events a moment after it is scheduled): one second without any change.
async fn settled(
    moto: &Moto,
    world: &World,
    execution_arn: &str,
    enis: &[String],
    state: &str,
) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    let mut stable = 0;
    loop {
        let now = snapshot(moto, world, execution_arn, enis).await;
        let is_waiting = now.status == "RUNNING" && now.state == state;
        stable = if is_waiting && last.as_ref() == Some(&now) {
            stable + 1
        } else {
            0
        };
        if stable == 4 {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the execution never settled in {state}: {now:?}"
        );
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Gives a wrongly accepted decision time to move the execution on, then checks it did not.
async fn unchanged(
    moto: &Moto,
    world: &World,
    execution_arn: &str,
    enis: &[String],
    before: &Snapshot,
    what: &str,
) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        &snapshot(moto, world, execution_arn, enis).await,
        before,
        "{what} changed the execution or the instance"
    );
}

/// One instance in its own subnet, with two groups on its one interface.
async fn instance(world: &World, vpc: &str, cidr: &str) -> (String, String, Vec<String>) {
    let subnet = world.subnet(vpc, cidr, None).await;
    let web = world.security_group(vpc, &format!("web-{cidr}"), 443).await;
    let ssh = world.security_group(vpc, &format!("ssh-{cidr}"), 22).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web, &ssh])], false).await;
    (instance, enis[0].clone(), vec![web, ssh])
}

/// Starts an execution for `instance` and returns once its approval email is out.
async fn start(runner: &Arc<Runner>, instance: &str) -> AwaitingDecision {
    until_decision(runner, &event(finding_for(instance, 8.0, "198.51.100.7"))).await
}

/// The link's query parameter `name`.
fn param(link: &str, name: &str) -> String {
    Url::parse(link)
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == name)
        .unwrap_or_else(|| panic!("{link} has no {name}"))
        .1
        .into_owned()
}

/// The link with its parameter `name` set to `value`, everything else as it was.
fn with(link: &str, name: &str, value: &str) -> String {
    let mut url = Url::parse(link).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    assert!(pairs.iter().any(|(k, _)| k == name), "{link} has no {name}");
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.to_string()
}

/// The signature with one hex digit changed.
fn flip_signature(link: &str) -> String {
    let mut s = param(link, "s");
    let last = if s.ends_with('0') { "1" } else { "0" };
    s.replace_range(s.len() - 1.., last);
    with(link, "s", &s)
}

/// A person's GET of the link: (status, page).
async fn get(link: &str) -> (u16, String) {
    let response = reqwest::get(link).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The page's form as a browser posts it: the link's fields and a name, to the bare URL.
async fn post(link: &str) -> (u16, String) {
    let (base, query) = link.split_once('?').unwrap();
    let response = reqwest::Client::new()
        .post(base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{query}&approver=Mallory"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The answer is a refusal with `status` and a page that says each of `says`, and that
/// nothing was changed.
fn refused((status, page): &(u16, String), expected: u16, says: &[&str], what: &str) {
    assert_eq!(*status, expected, "{what}: {page}");
    for text in says {
        assert!(
            page.contains(text),
            "{what}: the page does not say {text:?}: {page}"
        );
    }
    assert!(
        page.to_lowercase().contains("nothing was changed"),
        "{what}: the page does not say nothing was changed: {page}"
    );
}

const NOT_VALID: [&str; 2] = [
    "This link is not valid",
    "The link is incomplete or was altered",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_either_link_again_and_again_changes_nothing() {
    let moto = Moto::start();
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let (instance, eni, _) = instance(&world, &vpc, "10.0.1.0/24").await;
    let enis = [eni];

    let AwaitingDecision {
        arn,
        follow,
        approve,
        reject,
    } = start(&runner, &instance).await;
    let before = settled(&moto, &world, &arn, &enis, "RequestApproval").await;
    let isolation = world.cordon_group_ids(&vpc).await["isolation"].clone();
    assert_eq!(before.groups, [[isolation]], "isolated while it waits");

    for round in 0..3 {
        for (link, own, other) in [
            (&approve, "id=\"approve\"", "id=\"reject\""),
            (&reject, "id=\"reject\"", "id=\"approve\""),
        ] {
            let (status, page) = get(link).await;
            assert_eq!(status, 200, "GET #{round} of {link}: {page}");
            assert!(page.contains(&format!("Restore {instance}?")), "{page}");
            // Each link renders its own decision only: a "keep isolated" link cannot approve.
            assert_eq!(page.matches("method=\"post\"").count(), 1, "{page}");
            assert!(page.contains(own) && !page.contains(other), "{page}");
        }
    }
    unchanged(&moto, &world, &arn, &enis, &before, "GET").await;
    assert!(!follow.is_finished(), "GET must not decide");

    // The links still decide after all those GETs.
    runner.decide_as_a_person(&reject).await.unwrap();
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "kept_isolated");
    assert_eq!(world.eni_groups(&enis[0]).await, before.groups[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_altered_or_backdated_link_is_refused_and_changes_nothing() {
    let moto = Moto::start();
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let (instance, eni, original) = instance(&world, &vpc, "10.0.1.0/24").await;
    let enis = [eni];

    let AwaitingDecision {
        arn,
        follow,
        approve,
        reject,
    } = start(&runner, &instance).await;
    let before = settled(&moto, &world, &arn, &enis, "RequestApproval").await;

    let expires: i64 = param(&approve, "e").parse().unwrap();
    let hostile = [
        ("a forged signature", flip_signature(&approve)),
        (
            "the reject link turned into approve",
            with(&reject, "a", "approve"),
        ),
        // `e` is signed: moving it either way is an alteration, refused as forged (403),
        // never as expired (410).
        ("an expiry moved to the past", with(&approve, "e", "1")),
        (
            "an expiry moved later",
            with(&approve, "e", &(expires + 86_400).to_string()),
        ),
        ("no signature", with(&approve, "s", "")),
    ];
    for (what, link) in &hostile {
        refused(&get(link).await, 403, &NOT_VALID, what);
        refused(&post(link).await, 403, &NOT_VALID, what);
        unchanged(&moto, &world, &arn, &enis, &before, what).await;
    }
    assert!(!follow.is_finished(), "a refused link must not decide");

    // The genuine link still works: nothing above used up the request.
    runner.decide_as_a_person(&approve).await.unwrap();
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored");
    assert_eq!(report.output["approval"]["approver"], "cordon run");
    assert_eq!(world.eni_groups(&enis[0]).await, original);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_link_cannot_decide_again_once_the_workflow_ended() {
    let moto = Moto::start();
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let (instance, eni, original) = instance(&world, &vpc, "10.0.1.0/24").await;
    let enis = [eni];

    let AwaitingDecision {
        arn,
        follow,
        approve,
        reject,
    } = start(&runner, &instance).await;
    runner.decide_as_a_person(&approve).await.unwrap();
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored");
    let after = snapshot(&moto, &world, &arn, &enis).await;
    assert_eq!(
        (after.status.as_str(), after.state.as_str()),
        ("SUCCEEDED", "Restored")
    );
    assert_eq!(after.groups[0], original);
    let emails = runner.messages_of(&arn).await.unwrap().len();

    let ended = [
        "Already decided",
        "no longer waiting for a decision (the workflow is succeeded)",
    ];
    for (what, link) in [
        ("the used approve link", &approve),
        ("the reject link", &reject),
    ] {
        refused(&post(link).await, 410, &ended, what);
        refused(&get(link).await, 410, &ended, what);
        unchanged(&moto, &world, &arn, &enis, &after, what).await;
    }
    assert_eq!(world.eni_groups(&enis[0]).await, original, "still restored");
    assert_eq!(
        runner.messages_of(&arn).await.unwrap().len(),
        emails,
        "no new email"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_link_cannot_decide_again_while_the_restore_runs() {
    let moto = Moto::start();
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let (instance, eni, _) = instance(&world, &vpc, "10.0.1.0/24").await;
    let enis = [eni];

    let AwaitingDecision {
        arn,
        follow,
        approve,
        reject,
    } = start(&runner, &instance).await;
    settled(&moto, &world, &arn, &enis, "RequestApproval").await;
    // Stop running the workers: once approved, the execution stays in Restore, waiting for
    // a worker nobody runs — the window in which a replayed token would still be accepted
    // by moto (AWS refuses it) if the page did not check the execution first.
    follow.abort();
    let (status, page) = post(&approve).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Restore approved"), "{page}");
    let running = settled(&moto, &world, &arn, &enis, "Restore").await;

    let decided = ["Already decided", "A decision was already taken"];
    for (what, link) in [
        ("the used approve link", &approve),
        ("the reject link", &reject),
    ] {
        refused(&post(link).await, 410, &decided, what);
        refused(&get(link).await, 410, &decided, what);
        unchanged(&moto, &world, &arn, &enis, &running, what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cannot_answer_another_executions_request() {
    let moto = Moto::start();
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let (instance_a, eni_a, original_a) = instance(&world, &vpc, "10.0.1.0/24").await;
    let (instance_b, eni_b, original_b) = instance(&world, &vpc, "10.0.2.0/24").await;
    let (enis_a, enis_b) = ([eni_a], [eni_b]);

    // Both wait for a decision at once. B starts once A waits: A's runner then no longer
    // reads moto's data.json, which can fail while B's containment changes EC2.
    let AwaitingDecision {
        arn: arn_a,
        follow: follow_a,
        approve: approve_a,
        ..
    } = start(&runner, &instance_a).await;
    let before_a = settled(&moto, &world, &arn_a, &enis_a, "RequestApproval").await;
    let AwaitingDecision {
        arn: arn_b,
        follow: follow_b,
        approve: approve_b,
        reject: reject_b,
    } = start(&runner, &instance_b).await;
    let before_b = settled(&moto, &world, &arn_b, &enis_b, "RequestApproval").await;
    let (task_b, execution_b) = (param(&approve_b, "k"), param(&approve_b, "x"));
    assert_ne!(param(&approve_a, "k"), task_b);
    assert_eq!(execution_b, arn_b);
    // The links name their task; the token itself is in no link.
    for (arn, links) in [
        (&arn_a, [&approve_a, &approve_a]),
        (&arn_b, [&approve_b, &reject_b]),
    ] {
        let token = cordon_tests::approval_token(&moto, arn).await;
        let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        for link in links {
            assert!(!link.contains(&token) && !link.contains(&encoded), "{link}");
        }
    }

    let b_task = with(&approve_a, "k", &task_b);
    let hostile = [
        ("A's approve link with B's task", b_task.clone()),
        (
            "A's approve link with B's task and execution",
            with(&b_task, "x", &execution_b),
        ),
        (
            "A's approve link with B's execution",
            with(&approve_a, "x", &execution_b),
        ),
    ];
    for (what, link) in &hostile {
        refused(&get(link).await, 403, &NOT_VALID, what);
        refused(&post(link).await, 403, &NOT_VALID, what);
        unchanged(&moto, &world, &arn_a, &enis_a, &before_a, what).await;
        unchanged(&moto, &world, &arn_b, &enis_b, &before_b, what).await;
    }
    assert!(!follow_a.is_finished() && !follow_b.is_finished());

    // Each genuine link decides its own execution only.
    runner.decide_as_a_person(&reject_b).await.unwrap();
    let report_b = follow_b.await.unwrap().unwrap();
    assert_eq!(report_b.outcome, "kept_isolated");
    unchanged(&moto, &world, &arn_a, &enis_a, &before_a, "B's decision").await;
    runner.decide_as_a_person(&approve_a).await.unwrap();
    let report_a = follow_a.await.unwrap().unwrap();
    assert_eq!(report_a.outcome, "restored");
    assert_eq!(world.eni_groups(&enis_a[0]).await, original_a);
    assert_ne!(world.eni_groups(&enis_b[0]).await, original_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_sent_straight_to_the_workflow_restores_nothing() {
    let moto = Moto::start();
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let (instance, eni, original) = instance(&world, &vpc, "10.0.1.0/24").await;
    let enis = [eni];
    let AwaitingDecision { arn, follow, .. } = start(&runner, &instance).await;
    let before = settled(&moto, &world, &arn, &enis, "RequestApproval").await;

    // Anyone allowed states:SendTaskSuccess (it has no resource scope) who can read the
    // history answers the task with what the approval page would send, unsealed.
    let token = cordon_tests::approval_token(&moto, &arn).await;
    let forged = json!({"decision": "approve", "approver": "Ada Analyst",
        "decided_at": "2026-12-03T10:00:00Z"});
    sfn(
        &moto,
        "SendTaskSuccess",
        json!({"taskToken": token, "output": forged.to_string()}),
    )
    .await;

    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "decision_refused", "{:?}", report.states);
    assert!(
        report.states.iter().any(|s| s == "NotifyKeptIsolated")
            && !report.states.iter().any(|s| s == "Restored"),
        "{:?}",
        report.states
    );
    assert_eq!(report.output["restore"]["status"], "decision_refused");
    // The instance is exactly as isolated as it was while it waited.
    assert_eq!(world.eni_groups(&enis[0]).await, before.groups[0]);
    assert_ne!(world.eni_groups(&enis[0]).await, original);
    let messages = runner.messages().await.unwrap();
    let (_, body) = messages
        .iter()
        .find(|(subject, _)| subject.contains("kept isolated"))
        .expect("a kept-isolated email");
    assert!(
        body.contains("a decision to restore arrived that Cordon did not make"),
        "{body}"
    );
}
