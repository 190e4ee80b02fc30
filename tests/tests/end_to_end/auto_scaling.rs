//! The Auto Scaling measure on moto, through the real state machine: an instance serving in
//! an Auto Scaling group is put in standby while it is isolated (the group keeps its capacity
//! with a replacement and can neither replace nor terminate it), a second finding meanwhile
//! changes nothing, and after approval it serves again with the group's desired capacity as it
//! was and Cordon's record gone.

use std::sync::Arc;

use cordon::runner::{DecisionMode, Runner};
use cordon_core::config::Config;
use cordon_tests::{finding_for, until_decision, AwaitingDecision, Moto};
use serde_json::json;

fn event(instance: &str) -> serde_json::Value {
    json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "detail": finding_for(instance, 8.0, "198.51.100.7")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_in_a_group_waits_in_standby_and_serves_again_after_approval() {
    let moto = Moto::start();
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    world.auto_scaling_group("web", &subnet, &instance).await;
    let before = world.group_state("web").await;
    assert_eq!(before.desired, 2);
    assert_eq!(
        before.instances[&instance],
        ("InService".to_string(), false)
    );

    let AwaitingDecision {
        arn,
        follow,
        approve,
        ..
    } = until_decision(&runner, &event(&instance)).await;

    // Isolated and in standby: out of service, the group serving with a replacement, its
    // desired capacity kept; the record on the instance.
    let during = world.group_state("web").await;
    assert_eq!(during.instances[&instance], ("Standby".to_string(), false));
    assert_eq!(during.desired, 2);
    assert_eq!(during.serving(), 2, "{during:?}");
    assert_ne!(world.eni_groups(&enis[0]).await, vec![web.clone()]);
    let tags = world.instance_tags(&instance).await;
    assert!(tags.contains_key("cordon:asg:0"), "{tags:?}");
    let email = runner.messages_of(&arn).await.unwrap();
    assert!(
        email
            .iter()
            .any(|(_, body)| body.contains("Auto Scaling group web: Standby (was InService)")),
        "{email:?}"
    );

    // A second finding while it is isolated changes nothing.
    let again = runner
        .run(&event(&instance), DecisionMode::Wait, 600)
        .await
        .unwrap();
    assert_eq!(again.outcome, "already_quarantined", "{:?}", again.states);
    assert_eq!(world.group_state("web").await, during);

    runner.decide_as_a_person(&approve).await.unwrap();
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    assert_eq!(
        report.output["containment"]["auto_scaling"]["lifecycle_state"],
        "Standby"
    );
    assert_eq!(report.output["restore"]["auto_scaling"]["desired"], 2);

    // Serving again, unprotected, the desired capacity as it was, as many serving: the group
    // retired one instance, never the returning one. The record is gone.
    let after = world.group_state("web").await;
    assert_eq!(after.instances[&instance], ("InService".to_string(), false));
    assert_eq!(after.desired, before.desired);
    assert_eq!(after.serving(), before.serving(), "{after:?}");
    assert_eq!(world.eni_groups(&enis[0]).await, vec![web]);
    let tags = world.instance_tags(&instance).await;
    assert!(
        !tags.keys().any(|k| k.starts_with("cordon:")),
        "Cordon's tags remain: {tags:?}"
    );
    let messages = runner.messages_of(&arn).await.unwrap();
    let (_, restored) = messages
        .iter()
        .find(|(subject, _)| subject.contains("restored"))
        .expect("a restored email");
    assert!(
        restored.contains("Auto Scaling group web: InService, desired capacity 2"),
        "{restored}"
    );
}
