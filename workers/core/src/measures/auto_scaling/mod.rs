//! Auto Scaling: an isolated instance fails its health checks, and its group would terminate
//! it (termination protection does not stop a group) and with it the evidence and the
//! restore. So an instance in a group is moved to `Standby`: still in the group, out of
//! service and out of the group's load balancers, spared by health checks and scale-in. An
//! instance that cannot enter standby (not InService yet) is protected from scale-in instead,
//! and the report says what that does not stop. On restore, after the network is given back,
//! the instance returns to service only if Cordon put it in standby, and the group's desired
//! capacity ends as it was.
//!
//! Standby runs beside the network isolation (a branch of the Contain state), not before it:
//! a group replaces an instance only after consecutive failed health checks (at least two at
//! five seconds or more for a load balancer's, minutes for EC2's status checks), and the
//! EnterStandby call is made in the same second isolation starts; waiting for it first would
//! delay isolation for every instance, in a group or not.

pub mod aws;
pub mod port;

use serde::{Deserialize, Serialize};

use super::{Measure, MeasureStatus, Phase};
use crate::ec2::Ec2;
use crate::error::{CordonError, Result, StepError};
use crate::record::{chunk_keys, chunk_tags, join_chunks};
pub use port::{AutoScaling, AutoScalingProvider, Group, Membership, Refresh};
use port::{ENTERING_STANDBY, IN_SERVICE, STANDBY};

pub const MEASURE: Measure = Measure {
    id: "auto_scaling",
    state: "HoldInAutoScalingGroup",
    title: "Auto Scaling standby",
    actions: &[
        (Phase::Capture, "ec2:DescribeInstances"),
        (Phase::Capture, "ec2:CreateTags"),
        (Phase::Capture, "autoscaling:DescribeAutoScalingInstances"),
        (Phase::Capture, "autoscaling:DescribeAutoScalingGroups"),
        (Phase::Apply, "autoscaling:EnterStandby"),
        (Phase::Apply, "autoscaling:SetInstanceProtection"),
        (Phase::Apply, "autoscaling:DescribeInstanceRefreshes"),
        (Phase::Restore, "ec2:DescribeInstances"),
        (Phase::Restore, "ec2:DeleteTags"),
        (Phase::Restore, "autoscaling:DescribeAutoScalingInstances"),
        (Phase::Restore, "autoscaling:DescribeAutoScalingGroups"),
        (Phase::Restore, "autoscaling:ExitStandby"),
        (Phase::Restore, "autoscaling:SetInstanceProtection"),
        (Phase::Restore, "autoscaling:SetDesiredCapacity"),
    ],
};

/// The record's tags on the instance: `cordon:asg:0`, `cordon:asg:1`, ...
pub const RECORD_TAG_PREFIX: &str = "cordon:asg";

/// How the measure is set (`CORDON_ASG_DECREMENT_DESIRED`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Whether entering standby lowers the group's desired capacity. Off (the default), the
    /// group launches a replacement and the service keeps its capacity.
    #[serde(default)]
    pub decrement_desired: bool,
}

/// What Cordon set out to do, written with the record before it did it: a retried step, and
/// the restore, know what was Cordon's even if the call's answer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Intent {
    EnterStandby { decrement: bool },
    ProtectFromScaleIn,
    Nothing,
}

/// The instance's place in its group before Cordon changed anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub group: String,
    pub lifecycle_state: String,
    pub protected_from_scale_in: bool,
    pub desired: i32,
    pub min: i32,
    pub max: i32,
    pub intent: Intent,
}

/// What the measure plans for an instance, from where it stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    EnterStandby {
        decrement: bool,
        /// Why a decrement that was asked for is not made.
        note: Option<String>,
    },
    /// Already in standby (or entering it): nothing to do.
    AlreadyInStandby,
    /// Cannot enter standby from this state: protect it from scale-in, and say why.
    ProtectFromScaleIn(String),
    /// The group is terminating or detaching it: nothing Cordon can do stops that.
    CannotHold(String),
}

/// The plan for an instance in `group` standing as `membership`, under `settings`.
pub fn plan_hold(membership: &Membership, group: &Group, settings: Settings) -> Hold {
    let state = membership.lifecycle_state.as_str();
    match state {
        IN_SERVICE => {
            // AWS refuses a decrement below the group's minimum (moto takes it).
            let decrement = settings.decrement_desired && group.desired > group.min;
            let note = (settings.decrement_desired && !decrement).then(|| {
                format!(
                    "{} is at its minimum size ({}): its desired capacity is kept, and the group launches a replacement",
                    group.name, group.min
                )
            });
            Hold::EnterStandby { decrement, note }
        }
        STANDBY | ENTERING_STANDBY => Hold::AlreadyInStandby,
        _ if state.starts_with("Terminat") || state.starts_with("Detach") => Hold::CannotHold(
            format!(
                "{} is {state} in {}: the group is removing it, and nothing Cordon can do stops that; snapshot its volumes now if they are evidence",
                group.name, group.name
            ),
        ),
        _ => Hold::ProtectFromScaleIn(format!(
            "it is {state} in {}, and only an InService instance can enter standby: protected from scale-in instead, which does not stop the group replacing it after failed health checks",
            group.name
        )),
    }
}

impl Hold {
    fn intent(&self) -> Intent {
        match self {
            Hold::EnterStandby { decrement, .. } => Intent::EnterStandby {
                decrement: *decrement,
            },
            Hold::ProtectFromScaleIn(_) => Intent::ProtectFromScaleIn,
            Hold::AlreadyInStandby | Hold::CannotHold(_) => Intent::Nothing,
        }
    }
}

/// What the measure did, or found, for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub instance_id: String,
    pub status: MeasureStatus,
    /// The record (`None`: not in a group).
    pub record: Option<Record>,
    /// The lifecycle state and scale-in protection as Cordon left them.
    pub lifecycle_state: Option<String>,
    pub protected_from_scale_in: Option<bool>,
    pub notes: Vec<String>,
    pub errors: Vec<StepError>,
}

impl Report {
    fn not_in_a_group(instance_id: &str) -> Self {
        Report {
            instance_id: instance_id.to_string(),
            status: MeasureStatus::NotApplicable,
            record: None,
            lifecycle_state: None,
            protected_from_scale_in: None,
            notes: vec!["not in an Auto Scaling group".into()],
            errors: Vec::new(),
        }
    }

    /// One line for the email and the page.
    pub fn line(&self) -> String {
        let Some(record) = &self.record else {
            return "not in an Auto Scaling group".into();
        };
        let mut line = format!(
            "group {}: {} (was {}{})",
            record.group,
            self.lifecycle_state.as_deref().unwrap_or("unknown"),
            record.lifecycle_state,
            if record.protected_from_scale_in {
                ", protected from scale-in"
            } else {
                ""
            }
        );
        if self.protected_from_scale_in == Some(true) && !record.protected_from_scale_in {
            line.push_str(", now protected from scale-in");
        }
        for note in &self.notes {
            line.push_str("; ");
            line.push_str(note);
        }
        line
    }
}

/// The record kept on the instance, if any.
pub fn record_from_tags(instance_id: &str, tags: &[(String, String)]) -> Result<Option<Record>> {
    let Some(json) = join_chunks(RECORD_TAG_PREFIX, tags, instance_id)? else {
        return Ok(None);
    };
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|error| CordonError::CorruptRecord {
            resource: instance_id.to_string(),
            message: format!("{RECORD_TAG_PREFIX}:* does not hold an Auto Scaling record: {error}"),
        })
}

/// Holds `instance_id` in its group: records where it stands (once: a retried step finds the
/// record and goes on from it), then enters standby or protects it from scale-in.
pub async fn hold(
    ec2: &impl Ec2,
    autoscaling: &impl AutoScaling,
    instance_id: &str,
    settings: Settings,
) -> Result<Report> {
    let (instance, membership) = tokio::join!(
        ec2.describe_instance(instance_id),
        autoscaling.membership(instance_id)
    );
    let (instance, membership) = (instance?, membership?);
    let Some(membership) = membership else {
        return Ok(Report::not_in_a_group(instance_id));
    };
    let group = autoscaling.group(&membership.group).await?;
    let plan = plan_hold(&membership, &group, settings);
    let recorded = record_from_tags(instance_id, &instance.tags)?;
    let record = match recorded {
        // A retry: the original is what the first attempt recorded, not what it left.
        Some(record) if record.group == membership.group => record,
        _ => {
            let record = Record {
                group: membership.group.clone(),
                lifecycle_state: membership.lifecycle_state.clone(),
                protected_from_scale_in: membership.protected_from_scale_in,
                desired: group.desired,
                min: group.min,
                max: group.max,
                intent: plan.intent(),
            };
            let json = serde_json::to_string(&record).expect("a record serialises");
            let tags = chunk_tags(RECORD_TAG_PREFIX, &json);
            let stale = chunk_keys(RECORD_TAG_PREFIX, &instance.tags);
            crate::record::check_tag_room(instance_id, &instance.tags, &tags, &stale)?;
            ec2.create_tags(instance_id, &tags).await?;
            record
        }
    };
    let mut report = Report {
        instance_id: instance_id.to_string(),
        status: MeasureStatus::Done,
        record: Some(record.clone()),
        lifecycle_state: Some(membership.lifecycle_state.clone()),
        protected_from_scale_in: Some(membership.protected_from_scale_in),
        notes: Vec::new(),
        errors: Vec::new(),
    };
    match plan {
        Hold::EnterStandby { decrement, note } => {
            report.notes.extend(note);
            match autoscaling
                .enter_standby(&membership.group, instance_id, decrement)
                .await
            {
                Ok(()) => {
                    report.lifecycle_state = Some(STANDBY.into());
                    if decrement {
                        report.notes.push(format!(
                            "desired capacity lowered from {} to {}",
                            group.desired,
                            group.desired - 1
                        ));
                    }
                }
                Err(error) if error.is_transient() => return Err(error),
                // Refused (its state changed meanwhile): protect it as the next best thing.
                Err(error) => {
                    report.errors.push(error.to_report());
                    protect(autoscaling, &membership, &mut report).await?;
                }
            }
        }
        Hold::AlreadyInStandby => {
            if !matches!(record.intent, Intent::EnterStandby { .. }) {
                report
                    .notes
                    .push("already in standby before Cordon: left as it is".into());
            }
        }
        Hold::ProtectFromScaleIn(why) => {
            report.notes.push(why);
            protect(autoscaling, &membership, &mut report).await?;
        }
        Hold::CannotHold(why) => report.errors.push(StepError {
            error: "Cordon.AutoScalingError".into(),
            cause: why,
        }),
    }
    // An instance refresh that terminates standby instances would end it anyway.
    match autoscaling.refresh_in_progress(&membership.group).await {
        Ok(Some(refresh)) if refresh.standby_instances == "Terminate" => {
            report.errors.push(StepError {
                error: "Cordon.AutoScalingError".into(),
                cause: format!(
                    "instance refresh {} of {} terminates instances in standby: cancel it (aws autoscaling cancel-instance-refresh --auto-scaling-group-name {}) to keep this one",
                    refresh.id, membership.group, membership.group
                ),
            })
        }
        Ok(Some(refresh)) => report.notes.push(format!(
            "instance refresh {} is under way; it {} instances in standby",
            refresh.id,
            if refresh.standby_instances == "Ignore" {
                "leaves"
            } else {
                "waits on (and then fails over)"
            }
        )),
        Ok(None) => {}
        // The error's name only: an SDK error can carry the whole raw response.
        Err(error) => report.notes.push(format!(
            "whether an instance refresh is under way could not be read ({})",
            error.error_name()
        )),
    }
    if !report.errors.is_empty() {
        report.status = MeasureStatus::Partial;
    }
    Ok(report)
}

async fn protect(
    autoscaling: &impl AutoScaling,
    membership: &Membership,
    report: &mut Report,
) -> Result<()> {
    if membership.protected_from_scale_in {
        return Ok(());
    }
    match autoscaling
        .set_scale_in_protection(&membership.group, &report.instance_id, true)
        .await
    {
        Ok(()) => report.protected_from_scale_in = Some(true),
        Err(error) if error.is_transient() => return Err(error),
        Err(error) => report.errors.push(error.to_report()),
    }
    Ok(())
}

/// What restore does for the group, from the record and where the instance stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestorePlan {
    /// Nothing was recorded, or nothing changed that is Cordon's to undo.
    Nothing(String),
    /// Back to service. `keep_desired`: standby did not lower the desired capacity, so the
    /// one ExitStandby adds is taken back (the group's replacement retires, not this one).
    ExitStandby { keep_desired: bool },
    /// Cordon protected it from scale-in: take that back.
    Unprotect,
    /// Still leaving service: try again later.
    NotYet(String),
    /// Someone moved it since: left as it is.
    Drift(String),
}

pub fn plan_restore(record: &Record, now: Option<&Membership>) -> RestorePlan {
    let Some(now) = now.filter(|m| m.group == record.group) else {
        return RestorePlan::Drift(format!("no longer in {}: left as it is", record.group));
    };
    match (record.intent, now.lifecycle_state.as_str()) {
        (Intent::EnterStandby { decrement }, STANDBY) => RestorePlan::ExitStandby {
            keep_desired: !decrement,
        },
        (Intent::EnterStandby { .. }, ENTERING_STANDBY) => RestorePlan::NotYet(format!(
            "still entering standby in {} (its load balancers drain it)",
            record.group
        )),
        (Intent::EnterStandby { .. }, IN_SERVICE) => {
            RestorePlan::Nothing("already back in service".into())
        }
        (Intent::EnterStandby { .. }, state) => RestorePlan::Drift(format!(
            "{state} in {} since isolation: left as it is",
            record.group
        )),
        (Intent::ProtectFromScaleIn, _)
            if now.protected_from_scale_in && !record.protected_from_scale_in =>
        {
            RestorePlan::Unprotect
        }
        _ => RestorePlan::Nothing("nothing of Cordon's to undo".into()),
    }
}

/// What restore did for the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub group: String,
    pub lifecycle_state: Option<String>,
    pub protected_from_scale_in: Option<bool>,
    pub desired: Option<i32>,
    pub notes: Vec<String>,
    pub errors: Vec<StepError>,
}

impl RestoreReport {
    /// One line for the restored email.
    pub fn line(&self) -> String {
        let mut line = format!(
            "  Auto Scaling group {}: {}",
            self.group,
            self.lifecycle_state.as_deref().unwrap_or("not in it")
        );
        if let Some(desired) = self.desired {
            line.push_str(&format!(", desired capacity {desired}"));
        }
        if self.protected_from_scale_in == Some(true) {
            line.push_str(", protected from scale-in");
        }
        for note in &self.notes {
            line.push_str("; ");
            line.push_str(note);
        }
        line
    }
}

/// How long a restore waits for the group to retire the replacement before it takes back the
/// scale-in protection that spares the returning instance: polls, and the pause between.
pub const SETTLE_POLLS: u32 = 6;
pub const SETTLE_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// Gives the group back what it had: the instance in service if Cordon put it in standby, the
/// desired capacity as the group had it, scale-in protection as recorded; then drops the
/// record. Call it after the network is restored, so the instance passes its health checks.
pub async fn restore(
    ec2: &impl Ec2,
    autoscaling: &impl AutoScaling,
    instance_id: &str,
    record: Option<Record>,
    pause: std::time::Duration,
) -> Result<Option<RestoreReport>> {
    let instance = ec2.describe_instance(instance_id).await?;
    let tagged = record_from_tags(instance_id, &instance.tags)?;
    let Some(record) = record.or(tagged) else {
        return Ok(None);
    };
    let now = autoscaling.membership(instance_id).await?;
    let mut report = RestoreReport {
        group: record.group.clone(),
        lifecycle_state: now.as_ref().map(|m| m.lifecycle_state.clone()),
        protected_from_scale_in: now.as_ref().map(|m| m.protected_from_scale_in),
        desired: None,
        notes: Vec::new(),
        errors: Vec::new(),
    };
    let group = &record.group;
    match plan_restore(&record, now.as_ref()) {
        RestorePlan::Nothing(why) => report.notes.push(why),
        RestorePlan::Drift(why) => report.errors.push(StepError {
            error: "Cordon.Drift".into(),
            cause: why,
        }),
        RestorePlan::NotYet(why) => {
            return Err(CordonError::Unavailable {
                operation: "autoscaling:ExitStandby".into(),
                message: why,
            })
        }
        RestorePlan::Unprotect => {
            autoscaling
                .set_scale_in_protection(group, instance_id, false)
                .await?;
            report.protected_from_scale_in = Some(false);
        }
        RestorePlan::ExitStandby { keep_desired } => {
            let protected = now.as_ref().is_some_and(|m| m.protected_from_scale_in);
            // ExitStandby adds one to the desired capacity. Without a decrement at standby the
            // group launched a replacement, so that one is taken back, and the returning
            // instance is protected meanwhile so the group retires another.
            let spare = keep_desired && !protected;
            if spare {
                autoscaling
                    .set_scale_in_protection(group, instance_id, true)
                    .await?;
            }
            let before = autoscaling.group(group).await?;
            autoscaling.exit_standby(group, instance_id).await?;
            report.lifecycle_state = Some(IN_SERVICE.into());
            let mut desired = before.desired + 1;
            if keep_desired {
                autoscaling
                    .set_desired_capacity(group, before.desired)
                    .await?;
                desired = before.desired;
            }
            report.desired = Some(desired);
            if spare {
                settle_then_unprotect(autoscaling, group, instance_id, pause, &mut report).await?;
            }
        }
    }
    if report.errors.is_empty() {
        let keys = chunk_keys(RECORD_TAG_PREFIX, &instance.tags);
        if !keys.is_empty() {
            ec2.delete_tags(instance_id, &keys).await?;
        }
    }
    Ok(Some(report))
}

/// Waits (a bounded while) for the group to reach its desired capacity, then takes back the
/// protection that spared the returning instance; if it does not settle in time the
/// protection stays, and the report says how to take it back.
async fn settle_then_unprotect(
    autoscaling: &impl AutoScaling,
    group: &str,
    instance_id: &str,
    pause: std::time::Duration,
    report: &mut RestoreReport,
) -> Result<()> {
    for poll in 0..SETTLE_POLLS {
        let now = autoscaling.group(group).await?;
        if now.counted <= now.desired {
            autoscaling
                .set_scale_in_protection(group, instance_id, false)
                .await?;
            report.protected_from_scale_in = Some(false);
            return Ok(());
        }
        if poll + 1 < SETTLE_POLLS {
            tokio::time::sleep(pause).await;
        }
    }
    report.protected_from_scale_in = Some(true);
    report.notes.push(format!(
        "{group} had not retired its replacement yet: {instance_id} is left protected from scale-in so it is not the one retired; take that back once the group is settled (aws autoscaling set-instance-protection --no-protected-from-scale-in --auto-scaling-group-name {group} --instance-ids {instance_id})"
    ));
    Ok(())
}

/// The hold step: in the finding's account and region, for an instance the capture recorded.
pub async fn hold_step(
    ec2_in: &impl crate::ec2::Ec2Provider,
    autoscaling_in: &impl AutoScalingProvider,
    settings: Settings,
    captured: &crate::capture::CaptureOutput,
) -> Result<Report> {
    let record = crate::steps::record_of(captured)?;
    let target = crate::steps::target_of(captured);
    crate::ec2::check_target_ids(
        &record.instance_id,
        target.account_id.as_deref(),
        target.region.as_deref(),
    )?;
    let ec2 = ec2_in.ec2_for(&target).await?;
    let autoscaling = autoscaling_in.autoscaling_for(&target).await?;
    hold(&ec2, &autoscaling, &record.instance_id, settings).await
}

#[cfg(test)]
mod tests;
