//! The approval endpoint: GET shows, POST decides.

use super::history::{standing, Standing};
use super::{
    parse_params, render_decision_page, render_message_page, Action, Decision, LinkKey, LinkProblem,
};
use crate::decision::DecisionKey;
use crate::kms::Kms;

/// The answer of the approval endpoint: an HTTP status and a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub html: String,
}

fn reply(status: u16, title: &str, message: &str) -> Reply {
    Reply {
        status,
        html: render_message_page(title, message),
    }
}

fn link_problem(problem: LinkProblem) -> Reply {
    match problem {
        LinkProblem::Forged => reply(403, "This link is not valid", "The link is incomplete or was altered. Use the links in the Cordon email; nothing was changed."),
        LinkProblem::Expired => reply(410, "This link has expired", "The approval request expired; the instance stays isolated and nothing was changed. Restore it by hand with `cordon restore` if needed."),
        // The cause names the key and the role: it goes to the function's log (stderr; the
        // approval function installs no tracing subscriber, whose raw-event trace would log
        // task tokens), not to a public page.
        LinkProblem::Unverifiable(error) => {
            eprintln!("approval: a link's MAC could not be verified: {error}");
            reply(503, "The link cannot be checked now", "AWS KMS could not check the link's signature. Nothing was changed; try the link again in a minute.")
        }
    }
}

/// The link is signed but is not for the task its execution waits on (see
/// [`ApprovalProgress::waits_on`]).
fn other_task() -> Reply {
    reply(
        403,
        "This link is not valid",
        "This link does not belong to the approval request this quarantine is waiting for. Use the links in the latest Cordon email; nothing was changed.",
    )
}

/// Step Functions could not be read. Its error names roles and accounts: it goes to the
/// function's log, and the public page says only what happened.
fn cannot_read(error: &str) -> Reply {
    eprintln!("approval: cannot read the execution: {error}");
    reply(
        502,
        "Cannot read the quarantine",
        "Step Functions did not answer. Nothing was changed; try again.",
    )
}

/// GET: shows what restore would put back and the link's own decision. Changes nothing.
pub async fn handle_get(
    sfn: &aws_sdk_sfn::Client,
    key: &LinkKey<impl Kms>,
    query: &str,
    now: i64,
) -> Reply {
    let (Some(params), _) = parse_params(query) else {
        return link_problem(LinkProblem::Forged);
    };
    let action = match key.verify(&params, now).await {
        Ok(action) => action,
        Err(problem) => return link_problem(problem),
    };
    match standing(sfn, &params.x, &params.t).await {
        Ok(Standing::Waiting(context)) => Reply {
            status: 200,
            html: render_decision_page(&context, &params, action),
        },
        Ok(Standing::Decided(message)) => reply(410, "Already decided", &message),
        Ok(Standing::OtherTask) => other_task(),
        Err(error) => cannot_read(&error),
    }
}

/// POST: sends the decision to the waiting workflow.
pub async fn handle_post(
    sfn: &aws_sdk_sfn::Client,
    key: &LinkKey<impl Kms>,
    decisions: &DecisionKey<impl Kms>,
    form: &str,
    now: i64,
) -> Reply {
    let (Some(params), approver) = parse_params(form) else {
        return link_problem(LinkProblem::Forged);
    };
    let action = match key.verify(&params, now).await {
        Ok(action) => action,
        Err(problem) => return link_problem(problem),
    };
    let instance = match standing(sfn, &params.x, &params.t).await {
        Ok(Standing::Waiting(context)) => context.instance_id,
        Ok(Standing::Decided(message)) => return reply(410, "Already decided", &message),
        Ok(Standing::OtherTask) => return other_task(),
        Err(error) => return cannot_read(&error),
    };
    let decision = Decision {
        decision: action,
        approver,
        decided_at: crate::steps::now_rfc3339(),
        seal: None,
    };
    // Sealed for the execution the link names (`standing` checked it waits on the link's
    // task): the restore step trusts no other decision.
    let decision = match decisions.seal(&params.x, decision).await {
        Ok(sealed) => sealed,
        Err(error) => {
            eprintln!("approval: the decision could not be sealed: {error}");
            return reply(503, "The decision was not recorded", "AWS KMS could not seal the decision. Nothing was changed; try the link again in a minute.");
        }
    };
    let output = serde_json::to_string(&decision).expect("a decision serialises");
    match sfn.send_task_success().task_token(&params.t).output(output).send().await {
        Ok(_) => match action {
            Action::Approve => reply(200, "Restore approved", &format!("Cordon is restoring {instance} to its recorded network state. You will get an email when it is done.")),
            Action::Reject => reply(200, "Kept isolated", &format!("{instance} stays isolated. You will get an email confirming it.")),
        },
        Err(error) => {
            use aws_sdk_sfn::error::ProvideErrorMetadata;
            match error.code() {
                Some("TaskTimedOut" | "InvalidToken" | "TaskDoesNotExist") => reply(410, "Already decided or expired", "This approval request was already answered or has expired; nothing was changed."),
                _ => {
                    eprintln!("approval: SendTaskSuccess failed: {}", aws_sdk_sfn::error::DisplayErrorContext(&error));
                    reply(502, "The decision was not recorded", "Step Functions did not take the decision. Nothing was changed; try again.")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::fixtures::*;
    use crate::approval::{link_url, LinkParams};

    /// A client that fails whenever it is used (no credentials, nothing listening): a page
    /// that needs no AWS call answers anyway; any other gets a 502.
    fn unreachable_sfn() -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::from_conf(
            aws_sdk_sfn::Config::builder()
                .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
                .region(aws_sdk_sfn::config::Region::new("us-east-1"))
                .endpoint_url("http://127.0.0.1:9")
                .build(),
        )
    }

    #[tokio::test]
    async fn expired_and_forged_links_are_refused_before_the_workflow_is_read() {
        let sfn = unreachable_sfn();
        let now = 10_000;
        let form = |params: &LinkParams| {
            let url = link_url("https://approve.example/", params);
            format!("{}&approver=Ada", url.split_once('?').unwrap().1)
        };
        let key = key();
        let expired = key
            .sign(Action::Approve, now - 1, ARN, "token")
            .await
            .unwrap();
        for reply in [
            handle_get(&sfn, &key, &form(&expired), now).await,
            handle_post(&sfn, &key, &decisions(), &form(&expired), now).await,
        ] {
            assert_eq!(reply.status, 410);
            assert!(
                reply.html.contains("This link has expired"),
                "{}",
                reply.html
            );
            assert!(reply.html.contains("nothing was changed"), "{}", reply.html);
        }
        // Moving the expiry forward breaks the signature: forged, not expired.
        let extended = LinkParams {
            e: now + 3600,
            ..expired.clone()
        };
        for reply in [
            handle_get(&sfn, &key, &form(&extended), now).await,
            handle_post(&sfn, &key, &decisions(), &form(&extended), now).await,
            handle_post(&sfn, &key, &decisions(), "a=approve&t=token", now).await,
        ] {
            assert_eq!(reply.status, 403);
            assert!(
                reply.html.contains("This link is not valid"),
                "{}",
                reply.html
            );
            assert!(reply.html.contains("nothing was changed"), "{}", reply.html);
        }
        // A valid link does read the workflow (and this client cannot).
        let valid = key
            .sign(Action::Approve, now + 60, ARN, "token")
            .await
            .unwrap();
        let reply = handle_post(&sfn, &key, &decisions(), &form(&valid), now).await;
        assert_eq!(reply.status, 502, "{}", reply.html);
    }
}
