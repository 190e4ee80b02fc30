use super::*;
use crate::capture::{capture_seeing, Pace};
use crate::config::{Config, NaclSettings};
use crate::ec2::{AclEntry, RuleAction};
use crate::fake::{block_on, FakeEc2};
use crate::isolate::isolate;
use crate::kms::fake::FakeKms;
use crate::seal::RecordKey;

fn key() -> RecordKey<FakeKms> {
    RecordKey {
        kms: FakeKms::with_key("k", b"record key material"),
        key_id: "k".into(),
    }
}

/// `i-00000001` contained by an execution: claimed, isolated, its denies in both ACLs.
fn contained(ec2: &FakeEc2, key: &RecordKey<FakeKms>) -> Vec<DenyEntry> {
    let (output, _) = block_on(capture_seeing(
        ec2,
        "i-00000001",
        None,
        Some("exec-a"),
        "2026-12-07T03:00:00.000Z",
        Pace::AtOnce,
        &Config::default(),
        key,
    ))
    .unwrap();
    let record = output.record.unwrap();
    block_on(isolate(ec2, &record, crate::isolate::Access::default())).unwrap();
    let report = block_on(crate::nacl::block(
        ec2,
        &record,
        &["203.0.113.9".parse().unwrap()],
        &NaclSettings::default(),
        key,
    ));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report.nacl_entries
}

/// [`contained`], by an isolation step that could not delete the conversion group after its
/// swaps (EC2 throttled the delete): the group is left for a restore or the clean-up.
fn contained_leaving_the_conversion_group(
    ec2: &FakeEc2,
    key: &RecordKey<FakeKms>,
) -> Vec<DenyEntry> {
    ec2.fail_next(
        "DeleteSecurityGroup",
        CordonError::Throttled {
            operation: "DeleteSecurityGroup".into(),
            message: "Request limit exceeded.".into(),
        },
    );
    let entries = contained(ec2, key);
    assert_eq!(cordon_groups(ec2), ["conversion", "isolation"]);
    entries
}

fn terminate(ec2: &FakeEc2) {
    ec2.with(|s| {
        let instance = s.instances.get_mut("i-00000001").unwrap();
        instance.state = "terminated".into();
        // A terminated instance's interfaces are gone with it.
        instance.interfaces.clear();
    });
}

fn writes(ec2: &FakeEc2) -> Vec<String> {
    ec2.calls()
        .into_iter()
        .filter(|c| !c.starts_with("Describe"))
        .collect()
}

fn acl_entries(ec2: &FakeEc2) -> Vec<AclEntry> {
    let mut all = ec2.acl_entries("acl-a");
    all.extend(ec2.acl_entries("acl-b"));
    all
}

#[test]
fn nothing_of_an_instance_still_isolated_is_touched() {
    let ec2 = FakeEc2::standard();
    let key = key();
    contained(&ec2, &key);
    let groups_before = ec2.with(|s| s.groups.clone());
    let entries_before = acl_entries(&ec2);
    ec2.clear_calls();
    let report = block_on(cleanup(&ec2, &key, false, false)).unwrap();
    assert!(report.unused_groups.is_empty(), "{report:?}");
    assert!(report.stale_claims.is_empty() && report.acl_entries.is_empty());
    assert!(report.acl_tags.is_empty());
    assert_eq!(writes(&ec2), Vec::<String>::new());
    assert_eq!(ec2.with(|s| s.groups.clone()), groups_before);
    assert_eq!(acl_entries(&ec2), entries_before);
    assert!(
        report
            .kept
            .iter()
            .any(|k| k.reason.contains("claim of i-00000001")),
        "{:?}",
        report.kept
    );
}

#[test]
fn a_terminated_instances_claim_denies_and_groups_are_listed_then_removed() {
    let ec2 = FakeEc2::standard();
    let key = key();
    let acls_before = ec2.with(|s| s.acls.clone());
    let entries = contained_leaving_the_conversion_group(&ec2, &key);
    terminate(&ec2);

    ec2.clear_calls();
    let dry = block_on(cleanup(&ec2, &key, false, true)).unwrap();
    assert!(dry.dry_run);
    assert_eq!(
        writes(&ec2),
        Vec::<String>::new(),
        "a dry run changes nothing"
    );
    assert_eq!(dry.stale_claims.len(), 1);
    let mut roles: Vec<&str> = dry.unused_groups.iter().map(|g| g.role.as_str()).collect();
    roles.sort();
    assert_eq!(roles, ["conversion", "isolation"]);
    assert_eq!(dry.acl_entries.len(), entries.len());
    assert_eq!(dry.acl_tags.len(), 2);

    let applied = block_on(cleanup(&ec2, &key, false, false)).unwrap();
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert!(
        ec2.with(|s| s
            .groups
            .values()
            .all(|g| g.role.is_none() && !g.tags.iter().any(|(k, _)| k.starts_with("cordon:")))),
        "no Cordon group is left"
    );
    assert_eq!(
        ec2.with(|s| s.acls.clone()),
        acls_before,
        "the ACLs as before the containment, entries and tags"
    );
    // And again: nothing left to do.
    let again = block_on(cleanup(&ec2, &key, false, true)).unwrap();
    assert!(again.unused_groups.is_empty() && again.acl_entries.is_empty());
}

/// Whoever may tag an ACL writes a record, for an instance that does not exist, naming an
/// administrator's deny: the clean-up, like restore, removes no entry a record it cannot
/// verify names.
#[test]
fn a_forged_acl_record_cannot_make_the_cleanup_delete_an_administrators_deny() {
    let ec2 = FakeEc2::standard();
    let key = key();
    contained(&ec2, &key);
    let admins = AclEntry {
        rule_number: 10,
        egress: false,
        action: RuleAction::Deny,
        protocol: "-1".into(),
        cidr: "198.51.100.0/24".into(),
    };
    ec2.with(|s| {
        let acl = s.acls.get_mut("acl-a").unwrap();
        acl.entries.push(admins.clone());
        acl.tags.push((
            "cordon:i-0000dead:deadbeef:0".into(),
            "in:10:198.51.100.0/24".into(),
        ));
    });
    let report = block_on(cleanup(&ec2, &key, false, false)).unwrap();
    assert!(ec2.acl_entries("acl-a").contains(&admins));
    assert!(report.acl_entries.is_empty(), "{:?}", report.acl_entries);
    assert!(
        report
            .kept
            .iter()
            .any(|k| k.resource == "acl-a" && k.reason.contains("i-0000dead")),
        "{:?}",
        report.kept
    );
}

/// The cordon groups of `vpc-1`, by role.
fn cordon_groups(ec2: &FakeEc2) -> Vec<String> {
    let mut roles: Vec<String> = ec2.with(|s| {
        s.groups
            .values()
            .filter_map(|g| g.role.map(|r| r.tag_value().to_string()))
            .collect()
    });
    roles.sort();
    roles
}

fn restore_with(ec2: &FakeEc2, key: &RecordKey<FakeKms>) -> crate::restore::RestoreReport {
    block_on(crate::restore::restore(
        ec2,
        "i-00000001",
        crate::restore::RecordSource::Tags {
            key,
            trust_unverified: false,
        },
        &[],
    ))
    .unwrap()
}

/// The isolation step deletes the conversion group after its swaps; the restore deletes one
/// that step could not.
#[test]
fn a_containment_leaves_no_group_that_allows_all_traffic_and_a_restore_deletes_one_left() {
    let ec2 = FakeEc2::standard();
    let key = key();
    contained(&ec2, &key);
    assert_eq!(cordon_groups(&ec2), ["isolation"]);

    let ec2 = FakeEc2::standard();
    contained_leaving_the_conversion_group(&ec2, &key);
    let report = restore_with(&ec2, &key);
    assert_eq!(
        report.status,
        crate::restore::RestoreStatus::Restored,
        "{report:?}"
    );
    // The isolation group, which lets nothing out, stays for a containment racing this one.
    assert_eq!(cordon_groups(&ec2), ["isolation"], "{:?}", report.groups);
    assert_eq!(report.groups.len(), 1, "{:?}", report.groups);
}

/// Another instance of the VPC stays isolated (its claim is there): the conversion group,
/// which no interface carries, goes all the same.
#[test]
fn another_instance_still_isolated_in_the_vpc_keeps_no_group_that_allows_all_traffic() {
    let ec2 = FakeEc2::standard();
    let key = key();
    contained_leaving_the_conversion_group(&ec2, &key);
    let isolation = ec2.with(|s| {
        s.groups
            .values()
            .find(|g| g.role == Some(GroupRole::Isolation))
            .unwrap()
            .id
            .clone()
    });
    ec2.add_neighbour("i-00000002", "eni-9", &[&isolation]);
    block_on(ec2.create_claim_group(
        "vpc-1",
        "i-00000002",
        "exec-b",
        "2026-12-07T03:00:00.000Z",
        &[],
    ))
    .unwrap();
    let report = restore_with(&ec2, &key);
    assert_eq!(report.status, crate::restore::RestoreStatus::Restored);
    assert_eq!(cordon_groups(&ec2), ["isolation"], "{:?}", report.groups);
    assert_eq!(ec2.interface_groups("eni-9"), [isolation]);
}

/// A containment under way has an interface on the conversion group: the restore keeps it
/// (EC2 would refuse the delete) and says why.
#[test]
fn a_containment_under_way_in_the_vpc_keeps_its_conversion_group() {
    let ec2 = FakeEc2::standard();
    let key = key();
    contained_leaving_the_conversion_group(&ec2, &key);
    let conversion = ec2.with(|s| {
        s.groups
            .values()
            .find(|g| g.role == Some(GroupRole::Conversion))
            .unwrap()
            .id
            .clone()
    });
    ec2.add_neighbour("i-00000002", "eni-9", &[&conversion]);
    let report = restore_with(&ec2, &key);
    assert_eq!(report.status, crate::restore::RestoreStatus::Restored);
    assert_eq!(cordon_groups(&ec2), ["conversion", "isolation"]);
    assert!(
        report.groups.iter().any(|line| line.contains("eni-9")),
        "{:?}",
        report.groups
    );
}

/// Whoever may tag a group tags an application's group as the claim of a made-up (gone)
/// instance, and another as Cordon's conversion group: neither cleanup nor restore deletes a
/// group on its tags alone.
#[test]
fn an_application_group_tagged_as_cordons_is_never_deleted() {
    let ec2 = FakeEc2::standard();
    let key = key();
    contained(&ec2, &key);
    ec2.with(|s| {
        let app = s.groups.get_mut("sg-app").unwrap();
        app.tags.extend(crate::claim::claim_tags(
            "i-0000dead",
            "exec-x",
            "2026-01-01T00:00:00.000Z",
        ));
        let ssh = s.groups.get_mut("sg-ssh").unwrap();
        ssh.role = Some(GroupRole::Conversion);
        ssh.tags
            .push((GroupRole::TAG_KEY.into(), "conversion".into()));
    });
    let report = block_on(cleanup(&ec2, &key, false, false)).unwrap();
    assert!(ec2.with(|s| s.groups.contains_key("sg-app") && s.groups.contains_key("sg-ssh")));
    assert!(report.stale_claims.is_empty(), "{report:?}");
    // Restore, with the decoy tagged as this instance's claim too.
    ec2.with(|s| {
        let app = s.groups.get_mut("sg-app").unwrap();
        app.tags.retain(|(k, _)| !k.starts_with("cordon:"));
        app.tags.extend(crate::claim::claim_tags(
            "i-00000001",
            "exec-x",
            "2026-01-01T00:00:00.000Z",
        ));
    });
    restore_with(&ec2, &key);
    assert!(ec2.with(|s| s.groups.contains_key("sg-app") && s.groups.contains_key("sg-ssh")));
}
