//! The critical path from an execution's start to every interface on the isolation group,
//! counted in EC2 round trips on a paused clock: the fake answers every call after the same
//! latency, so calls made one after another add up and calls made at once do not.
//!
//! The floor is four: the reads, the claim (which carries the record), the conversion swap,
//! the isolation swap. Capture reads Cordon's groups of the VPC the finding names alongside the
//! instance, and isolate-sg's first attempt swaps from what capture read.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::capture::{capture, CaptureOutput, CaptureStatus, FindingSummary};
use crate::claim;
use crate::ec2::Ec2;
use crate::fake::FakeEc2;
use crate::isolate::{ensure_groups, isolate_seen, InterfaceOutcome};

const NOW: &str = "2026-12-06T09:00:00.000Z";
const ROUND_TRIP: Duration = Duration::from_millis(100);
const EXECUTION: &str = "arn:aws:states:eu-west-1:111122223333:execution:cordon:one";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().into()
}

/// Runs `future` on a current-thread runtime whose clock advances only when every task waits.
fn on_paused_clock<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(future)
}

fn finding_in(vpc_id: Option<&str>) -> FindingSummary {
    serde_json::from_value(serde_json::json!({
        "id": "f-1", "finding_type": "Backdoor:EC2/C&CActivity.B", "severity": 8.0,
        "account_id": null, "region": null, "remote_addresses": [], "vpc_id": vpc_id,
    }))
    .unwrap()
}

/// Capture of the standard instance by `owner`, from a finding that names its VPC.
async fn capture_by(ec2: &FakeEc2, owner: &str) -> CaptureOutput {
    capture(
        ec2,
        "i-00000001",
        Some(finding_in(Some("vpc-1"))),
        Some(owner),
        NOW,
    )
    .await
    .unwrap()
}

/// The standard world in steady state: Cordon's groups already exist in its VPC.
async fn steady_world() -> FakeEc2 {
    let ec2 = FakeEc2::standard();
    ensure_groups(
        &ec2,
        &["vpc-1".to_string()],
        crate::isolate::Access::default(),
        None,
    )
    .await
    .unwrap();
    ec2.clear_calls();
    ec2
}

/// Capture, then isolate-sg's attempt `retry_count` on its output; returns the capture and how
/// many round trips passed from the start to the last swap onto the isolation group.
async fn contain(ec2: &FakeEc2, finding: FindingSummary, retry_count: u32) -> (CaptureOutput, u32) {
    ec2.with(|s| s.latency = Some(ROUND_TRIP));
    let start = tokio::time::Instant::now();
    let captured = capture(ec2, "i-00000001", Some(finding), Some(EXECUTION), NOW)
        .await
        .unwrap();
    assert_eq!(captured.status, CaptureStatus::Captured, "{captured:?}");
    let seen = captured.fresh_view(Some(retry_count), at(NOW));
    let report = isolate_seen(
        ec2,
        captured.record.as_ref().unwrap(),
        crate::isolate::Access::default(),
        seen,
    )
    .await
    .unwrap();
    assert!(
        report
            .enis
            .iter()
            .all(|eni| eni.outcome == InterfaceOutcome::Isolated),
        "{report:?}"
    );
    let isolation = report.groups["vpc-1"].isolation.clone();
    assert_eq!(ec2.interface_groups("eni-1"), vec![isolation]);
    let isolated_at = ec2.with(|s| {
        s.answered
            .iter()
            .filter(|(operation, _)| operation == "ModifyNetworkInterfaceAttribute")
            .nth(1)
            .map(|(_, at)| *at)
            .expect("the isolation swap")
    });
    let rounds = (isolated_at - start).as_millis() / ROUND_TRIP.as_millis();
    (captured, rounds as u32)
}

#[test]
fn an_execution_isolates_in_four_round_trips_in_steady_state() {
    on_paused_clock(async {
        let ec2 = steady_world().await;
        let (_, rounds) = contain(&ec2, finding_in(Some("vpc-1")), 0).await;
        assert_eq!(rounds, 4, "calls: {:?}", ec2.calls());
    });
}

/// The world as the last containment of the VPC leaves it: the isolation group, and no
/// conversion group (deleted after use: none that allows all traffic outlives its use).
async fn quiet_world() -> FakeEc2 {
    let ec2 = steady_world().await;
    let conversion = ec2.with(|s| {
        s.groups
            .values()
            .find(|g| g.role == Some(crate::ec2::GroupRole::Conversion))
            .map(|g| g.id.clone())
            .unwrap()
    });
    ec2.delete_group(&conversion).await.unwrap();
    ec2.clear_calls();
    ec2
}

#[test]
fn in_a_quiet_vpc_making_the_conversion_group_again_costs_two_round_trips() {
    // The group's creation, then its rules in both directions at once.
    on_paused_clock(async {
        let ec2 = quiet_world().await;
        let (_, rounds) = contain(&ec2, finding_in(Some("vpc-1")), 0).await;
        assert_eq!(rounds, 6, "calls: {:?}", ec2.calls());
    });
}

#[test]
fn without_the_findings_vpc_or_on_a_retry_the_path_is_longer_but_the_same() {
    // Without the finding's VPC capture reads Cordon's groups of every VPC, still beside the
    // description; a retried isolate-sg reads where every interface is before it swaps.
    on_paused_clock(async {
        let ec2 = steady_world().await;
        let (_, rounds) = contain(&ec2, finding_in(None), 1).await;
        assert_eq!(rounds, 5, "calls: {:?}", ec2.calls());
    });
}

#[test]
fn the_claim_is_this_executions_the_only_one_and_keeps_the_record() {
    on_paused_clock(async {
        let ec2 = steady_world().await;
        let (captured, _) = contain(&ec2, finding_in(Some("vpc-1")), 0).await;
        let groups = ec2.cordon_groups(&["vpc-1".to_string()]).await.unwrap();
        let claim = claim::claim_in(&groups, "i-00000001").expect("a claim");
        assert_eq!(claim.owner, EXECUTION);
        assert_eq!(
            crate::record::state_from_tags("i-00000001", &claim.record_tags).unwrap(),
            captured.record
        );
        let claims = groups
            .iter()
            .filter(|g| {
                g.tags
                    .iter()
                    .any(|(k, v)| k == "cordon:role" && v == "claim")
            })
            .count();
        assert_eq!(claims, 1);
    });
}

#[test]
fn a_finding_naming_the_wrong_vpc_gets_the_claim_into_the_instances_own() {
    on_paused_clock(async {
        let ec2 = steady_world().await;
        let (captured, _) = contain(&ec2, finding_in(Some("vpc-0000beef")), 0).await;
        assert_eq!(captured.status, CaptureStatus::Captured);
        let claims_in = |vpc: &str| {
            ec2.with(|s| {
                s.groups
                    .values()
                    .filter(|g| g.vpc_id == vpc)
                    .filter(|g| {
                        g.tags
                            .iter()
                            .any(|(k, v)| k == "cordon:role" && v == "claim")
                    })
                    .count()
            })
        };
        assert_eq!(claims_in("vpc-0000beef"), 0);
        assert_eq!(claims_in("vpc-1"), 1);
    });
}

#[test]
fn an_instance_that_is_skipped_is_never_claimed() {
    on_paused_clock(async {
        let ec2 = steady_world().await;
        ec2.with(|s| {
            let instance = s.instances.get_mut("i-00000001").unwrap();
            instance.state = "shutting-down".into();
        });
        let captured = capture_by(&ec2, EXECUTION).await;
        assert_eq!(captured.status, CaptureStatus::Skipped);
        let groups = ec2.cordon_groups(&["vpc-1".to_string()]).await.unwrap();
        assert_eq!(claim::claim_in(&groups, "i-00000001"), None);
        assert_eq!(ec2.interface_groups("eni-1"), vec!["sg-app", "sg-ssh"]);
    });
}

#[test]
fn a_second_execution_leaves_the_instance_to_the_first() {
    on_paused_clock(async {
        let ec2 = steady_world().await;
        let first = capture_by(&ec2, EXECUTION).await;
        assert_eq!(first.status, CaptureStatus::Captured);
        let second = capture_by(
            &ec2,
            "arn:aws:states:eu-west-1:111122223333:execution:cordon:two",
        )
        .await;
        assert_eq!(second.status, CaptureStatus::AlreadyQuarantined);
        assert!(second.reason.contains(EXECUTION), "{}", second.reason);
        assert!(second.view.is_none());
    });
}

#[test]
fn the_captures_view_stands_in_for_a_read_only_on_a_fresh_first_attempt() {
    on_paused_clock(async {
        let ec2 = steady_world().await;
        let captured = capture_by(&ec2, EXECUTION).await;
        let view = captured.fresh_view(Some(0), at(NOW)).expect("fresh");
        let instance = view.instance.unwrap();
        assert_eq!(
            instance.interfaces,
            captured.record.as_ref().unwrap().interfaces
        );
        // Conversion and isolation only: no claim (one per quarantined instance) is carried.
        assert_eq!(view.groups.len(), 2);
        assert!(view.groups.iter().all(|g| g.role.is_some()));
        assert!(
            captured.fresh_view(Some(1), at(NOW)).is_none(),
            "a retry reads"
        );
        assert!(
            captured.fresh_view(None, at(NOW)).is_none(),
            "unknown attempt reads"
        );
        let later = at(NOW) + chrono::Duration::seconds(crate::capture::FRESH_VIEW_SECONDS + 1);
        assert!(
            captured.fresh_view(Some(0), later).is_none(),
            "a redrive reads"
        );
        let earlier = at(NOW) - chrono::Duration::seconds(1);
        assert!(
            captured.fresh_view(Some(0), earlier).is_none(),
            "a clock behind reads"
        );
        let mut resumed = captured.clone();
        resumed.view = None;
        assert!(resumed.fresh_view(Some(0), at(NOW)).is_none());
    });
}
