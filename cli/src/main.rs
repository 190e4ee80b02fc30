//! `cordon`: the command line for triage, break-glass isolation and restore, and status.
//! JSON on stdout; progress and errors on stderr.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod demo;
mod regions;
mod smoke;
use cordon_core::approval::Action;
use cordon_core::aws::{AwsContext, AwsEc2, AwsTarget};
use cordon_core::capture::{capture_seeing, CaptureStatus, FindingSummary, Pace};
use cordon_core::claim::{claimed_with_records, kept_record_of};
use cordon_core::config::{parse_severity, Config, ForensicSource, RuleBand};
use cordon_core::decision::DecisionKey;
use cordon_core::ec2::{DenyEntry, Ec2};
use cordon_core::error::StepError;
use cordon_core::finding::{parse_document, Finding, ParsedFinding};
use cordon_core::isolate::{isolate_seen, StepStatus};
use cordon_core::kms::AwsKms;
use cordon_core::measures::auto_scaling::AutoScaling;
use cordon_core::measures::credentials::{Iam, IamProvider};
use cordon_core::measures::load_balancers::LoadBalancing;
use cordon_core::nacl::block;
use cordon_core::policy::Verdict;
use cordon_core::record::STATE_TAG_PREFIX;
use cordon_core::restore::RestoreStatus;
use cordon_core::seal::RecordKey;
use cordon_core::steps::now_rfc3339;
use cordon_core::CordonError;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "cordon",
    version,
    about = "Contain a compromised EC2 instance, and give it back"
)]
struct Cli {
    /// Send AWS calls here (a local emulator); AWS_ENDPOINT_URL works too.
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
    /// AWS region when the finding names none; AWS_REGION works too.
    #[arg(long, global = true)]
    region: Option<String>,
    /// Named profile from the shared AWS config; AWS_PROFILE works too.
    #[arg(long, global = true)]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide, without touching AWS, what Cordon would do with each finding in the files.
    Triage {
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Capture, isolate and block an instance now (break glass).
    Isolate(IsolateArgs),
    /// Give an isolated instance back its recorded network state.
    Restore(RestoreArgs),
    /// List what Cordon left behind in this account and region (unused groups, claims and
    /// ACL entries of instances that no longer exist); --apply removes it.
    Cleanup(CleanupArgs),
    /// Break glass: approve the restore of a waiting quarantine as yourself (your AWS
    /// identity is the approver, and CloudTrail names you). Refused unless it waits for a decision.
    Approve(DecideArgs),
    /// Break glass: keep a waiting quarantine isolated, as yourself.
    Reject(DecideArgs),
    /// List quarantined instances (from Cordon's tags), and with --state-machine every
    /// quarantine that waits for a decision (from Step Functions, in every account and region
    /// the stack acts in).
    Status {
        #[arg(long)]
        instance: Option<String>,
        /// The stack's state machine (its StateMachineArn output).
        #[arg(long, env = "CORDON_STATE_MACHINE_ARN")]
        state_machine: Option<String>,
    },
    /// For each region of the account: whether GuardDuty runs there and whether Cordon's
    /// stack does. Exits 3 when GuardDuty runs in a region without a working stack, or a
    /// region cannot be read.
    Regions {
        /// The name Cordon's stack has in every region.
        #[arg(long, default_value = "cordon")]
        stack_name: String,
    },
    /// Run the quarantine workflow (the real state machine definition) for a finding on moto.
    Run {
        #[arg(long)]
        finding: PathBuf,
        #[command(flatten)]
        workflow: WorkflowArgs,
    },
    /// The whole workflow on a local emulator, from a compromised instance to its restore: no
    /// AWS account needed.
    Demo {
        #[command(flatten)]
        workflow: WorkflowArgs,
    },
    /// Prove a deployment on this account: launch a small instance in --subnet (tagged
    /// cordon-smoke-test), start the stack's state machine with a synthetic finding naming
    /// it, check through EC2 that it is contained, approve as yourself with the break-glass
    /// key, check that the restore is exact, and terminate the instance. Exits 0 when every
    /// step passed.
    SmokeTest(SmokeArgs),
    /// The state machine as a Mermaid diagram.
    Graph,
    /// Confirm an email subscription to the alert topic so that unsubscribing needs AWS
    /// credentials: paste the "Confirm subscription" link of AWS's email instead of clicking
    /// it (a click confirms a subscription that any holder of a later email can end).
    ConfirmSubscription {
        /// The link from the confirmation email, whole and in quotes.
        #[arg(long)]
        link: String,
        /// The stack's alert topic (its AlertTopic output): the link must be for it.
        #[arg(long)]
        topic: Option<String>,
    },
}

#[derive(Args)]
struct SmokeArgs {
    /// The subnet to launch the test instance in (its VPC gets Cordon's groups if it has none).
    #[arg(long)]
    subnet: String,
    /// The stack's state machine (its StateMachineArn output).
    #[arg(long, env = "CORDON_STATE_MACHINE_ARN")]
    state_machine: String,
    /// The stack's break-glass key (its BreakGlassKeyArn output): the caller must be among the
    /// stack's BreakGlassPrincipals, since the test approves the restore as the caller.
    #[arg(long, env = "CORDON_BREAK_GLASS_KEY_ID")]
    break_glass_key: String,
    /// The image to launch; default: the newest Amazon Linux 2023 image for x86_64.
    #[arg(long)]
    image_id: Option<String>,
    #[arg(long, default_value = "t3.micro")]
    instance_type: String,
    /// How long each wait may last (the instance to run, the containment, the restore).
    #[arg(long, default_value_t = 900)]
    wait_seconds: u64,
    /// Seconds between two reads of the execution and of EC2.
    #[arg(long, default_value_t = 5, hide = true)]
    poll_seconds: u64,
}

#[derive(Args)]
struct DecideArgs {
    /// The waiting execution (in the approval email, `cordon status` or the console).
    #[arg(long)]
    execution: String,
    /// The stack's break-glass key (its BreakGlassKeyArn output): only the stack's
    /// BreakGlassPrincipals may seal a decision with it, and the restore step takes a decision
    /// made this way only under it.
    #[arg(long, env = "CORDON_BREAK_GLASS_KEY_ID")]
    break_glass_key: String,
}

#[derive(Args)]
struct RestoreArgs {
    #[arg(long)]
    instance: String,
    #[command(flatten)]
    records: RecordArgs,
}

/// How a command that reads Cordon's records kept in tags checks them.
#[derive(Args)]
struct RecordArgs {
    /// The stack's record key, its full ARN (the RecordKeyArn output): a record kept in tags
    /// is used only when its seal verifies under it, since whoever may tag the instance, a
    /// security group or an ACL could otherwise choose what is given back or removed.
    #[arg(long, env = "CORDON_RECORD_KEY_ID")]
    record_key: Option<String>,
    /// The profile that may kms:VerifyMac with the record key, in the stack's account, when
    /// the instance is in another account (its EC2 calls use --profile).
    #[arg(long)]
    record_key_profile: Option<String>,
    /// Use records whose seal does not verify, or that have none (`cordon isolate`'s, a
    /// release's before seals): whoever could write those tags chose what is restored or
    /// removed. Each such record is named in a warning and in the report.
    #[arg(long)]
    trust_unverified: bool,
}

#[derive(Args)]
struct CleanupArgs {
    /// Remove what is listed (without it, a dry run: nothing changes).
    #[arg(long)]
    apply: bool,
    #[command(flatten)]
    records: RecordArgs,
}

#[derive(Args)]
struct WorkflowArgs {
    /// approve or reject: open the email's link and press the button, as a person would;
    /// none: wait for a person's click on the printed link, or for the approval timeout.
    #[arg(long, value_enum, default_value = "none")]
    decision: DecisionArg,
    /// How long the workflow waits for a decision (seconds).
    #[arg(long, default_value_t = 3600)]
    approval_timeout: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DecisionArg {
    Approve,
    Reject,
    None,
}

impl From<DecisionArg> for cordon::runner::DecisionMode {
    fn from(decision: DecisionArg) -> Self {
        match decision {
            DecisionArg::Approve => cordon::runner::DecisionMode::Approve,
            DecisionArg::Reject => cordon::runner::DecisionMode::Reject,
            DecisionArg::None => cordon::runner::DecisionMode::Wait,
        }
    }
}

#[derive(Args)]
struct PolicyArgs {
    /// Lowest severity acted on (GuardDuty: High is 7.0-8.9).
    #[arg(long, value_parser = parse_severity)]
    min_severity: Option<f64>,
    #[arg(long)]
    include_samples: bool,
    #[arg(long)]
    include_archived: bool,
}

#[derive(Args)]
struct IsolateArgs {
    /// A GuardDuty finding (any shape: event, bare, get-findings output holding one finding).
    #[arg(long, conflicts_with_all = ["instance", "remote_ip"], required_unless_present = "instance")]
    finding: Option<PathBuf>,
    /// The instance to isolate without a finding.
    #[arg(long)]
    instance: Option<String>,
    /// A remote address to deny in the instance's subnets (repeatable; with --instance).
    #[arg(long = "remote-ip", requires = "instance")]
    remote_ip: Vec<IpAddr>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Let only this CIDR reach the isolated instance (forensics).
    #[arg(long, conflicts_with = "forensic_security_group")]
    forensic_cidr: Option<String>,
    /// Let only members of this security group reach the isolated instance.
    #[arg(long)]
    forensic_security_group: Option<String>,
    /// Rule numbers Cordon may use in network ACLs, e.g. 1-99.
    #[arg(long)]
    nacl_band: Option<String>,
    /// Rules per network ACL and direction (AWS default 20).
    #[arg(long)]
    nacl_rule_quota: Option<usize>,
}

/// Exit codes are part of the contract: 0 done, 1 failed, 2 invalid input (triage), 3 partial
/// or drift.
const EXIT_FAILED: u8 = 1;
const EXIT_INVALID: u8 = 2;
const EXIT_PARTIAL: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the async runtime: {error}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => fail(&error.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("cordon: error: {message}");
    ExitCode::from(EXIT_FAILED)
}

async fn run(cli: Cli) -> Result<u8, CordonError> {
    let target = AwsTarget {
        region: cli.region.clone(),
        profile: cli.profile.clone(),
        endpoint_url: cli.endpoint_url.clone(),
    };
    match cli.command {
        Command::Triage { policy, files } => triage(&policy, &files),
        Command::Isolate(args) => isolate_command(&target, &args).await,
        Command::Restore(args) => restore_command(&target, &args).await,
        Command::Cleanup(args) => cleanup_command(&target, &args).await,
        Command::ConfirmSubscription { link, topic } => {
            confirm_subscription_command(&target, &link, topic.as_deref()).await
        }
        Command::Approve(args) => decide_command(&target, &args, Action::Approve).await,
        Command::Reject(args) => decide_command(&target, &args, Action::Reject).await,
        Command::Status {
            instance,
            state_machine,
        } => status_command(&target, instance.as_deref(), state_machine.as_deref()).await,
        Command::Regions { stack_name } => regions_command(&target, &stack_name).await,
        Command::Run { finding, workflow } => {
            run_command(target.endpoint_url.as_deref(), &finding, &workflow).await
        }
        Command::Demo { workflow } => {
            demo::run(
                target.endpoint_url.as_deref(),
                workflow.decision.into(),
                workflow.approval_timeout,
            )
            .await
        }
        Command::SmokeTest(args) => {
            smoke::run(
                &target,
                &smoke::Plan {
                    subnet: args.subnet,
                    state_machine: args.state_machine,
                    break_glass_key: args.break_glass_key,
                    image_id: args.image_id,
                    instance_type: args.instance_type,
                    wait: std::time::Duration::from_secs(args.wait_seconds),
                    poll: std::time::Duration::from_secs(args.poll_seconds.max(1)),
                },
            )
            .await
        }
        Command::Graph => {
            print!(
                "{}",
                cordon::graph::mermaid(cordon::runner::DEFINITION)
                    .map_err(CordonError::InvalidConfiguration)?
            );
            Ok(0)
        }
    }
}

fn config_with(policy: &PolicyArgs) -> Result<Config, CordonError> {
    let mut config = Config::from_env()?;
    if let Some(min) = policy.min_severity {
        config.policy.min_severity = min;
    }
    config.policy.include_samples |= policy.include_samples;
    config.policy.include_archived |= policy.include_archived;
    Ok(config)
}

fn print_line(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string(value).expect("output serialises")
    );
}

fn print_pretty(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serialises")
    );
}

fn triage(policy: &PolicyArgs, files: &[PathBuf]) -> Result<u8, CordonError> {
    let config = config_with(policy)?;
    let mut any_invalid = false;
    for file in files {
        let source = file.display().to_string();
        let parsed = match std::fs::read_to_string(file) {
            Ok(text) => parse_document(&text),
            Err(error) => vec![ParsedFinding::Invalid {
                finding_id: None,
                reason: format!("cannot read {source}: {error}"),
            }],
        };
        for item in parsed {
            let line = match item {
                ParsedFinding::Valid(finding) => {
                    let decision = config.policy.decide(&finding);
                    json!({
                        "source": source,
                        "finding_id": finding.id,
                        "finding_type": finding.finding_type,
                        "instance_id": finding.instance_id,
                        "decision": decision.verdict,
                        "reason": decision.reason,
                    })
                }
                ParsedFinding::Invalid { finding_id, reason } => {
                    any_invalid = true;
                    json!({
                        "source": source,
                        "finding_id": finding_id,
                        "finding_type": null,
                        "instance_id": null,
                        "decision": "invalid",
                        "reason": reason,
                    })
                }
            };
            print_line(&line);
        }
    }
    Ok(if any_invalid { EXIT_INVALID } else { 0 })
}

/// The one finding in a file, or a clear error; nothing in AWS is touched before this passes.
fn read_finding(path: &PathBuf) -> Result<Finding, CordonError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CordonError::InvalidInput(format!("cannot read {}: {error}", path.display()))
    })?;
    let mut parsed = parse_document(&text);
    if parsed.len() != 1 {
        return Err(CordonError::InvalidInput(format!(
            "{} holds {} findings; isolate takes one (use `cordon triage` to list them)",
            path.display(),
            parsed.len()
        )));
    }
    match parsed.remove(0) {
        ParsedFinding::Valid(finding) => Ok(*finding),
        ParsedFinding::Invalid { reason, .. } => Err(CordonError::InvalidInput(format!(
            "{}: {reason}",
            path.display()
        ))),
    }
}

fn isolate_config(args: &IsolateArgs) -> Result<Config, CordonError> {
    let mut config = config_with(&args.policy)?;
    if args.forensic_cidr.is_some() || args.forensic_security_group.is_some() {
        config.forensic_access = ForensicSource::from_settings(
            args.forensic_cidr.as_deref(),
            args.forensic_security_group.as_deref(),
        )?;
    }
    if let Some(band) = &args.nacl_band {
        config.nacl.band = RuleBand::parse(band)?;
    }
    if let Some(quota) = args.nacl_rule_quota {
        if !(1..=40).contains(&quota) {
            return Err(CordonError::InvalidConfiguration(format!(
                "--nacl-rule-quota {quota} must be from 1 to 40 (AWS's adjustable maximum)"
            )));
        }
        config.nacl.rule_quota = quota;
    }
    Ok(config)
}

fn check_instance_id(id: &str) -> Result<(), CordonError> {
    let hex = id.strip_prefix("i-").unwrap_or("");
    if (hex.len() == 8 || hex.len() == 17) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(CordonError::InvalidInput(format!(
            "{id:?} is not an EC2 instance id (i- followed by 8 or 17 hex digits)"
        )))
    }
}

/// One line per interface, as users of `isolate` and `status` see it.
#[derive(Serialize)]
struct EniLine {
    eni_id: String,
    /// What is true of it after `isolate`: isolated, rolled back to its original groups, or
    /// left on which groups (none for `status`, which only reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<cordon_core::isolate::InterfaceOutcome>,
    original_groups: Vec<String>,
    groups_now: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<cordon_core::error::StepError>,
}

#[derive(Serialize)]
struct IsolateOutput {
    instance_id: Option<String>,
    status: &'static str,
    reason: String,
    finding: Option<FindingSummary>,
    enis: Vec<EniLine>,
    nacl_entries: Vec<DenyEntry>,
    /// The finding's remote addresses that no ACL denies, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    remote_not_denied: Vec<cordon_core::nacl::RemoteNotDenied>,
    termination_protection: Option<bool>,
    /// The Auto Scaling measure's report (None: not run, the instance being skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_scaling: Option<cordon_core::measures::auto_scaling::Report>,
    /// The credentials measure's report (None: not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    credentials: Option<cordon_core::measures::credentials::Report>,
    /// The evidence measure's report (None: not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<cordon_core::measures::evidence::Report>,
    /// The load-balancer measure's report (None: not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    load_balancers: Option<cordon_core::measures::load_balancers::Report>,
    notes: Vec<String>,
    errors: Vec<StepError>,
}

async fn isolate_command(target: &AwsTarget, args: &IsolateArgs) -> Result<u8, CordonError> {
    let config = isolate_config(args)?;
    let (instance_id, summary, remote) = match (&args.finding, &args.instance) {
        (Some(path), _) => {
            let finding = read_finding(path)?;
            let summary = FindingSummary::from(&finding);
            let decision = config.policy.decide(&finding);
            if decision.verdict == Verdict::Skip {
                print_pretty(&IsolateOutput {
                    instance_id: finding.instance_id.clone(),
                    status: "skipped",
                    reason: decision.reason,
                    finding: Some(summary),
                    enis: vec![],
                    nacl_entries: vec![],
                    remote_not_denied: vec![],
                    termination_protection: None,
                    auto_scaling: None,
                    credentials: None,
                    evidence: None,
                    load_balancers: None,
                    notes: vec![],
                    errors: vec![],
                });
                return Ok(0);
            }
            let id = finding.instance_id.clone().unwrap_or_default();
            (id, Some(summary), finding.remote_addresses.clone())
        }
        (None, Some(id)) => (id.clone(), None, args.remote_ip.clone()),
        (None, None) => unreachable!("clap requires --finding or --instance"),
    };
    check_instance_id(&instance_id)?;
    let region = summary.as_ref().and_then(|s| s.region.clone());
    if let (Some(finding_region), Some(asked)) = (&region, &target.region) {
        if finding_region != asked {
            eprintln!(
                "cordon: acting in {finding_region}, the finding's region, not --region {asked}"
            );
        }
    }
    let aws = operator_context(target).await;
    let ec2 = aws.ec2(region.as_deref());
    let here = cordon_core::ec2::Target {
        account_id: None,
        region: region.clone(),
    };
    let autoscaling =
        cordon_core::measures::auto_scaling::AutoScalingProvider::autoscaling_for(&aws, &here)
            .await?;
    let iam = IamProvider::iam_for(&aws, &here).await?;
    let instance_region = cordon_core::measures::credentials::region_for(&aws, &here)?;
    let elb = cordon_core::measures::load_balancers::LoadBalancingProvider::load_balancing_for(
        &aws, &here,
    )
    .await?;
    let measures = Measures {
        autoscaling: &autoscaling,
        iam: &iam,
        elb: &elb,
        region: &instance_region,
    };
    let output = Box::pin(contain(
        &ec2,
        measures,
        &instance_id,
        summary,
        &remote,
        &config,
    ))
    .await?;
    print_pretty(&output);
    Ok(match output.status {
        "partial" => EXIT_PARTIAL,
        _ => 0,
    })
}

/// The measures beyond the network that `cordon isolate` takes, and the instance's region
/// (its ARN names it).
struct Measures<'a, A, I, L> {
    autoscaling: &'a A,
    iam: &'a I,
    elb: &'a L,
    region: &'a str,
}

/// Capture, then isolate, block, hold in the Auto Scaling group and cut the credentials side
/// by side: the break-glass containment.
async fn contain(
    ec2: &AwsEc2,
    measures: Measures<'_, impl AutoScaling, impl Iam, impl LoadBalancing>,
    instance_id: &str,
    summary: Option<FindingSummary>,
    remote: &[IpAddr],
    config: &Config,
) -> Result<IsolateOutput, CordonError> {
    eprintln!("cordon: capturing {instance_id}");
    // Break glass acts whatever executions claim the instance (isolation is idempotent),
    // and whatever the stack's mode: an operator who isolates by hand means it.
    let acting = Config {
        mode: cordon_core::config::Mode::Contain,
        ..config.clone()
    };
    let (captured, seen) = capture_seeing(
        ec2,
        instance_id,
        summary.clone(),
        None,
        &now_rfc3339(),
        Pace::AtOnce,
        &acting,
        // A person's credentials may not make seals: a record a person could seal would be
        // trusted wherever Cordon restores. `cordon restore` says this record is unsealed.
        &cordon_core::seal::Unsealed,
    )
    .await?;
    let mut output = IsolateOutput {
        instance_id: Some(instance_id.to_string()),
        status: "isolated",
        reason: captured.reason.clone(),
        finding: summary,
        enis: vec![],
        nacl_entries: vec![],
        remote_not_denied: vec![],
        termination_protection: None,
        auto_scaling: None,
        credentials: None,
        evidence: None,
        load_balancers: None,
        notes: vec![],
        errors: captured.warnings.clone(),
    };
    match captured.status {
        CaptureStatus::Skipped => {
            output.status = "skipped";
            return Ok(output);
        }
        // With its record on the instance, an isolation that was interrupted (a killed run,
        // an execution cut short) is finished by applying it again: every step converges.
        CaptureStatus::AlreadyQuarantined if captured.record.is_some() => {}
        CaptureStatus::AlreadyQuarantined => {
            output.status = "already_isolated";
            let now = ec2.describe_instance(instance_id).await?;
            output.enis = eni_lines(
                captured.record.as_ref().map(|r| r.interfaces.as_slice()),
                &now.interfaces,
            );
            return Ok(output);
        }
        CaptureStatus::Captured => {}
        // `acting` contains: a report-only capture never comes back, and if it did, nothing
        // would be isolated from it.
        CaptureStatus::ReportOnly => {
            return Err(CordonError::InvalidConfiguration(
                "the capture came back report-only; cordon isolate always contains".into(),
            ))
        }
    }
    let record = captured.record.expect("a capture holds its record");

    eprintln!(
        "cordon: isolating {} interface(s) and blocking in network ACLs",
        record.interfaces.len()
    );
    // Independent of each other, as in the state machine's Parallel state: the ACL entries
    // go in while the groups are swapped, and each is done even if the other fails.
    let nacl_settings = config.nacl_settings();
    let finding_id = output
        .finding
        .as_ref()
        .map(|f| f.id.clone())
        .unwrap_or_else(|| "none (cordon isolate --instance)".into());
    let (isolation, nacl, held, cut, preserved, unregistered) = tokio::join!(
        isolate_seen(ec2, &record, config.access(), Some(seen)),
        // Unsealed, as its state record: a person's credentials may not seal.
        block(
            ec2,
            &record,
            remote,
            &nacl_settings,
            &cordon_core::seal::Unsealed
        ),
        cordon_core::measures::auto_scaling::hold(
            ec2,
            measures.autoscaling,
            instance_id,
            config.auto_scaling,
            None
        ),
        cordon_core::measures::credentials::cut(ec2, measures.iam, instance_id, measures.region),
        cordon_core::measures::evidence::preserve(
            ec2,
            instance_id,
            &finding_id,
            None,
            config.evidence
        ),
        // Unsealed, as its other records.
        cordon_core::measures::load_balancers::deregister(
            ec2,
            measures.autoscaling,
            measures.elb,
            instance_id,
            &cordon_core::seal::Unsealed,
            &record.captured_at
        )
    );
    let unregistered_short = match unregistered {
        Ok(report) => {
            let short = !report.errors.is_empty();
            output.errors.extend(report.errors.iter().cloned());
            output.load_balancers = Some(report);
            short
        }
        Err(error) => {
            output.errors.push(error.to_report());
            true
        }
    };
    // Evidence is not containment: a missing snapshot is an error to read, not a partial
    // isolation.
    match preserved {
        Ok(report) => {
            output.errors.extend(report.errors.iter().cloned());
            output.evidence = Some(report);
        }
        Err(error) => output.errors.push(error.to_report()),
    }
    let cut_short = match cut {
        Ok(report) => {
            let short = !report.errors.is_empty();
            output.errors.extend(report.errors.iter().cloned());
            output.credentials = Some(report);
            short
        }
        Err(error) => {
            output.errors.push(error.to_report());
            true
        }
    };
    let held_short = match held {
        Ok(report) => {
            let short = !report.errors.is_empty();
            output.errors.extend(report.errors.iter().cloned());
            output.auto_scaling = Some(report);
            short
        }
        Err(error) => {
            output.errors.push(error.to_report());
            true
        }
    };
    output.nacl_entries = nacl.nacl_entries;
    output.remote_not_denied = nacl.remote_not_denied;
    output.notes = nacl.notes;
    output.notes.extend(nacl.not_possible);
    output.notes.extend(nacl.already_denied);
    if isolation.is_err() {
        // The entries are recorded on their ACLs, where `cordon restore` finds them.
        eprintln!(
            "cordon: the groups were not swapped; {} ACL entries were added",
            output.nacl_entries.len()
        );
    }
    let isolation = isolation?;
    output.enis = isolation
        .enis
        .iter()
        .map(|e| EniLine {
            eni_id: e.eni_id.clone(),
            outcome: Some(e.outcome),
            original_groups: e.original_groups.clone(),
            groups_now: e.groups_now.clone(),
            cause: e.cause.clone(),
        })
        .collect();
    output.notes.extend(isolation.notes.iter().cloned());
    output.termination_protection = Some(isolation.termination_protection);
    output.errors.extend(isolation.errors.iter().cloned());
    output.errors.extend(nacl.errors.iter().cloned());

    let partial = isolation.status == StepStatus::Partial
        || nacl.status == StepStatus::Partial
        || held_short
        || cut_short
        || unregistered_short;
    let again = captured.status == CaptureStatus::AlreadyQuarantined;
    output.status = match (partial, again) {
        (true, _) => "partial",
        (false, true) => "already_isolated",
        (false, false) => "isolated",
    };
    output.reason = if partial {
        format!("{instance_id} is only partly contained: see errors")
    } else if again {
        format!(
            "{instance_id} was already quarantined; its recorded isolation was applied again and holds: {} interface(s), {} ACL entries",
            output.enis.len(),
            output.nacl_entries.len()
        )
    } else {
        format!(
            "{instance_id} is isolated: {} interface(s), {} ACL entries",
            output.enis.len(),
            output.nacl_entries.len()
        )
    };
    Ok(output)
}

fn eni_lines(
    recorded: Option<&[cordon_core::ec2::NetworkInterface]>,
    now: &[cordon_core::ec2::NetworkInterface],
) -> Vec<EniLine> {
    now.iter()
        .map(|current| EniLine {
            eni_id: current.id.clone(),
            outcome: None,
            cause: None,
            original_groups: recorded
                .and_then(|r| r.iter().find(|i| i.id == current.id))
                .map(|i| i.groups.clone())
                .unwrap_or_default(),
            groups_now: current.groups.clone(),
        })
        .collect()
}

/// The execution input EventBridge would send: the event as it is, or a bare finding wrapped
/// in a "GuardDuty Finding" event.
fn as_event(path: &PathBuf) -> Result<Value, CordonError> {
    let finding = read_finding(path)?;
    let text =
        std::fs::read_to_string(path).map_err(|e| CordonError::InvalidInput(e.to_string()))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| CordonError::InvalidInput(e.to_string()))?;
    if value.get("detail-type").is_some() {
        return Ok(value);
    }
    let detail = match value.get("Findings").or(value.get("findings")) {
        Some(list) => list[0].clone(),
        None => value.get("detail").cloned().unwrap_or(value),
    };
    Ok(json!({
        "version": "0",
        "id": format!("cordon-run-{}", finding.id),
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": finding.account_id,
        "region": finding.region,
        "time": finding.updated_at,
        "resources": [],
        "detail": detail,
    }))
}

/// Exit codes of a workflow run, by outcome.
fn run_exit_code(outcome: &str) -> u8 {
    match outcome {
        "failed" => EXIT_FAILED,
        "partial" => EXIT_PARTIAL,
        _ => 0,
    }
}

async fn run_command(
    endpoint: Option<&str>,
    finding: &PathBuf,
    workflow: &WorkflowArgs,
) -> Result<u8, CordonError> {
    let event = as_event(finding)?;
    let own_moto;
    let endpoint = match endpoint {
        Some(url) => url.to_string(),
        None => {
            eprintln!("cordon run: starting the local AWS emulator (moto)");
            own_moto = cordon::local::Moto::start().map_err(CordonError::InvalidConfiguration)?;
            own_moto.endpoint.clone()
        }
    };
    let runner = cordon::runner::Runner::start(&endpoint, Config::from_env()?).await?;
    eprintln!("cordon run: approval page at {}", runner.approval_url);
    let report = runner
        .run(&event, workflow.decision.into(), workflow.approval_timeout)
        .await?;
    print_pretty(&report);
    Ok(run_exit_code(&report.outcome))
}

/// The region of the record key, which must be named by its full key ARN
/// (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID`): an alias or a bare key id is looked up in
/// the caller's own account, where whoever administers that account could create a key of
/// the same name and seal what they like.
fn record_key_region(key_id: &str) -> Result<String, CordonError> {
    cordon_core::kms::check_key_id("--record-key", key_id)?;
    let parts: Vec<&str> = key_id.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "kms", region, account, resource]
            if !region.is_empty() && !account.is_empty() && resource.starts_with("key/") =>
        {
            Ok(region.to_string())
        }
        _ => Err(CordonError::InvalidInput(
            "--record-key must be the record key's full ARN (the stack's RecordKeyArn output, arn:...:kms:REGION:ACCOUNT:key/ID), not an alias or a key id".into(),
        )),
    }
}

/// The record key the arguments name, through KMS in the key's own account and region with
/// the caller's credentials there; None (said on stderr) when none is given.
async fn record_key(
    target: &AwsTarget,
    args: &RecordArgs,
) -> Result<Option<RecordKey<AwsKms>>, CordonError> {
    let records = match args.record_key.as_deref().map(str::trim) {
        Some(key_id) if !key_id.is_empty() => {
            let region = record_key_region(key_id)?;
            let target = AwsTarget {
                region: Some(region),
                profile: args.record_key_profile.clone().or(target.profile.clone()),
                ..target.clone()
            };
            Some(RecordKey {
                kms: AwsKms::new(operator_context(&target).await.sdk_config()),
                key_id: key_id.to_string(),
            })
        }
        _ => None,
    };
    if records.is_none() && !args.trust_unverified {
        eprintln!("cordon: no --record-key given: records kept in tags cannot be checked, and none will be used (give the stack's RecordKeyArn, or --trust-unverified)");
    }
    Ok(records)
}

/// The operator's own AWS context: its calls name `cordon-cli` in their user agent, so that
/// CloudTrail tells an operator's command from the workers' calls (`cordon-<worker>`).
async fn operator_context(target: &AwsTarget) -> AwsContext {
    AwsContext::load(target).await.acting_as("cli")
}

async fn cleanup_command(target: &AwsTarget, args: &CleanupArgs) -> Result<u8, CordonError> {
    let aws = operator_context(target).await;
    let records = record_key(target, &args.records).await?;
    let ec2 = aws.ec2(None);
    eprintln!(
        "cordon: {} what Cordon left in this account and region",
        if args.apply {
            "removing"
        } else {
            "listing (dry run; --apply removes)"
        }
    );
    let report =
        cordon_core::cleanup::cleanup(&ec2, &records, args.records.trust_unverified, !args.apply)
            .await?;
    print_pretty(&report);
    Ok(if report.errors.is_empty() {
        0
    } else {
        EXIT_PARTIAL
    })
}

async fn restore_command(target: &AwsTarget, args: &RestoreArgs) -> Result<u8, CordonError> {
    let instance_id = args.instance.as_str();
    check_instance_id(instance_id)?;
    let aws = operator_context(target).await;
    let records = record_key(target, &args.records).await?;
    eprintln!("cordon: restoring {instance_id}");
    // The records on the instance's tags say what to give back: network, then the role's
    // credentials, then Auto Scaling.
    let input = cordon_core::steps::RestoreInput {
        instance_id: instance_id.to_string(),
        account_id: None,
        region: None,
        record: None,
        nacl_entries: Vec::new(),
        execution_arn: None,
        approval: None,
        approvals_required: None,
        auto_scaling: None,
        credentials: None,
        evidence: None,
        load_balancers: None,
        trust_unverified_records: args.records.trust_unverified,
    };
    let report = Box::pin(cordon_core::steps::restore_step(
        &aws, &aws, &aws, &aws, &records, &input,
    ))
    .await?;
    for used in &report.records_used_unverified {
        eprintln!(
            "cordon: WARNING: used the UNVERIFIED record {} on {}: {}. Whoever could write those tags chose what was restored",
            used.record, used.resource, used.reason
        );
    }
    for refused in &report.records_refused {
        eprintln!(
            "cordon: refused the record {} on {}: {}",
            refused.record, refused.resource, refused.reason
        );
    }
    print_pretty(&report);
    Ok(match report.status {
        RestoreStatus::Restored | RestoreStatus::NotIsolated => 0,
        RestoreStatus::Drift => EXIT_PARTIAL,
        // `cordon restore` checks no workflow decision: it acts on the caller's credentials.
        RestoreStatus::Failed | RestoreStatus::DecisionRefused => EXIT_FAILED,
    })
}

async fn confirm_subscription_command(
    target: &AwsTarget,
    link: &str,
    topic: Option<&str>,
) -> Result<u8, CordonError> {
    use cordon_core::subscription::{
        confirm_with_authenticated_unsubscribe, parse_confirmation_link,
    };
    let link = parse_confirmation_link(link, topic)?;
    // The topic's own region, whatever the shell's default is.
    let target = AwsTarget {
        region: Some(link.region.clone()),
        ..target.clone()
    };
    let sns = aws_sdk_sns::Client::new(operator_context(&target).await.sdk_config());
    let subscription_arn = confirm_with_authenticated_unsubscribe(&sns, &link).await?;
    eprintln!("cordon: confirmed; unsubscribing now needs AWS credentials of the topic's or the subscription's owner");
    print_pretty(&json!({
        "subscription_arn": subscription_arn,
        "topic_arn": link.topic_arn,
        "authenticate_on_unsubscribe": true,
    }));
    Ok(0)
}

async fn decide_command(
    target: &AwsTarget,
    args: &DecideArgs,
    action: Action,
) -> Result<u8, CordonError> {
    use cordon_core::approval::{decide_as_caller, execution_region};
    let region = execution_region(&args.execution)?;
    let target = AwsTarget {
        region: Some(region),
        ..target.clone()
    };
    let context = operator_context(&target).await;
    let sdk = context.sdk_config();
    let caller = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|error| CordonError::Unavailable {
            operation: "sts:GetCallerIdentity".into(),
            message: aws_sdk_sts::error::DisplayErrorContext(&error).to_string(),
        })?;
    let caller_arn = caller.arn().ok_or_else(|| CordonError::Unavailable {
        operation: "sts:GetCallerIdentity".into(),
        message: "STS named no caller".into(),
    })?;
    let break_glass = DecisionKey {
        kms: AwsKms::new(sdk),
        key_id: args.break_glass_key.clone(),
    };
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let decision =
        decide_as_caller(&sfn, &break_glass, &args.execution, action, caller_arn).await?;
    eprintln!(
        "cordon: {} sent for {} as {caller_arn}",
        action.as_str(),
        args.execution
    );
    print_pretty(&json!({
        "execution_arn": args.execution,
        "decision": decision.decision,
        "approver": decision.approver,
        "via": decision.via,
        "decided_at": decision.decided_at,
        "round": decision.round,
        "first_approver": decision.first_approval.as_ref().and_then(|first| first.approver.clone()),
    }));
    Ok(0)
}

/// What each containment measure beyond the interfaces holds of an instance now, from where
/// Cordon records it: the Auto Scaling record on the instance, the slot that names it on its
/// role, and the evidence snapshots of it.
async fn measures_of(
    ec2: &AwsEc2,
    iam: &impl Iam,
    elb: &impl LoadBalancing,
    instance: &cordon_core::ec2::Instance,
    region: &str,
) -> Result<Value, CordonError> {
    use cordon_core::measures::{auto_scaling, credentials, evidence};
    let held = match auto_scaling::record_from_tags(&instance.id, &instance.tags) {
        Ok(Some(record)) => {
            json!({"group": record.group, "was": record.lifecycle_state, "intent": record.intent})
        }
        Ok(None) => Value::Null,
        Err(error) => json!({"error": error.to_report()}),
    };
    let of_instance = [(evidence::INSTANCE_TAG.to_string(), instance.id.clone())];
    let (cut, snapshots) = tokio::join!(
        credentials::cut_of(ec2, iam, &instance.id, region),
        ec2.snapshots_tagged(&of_instance)
    );
    let cut = match cut {
        Ok(Some((role, slot))) => json!({"role": role, "slot": slot}),
        Ok(None) => Value::Null,
        Err(error) => json!({"error": error.to_report()}),
    };
    let snapshots = match snapshots {
        Ok(found) => json!(found.into_iter().map(|s| s.snapshot_id).collect::<Vec<_>>()),
        Err(error) => json!({"error": error.to_report()}),
    };
    let out_of = match cordon_core::measures::load_balancers::recorded(ec2, elb, &instance.id).await
    {
        // Where each record names it, with its ports; `cordon restore` checks their seals.
        Ok((records, _)) => json!(records
            .into_iter()
            .map(|record| record.registration)
            .collect::<Vec<_>>()),
        Err(error) => json!({"error": error.to_report()}),
    };
    Ok(json!({
        "auto_scaling": held,
        "credentials": cut,
        "evidence": snapshots,
        "load_balancers": out_of,
    }))
}

async fn regions_command(target: &AwsTarget, stack_name: &str) -> Result<u8, CordonError> {
    let aws = operator_context(target).await;
    let standings = regions::standings(aws.sdk_config(), stack_name)
        .await
        .map_err(|cause| {
            CordonError::InvalidConfiguration(format!(
                "the account's regions cannot be listed (ec2:DescribeRegions): {cause}"
            ))
        })?;
    let with = |verdict: &str| -> Vec<&str> {
        standings
            .iter()
            .filter(|s| s.verdict == verdict)
            .map(|s| s.region.as_str())
            .collect()
    };
    let (missing, unknown) = (with("missing"), with("unknown"));
    print_pretty(&json!({
        "stack_name": stack_name,
        "missing": missing,
        "unknown": unknown,
        "regions": standings,
    }));
    // A region that could not be read is no region known to be covered.
    Ok(if missing.is_empty() && unknown.is_empty() {
        0
    } else {
        EXIT_PARTIAL
    })
}

/// The quarantines waiting for a decision, each with whether Cordon's record of its instance
/// is still kept (on its claim, or on the instance; read where the instance is: through the
/// member role for another account).
async fn waiting_of(aws: &AwsContext, state_machine: &str) -> Result<Vec<Value>, CordonError> {
    let sfn = aws_sdk_sfn::Client::new(aws.sdk_config());
    let (waiting, unreadable) = cordon_core::approval::waiting_quarantines(&sfn, state_machine)
        .await
        .map_err(|cause| {
            CordonError::InvalidConfiguration(format!(
                "the waiting quarantines of {state_machine} cannot be read: {cause}"
            ))
        })?;
    let mut listed = Vec::new();
    for quarantine in waiting {
        let where_it_is = cordon_core::ec2::Target {
            account_id: quarantine.account_id.clone(),
            region: quarantine.region.clone(),
        };
        let kept = match cordon_core::ec2::Ec2Provider::ec2_for(aws, &where_it_is).await {
            Ok(ec2) => match ec2.describe_instance(&quarantine.instance_id).await {
                Ok(found) => match kept_record_of(&ec2, &found).await {
                    Ok(record) => json!(record.is_some()),
                    Err(error) => json!({"error": error.to_report()}),
                },
                Err(error) => json!({"error": error.to_report()}),
            },
            Err(error) => json!({"error": error.to_report()}),
        };
        let mut line = serde_json::to_value(&quarantine).expect("a waiting quarantine serialises");
        line["record_kept"] = kept;
        listed.push(line);
    }
    for (execution, cause) in unreadable {
        listed.push(json!({"execution_arn": execution, "error": cause}));
    }
    Ok(listed)
}

async fn status_command(
    target: &AwsTarget,
    instance: Option<&str>,
    state_machine: Option<&str>,
) -> Result<u8, CordonError> {
    if let Some(id) = instance {
        check_instance_id(id)?;
    }
    let aws = operator_context(target)
        .await
        .with_member_role(cordon_core::aws::MemberRole::from_env());
    let waiting = match state_machine {
        Some(machine) => Some(waiting_of(&aws, machine).await?),
        None => None,
    };
    let ec2: AwsEc2 = aws.ec2(None);
    let here = cordon_core::ec2::Target::default();
    let iam = IamProvider::iam_for(&aws, &here).await?;
    let region = cordon_core::measures::credentials::region_for(&aws, &here)?;
    let elb = cordon_core::measures::load_balancers::LoadBalancingProvider::load_balancing_for(
        &aws, &here,
    )
    .await?;
    let mut quarantined: Vec<Value> = Vec::new();
    let instances = match instance {
        Some(id) => vec![ec2.describe_instance(id).await?],
        None => {
            // Records on claims, and on instances (older releases, `cordon isolate`).
            let mut found = ec2
                .instances_tagged(&format!("{STATE_TAG_PREFIX}:0"))
                .await?;
            for id in claimed_with_records(&ec2).await? {
                if found.iter().any(|listed| listed.id == id) {
                    continue;
                }
                match ec2.describe_instance(&id).await {
                    Ok(instance) => found.push(instance),
                    Err(error) => {
                        quarantined.push(json!({"instance_id": id, "error": error.to_report()}))
                    }
                }
            }
            found
        }
    };
    for found in instances {
        let record = match kept_record_of(&ec2, &found).await {
            Ok(Some(record)) => record,
            Ok(None) => continue,
            Err(error) => {
                quarantined.push(json!({"instance_id": found.id, "error": error.to_report()}));
                continue;
            }
        };
        let measures = measures_of(&ec2, &iam, &elb, &found, &region).await?;
        quarantined.push(json!({
            "instance_id": found.id,
            "finding_id": record.finding_id,
            "finding_type": record.finding_type,
            "since": record.captured_at,
            "enis": eni_lines(Some(&record.interfaces), &found.interfaces),
            "measures": measures,
        }));
    }
    match waiting {
        Some(waiting) => print_pretty(&json!({ "waiting": waiting, "quarantined": quarantined })),
        None => print_pretty(&json!({ "quarantined": quarantined })),
    }
    Ok(0)
}
