//! The seal's own rules, then what it changes for a containment and a break-glass restore:
//! the tampering an attacker with `ec2:CreateTags` can do, each refused with nothing changed.

use super::*;
use crate::capture::{capture_seeing, CaptureOutput, CaptureStatus, Pace};
use crate::config::Config;
use crate::ec2::{DenyEntry, NetworkAcl};
use crate::fake::{block_on, FakeEc2};
use crate::isolate::isolate;
use crate::kms::fake::FakeKms;
use crate::record::{chunk_keys, state_tags, state_text};
use crate::restore::{restore, RecordSource, RestoreReport, RestoreStatus};

fn key() -> RecordKey<FakeKms> {
    RecordKey {
        kms: FakeKms::with_key("k", b"record key material"),
        key_id: "k".into(),
    }
}

#[test]
fn a_sealed_record_verifies_only_as_written_and_where_written() {
    let key = key();
    let claim = Place::Claim {
        vpc_id: "vpc-1",
        owner: "exec-a",
    };
    let message = state_message(claim, "i-1", "{\"groups\":[\"sg-a\"]}");
    let seal = block_on(key.seal(&message)).unwrap().unwrap();
    assert!(seal.starts_with("m1:") && seal.len() == 3 + 64, "{seal}");
    assert_eq!(
        block_on(check(&key, &message, Some(&seal))),
        Verdict::Verified
    );
    // Another text, instance, VPC, owner or place: each its own message.
    for other in [
        state_message(claim, "i-1", "{\"groups\":[\"sg-evil\"]}"),
        state_message(claim, "i-2", "{\"groups\":[\"sg-a\"]}"),
        state_message(
            Place::Claim {
                vpc_id: "vpc-2",
                owner: "exec-a",
            },
            "i-1",
            "{\"groups\":[\"sg-a\"]}",
        ),
        state_message(
            Place::Claim {
                vpc_id: "vpc-1",
                owner: "exec-b",
            },
            "i-1",
            "{\"groups\":[\"sg-a\"]}",
        ),
        state_message(Place::Instance, "i-1", "{\"groups\":[\"sg-a\"]}"),
    ] {
        assert_eq!(block_on(check(&key, &other, Some(&seal))), Verdict::Forged);
    }
    assert_eq!(block_on(check(&key, &message, None)), Verdict::Unsealed);
    // Not a seal at all costs no KMS call.
    let calls = key.kms.calls.lock().unwrap().len();
    assert_eq!(
        block_on(check(&key, &message, Some("m1:nothex"))),
        Verdict::Forged
    );
    assert_eq!(key.kms.calls.lock().unwrap().len(), calls);
    // A key made elsewhere does not verify it.
    let stranger = RecordKey {
        kms: FakeKms::with_key("k", b"another key"),
        key_id: "k".into(),
    };
    assert_eq!(
        block_on(check(&stranger, &message, Some(&seal))),
        Verdict::Forged
    );
}

#[test]
fn without_a_key_nothing_is_sealed_and_nothing_verifies() {
    assert_eq!(block_on(Unsealed.seal(b"m")).unwrap(), None);
    let verdict = block_on(check(&Unsealed, b"m", Some(&encode_seal(&[0; 32]))));
    let Verdict::Unverifiable { why, transient } = &verdict else {
        panic!("{verdict:?}");
    };
    assert!(why.contains("CORDON_RECORD_KEY_ID"), "{why}");
    assert!(!transient);
}

#[test]
fn acl_records_split_at_their_seal_and_bind_acl_instance_and_run() {
    assert_eq!(
        split_acl_seal("in:5:10.0.0.1/32,out:5:2001:db8::1/128;m1:ab"),
        ("in:5:10.0.0.1/32,out:5:2001:db8::1/128", Some("m1:ab"))
    );
    assert_eq!(
        split_acl_seal("in:5:10.0.0.1/32"),
        ("in:5:10.0.0.1/32", None)
    );
    let message = acl_message("acl-1", "i-1", Some("0a1b2c3d"), "in:5:10.0.0.1/32");
    assert_ne!(
        message,
        acl_message("acl-2", "i-1", Some("0a1b2c3d"), "in:5:10.0.0.1/32")
    );
    assert_ne!(
        message,
        acl_message("acl-1", "i-1", None, "in:5:10.0.0.1/32")
    );
    assert_eq!(decode_seal(&encode_seal(&[7; 32])), Some(vec![7; 32]));
    assert_eq!(decode_seal(&encode_seal(&[7; 31])), None);
    assert_eq!(decode_seal("m2:00"), None);
}

#[test]
fn a_worker_needs_the_record_key_and_never_a_malformed_id() {
    let error = record_key_from(|_| None, ()).unwrap_err();
    assert!(error.to_string().contains(RECORD_KEY_ENV), "{error}");
    let set = record_key_from(|_| Some("alias/cordon-records".into()), ()).unwrap();
    assert_eq!(set.key_id, "alias/cordon-records");
    let error = record_key_from(|_| Some("not a key".into()), ()).unwrap_err();
    assert!(error.to_string().contains(RECORD_KEY_ENV), "{error}");
}

/// `i-00000001` captured by the execution `owner` with `seal`, at `at`.
fn capture_with(ec2: &FakeEc2, seal: &impl Seal, owner: &str, at: &str) -> CaptureOutput {
    let (output, _) = block_on(capture_seeing(
        ec2,
        "i-00000001",
        None,
        Some(owner),
        at,
        Pace::AtOnce,
        &Config::default(),
        seal,
    ))
    .unwrap();
    output
}

/// `i-00000001` captured by `exec-a` with the record key, and isolated: its record.
fn contained(ec2: &FakeEc2, key: &RecordKey<FakeKms>) -> CapturedState {
    let output = capture_with(ec2, key, "exec-a", "2026-12-07T03:00:00.000Z");
    assert_eq!(output.status, CaptureStatus::Captured, "{}", output.reason);
    let record = output.record.unwrap();
    block_on(isolate(ec2, &record, crate::isolate::Access::default())).unwrap();
    assert_ne!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    record
}

fn claim_id(ec2: &FakeEc2) -> String {
    ec2.with(|s| {
        s.groups
            .values()
            .find(|g| {
                g.tags
                    .iter()
                    .any(|(k, v)| k == crate::ec2::GroupRole::TAG_KEY && v == "claim")
            })
            .map(|g| g.id.clone())
            .expect("a claim group")
    })
}

fn tags_of(ec2: &FakeEc2, resource: &str) -> Vec<(String, String)> {
    ec2.with(|s| match s.groups.get(resource) {
        Some(group) => group.tags.clone(),
        None => s.instances[resource].tags.clone(),
    })
}

/// Replaces `resource`'s tags with `f` of them, as anyone allowed to tag it could.
fn retag(
    ec2: &FakeEc2,
    resource: &str,
    f: impl FnOnce(Vec<(String, String)>) -> Vec<(String, String)>,
) {
    ec2.with(|s| {
        let tags = match s.groups.get_mut(resource) {
            Some(group) => &mut group.tags,
            None => &mut s.instances.get_mut(resource).unwrap().tags,
        };
        *tags = f(std::mem::take(tags));
    });
}

/// The record's chunks swapped for `forged`'s, every other tag (the seal too) kept.
fn rewrite_record(tags: Vec<(String, String)>, forged: &CapturedState) -> Vec<(String, String)> {
    let old = chunk_keys(STATE_TAG_PREFIX, &tags);
    let mut tags: Vec<_> = tags.into_iter().filter(|(k, _)| !old.contains(k)).collect();
    tags.extend(state_tags(forged));
    tags
}

fn break_glass(ec2: &FakeEc2, key: &RecordKey<FakeKms>, trust_unverified: bool) -> RestoreReport {
    block_on(restore(
        ec2,
        "i-00000001",
        RecordSource::Tags {
            key,
            trust_unverified,
        },
        &[],
    ))
    .unwrap()
}

/// Any call that changes EC2.
fn writes(ec2: &FakeEc2) -> Vec<String> {
    ec2.calls()
        .into_iter()
        .filter(|c| !c.starts_with("Describe") && !c.starts_with("describe"))
        .collect()
}

#[test]
fn capture_seals_the_claims_record_with_one_kms_call() {
    let ec2 = FakeEc2::standard();
    let key = key();
    let record = contained(&ec2, &key);
    let tags = tags_of(&ec2, &claim_id(&ec2));
    let seal = state_seal(&tags).expect("the claim carries the seal");
    let message = state_message(
        Place::Claim {
            vpc_id: "vpc-1",
            owner: "exec-a",
        },
        "i-00000001",
        &crate::record::state_text(&record),
    );
    assert_eq!(
        block_on(check(&key, &message, Some(seal))),
        Verdict::Verified
    );
    assert_eq!(
        key.kms.calls.lock().unwrap().as_slice(),
        ["GenerateMac", "VerifyMac"],
        "one MAC per capture (and the check above)"
    );
}

#[test]
fn kms_failing_never_stops_a_capture_which_keeps_its_record_unsealed_and_says_so() {
    let ec2 = FakeEc2::standard();
    // A key KMS does not know: GenerateMac is refused.
    let unknown = RecordKey {
        kms: FakeKms::with_key("k", b"material"),
        key_id: "missing".into(),
    };
    let output = capture_with(&ec2, &unknown, "exec-a", "2026-12-07T03:00:00.000Z");
    assert_eq!(output.status, CaptureStatus::Captured);
    assert!(output.tags_written);
    assert!(
        output
            .warnings
            .iter()
            .any(|w| w.error == "Cordon.RecordUnsealed" && w.cause.contains("--trust-unverified")),
        "{:?}",
        output.warnings
    );
    let tags = tags_of(&ec2, &claim_id(&ec2));
    assert_eq!(state_seal(&tags), None);
    assert!(!chunk_keys(STATE_TAG_PREFIX, &tags).is_empty());
}

#[test]
fn break_glass_restore_gives_back_a_sealed_record() {
    let ec2 = FakeEc2::standard();
    let key = key();
    contained(&ec2, &key);
    let report = break_glass(&ec2, &key, false);
    assert_eq!(
        report.status,
        RestoreStatus::Restored,
        "{:?}",
        report.errors
    );
    assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    assert!(report.records_refused.is_empty() && report.records_used_unverified.is_empty());
    assert!(key.kms.calls.lock().unwrap().contains(&"VerifyMac"));
}

/// The attack: the claim's record rewritten to name a group of the attacker's choosing.
#[test]
fn a_rewritten_record_is_refused_and_the_interface_stays_isolated() {
    let ec2 = FakeEc2::standard();
    let key = key();
    // Contained with its ACL denies too: a refused record leaves those in place as well.
    let (record, _) = blocked(&ec2, &key);
    let isolated = ec2.interface_groups("eni-1");
    let claim = claim_id(&ec2);
    let mut forged = record.clone();
    forged.interfaces[0].groups = vec!["sg-ssh".into()];
    retag(&ec2, &claim, |tags| rewrite_record(tags, &forged));

    ec2.clear_calls();
    let report = break_glass(&ec2, &key, false);
    assert_eq!(report.status, RestoreStatus::Failed);
    assert_eq!(ec2.interface_groups("eni-1"), isolated, "still isolated");
    assert_eq!(writes(&ec2), Vec::<String>::new(), "nothing changed");
    let [refused] = report.records_refused.as_slice() else {
        panic!("{:?}", report.records_refused);
    };
    assert_eq!(refused.resource, claim);
    assert!(
        refused.reason.contains("does not verify"),
        "{}",
        refused.reason
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.cause.contains("--trust-unverified")),
        "the report says what to do: {:?}",
        report.errors
    );

    // The operator who trusts whoever wrote the tags says so, and is told whose word it was.
    let trusted = break_glass(&ec2, &key, true);
    assert_eq!(
        trusted.status,
        RestoreStatus::Restored,
        "{:?}",
        trusted.errors
    );
    assert_eq!(ec2.interface_groups("eni-1"), ["sg-ssh"]);
    assert_eq!(trusted.records_used_unverified[0].resource, claim);
}

#[test]
fn a_deleted_seal_a_changed_owner_or_a_record_moved_to_the_instance_is_refused() {
    type Tamper = fn(&FakeEc2, &str);
    let tampering: [(&str, Tamper, &str); 3] = [
        (
            "the seal deleted",
            |ec2, claim| {
                retag(ec2, claim, |tags| {
                    tags.into_iter()
                        .filter(|(k, _)| k != STATE_SEAL_TAG)
                        .collect()
                })
            },
            "no seal",
        ),
        (
            "the claim's owner changed",
            |ec2, claim| {
                retag(ec2, claim, |tags| {
                    tags.into_iter()
                        .map(|(k, v)| match k.as_str() {
                            crate::claim::OWNER_TAG => (k, "exec-evil".to_string()),
                            _ => (k, v),
                        })
                        .collect()
                })
            },
            "does not verify",
        ),
        (
            "the sealed record moved from the claim to the instance",
            |ec2, claim| {
                let record: Vec<_> = tags_of(ec2, claim)
                    .into_iter()
                    .filter(|(k, _)| k.starts_with(STATE_TAG_PREFIX))
                    .collect();
                retag(ec2, claim, |tags| {
                    tags.into_iter()
                        .filter(|(k, _)| !k.starts_with(STATE_TAG_PREFIX))
                        .collect()
                });
                retag(ec2, "i-00000001", |mut tags| {
                    tags.extend(record);
                    tags
                });
            },
            "does not verify",
        ),
    ];
    for (what, tamper, reason) in tampering {
        let ec2 = FakeEc2::standard();
        let key = key();
        contained(&ec2, &key);
        let isolated = ec2.interface_groups("eni-1");
        tamper(&ec2, &claim_id(&ec2));
        ec2.clear_calls();
        let report = break_glass(&ec2, &key, false);
        assert_eq!(report.status, RestoreStatus::Failed, "{what}");
        assert_eq!(ec2.interface_groups("eni-1"), isolated, "{what}");
        assert_eq!(writes(&ec2), Vec::<String>::new(), "{what}");
        assert!(
            report
                .records_refused
                .iter()
                .any(|r| r.reason.contains(reason)),
            "{what}: {:?}",
            report.records_refused
        );
    }
}

/// Without the stack's key nothing can be checked, so nothing kept in tags is used, unless
/// the operator says to.
#[test]
fn without_the_record_key_break_glass_uses_no_record_unless_told_to() {
    let ec2 = FakeEc2::standard();
    contained(&ec2, &key());
    let isolated = ec2.interface_groups("eni-1");
    let report = block_on(restore(
        &ec2,
        "i-00000001",
        RecordSource::Tags {
            key: &Unsealed,
            trust_unverified: false,
        },
        &[],
    ))
    .unwrap();
    assert_eq!(report.status, RestoreStatus::Failed);
    assert_eq!(ec2.interface_groups("eni-1"), isolated);
    assert!(report.records_refused[0].reason.contains("--record-key"));
    let trusted = block_on(restore(
        &ec2,
        "i-00000001",
        RecordSource::unverified_tags(),
        &[],
    ))
    .unwrap();
    assert_eq!(trusted.status, RestoreStatus::Restored);
    assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
}

/// The workflow's restore has the execution's own record: a tag record someone spoiled on
/// the instance is not read, so it neither fails the restore nor costs a KMS call.
#[test]
fn the_approved_restore_reads_no_tag_record() {
    let ec2 = FakeEc2::standard();
    let key = key();
    let record = contained(&ec2, &key);
    retag(&ec2, "i-00000001", |mut tags| {
        tags.push(("cordon:state:0".into(), "not a record".into()));
        tags
    });
    let calls = key.kms.calls.lock().unwrap().len();
    let report = block_on(restore(
        &ec2,
        "i-00000001",
        RecordSource::execution(&record),
        &[],
    ))
    .unwrap();
    assert_eq!(
        report.status,
        RestoreStatus::Restored,
        "{:?}",
        report.errors
    );
    assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    assert_eq!(key.kms.calls.lock().unwrap().len(), calls);
    assert!(
        !tags_of(&ec2, "i-00000001")
            .iter()
            .any(|(k, _)| k.starts_with(STATE_TAG_PREFIX)),
        "the spoiled tag is cleaned up with the rest"
    );
}

/// A second finding for an instance already quarantined reports the kept record as its own:
/// that output is the record an approval would restore. A forged one is not taken up.
#[test]
fn a_forged_record_does_not_become_a_later_executions_record() {
    let ec2 = FakeEc2::standard();
    let key = key();
    let record = contained(&ec2, &key);
    let mut forged = record.clone();
    forged.interfaces[0].groups = vec!["sg-ssh".into()];
    retag(&ec2, &claim_id(&ec2), |tags| rewrite_record(tags, &forged));

    let later = capture_with(&ec2, &key, "exec-b", "2026-12-07T04:00:00.000Z");
    assert_eq!(later.status, CaptureStatus::AlreadyQuarantined);
    assert_eq!(later.record, None);
    assert!(
        later
            .warnings
            .iter()
            .any(|w| w.error == "Cordon.RecordRefused"),
        "{:?}",
        later.warnings
    );
    // Untouched, it is taken up as before.
    let ec2 = FakeEc2::standard();
    let record = contained(&ec2, &key);
    let later = capture_with(&ec2, &key, "exec-b", "2026-12-07T04:00:00.000Z");
    assert_eq!(later.record, Some(record));
}

/// `contained`, and the ACL measure run with `key`: the denies it made.
fn blocked(ec2: &FakeEc2, key: &RecordKey<FakeKms>) -> (CapturedState, Vec<DenyEntry>) {
    let record = contained(ec2, key);
    let report = block_on(crate::nacl::block(
        ec2,
        &record,
        &["203.0.113.9".parse().unwrap()],
        &crate::config::NaclSettings::default(),
        key,
    ));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    (record, report.nacl_entries)
}

fn acl(ec2: &FakeEc2, id: &str) -> NetworkAcl {
    block_on(crate::ec2::Ec2::network_acl(ec2, id)).unwrap()
}

#[test]
fn block_seals_each_acl_record_for_its_acl_instance_and_run() {
    let ec2 = FakeEc2::standard();
    let key = key();
    let (_, entries) = blocked(&ec2, &key);
    assert!(!entries.is_empty());
    for acl_id in ["acl-a", "acl-b"] {
        let acl = acl(&ec2, acl_id);
        let records: Vec<_> = crate::record::acl_records(acl_id, "i-00000001", &acl.tags)
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(records.len(), 1, "{acl_id}: {:?}", acl.tags);
        let record = &records[0];
        let message = acl_message(acl_id, "i-00000001", record.run.as_deref(), &record.text);
        assert_eq!(
            block_on(check(&key, &message, record.seal.as_deref())),
            Verdict::Verified,
            "{acl_id}"
        );
        // Another ACL's record does not verify here.
        let elsewhere = acl_message("acl-z", "i-00000001", record.run.as_deref(), &record.text);
        assert_eq!(
            block_on(check(&key, &elsewhere, record.seal.as_deref())),
            Verdict::Forged
        );
    }
    // And restore takes them: nothing is left of the containment.
    let report = break_glass(&ec2, &key, false);
    assert_eq!(report.status, RestoreStatus::Restored, "{:?}", report);
    assert!(report.nacl_entries_kept.is_empty());
    assert_eq!(report.nacl_entries_removed.len(), entries.len());
}

/// The attack on the ACLs: an administrator's own deny, and a record on the ACL, written by
/// whoever may tag it, that names that deny as Cordon's for the instance. Restore, the
/// workflow's or break glass, must not delete it.
#[test]
fn a_forged_acl_record_cannot_make_restore_delete_an_administrators_deny() {
    let admins = crate::ec2::AclEntry {
        rule_number: 10,
        egress: false,
        action: crate::ec2::RuleAction::Deny,
        protocol: "-1".into(),
        cidr: "198.51.100.0/24".into(),
    };
    let forged = (
        "cordon:i-00000001:deadbeef:0".to_string(),
        "in:10:198.51.100.0/24".to_string(),
    );
    for workflow in [true, false] {
        let ec2 = FakeEc2::standard();
        let key = key();
        ec2.with(|s| {
            let acl = s.acls.get_mut("acl-a").unwrap();
            acl.entries.push(admins.clone());
            acl.tags.push(forged.clone());
        });
        let (record, entries) = blocked(&ec2, &key);
        assert!(
            !entries
                .iter()
                .any(|e| e.acl_id == "acl-a" && e.rule_number == 10 && !e.egress),
            "the forged record is not taken into the step's output: {entries:?}"
        );
        let report = if workflow {
            block_on(restore(
                &ec2,
                "i-00000001",
                RecordSource::Execution {
                    record: &record,
                    key: &key,
                },
                &entries,
            ))
            .unwrap()
        } else {
            break_glass(&ec2, &key, false)
        };
        let what = if workflow { "workflow" } else { "break glass" };
        assert!(
            acl(&ec2, "acl-a").entries.contains(&admins),
            "{what}: the administrator's deny stays"
        );
        assert_eq!(report.status, RestoreStatus::Drift, "{what}: {report:?}");
        assert!(
            report
                .nacl_entries_kept
                .iter()
                .any(|k| k.entry.rule_number == 10 && k.reason.contains("refused")),
            "{what}: {:?}",
            report.nacl_entries_kept
        );
        assert!(
            report
                .records_refused
                .iter()
                .any(|r| r.record == "cordon:i-00000001:deadbeef:*"),
            "{what}: {:?}",
            report.records_refused
        );
        // Cordon's own denies are gone all the same: the instance is back on its groups.
        assert_eq!(
            ec2.interface_groups("eni-1"),
            ["sg-app", "sg-ssh"],
            "{what}"
        );
    }
}

/// One record refused means none is used: the refused one may be the later capture, and the
/// other, though sealed, an older state (an attacker who saved a sealed record breaks the
/// current one and puts the old one back).
#[test]
fn a_refused_record_beside_a_sealed_one_means_no_record_is_used() {
    let ec2 = FakeEc2::standard();
    let key = key();
    let record = contained(&ec2, &key);
    let isolated = ec2.interface_groups("eni-1");
    // An older capture of the instance, sealed where it is kept, as capture seals one.
    let older = CapturedState {
        captured_at: "2026-12-07T02:00:00.000Z".into(),
        interfaces: vec![crate::ec2::NetworkInterface {
            groups: vec!["sg-ssh".into()],
            ..record.interfaces[0].clone()
        }],
        ..record.clone()
    };
    let message = state_message(Place::Instance, "i-00000001", &state_text(&older));
    let seal = block_on(key.seal(&message)).unwrap().unwrap();
    retag(&ec2, "i-00000001", |mut tags| {
        tags.extend(state_tags(&older));
        tags.push((STATE_SEAL_TAG.into(), seal));
        tags
    });
    // The claim's record made unreadable: a chunk past its end.
    retag(&ec2, &claim_id(&ec2), |mut tags| {
        tags.push(("cordon:state:9".into(), "x".into()));
        tags
    });
    let report = break_glass(&ec2, &key, false);
    assert_eq!(report.status, RestoreStatus::Failed);
    assert_eq!(ec2.interface_groups("eni-1"), isolated);
    assert!(
        report.records_refused[0]
            .reason
            .contains("do not make a record"),
        "{:?}",
        report.records_refused
    );
}

/// KMS throttled through a retried ACL step: the denies still go in, and the earlier run's
/// denies, which it cannot check, are taken for someone else's (not in its output); restore
/// finds them by their records once KMS answers.
#[test]
fn a_throttled_kms_holds_back_no_deny_and_loses_none() {
    let ec2 = FakeEc2::standard();
    let key = key();
    let (record, first) = blocked(&ec2, &key);
    key.kms
        .throttled
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let again = block_on(crate::nacl::block(
        &ec2,
        &record,
        &["203.0.113.9".parse().unwrap()],
        &crate::config::NaclSettings::default(),
        &key,
    ));
    assert!(again.errors.is_empty(), "{:?}", again.errors);
    assert!(
        again
            .notes
            .iter()
            .any(|n| n.contains("could not be checked")),
        "{:?}",
        again.notes
    );
    for entry in &first {
        assert!(
            acl(&ec2, &entry.acl_id)
                .entries
                .contains(&entry.as_acl_entry()),
            "{entry:?} in place"
        );
    }
    key.kms
        .throttled
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let report = block_on(restore(
        &ec2,
        "i-00000001",
        RecordSource::Execution {
            record: &record,
            key: &key,
        },
        &again.nacl_entries,
    ))
    .unwrap();
    assert_eq!(report.status, RestoreStatus::Restored, "{report:?}");
    assert_eq!(report.nacl_entries_removed.len(), first.len());
}

/// Tags the instance itself may write on its ACL, each meant to stop the ACL measure or keep
/// its denies: a record that does not read stands for itself, a record of a made-up instance
/// holds no deny back, and a refused record naming no deny in place is no drift.
#[test]
fn forged_acl_records_neither_stop_the_denies_nor_keep_them_after_restore() {
    let ec2 = FakeEc2::standard();
    let key = key();
    ec2.with(|s| {
        let tags = &mut s.acls.get_mut("acl-a").unwrap().tags;
        // A chunk 1 with no chunk 0, and a record naming a deny that is not there.
        tags.push(("cordon:i-00000001:1".into(), "x".into()));
        tags.push((
            "cordon:i-00000001:0badf00d:0".into(),
            "in:77:192.0.2.1/32".into(),
        ));
    });
    let (record, entries) = blocked(&ec2, &key);
    assert!(
        entries.iter().any(|e| e.acl_id == "acl-a"),
        "acl-a still gets its denies: {entries:?}"
    );
    // A record for an instance that does not exist, naming one of Cordon's denies.
    let ours = entries
        .iter()
        .find(|e| e.acl_id == "acl-a")
        .unwrap()
        .clone();
    ec2.with(|s| {
        s.acls.get_mut("acl-a").unwrap().tags.push((
            "cordon:i-0000000a:0".into(),
            crate::record::encode_acl_entries(std::slice::from_ref(&ours)),
        ))
    });
    let report = block_on(restore(
        &ec2,
        "i-00000001",
        RecordSource::Execution {
            record: &record,
            key: &key,
        },
        &entries,
    ))
    .unwrap();
    assert_eq!(report.status, RestoreStatus::Restored, "{report:?}");
    assert!(report.nacl_entries_kept.is_empty(), "{report:?}");
    assert!(!acl(&ec2, "acl-a").entries.contains(&ours.as_acl_entry()));
    assert_eq!(report.nacl_entries_removed.len(), entries.len());
}

/// Records that reserve every number of the band (tags anyone allowed to tag the ACL can
/// write) leave the denies room all the same.
#[test]
fn forged_records_that_reserve_the_whole_band_do_not_keep_the_denies_out() {
    let ec2 = FakeEc2::standard();
    let key = key();
    let band: Vec<String> = (1..=99)
        .flat_map(|n| {
            [
                format!("in:{n}:192.0.2.{n}/32"),
                format!("out:{n}:192.0.2.{n}/32"),
            ]
        })
        .collect();
    let forged = crate::record::chunk_tags("cordon:i-0000beef:00000000", &band.join(","));
    assert!(forged.len() < 40, "fits the ACL's tags: {}", forged.len());
    ec2.with(|s| s.acls.get_mut("acl-a").unwrap().tags.extend(forged));
    let (_, entries) = blocked(&ec2, &key);
    assert!(
        entries.iter().any(|e| e.acl_id == "acl-a" && e.egress),
        "acl-a gets its denies: {entries:?}"
    );
}

/// A re-pick rewrites this run's sealed record while KMS is throttled: the sealed record
/// stays as it was (never replaced by an unsealed one, whose denies restore could not check),
/// and the re-picked deny waits for the step's retry.
#[test]
fn a_sealed_record_is_never_rewritten_unsealed() {
    let ec2 = FakeEc2::standard();
    let key = key();
    let record = contained(&ec2, &key);
    let kms_calls = key.kms.calls.lock().unwrap().len();
    // The first record's seal goes through; the re-pick's does not.
    *key.kms.throttled_after.lock().unwrap() = Some(kms_calls + 1);
    let theirs = crate::ec2::AclEntry {
        rule_number: 1,
        egress: false,
        action: crate::ec2::RuleAction::Deny,
        protocol: "6".into(),
        cidr: "10.9.9.9/32".into(),
    };
    ec2.with(|s| s.racing_entry = Some(("acl-a".into(), theirs)));
    let report = block_on(crate::nacl::block(
        &ec2,
        &record,
        &["203.0.113.9".parse().unwrap()],
        &crate::config::NaclSettings::default(),
        &key,
    ));
    assert!(
        report.errors.iter().any(|e| e.error == "Cordon.Throttled"),
        "the re-picked deny waits for the retry: {:?}",
        report.errors
    );
    let acl = acl(&ec2, "acl-a");
    for run in crate::record::acl_records("acl-a", "i-00000001", &acl.tags) {
        let run = run.unwrap();
        let message = acl_message("acl-a", "i-00000001", run.run.as_deref(), &run.text);
        *key.kms.throttled_after.lock().unwrap() = None;
        assert_eq!(
            block_on(check(&key, &message, run.seal.as_deref())),
            Verdict::Verified,
            "{run:?}"
        );
    }
}

/// Two instances of one subnet call the same command-and-control host. The second finds the
/// first's deny in place: its record names that deny too, so the first one's restore leaves
/// it, and the second one's removes it.
#[test]
fn a_deny_two_instances_rely_on_stays_until_the_last_is_restored() {
    let ec2 = FakeEc2::standard();
    let key = key();
    ec2.with(|s| {
        let mut other = s.instances["i-00000001"].clone();
        other.id = "i-00000002".into();
        other.interfaces = vec![crate::fake::interface(
            "eni-9",
            "subnet-a",
            &["sg-app"],
            "10.0.1.9",
            None,
        )];
        s.instances.insert("i-00000002".into(), other);
    });
    let contain = |instance: &str, owner: &str| {
        let (output, _) = block_on(capture_seeing(
            &ec2,
            instance,
            None,
            Some(owner),
            "2026-12-07T03:00:00.000Z",
            Pace::AtOnce,
            &Config::default(),
            &key,
        ))
        .unwrap();
        let record = output.record.unwrap();
        block_on(isolate(&ec2, &record, crate::isolate::Access::default())).unwrap();
        let report = block_on(crate::nacl::block(
            &ec2,
            &record,
            &["203.0.113.9".parse().unwrap()],
            &crate::config::NaclSettings::default(),
            &key,
        ));
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        report.nacl_entries
    };
    let first = contain("i-00000002", "exec-b");
    let shared = first
        .iter()
        .find(|e| e.acl_id == "acl-a" && e.cidr == "203.0.113.9/32" && !e.egress)
        .unwrap()
        .clone();
    let second = contain("i-00000001", "exec-a");
    assert!(
        second.contains(&shared),
        "relied on, and recorded: {second:?}"
    );

    let restore_of = |instance: &str| {
        block_on(restore(
            &ec2,
            instance,
            RecordSource::Tags {
                key: &key,
                trust_unverified: false,
            },
            &[],
        ))
        .unwrap()
    };
    let report = restore_of("i-00000002");
    assert_eq!(report.status, RestoreStatus::Restored, "{report:?}");
    assert!(
        acl(&ec2, "acl-a").entries.contains(&shared.as_acl_entry()),
        "i-00000001 still relies on it"
    );
    let report = restore_of("i-00000001");
    assert_eq!(report.status, RestoreStatus::Restored, "{report:?}");
    assert!(!acl(&ec2, "acl-a").entries.contains(&shared.as_acl_entry()));
}
