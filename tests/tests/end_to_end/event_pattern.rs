//! The EventBridge rule's pattern, read from `infra/template.yaml`, tried on moto's EventBridge
//! with an SQS target: exactly the GuardDuty findings about instances, or about an instance's
//! credentials used elsewhere, at or above the minimum severity start an execution.

use std::collections::BTreeSet;

use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};
use cordon_tests::{finding_for, findings_dir, json_files, repo_root, Moto};
use serde_json::{json, Value};

/// The rule's pattern as deployed with `MinSeverity` = `min`.
fn deployed_pattern(min: f64) -> Value {
    let template: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap(),
    )
    .unwrap();
    let pattern = &template["Resources"]["FindingRule"]["Properties"]["EventPattern"]["Fn::Sub"];
    let text = pattern
        .as_str()
        .expect("FindingRule's EventPattern is an Fn::Sub string");
    serde_json::from_str(&text.replace("${MinSeverity}", &min.to_string()))
        .expect("the pattern is JSON")
}

fn envelope(detail_type: &str, detail: Value) -> (String, Value) {
    (detail_type.to_string(), detail)
}

#[tokio::test]
async fn exactly_instance_findings_at_or_above_the_minimum_match() {
    let pattern = deployed_pattern(7.0);
    assert_eq!(
        pattern["detail"]["severity"][0]["numeric"][1].as_f64(),
        Some(7.0)
    );

    let moto = Moto::start();
    let config = moto.sdk_config();
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = sqs
        .create_queue()
        .queue_name("cordon-rule-test")
        .send()
        .await
        .unwrap();
    let queue_url = queue.queue_url().unwrap().to_string();
    let queue_arn = format!(
        "arn:aws:sqs:{}:123456789012:cordon-rule-test",
        cordon_tests::REGION
    );
    events
        .put_rule()
        .name("cordon-findings")
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("cordon-findings")
        .targets(
            Target::builder()
                .id("queue")
                .arn(&queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // (detail-type, detail, should match)
    let mut cases: Vec<((String, Value), bool)> = Vec::new();
    let mut files = json_files(&findings_dir());
    files.extend(cordon_tests::extra_findings_dir().map_or_else(Vec::new, |d| json_files(&d)));
    for path in &files {
        let finding: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let matches = finding["resource"]["resourceType"] == "Instance"
            && finding["severity"].as_f64().unwrap() >= 7.0;
        cases.push((envelope("GuardDuty Finding", finding), matches));
    }
    for (severity, matches) in [(6.9, false), (7.0, true), (8.5, true), (9.5, true)] {
        let mut finding = finding_for("i-0123456789abcdef0", severity, "198.51.100.7");
        finding["id"] = format!("severity-{severity}").into();
        cases.push((envelope("GuardDuty Finding", finding), matches));
    }
    for resource_type in ["AccessKey", "S3Bucket", "EKSCluster", "Lambda"] {
        let mut finding = finding_for("i-0123456789abcdef0", 8.0, "198.51.100.7");
        finding["id"] = format!("resource-{resource_type}").into();
        finding["resource"]["resourceType"] = resource_type.into();
        cases.push((envelope("GuardDuty Finding", finding), false));
    }
    // An instance's role credentials used elsewhere: an AccessKey finding that starts one,
    // at or above the minimum only; other types about an access key never.
    for (finding_type, severity, matches) in [
        (
            "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            8.0,
            true,
        ),
        (
            "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS",
            8.0,
            true,
        ),
        (
            "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            5.0,
            false,
        ),
        (
            "UnauthorizedAccess:IAMUser/ConsoleLoginSuccess.B",
            8.0,
            false,
        ),
    ] {
        let mut finding = finding_for("i-0123456789abcdef0", severity, "198.51.100.7");
        finding["id"] = format!("credentials-{finding_type}-{severity}").into();
        finding["type"] = finding_type.into();
        finding["resource"] = json!({"resourceType": "AccessKey", "accessKeyDetails": {
            "principalId": "AROAEXAMPLEROLEID:i-0123456789abcdef0", "userName": "web"}});
        cases.push((envelope("GuardDuty Finding", finding), matches));
    }
    // CloudTrail events about GuardDuty share the source, not the detail-type.
    let cloudtrail = json!({"id": "cloudtrail-archive", "eventSource": "guardduty.amazonaws.com", "eventName": "ArchiveFindings",
        "severity": 9, "resource": {"resourceType": "Instance"}});
    cases.push((envelope("AWS API Call via CloudTrail", cloudtrail), false));

    for ((detail_type, detail), _) in &cases {
        events
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .source("aws.guardduty")
                    .detail_type(detail_type)
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let mut matched = BTreeSet::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if received.messages().is_empty() {
            break;
        }
        for message in received.messages() {
            let event: Value = serde_json::from_str(message.body().unwrap()).unwrap();
            matched.insert(event["detail"]["id"].as_str().unwrap().to_string());
        }
    }
    let expected: BTreeSet<String> = cases
        .iter()
        .filter(|(_, matches)| *matches)
        .map(|((_, detail), _)| detail["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(matched, expected);
    if cordon_tests::extra_findings_dir().is_none() {
        assert_eq!(
            expected.len(),
            5,
            "7.0, 8.5 and 9.5, and the two credential findings (the repository's instance finding is severity 5)"
        );
    }
}
