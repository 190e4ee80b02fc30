//! The workflow's steps as functions: each Lambda binary is a thin wrapper around one of these,
//! and the command line calls the same ones, so a step behaves the same wherever it runs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capture::{capture_seeing, CaptureOutput, CaptureStatus, FindingSummary, Pace};
use crate::config::{Config, Mode};
use crate::decision::RestoreGate;
use crate::ec2::{DenyEntry, Ec2Provider, Target};
use crate::error::{CordonError, Result, StepError};
use crate::finding::{findings_in_value, Finding, ParsedFinding};
use crate::isolate::{isolate_seen, plan_isolation, retryable, IsolationReport};
use crate::kms::Kms;
use crate::measures::auto_scaling::{AutoScalingProvider, Whose};
use crate::measures::credentials::{self, IamProvider};
use crate::measures::load_balancers::LoadBalancingProvider;
use crate::nacl::{block, plan_block, NaclReport};
use crate::policy::Verdict;
use crate::record::CapturedState;
use crate::report_only::ReadOnly;
use crate::restore::{restore, RecordSource, RestoreReport};
use crate::seal::Seal;

/// Now, as the record writes it.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Now, in Unix seconds (link expiry).
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Reads the one finding an event holds; anything else is invalid input.
pub fn single_finding(event: &Value) -> Result<crate::finding::Finding> {
    let mut parsed = findings_in_value(event);
    if parsed.len() != 1 {
        return Err(CordonError::InvalidInput(format!(
            "expected one GuardDuty finding, found {}; start one execution per finding",
            parsed.len()
        )));
    }
    match parsed.remove(0) {
        ParsedFinding::Valid(finding) => Ok(*finding),
        ParsedFinding::Invalid { reason, .. } => Err(CordonError::InvalidInput(reason)),
    }
}

/// Seven days: how long a quarantine waits for a decision unless configured otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT_SECONDS: u64 = 7 * 24 * 3600;

/// What the state machine hands capture.
#[derive(Debug, PartialEq)]
pub struct CaptureInput<'a> {
    pub event: &'a Value,
    pub approval_timeout_seconds: u64,
    /// How many different people must approve a restore (1, or 2: the two-person rule).
    pub approvals_required: u8,
    /// The execution's id (`$$.Execution.Id`): it claims the instance. None for a bare event
    /// (`cordon isolate`), which claims nothing.
    pub execution: Option<&'a str>,
    /// When the execution started (`$$.Execution.StartTime`), for the time-to-isolation
    /// metric only: absent or unreadable, that metric is not emitted.
    pub started_at: Option<&'a str>,
    /// How often Step Functions has retried the step (`$$.State.RetryCount`), which sets
    /// capture's [`Pace`]; None when the caller does not say.
    pub retry_count: Option<u32>,
}

/// The state machine hands capture `{"event": ..., "execution": ...,
/// "approval_timeout_seconds": "...", "approvals_required": "..."}` (definition
/// substitutions, so strings; a definition from before the two-person rule has no
/// `approvals_required`: one approval); a bare event is accepted too.
pub fn unwrap_capture_input(input: &Value) -> Result<CaptureInput<'_>> {
    let (Some(event), Some(timeout)) = (input.get("event"), input.get("approval_timeout_seconds"))
    else {
        return Ok(CaptureInput {
            event: input,
            approval_timeout_seconds: DEFAULT_APPROVAL_TIMEOUT_SECONDS,
            approvals_required: 1,
            execution: None,
            started_at: None,
            retry_count: None,
        });
    };
    let execution = match input.get("execution") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if !id.trim().is_empty() && id.len() <= 256 => Some(id.as_str()),
        Some(other) => {
            return Err(CordonError::InvalidInput(format!(
                "execution must be the execution's id ($$.Execution.Id, at most 256 characters), not {other}"
            )))
        }
    };
    let seconds = match timeout {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        _ => None,
    }
    .filter(|s| *s > 0)
    .ok_or_else(|| {
        CordonError::InvalidConfiguration(format!(
            "approval_timeout_seconds {timeout} must be a whole number of seconds above 0"
        ))
    })?;
    let approvals_required = match input.get("approvals_required") {
        None | Some(Value::Null) => Some(1),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(text)) => text.trim().parse::<u64>().ok(),
        Some(_) => None,
    }
    .filter(|n| (1..=2).contains(n))
    .ok_or_else(|| {
        CordonError::InvalidConfiguration(format!(
            "approvals_required {} must be 1, or 2 for the two-person rule",
            input["approvals_required"]
        ))
    })? as u8;
    let started_at = input
        .get("started_at")
        .and_then(Value::as_str)
        .filter(|at| chrono::DateTime::parse_from_rfc3339(at).is_ok());
    // Anything but a count is taken as no count: the pace is the only thing it decides.
    let retry_count = input
        .get("retry_count")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok());
    Ok(CaptureInput {
        event,
        approval_timeout_seconds: seconds,
        approvals_required,
        execution,
        started_at,
        retry_count,
    })
}

/// capture-state: decide by policy, then record the instance's state.
/// `ec2_in` gives EC2 in the finding's account and region; `iam_in` IAM there, to check that
/// credentials a finding saw used elsewhere are the instance's before containing it.
pub async fn capture_step(
    ec2_in: &impl Ec2Provider,
    iam_in: &impl IamProvider,
    config: &Config,
    seal: &impl Seal,
    input: &Value,
) -> Result<CaptureOutput> {
    let CaptureInput {
        event,
        approval_timeout_seconds: approval_timeout,
        approvals_required,
        execution,
        started_at,
        retry_count,
    } = unwrap_capture_input(input)?;
    let finding = single_finding(event)?;
    let summary = FindingSummary::from(&finding);
    let decision = config.policy.decide(&finding);
    let mut output = if decision.verdict == Verdict::Skip {
        CaptureOutput::skipped(finding.instance_id.clone(), Some(summary), decision.reason)
    } else {
        capture_instance(
            ec2_in,
            iam_in,
            config,
            seal,
            &finding,
            summary,
            execution,
            retry_count,
        )
        .await?
    };
    output.approval_timeout_seconds = Some(approval_timeout);
    output.approvals_required = Some(approvals_required);
    output.execution_started_at = started_at.map(String::from);
    Ok(output)
}

/// The capture of the instance of a finding the policy quarantines.
// Each argument is a port, a key or a fact of this attempt: bundling them would hide which.
#[allow(clippy::too_many_arguments)]
async fn capture_instance(
    ec2_in: &impl Ec2Provider,
    iam_in: &impl IamProvider,
    config: &Config,
    seal: &impl Seal,
    finding: &Finding,
    summary: FindingSummary,
    execution: Option<&str>,
    retry_count: Option<u32>,
) -> Result<CaptureOutput> {
    let instance_id = finding
        .instance_id
        .clone()
        .expect("the policy quarantines only findings with an instance id");
    let target = Target {
        account_id: finding.account_id.clone(),
        region: finding.region.clone(),
    };
    // A member role that cannot be assumed fails the execution, loudly: STS says the same
    // AccessDenied for an account never enrolled and for an enrolled one whose role was
    // deleted or whose trust was changed (by whoever holds the compromised instance's
    // account, say). Accounts never enrolled are kept out by the scope (`Accounts`).
    let ec2 = ec2_in.ec2_for(&target).await?;
    // Stolen credentials: GuardDuty raises the finding only for credentials EC2 issued
    // to an instance, so the session's name is EC2's, and the instance is contained
    // whatever its profile holds now (whoever holds the credentials may have removed or
    // swapped it to escape); a profile that is not the credentials' is said.
    let moved = match &finding.credentials_of {
        Some(role) => {
            let iam = iam_in.iam_for(&target).await?;
            // A check that only reads, in either mode: through ports that refuse writes.
            let (ec2, iam) = (ReadOnly(&ec2), ReadOnly(&iam));
            credentials::credentials_not_of(&ec2, &iam, &instance_id, role).await?
        }
        None => None,
    };
    let (mut output, _) = match config.mode {
        Mode::Contain => {
            capture_seeing(
                &ec2,
                &instance_id,
                Some(summary),
                execution,
                &now_rfc3339(),
                Pace::of_attempt(retry_count),
                config,
                seal,
            )
            .await?
        }
        // Through a port that refuses every write, as every report-only step.
        Mode::ReportOnly => {
            capture_seeing(
                &ReadOnly(&ec2),
                &instance_id,
                Some(summary),
                None,
                &now_rfc3339(),
                Pace::of_attempt(retry_count),
                config,
                // Report-only writes no record, and reads one only to report.
                &crate::seal::Unsealed,
            )
            .await?
        }
    };
    if let Some(moved) = moved {
        output.warnings.push(StepError {
            error: "Cordon.CredentialsElsewhere".into(),
            cause: moved,
        });
    }
    Ok(output)
}

pub(crate) fn record_of(input: &CaptureOutput) -> Result<&CapturedState> {
    let record = input.record.as_ref().ok_or_else(|| {
        CordonError::InvalidInput(format!(
            "the capture output holds no record (status {:?}: {}); nothing to contain",
            input.status, input.reason
        ))
    })?;
    let finding = input.finding.as_ref();
    crate::ec2::check_target_ids(
        &record.instance_id,
        finding.and_then(|f| f.account_id.as_deref()),
        finding.and_then(|f| f.region.as_deref()),
    )?;
    if record.interfaces.is_empty() {
        return Err(CordonError::InvalidInput(format!(
            "the record of instance {} holds no network interface; nothing to contain",
            record.instance_id
        )));
    }
    Ok(record)
}

pub(crate) fn target_of(input: &CaptureOutput) -> Target {
    Target {
        account_id: input.finding.as_ref().and_then(|f| f.account_id.clone()),
        region: input.finding.as_ref().and_then(|f| f.region.clone()),
    }
}

/// Turns a retryable failure inside a report into the step's error, so that Step Functions
/// retries the whole (idempotent) step with backoff.
fn fail_if_retryable(errors: &[crate::error::StepError]) -> Result<()> {
    match retryable(errors) {
        Some(error) if error.error == "Cordon.Unavailable" => Err(CordonError::Unavailable {
            operation: "step".into(),
            message: error.cause.clone(),
        }),
        Some(error) => Err(CordonError::Throttled {
            operation: "step".into(),
            message: error.cause.clone(),
        }),
        None => Ok(()),
    }
}

/// isolate-sg.
pub async fn isolate_step(
    ec2_in: &impl Ec2Provider,
    config: &Config,
    input: &CaptureOutput,
) -> Result<IsolationReport> {
    isolate_seen_step(ec2_in, config, input, None).await
}

/// The input of isolate-sg and block-nacl in the state machine: the capture, and how often
/// Step Functions has retried this step (`$$.State.RetryCount`). For isolate-sg it decides
/// whether the capture's view of the instance may stand in for a read
/// ([`CaptureOutput::fresh_view`]); for block-nacl, whether its throttled calls yield
/// ([`StepAttempt::is_retry`]).
///
/// A bare capture output is taken too, as one whose attempt is unknown (isolate-sg reads
/// first, block-nacl retries in the SDK as a first attempt does): a definition of a previous
/// release hands the step that, while a stack update runs and whenever one of its executions
/// is redriven.
#[derive(Debug, Clone, Serialize)]
pub struct StepAttempt {
    pub capture: CaptureOutput,
    pub retry_count: Option<u32>,
}

impl StepAttempt {
    /// Whether Step Functions is retrying the step: as for a retried capture, its throttled
    /// calls then end the attempt instead of being retried in the SDK
    /// ([`crate::aws::AwsContext::deferring`]), so that a burst's waiting steps ask EC2 about as
    /// often as its buckets refill. A first attempt retries them as isolation's calls do, and
    /// so does an attempt of unknown count: the previous definition, which hands a bare
    /// capture, retries the step only 20 times a minute apart at most.
    pub fn is_retry(&self) -> bool {
        self.retry_count.is_some_and(|count| count > 0)
    }
}

impl<'de> Deserialize<'de> for StepAttempt {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped {
            capture: CaptureOutput,
            #[serde(default)]
            retry_count: Option<u32>,
        }
        let value = Value::deserialize(deserializer)?;
        if value.get("capture").is_some() {
            let Wrapped {
                capture,
                retry_count,
            } = serde_json::from_value(value).map_err(serde::de::Error::custom)?;
            Ok(StepAttempt {
                capture,
                retry_count,
            })
        } else {
            let capture = serde_json::from_value(value).map_err(serde::de::Error::custom)?;
            Ok(StepAttempt {
                capture,
                retry_count: None,
            })
        }
    }
}

/// isolate-sg: on its first attempt, right after capture, the swaps start at once from what
/// capture read (the record is the execution's second EC2 round trip, the swaps its third
/// and fourth); a retried step reads where every interface is first.
pub async fn isolate_attempt_step(
    ec2_in: &impl Ec2Provider,
    config: &Config,
    input: &StepAttempt,
) -> Result<IsolationReport> {
    let seen = input
        .capture
        .fresh_view(input.retry_count, chrono::Utc::now());
    isolate_seen_step(ec2_in, config, &input.capture, seen).await
}

async fn isolate_seen_step(
    ec2_in: &impl Ec2Provider,
    config: &Config,
    input: &CaptureOutput,
    seen: Option<crate::capture::Seen>,
) -> Result<IsolationReport> {
    let record = record_of(input)?;
    let ec2 = ec2_in.ec2_for(&target_of(input)).await?;
    // Report-only is the capture's to say: a stack switched while an execution runs does not
    // turn a containment half-way into a report, nor a report into a containment.
    if input.status == CaptureStatus::ReportOnly {
        return plan_isolation(&ReadOnly(&ec2), record, config.access()).await;
    }
    let report = isolate_seen(&ec2, record, config.access(), seen).await?;
    // A transient refusal leaves the interface back on its original groups (or says where):
    // the step fails so that Step Functions runs it again, and its error says what is true.
    fail_if_retryable(&report.errors).map_err(|error| match error {
        CordonError::Unavailable { operation, message } => CordonError::Unavailable {
            operation,
            message: format!(
                "{message}; interfaces now: {}",
                report.interface_lines().join("; ")
            ),
        },
        CordonError::Throttled { operation, message } => CordonError::Throttled {
            operation,
            message: format!(
                "{message}; interfaces now: {}",
                report.interface_lines().join("; ")
            ),
        },
        other => other,
    })?;
    Ok(report)
}

/// block-nacl: its records on the ACLs are sealed with `seal`'s key (none: unsealed).
pub async fn block_step(
    ec2_in: &impl Ec2Provider,
    config: &Config,
    seal: &impl Seal,
    input: &CaptureOutput,
) -> Result<NaclReport> {
    let record = record_of(input)?;
    let remote = input
        .finding
        .as_ref()
        .map(|f| f.remote_addresses.clone())
        .unwrap_or_default();
    let ec2 = ec2_in.ec2_for(&target_of(input)).await?;
    if input.status == CaptureStatus::ReportOnly {
        let report = plan_block(&ReadOnly(&ec2), record, &remote, &config.nacl_settings()).await;
        fail_if_retryable(&report.errors)?;
        return Ok(report);
    }
    let report = block(&ec2, record, &remote, &config.nacl_settings(), seal).await;
    fail_if_retryable(&report.errors)?;
    Ok(report)
}

/// The restore step's input: the execution's record and the entries the NACL step reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreInput {
    pub instance_id: String,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub record: Option<CapturedState>,
    #[serde(default)]
    pub nacl_entries: Vec<DenyEntry>,
    /// The execution (`$$.Execution.Id`) and its approval task's answer (`$.approval`): the
    /// workflow restores only on a decision the approval page sealed for this execution.
    #[serde(default)]
    pub execution_arn: Option<String>,
    #[serde(default)]
    pub approval: Option<Value>,
    /// The approvals the execution was started to require (`$.approvals_required`); the
    /// restore step requires at least these, whatever the stack says now. None from a
    /// definition that does not pass it.
    #[serde(default)]
    pub approvals_required: Option<u8>,
    /// The Auto Scaling branch's result (`$.containment.auto_scaling`): its record says
    /// whether the instance was held in a group. None (break glass, or a definition from
    /// before the measure): the record is looked for on the instance's tags.
    #[serde(default)]
    pub auto_scaling: Option<Value>,
    /// The credentials branch's result (`$.containment.credentials`), as `auto_scaling`: None
    /// and the role is found from the instance's profile, and only slots naming the instance
    /// are released.
    #[serde(default)]
    pub credentials: Option<Value>,
    /// The evidence branch's result (`$.containment.evidence`): when it found nothing to
    /// snapshot, restore makes no call for it; otherwise the snapshots' tags say what to give
    /// back.
    #[serde(default)]
    pub evidence: Option<Value>,
    /// The load-balancer branch's result (`$.containment.load_balancers`): when it found the
    /// instance in no target group of its own, restore makes no call for it; otherwise the
    /// target groups' records say what to give back.
    #[serde(default)]
    pub load_balancers: Option<Value>,
    /// Break glass only (`cordon restore --trust-unverified`): use records kept in tags whose
    /// seal does not verify. Never read from the input: whoever could write the workflow's
    /// input must not be able to turn the check off.
    #[serde(skip)]
    pub trust_unverified_records: bool,
}

impl RestoreInput {
    /// What the Auto Scaling branch recorded: `Some(None)` when it found the instance in no
    /// group (nothing to restore, no call needed); `None` when it is not known here (its
    /// branch failed, or break glass), and the instance's tags tell.
    fn auto_scaling_record(&self) -> Option<Option<crate::measures::auto_scaling::Record>> {
        let branch = self.auto_scaling.as_ref()?;
        let report: crate::measures::auto_scaling::Report =
            serde_json::from_value(branch.clone()).ok()?;
        Some(report.record)
    }

    /// Where the load-balancer branch took the instance out, when its report reads: the only
    /// groups the approved restore puts it back in.
    fn load_balancers_record(&self) -> Option<Vec<crate::measures::load_balancers::Registration>> {
        let branch = self.load_balancers.as_ref()?;
        serde_json::from_value::<crate::measures::load_balancers::Report>(branch.clone())
            .ok()
            .map(|report| report.deregistered)
    }

    /// Whether the load-balancer branch found the instance in no target group of its own.
    fn load_balancers_not_applicable(&self) -> bool {
        self.load_balancers
            .as_ref()
            .and_then(|branch| {
                serde_json::from_value::<crate::measures::load_balancers::Report>(branch.clone())
                    .ok()
            })
            .is_some_and(|report| report.status == crate::measures::MeasureStatus::NotApplicable)
    }

    /// Whether the evidence branch had nothing to do (no volume, or snapshots off).
    fn evidence_not_applicable(&self) -> bool {
        self.evidence
            .as_ref()
            .and_then(|branch| {
                serde_json::from_value::<crate::measures::evidence::Report>(branch.clone()).ok()
            })
            .is_some_and(|report| report.status == crate::measures::MeasureStatus::NotApplicable)
    }

    /// What the credentials branch cut: `Some(None)` when the instance has no role (nothing
    /// to restore, no call needed); None when it is not known here (the branch failed or was
    /// cut short, or break glass): then whatever names the instance on its role is released.
    fn credentials_record(&self) -> Option<Option<credentials::Record>> {
        let branch = self.credentials.as_ref()?;
        let report: credentials::Report = serde_json::from_value(branch.clone()).ok()?;
        match (report.status, report.record) {
            (crate::measures::MeasureStatus::NotApplicable, _) => Some(None),
            (_, Some(record)) => Some(Some(record)),
            _ => None,
        }
    }
}

/// The workflow's restore: only on an approval sealed for this execution, by as many
/// different people as the stack requires ([`crate::decision`]). A decision sent to the
/// workflow by anyone else, or altered, or short of the two-person rule, changes nothing: the
/// report says the decision was refused and why, and the workflow keeps the instance
/// isolated. `cordon restore` (the caller's own EC2 credentials) does not come this way.
// Each argument is a port, a key or a fact of this attempt: bundling them would hide which.
#[allow(clippy::too_many_arguments)]
pub async fn approved_restore_step(
    ec2_in: &impl Ec2Provider,
    autoscaling_in: &impl AutoScalingProvider,
    iam_in: &impl IamProvider,
    elb_in: &impl LoadBalancingProvider,
    ledger: Option<&impl crate::lifecycle::Ledger>,
    gate: &RestoreGate<impl Kms>,
    records: &impl Seal,
    input: &RestoreInput,
) -> Result<RestoreReport> {
    crate::ec2::check_target_ids(
        &input.instance_id,
        input.account_id.as_deref(),
        input.region.as_deref(),
    )?;
    let Some(execution_arn) = input.execution_arn.as_deref() else {
        return Err(CordonError::InvalidInput(
            "the workflow's restore needs the execution ($$.Execution.Id) its approval was sealed for".into(),
        ));
    };
    let answer = input.approval.clone().unwrap_or(Value::Null);
    let at_least = input.approvals_required.unwrap_or(1);
    match gate.approves(execution_arn, &answer, at_least).await? {
        Ok(decision) => {
            let mut report =
                restore_step(ec2_in, autoscaling_in, iam_in, elb_in, records, input).await?;
            if let Some(ledger) = ledger {
                record_release(
                    ledger,
                    input,
                    execution_arn,
                    &decision.decided_at,
                    &mut report,
                )
                .await;
            }
            Ok(report)
        }
        Err(reason) => Ok(RestoreReport::decision_refused(&input.instance_id, reason)),
    }
}

/// Records in the ledger that the instance was released for its finding when the analyst
/// decided (`decided_at`, sealed with the decision), so that an update of the finding
/// reporting no activity since does not contain it again ([`crate::lifecycle`]). A restore
/// that failed records nothing; one that left drift is a release all the same. A ledger that
/// refuses (after the SDK's retries) is reported, never a reason to undo or repeat the
/// restore: the next update of the finding then contains the instance again.
async fn record_release(
    ledger: &impl crate::lifecycle::Ledger,
    input: &RestoreInput,
    execution_arn: &str,
    decided_at: &str,
    report: &mut RestoreReport,
) {
    if !matches!(
        report.status,
        crate::restore::RestoreStatus::Restored | crate::restore::RestoreStatus::Drift
    ) {
        return;
    }
    let Some(finding_id) = input.record.as_ref().and_then(|r| r.finding_id.clone()) else {
        return;
    };
    let release = crate::lifecycle::Release {
        archived_by_cordon: false,
        finding_id,
        instance_id: input.instance_id.clone(),
        released_at: decided_at.to_string(),
        execution: execution_arn.to_string(),
    };
    if let Err(error) = ledger.record_release(&release).await {
        report.errors.push(StepError {
            error: error.error_name().into(),
            cause: format!("the release was not recorded ({error}): the next update of this finding will contain the instance again"),
        });
    }
}

/// restore, as the record and the NACL step's entries say (the caller has checked the
/// decision: [`approved_restore_step`]). Without the execution's record (break glass), the
/// record kept in tags is used where its seal verifies under `records`, or whatever it says
/// when the caller said so (`input.trust_unverified_records`).
pub async fn restore_step(
    ec2_in: &impl Ec2Provider,
    autoscaling_in: &impl AutoScalingProvider,
    iam_in: &impl IamProvider,
    elb_in: &impl LoadBalancingProvider,
    records: &impl Seal,
    input: &RestoreInput,
) -> Result<RestoreReport> {
    crate::ec2::check_target_ids(
        &input.instance_id,
        input.account_id.as_deref(),
        input.region.as_deref(),
    )?;
    if let Some(record) = &input.record {
        if record.instance_id != input.instance_id {
            return Err(CordonError::InvalidInput(format!(
                "the record is of {}, not of {}",
                record.instance_id, input.instance_id
            )));
        }
    }
    let target = Target {
        account_id: input.account_id.clone(),
        region: input.region.clone(),
    };
    let ec2 = ec2_in.ec2_for(&target).await?;
    let source = match &input.record {
        Some(record) => RecordSource::Execution {
            record,
            key: records,
        },
        None => RecordSource::Tags {
            key: records,
            trust_unverified: input.trust_unverified_records,
        },
    };
    let mut report = restore(&ec2, &input.instance_id, source, &input.nacl_entries).await?;
    // Throttling or no answer left it unfinished: fail the step so that Step Functions runs
    // the (idempotent) restore again, instead of reporting a restore that stopped half-way.
    fail_if_retryable(&report.errors)?;
    // The volumes' settings; the evidence snapshots stay.
    if !input.evidence_not_applicable() {
        match crate::measures::evidence::restore(&ec2, &input.instance_id).await {
            Ok(evidence) => report.evidence = evidence,
            // Run the idempotent restore again rather than stop half-way.
            Err(error) if error.is_transient() => return Err(error),
            // The volumes' setting is not containment: the credentials and the group are
            // still given back, and the report says what was not.
            Err(error) => report.errors.push(StepError {
                error: error.error_name().into(),
                cause: format!("the volumes' delete-on-termination setting was not given back ({error}); the evidence snapshots say which were changed (tag cordon:delete-on-termination)"),
            }),
        }
    }
    // The credentials before the group: an instance back in service needs them.
    let cut = input.credentials_record();
    if !matches!(cut, Some(None)) {
        let iam = iam_in.iam_for(&target).await?;
        let region = credentials::region_for(iam_in, &target)?;
        report.credentials =
            credentials::restore(&ec2, &iam, &input.instance_id, &region, cut.flatten()).await?;
    }
    // Back in service only after the network: an instance still isolated would fail its
    // health checks and be replaced.
    let held = input.auto_scaling_record();
    if !matches!(held, Some(None)) {
        let autoscaling = autoscaling_in.autoscaling_for(&target).await?;
        // Without the branch's record, the tags are taken only if this execution wrote them;
        // by hand (no execution), whatever Cordon record they hold.
        let whose = match input.execution_arn.as_deref() {
            Some(execution) => Whose::Run(Some(execution)),
            None => Whose::Anyone,
        };
        report.auto_scaling = crate::measures::auto_scaling::restore(
            &ec2,
            &autoscaling,
            &input.instance_id,
            held.flatten(),
            whose,
            crate::measures::auto_scaling::SETTLE_PAUSE,
        )
        .await?;
    }
    // Back in its own target groups last, once the group has it in service again.
    if !input.load_balancers_not_applicable() {
        use crate::measures::load_balancers::{Source, Vouch};
        let elb = elb_in.load_balancing_for(&target).await?;
        let known = input.load_balancers_record();
        // Without the branch's record, the groups' records count only where Cordon sealed
        // them.
        let source = match &known {
            Some(known) => Source::Branch(known),
            None => Source::Tags(Vouch {
                key: records,
                trust_unverified: input.trust_unverified_records,
            }),
        };
        match crate::measures::load_balancers::restore(&ec2, &elb, &input.instance_id, source)
            .await
        {
            Ok(Some(restored)) => {
                report.records_refused.extend(restored.refused.iter().cloned());
                report
                    .records_used_unverified
                    .extend(restored.unverified.iter().cloned());
                report.load_balancers = Some(restored);
            }
            Ok(None) => {}
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => report.errors.push(StepError {
                error: error.error_name().into(),
                cause: format!("not registered again in its target groups ({error}); each group's cordon:{} tag holds the ports it was on", input.instance_id),
            }),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureStatus;
    use crate::fake::{block_on, FakeEc2};
    use crate::isolate::StepStatus;
    use crate::restore::RestoreStatus;
    use serde_json::json;

    /// Auto Scaling where the instance is in no group.
    fn no_group() -> impl Fn(&Target) -> crate::measures::auto_scaling::port::fake::FakeAutoScaling
    {
        |_: &Target| Default::default()
    }

    /// Load balancing with no target group.
    fn no_lb() -> impl Fn(&Target) -> crate::measures::load_balancers::port::fake::FakeLoadBalancing
    {
        |_: &Target| Default::default()
    }

    /// IAM where the instance has no role.
    fn no_role() -> impl Fn(&Target) -> crate::measures::credentials::port::fake::FakeIam {
        |_: &Target| Default::default()
    }

    #[test]
    fn isolate_sg_takes_the_wrapped_input_and_a_bare_capture_as_an_unknown_attempt() {
        let capture = json!({"status": "captured", "reason": "r", "instance_id": "i-00000001",
            "finding": null, "record": null, "tags_written": false, "warnings": []});
        let wrapped: StepAttempt =
            serde_json::from_value(json!({"capture": capture, "retry_count": 0})).unwrap();
        assert_eq!(wrapped.retry_count, Some(0));
        // The previous release's definition hands over the capture itself.
        let bare: StepAttempt = serde_json::from_value(capture.clone()).unwrap();
        assert_eq!(bare.retry_count, None);
        assert_eq!(bare.capture.instance_id.as_deref(), Some("i-00000001"));
        // What is wrong is still said.
        let error = serde_json::from_value::<StepAttempt>(json!({"capture": {"status": 7}}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid type"), "{error}");
    }

    #[test]
    fn the_capture_steps_retry_count_sets_its_pace() {
        let config = Config::default();
        // Round trips from the step's start to its end, on a clock that moves only when every
        // call waits: calls made at once count once.
        let round_trips = |retry_count: Value| {
            let ec2 = FakeEc2::standard();
            let round_trip = std::time::Duration::from_millis(100);
            ec2.with(|s| s.latency = Some(round_trip));
            let input = json!({"event": event(8.0), "execution": "exec-a",
                "approval_timeout_seconds": "3600", "retry_count": retry_count});
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(async {
                let start = tokio::time::Instant::now();
                let output = capture_step(
                    &|_: &Target| ec2.clone(),
                    &no_role(),
                    &config,
                    &crate::seal::Unsealed,
                    &input,
                )
                .await
                .unwrap();
                assert_eq!(output.status, crate::capture::CaptureStatus::Captured);
                (start.elapsed().as_millis() / round_trip.as_millis()) as u32
            })
        };
        // At once: the reads, then the claim with the record.
        assert_eq!(round_trips(json!(0)), 2);
        // A retry: the groups, the description, two attributes, the claim.
        assert_eq!(round_trips(json!(2)), 5);
        // A count that is not one is no count: the first attempt's pace.
        for not_a_count in [
            json!("2"),
            json!(-1),
            json!(u64::MAX),
            json!(1.5),
            Value::Null,
        ] {
            assert_eq!(round_trips(not_a_count.clone()), 2, "{not_a_count}");
        }
    }

    /// A member account where the role cannot be assumed, as STS answers: AccessDenied.
    struct NotEnrolledAccount;

    impl Ec2Provider for NotEnrolledAccount {
        type Ec2 = FakeEc2;
        async fn ec2_for(&self, target: &Target) -> Result<FakeEc2> {
            Err(CordonError::NotEnrolled {
                account: target.account_id.clone().unwrap_or_default(),
                message: "arn:aws:iam::111122223333:role/cordon-member could not be assumed (AccessDenied)".into(),
            })
        }
    }

    /// An enrolled account's role deleted or its trust changed reads as AccessDenied, as an
    /// account never enrolled does: the execution fails loudly; only the scope skips quietly.
    #[test]
    fn a_member_role_that_cannot_be_assumed_fails_the_capture_and_says_what_to_do() {
        let input = json!({"event": event(8.0), "execution": "exec-a",
            "approval_timeout_seconds": "3600"});
        let error = block_on(capture_step(
            &NotEnrolledAccount,
            &no_role(),
            &Config::default(),
            &crate::seal::Unsealed,
            &input,
        ))
        .unwrap_err();
        assert_eq!(error.error_name(), "Cordon.NotEnrolled");
        assert!(
            error.to_string().contains("111122223333 is not enrolled")
                && error.to_string().contains("Accounts"),
            "{error}"
        );
        let mut elsewhere = Config::default();
        elsewhere.policy.scope.accounts = vec!["444455556666".into()];
        let skipped = block_on(capture_step(
            &NotEnrolledAccount,
            &no_role(),
            &elsewhere,
            &crate::seal::Unsealed,
            &input,
        ))
        .unwrap();
        assert_eq!(skipped.status, CaptureStatus::Skipped);
        assert!(skipped.reason.contains("outside Cordon's scope"));
    }

    #[test]
    fn an_instance_with_an_interface_outside_the_scope_fails_loudly_and_nothing_changes() {
        let ec2 = FakeEc2::standard();
        let mut config = Config::default();
        config.policy.scope.vpcs = vec!["vpc-0aaa".into()];
        // The finding names no VPC: capture learns it from the instance.
        let input = json!({"event": event(8.0), "execution": "exec-a",
            "approval_timeout_seconds": "3600"});
        let error = block_on(capture_step(
            &|_: &Target| ec2.clone(),
            &no_role(),
            &config,
            &crate::seal::Unsealed,
            &input,
        ))
        .unwrap_err();
        assert_eq!(error.error_name(), "Cordon.NotContainable");
        assert!(error.to_string().contains("vpc-1 is outside"), "{error}");
        assert!(!ec2.calls().iter().any(|c| c.starts_with("Create")
            || c.starts_with("Modify")
            || c.starts_with("Delete")));
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    }

    /// Report-only: capture and every measure read and plan as they would, nothing but reads
    /// reaches EC2, Auto Scaling or load balancing, and the ACL plan is the denies that a
    /// containment of the same instance makes.
    #[test]
    fn report_only_plans_every_measure_and_writes_nothing() {
        use crate::measures::auto_scaling::port::fake::FakeAutoScaling;
        use crate::measures::auto_scaling::{hold_step, HoldInput};
        use crate::measures::evidence::{preserve_step, PreserveInput};
        use crate::measures::load_balancers::deregister_step;
        use crate::measures::load_balancers::port::fake::FakeLoadBalancing;
        use crate::measures::MeasureStatus;
        let input = json!({"event": event(8.0), "execution": "exec-a",
            "approval_timeout_seconds": "3600"});
        let ec2 = FakeEc2::standard();
        let autoscaling = FakeAutoScaling::with_instance("i-00000001");
        let elb = FakeLoadBalancing::with_instance("i-00000001");
        let ec2_in = |_: &Target| ec2.clone();
        let config = Config {
            mode: Mode::ReportOnly,
            ..Config::default()
        };
        let captured = block_on(capture_step(
            &ec2_in,
            &no_role(),
            &config,
            &crate::seal::Unsealed,
            &input,
        ))
        .unwrap();
        assert_eq!(captured.status, CaptureStatus::ReportOnly);
        assert!(!captured.tags_written && captured.record.is_some());
        let captured: CaptureOutput =
            serde_json::from_value(serde_json::to_value(&captured).unwrap()).unwrap();
        let isolation = block_on(isolate_step(&ec2_in, &config, &captured)).unwrap();
        assert_eq!(isolation.status, StepStatus::ReportOnly);
        assert!(
            isolation
                .notes
                .iter()
                .any(|n| n
                    .starts_with("eni-1: would move from sg-app, sg-ssh to the isolation group")),
            "{:?}",
            isolation.notes
        );
        let nacl = block_on(block_step(
            &ec2_in,
            &config,
            &crate::seal::Unsealed,
            &captured,
        ))
        .unwrap();
        assert_eq!(nacl.status, StepStatus::ReportOnly);
        let held = block_on(hold_step(
            &ec2_in,
            &|_: &Target| autoscaling.clone(),
            config.auto_scaling,
            &HoldInput {
                capture: captured.clone(),
                execution: Some("exec-a".into()),
            },
        ))
        .unwrap();
        assert_eq!(held.status, MeasureStatus::ReportOnly);
        assert!(held.notes[0].starts_with("would move it into Standby in web"));
        let preserved = block_on(preserve_step(
            &ec2_in,
            config.evidence,
            &PreserveInput {
                capture: captured.clone(),
                execution: Some("exec-a".into()),
            },
        ))
        .unwrap();
        assert_eq!(preserved.status, MeasureStatus::ReportOnly);
        assert!(preserved.snapshots.is_empty());
        let unregistered = block_on(deregister_step(
            &ec2_in,
            &|_: &Target| autoscaling.clone(),
            &|_: &Target| elb.clone(),
            &crate::seal::Unsealed,
            &captured,
        ))
        .unwrap();
        assert_eq!(unregistered.status, MeasureStatus::ReportOnly);
        assert!(unregistered.deregistered.is_empty());
        let cut = block_on(credentials::cut_step(&ec2_in, &no_role(), &captured)).unwrap();
        assert_ne!(cut.status, MeasureStatus::Done);

        let writes: Vec<String> = [ec2.calls(), autoscaling.calls(), elb.calls()]
            .concat()
            .into_iter()
            // The Auto Scaling and load balancing fakes name their service first.
            .filter(|call| {
                !call
                    .rsplit(':')
                    .next()
                    .unwrap_or(call)
                    .starts_with("Describe")
            })
            .collect();
        assert!(writes.is_empty(), "report-only wrote: {writes:?}");
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);

        // The plan is what containing the same instance does: the same denies, in the same
        // ACLs and directions (each run picks its rule numbers from a point of its own).
        let contained = FakeEc2::standard();
        let contained_in = |_: &Target| contained.clone();
        let acting = Config::default();
        let real = block_on(capture_step(
            &contained_in,
            &no_role(),
            &acting,
            &crate::seal::Unsealed,
            &input,
        ))
        .unwrap();
        let done = block_on(block_step(
            &contained_in,
            &acting,
            &crate::seal::Unsealed,
            &real,
        ))
        .unwrap();
        let denies = |entries: &[DenyEntry]| {
            let mut denies: Vec<(String, bool, String)> = entries
                .iter()
                .map(|e| (e.acl_id.clone(), e.egress, e.cidr.clone()))
                .collect();
            denies.sort();
            denies
        };
        assert!(!done.nacl_entries.is_empty());
        assert_eq!(denies(&nacl.would_deny), denies(&done.nacl_entries));
        let band = config.nacl.band;
        assert!(nacl
            .would_deny
            .iter()
            .all(|e| (band.first..=band.last).contains(&e.rule_number)));
        // Nothing a restore would remove.
        assert!(nacl.nacl_entries.is_empty());
    }

    /// Whoever may tag a target group of the instance's VPC names the instance in another
    /// group's tag, as if Cordon had taken it out of there: the approved restore puts it back
    /// only where the execution's own branch took it out, on the ports that branch recorded.
    #[test]
    fn restore_registers_the_instance_only_where_its_execution_took_it_out() {
        use crate::measures::load_balancers::deregister_step;
        use crate::measures::load_balancers::port::fake::{FakeGroup, FakeLoadBalancing, WEB};
        const PAYMENTS: &str =
            "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/payments/0123456789abcdec";
        let input = json!({"event": event(8.0), "execution": "exec-a",
            "approval_timeout_seconds": "3600"});
        let ec2 = FakeEc2::standard();
        let ec2_in = |_: &Target| ec2.clone();
        let elb = FakeLoadBalancing::with_instance("i-00000001");
        let config = Config::default();
        let captured = block_on(capture_step(
            &ec2_in,
            &no_role(),
            &config,
            &crate::seal::Unsealed,
            &input,
        ))
        .unwrap();
        let captured: CaptureOutput =
            serde_json::from_value(serde_json::to_value(&captured).unwrap()).unwrap();
        let unregistered = block_on(deregister_step(
            &ec2_in,
            &no_group(),
            &|_: &Target| elb.clone(),
            &crate::seal::Unsealed,
            &captured,
        ))
        .unwrap();
        assert!(elb.targets(WEB).is_empty());
        // The forged record, on a group the instance was never in.
        elb.with(|s| {
            s.groups.insert(
                PAYMENTS.into(),
                FakeGroup {
                    vpc_id: "vpc-1".into(),
                    target_type: "instance".into(),
                    targets: vec![],
                    tags: vec![("cordon:i-00000001".into(), "443".into())],
                },
            )
        });
        let restore = RestoreInput {
            instance_id: "i-00000001".into(),
            account_id: Some("111122223333".into()),
            region: Some("eu-west-1".into()),
            record: captured.record.clone(),
            nacl_entries: vec![],
            execution_arn: Some("exec-a".into()),
            approval: None,
            approvals_required: None,
            auto_scaling: None,
            credentials: None,
            evidence: None,
            load_balancers: Some(serde_json::to_value(&unregistered).unwrap()),
            trust_unverified_records: false,
        };
        let restored = block_on(restore_step(
            &ec2_in,
            &no_group(),
            &no_role(),
            &|_: &Target| elb.clone(),
            &crate::seal::Unsealed,
            &restore,
        ))
        .unwrap();
        assert_eq!(
            elb.targets(WEB),
            [
                ("i-00000001".to_string(), 80),
                ("i-00000001".to_string(), 8080)
            ]
        );
        assert!(
            elb.targets(PAYMENTS).is_empty(),
            "put in a group it was never in"
        );
        let report = restored.load_balancers.unwrap();
        assert!(
            report.notes.iter().any(|n| n.contains("payments")),
            "{:?}",
            report.notes
        );
    }

    fn event(severity: f64) -> Value {
        json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": {
            "id": "f-1", "type": "UnauthorizedAccess:EC2/TorClient", "severity": severity,
            "region": "eu-west-1", "accountId": "111122223333",
            "resource": {"resourceType": "Instance", "instanceDetails": {"instanceId": "i-00000001"}},
            "service": {"action": {"networkConnectionAction": {"remoteIpDetails": {"ipAddressV4": "198.51.100.7"}}}}
        }})
    }

    /// GuardDuty saw role `role`'s session `i-00000001` used from elsewhere.
    fn exfiltration(role: &str) -> Value {
        json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": {
            "id": "f-2", "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            "severity": 8.0, "region": "eu-west-1", "accountId": "111122223333",
            "resource": {"resourceType": "AccessKey", "accessKeyDetails": {
                "accessKeyId": "ASIAEXAMPLE", "principalId": "AROAEXAMPLEROLEID:i-00000001",
                "userName": role, "userType": "AssumedRole"}},
            "service": {"action": {"actionType": "AWS_API_CALL", "awsApiCallAction": {
                "api": "ListBuckets", "remoteIpDetails": {"ipAddressV4": "203.0.113.9"}}}}
        }})
    }

    #[test]
    fn stolen_credentials_contain_the_instance_they_were_issued_to_whatever_its_profile_now() {
        use crate::measures::credentials::port::fake::{FakeIam, PROFILE_ARN, ROLE};
        let iam = FakeIam::with_role();
        let iam_in = |_: &Target| iam.clone();
        let config = Config::default();
        let run = |ec2: &FakeEc2, event: &Value| {
            block_on(capture_step(
                &|_: &Target| ec2.clone(),
                &iam_in,
                &config,
                &crate::seal::Unsealed,
                event,
            ))
            .unwrap()
        };

        // Its profile holds the credentials' role: contained, nothing to say.
        let ec2 = FakeEc2::standard();
        ec2.with(|s| {
            s.instances
                .get_mut("i-00000001")
                .unwrap()
                .instance_profile_arn = Some(PROFILE_ARN.into())
        });
        let output = run(&ec2, &exfiltration(ROLE));
        assert_eq!(output.status, CaptureStatus::Captured, "{}", output.reason);
        assert!(output.warnings.is_empty(), "{:?}", output.warnings);
        assert_eq!(output.record.unwrap().instance_id, "i-00000001");
        assert_eq!(
            output.finding.unwrap().remote_addresses,
            vec!["203.0.113.9".parse::<std::net::IpAddr>().unwrap()]
        );

        // Its profile removed (or swapped) since: contained all the same, and said.
        for (ec2, shown) in [
            (FakeEc2::standard(), "no instance profile"),
            (ec2, "now holds role web-role"),
        ] {
            let role = if shown.contains("web-role") {
                "old-role"
            } else {
                ROLE
            };
            let output = run(&ec2, &exfiltration(role));
            assert_ne!(output.status, CaptureStatus::Skipped, "{}", output.reason);
            assert!(
                output
                    .warnings
                    .iter()
                    .any(|w| w.cause.contains(shown) && w.cause.contains("are not cut")),
                "{:?}",
                output.warnings
            );
        }
    }

    #[test]
    fn the_steps_chain_from_event_to_restore_in_the_finding_account_and_region() {
        let ec2 = FakeEc2::standard();
        let config = Config::default();
        let targets = std::sync::Mutex::new(Vec::new());
        let recording = |target: &Target| {
            targets.lock().unwrap().push(target.clone());
            ec2.clone()
        };
        let captured = block_on(capture_step(
            &recording,
            &no_role(),
            &config,
            &crate::seal::Unsealed,
            &event(8.0),
        ))
        .unwrap();
        assert_eq!(captured.status, CaptureStatus::Captured);
        // The step output goes through JSON between states.
        let captured: CaptureOutput =
            serde_json::from_value(serde_json::to_value(&captured).unwrap()).unwrap();
        let isolation = block_on(isolate_step(&recording, &config, &captured)).unwrap();
        assert_eq!(isolation.status, StepStatus::Done);
        let nacl = block_on(block_step(
            &|_: &Target| ec2.clone(),
            &config,
            &crate::seal::Unsealed,
            &captured,
        ))
        .unwrap();
        assert_eq!(nacl.nacl_entries.len(), 6);
        let input = RestoreInput {
            instance_id: "i-00000001".into(),
            account_id: Some("111122223333".into()),
            region: Some("eu-west-1".into()),
            record: captured.record.clone(),
            nacl_entries: nacl.nacl_entries,
            execution_arn: None,
            approval: None,
            approvals_required: None,
            auto_scaling: None,
            credentials: None,
            evidence: None,
            load_balancers: None,
            trust_unverified_records: false,
        };
        let restored = block_on(restore_step(
            &recording,
            &no_group(),
            &no_role(),
            &no_lb(),
            &crate::seal::Unsealed,
            &input,
        ))
        .unwrap();
        let expected = Target {
            account_id: Some("111122223333".into()),
            region: Some("eu-west-1".into()),
        };
        assert_eq!(
            *targets.lock().unwrap(),
            [expected.clone(), expected.clone(), expected]
        );
        assert_eq!(restored.status, RestoreStatus::Restored);
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    }

    #[test]
    fn the_workflow_restores_only_on_a_decision_the_approval_page_sealed() {
        use crate::approval::{Action, Decision};
        use crate::kms::fake::FakeKms;
        let ec2 = FakeEc2::standard();
        let config = Config::default();
        let provider = |_: &Target| ec2.clone();
        let captured = block_on(capture_step(
            &provider,
            &no_role(),
            &config,
            &crate::seal::Unsealed,
            &event(8.0),
        ))
        .unwrap();
        block_on(isolate_step(&provider, &config, &captured)).unwrap();
        let isolated = ec2.interface_groups("eni-1");
        let gate = RestoreGate {
            page: crate::decision::DecisionKey {
                kms: FakeKms::with_key("decision-key", b"decision key"),
                key_id: "decision-key".into(),
            },
            break_glass: None,
            approvals_required: 1,
        };
        let execution = "arn:aws:states:eu-west-1:111122223333:execution:cordon-quarantine:f-1";
        let input = |approval: Value| RestoreInput {
            instance_id: "i-00000001".into(),
            account_id: Some("111122223333".into()),
            region: Some("eu-west-1".into()),
            record: captured.record.clone(),
            nacl_entries: vec![],
            execution_arn: Some(execution.into()),
            approval: Some(approval),
            approvals_required: Some(1),
            auto_scaling: None,
            credentials: None,
            evidence: None,
            load_balancers: None,
            trust_unverified_records: false,
        };
        // What anyone allowed states:SendTaskSuccess can send: nothing changes.
        ec2.clear_calls();
        let forged = json!({"decision": "approve", "approver": "Mallory", "decided_at": "now"});
        let report = block_on(approved_restore_step(
            &provider,
            &no_group(),
            &no_role(),
            &no_lb(),
            None::<&crate::lifecycle::port::fake::FakeLedger>,
            &gate,
            &crate::seal::Unsealed,
            &input(forged),
        ))
        .unwrap();
        assert_eq!(report.status, RestoreStatus::DecisionRefused);
        assert!(
            report.errors[0].cause.contains("SendTaskSuccess"),
            "{report:?}"
        );
        assert!(ec2.calls().is_empty(), "{:?}", ec2.calls());
        assert_eq!(ec2.interface_groups("eni-1"), isolated);
        // Without the execution it was sealed for, nothing is trusted.
        let no_execution = RestoreInput {
            execution_arn: None,
            ..input(Value::Null)
        };
        assert!(block_on(approved_restore_step(
            &provider,
            &no_group(),
            &no_role(),
            &no_lb(),
            None::<&crate::lifecycle::port::fake::FakeLedger>,
            &gate,
            &crate::seal::Unsealed,
            &no_execution
        ))
        .is_err());
        // The approval page's sealed decision restores.
        let decision = Decision {
            decision: Action::Approve,
            approver: Some("Ada".into()),
            via: crate::approval::Via::UnauthenticatedLink,
            identity: None,
            decided_at: "2026-12-03T10:00:00Z".into(),
            round: 1,
            first_approval: None,
            seal: None,
        };
        let sealed = block_on(gate.page.seal(execution, decision)).unwrap();
        let approval = serde_json::to_value(&sealed).unwrap();
        let report = block_on(approved_restore_step(
            &provider,
            &no_group(),
            &no_role(),
            &no_lb(),
            None::<&crate::lifecycle::port::fake::FakeLedger>,
            &gate,
            &crate::seal::Unsealed,
            &input(approval),
        ))
        .unwrap();
        assert_eq!(report.status, RestoreStatus::Restored, "{report:?}");
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    }

    #[test]
    fn the_state_machine_wrapper_carries_the_approval_timeout() {
        let ec2 = FakeEc2::standard();
        let wrapped = json!({"event": event(8.0), "approval_timeout_seconds": "90"});
        let output = block_on(capture_step(
            &|_: &Target| ec2.clone(),
            &no_role(),
            &Config::default(),
            &crate::seal::Unsealed,
            &wrapped,
        ))
        .unwrap();
        assert_eq!(output.status, CaptureStatus::Captured);
        assert_eq!(output.approval_timeout_seconds, Some(90));
        let bare = block_on(capture_step(
            &|_: &Target| ec2.clone(),
            &no_role(),
            &Config::default(),
            &crate::seal::Unsealed,
            &event(5.0),
        ))
        .unwrap();
        assert_eq!(
            bare.approval_timeout_seconds,
            Some(DEFAULT_APPROVAL_TIMEOUT_SECONDS)
        );
        assert_eq!(bare.approvals_required, Some(1));
        // The two-person rule travels the same way; a definition from before it asks one.
        let two = json!({"event": event(8.0), "approval_timeout_seconds": "90", "approvals_required": "2"});
        let output = block_on(capture_step(
            &|_: &Target| ec2.clone(),
            &no_role(),
            &Config::default(),
            &crate::seal::Unsealed,
            &two,
        ))
        .unwrap();
        assert_eq!(output.approvals_required, Some(2));
        assert_eq!(output.approval_timeout_seconds, Some(90));
        for wrong in [
            json!("3"),
            json!("0"),
            json!("${ApprovalsRequired}"),
            json!(true),
        ] {
            let input = json!({"event": event(8.0), "approval_timeout_seconds": "90", "approvals_required": wrong});
            let error = block_on(capture_step(
                &|_: &Target| ec2.clone(),
                &no_role(),
                &Config::default(),
                &crate::seal::Unsealed,
                &input,
            ))
            .unwrap_err();
            assert_eq!(error.error_name(), "Cordon.InvalidConfiguration", "{wrong}");
            assert!(error.to_string().contains("must be 1, or 2"), "{error}");
        }
        let bad =
            json!({"event": event(8.0), "approval_timeout_seconds": "${ApprovalTimeoutSeconds}"});
        let error = block_on(capture_step(
            &|_: &Target| ec2.clone(),
            &no_role(),
            &Config::default(),
            &crate::seal::Unsealed,
            &bad,
        ))
        .unwrap_err();
        assert_eq!(error.error_name(), "Cordon.InvalidConfiguration");
    }

    #[test]
    fn a_skipped_finding_touches_no_ec2() {
        let config = Config::default();
        let output = block_on(capture_step(
            &|_: &Target| -> FakeEc2 { panic!("no EC2 for a skipped finding") },
            &no_role(),
            &config,
            &crate::seal::Unsealed,
            &event(5.0),
        ))
        .unwrap();
        assert_eq!(output.status, CaptureStatus::Skipped);
        assert!(output.reason.contains("below the minimum"));
    }

    #[test]
    fn malformed_inputs_are_invalid_input_errors() {
        let config = Config::default();
        let none = &|_: &Target| -> FakeEc2 { panic!("no EC2 for bad input") };
        let error = block_on(capture_step(
            none,
            &no_role(),
            &config,
            &crate::seal::Unsealed,
            &json!({"Findings": [{}, {}]}),
        ))
        .unwrap_err();
        assert_eq!(error.error_name(), "Cordon.InvalidInput");
        assert!(error.to_string().contains("found 2"));
        let error = block_on(capture_step(
            none,
            &no_role(),
            &config,
            &crate::seal::Unsealed,
            &json!({"detail": {"id": "x"}}),
        ))
        .unwrap_err();
        assert!(error.to_string().contains("no `type`"));
        let skipped = CaptureOutput::skipped(None, None, "low".into());
        let error = block_on(isolate_step(none, &config, &skipped)).unwrap_err();
        assert_eq!(error.error_name(), "Cordon.InvalidInput");
    }

    #[test]
    fn throttling_inside_a_step_fails_the_step_so_step_functions_retries_it() {
        let ec2 = FakeEc2::standard();
        let config = Config::default();
        let captured = block_on(capture_step(
            &|_: &Target| ec2.clone(),
            &no_role(),
            &config,
            &crate::seal::Unsealed,
            &event(8.0),
        ))
        .unwrap();
        ec2.fail_next(
            "ModifyInstanceAttribute",
            CordonError::Throttled {
                operation: "ModifyInstanceAttribute".into(),
                message: "Rate exceeded".into(),
            },
        );
        let error =
            block_on(isolate_step(&|_: &Target| ec2.clone(), &config, &captured)).unwrap_err();
        assert_eq!(error.error_name(), "Cordon.Throttled");
        // The retry completes what the first attempt left.
        let report = block_on(isolate_step(&|_: &Target| ec2.clone(), &config, &captured)).unwrap();
        assert_eq!(report.status, StepStatus::Done);
        assert!(report.termination_protection);
    }

    /// The EC2 round trips of one containment of a single-ENI instance (IPv4 and IPv6, two
    /// subnets with their own ACLs, one remote address) in a VPC Cordon has acted in before:
    /// the isolation group exists, the conversion group was deleted after its last use.
    #[test]
    fn a_containment_in_a_vpc_cordon_acted_in_before_makes_twenty_six_ec2_calls() {
        let ec2 = FakeEc2::standard();
        let config = Config::default();
        let first = block_on(capture_step(
            &|_: &Target| ec2.clone(),
            &no_role(),
            &config,
            &crate::seal::Unsealed,
            &event(8.0),
        ))
        .unwrap();
        block_on(isolate_step(&|_: &Target| ec2.clone(), &config, &first)).unwrap();
        // A second instance in the same VPC and subnet, with the isolation group in place.
        ec2.with(|s| {
            let mut other = s.instances["i-00000001"].clone();
            other.id = "i-00000002".into();
            other.interfaces = vec![crate::fake::interface(
                "eni-9",
                "subnet-a",
                &["sg-app"],
                "10.0.1.9",
                Some("2001:db8:1::9"),
            )];
            other.tags.clear();
            s.instances.insert("i-00000002".into(), other);
        });
        let mut second = event(8.0);
        second["detail"]["resource"]["instanceDetails"]["instanceId"] = "i-00000002".into();
        ec2.clear_calls();
        let captured = block_on(capture_step(
            &|_: &Target| ec2.clone(),
            &no_role(),
            &config,
            &crate::seal::Unsealed,
            &second,
        ))
        .unwrap();
        block_on(isolate_step(&|_: &Target| ec2.clone(), &config, &captured)).unwrap();
        block_on(block_step(
            &|_: &Target| ec2.clone(),
            &config,
            &crate::seal::Unsealed,
            &captured,
        ))
        .unwrap();
        let calls = ec2.calls();
        let count = |name: &str| calls.iter().filter(|c| *c == name).count();
        assert_eq!(
            [
                count("DescribeInstances"),
                count("DescribeSecurityGroups"),
                count("DescribeInstanceAttribute"),
                count("CreateTags"),
                count("ModifyNetworkInterfaceAttribute"),
                count("ModifyInstanceAttribute"),
                count("DescribeNetworkAcls"),
                count("CreateNetworkAclEntry"),
            ],
            // capture 1 + 2 (protection, shutdown behavior) + 1 + 1, the reads at once;
            // isolate 1 (groups) + 1 (where the interfaces are: a retry must not swap an
            // isolated one back through conversion), both at once, + 2 swaps + 1 protection +
            // 1 connection tracking; block 1 ACL read + 1 VPC read (its blocks are never
            // denied), at once, + 1 record per ACL + 2 remote denies + 4 instance denies.
            [2, 2, 2, 3, 3, 1, 1, 6]
        );
        assert_eq!(count("DescribeVpcs"), 1);
        // The conversion group made again (its rules both ways at once), and deleted after
        // the swaps once a read shows no interface on it.
        assert_eq!(
            [
                count("CreateSecurityGroup"),
                count("AuthorizeSecurityGroup"),
                count("DescribeNetworkInterfaces"),
                count("DeleteSecurityGroup"),
            ],
            [1, 2, 1, 1]
        );
        assert_eq!(calls.len(), 26, "{calls:?}");
    }
}
