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
    ConnTrack, DenyEntry, Direction, Ec2, GroupRole, Instance, NetworkAcl, SecurityGroup, SgRule,
    Snapshot, Subnet, Vpc,
};
use crate::error::{CordonError, Result};

/// The EC2 port of a report-only step: reads go through to `0`, writes are refused.
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

    async fn existing_groups(&self, group_ids: &[String]) -> Result<Vec<String>> {
        self.0.existing_groups(group_ids).await
    }

    async fn cordon_groups(&self, vpc_ids: &[String]) -> Result<Vec<SecurityGroup>> {
        self.0.cordon_groups(vpc_ids).await
    }

    async fn cordon_groups_anywhere(&self) -> Result<Vec<SecurityGroup>> {
        self.0.cordon_groups_anywhere().await
    }

    async fn create_cordon_group(&self, vpc_id: &str, _role: GroupRole) -> Result<SecurityGroup> {
        refused("CreateSecurityGroup", vpc_id)
    }

    async fn create_claim_group(
        &self,
        vpc_id: &str,
        _instance_id: &str,
        _owner: &str,
        _claimed_at: &str,
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
            block_on(guarded.create_cordon_group("vpc-1", GroupRole::Isolation)).map(|_| ()),
            block_on(guarded.create_claim_group("vpc-1", "i-00000001", "x", "t")).map(|_| ()),
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
}
