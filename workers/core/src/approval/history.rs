//! What an execution's history says about its approval request.

use super::PageContext;

pub(super) enum Standing {
    Waiting(PageContext),
    Decided(String),
    /// Running and waiting, but for another task token than the link's.
    OtherTask,
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

    /// Whether `token` can answer the task this execution waits on. A link's signature
    /// binds its token to its execution, so this only matters if the signing key leaks or
    /// a bug signs the wrong pair: even then a link can never answer another execution's
    /// task (which SendTaskSuccess would accept: the token alone names the task). The
    /// token is no secret to whoever holds the link, so a plain comparison is fine.
    fn waits_on(&self, token: &str) -> bool {
        self.waiting_token.as_deref() == Some(token)
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

/// Reads the execution: is it still waiting in RequestApproval, on the link's own task token,
/// and what would restore put back (CaptureState's output). Checked before any decision is
/// sent, because an answered token may be accepted silently while the execution runs on
/// (moto does; AWS refuses), and a token answers its task whatever execution it is sent for.
pub(super) async fn standing(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
    link_token: &str,
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
    if !progress.waits_on(link_token) {
        return Ok(Standing::OtherTask);
    }
    progress
        .context
        .map(Standing::Waiting)
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
    fn only_the_token_the_approval_request_waits_on_can_answer_it() {
        let mut progress = ApprovalProgress::default();
        assert!(!progress.waits_on(""), "nothing is waiting yet");
        // Worker tasks before the approval request have tokens of their own (the local
        // runner's callbacks): none of them is the approval's.
        progress.see(Seen::Entered("CaptureState"));
        progress.see(Seen::TaskScheduled(
            r#"{"Payload": {"token": "capture-token", "task_token": "capture-token"}}"#,
        ));
        progress.see(Seen::Exited("CaptureState", Some("{}")));
        progress.see(Seen::Entered("RequestApproval"));
        assert!(!progress.waits_on("capture-token"));
        progress.see(Seen::TaskScheduled(&approval_parameters("token-1")));
        assert!(progress.waits_on("token-1"));
        for other in ["token-2", "capture-token", "", "token-1 "] {
            assert!(!progress.waits_on(other), "{other:?}");
        }
        // A retry schedules a new task: only its token answers.
        progress.see(Seen::TaskScheduled(&approval_parameters("token-2")));
        assert!(progress.waits_on("token-2") && !progress.waits_on("token-1"));
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
