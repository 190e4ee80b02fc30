//! Approval links and the approval page. A task token can approve a restore, so links are
//! signed (an HMAC-SHA256 made by KMS over action, expiry, execution and token) and expire
//! with the task; GET only shows what would happen (mail scanners follow links), POST decides.

mod handler;
mod history;
mod link;
mod page;

use serde::{Deserialize, Serialize};

pub use handler::{handle_get, handle_post, Reply};
pub(crate) use link::{from_hex, to_hex, MAC_BYTES};
pub use link::{link_url, parse_params, LinkKey, LinkParams, LinkProblem};
pub use page::{escape_html, render_decision_page, render_message_page, PageContext};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub decision: Action,
    pub approver: Option<String>,
    pub decided_at: String,
    /// The approval page's seal ([`crate::decision::DecisionKey`]): hex HMAC-SHA256 by KMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
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
