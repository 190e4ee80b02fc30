//! An in-memory EC2 behind the port, for unit tests of the domain. It follows AWS's rules where
//! they matter to Cordon (rule numbers unique per direction, unknown ids rejected) and records
//! every call so tests can count round trips and inject failures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::ec2::{
    AclEntry, ConnTrack, DenyEntry, Direction, Ec2, GroupRole, Instance, NetworkAcl,
    NetworkInterface, RuleAction, SecurityGroup, SessionEndpoint, SgRule, Snapshot, Subnet, Volume,
    Vpc,
};
use crate::error::{CordonError, Result};

#[derive(Default)]
pub struct FakeState {
    pub instances: BTreeMap<String, Instance>,
    pub protection: BTreeMap<String, bool>,
    pub groups: BTreeMap<String, SecurityGroup>,
    pub acls: BTreeMap<String, NetworkAcl>,
    pub calls: Vec<String>,
    /// Operation name -> error returned (once) by the next call of that operation.
    pub failures: Vec<(String, CordonError)>,
    /// Another execution's group that appears just as ours is created (a lost race).
    pub racing_group: Option<SecurityGroup>,
    /// Someone else's entry that lands in an ACL, in its direction, just before our next create
    /// there, and takes that create's rule number (whatever number the entry names).
    pub racing_entry: Option<(String, AclEntry)>,
    /// The next entry is created but its answer is lost, so the SDK's retry of the same call
    /// finds the number taken (by that very entry).
    pub lost_entry_answer: bool,
    /// The next entry is created, its answer lost, and the SDK's retries are all throttled.
    pub lost_entry_answer_then_throttled: bool,
    /// The next entry is created, its answer lost (the SDK's retry finds the number taken by
    /// it), and the ACL cannot be read right after.
    pub lost_entry_answer_then_unreadable: bool,
    /// The next entry is deleted but the answer is lost: the retry finds it gone.
    pub lost_delete_answer: bool,
    /// Another execution makes the same rule change on a group just before our next call of
    /// this operation (`AuthorizeSecurityGroup` or `RevokeSecurityGroup`): both found the
    /// group new and are putting its rules right.
    pub racing_rule_change: Option<String>,
    /// After this many calls every call fails: the worker died there.
    pub dies_after: Option<usize>,
    /// `InstanceInitiatedShutdownBehavior` per instance (absent: `stop`, EC2's default).
    pub shutdown: BTreeMap<String, String>,
    pub vpcs: BTreeMap<String, Vpc>,
    pub subnets: BTreeMap<String, Subnet>,
    /// Session Manager endpoints, by VPC.
    pub session_endpoints: BTreeMap<String, Vec<SessionEndpoint>>,
    /// Each read of Cordon's groups: the VPCs it was limited to (None: every VPC).
    pub group_reads: Vec<Option<Vec<String>>>,
    /// The account's EBS snapshots.
    pub snapshots: Vec<Snapshot>,
    /// The next CreateSnapshots is made, but its answer is lost (no idempotency token: only
    /// the caller can keep another attempt from snapshotting again).
    pub lost_snapshots_answer: bool,
    /// Swaps to a Cordon group of this role are refused, as an SCP or a flaky EC2 would.
    pub swap_refusals: Vec<SwapRefusal>,
    /// The interface of each swap made in one attempt ([`Ec2::try_interface_groups`]); a
    /// refusal of one answers as EC2 answers its only attempt.
    pub tried_once: Vec<String>,
    /// Eventual consistency: a group Cordon creates is unknown to the next this-many calls
    /// that name it or look for it (EC2 documents this for `CreateSecurityGroup`).
    pub new_groups_unseen_for: u32,
    unseen: BTreeMap<String, u32>,
    /// How many more calls fit before the worker's deadline (None: no deadline).
    pub calls_before_deadline: Option<u32>,
    /// Every call takes this long (on tokio's clock; tests pause it): calls made one after
    /// another add up, calls made at once do not, so the clock counts round trips.
    pub latency: Option<std::time::Duration>,
    /// Each call and when it was answered, while `latency` is set.
    pub answered: Vec<(String, tokio::time::Instant)>,
    next_id: u32,
}

/// A refusal of `ModifyNetworkInterfaceAttribute` to a group of `to` (None: to groups that are
/// not Cordon's, the way back): `times` calls (None: every call) answer `error`.
#[derive(Debug, Clone)]
pub struct SwapRefusal {
    pub to: Option<GroupRole>,
    pub error: CordonError,
    pub times: Option<u32>,
}

/// Clones share one state, as clients of one account do.
#[derive(Default, Clone)]
pub struct FakeEc2 {
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeEc2 {
    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn fail_next(&self, operation: &str, error: CordonError) {
        self.with(|s| s.failures.push((operation.to_string(), error)));
    }

    pub fn calls(&self) -> Vec<String> {
        self.with(|s| s.calls.clone())
    }

    pub fn clear_calls(&self) {
        self.with(|s| s.calls.clear());
    }

    pub fn interface_groups(&self, eni_id: &str) -> Vec<String> {
        self.with(|s| {
            s.instances
                .values()
                .flat_map(|i| &i.interfaces)
                .find(|eni| eni.id == eni_id)
                .map(|eni| eni.groups.clone())
                .unwrap_or_default()
        })
    }

    /// Gives `i-00000001` a second interface: `eni-2` (subnet-b, group sg-ssh, 10.0.2.5).
    pub fn add_second_interface(&self) {
        self.with(|s| {
            s.instances
                .get_mut("i-00000001")
                .unwrap()
                .interfaces
                .push(interface(
                    "eni-2",
                    "subnet-b",
                    &["sg-ssh"],
                    "10.0.2.5",
                    None,
                ))
        });
    }

    /// Another instance of `vpc-1`, `instance_id`, with one interface `eni_id` (subnet-b,
    /// 10.0.2.9) on `groups`: a neighbour that another containment may be working on.
    pub fn add_neighbour(&self, instance_id: &str, eni_id: &str, groups: &[&str]) {
        self.with(|s| {
            let mut neighbour = s.instances["i-00000001"].clone();
            neighbour.id = instance_id.into();
            neighbour.interfaces = vec![interface(eni_id, "subnet-b", groups, "10.0.2.9", None)];
            s.instances.insert(instance_id.into(), neighbour);
        });
    }

    /// Session Manager's `ssm` (10.0.2.10) and `ssmmessages` (10.0.2.11) endpoints in
    /// `subnet-b` of `vpc-1`, both a session needs.
    pub fn with_session_endpoints(&self) {
        let endpoint = |id: &str, service: &str, address: &str| SessionEndpoint {
            id: id.into(),
            service: service.into(),
            subnet_ids: vec!["subnet-b".into()],
            addresses: vec![address.into()],
        };
        self.with(|s| {
            s.session_endpoints.insert(
                "vpc-1".into(),
                vec![
                    endpoint("vpce-ssm", "ssm", "10.0.2.10"),
                    endpoint("vpce-messages", "ssmmessages", "10.0.2.11"),
                ],
            )
        });
    }

    pub fn acl_entries(&self, acl_id: &str) -> Vec<AclEntry> {
        self.with(|s| s.acls[acl_id].entries.clone())
    }

    /// One VPC `vpc-1` (10.0.0.0/16) with subnets `subnet-a` (10.0.1.0/24, acl-a) and
    /// `subnet-b` (10.0.2.0/24, acl-b), each ACL holding
    /// the default allow 100 and catch-all 32767 in both directions; instance `i-00000001` has
    /// `eni-1` (subnet-a, groups sg-app and sg-ssh, 10.0.1.5 and 2001:db8:1::5).
    pub fn standard() -> Self {
        let fake = FakeEc2::default();
        fake.with(|s| {
            for (acl, subnet, cidr) in [
                ("acl-a", "subnet-a", "10.0.1.0/24"),
                ("acl-b", "subnet-b", "10.0.2.0/24"),
            ] {
                s.acls.insert(acl.into(), default_acl(acl, &[subnet]));
                s.subnets.insert(
                    subnet.into(),
                    Subnet {
                        id: subnet.into(),
                        vpc_id: "vpc-1".into(),
                        cidrs: vec![cidr.into()],
                    },
                );
            }
            for id in ["sg-app", "sg-ssh"] {
                s.groups.insert(
                    id.into(),
                    SecurityGroup {
                        id: id.into(),
                        vpc_id: "vpc-1".into(),
                        name: id.into(),
                        role: None,
                        ingress: vec![],
                        egress: vec![],
                        tags: vec![],
                    },
                );
            }
            s.instances.insert(
                "i-00000001".into(),
                Instance {
                    id: "i-00000001".into(),
                    state: "running".into(),
                    interfaces: vec![interface(
                        "eni-1",
                        "subnet-a",
                        &["sg-app", "sg-ssh"],
                        "10.0.1.5",
                        Some("2001:db8:1::5"),
                    )],
                    tags: vec![("Name".into(), "web-1".into())],
                    lifecycle: None,
                    instance_profile_arn: None,
                    // The root volume goes with the instance (EC2's default for it), the data
                    // volume stays.
                    volumes: vec![
                        Volume {
                            device: "/dev/xvda".into(),
                            volume_id: "vol-root".into(),
                            delete_on_termination: true,
                        },
                        Volume {
                            device: "/dev/sdf".into(),
                            volume_id: "vol-data".into(),
                            delete_on_termination: false,
                        },
                    ],
                },
            );
            s.protection.insert("i-00000001".into(), false);
            s.vpcs.insert(
                "vpc-1".into(),
                Vpc {
                    id: "vpc-1".into(),
                    owner_id: OWN_ACCOUNT.into(),
                    cidrs: vec!["10.0.0.0/16".into(), "2001:db8:1::/56".into()],
                },
            );
        });
        fake
    }

    /// Refuses swaps to the `to` group (None: to groups that are not Cordon's), `times` times
    /// (None: always).
    pub fn refuse_swaps_to(&self, to: Option<GroupRole>, error: CordonError, times: Option<u32>) {
        self.with(|s| s.swap_refusals.push(SwapRefusal { to, error, times }));
    }

    pub fn conntrack(&self, eni_id: &str) -> Option<ConnTrack> {
        self.with(|s| {
            s.instances
                .values()
                .flat_map(|i| &i.interfaces)
                .find(|eni| eni.id == eni_id)
                .and_then(|eni| eni.conntrack)
        })
    }

    pub fn shutdown_of(&self, instance_id: &str) -> String {
        self.with(|s| s.shutdown.get(instance_id).cloned())
            .unwrap_or_else(|| "stop".into())
    }
}

/// The account that owns `standard()`'s VPC, and the instance.
pub const OWN_ACCOUNT: &str = "111122223333";

impl FakeState {
    /// Every interface of the world (all attached, in this fake).
    fn interfaces(&self) -> impl Iterator<Item = &NetworkInterface> {
        self.instances.values().flat_map(|i| &i.interfaces)
    }

    /// The attached interface `eni_id`, as EC2 finds it for a change.
    fn interface_mut(&mut self, eni_id: &str) -> Result<&mut NetworkInterface> {
        self.instances
            .values_mut()
            .flat_map(|i| i.interfaces.iter_mut())
            .find(|eni| eni.id == eni_id)
            .ok_or(CordonError::InterfaceNotFound {
                eni_id: eni_id.into(),
            })
    }

    /// Whether the group is (still) unknown to this call, as EC2 is for a while after it
    /// creates one.
    fn unseen(&mut self, group_id: &str) -> bool {
        match self.unseen.get_mut(group_id) {
            Some(0) | None => false,
            Some(left) => {
                *left -= 1;
                true
            }
        }
    }

    fn group_not_found(operation: &str, group_id: &str) -> CordonError {
        CordonError::Ec2 {
            operation: operation.into(),
            code: "InvalidGroup.NotFound".into(),
            message: format!("The security group '{group_id}' does not exist"),
        }
    }
}

pub fn interface(
    id: &str,
    subnet: &str,
    groups: &[&str],
    ipv4: &str,
    ipv6: Option<&str>,
) -> NetworkInterface {
    NetworkInterface {
        id: id.into(),
        subnet_id: subnet.into(),
        vpc_id: "vpc-1".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        private_ipv4: vec![ipv4.into()],
        ipv6: ipv6.into_iter().map(String::from).collect(),
        ..Default::default()
    }
}

pub fn default_acl(id: &str, subnets: &[&str]) -> NetworkAcl {
    let entry = |rule_number, egress, action| AclEntry {
        rule_number,
        egress,
        action,
        protocol: "-1".into(),
        cidr: "0.0.0.0/0".into(),
    };
    NetworkAcl {
        id: id.into(),
        vpc_id: "vpc-1".into(),
        subnet_ids: subnets.iter().map(|s| s.to_string()).collect(),
        entries: vec![
            entry(100, false, RuleAction::Allow),
            entry(32767, false, RuleAction::Deny),
            entry(100, true, RuleAction::Allow),
            entry(32767, true, RuleAction::Deny),
        ],
        tags: vec![],
    }
}

fn set_tags(tags: &mut Vec<(String, String)>, new: &[(String, String)]) {
    for (key, value) in new {
        match tags.iter_mut().find(|(k, _)| k == key) {
            Some(existing) => existing.1 = value.clone(),
            None => tags.push((key.clone(), value.clone())),
        }
    }
}

impl FakeEc2 {
    async fn call(&self, operation: &str) -> Result<()> {
        let answer = self.with(|s| {
            if let Some(left) = s.calls_before_deadline.as_mut() {
                if *left == 0 {
                    panic!("{operation} was started after the worker's deadline");
                }
                *left -= 1;
            }
            if s.dies_after.is_some_and(|n| s.calls.len() >= n) {
                return Err(CordonError::Unavailable {
                    operation: operation.into(),
                    message: "the worker died".into(),
                });
            }
            s.calls.push(operation.to_string());
            match s.failures.iter().position(|(op, _)| op == operation) {
                Some(at) => Err(s.failures.remove(at).1),
                None => Ok(()),
            }
        });
        if let Some(latency) = self.with(|s| s.latency) {
            tokio::time::sleep(latency).await;
            let at = tokio::time::Instant::now();
            self.with(|s| s.answered.push((operation.to_string(), at)));
        }
        answer
    }
}

impl Ec2 for FakeEc2 {
    async fn describe_instance(&self, instance_id: &str) -> Result<Instance> {
        self.call("DescribeInstances").await?;
        self.with(|s| s.instances.get(instance_id).cloned())
            .ok_or(CordonError::InstanceNotFound {
                instance_id: instance_id.into(),
            })
    }

    async fn termination_protection(&self, instance_id: &str) -> Result<bool> {
        self.call("DescribeInstanceAttribute").await?;
        Ok(self.with(|s| s.protection.get(instance_id).copied().unwrap_or(false)))
    }

    async fn set_termination_protection(&self, instance_id: &str, enabled: bool) -> Result<()> {
        self.call("ModifyInstanceAttribute").await?;
        self.with(|s| s.protection.insert(instance_id.into(), enabled));
        Ok(())
    }

    async fn try_interface_groups(&self, eni_id: &str, group_ids: &[String]) -> Result<()> {
        self.with(|s| s.tried_once.push(eni_id.to_string()));
        self.set_interface_groups(eni_id, group_ids).await
    }

    async fn set_interface_groups(&self, eni_id: &str, group_ids: &[String]) -> Result<()> {
        self.call("ModifyNetworkInterfaceAttribute").await?;
        self.with(|s| {
            if let Some(missing) = group_ids
                .iter()
                .find(|g| !s.groups.contains_key(*g) || s.unseen(g))
            {
                return Err(FakeState::group_not_found(
                    "ModifyNetworkInterfaceAttribute",
                    missing,
                ));
            }
            let role = group_ids.iter().find_map(|g| s.groups[g].role);
            if let Some(at) = s.swap_refusals.iter().position(|r| r.to == role) {
                let refusal = &mut s.swap_refusals[at];
                let error = refusal.error.clone();
                match refusal.times.as_mut() {
                    Some(1) => {
                        s.swap_refusals.remove(at);
                    }
                    Some(left) => *left -= 1,
                    None => {}
                }
                return Err(error);
            }
            let eni = s.interface_mut(eni_id)?;
            eni.groups = group_ids.to_vec();
            Ok(())
        })
    }

    async fn existing_groups(&self, group_ids: &[String]) -> Result<Vec<String>> {
        self.call("DescribeSecurityGroups").await?;
        Ok(self.with(|s| {
            group_ids
                .iter()
                .filter(|g| s.groups.contains_key(*g))
                .cloned()
                .collect()
        }))
    }

    async fn cordon_groups(&self, vpc_ids: &[String]) -> Result<Vec<SecurityGroup>> {
        self.call("DescribeSecurityGroups").await?;
        self.with(|s| s.group_reads.push(Some(vpc_ids.to_vec())));
        Ok(self.with(|s| {
            let found: Vec<SecurityGroup> = s
                .groups
                .values()
                .filter(|g| {
                    g.tags.iter().any(|(k, _)| k == GroupRole::TAG_KEY)
                        && vpc_ids.contains(&g.vpc_id)
                })
                .cloned()
                .collect();
            found.into_iter().filter(|g| !s.unseen(&g.id)).collect()
        }))
    }

    async fn cordon_groups_anywhere(&self) -> Result<Vec<SecurityGroup>> {
        self.call("DescribeSecurityGroups").await?;
        self.with(|s| s.group_reads.push(None));
        Ok(self.with(|s| {
            s.groups
                .values()
                .filter(|g| g.tags.iter().any(|(k, _)| k == GroupRole::TAG_KEY))
                .cloned()
                .collect()
        }))
    }

    async fn create_cordon_group(
        &self,
        vpc_id: &str,
        role: GroupRole,
        suffix: Option<&str>,
    ) -> Result<SecurityGroup> {
        self.call("CreateSecurityGroup").await?;
        self.with(|s| {
            if let Some(theirs) = s.racing_group.take() {
                let name = theirs
                    .role
                    .map(|r| r.group_name(vpc_id))
                    .unwrap_or_default();
                let unseen_for = s.new_groups_unseen_for;
                s.unseen.insert(theirs.id.clone(), unseen_for);
                s.groups.insert(theirs.id.clone(), theirs);
                return Err(CordonError::GroupDuplicate {
                    vpc_id: vpc_id.into(),
                    group_name: name,
                });
            }
            // Group names are unique per VPC.
            let name = role.group_name_with(vpc_id, suffix);
            if s.groups
                .values()
                .any(|g| g.vpc_id == vpc_id && g.name == name)
            {
                return Err(CordonError::GroupDuplicate {
                    vpc_id: vpc_id.into(),
                    group_name: name,
                });
            }
            s.next_id += 1;
            let group = SecurityGroup {
                id: format!("sg-cordon{}", s.next_id),
                vpc_id: vpc_id.into(),
                name,
                role: Some(role),
                ingress: vec![],
                // EC2 gives every new VPC group an allow-all egress rule.
                egress: vec![SgRule::all_traffic(crate::ec2::Peer::Ipv4(
                    "0.0.0.0/0".into(),
                ))],
                tags: vec![(GroupRole::TAG_KEY.into(), role.tag_value().into())],
            };
            s.groups.insert(group.id.clone(), group.clone());
            let unseen_for = s.new_groups_unseen_for;
            s.unseen.insert(group.id.clone(), unseen_for);
            Ok(group)
        })
    }

    async fn create_claim_group(
        &self,
        vpc_id: &str,
        instance_id: &str,
        owner: &str,
        claimed_at: &str,
        record: &[(String, String)],
    ) -> Result<String> {
        self.call("CreateSecurityGroup").await?;
        self.with(|s| {
            let name = crate::claim::group_name(instance_id);
            let mut tags = crate::claim::claim_tags(instance_id, owner, claimed_at);
            tags.extend(record.iter().cloned());
            let taken = s.groups.values().any(|g| {
                // EC2 knows a group by its name, whatever its tags say.
                g.vpc_id == vpc_id && g.name == name
            });
            if taken {
                return Err(CordonError::GroupDuplicate {
                    vpc_id: vpc_id.into(),
                    group_name: name,
                });
            }
            s.next_id += 1;
            let id = format!("sg-claim{}", s.next_id);
            s.groups.insert(
                id.clone(),
                SecurityGroup {
                    id: id.clone(),
                    vpc_id: vpc_id.into(),
                    name: name.clone(),
                    role: None,
                    ingress: vec![],
                    egress: vec![],
                    tags,
                },
            );
            Ok(id)
        })
    }

    async fn delete_group(&self, group_id: &str) -> Result<()> {
        self.call("DeleteSecurityGroup").await?;
        self.with(|s| {
            if !s.groups.contains_key(group_id) {
                return Err(FakeState::group_not_found("DeleteSecurityGroup", group_id));
            }
            // EC2 refuses while an interface carries the group or a rule names it; moto
            // deletes it anyway.
            let carried = s
                .interfaces()
                .any(|eni| eni.groups.iter().any(|g| g == group_id));
            let named = s.groups.values().any(|g| {
                g.ingress.iter().chain(&g.egress).any(
                    |rule| matches!(&rule.peer, crate::ec2::Peer::Group(peer) if peer == group_id),
                )
            });
            if carried || named {
                return Err(CordonError::Ec2 {
                    operation: "DeleteSecurityGroup".into(),
                    code: "DependencyViolation".into(),
                    message: format!("resource {group_id} has a dependent object"),
                });
            }
            s.groups.remove(group_id);
            Ok(())
        })
    }

    async fn authorize(
        &self,
        group_id: &str,
        direction: Direction,
        rules: &[SgRule],
    ) -> Result<()> {
        self.call("AuthorizeSecurityGroup").await?;
        self.with(|s| {
            if s.unseen(group_id) {
                return Err(FakeState::group_not_found(
                    "AuthorizeSecurityGroup",
                    group_id,
                ));
            }
            let racing = s.racing_rule_change.as_deref() == Some("AuthorizeSecurityGroup");
            if racing {
                s.racing_rule_change = None;
            }
            let group = s.groups.get_mut(group_id).expect("known group");
            let list = if direction.is_egress() {
                &mut group.egress
            } else {
                &mut group.ingress
            };
            if racing {
                list.extend(rules.iter().cloned());
            }
            // As EC2: one rule already there refuses the whole call, and adds nothing.
            if rules.iter().any(|rule| list.contains(rule)) {
                return Err(CordonError::Ec2 {
                    operation: "AuthorizeSecurityGroup".into(),
                    code: "InvalidPermission.Duplicate".into(),
                    message: "The specified rule already exists".into(),
                });
            }
            list.extend(rules.iter().cloned());
            Ok(())
        })
    }

    async fn revoke(&self, group_id: &str, direction: Direction, rules: &[SgRule]) -> Result<()> {
        self.call("RevokeSecurityGroup").await?;
        self.with(|s| {
            if s.unseen(group_id) {
                return Err(FakeState::group_not_found("RevokeSecurityGroup", group_id));
            }
            let racing = s.racing_rule_change.as_deref() == Some("RevokeSecurityGroup");
            if racing {
                s.racing_rule_change = None;
            }
            let group = s.groups.get_mut(group_id).expect("known group");
            let list = if direction.is_egress() {
                &mut group.egress
            } else {
                &mut group.ingress
            };
            if racing {
                list.retain(|rule| !rules.contains(rule));
            }
            // As EC2: one rule not there refuses the whole call, and removes nothing.
            if rules.iter().any(|rule| !list.contains(rule)) {
                return Err(CordonError::Ec2 {
                    operation: "RevokeSecurityGroup".into(),
                    code: "InvalidPermission.NotFound".into(),
                    message: "The specified rule does not exist in this security group".into(),
                });
            }
            list.retain(|rule| !rules.contains(rule));
            Ok(())
        })
    }

    async fn network_acls(&self, vpc_id: &str) -> Result<Vec<NetworkAcl>> {
        self.call("DescribeNetworkAcls").await?;
        Ok(self.with(|s| {
            s.acls
                .values()
                .filter(|a| a.vpc_id == vpc_id)
                .cloned()
                .collect()
        }))
    }

    async fn network_acl(&self, acl_id: &str) -> Result<NetworkAcl> {
        self.call("DescribeNetworkAcls").await?;
        Ok(self.with(|s| s.acls[acl_id].clone()))
    }

    async fn create_deny_entry(&self, entry: &DenyEntry) -> Result<()> {
        self.call("CreateNetworkAclEntry").await?;
        self.with(|s| {
            let races_here = s.racing_entry.as_ref().is_some_and(|(acl_id, theirs)| {
                *acl_id == entry.acl_id && theirs.egress == entry.egress
            });
            if races_here {
                let (acl_id, mut theirs) = s.racing_entry.take().expect("checked above");
                theirs.rule_number = entry.rule_number;
                s.acls
                    .get_mut(&acl_id)
                    .expect("known acl")
                    .entries
                    .push(theirs);
            }
            let acl = s.acls.get_mut(&entry.acl_id).expect("known acl");
            if acl
                .entries
                .iter()
                .any(|e| e.egress == entry.egress && e.rule_number == entry.rule_number)
            {
                return Err(CordonError::NaclEntryExists {
                    acl_id: entry.acl_id.clone(),
                    direction: Direction::from_egress(entry.egress).name().into(),
                    rule_number: entry.rule_number,
                });
            }
            acl.entries.push(AclEntry {
                rule_number: entry.rule_number,
                egress: entry.egress,
                action: RuleAction::Deny,
                protocol: "-1".into(),
                cidr: entry.cidr.clone(),
            });
            if std::mem::take(&mut s.lost_entry_answer_then_throttled) {
                return Err(CordonError::Throttled {
                    operation: "CreateNetworkAclEntry".into(),
                    message: "the answer was lost and every retry was throttled".into(),
                });
            }
            if std::mem::take(&mut s.lost_entry_answer_then_unreadable) {
                s.failures.push((
                    "DescribeNetworkAcls".into(),
                    CordonError::Unavailable {
                        operation: "DescribeNetworkAcls".into(),
                        message: "every attempt was reset".into(),
                    },
                ));
                return Err(CordonError::NaclEntryExists {
                    acl_id: entry.acl_id.clone(),
                    direction: Direction::from_egress(entry.egress).name().into(),
                    rule_number: entry.rule_number,
                });
            }
            if std::mem::take(&mut s.lost_entry_answer) {
                return Err(CordonError::NaclEntryExists {
                    acl_id: entry.acl_id.clone(),
                    direction: Direction::from_egress(entry.egress).name().into(),
                    rule_number: entry.rule_number,
                });
            }
            Ok(())
        })
    }

    async fn delete_acl_entry(&self, acl_id: &str, egress: bool, rule_number: i32) -> Result<()> {
        self.call("DeleteNetworkAclEntry").await?;
        self.with(|s| {
            let lost = std::mem::take(&mut s.lost_delete_answer);
            let acl = s.acls.get_mut(acl_id).expect("known acl");
            let before = acl.entries.len();
            acl.entries
                .retain(|e| !(e.egress == egress && e.rule_number == rule_number));
            if acl.entries.len() == before || lost {
                return Err(CordonError::Ec2 {
                    operation: "DeleteNetworkAclEntry".into(),
                    code: "InvalidNetworkAclEntry.NotFound".into(),
                    message: format!("no rule {rule_number}"),
                });
            }
            Ok(())
        })
    }

    async fn create_tags(&self, resource_id: &str, tags: &[(String, String)]) -> Result<()> {
        self.call("CreateTags").await?;
        self.with(|s| {
            if let Some(instance) = s.instances.get_mut(resource_id) {
                set_tags(&mut instance.tags, tags);
            } else if let Some(acl) = s.acls.get_mut(resource_id) {
                set_tags(&mut acl.tags, tags);
            } else if let Some(group) = s.groups.get_mut(resource_id) {
                set_tags(&mut group.tags, tags);
            } else if let Some(snapshot) = s
                .snapshots
                .iter_mut()
                .find(|x| x.snapshot_id == resource_id)
            {
                set_tags(&mut snapshot.tags, tags);
            }
        });
        Ok(())
    }

    async fn delete_tags(&self, resource_id: &str, keys: &[String]) -> Result<()> {
        self.call("DeleteTags").await?;
        self.with(|s| {
            if let Some(instance) = s.instances.get_mut(resource_id) {
                instance.tags.retain(|(k, _)| !keys.contains(k));
            } else if let Some(acl) = s.acls.get_mut(resource_id) {
                acl.tags.retain(|(k, _)| !keys.contains(k));
            } else if let Some(group) = s.groups.get_mut(resource_id) {
                group.tags.retain(|(k, _)| !keys.contains(k));
            } else if let Some(snapshot) = s
                .snapshots
                .iter_mut()
                .find(|x| x.snapshot_id == resource_id)
            {
                snapshot.tags.retain(|(k, _)| !keys.contains(k));
            }
        });
        Ok(())
    }

    async fn shutdown_behavior(&self, instance_id: &str) -> Result<String> {
        self.call("DescribeInstanceAttribute").await?;
        Ok(self.shutdown_of(instance_id))
    }

    async fn set_shutdown_behavior(&self, instance_id: &str, behavior: &str) -> Result<()> {
        self.call("ModifyInstanceAttribute").await?;
        if !matches!(behavior, "stop" | "terminate") {
            return Err(CordonError::InvalidInput(format!(
                "shutdown behavior {behavior:?} is neither stop nor terminate"
            )));
        }
        self.with(|s| s.shutdown.insert(instance_id.into(), behavior.into()));
        Ok(())
    }

    async fn set_connection_tracking(&self, eni_id: &str, timeouts: &ConnTrack) -> Result<()> {
        self.call("ModifyNetworkInterfaceAttribute").await?;
        timeouts.check()?;
        self.with(|s| {
            let eni = s.interface_mut(eni_id)?;
            // As EC2: a timeout left out of the request keeps its value.
            let now = eni.conntrack.unwrap_or_default();
            eni.conntrack = Some(ConnTrack {
                tcp_established: timeouts.tcp_established.or(now.tcp_established),
                udp_stream: timeouts.udp_stream.or(now.udp_stream),
                udp: timeouts.udp.or(now.udp),
            });
            Ok(())
        })
    }

    async fn vpc(&self, vpc_id: &str) -> Result<Vpc> {
        self.call("DescribeVpcs").await?;
        self.with(|s| s.vpcs.get(vpc_id).cloned())
            .ok_or_else(|| CordonError::Ec2 {
                operation: "DescribeVpcs".into(),
                code: "InvalidVpcID.NotFound".into(),
                message: format!("The vpc ID '{vpc_id}' does not exist"),
            })
    }

    async fn interfaces_with_group(&self, group_id: &str) -> Result<Vec<String>> {
        self.call("DescribeNetworkInterfaces").await?;
        Ok(self.with(|s| {
            s.interfaces()
                .filter(|eni| eni.groups.iter().any(|g| g == group_id))
                .map(|eni| eni.id.clone())
                .collect()
        }))
    }

    async fn groups_in_use(&self, vpc_id: &str) -> Result<Vec<String>> {
        self.call("DescribeNetworkInterfaces").await?;
        let mut groups: Vec<String> = self.with(|s| {
            s.instances
                .values()
                .flat_map(|i| &i.interfaces)
                .filter(|eni| eni.vpc_id == vpc_id)
                .flat_map(|eni| eni.groups.clone())
                .collect()
        });
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    async fn subnets(&self, vpc_id: &str) -> Result<Vec<Subnet>> {
        self.call("DescribeSubnets").await?;
        Ok(self.with(|s| {
            s.subnets
                .values()
                .filter(|subnet| subnet.vpc_id == vpc_id)
                .cloned()
                .collect()
        }))
    }

    async fn session_endpoints(&self, vpc_id: &str) -> Result<Vec<SessionEndpoint>> {
        self.call("DescribeVpcEndpoints").await?;
        Ok(self.with(|s| s.session_endpoints.get(vpc_id).cloned().unwrap_or_default()))
    }

    async fn snapshots_tagged(&self, tags: &[(String, String)]) -> Result<Vec<Snapshot>> {
        self.call("DescribeSnapshots").await?;
        Ok(self.with(|s| {
            s.snapshots
                .iter()
                .filter(|snapshot| tags.iter().all(|tag| snapshot.tags.contains(tag)))
                .cloned()
                .collect()
        }))
    }

    async fn create_snapshots(
        &self,
        instance_id: &str,
        _description: &str,
        tags: &[(String, String)],
    ) -> Result<Vec<Snapshot>> {
        self.call("CreateSnapshots").await?;
        self.with(|s| {
            let volumes = s
                .instances
                .get(instance_id)
                .ok_or(CordonError::InstanceNotFound {
                    instance_id: instance_id.into(),
                })?
                .volumes
                .clone();
            let taken: Vec<Snapshot> = volumes
                .iter()
                .map(|volume| {
                    s.next_id += 1;
                    Snapshot {
                        snapshot_id: format!("snap-{:08x}", s.next_id),
                        volume_id: volume.volume_id.clone(),
                        tags: tags.to_vec(),
                    }
                })
                .collect();
            s.snapshots.extend(taken.iter().cloned());
            if std::mem::take(&mut s.lost_snapshots_answer) {
                return Err(CordonError::Unavailable {
                    operation: "CreateSnapshots".into(),
                    message: "connection reset after the call was made".into(),
                });
            }
            Ok(taken)
        })
    }

    async fn set_delete_on_termination(
        &self,
        instance_id: &str,
        devices: &[(String, bool)],
    ) -> Result<()> {
        self.call("ModifyInstanceAttribute").await?;
        self.with(|s| {
            let instance =
                s.instances
                    .get_mut(instance_id)
                    .ok_or(CordonError::InstanceNotFound {
                        instance_id: instance_id.into(),
                    })?;
            // As EC2: a device the instance does not have fails the whole call.
            if let Some((device, _)) = devices
                .iter()
                .find(|(device, _)| !instance.volumes.iter().any(|v| v.device == *device))
            {
                return Err(CordonError::Ec2 {
                    operation: "ModifyInstanceAttribute".into(),
                    code: "InvalidInstanceAttributeValue".into(),
                    message: format!("No device is currently mapped at {device}"),
                });
            }
            for (device, delete) in devices {
                let volume = instance
                    .volumes
                    .iter_mut()
                    .find(|v| v.device == *device)
                    .unwrap();
                volume.delete_on_termination = *delete;
            }
            Ok(())
        })
    }

    async fn group_named(&self, vpc_id: &str, name: &str) -> Result<Option<SecurityGroup>> {
        self.call("DescribeSecurityGroups").await?;
        Ok(self.with(|s| {
            let found = s
                .groups
                .values()
                .find(|g| g.vpc_id == vpc_id && g.name == name)
                .cloned();
            found.filter(|g| !s.unseen(&g.id))
        }))
    }

    fn has_time_for(&self, calls: u32) -> bool {
        self.with(|s| s.calls_before_deadline.is_none_or(|left| left >= calls))
    }

    async fn instances_tagged(&self, key: &str) -> Result<Vec<Instance>> {
        self.call("DescribeInstances").await?;
        Ok(self.with(|s| {
            s.instances
                .values()
                .filter(|i| i.tags.iter().any(|(k, _)| k == key))
                .cloned()
                .collect()
        }))
    }
}

/// Drives a future to completion on a fresh single-threaded runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[cfg(test)]
mod port_rules {
    use super::*;
    use crate::ec2::{GroupRole, Peer, SgRule};

    /// EC2 refuses to delete a group an interface carries or another group's rule names
    /// (moto deletes it anyway): what makes deleting the conversion group after use safe.
    #[test]
    fn a_group_an_interface_carries_or_a_rule_names_is_not_deleted() {
        let ec2 = FakeEc2::standard();
        let refused = |group: &str| match block_on(ec2.delete_group(group)) {
            Err(CordonError::Ec2 { code, .. }) => code == "DependencyViolation",
            _ => false,
        };
        assert!(refused("sg-app"), "carried by eni-1");
        assert!(ec2.with(|s| s.groups.contains_key("sg-app")));
        let conversion = block_on(ec2.create_cordon_group("vpc-1", GroupRole::Conversion, None))
            .unwrap()
            .id;
        block_on(ec2.authorize(
            "sg-ssh",
            Direction::Ingress,
            &[SgRule::all_traffic(Peer::Group(conversion.clone()))],
        ))
        .unwrap();
        assert!(refused(&conversion), "named by sg-ssh's rule");
        assert_eq!(
            block_on(ec2.interfaces_with_group("sg-app")).unwrap(),
            ["eni-1"]
        );
        assert!(block_on(ec2.interfaces_with_group(&conversion))
            .unwrap()
            .is_empty());
        ec2.with(|s| s.groups.get_mut("sg-ssh").unwrap().ingress.clear());
        block_on(ec2.delete_group(&conversion)).unwrap();
        assert!(!ec2.with(|s| s.groups.contains_key(&conversion)));
    }
}
