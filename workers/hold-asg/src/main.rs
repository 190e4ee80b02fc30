//! hold-asg: keeps an instance that is in an Auto Scaling group in the group but out of
//! service (Standby), so the group neither replaces nor terminates it while it is isolated.

use cordon_core::measures::auto_scaling;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let (config, aws) = cordon_core::aws::worker_context("hold-asg").await?;
    run(service_fn(|event: LambdaEvent<auto_scaling::HoldInput>| {
        let (aws, settings) = (aws.until(event.context.deadline), config.auto_scaling);
        async move {
            // Boxed: inline, the step's future nests past the compiler's query depth limit
            // when it lays out main's future.
            let report = cordon_core::metrics::measured(
                "hold-asg",
                &event.payload,
                Box::pin(auto_scaling::hold_step(
                    &aws,
                    &aws,
                    settings,
                    &event.payload,
                )),
            )
            .await?;
            tracing::info!(instance = %report.instance_id, status = ?report.status, "hold");
            Ok::<_, cordon_core::CordonError>(report)
        }
    }))
    .await
}
