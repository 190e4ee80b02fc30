//! The CloudWatch metrics an execution emits, read back from the workers' log lines as
//! CloudWatch reads them: each line an Embedded Metric Format document.

use chrono::{SecondsFormat, Utc};
use cordon::runner::{DecisionMode, Runner};
use cordon_core::config::Config;
use cordon_tests::{finding_for, Moto, World};
use serde_json::{json, Value};

/// One metric value as CloudWatch would extract it from an EMF document.
#[derive(Debug, Clone, PartialEq)]
struct Datum {
    name: String,
    unit: String,
    value: f64,
    /// The dimensions of its first (narrowest) dimension set.
    dimensions: Vec<(String, String)>,
}

/// Reads one log line as EMF, checking what CloudWatch requires of it: a millisecond
/// timestamp, and for each directive a namespace, dimension sets whose names are members
/// of the document with string values, and metrics whose names are members with numbers.
fn extract(line: &Value) -> Vec<Datum> {
    let aws = &line["_aws"];
    assert!(
        aws["Timestamp"].as_i64().unwrap() > 1_700_000_000_000,
        "{line}"
    );
    let mut data = Vec::new();
    for directive in aws["CloudWatchMetrics"].as_array().unwrap() {
        assert_eq!(directive["Namespace"], "Cordon");
        let sets = directive["Dimensions"].as_array().unwrap();
        assert!(!sets.is_empty());
        for set in sets {
            let names = set.as_array().unwrap();
            assert!(names.len() <= 30, "{line}");
            for name in names {
                assert!(line[name.as_str().unwrap()].is_string(), "{name} in {line}");
            }
        }
        let first: Vec<(String, String)> = sets[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let n = n.as_str().unwrap();
                (n.to_string(), line[n].as_str().unwrap().to_string())
            })
            .collect();
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            data.push(Datum {
                name: name.to_string(),
                unit: metric["Unit"].as_str().unwrap().to_string(),
                value: line[name]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{name} in {line}")),
                dimensions: first.clone(),
            });
        }
    }
    data
}

fn named<'a>(data: &'a [Datum], name: &str) -> Vec<&'a Datum> {
    data.iter().filter(|d| d.name == name).collect()
}

fn dims(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

async fn one_instance(world: &World) -> (String, String) {
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    world
        .custom_acl(
            &vpc,
            &[&subnet],
            &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
        )
        .await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, _) = world.instance(&[(&subnet, &[&web])], false).await;
    (vpc, instance)
}

/// A finding GuardDuty updated `seconds_ago`.
fn event(instance: &str, seconds_ago: i64) -> Value {
    let mut finding = finding_for(instance, 8.0, "198.51.100.7");
    let updated = Utc::now() - chrono::Duration::seconds(seconds_ago);
    finding["updatedAt"] = json!(updated.to_rfc3339_opts(SecondsFormat::Millis, true));
    json!({"version": "0", "id": "e-1", "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty", "account": "123456789012",
        "region": cordon_tests::REGION, "resources": [], "detail": finding})
}

#[tokio::test]
async fn an_approved_quarantine_emits_its_times_outcomes_calls_and_decision() {
    let moto = Moto::start();
    let runner = Runner::start(&moto.endpoint, Config::default())
        .await
        .unwrap();
    let world = moto.world();
    let (_vpc, instance) = one_instance(&world).await;

    let report = runner
        .run(&event(&instance, 10), DecisionMode::Approve, 300)
        .await
        .unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    let data: Vec<Datum> = runner.metrics().iter().flat_map(extract).collect();

    // Time to isolation: from the finding's update 10 s before the run, and from the start.
    let [from_finding] = named(&data, "TimeToIsolation")[..] else {
        panic!("one time to isolation: {data:?}")
    };
    let [from_start] = named(&data, "TimeToIsolationFromStart")[..] else {
        panic!("one time from the start: {data:?}")
    };
    assert_eq!(from_finding.unit, "Milliseconds");
    assert!(
        from_finding.value >= 10_000.0 && from_finding.value < 10_000.0 + 120_000.0,
        "{from_finding:?}"
    );
    assert!(
        from_start.value > 0.0 && from_start.value <= from_finding.value - 10_000.0 + 1_000.0,
        "{from_start:?} after {from_finding:?}"
    );

    // Each measure by its outcome: this instance has only interfaces and an ACL to contain.
    let mut outcomes: Vec<Vec<(String, String)>> = named(&data, "Containments")
        .iter()
        .map(|d| d.dimensions.clone())
        .collect();
    outcomes.sort();
    let mut expected: Vec<Vec<(String, String)>> = [
        ("isolation", "done"),
        ("nacl", "done"),
        ("auto_scaling", "not_applicable"),
        ("credentials", "not_applicable"),
        ("evidence", "done"),
        ("load_balancers", "not_applicable"),
    ]
    .iter()
    .map(|(m, o)| dims(&[("Measure", m), ("Outcome", o)]))
    .collect();
    expected.sort();
    assert_eq!(outcomes, expected, "{:#}", report.containment);
    assert_eq!(named(&data, "PartialContainments")[0].value, 0.0);
    assert_eq!(named(&data, "QuarantinesOpened")[0].value, 1.0);

    // The approval, and how long the instance waited for it.
    let [decision] = named(&data, "Decisions")[..] else {
        panic!("one decision: {data:?}")
    };
    assert_eq!(decision.dimensions, dims(&[("Decision", "approve")]));
    let wait = named(&data, "ApprovalWait")[0];
    assert!(wait.value >= 0.0 && wait.value < 120_000.0, "{wait:?}");

    // Every step says how many AWS calls it made: isolating one interface takes several.
    let calls_of = |step: &str| {
        named(&data, "AwsCalls")
            .into_iter()
            .find(|d| d.dimensions == dims(&[("Step", step)]))
            .unwrap_or_else(|| panic!("no calls of {step}: {data:?}"))
            .value
    };
    assert!(calls_of("isolate-sg") >= 3.0);
    assert!(calls_of("restore") >= 1.0);
    assert!(named(&data, "AwsRetries").iter().all(|d| d.value == 0.0));
}

#[tokio::test]
async fn a_partial_containment_that_times_out_is_counted_as_both() {
    let moto = Moto::start();
    let runner = Runner::start(&moto.endpoint, Config::default())
        .await
        .unwrap();
    let world = moto.world();
    let (vpc, instance) = one_instance(&world).await;
    // The subnet's ACL at its quota of inbound rules: the deny entry cannot be added.
    let acl = world
        .acls(&vpc)
        .await
        .into_iter()
        .find(|(_, (entries, _))| entries.len() == 2)
        .map(|(id, _)| id)
        .unwrap();
    for n in 0..19 {
        world
            .acl_entry(
                &acl,
                200 + n,
                false,
                aws_sdk_ec2::types::RuleAction::Allow,
                &format!("10.9.{n}.0/24"),
            )
            .await;
    }

    let report = runner
        .run(&event(&instance, 10), DecisionMode::Wait, 3)
        .await
        .unwrap();
    assert_eq!(report.outcome, "partial", "{:?}", report.states);
    let data: Vec<Datum> = runner.metrics().iter().flat_map(extract).collect();
    assert!(named(&data, "Containments")
        .iter()
        .any(|d| d.dimensions == dims(&[("Measure", "nacl"), ("Outcome", "partial")])));
    assert_eq!(named(&data, "PartialContainments")[0].value, 1.0);
    let [decision] = named(&data, "Decisions")[..] else {
        panic!("one decision: {data:?}")
    };
    assert_eq!(decision.dimensions, dims(&[("Decision", "timeout")]));
    // The interfaces were still isolated, and timed.
    assert_eq!(named(&data, "TimeToIsolation").len(), 1);
}
