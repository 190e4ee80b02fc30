//! The IAM port implemented with aws-sdk-iam, in a finding's account (through the member
//! role), with the same retries and attempt timeout as EC2's calls.

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::Client;

use super::port::{Iam, IamProvider};
use crate::aws::{sdk_error, service_client, AwsContext};
use crate::ec2::Target;
use crate::{CordonError, Result};

#[derive(Debug, Clone)]
pub struct AwsIam {
    client: Client,
}

impl IamProvider for AwsContext {
    type Iam = AwsIam;

    async fn iam_for(&self, target: &Target) -> Result<AwsIam> {
        let credentials = self.credentials_for(target).await?;
        // IAM is global; the region only picks the partition's endpoint.
        Ok(AwsIam {
            client: service_client!(aws_sdk_iam, self, target.region.as_deref(), credentials),
        })
    }

    fn region_of(&self, target: &Target) -> Option<String> {
        target
            .region
            .clone()
            .or_else(|| self.sdk_config().region().map(|r| r.to_string()))
    }
}

/// An IAM error as Cordon's, named by its IAM action so that reports and the fake agree.
fn error<E, R>(operation: &str, subject: &str, error: SdkError<E, R>) -> CordonError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    // IAM answers a change racing another on the same entity with ConcurrentModification.
    if error.code() == Some("ConcurrentModification") {
        return CordonError::Throttled {
            operation: operation.to_string(),
            message: error.message().unwrap_or_default().to_string(),
        };
    }
    match sdk_error(operation, subject, error) {
        CordonError::Ec2 {
            operation,
            code,
            message,
        } => CordonError::Iam {
            operation,
            code,
            message,
        },
        other => other,
    }
}

impl Iam for AwsIam {
    async fn profile_role(&self, profile: &str) -> Result<Option<String>> {
        let answer = self
            .client
            .get_instance_profile()
            .instance_profile_name(profile)
            .send()
            .await
            .map_err(|e| error("iam:GetInstanceProfile", profile, e))?;
        Ok(answer
            .instance_profile()
            .and_then(|p| p.roles().first())
            .map(|role| role.role_name().to_string()))
    }

    async fn role_tags(&self, role: &str) -> Result<Vec<(String, String)>> {
        let mut tags = Vec::new();
        let mut marker = None;
        loop {
            let answer = self
                .client
                .list_role_tags()
                .role_name(role)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| error("iam:ListRoleTags", role, e))?;
            tags.extend(
                answer
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string())),
            );
            match answer.marker() {
                Some(next) if answer.is_truncated() => marker = Some(next.to_string()),
                _ => return Ok(tags),
            }
        }
    }

    async fn tag_role(&self, role: &str, key: &str, value: &str) -> Result<()> {
        let tag = aws_sdk_iam::types::Tag::builder()
            .key(key)
            .value(value)
            .build()
            .map_err(|e| CordonError::InvalidInput(e.to_string()))?;
        self.client
            .tag_role()
            .role_name(role)
            .tags(tag)
            .send()
            .await
            .map_err(|e| error("iam:TagRole", role, e))?;
        Ok(())
    }

    async fn untag_role(&self, role: &str, keys: &[String]) -> Result<()> {
        self.client
            .untag_role()
            .role_name(role)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| error("iam:UntagRole", role, e))?;
        Ok(())
    }

    async fn attached_policies(&self, role: &str) -> Result<Vec<String>> {
        let mut arns = Vec::new();
        let mut marker = None;
        loop {
            let answer = self
                .client
                .list_attached_role_policies()
                .role_name(role)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| error("iam:ListAttachedRolePolicies", role, e))?;
            arns.extend(
                answer
                    .attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(String::from)),
            );
            match answer.marker() {
                Some(next) if answer.is_truncated() => marker = Some(next.to_string()),
                _ => return Ok(arns),
            }
        }
    }

    async fn attach_role_policy(&self, role: &str, policy_arn: &str) -> Result<()> {
        self.client
            .attach_role_policy()
            .role_name(role)
            .policy_arn(policy_arn)
            .send()
            .await
            .map_err(|e| error("iam:AttachRolePolicy", role, e))?;
        Ok(())
    }

    async fn detach_role_policy(&self, role: &str, policy_arn: &str) -> Result<()> {
        self.client
            .detach_role_policy()
            .role_name(role)
            .policy_arn(policy_arn)
            .send()
            .await
            .map_err(|e| error("iam:DetachRolePolicy", role, e))?;
        Ok(())
    }
}
