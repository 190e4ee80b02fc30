//! `cordon smoke-test`: proves a deployment on a real account, end to end. It launches a small
//! instance of its own in the given subnet, starts the deployed state machine with a synthetic
//! finding that names it, follows the execution, checks the containment through EC2's own
//! answers, approves as the caller with the break-glass key, checks that the restore gave back
//! exactly what the instance had, and terminates the instance, whatever happened before.
//!
//! The finding names only the instance this command launched, whose tags say so
//! (`cordon-smoke-test`, outside the `cordon:` keys that the tag guard SCP keeps to Cordon's
//! roles); its remote address is one of a documentation range (RFC 5737). What a containment
//! does beside the instance happens too, and the README lists it: Cordon's groups in the VPC,
//! the denies in the VPC's ACLs while it is isolated, the evidence snapshots (kept), the
//! emails.

mod checks;

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{
    Filter, HttpTokensState, InstanceMetadataOptionsRequest, InstanceType, ResourceType,
    ShutdownBehavior, Tag, TagSpecification,
};
use cordon_core::approval::{decide_as_caller, standing, Action, Standing};
use cordon_core::aws::{sdk_error, AwsContext, AwsEc2, AwsTarget};
use cordon_core::decision::DecisionKey;
use cordon_core::ec2::{Ec2, Instance, RuleAction};
use cordon_core::kms::{AwsKms, Kms};
use cordon_core::CordonError;
use serde::Serialize;
use serde_json::{json, Value};

pub use checks::{contained, newest_image, remote_address, restored_exactly, Held};

/// The tag that marks what the smoke test launched.
pub const SMOKE_TAG: &str = "cordon-smoke-test";

/// How long a check of EC2's answers is tried again: its reads may lag the changes a little.
const SETTLE: Duration = Duration::from_secs(30);

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
    /// How long between two reads of the execution or of EC2.
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

/// The clients the test acts through.
struct Clients {
    ec2: aws_sdk_ec2::Client,
    cordon_ec2: AwsEc2,
    sfn: aws_sdk_sfn::Client,
    key: DecisionKey<AwsKms>,
}

/// Runs the smoke test; 0 when every step passed.
pub async fn run(target: &AwsTarget, plan: &Plan) -> Result<u8, CordonError> {
    let context = AwsContext::load(target).await.acting_as("smoke-test");
    let sdk = context.sdk_config();
    let clients = Clients {
        ec2: aws_sdk_ec2::Client::new(sdk),
        cordon_ec2: context.ec2(None),
        sfn: aws_sdk_sfn::Client::new(sdk),
        key: DecisionKey {
            kms: AwsKms::new(sdk),
            key_id: plan.break_glass_key.clone(),
        },
    };
    // Everything that can be checked before an instance exists is: a mistake here launches
    // nothing.
    let ready = prepare(sdk, &clients, plan).await?;
    let mut steps = Steps {
        steps: Vec::new(),
        started: Instant::now(),
    };
    let token = format!("cordon-smoke-test-{}", cordon_core::steps::unix_now());
    let instance_id = match launch(&clients.ec2, plan, &ready, &token).await {
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
            // The launch may have been made and only its answer lost: find it by its token.
            if let Some(id) = launched_with(&clients.ec2, &token).await {
                let ended = terminate(&clients, &id).await;
                steps.record("terminate", ended);
            }
            return Ok(report(&steps, None, None));
        }
    };
    // Interrupted (Ctrl-C), the instance is still terminated, and the report says what of the
    // execution may be left.
    let mut execution = None;
    let interrupted = tokio::select! {
        () = prove(&clients, plan, &ready, &instance_id, &mut steps, &mut execution) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        steps.record(
            "interrupted",
            Err(leftover(execution.as_deref(), "interrupted")),
        );
    }
    let ended = terminate(&clients, &instance_id).await;
    steps.record("terminate", ended);
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

/// What to do about an execution the test leaves behind.
fn leftover(execution: Option<&str>, why: &str) -> String {
    match execution {
        Some(arn) => format!(
            "{why}: the execution {arn} may still run; when it asks for a decision, approve it (cordon approve --execution {arn} --break-glass-key ...), or let it time out and run cordon cleanup --apply to remove what it left on the terminated instance's VPC"
        ),
        None => format!("{why}: no execution was started"),
    }
}

async fn prepare(
    sdk: &aws_config::SdkConfig,
    clients: &Clients,
    plan: &Plan,
) -> Result<Ready, CordonError> {
    let invalid =
        |message: String| CordonError::InvalidInput(format!("{message}; nothing was launched"));
    if !plan
        .subnet
        .strip_prefix("subnet-")
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(invalid(format!(
            "--subnet {} is not a subnet id (subnet-0123456789abcdef0)",
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
            "--state-machine {} is not a state machine ARN: give the StateMachineArn output of Cordon's stack",
            plan.state_machine
        )));
    }
    if machine_region != region {
        return Err(invalid(format!(
            "the state machine is in {machine_region} and the subnet is looked for in {region}: give --region {machine_region}, where Cordon's stack runs"
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
            "subnet {} was not found in {region}: give a subnet of the account and region where Cordon's stack runs",
            plan.subnet
        ))
    };
    let subnets = match clients
        .ec2
        .describe_subnets()
        .subnet_ids(&plan.subnet)
        .send()
        .await
    {
        Ok(subnets) => subnets,
        Err(error)
            if aws_sdk_ec2::error::ProvideErrorMetadata::code(&error)
                .is_some_and(|code| code.contains("NotFound")) =>
        {
            return Err(not_found())
        }
        Err(error) => return Err(sdk_error("DescribeSubnets", &plan.subnet, error)),
    };
    let subnet = subnets.subnets().first().ok_or_else(not_found)?;
    let vpc_id = subnet.vpc_id().unwrap_or_default().to_string();
    // A subnet shared with this account through AWS RAM: its ACLs are its owner's, which
    // Cordon rightly leaves alone, and the test would fail a correct deployment.
    if let Some(owner) = subnet.owner_id().filter(|owner| *owner != account) {
        return Err(invalid(format!(
            "subnet {} belongs to account {owner} and is shared with this one: Cordon cannot change its ACLs there, so give a subnet account {account} owns",
            plan.subnet
        )));
    }
    let machine = clients
        .sfn
        .describe_state_machine()
        .state_machine_arn(&plan.state_machine)
        .send()
        .await
        .map_err(|e| {
            invalid(format!(
                "the state machine {} cannot be read ({}): give the StateMachineArn output of Cordon's stack",
                plan.state_machine,
                aws_sdk_sfn::error::DisplayErrorContext(&e)
            ))
        })?;
    let definition: Value = serde_json::from_str(machine.definition()).unwrap_or_default();
    if let Some(why) = checks::unprovable(&definition) {
        return Err(invalid(format!(
            "{} cannot be proven: {why}",
            plan.state_machine
        )));
    }
    // The approval at the end needs the break-glass key: a MAC of a message no decision can
    // be (decisions are MACs of their own format) proves the caller may seal with it.
    let key = &clients.key;
    key.kms
        .generate_mac(&key.key_id, b"cordon smoke-test: may this caller seal decisions?")
        .await
        .map_err(|error| {
            invalid(format!(
                "the break-glass key {} does not seal for {caller} ({error}): the smoke test approves the restore with it, so the caller must be among the stack's BreakGlassPrincipals, and not an EC2 instance's role (the key refuses those credentials)",
                key.key_id
            ))
        })?;
    let image_id = match &plan.image_id {
        Some(id) => id.clone(),
        None => newest_amazon_linux(&clients.ec2)
            .await?
            .ok_or_else(|| {
                invalid(format!(
                    "Amazon publishes no Amazon Linux 2023 image for x86_64 in {region} that this account sees: give --image-id"
                ))
            })?,
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

async fn newest_amazon_linux(ec2: &aws_sdk_ec2::Client) -> Result<Option<String>, CordonError> {
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
    Ok(newest_image(&found).map(String::from))
}

/// Launches the test's instance, idempotently under `token`. It is launched to terminate on a
/// shutdown, so that Cordon's change of that to stop, and its restore, show.
async fn launch(
    ec2: &aws_sdk_ec2::Client,
    plan: &Plan,
    ready: &Ready,
    token: &str,
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
        .client_token(token)
        .image_id(&ready.image_id)
        .instance_type(InstanceType::from(plan.instance_type.as_str()))
        .subnet_id(&plan.subnet)
        .min_count(1)
        .max_count(1)
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
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

/// The instance a launch under `token` made, if any.
async fn launched_with(ec2: &aws_sdk_ec2::Client, token: &str) -> Option<String> {
    let found = ec2
        .describe_instances()
        .filters(Filter::builder().name("client-token").values(token).build())
        .send()
        .await
        .ok()?;
    found
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.instance_id().map(String::from))
}

/// What the instance holds now, with the deny of `remote` on its subnet's ACL.
async fn held(clients: &Clients, instance: &Instance, remote: &str) -> Result<Held, CordonError> {
    let ec2 = &clients.cordon_ec2;
    let mut held = Held {
        termination_protection: ec2.termination_protection(&instance.id).await?,
        shutdown_behavior: ec2.shutdown_behavior(&instance.id).await?,
        cordon_tags: instance
            .tags
            .iter()
            .filter(|(key, _)| key.starts_with("cordon:"))
            .map(|(key, _)| key.clone())
            .collect(),
        volumes: instance
            .volumes
            .iter()
            .map(|v| (v.volume_id.clone(), v.delete_on_termination))
            .collect(),
        ..Held::default()
    };
    for interface in &instance.interfaces {
        held.groups
            .insert(interface.id.clone(), interface.groups.clone());
        held.names.extend(interface.group_names.clone());
        held.conntrack
            .insert(interface.id.clone(), format!("{:?}", interface.conntrack));
    }
    let first = instance.interfaces.first();
    let subnet = first.map(|i| i.subnet_id.clone()).unwrap_or_default();
    let vpc = first.map(|i| i.vpc_id.clone()).unwrap_or_default();
    held.claim = ec2
        .group_named(&vpc, &cordon_core::claim::group_name(&instance.id))
        .await?
        .is_some();
    let remote = format!("{remote}/32");
    for acl in ec2.network_acls(&vpc).await? {
        if acl.subnet_ids.contains(&subnet) {
            let denies = |egress: bool| {
                acl.entries
                    .iter()
                    .filter(|e| {
                        e.action == RuleAction::Deny && e.cidr == remote && e.egress == egress
                    })
                    .count()
            };
            held.remote_denies = (denies(false), denies(true));
        }
        let mut entries: Vec<String> = acl
            .entries
            .iter()
            .map(|e| {
                format!(
                    "{} {} {:?} {} {}",
                    if e.egress { "out" } else { "in" },
                    e.rule_number,
                    e.action,
                    e.protocol,
                    e.cidr
                )
            })
            .collect();
        entries.sort();
        held.acl_entries.insert(acl.id.clone(), entries);
    }
    Ok(held)
}

/// `check` of what the instance holds, tried again for a while: EC2's reads may lag.
async fn settled(
    clients: &Clients,
    plan: &Plan,
    instance_id: &str,
    remote: &str,
    check: impl Fn(&Held) -> Result<String, String>,
) -> Result<String, String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let outcome = match clients.cordon_ec2.describe_instance(instance_id).await {
            Ok(instance) => held(clients, &instance, remote)
                .await
                .map_err(|e| e.to_string())
                .and_then(|held| check(&held)),
            Err(error) => Err(error.to_string()),
        };
        if outcome.is_ok() || Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(plan.poll).await;
    }
}

fn sfn_error(operation: &str, error: &impl std::error::Error) -> CordonError {
    CordonError::Unavailable {
        operation: operation.into(),
        message: aws_sdk_sfn::error::DisplayErrorContext(error).to_string(),
    }
}

/// Where an execution stands.
struct Progress {
    states: Vec<String>,
    status: String,
    /// Its output when it ended, for what it says of why.
    output: Option<String>,
}

async fn progress(sfn: &aws_sdk_sfn::Client, execution: &str) -> Result<Progress, CordonError> {
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
    let described = sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
        .map_err(|e| sfn_error("DescribeExecution", &e))?;
    Ok(Progress {
        states,
        status: described.status().as_str().to_string(),
        output: described.output().map(String::from),
    })
}

/// Why an execution ended where it did, from its output: its outcome's reason, if it says.
fn why_ended(progress: &Progress) -> String {
    let output: Value = progress
        .output
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or_default();
    let reason = ["/capture/reason", "/reason", "/cause", "/error"]
        .iter()
        .find_map(|path| output.pointer(path).and_then(Value::as_str))
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let report_only = match progress.states.iter().any(|s| s == "ReportedOnly") {
        true => " (the stack is in report-only mode: Mode=report-only contains nothing)",
        false => "",
    };
    format!(
        "the execution ended {} in {}{report_only}{reason}",
        progress.status,
        progress
            .states
            .last()
            .map(String::as_str)
            .unwrap_or("no state")
    )
}

/// How a wait for the execution came out.
enum Waited {
    /// It waits for a decision.
    Deciding,
    /// It ended.
    Ended(Progress),
}

/// Follows the execution, printing each state as it is entered, until it waits for a decision
/// (only if `until_deciding`) or ends.
async fn follow(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
    plan: &Plan,
    printed: &mut usize,
    until_deciding: bool,
) -> Result<Waited, String> {
    let deadline = Instant::now() + plan.wait;
    loop {
        let now = progress(sfn, execution).await.map_err(|e| e.to_string())?;
        for state in now.states.iter().skip(*printed) {
            eprintln!("cordon smoke-test:   state {state}");
        }
        *printed = now.states.len();
        if now.status != "RUNNING" {
            return Ok(Waited::Ended(now));
        }
        if until_deciding {
            if let Ok(Standing::Waiting(_)) = standing(sfn, execution, None).await {
                return Ok(Waited::Deciding);
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "still running after {} s, in {}",
                plan.wait.as_secs(),
                now.states
                    .last()
                    .map(String::as_str)
                    .unwrap_or("no state yet")
            ));
        }
        tokio::time::sleep(plan.poll).await;
    }
}

/// From a running instance to its exact restore; `execution` is set once one is started.
async fn prove(
    clients: &Clients,
    plan: &Plan,
    ready: &Ready,
    instance_id: &str,
    steps: &mut Steps,
    execution: &mut Option<String>,
) {
    let remote = remote_address(instance_id);
    // Running, and what it holds before Cordon acts.
    let deadline = Instant::now() + plan.wait;
    let instance = loop {
        match clients.cordon_ec2.describe_instance(instance_id).await {
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
    let (instance, before) = match instance {
        Ok(instance) => match held(clients, &instance, &remote).await {
            Ok(before) => (instance, before),
            Err(error) => {
                steps.record("running", Err(error.to_string()));
                return;
            }
        },
        Err(problem) => {
            steps.record("running", Err(problem));
            return;
        }
    };
    steps.record(
        "running",
        Ok(format!(
            "interfaces {:?}; termination protection {}; shutdown {}",
            before.groups, before.termination_protection, before.shutdown_behavior
        )),
    );

    let interfaces: Vec<checks::FindingInterface<'_>> = instance
        .interfaces
        .iter()
        .map(|i| checks::FindingInterface {
            id: &i.id,
            vpc_id: &i.vpc_id,
            subnet_id: &i.subnet_id,
            private_ipv4: i.private_ipv4.first().map(String::as_str),
        })
        .collect();
    let event = json!({
        "version": "0",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": ready.account,
        "region": ready.region,
        "detail": checks::finding(instance_id, &interfaces, &ready.account, &ready.region, &ready.partition),
    });
    let name = format!(
        "cordon-smoke-test-{instance_id}-{}",
        cordon_core::steps::unix_now()
    );
    let started = clients
        .sfn
        .start_execution()
        .state_machine_arn(&plan.state_machine)
        .name(&name)
        .input(event.to_string())
        .send()
        .await;
    let arn = match started {
        Ok(started) => started.execution_arn().to_string(),
        Err(error) => {
            steps.record(
                "start",
                Err(sfn_error("StartExecution", &error).to_string()),
            );
            return;
        }
    };
    steps.record("start", Ok(arn.clone()));
    *execution = Some(arn.clone());

    let mut printed = 0;
    match follow(&clients.sfn, &arn, plan, &mut printed, true).await {
        Ok(Waited::Deciding) => {}
        Ok(Waited::Ended(ended)) => {
            steps.record("contained", Err(why_ended(&ended)));
            return;
        }
        Err(problem) => {
            steps.record("contained", Err(leftover(Some(&arn), &problem)));
            return;
        }
    }
    let isolated = settled(clients, plan, instance_id, &remote, |held| {
        contained(held, &ready.vpc_id, &remote)
    })
    .await;
    // Whatever the check found, the restore is asked for: the instance goes either way, the
    // restore is half of what is proven, and an execution left waiting would keep what it
    // holds (a volume kept on termination, denies of an address EC2 gives out again).
    steps.record("contained", isolated);

    let decided = decide_as_caller(
        &clients.sfn,
        &clients.key,
        &arn,
        Action::Approve,
        &ready.caller,
    )
    .await;
    let approved = steps.record(
        "approve",
        decided
            .map(|d| format!("approved as {}", d.approver.unwrap_or_default()))
            .map_err(|e| leftover(Some(&arn), &e.to_string())),
    );
    if !approved {
        return;
    }
    match follow(&clients.sfn, &arn, plan, &mut printed, false).await {
        Ok(Waited::Ended(ended))
            if ended.status == "SUCCEEDED"
                && ended.states.last().map(String::as_str) == Some("Restored") =>
        {
            steps.record(
                "restored",
                Ok("the execution ended SUCCEEDED in Restored".into()),
            );
        }
        Ok(Waited::Ended(ended)) => {
            steps.record("restored", Err(why_ended(&ended)));
            return;
        }
        Ok(Waited::Deciding) => unreachable!("followed to its end"),
        Err(problem) => {
            steps.record("restored", Err(leftover(Some(&arn), &problem)));
            return;
        }
    }
    let exact = settled(clients, plan, instance_id, &remote, |after| {
        restored_exactly(&before, after)
    })
    .await;
    steps.record("exact", exact);
}

/// Terminates the instance the smoke test launched: termination protection off first (Cordon
/// may have left it on), whether or not it could be read. What could not be done is said with
/// the commands that do it, and so is each volume that outlives the instance.
async fn terminate(clients: &Clients, instance_id: &str) -> Result<String, String> {
    let kept: Vec<String> = match clients.cordon_ec2.describe_instance(instance_id).await {
        Ok(instance) => instance
            .volumes
            .iter()
            .filter(|v| !v.delete_on_termination)
            .map(|v| v.volume_id.clone())
            .collect(),
        Err(_) => Vec::new(),
    };
    let _ = clients
        .cordon_ec2
        .set_termination_protection(instance_id, false)
        .await;
    let mut last = None;
    for _ in 0..3 {
        match clients
            .ec2
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(_) => {
                last = None;
                break;
            }
            Err(error) => {
                last = Some(sdk_error("TerminateInstances", instance_id, error));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    if let Some(error) = last {
        return Err(format!(
            "{instance_id} IS STILL RUNNING ({error}): aws ec2 modify-instance-attribute --instance-id {instance_id} --no-disable-api-termination && aws ec2 terminate-instances --instance-ids {instance_id}"
        ));
    }
    let mut done = format!("{instance_id} terminated");
    if !kept.is_empty() {
        done.push_str(&format!(
            "; its volumes {} stay (DeleteOnTermination off, as Cordon left them): delete them with aws ec2 delete-volume once detached",
            kept.join(", ")
        ));
        return Err(done);
    }
    Ok(done)
}
