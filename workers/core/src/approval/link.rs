//! The signed link an approval email carries, and how the page checks it.

use serde::{Deserialize, Serialize};

use super::Action;
use crate::kms::Kms;
use crate::Result;

/// The signed parameters a link carries (query string on GET, form fields on POST). No task
/// token: a URL ends up in mail gateways' logs, browser histories and tickets, and a token
/// answers its task for whoever holds it. The link names the task by a digest of its token,
/// and the page reads the token itself from the execution's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkParams {
    /// `approve` or `reject`.
    pub a: String,
    /// Expiry, Unix seconds.
    pub e: i64,
    /// The execution ARN (the page reads what restore will put back from it).
    pub x: String,
    /// The waiting task: [`task_key`] of its token.
    pub k: String,
    /// Hex HMAC-SHA256, made by KMS.
    pub s: String,
}

/// Names a task without carrying its token: hex SHA-256 of the token. One way only, so the
/// name cannot answer the task; the page finds the token in the history by this name.
pub fn task_key(token: &str) -> String {
    to_hex(&crate::kms::digest(&["cordon approval task v1", token]))
}

/// Hex characters in a [`task_key`].
const TASK_KEY_CHARS: usize = 64;

/// The key that signs links: a KMS HMAC key. notify may only `GenerateMac` with it and
/// approval only `VerifyMac`; no function, template or log ever holds its material.
#[derive(Debug, Clone)]
pub struct LinkKey<K> {
    pub kms: K,
    pub key_id: String,
}

/// What a link's MAC covers. The first field keeps these MACs apart from anything else the
/// same kind of key signs.
fn link_message(action: &str, expires: i64, execution_arn: &str, task: &str) -> Vec<u8> {
    crate::kms::digest(&[
        "cordon approval link v2",
        action,
        &expires.to_string(),
        execution_arn,
        task,
    ])
}

/// The length of an HMAC-SHA256: anything else is refused without asking KMS.
pub(crate) const MAC_BYTES: usize = 32;

/// Far beyond any execution ARN Step Functions makes; longer is refused without asking KMS.
const MAX_FIELD_CHARS: usize = 4096;

/// Whether the link could have come from notify at all: checked before KMS is asked, so that
/// requests to the public page that are plainly not links cost no KMS request (the account's
/// KMS request quota is shared with notify and everything else in the region).
fn plausible(params: &LinkParams) -> bool {
    let execution = &params.x;
    params.k.len() == TASK_KEY_CHARS
        && params.k.bytes().all(|b| b.is_ascii_hexdigit())
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
        let task = task_key(token);
        let message = link_message(action.as_str(), expires, execution_arn, &task);
        let mac = self.kms.generate_mac(&self.key_id, &message).await?;
        Ok(LinkParams {
            a: action.as_str().to_string(),
            e: expires,
            x: execution_arn.to_string(),
            k: task,
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
        let message = link_message(&params.a, params.e, &params.x, &params.k);
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

/// `base_url?a=...&e=...&x=...&k=...&s=...`, every value URL-encoded.
pub fn link_url(base_url: &str, params: &LinkParams) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("a", &params.a)
        .append_pair("e", &params.e.to_string())
        .append_pair("x", &params.x)
        .append_pair("k", &params.k)
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

/// Reads link parameters from a query string or a form body; `None` when any is missing.
/// The approver is as typed, trimmed: [`super::check_approver`] says whether it may be used.
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
            a: pairs.get("a")?.clone(),
            e: pairs.get("e")?.parse().ok()?,
            x: pairs.get("x")?.clone(),
            k: pairs.get("k")?.clone(),
            s: pairs.get("s")?.clone(),
        })
    })();
    (params, approver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::fixtures::*;
    use crate::kms::fake::FakeKms;

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
                k: task_key("other-token"),
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
                k: String::new(),
                ..params.clone()
            },
            // A raw token where the task's name belongs.
            LinkParams {
                k: "AAAA+token/==".into(),
                ..params.clone()
            },
            LinkParams {
                k: format!("{}zz", &params.k[2..]),
                ..params.clone()
            },
            LinkParams {
                x: format!("{ARN}{}", "x".repeat(MAX_FIELD_CHARS)),
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
    async fn a_link_names_its_task_but_never_carries_the_token() {
        let token = "AAAA+to ken/&x=1==";
        let params = key()
            .sign(Action::Approve, 1_000, ARN, token)
            .await
            .unwrap();
        let url = link_url("https://abc.lambda-url.eu-west-1.on.aws/", &params);
        let query = url.split_once('?').unwrap().1;
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("t", token)
            .finish();
        assert!(
            !url.contains(token) && !url.contains(&encoded[2..]),
            "{url}"
        );
        assert_eq!(params.k, task_key(token));
        assert_ne!(task_key(token), task_key("another token"));
        // What the page reads back is what was signed.
        let (parsed, approver) = parse_params(query);
        assert_eq!(parsed, Some(params));
        assert_eq!(approver, None);
    }
}
