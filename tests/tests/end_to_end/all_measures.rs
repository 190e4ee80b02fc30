//! Every measure on one instance, on moto through the state machine: an instance serving in an
//! Auto Scaling group, registered in a target group of its own, with an instance profile and
//! two volumes, is contained by all of them at once and given back exactly after approval
//! (the group's capacity and lifecycle states, the target group's targets, the role's tags and
//! policies, the volumes' settings); the evidence snapshots remain.

use std::sync::Arc;

use cordon::runner::Runner;
use cordon_core::config::Config;
use cordon_tests::{finding_for, until_decision, AwaitingDecision, Moto};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_measure_contains_one_instance_and_all_are_given_back_exactly() {
    let moto = Moto::start();
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    world.deploy_credentials_deny().await;
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    world.auto_scaling_group("web", &subnet, &instance).await;
    let admin = world.target_group(&vpc, "admin", 9000).await;
    world.register_target(&admin, &instance, 9000).await;
    world.instance_role("web").await;
    world.give_profile(&instance, "web").await;
    world.attach_volume(&instance, "/dev/sdf").await;
    let before = (
        world.group_state("web").await,
        world.targets(&admin).await,
        world.role_state("web").await,
        world.volumes(&instance).await,
    );

    let event = json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "detail": finding_for(&instance, 8.0, "198.51.100.7")});
    let AwaitingDecision {
        arn: _,
        follow,
        approve,
        ..
    } = until_decision(&runner, &event).await;

    // Contained by every measure at once.
    assert_ne!(world.eni_groups(&enis[0]).await, vec![web.clone()]);
    assert_eq!(
        world.group_state("web").await.instances[&instance].0,
        "Standby"
    );
    assert!(world.targets(&admin).await.is_empty());
    let role = world.role_state("web").await;
    assert!(role
        .tags
        .keys()
        .any(|k| k.starts_with("cordon-quarantine-")));
    assert_eq!(world.evidence_of(&instance).await.len(), 2);

    runner.decide_as_a_person(&approve).await.unwrap();
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    for measure in cordon_core::measures::MEASURES {
        assert_ne!(
            report.output["containment"][measure.id]["status"], "failed",
            "{}: {}",
            measure.id, report.output["containment"][measure.id]
        );
    }

    // Everything as it was; the evidence remains.
    let after = (
        world.group_state("web").await,
        world.targets(&admin).await,
        world.role_state("web").await,
        world.volumes(&instance).await,
    );
    assert_eq!(after.0.desired, before.0.desired);
    assert_eq!(after.0.instances[&instance], before.0.instances[&instance]);
    assert_eq!(after.0.serving(), before.0.serving());
    assert_eq!(
        (&after.1, &after.2, &after.3),
        (&before.1, &before.2, &before.3)
    );
    assert_eq!(world.eni_groups(&enis[0]).await, vec![web]);
    assert_eq!(world.evidence_of(&instance).await.len(), 2);
}
