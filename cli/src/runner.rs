//! The local runner: executes `statemachine/quarantine.asl.json` on moto's real ASL
//! interpreter. moto runs no Lambda code, so each worker task is rewritten into a
//! `lambda:invoke.waitForTaskToken` callback; the runner reads the token from the
//! `TaskScheduled` event, runs the Rust handler in process and answers with its output
//! (shaped as `lambda:invoke` shapes it) or its error name. Nothing else of the definition
//! changes. The approval page is served on 127.0.0.1.

use std::time::Duration;

use cordon_core::approval::{handle_get, handle_post, ApprovalPage, LinkKey, SignIn, Visit};
use cordon_core::aws::{AwsContext, MemberRole};
use cordon_core::config::Config;
use cordon_core::decision::{DecisionKey, RestoreGate};
use cordon_core::kms::AwsKms;
use cordon_core::measures::{auto_scaling, credentials, evidence, load_balancers};
use cordon_core::notify::{notify_step, ApprovalSettings, FindingFollow, NotifyInput};
use cordon_core::seal::RecordKey;
use cordon_core::steps::{
    approved_restore_step, block_step, isolate_attempt_step, unix_now, RestoreInput,
};
use cordon_core::CordonError;
use serde::Serialize;
use serde_json::{json, Value};

/// The definition, compiled in: `cordon run` executes exactly the deployed file.
pub const DEFINITION: &str = include_str!("../../statemachine/quarantine.asl.json");

const ACCOUNT: &str = "123456789012";
const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";
const LAMBDA_INVOKE_WAIT: &str = "arn:aws:states:::lambda:invoke.waitForTaskToken";

/// The clients one worker's invocation acts through.
struct Acting {
    aws: AwsContext,
    record_key: RecordKey<AwsKms>,
    ledger: cordon_core::lifecycle::aws::DynamoLedger,
    gate: RestoreGate<AwsKms>,
    approval_key: LinkKey<AwsKms>,
    sns: aws_sdk_sns::Client,
}

/// The worker a function ARN stands for (deployed names end with the worker's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worker {
    CaptureState,
    IsolateSg,
    BlockNacl,
    HoldAsg,
    CutCredentials,
    SnapshotVolumes,
    DeregisterTargets,
    Notify,
    Restore,
}

impl Worker {
    const ALL: [(Worker, &'static str, &'static str); 9] = [
        (
            Worker::CaptureState,
            "CaptureStateFunctionArn",
            "capture-state",
        ),
        (
            Worker::IsolateSg,
            "IsolateSecurityGroupsFunctionArn",
            "isolate-sg",
        ),
        (
            Worker::BlockNacl,
            "BlockNetworkAclFunctionArn",
            "block-nacl",
        ),
        (
            Worker::HoldAsg,
            "HoldAutoScalingGroupFunctionArn",
            "hold-asg",
        ),
        (
            Worker::CutCredentials,
            "CutCredentialsFunctionArn",
            "cut-credentials",
        ),
        (
            Worker::SnapshotVolumes,
            "SnapshotVolumesFunctionArn",
            "snapshot-volumes",
        ),
        (
            Worker::DeregisterTargets,
            "DeregisterTargetsFunctionArn",
            "deregister-targets",
        ),
        (Worker::Notify, "NotifyFunctionArn", "notify"),
        (Worker::Restore, "RestoreFunctionArn", "restore"),
    ];

    /// The worker's binary (and function) name.
    pub fn name(self) -> &'static str {
        Worker::ALL
            .iter()
            .find(|(worker, _, _)| *worker == self)
            .map(|(_, _, name)| *name)
            .expect("every worker is in ALL")
    }

    fn from_function(arn: &str) -> Option<Worker> {
        Worker::ALL
            .iter()
            .find(|(_, _, name)| arn.ends_with(&format!(":function:cordon-{name}")))
            .map(|(worker, _, _)| *worker)
    }
}

/// The definition with its `${...}` substitutions applied (as SAM applies them) and each
/// `lambda:invoke` task turned into a token callback the runner answers.
pub fn local_definition(
    definition: &str,
    region: &str,
    approval_timeout_seconds: u64,
    approvals_required: u8,
) -> Result<String, String> {
    let mut text = definition.to_string();
    for (_, variable, name) in Worker::ALL {
        text = text.replace(
            &format!("${{{variable}}}"),
            &format!("arn:aws:lambda:{region}:{ACCOUNT}:function:cordon-{name}"),
        );
    }
    text = text.replace(
        "${ApprovalTimeoutSeconds}",
        &approval_timeout_seconds.to_string(),
    );
    text = text.replace("${ApprovalsRequired}", &approvals_required.to_string());
    // The stack gives them in its partition; the emulator is in `aws`.
    text = text.replace("${LambdaInvokeWaitForTaskToken}", LAMBDA_INVOKE_WAIT);
    text = text.replace("${LambdaInvoke}", LAMBDA_INVOKE);
    if let Some(at) = text.find("${") {
        let rest: String = text[at..].chars().take(40).collect();
        return Err(format!(
            "the definition has a substitution the runner does not know: {rest}"
        ));
    }
    let mut definition: Value =
        serde_json::from_str(&text).map_err(|e| format!("the definition is not JSON: {e}"))?;
    rewrite_tasks(&mut definition);
    Ok(definition.to_string())
}

fn rewrite_tasks(machine: &mut Value) {
    let Some(states) = machine.get_mut("States").and_then(Value::as_object_mut) else {
        return;
    };
    for state in states.values_mut() {
        if let Some(branches) = state.get_mut("Branches").and_then(Value::as_array_mut) {
            branches.iter_mut().for_each(rewrite_tasks);
        }
        if state.get("Resource").and_then(Value::as_str) != Some(LAMBDA_INVOKE) {
            continue;
        }
        state["Resource"] = LAMBDA_INVOKE_WAIT.into();
        let parameters = state["Parameters"]
            .as_object_mut()
            .expect("lambda:invoke tasks have Parameters");
        let payload = match (parameters.remove("Payload.$"), parameters.remove("Payload")) {
            (Some(path), _) => json!({"token.$": "$$.Task.Token", "input.$": path}),
            (None, Some(object)) => json!({"token.$": "$$.Task.Token", "input": object}),
            (None, None) => json!({"token.$": "$$.Task.Token", "input.$": "$"}),
        };
        parameters.insert("Payload".into(), payload);
    }
}

/// How the run's approval is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionMode {
    /// Open the approve link from the email and press "Approve restore", as a person would.
    Approve,
    /// The same, pressing "Keep isolated".
    Reject,
    /// Nobody answers here: a person in a browser, or the approval timeout.
    Wait,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateVisit {
    pub name: String,
    /// Seconds since the execution started.
    pub at: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub execution_arn: String,
    pub status: String,
    pub states: Vec<String>,
    pub outcome: String,
    pub containment: Value,
    pub timeline: Vec<StateVisit>,
    /// The emails sent, in order: `{subject, body}`.
    pub messages: Vec<Value>,
    pub approval_url: Option<String>,
    pub output: Value,
}

const POLL_PAUSE: Duration = Duration::from_millis(100);

pub struct Runner {
    pub endpoint: String,
    aws: AwsContext,
    /// The role the workers act through in member accounts, if any.
    member_role: Option<MemberRole>,
    sfn: aws_sdk_sfn::Client,
    http: reqwest::Client,
    config: Config,
    approval_key: LinkKey<AwsKms>,
    /// What the restore step accepts: the page's decision key, the break-glass key and the
    /// number of approvers, as the deployed restore function has them.
    gate: RestoreGate<AwsKms>,
    /// The records' key, as the stack's `RecordKey`: capture seals with it and restore
    /// checks with it (`cordon restore --record-key` takes its id).
    pub record_key: RecordKey<AwsKms>,
    pub approval_url: String,
    /// The issuer the page signs analysts in at, if any.
    sign_in_at: Option<String>,
    topic_arn: String,
    region: String,
    /// How notify follows the finding in Security Hub and GuardDuty (the stack's defaults;
    /// moto has neither API, so each attempt reports why it was not done).
    following: cordon_core::lifecycle::status::Settings,
    /// Every worker's answer, in order, as the state machine received it.
    answers: std::sync::Mutex<Vec<(Worker, Value)>>,
    /// The EMF documents the workers emitted, in order (all executions).
    metrics: std::sync::Mutex<Vec<Value>>,
}

/// The release ledger's table on the emulator, as the stack names it.
pub const RELEASE_TABLE: &str = "cordon-releases";

fn sfn_error(operation: &str, error: impl std::fmt::Display) -> CordonError {
    CordonError::Unavailable {
        operation: operation.into(),
        message: error.to_string(),
    }
}

/// The release ledger's table, as the stack creates it (kept if it is there already: several
/// runners may share one emulator).
async fn create_release_table(sdk: &aws_config::SdkConfig) -> Result<(), CordonError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let created = aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(RELEASE_TABLE)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("finding_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("finding_id")
                .key_type(KeyType::Hash)
                .build()
                .expect("complete"),
        )
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(error)
            if aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&error)
                == Some("ResourceInUseException") =>
        {
            Ok(())
        }
        Err(error) => Err(sfn_error(
            "CreateTable",
            aws_sdk_dynamodb::error::DisplayErrorContext(&error),
        )),
    }
}

/// The token of a scheduled task: the one the runner's rewrite passes, or the approval
/// request's own.
fn task_token(parameters: &Value) -> String {
    let payload = &parameters["Payload"];
    payload
        .get("token")
        .or_else(|| payload.get("task_token"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Runner {
    /// Prepares moto at `endpoint` (it must execute state machines, so the setting goes in
    /// before anything is created), the SNS topic and the local approval page.
    pub async fn start(endpoint: &str, config: Config) -> Result<Runner, CordonError> {
        Self::start_with_sign_in(endpoint, config, None).await
    }

    /// As [`Runner::start`], with the approval page behind sign-in at an OpenID Connect
    /// provider, as the stack's `OidcIssuer` makes it.
    pub async fn start_with_sign_in(
        endpoint: &str,
        mut config: Config,
        sign_in: Option<SignIn>,
    ) -> Result<Runner, CordonError> {
        let http = reqwest::Client::new();
        let setting = json!({"stepfunctions": {"execute_state_machine": true}, "lambda": {"use_docker": false}});
        http.post(format!("{endpoint}/moto-api/config"))
            .body(setting.to_string())
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| {
                CordonError::InvalidConfiguration(format!(
                    "{endpoint} is not a moto server that accepts /moto-api/config: {e}"
                ))
            })?;
        let sdk = crate::local::emulator_config(endpoint);
        let region = crate::local::REGION.to_string();
        let sns = aws_sdk_sns::Client::new(&sdk);
        let topic = sns
            .create_topic()
            .name("cordon-alerts")
            .send()
            .await
            .map_err(|e| sfn_error("CreateTopic", aws_sdk_sns::error::DisplayErrorContext(&e)))?;
        let topic_arn = topic.topic_arn().unwrap_or_default().to_string();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("email")
            .endpoint("security-team@example.com")
            .send()
            .await
            .map_err(|e| sfn_error("Subscribe", aws_sdk_sns::error::DisplayErrorContext(&e)))?;
        create_release_table(&sdk).await?;
        config.release_table = Some(RELEASE_TABLE.into());
        let sfn = aws_sdk_sfn::Client::new(&sdk);
        let approval_key = LinkKey {
            kms: AwsKms::new(&sdk),
            key_id: crate::local::create_stack_key(&sdk, "LinkKey").await?,
        };
        let decision_key = DecisionKey {
            kms: AwsKms::new(&sdk),
            key_id: crate::local::create_stack_key(&sdk, "DecisionKey").await?,
        };
        let break_glass_key = DecisionKey {
            kms: AwsKms::new(&sdk),
            key_id: crate::local::create_stack_key(&sdk, "BreakGlassKey").await?,
        };
        let record_key = RecordKey {
            kms: AwsKms::new(&sdk),
            key_id: crate::local::create_stack_key(&sdk, "RecordKey").await?,
        };
        let sign_in_at = sign_in.as_ref().map(|s| s.issuer.clone());
        // The approval page's calls as the approval function's.
        let approval_sdk = AwsContext::from_sdk_config(sdk.clone())
            .acting_as("approval")
            .sdk_config()
            .clone();
        let approval_url = serve_approval(
            aws_sdk_sfn::Client::new(&approval_sdk),
            LinkKey {
                kms: AwsKms::new(&approval_sdk),
                key_id: approval_key.key_id.clone(),
            },
            DecisionKey {
                kms: AwsKms::new(&approval_sdk),
                key_id: decision_key.key_id.clone(),
            },
            sign_in,
        )
        .await?;
        // As the stack's notify: a report-only run leaves the finding alone.
        let following = cordon_core::lifecycle::status::Settings {
            report_only: config.mode == cordon_core::config::Mode::ReportOnly,
            ..Default::default()
        };
        Ok(Runner {
            endpoint: endpoint.to_string(),
            aws: AwsContext::from_sdk_config(sdk),
            member_role: MemberRole::from_env(),
            sfn,
            http,
            config,
            approval_key,
            gate: RestoreGate {
                page: decision_key,
                break_glass: Some(break_glass_key),
                approvals_required: 1,
            },
            record_key,
            approval_url,
            sign_in_at,
            topic_arn,
            region,
            following,
            answers: Default::default(),
            metrics: Default::default(),
        })
    }

    /// Follows findings in Security Hub and GuardDuty as `settings` say, for the executions
    /// started from now on.
    pub fn with_finding_follow(
        mut self,
        settings: cordon_core::lifecycle::status::Settings,
    ) -> Self {
        self.following = settings;
        self
    }

    /// Acts in member accounts through `role`, as the stack's workers do with
    /// `CORDON_MEMBER_ROLE_NAME` (which [`Runner::start`] reads).
    pub fn with_member_role(mut self, role: MemberRole) -> Self {
        self.member_role = Some(role);
        self
    }

    /// The two-person rule (`ApprovalsRequired: 2`) for the executions started from now on:
    /// the definition asks a second approver, and the restore step requires two.
    pub fn with_approvals_required(mut self, approvals_required: u8) -> Self {
        self.gate.approvals_required = approvals_required;
        self
    }

    /// Runs one execution for `event` to its end.
    pub async fn run(
        &self,
        event: &Value,
        decision: DecisionMode,
        approval_timeout_seconds: u64,
    ) -> Result<RunReport, CordonError> {
        let execution_arn = self
            .start_execution(event, approval_timeout_seconds)
            .await?;
        self.follow(&execution_arn, decision).await
    }

    /// A state machine of the definition as the stack deploys it (with this approval
    /// timeout), whose tasks this runner answers; its ARN.
    pub async fn state_machine(
        &self,
        approval_timeout_seconds: u64,
    ) -> Result<String, CordonError> {
        let definition = local_definition(
            DEFINITION,
            &self.region,
            approval_timeout_seconds,
            self.gate.approvals_required,
        )
        .map_err(CordonError::InvalidConfiguration)?;
        let machine = self
            .sfn
            .create_state_machine()
            .name(format!("cordon-quarantine-{}", unique_suffix()))
            .definition(definition)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/cordon-state-machine"))
            .send()
            .await
            .map_err(|e| {
                sfn_error(
                    "CreateStateMachine",
                    aws_sdk_sfn::error::DisplayErrorContext(&e),
                )
            })?;
        Ok(machine.state_machine_arn().to_string())
    }

    /// Starts one execution for `event` (on its own state machine) and returns its ARN.
    pub async fn start_execution(
        &self,
        event: &Value,
        approval_timeout_seconds: u64,
    ) -> Result<String, CordonError> {
        let machine = self.state_machine(approval_timeout_seconds).await?;
        let finding_id = event
            .pointer("/detail/id")
            .or_else(|| event.get("id"))
            .and_then(Value::as_str)
            .unwrap_or("finding");
        let name: String = format!("{}-{}", finding_id, unique_suffix())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(80)
            .collect();
        let started = self
            .sfn
            .start_execution()
            .state_machine_arn(machine)
            .name(name)
            .input(event.to_string())
            .send()
            .await
            .map_err(|e| {
                sfn_error(
                    "StartExecution",
                    aws_sdk_sfn::error::DisplayErrorContext(&e),
                )
            })?;
        Ok(started.execution_arn().to_string())
    }

    /// Runs the execution's tasks as they are scheduled, answers its approval request as
    /// `decision` says, and reports once it ends. Several executions may be followed at once:
    /// each reads only its own emails (every Cordon email names its execution).
    pub async fn follow(
        &self,
        execution_arn: &str,
        decision: DecisionMode,
    ) -> Result<RunReport, CordonError> {
        let mut execution_start = None;
        let mut seen = 0_i64;
        let mut timeline = Vec::new();
        let mut containment = Value::Null;
        let mut approval_url = None;
        // Reading the emails means reading all of moto's state: only once one was sent.
        let mut approval_requested = false;
        let mut answered = std::collections::HashSet::new();
        loop {
            let history = self.history(execution_arn).await?;
            let mut finished = false;
            let last_seen = seen;
            for event in history.iter().filter(|e| e.id() > last_seen) {
                seen = event.id();
                let kind = event.r#type().as_str().to_string();
                // Times are the interpreter's own event times, not when we polled them.
                let when = event.timestamp().as_secs_f64();
                let start = *execution_start.get_or_insert(when);
                if let Some(entered) = event.state_entered_event_details() {
                    let at = when - start;
                    eprintln!("cordon run: {:>7.2}s  {}", at, entered.name());
                    timeline.push(StateVisit {
                        name: entered.name().to_string(),
                        at,
                    });
                }
                if let Some(exited) = event.state_exited_event_details() {
                    if exited.name() == "Contain" {
                        if let Some(output) = exited
                            .output()
                            .and_then(|o| serde_json::from_str::<Value>(o).ok())
                        {
                            containment = output["containment"].clone();
                        }
                    }
                }
                if let Some(scheduled) = event.task_scheduled_event_details() {
                    let parameters: Value =
                        serde_json::from_str(scheduled.parameters()).unwrap_or(Value::Null);
                    // One task at a time, polled every 100 ms: answering the Parallel state's
                    // branches at once with a 50 ms poll made the benchmark's burst no
                    // faster. (Its InvalidToken refusals after a retried task were moto
                    // reusing the token, which scripts/moto_server.py now mends.)
                    let token = task_token(&parameters);
                    if !answered.insert(token.clone()) {
                        // A retry must be a new attempt with a token of its own (see
                        // scripts/moto_server.py); this emulator handed the retry the
                        // earlier answer, and would refuse a second one.
                        eprintln!(
                            "cordon run: warning: the emulator retried a task under the token it already used, so every retry takes the first answer; start moto with scripts/moto-server (as `cordon demo` and the tests do), which gives each attempt its own token"
                        );
                        continue;
                    }
                    self.answer(&parameters, &token).await?;
                    approval_requested |= parameters["Payload"]["kind"] == "approval_request";
                }
                finished |= kind.starts_with("Execution") && kind != "ExecutionStarted";
            }
            if finished {
                break;
            }
            // Until the approval email arrives: look for it, and answer it as asked.
            if approval_requested && approval_url.is_none() {
                if let Some((approve, reject)) = self.approval_links(execution_arn).await? {
                    let url = match decision {
                        DecisionMode::Reject => reject,
                        DecisionMode::Approve | DecisionMode::Wait => approve,
                    };
                    if decision != DecisionMode::Wait {
                        self.decide_as_a_person(&url).await?;
                    }
                    approval_url = Some(url);
                }
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
        let described = self
            .sfn
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|e| {
                sfn_error(
                    "DescribeExecution",
                    aws_sdk_sfn::error::DisplayErrorContext(&e),
                )
            })?;
        let status = described.status().as_str().to_string();
        let output: Value = described
            .output()
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or(Value::Null);
        let states: Vec<String> = timeline.iter().map(|v| v.name.clone()).collect();
        let outcome = outcome(&status, &states, &containment);
        Ok(RunReport {
            execution_arn: execution_arn.to_string(),
            status,
            states,
            outcome,
            containment,
            timeline,
            messages: self
                .messages_of(execution_arn)
                .await?
                .into_iter()
                .map(|(subject, body)| json!({"subject": subject, "body": body}))
                .collect(),
            approval_url,
            output,
        })
    }

    async fn history(
        &self,
        execution_arn: &str,
    ) -> Result<Vec<aws_sdk_sfn::types::HistoryEvent>, CordonError> {
        let mut events = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .sfn
                .get_execution_history()
                .execution_arn(execution_arn)
                .include_execution_data(true)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| {
                    sfn_error(
                        "GetExecutionHistory",
                        aws_sdk_sfn::error::DisplayErrorContext(&e),
                    )
                })?;
            events.extend(page.events().iter().cloned());
            token = page.next_token().map(String::from);
            if token.is_none() {
                return Ok(events);
            }
        }
    }

    /// Runs the scheduled task's handler in process and answers its token.
    async fn answer(&self, parameters: &Value, token: &str) -> Result<(), CordonError> {
        let function = parameters["FunctionName"].as_str().unwrap_or_default();
        let Some(worker) = Worker::from_function(function) else {
            return Err(CordonError::InvalidConfiguration(format!(
                "the definition calls {function}, which is no Cordon worker"
            )));
        };
        let payload = &parameters["Payload"];
        // Rewritten tasks carry {token, input}; the approval request carries its own token,
        // which only the approval page answers.
        let (input, answer_success) = match payload.get("token") {
            Some(_) => (payload["input"].clone(), true),
            None => (payload.clone(), false),
        };
        let (invoked, calls) =
            cordon_core::metrics::counting(Box::pin(self.invoke(worker, &input))).await;
        if let Ok(output) = &invoked {
            self.answers.lock().unwrap().push((worker, output.clone()));
        }
        // The metrics the worker would print in Lambda, from the same function.
        let now = chrono::Utc::now();
        let emitted = cordon_core::metrics::of_invocation(
            worker.name(),
            &input,
            invoked.as_ref().ok(),
            calls,
            now,
        );
        self.metrics
            .lock()
            .unwrap()
            .extend(emitted.iter().map(|emission| emission.document(now)));
        match invoked {
            Ok(output) if answer_success => {
                let shaped =
                    json!({"Payload": output, "StatusCode": 200, "ExecutedVersion": "$LATEST"});
                self.sfn
                    .send_task_success()
                    .task_token(token)
                    .output(shaped.to_string())
                    .send()
                    .await
                    .map_err(|e| {
                        sfn_error(
                            "SendTaskSuccess",
                            aws_sdk_sfn::error::DisplayErrorContext(&e),
                        )
                    })?;
            }
            Ok(_) => {}
            Err(error) => {
                eprintln!(
                    "cordon run:           {:?} failed: {}: {error}",
                    worker,
                    error.error_name()
                );
                self.sfn
                    .send_task_failure()
                    .task_token(token)
                    .error(error.error_name())
                    .cause(error.to_string())
                    .send()
                    .await
                    .map_err(|e| {
                        sfn_error(
                            "SendTaskFailure",
                            aws_sdk_sfn::error::DisplayErrorContext(&e),
                        )
                    })?;
            }
        }
        Ok(())
    }

    /// The runner's clients as `worker`'s own: each call names the worker in its user agent,
    /// as the deployed function's do, so that the calls of a run can be told apart by the
    /// step that made them (the IAM test judges each against that step's role).
    fn acting_as(&self, worker: Worker) -> Acting {
        // As notify's binary: in a member account its session may only update Security Hub.
        let member_role = match worker {
            Worker::Notify => self
                .member_role
                .clone()
                .map(|role| role.limited_to(cordon_core::lifecycle::status::MEMBER_SESSION_POLICY)),
            _ => self.member_role.clone(),
        };
        let aws = self
            .aws
            .clone()
            .acting_as(worker.name())
            .with_member_role(member_role);
        let sdk = aws.sdk_config().clone();
        let decision_key = |key: &DecisionKey<AwsKms>| DecisionKey {
            kms: AwsKms::new(&sdk),
            key_id: key.key_id.clone(),
        };
        Acting {
            record_key: RecordKey {
                kms: AwsKms::new(&sdk),
                key_id: self.record_key.key_id.clone(),
            },
            ledger: cordon_core::lifecycle::aws::DynamoLedger::new(&sdk, RELEASE_TABLE),
            gate: RestoreGate {
                page: decision_key(&self.gate.page),
                break_glass: self.gate.break_glass.as_ref().map(decision_key),
                approvals_required: self.gate.approvals_required,
            },
            approval_key: LinkKey {
                kms: AwsKms::new(&sdk),
                key_id: self.approval_key.key_id.clone(),
            },
            sns: aws_sdk_sns::Client::new(&sdk),
            aws,
        }
    }

    async fn invoke(&self, worker: Worker, input: &Value) -> Result<Value, CordonError> {
        let acting = self.acting_as(worker);
        let ec2 = &acting.aws;
        fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, CordonError> {
            serde_json::from_value(value.clone())
                .map_err(|e| CordonError::InvalidInput(e.to_string()))
        }
        Ok(match worker {
            Worker::CaptureState => serde_json::to_value({
                // As capture-state's binary: a retried capture makes each call once.
                let paced = ec2
                    .clone()
                    .paced(cordon_core::capture::Pace::of_input(input));
                Box::pin(cordon_core::lifecycle::capture_step(
                    &paced,
                    &paced,
                    Some(&acting.ledger),
                    &self.config,
                    &acting.record_key,
                    input,
                ))
                .await?
            }),
            Worker::IsolateSg => {
                // As isolate-sg's binary: only the swaps off the conversion group press on.
                let ec2 = ec2.clone().deferring();
                serde_json::to_value(
                    isolate_attempt_step(&ec2, &self.config, &typed(input)?).await?,
                )
            }
            Worker::BlockNacl => {
                // As block-nacl's binary: a retried attempt yields to isolation.
                let attempt: cordon_core::steps::StepAttempt = typed(input)?;
                let ec2 = match attempt.is_retry() {
                    true => ec2.clone().deferring(),
                    false => ec2.clone(),
                };
                serde_json::to_value(
                    block_step(&ec2, &self.config, &acting.record_key, &attempt.capture).await?,
                )
            }
            Worker::HoldAsg => serde_json::to_value(
                auto_scaling::hold_step(ec2, ec2, self.config.auto_scaling, &typed(input)?).await?,
            ),
            Worker::CutCredentials => serde_json::to_value(
                Box::pin(credentials::cut_step(ec2, ec2, &typed(input)?)).await?,
            ),
            Worker::SnapshotVolumes => serde_json::to_value(
                Box::pin(evidence::preserve_step(
                    ec2,
                    self.config.evidence,
                    &typed(input)?,
                ))
                .await?,
            ),
            Worker::DeregisterTargets => serde_json::to_value(
                Box::pin(load_balancers::deregister_step(
                    ec2,
                    ec2,
                    ec2,
                    &acting.record_key,
                    &typed(input)?,
                ))
                .await?,
            ),
            Worker::Restore => {
                let input: RestoreInput = typed(input)?;
                serde_json::to_value(
                    Box::pin(approved_restore_step(
                        ec2,
                        ec2,
                        ec2,
                        ec2,
                        Some(&acting.ledger),
                        &acting.gate,
                        &acting.record_key,
                        &input,
                    ))
                    .await?,
                )
            }
            Worker::Notify => {
                let input: NotifyInput = typed(input)?;
                let timeout = input
                    .state
                    .get("approval_timeout_seconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let settings = ApprovalSettings {
                    base_url: self.approval_url.clone(),
                    key: &acting.approval_key,
                    timeout_seconds: timeout,
                    sign_in_at: self.sign_in_at.clone(),
                };
                let follow = FindingFollow {
                    security_hub: ec2,
                    guard_duty: ec2,
                    ledger: Some(&acting.ledger),
                    settings: self.following,
                };
                serde_json::to_value(
                    Box::pin(notify_step(
                        &acting.sns,
                        &self.topic_arn,
                        &settings,
                        follow,
                        &input,
                        unix_now(),
                    ))
                    .await?,
                )
            }
        }
        .expect("worker outputs serialise"))
    }

    /// What `worker` answered, each time it succeeded, in order (all executions).
    pub fn answers_of(&self, worker: Worker) -> Vec<Value> {
        let answers = self.answers.lock().unwrap();
        answers
            .iter()
            .filter(|(from, _)| *from == worker)
            .map(|(_, output)| output.clone())
            .collect()
    }

    /// The EMF documents the workers emitted (each a log line in Lambda), in order.
    pub fn metrics(&self) -> Vec<Value> {
        self.metrics.lock().unwrap().clone()
    }

    /// Every message published to the topic, as moto recorded it: (subject, body).
    pub async fn messages(&self) -> Result<Vec<(String, String)>, CordonError> {
        // moto serialises all its data for this page and sometimes answers 500 while EC2
        // changes underneath (a race inside moto): a few tries, then the error.
        let mut tries = 0;
        let text = loop {
            let read = async {
                self.http
                    .get(format!("{}/moto-api/data.json", self.endpoint))
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await
            };
            match read.await {
                Ok(text) => break text,
                Err(_) if tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(sfn_error("moto data", e)),
            }
        };
        let data: Value = serde_json::from_str(&text).map_err(|e| sfn_error("moto data", e))?;
        Ok(sent_messages(&data, &self.topic_arn))
    }

    /// The emails about one execution: (subject, body).
    pub async fn messages_of(
        &self,
        execution_arn: &str,
    ) -> Result<Vec<(String, String)>, CordonError> {
        let mut messages = self.messages().await?;
        messages.retain(|(_, body)| body.contains(execution_arn));
        Ok(messages)
    }

    /// The key the local approval page seals decisions with (the deployed approval function's
    /// `DecisionKey`), for tests that call the page as that function does.
    pub fn decision_key(&self) -> &DecisionKey<AwsKms> {
        &self.gate.page
    }

    /// The key the approval links are signed with (the stack's `LinkKey`).
    pub fn link_key(&self) -> &LinkKey<AwsKms> {
        &self.approval_key
    }

    /// The key `cordon approve|reject` seals with here (the stack's `BreakGlassKey`).
    pub fn break_glass_key(&self) -> &DecisionKey<AwsKms> {
        self.gate
            .break_glass
            .as_ref()
            .expect("the local runner always has a break-glass key")
    }

    /// The (approve, keep isolated) links of the execution's latest approval request email.
    pub async fn approval_links(
        &self,
        execution_arn: &str,
    ) -> Result<Option<(String, String)>, CordonError> {
        Ok(self
            .messages_of(execution_arn)
            .await?
            .iter()
            .rev()
            .find_map(|(_, body)| approval_links_in(body)))
    }

    /// Opens the link (GET, the page) and presses its button (POST the page's form).
    pub async fn decide_as_a_person(&self, url: &str) -> Result<(), CordonError> {
        let page = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| sfn_error("approval page", e))?;
        if !page.status().is_success() {
            return Err(CordonError::InvalidInput(format!(
                "the approval page answered {}",
                page.status()
            )));
        }
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let form = format!("{query}&approver=cordon+run");
        let posted = self
            .http
            .post(url.split('?').next().unwrap_or(url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| sfn_error("approval page", e))?;
        if !posted.status().is_success() {
            return Err(CordonError::InvalidInput(format!(
                "the approval page refused the decision: {}",
                posted.status()
            )));
        }
        Ok(())
    }
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos % 0xffff_ffff_ffff)
}

/// moto's `/moto-api/data.json` lists each topic's `sent_notifications` as
/// `[message_id, message, subject, attributes, group_id]`.
pub fn sent_messages(data: &Value, topic_arn: &str) -> Vec<(String, String)> {
    data.pointer("/sns/Topic")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|topic| topic["arn"] == topic_arn)
        .flat_map(|topic| {
            topic["sent_notifications"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|sent| {
            (
                sent[2].as_str().unwrap_or_default().to_string(),
                sent[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The approve and keep-isolated links of an approval email, in that order.
pub fn approval_links_in(body: &str) -> Option<(String, String)> {
    let links: Vec<&str> = body
        .split_whitespace()
        .filter(|w| w.starts_with("http") && w.contains("a="))
        .collect();
    let approve = links.iter().find(|l| l.contains("a=approve"))?;
    let reject = links.iter().find(|l| l.contains("a=reject"))?;
    Some((approve.to_string(), reject.to_string()))
}

/// The run's outcome, in order of precedence.
pub fn outcome(status: &str, states: &[String], containment: &Value) -> String {
    let reached = |name: &str| states.iter().any(|s| s == name);
    let partial = ["isolation", "nacl"].iter().any(|branch| {
        let result = &containment[*branch];
        result["status"] != "done" || result["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    if status != "SUCCEEDED" || reached("NotifyFailed") {
        "failed"
    } else if reached("Skipped") {
        "skipped"
    } else if reached("AlreadyQuarantined") {
        "already_quarantined"
    } else if reached("ReportedOnly") {
        "report_only"
    } else if reached("Restored") {
        "restored"
    } else if reached("RestoreOutcome") {
        // A restore was asked for by a decision the approval page did not seal.
        "decision_refused"
    } else if partial {
        "partial"
    } else {
        "kept_isolated"
    }
    .to_string()
}

/// What the local approval page works with, as the approval function has it.
struct LocalPage {
    sfn: aws_sdk_sfn::Client,
    key: LinkKey<AwsKms>,
    decisions: DecisionKey<AwsKms>,
    sign_in: Option<SignIn>,
    page_url: String,
}

impl LocalPage {
    fn approval(&self) -> ApprovalPage<'_, AwsKms, AwsKms> {
        ApprovalPage {
            sfn: &self.sfn,
            key: &self.key,
            decisions: &self.decisions,
            sign_in: self.sign_in.as_ref(),
        }
    }
}

async fn serve_approval(
    sfn: aws_sdk_sfn::Client,
    key: LinkKey<AwsKms>,
    decisions: DecisionKey<AwsKms>,
    sign_in: Option<SignIn>,
) -> Result<String, CordonError> {
    use axum::extract::RawQuery;
    use axum::http::StatusCode;
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| {
            CordonError::InvalidConfiguration(format!(
                "cannot serve the approval page on 127.0.0.1: {e}"
            ))
        })?;
    let address = listener
        .local_addr()
        .map_err(|e| CordonError::InvalidConfiguration(e.to_string()))?;
    let page_url = format!("http://{address}/approval");
    let state = std::sync::Arc::new(LocalPage {
        sfn,
        key,
        decisions,
        sign_in,
        page_url: page_url.clone(),
    });
    let get_state = state.clone();
    // The same headers as the deployed function's, so the browser test checks them.
    let page = |reply: cordon_core::approval::Reply| {
        let mut headers = axum::http::HeaderMap::new();
        for (name, value) in cordon_core::approval::response_headers()
            .into_iter()
            .chain(reply.headers)
        {
            if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                headers.append(name, value);
            }
        }
        (
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
            headers,
            reply.html,
        )
    };
    let app = axum::Router::new().route(
        "/approval",
        get(
            move |RawQuery(query): RawQuery, headers: axum::http::HeaderMap| {
                let state = get_state.clone();
                async move {
                    let query = query.unwrap_or_default();
                    let visit = Visit {
                        query: &query,
                        cookie: headers.get("cookie").and_then(|v| v.to_str().ok()),
                        page_url: &state.page_url,
                    };
                    page(handle_get(&state.approval(), &visit, unix_now()).await)
                }
            },
        )
        .post(move |body: axum::body::Bytes| {
            let state = state.clone();
            async move { page(handle_post(&state.approval(), &body, unix_now()).await) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(page_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_worker_tasks_change_and_every_substitution_is_applied() {
        let local: Value =
            serde_json::from_str(&local_definition(DEFINITION, "us-east-1", 60, 1).unwrap())
                .unwrap();
        let original: Value = serde_json::from_str(DEFINITION).unwrap();
        let capture = &local["States"]["CaptureState"];
        assert_eq!(capture["Resource"], LAMBDA_INVOKE_WAIT);
        assert_eq!(
            capture["Parameters"]["FunctionName"],
            "arn:aws:lambda:us-east-1:123456789012:function:cordon-capture-state"
        );
        assert_eq!(capture["Parameters"]["Payload"]["token.$"], "$$.Task.Token");
        assert_eq!(
            capture["Parameters"]["Payload"]["input"]["approval_timeout_seconds"],
            "60"
        );
        let isolate = &local["States"]["Contain"]["Branches"][0]["States"]["IsolateSecurityGroups"];
        assert_eq!(isolate["Parameters"]["Payload"]["input"]["capture.$"], "$");
        // The approval request is already a callback: untouched but for its function ARN.
        let approval = &local["States"]["RequestApproval"];
        assert_eq!(approval["Resource"], LAMBDA_INVOKE_WAIT);
        assert_eq!(
            approval["Parameters"]["Payload"],
            original["States"]["RequestApproval"]["Parameters"]["Payload"]
        );
        // Everything that is not a worker task is the same.
        for name in [
            "ShouldContain",
            "Decision",
            "ContainmentOutcome",
            "Failed",
            "Skipped",
        ] {
            assert_eq!(local["States"][name], original["States"][name], "{name}");
        }
        assert_eq!(
            local["States"]["Restore"]["ResultSelector"],
            original["States"]["Restore"]["ResultSelector"]
        );
        assert!(!local.to_string().contains("${"));
    }

    #[test]
    fn outcomes_follow_the_path_taken() {
        let done = json!({"isolation": {"status": "done", "errors": []}, "nacl": {"status": "done", "errors": []}});
        let partial = json!({"isolation": {"status": "done", "errors": []}, "nacl": {"status": "partial", "errors": [{"error": "x"}]}});
        let path = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            outcome(
                "SUCCEEDED",
                &path(&[
                    "CaptureState",
                    "Restore",
                    "RestoreOutcome",
                    "NotifyRestored",
                    "Restored"
                ]),
                &done
            ),
            "restored"
        );
        assert_eq!(
            outcome(
                "SUCCEEDED",
                &path(&["NotifyKeptIsolated", "KeptIsolated"]),
                &done
            ),
            "kept_isolated"
        );
        assert_eq!(
            outcome(
                "SUCCEEDED",
                &path(&["NotifyKeptIsolated", "KeptIsolated"]),
                &partial
            ),
            "partial"
        );
        assert_eq!(
            outcome(
                "SUCCEEDED",
                &path(&["CaptureState", "ShouldContain", "Skipped"]),
                &Value::Null
            ),
            "skipped"
        );
        assert_eq!(
            outcome("SUCCEEDED", &path(&["AlreadyQuarantined"]), &Value::Null),
            "already_quarantined"
        );
        assert_eq!(
            outcome("FAILED", &path(&["NotifyFailed", "Failed"]), &done),
            "failed"
        );
        // Nothing was contained, and that is what was asked for: not "partial".
        let planned = json!({"isolation": {"status": "report_only", "errors": []}, "nacl": {"status": "report_only", "errors": []}});
        assert_eq!(
            outcome(
                "SUCCEEDED",
                &path(&["ContainmentOutcome", "NotifyReportOnly", "ReportedOnly"]),
                &planned
            ),
            "report_only"
        );
    }

    #[test]
    fn links_and_messages_are_read_as_moto_records_them() {
        let data = json!({"sns": {"Topic": [{"arn": "arn:t", "sent_notifications": [
            ["id-1", "Approve restore:\n  http://127.0.0.1:1/approval?a=approve&e=1\n\nKeep isolated:\n  http://127.0.0.1:1/approval?a=reject&e=1\n", "Cordon: i-1 isolated", {}, null]
        ]}, {"arn": "arn:other", "sent_notifications": [["id-2", "x", "other", {}, null]]}]}});
        let messages = sent_messages(&data, "arn:t");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].0, "Cordon: i-1 isolated");
        let (approve, reject) = approval_links_in(&messages[0].1).unwrap();
        assert!(approve.ends_with("a=approve&e=1") && reject.ends_with("a=reject&e=1"));
    }
}
