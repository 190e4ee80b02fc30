//! Credentials: an instance's role credentials are often what the attacker came for, and
//! isolating the network does not stop copies already taken off the instance. This measure
//! denies every action to the credentials EC2 issued *for this instance*, wherever they are
//! used, while the role's other instances keep working; restore gives the role back its
//! tags and managed policies as they were.
//!
//! How (see the README's "Cutting an instance's credentials"): every session EC2 creates for
//! an instance profile carries the instance's ARN in its token, and IAM puts it in the request
//! context as `ec2:SourceInstanceARN` for every call made with those credentials, from the
//! instance or from anywhere else, fresh ones included. Cordon's stack deploys one
//! customer-managed policy, `cordon/cordon-deny-quarantined-instances`, that denies `*` when
//! `ec2:SourceInstanceARN` equals one of the role's tags `cordon-quarantine-0` ..
//! `cordon-quarantine-9` (as `${aws:PrincipalTag/...}` policy variables; an absent tag
//! matches nothing). Cutting an instance attaches that policy to its role and writes the
//! instance's ARN in a free slot tag. Cordon's roles may attach and detach only that policy
//! (`iam:PolicyARN`) and write only `cordon-quarantine-*` tags (`aws:TagKeys`), and cannot
//! edit the policy: the permission cannot grant anything to anyone.

pub mod aws;
pub mod port;

use serde::{Deserialize, Serialize};

use super::{Measure, MeasureStatus, Phase};
use crate::ec2::Ec2;
use crate::error::{CordonError, Result, StepError};
pub use port::{Iam, IamProvider};

pub const MEASURE: Measure = Measure {
    id: "credentials",
    state: "CutCredentials",
    title: "instance credentials",
    actions: &[
        // A finding about the credentials used elsewhere: whether the profile still holds
        // their role.
        (Phase::Capture, "iam:GetInstanceProfile"),
        (Phase::Apply, "ec2:DescribeInstances"),
        (Phase::Apply, "iam:GetInstanceProfile"),
        (Phase::Apply, "iam:ListRoleTags"),
        (Phase::Apply, "iam:ListAttachedRolePolicies"),
        (Phase::Apply, "iam:AttachRolePolicy"),
        (Phase::Apply, "iam:TagRole"),
        (Phase::Restore, "ec2:DescribeInstances"),
        (Phase::Restore, "iam:GetInstanceProfile"),
        (Phase::Restore, "iam:ListRoleTags"),
        (Phase::Restore, "iam:ListAttachedRolePolicies"),
        (Phase::Restore, "iam:UntagRole"),
        (Phase::Restore, "iam:DetachRolePolicy"),
        // A cut of another instance of the role landing as the restore detaches.
        (Phase::Restore, "iam:AttachRolePolicy"),
    ],
};

/// The deny policy's path and name, as the template and the member-role stack create it.
pub const POLICY_PATH: &str = "/cordon/";
pub const POLICY_NAME: &str = "cordon-deny-quarantined-instances";
/// The role's slot tags, `cordon-quarantine-0` .. `cordon-quarantine-9`: as many instances
/// of one role can be cut at once as the policy names slots.
pub const SLOT_PREFIX: &str = "cordon-quarantine-";
pub const SLOTS: usize = 10;
/// Times a cut looks for another slot when a concurrent run for another instance of the same
/// role overwrote the one it wrote.
const SLOT_ATTEMPTS: usize = 3;

pub fn slot_key(slot: usize) -> String {
    format!("{SLOT_PREFIX}{slot}")
}

fn slot_of(key: &str) -> Option<usize> {
    key.strip_prefix(SLOT_PREFIX)?
        .parse()
        .ok()
        .filter(|slot| *slot < SLOTS)
}

/// The deny policy's document, as the template and the member-role stack deploy it (a
/// definition test compares them): one Deny of everything per slot, for the credentials of the
/// instance the slot tag names. A policy variable naming an absent tag makes its condition
/// match nothing, and each slot is a statement of its own so that it can void no other.
pub fn deny_policy_document() -> serde_json::Value {
    let statements: Vec<serde_json::Value> = (0..SLOTS)
        .map(|slot| {
            serde_json::json!({
                "Sid": format!("DenyQuarantinedInstanceSlot{slot}"),
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"ArnEquals": {
                    "ec2:SourceInstanceARN": format!("${{aws:PrincipalTag/{}}}", slot_key(slot))
                }}
            })
        })
        .collect();
    serde_json::json!({"Version": "2012-10-17", "Statement": statements})
}

/// The deny policy's ARN in the instance's partition and account.
pub fn policy_arn(partition: &str, account: &str) -> String {
    format!("arn:{partition}:iam::{account}:policy{POLICY_PATH}{POLICY_NAME}")
}

/// What an instance profile's ARN says: `arn:PARTITION:iam::ACCOUNT:instance-profile/PATH/NAME`.
/// The ARN comes from EC2's DescribeInstances, not from the finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileArn {
    pub partition: String,
    pub account: String,
    pub name: String,
}

impl ProfileArn {
    pub fn parse(arn: &str) -> Result<Self> {
        let bad = || {
            CordonError::InvalidInput(format!(
                "{arn:?} is not an instance profile ARN (arn:PARTITION:iam::ACCOUNT:instance-profile/NAME)"
            ))
        };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, "iam", "", account, resource] = parts[..] else {
            return Err(bad());
        };
        let name = resource
            .strip_prefix("instance-profile/")
            .and_then(|path| path.rsplit('/').next())
            .filter(|name| !name.is_empty())
            .ok_or_else(bad)?;
        if prefix != "arn"
            || partition.is_empty()
            || account.len() != 12
            || !account.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        Ok(ProfileArn {
            partition: partition.into(),
            account: account.into(),
            name: name.into(),
        })
    }

    /// The instance's ARN, as IAM compares it with `ec2:SourceInstanceARN`.
    pub fn instance_arn(&self, region: &str, instance_id: &str) -> String {
        format!(
            "arn:{}:ec2:{region}:{}:instance/{instance_id}",
            self.partition, self.account
        )
    }
}

/// What the cut wrote, and what restore takes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub role: String,
    pub instance_arn: String,
    pub policy_arn: String,
    /// The slot tag holding the instance's ARN.
    pub slot: String,
    /// The deny policy was on the role already, with no instance of it cut: someone put it
    /// there, and restore leaves it. (A retried cut that finds its own slot cannot tell, and
    /// says false: the policy denies nothing once no slot names an instance.)
    pub policy_attached_before: bool,
}

/// What the cut plans for the role, from its tags and whether the policy is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// A slot already names the instance (a retry of this run): nothing to write.
    AlreadyCut { slot: String },
    Write {
        slot: String,
        attach: bool,
        attached_before: bool,
    },
    /// No slot can be written: why.
    NoRoom(String),
}

/// The first slot to try: spread by instance id, so that concurrent runs for instances of
/// one role seldom reach for the same slot.
fn first_slot(instance_id: &str) -> usize {
    instance_id.bytes().fold(0usize, |hash, b| {
        hash.wrapping_mul(31).wrapping_add(b as usize)
    }) % SLOTS
}

pub fn plan_cut(
    role: &str,
    instance_id: &str,
    instance_arn: &str,
    tags: &[(String, String)],
    attached: bool,
) -> Cut {
    if let Some((key, _)) = tags
        .iter()
        .find(|(key, value)| slot_of(key).is_some() && value == instance_arn)
    {
        return Cut::AlreadyCut { slot: key.clone() };
    }
    let taken = |slot: usize| {
        tags.iter()
            .any(|(key, value)| slot_of(key) == Some(slot) && !value.is_empty())
    };
    let start = first_slot(instance_id);
    let Some(slot) = (0..SLOTS).map(|n| (start + n) % SLOTS).find(|s| !taken(*s)) else {
        return Cut::NoRoom(format!(
            "role {role} already has {SLOTS} instances cut (its tags {SLOT_PREFIX}0..{}): release one first",
            SLOTS - 1
        ));
    };
    let key = slot_key(slot);
    let exists = tags.iter().any(|(k, _)| *k == key);
    if !exists && tags.len() >= port::MAX_ROLE_TAGS {
        return Cut::NoRoom(format!(
            "role {role} has {} tags, IAM's limit: remove one so Cordon can write {key}",
            port::MAX_ROLE_TAGS
        ));
    }
    let quarantined = tags
        .iter()
        .any(|(key, value)| slot_of(key).is_some() && !value.is_empty());
    Cut::Write {
        slot: key,
        attach: !attached,
        attached_before: attached && !quarantined,
    }
}

/// What restore does with the role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The slot tags that name the instance.
    pub untag: Vec<String>,
    /// Detach the deny policy: no other instance of the role stays cut, and it was not on
    /// the role before Cordon.
    pub detach: bool,
}

pub fn plan_release(
    instance_arn: &str,
    tags: &[(String, String)],
    attached: bool,
    attached_before: bool,
) -> Release {
    let untag: Vec<String> = tags
        .iter()
        .filter(|(key, value)| slot_of(key).is_some() && value == instance_arn)
        .map(|(key, _)| key.clone())
        .collect();
    let others = tags
        .iter()
        .any(|(key, value)| slot_of(key).is_some() && !value.is_empty() && value != instance_arn);
    Release {
        untag,
        detach: attached && !others && !attached_before,
    }
}

/// What the cut did, or found, for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub instance_id: String,
    pub status: MeasureStatus,
    /// None: nothing was written (no role, or it failed before).
    pub record: Option<Record>,
    pub notes: Vec<String>,
    pub errors: Vec<StepError>,
}

impl Report {
    fn new(instance_id: &str) -> Self {
        Report {
            instance_id: instance_id.into(),
            status: MeasureStatus::Done,
            record: None,
            notes: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn not_applicable(instance_id: &str, why: String) -> Self {
        Report {
            status: MeasureStatus::NotApplicable,
            notes: vec![why],
            ..Report::new(instance_id)
        }
    }

    fn failed(mut self, error: &str, cause: String) -> Self {
        self.status = MeasureStatus::Partial;
        self.errors.push(StepError {
            error: error.into(),
            cause,
        });
        self
    }

    /// One line for the email and the page (the errors are listed apart).
    pub fn line(&self) -> String {
        let mut line = match &self.record {
            Some(record) => format!(
                "role {}: every call made with this instance's credentials is denied, copies taken off it included ({} names it); the role's other instances keep working",
                record.role, record.slot
            ),
            None => "not cut".into(),
        };
        for note in &self.notes {
            line.push_str("; ");
            line.push_str(note);
        }
        line
    }
}

/// The instance's role, from its instance profile; Err(report) when there is nothing to cut.
async fn role_of(
    ec2: &impl Ec2,
    iam: &impl Iam,
    instance_id: &str,
) -> Result<std::result::Result<(ProfileArn, String), String>> {
    let instance = ec2.describe_instance(instance_id).await?;
    let Some(profile_arn) = instance.instance_profile_arn else {
        return Ok(Err("no instance profile: it has no role credentials".into()));
    };
    let profile = ProfileArn::parse(&profile_arn)?;
    Ok(match iam.profile_role(&profile.name).await? {
        Some(role) => Ok((profile, role)),
        None => Err(format!(
            "instance profile {} holds no role: it has no role credentials",
            profile.name
        )),
    })
}

/// For a finding about an instance's credentials used elsewhere: what is wrong with the
/// instance's profile now, if it no longer holds `role` (None: it does, or the instance is
/// gone, which capture reports). Said, never a reason to leave the instance alone: whoever
/// holds the credentials may have removed or swapped the profile to escape containment, and
/// then the cut reaches the profile's role now, not `role`'s copies; the warning says so.
pub async fn credentials_not_of(
    ec2: &impl Ec2,
    iam: &impl Iam,
    instance_id: &str,
    role: &str,
) -> Result<Option<String>> {
    let seen = format!(
        "GuardDuty saw role {role}'s credentials of {instance_id} used elsewhere, but the instance"
    );
    let tail = format!("role {role}'s credentials of this instance are not cut: attach Cordon's deny policy to {role} and tag it cordon-quarantine-N with the instance's ARN, or revoke {role}'s sessions");
    Ok(match role_of(ec2, iam, instance_id).await {
        Ok(Ok((_, actual))) if actual == role => None,
        Ok(Ok((_, actual))) => Some(format!("{seen}'s profile now holds role {actual}: {tail}")),
        Ok(Err(why)) => Some(format!("{seen} has {why}: {tail}")),
        Err(CordonError::InstanceNotFound { .. }) => None,
        // Throttling: the step's to retry. Anything else (an IAM refusal) only leaves the
        // profile unknown: the instance is contained all the same, and the warning says so.
        Err(error) if error.is_transient() => return Err(error),
        Err(error) => Some(format!(
            "GuardDuty saw role {role}'s credentials of {instance_id} used elsewhere; whether its profile still holds {role} could not be read ({}): if not, {tail}",
            error.error_name()
        )),
    })
}

/// Cuts the credentials of `instance_id` (in `region`): attaches the deny policy to its role
/// if it is not, and names the instance in a free slot tag, checked by reading it back (a
/// concurrent cut for another instance of the role may have taken the same slot: then
/// another one). Throttling and no answer fail the step for a retry; anything else is
/// reported, and the network isolation stands either way.
pub async fn cut(
    ec2: &impl Ec2,
    iam: &impl Iam,
    instance_id: &str,
    region: &str,
) -> Result<Report> {
    let (profile, role) = match role_of(ec2, iam, instance_id).await? {
        Ok(found) => found,
        Err(why) => return Ok(Report::not_applicable(instance_id, why)),
    };
    let instance_arn = profile.instance_arn(region, instance_id);
    let policy_arn = policy_arn(&profile.partition, &profile.account);
    let report = Report::new(instance_id);
    for _ in 0..SLOT_ATTEMPTS {
        let (tags, attached) = tokio::join!(iam.role_tags(&role), iam.attached_policies(&role));
        let (tags, attached) = (tags?, attached?.contains(&policy_arn));
        let plan = plan_cut(&role, instance_id, &instance_arn, &tags, attached);
        let (slot, attached_before) = match plan {
            Cut::NoRoom(why) => return Ok(report.failed("Cordon.IamError", why)),
            // A retry: the slot is there already.
            Cut::AlreadyCut { slot } => (slot, false),
            Cut::Write {
                slot,
                attach,
                attached_before,
            } => {
                // The policy first: alone it denies nothing, and the slot tag is what cuts.
                if attach {
                    if let Err(error) = iam.attach_role_policy(&role, &policy_arn).await {
                        return refused(report, &role, &policy_arn, error);
                    }
                }
                if let Err(error) = iam.tag_role(&role, &slot, &instance_arn).await {
                    return refused(report, &role, &policy_arn, error);
                }
                let now = iam.role_tags(&role).await?;
                if !now.iter().any(|(k, v)| *k == slot && *v == instance_arn) {
                    continue;
                }
                (slot, attached_before)
            }
        };
        // A restore of the role's last other cut instance may have detached the policy
        // between our read and our slot (or before a retry): the slot alone denies nothing.
        if !iam.attached_policies(&role).await?.contains(&policy_arn) {
            if let Err(error) = iam.attach_role_policy(&role, &policy_arn).await {
                return refused(report, &role, &policy_arn, error);
            }
        }
        let mut report = report;
        report.record = Some(Record {
            role,
            instance_arn,
            policy_arn,
            slot,
            policy_attached_before: attached_before,
        });
        report.notes.push(
            "IAM applies it within seconds, at times minutes; the instance's agents that use the role (SSM, CloudWatch) are cut too".into(),
        );
        return Ok(report);
    }
    Ok(report.failed(
        "Cordon.IamError",
        format!("role {role}: another run took the slot written for this instance {SLOT_ATTEMPTS} times: not cut; run `cordon isolate` again"),
    ))
}

/// What [`cut`] would do, in report-only mode: the same reads and plan; nothing written to
/// the role.
pub async fn plan_only(
    ec2: &impl Ec2,
    iam: &impl Iam,
    instance_id: &str,
    region: &str,
) -> Result<Report> {
    let (profile, role) = match role_of(ec2, iam, instance_id).await? {
        Ok(found) => found,
        Err(why) => return Ok(Report::not_applicable(instance_id, why)),
    };
    let instance_arn = profile.instance_arn(region, instance_id);
    let policy_arn = policy_arn(&profile.partition, &profile.account);
    let (tags, attached) = tokio::join!(iam.role_tags(&role), iam.attached_policies(&role));
    let (tags, attached) = (tags?, attached?.contains(&policy_arn));
    let note = match plan_cut(&role, instance_id, &instance_arn, &tags, attached) {
        // What a containment would fail at is a failure of the plan too.
        Cut::NoRoom(why) => return Ok(Report::new(instance_id).failed("Cordon.IamError", why)),
        Cut::AlreadyCut { .. } if !attached => format!(
            "role {role}: its credentials on this instance are marked cut, but the policy {policy_arn} is not attached: would attach it"
        ),
        Cut::AlreadyCut { .. } => {
            format!("role {role}: its credentials on this instance are cut already")
        }
        Cut::Write { slot, attach, .. } => format!(
            "role {role}: would deny the credentials it gave this instance, wherever they are used (role tag {slot} = {instance_arn}{})",
            if attach {
                format!(", with the policy {policy_arn} attached")
            } else {
                String::new()
            }
        ),
    };
    Ok(Report {
        status: MeasureStatus::ReportOnly,
        notes: vec![note],
        ..Report::new(instance_id)
    })
}

/// An IAM refusal as the report says it: what was wrong and what to do. Throttling and no
/// answer are the step's to retry.
fn refused(report: Report, role: &str, policy_arn: &str, error: CordonError) -> Result<Report> {
    if error.is_transient() {
        return Err(error);
    }
    let cause = match &error {
        CordonError::Iam { code, operation, .. }
            if code == "NoSuchEntity" && operation == "iam:AttachRolePolicy" =>
        {
            format!("Cordon's deny policy {policy_arn} is not in this account: deploy Cordon's stack (or its member-role stack) here; the credentials still work")
        }
        CordonError::Iam { code, .. } if code == "LimitExceeded" => format!(
            "role {role} is at an IAM limit ({error}): the credentials still work; detach a managed policy from it or raise the quota, then run `cordon isolate` again"
        ),
        _ => format!("role {role}: {error}; the credentials still work"),
    };
    Ok(report.failed(error.error_name(), cause))
}

/// The role and slot that cut `instance_id`'s credentials now, if any (`cordon status`).
pub async fn cut_of(
    ec2: &impl Ec2,
    iam: &impl Iam,
    instance_id: &str,
    region: &str,
) -> Result<Option<(String, String)>> {
    let Ok((profile, role)) = role_of(ec2, iam, instance_id).await? else {
        return Ok(None);
    };
    let arn = profile.instance_arn(region, instance_id);
    Ok(iam
        .role_tags(&role)
        .await?
        .into_iter()
        .find(|(key, value)| slot_of(key).is_some() && *value == arn)
        .map(|(slot, _)| (role, slot)))
}

/// What restore did for the role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub role: String,
    /// The slot tags naming the instance that were removed.
    pub released: Vec<String>,
    pub policy_detached: bool,
    pub notes: Vec<String>,
}

impl RestoreReport {
    /// One line for the restored email.
    pub fn line(&self) -> String {
        let mut line = format!(
            "  Credentials of role {}: {}",
            self.role,
            if self.released.is_empty() {
                "nothing of this instance's to release"
            } else {
                "working again"
            }
        );
        if self.policy_detached {
            line.push_str(", Cordon's deny policy detached");
        }
        for note in &self.notes {
            line.push_str("; ");
            line.push_str(note);
        }
        line
    }
}

/// Gives the role back what the cut changed: the slot tags naming the instance, and the deny
/// policy once no other instance of the role is cut (unless it was there before). `record`
/// is the workflow's (the branch's output); without one (`cordon restore`) the role is found
/// from the instance's profile, and only slots naming this instance are touched.
pub async fn restore(
    ec2: &impl Ec2,
    iam: &impl Iam,
    instance_id: &str,
    region: &str,
    record: Option<Record>,
) -> Result<Option<RestoreReport>> {
    let (role, instance_arn, policy_arn, attached_before) = match record {
        Some(record) => (
            record.role,
            record.instance_arn,
            record.policy_arn,
            record.policy_attached_before,
        ),
        None => match role_of(ec2, iam, instance_id).await? {
            Ok((profile, role)) => (
                role,
                profile.instance_arn(region, instance_id),
                policy_arn(&profile.partition, &profile.account),
                false,
            ),
            Err(_) => return Ok(None),
        },
    };
    let (tags, attached) = tokio::join!(iam.role_tags(&role), iam.attached_policies(&role));
    let (tags, attached) = (tags?, attached?.contains(&policy_arn));
    let release = plan_release(&instance_arn, &tags, attached, attached_before);
    if !release.untag.is_empty() {
        iam.untag_role(&role, &release.untag).await?;
    }
    let mut notes = Vec::new();
    let mut detached = false;
    if release.detach {
        match iam.detach_role_policy(&role, &policy_arn).await {
            Ok(()) => detached = true,
            // Detached meanwhile (another restore of the role's last two): what was wanted.
            Err(CordonError::Iam { code, .. }) if code == "NoSuchEntity" => detached = true,
            Err(error) => return Err(error),
        }
        // A cut of another instance of the role may have written its slot after our read,
        // finding the policy still attached: it must stay.
        let now = iam.role_tags(&role).await?;
        if now
            .iter()
            .any(|(k, v)| slot_of(k).is_some() && !v.is_empty() && *v != instance_arn)
        {
            iam.attach_role_policy(&role, &policy_arn).await?;
            detached = false;
            notes.push(
                "another instance of the role was cut meanwhile: Cordon's deny stays attached for it"
                    .into(),
            );
        }
    }
    if !release.untag.is_empty() {
        notes.push("IAM applies it within seconds, at times minutes".into());
    }
    Ok(Some(RestoreReport {
        role,
        released: release.untag,
        policy_detached: detached,
        notes,
    }))
}

/// The cut step, on the capture's output (`$`): in the finding's account and region, for an instance the capture recorded.
pub async fn cut_step(
    ec2_in: &impl crate::ec2::Ec2Provider,
    iam_in: &impl IamProvider,
    capture: &crate::capture::CaptureOutput,
) -> Result<Report> {
    let record = crate::steps::record_of(capture)?;
    let target = crate::steps::target_of(capture);
    crate::ec2::check_target_ids(
        &record.instance_id,
        target.account_id.as_deref(),
        target.region.as_deref(),
    )?;
    let region = region_for(iam_in, &target)?;
    let ec2 = ec2_in.ec2_for(&target).await?;
    let iam = iam_in.iam_for(&target).await?;
    if capture.status == crate::capture::CaptureStatus::ReportOnly {
        let (ec2, iam) = (
            crate::report_only::ReadOnly(&ec2),
            crate::report_only::ReadOnly(&iam),
        );
        return plan_only(&ec2, &iam, &record.instance_id, &region).await;
    }
    cut(&ec2, &iam, &record.instance_id, &region).await
}

/// The instance's region, which its ARN names: without it the deny would match nothing.
pub fn region_for(iam_in: &impl IamProvider, target: &crate::ec2::Target) -> Result<String> {
    iam_in.region_of(target).ok_or_else(|| {
        CordonError::InvalidInput(
            "no region for the instance's ARN: the finding names none and none is configured (AWS_REGION)".into(),
        )
    })
}

#[cfg(test)]
mod tests;
