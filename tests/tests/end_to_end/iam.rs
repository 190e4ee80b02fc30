//! Least privilege, judged by a real IAM evaluator (`@cloud-copilot/iam-simulate`, pinned in
//! tests/package.json, run by tests/iam/simulate.mjs in strict mode) against the policies as
//! CloudFormation would deploy them (tests/src/cfn.rs): the member role Cordon acts through in
//! every account, who may assume it, and who may seal and check records with the record key.
//! moto enforces none of this. Each case is a call Cordon makes (allowed) or one the policies
//! exist to refuse (denied); a statement removed or widened fails a case.

use std::io::Write;

use cordon_tests::cfn::{Deployment, Resolved};
use cordon_tests::repo_root;
use serde_json::{json, Value};

const ADMIN: &str = "111111111111";
const MEMBER: &str = "222222222222";
const REGION: &str = "us-east-1";
const EXTERNAL_ID: &str = "cordon-external-id";

pub(super) fn yaml(path: &str) -> Value {
    serde_norway::from_str(&std::fs::read_to_string(repo_root().join(path)).unwrap()).unwrap()
}

pub(super) fn deployment(account: &str, parameters: &[(&str, Value)]) -> Deployment {
    Deployment {
        account: account.into(),
        region: REGION.into(),
        partition: "aws".into(),
        // Not "cordon": the workers' path is /cordon/<stack>/, and a path with the two swapped
        // must not pass.
        stack_name: "cordon-prod".into(),
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

/// The tag keys of a claim group carrying its sealed record.
fn claim_keys() -> Value {
    json!([
        "cordon:role",
        "Name",
        "cordon:instance",
        "cordon:owner",
        "cordon:claimed-at",
        "cordon:state:0",
        "cordon:state:mac"
    ])
}

/// Cordon's stack in the administrator account.
fn administrator_stack(template: &Value) -> Resolved<'_> {
    Resolved::new(
        template,
        deployment(ADMIN, &[("MemberExternalId", json!(EXTERNAL_ID))]),
    )
}

/// An identity policy that IAM lets do everything: what the key and trust policies must hold
/// out on their own.
fn allowed_everything() -> Vec<(String, Value)> {
    vec![(
        "admin".to_string(),
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    )]
}

/// One request, and what IAM must answer.
pub(super) struct Case {
    pub(super) name: String,
    pub(super) simulation: Value,
    pub(super) allowed: bool,
}

pub(super) fn policies(list: &[(String, Value)]) -> Value {
    json!(list
        .iter()
        .map(|(name, policy)| json!({"name": name, "policy": policy}))
        .collect::<Vec<_>>())
}

pub(super) fn request(
    principal: &str,
    action: &str,
    resource: &str,
    account: &str,
    context: Value,
) -> Value {
    let mut context = context.as_object().cloned().unwrap_or_default();
    // What AWS sets on every request of a role session.
    let role_arn = principal.to_string();
    context.entry("aws:PrincipalArn").or_insert(json!(role_arn));
    context
        .entry("aws:PrincipalAccount")
        .or_insert(json!(principal.split(':').nth(4).unwrap()));
    context
        .entry("aws:PrincipalType")
        .or_insert(json!("AssumedRole"));
    json!({
        "principal": principal,
        "action": action,
        "resource": {"resource": resource, "accountId": account},
        "contextVariables": context,
    })
}

/// Runs every case through the evaluator; each failure is listed, then the test fails.
pub(super) fn judge(cases: Vec<Case>) {
    let input: Vec<Value> = cases
        .iter()
        .map(|c| json!({"name": c.name, "simulation": c.simulation}))
        .collect();
    let mut child = std::process::Command::new("node")
        .arg(repo_root().join("tests/iam/simulate.mjs"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (scripts/setup --tests installs the evaluator)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the evaluator failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let mut failures = Vec::new();
    for (case, result) in cases.iter().zip(&results) {
        let answer = result["result"].as_str().unwrap();
        if answer == "Error" {
            failures.push(format!(
                "{}: not a valid request: {}",
                case.name, result["errors"]
            ));
            continue;
        }
        // A key the request carries that does not apply to its action: not the request AWS
        // would judge.
        if result["ignoredContextKeys"]
            .as_array()
            .is_some_and(|keys| !keys.is_empty())
        {
            failures.push(format!(
                "{}: context keys ignored: {}",
                case.name, result["ignoredContextKeys"]
            ));
        }
        let allowed = answer == "Allowed";
        if allowed != case.allowed {
            failures.push(format!(
                "{}: {answer}, expected {}",
                case.name,
                if case.allowed { "Allowed" } else { "denied" }
            ));
        }
    }
    assert_eq!(results.len(), cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn member_role(template: &Value) -> (String, Vec<(String, Value)>, Value) {
    let resolved = Resolved::new(
        template,
        deployment(
            MEMBER,
            &[
                ("AdministratorAccountId", json!(ADMIN)),
                ("AdministratorStackName", json!("cordon-prod")),
                ("ExternalId", json!(EXTERNAL_ID)),
            ],
        ),
    );
    let arn = resolved.arn_of("MemberRole");
    let trust = resolved
        .resolve(&resolved.resources()["MemberRole"]["Properties"]["AssumeRolePolicyDocument"]);
    (arn, resolved.role_policies("MemberRole"), trust)
}

/// The member role: each kind of call containment and restore make through it is allowed,
/// and each near miss the conditions exist for is refused.
#[test]
fn the_member_role_allows_containment_and_refuses_its_near_misses() {
    let template = yaml("infra/member-role.yaml");
    let (role, role_policies, _) = member_role(&template);
    let ec2 = |kind: &str, id: &str| format!("arn:aws:ec2:{REGION}:{MEMBER}:{kind}/{id}");
    let claim_keys = claim_keys();
    let cases: Vec<(&str, &str, String, Value, bool)> = vec![
        (
            "read instances",
            "ec2:DescribeInstances",
            "*".into(),
            json!({}),
            true,
        ),
        (
            "read interfaces (restore's groups in use)",
            "ec2:DescribeNetworkInterfaces",
            "*".into(),
            json!({}),
            true,
        ),
        (
            "a claim group in the instance's VPC",
            "ec2:CreateSecurityGroup",
            ec2("vpc", "vpc-1"),
            json!({}),
            true,
        ),
        (
            "a claim group carrying the sealed record",
            "ec2:CreateSecurityGroup",
            ec2("security-group", "*"),
            json!({"aws:RequestTag/cordon:role": "claim", "aws:TagKeys": claim_keys}),
            true,
        ),
        (
            "the claim's tags in the call that makes it",
            "ec2:CreateTags",
            ec2("security-group", "sg-claim"),
            json!({"ec2:CreateAction": "CreateSecurityGroup", "aws:TagKeys": claim_keys}),
            true,
        ),
        (
            "a group of any other role",
            "ec2:CreateSecurityGroup",
            ec2("security-group", "*"),
            json!({"aws:RequestTag/cordon:role": "admin", "aws:TagKeys": ["cordon:role", "Name"]}),
            false,
        ),
        (
            "the isolation swap",
            "ec2:ModifyNetworkInterfaceAttribute",
            ec2("network-interface", "eni-1"),
            json!({}),
            true,
        ),
        (
            "rules on the isolation group",
            "ec2:AuthorizeSecurityGroupIngress",
            ec2("security-group", "sg-isolation"),
            json!({"aws:ResourceTag/cordon:role": "isolation"}),
            true,
        ),
        (
            "rules on an application's group",
            "ec2:AuthorizeSecurityGroupIngress",
            ec2("security-group", "sg-web"),
            json!({}),
            false,
        ),
        (
            "delete the VPC's unused conversion group",
            "ec2:DeleteSecurityGroup",
            ec2("security-group", "sg-conversion"),
            json!({"aws:ResourceTag/cordon:role": "conversion"}),
            true,
        ),
        // No worker deletes it (`cordon cleanup` does, with the operator's own credentials).
        (
            "delete the VPC's isolation group",
            "ec2:DeleteSecurityGroup",
            ec2("security-group", "sg-isolation"),
            json!({"aws:ResourceTag/cordon:role": "isolation"}),
            false,
        ),
        (
            "delete an application's group",
            "ec2:DeleteSecurityGroup",
            ec2("security-group", "sg-web"),
            json!({"aws:ResourceTag/cordon:role": "web"}),
            false,
        ),
        (
            "a deny in an ACL",
            "ec2:CreateNetworkAclEntry",
            ec2("network-acl", "acl-1"),
            json!({}),
            true,
        ),
        (
            "the ACL record of an instance's run",
            "ec2:CreateTags",
            ec2("network-acl", "acl-1"),
            json!({"aws:TagKeys": ["cordon:i-0123456789abcdef0:0a1b2c3d:0"]}),
            true,
        ),
        (
            "any other tag on an ACL",
            "ec2:CreateTags",
            ec2("network-acl", "acl-1"),
            json!({"aws:TagKeys": ["Name"]}),
            false,
        ),
        (
            "exempt the instance by tag",
            "ec2:CreateTags",
            ec2("instance", "i-1"),
            json!({"aws:TagKeys": ["cordon:exempt"]}),
            false,
        ),
        (
            "rewrite a group's tags that is not a claim",
            "ec2:CreateTags",
            ec2("security-group", "sg-web"),
            json!({"aws:TagKeys": ["cordon:state:0"]}),
            false,
        ),
        (
            "take over a lapsed claim",
            "ec2:CreateTags",
            ec2("security-group", "sg-claim"),
            json!({"aws:ResourceTag/cordon:role": "claim", "aws:TagKeys": ["cordon:owner", "cordon:claimed-at", "cordon:state:0", "cordon:state:mac"]}),
            true,
        ),
        (
            "attach a policy other than Cordon's deny to a role",
            "iam:AttachRolePolicy",
            format!("arn:aws:iam::{MEMBER}:role/app"),
            json!({"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"}),
            false,
        ),
        (
            "attach Cordon's deny to the instance's role",
            "iam:AttachRolePolicy",
            format!("arn:aws:iam::{MEMBER}:role/app"),
            json!({"iam:PolicyARN": format!("arn:aws:iam::{MEMBER}:policy/cordon/cordon-deny-quarantined-instances")}),
            true,
        ),
    ];
    judge(
        cases
            .into_iter()
            .map(|(name, action, resource, context, allowed)| Case {
                name: format!("member role: {name}"),
                simulation: json!({
                    "request": request(&role, action, &resource, MEMBER, context),
                    "identityPolicies": policies(&role_policies),
                    "serviceControlPolicies": [],
                    "resourceControlPolicies": [],
                }),
                allowed,
            })
            .collect(),
    );
}

/// Who may assume the member role: the workers of Cordon's stack (by their path), with the
/// external id, and no other principal of the administrator account.
#[test]
fn only_cordons_workers_may_assume_the_member_role() {
    let member = yaml("infra/member-role.yaml");
    let (role, _, trust) = member_role(&member);
    let template = yaml("infra/template.yaml");
    let admin = administrator_stack(&template);
    let worker = admin.arn_of("IsolateSecurityGroupsRole");
    assert!(worker.contains(":role/cordon/cordon-prod/"), "{worker}");
    let worker_policies = admin.role_policies("IsolateSecurityGroupsRole");
    let anyone = allowed_everything();
    let other = format!("arn:aws:iam::{ADMIN}:role/Admin");
    let cases = [
        (
            "a worker with the external id",
            &worker,
            &worker_policies,
            json!({"sts:ExternalId": EXTERNAL_ID}),
            true,
        ),
        (
            "a worker without it",
            &worker,
            &worker_policies,
            json!({}),
            false,
        ),
        (
            "a worker with another",
            &worker,
            &worker_policies,
            json!({"sts:ExternalId": "guess"}),
            false,
        ),
        (
            "another principal of the administrator account, allowed everything by IAM",
            &other,
            &anyone,
            json!({"sts:ExternalId": EXTERNAL_ID}),
            false,
        ),
    ];
    judge(
        cases
            .into_iter()
            .map(|(name, principal, identity, context, allowed)| Case {
                name: format!("assume the member role: {name}"),
                simulation: json!({
                    "request": request(principal, "sts:AssumeRole", &role, MEMBER, context),
                    "identityPolicies": policies(identity),
                    "resourcePolicy": trust,
                    "serviceControlPolicies": [],
                    "resourceControlPolicies": [],
                }),
                allowed,
            })
            .collect(),
    );
}

/// The record key: only capture and the ACL step seal; restore checks; an administrator whom
/// IAM allows everything may check but never seal; an instance's credentials do neither.
#[test]
fn only_capture_and_the_acl_step_seal_records() {
    let template = yaml("infra/template.yaml");
    let admin = administrator_stack(&template);
    let key = admin.arn_of("RecordKey");
    let key_policy = admin.resolve(&admin.resources()["RecordKey"]["Properties"]["KeyPolicy"]);
    let everything = allowed_everything();
    let administrator = format!("arn:aws:iam::{ADMIN}:role/Admin");
    let mut cases = Vec::new();
    let mut case = |name: &str,
                    principal: String,
                    identity: Vec<(String, Value)>,
                    action: &str,
                    context: Value,
                    allowed: bool| {
        cases.push(Case {
            name: format!("record key: {name}"),
            simulation: json!({
                "request": request(&principal, action, &key, ADMIN, context),
                "identityPolicies": policies(&identity),
                "resourcePolicy": key_policy,
                "serviceControlPolicies": [],
                "resourceControlPolicies": [],
            }),
            allowed,
        });
    };
    for (role, seals) in [
        ("CaptureStateRole", true),
        ("BlockNetworkAclRole", true),
        ("DeregisterTargetsRole", true),
        ("HoldAutoScalingGroupRole", false),
        ("RestoreRole", false),
        ("NotifyRole", false),
        ("ApprovalRole", false),
    ] {
        case(
            &format!("{role} seals"),
            admin.arn_of(role),
            admin.role_policies(role),
            "kms:GenerateMac",
            json!({}),
            seals,
        );
    }
    case(
        "RestoreRole checks",
        admin.arn_of("RestoreRole"),
        admin.role_policies("RestoreRole"),
        "kms:VerifyMac",
        json!({}),
        true,
    );
    case(
        "an administrator checks",
        administrator.clone(),
        everything.clone(),
        "kms:VerifyMac",
        json!({}),
        true,
    );
    case(
        "an administrator seals",
        administrator,
        everything.clone(),
        "kms:GenerateMac",
        json!({}),
        false,
    );
    case(
        "CaptureStateRole's credentials used from an instance",
        admin.arn_of("CaptureStateRole"),
        admin.role_policies("CaptureStateRole"),
        "kms:GenerateMac",
        json!({"aws:Ec2InstanceSourceVPC": "vpc-1"}),
        false,
    );
    judge(cases);
}

/// The workers' own roles, as they act in the administrator account (its instances are
/// contained without the member role): each may make the calls of its step, and none the
/// calls of another's, so that one function's code or credentials going wrong cannot do the
/// work of all.
#[test]
fn each_worker_role_may_make_its_own_steps_calls_and_not_anothers() {
    let template = yaml("infra/template.yaml");
    let admin = administrator_stack(&template);
    let ec2 = |kind: &str, id: &str| format!("arn:aws:ec2:{REGION}:{ADMIN}:{kind}/{id}");
    let isolation_tag = json!({"aws:ResourceTag/cordon:role": "isolation"});
    let claim_keys = claim_keys();
    let cases: Vec<(&str, &str, String, Value, bool)> = vec![
        (
            "CaptureStateRole",
            "ec2:DescribeInstances",
            "*".into(),
            json!({}),
            true,
        ),
        (
            "CaptureStateRole",
            "ec2:CreateSecurityGroup",
            ec2("security-group", "*"),
            json!({"aws:RequestTag/cordon:role": "claim", "aws:TagKeys": claim_keys}),
            true,
        ),
        (
            "CaptureStateRole",
            "ec2:ModifyNetworkInterfaceAttribute",
            ec2("network-interface", "eni-1"),
            json!({}),
            false,
        ),
        (
            "IsolateSecurityGroupsRole",
            "ec2:ModifyNetworkInterfaceAttribute",
            ec2("network-interface", "eni-1"),
            json!({}),
            true,
        ),
        (
            "IsolateSecurityGroupsRole",
            "ec2:AuthorizeSecurityGroupIngress",
            ec2("security-group", "sg-isolation"),
            isolation_tag.clone(),
            true,
        ),
        (
            "IsolateSecurityGroupsRole",
            "ec2:AuthorizeSecurityGroupIngress",
            ec2("security-group", "sg-web"),
            json!({}),
            false,
        ),
        (
            "IsolateSecurityGroupsRole",
            "ec2:CreateNetworkAclEntry",
            ec2("network-acl", "acl-1"),
            json!({}),
            false,
        ),
        (
            "IsolateSecurityGroupsRole",
            "ec2:DeleteSecurityGroup",
            ec2("security-group", "sg-isolation"),
            isolation_tag.clone(),
            false,
        ),
        // The conversion group after the swaps, and nothing else.
        (
            "IsolateSecurityGroupsRole",
            "ec2:DeleteSecurityGroup",
            ec2("security-group", "sg-conversion"),
            json!({"aws:ResourceTag/cordon:role": "conversion"}),
            true,
        ),
        (
            "IsolateSecurityGroupsRole",
            "ec2:DeleteSecurityGroup",
            ec2("security-group", "sg-claim"),
            json!({"aws:ResourceTag/cordon:role": "claim"}),
            false,
        ),
        (
            "IsolateSecurityGroupsRole",
            "ec2:DeleteSecurityGroup",
            ec2("security-group", "sg-web"),
            json!({}),
            false,
        ),
        (
            "BlockNetworkAclRole",
            "ec2:CreateNetworkAclEntry",
            ec2("network-acl", "acl-1"),
            json!({}),
            true,
        ),
        (
            "BlockNetworkAclRole",
            "ec2:ModifyNetworkInterfaceAttribute",
            ec2("network-interface", "eni-1"),
            json!({}),
            false,
        ),
        (
            "RestoreRole",
            "ec2:ModifyNetworkInterfaceAttribute",
            ec2("network-interface", "eni-1"),
            json!({}),
            true,
        ),
        (
            "RestoreRole",
            "ec2:DeleteNetworkAclEntry",
            ec2("network-acl", "acl-1"),
            json!({}),
            true,
        ),
        (
            "RestoreRole",
            "ec2:DeleteSecurityGroup",
            ec2("security-group", "sg-conversion"),
            json!({"aws:ResourceTag/cordon:role": "conversion"}),
            true,
        ),
        (
            "RestoreRole",
            "ec2:DeleteSecurityGroup",
            ec2("security-group", "sg-web"),
            json!({}),
            false,
        ),
        // The isolation group stays: a containment racing the restore may be about to use it.
        (
            "RestoreRole",
            "ec2:DeleteSecurityGroup",
            ec2("security-group", "sg-isolation"),
            isolation_tag.clone(),
            false,
        ),
        (
            "RestoreRole",
            "ec2:CreateNetworkAclEntry",
            ec2("network-acl", "acl-1"),
            json!({}),
            false,
        ),
        (
            "NotifyRole",
            "ec2:ModifyNetworkInterfaceAttribute",
            ec2("network-interface", "eni-1"),
            json!({}),
            false,
        ),
        (
            "NotifyRole",
            "ec2:DeleteNetworkAclEntry",
            ec2("network-acl", "acl-1"),
            json!({}),
            false,
        ),
        (
            "ApprovalRole",
            "ec2:ModifyNetworkInterfaceAttribute",
            ec2("network-interface", "eni-1"),
            json!({}),
            false,
        ),
    ];
    judge(
        cases
            .into_iter()
            .map(|(role, action, resource, context, allowed)| Case {
                name: format!("{role}: {action} on {resource}"),
                simulation: json!({
                    "request": request(&admin.arn_of(role), action, &resource, ADMIN, context),
                    "identityPolicies": policies(&admin.role_policies(role)),
                    "serviceControlPolicies": [],
                    "resourceControlPolicies": [],
                }),
                allowed,
            })
            .collect(),
    );
}
