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
pub use history::{standing, waiting_quarantines, Standing, Waiting, WaitingQuarantine};
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
    /// Which approval this is: 1, or 2 for the second under the two-person rule.
    #[serde(default = "first_round")]
    pub round: u8,
    /// The second approval carries the first as the workflow received it (sealed on its own),
    /// so that the restore step sees both approvers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_approval: Option<Box<Decision>>,
    /// The seal ([`crate::decision::DecisionKey`]): hex HMAC-SHA256 by KMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

fn first_round() -> u8 {
    1
}

impl Decision {
    /// A signed-in analyst's decision, before it is sealed. The seal covers every recorded
    /// field; the groups only admitted the analyst, so they are not recorded.
    pub fn signed_in(action: Action, identity: &Identity, decided_at: String) -> Decision {
        Decision {
            decision: action,
            approver: Some(identity.name().to_string()),
            via: Via::SignedIn,
            identity: Some(Identity {
                groups: Vec::new(),
                ..identity.clone()
            }),
            decided_at,
            round: 1,
            first_approval: None,
            seal: None,
        }
    }

    /// This decision as the answer to `waiting`: the approval it asks for and, for the
    /// second, the first approval it follows. Refused (why, for the person deciding) when it
    /// would approve a second time for the first approver, or with no verified identity, under
    /// the two-person rule; a decision to keep isolated is taken from anyone allowed to decide.
    pub fn answering(self, waiting: &Waiting) -> Result<Decision, String> {
        if waiting.round < 2 {
            return Ok(self);
        }
        let Some(first) = waiting.first_approval.clone() else {
            return Err("the first approval of this quarantine cannot be read from the workflow, so a second one cannot be checked against it".into());
        };
        if self.decision == Action::Approve {
            if let Some(problem) = crate::decision::second_approver_problem(&first, &self) {
                return Err(problem);
            }
        }
        Ok(Decision {
            round: 2,
            first_approval: Some(Box::new(first)),
            ..self
        })
    }
}

/// One line naming who decided and how far that is known, for emails and logs, from the
/// decision as the execution's output carries it. `checked`: its seal was verified (by the
/// restore step, or the page made it); otherwise the line says it is only what the workflow
/// received, since anyone allowed `states:SendTaskSuccess` can send any claim. The approver
/// may be typed text: the caller sanitises the line for where it goes.
pub fn who_decided(
    approver: Option<&str>,
    via: Option<&str>,
    issuer: Option<&str>,
    checked: bool,
) -> String {
    let name = approver.unwrap_or("no name given");
    let how = match via {
        Some("signed_in") => format!(
            "signed in at {}{}",
            issuer.unwrap_or("the stack's identity provider"),
            if checked { ", identity verified" } else { "" }
        ),
        Some("unauthenticated_link") => "unauthenticated link: whoever held the email's link; the name as typed, checked by no one".into(),
        Some("aws_iam") => "AWS IAM identity, in CloudTrail".into(),
        _ => "not known how".into(),
    };
    if checked {
        format!("{name} ({how})")
    } else {
        format!(
            "{name} ({how}; as the workflow received it, not yet checked: restore checks its seal)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(round: u8, first: Option<Decision>) -> Waiting {
        Waiting {
            context: PageContext::default(),
            token: "token".into(),
            round,
            first_approval: first,
        }
    }

    fn ada() -> Identity {
        Identity {
            issuer: "https://idp".into(),
            subject: "1".into(),
            email: Some("ada@example.com".into()),
            groups: vec!["incident-responders".into()],
        }
    }

    #[test]
    fn a_decision_answers_its_round_and_the_first_approver_cannot_be_the_second() {
        let first = Decision::signed_in(Action::Approve, &ada(), "t1".into());
        assert!(
            first.identity.as_ref().unwrap().groups.is_empty(),
            "groups are not recorded"
        );
        // The first round takes the decision as it is.
        let answered = first.clone().answering(&waiting(1, None)).unwrap();
        assert_eq!(
            (answered.round, answered.first_approval.is_none()),
            (1, true)
        );
        // The second carries the first, and refuses the same person's approval...
        let grace = Identity {
            subject: "2".into(),
            email: Some("grace@example.com".into()),
            ..ada()
        };
        let second = Decision::signed_in(Action::Approve, &grace, "t2".into())
            .answering(&waiting(2, Some(first.clone())))
            .unwrap();
        assert_eq!(second.round, 2);
        assert_eq!(second.first_approval.as_deref(), Some(&first));
        let again = Decision::signed_in(Action::Approve, &ada(), "t2".into())
            .answering(&waiting(2, Some(first.clone())))
            .unwrap_err();
        assert!(
            again.contains("ada@example.com made the first approval"),
            "{again}"
        );
        // ...but not a decision to keep it isolated, which changes nothing.
        let kept = Decision::signed_in(Action::Reject, &ada(), "t2".into())
            .answering(&waiting(2, Some(first)))
            .unwrap();
        assert_eq!(kept.decision, Action::Reject);
        // Without a first approval to check against, no second is made.
        let unread = Decision::signed_in(Action::Approve, &grace, "t2".into())
            .answering(&waiting(2, None))
            .unwrap_err();
        assert!(unread.contains("cannot be read"), "{unread}");
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
