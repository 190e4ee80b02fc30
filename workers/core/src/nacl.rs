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
use crate::ec2::{AclEntry, DenyEntry, Direction, Ec2, NetworkAcl, RuleAction, Subnet};
use crate::error::{CordonError, Result, StepError};
use crate::isolate::StepStatus;
use crate::net::{
    cidr_contains, cidr_holds, cidrs_overlap, host_cidr, is_ipv6_cidr, is_routable_remote,
    private_range, unmapped,
};
use crate::record::{
    acl_recorded_instances, acl_records, acl_tag_prefix, check_tag_room, chunk_keys, chunk_tags,
    encode_acl_entries, new_run_id, CapturedState,
};
use crate::seal::{acl_message, Seal, ACL_SEAL_SEPARATOR};

/// A deny Cordon wants in one ACL and direction, before it has a rule number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WantedDeny {
    pub acl_id: String,
    pub egress: bool,
    pub cidr: String,
}

/// One of the finding's remote addresses that no ACL denies, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteNotDenied {
    pub address: String,
    pub reason: String,
}

/// Sorts the finding's remote addresses into the host CIDRs to deny (in the finding's order)
/// and those never to deny, with the reason. Whoever controls the instance chooses some of
/// these addresses (the target of an outbound brute force, say), and a deny lands on ACLs that
/// other subnets share: so nothing of the VPC, nothing private or shared unless the operator
/// opts in, not the forensic host and no protected CIDR. The security groups already cut the
/// instance from all of those; the ACL denies are for the outside world.
pub fn screen_remotes(
    remote_addresses: &[IpAddr],
    own_cidrs: &[String],
    vpc_cidrs: &[String],
    settings: &NaclSettings,
) -> (Vec<String>, Vec<RemoteNotDenied>) {
    let mut denied: Vec<String> = Vec::new();
    let mut not_denied = Vec::new();
    for original in remote_addresses {
        let address = unmapped(*original);
        let cidr = host_cidr(address);
        let within = |cidrs: &[String]| cidrs.iter().find(|c| cidr_contains(c, address)).cloned();
        let reason = if !is_routable_remote(address) {
            Some(
                "names no remote host (unspecified, loopback, link-local or multicast)".to_string(),
            )
        } else if own_cidrs.iter().any(|c| cidr_contains(c, address)) {
            Some("is the instance's own address".to_string())
        } else if let Some(block) = within(vpc_cidrs) {
            Some(format!("is inside the VPC's own block {block}"))
        } else if let Some(block) = within(&settings.protected_cidrs) {
            Some(format!("is inside the protected CIDR {block} (CORDON_PROTECTED_CIDRS or the forensic CIDR)"))
        } else if let (false, Some(range)) = (settings.deny_private_remotes, private_range(address))
        {
            Some(format!("is {range} address space; set CORDON_NACL_DENY_PRIVATE_REMOTES=true to deny such addresses"))
        } else if denied.contains(&cidr) {
            continue;
        } else if denied.len() >= settings.max_remote_denies {
            Some(format!(
                "is past the cap of {} remote denies per finding (CORDON_NACL_MAX_REMOTE_DENIES)",
                settings.max_remote_denies
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => {
                let shown = if address == *original {
                    original.to_string()
                } else {
                    format!("{original} (IPv4 {address})")
                };
                if !not_denied
                    .iter()
                    .any(|n: &RemoteNotDenied| n.address == shown)
                {
                    not_denied.push(RemoteNotDenied {
                        address: shown,
                        reason,
                    });
                }
            }
            None => denied.push(cidr),
        }
    }
    (denied, not_denied)
}

/// What else an ACL left open serves, for its note: those subnets keep their path to the
/// instance through it too.
fn also_serves(other_subnets: &[String]) -> String {
    if other_subnets.is_empty() {
        "it serves no other subnet".to_string()
    } else {
        format!(
            "it also serves {}, which can still reach the instance through it (the isolation group still refuses them)",
            other_subnets.join(", ")
        )
    }
}

/// The ACL's subnets other than the instance's own (traffic inside a subnet never crosses its
/// ACL), split into those `wanted` keeps and the rest.
fn split_subnets(
    acl: &NetworkAcl,
    own_subnets: &[&str],
    wanted: impl Fn(&str) -> bool,
) -> (Vec<String>, Vec<String>) {
    acl.subnet_ids
        .iter()
        .filter(|s| !own_subnets.contains(&s.as_str()))
        .cloned()
        .partition(|s| wanted(s))
}

/// An ACL that gets no deny of the instance's own addresses, so that the forensic host keeps
/// the path to the instance that the isolation group admits it on. NACLs match the remote
/// side, so a deny of the instance on the ACL of the forensic host's subnet would cut it off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenForForensics {
    pub acl_id: String,
    pub forensic_cidr: String,
    /// Its subnets whose blocks overlap the forensic CIDR.
    pub forensic_subnets: Vec<String>,
    /// Its other subnets (not the instance's): they keep their path to the instance too, and
    /// only the security groups stand between them and it.
    pub other_subnets: Vec<String>,
}

impl OpenForForensics {
    pub fn note(&self) -> String {
        let also = also_serves(&self.other_subnets);
        format!(
            "{} was left without denies of the instance's own addresses so that the forensic CIDR {} keeps its path from {}; {also}",
            self.acl_id,
            self.forensic_cidr,
            self.forensic_subnets.join(", ")
        )
    }
}

/// An ACL that gets no deny of the instance's own addresses, so that the instance's SSM Agent
/// keeps its path to the VPC's Session Manager endpoints (`SessionManagerWhileIsolated`): the
/// isolation group lets it reach them on 443, and a deny on the ACL of their subnet would drop
/// the request one way and the answer the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenForSessions {
    pub acl_id: String,
    /// The endpoints its subnets hold.
    pub endpoints: Vec<String>,
    /// Its subnets that hold an endpoint's interface.
    pub endpoint_subnets: Vec<String>,
    /// Its other subnets (not the instance's): they keep their path to the instance too, and
    /// only the security groups stand between them and it.
    pub other_subnets: Vec<String>,
    /// Whether those endpoints have IPv6 addresses: without, the instance's IPv6 addresses
    /// stay denied there.
    #[serde(default)]
    pub ipv6: bool,
}

impl OpenForSessions {
    pub fn note(&self) -> String {
        let also = also_serves(&self.other_subnets);
        format!(
            "{} was left without denies of the instance's own addresses so that Session Manager's endpoints {} in {} keep their path to it; {also}",
            self.acl_id,
            self.endpoints.join(", "),
            self.endpoint_subnets.join(", ")
        )
    }
}

/// The ACLs of other subnets that must stay open to the instance for Session Manager: those
/// with a subnet that holds an endpoint's interface. The instance's own subnets are left out.
pub fn open_for_sessions(
    acls: &[NetworkAcl],
    endpoints: &[crate::ec2::SessionEndpoint],
    own_subnets: &[&str],
) -> Vec<OpenForSessions> {
    // An endpoint alone, with no session possible, opens nothing.
    let endpoints = crate::session::usable(endpoints);
    let holds = |subnet: &str| {
        endpoints
            .iter()
            .any(|e| e.subnet_ids.iter().any(|s| s == subnet))
    };
    acls.iter()
        .filter_map(|acl| {
            let (endpoint_subnets, other) = split_subnets(acl, own_subnets, holds);
            let here: Vec<&crate::ec2::SessionEndpoint> = endpoints
                .iter()
                .filter(|e| e.subnet_ids.iter().any(|s| endpoint_subnets.contains(s)))
                .collect();
            (!endpoint_subnets.is_empty()).then(|| OpenForSessions {
                acl_id: acl.id.clone(),
                endpoints: here.iter().map(|e| e.id.clone()).collect(),
                ipv6: here
                    .iter()
                    .flat_map(|e| &e.addresses)
                    .any(|a| a.contains(':')),
                endpoint_subnets,
                other_subnets: other,
            })
        })
        .collect()
}

/// The ACLs left without denies of the instance's own addresses, and for whom.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeftOpen<'a> {
    pub forensics: &'a [OpenForForensics],
    pub sessions: &'a [OpenForSessions],
}

/// The ACLs of other subnets that must stay open to the instance for the forensic CIDR: those
/// with a subnet whose block overlaps it. The instance's own subnets are left out, since
/// traffic inside a subnet never crosses its ACL.
pub fn open_for_forensics(
    acls: &[NetworkAcl],
    subnets: &[Subnet],
    forensic_cidr: &str,
    own_subnets: &[&str],
) -> Vec<OpenForForensics> {
    let overlaps = |subnet_id: &str| {
        subnets
            .iter()
            .find(|s| s.id == subnet_id)
            .is_some_and(|s| s.cidrs.iter().any(|c| cidrs_overlap(c, forensic_cidr)))
    };
    acls.iter()
        .filter_map(|acl| {
            let (forensic, other) = split_subnets(acl, own_subnets, overlaps);
            (!forensic.is_empty()).then(|| OpenForForensics {
                acl_id: acl.id.clone(),
                forensic_cidr: forensic_cidr.to_string(),
                forensic_subnets: forensic,
                other_subnets: other,
            })
        })
        .collect()
}

/// Which denies go where, and what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyPlan {
    /// Per ACL, the instance's own-address denies first: they stop lateral movement and
    /// egress through a NAT gateway, and must not be crowded out by remote denies.
    pub wanted: Vec<WantedDeny>,
    pub remote_not_denied: Vec<RemoteNotDenied>,
    pub notes: Vec<String>,
}

/// `left_open`: ACLs that get no own-address deny, for the forensic host or Session Manager.
pub fn plan_denies(
    record: &CapturedState,
    remote_addresses: &[IpAddr],
    acls: &[NetworkAcl],
    vpc_cidrs: &[String],
    settings: &NaclSettings,
    left_open: LeftOpen<'_>,
) -> DenyPlan {
    let mut notes = Vec::new();
    let own_subnets = record.subnet_ids();
    // Addresses and delegated prefixes (EKS prefix delegation), denied as the prefixes they are.
    let mut own_cidrs: Vec<String> = Vec::new();
    for cidr in record.interfaces.iter().flat_map(|i| i.own_cidrs()) {
        if !own_cidrs.contains(&cidr) {
            own_cidrs.push(cidr);
        }
    }
    let (remote_cidrs, remote_not_denied) =
        screen_remotes(remote_addresses, &own_cidrs, vpc_cidrs, settings);
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
        if guards_other {
            if let Some(open) = left_open.sessions.iter().find(|open| open.acl_id == acl.id) {
                // The endpoints answer on the families they have addresses in: the others
                // stay denied.
                if !open.ipv6 {
                    let ipv6: Vec<String> = own_cidrs
                        .iter()
                        .filter(|c| is_ipv6_cidr(c))
                        .cloned()
                        .collect();
                    add(&ipv6);
                }
            } else if left_open.forensics.iter().any(|open| open.acl_id == acl.id) {
                // The forensic CIDR is IPv4: the instance's IPv6 addresses stay denied.
                let ipv6: Vec<String> = own_cidrs
                    .iter()
                    .filter(|c| is_ipv6_cidr(c))
                    .cloned()
                    .collect();
                add(&ipv6);
            } else {
                add(&own_cidrs);
            }
        }
        if guards_own {
            add(&remote_cidrs);
        }
    }
    DenyPlan {
        wanted,
        remote_not_denied,
        notes,
    }
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

/// Picks `count` free rule numbers for one ACL, direction and address family, lowest first,
/// from the band below the lowest allow rule, within the quota. AWS counts the quota per
/// direction and per address family (IPv4 and IPv6 rules separately, each family's catch-all
/// deny included), while rule numbers are shared by both families. Short of `count`, says
/// which limit bound.
pub fn allocate_rule_numbers(
    acl_id: &str,
    entries: &[AclEntry],
    egress: bool,
    ipv6: bool,
    settings: &NaclSettings,
    count: usize,
) -> (Vec<i32>, Option<CordonError>) {
    let family = if ipv6 { "IPv6" } else { "IPv4" };
    let direction = format!("{} {family}", Direction::from_egress(egress).name());
    let in_direction: Vec<&AclEntry> = entries
        .iter()
        .filter(|e| e.egress == egress && is_ipv6_cidr(&e.cidr) == ipv6)
        .collect();
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

/// Picks `count` free rule numbers like [`allocate_rule_numbers`], but starting at a place in
/// the free numbers that depends on `contender` (this run's record prefix). Executions that
/// contain instances of one VPC at once write into the same ACLs; were each to take the lowest
/// free numbers, all but one would collide, re-read the ACL and rewrite its record, and under
/// EC2's throttling those extra calls are what a burst waits on. Denies in the band do not
/// depend on their order, so any free numbers serve.
pub fn pick_rule_numbers(
    acl_id: &str,
    entries: &[AclEntry],
    egress: bool,
    ipv6: bool,
    settings: &NaclSettings,
    count: usize,
    contender: &str,
) -> (Vec<i32>, Option<CordonError>) {
    let (lowest, shortfall) = allocate_rule_numbers(acl_id, entries, egress, ipv6, settings, count);
    let free = free_numbers(entries, egress, settings);
    if free.is_empty() {
        return (lowest, shortfall);
    }
    let start = (spread(contender, 0) % free.len() as u64) as usize;
    let numbers = free.iter().cycle().skip(start).take(lowest.len());
    (numbers.copied().collect(), shortfall)
}

/// The number to try after losing one to another execution. Everyone who lost it reads the
/// same free numbers; were each to take the same one again, they would collide again (ten
/// instances of one VPC contained at once ran out of retries that way). So the pick is spread
/// over the free numbers by the contender and the attempt.
pub fn repick_rule_number(
    acl_id: &str,
    entries: &[AclEntry],
    egress: bool,
    ipv6: bool,
    settings: &NaclSettings,
    contender: &str,
    attempt: usize,
) -> Result<i32> {
    let (lowest, shortfall) = allocate_rule_numbers(acl_id, entries, egress, ipv6, settings, 1);
    if lowest.is_empty() {
        return Err(shortfall.expect("no number comes with its reason"));
    }
    let free = free_numbers(entries, egress, settings);
    Ok(free[(spread(contender, attempt) % free.len() as u64) as usize])
}

/// FNV-1a of the contender and attempt: stable, and enough to spread a handful of contenders.
fn spread(contender: &str, attempt: usize) -> u64 {
    format!("{contender}/{attempt}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
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
    /// The finding's remote addresses that no ACL denies, and why.
    #[serde(default)]
    pub remote_not_denied: Vec<RemoteNotDenied>,
    /// ACLs Cordon may not change (a VPC shared by another account), and whose they are.
    #[serde(default)]
    pub not_possible: Vec<String>,
    /// ACLs left without denies of the instance's own addresses for the forensic host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_for_forensics: Vec<OpenForForensics>,
    /// ACLs left without denies of the instance's own addresses for Session Manager's
    /// endpoints (`SessionManagerWhileIsolated`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_for_sessions: Vec<OpenForSessions>,
    /// Report-only: the denies this containment would add, with their rule numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub would_deny: Vec<DenyEntry>,
    pub notes: Vec<String>,
    pub errors: Vec<StepError>,
}

/// Entries recorded on an ACL's tags for one instance, by every run that contained it, as
/// written (seals unchecked: [`crate::seal::vetted_entries`] checks them; records that do not
/// read are passed over).
pub fn recorded_entries(acl: &NetworkAcl, instance_id: &str) -> Result<Vec<DenyEntry>> {
    let mut entries: Vec<DenyEntry> = Vec::new();
    for record in acl_records(&acl.id, instance_id, &acl.tags)
        .into_iter()
        .flatten()
    {
        for entry in record.entries {
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
    }
    Ok(entries)
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
    recorded_for_another_that(acl, instance_id, found, |_| true)
}

/// [`recorded_for_another`], counting only the other instances `counts` keeps (cleanup: those
/// that still exist).
pub fn recorded_for_another_that(
    acl: &NetworkAcl,
    instance_id: &str,
    found: &AclEntry,
    counts: impl Fn(&str) -> bool,
) -> bool {
    found.action == RuleAction::Deny
        && acl_recorded_instances(&acl.tags)
            .into_iter()
            .filter(|other| *other != instance_id && counts(other))
            .any(|other| {
                recorded_entries(acl, other)
                    .is_ok_and(|entries| entries.iter().any(|e| e.names(found)))
            })
}

/// Where a run writes its record on an ACL: the instance, this run's tag prefix, and the key
/// that seals it.
struct RecordPlace<'a, S> {
    instance_id: &'a str,
    prefix: &'a str,
    run: Option<&'a str>,
    seal: &'a S,
}

/// Writes `entries` as this run's record on the ACL for the instance (dropping its stale
/// chunks), sealed when the run has a key, keeping `tags` — our view of the ACL's tags — in
/// step with what was written. KMS failing does not stop the denies: the record is written
/// unsealed, and `notes` says so.
async fn write_record(
    ec2: &impl Ec2,
    acl_id: &str,
    tags: &mut Vec<(String, String)>,
    place: &RecordPlace<'_, impl Seal>,
    entries: &[DenyEntry],
    notes: &mut Vec<String>,
) -> Result<()> {
    let prefix = place.prefix;
    let old_keys = chunk_keys(prefix, tags);
    let new_tags = if entries.is_empty() {
        Vec::new()
    } else {
        let text = encode_acl_entries(entries);
        let message = acl_message(acl_id, place.instance_id, place.run, &text);
        let written = match place.seal.seal(&message).await {
            Ok(Some(seal)) => format!("{text}{ACL_SEAL_SEPARATOR}{seal}"),
            Ok(None) => text,
            // This run's record is sealed already (a re-pick rewrites it): an unsealed one in
            // its place would make its denies unverifiable. The deny waits for the step's
            // retry instead; the others of the record are in place.
            Err(error)
                if crate::record::join_chunks(prefix, tags, acl_id)
                    .ok()
                    .flatten()
                    .is_some_and(|old| old.contains(ACL_SEAL_SEPARATOR)) =>
            {
                return Err(error)
            }
            Err(error) => {
                notes.push(format!("the record of {}'s denies on {acl_id} was written without its seal ({error}): `cordon restore` keeps those denies unless told --trust-unverified", place.instance_id));
                text
            }
        };
        chunk_tags(prefix, &written)
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

/// One ACL to block in: the entries Cordon's earlier runs (and this step's earlier attempts)
/// recorded there for the instance, and the denies wanted now.
struct AclWork {
    acl: NetworkAcl,
    previous: Vec<DenyEntry>,
    wants: Vec<WantedDeny>,
}

/// What [`block`] reads of the instance's VPCs and decides before it writes.
struct BlockReading {
    /// An ACL whose record cannot be read is left out, its error in `errors`.
    acls: Vec<AclWork>,
    /// This run's own record on each ACL: another run for the same instance (this step's
    /// earlier attempt still running, or `cordon isolate` beside the execution) keeps its own,
    /// so neither overwrites the other's.
    record_prefix: String,
    run: String,
    remote_not_denied: Vec<RemoteNotDenied>,
    not_possible: Vec<String>,
    left_open: Vec<OpenForForensics>,
    open_sessions: Vec<OpenForSessions>,
    notes: Vec<String>,
    errors: Vec<CordonError>,
}

/// The ACLs of the record's VPCs and the denies wanted in each (reads only). The instance's
/// earlier records on each ACL count only where their seal verifies under `seal`'s key (any,
/// without a key): their entries go into the step's output, which the approved restore
/// removes without asking.
async fn read_and_plan(
    ec2: &impl Ec2,
    record: &CapturedState,
    remote_addresses: &[IpAddr],
    settings: &NaclSettings,
    seal: &impl Seal,
) -> BlockReading {
    let mut errors: Vec<CordonError> = Vec::new();
    let mut acls = Vec::new();
    let mut vpc_cidrs = Vec::new();
    let mut not_possible = Vec::new();
    let mut left_open = Vec::new();
    let mut open_sessions = Vec::new();
    let mut notes = Vec::new();
    let own_subnets = record.subnet_ids();
    for vpc_id in record.vpc_ids() {
        // The ACLs and the VPC's blocks and owner, at once.
        let (found, vpc) = tokio::join!(ec2.network_acls(&vpc_id), ec2.vpc(&vpc_id));
        let vpc = match vpc {
            Ok(vpc) => vpc,
            // Without the VPC's blocks, no remote address can be told apart from the VPC's
            // own: nothing is denied in this VPC rather than risk denying the VPC itself.
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        // A shared VPC's blocks are the VPC's own too: an address in them is not denied on
        // the ACLs of the instance's other VPCs either.
        vpc_cidrs.extend(vpc.cidrs.iter().cloned());
        if let Some(reason) = shared_vpc(record, &vpc) {
            not_possible.push(reason);
            continue;
        }
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        // A forensic host inside this VPC: which subnets it may be in decides which ACLs stay
        // open to the instance. Read only then (one more call, off the isolation's path).
        if let Some(forensic) = settings
            .forensic_cidr
            .as_deref()
            .filter(|f| vpc.cidrs.iter().any(|c| cidrs_overlap(c, f)))
        {
            if let Some(block) = vpc.cidrs.iter().find(|c| cidr_holds(forensic, c)) {
                // A "forensic" range as wide as the VPC would open every ACL of it.
                notes.push(format!(
                    "the forensic CIDR {forensic} holds all of {vpc_id}'s block {block}: no ACL was left open for it there; give the forensic hosts' own subnet"
                ));
            } else {
                match ec2.subnets(&vpc_id).await {
                    Ok(subnets) => left_open.extend(open_for_forensics(
                        &found,
                        &subnets,
                        forensic,
                        &own_subnets,
                    )),
                    // Containment before the forensic path: every ACL gets its denies.
                    Err(error) => {
                        notes.push(format!(
                            "{vpc_id}'s subnets could not be read: its ACLs deny the instance as everywhere, the forensic host's too"
                        ));
                        errors.push(error);
                    }
                }
            }
        }
        if settings.session_manager {
            // Which subnets hold the endpoints decides which ACLs stay open to the instance.
            // Unread, every ACL gets its denies: more closed than asked, never more open.
            match ec2.session_endpoints(&vpc_id).await {
                Ok(endpoints) => {
                    open_sessions.extend(open_for_sessions(&found, &endpoints, &own_subnets))
                }
                Err(error) => notes.push(format!(
                    "{vpc_id}'s Session Manager endpoints could not be read ({error}): its ACLs deny the instance as everywhere, the endpoints' subnets too"
                )),
            }
        }
        acls.extend(found);
    }
    let DenyPlan {
        wanted,
        remote_not_denied,
        notes: plan_notes,
    } = plan_denies(
        record,
        remote_addresses,
        &acls,
        &vpc_cidrs,
        settings,
        LeftOpen {
            forensics: &left_open,
            sessions: &open_sessions,
        },
    );
    notes.extend(plan_notes);
    notes.extend(left_open.iter().map(OpenForForensics::note));
    notes.extend(open_sessions.iter().map(OpenForSessions::note));
    let mut by_acl: BTreeMap<String, Vec<WantedDeny>> = BTreeMap::new();
    for deny in wanted {
        by_acl.entry(deny.acl_id.clone()).or_default().push(deny);
    }
    let run = new_run_id(&record.instance_id);
    let record_prefix = acl_tag_prefix(&record.instance_id, Some(&run));
    let mut work = Vec::new();
    for acl in acls {
        let previous =
            crate::seal::vetted_entries(seal, !seal.has_key(), &acl, &record.instance_id, &[])
                .await;
        match previous {
            Ok(previous) => {
                notes.extend(previous.refused.iter().map(|(refused, entries)| {
                    format!(
                        "the record {} on {} was not taken as this instance's ({}): the {} entries only it names are not Cordon's to remove",
                        refused.record,
                        refused.resource,
                        refused.reason,
                        entries.len()
                    )
                }));
                work.push(AclWork {
                    wants: by_acl.remove(&acl.id).unwrap_or_default(),
                    acl,
                    previous: previous.entries,
                })
            }
            // KMS not answering must not hold the denies back: the earlier runs' denies are
            // then taken for someone else's (kept, and not in this step's output), and restore
            // finds them by their records, which it checks itself.
            Err(error) if error.is_transient() => {
                notes.push(format!(
                    "the earlier records on {} could not be checked ({error}): their denies count as someone else's in this run",
                    acl.id
                ));
                work.push(AclWork {
                    wants: by_acl.remove(&acl.id).unwrap_or_default(),
                    acl,
                    previous: Vec::new(),
                })
            }
            Err(error) => errors.push(error),
        }
    }
    BlockReading {
        acls: work,
        record_prefix,
        run,
        remote_not_denied,
        not_possible,
        left_open,
        open_sessions,
        notes,
        errors,
    }
}

/// Adds the denies for the recorded instance. The intended entries are recorded on each ACL
/// before they are created, so that a crash half-way leaves nothing restore cannot find.
pub async fn block(
    ec2: &impl Ec2,
    record: &CapturedState,
    remote_addresses: &[IpAddr],
    settings: &NaclSettings,
    seal: &impl Seal,
) -> NaclReport {
    let BlockReading {
        acls,
        record_prefix,
        run,
        remote_not_denied,
        not_possible,
        left_open,
        open_sessions,
        mut notes,
        mut errors,
    } = read_and_plan(ec2, record, remote_addresses, settings, seal).await;
    let place = RecordPlace {
        instance_id: &record.instance_id,
        prefix: &record_prefix,
        run: Some(&run),
        seal,
    };
    let no_acl = acls.is_empty();
    let mut all_entries = Vec::new();
    let mut already = Vec::new();
    for work in acls {
        // After a throttled call, the ACLs not yet done only report the entries already held
        // there (no call): this run's retry does the rest.
        let throttled = errors.iter().any(CordonError::is_transient);
        let work = AclWork {
            wants: if throttled { Vec::new() } else { work.wants },
            ..work
        };
        let outcome = block_in_acl(ec2, work, &place, settings).await;
        all_entries.extend(outcome.entries);
        already.extend(outcome.already_denied);
        errors.extend(outcome.errors);
        notes.extend(outcome.notes);
    }
    NaclReport {
        instance_id: record.instance_id.clone(),
        status: if !errors.is_empty() {
            StepStatus::Partial
        } else if no_acl && !not_possible.is_empty() {
            StepStatus::NotPossible
        } else {
            StepStatus::Done
        },
        nacl_entries: all_entries,
        would_deny: Vec::new(),
        already_denied: already,
        remote_not_denied,
        not_possible,
        open_for_forensics: left_open,
        open_for_sessions: open_sessions,
        notes,
        errors: errors.iter().map(CordonError::to_report).collect(),
    }
}

/// What [`block`] would do, in report-only mode: the same reads and the same plan; no write.
/// The new denies are `would_deny` (each with the number it would get now: a containment
/// picks its own when it makes them). Denies an earlier containment holds are only said, in
/// `already_denied`: `nacl_entries` stays empty, as it names what restore removes.
pub async fn plan_block(
    ec2: &impl Ec2,
    record: &CapturedState,
    remote_addresses: &[IpAddr],
    settings: &NaclSettings,
) -> NaclReport {
    let BlockReading {
        acls,
        record_prefix,
        remote_not_denied,
        not_possible,
        left_open,
        open_sessions,
        notes,
        mut errors,
        ..
    } = read_and_plan(
        ec2,
        record,
        remote_addresses,
        settings,
        // It writes no record, and reads the earlier ones only to report them.
        &crate::seal::Unsealed,
    )
    .await;
    let (mut would_deny, mut already) = (Vec::new(), Vec::new());
    for work in acls {
        let plan = plan_acl(&work, &record_prefix, settings);
        already.extend(plan.kept.iter().map(|entry| {
            format!(
                "{} {} {}: denied already by Cordon's rule {} (an earlier containment)",
                entry.acl_id,
                Direction::from_egress(entry.egress).name(),
                entry.cidr,
                entry.rule_number
            )
        }));
        would_deny.extend(plan.planned);
        already.extend(plan.already_denied);
        errors.extend(plan.errors);
    }
    NaclReport {
        instance_id: record.instance_id.clone(),
        status: StepStatus::ReportOnly,
        nacl_entries: Vec::new(),
        would_deny,
        already_denied: already,
        remote_not_denied,
        not_possible,
        open_for_forensics: left_open,
        open_for_sessions: open_sessions,
        notes,
        errors: errors.iter().map(CordonError::to_report).collect(),
    }
}

/// Why the ACLs of this VPC are not the instance's account's to change, if they are not: a
/// VPC shared through AWS RAM belongs to its owner, and so do its subnets' ACLs (EC2 refuses
/// a participant's change). The owner of the VPC is the owner of its shared subnets (a
/// participant cannot create subnets in it, and may not even see its ACLs), so the VPC's
/// `OwnerId`, read with its blocks in one call, stands for each subnet's.
pub fn shared_vpc(record: &CapturedState, vpc: &crate::ec2::Vpc) -> Option<String> {
    let participant = record
        .interfaces
        .iter()
        .find(|i| i.vpc_id == vpc.id && !i.owner_id.is_empty())?
        .owner_id
        .clone();
    (!vpc.owner_id.is_empty() && vpc.owner_id != participant).then(|| {
        format!(
            "{} is shared with account {participant} by its owner {} through AWS RAM: only the owner can change its network ACLs, so none was changed there; ask account {} to deny the instance's addresses",
            vpc.id, vpc.owner_id, vpc.owner_id
        )
    })
}

/// The retryable error of a run stopped before the function's deadline.
fn out_of_time(acl_id: &str, work: &str) -> CordonError {
    CordonError::Unavailable {
        operation: "block".into(),
        message: format!(
            "the function's deadline is too close to {work} in {acl_id}; the step's retry carries on from the denies in place"
        ),
    }
}

struct AclOutcome {
    entries: Vec<DenyEntry>,
    already_denied: Vec<String>,
    errors: Vec<CordonError>,
    notes: Vec<String>,
}

/// What one ACL needs for one instance: the entries of earlier runs that still hold, the new
/// denies with the rule numbers they would get, and the wants that someone else's deny
/// already covers. Pure: [`block_in_acl`] makes it so, a report-only run reports it.
struct AclPlan {
    kept: Vec<DenyEntry>,
    planned: Vec<DenyEntry>,
    already_denied: Vec<String>,
    /// Denies wanted that another quarantined instance's record names (the same address, a
    /// shared command-and-control host): this instance relies on them, so its record names
    /// them too, once that other record verifies ([`adopt`]). Otherwise the other instance's
    /// restore, or a clean-up after it is gone, would take this instance's deny away.
    adoptable: Vec<DenyEntry>,
    errors: Vec<CordonError>,
}

fn plan_acl(work: &AclWork, record_prefix: &str, settings: &NaclSettings) -> AclPlan {
    let AclWork {
        acl,
        previous,
        wants,
    } = work;
    let mut errors = Vec::new();
    let mut already_denied_notes = Vec::new();
    let mut adoptable = Vec::new();
    // Every deny the ACL's records name, read once for the whole plan.
    let recorded = recorded_on(acl);
    // Entries an earlier run recorded and that still exist stay ours; they need no new rule.
    let still_there = |entry: &DenyEntry| {
        acl.entries.iter().any(|e| {
            e.egress == entry.egress
                && e.rule_number == entry.rule_number
                && e.cidr == entry.cidr
                && e.action == RuleAction::Deny
        })
    };
    let entries: Vec<DenyEntry> = previous
        .iter()
        .filter(|e| still_there(e))
        .cloned()
        .collect();
    let mut planned: Vec<DenyEntry> = Vec::new();
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
                if let Some(theirs) = taken
                    .then(|| recorded_deny(acl, &recorded, egress, &w.cidr))
                    .flatten()
                {
                    adoptable.push(theirs);
                }
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
        for ipv6 in [false, true] {
            let todo: Vec<&&WantedDeny> = todo
                .iter()
                .filter(|w| is_ipv6_cidr(&w.cidr) == ipv6)
                .collect();
            // The numbers just planned for the other family are taken too.
            let mut view = acl.entries.clone();
            view.extend(planned.iter().map(DenyEntry::as_acl_entry));
            // A deny an earlier attempt recorded and did not make (throttled) keeps its
            // number while that is free: a record already names it, so the retry need not
            // write one again.
            let (again, todo): (Vec<&&WantedDeny>, Vec<&&WantedDeny>) =
                todo.into_iter().partition(|want| {
                    recorded_free(previous, &view, egress, &want.cidr, settings).is_some()
                });
            for want in again {
                let entry = recorded_free(previous, &view, egress, &want.cidr, settings)
                    .expect("partitioned on it")
                    .clone();
                view.push(entry.as_acl_entry());
                planned.push(entry);
            }
            if todo.is_empty() {
                continue;
            }
            // Numbers recorded for any instance and not made yet are left alone too, while
            // the band has room for them: records are tags anyone allowed to tag the ACL can
            // write, and forged ones must not fill the band. Short of room, only the entries
            // in place count (a number another run then makes first is re-picked).
            let mut reserved = view.clone();
            reserved.extend(recorded.iter().cloned());
            let pick = |taken: &[AclEntry]| {
                pick_rule_numbers(
                    &acl.id,
                    taken,
                    egress,
                    ipv6,
                    settings,
                    todo.len(),
                    record_prefix,
                )
            };
            let (numbers, shortfall) = match pick(&reserved) {
                (_, Some(_)) => pick(&view),
                enough => enough,
            };
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
    }
    AclPlan {
        kept: entries,
        planned,
        already_denied: already_denied_notes,
        adoptable,
        errors,
    }
}

/// The deny for `cidr` in that direction that a record of the instance names (`recorded`),
/// if its number is still free in `view` and still in the band above the ACL's lowest allow
/// (one added below it since would make a deny there do nothing).
fn recorded_free<'a>(
    recorded: &'a [DenyEntry],
    view: &[AclEntry],
    egress: bool,
    cidr: &str,
    settings: &NaclSettings,
) -> Option<&'a DenyEntry> {
    let free = free_numbers(view, egress, settings);
    recorded.iter().find(|entry| {
        entry.egress == egress && entry.cidr == cidr && free.contains(&entry.rule_number)
    })
}

/// The deny of `cidr` in place on the ACL that some instance's record names (`recorded`, as
/// [`recorded_on`] reads them), if any.
fn recorded_deny(
    acl: &NetworkAcl,
    recorded: &[AclEntry],
    egress: bool,
    cidr: &str,
) -> Option<DenyEntry> {
    acl.entries
        .iter()
        .find(|e| {
            e.egress == egress
                && e.action == RuleAction::Deny
                && e.protocol == "-1"
                && e.cidr == cidr
                && recorded
                    .iter()
                    .any(|r| r.egress == egress && r.rule_number == e.rule_number && r.cidr == cidr)
        })
        .map(|e| DenyEntry {
            acl_id: acl.id.clone(),
            egress,
            rule_number: e.rule_number,
            cidr: cidr.to_string(),
        })
}

/// Of `candidates`, the denies another instance's record names and that record verifies
/// under `seal`'s key (any, without a key): a record anyone wrote must not make this
/// instance's record, and so its restore, claim an administrator's deny. A record that
/// cannot be checked now adopts nothing (said in `notes`): the deny is in place either way.
async fn adopt(
    seal: &impl Seal,
    acl: &NetworkAcl,
    instance_id: &str,
    candidates: Vec<DenyEntry>,
    notes: &mut Vec<String>,
) -> Vec<DenyEntry> {
    let mut adopted = Vec::new();
    for entry in candidates {
        for other in acl_recorded_instances(&acl.tags) {
            if other == instance_id {
                continue;
            }
            match crate::seal::vetted_entries(seal, !seal.has_key(), acl, other, &[]).await {
                Ok(theirs) if theirs.entries.contains(&entry) => {
                    adopted.push(entry);
                    break;
                }
                Ok(_) => {}
                Err(error) => notes.push(format!(
                    "{}'s record on {} could not be checked ({error}): rule {} it names is not recorded as this instance's too",
                    other, acl.id, entry.rule_number
                )),
            }
        }
    }
    adopted
}

/// Every deny the ACL's records name, for any instance, as entries: numbers a containment has
/// recorded and may be about to make, which a pick of new numbers leaves alone (taking one
/// would collide with its create, and each re-pick writes a record more on the ACL).
fn recorded_on(acl: &NetworkAcl) -> Vec<AclEntry> {
    acl_recorded_instances(&acl.tags)
        .into_iter()
        .filter_map(|instance| recorded_entries(acl, instance).ok())
        .flatten()
        .map(|entry| entry.as_acl_entry())
        .collect()
}

async fn block_in_acl(
    ec2: &impl Ec2,
    work: AclWork,
    place: &RecordPlace<'_, impl Seal>,
    settings: &NaclSettings,
) -> AclOutcome {
    let record_prefix = place.prefix;
    let mut notes = Vec::new();
    let AclPlan {
        kept: mut entries,
        planned,
        already_denied: already_denied_notes,
        adoptable,
        mut errors,
    } = plan_acl(&work, record_prefix, settings);
    let AclWork { acl, previous, .. } = work;
    let acl = &acl;
    let adopted: Vec<DenyEntry> = adopt(place.seal, acl, place.instance_id, adoptable, &mut notes)
        .await
        .into_iter()
        .filter(|entry| !previous.contains(entry))
        .collect();
    if planned.is_empty() && adopted.is_empty() {
        return AclOutcome {
            entries,
            already_denied: already_denied_notes,
            errors,
            notes,
        };
    }

    // The function's timeout must not cut a write in two: it would end the step with an
    // error the state machine does not retry. Begin an ACL only with time for its record (two
    // calls at most) and one deny; the retried step carries on from what is in place.
    if !ec2.has_time_for(3) {
        errors.push(out_of_time(&acl.id, "begin its denies"));
        return AclOutcome {
            entries,
            already_denied: already_denied_notes,
            errors,
            notes,
        };
    }
    // Record before change: the entries no record names yet go into this run's own record
    // before they are made. Records only grow until restore removes them, so one that names
    // an entry may be relied on by any run: a retry after throttling, planning the numbers an
    // earlier attempt recorded, writes nothing. An entry named but never made is one restore
    // finds gone.
    let mut to_record: Vec<DenyEntry> = planned
        .iter()
        .chain(&adopted)
        .filter(|entry| !previous.contains(entry))
        .cloned()
        .collect();
    let mut tags = acl.tags.clone();
    if !to_record.is_empty() {
        if let Err(error) =
            write_record(ec2, &acl.id, &mut tags, place, &to_record, &mut notes).await
        {
            errors.push(error);
            return AclOutcome {
                entries,
                already_denied: already_denied_notes,
                errors,
                notes,
            };
        }
    }
    // In place already, and now in this instance's record: its own to remove on restore.
    entries.extend(adopted);
    let mut view = acl.clone();
    for mut entry in planned {
        // EC2 throttled a call (or could not be reached) through all the SDK's attempts: the
        // next calls would meet the same empty bucket. Stop here, and let the state machine's
        // retry, with its longer and jittered waits, carry on from what is in place.
        if !errors.iter().any(CordonError::is_transient) && !ec2.has_time_for(1) {
            errors.push(out_of_time(&acl.id, "create its next deny"));
        }
        if errors.iter().any(CordonError::is_transient) {
            break;
        }
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
                    // A re-pick reads the ACL, records the new number and creates again.
                    // Without time for that, the entry stays in the record (it may be ours,
                    // its answer lost), and the retried step goes on.
                    if !ec2.has_time_for(4) {
                        errors.push(out_of_time(&acl.id, "pick another number"));
                        break;
                    }
                    attempts += 1;
                    // Someone took the number since we read the ACL, or our own create went
                    // through and only its answer was lost (the SDK's retry then finds the
                    // number taken by it): read the ACL again. If it cannot be read, the
                    // entry may well be ours, so it stays in the record like any other whose
                    // fate is unknown.
                    match ec2.network_acl(&acl.id).await {
                        Ok(fresh) => view.entries = fresh.entries,
                        Err(error) => {
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
                        is_ipv6_cidr(&entry.cidr),
                        settings,
                        record_prefix,
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
                    // for someone else's). The old number stays named: a record only grows.
                    entry.rule_number = number;
                    to_record.push(entry.clone());
                    if let Err(error) =
                        write_record(ec2, &acl.id, &mut tags, place, &to_record, &mut notes).await
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
                    if !ec2.has_time_for(1) {
                        errors.push(error);
                        break;
                    }
                    match ec2.network_acl(&acl.id).await {
                        Ok(fresh) if holds(&fresh.entries, &entry) => entries.push(entry),
                        _ => errors.push(error),
                    }
                    break;
                }
            }
        }
    }
    AclOutcome {
        entries,
        already_denied: already_denied_notes,
        errors,
        notes,
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
            shutdown_behavior: None,
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
        let DenyPlan { wanted, .. } = plan_denies(
            &record,
            &remote("198.51.100.7"),
            &acls,
            &[],
            &NaclSettings::default(),
            LeftOpen::default(),
        );
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
        let DenyPlan { wanted, .. } = plan_denies(
            &record,
            &remote("198.51.100.7"),
            &shared,
            &[],
            &NaclSettings::default(),
            LeftOpen::default(),
        );
        assert_eq!(wanted.len(), 4);
        assert!(wanted.contains(&deny("acl-default", false, "10.0.1.5/32")));
        assert!(wanted.contains(&deny("acl-default", true, "198.51.100.7/32")));

        // An ACL guarding only the instance's own subnet: a deny of the instance's own
        // address there would match nothing, so none is planned.
        let alone = [default_acl("acl-a", &["subnet-a"])];
        let DenyPlan { wanted, .. } = plan_denies(
            &record,
            &remote("198.51.100.7"),
            &alone,
            &[],
            &NaclSettings::default(),
            LeftOpen::default(),
        );
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
        let plan = plan_denies(
            &record,
            &remote("0.0.0.0 10.0.1.5"),
            &acls,
            &[],
            &NaclSettings::default(),
            LeftOpen::default(),
        );
        assert!(plan.wanted.is_empty());
        let not_denied = &plan.remote_not_denied;
        assert_eq!(not_denied[0].address, "0.0.0.0");
        assert!(not_denied[0].reason.contains("no remote host"));
        assert_eq!(not_denied[1].address, "10.0.1.5");
        assert!(not_denied[1].reason.contains("own address"));
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
        let (numbers, shortfall) =
            allocate_rule_numbers("acl", &entries, false, false, &settings, 3);
        assert_eq!(numbers, [2, 4, 5]);
        assert_eq!(shortfall, None);
        let (numbers, _) = allocate_rule_numbers("acl", &entries, true, false, &settings, 2);
        assert_eq!(numbers, [1, 3]);
    }

    #[test]
    fn a_low_allow_rule_narrows_the_band_and_a_full_band_is_reported() {
        let settings = NaclSettings::default();
        let entries = vec![
            entry(3, false, RuleAction::Allow),
            entry(1, false, RuleAction::Deny),
        ];
        let (numbers, shortfall) =
            allocate_rule_numbers("acl-x", &entries, false, false, &settings, 3);
        assert_eq!(numbers, [2]);
        let shortfall = shortfall.unwrap();
        assert_eq!(shortfall.error_name(), "Cordon.NaclBandExhausted");
        assert!(shortfall.to_string().contains("1..=2"), "{shortfall}");
        let first_rule_allows = vec![entry(1, true, RuleAction::Allow)];
        let (numbers, shortfall) =
            allocate_rule_numbers("acl-x", &first_rule_allows, true, false, &settings, 1);
        assert!(numbers.is_empty());
        assert_eq!(shortfall.unwrap().error_name(), "Cordon.NaclBandExhausted");
    }

    #[test]
    fn the_quota_counts_every_entry_of_the_direction_and_binds_before_the_band() {
        let settings = NaclSettings {
            band: RuleBand::default(),
            rule_quota: 20,
            ..NaclSettings::default()
        };
        let mut entries: Vec<AclEntry> = (200..218)
            .map(|n| entry(n, false, RuleAction::Allow))
            .collect();
        entries.push(entry(32767, false, RuleAction::Deny));
        // 19 of 20 used: one more fits.
        let (numbers, shortfall) =
            allocate_rule_numbers("acl-q", &entries, false, false, &settings, 2);
        assert_eq!(numbers, [1]);
        let shortfall = shortfall.unwrap();
        assert_eq!(shortfall.error_name(), "Cordon.NaclQuotaExceeded");
        assert!(shortfall.to_string().contains("at its quota of 20"));
        entries.push(entry(1, false, RuleAction::Deny));
        let (numbers, _) = allocate_rule_numbers("acl-q", &entries, false, false, &settings, 1);
        assert!(numbers.is_empty());
        let wider = NaclSettings {
            rule_quota: 40,
            ..settings
        };
        assert_eq!(
            allocate_rule_numbers("acl-q", &entries, false, false, &wider, 1).0,
            [2]
        );
    }

    #[test]
    fn numbers_stay_inside_a_configured_band_and_aws_range() {
        let settings = NaclSettings {
            band: RuleBand::new(32760, 32766).unwrap(),
            rule_quota: 40,
            ..NaclSettings::default()
        };
        let (numbers, shortfall) = allocate_rule_numbers(
            "acl",
            &[entry(32767, true, RuleAction::Deny)],
            true,
            false,
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

    /// Report-only: the plan is the denies a containment makes, with the numbers they would
    /// get; nothing is written; denies an earlier containment holds are said, never handed to
    /// restore.
    #[test]
    fn the_acl_plan_is_what_block_would_make_and_writes_nothing() {
        let ec2 = FakeEc2::standard();
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let settings = NaclSettings::default();
        let guarded = crate::report_only::ReadOnly(&ec2);
        let plan = block_on(plan_block(
            &guarded,
            &record,
            &remote("198.51.100.7"),
            &settings,
        ));
        assert_eq!(plan.status, StepStatus::ReportOnly, "{:?}", plan.errors);
        assert!(plan.nacl_entries.is_empty());
        let mut planned: Vec<(String, bool, String)> = plan
            .would_deny
            .iter()
            .map(|e| (e.acl_id.clone(), e.egress, e.cidr.clone()))
            .collect();
        planned.sort();
        assert_eq!(
            planned,
            [
                ("acl-a".to_string(), false, "198.51.100.7/32".to_string()),
                ("acl-a".into(), true, "198.51.100.7/32".into()),
                ("acl-b".into(), false, "10.0.1.5/32".into()),
                ("acl-b".into(), true, "10.0.1.5/32".into()),
            ]
        );
        assert!(plan
            .would_deny
            .iter()
            .all(|e| (1..=99).contains(&e.rule_number)));
        assert!(
            ec2.calls().iter().all(|c| c.starts_with("Describe")),
            "{:?}",
            ec2.calls()
        );

        // Contained since: the plan makes nothing new and hands restore nothing.
        let contained = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &settings,
            &crate::seal::Unsealed,
        ));
        let again = block_on(plan_block(
            &guarded,
            &record,
            &remote("198.51.100.7"),
            &settings,
        ));
        assert!(again.would_deny.is_empty() && again.nacl_entries.is_empty());
        assert_eq!(again.already_denied.len(), contained.nacl_entries.len());
        assert!(again.already_denied[0].contains("denied already by Cordon's rule"));
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
        let report = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &settings,
            &crate::seal::Unsealed,
        ));
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
        assert_eq!(report.nacl_entries.len(), 4);
        // Denies of the band (1-99), below the default ACL's allow rule 100.
        let denies_in = |acl: &str| -> Vec<(bool, String)> {
            let mut found: Vec<_> = ec2
                .acl_entries(acl)
                .into_iter()
                .filter(|e| e.action == RuleAction::Deny && e.rule_number < 100)
                .map(|e| (e.egress, e.cidr))
                .collect();
            found.sort();
            found
        };
        assert_eq!(
            denies_in("acl-a"),
            [
                (false, "198.51.100.7/32".into()),
                (true, "198.51.100.7/32".into())
            ]
        );
        assert_eq!(
            denies_in("acl-b"),
            [(false, "10.0.1.5/32".into()), (true, "10.0.1.5/32".into())]
        );
        let acl_a = block_on(ec2.network_acl("acl-a")).unwrap();
        assert_eq!(recorded_entries(&acl_a, "i-00000001").unwrap().len(), 2);

        ec2.clear_calls();
        let again = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &settings,
            &crate::seal::Unsealed,
        ));
        assert_eq!(again.nacl_entries.len(), 4);
        assert_eq!(denies_in("acl-a").len(), 2);
        assert!(!ec2
            .calls()
            .iter()
            .any(|c| c == "CreateNetworkAclEntry" || c == "CreateTags"));
    }

    fn subnet(id: &str, cidr: &str) -> Subnet {
        Subnet {
            id: id.into(),
            vpc_id: "vpc-1".into(),
            cidrs: vec![cidr.into()],
        }
    }

    #[test]
    fn the_acl_of_a_subnet_inside_the_forensic_cidr_stays_open_to_the_instance() {
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg"],
            "10.0.1.5",
            None,
        )]);
        // acl-b serves the forensic subnet (10.0.9.0/24, inside 10.0.8.0/22) and subnet-c;
        // acl-a the instance's own subnet and, through it, a forensic subnet too; acl-d a
        // subnet next to the forensic CIDR.
        let acls = [
            default_acl("acl-a", &["subnet-a", "subnet-f"]),
            default_acl("acl-b", &["subnet-b", "subnet-c"]),
            default_acl("acl-d", &["subnet-d"]),
        ];
        let subnets = [
            subnet("subnet-a", "10.0.1.0/24"),
            subnet("subnet-b", "10.0.9.0/24"),
            subnet("subnet-c", "10.0.3.0/24"),
            subnet("subnet-d", "10.0.12.0/24"),
            subnet("subnet-f", "10.0.8.0/26"),
        ];
        let open = open_for_forensics(&acls, &subnets, "10.0.8.0/22", &["subnet-a"]);
        assert_eq!(
            open.iter().map(|o| o.acl_id.as_str()).collect::<Vec<_>>(),
            ["acl-a", "acl-b"]
        );
        assert_eq!(open[1].forensic_subnets, ["subnet-b"]);
        assert_eq!(open[1].other_subnets, ["subnet-c"]);
        assert!(open[1].note().contains("subnet-c"), "{}", open[1].note());
        assert!(open[0].note().contains("serves no other subnet"));

        let DenyPlan { wanted, .. } = plan_denies(
            &record,
            &remote("198.51.100.7"),
            &acls,
            &[],
            &NaclSettings::default(),
            LeftOpen {
                forensics: &open,
                sessions: &[],
            },
        );
        let on = |acl: &str| -> Vec<&str> {
            wanted
                .iter()
                .filter(|w| w.acl_id == acl)
                .map(|w| w.cidr.as_str())
                .collect()
        };
        // The instance's own ACL still denies the remote; only the forensic ACLs go without
        // the instance's own address.
        assert_eq!(on("acl-a"), ["198.51.100.7/32", "198.51.100.7/32"]);
        assert!(on("acl-b").is_empty());
        assert_eq!(on("acl-d"), ["10.0.1.5/32", "10.0.1.5/32"]);
    }

    #[test]
    fn block_leaves_the_forensic_subnets_acl_open_and_says_what_else_it_serves() {
        let ec2 = FakeEc2::standard();
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let settings = NaclSettings {
            forensic_cidr: Some("10.0.2.16/28".into()),
            protected_cidrs: vec!["10.0.2.16/28".into()],
            ..NaclSettings::default()
        };
        let report = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &settings,
            &crate::seal::Unsealed,
        ));
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
        let denies_of_b: Vec<AclEntry> = ec2
            .acl_entries("acl-b")
            .into_iter()
            .filter(|e| e.action == RuleAction::Deny && e.rule_number < 100)
            .collect();
        assert!(denies_of_b.is_empty(), "{denies_of_b:?}");
        assert_eq!(report.nacl_entries.len(), 2, "only the remote on acl-a");
        assert_eq!(report.open_for_forensics.len(), 1);
        assert_eq!(report.open_for_forensics[0].acl_id, "acl-b");
        assert!(report.notes.iter().any(|n| n.contains("acl-b")
            && n.contains("10.0.2.16/28")
            && n.contains("serves no other subnet")));
    }

    #[test]
    fn with_session_manager_the_endpoints_acl_keeps_its_path_to_the_instance() {
        let ec2 = FakeEc2::standard();
        ec2.with_session_endpoints();
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            Some("2001:db8:1::5"),
        )]);
        let denies_of = |acl: &str| -> Vec<AclEntry> {
            ec2.acl_entries(acl)
                .into_iter()
                .filter(|e| e.action == RuleAction::Deny && e.rule_number < 100)
                .collect()
        };
        let on = NaclSettings {
            session_manager: true,
            ..NaclSettings::default()
        };
        let report = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &on,
            &crate::seal::Unsealed,
        ));
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
        // The endpoints have IPv4 addresses only: the instance's IPv6 address stays denied.
        let denied: Vec<String> = denies_of("acl-b").into_iter().map(|e| e.cidr).collect();
        assert_eq!(denied, ["2001:db8:1::5/128", "2001:db8:1::5/128"]);
        assert_eq!(denies_of("acl-a").len(), 2, "the remote, both ways");
        assert_eq!(report.open_for_sessions.len(), 1);
        assert_eq!(
            report.open_for_sessions[0].endpoints,
            ["vpce-ssm", "vpce-messages"]
        );
        assert!(report
            .notes
            .iter()
            .any(|n| n.contains("acl-b") && n.contains("vpce-ssm")));

        // Off, with the endpoints unread, or with an endpoint alone (no session possible),
        // the endpoints' ACL denies the instance.
        let alone = FakeEc2::standard();
        alone.with(|s| {
            let endpoints = ec2.with(|e| e.session_endpoints["vpc-1"][..1].to_vec());
            s.session_endpoints.insert("vpc-1".into(), endpoints)
        });
        for (settings, fail, world) in [
            (NaclSettings::default(), false, FakeEc2::standard()),
            (on.clone(), true, FakeEc2::standard()),
            (on, false, alone),
        ] {
            let ec2 = world;
            if fail {
                ec2.with(|s| {
                    s.failures.push((
                        "DescribeVpcEndpoints".into(),
                        CordonError::Unavailable {
                            operation: "DescribeVpcEndpoints".into(),
                            message: "throttled".into(),
                        },
                    ))
                });
            }
            let report = block_on(block(
                &ec2,
                &record,
                &remote("198.51.100.7"),
                &settings,
                &crate::seal::Unsealed,
            ));
            let denies: Vec<AclEntry> = ec2
                .acl_entries("acl-b")
                .into_iter()
                .filter(|e| e.action == RuleAction::Deny && e.rule_number < 100)
                .collect();
            assert_eq!(denies.len(), 4, "both addresses, both ways");
            assert!(report.open_for_sessions.is_empty());
            assert_eq!(
                fail,
                report.notes.iter().any(|n| n.contains("could not be read")),
                "{:?}",
                report.notes
            );
        }
    }

    /// The standard world's instance (eni-1 in subnet-a, 10.0.1.5) blocked against
    /// 198.51.100.7, with `forensic_cidr` the forensic CIDR.
    fn block_with_forensic(ec2: &FakeEc2, forensic_cidr: &str) -> NaclReport {
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let settings = NaclSettings {
            forensic_cidr: Some(forensic_cidr.into()),
            ..NaclSettings::default()
        };
        block_on(block(
            ec2,
            &record,
            &remote("198.51.100.7"),
            &settings,
            &crate::seal::Unsealed,
        ))
    }

    #[test]
    fn a_forensic_cidr_outside_the_vpc_costs_no_read_of_its_subnets() {
        let ec2 = FakeEc2::standard();
        let report = block_with_forensic(&ec2, "192.168.50.0/24");
        assert_eq!(report.nacl_entries.len(), 4);
        assert!(report.open_for_forensics.is_empty());
        assert!(!ec2.calls().iter().any(|c| c == "DescribeSubnets"));
    }

    #[test]
    fn a_forensic_cidr_as_wide_as_the_vpc_leaves_no_acl_open() {
        let ec2 = FakeEc2::standard();
        let report = block_with_forensic(&ec2, "10.0.0.0/8");
        assert_eq!(report.nacl_entries.len(), 4);
        assert!(report.open_for_forensics.is_empty());
        assert!(report
            .notes
            .iter()
            .any(|n| n.contains("holds all of vpc-1")));
        assert!(!ec2.calls().iter().any(|c| c == "DescribeSubnets"));
    }

    #[test]
    fn without_the_subnets_every_acl_gets_its_denies_and_the_step_says_so() {
        // Refused (a role without ec2:DescribeSubnets): nothing to wait for.
        let ec2 = FakeEc2::standard();
        ec2.fail_next(
            "DescribeSubnets",
            CordonError::AccessDenied {
                operation: "DescribeSubnets".into(),
                message: "not authorized".into(),
            },
        );
        let report = block_with_forensic(&ec2, "10.0.2.16/28");
        // Containment before the forensic path: the remote on the instance's ACL, the
        // instance on the forensic subnet's too; the error says why the step is partial.
        assert_eq!(report.status, StepStatus::Partial);
        assert_eq!(report.nacl_entries.len(), 4);
        assert!(report.open_for_forensics.is_empty());
        assert!(report.notes.iter().any(|n| n.contains("could not be read")));

        // Throttled: as after any throttled call, this attempt writes nothing and the step's
        // retry reads the subnets again.
        let ec2 = FakeEc2::standard();
        ec2.fail_next(
            "DescribeSubnets",
            CordonError::Throttled {
                operation: "DescribeSubnets".into(),
                message: "Rate exceeded".into(),
            },
        );
        let report = block_with_forensic(&ec2, "10.0.2.16/28");
        assert_eq!(report.status, StepStatus::Partial);
        assert!(report.nacl_entries.is_empty());
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
            &crate::seal::Unsealed,
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
            crate::restore::RecordSource::unverified_tags(),
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
                &crate::seal::Unsealed,
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
        let restored = block_on(crate::restore::restore(
            &ec2,
            "i-00000001",
            crate::restore::RecordSource::unverified_tags(),
            &[],
        ))
        .unwrap();
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
                &crate::seal::Unsealed,
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
                let ours: Vec<DenyEntry> = acl
                    .entries
                    .iter()
                    .filter(|e| {
                        e.action == RuleAction::Deny
                            && e.rule_number < 32767
                            && e.cidr != theirs.cidr
                    })
                    .map(|e| DenyEntry {
                        acl_id: acl_id.into(),
                        egress: e.egress,
                        rule_number: e.rule_number,
                        cidr: e.cidr.clone(),
                    })
                    .collect();
                let recorded = recorded_entries(&acl, "i-00000001").unwrap();
                // Every deny is named by a record. A record may also name an entry its run
                // meant to make and never did (restore finds it gone): a run never rewrites
                // another run's record, which may belong to a containment still going on.
                let orphans: Vec<&DenyEntry> =
                    ours.iter().filter(|e| !recorded.contains(e)).collect();
                assert!(
                    orphans.is_empty(),
                    "died after call {dies_after} in {acl_id}: {orphans:?}"
                );
            }
            let restored = block_on(crate::restore::restore(
                &ec2,
                "i-00000001",
                crate::restore::RecordSource::unverified_tags(),
                &[],
            ))
            .unwrap();
            assert!(restored.errors.is_empty(), "{:?}", restored.errors);
            let (a, b) = before(&ec2);
            let mut expected_a = untouched.0.clone();
            // Theirs took the number of one of our creates, whichever that was.
            let landed = a.iter().find(|e| e.cidr == theirs.cidr).cloned();
            expected_a.push(landed.expect("their entry landed in acl-a"));
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
        // Someone adds an inbound rule to acl-a after our read, at the number we picked: our
        // first create there collides.
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
            &crate::seal::Unsealed,
        ));
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
        let acl_a = block_on(ec2.network_acl("acl-a")).unwrap();
        let landed = acl_a.entries.iter().find(|e| e.cidr == theirs.cidr);
        let landed = landed.expect("their rule is untouched").clone();
        assert!(!landed.egress && landed.protocol == "6");
        let mut recorded = recorded_entries(&acl_a, "i-00000001").unwrap();
        recorded.sort();
        let numbers: Vec<(bool, i32)> =
            recorded.iter().map(|e| (e.egress, e.rule_number)).collect();
        // Inbound moved off theirs to another free number of the band, recorded before it
        // was made (the number lost stays named: a record only grows); outbound kept its own.
        assert_eq!(numbers.len(), 3, "{numbers:?}");
        assert!(
            !numbers[0].0 && !numbers[1].0 && numbers[2].0,
            "{numbers:?}"
        );
        assert!(
            numbers[..2].iter().any(|(_, n)| *n != landed.rule_number),
            "{numbers:?}"
        );
        let band = NaclSettings::default().band;
        assert!(numbers
            .iter()
            .all(|(_, n)| (band.first..=band.last).contains(n)));
        let made = recorded.iter().filter(|entry| {
            acl_a.entries.iter().any(|e| {
                e.rule_number == entry.rule_number
                    && e.egress == entry.egress
                    && e.cidr == entry.cidr
            })
        });
        assert_eq!(made.count(), 2, "{recorded:?}");
        // Restore takes the lost number for what it is, not for drift, and leaves their rule.
        let restored = block_on(crate::restore::restore(
            &ec2,
            "i-00000001",
            crate::restore::RecordSource::unverified_tags(),
            &[],
        ))
        .unwrap();
        assert_ne!(
            restored.status,
            crate::restore::RestoreStatus::Drift,
            "{restored:?}"
        );
        assert!(restored.nacl_entries_kept.is_empty(), "{restored:?}");
        let acl_a = block_on(ec2.network_acl("acl-a")).unwrap();
        assert!(acl_a.entries.contains(&landed));
    }

    #[test]
    fn executions_that_write_into_one_acl_at_once_mostly_pick_different_numbers() {
        let acl = default_acl("acl-a", &["subnet-a"]);
        let settings = NaclSettings::default();
        // Ten instances of one VPC contained at once each want one inbound deny in acl-a.
        let picks: Vec<i32> = (1..=10)
            .map(|n| {
                let contender = acl_tag_prefix(&format!("i-{n:08x}"), Some("run"));
                let (numbers, shortfall) = pick_rule_numbers(
                    "acl-a",
                    &acl.entries,
                    false,
                    false,
                    &settings,
                    1,
                    &contender,
                );
                assert!(shortfall.is_none());
                numbers[0]
            })
            .collect();
        let distinct: BTreeSet<i32> = picks.iter().copied().collect();
        assert!(
            distinct.len() >= 8,
            "lowest-first would give one: {picks:?}"
        );
        assert!(picks.iter().all(|n| (1..=99).contains(n)), "{picks:?}");
    }

    #[test]
    fn a_spread_pick_takes_only_free_numbers_and_says_what_ran_short() {
        let settings = NaclSettings {
            band: RuleBand { first: 1, last: 6 },
            ..NaclSettings::default()
        };
        let mut entries = default_acl("acl-s", &["subnet-a"]).entries;
        entries.push(entry(3, false, RuleAction::Deny));
        for contender in ["a", "b", "c", "d", "e"] {
            let (numbers, shortfall) =
                pick_rule_numbers("acl-s", &entries, false, false, &settings, 3, contender);
            let unique: BTreeSet<i32> = numbers.iter().copied().collect();
            assert_eq!(unique.len(), 3, "{contender}: {numbers:?}");
            assert!(
                numbers.iter().all(|n| [1, 2, 4, 5, 6].contains(n)),
                "{numbers:?}"
            );
            assert!(shortfall.is_none());
            let (numbers, shortfall) =
                pick_rule_numbers("acl-s", &entries, false, false, &settings, 7, contender);
            assert_eq!(numbers.len(), 5);
            assert!(matches!(
                shortfall,
                Some(CordonError::NaclBandExhausted { .. })
            ));
        }
    }

    #[test]
    fn numbers_another_instance_recorded_and_has_not_made_yet_are_left_to_it() {
        // Two numbers a direction, so that a pick blind to the record collides half the time.
        let settings = NaclSettings {
            band: RuleBand { first: 1, last: 2 },
            ..NaclSettings::default()
        };
        let ec2 = FakeEc2::standard();
        let first = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        // The first instance's step records its denies in acl-a, then is throttled.
        ec2.with(|s| {
            s.failures.push((
                "CreateNetworkAclEntry".into(),
                CordonError::Throttled {
                    operation: "CreateNetworkAclEntry".into(),
                    message: "Request limit exceeded.".into(),
                },
            ))
        });
        block_on(block(
            &ec2,
            &first,
            &remote("198.51.100.7"),
            &settings,
            &crate::seal::Unsealed,
        ));
        let acl_a = block_on(ec2.network_acl("acl-a")).unwrap();
        let theirs = recorded_entries(&acl_a, "i-00000001").unwrap();
        assert_eq!(theirs.len(), 2, "recorded, not made");
        let inbound = theirs.iter().find(|t| !t.egress).unwrap().rule_number;
        // A second instance of the subnet whose pick, blind to that record, would take the
        // same inbound number.
        let prefix = (2..200)
            .map(|n| acl_tag_prefix(&format!("i-{n:08x}"), Some("0a1b2c3d")))
            .find(|prefix| {
                let (blind, _) =
                    pick_rule_numbers("acl-a", &acl_a.entries, false, false, &settings, 1, prefix);
                blind == [inbound]
            })
            .expect("some contender collides");
        let work = AclWork {
            acl: acl_a,
            previous: Vec::new(),
            wants: vec![deny("acl-a", false, "203.0.113.9/32")],
        };
        let plan = plan_acl(&work, &prefix, &settings);
        assert_eq!(plan.planned.len(), 1, "{:?}", plan.errors);
        assert_ne!(plan.planned[0].rule_number, inbound, "{theirs:?}");
    }

    #[test]
    fn a_throttled_create_stops_the_run_and_its_retry_finishes_the_rest() {
        let ec2 = FakeEc2::standard();
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let throttled = CordonError::Throttled {
            operation: "CreateNetworkAclEntry".into(),
            message: "Request limit exceeded.".into(),
        };
        ec2.with(|s| {
            s.failures
                .push(("CreateNetworkAclEntry".into(), throttled.clone()))
        });
        let settings = NaclSettings::default();
        let first = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &settings,
            &crate::seal::Unsealed,
        ));
        assert_eq!(first.status, StepStatus::Partial);
        assert!(crate::isolate::retryable(&first.errors).is_some());
        let creates = |ec2: &FakeEc2| {
            ec2.calls()
                .iter()
                .filter(|c| *c == "CreateNetworkAclEntry")
                .count()
        };
        // The bucket is empty: the three other creates would only meet it again.
        assert_eq!(creates(&ec2), 1, "{:?}", ec2.calls());
        let acl = |id| block_on(ec2.network_acl(id)).unwrap();
        for acl_id in ["acl-a", "acl-b"] {
            let ours = acl(acl_id)
                .entries
                .iter()
                .filter(|e| e.rule_number < 100)
                .count();
            assert_eq!(ours, 0, "{acl_id}");
        }
        // acl-a's record stays as intended (a superset restore finds gone), for the retry to
        // go on from without writing it again; acl-b was not begun.
        let intended = recorded_entries(&acl("acl-a"), "i-00000001").unwrap();
        assert_eq!(intended.len(), 2);
        assert_eq!(
            recorded_entries(&acl("acl-b"), "i-00000001").unwrap(),
            vec![]
        );
        ec2.clear_calls();
        let again = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &settings,
            &crate::seal::Unsealed,
        ));
        assert_eq!(again.status, StepStatus::Done, "{:?}", again.errors);
        assert_eq!(again.nacl_entries.len(), 4);
        assert_eq!(creates(&ec2), 4);
        let tag_writes: Vec<String> = ec2
            .calls()
            .into_iter()
            .filter(|c| c.ends_with("Tags"))
            .collect();
        assert_eq!(tag_writes, ["CreateTags"], "acl-b's record only");
        // The numbers the first attempt recorded are the ones made, under one record.
        let made: Vec<DenyEntry> = again
            .nacl_entries
            .iter()
            .filter(|e| e.acl_id == "acl-a")
            .cloned()
            .collect();
        let same = made.len() == intended.len() && made.iter().all(|e| intended.contains(e));
        assert!(same, "{made:?} vs {intended:?}");
        assert_eq!(
            recorded_entries(&acl("acl-a"), "i-00000001").unwrap().len(),
            2
        );
        assert_eq!(
            crate::record::acl_record_prefixes("i-00000001", &acl("acl-a").tags).len(),
            1,
            "one record per run"
        );
    }

    #[test]
    fn near_the_deadline_no_write_is_begun_and_the_retry_finishes_the_rest() {
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let settings = NaclSettings::default();
        // Someone's entry takes the number of our first inbound create in acl-a: the re-pick
        // path is crossed too.
        let theirs = AclEntry {
            rule_number: 1,
            egress: false,
            action: RuleAction::Deny,
            protocol: "6".into(),
            cidr: "10.9.9.9/32".into(),
        };
        let setup = || {
            let ec2 = FakeEc2::standard();
            ec2.with(|s| s.racing_entry = Some(("acl-a".into(), theirs.clone())));
            ec2
        };
        let clean = setup();
        block_on(block(
            &clean,
            &record,
            &remote("198.51.100.7"),
            &settings,
            &crate::seal::Unsealed,
        ));
        let total = clean.calls().len() as u32;
        let reads = clean
            .calls()
            .iter()
            .filter(|c| *c == "DescribeNetworkAcls")
            .count();
        assert_eq!(reads, 2, "the first read and the re-pick's");
        // The two reads come first, at the invocation's start; from there on, the deadline
        // may fall anywhere. The fake fails the test if a call is started past it.
        for budget in 2..total {
            let ec2 = setup();
            ec2.with(|s| s.calls_before_deadline = Some(budget));
            let first = block_on(block(
                &ec2,
                &record,
                &remote("198.51.100.7"),
                &settings,
                &crate::seal::Unsealed,
            ));
            let error = crate::isolate::retryable(&first.errors);
            let error = error.unwrap_or_else(|| panic!("budget {budget}: {:?}", first.errors));
            assert!(error.cause.contains("deadline"), "{error:?}");
            ec2.with(|s| s.calls_before_deadline = None);
            let again = block_on(block(
                &ec2,
                &record,
                &remote("198.51.100.7"),
                &settings,
                &crate::seal::Unsealed,
            ));
            assert_eq!(again.status, StepStatus::Done, "budget {budget}");
            assert_eq!(again.nacl_entries.len(), 4, "budget {budget}");
            for acl_id in ["acl-a", "acl-b"] {
                let acl = block_on(ec2.network_acl(acl_id)).unwrap();
                let recorded = recorded_entries(&acl, "i-00000001").unwrap();
                let ours = acl.entries.iter().filter(|e| e.cidr != theirs.cidr);
                for deny in ours.filter(|e| e.rule_number < 100) {
                    assert!(
                        recorded
                            .iter()
                            .any(|r| r.rule_number == deny.rule_number && r.cidr == deny.cidr),
                        "budget {budget}: {deny:?} unrecorded"
                    );
                }
            }
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
                repick_rule_number("acl-a", &acl.entries, false, false, &settings, &instance, 1)
                    .unwrap()
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
        let error = repick_rule_number(
            "acl-a",
            &acl.entries,
            false,
            false,
            &settings,
            "i-00000001",
            1,
        )
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
            &crate::seal::Unsealed,
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

    #[test]
    fn remote_addresses_the_attacker_can_aim_at_the_vpc_are_never_denied() {
        let settings = NaclSettings {
            protected_cidrs: vec!["203.0.113.0/28".into(), "2001:db8:ffff::/48".into()],
            max_remote_denies: 2,
            ..NaclSettings::default()
        };
        let vpc = ["172.31.0.0/16".to_string(), "2600:1f18:1::/56".to_string()];
        let own = ["172.31.1.5/32".to_string(), "172.31.9.0/28".to_string()];
        let (denied, not_denied) = screen_remotes(
            &remote(
                "172.31.0.2 2600:1f18:1::53 10.1.2.3 100.64.0.1 fd00::1 203.0.113.5 \
                 2001:db8:ffff::1 ::ffff:172.31.0.2 172.31.9.3 198.51.100.7 198.51.100.7 \
                 192.0.2.1 198.51.100.8",
            ),
            &own,
            &vpc,
            &settings,
        );
        assert_eq!(denied, ["198.51.100.7/32", "192.0.2.1/32"]);
        let reason = |address: &str| {
            not_denied
                .iter()
                .find(|n| n.address == address)
                .map(|n| n.reason.clone())
                .unwrap_or_else(|| panic!("{address} not reported: {not_denied:?}"))
        };
        assert!(reason("172.31.0.2").contains("VPC's own block 172.31.0.0/16"));
        assert!(reason("2600:1f18:1::53").contains("VPC's own block"));
        assert!(reason("10.1.2.3").contains("RFC 1918"));
        assert!(reason("100.64.0.1").contains("RFC 6598"));
        assert!(reason("fd00::1").contains("unique local"));
        assert!(reason("203.0.113.5").contains("protected"));
        assert!(reason("2001:db8:ffff::1").contains("protected"));
        assert!(reason("::ffff:172.31.0.2 (IPv4 172.31.0.2)").contains("VPC's own block"));
        assert!(reason("172.31.9.3").contains("own address"));
        assert!(reason("198.51.100.8").contains("cap of 2"));
        // Opted in, private addresses outside the VPC may be denied.
        let opted = NaclSettings {
            deny_private_remotes: true,
            ..NaclSettings::default()
        };
        let (denied, _) = screen_remotes(&remote("10.1.2.3"), &[], &vpc, &opted);
        assert_eq!(denied, ["10.1.2.3/32"]);
    }

    #[test]
    fn a_remote_inside_the_vpc_changes_no_acl_and_is_reported() {
        let ec2 = FakeEc2::standard();
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let before = ec2.acl_entries("acl-a");
        let report = block_on(block(
            &ec2,
            &record,
            &remote("10.0.2.53 ::ffff:10.0.0.2"),
            &NaclSettings::default(),
            &crate::seal::Unsealed,
        ));
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
        assert_eq!(ec2.acl_entries("acl-a"), before);
        assert_eq!(report.remote_not_denied.len(), 2);
        assert!(report.nacl_entries.iter().all(|e| e.cidr == "10.0.1.5/32"));
    }

    #[test]
    fn own_address_denies_come_first_when_a_shared_acl_is_short_of_room() {
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg"],
            "10.0.1.5",
            None,
        )]);
        let shared = [default_acl("acl-default", &["subnet-a", "subnet-b"])];
        let plan = plan_denies(
            &record,
            &remote("198.51.100.7 198.51.100.8"),
            &shared,
            &[],
            &NaclSettings::default(),
            LeftOpen::default(),
        );
        assert_eq!(plan.wanted[0].cidr, "10.0.1.5/32");
        assert_eq!(plan.wanted[1].cidr, "10.0.1.5/32");
        // With room for one rule per direction, it is the instance's own address that gets it.
        let ec2 = FakeEc2::standard();
        ec2.with(|s| {
            let acl = s.acls.get_mut("acl-a").unwrap();
            acl.subnet_ids.push("subnet-b".into());
        });
        let tight = NaclSettings {
            rule_quota: 3,
            ..NaclSettings::default()
        };
        let report = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &tight,
            &crate::seal::Unsealed,
        ));
        let in_acl_a: Vec<&str> = report
            .nacl_entries
            .iter()
            .filter(|e| e.acl_id == "acl-a")
            .map(|e| e.cidr.as_str())
            .collect();
        assert_eq!(in_acl_a, ["10.0.1.5/32", "10.0.1.5/32"], "{report:?}");
    }

    #[test]
    fn the_quota_is_counted_per_address_family() {
        let settings = NaclSettings::default();
        let mut entries: Vec<AclEntry> = (101..119)
            .map(|n| entry(n, false, RuleAction::Allow))
            .collect();
        entries.push(entry(32767, false, RuleAction::Deny));
        // IPv4 inbound is at 19 of 20; IPv6 inbound is empty: three IPv6 denies fit.
        let (numbers, shortfall) =
            allocate_rule_numbers("acl-d", &entries, false, true, &settings, 3);
        assert_eq!((numbers, shortfall), (vec![1, 2, 3], None));
        let (numbers, shortfall) =
            allocate_rule_numbers("acl-d", &entries, false, false, &settings, 3);
        assert_eq!(numbers, [1]);
        assert!(shortfall.unwrap().to_string().contains("inbound IPv4"));
    }

    #[test]
    fn the_acls_of_a_vpc_shared_by_another_account_are_not_possible_and_untouched() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| s.vpcs.get_mut("vpc-1").unwrap().owner_id = "999988887777".into());
        let mut eni = interface("eni-1", "subnet-a", &["sg-app"], "10.0.1.5", None);
        eni.owner_id = crate::fake::OWN_ACCOUNT.into();
        let record = record(vec![eni]);
        let before = (ec2.acl_entries("acl-a"), ec2.acl_entries("acl-b"));
        let report = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &NaclSettings::default(),
            &crate::seal::Unsealed,
        ));
        assert_eq!(report.status, StepStatus::NotPossible);
        assert!(report.errors.is_empty());
        assert!(
            report.not_possible[0].contains("999988887777"),
            "{:?}",
            report.not_possible
        );
        assert_eq!((ec2.acl_entries("acl-a"), ec2.acl_entries("acl-b")), before);
    }

    #[test]
    fn an_address_in_a_shared_vpc_the_instance_is_also_in_is_not_denied_elsewhere() {
        let ec2 = FakeEc2::standard();
        // A second interface in a VPC shared by another account, on public-range blocks.
        ec2.with(|s| {
            s.vpcs.insert(
                "vpc-2".into(),
                crate::ec2::Vpc {
                    id: "vpc-2".into(),
                    owner_id: "999988887777".into(),
                    cidrs: vec!["198.51.100.0/24".into()],
                },
            )
        });
        let mut own = interface("eni-1", "subnet-a", &["sg-app"], "10.0.1.5", None);
        own.owner_id = crate::fake::OWN_ACCOUNT.into();
        let mut shared = interface("eni-2", "subnet-s", &["sg-app"], "198.51.100.20", None);
        shared.vpc_id = "vpc-2".into();
        shared.owner_id = crate::fake::OWN_ACCOUNT.into();
        let record = record(vec![own, shared]);
        let report = block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &NaclSettings::default(),
            &crate::seal::Unsealed,
        ));
        assert!(
            report
                .nacl_entries
                .iter()
                .all(|e| e.cidr != "198.51.100.7/32"),
            "{report:?}"
        );
        assert!(
            report.remote_not_denied[0].reason.contains("VPC"),
            "{:?}",
            report.remote_not_denied
        );
        assert!(report.not_possible[0].contains("vpc-2"), "{report:?}");
    }

    #[test]
    fn delegated_prefixes_are_denied_on_the_other_subnets_as_prefixes() {
        let mut eni = interface("eni-1", "subnet-a", &["sg"], "10.0.1.5", None);
        eni.ipv4_prefixes = vec!["10.0.1.32/28".into()];
        eni.ipv6_prefixes = vec!["2001:db8:1:0:1::/80".into()];
        let record = record(vec![eni]);
        let acls = [default_acl("acl-b", &["subnet-b"])];
        let plan = plan_denies(
            &record,
            &[],
            &acls,
            &[],
            &NaclSettings::default(),
            LeftOpen::default(),
        );
        let cidrs: BTreeSet<&str> = plan.wanted.iter().map(|w| w.cidr.as_str()).collect();
        assert_eq!(
            cidrs,
            BTreeSet::from(["10.0.1.5/32", "10.0.1.32/28", "2001:db8:1:0:1::/80"])
        );
    }

    #[test]
    fn each_run_keeps_its_own_record_and_restore_reads_them_all() {
        let ec2 = FakeEc2::standard();
        let record = record(vec![interface(
            "eni-1",
            "subnet-a",
            &["sg-app"],
            "10.0.1.5",
            None,
        )]);
        let untouched = ec2.acl_entries("acl-a");
        block_on(block(
            &ec2,
            &record,
            &remote("198.51.100.7"),
            &NaclSettings::default(),
            &crate::seal::Unsealed,
        ));
        // A second containment (another capture) with another remote address: its own record
        // beside the first.
        let later = CapturedState {
            captured_at: "2026-11-29T15:00:00.000Z".into(),
            ..record.clone()
        };
        block_on(block(
            &ec2,
            &later,
            &remote("198.51.100.9"),
            &NaclSettings::default(),
            &crate::seal::Unsealed,
        ));
        let acl = block_on(ec2.network_acl("acl-a")).unwrap();
        assert_eq!(
            crate::record::acl_record_prefixes("i-00000001", &acl.tags).len(),
            2
        );
        assert_eq!(recorded_entries(&acl, "i-00000001").unwrap().len(), 4);
        block_on(crate::restore::restore(
            &ec2,
            "i-00000001",
            crate::restore::RecordSource::unverified_tags(),
            &[],
        ))
        .unwrap();
        assert_eq!(ec2.acl_entries("acl-a"), untouched);
        let acl = block_on(ec2.network_acl("acl-a")).unwrap();
        assert!(acl.tags.is_empty(), "{:?}", acl.tags);
    }
}
