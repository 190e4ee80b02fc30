use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

const NOW: &str = "2026-12-06T10:00:05Z";

fn metric<'a>(emitted: &'a [Emission], name: &str) -> Option<&'a Emission> {
    emitted
        .iter()
        .find(|e| e.metrics.iter().any(|(n, _, _)| *n == name))
}

fn value(emission: &Emission, name: &str) -> f64 {
    emission
        .metrics
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, v)| *v)
        .unwrap()
}

fn capture() -> Value {
    json!({
        "finding": {"account_id": "111122223333", "region": "eu-west-1",
                    "updated_at": "2026-12-06T10:00:00Z"},
        "execution_started_at": "2026-12-06T10:00:02Z",
    })
}

#[test]
fn a_document_is_emf_with_a_dimension_set_per_scope() {
    let emission = Emission {
        dimensions: vec![("Measure", "isolation".into()), ("Outcome", "done".into())],
        account: Some("111122223333".into()),
        region: Some("eu-west-1".into()),
        metrics: vec![("Containments", Unit::Count, 1.0)],
    };
    let doc = emission.document(at(NOW));
    let directive = &doc["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(doc["_aws"]["Timestamp"], at(NOW).timestamp_millis());
    assert_eq!(directive["Namespace"], "Cordon");
    assert_eq!(
        directive["Dimensions"],
        json!([
            ["Measure", "Outcome"],
            ["Measure", "Outcome", "Account"],
            ["Measure", "Outcome", "Region"]
        ])
    );
    assert_eq!(
        directive["Metrics"],
        json!([{"Name": "Containments", "Unit": "Count"}])
    );
    assert_eq!(doc["Measure"], "isolation");
    assert_eq!(doc["Account"], "111122223333");
    assert_eq!(doc["Region"], "eu-west-1");
    assert_eq!(doc["Containments"], 1.0);
}

#[test]
fn a_document_without_account_or_region_has_only_its_own_dimensions() {
    let emission = Emission {
        dimensions: vec![("Step", "restore".into())],
        account: None,
        region: None,
        metrics: vec![("AwsCalls", Unit::Count, 3.0)],
    };
    let doc = emission.document(at(NOW));
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Step"]])
    );
    assert!(doc.get("Account").is_none());
}

#[test]
fn isolation_is_timed_from_the_finding_and_from_the_execution_start() {
    let report = json!({"status": "done", "enis": [{"outcome": "isolated"}]});
    let emitted = of_invocation(
        "isolate-sg",
        &capture(),
        Some(&report),
        Calls::default(),
        at(NOW),
    );
    let timed = metric(&emitted, "TimeToIsolation").expect("isolation is timed");
    assert_eq!(value(timed, "TimeToIsolation"), 5000.0);
    assert_eq!(value(timed, "TimeToIsolationFromStart"), 3000.0);
    assert_eq!(timed.account.as_deref(), Some("111122223333"));
    assert_eq!(timed.region.as_deref(), Some("eu-west-1"));
}

#[test]
fn isolation_is_timed_from_the_input_the_state_machine_hands_isolate_sg() {
    let report = json!({"status": "done", "enis": [{"outcome": "isolated"}]});
    let input = json!({"capture": capture(), "retry_count": 0});
    let emitted = of_invocation(
        "isolate-sg",
        &input,
        Some(&report),
        Calls::default(),
        at(NOW),
    );
    let timed = metric(&emitted, "TimeToIsolation").expect("isolation is timed");
    assert_eq!(value(timed, "TimeToIsolationFromStart"), 3000.0);
    assert_eq!(timed.account.as_deref(), Some("111122223333"));
}

#[test]
fn only_an_isolation_made_now_is_timed() {
    for enis in [
        json!([{"outcome": "already_isolated"}]),
        json!([{"outcome": "rolled_back"}]),
        json!([]),
    ] {
        let report = json!({"status": "partial", "enis": enis});
        let emitted = of_invocation(
            "isolate-sg",
            &capture(),
            Some(&report),
            Calls::default(),
            at(NOW),
        );
        assert!(metric(&emitted, "TimeToIsolation").is_none(), "{enis}");
    }
    // A failed invocation answered nothing.
    let emitted = of_invocation("isolate-sg", &capture(), None, Calls::default(), at(NOW));
    assert!(metric(&emitted, "TimeToIsolation").is_none());
}

#[test]
fn a_finding_dated_in_the_future_times_nothing() {
    let mut input = capture();
    input["finding"]["updated_at"] = json!("2026-12-06T11:00:00Z");
    input["execution_started_at"] = json!("not a time");
    let report = json!({"status": "done", "enis": [{"outcome": "isolated"}]});
    let emitted = of_invocation(
        "isolate-sg",
        &input,
        Some(&report),
        Calls::default(),
        at(NOW),
    );
    assert!(metric(&emitted, "TimeToIsolation").is_none());
    assert!(metric(&emitted, "TimeToIsolationFromStart").is_none());
}

#[test]
fn every_step_reports_its_calls_and_retries() {
    let emitted = of_invocation(
        "block-nacl",
        &json!({}),
        Some(&json!({})),
        Calls {
            calls: 7,
            retries: 2,
        },
        at(NOW),
    );
    assert_eq!(emitted.len(), 1);
    assert_eq!(
        emitted[0].dimensions,
        vec![("Step", "block-nacl".to_string())]
    );
    assert_eq!(value(&emitted[0], "AwsCalls"), 7.0);
    assert_eq!(value(&emitted[0], "AwsRetries"), 2.0);
}

fn notice(kind: &str, containment: Value) -> Value {
    json!({
        "kind": kind,
        "execution_arn": "arn:aws:states:eu-west-1:111122223333:execution:cordon-quarantine:x",
        "state": {
            "finding": {"account_id": "111122223333", "region": "eu-west-1"},
            "record": {"captured_at": "2026-12-06T09:00:00Z"},
            "containment": containment,
        },
    })
}

fn outcomes(emitted: &[Emission]) -> Vec<(String, String)> {
    emitted
        .iter()
        .filter(|e| e.metrics.iter().any(|(n, _, _)| *n == "Containments"))
        .map(|e| (e.dimensions[0].1.clone(), e.dimensions[1].1.clone()))
        .collect()
}

#[test]
fn the_approval_request_counts_each_measure_by_its_outcome() {
    let input = notice(
        "approval_request",
        json!({
            "isolation": {"status": "done"},
            "nacl": {"status": "not_possible"},
            "auto_scaling": {"status": "not_applicable"},
            "credentials": {"status": "failed", "error": {}},
            "evidence": {"status": "partial"},
        }),
    );
    let emitted = of_invocation("notify", &input, None, Calls::default(), at(NOW));
    assert_eq!(
        outcomes(&emitted),
        [
            ("isolation", "done"),
            ("nacl", "not_possible"),
            ("auto_scaling", "not_applicable"),
            ("credentials", "failed"),
            ("evidence", "partial"),
        ]
        .map(|(m, o)| (m.to_string(), o.to_string()))
    );
    let summary = metric(&emitted, "PartialContainments").unwrap();
    assert_eq!(value(summary, "PartialContainments"), 1.0);
    assert_eq!(value(summary, "QuarantinesOpened"), 1.0);
}

#[test]
fn a_whole_containment_is_not_partial() {
    let input = notice(
        "approval_request",
        json!({"isolation": {"status": "done"}, "nacl": {"status": "done"}}),
    );
    let emitted = of_invocation("notify", &input, None, Calls::default(), at(NOW));
    let summary = metric(&emitted, "PartialContainments").unwrap();
    assert_eq!(value(summary, "PartialContainments"), 0.0);
}

#[test]
fn an_unknown_outcome_never_becomes_a_dimension() {
    let input = notice(
        "approval_request",
        json!({"isolation": {"status": "anything the state says"}}),
    );
    let emitted = of_invocation("notify", &input, None, Calls::default(), at(NOW));
    assert_eq!(
        outcomes(&emitted),
        [("isolation".to_string(), "other".to_string())]
    );
    let summary = metric(&emitted, "PartialContainments").unwrap();
    assert_eq!(value(summary, "PartialContainments"), 1.0);
}

#[test]
fn a_decision_is_counted_with_the_wait_from_capture() {
    let mut input = notice("restored", json!({}));
    input["state"]["approval"] =
        json!({"decision": "approve", "decided_at": "2026-12-06T09:30:00Z"});
    let emitted = of_invocation("notify", &input, None, Calls::default(), at(NOW));
    let decided = metric(&emitted, "Decisions").unwrap();
    assert_eq!(
        decided.dimensions,
        vec![("Decision", "approve".to_string())]
    );
    assert_eq!(value(decided, "ApprovalWait"), 30.0 * 60.0 * 1000.0);
    // Not counted again as a containment.
    assert!(metric(&emitted, "Containments").is_none());

    let mut input = notice("kept_isolated", json!({}));
    input["state"]["approval"] = json!({"decision": "reject"});
    let emitted = of_invocation("notify", &input, None, Calls::default(), at(NOW));
    let decided = metric(&emitted, "Decisions").unwrap();
    assert_eq!(decided.dimensions, vec![("Decision", "reject".to_string())]);
    // Without the decision's time, the wait runs to the notice.
    assert_eq!(value(decided, "ApprovalWait"), 3605.0 * 1000.0);
}

#[test]
fn a_timed_out_approval_is_a_decision_of_its_own() {
    let mut input = notice("kept_isolated", json!({}));
    input["state"]["approval_timeout"] = json!({"Error": "States.Timeout"});
    let emitted = of_invocation("notify", &input, None, Calls::default(), at(NOW));
    let decided = metric(&emitted, "Decisions").unwrap();
    assert_eq!(
        decided.dimensions,
        vec![("Decision", "timeout".to_string())]
    );
}

#[test]
fn an_unknown_decision_is_not_counted() {
    let mut input = notice("kept_isolated", json!({}));
    input["state"]["approval"] = json!({"decision": "maybe"});
    let emitted = of_invocation("notify", &input, None, Calls::default(), at(NOW));
    assert!(metric(&emitted, "Decisions").is_none());
}

#[tokio::test]
async fn each_invocation_counts_its_own_calls_and_retries() {
    let one = counting(async {
        count_call();
        count_attempt();
        count_attempt();
        count_attempt();
        tokio::task::yield_now().await;
        count_call();
        count_attempt();
    });
    let other = counting(async {
        tokio::task::yield_now().await;
        count_call();
        count_attempt();
    });
    let (((), first), ((), second)) = tokio::join!(one, other);
    assert_eq!(
        first,
        Calls {
            calls: 2,
            retries: 2
        }
    );
    assert_eq!(
        second,
        Calls {
            calls: 1,
            retries: 0
        }
    );
    // Outside an invocation nothing is counted, and nothing fails.
    count_call();
}

#[test]
fn the_named_metrics_are_exactly_the_ones_emitted() {
    let mut emitted = std::collections::BTreeSet::new();
    let isolated = json!({"status": "done", "enis": [{"outcome": "isolated"}]});
    let mut restored = notice("restored", json!({}));
    restored["state"]["approval"] = json!({"decision": "approve"});
    let cases = [
        ("isolate-sg", capture(), Some(isolated)),
        (
            "notify",
            notice("approval_request", json!({"isolation": {"status": "done"}})),
            None,
        ),
        ("notify", restored, None),
    ];
    for (step, input, output) in &cases {
        for emission in of_invocation(step, input, output.as_ref(), Calls::default(), at(NOW)) {
            emitted.extend(emission.metrics.iter().map(|(name, _, _)| *name));
        }
    }
    assert_eq!(emitted, METRIC_NAMES.into_iter().collect());
}

#[test]
fn only_an_account_id_and_a_region_of_aws_form_become_dimensions() {
    let mut input = notice("failed", json!({"isolation": {"status": "failed"}}));
    input["state"]["finding"] =
        json!({"account_id": "attacker-chosen-dimension", "region": "x".repeat(300)});
    let emitted = of_invocation("notify", &input, None, Calls::default(), at(NOW));
    assert!(!emitted.is_empty());
    for emission in &emitted {
        assert_eq!(emission.account, None);
        assert_eq!(emission.region, None);
    }
}
