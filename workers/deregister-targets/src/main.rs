//! deregister-targets: takes an instance out of the target groups it is registered in on its
//! own (not through its Auto Scaling group), each group's ports recorded on the group first,
//! sealed with the stack's record key.

use cordon_core::capture::CaptureOutput;
use cordon_core::measures::load_balancers;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let (_config, aws) = cordon_core::aws::worker_context("deregister-targets").await?;
    // The key that seals its records on the target groups, in the stack's own account and
    // region.
    let seal = cordon_core::seal::record_key_from(
        |name| std::env::var(name).ok(),
        cordon_core::kms::AwsKms::new(aws.sdk_config()),
    )?;
    run(service_fn(|event: LambdaEvent<CaptureOutput>| {
        let aws = aws.until(event.context.deadline);
        let seal = &seal;
        async move {
            // Boxed: inline, the step's future nests past the compiler's query depth limit
            // when it lays out main's future.
            let report = cordon_core::metrics::measured(
                "deregister-targets",
                &event.payload,
                Box::pin(load_balancers::deregister_step(
                    &aws,
                    &aws,
                    &aws,
                    seal,
                    &event.payload,
                )),
            )
            .await?;
            tracing::info!(instance = %report.instance_id, status = ?report.status, "deregister");
            Ok::<_, cordon_core::CordonError>(report)
        }
    }))
    .await
}
