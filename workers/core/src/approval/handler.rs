//! The approval endpoint: GET shows, POST decides.

use super::history::{standing, Standing};
use super::{
    parse_params, render_decision_page, render_message_page, who_decided, Action, Decision,
    LinkKey, LinkProblem, Via,
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

/// The link is signed but is not for the task its execution waits on.
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

/// A link's fields come to about 400 bytes and a typed name to a few dozen: a request far
/// beyond that is not from the page, and is refused before anything is read or asked.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// A typed approver's name: longer is refused, not cut, so the record is what was typed.
pub const MAX_APPROVER_CHARS: usize = 120;

fn too_large() -> Reply {
    reply(
        413,
        "The request is too large",
        "This is more than the approval page ever sends. Use the links in the Cordon email; nothing was changed.",
    )
}

/// The name typed on the page, if it may go into the record and the emails as it is.
fn check_approver(approver: Option<String>) -> Result<Option<String>, Reply> {
    match approver {
        Some(name) if name.chars().count() > MAX_APPROVER_CHARS => Err(reply(
            400,
            "The name is too long",
            &format!(
                "Type a name of at most {MAX_APPROVER_CHARS} characters. Nothing was changed."
            ),
        )),
        Some(name) if name.chars().any(char::is_control) => Err(reply(
            400,
            "The name is not valid",
            "Type your name on one line, without control characters. Nothing was changed.",
        )),
        other => Ok(other),
    }
}

/// GET: shows what restore would put back and the link's own decision. Changes nothing.
pub async fn handle_get(
    sfn: &aws_sdk_sfn::Client,
    key: &LinkKey<impl Kms>,
    query: &str,
    now: i64,
) -> Reply {
    if query.len() > MAX_REQUEST_BYTES {
        return too_large();
    }
    let (Some(params), _) = parse_params(query) else {
        return link_problem(LinkProblem::Forged);
    };
    let action = match key.verify(&params, now).await {
        Ok(action) => action,
        Err(problem) => return link_problem(problem),
    };
    match standing(sfn, &params.x, Some(&params.k)).await {
        Ok(Standing::Waiting(waiting)) => Reply {
            status: 200,
            html: render_decision_page(&waiting.context, &params, action),
        },
        Ok(Standing::Decided(message)) => reply(410, "Already decided", &message),
        Ok(Standing::OtherTask) => other_task(),
        Err(error) => cannot_read(&error),
    }
}

/// POST: sends the decision to the waiting workflow. `body` is the form as it arrived.
pub async fn handle_post(
    sfn: &aws_sdk_sfn::Client,
    key: &LinkKey<impl Kms>,
    decisions: &DecisionKey<impl Kms>,
    body: &[u8],
    now: i64,
) -> Reply {
    if body.len() > MAX_REQUEST_BYTES {
        return too_large();
    }
    let Ok(form) = std::str::from_utf8(body) else {
        return reply(400, "The form is not valid", "The approval page sends UTF-8 text only. Use the links in the Cordon email; nothing was changed.");
    };
    let (Some(params), approver) = parse_params(form) else {
        return link_problem(LinkProblem::Forged);
    };
    let approver = match check_approver(approver) {
        Ok(approver) => approver,
        Err(refused) => return refused,
    };
    let action = match key.verify(&params, now).await {
        Ok(action) => action,
        Err(problem) => return link_problem(problem),
    };
    let (instance, token) = match standing(sfn, &params.x, Some(&params.k)).await {
        Ok(Standing::Waiting(waiting)) => (waiting.context.instance_id, waiting.token),
        Ok(Standing::Decided(message)) => return reply(410, "Already decided", &message),
        Ok(Standing::OtherTask) => return other_task(),
        Err(error) => return cannot_read(&error),
    };
    let decision = Decision {
        decision: action,
        approver,
        via: Via::UnauthenticatedLink,
        decided_at: crate::steps::now_rfc3339(),
        seal: None,
    };
    match send_decision(sfn, decisions, &params.x, &token, decision).await {
        Ok(decision) => {
            // The function's log names who decided (never the token).
            eprintln!(
                "approval: {} for {} by {}",
                action.as_str(),
                params.x,
                who_decided(decision.approver.as_deref(), Some("unauthenticated_link"))
                    .escape_debug()
            );
            match action {
                Action::Approve => reply(200, "Restore approved", &format!("Cordon is restoring {instance} to its recorded network state. You will get an email when it is done.")),
                Action::Reject => reply(200, "Kept isolated", &format!("{instance} stays isolated. You will get an email confirming it.")),
            }
        }
        Err(SendProblem::Unsealed(error)) => {
            eprintln!("approval: the decision could not be sealed: {error}");
            reply(503, "The decision was not recorded", "AWS KMS could not seal the decision. Nothing was changed; try the link again in a minute.")
        }
        Err(SendProblem::NotWaiting) => reply(
            410,
            "Already decided or expired",
            "This approval request was already answered or has expired; nothing was changed.",
        ),
        Err(SendProblem::Refused(error)) => {
            eprintln!("approval: SendTaskSuccess failed: {error}");
            reply(
                502,
                "The decision was not recorded",
                "Step Functions did not take the decision. Nothing was changed; try again.",
            )
        }
    }
}

/// Why a decision did not reach the workflow. In every case the workflow took nothing.
#[derive(Debug)]
pub enum SendProblem {
    /// KMS did not seal it (throttled, unreachable, or the caller may not `GenerateMac`).
    Unsealed(crate::CordonError),
    /// The task was answered or timed out meanwhile.
    NotWaiting,
    /// Step Functions refused it for another reason: its error, in full.
    Refused(String),
}

/// Seals `decision` for `execution_arn` and answers the approval task `token` with it: the
/// one way a decision reaches the workflow, from the page and from `cordon approve|reject`
/// alike. The restore step trusts no other decision. Returns the decision as sent.
pub async fn send_decision(
    sfn: &aws_sdk_sfn::Client,
    decisions: &DecisionKey<impl Kms>,
    execution_arn: &str,
    token: &str,
    decision: Decision,
) -> Result<Decision, SendProblem> {
    let decision = decisions
        .seal(execution_arn, decision)
        .await
        .map_err(SendProblem::Unsealed)?;
    let output = serde_json::to_string(&decision).expect("a decision serialises");
    match sfn
        .send_task_success()
        .task_token(token)
        .output(output)
        .send()
        .await
    {
        Ok(_) => Ok(decision),
        Err(error) => {
            use aws_sdk_sfn::error::ProvideErrorMetadata;
            match error.code() {
                Some("TaskTimedOut" | "InvalidToken" | "TaskDoesNotExist") => {
                    Err(SendProblem::NotWaiting)
                }
                _ => Err(SendProblem::Refused(
                    aws_sdk_sfn::error::DisplayErrorContext(&error).to_string(),
                )),
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
            handle_post(&sfn, &key, &decisions(), form(&expired).as_bytes(), now).await,
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
            handle_post(&sfn, &key, &decisions(), form(&extended).as_bytes(), now).await,
            handle_post(&sfn, &key, &decisions(), b"a=approve&t=token", now).await,
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
        let reply = handle_post(&sfn, &key, &decisions(), form(&valid).as_bytes(), now).await;
        assert_eq!(reply.status, 502, "{}", reply.html);
    }

    #[tokio::test]
    async fn oversized_or_malformed_requests_are_refused_before_kms_or_the_workflow() {
        let sfn = unreachable_sfn();
        let now = 10_000;
        let key = key();
        let valid = key
            .sign(Action::Approve, now + 60, ARN, "token")
            .await
            .unwrap();
        let query = link_url("https://approve.example/", &valid)
            .split_once('?')
            .unwrap()
            .1
            .to_string();
        key.kms.calls.lock().unwrap().clear();
        let name = |typed: &str| {
            let field = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("approver", typed)
                .finish();
            format!("{query}&{field}").into_bytes()
        };
        let padded = format!("{query}&pad={}", "x".repeat(MAX_REQUEST_BYTES));
        for (body, status, says) in [
            (padded.clone().into_bytes(), 413, "too large"),
            (
                name(&"A".repeat(MAX_APPROVER_CHARS + 1)),
                400,
                "at most 120",
            ),
            (name("Ada\nApproved by: the CISO"), 400, "one line"),
            (name("Ada\u{1b}[2J"), 400, "one line"),
            ([query.as_bytes(), b"&approver=\xff"].concat(), 400, "UTF-8"),
        ] {
            let reply = handle_post(&sfn, &key, &decisions(), &body, now).await;
            assert_eq!(reply.status, status, "{}", reply.html);
            assert!(reply.html.contains(says), "{}", reply.html);
            assert!(reply.html.contains("othing was changed"), "{}", reply.html);
        }
        let reply = handle_get(&sfn, &key, &padded, now).await;
        assert_eq!(reply.status, 413, "{}", reply.html);
        assert!(key.kms.calls.lock().unwrap().is_empty(), "KMS was asked");
        // A name at the limit is taken: the client cannot reach the workflow, hence 502.
        let reply = handle_post(
            &sfn,
            &key,
            &decisions(),
            &name(&"A".repeat(MAX_APPROVER_CHARS)),
            now,
        )
        .await;
        assert_eq!(reply.status, 502, "{}", reply.html);
    }
}
