//! Approval links and the approval page. A task token can approve a restore, so links are
//! signed (an HMAC-SHA256 made by KMS over action, expiry, execution and token) and expire
//! with the task; GET only shows what would happen (mail scanners follow links), POST decides.

mod break_glass;
mod handler;
mod history;
mod link;
mod page;
mod sign_in;

use serde::{Deserialize, Serialize};

pub use break_glass::{caller_decision, decide_as_caller, execution_region};
pub use handler::{
    handle_get, handle_post, send_decision, ApprovalPage, Reply, SendProblem, Visit,
    MAX_APPROVER_CHARS, MAX_REQUEST_BYTES,
};
pub use history::{standing, Standing, Waiting};
pub(crate) use link::{from_hex, to_hex, MAC_BYTES};
pub use link::{link_url, parse_params, task_key, LinkKey, LinkParams, LinkProblem};
pub use page::{
    escape_html, render_decision_page, render_message_page, response_headers, PageContext, Signer,
};
pub use sign_in::{
    flow_cookie, flow_cookie_name, Approvers, Flow, Identity, Session, SessionProblem, SignIn,
    SignInProblem, SIGN_IN_SECONDS,
};

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

/// How the workflow knows who decided. Recorded in the sealed decision, the execution's output
/// and the emails, so nobody reads a typed name as a verified one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The email's link alone decided (no sign-in is configured): whoever held the link, and
    /// the name is as they typed it, checked by no one.
    UnauthenticatedLink,
    /// An AWS principal with its own credentials (`cordon approve|reject`): the name is the
    /// caller's ARN as STS gives it, and CloudTrail records the call.
    AwsIam,
    /// Signed in at the stack's OpenID Connect provider: the name is the ID token's verified
    /// email (or its subject), and [`Decision::identity`] holds issuer and subject.
    SignedIn,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::UnauthenticatedLink => "unauthenticated link",
            Via::AwsIam => "AWS IAM",
            Via::SignedIn => "signed in (OpenID Connect)",
        }
    }
}

/// What a person decided, as the workflow receives it (`SendTaskSuccess` output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub decision: Action,
    /// Who decided, as far as [`Decision::via`] can tell.
    pub approver: Option<String>,
    pub via: Via,
    /// Who signed in, when [`Via::SignedIn`]: issuer, subject and verified email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    pub decided_at: String,
    /// The approval page's seal ([`crate::decision::DecisionKey`]): hex HMAC-SHA256 by KMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

/// One line naming who decided and how far that is known, for emails and logs, from the
/// decision as the execution's output carries it. The approver may be typed text: the caller
/// sanitises the line for where it goes.
pub fn who_decided(approver: Option<&str>, via: Option<&str>, issuer: Option<&str>) -> String {
    let name = approver.unwrap_or("no name given");
    match via {
        Some("signed_in") => format!(
            "{name} (signed in at {}, identity verified)",
            issuer.unwrap_or("the stack's identity provider")
        ),
        Some("unauthenticated_link") => format!(
            "{name} (unauthenticated link: whoever held the email's link; the name as typed, checked by no one)"
        ),
        Some("aws_iam") => format!("{name} (AWS IAM identity, in CloudTrail)"),
        _ => format!("{name} (not known how)"),
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::LinkKey;
    use crate::decision::DecisionKey;
    use crate::kms::fake::FakeKms;

    pub fn decisions() -> DecisionKey<FakeKms> {
        DecisionKey {
            kms: FakeKms::with_key("decision-key", b"another key"),
            key_id: "decision-key".into(),
        }
    }

    pub fn key() -> LinkKey<FakeKms> {
        LinkKey {
            kms: FakeKms::with_key("link-key", b"0123456789abcdef0123456789abcdef"),
            key_id: "link-key".into(),
        }
    }

    pub const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:cordon-quarantine:f-1";
}
