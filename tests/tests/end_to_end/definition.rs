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

/// The state machine's definition, as deployed.
fn definition() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("statemachine/quarantine.asl.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn capture_isolation_and_the_acls_each_know_their_attempt() {
    // Capture's retry goes one call after another and yields to throttling; isolation's trusts
    // capture's view only on its first attempt; the ACLs' retry yields to throttling. All
    // read `$$.State.RetryCount`.
    let definition = definition();
    let mut found = Vec::new();
    tasks(&definition["States"], &mut found);
    for name in ["CaptureState", "IsolateSecurityGroups", "BlockNetworkAcl"] {
        let (_, task) = found.iter().find(|(n, _)| *n == name).unwrap();
        let payload = &task["Parameters"]["Payload"];
        assert_eq!(
            payload["retry_count.$"], "$$.State.RetryCount",
            "{name}: {payload}"
        );
    }
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
    let mut definition = definition();
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
    let definition = definition();
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

/// The longest a retrier waits over all its attempts, before full jitter draws each wait.
fn retry_window_seconds(retrier: &serde_json::Value) -> f64 {
    let interval = retrier["IntervalSeconds"].as_f64().unwrap_or(1.0);
    let rate = retrier["BackoffRate"].as_f64().unwrap_or(2.0);
    let cap = retrier["MaxDelaySeconds"].as_f64().unwrap_or(f64::MAX);
    let attempts = retrier["MaxAttempts"].as_u64().unwrap_or(3) as i32;
    (0..attempts)
        .map(|k| (interval * rate.powi(k)).min(cap))
        .sum()
}

#[test]
fn ec2_tasks_outlast_a_burst_of_throttling_and_every_retry_is_jittered() {
    // A burst of findings keeps EC2's token buckets empty for minutes (BENCHMARKS.md): a step
    // that gave up on Cordon.Throttled after 30 s of retries (2 + 4 + 8 + 16) left its
    // instance open, or its ACLs without denies. Executions started by one burst also retry
    // together unless each wait is drawn at random (JitterStrategy FULL).
    let definition = definition();
    let mut found = Vec::new();
    tasks(&definition["States"], &mut found);
    let ec2_tasks = [
        "CaptureState",
        "IsolateSecurityGroups",
        "BlockNetworkAcl",
        "HoldInAutoScalingGroup",
        "CutCredentials",
        "SnapshotVolumes",
        "DeregisterFromTargetGroups",
        "Restore",
    ];
    let mut checked = 0;
    for (name, task) in found {
        let retriers = task["Retry"].as_array().unwrap();
        for retrier in retriers {
            assert_eq!(retrier["JitterStrategy"], "FULL", "{name}: {retrier}");
        }
        if !ec2_tasks.contains(&name) {
            continue;
        }
        checked += 1;
        let throttled = retriers
            .iter()
            .find(|r| {
                r["ErrorEquals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e == "Cordon.Throttled")
            })
            .unwrap();
        let window = retry_window_seconds(throttled);
        assert!(window >= 300.0, "{name} stops retrying after {window} s");
        if name == "CaptureState" || name == "IsolateSecurityGroups" {
            // In a burst of 1,000 the read buckets stayed full for the whole 1,500 s run
            // (BENCHMARKS.md, the eighth run), and 20 captures gave up after 40 retries, their
            // instances never contained: the steps wait, on average, 1.5x that run.
            assert!(
                window / 2.0 >= 2250.0,
                "{name} stops retrying after {window} s"
            );
        }
        if name == "BlockNetworkAcl" {
            // The ACL denies of a burst of 1,000 need CreateNetworkAclEntry's bucket about
            // 4,000 s (BENCHMARKS.md), after isolation: the step waits, on average (half of
            // each full-jitter draw), as long as 1.5x that.
            assert!(
                window / 2.0 >= 6000.0,
                "{name} stops retrying after {window} s"
            );
        }
    }
    assert_eq!(checked, ec2_tasks.len());
}

/// The deployed template, as its tests read it.
pub(super) fn template() -> serde_json::Value {
    serde_norway::from_str(
        &std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap(),
    )
    .unwrap()
}

/// The template's Lambda functions, by logical id.
pub(super) fn functions(template: &serde_json::Value) -> Vec<(&String, &serde_json::Value)> {
    template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .collect()
}

#[test]
fn the_ec2_workers_timeouts_are_sized_from_the_sdks_retry_budget() {
    let template = template();
    let functions = functions(&template);
    let ec2_workers = [
        "CaptureState",
        "IsolateSecurityGroups",
        "BlockNetworkAcl",
        "HoldAutoScalingGroup",
        "CutCredentials",
        "SnapshotVolumes",
        "DeregisterTargets",
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

#[test]
fn the_public_approval_page_cannot_take_the_concurrency_containment_needs() {
    let template = template();
    let functions = functions(&template);
    assert_eq!(functions.len(), 11);
    for (name, function) in functions {
        let reserved = &function["Properties"]["ReservedConcurrentExecutions"];
        if name != "ApprovalFunction" {
            // The containment functions share the account's unreserved pool: a burst of
            // findings is never throttled by a reservation of its own.
            assert!(reserved.is_null(), "{name}: {reserved}");
            continue;
        }
        // Reserved (which also caps it) by default; 0 leaves it out, since a reservation of
        // 0 would throttle every request.
        let [condition, when, otherwise] = reserved["Fn::If"].as_array().unwrap().as_slice() else {
            panic!("{reserved}");
        };
        assert_eq!(when["Ref"], "ApprovalConcurrency");
        assert_eq!(otherwise["Ref"], "AWS::NoValue");
        let test = &template["Conditions"][condition.as_str().unwrap()]["Fn::Not"][0]["Fn::Equals"];
        assert_eq!(
            test,
            &serde_json::json!([{"Ref": "ApprovalConcurrency"}, 0])
        );
        let parameter = &template["Parameters"]["ApprovalConcurrency"];
        assert!(parameter["Default"].as_u64().unwrap() >= 1, "{parameter}");
        assert_eq!(parameter["MinValue"], 0);
    }
}

/// Whether an IAM action pattern covers `action`: case-insensitive, `*` for any run of
/// characters and `?` for one, anywhere (`kms:*`, `kms:*Mac`, `*`).
fn covers(pattern: &str, action: &str) -> bool {
    fn glob(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
            }
            (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    glob(
        pattern.to_lowercase().as_bytes(),
        action.to_lowercase().as_bytes(),
    )
}

fn as_list(value: &serde_json::Value) -> Vec<serde_json::Value> {
    match value {
        serde_json::Value::Array(items) => items.clone(),
        serde_json::Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// One permission to use a KMS key: who (a role, or a principal as written), which action
/// pattern, on which key (`*`: any).
#[derive(Debug)]
struct KeyGrant {
    who: String,
    action: String,
    key: String,
}

/// A key policy's deny of `action` to every principal but `except`.
#[derive(Debug)]
struct KeyDeny {
    except: std::collections::BTreeSet<String>,
    action: String,
    key: String,
}

/// The principals a condition value names: a role by `Fn::GetAtt`, a parameter by `Ref`
/// (its name), every branch of an `Fn::If`, and the items an `Fn::Split` of an `Fn::Join`
/// brings together.
fn principals_of(value: &serde_json::Value) -> Vec<String> {
    if let Some(role) = value["Fn::GetAtt"][0].as_str() {
        return vec![role.to_string()];
    }
    if let Some(parameter) = value["Ref"].as_str() {
        return vec![parameter.to_string()];
    }
    if let Some(branches) = value["Fn::If"].as_array() {
        return branches[1..].iter().flat_map(principals_of).collect();
    }
    if value["Fn::Split"].is_array() {
        return principals_of(&value["Fn::Split"][1]);
    }
    if value["Fn::Join"].is_array() {
        return principals_of(&value["Fn::Join"][1]);
    }
    match value {
        serde_json::Value::Array(items) => items.iter().flat_map(principals_of).collect(),
        serde_json::Value::String(text) => vec![text.clone()],
        serde_json::Value::Null => Vec::new(),
        _ => panic!("a principal this test does not read: {value}"),
    }
}

/// A key policy's statements, each `Fn::If` taken as its statement (the parameter set).
fn key_statements(policy: &serde_json::Value) -> Vec<serde_json::Value> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|statement| match statement["Fn::If"].as_array() {
            Some(branches) => branches[1..]
                .iter()
                .find(|b| b.get("Ref").is_none())
                .cloned(),
            None => Some(statement.clone()),
        })
        .collect()
}

/// Every Allow and Deny of the template that could let a principal use a KMS key: the roles'
/// inline policies, `AWS::IAM::Policy` resources and the keys' own policies. Only shapes it
/// reads are allowed: a managed policy or a grant would escape it.
fn key_grants(
    resources: &serde_json::Map<String, serde_json::Value>,
) -> (Vec<KeyGrant>, Vec<KeyDeny>) {
    let (mut allows, mut denies) = (Vec::new(), Vec::new());
    let actions = |statement: &serde_json::Value| -> Vec<String> {
        let listed = |key: &str| -> Vec<String> {
            as_list(&statement[key])
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect()
        };
        // NotAction allows every action it does not name: as good as "*" here, unless it
        // names both MAC operations.
        let not = listed("NotAction");
        if not.is_empty() {
            listed("Action")
        } else if not.iter().any(|a| covers(a, "kms:GenerateMac"))
            && not.iter().any(|a| covers(a, "kms:VerifyMac"))
        {
            Vec::new()
        } else {
            vec!["*".to_string()]
        }
    };
    let role_of = |value: &serde_json::Value| value["Fn::GetAtt"][0].as_str().map(String::from);
    // The keys a statement's resources name: by GetAtt, or any for anything else ("*").
    let keys_of = |statement: &serde_json::Value| -> Vec<String> {
        as_list(&statement["Resource"])
            .iter()
            .map(|r| role_of(r).unwrap_or_else(|| "*".into()))
            .collect()
    };
    for (name, resource) in resources {
        let properties = &resource["Properties"];
        let kind = resource["Type"].as_str().unwrap();
        // The credentials measure's policy denies only, and is attached to no role of the
        // stack (the workers attach it to a quarantined instance's role): it lets nobody use
        // a key.
        if kind == "AWS::IAM::ManagedPolicy"
            && as_list(&properties["PolicyDocument"]["Statement"])
                .iter()
                .all(|statement| statement["Effect"] == "Deny")
            && ["Roles", "Users", "Groups"]
                .iter()
                .all(|key| properties[*key].is_null())
        {
            continue;
        }
        assert!(
            !matches!(kind, "AWS::IAM::ManagedPolicy" | "AWS::KMS::Grant")
                && properties["ManagedPolicyArns"].is_null(),
            "{name}: a {kind} or managed policy this test does not read"
        );
        let mut documents: Vec<(String, &serde_json::Value)> = Vec::new();
        for policy in properties["Policies"].as_array().into_iter().flatten() {
            documents.push((name.clone(), &policy["PolicyDocument"]));
        }
        if kind == "AWS::IAM::Policy" {
            assert!(
                properties["Users"].is_null() && properties["Groups"].is_null(),
                "{name}"
            );
            for role in as_list(&properties["Roles"]) {
                let role = role["Ref"].as_str().unwrap().to_string();
                documents.push((role, &properties["PolicyDocument"]));
            }
        }
        for (who, document) in documents {
            for statement in document["Statement"].as_array().unwrap() {
                if statement["Effect"] == "Allow" {
                    for action in actions(statement) {
                        for key in keys_of(statement) {
                            allows.push(KeyGrant {
                                who: who.clone(),
                                action: action.clone(),
                                key,
                            });
                        }
                    }
                }
            }
        }
        if kind == "AWS::KMS::Key" {
            for statement in key_statements(&properties["KeyPolicy"]) {
                let condition = &statement["Condition"];
                let principal_arns = |operators: [&str; 2]| -> Vec<String> {
                    operators
                        .iter()
                        .flat_map(|op| principals_of(&condition[*op]["aws:PrincipalArn"]))
                        .collect()
                };
                for action in actions(&statement) {
                    if statement["Effect"] == "Deny" {
                        denies.push(KeyDeny {
                            except: principal_arns(["ArnNotEquals", "ArnNotLike"])
                                .into_iter()
                                .collect(),
                            action,
                            key: name.clone(),
                        });
                    } else {
                        // Delegated to principals by a condition, or to the principal itself.
                        let mut who = principal_arns(["ArnEquals", "ArnLike"]);
                        if who.is_empty() {
                            who.push(statement["Principal"].to_string());
                        }
                        for who in who {
                            allows.push(KeyGrant {
                                who,
                                action: action.clone(),
                                key: name.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    (allows, denies)
}

#[test]
fn the_hmac_keys_stay_in_kms_and_each_mac_operation_belongs_to_one_role() {
    let template = template();
    let resources = template["Resources"].as_object().unwrap();
    for key in ["LinkKey", "DecisionKey", "BreakGlassKey", "RecordKey"] {
        assert_eq!(resources[key]["Type"], "AWS::KMS::Key", "{key}");
        assert_eq!(resources[key]["Properties"]["KeySpec"], "HMAC_256", "{key}");
        assert_eq!(
            resources[key]["Properties"]["KeyUsage"], "GENERATE_VERIFY_MAC",
            "{key}"
        );
    }
    // No secret anywhere: no Secrets Manager, no dynamic reference, no key in an environment.
    let text = template.to_string();
    assert!(
        !text.contains("AWS::SecretsManager"),
        "a secret in the template"
    );
    assert!(
        !text.contains("resolve:secretsmanager"),
        "a dynamic reference"
    );
    assert!(
        !text.contains("CORDON_APPROVAL_KEY\""),
        "a key in an environment"
    );
    for (function, variable, key) in [
        ("NotifyFunction", "CORDON_APPROVAL_KEY_ID", "LinkKey"),
        ("ApprovalFunction", "CORDON_APPROVAL_KEY_ID", "LinkKey"),
        ("ApprovalFunction", "CORDON_DECISION_KEY_ID", "DecisionKey"),
        ("RestoreFunction", "CORDON_DECISION_KEY_ID", "DecisionKey"),
        ("CaptureStateFunction", "CORDON_RECORD_KEY_ID", "RecordKey"),
        (
            "BlockNetworkAclFunction",
            "CORDON_RECORD_KEY_ID",
            "RecordKey",
        ),
        ("RestoreFunction", "CORDON_RECORD_KEY_ID", "RecordKey"),
    ] {
        assert_eq!(
            resources[function]["Properties"]["Environment"]["Variables"][variable],
            serde_json::json!({"Fn::GetAtt": [key, "Arn"]}),
            "{function} {variable}"
        );
    }
    // The break-glass key exists only with break-glass principals, and restore knows it only
    // then: without them it takes no decision made with `cordon approve|reject`.
    assert_eq!(
        resources["BreakGlassKey"]["Condition"],
        "HasBreakGlassPrincipals"
    );
    assert_eq!(
        resources["RestoreFunction"]["Properties"]["Environment"]["Variables"]
            ["CORDON_BREAK_GLASS_KEY_ID"],
        serde_json::json!({"Fn::If": ["HasBreakGlassPrincipals",
            {"Fn::GetAtt": ["BreakGlassKey", "Arn"]}, {"Ref": "AWS::NoValue"}]})
    );
    let (allows, denies) = key_grants(resources);
    // A grant would let its holder make MACs whatever the policy says.
    assert!(
        !allows.iter().any(|g| covers(&g.action, "kms:CreateGrant")),
        "{allows:?}"
    );
    // Each way of deciding seals with its own key: the approval function the page's
    // decisions, the engineers' roles the stack names (BreakGlassPrincipals, a parameter) the
    // break-glass ones, and no one else either; only restore checks them.
    for (key, operation, only) in [
        ("LinkKey", "kms:GenerateMac", &["NotifyRole"][..]),
        ("LinkKey", "kms:VerifyMac", &["ApprovalRole"]),
        ("DecisionKey", "kms:GenerateMac", &["ApprovalRole"]),
        ("DecisionKey", "kms:VerifyMac", &["RestoreRole"]),
        (
            "BreakGlassKey",
            "kms:GenerateMac",
            &["BreakGlassPrincipals"],
        ),
        ("BreakGlassKey", "kms:VerifyMac", &["RestoreRole"]),
        // Only capture, the ACL step and the target group step seal the records kept in tags
        // (no person: `cordon isolate` writes its records unsealed).
        (
            "RecordKey",
            "kms:GenerateMac",
            &[
                "BlockNetworkAclRole",
                "CaptureStateRole",
                "DeregisterTargetsRole",
            ],
        ),
    ] {
        let only: std::collections::BTreeSet<String> =
            only.iter().map(|who| who.to_string()).collect();
        let who: std::collections::BTreeSet<String> = allows
            .iter()
            .filter(|g| (g.key == key || g.key == "*") && covers(&g.action, operation))
            .map(|g| g.who.clone())
            .collect();
        assert_eq!(who, only, "{key} {operation}: {allows:?}");
        // And the key policy denies it to everyone else, whatever IAM says.
        assert!(
            denies
                .iter()
                .any(|d| d.key == key && d.except == only && covers(&d.action, operation)),
            "{key} {operation}: {denies:?}"
        );
    }
    assert_eq!(
        template["Parameters"]["BreakGlassPrincipals"]["Default"], "",
        "break glass is off unless the stack names who"
    );
    // Whatever the roles above admit (a wildcard in BreakGlassPrincipals), an EC2 instance's
    // role credentials make and check no MAC: the compromised instance never signs its release.
    // Checking a record's seal makes none: the key policy leaves VerifyMac to IAM in the
    // account (operators who run `cordon restore --record-key`), and of the stack's roles
    // only those that read records are given it: capture, the ACL and target group steps,
    // and restore.
    let checkers: std::collections::BTreeSet<String> = allows
        .iter()
        .filter(|g| {
            resources.contains_key(&g.who)
                && (g.key == "RecordKey" || g.key == "*")
                && covers(&g.action, "kms:VerifyMac")
        })
        .map(|g| g.who.clone())
        .collect();
    assert_eq!(
        checkers,
        [
            "BlockNetworkAclRole",
            "CaptureStateRole",
            "DeregisterTargetsRole",
            "RestoreRole"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    // Losing the key would strand the record of every instance still isolated.
    assert_eq!(resources["RecordKey"]["DeletionPolicy"], "Retain");
    assert_eq!(resources["RecordKey"]["UpdateReplacePolicy"], "Retain");
    for key in ["LinkKey", "DecisionKey", "BreakGlassKey", "RecordKey"] {
        let denies_instances = key_statements(&resources[key]["Properties"]["KeyPolicy"])
            .iter()
            .any(|statement| {
                statement["Effect"] == "Deny"
                    && statement["Principal"] == "*"
                    && statement["Condition"]["Null"]["aws:Ec2InstanceSourceVPC"] == "false"
                    && ["kms:GenerateMac", "kms:VerifyMac"]
                        .iter()
                        .all(|operation| {
                            as_list(&statement["Action"])
                                .iter()
                                .any(|a| covers(a.as_str().unwrap(), operation))
                        })
            });
        assert!(denies_instances, "{key}");
    }
}

#[test]
fn the_workflow_restores_only_through_the_decision_check() {
    let definition = definition();
    let states = &definition["States"];
    let payload = &states["Restore"]["Parameters"]["Payload"];
    assert_eq!(payload["execution_arn.$"], "$$.Execution.Id");
    assert_eq!(payload["approval.$"], "$.approval");
    assert_eq!(states["Restore"]["Next"], "RestoreOutcome");
    let outcome = &states["RestoreOutcome"];
    assert_eq!(
        outcome["Choices"],
        serde_json::json!([{"Variable": "$.restore.status", "StringEquals": "decision_refused",
            "Next": "NotifyKeptIsolated"}])
    );
    assert_eq!(outcome["Default"], "NotifyRestored");
    // Under the two-person rule the first approval asks a second approver, whose answer
    // takes the approval's place (it carries the first), and only then restore runs.
    let decision = &states["Decision"]["Choices"];
    assert_eq!(decision[0]["Next"], "RequestSecondApproval");
    assert_eq!(decision[1]["Next"], "Restore");
    let second = &states["RequestSecondApproval"];
    assert_eq!(second["ResultPath"], "$.approval");
    assert_eq!(
        second["Parameters"]["Payload"]["kind"],
        "second_approval_request"
    );
    assert_eq!(second["Next"], "SecondDecision");
    assert_eq!(
        states["CaptureState"]["Parameters"]["Payload"]["approvals_required"],
        "${ApprovalsRequired}"
    );
}

/// Every action a role's policies allow, as (action, the statement's resources).
fn role_actions(template: &serde_json::Value, role: &str) -> Vec<String> {
    let resources = &template["Resources"];
    let mut statements: Vec<&serde_json::Value> = Vec::new();
    for policy in resources[role]["Properties"]["Policies"]
        .as_array()
        .into_iter()
        .flatten()
    {
        statements.extend(policy["PolicyDocument"]["Statement"].as_array().unwrap());
    }
    // Policies attached beside the role (AWS::IAM::Policy naming it).
    for (_, resource) in resources.as_object().unwrap() {
        if resource["Type"] == "AWS::IAM::Policy"
            && as_list(&resource["Properties"]["Roles"])
                .iter()
                .any(|r| r["Ref"] == role)
        {
            statements.extend(
                resource["Properties"]["PolicyDocument"]["Statement"]
                    .as_array()
                    .unwrap(),
            );
        }
    }
    statements
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| as_list(&s["Action"]))
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The role of the function a task state invokes (`${XFunctionArn}` → `XFunction` → its Role).
fn role_of_state(template: &serde_json::Value, state: &serde_json::Value) -> String {
    let function = state["Parameters"]["FunctionName"]
        .as_str()
        .unwrap()
        .trim_start_matches("${")
        .trim_end_matches("Arn}")
        .to_string();
    template["Resources"][&function]["Properties"]["Role"]["Fn::GetAtt"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{function} has no role"))
        .to_string()
}

/// The measures' registry is what the definition, the template and the member role say: each
/// measure is a branch of Contain whose state has the same name, each action it declares is
/// granted to the role of the phase that makes it, and the member role grants every EC2, Auto
/// Scaling and IAM action of every measure (member accounts are acted on through it).
#[test]
fn every_measure_is_a_branch_and_its_roles_grant_what_it_declares() {
    use cordon_core::measures::{Phase, MEASURES};
    let template = template();
    let definition = definition();
    let contain = &definition["States"]["Contain"];
    let branches = contain["Branches"].as_array().unwrap();
    assert_eq!(branches.len(), MEASURES.len());
    let member: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo_root().join("infra/member-role.yaml")).unwrap(),
    )
    .unwrap();
    let member_actions = role_actions(&member, "MemberRole");
    for (measure, branch) in MEASURES.iter().zip(branches) {
        assert_eq!(branch["StartAt"], measure.state, "{}", measure.id);
        assert_eq!(
            contain["ResultSelector"][format!("{}.$", measure.id)],
            format!("$[{}]", branches.iter().position(|b| b == branch).unwrap()),
            "{}",
            measure.id
        );
        let own_role = role_of_state(&template, &branch["States"][measure.state]);
        for (phase, action) in measure.actions {
            let roles: &[&str] = match phase {
                Phase::Capture => &["CaptureStateRole", own_role.as_str()],
                Phase::Apply => &[own_role.as_str()],
                Phase::Restore => &["RestoreRole"],
            };
            assert!(
                roles.iter().any(|role| role_actions(&template, role)
                    .iter()
                    .any(|a| covers(a, action))),
                "{} {phase:?} {action}: not granted to {roles:?}",
                measure.id
            );
            if ["ec2:", "autoscaling:", "iam:", "elasticloadbalancing:"]
                .iter()
                .any(|service| action.starts_with(service))
            {
                assert!(
                    member_actions.iter().any(|a| covers(a, action)),
                    "{} {action}: not in the member role",
                    measure.id
                );
            }
        }
    }
}

/// The credentials measure's deny policy is the same document in both stacks and in the code
/// that deploys it on the emulator, named where the workers look for it; and the only IAM
/// writes any role of the stack or the member role has are attaching and detaching that policy
/// and writing and dropping its slot tags: nothing that could grant a permission.
#[test]
fn the_credentials_deny_is_one_document_and_cordons_iam_writes_cannot_grant() {
    use cordon_core::measures::credentials::{deny_policy_document, POLICY_NAME, POLICY_PATH};
    let member: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo_root().join("infra/member-role.yaml")).unwrap(),
    )
    .unwrap();
    for stack in [template(), member] {
        let policy = &stack["Resources"]["QuarantineDenyPolicy"]["Properties"];
        assert_eq!(policy["PolicyDocument"], deny_policy_document());
        assert_eq!(policy["ManagedPolicyName"], POLICY_NAME);
        assert_eq!(policy["Path"], POLICY_PATH);
        for (name, resource) in stack["Resources"].as_object().unwrap() {
            for policy in resource["Properties"]["Policies"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for statement in as_list(&policy["PolicyDocument"]["Statement"]) {
                    let condition = &statement["Condition"];
                    for action in as_list(&statement["Action"]) {
                        let action = action.as_str().unwrap();
                        let service = action.split(':').next().unwrap();
                        assert!(
                            service != "iam"
                                || action.contains(":Get")
                                || action.contains(":List")
                                || match action {
                                    "iam:AttachRolePolicy" | "iam:DetachRolePolicy" => {
                                        condition["ArnEquals"]["iam:PolicyARN"]
                                            == serde_json::json!({"Fn::Sub": format!(
                                                "arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy{POLICY_PATH}{POLICY_NAME}"
                                            )})
                                    }
                                    "iam:TagRole" | "iam:UntagRole" => {
                                        condition["ForAllValues:StringLike"]["aws:TagKeys"]
                                            == serde_json::json!(["cordon-quarantine-*"])
                                            && condition["Null"]["aws:TagKeys"] == "false"
                                    }
                                    _ => false,
                                },
                            "{name}: {action} may write IAM beyond Cordon's deny and its slot tags"
                        );
                        assert!(!matches!(action, "iam:*" | "*"), "{name}: {action}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_member_role_trusts_only_the_workers_that_act_in_member_accounts() {
    // Not the whole administrator account: any principal there allowed sts:AssumeRole could
    // otherwise act as Cordon in every member account.
    let template = template();
    let member: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo_root().join("infra/member-role.yaml")).unwrap(),
    )
    .unwrap();
    let trust =
        &member["Resources"]["MemberRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"];
    let [statement] = trust.as_array().unwrap().as_slice() else {
        panic!("one trust statement: {trust}");
    };
    let workers =
        "arn:${AWS::Partition}:iam::${AdministratorAccountId}:role/cordon/${AdministratorStackName}/*";
    let [condition, with_operators, workers_alone] = statement["Condition"]["ArnLike"]
        ["aws:PrincipalArn"]["Fn::If"]
        .as_array()
        .unwrap()
        .as_slice()
    else {
        panic!("{statement}");
    };
    assert_eq!(condition, "HasOperators");
    assert_eq!(workers_alone, &serde_json::json!([{ "Fn::Sub": workers }]));
    // Operators the stack names are added to the workers, never in their place.
    assert_eq!(
        with_operators["Fn::Split"][1]["Fn::Sub"][0],
        format!("{workers},${{Operators}}")
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["sts:ExternalId"]["Ref"],
        "ExternalId"
    );
    // No default: a StackSet updated without it fails rather than trust another path.
    assert!(member["Parameters"]["AdministratorStackName"]
        .get("Default")
        .is_none());

    // The roles under that path are exactly those allowed to assume the member role.
    let mut on_path = Vec::new();
    for (name, resource) in template["Resources"].as_object().unwrap() {
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        let assumes_member = role_actions(&template, name)
            .iter()
            .any(|action| covers(action, "sts:AssumeRole"));
        let path = &resource["Properties"]["Path"]["Fn::Sub"];
        assert_eq!(
            path == "/cordon/${AWS::StackName}/",
            assumes_member,
            "{name}: path {path}, assumes the member role: {assumes_member}"
        );
        if assumes_member {
            on_path.push(name.clone());
        }
    }
    assert_eq!(on_path.len(), 9, "{on_path:?}");
}

#[test]
fn the_definition_names_no_partition_and_the_stack_gives_its_own() {
    // A task whose Resource says arn:aws: cannot run in aws-us-gov or aws-cn.
    let text =
        std::fs::read_to_string(repo_root().join("statemachine/quarantine.asl.json")).unwrap();
    assert!(
        !text.contains("arn:aws"),
        "a partition written in the definition"
    );
    let mut found = Vec::new();
    let definition = definition();
    tasks(&definition["States"], &mut found);
    for (name, task) in &found {
        let resource = task["Resource"].as_str().unwrap();
        assert!(
            ["${LambdaInvoke}", "${LambdaInvokeWaitForTaskToken}"].contains(&resource),
            "{name}: {resource}"
        );
    }
    let template = template();
    let substitutions =
        &template["Resources"]["QuarantineStateMachine"]["Properties"]["DefinitionSubstitutions"];
    assert_eq!(
        substitutions["LambdaInvoke"]["Fn::Sub"],
        "arn:${AWS::Partition}:states:::lambda:invoke"
    );
    assert_eq!(
        substitutions["LambdaInvokeWaitForTaskToken"]["Fn::Sub"],
        "arn:${AWS::Partition}:states:::lambda:invoke.waitForTaskToken"
    );
}

/// The states one path of an execution enters (Step Functions bills each entry as a state
/// transition) and the Lambda invocations among them, when nothing is retried. `choose`
/// names the branch each Choice takes; a branch the Choice does not have fails the test.
fn walk(states: &serde_json::Value, start: &str, choose: &[(&str, &str)]) -> (u32, u32) {
    let (mut transitions, mut invocations) = (0, 0);
    let mut at = start.to_string();
    loop {
        let state = &states[&at];
        assert!(state.is_object(), "no state {at}");
        transitions += 1;
        match state["Type"].as_str().unwrap() {
            "Task" => {
                let resource = state["Resource"].as_str().unwrap_or_default();
                if resource.contains("LambdaInvoke") || resource.contains(":lambda:") {
                    invocations += 1;
                }
            }
            "Parallel" => {
                for branch in state["Branches"].as_array().unwrap() {
                    let start = branch["StartAt"].as_str().unwrap();
                    let (t, i) = walk(&branch["States"], start, choose);
                    transitions += t;
                    invocations += i;
                }
            }
            "Choice" => {
                let next = choose
                    .iter()
                    .find(|(choice, _)| *choice == at)
                    .unwrap_or_else(|| panic!("the path names no branch for {at}"))
                    .1;
                let offered: Vec<&str> = state["Choices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|c| c["Next"].as_str())
                    .chain(state["Default"].as_str())
                    .collect();
                assert!(
                    offered.contains(&next),
                    "{at} offers {offered:?}, not {next}"
                );
                at = next.to_string();
                continue;
            }
            "Succeed" | "Fail" => return (transitions, invocations),
            _ => {}
        }
        if state["End"] == true {
            return (transitions, invocations);
        }
        at = state["Next"].as_str().unwrap().to_string();
    }
}

/// The README's cost per finding is computed from these counts: they must be the
/// definition's.
#[test]
fn the_readmes_cost_counts_the_transitions_and_invocations_the_definition_makes() {
    let definition = definition();
    let start = definition["StartAt"].as_str().unwrap();
    let contained = [
        ("ShouldContain", "Contain"),
        ("ContainmentOutcome", "RequestApproval"),
    ];
    let paths: [(&str, Vec<(&str, &str)>); 4] = [
        ("skipped", vec![("ShouldContain", "Skipped")]),
        (
            "contained, approved and restored",
            [
                &contained[..],
                &[
                    ("Decision", "Restore"),
                    ("RestoreOutcome", "NotifyRestored"),
                ],
            ]
            .concat(),
        ),
        (
            "contained and kept isolated",
            [&contained[..], &[("Decision", "NotifyKeptIsolated")]].concat(),
        ),
        (
            "report-only",
            vec![
                ("ShouldContain", "Contain"),
                ("ContainmentOutcome", "NotifyReportOnly"),
            ],
        ),
    ];
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for (path, choose) in paths {
        let (transitions, invocations) = walk(&definition["States"], start, &choose);
        let row = format!("| {path} | {transitions} | {invocations} |");
        assert!(readme.contains(&row), "README.md lacks the row {row:?}");
    }
}
