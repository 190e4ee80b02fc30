//! The state machine definition checked by the real ASL validator (npm `asl-validator`):
//! schema, JSONPath expressions and the transition graph.

use std::path::Path;
use std::process::{Command, Output};

use cordon_tests::repo_root;

fn validate(path: &Path) -> Output {
    let validator = repo_root().join("tests/node_modules/.bin/asl-validator");
    assert!(
        validator.exists(),
        "{} is missing: scripts/test installs it (npm ci in tests/)",
        validator.display()
    );
    Command::new(validator)
        .arg("--json-path")
        .arg(path)
        .output()
        .expect("asl-validator runs")
}

#[test]
fn the_definition_passes_asl_validator() {
    let output = validate(&repo_root().join("statemachine/quarantine.asl.json"));
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_validator_catches_a_broken_transition() {
    let mut definition: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("statemachine/quarantine.asl.json")).unwrap(),
    )
    .unwrap();
    definition["States"]["Decision"]["Default"] = "NoSuchState".into();
    let broken =
        std::env::temp_dir().join(format!("cordon-broken-{}.asl.json", std::process::id()));
    std::fs::write(&broken, definition.to_string()).unwrap();
    let output = validate(&broken);
    assert!(
        !output.status.success(),
        "a Default to a missing state must fail validation"
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("NoSuchState") || said.to_lowercase().contains("missing"),
        "{said}"
    );
}

/// Every Task state, wherever it is nested.
fn tasks<'a>(states: &'a serde_json::Value, out: &mut Vec<(&'a str, &'a serde_json::Value)>) {
    for (name, state) in states.as_object().into_iter().flatten() {
        if state["Type"] == "Task" {
            out.push((name, state));
        }
        for branch in state["Branches"].as_array().into_iter().flatten() {
            tasks(&branch["States"], out);
        }
        if let Some(inner) = state.get("ItemProcessor").or(state.get("Iterator")) {
            tasks(&inner["States"], out);
        }
    }
}

#[test]
fn every_task_retries_cordons_transient_errors_and_lambdas_timeouts_and_crashes() {
    let definition: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("statemachine/quarantine.asl.json")).unwrap(),
    )
    .unwrap();
    let mut found = Vec::new();
    tasks(&definition["States"], &mut found);
    assert!(found.len() >= 6, "{}", found.len());
    let wanted: Vec<&str> = cordon_core::CordonError::TRANSIENT_NAMES
        .iter()
        .chain(cordon_core::CordonError::LAMBDA_RETRY_NAMES.iter())
        .copied()
        .collect();
    for (name, task) in found {
        let retried: Vec<&str> = task["Retry"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["ErrorEquals"].as_array().into_iter().flatten())
            .filter_map(|e| e.as_str())
            .collect();
        for error in &wanted {
            assert!(
                retried.contains(error),
                "{name} does not retry {error}: {retried:?}"
            );
        }
    }
}

#[test]
fn the_ec2_workers_timeouts_are_sized_from_the_sdks_retry_budget() {
    let template: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap(),
    )
    .unwrap();
    let functions: Vec<(&String, &serde_json::Value)> = template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .collect();
    let ec2_workers = [
        "CaptureState",
        "IsolateSecurityGroups",
        "BlockNetworkAcl",
        "Restore",
    ];
    let mut checked = 0;
    for (name, function) in functions {
        if ec2_workers.iter().any(|w| name.starts_with(w)) {
            checked += 1;
            assert_eq!(
                function["Properties"]["Timeout"].as_u64(),
                Some(cordon_core::aws::EC2_WORKER_TIMEOUT_SECONDS),
                "{name}"
            );
        }
    }
    assert_eq!(checked, ec2_workers.len());
    // The budget itself: five attempts of five seconds and the standard strategy's backoff.
    assert_eq!(cordon_core::aws::EC2_CALL_BUDGET.as_secs(), 40);
}
