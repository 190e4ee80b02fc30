//! The stack's parameters against the workers: a value the template accepts (its patterns,
//! allowed values, bounds and rules, as CloudFormation checks them before it deploys) must
//! be one the workers it reaches accept at cold start, or the stack deploys and fails on the
//! first finding (`NaclBand=0-99` did). Every documented example and every boundary value
//! is run through both.

use std::collections::BTreeMap;

use cordon_core::approval::SignIn;
use cordon_core::config::Config;
use serde_json::{json, Value};

use super::definition::{functions, template};

/// Parameter values: the template's defaults, with `overrides`.
fn values(template: &Value, overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = template["Parameters"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, parameter)| {
            let default = match &parameter["Default"] {
                Value::String(text) => text.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (name.clone(), default)
        })
        .collect();
    for (name, value) in overrides {
        assert!(values.contains_key(*name), "no parameter {name}");
        values.insert(name.to_string(), value.to_string());
    }
    values
}

/// Whether `value` matches `pattern` as CloudFormation matches an `AllowedPattern`: the whole
/// value.
fn matches(pattern: &str, value: &str) -> bool {
    regex_lite::Regex::new(&format!("^(?:{pattern})$"))
        .unwrap_or_else(|e| panic!("{pattern}: {e}"))
        .is_match(value)
}

/// A rule's condition or assertion, with the functions the template's rules use.
fn holds(expression: &Value, values: &BTreeMap<String, String>) -> bool {
    fn text(expression: &Value, values: &BTreeMap<String, String>) -> String {
        match expression {
            Value::String(text) => text.clone(),
            _ => match expression["Ref"].as_str() {
                Some(name) => values[name].clone(),
                None => panic!("a rule function this test does not know: {expression}"),
            },
        }
    }
    let (function, arguments) = expression.as_object().unwrap().iter().next().unwrap();
    let arguments = arguments.as_array().unwrap();
    match function.as_str() {
        "Fn::Equals" => text(&arguments[0], values) == text(&arguments[1], values),
        "Fn::Not" => !holds(&arguments[0], values),
        "Fn::And" => arguments.iter().all(|a| holds(a, values)),
        "Fn::Or" => arguments.iter().any(|a| holds(a, values)),
        other => panic!("a rule function this test does not know: {other}"),
    }
}

/// What CloudFormation says of `values` before it deploys: Ok, or the first refusal.
fn template_accepts(template: &Value, values: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, parameter) in template["Parameters"].as_object().unwrap() {
        let value = &values[name];
        let items: Vec<&str> = match parameter["Type"].as_str().unwrap() {
            "CommaDelimitedList" => value.split(',').collect(),
            _ => vec![value.as_str()],
        };
        for item in items {
            if let Some(pattern) = parameter["AllowedPattern"].as_str() {
                if !matches(pattern, item) {
                    return Err(format!("{name}={value:?} does not match its pattern"));
                }
            }
            if let Some(allowed) = parameter["AllowedValues"].as_array() {
                if !allowed.iter().any(|a| a.as_str() == Some(item)) {
                    return Err(format!("{name}={value:?} is not an allowed value"));
                }
            }
        }
        if parameter["Type"] == "Number" {
            let number: f64 = value
                .parse()
                .map_err(|_| format!("{name}={value:?} is not a number"))?;
            let below = parameter["MinValue"]
                .as_f64()
                .is_some_and(|min| number < min);
            let above = parameter["MaxValue"]
                .as_f64()
                .is_some_and(|max| number > max);
            if below || above {
                return Err(format!("{name}={value:?} is out of bounds"));
            }
        }
    }
    for (name, rule) in template["Rules"].as_object().unwrap() {
        let applies = rule
            .get("RuleCondition")
            .is_none_or(|condition| holds(condition, values));
        if !applies {
            continue;
        }
        for assertion in rule["Assertions"].as_array().unwrap() {
            if !holds(&assertion["Assert"], values) {
                return Err(format!("rule {name}: {}", assertion["AssertDescription"]));
            }
        }
    }
    Ok(())
}

/// `function`'s environment as the stack sets it from `values` (variables set from anything
/// but a parameter are left out: no parameter reaches them).
fn environment(function: &Value, values: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let variables = &function["Properties"]["Environment"]["Variables"];
    variables
        .as_object()
        .map(|variables| {
            variables
                .iter()
                .filter_map(|(variable, value)| {
                    let parameter = value["Ref"].as_str()?;
                    values
                        .get(parameter)
                        .map(|value| (variable.clone(), value.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What the workers say of `values`: every cold-start parse of a variable set from a
/// parameter, in every function, and capture's read of the definition's substitutions.
fn workers_accept(template: &Value, values: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, function) in functions(template) {
        let env = environment(function, values);
        let lookup = |variable: &str| env.get(variable).cloned();
        let refused = |error: cordon_core::CordonError| format!("{name}: {error}");
        if env.keys().any(|variable| {
            [
                "CORDON_MIN_SEVERITY",
                "CORDON_NACL_BAND",
                "CORDON_FORENSIC_CIDR",
            ]
            .contains(&variable.as_str())
                || variable.starts_with("CORDON_INCLUDE_")
                || variable.starts_with("CORDON_EXEMPT_")
                || ["CORDON_ACCOUNTS", "CORDON_VPCS", "CORDON_MODE"].contains(&variable.as_str())
        }) {
            Config::from_lookup(lookup).map_err(refused)?;
        }
        if env.contains_key("CORDON_OIDC_CLIENT_ID") || env.contains_key("CORDON_APPROVERS") {
            SignIn::from_env(lookup).map_err(refused)?;
        }
        if env.contains_key("CORDON_SECURITY_HUB_WORKFLOW") {
            cordon_core::lifecycle::status::Settings::from_lookup(lookup).map_err(refused)?;
        }
        if env.contains_key("CORDON_APPROVALS_REQUIRED") {
            cordon_core::decision::approvals_required_from(lookup).map_err(refused)?;
        }
    }
    // The state machine hands capture its substitutions, quoted, on every execution.
    let input = json!({
        "event": {},
        "execution": "arn:aws:states:eu-west-1:111122223333:execution:cordon-quarantine:x",
        "approval_timeout_seconds": values["ApprovalTimeoutSeconds"],
        "approvals_required": values["ApprovalsRequired"],
    });
    cordon_core::steps::unwrap_capture_input(&input)
        .map(|_| ())
        .map_err(|error| format!("CaptureState's payload: {error}"))
}

const SIGN_IN: [(&str, &str); 3] = [
    ("OidcIssuer", "https://idp.example.com/realms/soc"),
    ("OidcClientId", "cordon-approval"),
    ("Approvers", "*"),
];

/// Values the README and the parameters' descriptions give, and the edges of what each
/// parameter may be: both the template and the workers take them.
fn accepted() -> Vec<Vec<(&'static str, &'static str)>> {
    let mut cases: Vec<Vec<(&str, &str)>> = vec![vec![]];
    for (name, value) in [
        ("MinSeverity", "0"),
        ("MinSeverity", "10"),
        ("MinSeverity", "8.5"),
        ("ResourceRoles", "ACTOR,TARGET"),
        ("AllowTypePrefixes", "Backdoor:,CryptoCurrency:"),
        ("ForensicCidr", "10.20.0.0/24"),
        ("ForensicCidr", "0.0.0.0/0"),
        ("ForensicCidr", "255.255.255.255/32"),
        ("ForensicSecurityGroup", "sg-0123456789abcdef0"),
        ("NaclBand", "1-99"),
        ("NaclBand", "1-1"),
        ("NaclBand", "32766-32766"),
        ("NaclBand", "1-32766"),
        ("NaclBand", "99-1"),
        ("NaclRuleQuota", "1"),
        ("NaclRuleQuota", "20"),
        ("NaclRuleQuota", "40"),
        ("ApprovalTimeoutSeconds", "60"),
        ("ApprovalTimeoutSeconds", "604800"),
        ("ApprovalTimeoutSeconds", "31536000"),
        ("IncludeSamples", "true"),
        ("AlertEmail", "soc@example.com"),
        ("ApprovalConcurrency", "0"),
        ("CreateCredentialsDenyPolicy", "false"),
        ("EvidenceSnapshots", "false"),
        ("SecurityHubWorkflow", "false"),
        ("ArchiveFindingOnRestore", "true"),
        ("StandbyDecrementsCapacity", "true"),
        ("Accounts", "111122223333"),
        ("Accounts", "111122223333, 444455556666"),
        ("Vpcs", "vpc-0123abcd,vpc-0123456789abcdef0"),
        ("ExemptTagKey", "cordon:exempt"),
        ("ExemptTagKey", "acme:security/cordon exempt"),
        ("ExemptInstanceIds", "i-0123abcd"),
        ("ExemptInstanceIds", "i-0123abcd, i-0123456789abcdef0"),
        ("ExemptAutoScalingGroups", "bastions,build agents"),
        ("Mode", "contain"),
        ("Mode", "report-only"),
    ] {
        cases.push(vec![(name, value)]);
    }
    for (issuer, client, approvers) in [
        ("https://idp.example.com/realms/soc", "cordon-approval", "*"),
        (
            "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
            "00000000-0000-0000-0000-000000000001",
            "ada@example.com,@soc.example.com,group:incident-responders",
        ),
        ("https://example.okta.com:65535", "0oa1", "ada@"),
        ("https://x", "c", "group:a@b"),
    ] {
        cases.push(vec![
            ("OidcIssuer", issuer),
            ("OidcClientId", client),
            ("Approvers", approvers),
        ]);
    }
    cases.push(vec![
        SIGN_IN[0],
        SIGN_IN[1],
        ("Approvers", "ada@example.com,grace@example.com"),
        ("ApprovalsRequired", "2"),
    ]);
    cases
}

/// Values the template used to accept and a worker cannot read: deployed, each failed every
/// finding (or every approval) at cold start.
fn unreadable() -> Vec<Vec<(&'static str, &'static str)>> {
    let mut cases: Vec<Vec<(&str, &str)>> = Vec::new();
    for (name, value) in [
        ("NaclBand", "0-99"),
        ("NaclBand", "0-0"),
        ("NaclBand", "1-32767"),
        ("NaclBand", "99999-99999"),
        ("ForensicCidr", "10.0.0.0/33"),
        ("ForensicCidr", "10.0.0.0/99"),
        ("ForensicCidr", "256.0.0.0/8"),
        ("ForensicCidr", "010.0.0.0/8"),
        ("NaclRuleQuota", "20.0"),
        ("NaclRuleQuota", "1.5"),
        ("ApprovalTimeoutSeconds", "600.5"),
        ("ApprovalTimeoutSeconds", "60.0"),
        ("ExemptInstanceIds", "i-0123"),
        ("Accounts", "1111-2222-3333"),
        ("Vpcs", "vpc-1"),
        ("ExemptInstanceIds", "web-1"),
        // Sign-in settings without the provider they belong to.
        ("OidcClientId", "cordon-approval"),
        ("Approvers", "*"),
    ] {
        cases.push(vec![(name, value)]);
    }
    for (issuer, approvers) in [
        ("https://example.com:65536", "*"),
        ("https://:443", "*"),
        ("https://user@", "*"),
        ("https://999.1.1.1", "*"),
        (SIGN_IN[0].1, ","),
        (SIGN_IN[0].1, "ada"),
        (SIGN_IN[0].1, "@localhost"),
        (SIGN_IN[0].1, "a@b@c.com"),
        (SIGN_IN[0].1, "group:"),
    ] {
        cases.push(vec![
            ("OidcIssuer", issuer),
            ("OidcClientId", "cordon-approval"),
            ("Approvers", approvers),
        ]);
    }
    cases
}

/// Values past each parameter's edges: the template refuses them before anything is
/// deployed. The unreadable ones, and others the workers would take but must not be given
/// (a wait Step Functions cannot keep, the two-person rule with anyone approving).
fn refused() -> Vec<Vec<(&'static str, &'static str)>> {
    let mut cases = unreadable();
    for (name, value) in [
        ("NaclRuleQuota", "0"),
        ("NaclRuleQuota", "41"),
        ("ApprovalTimeoutSeconds", "59"),
        ("ApprovalTimeoutSeconds", "31536001"),
        ("MinSeverity", "10.1"),
        ("ApprovalsRequired", "3"),
        ("ForensicCidr", "10.0.0.0"),
        ("ExemptInstanceIds", "i-0123abcd,"),
    ] {
        cases.push(vec![(name, value)]);
    }
    cases.push(vec![
        ("OidcIssuer", "http://idp.example.com"),
        SIGN_IN[1],
        SIGN_IN[2],
    ]);
    cases.push(vec![
        SIGN_IN[0],
        SIGN_IN[1],
        SIGN_IN[2],
        ("ApprovalsRequired", "2"),
    ]);
    cases
}

#[test]
fn every_value_the_template_accepts_starts_the_workers() {
    let template = template();
    for case in accepted() {
        let values = values(&template, &case);
        assert_eq!(template_accepts(&template, &values), Ok(()), "{case:?}");
        assert_eq!(workers_accept(&template, &values), Ok(()), "{case:?}");
    }
    for case in refused() {
        let values = values(&template, &case);
        let verdict = template_accepts(&template, &values);
        // Were it deployed, the workers would refuse it too: the template is what stops it.
        assert!(
            verdict.is_err(),
            "the template accepts {case:?}, and the workers say {:?}",
            workers_accept(&template, &values)
        );
    }
}

#[test]
fn what_the_template_refuses_for_the_workers_sake_they_cannot_read() {
    // The template's refusals are not its fancy: had it deployed these, a worker would have
    // refused them at cold start (or capture, every execution's payload).
    let template = template();
    for case in unreadable() {
        let verdict = workers_accept(&template, &values(&template, &case));
        assert!(verdict.is_err(), "the workers read {case:?}");
    }
}
