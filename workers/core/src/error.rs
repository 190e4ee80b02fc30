//! Typed errors. Each carries the Step Functions error name the state machine retries or
//! catches on, so a failure means the same thing in a Lambda, in the CLI and in a test.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CordonError {
    #[error("AWS throttled {operation}: {message}; retry with backoff")]
    Throttled { operation: String, message: String },

    #[error("AWS did not answer {operation}: {message}; check the endpoint and network, or retry")]
    Unavailable { operation: String, message: String },

    #[error("instance {instance_id} was not found in this account and region; check the id and the region the finding came from")]
    InstanceNotFound { instance_id: String },

    #[error("network interface {eni_id} no longer exists")]
    InterfaceNotFound { eni_id: String },

    #[error("network ACL {acl_id} has {existing} {direction} rules, at its quota of {quota}; no deny rule could be added")]
    NaclQuotaExceeded {
        acl_id: String,
        direction: String,
        existing: usize,
        quota: usize,
    },

    #[error("network ACL {acl_id} has no free {direction} rule number in the band {first}..={last} below its lowest allow rule; widen CORDON_NACL_BAND or free a number")]
    NaclBandExhausted {
        acl_id: String,
        direction: String,
        first: i32,
        last: i32,
    },

    #[error("network ACL {acl_id} already has {direction} rule {rule_number}")]
    NaclEntryExists {
        acl_id: String,
        direction: String,
        rule_number: i32,
    },

    #[error("a security group named {group_name} already exists in {vpc_id}")]
    GroupDuplicate { vpc_id: String, group_name: String },

    #[error("not allowed to call {operation}: {message}; grant it to the role Cordon runs as")]
    AccessDenied { operation: String, message: String },

    #[error("account {account} is not enrolled in Cordon, or its member role was removed or no longer trusts Cordon: {message}; deploy infra/member-role.yaml there with this stack's name and external id, and list the enrolled accounts in Cordon's scope (Accounts) so that findings from others are skipped")]
    NotEnrolled { account: String, message: String },

    #[error("{resource} already carries {existing} tags; writing {needed} more would pass EC2's limit of {limit}")]
    TagQuotaExceeded {
        resource: String,
        existing: usize,
        needed: usize,
        limit: usize,
    },

    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("invalid configuration: {0}")]
    InvalidConfiguration(String),

    #[error("the Cordon record on {resource} cannot be read: {message}")]
    CorruptRecord { resource: String, message: String },

    #[error("{0}")]
    NotContainable(String),

    #[error("EC2 {operation} failed ({code}): {message}")]
    Ec2 {
        operation: String,
        code: String,
        message: String,
    },

    #[error("Auto Scaling {operation} failed ({code}): {message}")]
    AutoScaling {
        operation: String,
        code: String,
        message: String,
    },

    #[error("Elastic Load Balancing {operation} failed ({code}): {message}")]
    LoadBalancing {
        operation: String,
        code: String,
        message: String,
    },

    #[error("IAM {operation} failed ({code}): {message}")]
    Iam {
        operation: String,
        code: String,
        message: String,
    },

    #[error("{operation} failed ({code}): {message}")]
    Findings {
        operation: String,
        code: String,
        message: String,
    },

    #[error("report-only mode: Cordon would have called {operation} on {target}, and refused to; nothing was changed. This is a fault in Cordon (a report-only step must only read): report it")]
    ReportOnlyWrite { operation: String, target: String },

    #[error("KMS {operation} with key {key_id} failed ({code}): {message}; check the key exists and is enabled, that it is an HMAC_256 key, and that the key policy and the function's role allow the call")]
    Kms {
        operation: String,
        key_id: String,
        code: String,
        message: String,
    },
}

impl CordonError {
    /// The error name Step Functions sees (`Retry`/`Catch` `ErrorEquals`).
    pub fn error_name(&self) -> &'static str {
        match self {
            CordonError::Throttled { .. } => "Cordon.Throttled",
            CordonError::Unavailable { .. } => "Cordon.Unavailable",
            CordonError::InstanceNotFound { .. } => "Cordon.InstanceNotFound",
            CordonError::InterfaceNotFound { .. } => "Cordon.InterfaceNotFound",
            CordonError::NaclQuotaExceeded { .. } => "Cordon.NaclQuotaExceeded",
            CordonError::NaclBandExhausted { .. } => "Cordon.NaclBandExhausted",
            CordonError::NaclEntryExists { .. } => "Cordon.NaclEntryExists",
            CordonError::GroupDuplicate { .. } => "Cordon.GroupDuplicate",
            CordonError::AccessDenied { .. } => "Cordon.AccessDenied",
            CordonError::NotEnrolled { .. } => "Cordon.NotEnrolled",
            CordonError::TagQuotaExceeded { .. } => "Cordon.TagQuotaExceeded",
            CordonError::InvalidInput(_) => "Cordon.InvalidInput",
            CordonError::InvalidConfiguration(_) => "Cordon.InvalidConfiguration",
            CordonError::CorruptRecord { .. } => "Cordon.CorruptRecord",
            CordonError::NotContainable(_) => "Cordon.NotContainable",
            CordonError::Ec2 { .. } => "Cordon.Ec2Error",
            CordonError::AutoScaling { .. } => "Cordon.AutoScalingError",
            CordonError::LoadBalancing { .. } => "Cordon.LoadBalancingError",
            CordonError::Iam { .. } => "Cordon.IamError",
            CordonError::Findings { .. } => "Cordon.FindingsError",
            CordonError::Kms { .. } => "Cordon.KmsError",
            CordonError::ReportOnlyWrite { .. } => "Cordon.ReportOnlyWrite",
        }
    }

    /// The error names worth retrying with backoff: the same call may succeed later.
    pub const TRANSIENT_NAMES: [&'static str; 2] = ["Cordon.Throttled", "Cordon.Unavailable"];

    /// Lambda's own failures that every Task of the definition retries as well:
    /// `Lambda.Unknown` is how Step Functions reports a function that timed out or crashed,
    /// `Lambda.ClientExecutionTimeoutException` an invocation that did not answer in time.
    /// Every step is idempotent and records before it changes, so running it again is safe.
    pub const LAMBDA_RETRY_NAMES: [&'static str; 6] = [
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
        "Lambda.Unknown",
        "Lambda.ClientExecutionTimeoutException",
    ];

    /// Whether the same call may succeed if simply tried again later.
    pub fn is_transient(&self) -> bool {
        Self::TRANSIENT_NAMES.contains(&self.error_name())
    }

    pub fn to_report(&self) -> StepError {
        StepError {
            error: self.error_name().to_string(),
            cause: self.to_string(),
        }
    }
}

/// A failure kept in a report (partial work), shaped like a Step Functions error.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StepError {
    pub error: String,
    pub cause: String,
}

impl From<CordonError> for lambda_runtime::Diagnostic {
    fn from(error: CordonError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_name().to_string(),
            error_message: error.to_string(),
        }
    }
}

pub type Result<T, E = CordonError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_what_the_state_machine_matches() {
        let throttled = CordonError::Throttled {
            operation: "CreateNetworkAclEntry".into(),
            message: "Rate exceeded".into(),
        };
        assert_eq!(throttled.error_name(), "Cordon.Throttled");
        assert!(throttled.is_transient());
        let missing = CordonError::InstanceNotFound {
            instance_id: "i-0000abcd".into(),
        };
        assert_eq!(missing.error_name(), "Cordon.InstanceNotFound");
        assert!(!missing.is_transient());
        let diagnostic: lambda_runtime::Diagnostic = missing.into();
        assert_eq!(diagnostic.error_type, "Cordon.InstanceNotFound");
        assert!(diagnostic.error_message.contains("i-0000abcd"));
    }
}
