//! The Elastic Load Balancing port implemented with aws-sdk-elasticloadbalancingv2, in a
//! finding's account (through the member role) and region, with the same retries and attempt
//! timeout as EC2's calls.

use aws_sdk_elasticloadbalancingv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_elasticloadbalancingv2::types::{Tag, TargetDescription, TargetHealthStateEnum};
use aws_sdk_elasticloadbalancingv2::Client;

use super::port::{LoadBalancing, LoadBalancingProvider, Tagged, TargetGroup};
use crate::aws::{sdk_error, service_client, AwsContext};
use crate::ec2::Target;
use crate::{CordonError, Result};

#[derive(Debug, Clone)]
pub struct AwsLoadBalancing {
    client: Client,
}

impl LoadBalancingProvider for AwsContext {
    type LoadBalancing = AwsLoadBalancing;

    async fn load_balancing_for(&self, target: &Target) -> Result<AwsLoadBalancing> {
        let credentials = self.credentials_for(target).await?;
        Ok(AwsLoadBalancing {
            client: service_client!(
                aws_sdk_elasticloadbalancingv2,
                self,
                target.region.as_deref(),
                credentials
            ),
        })
    }
}

/// An Elastic Load Balancing error as Cordon's.
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
        } => CordonError::LoadBalancing {
            operation,
            code,
            message,
        },
        other => other,
    }
}

fn targets(instance_id: &str, ports: &[i32]) -> Vec<TargetDescription> {
    ports
        .iter()
        .map(|port| {
            TargetDescription::builder()
                .id(instance_id)
                .port(*port)
                .build()
        })
        .collect()
}

impl LoadBalancing for AwsLoadBalancing {
    async fn target_groups(&self) -> Result<Vec<TargetGroup>> {
        let mut groups = Vec::new();
        let mut marker = None;
        loop {
            let answer = self
                .client
                .describe_target_groups()
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| error("DescribeTargetGroups", "target groups", e))?;
            groups.extend(answer.target_groups().iter().map(|g| {
                TargetGroup {
                    arn: g.target_group_arn().unwrap_or_default().to_string(),
                    vpc_id: g.vpc_id().unwrap_or_default().to_string(),
                    target_type: g
                        .target_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                }
            }));
            match answer.next_marker() {
                Some(next) => marker = Some(next.to_string()),
                None => return Ok(groups),
            }
        }
    }

    async fn registered_ports(&self, target_group: &str, instance_id: &str) -> Result<Vec<i32>> {
        let answer = self
            .client
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .map_err(|e| error("DescribeTargetHealth", target_group, e))?;
        Ok(answer
            .target_health_descriptions()
            .iter()
            .filter(|d| {
                d.target().and_then(|t| t.id()) == Some(instance_id)
                    && !matches!(
                        d.target_health().and_then(|h| h.state()),
                        Some(TargetHealthStateEnum::Draining)
                    )
            })
            .filter_map(|d| d.target().and_then(|t| t.port()))
            .collect())
    }

    async fn deregister(&self, target_group: &str, instance_id: &str, ports: &[i32]) -> Result<()> {
        self.client
            .deregister_targets()
            .target_group_arn(target_group)
            .set_targets(Some(targets(instance_id, ports)))
            .send()
            .await
            .map_err(|e| error("DeregisterTargets", target_group, e))?;
        Ok(())
    }

    async fn register(&self, target_group: &str, instance_id: &str, ports: &[i32]) -> Result<()> {
        self.client
            .register_targets()
            .target_group_arn(target_group)
            .set_targets(Some(targets(instance_id, ports)))
            .send()
            .await
            .map_err(|e| error("RegisterTargets", target_group, e))?;
        Ok(())
    }

    async fn tags(&self, target_groups: &[String]) -> Result<Vec<Tagged>> {
        if target_groups.is_empty() {
            return Ok(Vec::new());
        }
        let answer = self
            .client
            .describe_tags()
            .set_resource_arns(Some(target_groups.to_vec()))
            .send()
            .await
            .map_err(|e| error("DescribeTags", "target groups", e))?;
        Ok(answer
            .tag_descriptions()
            .iter()
            .map(|d| {
                (
                    d.resource_arn().unwrap_or_default().to_string(),
                    d.tags()
                        .iter()
                        .map(|t| {
                            (
                                t.key().unwrap_or_default().to_string(),
                                t.value().unwrap_or_default().to_string(),
                            )
                        })
                        .collect(),
                )
            })
            .collect())
    }

    async fn add_tags(&self, target_group: &str, tags: &[(String, String)]) -> Result<()> {
        let tags = tags
            .iter()
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect();
        self.client
            .add_tags()
            .resource_arns(target_group)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| error("AddTags", target_group, e))?;
        Ok(())
    }

    async fn remove_tags(&self, target_group: &str, keys: &[String]) -> Result<()> {
        self.client
            .remove_tags()
            .resource_arns(target_group)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| error("RemoveTags", target_group, e))?;
        Ok(())
    }
}
