//! The Security Hub custom action "Cordon: contain": an analyst selects GuardDuty findings in
//! Security Hub and asks Cordon to contain their instances. Each selected finding starts one
//! execution of the same state machine, as if EventBridge had delivered the finding, so the
//! same policy, deduplication and approval apply.
//!
//! The finding is read from GuardDuty (`GetFindings`), not taken from the event. The event
//! carries the finding in Security Hub's format (ASFF), which has no GuardDuty finding type
//! verbatim (its `Types` rewrite it, not always reversibly) and an archive flag GuardDuty does
//! not keep up to date there; and whoever may import findings into Security Hub shapes what
//! the event says. GuardDuty's own record is what every other path acts on.

use std::future::Future;

use serde::Serialize;
use serde_json::{json, Value};

use crate::ec2::{is_account_id, is_region};
use crate::lifecycle::status::port::GuardDuty;
use crate::{CordonError, Result};

/// The event Security Hub sends for a custom action.
pub const DETAIL_TYPE: &str = "Security Hub Findings - Custom Action";

/// Security Hub sends at most 20 selected findings at once.
pub const MOST_FINDINGS: usize = 20;

/// A GuardDuty finding an analyst selected, from its ARN (the ASFF `Id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selected {
    pub arn: String,
    pub account_id: String,
    pub region: String,
    pub finding_id: String,
}

/// What became of one selected finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The finding's ASFF `Id` as the event gave it (cut to 200 characters).
    pub finding: String,
    /// `started`; `already_started` (an execution of this finding at this update runs or
    /// ended well: a second click); `refused` (not a finding Cordon may act on: retrying
    /// changes nothing); or `failed` (GuardDuty or Step Functions did not answer as asked:
    /// the event is retried, and then kept in the dead-letter queue).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What StartExecution answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new execution, or the one already running with this name and input.
    Execution(String),
    /// An execution of this name exists with another input, or has ended.
    AlreadyExists,
}

/// Step Functions: the calls the custom action makes.
pub trait Executions: Sync {
    /// `StartExecution` of Cordon's state machine, named `name`, with `input`.
    fn start(&self, name: &str, input: &str) -> impl Future<Output = Result<Started>> + Send;
    /// `DescribeExecution` of the execution named `name`: its status when it ended without
    /// containing as designed (`FAILED`, `TIMED_OUT`, `ABORTED`), else `None`.
    fn ended_badly(&self, name: &str) -> impl Future<Output = Result<Option<String>>> + Send;
}

/// How many executions one finding at one update may get: the first, and a new one after
/// each that failed, timed out or was stopped (Step Functions keeps a name for 90 days).
pub const MOST_TRIES: usize = 4;

/// Whether the event must be retried: a finding failed for a reason retrying may mend. The
/// findings already started are not started twice (their names are taken).
pub fn retry_needed(outcomes: &[Outcome]) -> Option<CordonError> {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.outcome == "failed")
        .map(|o| format!("{}: {}", o.finding, o.reason.as_deref().unwrap_or_default()))
        .collect();
    (!failed.is_empty()).then(|| {
        CordonError::InvalidConfiguration(format!(
            "{} of {} selected findings could not be started, and the event will be retried: {}",
            failed.len(),
            outcomes.len(),
            failed.join("; ")
        ))
    })
}

fn shown(text: &str) -> String {
    text.chars().take(200).collect()
}

/// `arn:<partition>:guardduty:<region>:<account>:detector/<detector>/finding/<id>`.
fn finding_arn(arn: &str) -> Option<Selected> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("guardduty"), Some(region), Some(account), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let ["detector", detector, "finding", id] = rest.split('/').collect::<Vec<_>>()[..] else {
        return None;
    };
    let word = |text: &str| {
        (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    (matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
        && is_region(region)
        && is_account_id(account)
        && word(detector)
        && word(id))
    .then(|| Selected {
        arn: arn.to_string(),
        account_id: account.to_string(),
        region: region.to_string(),
        finding_id: id.to_string(),
    })
}

/// The findings of a custom action event that Cordon may act on from `region` (its stack's),
/// each with the reason when it may not. An event that is not a custom action's is refused
/// whole.
pub fn selected(
    event: &Value,
    region: &str,
) -> Result<Vec<std::result::Result<Selected, Outcome>>> {
    if event["detail-type"] != DETAIL_TYPE || event["source"] != "aws.securityhub" {
        return Err(CordonError::InvalidInput(format!(
            "not a Security Hub custom action event (detail-type {}, source {}): the custom action rule sends only those",
            event["detail-type"], event["source"]
        )));
    }
    let Some(findings) = event["detail"]["findings"].as_array() else {
        return Err(CordonError::InvalidInput(
            "the custom action event has no detail.findings list".into(),
        ));
    };
    if findings.len() > MOST_FINDINGS {
        return Err(CordonError::InvalidInput(format!(
            "the custom action event holds {} findings; Security Hub sends at most {MOST_FINDINGS}",
            findings.len()
        )));
    }
    Ok(findings.iter().map(|f| one_selected(f, region)).collect())
}

fn one_selected(finding: &Value, region: &str) -> std::result::Result<Selected, Outcome> {
    let id = finding["Id"].as_str().unwrap_or_default();
    let refuse = |reason: String| Outcome {
        finding: shown(id),
        outcome: "refused",
        execution: None,
        reason: Some(reason),
    };
    let Some(selected) = finding_arn(id) else {
        return Err(refuse(
            "not a GuardDuty finding (its Id is no GuardDuty finding ARN): Cordon contains instances from GuardDuty's findings only".into(),
        ));
    };
    if selected.region != region {
        return Err(refuse(format!(
            "a finding of {}: Cordon's stack in {} acts on it (each region's stack contains its own region's findings; run the action there)",
            selected.region, selected.region
        )));
    }
    let product = format!(
        "arn:{}:securityhub:{}::product/aws/guardduty",
        id.split(':').nth(1).unwrap_or_default(),
        selected.region
    );
    if finding["ProductArn"] != product.as_str() {
        return Err(refuse(format!(
            "its ProductArn {} is not GuardDuty's ({product}): Cordon contains instances from GuardDuty's findings only",
            finding["ProductArn"]
        )));
    }
    if finding
        .get("AwsAccountId")
        .is_some_and(|a| a != selected.account_id.as_str())
    {
        return Err(refuse(format!(
            "its AwsAccountId {} is not the account its ARN names ({})",
            finding["AwsAccountId"], selected.account_id
        )));
    }
    Ok(selected)
}

/// The execution's name: the finding and its update, so that a second click on the same
/// finding starts nothing new, and a later update of it may start again. At most 80
/// characters of `[A-Za-z0-9-_]`, as Step Functions requires.
pub fn execution_name(finding_id: &str, updated_at: Option<&str>) -> String {
    let stamp: String = updated_at
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let name = format!("custom-action-{finding_id}-{stamp}");
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect()
}

/// The finding as EventBridge delivers a GuardDuty finding: the state machine's input.
pub fn as_event(detail: Value, account_id: &str, region: &str) -> Value {
    let id = detail["id"].as_str().unwrap_or_default().to_string();
    let time = detail["updatedAt"].clone();
    json!({
        "version": "0",
        "id": format!("cordon-custom-action-{id}"),
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": account_id,
        "time": time,
        "region": region,
        "resources": [],
        "detail": detail,
    })
}

/// Starts one execution per selected finding of `event`, from `account_id` and `region`
/// (the stack's), and says what became of each.
pub async fn start_selected(
    guard_duty: &impl GuardDuty,
    executions: &impl Executions,
    event: &Value,
    account_id: &str,
    region: &str,
) -> Result<Vec<Outcome>> {
    let selections = selected(event, region)?;
    let detector = if selections.iter().any(|s| s.is_ok()) {
        guard_duty.detector().await?.ok_or_else(|| {
            CordonError::InvalidConfiguration(format!(
                "GuardDuty has no detector in {region} of account {account_id}: the custom action needs Cordon's stack in the GuardDuty administrator account"
            ))
        })?
    } else {
        String::new()
    };
    let mut outcomes = Vec::new();
    for selection in selections {
        let selected = match selection {
            Ok(selected) => selected,
            Err(refused) => {
                outcomes.push(refused);
                continue;
            }
        };
        outcomes.push(
            start_one(
                guard_duty, executions, &detector, &selected, account_id, region,
            )
            .await,
        );
    }
    Ok(outcomes)
}

async fn start_one(
    guard_duty: &impl GuardDuty,
    executions: &impl Executions,
    detector: &str,
    selected: &Selected,
    account_id: &str,
    region: &str,
) -> Outcome {
    let outcome = |outcome, execution, reason| Outcome {
        finding: shown(&selected.arn),
        outcome,
        execution,
        reason,
    };
    let detail = match guard_duty.finding(detector, &selected.finding_id).await {
        Ok(Some(detail)) => detail,
        Ok(None) => {
            return outcome(
                "refused",
                None,
                Some(format!(
                    "GuardDuty holds no finding {} for this account's detector (is this account the GuardDuty administrator of {}?)",
                    selected.finding_id, selected.account_id
                )),
            )
        }
        Err(error) => return outcome("failed", None, Some(error.to_string())),
    };
    // GuardDuty's answer must be the finding asked for, of the account its ARN names.
    if detail["id"] != selected.finding_id.as_str()
        || detail["accountId"] != selected.account_id.as_str()
    {
        return outcome(
            "refused",
            None,
            Some("GuardDuty's finding is not the one selected (its id or account differ)".into()),
        );
    }
    let first = execution_name(&selected.finding_id, detail["updatedAt"].as_str());
    let input = as_event(detail, account_id, region).to_string();
    let mut ended = Vec::new();
    for attempt in 1..=MOST_TRIES {
        let name = match attempt {
            1 => first.clone(),
            n => format!("{}-r{n}", &first[..first.len().min(76)]),
        };
        match executions.start(&name, &input).await {
            Ok(Started::Execution(arn)) => return outcome("started", Some(arn), None),
            Ok(Started::AlreadyExists) => match executions.ended_badly(&name).await {
                Ok(Some(status)) => ended.push(format!("{name} {status}")),
                Ok(None) => {
                    return outcome(
                        "already_started",
                        None,
                        Some(format!(
                            "execution {name} runs or ended as designed: this finding, at this update, is already with Cordon"
                        )),
                    )
                }
                Err(error) => return outcome("failed", None, Some(error.to_string())),
            },
            Err(error) => return outcome("failed", None, Some(error.to_string())),
        }
    }
    outcome(
        "refused",
        None,
        Some(format!(
            "{MOST_TRIES} executions of this finding at this update ended without containing ({}): read why in the Step Functions console before trying again",
            ended.join(", ")
        )),
    )
}

/// The stack's account and region, from its state machine's ARN
/// (`arn:<partition>:states:<region>:<account>:stateMachine:<name>`).
pub fn stack_of(state_machine_arn: &str) -> Result<(String, String)> {
    let parts: Vec<&str> = state_machine_arn.split(':').collect();
    match parts[..] {
        ["arn", _, "states", region, account, "stateMachine", name]
            if is_region(region) && is_account_id(account) && !name.is_empty() =>
        {
            Ok((account.to_string(), region.to_string()))
        }
        _ => Err(CordonError::InvalidConfiguration(format!(
            "CORDON_STATE_MACHINE_ARN {state_machine_arn:?} is not a state machine's ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME): set it to the stack's QuarantineStateMachine"
        ))),
    }
}

/// Step Functions through aws-sdk-sfn, for Cordon's state machine.
#[derive(Debug, Clone)]
pub struct AwsExecutions {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
}

impl AwsExecutions {
    pub fn new(aws: &crate::aws::AwsContext, state_machine_arn: String) -> Self {
        AwsExecutions {
            client: aws_sdk_sfn::Client::new(aws.sdk_config()),
            state_machine_arn,
        }
    }
}

impl AwsExecutions {
    /// The ARN of this state machine's execution named `name`.
    fn execution_arn(&self, name: &str) -> String {
        format!(
            "{}:{name}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }
}

impl Executions for AwsExecutions {
    async fn ended_badly(&self, name: &str) -> Result<Option<String>> {
        let described = self
            .client
            .describe_execution()
            .execution_arn(self.execution_arn(name))
            .send()
            .await
            .map_err(|e| crate::aws::sdk_error("Step Functions DescribeExecution", name, e))?;
        let status = described.status().as_str();
        Ok(matches!(status, "FAILED" | "TIMED_OUT" | "ABORTED").then(|| status.to_string()))
    }

    async fn start(&self, name: &str, input: &str) -> Result<Started> {
        use aws_sdk_sfn::operation::start_execution::StartExecutionError;
        match self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
        {
            Ok(started) => Ok(Started::Execution(started.execution_arn().to_string())),
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(StartExecutionError::ExecutionAlreadyExists(_))
                ) =>
            {
                Ok(Started::AlreadyExists)
            }
            Err(error) => Err(crate::aws::sdk_error(
                "Step Functions StartExecution",
                name,
                error,
            )),
        }
    }
}

#[cfg(test)]
mod tests;
