//! The Auto Scaling port implemented with aws-sdk-autoscaling, in a finding's account (through
//! the member role) and region, with the same retries and attempt timeout as EC2's calls.

use aws_sdk_autoscaling::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_autoscaling::Client;

use super::port::{
    counts_toward_capacity, AutoScaling, AutoScalingProvider, Group, Membership, Refresh,
};
use crate::aws::{sdk_error, service_client, AwsContext};
use crate::ec2::Target;
use crate::{CordonError, Result};

#[derive(Debug, Clone)]
pub struct AwsAutoScaling {
    client: Client,
}

impl AutoScalingProvider for AwsContext {
    type AutoScaling = AwsAutoScaling;

    async fn autoscaling_for(&self, target: &Target) -> Result<AwsAutoScaling> {
        let credentials = self.credentials_for(target).await?;
        Ok(AwsAutoScaling {
            client: service_client!(
                aws_sdk_autoscaling,
                self,
                target.region.as_deref(),
                credentials
            ),
        })
    }
}

/// An Auto Scaling error as Cordon's. `ResourceContention` and `ScalingActivityInProgress`
/// say another change to the group is under way: worth retrying, as throttling is.
fn error<E, R>(operation: &str, subject: &str, error: SdkError<E, R>) -> CordonError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if matches!(
        error.code(),
        Some("ResourceContention" | "ScalingActivityInProgress")
    ) {
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
        } => CordonError::AutoScaling {
            operation,
            code,
            message,
        },
        other => other,
    }
}

impl AutoScaling for AwsAutoScaling {
    async fn membership(&self, instance_id: &str) -> Result<Option<Membership>> {
        let answer = self
            .client
            .describe_auto_scaling_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| error("DescribeAutoScalingInstances", instance_id, e))?;
        Ok(answer
            .auto_scaling_instances()
            .iter()
            .find(|i| i.instance_id() == Some(instance_id))
            .map(|i| Membership {
                group: i.auto_scaling_group_name().unwrap_or_default().to_string(),
                lifecycle_state: i.lifecycle_state().unwrap_or_default().to_string(),
                protected_from_scale_in: i.protected_from_scale_in().unwrap_or(false),
            }))
    }

    async fn group(&self, name: &str) -> Result<Group> {
        let answer = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| error("DescribeAutoScalingGroups", name, e))?;
        let group = answer
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name))
            .ok_or_else(|| CordonError::AutoScaling {
                operation: "DescribeAutoScalingGroups".into(),
                code: "NotFound".into(),
                message: format!("Auto Scaling group {name} was not found"),
            })?;
        Ok(Group {
            name: name.to_string(),
            min: group.min_size().unwrap_or_default(),
            max: group.max_size().unwrap_or_default(),
            desired: group.desired_capacity().unwrap_or_default(),
            counted: group
                .instances()
                .iter()
                .filter(|i| {
                    counts_toward_capacity(i.lifecycle_state().map(|s| s.as_str()).unwrap_or(""))
                })
                .count() as i32,
            target_groups: group.target_group_arns().to_vec(),
        })
    }

    async fn enter_standby(&self, group: &str, instance_id: &str, decrement: bool) -> Result<()> {
        self.client
            .enter_standby()
            .auto_scaling_group_name(group)
            .instance_ids(instance_id)
            .should_decrement_desired_capacity(decrement)
            // One attempt: no idempotency token, and AWS refuses it once made; the measure
            // reads the lifecycle state before it tries again (`move_instance`).
            .customize()
            .config_override(
                aws_sdk_autoscaling::config::Builder::default().retry_config(
                    aws_sdk_autoscaling::config::retry::RetryConfig::standard()
                        .with_max_attempts(1),
                ),
            )
            .send()
            .await
            .map_err(|e| error("EnterStandby", instance_id, e))?;
        Ok(())
    }

    async fn exit_standby(&self, group: &str, instance_id: &str) -> Result<()> {
        self.client
            .exit_standby()
            .auto_scaling_group_name(group)
            .instance_ids(instance_id)
            // One attempt: no idempotency token, and AWS refuses it once made; the measure
            // reads the lifecycle state before it tries again (`move_instance`).
            .customize()
            .config_override(
                aws_sdk_autoscaling::config::Builder::default().retry_config(
                    aws_sdk_autoscaling::config::retry::RetryConfig::standard()
                        .with_max_attempts(1),
                ),
            )
            .send()
            .await
            .map_err(|e| error("ExitStandby", instance_id, e))?;
        Ok(())
    }

    async fn set_scale_in_protection(
        &self,
        group: &str,
        instance_id: &str,
        protected: bool,
    ) -> Result<()> {
        self.client
            .set_instance_protection()
            .auto_scaling_group_name(group)
            .instance_ids(instance_id)
            .protected_from_scale_in(protected)
            .send()
            .await
            .map_err(|e| error("SetInstanceProtection", instance_id, e))?;
        Ok(())
    }

    async fn set_desired_capacity(&self, group: &str, desired: i32) -> Result<()> {
        self.client
            .set_desired_capacity()
            .auto_scaling_group_name(group)
            .desired_capacity(desired)
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| error("SetDesiredCapacity", group, e))?;
        Ok(())
    }

    async fn refresh_in_progress(&self, group: &str) -> Result<Option<Refresh>> {
        // One attempt: the answer only adds a warning to the report, and waiting out five
        // attempts of a failing read would hold up the whole containment's report.
        let answer = self
            .client
            .describe_instance_refreshes()
            .auto_scaling_group_name(group)
            .customize()
            .config_override(aws_sdk_autoscaling::config::Config::builder().retry_config(
                aws_sdk_autoscaling::config::retry::RetryConfig::standard().with_max_attempts(1),
            ))
            .send()
            .await
            .map_err(|e| error("DescribeInstanceRefreshes", group, e))?;
        Ok(answer
            .instance_refreshes()
            .iter()
            .find(|r| {
                matches!(
                    r.status().map(|s| s.as_str()),
                    Some("Pending" | "InProgress" | "Cancelling" | "RollbackInProgress")
                )
            })
            .map(|r| Refresh {
                id: r.instance_refresh_id().unwrap_or_default().to_string(),
                standby_instances: r
                    .preferences()
                    .and_then(|p| p.standby_instances())
                    .map(|s| s.as_str().to_string())
                    // AWS's default when a refresh names none.
                    .unwrap_or_else(|| "Wait".into()),
            }))
    }
}
