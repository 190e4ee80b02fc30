//! custom-action: the Security Hub custom action "Cordon: contain". Starts one quarantine
//! execution per GuardDuty finding the analyst selected, from GuardDuty's own record of it.

use cordon_core::aws::{AwsContext, AwsTarget};
use cordon_core::custom_action::{self, AwsExecutions};
use cordon_core::lifecycle::status::port::GuardDutyProvider;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let machine = std::env::var("CORDON_STATE_MACHINE_ARN").unwrap_or_default();
    let (account, region) = custom_action::stack_of(&machine)?;
    let aws = AwsContext::load(&AwsTarget::default())
        .await
        .acting_as("custom-action");
    let executions = AwsExecutions::new(&aws, machine);
    run(service_fn(|event: LambdaEvent<Value>| {
        let (aws, executions, account, region) = (
            aws.until(event.context.deadline),
            &executions,
            &account,
            &region,
        );
        async move {
            let guard_duty = aws.guard_duty_in(Some(region)).await?;
            let outcomes = cordon_core::metrics::measured(
                "custom-action",
                &event.payload,
                Box::pin(custom_action::start_selected(
                    &guard_duty,
                    executions,
                    &event.payload,
                    account,
                    region,
                )),
            )
            .await?;
            for outcome in &outcomes {
                tracing::info!(finding = %outcome.finding, outcome = outcome.outcome, execution = ?outcome.execution, reason = ?outcome.reason, "custom action");
            }
            // A finding AWS did not answer for fails the invocation: Lambda retries the event
            // (what started is not started twice), then puts it in the dead-letter queue.
            if let Some(error) = custom_action::retry_needed(&outcomes) {
                return Err(error);
            }
            Ok::<_, cordon_core::CordonError>(json!({ "findings": outcomes }))
        }
    }))
    .await
}
