//! The EC2 port implemented with aws-sdk-ec2, and the one place where AWS clients are built
//! (so that acting in another account, by assuming a role, is a change here only).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, InstanceAttributeName, IpPermission, IpRange, Ipv6Range,
    ResourceType, Tag, TagSpecification, UserIdGroupPair,
};
use aws_sdk_ec2::Client;

use crate::ec2::{
    AclEntry, ConnTrack, DenyEntry, Direction, Ec2, GroupRole, Instance, NetworkAcl,
    NetworkInterface, Peer, RuleAction, SecurityGroup, SessionEndpoint, SgRule, Snapshot, Subnet,
    Volume, Vpc,
};
use crate::error::{CordonError, Result};

/// Attempts per EC2 call, the first included (the SDK's default is 3). Every Cordon call is
/// safe to repeat (creates are claimed, re-read or recorded first), and a call that gives up
/// fails its whole step, which the state machine then runs again from the start: during an
/// incident, when EC2 throttles the account, retrying the one call costs far less. With 30%
/// of calls failing, 3 attempts gave up on one call in 37; 5 give up on one in 400.
pub const EC2_MAX_ATTEMPTS: u32 = 5;

/// The longest one attempt of an EC2 call may take before the SDK gives it up and retries.
pub const EC2_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest one EC2 call can take with its retries: [`EC2_MAX_ATTEMPTS`] attempts of at
/// most [`EC2_ATTEMPT_TIMEOUT`], and the standard retry strategy's backoff between them (full
/// jitter on 1, 2, 4 and 8 s: at most 15 s). 5 x 5 + 15 = 40 s. A worker starts a piece of
/// work that must not be cut in two (an interface's swaps and their rollback) only with this
/// much left per call it may need, and the functions' timeouts are sized from it.
pub const EC2_CALL_BUDGET: std::time::Duration = std::time::Duration::from_secs(40);

/// The EC2 workers' Lambda timeout (`infra/template.yaml`, checked by a test): six calls at
/// their worst, the longest run of calls that one interface's isolation (conversion, isolation,
/// rollback) or one ACL's bookkeeping needs after the reads, at 40 s each. The isolation swap
/// may be tried more often than that allows at worst ([`crate::isolate::ISOLATION_SWAP_TRIES`]):
/// each try is begun only with two calls' budget left, for it and the way back.
pub const EC2_WORKER_TIMEOUT_SECONDS: u64 = 6 * EC2_CALL_BUDGET.as_secs();

/// A client of one AWS service, built from `$context`'s configuration, in `$region` (an
/// `Option<&str>`; None: the configured default) as `$credentials` (None: Cordon's own), with
/// the attempts and attempt timeout every Cordon call has ([`EC2_MAX_ATTEMPTS`],
/// [`EC2_ATTEMPT_TIMEOUT`]). A macro because every SDK crate has a config builder of its own.
macro_rules! service_client {
    ($service:ident, $context:expr, $region:expr, $credentials:expr) => {{
        use $service::config;
        let mut builder = config::Builder::from($context.sdk_config())
            .retry_config(
                config::retry::RetryConfig::standard().with_max_attempts($context.max_attempts()),
            )
            .timeout_config(
                config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout($crate::aws::EC2_ATTEMPT_TIMEOUT)
                    .build(),
            )
            .interceptor($crate::aws::CallCounter);
        if $context.yields_when_throttled() {
            builder = builder.retry_classifier($crate::aws::YieldWhenThrottled);
        }
        if let Some(partition) = $context.retry_partition() {
            builder = builder.retry_partition(config::retry::RetryPartition::new(partition));
        }
        if let Some(region) = $region {
            builder = builder.region(config::Region::new(region.to_string()));
        }
        if let Some(credentials) = $credentials {
            builder = builder.credentials_provider(credentials);
        }
        $service::Client::from_conf(builder.build())
    }};
}
pub(crate) use service_client;

/// Counts each operation and each attempt of the clients `service_client!` builds, for the
/// `AwsCalls` and `AwsRetries` metrics of the invocation that makes them.
#[derive(Debug)]
pub(crate) struct CallCounter;

impl aws_smithy_runtime_api::client::interceptors::Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CordonCallCounter"
    }

    fn read_before_execution(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        crate::metrics::count_call();
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        crate::metrics::count_attempt();
        Ok(())
    }
}

/// Forbids the SDK's retry of a throttled call, for the clients of a step that yields
/// ([`AwsContext::deferring`], [`AwsContext::paced`]). The answer's error code is read from its
/// body, which the SDK has read by then: the classifier is one for every operation, whose
/// error types differ. Any classifier's `RetryForbidden` overrides the others'.
#[derive(Debug)]
pub(crate) struct YieldWhenThrottled;

impl aws_smithy_runtime_api::client::retries::classifiers::ClassifyRetry for YieldWhenThrottled {
    fn classify_retry(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
    ) -> aws_smithy_runtime_api::client::retries::classifiers::RetryAction {
        use aws_smithy_runtime_api::client::retries::classifiers::RetryAction;
        let body = ctx.response().and_then(|response| response.body().bytes());
        match body.is_some_and(is_throttling_answer) {
            true => RetryAction::RetryForbidden,
            false => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "CordonYieldWhenThrottled"
    }
}

/// Whether an error answer's body carries a throttling code: EC2's `RequestLimitExceeded`, or
/// the `Throttling` of the other Query services Cordon calls (XML `<Code>`), or a JSON
/// service's `__type`.
pub(crate) fn is_throttling_answer(body: &[u8]) -> bool {
    const CODES: [&str; 5] = [
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestThrottled",
    ];
    let text = String::from_utf8_lossy(body);
    CODES.iter().any(|code| {
        text.contains(&format!("<Code>{code}</Code>"))
            || text.contains(&format!("#{code}\""))
            || text.contains(&format!("\"{code}\""))
    })
}

/// Where and as whom to call AWS. Unset fields fall back to the standard AWS environment
/// variables and shared config (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, ...).
#[derive(Debug, Clone, Default)]
pub struct AwsTarget {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

/// The ARN of the member role `role_name` in `account` of `partition`.
pub fn member_role_arn(partition: &str, account: &str, role_name: &str) -> String {
    format!("arn:{partition}:iam::{account}:role/{role_name}")
}

/// The role Cordon assumes in a member account (`infra/member-role.yaml`) when a finding
/// comes from an account other than its own: a delegated GuardDuty administrator sees them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRole {
    pub role_name: String,
    pub external_id: Option<String>,
    /// A session policy for the assumed role (`AssumeRole`'s `Policy`): the session may do
    /// only what both it and the role allow. None: all the role allows.
    pub session_policy: Option<String>,
}

impl MemberRole {
    /// `CORDON_MEMBER_ROLE_NAME` (unset: no cross-account action) and
    /// `CORDON_MEMBER_EXTERNAL_ID`.
    pub fn from_env() -> Option<Self> {
        let get = |name| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Some(MemberRole {
            role_name: get("CORDON_MEMBER_ROLE_NAME")?,
            external_id: get("CORDON_MEMBER_EXTERNAL_ID"),
            session_policy: None,
        })
    }

    /// The role as a session limited to `policy` (a JSON policy document): for a function
    /// that needs only a little of what the member role grants the workers.
    pub fn limited_to(mut self, policy: &str) -> Self {
        self.session_policy = Some(policy.to_string());
        self
    }
}

/// What every EC2 worker builds once per cold start: its checked configuration, and its AWS
/// context able to act in member accounts (`CORDON_MEMBER_ROLE_NAME`), naming the worker
/// (`capture-state`, ...) in its calls' user agent.
pub async fn worker_context(worker: &str) -> Result<(crate::config::Config, AwsContext)> {
    let config = crate::config::Config::from_env()?;
    let aws = AwsContext::load(&AwsTarget::default())
        .await
        .acting_as(worker)
        .with_member_role(MemberRole::from_env());
    Ok((config, aws))
}

/// Loaded once per process (a Lambda's cold start, a CLI run); hands out EC2 clients for a
/// finding's account and region. This is the one place where clients and credentials are made.
#[derive(Debug, Clone)]
pub struct AwsContext {
    config: SdkConfig,
    member_role: Option<MemberRole>,
    home_account: std::sync::Arc<tokio::sync::OnceCell<String>>,
    deadline: Option<std::time::Instant>,
    /// The SDK's retry quota is shared by every client of a process per retry partition
    /// (by default the service and region): a Lambda execution environment has one of its
    /// own. None: the SDK's default partition.
    retry_partition: Option<String>,
    /// How its clients retry a call that fails transiently.
    call_retries: CallRetries,
}

/// How a context's clients retry a call that EC2 throttles or that fails transiently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallRetries {
    /// [`EC2_MAX_ATTEMPTS`], the first retry after about a second: isolation's calls.
    Urgent,
    /// As `Urgent`, except that a throttled call is not retried: it ends the step's attempt,
    /// and the state machine's retrier paces the step instead (a retried capture, and the
    /// work that may wait while isolation goes first). A fault that is not throttling (an
    /// answer lost, an error of EC2's) is still retried at once: it says nothing about the
    /// buckets.
    Yielding,
}

impl AwsContext {
    pub async fn load(target: &AwsTarget) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &target.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &target.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(endpoint) = &target.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        Self::from_sdk_config(loader.load().await)
    }

    /// A context from an already-built configuration (tests give static credentials).
    pub fn from_sdk_config(config: SdkConfig) -> Self {
        AwsContext {
            config,
            member_role: None,
            home_account: Default::default(),
            deadline: None,
            retry_partition: None,
            call_retries: CallRetries::Urgent,
        }
    }

    /// This context's clients for work that may wait while isolation goes first when EC2
    /// throttles the account (the ACL bookkeeping): a throttled call is made once, and ends
    /// the step's attempt. The state machine's retrier, whose waits for that step
    /// grow longer than isolation's, then spreads the attempts, so that a burst's ACL steps
    /// ask the buckets about as often as they refill. The SDK's own retries (three, 4 and
    /// 8 s apart, before) made each waiting step ask again within seconds: in a burst of
    /// 1,000 they throttled 29,955 of CreateNetworkAclEntry's calls and 39,823 of CreateTags'.
    pub fn deferring(mut self) -> Self {
        self.call_retries = CallRetries::Yielding;
        self
    }

    /// This context's clients for a step that the state machine retries at `pace`: a capture
    /// retried after EC2 throttled or failed it ([`Pace::OneAfterAnother`]) makes a throttled
    /// call once. Its next attempt comes after the definition's jittered backoff, up to a
    /// minute, which spreads a burst's retried captures over time; the SDK's own retries, up
    /// to five within a second or a few, would crowd the buckets of the calls that the
    /// throttled ones wait on (in a burst of 1,000, DescribeSecurityGroups was asked 85 to 140
    /// times a second against a refill of 20).
    ///
    /// [`Pace::OneAfterAnother`]: crate::capture::Pace::OneAfterAnother
    pub fn paced(mut self, pace: crate::capture::Pace) -> Self {
        if pace == crate::capture::Pace::OneAfterAnother {
            self.call_retries = CallRetries::Yielding;
        }
        self
    }

    pub(crate) fn max_attempts(&self) -> u32 {
        EC2_MAX_ATTEMPTS
    }

    /// Whether a throttled call of this context's clients ends the step's attempt.
    pub(crate) fn yields_when_throttled(&self) -> bool {
        self.call_retries == CallRetries::Yielding
    }

    /// This context's clients with a retry quota of their own, named `partition`: for a
    /// process that stands in for many Lambda execution environments (the benchmark's burst).
    pub fn with_retry_partition(mut self, partition: &str) -> Self {
        self.retry_partition = Some(partition.to_string());
        self
    }

    pub(crate) fn retry_partition(&self) -> Option<String> {
        self.retry_partition.clone()
    }

    /// This context for one Lambda invocation that must end by `deadline_ms` (milliseconds
    /// since the epoch, as the Lambda context gives it): its EC2 clients know how long is left.
    pub fn until(&self, deadline_ms: u64) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let left = std::time::Duration::from_millis(deadline_ms.saturating_sub(now_ms));
        AwsContext {
            deadline: Some(std::time::Instant::now() + left),
            ..self.clone()
        }
    }

    /// This context's calls name `worker` in their user agent (`app/cordon-<worker>`), which
    /// CloudTrail keeps with each event: an auditor sees which of Cordon's steps made a call,
    /// including the calls made through a member role, whose session name is the same for
    /// every worker. A name that is not a valid app name (letters, digits and `!#$%&'*+-.^_`|~`)
    /// leaves the user agent as it was.
    pub fn acting_as(mut self, worker: &str) -> Self {
        if let Ok(name) = aws_config::AppName::new(format!("cordon-{worker}")) {
            self.config = self.config.into_builder().app_name(name).build();
        }
        self
    }

    /// Lets the context act in member accounts through `role`.
    pub fn with_member_role(mut self, role: Option<MemberRole>) -> Self {
        self.member_role = role;
        self
    }

    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    /// EC2 in `region` (a finding's region), or the configured default region, as the caller.
    pub fn ec2(&self, region: Option<&str>) -> AwsEc2 {
        self.ec2_with(region, None)
    }

    fn ec2_with(
        &self,
        region: Option<&str>,
        credentials: Option<aws_sdk_ec2::config::Credentials>,
    ) -> AwsEc2 {
        use aws_sdk_ec2::config::retry::{RetryPartition, TokenBucket};
        let urgent = AwsContext {
            call_retries: CallRetries::Urgent,
            ..self.clone()
        };
        let pressing = service_client!(aws_sdk_ec2, urgent, region, credentials.clone());
        // A retry quota of its own, without a limit: the SDK's shared quota (500, 5 a
        // throttled retry, 1 back a success) runs dry in a warm environment that a burst
        // throttles for minutes, and then every retry of these few calls would be skipped.
        // Their attempts are bounded by the SDK's 5 and the isolation swap's tries.
        let partition = format!(
            "{}-pressing",
            self.retry_partition().as_deref().unwrap_or("ec2")
        );
        let pressing = Client::from_conf(
            pressing
                .config()
                .to_builder()
                .retry_partition(
                    RetryPartition::custom(partition)
                        .token_bucket(TokenBucket::unlimited())
                        .build(),
                )
                .build(),
        );
        AwsEc2 {
            client: service_client!(aws_sdk_ec2, self, region, credentials),
            pressing,
            yields: self.yields_when_throttled(),
            deadline: self.deadline,
        }
    }

    fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.config)
    }

    /// The account Cordon runs in (asked once).
    async fn home_account(&self) -> Result<String> {
        self.home_account
            .get_or_try_init(|| async {
                let identity = self
                    .sts()
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| sdk_error("GetCallerIdentity", "", e))?;
                Ok(identity.account().unwrap_or_default().to_string())
            })
            .await
            .cloned()
    }

    /// Credentials in `account` through the member role.
    async fn assume(
        &self,
        account: &str,
        role: &MemberRole,
    ) -> Result<aws_sdk_ec2::config::Credentials> {
        // The partition of the region Cordon's STS client is in: a member account is in the
        // same partition as the administrator's (an organization never spans two).
        let partition = crate::partition::of_region(
            self.config.region().map(|r| r.as_ref()).unwrap_or_default(),
        );
        let role_arn = member_role_arn(partition, account, &role.role_name);
        let assumed = self
            .sts()
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name("cordon")
            .set_external_id(role.external_id.clone())
            .set_policy(role.session_policy.clone())
            .duration_seconds(900)
            .send()
            .await
            .map_err(|e| {
                assume_role_error(account, &role_arn, sdk_error("AssumeRole", &role_arn, e))
            })?;
        let credentials = assumed
            .credentials()
            .ok_or_else(|| CordonError::AccessDenied {
                operation: "AssumeRole".into(),
                message: format!("{role_arn} returned no credentials"),
            })?;
        Ok(aws_sdk_ec2::config::Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_string()),
            None,
            "cordon-member-role",
        ))
    }
}

impl AwsContext {
    /// The credentials to act in `target`'s account: `None` in Cordon's own account (its own
    /// credentials), the member role's in any other. The future is boxed and its type erased:
    /// the SDK's futures inside nest deep enough that, inline in every port's provider, the
    /// workers' main futures pass the compiler's query depth limit.
    pub(crate) fn credentials_for<'a>(
        &'a self,
        target: &'a crate::ec2::Target,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Option<aws_sdk_ec2::config::Credentials>>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(self.credentials_in(target))
    }

    async fn credentials_in(
        &self,
        target: &crate::ec2::Target,
    ) -> Result<Option<aws_sdk_ec2::config::Credentials>> {
        let Some(account) = target.account_id.as_deref().filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        if account == self.home_account().await? {
            return Ok(None);
        }
        match &self.member_role {
            Some(role) => Ok(Some(self.assume(account, role).await?)),
            None => Err(no_member_role(account)),
        }
    }
}

/// STS's refusal of the member role: no such role in the account, or one that does not trust
/// this worker (STS says only AccessDenied for both). Either way the account is not enrolled.
fn assume_role_error(account: &str, role_arn: &str, error: CordonError) -> CordonError {
    match error {
        CordonError::AccessDenied { message, .. } => CordonError::NotEnrolled {
            account: account.to_string(),
            message: format!("{role_arn} could not be assumed ({message})"),
        },
        other => other,
    }
}

fn no_member_role(account: &str) -> CordonError {
    CordonError::NotEnrolled {
        account: account.to_string(),
        message: "the finding is from another account than Cordon's, and no member role is configured (CORDON_MEMBER_ROLE_NAME)".into(),
    }
}

impl crate::ec2::Ec2Provider for AwsContext {
    type Ec2 = AwsEc2;

    async fn ec2_for(&self, target: &crate::ec2::Target) -> Result<AwsEc2> {
        let region = target.region.as_deref();
        let Some(account) = target.account_id.as_deref().filter(|a| !a.is_empty()) else {
            return Ok(self.ec2(region));
        };
        if account == self.home_account().await? {
            return Ok(self.ec2(region));
        }
        match &self.member_role {
            Some(role) => Ok(self.ec2_with(region, Some(self.assume(account, role).await?))),
            None => Err(no_member_role(account)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AwsEc2 {
    client: Client,
    /// For the calls that press on whatever the context's pace: the swaps that take an
    /// interface off the conversion group ([`Ec2::set_interface_groups`]) and the instance's
    /// hardening (termination protection, shutdown behaviour).
    pressing: Client,
    /// Whether `client` yields to throttling: a step that the state machine retries.
    yields: bool,
    /// When the invocation ends (None: a CLI run, no deadline).
    deadline: Option<std::time::Instant>,
}

/// Maps an EC2 error code to Cordon's typed error. `subject` is the id the call was about.
pub fn classify(operation: &str, subject: &str, code: &str, message: &str) -> CordonError {
    let owned = |s: &str| s.to_string();
    match code {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "RequestThrottled"
        | "TooManyRequestsException"
        | "ServiceUnavailable"
        | "Unavailable" => CordonError::Throttled {
            operation: owned(operation),
            message: owned(message),
        },
        // EC2's own 500s: the call may or may not have happened; every step is idempotent,
        // so they are retried like an answer that never came.
        "InternalError" | "InternalFailure" => CordonError::Unavailable {
            operation: owned(operation),
            message: owned(message),
        },
        "InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed" => {
            CordonError::InstanceNotFound {
                instance_id: owned(subject),
            }
        }
        "InvalidNetworkInterfaceID.NotFound" | "InvalidNetworkInterfaceID.Malformed" => {
            CordonError::InterfaceNotFound {
                eni_id: owned(subject),
            }
        }
        "InvalidGroup.Duplicate" => CordonError::GroupDuplicate {
            vpc_id: owned(subject),
            group_name: owned(message),
        },
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" | "AuthFailure" => {
            CordonError::AccessDenied {
                operation: owned(operation),
                message: owned(message),
            }
        }
        _ => CordonError::Ec2 {
            operation: owned(operation),
            code: owned(code),
            message: owned(message),
        },
    }
}

/// Any SDK error as Cordon's: by its code, or `Unavailable` when there was no answer at all
/// (network, timeout), which is worth retrying like throttling.
pub fn sdk_error<E, R>(operation: &str, subject: &str, error: SdkError<E, R>) -> CordonError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error.code() {
        Some(code) => classify(operation, subject, code, error.message().unwrap_or("")),
        None => CordonError::Unavailable {
            operation: operation.to_string(),
            message: DisplayErrorContext(&error).to_string(),
        },
    }
}

/// [`sdk_error`] of a call made in one attempt: `Throttled` only for EC2's
/// `RequestLimitExceeded`, which EC2 answers before doing anything. Its other answers that
/// Cordon takes for throttling (`ServiceUnavailable`, `Unavailable`) say less about what was
/// done, and become `Unavailable`: the call may have been made.
fn once_error<E, R>(operation: &str, subject: &str, error: SdkError<E, R>) -> CordonError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let refused_unmade = error.code() == Some("RequestLimitExceeded");
    match sdk_error(operation, subject, error) {
        CordonError::Throttled { operation, message } if !refused_unmade => {
            CordonError::Unavailable { operation, message }
        }
        other => other,
    }
}

fn filter(name: &str, values: &[String]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.to_vec()))
        .build()
}

fn tags_of(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|tag| {
            (
                tag.key().unwrap_or_default().to_string(),
                tag.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn sdk_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

fn instance_of(instance: &aws_sdk_ec2::types::Instance) -> Instance {
    let mut interfaces: Vec<(i32, NetworkInterface)> = instance
        .network_interfaces()
        .iter()
        .map(|eni| {
            let index = eni
                .attachment()
                .and_then(|a| a.device_index())
                .unwrap_or(i32::MAX);
            let interface = NetworkInterface {
                id: eni.network_interface_id().unwrap_or_default().to_string(),
                subnet_id: eni.subnet_id().unwrap_or_default().to_string(),
                vpc_id: eni.vpc_id().unwrap_or_default().to_string(),
                groups: eni
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(String::from))
                    .collect(),
                group_names: eni
                    .groups()
                    .iter()
                    .filter_map(|g| Some((g.group_id()?.to_string(), g.group_name()?.to_string())))
                    .collect(),
                private_ipv4: eni
                    .private_ip_addresses()
                    .iter()
                    .filter_map(|a| a.private_ip_address().map(String::from))
                    .collect(),
                ipv6: eni
                    .ipv6_addresses()
                    .iter()
                    .filter_map(|a| a.ipv6_address().map(String::from))
                    .collect(),
                ipv4_prefixes: eni
                    .ipv4_prefixes()
                    .iter()
                    .filter_map(|p| p.ipv4_prefix().map(String::from))
                    .collect(),
                ipv6_prefixes: eni
                    .ipv6_prefixes()
                    .iter()
                    .filter_map(|p| p.ipv6_prefix().map(String::from))
                    .collect(),
                owner_id: eni.owner_id().unwrap_or_default().to_string(),
                interface_type: eni
                    .interface_type()
                    .filter(|t| *t != "interface")
                    .map(String::from),
                managed_by: eni
                    .operator()
                    .filter(|o| o.managed() == Some(true))
                    .map(|o| o.principal().unwrap_or("another AWS service").to_string()),
                // moto reports no connection tracking: every interface reads as AWS's defaults.
                conntrack: eni.connection_tracking_configuration().map(|c| ConnTrack {
                    tcp_established: c.tcp_established_timeout(),
                    udp_stream: c.udp_stream_timeout(),
                    udp: c.udp_timeout(),
                }),
            };
            (index, interface)
        })
        .collect();
    interfaces.sort_by_key(|(index, _)| *index);
    Instance {
        id: instance.instance_id().unwrap_or_default().to_string(),
        state: instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        interfaces: interfaces.into_iter().map(|(_, i)| i).collect(),
        tags: tags_of(instance.tags()),
        // moto reports no lifecycle: its instances all read as On-Demand.
        lifecycle: instance
            .instance_lifecycle()
            .map(|l| l.as_str().to_string()),
        instance_profile_arn: instance
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .map(String::from),
        volumes: instance
            .block_device_mappings()
            .iter()
            .filter_map(|mapping| {
                let ebs = mapping.ebs()?;
                Some(Volume {
                    device: mapping.device_name()?.to_string(),
                    volume_id: ebs.volume_id()?.to_string(),
                    delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
                })
            })
            .collect(),
    }
}

fn rules_of(permissions: &[IpPermission]) -> Vec<SgRule> {
    let mut rules = Vec::new();
    for permission in permissions {
        let protocol = permission.ip_protocol().unwrap_or("-1").to_string();
        let all = protocol == "-1";
        let (from_port, to_port) = if all {
            (None, None)
        } else {
            (permission.from_port(), permission.to_port())
        };
        let mut push = |peer| {
            rules.push(SgRule {
                protocol: protocol.clone(),
                from_port,
                to_port,
                peer,
            })
        };
        for range in permission.ip_ranges() {
            if let Some(cidr) = range.cidr_ip() {
                push(Peer::Ipv4(cidr.to_string()));
            }
        }
        for range in permission.ipv6_ranges() {
            if let Some(cidr) = range.cidr_ipv6() {
                push(Peer::Ipv6(cidr.to_string()));
            }
        }
        for pair in permission.user_id_group_pairs() {
            if let Some(group) = pair.group_id() {
                push(Peer::Group(group.to_string()));
            }
        }
        // A rule to a prefix list (a managed list of CIDRs, anyone's to fill) opens as much as
        // a CIDR: read, it is revoked from Cordon's groups like any rule they should not hold.
        for list in permission.prefix_list_ids() {
            if let Some(id) = list.prefix_list_id() {
                push(Peer::PrefixList(id.to_string()));
            }
        }
    }
    rules
}

/// One permission per rule: moto mishandles permissions that mix IPv4 and IPv6 ranges.
fn permissions_of(rules: &[SgRule]) -> Vec<IpPermission> {
    rules
        .iter()
        .map(|rule| {
            let builder = IpPermission::builder()
                .ip_protocol(&rule.protocol)
                .set_from_port(rule.from_port)
                .set_to_port(rule.to_port);
            match &rule.peer {
                Peer::Ipv4(cidr) => builder.ip_ranges(IpRange::builder().cidr_ip(cidr).build()),
                Peer::Ipv6(cidr) => {
                    builder.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(cidr).build())
                }
                Peer::Group(group) => {
                    builder.user_id_group_pairs(UserIdGroupPair::builder().group_id(group).build())
                }
                Peer::PrefixList(id) => builder.prefix_list_ids(
                    aws_sdk_ec2::types::PrefixListId::builder()
                        .prefix_list_id(id)
                        .build(),
                ),
            }
            .build()
        })
        .collect()
}

fn security_group_of(group: &aws_sdk_ec2::types::SecurityGroup) -> SecurityGroup {
    SecurityGroup {
        id: group.group_id().unwrap_or_default().to_string(),
        vpc_id: group.vpc_id().unwrap_or_default().to_string(),
        name: group.group_name().unwrap_or_default().to_string(),
        role: group
            .tags()
            .iter()
            .find(|t| t.key() == Some(GroupRole::TAG_KEY))
            .and_then(|t| t.value())
            .and_then(GroupRole::from_tag_value),
        ingress: rules_of(group.ip_permissions()),
        egress: rules_of(group.ip_permissions_egress()),
        tags: tags_of(group.tags()),
    }
}

fn network_acl_of(acl: &aws_sdk_ec2::types::NetworkAcl) -> NetworkAcl {
    NetworkAcl {
        id: acl.network_acl_id().unwrap_or_default().to_string(),
        vpc_id: acl.vpc_id().unwrap_or_default().to_string(),
        subnet_ids: acl
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id().map(String::from))
            .collect(),
        entries: acl
            .entries()
            .iter()
            .map(|entry| AclEntry {
                rule_number: entry.rule_number().unwrap_or_default(),
                egress: entry.egress().unwrap_or_default(),
                action: match entry.rule_action().map(|a| a.as_str()) {
                    Some("allow") => RuleAction::Allow,
                    _ => RuleAction::Deny,
                },
                protocol: entry.protocol().unwrap_or("-1").to_string(),
                cidr: entry
                    .cidr_block()
                    .or(entry.ipv6_cidr_block())
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect(),
        tags: tags_of(acl.tags()),
    }
}

impl AwsEc2 {
    /// Cordon's groups (tagged with their role) in `vpc_ids`, or in the whole region. Without
    /// MaxResults, DescribeSecurityGroups returns every item in one answer (its API reference
    /// says so): the loop on NextToken costs no call then, and holds if that ever changes.
    async fn groups_tagged_by_cordon(
        &self,
        vpc_ids: Option<&[String]>,
    ) -> Result<Vec<SecurityGroup>> {
        let scope = vpc_ids.map_or("the region".to_string(), |ids| ids.join(","));
        let mut groups = Vec::new();
        let mut token = None;
        loop {
            let mut request = self
                .client
                .describe_security_groups()
                .filters(filter("tag-key", &[GroupRole::TAG_KEY.to_string()]))
                .set_next_token(token);
            if let Some(vpc_ids) = vpc_ids {
                request = request.filters(filter("vpc-id", vpc_ids));
            }
            let output = request
                .send()
                .await
                .map_err(|e| sdk_error("DescribeSecurityGroups", &scope, e))?;
            groups.extend(output.security_groups().iter().map(security_group_of));
            token = output.next_token().map(String::from);
            if token.is_none() {
                return Ok(groups);
            }
        }
    }

    /// Every network interface whose filter `filter_name` matches `value` (`DescribeNetworkInterfaces`, every
    /// page).
    async fn interfaces_where(
        &self,
        filter_name: &str,
        value: &str,
    ) -> Result<Vec<aws_sdk_ec2::types::NetworkInterface>> {
        let mut interfaces = Vec::new();
        let mut token = None;
        loop {
            let output = self
                .client
                .describe_network_interfaces()
                .filters(filter(filter_name, &[value.to_string()]))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeNetworkInterfaces", value, e))?;
            interfaces.extend(output.network_interfaces().iter().cloned());
            token = output.next_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        Ok(interfaces)
    }

    /// Creates a security group named and tagged at creation (the IAM conditions require the
    /// tags in the same call); `GroupDuplicate` names the group when the name is taken.
    async fn create_named_group(
        &self,
        vpc_id: &str,
        name: &str,
        description: &str,
        tags: &[(String, String)],
    ) -> Result<String> {
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::SecurityGroup)
            .set_tags(Some(sdk_tags(tags)))
            .build();
        let output = self
            .client
            .create_security_group()
            .group_name(name)
            .description(description)
            .vpc_id(vpc_id)
            .tag_specifications(tags)
            .send()
            .await
            .map_err(|e| match sdk_error("CreateSecurityGroup", vpc_id, e) {
                CordonError::GroupDuplicate { vpc_id, .. } => CordonError::GroupDuplicate {
                    vpc_id,
                    group_name: name.to_string(),
                },
                other => other,
            })?;
        Ok(output.group_id().unwrap_or_default().to_string())
    }
}

impl Ec2 for AwsEc2 {
    async fn describe_instance(&self, instance_id: &str) -> Result<Instance> {
        let output = self
            .client
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeInstances", instance_id, e))?;
        output
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .map(instance_of)
            .ok_or_else(|| CordonError::InstanceNotFound {
                instance_id: instance_id.to_string(),
            })
    }

    async fn termination_protection(&self, instance_id: &str) -> Result<bool> {
        let output = self
            .client
            .describe_instance_attribute()
            .instance_id(instance_id)
            .attribute(InstanceAttributeName::DisableApiTermination)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeInstanceAttribute", instance_id, e))?;
        Ok(output
            .disable_api_termination()
            .and_then(|v| v.value())
            .unwrap_or(false))
    }

    async fn set_termination_protection(&self, instance_id: &str, enabled: bool) -> Result<()> {
        self.pressing
            .modify_instance_attribute()
            .instance_id(instance_id)
            .disable_api_termination(AttributeBooleanValue::builder().value(enabled).build())
            .send()
            .await
            .map_err(|e| sdk_error("ModifyInstanceAttribute", instance_id, e))?;
        Ok(())
    }

    async fn set_interface_groups(&self, eni_id: &str, group_ids: &[String]) -> Result<()> {
        self.pressing
            .modify_network_interface_attribute()
            .network_interface_id(eni_id)
            .set_groups(Some(group_ids.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error("ModifyNetworkInterfaceAttribute", eni_id, e))?;
        Ok(())
    }

    async fn try_interface_groups(&self, eni_id: &str, group_ids: &[String]) -> Result<()> {
        if !self.yields {
            // No retrier paces this caller (`cordon isolate`): the swap presses on, and as
            // one of its attempts may have been made before the last was throttled, a
            // throttled end says nothing of whether it was made.
            return self.set_interface_groups(eni_id, group_ids).await.map_err(
                |error| match error {
                    CordonError::Throttled { operation, message } => {
                        CordonError::Unavailable { operation, message }
                    }
                    other => other,
                },
            );
        }
        self.client
            .modify_network_interface_attribute()
            .network_interface_id(eni_id)
            .set_groups(Some(group_ids.to_vec()))
            .customize()
            .config_override(
                aws_sdk_ec2::config::Builder::default()
                    .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| once_error("ModifyNetworkInterfaceAttribute", eni_id, e))?;
        Ok(())
    }

    async fn existing_groups(&self, group_ids: &[String]) -> Result<Vec<String>> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        // A `group-id` filter, unlike `GroupIds`, answers with the groups that exist instead of
        // failing the whole call on the first missing one.
        let output = self
            .client
            .describe_security_groups()
            .filters(filter("group-id", group_ids))
            .send()
            .await
            .map_err(|e| sdk_error("DescribeSecurityGroups", &group_ids.join(","), e))?;
        Ok(output
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(String::from))
            .collect())
    }

    async fn cordon_groups(&self, vpc_ids: &[String]) -> Result<Vec<SecurityGroup>> {
        self.groups_tagged_by_cordon(Some(vpc_ids)).await
    }

    async fn cordon_groups_anywhere(&self) -> Result<Vec<SecurityGroup>> {
        self.groups_tagged_by_cordon(None).await
    }

    async fn create_cordon_group(
        &self,
        vpc_id: &str,
        role: GroupRole,
        suffix: Option<&str>,
    ) -> Result<SecurityGroup> {
        let name = role.group_name_with(vpc_id, suffix);
        let tags = [
            (GroupRole::TAG_KEY.to_string(), role.tag_value().to_string()),
            ("Name".to_string(), name.clone()),
        ];
        let id = self
            .create_named_group(vpc_id, &name, role.description(), &tags)
            .await?;
        // A new VPC group starts with EC2's default egress rule(s). The conversion group only
        // ever adds to them (all traffic both ways): it goes on from the IPv4 one, and an IPv6
        // one that was there too is met as a duplicate, which reconcile_rules reads again.
        // This saves a round trip on the path of every containment in a VPC without one.
        if role == GroupRole::Conversion {
            return Ok(SecurityGroup {
                id,
                vpc_id: vpc_id.to_string(),
                name,
                role: Some(role),
                ingress: Vec::new(),
                egress: vec![SgRule::all_traffic(Peer::Ipv4("0.0.0.0/0".into()))],
                tags: tags.to_vec(),
            });
        }
        // Any other group is read back, so that the caller revokes what really exists (the
        // isolation group must lose every default egress rule). EC2 is eventually consistent
        // after a create: the read may not find the group for a moment, and is made again.
        for pause in crate::isolate::CONSISTENCY_PAUSES_MS
            .iter()
            .copied()
            .map(Some)
            .chain([None])
        {
            let described = self
                .client
                .describe_security_groups()
                .group_ids(&id)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeSecurityGroups", &id, e));
            let found = match described {
                Ok(described) => described.security_groups().first().map(security_group_of),
                Err(CordonError::Ec2 { code, .. }) if code == "InvalidGroup.NotFound" => None,
                Err(other) => return Err(other),
            };
            match (found, pause) {
                (Some(group), _) => return Ok(group),
                (None, Some(ms)) if self.has_time_for(2) => {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await
                }
                (None, _) => break,
            }
        }
        Err(CordonError::Unavailable {
            operation: "DescribeSecurityGroups".into(),
            message: format!(
                "the security group {id}, just created, is not yet visible to EC2's reads; the step is retried and finds it by its name"
            ),
        })
    }

    async fn create_claim_group(
        &self,
        vpc_id: &str,
        instance_id: &str,
        owner: &str,
        claimed_at: &str,
        record: &[(String, String)],
    ) -> Result<String> {
        let name = crate::claim::group_name(instance_id);
        let mut tags = crate::claim::claim_tags(instance_id, owner, claimed_at);
        tags.extend(record.iter().cloned());
        self.create_named_group(
            vpc_id,
            &name,
            &crate::claim::description(instance_id),
            &tags,
        )
        .await
    }

    async fn delete_group(&self, group_id: &str) -> Result<()> {
        self.client
            .delete_security_group()
            .group_id(group_id)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteSecurityGroup", group_id, e))?;
        Ok(())
    }

    async fn authorize(
        &self,
        group_id: &str,
        direction: Direction,
        rules: &[SgRule],
    ) -> Result<()> {
        let permissions = Some(permissions_of(rules));
        match direction {
            Direction::Ingress => self
                .client
                .authorize_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(permissions)
                .send()
                .await
                .map(drop)
                .map_err(|e| sdk_error("AuthorizeSecurityGroupIngress", group_id, e)),
            Direction::Egress => self
                .client
                .authorize_security_group_egress()
                .group_id(group_id)
                .set_ip_permissions(permissions)
                .send()
                .await
                .map(drop)
                .map_err(|e| sdk_error("AuthorizeSecurityGroupEgress", group_id, e)),
        }
    }

    async fn revoke(&self, group_id: &str, direction: Direction, rules: &[SgRule]) -> Result<()> {
        let permissions = Some(permissions_of(rules));
        match direction {
            Direction::Ingress => self
                .client
                .revoke_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(permissions)
                .send()
                .await
                .map(drop)
                .map_err(|e| sdk_error("RevokeSecurityGroupIngress", group_id, e)),
            Direction::Egress => self
                .client
                .revoke_security_group_egress()
                .group_id(group_id)
                .set_ip_permissions(permissions)
                .send()
                .await
                .map(drop)
                .map_err(|e| sdk_error("RevokeSecurityGroupEgress", group_id, e)),
        }
    }

    async fn network_acls(&self, vpc_id: &str) -> Result<Vec<NetworkAcl>> {
        let mut acls = Vec::new();
        let mut token = None;
        loop {
            let output = self
                .client
                .describe_network_acls()
                .filters(filter("vpc-id", &[vpc_id.to_string()]))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeNetworkAcls", vpc_id, e))?;
            acls.extend(output.network_acls().iter().map(network_acl_of));
            token = output.next_token().map(String::from);
            if token.is_none() {
                return Ok(acls);
            }
        }
    }

    async fn network_acl(&self, acl_id: &str) -> Result<NetworkAcl> {
        let output = self
            .client
            .describe_network_acls()
            .network_acl_ids(acl_id)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeNetworkAcls", acl_id, e))?;
        output
            .network_acls()
            .first()
            .map(network_acl_of)
            .ok_or_else(|| CordonError::Ec2 {
                operation: "DescribeNetworkAcls".into(),
                code: "InvalidNetworkAclID.NotFound".into(),
                message: format!("network ACL {acl_id} does not exist"),
            })
    }

    async fn create_deny_entry(&self, entry: &DenyEntry) -> Result<()> {
        let request = self
            .client
            .create_network_acl_entry()
            .network_acl_id(&entry.acl_id)
            .rule_number(entry.rule_number)
            .egress(entry.egress)
            .protocol("-1")
            .rule_action(aws_sdk_ec2::types::RuleAction::Deny);
        let request = if crate::net::is_ipv6_cidr(&entry.cidr) {
            request.ipv6_cidr_block(&entry.cidr)
        } else {
            request.cidr_block(&entry.cidr)
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some("NetworkAclEntryAlreadyExists") => {
                Err(CordonError::NaclEntryExists {
                    acl_id: entry.acl_id.clone(),
                    direction: Direction::from_egress(entry.egress).name().into(),
                    rule_number: entry.rule_number,
                })
            }
            Err(error) => Err(sdk_error("CreateNetworkAclEntry", &entry.acl_id, error)),
        }
    }

    async fn delete_acl_entry(&self, acl_id: &str, egress: bool, rule_number: i32) -> Result<()> {
        self.client
            .delete_network_acl_entry()
            .network_acl_id(acl_id)
            .egress(egress)
            .rule_number(rule_number)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteNetworkAclEntry", acl_id, e))?;
        Ok(())
    }

    async fn create_tags(&self, resource_id: &str, tags: &[(String, String)]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        self.client
            .create_tags()
            .resources(resource_id)
            .set_tags(Some(sdk_tags(tags)))
            .send()
            .await
            .map_err(|e| sdk_error("CreateTags", resource_id, e))?;
        Ok(())
    }

    async fn delete_tags(&self, resource_id: &str, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let tags = keys
            .iter()
            .map(|key| Tag::builder().key(key).build())
            .collect();
        self.client
            .delete_tags()
            .resources(resource_id)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteTags", resource_id, e))?;
        Ok(())
    }

    async fn shutdown_behavior(&self, instance_id: &str) -> Result<String> {
        let output = self
            .client
            .describe_instance_attribute()
            .instance_id(instance_id)
            .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeInstanceAttribute", instance_id, e))?;
        Ok(output
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value())
            .unwrap_or("stop")
            .to_string())
    }

    async fn set_shutdown_behavior(&self, instance_id: &str, behavior: &str) -> Result<()> {
        // The `Attribute` + `Value` form: moto implements only this one, and EC2 takes both.
        // Pressing: until it is made, a `shutdown` on the instance terminates it, and the
        // evidence with it (termination protection does not stop that).
        self.pressing
            .modify_instance_attribute()
            .instance_id(instance_id)
            .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
            .value(behavior)
            .send()
            .await
            .map_err(|e| sdk_error("ModifyInstanceAttribute", instance_id, e))?;
        Ok(())
    }

    async fn set_connection_tracking(&self, eni_id: &str, timeouts: &ConnTrack) -> Result<()> {
        // moto accepts `ConnectionTrackingSpecification` and ignores it (design.md, "Facts
        // that moto does not show"), so AWS's ranges are enforced here, before the call.
        timeouts.check()?;
        let spec = aws_sdk_ec2::types::ConnectionTrackingSpecificationRequest::builder()
            .set_tcp_established_timeout(timeouts.tcp_established)
            .set_udp_stream_timeout(timeouts.udp_stream)
            .set_udp_timeout(timeouts.udp)
            .build();
        // Its own call: EC2 changes one attribute of an interface per request.
        self.client
            .modify_network_interface_attribute()
            .network_interface_id(eni_id)
            .connection_tracking_specification(spec)
            .send()
            .await
            .map_err(|e| sdk_error("ModifyNetworkInterfaceAttribute", eni_id, e))?;
        Ok(())
    }

    async fn vpc(&self, vpc_id: &str) -> Result<Vpc> {
        let output = self
            .client
            .describe_vpcs()
            .vpc_ids(vpc_id)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeVpcs", vpc_id, e))?;
        let vpc = output
            .vpcs()
            .iter()
            .find(|v| v.vpc_id() == Some(vpc_id))
            .ok_or_else(|| CordonError::Ec2 {
                operation: "DescribeVpcs".into(),
                code: "InvalidVpcID.NotFound".into(),
                message: format!("{vpc_id} is not in the answer"),
            })?;
        // Every block the VPC holds or is still letting go: an address in any of them is the
        // VPC's own.
        let ipv4 = vpc
            .cidr_block_association_set()
            .iter()
            .filter_map(|a| a.cidr_block());
        let ipv6 = vpc
            .ipv6_cidr_block_association_set()
            .iter()
            .filter_map(|a| a.ipv6_cidr_block());
        let mut cidrs: Vec<String> = vpc
            .cidr_block()
            .into_iter()
            .chain(ipv4)
            .chain(ipv6)
            .map(String::from)
            .collect();
        cidrs.dedup();
        Ok(Vpc {
            id: vpc_id.to_string(),
            owner_id: vpc.owner_id().unwrap_or_default().to_string(),
            cidrs,
        })
    }

    async fn groups_in_use(&self, vpc_id: &str) -> Result<Vec<String>> {
        let mut groups: Vec<String> = self
            .interfaces_where("vpc-id", vpc_id)
            .await?
            .iter()
            .flat_map(|eni| eni.groups())
            .filter_map(|group| group.group_id())
            .map(String::from)
            .collect();
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    async fn interfaces_with_group(&self, group_id: &str) -> Result<Vec<String>> {
        Ok(self
            .interfaces_where("group-id", group_id)
            .await?
            .iter()
            .filter_map(|eni| eni.network_interface_id())
            .map(String::from)
            .collect())
    }

    async fn session_endpoints(&self, vpc_id: &str) -> Result<Vec<SessionEndpoint>> {
        let region = self
            .client
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let names = crate::session::service_names(&region);
        let mut endpoints = Vec::new();
        let mut interfaces: Vec<String> = Vec::new();
        let mut token = None;
        loop {
            // The state on the server's side: the SDK reads EC2's lower-case `available`
            // as an unknown state.
            let output = self
                .client
                .describe_vpc_endpoints()
                .filters(filter("vpc-id", &[vpc_id.to_string()]))
                .filters(filter("vpc-endpoint-type", &["Interface".to_string()]))
                .filters(filter("vpc-endpoint-state", &["available".to_string()]))
                .filters(filter("service-name", &names))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeVpcEndpoints", vpc_id, e))?;
            for endpoint in output.vpc_endpoints() {
                // The whole name, not only its last word: an endpoint service of anyone's
                // (com.amazonaws.vpce.<region>.vpce-svc-...) never passes.
                let Some(service) = endpoint
                    .service_name()
                    .filter(|name| names.iter().any(|n| n == name))
                    .and_then(crate::session::service_of)
                else {
                    continue;
                };
                // Without private DNS the services' names do not resolve to it.
                if endpoint.private_dns_enabled() != Some(true) {
                    continue;
                }
                interfaces.extend(endpoint.network_interface_ids().iter().cloned());
                endpoints.push((
                    SessionEndpoint {
                        id: endpoint.vpc_endpoint_id().unwrap_or_default().to_string(),
                        service: service.to_string(),
                        subnet_ids: endpoint.subnet_ids().to_vec(),
                        addresses: Vec::new(),
                    },
                    endpoint.network_interface_ids().to_vec(),
                ));
            }
            token = output.next_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        let mut addresses: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        // At most 1,000 ids a call; a VPC's three endpoints have a few interfaces each.
        for ids in interfaces.chunks(1000) {
            let output = self
                .client
                .describe_network_interfaces()
                .set_network_interface_ids(Some(ids.to_vec()))
                .send()
                .await
                .map_err(|e| sdk_error("DescribeNetworkInterfaces", vpc_id, e))?;
            for interface in output.network_interfaces() {
                let ipv4 = interface
                    .private_ip_addresses()
                    .iter()
                    .filter_map(|a| a.private_ip_address());
                let ipv6 = interface
                    .ipv6_addresses()
                    .iter()
                    .filter_map(|a| a.ipv6_address());
                addresses.insert(
                    interface
                        .network_interface_id()
                        .unwrap_or_default()
                        .to_string(),
                    ipv4.chain(ipv6).map(String::from).collect(),
                );
            }
        }
        Ok(endpoints
            .into_iter()
            .map(|(mut endpoint, interfaces)| {
                endpoint.addresses = interfaces
                    .iter()
                    .flat_map(|id| addresses.get(id).cloned().unwrap_or_default())
                    .collect();
                endpoint
            })
            .collect())
    }

    async fn subnets(&self, vpc_id: &str) -> Result<Vec<Subnet>> {
        let mut subnets = Vec::new();
        let mut token = None;
        loop {
            let output = self
                .client
                .describe_subnets()
                .filters(filter("vpc-id", &[vpc_id.to_string()]))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeSubnets", vpc_id, e))?;
            subnets.extend(output.subnets().iter().map(|subnet| {
                let ipv6 = subnet
                    .ipv6_cidr_block_association_set()
                    .iter()
                    .filter_map(|a| a.ipv6_cidr_block());
                Subnet {
                    id: subnet.subnet_id().unwrap_or_default().to_string(),
                    vpc_id: subnet.vpc_id().unwrap_or_default().to_string(),
                    cidrs: subnet
                        .cidr_block()
                        .into_iter()
                        .chain(ipv6)
                        .map(String::from)
                        .collect(),
                }
            }));
            token = output.next_token().map(String::from);
            if token.is_none() {
                return Ok(subnets);
            }
        }
    }

    async fn group_named(&self, vpc_id: &str, name: &str) -> Result<Option<SecurityGroup>> {
        let output = self
            .client
            .describe_security_groups()
            .filters(filter("vpc-id", &[vpc_id.to_string()]))
            .filters(filter("group-name", &[name.to_string()]))
            .send()
            .await
            .map_err(|e| sdk_error("DescribeSecurityGroups", vpc_id, e))?;
        Ok(output.security_groups().first().map(security_group_of))
    }

    fn has_time_for(&self, calls: u32) -> bool {
        self.deadline
            .is_none_or(|end| std::time::Instant::now() + EC2_CALL_BUDGET * calls <= end)
    }

    async fn instances_tagged(&self, key: &str) -> Result<Vec<Instance>> {
        let mut instances = Vec::new();
        let mut token = None;
        loop {
            let output = self
                .client
                .describe_instances()
                .filters(filter("tag-key", &[key.to_string()]))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeInstances", key, e))?;
            instances.extend(
                output
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .map(instance_of),
            );
            token = output.next_token().map(String::from);
            if token.is_none() {
                return Ok(instances);
            }
        }
    }

    async fn snapshots_tagged(&self, tags: &[(String, String)]) -> Result<Vec<Snapshot>> {
        let mut snapshots = Vec::new();
        let mut token = None;
        loop {
            let mut request = self
                .client
                .describe_snapshots()
                .owner_ids("self")
                .set_next_token(token);
            for (key, value) in tags {
                request =
                    request.filters(filter(&format!("tag:{key}"), std::slice::from_ref(value)));
            }
            let output = request
                .send()
                .await
                .map_err(|e| sdk_error("DescribeSnapshots", "snapshots", e))?;
            snapshots.extend(output.snapshots().iter().map(|snapshot| Snapshot {
                snapshot_id: snapshot.snapshot_id().unwrap_or_default().to_string(),
                volume_id: snapshot.volume_id().unwrap_or_default().to_string(),
                tags: tags_of(snapshot.tags()),
            }));
            token = output.next_token().map(String::from);
            if token.is_none() {
                return Ok(snapshots);
            }
        }
    }

    async fn create_snapshots(
        &self,
        instance_id: &str,
        description: &str,
        tags: &[(String, String)],
    ) -> Result<Vec<Snapshot>> {
        let output = self
            .client
            .create_snapshots()
            .instance_specification(
                aws_sdk_ec2::types::InstanceSpecification::builder()
                    .instance_id(instance_id)
                    .exclude_boot_volume(false)
                    .build(),
            )
            .description(description)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Snapshot)
                    .set_tags(Some(sdk_tags(tags)))
                    .build(),
            )
            // Not the volumes' own tags: whoever holds the instance's credentials may have
            // written them, and a Cordon tag among them would steer restore.
            // One attempt: CreateSnapshots takes no idempotency token, so the SDK's retry of
            // a call whose answer was lost would snapshot every volume again. The measure
            // looks for this finding's snapshots before it tries again (evidence::preserve).
            .customize()
            .config_override(aws_sdk_ec2::config::Builder::default().retry_config(
                aws_sdk_ec2::config::retry::RetryConfig::standard().with_max_attempts(1),
            ))
            .send()
            .await
            .map_err(|e| sdk_error("CreateSnapshots", instance_id, e))?;
        Ok(output
            .snapshots()
            .iter()
            .map(|snapshot| Snapshot {
                snapshot_id: snapshot.snapshot_id().unwrap_or_default().to_string(),
                volume_id: snapshot.volume_id().unwrap_or_default().to_string(),
                tags: tags_of(snapshot.tags()),
            })
            .collect())
    }

    async fn set_delete_on_termination(
        &self,
        instance_id: &str,
        devices: &[(String, bool)],
    ) -> Result<()> {
        let mappings = devices
            .iter()
            .map(|(device, delete)| {
                aws_sdk_ec2::types::InstanceBlockDeviceMappingSpecification::builder()
                    .device_name(device)
                    .ebs(
                        aws_sdk_ec2::types::EbsInstanceBlockDeviceSpecification::builder()
                            .delete_on_termination(*delete)
                            .build(),
                    )
                    .build()
            })
            .collect();
        self.client
            .modify_instance_attribute()
            .instance_id(instance_id)
            .set_block_device_mappings(Some(mappings))
            .send()
            .await
            .map_err(|e| sdk_error("ModifyInstanceAttribute", instance_id, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// moto's STS hands out any role; AWS's refuses a role that is missing or does not trust
    /// the caller with AccessDenied, which must read as an account not enrolled.
    #[test]
    fn sts_refusing_the_member_role_means_the_account_is_not_enrolled() {
        let arn = "arn:aws:iam::444455556666:role/cordon-member";
        let refused = assume_role_error(
            "444455556666",
            arn,
            classify(
                "AssumeRole",
                arn,
                "AccessDenied",
                "User: ... is not authorized to perform: sts:AssumeRole",
            ),
        );
        assert_eq!(refused.error_name(), "Cordon.NotEnrolled");
        assert!(refused
            .to_string()
            .contains("account 444455556666 is not enrolled"));
        assert!(refused.to_string().contains(arn));
        // A throttled STS is no verdict on the account.
        let throttled = assume_role_error(
            "444455556666",
            arn,
            classify("AssumeRole", arn, "Throttling", "Rate exceeded"),
        );
        assert!(throttled.is_transient(), "{throttled:?}");
    }

    #[test]
    fn the_member_role_is_named_in_the_partition_of_cordons_region() {
        let arn = |region| {
            member_role_arn(
                crate::partition::of_region(region),
                "444455556666",
                "cordon-member",
            )
        };
        assert_eq!(
            arn("eu-west-1"),
            "arn:aws:iam::444455556666:role/cordon-member"
        );
        assert_eq!(
            arn("us-gov-west-1"),
            "arn:aws-us-gov:iam::444455556666:role/cordon-member"
        );
        assert_eq!(
            arn("cn-northwest-1"),
            "arn:aws-cn:iam::444455556666:role/cordon-member"
        );
    }

    #[test]
    fn ec2_error_codes_map_to_cordon_errors() {
        let name = |code| classify("Op", "i-00000001", code, "msg").error_name();
        assert_eq!(name("RequestLimitExceeded"), "Cordon.Throttled");
        assert_eq!(
            name("InvalidInstanceID.NotFound"),
            "Cordon.InstanceNotFound"
        );
        assert_eq!(
            name("InvalidNetworkInterfaceID.NotFound"),
            "Cordon.InterfaceNotFound"
        );
        assert_eq!(name("UnauthorizedOperation"), "Cordon.AccessDenied");
        assert_eq!(name("InvalidGroup.Duplicate"), "Cordon.GroupDuplicate");
        let other = classify("CreateTags", "i-00000001", "TagLimitExceeded", "too many");
        assert_eq!(other.error_name(), "Cordon.Ec2Error");
        assert!(other.to_string().contains("TagLimitExceeded"));
    }

    #[test]
    fn the_worst_call_of_either_retry_profile_fits_the_call_budget() {
        // Every attempt timing out, and the standard strategy's full jitter drawing the
        // longest wait before each retry (doubling from the first, capped at 20 s).
        let worst = |aws: &AwsContext| {
            let waits = (0..aws.max_attempts() - 1)
                .map(|k| (Duration::from_secs(1) * 2u32.pow(k)).min(Duration::from_secs(20)));
            EC2_ATTEMPT_TIMEOUT * aws.max_attempts() + waits.sum::<Duration>()
        };
        let urgent = AwsContext::from_sdk_config(SdkConfig::builder().build());
        let deferred = urgent.clone().deferring();
        assert_eq!(worst(&urgent), Duration::from_secs(40));
        assert_eq!(worst(&deferred), Duration::from_secs(40));
        assert!(worst(&urgent) <= EC2_CALL_BUDGET && worst(&deferred) <= EC2_CALL_BUDGET);
        // Deferred calls yield to throttling; the state machine's retrier paces the rest.
        assert!(deferred.yields_when_throttled() && !urgent.yields_when_throttled());
    }

    #[test]
    fn each_workers_calls_name_it_in_their_user_agent() {
        let context = AwsContext::from_sdk_config(SdkConfig::builder().build());
        let acting = context.clone().acting_as("isolate-sg");
        assert_eq!(
            acting.sdk_config().app_name().map(|n| n.to_string()),
            Some("cordon-isolate-sg".to_string())
        );
        // Not a valid app name: the user agent stays as it was, and the call is still made.
        assert!(context
            .acting_as("no spaces")
            .sdk_config()
            .app_name()
            .is_none());
    }

    #[test]
    fn a_throttling_answer_is_told_from_other_faults_by_its_code() {
        let ec2 = br#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r</RequestID></Response>"#;
        assert!(is_throttling_answer(ec2));
        let query = br#"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"#;
        assert!(is_throttling_answer(query));
        let json = br#"{"__type":"com.amazonaws.kms#ThrottlingException","message":"x"}"#;
        assert!(is_throttling_answer(json));
        let internal = br#"<Response><Errors><Error><Code>InternalError</Code><Message>Throttling is not this</Message></Error></Errors></Response>"#;
        assert!(!is_throttling_answer(internal));
        assert!(!is_throttling_answer(b""));
    }

    #[test]
    fn a_retried_capture_yields_to_throttling_and_a_first_one_retries_in_the_sdk() {
        use crate::capture::Pace;
        let context = AwsContext::from_sdk_config(SdkConfig::builder().build());
        assert!(!context.clone().paced(Pace::AtOnce).yields_when_throttled());
        assert!(context
            .clone()
            .paced(Pace::OneAfterAnother)
            .yields_when_throttled());
        // The pace follows the state machine's retry count, as the definition hands it.
        let input = |retry_count: serde_json::Value| serde_json::json!({"event": {}, "approval_timeout_seconds": "3600", "retry_count": retry_count});
        assert_eq!(Pace::of_input(&input(serde_json::json!(0))), Pace::AtOnce);
        assert_eq!(
            Pace::of_input(&input(serde_json::json!(3))),
            Pace::OneAfterAnother
        );
        assert_eq!(
            Pace::of_input(&serde_json::json!({"event": {}})),
            Pace::AtOnce
        );
    }
}
