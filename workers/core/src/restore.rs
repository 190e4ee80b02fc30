//! Restore: give each interface back exactly its recorded groups, remove exactly the ACL
//! entries Cordon added, set termination protection back and drop Cordon's tags. Anything
//! someone changed since isolation (drift) is left alone and reported.

use serde::{Deserialize, Serialize};

use crate::ec2::{AclEntry, ConnTrack, DenyEntry, Ec2, NetworkAcl, NetworkInterface, RuleAction};
use crate::error::{CordonError, Result, StepError};
use crate::nacl::recorded_for_another;
use crate::record::{acl_record_keys, state_record_keys, CapturedState};
use crate::seal::{vetted_entries, vetted_record, RecordTrouble, Seal, Vetted};

/// What to do with one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfacePlan {
    /// Carries only Cordon's groups: put the originals back.
    Restore,
    /// Already carries its original groups.
    AlreadyOriginal,
    /// Detached or deleted since isolation.
    Gone,
    /// Someone changed its groups since isolation; they are left as they are.
    Drift { current: Vec<String> },
    /// Original groups deleted since capture: EC2 would refuse them (moto silently drops them).
    OriginalsMissing { missing: Vec<String> },
    /// The record names none of the interface's own groups, or names Cordon's: putting it
    /// "back" there would leave it isolated or open both ways, not as it was.
    RecordUnusable,
}

pub fn plan_interface(
    original: &NetworkInterface,
    current: Option<&NetworkInterface>,
    cordon_group_ids: &[String],
    existing_group_ids: &[String],
) -> InterfacePlan {
    let Some(current) = current else {
        return InterfacePlan::Gone;
    };
    if original.groups.is_empty() || original.groups.iter().any(|g| cordon_group_ids.contains(g)) {
        return InterfacePlan::RecordUnusable;
    }
    if current.groups == original.groups {
        return InterfacePlan::AlreadyOriginal;
    }
    let only_cordon =
        !current.groups.is_empty() && current.groups.iter().all(|g| cordon_group_ids.contains(g));
    if !only_cordon {
        return InterfacePlan::Drift {
            current: current.groups.clone(),
        };
    }
    let missing: Vec<String> = original
        .groups
        .iter()
        .filter(|g| !existing_group_ids.contains(g))
        .cloned()
        .collect();
    if missing.is_empty() {
        InterfacePlan::Restore
    } else {
        InterfacePlan::OriginalsMissing { missing }
    }
}

/// What to do with one recorded ACL entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryPlan {
    Delete,
    AlreadyGone,
    /// The number now holds a different rule: not ours any more.
    Drift {
        found: AclEntry,
    },
}

/// Whether a record of another instance on the ACL names `entry` too, and may be relied on
/// (its seal verifies under `key`, or `trust_unverified`): a record anyone wrote for a made-up
/// instance would otherwise keep Cordon's denies in place for ever, under a restore that says
/// it is done. KMS not answering is an error, for the caller's retry.
async fn held_by_another(
    key: &impl Seal,
    trust_unverified: bool,
    acl: &NetworkAcl,
    instance_id: &str,
    entry: &DenyEntry,
) -> Result<bool> {
    // As written first: most denies are no one else's, and that costs no KMS call.
    if !recorded_for_another(acl, instance_id, &entry.as_acl_entry()) {
        return Ok(false);
    }
    for other in crate::record::acl_recorded_instances(&acl.tags) {
        if other == instance_id {
            continue;
        }
        let theirs = vetted_entries(key, trust_unverified, acl, other, &[]).await?;
        if theirs
            .entries
            .iter()
            .any(|e| e.names(&entry.as_acl_entry()))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether another entry the instance's records name denies the same address in the same
/// direction of the same ACL, and is in place: `entry` was an intent given up for it.
fn superseded(entry: &DenyEntry, recorded: &[DenyEntry], acl: &NetworkAcl) -> bool {
    recorded.iter().any(|other| {
        other != entry
            && other.acl_id == entry.acl_id
            && other.egress == entry.egress
            && other.cidr == entry.cidr
            && plan_entry(other, &acl.entries) == EntryPlan::Delete
    })
}

pub fn plan_entry(recorded: &DenyEntry, entries: &[AclEntry]) -> EntryPlan {
    match entries
        .iter()
        .find(|e| e.egress == recorded.egress && e.rule_number == recorded.rule_number)
    {
        None => EntryPlan::AlreadyGone,
        Some(found)
            if found.action == RuleAction::Deny
                && found.cidr == recorded.cidr
                && found.protocol == "-1" =>
        {
            EntryPlan::Delete
        }
        Some(found) => EntryPlan::Drift {
            found: found.clone(),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreStatus {
    Restored,
    NotIsolated,
    Drift,
    Failed,
    /// The workflow's decision was not one Cordon's approval page sealed: nothing changed.
    DecisionRefused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterfaceOutcome {
    Restored,
    AlreadyOriginal,
    Gone,
    Drift,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceRestore {
    pub eni_id: String,
    pub original_groups: Vec<String>,
    pub groups_before: Vec<String>,
    pub groups_now: Vec<String>,
    pub outcome: InterfaceOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptEntry {
    pub entry: DenyEntry,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub instance_id: String,
    pub status: RestoreStatus,
    pub enis: Vec<InterfaceRestore>,
    pub nacl_entries_removed: Vec<DenyEntry>,
    pub nacl_entries_kept: Vec<KeptEntry>,
    /// Termination protection as it is left.
    pub termination_protection: Option<bool>,
    /// `InstanceInitiatedShutdownBehavior` as it is left (None: the record did not keep it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_behavior: Option<String>,
    /// The Auto Scaling group given back, when Cordon had held the instance in one. Always
    /// present (null when not): the state machine's ResultSelector names it.
    #[serde(default)]
    pub auto_scaling: Option<crate::measures::auto_scaling::RestoreReport>,
    /// The role given back, when Cordon had cut the instance's credentials. Always present
    /// (null when not), as `auto_scaling`.
    #[serde(default)]
    pub credentials: Option<crate::measures::credentials::RestoreReport>,
    /// The volumes' settings given back and the evidence kept, when Cordon snapshotted them.
    /// Always present (null when not), as `auto_scaling`.
    #[serde(default)]
    pub evidence: Option<crate::measures::evidence::RestoreReport>,
    /// The target groups the instance is back in, when Cordon took it out of any. Always
    /// present (null when not), as `auto_scaling`.
    #[serde(default)]
    pub load_balancers: Option<crate::measures::load_balancers::RestoreReport>,
    /// Records kept in tags that were not used, and why (a seal that does not verify, or
    /// none): break-glass restore only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records_refused: Vec<RecordTrouble>,
    /// Records used although their seal did not verify (`--trust-unverified`): whoever could
    /// write those tags chose what was restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records_used_unverified: Vec<RecordTrouble>,
    /// Cordon's groups deleted (or kept, and why) once no interface of their VPC needed them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub errors: Vec<StepError>,
}

impl RestoreReport {
    /// Nothing restored: the decision that asked for it is not Cordon's (`reason` says why).
    pub fn decision_refused(instance_id: &str, reason: String) -> Self {
        RestoreReport {
            instance_id: instance_id.to_string(),
            status: RestoreStatus::DecisionRefused,
            enis: Vec::new(),
            nacl_entries_removed: Vec::new(),
            nacl_entries_kept: Vec::new(),
            termination_protection: None,
            shutdown_behavior: None,
            auto_scaling: None,
            credentials: None,
            evidence: None,
            load_balancers: None,
            records_refused: Vec::new(),
            records_used_unverified: Vec::new(),
            groups: Vec::new(),
            errors: vec![StepError {
                error: "Cordon.DecisionRefused".into(),
                cause: reason,
            }],
        }
    }
}

/// Whose word a restore takes for the record of the original groups.
#[derive(Debug, Clone, Copy)]
pub enum RecordSource<'a, S> {
    /// The execution's own record, which no one but Step Functions wrote: the tags' copy is
    /// not read. ACL entries that only the ACLs' records name (not the NACL step's output)
    /// are removed only where their record's seal verifies under `key` (any, without a key).
    Execution {
        record: &'a CapturedState,
        key: &'a S,
    },
    /// The records kept in tags (break-glass `cordon restore`), the state record and the ACL
    /// records alike, used only where their seal verifies under `key`, or, with
    /// `trust_unverified`, whatever they say (each such record reported).
    Tags { key: &'a S, trust_unverified: bool },
}

#[cfg(test)]
impl<'a> RecordSource<'a, crate::seal::Unsealed> {
    /// The execution's record, and the ACLs' records as written (no key to check them).
    pub fn execution(record: &'a CapturedState) -> Self {
        RecordSource::Execution {
            record,
            key: &crate::seal::Unsealed,
        }
    }

    /// The tags' records, whatever their seals say (`--trust-unverified`).
    pub fn unverified_tags() -> Self {
        RecordSource::Tags {
            key: &crate::seal::Unsealed,
            trust_unverified: true,
        }
    }
}

/// Restores `instance_id` from the record `source` gives. `known_entries` are ACL entries the
/// caller knows were added (the NACL step's output) in addition to those recorded on the ACLs.
pub async fn restore(
    ec2: &impl Ec2,
    instance_id: &str,
    source: RecordSource<'_, impl Seal>,
    known_entries: &[DenyEntry],
) -> Result<RestoreReport> {
    let instance = ec2.describe_instance(instance_id).await?;
    let mut errors: Vec<CordonError> = Vec::new();
    // The claim keeps the record (the instance's tags did, before): read Cordon's groups first.
    let mut vpc_ids = instance.vpc_ids();
    let mut cordon_groups = ec2.cordon_groups(&vpc_ids).await?;
    let claim = crate::claim::claim_in(&cordon_groups, instance_id);
    let (tag_key, trust_tags) = match source {
        RecordSource::Execution { key, .. } => (key, !key.has_key()),
        RecordSource::Tags {
            key,
            trust_unverified,
        } => (key, trust_unverified),
    };
    let (record, vetted) = match source {
        RecordSource::Execution { record, .. } => (Some(record.clone()), Vetted::default()),
        RecordSource::Tags {
            key,
            trust_unverified,
        } => {
            let vetted = vetted_record(
                key,
                trust_unverified,
                instance_id,
                claim.as_ref(),
                &instance.tags,
                chrono::Utc::now(),
            )
            .await?;
            (vetted.record.clone(), vetted)
        }
    };

    if let Some(record) = &record {
        // An interface detached since: its VPC's ACLs and groups are read too.
        let elsewhere: Vec<String> = record
            .vpc_ids()
            .into_iter()
            .filter(|vpc| !vpc_ids.contains(vpc))
            .collect();
        if !elsewhere.is_empty() {
            cordon_groups.extend(ec2.cordon_groups(&elsewhere).await?);
            vpc_ids.extend(elsewhere);
        }
    }
    // The claim of an interface since detached, then: deleted like any other.
    let claim = claim.or_else(|| crate::claim::claim_in(&cordon_groups, instance_id));
    let mut acls: Vec<NetworkAcl> = Vec::new();
    for vpc_id in &vpc_ids {
        acls.extend(ec2.network_acls(vpc_id).await?);
    }
    let mut entries: Vec<DenyEntry> = Vec::new();
    let mut refused_entries: Vec<KeptEntry> = Vec::new();
    let mut records_refused = vetted.refused.clone();
    let mut records_used_unverified = vetted.unverified.clone();
    for acl in &acls {
        match vetted_entries(tag_key, trust_tags, acl, instance_id, known_entries).await {
            Ok(found) => {
                entries.extend(found.entries);
                records_used_unverified.extend(found.unverified);
                for (refused, named) in found.refused {
                    // Only a deny that is there matters: one a refused record names and the
                    // ACL does not hold is nothing to keep (and no reason for drift).
                    let in_place = named
                        .into_iter()
                        .filter(|entry| plan_entry(entry, &acl.entries) == EntryPlan::Delete);
                    refused_entries.extend(in_place.map(|entry| KeptEntry {
                        reason: format!(
                            "rule {} is named only by the record {}, which was refused ({}): left in place",
                            entry.rule_number, refused.record, refused.reason
                        ),
                        entry,
                    }));
                    records_refused.push(refused);
                }
            }
            Err(error) => errors.push(error),
        }
    }
    for entry in known_entries {
        if !entries.contains(entry) {
            entries.push(entry.clone());
        }
    }
    // The claim is deleted only if Cordon made it: its tags could be anyone's.
    let claim = claim.filter(|claim| {
        cordon_groups
            .iter()
            .any(|g| g.id == claim.group_id && g.named_as_cordons())
    });
    let cordon_ids: Vec<String> = cordon_groups.into_iter().map(|g| g.id).collect();

    let mut report = RestoreReport {
        instance_id: instance_id.to_string(),
        status: RestoreStatus::Restored,
        enis: Vec::new(),
        nacl_entries_removed: Vec::new(),
        nacl_entries_kept: refused_entries,
        termination_protection: None,
        shutdown_behavior: None,
        auto_scaling: None,
        credentials: None,
        evidence: None,
        load_balancers: None,
        records_refused,
        records_used_unverified,
        groups: Vec::new(),
        errors: Vec::new(),
    };
    // A deny left for a refused record: a person looks before anything else is dropped.
    let mut drift = !report.nacl_entries_kept.is_empty();

    match &record {
        None => {
            if let Some(eni) = instance
                .interfaces
                .iter()
                .find(|i| i.groups.iter().any(|g| cordon_ids.contains(g)))
            {
                let message = if vetted.refused.is_empty() {
                    format!(
                        "{} carries Cordon's groups but no record of its original groups was found; set them by hand",
                        eni.id
                    )
                } else {
                    format!(
                        "{} carries Cordon's groups, and the record of its original groups was refused ({}); it stays as it is. Check those tags: if you trust whoever could write them, run again with --trust-unverified, or set the groups by hand",
                        eni.id,
                        vetted
                            .refused
                            .iter()
                            .map(|r| format!("{} on {}: {}", r.record, r.resource, r.reason))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                };
                errors.push(CordonError::CorruptRecord {
                    resource: instance_id.into(),
                    message,
                });
            } else if entries.is_empty() {
                report.status = RestoreStatus::NotIsolated;
                return Ok(report);
            }
        }
        Some(record) => {
            let originals: Vec<String> = record
                .interfaces
                .iter()
                .flat_map(|i| i.groups.clone())
                .collect();
            let existing = ec2.existing_groups(&originals).await?;
            for original in &record.interfaces {
                let current = instance.interfaces.iter().find(|i| i.id == original.id);
                let groups_before = current.map(|c| c.groups.clone()).unwrap_or_default();
                let mut line = InterfaceRestore {
                    eni_id: original.id.clone(),
                    original_groups: original.groups.clone(),
                    groups_before: groups_before.clone(),
                    groups_now: groups_before.clone(),
                    outcome: InterfaceOutcome::Restored,
                };
                match plan_interface(original, current, &cordon_ids, &existing) {
                    InterfacePlan::Restore => match ec2
                        .set_interface_groups(&original.id, &original.groups)
                        .await
                    {
                        Ok(()) => line.groups_now = original.groups.clone(),
                        Err(error) => {
                            line.outcome = InterfaceOutcome::Failed;
                            errors.push(error);
                        }
                    },
                    InterfacePlan::AlreadyOriginal => {
                        line.outcome = InterfaceOutcome::AlreadyOriginal
                    }
                    InterfacePlan::Gone => {
                        line.outcome = InterfaceOutcome::Gone;
                        report.errors.push(StepError {
                            error: "Cordon.InterfaceNotFound".into(),
                            cause: format!("{} no longer exists or is no longer attached to {instance_id}; skipped", original.id),
                        });
                    }
                    InterfacePlan::Drift { current } => {
                        drift = true;
                        line.outcome = InterfaceOutcome::Drift;
                        report.errors.push(StepError {
                            error: "Cordon.Drift".into(),
                            cause: format!(
                                "{} now carries {current:?}, not only Cordon's groups: someone changed it since isolation; left as it is",
                                original.id
                            ),
                        });
                    }
                    InterfacePlan::RecordUnusable => {
                        drift = true;
                        line.outcome = InterfaceOutcome::Drift;
                        report.errors.push(StepError {
                            error: "Cordon.Drift".into(),
                            cause: format!(
                                "the record gives {} the groups {:?}, which are not groups of its own; it stays as it is until you choose its groups",
                                original.id, original.groups
                            ),
                        });
                    }
                    InterfacePlan::OriginalsMissing { missing } => {
                        drift = true;
                        line.outcome = InterfaceOutcome::Drift;
                        report.errors.push(StepError {
                            error: "Cordon.Drift".into(),
                            cause: format!(
                                "original groups {missing:?} of {} no longer exist; it stays isolated until you choose its groups",
                                original.id
                            ),
                        });
                    }
                }
                if matches!(
                    line.outcome,
                    InterfaceOutcome::Restored | InterfaceOutcome::AlreadyOriginal
                ) {
                    if let Err(error) = restore_conntrack(ec2, original, current).await {
                        line.outcome = InterfaceOutcome::Failed;
                        errors.push(error);
                    }
                }
                report.enis.push(line);
            }
        }
    }

    // An interface left on Cordon's groups for want of a record it may use: nothing else is
    // undone either. Its denies are part of its containment, and a restore that gave them
    // back and kept the groups would leave an instance contained by halves.
    if record.is_none() && !errors.is_empty() {
        report.status = RestoreStatus::Failed;
        report
            .errors
            .extend(errors.iter().map(CordonError::to_report));
        return Ok(report);
    }

    for entry in &entries {
        let Some(acl) = acls.iter().find(|a| a.id == entry.acl_id) else {
            continue; // The ACL itself is gone, and its entries with it.
        };
        let plan = plan_entry(entry, &acl.entries);
        let held = match plan {
            EntryPlan::Delete => {
                match held_by_another(tag_key, trust_tags, acl, instance_id, entry).await {
                    Ok(held) => held,
                    Err(error) => {
                        errors.push(error);
                        continue;
                    }
                }
            }
            _ => false,
        };
        match plan {
            // Another quarantined instance's record names this very deny (the same remote
            // address, given the number our run had planned and never made, or made by one and
            // found by the other after a clash): it stays until the last instance that holds
            // it is restored.
            EntryPlan::Delete if held => {
                report.nacl_entries_kept.push(KeptEntry {
                    entry: entry.clone(),
                    reason: format!(
                        "rule {} is also recorded for another quarantined instance: it stays until that instance is restored",
                        entry.rule_number
                    ),
                });
            }
            EntryPlan::Delete => match ec2
                .delete_acl_entry(&entry.acl_id, entry.egress, entry.rule_number)
                .await
            {
                Ok(()) => report.nacl_entries_removed.push(entry.clone()),
                // A delete whose answer was lost fails on the SDK's retry (the entry is gone);
                // the ACL itself says whether it still holds the rule.
                Err(error) => match ec2.network_acl(&entry.acl_id).await {
                    Ok(fresh)
                        if !fresh.entries.iter().any(|e| {
                            e.egress == entry.egress && e.rule_number == entry.rule_number
                        }) =>
                    {
                        report.nacl_entries_removed.push(entry.clone())
                    }
                    _ => errors.push(error),
                },
            },
            EntryPlan::AlreadyGone => {}
            // An earlier attempt of this restore removed our rule, and Cordon has since given
            // the number to another quarantined instance: ours is gone, theirs stays.
            EntryPlan::Drift { found } if recorded_for_another(acl, instance_id, &found) => {}
            // A number the record named and lost before it was made (taken in between, or
            // after a throttled attempt): the deny of the same address and direction is in
            // place under another number of the record, and the rule there is someone else's
            // deny. Anything else there (an allow) is drift: a person looks.
            EntryPlan::Drift { found }
                if found.action == RuleAction::Deny && superseded(entry, &entries, acl) => {}
            EntryPlan::Drift { found } => {
                drift = true;
                report.nacl_entries_kept.push(KeptEntry {
                    entry: entry.clone(),
                    reason: format!(
                        "rule {} now holds {:?} {} for {}: not Cordon's rule any more",
                        found.rule_number, found.action, found.protocol, found.cidr
                    ),
                });
            }
        }
    }

    if drift || !errors.is_empty() {
        // Keep the record and the protection so that nothing is lost while a person looks.
        report.status = if errors.is_empty() {
            RestoreStatus::Drift
        } else {
            RestoreStatus::Failed
        };
        report
            .errors
            .extend(errors.iter().map(CordonError::to_report));
        return Ok(report);
    }

    if let Some(record) = &record {
        let (protection, shutdown) = tokio::join!(
            ec2.termination_protection(instance_id),
            ec2.shutdown_behavior(instance_id)
        );
        if protection? != record.termination_protection {
            ec2.set_termination_protection(instance_id, record.termination_protection)
                .await?;
        }
        report.termination_protection = Some(record.termination_protection);
        let shutdown = shutdown?;
        if let Some(original) = record.shutdown_behavior.as_deref() {
            if shutdown != original {
                ec2.set_shutdown_behavior(instance_id, original).await?;
            }
            report.shutdown_behavior = Some(original.to_string());
        }
    }
    // A record of an older release, or of `cordon isolate`, on the instance itself.
    let instance_record = state_record_keys(&instance.tags);
    if !instance_record.is_empty() {
        ec2.delete_tags(instance_id, &instance_record).await?;
    }
    for acl in &acls {
        // Every run's record of this instance, and the older shared one.
        let keys = acl_record_keys(instance_id, &acl.tags);
        if !keys.is_empty() {
            ec2.delete_tags(&acl.id, &keys).await?;
        }
    }
    // The claim goes last: while it exists, the instance is still some execution's.
    if let Some(claim) = claim {
        match ec2.delete_group(&claim.group_id).await {
            Ok(()) => {}
            // Already deleted: by our own earlier attempt whose answer was lost.
            Err(CordonError::Ec2 { code, .. }) if code == "InvalidGroup.NotFound" => {}
            Err(other) => return Err(other),
        }
    }
    // No group that allows all traffic outlives the last containment of its VPC.
    report.groups = crate::cleanup::release_unused_groups(ec2, &vpc_ids).await;
    Ok(report)
}

/// Puts the interface's connection-tracking timeouts back as recorded (AWS's defaults when the
/// record holds none), when isolation lowered them.
async fn restore_conntrack(
    ec2: &impl Ec2,
    original: &NetworkInterface,
    current: Option<&NetworkInterface>,
) -> Result<()> {
    let effective = |c: Option<ConnTrack>| c.unwrap_or_default().effective();
    let wanted = effective(original.conntrack);
    if current.is_some_and(|c| effective(c.conntrack) != wanted) {
        ec2.set_connection_tracking(&original.id, &wanted).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::capture;
    use crate::config::NaclSettings;
    use crate::fake::{block_on, interface, FakeEc2};
    use crate::isolate::isolate;
    use crate::nacl::{block, recorded_entries};

    fn quarantined(ec2: &FakeEc2) -> (CapturedState, Vec<DenyEntry>) {
        let record = block_on(capture(
            ec2,
            "i-00000001",
            None,
            None,
            "2026-11-29T14:00:00.000Z",
        ))
        .unwrap()
        .record
        .unwrap();
        block_on(isolate(ec2, &record, crate::isolate::Access::default())).unwrap();
        let report = block_on(block(
            ec2,
            &record,
            &["198.51.100.7".parse().unwrap()],
            &NaclSettings::default(),
            &crate::seal::Unsealed,
        ));
        (record, report.nacl_entries)
    }

    #[test]
    fn a_deny_another_instances_record_also_names_stays_until_that_instance_is_restored() {
        let ec2 = FakeEc2::standard();
        let (record, entries) = quarantined(&ec2);
        // Another instance of the subnet, contained for the same remote address, holds the
        // inbound deny of acl-a too: its run found it there (a clash on the number our run had
        // planned, or our plan left in a record and the number then given to it).
        let shared = entries
            .iter()
            .find(|e| e.acl_id == "acl-a" && !e.egress)
            .unwrap()
            .clone();
        let theirs = crate::record::chunk_tags(
            &crate::record::acl_tag_prefix("i-0000000b", Some("0000beef")),
            &crate::record::encode_acl_entries(std::slice::from_ref(&shared)),
        );
        ec2.with(|s| s.acls.get_mut("acl-a").unwrap().tags.extend(theirs));

        let report = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::execution(&record),
            &entries,
        ))
        .unwrap();
        assert_eq!(
            report.status,
            RestoreStatus::Restored,
            "{:?}",
            report.errors
        );
        let acl_a = block_on(ec2.network_acl("acl-a")).unwrap();
        assert!(
            acl_a.entries.contains(&shared.as_acl_entry()),
            "the other instance keeps its deny"
        );
        assert_eq!(report.nacl_entries_kept.len(), 1);
        assert_eq!(report.nacl_entries_kept[0].entry, shared);
        // Ours alone are gone, and only the other instance's record names the one left.
        assert_eq!(report.nacl_entries_removed.len(), entries.len() - 1);
        assert!(recorded_entries(&acl_a, "i-00000001").unwrap().is_empty());
        assert_eq!(
            recorded_entries(&acl_a, "i-0000000b").unwrap(),
            vec![shared]
        );
    }

    #[test]
    fn restore_releases_the_claim_so_a_later_finding_contains_again() {
        let ec2 = FakeEc2::standard();
        let record = block_on(capture(
            &ec2,
            "i-00000001",
            None,
            Some("exec-a"),
            "2026-11-29T14:00:00.000Z",
        ))
        .unwrap()
        .record
        .unwrap();
        block_on(isolate(&ec2, &record, crate::isolate::Access::default())).unwrap();
        let claims = |ec2: &FakeEc2| {
            let groups: Vec<_> = ec2.with(|s| s.groups.values().cloned().collect());
            crate::claim::claim_in(&groups, "i-00000001")
        };
        assert_eq!(claims(&ec2).unwrap().owner, "exec-a");
        let report = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::execution(&record),
            &[],
        ))
        .unwrap();
        assert_eq!(report.status, RestoreStatus::Restored);
        assert_eq!(claims(&ec2), None);
        let again = block_on(capture(
            &ec2,
            "i-00000001",
            None,
            Some("exec-b"),
            "2026-11-29T14:05:00.000Z",
        ))
        .unwrap();
        assert_eq!(again.status, crate::capture::CaptureStatus::Captured);
    }

    #[test]
    fn a_delete_whose_answer_was_lost_counts_as_removed_and_a_throttled_one_retries() {
        let ec2 = FakeEc2::standard();
        let before = ec2.acl_entries("acl-a");
        let (record, entries) = quarantined(&ec2);
        ec2.with(|s| s.lost_delete_answer = true);
        let report = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::execution(&record),
            &entries,
        ))
        .unwrap();
        assert_eq!(
            report.status,
            RestoreStatus::Restored,
            "{:?}",
            report.errors
        );
        assert_eq!(ec2.acl_entries("acl-a"), before);
        assert!(ec2.with(|s| s.instances["i-00000001"]
            .tags
            .iter()
            .all(|(k, _)| !k.starts_with("cordon:"))));

        // Throttled on a delete: the restore step fails, so the state machine runs it again,
        // and the second run finishes the job.
        let ec2 = FakeEc2::standard();
        let (record, entries) = quarantined(&ec2);
        ec2.fail_next(
            "DeleteNetworkAclEntry",
            CordonError::Throttled {
                operation: "DeleteNetworkAclEntry".into(),
                message: "slow down".into(),
            },
        );
        let input = crate::steps::RestoreInput {
            instance_id: "i-00000001".into(),
            account_id: None,
            region: None,
            record: Some(record),
            nacl_entries: entries,
            execution_arn: None,
            approval: None,
            approvals_required: None,
            auto_scaling: None,
            credentials: None,
            evidence: None,
            load_balancers: None,
            trust_unverified_records: false,
        };
        let provider = |_: &crate::ec2::Target| ec2.clone();
        let no_group = |_: &crate::ec2::Target| {
            crate::measures::auto_scaling::port::fake::FakeAutoScaling::default()
        };
        let no_role =
            |_: &crate::ec2::Target| crate::measures::credentials::port::fake::FakeIam::default();
        let no_lb = |_: &crate::ec2::Target| {
            crate::measures::load_balancers::port::fake::FakeLoadBalancing::default()
        };
        let error = block_on(crate::steps::restore_step(
            &provider,
            &no_group,
            &no_role,
            &no_lb,
            &crate::seal::Unsealed,
            &input,
        ))
        .unwrap_err();
        assert_eq!(error.error_name(), "Cordon.Throttled");
        let again = block_on(crate::steps::restore_step(
            &provider,
            &no_group,
            &no_role,
            &no_lb,
            &crate::seal::Unsealed,
            &input,
        ))
        .unwrap();
        assert_eq!(again.status, RestoreStatus::Restored, "{:?}", again.errors);
        assert_eq!(ec2.acl_entries("acl-a"), before);
    }

    #[test]
    fn a_number_reused_by_another_quarantine_after_our_removal_is_not_drift() {
        for theirs_is_recorded in [true, false] {
            let ec2 = FakeEc2::standard();
            let (record, entries) = quarantined(&ec2);
            let ours = entries
                .iter()
                .find(|e| e.acl_id == "acl-a" && !e.egress)
                .unwrap()
                .clone();
            // An earlier attempt removed our inbound rule; another instance's quarantine then
            // took the same number.
            block_on(ec2.delete_acl_entry("acl-a", false, ours.rule_number)).unwrap();
            let theirs = DenyEntry {
                acl_id: "acl-a".into(),
                egress: false,
                rule_number: ours.rule_number,
                cidr: "10.0.1.9/32".into(),
            };
            block_on(ec2.create_deny_entry(&theirs)).unwrap();
            if theirs_is_recorded {
                let tag = (
                    "cordon:i-00000002:0".to_string(),
                    format!("in:{}:10.0.1.9/32", ours.rule_number),
                );
                block_on(ec2.create_tags("acl-a", &[tag])).unwrap();
            }
            let report = block_on(restore(
                &ec2,
                "i-00000001",
                RecordSource::execution(&record),
                &entries,
            ))
            .unwrap();
            let still_theirs = ec2
                .acl_entries("acl-a")
                .iter()
                .any(|e| e.rule_number == theirs.rule_number && e.cidr == theirs.cidr);
            assert!(still_theirs, "their rule is never touched");
            if theirs_is_recorded {
                assert_eq!(
                    report.status,
                    RestoreStatus::Restored,
                    "{:?}",
                    report.errors
                );
            } else {
                // Not Cordon's: someone changed our rule, and a person must look.
                assert_eq!(report.status, RestoreStatus::Drift);
            }
        }
    }

    #[test]
    fn interface_plans_cover_every_case() {
        let original = interface("eni-1", "subnet-a", &["sg-app", "sg-ssh"], "10.0.1.5", None);
        let with = |groups: &[&str]| interface("eni-1", "subnet-a", groups, "10.0.1.5", None);
        let cordon = ["sg-iso".to_string(), "sg-conv".to_string()];
        let all = ["sg-app".to_string(), "sg-ssh".to_string()];
        assert_eq!(
            plan_interface(&original, Some(&with(&["sg-iso"])), &cordon, &all),
            InterfacePlan::Restore
        );
        assert_eq!(
            plan_interface(&original, Some(&with(&["sg-conv"])), &cordon, &all),
            InterfacePlan::Restore
        );
        assert_eq!(
            plan_interface(&original, Some(&with(&["sg-app", "sg-ssh"])), &cordon, &all),
            InterfacePlan::AlreadyOriginal
        );
        assert_eq!(
            plan_interface(&original, None, &cordon, &all),
            InterfacePlan::Gone
        );
        assert_eq!(
            plan_interface(
                &original,
                Some(&with(&["sg-iso", "sg-debug"])),
                &cordon,
                &all
            ),
            InterfacePlan::Drift {
                current: vec!["sg-iso".into(), "sg-debug".into()]
            }
        );
        assert_eq!(
            plan_interface(&original, Some(&with(&["sg-ssh", "sg-app"])), &cordon, &all),
            InterfacePlan::Drift {
                current: vec!["sg-ssh".into(), "sg-app".into()]
            },
            "another order is someone else's change"
        );
        assert_eq!(
            plan_interface(&original, Some(&with(&["sg-iso"])), &cordon, &all[..1]),
            InterfacePlan::OriginalsMissing {
                missing: vec!["sg-ssh".into()]
            }
        );
    }

    #[test]
    fn entry_plans_check_number_cidr_and_action() {
        let recorded = DenyEntry {
            acl_id: "acl".into(),
            egress: true,
            rule_number: 3,
            cidr: "198.51.100.7/32".into(),
        };
        let at = |action, cidr: &str| AclEntry {
            rule_number: 3,
            egress: true,
            action,
            protocol: "-1".into(),
            cidr: cidr.into(),
        };
        assert_eq!(
            plan_entry(&recorded, &[at(RuleAction::Deny, "198.51.100.7/32")]),
            EntryPlan::Delete
        );
        assert_eq!(plan_entry(&recorded, &[]), EntryPlan::AlreadyGone);
        let other_direction = AclEntry {
            egress: false,
            ..at(RuleAction::Deny, "198.51.100.7/32")
        };
        assert_eq!(
            plan_entry(&recorded, &[other_direction]),
            EntryPlan::AlreadyGone
        );
        assert!(matches!(
            plan_entry(&recorded, &[at(RuleAction::Allow, "198.51.100.7/32")]),
            EntryPlan::Drift { .. }
        ));
        assert!(matches!(
            plan_entry(&recorded, &[at(RuleAction::Deny, "203.0.113.1/32")]),
            EntryPlan::Drift { .. }
        ));
    }

    #[test]
    fn restore_puts_back_exactly_what_was_there_and_twice_is_harmless() {
        let ec2 = FakeEc2::standard();
        let acls_before = ec2.with(|s| s.acls.clone());
        let tags_before = ec2.with(|s| s.instances["i-00000001"].tags.clone());
        let (record, entries) = quarantined(&ec2);
        assert_ne!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);

        let report = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::execution(&record),
            &entries,
        ))
        .unwrap();
        assert_eq!(
            report.status,
            RestoreStatus::Restored,
            "{:?}",
            report.errors
        );
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
        assert_eq!(
            report.nacl_entries_removed.len(),
            6,
            "remote both ways in acl-a; IPv4 and IPv6 both ways in acl-b"
        );
        assert_eq!(
            ec2.with(|s| s.acls.clone()),
            acls_before,
            "entries and ACL tags as before"
        );
        assert_eq!(
            ec2.with(|s| s.instances["i-00000001"].tags.clone()),
            tags_before
        );
        assert!(!ec2.with(|s| s.protection["i-00000001"]));

        let again = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::execution(&record),
            &entries,
        ))
        .unwrap();
        assert_eq!(again.status, RestoreStatus::Restored);
        assert_eq!(again.enis[0].outcome, InterfaceOutcome::AlreadyOriginal);
        assert!(again.nacl_entries_removed.is_empty());
        let from_tags = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::unverified_tags(),
            &[],
        ))
        .unwrap();
        assert_eq!(from_tags.status, RestoreStatus::NotIsolated);
    }

    #[test]
    fn break_glass_restore_reads_the_record_an_executions_claim_keeps() {
        let ec2 = FakeEc2::standard();
        let record = block_on(capture(
            &ec2,
            "i-00000001",
            None,
            Some("exec-a"),
            "2026-11-29T14:00:00.000Z",
        ))
        .unwrap()
        .record
        .unwrap();
        block_on(isolate(&ec2, &record, crate::isolate::Access::default())).unwrap();
        assert_ne!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
        // No record of the execution's at hand, and none on the instance.
        let report = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::unverified_tags(),
            &[],
        ))
        .unwrap();
        assert_eq!(report.status, RestoreStatus::Restored, "{report:?}");
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
        // The record went with the claim.
        let groups: Vec<_> = ec2.with(|s| s.groups.values().cloned().collect());
        assert_eq!(crate::claim::claim_in(&groups, "i-00000001"), None);
    }

    #[test]
    fn break_glass_restore_reads_the_record_an_older_release_kept_on_the_instance() {
        let ec2 = FakeEc2::standard();
        quarantined(&ec2);
        let report = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::unverified_tags(),
            &[],
        ))
        .unwrap();
        assert_eq!(report.status, RestoreStatus::Restored);
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
        assert_eq!(
            report.nacl_entries_removed.len(),
            6,
            "remote both ways in acl-a; IPv4 and IPv6 both ways in acl-b"
        );
    }

    #[test]
    fn drift_is_left_alone_reported_and_keeps_the_record() {
        let ec2 = FakeEc2::standard();
        ec2.add_second_interface();
        let (record, _) = quarantined(&ec2);
        // An analyst opened eni-2 for debugging, and reused a Cordon rule number in acl-a.
        ec2.with(|s| {
            s.instances.get_mut("i-00000001").unwrap().interfaces[1]
                .groups
                .push("sg-app".into());
            let entry = s
                .acls
                .get_mut("acl-a")
                .unwrap()
                .entries
                .iter_mut()
                .find(|e| e.action == RuleAction::Deny && e.rule_number < 100 && !e.egress)
                .unwrap();
            entry.cidr = "203.0.113.99/32".into();
        });
        let report = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::execution(&record),
            &[],
        ))
        .unwrap();
        assert_eq!(report.status, RestoreStatus::Drift);
        assert_eq!(
            ec2.interface_groups("eni-1"),
            ["sg-app", "sg-ssh"],
            "the untouched ENI is restored"
        );
        let eni2 = &report.enis[1];
        assert_eq!(eni2.outcome, InterfaceOutcome::Drift);
        assert_eq!(
            ec2.interface_groups("eni-2"),
            eni2.groups_before,
            "the drifted ENI is left as it is"
        );
        assert_eq!(report.nacl_entries_kept.len(), 1);
        assert!(ec2
            .acl_entries("acl-a")
            .iter()
            .any(|e| e.cidr == "203.0.113.99/32"));
        // Record and protection stay for the person who sorts it out.
        let tags = ec2.with(|s| s.instances["i-00000001"].tags.clone());
        assert!(crate::record::state_from_tags("i-00000001", &tags)
            .unwrap()
            .is_some());
        assert!(ec2.with(|s| s.protection["i-00000001"]));
    }

    #[test]
    fn a_deleted_original_group_is_not_silently_dropped() {
        let ec2 = FakeEc2::standard();
        let (record, entries) = quarantined(&ec2);
        ec2.with(|s| s.groups.remove("sg-ssh"));
        let report = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::execution(&record),
            &entries,
        ))
        .unwrap();
        assert_eq!(report.status, RestoreStatus::Drift);
        assert!(report.errors[0].cause.contains("sg-ssh"));
        assert_eq!(ec2.interface_groups("eni-1").len(), 1, "still isolated");
    }

    #[test]
    fn cordon_groups_without_any_record_are_a_failure_not_a_guess() {
        let ec2 = FakeEc2::standard();
        quarantined(&ec2);
        ec2.with(|s| {
            s.instances
                .get_mut("i-00000001")
                .unwrap()
                .tags
                .retain(|(k, _)| !k.starts_with("cordon:state"))
        });
        let report = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::unverified_tags(),
            &[],
        ))
        .unwrap();
        assert_eq!(report.status, RestoreStatus::Failed);
        assert!(report
            .errors
            .iter()
            .any(|e| e.cause.contains("set them by hand")));
    }

    #[test]
    fn a_missing_instance_is_a_typed_error() {
        let ec2 = FakeEc2::standard();
        let error = block_on(restore(
            &ec2,
            "i-00000404",
            RecordSource::unverified_tags(),
            &[],
        ))
        .unwrap_err();
        assert_eq!(error.error_name(), "Cordon.InstanceNotFound");
    }

    #[test]
    fn restore_puts_back_the_shutdown_behavior_and_connection_tracking_exactly() {
        let ec2 = FakeEc2::standard();
        let custom = ConnTrack {
            tcp_established: Some(3_600),
            udp_stream: Some(120),
            udp: Some(45),
        };
        ec2.with(|s| {
            s.shutdown.insert("i-00000001".into(), "terminate".into());
            s.instances.get_mut("i-00000001").unwrap().interfaces[0].conntrack = Some(custom);
        });
        let record = block_on(capture(
            &ec2,
            "i-00000001",
            None,
            None,
            "2026-11-29T14:00:00.000Z",
        ))
        .unwrap()
        .record
        .unwrap();
        block_on(isolate(&ec2, &record, crate::isolate::Access::default())).unwrap();
        assert_eq!(ec2.shutdown_of("i-00000001"), "stop");
        assert_eq!(ec2.conntrack("eni-1"), Some(ConnTrack::ISOLATED));
        let report = block_on(restore(
            &ec2,
            "i-00000001",
            RecordSource::unverified_tags(),
            &[],
        ))
        .unwrap();
        assert_eq!(
            report.status,
            RestoreStatus::Restored,
            "{:?}",
            report.errors
        );
        assert_eq!(ec2.shutdown_of("i-00000001"), "terminate");
        assert_eq!(report.shutdown_behavior.as_deref(), Some("terminate"));
        assert_eq!(
            ec2.conntrack("eni-1").map(ConnTrack::effective),
            Some(custom)
        );
    }

    #[test]
    fn a_record_that_names_cordon_groups_is_never_restored_onto() {
        let original = NetworkInterface {
            id: "eni-1".into(),
            groups: vec!["sg-conversion".into()],
            ..Default::default()
        };
        let current = NetworkInterface {
            groups: vec!["sg-isolation".into()],
            ..original.clone()
        };
        let cordon = ["sg-conversion".to_string(), "sg-isolation".to_string()];
        assert_eq!(
            plan_interface(&original, Some(&current), &cordon, &cordon),
            InterfacePlan::RecordUnusable
        );
    }
}
