//! `cordon graph`: the state machine as a Mermaid flowchart, drawn from the definition itself
//! so that the README's picture cannot drift from what runs.

use serde_json::Value;

fn node(name: &str, state: &Value) -> String {
    let label = name;
    match state["Type"].as_str().unwrap_or("") {
        "Choice" => format!("{name}{{{label}}}"),
        "Succeed" | "Fail" => format!("{name}(({label}))"),
        "Parallel" => format!("{name}[[{label}]]"),
        _ => format!("{name}[{label}]"),
    }
}

/// What a choice rule tests, as short as the graph needs: the value compared (`approve`), or
/// for an `And`, "all VALUE" when every part compares one value and its parts joined
/// otherwise; presence checks are left out.
fn choice_label(rule: &Value) -> Option<String> {
    if let Some(parts) = rule["And"].as_array() {
        let labels: Vec<String> = parts.iter().filter_map(choice_label).collect();
        return match labels.as_slice() {
            [] => None,
            [first, rest @ ..] if !rest.is_empty() && rest.iter().all(|l| l == first) => {
                Some(format!("all {first}"))
            }
            _ => Some(labels.join(" and ")),
        };
    }
    if let Some(value) = rule["StringEquals"].as_str() {
        return Some(value.to_string());
    }
    let field = rule["Variable"].as_str()?.rsplit('.').next()?.to_string();
    rule["NumericEquals"]
        .as_number()
        .map(|n| format!("{field} = {n}"))
}

fn edges(name: &str, state: &Value, out: &mut Vec<String>) {
    let mut add = |to: &Value, label: Option<String>| {
        if let Some(to) = to.as_str() {
            out.push(match label {
                Some(label) => format!("    {name} -->|{label}| {to}"),
                None => format!("    {name} --> {to}"),
            });
        }
    };
    for choice in state["Choices"].as_array().into_iter().flatten() {
        add(&choice["Next"], choice_label(choice));
    }
    add(&state["Default"], Some("otherwise".into()));
    add(&state["Next"], None);
    for catch in state["Catch"].as_array().into_iter().flatten() {
        let errors: Vec<&str> = catch["ErrorEquals"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        add(&catch["Next"], Some(errors.join(", ")));
    }
}

fn machine(states: &Value, lines: &mut Vec<String>, indent: &str) {
    let Some(states) = states.as_object() else {
        return;
    };
    for (name, state) in states {
        if state["Type"] == "Parallel" {
            lines.push(format!("{indent}{}", node(name, state)));
            for (index, branch) in state["Branches"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                lines.push(format!("{indent}subgraph {name}Branch{index} [\" \"]"));
                machine(&branch["States"], lines, &format!("{indent}    "));
                lines.push(format!("{indent}end"));
                if let Some(start) = branch["StartAt"].as_str() {
                    lines.push(format!("{indent}{name} -.-> {start}"));
                }
            }
        } else {
            lines.push(format!("{indent}{}", node(name, state)));
        }
        let mut out = Vec::new();
        edges(name, state, &mut out);
        lines.extend(
            out.into_iter()
                .map(|e| format!("{indent}{}", e.trim_start())),
        );
    }
}

/// The definition as a Mermaid `flowchart TD`.
pub fn mermaid(definition: &str) -> Result<String, String> {
    let value: Value =
        serde_json::from_str(definition).map_err(|e| format!("the definition is not JSON: {e}"))?;
    let mut lines = vec!["flowchart TD".to_string()];
    if let Some(start) = value["StartAt"].as_str() {
        lines.push(format!("    Start(( )) --> {start}"));
    }
    machine(&value["States"], &mut lines, "    ");
    Ok(lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_transition_of_the_definition_is_drawn() {
        let graph = mermaid(crate::runner::DEFINITION).unwrap();
        let definition: Value = serde_json::from_str(crate::runner::DEFINITION).unwrap();
        for name in definition["States"].as_object().unwrap().keys() {
            assert!(graph.contains(&format!("    {name}")), "{name} missing");
        }
        for expected in [
            "CaptureState --> ShouldContain",
            "ShouldContain -->|skipped| Skipped",
            "ShouldContain -->|already_quarantined| AlreadyQuarantined",
            "RequestApproval -->|States.Timeout| NotifyKeptIsolated",
            "Decision -->|approve| Restore",
            "Contain -.-> IsolateSecurityGroups",
            "IsolateSecurityGroups -->|States.ALL| SecurityGroupsFailed",
        ] {
            assert!(graph.contains(expected), "{expected} missing from\n{graph}");
        }
    }

    #[test]
    fn the_readme_shows_the_current_graph() {
        let readme = include_str!("../../README.md");
        let graph = mermaid(crate::runner::DEFINITION).unwrap();
        assert!(
            readme.contains(&format!("```mermaid\n{graph}```")),
            "README.md's diagram differs from the definition: paste the output of `cordon graph`"
        );
    }
}
