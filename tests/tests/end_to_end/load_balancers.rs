//! The load-balancer measure on moto, through the real state machine: an instance registered
//! in two target groups of its own is taken out of both (its ports recorded on each group)
//! while a sibling stays, and after approval it is back in both on exactly its ports; a tag
//! planted on another group before the finding puts it nowhere new.

use std::sync::Arc;

use cordon::runner::Runner;
use cordon_core::config::Config;
use cordon_tests::{finding_for, until_decision, AwaitingDecision, Moto};
use serde_json::json;

fn event(instance: &str) -> serde_json::Value {
    json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "detail": finding_for(instance, 8.0, "198.51.100.7")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_target_groups_are_left_while_isolated_and_joined_again_after() {
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
    let (instance, _) = world.instance(&[(&subnet, &[&web])], false).await;
    let (sibling, _) = world.instance(&[(&subnet, &[&web])], false).await;
    let app = world.target_group(&vpc, "app", 80).await;
    let admin = world.target_group(&vpc, "admin", 9000).await;
    // One port per group: moto keeps one registration per instance (AWS takes several ports,
    // which the port's fake covers).
    world.register_target(&app, &instance, 8080).await;
    world.register_target(&app, &sibling, 80).await;
    world.register_target(&admin, &instance, 9000).await;
    let before = (world.targets(&app).await, world.targets(&admin).await);

    let AwaitingDecision {
        arn,
        follow,
        approve,
        ..
    } = until_decision(&runner, &event(&instance)).await;

    // Out of both, the sibling still serving.
    assert_eq!(world.targets(&app).await, vec![(sibling.clone(), 80)]);
    assert!(world.targets(&admin).await.is_empty());
    let email = runner.messages_of(&arn).await.unwrap();
    assert!(
        email
            .iter()
            .any(|(_, body)| body.contains("out of target group app (ports 8080)")),
        "{email:?}"
    );

    runner.decide_as_a_person(&approve).await.unwrap();
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    assert_eq!(
        (world.targets(&app).await, world.targets(&admin).await),
        before
    );
    let restored = runner.messages_of(&arn).await.unwrap();
    assert!(
        restored
            .iter()
            .any(|(_, body)| body.contains("Load balancers: back in")),
        "{restored:?}"
    );
    assert_eq!(
        report.output["restore"]["load_balancers"]["registered"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_planted_on_another_group_before_the_finding_registers_the_instance_nowhere_new() {
    // Whoever may tag target groups (no SCP applied) names the instance on the payment
    // service's group before GuardDuty reports it: if the step took that tag for its own
    // earlier record, the approved restore would put the compromised-then-released instance
    // behind the payment service's load balancer.
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
    let (instance, _) = world.instance(&[(&subnet, &[&web])], false).await;
    let app = world.target_group(&vpc, "app", 80).await;
    let payments = world.target_group(&vpc, "payments", 443).await;
    world.register_target(&app, &instance, 8080).await;
    let planted = (format!("cordon:{instance}"), "443".to_string());
    world
        .tag_target_group(&payments, &planted.0, &planted.1)
        .await;

    let AwaitingDecision {
        arn,
        follow,
        approve,
        ..
    } = until_decision(&runner, &event(&instance)).await;
    assert!(world.targets(&app).await.is_empty());
    // The group it was in holds Cordon's sealed record; the planted one is as it was.
    let (_, recorded) = world
        .target_group_tags(&app)
        .await
        .into_iter()
        .find(|(key, _)| *key == planted.0)
        .expect("the record on app");
    assert!(
        recorded.starts_with("8080/") && recorded.contains("/m1:"),
        "{recorded}"
    );
    assert_eq!(
        world.target_group_tags(&payments).await,
        vec![planted.clone()]
    );
    let email = runner.messages_of(&arn).await.unwrap();
    assert!(
        email.iter().any(|(_, body)| body.contains("payments's")),
        "the email names the tag that was not taken: {email:?}"
    );

    runner.decide_as_a_person(&approve).await.unwrap();
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    assert_eq!(world.targets(&app).await, vec![(instance.clone(), 8080)]);
    assert!(
        world.targets(&payments).await.is_empty(),
        "the planted tag put the instance behind another load balancer"
    );
    assert_eq!(world.target_group_tags(&payments).await, vec![planted]);
}
