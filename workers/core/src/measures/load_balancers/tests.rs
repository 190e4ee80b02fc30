use super::port::fake::{FakeLoadBalancing, ADMIN, ASG_GROUP, WEB};
use super::*;
use crate::error::CordonError;
use crate::fake::{block_on, FakeEc2};
use crate::measures::auto_scaling::port::fake::FakeAutoScaling;

const INSTANCE: &str = "i-00000001";

/// The instance serving in Auto Scaling group `web`, whose target group is `asg`.
fn in_its_group() -> FakeAutoScaling {
    let autoscaling = FakeAutoScaling::with_instance(INSTANCE);
    autoscaling
        .with(|s| s.groups.get_mut("web").unwrap().target_groups = vec![ASG_GROUP.to_string()]);
    autoscaling
}

fn deregister_now(ec2: &FakeEc2, elb: &FakeLoadBalancing) -> Report {
    block_on(deregister(ec2, &in_its_group(), elb, INSTANCE)).unwrap()
}

#[test]
fn records_parse_back_and_reject_what_is_not_a_port_list() {
    assert_eq!(ports_of(&record_value(&[80, 8080])), Some(vec![80, 8080]));
    for bad in ["", "80,", "http", "0", "65536", "80;443"] {
        assert_eq!(ports_of(bad), None, "{bad}");
    }
}

#[test]
fn its_own_target_groups_are_left_recorded_and_given_back_exactly() {
    let (ec2, elb) = (
        FakeEc2::standard(),
        FakeLoadBalancing::with_instance(INSTANCE),
    );
    let before: Vec<_> = [WEB, ADMIN, ASG_GROUP]
        .iter()
        .map(|g| (elb.targets(g), elb.group_tags(g)))
        .collect();

    let report = deregister_now(&ec2, &elb);
    assert_eq!(report.status, MeasureStatus::Done, "{report:?}");
    assert!(elb.targets(WEB).is_empty());
    assert!(elb.targets(ADMIN).is_empty());
    // Its Auto Scaling group's target group is standby's to handle.
    assert_eq!(elb.targets(ASG_GROUP), vec![(INSTANCE.to_string(), 80)]);
    assert!(elb
        .group_tags(WEB)
        .contains(&(record_key(INSTANCE), "80,8080".into())));
    let mut groups: Vec<&str> = report
        .deregistered
        .iter()
        .map(|r| r.target_group.as_str())
        .collect();
    groups.sort();
    assert_eq!(groups, [ADMIN, WEB]);
    assert!(report
        .line()
        .contains("out of target group web (ports 80,8080)"));

    let restored = block_on(restore(&ec2, &elb, INSTANCE, None))
        .unwrap()
        .unwrap();
    assert_eq!(restored.registered.len(), 2);
    let after: Vec<_> = [WEB, ADMIN, ASG_GROUP]
        .iter()
        .map(|g| (elb.targets(g), elb.group_tags(g)))
        .collect();
    assert_eq!(after, before);
    assert_eq!(block_on(restore(&ec2, &elb, INSTANCE, None)).unwrap(), None);
}

#[test]
fn a_group_that_refuses_the_record_keeps_the_instance_and_the_others_go_on() {
    let (ec2, elb) = (
        FakeEc2::standard(),
        FakeLoadBalancing::with_instance(INSTANCE),
    );
    elb.fail_next(
        "elasticloadbalancing:AddTags",
        CordonError::AccessDenied {
            operation: "AddTags".into(),
            message: "an SCP denies it".into(),
        },
    );
    let report = deregister_now(&ec2, &elb);
    assert_eq!(report.status, MeasureStatus::Partial);
    assert_eq!(report.deregistered.len(), 1);
    // Exactly one of the two is still registered, and it carries no record.
    let still: Vec<&str> = [WEB, ADMIN]
        .into_iter()
        .filter(|g| !elb.targets(g).is_empty())
        .collect();
    assert_eq!(still.len(), 1);
    assert!(!elb
        .group_tags(still[0])
        .iter()
        .any(|(k, _)| *k == record_key(INSTANCE)));
}

#[test]
fn a_deregistration_refused_on_a_retry_after_a_lost_answer_is_done() {
    // The call was made, its answer lost, and the SDK's retry was refused: the instance is
    // out all the same, which is what the report must say (and restore must give back).
    let (ec2, elb) = (
        FakeEc2::standard(),
        FakeLoadBalancing::with_instance(INSTANCE),
    );
    let invalid = CordonError::LoadBalancing {
        operation: "DeregisterTargets".into(),
        code: "InvalidTarget".into(),
        message: "The specified target does not exist".into(),
    };
    elb.with(|s| s.made_then = Some(("elasticloadbalancing:DeregisterTargets".into(), invalid)));
    let report = deregister_now(&ec2, &elb);
    assert_eq!(report.status, MeasureStatus::Done, "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.deregistered.len(), 2, "{report:?}");
    block_on(restore(&ec2, &elb, INSTANCE, None))
        .unwrap()
        .unwrap();
    assert_eq!(
        elb.targets(WEB),
        vec![(INSTANCE.to_string(), 80), (INSTANCE.to_string(), 8080)]
    );
}

#[test]
fn a_retry_reports_what_the_first_attempt_took_out() {
    let (ec2, elb) = (
        FakeEc2::standard(),
        FakeLoadBalancing::with_instance(INSTANCE),
    );
    let first = deregister_now(&ec2, &elb);
    let again = deregister_now(&ec2, &elb);
    let ports = |r: &Report| {
        let mut all: Vec<_> = r
            .deregistered
            .iter()
            .map(|d| (d.target_group.clone(), d.ports.clone()))
            .collect();
        all.sort();
        all
    };
    assert_eq!(ports(&again), ports(&first));
    assert_eq!(again.status, MeasureStatus::Done);
}

#[test]
fn an_instance_in_no_group_of_its_own_is_not_applicable() {
    let ec2 = FakeEc2::standard();
    let elb = FakeLoadBalancing::default();
    let report = deregister_now(&ec2, &elb);
    assert_eq!(report.status, MeasureStatus::NotApplicable);
    assert!(!elb
        .calls()
        .iter()
        .any(|c| c.ends_with("DeregisterTargets") || c.ends_with("AddTags")));
}

#[test]
fn a_record_that_is_not_a_port_list_is_left_and_said() {
    let (ec2, elb) = (
        FakeEc2::standard(),
        FakeLoadBalancing::with_instance(INSTANCE),
    );
    elb.with(|s| {
        s.groups
            .get_mut(WEB)
            .unwrap()
            .tags
            .push((record_key(INSTANCE), "everything".into()))
    });
    let restored = block_on(restore(&ec2, &elb, INSTANCE, None))
        .unwrap()
        .unwrap();
    assert!(restored.registered.is_empty());
    assert!(restored.notes[0].contains("is not a list of ports"));
}
