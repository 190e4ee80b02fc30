//! The KMS port: HMAC keys whose material never leaves AWS KMS. What must not be forged (an
//! approval link) is MACed with `GenerateMac` and checked with `VerifyMac`; the functions hold
//! only the key's id, and the key policy and IAM say which function may do which. Whoever can
//! read a function's configuration or an execution's history learns nothing that signs.

use std::future::Future;

use aws_config::SdkConfig;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::MacAlgorithmSpec;
use sha2::{Digest, Sha256};

use crate::{CordonError, Result};

/// The one algorithm of Cordon's `HMAC_256` keys. KMS refuses any other for such a key, moto
/// takes any (design.md, "Facts that moto does not show"): it is fixed here, not chosen.
pub const MAC_ALGORITHM: MacAlgorithmSpec = MacAlgorithmSpec::HmacSha256;

/// KMS MACs messages of 1 to 4096 bytes; moto takes any length. Cordon MACs a 32-byte digest
/// ([`digest`]), and the port refuses what KMS would.
pub const MAX_MESSAGE_BYTES: usize = 4096;

pub trait Kms: Send + Sync {
    /// The MAC of `message` under the HMAC key `key_id`.
    fn generate_mac(
        &self,
        key_id: &str,
        message: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>>> + Send;

    /// `Ok(true)` when KMS verifies `mac`, `Ok(false)` when it says the MAC is wrong; `Err`
    /// when it could not be asked (the caller treats that as neither).
    fn verify_mac(
        &self,
        key_id: &str,
        message: &[u8],
        mac: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// The SHA-256 digest of `fields`, each prefixed by its length: no two different lists of
/// fields give the same bytes, and the message KMS sees is 32 bytes whatever the fields.
pub fn digest(fields: &[&str]) -> Vec<u8> {
    let mut hash = Sha256::new();
    for field in fields {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field.as_bytes());
    }
    hash.finalize().to_vec()
}

/// What KMS would refuse of a message, refused before the call.
pub fn check_message(message: &[u8]) -> Result<()> {
    if message.is_empty() || message.len() > MAX_MESSAGE_BYTES {
        return Err(CordonError::InvalidInput(format!(
            "a KMS MAC covers 1 to {MAX_MESSAGE_BYTES} bytes; this message has {}",
            message.len()
        )));
    }
    Ok(())
}

/// A key id as `CORDON_APPROVAL_KEY_ID` may hold it: a key or alias ARN, `alias/NAME`, or a
/// bare key id. Anything else (empty, spaces, a pasted secret) is refused at cold start.
pub fn check_key_id(name: &str, key_id: &str) -> Result<()> {
    let is_arn = key_id.starts_with("arn:")
        && key_id.split(':').nth(2) == Some("kms")
        && (key_id.contains(":key/") || key_id.contains(":alias/"));
    let is_alias = key_id.starts_with("alias/") && key_id.len() > "alias/".len();
    let hex =
        |part: &str, len: usize| part.len() == len && part.chars().all(|c| c.is_ascii_hexdigit());
    // A key id is a UUID, or `mrk-` and 32 hex digits for a multi-Region key.
    let parts: Vec<&str> = key_id.split('-').collect();
    let is_key_id = matches!(parts.as_slice(), [a, b, c, d, e]
            if hex(a, 8) && hex(b, 4) && hex(c, 4) && hex(d, 4) && hex(e, 12))
        || key_id
            .strip_prefix("mrk-")
            .is_some_and(|rest| hex(rest, 32));
    if key_id.chars().any(char::is_whitespace) || !(is_arn || is_alias || is_key_id) {
        // Not the value itself: a secret pasted here by mistake must not reach the log.
        return Err(CordonError::InvalidConfiguration(format!(
            "{name} must name a KMS HMAC_256 key (its ARN, alias/NAME or key id); the value set ({} characters) is none of these",
            key_id.chars().count()
        )));
    }
    Ok(())
}

/// The key named by the environment variable `name`, checked ([`check_key_id`]); `what` says
/// what the key is for, in the error when it is missing.
pub fn key_id_from(
    lookup: impl Fn(&str) -> Option<String>,
    name: &str,
    what: &str,
) -> Result<String> {
    let key_id = lookup(name).unwrap_or_default();
    let key_id = key_id.trim();
    if key_id.is_empty() {
        return Err(CordonError::InvalidConfiguration(format!(
            "{name} is not set: it must hold the ARN of the KMS HMAC_256 key that {what}"
        )));
    }
    check_key_id(name, key_id)?;
    Ok(key_id.to_string())
}

/// The aws-sdk adapter.
#[derive(Debug, Clone)]
pub struct AwsKms {
    client: aws_sdk_kms::Client,
}

/// How long one KMS call may take: a MAC is one short request, and capture makes one before
/// the claim that isolation waits for. A KMS that does not answer in time costs a seal (the
/// record is written unsealed, and says so), not the containment.
const KMS_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const KMS_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl AwsKms {
    pub fn new(config: &SdkConfig) -> Self {
        let timeouts = aws_sdk_kms::config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(KMS_ATTEMPT_TIMEOUT)
            .operation_timeout(KMS_CALL_TIMEOUT)
            .build();
        let config = aws_sdk_kms::config::Builder::from(config)
            .timeout_config(timeouts)
            .build();
        AwsKms {
            client: aws_sdk_kms::Client::from_conf(config),
        }
    }
}

fn kms_error<E, R>(
    operation: &str,
    key_id: &str,
    error: aws_sdk_kms::error::SdkError<E, R>,
) -> CordonError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let operation = format!("kms:{operation}");
    match error.code() {
        Some("ThrottlingException") => CordonError::Throttled {
            operation,
            message: error.message().unwrap_or_default().to_string(),
        },
        Some("KMSInternalException" | "DependencyTimeoutException") => CordonError::Unavailable {
            operation,
            message: error.message().unwrap_or_default().to_string(),
        },
        Some("AccessDeniedException") => CordonError::AccessDenied {
            operation,
            message: error.message().unwrap_or_default().to_string(),
        },
        Some(code) => CordonError::Kms {
            operation,
            key_id: key_id.to_string(),
            code: code.to_string(),
            message: error.message().unwrap_or_default().to_string(),
        },
        None => CordonError::Unavailable {
            operation,
            message: aws_sdk_kms::error::DisplayErrorContext(&error).to_string(),
        },
    }
}

impl Kms for AwsKms {
    async fn generate_mac(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>> {
        check_message(message)?;
        let output = self
            .client
            .generate_mac()
            .key_id(key_id)
            .mac_algorithm(MAC_ALGORITHM)
            .message(Blob::new(message))
            .send()
            .await
            .map_err(|e| kms_error("GenerateMac", key_id, e))?;
        output
            .mac()
            .map(|mac| mac.as_ref().to_vec())
            .ok_or_else(|| CordonError::Kms {
                operation: "kms:GenerateMac".into(),
                key_id: key_id.to_string(),
                code: "NoMac".into(),
                message: "KMS answered without a MAC".into(),
            })
    }

    async fn verify_mac(&self, key_id: &str, message: &[u8], mac: &[u8]) -> Result<bool> {
        check_message(message)?;
        let answer = self
            .client
            .verify_mac()
            .key_id(key_id)
            .mac_algorithm(MAC_ALGORITHM)
            .message(Blob::new(message))
            .mac(Blob::new(mac))
            .send()
            .await;
        match answer {
            // KMS answers MacValid true, or refuses with KMSInvalidMacException.
            Ok(output) => Ok(output.mac_valid()),
            Err(error) if error.code() == Some("KMSInvalidMacException") => Ok(false),
            Err(error) => Err(kms_error("VerifyMac", key_id, error)),
        }
    }
}

/// The port's fake: HMAC keys held in memory, with KMS's own checks (the algorithm is fixed,
/// the message is bounded, an unknown key is refused as KMS refuses it).
#[cfg(test)]
pub mod fake {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    pub struct FakeKms {
        keys: BTreeMap<String, Vec<u8>>,
        /// Every call made: `GenerateMac` or `VerifyMac`.
        pub calls: Mutex<Vec<&'static str>>,
        /// While set, every call is throttled, as KMS answers past the account's quota.
        pub throttled: std::sync::atomic::AtomicBool,
        /// Throttled from this many calls on (none: never).
        pub throttled_after: Mutex<Option<usize>>,
    }

    impl FakeKms {
        pub fn with_key(key_id: &str, material: &[u8]) -> Self {
            FakeKms {
                keys: BTreeMap::from([(key_id.to_string(), material.to_vec())]),
                ..Default::default()
            }
        }

        fn mac(&self, operation: &str, key_id: &str, message: &[u8]) -> Result<Hmac<Sha256>> {
            check_message(message)?;
            let made = self.calls.lock().unwrap().len();
            if self.throttled.load(std::sync::atomic::Ordering::SeqCst)
                || self
                    .throttled_after
                    .lock()
                    .unwrap()
                    .is_some_and(|after| made > after)
            {
                return Err(CordonError::Throttled {
                    operation: operation.into(),
                    message: "Rate exceeded".into(),
                });
            }
            let material = self.keys.get(key_id).ok_or_else(|| CordonError::Kms {
                operation: operation.into(),
                key_id: key_id.to_string(),
                code: "NotFoundException".into(),
                message: format!("key '{key_id}' does not exist"),
            })?;
            let mut mac = Hmac::<Sha256>::new_from_slice(material).expect("any key length");
            mac.update(message);
            Ok(mac)
        }
    }

    impl Kms for FakeKms {
        async fn generate_mac(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>> {
            self.calls.lock().unwrap().push("GenerateMac");
            let mac = self.mac("kms:GenerateMac", key_id, message)?;
            Ok(mac.finalize().into_bytes().to_vec())
        }

        async fn verify_mac(&self, key_id: &str, message: &[u8], mac: &[u8]) -> Result<bool> {
            self.calls.lock().unwrap().push("VerifyMac");
            let expected = self.mac("kms:VerifyMac", key_id, message)?;
            Ok(expected.verify_slice(mac).is_ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_tells_apart_fields_that_concatenate_alike() {
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        assert_ne!(digest(&["", "abc"]), digest(&["abc", ""]));
        assert_eq!(digest(&["a", "b"]).len(), 32);
        assert_eq!(digest(&["a", "b"]), digest(&["a", "b"]));
    }

    #[test]
    fn messages_kms_would_refuse_are_refused_before_the_call() {
        assert!(check_message(&[]).is_err());
        assert!(check_message(&[0; MAX_MESSAGE_BYTES]).is_ok());
        let error = check_message(&[0; MAX_MESSAGE_BYTES + 1]).unwrap_err();
        assert!(error.to_string().contains("4096"), "{error}");
    }

    #[test]
    fn key_ids_are_arns_aliases_or_ids_never_a_pasted_secret() {
        for good in [
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws-us-gov:kms:us-gov-west-1:123456789012:alias/cordon-links",
            "alias/cordon-links",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
        ] {
            assert!(check_key_id("K", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "alias/",
            "arn:aws:s3:::bucket",
            "5e3c7a1f0b9d4e2a 8c6f1b3d5a7e9c0f",
            "c2VjcmV0/c2VjcmV0+==",
            // The old CORDON_APPROVAL_KEY, pasted by mistake (`openssl rand -hex 32`).
            "5e3c7a1f0b9d4e2a8c6f1b3d5a7e9c0f2b4d6a8c0e1f3a5b7d9c2e4f6a8b0c1d",
        ] {
            let error = check_key_id("CORDON_APPROVAL_KEY_ID", bad).unwrap_err();
            assert!(
                error.to_string().contains("CORDON_APPROVAL_KEY_ID"),
                "{error}"
            );
        }
    }
}
