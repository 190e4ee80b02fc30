//! What an execution's history says about its approval request.

use super::{task_key, PageContext};

pub enum Standing {
    Waiting(Waiting),
    Decided(String),
    /// Running and waiting, but for another task than the link's.
    OtherTask,
}

/// An approval request that can be answered now.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    /// What the page shows and restore would put back.
    pub context: PageContext,
    /// The token of the task RequestApproval waits on, read from the history (never from a
    /// link).
    pub token: String,
}

/// One history event, as far as the approval page cares.
enum Seen<'a> {
    Entered(&'a str),
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
    /// The token RequestApproval waits on: its latest scheduled task's, since a retry
    /// schedules a new task with a new token and the old one can no longer be answered.
    waiting_token: Option<String>,
    /// RequestApproval has ended (answered, timed out or failed).
    decided: bool,
}

impl ApprovalProgress {
    fn see(&mut self, event: Seen) {
        match event {
            Seen::Entered(name) => self.current_state = Some(name.to_string()),
            Seen::Exited("CaptureState", output) => self.context = output.and_then(page_context),
            Seen::Exited("RequestApproval", _) => self.decided = true,
            Seen::Exited(..) => {}
            Seen::TaskScheduled(parameters) => {
                // RequestApproval is no Parallel branch, so nothing interleaves with it: the
                // task scheduled while it is the current state is its own.
                if self.current_state.as_deref() == Some("RequestApproval") {
                    self.waiting_token = approval_task_token(parameters);
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

/// Reads the execution: is it still waiting in RequestApproval, on the task a link names
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
                progress.see(Seen::Entered(entered.name()));
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
    progress
        .context
        .map(|context| Standing::Waiting(Waiting { context, token }))
        .ok_or_else(|| "the execution has no capture record".to_string())
}

fn page_context(capture_output: &str) -> Option<PageContext> {
    let state: crate::capture::CaptureOutput = serde_json::from_str(capture_output).ok()?;
    let finding = state.finding.as_ref();
    Some(PageContext {
        instance_id: state.instance_id.clone().unwrap_or_default(),
        finding_type: finding.map(|f| f.finding_type.clone()).unwrap_or_default(),
        finding_id: finding.map(|f| f.id.clone()).unwrap_or_default(),
        severity: finding.map(|f| f.severity.to_string()).unwrap_or_default(),
        interfaces: state.record.map(|r| r.interfaces).unwrap_or_default(),
    })
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
        progress.see(Seen::Entered("CaptureState"));
        progress.see(Seen::TaskScheduled(
            r#"{"Payload": {"token": "capture-token", "task_token": "capture-token"}}"#,
        ));
        progress.see(Seen::Exited("CaptureState", Some("{}")));
        progress.see(Seen::Entered("RequestApproval"));
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
