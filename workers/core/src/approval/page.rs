//! The approval page's HTML: everything it shows is escaped.

use super::{Action, Identity, LinkParams};
use crate::ec2::NetworkInterface;

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
    /// The finding's account and region (where the instance is).
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub finding_type: String,
    pub finding_id: String,
    pub severity: String,
    /// When GuardDuty first and last saw the activity.
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// The finding's remote addresses (the attacker's side).
    pub remote_addresses: Vec<String>,
    /// When the approval was requested: containment had ended.
    pub isolated_since: Option<String>,
    /// What restore puts back per interface.
    pub interfaces: Vec<NetworkInterface>,
    /// The network ACL entries restore removes, one line each.
    pub acl_entries: Vec<String>,
    /// What each measure holds now, and what failed, one line each.
    pub holds_now: Vec<String>,
    pub failed: Vec<String>,
    /// Which approval the page asks for: 1, or 2 under the two-person rule.
    pub round: u8,
    /// How many different people must approve (2: the two-person rule).
    pub approvals_required: u8,
    /// For the second approval: who approved first, one line, as the workflow received it
    /// (the restore step checks its seal).
    pub first_approval: Option<String>,
}

impl PageContext {
    /// What the page says about the two-person rule, if the stack has it.
    fn two_person_note(&self) -> Option<String> {
        if self.approvals_required < 2 {
            return None;
        }
        Some(match (self.round, &self.first_approval) {
            (2, Some(first)) => format!(
                "Second approval: {first} approved restoring it first. The stack requires two different approvers; restore runs after yours, if you are not the first one."
            ),
            (2, None) => "Second approval: the stack requires two different approvers.".into(),
            _ => "First approval: the stack requires two different approvers, so approving here asks a second person before anything is restored.".into(),
        })
    }
}

/// The page's only style. Inline, and allowed by its hash alone (see [`response_headers`]).
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}\
form{display:inline-block;margin:1rem 1rem 0 0}button{font-size:1rem;padding:.6rem 1.2rem}\
.approve{background:#0a6b2d;color:#fff}.reject{background:#8a1c1c;color:#fff}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
<style>{STYLE}</style></head><body>{body}</body></html>\n",
        title = escape_html(title)
    )
}

/// The headers every page goes out with, from the Lambda and the local runner alike. The page
/// carries signed links and decides a restore: nothing may cache, frame, refer, sniff, load
/// or run anything, and its one form may post only back to it.
pub fn response_headers() -> Vec<(&'static str, String)> {
    use sha2::{Digest, Sha256};
    let style_hash = aws_smithy_types::base64::encode(Sha256::digest(STYLE.as_bytes()));
    vec![
        ("content-type", "text/html; charset=utf-8".into()),
        ("cache-control", "no-store".into()),
        ("referrer-policy", "no-referrer".into()),
        ("x-frame-options", "DENY".into()),
        ("x-content-type-options", "nosniff".into()),
        (
            "content-security-policy",
            format!(
                "default-src 'none'; style-src 'sha256-{style_hash}'; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'"
            ),
        ),
    ]
}

fn hidden_fields(params: &LinkParams) -> String {
    [
        ("a", &params.a),
        ("e", &params.e.to_string()),
        ("x", &params.x),
        ("k", &params.k),
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

/// Who will decide from the page.
pub enum Signer<'a> {
    /// No sign-in is configured: whoever holds the link, with a typed name.
    Link,
    /// Signed in; `session` is the form's proof of it ([`super::Session`]).
    SignedIn {
        identity: &'a Identity,
        session: &'a str,
    },
}

/// The page a GET shows: what restore will put back, and the one decision its link carries
/// (a "keep isolated" link cannot approve). The form posts the link's own signed fields.
pub fn render_decision_page(
    context: &PageContext,
    link: &LinkParams,
    action: Action,
    signer: &Signer,
) -> String {
    let fields = hidden_fields(link);
    if let Signer::SignedIn { identity, session } = signer {
        let fields = format!(
            "{fields}<input type=\"hidden\" name=\"session\" value=\"{}\">",
            escape_html(session)
        );
        let who = format!(
            "<p id=\"signed-in\">Signed in as <strong>{}</strong> at {}. The decision records this identity.</p>",
            escape_html(identity.name()),
            escape_html(&identity.issuer)
        );
        let form = match action {
            Action::Approve => format!(
                "<form method=\"post\" id=\"approve-form\">{fields}{who}\
<button type=\"submit\" class=\"approve\" id=\"approve\">Approve restore</button></form>"
            ),
            Action::Reject => format!(
                "<form method=\"post\" id=\"reject-form\">{fields}{who}\
<button type=\"submit\" class=\"reject\" id=\"reject\">Keep isolated</button></form>\
<p>To restore instead, use the email's approve link.</p>"
            ),
        };
        return decision_page(context, &form);
    }
    let form = match action {
        Action::Approve => format!(
            "<form method=\"post\" id=\"approve-form\">{fields}\
<p>No sign-in is configured: anyone with this link can decide. Your name is recorded as you type it, and nobody checks it.</p>\
<label>Your name <input name=\"approver\" id=\"approver\" autocomplete=\"name\" maxlength=\"120\"></label><br>\
<button type=\"submit\" class=\"approve\" id=\"approve\">Approve restore</button></form>"
        ),
        Action::Reject => format!(
            "<form method=\"post\" id=\"reject-form\">{fields}\
<button type=\"submit\" class=\"reject\" id=\"reject\">Keep isolated</button></form>\
<p>To restore instead, use the email's approve link. No sign-in is configured: anyone with this link can decide.</p>"
        ),
    };
    decision_page(context, &form)
}

/// An interface's groups as the analyst reads them: `sg-1 (web), sg-2`.
fn named_groups(eni: &NetworkInterface) -> String {
    eni.groups
        .iter()
        .map(|id| match eni.group_names.get(id) {
            Some(name) => format!("{id} ({name})"),
            None => id.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The decision page around its form.
fn decision_page(context: &PageContext, form: &str) -> String {
    let rows: String = context
        .interfaces
        .iter()
        .map(|eni| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&eni.id),
                escape_html(&eni.subnet_id),
                escape_html(&named_groups(eni))
            )
        })
        .collect();
    let list = |id: &str, lines: &[String], none: &str| {
        if lines.is_empty() {
            return format!("<p id=\"{id}\">{}</p>", escape_html(none));
        }
        let items: String = lines
            .iter()
            .map(|line| format!("<li>{}</li>", escape_html(line)))
            .collect();
        format!("<ul id=\"{id}\">{items}</ul>")
    };
    let or_unknown = |value: &Option<String>| escape_html(value.as_deref().unwrap_or("unknown"));
    let remotes = if context.remote_addresses.is_empty() {
        "none named".to_string()
    } else {
        escape_html(&context.remote_addresses.join(", "))
    };
    let failed = if context.failed.is_empty() {
        String::new()
    } else {
        format!(
            "<h2>What failed</h2>{}",
            list("failed", &context.failed, "")
        )
    };
    let body = format!(
        "<h1>Restore {instance}?</h1>\
<p>GuardDuty reported <strong>{finding_type}</strong> (severity {severity}, finding <code>{finding_id}</code>), \
first seen {first_seen}, last seen {last_seen}. Remote addresses: <span id=\"remotes\">{remotes}</span>.</p>\
<p>Cordon isolated the instance (approval requested {since}) and is waiting for a decision.</p>{rule}\
<h2>Restore will put back</h2>\
<table id=\"restore-plan\"><tr><th>Network interface</th><th>Subnet</th><th>Security groups</th></tr>{rows}</table>\
<h2>and remove these network ACL entries</h2>{acl}\
<h2>What Cordon holds now</h2>{holds}{failed}\
<p>Keeping it isolated changes nothing.</p>{form}",
        instance = escape_html(&context.instance_id),
        finding_type = escape_html(&context.finding_type),
        severity = escape_html(&context.severity),
        finding_id = escape_html(&context.finding_id),
        first_seen = or_unknown(&context.first_seen),
        last_seen = or_unknown(&context.last_seen),
        since = or_unknown(&context.isolated_since),
        acl = list("acl-entries", &context.acl_entries, "none"),
        holds = list("holds-now", &context.holds_now, "nothing"),
        rule = context
            .two_person_note()
            .map(|note| format!("<p id=\"two-person\">{}</p>", escape_html(&note)))
            .unwrap_or_default(),
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
    use crate::approval::fixtures::*;

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
                // A name for one group only (the other's is not known): names are escaped.
                group_names: [("sg-web".to_string(), "web <tier>".to_string())].into(),
                private_ipv4: vec![],
                ipv6: vec![],
                ..Default::default()
            }],
            first_seen: Some("2026-12-03T09:58:00.000Z".into()),
            remote_addresses: vec!["198.51.100.7".into()],
            acl_entries: vec!["acl-1 inbound rule 1: deny 198.51.100.7/32".into()],
            holds_now: vec!["eni-1: isolated <b>".into()],
            ..Default::default()
        };
        let key = key();
        let approve = key.sign(Action::Approve, 1, ARN, "tok\"en").await.unwrap();
        let reject = key.sign(Action::Reject, 1, ARN, "tok\"en").await.unwrap();
        let html = render_decision_page(&context, &approve, Action::Approve, &Signer::Link);
        assert!(!html.contains("<script>"));
        assert!(html.contains("i-1&lt;script&gt;") && html.contains("C&amp;CActivity"));
        assert!(html.contains("sg-web (web &lt;tier&gt;), sg-ssh"), "{html}");
        // What the analyst needs to decide, unknowns said as such.
        for shown in [
            "first seen 2026-12-03T09:58:00.000Z, last seen unknown",
            "Remote addresses: <span id=\"remotes\">198.51.100.7</span>",
            "<li>acl-1 inbound rule 1: deny 198.51.100.7/32</li>",
            "<li>eni-1: isolated &lt;b&gt;</li>",
            "approval requested unknown",
        ] {
            assert!(html.contains(shown), "{shown}\n{html}");
        }
        assert!(!html.contains("What failed"));
        assert!(html.contains(&approve.s) && !html.contains(&reject.s));
        // The form names the task; the token stays in the execution's history.
        assert!(html.contains(&approve.k));
        assert!(!html.contains("tok&quot;en") && !html.contains("tok\"en"));
        assert_eq!(html.matches("method=\"post\"").count(), 1);
        assert!(html.contains("id=\"approve\"") && !html.contains("id=\"reject\""));
        // A "keep isolated" link renders no way to approve.
        let html = render_decision_page(&context, &reject, Action::Reject, &Signer::Link);
        assert!(html.contains(&reject.s) && !html.contains(&approve.s));
        assert!(html.contains("id=\"reject\"") && !html.contains("id=\"approve\""));
    }
}
