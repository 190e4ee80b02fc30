//! isolate-sg: moves every network interface of the captured instance through Cordon's
//! conversion group to its isolation group, and enables termination protection. Its input is
//! the capture and the step's retry count: a first attempt swaps from what capture read.
//! Only the isolation swap (and a way back) presses on when EC2 throttles; every other call
//! of the step, the conversion swap among them, gives way.

use cordon_core::steps::{self, StepAttempt};
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let (config, aws) = cordon_core::aws::worker_context("isolate-sg").await?;
    run(service_fn(|event: LambdaEvent<StepAttempt>| {
        // Its clients know when this invocation ends: no EC2 work is started that the
        // function's timeout would cut in two. They yield to throttling (the state machine's
        // jittered retrier paces the step), except for the swaps that take an interface off
        // the conversion group, which press on: in a burst, those go first.
        let (aws, config) = (aws.until(event.context.deadline).deferring(), &config);
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
