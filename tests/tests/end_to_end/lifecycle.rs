//! The finding's lifecycle on moto, through the real state machine: after an approved restore,
//! an update of the same finding that reports no activity since the release is skipped with
//! that reason and changes nothing; one that reports activity after it contains the instance
//! again. Security Hub and GuardDuty follow the finding without ever holding the workflow.

use cordon::runner::{DecisionMode, Runner, Worker};
use cordon_core::config::Config;
use cordon_core::lifecycle::aws::DynamoLedger;
use cordon_core::lifecycle::{status, Ledger};
use cordon_tests::{finding_for, Moto};
use serde_json::json;

/// The test finding as GuardDuty updates it: the activity last seen at `last_seen`.
fn update(instance: &str, last_seen: &str) -> serde_json::Value {
    let mut finding = finding_for(instance, 8.0, "198.51.100.7");
    finding["service"]["eventLastSeen"] = last_seen.into();
    finding["updatedAt"] = last_seen.into();
    json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": finding})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_after_the_release_contains_again_only_for_activity_after_it() {
    let moto = Moto::start();
    let runner = Runner::start(&moto.endpoint, Config::default())
        .await
        .unwrap();
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;

    let first = runner
        .run(
            &update(&instance, "2026-11-29T13:58:30.000Z"),
            DecisionMode::Approve,
            600,
        )
        .await
        .unwrap();
    assert_eq!(first.outcome, "restored", "{:?}", first.states);
    assert_eq!(world.eni_groups(&enis[0]).await, vec![web.clone()]);

    // GuardDuty's next update of the finding, with no activity since the release.
    let stale = chrono::Utc::now() - chrono::Duration::minutes(5);
    let again = runner
        .run(
            &update(&instance, &stale.to_rfc3339()),
            DecisionMode::Reject,
            600,
        )
        .await
        .unwrap();
    assert_eq!(again.outcome, "skipped", "{:?}", again.states);
    assert!(
        again.output.to_string().contains("not contained again"),
        "{}",
        again.output
    );
    assert_eq!(world.eni_groups(&enis[0]).await, vec![web.clone()]);
    assert!(
        !world
            .instance_tags(&instance)
            .await
            .keys()
            .any(|k| k.starts_with("cordon:")),
        "nothing written on the instance"
    );

    // Activity after the release: contained again.
    let later = chrono::Utc::now() + chrono::Duration::seconds(1);
    let renewed = runner
        .run(
            &update(&instance, &later.to_rfc3339()),
            DecisionMode::Reject,
            600,
        )
        .await
        .unwrap();
    assert_eq!(renewed.outcome, "kept_isolated", "{:?}", renewed.states);
    assert_ne!(world.eni_groups(&enis[0]).await, vec![web]);
}

/// moto has GuardDuty's ListDetectors but neither ArchiveFindings nor Security Hub's
/// BatchUpdateFindings: as in an account where Security Hub is off, each is tried once the
/// email is out, said in notify's answer, and the workflow contains and restores all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_hub_and_guardduty_refusing_never_hold_the_containment_or_the_release() {
    let moto = Moto::start();
    let runner = Runner::start(&moto.endpoint, Config::default())
        .await
        .unwrap()
        .with_finding_follow(status::Settings {
            security_hub: true,
            archive_on_restore: true,
            report_only: false,
        });
    let sdk = cordon::local::emulator_config(&moto.endpoint);
    let detector = aws_sdk_guardduty::Client::new(&sdk)
        .create_detector()
        .enable(true)
        .send()
        .await
        .unwrap()
        .detector_id
        .unwrap();
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;

    let run = runner
        .run(
            &update(&instance, "2026-11-29T13:58:30.000Z"),
            DecisionMode::Approve,
            600,
        )
        .await
        .unwrap();
    assert_eq!(run.outcome, "restored", "{:?}", run.states);
    assert_eq!(world.eni_groups(&enis[0]).await, vec![web]);
    assert_eq!(run.messages.len(), 2, "{:?}", run.messages);

    let said: Vec<Vec<String>> = runner
        .answers_of(Worker::Notify)
        .iter()
        .map(|answer| serde_json::from_value(answer["finding"].clone()).unwrap_or_default())
        .collect();
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(
        said[0][0].starts_with("Security Hub: not set to NOTIFIED: "),
        "{said:?}"
    );
    assert!(
        said[1][0].starts_with("Security Hub: not set to RESOLVED: "),
        "{said:?}"
    );
    // The archive was noted on the release in the ledger (DynamoDB's conditional UpdateItem)
    // before GuardDuty was asked.
    let ledger = DynamoLedger::new(&sdk, cordon::runner::RELEASE_TABLE);
    let release = ledger
        .release_of(&format!("cordon-test-{instance}"))
        .await
        .unwrap()
        .unwrap();
    assert!(release.archived_by_cordon, "{release:?}");
    assert!(
        said[1][1].starts_with("GuardDuty: not archived: ") && !said[1][1].contains("no detector"),
        "ListDetectors found {detector}, ArchiveFindings refused: {said:?}"
    );
}
