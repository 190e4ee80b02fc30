//! What `cordon smoke-test` decides, as pure functions: what an instance holds that Cordon
//! changes, whether that is a containment and whether a restore gave it all back, the
//! synthetic finding, and whether a state machine is one the test can prove.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

/// What an instance holds that Cordon changes and must give back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Held {
    /// Each interface's groups, by interface id.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Each interface's groups' names, by group id.
    #[serde(skip)]
    pub names: BTreeMap<String, String>,
    /// Each interface's connection tracking timeouts, as EC2 gives them.
    pub conntrack: BTreeMap<String, String>,
    pub termination_protection: bool,
    pub shutdown_behavior: String,
    /// Each attached volume's DeleteOnTermination, by volume id.
    pub volumes: BTreeMap<String, bool>,
    /// The instance's tags under `cordon:`.
    pub cordon_tags: Vec<String>,
    /// Whether the VPC holds the instance's claim group (`cordon-claim-<instance>`).
    pub claim: bool,
    /// Every entry of every ACL of the instance's VPC, by ACL.
    pub acl_entries: BTreeMap<String, Vec<String>>,
    /// Deny entries of the remote address in the ACL of the instance's subnet: (in, out).
    pub remote_denies: (usize, usize),
}

/// The address the synthetic finding says the instance talked to: one of TEST-NET-2
/// (198.51.100.0/24, never routed), chosen by the instance so that runs side by side deny
/// different ones.
pub fn remote_address(instance_id: &str) -> String {
    let sum: u32 = instance_id.bytes().map(u32::from).sum();
    format!("198.51.100.{}", 1 + sum % 254)
}

/// Whether `held` is contained as Cordon contains: every interface on its VPC's isolation
/// group alone, termination protection on, a shutdown stops it (the test launches it to
/// terminate), the remote address denied both ways.
pub fn contained(held: &Held, vpc_id: &str, remote: &str) -> Result<String, String> {
    let isolation = format!("cordon-isolation-{vpc_id}");
    let mut problems = Vec::new();
    for (interface, groups) in &held.groups {
        let names: Vec<&str> = groups
            .iter()
            .map(|g| held.names.get(g).map(String::as_str).unwrap_or(g))
            .collect();
        if names != [isolation.as_str()] {
            problems.push(format!(
                "{interface} is on {names:?}, not on {isolation} alone"
            ));
        }
    }
    if held.groups.is_empty() {
        problems.push("the instance has no network interface".into());
    }
    if !held.termination_protection {
        problems.push("termination protection is off".into());
    }
    if held.shutdown_behavior != "stop" {
        problems.push(format!(
            "a shutdown would {} the instance, not stop it",
            held.shutdown_behavior
        ));
    }
    let (inbound, outbound) = held.remote_denies;
    if inbound == 0 || outbound == 0 {
        problems.push(format!(
            "the subnet's ACL denies {remote} {inbound} time(s) inbound and {outbound} outbound, not both ways"
        ));
    }
    match problems.is_empty() {
        true => Ok(format!(
            "{} interface(s) on {isolation} alone; termination protection on; a shutdown stops it; {remote} denied both ways",
            held.groups.len()
        )),
        false => Err(problems.join("; ")),
    }
}

/// Whether `after` is exactly `before`, and nothing of Cordon's is left of the instance.
pub fn restored_exactly(before: &Held, after: &Held) -> Result<String, String> {
    let mut problems = Vec::new();
    let mut differs = |what: &str, now: String, then: String| {
        if now != then {
            problems.push(format!("{what} {now}, before {then}"));
        }
    };
    differs(
        "interfaces on",
        format!("{:?}", after.groups),
        format!("{:?}", before.groups),
    );
    differs(
        "connection tracking",
        format!("{:?}", after.conntrack),
        format!("{:?}", before.conntrack),
    );
    differs(
        "termination protection",
        after.termination_protection.to_string(),
        before.termination_protection.to_string(),
    );
    differs(
        "shutdown behavior",
        after.shutdown_behavior.clone(),
        before.shutdown_behavior.clone(),
    );
    differs(
        "volumes (DeleteOnTermination)",
        format!("{:?}", after.volumes),
        format!("{:?}", before.volumes),
    );
    differs(
        "ACL entries",
        format!("{:?}", after.acl_entries),
        format!("{:?}", before.acl_entries),
    );
    if !after.cordon_tags.is_empty() {
        problems.push(format!("Cordon's tags left: {:?}", after.cordon_tags));
    }
    if after.claim {
        problems.push("the instance's claim group is still there".into());
    }
    match problems.is_empty() {
        true => Ok(format!(
            "interfaces, connection tracking, termination protection ({}), shutdown behavior ({}), volumes and every ACL of the VPC as before; no claim or cordon: tag left",
            after.termination_protection, after.shutdown_behavior
        )),
        false => Err(problems.join("; ")),
    }
}

/// The newest of `images` (id, creation date as EC2 gives it, ISO 8601), if any.
pub fn newest_image(images: &[(String, String)]) -> Option<&str> {
    images
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1))
        .map(|(id, _)| id.as_str())
}

/// One network interface as GuardDuty describes it in a finding.
pub struct FindingInterface<'a> {
    pub id: &'a str,
    pub vpc_id: &'a str,
    pub subnet_id: &'a str,
    pub private_ipv4: Option<&'a str>,
}

/// The synthetic finding: GuardDuty's C&C finding (severity 8), for `instance_id` of
/// `account` in `region`, with its interfaces as GuardDuty gives them (so that a stack scoped
/// to some VPCs skips it as it would skip a real one), marked as Cordon's smoke test in its id,
/// title and description.
pub fn finding(
    instance_id: &str,
    interfaces: &[FindingInterface<'_>],
    account: &str,
    region: &str,
    partition: &str,
) -> Value {
    let id = format!("cordon-smoke-test-{instance_id}");
    let now = cordon_core::steps::now_rfc3339();
    let interfaces: Vec<Value> = interfaces
        .iter()
        .map(|i| {
            json!({"networkInterfaceId": i.id, "vpcId": i.vpc_id, "subnetId": i.subnet_id,
                "privateIpAddress": i.private_ipv4})
        })
        .collect();
    json!({
        "schemaVersion": "2.0",
        "accountId": account,
        "region": region,
        "partition": partition,
        "id": id,
        // A detector id of GuardDuty's shape (letters and digits), which Cordon checks.
        "arn": format!("arn:{partition}:guardduty:{region}:{account}:detector/cordonsmoketest/finding/{id}"),
        "type": "Backdoor:EC2/C&CActivity.B",
        "resource": {"resourceType": "Instance", "instanceDetails": {
            "instanceId": instance_id, "networkInterfaces": interfaces}},
        "service": {"serviceName": "guardduty", "resourceRole": "ACTOR", "archived": false, "count": 1,
            "eventFirstSeen": now, "eventLastSeen": now,
            "action": {"actionType": "NETWORK_CONNECTION", "networkConnectionAction": {
                "connectionDirection": "OUTBOUND", "protocol": "TCP", "blocked": false,
                "remoteIpDetails": {"ipAddressV4": remote_address(instance_id)},
                "remotePortDetails": {"port": 443, "portName": "HTTPS"}}}},
        "severity": 8.0,
        "createdAt": now,
        "updatedAt": now,
        "title": "Cordon smoke test (synthetic finding: no compromise)",
        "description": "A synthetic finding that `cordon smoke-test` sent to prove Cordon's deployment; the instance it names was launched for the test and is terminated after it."
    })
}

/// Why the state machine whose definition this is cannot be proven by the smoke test, if it
/// cannot: it is not Cordon's, or it needs two approvers (a break-glass decision is never
/// the second).
pub fn unprovable(definition: &Value) -> Option<String> {
    let states = &definition["States"];
    if states.get("CaptureState").is_none() || states.get("RequestApproval").is_none() {
        return Some("it is not Cordon's quarantine workflow (no CaptureState and RequestApproval states): give the StateMachineArn output of Cordon's stack".into());
    }
    if approvals_required(definition) == Some(2) {
        return Some("the stack asks two approvers (ApprovalsRequired=2), and the smoke test approves as one, with the break-glass key, which is never the second: prove it on a stack that asks one, or approve the second time from the email".into());
    }
    None
}

/// The definition's `approvals_required`, wherever a state sets it as a constant.
fn approvals_required(value: &Value) -> Option<u64> {
    match value {
        Value::Object(fields) => fields.iter().find_map(|(key, field)| {
            let constant = match field {
                Value::String(text) => text.trim().parse().ok(),
                Value::Number(number) => number.as_u64(),
                _ => None,
            };
            match (key.as_str(), constant) {
                ("approvals_required", Some(n)) => Some(n),
                _ => approvals_required(field),
            }
        }),
        Value::Array(items) => items.iter().find_map(approvals_required),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_core::finding::{parse_document, ParsedFinding};
    use cordon_core::policy::Verdict;

    fn held(groups: &[(&str, &[&str])], names: &[(&str, &str)]) -> Held {
        Held {
            groups: groups
                .iter()
                .map(|(eni, gs)| (eni.to_string(), gs.iter().map(|g| g.to_string()).collect()))
                .collect(),
            names: names
                .iter()
                .map(|(id, name)| (id.to_string(), name.to_string()))
                .collect(),
            termination_protection: true,
            shutdown_behavior: "stop".into(),
            remote_denies: (1, 1),
            ..Held::default()
        }
    }

    #[test]
    fn contained_means_the_isolation_group_alone_protection_stop_and_both_denies() {
        let names = [("sg-1", "cordon-isolation-vpc-1"), ("sg-2", "web")];
        let remote = "198.51.100.9";
        assert!(contained(&held(&[("eni-1", &["sg-1"])], &names), "vpc-1", remote).is_ok());
        let with_web = held(&[("eni-1", &["sg-1", "sg-2"])], &names);
        assert!(contained(&with_web, "vpc-1", remote)
            .unwrap_err()
            .contains("eni-1"));
        // A group named for another VPC's isolation is not this one's.
        assert!(contained(&held(&[("eni-1", &["sg-1"])], &names), "vpc-2", remote).is_err());
        let mut unprotected = held(&[("eni-1", &["sg-1"])], &names);
        unprotected.termination_protection = false;
        unprotected.shutdown_behavior = "terminate".into();
        unprotected.remote_denies = (2, 0);
        let problem = contained(&unprotected, "vpc-1", remote).unwrap_err();
        for expected in ["termination protection is off", "terminate", "0 outbound"] {
            assert!(problem.contains(expected), "{problem}");
        }
        assert!(contained(&held(&[], &names), "vpc-1", remote).is_err());
    }

    #[test]
    fn restored_exactly_compares_everything_cordon_changes() {
        let before = Held {
            termination_protection: false,
            shutdown_behavior: "terminate".into(),
            volumes: BTreeMap::from([("vol-1".to_string(), true)]),
            acl_entries: BTreeMap::from([("acl-1".to_string(), vec!["100 allow".to_string()])]),
            conntrack: BTreeMap::from([("eni-1".to_string(), "None".to_string())]),
            remote_denies: (0, 0),
            ..held(&[("eni-1", &["sg-2"])], &[])
        };
        assert!(restored_exactly(&before, &before.clone()).is_ok());
        let changes: [fn(&mut Held); 8] = [
            |h| {
                h.groups.insert("eni-1".into(), vec!["sg-1".into()]);
            },
            |h| h.termination_protection = true,
            |h| h.shutdown_behavior = "stop".into(),
            |h| h.cordon_tags.push("cordon:asg:0".into()),
            |h| {
                h.volumes.insert("vol-1".into(), false);
            },
            |h| {
                h.acl_entries
                    .get_mut("acl-1")
                    .unwrap()
                    .push("60 deny".into())
            },
            |h| {
                h.conntrack.insert("eni-1".into(), "60".into());
            },
            |h| h.claim = true,
        ];
        for change in changes {
            let mut after = before.clone();
            change(&mut after);
            assert!(restored_exactly(&before, &after).is_err(), "{after:?}");
        }
    }

    #[test]
    fn the_newest_image_is_chosen() {
        let images = [
            ("ami-1".to_string(), "2025-01-10T00:00:00.000Z".to_string()),
            ("ami-2".to_string(), "2026-11-20T00:00:00.000Z".to_string()),
            ("ami-3".to_string(), "2026-03-01T00:00:00.000Z".to_string()),
        ];
        assert_eq!(newest_image(&images), Some("ami-2"));
        assert_eq!(newest_image(&[]), None);
    }

    #[test]
    fn the_remote_address_is_in_test_net_2_and_differs_between_instances() {
        let a = remote_address("i-0123456789abcdef0");
        let b = remote_address("i-0123456789abcdef1");
        assert!(a.starts_with("198.51.100.") && b.starts_with("198.51.100."));
        assert_ne!(a, b);
        for id in ["i-0", "i-ffffffffffffffffff"] {
            let last: u32 = remote_address(id)
                .rsplit('.')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=254).contains(&last));
        }
    }

    #[test]
    fn the_synthetic_finding_is_one_cordon_contains_under_its_default_policy() {
        let interfaces = [FindingInterface {
            id: "eni-1",
            vpc_id: "vpc-1",
            subnet_id: "subnet-1",
            private_ipv4: Some("10.0.1.5"),
        }];
        let finding = finding(
            "i-0123456789abcdef0",
            &interfaces,
            "111122223333",
            "eu-west-1",
            "aws",
        );
        let parsed = parse_document(&finding.to_string());
        let [ParsedFinding::Valid(parsed)] = &parsed[..] else {
            panic!("{parsed:?}")
        };
        assert_eq!(parsed.instance_id.as_deref(), Some("i-0123456789abcdef0"));
        let decision = cordon_core::config::Config::default().policy.decide(parsed);
        assert_eq!(decision.verdict, Verdict::Quarantine, "{}", decision.reason);
    }

    #[test]
    fn only_cordons_workflow_with_one_approver_can_be_proven() {
        let ours: Value = serde_json::from_str(cordon::runner::DEFINITION).unwrap();
        let mut one = ours.clone();
        set_approvals(&mut one, "1");
        assert_eq!(unprovable(&one), None);
        let mut two = ours.clone();
        set_approvals(&mut two, "2");
        assert!(unprovable(&two).unwrap().contains("two approvers"));
        let other = json!({"States": {"Hello": {"Type": "Pass", "End": true}}});
        assert!(unprovable(&other).unwrap().contains("not Cordon's"));
    }

    /// The definition as the stack deploys it, with `ApprovalsRequired` substituted.
    fn set_approvals(definition: &mut Value, value: &str) {
        match definition {
            Value::Object(fields) => {
                for (key, field) in fields.iter_mut() {
                    if key == "approvals_required" && field.is_string() {
                        *field = json!(value);
                    } else {
                        set_approvals(field, value);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| set_approvals(i, value)),
            _ => {}
        }
    }
}
