//! Records that whoever can tag a resource cannot forge. Cordon keeps the record of an
//! instance's original groups in tags (`record.rs`), and break-glass `cordon restore` puts the
//! interfaces back on whatever that record names. Many principals may tag an instance or a
//! security group (often the instance's own role), so each record carries a seal: a MAC by the
//! stack's KMS HMAC key over the record's exact text and where it lives. Only Cordon's capture,
//! ACL and target group functions may make one; a reader that needs the record asks KMS whether the seal
//! is right, and a record that does not verify is not used.
//!
//! The seal is `m1:` and the MAC's 64 hex digits: on the claim or the instance in the tag
//! [`STATE_SEAL_TAG`] (not a chunk key, so the record's chunks read as before), on an ACL at
//! the end of the record's own text after [`ACL_SEAL_SEPARATOR`] (an ACL's 50 tags are shared
//! by every instance quarantined behind it), and on a target group after the ports and the
//! containment's time (`80+8080/<captured at>/m1:...`).

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::approval::{from_hex, to_hex, MAC_BYTES};
use crate::claim::Claim;
use crate::ec2::{DenyEntry, NetworkAcl};
use crate::error::{CordonError, Result};
use crate::kms::{digest, Kms};
use crate::record::{
    acl_records, join_chunks, kept_record, state_seal, CapturedState, STATE_TAG_PREFIX,
};

/// The tag that holds the seal of a `cordon:state:*` record, beside its chunks.
pub const STATE_SEAL_TAG: &str = "cordon:state:mac";
/// What separates an ACL record's entries from its seal; never in an encoded entry.
pub const ACL_SEAL_SEPARATOR: char = ';';
/// The version of the seal's form and of the messages it covers.
const SEAL_VERSION: &str = "m1:";

/// Where a state record is kept: the seal binds it there, so that a record copied from one
/// claim or instance to another does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// On the claim group of the execution `owner`, in `vpc_id`.
    Claim { vpc_id: &'a str, owner: &'a str },
    /// On the instance itself.
    Instance,
}

/// What a state record's seal covers: the record's exact text (its chunks joined), the
/// instance, and where it is kept. The claim's time is left out: an execution's retry keeps
/// the claim's first time and writes the record again.
pub fn state_message(place: Place<'_>, instance_id: &str, text: &str) -> Vec<u8> {
    let (where_, vpc_id, owner) = match place {
        Place::Claim { vpc_id, owner } => ("claim", vpc_id, owner),
        Place::Instance => ("instance", "", ""),
    };
    digest(&[
        "cordon state record mac v1",
        where_,
        instance_id,
        vpc_id,
        owner,
        text,
    ])
}

/// What an ACL record's seal covers: the entries as recorded, the ACL, the instance and the
/// run whose record it is.
pub fn acl_message(acl_id: &str, instance_id: &str, run: Option<&str>, entries: &str) -> Vec<u8> {
    digest(&[
        "cordon acl record mac v1",
        acl_id,
        instance_id,
        run.unwrap_or(""),
        entries,
    ])
}

/// What a target group record's seal covers: the ports as recorded, the group, the instance,
/// and the containment that took it out (its state record's `captured_at`, which the record
/// carries beside the seal): a record planted before the finding does not verify, and one
/// that does says which containment wrote it.
pub fn target_group_message(
    group_arn: &str,
    instance_id: &str,
    captured_at: &str,
    ports: &str,
) -> Vec<u8> {
    digest(&[
        "cordon target group record mac v1",
        group_arn,
        instance_id,
        captured_at,
        ports,
    ])
}

/// A MAC as a tag holds it.
pub fn encode_seal(mac: &[u8]) -> String {
    format!("{SEAL_VERSION}{}", to_hex(mac))
}

/// The MAC a seal holds; None for anything that is not a seal of this form.
pub fn decode_seal(seal: &str) -> Option<Vec<u8>> {
    from_hex(seal.strip_prefix(SEAL_VERSION)?).filter(|mac| mac.len() == MAC_BYTES)
}

/// An ACL record's text split into its entries and its seal (None: written unsealed).
pub fn split_acl_seal(text: &str) -> (&str, Option<&str>) {
    match text.rsplit_once(ACL_SEAL_SEPARATOR) {
        Some((entries, seal)) => (entries, Some(seal)),
        None => (text, None),
    }
}

/// What writes and checks seals: the stack's record key ([`RecordKey`]), or nothing
/// ([`Unsealed`]: `cordon isolate`, whose caller may not make seals, and report-only).
pub trait Seal: Send + Sync {
    /// Whether there is a key to seal and verify with.
    fn has_key(&self) -> bool;

    /// The seal of `message`; None when this writer writes records unsealed.
    fn seal(&self, message: &[u8]) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Whether `seal` is the seal of `message`: `Ok(false)` when KMS says it is not, `Err`
    /// when it cannot be asked (no key given, or KMS did not answer).
    fn verify(&self, message: &[u8], seal: &str) -> impl Future<Output = Result<bool>> + Send;
}

/// The stack's KMS HMAC key for records (`CORDON_RECORD_KEY_ID`). Not the approval links'
/// key: the capture function must not be able to sign an approval.
#[derive(Debug, Clone)]
pub struct RecordKey<K> {
    pub kms: K,
    pub key_id: String,
}

impl<K: Kms> Seal for RecordKey<K> {
    fn has_key(&self) -> bool {
        true
    }

    async fn seal(&self, message: &[u8]) -> Result<Option<String>> {
        let mac = self.kms.generate_mac(&self.key_id, message).await?;
        Ok(Some(encode_seal(&mac)))
    }

    async fn verify(&self, message: &[u8], seal: &str) -> Result<bool> {
        // Not a seal at all: KMS need not be asked (its quota is shared).
        let Some(mac) = decode_seal(seal) else {
            return Ok(false);
        };
        self.kms.verify_mac(&self.key_id, message, &mac).await
    }
}

/// Writes records unsealed, and can verify none.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unsealed;

fn no_record_key() -> CordonError {
    CordonError::InvalidConfiguration(
        "no record key was given, so no record's seal can be checked: give the stack's RecordKeyArn (--record-key or CORDON_RECORD_KEY_ID)".into(),
    )
}

impl Seal for Unsealed {
    fn has_key(&self) -> bool {
        false
    }

    async fn seal(&self, _message: &[u8]) -> Result<Option<String>> {
        Ok(None)
    }

    async fn verify(&self, _message: &[u8], _seal: &str) -> Result<bool> {
        Err(no_record_key())
    }
}

/// The stack's key when one is configured, else unsealed.
impl<S: Seal> Seal for Option<S> {
    fn has_key(&self) -> bool {
        self.as_ref().is_some_and(Seal::has_key)
    }

    async fn seal(&self, message: &[u8]) -> Result<Option<String>> {
        match self {
            Some(key) => key.seal(message).await,
            None => Ok(None),
        }
    }

    async fn verify(&self, message: &[u8], seal: &str) -> Result<bool> {
        match self {
            Some(key) => key.verify(message, seal).await,
            None => Err(no_record_key()),
        }
    }
}

/// The record key named by `CORDON_RECORD_KEY_ID`, checked as every key id is. Required: a
/// worker without it could neither seal its records nor tell a forged one from its own.
pub fn record_key_from<K>(lookup: impl Fn(&str) -> Option<String>, kms: K) -> Result<RecordKey<K>> {
    let key_id = crate::kms::key_id_from(
        lookup,
        RECORD_KEY_ENV,
        "seals the records Cordon keeps in tags (the stack's RecordKey)",
    )?;
    Ok(RecordKey { kms, key_id })
}

/// The environment variable that names the record key.
pub const RECORD_KEY_ENV: &str = "CORDON_RECORD_KEY_ID";

/// What a reader found of a record's seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Made by Cordon's key for exactly this record in exactly this place.
    Verified,
    /// No seal: written by a release before seals, by `cordon isolate`, or the seal deleted.
    Unsealed,
    /// A seal that does not verify: the record or the seal was changed, or copied here.
    Forged,
    /// KMS could not be asked: no key was given, or (`transient`) KMS did not answer and a
    /// later attempt may.
    Unverifiable { why: String, transient: bool },
    /// Its tags do not make a record (a chunk missing or one too many).
    Unreadable(String),
}

impl Verdict {
    /// The step's error when KMS could not be asked about `record` now (throttled, no answer):
    /// the caller's retry may ask again; it says nothing about the record.
    pub fn unavailable(&self, record: &str) -> CordonError {
        CordonError::Unavailable {
            operation: "kms:VerifyMac".into(),
            message: format!("{record} could not be checked: {}", self.reason()),
        }
    }

    /// Why a record with this verdict is not used, for the report.
    pub fn reason(&self) -> String {
        match self {
            Verdict::Verified => "its seal verifies".into(),
            Verdict::Unsealed => "it has no seal (written by a release before seals or by `cordon isolate`, or its seal was deleted)".into(),
            Verdict::Forged => "its seal does not verify under the record key (the record was changed, or copied from elsewhere)".into(),
            Verdict::Unverifiable { why, .. } => format!("its seal could not be checked: {why}"),
            Verdict::Unreadable(why) => format!("its tags do not make a record: {why}"),
        }
    }
}

/// Checks `seal` (None: there is none) over `message`.
pub async fn check(key: &impl Seal, message: &[u8], seal: Option<&str>) -> Verdict {
    let Some(seal) = seal else {
        return Verdict::Unsealed;
    };
    match key.verify(message, seal).await {
        Ok(true) => Verdict::Verified,
        Ok(false) => Verdict::Forged,
        Err(error) => Verdict::Unverifiable {
            transient: error.is_transient(),
            why: error.to_string(),
        },
    }
}

/// A record kept in tags that a reader refused, or used although it did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordTrouble {
    /// The resource whose tags hold it (a claim group, the instance, an ACL).
    pub resource: String,
    /// Its tag keys (the first chunk's).
    pub record: String,
    pub reason: String,
}

/// The state record kept of an instance, read only from tags whose seal verifies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vetted {
    pub record: Option<CapturedState>,
    /// Records not used, and why.
    pub refused: Vec<RecordTrouble>,
    /// Records used although they did not verify (`trust_unverified`).
    pub unverified: Vec<RecordTrouble>,
}

/// The record kept of `instance_id` (as [`crate::record::kept_record`] chooses between the
/// claim's and the instance's), when every record kept verifies under `key`: if any is
/// refused (forged, unsealed, or unreadable), none is used, since a record refused beside a
/// verified one may be the later capture, and using the other would give back an older state
/// (or, with `trust_unverified`, each is used and listed). KMS not answering is an error (the
/// caller's retry): it says nothing about the record.
pub async fn vetted_record(
    key: &impl Seal,
    trust_unverified: bool,
    instance_id: &str,
    claim: Option<&Claim>,
    instance_tags: &[(String, String)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vetted> {
    let mut vetted = Vetted::default();
    let claim_tags = match claim.filter(|claim| !claim.record_tags.is_empty()) {
        Some(claim) => {
            let place = Place::Claim {
                vpc_id: &claim.vpc_id,
                owner: &claim.owner,
            };
            let tags = claim.record_tags.as_slice();
            let usable = accept(
                key,
                trust_unverified,
                place,
                instance_id,
                &claim.group_id,
                tags,
                &mut vetted,
            )
            .await?;
            usable.then_some(tags)
        }
        None => None,
    };
    let on_instance = accept(
        key,
        trust_unverified,
        Place::Instance,
        instance_id,
        instance_id,
        instance_tags,
        &mut vetted,
    )
    .await?;
    if !vetted.refused.is_empty() {
        return Ok(vetted);
    }
    let instance_tags = if on_instance { instance_tags } else { &[] };
    vetted.record = kept_record(instance_id, claim_tags, instance_tags, now)?;
    Ok(vetted)
}

/// Whether the state record in `tags` (on `resource`, kept at `place`) may be used.
async fn accept(
    key: &impl Seal,
    trust_unverified: bool,
    place: Place<'_>,
    instance_id: &str,
    resource: &str,
    tags: &[(String, String)],
    vetted: &mut Vetted,
) -> Result<bool> {
    let verdict = match join_chunks(STATE_TAG_PREFIX, tags, resource) {
        Ok(None) => return Ok(false),
        Ok(Some(text)) => {
            check(
                key,
                &state_message(place, instance_id, &text),
                state_seal(tags),
            )
            .await
        }
        // A chunk missing (anyone who may tag the resource can add `cordon:state:9`): no
        // record to check, and refused like any other that does not verify.
        Err(error) if !trust_unverified => Verdict::Unreadable(error.to_string()),
        Err(error) => return Err(error),
    };
    let trouble = || RecordTrouble {
        resource: resource.to_string(),
        record: format!("{STATE_TAG_PREFIX}:*"),
        reason: verdict.reason(),
    };
    match &verdict {
        Verdict::Verified => Ok(true),
        Verdict::Unverifiable {
            transient: true, ..
        } => Err(verdict.unavailable(&format!("the record on {resource}"))),
        _ if trust_unverified => {
            vetted.unverified.push(trouble());
            Ok(true)
        }
        _ => {
            vetted.refused.push(trouble());
            Ok(false)
        }
    }
}

/// The entries recorded for an instance on one ACL that a reader may rely on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VettedEntries {
    /// From records whose seal verifies, or that name only entries the caller knows.
    pub entries: Vec<DenyEntry>,
    /// Records refused, with the entries only they name.
    pub refused: Vec<(RecordTrouble, Vec<DenyEntry>)>,
    /// Records used although they did not verify (`trust_unverified`).
    pub unverified: Vec<RecordTrouble>,
}

/// The entries recorded for `instance_id` on `acl`, run by run, from the runs whose seal
/// verifies under `key`. A run that names only entries in `known` (the NACL step's own
/// output, which no tag can change) costs no KMS call. The others are refused (or, with
/// `trust_unverified`, used and listed): a forged record would otherwise make restore delete
/// an administrator's deny that it names. KMS not answering is an error, for the caller's
/// retry.
pub async fn vetted_entries(
    key: &impl Seal,
    trust_unverified: bool,
    acl: &NetworkAcl,
    instance_id: &str,
    known: &[DenyEntry],
) -> Result<VettedEntries> {
    let mut vetted = VettedEntries::default();
    for record in acl_records(&acl.id, instance_id, &acl.tags) {
        let record = match record {
            Ok(record) => record,
            Err(unreadable) => {
                vetted.refused.push((
                    RecordTrouble {
                        resource: acl.id.clone(),
                        record: format!("{}:*", unreadable.prefix),
                        reason: Verdict::Unreadable(unreadable.why).reason(),
                    },
                    Vec::new(),
                ));
                continue;
            }
        };
        let unknown: Vec<DenyEntry> = record
            .entries
            .iter()
            .filter(|entry| !known.contains(entry))
            .cloned()
            .collect();
        let verdict = if unknown.is_empty() {
            Verdict::Verified
        } else {
            let message = acl_message(&acl.id, instance_id, record.run.as_deref(), &record.text);
            check(key, &message, record.seal.as_deref()).await
        };
        let trouble = || RecordTrouble {
            resource: acl.id.clone(),
            record: format!("{}:*", record.prefix),
            reason: verdict.reason(),
        };
        let usable = match &verdict {
            Verdict::Verified => true,
            Verdict::Unverifiable {
                transient: true, ..
            } => {
                return Err(
                    verdict.unavailable(&format!("the record {} on {}", record.prefix, acl.id))
                )
            }
            _ if trust_unverified => {
                vetted.unverified.push(trouble());
                true
            }
            _ => {
                vetted.refused.push((trouble(), unknown));
                false
            }
        };
        if usable {
            for entry in record.entries {
                if !vetted.entries.contains(&entry) {
                    vetted.entries.push(entry);
                }
            }
        }
    }
    Ok(vetted)
}

#[cfg(test)]
mod tests;
