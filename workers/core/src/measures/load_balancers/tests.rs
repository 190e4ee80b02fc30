use super::port::fake::{FakeGroup, FakeLoadBalancing, ADMIN, ASG_GROUP, WEB};
use super::*;
use crate::error::CordonError;
use crate::fake::{block_on, FakeEc2};
use crate::kms::fake::FakeKms;
use crate::measures::auto_scaling::port::fake::FakeAutoScaling;
use crate::seal::{RecordKey, Unsealed};

const INSTANCE: &str = "i-00000001";
/// When this containment's capture recorded the instance.
const CAPTURED_AT: &str = "2026-12-07T09:00:00Z";
/// A group of the instance's VPC that it is not registered in.
const PAYMENTS: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/payments/0123456789abcdec";

fn key() -> RecordKey<FakeKms> {
    RecordKey {
        kms: FakeKms::with_key("k", b"record key material"),
        key_id: "k".into(),
    }
}

/// A restore by the groups' records, relied on where Cordon sealed them.
fn restore_by_tags(ec2: &FakeEc2, elb: &FakeLoadBalancing) -> Option<RestoreReport> {
    let key = key();
    let sealed_only = Source::Tags(Vouch {
        key: &key,
        trust_unverified: false,
    });
    block_on(restore(ec2, elb, INSTANCE, sealed_only)).unwrap()
}

/// `ports` on `group`, sealed by Cordon's key as the containment captured at `captured_at`
/// would have.
fn sealed_by_cordon(group: &str, ports: &[i32], captured_at: &str) -> String {
    let message = target_group_message(group, INSTANCE, captured_at, &record_value(ports));
    let seal = block_on(key().seal(&message)).unwrap().unwrap();
    sealed_value(
        ports,
        Some(&Sealed {
            captured_at: captured_at.into(),
            seal,
        }),
    )
}

/// Puts `value` as the instance's record on `group`.
fn tag(elb: &FakeLoadBalancing, group: &str, value: String) {
    elb.with(|s| {
        s.groups
            .get_mut(group)
            .unwrap()
            .tags
            .push((record_key(INSTANCE), value))
    });
}

/// `PAYMENTS`, where the instance is not registered, in its VPC.
fn with_payments(elb: &FakeLoadBalancing, tag: Option<String>) {
    elb.with(|s| {
        s.groups.insert(
            PAYMENTS.into(),
            FakeGroup {
                vpc_id: "vpc-1".into(),
                target_type: "instance".into(),
                tags: tag
                    .map(|value| vec![(record_key(INSTANCE), value)])
                    .unwrap_or_default(),
                ..Default::default()
            },
        )
    });
}

/// The instance serving in Auto Scaling group `web`, whose target group is `asg`.
fn in_its_group() -> FakeAutoScaling {
    let autoscaling = FakeAutoScaling::with_instance(INSTANCE);
    autoscaling
        .with(|s| s.groups.get_mut("web").unwrap().target_groups = vec![ASG_GROUP.to_string()]);
    autoscaling
}

fn deregister_now(ec2: &FakeEc2, elb: &FakeLoadBalancing) -> Report {
    block_on(deregister(
        ec2,
        &in_its_group(),
        elb,
        INSTANCE,
        &key(),
        CAPTURED_AT,
    ))
    .unwrap()
}

#[test]
fn records_parse_back_and_reject_what_is_not_a_port_list() {
    assert_eq!(ports_of(&record_value(&[80, 8080])), Some(vec![80, 8080]));
    for bad in ["", "80+", "http", "0", "65536", "80,443"] {
        assert_eq!(ports_of(bad), None, "{bad}");
    }
    let sealed = Sealed {
        captured_at: CAPTURED_AT.into(),
        seal: "m1:ab".into(),
    };
    assert_eq!(
        parse_record(&sealed_value(&[443], Some(&sealed))),
        Some((vec![443], Some(sealed)))
    );
    assert_eq!(parse_record("443"), Some((vec![443], None)));
    for bad in ["all/t/m1:ab", "443/m1:ab", "443/t/m1:ab/more"] {
        assert_eq!(parse_record(bad), None, "{bad}");
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
    let (_, value) = elb
        .group_tags(WEB)
        .into_iter()
        .find(|(k, _)| *k == record_key(INSTANCE))
        .unwrap();
    assert!(
        value.starts_with(&format!("80+8080/{CAPTURED_AT}/m1:")),
        "{value}"
    );
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

    let restored = restore_by_tags(&ec2, &elb).unwrap();
    assert_eq!(restored.registered.len(), 2);
    let after: Vec<_> = [WEB, ADMIN, ASG_GROUP]
        .iter()
        .map(|g| (elb.targets(g), elb.group_tags(g)))
        .collect();
    assert_eq!(after, before);
    assert_eq!(restore_by_tags(&ec2, &elb), None);
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
    restore_by_tags(&ec2, &elb).unwrap();
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
    let restored = restore_by_tags(&ec2, &elb).unwrap();
    assert!(restored.registered.is_empty());
    assert!(restored.notes[0].contains("is not a record Cordon writes"));
}

#[test]
fn a_record_planted_before_the_finding_is_not_taken_for_cordons() {
    // Whoever may tag target groups names the instance on the payment service's group before
    // the finding: the step must not report it as a group it took the instance out of, or the
    // approved restore (which goes by the report) registers the instance there.
    let (ec2, elb) = (
        FakeEc2::standard(),
        FakeLoadBalancing::with_instance(INSTANCE),
    );
    with_payments(&elb, Some("443".into()));
    // A seal made for other ports, put on a record that adds one: refused as well.
    let (_, seal) = sealed_by_cordon(ADMIN, &[9000], CAPTURED_AT)
        .rsplit_once('/')
        .map(|(rest, seal)| (rest.to_string(), seal.to_string()))
        .unwrap();
    tag(&elb, ADMIN, format!("9000+22/{CAPTURED_AT}/{seal}"));
    let report = deregister_now(&ec2, &elb);
    let mut out_of: Vec<(&str, &[i32])> = report
        .deregistered
        .iter()
        .map(|r| (r.target_group.as_str(), r.ports.as_slice()))
        .collect();
    out_of.sort();
    // Out of where it was registered, on exactly the ports it was on.
    assert_eq!(
        out_of,
        [(ADMIN, &[9000][..]), (WEB, &[80, 8080][..])],
        "{report:?}"
    );
    assert!(
        report.notes.iter().any(|n| n.contains("payments")),
        "{report:?}"
    );
    // The planted tag is left as it was; the one on admin is Cordon's now.
    assert_eq!(
        elb.group_tags(PAYMENTS),
        [(record_key(INSTANCE), "443".to_string())]
    );
    let restored = restore_by_tags(&ec2, &elb).unwrap();
    assert!(elb.targets(PAYMENTS).is_empty());
    assert_eq!(elb.targets(ADMIN), [(INSTANCE.to_string(), 9000)]);
    assert_eq!(restored.refused.len(), 1, "{restored:?}");
    assert_eq!(restored.refused[0].resource, PAYMENTS);
}

#[test]
fn an_earlier_containments_record_never_given_back_is_given_back_by_this_one() {
    // An earlier execution took the instance out of payments (port 443) and ended without a
    // restore: that record is Cordon's, and this containment gives it back with its own.
    let (ec2, elb) = (
        FakeEc2::standard(),
        FakeLoadBalancing::with_instance(INSTANCE),
    );
    with_payments(
        &elb,
        Some(sealed_by_cordon(PAYMENTS, &[443], "2026-11-01T00:00:00Z")),
    );
    let report = deregister_now(&ec2, &elb);
    assert!(report
        .deregistered
        .iter()
        .any(|r| r.target_group == PAYMENTS && r.ports == [443]));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("payments") && n.contains("2026-11-01T00:00:00Z")),
        "{report:?}"
    );
    restore_by_tags(&ec2, &elb).unwrap();
    assert_eq!(elb.targets(PAYMENTS), [(INSTANCE.to_string(), 443)]);
}

#[test]
fn a_break_glass_restore_uses_only_records_cordon_sealed() {
    let (ec2, elb) = (
        FakeEc2::standard(),
        FakeLoadBalancing::with_instance(INSTANCE),
    );
    deregister_now(&ec2, &elb);
    // Forged: web's seal copied onto a made-up record for payments.
    let (_, web) = elb
        .group_tags(WEB)
        .into_iter()
        .find(|(k, _)| *k == record_key(INSTANCE))
        .unwrap();
    let (_, seal) = web.rsplit_once('/').unwrap();
    with_payments(&elb, Some(format!("443/{CAPTURED_AT}/{seal}")));

    let restored = restore_by_tags(&ec2, &elb).unwrap();
    let mut back: Vec<&str> = restored
        .registered
        .iter()
        .map(|r| r.target_group.as_str())
        .collect();
    back.sort();
    assert_eq!(back, [ADMIN, WEB]);
    assert!(elb.targets(PAYMENTS).is_empty());
    assert_eq!(restored.refused.len(), 1, "{restored:?}");
    assert!(restored.refused[0].reason.contains("does not verify"));

    // Told to trust what does not verify, it registers where the forged record says, and
    // lists it.
    let trusting = Source::Tags(Vouch {
        key: &Unsealed,
        trust_unverified: true,
    });
    let trusted = block_on(restore(&ec2, &elb, INSTANCE, trusting))
        .unwrap()
        .unwrap();
    assert_eq!(elb.targets(PAYMENTS), [(INSTANCE.to_string(), 443)]);
    assert_eq!(trusted.unverified.len(), 1);
}

#[test]
fn cordon_isolate_writes_its_records_unsealed_and_takes_them_back_on_a_rerun() {
    let (ec2, elb) = (
        FakeEc2::standard(),
        FakeLoadBalancing::with_instance(INSTANCE),
    );
    let run = || {
        block_on(deregister(
            &ec2,
            &in_its_group(),
            &elb,
            INSTANCE,
            &Unsealed,
            CAPTURED_AT,
        ))
        .unwrap()
    };
    let first = run();
    assert!(elb
        .group_tags(WEB)
        .contains(&(record_key(INSTANCE), "80+8080".into())));
    let again = run();
    assert_eq!(again.deregistered.len(), first.deregistered.len());
    assert!(again.notes.iter().all(|n| !n.contains("not taken")));
}

#[test]
fn every_record_is_a_tag_value_elastic_load_balancing_takes() {
    // AWS refuses a comma or a semicolon in a tag value (moto takes them): a record written so
    // would make every group refuse it, and keep the instance registered.
    for refused in ["80,8080", "80;m1:ab"] {
        assert!(
            !port::tag_text_allowed(refused, port::TAG_VALUE_LONGEST),
            "{refused}"
        );
    }
    let many: Vec<i32> = (1..=20).map(|n| 60_000 + n).collect();
    let sealed = sealed_by_cordon(WEB, &many, "2026-12-07T09:00:00.000Z");
    assert!(
        port::tag_text_allowed(&sealed, port::TAG_VALUE_LONGEST),
        "{sealed}"
    );
    assert!(port::tag_text_allowed(
        &record_key(INSTANCE),
        port::TAG_KEY_LONGEST
    ));
    // And the fake refuses what AWS refuses.
    let elb = FakeLoadBalancing::with_instance(INSTANCE);
    let error =
        block_on(elb.add_tags(WEB, &[(record_key(INSTANCE), "80,8080".into())])).unwrap_err();
    assert!(error.to_string().contains("ValidationError"), "{error}");
}
