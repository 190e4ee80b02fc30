//! The finding's lifecycle after a release. GuardDuty keeps updating a finding while its
//! activity goes on (and republishes it every 6 hours by default), each update a new
//! EventBridge event, so a released instance would be contained again by the next update of
//! the very finding the analyst has just judged. Cordon keeps a ledger of releases (a DynamoDB
//! table in its own account, which nothing on an instance can write): the workflow's restore
//! records one, and an update of that finding contains the instance again only when it reports
//! activity after the release (`service.eventLastSeen` later than the release); otherwise the
//! execution is skipped with that reason.

pub mod aws;
pub mod port;
pub mod status;

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capture::{CaptureOutput, FindingSummary};
use crate::config::Config;
use crate::error::Result;
use crate::policy::Verdict;
pub use port::Ledger;

/// A release of an instance contained for a finding, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub finding_id: String,
    pub instance_id: String,
    /// When the analyst decided the release (RFC 3339, sealed with the decision).
    pub released_at: String,
    /// The execution whose approved restore released it.
    pub execution: String,
    /// Whether Cordon archived the finding in GuardDuty on this release
    /// (`ArchiveFindingOnRestore`): only then is an archived update of it Cordon's doing and
    /// not an analyst's judgement.
    #[serde(default)]
    pub archived_by_cordon: bool,
}

/// Why a finding seen again after `release` is not contained again, or None when it is:
/// its activity was last seen after the release (or it does not say when, and containing is
/// the side to err on), or the release was of another instance.
pub fn seen_again(instance_id: &str, last_seen: Option<&str>, release: &Release) -> Option<String> {
    if release.instance_id != instance_id {
        return None;
    }
    let at = |text: &str| DateTime::parse_from_rfc3339(text).ok();
    let (Some(seen), Some(released)) = (last_seen.and_then(at), at(&release.released_at)) else {
        return None;
    };
    (seen <= released).then(|| {
        format!(
            "{instance_id} was released for this finding at {} (execution {}), and GuardDuty last saw its activity at {}, before that: not contained again; activity after the release will be",
            release.released_at,
            release.execution,
            last_seen.unwrap_or_default()
        )
    })
}

/// The capture step, after the ledger: a finding the policy would contain whose instance was
/// released for it with no activity since is skipped before anything is read or changed on
/// the instance; anything else goes to `capture_step`. Without a ledger (`CORDON_RELEASE_TABLE`
/// unset), or one that cannot be read, every finding goes on.
///
/// A finding that Cordon itself archived on the release (`ArchiveFindingOnRestore`) is judged
/// as an active one: GuardDuty keeps sending its updates, still marked archived, when the
/// activity comes back, and that activity is what the release promised to contain. A finding
/// an analyst archived stays the analyst's call, as the policy says.
pub async fn capture_step(
    ec2_in: &impl crate::ec2::Ec2Provider,
    iam_in: &impl crate::measures::credentials::IamProvider,
    ledger: Option<&impl Ledger>,
    config: &Config,
    seal: &impl crate::seal::Seal,
    input: &Value,
) -> Result<CaptureOutput> {
    if let Some(ledger) = ledger {
        let unwrapped = crate::steps::unwrap_capture_input(input)?;
        let finding = crate::steps::single_finding(unwrapped.event)?;
        let as_if_active = crate::finding::Finding {
            archived: false,
            ..finding.clone()
        };
        if let (Verdict::Quarantine, Some(instance_id)) = (
            config.policy.decide(&as_if_active).verdict,
            finding.instance_id.as_deref(),
        ) {
            // A ledger that cannot be read contains: the rule only ever spares an instance.
            let release = match ledger.release_of(&finding.id).await {
                Ok(release) => release,
                Err(error) => {
                    tracing::warn!(error = %error, "the release ledger could not be read: containing");
                    None
                }
            };
            if let Some(release) = release.filter(|r| r.instance_id == instance_id) {
                if let Some(reason) =
                    seen_again(instance_id, finding.last_seen.as_deref(), &release)
                {
                    let mut output = CaptureOutput::skipped(
                        Some(instance_id.to_string()),
                        Some(FindingSummary::from(&finding)),
                        reason,
                    );
                    output.approval_timeout_seconds = Some(unwrapped.approval_timeout_seconds);
                    output.approvals_required = Some(unwrapped.approvals_required);
                    return Ok(output);
                }
                if finding.archived && release.archived_by_cordon && !config.policy.include_archived
                {
                    tracing::info!(
                        finding = %finding.id,
                        "an archived finding of a released instance reports activity after the release: containing"
                    );
                    let mut config = config.clone();
                    config.policy.include_archived = true;
                    return crate::steps::capture_step(ec2_in, iam_in, &config, seal, input).await;
                }
            }
        }
    }
    crate::steps::capture_step(ec2_in, iam_in, config, seal, input).await
}

#[cfg(test)]
mod tests;
