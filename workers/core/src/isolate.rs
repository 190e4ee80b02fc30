//! Isolation by security groups, per network interface: first the conversion group (all
//! traffic both ways, so tracked connections become untracked), then the isolation group (no
//! egress; ingress only from the forensic source). Replacing groups alone would leave tracked
//! connections, a reverse shell among them, alive.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ForensicSource;
use crate::ec2::{Direction, Ec2, GroupRole, Peer, SecurityGroup, SgRule};
use crate::error::{CordonError, Result, StepError};
use crate::net::is_ipv6_cidr;
use crate::record::CapturedState;

/// Cordon's two groups in one VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CordonGroups {
    pub conversion: String,
    pub isolation: String,
}

/// The rules a Cordon group must hold, (ingress, egress).
pub fn desired_rules(
    role: GroupRole,
    forensic: Option<&ForensicSource>,
) -> (Vec<SgRule>, Vec<SgRule>) {
    match role {
        GroupRole::Conversion => {
            let everywhere = vec![
                SgRule::all_traffic(Peer::Ipv4("0.0.0.0/0".into())),
                SgRule::all_traffic(Peer::Ipv6("::/0".into())),
            ];
            (everywhere.clone(), everywhere)
        }
        GroupRole::Isolation => {
            let ingress = match forensic {
                Some(ForensicSource::Cidr(cidr)) if is_ipv6_cidr(cidr) => {
                    vec![SgRule::all_traffic(Peer::Ipv6(cidr.clone()))]
                }
                Some(ForensicSource::Cidr(cidr)) => {
                    vec![SgRule::all_traffic(Peer::Ipv4(cidr.clone()))]
                }
                Some(ForensicSource::SecurityGroup(group)) => {
                    vec![SgRule::all_traffic(Peer::Group(group.clone()))]
                }
                None => Vec::new(),
            };
            (ingress, Vec::new())
        }
    }
}

/// What to revoke and what to authorize so that `actual` becomes `desired`.
pub fn rule_changes(actual: &[SgRule], desired: &[SgRule]) -> (Vec<SgRule>, Vec<SgRule>) {
    let revoke = actual
        .iter()
        .filter(|r| !desired.contains(r))
        .cloned()
        .collect();
    let authorize = desired
        .iter()
        .filter(|r| !actual.contains(r))
        .cloned()
        .collect();
    (revoke, authorize)
}

/// Finds (by tag and VPC, since group names are only unique per VPC) or creates each VPC's
/// conversion and isolation groups, and puts their rules right: someone may have added an
/// egress rule to the isolation group since it was made.
/// `seen` is the Cordon groups of those VPCs when the caller has just read them.
pub async fn ensure_groups(
    ec2: &impl Ec2,
    vpc_ids: &[String],
    forensic: Option<&ForensicSource>,
    seen: Option<Vec<SecurityGroup>>,
) -> Result<BTreeMap<String, CordonGroups>> {
    let known = match seen {
        Some(groups) => groups,
        None => ec2.cordon_groups(vpc_ids).await?,
    };
    let mut result = BTreeMap::new();
    for vpc_id in vpc_ids {
        // The two groups do not depend on each other: on first use in a VPC, both are made
        // (and given their rules) at the same time.
        let (conversion, isolation) = tokio::join!(
            ensure_group(ec2, &known, vpc_id, GroupRole::Conversion, forensic),
            ensure_group(ec2, &known, vpc_id, GroupRole::Isolation, forensic)
        );
        result.insert(
            vpc_id.clone(),
            CordonGroups {
                conversion: conversion?,
                isolation: isolation?,
            },
        );
    }
    Ok(result)
}

/// The id of the VPC's group for `role`, found among `known` or created, with its rules right.
async fn ensure_group(
    ec2: &impl Ec2,
    known: &[SecurityGroup],
    vpc_id: &str,
    role: GroupRole,
    forensic: Option<&ForensicSource>,
) -> Result<String> {
    let group = match find_group(known, vpc_id, role) {
        Some(group) => group,
        None => match ec2.create_cordon_group(vpc_id, role).await {
            Ok(group) => group,
            // Another execution created it between our read and our create.
            Err(CordonError::GroupDuplicate { group_name, .. }) => {
                let fresh = ec2.cordon_groups(&[vpc_id.to_string()]).await?;
                find_group(&fresh, vpc_id, role).ok_or_else(|| {
                    CordonError::InvalidConfiguration(format!(
                        "{vpc_id} has a security group named {group_name} without the tag {}={}; tag it or delete it so Cordon can use its own",
                        GroupRole::TAG_KEY,
                        role.tag_value()
                    ))
                })?
            }
            Err(other) => return Err(other),
        },
    };
    reconcile_rules(ec2, &group, role, forensic).await?;
    Ok(group.id)
}

/// The lowest id wins when two executions raced and both created a group.
fn find_group(groups: &[SecurityGroup], vpc_id: &str, role: GroupRole) -> Option<SecurityGroup> {
    groups
        .iter()
        .filter(|g| g.vpc_id == vpc_id && g.role == Some(role))
        .min_by(|a, b| a.id.cmp(&b.id))
        .cloned()
}

/// How many times the rules are read again after a change lost a race; each round can only
/// lose to a change that moved the group towards the same rules.
const RECONCILE_ROUNDS: usize = 3;

/// Puts the group's rules right. Executions that find a group new all do this at once (and
/// a lost answer makes our own earlier change look like someone else's): EC2 then refuses an
/// authorize as `InvalidPermission.Duplicate` or a revoke as `InvalidPermission.NotFound`,
/// and the group is read again and compared again, since those refusals change nothing.
async fn reconcile_rules(
    ec2: &impl Ec2,
    group: &SecurityGroup,
    role: GroupRole,
    forensic: Option<&ForensicSource>,
) -> Result<()> {
    let (ingress, egress) = desired_rules(role, forensic);
    let mut group = group.clone();
    let mut round = 1;
    loop {
        match change_rules(ec2, &group, &ingress, &egress).await {
            Err(CordonError::Ec2 { code, .. })
                if round < RECONCILE_ROUNDS
                    && matches!(
                        code.as_str(),
                        "InvalidPermission.Duplicate" | "InvalidPermission.NotFound"
                    ) =>
            {
                round += 1;
                group = ec2
                    .cordon_groups(std::slice::from_ref(&group.vpc_id))
                    .await?
                    .into_iter()
                    .find(|g| g.id == group.id)
                    .ok_or_else(|| CordonError::Ec2 {
                        operation: "DescribeSecurityGroups".into(),
                        code: "InvalidGroup.NotFound".into(),
                        message: format!("{} was deleted while Cordon set its rules", group.id),
                    })?;
            }
            done => return done,
        }
    }
}

async fn change_rules(
    ec2: &impl Ec2,
    group: &SecurityGroup,
    ingress: &[SgRule],
    egress: &[SgRule],
) -> Result<()> {
    for (direction, actual, desired) in [
        (Direction::Ingress, &group.ingress, ingress),
        (Direction::Egress, &group.egress, egress),
    ] {
        let (revoke, authorize) = rule_changes(actual, desired);
        if !revoke.is_empty() {
            ec2.revoke(&group.id, direction, &revoke).await?;
        }
        if !authorize.is_empty() {
            ec2.authorize(&group.id, direction, &authorize).await?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Everything asked for was done.
    Done,
    /// Some of it was done; `errors` says what was not.
    Partial,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceIsolation {
    pub eni_id: String,
    pub original_groups: Vec<String>,
    pub groups_now: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationReport {
    pub instance_id: String,
    pub status: StepStatus,
    pub enis: Vec<InterfaceIsolation>,
    pub groups: BTreeMap<String, CordonGroups>,
    pub termination_protection: bool,
    pub errors: Vec<StepError>,
}

/// Swaps every interface of the recorded instance to isolation. Fails only when nothing was
/// changed (the groups could not be set up); later failures are kept in the report.
pub async fn isolate(
    ec2: &impl Ec2,
    record: &CapturedState,
    forensic: Option<&ForensicSource>,
) -> Result<IsolationReport> {
    isolate_seen(ec2, record, forensic, None).await
}

/// [`isolate`] with the Cordon groups of the record's VPCs as the caller has just read them
/// (the capture in the same process): one round trip fewer before the swaps.
pub async fn isolate_seen(
    ec2: &impl Ec2,
    record: &CapturedState,
    forensic: Option<&ForensicSource>,
    seen: Option<Vec<SecurityGroup>>,
) -> Result<IsolationReport> {
    let groups = ensure_groups(ec2, &record.vpc_ids(), forensic, seen).await?;
    let mut errors: Vec<CordonError> = Vec::new();
    let mut enis = Vec::new();
    for interface in &record.interfaces {
        let vpc_groups = &groups[&interface.vpc_id];
        let mut groups_now = interface.groups.clone();
        for step in [&vpc_groups.conversion, &vpc_groups.isolation] {
            let wanted = vec![step.clone()];
            match ec2.set_interface_groups(&interface.id, &wanted).await {
                Ok(()) => groups_now = wanted,
                Err(error) => {
                    errors.push(error);
                    break;
                }
            }
        }
        enis.push(InterfaceIsolation {
            eni_id: interface.id.clone(),
            original_groups: interface.groups.clone(),
            groups_now,
        });
    }
    let mut termination_protection = record.termination_protection;
    if !termination_protection {
        match ec2
            .set_termination_protection(&record.instance_id, true)
            .await
        {
            Ok(()) => termination_protection = true,
            Err(error) => errors.push(error),
        }
    }
    Ok(IsolationReport {
        instance_id: record.instance_id.clone(),
        status: if errors.is_empty() {
            StepStatus::Done
        } else {
            StepStatus::Partial
        },
        enis,
        groups,
        termination_protection,
        errors: errors.iter().map(CordonError::to_report).collect(),
    })
}

/// The first error worth retrying the whole (idempotent) step for, by its Step Functions name.
pub fn retryable(errors: &[StepError]) -> Option<&StepError> {
    errors
        .iter()
        .find(|e| CordonError::TRANSIENT_NAMES.contains(&e.error.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::capture;
    use crate::fake::{block_on, interface, FakeEc2};

    fn captured(ec2: &FakeEc2) -> CapturedState {
        block_on(capture(
            ec2,
            "i-00000001",
            None,
            None,
            "2026-11-29T14:00:00.000Z",
        ))
        .unwrap()
        .record
        .unwrap()
    }

    fn swaps(ec2: &FakeEc2) -> Vec<String> {
        ec2.calls()
            .into_iter()
            .filter(|c| c == "ModifyNetworkInterfaceAttribute")
            .collect()
    }

    #[test]
    fn conversion_allows_everything_both_ways_and_isolation_allows_only_forensics_in() {
        let (ingress, egress) = desired_rules(GroupRole::Conversion, None);
        for rules in [&ingress, &egress] {
            assert!(rules.contains(&SgRule::all_traffic(Peer::Ipv4("0.0.0.0/0".into()))));
            assert!(rules.contains(&SgRule::all_traffic(Peer::Ipv6("::/0".into()))));
        }
        let forensic = ForensicSource::Cidr("10.9.0.0/24".into());
        let (ingress, egress) = desired_rules(GroupRole::Isolation, Some(&forensic));
        assert_eq!(
            ingress,
            [SgRule::all_traffic(Peer::Ipv4("10.9.0.0/24".into()))]
        );
        assert!(egress.is_empty());
        let via_group = ForensicSource::SecurityGroup("sg-forensics".into());
        let (ingress, _) = desired_rules(GroupRole::Isolation, Some(&via_group));
        assert_eq!(
            ingress,
            [SgRule::all_traffic(Peer::Group("sg-forensics".into()))]
        );
        assert_eq!(desired_rules(GroupRole::Isolation, None), (vec![], vec![]));
    }

    #[test]
    fn rule_changes_revoke_extra_rules_and_add_missing_ones() {
        let any4 = SgRule::all_traffic(Peer::Ipv4("0.0.0.0/0".into()));
        let any6 = SgRule::all_traffic(Peer::Ipv6("::/0".into()));
        let (revoke, authorize) = rule_changes(std::slice::from_ref(&any4), &[]);
        assert_eq!((revoke, authorize), (vec![any4.clone()], vec![]));
        let (revoke, authorize) =
            rule_changes(std::slice::from_ref(&any4), &[any4.clone(), any6.clone()]);
        assert_eq!((revoke, authorize), (vec![], vec![any6]));
    }

    #[test]
    fn every_interface_goes_through_conversion_then_isolation() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| {
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
                ));
        });
        let record = captured(&ec2);
        ec2.clear_calls();
        let report = block_on(isolate(&ec2, &record, None)).unwrap();
        assert_eq!(report.status, StepStatus::Done);
        let groups = &report.groups["vpc-1"];
        for (eni, original) in [
            ("eni-1", vec!["sg-app", "sg-ssh"]),
            ("eni-2", vec!["sg-ssh"]),
        ] {
            assert_eq!(ec2.interface_groups(eni), vec![groups.isolation.clone()]);
            let line = report.enis.iter().find(|e| e.eni_id == eni).unwrap();
            assert_eq!(line.original_groups, original);
            assert_eq!(line.groups_now, vec![groups.isolation.clone()]);
        }
        assert_eq!(swaps(&ec2).len(), 4, "two swaps per interface");
        assert!(report.termination_protection);
        assert!(ec2.with(|s| s.protection["i-00000001"]));
        let isolation = ec2.with(|s| s.groups[&groups.isolation].clone());
        assert!(
            isolation.egress.is_empty(),
            "EC2's default egress rule must be revoked"
        );
        let conversion = ec2.with(|s| s.groups[&groups.conversion].clone());
        assert_eq!(conversion.ingress.len(), 2);
        assert_eq!(conversion.egress.len(), 2);
    }

    #[test]
    fn steady_state_isolation_reuses_groups_and_makes_four_calls() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        let first = block_on(isolate(&ec2, &record, None)).unwrap();
        ec2.with(|s| s.protection.insert("i-00000001".into(), false));
        ec2.clear_calls();
        let second = block_on(isolate(&ec2, &record, None)).unwrap();
        assert_eq!(first.groups, second.groups);
        assert_eq!(
            ec2.calls(),
            [
                "DescribeSecurityGroups",
                "ModifyNetworkInterfaceAttribute",
                "ModifyNetworkInterfaceAttribute",
                "ModifyInstanceAttribute"
            ]
        );
    }

    #[test]
    fn a_tampered_isolation_group_is_put_right() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        let report = block_on(isolate(&ec2, &record, None)).unwrap();
        let isolation = report.groups["vpc-1"].isolation.clone();
        ec2.with(|s| {
            s.groups
                .get_mut(&isolation)
                .unwrap()
                .egress
                .push(SgRule::all_traffic(Peer::Ipv4("0.0.0.0/0".into())))
        });
        block_on(isolate(&ec2, &record, None)).unwrap();
        assert!(ec2.with(|s| s.groups[&isolation].egress.is_empty()));
    }

    #[test]
    fn a_vanished_interface_is_reported_and_the_others_still_isolated() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| {
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
                ));
        });
        let record = captured(&ec2);
        ec2.fail_next(
            "ModifyNetworkInterfaceAttribute",
            CordonError::InterfaceNotFound {
                eni_id: "eni-1".into(),
            },
        );
        let report = block_on(isolate(&ec2, &record, None)).unwrap();
        assert_eq!(report.status, StepStatus::Partial);
        assert_eq!(report.errors[0].error, "Cordon.InterfaceNotFound");
        assert_eq!(report.enis[0].groups_now, ["sg-app", "sg-ssh"]);
        let isolation = report.groups["vpc-1"].isolation.clone();
        assert_eq!(ec2.interface_groups("eni-2"), [isolation]);
        assert_eq!(retryable(&report.errors), None);
    }

    #[test]
    fn a_group_created_concurrently_is_re_read_not_fatal() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        let theirs = SecurityGroup {
            id: "sg-theirs".into(),
            vpc_id: "vpc-1".into(),
            role: Some(GroupRole::Conversion),
            ingress: vec![],
            egress: vec![],
            tags: vec![(GroupRole::TAG_KEY.into(), "conversion".into())],
        };
        ec2.with(|s| s.racing_group = Some(theirs));
        let report = block_on(isolate(&ec2, &record, None)).unwrap();
        assert_eq!(report.groups["vpc-1"].conversion, "sg-theirs");
        assert_eq!(
            ec2.interface_groups("eni-1"),
            [report.groups["vpc-1"].isolation.clone()]
        );
        // Their group was missing its rules; ours were put on it.
        assert_eq!(ec2.with(|s| s.groups["sg-theirs"].ingress.len()), 2);
    }

    #[test]
    fn in_steady_state_capture_and_isolate_read_the_groups_once() {
        let ec2 = FakeEc2::standard();
        block_on(ensure_groups(&ec2, &["vpc-1".into()], None, None)).unwrap();
        ec2.clear_calls();
        let (captured, seen) = block_on(crate::capture::capture_seeing_groups(
            &ec2,
            "i-00000001",
            None,
            None,
            "2026-11-29T14:00:00.000Z",
        ))
        .unwrap();
        let record = captured.record.unwrap();
        let report = block_on(isolate_seen(&ec2, &record, None, Some(seen))).unwrap();
        assert_eq!(report.status, StepStatus::Done);
        let isolation = report.groups["vpc-1"].isolation.clone();
        assert_eq!(ec2.interface_groups("eni-1"), [isolation]);
        // The capture's read of the groups serves the swaps: they are not read again.
        assert_eq!(
            ec2.calls(),
            [
                "DescribeInstances",
                "DescribeInstanceAttribute",
                "DescribeSecurityGroups",
                "CreateTags",
                "ModifyNetworkInterfaceAttribute",
                "ModifyNetworkInterfaceAttribute",
                "ModifyInstanceAttribute"
            ]
        );
    }

    #[test]
    fn rules_changed_by_another_execution_at_the_same_time_are_read_again_not_fatal() {
        // Both executions found the VPC without Cordon's groups; the other one revokes the
        // default egress rule and authorizes the rules just before we do, each time.
        for operation in ["RevokeSecurityGroup", "AuthorizeSecurityGroup"] {
            let ec2 = FakeEc2::standard();
            let record = captured(&ec2);
            ec2.with(|s| s.racing_rule_change = Some(operation.into()));
            let report = block_on(isolate(&ec2, &record, None)).unwrap();
            assert_eq!(report.status, StepStatus::Done, "{operation}");
            let isolation = &report.groups["vpc-1"].isolation;
            assert_eq!(
                ec2.interface_groups("eni-1"),
                std::slice::from_ref(isolation)
            );
            let (ingress, egress) = desired_rules(GroupRole::Isolation, None);
            let group = ec2.with(|s| s.groups[isolation].clone());
            assert_eq!(
                (group.ingress, group.egress),
                (ingress, egress),
                "{operation}"
            );
            assert_eq!(ec2.with(|s| s.racing_rule_change.clone()), None, "raced");
        }
    }

    #[test]
    fn a_foreign_group_holding_our_name_is_a_clear_error_before_any_change() {
        let ec2 = FakeEc2::standard();
        let record = captured(&ec2);
        ec2.fail_next(
            "CreateSecurityGroup",
            CordonError::GroupDuplicate {
                vpc_id: "vpc-1".into(),
                group_name: "cordon-conversion-vpc-1".into(),
            },
        );
        let error = block_on(isolate(&ec2, &record, None)).unwrap_err();
        assert!(
            error.to_string().contains("without the tag cordon:role"),
            "{error}"
        );
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
    }
}
