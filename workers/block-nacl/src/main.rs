//! block-nacl: denies the finding's remote addresses on the instance's own subnets' network
//! ACLs and the instance's addresses on the VPC's other subnets' ACLs. Its input is the
//! capture and the step's retry count: a retried attempt yields to isolation when EC2
//! throttles.

use cordon_core::steps::{self, StepAttempt};
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let (config, aws) = cordon_core::aws::worker_context("block-nacl").await?;
    // The key that seals its records on the ACLs, in the stack's own account and region.
    let seal = cordon_core::seal::record_key_from(
        |name| std::env::var(name).ok(),
        cordon_core::kms::AwsKms::new(aws.sdk_config()),
    )?;
    run(service_fn(|event: LambdaEvent<StepAttempt>| {
        // Its clients know when this invocation ends: no EC2 work is started that the
        // function's timeout would cut in two. A retried attempt's throttled calls end it.
        let aws = aws.until(event.context.deadline);
        let (aws, config, seal) = match event.payload.is_retry() {
            true => (aws.deferring(), &config, &seal),
            false => (aws, &config, &seal),
        };
        async move {
            let report = cordon_core::metrics::measured("block-nacl", &event.payload, Box::pin(steps::block_step(&aws, config, seal, &event.payload.capture))).await?;
            tracing::info!(instance = %report.instance_id, status = ?report.status, entries = report.nacl_entries.len(), "block");
            Ok::<_, cordon_core::CordonError>(report)
        }
    }))
    .await
}
