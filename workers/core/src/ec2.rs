//! The one port between Cordon's domain and EC2. The aws-sdk adapter (`aws.rs`) implements it
//! for real; unit tests implement it in memory. Types here are what the domain needs to know,
//! not the SDK's shapes.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::error::Result;

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn connection_tracking_timeouts_outside_aws_ranges_are_refused_before_any_call() {
        assert!(ConnTrack::ISOLATED.check().is_ok());
        assert!(ConnTrack::DEFAULT.check().is_ok());
        for bad in [
            ConnTrack {
                tcp_established: Some(59),
                ..Default::default()
            },
            ConnTrack {
                tcp_established: Some(432_001),
                ..Default::default()
            },
            ConnTrack {
                udp_stream: Some(181),
                ..Default::default()
            },
            ConnTrack {
                udp: Some(29),
                ..Default::default()
            },
            ConnTrack {
                udp: Some(61),
                ..Default::default()
            },
        ] {
            let error = bad.check().unwrap_err();
            assert!(error.to_string().contains("outside AWS's range"), "{error}");
        }
        let partial = ConnTrack {
            udp: Some(45),
            ..Default::default()
        };
        assert_eq!(
            partial.effective(),
            ConnTrack {
                tcp_established: Some(432_000),
                udp_stream: Some(180),
                udp: Some(45)
            }
        );
    }

    #[test]
    fn only_real_shapes_of_ids_accounts_and_regions_pass() {
        for good in ["i-0123abcd", "i-0123456789abcdef0"] {
            assert!(is_instance_id(good), "{good}");
        }
        for bad in [
            "",
            "i-",
            "i-0123ABCD",
            "i-0123abc",
            "i-0123456789abcdef",
            "sg-0123abcd",
            "i-../../etc",
            "i-0123 abcd",
            "i-0123abcd\n",
        ] {
            assert!(!is_instance_id(bad), "{bad}");
        }
        assert!(
            is_account_id("123456789012")
                && !is_account_id("12345678901")
                && !is_account_id("../../etc/xx")
        );
        for good in [
            "eu-west-1",
            "us-gov-west-1",
            "ap-southeast-2",
            "il-central-1",
        ] {
            assert!(is_region(good), "{good}");
        }
        for bad in [
            "",
            "eu-west",
            "eu-west-1.evil.example",
            "EU-WEST-1",
            "eu--1",
            "eu-west-123",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
        let error = check_target_ids("i-0123abcd", Some("42"), None).unwrap_err();
        assert!(
            error.to_string().contains("not an AWS account id"),
            "{error}"
        );
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    /// `pending`, `running`, `stopped`, `terminated`, ...
    pub state: String,
    /// Ordered by device index, as the instance presents them.
    pub interfaces: Vec<NetworkInterface>,
    pub tags: Vec<(String, String)>,
    /// `spot` for a Spot Instance (which cannot have termination protection); None for
    /// On-Demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<String>,
    /// The ARN of its instance profile, whose role's credentials it is handed; None without
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile_arn: Option<String>,
    /// Its attached EBS volumes, in the order EC2 lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

/// An EBS volume attached to an instance (its block device mapping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The device name it is attached at (`/dev/xvda`), which `ModifyInstanceAttribute` names.
    pub device: String,
    pub volume_id: String,
    pub delete_on_termination: bool,
}

/// An EBS snapshot Cordon took, or found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub snapshot_id: String,
    pub volume_id: String,
    pub tags: Vec<(String, String)>,
}

impl Instance {
    /// The VPCs of the instance's interfaces, each once, in interface order.
    pub fn vpc_ids(&self) -> Vec<String> {
        unique_vpcs(&self.interfaces)
    }

    pub fn is_spot(&self) -> bool {
        self.lifecycle.as_deref() == Some("spot")
    }
}

pub fn unique_vpcs(interfaces: &[NetworkInterface]) -> Vec<String> {
    let mut vpcs: Vec<String> = Vec::new();
    for interface in interfaces {
        if !vpcs.contains(&interface.vpc_id) {
            vpcs.push(interface.vpc_id.clone());
        }
    }
    vpcs
}

/// One network interface as the record keeps it. Fields added after the first release are
/// left out of the record when empty (the record lives in 256-character tags) and read as
/// empty from a record that predates them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub id: String,
    pub subnet_id: String,
    pub vpc_id: String,
    /// Group ids in the order EC2 reports them.
    pub groups: Vec<String>,
    /// The groups' names as EC2 reported them at capture, by id: shown to the analyst who
    /// decides, never kept in the record's tags (see [`crate::record::state_tags`]).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub group_names: std::collections::BTreeMap<String, String>,
    pub private_ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    /// Prefixes delegated to the interface (EKS prefix delegation), as CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv4_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_prefixes: Vec<String>,
    /// `interface`, `trunk`, `efa`, ...; None when EC2 does not say (a plain interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_type: Option<String>,
    /// The service that manages the interface (EC2's `Operator`), when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    /// The account that owns the interface (the instance's account; in a VPC shared through
    /// AWS RAM, not the VPC's owner).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner_id: String,
    /// Its connection-tracking idle timeouts; None when EC2 reports none (AWS's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<ConnTrack>,
}

impl NetworkInterface {
    /// Why Cordon cannot contain this interface by its groups, if it cannot: a trunk's
    /// branch interfaces carry container traffic under groups of their own, and an interface
    /// that another service manages is that service's to change.
    pub fn not_containable(&self) -> Option<String> {
        if let Some(manager) = &self.managed_by {
            return Some(format!(
                "{} is managed by {manager}: only that service may change it",
                self.id
            ));
        }
        if self.interface_type.as_deref() == Some("trunk") {
            return Some(format!(
                "{} is a trunk interface: its branch interfaces carry container traffic under their own security groups, which Cordon does not change",
                self.id
            ));
        }
        None
    }

    /// The instance's own addresses and delegated prefixes on this interface, as CIDRs.
    pub fn own_cidrs(&self) -> Vec<String> {
        let hosts = self
            .private_ipv4
            .iter()
            .chain(&self.ipv6)
            .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
            .map(crate::net::host_cidr);
        let prefixes = self
            .ipv4_prefixes
            .iter()
            .chain(&self.ipv6_prefixes)
            .filter(|p| crate::net::parse_cidr(p).is_ok())
            .cloned();
        hosts.chain(prefixes).collect()
    }
}

/// An interface's connection-tracking idle timeouts, in seconds (EC2's
/// `ConnectionTrackingSpecification`). None: not set, AWS's default applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnTrack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_established: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_stream: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<i32>,
}

impl ConnTrack {
    /// AWS's allowed ranges, in seconds (EC2 user guide, "Idle connection tracking timeout").
    pub const TCP_ESTABLISHED_RANGE: std::ops::RangeInclusive<i32> = 60..=432_000;
    pub const UDP_STREAM_RANGE: std::ops::RangeInclusive<i32> = 60..=180;
    pub const UDP_RANGE: std::ops::RangeInclusive<i32> = 30..=60;
    /// AWS's defaults, which an interface without a setting has.
    pub const DEFAULT: ConnTrack = ConnTrack {
        tcp_established: Some(432_000),
        udp_stream: Some(180),
        udp: Some(30),
    };
    /// While isolated: the shortest timeouts AWS allows, so tracked flows that the groups no
    /// longer allow die within a minute instead of five days.
    pub const ISOLATED: ConnTrack = ConnTrack {
        tcp_established: Some(60),
        udp_stream: Some(60),
        udp: Some(30),
    };

    /// Every timeout, with AWS's default where none is set.
    pub fn effective(self) -> ConnTrack {
        ConnTrack {
            tcp_established: self.tcp_established.or(Self::DEFAULT.tcp_established),
            udp_stream: self.udp_stream.or(Self::DEFAULT.udp_stream),
            udp: self.udp.or(Self::DEFAULT.udp),
        }
    }

    /// Refuses a timeout that EC2 would refuse (moto accepts anything, and ignores it).
    pub fn check(&self) -> Result<()> {
        for (name, value, range) in [
            (
                "TCP established",
                self.tcp_established,
                Self::TCP_ESTABLISHED_RANGE,
            ),
            ("UDP stream", self.udp_stream, Self::UDP_STREAM_RANGE),
            ("UDP", self.udp, Self::UDP_RANGE),
        ] {
            if let Some(seconds) = value.filter(|s| !range.contains(s)) {
                return Err(crate::error::CordonError::InvalidInput(format!(
                    "{name} idle timeout {seconds} s is outside AWS's range {}..={} s",
                    range.start(),
                    range.end()
                )));
            }
        }
        Ok(())
    }
}

/// A VPC as containment needs it: who owns it and its address blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub id: String,
    pub owner_id: String,
    /// Every associated IPv4 and IPv6 CIDR block.
    pub cidrs: Vec<String>,
}

/// A subnet as the ACL measure needs it: which VPC and which address blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    /// Its IPv4 block and any IPv6 blocks.
    pub cidrs: Vec<String>,
}

/// A Session Manager interface endpoint of a VPC (`ssm`, `ssmmessages` or `ec2messages`) that
/// the SSM Agent of an isolated instance may be let reach (`SessionManagerWhileIsolated`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEndpoint {
    pub id: String,
    /// `ssm`, `ssmmessages` or `ec2messages`.
    pub service: String,
    pub subnet_ids: Vec<String>,
    /// Its network interfaces' IPv4 and IPv6 addresses.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRole {
    /// Allows all traffic both ways, so that tracked flows become untracked before isolation.
    Conversion,
    /// No egress; ingress only from the configured forensic source.
    Isolation,
}

impl GroupRole {
    pub const TAG_KEY: &'static str = "cordon:role";

    pub fn tag_value(self) -> &'static str {
        match self {
            GroupRole::Conversion => "conversion",
            GroupRole::Isolation => "isolation",
        }
    }

    pub fn from_tag_value(value: &str) -> Option<Self> {
        match value {
            "conversion" => Some(GroupRole::Conversion),
            "isolation" => Some(GroupRole::Isolation),
            _ => None,
        }
    }

    pub fn group_name(self, vpc_id: &str) -> String {
        format!("cordon-{}-{vpc_id}", self.tag_value())
    }

    /// The group's name with `suffix` after it: a conversion group made when someone else's
    /// group holds the plain name (see `isolate::ensure_group`).
    pub fn group_name_with(self, vpc_id: &str, suffix: Option<&str>) -> String {
        match suffix {
            Some(suffix) => format!("{}-{suffix}", self.group_name(vpc_id)),
            None => self.group_name(vpc_id),
        }
    }

    /// Whether `name` is one Cordon gives this role's group in the VPC: the plain name, or for
    /// the conversion group the plain name and a suffix of 8 lowercase hex digits.
    pub fn is_its_name(self, vpc_id: &str, name: &str) -> bool {
        let plain = self.group_name(vpc_id);
        name == plain
            || (self == GroupRole::Conversion
                && name
                    .strip_prefix(&plain)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|suffix| {
                        suffix.len() == 8
                            && suffix
                                .bytes()
                                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                    }))
    }

    pub fn description(self) -> &'static str {
        match self {
            GroupRole::Conversion => "Cordon: all traffic both ways, applied briefly so tracked connections become untracked before isolation",
            GroupRole::Isolation => "Cordon: quarantine of a compromised instance; no egress, ingress only for forensics",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn is_egress(self) -> bool {
        self == Direction::Egress
    }

    pub fn from_egress(egress: bool) -> Self {
        if egress {
            Direction::Egress
        } else {
            Direction::Ingress
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "inbound",
            Direction::Egress => "outbound",
        }
    }
}

/// The far side of a security group rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    Ipv4(String),
    Ipv6(String),
    Group(String),
    /// A managed prefix list (`pl-...`): Cordon never grants one, but a rule naming one must
    /// be seen to be revoked.
    PrefixList(String),
}

/// One security group rule, flattened (EC2 groups several ranges into one permission).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SgRule {
    /// `-1` for all protocols.
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub peer: Peer,
}

impl SgRule {
    pub fn all_traffic(peer: Peer) -> Self {
        SgRule {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            peer,
        }
    }

    /// TCP 443 to `peer`.
    pub fn https(peer: Peer) -> Self {
        SgRule {
            protocol: "tcp".into(),
            from_port: Some(443),
            to_port: Some(443),
            peer,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub vpc_id: String,
    /// Its name, unique in its VPC and never changed: anyone who may tag a group can say it is
    /// Cordon's, but only a group made under Cordon's name for it (see
    /// [`GroupRole::is_its_name`]) is taken for Cordon's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub role: Option<GroupRole>,
    pub ingress: Vec<SgRule>,
    pub egress: Vec<SgRule>,
    /// Read for claims (`claim.rs`); conversion and isolation groups need only their role.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

impl SecurityGroup {
    /// Whether Cordon made this group for what its tags say: its name is the one Cordon gives
    /// such a group. Tags alone are not enough to use or delete a group on: anyone who may tag
    /// a group of the account could tag an application's as a claim or as Cordon's isolation
    /// group.
    pub fn named_as_cordons(&self) -> bool {
        match self.role {
            Some(role) => role.is_its_name(&self.vpc_id, &self.name),
            None => self
                .tags
                .iter()
                .find(|(k, _)| k == crate::claim::INSTANCE_TAG)
                .is_some_and(|(_, instance)| self.name == crate::claim::group_name(instance)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    pub rule_number: i32,
    pub egress: bool,
    pub action: RuleAction,
    /// `-1` for all protocols.
    pub protocol: String,
    /// IPv4 or IPv6 CIDR.
    pub cidr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAcl {
    pub id: String,
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
    pub entries: Vec<AclEntry>,
    pub tags: Vec<(String, String)>,
}

/// A deny-all-protocols entry Cordon adds, and later removes, in a network ACL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DenyEntry {
    pub acl_id: String,
    pub egress: bool,
    pub rule_number: i32,
    pub cidr: String,
}

impl DenyEntry {
    /// The entry as the ACL holds it: a deny of all traffic.
    pub fn as_acl_entry(&self) -> AclEntry {
        AclEntry {
            rule_number: self.rule_number,
            egress: self.egress,
            action: RuleAction::Deny,
            protocol: "-1".into(),
            cidr: self.cidr.clone(),
        }
    }

    /// Whether `entry` is the rule this deny names: the same direction, number and CIDR (in
    /// an ACL the caller has already matched).
    pub fn names(&self, entry: &AclEntry) -> bool {
        self.egress == entry.egress
            && self.rule_number == entry.rule_number
            && self.cidr == entry.cidr
    }
}

/// Whether `id` is `prefix` and 8 or 17 lowercase hex digits, the shape of EC2's ids.
fn is_ec2_id(id: &str, prefix: &str) -> bool {
    let hex = id.strip_prefix(prefix).unwrap_or("");
    (hex.len() == 8 || hex.len() == 17)
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `id` has the shape of an EC2 instance id: `i-` and 8 or 17 lowercase hex digits.
/// Anything else is refused before it reaches EC2 (or a role ARN, or an endpoint).
pub fn is_instance_id(id: &str) -> bool {
    is_ec2_id(id, "i-")
}

/// Whether `id` has the shape of a VPC id: `vpc-` and 8 or 17 lowercase hex digits.
pub fn is_vpc_id(id: &str) -> bool {
    is_ec2_id(id, "vpc-")
}

/// An AWS account id: twelve digits.
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// An AWS region name such as `eu-west-1` or `us-gov-west-1`: lowercase words and a number.
pub fn is_region(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    name.len() <= 32
        && parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].len() <= 2
        && !parts[parts.len() - 1].is_empty()
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

/// Refuses an instance id, account or region that cannot be one, saying what it must be.
pub fn check_target_ids(
    instance_id: &str,
    account_id: Option<&str>,
    region: Option<&str>,
) -> Result<()> {
    let refuse = |what: String| Err(crate::error::CordonError::InvalidInput(what));
    let shown = |text: &str| text.chars().take(40).collect::<String>();
    if !is_instance_id(instance_id) {
        return refuse(format!(
            "instance id {:?} is not an EC2 instance id (i- followed by 8 or 17 lowercase hex digits)",
            shown(instance_id)
        ));
    }
    if let Some(account) = account_id.filter(|a| !is_account_id(a)) {
        return refuse(format!(
            "account id {:?} is not an AWS account id (12 digits)",
            shown(account)
        ));
    }
    if let Some(region) = region.filter(|r| !is_region(r)) {
        return refuse(format!(
            "region {:?} is not an AWS region name (such as eu-west-1)",
            shown(region)
        ));
    }
    Ok(())
}

/// Where a finding's instance lives: its account and region (None: the caller's own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub account_id: Option<String>,
    pub region: Option<String>,
}

/// Hands out EC2 for a target: in the caller's own account, or through a role assumed in a
/// member account (`aws::AwsContext`). Plain closures serve as providers in tests.
pub trait Ec2Provider: Sync {
    type Ec2: Ec2;
    fn ec2_for(&self, target: &Target) -> impl Future<Output = Result<Self::Ec2>> + Send;
}

impl<F, E> Ec2Provider for F
where
    F: Fn(&Target) -> E + Sync,
    E: Ec2 + Send,
{
    type Ec2 = E;
    fn ec2_for(&self, target: &Target) -> impl Future<Output = Result<E>> + Send {
        let ec2 = self(target);
        async move { Ok(ec2) }
    }
}

/// Everything Cordon asks of EC2. Methods map to single API calls (or one paginated read).
pub trait Ec2: Sync {
    fn describe_instance(&self, instance_id: &str)
        -> impl Future<Output = Result<Instance>> + Send;
    fn termination_protection(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn set_termination_protection(
        &self,
        instance_id: &str,
        enabled: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Puts the interface on these groups, pressing: throttled, the call is retried with the
    /// SDK's attempts whatever the pace of the step (an interface on the conversion group
    /// allows everything until it is moved, and a way back must not give up early either).
    fn set_interface_groups(
        &self,
        eni_id: &str,
        group_ids: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
    /// [`Ec2::set_interface_groups`] for a swap that may wait its turn: in one attempt, never
    /// retried, when the state machine retries the step (the context yields); pressing
    /// otherwise. Its `Throttled` error means that EC2 did not make it (`RequestLimitExceeded`
    /// is answered before any work): the interface is where it was. Any other failure may
    /// have been made, as for any call.
    fn try_interface_groups(
        &self,
        eni_id: &str,
        group_ids: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Which of these security group ids still exist.
    fn existing_groups(
        &self,
        group_ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Cordon's groups (tagged `cordon:role`: conversion, isolation and claims) in these VPCs.
    fn cordon_groups(
        &self,
        vpc_ids: &[String],
    ) -> impl Future<Output = Result<Vec<SecurityGroup>>> + Send;
    /// Cordon's groups in every VPC of the region: a read that needs no VPC id, so it can go
    /// alongside the instance's own description (two per VPC Cordon acted in, and the claims).
    fn cordon_groups_anywhere(&self) -> impl Future<Output = Result<Vec<SecurityGroup>>> + Send;
    /// Creates the role's group, named (with `suffix` after its name, see
    /// [`GroupRole::group_name_with`]) and tagged; `GroupDuplicate` when the name is taken.
    fn create_cordon_group(
        &self,
        vpc_id: &str,
        role: GroupRole,
        suffix: Option<&str>,
    ) -> impl Future<Output = Result<SecurityGroup>> + Send;
    /// Creates the empty claim group of `instance_id` (`claim.rs`), carrying `record` (the
    /// record's tags) beside its own; `GroupDuplicate` when it exists. Returns its id.
    fn create_claim_group(
        &self,
        vpc_id: &str,
        instance_id: &str,
        owner: &str,
        claimed_at: &str,
        record: &[(String, String)],
    ) -> impl Future<Output = Result<String>> + Send;
    /// EC2 refuses (`DependencyViolation`) to delete a group that a network interface carries
    /// or that another group's rule names: whoever deletes it cannot strand an interface.
    fn delete_group(&self, group_id: &str) -> impl Future<Output = Result<()>> + Send;
    fn authorize(
        &self,
        group_id: &str,
        direction: Direction,
        rules: &[SgRule],
    ) -> impl Future<Output = Result<()>> + Send;
    fn revoke(
        &self,
        group_id: &str,
        direction: Direction,
        rules: &[SgRule],
    ) -> impl Future<Output = Result<()>> + Send;
    fn network_acls(&self, vpc_id: &str) -> impl Future<Output = Result<Vec<NetworkAcl>>> + Send;
    fn network_acl(&self, acl_id: &str) -> impl Future<Output = Result<NetworkAcl>> + Send;
    /// `NaclEntryExists` when the number is taken in that direction.
    fn create_deny_entry(&self, entry: &DenyEntry) -> impl Future<Output = Result<()>> + Send;
    fn delete_acl_entry(
        &self,
        acl_id: &str,
        egress: bool,
        rule_number: i32,
    ) -> impl Future<Output = Result<()>> + Send;
    fn create_tags(
        &self,
        resource_id: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<()>> + Send;
    fn delete_tags(
        &self,
        resource_id: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Instances carrying the given tag key, whatever its value.
    fn instances_tagged(&self, key: &str) -> impl Future<Output = Result<Vec<Instance>>> + Send;
    /// The instance's `InstanceInitiatedShutdownBehavior`: `stop` or `terminate`.
    fn shutdown_behavior(&self, instance_id: &str) -> impl Future<Output = Result<String>> + Send;
    fn set_shutdown_behavior(
        &self,
        instance_id: &str,
        behavior: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Sets an interface's connection-tracking idle timeouts (each within AWS's range).
    fn set_connection_tracking(
        &self,
        eni_id: &str,
        timeouts: &ConnTrack,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The VPC's owner and CIDR blocks.
    fn vpc(&self, vpc_id: &str) -> impl Future<Output = Result<Vpc>> + Send;
    /// The VPC's subnets and their blocks (`DescribeSubnets`, every page).
    fn subnets(&self, vpc_id: &str) -> impl Future<Output = Result<Vec<Subnet>>> + Send;
    /// The VPC's Session Manager interface endpoints that are available and have private DNS
    /// on (the agent resolves the services' names to those only), with their interfaces'
    /// addresses (`DescribeVpcEndpoints` and `DescribeNetworkInterfaces`, every page).
    fn session_endpoints(
        &self,
        vpc_id: &str,
    ) -> impl Future<Output = Result<Vec<SessionEndpoint>>> + Send;
    /// The security groups that some network interface in the VPC carries, whatever it is
    /// attached to (`DescribeNetworkInterfaces`, every page): a group in it is in use.
    fn groups_in_use(&self, vpc_id: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// The network interfaces that carry this group, attached or not (`DescribeNetworkInterfaces`
    /// filtered by `group-id`, every page): one page however large the VPC, where
    /// [`Ec2::groups_in_use`] reads every interface of it.
    fn interfaces_with_group(
        &self,
        group_id: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// This account's snapshots carrying every one of these tags (`DescribeSnapshots`, owner
    /// self, every page).
    fn snapshots_tagged(
        &self,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<Snapshot>>> + Send;
    /// `CreateSnapshots` of every EBS volume attached to the instance, at one point in time
    /// (crash-consistent across them), tagged at creation; one snapshot per volume. Tried
    /// once, never retried by the adapter: the call takes no idempotency token, and a call
    /// whose answer was lost has snapshotted all the same.
    fn create_snapshots(
        &self,
        instance_id: &str,
        description: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<Snapshot>>> + Send;
    /// `ModifyInstanceAttribute` of the block device mappings: each (device, delete on
    /// termination).
    fn set_delete_on_termination(
        &self,
        instance_id: &str,
        devices: &[(String, bool)],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The VPC's group of that name, whatever its tags (None when there is none).
    fn group_named(
        &self,
        vpc_id: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<SecurityGroup>>> + Send;
    /// Whether `calls` more calls, each at its worst under the SDK's retries, end before the
    /// worker's deadline. A caller about to begin work that must not be cut in the middle
    /// (an interface's swaps and their rollback) asks first. Without a deadline: always.
    fn has_time_for(&self, calls: u32) -> bool {
        let _ = calls;
        true
    }
}
