//! Hostile and broken input (issue 5): a corpus of broken GuardDuty findings and step inputs,
//! and what each worker step does with them: a `Cordon.InvalidInput` error that names what was
//! wrong, no panic, and no request to AWS (no EC2 call, and no client asked for, which in AWS
//! may be an STS AssumeRole). Property tests then throw arbitrary text, arbitrary JSON and
//! mutated findings at the parser.
//!
//! Tests marked `#[ignore = "bug (issue 5): ..."]` state what issue 5 asks for and fail on the
//! code as it is; `cargo test -p cordon-core hostile -- --ignored` runs them.

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Map, Value};

use crate::capture::{CaptureOutput, CaptureStatus};
use crate::config::Config;
use crate::ec2::Target;
use crate::error::{CordonError, Result};
use crate::fake::{block_on, FakeEc2};
use crate::finding::{findings_in_value, parse_document, ParsedFinding};
use crate::notify::{notify_step, render, ApprovalSettings, MessageKind, NotifyInput};
use crate::policy::{Policy, Verdict};
use crate::steps::{
    block_step, capture_step, isolate_step, restore_step, single_finding, RestoreInput,
};
use crate::workflow::WorkflowState;

const GOOD_ID: &str = "i-0123456789abcdef0";
const MEGABYTE: usize = 1 << 20;
/// The deepest JSON a Lambda payload or a file can be: serde_json refuses a 128th level.
const DEEPEST_PARSEABLE: usize = 127;

/// The shape of an EC2 instance id: `i-` and 8 or 17 lowercase hex digits.
fn is_instance_id(id: &str) -> bool {
    let Some(hex) = id.strip_prefix("i-") else {
        return false;
    };
    (hex.len() == 8 || hex.len() == 17)
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A well-formed finding that the default policy quarantines.
fn detail() -> Value {
    json!({
        "id": "f-1", "type": "UnauthorizedAccess:EC2/TorClient", "severity": 8.0,
        "accountId": "111122223333", "region": "eu-west-1",
        "resource": {"resourceType": "Instance", "instanceDetails": {
            "instanceId": GOOD_ID, "tags": [{"key": "Name", "value": "web-1"}]}},
        "service": {"resourceRole": "ACTOR", "archived": false,
            "additionalInfo": {"sample": false},
            "action": {"networkConnectionAction": {
                "remoteIpDetails": {"ipAddressV4": "198.51.100.7"}}}},
        "updatedAt": "2024-05-01T10:00:00Z"
    })
}

fn event_with(detail: Value) -> Value {
    json!({"version": "0", "source": "aws.guardduty", "detail-type": "GuardDuty Finding",
           "detail": detail})
}

/// `detail()` with the value at `pointer` (inside the finding) replaced.
fn detail_with(pointer: &str, value: Value) -> Value {
    let mut detail = detail();
    *detail
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} is in the finding")) = value;
    detail
}

fn event_where(pointer: &str, value: Value) -> Value {
    event_with(detail_with(pointer, value))
}

fn nest_arrays(depth: usize, inner: Value) -> Value {
    (0..depth).fold(inner, |value, _| Value::Array(vec![value]))
}

fn nest_objects(depth: usize, inner: Value) -> Value {
    (0..depth).fold(inner, |value, _| {
        Value::Object(Map::from_iter([("a".to_string(), value)]))
    })
}

/// The standard fake, with its instance under a real-looking id.
fn world() -> FakeEc2 {
    let ec2 = FakeEc2::standard();
    ec2.with(|s| {
        let mut instance = s
            .instances
            .remove("i-00000001")
            .expect("the standard instance");
        instance.id = GOOD_ID.into();
        s.instances.insert(GOOD_ID.into(), instance);
        let protection = s.protection.remove("i-00000001").unwrap_or(false);
        s.protection.insert(GOOD_ID.into(), protection);
    });
    ec2
}

/// Long inputs make unreadable failure messages.
fn short(text: &str) -> String {
    if text.chars().count() <= 300 {
        return text.to_string();
    }
    let head: String = text.chars().take(300).collect();
    format!("{head}... ({} chars)", text.chars().count())
}

/// What one step run did: its result and every AWS request it made.
struct Outcome<T> {
    result: Result<T>,
    calls: Vec<String>,
    clients_asked: usize,
}

impl<T: std::fmt::Debug> Outcome<T> {
    /// Why this outcome is not a clear `InvalidInput` made before any AWS request, if it isn't.
    fn not_rejected(&self, fragment: &str) -> Option<String> {
        let problem = match &self.result {
            Err(error @ CordonError::InvalidInput(message)) => {
                assert_eq!(error.error_name(), "Cordon.InvalidInput");
                (!message.contains(fragment))
                    .then(|| format!("the message {:?} does not say {fragment:?}", short(message)))
            }
            other => Some(format!(
                "expected Cordon.InvalidInput, got {}",
                short(&format!("{other:?}"))
            )),
        };
        let reached = (!self.calls.is_empty() || self.clients_asked > 0).then(|| {
            format!(
                "AWS was reached: EC2 calls {:?}, {} client(s) asked for",
                self.calls, self.clients_asked
            )
        });
        match (problem, reached) {
            (None, None) => None,
            (a, b) => Some([a, b].into_iter().flatten().collect::<Vec<_>>().join("; ")),
        }
    }
}

/// Asserts every case's outcome is a clear rejection, listing all the cases that are not.
fn assert_all_rejected<T: std::fmt::Debug>(
    cases: Vec<(String, Value, &str)>,
    run: impl Fn(&Value) -> Outcome<T>,
) {
    assert!(!cases.is_empty());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, input, fragment)| {
            run(input)
                .not_rejected(fragment)
                .map(|why| format!("  {name}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} hostile inputs were not rejected cleanly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn run_capture(ec2: &FakeEc2, input: &Value) -> Outcome<CaptureOutput> {
    let asked = AtomicUsize::new(0);
    let provider = |_: &Target| {
        asked.fetch_add(1, Ordering::SeqCst);
        ec2.clone()
    };
    let result = block_on(capture_step(
        &provider,
        &|_: &Target| crate::measures::credentials::port::fake::FakeIam::default(),
        &Config::default(),
        &crate::seal::Unsealed,
        input,
    ));
    Outcome {
        result,
        calls: ec2.calls(),
        clients_asked: asked.into_inner(),
    }
}

fn capture(input: &Value) -> Outcome<CaptureOutput> {
    run_capture(&world(), input)
}

/// A real capture of the world's instance: what isolate, block and restore are normally given.
fn captured() -> CaptureOutput {
    let output = capture(&event())
        .result
        .expect("the good event is captured");
    assert_eq!(output.status, CaptureStatus::Captured);
    output
}

fn event() -> Value {
    event_with(detail())
}

/// Runs isolate and block on the capture output `input` (as the state machine hands it over,
/// JSON) against a fresh world; `None` when the JSON is not a capture output at all (the
/// Lambda runtime then refuses it before the step runs).
fn run_isolate_and_block(input: &Value) -> Option<[Outcome<String>; 2]> {
    let input: CaptureOutput = serde_json::from_value(input.clone()).ok()?;
    let run = |which: usize| {
        let ec2 = world();
        let asked = AtomicUsize::new(0);
        let provider = |_: &Target| {
            asked.fetch_add(1, Ordering::SeqCst);
            ec2.clone()
        };
        let config = Config::default();
        let result = if which == 0 {
            block_on(isolate_step(&provider, &config, &input)).map(|r| format!("{r:?}"))
        } else {
            block_on(block_step(
                &provider,
                &config,
                &crate::seal::Unsealed,
                &input,
            ))
            .map(|r| format!("{r:?}"))
        };
        Outcome {
            result,
            calls: ec2.calls(),
            clients_asked: asked.into_inner(),
        }
    };
    Some([run(0), run(1)])
}

fn run_restore(input: &RestoreInput) -> Outcome<String> {
    let ec2 = world();
    let asked = AtomicUsize::new(0);
    let provider = |_: &Target| {
        asked.fetch_add(1, Ordering::SeqCst);
        ec2.clone()
    };
    let result = block_on(restore_step(
        &provider,
        &|_: &crate::ec2::Target| {
            crate::measures::auto_scaling::port::fake::FakeAutoScaling::default()
        },
        &|_: &crate::ec2::Target| crate::measures::credentials::port::fake::FakeIam::default(),
        &|_: &crate::ec2::Target| {
            crate::measures::load_balancers::port::fake::FakeLoadBalancing::default()
        },
        &crate::seal::Unsealed,
        input,
    ))
    .map(|r| format!("{r:?}"));
    Outcome {
        result,
        calls: ec2.calls(),
        clients_asked: asked.into_inner(),
    }
}

/// Ids that are not EC2 instance ids, each as it would sit in a finding's JSON.
fn not_instance_ids() -> Vec<(String, Value)> {
    let mut ids: Vec<(String, Value)> = [
        "i-../../etc",
        "i-",
        "",
        "   ",
        "sg-123",
        "sg-0123456789abcdef0",
        "vpc-01234567",
        "i-0123 4567",
        "i-0123\n4567",
        "i-0123\t4567",
        "i-01234567\u{0}",
        "i-0123456\u{ff17}",
        "i-\u{ff46}\u{ff46}\u{ff46}\u{ff46}\u{ff46}\u{ff46}\u{ff46}\u{ff46}",
        "\u{456}-01234567",
        "i-0123456g",
        "I-01234567",
        "i-0ABCDEF0",
        "i-0123456",
        "i-012345678",
        "i-0123456789abcdef",
        "i-0123456789abcdef01",
        "i-\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}",
        "i-01234567; rm -rf /",
        "i-*",
        "arn:aws:ec2:eu-west-1:111122223333:instance/i-0123456789abcdef0",
    ]
    .iter()
    .map(|id| (format!("{id:?}"), json!(id)))
    .collect();
    ids.push((
        "i- and 298 hex digits".into(),
        json!(format!("i-{}", "a".repeat(298))),
    ));
    ids.push((
        "a megabyte id".into(),
        json!(format!("i-{}", "0".repeat(MEGABYTE))),
    ));
    for (name, value) in [
        ("the number 12345678", json!(12345678)),
        ("the number 1e300", json!(1e300)),
        ("true", json!(true)),
        ("an array holding an id", json!([GOOD_ID])),
        ("an object holding an id", json!({"id": GOOD_ID})),
        (
            "a 100k-element array",
            Value::Array(vec![json!(GOOD_ID); 100_000]),
        ),
        ("arrays 120 levels deep", nest_arrays(120, json!(GOOD_ID))),
    ] {
        ids.push((name.into(), value));
    }
    ids
}

/// Broken findings (valid JSON, as a Lambda receives them), each with what its rejection must
/// say. Instance ids are in [`not_instance_ids`].
fn broken_findings() -> Vec<(String, Value, &'static str)> {
    let mut cases: Vec<(String, Value, &'static str)> = Vec::new();
    let mut add = |name: String, value: Value, fragment: &'static str| {
        cases.push((name, value, fragment));
    };
    for value in [
        json!(null),
        json!(42),
        json!(-1.5),
        json!("a finding"),
        json!(true),
    ] {
        add(
            format!("the document {value}"),
            value,
            "expected a JSON object or array",
        );
    }
    add("an empty array".into(), json!([]), "found 0");
    add("{}".into(), json!({}), "no `id`");
    for key in ["Findings", "findings"] {
        for value in [json!("x"), json!(42), json!({}), json!(null), json!(true)] {
            add(
                format!("{key}: {value}"),
                json!({ key: value }),
                "must be an array",
            );
        }
        add(format!("{key}: []"), json!({ key: [] }), "is empty");
    }
    for value in [
        json!(null),
        json!(42),
        json!("x"),
        json!([]),
        json!([detail()]),
    ] {
        add(
            format!("detail: {}", short(&value.to_string())),
            event_with(value),
            "a finding must be a JSON object",
        );
    }
    // Wrong types and empties at the three fields every finding must have.
    for value in [json!(null), json!([]), json!({}), json!(""), json!(" \n ")] {
        add(format!("id: {value}"), event_where("/id", value), "no `id`");
    }
    for value in [json!(null), json!([]), json!({}), json!([1, 2])] {
        add(
            format!("type: {value}"),
            event_where("/type", value),
            "no `type`",
        );
    }
    add(
        "severity: null".into(),
        event_where("/severity", json!(null)),
        "no `severity`",
    );
    for value in [
        json!("NaN"),
        json!("nan"),
        json!("inf"),
        json!("-inf"),
        json!("Infinity"),
        json!("1e309"),
        json!("-1e309"),
        json!("-1"),
        json!(-1),
        json!(-0.0001),
        json!(10.0001),
        json!(11),
        json!(1e308),
        json!(-1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("high"),
        json!("8 high"),
        json!(true),
        json!([]),
        json!([8]),
        json!({}),
        json!({"value": 8}),
    ] {
        add(
            format!("severity: {value}"),
            event_where("/severity", value),
            "`severity` is not a number between 0 and 10",
        );
    }
    add(
        "severity: a megabyte of nines".into(),
        event_where("/severity", json!("9".repeat(MEGABYTE))),
        "`severity` is not a number between 0 and 10",
    );
    // Huge arrays.
    add(
        "100k nulls".into(),
        Value::Array(vec![json!(null); 100_000]),
        "found 100000",
    );
    add(
        "Findings: 100k empty objects".into(),
        json!({"Findings": vec![json!({}); 100_000]}),
        "found 100000",
    );
    add(
        "severity: 100k numbers".into(),
        event_where("/severity", Value::Array(vec![json!(8); 100_000])),
        "`severity`",
    );
    add(
        "id: 100k strings".into(),
        event_where("/id", Value::Array(vec![json!("f"); 100_000])),
        "no `id`",
    );
    // As deep as a parsed document can be.
    add(
        "127 levels of arrays".into(),
        nest_arrays(DEEPEST_PARSEABLE - 1, json!([])),
        "found 0",
    );
    add(
        "127 levels of objects".into(),
        nest_objects(DEEPEST_PARSEABLE - 1, json!({})),
        "no `id`",
    );
    add(
        "severity: 120 levels of arrays".into(),
        event_where("/severity", nest_arrays(120, json!(8))),
        "`severity`",
    );
    add(
        "detail: 120 levels of objects".into(),
        event_with(nest_objects(110, detail())),
        "no `id`",
    );
    cases
}

/// [`broken_findings`], and the state machine's wrapper around an event, broken.
fn broken_capture_inputs() -> Vec<(String, Value, &'static str)> {
    let mut cases = broken_findings();
    let mut add = |name: String, value: Value, fragment: &'static str| {
        cases.push((name, value, fragment));
    };
    // The state machine's wrapper around the event.
    let wrapped = |event: Value, execution: Value| json!({"event": event, "approval_timeout_seconds": "3600", "execution": execution});
    add(
        "wrapped, the event without a severity".into(),
        wrapped(event_where("/severity", json!(null)), json!(null)),
        "no `severity`",
    );
    for execution in [
        json!(42),
        json!(""),
        json!("  "),
        json!("x".repeat(300)),
        json!({}),
    ] {
        add(
            format!("wrapped, execution {}", short(&execution.to_string())),
            wrapped(event(), execution),
            "execution must be the execution's id",
        );
    }
    cases
}

/// Baseline: the harness does reach EC2 when the input is good, so "no call" means something.
#[test]
fn the_well_formed_event_reaches_ec2_and_is_captured() {
    let outcome = capture(&event());
    assert!(outcome.not_rejected("").is_some());
    let output = outcome.result.unwrap();
    assert_eq!(output.status, CaptureStatus::Captured);
    assert_eq!(output.instance_id.as_deref(), Some(GOOD_ID));
    assert!(outcome.calls.contains(&"DescribeInstances".to_string()));
    assert_eq!(outcome.clients_asked, 1);
}

#[test]
fn capture_step_rejects_every_broken_finding_before_any_aws_call() {
    assert_all_rejected(broken_capture_inputs(), capture);
}

#[test]
fn capture_step_rejects_ids_that_are_not_instance_ids_before_any_aws_call() {
    let cases = not_instance_ids()
        .into_iter()
        .map(|(name, id)| {
            (
                format!("instanceId {}", short(&name)),
                event_where("/resource/instanceDetails/instanceId", id),
                "instanceId",
            )
        })
        .collect();
    assert_all_rejected(cases, capture);
}

#[test]
fn capture_step_rejects_accounts_and_regions_that_cannot_be_aws_ones() {
    let mut cases = Vec::new();
    for value in [
        json!("../../etc"),
        json!("1111-2222-3333"),
        json!("11112222333"),
        json!(""),
        json!(111122223333_u64),
        json!(true),
    ] {
        cases.push((
            format!("accountId {value}"),
            event_where("/accountId", value),
            "accountId",
        ));
    }
    for value in [
        json!("eu-west-1.evil.example"),
        json!("eu west 1"),
        json!("../../etc"),
        json!(""),
        json!(42),
        json!("x".repeat(MEGABYTE)),
    ] {
        cases.push((
            format!("region {}", short(&value.to_string())),
            event_where("/region", value),
            "region",
        ));
    }
    assert_all_rejected(cases, capture);
}

/// Fields a finding may lack are read tolerantly: a wrong type there is as if it were absent.
/// The policy then decides; a skip touches no AWS, and what is quarantined is the real id.
#[test]
fn wrong_types_in_optional_fields_are_read_as_absent_and_the_policy_decides() {
    let skipped = |fragment: &'static str| Some(fragment);
    let captured = None;
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("/resource", json!(42), skipped("names no resource type")),
        ("/resource", json!([]), skipped("names no resource type")),
        (
            "/resource/resourceType",
            json!(42),
            skipped("resource type is 42"),
        ),
        (
            "/resource/resourceType",
            json!({}),
            skipped("names no resource type"),
        ),
        (
            "/resource/instanceDetails",
            json!("x"),
            skipped("without resource.instanceDetails.instanceId"),
        ),
        ("/service", json!(42), captured),
        ("/service/archived", json!("TRUE"), skipped("archived")),
        ("/service/archived", json!("yes"), captured),
        ("/service/archived", json!([]), captured),
        (
            "/service/additionalInfo",
            json!({"value": "{\"sample\": true}"}),
            skipped("sample"),
        ),
        (
            "/service/additionalInfo",
            json!({"value": "{not json"}),
            captured,
        ),
        (
            "/service/additionalInfo",
            json!({"value": "[".repeat(10_000)}),
            captured,
        ),
        ("/service/additionalInfo", json!(42), captured),
        // The instance's role may tag it: no tag exempts unless the stack names the key.
        (
            "/resource/instanceDetails/tags",
            json!([{"key": "cordon:exempt", "value": " True "}]),
            captured,
        ),
        (
            "/resource/instanceDetails/tags",
            json!([42, null, {"key": []}, {"value": "true"}]),
            captured,
        ),
        ("/resource/instanceDetails/tags", json!("x"), captured),
        ("/updatedAt", json!({}), captured),
        ("/updatedAt", json!(1e300), captured),
        ("/updatedAt", json!(-1e300), captured),
        ("/updatedAt", json!(i64::MAX), captured),
        ("/updatedAt", json!("9".repeat(400)), captured),
        ("/service/action", json!("x"), captured),
        (
            "/service/action",
            json!({"remoteIpDetails": {"ipAddressV4": 42}}),
            captured,
        ),
        (
            "/service/action",
            json!({"remoteIpDetails": {"ipAddressV4": "999.1.1.1", "ipAddressV6": "::g"}}),
            captured,
        ),
        (
            "/service/action",
            nest_objects(110, json!({"remoteIpDetails": 1})),
            captured,
        ),
        ("/service/resourceRole", json!(["ACTOR"]), captured),
    ];
    for (pointer, value, expected) in cases {
        let case = format!("{pointer}: {}", short(&value.to_string()));
        let outcome = capture(&event_where(pointer, value));
        let output = outcome.result.unwrap_or_else(|e| panic!("{case}: {e}"));
        match expected {
            Some(fragment) => {
                assert_eq!(output.status, CaptureStatus::Skipped, "{case}");
                assert!(
                    output.reason.contains(fragment),
                    "{case}: {}",
                    output.reason
                );
                assert!(
                    outcome.calls.is_empty() && outcome.clients_asked == 0,
                    "{case}: a skip reached AWS: {:?}",
                    outcome.calls
                );
            }
            None => {
                assert_eq!(output.status, CaptureStatus::Captured, "{case}: {output:?}");
                assert_eq!(output.instance_id.as_deref(), Some(GOOD_ID), "{case}");
                let remote: Vec<String> = output
                    .finding
                    .as_ref()
                    .unwrap()
                    .remote_addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
                let expected: &[&str] =
                    if pointer.starts_with("/service/action") || pointer == "/service" {
                        &[]
                    } else {
                        &["198.51.100.7"]
                    };
                assert_eq!(remote, expected, "{case}");
            }
        }
    }
}

/// Capture outputs that are not what capture writes, as isolate and block receive them.
fn broken_capture_outputs() -> Vec<(String, Value, &'static str)> {
    let good = serde_json::to_value(captured()).unwrap();
    let with = |pointer: &str, value: Value| {
        let mut output = good.clone();
        *output.pointer_mut(pointer).unwrap() = value;
        output
    };
    vec![
        (
            "record: null".into(),
            with("/record", json!(null)),
            "holds no record",
        ),
        (
            "a skip with a megabyte reason".into(),
            serde_json::to_value(CaptureOutput::skipped(
                Some(GOOD_ID.into()),
                None,
                "x".repeat(MEGABYTE),
            ))
            .unwrap(),
            "holds no record",
        ),
        (
            "already quarantined, record unreadable".into(),
            {
                let mut output = with("/status", json!("already_quarantined"));
                output["record"] = json!(null);
                output
            },
            "holds no record",
        ),
    ]
}

#[test]
fn isolate_and_block_steps_reject_a_capture_output_without_a_record_before_any_aws_call() {
    for (name, input, fragment) in broken_capture_outputs() {
        let [isolate, block] = run_isolate_and_block(&input)
            .unwrap_or_else(|| panic!("{name}: the input is a capture output"));
        for (step, outcome) in [("isolate", isolate), ("block", block)] {
            if let Some(why) = outcome.not_rejected(fragment) {
                panic!("{step}, {name}: {why}");
            }
        }
    }
}

/// JSON that is not a capture output or restore input never reaches those steps: the Lambda
/// runtime's deserialisation refuses it (with serde's message, which names the expected type
/// but not the field).
#[test]
fn step_inputs_of_the_wrong_shape_are_refused_before_the_step() {
    let good = serde_json::to_value(captured()).unwrap();
    let mut refused = 0;
    for (pointer, value) in [
        ("/status", json!("exploded")),
        ("/status", json!(42)),
        ("/instance_id", json!(42)),
        ("/record", json!(42)),
        ("/record/instance_id", json!(["i-0123456789abcdef0"])),
        ("/record/interfaces", json!("eni-1")),
        ("/record/interfaces", nest_arrays(120, json!(1))),
        ("/record/version", json!(-1)),
        ("/record/version", json!(1e10)),
        ("/finding/severity", json!("NaN")),
        ("/finding/remote_addresses", json!(["not an address"])),
        ("/finding/remote_addresses", json!(["198.51.100.7/32"])),
        ("/warnings", json!({})),
        ("/approval_timeout_seconds", json!(-1)),
    ] {
        let mut input = good.clone();
        *input.pointer_mut(pointer).unwrap() = value.clone();
        assert!(
            serde_json::from_value::<CaptureOutput>(input).is_err(),
            "{pointer}: {value} was accepted as a capture output"
        );
        refused += 1;
    }
    for input in [
        json!({}),
        json!({"instance_id": 42}),
        json!({"instance_id": null}),
        json!({"instance_id": GOOD_ID, "nacl_entries": [{"acl_id": "acl-a", "egress": false, "rule_number": 1e10, "cidr": "x"}]}),
        json!({"instance_id": GOOD_ID, "nacl_entries": "acl-a"}),
        json!({"instance_id": GOOD_ID, "record": "x"}),
    ] {
        assert!(
            serde_json::from_value::<RestoreInput>(input.clone()).is_err(),
            "{input} was accepted as a restore input"
        );
        refused += 1;
    }
    assert_eq!(refused, 20);
}

#[test]
fn isolate_and_block_steps_reject_records_of_ids_that_are_not_instance_ids() {
    let good = serde_json::to_value(captured()).unwrap();
    let mut failures = Vec::new();
    let mut cases: Vec<(String, Value)> = not_instance_ids()
        .into_iter()
        .filter(|(_, id)| id.is_string())
        .map(|(name, id)| {
            let mut input = good.clone();
            input["record"]["instance_id"] = id.clone();
            input["instance_id"] = id;
            (format!("record.instance_id {}", short(&name)), input)
        })
        .collect();
    let mut no_interfaces = good.clone();
    no_interfaces["record"]["interfaces"] = json!([]);
    cases.push(("a record without interfaces".into(), no_interfaces));
    for (name, input) in cases {
        let [isolate, block] = run_isolate_and_block(&input).expect("a capture output");
        for (step, outcome) in [("isolate", isolate), ("block", block)] {
            if let Some(why) = outcome.not_rejected("instance") {
                failures.push(format!("  {step}, {name}: {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn restore_step_rejects_a_record_of_another_instance_before_any_aws_call() {
    let record = captured().record;
    let mut other = record.clone().unwrap();
    other.instance_id = "i-0fedcba9876543210".into();
    let outcome = run_restore(&RestoreInput {
        instance_id: GOOD_ID.into(),
        account_id: None,
        region: None,
        record: Some(other),
        nacl_entries: vec![],
        execution_arn: None,
        approval: None,
        approvals_required: None,
        auto_scaling: None,
        credentials: None,
        evidence: None,
        load_balancers: None,
        trust_unverified_records: false,
    });
    if let Some(why) = outcome.not_rejected("not of i-0123456789abcdef0") {
        panic!("{why}");
    }
    // And the same input with the right record does reach EC2 (the check above means something).
    let outcome = run_restore(&RestoreInput {
        instance_id: GOOD_ID.into(),
        account_id: None,
        region: None,
        record,
        nacl_entries: vec![],
        execution_arn: None,
        approval: None,
        approvals_required: None,
        auto_scaling: None,
        credentials: None,
        evidence: None,
        load_balancers: None,
        trust_unverified_records: false,
    });
    assert!(outcome.result.is_ok() && !outcome.calls.is_empty());
}

#[test]
fn restore_step_rejects_ids_that_are_not_instance_ids_before_any_aws_call() {
    let mut failures = Vec::new();
    for (name, id) in not_instance_ids() {
        let Value::String(id) = id else { continue };
        let mut record = captured().record.unwrap();
        record.instance_id = id.clone();
        for record in [None, Some(record)] {
            let with_record = record.is_some();
            let outcome = run_restore(&RestoreInput {
                instance_id: id.clone(),
                account_id: None,
                region: None,
                record,
                nacl_entries: vec![],
                execution_arn: None,
                approval: None,
                approvals_required: None,
                auto_scaling: None,
                credentials: None,
                evidence: None,
                load_balancers: None,
                trust_unverified_records: false,
            });
            if let Some(why) = outcome.not_rejected("instance") {
                failures.push(format!(
                    "  instance_id {} (record: {with_record}): {why}",
                    short(&name)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The notify step takes an SNS client; this one points at a local port that nothing answers,
/// so that any request it sends shows up as a connection there.
struct Tripwire {
    listener: std::net::TcpListener,
    sns: aws_sdk_sns::Client,
}

impl Tripwire {
    fn new() -> Self {
        use aws_sdk_sns::config::{BehaviorVersion, Credentials, Region};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let config = aws_sdk_sns::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .endpoint_url(format!("http://{}", listener.local_addr().unwrap()))
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_sns::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(std::time::Duration::from_millis(500))
                    .build(),
            )
            .build();
        Tripwire {
            listener,
            sns: aws_sdk_sns::Client::from_conf(config),
        }
    }

    fn notify(&self, input: &NotifyInput) -> Result<crate::notify::NotifyOutput> {
        let key = crate::approval::LinkKey {
            kms: crate::kms::fake::FakeKms::with_key("link-key", &[7; 32]),
            key_id: "link-key".into(),
        };
        let approval = ApprovalSettings {
            base_url: "https://approve.example/".into(),
            key: &key,
            timeout_seconds: 3600,
            sign_in_at: None,
        };
        let findings = crate::lifecycle::status::port::fake::FakeFindings::default();
        let follow = crate::notify::FindingFollow {
            security_hub: &findings,
            guard_duty: &findings,
            ledger: None::<&crate::lifecycle::port::fake::FakeLedger>,
            settings: Default::default(),
        };
        block_on(notify_step(
            &self.sns,
            "arn:aws:sns:eu-west-1:111122223333:cordon",
            &approval,
            follow,
            input,
            1_000,
        ))
    }

    fn was_called(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

/// Execution states as hostile as a Lambda payload can be.
fn hostile_states() -> Vec<Value> {
    let good_state = {
        let mut state = serde_json::to_value(captured()).unwrap();
        state["containment"] = json!([{"isolation": 1}, {"nacl": "x"}]);
        state
    };
    vec![
        json!(null),
        json!(42),
        json!("state"),
        json!([]),
        json!({}),
        event(),
        json!({"event": event(), "error": {"Error": 42, "Cause": ["x"]}}),
        json!({"error": "x"}),
        Value::Array(vec![json!(null); 100_000]),
        nest_arrays(DEEPEST_PARSEABLE - 1, json!(1)),
        nest_objects(DEEPEST_PARSEABLE - 1, json!(1)),
        event_where("/type", json!("T".repeat(MEGABYTE))),
        json!({"instance_id": "x".repeat(MEGABYTE), "status": "captured"}),
        good_state,
    ]
}

#[test]
fn notify_refuses_an_approval_request_without_a_task_token_before_calling_sns() {
    let tripwire = Tripwire::new();
    for state in hostile_states() {
        let input: NotifyInput = serde_json::from_value(json!({
            "kind": "approval_request", "execution_arn": "arn:aws:states:eu-west-1:1:execution:q:e",
            "state": state,
        }))
        .unwrap();
        let error = tripwire.notify(&input).unwrap_err();
        assert_eq!(error.error_name(), "Cordon.InvalidInput");
        assert!(error.to_string().contains("task token"), "{error}");
        assert!(!tripwire.was_called(), "SNS was called");
    }
    // The tripwire works: a valid message does reach the endpoint (and fails there, as nothing
    // answers).
    let input: NotifyInput = serde_json::from_value(json!({
        "kind": "kept_isolated", "execution_arn": "arn:x", "state": hostile_states()[0]
    }))
    .unwrap();
    assert!(tripwire.notify(&input).is_err());
    assert!(tripwire.was_called(), "the tripwire saw no request");
}

#[test]
fn notify_refuses_a_blank_task_token_before_calling_sns() {
    let tripwire = Tripwire::new();
    for token in ["", "   "] {
        let input: NotifyInput = serde_json::from_value(json!({
            "kind": "approval_request", "execution_arn": "arn:x", "task_token": token,
            "state": event(),
        }))
        .unwrap();
        let result = tripwire.notify(&input);
        assert!(
            matches!(&result, Err(CordonError::InvalidInput(m)) if m.contains("task token")),
            "{token:?}: {result:?}"
        );
        assert!(!tripwire.was_called(), "{token:?}: SNS was called");
    }
}

#[test]
fn notify_inputs_of_the_wrong_shape_are_refused_before_the_step() {
    for input in [
        json!({}),
        json!({"kind": "explode", "execution_arn": "arn:x", "state": {}}),
        json!({"kind": 42, "execution_arn": "arn:x", "state": {}}),
        json!({"kind": "failed", "execution_arn": 42, "state": {}}),
        json!({"kind": "failed", "execution_arn": "arn:x"}),
        json!({"kind": "approval_request", "execution_arn": "arn:x", "task_token": 42, "state": {}}),
        json!([{"kind": "failed", "execution_arn": "arn:x", "state": {}}]),
    ] {
        let error = serde_json::from_value::<NotifyInput>(input.clone())
            .expect_err(&format!("{input} was accepted as a notify input"));
        assert!(!error.to_string().is_empty());
    }
}

/// Whatever the execution state holds, every message renders: a one-line ASCII subject of at
/// most 100 characters, and the body's sections.
#[test]
fn every_message_renders_from_a_hostile_state() {
    for state in hostile_states() {
        let read = WorkflowState::from_value(&state);
        for kind in [
            MessageKind::ApprovalRequest,
            MessageKind::Restored,
            MessageKind::KeptIsolated,
            MessageKind::Failed,
            MessageKind::ReportOnly,
        ] {
            let message = render(
                kind,
                &read,
                "arn:x",
                Some(crate::notify::DecisionLinks {
                    approve: "https://a",
                    reject: "https://r",
                    sign_in_at: None,
                }),
            );
            let case = format!("{kind:?} of {}", short(&state.to_string()));
            assert!(
                message.subject.is_ascii()
                    && !message.subject.contains('\n')
                    && message.subject.chars().count() <= 100,
                "{case}: {:?}",
                message.subject
            );
            assert!(message.subject.starts_with("Cordon: "), "{case}");
            assert!(
                message.body.starts_with("GuardDuty reported ")
                    && message.body.contains("\n\nConsole:\n")
                    && message.body.ends_with('\n'),
                "{case}: {}",
                short(&message.body)
            );
        }
    }
}

// ----- The text corpus: what `parse_document` (and so `cordon triage`) makes of broken files.

/// Broken documents, each with what the reason must say.
fn broken_texts() -> Vec<(String, String, &'static str)> {
    let severity = |literal: &str| {
        event_where("/severity", json!("SEVERITY"))
            .to_string()
            .replace("\"SEVERITY\"", literal)
    };
    let mut cases: Vec<(String, String, &'static str)> = vec![
        ("an empty file".into(), String::new(), "not JSON (EOF"),
        ("whitespace".into(), " \n\t ".into(), "not JSON (EOF"),
        (
            "10k levels of [".into(),
            "[".repeat(10_000),
            "recursion limit exceeded",
        ),
        (
            "10k levels of [ closed".into(),
            "[".repeat(10_000) + &"]".repeat(10_000),
            "recursion limit exceeded",
        ),
        (
            "10k levels of {".into(),
            "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000),
            "recursion limit exceeded",
        ),
        (
            "severity 1e309".into(),
            severity("1e309"),
            "number out of range",
        ),
        (
            "severity NaN".into(),
            severity("NaN"),
            "not JSON (expected value",
        ),
        (
            "severity -Infinity".into(),
            severity("-Infinity"),
            "not JSON (invalid number",
        ),
        (
            "a lone surrogate".into(),
            event().to_string().replace("\"f-1\"", "\"\\ud800\""),
            "not JSON (",
        ),
        (
            "a raw newline in a string".into(),
            event().to_string().replace("f-1", "f\n1"),
            "control character",
        ),
        (
            "trailing text".into(),
            event().to_string() + " and more",
            "trailing characters",
        ),
        (
            "two documents".into(),
            event().to_string() + &event().to_string(),
            "trailing characters",
        ),
        (
            "single quotes".into(),
            event().to_string().replace('"', "'"),
            "not JSON (key must be a string",
        ),
    ];
    for (name, value, fragment) in broken_findings() {
        // Megabyte and 100k cases stay in the value corpus; as text they say the same.
        if value.to_string().len() < 100_000 {
            cases.push((name, value.to_string(), fragment));
        }
    }
    cases
}

#[test]
fn parse_document_gives_one_invalid_entry_with_its_reason_for_every_broken_text() {
    let cases = broken_texts();
    assert!(cases.len() > 60, "{}", cases.len());
    for (name, text, fragment) in cases {
        let parsed = parse_document(&text);
        let reasons: Vec<&str> = parsed
            .iter()
            .map(|p| match p {
                ParsedFinding::Invalid { reason, .. } => reason.as_str(),
                ParsedFinding::Valid(f) => panic!("{name}: read as valid: {f:?}"),
            })
            .collect();
        match fragment.strip_prefix("found ") {
            Some(count) => assert_eq!(reasons.len(), count.parse::<usize>().unwrap(), "{name}"),
            None => {
                assert_eq!(reasons.len(), 1, "{name}: {reasons:?}");
                assert!(
                    reasons[0].contains(fragment),
                    "{name}: {:?} should say {fragment:?}",
                    short(reasons[0])
                );
            }
        }
    }
}

/// Every cut of a finding is refused as not JSON, naming where it ends.
#[test]
fn every_truncation_of_a_finding_is_not_json() {
    let text = serde_json::to_string_pretty(&json!({"Findings": [detail()]})).unwrap();
    let mut cuts = 0;
    for end in (0..text.len()).filter(|&end| text.is_char_boundary(end)) {
        let cut = &text[..end];
        match parse_document(cut).as_slice() {
            [ParsedFinding::Invalid {
                finding_id: None,
                reason,
            }] => assert!(
                reason.starts_with("not JSON (EOF while parsing") && reason.contains(" column "),
                "{end}: {reason}"
            ),
            other => panic!("{end}: {cut:?} gave {other:?}"),
        }
        cuts += 1;
    }
    assert!(cuts > 400, "{cuts}");
    assert!(matches!(
        parse_document(&text).as_slice(),
        [ParsedFinding::Valid(_)]
    ));
}

/// A Value built in code (not parsed) may nest deeper than any parsed document. The parser
/// recurses once per level (findings_in_value through arrays, camel_case_keys through
/// everything, remote_addresses through the action): at some depth that is a stack overflow,
/// which aborts the process (no panic to catch). So the deep cases run in a child process.
#[test]
#[ignore = "bug (latent, issue 5): findings_in_value overflows the stack on Values nested ~1000 deep (not reachable from JSON text, which serde_json caps at 128)"]
fn values_nested_10k_deep_do_not_overflow_the_stack() {
    if std::env::var_os("CORDON_HOSTILE_CHILD").is_some() {
        let depth = 10_000;
        let cases = [
            ("arrays", nest_arrays(depth, json!([]))),
            ("objects", nest_objects(depth, json!({}))),
            (
                "inside the action",
                event_where("/service/action", nest_objects(depth, json!(1))),
            ),
        ];
        for (name, value) in cases {
            let parsed = findings_in_value(&value);
            eprintln!("{name}: {} entries", parsed.len());
            std::mem::forget(value); // Dropping is recursive too; not the parser's concern.
        }
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "hostile::values_nested_10k_deep_do_not_overflow_the_stack",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CORDON_HOSTILE_CHILD", "1")
        .env_remove("RUST_MIN_STACK")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the child died ({:?}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

// ----- Property tests.

fn proptest_config() -> ProptestConfig {
    // `with_cases` would ignore PROPTEST_CASES; this budget yields to it.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        cases,
        // No proptest-regressions/ files beside the source: failures print their input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Keys the parser looks for, in both cases, and others.
fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "id", "type", "severity", "resource", "instanceDetails", "instanceId",
            "resourceType", "service", "action", "remoteIpDetails", "ipAddressV4",
            "ipAddressV6", "additionalInfo", "sample", "archived", "resourceRole", "tags",
            "key", "value", "accountId", "region", "updatedAt", "detail", "detail-type",
            "Findings", "findings", "Id", "Type", "Severity", "Resource", "InstanceDetails",
            "InstanceId", "ResourceType", "Service", "RemoteIpDetails", "",
        ])
        .prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// Texts the parser reads as ids, severities, flags, addresses and times, and any other.
fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(GOOD_ID.to_string()),
        Just("Instance".to_string()),
        Just("GuardDuty Finding".to_string()),
        "i-[0-9a-f]{8}",
        "i-[0-9a-f]{17}",
        "[iI]-[0-9a-fA-F]{0,20}",
        "[a-z]{1,3}-[0-9a-f]{0,18}",
        " ?i-[0-9a-f]{8}[ \n\t]?",
        "-?[0-9]{0,3}(\\.[0-9]{0,3})?(e-?[0-9]{1,3})?",
        prop::sample::select(vec!["NaN", "inf", "-inf", "true", "TRUE", "false", "1e309"])
            .prop_map(String::from),
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        any::<String>(),
    ]
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null, as in serde_json
        (0.0..=10.0f64).prop_map(Value::from),
        arb_text().prop_map(Value::String),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// The three shapes a good finding comes in.
fn good_documents() -> Vec<Value> {
    let pascal = {
        fn pascal(value: &Value) -> Value {
            match value {
                Value::Object(map) => Value::Object(
                    map.iter()
                        .map(|(k, v)| {
                            let mut chars = k.chars();
                            let first = chars.next().map(|c| c.to_ascii_uppercase());
                            (first.into_iter().chain(chars).collect(), pascal(v))
                        })
                        .collect(),
                ),
                Value::Array(items) => Value::Array(items.iter().map(pascal).collect()),
                other => other.clone(),
            }
        }
        json!({"Findings": [pascal(&detail())]})
    };
    vec![event(), detail(), pascal]
}

/// Every JSON pointer in `value` below the root.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => vec![],
    };
    for (key, child) in children {
        let pointer = format!("{at}/{key}");
        out.push(pointer.clone());
        pointers(child, pointer, out);
    }
}

/// A good document with some of its fields dropped or replaced by arbitrary JSON, and the
/// pointers that were touched.
fn arb_mutated_finding() -> impl Strategy<Value = (Value, Vec<String>, &'static str)> {
    (
        0..good_documents().len(),
        prop::collection::vec(
            (any::<prop::sample::Index>(), prop::option::of(arb_json())),
            1..4,
        ),
    )
        .prop_map(|(which, mutations)| {
            let mut doc = good_documents().swap_remove(which);
            let mut all = Vec::new();
            pointers(&doc, String::new(), &mut all);
            let mut touched = Vec::new();
            for (index, replacement) in mutations {
                let pointer = index.get(&all).clone();
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                let Some(parent) = doc.pointer_mut(parent) else {
                    continue; // Gone with an earlier mutation.
                };
                let key = key.replace("~1", "/").replace("~0", "~");
                match (parent, replacement) {
                    (Value::Object(map), None) => {
                        map.remove(&key);
                    }
                    (Value::Object(map), Some(value)) => {
                        map.insert(key, value);
                    }
                    (Value::Array(items), replacement) => {
                        let Ok(at) = key.parse::<usize>() else {
                            continue;
                        };
                        if at >= items.len() {
                            continue;
                        }
                        match replacement {
                            None => {
                                items.remove(at);
                            }
                            Some(value) => items[at] = value,
                        }
                    }
                    _ => continue,
                }
                touched.push(pointer);
            }
            (doc, touched, ["/detail", "", "/Findings/0"][which])
        })
}

/// What must hold of any parse, whatever the input: no panic (the caller), a reason for every
/// invalid entry, a severity in range, and `single_finding` agreeing with `findings_in_value`.
fn check_parse(value: &Value) -> std::result::Result<Vec<ParsedFinding>, TestCaseError> {
    let parsed = findings_in_value(value);
    for entry in &parsed {
        match entry {
            ParsedFinding::Valid(finding) => {
                prop_assert!(
                    finding.severity.is_finite() && (0.0..=10.0).contains(&finding.severity)
                );
                prop_assert!(!finding.id.is_empty());
                let decision = Policy::default().decide(finding);
                if decision.verdict == Verdict::Quarantine {
                    prop_assert!(finding.instance_id.is_some());
                }
            }
            ParsedFinding::Invalid { reason, .. } => prop_assert!(!reason.is_empty()),
        }
    }
    match (single_finding(value), parsed.as_slice()) {
        (Ok(finding), [ParsedFinding::Valid(only)]) => prop_assert_eq!(&finding, &**only),
        (Err(CordonError::InvalidInput(message)), [ParsedFinding::Invalid { reason, .. }]) => {
            prop_assert_eq!(&message, reason)
        }
        (Err(CordonError::InvalidInput(message)), entries) if entries.len() != 1 => {
            let count = format!("found {}", entries.len());
            prop_assert!(message.contains(&count), "{} should say {}", message, count)
        }
        (other, entries) => prop_assert!(false, "single_finding {:?} for {:?}", other, entries),
    }
    Ok(parsed)
}

/// What must hold of any capture: no panic (the caller), AWS reached exactly when the policy
/// quarantines the one valid finding the input holds, and then only for that finding's id.
fn check_capture(input: &Value) -> std::result::Result<(), TestCaseError> {
    let config = Config::default();
    let quarantined = crate::steps::unwrap_capture_input(input)
        .ok()
        .and_then(|input| single_finding(input.event).ok())
        .filter(|finding| config.policy.decide(finding).verdict == Verdict::Quarantine);
    let outcome = capture(input);
    let reached = !outcome.calls.is_empty() || outcome.clients_asked > 0;
    prop_assert_eq!(reached, quarantined.is_some(), "{:?}", outcome.result);
    let id = quarantined.and_then(|finding| finding.instance_id);
    match &outcome.result {
        Ok(output) if output.status == CaptureStatus::Skipped => prop_assert!(!reached),
        Ok(output) => prop_assert_eq!(output.instance_id.as_deref(), Some(GOOD_ID)),
        Err(CordonError::InvalidInput(_)) | Err(CordonError::InvalidConfiguration(_)) => {
            prop_assert!(!reached)
        }
        // Quarantined by policy, and the fake has no such instance.
        Err(CordonError::InstanceNotFound { instance_id }) => {
            prop_assert_eq!(Some(instance_id), id.as_ref())
        }
        Err(other) => prop_assert!(false, "unexpected error {}", other),
    }
    Ok(())
}

/// The id property issue 5 asks for: a valid finding names no instance, or a real-looking one.
fn check_ids(parsed: &[ParsedFinding]) -> std::result::Result<(), TestCaseError> {
    for entry in parsed {
        if let ParsedFinding::Valid(finding) = entry {
            if let Some(id) = &finding.instance_id {
                prop_assert!(is_instance_id(id), "accepted instance id {:?}", id);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn arbitrary_text_never_panics_the_parser(text in prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop::sample::select(vec![
                "{", "}", "[", "]", ":", ",", "\"", "\"id\"", "\"severity\"", "8", "-",
                "1e309", "null", "true", "\\u0000", "\\ud800", " ", "\n", "\"i-0123abcd\"",
            ]),
            0..40,
        )
        .prop_map(|tokens| tokens.concat()),
    ]) {
        let parsed = parse_document(&text);
        prop_assert!(!parsed.is_empty() || text.trim_start().starts_with('['));
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            prop_assert_eq!(check_parse(&value)?, parsed);
        } else {
            let not_json = matches!(
                parsed.as_slice(),
                [ParsedFinding::Invalid { reason, .. }] if reason.starts_with("not JSON (")
            );
            prop_assert!(not_json, "{:?}", parsed);
        }
    }

    #[test]
    fn arbitrary_json_never_panics_the_parser_or_the_capture_step(value in arb_json()) {
        let parsed = check_parse(&value)?;
        // As text, the same document reads the same (floats may round differently).
        let summary = |entries: &[ParsedFinding]| -> Vec<std::result::Result<Option<String>, String>> {
            entries.iter().map(|entry| match entry {
                ParsedFinding::Valid(finding) => Ok(finding.instance_id.clone()),
                ParsedFinding::Invalid { reason, .. } => Err(reason.clone()),
            }).collect()
        };
        prop_assert_eq!(summary(&parse_document(&value.to_string())), summary(&parsed));
        check_capture(&value)?;
    }

    #[test]
    fn mutated_findings_never_panic_and_untouched_fields_read_the_same(
        (doc, touched, root) in arb_mutated_finding()
    ) {
        let parsed = check_parse(&doc)?;
        check_capture(&doc)?;
        // A field is touched when it or one of its ancestors was dropped or replaced (keys
        // compared case-blind: the get-findings shape is PascalCase).
        let touches = |field: &str| {
            let full = format!("{root}{field}").to_ascii_lowercase();
            touched.iter().any(|t| {
                let t = t.to_ascii_lowercase();
                full == t || full.starts_with(&format!("{t}/"))
            })
        };
        // The fields a finding is refused for: required ones, and ids that must be AWS's.
        let decisive = ["/id", "/type", "/severity", "/resource/instanceDetails/instanceId", "/accountId", "/region"];
        if decisive.iter().all(|f| !touches(f)) {
            prop_assert!(
                matches!(parsed.as_slice(), [ParsedFinding::Valid(_)]),
                "{:?} after touching {:?}", parsed, touched
            );
            let [ParsedFinding::Valid(finding)] = parsed.as_slice() else { unreachable!() };
            prop_assert_eq!(finding.instance_id.as_deref(), Some(GOOD_ID));
        }
    }

    #[test]
    fn a_valid_finding_only_ever_names_a_well_formed_instance_id(
        (doc, _, _) in arb_mutated_finding(),
        other in arb_json(),
    ) {
        check_ids(&check_parse(&doc)?)?;
        check_ids(&check_parse(&other)?)?;
    }
}

/// A finding may name thousands of remote addresses (a port scan); the NACL step's EC2 calls
/// are bounded by the ACL quota, not by their number.
#[test]
fn block_step_calls_on_thousands_of_remote_addresses_are_bounded_by_the_quota() {
    let run = |count: u32| {
        let mut output = captured();
        let first = u32::from(std::net::Ipv4Addr::new(203, 0, 0, 1));
        output.finding.as_mut().unwrap().remote_addresses = (0..count)
            .map(|i| std::net::IpAddr::from(std::net::Ipv4Addr::from(first + i)))
            .collect();
        let ec2 = world();
        let report = block_on(block_step(
            &|_: &Target| ec2.clone(),
            &Config::default(),
            &crate::seal::Unsealed,
            &output,
        ))
        .expect("a partial block is a report, not an error");
        (ec2.calls().len(), report)
    };
    let (few_calls, few) = run(100);
    let (many_calls, many) = run(2_000);
    assert_eq!(many_calls, few_calls, "{many:?}");
    assert!(many_calls <= 50, "{many_calls}");
    assert_eq!(many.nacl_entries.len(), few.nacl_entries.len());
    // The cap stops them before the quota does, and every one left out is named.
    let cap = crate::config::DEFAULT_MAX_REMOTE_DENIES;
    assert_eq!(
        many.remote_not_denied.len(),
        2_000 - cap,
        "{:?}",
        many.errors
    );
    assert!(many.remote_not_denied[0].reason.contains("cap"));
    assert!(many.errors.is_empty(), "{:?}", many.errors);
}
