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
}
