//! isolate-sg: moves every network interface of the captured instance through Cordon's
//! conversion group to its isolation group, and enables termination protection. Its input is
//! the capture and the step's retry count: a first attempt swaps from what capture read.

use cordon_core::steps::{self, StepAttempt};
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let (config, aws) = cordon_core::aws::worker_context().await?;
    run(service_fn(|event: LambdaEvent<StepAttempt>| {
        // Its clients know when this invocation ends: no EC2 work is started that the
        // function's timeout would cut in two.
        let (aws, config) = (aws.until(event.context.deadline), &config);
        async move {
            let report = cordon_core::metrics::measured(
                "isolate-sg",
                &event.payload,
                Box::pin(steps::isolate_attempt_step(&aws, config, &event.payload)),
            )
            .await?;
            tracing::info!(instance = %report.instance_id, status = ?report.status, errors = report.errors.len(), "isolate");
            Ok::<_, cordon_core::CordonError>(report)
        }
    }))
    .await
}
