//! notify: emails the analysts through SNS. For the approval request it signs the two
//! decision links; the task token goes only into them, never into a log.

use cordon_core::aws::{AwsContext, AwsTarget};
use cordon_core::notify::{notify_step, ApprovalSettings, NotifyInput, NotifySettings};
use cordon_core::steps::unix_now;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = NotifySettings::from_env()?;
    let aws = AwsContext::load(&AwsTarget::default()).await;
    let sns = aws_sdk_sns::Client::new(aws.sdk_config());
    run(service_fn(|event: LambdaEvent<NotifyInput>| {
        let (sns, settings) = (&sns, &settings);
        async move {
            let input = event.payload;
            let timeout = input
                .state
                .get("approval_timeout_seconds")
                .and_then(|t| t.as_i64())
                .unwrap_or(0);
            let approval = ApprovalSettings {
                base_url: settings.approval_url.clone(),
                key: settings.approval_key.clone(),
                timeout_seconds: timeout,
            };
            let sent = notify_step(sns, &settings.topic_arn, &approval, &input, unix_now()).await?;
            tracing::info!(kind = ?input.kind, subject = %sent.subject, "notify");
            Ok::<_, cordon_core::CordonError>(sent)
        }
    }))
    .await
}
