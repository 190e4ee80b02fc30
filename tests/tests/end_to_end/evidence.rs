//! The evidence measure on moto, through the real state machine: a contained instance's two
//! volumes are snapshotted at once (tagged with the finding, the instance and the execution),
//! its root volume kept on termination while it is isolated; after approval the volumes'
//! settings are as they were and the snapshots stay. The same finding seen again after the
//! release is not snapshotted again.

use std::collections::BTreeSet;
use std::sync::Arc;

use cordon::runner::{DecisionMode, Runner};
use cordon_core::config::Config;
use cordon_tests::{finding_for, until_decision, AwaitingDecision, Moto};
use serde_json::json;

fn event(instance: &str) -> serde_json::Value {
    json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "detail": finding_for(instance, 8.0, "198.51.100.7")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_volumes_are_snapshotted_once_per_finding_and_kept_while_isolated() {
    let moto = Moto::start();
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, _) = world.instance(&[(&subnet, &[&web])], false).await;
    let data = world.attach_volume(&instance, "/dev/sdf").await;
    let before = world.volumes(&instance).await;
    assert_eq!(before.len(), 2, "{before:?}");
    let root = before
        .iter()
        .find(|(_, (_, delete))| *delete)
        .map(|(device, _)| device.clone())
        .expect("the root volume is deleted on termination");
    assert!(!before["/dev/sdf"].1);

    let AwaitingDecision {
        arn,
        follow,
        approve,
        ..
    } = until_decision(&runner, &event(&instance)).await;

    // Both volumes snapshotted, tagged with what they are evidence of; the root volume kept
    // on termination while isolated.
    let evidence = world.evidence_of(&instance).await;
    let volumes: BTreeSet<String> = evidence.values().map(|(v, _)| v.clone()).collect();
    let attached: BTreeSet<String> = before.values().map(|(v, _)| v.clone()).collect();
    assert_eq!(volumes, attached);
    assert!(volumes.contains(&data));
    for (_, tags) in evidence.values() {
        assert_eq!(tags["cordon:finding"], format!("cordon-test-{instance}"));
        assert_eq!(tags["cordon:execution"], arn, "{tags:?}");
    }
    assert!(!world.volumes(&instance).await[&root].1);
    let email = runner.messages_of(&arn).await.unwrap();
    assert!(
        email
            .iter()
            .any(|(_, body)| body.contains("Evidence: snapshots snap-")),
        "{email:?}"
    );

    runner.decide_as_a_person(&approve).await.unwrap();
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    assert_eq!(
        report.output["containment"]["evidence"]["kept_on_termination"],
        json!([root])
    );
    // The volumes as they were; the evidence stays, without Cordon's record on it.
    assert_eq!(world.volumes(&instance).await, before);
    let kept = world.evidence_of(&instance).await;
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        evidence.keys().collect::<Vec<_>>()
    );
    assert!(kept
        .values()
        .all(|(_, tags)| !tags.contains_key("cordon:delete-on-termination")));

    // The same finding again after the release, with activity since: contained again, no
    // second snapshot.
    let mut update = event(&instance);
    update["detail"]["service"]["eventLastSeen"] = (chrono::Utc::now()
        + chrono::Duration::seconds(1))
    .to_rfc3339()
    .into();
    let again = runner
        .run(&update, DecisionMode::Reject, 600)
        .await
        .unwrap();
    assert_eq!(again.outcome, "kept_isolated", "{:?}", again.states);
    assert_eq!(world.evidence_of(&instance).await.len(), evidence.len());
    assert!(!world.volumes(&instance).await[&root].1);
}
