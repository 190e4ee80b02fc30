//! Every call Cordon's workers make, judged by the IAM evaluator against the role that makes
//! it, as deployed. moto is run behind a witness (tests/src/witness.rs) that keeps each call
//! with the worker that made it, the credentials it is signed with and the tags of the
//! resources it names. Two runs exercise every step: the workflow with every measure (and
//! Session Manager while isolated) on one instance of the stack's own account, and on one of a
//! member account through the member role, each contained and given back on approval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cordon::runner::{DecisionMode, Runner};
use cordon_core::aws::MemberRole;
use cordon_core::config::Config;
use cordon_tests::cfn::Resolved;
use cordon_tests::witness::{Witness, Witnessed};
use cordon_tests::{finding_for, Moto, World, REGION};
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
    let arn = runner.start_execution(&event, 600).await.unwrap();
    let follow = tokio::spawn({
        let (runner, arn) = (runner.clone(), arn.clone());
        async move { runner.follow(&arn, DecisionMode::Wait).await }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let approve = loop {
        if let Some((approve, _)) = runner.approval_links(&arn).await.unwrap() {
            break approve;
        }
        assert!(
            !follow.is_finished() && Instant::now() < deadline,
            "the workflow never asked for approval"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
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

/// Grants the two runs do not exercise, each with the path of the code that needs it. The test
/// fails on a grant that is neither exercised nor here: one that nothing needs is to be removed.
const NOT_EXERCISED: [(&str, &str, &str); 23] = [
    ("CaptureStateRole", "ec2:DescribeVpcEndpoints", "SessionManagerWhileIsolated: an instance already on an isolation group holding HTTPS rules is quarantined only if they are its VPC's endpoints' (capture.rs, session_rules_for)"),
    ("CaptureStateRole", "ec2:DescribeNetworkInterfaces", "as ec2:DescribeVpcEndpoints: the endpoints' addresses"),
    ("CaptureStateRole", "ec2:DeleteTags", "taking over a lapsed claim drops the old holder's record past the new one's end (claim.rs, DropStaleClaimRecords)"),
    ("CaptureStateRole", "iam:GetInstanceProfile", "a finding about the instance's credentials used elsewhere: whether its profile still holds their role (ReadInstanceProfiles)"),
    ("CaptureStateRole", "kms:VerifyMac", "a resumed capture checks the seal of the record it copies (capture.rs, kept_record_of)"),
    ("IsolateSecurityGroupsRole", "ec2:DescribeInstances", "a retried attempt reads the instance again (steps.rs, isolate_attempt_step)"),
    ("IsolateSecurityGroupsRole", "ec2:RevokeSecurityGroupIngress", "an isolation group whose ingress was changed is put back to the forensic source only"),
    ("BlockNetworkAclRole", "ec2:DeleteTags", "an earlier run's record on an ACL, rewritten shorter (nacl.rs)"),
    ("BlockNetworkAclRole", "ec2:DescribeSubnets", "with ForensicCidr, the subnets whose ACLs serve the forensic hosts are read and left open (nacl.rs)"),
    ("BlockNetworkAclRole", "kms:VerifyMac", "an earlier run's or another instance's ACL record is relied on only if its seal verifies (nacl.rs)"),
    ("HoldAutoScalingGroupRole", "autoscaling:SetInstanceProtection", "an instance that cannot enter standby (not InService yet) is protected from scale-in instead"),
    ("HoldAutoScalingGroupRole", "ec2:DeleteTags", "a record rewritten shorter drops its stale tags (auto_scaling/mod.rs)"),
    ("RestoreRole", "iam:AttachRolePolicy", "another instance of the role is still cut off: the deny detached by a race is attached again (credentials/mod.rs, restore)"),
    ("RestoreRole", "iam:GetInstanceProfile", "a credentials restore without its record finds the role from the profile (credentials/mod.rs, restore)"),
    ("NotifyRole", "guardduty:ListDetectors", "archiving the finding on release (ArchiveOnRestore, off by default) needs the detector"),
    ("NotifyRole", "kms:Decrypt", "SNS uses it on notify's behalf for the AlertTopic encrypted with AlertTopicKey; moto's SNS does not encrypt"),
    ("NotifyRole", "kms:GenerateDataKey", "SNS uses it on notify's behalf for the AlertTopic encrypted with AlertTopicKey; moto's SNS does not encrypt"),
    ("CustomActionRole", "guardduty:GetFindings", "Security Hub's custom action, run by custom_action.rs without the witness"),
    ("CustomActionRole", "guardduty:ListDetectors", "Security Hub's custom action, run by custom_action.rs without the witness"),
    ("CustomActionRole", "sqs:SendMessage", "Security Hub's custom action: its dead-letter queue"),
    ("CustomActionRole", "states:StartExecution", "Security Hub's custom action, run by custom_action.rs without the witness"),
    ("MemberRole", "ec2:DescribeSubnets", "with ForensicCidr, as BlockNetworkAclRole's"),
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
    /// The local keys' ids, with the stack's keys they stand for.
    keys: Vec<(String, &'static str)>,
}

impl Stack {
    /// A local ARN of the stack's (its keys, table, topic and executions) as deployed.
    fn deployed(&self, arn: &str) -> String {
        if let Some((_, logical)) = self.keys.iter().find(|(id, _)| {
            let id = id.rsplit('/').next().unwrap();
            arn.ends_with(id)
        }) {
            return format!("arn:aws:kms:{REGION}:{HOME}:key/{logical}");
        }
        let execution = regex_lite::Regex::new(r":execution:cordon-quarantine-[0-9a-f]+:").unwrap();
        execution
            .replace(arn, format!(":execution:{STACK}-quarantine:").as_str())
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
        ("dynamodb", "GetItem" | "PutItem") => vec![Asked::on(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_the_workers_make_is_allowed_to_the_role_that_makes_it() {
    let moto = Moto::start();
    let witness = Witness::start(&moto.endpoint).await;
    // Every optional call on: Session Manager while isolated.
    let config = Config {
        session_manager: true,
        ..Config::default()
    };
    let runner = Arc::new(
        Runner::start(&witness.endpoint, config)
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
    let keys = vec![
        (runner.record_key.key_id.clone(), "RecordKey"),
        (runner.link_key().key_id.clone(), "LinkKey"),
        (runner.decision_key().key_id.clone(), "DecisionKey"),
        (runner.break_glass_key().key_id.clone(), "BreakGlassKey"),
    ];
    let stack = Stack { keys };

    let template = yaml("infra/template.yaml");
    let admin = Resolved::new(
        &template,
        deployment(HOME, &[("MemberExternalId", json!(EXTERNAL_ID))]),
    );
    let member_template = yaml("infra/member-role.yaml");
    let member = Resolved::new(
        &member_template,
        deployment(
            MEMBER,
            &[
                ("AdministratorAccountId", json!(HOME)),
                ("AdministratorStackName", json!(STACK)),
                ("ExternalId", json!(EXTERNAL_ID)),
            ],
        ),
    );
    let member_trust =
        member.resolve(&member.resources()["MemberRole"]["Properties"]["AssumeRolePolicyDocument"]);
    let scps = tag_guard();

    let calls = witness.calls();
    // The member role's sessions, by their access keys (from STS's answers).
    let sessions: BTreeMap<String, Option<String>> = calls
        .iter()
        .filter(|call| call.service == "sts" && call.action == "AssumeRole" && call.status == 200)
        .map(|call| {
            let key = call
                .answer
                .split("<AccessKeyId>")
                .nth(1)
                .and_then(|rest| rest.split("</AccessKeyId>").next())
                .unwrap()
                .to_string();
            (key, call.field("Policy").map(String::from))
        })
        .collect();
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let mut judged: BTreeMap<String, usize> = BTreeMap::new();
    let mut gaps = std::collections::BTreeSet::new();
    for call in &calls {
        // moto's own API (no SigV4 signature), which the runner configures moto through.
        if call.service.is_empty() {
            continue;
        }
        // The harness's and the runner's own calls name `cordon-local`, each worker's clients
        // the worker: a call that names neither was made by a client built some other way,
        // which this test would not judge.
        let Some(worker) = call.worker.as_deref() else {
            problems.push(format!(
                "{} {} names no Cordon worker in its user agent",
                call.service, call.action
            ));
            continue;
        };
        if worker == "local" {
            continue;
        }
        let Some((_, logical)) = ROLES.iter().find(|(name, _)| *name == worker) else {
            problems.push(format!("a call by an unknown worker {worker}"));
            continue;
        };
        if call.access_key != "testing" && !sessions.contains_key(&call.access_key) {
            problems.push(format!(
                "{worker}: {} {} is signed with {}, which is neither the stack's credentials nor a member session's",
                call.service, call.action, call.access_key
            ));
            continue;
        }
        let (principal, identity, account, session) = match sessions.get(&call.access_key) {
            Some(session) => (
                member.arn_of("MemberRole"),
                member.role_policies("MemberRole"),
                MEMBER,
                session.clone(),
            ),
            None => (
                admin.arn_of(logical),
                admin.role_policies(logical),
                HOME,
                None,
            ),
        };
        let asked = match asked_for(call, account, &stack) {
            Ok(asked) => asked,
            Err(problem) => {
                problems.push(format!("{worker}: {problem}"));
                continue;
            }
        };
        let role_name = principal.rsplit('/').next().unwrap().to_string();
        for asked in asked {
            *judged
                .entry(format!("{role_name} {}", asked.action))
                .or_default() += 1;
            let mut simulation = json!({
                "request": request(&principal, &asked.action, &asked.resource, account, Value::Object(asked.context.clone())),
                "identityPolicies": policies(&identity),
                "serviceControlPolicies": scps,
                "resourceControlPolicies": [],
            });
            if asked.action == "sts:AssumeRole" {
                simulation["resourcePolicy"] = member_trust.clone();
            }
            // A KMS key is authorized by its key policy, which delegates to IAM or not.
            if let Some(logical) = asked
                .resource
                .strip_prefix(&format!("arn:aws:kms:{REGION}:{HOME}:key/"))
            {
                simulation["resourcePolicy"] =
                    admin.resolve(&admin.resources()[logical]["Properties"]["KeyPolicy"]);
            }
            if let Some((_, why)) = EVALUATOR_GAPS
                .iter()
                .find(|(action, _)| *action == asked.action)
            {
                gaps.insert(format!("{role_name} {}: {why}", asked.action));
                continue;
            }
            if let Some(policy) = &session {
                simulation["sessionPolicy"] = serde_json::from_str(policy).unwrap();
            }
            cases.push(Case {
                name: format!(
                    "{worker} as {role_name}: {} on {} {}",
                    asked.action,
                    asked.resource,
                    Value::Object(asked.context)
                ),
                simulation,
                allowed: true,
            });
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!("{} requests judged: {judged:#?}", cases.len());
    eprintln!("not judged, the evaluator's data lacking them: {gaps:#?}");
    let mut unexercised = Vec::new();
    // The Lambda runtime's own writes, not Cordon's calls.
    let runtime = |action: &str| action.starts_with("logs:") || action.starts_with("xray:");
    for (_, logical) in ROLES {
        let (arn, granted) = (admin.arn_of(logical), admin.role_policies(logical));
        let role_name = arn.rsplit('/').next().unwrap();
        for action in allowed_actions(&granted) {
            if !runtime(&action) && !judged.contains_key(&format!("{role_name} {action}")) {
                unexercised.push(format!("{logical} {action}"));
            }
        }
    }
    for action in allowed_actions(&member.role_policies("MemberRole")) {
        if !judged.contains_key(&format!("cordon-member {action}")) {
            unexercised.push(format!("MemberRole {action}"));
        }
    }
    let expected: Vec<String> = NOT_EXERCISED
        .iter()
        .map(|(role, action, _)| format!("{role} {action}"))
        .collect();
    let unexplained: Vec<&String> = unexercised
        .iter()
        .filter(|grant| !expected.contains(grant))
        .collect();
    let now_exercised: Vec<&String> = expected
        .iter()
        .filter(|grant| !unexercised.contains(grant))
        .collect();
    assert!(
        unexplained.is_empty() && now_exercised.is_empty(),
        "granted, but neither exercised here nor in NOT_EXERCISED with the path that needs it: {unexplained:#?}\nin NOT_EXERCISED, but exercised (or no longer granted): {now_exercised:#?}"
    );
    judge(cases);
}
