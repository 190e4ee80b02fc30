//! Decisions the workflow can trust. `states:SendTaskSuccess` has no resource scope, so
//! anyone allowed it for anything can answer the approval task with `{"decision":"approve"}`.
//! The approval page therefore seals each decision it sends with a MAC made by a KMS HMAC key
//! that only the approval function may use for `GenerateMac`, and the restore step checks
//! the seal (`VerifyMac`, only the restore function may) before it changes anything.

use serde_json::Value;

use crate::approval::{Action, Decision};
use crate::kms::{digest, Kms};
use crate::{CordonError, Result};

/// The key that seals decisions: approval may only `GenerateMac` with it, restore only
/// `VerifyMac`.
#[derive(Debug, Clone)]
pub struct DecisionKey<K> {
    pub kms: K,
    pub key_id: String,
}

/// `CORDON_DECISION_KEY_ID`: the key approval seals with and restore checks with.
pub fn decision_key_id_from(lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    crate::kms::key_id_from(
        lookup,
        "CORDON_DECISION_KEY_ID",
        "seals analysts' decisions (the stack's DecisionKey)",
    )
}

/// What the seal covers: the execution it was made for, and every field of the decision.
fn decision_message(execution_arn: &str, decision: &Decision) -> Vec<u8> {
    let (has_approver, approver) = match &decision.approver {
        Some(approver) => ("1", approver.as_str()),
        None => ("0", ""),
    };
    let identity = decision.identity.as_ref();
    let signed_in = identity.map(|i| (i.issuer.as_str(), i.subject.as_str()));
    let (issuer, subject) = signed_in.unwrap_or_default();
    let email = identity.and_then(|i| i.email.as_deref());
    digest(&[
        "cordon decision v3",
        execution_arn,
        decision.decision.as_str(),
        has_approver,
        approver,
        decision.via.as_str(),
        if identity.is_some() { "1" } else { "0" },
        issuer,
        subject,
        if email.is_some() { "1" } else { "0" },
        email.unwrap_or_default(),
        &decision.decided_at,
    ])
}

/// What the restore step makes of the approval task's answer.
#[derive(Debug)]
pub enum Verdict {
    /// Sealed by the approval page for this execution.
    Sealed(Decision),
    /// Not a decision Cordon made: why, for the analysts' email.
    Refused(String),
    /// KMS could not be asked: neither trusted nor refused (the step fails and is retried).
    Unverifiable(CordonError),
}

impl<K: Kms> DecisionKey<K> {
    /// `decision` with its seal for `execution_arn`.
    pub async fn seal(&self, execution_arn: &str, mut decision: Decision) -> Result<Decision> {
        decision.seal = None;
        let mac = self
            .kms
            .generate_mac(&self.key_id, &decision_message(execution_arn, &decision))
            .await?;
        decision.seal = Some(crate::approval::to_hex(&mac));
        Ok(decision)
    }

    /// Whether `answer` (the approval task's output, as the state machine passes it) is a
    /// decision the approval page sealed for `execution_arn`.
    pub async fn check(&self, execution_arn: &str, answer: &Value) -> Verdict {
        let unsealed_answer = || {
            Verdict::Refused(
                "the decision carries no seal of Cordon's approval page: it was sent to the workflow directly (states:SendTaskSuccess), not through an approval link".into(),
            )
        };
        // No seal at all is the direct SendTaskSuccess, whatever else the answer holds.
        if answer.get("seal").and_then(Value::as_str).is_none() {
            return unsealed_answer();
        }
        let decision: Decision = match serde_json::from_value(answer.clone()) {
            Ok(decision) => decision,
            Err(error) => {
                return Verdict::Refused(format!(
                    "the answer is not a decision Cordon's approval page makes ({error})"
                ))
            }
        };
        let Some(mac) = decision
            .seal
            .as_deref()
            .and_then(crate::approval::from_hex)
            .filter(|mac| mac.len() == crate::approval::MAC_BYTES)
        else {
            return unsealed_answer();
        };
        let mut unsealed = decision.clone();
        unsealed.seal = None;
        let message = decision_message(execution_arn, &unsealed);
        match self.kms.verify_mac(&self.key_id, &message, &mac).await {
            Ok(true) => Verdict::Sealed(decision),
            Ok(false) => Verdict::Refused(
                "the decision's seal does not verify for this execution: it was altered, or made for another one".into(),
            ),
            Err(error) => Verdict::Unverifiable(error),
        }
    }
}

/// Whether the restore may go on: only on an approval sealed for this execution.
pub fn approves(verdict: Verdict) -> Result<std::result::Result<Decision, String>> {
    match verdict {
        Verdict::Sealed(decision) if decision.decision == Action::Approve => Ok(Ok(decision)),
        Verdict::Sealed(_) => Ok(Err(
            "the sealed decision is to keep the instance isolated".into()
        )),
        Verdict::Refused(reason) => Ok(Err(reason)),
        Verdict::Unverifiable(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::fake::FakeKms;
    use serde_json::json;

    const EXECUTION: &str = "arn:aws:states:us-east-1:123456789012:execution:cordon-quarantine:f-1";

    fn key() -> DecisionKey<FakeKms> {
        DecisionKey {
            kms: FakeKms::with_key("decision-key", b"decision key material"),
            key_id: "decision-key".into(),
        }
    }

    fn approval(approver: Option<&str>) -> Decision {
        Decision {
            decision: Action::Approve,
            approver: approver.map(String::from),
            via: crate::approval::Via::UnauthenticatedLink,
            identity: None,
            decided_at: "2026-12-03T10:00:00Z".into(),
            seal: None,
        }
    }

    async fn verdict_of(key: &DecisionKey<FakeKms>, answer: Value) -> Verdict {
        key.check(EXECUTION, &answer).await
    }

    #[tokio::test]
    async fn a_sealed_approval_for_this_execution_restores() {
        let key = key();
        let sealed = key.seal(EXECUTION, approval(Some("Ada"))).await.unwrap();
        let answer = serde_json::to_value(&sealed).unwrap();
        let decision = approves(verdict_of(&key, answer).await).unwrap().unwrap();
        assert_eq!(decision.approver.as_deref(), Some("Ada"));
    }

    #[tokio::test]
    async fn a_decision_sent_straight_to_the_workflow_is_refused() {
        let key = key();
        for answer in [
            json!({"decision": "approve"}),
            json!({"decision": "approve", "approver": "Mallory", "decided_at": "now"}),
            json!({"decision": "approve", "approver": null, "decided_at": "now", "seal": "00"}),
            json!("approve"),
            Value::Null,
        ] {
            let refused = approves(verdict_of(&key, answer.clone()).await).unwrap();
            assert!(refused.is_err(), "{answer}");
        }
        assert!(
            key.kms.calls.lock().unwrap().is_empty(),
            "no seal, no KMS call"
        );
    }

    #[tokio::test]
    async fn any_change_to_a_sealed_decision_or_another_execution_is_refused() {
        let key = key();
        let sealed = key.seal(EXECUTION, approval(None)).await.unwrap();
        let answer = serde_json::to_value(&sealed).unwrap();
        let mut altered = Vec::new();
        for (field, value) in [
            ("approver", json!("Mallory")),
            ("approver", json!("")),
            ("via", json!("aws_iam")),
            ("decided_at", json!("2026-12-04T10:00:00Z")),
        ] {
            let mut changed = answer.clone();
            changed[field] = value;
            altered.push(changed);
        }
        for changed in altered {
            let refused = approves(verdict_of(&key, changed.clone()).await).unwrap();
            assert!(
                refused.unwrap_err().contains("does not verify"),
                "{changed}"
            );
        }
        // A reject turned into an approval, and a seal made for another execution.
        let reject = key
            .seal(
                EXECUTION,
                Decision {
                    decision: Action::Reject,
                    ..approval(None)
                },
            )
            .await
            .unwrap();
        let mut turned = serde_json::to_value(&reject).unwrap();
        turned["decision"] = json!("approve");
        assert!(approves(verdict_of(&key, turned).await).unwrap().is_err());
        let elsewhere = key
            .seal(&format!("{EXECUTION}-2"), approval(None))
            .await
            .unwrap();
        let answer = serde_json::to_value(&elsewhere).unwrap();
        assert!(approves(verdict_of(&key, answer).await).unwrap().is_err());
        // A sealed reject is kept isolated, not restored.
        let answer = serde_json::to_value(&reject).unwrap();
        assert!(approves(verdict_of(&key, answer).await).unwrap().is_err());
    }

    #[tokio::test]
    async fn a_seal_kms_cannot_check_fails_the_step_and_restores_nothing() {
        let sealed = key().seal(EXECUTION, approval(None)).await.unwrap();
        let elsewhere = DecisionKey {
            kms: FakeKms::default(),
            key_id: "decision-key".into(),
        };
        let verdict = verdict_of(&elsewhere, serde_json::to_value(&sealed).unwrap()).await;
        assert!(approves(verdict).is_err());
    }
}
