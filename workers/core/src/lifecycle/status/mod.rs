//! The finding follows the quarantine where the security team tracks it. In Security Hub its
//! workflow status becomes `NOTIFIED` when the analysts are told (the containment's email) and
//! `RESOLVED`, with a note naming the execution, once an approved restore has released the
//! instance; optionally GuardDuty archives it then.
//!
//! This is bookkeeping after the email, never a gate: nothing here can fail the step or hold
//! it past [`FOLLOW_BUDGET`], and what happened is reported in the notify step's answer (the
//! execution shows it for `NotifyRestored`; an approval request's answer goes only to the log).
//!
//! Why an archive is noted in the ledger first: GuardDuty sends the updates of a finding
//! archived by hand to EventBridge like any other (only those a suppression rule archives are
//! held back), still marked archived, so a finding archived on restore would be skipped by the
//! policy when its activity comes back. The release in the ledger therefore notes that Cordon
//! archived it, before it does, and capture reads such a finding like an active one
//! (`super::capture_step`). A finding an analyst archived stays the analyst's call.

pub mod aws;
pub mod port;

use serde::{Deserialize, Serialize};

use super::Ledger;
use crate::capture::FindingSummary;
use crate::ec2::Target;
use crate::error::{CordonError, Result};
use crate::notify::MessageKind;
use crate::workflow::WorkflowState;
pub use port::{GuardDuty, GuardDutyProvider, SecurityHub, SecurityHubProvider, Unprocessed};

/// Security Hub keeps a note of at most 512 characters.
pub const NOTE_MAX_CHARS: usize = 512;

/// Who Security Hub shows as the note's author.
pub const NOTE_AUTHOR: &str = "cordon";

/// What notify's session in a member account may do: of all the member role grants the
/// workers, only update Security Hub findings (notify renders the most attacker-influenced
/// text of any function, and needs no EC2, IAM, Auto Scaling or ELB write).
pub const MEMBER_SESSION_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"OnlySecurityHubFindings","Effect":"Allow","Action":"securityhub:BatchUpdateFindings","Resource":"*"}]}"#;

/// The longest the finding is followed after the email: well inside notify's 60 s timeout,
/// since a notify that timed out would be run again and send the email again.
pub const FOLLOW_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

/// What the stack asks for (`CORDON_SECURITY_HUB_WORKFLOW`, on unless `false`;
/// `CORDON_ARCHIVE_ON_RESTORE`, off unless `true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub security_hub: bool,
    pub archive_on_restore: bool,
    /// The stack is report-only (`CORDON_MODE`): the finding is never followed, not even
    /// after a failure that came before capture could say so.
    pub report_only: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            security_hub: true,
            archive_on_restore: false,
            report_only: false,
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let flag = |name: &str, default: bool| match lookup(name).as_deref().map(str::trim) {
            None | Some("") => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(CordonError::InvalidConfiguration(format!(
                "{name} is {other:?}: it must be true or false"
            ))),
        };
        Ok(Settings {
            security_hub: flag("CORDON_SECURITY_HUB_WORKFLOW", true)?,
            archive_on_restore: flag("CORDON_ARCHIVE_ON_RESTORE", false)?,
            report_only: crate::config::Mode::parse(&lookup("CORDON_MODE").unwrap_or_default())?
                == crate::config::Mode::ReportOnly,
        })
    }
}

/// The Security Hub workflow statuses Cordon sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkflowStatus {
    Notified,
    Resolved,
}

impl WorkflowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Notified => "NOTIFIED",
            WorkflowStatus::Resolved => "RESOLVED",
        }
    }
}

/// A GuardDuty finding's ARN, checked against the finding it came with: Security Hub knows
/// the finding by it (`Id`), under GuardDuty's product ARN in its partition and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingArn {
    pub arn: String,
    pub partition: String,
    pub region: String,
    pub account_id: String,
    pub detector_id: String,
    pub finding_id: String,
}

impl FindingArn {
    pub fn product_arn(&self) -> String {
        format!(
            "arn:{}:securityhub:{}::product/aws/guardduty",
            self.partition, self.region
        )
    }
}

/// The finding's ARN, or why it cannot be used: it must be GuardDuty's, of the finding's own
/// id, account and region, which the finding must name (`arn:PARTITION:guardduty:REGION:
/// ACCOUNT:detector/D/finding/ID`): otherwise Security Hub would be updated in an account
/// other than the one Cordon acted in.
pub fn finding_arn(finding: &FindingSummary) -> std::result::Result<FindingArn, String> {
    let Some(arn) = finding
        .arn
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    else {
        return Err("the finding carries no ARN (`arn`), which Security Hub knows it by".into());
    };
    let shown: String = arn.chars().take(80).collect();
    let wrong = |why: &str| Err(format!("the finding's ARN {shown:?} {why}"));
    if arn.len() > 512 {
        return wrong("is too long to be GuardDuty's");
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return wrong("is not an ARN");
    };
    if prefix != "arn" || !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
        return wrong("is not an AWS ARN");
    }
    if service != "guardduty" {
        return wrong("is not a GuardDuty finding's");
    }
    if !crate::ec2::is_region(region) || finding.region.as_deref() != Some(region) {
        return wrong("is not of the finding's region (`region`)");
    }
    if !crate::ec2::is_account_id(account) || finding.account_id.as_deref() != Some(account) {
        return wrong("is not of the finding's account (`accountId`)");
    }
    let id_like = |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric());
    let resource: Vec<&str> = resource.split('/').collect();
    let ["detector", detector, "finding", id] = resource[..] else {
        return wrong("does not name a detector's finding");
    };
    if !id_like(detector) || *id != finding.id {
        return wrong("is not this finding's");
    }
    Ok(FindingArn {
        arn: arn.to_string(),
        partition: partition.to_string(),
        region: region.to_string(),
        account_id: account.to_string(),
        detector_id: detector.to_string(),
        finding_id: id.to_string(),
    })
}

/// What Security Hub should say of the finding after this email: `NOTIFIED` when analysts are
/// told of a containment (the approval request, or a failure), `RESOLVED` with a note when an
/// approved restore released the instance; nothing for the other emails (the status stays
/// `NOTIFIED`). Security Hub keeps one note per finding: Cordon writes one only on the release,
/// so that an analyst's note taken during the incident stays until then.
pub fn workflow_update(
    kind: MessageKind,
    state: &WorkflowState,
    execution_arn: &str,
) -> Option<(WorkflowStatus, Option<String>)> {
    let instance = state
        .capture
        .instance_id
        .as_deref()
        .unwrap_or("the instance");
    let restore_status = state
        .restore
        .as_ref()
        .and_then(|restore| restore.get("status"))
        .and_then(|status| status.as_str());
    // Report-only changes nothing, the finding's workflow status included, whatever the
    // moment (a failure after a report-only capture, say).
    if state.capture.status == crate::capture::CaptureStatus::ReportOnly {
        return None;
    }
    let (status, note) = match kind {
        MessageKind::ApprovalRequest | MessageKind::Failed => {
            return Some((WorkflowStatus::Notified, None))
        }
        MessageKind::Restored => {
            let how = match restore_status {
                Some("restored") => "restored exactly",
                Some("drift") => "restored, with drift left alone (see the execution)",
                Some("not_isolated") => "released (it was not isolated)",
                _ => return None,
            };
            (
                WorkflowStatus::Resolved,
                format!("An analyst approved the release; Cordon {how} {instance}. Execution: {execution_arn}"),
            )
        }
        MessageKind::SecondApprovalRequest
        | MessageKind::KeptIsolated
        | MessageKind::ReportOnly => return None,
    };
    Some((status, Some(truncated(&note, NOTE_MAX_CHARS))))
}

fn truncated(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut kept: String = text.chars().take(max_chars - 1).collect();
    kept.push('…');
    kept
}

/// Follows the finding after this email: Security Hub's workflow status, and on a release
/// GuardDuty's archive if asked for (noted in the `ledger` first). Never fails and never takes
/// longer than [`FOLLOW_BUDGET`]: each line says what was done or why not.
pub async fn follow(
    hub_in: &impl SecurityHubProvider,
    guard_duty_in: &impl GuardDutyProvider,
    ledger: Option<&impl Ledger>,
    settings: Settings,
    kind: MessageKind,
    state: &WorkflowState,
    execution_arn: &str,
) -> Vec<String> {
    if settings.report_only {
        return vec!["report-only: the finding is left as it is".into()];
    }
    let Some((status, note)) = workflow_update(kind, state, execution_arn) else {
        return vec![];
    };
    let archive = settings.archive_on_restore && status == WorkflowStatus::Resolved;
    if !settings.security_hub && !archive {
        return vec![];
    }
    let finding = match state.capture.finding.as_ref().map(finding_arn) {
        Some(Ok(finding)) => finding,
        Some(Err(why)) => return vec![format!("finding not followed: {why}")],
        None => return vec!["finding not followed: the execution holds no finding".into()],
    };
    let work = async {
        let mut lines = vec![];
        if settings.security_hub {
            lines.push(mark(hub_in, &finding, status, note.as_deref()).await);
        }
        if archive {
            lines.push(archived(guard_duty_in, ledger, &finding, execution_arn).await);
        }
        lines
    };
    let lines = tokio::time::timeout(FOLLOW_BUDGET, work)
        .await
        .unwrap_or_else(|_| {
            vec![format!(
                "finding not followed: Security Hub and GuardDuty did not answer within {} s",
                FOLLOW_BUDGET.as_secs()
            )]
        });
    for line in &lines {
        tracing::info!(finding = %finding.finding_id, "{line}");
    }
    // An answer that is no service's (a proxy's HTML page) is quoted whole in the error: the
    // log keeps it, the report keeps its start.
    lines
        .iter()
        .map(|line| truncated(line, LINE_MAX_CHARS))
        .collect()
}

/// The longest line the report keeps.
const LINE_MAX_CHARS: usize = 400;

async fn mark(
    hub_in: &impl SecurityHubProvider,
    finding: &FindingArn,
    status: WorkflowStatus,
    note: Option<&str>,
) -> String {
    let target = Target {
        account_id: Some(finding.account_id.clone()),
        region: Some(finding.region.clone()),
    };
    let answer = match hub_in.security_hub_for(&target).await {
        Ok(hub) => hub.update_workflow(finding, status, note).await,
        Err(error) => Err(error),
    };
    let status = status.as_str();
    match answer {
        Ok(None) if note.is_some() => format!("Security Hub: workflow status {status}, with a note"),
        Ok(None) => format!("Security Hub: workflow status {status}"),
        Ok(Some(Unprocessed { code, .. })) if code == "FindingNotFound" => format!(
            "Security Hub: not set to {status}: it does not hold the finding yet (GuardDuty sends findings there within about 5 minutes) or is not enabled for GuardDuty in {}",
            finding.region
        ),
        Ok(Some(Unprocessed { code, message })) => {
            format!("Security Hub: not set to {status}: {code}: {message}")
        }
        Err(error) => format!("Security Hub: not set to {status}: {error}"),
    }
}

/// Archives the finding in GuardDuty, once the ledger notes that Cordon does (so that its
/// later activity, which GuardDuty reports archived, is still contained); without that note
/// it is not archived at all.
async fn archived(
    guard_duty_in: &impl GuardDutyProvider,
    ledger: Option<&impl Ledger>,
    finding: &FindingArn,
    execution_arn: &str,
) -> String {
    let archive = async {
        let Some(ledger) = ledger else {
            return Ok("GuardDuty: not archived: there is no release ledger to note it in, and an archived finding's later activity would not be contained".to_string());
        };
        if !ledger
            .mark_archived(&finding.finding_id, execution_arn)
            .await?
        {
            return Ok("GuardDuty: not archived: the ledger holds no release of it by this execution (a later one replaced it)".to_string());
        }
        let guard_duty = guard_duty_in.guard_duty_in(Some(&finding.region)).await?;
        let Some(detector) = guard_duty.detector().await? else {
            return Ok(format!(
                "GuardDuty: not archived: Cordon's account has no detector in {}",
                finding.region
            ));
        };
        guard_duty.archive(&detector, &finding.finding_id).await?;
        Ok::<_, CordonError>(format!("GuardDuty: finding archived (detector {detector}); its later activity is still contained"))
    };
    archive
        .await
        .unwrap_or_else(|error| format!("GuardDuty: not archived: {error}"))
}

#[cfg(test)]
mod tests;
