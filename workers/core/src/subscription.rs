//! The analysts' email subscription to the alert topic. Every SNS email ends with an
//! unsubscribe link that works with one click for whoever holds the email (a forwarded message,
//! a ticket, a mail scanner that follows links): the analysts would silently stop receiving
//! approval requests and failure alerts. A subscription confirmed with
//! `AuthenticateOnUnsubscribe` can be removed only with AWS credentials, by the topic's or the
//! subscription's owner. The link in SNS's confirmation email confirms without that flag, so
//! Cordon confirms instead: `cordon confirm-subscription --link URL`, with the link copied from
//! the confirmation email (not clicked).

use crate::{CordonError, Result};

/// What a confirmation link names: the topic, and the short-lived token SNS sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationLink {
    pub region: String,
    pub topic_arn: String,
    pub token: String,
}

/// SNS's tokens are a few hundred hex digits; anything far longer is not one.
const MAX_TOKEN_CHARS: usize = 2048;

fn bad_link(why: &str) -> CordonError {
    CordonError::InvalidInput(format!(
        "{why}. Copy the \"Confirm subscription\" link from the email AWS Notifications sent \
(https://sns.REGION.amazonaws.com/confirmation.html?TopicArn=...&Token=...) and pass it whole, \
in quotes"
    ))
}

/// Reads the link of SNS's confirmation email. Only SNS's own confirmation links are taken:
/// the topic's region must be the host's, and `expected_topic`, when given, must be the topic.
pub fn parse_confirmation_link(
    link: &str,
    expected_topic: Option<&str>,
) -> Result<ConfirmationLink> {
    let url = url::Url::parse(link.trim()).map_err(|e| bad_link(&format!("not a URL ({e})")))?;
    if url.scheme() != "https" {
        return Err(bad_link("the link is not https"));
    }
    let host = url.host_str().unwrap_or_default();
    let region = host
        .strip_prefix("sns.")
        .and_then(|rest| {
            rest.strip_suffix(".amazonaws.com")
                .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))
        })
        .filter(|region| {
            !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .ok_or_else(|| bad_link(&format!("{host:?} is not an SNS endpoint")))?;
    let query = |name: &str| {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let topic_arn = query("TopicArn").ok_or_else(|| bad_link("the link names no TopicArn"))?;
    let parts: Vec<&str> = topic_arn.split(':').collect();
    if !(parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty())
    {
        return Err(bad_link(&format!("{topic_arn:?} is not an SNS topic ARN")));
    }
    if parts[3] != region {
        return Err(bad_link(&format!(
            "the topic is in {} but the link is for {region}",
            parts[3]
        )));
    }
    if let Some(expected) = expected_topic {
        if topic_arn != expected {
            return Err(CordonError::InvalidInput(format!(
                "the link confirms a subscription to {topic_arn}, not to {expected}: nothing was confirmed"
            )));
        }
    }
    let token = query("Token").ok_or_else(|| bad_link("the link carries no Token"))?;
    if token.is_empty()
        || token.len() > MAX_TOKEN_CHARS
        || !token.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(bad_link("the link's Token is not one SNS makes"));
    }
    Ok(ConfirmationLink {
        region: region.to_string(),
        topic_arn,
        token,
    })
}

/// Confirms the subscription so that unsubscribing needs AWS credentials. Returns the
/// subscription's ARN.
pub async fn confirm_with_authenticated_unsubscribe(
    sns: &aws_sdk_sns::Client,
    link: &ConfirmationLink,
) -> Result<String> {
    use aws_sdk_sns::error::ProvideErrorMetadata;
    let confirmed = sns
        .confirm_subscription()
        .topic_arn(&link.topic_arn)
        .token(&link.token)
        .authenticate_on_unsubscribe("true")
        .send()
        .await
        .map_err(|error| {
            let code = error.code().unwrap_or("unknown").to_string();
            CordonError::InvalidInput(format!(
                "SNS did not confirm the subscription to {} ({code}: {}). A confirmation token \
lasts 3 days; if it expired or was used, ask SNS to send the confirmation again \
(aws sns subscribe) and use the new link",
                link.topic_arn,
                error.message().unwrap_or("no message"),
            ))
        })?;
    confirmed
        .subscription_arn()
        .map(String::from)
        .ok_or_else(|| CordonError::InvalidInput("SNS confirmed no subscription".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "arn:aws:sns:eu-west-1:111122223333:cordon-alerts";

    fn link(host: &str, topic: &str, token: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("TopicArn", topic)
            .append_pair("Token", token)
            .append_pair("Endpoint", "soc@example.com")
            .finish();
        format!("https://{host}/confirmation.html?{query}")
    }

    #[test]
    fn only_sns_confirmation_links_for_the_expected_topic_are_taken() {
        let good = link("sns.eu-west-1.amazonaws.com", TOPIC, "2336412f37fb687f");
        let parsed = parse_confirmation_link(&good, Some(TOPIC)).unwrap();
        assert_eq!(parsed.region, "eu-west-1");
        assert_eq!(parsed.topic_arn, TOPIC);
        assert_eq!(parsed.token, "2336412f37fb687f");
        assert!(parse_confirmation_link(&good, None).is_ok());
        let other_topic = "arn:aws:sns:eu-west-1:111122223333:elsewhere";
        for (bad, says) in [
            (good.replace("https://", "http://"), "not https"),
            (
                link("sns.eu-west-1.amazonaws.com.evil.example", TOPIC, "ab"),
                "not an SNS endpoint",
            ),
            (link("evil.example", TOPIC, "ab"), "not an SNS endpoint"),
            (
                link("sns.us-east-1.amazonaws.com", TOPIC, "ab"),
                "the topic is in eu-west-1",
            ),
            (
                link(
                    "sns.eu-west-1.amazonaws.com",
                    "arn:aws:sqs:eu-west-1:111122223333:q",
                    "ab",
                ),
                "not an SNS topic ARN",
            ),
            (
                link("sns.eu-west-1.amazonaws.com", TOPIC, ""),
                "not one SNS makes",
            ),
            (
                link(
                    "sns.eu-west-1.amazonaws.com",
                    TOPIC,
                    "ab&Action=Unsubscribe",
                ),
                "not one SNS makes",
            ),
            (
                link(
                    "sns.eu-west-1.amazonaws.com",
                    TOPIC,
                    &"a".repeat(MAX_TOKEN_CHARS + 1),
                ),
                "not one SNS makes",
            ),
            (
                "https://sns.eu-west-1.amazonaws.com/confirmation.html".into(),
                "no TopicArn",
            ),
            (
                "sns.eu-west-1.amazonaws.com/confirmation.html".into(),
                "not a URL",
            ),
        ] {
            let error = parse_confirmation_link(&bad, None).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
        let error = parse_confirmation_link(
            &link("sns.eu-west-1.amazonaws.com", other_topic, "ab"),
            Some(TOPIC),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("nothing was confirmed"), "{error}");
    }

    /// Keeps the body of every request the client sends.
    #[derive(Debug, Default, Clone)]
    struct Sent(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl aws_sdk_sns::config::Intercept for Sent {
        fn name(&self) -> &'static str {
            "Sent"
        }
        fn read_before_transmit(
            &self,
            context: &aws_sdk_sns::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
            _: &aws_sdk_sns::config::RuntimeComponents,
            _: &mut aws_sdk_sns::config::ConfigBag,
        ) -> std::result::Result<(), aws_sdk_sns::error::BoxError> {
            let body = context.request().body().bytes().unwrap_or_default();
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(body).into_owned());
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_confirmation_asks_for_authenticated_unsubscribe() {
        let sent = Sent::default();
        // Nothing listens there: the request is serialised and sent, and fails to connect.
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::Config::builder()
                .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
                .region(aws_sdk_sns::config::Region::new("eu-west-1"))
                .credentials_provider(aws_sdk_sns::config::Credentials::for_tests())
                .endpoint_url("http://127.0.0.1:9")
                .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled())
                .interceptor(sent.clone())
                .build(),
        );
        let link = parse_confirmation_link(
            &link("sns.eu-west-1.amazonaws.com", TOPIC, "2336412f37fb687f"),
            None,
        )
        .unwrap();
        let error = confirm_with_authenticated_unsubscribe(&sns, &link)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("did not confirm"), "{error}");
        let bodies = sent.0.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        let fields: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(bodies[0].as_bytes())
                .into_owned()
                .collect();
        assert_eq!(fields["Action"], "ConfirmSubscription");
        assert_eq!(fields["AuthenticateOnUnsubscribe"], "true");
        assert_eq!(fields["TopicArn"], TOPIC);
        assert_eq!(fields["Token"], "2336412f37fb687f");
    }
}
