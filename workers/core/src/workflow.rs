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
    /// `[IsolateSecurityGroups result, BlockNetworkAcl result]`; a branch that failed holds
    /// `{"status": "failed", "error": {"Error", "Cause"}}`.
    #[serde(default)]
    pub containment: Option<Vec<Value>>,
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
    pub fn isolation(&self) -> Branch<IsolationReport> {
        branch(self.containment.as_ref().and_then(|c| c.first()))
    }

    pub fn nacl(&self) -> Branch<NaclReport> {
        branch(self.containment.as_ref().and_then(|c| c.get(1)))
    }

    pub fn restore_report(&self) -> Option<RestoreReport> {
        self.restore
            .as_ref()
            .and_then(|r| serde_json::from_value(r.clone()).ok())
    }

    /// Whether containment fell short anywhere (a failed branch or errors in a report).
    pub fn containment_is_partial(&self) -> bool {
        let isolation_short = match self.isolation() {
            Branch::Done(report) => !report.errors.is_empty(),
            _ => true,
        };
        let nacl_short = match self.nacl() {
            Branch::Done(report) => !report.errors.is_empty(),
            _ => true,
        };
        isolation_short || nacl_short
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
    fn a_failed_branch_reads_as_failed_and_makes_containment_partial() {
        let state: WorkflowState = serde_json::from_value(json!({
            "status": "captured", "reason": "r", "instance_id": "i-1", "finding": null, "record": null,
            "tags_written": true, "warnings": [],
            "containment": [
                {"instance_id": "i-1", "status": "done", "enis": [], "groups": {}, "termination_protection": true, "errors": []},
                {"status": "failed", "error": {"Error": "Cordon.AccessDenied", "Cause": "no CreateNetworkAclEntry"}}
            ]
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
