//! Containment and restore on moto, through the real SDK adapter: the outcomes a security
//! engineer checks (each interface's groups, each network ACL's entries, the record tags).

use cordon_core::capture::{CaptureOutput, CaptureStatus};
use cordon_core::config::{Config, NaclSettings};
use cordon_core::isolate::{IsolationReport, StepStatus};
use cordon_core::nacl::NaclReport;
use cordon_core::restore::{InterfaceOutcome, RestoreReport, RestoreStatus};
use cordon_core::steps::{block_step, capture_step, isolate_step, restore_step, RestoreInput};
use cordon_tests::{finding_for, Moto, World};

struct Contained {
    capture: CaptureOutput,
    isolation: Option<IsolationReport>,
    nacl: Option<NaclReport>,
}

async fn contain_with(moto: &Moto, config: &Config, event: &serde_json::Value) -> Contained {
    // A finding without an execution: `cordon isolate`'s capture, an operator's call.
    let aws = moto.operator_aws();
    let capture = capture_step(&aws, &aws, config, &cordon_core::seal::Unsealed, event)
        .await
        .unwrap();
    if capture.status != CaptureStatus::Captured {
        return Contained {
            capture,
            isolation: None,
            nacl: None,
        };
    }
    let isolation = isolate_step(&moto.worker_aws("isolate-sg"), config, &capture)
        .await
        .unwrap();
    let nacl = block_step(
        &moto.worker_aws("block-nacl"),
        config,
        &cordon_core::seal::Unsealed,
        &capture,
    )
    .await
    .unwrap();
    Contained {
        capture,
        isolation: Some(isolation),
        nacl: Some(nacl),
    }
}

async fn contain(moto: &Moto, instance_id: &str, remote: &str) -> Contained {
    contain_with(
        moto,
        &Config::default(),
        &finding_for(instance_id, 8.0, remote),
    )
    .await
}

async fn restore(moto: &Moto, contained: &Contained) -> RestoreReport {
    restore_with(moto, contained, &cordon_core::seal::Unsealed).await
}

/// Restores with `records` checking the records kept in tags.
async fn restore_with(
    moto: &Moto,
    contained: &Contained,
    records: &impl cordon_core::seal::Seal,
) -> RestoreReport {
    let input = RestoreInput {
        instance_id: contained.capture.instance_id.clone().unwrap(),
        account_id: None,
        region: Some(cordon_tests::REGION.into()),
        record: contained.capture.record.clone(),
        nacl_entries: contained
            .nacl
            .as_ref()
            .map(|n| n.nacl_entries.clone())
            .unwrap_or_default(),
        execution_arn: None,
        approval: None,
        approvals_required: None,
        auto_scaling: None,
        credentials: None,
        evidence: None,
        load_balancers: None,
        trust_unverified_records: false,
    };
    let aws = moto.worker_aws("restore");
    restore_step(&aws, &aws, &aws, &aws, records, &input)
        .await
        .unwrap()
}

/// VPC 10.0.0.0/16 with subnets a (10.0.1.0/24) and b (10.0.2.0/24), each with its own
/// custom ACL (allow 100 both ways), and two application groups.
async fn two_subnet_vpc(world: &World) -> (String, [String; 2], [String; 2]) {
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let a = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let b = world.subnet(&vpc, "10.0.2.0/24", None).await;
    for subnet in [&a, &b] {
        world
            .custom_acl(
                &vpc,
                &[subnet],
                &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
            )
            .await;
    }
    let web = world.security_group(&vpc, "web", 443).await;
    let ssh = world.security_group(&vpc, "ssh", 22).await;
    (vpc, [a, b], [web, ssh])
}

#[tokio::test]
async fn single_eni_isolate_then_restore_gives_back_exactly_the_same_state() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, b], [web, ssh]) = two_subnet_vpc(&world).await;
    let (instance, enis) = world.instance(&[(&a, &[&web, &ssh])], false).await;
    let groups_before = world.eni_groups(&enis[0]).await;
    assert_eq!(groups_before, [web.clone(), ssh.clone()]);
    let acls_before = world.acls(&vpc).await;
    let tags_before = world.instance_tags(&instance).await;
    let ip = world.eni_ipv4(&enis[0]).await;

    let contained = contain(&moto, &instance, "198.51.100.7").await;
    let isolation = contained.isolation.as_ref().unwrap();
    assert_eq!(isolation.status, StepStatus::Done, "{:?}", isolation.errors);
    let cordon = world.cordon_group_ids(&vpc).await;
    assert_eq!(
        world.eni_groups(&enis[0]).await,
        [cordon["isolation"].clone()]
    );
    assert!(world.termination_protection(&instance).await);
    // The remote is denied both ways where the instance lives, the instance in the other subnet.
    let (acl_a, acl_b) = (world.acl_of(&a).await, world.acl_of(&b).await);
    assert_eq!(
        unnumbered(world.denies(&acl_a).await, 100),
        [
            (false, "198.51.100.7/32".into()),
            (true, "198.51.100.7/32".into())
        ]
    );
    assert_eq!(
        unnumbered(world.denies(&acl_b).await, 100),
        [(false, format!("{ip}/32")), (true, format!("{ip}/32"))]
    );
    let tags = world.instance_tags(&instance).await;
    assert!(tags.contains_key("cordon:state:0"));

    let report = restore(&moto, &contained).await;
    assert_eq!(
        report.status,
        RestoreStatus::Restored,
        "{:?}",
        report.errors
    );
    assert_eq!(
        world.eni_groups(&enis[0]).await,
        groups_before,
        "same groups, same order"
    );
    assert_eq!(
        world.acls(&vpc).await,
        acls_before,
        "same entries and tags in every ACL"
    );
    assert_eq!(
        world.instance_tags(&instance).await,
        tags_before,
        "no cordon:* tag left"
    );
    assert!(!world.termination_protection(&instance).await);
}

/// An execution's capture keeps the record on its claim group, made with it in one
/// CreateSecurityGroup (tags at creation): the instance's own tags are left alone, and a
/// break-glass restore with no record at hand finds it there.
#[tokio::test]
async fn an_executions_record_is_on_its_claim_and_break_glass_restores_from_it() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, _], [web, ssh]) = two_subnet_vpc(&world).await;
    let (instance, enis) = world.instance(&[(&a, &[&web, &ssh])], false).await;
    let tags_before = world.instance_tags(&instance).await;
    let input = serde_json::json!({
        "event": finding_for(&instance, 8.0, "198.51.100.7"),
        "execution": "arn:aws:states:us-east-1:123456789012:execution:cordon-quarantine:one",
        "approval_timeout_seconds": "3600",
    });
    // The stack's record key, on moto's KMS: capture seals the record it keeps on the claim,
    // and break glass uses it only because the seal verifies.
    let key = cordon_core::seal::RecordKey {
        kms: cordon_core::kms::AwsKms::new(&moto.sdk_config()),
        key_id: cordon::local::create_stack_key(&moto.sdk_config(), "RecordKey")
            .await
            .unwrap(),
    };
    let aws = moto.worker_aws("capture-state");
    let capture = capture_step(&aws, &aws, &Config::default(), &key, &input)
        .await
        .unwrap();
    assert_eq!(capture.status, CaptureStatus::Captured);
    assert!(capture.tags_written);
    let isolation = isolate_step(&moto.worker_aws("isolate-sg"), &Config::default(), &capture)
        .await
        .unwrap();
    let contained = Contained {
        capture,
        isolation: Some(isolation),
        nacl: None,
    };
    let isolation = world.cordon_group_ids(&vpc).await["isolation"].clone();
    assert_eq!(world.eni_groups(&enis[0]).await, [isolation]);
    assert_eq!(world.instance_tags(&instance).await, tags_before);
    let kept = world.kept_record(&instance).await.unwrap().expect("kept");
    let mut captured = contained.capture.record.clone().unwrap();
    // Group names stay out of tags: they are for the page.
    captured.interfaces[0].group_names.clear();
    assert_eq!(kept, captured, "the claim's record, read back");

    let mut break_glass = contained;
    break_glass.capture.record = None;
    // Without the key nothing kept in tags is used, and nothing changes.
    let refused = restore(&moto, &break_glass).await;
    assert_eq!(refused.status, RestoreStatus::Failed);
    assert_ne!(world.eni_groups(&enis[0]).await, [web.clone(), ssh.clone()]);
    let report = restore_with(&moto, &break_glass, &key).await;
    assert_eq!(
        report.status,
        RestoreStatus::Restored,
        "{:?}",
        report.errors
    );
    assert_eq!(world.eni_groups(&enis[0]).await, [web, ssh]);
    assert!(
        !world.cordon_group_ids(&vpc).await.contains_key("claim"),
        "the claim, and the record with it, is gone"
    );
    assert_eq!(world.kept_record(&instance).await.unwrap(), None);
}

#[tokio::test]
async fn two_enis_in_two_subnets_each_get_back_their_own_groups_never_the_union() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, b], [web, ssh]) = two_subnet_vpc(&world).await;
    let (instance, enis) = world.instance(&[(&a, &[&web]), (&b, &[&ssh])], false).await;
    assert_eq!(world.eni_groups(&enis[0]).await, vec![web.clone()]);
    assert_eq!(world.eni_groups(&enis[1]).await, vec![ssh.clone()]);
    let acls_before = world.acls(&vpc).await;

    let contained = contain(&moto, &instance, "198.51.100.7").await;
    let isolation = contained.isolation.as_ref().unwrap();
    assert_eq!(isolation.enis.len(), 2);
    let isolation_group = world.cordon_group_ids(&vpc).await["isolation"].clone();
    for eni in &enis {
        assert_eq!(world.eni_groups(eni).await, vec![isolation_group.clone()]);
    }
    // Both subnets are the instance's own: the remote is denied in both, and there is no
    // other subnet in which to deny the instance's addresses.
    for subnet in [&a, &b] {
        let denies = world.denies(&world.acl_of(subnet).await).await;
        assert_eq!(denies.len(), 2);
        assert!(denies.iter().all(|(_, _, cidr)| cidr == "198.51.100.7/32"));
    }

    let report = restore(&moto, &contained).await;
    assert_eq!(report.status, RestoreStatus::Restored);
    assert_eq!(world.eni_groups(&enis[0]).await, [web]);
    assert_eq!(world.eni_groups(&enis[1]).await, [ssh]);
    assert_eq!(world.acls(&vpc).await, acls_before);
}

#[tokio::test]
async fn ipv6_addresses_are_denied_as_128s_and_the_conversion_group_opens_ipv6_too() {
    let moto = Moto::start();
    let world = moto.world();
    let vpc = world.vpc("10.1.0.0/16", true).await;
    let block = world.vpc_ipv6_block(&vpc).await;
    let prefix = block.split("::").next().unwrap().to_string();
    let a = world
        .subnet(&vpc, "10.1.1.0/24", Some(&format!("{prefix}::/64")))
        .await;
    let b = world.subnet(&vpc, "10.1.2.0/24", None).await;
    let acl_b = world
        .custom_acl(
            &vpc,
            &[&b],
            &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
        )
        .await;
    let app = world.security_group(&vpc, "app", 8080).await;
    let (instance, enis) = world.instance(&[(&a, &[&app])], true).await;
    let ipv6 = world.eni_ipv6(&enis[0]).await;
    assert_eq!(ipv6.len(), 1, "the test instance needs an IPv6 address");
    let acls_before = world.acls(&vpc).await;
    // The conversion group as the isolation step makes it, read here: the containment deletes
    // it after its swaps.
    let made = cordon_core::isolate::ensure_groups(
        &moto
            .worker_aws("isolate-sg")
            .ec2(Some(cordon_tests::REGION)),
        std::slice::from_ref(&vpc),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let groups = world.groups(&vpc).await;
    let conversion = &groups[&made[&vpc].conversion];
    assert!(
        conversion.matches("::/0").count() >= 2,
        "IPv6 allowed both ways: {conversion}"
    );

    let mut event = finding_for(&instance, 8.0, "198.51.100.7");
    event["service"]["action"]["networkConnectionAction"]["remoteIpDetails"]["ipAddressV6"] =
        "2001:db8:bad::1".into();
    let contained = contain_with(&moto, &Config::default(), &event).await;
    let denies_b = unnumbered(world.denies(&acl_b).await, 100);
    let ipv6_cidr = format!("{}/128", ipv6[0]);
    assert!(
        denies_b.contains(&(false, ipv6_cidr.clone())),
        "{denies_b:?}"
    );
    assert!(denies_b.contains(&(true, ipv6_cidr)), "{denies_b:?}");
    let denies_a = world.denies(&world.acl_of(&a).await).await;
    assert!(
        denies_a
            .iter()
            .any(|(_, _, cidr)| cidr == "2001:db8:bad::1/128"),
        "{denies_a:?}"
    );

    let groups = world.groups(&vpc).await;
    let cordon = world.cordon_group_ids(&vpc).await;
    assert!(!cordon.contains_key("conversion"), "deleted after use");
    let isolation = &groups[&cordon["isolation"]];
    assert!(
        !isolation.contains("0.0.0.0/0") && !isolation.contains("::/0"),
        "no egress at all: {isolation}"
    );

    assert_eq!(
        restore(&moto, &contained).await.status,
        RestoreStatus::Restored
    );
    assert_eq!(world.acls(&vpc).await, acls_before);
    assert_eq!(world.eni_groups(&enis[0]).await, [app]);
}

#[tokio::test]
async fn subnets_sharing_the_default_acl_get_both_kinds_of_deny_on_it() {
    let moto = Moto::start();
    let world = moto.world();
    let vpc = world.vpc("10.2.0.0/16", false).await;
    let a = world.subnet(&vpc, "10.2.1.0/24", None).await;
    let b = world.subnet(&vpc, "10.2.2.0/24", None).await;
    let shared = world.acl_of(&a).await;
    assert_eq!(
        world.acl_of(&b).await,
        shared,
        "both subnets use the VPC's default ACL"
    );
    let app = world.security_group(&vpc, "app", 80).await;
    let (instance, enis) = world.instance(&[(&a, &[&app])], false).await;
    let ip = world.eni_ipv4(&enis[0]).await;
    let before = world.acls(&vpc).await;

    let contained = contain(&moto, &instance, "203.0.113.50").await;
    let denies = world.denies(&shared).await;
    for egress in [false, true] {
        assert!(
            denies
                .iter()
                .any(|(e, _, c)| *e == egress && c == "203.0.113.50/32"),
            "{denies:?}"
        );
        assert!(
            denies
                .iter()
                .any(|(e, _, c)| *e == egress && *c == format!("{ip}/32")),
            "{denies:?}"
        );
    }
    assert!(
        denies.iter().all(|(_, number, _)| *number < 100),
        "below the default allow 100: {denies:?}"
    );
    assert_eq!(
        restore(&moto, &contained).await.status,
        RestoreStatus::Restored
    );
    assert_eq!(world.acls(&vpc).await, before);
}

#[tokio::test]
async fn custom_acls_with_low_allow_rules_get_denies_below_them() {
    let moto = Moto::start();
    let world = moto.world();
    let vpc = world.vpc("10.3.0.0/16", false).await;
    let a = world.subnet(&vpc, "10.3.1.0/24", None).await;
    let b = world.subnet(&vpc, "10.3.2.0/24", None).await;
    // Allow rules at 5 (a bastion range) and 100; deny must land at 1..=4.
    let acl_a = world
        .custom_acl(
            &vpc,
            &[&a],
            &[
                (5, false, "10.3.0.0/16"),
                (5, true, "10.3.0.0/16"),
                (100, false, "0.0.0.0/0"),
                (100, true, "0.0.0.0/0"),
            ],
        )
        .await;
    let acl_b = world
        .custom_acl(
            &vpc,
            &[&b],
            &[(3, false, "0.0.0.0/0"), (3, true, "0.0.0.0/0")],
        )
        .await;
    world
        .acl_entry(
            &acl_b,
            1,
            false,
            aws_sdk_ec2::types::RuleAction::Deny,
            "192.0.2.1/32",
        )
        .await;
    let app = world.security_group(&vpc, "app", 80).await;
    let (instance, enis) = world.instance(&[(&a, &[&app])], false).await;
    let ip = world.eni_ipv4(&enis[0]).await;
    let before = world.acls(&vpc).await;

    let contained = contain(&moto, &instance, "198.51.100.9").await;
    assert_eq!(contained.nacl.as_ref().unwrap().status, StepStatus::Done);
    assert_eq!(
        unnumbered(world.denies(&acl_a).await, 100),
        [
            (false, "198.51.100.9/32".into()),
            (true, "198.51.100.9/32".into())
        ]
    );
    // In b, below allow 3: inbound 1 is taken by someone's deny, so ours is 2; outbound takes
    // 1 or 2.
    let denies_b = world.denies(&acl_b).await;
    assert_eq!(
        denies_b[..2],
        [
            (false, 1, "192.0.2.1/32".into()),
            (false, 2, format!("{ip}/32")),
        ]
    );
    assert_eq!(
        unnumbered(denies_b[2..].to_vec(), 3),
        [(true, format!("{ip}/32"))]
    );
    assert_eq!(
        restore(&moto, &contained).await.status,
        RestoreStatus::Restored
    );
    assert_eq!(
        world.acls(&vpc).await,
        before,
        "their deny at 1 is still there, ours are gone"
    );
}

#[tokio::test]
async fn an_acl_at_its_quota_makes_a_reported_partial_and_the_rest_still_contains() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, b], [web, _]) = two_subnet_vpc(&world).await;
    let acl_b = world.acl_of(&b).await;
    // 20 inbound rules: b's ACL is at AWS's default quota (moto would accept more).
    for n in 0..19 {
        world
            .acl_entry(
                &acl_b,
                200 + n,
                false,
                aws_sdk_ec2::types::RuleAction::Allow,
                &format!("10.9.{n}.0/24"),
            )
            .await;
    }
    let (instance, enis) = world.instance(&[(&a, &[&web])], false).await;
    let ip = world.eni_ipv4(&enis[0]).await;
    let before = world.acls(&vpc).await;

    let contained = contain(&moto, &instance, "198.51.100.7").await;
    let nacl = contained.nacl.as_ref().unwrap();
    assert_eq!(nacl.status, StepStatus::Partial);
    assert_eq!(nacl.errors.len(), 1);
    assert_eq!(nacl.errors[0].error, "Cordon.NaclQuotaExceeded");
    assert!(nacl.errors[0].cause.contains(&acl_b) && nacl.errors[0].cause.contains("inbound"));
    // The security groups and every other deny still went in.
    assert_eq!(
        contained.isolation.as_ref().unwrap().status,
        StepStatus::Done
    );
    assert_eq!(
        world.eni_groups(&enis[0]).await,
        [world.cordon_group_ids(&vpc).await["isolation"].clone()]
    );
    assert_eq!(
        unnumbered(world.denies(&acl_b).await, 100),
        [(true, format!("{ip}/32"))]
    );
    assert_eq!(world.denies(&world.acl_of(&a).await).await.len(), 2);
    assert_eq!(nacl.nacl_entries.len(), 3);

    assert_eq!(
        restore(&moto, &contained).await.status,
        RestoreStatus::Restored
    );
    assert_eq!(world.acls(&vpc).await, before);
}

#[tokio::test]
async fn a_nat_gateway_in_another_subnet_is_cut_off_from_the_instance() {
    let moto = Moto::start();
    let world = moto.world();
    let vpc = world.vpc("10.4.0.0/16", false).await;
    let public = world.subnet(&vpc, "10.4.0.0/24", None).await;
    let private = world.subnet(&vpc, "10.4.1.0/24", None).await;
    let public_acl = world
        .custom_acl(
            &vpc,
            &[&public],
            &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
        )
        .await;
    world
        .custom_acl(
            &vpc,
            &[&private],
            &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
        )
        .await;
    let eip = world
        .ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await
        .unwrap();
    world
        .ec2
        .create_nat_gateway()
        .subnet_id(&public)
        .allocation_id(eip.allocation_id().unwrap())
        .send()
        .await
        .unwrap();
    let app = world.security_group(&vpc, "app", 80).await;
    let (instance, enis) = world.instance(&[(&private, &[&app])], false).await;
    let ip = world.eni_ipv4(&enis[0]).await;

    contain(&moto, &instance, "198.51.100.7").await;
    // Traffic from the instance to the NAT gateway enters the public subnet with the
    // instance as source (inbound rule), replies leave towards it (outbound rule).
    assert_eq!(
        unnumbered(world.denies(&public_acl).await, 100),
        [(false, format!("{ip}/32")), (true, format!("{ip}/32"))]
    );
}

#[tokio::test]
async fn isolating_twice_changes_nothing_and_keeps_the_true_originals() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, _], [web, ssh]) = two_subnet_vpc(&world).await;
    let (instance, enis) = world.instance(&[(&a, &[&web, &ssh])], false).await;
    let first = contain(&moto, &instance, "198.51.100.7").await;
    let acls = world.acls(&vpc).await;
    let tags = world.instance_tags(&instance).await;
    let groups = world.groups(&vpc).await;

    let second = contain(&moto, &instance, "198.51.100.7").await;
    assert_eq!(second.capture.status, CaptureStatus::AlreadyQuarantined);
    assert!(second.capture.reason.contains("already quarantined"));
    // The same record, as the tags keep it: the groups' names were seen at the first
    // capture only (the interface is on Cordon's group now, and the tags keep no names).
    let mut first_record = first.capture.record.clone();
    for interface in first_record
        .iter_mut()
        .flat_map(|r| r.interfaces.iter_mut())
    {
        interface.group_names.clear();
    }
    assert_eq!(
        second.capture.record, first_record,
        "the originals, not the isolation group"
    );
    assert_eq!(
        second.capture.record.as_ref().unwrap().interfaces[0].groups,
        [web.clone(), ssh.clone()]
    );
    assert_eq!(world.acls(&vpc).await, acls);
    assert_eq!(world.instance_tags(&instance).await, tags);
    assert_eq!(
        world.groups(&vpc).await,
        groups,
        "no new group, no rule change"
    );

    // And the steps themselves are idempotent when Step Functions retries them.
    let config = Config::default();
    let again = isolate_step(&moto.worker_aws("isolate-sg"), &config, &first.capture)
        .await
        .unwrap();
    assert_eq!(again.status, StepStatus::Done);
    let nacl = block_step(
        &moto.worker_aws("block-nacl"),
        &config,
        &cordon_core::seal::Unsealed,
        &first.capture,
    )
    .await
    .unwrap();
    assert_eq!(nacl.nacl_entries, first.nacl.as_ref().unwrap().nacl_entries);
    assert_eq!(world.acls(&vpc).await, acls);
    assert_eq!(restore(&moto, &first).await.status, RestoreStatus::Restored);
    assert_eq!(world.eni_groups(&enis[0]).await, [web, ssh]);
}

#[tokio::test]
async fn a_second_instance_in_the_same_vpc_reuses_the_isolation_group() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, b], [web, ssh]) = two_subnet_vpc(&world).await;
    let (first, _) = world.instance(&[(&a, &[&web])], false).await;
    let (second, second_enis) = world.instance(&[(&b, &[&ssh])], false).await;
    contain(&moto, &first, "198.51.100.7").await;
    let cordon = world.cordon_group_ids(&vpc).await;
    assert!(!cordon.contains_key("conversion"), "deleted after use");
    contain(&moto, &second, "198.51.100.8").await;
    // The conversion group made again for the second, and deleted again after its swaps.
    assert_eq!(
        world.cordon_group_ids(&vpc).await,
        cordon,
        "still one isolation group, and no conversion group"
    );
    assert_eq!(
        world.groups(&vpc).await.len(),
        2 + 1 + 1,
        "web, ssh, default and Cordon's isolation group"
    );
    assert_eq!(
        world.eni_groups(&second_enis[0]).await,
        [cordon["isolation"].clone()]
    );
}

#[tokio::test]
async fn non_instance_findings_and_exempt_instances_change_nothing() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, _], [web, _]) = two_subnet_vpc(&world).await;
    let (instance, enis) = world.instance(&[(&a, &[&web])], false).await;
    let before = (
        world.acls(&vpc).await,
        world.groups(&vpc).await,
        world.instance_tags(&instance).await,
    );

    // An IAM finding that carries instanceDetails naming our instance.
    let mut iam = finding_for(&instance, 8.0, "198.51.100.7");
    iam["resource"]["resourceType"] = "AccessKey".into();
    let contained = contain_with(&moto, &Config::default(), &iam).await;
    assert_eq!(contained.capture.status, CaptureStatus::Skipped);
    assert!(contained.capture.reason.contains("AccessKey"));

    world.tag(&instance, "cordon:exempt", "true").await;
    let mut exempting = Config::default();
    exempting.policy.exemptions.tag_key = Some("cordon:exempt".into());
    let exempt = contain_with(
        &moto,
        &exempting,
        &finding_for(&instance, 8.0, "198.51.100.7"),
    )
    .await;
    assert_eq!(exempt.capture.status, CaptureStatus::Skipped);
    assert!(exempt.capture.reason.contains("cordon:exempt"));
    let mut tags = before.2.clone();
    tags.insert("cordon:exempt".into(), "true".into());
    assert_eq!(
        (
            world.acls(&vpc).await,
            world.groups(&vpc).await,
            world.instance_tags(&instance).await
        ),
        (before.0, before.1, tags)
    );
    assert_eq!(world.eni_groups(&enis[0]).await, [web]);
}

#[tokio::test]
async fn restore_reports_drift_and_leaves_what_someone_changed() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, b], [web, ssh]) = two_subnet_vpc(&world).await;
    let (instance, enis) = world.instance(&[(&a, &[&web]), (&b, &[&ssh])], false).await;
    let contained = contain(&moto, &instance, "198.51.100.7").await;
    let isolation = world.cordon_group_ids(&vpc).await["isolation"].clone();
    // An analyst gives the second interface a debugging group during the investigation.
    world.set_eni_groups(&enis[1], &[&isolation, &ssh]).await;

    let report = restore(&moto, &contained).await;
    assert_eq!(report.status, RestoreStatus::Drift);
    assert_eq!(report.enis[0].outcome, InterfaceOutcome::Restored);
    assert_eq!(report.enis[1].outcome, InterfaceOutcome::Drift);
    assert_eq!(world.eni_groups(&enis[0]).await, [web]);
    assert_eq!(world.eni_groups(&enis[1]).await, [isolation, ssh]);
    assert!(report
        .errors
        .iter()
        .any(|e| e.error == "Cordon.Drift" && e.cause.contains(&enis[1])));
    assert!(
        world
            .instance_tags(&instance)
            .await
            .contains_key("cordon:state:0"),
        "the record stays"
    );
    assert!(
        world.termination_protection(&instance).await,
        "protection stays while drift is open"
    );
}

#[tokio::test]
async fn restore_puts_back_termination_protection_that_was_already_on() {
    let moto = Moto::start();
    let world = moto.world();
    let (_, [a, _], [web, _]) = two_subnet_vpc(&world).await;
    let (instance, _) = world.instance(&[(&a, &[&web])], false).await;
    world.set_termination_protection(&instance, true).await;
    let contained = contain(&moto, &instance, "198.51.100.7").await;
    assert!(
        contained
            .capture
            .record
            .as_ref()
            .unwrap()
            .termination_protection
    );
    restore(&moto, &contained).await;
    assert!(
        world.termination_protection(&instance).await,
        "it was on before Cordon: it stays on"
    );
}

#[tokio::test]
async fn a_missing_instance_is_a_typed_error_and_touches_nothing() {
    let moto = Moto::start();
    let event = finding_for("i-0123456789abcdef0", 8.0, "198.51.100.7");
    let error = capture_step(
        &moto.operator_aws(),
        &moto.operator_aws(),
        &Config::default(),
        &cordon_core::seal::Unsealed,
        &event,
    )
    .await
    .unwrap_err();
    assert_eq!(error.error_name(), "Cordon.InstanceNotFound");
    assert!(error.to_string().contains("i-0123456789abcdef0"));
}

#[tokio::test]
async fn a_narrow_band_exhausts_and_is_reported() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, _], [web, _]) = two_subnet_vpc(&world).await;
    let (instance, _) = world.instance(&[(&a, &[&web])], false).await;
    let config = Config {
        nacl: NaclSettings {
            band: cordon_core::config::RuleBand::new(50, 50).unwrap(),
            rule_quota: 20,
            ..NaclSettings::default()
        },
        ..Config::default()
    };
    let mut event = finding_for(&instance, 8.0, "198.51.100.7");
    event["service"]["action"]["networkConnectionAction"]["remoteIpDetails"]["ipAddressV6"] =
        "2001:db8::7".into();
    let contained = contain_with(&moto, &config, &event).await;
    let nacl = contained.nacl.unwrap();
    assert_eq!(nacl.status, StepStatus::Partial);
    assert!(nacl
        .errors
        .iter()
        .all(|e| e.error == "Cordon.NaclBandExhausted"));
    let acl_a = world.acl_of(&a).await;
    let denies = world.denies(&acl_a).await;
    assert_eq!(
        denies.len(),
        2,
        "one number per direction in the band 50..=50: {denies:?}"
    );
    assert!(denies.iter().all(|(_, n, _)| *n == 50));
    let _ = vpc;
}

/// EC2 refusing the isolation swap, through the fault proxy in front of moto: for a while
/// (throttled through all of the SDK's attempts) and for good (an SCP's explicit deny). The
/// interface ends isolated or back on its original groups, never on the conversion group,
/// which allows everything both ways; and the step says so.
#[tokio::test]
async fn a_refused_isolation_swap_leaves_each_interface_isolated_or_as_it_was_never_open() {
    use cordon_core::aws::{AwsContext, EC2_MAX_ATTEMPTS};
    use cordon_core::isolate::{ensure_groups, InterfaceOutcome as Isolation};
    use cordon_tests::faults::{FaultPlan, FaultProxy, Refusal};

    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, b], [web, ssh]) = two_subnet_vpc(&world).await;
    let (first, first_enis) = world.instance(&[(&a, &[&web, &ssh])], false).await;
    let (second, second_enis) = world.instance(&[(&b, &[&web])], false).await;
    // Cordon's groups already exist in the VPC (an earlier quarantine), so the refusal can
    // name the isolation group.
    let groups = ensure_groups(
        &moto.cordon_ec2(),
        std::slice::from_ref(&vpc),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let isolation = groups[&vpc].isolation.clone();
    let proxy = FaultProxy::start(&moto.endpoint, FaultPlan::none()).await;
    let faulty = AwsContext::from_sdk_config(cordon::local::emulator_config(&proxy.endpoint));
    // Capture without an execution is `cordon isolate`'s, an operator's call.
    let (capturing, aws) = (
        faulty.clone().acting_as("cli"),
        faulty.acting_as("isolate-sg"),
    );
    let config = Config::default();

    // For a while: every attempt the SDK makes, of every try of the isolation swap, is
    // throttled. The step fails (the state machine retries it) with each interface's truth,
    // and the interface is as it was.
    let captured = capture_step(
        &capturing,
        &capturing,
        &config,
        &cordon_core::seal::Unsealed,
        &finding_for(&first, 8.0, "198.51.100.7"),
    )
    .await
    .unwrap();
    proxy.refuse(Refusal::throttled(
        "ModifyNetworkInterfaceAttribute",
        &isolation,
        EC2_MAX_ATTEMPTS * cordon_core::isolate::ISOLATION_SWAP_TRIES,
    ));
    let error = isolate_step(&aws, &config, &captured).await.unwrap_err();
    assert_eq!(error.error_name(), "Cordon.Throttled", "{error}");
    assert!(
        error
            .to_string()
            .contains("put back on its original groups"),
        "{error}"
    );
    assert_eq!(
        world.eni_groups(&first_enis[0]).await,
        [web.clone(), ssh.clone()]
    );
    // The retry converges.
    let report = isolate_step(&aws, &config, &captured).await.unwrap();
    assert_eq!(report.enis[0].outcome, Isolation::Isolated);
    assert_eq!(
        world.eni_groups(&first_enis[0]).await,
        std::slice::from_ref(&isolation)
    );

    // For good: reported by name, the interface back on its own group, not retried.
    let captured = capture_step(
        &capturing,
        &capturing,
        &config,
        &cordon_core::seal::Unsealed,
        &finding_for(&second, 8.0, "198.51.100.7"),
    )
    .await
    .unwrap();
    proxy.refuse(Refusal::by_scp(
        "ModifyNetworkInterfaceAttribute",
        &isolation,
    ));
    let report = isolate_step(&aws, &config, &captured).await.unwrap();
    assert_eq!(report.status, StepStatus::Partial);
    assert_eq!(report.enis[0].outcome, Isolation::RolledBack);
    assert_eq!(report.enis[0].eni_id, second_enis[0]);
    assert_eq!(
        report.enis[0].cause.as_ref().unwrap().error,
        "Cordon.AccessDenied"
    );
    assert_eq!(
        world.eni_groups(&second_enis[0]).await,
        std::slice::from_ref(&web)
    );
    // A capture of the first instance now sees it quarantined.
    let again = capture_step(
        &capturing,
        &capturing,
        &config,
        &cordon_core::seal::Unsealed,
        &finding_for(&first, 8.0, "198.51.100.7"),
    )
    .await
    .unwrap();
    assert_eq!(again.status, CaptureStatus::AlreadyQuarantined);
    let refused = proxy
        .calls()
        .iter()
        .filter(|c| c.fault == "refused")
        .count();
    cordon_tests::write_reliability_row(
        "7-isolation-swap-refused",
        &serde_json::json!({
            "order": 7,
            "scenario": format!("the isolation swap refused by EC2: throttled through all {} tries of {EC2_MAX_ATTEMPTS} SDK attempts, then an SCP's UnauthorizedOperation", cordon_core::isolate::ISOLATION_SWAP_TRIES),
            "runs": 2,
            "faults_injected": format!("{refused} ModifyNetworkInterfaceAttribute calls to the isolation group refused"),
            "contained": 1,
            "restored_exactly": 2,
            "lost_originals": 0,
            "panics": 0,
            "notes": "0 interfaces left on the conversion group: throttled, back on its originals and the step retried (then isolated); denied, back on its originals and named with the cause"
        }),
    );
}

/// The ACL measure yields to isolation when EC2 throttles the account: through the real SDK, a
/// throttled CreateNetworkAclEntry is made once and ends the step's attempt (the state machine
/// retries it, with its own longer waits), where isolation's clients try 5 times; a fault that
/// says nothing of the buckets (EC2's InternalError) is still retried at once. The retry then
/// finishes with the numbers the first attempt recorded, writing no record again.
#[tokio::test]
async fn the_acl_measure_makes_a_throttled_call_once_and_retries_other_faults() {
    use cordon_core::aws::AwsContext;
    use cordon_tests::faults::{FaultPlan, FaultProxy, Refusal};

    let moto = Moto::start();
    let world = moto.world();
    let (_, [a, _], [web, _]) = two_subnet_vpc(&world).await;
    let (instance, _) = world.instance(&[(&a, &[&web])], false).await;
    let proxy = FaultProxy::start(&moto.endpoint, FaultPlan::none()).await;
    // Capture without an execution is `cordon isolate`'s, an operator's call.
    let urgent = AwsContext::from_sdk_config(cordon::local::emulator_config(&proxy.endpoint))
        .acting_as("cli");
    let deferring = urgent.clone().acting_as("block-nacl").deferring();
    let config = Config::default();
    let captured = capture_step(
        &urgent,
        &urgent,
        &config,
        &cordon_core::seal::Unsealed,
        &finding_for(&instance, 8.0, "198.51.100.7"),
    )
    .await
    .unwrap();
    let acl_a = world.acl_of(&a).await;
    let creates_in_a = || {
        proxy
            .calls()
            .iter()
            .filter(|c| c.action == "CreateNetworkAclEntry")
            .filter(|c| c.field("NetworkAclId") == Some(acl_a.as_str()))
            .count()
    };

    proxy.refuse(Refusal::throttled("CreateNetworkAclEntry", &acl_a, 1));
    let error = block_step(&deferring, &config, &cordon_core::seal::Unsealed, &captured)
        .await
        .unwrap_err();
    assert_eq!(error.error_name(), "Cordon.Throttled", "{error}");
    assert_eq!(
        creates_in_a(),
        1,
        "one call, no SDK retry: {:?}",
        proxy.trace()
    );
    assert!(world.denies(&acl_a).await.is_empty());

    // Throttling over; EC2 fails one call with an error of its own: retried in the SDK.
    proxy.refuse(Refusal {
        action: "CreateNetworkAclEntry",
        value: acl_a.clone(),
        status: "500 Internal Server Error",
        code: "InternalError",
        times: Some(1),
    });
    proxy.clear_calls();
    let report = block_step(&deferring, &config, &cordon_core::seal::Unsealed, &captured)
        .await
        .unwrap();
    assert_eq!(report.status, StepStatus::Done, "{:?}", report.errors);
    assert_eq!(world.denies(&acl_a).await.len(), 2);
    assert_eq!(
        creates_in_a(),
        3,
        "the refused call, its retry, the other direction"
    );
    let acl_a_tagged = proxy
        .calls()
        .iter()
        .any(|c| c.action == "CreateTags" && c.field("ResourceId.1") == Some(acl_a.as_str()));
    assert!(
        !acl_a_tagged,
        "acl-a's record is the first attempt's: {:?}",
        proxy.trace()
    );
}

/// Isolation in a throttled account, through the real SDK: the step's clients yield, so the
/// conversion swap is made once and, refused, is not undone (it was not made); the isolation
/// swap presses on through the SDK's retries although the step yields.
#[tokio::test]
async fn isolation_yields_its_conversion_swap_and_presses_its_isolation_swap() {
    use cordon_core::aws::AwsContext;
    use cordon_core::isolate::{ensure_groups, InterfaceOutcome as Isolation};
    use cordon_tests::faults::{FaultPlan, FaultProxy, Refusal};

    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, _], [web, _]) = two_subnet_vpc(&world).await;
    let (instance, enis) = world.instance(&[(&a, &[&web])], false).await;
    let groups = ensure_groups(
        &moto.cordon_ec2(),
        std::slice::from_ref(&vpc),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let (conversion, isolation) = (
        groups[&vpc].conversion.clone(),
        groups[&vpc].isolation.clone(),
    );
    let proxy = FaultProxy::start(&moto.endpoint, FaultPlan::none()).await;
    // Capture without an execution is `cordon isolate`'s, an operator's call.
    let urgent = AwsContext::from_sdk_config(cordon::local::emulator_config(&proxy.endpoint))
        .acting_as("cli");
    let yielding = urgent.clone().acting_as("isolate-sg").deferring();
    let config = Config::default();
    let captured = capture_step(
        &urgent,
        &urgent,
        &config,
        &cordon_core::seal::Unsealed,
        &finding_for(&instance, 8.0, "198.51.100.7"),
    )
    .await
    .unwrap();
    let swaps_to = |group: &str| {
        proxy
            .calls()
            .iter()
            .filter(|c| c.action == "ModifyNetworkInterfaceAttribute")
            .filter(|c| c.field("SecurityGroupId.1") == Some(group))
            .count()
    };

    // An answer of EC2's that does not say the swap was not made: undone, in one attempt.
    proxy.refuse(Refusal {
        action: "ModifyNetworkInterfaceAttribute",
        value: conversion.clone(),
        status: "503 Service Unavailable",
        code: "ServiceUnavailable",
        times: Some(1),
    });
    proxy.clear_calls();
    let error = isolate_step(&yielding, &config, &captured)
        .await
        .unwrap_err();
    assert_eq!(error.error_name(), "Cordon.Unavailable", "{error}");
    assert!(
        error
            .to_string()
            .contains("put back on its original groups"),
        "{error}"
    );
    assert_eq!(swaps_to(&conversion), 1, "{:?}", proxy.trace());
    assert_eq!(swaps_to(&web), 1, "the way back: {:?}", proxy.trace());
    assert_eq!(world.eni_groups(&enis[0]).await, std::slice::from_ref(&web));

    // Throttled: not made, so not undone.
    proxy.refuse(Refusal::throttled(
        "ModifyNetworkInterfaceAttribute",
        &conversion,
        1,
    ));
    proxy.clear_calls();
    let error = isolate_step(&yielding, &config, &captured)
        .await
        .unwrap_err();
    assert_eq!(error.error_name(), "Cordon.Throttled", "{error}");
    assert!(error.to_string().contains("NOT isolated yet"), "{error}");
    assert_eq!(swaps_to(&conversion), 1, "{:?}", proxy.trace());
    assert_eq!(swaps_to(&web), 0, "nothing to undo: {:?}", proxy.trace());
    assert_eq!(world.eni_groups(&enis[0]).await, std::slice::from_ref(&web));

    // The retried step: the isolation swap refused three times is pressed through.
    proxy.refuse(Refusal::throttled(
        "ModifyNetworkInterfaceAttribute",
        &isolation,
        3,
    ));
    proxy.clear_calls();
    let report = isolate_step(&yielding, &config, &captured).await.unwrap();
    assert_eq!(report.enis[0].outcome, Isolation::Isolated, "{report:?}");
    assert_eq!(
        world.eni_groups(&enis[0]).await,
        std::slice::from_ref(&isolation)
    );
    assert_eq!(swaps_to(&isolation), 4, "{:?}", proxy.trace());
    assert_eq!(swaps_to(&web), 0, "never back: {:?}", proxy.trace());
}

/// The forensic host in subnet b, reached through the isolation group: b's ACL gets no deny
/// of the instance's address (it would cut the forensic host off), the other ACL still denies
/// the remote, and the report says which ACL was left open and for what.
#[tokio::test]
async fn the_forensic_subnet_keeps_its_path_through_the_acls() {
    let moto = Moto::start();
    let world = moto.world();
    let (_vpc, [a, b], [web, _]) = two_subnet_vpc(&world).await;
    let (instance, enis) = world.instance(&[(&a, &[&web])], false).await;
    let ip = world.eni_ipv4(&enis[0]).await;
    let mut config = Config::default();
    config.forensic_access = Some(cordon_core::config::ForensicSource::Cidr(
        "10.0.2.0/25".into(),
    ));
    let contained =
        contain_with(&moto, &config, &finding_for(&instance, 8.0, "203.0.113.50")).await;
    let nacl = contained.nacl.as_ref().unwrap();
    assert_eq!(nacl.status, StepStatus::Done, "{:?}", nacl.errors);

    let acl_b = world.acl_of(&b).await;
    let denies_b = world.denies(&acl_b).await;
    assert!(
        !denies_b
            .iter()
            .any(|(_, _, cidr)| *cidr == format!("{ip}/32")),
        "the forensic subnet's ACL must not deny the instance: {denies_b:?}"
    );
    let denies_a = world.denies(&world.acl_of(&a).await).await;
    assert_eq!(
        denies_a
            .iter()
            .filter(|(_, _, c)| c == "203.0.113.50/32")
            .count(),
        2,
        "{denies_a:?}"
    );
    assert_eq!(nacl.open_for_forensics.len(), 1);
    assert_eq!(nacl.open_for_forensics[0].acl_id, acl_b);
    assert_eq!(nacl.open_for_forensics[0].forensic_subnets, vec![b.clone()]);
    // The isolation group is what admits the forensic host; the interface is on it.
    let isolation = contained.isolation.as_ref().unwrap();
    assert_eq!(
        world.eni_groups(&enis[0]).await,
        isolation.enis[0].groups_now
    );
    let isolation_group = &isolation.groups.values().next().unwrap().isolation;
    assert_eq!(
        &isolation.enis[0].groups_now,
        std::slice::from_ref(isolation_group)
    );
    assert_eq!(
        restore(&moto, &contained).await.status,
        RestoreStatus::Restored
    );
}

/// Someone who may change Cordon's groups adds an egress rule to a managed prefix list (a
/// list of CIDRs anyone with the right can fill) to the isolation group. The next containment
/// in the VPC revokes it, and until then the instance on it is no evidence of a quarantine.
/// Before, Cordon read no prefix-list rule at all, so this one was never revoked.
#[tokio::test]
async fn an_egress_rule_to_a_prefix_list_on_the_isolation_group_is_revoked() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, _], [web, _]) = two_subnet_vpc(&world).await;
    let (instance, _) = world.instance(&[(&a, &[&web])], false).await;
    let contained = contain(&moto, &instance, "203.0.113.50").await;
    let group = contained.isolation.as_ref().unwrap().groups[&vpc]
        .isolation
        .clone();
    let list = world
        .ec2
        .create_managed_prefix_list()
        .prefix_list_name("anywhere")
        .max_entries(5)
        .address_family("IPv4")
        .entries(
            aws_sdk_ec2::types::AddPrefixListEntry::builder()
                .cidr("0.0.0.0/0")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .prefix_list()
        .unwrap()
        .prefix_list_id()
        .unwrap()
        .to_string();
    world
        .ec2
        .authorize_security_group_egress()
        .group_id(&group)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("-1")
                .prefix_list_ids(
                    aws_sdk_ec2::types::PrefixListId::builder()
                        .prefix_list_id(&list)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let lists = |ec2: aws_sdk_ec2::Client, group: String| async move {
        let described = ec2
            .describe_security_groups()
            .group_ids(group)
            .send()
            .await
            .unwrap();
        described.security_groups()[0]
            .ip_permissions_egress()
            .iter()
            .flat_map(|p| p.prefix_list_ids())
            .filter_map(|l| l.prefix_list_id())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        lists(world.ec2.clone(), group.clone()).await,
        std::slice::from_ref(&list)
    );

    // Another finding of the same instance: not taken for a quarantine, contained again.
    let again = contain(&moto, &instance, "203.0.113.51").await;
    assert_eq!(
        again.capture.status,
        CaptureStatus::Captured,
        "{}",
        again.capture.reason
    );
    assert!(lists(world.ec2.clone(), group).await.is_empty());
}

/// `SessionManagerWhileIsolated`: the isolated instance reaches its VPC's Session Manager
/// endpoints on 443 and nothing else, and the ACL of the endpoints' subnet keeps its path;
/// without it, neither. moto's endpoint interfaces get random 10.x addresses outside their
/// subnet, which changes nothing here: the rules name the addresses EC2 gives.
#[tokio::test]
async fn session_manager_while_isolated_reaches_only_the_endpoints() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, b], [web, _]) = two_subnet_vpc(&world).await;
    let (ssm, mut addresses) = world.interface_endpoint(&vpc, "ssm", &b).await;
    let (messages, more) = world.interface_endpoint(&vpc, "ssmmessages", &b).await;
    addresses.extend(more);
    let (instance, enis) = world.instance(&[(&a, &[&web])], false).await;
    let ip = world.eni_ipv4(&enis[0]).await;
    let config = Config {
        session_manager: true,
        ..Config::default()
    };
    let contained =
        contain_with(&moto, &config, &finding_for(&instance, 8.0, "203.0.113.50")).await;
    let isolation = contained.isolation.as_ref().unwrap();
    assert_eq!(isolation.status, StepStatus::Done, "{:?}", isolation.errors);
    let group = isolation.groups[&vpc].isolation.clone();
    assert_eq!(
        world.eni_groups(&enis[0]).await,
        std::slice::from_ref(&group)
    );
    let mut expected: Vec<String> = addresses
        .iter()
        .map(|address| format!("tcp 443-443 {address}/32"))
        .collect();
    expected.sort();
    assert_eq!(world.egress_rules(&group).await, expected);
    assert!(
        isolation
            .notes
            .iter()
            .any(|n| n.contains(&ssm) && n.contains(&messages)),
        "{:?}",
        isolation.notes
    );
    let nacl = contained.nacl.as_ref().unwrap();
    assert_eq!(nacl.status, StepStatus::Done, "{:?}", nacl.errors);
    let denies_b = world.denies(&world.acl_of(&b).await).await;
    assert!(
        !denies_b
            .iter()
            .any(|(_, _, cidr)| *cidr == format!("{ip}/32")),
        "the endpoints' ACL must not deny the instance: {denies_b:?}"
    );
    assert_eq!(nacl.open_for_sessions.len(), 1);
    assert_eq!(
        nacl.open_for_sessions[0].endpoint_subnets,
        std::slice::from_ref(&b)
    );
    assert_eq!(
        restore(&moto, &contained).await.status,
        RestoreStatus::Restored
    );

    // Off, in another VPC of the same shape: no egress at all, and the endpoints' ACL denies
    // the instance like every other.
    let other = world.vpc("10.1.0.0/16", false).await;
    let c = world.subnet(&other, "10.1.1.0/24", None).await;
    let d = world.subnet(&other, "10.1.2.0/24", None).await;
    for subnet in [&c, &d] {
        world
            .custom_acl(
                &other,
                &[subnet],
                &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
            )
            .await;
    }
    world.interface_endpoint(&other, "ssm", &d).await;
    let app = world.security_group(&other, "app", 443).await;
    let (closed, closed_enis) = world.instance(&[(&c, &[&app])], false).await;
    let closed_ip = world.eni_ipv4(&closed_enis[0]).await;
    let contained = contain_with(
        &moto,
        &Config::default(),
        &finding_for(&closed, 8.0, "203.0.113.50"),
    )
    .await;
    let group = contained.isolation.as_ref().unwrap().groups[&other]
        .isolation
        .clone();
    assert!(world.egress_rules(&group).await.is_empty());
    let denies_d = world.denies(&world.acl_of(&d).await).await;
    assert_eq!(
        denies_d
            .iter()
            .filter(|(_, _, cidr)| *cidr == format!("{closed_ip}/32"))
            .count(),
        2,
        "{denies_d:?}"
    );
}

/// A finding whose remote addresses an attacker on the instance chose: inside the VPC, in
/// private space, the forensic host, a protected CIDR, an IPv4-mapped IPv6 address of the VPC.
/// None is denied on any ACL; each is reported with its reason.
#[tokio::test]
async fn remote_addresses_aimed_at_the_vpc_are_never_denied_on_moto() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, [a, _], [web, _]) = two_subnet_vpc(&world).await;
    let (instance, _) = world.instance(&[(&a, &[&web])], false).await;
    let acls_before = world.acls(&vpc).await;
    let mut config = Config::default();
    config.forensic_access = Some(cordon_core::config::ForensicSource::Cidr(
        "203.0.113.0/28".into(),
    ));
    config.nacl.protected_cidrs = vec!["192.0.2.53/32".into()];
    let mut event = finding_for(&instance, 8.0, "10.0.2.10");
    // More remote addresses, as a port probe names them.
    let probes: Vec<serde_json::Value> = [
        ("ipAddressV4", "172.16.5.5"),
        ("ipAddressV4", "203.0.113.4"),
        ("ipAddressV4", "192.0.2.53"),
        ("ipAddressV6", "::ffff:10.0.1.1"),
    ]
    .iter()
    .map(|(field, address)| serde_json::json!({"remoteIpDetails": {*field: address}}))
    .collect();
    event["service"]["action"]["portProbeAction"] = serde_json::json!({"portProbeDetails": probes});
    let contained = contain_with(&moto, &config, &event).await;
    let nacl = contained.nacl.unwrap();
    assert_eq!(
        contained.capture.finding.unwrap().remote_addresses.len(),
        5,
        "the finding's five remote addresses are read"
    );
    let reasons: Vec<(&str, &str)> = nacl
        .remote_not_denied
        .iter()
        .map(|n| (n.address.as_str(), n.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    for (address, reason) in [
        ("10.0.2.10", "VPC's own block 10.0.0.0/16"),
        ("172.16.5.5", "RFC 1918"),
        ("203.0.113.4", "protected CIDR 203.0.113.0/28"),
        ("192.0.2.53", "protected CIDR 192.0.2.53/32"),
        ("::ffff:10.0.1.1 (IPv4 10.0.1.1)", "VPC's own block"),
    ] {
        assert!(
            reasons
                .iter()
                .any(|(a, r)| *a == address && r.contains(reason)),
            "{address}: {reasons:?}"
        );
    }
    // Only the instance's own address is denied, and only on the other subnet's ACL: the
    // instance's own subnet's ACL is exactly as it was.
    let acl_a = world.acl_of(&a).await;
    assert!(
        nacl.nacl_entries.iter().all(|e| e.acl_id != acl_a),
        "{:?}",
        nacl.nacl_entries
    );
    let acls_after = world.acls(&vpc).await;
    assert_eq!(acls_after[&acl_a].0, acls_before[&acl_a].0);
    cordon_tests::write_reliability_row(
        "8-attacker-aimed-remotes",
        &serde_json::json!({
            "order": 8,
            "scenario": "a finding whose remote addresses the attacker aimed: the VPC's own, private (RFC 1918), the forensic CIDR, a protected CIDR, IPv4-mapped IPv6 of the VPC",
            "runs": 1,
            "faults_injected": "5 hostile remote addresses",
            "contained": 1,
            "restored_exactly": 1,
            "lost_originals": 0,
            "panics": 0,
            "notes": format!("0 of 5 denied on any ACL, each reported with its reason; the instance's own subnet's ACL unchanged ({} entries, all its own address on the other subnet)", nacl.nacl_entries.len())
        }),
    );
}

/// The denies (direction, CIDR) without their rule numbers, which each run picks from the free
/// numbers of the band (so that executions writing into one ACL at once do not collide);
/// checks that each number lies in the band and below the ACL's lowest allow rule, `allow`.
fn unnumbered(denies: Vec<(bool, i32, String)>, allow: i32) -> Vec<(bool, String)> {
    for (_, number, cidr) in &denies {
        assert!((1..allow).contains(number), "{cidr} at {number}");
    }
    denies
        .into_iter()
        .map(|(egress, _, cidr)| (egress, cidr))
        .collect()
}
