use super::port::fake::FakeLedger;
use super::*;
use crate::fake::{block_on, FakeEc2};
use crate::measures::credentials::port::fake::FakeIam;
use serde_json::json;

fn release(at: &str) -> Release {
    Release {
        finding_id: "f-1".into(),
        instance_id: "i-00000001".into(),
        released_at: at.into(),
        execution: "arn:aws:states:eu-west-1:111122223333:execution:cordon-quarantine:one".into(),
        archived_by_cordon: false,
    }
}

#[test]
fn only_activity_after_the_release_contains_again() {
    let released = release("2026-12-05T10:00:00.000Z");
    let before = seen_again("i-00000001", Some("2026-12-05T09:59:59.999Z"), &released);
    assert!(
        before
            .as_deref()
            .unwrap()
            .contains("before that: not contained again"),
        "{before:?}"
    );
    // At the very moment of the release: nothing new yet.
    assert!(seen_again("i-00000001", Some("2026-12-05T10:00:00Z"), &released).is_some());
    assert_eq!(
        seen_again("i-00000001", Some("2026-12-05T10:00:00.001Z"), &released),
        None
    );
    // No time to compare, or a release of another instance: contained.
    assert_eq!(seen_again("i-00000001", None, &released), None);
    assert_eq!(
        seen_again("i-00000002", Some("2026-12-05T09:00:00Z"), &released),
        None
    );
}

fn event(last_seen: &str) -> Value {
    json!({"event": {"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": {
        "id": "f-1", "type": "UnauthorizedAccess:EC2/TorClient", "severity": 8.0,
        "region": "eu-west-1", "accountId": "111122223333",
        "resource": {"resourceType": "Instance", "instanceDetails": {"instanceId": "i-00000001"}},
        "service": {"eventLastSeen": last_seen,
            "action": {"networkConnectionAction": {"remoteIpDetails": {"ipAddressV4": "198.51.100.7"}}}}
    }}, "approval_timeout_seconds": "600"})
}

#[test]
fn an_update_with_no_activity_since_the_release_reads_and_changes_nothing() {
    let ec2 = FakeEc2::standard();
    let ledger = FakeLedger::default();
    ledger.with(|s| {
        s.releases
            .insert("f-1".into(), release("2026-12-05T10:00:00.000Z"))
    });
    let iam = |_: &crate::ec2::Target| FakeIam::default();
    let config = Config::default();
    let run = |input: &Value| {
        block_on(capture_step(
            &|_: &crate::ec2::Target| ec2.clone(),
            &iam,
            Some(&ledger),
            &config,
            &crate::seal::Unsealed,
            input,
        ))
        .unwrap()
    };
    let output = run(&event("2026-12-05T09:30:00Z"));
    assert_eq!(output.status, crate::capture::CaptureStatus::Skipped);
    assert!(
        output.reason.contains("not contained again"),
        "{}",
        output.reason
    );
    assert!(ec2.calls().is_empty(), "{:?}", ec2.calls());

    let output = run(&event("2026-12-05T10:30:00Z"));
    assert_eq!(output.status, crate::capture::CaptureStatus::Captured);
}

#[test]
fn an_update_of_a_finding_cordon_archived_is_contained_only_for_activity_after_the_release() {
    let ec2 = FakeEc2::standard();
    let ledger = FakeLedger::default();
    let config = Config::default();
    let run = |input: &Value| {
        block_on(capture_step(
            &|_: &crate::ec2::Target| ec2.clone(),
            &|_: &crate::ec2::Target| FakeIam::default(),
            Some(&ledger),
            &config,
            &crate::seal::Unsealed,
            input,
        ))
        .unwrap()
    };
    let archived = |last_seen: &str| {
        let mut input = event(last_seen);
        input["event"]["detail"]["service"]["archived"] = json!(true);
        input
    };
    // Never released: an archived finding is the analysts' call, as the policy says.
    let output = run(&archived("2026-12-05T10:30:00Z"));
    assert_eq!(output.status, crate::capture::CaptureStatus::Skipped);
    assert!(output.reason.contains("archived"), "{}", output.reason);
    assert!(ec2.calls().is_empty(), "{:?}", ec2.calls());

    ledger.with(|s| {
        s.releases
            .insert("f-1".into(), release("2026-12-05T10:00:00.000Z"))
    });
    // Released, then archived by an analyst: still the analyst's call, whatever comes back.
    let output = run(&archived("2026-12-05T10:30:00Z"));
    assert_eq!(output.status, crate::capture::CaptureStatus::Skipped);
    assert!(output.reason.contains("archived"), "{}", output.reason);
    // Archived by Cordon on the release (a later execution's mark would not count).
    let execution = "arn:aws:states:eu-west-1:111122223333:execution:cordon-quarantine:one";
    assert!(!block_on(ledger.mark_archived("f-1", "arn:aws:states:other")).unwrap());
    assert!(block_on(ledger.mark_archived("f-1", execution)).unwrap());
    let output = run(&archived("2026-12-05T09:30:00Z"));
    assert!(
        output.reason.contains("not contained again"),
        "{}",
        output.reason
    );
    // Then its activity came back: contained.
    let output = run(&archived("2026-12-05T10:30:00Z"));
    assert_eq!(
        output.status,
        crate::capture::CaptureStatus::Captured,
        "{}",
        output.reason
    );
}

/// A ledger that refuses every read.
struct Unreadable;

impl Ledger for Unreadable {
    async fn release_of(&self, _: &str) -> Result<Option<Release>> {
        Err(crate::CordonError::AccessDenied {
            operation: "dynamodb:GetItem".into(),
            message: "an SCP denies it".into(),
        })
    }
    async fn record_release(&self, _: &Release) -> Result<()> {
        unreachable!()
    }
    async fn mark_archived(&self, _: &str, _: &str) -> Result<bool> {
        unreachable!()
    }
}

#[test]
fn a_ledger_that_cannot_be_read_never_stops_containment() {
    let ec2 = FakeEc2::standard();
    let output = block_on(capture_step(
        &|_: &crate::ec2::Target| ec2.clone(),
        &|_: &crate::ec2::Target| FakeIam::default(),
        Some(&Unreadable),
        &Config::default(),
        &crate::seal::Unsealed,
        &event("2026-12-05T09:30:00Z"),
    ))
    .unwrap();
    assert_eq!(output.status, crate::capture::CaptureStatus::Captured);
}
