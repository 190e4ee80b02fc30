//! What a team operating Cordon relies on, read from `infra/template.yaml` as deployed: no
//! finding EventBridge receives is dropped silently, every alarm reaches the analysts, and
//! the dashboard and alarms read only metrics the workers emit.
//!
//! moto's EventBridge (5.2.5) does not deliver events to Step Functions targets at all, so the
//! retry and dead-letter path itself cannot run locally: it is checked here as configured.

use std::collections::BTreeSet;

use cordon_core::metrics::METRIC_NAMES;
use serde_json::Value;

use crate::definition::{functions, template};

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

fn get_att(resource: &str, attribute: &str) -> Value {
    serde_json::json!({"Fn::GetAtt": [resource, attribute]})
}

#[test]
fn a_finding_that_cannot_start_an_execution_is_retried_for_a_day_then_kept() {
    let template = template();
    let resources = &template["Resources"];
    // The GuardDuty rule starts the state machine, the custom action's its function.
    for (rule, target_of) in [
        (
            "FindingRule",
            serde_json::json!({"Ref": "QuarantineStateMachine"}),
        ),
        ("CustomActionRule", get_att("CustomActionFunction", "Arn")),
    ] {
        let targets = resources[rule]["Properties"]["Targets"].as_array().unwrap();
        assert_eq!(targets.len(), 1, "{rule}");
        let target = &targets[0];
        assert_eq!(target["Arn"], target_of, "{rule}");
        // EventBridge's most: 185 attempts over 24 hours.
        assert_eq!(target["RetryPolicy"]["MaximumRetryAttempts"], 185, "{rule}");
        assert_eq!(
            target["RetryPolicy"]["MaximumEventAgeInSeconds"], 86400,
            "{rule}"
        );
        assert_eq!(
            target["DeadLetterConfig"]["Arn"],
            get_att("FindingDeadLetterQueue", "Arn"),
            "{rule}"
        );
    }
    // An event the custom action's function failed on, three times, is kept there too, and
    // its role may put it there.
    let function = &resources["CustomActionFunction"]["Properties"];
    assert_eq!(function["DeadLetterQueue"]["Type"], "SQS");
    assert_eq!(
        function["DeadLetterQueue"]["TargetArn"],
        get_att("FindingDeadLetterQueue", "Arn")
    );
    let role = &resources["CustomActionRole"]["Properties"]["Policies"][0]["PolicyDocument"];
    assert!(role["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["Action"] == "sqs:SendMessage"
            && s["Resource"] == get_att("FindingDeadLetterQueue", "Arn")));

    let queue = &resources["FindingDeadLetterQueue"];
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    // A standard queue (EventBridge cannot use a FIFO one), encrypted, kept 14 days.
    assert!(queue["Properties"].get("FifoQueue").is_none());
    assert_eq!(queue["Properties"]["SqsManagedSseEnabled"], true);
    assert_eq!(queue["Properties"]["MessageRetentionPeriod"], 1_209_600);

    // Only EventBridge, for this rule only, may send to it.
    let policies: Vec<_> = resources_of_type(&template, "AWS::SQS::QueuePolicy")
        .into_iter()
        .filter(|(_, p)| {
            p["Properties"]["Queues"]
                .as_array()
                .unwrap()
                .iter()
                .any(|q| q["Ref"] == "FindingDeadLetterQueue")
        })
        .collect();
    assert_eq!(policies.len(), 1);
    let statements = policies[0].1["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    // Whatever IAM grants elsewhere, every other sender is denied: the queue's messages are
    // replayed as findings.
    let denies: Vec<_> = statements
        .iter()
        .filter(|s| s["Effect"] == "Deny")
        .collect();
    assert_eq!(denies.len(), 1);
    let deny = denies[0];
    assert_eq!(deny["Principal"], "*");
    assert_eq!(deny["Action"], "sqs:SendMessage");
    let unless = &deny["Condition"]["ArnNotEquals"];
    assert_eq!(
        unless["aws:SourceArn"]["Fn::If"][1],
        serde_json::json!([
            get_att("FindingRule", "Arn"),
            get_att("CustomActionRule", "Arn")
        ])
    );
    assert_eq!(
        unless["aws:PrincipalArn"]["Fn::If"][1],
        get_att("CustomActionRole", "Arn")
    );
    for statement in statements.iter().filter(|s| s["Effect"] != "Deny") {
        assert_eq!(statement["Effect"], "Allow");
        assert_eq!(
            statement["Principal"],
            serde_json::json!({"Service": "events.amazonaws.com"})
        );
        assert_eq!(statement["Action"], "sqs:SendMessage");
        // Both rules when the custom action is there, else the GuardDuty rule alone.
        let senders = &statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::If"];
        assert_eq!(senders[0], "HasCustomAction");
        assert_eq!(
            senders[1],
            serde_json::json!([
                get_att("FindingRule", "Arn"),
                get_att("CustomActionRule", "Arn")
            ])
        );
        assert_eq!(
            senders[2],
            serde_json::json!([get_att("FindingRule", "Arn")])
        );
    }
}

/// The metric math ids an alarm's expression adds up, and the metrics behind them.
fn alarm_metrics(alarm: &Value) -> Vec<(String, String, Value)> {
    let properties = &alarm["Properties"];
    if let Some(name) = properties["MetricName"].as_str() {
        return vec![(
            properties["Namespace"].as_str().unwrap().to_string(),
            name.to_string(),
            properties["Dimensions"].clone(),
        )];
    }
    let queries = properties["Metrics"].as_array().unwrap();
    let expression = queries
        .iter()
        .find_map(|q| q["Expression"].as_str())
        .expect("an alarm on several metrics adds them up");
    let summed: BTreeSet<&str> = expression.split('+').map(str::trim).collect();
    let stats: Vec<_> = queries
        .iter()
        .filter(|q| q.get("MetricStat").is_some())
        .collect();
    let ids: BTreeSet<&str> = stats.iter().map(|q| q["Id"].as_str().unwrap()).collect();
    assert_eq!(
        summed, ids,
        "the expression adds every metric it reads: {expression}"
    );
    stats
        .iter()
        .map(|q| {
            let metric = &q["MetricStat"]["Metric"];
            (
                metric["Namespace"].as_str().unwrap().to_string(),
                metric["MetricName"].as_str().unwrap().to_string(),
                metric["Dimensions"].clone(),
            )
        })
        .collect()
}

#[test]
fn every_alarm_reaches_the_analysts_and_each_failure_has_one() {
    let template = template();
    let alarms = resources_of_type(&template, "AWS::CloudWatch::Alarm");
    let mut watched: Vec<(String, String, Value)> = Vec::new();
    for (name, alarm) in &alarms {
        let properties = &alarm["Properties"];
        assert_eq!(
            properties["AlarmActions"],
            serde_json::json!([{"Ref": "AlertTopic"}]),
            "{name} tells the analysts"
        );
        assert_eq!(properties["TreatMissingData"], "notBreaching", "{name}");
        assert_eq!(properties["Threshold"], 1, "{name} fires on the first one");
        assert!(
            properties["AlarmDescription"].as_str().unwrap().len() > 40,
            "{name} says what to do"
        );
        watched.extend(alarm_metrics(alarm));
    }
    let watches = |namespace: &str, metric: &str, dimension: &Value| {
        watched.iter().any(|(n, m, d)| {
            n == namespace
                && m == metric
                && (dimension.is_null() && d.is_null() || d[0]["Value"] == *dimension)
        })
    };
    let machine = serde_json::json!({"Ref": "QuarantineStateMachine"});
    for metric in [
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "ExecutionsAborted",
    ] {
        assert!(watches("AWS/States", metric, &machine), "{metric}");
    }
    assert!(watches("Cordon", "PartialContainments", &Value::Null));
    assert!(watches(
        "AWS/Lambda",
        "Errors",
        &serde_json::json!({"Ref": "ApprovalFunction"})
    ));
    // Every function the state machine runs; the approval page has reserved concurrency of
    // its own, and its errors are watched above.
    for (function, _) in functions(&template) {
        if function == "ApprovalFunction" {
            continue;
        }
        let function = serde_json::json!({"Ref": function});
        assert!(watches("AWS/Lambda", "Throttles", &function), "{function}");
    }
    let rule = serde_json::json!({"Ref": "FindingRule"});
    assert!(watches("AWS/Events", "FailedInvocations", &rule));
    assert!(watches(
        "AWS/Events",
        "InvocationsFailedToBeSentToDlq",
        &rule
    ));
    assert!(watches(
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        &get_att("FindingDeadLetterQueue", "QueueName")
    ));
    // An alarm on Cordon's own metrics reads one the workers emit, with the dimensions they
    // give it (PartialContainments has a dimension set of none).
    for (namespace, metric, dimensions) in &watched {
        if namespace == "Cordon" {
            assert!(METRIC_NAMES.contains(&metric.as_str()), "{metric}");
            assert!(dimensions.is_null(), "{metric}: {dimensions}");
        }
    }

    // CloudWatch may publish to the alert topic: its key lets it.
    let topic = &template["Resources"]["AlertTopic"]["Properties"];
    assert_eq!(topic["KmsMasterKeyId"]["Ref"], "AlertTopicKey");
    let key = &template["Resources"]["AlertTopicKey"]["Properties"]["KeyPolicy"];
    let for_alarms = key["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
        .expect("the topic's key lets CloudWatch alarms publish");
    let actions: BTreeSet<&str> = for_alarms["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from(["kms:Decrypt", "kms:GenerateDataKey"])
    );
    assert_eq!(
        for_alarms["Condition"]["StringEquals"]["aws:SourceAccount"]["Ref"],
        "AWS::AccountId"
    );
}

/// The dashboard's body as CloudWatch receives it, with each `${...}` of its `Fn::Sub` made
/// a placeholder of the same name.
fn dashboard_body(template: &Value) -> Value {
    let text = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .expect("the dashboard body is an Fn::Sub string");
    let mut body = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        body.push_str(&rest[..at]);
        let end = rest[at..].find('}').unwrap() + at;
        body.push_str(&format!("<{}>", &rest[at + 2..end]));
        rest = &rest[end + 1..];
    }
    body.push_str(rest);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("the dashboard is JSON: {e}\n{body}"))
}

/// The metric names a SEARCH expression asks for, with its dimension schema.
fn searched(expression: &str) -> Option<(Vec<String>, String)> {
    let schema = expression.split('{').nth(1)?.split('}').next()?;
    let name = expression
        .split("MetricName=\"")
        .nth(1)?
        .split('"')
        .next()?;
    Some((
        schema.split(',').map(|s| s.trim().to_string()).collect(),
        name.to_string(),
    ))
}

#[test]
fn the_dashboard_reads_what_the_workers_emit_and_shows_every_alarm() {
    let template = template();
    let body = dashboard_body(&template);
    let mut cordon_metrics = BTreeSet::new();
    for widget in body["widgets"].as_array().unwrap() {
        for line in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let line = line.as_array().unwrap();
            if line[0] == "Cordon" {
                cordon_metrics.insert(line[1].as_str().unwrap().to_string());
            }
            if let Some(expression) = line[0]["expression"].as_str() {
                if let Some((schema, name)) = searched(expression) {
                    assert_eq!(schema[0], "Cordon", "{expression}");
                    cordon_metrics.insert(name.clone());
                    // The dimensions searched are a set the workers emit the metric with.
                    let emitted: &[&str] = match name.as_str() {
                        "Containments" => &["Measure", "Outcome"],
                        "Decisions" => &["Decision"],
                        "AwsCalls" | "AwsRetries" => &["Step"],
                        other => panic!("searched metric {other} has no known dimensions"),
                    };
                    assert_eq!(schema[1..], *emitted, "{expression}");
                }
            }
        }
    }
    for name in &cordon_metrics {
        assert!(METRIC_NAMES.contains(&name.as_str()), "{name}");
    }
    for shown in [
        "TimeToIsolation",
        "TimeToIsolationFromStart",
        "Containments",
        "QuarantinesOpened",
        "Decisions",
        "PartialContainments",
    ] {
        assert!(
            cordon_metrics.contains(shown),
            "{shown} is on the dashboard"
        );
    }

    let alarm_widget = body["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["type"] == "alarm")
        .expect("an alarm status widget");
    let shown: BTreeSet<String> = alarm_widget["properties"]["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .trim_start_matches('<')
                .trim_end_matches(".Arn>")
                .to_string()
        })
        .collect();
    // Every alarm every stack has (the custom action's exists only with the action).
    let alarms: BTreeSet<String> = resources_of_type(&template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, alarm)| alarm.get("Condition").is_none())
        .map(|(name, _)| name.clone())
        .collect();
    assert_eq!(shown, alarms);
}

#[test]
fn every_function_may_write_its_own_log_and_traces() {
    let template = template();
    let resources = &template["Resources"];
    for (name, function) in functions(&template) {
        let properties = &function["Properties"];
        let group = properties["LoggingConfig"]["LogGroup"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} logs to a log group of the stack"));
        let role = properties["Role"]["Fn::GetAtt"][0].as_str().unwrap();
        let statements: Vec<&Value> = resources[role]["Properties"]["Policies"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["PolicyDocument"]["Statement"].as_array().unwrap())
            .collect();
        let grants = |action: &str, resource: &Value| {
            statements.iter().any(|s| {
                s["Effect"] == "Allow"
                    && s["Action"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == action))
                    && s["Resource"] == *resource
            })
        };
        for action in ["logs:CreateLogStream", "logs:PutLogEvents"] {
            assert!(
                grants(action, &get_att(group, "Arn")),
                "{name}'s role {role}: {action} on {group}"
            );
        }
        if properties["Tracing"] == "Active" {
            assert!(
                grants("xray:PutTraceSegments", &Value::from("*")),
                "{name}'s role {role}: X-Ray"
            );
        }
    }
}

#[test]
fn deleting_the_stack_keeps_the_audit_trail() {
    // The log groups say what Cordon did to which instance: deleting or updating the stack
    // must not delete them, and a stack deployed again under the same name must not collide
    // with the groups kept from the last one (their names end with the stack's id).
    let template = template();
    let groups = resources_of_type(&template, "AWS::Logs::LogGroup");
    assert_eq!(groups.len(), 12);
    let stack_uuid = serde_json::json!({
        "Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]
    });
    for (name, group) in groups {
        assert_eq!(group["DeletionPolicy"], "Retain", "{name}");
        assert_eq!(group["UpdateReplacePolicy"], "Retain", "{name}");
        let [pattern, variables] = group["Properties"]["LogGroupName"]["Fn::Sub"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: a name of its own"))
            .as_slice()
        else {
            panic!("{name}");
        };
        let pattern = pattern.as_str().unwrap();
        assert!(
            pattern.contains("${AWS::StackName}") && pattern.ends_with("-${StackUuid}"),
            "{name}: {pattern}"
        );
        assert_eq!(variables["StackUuid"], stack_uuid, "{name}");
    }
}
