//! The trigger policy: which findings lead to a quarantine, each decision with its reason.

use serde::{Deserialize, Serialize};

use crate::finding::Finding;

pub const GUARDDUTY_DETAIL_TYPE: &str = "GuardDuty Finding";
/// The key the README suggests for `ExemptTagKey`; no tag exempts unless the stack names one.
pub const EXEMPT_TAG: &str = "cordon:exempt";
/// The tag Auto Scaling puts on its instances. Keys beginning `aws:` are AWS's own: no one,
/// the instance's role included, can write or change them, so it can name an exempt group.
pub const AUTO_SCALING_GROUP_TAG: &str = "aws:autoscaling:groupName";

/// Where Cordon acts: allow-lists of accounts and VPCs (`Accounts`, `Vpcs`), empty for all.
/// A first rollout names a few; a finding outside them is skipped with that reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// `CORDON_ACCOUNTS`.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// `CORDON_VPCS`.
    #[serde(default)]
    pub vpcs: Vec<String>,
}

impl Scope {
    /// Why a finding in `account` is outside the scope; None when it is inside.
    pub fn outside_account(&self, account: Option<&str>) -> Option<String> {
        if self.accounts.is_empty() {
            return None;
        }
        match account {
            Some(account) if self.accounts.iter().any(|a| a == account) => None,
            Some(account) => Some(format!(
                "account {account} is outside Cordon's scope (CORDON_ACCOUNTS)"
            )),
            None => Some(
                "the finding names no account, and Cordon's scope is a list of accounts (CORDON_ACCOUNTS)".into(),
            ),
        }
    }

    /// Why an instance in `vpcs` is outside the scope: any of its VPCs not in the list (an
    /// instance is contained in every VPC it has an interface in, or in none).
    pub fn outside_vpcs<'a>(&self, vpcs: impl IntoIterator<Item = &'a str>) -> Option<String> {
        if self.vpcs.is_empty() {
            return None;
        }
        let outside: Vec<&str> = vpcs
            .into_iter()
            .filter(|vpc| !self.vpcs.iter().any(|v| v == vpc))
            .collect();
        (!outside.is_empty()).then(|| {
            format!(
                "{} is outside Cordon's scope (CORDON_VPCS)",
                outside.join(", ")
            )
        })
    }
}

/// Which instances Cordon never touches. A tag exemption is honoured only when the stack names
/// the key (`ExemptTagKey`): whoever may tag an instance may otherwise exempt it, the
/// attacker holding its role among them, so the key should be one the organization's SCP
/// guards (`infra/scp-cordon-tags.yaml`). Instance ids and Auto Scaling groups need no tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exemptions {
    /// `CORDON_EXEMPT_TAG_KEY`: the value `true` (any case) under this key exempts.
    #[serde(default)]
    pub tag_key: Option<String>,
    /// `CORDON_EXEMPT_INSTANCE_IDS`.
    #[serde(default)]
    pub instance_ids: Vec<String>,
    /// `CORDON_EXEMPT_AUTO_SCALING_GROUPS`: by the `aws:autoscaling:groupName` tag.
    #[serde(default)]
    pub auto_scaling_groups: Vec<String>,
}

impl Exemptions {
    /// Why `instance_id`, carrying `tags`, is exempt; None when it is not.
    pub fn reason(&self, instance_id: &str, tags: &[(String, String)]) -> Option<String> {
        if self.instance_ids.iter().any(|id| id == instance_id) {
            return Some(format!(
                "instance {instance_id} is exempt by id (CORDON_EXEMPT_INSTANCE_IDS)"
            ));
        }
        let tag = |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if let Some(group) = tag(AUTO_SCALING_GROUP_TAG)
            .filter(|group| self.auto_scaling_groups.iter().any(|g| g == group))
        {
            return Some(format!(
                "instance {instance_id} is in the exempt Auto Scaling group {group} (CORDON_EXEMPT_AUTO_SCALING_GROUPS)"
            ));
        }
        let key = self.tag_key.as_deref()?;
        tag(key)
            .filter(|value| value.trim().eq_ignore_ascii_case("true"))
            .map(|_| format!("instance {instance_id} is tagged {key}=true (CORDON_EXEMPT_TAG_KEY)"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// GuardDuty severities are fractional: High is 7.0-8.9, Critical 9.0-10.0.
    pub min_severity: f64,
    pub include_samples: bool,
    pub include_archived: bool,
    /// When not empty, only finding types starting with one of these are acted on.
    pub allow_type_prefixes: Vec<String>,
    /// Finding types starting with one of these are never acted on (checked before the allow list).
    pub deny_type_prefixes: Vec<String>,
    /// `ACTOR`, `TARGET`; empty means either.
    pub resource_roles: Vec<String>,
    #[serde(default)]
    pub exemptions: Exemptions,
    #[serde(default)]
    pub scope: Scope,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_severity: 7.0,
            include_samples: false,
            include_archived: false,
            allow_type_prefixes: Vec::new(),
            deny_type_prefixes: Vec::new(),
            resource_roles: Vec::new(),
            exemptions: Exemptions::default(),
            scope: Scope::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Quarantine,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: String,
}

impl Decision {
    fn skip(reason: impl Into<String>) -> Self {
        Decision {
            verdict: Verdict::Skip,
            reason: reason.into(),
        }
    }
}

impl Policy {
    pub fn decide(&self, finding: &Finding) -> Decision {
        if let Some(detail_type) = &finding.detail_type {
            if detail_type != GUARDDUTY_DETAIL_TYPE {
                return Decision::skip(format!(
                    "event detail-type is {detail_type:?}, not {GUARDDUTY_DETAIL_TYPE:?}"
                ));
            }
        }
        match finding.resource_type.as_deref() {
            Some("Instance") => {}
            // An instance's role credentials used elsewhere: the instance they were issued to
            // (checked against its role at capture).
            Some("AccessKey") if finding.credentials_of.is_some() => {}
            Some(other) => {
                return Decision::skip(format!(
                    "resource type is {other}, not Instance: Cordon only contains EC2 instances"
                ))
            }
            None => return Decision::skip("the finding names no resource type"),
        }
        let Some(instance_id) = finding.instance_id.as_deref() else {
            return Decision::skip("instance finding without resource.instanceDetails.instanceId");
        };
        if finding.archived && !self.include_archived {
            return Decision::skip("the finding is archived (opt in with include-archived)");
        }
        if finding.sample && !self.include_samples {
            return Decision::skip(
                "the finding is a GuardDuty sample (opt in with include-samples)",
            );
        }
        if finding.severity < self.min_severity {
            return Decision::skip(format!(
                "severity {} is below the minimum {}",
                finding.severity, self.min_severity
            ));
        }
        if let Some(prefix) = self
            .deny_type_prefixes
            .iter()
            .find(|prefix| finding.finding_type.starts_with(prefix.as_str()))
        {
            return Decision::skip(format!(
                "finding type {} is denied by prefix {prefix:?}",
                finding.finding_type
            ));
        }
        if !self.allow_type_prefixes.is_empty()
            && !self
                .allow_type_prefixes
                .iter()
                .any(|prefix| finding.finding_type.starts_with(prefix.as_str()))
        {
            return Decision::skip(format!(
                "finding type {} matches no allowed prefix",
                finding.finding_type
            ));
        }
        if !self.resource_roles.is_empty() {
            let role = finding.resource_role.as_deref().unwrap_or("");
            if !self
                .resource_roles
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(role))
            {
                return Decision::skip(format!(
                    "resource role {role:?} is not one of {:?}",
                    self.resource_roles
                ));
            }
        }
        if let Some(reason) = self.scope.outside_account(finding.account_id.as_deref()) {
            return Decision::skip(reason);
        }
        // The VPC the finding names; capture checks the instance's own VPCs too.
        if let Some(reason) = finding
            .vpc_id
            .as_deref()
            .and_then(|vpc| self.scope.outside_vpcs([vpc]))
        {
            return Decision::skip(reason);
        }
        if let Some(reason) = self.exemptions.reason(instance_id, &finding.instance_tags) {
            return Decision::skip(reason);
        }
        Decision {
            verdict: Verdict::Quarantine,
            reason: format!(
                "{} on instance {instance_id}, severity {} >= {}",
                finding.finding_type, finding.severity, self.min_severity
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> Finding {
        Finding {
            id: "f".into(),
            finding_type: "Backdoor:EC2/C&CActivity.B".into(),
            severity: 8.0,
            account_id: Some("111122223333".into()),
            region: Some("us-east-1".into()),
            resource_type: Some("Instance".into()),
            instance_id: Some("i-0000abcd".into()),
            resource_role: Some("ACTOR".into()),
            archived: false,
            sample: false,
            detail_type: Some(GUARDDUTY_DETAIL_TYPE.into()),
            remote_addresses: vec![],
            instance_tags: vec![],
            updated_at: None,
            first_seen: None,
            last_seen: None,
            credentials_of: None,
            arn: None,
            vpc_id: None,
        }
    }

    fn skip_reason(policy: &Policy, finding: &Finding) -> String {
        let decision = policy.decide(finding);
        assert_eq!(decision.verdict, Verdict::Skip, "{decision:?}");
        decision.reason
    }

    #[test]
    fn a_high_severity_instance_finding_is_quarantined_with_its_reason() {
        let decision = Policy::default().decide(&finding());
        assert_eq!(decision.verdict, Verdict::Quarantine);
        assert!(decision.reason.contains("i-0000abcd") && decision.reason.contains("8"));
    }

    #[test]
    fn every_skip_says_why() {
        let policy = Policy::default();
        let mut cloudtrail = finding();
        cloudtrail.detail_type = Some("AWS API Call via CloudTrail".into());
        assert!(skip_reason(&policy, &cloudtrail).contains("detail-type"));

        let mut iam = finding();
        iam.resource_type = Some("AccessKey".into());
        assert!(skip_reason(&policy, &iam).contains("AccessKey"));
        // An instance's credentials used elsewhere: the instance is contained.
        iam.credentials_of = Some("web-role".into());
        assert_eq!(policy.decide(&iam).verdict, Verdict::Quarantine);

        let mut no_id = finding();
        no_id.instance_id = None;
        assert!(skip_reason(&policy, &no_id).contains("instanceId"));

        let mut archived = finding();
        archived.archived = true;
        assert!(skip_reason(&policy, &archived).contains("archived"));

        let mut sample = finding();
        sample.sample = true;
        assert!(skip_reason(&policy, &sample).contains("sample"));

        let exempting = Policy {
            exemptions: Exemptions {
                tag_key: Some(EXEMPT_TAG.into()),
                ..Exemptions::default()
            },
            ..Policy::default()
        };
        let mut exempt = finding();
        exempt.instance_tags = vec![(EXEMPT_TAG.into(), "TRUE".into())];
        assert!(skip_reason(&exempting, &exempt).contains(EXEMPT_TAG));
    }

    /// The attacker holding the instance's role can tag it: without `ExemptTagKey` no tag
    /// exempts, `cordon:exempt` included.
    #[test]
    fn no_tag_exempts_unless_the_stack_names_its_key() {
        let mut tagged = finding();
        tagged.instance_tags = vec![(EXEMPT_TAG.into(), "true".into())];
        assert_eq!(
            Policy::default().decide(&tagged).verdict,
            Verdict::Quarantine
        );
        let other_key = Policy {
            exemptions: Exemptions {
                tag_key: Some("acme:cordon-exempt".into()),
                ..Exemptions::default()
            },
            ..Policy::default()
        };
        assert_eq!(other_key.decide(&tagged).verdict, Verdict::Quarantine);
        tagged.instance_tags = vec![("acme:cordon-exempt".into(), " True ".into())];
        assert!(skip_reason(&other_key, &tagged).contains("acme:cordon-exempt=true"));
    }

    #[test]
    fn instances_and_auto_scaling_groups_are_exempt_by_configuration() {
        let exemptions = Exemptions {
            tag_key: None,
            instance_ids: vec!["i-0000abcd".into()],
            auto_scaling_groups: vec!["bastions".into()],
        };
        assert!(exemptions
            .reason("i-0000abcd", &[])
            .unwrap()
            .contains("by id"));
        let in_group = [(AUTO_SCALING_GROUP_TAG.to_string(), "bastions".to_string())];
        assert!(exemptions
            .reason("i-0000ffff", &in_group)
            .unwrap()
            .contains("bastions"));
        let elsewhere = [(AUTO_SCALING_GROUP_TAG.to_string(), "web".to_string())];
        assert_eq!(exemptions.reason("i-0000ffff", &elsewhere), None);
        // A user tag of the same value is not the group.
        let forged = [("autoscaling:groupName".to_string(), "bastions".to_string())];
        assert_eq!(exemptions.reason("i-0000ffff", &forged), None);
    }

    #[test]
    fn severity_threshold_is_fractional_and_inclusive() {
        let policy = Policy {
            min_severity: 7.5,
            ..Policy::default()
        };
        let mut at = finding();
        at.severity = 7.5;
        assert_eq!(policy.decide(&at).verdict, Verdict::Quarantine);
        at.severity = 7.4;
        assert!(skip_reason(&policy, &at).contains("below the minimum 7.5"));
    }

    #[test]
    fn opt_ins_let_archived_and_sample_findings_through() {
        let policy = Policy {
            include_archived: true,
            include_samples: true,
            ..Policy::default()
        };
        let mut f = finding();
        f.archived = true;
        f.sample = true;
        assert_eq!(policy.decide(&f).verdict, Verdict::Quarantine);
    }

    #[test]
    fn type_prefixes_and_roles_filter() {
        let policy = Policy {
            allow_type_prefixes: vec!["Backdoor:".into(), "CryptoCurrency:".into()],
            deny_type_prefixes: vec!["Backdoor:EC2/DenialOfService".into()],
            resource_roles: vec!["ACTOR".into()],
            ..Policy::default()
        };
        assert_eq!(policy.decide(&finding()).verdict, Verdict::Quarantine);
        let mut denied = finding();
        denied.finding_type = "Backdoor:EC2/DenialOfService.Tcp".into();
        assert!(skip_reason(&policy, &denied).contains("denied by prefix"));
        let mut not_allowed = finding();
        not_allowed.finding_type = "Recon:EC2/PortProbeUnprotectedPort".into();
        assert!(skip_reason(&policy, &not_allowed).contains("no allowed prefix"));
        let mut target = finding();
        target.resource_role = Some("TARGET".into());
        assert!(skip_reason(&policy, &target).contains("TARGET"));
    }

    #[test]
    fn a_finding_outside_the_scope_is_skipped_with_the_list_it_missed() {
        let scoped = Policy {
            scope: Scope {
                accounts: vec!["111122223333".into()],
                vpcs: vec!["vpc-0aaa".into()],
            },
            ..Policy::default()
        };
        let mut inside = finding();
        inside.vpc_id = Some("vpc-0aaa".into());
        assert_eq!(scoped.decide(&inside).verdict, Verdict::Quarantine);
        let mut other_account = inside.clone();
        other_account.account_id = Some("444455556666".into());
        assert!(skip_reason(&scoped, &other_account).contains("CORDON_ACCOUNTS"));
        let mut no_account = inside.clone();
        no_account.account_id = None;
        assert!(skip_reason(&scoped, &no_account).contains("names no account"));
        let mut other_vpc = inside.clone();
        other_vpc.vpc_id = Some("vpc-0bbb".into());
        assert!(skip_reason(&scoped, &other_vpc).contains("vpc-0bbb is outside"));
        // Empty lists: everywhere.
        assert_eq!(
            Policy::default().decide(&other_vpc).verdict,
            Verdict::Quarantine
        );
        assert_eq!(
            scoped.scope.outside_vpcs(["vpc-0aaa", "vpc-0ccc"]).unwrap(),
            "vpc-0ccc is outside Cordon's scope (CORDON_VPCS)"
        );
        assert_eq!(scoped.scope.outside_vpcs(["vpc-0aaa"]), None);
    }

    #[test]
    fn a_tag_exemption_needs_the_value_true() {
        let exemptions = Exemptions {
            tag_key: Some(EXEMPT_TAG.into()),
            ..Exemptions::default()
        };
        let tagged = |key: &str, value: &str| [(key.to_string(), value.to_string())];
        assert!(exemptions
            .reason("i-1", &tagged(EXEMPT_TAG, " True "))
            .is_some());
        assert!(exemptions
            .reason("i-1", &tagged(EXEMPT_TAG, "false"))
            .is_none());
        assert!(exemptions.reason("i-1", &tagged("Name", "true")).is_none());
    }
}
