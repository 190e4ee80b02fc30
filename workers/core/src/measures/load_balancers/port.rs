//! The Elastic Load Balancing (v2) port: what Cordon asks of target groups, one method per API
//! call, with AWS's rules enforced in the fake (a target group of another VPC or of another
//! target type refuses an instance; an unknown target group is an error; a tag's key and value
//! take only the characters and lengths AWS's API reference allows, which moto does not check).

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::ec2::Target;
use crate::Result;

/// A target group (`DescribeTargetGroups`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroup {
    pub arn: String,
    pub vpc_id: String,
    /// `instance`, `ip`, `lambda` or `alb`: only `instance` groups name instances.
    pub target_type: String,
}

/// A target group's ARN and its tags.
pub type Tagged = (String, Vec<(String, String)>);

/// Whether Elastic Load Balancing takes `text` as a tag key or value of at most `longest`
/// characters. Its API reference gives both the pattern `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`:
/// letters, separators (spaces), numbers and `_ . : / = + - @`; no comma, no semicolon.
/// Keys take 1 to 128 characters, values 0 to 256.
pub fn tag_text_allowed(text: &str, longest: usize) -> bool {
    text.chars().count() <= longest
        && text.chars().all(|c| {
            c.is_alphabetic()
                || c.is_numeric()
                || (c.is_whitespace() && !c.is_control())
                || "_.:/=+-@".contains(c)
        })
}

/// The longest tag key Elastic Load Balancing takes.
pub const TAG_KEY_LONGEST: usize = 128;
/// The longest tag value Elastic Load Balancing takes.
pub const TAG_VALUE_LONGEST: usize = 256;

pub trait LoadBalancing: Sync {
    /// Every target group of the region (every page).
    fn target_groups(&self) -> impl Future<Output = Result<Vec<TargetGroup>>> + Send;
    /// The ports `instance_id` is registered on in the group (`DescribeTargetHealth`), those
    /// already draining left out.
    fn registered_ports(
        &self,
        target_group: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<Vec<i32>>> + Send;
    fn deregister(
        &self,
        target_group: &str,
        instance_id: &str,
        ports: &[i32],
    ) -> impl Future<Output = Result<()>> + Send;
    fn register(
        &self,
        target_group: &str,
        instance_id: &str,
        ports: &[i32],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The tags of each of these groups (`DescribeTags`, at most 20 a call).
    fn tags(&self, target_groups: &[String]) -> impl Future<Output = Result<Vec<Tagged>>> + Send;
    fn add_tags(
        &self,
        target_group: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<()>> + Send;
    fn remove_tags(
        &self,
        target_group: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Hands out Elastic Load Balancing for a finding's account and region. Plain closures serve
/// as providers in tests.
pub trait LoadBalancingProvider: Sync {
    type LoadBalancing: LoadBalancing;
    fn load_balancing_for(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Self::LoadBalancing>> + Send;
}

impl<F, L> LoadBalancingProvider for F
where
    F: Fn(&Target) -> L + Sync,
    L: LoadBalancing + Send,
{
    type LoadBalancing = L;
    fn load_balancing_for(&self, target: &Target) -> impl Future<Output = Result<L>> + Send {
        let load_balancing = self(target);
        async move { Ok(load_balancing) }
    }
}

/// The port's fake: target groups in memory, with AWS's rules, every call logged by its IAM
/// name.
#[cfg(test)]
pub mod fake {
    use super::*;
    use crate::CordonError;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Clone, Default)]
    pub struct FakeGroup {
        pub vpc_id: String,
        pub target_type: String,
        /// (instance, port) registered.
        pub targets: Vec<(String, i32)>,
        pub tags: Vec<(String, String)>,
    }

    #[derive(Debug, Default)]
    pub struct State {
        pub groups: BTreeMap<String, FakeGroup>,
        /// Instance → its VPC, as EC2 knows it.
        pub instance_vpcs: BTreeMap<String, String>,
        pub calls: Vec<String>,
        pub fail: BTreeMap<String, CordonError>,
        /// The next call of this IAM name is made, then answers this error: its answer was
        /// lost and the SDK's retry was refused (moto answers a second DeregisterTargets of
        /// the same target `InvalidTarget`).
        pub made_then: Option<(String, CordonError)>,
    }

    #[derive(Debug, Clone, Default)]
    pub struct FakeLoadBalancing(pub Arc<Mutex<State>>);

    pub const WEB: &str =
        "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/web/0123456789abcdef";
    pub const ADMIN: &str =
        "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/admin/0123456789abcdee";
    pub const ASG_GROUP: &str =
        "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/asg/0123456789abcded";

    fn error(operation: &str, code: &str, message: String) -> CordonError {
        CordonError::LoadBalancing {
            operation: operation.into(),
            code: code.into(),
            message,
        }
    }

    impl FakeLoadBalancing {
        /// `instance` (in vpc-1) registered in `web` on 80 and 8080, in `admin` on 9000, and in
        /// `asg` (its Auto Scaling group's) on 80; an `ip` group beside them.
        pub fn with_instance(instance: &str) -> Self {
            let fake = FakeLoadBalancing::default();
            fake.with(|s| {
                s.instance_vpcs.insert(instance.into(), "vpc-1".into());
                for (arn, ports) in [
                    (WEB, vec![80, 8080]),
                    (ADMIN, vec![9000]),
                    (ASG_GROUP, vec![80]),
                ] {
                    s.groups.insert(
                        arn.into(),
                        FakeGroup {
                            vpc_id: "vpc-1".into(),
                            target_type: "instance".into(),
                            targets: ports
                                .into_iter()
                                .map(|p| (instance.to_string(), p))
                                .collect(),
                            tags: vec![("team".into(), "web".into())],
                        },
                    );
                }
                s.groups.insert(
                    "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/ips/1".into(),
                    FakeGroup {
                        vpc_id: "vpc-1".into(),
                        target_type: "ip".into(),
                        ..Default::default()
                    },
                );
            });
            fake
        }

        pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
            f(&mut self.0.lock().unwrap())
        }

        pub fn calls(&self) -> Vec<String> {
            self.with(|s| s.calls.clone())
        }

        pub fn targets(&self, group: &str) -> Vec<(String, i32)> {
            self.with(|s| {
                let mut targets = s.groups[group].targets.clone();
                targets.sort();
                targets
            })
        }

        pub fn group_tags(&self, group: &str) -> Vec<(String, String)> {
            self.with(|s| s.groups[group].tags.clone())
        }

        pub fn fail_next(&self, operation: &str, error: CordonError) {
            self.with(|s| s.fail.insert(operation.to_string(), error));
        }

        fn call(&self, operation: &str) -> Result<()> {
            self.with(|s| {
                s.calls.push(operation.to_string());
                match s.fail.remove(operation) {
                    Some(error) => Err(error),
                    None => Ok(()),
                }
            })
        }

        fn group_mut<'a>(
            state: &'a mut State,
            operation: &str,
            arn: &str,
        ) -> Result<&'a mut FakeGroup> {
            state.groups.get_mut(arn).ok_or_else(|| {
                error(
                    operation,
                    "TargetGroupNotFound",
                    format!("Target groups '{arn}' not found"),
                )
            })
        }
    }

    impl LoadBalancing for FakeLoadBalancing {
        async fn target_groups(&self) -> Result<Vec<TargetGroup>> {
            self.call("elasticloadbalancing:DescribeTargetGroups")?;
            Ok(self.with(|s| {
                s.groups
                    .iter()
                    .map(|(arn, g)| TargetGroup {
                        arn: arn.clone(),
                        vpc_id: g.vpc_id.clone(),
                        target_type: g.target_type.clone(),
                    })
                    .collect()
            }))
        }

        async fn registered_ports(
            &self,
            target_group: &str,
            instance_id: &str,
        ) -> Result<Vec<i32>> {
            self.call("elasticloadbalancing:DescribeTargetHealth")?;
            self.with(|s| {
                let group = Self::group_mut(s, "DescribeTargetHealth", target_group)?;
                Ok(group
                    .targets
                    .iter()
                    .filter(|(id, _)| id == instance_id)
                    .map(|(_, port)| *port)
                    .collect())
            })
        }

        async fn deregister(
            &self,
            target_group: &str,
            instance_id: &str,
            ports: &[i32],
        ) -> Result<()> {
            self.call("elasticloadbalancing:DeregisterTargets")?;
            self.with(|s| {
                let group = Self::group_mut(s, "DeregisterTargets", target_group)?;
                group
                    .targets
                    .retain(|(id, port)| !(id == instance_id && ports.contains(port)));
                match s.made_then.take() {
                    Some((call, error)) if call == "elasticloadbalancing:DeregisterTargets" => {
                        Err(error)
                    }
                    other => {
                        s.made_then = other;
                        Ok(())
                    }
                }
            })
        }

        async fn register(
            &self,
            target_group: &str,
            instance_id: &str,
            ports: &[i32],
        ) -> Result<()> {
            self.call("elasticloadbalancing:RegisterTargets")?;
            self.with(|s| {
                let vpc = s.instance_vpcs.get(instance_id).cloned();
                let group = Self::group_mut(s, "RegisterTargets", target_group)?;
                if group.target_type != "instance" || vpc.as_deref() != Some(group.vpc_id.as_str()) {
                    return Err(error(
                        "RegisterTargets",
                        "InvalidTarget",
                        format!("The following targets are not in the target group's VPC or of its type: {instance_id}"),
                    ));
                }
                for port in ports {
                    if !group.targets.contains(&(instance_id.to_string(), *port)) {
                        group.targets.push((instance_id.to_string(), *port));
                    }
                }
                Ok(())
            })
        }

        async fn tags(
            &self,
            target_groups: &[String],
        ) -> Result<Vec<(String, Vec<(String, String)>)>> {
            self.call("elasticloadbalancing:DescribeTags")?;
            if target_groups.len() > 20 {
                return Err(error(
                    "DescribeTags",
                    "ValidationError",
                    "at most 20 resources".into(),
                ));
            }
            self.with(|s| {
                target_groups
                    .iter()
                    .map(|arn| {
                        let group = Self::group_mut(s, "DescribeTags", arn)?;
                        Ok((arn.clone(), group.tags.clone()))
                    })
                    .collect()
            })
        }

        async fn add_tags(&self, target_group: &str, tags: &[(String, String)]) -> Result<()> {
            self.call("elasticloadbalancing:AddTags")?;
            // As AWS answers a key or value its pattern or length refuses (moto takes any).
            for (n, (key, value)) in tags.iter().enumerate() {
                let refused = if key.is_empty() || !tag_text_allowed(key, TAG_KEY_LONGEST) {
                    Some(("key", key))
                } else if !tag_text_allowed(value, TAG_VALUE_LONGEST) {
                    Some(("value", value))
                } else {
                    None
                };
                if let Some((part, text)) = refused {
                    return Err(error(
                        "AddTags",
                        "ValidationError",
                        format!(
                            "1 validation error detected: Value '{text}' at 'tags.{}.member.{part}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*)$",
                            n + 1
                        ),
                    ));
                }
            }
            self.with(|s| {
                let group = Self::group_mut(s, "AddTags", target_group)?;
                for (key, value) in tags {
                    match group.tags.iter_mut().find(|(k, _)| k == key) {
                        Some(tag) => tag.1 = value.clone(),
                        None => group.tags.push((key.clone(), value.clone())),
                    }
                }
                Ok(())
            })
        }

        async fn remove_tags(&self, target_group: &str, keys: &[String]) -> Result<()> {
            self.call("elasticloadbalancing:RemoveTags")?;
            self.with(|s| {
                let group = Self::group_mut(s, "RemoveTags", target_group)?;
                group.tags.retain(|(k, _)| !keys.contains(k));
                Ok(())
            })
        }
    }
}
