//! GuardDuty findings in every shape people feed Cordon, read tolerantly.
//!
//! Real findings vary: EventBridge delivers camelCase inside an envelope, `aws guardduty
//! get-findings` prints PascalCase under `Findings`, sample findings put numbers in strings,
//! and fields such as `networkInterfaces` may be absent. We therefore read a `serde_json::Value`
//! with small tolerant accessors instead of a rigid struct that would reject a valid finding.

use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What Cordon needs to know of one finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub finding_type: String,
    pub severity: f64,
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub resource_type: Option<String>,
    pub instance_id: Option<String>,
    /// `ACTOR` or `TARGET`: the instance's role in the activity.
    pub resource_role: Option<String>,
    pub archived: bool,
    pub sample: bool,
    /// The envelope's `detail-type`, when the finding came inside an EventBridge event.
    pub detail_type: Option<String>,
    /// Remote addresses from every action kind that names one, without duplicates.
    pub remote_addresses: Vec<IpAddr>,
    /// The instance's tags as the finding reports them (live tags are checked at capture).
    pub instance_tags: Vec<(String, String)>,
    /// `updatedAt` normalised to RFC 3339, when it could be read.
    pub updated_at: Option<String>,
    /// `service.eventFirstSeen` and `service.eventLastSeen`, normalised to RFC 3339: when
    /// GuardDuty first and last saw the activity (shown to the analyst who decides).
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// For a finding about an instance's role credentials used elsewhere
    /// (`InstanceCredentialExfiltration`): the role (`accessKeyDetails.userName`). The instance
    /// is the session's name (`principalId` is `ROLE-ID:i-...` for the sessions EC2 makes for
    /// an instance profile); capture contains it only if its role is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_of: Option<String>,
    /// The finding's ARN (`arn`), as GuardDuty gives it: Security Hub knows the finding by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The VPC of the instance's first interface as GuardDuty described it (EC2's answer, not
    /// the instance's). Only a hint: capture claims the instance in it at once, alongside its
    /// first reads, and checks it against EC2's own description before it relies on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
}

/// The finding types about an instance's credentials used from elsewhere (`.OutsideAWS`,
/// `.InsideAWS`): GuardDuty names the access key, not the instance.
pub const CREDENTIAL_EXFILTRATION_TYPE: &str =
    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration";

/// One finding read from a document, or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedFinding {
    Valid(Box<Finding>),
    Invalid {
        finding_id: Option<String>,
        reason: String,
    },
}

/// Reads every finding a JSON document holds: an EventBridge event, `{"detail": ...}`, a bare
/// finding, `get-findings` output, or a JSON array of any of those.
pub fn parse_document(text: &str) -> Vec<ParsedFinding> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => findings_in_value(&value),
        Err(error) => vec![ParsedFinding::Invalid {
            finding_id: None,
            reason: format!("not JSON ({error}); expected a GuardDuty finding, an EventBridge event or get-findings output"),
        }],
    }
}

/// Like [`parse_document`], for a document already parsed (a Lambda's event).
pub fn findings_in_value(value: &Value) -> Vec<ParsedFinding> {
    if let Value::Array(items) = value {
        return items.iter().flat_map(findings_in_value).collect();
    }
    let Value::Object(object) = value else {
        return vec![invalid(None, "expected a JSON object or array")];
    };
    for key in ["Findings", "findings"] {
        if let Some(list) = object.get(key) {
            let Value::Array(items) = list else {
                return vec![invalid(None, &format!("`{key}` must be an array"))];
            };
            if items.is_empty() {
                return vec![invalid(
                    None,
                    &format!("`{key}` is empty: no finding to read"),
                )];
            }
            return items
                .iter()
                .map(|item| parse_finding(&camel_case_keys(item), None))
                .collect();
        }
    }
    if let Some(detail) = object.get("detail") {
        let detail_type = object
            .get("detail-type")
            .map(|v| text_of(v).unwrap_or_default());
        return vec![parse_finding(&camel_case_keys(detail), detail_type)];
    }
    vec![parse_finding(&camel_case_keys(value), None)]
}

fn invalid(finding_id: Option<String>, reason: &str) -> ParsedFinding {
    ParsedFinding::Invalid {
        finding_id,
        reason: reason.to_string(),
    }
}

/// `get-findings` output is PascalCase; EventBridge is camelCase. Lower-casing the first letter
/// of every key makes both one shape (`AccountId` -> `accountId`, `IpAddressV4` -> `ipAddressV4`).
fn camel_case_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, inner)| {
                    let mut chars = key.chars();
                    let camel = match chars.next() {
                        Some(first) => first.to_lowercase().chain(chars).collect(),
                        None => String::new(),
                    };
                    (camel, camel_case_keys(inner))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(camel_case_keys).collect()),
        other => other.clone(),
    }
}

fn parse_finding(finding: &Value, detail_type: Option<String>) -> ParsedFinding {
    if !finding.is_object() {
        return invalid(None, "a finding must be a JSON object");
    }
    let id = path(finding, &["id"]).and_then(text_of);
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return invalid(None, "the finding has no `id`");
    };
    let Some(finding_type) = path(finding, &["type"]).and_then(text_of) else {
        return invalid(Some(id), "the finding has no `type`");
    };
    let severity = match path(finding, &["severity"]).map(number_of) {
        Some(Some(severity)) if (0.0..=10.0).contains(&severity) => severity,
        Some(_) => return invalid(Some(id), "`severity` is not a number between 0 and 10"),
        None => return invalid(Some(id), "the finding has no `severity`"),
    };
    let instance = path(finding, &["resource", "instanceDetails"]);
    // Ids are strings in every GuardDuty shape; a number or a list there is not an id.
    let id_field = |value: Option<&Value>, name: &str| match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.trim().to_string())),
        Some(_) => Err(format!("`{name}` must be a string")),
    };
    let ids = (
        id_field(
            instance.and_then(|details| path(details, &["instanceId"])),
            "resource.instanceDetails.instanceId",
        ),
        id_field(path(finding, &["accountId"]), "accountId"),
        id_field(path(finding, &["region"]), "region"),
    );
    let (instance_id, account_id, region) = match ids {
        (Ok(instance_id), Ok(account_id), Ok(region)) => (instance_id, account_id, region),
        (Err(reason), _, _) | (_, Err(reason), _) | (_, _, Err(reason)) => {
            return invalid(Some(id), &reason)
        }
    };
    let resource_type = path(finding, &["resource", "resourceType"]).and_then(text_of);
    let (instance_id, credentials_of) = match credential_source(finding, &finding_type) {
        None => (instance_id, None),
        Some((session, role)) => match instance_id {
            Some(named) if named != session => {
                return invalid(
                    Some(id),
                    &format!("the credentials are of instance {session:?} (their session), but `resource.instanceDetails.instanceId` names {named:?}"),
                )
            }
            _ => (Some(session), Some(role)),
        },
    };
    // Ids go into EC2 calls, role ARNs and endpoints: a finding whose ids cannot be AWS's is
    // not acted on at all.
    let shown = |text: &str| text.chars().take(40).collect::<String>();
    if let Some(bad) = instance_id
        .as_deref()
        .filter(|i| !crate::ec2::is_instance_id(i))
    {
        return invalid(Some(id), &format!("`resource.instanceDetails.instanceId` {:?} is not an EC2 instance id (i- followed by 8 or 17 lowercase hex digits)", shown(bad)));
    }
    if let Some(bad) = account_id
        .as_deref()
        .filter(|a| !crate::ec2::is_account_id(a))
    {
        return invalid(
            Some(id),
            &format!(
                "`accountId` {:?} is not an AWS account id (12 digits)",
                shown(bad)
            ),
        );
    }
    if let Some(bad) = region.as_deref().filter(|r| !crate::ec2::is_region(r)) {
        return invalid(
            Some(id),
            &format!(
                "`region` {:?} is not an AWS region name (such as eu-west-1)",
                shown(bad)
            ),
        );
    }
    let additional_info = path(finding, &["service", "additionalInfo"]);
    let service_flag = |name: &str| {
        path(finding, &["service", name])
            .and_then(bool_of)
            .unwrap_or(false)
    };

    ParsedFinding::Valid(Box::new(Finding {
        id,
        finding_type,
        severity,
        account_id,
        region,
        resource_type,
        instance_id,
        resource_role: path(finding, &["service", "resourceRole"]).and_then(text_of),
        archived: service_flag("archived"),
        sample: additional_info.map(is_sample).unwrap_or(false)
            || path(finding, &["sample"])
                .and_then(bool_of)
                .unwrap_or(false),
        detail_type,
        remote_addresses: path(finding, &["service", "action"])
            .map(remote_addresses)
            .unwrap_or_default(),
        instance_tags: instance
            .and_then(|details| path(details, &["tags"]))
            .map(tags_of)
            .unwrap_or_default(),
        updated_at: path(finding, &["updatedAt"]).and_then(timestamp_of),
        first_seen: path(finding, &["service", "eventFirstSeen"]).and_then(timestamp_of),
        last_seen: path(finding, &["service", "eventLastSeen"]).and_then(timestamp_of),
        credentials_of,
        arn: path(finding, &["arn"]).and_then(text_of),
        vpc_id: instance.and_then(first_vpc_id),
    }))
}

/// The VPC id of the first interface in `instanceDetails.networkInterfaces`, if it has the
/// shape of one.
fn first_vpc_id(instance_details: &Value) -> Option<String> {
    let interfaces = path(instance_details, &["networkInterfaces"])?.as_array()?;
    let vpc_id = path(interfaces.first()?, &["vpcId"]).and_then(text_of)?;
    crate::ec2::is_vpc_id(&vpc_id).then_some(vpc_id)
}

/// The instance session and role of an `InstanceCredentialExfiltration` finding: the part of
/// `principalId` after the colon, when it is an instance id (EC2 names the sessions it makes
/// for an instance profile after the instance), and `userName`. None for any other finding,
/// or when the session is not an instance's (then the finding is not about an instance).
fn credential_source(finding: &Value, finding_type: &str) -> Option<(String, String)> {
    if !finding_type.starts_with(CREDENTIAL_EXFILTRATION_TYPE) {
        return None;
    }
    let details = path(finding, &["resource", "accessKeyDetails"])?;
    let principal = path(details, &["principalId"]).and_then(text_of)?;
    let role = path(details, &["userName"]).and_then(text_of)?;
    let (_, session) = principal.split_once(':')?;
    (crate::ec2::is_instance_id(session) && !role.is_empty()).then(|| (session.to_string(), role))
}

/// `additionalInfo` marks samples as `"sample": true`, and `get-findings` output nests the same
/// object as a JSON string in `value`.
fn is_sample(additional_info: &Value) -> bool {
    if path(additional_info, &["sample"]).and_then(bool_of) == Some(true) {
        return true;
    }
    path(additional_info, &["value"])
        .and_then(Value::as_str)
        .and_then(|nested| serde_json::from_str::<Value>(nested).ok())
        .and_then(|nested| path(&nested, &["sample"]).and_then(bool_of))
        .unwrap_or(false)
}

/// Every `remoteIpDetails` under the action, whatever the action kind: network connection, AWS
/// API call, port probe (one per probe detail), Kubernetes API call, RDS login attempt...
fn remote_addresses(action: &Value) -> Vec<IpAddr> {
    fn walk(value: &Value, found: &mut Vec<IpAddr>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    if key == "remoteIpDetails" {
                        for field in ["ipAddressV4", "ipAddressV6"] {
                            let address = path(inner, &[field])
                                .and_then(Value::as_str)
                                .and_then(|text| text.trim().parse::<IpAddr>().ok());
                            if let Some(address) = address {
                                if !found.contains(&address) {
                                    found.push(address);
                                }
                            }
                        }
                    }
                    walk(inner, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(action, &mut found);
    found
}

fn tags_of(tags: &Value) -> Vec<(String, String)> {
    tags.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|tag| {
                    let key = path(tag, &["key"]).and_then(text_of)?;
                    let value = path(tag, &["value"]).and_then(text_of).unwrap_or_default();
                    Some((key, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn path<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .try_fold(value, |current, key| current.get(key))
        .filter(|found| !found.is_null())
}

/// Strings as they are; numbers and booleans as their text (ids are sometimes numeric).
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.trim().to_string()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

fn bool_of(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// GuardDuty timestamps come as RFC 3339 (`2017-10-31T23:16:23.824Z`), as
/// `2025-02-25 20:40:06.721` (no zone: UTC), or as epoch seconds or milliseconds.
pub fn timestamp_of(value: &Value) -> Option<String> {
    let instant: DateTime<Utc> = match value {
        Value::Number(number) => epoch(number.as_f64()?)?,
        Value::String(text) => {
            let text = text.trim();
            if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
                parsed.with_timezone(&Utc)
            } else if let Ok(seconds) = text.parse::<f64>() {
                epoch(seconds)?
            } else {
                let naive = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                    .iter()
                    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())?;
                Utc.from_utc_datetime(&naive)
            }
        }
        _ => return None,
    };
    Some(instant.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Epoch values above 10^11 are milliseconds (10^11 seconds is the year 5138).
fn epoch(value: f64) -> Option<DateTime<Utc>> {
    let millis = if value.abs() >= 1e11 {
        value
    } else {
        value * 1000.0
    };
    Utc.timestamp_millis_opt(millis as i64).single()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn only(text: &str) -> Finding {
        match parse_document(text).as_slice() {
            [ParsedFinding::Valid(finding)] => (**finding).clone(),
            other => panic!("expected one valid finding, got {other:?}"),
        }
    }

    #[test]
    fn the_vpc_of_the_first_interface_is_kept_as_a_hint_when_it_is_a_vpc_id() {
        let with_vpc = |vpc: Value| {
            json!({"id": "f", "type": "Backdoor:EC2/C&CActivity.B", "severity": 8,
                "resource": {"resourceType": "Instance", "instanceDetails": {
                    "instanceId": "i-0abc1234def567890",
                    "networkInterfaces": [{"vpcId": vpc}, {"vpcId": "vpc-00000002"}]}}})
            .to_string()
        };
        assert_eq!(
            only(&with_vpc(json!("vpc-0abc1234def567890")))
                .vpc_id
                .as_deref(),
            Some("vpc-0abc1234def567890")
        );
        for bad in [
            json!("vpc-XYZ"),
            json!("sg-00000001"),
            json!(7),
            json!(null),
        ] {
            assert_eq!(only(&with_vpc(bad.clone())).vpc_id, None, "{bad}");
        }
    }

    fn exfiltration(principal: &str) -> Value {
        json!({
            "id": "f2", "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            "severity": 8.0, "accountId": "111122223333", "region": "eu-west-1",
            "resource": {"resourceType": "AccessKey", "accessKeyDetails": {
                "accessKeyId": "ASIAEXAMPLE", "principalId": principal,
                "userName": "web-role", "userType": "AssumedRole"}},
            "service": {"action": {"actionType": "AWS_API_CALL", "awsApiCallAction": {
                "api": "ListBuckets", "remoteIpDetails": {"ipAddressV4": "203.0.113.9"}}}}
        })
    }

    #[test]
    fn stolen_instance_credentials_name_the_instance_their_session_was_made_for() {
        let finding = only(&exfiltration("AROAEXAMPLEROLEID:i-0abc1234def567890").to_string());
        assert_eq!(finding.instance_id.as_deref(), Some("i-0abc1234def567890"));
        assert_eq!(finding.credentials_of.as_deref(), Some("web-role"));
        assert_eq!(finding.resource_type.as_deref(), Some("AccessKey"));

        // A session that is not an instance's names no instance.
        for principal in ["AROAEXAMPLEROLEID:alice", "AROAEXAMPLEROLEID", "AIDAUSER"] {
            let finding = only(&exfiltration(principal).to_string());
            assert_eq!(finding.instance_id, None, "{principal}");
            assert_eq!(finding.credentials_of, None, "{principal}");
        }
        // Another finding type with the same shape is not read this way.
        let mut other = exfiltration("AROAEXAMPLEROLEID:i-0abc1234def567890");
        other["type"] = json!("UnauthorizedAccess:IAMUser/ConsoleLoginSuccess.B");
        assert_eq!(only(&other.to_string()).instance_id, None);

        // A finding that names another instance than the session is not acted on.
        let mut both = exfiltration("AROAEXAMPLEROLEID:i-0abc1234def567890");
        both["resource"]["instanceDetails"] = json!({"instanceId": "i-0fff1234def567890"});
        match parse_document(&both.to_string()).as_slice() {
            [ParsedFinding::Invalid { reason, .. }] => {
                assert!(reason.contains("their session"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    fn ec2_finding() -> Value {
        json!({
            "id": "f1", "type": "Backdoor:EC2/C&CActivity.B", "severity": 8.0,
            "accountId": "111122223333", "region": "eu-west-1",
            "resource": {"resourceType": "Instance", "instanceDetails": {
                "instanceId": "i-0abc1234def567890", "launchTime": "2024-01-01T00:00:00Z",
                "tags": [{"key": "cordon:exempt", "value": "true"}]}},
            "service": {"resourceRole": "ACTOR", "archived": false,
                "eventFirstSeen": "2024-05-01T09:58:00Z", "eventLastSeen": "2024-05-01T10:00:00.000Z",
                "action": {"actionType": "NETWORK_CONNECTION", "networkConnectionAction": {
                    "remoteIpDetails": {"ipAddressV4": "198.51.100.7",
                        "organization": {"asn": "64500"}}}}},
            "updatedAt": "2024-05-01T10:00:00.5Z"
        })
    }

    #[test]
    fn bare_finding_envelope_and_detail_wrapper_read_the_same() {
        let bare = only(&ec2_finding().to_string());
        let envelope = json!({"version": "0", "source": "aws.guardduty",
            "detail-type": "GuardDuty Finding", "detail": ec2_finding()});
        let wrapped = only(&envelope.to_string());
        let detail_only = only(&json!({"detail": ec2_finding()}).to_string());
        assert_eq!(wrapped.detail_type.as_deref(), Some("GuardDuty Finding"));
        assert_eq!(detail_only.detail_type, None);
        for finding in [&bare, &wrapped, &detail_only] {
            assert_eq!(finding.instance_id.as_deref(), Some("i-0abc1234def567890"));
            assert_eq!(finding.severity, 8.0);
            assert_eq!(finding.region.as_deref(), Some("eu-west-1"));
            assert_eq!(finding.resource_role.as_deref(), Some("ACTOR"));
            assert_eq!(
                finding.first_seen.as_deref(),
                Some("2024-05-01T09:58:00.000Z")
            );
            assert!(finding
                .last_seen
                .as_deref()
                .unwrap()
                .starts_with("2024-05-01T10:00:00"));
            assert_eq!(
                finding.remote_addresses,
                vec!["198.51.100.7".parse::<IpAddr>().unwrap()]
            );
            assert_eq!(
                finding.instance_tags,
                vec![("cordon:exempt".into(), "true".into())]
            );
            assert_eq!(
                finding.updated_at.as_deref(),
                Some("2024-05-01T10:00:00.500Z")
            );
        }
    }

    #[test]
    fn get_findings_output_in_pascal_case_yields_every_finding() {
        let doc = json!({"Findings": [
            {"Id": "a", "Type": "Backdoor:EC2/DenialOfService.Tcp", "Severity": 8,
             "AccountId": "111122223333", "Region": "us-east-1",
             "Resource": {"ResourceType": "Instance", "InstanceDetails": {"InstanceId": "i-0123456789abcdef0",
                "NetworkInterfaces": [{"Ipv6Addresses": ["2001:db8::5"]}]}},
             "Service": {"Archived": true, "ResourceRole": "TARGET",
                "AdditionalInfo": {"Value": "{\"sample\":true}", "Type": "default"},
                "Action": {"PortProbeAction": {"PortProbeDetails": [
                    {"RemoteIpDetails": {"IpAddressV4": "203.0.113.1"}},
                    {"RemoteIpDetails": {"IpAddressV4": "203.0.113.2"}},
                    {"RemoteIpDetails": {"IpAddressV4": "203.0.113.1"}}]}}}},
            {"Id": "b", "Type": "Recon:EC2/PortProbeUnprotectedPort", "Severity": "2.5",
             "Resource": {"ResourceType": "Instance"}}
        ]});
        let parsed = parse_document(&doc.to_string());
        assert_eq!(parsed.len(), 2);
        let ParsedFinding::Valid(first) = &parsed[0] else {
            panic!("{parsed:?}")
        };
        assert_eq!(first.instance_id.as_deref(), Some("i-0123456789abcdef0"));
        assert!(first.archived && first.sample);
        assert_eq!(first.resource_role.as_deref(), Some("TARGET"));
        let probes: Vec<String> = first
            .remote_addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(probes, ["203.0.113.1", "203.0.113.2"]);
        let ParsedFinding::Valid(second) = &parsed[1] else {
            panic!("{parsed:?}")
        };
        assert_eq!(second.severity, 2.5);
        assert_eq!(second.instance_id, None);
    }

    #[test]
    fn remote_addresses_come_from_every_action_kind_including_ipv6() {
        let mut finding = ec2_finding();
        finding["service"]["action"] = json!({
            "actionType": "AWS_API_CALL",
            "awsApiCallAction": {"remoteIpDetails": {"ipAddressV4": "192.0.2.9", "ipAddressV6": "2001:db8::9"}},
            "kubernetesApiCallAction": {"remoteIpDetails": {"ipAddressV4": "192.0.2.10"}},
            "dnsRequestAction": {"domain": "evil.example"}
        });
        let addresses: Vec<String> = only(&finding.to_string())
            .remote_addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(addresses, ["192.0.2.9", "2001:db8::9", "192.0.2.10"]);
    }

    #[test]
    fn missing_or_malformed_fields_make_an_invalid_entry_that_names_the_field() {
        let cases = [
            ("{not json", "not JSON"),
            (r#"{"type": "x", "severity": 5}"#, "no `id`"),
            (r#"{"id": "x", "severity": 5}"#, "no `type`"),
            (r#"{"id": "x", "type": "t"}"#, "no `severity`"),
            (
                r#"{"id": "x", "type": "t", "severity": "high"}"#,
                "`severity`",
            ),
            (r#"{"id": "x", "type": "t", "severity": 11}"#, "`severity`"),
            (r#"{"Findings": []}"#, "empty"),
            ("42", "JSON object"),
        ];
        for (text, expected) in cases {
            match parse_document(text).as_slice() {
                [ParsedFinding::Invalid { reason, .. }] => {
                    assert!(reason.contains(expected), "{text}: {reason}")
                }
                other => panic!("{text}: expected invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn timestamps_in_every_form_normalise_to_rfc3339() {
        let expect = "2025-02-25T20:40:06.721Z";
        for raw in [
            json!("2025-02-25T20:40:06.721Z"),
            json!("2025-02-25 20:40:06.721"),
            json!("2025-02-25 20:40:06.721000000"),
            json!("2025-02-25T22:40:06.721+02:00"),
            json!(1740516006721_i64),
            json!(1740516006.721),
            json!("1740516006721"),
        ] {
            assert_eq!(timestamp_of(&raw).as_deref(), Some(expect), "{raw}");
        }
        assert_eq!(timestamp_of(&json!("yesterday")), None);
    }

    #[test]
    fn sample_flag_is_read_from_additional_info() {
        let mut finding = ec2_finding();
        assert!(!only(&finding.to_string()).sample);
        finding["service"]["additionalInfo"] = json!({"sample": "true"});
        assert!(only(&finding.to_string()).sample);
    }
}
