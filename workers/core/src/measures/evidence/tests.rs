use super::*;
use crate::error::CordonError;
use crate::fake::{block_on, FakeEc2};

const INSTANCE: &str = "i-00000001";
const EXECUTION: Option<&str> =
    Some("arn:aws:states:us-east-1:123456789012:execution:cordon-quarantine:f-1");

fn volumes(ec2: &FakeEc2) -> Vec<(String, bool)> {
    ec2.with(|s| {
        s.instances[INSTANCE]
            .volumes
            .iter()
            .map(|v| (v.device.clone(), v.delete_on_termination))
            .collect()
    })
}

fn preserve_now(ec2: &FakeEc2, finding: &str) -> Report {
    block_on(preserve(
        ec2,
        INSTANCE,
        finding,
        EXECUTION,
        Settings::default(),
    ))
    .unwrap()
}

#[test]
fn every_volume_is_snapshotted_tagged_and_kept_then_given_back_with_the_snapshots_kept() {
    let ec2 = FakeEc2::standard();
    let before = volumes(&ec2);
    let report = preserve_now(&ec2, "f-1");
    assert_eq!(report.status, MeasureStatus::Done, "{report:?}");
    let volumes_taken: Vec<&str> = report
        .snapshots
        .iter()
        .map(|t| t.volume_id.as_str())
        .collect();
    assert_eq!(volumes_taken, ["vol-root", "vol-data"]);
    // One CreateSnapshots for both: crash-consistent across the volumes.
    assert_eq!(
        ec2.calls()
            .iter()
            .filter(|c| *c == "CreateSnapshots")
            .count(),
        1
    );
    let snapshots = ec2.with(|s| s.snapshots.clone());
    for snapshot in &snapshots {
        for tag in [FINDING_TAG, INSTANCE_TAG, EXECUTION_TAG] {
            assert!(
                snapshot.tags.iter().any(|(k, _)| k == tag),
                "{tag}: {snapshot:?}"
            );
        }
    }
    // The root volume is kept on termination now, its original setting on its snapshot.
    assert_eq!(report.kept_on_termination, ["/dev/xvda"]);
    assert_eq!(
        volumes(&ec2),
        [("/dev/xvda".into(), false), ("/dev/sdf".into(), false)]
    );
    let root = snapshots
        .iter()
        .find(|s| s.volume_id == "vol-root")
        .unwrap();
    assert!(root
        .tags
        .contains(&(DELETE_ON_TERMINATION_TAG.into(), "true".into())));
    assert!(report.line().contains("kept if the instance is terminated"));

    let restored = block_on(restore(&ec2, INSTANCE)).unwrap().unwrap();
    assert_eq!(restored.deleted_on_termination_again, ["/dev/xvda"]);
    assert_eq!(volumes(&ec2), before);
    // The evidence stays, without the setting's record.
    let after = ec2.with(|s| s.snapshots.clone());
    assert_eq!(after.len(), 2);
    assert!(after
        .iter()
        .all(|s| !s.tags.iter().any(|(k, _)| k == DELETE_ON_TERMINATION_TAG)));
    assert_eq!(restored.snapshots_kept.len(), 2);
}

#[test]
fn a_finding_seen_again_is_not_snapshotted_again_but_another_finding_is() {
    let ec2 = FakeEc2::standard();
    let first = preserve_now(&ec2, "f-1");
    block_on(restore(&ec2, INSTANCE)).unwrap();
    let again = preserve_now(&ec2, "f-1");
    assert_eq!(again.snapshots, first.snapshots);
    assert!(again.notes.iter().any(|n| n.contains("not taken again")));
    // Kept on termination again, recorded on the same snapshots.
    assert_eq!(again.kept_on_termination, ["/dev/xvda"]);
    assert_eq!(ec2.with(|s| s.snapshots.len()), 2);
    let other = preserve_now(&ec2, "f-2");
    assert_eq!(ec2.with(|s| s.snapshots.len()), 4);
    assert_ne!(other.snapshots, first.snapshots);
}

#[test]
fn a_snapshot_call_whose_answer_was_lost_is_not_made_again() {
    // CreateSnapshots takes no idempotency token: the adapter tries it once, and the measure
    // finds the snapshots the lost call made instead of making a second set.
    let ec2 = FakeEc2::standard();
    ec2.with(|s| s.lost_snapshots_answer = true);
    let report = preserve_now(&ec2, "f-1");
    assert_eq!(report.status, MeasureStatus::Done, "{report:?}");
    assert_eq!(ec2.with(|s| s.snapshots.len()), 2);
    assert_eq!(report.snapshots.len(), 2);
    assert_eq!(
        ec2.calls()
            .iter()
            .filter(|c| *c == "CreateSnapshots")
            .count(),
        1
    );
    assert_eq!(report.kept_on_termination, ["/dev/xvda"]);
}

#[test]
fn a_retry_after_a_throttled_keep_takes_no_second_snapshot() {
    let ec2 = FakeEc2::standard();
    ec2.fail_next(
        "ModifyInstanceAttribute",
        CordonError::Throttled {
            operation: "ModifyInstanceAttribute".into(),
            message: "slow down".into(),
        },
    );
    let result = block_on(preserve(
        &ec2,
        INSTANCE,
        "f-1",
        EXECUTION,
        Settings::default(),
    ));
    assert!(matches!(result, Err(CordonError::Throttled { .. })));
    let report = preserve_now(&ec2, "f-1");
    assert_eq!(report.status, MeasureStatus::Done);
    assert_eq!(ec2.with(|s| s.snapshots.len()), 2);
    assert_eq!(report.kept_on_termination, ["/dev/xvda"]);
}

#[test]
fn a_refused_snapshot_changes_no_volume_setting_and_says_so() {
    let ec2 = FakeEc2::standard();
    let before = volumes(&ec2);
    ec2.fail_next(
        "CreateSnapshots",
        CordonError::AccessDenied {
            operation: "CreateSnapshots".into(),
            message: "an SCP denies it".into(),
        },
    );
    let report = preserve_now(&ec2, "f-1");
    assert_eq!(report.status, MeasureStatus::Partial);
    assert_eq!(report.errors[0].error, "Cordon.AccessDenied");
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("/dev/xvda is left to be deleted on termination")));
    assert_eq!(volumes(&ec2), before);
}

#[test]
fn off_or_without_volumes_nothing_is_called_beyond_a_look() {
    let ec2 = FakeEc2::standard();
    let report = block_on(preserve(
        &ec2,
        INSTANCE,
        "f-1",
        EXECUTION,
        Settings { snapshots: false },
    ))
    .unwrap();
    assert_eq!(report.status, MeasureStatus::NotApplicable);
    assert!(ec2.calls().is_empty());

    ec2.with(|s| s.instances.get_mut(INSTANCE).unwrap().volumes.clear());
    let report = preserve_now(&ec2, "f-1");
    assert_eq!(report.status, MeasureStatus::NotApplicable);
    assert!(!ec2.calls().contains(&"CreateSnapshots".to_string()));
    assert_eq!(block_on(restore(&ec2, INSTANCE)).unwrap(), None);
}

#[test]
fn restore_leaves_a_volume_someone_changed_or_detached_and_says_so() {
    let ec2 = FakeEc2::standard();
    preserve_now(&ec2, "f-1");
    let modified = |ec2: &FakeEc2| {
        ec2.calls()
            .iter()
            .filter(|c| *c == "ModifyInstanceAttribute")
            .count()
    };
    let before = modified(&ec2);
    // Someone detached the root volume meanwhile.
    ec2.with(|s| {
        s.instances
            .get_mut(INSTANCE)
            .unwrap()
            .volumes
            .retain(|v| v.volume_id != "vol-root")
    });
    let restored = block_on(restore(&ec2, INSTANCE)).unwrap().unwrap();
    assert!(restored.deleted_on_termination_again.is_empty());
    assert!(restored.notes[0].contains("vol-root is no longer attached"));
    assert_eq!(modified(&ec2), before);
}
