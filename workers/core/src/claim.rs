//! One execution per instance: GuardDuty may deliver a finding several times at once, and each
//! delivery starts an execution. Tags cannot arbitrate (CreateTags is last-writer-wins), but
//! security group names are unique per VPC and `CreateSecurityGroup` fails atomically with
//! `InvalidGroup.Duplicate` for everyone but the first. So the first execution creates an
//! empty, unattached group `cordon-claim-<instance>` tagged with its execution id: that is its
//! claim. Duplicates that find a claim younger than the lease end as already quarantined (no
//! second approval request); the owner's own retries recognise their id and go on.
//!
//! The claim is a lease, not a lock: once it is older than [`LEASE_SECONDS`] the containment it
//! guarded has either happened (and the interfaces on Cordon's groups say so) or failed, and a
//! later finding may take the claim over and contain again. A lost execution can therefore
//! never keep an instance from being contained. Restore deletes the claim.
//!
//! The claim also keeps the record (`cordon:state:*`, `record.rs`): it is created once the
//! instance has been read, with the record in the same call's tags, so the record is written
//! before anything changes and costs no call of its own. CreateTags, which every ACL measure
//! of a burst draws on, is then not on the way to isolation.

use chrono::{DateTime, Utc};

use crate::ec2::{Ec2, SecurityGroup};
use crate::error::{CordonError, Result};
use crate::record::{check_tag_room, state_record_keys};

/// `cordon:role` of a claim group.
pub const CLAIM_ROLE: &str = "claim";
/// The instance a claim is for.
pub const INSTANCE_TAG: &str = "cordon:instance";
/// The execution (or `cordon` command) that holds it.
pub const OWNER_TAG: &str = "cordon:owner";
/// When it was taken, RFC 3339.
pub const CLAIMED_AT_TAG: &str = "cordon:claimed-at";
/// How long a claim holds duplicates back: far longer than a capture takes, about as long as
/// its step's retries on a throttled EC2 last (the definition's 20 attempts, waits capped at
/// 30 s), far shorter than GuardDuty's re-publication interval. A holder that fails keeps
/// duplicates back no longer than this; one still retrying after it may lose the claim to a
/// later finding, and its next attempt then leaves the instance to that execution.
pub const LEASE_SECONDS: i64 = 600;
/// How far ahead of this clock another Lambda's may be: a claim dated later than that was
/// not taken by an execution.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub group_id: String,
    /// The VPC of the claim group (the record's seal binds it).
    pub vpc_id: String,
    pub instance_id: String,
    pub owner: String,
    pub claimed_at: String,
    /// The record it keeps (its `cordon:state:*` tags and their seal; none on a claim of an
    /// older release, or when the record did not fit).
    pub record_tags: Vec<(String, String)>,
}

pub fn group_name(instance_id: &str) -> String {
    format!("cordon-claim-{instance_id}")
}

pub fn description(instance_id: &str) -> String {
    format!("Cordon: claim of one quarantine execution on {instance_id}; attached to nothing, deleted on restore")
}

/// The tags a new claim group carries, before its record.
pub fn claim_tags(instance_id: &str, owner: &str, claimed_at: &str) -> Vec<(String, String)> {
    vec![
        (crate::ec2::GroupRole::TAG_KEY.into(), CLAIM_ROLE.into()),
        ("Name".into(), group_name(instance_id)),
        (INSTANCE_TAG.into(), instance_id.into()),
        (OWNER_TAG.into(), owner.into()),
        (CLAIMED_AT_TAG.into(), claimed_at.into()),
    ]
}

fn tag<'a>(group: &'a SecurityGroup, key: &str) -> Option<&'a str> {
    group
        .tags
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The claim on `instance_id` among Cordon's groups, if there is one: a group tagged as its
/// claim and named as Cordon names it. Tags alone would let whoever may tag any group of the
/// VPC hold every finding of the instance back with a fresh `cordon:claimed-at`; the name is
/// unique in the VPC and cannot be given to an existing group.
pub fn claim_in(groups: &[SecurityGroup], instance_id: &str) -> Option<Claim> {
    groups.iter().find_map(|group| {
        (tag(group, crate::ec2::GroupRole::TAG_KEY) == Some(CLAIM_ROLE)
            && tag(group, INSTANCE_TAG) == Some(instance_id)
            && group.named_as_cordons())
        .then(|| Claim {
            group_id: group.id.clone(),
            vpc_id: group.vpc_id.clone(),
            instance_id: instance_id.into(),
            owner: tag(group, OWNER_TAG).unwrap_or_default().into(),
            claimed_at: tag(group, CLAIMED_AT_TAG).unwrap_or_default().into(),
            record_tags: {
                let keys = state_record_keys(&group.tags);
                group
                    .tags
                    .iter()
                    .filter(|(key, _)| keys.contains(key))
                    .cloned()
                    .collect()
            },
        })
    })
}

/// The record's tags as the claim may carry them beside its own: none (with the reason, for
/// the step's warnings) when they would take the group past EC2's 50 tags.
pub fn record_room(
    instance_id: &str,
    record_tags: Vec<(String, String)>,
) -> Result<Vec<(String, String)>> {
    let own = claim_tags(instance_id, "", "");
    check_tag_room(&group_name(instance_id), &own, &record_tags, &[])?;
    Ok(record_tags)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// This owner holds it (a retry of the step that took it).
    Ours,
    /// Another execution holds it and its lease runs: leave the instance to it.
    HeldBy(Claim),
    /// Another execution held it, but its lease ran out (or its time cannot be read).
    Lapsed(Claim),
}

/// Who may act on the instance, given its claim.
pub fn judge(claim: &Claim, owner: &str, now: DateTime<Utc>) -> Standing {
    if claim.owner == owner {
        return Standing::Ours;
    }
    // A claim from the future is no claim: anyone who may create a group and tag it (an
    // instance role too broad, say) could otherwise hold the instance back for ever.
    match DateTime::parse_from_rfc3339(&claim.claimed_at) {
        Ok(at) => {
            let age = (now - at.with_timezone(&Utc)).num_seconds();
            if (-CLOCK_SKEW_SECONDS..LEASE_SECONDS).contains(&age) {
                Standing::HeldBy(claim.clone())
            } else {
                Standing::Lapsed(claim.clone())
            }
        }
        Err(_) => Standing::Lapsed(claim.clone()),
    }
}

/// The time a claim records, as [`take`] writes it.
fn claim_time(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What taking the claim came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// `owner` holds it now, with the record on it.
    Ours,
    /// Another execution holds it: the instance is left to it.
    HeldBy(Claim),
    /// A group that is not Cordon's claim holds the claim's name in the VPC: someone who may
    /// create security groups there made it first, perhaps from the instance itself. It
    /// arbitrates nothing, and holds nothing back: the execution contains the instance
    /// without a claim.
    NameTaken { group_id: String },
}

/// Takes the claim on `instance_id` for `owner` in `vpc_id` (the instance's), with the
/// record's tags (`record_tags`, none when they do not fit), given the claim already seen
/// among Cordon's groups of the VPC (`seen`).
pub async fn take(
    ec2: &impl Ec2,
    vpc_id: &str,
    instance_id: &str,
    owner: &str,
    seen: Option<Claim>,
    record_tags: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<Taken> {
    let claimed_at = claim_time(now);
    let existing = match seen {
        Some(claim) => claim,
        None => match ec2
            .create_claim_group(vpc_id, instance_id, owner, &claimed_at, record_tags)
            .await
        {
            Ok(_) => return Ok(Taken::Ours),
            // Someone was first, or our own create went through and only its answer was lost:
            // read who holds it.
            Err(CordonError::GroupDuplicate { .. }) => {
                let groups = ec2.cordon_groups(&[vpc_id.to_string()]).await?;
                match claim_in(&groups, instance_id) {
                    Some(claim) => claim,
                    None => match name_holder(ec2, vpc_id, instance_id).await? {
                        NameHolder::Claim(claim) => claim,
                        NameHolder::Other(group_id) => return Ok(Taken::NameTaken { group_id }),
                    },
                }
            }
            Err(other) => return Err(other),
        },
    };
    match judge(&existing, owner, now) {
        Standing::HeldBy(holder) => Ok(Taken::HeldBy(holder)),
        // Ours, made by an earlier attempt with its record (an attempt of this execution reads
        // the same instance, as nothing has changed it yet): kept as it is, unless it lacks
        // the record (a claim of a release before the claim kept it) or its record cannot be
        // read (a takeover's two calls cut in two).
        Standing::Ours if record_tags.is_empty() || holds_a_record(&existing) => Ok(Taken::Ours),
        Standing::Ours => {
            put_record(ec2, &existing, record_tags, Vec::new()).await?;
            Ok(Taken::Ours)
        }
        Standing::Lapsed(old) => {
            let ours = vec![
                (OWNER_TAG.to_string(), owner.to_string()),
                (CLAIMED_AT_TAG.to_string(), claimed_at),
            ];
            put_record(ec2, &old, record_tags, ours).await?;
            // Two executions may take one lapsed claim over at once (tags arbitrate nothing):
            // the claim read back says who holds it now, and whether its record is whole. A
            // read that still shows the lapsed holder is EC2's eventual consistency, not
            // another taker: only a live claim of another execution is left to it (leaving
            // the instance on a stale read would keep every finding away for a lease).
            let groups = ec2.cordon_groups(&[vpc_id.to_string()]).await?;
            match claim_in(&groups, instance_id) {
                Some(now_held)
                    if now_held.owner != owner
                        && now_held.owner != old.owner
                        && matches!(judge(&now_held, owner, now), Standing::HeldBy(_)) =>
                {
                    Ok(Taken::HeldBy(now_held))
                }
                Some(now_held) if !record_tags.is_empty() && !holds_a_record(&now_held) => {
                    put_record(ec2, &now_held, record_tags, Vec::new()).await?;
                    Ok(Taken::Ours)
                }
                _ => Ok(Taken::Ours),
            }
        }
    }
}

enum NameHolder {
    Claim(Claim),
    Other(String),
}

/// Who holds the claim's name, when Cordon's groups of the VPC show no claim: a claim that
/// read did not show yet (EC2 is eventually consistent), or a group that is no claim. Cordon
/// tags a claim in the call that creates it, so a group of the name without those tags was
/// never one.
async fn name_holder(ec2: &impl Ec2, vpc_id: &str, instance_id: &str) -> Result<NameHolder> {
    let not_yet = || CordonError::Unavailable {
        operation: "CreateSecurityGroup".into(),
        message: format!(
            "{} exists in {vpc_id} but cannot be read yet",
            group_name(instance_id)
        ),
    };
    let group = ec2
        .group_named(vpc_id, &group_name(instance_id))
        .await?
        .ok_or_else(not_yet)?;
    Ok(match claim_in(std::slice::from_ref(&group), instance_id) {
        Some(claim) => NameHolder::Claim(claim),
        None => NameHolder::Other(group.id),
    })
}

/// Whether the claim's record tags join into a record.
fn holds_a_record(claim: &Claim) -> bool {
    crate::record::state_from_tags(&claim.instance_id, &claim.record_tags)
        .is_ok_and(|record| record.is_some())
}

/// Writes `record_tags` (and `also`) on the claim, then drops the chunks of the record it held
/// past the new one's end, which would otherwise be joined to it.
async fn put_record(
    ec2: &impl Ec2,
    claim: &Claim,
    record_tags: &[(String, String)],
    also: Vec<(String, String)>,
) -> Result<()> {
    let mut tags = also;
    tags.extend(record_tags.iter().cloned());
    if !tags.is_empty() {
        ec2.create_tags(&claim.group_id, &tags).await?;
    }
    let stale: Vec<String> = claim
        .record_tags
        .iter()
        .map(|(key, _)| key.clone())
        .filter(|key| !record_tags.iter().any(|(new, _)| new == key))
        .collect();
    if !stale.is_empty() {
        ec2.delete_tags(&claim.group_id, &stale).await?;
    }
    Ok(())
}

/// The record kept of `instance` (as [`crate::record::kept_record`]), its claim read from
/// Cordon's groups of the instance's VPCs.
pub async fn kept_record_of(
    ec2: &impl Ec2,
    instance: &crate::ec2::Instance,
) -> Result<Option<crate::record::CapturedState>> {
    let groups = ec2.cordon_groups(&instance.vpc_ids()).await?;
    let claim = claim_in(&groups, &instance.id);
    crate::record::kept_record(
        &instance.id,
        claim.as_ref().map(|claim| claim.record_tags.as_slice()),
        &instance.tags,
        Utc::now(),
    )
}

/// The instances whose claims keep a record, anywhere in the region: those an execution has
/// captured and not yet restored.
pub async fn claimed_with_records(ec2: &impl Ec2) -> Result<Vec<String>> {
    let groups = ec2.cordon_groups_anywhere().await?;
    let mut instances: Vec<String> = groups
        .iter()
        .filter_map(|group| {
            let instance_id = tag(group, INSTANCE_TAG)?;
            claim_in(std::slice::from_ref(group), instance_id)
                .filter(|claim| !claim.record_tags.is_empty())
                .map(|claim| claim.instance_id)
        })
        .collect();
    instances.sort();
    instances.dedup();
    Ok(instances)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{block_on, FakeEc2};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    fn claim(owner: &str, claimed_at: &str) -> Claim {
        Claim {
            group_id: "sg-claim".into(),
            vpc_id: "vpc-00000001".into(),
            instance_id: "i-00000001".into(),
            owner: owner.into(),
            claimed_at: claimed_at.into(),
            record_tags: Vec::new(),
        }
    }

    #[test]
    fn a_claim_holds_others_back_for_the_lease_and_never_its_owner() {
        let held = claim("exec-a", "2026-11-30T10:00:00.000Z");
        assert_eq!(
            judge(&held, "exec-a", at("2026-11-30T12:00:00Z")),
            Standing::Ours
        );
        assert_eq!(
            judge(&held, "exec-b", at("2026-11-30T10:09:59Z")),
            Standing::HeldBy(held.clone())
        );
        assert_eq!(
            judge(&held, "exec-b", at("2026-11-30T10:10:00Z")),
            Standing::Lapsed(held.clone())
        );
        // A claim whose time cannot be read guards nothing: containment must never be blocked.
        let unreadable = claim("exec-a", "yesterday");
        assert_eq!(
            judge(&unreadable, "exec-b", at("2026-11-30T10:00:00Z")),
            Standing::Lapsed(unreadable.clone())
        );
    }

    #[test]
    fn the_first_execution_creates_the_claim_and_the_next_one_backs_off() {
        let ec2 = FakeEc2::standard();
        let now = at("2026-11-30T10:00:00Z");
        assert_eq!(
            block_on(take(&ec2, "vpc-1", "i-00000001", "exec-a", None, &[], now)).unwrap(),
            Taken::Ours
        );
        let Taken::HeldBy(holder) =
            block_on(take(&ec2, "vpc-1", "i-00000001", "exec-b", None, &[], now)).unwrap()
        else {
            panic!("exec-a holds it")
        };
        assert_eq!(holder.owner, "exec-a");
        // exec-a's own retry, after its create went through unanswered, goes on.
        assert_eq!(
            block_on(take(&ec2, "vpc-1", "i-00000001", "exec-a", None, &[], now)).unwrap(),
            Taken::Ours
        );
        let groups = ec2.with(|s| s.groups.values().cloned().collect::<Vec<_>>());
        assert_eq!(claim_in(&groups, "i-00000001").unwrap().owner, "exec-a");
    }

    #[test]
    fn a_claim_dated_in_the_future_holds_nothing_back() {
        // Planted by whoever may create and tag a group, dated years ahead.
        let planted = claim("attacker", "2099-01-01T00:00:00.000Z");
        assert_eq!(
            judge(&planted, "exec-b", at("2026-11-30T10:00:00Z")),
            Standing::Lapsed(planted.clone())
        );
        // Another Lambda's clock a little ahead is still a claim.
        let ahead = claim("exec-a", "2026-11-30T10:00:30.000Z");
        assert_eq!(
            judge(&ahead, "exec-b", at("2026-11-30T10:00:00Z")),
            Standing::HeldBy(ahead.clone())
        );
    }

    #[test]
    fn an_own_claim_whose_record_does_not_join_is_written_again() {
        let ec2 = FakeEc2::standard();
        let now = at("2026-11-30T10:00:00Z");
        let record = |groups: &str| {
            crate::record::state_tags(&crate::record::CapturedState {
                version: crate::record::RECORD_VERSION,
                instance_id: "i-00000001".into(),
                finding_id: None,
                finding_type: None,
                captured_at: "2026-11-30T10:00:00.000Z".into(),
                instance_state: "running".into(),
                termination_protection: false,
                shutdown_behavior: None,
                interfaces: vec![crate::ec2::NetworkInterface {
                    id: "eni-1".into(),
                    groups: vec![groups.to_string()],
                    ..Default::default()
                }],
            })
        };
        let ours = record("sg-app");
        block_on(take(
            &ec2,
            "vpc-1",
            "i-00000001",
            "exec-a",
            None,
            &ours,
            now,
        ))
        .unwrap();
        // A takeover's CreateTags and DeleteTags cut in two left a chunk of another record.
        ec2.with(|s| {
            let claim = s
                .groups
                .values_mut()
                .find(|g| g.id.starts_with("sg-claim"))
                .unwrap();
            claim.tags.push(("cordon:state:7".into(), "stray".into()));
        });
        let groups = || ec2.with(|s| s.groups.values().cloned().collect::<Vec<_>>());
        let seen = claim_in(&groups(), "i-00000001");
        assert!(!holds_a_record(seen.as_ref().unwrap()));
        block_on(take(
            &ec2,
            "vpc-1",
            "i-00000001",
            "exec-a",
            seen,
            &ours,
            now,
        ))
        .unwrap();
        let repaired = claim_in(&groups(), "i-00000001").unwrap();
        assert!(holds_a_record(&repaired));
        assert_eq!(repaired.record_tags.len(), ours.len());
        // A whole record of ours is kept as it is: no call.
        ec2.clear_calls();
        block_on(take(
            &ec2,
            "vpc-1",
            "i-00000001",
            "exec-a",
            Some(repaired),
            &ours,
            now,
        ))
        .unwrap();
        assert!(ec2.calls().is_empty(), "{:?}", ec2.calls());
    }

    #[test]
    fn a_lapsed_claim_is_taken_over_in_place() {
        let ec2 = FakeEc2::standard();
        block_on(take(
            &ec2,
            "vpc-1",
            "i-00000001",
            "exec-a",
            None,
            &[],
            at("2026-11-30T10:00:00Z"),
        ))
        .unwrap();
        let groups = ec2.with(|s| s.groups.values().cloned().collect::<Vec<_>>());
        let seen = claim_in(&groups, "i-00000001");
        let later = at("2026-11-30T11:00:00Z");
        assert_eq!(
            block_on(take(
                &ec2,
                "vpc-1",
                "i-00000001",
                "exec-b",
                seen,
                &[],
                later
            ))
            .unwrap(),
            Taken::Ours
        );
        let groups = ec2.with(|s| s.groups.values().cloned().collect::<Vec<_>>());
        let now_held = claim_in(&groups, "i-00000001").unwrap();
        assert_eq!(now_held.owner, "exec-b");
        assert_eq!(now_held.claimed_at, "2026-11-30T11:00:00.000Z");
        assert_eq!(
            groups.iter().filter(|g| g.vpc_id == "vpc-1").count(),
            3,
            "sg-app, sg-ssh and the one claim group"
        );
    }
}
