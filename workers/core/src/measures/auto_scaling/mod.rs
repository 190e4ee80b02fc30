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
        (Phase::Apply, "autoscaling:DescribeAutoScalingInstances"),
        (Phase::Apply, "autoscaling:SetInstanceProtection"),
        (Phase::Apply, "autoscaling:DescribeInstanceRefreshes"),
        (Phase::Apply, "ec2:DeleteTags"),
        (Phase::Restore, "ec2:DescribeInstances"),
        (Phase::Restore, "ec2:CreateTags"),
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
    /// The execution that wrote it (None: `cordon isolate`). The instance can write its own
    /// tags: a record is taken as the original only by the run that wrote it, and anything
    /// else found on the instance (a leftover, or tags the instance wrote) is replaced.
    #[serde(default)]
    pub owner: Option<String>,
    /// How far a restore got, so that a restore run again after a failure finishes the job
    /// instead of leaving the capacity or the protection it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoring: Option<Restoring>,
}

/// A restore under way, written on the instance before it returns to service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restoring {
    /// Cordon protected it from scale-in for the restore (and takes that back at the end).
    pub spared: bool,
    /// The desired capacity to end at, once it is back in service (ExitStandby added one).
    pub target: Option<i32>,
}

/// Writes `record` on the instance, replacing whatever `cordon:asg:*` tags it had (a longer
/// earlier record's chunks included: a chunk left behind would corrupt the new record).
/// `tags` are the instance's tags, and become what they are after the write, so that a later
/// write or delete needs no other DescribeInstances.
async fn save(
    ec2: &impl Ec2,
    instance_id: &str,
    tags: &mut Vec<(String, String)>,
    record: &Record,
) -> Result<()> {
    let json = serde_json::to_string(record).expect("a record serialises");
    let new = chunk_tags(RECORD_TAG_PREFIX, &json);
    let stale: Vec<String> = chunk_keys(RECORD_TAG_PREFIX, tags)
        .into_iter()
        .filter(|key| !new.iter().any(|(k, _)| k == key))
        .collect();
    crate::record::check_tag_room(instance_id, tags, &new, &stale)?;
    if !stale.is_empty() {
        ec2.delete_tags(instance_id, &stale).await?;
    }
    ec2.create_tags(instance_id, &new).await?;
    let old = chunk_keys(RECORD_TAG_PREFIX, tags);
    tags.retain(|(key, _)| !old.contains(key));
    tags.extend(new);
    Ok(())
}

/// Whose record on the instance a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose<'a> {
    /// Only the one this run wrote: an execution's (its id), or `cordon isolate`'s (None).
    Run(Option<&'a str>),
    /// Any readable one: `cordon restore` by hand, which has nothing else to go by. A record
    /// the instance forged can name only its own group, which restore checks against where
    /// it is now.
    Anyone,
}

/// The record on the instance, if it is readable and `whose`; what else was found there is
/// said in the second part (a note, never a failure: the instance can write these tags).
fn own_record(
    instance_id: &str,
    tags: &[(String, String)],
    whose: Whose,
) -> (Option<Record>, Option<String>) {
    match record_from_tags(instance_id, tags) {
        Ok(Some(record))
            if whose == Whose::Anyone || Whose::Run(record.owner.as_deref()) == whose =>
        {
            (Some(record), None)
        }
        Ok(Some(_)) => (
            None,
            Some(format!("a {RECORD_TAG_PREFIX} record on the instance was not written by this run: not used")),
        ),
        Ok(None) => (None, None),
        Err(error) => (None, Some(format!("the {RECORD_TAG_PREFIX} tags on the instance are not a record Cordon wrote ({error}): not used"))),
    }
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

/// Whether an instance refresh of the instance's group is under way, as an error (it
/// terminates instances in standby) or a note.
async fn refresh_under_way(
    autoscaling: &impl AutoScaling,
    membership: &Membership,
) -> (Option<StepError>, Option<String>) {
    match autoscaling.refresh_in_progress(&membership.group).await {
        Ok(Some(refresh)) if refresh.standby_instances == "Terminate" => (
            Some(StepError {
                error: "Cordon.AutoScalingError".into(),
                cause: format!(
                    "instance refresh {} of {} terminates instances in standby: cancel it (aws autoscaling cancel-instance-refresh --auto-scaling-group-name {}) to keep this one",
                    refresh.id, membership.group, membership.group
                ),
            }),
            None,
        ),
        Ok(Some(refresh)) => (
            None,
            Some(format!(
                "instance refresh {} is under way; it {} instances in standby",
                refresh.id,
                if refresh.standby_instances == "Ignore" {
                    "leaves"
                } else {
                    "waits on (and then fails over)"
                }
            )),
        ),
        Ok(None) => (None, None),
        // The error's name only: an SDK error can carry the whole raw response.
        Err(error) => (
            None,
            Some(format!(
                "whether an instance refresh is under way could not be read ({})",
                error.error_name()
            )),
        ),
    }
}

/// Holds `instance_id` in its group for `owner` (the execution; None: `cordon isolate`):
/// records where it stands (once: a retry of the same run finds its record and goes on from
/// it), then enters standby or protects it from scale-in. Containment comes first: a record
/// that cannot be written on the instance is reported, and the workflow keeps it in its
/// output.
pub async fn hold(
    ec2: &impl Ec2,
    autoscaling: &impl AutoScaling,
    instance_id: &str,
    settings: Settings,
    owner: Option<&str>,
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
    let (recorded, found) = own_record(instance_id, &instance.tags, Whose::Run(owner));
    let mut tags = instance.tags;
    let mut report = Report {
        instance_id: instance_id.to_string(),
        status: MeasureStatus::Done,
        record: None,
        lifecycle_state: Some(membership.lifecycle_state.clone()),
        protected_from_scale_in: Some(membership.protected_from_scale_in),
        notes: found.into_iter().collect(),
        errors: Vec::new(),
    };
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
                owner: owner.map(String::from),
                restoring: None,
            };
            match save(ec2, instance_id, &mut tags, &record).await {
                Ok(()) => {}
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => report.errors.push(StepError {
                    error: error.error_name().into(),
                    cause: format!("the record was not written on the instance ({error}): the workflow still has it, but `cordon restore` will not return the instance to service"),
                }),
            }
            record
        }
    };
    report.record = Some(record.clone());
    match plan {
        Hold::EnterStandby { decrement, note } => {
            report.notes.extend(note);
            match move_instance(
                autoscaling,
                &membership.group,
                instance_id,
                Move::IntoStandby { decrement },
            )
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
                // Refused (its state changed meanwhile): protect it as the next best thing,
                // and say so in the record first, so that restore takes the protection back.
                Err(error) => {
                    report.errors.push(error.to_report());
                    let record = Record {
                        intent: Intent::ProtectFromScaleIn,
                        ..record.clone()
                    };
                    if let Err(error) = save(ec2, instance_id, &mut tags, &record).await {
                        report.errors.push(error.to_report());
                    }
                    report.record = Some(record);
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
    let (refused, note) = refresh_under_way(autoscaling, &membership).await;
    report.errors.extend(refused);
    report.notes.extend(note);
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
    /// An earlier restore returned it to service and stopped before the capacity or the
    /// protection was given back: finish that.
    Finish { keep_desired: bool },
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
    let state = now.lifecycle_state.as_str();
    match record.intent {
        Intent::EnterStandby { decrement } => match state {
            STANDBY => RestorePlan::ExitStandby {
                keep_desired: !decrement,
            },
            ENTERING_STANDBY => RestorePlan::NotYet(format!(
                "still entering standby in {} (its load balancers drain it)",
                record.group
            )),
            // Back in service (or on its way there) by an earlier restore of Cordon's.
            _ if record.restoring.is_some()
                && (state == IN_SERVICE || state.starts_with("Pending")) =>
            {
                RestorePlan::Finish {
                    keep_desired: !decrement,
                }
            }
            IN_SERVICE => RestorePlan::Nothing("already back in service".into()),
            _ => RestorePlan::Drift(format!(
                "{state} in {} since isolation: left as it is",
                record.group
            )),
        },
        Intent::ProtectFromScaleIn
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
/// `record` is the workflow's (the Auto Scaling branch's output); without one the record is
/// read from the instance's tags, taken only if `whose`. Every step is recorded on the instance before it is taken, so a restore run
/// again after a failure finishes the job.
pub async fn restore(
    ec2: &impl Ec2,
    autoscaling: &impl AutoScaling,
    instance_id: &str,
    record: Option<Record>,
    whose: Whose<'_>,
    pause: std::time::Duration,
) -> Result<Option<RestoreReport>> {
    let instance = ec2.describe_instance(instance_id).await?;
    let (tagged, found) = match &record {
        // The workflow's record is the original; the tags add only how far a restore got.
        Some(record) => own_record(
            instance_id,
            &instance.tags,
            Whose::Run(record.owner.as_deref()),
        ),
        None => own_record(instance_id, &instance.tags, whose),
    };
    let progress = tagged.as_ref().and_then(|t| t.restoring);
    let Some(mut record) = record.or(tagged) else {
        return Ok(None);
    };
    if record.restoring.is_none() {
        record.restoring = progress;
    }
    let now = autoscaling.membership(instance_id).await?;
    let mut report = RestoreReport {
        group: record.group.clone(),
        lifecycle_state: now.as_ref().map(|m| m.lifecycle_state.clone()),
        protected_from_scale_in: now.as_ref().map(|m| m.protected_from_scale_in),
        desired: None,
        notes: found.into_iter().collect(),
        errors: Vec::new(),
    };
    let group = record.group.clone();
    let mut tags = instance.tags.clone();
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
                .set_scale_in_protection(&group, instance_id, false)
                .await?;
            report.protected_from_scale_in = Some(false);
        }
        RestorePlan::ExitStandby { keep_desired } => {
            let protected = now.as_ref().is_some_and(|m| m.protected_from_scale_in);
            // ExitStandby adds one to the desired capacity. Without a decrement at standby the
            // group launched a replacement, so that one is taken back, and the returning
            // instance is protected meanwhile so the group retires another.
            let spared = record
                .restoring
                .map(|r| r.spared)
                .unwrap_or(keep_desired && !protected);
            record.restoring = Some(Restoring {
                spared,
                target: None,
            });
            save(ec2, instance_id, &mut tags, &record).await?;
            if spared {
                autoscaling
                    .set_scale_in_protection(&group, instance_id, true)
                    .await?;
            }
            move_instance(autoscaling, &group, instance_id, Move::OutOfStandby).await?;
            report.lifecycle_state = Some(IN_SERVICE.into());
            finish(
                ec2,
                autoscaling,
                instance_id,
                &mut record,
                &mut tags,
                keep_desired,
                pause,
                &mut report,
            )
            .await?;
        }
        RestorePlan::Finish { keep_desired } => {
            finish(
                ec2,
                autoscaling,
                instance_id,
                &mut record,
                &mut tags,
                keep_desired,
                pause,
                &mut report,
            )
            .await?;
        }
    }
    if report.errors.is_empty() {
        let keys = chunk_keys(RECORD_TAG_PREFIX, &tags);
        if !keys.is_empty() {
            ec2.delete_tags(instance_id, &keys).await?;
        }
    }
    Ok(Some(report))
}

/// Into standby or back in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    IntoStandby { decrement: bool },
    OutOfStandby,
}

/// Attempts at EnterStandby or ExitStandby, and the pause after a failed one before the
/// lifecycle state is read (a pause per attempt made so far).
const MOVE_ATTEMPTS: u32 = 4;
const MOVE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether the instance's lifecycle state shows the move made.
fn moved(lifecycle_state: &str, to: Move) -> bool {
    match to {
        Move::IntoStandby { .. } => [STANDBY, ENTERING_STANDBY].contains(&lifecycle_state),
        Move::OutOfStandby => {
            lifecycle_state == IN_SERVICE || lifecycle_state.starts_with("Pending")
        }
    }
}

/// Moves the instance into or out of standby. Neither call takes an idempotency token, AWS
/// refuses each once made (the instance is no longer InService, or no longer in Standby), and
/// each moves the desired capacity when made: a retry of one whose answer was lost would be
/// refused on AWS, and on a lenient endpoint would move the capacity twice. So the adapter
/// makes each once per attempt, and after a failed attempt the instance's lifecycle state says
/// whether it was made all the same before another is.
async fn move_instance(
    autoscaling: &impl AutoScaling,
    group: &str,
    instance_id: &str,
    to: Move,
) -> Result<()> {
    let mut attempt = 1;
    loop {
        let made = match to {
            Move::IntoStandby { decrement } => {
                autoscaling
                    .enter_standby(group, instance_id, decrement)
                    .await
            }
            Move::OutOfStandby => autoscaling.exit_standby(group, instance_id).await,
        };
        let Err(error) = made else {
            return Ok(());
        };
        if error.is_transient() {
            tokio::time::sleep(MOVE_PAUSE * attempt).await;
        }
        let now = autoscaling.membership(instance_id).await?;
        if now.is_some_and(|m| m.group == group && moved(&m.lifecycle_state, to)) {
            return Ok(());
        }
        if !error.is_transient() || attempt == MOVE_ATTEMPTS {
            return Err(error);
        }
        attempt += 1;
    }
}

/// Back in service: takes back the one ExitStandby added (when standby kept the capacity),
/// from the capacity the group has now (a scaling policy's change meanwhile stands), then the
/// protection that spared the returning instance. The target is recorded before it is set.
#[allow(clippy::too_many_arguments)]
async fn finish(
    ec2: &impl Ec2,
    autoscaling: &impl AutoScaling,
    instance_id: &str,
    record: &mut Record,
    tags: &mut Vec<(String, String)>,
    keep_desired: bool,
    pause: std::time::Duration,
    report: &mut RestoreReport,
) -> Result<()> {
    let group = record.group.clone();
    let mut progress = record.restoring.unwrap_or(Restoring {
        spared: false,
        target: None,
    });
    let now = autoscaling.group(&group).await?;
    let mut desired = now.desired;
    if keep_desired {
        let target = match progress.target {
            Some(target) => target,
            None => {
                let target = now.desired - 1;
                progress.target = Some(target);
                record.restoring = Some(progress);
                save(ec2, instance_id, tags, record).await?;
                target
            }
        };
        if now.desired != target {
            autoscaling.set_desired_capacity(&group, target).await?;
        }
        desired = target;
    }
    report.desired = Some(desired);
    if progress.spared {
        settle_then_unprotect(autoscaling, &group, instance_id, pause, report).await?;
    }
    Ok(())
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

/// The hold step's input: the capture's output (`$`) and the execution (`$$.Execution.Id`),
/// which owns the record it writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldInput {
    pub capture: crate::capture::CaptureOutput,
    pub execution: Option<String>,
}

/// What [`hold`] would do, in report-only mode: the same reads and plan; nothing recorded on
/// the instance, nothing asked of the group.
pub async fn plan_only(
    autoscaling: &impl AutoScaling,
    instance_id: &str,
    settings: Settings,
) -> Result<Report> {
    let Some(membership) = autoscaling.membership(instance_id).await? else {
        return Ok(Report::not_in_a_group(instance_id));
    };
    let group = autoscaling.group(&membership.group).await?;
    let name = &membership.group;
    let mut errors = Vec::new();
    let mut notes = vec![match plan_hold(&membership, &group, settings) {
        Hold::EnterStandby { decrement: true, .. } => format!(
            "would move it into Standby in {name}, lowering its desired capacity from {} to {}, so that the group neither replaces nor terminates it",
            group.desired,
            group.desired - 1
        ),
        Hold::EnterStandby { decrement: false, note } => format!(
            "would move it into Standby in {name}, so that the group does not terminate it{}",
            note.map(|n| format!(" ({n})")).unwrap_or_default()
        ),
        Hold::AlreadyInStandby => format!("in Standby in {name} already: nothing to do"),
        Hold::ProtectFromScaleIn(why) => {
            format!("would protect it from scale-in in {name}: {why}")
        }
        // What a containment would fail at is a failure of the plan too.
        Hold::CannotHold(why) => {
            errors.push(StepError {
                error: "Cordon.AutoScalingError".into(),
                cause: format!("could not hold it in {name}: {why}"),
            });
            format!("{name} would go on with what it is doing to the instance")
        }
    }];
    notes.push("the group's settings would be recorded on the instance first".into());
    let (refused, note) = refresh_under_way(autoscaling, &membership).await;
    errors.extend(refused);
    notes.extend(note);
    Ok(Report {
        instance_id: instance_id.to_string(),
        status: MeasureStatus::ReportOnly,
        record: None,
        lifecycle_state: Some(membership.lifecycle_state.clone()),
        protected_from_scale_in: Some(membership.protected_from_scale_in),
        notes,
        errors,
    })
}

/// The hold step: in the finding's account and region, for an instance the capture recorded.
pub async fn hold_step(
    ec2_in: &impl crate::ec2::Ec2Provider,
    autoscaling_in: &impl AutoScalingProvider,
    settings: Settings,
    input: &HoldInput,
) -> Result<Report> {
    let record = crate::steps::record_of(&input.capture)?;
    let target = crate::steps::target_of(&input.capture);
    crate::ec2::check_target_ids(
        &record.instance_id,
        target.account_id.as_deref(),
        target.region.as_deref(),
    )?;
    let ec2 = ec2_in.ec2_for(&target).await?;
    let autoscaling = autoscaling_in.autoscaling_for(&target).await?;
    if input.capture.status == crate::capture::CaptureStatus::ReportOnly {
        let autoscaling = crate::report_only::ReadOnly(&autoscaling);
        return plan_only(&autoscaling, &record.instance_id, settings).await;
    }
    hold(
        &ec2,
        &autoscaling,
        &record.instance_id,
        settings,
        input.execution.as_deref(),
    )
    .await
}

#[cfg(test)]
mod tests;
