//! Every call Cordon's workers make, judged by the IAM evaluator against the role that makes
//! it, as deployed. Every test's moto stands behind a witness (tests/src/witness.rs) that keeps
//! each call with the worker that made it, the credentials it is signed with and the tags of
//! the resources it names.
//!
//! Two tests judge them. The first runs the workflow with every measure (and Session Manager
//! while isolated) on one instance of the stack's own account, and on one of a member account
//! through the member role, each contained and given back on approval, and judges its calls.
//! The second judges the calls of the whole suite, which the witnesses wrote to
//! `CORDON_WITNESS_DIR`, and checks that every grant is exercised by some test's call or says
//! in NOT_EXERCISED which path needs it; `scripts/test` runs it after the suite.

use std::collections::BTreeMap;
use std::sync::Arc;

use cordon::runner::Runner;
use cordon_core::aws::MemberRole;
use cordon_core::config::Config;
use cordon_tests::cfn::Resolved;
use cordon_tests::witness::{Witness, Witnessed};
use cordon_tests::{finding_for, until_decision, AwaitingDecision, Moto, World, REGION};
use serde_json::{json, Map, Value};

use super::iam::{deployment, judge, policies, request, yaml, Case};

/// moto's account: the stack's own.
const HOME: &str = "123456789012";
const MEMBER: &str = "210987654321";
const STACK: &str = "cordon-prod";
const EXTERNAL_ID: &str = "cordon-ext";

/// The deployed role of each worker, by the name its calls carry.
const ROLES: [(&str, &str); 11] = [
    ("capture-state", "CaptureStateRole"),
    ("isolate-sg", "IsolateSecurityGroupsRole"),
    ("block-nacl", "BlockNetworkAclRole"),
    ("hold-asg", "HoldAutoScalingGroupRole"),
    ("cut-credentials", "CutCredentialsRole"),
    ("snapshot-volumes", "SnapshotVolumesRole"),
    ("deregister-targets", "DeregisterTargetsRole"),
    ("restore", "RestoreRole"),
    ("notify", "NotifyRole"),
    ("approval", "ApprovalRole"),
    ("custom-action", "CustomActionRole"),
];

/// The workflow with every measure on one instance of `world`'s account, contained and given
/// back on approval.
async fn every_measure_contained_and_given_back(
    runner: &Arc<Runner>,
    world: &World,
    account: &str,
) {
    world.deploy_credentials_deny().await;
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    world
        .custom_acl(
            &vpc,
            &[&subnet],
            &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
        )
        .await;
    // Session Manager's endpoints, which the stack below lets an isolated instance reach.
    let endpoints = world.subnet(&vpc, "10.0.2.0/24", None).await;
    world.interface_endpoint(&vpc, "ssm", &endpoints).await;
    world
        .interface_endpoint(&vpc, "ssmmessages", &endpoints)
        .await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    world.auto_scaling_group("web", &subnet, &instance).await;
    let admin = world.target_group(&vpc, "admin", 9000).await;
    world.register_target(&admin, &instance, 9000).await;
    world.instance_role("web").await;
    world.give_profile(&instance, "web").await;
    world.attach_volume(&instance, "/dev/sdf").await;

    let mut finding = finding_for(&instance, 8.0, "198.51.100.7");
    finding["accountId"] = account.into();
    finding["arn"] = finding["arn"]
        .as_str()
        .unwrap()
        .replace(HOME, account)
        .into();
    let event = json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "detail": finding});
    let AwaitingDecision {
        arn: _,
        follow,
        approve,
        ..
    } = until_decision(runner, &event).await;
    assert_ne!(world.eni_groups(&enis[0]).await, vec![web.clone()]);
    assert_eq!(world.evidence_of(&instance).await.len(), 2);
    runner.decide_as_a_person(&approve).await.unwrap();
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    for measure in cordon_core::measures::MEASURES {
        assert_ne!(
            report.output["containment"][measure.id]["status"], "failed",
            "{}: {}",
            measure.id, report.output["containment"][measure.id]
        );
    }
    assert_eq!(world.eni_groups(&enis[0]).await, vec![web]);
}

/// Actions the evaluator cannot judge, and why. Each is granted by a statement of its own that
/// tests/tests/end_to_end/iam.rs does not cover either; RELIABILITY.md's IAM table lists them.
const EVALUATOR_GAPS: [(&str, &str); 2] = [
    (
        "elasticloadbalancing:AddTags",
        "its data has the classic load balancers' AddTags, not version 2's on target groups",
    ),
    (
        "elasticloadbalancing:RemoveTags",
        "its data has the classic load balancers' RemoveTags, not version 2's on target groups",
    ),
];

/// Grants that no test of the suite exercises, each with the path of the code that needs it.
/// The suite's judgement fails on a grant that is neither exercised nor here (one that nothing
/// needs is to be removed) and on one here that a test exercises after all.
const NOT_EXERCISED: [(&str, &str, &str); 17] = [
    ("CaptureStateRole", "ec2:DescribeVpcEndpoints", "SessionManagerWhileIsolated: an instance already on an isolation group holding HTTPS rules is quarantined only if they are its VPC's endpoints' (capture.rs, session_rules_for)"),
    ("CaptureStateRole", "ec2:DescribeNetworkInterfaces", "as ec2:DescribeVpcEndpoints: the endpoints' addresses"),
    ("CaptureStateRole", "ec2:DeleteTags", "taking over a lapsed claim drops the old holder's record past the new one's end (claim.rs, DropStaleClaimRecords)"),
    ("IsolateSecurityGroupsRole", "ec2:RevokeSecurityGroupIngress", "an isolation group whose ingress was changed is put back to the forensic source only"),
    ("BlockNetworkAclRole", "ec2:DeleteTags", "an earlier run's record on an ACL, rewritten shorter (nacl.rs)"),
    ("HoldAutoScalingGroupRole", "autoscaling:SetInstanceProtection", "an instance that cannot enter standby (not InService yet) is protected from scale-in instead"),
    ("HoldAutoScalingGroupRole", "ec2:DeleteTags", "a record rewritten shorter drops its stale tags (auto_scaling/mod.rs)"),
    ("DeregisterTargetsRole", "kms:VerifyMac", "a retried attempt checks the records it finds before it takes them for its own (load_balancers/mod.rs, vet)"),
    ("RestoreRole", "iam:AttachRolePolicy", "another instance of the role is still cut off: the deny detached by a race is attached again (credentials/mod.rs, restore)"),
    ("RestoreRole", "iam:GetInstanceProfile", "a credentials restore without its record finds the role from the profile (credentials/mod.rs, restore)"),
    ("NotifyRole", "kms:Decrypt", "SNS uses it on notify's behalf for the AlertTopic encrypted with AlertTopicKey; moto's SNS does not encrypt"),
    ("NotifyRole", "kms:GenerateDataKey", "SNS uses it on notify's behalf for the AlertTopic encrypted with AlertTopicKey; moto's SNS does not encrypt"),
    ("CustomActionRole", "guardduty:GetFindings", "Security Hub's custom action reads the finding: moto has no GuardDuty GetFindings, so custom_action.rs answers it from the GuardDuty port"),
    ("CustomActionRole", "guardduty:ListDetectors", "as guardduty:GetFindings"),
    ("CustomActionRole", "sqs:SendMessage", "Security Hub's custom action: Lambda's own write to its dead-letter queue"),
    ("MemberRole", "ec2:DescribeSubnets", "with ForensicCidr in a member account: the subnets whose ACLs serve the forensic hosts are read and left open (nacl.rs)"),
    ("MemberRole", "ec2:RevokeSecurityGroupIngress", "as IsolateSecurityGroupsRole's"),
];

/// What IAM is asked for one call: an action on one resource, with the keys AWS sets. A call
/// naming several resources is authorized on each of them, and all must be allowed.
#[derive(Debug)]
struct Asked {
    action: String,
    resource: String,
    context: Map<String, Value>,
}

impl Asked {
    fn on(action: &str, resource: impl Into<String>) -> Self {
        Asked {
            action: action.into(),
            resource: resource.into(),
            context: Map::new(),
        }
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.context.insert(key.into(), value.into());
        self
    }

    /// `aws:RequestTag/<key>` for each tag and `aws:TagKeys`.
    fn tagging(mut self, tags: &[(String, Option<String>)]) -> Self {
        for (key, value) in tags {
            if let Some(value) = value {
                self.context
                    .insert(format!("aws:RequestTag/{key}"), json!(value));
            }
        }
        // A request that names no tag carries no aws:TagKeys at all (a Null condition sees it
        // so), not an empty list.
        if tags.is_empty() {
            return self;
        }
        let keys: Vec<&String> = tags.iter().map(|(key, _)| key).collect();
        self.with("aws:TagKeys", json!(keys))
    }
}

/// The ARN of an EC2 resource by its id (snapshots' carry no account).
fn ec2_arn(account: &str, id: &str) -> String {
    let kinds = [
        ("i-", "instance"),
        ("eni-", "network-interface"),
        ("sg-", "security-group"),
        ("acl-", "network-acl"),
        ("subnet-", "subnet"),
        ("vpc-", "vpc"),
        ("vol-", "volume"),
        ("snap-", "snapshot"),
    ];
    let kind = kinds
        .iter()
        .find(|(prefix, _)| id.starts_with(prefix))
        .map(|(_, kind)| *kind)
        .unwrap_or_else(|| panic!("no EC2 resource kind for {id}"));
    match kind {
        "snapshot" => format!("arn:aws:ec2:{REGION}::snapshot/{id}"),
        _ => format!("arn:aws:ec2:{REGION}:{account}:{kind}/{id}"),
    }
}

/// The tags of a query-protocol list of `Key`/`Value` pairs (`Tag.1.Key`, ...), in order.
fn tag_pairs(call: &Witnessed, prefix: &str) -> Vec<(String, Option<String>)> {
    (1..)
        .map_while(|n| {
            let key = call.field(&format!("{prefix}.{n}.Key"))?;
            let value = call.field(&format!("{prefix}.{n}.Value"));
            Some((key.to_string(), value.map(String::from)))
        })
        .collect()
}

/// The fields a Security Hub update sets, by their ASFF paths, leaving out which findings it
/// names.
fn asff_paths(value: &Value, path: &str, into: &mut Vec<(String, String)>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                if path.is_empty() && name == "FindingIdentifiers" {
                    continue;
                }
                let path = match path {
                    "" => name.clone(),
                    path => format!("{path}.{name}"),
                };
                asff_paths(field, &path, into);
            }
        }
        Value::String(text) => into.push((path.to_string(), text.clone())),
        Value::Number(number) => into.push((path.to_string(), number.to_string())),
        _ => {}
    }
}

/// How the local run's own resources are named in the deployed stack.
struct Stack {
    /// The local keys' ARNs, with the stack's keys they stand for.
    keys: Vec<(String, String)>,
}

impl Stack {
    /// The stack's keys as the local runner made them, read from its `CreateKey` calls.
    fn from_calls(calls: &[Witnessed]) -> Stack {
        let keys = calls
            .iter()
            .filter(|call| call.service == "kms" && call.action == "CreateKey")
            .filter_map(|call| {
                let logical = cordon::local::stack_key_of(call.json["Description"].as_str()?)?;
                let answer: Value = serde_json::from_str(&call.answer).ok()?;
                let arn = answer["KeyMetadata"]["Arn"].as_str()?;
                Some((arn.to_string(), logical.to_string()))
            })
            .collect();
        Stack { keys }
    }

    /// A local ARN of the stack's (its keys, table, topic, state machine and executions) as
    /// deployed.
    fn deployed(&self, arn: &str) -> String {
        if let Some((_, logical)) = self.keys.iter().find(|(key, _)| {
            let id = key.rsplit('/').next().unwrap();
            arn.ends_with(id)
        }) {
            return format!("arn:aws:kms:{REGION}:{HOME}:key/{logical}");
        }
        let execution = regex_lite::Regex::new(r":execution:cordon-quarantine-[0-9a-f]+:").unwrap();
        let machine =
            regex_lite::Regex::new(r":stateMachine:cordon-quarantine-[0-9a-f]+$").unwrap();
        let arn = execution.replace(arn, format!(":execution:{STACK}-quarantine:").as_str());
        machine
            .replace(&arn, format!(":stateMachine:{STACK}-quarantine").as_str())
            .replace(":table/cordon-releases", ":table/ReleaseLedgerTable")
            .replace(":cordon-alerts", ":AlertTopic")
    }
}

/// What IAM is asked for `call`, made in `account`, as AWS's Service Authorization Reference
/// gives each action's resources and keys. A call of an action not modelled here fails the
/// test: a new call must say what it is authorized on.
fn asked_for(call: &Witnessed, account: &str, stack: &Stack) -> Result<Vec<Asked>, String> {
    let service = call.service.as_str();
    let action = format!("{service}:{}", call.action);
    let field = |name: &str| {
        call.field(name)
            .map(String::from)
            .ok_or_else(|| format!("{action} without {name}"))
    };
    let json_field = |name: &str| {
        call.json[name]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("{action} without {name}"))
    };
    // An EC2 resource the call names, with the tags it carried at the time.
    let ec2 = |id: &str| {
        let mut asked = Asked::on(&action, ec2_arn(account, id));
        for (key, value) in call.tags.get(id).into_iter().flatten() {
            asked = asked
                .with(&format!("aws:ResourceTag/{key}"), value.as_str())
                .with(&format!("ec2:ResourceTag/{key}"), value.as_str());
        }
        asked
    };
    let new_ec2 = |kind: &str| match kind {
        "snapshot" => format!("arn:aws:ec2:{REGION}::snapshot/*"),
        kind => format!("arn:aws:ec2:{REGION}:{account}:{kind}/*"),
    };
    // Tags given at creation are authorized as ec2:CreateTags on the new resource too.
    let created = |kind: &str, tags: &[(String, Option<String>)]| {
        (!tags.is_empty()).then(|| {
            Asked::on("ec2:CreateTags", new_ec2(kind))
                .with("ec2:CreateAction", call.action.as_str())
                .tagging(tags)
        })
    };
    let role = |name: &str| format!("arn:aws:iam::{account}:role/{name}");
    Ok(match (service, call.action.as_str()) {
        ("ec2", "DescribeInstanceAttribute") => vec![ec2(&field("InstanceId")?)],
        ("ec2", "ModifyInstanceAttribute") => {
            let mut asked = vec![ec2(&field("InstanceId")?)];
            // A volume's DeleteOnTermination, set through the instance's block device mapping:
            // the volume, which the request names only by its device, is a resource of the
            // action too.
            if call.field("BlockDeviceMapping.1.DeviceName").is_some() {
                asked.push(Asked::on(&action, new_ec2("volume")));
            }
            asked
        }
        // EC2's Describe* calls support no resource-level permissions.
        ("ec2", name) if name.starts_with("Describe") => vec![Asked::on(&action, "*")],
        ("ec2", "ModifyNetworkInterfaceAttribute") => {
            // The interface and the groups it names. AWS also authorizes the instance and
            // subnet the interface is attached to, which the request does not name; the
            // roles grant those without conditions.
            let mut asked = vec![ec2(&field("NetworkInterfaceId")?)];
            asked.extend(call.list("SecurityGroupId").into_iter().map(ec2));
            asked
        }
        ("ec2", "CreateSecurityGroup") => {
            let tags = tag_pairs(call, "TagSpecification.1.Tag");
            let mut asked = vec![
                ec2(&field("VpcId")?),
                Asked::on(&action, new_ec2("security-group")).tagging(&tags),
            ];
            asked.extend(created("security-group", &tags));
            asked
        }
        (
            "ec2",
            "AuthorizeSecurityGroupIngress"
            | "AuthorizeSecurityGroupEgress"
            | "RevokeSecurityGroupIngress"
            | "RevokeSecurityGroupEgress"
            | "DeleteSecurityGroup",
        ) => vec![ec2(&field("GroupId")?)],
        ("ec2", "CreateNetworkAclEntry" | "DeleteNetworkAclEntry" | "ReplaceNetworkAclEntry") => {
            vec![ec2(&field("NetworkAclId")?)]
        }
        ("ec2", "CreateTags" | "DeleteTags") => {
            let tags = tag_pairs(call, "Tag");
            call.list("ResourceId")
                .into_iter()
                .map(|id| ec2(id).tagging(&tags))
                .collect()
        }
        ("ec2", "CreateSnapshots") => {
            let tags = tag_pairs(call, "TagSpecification.1.Tag");
            let mut asked = vec![
                ec2(&field("InstanceSpecification.InstanceId")?),
                // The instance's volumes, which the request does not name.
                Asked::on(&action, new_ec2("volume")),
                Asked::on(&action, new_ec2("snapshot")).tagging(&tags),
            ];
            asked.extend(created("snapshot", &tags));
            asked
        }
        ("kms", "GenerateMac" | "VerifyMac") => {
            vec![Asked::on(&action, stack.deployed(&json_field("KeyId")?))]
        }
        ("sts", "AssumeRole") => {
            let mut asked = Asked::on(&action, field("RoleArn")?);
            if let Some(external_id) = call.field("ExternalId") {
                asked = asked.with("sts:ExternalId", external_id);
            }
            vec![asked]
        }
        // No permission is needed to ask who one is.
        ("sts", "GetCallerIdentity") => vec![],
        ("dynamodb", "GetItem" | "PutItem" | "UpdateItem") => vec![Asked::on(
            &action,
            stack.deployed(&format!(
                "arn:aws:dynamodb:{REGION}:{HOME}:table/{}",
                json_field("TableName")?
            )),
        )],
        ("sns", "Publish") => vec![Asked::on(&action, stack.deployed(&field("TopicArn")?))],
        ("states", "DescribeExecution" | "GetExecutionHistory") => vec![Asked::on(
            &action,
            stack.deployed(&json_field("executionArn")?),
        )],
        ("states", "StartExecution") => vec![Asked::on(
            &action,
            stack.deployed(&json_field("stateMachineArn")?),
        )],
        // A task token names no resource.
        ("states", "SendTaskSuccess" | "SendTaskFailure") => vec![Asked::on(&action, "*")],
        ("securityhub", "PATCH /findings/batchupdate") => {
            // Each field the update sets, by its ASFF path (`Workflow.Status`, `Note.Text`).
            let mut asked = Asked::on(
                "securityhub:BatchUpdateFindings",
                format!("arn:aws:securityhub:{REGION}:{account}:hub/default"),
            );
            let mut fields = Vec::new();
            asff_paths(&call.json, "", &mut fields);
            for (path, value) in fields {
                asked = asked.with(&format!("securityhub:ASFFSyntaxPath/{path}"), value);
            }
            vec![asked]
        }
        // GuardDuty's REST calls. The Service Authorization Reference lists no resource type
        // for ListDetectors or ArchiveFindings: both are authorized on "*".
        ("guardduty", "GET /detector") => vec![Asked::on("guardduty:ListDetectors", "*")],
        ("guardduty", rest)
            if rest.starts_with("POST /detector/") && rest.ends_with("/findings/archive") =>
        {
            vec![Asked::on("guardduty:ArchiveFindings", "*")]
        }
        ("iam", "GetInstanceProfile") => vec![Asked::on(
            &action,
            format!(
                "arn:aws:iam::{account}:instance-profile/{}",
                field("InstanceProfileName")?
            ),
        )],
        ("iam", "ListRoleTags" | "ListAttachedRolePolicies") => {
            vec![Asked::on(&action, role(&field("RoleName")?))]
        }
        ("iam", "AttachRolePolicy" | "DetachRolePolicy") => vec![Asked::on(
            &action,
            role(&field("RoleName")?),
        )
        .with("iam:PolicyARN", field("PolicyArn")?)],
        ("iam", "TagRole") => vec![Asked::on(&action, role(&field("RoleName")?))
            .tagging(&tag_pairs(call, "Tags.member"))],
        ("iam", "UntagRole") => {
            let keys: Vec<(String, Option<String>)> = call
                .list("TagKeys.member")
                .into_iter()
                .map(|key| (key.to_string(), None))
                .collect();
            vec![Asked::on(&action, role(&field("RoleName")?)).tagging(&keys)]
        }
        ("autoscaling" | "elasticloadbalancing", name) if name.starts_with("Describe") => {
            vec![Asked::on(&action, "*")]
        }
        (
            "autoscaling",
            "EnterStandby" | "ExitStandby" | "SetDesiredCapacity" | "SetInstanceProtection",
        ) => vec![Asked::on(
            &action,
            format!(
                "arn:aws:autoscaling:{REGION}:{account}:autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/{}",
                field("AutoScalingGroupName")?
            ),
        )],
        ("elasticloadbalancing", "RegisterTargets" | "DeregisterTargets") => {
            vec![Asked::on(&action, field("TargetGroupArn")?)]
        }
        ("elasticloadbalancing", "AddTags" | "RemoveTags") => {
            let mut tags = tag_pairs(call, "Tags.member");
            tags.extend(
                call.list("TagKeys.member")
                    .into_iter()
                    .map(|key| (key.to_string(), None)),
            );
            call.list("ResourceArns.member")
                .into_iter()
                .map(|arn| Asked::on(&action, arn).tagging(&tags))
                .collect()
        }
        _ => {
            return Err(format!(
                "no IAM model of {action}: say in iam_calls.rs what AWS authorizes it on"
            ))
        }
    })
}

/// The actions `policies` allow, each once.
fn allowed_actions(policies: &[(String, Value)]) -> std::collections::BTreeSet<String> {
    let mut actions = std::collections::BTreeSet::new();
    for (_, policy) in policies {
        for statement in policy["Statement"].as_array().into_iter().flatten() {
            if statement["Effect"] != "Allow" {
                continue;
            }
            match &statement["Action"] {
                Value::String(action) => {
                    actions.insert(action.clone());
                }
                Value::Array(list) => {
                    actions.extend(list.iter().filter_map(|a| a.as_str().map(String::from)))
                }
                _ => {}
            }
        }
    }
    actions
}

/// The SCP the README asks an organization to apply (infra/scp-cordon-tags.yaml), with AWS's
/// default allow, as it applies to every account where Cordon acts.
fn tag_guard() -> Value {
    let template = yaml("infra/scp-cordon-tags.yaml");
    let resolved = Resolved::new(
        &template,
        deployment(
            HOME,
            &[
                ("AdministratorAccountId", json!(HOME)),
                ("AdministratorStackName", json!(STACK)),
                ("TargetIds", json!(["r-abcd"])),
            ],
        ),
    );
    let content =
        resolved.resolve(&resolved.resources()["CordonTagGuard"]["Properties"]["Content"]);
    json!([{
        "orgIdentifier": "r-abcd",
        "policies": [
            {"name": "FullAWSAccess", "policy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}},
            {"name": "cordon-tag-guard", "policy": content}
        ]
    }])
}

/// The stack and the member role as deployed, and the tag guard over every account.
struct Deployed<'t> {
    admin: Resolved<'t>,
    member_template: &'t Value,
    scps: Value,
}

impl<'t> Deployed<'t> {
    fn new(template: &'t Value, member_template: &'t Value) -> Self {
        // Every optional grant deployed: a call some option makes (archiving on release,
        // checking a break-glass decision) is judged against the policy that option adds.
        let admin = Resolved::new(
            template,
            deployment(
                HOME,
                &[
                    ("MemberExternalId", json!(EXTERNAL_ID)),
                    ("ArchiveFindingOnRestore", json!("true")),
                    (
                        "BreakGlassPrincipals",
                        json!(format!("arn:aws:iam::{HOME}:role/incident-responder")),
                    ),
                ],
            ),
        );
        Deployed {
            admin,
            member_template,
            scps: tag_guard(),
        }
    }

    /// The member role as deployed in `account` with `external_id`.
    fn member(&self, account: &str, external_id: &str) -> Resolved<'t> {
        Resolved::new(
            self.member_template,
            deployment(
                account,
                &[
                    ("AdministratorAccountId", json!(HOME)),
                    ("AdministratorStackName", json!(STACK)),
                    ("ExternalId", json!(external_id)),
                ],
            ),
        )
    }
}

/// A member role's session: the account it acts in, and the session policy it was given.
struct Session {
    account: String,
    policy: Option<String>,
}

/// What the evaluator is given for one list of witnessed calls, and what could not be put to
/// it.
#[derive(Default)]
struct Judgement {
    cases: Vec<Case>,
    problems: Vec<String>,
    /// How many requests each role made of each action (`<role name> <action>`).
    judged: BTreeMap<String, usize>,
    gaps: std::collections::BTreeSet<String>,
}

impl Judgement {
    /// Turns `calls` (one witness's: member sessions and keys are known within it) into
    /// requests for the evaluator, each with the role that makes it as deployed. `origin`
    /// names them in a failure.
    fn add(&mut self, origin: &str, calls: &[Witnessed], deployed: &Deployed) {
        let stack = Stack::from_calls(calls);
        // The member role's sessions, by their access keys (from STS's answers).
        let sessions: BTreeMap<String, Session> = calls
            .iter()
            .filter(|call| {
                call.service == "sts" && call.action == "AssumeRole" && call.status == 200
            })
            .map(|call| {
                let key = call
                    .answer
                    .split("<AccessKeyId>")
                    .nth(1)
                    .and_then(|rest| rest.split("</AccessKeyId>").next())
                    .unwrap()
                    .to_string();
                let account = call
                    .field("RoleArn")
                    .and_then(|arn| arn.split(':').nth(4))
                    .unwrap_or_default()
                    .to_string();
                let policy = call.field("Policy").map(String::from);
                (key, Session { account, policy })
            })
            .collect();
        for call in calls {
            // moto's own API (no SigV4 signature), which the runner configures moto through.
            if call.service.is_empty() {
                continue;
            }
            // The harness's and the runner's own calls name `cordon-local`, an operator's
            // commands `cordon-cli` (or the smoke test's), each worker's clients the worker:
            // a call that names none was made by a client built some other way, which this
            // judgement would miss.
            let Some(worker) = call.worker.as_deref() else {
                self.problems.push(format!(
                    "{origin}: {} {} names no Cordon worker in its user agent",
                    call.service, call.action
                ));
                continue;
            };
            if ["local", "cli", "smoke-test"].contains(&worker) {
                continue;
            }
            let Some((_, logical)) = ROLES.iter().find(|(name, _)| *name == worker) else {
                self.problems
                    .push(format!("{origin}: a call by an unknown worker {worker}"));
                continue;
            };
            let session = sessions.get(&call.access_key);
            if call.access_key != "testing" && session.is_none() {
                self.problems.push(format!(
                    "{origin}: {worker}: {} {} is signed with {}, which is neither the stack's credentials nor a member session's",
                    call.service, call.action, call.access_key
                ));
                continue;
            }
            let (principal, identity, account) = match session {
                Some(session) => {
                    let member = deployed.member(&session.account, EXTERNAL_ID);
                    (
                        member.arn_of("MemberRole"),
                        member.role_policies("MemberRole"),
                        session.account.as_str(),
                    )
                }
                None => (
                    deployed.admin.arn_of(logical),
                    deployed.admin.role_policies(logical),
                    HOME,
                ),
            };
            let asked = match asked_for(call, account, &stack) {
                Ok(asked) => asked,
                Err(problem) => {
                    self.problems.push(format!("{origin}: {worker}: {problem}"));
                    continue;
                }
            };
            let role_name = principal.rsplit('/').next().unwrap().to_string();
            for asked in asked {
                *self
                    .judged
                    .entry(format!("{role_name} {}", asked.action))
                    .or_default() += 1;
                if let Some((_, why)) = EVALUATOR_GAPS
                    .iter()
                    .find(|(action, _)| *action == asked.action)
                {
                    self.gaps
                        .insert(format!("{role_name} {}: {why}", asked.action));
                    continue;
                }
                let mut simulation = json!({
                    "request": request(&principal, &asked.action, &asked.resource, account, Value::Object(asked.context.clone())),
                    "identityPolicies": policies(&identity),
                    "serviceControlPolicies": deployed.scps,
                    "resourceControlPolicies": [],
                });
                if asked.action == "sts:AssumeRole" {
                    // The trust of the role asked for, as deployed in its account with the
                    // external id the test's deployment chose: the one its workers present
                    // (a call that presents none cannot pass any deployment's trust).
                    let account = asked.resource.split(':').nth(4).unwrap_or_default();
                    let external_id = call.field("ExternalId").unwrap_or(EXTERNAL_ID);
                    let member = deployed.member(account, external_id);
                    simulation["resourcePolicy"] = member.resolve(
                        &member.resources()["MemberRole"]["Properties"]["AssumeRolePolicyDocument"],
                    );
                }
                // A KMS key is authorized by its key policy, which delegates to IAM or not.
                if let Some(key) = asked
                    .resource
                    .strip_prefix(&format!("arn:aws:kms:{REGION}:{HOME}:key/"))
                {
                    let Some(key) = deployed.admin.resources().get(key) else {
                        self.problems.push(format!(
                            "{origin}: {worker}: {} with {key}, which is none of the stack's keys",
                            asked.action
                        ));
                        continue;
                    };
                    simulation["resourcePolicy"] =
                        deployed.admin.resolve(&key["Properties"]["KeyPolicy"]);
                }
                if let Some(policy) = session.and_then(|s| s.policy.as_deref()) {
                    simulation["sessionPolicy"] = serde_json::from_str(policy).unwrap();
                }
                self.cases.push(Case {
                    name: format!(
                        "{origin}: {worker} as {role_name}: {} on {} {}",
                        asked.action,
                        asked.resource,
                        Value::Object(asked.context)
                    ),
                    simulation,
                    allowed: true,
                });
            }
        }
    }

    /// The evaluator's verdict on every request (each distinct one once), after the problems
    /// found on the way.
    fn verdict(self) {
        assert!(self.problems.is_empty(), "{}", self.problems.join("\n"));
        let mut seen = std::collections::BTreeSet::new();
        let cases: Vec<Case> = self
            .cases
            .into_iter()
            .filter(|case| seen.insert(case.simulation.to_string()))
            .collect();
        eprintln!(
            "{} distinct requests judged: {:#?}",
            cases.len(),
            self.judged
        );
        eprintln!(
            "not judged, the evaluator's data lacking them: {:#?}",
            self.gaps
        );
        judge(cases);
    }

    /// Grants that no judged call exercised and NOT_EXERCISED does not explain, and grants it
    /// lists that were exercised after all (or are no longer granted).
    fn unexercised(&self, deployed: &Deployed) -> (Vec<String>, Vec<String>) {
        let mut unexercised = Vec::new();
        // The Lambda runtime's own writes, not Cordon's calls.
        let runtime = |action: &str| action.starts_with("logs:") || action.starts_with("xray:");
        for (_, logical) in ROLES {
            let (arn, granted) = (
                deployed.admin.arn_of(logical),
                deployed.admin.role_policies(logical),
            );
            let role_name = arn.rsplit('/').next().unwrap();
            for action in allowed_actions(&granted) {
                if !runtime(&action) && !self.judged.contains_key(&format!("{role_name} {action}"))
                {
                    unexercised.push(format!("{logical} {action}"));
                }
            }
        }
        let member = deployed.member(MEMBER, EXTERNAL_ID);
        for action in allowed_actions(&member.role_policies("MemberRole")) {
            if !self.judged.contains_key(&format!("cordon-member {action}")) {
                unexercised.push(format!("MemberRole {action}"));
            }
        }
        let expected: Vec<String> = NOT_EXERCISED
            .iter()
            .map(|(role, action, _)| format!("{role} {action}"))
            .collect();
        let unexplained = unexercised
            .iter()
            .filter(|grant| !expected.contains(grant))
            .cloned()
            .collect();
        let now_exercised = expected
            .into_iter()
            .filter(|grant| !unexercised.contains(grant))
            .collect();
        (unexplained, now_exercised)
    }
}

/// The two runs above, every call judged. A call some other test makes is judged by the next
/// test, over the whole suite's calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_the_workers_make_is_allowed_to_the_role_that_makes_it() {
    let moto = Moto::start();
    // Every optional call on: Session Manager while isolated.
    let config = Config {
        session_manager: true,
        ..Config::default()
    };
    let runner = Arc::new(
        Runner::start(&moto.endpoint, config)
            .await
            .unwrap()
            .with_member_role(MemberRole {
                role_name: "cordon-member".into(),
                external_id: Some(EXTERNAL_ID.into()),
                session_policy: None,
            }),
    );
    every_measure_contained_and_given_back(&runner, &moto.world(), HOME).await;
    let member = World::from_sdk(&moto.sdk_config_in(MEMBER, "cordon-member").await);
    every_measure_contained_and_given_back(&runner, &member, MEMBER).await;

    let (template, member_template) = (yaml("infra/template.yaml"), yaml("infra/member-role.yaml"));
    let deployed = Deployed::new(&template, &member_template);
    let mut judgement = Judgement::default();
    judgement.add("every measure", &moto.witness().calls(), &deployed);
    judgement.verdict();
}

/// Every call of every test that ran before it, as the witnesses in front of each test's moto
/// wrote them to `CORDON_WITNESS_DIR`: each allowed to the role that makes it, and every grant
/// exercised by some call or explained in NOT_EXERCISED. `scripts/test` runs it after the
/// suite; a statement removed fails the first, an action added the second.
#[test]
#[ignore = "judges the calls of the whole suite: scripts/test runs it after the suite, with CORDON_WITNESS_DIR"]
fn every_call_of_the_suite_is_allowed_to_the_role_that_makes_it() {
    let dir = std::env::var_os("CORDON_WITNESS_DIR")
        .expect("CORDON_WITNESS_DIR names where the suite's witnesses wrote their calls");
    let recorded = Witness::recorded(std::path::Path::new(&dir));
    let tests = recorded.len();
    let calls: usize = recorded.iter().map(|(_, calls)| calls.len()).sum();
    assert!(
        tests > 50,
        "only {tests} witnesses wrote to {dir:?}: run the whole suite first"
    );
    let (template, member_template) = (yaml("infra/template.yaml"), yaml("infra/member-role.yaml"));
    let deployed = Deployed::new(&template, &member_template);
    let mut judgement = Judgement::default();
    for (origin, calls) in &recorded {
        judgement.add(origin, calls, &deployed);
    }
    eprintln!("{calls} calls of {tests} witnesses");
    // Each call allowed first (a statement removed), then each grant used (one widened).
    let (unexplained, now_exercised) = judgement.unexercised(&deployed);
    judgement.verdict();
    assert!(
        unexplained.is_empty() && now_exercised.is_empty(),
        "granted, but neither exercised by the suite nor in NOT_EXERCISED with the path that needs it: {unexplained:#?}\nin NOT_EXERCISED, but exercised (or no longer granted): {now_exercised:#?}"
    );
}
