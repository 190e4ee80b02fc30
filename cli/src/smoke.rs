//! `cordon smoke-test`: proves a deployment on a real account, end to end. It launches a small
//! instance of its own in the given subnet, starts the deployed state machine with a synthetic
//! finding that names it, follows the execution, checks the containment through EC2's own
//! answers, approves as the caller with the break-glass key, checks that the restore gave back
//! exactly what the instance had, and terminates the instance, whatever happened before.
//!
//! Nothing else is touched: the finding names only the instance this command launched, whose
//! tags say so (`cordon-smoke-test`, outside the `cordon:` keys that the tag guard SCP keeps to
//! Cordon's roles), and its remote address is one of the documentation ranges (RFC 5737).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{
    Filter, HttpTokensState, InstanceMetadataOptionsRequest, InstanceType, ResourceType, Tag,
    TagSpecification,
};
use cordon_core::approval::{decide_as_caller, standing, Action, Standing};
use cordon_core::aws::{sdk_error, AwsContext, AwsEc2, AwsTarget};
use cordon_core::decision::DecisionKey;
use cordon_core::ec2::{Ec2, Instance, RuleAction};
use cordon_core::kms::{AwsKms, Kms};
use cordon_core::CordonError;
use serde::Serialize;
use serde_json::{json, Value};

/// The address the synthetic finding says the instance talked to: TEST-NET-2, never routed.
pub const REMOTE_ADDRESS: &str = "198.51.100.201";

/// The tag that marks what the smoke test launched.
pub const SMOKE_TAG: &str = "cordon-smoke-test";

/// What to prove, and where.
pub struct Plan {
    pub subnet: String,
    pub state_machine: String,
    pub break_glass_key: String,
    /// None: the newest Amazon Linux 2023 image for x86_64 that Amazon publishes in the region.
    pub image_id: Option<String>,
    pub instance_type: String,
    /// How long each wait may last: the instance to run, the containment, the restore.
    pub wait: Duration,
    pub poll: Duration,
}

/// One step, as printed and reported.
#[derive(Debug, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub ok: bool,
    pub detail: String,
    pub seconds: f64,
}

/// What an instance holds that Cordon changes and must give back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// Each interface's groups, by interface id.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Each interface's groups' names, by group id.
    #[serde(skip)]
    pub names: BTreeMap<String, String>,
    pub termination_protection: bool,
    pub shutdown_behavior: String,
    /// The instance's tags under `cordon:`.
    pub cordon_tags: Vec<String>,
    /// Deny entries of `REMOTE_ADDRESS` in the ACL of the instance's subnet.
    pub remote_denies: usize,
}

/// Whether `held` is contained as Cordon contains: every interface on its VPC's isolation
/// group alone, termination protection on, shutdown stops, the remote address denied.
pub fn contained(held: &Held, vpc_id: &str) -> Result<String, String> {
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
    if held.remote_denies != 2 {
        problems.push(format!(
            "the subnet's ACL has {} deny entries of {REMOTE_ADDRESS}, not one each way",
            held.remote_denies
        ));
    }
    match problems.is_empty() {
        true => Ok(format!(
            "{} interface(s) on {isolation} alone; termination protection on; shutdown stops; {REMOTE_ADDRESS} denied both ways",
            held.groups.len()
        )),
        false => Err(problems.join("; ")),
    }
}

/// Whether `after` is exactly `before`, and nothing of Cordon's is left on the instance.
pub fn restored_exactly(before: &Held, after: &Held) -> Result<String, String> {
    let mut problems = Vec::new();
    if after.groups != before.groups {
        problems.push(format!(
            "interfaces on {:?}, before {:?}",
            after.groups, before.groups
        ));
    }
    if after.termination_protection != before.termination_protection {
        problems.push(format!(
            "termination protection {}, before {}",
            after.termination_protection, before.termination_protection
        ));
    }
    if after.shutdown_behavior != before.shutdown_behavior {
        problems.push(format!(
            "shutdown behavior {}, before {}",
            after.shutdown_behavior, before.shutdown_behavior
        ));
    }
    if !after.cordon_tags.is_empty() {
        problems.push(format!("Cordon's tags left: {:?}", after.cordon_tags));
    }
    if after.remote_denies != before.remote_denies {
        problems.push(format!(
            "{} deny entries of {REMOTE_ADDRESS} in the subnet's ACL, before {}",
            after.remote_denies, before.remote_denies
        ));
    }
    match problems.is_empty() {
        true => Ok(format!(
            "interfaces, termination protection ({}), shutdown behavior ({}) and the subnet's ACL as before; no cordon: tag left",
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

/// The synthetic finding: GuardDuty's C&C finding (severity 8), for `instance_id` of
/// `account` in `region`, marked as Cordon's smoke test in its id, title and description.
pub fn finding(instance_id: &str, account: &str, region: &str, partition: &str) -> Value {
    let id = format!("cordon-smoke-test-{instance_id}");
    let now = cordon_core::steps::now_rfc3339();
    json!({
        "schemaVersion": "2.0",
        "accountId": account,
        "region": region,
        "partition": partition,
        "id": id,
        "arn": format!("arn:{partition}:guardduty:{region}:{account}:detector/cordon-smoke-test/finding/{id}"),
        "type": "Backdoor:EC2/C&CActivity.B",
        "resource": {"resourceType": "Instance", "instanceDetails": {"instanceId": instance_id}},
        "service": {"serviceName": "guardduty", "resourceRole": "ACTOR", "archived": false, "count": 1,
            "eventFirstSeen": now, "eventLastSeen": now,
            "action": {"actionType": "NETWORK_CONNECTION", "networkConnectionAction": {
                "connectionDirection": "OUTBOUND", "protocol": "TCP", "blocked": false,
                "remoteIpDetails": {"ipAddressV4": REMOTE_ADDRESS},
                "remotePortDetails": {"port": 443, "portName": "HTTPS"}}}},
        "severity": 8.0,
        "createdAt": now,
        "updatedAt": now,
        "title": "Cordon smoke test (synthetic finding: no compromise)",
        "description": "A synthetic finding that `cordon smoke-test` sent to prove Cordon's deployment; the instance it names was launched for the test and is terminated after it."
    })
}

/// The steps taken so far, each printed on stderr as it ends.
struct Steps {
    steps: Vec<Step>,
    started: Instant,
}

impl Steps {
    fn record(&mut self, step: &'static str, outcome: Result<String, String>) -> bool {
        let ok = outcome.is_ok();
        let detail = outcome.unwrap_or_else(|problem| problem);
        eprintln!(
            "cordon smoke-test: [{}] {step}: {detail}",
            if ok { "ok" } else { "FAILED" }
        );
        self.steps.push(Step {
            step,
            ok,
            detail,
            seconds: (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        });
        ok
    }
}

/// What the smoke test needs before it launches anything.
struct Ready {
    vpc_id: String,
    image_id: String,
    account: String,
    caller: String,
    partition: String,
    region: String,
}

/// Runs the smoke test; 0 when every step passed.
pub async fn run(target: &AwsTarget, plan: &Plan) -> Result<u8, CordonError> {
    let context = AwsContext::load(target).await.acting_as("smoke-test");
    let sdk = context.sdk_config();
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let cordon_ec2 = context.ec2(None);
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let key = DecisionKey {
        kms: AwsKms::new(sdk),
        key_id: plan.break_glass_key.clone(),
    };
    // Everything that can be checked before an instance exists is: a mistake here launches
    // nothing.
    let ready = prepare(sdk, &ec2, &sfn, &key, plan).await?;
    let mut steps = Steps {
        steps: Vec::new(),
        started: Instant::now(),
    };
    let launched = launch(&ec2, plan, &ready).await;
    let instance_id = match launched {
        Ok(id) => {
            steps.record(
                "launch",
                Ok(format!(
                    "{id} ({}, {}) in {}",
                    plan.instance_type, ready.image_id, plan.subnet
                )),
            );
            id
        }
        Err(error) => {
            steps.record("launch", Err(error.to_string()));
            return Ok(report(&steps, None, None));
        }
    };
    let execution = prove(
        &cordon_ec2,
        &sfn,
        &key,
        plan,
        &ready,
        &instance_id,
        &mut steps,
    )
    .await;
    let ended = terminate(&ec2, &cordon_ec2, &instance_id).await;
    steps.record("terminate", ended.map_err(|e| e.to_string()));
    Ok(report(&steps, Some(&instance_id), execution.as_deref()))
}

/// Prints the report; the exit code.
fn report(steps: &Steps, instance_id: Option<&str>, execution: Option<&str>) -> u8 {
    let passed = steps.steps.iter().all(|step| step.ok);
    crate::print_pretty(&json!({
        "passed": passed,
        "instance_id": instance_id,
        "execution_arn": execution,
        "steps": steps.steps,
    }));
    if passed {
        0
    } else {
        crate::EXIT_FAILED
    }
}

async fn prepare(
    sdk: &aws_config::SdkConfig,
    ec2: &aws_sdk_ec2::Client,
    sfn: &aws_sdk_sfn::Client,
    key: &DecisionKey<AwsKms>,
    plan: &Plan,
) -> Result<Ready, CordonError> {
    let invalid = |message: String| CordonError::InvalidInput(message);
    if !plan
        .subnet
        .strip_prefix("subnet-")
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(invalid(format!(
            "--subnet {} is not a subnet id (subnet-0123456789abcdef0); nothing was launched",
            plan.subnet
        )));
    }
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| invalid("no region: give --region or set AWS_REGION".into()))?;
    let machine_region = plan.state_machine.split(':').nth(3).unwrap_or_default();
    if !plan.state_machine.starts_with("arn:")
        || !plan.state_machine.contains(":states:")
        || !plan.state_machine.contains(":stateMachine:")
    {
        return Err(invalid(format!(
            "--state-machine {} is not a state machine ARN: give the StateMachineArn output of Cordon's stack; nothing was launched",
            plan.state_machine
        )));
    }
    if machine_region != region {
        return Err(invalid(format!(
            "the state machine is in {machine_region} and the subnet is looked for in {region}: give --region {machine_region}, where Cordon's stack runs; nothing was launched"
        )));
    }
    let identity = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| sdk_error("GetCallerIdentity", "", e))?;
    let caller = identity.arn().unwrap_or_default().to_string();
    let account = identity.account().unwrap_or_default().to_string();
    let partition = caller.split(':').nth(1).unwrap_or("aws").to_string();

    let not_found = || {
        invalid(format!(
            "subnet {} was not found in {region}: give a subnet of the account and region where Cordon's stack runs; nothing was launched",
            plan.subnet
        ))
    };
    let subnets = match ec2.describe_subnets().subnet_ids(&plan.subnet).send().await {
        Ok(subnets) => subnets,
        Err(error)
            if aws_sdk_ec2::error::ProvideErrorMetadata::code(&error)
                .is_some_and(|code| code.contains("NotFound")) =>
        {
            return Err(not_found())
        }
        Err(error) => return Err(sdk_error("DescribeSubnets", &plan.subnet, error)),
    };
    let vpc_id = subnets
        .subnets()
        .first()
        .and_then(|s| s.vpc_id())
        .map(String::from)
        .ok_or_else(not_found)?;
    sfn.describe_state_machine()
        .state_machine_arn(&plan.state_machine)
        .send()
        .await
        .map_err(|e| {
            invalid(format!(
                "the state machine {} cannot be read ({}): give the StateMachineArn output of Cordon's stack; nothing was launched",
                plan.state_machine,
                aws_sdk_sfn::error::DisplayErrorContext(&e)
            ))
        })?;
    // The approval at the end needs the break-glass key: a MAC of a message no decision can
    // be (decisions are MACs of their own format) proves the caller may seal with it.
    key.kms
        .generate_mac(&key.key_id, b"cordon smoke-test: may this caller seal decisions?")
        .await
        .map_err(|error| {
            invalid(format!(
                "the break-glass key {} does not seal for {caller} ({error}): the smoke test approves the restore with it, so the caller must be among the stack's BreakGlassPrincipals; nothing was launched",
                key.key_id
            ))
        })?;
    let image_id = match &plan.image_id {
        Some(id) => id.clone(),
        None => {
            let images = ec2
                .describe_images()
                .owners("amazon")
                .filters(
                    Filter::builder()
                        .name("name")
                        .values("al2023-ami-2023.*-kernel-*-x86_64")
                        .build(),
                )
                .filters(Filter::builder().name("state").values("available").build())
                .send()
                .await
                .map_err(|e| sdk_error("DescribeImages", "amazon", e))?;
            let found: Vec<(String, String)> = images
                .images()
                .iter()
                .filter_map(|image| {
                    Some((
                        image.image_id()?.to_string(),
                        image.creation_date()?.to_string(),
                    ))
                })
                .collect();
            newest_image(&found).map(String::from).ok_or_else(|| {
                invalid(format!(
                    "Amazon publishes no Amazon Linux 2023 image for x86_64 in {region} that this account sees: give --image-id; nothing was launched"
                ))
            })?
        }
    };
    Ok(Ready {
        vpc_id,
        image_id,
        account,
        caller,
        partition,
        region,
    })
}

async fn launch(
    ec2: &aws_sdk_ec2::Client,
    plan: &Plan,
    ready: &Ready,
) -> Result<String, CordonError> {
    let tags = |kind: ResourceType| {
        TagSpecification::builder()
            .resource_type(kind)
            .tags(Tag::builder().key("Name").value(SMOKE_TAG).build())
            .tags(Tag::builder().key(SMOKE_TAG).value(&ready.caller).build())
            .build()
    };
    let launched = ec2
        .run_instances()
        .image_id(&ready.image_id)
        .instance_type(InstanceType::from(plan.instance_type.as_str()))
        .subnet_id(&plan.subnet)
        .min_count(1)
        .max_count(1)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .build(),
        )
        .tag_specifications(tags(ResourceType::Instance))
        .tag_specifications(tags(ResourceType::Volume))
        .send()
        .await
        .map_err(|e| sdk_error("RunInstances", &plan.subnet, e))?;
    launched
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .map(String::from)
        .ok_or_else(|| CordonError::Unavailable {
            operation: "RunInstances".into(),
            message: "EC2 named no instance".into(),
        })
}

/// What `instance_id` holds now.
async fn held(cordon_ec2: &AwsEc2, instance: &Instance) -> Result<Held, CordonError> {
    let mut held = Held {
        groups: BTreeMap::new(),
        names: BTreeMap::new(),
        termination_protection: cordon_ec2.termination_protection(&instance.id).await?,
        shutdown_behavior: cordon_ec2.shutdown_behavior(&instance.id).await?,
        cordon_tags: instance
            .tags
            .iter()
            .filter(|(key, _)| key.starts_with("cordon:"))
            .map(|(key, _)| key.clone())
            .collect(),
        remote_denies: 0,
    };
    for interface in &instance.interfaces {
        held.groups
            .insert(interface.id.clone(), interface.groups.clone());
        held.names.extend(interface.group_names.clone());
    }
    let subnet = instance
        .interfaces
        .first()
        .map(|i| i.subnet_id.clone())
        .unwrap_or_default();
    let vpc = instance
        .interfaces
        .first()
        .map(|i| i.vpc_id.clone())
        .unwrap_or_default();
    let remote = format!("{REMOTE_ADDRESS}/32");
    for acl in cordon_ec2.network_acls(&vpc).await? {
        if acl.subnet_ids.contains(&subnet) {
            held.remote_denies = acl
                .entries
                .iter()
                .filter(|e| e.action == RuleAction::Deny && e.cidr == remote)
                .count();
        }
    }
    Ok(held)
}

fn sfn_error(operation: &str, error: &impl std::error::Error) -> CordonError {
    CordonError::Unavailable {
        operation: operation.into(),
        message: aws_sdk_sfn::error::DisplayErrorContext(error).to_string(),
    }
}

/// The states the execution entered (in order), and its status.
async fn progress(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> Result<(Vec<String>, String), CordonError> {
    let mut states = Vec::new();
    let mut token = None;
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(execution)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| sfn_error("GetExecutionHistory", &e))?;
        states.extend(
            page.events()
                .iter()
                .filter_map(|e| e.state_entered_event_details())
                .map(|d| d.name().to_string()),
        );
        token = page.next_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    let status = sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
        .map_err(|e| sfn_error("DescribeExecution", &e))?
        .status()
        .as_str()
        .to_string();
    Ok((states, status))
}

/// Follows the execution, printing each state as it is entered, until it waits for a decision
/// (`true`) or ends (`false`).
async fn follow(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
    plan: &Plan,
    printed: &mut usize,
    until_waiting: bool,
) -> Result<(bool, String, Vec<String>), String> {
    let deadline = Instant::now() + plan.wait;
    loop {
        let (states, status) = progress(sfn, execution).await.map_err(|e| e.to_string())?;
        for state in &states[*printed..] {
            eprintln!("cordon smoke-test:   state {state}");
        }
        *printed = states.len();
        if status != "RUNNING" {
            return Ok((false, status, states));
        }
        if until_waiting {
            if let Ok(Standing::Waiting(_)) = standing(sfn, execution, None).await {
                return Ok((true, status, states));
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "still running after {} s, in {}",
                plan.wait.as_secs(),
                states.last().map(String::as_str).unwrap_or("no state yet")
            ));
        }
        tokio::time::sleep(plan.poll).await;
    }
}

/// From a running instance to its exact restore; the execution, if one was started.
async fn prove(
    cordon_ec2: &AwsEc2,
    sfn: &aws_sdk_sfn::Client,
    key: &DecisionKey<AwsKms>,
    plan: &Plan,
    ready: &Ready,
    instance_id: &str,
    steps: &mut Steps,
) -> Option<String> {
    // Running, and what it holds before Cordon acts.
    let deadline = Instant::now() + plan.wait;
    let instance = loop {
        match cordon_ec2.describe_instance(instance_id).await {
            Ok(instance) if instance.state == "running" => break Ok(instance),
            Ok(instance) if instance.state != "pending" => {
                break Err(format!("it is {}", instance.state))
            }
            Err(error) if !matches!(error, CordonError::InstanceNotFound { .. }) => {
                break Err(error.to_string())
            }
            _ if Instant::now() > deadline => {
                break Err(format!("not running after {} s", plan.wait.as_secs()))
            }
            _ => tokio::time::sleep(plan.poll).await,
        }
    };
    let before = match instance {
        Ok(instance) => held(cordon_ec2, &instance).await.map_err(|e| e.to_string()),
        Err(problem) => Err(problem),
    };
    let before = match before {
        Ok(before) => {
            steps.record(
                "running",
                Ok(format!(
                    "interfaces {:?}; termination protection {}; shutdown {}",
                    before.groups, before.termination_protection, before.shutdown_behavior
                )),
            );
            before
        }
        Err(problem) => {
            steps.record("running", Err(problem));
            return None;
        }
    };

    let event = json!({
        "version": "0",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": ready.account,
        "region": ready.region,
        "detail": finding(instance_id, &ready.account, &ready.region, &ready.partition),
    });
    let name = format!(
        "cordon-smoke-test-{instance_id}-{}",
        cordon_core::steps::unix_now()
    );
    let started = sfn
        .start_execution()
        .state_machine_arn(&plan.state_machine)
        .name(&name)
        .input(event.to_string())
        .send()
        .await;
    let execution = match started {
        Ok(started) => {
            let arn = started.execution_arn().to_string();
            steps.record("start", Ok(arn.clone()));
            arn
        }
        Err(error) => {
            steps.record(
                "start",
                Err(sfn_error("StartExecution", &error).to_string()),
            );
            return None;
        }
    };

    let mut printed = 0;
    match follow(sfn, &execution, plan, &mut printed, true).await {
        Ok((true, _, _)) => {}
        Ok((false, status, states)) => {
            steps.record(
                "contained",
                Err(format!(
                    "the execution ended {status} without asking for a decision: {states:?}"
                )),
            );
            return Some(execution);
        }
        Err(problem) => {
            steps.record("contained", Err(problem));
            return Some(execution);
        }
    }
    let during = match cordon_ec2.describe_instance(instance_id).await {
        Ok(instance) => held(cordon_ec2, &instance).await.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    // Checked, and the restore still asked for whatever the check found: the instance goes
    // either way, and the restore is half of what is proven.
    steps.record(
        "contained",
        during.and_then(|during| contained(&during, &ready.vpc_id)),
    );

    let decided = decide_as_caller(sfn, key, &execution, Action::Approve, &ready.caller).await;
    if !steps.record(
        "approve",
        decided
            .map(|d| format!("approved as {}", d.approver.unwrap_or_default()))
            .map_err(|e| e.to_string()),
    ) {
        return Some(execution);
    }
    match follow(sfn, &execution, plan, &mut printed, false).await {
        Ok((_, status, states))
            if status == "SUCCEEDED" && states.last().map(String::as_str) == Some("Restored") =>
        {
            steps.record(
                "restored",
                Ok(format!("the execution ended {status} in Restored")),
            );
        }
        Ok((_, status, states)) => {
            steps.record(
                "restored",
                Err(format!("the execution ended {status}: {states:?}")),
            );
            return Some(execution);
        }
        Err(problem) => {
            steps.record("restored", Err(problem));
            return Some(execution);
        }
    }
    let after = match cordon_ec2.describe_instance(instance_id).await {
        Ok(instance) => held(cordon_ec2, &instance).await.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    steps.record(
        "exact",
        after.and_then(|after| restored_exactly(&before, &after)),
    );
    Some(execution)
}

/// Terminates the instance the smoke test launched, turning off the termination protection
/// Cordon may have left on it.
async fn terminate(
    ec2: &aws_sdk_ec2::Client,
    cordon_ec2: &AwsEc2,
    instance_id: &str,
) -> Result<String, CordonError> {
    if cordon_ec2.termination_protection(instance_id).await? {
        cordon_ec2
            .set_termination_protection(instance_id, false)
            .await?;
    }
    ec2.terminate_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .map_err(|e| sdk_error("TerminateInstances", instance_id, e))?;
    Ok(format!("{instance_id} terminated"))
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
            cordon_tags: vec![],
            remote_denies: 2,
        }
    }

    #[test]
    fn contained_means_the_isolation_group_alone_protection_stop_and_both_denies() {
        let names = [("sg-1", "cordon-isolation-vpc-1"), ("sg-2", "web")];
        assert!(contained(&held(&[("eni-1", &["sg-1"])], &names), "vpc-1").is_ok());
        let with_web = held(&[("eni-1", &["sg-1", "sg-2"])], &names);
        assert!(contained(&with_web, "vpc-1").unwrap_err().contains("eni-1"));
        // A group named for another VPC's isolation is not this one's.
        assert!(contained(&held(&[("eni-1", &["sg-1"])], &names), "vpc-2").is_err());
        let mut unprotected = held(&[("eni-1", &["sg-1"])], &names);
        unprotected.termination_protection = false;
        unprotected.shutdown_behavior = "terminate".into();
        unprotected.remote_denies = 1;
        let problem = contained(&unprotected, "vpc-1").unwrap_err();
        for expected in [
            "termination protection is off",
            "terminate",
            "1 deny entries",
        ] {
            assert!(problem.contains(expected), "{problem}");
        }
        assert!(contained(&held(&[], &names), "vpc-1").is_err());
    }

    #[test]
    fn restored_exactly_compares_everything_cordon_changes() {
        let before = Held {
            termination_protection: false,
            remote_denies: 0,
            ..held(&[("eni-1", &["sg-2"])], &[])
        };
        assert!(restored_exactly(&before, &before.clone()).is_ok());
        let changes: [fn(&mut Held); 5] = [
            |h| {
                h.groups
                    .insert("eni-1".into(), vec!["sg-1".into()])
                    .map(drop)
                    .unwrap_or(())
            },
            |h| h.termination_protection = true,
            |h| h.shutdown_behavior = "terminate".into(),
            |h| h.cordon_tags.push("cordon:asg:0".into()),
            |h| h.remote_denies = 1,
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
    fn the_synthetic_finding_is_one_cordon_contains_under_its_default_policy() {
        let finding = finding("i-0123456789abcdef0", "111122223333", "eu-west-1", "aws");
        let parsed = parse_document(&finding.to_string());
        let [ParsedFinding::Valid(parsed)] = &parsed[..] else {
            panic!("{parsed:?}")
        };
        assert_eq!(parsed.instance_id.as_deref(), Some("i-0123456789abcdef0"));
        let decision = cordon_core::config::Config::default().policy.decide(parsed);
        assert_eq!(decision.verdict, Verdict::Quarantine, "{}", decision.reason);
    }
}
