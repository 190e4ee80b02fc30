//! Network ACL denies. NACLs are stateless and match the remote side (inbound rules the
//! source, outbound the destination), and traffic inside a subnet never crosses one. So:
//! on the instance's own subnets' ACLs, deny the finding's remote addresses both ways (cuts
//! sessions the security groups leave tracked); on the VPC's other subnets' ACLs, deny the
//! instance's own addresses as source and destination (no lateral movement, no egress through
//! a NAT gateway, which lives in another subnet).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::NaclSettings;
use crate::ec2::{AclEntry, DenyEntry, Direction, Ec2, NetworkAcl, RuleAction};
use crate::error::{CordonError, Result, StepError};
use crate::isolate::StepStatus;
use crate::net::{host_cidr, is_routable_remote};
use crate::record::{
    acl_tag_prefix, check_tag_room, chunk_keys, chunk_tags, decode_acl_entries, encode_acl_entries,
    join_chunks, CapturedState,
};

/// A deny Cordon wants in one ACL and direction, before it has a rule number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WantedDeny {
    pub acl_id: String,
    pub egress: bool,
    pub cidr: String,
}

/// Which denies go where, and notes on addresses left out and why.
pub fn plan_denies(
    record: &CapturedState,
    remote_addresses: &[IpAddr],
    acls: &[NetworkAcl],
) -> (Vec<WantedDeny>, Vec<String>) {
    let mut notes = Vec::new();
    let own_subnets: Vec<&str> = record
        .interfaces
        .iter()
        .map(|i| i.subnet_id.as_str())
        .collect();
    let own_addresses: Vec<String> = record
        .interfaces
        .iter()
        .flat_map(|i| i.private_ipv4.iter().chain(&i.ipv6))
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(host_cidr)
        .collect();
    let mut remote_cidrs = Vec::new();
    for address in remote_addresses {
        let cidr = host_cidr(*address);
        if !is_routable_remote(*address) {
            notes.push(format!("{address} names no remote host; no rule for it"));
        } else if own_addresses.contains(&cidr) {
            notes.push(format!(
                "{address} is the instance's own address; not denied as a remote"
            ));
        } else if !remote_cidrs.contains(&cidr) {
            remote_cidrs.push(cidr);
        }
    }
    if remote_addresses.is_empty() {
        notes.push("the finding names no remote address; only the instance's own addresses are denied in the other subnets".into());
    }

    let mut wanted = Vec::new();
    for acl in acls {
        let guards_own = acl
            .subnet_ids
            .iter()
            .any(|s| own_subnets.contains(&s.as_str()));
        let guards_other = acl
            .subnet_ids
            .iter()
            .any(|s| !own_subnets.contains(&s.as_str()));
        let mut add = |cidrs: &[String]| {
            for cidr in cidrs {
                for egress in [false, true] {
                    let deny = WantedDeny {
                        acl_id: acl.id.clone(),
                        egress,
                        cidr: cidr.clone(),
                    };
                    if !wanted.contains(&deny) {
                        wanted.push(deny);
                    }
                }
            }
        };
        if guards_own {
            add(&remote_cidrs);
        }
        if guards_other {
            add(&own_addresses);
        }
    }
    (wanted, notes)
}

/// The lowest-numbered allow rule in one direction: denies must come before it to count.
pub fn lowest_allow(entries: &[AclEntry], egress: bool) -> Option<i32> {
    entries
        .iter()
        .filter(|e| e.egress == egress && e.action == RuleAction::Allow)
        .map(|e| e.rule_number)
        .min()
}

/// Whether a deny of all traffic for `cidr` already takes effect in that direction.
pub fn already_denied(entries: &[AclEntry], egress: bool, cidr: &str) -> bool {
    let before = lowest_allow(entries, egress).unwrap_or(i32::MAX);
    entries.iter().any(|e| {
        e.egress == egress
            && e.action == RuleAction::Deny
            && e.protocol == "-1"
            && e.cidr == cidr
            && e.rule_number < before
    })
}

/// Picks `count` free rule numbers for one ACL and direction, lowest first, from the band
/// below the lowest allow rule, within the per-direction quota (which counts every entry,
/// the catch-all deny included, as AWS does). Short of `count`, says which limit bound.
pub fn allocate_rule_numbers(
    acl_id: &str,
    entries: &[AclEntry],
    egress: bool,
    settings: &NaclSettings,
    count: usize,
) -> (Vec<i32>, Option<CordonError>) {
    let direction = Direction::from_egress(egress).name().to_string();
    let in_direction: Vec<&AclEntry> = entries.iter().filter(|e| e.egress == egress).collect();
    let room = settings.rule_quota.saturating_sub(in_direction.len());
    let last = match lowest_allow(entries, egress) {
        Some(allow) => settings.band.last.min(allow - 1),
        None => settings.band.last,
    };
    let free = free_numbers(entries, egress, settings);
    let numbers: Vec<i32> = free.iter().copied().take(count.min(room)).collect();
    if numbers.len() == count {
        return (numbers, None);
    }
    let shortfall = if room < count && room <= free.len() {
        CordonError::NaclQuotaExceeded {
            acl_id: acl_id.into(),
            direction,
            existing: in_direction.len(),
            quota: settings.rule_quota,
        }
    } else {
        CordonError::NaclBandExhausted {
            acl_id: acl_id.into(),
            direction,
            first: settings.band.first,
            last,
        }
    };
    (numbers, Some(shortfall))
}

/// The numbers of the band (below the lowest allow rule) that no entry of this direction holds.
fn free_numbers(entries: &[AclEntry], egress: bool, settings: &NaclSettings) -> Vec<i32> {
    let last = match lowest_allow(entries, egress) {
        Some(allow) => settings.band.last.min(allow - 1),
        None => settings.band.last,
    };
    (settings.band.first..=last)
        .filter(|n| {
            !entries
                .iter()
                .any(|e| e.egress == egress && e.rule_number == *n)
        })
        .collect()
}

/// The number to try after losing one to another execution. Everyone who lost it reads the
/// same free numbers; were each to take the lowest again, they would collide again (ten
/// instances of one VPC contained at once ran out of retries that way). So the pick is spread
/// over the free numbers by the instance and the attempt. Denies in the band do not depend on
/// their order, so any free number serves.
pub fn repick_rule_number(
    acl_id: &str,
    entries: &[AclEntry],
    egress: bool,
    settings: &NaclSettings,
    instance_id: &str,
    attempt: usize,
) -> Result<i32> {
    let (lowest, shortfall) = allocate_rule_numbers(acl_id, entries, egress, settings, 1);
    if lowest.is_empty() {
        return Err(shortfall.expect("no number comes with its reason"));
    }
    let free = free_numbers(entries, egress, settings);
    // FNV-1a: stable, and enough to spread a handful of contenders.
    let spread = format!("{instance_id}/{attempt}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    Ok(free[(spread % free.len() as u64) as usize])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NaclReport {
    pub instance_id: String,
    pub status: StepStatus,
    /// Every deny Cordon holds for this instance (this run's and earlier runs'), as recorded
    /// on the ACLs: restore removes exactly these.
    pub nacl_entries: Vec<DenyEntry>,
    /// Denies that were wanted but already in force through someone else's rule.
    pub already_denied: Vec<String>,
    pub notes: Vec<String>,
    pub errors: Vec<StepError>,
}

/// Entries recorded on an ACL's tags for one instance.
pub fn recorded_entries(acl: &NetworkAcl, instance_id: &str) -> Result<Vec<DenyEntry>> {
    match join_chunks(&acl_tag_prefix(instance_id), &acl.tags, &acl.id)? {
        Some(text) => decode_acl_entries(&acl.id, &text),
        None => Ok(Vec::new()),
    }
}

/// Whether the ACL holds exactly this deny entry of ours.
fn holds(entries: &[AclEntry], entry: &DenyEntry) -> bool {
    entries.iter().any(|e| {
        e.rule_number == entry.rule_number
            && e.egress == entry.egress
            && e.action == RuleAction::Deny
            && e.protocol == "-1"
            && e.cidr == entry.cidr
    })
}

/// Whether `found` is a deny that the ACL's tags record for another quarantined instance:
/// Cordon's own rule, not someone's change.
pub fn recorded_for_another(acl: &NetworkAcl, instance_id: &str, found: &AclEntry) -> bool {
    let own = acl_tag_prefix(instance_id);
    let mut others: Vec<&str> = acl
        .tags
        .iter()
        .filter_map(|(key, _)| {
            let rest = key.strip_prefix(crate::record::CORDON_TAG_PREFIX)?;
            let (instance, _chunk) = rest.rsplit_once(':')?;
            (crate::ec2::is_instance_id(instance) && !key.starts_with(&format!("{own}:")))
                .then_some(instance)
        })
        .collect();
    others.sort_unstable();
    others.dedup();
    found.action == RuleAction::Deny
        && others.into_iter().any(|other| {
            recorded_entries(acl, other).is_ok_and(|entries| {
                entries.iter().any(|e| {
                    e.egress == found.egress
                        && e.rule_number == found.rule_number
                        && e.cidr == found.cidr
                })
            })
        })
}

/// Writes `entries` as the ACL's record for the instance (dropping stale chunks), keeping
/// `tags` — our view of the ACL's tags — in step with what was written.
async fn write_record(
    ec2: &impl Ec2,
    acl_id: &str,
    tags: &mut Vec<(String, String)>,
    instance_id: &str,
    entries: &[DenyEntry],
) -> Result<()> {
    let prefix = acl_tag_prefix(instance_id);
    let old_keys = chunk_keys(&prefix, tags);
    let new_tags = if entries.is_empty() {
        Vec::new()
    } else {
        chunk_tags(&prefix, &encode_acl_entries(entries))
    };
    check_tag_room(acl_id, tags, &new_tags, &old_keys)?;
    ec2.create_tags(acl_id, &new_tags).await?;
    let stale: Vec<String> = old_keys
        .iter()
        .filter(|key| !new_tags.iter().any(|(new, _)| new == *key))
        .cloned()
        .collect();
    if !stale.is_empty() {
        ec2.delete_tags(acl_id, &stale).await?;
    }
    tags.retain(|(key, _)| !old_keys.contains(key));
    tags.extend(new_tags);
    Ok(())
}

/// How often a number taken by someone else between our read and our write is re-picked.
const NUMBER_RACE_RETRIES: usize = 6;

/// Adds the denies for the recorded instance. The intended entries are recorded on each ACL
/// before they are created, so that a crash half-way leaves nothing restore cannot find.
pub async fn block(
    ec2: &impl Ec2,
    record: &CapturedState,
    remote_addresses: &[IpAddr],
    settings: &NaclSettings,
) -> NaclReport {
    let instance_id = record.instance_id.clone();
    let mut errors: Vec<CordonError> = Vec::new();
    let mut acls = Vec::new();
    for vpc_id in record.vpc_ids() {
        match ec2.network_acls(&vpc_id).await {
            Ok(found) => acls.extend(found),
            Err(error) => errors.push(error),
        }
    }
    let (wanted, notes) = plan_denies(record, remote_addresses, &acls);
    let mut by_acl: BTreeMap<String, Vec<WantedDeny>> = BTreeMap::new();
    for deny in wanted {
        by_acl.entry(deny.acl_id.clone()).or_default().push(deny);
    }
    let mut all_entries = Vec::new();
    let mut already = Vec::new();
    for acl in &acls {
        let previous = match recorded_entries(acl, &instance_id) {
            Ok(previous) => previous,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        let wants = by_acl.remove(&acl.id).unwrap_or_default();
        let outcome = block_in_acl(ec2, acl, &instance_id, previous, wants, settings).await;
        all_entries.extend(outcome.entries);
        already.extend(outcome.already_denied);
        errors.extend(outcome.errors);
    }
    NaclReport {
        instance_id,
        status: if errors.is_empty() {
            StepStatus::Done
        } else {
            StepStatus::Partial
        },
        nacl_entries: all_entries,
        already_denied: already,
        notes,
        errors: errors.iter().map(CordonError::to_report).collect(),
    }
}

struct AclOutcome {
    entries: Vec<DenyEntry>,
    already_denied: Vec<String>,
    errors: Vec<CordonError>,
}

async fn block_in_acl(
    ec2: &impl Ec2,
    acl: &NetworkAcl,
    instance_id: &str,
    previous: Vec<DenyEntry>,
    wants: Vec<WantedDeny>,
    settings: &NaclSettings,
) -> AclOutcome {
    let mut errors = Vec::new();
    let mut already_denied_notes = Vec::new();
    // Entries an earlier run recorded and that still exist stay ours; they need no new rule.
    let still_there = |entry: &DenyEntry| {
        acl.entries.iter().any(|e| {
            e.egress == entry.egress
                && e.rule_number == entry.rule_number
                && e.cidr == entry.cidr
                && e.action == RuleAction::Deny
        })
    };
    let mut entries: Vec<DenyEntry> = previous.into_iter().filter(|e| still_there(e)).collect();
    let mut planned = Vec::new();
    for egress in [false, true] {
        let todo: Vec<&WantedDeny> = wants
            .iter()
            .filter(|w| w.egress == egress)
            .filter(|w| {
                !entries
                    .iter()
                    .any(|e| e.egress == egress && e.cidr == w.cidr)
            })
            .filter(|w| {
                let taken = already_denied(&acl.entries, egress, &w.cidr);
                if taken {
                    already_denied_notes.push(format!(
                        "{} {} {}: an existing deny rule already applies",
                        acl.id,
                        Direction::from_egress(egress).name(),
                        w.cidr
                    ));
                }
                !taken
            })
            .collect();
        if todo.is_empty() {
            continue;
        }
        let (numbers, shortfall) =
            allocate_rule_numbers(&acl.id, &acl.entries, egress, settings, todo.len());
        errors.extend(shortfall);
        planned.extend(
            numbers
                .into_iter()
                .zip(todo)
                .map(|(rule_number, want)| DenyEntry {
                    acl_id: acl.id.clone(),
                    egress,
                    rule_number,
                    cidr: want.cidr.clone(),
                }),
        );
    }
    if planned.is_empty() {
        return AclOutcome {
            entries,
            already_denied: already_denied_notes,
            errors,
        };
    }

    // Record before change: the intended entries first.
    let mut intent = entries.clone();
    intent.extend(planned.iter().cloned());
    let mut tags = acl.tags.clone();
    if let Err(error) = write_record(ec2, &acl.id, &mut tags, instance_id, &intent).await {
        errors.push(error);
        return AclOutcome {
            entries,
            already_denied: already_denied_notes,
            errors,
        };
    }
    let mut view = acl.clone();
    let mut uncertain = Vec::new();
    for mut entry in planned {
        let mut attempts = 0;
        loop {
            match ec2.create_deny_entry(&entry).await {
                Ok(()) => {
                    view.entries.push(AclEntry {
                        rule_number: entry.rule_number,
                        egress: entry.egress,
                        action: RuleAction::Deny,
                        protocol: "-1".into(),
                        cidr: entry.cidr.clone(),
                    });
                    entries.push(entry);
                    break;
                }
                Err(CordonError::NaclEntryExists { .. }) if attempts < NUMBER_RACE_RETRIES => {
                    attempts += 1;
                    // Someone took the number since we read the ACL, or our own create went
                    // through and only its answer was lost (the SDK's retry then finds the
                    // number taken by it): read the ACL again. If it cannot be read, the
                    // entry may well be ours, so it stays in the record like any other whose
                    // fate is unknown.
                    match ec2.network_acl(&acl.id).await {
                        Ok(fresh) => view.entries = fresh.entries,
                        Err(error) => {
                            uncertain.push(entry);
                            errors.push(error);
                            break;
                        }
                    }
                    if holds(&view.entries, &entry) {
                        entries.push(entry);
                        break;
                    }
                    // Someone else's: re-pick a free number.
                    let mut blocked = view.entries.clone();
                    blocked.extend(entries.iter().map(|e| AclEntry {
                        rule_number: e.rule_number,
                        egress: e.egress,
                        action: RuleAction::Deny,
                        protocol: "-1".into(),
                        cidr: e.cidr.clone(),
                    }));
                    let number = match repick_rule_number(
                        &acl.id,
                        &blocked,
                        entry.egress,
                        settings,
                        instance_id,
                        attempts,
                    ) {
                        Ok(number) => number,
                        Err(shortfall) => {
                            errors.push(shortfall);
                            break;
                        }
                    };
                    // Record before change, again: the new number goes into the record before
                    // the rule goes into the ACL, or a failure right after the create would
                    // leave a deny that no record names (and that a re-run would then take
                    // for someone else's).
                    if let Some(slot) = intent.iter_mut().find(|e| **e == entry) {
                        slot.rule_number = number;
                    }
                    entry.rule_number = number;
                    if let Err(error) =
                        write_record(ec2, &acl.id, &mut tags, instance_id, &intent).await
                    {
                        errors.push(error);
                        break;
                    }
                }
                Err(error) => {
                    // A create that failed may still have happened (its answer lost, then the
                    // SDK's retries failed as well): the ACL says whether the rule is there.
                    // Dropping it from the record would leave a deny that a re-run takes for
                    // someone else's and that restore never removes.
                    match ec2.network_acl(&acl.id).await {
                        Ok(fresh) if holds(&fresh.entries, &entry) => entries.push(entry),
                        Ok(_) => errors.push(error),
                        Err(_) => {
                            uncertain.push(entry);
                            errors.push(error);
                        }
                    }
                    break;
                }
            }
        }
    }
    // Entries whose fate is unknown stay in the record: restore finds them gone or removes them.
    let mut recorded = entries.clone();
    recorded.extend(uncertain);
    if recorded != intent {
        if let Err(error) = write_record(ec2, &acl.id, &mut tags, instance_id, &recorded).await {
            errors.push(error);
        }
    }
    AclOutcome {
        entries,
        already_denied: already_denied_notes,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleBand;
    use crate::fake::{block_on, default_acl, interface, FakeEc2};
    use crate::record::RECORD_VERSION;
    use std::collections::BTreeSet;

    fn record(interfaces: Vec<crate::ec2::NetworkInterface>) -> CapturedState {
        CapturedState {
            version: RECORD_VERSION,
            instance_id: "i-00000001".into(),
            finding_id: None,
            finding_type: None,
            captured_at: "2026-11-29T14:00:00.000Z".into(),
            instance_state: "running".into(),
            termination_protection: false,
            interfaces,
        }
    }

    fn deny(acl: &str, egress: bool, cidr: &str) -> WantedDeny {
        WantedDeny {
            acl_id: acl.into(),
            egress,
            cidr: cidr.into(),
        }
    }

    fn entry(rule_number: i32, egress: bool, action: RuleAction) -> AclEntry {
        AclEntry {
            rule_number,
            egress,
            action,
            protocol: "-1".into(),
            cidr: "0.0.0.0/0".into(),
        }
    }

    fn remote(text: &str) -> Vec<IpAddr> {
        text.split_whitespace()
            .map(|a| a.parse().unwrap())
            .collect()
    }

    #[test]
    fn own_subnet_denies_the_remote_and_other_subnets_deny_the_instance() {
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg"],
            "10.0.1.5",
            Some("2001:db8:1::5"),
        )]);
        let acls = [
            default_acl("acl-a", &["subnet-a"]),
            default_acl("acl-b", &["subnet-b", "subnet-c"]),
        ];
        let (wanted, _) = plan_denies(&record, &remote("198.51.100.7"), &acls);
        assert_eq!(
            wanted,
            [
                deny("acl-a", false, "198.51.100.7/32"),
                deny("acl-a", true, "198.51.100.7/32"),
                deny("acl-b", false, "10.0.1.5/32"),
                deny("acl-b", true, "10.0.1.5/32"),
                deny("acl-b", false, "2001:db8:1::5/128"),
                deny("acl-b", true, "2001:db8:1::5/128"),
            ]
        );
    }

    #[test]
    fn a_shared_acl_gets_both_kinds_of_deny_and_never_the_instance_only_subnet_gets_its_own_address(
    ) {
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg"],
            "10.0.1.5",
            None,
        )]);
        let shared = [default_acl("acl-default", &["subnet-a", "subnet-b"])];
        let (wanted, _) = plan_denies(&record, &remote("198.51.100.7"), &shared);
        assert_eq!(wanted.len(), 4);
        assert!(wanted.contains(&deny("acl-default", false, "10.0.1.5/32")));
        assert!(wanted.contains(&deny("acl-default", true, "198.51.100.7/32")));

        // An ACL guarding only the instance's own subnet: a deny of the instance's own
        // address there would match nothing, so none is planned.
        let alone = [default_acl("acl-a", &["subnet-a"])];
        let (wanted, _) = plan_denies(&record, &remote("198.51.100.7"), &alone);
        assert!(wanted.iter().all(|w| w.cidr == "198.51.100.7/32"));
    }

    #[test]
    fn placeholder_and_own_addresses_are_left_out_with_a_note() {
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg"],
            "10.0.1.5",
            None,
        )]);
        let acls = [default_acl("acl-a", &["subnet-a"])];
        let (wanted, notes) = plan_denies(&record, &remote("0.0.0.0 10.0.1.5"), &acls);
        assert!(wanted.is_empty());
        assert!(notes[0].contains("0.0.0.0") && notes[1].contains("own address"));
    }

    #[test]
    fn numbers_are_the_lowest_free_ones_below_the_lowest_allow() {
        let settings = NaclSettings::default();
        let mut entries = vec![
            entry(100, false, RuleAction::Allow),
            entry(32767, false, RuleAction::Deny),
        ];
        entries.push(entry(1, false, RuleAction::Deny));
        entries.push(entry(3, false, RuleAction::Deny));
        entries.push(entry(2, true, RuleAction::Deny)); // other direction: no collision
        let (numbers, shortfall) = allocate_rule_numbers("acl", &entries, false, &settings, 3);
        assert_eq!(numbers, [2, 4, 5]);
        assert_eq!(shortfall, None);
        let (numbers, _) = allocate_rule_numbers("acl", &entries, true, &settings, 2);
        assert_eq!(numbers, [1, 3]);
    }

    #[test]
    fn a_low_allow_rule_narrows_the_band_and_a_full_band_is_reported() {
        let settings = NaclSettings::default();
        let entries = vec![
            entry(3, false, RuleAction::Allow),
            entry(1, false, RuleAction::Deny),
        ];
        let (numbers, shortfall) = allocate_rule_numbers("acl-x", &entries, false, &settings, 3);
        assert_eq!(numbers, [2]);
        let shortfall = shortfall.unwrap();
        assert_eq!(shortfall.error_name(), "Cordon.NaclBandExhausted");
        assert!(shortfall.to_string().contains("1..=2"), "{shortfall}");
        let first_rule_allows = vec![entry(1, true, RuleAction::Allow)];
        let (numbers, shortfall) =
            allocate_rule_numbers("acl-x", &first_rule_allows, true, &settings, 1);
        assert!(numbers.is_empty());
        assert_eq!(shortfall.unwrap().error_name(), "Cordon.NaclBandExhausted");
    }

    #[test]
    fn the_quota_counts_every_entry_of_the_direction_and_binds_before_the_band() {
        let settings = NaclSettings {
            band: RuleBand::default(),
            rule_quota: 20,
        };
        let mut entries: Vec<AclEntry> = (200..218)
            .map(|n| entry(n, false, RuleAction::Allow))
            .collect();
        entries.push(entry(32767, false, RuleAction::Deny));
        // 19 of 20 used: one more fits.
        let (numbers, shortfall) = allocate_rule_numbers("acl-q", &entries, false, &settings, 2);
        assert_eq!(numbers, [1]);
        let shortfall = shortfall.unwrap();
        assert_eq!(shortfall.error_name(), "Cordon.NaclQuotaExceeded");
        assert!(shortfall.to_string().contains("at its quota of 20"));
        entries.push(entry(1, false, RuleAction::Deny));
        let (numbers, _) = allocate_rule_numbers("acl-q", &entries, false, &settings, 1);
        assert!(numbers.is_empty());
        let wider = NaclSettings {
            rule_quota: 40,
            ..settings
        };
        assert_eq!(
            allocate_rule_numbers("acl-q", &entries, false, &wider, 1).0,
            [2]
        );
    }

    #[test]
    fn numbers_stay_inside_a_configured_band_and_aws_range() {
        let settings = NaclSettings {
            band: RuleBand::new(32760, 32766).unwrap(),
            rule_quota: 40,
        };
        let (numbers, shortfall) = allocate_rule_numbers(
            "acl",
            &[entry(32767, true, RuleAction::Deny)],
            true,
            &settings,
            9,
        );
        assert_eq!(numbers, [32760, 32761, 32762, 32763, 32764, 32765, 32766]);
        assert_eq!(shortfall.unwrap().error_name(), "Cordon.NaclBandExhausted");
    }

    #[test]
    fn an_existing_effective_deny_is_not_duplicated_but_an_ineffective_one_is() {
        let mut entries = vec![entry(100, false, RuleAction::Allow)];
        entries.push(AclEntry {
            rule_number: 5,
            egress: false,
            action: RuleAction::Deny,
            protocol: "-1".into(),
            cidr: "198.51.100.7/32".into(),
        });
        entries.push(AclEntry {
            rule_number: 500,
            egress: true,
            action: RuleAction::Deny,
            protocol: "-1".into(),
            cidr: "198.51.100.7/32".into(),
        });
        entries.push(entry(100, true, RuleAction::Allow));
        assert!(already_denied(&entries, false, "198.51.100.7/32"));
        assert!(
            !already_denied(&entries, true, "198.51.100.7/32"),
            "rule 500 comes after allow 100"
        );
    }

    #[test]
    fn block_adds_records_and_is_idempotent() {
        let ec2 = FakeEc2::standard();
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let settings = NaclSettings::default();
        let report = block_on(block(&ec2, &record, &remote("198.51.100.7"), &settings));
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
        assert_eq!(report.nacl_entries.len(), 4);
        let denies_in = |acl: &str| -> Vec<(i32, bool, String)> {
            let mut found: Vec<_> = ec2
                .acl_entries(acl)
                .into_iter()
                .filter(|e| e.action == RuleAction::Deny && e.rule_number < 100)
                .map(|e| (e.rule_number, e.egress, e.cidr))
                .collect();
            found.sort();
            found
        };
        assert_eq!(
            denies_in("acl-a"),
            [
                (1, false, "198.51.100.7/32".into()),
                (1, true, "198.51.100.7/32".into())
            ]
        );
        assert_eq!(
            denies_in("acl-b"),
            [
                (1, false, "10.0.1.5/32".into()),
                (1, true, "10.0.1.5/32".into())
            ]
        );
        let acl_a = block_on(ec2.network_acl("acl-a")).unwrap();
        assert_eq!(recorded_entries(&acl_a, "i-00000001").unwrap().len(), 2);

        ec2.clear_calls();
        let again = block_on(block(&ec2, &record, &remote("198.51.100.7"), &settings));
        assert_eq!(again.nacl_entries.len(), 4);
        assert_eq!(denies_in("acl-a").len(), 2);
        assert!(!ec2
            .calls()
            .iter()
            .any(|c| c == "CreateNetworkAclEntry" || c == "CreateTags"));
    }

    #[test]
    fn an_entry_whose_answer_was_lost_is_ours_and_restore_removes_it() {
        let ec2 = FakeEc2::standard();
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let before = ec2.acl_entries("acl-a");
        ec2.with(|s| s.lost_entry_answer = true);
        let report = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &NaclSettings::default(),
        ));
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
        // One entry per wanted deny: the lost answer did not make a second copy elsewhere.
        let acl_a = block_on(ec2.network_acl("acl-a")).unwrap();
        let denies: Vec<_> = acl_a
            .entries
            .iter()
            .filter(|e| e.action == RuleAction::Deny && e.rule_number < 32767)
            .collect();
        assert_eq!(denies.len(), 2, "{denies:?}");
        let mut recorded = recorded_entries(&acl_a, "i-00000001").unwrap();
        recorded.sort();
        let mut reported: Vec<_> = report
            .nacl_entries
            .iter()
            .filter(|e| e.acl_id == "acl-a")
            .cloned()
            .collect();
        reported.sort();
        assert_eq!(recorded, reported);
        for entry in &recorded {
            assert!(denies
                .iter()
                .any(|e| e.rule_number == entry.rule_number && e.egress == entry.egress));
        }
        let restored = block_on(crate::restore::restore(
            &ec2,
            "i-00000001",
            None,
            &report.nacl_entries,
        ))
        .unwrap();
        assert!(restored.errors.is_empty(), "{:?}", restored.errors);
        assert_eq!(ec2.acl_entries("acl-a"), before);
    }

    /// A create that happened although its caller saw a failure (`fault` arranges how): every
    /// deny in the ACLs is in their records, and the state machine's re-run of the step, then
    /// restore, leave both ACLs as they were. Returns the first run's report.
    fn a_create_that_happened_stays_recorded_and_is_restored(
        fault: impl FnOnce(&mut crate::fake::FakeState),
    ) -> NaclReport {
        let ec2 = FakeEc2::standard();
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let before = (ec2.acl_entries("acl-a"), ec2.acl_entries("acl-b"));
        ec2.with(fault);
        let run = || {
            block_on(block(
                &ec2,
                &record,
                &remote("198.51.100.7"),
                &NaclSettings::default(),
            ))
        };
        let first = run();
        for acl_id in ["acl-a", "acl-b"] {
            let acl = block_on(ec2.network_acl(acl_id)).unwrap();
            let recorded = recorded_entries(&acl, "i-00000001").unwrap();
            for entry in acl
                .entries
                .iter()
                .filter(|e| e.action == RuleAction::Deny && e.rule_number < 32767)
            {
                assert!(
                    recorded
                        .iter()
                        .any(|r| r.rule_number == entry.rule_number && r.egress == entry.egress),
                    "{entry:?} is in {acl_id} but not in its record {recorded:?} ({:?})",
                    first.errors
                );
            }
        }
        // The state machine runs the step again, then an analyst approves.
        let again = run();
        assert_eq!(again.status, StepStatus::Done, "{:?}", again.errors);
        let restored = block_on(crate::restore::restore(&ec2, "i-00000001", None, &[])).unwrap();
        assert!(restored.errors.is_empty(), "{:?}", restored.errors);
        assert_eq!((ec2.acl_entries("acl-a"), ec2.acl_entries("acl-b")), before);
        first
    }

    #[test]
    fn a_create_that_failed_but_happened_stays_recorded_and_is_restored() {
        a_create_that_happened_stays_recorded_and_is_restored(|s| {
            s.lost_entry_answer_then_throttled = true
        });
    }

    #[test]
    fn an_entry_whose_answer_was_lost_stays_recorded_when_the_acl_cannot_be_read_again() {
        let first = a_create_that_happened_stays_recorded_and_is_restored(|s| {
            s.lost_entry_answer_then_unreadable = true
        });
        assert_eq!(first.status, StepStatus::Partial);
        assert!(crate::isolate::retryable(&first.errors).is_some());
    }

    #[test]
    fn a_block_killed_at_any_call_and_run_again_leaves_no_deny_unrecorded() {
        let theirs = AclEntry {
            rule_number: 1,
            egress: false,
            action: RuleAction::Deny,
            protocol: "6".into(),
            cidr: "10.9.9.9/32".into(),
        };
        let setup = |dies_after: Option<usize>| {
            let ec2 = FakeEc2::standard();
            // A collision on the way, so that the re-pick path is crossed too.
            ec2.with(|s| {
                s.racing_entry = Some(("acl-a".into(), theirs.clone()));
                s.dies_after = dies_after;
            });
            ec2
        };
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let run = |ec2: &FakeEc2| {
            block_on(block(
                ec2,
                &record,
                &remote("198.51.100.7"),
                &NaclSettings::default(),
            ))
        };
        let clean = setup(None);
        run(&clean);
        let total = clean.calls().len();
        let before = |ec2: &FakeEc2| (ec2.acl_entries("acl-a"), ec2.acl_entries("acl-b"));
        for dies_after in 0..total {
            let ec2 = setup(Some(dies_after));
            let untouched = before(&FakeEc2::standard());
            run(&ec2);
            ec2.with(|s| s.dies_after = None);
            let again = run(&ec2);
            assert_eq!(
                again.status,
                StepStatus::Done,
                "died after {dies_after}: {:?}",
                again.errors
            );
            for acl_id in ["acl-a", "acl-b"] {
                let acl = block_on(ec2.network_acl(acl_id)).unwrap();
                let mut ours: Vec<DenyEntry> = acl
                    .entries
                    .iter()
                    .filter(|e| {
                        e.action == RuleAction::Deny && e.rule_number < 32767 && **e != theirs
                    })
                    .map(|e| DenyEntry {
                        acl_id: acl_id.into(),
                        egress: e.egress,
                        rule_number: e.rule_number,
                        cidr: e.cidr.clone(),
                    })
                    .collect();
                ours.sort();
                let mut recorded = recorded_entries(&acl, "i-00000001").unwrap();
                recorded.sort();
                assert_eq!(ours, recorded, "died after call {dies_after} in {acl_id}");
            }
            let restored =
                block_on(crate::restore::restore(&ec2, "i-00000001", None, &[])).unwrap();
            assert!(restored.errors.is_empty(), "{:?}", restored.errors);
            let (a, b) = before(&ec2);
            let mut expected_a = untouched.0.clone();
            expected_a.push(theirs.clone());
            let sorted = |mut v: Vec<AclEntry>| {
                v.sort_by_key(|e| (e.egress, e.rule_number));
                v
            };
            assert_eq!(
                sorted(a),
                sorted(expected_a),
                "died after call {dies_after}"
            );
            assert_eq!(b, untouched.1);
        }
    }

    #[test]
    fn a_number_taken_in_between_is_re_picked_and_the_record_follows() {
        let ec2 = FakeEc2::standard();
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        // Someone adds inbound rule 1 to acl-a after our read: our first create collides.
        let theirs = AclEntry {
            rule_number: 1,
            egress: false,
            action: RuleAction::Deny,
            protocol: "6".into(),
            cidr: "10.9.9.9/32".into(),
        };
        ec2.with(|s| s.racing_entry = Some(("acl-a".into(), theirs.clone())));
        let report = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &NaclSettings::default(),
        ));
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
        let acl_a = block_on(ec2.network_acl("acl-a")).unwrap();
        assert!(acl_a.entries.contains(&theirs), "their rule is untouched");
        let mut recorded = recorded_entries(&acl_a, "i-00000001").unwrap();
        recorded.sort();
        let numbers: Vec<(bool, i32)> =
            recorded.iter().map(|e| (e.egress, e.rule_number)).collect();
        // Outbound kept the lowest number; inbound moved off theirs to another free one.
        assert_eq!(numbers[1], (true, 1));
        assert!(!numbers[0].0 && numbers[0].1 != 1, "{numbers:?}");
        assert!(NaclSettings::default().band.first <= numbers[0].1);
        for entry in &recorded {
            assert!(acl_a
                .entries
                .iter()
                .any(|e| e.rule_number == entry.rule_number
                    && e.egress == entry.egress
                    && e.cidr == entry.cidr));
        }
    }

    #[test]
    fn executions_that_lost_the_same_number_re_pick_different_free_ones() {
        let acl = default_acl("acl-a", &["subnet-a"]);
        let settings = NaclSettings::default();
        // Ten instances lost rule 1 together; where do they go next?
        let picks: BTreeSet<i32> = (1..=10)
            .map(|n| {
                let instance = format!("i-{n:08x}");
                repick_rule_number("acl-a", &acl.entries, false, &settings, &instance, 1).unwrap()
            })
            .collect();
        assert!(picks.len() >= 8, "spread over free numbers: {picks:?}");
        let free = free_numbers(&acl.entries, false, &settings);
        assert!(picks.iter().all(|n| free.contains(n)), "{picks:?}");
        // The same instance tries another number on its next attempt.
        let again = |attempt| {
            repick_rule_number(
                "acl-a",
                &acl.entries,
                false,
                &settings,
                "i-00000001",
                attempt,
            )
            .unwrap()
        };
        assert_ne!(again(1), again(2));
    }

    #[test]
    fn a_re_pick_in_a_full_band_names_the_limit() {
        let mut acl = default_acl("acl-a", &["subnet-a"]);
        let settings = NaclSettings {
            rule_quota: 3,
            ..NaclSettings::default()
        };
        acl.entries.push(AclEntry {
            rule_number: 1,
            egress: false,
            action: RuleAction::Deny,
            protocol: "-1".into(),
            cidr: "10.9.9.9/32".into(),
        });
        let error = repick_rule_number("acl-a", &acl.entries, false, &settings, "i-00000001", 1)
            .unwrap_err();
        assert_eq!(error.error_name(), "Cordon.NaclQuotaExceeded");
    }

    #[test]
    fn a_full_acl_is_a_reported_partial_and_the_rest_is_still_blocked() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| {
            let acl = s.acls.get_mut("acl-b").unwrap();
            for n in 0..18 {
                acl.entries.push(entry(200 + n, false, RuleAction::Allow));
            }
        });
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let report = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &NaclSettings::default(),
        ));
        assert_eq!(report.status, StepStatus::Partial);
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].error, "Cordon.NaclQuotaExceeded");
        assert!(report.errors[0].cause.contains("acl-b"));
        // acl-a both ways and acl-b outbound went in.
        assert_eq!(report.nacl_entries.len(), 3);
        assert_eq!(
            ec2.acl_entries("acl-b")
                .iter()
                .filter(|e| !e.egress)
                .count(),
            20
        );
    }
}
