//! The Security Hub custom action "Cordon: contain": the event Security Hub sends (after AWS's
//! documented sample), through the rule's pattern as `infra/template.yaml` deploys it on moto's
//! EventBridge, then the custom action's handler starting the real state machine on moto, whose
//! execution contains the instance and restores it after approval.
//!
//! moto has no GuardDuty `GetFindings`: GuardDuty's answer comes from a port implementation
//! here that holds the finding, in the shape the aws-sdk adapter gives it
//! (`lifecycle::status::aws::as_event_detail`, unit-tested on the SDK's own types).

use std::collections::BTreeMap;

use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};
use cordon::runner::{DecisionMode, Runner};
use cordon_core::aws::AwsContext;
use cordon_core::config::Config;
use cordon_core::custom_action::{self, AwsExecutions};
use cordon_core::lifecycle::status::port::GuardDuty;
use cordon_tests::{finding_for, Moto, World, REGION};
use serde_json::{json, Value};

use crate::definition::template;

const ACCOUNT: &str = "123456789012";
const DETECTOR: &str = "d4b040365221be2b54a6264dc9a4bc64";

/// GuardDuty holding findings, as the administrator's detector sees them.
struct GuardDutyHolding(BTreeMap<String, Value>);

impl GuardDuty for GuardDutyHolding {
    async fn detector(&self) -> cordon_core::Result<Option<String>> {
        Ok(Some(DETECTOR.into()))
    }
    async fn archive(&self, _: &str, _: &str) -> cordon_core::Result<()> {
        unreachable!("the custom action archives nothing")
    }
    async fn finding(&self, detector: &str, id: &str) -> cordon_core::Result<Option<Value>> {
        assert_eq!(detector, DETECTOR);
        Ok(self.0.get(id).cloned())
    }
}

fn action_arn(id: &str) -> String {
    format!("arn:aws:securityhub:{REGION}:{ACCOUNT}:action/custom/{id}")
}

/// The rule's pattern as deployed, with the custom action's ARN in place of its `Fn::GetAtt`.
fn deployed_pattern() -> Value {
    let mut pattern =
        template()["Resources"]["CustomActionRule"]["Properties"]["EventPattern"].clone();
    assert_eq!(
        pattern["resources"][0]["Fn::GetAtt"],
        json!(["CustomActionTarget", "ActionTargetArn"])
    );
    let id = template()["Resources"]["CustomActionTarget"]["Properties"]["Id"].clone();
    pattern["resources"] = json!([action_arn(id.as_str().unwrap())]);
    pattern
}

/// A GuardDuty finding about `instance`, with an id of GuardDuty's form.
fn guard_duty_finding(instance: &str) -> Value {
    let mut finding = finding_for(instance, 8.0, "198.51.100.7");
    let id = format!("{:0>32}", instance.trim_start_matches("i-"));
    finding["arn"] = json!(format!(
        "arn:aws:guardduty:{REGION}:{ACCOUNT}:detector/{DETECTOR}/finding/{id}"
    ));
    finding["id"] = json!(id);
    finding
}

/// The finding in Security Hub's format, as the custom action event carries it.
fn asff(finding: &Value) -> Value {
    json!({
        "SchemaVersion": "2018-10-08",
        "Id": finding["arn"],
        "ProductArn": format!("arn:aws:securityhub:{REGION}::product/aws/guardduty"),
        "ProductName": "GuardDuty", "CompanyName": "Amazon", "Region": REGION,
        "GeneratorId": format!("arn:aws:guardduty:{REGION}:{ACCOUNT}:detector/{DETECTOR}"),
        "AwsAccountId": ACCOUNT,
        "Types": ["TTPs/Command and Control/Backdoor:EC2-C&CActivity.B"],
        "UpdatedAt": finding["updatedAt"],
        "Severity": {"Product": 8, "Label": "HIGH", "Normalized": 60},
        "Title": finding["title"],
        "ProductFields": {"aws/guardduty/service/archived": "false"},
        "Resources": [{"Type": "AwsEc2Instance", "Id": format!(
            "arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{}",
            finding["resource"]["instanceDetails"]["instanceId"].as_str().unwrap())}],
        "Workflow": {"Status": "NEW"}, "RecordState": "ACTIVE"
    })
}

async fn one_instance(world: &World) -> (String, String) {
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    (instance, enis[0].clone())
}

#[tokio::test]
async fn the_custom_action_contains_each_selected_finding_once_and_restores_on_approval() {
    let moto = Moto::start();
    let runner = Runner::start(&moto.endpoint, Config::default())
        .await
        .unwrap();
    let sdk = moto.sdk_config();
    let world = moto.world();
    let (instance, eni) = one_instance(&world).await;
    let groups_before = world.eni_groups(&eni).await;
    let finding = guard_duty_finding(&instance);

    // The rule as deployed, on moto's EventBridge, delivering to a queue.
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name("cordon-custom-action")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    events
        .put_rule()
        .name("cordon-custom-action")
        .event_pattern(deployed_pattern().to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("cordon-custom-action")
        .targets(
            Target::builder()
                .id("queue")
                .arn(format!(
                    "arn:aws:sqs:{REGION}:{ACCOUNT}:cordon-custom-action"
                ))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let detail = json!({"actionName": "Cordon: contain", "actionDescription": "Contain",
                        "findings": [asff(&finding)]});
    for (resource, detail_type) in [
        (
            action_arn("CordonContain"),
            "Security Hub Findings - Custom Action",
        ),
        // Another custom action, and Security Hub's own finding events: not Cordon's.
        (
            action_arn("SendToTicketing"),
            "Security Hub Findings - Custom Action",
        ),
        (
            action_arn("CordonContain"),
            "Security Hub Findings - Imported",
        ),
    ] {
        events
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .source("aws.securityhub")
                    .detail_type(detail_type)
                    .resources(resource)
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let delivered: Vec<Value> = received
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    assert_eq!(
        delivered.len(),
        1,
        "only Cordon's action matches: {delivered:#?}"
    );
    let event = &delivered[0];
    assert_eq!(event["resources"][0], action_arn("CordonContain"));

    // The handler starts the state machine for the finding, read from GuardDuty.
    let machine = runner.state_machine(300).await.unwrap();
    // As the deployed handler: its calls are judged against its role (iam_calls.rs).
    let executions = AwsExecutions::new(
        &AwsContext::from_sdk_config(sdk.clone()).acting_as("custom-action"),
        machine,
    );
    let guard_duty = GuardDutyHolding(BTreeMap::from([(
        finding["id"].as_str().unwrap().to_string(),
        finding.clone(),
    )]));
    let outcomes = custom_action::start_selected(&guard_duty, &executions, event, ACCOUNT, REGION)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].outcome, "started", "{outcomes:?}");
    let execution = outcomes[0].execution.clone().unwrap();

    // A second click while it runs starts nothing new.
    let again = custom_action::start_selected(&guard_duty, &executions, event, ACCOUNT, REGION)
        .await
        .unwrap();
    assert!(
        again[0].execution.as_ref() == Some(&execution) || again[0].outcome == "already_started",
        "{again:?}"
    );

    // The execution is the quarantine any finding starts: contained, approved, restored.
    let report = runner
        .follow(&execution, DecisionMode::Approve)
        .await
        .unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    assert_eq!(report.containment["isolation"]["status"], "done");
    assert_eq!(world.eni_groups(&eni).await, groups_before);
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let input: Value = serde_json::from_str(
        sfn.describe_execution()
            .execution_arn(&execution)
            .send()
            .await
            .unwrap()
            .input()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        input["detail"], finding,
        "GuardDuty's record, not the event's"
    );

    // Once it ended, the same click is said to have been handled, and starts nothing.
    let after = custom_action::start_selected(&guard_duty, &executions, event, ACCOUNT, REGION)
        .await
        .unwrap();
    assert_eq!(after[0].outcome, "already_started", "{after:?}");
}
