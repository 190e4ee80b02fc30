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
