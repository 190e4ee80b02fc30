//! Decisions the workflow can trust. `states:SendTaskSuccess` has no resource scope, so
//! anyone allowed it for anything can answer the approval task with `{"decision":"approve"}`.
//! A decision is therefore sealed with a MAC made by a KMS HMAC key, and the restore step
//! checks the seal (`VerifyMac`, only the restore function may) before it changes anything.
//!
//! Two keys seal, one per way of deciding, so that neither can pass for the other:
//! - the approval page's `DecisionKey` (only the approval function may `GenerateMac`) seals
//!   decisions made through a link, signed in or not;
//! - the `BreakGlassKey` (only the stack's `BreakGlassPrincipals` may `GenerateMac`) seals
//!   `cordon approve|reject`, whose approver is the caller's AWS identity.
//!
//! The restore step picks the key by how the decision says it was made
//! ([`crate::approval::Via`]): a break-glass principal can seal only `aws_iam` decisions,
//! never one that claims a signed-in analyst, and the page never an `aws_iam` one.
//!
//! Under the two-person rule (`ApprovalsRequired: 2`) the second decision carries the first
//! approval as the workflow received it; each is sealed on its own, and the restore step
//! checks both seals and that two different people approved ([`same_person`]).

use serde_json::Value;

use crate::approval::{Action, Decision, Via};
use crate::kms::{digest, Kms};
use crate::{CordonError, Result};

/// A key that seals decisions: one principal may `GenerateMac` with it, the restore function
/// only `VerifyMac`.
#[derive(Debug, Clone)]
pub struct DecisionKey<K> {
    pub kms: K,
    pub key_id: String,
}

/// `CORDON_DECISION_KEY_ID`: the key the approval page seals with and restore checks with.
pub fn decision_key_id_from(lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    crate::kms::key_id_from(
        lookup,
        "CORDON_DECISION_KEY_ID",
        "seals analysts' decisions (the stack's DecisionKey)",
    )
}

/// `CORDON_BREAK_GLASS_KEY_ID`: the key `cordon approve|reject` seals with, when the stack
/// names break-glass principals. Unset: no break-glass decision is accepted.
pub fn break_glass_key_id_from(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<String>> {
    if lookup("CORDON_BREAK_GLASS_KEY_ID").is_none_or(|v| v.trim().is_empty()) {
        return Ok(None);
    }
    crate::kms::key_id_from(
        lookup,
        "CORDON_BREAK_GLASS_KEY_ID",
        "seals break-glass decisions (the stack's BreakGlassKey)",
    )
    .map(Some)
}

/// `CORDON_APPROVALS_REQUIRED`: how many different people must approve a restore, 1 or 2
/// (the two-person rule). Unset: 1.
pub fn approvals_required_from(lookup: impl Fn(&str) -> Option<String>) -> Result<u8> {
    match lookup("CORDON_APPROVALS_REQUIRED").as_deref().map(str::trim) {
        None | Some("") | Some("1") => Ok(1),
        Some("2") => Ok(2),
        Some(other) => Err(CordonError::InvalidConfiguration(format!(
            "CORDON_APPROVALS_REQUIRED is {other:?}: it must be 1, or 2 for the two-person rule (two different approvers restore)"
        ))),
    }
}

/// What a seal covers: the execution it was made for, and every field of the decision,
/// including which approval it is and the seal of the first approval it carries.
fn decision_message(execution_arn: &str, decision: &Decision) -> Vec<u8> {
    let (has_approver, approver) = match &decision.approver {
        Some(approver) => ("1", approver.as_str()),
        None => ("0", ""),
    };
    let identity = decision.identity.as_ref();
    let signed_in = identity.map(|i| (i.issuer.as_str(), i.subject.as_str()));
    let (issuer, subject) = signed_in.unwrap_or_default();
    let email = identity.and_then(|i| i.email.as_deref());
    let first_seal = decision
        .first_approval
        .as_ref()
        .map(|first| first.seal.as_deref().unwrap_or_default());
    digest(&[
        "cordon decision v4",
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
        &decision.round.to_string(),
        if first_seal.is_some() { "1" } else { "0" },
        first_seal.unwrap_or_default(),
    ])
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

    /// Whether KMS verifies `decision`'s seal as this key's for `execution_arn`.
    async fn verifies(&self, execution_arn: &str, decision: &Decision) -> Result<bool> {
        let Some(mac) = decision
            .seal
            .as_deref()
            .and_then(crate::approval::from_hex)
            .filter(|mac| mac.len() == crate::approval::MAC_BYTES)
        else {
            return Ok(false);
        };
        let mut unsealed = decision.clone();
        unsealed.seal = None;
        let message = decision_message(execution_arn, &unsealed);
        self.kms.verify_mac(&self.key_id, &message, &mac).await
    }
}

/// What the restore step makes of the approval task's answer.
#[derive(Debug)]
pub enum Verdict {
    /// Sealed for this execution, by the key of the way it says it was made.
    Sealed(Decision),
    /// Not a decision Cordon made: why, for the analysts' email.
    Refused(String),
    /// KMS could not be asked: neither trusted nor refused (the step fails and is retried).
    Unverifiable(CordonError),
}

/// What the workflow's restore step accepts as an approval: a decision sealed by the key of
/// the way it was made, and as many different approvers as the stack requires.
#[derive(Debug, Clone)]
pub struct RestoreGate<K> {
    /// The approval page's key (`DecisionKey`).
    pub page: DecisionKey<K>,
    /// `cordon approve|reject`'s key (`BreakGlassKey`); `None`: no break glass in this stack.
    pub break_glass: Option<DecisionKey<K>>,
    /// 1, or 2 under the two-person rule.
    pub approvals_required: u8,
}

impl<K: Clone> RestoreGate<K> {
    /// The restore function's gate, from its environment: `CORDON_DECISION_KEY_ID`,
    /// `CORDON_BREAK_GLASS_KEY_ID` (unset: no break glass) and `CORDON_APPROVALS_REQUIRED`.
    /// Both keys are used through `kms`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, kms: K) -> Result<Self> {
        Ok(RestoreGate {
            page: DecisionKey {
                kms: kms.clone(),
                key_id: decision_key_id_from(&lookup)?,
            },
            break_glass: break_glass_key_id_from(&lookup)?.map(|key_id| DecisionKey {
                kms: kms.clone(),
                key_id,
            }),
            approvals_required: approvals_required_from(&lookup)?,
        })
    }
}

impl<K: Kms> RestoreGate<K> {
    /// The key that must have sealed a decision made `via`, or why there is none.
    fn key_for(&self, via: Via) -> std::result::Result<&DecisionKey<K>, String> {
        match via {
            Via::AwsIam => self.break_glass.as_ref().ok_or_else(|| {
                "the decision says it was made with `cordon approve|reject` (AWS IAM), but this stack names no break-glass principals, so no such decision is accepted".to_string()
            }),
            Via::UnauthenticatedLink | Via::SignedIn => Ok(&self.page),
        }
    }

    /// Whether one decision is sealed for `execution_arn` by the key of its `via`.
    async fn check_seal(&self, execution_arn: &str, decision: &Decision) -> Verdict {
        let key = match self.key_for(decision.via) {
            Ok(key) => key,
            Err(reason) => return Verdict::Refused(reason),
        };
        match key.verifies(execution_arn, decision).await {
            Ok(true) => Verdict::Sealed(decision.clone()),
            Ok(false) => Verdict::Refused(format!(
                "the decision's seal does not verify for this execution with the {} key: it was altered, made for another execution, or sealed by someone who may not decide that way",
                match decision.via {
                    Via::AwsIam => "break-glass",
                    _ => "approval page's",
                }
            )),
            Err(error) => Verdict::Unverifiable(error),
        }
    }

    /// Whether `answer` (the approval task's output, as the state machine passes it) is a
    /// decision sealed for `execution_arn`, with the first approval it carries sealed too.
    pub async fn check(&self, execution_arn: &str, answer: &Value) -> Verdict {
        let unsealed_answer = || {
            Verdict::Refused(
                "the decision carries no seal of Cordon's: it was sent to the workflow directly (states:SendTaskSuccess), not through an approval link or `cordon approve`".into(),
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
                    "the answer is not a decision Cordon makes ({error})"
                ))
            }
        };
        if let Some(first) = &decision.first_approval {
            if decision.round != 2 || first.round != 1 || first.first_approval.is_some() {
                return Verdict::Refused(
                    "the decision's approvals are not in order (a second approval carries exactly one first approval)".into(),
                );
            }
            match self.check_seal(execution_arn, first).await {
                Verdict::Sealed(_) => {}
                Verdict::Refused(reason) => {
                    return Verdict::Refused(format!("the first approval it carries: {reason}"))
                }
                unverifiable => return unverifiable,
            }
        }
        self.check_seal(execution_arn, &decision).await
    }

    /// Whether the restore may go on: only on an approval sealed for this execution, by as
    /// many different people as the stack requires, and at least `at_least` (what the
    /// execution itself was started with: lowering the stack's rule while an execution waits
    /// for its second approval does not let its first approval alone restore).
    /// `Ok(Err(reason))`: kept isolated.
    pub async fn approves(
        &self,
        execution_arn: &str,
        answer: &Value,
        at_least: u8,
    ) -> Result<std::result::Result<Decision, String>> {
        let decision = match self.check(execution_arn, answer).await {
            Verdict::Sealed(decision) => decision,
            Verdict::Refused(reason) => return Ok(Err(reason)),
            Verdict::Unverifiable(error) => return Err(error),
        };
        let required = self.approvals_required.max(at_least);
        Ok(enough_approvals(&decision, required).map(|()| decision))
    }
}

/// Whether a sealed decision restores under a rule of `required` approvers: it approves, and
/// under the two-person rule it is the second approval, of a verified person other than the
/// first approver's.
pub fn enough_approvals(decision: &Decision, required: u8) -> std::result::Result<(), String> {
    if decision.decision != Action::Approve {
        return Err("the sealed decision is to keep the instance isolated".into());
    }
    if required < 2 {
        return Ok(());
    }
    let Some(first) = decision.first_approval.as_deref() else {
        return Err("the stack requires two different approvers (ApprovalsRequired: 2), and this decision is the only approval".into());
    };
    if first.decision != Action::Approve {
        return Err("the first decision it carries is not an approval".into());
    }
    second_approver_problem(first, decision).map_or(Ok(()), Err)
}

/// Why `second` cannot be the second approval after `first` under the two-person rule, if it
/// cannot: each approver must be a verified identity (signed in, or an AWS principal), the two
/// must not be the same person, and at most one may be a break-glass decision: a break-glass
/// seal covers whatever approver its holder writes (and a role's session name is the
/// caller's to choose), so two of them could be one person; a signed-in identity is the
/// provider's word.
pub fn second_approver_problem(first: &Decision, second: &Decision) -> Option<String> {
    if [first, second]
        .iter()
        .any(|d| d.via == Via::UnauthenticatedLink)
    {
        return Some("the two-person rule counts only verified approvers (signed in, or an AWS identity with `cordon approve`), and an unauthenticated link names no one".into());
    }
    if same_person(first, second) {
        return Some(format!(
            "{} made the first approval; a second, different person must approve",
            first.approver.as_deref().unwrap_or("the same approver")
        ));
    }
    if first.via == Via::AwsIam && second.via == Via::AwsIam {
        return Some("the first approval was a break-glass one (`cordon approve`), and at most one of the two may be: a break-glass seal names whoever its holder writes, so the second approver must sign in on the approval page".into());
    }
    None
}

/// The names a decision gives its approver, lower-cased: a signed-in analyst's issuer and
/// subject, and verified email; an AWS principal's ARN and, for an assumed role, its session
/// name (IAM Identity Center names a session after the user, e.g. their email).
fn names_of(decision: &Decision) -> Vec<String> {
    let mut names = Vec::new();
    match decision.via {
        Via::SignedIn => {
            if let Some(identity) = &decision.identity {
                names.push(format!("oidc {} {}", identity.issuer, identity.subject));
                names.extend(identity.email.clone());
            }
        }
        Via::AwsIam => {
            if let Some(arn) = &decision.approver {
                names.push(arn.clone());
                if arn.contains(":assumed-role/") {
                    names.extend(arn.rsplit('/').next().map(String::from));
                }
            }
        }
        Via::UnauthenticatedLink => names.extend(decision.approver.clone()),
    }
    names
        .into_iter()
        .map(|n| n.trim().to_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Whether two decisions name the same person: any name in common (case aside), or no name at
/// all on either side, which cannot be told apart.
pub fn same_person(a: &Decision, b: &Decision) -> bool {
    let (a, b) = (names_of(a), names_of(b));
    a.is_empty() || b.is_empty() || a.iter().any(|name| b.contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::Identity;
    use crate::kms::fake::FakeKms;
    use serde_json::json;

    const EXECUTION: &str = "arn:aws:states:us-east-1:123456789012:execution:cordon-quarantine:f-1";
    const ISSUER: &str = "https://login.example.com";

    fn page_key() -> DecisionKey<FakeKms> {
        DecisionKey {
            kms: FakeKms::with_key("decision-key", b"decision key material"),
            key_id: "decision-key".into(),
        }
    }

    fn break_glass_key() -> DecisionKey<FakeKms> {
        DecisionKey {
            kms: FakeKms::with_key("break-glass-key", b"break-glass key material"),
            key_id: "break-glass-key".into(),
        }
    }

    fn gate(approvals_required: u8) -> RestoreGate<FakeKms> {
        RestoreGate {
            page: page_key(),
            break_glass: Some(break_glass_key()),
            approvals_required,
        }
    }

    fn approval(approver: Option<&str>) -> Decision {
        Decision {
            decision: Action::Approve,
            approver: approver.map(String::from),
            via: Via::UnauthenticatedLink,
            identity: None,
            decided_at: "2026-12-03T10:00:00Z".into(),
            round: 1,
            first_approval: None,
            seal: None,
        }
    }

    fn signed_in(email: &str) -> Decision {
        Decision {
            approver: Some(email.into()),
            via: Via::SignedIn,
            identity: Some(Identity {
                issuer: ISSUER.into(),
                subject: format!("sub-{email}"),
                email: Some(email.into()),
                groups: Vec::new(),
            }),
            ..approval(None)
        }
    }

    fn by_iam(arn: &str) -> Decision {
        Decision {
            approver: Some(arn.into()),
            via: Via::AwsIam,
            ..approval(None)
        }
    }

    /// `second` as the second approval after `first`, both sealed as they would be.
    async fn two(gate: &RestoreGate<FakeKms>, first: Decision, second: Decision) -> Value {
        let key = |d: &Decision| match d.via {
            Via::AwsIam => gate.break_glass.as_ref().unwrap(),
            _ => &gate.page,
        };
        let first = key(&first).seal(EXECUTION, first.clone()).await.unwrap();
        let second = Decision {
            round: 2,
            first_approval: Some(Box::new(first)),
            ..second
        };
        let sealed = key(&second).seal(EXECUTION, second.clone()).await.unwrap();
        serde_json::to_value(sealed).unwrap()
    }

    async fn restores(
        gate: &RestoreGate<FakeKms>,
        answer: Value,
    ) -> std::result::Result<Decision, String> {
        gate.approves(EXECUTION, &answer, 1).await.unwrap()
    }

    #[tokio::test]
    async fn a_sealed_approval_for_this_execution_restores() {
        let gate = gate(1);
        let sealed = gate
            .page
            .seal(EXECUTION, approval(Some("Ada")))
            .await
            .unwrap();
        let answer = serde_json::to_value(&sealed).unwrap();
        let decision = restores(&gate, answer).await.unwrap();
        assert_eq!(decision.approver.as_deref(), Some("Ada"));
    }

    #[tokio::test]
    async fn a_decision_sent_straight_to_the_workflow_is_refused() {
        let gate = gate(1);
        for answer in [
            json!({"decision": "approve"}),
            json!({"decision": "approve", "approver": "Mallory", "decided_at": "now"}),
            json!({"decision": "approve", "approver": null, "decided_at": "now", "seal": "00"}),
            json!("approve"),
            Value::Null,
        ] {
            assert!(restores(&gate, answer.clone()).await.is_err(), "{answer}");
        }
        assert!(
            gate.page.kms.calls.lock().unwrap().is_empty(),
            "no seal, no KMS call"
        );
    }

    #[tokio::test]
    async fn any_change_to_a_sealed_decision_or_another_execution_is_refused() {
        let gate = gate(1);
        let sealed = gate.page.seal(EXECUTION, approval(None)).await.unwrap();
        let answer = serde_json::to_value(&sealed).unwrap();
        for (field, value) in [
            ("approver", json!("Mallory")),
            ("approver", json!("")),
            ("via", json!("signed_in")),
            ("decided_at", json!("2026-12-04T10:00:00Z")),
            ("round", json!(2)),
        ] {
            let mut changed = answer.clone();
            changed[field] = value;
            let refused = restores(&gate, changed.clone()).await.unwrap_err();
            assert!(refused.contains("does not verify"), "{changed}: {refused}");
        }
        // A reject turned into an approval, and a seal made for another execution.
        let reject = gate
            .page
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
        assert!(restores(&gate, turned).await.is_err());
        let elsewhere = gate
            .page
            .seal(&format!("{EXECUTION}-2"), approval(None))
            .await
            .unwrap();
        assert!(restores(&gate, serde_json::to_value(&elsewhere).unwrap())
            .await
            .is_err());
        // A sealed reject is kept isolated, not restored.
        let refused = restores(&gate, serde_json::to_value(&reject).unwrap())
            .await
            .unwrap_err();
        assert!(refused.contains("keep the instance isolated"), "{refused}");
    }

    #[tokio::test]
    async fn each_way_of_deciding_is_trusted_only_under_its_own_key() {
        let gate = gate(1);
        let caller = "arn:aws:sts::123456789012:assumed-role/IncidentResponder/ada";
        // Break glass seals AWS IAM decisions, and they restore.
        let glass = gate.break_glass.as_ref().unwrap();
        let sealed = glass.seal(EXECUTION, by_iam(caller)).await.unwrap();
        assert!(restores(&gate, serde_json::to_value(&sealed).unwrap())
            .await
            .is_ok());
        // A break-glass principal cannot pass a decision off as a signed-in analyst's or as
        // the page's, and the page cannot pass one off as an AWS identity's.
        for forged in [signed_in("ciso@example.com"), approval(Some("Ada"))] {
            let sealed = glass.seal(EXECUTION, forged.clone()).await.unwrap();
            let refused = restores(&gate, serde_json::to_value(&sealed).unwrap())
                .await
                .unwrap_err();
            assert!(refused.contains("approval page's key"), "{refused}");
        }
        let sealed = gate.page.seal(EXECUTION, by_iam(caller)).await.unwrap();
        let refused = restores(&gate, serde_json::to_value(&sealed).unwrap())
            .await
            .unwrap_err();
        assert!(refused.contains("break-glass key"), "{refused}");
        // Without break glass in the stack, no AWS IAM decision is taken at all.
        let no_glass = RestoreGate {
            page: page_key(),
            break_glass: None,
            approvals_required: 1,
        };
        let sealed = glass.seal(EXECUTION, by_iam(caller)).await.unwrap();
        let refused = restores(&no_glass, serde_json::to_value(&sealed).unwrap())
            .await
            .unwrap_err();
        assert!(
            refused.contains("names no break-glass principals"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn two_person_rule_restores_only_on_two_different_verified_approvers() {
        let gate = gate(2);
        // One approval alone, however verified, is not enough.
        let one = gate
            .page
            .seal(EXECUTION, signed_in("ada@example.com"))
            .await
            .unwrap();
        let refused = restores(&gate, serde_json::to_value(&one).unwrap())
            .await
            .unwrap_err();
        assert!(refused.contains("two different approvers"), "{refused}");
        // Two different people restore, signed in or by break glass.
        let ada_then_grace = two(
            &gate,
            signed_in("ada@example.com"),
            signed_in("grace@example.com"),
        )
        .await;
        let decision = restores(&gate, ada_then_grace.clone()).await.unwrap();
        assert_eq!(decision.approver.as_deref(), Some("grace@example.com"));
        assert_eq!(
            decision.first_approval.unwrap().approver.as_deref(),
            Some("ada@example.com")
        );
        let mixed = two(
            &gate,
            signed_in("ada@example.com"),
            by_iam("arn:aws:sts::123456789012:assumed-role/IncidentResponder/grace"),
        )
        .await;
        assert!(restores(&gate, mixed).await.is_ok());
        // The same person twice: the same sign-in, the same email at another subject, or an
        // IAM Identity Center session named after the signed-in analyst.
        for (first, second) in [
            (signed_in("ada@example.com"), signed_in("ada@example.com")),
            (
                signed_in("ada@example.com"),
                Decision {
                    identity: Some(Identity {
                        subject: "another-subject".into(),
                        ..signed_in("ADA@example.com").identity.unwrap()
                    }),
                    ..signed_in("ADA@example.com")
                },
            ),
            (
                signed_in("ada@example.com"),
                by_iam("arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Responder_0123/ada@example.com"),
            ),
            (
                by_iam("arn:aws:sts::123456789012:assumed-role/IncidentResponder/ada"),
                by_iam("arn:aws:sts::123456789012:assumed-role/IncidentResponder/ada"),
            ),
        ] {
            let answer = two(&gate, first, second).await;
            let refused = restores(&gate, answer).await.unwrap_err();
            assert!(refused.contains("a second, different person"), "{refused}");
        }
        // Two break-glass approvals, however different their names: a break-glass seal names
        // whoever its holder writes, so one holder could make both.
        let answer = two(
            &gate,
            by_iam("arn:aws:sts::123456789012:assumed-role/IncidentResponder/ada"),
            by_iam("arn:aws:sts::123456789012:assumed-role/IncidentResponder/grace"),
        )
        .await;
        let refused = restores(&gate, answer).await.unwrap_err();
        assert!(
            refused.contains("at most one of the two may be"),
            "{refused}"
        );
        // Links without sign-in name no one: they never count toward two.
        let answer = two(&gate, approval(Some("Ada")), approval(Some("Grace"))).await;
        let refused = restores(&gate, answer).await.unwrap_err();
        assert!(refused.contains("only verified approvers"), "{refused}");
        // A first approval that is a reject, or whose seal was altered, or that was replaced
        // after the second was sealed.
        let answer = two(
            &gate,
            Decision {
                decision: Action::Reject,
                ..signed_in("ada@example.com")
            },
            signed_in("grace@example.com"),
        )
        .await;
        assert!(restores(&gate, answer).await.is_err());
        let mut altered = ada_then_grace.clone();
        altered["first_approval"]["approver"] = json!("bob@example.com");
        let refused = restores(&gate, altered).await.unwrap_err();
        assert!(
            refused.contains("the first approval it carries"),
            "{refused}"
        );
        let other_first = gate
            .page
            .seal(EXECUTION, signed_in("bob@example.com"))
            .await
            .unwrap();
        let mut swapped = ada_then_grace.clone();
        swapped["first_approval"] = serde_json::to_value(&other_first).unwrap();
        let refused = restores(&gate, swapped).await.unwrap_err();
        assert!(refused.contains("does not verify"), "{refused}");
        // Under a rule of one, the second approval of a two-person run restores too.
        assert!(restores(&self::gate(1), ada_then_grace).await.is_ok());
    }

    #[tokio::test]
    async fn a_seal_kms_cannot_check_fails_the_step_and_restores_nothing() {
        let sealed = page_key().seal(EXECUTION, approval(None)).await.unwrap();
        let elsewhere = RestoreGate {
            page: DecisionKey {
                kms: FakeKms::default(),
                key_id: "decision-key".into(),
            },
            break_glass: None,
            approvals_required: 1,
        };
        let answer = serde_json::to_value(&sealed).unwrap();
        assert!(elsewhere.approves(EXECUTION, &answer, 1).await.is_err());
    }

    #[test]
    fn settings_are_read_with_clear_errors() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(approvals_required_from(env(&[])).unwrap(), 1);
        assert_eq!(
            approvals_required_from(env(&[("CORDON_APPROVALS_REQUIRED", "2")])).unwrap(),
            2
        );
        for bad in ["0", "3", "two", "-1"] {
            let lookup =
                move |name: &str| (name == "CORDON_APPROVALS_REQUIRED").then(|| bad.to_string());
            let error = approvals_required_from(lookup).unwrap_err().to_string();
            assert!(error.contains("must be 1, or 2"), "{error}");
        }
        assert_eq!(break_glass_key_id_from(env(&[])).unwrap(), None);
        assert_eq!(
            break_glass_key_id_from(env(&[(
                "CORDON_BREAK_GLASS_KEY_ID",
                "alias/cordon-break-glass"
            )]))
            .unwrap()
            .as_deref(),
            Some("alias/cordon-break-glass")
        );
        assert!(
            break_glass_key_id_from(env(&[("CORDON_BREAK_GLASS_KEY_ID", "not a key")])).is_err()
        );
    }
}
