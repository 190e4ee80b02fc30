//! Approval links and the approval page. A task token can approve a restore, so links are
//! signed (HMAC-SHA256 over action, expiry, execution and token) and expire with the task; GET
//! only shows what would happen (mail scanners follow links), POST decides.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ec2::NetworkInterface;

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
    /// Hex HMAC-SHA256.
    pub s: String,
}

fn mac(key: &[u8], action: &str, expires: i64, execution_arn: &str, token: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    // Length-prefixed fields: no two different tuples sign the same bytes.
    for field in [action, &expires.to_string(), execution_arn, token] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn sign(
    key: &[u8],
    action: Action,
    expires: i64,
    execution_arn: &str,
    token: &str,
) -> LinkParams {
    let signature = mac(key, action.as_str(), expires, execution_arn, token)
        .finalize()
        .into_bytes();
    LinkParams {
        t: token.to_string(),
        a: action.as_str().to_string(),
        e: expires,
        x: execution_arn.to_string(),
        s: to_hex(&signature),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkProblem {
    /// Not signed with our key, or altered.
    Forged,
    Expired,
}

/// Checks the signature (in constant time) and then the expiry.
pub fn verify(key: &[u8], params: &LinkParams, now: i64) -> Result<Action, LinkProblem> {
    let action = Action::parse(&params.a).ok_or(LinkProblem::Forged)?;
    let signature = from_hex(&params.s).ok_or(LinkProblem::Forged)?;
    mac(key, &params.a, params.e, &params.x, &params.t)
        .verify_slice(&signature)
        .map_err(|_| LinkProblem::Forged)?;
    if now > params.e {
        return Err(LinkProblem::Expired);
    }
    Ok(action)
}

/// What a person decided, as the workflow receives it (`SendTaskSuccess` output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub decision: Action,
    pub approver: Option<String>,
    pub decided_at: String,
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

/// The page a GET shows: what restore will put back, and one form per decision.
pub fn render_decision_page(
    context: &PageContext,
    approve: &LinkParams,
    reject: &LinkParams,
) -> String {
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
    let body = format!(
        "<h1>Restore {instance}?</h1>\
<p>GuardDuty reported <strong>{finding_type}</strong> (severity {severity}, finding <code>{finding_id}</code>). \
Cordon isolated the instance and is waiting for a decision.</p>\
<h2>Restore will put back</h2>\
<table id=\"restore-plan\"><tr><th>Network interface</th><th>Subnet</th><th>Security groups</th></tr>{rows}</table>\
<p>and remove the network ACL entries Cordon added. Keeping it isolated changes nothing.</p>\
<form method=\"post\" id=\"approve-form\">{approve_fields}\
<label>Your name <input name=\"approver\" id=\"approver\" autocomplete=\"name\"></label><br>\
<button type=\"submit\" class=\"approve\" id=\"approve\">Approve restore</button></form>\
<form method=\"post\" id=\"reject-form\">{reject_fields}\
<button type=\"submit\" class=\"reject\" id=\"reject\">Keep isolated</button></form>",
        instance = escape_html(&context.instance_id),
        finding_type = escape_html(&context.finding_type),
        severity = escape_html(&context.severity),
        finding_id = escape_html(&context.finding_id),
        approve_fields = hidden_fields(approve),
        reject_fields = hidden_fields(reject),
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

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:cordon-quarantine:f-1";

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let params = sign(KEY, Action::Approve, 1_000, ARN, "AAAA+token/==");
        assert_eq!(verify(KEY, &params, 999), Ok(Action::Approve));
        assert_eq!(verify(KEY, &params, 1_000), Ok(Action::Approve));
        assert_eq!(verify(KEY, &params, 1_001), Err(LinkProblem::Expired));
    }

    #[test]
    fn any_change_to_a_link_or_another_key_is_a_forgery() {
        let params = sign(KEY, Action::Reject, 1_000, ARN, "token");
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
        ];
        for forged in altered {
            assert_eq!(
                verify(KEY, &forged, 0),
                Err(LinkProblem::Forged),
                "{forged:?}"
            );
        }
        assert_eq!(verify(b"another key", &params, 0), Err(LinkProblem::Forged));
    }

    #[test]
    fn links_survive_url_encoding() {
        let params = sign(KEY, Action::Approve, 1_000, ARN, "AAAA+to ken/&x=1==");
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

    #[test]
    fn the_page_escapes_what_it_shows_and_carries_both_signed_decisions() {
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
            }],
        };
        let approve = sign(KEY, Action::Approve, 1, ARN, "tok\"en");
        let reject = sign(KEY, Action::Reject, 1, ARN, "tok\"en");
        let html = render_decision_page(&context, &approve, &reject);
        assert!(!html.contains("<script>"));
        assert!(html.contains("i-1&lt;script&gt;") && html.contains("C&amp;CActivity"));
        assert!(html.contains("sg-web, sg-ssh"));
        assert!(html.contains(&approve.s) && html.contains(&reject.s));
        assert!(html.contains("tok&quot;en"));
        assert_eq!(html.matches("method=\"post\"").count(), 2);
    }
}
