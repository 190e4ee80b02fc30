//! `cordon triage` on hostile and broken files (issue 5): every one gives "invalid" lines with
//! a reason that says what is wrong, exit code 2, and no panic. Triage never touches AWS.
//!
//! A test marked `#[ignore = "bug (issue 5): ..."]` states what issue 5 asks for and fails on the
//! code as it is; `cargo test -p cordon --test hostile -- --ignored` runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cordon_tests::finding_for;
use serde_json::{json, Value};

const GOOD_ID: &str = "i-0123456789abcdef0";
const MEGABYTE: usize = 1 << 20;

fn cordon(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cordon"));
    command.args(args);
    // Nothing from the developer's own AWS setup leaks into a test.
    for key in [
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        command.env_remove(key);
    }
    command
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    command.output().expect("cordon runs")
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-hostile-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn short(text: &str) -> String {
    if text.chars().count() <= 300 {
        return text.to_string();
    }
    let head: String = text.chars().take(300).collect();
    format!("{head}... ({} chars)", text.chars().count())
}

/// A finding the default policy quarantines, as `get-findings` prints it.
fn good() -> Value {
    json!({"Findings": [finding_for(GOOD_ID, 8.5, "198.51.100.7")]})
}

/// `good()` with the finding's field at `pointer` replaced.
fn good_with(pointer: &str, value: Value) -> Value {
    let mut doc = good();
    *doc["Findings"][0]
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} is in the finding")) = value;
    doc
}

/// `good()` as text, with the severity written as `literal` (which may not be JSON).
fn good_with_severity_literal(literal: &str) -> String {
    good_with("/severity", json!("SEVERITY"))
        .to_string()
        .replace("\"SEVERITY\"", literal)
}

/// Broken files: name, content, and what the reason of each of its lines must say.
fn corpus() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let good_text = good().to_string();
    let mut invalid_utf8 = good_text.clone().into_bytes();
    let at = good_text.find(GOOD_ID).unwrap() + 2;
    invalid_utf8.splice(at..at + 2, [0xff, 0xfe]);
    let text = |name, text: String, fragment| (name, text.into_bytes(), fragment);
    let value = |name, value: Value, fragment| (name, value.to_string().into_bytes(), fragment);
    vec![
        text("empty", String::new(), "not JSON (EOF while parsing"),
        text(
            "truncated",
            good_text[..good_text.len() / 2].to_string(),
            "not JSON (EOF while parsing",
        ),
        text(
            "truncated-by-one",
            good_text[..good_text.len() - 1].to_string(),
            "not JSON (EOF while parsing",
        ),
        ("invalid-utf8", invalid_utf8, "did not contain valid UTF-8"),
        (
            "latin1",
            b"{\"Id\": \"caf\xe9\", \"Type\": \"t\", \"Severity\": 8}".to_vec(),
            "did not contain valid UTF-8",
        ),
        text("10k-arrays", "[".repeat(10_000), "recursion limit exceeded"),
        text(
            "10k-arrays-closed",
            "[".repeat(10_000) + &"]".repeat(10_000),
            "recursion limit exceeded",
        ),
        text(
            "10k-objects",
            "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000),
            "recursion limit exceeded",
        ),
        text(
            "severity-1e309",
            good_with_severity_literal("1e309"),
            "number out of range",
        ),
        text(
            "severity-nan-literal",
            good_with_severity_literal("NaN"),
            "not JSON (expected value",
        ),
        value(
            "severity-nan-string",
            good_with("/severity", json!("NaN")),
            "`severity` is not a number between 0 and 10",
        ),
        value(
            "severity-1e309-string",
            good_with("/severity", json!("1e309")),
            "`severity` is not a number between 0 and 10",
        ),
        value(
            "severity-negative",
            good_with("/severity", json!(-1)),
            "`severity` is not a number between 0 and 10",
        ),
        value(
            "severity-megabyte",
            good_with("/severity", json!("9".repeat(MEGABYTE))),
            "`severity` is not a number between 0 and 10",
        ),
        value(
            "severity-object",
            good_with("/severity", json!({"value": 8})),
            "`severity` is not a number between 0 and 10",
        ),
        value("id-array", good_with("/id", json!([])), "no `id`"),
        value("id-blank", good_with("/id", json!("  ")), "no `id`"),
        value("type-object", good_with("/type", json!({})), "no `type`"),
        value(
            "findings-string",
            json!({"Findings": "x"}),
            "`Findings` must be an array",
        ),
        value("findings-empty", json!({"Findings": []}), "is empty"),
        value(
            "detail-number",
            json!({"detail-type": "GuardDuty Finding", "detail": 42}),
            "a finding must be a JSON object",
        ),
        value("number", json!(42), "expected a JSON object or array"),
        text(
            "trailing",
            good_text.clone() + "\n}",
            "not JSON (trailing characters",
        ),
        text(
            "two-documents",
            good_text.clone() + &good_text,
            "not JSON (trailing characters",
        ),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Triage of one file: exit 2, no panic, and `count` lines (all of it if None), each invalid
/// with a reason that says `fragment`. Returns why not, if not.
fn check_invalid(path: &Path, count: Option<usize>, fragment: &str) -> Result<(), String> {
    let output = cordon(&["triage", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("panicked") || output.status.code() != Some(2) {
        return Err(format!(
            "exit {:?}, stdout {}, stderr {}",
            output.status.code(),
            short(String::from_utf8_lossy(&output.stdout).trim()),
            short(&stderr)
        ));
    }
    let decisions = lines(&output);
    if decisions.is_empty() || count.is_some_and(|count| decisions.len() != count) {
        return Err(format!("{} lines, expected {count:?}", decisions.len()));
    }
    let source = path.display().to_string();
    for line in &decisions {
        let reason = line["reason"].as_str().unwrap_or_default();
        if line["decision"] != "invalid"
            || line["source"] != source.as_str()
            || !line["instance_id"].is_null()
            || !reason.contains(fragment)
        {
            return Err(format!(
                "{} should be invalid saying {fragment:?}",
                short(&line.to_string())
            ));
        }
    }
    Ok(())
}

#[test]
fn triage_marks_every_broken_file_invalid_with_its_reason_and_exits_2() {
    let dir = temp_dir("corpus");
    let mut failures = Vec::new();
    let corpus = corpus();
    for (name, bytes, fragment) in &corpus {
        let path = write(&dir, name, bytes);
        if let Err(why) = check_invalid(&path, Some(1), fragment) {
            failures.push(format!("  {name}: {why}"));
        }
    }
    // Something that is not a file at all.
    if let Err(why) = check_invalid(&dir, Some(1), "cannot read") {
        failures.push(format!("  a directory: {why}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} broken files:\n{}",
        failures.len(),
        corpus.len() + 1,
        failures.join("\n")
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn triage_gives_one_invalid_line_per_entry_of_a_100k_array() {
    let dir = temp_dir("huge");
    let nulls = write(
        &dir,
        "nulls",
        Value::Array(vec![Value::Null; 100_000])
            .to_string()
            .as_bytes(),
    );
    check_invalid(&nulls, Some(100_000), "expected a JSON object or array").unwrap();
    let empties = write(
        &dir,
        "empty-findings",
        json!({"Findings": vec![json!({}); 100_000]})
            .to_string()
            .as_bytes(),
    );
    check_invalid(&empties, Some(100_000), "the finding has no `id`").unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// Broken files among good ones: each gets its line, in order, and the good one is still
/// decided; the exit code says something was invalid.
#[test]
fn triage_goes_on_past_broken_files() {
    let dir = temp_dir("mixed");
    let corpus = corpus();
    let good = write(&dir, "good", good().to_string().as_bytes());
    let mut paths: Vec<PathBuf> = corpus
        .iter()
        .map(|(name, bytes, _)| write(&dir, name, bytes))
        .collect();
    paths.insert(paths.len() / 2, good.clone());
    let args: Vec<&str> = std::iter::once("triage")
        .chain(paths.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let output = cordon(&args);
    assert_eq!(output.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
    let decisions = lines(&output);
    assert_eq!(decisions.len(), paths.len());
    for (line, path) in decisions.iter().zip(&paths) {
        assert_eq!(line["source"], path.display().to_string());
        if *path == good {
            assert_eq!(line["decision"], "quarantine", "{line}");
            assert_eq!(line["instance_id"], GOOD_ID);
        } else {
            assert_eq!(line["decision"], "invalid", "{line}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn triage_marks_ids_that_are_not_instance_ids_invalid() {
    let dir = temp_dir("ids");
    let mut ids: Vec<Value> = [
        "i-../../etc",
        "i-",
        "",
        "sg-123",
        "i-0123 4567",
        "i-0123\n4567",
        "i-0123456\u{ff17}",
        "i-0ABCDEF0",
        "i-0123456789abcdef01",
        "i-\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}",
    ]
    .iter()
    .map(|id| json!(id))
    .collect();
    ids.push(json!(format!("i-{}", "a".repeat(298))));
    ids.push(json!(12345678));
    ids.push(json!(true));
    ids.push(json!([GOOD_ID]));
    let mut failures = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let doc = good_with("/resource/instanceDetails/instanceId", id.clone());
        let path = write(&dir, &format!("id-{n}"), doc.to_string().as_bytes());
        if let Err(why) = check_invalid(&path, Some(1), "nstanceId") {
            failures.push(format!("  instanceId {}: {why}", short(&id.to_string())));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    std::fs::remove_dir_all(&dir).ok();
}
