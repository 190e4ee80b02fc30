//! The Security Hub and GuardDuty ports: one method per API call Cordon makes to follow a
//! finding, with each service's rules enforced in the fakes (Security Hub answers a finding it
//! does not hold as unprocessed, refuses a note longer than 512 characters; GuardDuty lets only
//! an account with a detector, and only an administrator or a standalone account, archive).

use std::future::Future;

use super::{FindingArn, WorkflowStatus};
use crate::ec2::Target;
use crate::Result;

/// A finding Security Hub did not update (`UnprocessedFindings`): its code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprocessed {
    pub code: String,
    pub message: String,
}

pub trait SecurityHub: Sync {
    /// `BatchUpdateFindings` for one finding: its workflow status, and a note if given (it
    /// replaces the finding's note). `Ok(None)` when Security Hub took the update,
    /// `Ok(Some(..))` when it answered but left the finding.
    fn update_workflow(
        &self,
        finding: &FindingArn,
        status: WorkflowStatus,
        note: Option<&str>,
    ) -> impl Future<Output = Result<Option<Unprocessed>>> + Send;
}

/// Security Hub in a finding's account (through the member role) and region: an account may
/// always update its own findings.
pub trait SecurityHubProvider: Sync {
    type SecurityHub: SecurityHub;
    fn security_hub_for(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Self::SecurityHub>> + Send;
}

pub trait GuardDuty: Sync {
    /// The region's detector in this account (`ListDetectors`; GuardDuty has one per region).
    fn detector(&self) -> impl Future<Output = Result<Option<String>>> + Send;
    /// `ArchiveFindings` for one finding of `detector`.
    fn archive(&self, detector: &str, finding_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// `GetFindings` for one finding that `detector` sees (an administrator's detector sees its
    /// members' findings), in the shape EventBridge delivers a finding's `detail` in. `None`
    /// when GuardDuty holds no such finding.
    fn finding(
        &self,
        detector: &str,
        finding_id: &str,
    ) -> impl Future<Output = Result<Option<serde_json::Value>>> + Send;
}

/// GuardDuty in Cordon's own account, in `region`: only a GuardDuty administrator (or a
/// standalone account) may archive, and Cordon runs in the delegated administrator.
pub trait GuardDutyProvider: Sync {
    type GuardDuty: GuardDuty;
    fn guard_duty_in(
        &self,
        region: Option<&str>,
    ) -> impl Future<Output = Result<Self::GuardDuty>> + Send;
}

/// The ports' fakes: findings in memory, every call logged by its IAM name.
#[cfg(test)]
pub mod fake {
    use super::*;
    use crate::CordonError;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    /// A finding as Security Hub holds it.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct HubFinding {
        pub product_arn: String,
        pub status: String,
        pub notes: Vec<String>,
    }

    #[derive(Debug, Default)]
    pub struct State {
        /// Security Hub not enabled in the account: every call is refused.
        pub hub_disabled: bool,
        /// By finding ARN (the ASFF `Id`).
        pub hub_findings: BTreeMap<String, HubFinding>,
        /// The account's GuardDuty detector in the region, and whether it is a member (which
        /// may not archive).
        pub detector: Option<String>,
        pub member: bool,
        pub archived: Vec<String>,
        /// The findings GuardDuty holds, by id, as EventBridge would deliver their `detail`.
        pub guard_duty_findings: BTreeMap<String, serde_json::Value>,
        pub calls: Vec<String>,
        /// An error each call of this IAM name answers.
        pub failing: BTreeMap<String, CordonError>,
    }

    #[derive(Debug, Clone, Default)]
    pub struct FakeFindings(pub Arc<Mutex<State>>);

    impl FakeFindings {
        pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
            f(&mut self.0.lock().unwrap())
        }

        fn call(&self, name: &str) -> Result<()> {
            self.with(|s| {
                s.calls.push(name.into());
                s.failing.get(name).cloned().map_or(Ok(()), Err)
            })
        }
    }

    fn refused(operation: &str, code: &str, message: &str) -> CordonError {
        CordonError::Findings {
            operation: operation.into(),
            code: code.into(),
            message: message.into(),
        }
    }

    impl SecurityHub for FakeFindings {
        async fn update_workflow(
            &self,
            finding: &FindingArn,
            status: WorkflowStatus,
            note: Option<&str>,
        ) -> Result<Option<Unprocessed>> {
            let operation = "Security Hub BatchUpdateFindings";
            self.call("securityhub:BatchUpdateFindings")?;
            self.with(|s| {
                if s.hub_disabled {
                    return Err(refused(
                        operation,
                        "InvalidAccessException",
                        "Account is not subscribed to AWS Security Hub",
                    ));
                }
                let length = note.map(|n| n.chars().count()).unwrap_or(1);
                if !(1..=512).contains(&length) || note.is_some_and(|n| n.trim().is_empty()) {
                    return Err(refused(
                        operation,
                        "InvalidInputException",
                        "Note.Text must be 1 to 512 characters and not blank",
                    ));
                }
                match s.hub_findings.get_mut(&finding.arn) {
                    Some(held) if held.product_arn == finding.product_arn() => {
                        held.status = status.as_str().into();
                        held.notes.extend(note.map(String::from));
                        Ok(None)
                    }
                    _ => Ok(Some(Unprocessed {
                        code: "FindingNotFound".into(),
                        message: "Finding Not Found".into(),
                    })),
                }
            })
        }
    }

    impl SecurityHubProvider for FakeFindings {
        type SecurityHub = FakeFindings;
        async fn security_hub_for(&self, _target: &Target) -> Result<FakeFindings> {
            Ok(self.clone())
        }
    }

    impl GuardDuty for FakeFindings {
        async fn detector(&self) -> Result<Option<String>> {
            self.call("guardduty:ListDetectors")?;
            Ok(self.with(|s| s.detector.clone()))
        }

        async fn archive(&self, detector: &str, finding_id: &str) -> Result<()> {
            self.call("guardduty:ArchiveFindings")?;
            self.with(|s| {
                if s.detector.as_deref() != Some(detector) {
                    return Err(refused(
                        "GuardDuty ArchiveFindings",
                        "BadRequestException",
                        "The request is rejected because the input detectorId is not owned by the current account.",
                    ));
                }
                if s.member {
                    return Err(refused(
                        "GuardDuty ArchiveFindings",
                        "BadRequestException",
                        "Member accounts cannot archive findings.",
                    ));
                }
                s.archived.push(finding_id.into());
                Ok(())
            })
        }

        async fn finding(
            &self,
            detector: &str,
            finding_id: &str,
        ) -> Result<Option<serde_json::Value>> {
            self.get_finding(detector, finding_id)
        }
    }

    impl FakeFindings {
        fn get_finding(
            &self,
            detector: &str,
            finding_id: &str,
        ) -> Result<Option<serde_json::Value>> {
            self.call("guardduty:GetFindings")?;
            self.with(|s| {
                if s.detector.as_deref() != Some(detector) {
                    return Err(refused(
                        "GuardDuty GetFindings",
                        "BadRequestException",
                        "The request is rejected because the input detectorId is not owned by the current account.",
                    ));
                }
                Ok(s.guard_duty_findings.get(finding_id).cloned())
            })
        }
    }

    impl GuardDutyProvider for FakeFindings {
        type GuardDuty = FakeFindings;
        async fn guard_duty_in(&self, _region: Option<&str>) -> Result<FakeFindings> {
            Ok(self.clone())
        }
    }
}
