//! What an execution's history says about its approval request.

use super::{task_key, Decision, PageContext};
use crate::workflow::{Branch, WorkflowState};

/// The states that wait for a decision, and which approval each asks for: the first, and
/// under the two-person rule the second.
pub const APPROVAL_STATES: [(&str, u8); 2] = [("RequestApproval", 1), ("RequestSecondApproval", 2)];

/// Which approval `state` asks for, if it is an approval state.
fn approval_round(state: &str) -> Option<u8> {
    APPROVAL_STATES
        .iter()
        .find(|(name, _)| *name == state)
        .map(|(_, round)| *round)
}

pub enum Standing {
    Waiting(Box<Waiting>),
    Decided(String),
    /// Running and waiting, but for another task than the link's.
    OtherTask,
}

/// An approval request that can be answered now.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    /// What the page shows and restore would put back.
    pub context: PageContext,
    /// The token of the task the approval state waits on, read from the history (never from
    /// a link).
    pub token: String,
    /// Which approval is asked for: 1, or 2 under the two-person rule.
    pub round: u8,
    /// For the second approval, the first as the workflow received it (`$.approval`).
    pub first_approval: Option<Decision>,
}

/// One history event, as far as the approval page cares.
enum Seen<'a> {
    /// A state was entered (at this time, RFC 3339, when known).
    Entered(&'a str, Option<String>),
    Exited(&'a str, Option<&'a str>),
    /// A task was scheduled with these parameters (JSON, tokens resolved).
    TaskScheduled(&'a str),
}

/// What the execution's history says about its approval request, read event by event.
#[derive(Debug, Default)]
struct ApprovalProgress {
    /// The state entered last: a `TaskScheduled` event belongs to it.
    current_state: Option<String>,
    /// What restore would put back (CaptureState's output).
    context: Option<PageContext>,
    /// The token the approval state waits on: its latest scheduled task's, since a retry
    /// schedules a new task with a new token and the old one can no longer be answered.
    waiting_token: Option<String>,
    /// Which approval the waiting task asks for.
    round: u8,
    /// The first approval, when the second is asked for.
    first_approval: Option<Decision>,
    /// The last approval state entered has ended (answered, timed out or failed).
    decided: bool,
    /// When the first approval was requested: containment had ended.
    requested_at: Option<String>,
}

impl ApprovalProgress {
    fn see(&mut self, event: Seen) {
        match event {
            Seen::Entered(name, at) => {
                if let Some(round) = approval_round(name) {
                    if round == 1 {
                        self.requested_at = at;
                    }
                    // A new request: nothing waits on it until its task is scheduled.
                    self.round = round;
                    self.waiting_token = None;
                    self.first_approval = None;
                    self.decided = false;
                }
                self.current_state = Some(name.to_string());
            }
            Seen::Exited("CaptureState", output) => {
                self.context = output
                    .and_then(|o| serde_json::from_str(o).ok())
                    .map(|state| page_context(&WorkflowState::from_value(&state)));
            }
            Seen::Exited(name, _) if approval_round(name).is_some() => self.decided = true,
            Seen::Exited(..) => {}
            Seen::TaskScheduled(parameters) => {
                // The approval states are no Parallel branch, so nothing interleaves with
                // them: the task scheduled while one is the current state is its own.
                if self
                    .current_state
                    .as_deref()
                    .and_then(approval_round)
                    .is_some()
                {
                    self.waiting_token = approval_task_token(parameters);
                    // The request carries the whole state (capture and containment): what
                    // the page shows is what the email said.
                    if let Some(state) = approval_state(parameters) {
                        if self.round == 2 {
                            self.first_approval = state
                                .approval
                                .as_ref()
                                .and_then(|a| serde_json::from_value(a.clone()).ok());
                        }
                        self.context = Some(PageContext {
                            isolated_since: self.requested_at.clone(),
                            round: self.round,
                            ..page_context(&state)
                        });
                    }
                }
            }
        }
    }

    /// The token of the task this execution waits on, if `task` (a link's [`task_key`])
    /// names it. The token is read from this execution's own history, so a link can never
    /// answer another execution's task (which SendTaskSuccess would accept: the token
    /// alone names the task), even if the signing key leaks or a bug signs the wrong pair.
    fn token_for(&self, task: &str) -> Option<&str> {
        self.waiting_token
            .as_deref()
            .filter(|token| task_key(token) == task)
    }
}

/// The workflow's state in RequestApproval's parameters (`Payload.state`, from `$`).
fn approval_state(parameters: &str) -> Option<WorkflowState> {
    let parameters: serde_json::Value = serde_json::from_str(parameters).ok()?;
    Some(WorkflowState::from_value(
        parameters.pointer("/Payload/state")?,
    ))
}

/// The task token in RequestApproval's parameters (`Payload.task_token`, from
/// `$$.Task.Token` in the definition). `None` when the parameters do not carry one (or were
/// cut short): the link is then refused, not trusted.
fn approval_task_token(parameters: &str) -> Option<String> {
    let parameters: serde_json::Value = serde_json::from_str(parameters).ok()?;
    parameters
        .pointer("/Payload/task_token")?
        .as_str()
        .map(String::from)
}

/// Reads the execution: is it still waiting in an approval state, on the task a link names
/// (`task`; `None`: whichever it waits on), with which token, and what would restore put back
/// (CaptureState's output). Checked before any decision is sent, because an answered token
/// may be accepted silently while the execution runs on (moto does; AWS refuses), and a
/// token answers its task whatever execution it is sent for.
pub async fn standing(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
    task: Option<&str>,
) -> Result<Standing, String> {
    let described = sfn
        .describe_execution()
        .execution_arn(execution_arn)
        .send()
        .await
        .map_err(|e| aws_sdk_sfn::error::DisplayErrorContext(&e).to_string())?;
    if described.status().as_str() != "RUNNING" {
        return Ok(Standing::Decided(format!(
            "This quarantine is no longer waiting for a decision (the workflow is {}). Nothing was changed.",
            described.status().as_str().to_lowercase()
        )));
    }
    let mut progress = ApprovalProgress::default();
    let mut token = None;
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(execution_arn)
            .include_execution_data(true)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_sdk_sfn::error::DisplayErrorContext(&e).to_string())?;
        for event in page.events() {
            if let Some(entered) = event.state_entered_event_details() {
                let at = event
                    .timestamp()
                    .fmt(aws_smithy_types::date_time::Format::DateTime)
                    .ok();
                progress.see(Seen::Entered(entered.name(), at));
            } else if let Some(exited) = event.state_exited_event_details() {
                progress.see(Seen::Exited(exited.name(), exited.output()));
            } else if let Some(scheduled) = event.task_scheduled_event_details() {
                progress.see(Seen::TaskScheduled(scheduled.parameters()));
            }
        }
        token = page.next_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    if progress.decided {
        return Ok(Standing::Decided(
            "A decision was already taken for this quarantine. Nothing was changed.".into(),
        ));
    }
    let token = match task {
        Some(task) => progress.token_for(task),
        None => progress.waiting_token.as_deref(),
    };
    let Some(token) = token else {
        return Ok(Standing::OtherTask);
    };
    let token = token.to_string();
    let (round, first_approval) = (progress.round, progress.first_approval);
    progress
        .context
        .map(|context| {
            Standing::Waiting(Box::new(Waiting {
                context,
                token,
                round,
                first_approval,
            }))
        })
        .ok_or_else(|| "the execution has no capture record".to_string())
}

/// What the page shows, from the workflow's state.
fn page_context(state: &WorkflowState) -> PageContext {
    let finding = state.capture.finding.as_ref();
    let (holds_now, failed) = crate::notify::what_was_done(state);
    let acl_entries = match state.nacl() {
        Branch::Done(report) => report
            .nacl_entries
            .iter()
            .map(|entry| {
                format!(
                    "{} {} rule {}: deny {}",
                    entry.acl_id,
                    if entry.egress { "outbound" } else { "inbound" },
                    entry.rule_number,
                    entry.cidr
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    PageContext {
        instance_id: state.capture.instance_id.clone().unwrap_or_default(),
        account_id: finding.and_then(|f| f.account_id.clone()),
        region: finding.and_then(|f| f.region.clone()),
        finding_type: finding.map(|f| f.finding_type.clone()).unwrap_or_default(),
        finding_id: finding.map(|f| f.id.clone()).unwrap_or_default(),
        severity: finding.map(|f| f.severity.to_string()).unwrap_or_default(),
        first_seen: finding.and_then(|f| f.first_seen.clone()),
        last_seen: finding.and_then(|f| f.last_seen.clone()),
        remote_addresses: finding
            .map(|f| f.remote_addresses.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default(),
        isolated_since: None,
        interfaces: state
            .capture
            .record
            .as_ref()
            .map(|r| r.interfaces.clone())
            .unwrap_or_default(),
        acl_entries,
        round: 1,
        approvals_required: state.capture.approvals_required.unwrap_or(1),
        // Only a request for the second approval follows an approval.
        first_approval: state
            .approval
            .as_ref()
            .filter(|a| a.get("decision").and_then(|d| d.as_str()) == Some("approve"))
            .map(|a| crate::notify::decider_line(Some(a), false)),
        holds_now: holds_now
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        failed: failed.iter().map(|l| l.trim().to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::fixtures::*;

    /// The approval request's parameters as Step Functions records them when it schedules
    /// the task (shape read from moto's history; the deployed definition is the same).
    fn approval_parameters(token: &str) -> String {
        serde_json::json!({"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:cordon-notify",
            "Payload": {"kind": "approval_request", "execution_arn": ARN, "task_token": token, "state": {}}})
        .to_string()
    }

    #[test]
    fn a_link_answers_only_the_task_the_approval_request_waits_on() {
        let mut progress = ApprovalProgress::default();
        assert_eq!(progress.token_for(&task_key("")), None, "nothing waits yet");
        // Worker tasks before the approval request have tokens of their own (the local
        // runner's callbacks): none of them is the approval's.
        progress.see(Seen::Entered("CaptureState", None));
        progress.see(Seen::TaskScheduled(
            r#"{"Payload": {"token": "capture-token", "task_token": "capture-token"}}"#,
        ));
        progress.see(Seen::Exited("CaptureState", Some("{}")));
        progress.see(Seen::Entered(
            "RequestApproval",
            Some("2026-12-03T10:00:00Z".into()),
        ));
        assert_eq!(progress.token_for(&task_key("capture-token")), None);
        progress.see(Seen::TaskScheduled(&approval_parameters("token-1")));
        assert_eq!(progress.token_for(&task_key("token-1")), Some("token-1"));
        // Only the task's name finds it: not the raw token, not another's name.
        for other in ["token-2", "capture-token", "", "token-1 "] {
            assert_eq!(progress.token_for(&task_key(other)), None, "{other:?}");
        }
        assert_eq!(progress.token_for("token-1"), None);
        // A retry schedules a new task: only its name answers.
        progress.see(Seen::TaskScheduled(&approval_parameters("token-2")));
        assert_eq!(progress.token_for(&task_key("token-2")), Some("token-2"));
        assert_eq!(progress.token_for(&task_key("token-1")), None);
        assert!(!progress.decided);
        progress.see(Seen::Exited("RequestApproval", None));
        assert!(progress.decided);
    }

    #[test]
    fn a_second_approval_request_waits_on_its_own_task_and_carries_the_first() {
        let first = serde_json::json!({"decision": "approve", "approver": "ada@example.com",
            "via": "signed_in", "identity": {"issuer": "https://idp", "subject": "1"},
            "decided_at": "t1", "round": 1, "seal": "00"});
        let second_parameters = |token: &str| {
            serde_json::json!({"Payload": {"kind": "second_approval_request", "task_token": token,
                "state": {"status": "captured", "reason": "r", "instance_id": "i-00000001",
                    "finding": null, "record": null, "tags_written": true, "warnings": [],
                    "approvals_required": 2, "approval": first}}})
            .to_string()
        };
        let mut progress = ApprovalProgress::default();
        progress.see(Seen::Entered("RequestApproval", Some("t0".into())));
        progress.see(Seen::TaskScheduled(&approval_parameters("token-1")));
        assert_eq!(progress.round, 1);
        assert_eq!(progress.first_approval, None);
        progress.see(Seen::Exited("RequestApproval", None));
        assert!(progress.decided);
        progress.see(Seen::Entered("Decision", None));
        progress.see(Seen::Exited("Decision", None));
        // Asked again: waiting, but on nothing a link can name until its task is scheduled.
        progress.see(Seen::Entered("RequestSecondApproval", Some("t5".into())));
        assert!(!progress.decided);
        assert_eq!(progress.token_for(&task_key("token-1")), None);
        progress.see(Seen::TaskScheduled(&second_parameters("token-2")));
        assert_eq!(progress.token_for(&task_key("token-2")), Some("token-2"));
        assert_eq!(
            progress.token_for(&task_key("token-1")),
            None,
            "the first link is spent"
        );
        assert_eq!(progress.round, 2);
        let carried = progress.first_approval.clone().unwrap();
        assert_eq!(carried.approver.as_deref(), Some("ada@example.com"));
        let context = progress.context.clone().unwrap();
        assert_eq!((context.round, context.approvals_required), (2, 2));
        // Since the first request, not the second: how long the instance has been isolated.
        assert_eq!(context.isolated_since.as_deref(), Some("t0"));
        assert!(context
            .first_approval
            .unwrap()
            .starts_with("ada@example.com (signed in at https://idp"),);
        progress.see(Seen::Exited("RequestSecondApproval", None));
        assert!(progress.decided);
    }

    #[test]
    fn the_approval_token_is_read_from_the_scheduled_parameters_or_not_at_all() {
        assert_eq!(
            approval_task_token(&approval_parameters("AAAA+tok/en==")).as_deref(),
            Some("AAAA+tok/en==")
        );
        // Cut short, another shape, or no token: nothing to trust.
        let whole = approval_parameters("token-1");
        for parameters in [
            &whole[..whole.len() - 2],
            r#"{"Payload": {"token": "token-1"}}"#,
            r#"{"Payload": {"task_token": 1}}"#,
            r#"{"task_token": "token-1"}"#,
            "",
        ] {
            assert_eq!(approval_task_token(parameters), None, "{parameters}");
        }
    }
}

/// A quarantine that waits for an analyst's decision now, as `cordon status` lists it (no
/// task token: whoever reads the list may not answer it by that).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WaitingQuarantine {
    pub execution_arn: String,
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub instance_id: String,
    pub finding_id: String,
    pub finding_type: String,
    /// When the approval was requested: the instance has been contained since.
    pub since: Option<String>,
    /// Which approval it waits for: 1, or 2 under the two-person rule.
    pub approval: u8,
    /// What each measure holds, and what failed, as the approval email said.
    pub holds: Vec<String>,
    pub failed: Vec<String>,
}

impl WaitingQuarantine {
    fn of(execution_arn: &str, waiting: &Waiting) -> Self {
        let context = &waiting.context;
        WaitingQuarantine {
            execution_arn: execution_arn.to_string(),
            account_id: context.account_id.clone(),
            region: context.region.clone(),
            instance_id: context.instance_id.clone(),
            finding_id: context.finding_id.clone(),
            finding_type: context.finding_type.clone(),
            since: context.isolated_since.clone(),
            approval: waiting.round,
            holds: context.holds_now.clone(),
            failed: context.failed.clone(),
        }
    }
}

/// Every execution of `state_machine_arn` that waits for a decision now, oldest first, and
/// the running ones whose history could not be read (with why). Running executions still
/// containing, or past their decision, are not listed.
pub async fn waiting_quarantines(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
) -> Result<(Vec<WaitingQuarantine>, Vec<(String, String)>), String> {
    let mut running = Vec::new();
    let mut token = None;
    loop {
        let page = sfn
            .list_executions()
            .state_machine_arn(state_machine_arn)
            .status_filter(aws_sdk_sfn::types::ExecutionStatus::Running)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_sdk_sfn::error::DisplayErrorContext(&e).to_string())?;
        running.extend(
            page.executions()
                .iter()
                .map(|e| e.execution_arn().to_string()),
        );
        token = page.next_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    let mut waiting = Vec::new();
    let mut unreadable = Vec::new();
    for execution in running {
        // One execution that cannot be read does not hide the others.
        match standing(sfn, &execution, None).await {
            Ok(Standing::Waiting(found)) => waiting.push(WaitingQuarantine::of(&execution, &found)),
            Ok(_) => {}
            Err(cause) => unreadable.push((execution, cause)),
        }
    }
    waiting.sort_by(|a, b| a.since.cmp(&b.since));
    Ok((waiting, unreadable))
}
