//! capture-state: reads the GuardDuty event, applies the trigger policy and the release
//! ledger, and records the instance's original network state (output and `cordon:state:*`
//! tags).

use cordon_core::lifecycle::{self, aws::DynamoLedger};
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let (config, aws) = cordon_core::aws::worker_context("capture-state").await?;
    // The key that seals the record kept in tags, in the stack's own account and region.
    let seal = cordon_core::seal::record_key_from(
        |name| std::env::var(name).ok(),
        cordon_core::kms::AwsKms::new(aws.sdk_config()),
    )?;
    // The ledger is in the stack's own account and region, whatever account the instance is in.
    let ledger = config
        .release_table
        .as_deref()
        .map(|table| DynamoLedger::new(aws.sdk_config(), table));
    run(service_fn(|event: LambdaEvent<Value>| {
        // Its clients know when this invocation ends: no EC2 work is started that the
        // function's timeout would cut in two.
        // A retried capture makes each EC2 call once: the definition's backoff paces it.
        let pace = cordon_core::capture::Pace::of_input(&event.payload);
        let aws = aws.until(event.context.deadline).paced(pace);
        let (config, ledger, seal) = (&config, &ledger, &seal);
        async move {
            let output = cordon_core::metrics::measured("capture-state", &event.payload, Box::pin(lifecycle::capture_step(
                &aws,
                &aws,
                ledger.as_ref(),
                config,
                seal,
                &event.payload,
            )))
            .await?;
            tracing::info!(instance = ?output.instance_id, status = ?output.status, reason = %output.reason, "capture");
            Ok::<_, cordon_core::CordonError>(output)
        }
    }))
    .await
}
