//! The credentials measure on moto, through the real state machine: an instance whose role it
//! shares with another is cut (Cordon's deny policy on the role, the instance's ARN in a slot
//! tag, the other instance named nowhere), a second finding meanwhile changes nothing, and
//! after approval the role has exactly the tags and managed policies it had. moto does not
//! evaluate IAM policies: that the deny denies is shown by the policy's document (checked
//! against the template in `definition`) and AWS's documented `ec2:SourceInstanceARN`.

use std::sync::Arc;

use cordon::runner::{DecisionMode, Runner};
use cordon_core::config::Config;
use cordon_core::measures::credentials::{POLICY_NAME, POLICY_PATH, SLOT_PREFIX};
use cordon_tests::{finding_for, until_decision, AwaitingDecision, Moto};
use serde_json::json;

fn event(instance: &str) -> serde_json::Value {
    json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "detail": finding_for(instance, 8.0, "198.51.100.7")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_credentials_are_cut_and_the_role_given_back_exactly() {
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
    let (instance, _) = world.instance(&[(&subnet, &[&web])], false).await;
    let (sibling, _) = world.instance(&[(&subnet, &[&web])], false).await;
    world.instance_role("web").await;
    world.give_profile(&instance, "web").await;
    world.give_profile(&sibling, "web").await;
    let before = world.role_state("web").await;
    assert_eq!(before.policies.len(), 1);

    let AwaitingDecision {
        arn,
        follow,
        approve,
        ..
    } = until_decision(&runner, &event(&instance)).await;

    // Cut: the deny on the role, exactly one slot, naming this instance and not its sibling.
    let during = world.role_state("web").await;
    let deny = format!("arn:aws:iam::123456789012:policy{POLICY_PATH}{POLICY_NAME}");
    assert!(during.policies.contains(&deny), "{during:?}");
    let slots: Vec<(&String, &String)> = during
        .tags
        .iter()
        .filter(|(k, _)| k.starts_with(SLOT_PREFIX))
        .collect();
    assert_eq!(slots.len(), 1, "{during:?}");
    assert!(
        slots[0].1.ends_with(&format!(":instance/{instance}")),
        "{slots:?}"
    );
    assert!(slots[0].1.starts_with("arn:aws:ec2:"), "{slots:?}");
    assert!(!slots[0].1.contains(&sibling));
    assert_eq!(during.tags["team"], "web");
    let email = runner.messages_of(&arn).await.unwrap();
    assert!(
        email.iter().any(|(_, body)| body.contains(
            "Credentials: role web: every call made with this instance's credentials is denied"
        )),
        "{email:?}"
    );

    // A second finding while it is isolated changes nothing.
    let again = runner
        .run(&event(&instance), DecisionMode::Wait, 600)
        .await
        .unwrap();
    assert_eq!(again.outcome, "already_quarantined", "{:?}", again.states);
    assert_eq!(world.role_state("web").await, during);

    runner.decide_as_a_person(&approve).await.unwrap();
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    assert_eq!(
        report.output["containment"]["credentials"]["status"],
        "done"
    );
    assert_eq!(
        report.output["restore"]["credentials"]["policy_detached"],
        true
    );

    // The role exactly as it was: its tags and managed policies.
    assert_eq!(world.role_state("web").await, before);
    let messages = runner.messages_of(&arn).await.unwrap();
    let (_, restored) = messages
        .iter()
        .find(|(subject, _)| subject.contains("restored"))
        .expect("a restored email");
    assert!(
        restored.contains("Credentials of role web: working again"),
        "{restored}"
    );
}

/// GuardDuty's finding that `role`'s session named `instance` was used from elsewhere.
fn stolen(instance: &str, role: &str) -> serde_json::Value {
    let mut finding = finding_for(instance, 8.0, "203.0.113.9");
    finding["type"] = "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS".into();
    finding["resource"] = json!({"resourceType": "AccessKey", "accessKeyDetails": {
        "accessKeyId": "ASIAEXAMPLE", "principalId": format!("AROAEXAMPLEROLEID:{instance}"),
        "userName": role, "userType": "AssumedRole"}});
    json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": finding})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stolen_instance_credentials_contain_the_instance_they_were_issued_to_whatever_its_profile()
{
    let moto = Moto::start();
    let runner = Runner::start(&moto.endpoint, Config::default())
        .await
        .unwrap();
    let world = moto.world();
    world.deploy_credentials_deny().await;
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    world.instance_role("web").await;
    world.give_profile(&instance, "web").await;

    // Its own role's session: isolated and its credentials cut; kept so on reject.
    let report = runner
        .run(&stolen(&instance, "web"), DecisionMode::Reject, 600)
        .await
        .unwrap();
    assert_eq!(report.outcome, "kept_isolated", "{:?}", report.states);
    assert_ne!(world.eni_groups(&enis[0]).await, vec![web.clone()]);
    let after = world.role_state("web").await;
    assert!(
        after
            .tags
            .iter()
            .any(|(k, v)| k.starts_with(SLOT_PREFIX) && v.ends_with(&instance)),
        "{after:?}"
    );

    // An instance whose profile was removed after its credentials were taken (to escape):
    // contained all the same, and the execution says the credentials were not cut.
    let (gone, gone_enis) = world.instance(&[(&subnet, &[&web])], false).await;
    let report = runner
        .run(&stolen(&gone, "web"), DecisionMode::Reject, 600)
        .await
        .unwrap();
    assert_eq!(report.outcome, "kept_isolated", "{:?}", report.states);
    assert_ne!(world.eni_groups(&gone_enis[0]).await, vec![web.clone()]);
    assert!(
        report.output.to_string().contains("are not cut"),
        "{}",
        report.output
    );
}
