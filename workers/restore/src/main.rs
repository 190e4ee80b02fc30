//! restore: puts back each interface's recorded groups, removes exactly the ACL entries
//! Cordon added, resets termination protection and drops Cordon's tags; reports drift.

use cordon_core::aws::{AwsContext, AwsTarget, MemberRole};
use cordon_core::steps::{self, RestoreInput};
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let aws = AwsContext::load(&AwsTarget::default())
        .await
        .with_member_role(MemberRole::from_env());
    run(service_fn(|event: LambdaEvent<RestoreInput>| {
        // Its clients know when this invocation ends (see capture-state).
        let aws = aws.until(event.context.deadline);
        async move {
            let report = steps::restore_step(&aws, &event.payload).await?;
            tracing::info!(instance = %report.instance_id, status = ?report.status, "restore");
            Ok::<_, cordon_core::CordonError>(report)
        }
    }))
    .await
}
