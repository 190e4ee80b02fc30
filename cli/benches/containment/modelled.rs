//! The benchmark's modelled AWS (issue 16): the same steps, through the real SDK and the fault
//! proxy, which gives every EC2 call the latency and the token bucket of the model
//! (`cordon_tests::aws_model`, sources there). No ASL interpreter runs here: each execution is
//! the state machine's path to containment, run in this process as Step Functions would run
//! it — a transition and an invocation before capture-state (and the release ledger's read),
//! three transitions and an invocation before isolate-sg and block-nacl, which run at once —
//! with each task's `Retry` read from `statemachine/quarantine.asl.json`. Every execution has
//! SDK clients and a retry quota of its own, as a Lambda execution environment has.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cordon::local::emulator_config;
use cordon_core::aws::AwsContext;
use cordon_core::capture::{CaptureOutput, CaptureStatus, Pace};
use cordon_core::config::Config;
use cordon_core::error::CordonError;
use cordon_core::isolate::IsolationReport;
use cordon_core::seal::Unsealed;
use cordon_core::steps::{block_step, capture_step, isolate_attempt_step, StepAttempt};
use cordon_tests::aws_model::{self, Bucket};
use cordon_tests::faults::{BucketCount, FaultPlan, FaultProxy, ProxiedCall};
use cordon_tests::{finding_in_vpc, repo_root, Member, Moto};
use serde_json::{json, Value};

use crate::figures::{critical_path, ms, percentile, since};

/// One retrier of a task's `Retry`, as the definition gives it.
#[derive(Debug, Clone)]
pub struct Retrier {
    errors: Vec<String>,
    interval: f64,
    max_attempts: u32,
    backoff: f64,
    full_jitter: bool,
    max_delay: Option<f64>,
}

impl Retrier {
    fn of(retrier: &Value) -> Retrier {
        Retrier {
            errors: retrier["ErrorEquals"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .filter_map(|e| e.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            interval: retrier["IntervalSeconds"].as_f64().unwrap_or(1.0),
            max_attempts: retrier["MaxAttempts"].as_u64().unwrap_or(3) as u32,
            backoff: retrier["BackoffRate"].as_f64().unwrap_or(2.0),
            full_jitter: retrier["JitterStrategy"] == "FULL",
            max_delay: retrier["MaxDelaySeconds"].as_f64(),
        }
    }

    /// The wait before retry `retry` (1 = the first), as Step Functions computes it.
    fn delay(&self, retry: u32, dice: &AtomicU64) -> Duration {
        let mut seconds = self.interval * self.backoff.powi(retry as i32 - 1);
        if let Some(max) = self.max_delay {
            seconds = seconds.min(max);
        }
        if self.full_jitter {
            seconds *= roll(dice);
        }
        Duration::from_secs_f64(seconds)
    }

    fn retries(&self, error: &CordonError) -> bool {
        self.errors.iter().any(|e| e == error.error_name())
    }
}

/// A Task state's `Retry`: the first retrier that names the error decides, and each counts
/// its own attempts (as Step Functions does).
#[derive(Debug, Clone)]
pub struct Retry(Vec<Retrier>);

impl Retry {
    fn of(state: &Value) -> Retry {
        let retriers = state["Retry"].as_array().into_iter().flatten();
        Retry(retriers.map(Retrier::of).collect())
    }
}

/// A uniform number in [0, 1) from a shared xorshift state.
fn roll(dice: &AtomicU64) -> f64 {
    let mut x = dice.load(Ordering::Relaxed).max(1);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    dice.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The retriers of the three tasks on the way to containment.
#[derive(Debug, Clone)]
pub struct Retriers {
    capture: Retry,
    isolate: Retry,
    block: Retry,
}

pub fn retriers() -> Retriers {
    let path = repo_root().join("statemachine/quarantine.asl.json");
    let definition: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let branch = |name: &str| {
        definition["States"]["Contain"]["Branches"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|b| b["States"].get(name).cloned())
            .unwrap_or_else(|| panic!("no {name} in the definition"))
    };
    Retriers {
        capture: Retry::of(&definition["States"]["CaptureState"]),
        isolate: Retry::of(&branch("IsolateSecurityGroups")),
        block: Retry::of(&branch("BlockNetworkAcl")),
    }
}

/// The modelled costs outside EC2, scaled like EC2's latencies.
#[derive(Debug, Clone, Copy)]
pub struct Overheads {
    pub transition: Duration,
    pub invocation: Duration,
    /// The release ledger's read (DynamoDB `GetItem`) that capture makes before EC2.
    pub ledger_read: Duration,
}

impl Overheads {
    pub fn scaled(scale: f64) -> Self {
        Overheads {
            transition: aws_model::TRANSITION.mul_f64(scale),
            invocation: aws_model::WARM_INVOCATION.mul_f64(scale),
            ledger_read: LEDGER_READ.mul_f64(scale),
        }
    }

    /// What must happen before capture's first EC2 call, and between capture's answer and
    /// isolate-sg's first: ExecutionStarted to CaptureState; then ShouldContain, Contain and
    /// IsolateSecurityGroups.
    pub fn before_capture(&self) -> Duration {
        self.transition + self.invocation + self.ledger_read
    }

    pub fn before_isolate(&self) -> Duration {
        self.transition * 3 + self.invocation
    }
}

/// Assumed (AWS publishes none): a DynamoDB `GetItem` in the same region.
const LEDGER_READ: Duration = Duration::from_millis(10);

/// One execution's path to containment.
#[derive(Debug, Default)]
pub struct Execution {
    pub captured: Option<CaptureOutput>,
    pub isolation: Option<IsolationReport>,
    /// When the ACL measure ended with every deny in place.
    pub acls_done_at: Option<Instant>,
    pub error: Option<String>,
    /// Why the ACL measure did not end with every deny in place, when it ended otherwise.
    pub acl_error: Option<String>,
    /// Step-level retries (the definition's `Retry`), over the three tasks.
    pub step_retries: u32,
}

/// Runs `attempt(n)` (n = retries so far, `$$.State.RetryCount`) until it succeeds, fails
/// with an error no retrier names, or has used the attempts of the retrier that names it.
async fn with_retries<T, F, Fut>(
    retry: &Retry,
    dice: &AtomicU64,
    retries: &mut u32,
    mut attempt: F,
) -> Result<T, CordonError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, CordonError>>,
{
    let mut used = vec![0; retry.0.len()];
    let mut count = 0;
    loop {
        match attempt(count).await {
            Err(error) => {
                let Some(at) = retry.0.iter().position(|r| r.retries(&error)) else {
                    return Err(error);
                };
                if used[at] >= retry.0[at].max_attempts {
                    return Err(error);
                }
                used[at] += 1;
                count += 1;
                *retries += 1;
                tokio::time::sleep(retry.0[at].delay(used[at], dice)).await;
            }
            done => return done,
        }
    }
}

/// One execution of `finding` as the state machine runs it up to ContainmentOutcome (the
/// network branches), each call through `endpoint`.
pub async fn execution(
    endpoint: &str,
    name: &str,
    finding: Value,
    overheads: Overheads,
    retriers: &Retriers,
    dice: &AtomicU64,
    isolated: &std::sync::Mutex<Option<IsolationReport>>,
) -> Execution {
    // One connection pool for the execution's clients and invocations, as one Lambda
    // environment has. Without it each client opens its own, and a thousand executions in one
    // process run out of descriptors on connections that are idle.
    let http = aws_smithy_http_client::Builder::new()
        .pool_idle_timeout(Duration::from_secs(5))
        .build_http();
    let sdk = emulator_config(endpoint)
        .to_builder()
        .http_client(http)
        .build();
    let aws = AwsContext::from_sdk_config(sdk).with_retry_partition(name);
    let config = Config::default();
    let mut run = Execution::default();
    tokio::time::sleep(overheads.before_capture()).await;
    let input = json!({
        "event": crate::event(finding),
        "execution": format!("arn:aws:states:{}:123456789012:execution:cordon-quarantine:{name}", cordon_tests::REGION),
        "started_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "approval_timeout_seconds": "3600",
        "approvals_required": "1",
    });
    let captured = with_retries(&retriers.capture, dice, &mut run.step_retries, |retry| {
        // As the definition hands it: `$$.State.RetryCount` sets capture's pace.
        let mut input = input.clone();
        input["retry_count"] = json!(retry);
        // As capture-state's binary builds its clients: a retried capture makes each call once.
        let aws = invocation(&aws).paced(Pace::of_input(&input));
        let config = &config;
        // Unsealed: the model has no KMS, so the records' seals (one GenerateMac between the
        // first reads and the claim, one per ACL record written) are not in these figures.
        async move { capture_step(&aws, &aws, config, &Unsealed, &input).await }
    })
    .await;
    let captured = match captured {
        Ok(captured) if captured.status == CaptureStatus::Captured => captured,
        Ok(other) => {
            run.error = Some(format!("capture: {:?}: {}", other.status, other.reason));
            return run;
        }
        Err(error) => {
            run.error = Some(format!("capture: {error}"));
            return run;
        }
    };
    run.captured = Some(captured.clone());
    tokio::time::sleep(overheads.before_isolate()).await;
    let (mut isolate_retries, mut block_retries) = (0, 0);
    let (aws, config) = (&aws, &config);
    let isolation_slot = isolated;
    let (isolated, (blocked, blocked_at)) = tokio::join!(
        async {
            let isolated = with_retries(&retriers.isolate, dice, &mut isolate_retries, |retry| {
                let input = StepAttempt {
                    capture: captured.clone(),
                    retry_count: Some(retry),
                };
                // As isolate-sg's binary builds its clients: they yield, but for the swaps
                // that take an interface off the conversion group.
                let aws = invocation(aws).deferring();
                async move { isolate_attempt_step(&aws, config, &input).await }
            })
            .await;
            // Known at once, for a burst cut off before this execution ends.
            if let Ok(report) = &isolated {
                *isolation_slot.lock().unwrap() = Some(report.clone());
            }
            isolated
        },
        async {
            let blocked = with_retries(&retriers.block, dice, &mut block_retries, |retry| {
                // As block-nacl's binary builds its clients: a retried attempt yields.
                let attempt = StepAttempt {
                    capture: captured.clone(),
                    retry_count: Some(retry),
                };
                let aws = match attempt.is_retry() {
                    true => invocation(aws).deferring(),
                    false => invocation(aws),
                };
                async move { block_step(&aws, config, &Unsealed, &attempt.capture).await }
            })
            .await;
            (blocked, Instant::now())
        }
    );
    run.step_retries += isolate_retries + block_retries;
    match isolated {
        Ok(report) => run.isolation = Some(report),
        Err(error) => run.error = Some(format!("isolate-sg: {error}")),
    }
    match blocked {
        Ok(report) if report.status == cordon_core::isolate::StepStatus::Done => {
            run.acls_done_at = Some(blocked_at)
        }
        Ok(report) => {
            let why = format!("block-nacl: {:?}: {:?}", report.status, report.errors);
            run.error.get_or_insert(why.clone());
            run.acl_error = Some(why);
        }
        Err(error) => {
            run.error.get_or_insert(format!("block-nacl: {error}"));
            run.acl_error = Some(format!("block-nacl: {error}"));
        }
    }
    run
}

/// `aws` for one invocation of a worker: it stops itself before the EC2 workers' timeout, as
/// it does in Lambda.
fn invocation(aws: &AwsContext) -> AwsContext {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let now_ms = now.map(|d| d.as_millis() as u64).unwrap_or_default();
    aws.until(now_ms + cordon_core::aws::EC2_WORKER_TIMEOUT_SECONDS * 1000)
}

/// When each swap of `eni` onto `group` that EC2 made was answered, by the proxy's calls.
fn swaps_onto<'a>(
    calls: &'a [ProxiedCall],
    eni: &'a str,
    group: &'a str,
) -> impl Iterator<Item = Instant> + 'a {
    calls
        .iter()
        .filter(|c| c.fault == "ok" && c.action == "ModifyNetworkInterfaceAttribute")
        .filter(move |c| c.field("NetworkInterfaceId") == Some(eni))
        .filter(move |c| c.field("SecurityGroupId.1") == Some(group))
        .map(|c| c.finished)
}

/// When each interface of `run` went onto its isolation group, by the proxy's calls.
fn isolated_at(run: &Execution, calls: &[ProxiedCall]) -> Option<Instant> {
    let report = run.isolation.as_ref()?;
    let mut last = None;
    for eni in &report.enis {
        if !eni.outcome.is_isolated() {
            return None;
        }
        let vpc = run
            .captured
            .as_ref()?
            .record
            .as_ref()?
            .interfaces
            .iter()
            .find(|i| i.id == eni.eni_id)?
            .vpc_id
            .clone();
        let isolation = &report.groups.get(&vpc)?.isolation;
        let swap = swaps_onto(calls, &eni.eni_id, isolation).max()?;
        last = last.max(Some(swap));
    }
    last
}

/// One finding on the modelled AWS.
#[derive(Debug, Default)]
pub struct Single {
    pub label: &'static str,
    pub isolated_ms: Option<f64>,
    /// The sequential EC2 calls up to the isolating swap, by name.
    pub critical: Vec<String>,
    /// The floor: the sequential calls an isolation needs at least x their modelled latency,
    /// plus what must happen before the first (see [`floor`]).
    pub floor_ms: f64,
    pub calls_by_action: BTreeMap<String, u64>,
    pub error: Option<String>,
}

/// What Cordon already has in the finding's VPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpcState {
    /// Both groups: a containment is under way in the VPC.
    Steady,
    /// The isolation group only: the last containment deleted the conversion group after use.
    Quiet,
    /// Neither: Cordon's first containment there.
    FirstUse,
}

impl VpcState {
    pub fn label(self) -> &'static str {
        match self {
            VpcState::Steady => "steady state",
            VpcState::Quiet => "quiet VPC (no conversion group: deleted after its last use)",
            VpcState::FirstUse => "first use in a VPC",
        }
    }
}

/// The least an isolation can take on the model: capture's reads (the instance must be
/// described before anything is recorded), the record (the claim group that carries it, a
/// CreateSecurityGroup), the conversion swap and the isolation swap, one after another, after
/// the transitions and invocations that must come first.
pub fn floor(scale: f64, vpc: VpcState) -> Duration {
    let latency = |action: &str| aws_model::latency_of(action).mul_f64(scale);
    let overheads = Overheads::scaled(scale);
    let mut calls = latency("DescribeInstances")
        + latency("CreateSecurityGroup")
        + latency("ModifyNetworkInterfaceAttribute") * 2;
    if vpc != VpcState::Steady {
        // A group must exist before the swaps: created, then its rules set (both directions,
        // and both groups, at once).
        calls += latency("CreateSecurityGroup") + latency("AuthorizeSecurityGroupEgress");
    }
    overheads.before_capture() + overheads.before_isolate() + calls
}

/// One finding, alone, on the modelled AWS, in a VPC where Cordon has `vpc`.
pub async fn single(moto: &Moto, scale: f64, vpc: VpcState, octet: usize) -> Single {
    let world = moto.world();
    let member = cordon_tests::fleet(&world, 1, octet).await.remove(0);
    if vpc != VpcState::FirstUse {
        let aws = AwsContext::from_sdk_config(moto.sdk_config());
        let ec2 = aws.ec2(Some(cordon_tests::REGION));
        let groups = cordon_core::isolate::ensure_groups(
            &ec2,
            std::slice::from_ref(&member.vpc),
            Default::default(),
            None,
        )
        .await
        .unwrap();
        if vpc == VpcState::Quiet {
            cordon_core::ec2::Ec2::delete_group(&ec2, &groups[&member.vpc].conversion)
                .await
                .unwrap();
        }
    }
    let proxy = FaultProxy::start(&moto.endpoint, FaultPlan::none()).await;
    proxy.model_aws(scale);
    let start = Instant::now();
    let dice = AtomicU64::new(7);
    let run = execution(
        &proxy.endpoint,
        &format!("single-{octet}"),
        finding_in_vpc(&member.instance, &member.vpc, 8.0, crate::REMOTE),
        Overheads::scaled(scale),
        &retriers(),
        &dice,
        &Default::default(),
    )
    .await;
    let calls: Vec<ProxiedCall> = proxy.calls();
    let mut single = Single {
        label: vpc.label(),
        floor_ms: ms(floor(scale, vpc)),
        error: run.error.clone(),
        ..Single::default()
    };
    for call in &calls {
        *single
            .calls_by_action
            .entry(call.action.clone())
            .or_default() += 1;
    }
    if let Some(at) = isolated_at(&run, &calls) {
        single.isolated_ms = Some(since(start, at));
        let last = calls
            .iter()
            .rfind(|c| c.action == "ModifyNetworkInterfaceAttribute" && c.finished == at)
            .cloned()
            .unwrap();
        let towards: Vec<ProxiedCall> = calls
            .iter()
            .filter(|c| !crate::is_acl_branch(c))
            .cloned()
            .collect();
        single.critical = critical_path(&towards, &last)
            .iter()
            .map(|c| c.action.clone())
            .collect();
    }
    single
}

/// A burst of findings at once on the modelled AWS.
#[derive(Debug, Default)]
pub struct Burst {
    pub findings: usize,
    pub contained: usize,
    /// Seconds from the burst's start to each contained finding's isolation.
    pub seconds: Vec<f64>,
    /// Seconds from the burst's start to the end of each execution's ACL measure, for those
    /// that ended with every deny in place.
    pub acl_seconds: Vec<f64>,
    /// Seconds to the end of the last execution's network containment.
    pub makespan: f64,
    pub buckets: Vec<BucketCount>,
    /// The token-bucket limit: the slowest bucket's calls beyond its capacity at its refill
    /// rate, for the calls that went through.
    pub limit: f64,
    pub step_retries: u32,
    pub slower_than_modelled: u64,
    pub errors: BTreeMap<String, usize>,
    /// Seconds the fleet took to build (not measured).
    pub setup_seconds: f64,
    /// Executions still running when the burst was cut off (`BENCH_MODELLED_CUTOFF`): the
    /// makespan is then the cutoff, and the token-bucket limit counts only the calls made.
    pub cut_off: usize,
    /// Executions whose isolation step ended (the rest were cut off or failed).
    pub steps_ended: usize,
    /// Why ACL measures that ended did not end with every deny in place.
    pub acl_errors: BTreeMap<String, usize>,
    /// The ModifyNetworkInterfaceAttribute calls let through, by what they did.
    pub swaps_by_kind: BTreeMap<&'static str, u64>,
    /// Conversion groups made (CreateSecurityGroup) and DeleteSecurityGroup calls (the
    /// conversion groups after use) during the burst, calls let through.
    pub conversion_groups: (u64, u64),
}

impl Burst {
    pub fn granted(&self) -> u64 {
        self.buckets.iter().map(|b| b.granted).sum()
    }

    pub fn throttled(&self) -> u64 {
        self.buckets.iter().map(|b| b.throttled).sum()
    }
}

/// `count` findings on `count` instances (ten to a VPC, Cordon's groups already in each VPC)
/// at once, on the modelled AWS. With a `cutoff`, the executions still running then are
/// stopped, and their isolation counted if it was done.
pub async fn burst(count: usize, scale: f64, cutoff: Option<Duration>) -> Burst {
    let moto = Moto::start();
    let world = moto.world();
    let setup = Instant::now();
    let members: Vec<Member> = cordon_tests::fleet(&world, count, 100).await;
    let aws = AwsContext::from_sdk_config(moto.sdk_config());
    let ec2 = aws.ec2(Some(cordon_tests::REGION));
    let vpcs: std::collections::BTreeSet<String> = members.iter().map(|m| m.vpc.clone()).collect();
    let mut isolation_of = BTreeMap::new();
    for vpc in &vpcs {
        let groups = cordon_core::isolate::ensure_groups(
            &ec2,
            std::slice::from_ref(vpc),
            Default::default(),
            None,
        )
        .await
        .unwrap();
        isolation_of.insert(vpc.clone(), groups[vpc].isolation.clone());
    }
    let setup_seconds = setup.elapsed().as_secs_f64();
    let proxy = Arc::new(FaultProxy::start(&moto.endpoint, FaultPlan::none()).await);
    proxy.model_aws(scale);
    let retriers = Arc::new(retriers());
    let dice = Arc::new(AtomicU64::new(11));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (index, member) in members.iter().enumerate() {
        let (proxy, retriers, dice) = (proxy.clone(), retriers.clone(), dice.clone());
        let finding = finding_in_vpc(&member.instance, &member.vpc, 8.0, crate::REMOTE);
        let isolated = Arc::new(std::sync::Mutex::new(None));
        let slot = isolated.clone();
        let task = tokio::spawn(async move {
            let run = execution(
                &proxy.endpoint,
                &format!("burst-{index}"),
                finding,
                Overheads::scaled(scale),
                &retriers,
                &dice,
                &slot,
            )
            .await;
            (run, Instant::now())
        });
        tasks.push((task, isolated));
    }
    let mut runs = Vec::new();
    let mut makespan: f64 = 0.0;
    let mut cut_off = 0;
    for (mut task, isolated) in tasks {
        let ended = match cutoff {
            Some(cutoff) => tokio::time::timeout_at((start + cutoff).into(), &mut task).await,
            None => Ok((&mut task).await),
        };
        match ended {
            Ok(ended) => {
                let (run, ended) = ended.unwrap();
                makespan = makespan.max(since(start, ended) / 1000.0);
                runs.push(run);
            }
            Err(_) => {
                task.abort();
                cut_off += 1;
                runs.push(Execution {
                    isolation: isolated.lock().unwrap().take(),
                    error: Some("still running at the cutoff".into()),
                    ..Execution::default()
                });
            }
        }
    }
    if cut_off > 0 {
        makespan = cutoff.map_or(makespan, |c| c.as_secs_f64());
    }
    let calls = proxy.calls();
    let mut burst = Burst {
        findings: count,
        makespan,
        buckets: proxy.bucket_counts(),
        slower_than_modelled: proxy.slower_than_modelled(),
        setup_seconds,
        cut_off,
        ..Burst::default()
    };
    // What the swaps' bucket was spent on: progress, or ways back.
    // A conversion group is deleted after use and made again: it is the group that is
    // neither the isolation group nor one of the instances' own.
    let isolations: std::collections::BTreeSet<&String> = isolation_of.values().collect();
    let own: std::collections::BTreeSet<&String> = members.iter().flat_map(|m| &m.groups).collect();
    for call in calls.iter().filter(|c| c.fault == "ok") {
        let kind = match (call.action.as_str(), call.field("SecurityGroupId.1")) {
            ("ModifyNetworkInterfaceAttribute", Some(group))
                if isolations.contains(&group.to_string()) =>
            {
                "onto the isolation group"
            }
            ("ModifyNetworkInterfaceAttribute", Some(group))
                if own.contains(&group.to_string()) =>
            {
                "back onto the instance's own groups"
            }
            ("ModifyNetworkInterfaceAttribute", Some(_)) => "onto the conversion group",
            ("ModifyNetworkInterfaceAttribute", None) => "connection tracking",
            _ => continue,
        };
        *burst.swaps_by_kind.entry(kind).or_default() += 1;
    }
    burst.conversion_groups = (
        calls
            .iter()
            .filter(|c| c.fault == "ok" && c.action == "CreateSecurityGroup")
            .filter(|c| {
                c.field("GroupName")
                    .is_some_and(|name| name.starts_with("cordon-conversion-"))
            })
            .count() as u64,
        calls
            .iter()
            .filter(|c| c.fault == "ok" && c.action == "DeleteSecurityGroup")
            .count() as u64,
    );
    for (run, member) in runs.iter().zip(&members) {
        burst.step_retries += run.step_retries;
        if let Some(at) = run.acls_done_at {
            burst.acl_seconds.push(since(start, at) / 1000.0);
        }
        if let Some(why) = &run.acl_error {
            let short: String = why.chars().take(160).collect();
            *burst.acl_errors.entry(short).or_default() += 1;
        }
        burst.steps_ended += usize::from(run.isolation.is_some());
        // Isolated is what EC2 says of the interface, whether or not its step has ended (it
        // may still be hardening the instance, or waiting to retry that).
        let isolation = &isolation_of[&member.vpc];
        let on_isolation = world.eni_groups(&member.eni).await == [isolation.clone()];
        let swapped_at = swaps_onto(&calls, &member.eni, isolation).min();
        match (swapped_at.filter(|_| on_isolation), &run.error) {
            (Some(at), _) => {
                burst.contained += 1;
                burst.seconds.push(since(start, at) / 1000.0);
            }
            (None, error) => {
                let why = error.clone().unwrap_or_else(|| "not isolated".into());
                let short: String = why.chars().take(120).collect();
                *burst.errors.entry(short).or_default() += 1;
            }
        }
    }
    let needed: Vec<(String, Bucket, u64)> = burst
        .buckets
        .iter()
        .map(|b| (b.bucket.clone(), b.figures, b.granted))
        .collect();
    burst.limit = aws_model::bucket_limit(&needed).as_secs_f64();
    burst
}

/// The token-bucket limit of a burst of `findings` like `b` (same fleet shape, ten instances to
/// a VPC), computed from `b`'s calls per containment: what the buckets would allow, not a run.
fn scaled_up(b: &Burst, findings: usize) -> String {
    if b.findings >= findings || b.findings == 0 {
        return String::new();
    }
    let factor = findings as f64 / b.findings as f64;
    let needed: Vec<(String, Bucket, u64)> = b
        .buckets
        .iter()
        .map(|x| {
            (
                x.bucket.clone(),
                x.figures,
                (x.granted as f64 * factor) as u64,
            )
        })
        .collect();
    let slowest = needed
        .iter()
        .map(|(name, bucket, n)| {
            (
                name,
                ((*n as f64 - bucket.capacity).max(0.0)) / bucket.refill,
            )
        })
        .fold((String::new(), 0.0), |a, (name, t)| {
            if t > a.1 {
                (name.clone(), t)
            } else {
                a
            }
        });
    let swaps = needed
        .iter()
        .find(|(name, _, _)| name == "ModifyNetworkInterfaceAttribute")
        .map(|(_, bucket, n)| ((*n as f64 - bucket.capacity).max(0.0)) / bucket.refill)
        .unwrap_or_default();
    format!(
        "
A burst of {findings} of the same shape, computed from these calls per containment (not run): the token-bucket limit is {:.0} s ({}); the swaps alone (ModifyNetworkInterfaceAttribute, 100 / 5 per s) need {:.0} s.\n",
        aws_model::bucket_limit(&needed).as_secs_f64(),
        slowest.0,
        swaps
    )
}

/// What the modelled world measured.
pub struct Modelled {
    pub scale: f64,
    pub singles: Vec<Single>,
    pub bursts: Vec<Burst>,
}

/// Calls per API per containment, from the steady-state single run.
fn calls_table(single: &Single) -> String {
    let mut out = String::from("| EC2 action | Calls per containment | Its bucket (size / refill per s) |\n|---|---:|---|\n");
    for (action, calls) in &single.calls_by_action {
        let (_, bucket) = aws_model::bucket_of(action, &[]);
        out.push_str(&format!(
            "| {action} | {calls} | {:.0} / {:.0} |\n",
            bucket.capacity, bucket.refill
        ));
    }
    out
}

/// Section 6 of BENCHMARKS.md, and the rows it adds to the targets.
pub fn render(m: &Modelled) -> (String, Vec<(String, String, bool, String)>) {
    let mut targets = Vec::new();
    let mut out = format!(
        "\n## 6. The modelled AWS: AWS's latencies and EC2's token buckets\n\n\
         The same steps through the real SDK, but every EC2 call goes through a proxy that gives it the latency of the model \
         and draws a token from its action's bucket, answering `RequestLimitExceeded` (HTTP 503, as EC2 does) when the bucket is empty. \
         Buckets: the EC2 developer guide's request token table (non-mutating 100 / 20 per s, unfiltered and unpaginated reads 50 / 10, \
         mutating 50 / 5, CreateTags 100 / 10, ModifyNetworkInterfaceAttribute 100 / 5). \
         Latencies are assumptions (AWS publishes none): a read 100-180 ms, CreateTags 150 ms, a swap or a group 300 ms, other writes 250 ms; \
         a Step Functions transition 20 ms, a warm Lambda invocation 15 ms, the release ledger's DynamoDB read 10 ms; scale {:.2} (`BENCH_LATENCY_SCALE`). \
         Sources and figures: `tests/src/aws_model.rs`.\n\n\
         No ASL interpreter runs in this world: each execution is the state machine's path to containment run in this process \
         (capture-state, then isolate-sg and block-nacl at once), with the transitions and invocations before each task, and each task's `Retry` \
         as `statemachine/quarantine.asl.json` gives it. Each execution has its own SDK clients and retry quota, as a Lambda execution environment has. \
         moto answers behind the proxy; a call moto answers more slowly than the model keeps moto's time (counted below).\n\n\
         ### One finding\n\n\
         | VPC | Sequential EC2 calls to isolated | Time to isolation | Floor | vs floor |\n|---|---|---:|---:|---:|\n",
        m.scale
    );
    for single in &m.singles {
        let ratio = single.isolated_ms.map(|t| t / single.floor_ms);
        out.push_str(&format!(
            "| {} | {}: {} | {} | {:.0} ms | {} |\n",
            single.label,
            single.critical.len(),
            single.critical.join(" → "),
            single
                .isolated_ms
                .map_or(format!("not isolated: {:?}", single.error), |t| format!(
                    "{t:.0} ms"
                )),
            single.floor_ms,
            ratio.map_or("—".into(), |r| format!("{r:.2}x")),
        ));
        if single.label == "steady state" {
            let sequential = single.critical.len();
            targets.push((
                "Steady state: ≤ 4 sequential EC2 calls from the execution's start to isolated"
                    .into(),
                format!("{sequential}"),
                sequential <= 4 && single.isolated_ms.is_some(),
                String::new(),
            ));
            targets.push((
                "Steady state: time to isolation ≤ 1.3x the floor, modelled AWS".into(),
                ratio.map_or("not isolated".into(), |r| {
                    format!(
                        "{r:.2}x ({:.0} of {:.0} ms)",
                        single.isolated_ms.unwrap_or_default(),
                        single.floor_ms
                    )
                }),
                ratio.is_some_and(|r| r <= 1.3),
                String::new(),
            ));
        }
    }
    out.push_str(
        "\nThe floor: capture's description of the instance, the record (the claim group that carries it, one CreateSecurityGroup: 300 ms on the model where a CreateTags would take 150 ms, \
         traded for CreateTags' bucket, which a burst's ACL records contend for), the conversion swap and the isolation swap, one after another \
         (first use, or a quiet VPC, adds creating the group and setting its rules; steady state is a VPC where another containment \
         is under way, so that its conversion group exists), after the two transitions and invocation before capture-state, \
         the ledger's read, and the three transitions and invocation before isolate-sg.\n\n",
    );
    if let Some(steady) = m.singles.iter().find(|s| s.label == "steady state") {
        out.push_str("Calls per API per containment (steady state, both network branches):\n\n");
        out.push_str(&calls_table(steady));
    }
    for b in &m.bursts {
        let under = b.granted() + b.throttled();
        let storm = under as f64 / b.granted().max(1) as f64;
        out.push_str(&format!(
            "\n### Burst: {} findings on {} instances at once\n\n\
             | Contained | Makespan | Isolated: p50 | p99 | ACL denies all in place | p50 | p99 | Token-bucket limit | Makespan vs limit | Calls made | Throttled | Calls under throttling vs calls needed | Step retries |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
             | {} of {} | {:.1} s | {:.1} s | {:.1} s | {} | {:.1} s | {:.1} s | {:.1} s | {} | {} | {} | {:.2}x | {} |\n\n",
            b.findings,
            b.findings,
            b.contained,
            b.findings,
            b.makespan,
            percentile(&b.seconds, 50.0),
            percentile(&b.seconds, 99.0),
            b.acl_seconds.len(),
            percentile(&b.acl_seconds, 50.0),
            percentile(&b.acl_seconds, 99.0),
            b.limit,
            if b.limit > 0.0 { format!("{:.2}x", b.makespan / b.limit) } else { "no bucket runs dry".into() },
            b.granted(),
            b.throttled(),
            storm,
            b.step_retries,
        ));
        out.push_str("| Bucket | Size / refill per s | Calls let through | Throttled | Its limit |\n|---|---|---:|---:|---:|\n");
        for bucket in &b.buckets {
            let limit = ((bucket.granted as f64 - bucket.figures.capacity).max(0.0))
                / bucket.figures.refill;
            out.push_str(&format!(
                "| {} | {:.0} / {:.0} | {} | {} | {:.1} s |\n",
                bucket.bucket,
                bucket.figures.capacity,
                bucket.figures.refill,
                bucket.granted,
                bucket.throttled,
                limit
            ));
        }
        if !b.swaps_by_kind.is_empty() {
            let kinds: Vec<String> = b
                .swaps_by_kind
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            out.push_str(&format!(
                "\nModifyNetworkInterfaceAttribute calls let through, by what they did: {}.\n",
                kinds.join(", ")
            ));
        }
        out.push_str(&format!(
            "\nConversion groups (deleted after use, made again by the next containment in their VPC): {} made, {} DeleteSecurityGroup calls (moto deletes a group an interface carries, where EC2 refuses; a delete of a group already gone counts too).\n",
            b.conversion_groups.0, b.conversion_groups.1
        ));
        if b.cut_off > 0 {
            out.push_str(&format!(
                "\nCut off at {:.0} s (`BENCH_MODELLED_CUTOFF`): {} executions were still running (each counted as contained above \
                 if EC2 showed its interface on the isolation group). The calls and the limit above are those made by the cutoff.\n",
                b.makespan, b.cut_off
            ));
        }
        if b.steps_ended < b.contained {
            out.push_str(&format!(
                "\nIsolation steps ended: {} of {}. Contained counts an interface on its isolation group as EC2 shows it; the other \
                 steps were still hardening the instance (termination protection, shutdown behaviour, connection tracking) or waiting to retry that.\n",
                b.steps_ended, b.findings
            ));
        }
        if b.findings < 1000 {
            out.push_str(&scaled_up(b, 1000));
        }
        if !b.errors.is_empty() {
            out.push_str("\nNot contained:\n\n");
            for (why, n) in &b.errors {
                out.push_str(&format!("- {n} x {why}\n"));
            }
        }
        if !b.acl_errors.is_empty() {
            out.push_str("\nACL measures that ended without every deny in place:\n\n");
            for (why, n) in &b.acl_errors {
                out.push_str(&format!("- {n} x {why}\n"));
            }
        }
        out.push_str(&format!(
            "\nmoto answered {} calls more slowly than the model. Building the fleet (not measured) took {:.0} s.\n\n\
             ![Burst of {}: time to isolation against the token-bucket limit](BENCHMARKS-burst-{}.svg)\n",
            b.slower_than_modelled, b.setup_seconds, b.findings, b.findings
        ));
        std::fs::write(
            repo_root().join(format!("BENCHMARKS-burst-{}.svg", b.findings)),
            crate::figures::burst_svg(
                &b.seconds,
                &format!(
                    "Modelled AWS: {} findings at once, time to isolation ({} isolated)",
                    b.findings, b.contained
                ),
                Some(b.limit),
            ),
        )
        .unwrap();
        let all = b.contained == b.findings;
        if b.cut_off > 0 {
            targets.push((
                format!(
                    "Burst of {}, modelled AWS: every instance contained (isolated)",
                    b.findings
                ),
                format!(
                    "{} of {} isolated by the cutoff at {:.0} s",
                    b.contained, b.findings, b.makespan
                ),
                all,
                String::new(),
            ));
            targets.push((
                format!("Burst of {}, modelled AWS: makespan ≤ 1.5x the token-bucket limit", b.findings),
                format!(
                    "not measured: cut off at {:.0} s with {} executions' ACL measure still running",
                    b.makespan, b.cut_off
                ),
                false,
                String::new(),
            ));
        } else {
            targets.push((
                format!("Burst of {}, modelled AWS: every instance contained, makespan ≤ 1.5x the token-bucket limit", b.findings),
                format!("{} of {}; {:.1} s against {:.1} s", b.contained, b.findings, b.makespan, b.limit),
                all && (b.limit == 0.0 || b.makespan <= 1.5 * b.limit.max(1.0)),
                String::new(),
            ));
        }
        let (isolated_p99, acls_p50) = (
            percentile(&b.seconds, 99.0),
            percentile(&b.acl_seconds, 50.0),
        );
        targets.push((
            format!("Burst of {}, modelled AWS: isolation first (p99 time to isolation ≤ p50 time to every ACL deny in place)", b.findings),
            format!("{isolated_p99:.1} s against {acls_p50:.1} s"),
            isolated_p99 <= acls_p50,
            String::new(),
        ));
        targets.push((
            format!("Burst of {}, modelled AWS: no retry storm (calls under throttling ≤ 2x the calls needed)", b.findings),
            format!("{storm:.2}x ({under} of {})", b.granted()),
            storm <= 2.0,
            String::new(),
        ));
    }
    (out, targets)
}
