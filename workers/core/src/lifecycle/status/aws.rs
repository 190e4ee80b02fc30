//! The Security Hub and GuardDuty ports implemented with aws-sdk-securityhub and
//! aws-sdk-guardduty, with the same attempts and attempt timeout as every Cordon call.

use aws_sdk_securityhub::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_securityhub::types::{
    AwsSecurityFindingIdentifier, NoteUpdate, WorkflowStatus as HubStatus, WorkflowUpdate,
};

use super::port::{GuardDuty, GuardDutyProvider, SecurityHub, SecurityHubProvider, Unprocessed};
use super::{FindingArn, WorkflowStatus, NOTE_AUTHOR};
use crate::aws::{sdk_error, service_client, AwsContext};
use crate::ec2::Target;
use crate::{CordonError, Result};
use serde_json::{json, Value};

/// A Security Hub or GuardDuty error as Cordon's (throttling and no answer stay what they are).
fn error<E, R>(operation: &str, subject: &str, error: SdkError<E, R>) -> CordonError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match sdk_error(operation, subject, error) {
        CordonError::Ec2 {
            operation,
            code,
            message,
        } => CordonError::Findings {
            operation,
            code,
            message,
        },
        other => other,
    }
}

#[derive(Debug, Clone)]
pub struct AwsSecurityHub {
    client: aws_sdk_securityhub::Client,
}

impl SecurityHubProvider for AwsContext {
    type SecurityHub = AwsSecurityHub;

    async fn security_hub_for(&self, target: &Target) -> Result<AwsSecurityHub> {
        let credentials = self.credentials_for(target).await?;
        Ok(AwsSecurityHub {
            client: service_client!(
                aws_sdk_securityhub,
                self,
                target.region.as_deref(),
                credentials
            ),
        })
    }
}

impl SecurityHub for AwsSecurityHub {
    async fn update_workflow(
        &self,
        finding: &FindingArn,
        status: WorkflowStatus,
        note: Option<&str>,
    ) -> Result<Option<Unprocessed>> {
        let operation = "Security Hub BatchUpdateFindings";
        let mut request = self
            .client
            .batch_update_findings()
            .finding_identifiers(
                AwsSecurityFindingIdentifier::builder()
                    .id(&finding.arn)
                    .product_arn(finding.product_arn())
                    .build(),
            )
            .workflow(
                WorkflowUpdate::builder()
                    .status(HubStatus::from(status.as_str()))
                    .build(),
            );
        if let Some(note) = note {
            request = request.note(
                NoteUpdate::builder()
                    .text(note)
                    .updated_by(NOTE_AUTHOR)
                    .build(),
            );
        }
        let updated = request
            .send()
            .await
            .map_err(|e| error(operation, &finding.arn, e))?;
        Ok(updated
            .unprocessed_findings()
            .first()
            .map(|unprocessed| Unprocessed {
                code: unprocessed.error_code().unwrap_or_default().to_string(),
                message: unprocessed.error_message().unwrap_or_default().to_string(),
            }))
    }
}

#[derive(Debug, Clone)]
pub struct AwsGuardDuty {
    client: aws_sdk_guardduty::Client,
}

impl GuardDutyProvider for AwsContext {
    type GuardDuty = AwsGuardDuty;

    async fn guard_duty_in(&self, region: Option<&str>) -> Result<AwsGuardDuty> {
        // Cordon's own credentials: it runs in the GuardDuty administrator, which alone may
        // archive its members' findings.
        let own: Option<aws_sdk_guardduty::config::Credentials> = None;
        Ok(AwsGuardDuty {
            client: service_client!(aws_sdk_guardduty, self, region, own),
        })
    }
}

impl GuardDuty for AwsGuardDuty {
    async fn detector(&self) -> Result<Option<String>> {
        let listed = self
            .client
            .list_detectors()
            .send()
            .await
            .map_err(|e| error("GuardDuty ListDetectors", "", e))?;
        Ok(listed.detector_ids().first().cloned())
    }

    async fn archive(&self, detector: &str, finding_id: &str) -> Result<()> {
        self.client
            .archive_findings()
            .detector_id(detector)
            .finding_ids(finding_id)
            .send()
            .await
            .map_err(|e| error("GuardDuty ArchiveFindings", finding_id, e))?;
        Ok(())
    }

    async fn finding(&self, detector: &str, finding_id: &str) -> Result<Option<Value>> {
        let got = self
            .client
            .get_findings()
            .detector_id(detector)
            .finding_ids(finding_id)
            .send()
            .await
            .map_err(|e| error("GuardDuty GetFindings", finding_id, e))?;
        Ok(got
            .findings()
            .iter()
            .find(|f| f.id() == Some(finding_id))
            .map(as_event_detail))
    }
}

/// A finding from `GetFindings`, as EventBridge delivers it in an event's `detail`: the fields
/// Cordon reads (`finding::parse`), in GuardDuty's own JSON names.
pub fn as_event_detail(finding: &aws_sdk_guardduty::types::Finding) -> Value {
    use aws_sdk_guardduty::types::RemoteIpDetails;
    let remote = |details: Option<&RemoteIpDetails>| {
        details.map(|d| json!({"ipAddressV4": d.ip_address_v4(), "ipAddressV6": d.ip_address_v6()}))
    };
    let resource = finding.resource();
    let instance = resource.and_then(|r| r.instance_details()).map(|i| {
        json!({
            "instanceId": i.instance_id(),
            "tags": i.tags().iter()
                .map(|t| json!({"key": t.key(), "value": t.value()}))
                .collect::<Vec<_>>(),
        })
    });
    let access_key = resource.and_then(|r| r.access_key_details()).map(|k| {
        json!({"principalId": k.principal_id(), "userName": k.user_name(), "userType": k.user_type()})
    });
    let service = finding.service();
    let action = service.and_then(|s| s.action()).map(|a| {
        json!({
            "actionType": a.action_type(),
            "networkConnectionAction": a.network_connection_action()
                .map(|n| json!({"remoteIpDetails": remote(n.remote_ip_details())})),
            "awsApiCallAction": a.aws_api_call_action()
                .map(|c| json!({"remoteIpDetails": remote(c.remote_ip_details())})),
            "kubernetesApiCallAction": a.kubernetes_api_call_action()
                .map(|c| json!({"remoteIpDetails": remote(c.remote_ip_details())})),
            "rdsLoginAttemptAction": a.rds_login_attempt_action()
                .map(|c| json!({"remoteIpDetails": remote(c.remote_ip_details())})),
            "portProbeAction": a.port_probe_action().map(|p| json!({
                "portProbeDetails": p.port_probe_details().iter()
                    .map(|d| json!({"remoteIpDetails": remote(d.remote_ip_details())}))
                    .collect::<Vec<_>>(),
            })),
        })
    });
    without_nulls(json!({
        "id": finding.id(),
        "arn": finding.arn(),
        "type": finding.r#type(),
        "severity": finding.severity(),
        "accountId": finding.account_id(),
        "region": finding.region(),
        "partition": finding.partition(),
        "createdAt": finding.created_at(),
        "updatedAt": finding.updated_at(),
        "title": finding.title(),
        "resource": {
            "resourceType": resource.and_then(|r| r.resource_type()),
            "instanceDetails": instance,
            "accessKeyDetails": access_key,
        },
        "service": {
            "archived": service.and_then(|s| s.archived()),
            "resourceRole": service.and_then(|s| s.resource_role()),
            "eventFirstSeen": service.and_then(|s| s.event_first_seen()),
            "eventLastSeen": service.and_then(|s| s.event_last_seen()),
            "additionalInfo": service.and_then(|s| s.additional_info())
                .map(|i| json!({"value": i.value(), "type": i.r#type()})),
            "action": action,
        },
    }))
}

/// EventBridge leaves a field out rather than sending it null: so does this.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}
