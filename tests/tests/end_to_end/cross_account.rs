//! A delegated GuardDuty administrator's findings name member accounts: the workers assume the
//! member role there (moto keeps each account's state apart) and act in the finding's account.

use cordon_core::aws::MemberRole;
use cordon_core::capture::CaptureStatus;
use cordon_core::config::Config;
use cordon_core::restore::RestoreStatus;
use cordon_core::steps::{block_step, capture_step, isolate_step, restore_step, RestoreInput};
use cordon_tests::{finding_for, Moto, World};

const MEMBER: &str = "210987654321";

/// Every VPC, group and ACL an account holds: what "untouched" compares.
async fn everything(world: &World) -> Vec<String> {
    let vpcs = world.ec2.describe_vpcs().send().await.unwrap();
    let mut seen = Vec::new();
    for vpc in vpcs.vpcs() {
        let id = vpc.vpc_id().unwrap();
        seen.push(format!(
            "{id} {:?} {:?}",
            world.groups(id).await,
            world.acls(id).await
        ));
    }
    seen
}

#[tokio::test]
async fn a_member_accounts_finding_is_contained_and_restored_in_that_account_only() {
    let moto = Moto::start();
    let home = moto.world();
    let member = World::from_sdk(&moto.sdk_config_in(MEMBER, "cordon-member").await);
    // Same shape in both accounts, so a mix-up would show.
    let mut instances = Vec::new();
    for world in [&home, &member] {
        let vpc = world.vpc("10.0.0.0/16", false).await;
        let a = world.subnet(&vpc, "10.0.1.0/24", None).await;
        let b = world.subnet(&vpc, "10.0.2.0/24", None).await;
        world
            .custom_acl(
                &vpc,
                &[&b],
                &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
            )
            .await;
        let web = world.security_group(&vpc, "web", 443).await;
        let (instance, enis) = world.instance(&[(&a, &[&web])], false).await;
        instances.push((vpc, instance, enis[0].clone(), web));
    }
    let (member_vpc, member_instance, member_eni, member_web) = instances[1].clone();
    let home_before = everything(&home).await;
    let member_before = member.acls(&member_vpc).await;

    let mut finding = finding_for(&member_instance, 8.0, "198.51.100.7");
    finding["accountId"] = MEMBER.into();
    let config = Config::default();

    // Without a member role the workers refuse, loudly, naming what to configure; an
    // account outside Cordon's scope is skipped before any role is asked for.
    let alone = moto.worker_aws("capture-state");
    let error = capture_step(
        &alone,
        &alone,
        &config,
        &cordon_core::seal::Unsealed,
        &finding,
    )
    .await
    .unwrap_err();
    assert_eq!(error.error_name(), "Cordon.NotEnrolled");
    assert!(
        error
            .to_string()
            .contains(&format!("account {MEMBER} is not enrolled"))
            && error.to_string().contains("CORDON_MEMBER_ROLE_NAME"),
        "{error}"
    );
    let mut scoped = config.clone();
    scoped.policy.scope.accounts = vec!["111111111111".into()];
    let skipped = capture_step(
        &alone,
        &alone,
        &scoped,
        &cordon_core::seal::Unsealed,
        &finding,
    )
    .await
    .unwrap();
    assert_eq!(skipped.status, CaptureStatus::Skipped);
    assert!(
        skipped.reason.contains("outside Cordon's scope"),
        "{}",
        skipped.reason
    );

    let as_worker = |worker: &str| {
        moto.worker_aws(worker).with_member_role(Some(MemberRole {
            role_name: "cordon-member".into(),
            external_id: Some("cordon-ext".into()),
            session_policy: None,
        }))
    };
    // A finding without an execution: `cordon isolate`'s capture, an operator's call.
    let aws = as_worker("cli");
    let captured = capture_step(&aws, &aws, &config, &cordon_core::seal::Unsealed, &finding)
        .await
        .unwrap();
    isolate_step(&as_worker("isolate-sg"), &config, &captured)
        .await
        .unwrap();
    let nacl = block_step(
        &as_worker("block-nacl"),
        &config,
        &cordon_core::seal::Unsealed,
        &captured,
    )
    .await
    .unwrap();
    let isolation = member.cordon_group_ids(&member_vpc).await["isolation"].clone();
    assert_eq!(member.eni_groups(&member_eni).await, vec![isolation]);
    assert_eq!(nacl.nacl_entries.len(), 4);
    assert_eq!(
        everything(&home).await,
        home_before,
        "the administrator account is untouched"
    );

    let input = RestoreInput {
        instance_id: member_instance.clone(),
        account_id: Some(MEMBER.into()),
        region: Some(cordon_tests::REGION.into()),
        record: captured.record.clone(),
        nacl_entries: nacl.nacl_entries,
        execution_arn: None,
        approval: None,
        approvals_required: None,
        auto_scaling: None,
        credentials: None,
        evidence: None,
        load_balancers: None,
        trust_unverified_records: false,
    };
    let aws = as_worker("restore");
    let restored = restore_step(&aws, &aws, &aws, &aws, &cordon_core::seal::Unsealed, &input)
        .await
        .unwrap();
    assert_eq!(restored.status, RestoreStatus::Restored);
    assert_eq!(member.eni_groups(&member_eni).await, vec![member_web]);
    assert_eq!(member.acls(&member_vpc).await, member_before);
    assert_eq!(everything(&home).await, home_before);
}
