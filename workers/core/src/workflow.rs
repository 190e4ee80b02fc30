//! The execution's state as the state machine carries it from step to step, and how the
//! workflow ended, read from it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capture::CaptureOutput;
use crate::isolate::IsolationReport;
use crate::nacl::NaclReport;
use crate::restore::RestoreReport;

/// CaptureState's output, plus what later states add under their own keys
/// (`ResultPath`s in `statemachine/quarantine.asl.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowState {
    #[serde(flatten)]
    pub capture: CaptureOutput,
    /// `{"isolation": IsolateSecurityGroups result, "nacl": BlockNetworkAcl result}`; a branch
    /// that failed holds `{"status": "failed", "error": {"Error", "Cause"}}`.
    #[serde(default)]
    pub containment: Option<Value>,
    #[serde(default)]
    pub approval: Option<Value>,
    #[serde(default)]
    pub restore: Option<Value>,
    /// `{"Error", "Cause"}` of the failure that sent the execution to NotifyFailed.
    #[serde(default)]
    pub error: Option<Value>,
}

/// One containment branch's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Branch<T> {
    Done(T),
    Failed { error: String, cause: String },
    Missing,
}

impl<T> Branch<T> {
    /// The branch's report as `f` makes it, its failure or absence as it is.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Branch<U> {
        match self {
            Branch::Done(report) => Branch::Done(f(report)),
            Branch::Failed { error, cause } => Branch::Failed { error, cause },
            Branch::Missing => Branch::Missing,
        }
    }
}

fn branch<T: serde::de::DeserializeOwned>(value: Option<&Value>) -> Branch<T> {
    let Some(value) = value else {
        return Branch::Missing;
    };
    if value.get("status").and_then(Value::as_str) == Some("failed") {
        let field = |name| {
            value
                .pointer(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        return Branch::Failed {
            error: field("/error/Error"),
            cause: field("/error/Cause"),
        };
    }
    match serde_json::from_value(value.clone()) {
        Ok(report) => Branch::Done(report),
        Err(error) => Branch::Failed {
            error: "Cordon.UnreadableResult".into(),
            cause: error.to_string(),
        },
    }
}

impl WorkflowState {
    /// Reads the state whatever step it comes from. A failure in CaptureState leaves the raw
    /// event (with `error`) instead of a capture output: the finding is then read from it, so
    /// that the failure message still names the instance.
    pub fn from_value(value: &Value) -> WorkflowState {
        if let Ok(state) = serde_json::from_value::<WorkflowState>(value.clone()) {
            return state;
        }
        let event = value.get("event").unwrap_or(value);
        let finding = crate::steps::single_finding(event).ok();
        let mut capture = crate::capture::CaptureOutput::skipped(
            finding.as_ref().and_then(|f| f.instance_id.clone()),
            finding.as_ref().map(crate::capture::FindingSummary::from),
            "the workflow stopped before the capture finished".into(),
        );
        capture.status = crate::capture::CaptureStatus::Skipped;
        WorkflowState {
            capture,
            containment: None,
            approval: None,
            restore: None,
            error: value.get("error").cloned(),
        }
    }

    pub fn isolation(&self) -> Branch<IsolationReport> {
        branch(self.containment.as_ref().and_then(|c| c.get("isolation")))
    }

    pub fn nacl(&self) -> Branch<NaclReport> {
        branch(self.containment.as_ref().and_then(|c| c.get("nacl")))
    }

    /// The Auto Scaling branch (Missing in an execution of a definition from before it).
    pub fn auto_scaling(&self) -> Branch<crate::measures::auto_scaling::Report> {
        branch(
            self.containment
                .as_ref()
                .and_then(|c| c.get("auto_scaling")),
        )
    }

    /// The credentials branch (Missing in an execution of a definition from before it).
    pub fn credentials(&self) -> Branch<crate::measures::credentials::Report> {
        branch(self.containment.as_ref().and_then(|c| c.get("credentials")))
    }

    /// The evidence branch (Missing in an execution of a definition from before it).
    pub fn evidence(&self) -> Branch<crate::measures::evidence::Report> {
        branch(self.containment.as_ref().and_then(|c| c.get("evidence")))
    }

    /// The load-balancer branch (Missing in an execution of a definition from before it).
    pub fn load_balancers(&self) -> Branch<crate::measures::load_balancers::Report> {
        branch(
            self.containment
                .as_ref()
                .and_then(|c| c.get("load_balancers")),
        )
    }

    pub fn restore_report(&self) -> Option<RestoreReport> {
        self.restore
            .as_ref()
            .and_then(|r| serde_json::from_value(r.clone()).ok())
    }

    /// Whether containment fell short anywhere (a failed branch or errors in a report). An
    /// instance its group may still replace is contained short of what Cordon promises.
    pub fn containment_is_partial(&self) -> bool {
        let isolation_short = match self.isolation() {
            Branch::Done(report) => !report.errors.is_empty(),
            _ => true,
        };
        let nacl_short = match self.nacl() {
            Branch::Done(report) => !report.errors.is_empty(),
            _ => true,
        };
        let auto_scaling_short = match self.auto_scaling() {
            Branch::Done(report) => !report.errors.is_empty(),
            Branch::Failed { .. } => true,
            Branch::Missing => false,
        };
        // Stolen copies of the instance's credentials still work.
        let credentials_short = match self.credentials() {
            Branch::Done(report) => !report.errors.is_empty(),
            Branch::Failed { .. } => true,
            Branch::Missing => false,
        };
        // Still a target of its own groups: health checks and, all targets down, traffic.
        let load_balancers_short = match self.load_balancers() {
            Branch::Done(report) => !report.errors.is_empty(),
            Branch::Failed { .. } => true,
            Branch::Missing => false,
        };
        isolation_short
            || nacl_short
            || auto_scaling_short
            || credentials_short
            || load_balancers_short
    }

    pub fn region(&self) -> &str {
        self.capture
            .finding
            .as_ref()
            .and_then(|f| f.region.as_deref())
            .unwrap_or("us-east-1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_capture_failure_still_names_the_instance_and_the_error() {
        let value = json!({
            "detail-type": "GuardDuty Finding",
            "detail": {"id": "f-1", "type": "Backdoor:EC2/C&CActivity.B", "severity": 8,
                "resource": {"resourceType": "Instance", "instanceDetails": {"instanceId": "i-0000abcd"}}},
            "error": {"Error": "Cordon.AccessDenied", "Cause": "DescribeInstances"}
        });
        let state = WorkflowState::from_value(&value);
        assert_eq!(state.capture.instance_id.as_deref(), Some("i-0000abcd"));
        assert_eq!(state.error.unwrap()["Error"], "Cordon.AccessDenied");
    }

    #[test]
    fn a_failed_branch_reads_as_failed_and_makes_containment_partial() {
        let state: WorkflowState = serde_json::from_value(json!({
            "status": "captured", "reason": "r", "instance_id": "i-00000001", "finding": null, "record": null,
            "tags_written": true, "warnings": [],
            "containment": {
                "isolation": {"instance_id": "i-00000001", "status": "done", "enis": [], "groups": {}, "termination_protection": true, "errors": []},
                "nacl": {"status": "failed", "error": {"Error": "Cordon.AccessDenied", "Cause": "no CreateNetworkAclEntry"}}
            }
        }))
        .unwrap();
        assert!(matches!(state.isolation(), Branch::Done(_)));
        assert_eq!(
            state.nacl(),
            Branch::Failed {
                error: "Cordon.AccessDenied".into(),
                cause: "no CreateNetworkAclEntry".into()
            }
        );
        assert!(state.containment_is_partial());
    }
}
