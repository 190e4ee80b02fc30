//! The IAM port: what Cordon asks of IAM for the credentials measure, one method per API call,
//! with AWS's own rules enforced in the fake (a role's 50 tags, a tag value's 256 characters,
//! the 10 managed policies a role takes by default, a policy that must exist to be attached).

use std::future::Future;

use crate::ec2::Target;
use crate::Result;

/// A role holds at most this many tags (IAM quota).
pub const MAX_ROLE_TAGS: usize = 50;
/// A tag value holds at most this many characters.
pub const MAX_TAG_VALUE: usize = 256;
/// Managed policies a role takes by default (the quota can be raised to 20).
pub const MAX_ATTACHED_POLICIES: usize = 10;

pub trait Iam: Sync {
    /// The role of the instance profile named `profile` (`GetInstanceProfile`); None when the
    /// profile holds no role.
    fn profile_role(&self, profile: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// The role's tags (`ListRoleTags`, every page).
    fn role_tags(&self, role: &str) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;
    /// `TagRole` with one tag (an existing key is overwritten).
    fn tag_role(
        &self,
        role: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// `UntagRole` (keys the role does not have are ignored, as AWS does).
    fn untag_role(&self, role: &str, keys: &[String]) -> impl Future<Output = Result<()>> + Send;
    /// The ARNs of the managed policies attached to the role (`ListAttachedRolePolicies`).
    fn attached_policies(&self, role: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn attach_role_policy(
        &self,
        role: &str,
        policy_arn: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn detach_role_policy(
        &self,
        role: &str,
        policy_arn: &str,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Hands out IAM for a finding's account (IAM is global: the region only names the instance).
/// Plain closures serve as providers in tests.
pub trait IamProvider: Sync {
    type Iam: Iam;
    fn iam_for(&self, target: &Target) -> impl Future<Output = Result<Self::Iam>> + Send;
    /// The region an instance of `target` is in: the finding's, or the configured default.
    fn region_of(&self, target: &Target) -> Option<String>;
}

impl<F, I> IamProvider for F
where
    F: Fn(&Target) -> I + Sync,
    I: Iam + Send,
{
    type Iam = I;
    fn iam_for(&self, target: &Target) -> impl Future<Output = Result<I>> + Send {
        let iam = self(target);
        async move { Ok(iam) }
    }
    fn region_of(&self, target: &Target) -> Option<String> {
        target.region.clone().or_else(|| Some("eu-west-1".into()))
    }
}

/// The port's fake: roles in memory, with AWS's rules, every call logged by its IAM name.
#[cfg(test)]
pub mod fake {
    use super::*;
    use crate::CordonError;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Clone, Default)]
    pub struct FakeRole {
        /// In the order they were added, as IAM lists them.
        pub tags: Vec<(String, String)>,
        pub attached: Vec<String>,
    }

    #[derive(Debug, Default)]
    pub struct State {
        pub profiles: BTreeMap<String, Option<String>>,
        pub roles: BTreeMap<String, FakeRole>,
        /// Managed policies that exist (only those can be attached).
        pub policies: BTreeSet<String>,
        pub calls: Vec<String>,
        /// Calls to refuse: IAM name → the error to answer with, once.
        pub fail: BTreeMap<String, CordonError>,
        /// After this many more `iam:TagRole` calls, the next one's tag is overwritten by
        /// another writer (a concurrent run for another instance of the role) right after.
        pub overwrite_after_tag: Option<(usize, String)>,
        /// A restore of another instance of the role detaches the policy right after the
        /// next `iam:TagRole`.
        pub detach_after_tag: bool,
        /// A cut of another instance of the role writes this slot right after the next
        /// `iam:DetachRolePolicy`.
        pub tag_after_detach: Option<(String, String)>,
    }

    #[derive(Debug, Clone, Default)]
    pub struct FakeIam(pub Arc<Mutex<State>>);

    pub const ACCOUNT: &str = "111122223333";
    pub const PROFILE_ARN: &str = "arn:aws:iam::111122223333:instance-profile/app/web";
    pub const ROLE: &str = "web-role";
    pub const POLICY_ARN: &str =
        "arn:aws:iam::111122223333:policy/cordon/cordon-deny-quarantined-instances";

    pub fn error(operation: &str, code: &str, message: String) -> CordonError {
        CordonError::Iam {
            operation: operation.into(),
            code: code.into(),
            message,
        }
    }

    impl FakeIam {
        /// Profile `web` holding role `web-role` (tagged `team=web`, one AWS managed policy),
        /// and Cordon's deny policy deployed in the account.
        pub fn with_role() -> Self {
            let fake = FakeIam::default();
            fake.with(|s| {
                s.profiles.insert("web".into(), Some(ROLE.into()));
                s.roles.insert(
                    ROLE.into(),
                    FakeRole {
                        tags: vec![("team".into(), "web".into())],
                        attached: vec![
                            "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore".into()
                        ],
                    },
                );
                s.policies.insert(POLICY_ARN.into());
                s.policies
                    .insert("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore".into());
            });
            fake
        }

        pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
            f(&mut self.0.lock().unwrap())
        }

        pub fn calls(&self) -> Vec<String> {
            self.with(|s| s.calls.clone())
        }

        pub fn role(&self, role: &str) -> FakeRole {
            self.with(|s| s.roles[role].clone())
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

        fn role_mut<'a>(
            state: &'a mut State,
            operation: &str,
            role: &str,
        ) -> Result<&'a mut FakeRole> {
            state.roles.get_mut(role).ok_or_else(|| {
                error(
                    operation,
                    "NoSuchEntity",
                    format!("The role with name {role} cannot be found."),
                )
            })
        }
    }

    impl Iam for FakeIam {
        async fn profile_role(&self, profile: &str) -> Result<Option<String>> {
            self.call("iam:GetInstanceProfile")?;
            self.with(|s| {
                s.profiles.get(profile).cloned().ok_or_else(|| {
                    error(
                        "iam:GetInstanceProfile",
                        "NoSuchEntity",
                        format!("Instance Profile {profile} cannot be found."),
                    )
                })
            })
        }

        async fn role_tags(&self, role: &str) -> Result<Vec<(String, String)>> {
            self.call("iam:ListRoleTags")?;
            self.with(|s| Ok(Self::role_mut(s, "iam:ListRoleTags", role)?.tags.clone()))
        }

        async fn tag_role(&self, role: &str, key: &str, value: &str) -> Result<()> {
            self.call("iam:TagRole")?;
            self.with(|s| {
                if value.len() > MAX_TAG_VALUE {
                    return Err(error(
                        "iam:TagRole",
                        "ValidationError",
                        format!("tag value longer than {MAX_TAG_VALUE}"),
                    ));
                }
                let racer = match &mut s.overwrite_after_tag {
                    Some((0, value)) => Some(value.clone()),
                    Some((n, _)) => {
                        *n -= 1;
                        None
                    }
                    None => None,
                };
                if racer.is_some() {
                    s.overwrite_after_tag = None;
                }
                let found = Self::role_mut(s, "iam:TagRole", role)?;
                let full = found.tags.len() >= MAX_ROLE_TAGS;
                match found.tags.iter_mut().find(|(k, _)| k == key) {
                    Some(tag) => tag.1 = value.to_string(),
                    None if full => {
                        return Err(error(
                            "iam:TagRole",
                            "LimitExceeded",
                            format!(
                            "The number of tags has reached the maximum limit of {MAX_ROLE_TAGS}."
                        ),
                        ))
                    }
                    None => found.tags.push((key.to_string(), value.to_string())),
                }
                if let Some(other) = racer {
                    found.tags.iter_mut().find(|(k, _)| k == key).unwrap().1 = other;
                }
                if std::mem::take(&mut s.detach_after_tag) {
                    for role in s.roles.values_mut() {
                        role.attached.retain(|a| a != POLICY_ARN);
                    }
                }
                Ok(())
            })
        }

        async fn untag_role(&self, role: &str, keys: &[String]) -> Result<()> {
            self.call("iam:UntagRole")?;
            self.with(|s| {
                Self::role_mut(s, "iam:UntagRole", role)?
                    .tags
                    .retain(|(k, _)| !keys.contains(k));
                Ok(())
            })
        }

        async fn attached_policies(&self, role: &str) -> Result<Vec<String>> {
            self.call("iam:ListAttachedRolePolicies")?;
            self.with(|s| {
                Ok(Self::role_mut(s, "iam:ListAttachedRolePolicies", role)?
                    .attached
                    .clone())
            })
        }

        async fn attach_role_policy(&self, role: &str, policy_arn: &str) -> Result<()> {
            self.call("iam:AttachRolePolicy")?;
            self.with(|s| {
                if !s.policies.contains(policy_arn) {
                    return Err(error(
                        "iam:AttachRolePolicy",
                        "NoSuchEntity",
                        format!("Policy {policy_arn} does not exist or is not attachable."),
                    ));
                }
                let found = Self::role_mut(s, "iam:AttachRolePolicy", role)?;
                if found.attached.iter().any(|a| a == policy_arn) {
                    return Ok(());
                }
                if found.attached.len() >= MAX_ATTACHED_POLICIES {
                    return Err(error(
                        "iam:AttachRolePolicy",
                        "LimitExceeded",
                        format!("Cannot exceed quota for PoliciesPerRole: {MAX_ATTACHED_POLICIES}"),
                    ));
                }
                found.attached.push(policy_arn.to_string());
                Ok(())
            })
        }

        async fn detach_role_policy(&self, role: &str, policy_arn: &str) -> Result<()> {
            self.call("iam:DetachRolePolicy")?;
            self.with(|s| {
                let found = Self::role_mut(s, "iam:DetachRolePolicy", role)?;
                let before = found.attached.len();
                found.attached.retain(|a| a != policy_arn);
                if found.attached.len() == before {
                    return Err(error(
                        "iam:DetachRolePolicy",
                        "NoSuchEntity",
                        format!("Policy {policy_arn} was not found."),
                    ));
                }
                if let Some(tag) = s.tag_after_detach.take() {
                    s.roles.get_mut(role).unwrap().tags.push(tag);
                }
                Ok(())
            })
        }
    }
}
