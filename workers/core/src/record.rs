//! The record of an instance's original network state, and how Cordon keeps records in EC2
//! tags: one tag value holds at most 256 characters, so a record is split across numbered keys
//! (`cordon:state:0`, `cordon:state:1`, ...) and joined again in order.

use serde::{Deserialize, Serialize};

use crate::ec2::{DenyEntry, NetworkInterface};
use crate::error::{CordonError, Result};

pub const RECORD_VERSION: u32 = 1;
/// EC2's limit on a tag value, in Unicode characters.
pub const TAG_VALUE_MAX_CHARS: usize = 256;
/// EC2's limit on user tags per resource.
pub const TAGS_PER_RESOURCE_MAX: usize = 50;
pub const STATE_TAG_PREFIX: &str = "cordon:state";
/// Every tag Cordon writes starts with this; `cordon:exempt` is the operator's and is kept.
pub const CORDON_TAG_PREFIX: &str = "cordon:";

/// The original state of an instance, taken before Cordon changes anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapturedState {
    pub version: u32,
    pub instance_id: String,
    pub finding_id: Option<String>,
    pub finding_type: Option<String>,
    /// RFC 3339, UTC.
    pub captured_at: String,
    pub instance_state: String,
    pub termination_protection: bool,
    pub interfaces: Vec<NetworkInterface>,
    /// `InstanceInitiatedShutdownBehavior` (`stop` or `terminate`); None in a record written
    /// before Cordon kept it, which restore then leaves as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_behavior: Option<String>,
}

impl CapturedState {
    pub fn vpc_ids(&self) -> Vec<String> {
        crate::ec2::unique_vpcs(&self.interfaces)
    }

    /// The subnets of the instance's interfaces (a subnet twice when two interfaces share it).
    pub fn subnet_ids(&self) -> Vec<&str> {
        self.interfaces
            .iter()
            .map(|i| i.subnet_id.as_str())
            .collect()
    }
}

/// Splits `text` into tags `{prefix}:0`, `{prefix}:1`, ... of at most 256 characters each.
pub fn chunk_tags(prefix: &str, text: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![(format!("{prefix}:0"), String::new())];
    }
    chars
        .chunks(TAG_VALUE_MAX_CHARS)
        .enumerate()
        .map(|(index, chunk)| (format!("{prefix}:{index}"), chunk.iter().collect()))
        .collect()
}

/// The keys `{prefix}:N` present in `tags`.
pub fn chunk_keys(prefix: &str, tags: &[(String, String)]) -> Vec<String> {
    tags.iter()
        .filter(|(key, _)| chunk_index(prefix, key).is_some())
        .map(|(key, _)| key.clone())
        .collect()
}

fn chunk_index(prefix: &str, key: &str) -> Option<usize> {
    key.strip_prefix(prefix)?.strip_prefix(':')?.parse().ok()
}

/// Joins `{prefix}:0..N` back into one text; `None` when there is no chunk, an error when a
/// chunk is missing (a partial write or someone's edit).
pub fn join_chunks(
    prefix: &str,
    tags: &[(String, String)],
    resource: &str,
) -> Result<Option<String>> {
    let mut chunks: Vec<(usize, &str)> = tags
        .iter()
        .filter_map(|(key, value)| Some((chunk_index(prefix, key)?, value.as_str())))
        .collect();
    if chunks.is_empty() {
        return Ok(None);
    }
    chunks.sort_by_key(|(index, _)| *index);
    if let Some(gap) = chunks
        .iter()
        .enumerate()
        .find(|(at, (index, _))| at != index)
    {
        return Err(CordonError::CorruptRecord {
            resource: resource.to_string(),
            message: format!("tag {prefix}:{} is missing", gap.0),
        });
    }
    Ok(Some(chunks.iter().map(|(_, value)| *value).collect()))
}

/// Checks that writing `new_tags` (and dropping `replaced_keys`) keeps a resource within EC2's
/// tag limit, counting keys that are overwritten only once.
pub fn check_tag_room(
    resource: &str,
    existing: &[(String, String)],
    new_tags: &[(String, String)],
    replaced_keys: &[String],
) -> Result<()> {
    let kept = existing
        .iter()
        .filter(|(key, _)| {
            !replaced_keys.contains(key) && !new_tags.iter().any(|(new, _)| new == key)
        })
        .count();
    if kept + new_tags.len() > TAGS_PER_RESOURCE_MAX {
        return Err(CordonError::TagQuotaExceeded {
            resource: resource.to_string(),
            existing: existing.len(),
            needed: new_tags.len(),
            limit: TAGS_PER_RESOURCE_MAX,
        });
    }
    Ok(())
}

/// The record as tags. Group names stay out: they are for the page, and every character
/// counts against the instance's 50 tags.
pub fn state_tags(record: &CapturedState) -> Vec<(String, String)> {
    chunk_tags(STATE_TAG_PREFIX, &state_text(record))
}

/// The record's text as its chunks hold it (joined again): what its seal covers.
pub fn state_text(record: &CapturedState) -> String {
    let mut record = record.clone();
    for interface in &mut record.interfaces {
        interface.group_names.clear();
    }
    serde_json::to_string(&record).expect("a record always serialises")
}

/// The keys of a kept state record on a resource: its chunks and its seal. A new record
/// replaces all of them, so that no chunk or seal of the old one is read with it.
pub fn state_record_keys(tags: &[(String, String)]) -> Vec<String> {
    let mut keys = chunk_keys(STATE_TAG_PREFIX, tags);
    if tags
        .iter()
        .any(|(key, _)| key == crate::seal::STATE_SEAL_TAG)
    {
        keys.push(crate::seal::STATE_SEAL_TAG.to_string());
    }
    keys
}

/// The seal kept beside a state record, if any.
pub fn state_seal(tags: &[(String, String)]) -> Option<&str> {
    tags.iter()
        .find(|(key, _)| key == crate::seal::STATE_SEAL_TAG)
        .map(|(_, value)| value.as_str())
}

pub fn state_from_tags(
    instance_id: &str,
    tags: &[(String, String)],
) -> Result<Option<CapturedState>> {
    let Some(json) = join_chunks(STATE_TAG_PREFIX, tags, instance_id)? else {
        return Ok(None);
    };
    let record: CapturedState =
        serde_json::from_str(&json).map_err(|error| CordonError::CorruptRecord {
            resource: instance_id.to_string(),
            message: format!("{STATE_TAG_PREFIX}:* is not a Cordon record ({error})"),
        })?;
    if record.version != RECORD_VERSION {
        return Err(CordonError::CorruptRecord {
            resource: instance_id.to_string(),
            message: format!(
                "record version {} is not {RECORD_VERSION}; use the Cordon release that wrote it",
                record.version
            ),
        });
    }
    Ok(Some(record))
}

/// The record kept of `instance_id`: on its claim group (`claim_record`, the claim's
/// `cordon:state:*` tags), where capture writes it with the claim; or on the instance itself,
/// where releases before that wrote it and where `cordon isolate`, which claims nothing, still
/// does. The claim's is trusted first: fewer principals may tag a security group than the
/// instance (its own role often may). The instance's wins only when it is a later capture,
/// taken no later than `now` (with another Lambda's clock skew): a record dated ahead is
/// forged, and a claim left from an earlier containment would give back older groups. A
/// record that cannot be read is an error, never passed over for the other: a guess could be
/// more open.
pub fn kept_record(
    instance_id: &str,
    claim_record: Option<&[(String, String)]>,
    instance_tags: &[(String, String)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<CapturedState>> {
    let on_claim = match claim_record {
        Some(tags) if !tags.is_empty() => state_from_tags(instance_id, tags)?,
        _ => None,
    };
    let on_instance = state_from_tags(instance_id, instance_tags)?;
    let latest = (now + chrono::Duration::seconds(crate::claim::CLOCK_SKEW_SECONDS))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Ok(match (on_claim, on_instance) {
        (Some(claim), Some(instance))
            if instance.captured_at > claim.captured_at && instance.captured_at <= latest =>
        {
            Some(instance)
        }
        (Some(claim), _) => Some(claim),
        (None, instance) => instance,
    })
}

/// The tag prefix under which a network ACL lists the entries Cordon added for one instance
/// in one run (`cordon:<instance>:<run>`), or, for a record written before runs kept records
/// of their own, in all of them (`cordon:<instance>`). Each containment writes under its own
/// run: two at once for one instance (two `cordon isolate`, or one beside an execution) would
/// otherwise overwrite each other's record and leave denies that no record names.
pub fn acl_tag_prefix(instance_id: &str, run: Option<&str>) -> String {
    match run {
        Some(run) => format!("{CORDON_TAG_PREFIX}{instance_id}:{run}"),
        None => format!("{CORDON_TAG_PREFIX}{instance_id}"),
    }
}

/// A tag key of an ACL record, read back: `cordon:<instance>:<N>` or
/// `cordon:<instance>:<run>:<N>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclRecordKey<'a> {
    pub instance_id: &'a str,
    pub run: Option<&'a str>,
    pub index: usize,
}

/// The one parser of ACL record keys (restore, block and the check for another instance's
/// rule all read them). Anything else, `cordon:exempt` among them, is not a record key.
pub fn parse_acl_record_key(key: &str) -> Option<AclRecordKey<'_>> {
    let rest = key.strip_prefix(CORDON_TAG_PREFIX)?;
    let mut parts = rest.split(':');
    let instance_id = parts.next().filter(|i| crate::ec2::is_instance_id(i))?;
    let (run, index) = match (parts.next(), parts.next(), parts.next()) {
        (Some(index), None, None) => (None, index),
        (Some(run), Some(index), None) if is_run_id(run) => (Some(run), index),
        _ => return None,
    };
    let index = index.parse().ok()?;
    Some(AclRecordKey {
        instance_id,
        run,
        index,
    })
}

/// A run id: 8 lowercase hex digits.
pub fn is_run_id(text: &str) -> bool {
    text.len() == 8
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new run id, different for every run of a containment step (process randomness, time and
/// instance): each writes its own record on an ACL, so two at once never overwrite each other's.
pub fn new_run_id(instance_id: &str) -> String {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    instance_id.hash(&mut hasher);
    std::time::SystemTime::now().hash(&mut hasher);
    format!("{:08x}", hasher.finish() as u32)
}

/// The record prefixes (one per run, and the older shared one) present for an instance.
pub fn acl_record_prefixes(instance_id: &str, tags: &[(String, String)]) -> Vec<String> {
    let mut prefixes: Vec<String> = tags
        .iter()
        .filter_map(|(key, _)| parse_acl_record_key(key))
        .filter(|k| k.instance_id == instance_id)
        .map(|k| acl_tag_prefix(instance_id, k.run))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

/// Every record key of the instance on the ACL, whatever the run.
pub fn acl_record_keys(instance_id: &str, tags: &[(String, String)]) -> Vec<String> {
    tags.iter()
        .filter(|(key, _)| parse_acl_record_key(key).is_some_and(|k| k.instance_id == instance_id))
        .map(|(key, _)| key.clone())
        .collect()
}

/// The instances that have a record on the ACL.
pub fn acl_recorded_instances(tags: &[(String, String)]) -> Vec<&str> {
    let mut instances: Vec<&str> = tags
        .iter()
        .filter_map(|(key, _)| parse_acl_record_key(key))
        .map(|k| k.instance_id)
        .collect();
    instances.sort_unstable();
    instances.dedup();
    instances
}

/// One run's record of an instance's entries on an ACL, as the ACL's tags hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRecord {
    /// Its tags' prefix: `cordon:<instance>:<run>`, or the older `cordon:<instance>`.
    pub prefix: String,
    pub run: Option<String>,
    /// The entries as written: what the record's seal covers.
    pub text: String,
    /// Its seal (`crate::seal`), None when written unsealed.
    pub seal: Option<String>,
    pub entries: Vec<DenyEntry>,
}

/// A record whose tags do not read (a chunk missing, an entry malformed): anyone who may tag
/// the ACL can write one, so it stands for itself and never for the ACL's other records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRecord {
    pub prefix: String,
    pub why: String,
}

/// Every record of `instance_id` on the ACL `acl_id` (tags `tags`), run by run, each read or
/// not on its own.
pub fn acl_records(
    acl_id: &str,
    instance_id: &str,
    tags: &[(String, String)],
) -> Vec<std::result::Result<AclRecord, UnreadableRecord>> {
    let shared = acl_tag_prefix(instance_id, None);
    acl_record_prefixes(instance_id, tags)
        .into_iter()
        .filter_map(|prefix| {
            let read = |written: &str| -> Result<AclRecord> {
                let (text, seal) = crate::seal::split_acl_seal(written);
                Ok(AclRecord {
                    entries: decode_acl_entries(acl_id, text)?,
                    text: text.to_string(),
                    seal: seal.map(str::to_string),
                    run: prefix
                        .strip_prefix(&shared)
                        .and_then(|rest| rest.strip_prefix(':'))
                        .map(str::to_string),
                    prefix: prefix.clone(),
                })
            };
            let record = match join_chunks(&prefix, tags, acl_id) {
                Ok(None) => return None,
                Ok(Some(written)) => read(&written),
                Err(error) => Err(error),
            };
            Some(record.map_err(|error| UnreadableRecord {
                why: error.to_string(),
                prefix,
            }))
        })
        .collect()
}

/// Entries as `in:5:203.0.113.9/32,out:5:203.0.113.9/32` (the CIDR last: IPv6 has colons).
pub fn encode_acl_entries(entries: &[DenyEntry]) -> String {
    entries
        .iter()
        .map(|entry| {
            let direction = if entry.egress { "out" } else { "in" };
            format!("{direction}:{}:{}", entry.rule_number, entry.cidr)
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode_acl_entries(acl_id: &str, text: &str) -> Result<Vec<DenyEntry>> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let mut parts = item.splitn(3, ':');
            let corrupt = || CordonError::CorruptRecord {
                resource: acl_id.to_string(),
                message: format!("{item:?} is not DIRECTION:NUMBER:CIDR"),
            };
            let egress = match parts.next() {
                Some("in") => false,
                Some("out") => true,
                _ => return Err(corrupt()),
            };
            let rule_number = parts
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(corrupt)?;
            let cidr = parts.next().filter(|c| !c.is_empty()).ok_or_else(corrupt)?;
            Ok(DenyEntry {
                acl_id: acl_id.to_string(),
                egress,
                rule_number,
                cidr: cidr.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tags as a fixture file holds them: `[[key, value], ...]`.
    fn tags_of(value: &serde_json::Value) -> Vec<(String, String)> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap().to_string(),
                    pair[1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Executions wait for approval across an upgrade, and `cordon restore` reads records
    /// written by the release before: the record this release writes, kept as a fixture,
    /// must read back in every field. If the writer's assert below fails, the format has
    /// changed: keep this fixture and its reads, add the new release's beside it.
    #[test]
    fn the_record_of_december_2026_reads_back_in_every_field() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../fixtures/record-2026-12.json")).unwrap();
        let tags = tags_of(&fixture["instance_tags"]);
        let record = state_from_tags("i-0123456789abcdef0", &tags)
            .unwrap()
            .unwrap();
        assert_eq!(
            record.finding_type.as_deref(),
            Some("Backdoor:EC2/C&CActivity.B!DNS")
        );
        assert_eq!(record.shutdown_behavior.as_deref(), Some("stop"));
        assert!(!record.termination_protection);
        let [first, second] = &record.interfaces[..] else {
            panic!("two interfaces: {:?}", record.interfaces);
        };
        assert_eq!(
            first.groups,
            ["sg-0aaa1111bbbb22223", "sg-0ccc3333dddd44445"]
        );
        assert_eq!(first.private_ipv4, ["10.20.1.15", "10.20.1.16"]);
        assert_eq!(first.ipv6, ["2001:db8:20:1::15"]);
        assert_eq!(first.ipv4_prefixes, ["10.20.1.32/28"]);
        assert_eq!(first.ipv6_prefixes, ["2001:db8:20:1:1::/80"]);
        assert_eq!(first.interface_type.as_deref(), Some("interface"));
        assert_eq!(first.owner_id, "111122223333");
        let conntrack = first.conntrack.unwrap();
        assert_eq!(
            (
                conntrack.tcp_established,
                conntrack.udp_stream,
                conntrack.udp
            ),
            (Some(350), Some(120), Some(30))
        );
        assert_eq!(second.groups, ["sg-0ccc3333dddd44445"]);
        assert_eq!(second.conntrack, None);
        // The fixture is what this release writes, not a hand-made guess.
        let written: Vec<(String, String)> = tags
            .iter()
            .filter(|(key, _)| key.starts_with(STATE_TAG_PREFIX))
            .cloned()
            .collect();
        assert_eq!(state_tags(&record), written);

        // The ACLs' records of the same run: the entries restore removes.
        let mut entries = Vec::new();
        for (acl_id, acl_tags) in fixture["acl_tags"].as_object().unwrap() {
            let tags = tags_of(acl_tags);
            let prefixes = acl_record_prefixes("i-0123456789abcdef0", &tags);
            assert_eq!(prefixes, ["cordon:i-0123456789abcdef0:5f0e1d2c"]);
            let text = join_chunks(&prefixes[0], &tags, acl_id).unwrap().unwrap();
            entries.extend(decode_acl_entries(acl_id, &text).unwrap());
        }
        assert_eq!(entries.len(), 6);
        assert!(entries.contains(&DenyEntry {
            acl_id: "acl-0eee5555ffff66667".into(),
            egress: true,
            rule_number: 3,
            cidr: "10.20.1.16/32".into(),
        }));
    }

    #[test]
    fn acl_record_keys_are_read_by_one_parser_old_and_new() {
        let key = parse_acl_record_key;
        assert_eq!(
            key("cordon:i-00000001:3"),
            Some(AclRecordKey {
                instance_id: "i-00000001",
                run: None,
                index: 3
            })
        );
        assert_eq!(
            key("cordon:i-00000001:0a1b2c3d:0"),
            Some(AclRecordKey {
                instance_id: "i-00000001",
                run: Some("0a1b2c3d"),
                index: 0
            })
        );
        for not_a_record in [
            "cordon:exempt",
            "cordon:state:0",
            "cordon:i-00000001",
            "cordon:i-00000001:x",
            "cordon:i-00000001:0A1B2C3D:0",
            "cordon:i-00000001:0a1b2c3d:0:1",
            "cordon:role",
            "Name",
        ] {
            assert_eq!(key(not_a_record), None, "{not_a_record}");
        }
        let tags: Vec<(String, String)> = [
            "cordon:i-00000001:0",
            "cordon:i-00000001:0a1b2c3d:0",
            "cordon:i-00000001:0a1b2c3d:1",
            "cordon:i-00000002:ffffffff:0",
            "cordon:exempt",
        ]
        .iter()
        .map(|k| (k.to_string(), String::new()))
        .collect();
        assert_eq!(
            acl_record_prefixes("i-00000001", &tags),
            ["cordon:i-00000001", "cordon:i-00000001:0a1b2c3d"]
        );
        assert_eq!(acl_record_keys("i-00000001", &tags).len(), 3);
        assert_eq!(acl_recorded_instances(&tags), ["i-00000001", "i-00000002"]);
        assert!(is_run_id(&new_run_id("i-00000001")));
        assert_ne!(new_run_id("i-00000001"), new_run_id("i-00000001"));
    }

    #[test]
    fn the_claims_record_is_kept_unless_the_instance_holds_a_later_one_not_dated_ahead() {
        let older = record(1);
        let newer = CapturedState {
            captured_at: "2026-11-30T09:00:00.000Z".into(),
            termination_protection: true,
            ..older.clone()
        };
        let (claim, instance) = (state_tags(&older), state_tags(&newer));
        let id = &older.instance_id;
        let now: chrono::DateTime<chrono::Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let kept = |claim: Option<&[(String, String)]>, instance: &[(String, String)]| {
            kept_record(id, claim, instance, now)
        };
        assert_eq!(kept(Some(&claim), &instance).unwrap(), Some(newer.clone()));
        // The claim's, when it is the later.
        assert_eq!(kept(Some(&instance), &claim).unwrap(), Some(newer.clone()));
        assert_eq!(kept(Some(&claim), &[]).unwrap(), Some(older.clone()));
        assert_eq!(kept(None, &instance).unwrap(), Some(newer));
        assert_eq!(kept(Some(&[]), &[]).unwrap(), None);
        // An instance record dated ahead (written by whoever may tag the instance) loses.
        let forged = state_tags(&CapturedState {
            captured_at: "2099-01-01T00:00:00.000Z".into(),
            ..older.clone()
        });
        assert_eq!(kept(Some(&claim), &forged).unwrap(), Some(older.clone()));
        // A broken record on the claim is an error, not a reason to take the other.
        let broken = vec![("cordon:state:1".to_string(), "x".to_string())];
        assert!(kept(Some(&broken), &instance).is_err());
    }

    fn record(groups_per_eni: usize) -> CapturedState {
        CapturedState {
            version: RECORD_VERSION,
            instance_id: "i-0123456789abcdef0".into(),
            finding_id: Some("60baffd3f9042e38640f2300d5c5a631".into()),
            finding_type: Some("Backdoor:EC2/C&CActivity.B".into()),
            captured_at: "2026-11-29T14:00:00.000Z".into(),
            instance_state: "running".into(),
            termination_protection: false,
            shutdown_behavior: Some("stop".into()),
            interfaces: (0..2)
                .map(|n| NetworkInterface {
                    id: format!("eni-0{n}23456789abcdef0"),
                    subnet_id: format!("subnet-0{n}23456789abcdef"),
                    vpc_id: "vpc-0123456789abcdef0".into(),
                    groups: (0..groups_per_eni)
                        .map(|g| format!("sg-0{g:016x}"))
                        .collect(),
                    private_ipv4: vec![format!("10.0.{n}.5")],
                    ipv6: vec![format!("2001:db8:{n}::5")],
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn a_record_with_the_most_groups_survives_the_tag_round_trip() {
        // 16 groups per interface is EC2's maximum; the record no longer fits one tag.
        let original = record(16);
        let tags = state_tags(&original);
        assert!(tags.len() > 1);
        assert!(tags
            .iter()
            .all(|(_, value)| value.chars().count() <= TAG_VALUE_MAX_CHARS));
        assert!(tags.iter().all(|(key, _)| key.len() <= 128));
        let mut shuffled = tags.clone();
        shuffled.reverse();
        shuffled.push(("Name".into(), "web-1".into()));
        assert_eq!(
            state_from_tags("i-00000001", &shuffled).unwrap(),
            Some(original)
        );
    }

    #[test]
    fn group_names_are_shown_but_never_spend_the_instances_tags() {
        let mut named = record(2);
        for interface in &mut named.interfaces {
            interface.group_names = interface
                .groups
                .iter()
                .map(|id| (id.clone(), format!("a rather long group name for {id}")))
                .collect();
        }
        let tags = state_tags(&named);
        assert_eq!(tags, state_tags(&record(2)));
        assert!(tags.iter().all(|(_, value)| !value.contains("group name")));
        // What the tags give back is the record without the names.
        assert_eq!(
            state_from_tags("i-00000001", &tags).unwrap(),
            Some(record(2))
        );
    }

    #[test]
    fn chunks_split_on_characters_not_bytes() {
        let text = "é".repeat(300);
        let tags = chunk_tags("cordon:x", &text);
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].1.chars().count(), 256);
        assert_eq!(join_chunks("cordon:x", &tags, "r").unwrap().unwrap(), text);
    }

    #[test]
    fn a_missing_chunk_or_a_foreign_record_is_reported_not_guessed() {
        let mut tags = state_tags(&record(16));
        tags.remove(0);
        let error = state_from_tags("i-00000001", &tags).unwrap_err();
        assert_eq!(error.error_name(), "Cordon.CorruptRecord");
        assert!(error.to_string().contains("cordon:state:0 is missing"));
        let garbage = vec![("cordon:state:0".to_string(), "{\"nope\":1}".to_string())];
        assert!(state_from_tags("i-00000001", &garbage).is_err());
        assert_eq!(state_from_tags("i-00000001", &[]).unwrap(), None);
    }

    #[test]
    fn tag_room_counts_overwritten_keys_once() {
        let existing: Vec<(String, String)> =
            (0..48).map(|n| (format!("k{n}"), String::new())).collect();
        let two = chunk_tags("cordon:state", &"x".repeat(300));
        assert!(check_tag_room("i-00000001", &existing, &two, &[]).is_ok());
        let three = chunk_tags("cordon:state", &"x".repeat(600));
        let error = check_tag_room("i-00000001", &existing, &three, &[]).unwrap_err();
        assert_eq!(error.error_name(), "Cordon.TagQuotaExceeded");
        let mut with_old = existing.clone();
        with_old.truncate(47);
        with_old.push(("cordon:state:0".into(), "old".into()));
        assert!(
            check_tag_room("i-00000001", &with_old, &three, &["cordon:state:0".into()]).is_ok()
        );
    }

    #[test]
    fn acl_entries_round_trip_including_ipv6() {
        let entries = vec![
            DenyEntry {
                acl_id: "acl-1".into(),
                egress: false,
                rule_number: 1,
                cidr: "198.51.100.7/32".into(),
            },
            DenyEntry {
                acl_id: "acl-1".into(),
                egress: true,
                rule_number: 2,
                cidr: "2001:db8::9/128".into(),
            },
        ];
        let text = encode_acl_entries(&entries);
        assert_eq!(text, "in:1:198.51.100.7/32,out:2:2001:db8::9/128");
        assert_eq!(decode_acl_entries("acl-1", &text).unwrap(), entries);
        assert!(decode_acl_entries("acl-1", "sideways:1:x").is_err());
        assert!(decode_acl_entries("acl-1", "in:one:10.0.0.1/32").is_err());
    }
}
