//! Report-only mode (`Mode::ReportOnly`, the stack's `Mode` parameter, `CORDON_MODE`): a
//! first rollout that changes nothing. Each step reads and plans exactly as it would, and
//! reports what it would have done instead of doing it.
//!
//! Two things keep it from writing. Each step, given a report-only capture, takes its
//! planning path, which makes no write. And the EC2 port it plans with is [`ReadOnly`], which
//! refuses every write before it is sent: a path that would write anyway fails loudly
//! (`Cordon.ReportOnlyWrite`) instead of changing an instance of a team that asked for
//! nothing to change.

use crate::ec2::{
    ConnTrack, DenyEntry, Direction, Ec2, GroupRole, Instance, NetworkAcl, SecurityGroup,
    SessionEndpoint, SgRule, Snapshot, Subnet, Vpc,
};
use crate::error::{CordonError, Result};
use crate::measures::auto_scaling::{AutoScaling, Group, Membership, Refresh};
use crate::measures::credentials::Iam;
use crate::measures::load_balancers::port::Tagged;
use crate::measures::load_balancers::{LoadBalancing, TargetGroup};

/// A port of a report-only step: reads go through to `0`, writes are refused (EC2 below,
/// and Auto Scaling, IAM and load balancing).
pub struct ReadOnly<'a, E>(pub &'a E);

fn refused<T>(operation: &str, target: &str) -> Result<T> {
    Err(CordonError::ReportOnlyWrite {
        operation: operation.into(),
        target: target.into(),
    })
}

impl<E: Ec2> Ec2 for ReadOnly<'_, E> {
    async fn describe_instance(&self, instance_id: &str) -> Result<Instance> {
        self.0.describe_instance(instance_id).await
    }

    async fn termination_protection(&self, instance_id: &str) -> Result<bool> {
        self.0.termination_protection(instance_id).await
    }

    async fn set_termination_protection(&self, instance_id: &str, _enabled: bool) -> Result<()> {
        refused("ModifyInstanceAttribute", instance_id)
    }

    async fn set_interface_groups(&self, eni_id: &str, _group_ids: &[String]) -> Result<()> {
        refused("ModifyNetworkInterfaceAttribute", eni_id)
    }

    async fn try_interface_groups(&self, eni_id: &str, _group_ids: &[String]) -> Result<()> {
        refused("ModifyNetworkInterfaceAttribute", eni_id)
    }

    async fn existing_groups(&self, group_ids: &[String]) -> Result<Vec<String>> {
        self.0.existing_groups(group_ids).await
    }

    async fn cordon_groups(&self, vpc_ids: &[String]) -> Result<Vec<SecurityGroup>> {
        self.0.cordon_groups(vpc_ids).await
    }

    async fn cordon_groups_anywhere(&self) -> Result<Vec<SecurityGroup>> {
        self.0.cordon_groups_anywhere().await
    }

    async fn create_cordon_group(
        &self,
        vpc_id: &str,
        _role: GroupRole,
        _suffix: Option<&str>,
    ) -> Result<SecurityGroup> {
        refused("CreateSecurityGroup", vpc_id)
    }

    async fn create_claim_group(
        &self,
        vpc_id: &str,
        _instance_id: &str,
        _owner: &str,
        _claimed_at: &str,
        _record: &[(String, String)],
    ) -> Result<String> {
        refused("CreateSecurityGroup", vpc_id)
    }

    async fn delete_group(&self, group_id: &str) -> Result<()> {
        refused("DeleteSecurityGroup", group_id)
    }

    async fn authorize(&self, group_id: &str, _: Direction, _: &[SgRule]) -> Result<()> {
        refused("AuthorizeSecurityGroup", group_id)
    }

    async fn revoke(&self, group_id: &str, _: Direction, _: &[SgRule]) -> Result<()> {
        refused("RevokeSecurityGroup", group_id)
    }

    async fn network_acls(&self, vpc_id: &str) -> Result<Vec<NetworkAcl>> {
        self.0.network_acls(vpc_id).await
    }

    async fn network_acl(&self, acl_id: &str) -> Result<NetworkAcl> {
        self.0.network_acl(acl_id).await
    }

    async fn create_deny_entry(&self, entry: &DenyEntry) -> Result<()> {
        refused("CreateNetworkAclEntry", &entry.acl_id)
    }

    async fn delete_acl_entry(&self, acl_id: &str, _egress: bool, _rule: i32) -> Result<()> {
        refused("DeleteNetworkAclEntry", acl_id)
    }

    async fn create_tags(&self, resource_id: &str, _tags: &[(String, String)]) -> Result<()> {
        refused("CreateTags", resource_id)
    }

    async fn delete_tags(&self, resource_id: &str, _keys: &[String]) -> Result<()> {
        refused("DeleteTags", resource_id)
    }

    async fn instances_tagged(&self, key: &str) -> Result<Vec<Instance>> {
        self.0.instances_tagged(key).await
    }

    async fn shutdown_behavior(&self, instance_id: &str) -> Result<String> {
        self.0.shutdown_behavior(instance_id).await
    }

    async fn set_shutdown_behavior(&self, instance_id: &str, _behavior: &str) -> Result<()> {
        refused("ModifyInstanceAttribute", instance_id)
    }

    async fn set_connection_tracking(&self, eni_id: &str, _timeouts: &ConnTrack) -> Result<()> {
        refused("ModifyNetworkInterfaceAttribute", eni_id)
    }

    async fn vpc(&self, vpc_id: &str) -> Result<Vpc> {
        self.0.vpc(vpc_id).await
    }

    async fn subnets(&self, vpc_id: &str) -> Result<Vec<Subnet>> {
        self.0.subnets(vpc_id).await
    }

    async fn groups_in_use(&self, vpc_id: &str) -> Result<Vec<String>> {
        self.0.groups_in_use(vpc_id).await
    }

    async fn interfaces_with_group(&self, group_id: &str) -> Result<Vec<String>> {
        self.0.interfaces_with_group(group_id).await
    }

    async fn session_endpoints(&self, vpc_id: &str) -> Result<Vec<SessionEndpoint>> {
        self.0.session_endpoints(vpc_id).await
    }

    async fn snapshots_tagged(&self, tags: &[(String, String)]) -> Result<Vec<Snapshot>> {
        self.0.snapshots_tagged(tags).await
    }

    async fn create_snapshots(
        &self,
        instance_id: &str,
        _description: &str,
        _tags: &[(String, String)],
    ) -> Result<Vec<Snapshot>> {
        refused("CreateSnapshots", instance_id)
    }

    async fn set_delete_on_termination(
        &self,
        instance_id: &str,
        _devices: &[(String, bool)],
    ) -> Result<()> {
        refused("ModifyInstanceAttribute", instance_id)
    }

    async fn group_named(&self, vpc_id: &str, name: &str) -> Result<Option<SecurityGroup>> {
        self.0.group_named(vpc_id, name).await
    }

    fn has_time_for(&self, calls: u32) -> bool {
        self.0.has_time_for(calls)
    }
}

/// The Auto Scaling port of a report-only step: reads go through, writes are refused.
impl<A: AutoScaling> AutoScaling for ReadOnly<'_, A> {
    async fn membership(&self, instance_id: &str) -> Result<Option<Membership>> {
        self.0.membership(instance_id).await
    }

    async fn group(&self, name: &str) -> Result<Group> {
        self.0.group(name).await
    }

    async fn enter_standby(&self, group: &str, _: &str, _decrement: bool) -> Result<()> {
        refused("autoscaling:EnterStandby", group)
    }

    async fn exit_standby(&self, group: &str, _: &str) -> Result<()> {
        refused("autoscaling:ExitStandby", group)
    }

    async fn set_scale_in_protection(&self, group: &str, _: &str, _: bool) -> Result<()> {
        refused("autoscaling:SetInstanceProtection", group)
    }

    async fn set_desired_capacity(&self, group: &str, _desired: i32) -> Result<()> {
        refused("autoscaling:SetDesiredCapacity", group)
    }

    async fn refresh_in_progress(&self, group: &str) -> Result<Option<Refresh>> {
        self.0.refresh_in_progress(group).await
    }
}

/// The IAM port of a report-only step: reads go through, writes are refused.
impl<I: Iam> Iam for ReadOnly<'_, I> {
    async fn profile_role(&self, profile: &str) -> Result<Option<String>> {
        self.0.profile_role(profile).await
    }

    async fn role_tags(&self, role: &str) -> Result<Vec<(String, String)>> {
        self.0.role_tags(role).await
    }

    async fn tag_role(&self, role: &str, _key: &str, _value: &str) -> Result<()> {
        refused("iam:TagRole", role)
    }

    async fn untag_role(&self, role: &str, _keys: &[String]) -> Result<()> {
        refused("iam:UntagRole", role)
    }

    async fn attached_policies(&self, role: &str) -> Result<Vec<String>> {
        self.0.attached_policies(role).await
    }

    async fn attach_role_policy(&self, role: &str, _policy_arn: &str) -> Result<()> {
        refused("iam:AttachRolePolicy", role)
    }

    async fn detach_role_policy(&self, role: &str, _policy_arn: &str) -> Result<()> {
        refused("iam:DetachRolePolicy", role)
    }
}

/// The load-balancing port of a report-only step: reads go through, writes are refused.
impl<L: LoadBalancing> LoadBalancing for ReadOnly<'_, L> {
    async fn target_groups(&self) -> Result<Vec<TargetGroup>> {
        self.0.target_groups().await
    }

    async fn registered_ports(&self, target_group: &str, instance_id: &str) -> Result<Vec<i32>> {
        self.0.registered_ports(target_group, instance_id).await
    }

    async fn deregister(&self, target_group: &str, _: &str, _ports: &[i32]) -> Result<()> {
        refused("elasticloadbalancing:DeregisterTargets", target_group)
    }

    async fn register(&self, target_group: &str, _: &str, _ports: &[i32]) -> Result<()> {
        refused("elasticloadbalancing:RegisterTargets", target_group)
    }

    async fn tags(&self, target_groups: &[String]) -> Result<Vec<Tagged>> {
        self.0.tags(target_groups).await
    }

    async fn add_tags(&self, target_group: &str, _tags: &[(String, String)]) -> Result<()> {
        refused("elasticloadbalancing:AddTags", target_group)
    }

    async fn remove_tags(&self, target_group: &str, _keys: &[String]) -> Result<()> {
        refused("elasticloadbalancing:RemoveTags", target_group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{block_on, FakeEc2};

    #[test]
    fn reads_go_through_and_every_write_is_refused_before_it_is_sent() {
        let ec2 = FakeEc2::standard();
        let guarded = ReadOnly(&ec2);
        let instance = block_on(guarded.describe_instance("i-00000001")).unwrap();
        assert_eq!(instance.interfaces[0].groups, ["sg-app", "sg-ssh"]);
        block_on(guarded.network_acls("vpc-1")).unwrap();
        let writes: Vec<Result<()>> = vec![
            block_on(guarded.set_interface_groups("eni-1", &["sg-x".into()])),
            block_on(guarded.set_termination_protection("i-00000001", true)),
            block_on(guarded.set_shutdown_behavior("i-00000001", "stop")),
            block_on(guarded.create_tags("i-00000001", &[("a".into(), "b".into())])),
            block_on(guarded.delete_tags("i-00000001", &["Name".into()])),
            block_on(guarded.delete_group("sg-app")),
            block_on(guarded.create_deny_entry(&DenyEntry {
                acl_id: "acl-1".into(),
                egress: false,
                rule_number: 1,
                cidr: "198.51.100.7/32".into(),
            })),
            block_on(guarded.delete_acl_entry("acl-1", false, 1)),
            block_on(guarded.set_delete_on_termination("i-00000001", &[])),
            block_on(guarded.create_cordon_group("vpc-1", GroupRole::Isolation, None)).map(|_| ()),
            block_on(guarded.create_claim_group("vpc-1", "i-00000001", "x", "t", &[])).map(|_| ()),
            block_on(guarded.create_snapshots("i-00000001", "d", &[])).map(|_| ()),
        ];
        for write in writes {
            let error = write.unwrap_err();
            assert_eq!(error.error_name(), "Cordon.ReportOnlyWrite");
        }
        // Nothing but the two reads reached EC2, and nothing changed.
        assert_eq!(ec2.calls(), ["DescribeInstances", "DescribeNetworkAcls"]);
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    }

    #[test]
    fn the_other_ports_refuse_every_write_too() {
        use crate::measures::auto_scaling::port::fake::FakeAutoScaling;
        use crate::measures::credentials::port::fake::{FakeIam, ROLE};
        use crate::measures::load_balancers::port::fake::FakeLoadBalancing;
        let autoscaling = FakeAutoScaling::with_instance("i-00000001");
        let iam = FakeIam::with_role();
        let elb = FakeLoadBalancing::with_instance("i-00000001");
        let (a, i, l) = (ReadOnly(&autoscaling), ReadOnly(&iam), ReadOnly(&elb));
        assert!(block_on(a.membership("i-00000001")).unwrap().is_some());
        block_on(i.role_tags(ROLE)).unwrap();
        let groups = block_on(l.target_groups()).unwrap();
        let writes = [
            block_on(a.enter_standby("web", "i-00000001", true)),
            block_on(a.exit_standby("web", "i-00000001")),
            block_on(a.set_scale_in_protection("web", "i-00000001", true)),
            block_on(a.set_desired_capacity("web", 1)),
            block_on(i.tag_role(ROLE, "k", "v")),
            block_on(i.untag_role(ROLE, &["k".into()])),
            block_on(i.attach_role_policy(ROLE, "arn:aws:iam::aws:policy/x")),
            block_on(i.detach_role_policy(ROLE, "arn:aws:iam::aws:policy/x")),
            block_on(l.deregister(&groups[0].arn, "i-00000001", &[80])),
            block_on(l.register(&groups[0].arn, "i-00000001", &[80])),
            block_on(l.add_tags(&groups[0].arn, &[("k".into(), "v".into())])),
            block_on(l.remove_tags(&groups[0].arn, &["k".into()])),
        ];
        for write in writes {
            assert_eq!(write.unwrap_err().error_name(), "Cordon.ReportOnlyWrite");
        }
        let reads_only = |calls: Vec<String>| {
            calls.iter().all(|c| {
                let action = c.rsplit(':').next().unwrap_or(c);
                ["Describe", "List", "Get"]
                    .iter()
                    .any(|read| action.starts_with(read))
            })
        };
        assert!(reads_only(autoscaling.calls()), "{:?}", autoscaling.calls());
        assert!(reads_only(iam.calls()), "{:?}", iam.calls());
        assert!(reads_only(elb.calls()), "{:?}", elb.calls());
    }
}
