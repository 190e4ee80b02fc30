//! `cordon approve|reject --execution ARN`: the decision of an engineer with AWS credentials,
//! when the email or the page cannot be used. The approver is the caller's identity as STS
//! gives it (never typed). The decision is sealed with the stack's break-glass key, which only
//! its `BreakGlassPrincipals` may use and under which the restore step accepts only decisions
//! made this way (`via: aws_iam`), and CloudTrail names the caller for the seal
//! (`kms:GenerateMac`) and for the answer (`states:SendTaskSuccess`).

use super::{send_decision, standing, Action, Decision, SendProblem, Standing, Via};
use crate::decision::DecisionKey;
use crate::kms::Kms;
use crate::{CordonError, Result};

/// The region of a Step Functions execution ARN
/// (`arn:PARTITION:states:REGION:ACCOUNT:execution:MACHINE:NAME`), or why it is not one. The
/// decision is sent to that region whatever the shell's default is.
pub fn execution_region(execution_arn: &str) -> Result<String> {
    let parts: Vec<&str> = execution_arn.split(':').collect();
    let region_like = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if parts.len() == 8
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "states"
        && region_like(parts[3])
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5] == "execution"
        && !parts[6].is_empty()
        && !parts[7].is_empty()
    {
        Ok(parts[3].to_string())
    } else {
        Err(CordonError::InvalidInput(format!(
            "{execution_arn:?} is not a Step Functions execution ARN \
(arn:aws:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME); copy it from the approval email, \
`cordon status` or the Step Functions console"
        )))
    }
}

/// The decision `caller_arn` makes, before it is sealed.
pub fn caller_decision(action: Action, caller_arn: &str, decided_at: String) -> Decision {
    Decision {
        decision: action,
        approver: Some(caller_arn.to_string()),
        via: Via::AwsIam,
        identity: None,
        decided_at,
        round: 1,
        first_approval: None,
        seal: None,
    }
}

/// Decides for `execution_arn` as `caller_arn` if, and only if, the execution waits for a
/// decision now, sealing with `break_glass` (the stack's BreakGlassKey). Returns the decision
/// as sent; refuses (sending nothing) when the execution ended, was already decided, or is
/// not in an approval step, and under the two-person rule when the caller made the first
/// approval.
pub async fn decide_as_caller(
    sfn: &aws_sdk_sfn::Client,
    break_glass: &DecisionKey<impl Kms>,
    execution_arn: &str,
    action: Action,
    caller_arn: &str,
) -> Result<Decision> {
    let not_waiting = |why: &str| {
        CordonError::InvalidInput(format!(
            "{execution_arn} is not waiting for a decision: {why} Nothing was sent."
        ))
    };
    let unavailable = |message: String| CordonError::Unavailable {
        operation: "the execution's history".into(),
        message,
    };
    let waiting =
        match standing(sfn, execution_arn, None)
            .await
            .map_err(unavailable)?
        {
            Standing::Waiting(waiting) => waiting,
            Standing::Decided(message) => return Err(not_waiting(&message)),
            Standing::OtherTask => return Err(not_waiting(
                "it runs, but is not in an approval step (RequestApproval, RequestSecondApproval).",
            )),
        };
    let decision = caller_decision(action, caller_arn, crate::steps::now_rfc3339())
        .answering(&waiting)
        .map_err(|problem| {
            CordonError::InvalidInput(format!(
                "{execution_arn} needs two different approvers: {problem}. Nothing was sent."
            ))
        })?;
    send_decision(sfn, break_glass, execution_arn, &waiting.token, decision)
        .await
        .map_err(|problem| match problem {
            SendProblem::Unsealed(error) => CordonError::AccessDenied {
                operation: "kms:GenerateMac with the decision key".into(),
                message: format!(
                    "{error}. Only the principals in the stack's BreakGlassPrincipals may seal a \
decision with its BreakGlassKey (the key policy says so), and their own IAM policy must allow \
kms:GenerateMac on it; nothing was sent"
                ),
            },
            SendProblem::NotWaiting => not_waiting("it was answered or timed out meanwhile."),
            SendProblem::Refused(message) => unavailable(message),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_execution_arn_names_where_to_decide() {
        assert_eq!(
            execution_region(
                "arn:aws:states:eu-west-1:123456789012:execution:cordon-quarantine:f-1"
            )
            .unwrap(),
            "eu-west-1"
        );
        for bad in [
            "",
            "f-1",
            "arn:aws:states:eu-west-1:123456789012:stateMachine:cordon-quarantine",
            "arn:aws:states:eu-west-1:123456789012:execution:cordon-quarantine",
            "arn:aws:lambda:eu-west-1:123456789012:execution:cordon-quarantine:f-1",
            "arn:aws:states:EU-WEST-1:123456789012:execution:cordon-quarantine:f-1",
            "arn:aws:states:eu-west-1:1234:execution:cordon-quarantine:f-1",
            "arn:aws:states:eu-west-1:123456789012:execution:cordon-quarantine:f-1:extra",
        ] {
            let error = execution_region(bad).unwrap_err().to_string();
            assert!(
                error.contains("not a Step Functions execution ARN"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_approver_is_the_callers_identity_and_says_so() {
        let decision = caller_decision(
            Action::Approve,
            "arn:aws:sts::123456789012:assumed-role/IncidentResponder/ada",
            "2026-12-04T10:00:00.000Z".into(),
        );
        assert_eq!(
            decision.approver.as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/IncidentResponder/ada")
        );
        assert_eq!(decision.via, Via::AwsIam);
        assert_eq!(decision.seal, None);
        let recorded = serde_json::to_value(&decision).unwrap();
        assert_eq!(recorded["via"], "aws_iam");
        assert_eq!(recorded["decision"], "approve");
    }
}
