//! CloudWatch metrics in Embedded Metric Format: one JSON line on a worker's stdout per
//! document, which CloudWatch Logs turns into metrics. No API call, so nothing is added to
//! the critical path and no permission is needed beyond writing the function's logs.
//!
//! What is emitted, and by which step (`of_invocation`):
//! - isolate-sg, once the instance is isolated: `TimeToIsolation` (from the finding's
//!   `updatedAt`) and `TimeToIsolationFromStart` (from the execution's start).
//! - notify, when it asks for approval or reports a failure: `Containments` per measure and
//!   outcome, `PartialContainments` (1 when a measure did not finish, 0 otherwise) and
//!   `QuarantinesOpened`.
//! - notify, once a quarantine ends: `Decisions` per decision (approve, reject, timeout) and
//!   `ApprovalWait` (from capture to the decision).
//! - every step: `AwsCalls` and `AwsRetries` of the clients Cordon builds, per step.
//!
//! Each metric carries the finding's `Account` and `Region` where it has them, in dimension
//! sets that let a team read the whole organization, one account or one region.

use std::cell::Cell;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::measures::MEASURES;

/// The CloudWatch namespace of Cordon's metrics.
pub const NAMESPACE: &str = "Cordon";

/// Every metric Cordon emits: the dashboard and the alarms may read only these.
pub const METRIC_NAMES: [&str; 9] = [
    "TimeToIsolation",
    "TimeToIsolationFromStart",
    "Containments",
    "PartialContainments",
    "QuarantinesOpened",
    "Decisions",
    "ApprovalWait",
    "AwsCalls",
    "AwsRetries",
];

/// The outcomes a measure's branch can report; anything else is counted as `other`, so that
/// no string from an execution's state becomes a metric dimension.
const OUTCOMES: [&str; 5] = [
    "done",
    "partial",
    "not_applicable",
    "not_possible",
    "failed",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Milliseconds,
    Count,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Milliseconds => "Milliseconds",
            Unit::Count => "Count",
        }
    }
}

/// One EMF document: metrics that share their dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    /// Dimensions every dimension set has (`Step`, `Measure`, ...).
    pub dimensions: Vec<(&'static str, String)>,
    /// The finding's account and region, when known: each adds a dimension set of its own.
    pub account: Option<String>,
    pub region: Option<String>,
    pub metrics: Vec<(&'static str, Unit, f64)>,
}

impl Emission {
    /// The EMF document, stamped `at`.
    pub fn document(&self, at: DateTime<Utc>) -> Value {
        let base: Vec<&str> = self.dimensions.iter().map(|(name, _)| *name).collect();
        let mut sets = vec![base.clone()];
        for (name, value) in [("Account", &self.account), ("Region", &self.region)] {
            if value.is_some() {
                let mut set = base.clone();
                set.push(name);
                sets.push(set);
            }
        }
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": at.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": sets,
                    "Metrics": self.metrics.iter()
                        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.name()}))
                        .collect::<Vec<_>>(),
                }],
            }),
        );
        for (name, value) in &self.dimensions {
            root.insert((*name).into(), json!(value));
        }
        for (name, value) in [("Account", &self.account), ("Region", &self.region)] {
            if let Some(value) = value {
                root.insert(name.into(), json!(value));
            }
        }
        for (name, _, value) in &self.metrics {
            root.insert((*name).into(), json!(value));
        }
        Value::Object(root)
    }
}

/// The calls one invocation made through the clients Cordon builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    /// Operations started.
    pub calls: u64,
    /// Attempts beyond each operation's first (the SDK's retries).
    pub retries: u64,
}

tokio::task_local! {
    static COUNTED: (Cell<u64>, Cell<u64>);
}

/// Runs `work`, counting the AWS calls and attempts it makes (in its own task: the steps
/// spawn none). Task-local, so that concurrent invocations in one process (the local
/// runner's parallel branches) each count their own.
pub async fn counting<T>(work: impl Future<Output = T>) -> (T, Calls) {
    COUNTED
        .scope((Cell::new(0), Cell::new(0)), async {
            let out = work.await;
            let (calls, attempts) = COUNTED.with(|(calls, attempts)| (calls.get(), attempts.get()));
            (
                out,
                Calls {
                    calls,
                    retries: attempts.saturating_sub(calls),
                },
            )
        })
        .await
}

/// Counted by the clients' interceptor: an operation starts.
pub(crate) fn count_call() {
    let _ = COUNTED.try_with(|(calls, _)| calls.set(calls.get() + 1));
}

/// Counted by the clients' interceptor: an attempt of an operation starts.
pub(crate) fn count_attempt() {
    let _ = COUNTED.try_with(|(_, attempts)| attempts.set(attempts.get() + 1));
}

/// The metrics one invocation of `step` emits, from its input and (when it answered) its
/// output. Pure: the worker prints them, the local runner collects them.
pub fn of_invocation(
    step: &str,
    input: &Value,
    output: Option<&Value>,
    calls: Calls,
    now: DateTime<Utc>,
) -> Vec<Emission> {
    let mut emitted = vec![Emission {
        dimensions: vec![("Step", step.to_string())],
        account: None,
        region: None,
        metrics: vec![
            ("AwsCalls", Unit::Count, calls.calls as f64),
            ("AwsRetries", Unit::Count, calls.retries as f64),
        ],
    }];
    match step {
        // The state machine hands isolate-sg `{capture, retry_count}`.
        "isolate-sg" => emitted.extend(
            output.and_then(|report| isolation(input.get("capture").unwrap_or(input), report, now)),
        ),
        "notify" => emitted.extend(of_notice(input, now)),
        _ => {}
    }
    emitted
}

/// Where the finding came from, as the step's input carries it: only an account id and a
/// region name of AWS's form become dimensions (a failure's notice carries the execution's
/// raw input, which whoever may start an execution writes).
fn account_and_region(finding: &Value) -> (Option<String>, Option<String>) {
    let text = |key: &str| finding.get(key).and_then(Value::as_str).map(String::from);
    (
        text("account_id").filter(|a| crate::ec2::is_account_id(a)),
        text("region").filter(|r| crate::ec2::is_region(r)),
    )
}

fn millis_since(from: Option<&str>, now: DateTime<Utc>) -> Option<f64> {
    let from = DateTime::parse_from_rfc3339(from?).ok()?;
    let elapsed = now.signed_duration_since(from).num_milliseconds();
    // A clock ahead of ours, or a date from the future in a finding, measures nothing.
    (elapsed >= 0).then_some(elapsed as f64)
}

/// Time to isolation, once at least one interface is on the isolation group now.
fn isolation(capture: &Value, report: &Value, now: DateTime<Utc>) -> Option<Emission> {
    let isolated_now = report["enis"]
        .as_array()?
        .iter()
        .any(|eni| eni["outcome"] == "isolated");
    if !isolated_now {
        return None;
    }
    let finding = &capture["finding"];
    let (account, region) = account_and_region(finding);
    let mut metrics = Vec::new();
    if let Some(ms) = millis_since(finding["updated_at"].as_str(), now) {
        metrics.push(("TimeToIsolation", Unit::Milliseconds, ms));
    }
    if let Some(ms) = millis_since(capture["execution_started_at"].as_str(), now) {
        metrics.push(("TimeToIsolationFromStart", Unit::Milliseconds, ms));
    }
    (!metrics.is_empty()).then_some(Emission {
        dimensions: Vec::new(),
        account,
        region,
        metrics,
    })
}

/// What notify's message marks: a containment done (the approval request, or a failure
/// after it), or a quarantine's end.
fn of_notice(input: &Value, now: DateTime<Utc>) -> Vec<Emission> {
    let state = &input["state"];
    let (account, region) = account_and_region(&state["finding"]);
    match input["kind"].as_str() {
        Some("approval_request") | Some("failed") if state["containment"].is_object() => {
            containment(state, account, region)
        }
        Some("restored") | Some("kept_isolated") => {
            decision(state, now, account, region).into_iter().collect()
        }
        _ => Vec::new(),
    }
}

fn containment(state: &Value, account: Option<String>, region: Option<String>) -> Vec<Emission> {
    let mut emitted = Vec::new();
    let mut unfinished = false;
    for measure in MEASURES {
        let status = state["containment"][measure.id]["status"].as_str();
        let outcome = match status {
            Some(known) if OUTCOMES.contains(&known) => known,
            Some(_) => "other",
            None => continue,
        };
        unfinished |= matches!(outcome, "partial" | "failed" | "other");
        emitted.push(Emission {
            dimensions: vec![
                ("Measure", measure.id.to_string()),
                ("Outcome", outcome.to_string()),
            ],
            account: account.clone(),
            region: region.clone(),
            metrics: vec![("Containments", Unit::Count, 1.0)],
        });
    }
    emitted.push(Emission {
        dimensions: Vec::new(),
        account,
        region,
        metrics: vec![
            (
                "PartialContainments",
                Unit::Count,
                if unfinished { 1.0 } else { 0.0 },
            ),
            ("QuarantinesOpened", Unit::Count, 1.0),
        ],
    });
    emitted
}

fn decision(
    state: &Value,
    now: DateTime<Utc>,
    account: Option<String>,
    region: Option<String>,
) -> Option<Emission> {
    let (decision, decided_at) = if state.get("approval_timeout").is_some() {
        ("timeout", None)
    } else {
        let decision = match state["approval"]["decision"].as_str() {
            Some("approve") => "approve",
            Some("reject") => "reject",
            _ => return None,
        };
        (decision, state["approval"]["decided_at"].as_str())
    };
    let decided = decided_at
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .map_or(now, |at| at.with_timezone(&Utc));
    let mut metrics = vec![("Decisions", Unit::Count, 1.0)];
    if let Some(ms) = millis_since(state["record"]["captured_at"].as_str(), decided) {
        metrics.push(("ApprovalWait", Unit::Milliseconds, ms));
    }
    Some(Emission {
        dimensions: vec![("Decision", decision.to_string())],
        account,
        region,
        metrics,
    })
}

/// One invocation of a worker: runs `work` counting its AWS calls, then prints the metrics
/// of `step` for it. The worker's answer is unchanged.
pub async fn measured<I, O, E>(
    step: &str,
    input: &I,
    work: impl Future<Output = Result<O, E>>,
) -> Result<O, E>
where
    I: serde::Serialize,
    O: serde::Serialize,
{
    let (result, calls) = counting(work).await;
    let input = serde_json::to_value(input).unwrap_or(Value::Null);
    let output = result
        .as_ref()
        .ok()
        .and_then(|out| serde_json::to_value(out).ok());
    let now = Utc::now();
    emit(
        &of_invocation(step, &input, output.as_ref(), calls, now),
        now,
    );
    result
}

/// Prints each document on its own line of stdout, where Lambda's log agent reads EMF.
pub fn emit(emissions: &[Emission], now: DateTime<Utc>) {
    for emission in emissions {
        println!("{}", emission.document(now));
    }
}

#[cfg(test)]
mod tests;
