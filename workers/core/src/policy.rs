//! The trigger policy: which findings lead to a quarantine, each decision with its reason.

use serde::{Deserialize, Serialize};

use crate::finding::Finding;

pub const GUARDDUTY_DETAIL_TYPE: &str = "GuardDuty Finding";
pub const EXEMPT_TAG: &str = "cordon:exempt";

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
        if is_exempt(&finding.instance_tags) {
            return Decision::skip(format!(
                "instance {instance_id} is tagged {EXEMPT_TAG}=true"
            ));
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

/// `cordon:exempt=true` (any case) on an instance means Cordon never touches it.
pub fn is_exempt<'a>(tags: impl IntoIterator<Item = &'a (String, String)>) -> bool {
    tags.into_iter()
        .any(|(key, value)| key == EXEMPT_TAG && value.trim().eq_ignore_ascii_case("true"))
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

        let mut exempt = finding();
        exempt.instance_tags = vec![(EXEMPT_TAG.into(), "TRUE".into())];
        assert!(skip_reason(&policy, &exempt).contains(EXEMPT_TAG));
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
    fn exemption_needs_the_value_true() {
        assert!(is_exempt(&[(EXEMPT_TAG.to_string(), " True ".to_string())]));
        assert!(!is_exempt(&[(EXEMPT_TAG.to_string(), "false".to_string())]));
        assert!(!is_exempt(&[("Name".to_string(), "true".to_string())]));
    }
}
