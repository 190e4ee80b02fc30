//! Isolation by security groups, per network interface: first the conversion group (all
//! traffic both ways, so tracked connections become untracked), then the isolation group (no
//! egress; ingress only from the forensic source). Replacing groups alone would leave tracked
//! connections, a reverse shell among them, alive.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::capture::Seen;
use crate::config::ForensicSource;
use crate::ec2::{
    ConnTrack, Direction, Ec2, GroupRole, NetworkInterface, Peer, SecurityGroup, SgRule,
};
use crate::error::{CordonError, Result, StepError};
use crate::net::is_ipv6_cidr;
use crate::record::CapturedState;

/// Cordon's two groups in one VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CordonGroups {
    pub conversion: String,
    pub isolation: String,
}

/// Who may still reach an isolated instance, and what it may still reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access<'a> {
    /// Who may reach it: the isolation group's only ingress.
    pub forensic: Option<&'a ForensicSource>,
    /// Whether it may reach its VPC's Session Manager endpoints ([`crate::session`]).
    pub session_manager: bool,
}

impl Access<'_> {
    /// Whether `rule`, on a group of `role`, is left to the Session Manager step that follows
    /// the swaps: with the feature on, an isolation group's HTTPS rules to single addresses
    /// are that step's to check against the endpoints, not the first move's to revoke.
    pub fn leaves_to_sessions(&self, role: GroupRole, rule: &SgRule) -> bool {
        self.session_manager
            && role == GroupRole::Isolation
            && crate::session::is_session_rule(rule)
    }
}

/// The rules a Cordon group must hold, (ingress, egress).
pub fn desired_rules(
    role: GroupRole,
    forensic: Option<&ForensicSource>,
) -> (Vec<SgRule>, Vec<SgRule>) {
    match role {
        GroupRole::Conversion => {
            let everywhere = vec![
                SgRule::all_traffic(Peer::Ipv4("0.0.0.0/0".into())),
                SgRule::all_traffic(Peer::Ipv6("::/0".into())),
            ];
            (everywhere.clone(), everywhere)
        }
        GroupRole::Isolation => {
            let ingress = match forensic {
                Some(ForensicSource::Cidr(cidr)) if is_ipv6_cidr(cidr) => {
                    vec![SgRule::all_traffic(Peer::Ipv6(cidr.clone()))]
                }
                Some(ForensicSource::Cidr(cidr)) => {
                    vec![SgRule::all_traffic(Peer::Ipv4(cidr.clone()))]
                }
                Some(ForensicSource::SecurityGroup(group)) => {
                    vec![SgRule::all_traffic(Peer::Group(group.clone()))]
                }
                None => Vec::new(),
            };
            (ingress, Vec::new())
        }
    }
}

/// What to revoke and what to authorize so that `actual` becomes `desired`.
pub fn rule_changes(actual: &[SgRule], desired: &[SgRule]) -> (Vec<SgRule>, Vec<SgRule>) {
    let revoke = actual
        .iter()
        .filter(|r| !desired.contains(r))
        .cloned()
        .collect();
    let authorize = desired
        .iter()
        .filter(|r| !actual.contains(r))
        .cloned()
        .collect();
    (revoke, authorize)
}

/// Finds (by tag and VPC, since group names are only unique per VPC) or creates each VPC's
/// conversion and isolation groups, and puts their rules right: someone may have added an
/// egress rule to the isolation group since it was made.
/// `seen` is the Cordon groups of those VPCs when the caller has just read them.
pub async fn ensure_groups(
    ec2: &impl Ec2,
    vpc_ids: &[String],
    access: Access<'_>,
    seen: Option<Vec<SecurityGroup>>,
) -> Result<BTreeMap<String, CordonGroups>> {
    Ok(ensure_groups_noting(ec2, vpc_ids, access, seen, &[])
        .await?
        .groups)
}

/// Cordon's groups of some VPCs, and which of them were just made (by this step, or by
/// another execution that won the race to make one): EC2 may not show those everywhere yet.
#[derive(Debug, Clone, Default)]
struct Ensured {
    groups: BTreeMap<String, CordonGroups>,
    new: BTreeSet<String>,
}

/// [`ensure_groups`], saying which groups are new. `gone` are groups EC2 has answered do not
/// exist: a read that still lists them (reads lag behind a delete) is not believed.
async fn ensure_groups_noting(
    ec2: &impl Ec2,
    vpc_ids: &[String],
    access: Access<'_>,
    seen: Option<Vec<SecurityGroup>>,
    gone: &[String],
) -> Result<Ensured> {
    let known = match seen {
        Some(groups) => groups,
        None => ec2.cordon_groups(vpc_ids).await?,
    };
    let mut ensured = Ensured::default();
    for vpc_id in vpc_ids {
        // The two groups do not depend on each other: on first use in a VPC, both are made
        // (and given their rules) at the same time.
        let (conversion, isolation) = tokio::join!(
            ensure_group(ec2, &known, vpc_id, GroupRole::Conversion, access, gone),
            ensure_group(ec2, &known, vpc_id, GroupRole::Isolation, access, gone)
        );
        let ((conversion, conversion_new), (isolation, isolation_new)) = (conversion?, isolation?);
        for (id, new) in [(&conversion, conversion_new), (&isolation, isolation_new)] {
            if new {
                ensured.new.insert(id.clone());
            }
        }
        ensured.groups.insert(
            vpc_id.clone(),
            CordonGroups {
                conversion,
                isolation,
            },
        );
    }
    Ok(ensured)
}

/// 8 hex digits that are hard to guess ahead: the clock's nanoseconds, this process and the
/// VPC, hashed. A name taken by someone else's group is then taken again only by chance, and
/// a name taken anyway is a refused create, which the retried step meets with another suffix.
fn name_suffix(vpc_id: &str) -> String {
    use sha2::Digest;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let digest = sha2::Sha256::digest(format!("{nanos}/{}/{vpc_id}", std::process::id()));
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// How many times a group is looked for again when it is deleted while its rules are set (the
/// conversion group, by the clean-up of a containment that just ended).
const ENSURE_ROUNDS: usize = 3;

/// The id of the VPC's group for `role`, found among `known` (but not among `gone`) or
/// created, with its rules right; and whether it is new.
async fn ensure_group(
    ec2: &impl Ec2,
    known: &[SecurityGroup],
    vpc_id: &str,
    role: GroupRole,
    access: Access<'_>,
    gone: &[String],
) -> Result<(String, bool)> {
    let mut known = known.to_vec();
    let mut gone = gone.to_vec();
    let mut round = 1;
    loop {
        known.retain(|group| !gone.contains(&group.id));
        let (group, new) = match find_group(&known, vpc_id, role) {
            Some(group) => (group, false),
            None => match ec2.create_cordon_group(vpc_id, role, None).await {
                Ok(group) => (group, true),
                // Another execution created it between our read and our create.
                Err(CordonError::GroupDuplicate { group_name, .. }) => {
                    match winning_group(ec2, vpc_id, role, &group_name, &gone).await {
                        Ok(group) => (group, true),
                        // Someone else's group holds the name. The conversion group is made
                        // and deleted at each containment, so its name is free between uses
                        // and anyone who may create a group in the VPC could take it to make
                        // every containment there fail: it is made under a name of its own.
                        Err(CordonError::InvalidConfiguration(_))
                            if role == GroupRole::Conversion =>
                        {
                            let suffix = name_suffix(vpc_id);
                            (
                                ec2.create_cordon_group(vpc_id, role, Some(&suffix)).await?,
                                true,
                            )
                        }
                        Err(other) => return Err(other),
                    }
                }
                Err(other) => return Err(other),
            },
        };
        match reconcile_rules(ec2, &group, role, access).await {
            // A group read, not just made, deleted while its rules were set: it is looked
            // for, or made, again.
            Err(error) if is_group_not_found(&error) && !new && round < ENSURE_ROUNDS => {
                round += 1;
                gone.push(group.id.clone());
                known = ec2
                    .cordon_groups(std::slice::from_ref(&vpc_id.to_string()))
                    .await?;
            }
            // A group just made that EC2 does not list yet, or one deleted again and again:
            // the state machine retries the step, which reads the VPC's groups afresh.
            Err(error) if is_group_not_found(&error) => {
                return Err(CordonError::Unavailable {
                    operation: "DescribeSecurityGroups".into(),
                    message: format!(
                        "the {} group {} of {vpc_id} was not found while its rules were set ({error}); the step is retried",
                        role.tag_value(),
                        group.id
                    ),
                })
            }
            Err(error) => return Err(error),
            Ok(()) => return Ok((group.id, new)),
        }
    }
}

/// How long Cordon waits, in steps, for EC2 to show a group that was just created. EC2 is
/// eventually consistent (its API reference says so for `CreateSecurityGroup`): for a few
/// seconds after a create, calls that name the group may answer `InvalidGroup.NotFound` and
/// reads may not list it. 6.2 s in all; the state machine's retries take over after that.
pub const CONSISTENCY_PAUSES_MS: [u64; 5] = [200, 400, 800, 1_600, 3_200];

fn is_group_not_found(error: &CordonError) -> bool {
    matches!(error, CordonError::Ec2 { code, .. } if code == "InvalidGroup.NotFound")
}

fn not_yet_consistent(operation: &str, what: &str) -> CordonError {
    let waited: u64 = CONSISTENCY_PAUSES_MS.iter().sum();
    CordonError::Unavailable {
        operation: operation.into(),
        message: format!(
            "{what} still not visible to EC2 after {:.1} s (EC2 is eventually consistent after a create); the step is retried",
            waited as f64 / 1000.0
        ),
    }
}

/// Runs `call` again, after each of [`CONSISTENCY_PAUSES_MS`], while EC2 answers that the
/// group `group_id` does not exist; then gives up as `Cordon.Unavailable`, which retries.
pub(crate) async fn while_group_unseen<T, F, Fut>(
    ec2: &impl Ec2,
    operation: &str,
    group_id: &str,
    mut call: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    for pause in CONSISTENCY_PAUSES_MS {
        match call().await {
            Err(error) if is_group_not_found(&error) && ec2.has_time_for(2) => {
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await
            }
            Err(error) if is_group_not_found(&error) => break,
            other => return other,
        }
    }
    Err(not_yet_consistent(
        operation,
        &format!("security group {group_id}"),
    ))
}

/// The group another execution created under our name. Until EC2 shows it, it is waited for;
/// a group of that name without Cordon's role tag is someone else's, which only the operator
/// can sort out.
async fn winning_group(
    ec2: &impl Ec2,
    vpc_id: &str,
    role: GroupRole,
    group_name: &str,
    gone: &[String],
) -> Result<SecurityGroup> {
    for pause in CONSISTENCY_PAUSES_MS
        .iter()
        .copied()
        .map(Some)
        .chain([None])
    {
        // A group EC2 has said is gone, which a lagging read still lists, is not it.
        let named = ec2.group_named(vpc_id, group_name).await?;
        match named.filter(|group| !gone.contains(&group.id)) {
            Some(group) if group.role == Some(role) => return Ok(group),
            Some(group) => {
                return Err(CordonError::InvalidConfiguration(format!(
                    "{vpc_id} has a security group named {group_name} ({}) without the tag {}={}; tag it or delete it so Cordon can use its own",
                    group.id,
                    GroupRole::TAG_KEY,
                    role.tag_value()
                )))
            }
            None => match pause {
                Some(ms) if ec2.has_time_for(2) => {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await
                }
                _ => break,
            },
        }
    }
    Err(not_yet_consistent(
        "DescribeSecurityGroups",
        &format!("the security group {group_name} that EC2 says exists in {vpc_id}"),
    ))
}

/// The group under the plain name first (a suffixed one is made only while someone else's
/// group holds that name), then the lowest id, when two executions raced and both made one.
fn find_group(groups: &[SecurityGroup], vpc_id: &str, role: GroupRole) -> Option<SecurityGroup> {
    let plain = role.group_name(vpc_id);
    groups
        .iter()
        // By the name Cordon gives it too: anyone who may tag a group could tag an
        // application's as Cordon's, and Cordon would set its rules.
        .filter(|g| g.vpc_id == vpc_id && g.role == Some(role))
        .filter(|g| g.named_as_cordons())
        .min_by_key(|g| (g.name != plain, g.id.clone()))
        .cloned()
}

/// How many times the rules are read again after a change lost a race; each round can only
/// lose to a change that moved the group towards the same rules.
const RECONCILE_ROUNDS: usize = 3;

/// Puts the group's rules right. Executions that find a group new all do this at once (and
/// a lost answer makes our own earlier change look like someone else's): EC2 then refuses an
/// authorize as `InvalidPermission.Duplicate` or a revoke as `InvalidPermission.NotFound`,
/// and the group is read again and compared again, since those refusals change nothing.
async fn reconcile_rules(
    ec2: &impl Ec2,
    group: &SecurityGroup,
    role: GroupRole,
    access: Access<'_>,
) -> Result<()> {
    let (ingress, egress) = desired_rules(role, access.forensic);
    let kept = |rule: &SgRule| access.leaves_to_sessions(role, rule);
    let mut group = group.clone();
    let mut round = 1;
    loop {
        match change_rules(ec2, &group, &ingress, &egress, kept).await {
            Err(CordonError::Ec2 { code, .. })
                if round < RECONCILE_ROUNDS
                    && matches!(
                        code.as_str(),
                        "InvalidPermission.Duplicate" | "InvalidPermission.NotFound"
                    ) =>
            {
                round += 1;
                group = ec2
                    .cordon_groups(std::slice::from_ref(&group.vpc_id))
                    .await?
                    .into_iter()
                    .find(|g| g.id == group.id)
                    .ok_or_else(|| CordonError::Ec2 {
                        operation: "DescribeSecurityGroups".into(),
                        code: "InvalidGroup.NotFound".into(),
                        message: format!("{} was deleted while Cordon set its rules", group.id),
                    })?;
            }
            done => return done,
        }
    }
}

/// Makes the group's rules `ingress` and `egress`, leaving alone the egress rules `kept` keeps.
/// The two directions do not depend on each other, and go at the same time: a new group's
/// rules cost one round trip, which every containment in a VPC without one waits on (each
/// conversion group is deleted after use, see [`crate::cleanup::retire_conversion_group`]).
async fn change_rules(
    ec2: &impl Ec2,
    group: &SecurityGroup,
    ingress: &[SgRule],
    egress: &[SgRule],
    kept: impl Fn(&SgRule) -> bool,
) -> Result<()> {
    let (ingress, egress) = tokio::join!(
        change_direction(
            ec2,
            &group.id,
            Direction::Ingress,
            &group.ingress,
            ingress,
            |_| false
        ),
        change_direction(
            ec2,
            &group.id,
            Direction::Egress,
            &group.egress,
            egress,
            kept
        ),
    );
    ingress.and(egress)
}

/// One direction of [`change_rules`]: the revoke, then the authorize.
async fn change_direction(
    ec2: &impl Ec2,
    group_id: &str,
    direction: Direction,
    actual: &[SgRule],
    desired: &[SgRule],
    kept: impl Fn(&SgRule) -> bool,
) -> Result<()> {
    let (mut revoke, authorize) = rule_changes(actual, desired);
    revoke.retain(|rule| !kept(rule));
    if !revoke.is_empty() {
        while_group_unseen(ec2, "RevokeSecurityGroup", group_id, || {
            ec2.revoke(group_id, direction, &revoke)
        })
        .await?;
    }
    if !authorize.is_empty() {
        while_group_unseen(ec2, "AuthorizeSecurityGroup", group_id, || {
            ec2.authorize(group_id, direction, &authorize)
        })
        .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Everything asked for was done.
    Done,
    /// Some of it was done; `errors` says what was not.
    Partial,
    /// None of it may be done by this account (the network ACLs of a shared VPC).
    NotPossible,
    /// Report-only mode: nothing was done; the report says what would have been.
    ReportOnly,
}

/// What is true of one interface after the isolation step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterfaceOutcome {
    /// Moved to the isolation group now.
    #[default]
    Isolated,
    /// Found on the isolation group and left alone (a retried or repeated isolation).
    AlreadyIsolated,
    /// A swap failed in a way that may have left the interface on the conversion group (the
    /// isolation swap refused, or a conversion whose answer was lost): it is back on its
    /// original groups, as open as before Cordon and no more.
    RolledBack,
    /// The conversion swap was not made (EC2 throttled it, or its group could not be made
    /// again after a containment's clean-up deleted it): the interface is on its own groups
    /// as before, and the step is retried when the cause is transient.
    NotBegun,
    /// Neither isolation nor the way back could be made: `groups_now` says where it is.
    LeftOn,
    /// An interface Cordon cannot contain by its groups (a trunk, or managed by a service).
    NotContainable,
    /// The interface is no longer attached to the instance.
    Gone,
}

impl InterfaceOutcome {
    pub fn is_isolated(self) -> bool {
        matches!(self, Self::Isolated | Self::AlreadyIsolated)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceIsolation {
    pub eni_id: String,
    #[serde(default)]
    pub outcome: InterfaceOutcome,
    pub original_groups: Vec<String>,
    pub groups_now: Vec<String>,
    /// Why it is not isolated, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<StepError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationReport {
    pub instance_id: String,
    pub status: StepStatus,
    pub enis: Vec<InterfaceIsolation>,
    pub groups: BTreeMap<String, CordonGroups>,
    pub termination_protection: bool,
    pub errors: Vec<StepError>,
    /// What was left as it is on purpose, and why (a Spot Instance's termination protection).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl IsolationReport {
    /// One line per interface that says what is true of it.
    pub fn interface_lines(&self) -> Vec<String> {
        self.enis.iter().map(InterfaceIsolation::line).collect()
    }
}

impl InterfaceIsolation {
    pub fn line(&self) -> String {
        let groups = |g: &[String]| {
            if g.is_empty() {
                "(none)".to_string()
            } else {
                g.join(", ")
            }
        };
        let cause = self
            .cause
            .as_ref()
            .map(|c| format!(" ({}: {})", c.error, c.cause))
            .unwrap_or_default();
        match self.outcome {
            InterfaceOutcome::Isolated => format!(
                "{}: isolated, security groups {} -> {}",
                self.eni_id,
                groups(&self.original_groups),
                groups(&self.groups_now)
            ),
            InterfaceOutcome::AlreadyIsolated => format!(
                "{}: already isolated on {}",
                self.eni_id,
                groups(&self.groups_now)
            ),
            InterfaceOutcome::RolledBack => format!(
                "{}: NOT isolated, put back on its original groups {}{cause}",
                self.eni_id,
                groups(&self.groups_now)
            ),
            InterfaceOutcome::NotBegun => format!(
                "{}: NOT isolated yet, still on its own groups {}: its first swap was not made{cause}",
                self.eni_id,
                groups(&self.groups_now)
            ),
            InterfaceOutcome::LeftOn if self.groups_now.is_empty() => format!(
                "{}: NOT isolated, and its groups could not be read back{cause}",
                self.eni_id
            ),
            InterfaceOutcome::LeftOn => format!(
                "{}: NOT isolated, left on {}{cause}",
                self.eni_id,
                groups(&self.groups_now)
            ),
            InterfaceOutcome::NotContainable => format!(
                "{}: NOT contained, groups left as they are ({}){cause}",
                self.eni_id,
                groups(&self.groups_now)
            ),
            InterfaceOutcome::Gone => format!("{}: gone from the instance{cause}", self.eni_id),
        }
    }
}

/// Swaps every interface of the recorded instance to isolation. Fails only when nothing was
/// changed (the groups could not be set up); later failures are kept in the report.
pub async fn isolate(
    ec2: &impl Ec2,
    record: &CapturedState,
    access: Access<'_>,
) -> Result<IsolationReport> {
    isolate_seen(ec2, record, access, None).await
}

/// How many calls one interface's isolation may need, at worst: conversion, isolation, the
/// rollback, and a read of where the interface is if even that fails. (A throttled isolation
/// swap is tried again only while the deadline leaves room for it and the rollback.)
pub const CALLS_PER_INTERFACE: u32 = 4;

/// How often the isolation swap is made, each with the SDK's 5 attempts (their backoff is up to
/// 15 s, about 8 s on average), while EC2 throttles it and the interface waits on the
/// conversion group, which allows everything. Giving up costs a way back, a token of the same
/// bucket, and the conversion again later. In a burst the conversion swaps are made once each
/// while the isolation swaps press on, so the isolation swaps get most of the bucket but
/// queue behind one another. The function's deadline bounds the tries too (room for the way
/// back is kept).
pub const ISOLATION_SWAP_TRIES: u32 = 6;

/// What to do with one interface, from where it is now. An interface already on the isolation
/// group is left alone: swapping it back through conversion would reopen it for a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfacePlan {
    LeaveIsolated,
    /// Conversion first (tracked connections become untracked), then isolation.
    ConvertThenIsolate,
    /// Already on the conversion group (an isolation cut short): only the isolation swap.
    Isolate,
    NotContainable(String),
    Gone,
}

pub fn plan_interface(live: Option<&NetworkInterface>, groups: &CordonGroups) -> InterfacePlan {
    let Some(live) = live else {
        return InterfacePlan::Gone;
    };
    if let Some(reason) = live.not_containable() {
        return InterfacePlan::NotContainable(reason);
    }
    if live.groups == [groups.isolation.clone()] {
        InterfacePlan::LeaveIsolated
    } else if live.groups == [groups.conversion.clone()] {
        InterfacePlan::Isolate
    } else {
        InterfacePlan::ConvertThenIsolate
    }
}

/// The groups an interface goes back to when it cannot be isolated: its recorded originals,
/// never a Cordon group (None when the record holds nothing else to go back to).
pub fn rollback_groups(recorded: &[String], groups: &CordonGroups) -> Option<Vec<String>> {
    let originals: Vec<String> = recorded
        .iter()
        .filter(|g| **g != groups.conversion && **g != groups.isolation)
        .cloned()
        .collect();
    (!originals.is_empty()).then_some(originals)
}

/// What [`isolate_seen`] would do, in report-only mode: the same reads and the same plan per
/// interface, reported as notes; no write. A VPC without Cordon's groups would get them.
pub async fn plan_isolation(
    ec2: &impl Ec2,
    record: &CapturedState,
    access: Access<'_>,
) -> Result<IsolationReport> {
    let vpc_ids = record.vpc_ids();
    let (known, instance) = tokio::join!(
        ec2.cordon_groups(&vpc_ids),
        ec2.describe_instance(&record.instance_id)
    );
    let (known, instance) = (known?, instance?);
    let mut notes = Vec::new();
    let mut errors = Vec::new();
    let mut groups = BTreeMap::new();
    for vpc_id in &vpc_ids {
        let mut id_of = |role: GroupRole| match find_group(&known, vpc_id, role) {
            Some(group) => {
                // Someone changed Cordon's group since it was made: a containment puts its
                // rules right first, and a first rollout is where that should come to light.
                let (ingress, egress) = desired_rules(role, access.forensic);
                let (revoke_in, add_in) = rule_changes(&group.ingress, &ingress);
                let (mut revoke_out, add_out) = rule_changes(&group.egress, &egress);
                revoke_out.retain(|rule| !access.leaves_to_sessions(role, rule));
                let (revoke, add) = (
                    revoke_in.len() + revoke_out.len(),
                    add_in.len() + add_out.len(),
                );
                if revoke + add > 0 {
                    notes.push(format!(
                        "would put the rules of {} ({}) right: {revoke} to revoke, {add} to add (someone changed them)",
                        group.id, group.name
                    ));
                }
                group.id
            }
            None => {
                let name = role.group_name(vpc_id);
                notes.push(format!(
                    "would create the security group {name} in {vpc_id} ({})",
                    role.description()
                ));
                name
            }
        };
        let (conversion, isolation) = (id_of(GroupRole::Conversion), id_of(GroupRole::Isolation));
        groups.insert(
            vpc_id.clone(),
            CordonGroups {
                conversion,
                isolation,
            },
        );
    }
    if let Some(forensic) = access.forensic {
        notes.push(format!(
            "the isolation group would admit the forensic source {} (all protocols)",
            match forensic {
                ForensicSource::Cidr(cidr) => cidr.clone(),
                ForensicSource::SecurityGroup(group) => group.clone(),
            }
        ));
    }
    for recorded in &record.interfaces {
        let cordon = &groups[&recorded.vpc_id];
        let live = instance.interfaces.iter().find(|i| i.id == recorded.id);
        let now = live.map(|l| l.groups.join(", ")).unwrap_or_default();
        let line = match plan_interface(live, cordon) {
            InterfacePlan::ConvertThenIsolate => format!(
                "{}: would move from {now} to the isolation group {} (through the conversion group {}, so that tracked connections are cut)",
                recorded.id, cordon.isolation, cordon.conversion
            ),
            InterfacePlan::Isolate => format!(
                "{}: on the conversion group {}; would move to the isolation group {}",
                recorded.id, cordon.conversion, cordon.isolation
            ),
            InterfacePlan::LeaveIsolated => {
                format!("{}: already on the isolation group; would be left", recorded.id)
            }
            // What a containment would fail at is a failure of the plan too.
            InterfacePlan::NotContainable(reason) => {
                errors.push(StepError {
                    error: "Cordon.NotContainable".into(),
                    cause: format!("{}: could not be isolated by its groups: {reason}", recorded.id),
                });
                continue;
            }
            InterfacePlan::Gone => {
                notes.push(format!(
                    "{}: no longer attached to the instance; nothing to do",
                    recorded.id
                ));
                continue;
            }
        };
        notes.push(line);
        let lowered =
            live.and_then(|l| l.conntrack).map(ConnTrack::effective) == Some(ConnTrack::ISOLATED);
        if !lowered {
            notes.push(format!(
                "{}: would lower its connection tracking timeouts, so that connections the isolation group still tracks end soon",
                recorded.id
            ));
        }
    }
    if !record.termination_protection {
        notes.push(if instance.is_spot() {
            "a Spot Instance: termination protection would stay off (it cannot be on)".into()
        } else {
            "would turn termination protection on".into()
        });
    }
    if record.shutdown_behavior.as_deref() == Some("terminate") {
        notes.push("would set the shutdown behaviour from terminate to stop".into());
    }
    if access.session_manager {
        for vpc_id in &vpc_ids {
            notes.push(match ec2.session_endpoints(vpc_id).await {
                Ok(endpoints) => format!(
                    "after the swaps, would give the isolation group these rules: {}",
                    crate::session::note(vpc_id, &endpoints)
                ),
                Err(error) => format!(
                    "Session Manager: {vpc_id}'s endpoints could not be read ({error}); a containment would leave the isolation group without their rules"
                ),
            });
        }
    }
    Ok(IsolationReport {
        instance_id: record.instance_id.clone(),
        status: StepStatus::ReportOnly,
        enis: Vec::new(),
        groups,
        termination_protection: record.termination_protection,
        errors,
        notes,
    })
}

/// [`isolate`] with the Cordon groups of the record's VPCs and the instance as the caller has
/// just read them (the capture in the same process): no read before the swaps.
pub async fn isolate_seen(
    ec2: &impl Ec2,
    record: &CapturedState,
    access: Access<'_>,
    seen: Option<Seen>,
) -> Result<IsolationReport> {
    // Where each interface is now, read while the groups are made sure of: a retried step
    // must not swap an isolated interface back through conversion.
    let vpc_ids = record.vpc_ids();
    let (ensured, instance) = match seen {
        Some(Seen {
            groups,
            instance: Some(instance),
        }) => (
            ensure_groups_noting(ec2, &vpc_ids, access, Some(groups), &[]).await,
            Ok(instance),
        ),
        seen => {
            tokio::join!(
                ensure_groups_noting(ec2, &vpc_ids, access, seen.map(|s| s.groups), &[]),
                ec2.describe_instance(&record.instance_id)
            )
        }
    };
    let (
        Ensured {
            mut groups,
            mut new,
        },
        instance,
    ) = (ensured?, instance?);
    let mut errors: Vec<StepError> = Vec::new();
    let mut enis = Vec::new();
    let mut notes = Vec::new();
    for recorded in &record.interfaces {
        let live = instance.interfaces.iter().find(|i| i.id == recorded.id);
        let plan = plan_interface(live, &groups[&recorded.vpc_id]);
        let needs_swaps = matches!(
            plan,
            InterfacePlan::ConvertThenIsolate | InterfacePlan::Isolate
        );
        if needs_swaps && !ec2.has_time_for(CALLS_PER_INTERFACE) {
            // Every interface so far is isolated or back where it was; none is cut in two.
            // The retried step goes on from here.
            return Err(out_of_time(
                &format!("isolate {} safely", recorded.id),
                &enis,
            ));
        }
        let (instance_id, cordon) = (&record.instance_id, &groups[&recorded.vpc_id]);
        // A group read, not just made, that EC2 says does not exist was deleted since.
        let unseen = if new.contains(&cordon.conversion) {
            Unseen::NotYetShown
        } else {
            Unseen::Gone
        };
        let attempt = isolate_interface(ec2, instance_id, recorded, live, cordon, plan, unseen);
        let line = match attempt.await {
            Ok(line) => line,
            Err(ConversionGone) => {
                // Deleted after this step read it, by the clean-up of a containment that
                // ended in between: the interface is still on its own groups. The VPC's
                // groups are read again (and the conversion group made again), and the
                // interface begins again.
                if !ec2.has_time_for(CALLS_PER_INTERFACE + 4) {
                    return Err(out_of_time(
                        &format!("make {}'s conversion group again", recorded.vpc_id),
                        &enis,
                    ));
                }
                let vpc = std::slice::from_ref(&recorded.vpc_id);
                let gone = [cordon.conversion.clone()];
                match ensure_groups_noting(ec2, vpc, access, None, &gone).await {
                    Ok(again) => {
                        groups.extend(again.groups);
                        new.extend(again.new);
                        let cordon = &groups[&recorded.vpc_id];
                        let plan = plan_interface(live, cordon);
                        let patient = Unseen::NotYetShown;
                        isolate_interface(ec2, instance_id, recorded, live, cordon, plan, patient)
                            .await
                            // A waited-for swap does not answer gone (it waits, then gives
                            // up as Cordon.Unavailable); were it to, the step is retried.
                            .unwrap_or_else(|ConversionGone| {
                                let cause = CordonError::Unavailable {
                                    operation: "ModifyNetworkInterfaceAttribute".into(),
                                    message: format!(
                                        "the conversion group {} was deleted before the swap; the retried step makes it again",
                                        gone[0]
                                    ),
                                };
                                not_begun(recorded, live, &cause)
                            })
                    }
                    // Not begun: the interface is on its own groups, and the step goes on
                    // to the next interface and the hardening of those isolated.
                    Err(error) => not_begun(recorded, live, &error),
                }
            }
        };
        errors.extend(line.cause.clone());
        enis.push(line);
    }
    let mut termination_protection = record.termination_protection;
    if !termination_protection {
        if instance.is_spot() {
            notes.push(format!(
                "{} is a Spot Instance, which cannot have termination protection; it was not turned on",
                record.instance_id
            ));
        } else {
            in_time(ec2, "turn on termination protection", &enis)?;
            match ec2
                .set_termination_protection(&record.instance_id, true)
                .await
            {
                Ok(()) => termination_protection = true,
                Err(error) => errors.push(error.to_report()),
            }
        }
    }
    if record.shutdown_behavior.as_deref() == Some("terminate") {
        // A root shell's `shutdown` would otherwise destroy the instance and the evidence.
        in_time(ec2, "set the shutdown behaviour to stop", &enis)?;
        if let Err(error) = ec2.set_shutdown_behavior(&record.instance_id, "stop").await {
            errors.push(error.to_report());
        }
    }
    for (line, recorded) in enis.iter().zip(&record.interfaces) {
        let live = instance.interfaces.iter().find(|i| i.id == recorded.id);
        let lowered =
            live.and_then(|l| l.conntrack).map(ConnTrack::effective) == Some(ConnTrack::ISOLATED);
        if line.outcome.is_isolated() && !lowered {
            in_time(
                ec2,
                &format!("lower {}'s connection tracking", recorded.id),
                &enis,
            )?;
            if let Err(error) = ec2
                .set_connection_tracking(&recorded.id, &ConnTrack::ISOLATED)
                .await
            {
                errors.push(error.to_report());
            }
        }
    }
    if access.session_manager {
        // After the swaps and the hardening: the instance is isolated already, and a session
        // can wait for it.
        for (vpc_id, cordon) in &groups {
            if !ec2.has_time_for(crate::session::CALLS) {
                return Err(out_of_time(
                    "put the isolation group's Session Manager rules right",
                    &enis,
                ));
            }
            match crate::session::allow_sessions(ec2, vpc_id, &cordon.isolation).await {
                Ok(note) => notes.push(note),
                // Throttled, or a group EC2 does not show yet: the retried step, which leaves
                // the isolated interfaces alone, does this again.
                Err(error) if error.is_transient() => return Err(error),
                // A rule of their shape that should go may still be there.
                Err(error) => {
                    notes.push(format!(
                        "Session Manager: the isolation group of {vpc_id} could not be checked against its endpoints ({error}): a rule of HTTPS to one address that is not an endpoint's may remain"
                    ));
                    errors.push(error.to_report());
                }
            }
        }
    }
    // Off the interfaces' path: the conversion group goes once no interface is on it. A step
    // that will be retried leaves it to its retry: in a burst, steps whose conversion swaps
    // wait their turn would otherwise delete it and make it again at each attempt.
    let retried = retryable(&errors).is_some();
    for (vpc_id, cordon) in groups.iter().filter(|_| !retried) {
        if ec2.has_time_for(2) {
            // This step's own interfaces are off the group, whatever a lagging read says.
            let isolated: Vec<String> = enis
                .iter()
                .filter(|e| e.outcome.is_isolated())
                .map(|e| e.eni_id.clone())
                .collect();
            let retired =
                crate::cleanup::retire_conversion_group(ec2, vpc_id, &cordon.conversion, &isolated);
            notes.extend(retired.await);
        } else {
            notes.push(format!(
                "kept the conversion group {} of {vpc_id}, which allows all traffic both ways: the function's deadline was too close; the next containment or restore in the VPC deletes it",
                cordon.conversion
            ));
        }
    }
    Ok(IsolationReport {
        instance_id: record.instance_id.clone(),
        status: if errors.is_empty() && enis.iter().all(|e| e.outcome.is_isolated()) {
            StepStatus::Done
        } else {
            StepStatus::Partial
        },
        enis,
        groups,
        termination_protection,
        errors,
        notes,
    })
}

/// Fails, retryably, when one more call might not end before the function's deadline:
/// the hardening after the swaps is re-done by the retried step, which reads what is done.
fn in_time(ec2: &impl Ec2, work: &str, enis: &[InterfaceIsolation]) -> Result<()> {
    if ec2.has_time_for(1) {
        Ok(())
    } else {
        Err(out_of_time(work, enis))
    }
}

/// The retryable error of a step stopped before its deadline, with what is true so far.
fn out_of_time(work: &str, enis: &[InterfaceIsolation]) -> CordonError {
    let done: Vec<String> = enis.iter().map(InterfaceIsolation::line).collect();
    CordonError::Unavailable {
        operation: "isolate".into(),
        message: format!(
            "the function's deadline is too close to {work}; so far: {}",
            if done.is_empty() {
                "nothing changed".to_string()
            } else {
                done.join("; ")
            }
        ),
    }
}

/// The two swaps of an interface, which EC2 draws from one bucket (100, refilled at 5 a
/// second): in a burst the swaps that take interfaces off the conversion group go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swap {
    /// Onto the conversion group, so that tracked connections become untracked: made once
    /// ([`Ec2::try_interface_groups`]), as it may wait its turn.
    Conversion,
    /// Onto the isolation group: pressed, with the SDK's retries and tries of our own
    /// ([`Ec2::set_interface_groups`]), because the interface allows everything until it is
    /// made.
    Isolation,
}

/// What a conversion swap makes of EC2 answering that the conversion group does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unseen {
    /// The step read the group, and EC2 has shown it since it was made: it was deleted after
    /// the read, and the swap, refused, was not made ([`ConversionGone`]).
    Gone,
    /// The group was read again or made just now: EC2 may not show it everywhere yet, and it
    /// is waited for ([`while_group_unseen`]).
    NotYetShown,
}

/// The conversion swap was refused because the group is gone; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConversionGone;

/// The line of an interface whose conversion swap was not made for `cause`, after its group
/// was found deleted: it is on its own groups, as before.
fn not_begun(
    recorded: &NetworkInterface,
    live: Option<&NetworkInterface>,
    cause: &CordonError,
) -> InterfaceIsolation {
    InterfaceIsolation {
        eni_id: recorded.id.clone(),
        outcome: InterfaceOutcome::NotBegun,
        original_groups: recorded.groups.clone(),
        groups_now: live.map(|l| l.groups.clone()).unwrap_or_default(),
        cause: Some(cause.to_report()),
    }
}

/// Carries out one interface's plan. It ends isolated, or back on its recorded groups, or (if
/// even that fails) reported where it is: never silently on the conversion group, which
/// allows everything both ways. A conversion group found gone before anything was changed is
/// the caller's to make again.
async fn isolate_interface(
    ec2: &impl Ec2,
    instance_id: &str,
    recorded: &NetworkInterface,
    live: Option<&NetworkInterface>,
    cordon: &CordonGroups,
    plan: InterfacePlan,
    unseen: Unseen,
) -> std::result::Result<InterfaceIsolation, ConversionGone> {
    let line = |outcome, groups_now: Vec<String>, cause: Option<&CordonError>| InterfaceIsolation {
        eni_id: recorded.id.clone(),
        outcome,
        original_groups: recorded.groups.clone(),
        groups_now,
        cause: cause.map(CordonError::to_report),
    };
    let isolation = vec![cordon.isolation.clone()];
    let conversion = vec![cordon.conversion.clone()];
    let swaps: Vec<(Swap, &[String])> = match plan {
        InterfacePlan::LeaveIsolated => {
            return Ok(line(InterfaceOutcome::AlreadyIsolated, isolation, None))
        }
        InterfacePlan::Gone => {
            let gone = CordonError::InterfaceNotFound {
                eni_id: recorded.id.clone(),
            };
            return Ok(line(InterfaceOutcome::Gone, Vec::new(), Some(&gone)));
        }
        InterfacePlan::NotContainable(reason) => {
            let groups_now = live.map(|l| l.groups.clone()).unwrap_or_default();
            let why = CordonError::NotContainable(reason);
            return Ok(line(
                InterfaceOutcome::NotContainable,
                groups_now,
                Some(&why),
            ));
        }
        InterfacePlan::Isolate => vec![(Swap::Isolation, &isolation)],
        InterfacePlan::ConvertThenIsolate => vec![
            (Swap::Conversion, &conversion),
            (Swap::Isolation, &isolation),
        ],
    };
    let mut failure = None;
    for (swap, wanted) in swaps {
        let swap_to = || {
            while_group_unseen(
                ec2,
                "ModifyNetworkInterfaceAttribute",
                &wanted[0],
                || async {
                    match swap {
                        Swap::Conversion => ec2.try_interface_groups(&recorded.id, wanted).await,
                        Swap::Isolation => ec2.set_interface_groups(&recorded.id, wanted).await,
                    }
                },
            )
        };
        let mut made = match (swap, unseen) {
            (Swap::Conversion, Unseen::Gone) => {
                ec2.try_interface_groups(&recorded.id, wanted).await
            }
            _ => swap_to().await,
        };
        // The conversion swap is made once: throttled, it was not made, and the interface
        // waits its turn on its own groups (a way back would spend a token of the bucket
        // the swaps in progress wait on).
        if swap == Swap::Conversion {
            if unseen == Unseen::Gone && made.as_ref().is_err_and(is_group_not_found) {
                return Err(ConversionGone);
            }
            if let Err(error @ CordonError::Throttled { .. }) = &made {
                let groups_now = live.map(|l| l.groups.clone()).unwrap_or_default();
                return Ok(line(InterfaceOutcome::NotBegun, groups_now, Some(error)));
            }
        }
        // The isolation swap, from the conversion group: throttled, it is tried again rather
        // than undone, while there is time for it and a rollback. Going back costs a token of
        // the same bucket and ends not isolated; in a burst, steps that did so spent the
        // swaps and isolated nothing (7 of 1,000 in 1,500 s).
        let mut tries = 1;
        while swap == Swap::Isolation
            && made.as_ref().is_err_and(CordonError::is_transient)
            && tries < ISOLATION_SWAP_TRIES
            && ec2.has_time_for(2)
        {
            tries += 1;
            made = swap_to().await;
        }
        if let Err(error) = made {
            failure = Some(error);
            break;
        }
    }
    let Some(cause) = failure else {
        return Ok(line(InterfaceOutcome::Isolated, isolation, None));
    };
    if matches!(cause, CordonError::InterfaceNotFound { .. }) {
        return Ok(line(InterfaceOutcome::Gone, Vec::new(), Some(&cause)));
    }
    // The swap may have half-happened (an answer lost): go back to the recorded groups,
    // which is where the interface was before Cordon, whichever swap failed.
    if let Some(originals) = rollback_groups(&recorded.groups, cordon) {
        if ec2
            .set_interface_groups(&recorded.id, &originals)
            .await
            .is_ok()
        {
            return Ok(line(InterfaceOutcome::RolledBack, originals, Some(&cause)));
        }
    }
    // Where it is now, as far as EC2 can say (nothing when even that read fails).
    let groups_now = ec2
        .describe_instance(instance_id)
        .await
        .ok()
        .and_then(|i| i.interfaces.into_iter().find(|e| e.id == recorded.id))
        .map(|e| e.groups)
        .unwrap_or_default();
    Ok(line(InterfaceOutcome::LeftOn, groups_now, Some(&cause)))
}

/// The first error worth retrying the whole (idempotent) step for, by its Step Functions name.
pub fn retryable(errors: &[StepError]) -> Option<&StepError> {
    errors
        .iter()
        .find(|e| CordonError::TRANSIENT_NAMES.contains(&e.error.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{capture, CaptureOutput};
    use crate::ec2::NetworkInterface;
    use crate::fake::{block_on, interface, FakeEc2};

    /// Report-only: the plan names the groups a first containment would create, the rules
    /// someone changed on Cordon's groups, and each interface's move; nothing is written.
    #[test]
    fn the_isolation_plan_says_what_a_containment_would_do_and_writes_nothing() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.clear_calls();
        let plan = block_on(plan_isolation(
            &crate::report_only::ReadOnly(&ec2),
            &record,
            Access::default(),
        ))
        .unwrap();
        assert_eq!(plan.status, StepStatus::ReportOnly);
        assert!(plan.enis.is_empty());
        let says = |text: &str| plan.notes.iter().any(|n| n.contains(text));
        assert!(
            says("would create the security group cordon-isolation-vpc-1"),
            "{:?}",
            plan.notes
        );
        assert!(says("eni-1: would move from sg-app, sg-ssh to the isolation group cordon-isolation-vpc-1"), "{:?}", plan.notes);
        assert!(says("eni-1: would lower its connection tracking"));
        assert!(says("would turn termination protection on"));
        assert_eq!(ec2.calls(), ["DescribeSecurityGroups", "DescribeInstances"]);

        // Once the groups exist, and someone has opened the isolation group's egress.
        let groups = block_on(ensure_groups(
            &ec2,
            &["vpc-1".into()],
            Access::default(),
            None,
        ))
        .unwrap();
        let isolation = groups["vpc-1"].isolation.clone();
        block_on(ec2.authorize(
            &isolation,
            Direction::Egress,
            &[SgRule::all_traffic(crate::ec2::Peer::Ipv4(
                "0.0.0.0/0".into(),
            ))],
        ))
        .unwrap();
        ec2.clear_calls();
        let plan = block_on(plan_isolation(
            &crate::report_only::ReadOnly(&ec2),
            &record,
            Access::default(),
        ))
        .unwrap();
        let says = |text: &str| plan.notes.iter().any(|n| n.contains(text));
        assert!(!says("would create"), "{:?}", plan.notes);
        assert!(
            says(&format!("would put the rules of {isolation}")),
            "{:?}",
            plan.notes
        );
        assert!(says(&format!("to the isolation group {isolation}")));
        assert!(ec2.calls().iter().all(|c| c.starts_with("Describe")));
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    }

    fn captured(ec2: &FakeEc2) -> CapturedState {
        captured_of(ec2, "i-00000001")
    }

    /// The record of `instance_id`, captured without an execution (`cordon isolate`).
    fn captured_of(ec2: &FakeEc2, instance_id: &str) -> CapturedState {
        block_on(capture(
            ec2,
            instance_id,
            None,
            None,
            "2026-11-29T14:00:00.000Z",
        ))
        .unwrap()
        .record
        .unwrap()
    }

    fn swaps(ec2: &FakeEc2) -> Vec<String> {
        ec2.calls()
            .into_iter()
            .filter(|c| c == "ModifyNetworkInterfaceAttribute")
            .collect()
    }

    #[test]
    fn conversion_allows_everything_both_ways_and_isolation_allows_only_forensics_in() {
        let (ingress, egress) = desired_rules(GroupRole::Conversion, None);
        for rules in [&ingress, &egress] {
            assert!(rules.contains(&SgRule::all_traffic(Peer::Ipv4("0.0.0.0/0".into()))));
            assert!(rules.contains(&SgRule::all_traffic(Peer::Ipv6("::/0".into()))));
        }
        let forensic = ForensicSource::Cidr("10.9.0.0/24".into());
        let (ingress, egress) = desired_rules(GroupRole::Isolation, Some(&forensic));
        assert_eq!(
            ingress,
            [SgRule::all_traffic(Peer::Ipv4("10.9.0.0/24".into()))]
        );
        assert!(egress.is_empty());
        let via_group = ForensicSource::SecurityGroup("sg-forensics".into());
        let (ingress, _) = desired_rules(GroupRole::Isolation, Some(&via_group));
        assert_eq!(
            ingress,
            [SgRule::all_traffic(Peer::Group("sg-forensics".into()))]
        );
        assert_eq!(desired_rules(GroupRole::Isolation, None), (vec![], vec![]));
    }

    #[test]
    fn rule_changes_revoke_extra_rules_and_add_missing_ones() {
        let any4 = SgRule::all_traffic(Peer::Ipv4("0.0.0.0/0".into()));
        let any6 = SgRule::all_traffic(Peer::Ipv6("::/0".into()));
        let (revoke, authorize) = rule_changes(std::slice::from_ref(&any4), &[]);
        assert_eq!((revoke, authorize), (vec![any4.clone()], vec![]));
        let (revoke, authorize) =
            rule_changes(std::slice::from_ref(&any4), &[any4.clone(), any6.clone()]);
        assert_eq!((revoke, authorize), (vec![], vec![any6]));
    }

    #[test]
    fn every_interface_goes_through_conversion_then_isolation() {
        let ec2 = FakeEc2::standard();
        ec2.add_second_interface();
        let record = captured(&ec2);
        ec2.clear_calls();
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Done);
        let groups = &report.groups["vpc-1"];
        for (eni, original) in [
            ("eni-1", vec!["sg-app", "sg-ssh"]),
            ("eni-2", vec!["sg-ssh"]),
        ] {
            assert_eq!(ec2.interface_groups(eni), vec![groups.isolation.clone()]);
            let line = report.enis.iter().find(|e| e.eni_id == eni).unwrap();
            assert_eq!(line.original_groups, original);
            assert_eq!(line.groups_now, vec![groups.isolation.clone()]);
        }
        // Two swaps per interface, and its connection tracking lowered in a call of its own.
        assert_eq!(swaps(&ec2).len(), 6);
        for eni in ["eni-1", "eni-2"] {
            assert_eq!(ec2.conntrack(eni), Some(ConnTrack::ISOLATED), "{eni}");
        }
        assert!(report.termination_protection);
        assert!(ec2.with(|s| s.protection["i-00000001"]));
        let isolation = ec2.with(|s| s.groups[&groups.isolation].clone());
        assert!(
            isolation.egress.is_empty(),
            "EC2's default egress rule must be revoked"
        );
        assert!(
            !ec2.with(|s| s.groups.contains_key(&groups.conversion)),
            "the conversion group is deleted after use"
        );
    }

    /// Steady state: another containment of the VPC is under way (its interface is on the
    /// conversion group), so both groups exist and are used as they are.
    #[test]
    fn steady_state_isolation_reuses_groups_and_makes_seven_calls() {
        let ec2 = FakeEc2::standard();
        let groups = block_on(ensure_groups(
            &ec2,
            &["vpc-1".into()],
            Access::default(),
            None,
        ));
        let conversion = groups.unwrap()["vpc-1"].conversion.clone();
        ec2.add_neighbour("i-00000002", "eni-9", &[&conversion]);
        let record = captured(&ec2);
        let first = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        // The same instance back as it was (restored by hand), isolated again.
        ec2.with(|s| {
            s.protection.insert("i-00000001".into(), false);
            let eni = &mut s.instances.get_mut("i-00000001").unwrap().interfaces[0];
            eni.groups = vec!["sg-app".into(), "sg-ssh".into()];
            eni.conntrack = None;
        });
        ec2.clear_calls();
        let second = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(first.groups, second.groups);
        assert_eq!(
            ec2.calls(),
            [
                // These two at once.
                "DescribeSecurityGroups",
                "DescribeInstances",
                "ModifyNetworkInterfaceAttribute",
                "ModifyNetworkInterfaceAttribute",
                "ModifyInstanceAttribute",
                // Connection tracking, after the swaps.
                "ModifyNetworkInterfaceAttribute",
                // The conversion group still carries the neighbour's interface: kept.
                "DescribeNetworkInterfaces",
            ]
        );
    }

    #[test]
    fn a_retried_isolation_leaves_an_isolated_interface_alone() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        block_on(isolate(&ec2, &record, Access::default())).unwrap();
        ec2.clear_calls();
        let again = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(again.status, StepStatus::Done);
        assert_eq!(again.enis[0].outcome, InterfaceOutcome::AlreadyIsolated);
        // No swap back through conversion, which would reopen it for a moment.
        assert!(swaps(&ec2).is_empty(), "{:?}", ec2.calls());
        assert_eq!(
            ec2.interface_groups("eni-1"),
            [again.groups["vpc-1"].isolation.clone()]
        );
    }

    #[test]
    fn an_interface_found_on_the_conversion_group_only_takes_the_isolation_swap() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        let groups = block_on(ensure_groups(
            &ec2,
            &["vpc-1".into()],
            Access::default(),
            None,
        ))
        .unwrap();
        let conversion = groups["vpc-1"].conversion.clone();
        ec2.with(|s| {
            s.instances.get_mut("i-00000001").unwrap().interfaces[0].groups =
                vec![conversion.clone()]
        });
        ec2.clear_calls();
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::Isolated);
        assert_eq!(
            ec2.interface_groups("eni-1"),
            [groups["vpc-1"].isolation.clone()]
        );
        // One swap, then connection tracking.
        assert_eq!(swaps(&ec2).len(), 2);
    }

    fn conversion_groups(ec2: &FakeEc2) -> Vec<String> {
        ec2.with(|s| {
            s.groups
                .values()
                .filter(|g| g.role == Some(GroupRole::Conversion))
                .map(|g| g.id.clone())
                .collect()
        })
    }

    /// No group that allows all traffic outlives its use: once the interfaces are off it, the
    /// step deletes it and says so; the isolation group, which the interfaces carry, stays.
    #[test]
    fn after_its_swaps_the_step_deletes_the_conversion_group_no_interface_carries() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Done, "{report:?}");
        let groups = &report.groups["vpc-1"];
        assert_eq!(
            ec2.interface_groups("eni-1"),
            std::slice::from_ref(&groups.isolation)
        );
        assert!(conversion_groups(&ec2).is_empty(), "{:?}", ec2.calls());
        assert!(ec2.with(|s| s.groups.contains_key(&groups.isolation)));
        assert!(
            report.notes.iter().any(|n| n.starts_with(&format!(
                "deleted the conversion group {} of vpc-1",
                groups.conversion
            ))),
            "{:?}",
            report.notes
        );
        // The next containment in the VPC makes it again, and deletes it again.
        let again = captured(&ec2);
        let restored_groups = vec!["sg-app".to_string(), "sg-ssh".to_string()];
        ec2.with(|s| {
            s.instances.get_mut("i-00000001").unwrap().interfaces[0].groups = restored_groups
        });
        let second = block_on(isolate(&ec2, &again, Access::default())).unwrap();
        assert_eq!(second.enis[0].outcome, InterfaceOutcome::Isolated);
        assert_ne!(second.groups["vpc-1"].conversion, groups.conversion);
        assert!(conversion_groups(&ec2).is_empty());
    }

    /// Another containment of the VPC has an interface on the conversion group: EC2 would
    /// refuse the delete, and the step does not try it. The last containment to end deletes it.
    #[test]
    fn a_conversion_group_a_neighbour_is_on_is_kept_and_the_last_containment_deletes_it() {
        let ec2 = FakeEc2::standard();
        let groups = block_on(ensure_groups(
            &ec2,
            &["vpc-1".into()],
            Access::default(),
            None,
        ))
        .unwrap();
        let conversion = groups["vpc-1"].conversion.clone();
        ec2.add_neighbour("i-00000002", "eni-9", &[&conversion]);
        let record = captured(&ec2);
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Done, "{report:?}");
        assert_eq!(conversion_groups(&ec2), std::slice::from_ref(&conversion));
        assert!(!ec2.calls().contains(&"DeleteSecurityGroup".to_string()));
        assert!(
            report.notes.iter().any(|n| n
                .contains(&format!("kept the conversion group {conversion}"))
                && n.contains("eni-9")),
            "{:?}",
            report.notes
        );
        // The neighbour's containment ends: its isolation swap, then its clean-up.
        let neighbour = captured_of(&ec2, "i-00000002");
        let last = block_on(isolate(&ec2, &neighbour, Access::default())).unwrap();
        assert_eq!(last.enis[0].outcome, InterfaceOutcome::Isolated, "{last:?}");
        assert!(conversion_groups(&ec2).is_empty(), "{:?}", last.notes);
    }

    /// An execution's capture, with its view of the VPC's groups, after which another
    /// containment's clean-up deletes the conversion group it read; and that group's id.
    fn captured_then_conversion_deleted(ec2: &FakeEc2) -> (CaptureOutput, Seen, Vec<String>) {
        block_on(ensure_groups(
            ec2,
            &["vpc-1".into()],
            Access::default(),
            None,
        ))
        .unwrap();
        let captured = block_on(capture(
            ec2,
            "i-00000001",
            None,
            Some("exec-a"),
            "2026-11-29T14:00:00.000Z",
        ))
        .unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-29T14:00:01.000Z").unwrap();
        let seen = captured
            .fresh_view(Some(0), now.into())
            .expect("capture's view");
        let read = conversion_groups(ec2);
        ec2.with(|s| s.groups.retain(|id, _| !read.contains(id)));
        (captured, seen, read)
    }

    /// A containment that ended between this step's read and its conversion swap deleted the
    /// group: the swap is refused and changes nothing, and the step makes the group again at
    /// once, without waiting for a group that will not appear and without a way back.
    #[test]
    fn a_conversion_group_deleted_after_the_read_is_made_again_and_the_interface_isolated() {
        let ec2 = FakeEc2::standard();
        let (captured, seen, read) = captured_then_conversion_deleted(&ec2);
        ec2.clear_calls();
        let report = block_on(isolate_seen(
            &ec2,
            captured.record.as_ref().unwrap(),
            Access::default(),
            Some(seen),
        ))
        .unwrap();
        assert_eq!(report.status, StepStatus::Done, "{report:?}");
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::Isolated);
        let groups = &report.groups["vpc-1"];
        assert!(!read.contains(&groups.conversion), "a new conversion group");
        assert_eq!(
            ec2.interface_groups("eni-1"),
            std::slice::from_ref(&groups.isolation)
        );
        // The refused swap, the conversion, the isolation, connection tracking: no wait for
        // the deleted group (each of its tries would be another swap) and no way back.
        assert_eq!(swaps(&ec2).len(), 4, "{:?}", ec2.calls());
        // And this step's clean-up deletes the group it made.
        assert!(conversion_groups(&ec2).is_empty());
    }

    /// A containment's clean-up deletes the conversion group while this step puts its rules
    /// right (its authorize lost a race and the group is read again): the step makes it again
    /// rather than fail with an error the state machine does not retry.
    #[test]
    fn a_conversion_group_deleted_while_its_rules_are_set_is_made_again() {
        let ec2 = FakeEc2::standard();
        let first = block_on(ensure_groups(
            &ec2,
            &["vpc-1".into()],
            Access::default(),
            None,
        ));
        let old = first.unwrap()["vpc-1"].conversion.clone();
        // Someone changed its rules, so they are put right; then it is deleted under the step.
        let seen = ec2.with(|s| {
            s.groups.get_mut(&old).unwrap().ingress.clear();
            s.groups.values().cloned().collect::<Vec<_>>()
        });
        ec2.with(|s| s.groups.remove(&old));
        ec2.fail_next(
            "AuthorizeSecurityGroup",
            CordonError::Ec2 {
                operation: "AuthorizeSecurityGroupIngress".into(),
                code: "InvalidPermission.Duplicate".into(),
                message: "the specified rule already exists".into(),
            },
        );
        let groups = block_on(ensure_groups(
            &ec2,
            &["vpc-1".into()],
            Access::default(),
            Some(seen),
        ))
        .unwrap();
        let made = &groups["vpc-1"].conversion;
        assert_ne!(made, &old);
        assert_eq!(ec2.with(|s| s.groups[made].ingress.len()), 2);
    }

    /// The conversion group is gone and cannot be made again (here EC2 refuses the create):
    /// that interface is reported not begun, on its own groups, and the step still hardens
    /// the instance and reports, rather than fail with no word on what it did.
    #[test]
    fn a_conversion_group_that_cannot_be_made_again_leaves_the_interface_not_begun() {
        let ec2 = FakeEc2::standard();
        let (captured, seen, _) = captured_then_conversion_deleted(&ec2);
        ec2.fail_next("CreateSecurityGroup", scp_denied());
        let report = block_on(isolate_seen(
            &ec2,
            captured.record.as_ref().unwrap(),
            Access::default(),
            Some(seen),
        ))
        .unwrap();
        assert_eq!(report.status, StepStatus::Partial);
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::NotBegun);
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
        assert!(
            report.enis[0].line().contains("NOT isolated yet"),
            "{}",
            report.enis[0].line()
        );
        assert!(
            ec2.with(|s| s.protection["i-00000001"]),
            "hardened all the same"
        );
    }

    /// A step whose conversion swap waits its turn is retried: it leaves the group to its
    /// retry rather than delete it and make it again at each attempt of a burst.
    #[test]
    fn a_step_that_will_be_retried_leaves_the_conversion_group_to_its_retry() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.refuse_swaps_to(Some(GroupRole::Conversion), throttled(), Some(1));
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::NotBegun);
        assert_eq!(conversion_groups(&ec2).len(), 1);
        assert!(!ec2.calls().contains(&"DeleteSecurityGroup".to_string()));
        let retried = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(retried.enis[0].outcome, InterfaceOutcome::Isolated);
        assert!(conversion_groups(&ec2).is_empty());
    }

    fn throttled() -> CordonError {
        CordonError::Throttled {
            operation: "ModifyNetworkInterfaceAttribute".into(),
            message: "Request limit exceeded.".into(),
        }
    }

    fn scp_denied() -> CordonError {
        CordonError::AccessDenied {
            operation: "ModifyNetworkInterfaceAttribute".into(),
            message: "with an explicit deny in a service control policy".into(),
        }
    }

    #[test]
    fn a_throttled_isolation_swap_is_tried_again_not_undone() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.refuse_swaps_to(
            Some(GroupRole::Isolation),
            throttled(),
            Some(ISOLATION_SWAP_TRIES - 1),
        );
        ec2.clear_calls();
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::Isolated);
        let isolation = report.groups["vpc-1"].isolation.clone();
        assert_eq!(ec2.interface_groups("eni-1"), [isolation]);
        // The isolation swap again until it goes through: never back to the originals in
        // between (a run without refusals makes two swaps fewer).
        let unrefused = FakeEc2::standard();
        let record = captured(&unrefused);
        unrefused.clear_calls();
        block_on(isolate(&unrefused, &record, Access::default())).unwrap();
        let extra = swaps(&ec2).len() - swaps(&unrefused).len();
        assert_eq!(
            extra,
            ISOLATION_SWAP_TRIES as usize - 1,
            "{:?}",
            ec2.calls()
        );
    }

    #[test]
    fn a_throttled_conversion_swap_is_not_undone_the_interface_waits_its_turn_on_its_own_groups() {
        let ec2 = FakeEc2::standard();
        ec2.add_second_interface();
        let record = captured(&ec2);
        ec2.refuse_swaps_to(Some(GroupRole::Conversion), throttled(), Some(1));
        ec2.clear_calls();
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Partial);
        let first = &report.enis[0];
        assert_eq!(first.outcome, InterfaceOutcome::NotBegun, "{report:?}");
        assert_eq!(first.groups_now, ["sg-app", "sg-ssh"]);
        assert!(
            first.line().contains("NOT isolated yet"),
            "{}",
            first.line()
        );
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
        // The refused conversion was not made, so there is nothing to undo: no way back,
        // which would spend a token of the swaps' bucket (the second interface's two swaps
        // and its connection tracking are the other calls).
        assert_eq!(swaps(&ec2).len(), 1 + 3, "{:?}", ec2.calls());
        assert_eq!(report.enis[1].outcome, InterfaceOutcome::Isolated);
        // The step is retried, and its retry begins the interface.
        assert_eq!(retryable(&report.errors).unwrap().error, "Cordon.Throttled");
        let again = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(again.status, StepStatus::Done, "{:?}", again.errors);
        assert_eq!(
            ec2.interface_groups("eni-1"),
            [again.groups["vpc-1"].isolation.clone()]
        );
    }

    #[test]
    fn only_the_swaps_that_take_an_interface_off_the_conversion_group_press_on() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.clear_calls();
        block_on(isolate(&ec2, &record, Access::default())).unwrap();
        // Conversion, isolation, and the connection tracking: only the first is made once.
        assert_eq!(swaps(&ec2).len(), 3);
        assert_eq!(ec2.with(|s| s.tried_once.clone()), ["eni-1"]);
        // An isolation swap refused for good is undone with a pressing swap too.
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.refuse_swaps_to(Some(GroupRole::Isolation), scp_denied(), None);
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::RolledBack);
        assert_eq!(ec2.with(|s| s.tried_once.clone()), ["eni-1"]);
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    }

    #[test]
    fn a_conversion_swap_that_failed_otherwise_may_have_been_made_and_is_undone() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        let lost = CordonError::Unavailable {
            operation: "ModifyNetworkInterfaceAttribute".into(),
            message: "connection reset after the request was sent".into(),
        };
        ec2.refuse_swaps_to(Some(GroupRole::Conversion), lost, Some(1));
        ec2.clear_calls();
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::RolledBack);
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
        assert_eq!(swaps(&ec2).len(), 2, "{:?}", ec2.calls());
    }

    #[test]
    fn a_refused_isolation_swap_puts_the_interface_back_never_on_conversion_and_a_retry_converges()
    {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.refuse_swaps_to(
            Some(GroupRole::Isolation),
            throttled(),
            Some(ISOLATION_SWAP_TRIES),
        );
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Partial);
        let line = &report.enis[0];
        assert_eq!(line.outcome, InterfaceOutcome::RolledBack);
        assert_eq!(line.groups_now, ["sg-app", "sg-ssh"]);
        assert_eq!(line.cause.as_ref().unwrap().error, "Cordon.Throttled");
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
        assert!(line.line().contains("NOT isolated"), "{}", line.line());
        // Worth retrying: the state machine runs the step again, and it converges.
        assert_eq!(retryable(&report.errors).unwrap().error, "Cordon.Throttled");
        let again = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(again.status, StepStatus::Done);
        assert_eq!(
            ec2.interface_groups("eni-1"),
            [again.groups["vpc-1"].isolation.clone()]
        );
    }

    #[test]
    fn an_isolation_swap_that_no_retry_can_cure_is_rolled_back_and_named() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.refuse_swaps_to(Some(GroupRole::Isolation), scp_denied(), None);
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Partial);
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::RolledBack);
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
        assert_eq!(report.errors[0].error, "Cordon.AccessDenied");
        assert_eq!(retryable(&report.errors), None);
        // A second run changes nothing for the worse either.
        let again = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(again.enis[0].outcome, InterfaceOutcome::RolledBack);
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    }

    #[test]
    fn when_even_the_way_back_is_refused_the_report_says_which_group_it_is_on() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.refuse_swaps_to(Some(GroupRole::Isolation), scp_denied(), None);
        ec2.refuse_swaps_to(None, scp_denied(), None);
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        let line = &report.enis[0];
        let conversion = report.groups["vpc-1"].conversion.clone();
        assert_eq!(line.outcome, InterfaceOutcome::LeftOn);
        assert_eq!(line.groups_now, std::slice::from_ref(&conversion));
        assert!(line.line().contains(&conversion), "{}", line.line());
        assert_eq!(report.status, StepStatus::Partial);
    }

    #[test]
    fn a_transient_refusal_fails_the_step_with_what_is_true_of_each_interface() {
        let ec2 = FakeEc2::standard();
        let output = block_on(crate::capture::capture(
            &ec2,
            "i-00000001",
            None,
            None,
            "2026-11-29T14:00:00.000Z",
        ))
        .unwrap();
        // Throttled through every try the deadline allows.
        ec2.refuse_swaps_to(
            Some(GroupRole::Isolation),
            throttled(),
            Some(ISOLATION_SWAP_TRIES),
        );
        let error = block_on(crate::steps::isolate_step(
            &|_: &crate::ec2::Target| ec2.clone(),
            &crate::config::Config::default(),
            &output,
        ))
        .unwrap_err();
        assert_eq!(error.error_name(), "Cordon.Throttled");
        let message = error.to_string();
        assert!(
            message.contains("eni-1: NOT isolated, put back on its original groups sg-app, sg-ssh"),
            "{message}"
        );
    }

    #[test]
    fn near_the_deadline_no_interface_is_begun_and_the_step_is_retried() {
        let ec2 = FakeEc2::standard();
        ec2.add_second_interface();
        let record = captured(&ec2);
        block_on(ensure_groups(
            &ec2,
            &["vpc-1".into()],
            Access::default(),
            None,
        ))
        .unwrap();
        // Reads (2), room for the first interface at its worst (4) and one call more: the
        // fake fails the test if a call is started past the deadline.
        ec2.with(|s| s.calls_before_deadline = Some(2 + CALLS_PER_INTERFACE + 1));
        let error = block_on(isolate(&ec2, &record, Access::default())).unwrap_err();
        assert_eq!(error.error_name(), "Cordon.Unavailable");
        assert!(error.to_string().contains("deadline"), "{error}");
        assert!(error.to_string().contains("eni-1: isolated"), "{error}");
        assert_eq!(ec2.interface_groups("eni-2"), ["sg-ssh"]);
        // The retry, with time, finishes it.
        ec2.with(|s| s.calls_before_deadline = None);
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::AlreadyIsolated);
        assert_eq!(report.enis[1].outcome, InterfaceOutcome::Isolated);
    }

    #[test]
    fn near_the_deadline_the_hardening_after_the_swaps_is_left_to_the_retry() {
        let ec2 = FakeEc2::standard();
        let mut record = captured(&ec2);
        record.shutdown_behavior = Some("terminate".into());
        let groups = block_on(ensure_groups(
            &ec2,
            &["vpc-1".into()],
            Access::default(),
            None,
        ))
        .unwrap();
        // Reads (2), the room asked for the interface (its two swaps and room for a rollback),
        // then termination protection and shutdown behaviour use that room: connection
        // tracking must not be started (the fake fails the test if it is).
        ec2.with(|s| s.calls_before_deadline = Some(2 + CALLS_PER_INTERFACE));
        let error = block_on(isolate(&ec2, &record, Access::default())).unwrap_err();
        assert_eq!(error.error_name(), "Cordon.Unavailable");
        assert!(error.to_string().contains("connection tracking"), "{error}");
        assert!(error.to_string().contains("eni-1: isolated"), "{error}");
        assert_eq!(
            ec2.interface_groups("eni-1"),
            [groups["vpc-1"].isolation.clone()]
        );
        ec2.with(|s| s.calls_before_deadline = None);
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Done, "{report:?}");
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::AlreadyIsolated);
        let conntrack = ec2.with(|s| s.instances["i-00000001"].interfaces[0].conntrack);
        assert_eq!(
            conntrack.map(ConnTrack::effective),
            Some(ConnTrack::ISOLATED)
        );
    }

    #[test]
    fn trunk_and_managed_interfaces_are_named_as_not_contained_and_left_alone() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| {
            let interfaces = &mut s.instances.get_mut("i-00000001").unwrap().interfaces;
            let mut trunk = interface("eni-2", "subnet-b", &["sg-ssh"], "10.0.2.5", None);
            trunk.interface_type = Some("trunk".into());
            interfaces.push(trunk);
        });
        let record = captured(&ec2);
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::Isolated);
        assert_eq!(report.enis[1].outcome, InterfaceOutcome::NotContainable);
        assert_eq!(ec2.interface_groups("eni-2"), ["sg-ssh"]);
        assert_eq!(report.status, StepStatus::Partial);
        assert!(
            report.errors[0].cause.contains("trunk"),
            "{:?}",
            report.errors
        );
        let managed = NetworkInterface {
            managed_by: Some("eks.amazonaws.com".into()),
            ..Default::default()
        };
        assert!(managed
            .not_containable()
            .unwrap()
            .contains("eks.amazonaws.com"));
    }

    #[test]
    fn a_spot_instance_is_not_given_termination_protection_and_that_alone_is_not_partial() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| s.instances.get_mut("i-00000001").unwrap().lifecycle = Some("spot".into()));
        let record = captured(&ec2);
        ec2.clear_calls();
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
        assert!(!report.termination_protection);
        assert!(report.notes[0].contains("Spot"), "{:?}", report.notes);
        assert!(!ec2.calls().iter().any(|c| c == "ModifyInstanceAttribute"));
    }

    #[test]
    fn a_shutdown_that_would_terminate_is_made_to_stop_while_isolated() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| s.shutdown.insert("i-00000001".into(), "terminate".into()));
        let record = captured(&ec2);
        assert_eq!(record.shutdown_behavior.as_deref(), Some("terminate"));
        block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(ec2.shutdown_of("i-00000001"), "stop");
    }

    #[test]
    fn a_group_ec2_does_not_show_yet_is_waited_for_not_an_error() {
        // Eventual consistency: the new groups are unknown to the next two calls naming them.
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.with(|s| s.new_groups_unseen_for = 2);
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
        let isolation = report.groups["vpc-1"].isolation.clone();
        assert_eq!(
            ec2.interface_groups("eni-1"),
            std::slice::from_ref(&isolation)
        );
        assert!(ec2.with(|s| s.groups[&isolation].egress.is_empty()));
    }

    #[test]
    fn the_winner_of_a_create_race_that_ec2_does_not_show_yet_is_waited_for() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.with(|s| {
            s.new_groups_unseen_for = 2;
            s.racing_group = Some(SecurityGroup {
                id: "sg-theirs".into(),
                vpc_id: "vpc-1".into(),
                name: GroupRole::Conversion.group_name("vpc-1"),
                role: Some(GroupRole::Conversion),
                ingress: vec![],
                egress: vec![],
                tags: vec![(GroupRole::TAG_KEY.into(), "conversion".into())],
            })
        });
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.groups["vpc-1"].conversion, "sg-theirs");
        assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
    }

    #[test]
    fn a_group_ec2_never_shows_is_a_retryable_failure_not_a_configuration_error() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.with(|s| s.new_groups_unseen_for = 100);
        let error = block_on(isolate(&ec2, &record, Access::default())).unwrap_err();
        assert_eq!(error.error_name(), "Cordon.Unavailable", "{error}");
        assert!(
            error.to_string().contains("eventually consistent"),
            "{error}"
        );
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    }

    #[test]
    fn a_tampered_isolation_group_is_put_right() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        let isolation = report.groups["vpc-1"].isolation.clone();
        ec2.with(|s| {
            s.groups
                .get_mut(&isolation)
                .unwrap()
                .egress
                .push(SgRule::all_traffic(Peer::Ipv4("0.0.0.0/0".into())))
        });
        block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert!(ec2.with(|s| s.groups[&isolation].egress.is_empty()));
    }

    const SESSIONS: Access<'static> = Access {
        forensic: None,
        session_manager: true,
    };

    #[test]
    fn with_session_manager_the_isolation_group_reaches_only_the_endpoints_after_the_swaps() {
        let ec2 = FakeEc2::standard();
        ec2.with_session_endpoints();
        let record = captured(&ec2);
        ec2.clear_calls();
        let report = block_on(isolate(&ec2, &record, SESSIONS)).unwrap();
        assert_eq!(report.status, StepStatus::Done);
        let isolation = report.groups["vpc-1"].isolation.clone();
        assert_eq!(
            ec2.interface_groups("eni-1"),
            std::slice::from_ref(&isolation)
        );
        assert_eq!(
            ec2.with(|s| s.groups[&isolation].egress.clone()),
            [
                SgRule::https(Peer::Ipv4("10.0.2.10/32".into())),
                SgRule::https(Peer::Ipv4("10.0.2.11/32".into())),
            ]
        );
        assert!(ec2.with(|s| s.groups[&isolation].ingress.is_empty()));
        // The endpoints are read after the isolation swap, off the isolation's path.
        let calls = ec2.calls();
        let swapped = calls
            .iter()
            .rposition(|c| c == "ModifyNetworkInterfaceAttribute")
            .unwrap();
        let read = calls
            .iter()
            .position(|c| c == "DescribeVpcEndpoints")
            .unwrap();
        assert!(swapped < read, "{calls:?}");
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("vpce-ssm (ssm: 10.0.2.10)")),
            "{:?}",
            report.notes
        );

        // A rule of the same shape to another address is revoked; the endpoints' stay.
        ec2.with(|s| {
            s.groups
                .get_mut(&isolation)
                .unwrap()
                .egress
                .push(SgRule::https(Peer::Ipv4("203.0.113.9/32".into())))
        });
        block_on(isolate(&ec2, &record, SESSIONS)).unwrap();
        assert_eq!(ec2.with(|s| s.groups[&isolation].egress.len()), 2);
        assert!(!ec2.with(|s| s.groups[&isolation]
            .egress
            .contains(&SgRule::https(Peer::Ipv4("203.0.113.9/32".into())))));

        // Turned off: the endpoints' rules go too.
        block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert!(ec2.with(|s| s.groups[&isolation].egress.is_empty()));
    }

    #[test]
    fn endpoints_that_cannot_be_read_leave_the_isolation_group_closed_and_say_so() {
        let ec2 = FakeEc2::standard();
        ec2.with_session_endpoints();
        let record = captured(&ec2);
        let report = block_on(isolate(&ec2, &record, SESSIONS)).unwrap();
        let isolation = report.groups["vpc-1"].isolation.clone();
        ec2.with(|s| {
            s.failures.push((
                "DescribeVpcEndpoints".into(),
                CordonError::Unavailable {
                    operation: "DescribeVpcEndpoints".into(),
                    message: "throttled".into(),
                },
            ))
        });
        let again = block_on(isolate(&ec2, &record, SESSIONS)).unwrap();
        assert!(ec2.with(|s| s.groups[&isolation].egress.is_empty()));
        // Still isolated: more closed than asked is not a partial containment.
        assert_eq!(again.status, StepStatus::Done);
        assert!(
            again
                .notes
                .iter()
                .any(|n| n.contains("endpoints could not be read")),
            "{:?}",
            again.notes
        );
    }

    #[test]
    fn a_vanished_interface_is_reported_and_the_others_still_isolated() {
        let ec2 = FakeEc2::standard();
        ec2.add_second_interface();
        let record = captured(&ec2);
        ec2.fail_next(
            "ModifyNetworkInterfaceAttribute",
            CordonError::InterfaceNotFound {
                eni_id: "eni-1".into(),
            },
        );
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Partial);
        assert_eq!(report.errors[0].error, "Cordon.InterfaceNotFound");
        assert_eq!(report.enis[0].outcome, InterfaceOutcome::Gone);
        let isolation = report.groups["vpc-1"].isolation.clone();
        assert_eq!(ec2.interface_groups("eni-2"), [isolation]);
        assert_eq!(retryable(&report.errors), None);
    }

    #[test]
    fn a_group_created_concurrently_is_re_read_not_fatal() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        let theirs = SecurityGroup {
            id: "sg-theirs".into(),
            vpc_id: "vpc-1".into(),
            name: GroupRole::Conversion.group_name("vpc-1"),
            role: Some(GroupRole::Conversion),
            ingress: vec![],
            egress: vec![],
            tags: vec![(GroupRole::TAG_KEY.into(), "conversion".into())],
        };
        ec2.with(|s| s.racing_group = Some(theirs));
        // Kept after the swaps (its delete refused), so that its rules can be read here.
        ec2.fail_next("DeleteSecurityGroup", throttled());
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.groups["vpc-1"].conversion, "sg-theirs");
        assert_eq!(
            ec2.interface_groups("eni-1"),
            [report.groups["vpc-1"].isolation.clone()]
        );
        // Their group was missing its rules; ours were put on it.
        assert_eq!(ec2.with(|s| s.groups["sg-theirs"].ingress.len()), 2);
    }

    #[test]
    fn in_steady_state_capture_and_isolate_read_the_groups_once() {
        let ec2 = FakeEc2::standard();
        block_on(ensure_groups(
            &ec2,
            &["vpc-1".into()],
            Access::default(),
            None,
        ))
        .unwrap();
        ec2.clear_calls();
        let (captured, seen) = block_on(crate::capture::capture_seeing(
            &ec2,
            "i-00000001",
            None,
            None,
            "2026-11-29T14:00:00.000Z",
            crate::capture::Pace::AtOnce,
            &crate::config::Config::default(),
            &crate::seal::Unsealed,
        ))
        .unwrap();
        let record = captured.record.unwrap();
        let report = block_on(isolate_seen(&ec2, &record, Access::default(), Some(seen))).unwrap();
        assert_eq!(report.status, StepStatus::Done);
        let isolation = report.groups["vpc-1"].isolation.clone();
        assert_eq!(ec2.interface_groups("eni-1"), [isolation]);
        // The capture's reads of the groups and the instance serve the swaps: they are not
        // read again.
        assert_eq!(
            ec2.calls(),
            [
                "DescribeInstances",
                "DescribeInstanceAttribute",
                "DescribeInstanceAttribute",
                "DescribeSecurityGroups",
                "CreateTags",
                "ModifyNetworkInterfaceAttribute",
                "ModifyNetworkInterfaceAttribute",
                "ModifyInstanceAttribute",
                "ModifyNetworkInterfaceAttribute",
                // After the swaps: the conversion group, which no interface carries now.
                "DescribeNetworkInterfaces",
                "DeleteSecurityGroup",
            ]
        );
    }

    #[test]
    fn rules_changed_by_another_execution_at_the_same_time_are_read_again_not_fatal() {
        // Both executions found the VPC without Cordon's groups; the other one revokes the
        // default egress rule and authorizes the rules just before we do, each time.
        for operation in ["RevokeSecurityGroup", "AuthorizeSecurityGroup"] {
            let ec2 = FakeEc2::standard();
            let record = captured(&ec2);
            ec2.with(|s| s.racing_rule_change = Some(operation.into()));
            let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
            assert_eq!(report.status, StepStatus::Done, "{operation}");
            let isolation = &report.groups["vpc-1"].isolation;
            assert_eq!(
                ec2.interface_groups("eni-1"),
                std::slice::from_ref(isolation)
            );
            let (ingress, egress) = desired_rules(GroupRole::Isolation, None);
            let group = ec2.with(|s| s.groups[isolation].clone());
            assert_eq!(
                (group.ingress, group.egress),
                (ingress, egress),
                "{operation}"
            );
            assert_eq!(ec2.with(|s| s.racing_rule_change.clone()), None, "raced");
        }
    }

    /// Someone's group under Cordon's name, without Cordon's tag.
    fn squat(ec2: &FakeEc2, role: GroupRole) {
        let name = role.group_name("vpc-1");
        ec2.with(|s| {
            s.groups.insert(
                "sg-foreign".into(),
                SecurityGroup {
                    id: "sg-foreign".into(),
                    vpc_id: "vpc-1".into(),
                    name: name.clone(),
                    role: None,
                    ingress: vec![],
                    egress: vec![],
                    tags: vec![("Name".into(), name)],
                },
            )
        });
    }

    #[test]
    fn a_foreign_group_holding_the_isolation_groups_name_is_a_clear_error_before_any_change() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        squat(&ec2, GroupRole::Isolation);
        let error = block_on(isolate(&ec2, &record, Access::default())).unwrap_err();
        assert_eq!(error.error_name(), "Cordon.InvalidConfiguration");
        assert!(
            error.to_string().contains("sg-foreign")
                && error.to_string().contains("without the tag cordon:role"),
            "{error}"
        );
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    }

    /// The conversion group's name is free between containments (the group is deleted after
    /// use): whoever may create a group in the VPC takes it. The containment makes its
    /// conversion group under a name of its own, and leaves theirs alone.
    #[test]
    fn a_foreign_group_holding_the_conversion_groups_name_holds_no_containment_back() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        squat(&ec2, GroupRole::Conversion);
        let report = block_on(isolate(&ec2, &record, Access::default())).unwrap();
        assert_eq!(report.status, StepStatus::Done, "{report:?}");
        let groups = &report.groups["vpc-1"];
        assert_eq!(
            ec2.interface_groups("eni-1"),
            std::slice::from_ref(&groups.isolation)
        );
        assert_ne!(groups.conversion, "sg-foreign");
        assert!(
            conversion_groups(&ec2).is_empty(),
            "its own, deleted after use"
        );
        let theirs = ec2.with(|s| s.groups["sg-foreign"].clone());
        assert!(theirs.ingress.is_empty() && theirs.role.is_none());
        assert!(GroupRole::Conversion.is_its_name("vpc-1", "cordon-conversion-vpc-1-0a1b2c3d"));
        assert!(!GroupRole::Conversion.is_its_name("vpc-1", "cordon-conversion-vpc-1-payments"));
        assert!(!GroupRole::Isolation.is_its_name("vpc-1", "cordon-isolation-vpc-1-0a1b2c3d"));
    }

    #[test]
    fn the_way_back_is_never_onto_a_cordon_group() {
        let groups = CordonGroups {
            conversion: "sg-c".into(),
            isolation: "sg-i".into(),
        };
        assert_eq!(
            rollback_groups(&["sg-app".into(), "sg-c".into()], &groups),
            Some(vec!["sg-app".to_string()])
        );
        assert_eq!(rollback_groups(&["sg-i".into()], &groups), None);
        assert_eq!(rollback_groups(&[], &groups), None);
    }
}
