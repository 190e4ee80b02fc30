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

use chrono::{DateTime, Utc};

use crate::ec2::{Ec2, SecurityGroup};
use crate::error::{CordonError, Result};

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
    pub instance_id: String,
    pub owner: String,
    pub claimed_at: String,
}

pub fn group_name(instance_id: &str) -> String {
    format!("cordon-claim-{instance_id}")
}

pub fn description(instance_id: &str) -> String {
    format!("Cordon: claim of one quarantine execution on {instance_id}; attached to nothing, deleted on restore")
}

/// The tags a new claim group carries.
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

/// The claim on `instance_id` among Cordon's groups, if there is one.
pub fn claim_in(groups: &[SecurityGroup], instance_id: &str) -> Option<Claim> {
    groups.iter().find_map(|group| {
        (tag(group, crate::ec2::GroupRole::TAG_KEY) == Some(CLAIM_ROLE)
            && tag(group, INSTANCE_TAG) == Some(instance_id))
        .then(|| Claim {
            group_id: group.id.clone(),
            instance_id: instance_id.into(),
            owner: tag(group, OWNER_TAG).unwrap_or_default().into(),
            claimed_at: tag(group, CLAIMED_AT_TAG).unwrap_or_default().into(),
        })
    })
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

/// Creates the claim group of `instance_id` for `owner` in `vpc_id` before anything else is
/// known of the instance: capture does it alongside its first reads, in the VPC the finding
/// names, so that taking the claim costs no round trip of its own. Returns the group's id;
/// `GroupDuplicate` when a claim exists (then [`take`] decides who holds it).
pub async fn create_early(
    ec2: &impl Ec2,
    vpc_id: &str,
    instance_id: &str,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<String> {
    ec2.create_claim_group(vpc_id, instance_id, owner, &claim_time(now))
        .await
}

/// Takes the claim on `instance_id` for `owner`, given the claim already seen among Cordon's
/// groups of the VPC (`seen`). Returns `None` when `owner` holds it now, or the claim of the
/// execution that holds it.
pub async fn take(
    ec2: &impl Ec2,
    vpc_id: &str,
    instance_id: &str,
    owner: &str,
    seen: Option<Claim>,
    now: DateTime<Utc>,
) -> Result<Option<Claim>> {
    let claimed_at = claim_time(now);
    let existing = match seen {
        Some(claim) => claim,
        None => match ec2
            .create_claim_group(vpc_id, instance_id, owner, &claimed_at)
            .await
        {
            Ok(_) => return Ok(None),
            // Someone was first, or our own create went through and only its answer was lost:
            // read who holds it.
            Err(CordonError::GroupDuplicate { .. }) => {
                let groups = ec2.cordon_groups(&[vpc_id.to_string()]).await?;
                claim_in(&groups, instance_id).ok_or_else(|| CordonError::Unavailable {
                    operation: "CreateSecurityGroup".into(),
                    message: format!(
                        "{} exists in {vpc_id} but cannot be read yet",
                        group_name(instance_id)
                    ),
                })?
            }
            Err(other) => return Err(other),
        },
    };
    match judge(&existing, owner, now) {
        Standing::Ours => Ok(None),
        Standing::HeldBy(holder) => Ok(Some(holder)),
        Standing::Lapsed(old) => {
            let tags = vec![
                (OWNER_TAG.to_string(), owner.to_string()),
                (CLAIMED_AT_TAG.to_string(), claimed_at),
            ];
            ec2.create_tags(&old.group_id, &tags).await?;
            Ok(None)
        }
    }
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
            instance_id: "i-00000001".into(),
            owner: owner.into(),
            claimed_at: claimed_at.into(),
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
            block_on(take(&ec2, "vpc-1", "i-00000001", "exec-a", None, now)).unwrap(),
            None
        );
        let holder = block_on(take(&ec2, "vpc-1", "i-00000001", "exec-b", None, now))
            .unwrap()
            .expect("exec-a holds it");
        assert_eq!(holder.owner, "exec-a");
        // exec-a's own retry, after its create went through unanswered, goes on.
        assert_eq!(
            block_on(take(&ec2, "vpc-1", "i-00000001", "exec-a", None, now)).unwrap(),
            None
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
    fn a_lapsed_claim_is_taken_over_in_place() {
        let ec2 = FakeEc2::standard();
        block_on(take(
            &ec2,
            "vpc-1",
            "i-00000001",
            "exec-a",
            None,
            at("2026-11-30T10:00:00Z"),
        ))
        .unwrap();
        let groups = ec2.with(|s| s.groups.values().cloned().collect::<Vec<_>>());
        let seen = claim_in(&groups, "i-00000001");
        let later = at("2026-11-30T11:00:00Z");
        assert_eq!(
            block_on(take(&ec2, "vpc-1", "i-00000001", "exec-b", seen, later)).unwrap(),
            None
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
