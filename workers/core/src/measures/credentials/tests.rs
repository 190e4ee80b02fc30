use super::port::fake::{FakeIam, FakeRole, ACCOUNT, POLICY_ARN, PROFILE_ARN, ROLE};
use super::*;
use crate::fake::{block_on, FakeEc2};

const INSTANCE: &str = "i-00000001";
const OTHER: &str = "i-00000002";
const REGION: &str = "eu-west-1";

fn arn(instance: &str) -> String {
    format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance}")
}

/// The standard fake instance, and a second one, both with profile `web` (role `web-role`).
fn ec2_with_profile() -> FakeEc2 {
    let ec2 = FakeEc2::standard();
    ec2.with(|s| {
        let mut first = s.instances[INSTANCE].clone();
        first.instance_profile_arn = Some(PROFILE_ARN.into());
        let mut second = first.clone();
        second.id = OTHER.into();
        s.instances.insert(INSTANCE.into(), first);
        s.instances.insert(OTHER.into(), second);
    });
    ec2
}

fn slots(role: &FakeRole) -> Vec<(String, String)> {
    role.tags
        .iter()
        .filter(|(k, _)| k.starts_with(SLOT_PREFIX))
        .cloned()
        .collect()
}

fn cut_now(ec2: &FakeEc2, iam: &FakeIam, instance: &str) -> Report {
    block_on(cut(ec2, iam, instance, REGION)).unwrap()
}

fn restore_now(
    ec2: &FakeEc2,
    iam: &FakeIam,
    instance: &str,
    record: Option<Record>,
) -> Option<RestoreReport> {
    block_on(restore(ec2, iam, instance, REGION, record)).unwrap()
}

#[test]
fn a_profile_arn_names_partition_account_and_profile_whatever_its_path() {
    let profile =
        ProfileArn::parse("arn:aws-us-gov:iam::111122223333:instance-profile/a/b/web").unwrap();
    assert_eq!(
        profile,
        ProfileArn {
            partition: "aws-us-gov".into(),
            account: "111122223333".into(),
            name: "web".into()
        }
    );
    assert_eq!(
        profile.instance_arn("us-gov-west-1", INSTANCE),
        "arn:aws-us-gov:ec2:us-gov-west-1:111122223333:instance/i-00000001"
    );
    for bad in [
        "arn:aws:iam::111122223333:role/web",
        "arn:aws:iam::1111:instance-profile/web",
        "arn:aws:iam::111122223333:instance-profile/",
        "web",
    ] {
        assert!(ProfileArn::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn cut_names_the_instance_in_a_slot_and_restore_gives_the_role_back_exactly() {
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    let before = iam.role(ROLE);

    let report = cut_now(&ec2, &iam, INSTANCE);
    assert_eq!(report.status, MeasureStatus::Done, "{report:?}");
    let during = iam.role(ROLE);
    assert_eq!(slots(&during).len(), 1);
    assert_eq!(slots(&during)[0].1, arn(INSTANCE));
    assert!(during.attached.contains(&POLICY_ARN.to_string()));
    // The role's own tags and policies are untouched.
    assert!(during.tags.contains(&("team".into(), "web".into())));
    assert_eq!(during.attached.len(), before.attached.len() + 1);
    let record = report.record.clone().unwrap();
    assert_eq!(record.policy_arn, POLICY_ARN);
    assert!(report.line().contains("copies taken off it included"));

    let restored = restore_now(&ec2, &iam, INSTANCE, Some(record)).unwrap();
    assert!(restored.policy_detached);
    let after = iam.role(ROLE);
    assert_eq!(after.tags, before.tags);
    assert_eq!(after.attached, before.attached);
}

#[test]
fn an_instance_without_a_role_is_not_applicable_and_iam_is_not_called() {
    let (ec2, iam) = (FakeEc2::standard(), FakeIam::with_role());
    let report = cut_now(&ec2, &iam, INSTANCE);
    assert_eq!(report.status, MeasureStatus::NotApplicable);
    assert!(iam.calls().is_empty());
    assert_eq!(restore_now(&ec2, &iam, INSTANCE, None), None);

    // A profile without a role: nothing to cut either.
    let ec2 = ec2_with_profile();
    iam.with(|s| s.profiles.insert("web".into(), None));
    let report = cut_now(&ec2, &iam, INSTANCE);
    assert_eq!(report.status, MeasureStatus::NotApplicable);
    assert!(
        report.notes[0].contains("holds no role"),
        "{:?}",
        report.notes
    );
}

#[test]
fn two_instances_of_one_role_keep_the_policy_until_the_last_is_released() {
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    let before = iam.role(ROLE);
    let first = cut_now(&ec2, &iam, INSTANCE).record.unwrap();
    let second = cut_now(&ec2, &iam, OTHER).record.unwrap();
    assert_ne!(first.slot, second.slot);
    assert!(
        !second.policy_attached_before,
        "attached by Cordon's first cut"
    );

    let report = restore_now(&ec2, &iam, INSTANCE, Some(first)).unwrap();
    assert!(!report.policy_detached);
    let between = iam.role(ROLE);
    assert_eq!(slots(&between), vec![(second.slot.clone(), arn(OTHER))]);
    assert!(between.attached.contains(&POLICY_ARN.to_string()));

    let report = restore_now(&ec2, &iam, OTHER, Some(second)).unwrap();
    assert!(report.policy_detached);
    assert_eq!(iam.role(ROLE).tags, before.tags);
    assert_eq!(iam.role(ROLE).attached, before.attached);
}

#[test]
fn without_the_deployed_policy_nothing_is_written_and_the_report_says_what_to_do() {
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    iam.with(|s| s.policies.remove(POLICY_ARN));
    let before = iam.role(ROLE);
    let report = cut_now(&ec2, &iam, INSTANCE);
    assert_eq!(report.status, MeasureStatus::Partial);
    assert!(
        report.errors[0].cause.contains("deploy Cordon's stack"),
        "{:?}",
        report.errors
    );
    assert!(report.errors[0]
        .cause
        .contains("the credentials still work"));
    assert_eq!(iam.role(ROLE).tags, before.tags);
}

#[test]
fn a_role_at_its_managed_policy_quota_is_reported_and_left_as_it_was() {
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    iam.with(|s| {
        let role = s.roles.get_mut(ROLE).unwrap();
        for n in role.attached.len()..port::MAX_ATTACHED_POLICIES {
            let arn = format!("arn:aws:iam::{ACCOUNT}:policy/p{n}");
            s.policies.insert(arn.clone());
            role.attached.push(arn);
        }
    });
    let before = iam.role(ROLE);
    let report = cut_now(&ec2, &iam, INSTANCE);
    assert_eq!(report.status, MeasureStatus::Partial);
    assert!(report.errors[0].cause.contains("raise the quota"));
    let after = iam.role(ROLE);
    assert_eq!((after.tags, after.attached), (before.tags, before.attached));
}

#[test]
fn a_slot_another_run_overwrote_is_not_taken_for_cut_another_is() {
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    // A concurrent cut of another instance of the role writes the same slot right after.
    iam.with(|s| s.overwrite_after_tag = Some((0, arn("i-0000000000000beef"))));
    let report = cut_now(&ec2, &iam, INSTANCE);
    assert_eq!(report.status, MeasureStatus::Done, "{report:?}");
    let slots = slots(&iam.role(ROLE));
    assert_eq!(slots.len(), 2, "{slots:?}");
    let record = report.record.unwrap();
    assert!(slots.contains(&(record.slot.clone(), arn(INSTANCE))));
    assert!(slots.iter().any(|(_, v)| *v == arn("i-0000000000000beef")));
}

#[test]
fn a_retried_cut_finds_its_slot_and_writes_no_other() {
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    let first = cut_now(&ec2, &iam, INSTANCE).record.unwrap();
    let again = cut_now(&ec2, &iam, INSTANCE).record.unwrap();
    assert_eq!(first.slot, again.slot);
    assert_eq!(slots(&iam.role(ROLE)).len(), 1);
}

#[test]
fn with_every_slot_taken_the_cut_says_so_and_changes_nothing() {
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    iam.with(|s| {
        let role = s.roles.get_mut(ROLE).unwrap();
        for n in 0..SLOTS {
            role.tags
                .push((slot_key(n), arn(&format!("i-000000000000000{n:02}"))));
        }
    });
    let before = iam.role(ROLE);
    let report = cut_now(&ec2, &iam, INSTANCE);
    assert_eq!(report.status, MeasureStatus::Partial);
    assert!(report.errors[0].cause.contains("release one first"));
    assert_eq!(iam.role(ROLE).tags, before.tags);
    assert!(!iam.calls().contains(&"iam:AttachRolePolicy".to_string()));
}

#[test]
fn a_role_with_fifty_tags_gets_no_fifty_first() {
    let tags: Vec<(String, String)> = (0..port::MAX_ROLE_TAGS)
        .map(|n| (format!("k{n}"), "v".into()))
        .collect();
    match plan_cut(ROLE, INSTANCE, &arn(INSTANCE), &tags, false) {
        Cut::NoRoom(why) => assert!(why.contains("50 tags"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_policy_someone_attached_before_stays_after_restore() {
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    iam.with(|s| {
        s.roles
            .get_mut(ROLE)
            .unwrap()
            .attached
            .push(POLICY_ARN.into())
    });
    let before = iam.role(ROLE);
    let record = cut_now(&ec2, &iam, INSTANCE).record.unwrap();
    assert!(record.policy_attached_before);
    let report = restore_now(&ec2, &iam, INSTANCE, Some(record)).unwrap();
    assert!(!report.policy_detached);
    assert_eq!(iam.role(ROLE).attached, before.attached);
    assert_eq!(iam.role(ROLE).tags, before.tags);
}

#[test]
fn restore_by_hand_releases_only_the_instance_it_is_asked_for() {
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    cut_now(&ec2, &iam, INSTANCE);
    let other = cut_now(&ec2, &iam, OTHER).record.unwrap();
    let report = restore_now(&ec2, &iam, INSTANCE, None).unwrap();
    assert_eq!(report.released.len(), 1);
    assert!(!report.policy_detached);
    assert_eq!(slots(&iam.role(ROLE)), vec![(other.slot, arn(OTHER))]);
}

#[test]
fn throttling_fails_the_step_for_a_retry() {
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    iam.fail_next(
        "iam:TagRole",
        CordonError::Throttled {
            operation: "iam:TagRole".into(),
            message: "Rate exceeded".into(),
        },
    );
    let result = block_on(cut(&ec2, &iam, INSTANCE, REGION));
    assert!(matches!(result, Err(CordonError::Throttled { .. })));
    // The retry finishes the job.
    assert_eq!(cut_now(&ec2, &iam, INSTANCE).status, MeasureStatus::Done);
}

#[test]
fn a_restore_racing_a_cut_of_the_same_role_never_leaves_the_cut_without_the_policy() {
    // The cut's read finds the policy attached (another instance is cut); that instance's
    // restore detaches it before the cut's slot lands.
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    let other = cut_now(&ec2, &iam, OTHER).record.unwrap();
    iam.with(|s| s.detach_after_tag = true);
    let report = cut_now(&ec2, &iam, INSTANCE);
    assert_eq!(report.status, MeasureStatus::Done);
    assert!(iam.role(ROLE).attached.contains(&POLICY_ARN.to_string()));

    // The other way: a restore detaches as a cut of another instance writes its slot.
    let record = report.record.unwrap();
    restore_now(&ec2, &iam, OTHER, Some(other));
    iam.with(|s| s.tag_after_detach = Some((slot_key(9), arn("i-0000000000000beef"))));
    let restored = restore_now(&ec2, &iam, INSTANCE, Some(record)).unwrap();
    assert!(!restored.policy_detached);
    assert!(iam.role(ROLE).attached.contains(&POLICY_ARN.to_string()));
}

#[test]
fn a_cut_cut_short_is_released_by_the_instance_arn() {
    // The slot was written but the step ended before it reported a record.
    let (ec2, iam) = (ec2_with_profile(), FakeIam::with_role());
    let before = iam.role(ROLE);
    cut_now(&ec2, &iam, INSTANCE);
    let restored = restore_now(&ec2, &iam, INSTANCE, None).unwrap();
    assert_eq!(restored.released.len(), 1);
    assert_eq!(iam.role(ROLE).tags, before.tags);
    assert_eq!(iam.role(ROLE).attached, before.attached);
}
