//! Approval links and the approval page. A task token can approve a restore, so links are
//! signed (an HMAC-SHA256 made by KMS over action, expiry, execution and token) and expire
//! with the task; GET only shows what would happen (mail scanners follow links), POST decides.

use serde::{Deserialize, Serialize};

use crate::decision::DecisionKey;
use crate::ec2::NetworkInterface;
use crate::kms::Kms;
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Restore the instance's original network state.
    Approve,
    /// Keep the instance isolated.
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "approve" => Some(Action::Approve),
            "reject" => Some(Action::Reject),
            _ => None,
        }
    }
}

/// The signed parameters a link carries (query string on GET, form fields on POST).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkParams {
    /// The task token.
    pub t: String,
    /// `approve` or `reject`.
    pub a: String,
    /// Expiry, Unix seconds.
    pub e: i64,
    /// The execution ARN (the page reads what restore will put back from it).
    pub x: String,
    /// Hex HMAC-SHA256, made by KMS.
    pub s: String,
}

/// The key that signs links: a KMS HMAC key. notify may only `GenerateMac` with it and
/// approval only `VerifyMac`; no function, template or log ever holds its material.
#[derive(Debug, Clone)]
pub struct LinkKey<K> {
    pub kms: K,
    pub key_id: String,
}

/// What a link's MAC covers. The first field keeps these MACs apart from anything else the
/// same kind of key signs.
fn link_message(action: &str, expires: i64, execution_arn: &str, token: &str) -> Vec<u8> {
    crate::kms::digest(&[
        "cordon approval link v1",
        action,
        &expires.to_string(),
        execution_arn,
        token,
    ])
}

/// The length of an HMAC-SHA256: anything else is refused without asking KMS.
pub(crate) const MAC_BYTES: usize = 32;

/// Far beyond any task token or execution ARN Step Functions makes; longer is refused
/// without asking KMS.
const MAX_FIELD_CHARS: usize = 4096;

/// Whether the link could have come from notify at all: checked before KMS is asked, so that
/// requests to the public page that are plainly not links cost no KMS request (the account's
/// KMS request quota is shared with notify and everything else in the region).
fn plausible(params: &LinkParams) -> bool {
    let execution = &params.x;
    !params.t.is_empty()
        && params.t.len() <= MAX_FIELD_CHARS
        && execution.len() <= MAX_FIELD_CHARS
        && execution.starts_with("arn:")
        && execution.contains(":states:")
        && execution.contains(":execution:")
        && params.e > 0
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex digits only: `from_str_radix` alone would also take a sign (`+f`).
pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl<K: Kms> LinkKey<K> {
    /// The link for `action` on the task `token` of `execution_arn`, valid until `expires`.
    pub async fn sign(
        &self,
        action: Action,
        expires: i64,
        execution_arn: &str,
        token: &str,
    ) -> Result<LinkParams> {
        let message = link_message(action.as_str(), expires, execution_arn, token);
        let mac = self.kms.generate_mac(&self.key_id, &message).await?;
        Ok(LinkParams {
            t: token.to_string(),
            a: action.as_str().to_string(),
            e: expires,
            x: execution_arn.to_string(),
            s: to_hex(&mac),
        })
    }

    /// KMS checks the MAC, then the expiry is checked: an altered expiry is a forgery.
    pub async fn verify(
        &self,
        params: &LinkParams,
        now: i64,
    ) -> std::result::Result<Action, LinkProblem> {
        let action = Action::parse(&params.a).ok_or(LinkProblem::Forged)?;
        let mac = from_hex(&params.s)
            .filter(|mac| mac.len() == MAC_BYTES && plausible(params))
            .ok_or(LinkProblem::Forged)?;
        let message = link_message(&params.a, params.e, &params.x, &params.t);
        match self.kms.verify_mac(&self.key_id, &message, &mac).await {
            Ok(true) => {}
            Ok(false) => return Err(LinkProblem::Forged),
            Err(error) => return Err(LinkProblem::Unverifiable(error.to_string())),
        }
        if now > params.e {
            return Err(LinkProblem::Expired);
        }
        Ok(action)
    }
}

/// `base_url?t=...&a=...&e=...&x=...&s=...`, every value URL-encoded.
pub fn link_url(base_url: &str, params: &LinkParams) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("a", &params.a)
        .append_pair("e", &params.e.to_string())
        .append_pair("x", &params.x)
        .append_pair("t", &params.t)
        .append_pair("s", &params.s)
        .finish();
    let separator = if base_url.contains('?') { '&' } else { '?' };
    format!("{base_url}{separator}{query}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkProblem {
    /// Not signed with our key, or altered.
    Forged,
    Expired,
    /// KMS could not be asked (throttled, unreachable, not allowed): neither valid nor forged.
    Unverifiable(String),
}

/// What a person decided, as the workflow receives it (`SendTaskSuccess` output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub decision: Action,
    pub approver: Option<String>,
    pub decided_at: String,
    /// The approval page's seal ([`crate::decision::DecisionKey`]): hex HMAC-SHA256 by KMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// What the page shows about the quarantine it decides on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PageContext {
    pub instance_id: String,
    pub finding_type: String,
    pub finding_id: String,
    pub severity: String,
    pub interfaces: Vec<NetworkInterface>,
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}}\
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}\
form{{display:inline-block;margin:1rem 1rem 0 0}}button{{font-size:1rem;padding:.6rem 1.2rem}}\
.approve{{background:#0a6b2d;color:#fff}}.reject{{background:#8a1c1c;color:#fff}}</style></head>\
<body>{body}</body></html>\n",
        title = escape_html(title)
    )
}

fn hidden_fields(params: &LinkParams) -> String {
    [
        ("t", &params.t),
        ("a", &params.a),
        ("e", &params.e.to_string()),
        ("x", &params.x),
        ("s", &params.s),
    ]
    .iter()
    .map(|(name, value)| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape_html(value)
        )
    })
    .collect()
}

/// The page a GET shows: what restore will put back, and the one decision its link carries
/// (a "keep isolated" link cannot approve). The form posts the link's own signed fields.
pub fn render_decision_page(context: &PageContext, link: &LinkParams, action: Action) -> String {
    let rows: String = context
        .interfaces
        .iter()
        .map(|eni| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&eni.id),
                escape_html(&eni.subnet_id),
                escape_html(&eni.groups.join(", "))
            )
        })
        .collect();
    let fields = hidden_fields(link);
    let form = match action {
        Action::Approve => format!(
            "<form method=\"post\" id=\"approve-form\">{fields}\
<label>Your name <input name=\"approver\" id=\"approver\" autocomplete=\"name\"></label><br>\
<button type=\"submit\" class=\"approve\" id=\"approve\">Approve restore</button></form>"
        ),
        Action::Reject => format!(
            "<form method=\"post\" id=\"reject-form\">{fields}\
<button type=\"submit\" class=\"reject\" id=\"reject\">Keep isolated</button></form>\
<p>To restore instead, use the email's approve link.</p>"
        ),
    };
    let body = format!(
        "<h1>Restore {instance}?</h1>\
<p>GuardDuty reported <strong>{finding_type}</strong> (severity {severity}, finding <code>{finding_id}</code>). \
Cordon isolated the instance and is waiting for a decision.</p>\
<h2>Restore will put back</h2>\
<table id=\"restore-plan\"><tr><th>Network interface</th><th>Subnet</th><th>Security groups</th></tr>{rows}</table>\
<p>and remove the network ACL entries Cordon added. Keeping it isolated changes nothing.</p>{form}",
        instance = escape_html(&context.instance_id),
        finding_type = escape_html(&context.finding_type),
        severity = escape_html(&context.severity),
        finding_id = escape_html(&context.finding_id),
    );
    page(&format!("Cordon: restore {}?", context.instance_id), &body)
}

/// A page that only says something (a decision taken, a bad or spent link).
pub fn render_message_page(title: &str, message: &str) -> String {
    page(
        title,
        &format!(
            "<h1 id=\"title\">{}</h1><p id=\"message\">{}</p>",
            escape_html(title),
            escape_html(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::fake::FakeKms;

    fn decisions() -> DecisionKey<FakeKms> {
        DecisionKey {
            kms: FakeKms::with_key("decision-key", b"another key"),
            key_id: "decision-key".into(),
        }
    }

    fn key() -> LinkKey<FakeKms> {
        LinkKey {
            kms: FakeKms::with_key("link-key", b"0123456789abcdef0123456789abcdef"),
            key_id: "link-key".into(),
        }
    }
    const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:cordon-quarantine:f-1";

    #[tokio::test]
    async fn a_signed_link_verifies_until_it_expires() {
        let key = key();
        let params = key
            .sign(Action::Approve, 1_000, ARN, "AAAA+token/==")
            .await
            .unwrap();
        assert_eq!(key.verify(&params, 999).await, Ok(Action::Approve));
        assert_eq!(key.verify(&params, 1_000).await, Ok(Action::Approve));
        assert_eq!(key.verify(&params, 1_001).await, Err(LinkProblem::Expired));
    }

    #[tokio::test]
    async fn any_change_to_a_link_or_another_key_is_a_forgery() {
        let key = key();
        let params = key.sign(Action::Reject, 1_000, ARN, "token").await.unwrap();
        let altered = [
            LinkParams {
                a: "approve".into(),
                ..params.clone()
            },
            LinkParams {
                e: 2_000,
                ..params.clone()
            },
            LinkParams {
                t: "other-token".into(),
                ..params.clone()
            },
            LinkParams {
                x: format!("{ARN}-2"),
                ..params.clone()
            },
            LinkParams {
                s: "00".repeat(32),
                ..params.clone()
            },
            LinkParams {
                s: "not hex".into(),
                ..params.clone()
            },
            LinkParams {
                a: "delete".into(),
                ..params.clone()
            },
            // A MAC of another length is refused without asking KMS.
            LinkParams {
                s: params.s[..62].to_string(),
                ..params.clone()
            },
        ];
        for forged in altered {
            assert_eq!(
                key.verify(&forged, 0).await,
                Err(LinkProblem::Forged),
                "{forged:?}"
            );
        }
        // Whoever holds some other key (or none) cannot make a link that verifies.
        let other = LinkKey {
            kms: FakeKms::with_key("link-key", b"a key read from somewhere else"),
            key_id: "link-key".into(),
        };
        let theirs = other
            .sign(Action::Approve, 1_000, ARN, "token")
            .await
            .unwrap();
        assert_eq!(key.verify(&theirs, 0).await, Err(LinkProblem::Forged));
    }

    #[tokio::test]
    async fn what_is_plainly_not_a_link_costs_no_kms_request() {
        let key = key();
        let params = key
            .sign(Action::Approve, 1_000, ARN, "token")
            .await
            .unwrap();
        key.kms.calls.lock().unwrap().clear();
        for junk in [
            LinkParams {
                x: "i-0123456789abcdef0".into(),
                ..params.clone()
            },
            LinkParams {
                t: String::new(),
                ..params.clone()
            },
            LinkParams {
                t: "t".repeat(MAX_FIELD_CHARS + 1),
                ..params.clone()
            },
            LinkParams {
                s: format!("+{}", &params.s[1..]),
                ..params.clone()
            },
            LinkParams {
                e: -1,
                ..params.clone()
            },
        ] {
            assert_eq!(key.verify(&junk, 0).await, Err(LinkProblem::Forged));
        }
        assert!(key.kms.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_link_kms_cannot_check_is_neither_valid_nor_forged() {
        let key = key();
        let params = key
            .sign(Action::Approve, 1_000, ARN, "token")
            .await
            .unwrap();
        let elsewhere = LinkKey {
            kms: FakeKms::default(),
            key_id: "link-key".into(),
        };
        match elsewhere.verify(&params, 0).await {
            Err(LinkProblem::Unverifiable(why)) => assert!(why.contains("link-key"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn links_survive_url_encoding() {
        let params = key()
            .sign(Action::Approve, 1_000, ARN, "AAAA+to ken/&x=1==")
            .await
            .unwrap();
        let url = link_url("https://abc.lambda-url.eu-west-1.on.aws/", &params);
        let query = url.split_once('?').unwrap().1;
        let parsed: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(parsed["t"], params.t);
        assert_eq!(parsed["x"], ARN);
        assert!(
            query.contains("t=AAAA%2Bto+ken%2F%26x%3D1%3D%3D"),
            "{query}"
        );
    }

    #[tokio::test]
    async fn the_page_escapes_what_it_shows_and_carries_only_its_links_decision() {
        let context = PageContext {
            instance_id: "i-1<script>".into(),
            finding_type: "Backdoor:EC2/C&CActivity.B".into(),
            finding_id: "f\"1".into(),
            severity: "8".into(),
            interfaces: vec![NetworkInterface {
                id: "eni-1".into(),
                subnet_id: "subnet-1".into(),
                vpc_id: "vpc-1".into(),
                groups: vec!["sg-web".into(), "sg-ssh".into()],
                private_ipv4: vec![],
                ipv6: vec![],
                ..Default::default()
            }],
        };
        let key = key();
        let approve = key.sign(Action::Approve, 1, ARN, "tok\"en").await.unwrap();
        let reject = key.sign(Action::Reject, 1, ARN, "tok\"en").await.unwrap();
        let html = render_decision_page(&context, &approve, Action::Approve);
        assert!(!html.contains("<script>"));
        assert!(html.contains("i-1&lt;script&gt;") && html.contains("C&amp;CActivity"));
        assert!(html.contains("sg-web, sg-ssh"));
        assert!(html.contains(&approve.s) && !html.contains(&reject.s));
        assert!(html.contains("tok&quot;en"));
        assert_eq!(html.matches("method=\"post\"").count(), 1);
        assert!(html.contains("id=\"approve\"") && !html.contains("id=\"reject\""));
        // A "keep isolated" link renders no way to approve.
        let html = render_decision_page(&context, &reject, Action::Reject);
        assert!(html.contains(&reject.s) && !html.contains(&approve.s));
        assert!(html.contains("id=\"reject\"") && !html.contains("id=\"approve\""));
    }

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

/// Reads link parameters from a query string or a form body; `None` when any is missing.
pub fn parse_params(encoded: &str) -> (Option<LinkParams>, Option<String>) {
    let pairs: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(encoded.as_bytes())
            .into_owned()
            .collect();
    let approver = pairs
        .get("approver")
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty());
    let params = (|| {
        Some(LinkParams {
            t: pairs.get("t")?.clone(),
            a: pairs.get("a")?.clone(),
            e: pairs.get("e")?.parse().ok()?,
            x: pairs.get("x")?.clone(),
            s: pairs.get("s")?.clone(),
        })
    })();
    (params, approver)
}

/// Where the execution stands, for the page.
enum Standing {
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
async fn standing(
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
