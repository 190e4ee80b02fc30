//! The approval endpoint: GET shows, POST decides.

use super::history::{standing, Standing};
use super::{
    flow_cookie, parse_params, render_decision_page, render_message_page, who_decided, Action,
    Decision, Flow, Identity, LinkKey, LinkProblem, Session, SessionProblem, SignIn, SignInProblem,
    Signer, Via, SIGN_IN_SECONDS,
};
use crate::decision::DecisionKey;
use crate::kms::Kms;

/// The answer of the approval endpoint: an HTTP status and a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub html: String,
    /// Beside [`super::response_headers`]: `location` of a redirect, `set-cookie`.
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn page(status: u16, html: String) -> Reply {
        Reply {
            status,
            html,
            headers: Vec::new(),
        }
    }
}

fn reply(status: u16, title: &str, message: &str) -> Reply {
    Reply::page(status, render_message_page(title, message))
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

/// What the approval endpoint works with.
pub struct ApprovalPage<'a, L, D> {
    pub sfn: &'a aws_sdk_sfn::Client,
    /// Checks the links' MACs (`VerifyMac` only).
    pub key: &'a LinkKey<L>,
    /// Seals decisions and signed-in sessions (`GenerateMac` only).
    pub decisions: &'a DecisionKey<D>,
    /// The stack's identity provider; `None`: the link alone decides.
    pub sign_in: Option<&'a SignIn>,
}

/// A GET as the page sees it.
pub struct Visit<'a> {
    pub query: &'a str,
    /// The request's `Cookie` header.
    pub cookie: Option<&'a str>,
    /// The page's own URL, as the provider sends the browser back to it (`https://HOST/`).
    pub page_url: &'a str,
}

impl Visit<'_> {
    /// Served over https: the flow cookie can then be `Secure` and `__Host-`.
    fn is_https(&self) -> bool {
        self.page_url.starts_with("https://")
    }
}

fn with_header(mut reply: Reply, name: &'static str, value: String) -> Reply {
    reply.headers.push((name, value));
    reply
}

/// The link's decision and the request it answers, if the link is valid and its execution
/// waits on its task now.
async fn waiting_for<L: Kms, D: Kms>(
    page: &ApprovalPage<'_, L, D>,
    params: &super::LinkParams,
    now: i64,
) -> Result<(Action, Box<super::Waiting>), Reply> {
    let action = page.key.verify(params, now).await.map_err(link_problem)?;
    match standing(page.sfn, &params.x, Some(&params.k)).await {
        Ok(Standing::Waiting(waiting)) => Ok((action, waiting)),
        Ok(Standing::Decided(message)) => Err(reply(410, "Already decided", &message)),
        Ok(Standing::OtherTask) => Err(other_task()),
        Err(error) => Err(cannot_read(&error)),
    }
}

/// GET: shows what restore would put back and the link's own decision, after sign-in when a
/// provider is configured (a GET with `code` and `state` is the provider's callback). Changes
/// nothing.
pub async fn handle_get<L: Kms, D: Kms>(
    page: &ApprovalPage<'_, L, D>,
    visit: &Visit<'_>,
    now: i64,
) -> Reply {
    if visit.query.len() > MAX_REQUEST_BYTES {
        return too_large();
    }
    let query: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(visit.query.as_bytes())
            .into_owned()
            .collect();
    if let (Some(sign_in), Some(state)) = (page.sign_in, query.get("state")) {
        let reply = callback(page, sign_in, visit, &query, state, now).await;
        // One flow, one callback: a replayed callback finds no flow.
        return with_header(reply, "set-cookie", flow_cookie(None, visit.is_https()));
    }
    let (Some(params), _) = parse_params(visit.query) else {
        return link_problem(LinkProblem::Forged);
    };
    let (action, waiting) = match waiting_for(page, &params, now).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let context = waiting.context;
    let Some(sign_in) = page.sign_in else {
        return Reply::page(
            200,
            render_decision_page(&context, &params, action, &Signer::Link),
        );
    };
    match sign_in.start(visit.page_url, visit.query).await {
        Ok((authorize_url, flow)) => {
            let reply = reply(
                302,
                "Sign in to decide",
                "Cordon is sending you to your identity provider to sign in.",
            );
            let reply = with_header(reply, "location", authorize_url);
            with_header(
                reply,
                "set-cookie",
                flow_cookie(Some(&flow), visit.is_https()),
            )
        }
        Err(problem) => sign_in_problem(problem),
    }
}

/// The provider sent the browser back: check the flow, the ID token and the allow-list, then
/// show the decision page with a session for this link.
async fn callback<L: Kms, D: Kms>(
    page: &ApprovalPage<'_, L, D>,
    sign_in: &SignIn,
    visit: &Visit<'_>,
    query: &std::collections::HashMap<String, String>,
    state: &str,
    now: i64,
) -> Reply {
    let Some(flow) = Flow::for_callback(visit.cookie, state, visit.is_https()) else {
        return sign_in_problem(SignInProblem::NotStartedHere);
    };
    if let Some(error) = query.get("error") {
        return sign_in_problem(SignInProblem::Refused(format!("it answered {error:?}")));
    }
    let Some(code) = query.get("code") else {
        return sign_in_problem(SignInProblem::Refused("it sent no code".into()));
    };
    // The link first: a flow cookie anyone can write costs no call to the provider unless it
    // carries a link Cordon signed, for a request that waits now.
    let (Some(params), _) = parse_params(&flow.link) else {
        return link_problem(LinkProblem::Forged);
    };
    let (action, waiting) = match waiting_for(page, &params, now).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let identity = match sign_in.finish(visit.page_url, &flow, code).await {
        Ok(identity) => identity,
        Err(problem) => return sign_in_problem(problem),
    };
    // Under the two-person rule the first approver is told at once, before any button.
    if action == Action::Approve {
        let candidate = Decision::signed_in(action, &identity, crate::steps::now_rfc3339());
        if let Err(problem) = candidate.answering(&waiting) {
            return second_approval_refused(&problem);
        }
    }
    let session = Session {
        identity: identity.clone(),
        action: params.a.clone(),
        execution: params.x.clone(),
        task: params.k.clone(),
        expires: now + SIGN_IN_SECONDS,
    };
    let session = match session.seal(page.decisions).await {
        Ok(session) => session,
        Err(error) => {
            eprintln!("approval: a sign-in could not be sealed: {error}");
            return reply(503, "The sign-in was not recorded", "AWS KMS could not seal the sign-in. Nothing was changed; open the link from the email again in a minute.");
        }
    };
    eprintln!(
        "approval: {} signed in at {} (subject {}) for {}",
        identity.name().escape_debug(),
        identity.issuer.escape_debug(),
        identity.subject.escape_debug(),
        params.x
    );
    Reply::page(
        200,
        render_decision_page(
            &waiting.context,
            &params,
            action,
            &Signer::SignedIn {
                identity: &identity,
                session: &session,
            },
        ),
    )
}

/// The decision cannot be this quarantine's next approval (the two-person rule).
fn second_approval_refused(problem: &str) -> Reply {
    reply(
        403,
        "A second approver is needed",
        &format!("This quarantine needs two different approvers: {problem}; nothing was changed."),
    )
}

fn sign_in_problem(problem: SignInProblem) -> Reply {
    // What the provider or the token said goes to the log in full; the page says what
    // happened and what to do.
    eprintln!("approval: sign-in refused: {problem:?}");
    match problem {
        SignInProblem::NotStartedHere => reply(400, "This sign-in did not start here", "This sign-in was not started from a Cordon link in this browser, or it took longer than 10 minutes. Open the link from the Cordon email again; nothing was changed."),
        SignInProblem::Refused(_) => reply(403, "Not signed in", "Your identity provider did not sign you in for Cordon (a sign-in answer works only once). Open the link from the Cordon email again; nothing was changed."),
        SignInProblem::Unverified(_) => reply(403, "The sign-in could not be verified", "The identity provider's answer did not verify (its signature, issuer, audience, expiry or nonce). Open the link from the Cordon email again; nothing was changed."),
        SignInProblem::NotAllowed(who) => reply(403, "Not allowed to decide", &format!("You are signed in as {who}, who may not decide on Cordon quarantines. Ask someone on the stack's approver list; nothing was changed.")),
        SignInProblem::Unavailable(_) => reply(502, "Cannot reach the identity provider", "The identity provider did not answer. Nothing was changed; try the link again in a minute."),
    }
}

/// The signed-in analyst a form's session names, if it is this page's, for this link, still
/// good and still on the allow-list.
async fn signed_in_identity<D: Kms>(
    decisions: &DecisionKey<D>,
    sign_in: &SignIn,
    form: &str,
    params: &super::LinkParams,
    now: i64,
) -> Result<Identity, Reply> {
    let field = url::form_urlencoded::parse(form.as_bytes())
        .find(|(name, _)| name == "session")
        .map(|(_, value)| value.into_owned());
    let Some(field) = field else {
        return Err(reply(403, "Sign in first", "Deciding needs a sign-in. Open the link from the Cordon email and sign in; nothing was changed."));
    };
    match Session::open(&field, decisions, params, now).await {
        Ok(session) if sign_in.approvers.admits(&session.identity) => Ok(session.identity),
        Ok(session) => Err(sign_in_problem(SignInProblem::NotAllowed(
            session.identity.name().to_string(),
        ))),
        Err(SessionProblem::Forged) => Err(reply(403, "Sign in first", "The page's sign-in is not valid for this link. Open the link from the Cordon email and sign in; nothing was changed.")),
        Err(SessionProblem::Expired) => Err(reply(410, "The sign-in has expired", "More than 10 minutes passed since you signed in. Open the link from the Cordon email again; nothing was changed.")),
        Err(SessionProblem::Unverifiable(error)) => {
            eprintln!("approval: a session could not be checked: {error}");
            Err(reply(503, "The sign-in cannot be checked now", "AWS KMS could not check the sign-in. Nothing was changed; try again in a minute."))
        }
    }
}

/// POST: sends the decision to the waiting workflow. `body` is the form as it arrived.
pub async fn handle_post<L: Kms, D: Kms>(
    page: &ApprovalPage<'_, L, D>,
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
    let (action, waiting) = match waiting_for(page, &params, now).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    // Signed in: the session's identity decides, and a typed name is ignored.
    let decided_at = crate::steps::now_rfc3339();
    let decision = match page.sign_in {
        Some(sign_in) => {
            match signed_in_identity(page.decisions, sign_in, form, &params, now).await {
                Ok(identity) => Decision::signed_in(action, &identity, decided_at),
                Err(refused) => return refused,
            }
        }
        None => Decision {
            decision: action,
            approver,
            via: Via::UnauthenticatedLink,
            identity: None,
            decided_at,
            round: 1,
            first_approval: None,
            seal: None,
        },
    };
    let decision = match decision.answering(&waiting) {
        Ok(decision) => decision,
        Err(problem) => return second_approval_refused(&problem),
    };
    let (instance, token) = (&waiting.context.instance_id, &waiting.token);
    let first_of_two =
        action == Action::Approve && waiting.round == 1 && waiting.context.approvals_required >= 2;
    match send_decision(page.sfn, page.decisions, &params.x, token, decision).await {
        Ok(decision) => {
            // The function's log names who decided (never the token).
            let via = serde_json::to_value(decision.via).ok();
            eprintln!(
                "approval: {} for {} by {}",
                action.as_str(),
                params.x,
                who_decided(
                    decision.approver.as_deref(),
                    via.as_ref().and_then(|v| v.as_str()),
                    decision.identity.as_ref().map(|i| i.issuer.as_str()),
                    true,
                )
                .escape_debug()
            );
            match action {
                Action::Approve if first_of_two => reply(200, "First approval recorded", &format!("{instance} stays isolated until a second, different approver approves too. The analysts get an email asking for the second approval.")),
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

    fn visit(query: &str) -> Visit<'_> {
        Visit {
            query,
            cookie: None,
            page_url: "https://approve.example/",
        }
    }

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
        let decisions = decisions();
        let page = ApprovalPage {
            sfn: &sfn,
            key: &key,
            decisions: &decisions,
            sign_in: None,
        };
        let expired = key
            .sign(Action::Approve, now - 1, ARN, "token")
            .await
            .unwrap();
        for reply in [
            handle_get(&page, &visit(&form(&expired)), now).await,
            handle_post(&page, form(&expired).as_bytes(), now).await,
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
            handle_get(&page, &visit(&form(&extended)), now).await,
            handle_post(&page, form(&extended).as_bytes(), now).await,
            handle_post(&page, b"a=approve&t=token", now).await,
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
        let reply = handle_post(&page, form(&valid).as_bytes(), now).await;
        assert_eq!(reply.status, 502, "{}", reply.html);
    }

    #[tokio::test]
    async fn oversized_or_malformed_requests_are_refused_before_kms_or_the_workflow() {
        let sfn = unreachable_sfn();
        let now = 10_000;
        let key = key();
        let decisions = decisions();
        let page = ApprovalPage {
            sfn: &sfn,
            key: &key,
            decisions: &decisions,
            sign_in: None,
        };
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
            let reply = handle_post(&page, &body, now).await;
            assert_eq!(reply.status, status, "{}", reply.html);
            assert!(reply.html.contains(says), "{}", reply.html);
            assert!(reply.html.contains("othing was changed"), "{}", reply.html);
        }
        let reply = handle_get(&page, &visit(&padded), now).await;
        assert_eq!(reply.status, 413, "{}", reply.html);
        assert!(key.kms.calls.lock().unwrap().is_empty(), "KMS was asked");
        // A name at the limit is taken: the client cannot reach the workflow, hence 502.
        let reply = handle_post(&page, &name(&"A".repeat(MAX_APPROVER_CHARS)), now).await;
        assert_eq!(reply.status, 502, "{}", reply.html);
    }
}
