//! The Auto Scaling port: what Cordon asks of Amazon EC2 Auto Scaling, one method per API call,
//! with AWS's own rules enforced in the fake (moto takes an EnterStandby for an instance that is
//! not InService, decrements below the group's minimum and exits a standby twice; AWS refuses).

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::ec2::Target;
use crate::Result;

/// The only lifecycle state from which AWS lets an instance enter standby.
pub const IN_SERVICE: &str = "InService";
pub const STANDBY: &str = "Standby";
/// Deregistering from the group's load balancers before it is in standby.
pub const ENTERING_STANDBY: &str = "EnteringStandby";

/// An instance's place in its group (`DescribeAutoScalingInstances`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub group: String,
    /// `InService`, `Standby`, `Pending:Wait`, `Terminating:Wait`, ...
    pub lifecycle_state: String,
    pub protected_from_scale_in: bool,
}

/// A group's sizes (`DescribeAutoScalingGroups`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub min: i32,
    pub max: i32,
    pub desired: i32,
    /// Instances the group counts toward its desired capacity: all but those terminating,
    /// terminated, detaching or detached (standby ones are not counted either).
    pub counted: i32,
    /// The target groups the group registers its InService instances in (and takes its
    /// standby ones out of).
    #[serde(default)]
    pub target_groups: Vec<String>,
}

/// An instance refresh under way (`DescribeInstanceRefreshes`), and what it does with
/// instances in standby (`Terminate`, `Ignore` or `Wait`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refresh {
    pub id: String,
    pub standby_instances: String,
}

/// Whether a lifecycle state counts toward the group's desired capacity.
pub fn counts_toward_capacity(lifecycle_state: &str) -> bool {
    !(lifecycle_state.starts_with("Terminat")
        || lifecycle_state.starts_with("Detach")
        || lifecycle_state.starts_with("Warmed")
        || lifecycle_state == STANDBY
        || lifecycle_state == ENTERING_STANDBY)
}

pub trait AutoScaling: Sync {
    /// The instance's group and lifecycle state; `None` when it is in no group.
    fn membership(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<Membership>>> + Send;
    fn group(&self, name: &str) -> impl Future<Output = Result<Group>> + Send;
    /// `EnterStandby`; `decrement`: `ShouldDecrementDesiredCapacity`. Made once, never retried
    /// by the adapter (see `move_instance`).
    fn enter_standby(
        &self,
        group: &str,
        instance_id: &str,
        decrement: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// `ExitStandby` (AWS adds one to the desired capacity). Made once, never retried by the
    /// adapter (see `move_instance`).
    fn exit_standby(
        &self,
        group: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn set_scale_in_protection(
        &self,
        group: &str,
        instance_id: &str,
        protected: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// `SetDesiredCapacity` without honouring the cooldown.
    fn set_desired_capacity(
        &self,
        group: &str,
        desired: i32,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The group's instance refresh under way, if any.
    fn refresh_in_progress(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<Option<Refresh>>> + Send;
}

/// Hands out Auto Scaling for a finding's account and region, as [`crate::ec2::Ec2Provider`]
/// does EC2. Plain closures serve as providers in tests.
pub trait AutoScalingProvider: Sync {
    type AutoScaling: AutoScaling;
    fn autoscaling_for(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Self::AutoScaling>> + Send;
}

impl<F, A> AutoScalingProvider for F
where
    F: Fn(&Target) -> A + Sync,
    A: AutoScaling + Send,
{
    type AutoScaling = A;
    fn autoscaling_for(&self, target: &Target) -> impl Future<Output = Result<A>> + Send {
        let autoscaling = self(target);
        async move { Ok(autoscaling) }
    }
}

/// The port's fake: groups in memory, with AWS's rules, every call logged by its IAM name.
#[cfg(test)]
pub mod fake {
    use super::*;
    use crate::CordonError;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Clone, Default)]
    pub struct FakeGroup {
        pub min: i32,
        pub max: i32,
        pub desired: i32,
        /// Instance id → (lifecycle state, protected from scale-in).
        pub instances: BTreeMap<String, (String, bool)>,
        pub refresh: Option<Refresh>,
        pub target_groups: Vec<String>,
    }

    #[derive(Debug, Default)]
    pub struct State {
        pub groups: BTreeMap<String, FakeGroup>,
        pub calls: Vec<String>,
        /// Calls to refuse: IAM name → the error to answer with, once.
        pub fail: BTreeMap<String, CordonError>,
        /// The next call of this IAM name is made, but its answer is lost.
        pub lost_answer: Option<String>,
        launched: u32,
    }

    #[derive(Debug, Clone, Default)]
    pub struct FakeAutoScaling(pub Arc<Mutex<State>>);

    fn refused(operation: &str, message: String) -> CordonError {
        CordonError::AutoScaling {
            operation: operation.into(),
            code: "ValidationError".into(),
            message,
        }
    }

    impl FakeAutoScaling {
        /// `instance` InService in group `web` (min 1, max 4, desired 2) beside another, which
        /// sorts after it: a scale-in that may take any unprotected instance takes `instance`.
        pub fn with_instance(instance: &str) -> Self {
            let fake = FakeAutoScaling::default();
            fake.with(|s| {
                s.groups.insert(
                    "web".into(),
                    FakeGroup {
                        min: 1,
                        max: 4,
                        desired: 2,
                        instances: BTreeMap::from([
                            (instance.to_string(), (IN_SERVICE.to_string(), false)),
                            (
                                "i-99999999999999999".into(),
                                (IN_SERVICE.to_string(), false),
                            ),
                        ]),
                        refresh: None,
                        target_groups: vec![],
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

        pub fn fail_next(&self, operation: &str, error: CordonError) {
            self.with(|s| s.fail.insert(operation.to_string(), error));
        }

        /// Puts `instance` of group `web` in `state`, protected from scale-in or not.
        pub fn set(&self, instance: &str, state: &str, protected: bool) {
            self.with(|s| {
                s.groups
                    .get_mut("web")
                    .unwrap()
                    .instances
                    .insert(instance.to_string(), (state.to_string(), protected))
            });
        }

        pub fn state_of(&self, instance: &str) -> Option<(String, bool)> {
            self.with(|s| {
                s.groups
                    .values()
                    .find_map(|g| g.instances.get(instance).cloned())
            })
        }

        pub fn group_of(&self, name: &str) -> FakeGroup {
            self.with(|s| s.groups[name].clone())
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

        /// The call was made; its answer is lost if the test asked so.
        fn answer_lost(state: &mut State, operation: &str) -> Result<()> {
            if state.lost_answer.as_deref() != Some(operation) {
                return Ok(());
            }
            state.lost_answer = None;
            Err(CordonError::Unavailable {
                operation: operation.into(),
                message: "connection reset after the call was made".into(),
            })
        }

        /// The group reaches its desired capacity at once: launches or, by scale-in, removes
        /// unprotected InService instances (AWS never picks one in standby).
        fn settle(state: &mut State, group: &str) {
            let fake = state.groups.get_mut(group).unwrap();
            loop {
                let counted = fake
                    .instances
                    .values()
                    .filter(|(s, _)| counts_toward_capacity(s))
                    .count() as i32;
                if counted < fake.desired {
                    state.launched += 1;
                    fake.instances.insert(
                        format!("i-1000000000000{:04}", state.launched),
                        (IN_SERVICE.into(), false),
                    );
                } else if counted > fake.desired {
                    let victim = fake
                        .instances
                        .iter()
                        .find(|(_, (s, protected))| s == IN_SERVICE && !protected)
                        .map(|(id, _)| id.clone());
                    match victim {
                        Some(id) => {
                            fake.instances.remove(&id);
                        }
                        None => break,
                    }
                } else {
                    break;
                }
            }
        }
    }

    impl AutoScaling for FakeAutoScaling {
        async fn membership(&self, instance_id: &str) -> Result<Option<Membership>> {
            self.call("autoscaling:DescribeAutoScalingInstances")?;
            Ok(self.with(|s| {
                s.groups.iter().find_map(|(name, g)| {
                    g.instances
                        .get(instance_id)
                        .map(|(state, protected)| Membership {
                            group: name.clone(),
                            lifecycle_state: state.clone(),
                            protected_from_scale_in: *protected,
                        })
                })
            }))
        }

        async fn group(&self, name: &str) -> Result<Group> {
            self.call("autoscaling:DescribeAutoScalingGroups")?;
            self.with(|s| {
                let g = s.groups.get(name).ok_or_else(|| {
                    refused("DescribeAutoScalingGroups", format!("no group {name}"))
                })?;
                Ok(Group {
                    name: name.to_string(),
                    min: g.min,
                    max: g.max,
                    desired: g.desired,
                    counted: g
                        .instances
                        .values()
                        .filter(|(s, _)| counts_toward_capacity(s))
                        .count() as i32,
                    target_groups: g.target_groups.clone(),
                })
            })
        }

        async fn enter_standby(
            &self,
            group: &str,
            instance_id: &str,
            decrement: bool,
        ) -> Result<()> {
            self.call("autoscaling:EnterStandby")?;
            self.with(|s| {
                let g = s.groups.get_mut(group).unwrap();
                let Some((state, _)) = g.instances.get_mut(instance_id) else {
                    return Err(refused(
                        "EnterStandby",
                        format!("{instance_id} is not in {group}"),
                    ));
                };
                if state != IN_SERVICE {
                    return Err(refused(
                        "EnterStandby",
                        format!("The instance {instance_id} is not in InService."),
                    ));
                }
                if decrement && g.desired - 1 < g.min {
                    return Err(refused(
                        "EnterStandby",
                        format!("the desired capacity of {group} would fall below its minimum"),
                    ));
                }
                *state = STANDBY.into();
                if decrement {
                    g.desired -= 1;
                }
                Self::settle(s, group);
                Self::answer_lost(s, "autoscaling:EnterStandby")
            })
        }

        async fn exit_standby(&self, group: &str, instance_id: &str) -> Result<()> {
            self.call("autoscaling:ExitStandby")?;
            self.with(|s| {
                let g = s.groups.get_mut(group).unwrap();
                let Some((state, _)) = g.instances.get_mut(instance_id) else {
                    return Err(refused(
                        "ExitStandby",
                        format!("{instance_id} is not in {group}"),
                    ));
                };
                if state != STANDBY {
                    return Err(refused(
                        "ExitStandby",
                        format!("The instance {instance_id} is not in Standby."),
                    ));
                }
                if g.desired + 1 > g.max {
                    return Err(refused(
                        "ExitStandby",
                        format!("the desired capacity of {group} would exceed its maximum"),
                    ));
                }
                *state = IN_SERVICE.into();
                g.desired += 1;
                Self::settle(s, group);
                Self::answer_lost(s, "autoscaling:ExitStandby")
            })
        }

        async fn set_scale_in_protection(
            &self,
            group: &str,
            instance_id: &str,
            protected: bool,
        ) -> Result<()> {
            self.call("autoscaling:SetInstanceProtection")?;
            self.with(|s| {
                let g = s.groups.get_mut(group).unwrap();
                match g.instances.get_mut(instance_id) {
                    Some((_, flag)) => {
                        *flag = protected;
                        Ok(())
                    }
                    None => Err(refused(
                        "SetInstanceProtection",
                        format!("{instance_id} is not in {group}"),
                    )),
                }
            })
        }

        async fn set_desired_capacity(&self, group: &str, desired: i32) -> Result<()> {
            self.call("autoscaling:SetDesiredCapacity")?;
            self.with(|s| {
                let g = s.groups.get_mut(group).unwrap();
                if desired < g.min || desired > g.max {
                    return Err(refused(
                        "SetDesiredCapacity",
                        format!("{desired} is outside {group}'s {}-{}", g.min, g.max),
                    ));
                }
                g.desired = desired;
                Self::settle(s, group);
                Ok(())
            })
        }

        async fn refresh_in_progress(&self, group: &str) -> Result<Option<Refresh>> {
            self.call("autoscaling:DescribeInstanceRefreshes")?;
            Ok(self.with(|s| s.groups.get(group).and_then(|g| g.refresh.clone())))
        }
    }
}
