//! The analysts' email (SNS, plain text): what GuardDuty found, what Cordon did per interface
//! and network ACL, what failed, console links, and for the approval request the two signed
//! decision links.

use serde::{Deserialize, Serialize};

use crate::approval::{link_url, Action, LinkKey};
use crate::capture::CaptureStatus;
use crate::error::{CordonError, Result, StepError};
use crate::kms::Kms;
use crate::workflow::{Branch, WorkflowState};

/// SNS refuses subjects over 100 characters.
pub const SUBJECT_MAX_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    ApprovalRequest,
    /// Under the two-person rule, after a first approval: a second, different approver.
    SecondApprovalRequest,
    Restored,
    KeptIsolated,
    Failed,
    /// Report-only mode: what each measure would have done; nothing was changed.
    ReportOnly,
}

/// The notify step's input, built by the state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyInput {
    pub kind: MessageKind,
    pub execution_arn: String,
    /// Only for the approval requests (`$$.Task.Token`).
    #[serde(default)]
    pub task_token: Option<String>,
    /// The execution's state (`$`), read with [`WorkflowState::from_value`].
    pub state: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub subject: String,
    pub body: String,
}

/// Where decision links point and how they are signed.
#[derive(Debug, Clone)]
pub struct ApprovalSettings<'a, K> {
    pub base_url: String,
    pub key: &'a LinkKey<K>,
    pub timeout_seconds: i64,
    /// The OpenID Connect issuer the page signs analysts in at; `None`: the link decides.
    pub sign_in_at: Option<String>,
}

/// The decision links of an approval request, and where the page signs analysts in.
#[derive(Debug, Clone, Copy)]
pub struct DecisionLinks<'a> {
    pub approve: &'a str,
    pub reject: &'a str,
    pub sign_in_at: Option<&'a str>,
}

/// The notify worker's settings: `CORDON_TOPIC_ARN`, `CORDON_APPROVAL_URL` (the approval
/// page, a Function URL in production) and `CORDON_APPROVAL_KEY_ID` (the KMS HMAC key that
/// signs the links).
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub topic_arn: String,
    pub approval_url: String,
    pub approval_key_id: String,
    /// `CORDON_OIDC_ISSUER`: the approval page signs analysts in there.
    pub sign_in_at: Option<String>,
}

/// The KMS key that signs the links, shared by notify (`GenerateMac`) and approval
/// (`VerifyMac`). A key itself in the environment is refused: since the key moved into KMS,
/// a leftover `CORDON_APPROVAL_KEY` would be a secret anyone who reads the function sees.
pub fn approval_key_id_from(lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    if lookup("CORDON_APPROVAL_KEY").is_some_and(|v| !v.trim().is_empty()) {
        return Err(CordonError::InvalidConfiguration(
            "CORDON_APPROVAL_KEY is set, but links are signed by a KMS HMAC key now: remove the variable (and rotate whatever it held), and set CORDON_APPROVAL_KEY_ID to the key's ARN".into(),
        ));
    }
    crate::kms::key_id_from(
        lookup,
        "CORDON_APPROVAL_KEY_ID",
        "signs approval links (the stack's LinkKey)",
    )
}

impl NotifySettings {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let required = |name: &str, what: &str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    CordonError::InvalidConfiguration(format!(
                        "{name} is not set: it must hold {what}"
                    ))
                })
        };
        let topic_arn = required(
            "CORDON_TOPIC_ARN",
            "the SNS topic the analysts subscribe to",
        )?;
        if !topic_arn.starts_with("arn:") {
            return Err(CordonError::InvalidConfiguration(format!(
                "CORDON_TOPIC_ARN {topic_arn:?} is not an ARN"
            )));
        }
        let approval_url = required("CORDON_APPROVAL_URL", "the approval page's https URL")?;
        if !(approval_url.starts_with("https://") || approval_url.starts_with("http://127.0.0.1")) {
            return Err(CordonError::InvalidConfiguration(format!(
                "CORDON_APPROVAL_URL {approval_url:?} must be https (a task token travels in it)"
            )));
        }
        Ok(NotifySettings {
            topic_arn,
            approval_url,
            approval_key_id: approval_key_id_from(&lookup)?,
            sign_in_at: lookup("CORDON_OIDC_ISSUER").filter(|v| !v.trim().is_empty()),
        })
    }
}

/// The two links of an approval request: (approve restore, keep isolated).
pub async fn decision_links(
    settings: &ApprovalSettings<'_, impl Kms>,
    execution_arn: &str,
    token: &str,
    now: i64,
) -> Result<(String, String)> {
    let expires = now + settings.timeout_seconds;
    let (approve, reject) = tokio::join!(
        settings
            .key
            .sign(Action::Approve, expires, execution_arn, token),
        settings
            .key
            .sign(Action::Reject, expires, execution_arn, token)
    );
    Ok((
        link_url(&settings.base_url, &approve?),
        link_url(&settings.base_url, &reject?),
    ))
}

/// Who made `decision` (as the execution's state carries it), on one sanitised line;
/// `checked`: the restore step verified its seal.
pub(crate) fn decider_line(decision: Option<&serde_json::Value>, checked: bool) -> String {
    let field = |name: &str| decision.and_then(|a| a.get(name)).and_then(|v| v.as_str());
    let approver = field("approver").map(sanitize_line);
    // As the approver: an unsealed answer can carry anything here.
    let issuer = decision
        .and_then(|a| a.pointer("/identity/issuer"))
        .and_then(|v| v.as_str())
        .map(sanitize_line);
    crate::approval::who_decided(
        approver.as_deref(),
        field("via"),
        issuer.as_deref(),
        checked,
    )
}

/// The first approval a second one carries (the two-person rule), if any.
fn first_approval(state: &WorkflowState) -> Option<&serde_json::Value> {
    state
        .approval
        .as_ref()
        .and_then(|a| a.get("first_approval"))
        .filter(|first| first.is_object())
}

/// Who decided, as the restore step verified the decision, on one sanitised line: both
/// approvers under the two-person rule.
fn decided_by(state: &WorkflowState) -> String {
    let last = decider_line(state.approval.as_ref(), true);
    match first_approval(state) {
        Some(first) => format!(
            "{last}, after a first approval by {}",
            decider_line(Some(first), true)
        ),
        None => last,
    }
}

/// Text from outside Cordon (a typed approver name, an error's cause) as one line of at most
/// 200 characters: no control character can start a line that looks like Cordon's own.
fn sanitize_line(text: &str) -> String {
    one_line(text, 200)
}

/// `text` on one line (control characters as spaces), at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    line.trim().to_string()
}

/// A plan's note: Cordon's own sentence around names read from AWS, longer than an outside
/// line may be.
fn plan_line(text: &str) -> String {
    one_line(text, 600)
}

/// SNS subjects: ASCII, one line, at most 100 characters.
pub fn subject_line(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                ' '
            }
        })
        .collect();
    if clean.chars().count() <= SUBJECT_MAX_CHARS {
        return clean;
    }
    let mut cut: String = clean.chars().take(SUBJECT_MAX_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

/// Links to the instance, the execution and the finding in the console of the execution's
/// partition (none in a partition without a public console).
fn console_links(state: &WorkflowState, execution_arn: &str) -> String {
    let region = state.region();
    let partition = crate::partition::of_arn(execution_arn)
        .unwrap_or_else(|| crate::partition::of_region(region));
    let Some(base) = crate::partition::console_base(partition, region) else {
        return format!("  (no console links: partition {partition} has no public console)");
    };
    let mut lines = Vec::new();
    if let Some(instance) = &state.capture.instance_id {
        lines.push(format!(
            "  Instance:   {base}/ec2/home?region={region}#InstanceDetails:instanceId={instance}"
        ));
    }
    lines.push(format!(
        "  Execution:  {base}/states/home?region={region}#/v2/executions/details/{execution_arn}"
    ));
    if let Some(finding) = &state.capture.finding {
        lines.push(format!(
            "  Finding:    {base}/guardduty/home?region={region}#/findings?search=id%3D{}",
            finding.id
        ));
    }
    lines.join("\n")
}

pub(crate) fn what_was_done(state: &WorkflowState) -> (String, Vec<String>) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    match state.isolation() {
        Branch::Done(report) => {
            // Per interface, what is true: isolated, back on its original groups, or where
            // it was left (those that are not isolated also appear under what failed).
            for eni in &report.enis {
                done.push(format!("  {}", eni.line()));
            }
            if report.termination_protection {
                done.push("  termination protection: on".into());
            }
            done.extend(report.notes.iter().map(|n| format!("  {n}")));
            failed.extend(
                report
                    .errors
                    .iter()
                    .map(|e| format!("  {}: {}", e.error, e.cause)),
            );
        }
        Branch::Failed { error, cause } => {
            failed.push(format!("  security groups not changed: {error}: {cause}"))
        }
        Branch::Missing => {}
    }
    match state.nacl() {
        Branch::Done(report) => {
            for entry in &report.nacl_entries {
                done.push(format!(
                    "  {} {} rule {}: deny {}",
                    entry.acl_id,
                    if entry.egress { "outbound" } else { "inbound" },
                    entry.rule_number,
                    entry.cidr
                ));
            }
            for remote in &report.remote_not_denied {
                done.push(format!(
                    "  remote {} not denied: it {}",
                    remote.address, remote.reason
                ));
            }
            done.extend(
                report
                    .not_possible
                    .iter()
                    .map(|n| format!("  network ACLs not possible: {n}")),
            );
            failed.extend(
                report
                    .errors
                    .iter()
                    .map(|e| format!("  {}: {}", e.error, e.cause)),
            );
        }
        Branch::Failed { error, cause } => {
            failed.push(format!("  network ACLs not changed: {error}: {cause}"))
        }
        Branch::Missing => {}
    }
    match state.auto_scaling() {
        Branch::Done(report) => {
            // Only an instance in a group gets a line: the rest have nothing to say.
            if report.record.is_some() {
                done.push(format!("  Auto Scaling {}", report.line()));
            }
            failed.extend(
                report
                    .errors
                    .iter()
                    .map(|e| format!("  {}: {}", e.error, e.cause)),
            );
        }
        Branch::Failed { error, cause } => failed.push(format!(
            "  Auto Scaling group not checked: {error}: {cause} (if the instance is in a group, the group may replace it)"
        )),
        Branch::Missing => {}
    }
    match state.credentials() {
        Branch::Done(report) => {
            // Only an instance with a role gets a line.
            if report.record.is_some() {
                done.push(format!("  Credentials: {}", report.line()));
            }
            failed.extend(
                report
                    .errors
                    .iter()
                    .map(|e| format!("  credentials not cut: {}: {}", e.error, e.cause)),
            );
        }
        Branch::Failed { error, cause } => failed.push(format!(
            "  credentials not cut: {error}: {cause} (if the instance has a role, its credentials and copies of them still work)"
        )),
        Branch::Missing => {}
    }
    match state.load_balancers() {
        Branch::Done(report) => {
            if !report.deregistered.is_empty() {
                done.push(format!("  Load balancers: {}", report.line()));
            }
            failed.extend(
                report
                    .errors
                    .iter()
                    .map(|e| format!("  still a load balancer target: {}: {}", e.error, e.cause)),
            );
        }
        Branch::Failed { error, cause } => failed.push(format!(
            "  target groups not checked: {error}: {cause} (if the instance is registered in target groups of its own, it still is)"
        )),
        Branch::Missing => {}
    }
    // Evidence is not containment: a missing snapshot is said, and the instance is as
    // contained as the other branches made it.
    match state.evidence() {
        Branch::Done(report) => {
            if !report.snapshots.is_empty() || !report.errors.is_empty() {
                done.push(format!("  Evidence: {}", report.line()));
            }
            failed.extend(
                report
                    .errors
                    .iter()
                    .map(|e| format!("  evidence not preserved: {}: {}", e.error, e.cause)),
            );
        }
        Branch::Failed { error, cause } => failed.push(format!(
            "  evidence not preserved: {error}: {cause} (snapshot the volumes by hand before anything else changes them)"
        )),
        Branch::Missing => {}
    }
    (done.join("\n"), failed)
}

/// What each measure would have done, in report-only mode (their plans, from their notes),
/// and what could not be planned.
pub(crate) fn what_would_be_done(state: &WorkflowState) -> (String, Vec<String>) {
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    let mut measure = |title: &str, branch: Branch<(Vec<String>, Vec<StepError>)>| match branch {
        Branch::Done((notes, errors)) => {
            if !notes.is_empty() {
                lines.push(format!("  {title}:"));
                lines.extend(notes.iter().map(|n| format!("    {}", plan_line(n))));
            }
            failed.extend(
                errors
                    .iter()
                    .map(|e| format!("  {title}: {}: {}", e.error, plan_line(&e.cause))),
            );
        }
        Branch::Failed { error, cause } => failed.push(format!(
            "  {title} not planned: {error}: {}",
            plan_line(&cause)
        )),
        Branch::Missing => {}
    };
    let isolation = state.isolation().map(|r| (r.notes, r.errors));
    measure("Security groups", isolation);
    let nacl = state.nacl().map(|r| {
        let mut notes: Vec<String> = r
            .would_deny
            .iter()
            .map(|e| {
                // The number is the containment's to pick when it makes the deny.
                format!(
                    "{} {}: would deny {}",
                    e.acl_id,
                    if e.egress { "outbound" } else { "inbound" },
                    e.cidr
                )
            })
            .collect();
        notes.extend(r.already_denied.iter().cloned());
        notes.extend(r.remote_not_denied.iter().map(|remote| {
            format!(
                "remote {} would not be denied: it {}",
                remote.address, remote.reason
            )
        }));
        notes.extend(r.not_possible.iter().cloned());
        notes.extend(r.notes.iter().cloned());
        (notes, r.errors)
    });
    measure("Network ACLs", nacl);
    let auto_scaling = state.auto_scaling().map(|r| (r.notes, r.errors));
    measure("Auto Scaling", auto_scaling);
    let credentials = state.credentials().map(|r| (r.notes, r.errors));
    measure("Credentials", credentials);
    let load_balancers = state.load_balancers().map(|r| (r.notes, r.errors));
    measure("Load balancers", load_balancers);
    let evidence = state.evidence().map(|r| (r.notes, r.errors));
    measure("Evidence", evidence);
    (lines.join("\n"), failed)
}

/// The email for one moment of the workflow. `links` are the decision links of an approval
/// request.
pub fn render(
    kind: MessageKind,
    state: &WorkflowState,
    execution_arn: &str,
    links: Option<DecisionLinks<'_>>,
) -> Message {
    let instance = state
        .capture
        .instance_id
        .as_deref()
        .unwrap_or("(unknown instance)");
    let region = state.region();
    let (finding_line, finding_short) = match &state.capture.finding {
        Some(f) => (
            format!(
                "{} (severity {}), finding {}, account {}, {}",
                f.finding_type,
                f.severity,
                f.id,
                f.account_id.as_deref().unwrap_or("?"),
                region
            ),
            format!("{} sev {}", f.finding_type, f.severity),
        ),
        None => ("(no finding)".into(), "no finding".into()),
    };
    let partial = state.containment.is_some() && state.containment_is_partial();
    // What a report-only execution's measures say is a plan, whatever the moment (a failure
    // after capture, or an email of a definition from before report-only).
    let planned =
        kind == MessageKind::ReportOnly || state.capture.status == CaptureStatus::ReportOnly;
    let (done, failed) = if planned {
        what_would_be_done(state)
    } else {
        what_was_done(state)
    };
    let mut sections = vec![format!("GuardDuty reported {finding_line}.")];
    let subject = match kind {
        MessageKind::ApprovalRequest | MessageKind::SecondApprovalRequest => {
            let (approve, reject, sign_in_at) = links
                .map(|l| (l.approve, l.reject, l.sign_in_at))
                .unwrap_or(("(no link)", "(no link)", None));
            let who_decides = match sign_in_at {
                Some(issuer) => format!("The page asks you to sign in at {issuer}; only an analyst the stack allows can decide, and the decision records who signed in."),
                None => "No sign-in is configured: anyone who has these links can decide, and the name they type is recorded as typed, unchecked. Do not forward this email.".into(),
            };
            sections.push(format!(
                "Cordon has {} {instance}. It stays isolated until someone decides.",
                if partial {
                    "PARTLY isolated"
                } else {
                    "isolated"
                }
            ));
            let second = kind == MessageKind::SecondApprovalRequest;
            if second {
                sections.push(format!(
                    "SECOND APPROVAL NEEDED. {} approved restoring it. The stack requires two different approvers: restore runs only when someone else approves too (the restore step checks both decisions' seals).",
                    decider_line(state.approval.as_ref(), false)
                ));
            } else if state.capture.approvals_required.unwrap_or(1) >= 2 {
                sections.push("The stack requires two different approvers: an approval here asks a second person before anything is restored.".into());
            }
            sections.push(format!(
                "Approve restore (puts back the recorded network state):\n  {approve}\n\nKeep isolated:\n  {reject}\n\nThe links open a page that shows what restore will do; nothing happens until you press its button.\n{who_decides}"
            ));
            format!(
                "Cordon: {instance} {} ({finding_short}) - {}",
                if partial {
                    "PARTLY isolated"
                } else {
                    "isolated"
                },
                if second {
                    "second approval needed"
                } else {
                    "approve restore?"
                }
            )
        }
        MessageKind::Restored => {
            let report = state.restore_report();
            let group = report.as_ref().and_then(|r| r.auto_scaling.as_ref());
            let drift = report.as_ref().is_some_and(|r| !r.errors.is_empty())
                || group.is_some_and(|g| !g.errors.is_empty());
            if let Some(report) = &report {
                let mut lines: Vec<String> = report
                    .enis
                    .iter()
                    .map(|e| {
                        format!(
                            "  {}: {:?}, groups now {}",
                            e.eni_id,
                            e.outcome,
                            e.groups_now.join(", ")
                        )
                    })
                    .collect();
                if let Some(credentials) = &report.credentials {
                    lines.push(credentials.line());
                }
                if let Some(evidence) = &report.evidence {
                    lines.push(evidence.line());
                }
                if let Some(group) = group {
                    lines.push(group.line());
                }
                if let Some(load_balancers) = &report.load_balancers {
                    lines.push(load_balancers.line());
                }
                sections.push(format!(
                    "Restore of {instance}: {:?}.\n{}\n  network ACL entries removed: {}",
                    report.status,
                    lines.join("\n"),
                    report.nacl_entries_removed.len()
                ));
                if drift {
                    let group_errors = group.map(|g| g.errors.as_slice()).unwrap_or_default();
                    sections.push(format!(
                        "Not restored (changed since isolation, left as it is):\n{}",
                        report
                            .errors
                            .iter()
                            .chain(group_errors)
                            .map(|e| format!("  {}", e.cause))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ));
                }
            }
            sections.push(format!("Approved by {}.", decided_by(state)));
            format!(
                "Cordon: {instance} {}",
                if drift {
                    "restored with drift - check it"
                } else {
                    "restored"
                }
            )
        }
        MessageKind::KeptIsolated => {
            let approval = state.approval.as_ref();
            let field = |name: &str| approval.and_then(|a| a.get(name)).and_then(|v| v.as_str());
            let refused = state
                .restore
                .as_ref()
                .filter(|r| r.get("status").and_then(|s| s.as_str()) == Some("decision_refused"))
                .and_then(|r| r.pointer("/errors/0/cause"))
                .and_then(|c| c.as_str());
            // Only the restore step checks a decision's seal: a "keep isolated" answer is
            // taken as it comes (it changes nothing), so the email says what arrived, not who.
            let why = match (refused, field("decision")) {
                (Some(reason), _) => format!(
                    "a decision to restore arrived that Cordon did not make, and was refused: {}. Whoever sent it is in CloudTrail (states:SendTaskSuccess); nothing was restored",
                    sanitize_line(reason)
                ),
                // Unchecked, so how the approver is known is only what the answer claims.
                (None, Some("reject")) => format!(
                    "a decision to keep it isolated arrived, naming {} (as the answer says: a decision to keep isolated is not checked, since it changes nothing)",
                    field("approver").map(sanitize_line).as_deref().unwrap_or("no one")
                ),
                (None, Some("approve")) if first_approval(state).is_none() => format!(
                    "{} approved, but the stack requires a second, different approver and none approved before the request expired",
                    decider_line(state.approval.as_ref(), false)
                ),
                _ => "nobody decided before the approval request expired".into(),
            };
            sections.push(format!(
                "{instance} stays isolated: {why}.\nTo restore it by hand later:\n  cordon restore --instance {instance} --region {region}"
            ));
            format!("Cordon: {instance} kept isolated")
        }
        MessageKind::Failed => {
            let error = state.error.as_ref();
            let field = |name| {
                error
                    .and_then(|e| e.get(name))
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
            };
            sections.push(if planned {
                format!(
                    "The report-only workflow for {instance} FAILED: {}: {}\nIt changed nothing; what it had planned before the failure is listed below.",
                    field("Error"),
                    field("Cause")
                )
            } else {
                format!(
                    "The workflow for {instance} FAILED: {}: {}\nCheck the instance now; what Cordon did before the failure is listed below.",
                    field("Error"),
                    field("Cause")
                )
            });
            format!("Cordon: FAILED on {instance} ({finding_short})")
        }
        MessageKind::ReportOnly => {
            sections.push(format!(
                "REPORT ONLY: Cordon changed nothing on {instance}, and asks for no decision (there is nothing to restore). The stack's Mode is report-only; with Mode=contain, it would have done what follows."
            ));
            format!("Cordon: report-only, would contain {instance} ({finding_short})")
        }
    };
    if planned {
        if !done.is_empty() {
            sections.push(format!("What Cordon would have done:\n{done}"));
        }
        if !failed.is_empty() {
            sections.push(format!(
                "What could not be planned (with Mode=contain, these would have failed too, or been tried again):\n{}",
                failed.join("\n")
            ));
        }
    } else {
        if !done.is_empty() {
            sections.push(format!("What Cordon did:\n{done}"));
        }
        if !failed.is_empty() {
            sections.push(format!(
                "What failed (containment is partial):\n{}",
                failed.join("\n")
            ));
        }
    }
    sections.push(format!("Console:\n{}", console_links(state, execution_arn)));
    Message {
        subject: subject_line(&subject),
        body: sections.join("\n\n") + "\n",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyOutput {
    pub message_id: String,
    pub subject: String,
    /// What became of the finding in Security Hub and GuardDuty (`lifecycle::status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finding: Vec<String>,
}

/// Where the finding is followed after the email (`lifecycle::status`), and the release
/// ledger that notes an archive.
#[derive(Debug, Clone, Copy)]
pub struct FindingFollow<'a, H, G, L> {
    pub security_hub: &'a H,
    pub guard_duty: &'a G,
    pub ledger: Option<&'a L>,
    pub settings: crate::lifecycle::status::Settings,
}

/// The email a report-only execution gets at `kind`: the report, in place of an approval
/// request or an outcome, which only a definition from before report-only sends it (a stack
/// update runs the new functions before the new definition). No link is minted for it, so
/// nothing it holds can be restored; its failures are failures.
pub fn kind_for(kind: MessageKind, state: &WorkflowState) -> MessageKind {
    let report_only = state.capture.status == CaptureStatus::ReportOnly;
    match kind {
        MessageKind::Failed => MessageKind::Failed,
        _ if report_only => MessageKind::ReportOnly,
        other => other,
    }
}

/// notify: renders and publishes, then follows the finding in Security Hub (which never
/// holds the email back nor fails the step). The approval request's task token goes
/// only into the signed links, never into a log.
pub async fn notify_step(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    approval: &ApprovalSettings<'_, impl Kms>,
    follow: FindingFollow<
        '_,
        impl crate::lifecycle::status::SecurityHubProvider,
        impl crate::lifecycle::status::GuardDutyProvider,
        impl crate::lifecycle::Ledger,
    >,
    input: &NotifyInput,
    now: i64,
) -> Result<NotifyOutput> {
    let state = WorkflowState::from_value(&input.state);
    let kind = kind_for(input.kind, &state);
    let token = input.task_token.as_deref().filter(|t| !t.trim().is_empty());
    let asks = matches!(
        kind,
        MessageKind::ApprovalRequest | MessageKind::SecondApprovalRequest
    );
    let links = match (asks, token) {
        (true, Some(token)) => {
            Some(decision_links(approval, &input.execution_arn, token, now).await?)
        }
        (true, None) => {
            return Err(CordonError::InvalidInput(
                "an approval request needs the task token ($$.Task.Token)".into(),
            ))
        }
        _ => None,
    };
    let message = render(
        kind,
        &state,
        &input.execution_arn,
        links.as_ref().map(|(approve, reject)| DecisionLinks {
            approve,
            reject,
            sign_in_at: approval.sign_in_at.as_deref(),
        }),
    );
    let sent = sns
        .publish()
        .topic_arn(topic_arn)
        .subject(&message.subject)
        .message(&message.body)
        .send()
        .await
        .map_err(|error| crate::aws::sdk_error("Publish", topic_arn, error))?;
    // Only once the analysts are told: NOTIFIED must be true when Security Hub shows it.
    let finding = crate::lifecycle::status::follow(
        follow.security_hub,
        follow.guard_duty,
        follow.ledger,
        follow.settings,
        kind,
        &state,
        &input.execution_arn,
    )
    .await;
    Ok(NotifyOutput {
        message_id: sent.message_id().unwrap_or_default().to_string(),
        subject: message.subject,
        finding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> WorkflowState {
        serde_json::from_value(json!({
            "status": "captured", "reason": "r", "instance_id": "i-0000abcd", "tags_written": true, "warnings": [],
            "finding": {"id": "f-1", "finding_type": "Backdoor:EC2/C&CActivity.B", "severity": 8.0,
                        "account_id": "111122223333", "region": "eu-west-1", "remote_addresses": ["198.51.100.7"]},
            "record": null,
            "containment": {
                "isolation": {"instance_id": "i-0000abcd", "status": "done", "groups": {}, "termination_protection": true, "errors": [],
                 "enis": [{"eni_id": "eni-1", "original_groups": ["sg-web", "sg-ssh"], "groups_now": ["sg-iso"]}]},
                "nacl": {"instance_id": "i-0000abcd", "status": "partial", "already_denied": [], "notes": [],
                 "nacl_entries": [{"acl_id": "acl-a", "egress": false, "rule_number": 1, "cidr": "198.51.100.7/32"}],
                 "errors": [{"error": "Cordon.NaclQuotaExceeded", "cause": "network ACL acl-b has 20 inbound rules"}]}
            }
        }))
        .unwrap()
    }

    /// A report-only execution: its capture and each measure's plan.
    fn planned_state() -> WorkflowState {
        serde_json::from_value(json!({
            "status": "report_only", "reason": "r", "instance_id": "i-0000abcd", "tags_written": false, "warnings": [],
            "finding": {"id": "f-1", "finding_type": "Backdoor:EC2/C&CActivity.B", "severity": 8.0,
                        "account_id": "111122223333", "region": "eu-west-1", "remote_addresses": ["198.51.100.7"]},
            "record": null,
            "containment": {
                "isolation": {"instance_id": "i-0000abcd", "status": "report_only", "groups": {}, "termination_protection": false,
                 "enis": [], "notes": ["eni-1: would move from sg-web to the isolation group sg-iso"],
                 "errors": [{"error": "Cordon.NotContainable", "cause": "eni-2: could not be isolated by its groups: a trunk"}]},
                "nacl": {"instance_id": "i-0000abcd", "status": "report_only", "already_denied": [], "notes": [],
                 "nacl_entries": [], "errors": [],
                 "would_deny": [{"acl_id": "acl-a", "egress": false, "rule_number": 7, "cidr": "198.51.100.7/32"}]},
                "auto_scaling": {"instance_id": "i-0000abcd", "status": "report_only", "record": null,
                 "lifecycle_state": "InService", "protected_from_scale_in": false,
                 "notes": ["would move it into Standby in web,\nso that the group does not terminate it"], "errors": []}
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_report_only_email_says_what_each_measure_would_have_done_and_asks_nothing() {
        let state = planned_state();
        let message = render(MessageKind::ReportOnly, &state, "arn:exec", None);
        assert_eq!(
            message.subject,
            "Cordon: report-only, would contain i-0000abcd (Backdoor:EC2/C&CActivity.B sev 8)"
        );
        let body = &message.body;
        assert!(
            body.contains("REPORT ONLY: Cordon changed nothing on i-0000abcd"),
            "{body}"
        );
        assert!(
            body.contains("  Security groups:\n    eni-1: would move from sg-web"),
            "{body}"
        );
        assert!(
            body.contains("acl-a inbound: would deny 198.51.100.7/32"),
            "{body}"
        );
        // A note's line break from outside is one line in the email.
        assert!(
            body.contains("would move it into Standby in web, so that"),
            "{body}"
        );
        assert!(body.contains("What could not be planned"), "{body}");
        assert!(body.contains("eni-2: could not be isolated"), "{body}");
        assert!(
            !body.contains("What Cordon did") && !body.contains("Approve"),
            "{body}"
        );
        // A definition from before report-only asks for approval: the report goes instead,
        // and no link is made; a failure stays a failure, worded as the report's.
        for kind in [
            MessageKind::ApprovalRequest,
            MessageKind::SecondApprovalRequest,
            MessageKind::KeptIsolated,
            MessageKind::Restored,
        ] {
            assert_eq!(kind_for(kind, &state), MessageKind::ReportOnly, "{kind:?}");
        }
        assert_eq!(kind_for(MessageKind::Failed, &state), MessageKind::Failed);
        assert_eq!(
            kind_for(MessageKind::ApprovalRequest, &self::state()),
            MessageKind::ApprovalRequest
        );
        let failed = render(MessageKind::Failed, &state, "arn:exec", None).body;
        assert!(
            failed.contains("The report-only workflow for i-0000abcd FAILED"),
            "{failed}"
        );
        assert!(failed.contains("What Cordon would have done"), "{failed}");
    }

    #[test]
    fn the_email_says_per_interface_what_is_true_and_which_remotes_were_not_denied() {
        let mut state = state();
        let containment = serde_json::to_value(&state).unwrap()["containment"].clone();
        let mut containment = containment;
        containment["isolation"]["enis"] = json!([
            {"eni_id": "eni-1", "outcome": "rolled_back", "original_groups": ["sg-web"], "groups_now": ["sg-web"],
             "cause": {"error": "Cordon.AccessDenied", "cause": "explicit deny in a service control policy"}},
            {"eni_id": "eni-2", "outcome": "left_on", "original_groups": ["sg-web"], "groups_now": ["sg-conv"],
             "cause": {"error": "Cordon.Throttled", "cause": "rate exceeded"}}
        ]);
        containment["nacl"]["remote_not_denied"] =
            json!([{"address": "10.0.0.2", "reason": "is inside the VPC's own block 10.0.0.0/16"}]);
        let mut value = serde_json::to_value(&state).unwrap();
        value["containment"] = containment;
        state = serde_json::from_value(value).unwrap();
        let message = render(MessageKind::ApprovalRequest, &state, "arn:exec", None);
        for expected in [
            "eni-1: NOT isolated, put back on its original groups sg-web (Cordon.AccessDenied: explicit deny",
            "eni-2: NOT isolated, left on sg-conv (Cordon.Throttled",
            "remote 10.0.0.2 not denied: it is inside the VPC's own block 10.0.0.0/16",
        ] {
            assert!(message.body.contains(expected), "{expected}\n{}", message.body);
        }
    }

    #[test]
    fn console_links_lead_to_the_console_of_the_executions_partition() {
        let mut state = state();
        let console = |state: &WorkflowState, execution: &str| {
            let body = render(MessageKind::ApprovalRequest, state, execution, None).body;
            body.split("Console:\n").nth(1).unwrap().to_string()
        };
        let commercial = console(
            &state,
            "arn:aws:states:eu-west-1:111122223333:execution:cordon-quarantine:e",
        );
        assert!(
            commercial.contains("https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#InstanceDetails:instanceId=i-0000abcd"),
            "{commercial}"
        );
        state.capture.finding.as_mut().unwrap().region = Some("us-gov-west-1".into());
        let gov = console(
            &state,
            "arn:aws-us-gov:states:us-gov-west-1:111122223333:execution:cordon-quarantine:e",
        );
        assert!(
            gov.contains("https://console.amazonaws-us-gov.com/states/home?region=us-gov-west-1#/v2/executions/details/arn:aws-us-gov:states:"),
            "{gov}"
        );
        assert!(!gov.contains("aws.amazon.com"), "{gov}");
        state.capture.finding.as_mut().unwrap().region = Some("cn-north-1".into());
        // The region alone decides when the execution's ARN does not say.
        let china = console(&state, "arn:exec");
        assert!(
            china.contains("https://console.amazonaws.cn/guardduty/home?region=cn-north-1"),
            "{china}"
        );
    }

    #[tokio::test]
    async fn the_approval_request_says_what_was_found_done_and_failed_and_carries_both_links() {
        let key = LinkKey {
            kms: crate::kms::fake::FakeKms::with_key("k", b"material"),
            key_id: "k".to_string(),
        };
        let settings = ApprovalSettings {
            base_url: "https://approve.example/".into(),
            key: &key,
            timeout_seconds: 3600,
            sign_in_at: None,
        };
        let (approve, reject) = decision_links(&settings, "arn:exec", "token+1", 1_000)
            .await
            .unwrap();
        let message = render(
            MessageKind::ApprovalRequest,
            &state(),
            "arn:exec",
            Some(DecisionLinks {
                approve: &approve,
                reject: &reject,
                sign_in_at: None,
            }),
        );
        assert!(message.subject.len() <= SUBJECT_MAX_CHARS);
        assert!(
            message.subject.contains("i-0000abcd") && message.subject.contains("PARTLY"),
            "{}",
            message.subject
        );
        for expected in [
            "Backdoor:EC2/C&CActivity.B (severity 8)",
            "f-1",
            "eni-1: isolated, security groups sg-web, sg-ssh -> sg-iso",
            "acl-a inbound rule 1: deny 198.51.100.7/32",
            "Cordon.NaclQuotaExceeded",
            "#InstanceDetails:instanceId=i-0000abcd",
            "/states/home?region=eu-west-1#/v2/executions/details/arn:exec",
            approve.as_str(),
            reject.as_str(),
        ] {
            assert!(
                message.body.contains(expected),
                "missing {expected:?} in\n{}",
                message.body
            );
        }
        assert!(approve.contains("a=approve") && reject.contains("a=reject"));
        assert!(
            approve.contains(&format!("e={}", 1_000 + 3600)),
            "links expire with the task"
        );
    }

    #[test]
    fn each_kind_has_its_own_message() {
        let kept = render(MessageKind::KeptIsolated, &state(), "arn:exec", None);
        assert_eq!(kept.subject, "Cordon: i-0000abcd kept isolated");
        assert!(kept
            .body
            .contains("cordon restore --instance i-0000abcd --region eu-west-1"));
        assert!(kept.body.contains("expired"));
        let mut rejected = state();
        rejected.approval = Some(json!({"decision": "reject"}));
        assert!(render(MessageKind::KeptIsolated, &rejected, "a", None)
            .body
            .contains("a decision to keep it isolated arrived"));
        let mut forged = state();
        forged.approval = Some(json!({"decision": "approve"}));
        forged.restore = Some(json!({"status": "decision_refused", "errors": [
            {"error": "Cordon.DecisionRefused", "cause": "the decision carries no seal"}]}));
        let body = render(MessageKind::KeptIsolated, &forged, "a", None).body;
        assert!(
            body.contains("a decision to restore arrived that Cordon did not make")
                && body.contains("the decision carries no seal")
                && body.contains("CloudTrail"),
            "{body}"
        );
        let mut failed = state();
        failed.error = Some(
            json!({"Error": "Cordon.AccessDenied", "Cause": "no ModifyNetworkInterfaceAttribute"}),
        );
        let message = render(MessageKind::Failed, &failed, "arn:exec", None);
        assert!(message.subject.starts_with("Cordon: FAILED on i-0000abcd"));
        assert!(message
            .body
            .contains("Cordon.AccessDenied: no ModifyNetworkInterfaceAttribute"));
        let restored = render(MessageKind::Restored, &state(), "arn:exec", None);
        assert_eq!(restored.subject, "Cordon: i-0000abcd restored");
    }

    #[test]
    fn the_two_person_rule_asks_a_second_approver_and_names_both() {
        let links = Some(DecisionLinks {
            approve: "https://a/",
            reject: "https://r/",
            sign_in_at: Some("https://idp.example"),
        });
        let ada = json!({"decision": "approve", "approver": "ada@example.com", "via": "signed_in",
            "identity": {"issuer": "https://idp.example", "subject": "1", "email": "ada@example.com"},
            "decided_at": "t1", "round": 1, "seal": "00"});
        let mut two = state();
        two.capture.approvals_required = Some(2);
        // The first request says that one approval will not restore.
        let first = render(MessageKind::ApprovalRequest, &two, "arn:exec", links);
        assert!(
            first
                .body
                .contains("The stack requires two different approvers"),
            "{}",
            first.body
        );
        assert!(
            first.subject.ends_with("approve restore?"),
            "{}",
            first.subject
        );
        // The second names who approved first, and carries its own links.
        two.approval = Some(ada.clone());
        let second = render(MessageKind::SecondApprovalRequest, &two, "arn:exec", links);
        assert!(
            second.body.contains("SECOND APPROVAL NEEDED. ada@example.com (signed in at https://idp.example; as the workflow received it, not yet checked: restore checks its seal) approved restoring it."),
            "{}",
            second.body
        );
        assert!(second.body.contains("https://a/") && second.body.contains("https://r/"));
        assert!(
            second.subject.ends_with("second approval needed"),
            "{}",
            second.subject
        );
        // Restored: both approvers. Timed out after one: said so.
        let mut restored = two.clone();
        restored.approval = Some(
            json!({"decision": "approve", "approver": "grace@example.com",
            "via": "signed_in", "identity": {"issuer": "https://idp.example", "subject": "2", "email": "grace@example.com"},
            "decided_at": "t2", "round": 2, "first_approval": ada, "seal": "00"}),
        );
        let body = render(MessageKind::Restored, &restored, "arn:exec", None).body;
        assert!(
            body.contains("Approved by grace@example.com (signed in at https://idp.example, identity verified), after a first approval by ada@example.com (signed in at https://idp.example, identity verified)."),
            "{body}"
        );
        let body = render(MessageKind::KeptIsolated, &two, "arn:exec", None).body;
        assert!(
            body.contains("ada@example.com (signed in at https://idp.example; as the workflow received it, not yet checked: restore checks its seal) approved, but the stack requires a second, different approver and none approved before the request expired"),
            "{body}"
        );
    }

    #[test]
    fn the_emails_say_who_decided_and_how_far_that_is_known() {
        let request = render(
            MessageKind::ApprovalRequest,
            &state(),
            "arn:exec",
            Some(DecisionLinks {
                approve: "https://a/",
                reject: "https://r/",
                sign_in_at: None,
            }),
        );
        assert!(
            request
                .body
                .contains("No sign-in is configured: anyone who has these links can decide"),
            "{}",
            request.body
        );
        let mut approved = state();
        approved.approval = Some(
            json!({"decision": "approve", "approver": "Ada\nApproved by: the CISO",
            "via": "unauthenticated_link", "decided_at": "now", "seal": "00"}),
        );
        let body = render(MessageKind::Restored, &approved, "arn:exec", None).body;
        assert!(
            body.contains("Approved by Ada Approved by: the CISO (unauthenticated link: whoever held the email's link; the name as typed, checked by no one)."),
            "{body}"
        );
        let mut rejected = state();
        rejected.approval = Some(json!({"decision": "reject",
            "approver": "arn:aws:sts::111122223333:assumed-role/Responder/ada", "via": "aws_iam"}));
        let body = render(MessageKind::KeptIsolated, &rejected, "arn:exec", None).body;
        assert!(
            body.contains("keep it isolated arrived, naming arn:aws:sts::111122223333:assumed-role/Responder/ada (as the answer says: a decision to keep isolated is not checked"),
            "{body}"
        );
        // An unsealed "keep isolated" that claims a verified sign-in is not reported as one.
        let mut claimed = state();
        claimed.approval = Some(json!({"decision": "reject", "approver": "ciso@example.com",
            "via": "signed_in", "identity": {"issuer": "https://idp.example", "subject": "1"}}));
        let body = render(MessageKind::KeptIsolated, &claimed, "arn:exec", None).body;
        assert!(!body.contains("identity verified"), "{body}");
        // Signed in: the request says where, the outcome names the verified identity, and a
        // forged issuer cannot start a line of its own.
        let request = render(
            MessageKind::ApprovalRequest,
            &state(),
            "arn:exec",
            Some(DecisionLinks {
                approve: "https://a/",
                reject: "https://r/",
                sign_in_at: Some("https://idp.example"),
            }),
        );
        assert!(
            request
                .body
                .contains("The page asks you to sign in at https://idp.example")
                && !request.body.contains("No sign-in is configured"),
            "{}",
            request.body
        );
        let mut signed_in = state();
        signed_in.approval = Some(json!({"decision": "approve", "approver": "ada@example.com",
            "via": "signed_in", "identity": {"issuer": "https://idp.example\nRestored by: the CISO",
            "subject": "248289761001", "email": "ada@example.com"}, "decided_at": "now", "seal": "00"}));
        let body = render(MessageKind::Restored, &signed_in, "arn:exec", None).body;
        assert!(
            body.contains("Approved by ada@example.com (signed in at https://idp.example Restored by: the CISO, identity verified)."),
            "{body}"
        );
    }

    #[test]
    fn settings_are_checked_with_names_in_the_errors() {
        let vars = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |name: &str| map.get(name).cloned()
        };
        let good = [
            ("CORDON_TOPIC_ARN", "arn:aws:sns:us-east-1:1:t"),
            (
                "CORDON_APPROVAL_URL",
                "https://x.lambda-url.us-east-1.on.aws/",
            ),
            (
                "CORDON_APPROVAL_KEY_ID",
                "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            ),
        ];
        assert!(NotifySettings::from_lookup(vars(&good)).is_ok());
        for (name, value, expected) in [
            ("CORDON_TOPIC_ARN", "", "CORDON_TOPIC_ARN is not set"),
            ("CORDON_TOPIC_ARN", "alerts", "is not an ARN"),
            (
                "CORDON_APPROVAL_URL",
                "http://example.com/",
                "must be https",
            ),
            (
                "CORDON_APPROVAL_KEY_ID",
                "",
                "CORDON_APPROVAL_KEY_ID is not set",
            ),
            (
                "CORDON_APPROVAL_KEY_ID",
                "5e3c7a1f0b9d4e2a8c6f1b3d5a7e9c0f2b4d6a8c0e1f3a5b7d9c2e4f6a8b0c1d",
                "must name a KMS HMAC_256 key",
            ),
            (
                "CORDON_APPROVAL_KEY",
                "5e3c7a1f0b9d4e2a8c6f1b3d5a7e9c0f2b4d6a8c0e1f3a5b7d9c2e4f6a8b0c1d",
                "remove the variable",
            ),
        ] {
            let mut changed = good.to_vec();
            changed.retain(|(k, _)| *k != name);
            changed.push((name, value));
            let error = NotifySettings::from_lookup(vars(&changed)).unwrap_err();
            assert!(error.to_string().contains(expected), "{name}: {error}");
        }
    }

    #[test]
    fn outside_text_in_the_body_is_one_short_line() {
        assert_eq!(sanitize_line("Ada\nRestored: yes\r"), "Ada Restored: yes");
        assert_eq!(sanitize_line(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn subjects_are_ascii_one_line_and_at_most_100_chars() {
        let long = format!("Cordon: {}\nécho", "x".repeat(200));
        let subject = subject_line(&long);
        assert_eq!(subject.chars().count(), 100);
        assert!(subject.is_ascii() && !subject.contains('\n') && subject.ends_with("..."));
    }
}
