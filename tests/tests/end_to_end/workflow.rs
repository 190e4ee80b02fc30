//! Full executions of `statemachine/quarantine.asl.json` on moto's ASL interpreter, through
//! the local runner: the path taken, the instance's network state, the emails sent.

use cordon::runner::{DecisionMode, RunReport, Runner};
use cordon_core::config::Config;
use cordon_tests::{finding_for, Moto, World};
use serde_json::{json, Value};

fn event(finding: Value) -> Value {
    json!({"version": "0", "id": "e-1", "detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "account": "123456789012", "region": cordon_tests::REGION, "resources": [], "detail": finding})
}

/// moto, prepared for executions (before anything is created), and the test's view of EC2.
async fn started() -> (Moto, Runner, World) {
    let moto = Moto::start();
    let runner = Runner::start(&moto.endpoint, Config::default())
        .await
        .unwrap();
    let world = moto.world();
    (moto, runner, world)
}

/// Two subnets with their own ACLs and an instance with one ENI in each.
async fn topology(world: &World) -> (String, String, Vec<String>, Vec<Vec<String>>) {
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let a = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let b = world.subnet(&vpc, "10.0.2.0/24", None).await;
    let public = world.subnet(&vpc, "10.0.0.0/24", None).await;
    for subnet in [&a, &b, &public] {
        world
            .custom_acl(
                &vpc,
                &[subnet],
                &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
            )
            .await;
    }
    let web = world.security_group(&vpc, "web", 443).await;
    let ssh = world.security_group(&vpc, "ssh", 22).await;
    let db = world.security_group(&vpc, "db", 5432).await;
    let (instance, enis) = world
        .instance(&[(&a, &[&web, &ssh]), (&b, &[&db])], false)
        .await;
    (vpc, instance, enis, vec![vec![web, ssh], vec![db]])
}

fn path(report: &RunReport) -> Vec<&str> {
    // The Parallel state's branches may be entered in any order.
    let mut states: Vec<&str> = report.states.iter().map(String::as_str).collect();
    if let Some(at) = states.iter().position(|s| *s == "Contain") {
        let end = (at + 1 + cordon_core::measures::MEASURES.len()).min(states.len());
        states[at + 1..end].sort();
    }
    states
}

fn subjects(report: &RunReport) -> Vec<String> {
    report
        .messages
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect()
}

const CONTAINED: [&str; 11] = [
    "CaptureState",
    "ShouldContain",
    "Contain",
    "BlockNetworkAcl",
    "CutCredentials",
    "DeregisterFromTargetGroups",
    "HoldInAutoScalingGroup",
    "IsolateSecurityGroups",
    "SnapshotVolumes",
    "ContainmentOutcome",
    "RequestApproval",
];

#[tokio::test]
async fn approve_restores_exactly_what_was_there() {
    let (_moto, runner, world) = started().await;
    let (vpc, instance, enis, groups) = topology(&world).await;
    let acls_before = world.acls(&vpc).await;
    let tags_before = world.instance_tags(&instance).await;

    let report = runner
        .run(
            &event(finding_for(&instance, 8.0, "198.51.100.7")),
            DecisionMode::Approve,
            300,
        )
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED");
    assert_eq!(report.outcome, "restored");
    let mut expected = CONTAINED.to_vec();
    expected.extend([
        "Decision",
        "Restore",
        "RestoreOutcome",
        "NotifyRestored",
        "Restored",
    ]);
    assert_eq!(path(&report), expected);
    assert_eq!(report.containment["isolation"]["status"], "done");
    assert_eq!(
        report.containment["nacl"]["nacl_entries"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    for (eni, original) in enis.iter().zip(&groups) {
        assert_eq!(&world.eni_groups(eni).await, original);
    }
    assert_eq!(world.acls(&vpc).await, acls_before);
    assert_eq!(world.instance_tags(&instance).await, tags_before);
    let subjects = subjects(&report);
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects[0].contains("approve restore?") && subjects[1].ends_with("restored"),
        "{subjects:?}"
    );
    assert!(
        report.output["approval"]["decision"] == "approve"
            && report.output["approval"]["approver"] == "cordon run"
    );
}

/// Whoever may create security groups in the instance's VPC makes one named as its claim
/// before the finding (no Cordon tag: the tag guard SCP keeps those to Cordon's roles). The
/// execution contains the instance all the same, without a claim, says so, and gives it back
/// on approval; the squatting group is left as it was.
#[tokio::test]
async fn a_group_squatting_the_claims_name_holds_no_finding_back() {
    let (_moto, runner, world) = started().await;
    let (vpc, instance, enis, groups) = topology(&world).await;
    let squatter = world
        .security_group(&vpc, &format!("cordon-claim-{instance}"), 443)
        .await;
    let report = runner
        .run(
            &event(finding_for(&instance, 8.0, "198.51.100.7")),
            DecisionMode::Approve,
            300,
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    assert_eq!(report.containment["isolation"]["status"], "done");
    assert!(
        report.output.to_string().contains("Cordon.ClaimNameTaken"),
        "the execution says it holds no claim: {}",
        report.output
    );
    for (eni, original) in enis.iter().zip(&groups) {
        assert_eq!(&world.eni_groups(eni).await, original);
    }
    let names = world.group_names(&vpc).await;
    assert_eq!(
        names.get(&squatter).map(String::as_str),
        Some(format!("cordon-claim-{instance}").as_str()),
        "{names:?}"
    );
}

/// Report-only (the stack's `Mode`): the execution reads and plans every measure, changes
/// nothing in EC2 (no group, no claim, no tag, no ACL entry, no attribute, no snapshot),
/// emails what it would have done per interface and per ACL entry, and asks for no decision.
#[tokio::test]
async fn report_only_changes_nothing_and_emails_what_it_would_have_done() {
    let moto = Moto::start();
    let config = Config {
        mode: cordon_core::config::Mode::ReportOnly,
        ..Config::default()
    };
    let runner = Runner::start(&moto.endpoint, config).await.unwrap();
    let world = moto.world();
    let (vpc, instance, enis, groups) = topology(&world).await;
    let before = (
        world.groups(&vpc).await,
        world.acls(&vpc).await,
        world.instance_tags(&instance).await,
        world.termination_protection(&instance).await,
    );

    let report = runner
        .run(
            &event(finding_for(&instance, 8.0, "198.51.100.7")),
            DecisionMode::Approve,
            300,
        )
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED");
    assert_eq!(report.outcome, "report_only");
    let mut expected = CONTAINED[..CONTAINED.len() - 1].to_vec();
    expected.extend(["NotifyReportOnly", "ReportedOnly"]);
    assert_eq!(path(&report), expected);

    for (eni, original) in enis.iter().zip(&groups) {
        assert_eq!(&world.eni_groups(eni).await, original);
    }
    let after = (
        world.groups(&vpc).await,
        world.acls(&vpc).await,
        world.instance_tags(&instance).await,
        world.termination_protection(&instance).await,
    );
    assert_eq!(after, before, "report-only changed EC2");
    assert!(world.evidence_of(&instance).await.is_empty());

    // As many denies planned as a containment makes (see approve_restores_exactly_...).
    assert_eq!(report.containment["nacl"]["status"], "report_only");
    assert_eq!(
        report.containment["nacl"]["would_deny"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    assert_eq!(report.containment["isolation"]["status"], "report_only");
    let subjects = subjects(&report);
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert!(
        subjects[0].starts_with("Cordon: report-only, would contain"),
        "{subjects:?}"
    );
    let body = report.messages[0]["body"].as_str().unwrap();
    for eni in &enis {
        assert!(
            body.contains(&format!("{eni}: would move from")),
            "{eni}: {body}"
        );
    }
    assert!(body.contains("would deny 198.51.100.7/32"), "{body}");
    assert!(
        body.contains("would turn termination protection on"),
        "{body}"
    );
    assert!(
        body.contains("REPORT ONLY: Cordon changed nothing"),
        "{body}"
    );
    assert!(!body.contains("Approve restore"), "{body}");
}

#[tokio::test]
async fn reject_keeps_the_instance_isolated_and_says_how_to_restore() {
    let (_moto, runner, world) = started().await;
    let (vpc, instance, enis, _) = topology(&world).await;

    let report = runner
        .run(
            &event(finding_for(&instance, 8.0, "198.51.100.7")),
            DecisionMode::Reject,
            300,
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, "kept_isolated");
    let mut expected = CONTAINED.to_vec();
    expected.extend(["Decision", "NotifyKeptIsolated", "KeptIsolated"]);
    assert_eq!(path(&report), expected);
    let isolation = world.cordon_group_ids(&vpc).await["isolation"].clone();
    for eni in &enis {
        assert_eq!(world.eni_groups(eni).await, vec![isolation.clone()]);
    }
    let last = report.messages.last().unwrap();
    assert!(last["subject"].as_str().unwrap().ends_with("kept isolated"));
    let body = last["body"].as_str().unwrap();
    assert!(
        body.contains(
            "a decision to keep it isolated arrived, naming cordon run (as the answer says"
        ) && body.contains(&format!("cordon restore --instance {instance}"))
    );
}

#[tokio::test]
async fn an_unanswered_request_times_out_into_kept_isolated() {
    let (_moto, runner, world) = started().await;
    let (vpc, instance, enis, _) = topology(&world).await;

    let report = runner
        .run(
            &event(finding_for(&instance, 8.0, "198.51.100.7")),
            DecisionMode::Wait,
            3,
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, "kept_isolated");
    let mut expected = CONTAINED.to_vec();
    expected.extend(["NotifyKeptIsolated", "KeptIsolated"]);
    assert_eq!(path(&report), expected, "the timeout skips the Decision");
    let waited = report
        .timeline
        .iter()
        .find(|v| v.name == "NotifyKeptIsolated")
        .unwrap()
        .at
        - report
            .timeline
            .iter()
            .find(|v| v.name == "RequestApproval")
            .unwrap()
            .at;
    assert!(
        waited >= 2.9,
        "waited {waited:.1}s for a 3 s approval timeout"
    );
    let isolation = world.cordon_group_ids(&vpc).await["isolation"].clone();
    assert_eq!(world.eni_groups(&enis[0]).await, vec![isolation]);
    assert!(report.messages.last().unwrap()["body"]
        .as_str()
        .unwrap()
        .contains("expired"));
    // The expired request's link now gets a clear page, and changes nothing.
    let approve = report
        .approval_url
        .clone()
        .expect("the approval link was sent");
    let page = reqwest::get(&approve).await.unwrap();
    assert_eq!(page.status().as_u16(), 410);
    // The link expires with the request: within that second the page may say either.
    let text = page.text().await.unwrap();
    assert!(
        text.contains("no longer waiting") || text.contains("expired"),
        "{text}"
    );
}

#[tokio::test]
async fn a_full_acl_makes_a_partial_containment_that_is_still_isolated_and_reported() {
    let (_moto, runner, world) = started().await;
    let (vpc, instance, enis, _) = topology(&world).await;
    let acls = world.acls(&vpc).await;
    let public_acl = acls
        .iter()
        .find(|(_, (entries, _))| entries.len() == 2)
        .map(|(id, _)| id.clone());
    // Fill one ACL (any of the three custom ones) to its quota of inbound rules.
    let full = public_acl.unwrap_or_else(|| acls.keys().next().unwrap().clone());
    for n in 0..19 {
        world
            .acl_entry(
                &full,
                200 + n,
                false,
                aws_sdk_ec2::types::RuleAction::Allow,
                &format!("10.9.{n}.0/24"),
            )
            .await;
    }

    let report = runner
        .run(
            &event(finding_for(&instance, 8.0, "198.51.100.7")),
            DecisionMode::Wait,
            3,
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, "partial");
    assert_eq!(report.containment["nacl"]["status"], "partial");
    assert_eq!(
        report.containment["nacl"]["errors"][0]["error"],
        "Cordon.NaclQuotaExceeded"
    );
    let isolation = world.cordon_group_ids(&vpc).await["isolation"].clone();
    for eni in &enis {
        assert_eq!(world.eni_groups(eni).await, vec![isolation.clone()]);
    }
    let request = &report.messages[0];
    assert!(request["subject"]
        .as_str()
        .unwrap()
        .contains("PARTLY isolated"));
    assert!(request["body"]
        .as_str()
        .unwrap()
        .contains("Cordon.NaclQuotaExceeded"));
}

#[tokio::test]
async fn a_non_instance_finding_is_skipped_with_no_ec2_change_and_no_email() {
    let (_moto, runner, world) = started().await;
    let (vpc, instance, _, _) = topology(&world).await;
    let before = (
        world.acls(&vpc).await,
        world.groups(&vpc).await,
        world.instance_tags(&instance).await,
    );
    let file = cordon_tests::findings_dir().join("accesskey-with-instance-details-archived.json");
    let mut iam: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    iam["resource"]["instanceDetails"]["instanceId"] = instance.clone().into();

    let report = runner
        .run(&event(iam), DecisionMode::Approve, 300)
        .await
        .unwrap();
    assert_eq!(report.outcome, "skipped");
    assert_eq!(report.states, ["CaptureState", "ShouldContain", "Skipped"]);
    assert!(report.output["reason"]
        .as_str()
        .unwrap()
        .contains("AccessKey"));
    assert!(report.messages.is_empty());
    assert_eq!(
        (
            world.acls(&vpc).await,
            world.groups(&vpc).await,
            world.instance_tags(&instance).await
        ),
        before
    );
}

#[tokio::test]
async fn a_second_finding_for_a_quarantined_instance_sends_no_second_request() {
    let (_moto, runner, world) = started().await;
    let (vpc, instance, _, _) = topology(&world).await;

    let first = runner
        .run(
            &event(finding_for(&instance, 8.0, "198.51.100.7")),
            DecisionMode::Wait,
            2,
        )
        .await
        .unwrap();
    assert_eq!(first.outcome, "kept_isolated");
    let acls = world.acls(&vpc).await;
    let second = runner
        .run(
            &event(finding_for(&instance, 9.0, "203.0.113.9")),
            DecisionMode::Approve,
            300,
        )
        .await
        .unwrap();
    assert_eq!(second.outcome, "already_quarantined");
    assert_eq!(
        second.states,
        ["CaptureState", "ShouldContain", "AlreadyQuarantined"]
    );
    assert!(second.output["reason"]
        .as_str()
        .unwrap()
        .contains("already quarantined"));
    let all: Vec<String> = subjects(&first)
        .into_iter()
        .chain(subjects(&second))
        .collect();
    let requests = all
        .iter()
        .filter(|s| s.contains("approve restore?"))
        .count();
    assert_eq!(
        requests, 1,
        "one approval request over both executions: {all:?}"
    );
    assert!(
        second.messages.is_empty(),
        "the second execution sends nothing"
    );
    assert_eq!(
        world.acls(&vpc).await,
        acls,
        "the second finding's address is not added"
    );
}

/// No security group that allows all traffic outlives its use, while instances of its VPC stay
/// isolated: each containment's isolation step deletes the conversion group once no interface
/// is on it, the next containment in the VPC makes it again, and neither the isolated
/// instances nor the restore of one of them needs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_of_one_vpc_stay_isolated_with_no_group_that_allows_all_traffic_left() {
    let (moto, runner, world) = started().await;
    let runner = std::sync::Arc::new(runner);
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (first, first_enis) = world.instance(&[(&subnet, &[&web])], false).await;
    let (second, second_enis) = world.instance(&[(&subnet, &[&web])], false).await;
    let allow_all_left =
        |groups: &std::collections::BTreeMap<String, String>| groups.get("conversion").cloned();

    let first_waits =
        cordon_tests::until_decision(&runner, &event(finding_for(&first, 8.0, "198.51.100.7")))
            .await;
    let groups = world.cordon_group_ids(&vpc).await;
    assert_eq!(allow_all_left(&groups), None, "{groups:?}");
    let isolation = groups["isolation"].clone();
    assert_eq!(
        world.eni_groups(&first_enis[0]).await,
        std::slice::from_ref(&isolation)
    );

    let second_waits =
        cordon_tests::until_decision(&runner, &event(finding_for(&second, 8.0, "198.51.100.7")))
            .await;
    let groups = world.cordon_group_ids(&vpc).await;
    assert_eq!(allow_all_left(&groups), None, "{groups:?}");
    assert_eq!(groups["isolation"], isolation, "one isolation group");
    assert_eq!(
        world.eni_groups(&second_enis[0]).await,
        std::slice::from_ref(&isolation)
    );

    // A conversion group an isolation step could not delete (made here as that step makes
    // it): the restore deletes it.
    cordon_core::isolate::ensure_groups(
        &moto
            .worker_aws("isolate-sg")
            .ec2(Some(cordon_tests::REGION)),
        std::slice::from_ref(&vpc),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    assert!(allow_all_left(&world.cordon_group_ids(&vpc).await).is_some());

    // The first is given back; the second stays isolated.
    runner
        .decide_as_a_person(&first_waits.approve)
        .await
        .unwrap();
    let report = first_waits.follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    assert_eq!(
        world.eni_groups(&first_enis[0]).await,
        std::slice::from_ref(&web)
    );
    assert_eq!(world.eni_groups(&second_enis[0]).await, [isolation]);
    let groups = world.cordon_group_ids(&vpc).await;
    assert_eq!(allow_all_left(&groups), None, "{groups:?}");

    runner
        .decide_as_a_person(&second_waits.approve)
        .await
        .unwrap();
    let report = second_waits.follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    assert_eq!(world.eni_groups(&second_enis[0]).await, [web]);
    assert_eq!(allow_all_left(&world.cordon_group_ids(&vpc).await), None);
}
