//! notify: emails the analysts through SNS. For the approval request it has KMS sign the two
//! decision links; the task token goes only into them, never into a log.

use cordon_core::approval::LinkKey;
use cordon_core::aws::{AwsContext, AwsTarget};
use cordon_core::kms::AwsKms;
use cordon_core::notify::{notify_step, ApprovalSettings, NotifyInput, NotifySettings};
use cordon_core::steps::unix_now;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cordon_core::logging::init();
    let settings = NotifySettings::from_env()?;
    let aws = AwsContext::load(&AwsTarget::default()).await;
    let sns = aws_sdk_sns::Client::new(aws.sdk_config());
    let key = LinkKey {
        kms: AwsKms::new(aws.sdk_config()),
        key_id: settings.approval_key_id.clone(),
    };
    run(service_fn(|event: LambdaEvent<NotifyInput>| {
        let (sns, settings, key) = (&sns, &settings, &key);
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
            let sent = notify_step(sns, &settings.topic_arn, &approval, &input, unix_now()).await?;
            tracing::info!(kind = ?input.kind, subject = %sent.subject, "notify");
            Ok::<_, cordon_core::CordonError>(sent)
        }
    }))
    .await
}
