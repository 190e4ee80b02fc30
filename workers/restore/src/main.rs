//! restore: puts back each interface's recorded groups, removes exactly the ACL entries
//! Cordon added, resets termination protection and drops Cordon's tags; reports drift. Only
//! on a decision sealed for the execution (KMS VerifyMac with the key of the way it was made),
//! by as many different approvers as the stack requires. A release is recorded in the ledger,
//! so that an update of the finding with no activity since does not contain it again.

use cordon_core::aws::{AwsContext, AwsTarget, MemberRole};
use cordon_core::decision::RestoreGate;
use cordon_core::kms::AwsKms;
use cordon_core::lifecycle::aws::DynamoLedger;
use cordon_core::steps::{self, RestoreInput};
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let aws = AwsContext::load(&AwsTarget::default())
        .await
        .acting_as("restore")
        .with_member_role(MemberRole::from_env());
    // KMS in the stack's own account and region, whatever account the instance is in.
    // The release ledger, in the stack's own account and region.
    let ledger = cordon_core::config::Config::from_env()?
        .release_table
        .map(|table| DynamoLedger::new(aws.sdk_config(), &table));
    let gate = RestoreGate::from_lookup(
        |name| std::env::var(name).ok(),
        AwsKms::new(aws.sdk_config()),
    )?;
    // The records' key: a restore without the execution's record uses only sealed records.
    let records = cordon_core::seal::record_key_from(
        |name| std::env::var(name).ok(),
        AwsKms::new(aws.sdk_config()),
    )?;
    run(service_fn(|event: LambdaEvent<RestoreInput>| {
        // Its clients know when this invocation ends (see capture-state).
        let aws = aws.until(event.context.deadline);
        let (gate, ledger, records) = (&gate, &ledger, &records);
        async move {
            // Boxed: inline, the step's future nests past the compiler's query depth limit
            // when it lays out main's future.
            let report = cordon_core::metrics::measured(
                "restore",
                &event.payload,
                Box::pin(steps::approved_restore_step(
                    &aws,
                    &aws,
                    &aws,
                    &aws,
                    ledger.as_ref(),
                    gate,
                    records,
                    &event.payload,
                )),
            )
            .await?;
            tracing::info!(instance = %report.instance_id, status = ?report.status, "restore");
            Ok::<_, cordon_core::CordonError>(report)
        }
    }))
    .await
}
