//! restore: puts back each interface's recorded groups, removes exactly the ACL entries
//! Cordon added, resets termination protection and drops Cordon's tags; reports drift. Only
//! on a decision the approval page sealed for the execution (KMS VerifyMac).

use cordon_core::aws::{AwsContext, AwsTarget, MemberRole};
use cordon_core::decision::{decision_key_id_from, DecisionKey};
use cordon_core::kms::AwsKms;
use cordon_core::steps::{self, RestoreInput};
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let key_id = decision_key_id_from(|name| std::env::var(name).ok())?;
    let aws = AwsContext::load(&AwsTarget::default())
        .await
        .with_member_role(MemberRole::from_env());
    // KMS in the stack's own account and region, whatever account the instance is in.
    let decisions = DecisionKey {
        kms: AwsKms::new(aws.sdk_config()),
        key_id,
    };
    run(service_fn(|event: LambdaEvent<RestoreInput>| {
        // Its clients know when this invocation ends (see capture-state).
        let aws = aws.until(event.context.deadline);
        let decisions = &decisions;
        async move {
            let report = steps::approved_restore_step(&aws, decisions, &event.payload).await?;
            tracing::info!(instance = %report.instance_id, status = ?report.status, "restore");
            Ok::<_, cordon_core::CordonError>(report)
        }
    }))
    .await
}
