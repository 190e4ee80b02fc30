use super::port::fake::FakeAutoScaling;
use super::*;
use crate::fake::{block_on, FakeEc2};

const INSTANCE: &str = "i-00000001";
const NO_PAUSE: std::time::Duration = std::time::Duration::ZERO;
const OWNER: Option<&str> =
    Some("arn:aws:states:us-east-1:123456789012:execution:cordon-quarantine:f-1");

fn membership(state: &str) -> Membership {
    Membership {
        group: "web".into(),
        lifecycle_state: state.into(),
        protected_from_scale_in: false,
    }
}

fn group(desired: i32, min: i32) -> Group {
    Group {
        name: "web".into(),
        min,
        max: 4,
        desired,
        counted: desired,
        target_groups: vec![],
    }
}

fn tags(ec2: &FakeEc2) -> Vec<(String, String)> {
    ec2.with(|s| s.instances[INSTANCE].tags.clone())
}

fn decrementing() -> Settings {
    Settings {
        decrement_desired: true,
    }
}

#[test]
fn plans_follow_the_lifecycle_state_and_the_group_minimum() {
    let keep = Settings::default();
    assert_eq!(
        plan_hold(&membership("InService"), &group(2, 1), keep),
        Hold::EnterStandby {
            decrement: false,
            note: None
        }
    );
    assert_eq!(
        plan_hold(&membership("InService"), &group(2, 1), decrementing()),
        Hold::EnterStandby {
            decrement: true,
            note: None
        }
    );
    // At its minimum AWS refuses the decrement: kept, and said so.
    match plan_hold(&membership("InService"), &group(1, 1), decrementing()) {
        Hold::EnterStandby {
            decrement: false,
            note: Some(note),
        } => assert!(note.contains("at its minimum size (1)"), "{note}"),
        other => panic!("{other:?}"),
    }
    for state in ["Standby", "EnteringStandby"] {
        assert_eq!(
            plan_hold(&membership(state), &group(2, 1), keep),
            Hold::AlreadyInStandby
        );
    }
    for state in ["Pending", "Pending:Wait", "Warmed:Running"] {
        match plan_hold(&membership(state), &group(2, 1), keep) {
            Hold::ProtectFromScaleIn(why) => {
                assert!(why.contains("only an InService instance"), "{why}");
                assert!(
                    why.contains("does not stop the group replacing it"),
                    "{why}"
                );
            }
            other => panic!("{state}: {other:?}"),
        }
    }
    for state in ["Terminating", "Terminating:Wait", "Detaching"] {
        assert!(
            matches!(
                plan_hold(&membership(state), &group(2, 1), keep),
                Hold::CannotHold(_)
            ),
            "{state}"
        );
    }
}

#[test]
fn an_instance_in_service_is_recorded_then_put_in_standby_and_the_group_keeps_its_capacity() {
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    let report = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    assert_eq!(report.status, MeasureStatus::Done, "{report:?}");
    assert_eq!(asg.state_of(INSTANCE), Some(("Standby".into(), false)));
    let web = asg.group_of("web");
    assert_eq!(web.desired, 2, "the desired capacity is kept");
    assert_eq!(
        web.instances
            .values()
            .filter(|(s, _)| s == "InService")
            .count(),
        2,
        "a replacement serves in its place"
    );
    // Recorded on the instance before the group was touched.
    let record = record_from_tags(INSTANCE, &tags(&ec2)).unwrap().unwrap();
    assert_eq!(record.lifecycle_state, "InService");
    assert_eq!(record.desired, 2);
    assert_eq!(record.intent, Intent::EnterStandby { decrement: false });
    assert!(ec2.calls().contains(&"CreateTags".to_string()));
    let calls = asg.calls();
    assert!(
        calls.iter().position(|c| c == "autoscaling:EnterStandby")
            > calls
                .iter()
                .position(|c| c == "autoscaling:DescribeAutoScalingGroups"),
        "{calls:?}"
    );
    assert_eq!(report.line(), "group web: Standby (was InService)");
}

#[test]
fn a_retry_keeps_the_first_record_and_does_not_enter_standby_twice() {
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    // EnterStandby is throttled once, after the record is written: the lifecycle state says
    // it was not made, and it is tried again.
    asg.fail_next(
        "autoscaling:EnterStandby",
        CordonError::Throttled {
            operation: "EnterStandby".into(),
            message: "Rate exceeded".into(),
        },
    );
    block_on(hold(&ec2, &asg, INSTANCE, decrementing(), OWNER)).unwrap();
    let first = record_from_tags(INSTANCE, &tags(&ec2)).unwrap().unwrap();
    assert_eq!(asg.group_of("web").desired, 1);
    // The step run again (a retry of the whole step) finds it in standby and does nothing.
    let again = block_on(hold(&ec2, &asg, INSTANCE, decrementing(), OWNER)).unwrap();
    assert_eq!(again.status, MeasureStatus::Done);
    assert!(again.notes.is_empty(), "{again:?}");
    assert_eq!(asg.group_of("web").desired, 1, "decremented once only");
    let record = record_from_tags(INSTANCE, &tags(&ec2)).unwrap().unwrap();
    assert_eq!(record, first, "the original is the first attempt's");
    assert_eq!(record.lifecycle_state, "InService");
    let standbys = asg
        .calls()
        .iter()
        .filter(|c| *c == "autoscaling:EnterStandby")
        .count();
    assert_eq!(standbys, 2, "the throttled call and the one that did it");
}

#[test]
fn an_instance_that_cannot_enter_standby_is_protected_or_reported() {
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    asg.set(INSTANCE, "Pending:Wait", false);
    let report = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    assert_eq!(report.status, MeasureStatus::Done);
    assert_eq!(asg.state_of(INSTANCE), Some(("Pending:Wait".into(), true)));
    assert!(
        report.line().contains("now protected from scale-in"),
        "{}",
        report.line()
    );
    // Being terminated by its group: nothing to do but say so.
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    asg.set(INSTANCE, "Terminating:Wait", false);
    let report = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    assert_eq!(report.status, MeasureStatus::Partial);
    assert!(
        report.errors[0].cause.contains("the group is removing it"),
        "{report:?}"
    );
    assert!(!asg.calls().iter().any(|c| c == "autoscaling:EnterStandby"));
}

#[test]
fn a_refresh_that_terminates_standby_instances_is_reported() {
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    asg.with(|s| {
        s.groups.get_mut("web").unwrap().refresh = Some(Refresh {
            id: "r-1".into(),
            standby_instances: "Terminate".into(),
        })
    });
    let report = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    assert_eq!(report.status, MeasureStatus::Partial);
    assert!(
        report.errors[0].cause.contains("cancel-instance-refresh"),
        "{report:?}"
    );
    assert_eq!(asg.state_of(INSTANCE), Some(("Standby".into(), false)));
}

#[test]
fn an_instance_in_no_group_is_left_alone_and_nothing_is_recorded() {
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::default();
    let report = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    assert_eq!(report.status, MeasureStatus::NotApplicable);
    assert_eq!(report.record, None);
    assert!(!ec2.calls().contains(&"CreateTags".to_string()));
    assert_eq!(
        block_on(restore(&ec2, &asg, INSTANCE, None, Whose::Anyone, NO_PAUSE)).unwrap(),
        None
    );
}

/// The group as restore must give it back: its desired capacity, how many instances serve,
/// and this instance's state and protection. Which of the others the group retires after
/// ExitStandby is its termination policy's choice, not Cordon's.
fn group_as_before(asg: &FakeAutoScaling) -> (i32, usize, Option<(String, bool)>) {
    let web = asg.group_of("web");
    let serving = web
        .instances
        .values()
        .filter(|(state, _)| state == "InService")
        .count();
    (web.desired, serving, asg.state_of(INSTANCE))
}

#[test]
fn restore_gives_the_group_back_exactly_with_or_without_a_decrement() {
    for settings in [Settings::default(), decrementing()] {
        let ec2 = FakeEc2::standard();
        let asg = FakeAutoScaling::with_instance(INSTANCE);
        let before = group_as_before(&asg);
        let held = block_on(hold(&ec2, &asg, INSTANCE, settings, OWNER)).unwrap();
        let restored = block_on(restore(
            &ec2,
            &asg,
            INSTANCE,
            held.record,
            Whose::Anyone,
            NO_PAUSE,
        ))
        .unwrap()
        .unwrap();
        assert!(restored.errors.is_empty(), "{restored:?}");
        // The same desired capacity and as many serving, this one among them, unprotected:
        // the group retired one of the others, never the returning instance.
        assert_eq!(group_as_before(&asg), before, "{settings:?}");
        assert_eq!(restored.desired, Some(2));
        assert_eq!(restored.protected_from_scale_in, Some(false));
        assert!(
            record_from_tags(INSTANCE, &tags(&ec2)).unwrap().is_none(),
            "the record is dropped"
        );
        // A second restore finds nothing to do.
        assert_eq!(
            block_on(restore(&ec2, &asg, INSTANCE, None, Whose::Anyone, NO_PAUSE)).unwrap(),
            None
        );
    }
}

#[test]
fn a_standby_move_whose_answer_was_lost_is_not_made_again() {
    // Neither EnterStandby nor ExitStandby takes an idempotency token, and AWS refuses each
    // once made: after a lost answer the lifecycle state says it was made, and the capacity
    // moves once (a retried ExitStandby would add one more on a lenient endpoint).
    for settings in [Settings::default(), decrementing()] {
        let ec2 = FakeEc2::standard();
        let asg = FakeAutoScaling::with_instance(INSTANCE);
        let before = group_as_before(&asg);
        asg.with(|s| s.lost_answer = Some("autoscaling:EnterStandby".into()));
        let held = block_on(hold(&ec2, &asg, INSTANCE, settings, OWNER)).unwrap();
        assert_eq!(held.status, MeasureStatus::Done, "{held:?}");
        assert!(held.errors.is_empty(), "{held:?}");
        assert_eq!(asg.state_of(INSTANCE), Some(("Standby".into(), false)));
        asg.with(|s| s.lost_answer = Some("autoscaling:ExitStandby".into()));
        let restored = block_on(restore(
            &ec2,
            &asg,
            INSTANCE,
            held.record,
            Whose::Anyone,
            NO_PAUSE,
        ))
        .unwrap()
        .unwrap();
        assert!(restored.errors.is_empty(), "{restored:?}");
        assert_eq!(group_as_before(&asg), before, "{settings:?}");
        for call in ["autoscaling:EnterStandby", "autoscaling:ExitStandby"] {
            assert_eq!(
                asg.calls().iter().filter(|c| *c == call).count(),
                1,
                "{call}"
            );
        }
    }
}

#[test]
fn restore_reads_the_record_from_the_tags_and_leaves_what_someone_else_moved() {
    // Break glass: no record but the tags.
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    let before = group_as_before(&asg);
    block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    block_on(restore(&ec2, &asg, INSTANCE, None, Whose::Anyone, NO_PAUSE)).unwrap();
    assert_eq!(group_as_before(&asg), before);
    // Someone put it back in service already: nothing to do.
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    let held = block_on(hold(&ec2, &asg, INSTANCE, decrementing(), OWNER)).unwrap();
    block_on(asg.exit_standby("web", INSTANCE)).unwrap();
    let restored = block_on(restore(
        &ec2,
        &asg,
        INSTANCE,
        held.record.clone(),
        Whose::Anyone,
        NO_PAUSE,
    ))
    .unwrap()
    .unwrap();
    assert_eq!(restored.notes, ["already back in service"]);
    assert!(!asg
        .calls()
        .iter()
        .any(|c| c == "autoscaling:SetDesiredCapacity"));
    // Someone detached it: drift, left alone, the record kept for a person to decide.
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    let held = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    asg.with(|s| s.groups.get_mut("web").unwrap().instances.remove(INSTANCE));
    let restored = block_on(restore(
        &ec2,
        &asg,
        INSTANCE,
        held.record,
        Whose::Anyone,
        NO_PAUSE,
    ))
    .unwrap()
    .unwrap();
    assert_eq!(restored.errors[0].error, "Cordon.Drift");
    assert!(restored.errors[0].cause.contains("no longer in web"));
    assert!(record_from_tags(INSTANCE, &tags(&ec2)).unwrap().is_some());
}

#[test]
fn restore_takes_back_only_the_protection_cordon_set() {
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    asg.set(INSTANCE, "Pending", false);
    let held = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    assert_eq!(asg.state_of(INSTANCE), Some(("Pending".into(), true)));
    block_on(restore(
        &ec2,
        &asg,
        INSTANCE,
        held.record,
        Whose::Anyone,
        NO_PAUSE,
    ))
    .unwrap();
    assert_eq!(asg.state_of(INSTANCE), Some(("Pending".into(), false)));
    // Protected before Cordon came: left protected.
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    asg.set(INSTANCE, "Pending", true);
    let held = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    block_on(restore(
        &ec2,
        &asg,
        INSTANCE,
        held.record,
        Whose::Anyone,
        NO_PAUSE,
    ))
    .unwrap();
    assert_eq!(asg.state_of(INSTANCE), Some(("Pending".into(), true)));
}

#[test]
fn a_record_that_is_not_ours_is_a_corrupt_record_not_a_guess() {
    let error = record_from_tags(
        INSTANCE,
        &[("cordon:asg:0".to_string(), "{\"group\": 1}".to_string())],
    )
    .unwrap_err();
    assert_eq!(error.error_name(), "Cordon.CorruptRecord");
}

/// Writes `tags` on the instance, as the instance itself can with its own role.
fn written_by_the_instance(ec2: &FakeEc2, tags: &[(&str, &str)]) {
    ec2.with(|s| {
        let instance = s.instances.get_mut(INSTANCE).unwrap();
        for (key, value) in tags {
            instance.tags.push((key.to_string(), value.to_string()));
        }
    });
}

#[test]
fn records_the_instance_wrote_itself_neither_stop_standby_nor_steer_the_restore() {
    // Tags that are no record, or a record no run of Cordon's wrote (claiming the instance was
    // in standby before and that nothing is Cordon's to undo): standby goes ahead, Cordon's
    // own record replaces them, and the restore gives the group back from that.
    let forged = serde_json::json!({"group": "web", "lifecycle_state": "Standby",
        "protected_from_scale_in": false, "desired": 9, "min": 1, "max": 9,
        "intent": {"action": "nothing"}, "owner": "arn:aws:states:us-east-1:123456789012:execution:other:x"})
    .to_string();
    for written in [
        vec![("cordon:asg:7", "x")],
        vec![("cordon:asg:0", "{not json")],
        vec![("cordon:asg:0", forged.as_str()), ("cordon:asg:1", "")],
    ] {
        let ec2 = FakeEc2::standard();
        let asg = FakeAutoScaling::with_instance(INSTANCE);
        let before = group_as_before(&asg);
        written_by_the_instance(&ec2, &written);
        let report = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
        assert_eq!(
            report.status,
            MeasureStatus::Done,
            "{written:?}: {report:?}"
        );
        assert!(report.notes[0].contains("not used"), "{report:?}");
        assert_eq!(asg.state_of(INSTANCE), Some(("Standby".into(), false)));
        let record = record_from_tags(INSTANCE, &tags(&ec2)).unwrap().unwrap();
        assert_eq!(record.lifecycle_state, "InService", "{written:?}");
        assert_eq!(record.owner.as_deref(), OWNER);
        // The workflow's restore finds its own record (not the forged one) and gives back.
        let restored = block_on(restore(
            &ec2,
            &asg,
            INSTANCE,
            None,
            Whose::Run(OWNER),
            NO_PAUSE,
        ))
        .unwrap()
        .unwrap();
        assert!(restored.errors.is_empty(), "{restored:?}");
        assert_eq!(group_as_before(&asg), before, "{written:?}");
    }
    // During isolation the instance rewrites the record: the workflow restores from its own
    // copy (the branch's output), and the forged tags cannot make it fail or go astray.
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    let before = group_as_before(&asg);
    let held = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    ec2.with(|s| {
        let instance = s.instances.get_mut(INSTANCE).unwrap();
        instance.tags.retain(|(k, _)| !k.starts_with("cordon:asg"));
        instance.tags.push(("cordon:asg:0".into(), forged.clone()));
        instance.tags.push(("cordon:asg:5".into(), "x".into()));
    });
    let restored = block_on(restore(
        &ec2,
        &asg,
        INSTANCE,
        held.record,
        Whose::Run(OWNER),
        NO_PAUSE,
    ))
    .unwrap()
    .unwrap();
    assert!(restored.errors.is_empty(), "{restored:?}");
    assert_eq!(group_as_before(&asg), before);
}

#[test]
fn a_restore_stopped_half_way_is_finished_by_the_next() {
    // Throttled past the SDK's retries right after ExitStandby: the step fails and Step
    // Functions runs it again, which must take back the capacity and the protection.
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    let before = group_as_before(&asg);
    let held = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    asg.fail_next(
        "autoscaling:SetDesiredCapacity",
        CordonError::Throttled {
            operation: "SetDesiredCapacity".into(),
            message: "Rate exceeded".into(),
        },
    );
    let error = block_on(restore(
        &ec2,
        &asg,
        INSTANCE,
        held.record.clone(),
        Whose::Run(OWNER),
        NO_PAUSE,
    ))
    .unwrap_err();
    assert_eq!(error.error_name(), "Cordon.Throttled");
    assert_eq!(asg.state_of(INSTANCE), Some(("InService".into(), true)));
    assert_eq!(
        asg.group_of("web").desired,
        3,
        "ExitStandby's one not taken back yet"
    );
    let restored = block_on(restore(
        &ec2,
        &asg,
        INSTANCE,
        held.record,
        Whose::Run(OWNER),
        NO_PAUSE,
    ))
    .unwrap()
    .unwrap();
    assert!(restored.errors.is_empty(), "{restored:?}");
    assert_eq!(group_as_before(&asg), before);
    assert!(record_from_tags(INSTANCE, &tags(&ec2)).unwrap().is_none());
}

#[test]
fn a_refused_standby_falls_back_to_protection_and_restore_takes_it_back() {
    let ec2 = FakeEc2::standard();
    let asg = FakeAutoScaling::with_instance(INSTANCE);
    asg.fail_next(
        "autoscaling:EnterStandby",
        CordonError::AutoScaling {
            operation: "EnterStandby".into(),
            code: "ValidationError".into(),
            message: "The instance is not in InService.".into(),
        },
    );
    let held = block_on(hold(&ec2, &asg, INSTANCE, Settings::default(), OWNER)).unwrap();
    assert_eq!(held.status, MeasureStatus::Partial);
    assert_eq!(asg.state_of(INSTANCE), Some(("InService".into(), true)));
    assert_eq!(
        held.record.as_ref().unwrap().intent,
        Intent::ProtectFromScaleIn
    );
    let tagged = record_from_tags(INSTANCE, &tags(&ec2)).unwrap().unwrap();
    assert_eq!(tagged.intent, Intent::ProtectFromScaleIn);
    block_on(restore(
        &ec2,
        &asg,
        INSTANCE,
        None,
        Whose::Run(OWNER),
        NO_PAUSE,
    ))
    .unwrap();
    assert_eq!(asg.state_of(INSTANCE), Some(("InService".into(), false)));
}
