//! notify: emails the analysts through SNS. For the approval request it has KMS sign the two
//! decision links; the task token goes only into them, never into a log. Then the finding
//! follows in Security Hub (in its own account, through the member role) and, on a release,
//! is archived in GuardDuty if the stack asks.

use cordon_core::approval::LinkKey;
use cordon_core::aws::{AwsContext, AwsTarget, MemberRole};
use cordon_core::kms::AwsKms;
use cordon_core::lifecycle::aws::DynamoLedger;
use cordon_core::lifecycle::status;
use cordon_core::notify::{
    notify_step, ApprovalSettings, FindingFollow, NotifyInput, NotifySettings,
};
use cordon_core::steps::unix_now;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let settings = NotifySettings::from_env()?;
    let following = status::Settings::from_env()?;
    let aws = AwsContext::load(&AwsTarget::default())
        .await
        .acting_as("notify")
        .with_member_role(
            // Only Security Hub through the member role: its session may do nothing else.
            MemberRole::from_env().map(|role| role.limited_to(status::MEMBER_SESSION_POLICY)),
        );
    // The release ledger, in the stack's own account: an archive on release is noted there.
    let ledger = cordon_core::config::Config::from_env()?
        .release_table
        .map(|table| DynamoLedger::new(aws.sdk_config(), &table));
    let sns = aws_sdk_sns::Client::new(aws.sdk_config());
    let key = LinkKey {
        kms: AwsKms::new(aws.sdk_config()),
        key_id: settings.approval_key_id.clone(),
    };
    run(service_fn(|event: LambdaEvent<NotifyInput>| {
        let (sns, settings, key, ledger) = (&sns, &settings, &key, &ledger);
        let aws = aws.until(event.context.deadline);
        async move {
            let input = event.payload;
            let timeout = input
                .state
                .get("approval_timeout_seconds")
                .and_then(|t| t.as_i64())
                .unwrap_or(0);
            let approval = ApprovalSettings {
                base_url: settings.approval_url.clone(),
                key,
                timeout_seconds: timeout,
                sign_in_at: settings.sign_in_at.clone(),
            };
            let follow = FindingFollow {
                security_hub: &aws,
                guard_duty: &aws,
                ledger: ledger.as_ref(),
                settings: following,
            };
            let sent = cordon_core::metrics::measured("notify", &input, Box::pin(notify_step(
                sns,
                &settings.topic_arn,
                &approval,
                follow,
                &input,
                unix_now(),
            )))
            .await?;
            tracing::info!(kind = ?input.kind, subject = %sent.subject, finding = ?sent.finding, "notify");
            Ok::<_, cordon_core::CordonError>(sent)
        }
    }))
    .await
}
