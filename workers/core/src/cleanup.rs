//! `cordon cleanup`: what Cordon left behind in one account and region, listed, and removed
//! when asked. Its conversion and isolation groups in VPCs where no network interface carries
//! them any more (the conversion group allows all traffic both ways), claims of instances that
//! no longer exist, and the ACL entries and record tags of such instances. Never anything of
//! an instance that still exists: a claim keeps an isolated instance's record, and its denies
//! are its containment. The ACL records are read as restore reads them: an entry is removed
//! only when a record whose seal verifies names it, so a tag someone wrote cannot make the
//! clean-up delete an administrator's deny.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::claim::claim_in;
use crate::ec2::{DenyEntry, Ec2, GroupRole, NetworkAcl, SecurityGroup};
use crate::error::{CordonError, Result, StepError};
use crate::record::{acl_record_keys, acl_recorded_instances};
use crate::restore::{plan_entry, EntryPlan};
use crate::seal::{vetted_entries, Seal};

/// A group Cordon made that is no longer needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftGroup {
    pub group_id: String,
    pub vpc_id: String,
    /// `conversion`, `isolation` or `claim`.
    pub role: String,
    pub reason: String,
}

/// Record tags on an ACL of an instance that no longer exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftTags {
    pub acl_id: String,
    pub instance_id: String,
    pub keys: Vec<String>,
}

/// Something left in place, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub resource: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Nothing was changed: the lists say what `--apply` would remove.
    pub dry_run: bool,
    pub unused_groups: Vec<LeftGroup>,
    pub stale_claims: Vec<LeftGroup>,
    pub acl_entries: Vec<DenyEntry>,
    pub acl_tags: Vec<LeftTags>,
    pub kept: Vec<Kept>,
    pub errors: Vec<StepError>,
}

/// What the survey read: Cordon's groups, which groups each VPC's interfaces carry, the VPCs'
/// ACLs, and which of the instances Cordon recorded still exist.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    pub groups: Vec<SecurityGroup>,
    pub in_use: BTreeMap<String, BTreeSet<String>>,
    pub acls: Vec<NetworkAcl>,
    /// Instances named by a claim or an ACL record, and whether each still exists (not
    /// terminated).
    pub exists: BTreeMap<String, bool>,
}

/// Reads what Cordon left in the account and region `ec2` acts in.
pub async fn survey(ec2: &impl Ec2) -> Result<Survey> {
    let groups = ec2.cordon_groups_anywhere().await?;
    let vpcs: BTreeSet<String> = groups.iter().map(|g| g.vpc_id.clone()).collect();
    let mut survey = Survey {
        groups,
        ..Survey::default()
    };
    for vpc_id in &vpcs {
        let in_use = ec2.groups_in_use(vpc_id).await?;
        survey
            .in_use
            .insert(vpc_id.clone(), in_use.into_iter().collect());
        survey.acls.extend(ec2.network_acls(vpc_id).await?);
    }
    let mut instances: BTreeSet<String> = survey
        .groups
        .iter()
        .filter_map(|g| {
            g.tags
                .iter()
                .find(|(k, _)| k == crate::claim::INSTANCE_TAG)
                .map(|(_, v)| v.clone())
        })
        .collect();
    for acl in &survey.acls {
        instances.extend(
            acl_recorded_instances(&acl.tags)
                .into_iter()
                .map(String::from),
        );
    }
    for instance_id in instances {
        let exists = match ec2.describe_instance(&instance_id).await {
            Ok(instance) => instance.state != "terminated",
            Err(CordonError::InstanceNotFound { .. }) => false,
            Err(other) => return Err(other),
        };
        survey.exists.insert(instance_id, exists);
    }
    Ok(survey)
}

fn role_name(role: GroupRole) -> &'static str {
    role.tag_value()
}

/// The groups to delete: claims of instances that no longer exist, and the VPC's conversion
/// and isolation groups when no interface carries them and no instance that still exists
/// holds a claim there (its containment may be about to use them).
pub fn plan_groups(survey: &Survey) -> (Vec<LeftGroup>, Vec<LeftGroup>, Vec<Kept>) {
    let (mut unused, mut stale, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    let exists = |instance: &str| survey.exists.get(instance).copied().unwrap_or(true);
    let mut live_claim_vpcs = BTreeSet::new();
    for group in &survey.groups {
        let Some(instance) = group
            .tags
            .iter()
            .find(|(k, _)| k == crate::claim::INSTANCE_TAG)
            .map(|(_, v)| v.as_str())
        else {
            continue;
        };
        if claim_in(std::slice::from_ref(group), instance).is_none() {
            continue;
        }
        if !group.named_as_cordons() {
            kept.push(Kept {
                resource: group.id.clone(),
                reason: format!(
                    "tagged as the claim of {instance} but named {:?}, not {}: not a group Cordon made",
                    group.name,
                    crate::claim::group_name(instance)
                ),
            });
            continue;
        }
        if exists(instance) {
            live_claim_vpcs.insert(group.vpc_id.clone());
            kept.push(Kept {
                resource: group.id.clone(),
                reason: format!(
                    "the claim of {instance}, which still exists: it keeps its record until it is restored"
                ),
            });
        } else {
            stale.push(LeftGroup {
                group_id: group.id.clone(),
                vpc_id: group.vpc_id.clone(),
                role: "claim".into(),
                reason: format!("{instance} no longer exists"),
            });
        }
    }
    for group in &survey.groups {
        let Some(role @ (GroupRole::Conversion | GroupRole::Isolation)) = group.role else {
            continue;
        };
        if !group.named_as_cordons() {
            kept.push(Kept {
                resource: group.id.clone(),
                reason: format!(
                    "tagged as Cordon's {} group but named {:?}, not {}: not a group Cordon made",
                    role_name(role),
                    group.name,
                    role.group_name(&group.vpc_id)
                ),
            });
            continue;
        }
        let used = survey
            .in_use
            .get(&group.vpc_id)
            .is_some_and(|in_use| in_use.contains(&group.id));
        if used {
            kept.push(Kept {
                resource: group.id.clone(),
                reason: format!("{} group in use by a network interface", role_name(role)),
            });
        } else if live_claim_vpcs.contains(&group.vpc_id) {
            kept.push(Kept {
                resource: group.id.clone(),
                reason: format!(
                    "{} group of {}, where an instance that still exists holds a claim",
                    role_name(role),
                    group.vpc_id
                ),
            });
        } else {
            unused.push(LeftGroup {
                group_id: group.id.clone(),
                vpc_id: group.vpc_id.clone(),
                role: role_name(role).into(),
                reason: match role {
                    GroupRole::Conversion => {
                        "no interface carries it, and it allows all traffic both ways".into()
                    }
                    _ => "no interface carries it".into(),
                },
            });
        }
    }
    (unused, stale, kept)
}

/// Lists what is left (and, unless `dry_run`, removes it): see the module's doc. `key` checks
/// the ACL records' seals; `trust_unverified` takes records that do not verify as written.
pub async fn cleanup(
    ec2: &impl Ec2,
    key: &impl Seal,
    trust_unverified: bool,
    dry_run: bool,
) -> Result<CleanupReport> {
    let survey = survey(ec2).await?;
    let (unused_groups, stale_claims, mut kept) = plan_groups(&survey);
    let mut report = CleanupReport {
        dry_run,
        unused_groups,
        stale_claims,
        ..CleanupReport::default()
    };
    // The VPCs whose ACLs keep records this run leaves (refused, for a later run with the
    // key or --trust-unverified): their groups stay, so that the next survey finds the VPC.
    let mut acl_work_left: BTreeSet<String> = BTreeSet::new();
    let gone = |instance: &str| survey.exists.get(instance) == Some(&false);
    for acl in &survey.acls {
        for instance in acl_recorded_instances(&acl.tags) {
            if !gone(instance) {
                continue;
            }
            let vetted = vetted_entries(key, trust_unverified, acl, instance, &[]).await?;
            for entry in vetted.entries {
                if plan_entry(&entry, &acl.entries) == EntryPlan::Delete
                    && !held_by_an_instance_that_exists(acl, instance, &entry, &gone)
                    && !report.acl_entries.iter().any(|e| {
                        e.acl_id == entry.acl_id
                            && e.egress == entry.egress
                            && e.rule_number == entry.rule_number
                    })
                {
                    report.acl_entries.push(entry);
                }
            }
            if vetted.refused.is_empty() {
                report.acl_tags.push(LeftTags {
                    acl_id: acl.id.clone(),
                    instance_id: instance.to_string(),
                    keys: acl_record_keys(instance, &acl.tags),
                });
            } else {
                acl_work_left.insert(acl.vpc_id.clone());
                // Its tags stay too, for a run with --trust-unverified to find them.
                kept.extend(vetted.refused.into_iter().map(|(refused, entries)| Kept {
                    resource: acl.id.clone(),
                    reason: format!(
                        "{} of {instance} (no longer exists) names {} entries, and was not used: {}; run again with --record-key, or --trust-unverified once you have checked them",
                        refused.record,
                        entries.len(),
                        refused.reason
                    ),
                }));
            }
        }
    }
    report.unused_groups.retain(|group| {
        let stays = acl_work_left.contains(&group.vpc_id);
        if stays {
            kept.push(Kept {
                resource: group.group_id.clone(),
                reason: format!(
                    "{} group of {}, kept while ACL records of the VPC are left for a later run",
                    group.role, group.vpc_id
                ),
            });
        }
        !stays
    });
    report.kept = kept;
    if dry_run {
        return Ok(report);
    }
    apply(ec2, &mut report).await;
    Ok(report)
}

/// A VPC's conversion group, which allows all traffic both ways, deleted once no interface
/// carries it: by each isolation step after its swaps, and by each restore. A containment
/// under way keeps it (an interface is on it), and the last of them to end deletes it; the
/// next containment in the VPC makes it again. EC2 refuses to delete a group an interface
/// carries, so an interface put on it between the read and the delete keeps it; one about to
/// be put on it finds it gone, and its step reads the VPC's groups again and makes it (see
/// `isolate::ConversionGone`). Revoking its rules instead would not be safe: an interface
/// swapped onto it while they are gone keeps its tracked connections through isolation.
/// Returns what was done, or None when the group was gone already; never an error of the step.
/// `moved_off` are interfaces the caller knows it has just moved off the group: a read that
/// lags behind their swaps is not believed.
pub async fn retire_conversion_group(
    ec2: &impl Ec2,
    vpc_id: &str,
    group_id: &str,
    moved_off: &[String],
) -> Option<String> {
    let kept = |why: String| {
        Some(format!(
            "kept the conversion group {group_id} of {vpc_id}, which allows all traffic both ways: {why}"
        ))
    };
    match ec2.interfaces_with_group(group_id).await {
        Ok(mut carriers) => {
            carriers.retain(|eni| !moved_off.contains(eni));
            if !carriers.is_empty() {
                return kept(format!(
                    "{} carries it (a containment under way, which deletes it when it ends, or one cut short, which `cordon cleanup` lists once the interface is off it)",
                    carriers.join(", ")
                ));
            }
        }
        Err(error) => {
            return kept(format!(
                "its interfaces were not read ({error}); the next containment or restore in the VPC deletes it, and `cordon cleanup` lists it"
            ))
        }
    }
    match ec2.delete_group(group_id).await {
        Ok(()) => Some(format!(
            "deleted the conversion group {group_id} of {vpc_id}, which allows all traffic both ways: no interface carries it"
        )),
        Err(CordonError::Ec2 { code, .. }) if code == "InvalidGroup.NotFound" => None,
        Err(CordonError::Ec2 { code, .. }) if code == "DependencyViolation" => kept(
            "EC2 refused to delete it: an interface was put on it since the read (a containment under way, which deletes it when it ends), or a rule of another group names it".into(),
        ),
        Err(error) => kept(format!(
            "{error}; the next containment or restore in the VPC deletes it, and `cordon cleanup` lists it"
        )),
    }
}

/// After a restore: each VPC's conversion group retired ([`retire_conversion_group`]), in
/// case the isolation step could not. The isolation group stays: it lets nothing out, and a
/// containment racing this one may be about to swap onto it. Off the containment's path; one
/// line per group that was there.
pub async fn release_unused_groups(ec2: &impl Ec2, vpc_ids: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    for vpc_id in vpc_ids {
        let groups = match ec2.cordon_groups(std::slice::from_ref(vpc_id)).await {
            Ok(groups) => groups,
            Err(error) => {
                lines.push(format!("{vpc_id}'s groups were not read ({error}): kept"));
                continue;
            }
        };
        let conversion = groups
            .iter()
            .filter(|g| g.vpc_id == *vpc_id && g.role == Some(GroupRole::Conversion))
            .filter(|g| g.named_as_cordons());
        for group in conversion {
            lines.extend(retire_conversion_group(ec2, vpc_id, &group.id, &[]).await);
        }
    }
    lines
}

/// Whether a record of another instance, one that still exists, names this very deny.
fn held_by_an_instance_that_exists(
    acl: &NetworkAcl,
    instance: &str,
    entry: &DenyEntry,
    gone: &impl Fn(&str) -> bool,
) -> bool {
    crate::nacl::recorded_for_another_that(acl, instance, &entry.as_acl_entry(), |other| {
        !gone(other)
    })
}

/// Removes what the report lists: the entries before the tags that name them, the claims,
/// then the groups no one uses. A failure is reported and the rest goes on.
async fn apply(ec2: &impl Ec2, report: &mut CleanupReport) {
    let mut errors = Vec::new();
    for entry in &report.acl_entries {
        if let Err(error) = ec2
            .delete_acl_entry(&entry.acl_id, entry.egress, entry.rule_number)
            .await
        {
            errors.push(error.to_report());
        }
    }
    // The tags of an ACL whose entries could not all be removed stay, to name them next time.
    let failed_acls: BTreeSet<String> = report
        .acl_entries
        .iter()
        .filter(|_| !errors.is_empty())
        .map(|e| e.acl_id.clone())
        .collect();
    for tags in &report.acl_tags {
        if failed_acls.contains(&tags.acl_id) || tags.keys.is_empty() {
            continue;
        }
        if let Err(error) = ec2.delete_tags(&tags.acl_id, &tags.keys).await {
            errors.push(error.to_report());
        }
    }
    for group in report.stale_claims.iter().chain(&report.unused_groups) {
        match ec2.delete_group(&group.group_id).await {
            Ok(()) => {}
            Err(CordonError::Ec2 { code, .. }) if code == "InvalidGroup.NotFound" => {}
            // Referenced by another group's rule, or an interface put on it since: it stays.
            Err(error) => errors.push(error.to_report()),
        }
    }
    report.errors = errors;
}

#[cfg(test)]
mod tests;
