//! snapshot-volumes: preserves the evidence on a contained instance's disks: every attached
//! EBS volume snapshotted at one point in time, once per finding, and kept if the instance is
//! terminated while it is isolated.

use cordon_core::measures::evidence;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let (config, aws) = cordon_core::aws::worker_context("snapshot-volumes").await?;
    run(service_fn(|event: LambdaEvent<evidence::PreserveInput>| {
        let (aws, settings) = (aws.until(event.context.deadline), config.evidence);
        async move {
            // Boxed: inline, the step's future nests past the compiler's query depth limit
            // when it lays out main's future.
            let report = cordon_core::metrics::measured(
                "snapshot-volumes",
                &event.payload,
                Box::pin(evidence::preserve_step(&aws, settings, &event.payload)),
            )
            .await?;
            tracing::info!(instance = %report.instance_id, status = ?report.status, "preserve");
            Ok::<_, cordon_core::CordonError>(report)
        }
    }))
    .await
}
