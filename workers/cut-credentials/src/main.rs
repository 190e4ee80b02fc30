//! cut-credentials: denies every call made with the credentials EC2 issued for the instance
//! (copies taken off it included) while the role's other instances keep working: Cordon's
//! deny policy on its role, and the instance's ARN in one of the role's slot tags.

use cordon_core::capture::CaptureOutput;
use cordon_core::measures::credentials;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let (_config, aws) = cordon_core::aws::worker_context("cut-credentials").await?;
    run(service_fn(|event: LambdaEvent<CaptureOutput>| {
        let aws = aws.until(event.context.deadline);
        async move {
            // Boxed: inline, the step's future nests past the compiler's query depth limit
            // when it lays out main's future.
            let report = cordon_core::metrics::measured(
                "cut-credentials",
                &event.payload,
                Box::pin(credentials::cut_step(&aws, &aws, &event.payload)),
            )
            .await?;
            tracing::info!(instance = %report.instance_id, status = ?report.status, "cut");
            Ok::<_, cordon_core::CordonError>(report)
        }
    }))
    .await
}
