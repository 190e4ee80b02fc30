//! Settings, read once from the environment (Lambda) or given by the command line.

use serde::{Deserialize, Serialize};

use crate::error::{CordonError, Result};
use crate::net::parse_cidr;
use crate::policy::Policy;

/// Who may still reach an isolated instance (forensics), all protocols.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForensicSource {
    Cidr(String),
    SecurityGroup(String),
}

/// The rule numbers Cordon may use in a network ACL, per direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleBand {
    pub first: i32,
    pub last: i32,
}

/// AWS accepts rule numbers 1..=32766 (32767 is the catch-all deny).
pub const HIGHEST_RULE_NUMBER: i32 = 32766;
/// AWS's default quota of rules per network ACL and direction (adjustable up to 40).
pub const DEFAULT_NACL_RULE_QUOTA: usize = 20;

impl RuleBand {
    pub fn new(first: i32, last: i32) -> Result<Self> {
        if first < 1 || last > HIGHEST_RULE_NUMBER || first > last {
            return Err(CordonError::InvalidConfiguration(format!(
                "NACL rule band {first}-{last} must satisfy 1 <= first <= last <= {HIGHEST_RULE_NUMBER}"
            )));
        }
        Ok(RuleBand { first, last })
    }

    /// `"1-99"`; `"99-1"` is the same band. The stack's parameter pattern can check each
    /// number but not their order, and a band given backwards is still plain in meaning:
    /// refusing it would fail every finding at cold start for a deployment that went through.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            CordonError::InvalidConfiguration(format!(
                "NACL rule band {text:?} must look like FIRST-LAST, e.g. 1-99"
            ))
        };
        let (first, last) = text.trim().split_once('-').ok_or_else(bad)?;
        let first: i32 = first.trim().parse().map_err(|_| bad())?;
        let last: i32 = last.trim().parse().map_err(|_| bad())?;
        RuleBand::new(first.min(last), first.max(last))
    }
}

impl Default for RuleBand {
    /// Below the default allow rule 100 that every new network ACL carries.
    fn default() -> Self {
        RuleBand { first: 1, last: 99 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NaclSettings {
    pub band: RuleBand,
    pub rule_quota: usize,
    /// Remote addresses in these CIDRs are never denied on an ACL (resolvers, domain
    /// controllers, endpoints the whole VPC needs): the finding's remote addresses are partly
    /// chosen by whoever controls the instance. The forensic CIDR is added to them.
    #[serde(default)]
    pub protected_cidrs: Vec<String>,
    /// Whether private and shared remote addresses (RFC 1918, RFC 6598, IPv6 ULA) may be
    /// denied. Off: the security groups already cut the instance from them, and a deny on a
    /// shared ACL would cut every subnet from them.
    #[serde(default)]
    pub deny_private_remotes: bool,
    /// At most this many of the finding's remote addresses are denied (each costs a rule per
    /// direction on every ACL of the instance's subnets).
    #[serde(default = "default_max_remote_denies")]
    pub max_remote_denies: usize,
    /// The forensic CIDR the isolation group admits: the ACLs of subnets inside it get no deny
    /// of the instance's own addresses, or they would cut the forensic host off.
    #[serde(default)]
    pub forensic_cidr: Option<String>,
    /// `SessionManagerWhileIsolated`: the ACLs of the Session Manager endpoints' subnets get
    /// no deny of the instance's own addresses.
    #[serde(default)]
    pub session_manager: bool,
}

/// Ten: with AWS's default quota of 20 rules per direction, of which a new ACL uses two, ten
/// remote denies leave room for the instance's own addresses on a shared ACL.
pub const DEFAULT_MAX_REMOTE_DENIES: usize = 10;

fn default_max_remote_denies() -> usize {
    DEFAULT_MAX_REMOTE_DENIES
}

impl Default for NaclSettings {
    fn default() -> Self {
        NaclSettings {
            band: RuleBand::default(),
            rule_quota: DEFAULT_NACL_RULE_QUOTA,
            protected_cidrs: Vec::new(),
            deny_private_remotes: false,
            max_remote_denies: DEFAULT_MAX_REMOTE_DENIES,
            forensic_cidr: None,
            session_manager: false,
        }
    }
}

impl Config {
    /// The NACL settings with the forensic CIDR protected too: the forensic host must stay
    /// reachable through the ACLs as it is through the isolation group.
    pub fn nacl_settings(&self) -> NaclSettings {
        let mut settings = self.nacl.clone();
        if let Some(ForensicSource::Cidr(cidr)) = &self.forensic_access {
            if !settings.protected_cidrs.contains(cidr) {
                settings.protected_cidrs.push(cidr.clone());
            }
            settings.forensic_cidr = Some(cidr.clone());
        }
        settings.session_manager = self.session_manager;
        settings
    }

    /// Who may reach an isolated instance, and what it may reach.
    pub fn access(&self) -> crate::isolate::Access<'_> {
        crate::isolate::Access {
            forensic: self.forensic_access.as_ref(),
            session_manager: self.session_manager,
        }
    }
}

/// Whether Cordon contains the instances its policy picks, or only says what it would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Contain, as the measures say.
    #[default]
    Contain,
    /// Read and plan every measure, change nothing, and email what would have been done: a
    /// first rollout, to watch Cordon before it acts ([`crate::report_only`]).
    ReportOnly,
}

impl Mode {
    /// `contain` or `report-only` (the stack's `Mode` parameter); empty is `contain`.
    pub fn parse(text: &str) -> Result<Mode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "contain" => Ok(Mode::Contain),
            "report-only" => Ok(Mode::ReportOnly),
            _ => Err(CordonError::InvalidConfiguration(format!(
                "CORDON_MODE={text:?} must be contain or report-only"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Config {
    /// Contain, or report only (`CORDON_MODE`).
    #[serde(default)]
    pub mode: Mode,
    pub policy: Policy,
    pub forensic_access: Option<ForensicSource>,
    /// Whether an isolated instance may reach its VPC's Session Manager endpoints
    /// (`CORDON_SESSION_MANAGER_WHILE_ISOLATED`, off unless `true`; [`crate::session`]).
    #[serde(default)]
    pub session_manager: bool,
    pub nacl: NaclSettings,
    #[serde(default)]
    pub auto_scaling: crate::measures::auto_scaling::Settings,
    #[serde(default)]
    pub evidence: crate::measures::evidence::Settings,
    /// The release ledger's DynamoDB table (`CORDON_RELEASE_TABLE`): None, and an update of a
    /// finding contains a released instance again whatever it reports.
    #[serde(default)]
    pub release_table: Option<String>,
}

impl ForensicSource {
    pub fn from_settings(cidr: Option<&str>, group: Option<&str>) -> Result<Option<Self>> {
        match (
            cidr.filter(|c| !c.is_empty()),
            group.filter(|g| !g.is_empty()),
        ) {
            (Some(_), Some(_)) => Err(CordonError::InvalidConfiguration(
                "give either a forensic CIDR or a forensic security group, not both".into(),
            )),
            (Some(cidr), None) => {
                parse_cidr(cidr).map_err(CordonError::InvalidConfiguration)?;
                Ok(Some(ForensicSource::Cidr(cidr.trim().to_string())))
            }
            (None, Some(group)) if group.starts_with("sg-") => Ok(Some(
                ForensicSource::SecurityGroup(group.trim().to_string()),
            )),
            (None, Some(group)) => Err(CordonError::InvalidConfiguration(format!(
                "forensic security group {group:?} must be a group id (sg-...)"
            ))),
            (None, None) => Ok(None),
        }
    }
}

impl Config {
    /// Reads `CORDON_*` variables; anything unset keeps its default, anything malformed is an
    /// error that names the variable.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = Config::default();
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(text) = get("CORDON_MIN_SEVERITY") {
            config.policy.min_severity = parse_severity(&text).map_err(|why| {
                CordonError::InvalidConfiguration(format!("CORDON_MIN_SEVERITY: {why}"))
            })?;
        }
        for (name, flag) in [
            ("CORDON_INCLUDE_SAMPLES", &mut config.policy.include_samples),
            (
                "CORDON_INCLUDE_ARCHIVED",
                &mut config.policy.include_archived,
            ),
            (
                "CORDON_ASG_DECREMENT_DESIRED",
                &mut config.auto_scaling.decrement_desired,
            ),
            ("CORDON_EVIDENCE_SNAPSHOTS", &mut config.evidence.snapshots),
            (
                "CORDON_SESSION_MANAGER_WHILE_ISOLATED",
                &mut config.session_manager,
            ),
        ] {
            if let Some(text) = get(name) {
                *flag = match text.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => {
                        return Err(CordonError::InvalidConfiguration(format!(
                            "{name}={text:?} must be true or false"
                        )))
                    }
                };
            }
        }
        let list = |name: &str| -> Vec<String> {
            get(name)
                .map(|text| {
                    text.split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        config.release_table = get("CORDON_RELEASE_TABLE");
        config.mode = Mode::parse(&get("CORDON_MODE").unwrap_or_default())?;
        config.policy.allow_type_prefixes = list("CORDON_ALLOW_TYPE_PREFIXES");
        config.policy.deny_type_prefixes = list("CORDON_DENY_TYPE_PREFIXES");
        config.policy.resource_roles = list("CORDON_RESOURCE_ROLES");
        for role in &config.policy.resource_roles {
            if !["ACTOR", "TARGET"].contains(&role.to_ascii_uppercase().as_str()) {
                return Err(CordonError::InvalidConfiguration(format!(
                    "CORDON_RESOURCE_ROLES: {role:?} is not ACTOR or TARGET"
                )));
            }
        }
        config.policy.exemptions = exemptions(get("CORDON_EXEMPT_TAG_KEY"), |name| list(name))?;
        config.policy.scope = scope(|name| list(name))?;
        config.forensic_access = ForensicSource::from_settings(
            get("CORDON_FORENSIC_CIDR").as_deref(),
            get("CORDON_FORENSIC_SECURITY_GROUP").as_deref(),
        )?;
        if let Some(text) = get("CORDON_NACL_BAND") {
            config.nacl.band = RuleBand::parse(&text)?;
        }
        for cidr in list("CORDON_PROTECTED_CIDRS") {
            parse_cidr(&cidr).map_err(|why| {
                CordonError::InvalidConfiguration(format!("CORDON_PROTECTED_CIDRS: {why}"))
            })?;
            config.nacl.protected_cidrs.push(cidr);
        }
        if let Some(text) = get("CORDON_NACL_DENY_PRIVATE_REMOTES") {
            config.nacl.deny_private_remotes = match text.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(CordonError::InvalidConfiguration(format!(
                        "CORDON_NACL_DENY_PRIVATE_REMOTES={text:?} must be true or false"
                    )))
                }
            };
        }
        if let Some(text) = get("CORDON_NACL_MAX_REMOTE_DENIES") {
            config.nacl.max_remote_denies = text
                .parse()
                .ok()
                .filter(|n| *n <= 40)
                .ok_or_else(|| {
                    CordonError::InvalidConfiguration(format!(
                        "CORDON_NACL_MAX_REMOTE_DENIES={text:?} must be a whole number from 0 to 40 (0: deny no remote address)"
                    ))
                })?;
        }
        if let Some(text) = get("CORDON_NACL_RULE_QUOTA") {
            config.nacl.rule_quota = text
                .parse()
                .ok()
                .filter(|quota| (1..=40).contains(quota))
                .ok_or_else(|| {
                    CordonError::InvalidConfiguration(format!(
                        "CORDON_NACL_RULE_QUOTA={text:?} must be a whole number from 1 to 40 (AWS's adjustable maximum)"
                    ))
                })?;
        }
        Ok(config)
    }
}

/// The scope of `CORDON_ACCOUNTS` and `CORDON_VPCS`: ids as AWS writes them, or the rollout
/// would skip every finding without saying why.
fn scope(list: impl Fn(&str) -> Vec<String>) -> Result<crate::policy::Scope> {
    let accounts = list("CORDON_ACCOUNTS");
    if let Some(bad) = accounts.iter().find(|a| !crate::ec2::is_account_id(a)) {
        return Err(CordonError::InvalidConfiguration(format!(
            "CORDON_ACCOUNTS: {bad:?} is not an account id (12 digits)"
        )));
    }
    let vpcs = list("CORDON_VPCS");
    if let Some(bad) = vpcs.iter().find(|v| !crate::ec2::is_vpc_id(v)) {
        return Err(CordonError::InvalidConfiguration(format!(
            "CORDON_VPCS: {bad:?} is not a VPC id (vpc- and 8 or 17 hexadecimal digits)"
        )));
    }
    Ok(crate::policy::Scope { accounts, vpcs })
}

/// The exemptions of `CORDON_EXEMPT_TAG_KEY`, `CORDON_EXEMPT_INSTANCE_IDS` and
/// `CORDON_EXEMPT_AUTO_SCALING_GROUPS`, each checked as EC2 and Auto Scaling would name it.
fn exemptions(
    tag_key: Option<String>,
    list: impl Fn(&str) -> Vec<String>,
) -> Result<crate::policy::Exemptions> {
    if let Some(key) = &tag_key {
        if key.chars().count() > 128 {
            return Err(CordonError::InvalidConfiguration(format!(
                "CORDON_EXEMPT_TAG_KEY={key:?} is longer than a tag key (128 characters); leave it empty for no tag exemptions"
            )));
        }
    }
    let instance_ids = list("CORDON_EXEMPT_INSTANCE_IDS");
    if let Some(id) = instance_ids
        .iter()
        .find(|id| !crate::ec2::is_instance_id(id))
    {
        return Err(CordonError::InvalidConfiguration(format!(
            "CORDON_EXEMPT_INSTANCE_IDS: {id:?} is not an instance id (i- and 8 or 17 lowercase hexadecimal digits)"
        )));
    }
    let auto_scaling_groups = list("CORDON_EXEMPT_AUTO_SCALING_GROUPS");
    if let Some(name) = auto_scaling_groups.iter().find(|n| n.chars().count() > 255) {
        return Err(CordonError::InvalidConfiguration(format!(
            "CORDON_EXEMPT_AUTO_SCALING_GROUPS: {name:?} is longer than an Auto Scaling group name (255 characters)"
        )));
    }
    Ok(crate::policy::Exemptions {
        tag_key,
        instance_ids,
        auto_scaling_groups,
    })
}

pub fn parse_severity(text: &str) -> std::result::Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|value| (0.0..=10.0).contains(value))
        .ok_or_else(|| format!("{text:?} is not a severity between 0 and 10 (e.g. 7 or 8.5)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let config = config(&[]).unwrap();
        assert_eq!(config.policy.min_severity, 7.0);
        assert_eq!(config.nacl.band, RuleBand { first: 1, last: 99 });
        assert_eq!(config.nacl.rule_quota, 20);
        assert_eq!(config.forensic_access, None);
        assert_eq!(config.nacl.max_remote_denies, 10);
        assert!(!config.nacl.deny_private_remotes);
        assert!(config.nacl_settings().protected_cidrs.is_empty());
        assert_eq!(
            config.policy.exemptions,
            crate::policy::Exemptions::default(),
            "no tag exempts unless the stack names its key"
        );
    }

    #[test]
    fn exemptions_are_read_and_checked() {
        let read = config(&[
            ("CORDON_EXEMPT_TAG_KEY", " acme:cordon-exempt "),
            (
                "CORDON_EXEMPT_INSTANCE_IDS",
                "i-0123abcd, i-0123456789abcdef0",
            ),
            ("CORDON_EXEMPT_AUTO_SCALING_GROUPS", "bastions,build agents"),
        ])
        .unwrap()
        .policy
        .exemptions;
        assert_eq!(read.tag_key.as_deref(), Some("acme:cordon-exempt"));
        assert_eq!(read.instance_ids, ["i-0123abcd", "i-0123456789abcdef0"]);
        assert_eq!(read.auto_scaling_groups, ["bastions", "build agents"]);
        let scope = config(&[
            ("CORDON_ACCOUNTS", "111122223333, 444455556666"),
            ("CORDON_VPCS", "vpc-0123abcd"),
        ])
        .unwrap()
        .policy
        .scope;
        assert_eq!(scope.accounts, ["111122223333", "444455556666"]);
        assert_eq!(scope.vpcs, ["vpc-0123abcd"]);
        for (name, value) in [
            ("CORDON_ACCOUNTS", "1111-2222-3333"),
            ("CORDON_VPCS", "vpc-1"),
        ] {
            let error = config(&[(name, value)]).unwrap_err().to_string();
            assert!(
                error.contains(name) && error.contains("is not a"),
                "{error}"
            );
        }
        for (name, value, says) in [
            ("CORDON_EXEMPT_TAG_KEY", "k".repeat(129), "128"),
            (
                "CORDON_EXEMPT_INSTANCE_IDS",
                "i-0123".into(),
                "not an instance id",
            ),
            (
                "CORDON_EXEMPT_INSTANCE_IDS",
                "web-1".into(),
                "not an instance id",
            ),
            ("CORDON_EXEMPT_AUTO_SCALING_GROUPS", "g".repeat(256), "255"),
        ] {
            let error = config(&[(name, value.as_str())]).unwrap_err().to_string();
            assert!(error.contains(name) && error.contains(says), "{error}");
        }
    }

    #[test]
    fn protected_cidrs_and_the_forensic_cidr_are_never_denied_remotes() {
        let config = config(&[
            ("CORDON_PROTECTED_CIDRS", "10.0.0.2/32, 2001:db8::/64"),
            ("CORDON_FORENSIC_CIDR", "203.0.113.0/28"),
            ("CORDON_NACL_DENY_PRIVATE_REMOTES", "yes"),
            ("CORDON_NACL_MAX_REMOTE_DENIES", "3"),
        ])
        .unwrap();
        assert_eq!(
            config.nacl_settings().protected_cidrs,
            ["10.0.0.2/32", "2001:db8::/64", "203.0.113.0/28"]
        );
        assert!(config.nacl.deny_private_remotes);
        assert_eq!(config.nacl.max_remote_denies, 3);
        for (name, bad) in [
            ("CORDON_PROTECTED_CIDRS", "10.0.0.0/33"),
            ("CORDON_NACL_DENY_PRIVATE_REMOTES", "maybe"),
            ("CORDON_NACL_MAX_REMOTE_DENIES", "41"),
        ] {
            let error = self::config(&[(name, bad)]).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn every_setting_is_read() {
        let config = config(&[
            ("CORDON_MIN_SEVERITY", "8.5"),
            ("CORDON_INCLUDE_SAMPLES", "true"),
            ("CORDON_ALLOW_TYPE_PREFIXES", "Backdoor:, CryptoCurrency:"),
            ("CORDON_RESOURCE_ROLES", "ACTOR"),
            ("CORDON_FORENSIC_CIDR", "10.9.0.0/24"),
            ("CORDON_NACL_BAND", "10-49"),
            ("CORDON_NACL_RULE_QUOTA", "40"),
            ("CORDON_MODE", "report-only"),
            ("CORDON_SESSION_MANAGER_WHILE_ISOLATED", "true"),
        ])
        .unwrap();
        assert_eq!(config.mode, Mode::ReportOnly);
        assert!(config.session_manager && config.access().session_manager);
        assert!(config.nacl_settings().session_manager);
        assert!(!self::config(&[]).unwrap().session_manager);
        assert_eq!(self::config(&[]).unwrap().mode, Mode::Contain);
        assert_eq!(config.policy.min_severity, 8.5);
        assert!(config.policy.include_samples);
        assert_eq!(
            config.policy.allow_type_prefixes,
            ["Backdoor:", "CryptoCurrency:"]
        );
        assert_eq!(
            config.forensic_access,
            Some(ForensicSource::Cidr("10.9.0.0/24".into()))
        );
        assert_eq!(
            config.nacl.band,
            RuleBand {
                first: 10,
                last: 49
            }
        );
        assert_eq!(config.nacl.rule_quota, 40);
        let backwards = self::config(&[("CORDON_NACL_BAND", "49-10")]).unwrap();
        assert_eq!(
            backwards.nacl.band,
            RuleBand {
                first: 10,
                last: 49
            }
        );
    }

    #[test]
    fn malformed_settings_name_the_variable() {
        for (name, value, expected) in [
            ("CORDON_MIN_SEVERITY", "high", "CORDON_MIN_SEVERITY"),
            (
                "CORDON_INCLUDE_ARCHIVED",
                "maybe",
                "CORDON_INCLUDE_ARCHIVED",
            ),
            ("CORDON_RESOURCE_ROLES", "VICTIM", "CORDON_RESOURCE_ROLES"),
            ("CORDON_FORENSIC_CIDR", "10.0.0.0/40", "0..=32"),
            ("CORDON_FORENSIC_SECURITY_GROUP", "forensics", "sg-"),
            ("CORDON_NACL_BAND", "0-99", "1 <= first"),
            ("CORDON_NACL_BAND", "1-32767", "32766"),
            ("CORDON_NACL_BAND", "ten", "FIRST-LAST"),
            ("CORDON_NACL_RULE_QUOTA", "41", "CORDON_NACL_RULE_QUOTA"),
            ("CORDON_MODE", "dry-run", "contain or report-only"),
            (
                "CORDON_SESSION_MANAGER_WHILE_ISOLATED",
                "on",
                "CORDON_SESSION_MANAGER_WHILE_ISOLATED=\"on\" must be true or false",
            ),
        ] {
            let error = config(&[(name, value)]).unwrap_err();
            assert_eq!(error.error_name(), "Cordon.InvalidConfiguration");
            assert!(
                error.to_string().contains(expected),
                "{name}={value}: {error}"
            );
        }
        let both = config(&[
            ("CORDON_FORENSIC_CIDR", "10.0.0.0/8"),
            ("CORDON_FORENSIC_SECURITY_GROUP", "sg-1"),
        ]);
        assert!(both.unwrap_err().to_string().contains("not both"));
    }
}
