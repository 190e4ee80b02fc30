//! Evidence: the instance's disks as they were when it was contained. Every attached EBS volume
//! is snapshotted at one point in time (`CreateSnapshots`, crash-consistent across them),
//! once per finding, and its volumes are kept if the instance is terminated while it is
//! isolated. The snapshots stay after restore: they are evidence. Beside isolation (a branch of
//! the Contain state), never before it: a snapshot is taken of the disks as they are at the
//! call, and isolation must not wait for it.
//!
//! The record is on the snapshots themselves, which the instance cannot write: each is tagged
//! with the finding, the instance and the execution at creation, and those of volumes that
//! were deleted on termination are tagged `cordon:delete-on-termination=true` before Cordon
//! changes that, so that restore (the workflow's, or `cordon restore` by hand) gives exactly
//! those back.

use serde::{Deserialize, Serialize};

use super::{Measure, MeasureStatus, Phase};
use crate::ec2::{Ec2, Snapshot, Volume};
use crate::error::{Result, StepError};

pub const MEASURE: Measure = Measure {
    id: "evidence",
    state: "SnapshotVolumes",
    title: "evidence snapshots",
    actions: &[
        (Phase::Apply, "ec2:DescribeInstances"),
        (Phase::Apply, "ec2:DescribeSnapshots"),
        (Phase::Apply, "ec2:CreateSnapshots"),
        (Phase::Apply, "ec2:CreateTags"),
        (Phase::Apply, "ec2:ModifyInstanceAttribute"),
        (Phase::Restore, "ec2:DescribeInstances"),
        (Phase::Restore, "ec2:DescribeSnapshots"),
        (Phase::Restore, "ec2:ModifyInstanceAttribute"),
        (Phase::Restore, "ec2:DeleteTags"),
    ],
};

/// The snapshots' tags: what they are evidence of.
pub const FINDING_TAG: &str = "cordon:finding";
pub const INSTANCE_TAG: &str = "cordon:instance";
pub const EXECUTION_TAG: &str = "cordon:execution";
/// On the snapshot of a volume that was deleted on termination before Cordon kept it: restore
/// sets it back, then drops this tag.
pub const DELETE_ON_TERMINATION_TAG: &str = "cordon:delete-on-termination";

/// How the measure is set (`CORDON_EVIDENCE_SNAPSHOTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Whether volumes are snapshotted (on by default). Off, the measure changes nothing: the
    /// snapshots carry the record of what it would change.
    pub snapshots: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { snapshots: true }
    }
}

/// What the measure plans for the instance's volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Snapshot them (none of this finding yet, and snapshots are on).
    pub snapshot: bool,
    /// The devices whose volume is deleted on termination now: kept while isolated.
    pub keep: Vec<String>,
}

/// The plan for `volumes`, given this finding's snapshots already taken (a re-delivered or
/// updated finding, or a retry).
pub fn plan(volumes: &[Volume], taken: &[Snapshot]) -> Plan {
    Plan {
        snapshot: taken.is_empty() && !volumes.is_empty(),
        keep: volumes
            .iter()
            .filter(|v| v.delete_on_termination)
            .map(|v| v.device.clone())
            .collect(),
    }
}

/// One snapshot of the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    pub snapshot_id: String,
    pub volume_id: String,
}

/// What the measure did, or found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub instance_id: String,
    pub status: MeasureStatus,
    /// This finding's snapshots of the instance's volumes (taken now, or earlier).
    pub snapshots: Vec<Taken>,
    /// The devices Cordon set to be kept on termination.
    pub kept_on_termination: Vec<String>,
    pub notes: Vec<String>,
    pub errors: Vec<StepError>,
}

impl Report {
    /// Nothing done yet, and nothing to do until the reads say otherwise.
    fn nothing_yet(instance_id: &str) -> Self {
        Report {
            instance_id: instance_id.to_string(),
            status: MeasureStatus::NotApplicable,
            snapshots: Vec::new(),
            kept_on_termination: Vec::new(),
            notes: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// One line for the email and the page.
    pub fn line(&self) -> String {
        let mut line = if self.snapshots.is_empty() {
            "no snapshot".to_string()
        } else {
            format!(
                "snapshots {}",
                self.snapshots
                    .iter()
                    .map(|t| format!("{} (of {})", t.snapshot_id, t.volume_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if !self.kept_on_termination.is_empty() {
            line.push_str(&format!(
                "; {} kept if the instance is terminated",
                self.kept_on_termination.join(", ")
            ));
        }
        for note in &self.notes {
            line.push_str("; ");
            line.push_str(note);
        }
        line
    }
}

fn ids_of(snapshots: &[Snapshot]) -> Vec<Taken> {
    snapshots
        .iter()
        .map(|s| Taken {
            snapshot_id: s.snapshot_id.clone(),
            volume_id: s.volume_id.clone(),
        })
        .collect()
}

/// The tags that name this finding's snapshots of `instance_id`.
fn of_this_finding(instance_id: &str, finding: &str) -> [(String, String); 2] {
    [
        (FINDING_TAG.to_string(), finding.to_string()),
        (INSTANCE_TAG.to_string(), instance_id.to_string()),
    ]
}

/// What [`preserve`] and its report-only [`plan_only`] read first: the instance and the
/// snapshots of this finding taken so far; None when there is nothing to preserve
/// (snapshots are off, or no volume is attached), `report`'s notes saying why.
async fn first_reads(
    ec2: &impl Ec2,
    instance_id: &str,
    of_this_finding: &[(String, String)],
    settings: Settings,
    report: &mut Report,
) -> Result<Option<(crate::ec2::Instance, Vec<Snapshot>)>> {
    if !settings.snapshots {
        report
            .notes
            .push("evidence snapshots are off (EvidenceSnapshots=false)".into());
        return Ok(None);
    }
    let (instance, taken) = tokio::join!(
        ec2.describe_instance(instance_id),
        ec2.snapshots_tagged(of_this_finding)
    );
    let (instance, taken) = (instance?, taken?);
    if instance.volumes.is_empty() {
        report.notes.push("no EBS volume attached".into());
        return Ok(None);
    }
    Ok(Some((instance, taken)))
}

/// Preserves the evidence of `instance_id` for `finding` (its id) and `execution`: snapshots
/// its volumes unless this finding's are taken already, marks those of volumes deleted on
/// termination, then keeps those volumes on termination. Throttling and no answer fail the
/// step for a retry (which finds the snapshots taken); anything else is reported.
pub async fn preserve(
    ec2: &impl Ec2,
    instance_id: &str,
    finding: &str,
    execution: Option<&str>,
    settings: Settings,
) -> Result<Report> {
    let mut report = Report::nothing_yet(instance_id);
    let of_this_finding = of_this_finding(instance_id, finding);
    let Some((instance, mut taken)) =
        first_reads(ec2, instance_id, &of_this_finding, settings, &mut report).await?
    else {
        return Ok(report);
    };
    report.status = MeasureStatus::Done;
    let plan = plan(&instance.volumes, &taken);
    if plan.snapshot {
        let mut tags = of_this_finding.to_vec();
        tags.push((
            EXECUTION_TAG.into(),
            execution.unwrap_or("cordon isolate").into(),
        ));
        tags.push(("Name".into(), format!("cordon evidence {instance_id}")));
        let description = format!("Cordon evidence: {instance_id}, finding {finding}");
        match snapshot_once(ec2, instance_id, &description, &tags, &of_this_finding).await {
            Ok(snapshots) => taken = snapshots,
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => report.errors.push(error.to_report()),
        }
    } else {
        report
            .notes
            .push("taken for this finding before: not taken again".into());
    }
    report.snapshots = ids_of(&taken);
    if let Err(error) = keep_on_termination(
        ec2,
        instance_id,
        &instance.volumes,
        &taken,
        &plan.keep,
        &mut report,
    )
    .await
    {
        if error.is_transient() {
            return Err(error);
        }
        report.errors.push(error.to_report());
    }
    if !report.errors.is_empty() {
        report.status = MeasureStatus::Partial;
    }
    Ok(report)
}

/// Attempts at CreateSnapshots, and the pause before looking for a failed attempt's snapshots
/// (EC2's reads catch up with a create within seconds).
const SNAPSHOT_ATTEMPTS: u32 = 4;
const SNAPSHOT_RECHECK_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// Snapshots the instance's volumes once for this finding. CreateSnapshots takes no
/// idempotency token and the adapter makes it once per call: after a failed attempt (whose
/// answer may have been lost after the snapshots were made) the finding's snapshots are looked
/// for, and only if there are none is it tried again.
async fn snapshot_once(
    ec2: &impl Ec2,
    instance_id: &str,
    description: &str,
    tags: &[(String, String)],
    of_this_finding: &[(String, String)],
) -> Result<Vec<Snapshot>> {
    let mut attempt = 1;
    loop {
        let error = match ec2.create_snapshots(instance_id, description, tags).await {
            Ok(snapshots) => return Ok(snapshots),
            // A refusal is an answer: nothing was made.
            Err(error) if !error.is_transient() => return Err(error),
            Err(error) => error,
        };
        tokio::time::sleep(SNAPSHOT_RECHECK_PAUSE * attempt).await;
        let found = ec2.snapshots_tagged(of_this_finding).await?;
        if !found.is_empty() {
            return Ok(found);
        }
        if attempt == SNAPSHOT_ATTEMPTS {
            return Err(error);
        }
        attempt += 1;
    }
}

/// Keeps the volumes of `keep` (devices) on termination, each recorded first on its snapshot;
/// a volume without a snapshot to carry its record is left as it is, and said so.
async fn keep_on_termination(
    ec2: &impl Ec2,
    instance_id: &str,
    volumes: &[Volume],
    taken: &[Snapshot],
    keep: &[String],
    report: &mut Report,
) -> Result<()> {
    let mut devices: Vec<(String, bool)> = Vec::new();
    for device in keep {
        let volume = volumes.iter().find(|v| v.device == *device);
        match taken
            .iter()
            .find(|s| volume.is_some_and(|v| v.volume_id == s.volume_id))
        {
            Some(snapshot) => {
                ec2.create_tags(
                    &snapshot.snapshot_id,
                    &[(DELETE_ON_TERMINATION_TAG.into(), "true".into())],
                )
                .await?;
                devices.push((device.clone(), false));
            }
            None => report.notes.push(format!(
                "{device} is left to be deleted on termination: it has no snapshot to record the setting on"
            )),
        }
    }
    if !devices.is_empty() {
        ec2.set_delete_on_termination(instance_id, &devices).await?;
        report.kept_on_termination = devices.into_iter().map(|(d, _)| d).collect();
    }
    Ok(())
}

/// What restore did with the volumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The devices set back to be deleted on termination.
    pub deleted_on_termination_again: Vec<String>,
    /// The evidence, which stays.
    pub snapshots_kept: Vec<String>,
    pub notes: Vec<String>,
}

impl RestoreReport {
    /// One line for the restored email.
    pub fn line(&self) -> String {
        let mut line = format!(
            "  Evidence: snapshots {} kept",
            if self.snapshots_kept.is_empty() {
                "(none)".to_string()
            } else {
                self.snapshots_kept.join(", ")
            }
        );
        if !self.deleted_on_termination_again.is_empty() {
            line.push_str(&format!(
                "; {} deleted on termination again, as before",
                self.deleted_on_termination_again.join(", ")
            ));
        }
        for note in &self.notes {
            line.push_str("; ");
            line.push_str(note);
        }
        line
    }
}

/// Gives the volumes back their delete-on-termination setting, as the marked snapshots of the
/// instance record it, for the volumes still attached and still kept (a volume detached or
/// changed by someone meanwhile is left as it is, and said so); the snapshots stay. None when
/// no snapshot of the instance is Cordon's.
pub async fn restore(ec2: &impl Ec2, instance_id: &str) -> Result<Option<RestoreReport>> {
    let of_instance = [(INSTANCE_TAG.to_string(), instance_id.to_string())];
    let (instance, snapshots) = tokio::join!(
        ec2.describe_instance(instance_id),
        ec2.snapshots_tagged(&of_instance)
    );
    let (instance, snapshots) = (instance?, snapshots?);
    if snapshots.is_empty() {
        return Ok(None);
    }
    let marked: Vec<&Snapshot> = snapshots
        .iter()
        .filter(|s| {
            s.tags
                .iter()
                .any(|(k, v)| k == DELETE_ON_TERMINATION_TAG && v == "true")
        })
        .collect();
    let mut report = RestoreReport {
        deleted_on_termination_again: Vec::new(),
        snapshots_kept: snapshots.iter().map(|s| s.snapshot_id.clone()).collect(),
        notes: Vec::new(),
    };
    let mut devices: Vec<(String, bool)> = Vec::new();
    for snapshot in &marked {
        match instance
            .volumes
            .iter()
            .find(|v| v.volume_id == snapshot.volume_id)
        {
            Some(volume) if !volume.delete_on_termination => {
                devices.push((volume.device.clone(), true))
            }
            Some(_) => {}
            None => report.notes.push(format!(
                "{} is no longer attached: left as it is",
                snapshot.volume_id
            )),
        }
    }
    if !devices.is_empty() {
        ec2.set_delete_on_termination(instance_id, &devices).await?;
        report.deleted_on_termination_again = devices.into_iter().map(|(d, _)| d).collect();
    }
    for snapshot in marked {
        ec2.delete_tags(
            &snapshot.snapshot_id,
            &[DELETE_ON_TERMINATION_TAG.to_string()],
        )
        .await?;
    }
    Ok(Some(report))
}

/// The snapshot step's input: the capture's output (`$`) and the execution
/// (`$$.Execution.Id`), which the snapshots name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreserveInput {
    pub capture: crate::capture::CaptureOutput,
    pub execution: Option<String>,
}

/// What [`preserve`] would do, in report-only mode: the same reads and plan; no snapshot,
/// no attribute changed.
pub async fn plan_only(
    ec2: &impl Ec2,
    instance_id: &str,
    finding: &str,
    settings: Settings,
) -> Result<Report> {
    let mut report = Report::nothing_yet(instance_id);
    let of_this_finding = of_this_finding(instance_id, finding);
    let Some((instance, taken)) =
        first_reads(ec2, instance_id, &of_this_finding, settings, &mut report).await?
    else {
        return Ok(report);
    };
    report.status = MeasureStatus::ReportOnly;
    let plan = plan(&instance.volumes, &taken);
    report.notes.push(if plan.snapshot {
        format!(
            "would snapshot its volumes {} at once (crash-consistent), tagged with the finding",
            instance
                .volumes
                .iter()
                .map(|v| v.volume_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        "snapshots of this finding are there already: none would be taken".into()
    });
    if !plan.keep.is_empty() {
        report.notes.push(format!(
            "would keep {} if the instance is terminated (DeleteOnTermination off while isolated)",
            plan.keep.join(", ")
        ));
    }
    Ok(report)
}

/// The snapshot step: in the finding's account and region, for an instance the capture
/// recorded, as the finding names it.
pub async fn preserve_step(
    ec2_in: &impl crate::ec2::Ec2Provider,
    settings: Settings,
    input: &PreserveInput,
) -> Result<Report> {
    let record = crate::steps::record_of(&input.capture)?;
    let target = crate::steps::target_of(&input.capture);
    let finding = input
        .capture
        .finding
        .as_ref()
        .map(|f| f.id.clone())
        .unwrap_or_else(|| "none".into());
    let ec2 = ec2_in.ec2_for(&target).await?;
    if input.capture.status == crate::capture::CaptureStatus::ReportOnly {
        let ec2 = crate::report_only::ReadOnly(&ec2);
        return plan_only(&ec2, &record.instance_id, &finding, settings).await;
    }
    preserve(
        &ec2,
        &record.instance_id,
        &finding,
        input.execution.as_deref(),
        settings,
    )
    .await
}

#[cfg(test)]
mod tests;
