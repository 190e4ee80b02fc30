//! block-nacl: denies the finding's remote addresses on the instance's own subnets' network
//! ACLs and the instance's addresses on the VPC's other subnets' ACLs.

use cordon_core::capture::CaptureOutput;
use cordon_core::steps;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let (config, aws) = cordon_core::aws::worker_context().await?;
    // The ACL bookkeeping waits while isolation goes first when EC2 throttles the account.
    let aws = aws.deferring();
    run(service_fn(|event: LambdaEvent<CaptureOutput>| {
        // Its clients know when this invocation ends: no EC2 work is started that the
        // function's timeout would cut in two.
        let (aws, config) = (aws.until(event.context.deadline), &config);
        async move {
            let report = cordon_core::metrics::measured("block-nacl", &event.payload, Box::pin(steps::block_step(&aws, config, &event.payload))).await?;
            tracing::info!(instance = %report.instance_id, status = ?report.status, entries = report.nacl_entries.len(), "block");
            Ok::<_, cordon_core::CordonError>(report)
        }
    }))
    .await
}
