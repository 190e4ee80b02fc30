//! Capture: record an instance's original network state before anything changes it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::claim;
use crate::config::{Config, Mode};
use crate::ec2::{Ec2, GroupRole, Instance, SecurityGroup, SgRule};
use crate::error::{CordonError, Result, StepError};
use crate::finding::Finding;
use crate::record::{
    check_tag_room, state_record_keys, state_tags, state_text, CapturedState, RECORD_VERSION,
};
use crate::seal::{state_message, vetted_record, Place, Seal, Unsealed, STATE_SEAL_TAG};

/// What the later steps need to know of the finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingSummary {
    pub id: String,
    pub finding_type: String,
    pub severity: f64,
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub remote_addresses: Vec<IpAddr>,
    /// When GuardDuty first and last saw the activity.
    #[serde(default)]
    pub first_seen: Option<String>,
    #[serde(default)]
    pub last_seen: Option<String>,
    /// When GuardDuty last updated the finding: the time-to-isolation metric counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The finding's ARN, which Security Hub knows it by (checked where it is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The instance's VPC as the finding names it: where capture claims the instance while it
    /// reads it (checked against EC2's description before it is relied on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
}

impl From<&Finding> for FindingSummary {
    fn from(finding: &Finding) -> Self {
        FindingSummary {
            id: finding.id.clone(),
            finding_type: finding.finding_type.clone(),
            severity: finding.severity,
            account_id: finding.account_id.clone(),
            region: finding.region.clone(),
            remote_addresses: finding.remote_addresses.clone(),
            first_seen: finding.first_seen.clone(),
            last_seen: finding.last_seen.clone(),
            updated_at: finding.updated_at.clone(),
            arn: finding.arn.clone(),
            vpc_id: finding.vpc_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureStatus {
    Captured,
    AlreadyQuarantined,
    Skipped,
    /// Read and recorded in this output only, in report-only mode: the measures plan from
    /// it and change nothing.
    ReportOnly,
}

/// The capture step's output, which is also the input of the isolation and NACL steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureOutput {
    pub status: CaptureStatus,
    pub reason: String,
    pub instance_id: Option<String>,
    pub finding: Option<FindingSummary>,
    pub record: Option<CapturedState>,
    /// Whether the record is also on the instance as `cordon:state:*` tags.
    pub tags_written: bool,
    pub warnings: Vec<StepError>,
    /// How long the workflow waits for a decision (the approval task's `TimeoutSecondsPath`).
    #[serde(default)]
    pub approval_timeout_seconds: Option<u64>,
    /// How many different people must approve a restore: 1, or 2 under the two-person rule
    /// (the state machine asks for a second approval when this is 2).
    #[serde(default)]
    pub approvals_required: Option<u8>,
    /// When the execution started, for the time-to-isolation metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_started_at: Option<String>,
    /// What this capture read that isolate-sg, run right after it, need not read again
    /// ([`CaptureOutput::fresh_view`] says when it may be trusted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<CaptureView>,
}

/// Cordon's conversion and isolation groups of the instance's VPCs and the instance's
/// lifecycle, as capture read them; the interfaces are the record's, read in the same round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureView {
    pub groups: Vec<SecurityGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<String>,
}

/// How old a capture's view may be for isolate-sg to swap from it without reading again:
/// far longer than the transition and a cold start take, far shorter than any retry after a
/// timeout or any redrive, which always read again.
pub const FRESH_VIEW_SECONDS: i64 = 30;

impl CaptureOutput {
    pub fn skipped(
        instance_id: Option<String>,
        finding: Option<FindingSummary>,
        reason: String,
    ) -> Self {
        CaptureOutput {
            status: CaptureStatus::Skipped,
            reason,
            instance_id,
            finding,
            record: None,
            tags_written: false,
            warnings: Vec::new(),
            approval_timeout_seconds: None,
            approvals_required: None,
            execution_started_at: None,
            view: None,
        }
    }

    /// Nothing captured: the instance is held already (`reason` says by what), with the
    /// record kept of it when there is one.
    pub fn already_quarantined(
        instance_id: &str,
        finding: Option<FindingSummary>,
        reason: String,
        record: Option<CapturedState>,
        warnings: Vec<StepError>,
    ) -> Self {
        CaptureOutput {
            status: CaptureStatus::AlreadyQuarantined,
            reason,
            instance_id: Some(instance_id.into()),
            finding,
            tags_written: record.is_some(),
            record,
            warnings,
            approval_timeout_seconds: None,
            approvals_required: None,
            execution_started_at: None,
            view: None,
        }
    }

    /// The capture's view as isolate-sg may use it instead of reading again: only on the
    /// step's first attempt (`retry_count` 0, `$$.State.RetryCount`; a retried step may find
    /// interfaces already isolated, which must not go back through conversion) and while the
    /// record is younger than [`FRESH_VIEW_SECONDS`]. The interfaces are the record's, which
    /// capture read in the same round (not when it resumed a cut-short isolation from tags:
    /// then there is no view).
    pub fn fresh_view(
        &self,
        retry_count: Option<u32>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Seen> {
        let (view, record) = (self.view.as_ref()?, self.record.as_ref()?);
        if retry_count != Some(0) || self.status != CaptureStatus::Captured {
            return None;
        }
        let captured_at = chrono::DateTime::parse_from_rfc3339(&record.captured_at).ok()?;
        let age = (now - captured_at.with_timezone(&chrono::Utc)).num_seconds();
        if !(0..=FRESH_VIEW_SECONDS).contains(&age) {
            return None;
        }
        Some(Seen {
            groups: view.groups.clone(),
            instance: Some(Instance {
                id: record.instance_id.clone(),
                state: record.instance_state.clone(),
                interfaces: record.interfaces.clone(),
                lifecycle: view.lifecycle.clone(),
                ..Instance::default()
            }),
        })
    }
}

/// Where one interface stands against Cordon's groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// On groups of its own: what it has is its original state.
    Original,
    /// On the isolation group alone.
    Isolated,
    /// On another Cordon group (the conversion group, which allows everything both ways, or
    /// the isolation group beside others): an isolation cut short, to be finished.
    Incomplete(String),
}

pub fn standing(
    interface: &crate::ec2::NetworkInterface,
    cordon_groups: &[SecurityGroup],
) -> Standing {
    let cordon: Vec<&SecurityGroup> = cordon_groups
        .iter()
        .filter(|g| interface.groups.contains(&g.id))
        .collect();
    match cordon.as_slice() {
        [] => Standing::Original,
        [only] if only.role == Some(GroupRole::Isolation) && interface.groups.len() == 1 => {
            Standing::Isolated
        }
        [group, ..] => Standing::Incomplete(group.id.clone()),
    }
}

/// Why the instance counts as quarantined already: every interface Cordon can contain is on
/// the isolation group alone, and that group isolates (Cordon's name, no egress, ingress from
/// the forensic source only). An interface on the conversion group does not count: that is an
/// isolation cut short, which leaves it open both ways, and which the workflow finishes. Nor
/// does a group that only says it is Cordon's: whoever could make a group named and tagged as
/// Cordon's isolation group in a VPC Cordon has not used yet, with rules of their own, and put
/// the instance on it, would otherwise keep every finding of the instance from containing it.
///
/// With Session Manager on, an isolation group's HTTPS rules to single addresses count only
/// when they are those `session_rules` (by VPC) allow: the rules for the VPC's endpoints as
/// read now. A rule of that shape to any other address (someone's way out on 443) is an
/// opening, and the instance is contained again, which revokes it.
pub fn quarantine_evidence(
    instance: &Instance,
    cordon_groups: &[SecurityGroup],
    access: crate::isolate::Access<'_>,
    session_rules: &BTreeMap<String, Vec<SgRule>>,
) -> Option<String> {
    let (ingress, egress) = crate::isolate::desired_rules(GroupRole::Isolation, access.forensic);
    let egress_as_wanted = |g: &SecurityGroup| {
        let (revoke, authorize) = crate::isolate::rule_changes(&g.egress, &egress);
        let endpoints = session_rules.get(&g.vpc_id);
        authorize.is_empty()
            && revoke.iter().all(|rule| {
                access.leaves_to_sessions(GroupRole::Isolation, rule)
                    && endpoints.is_some_and(|allowed| allowed.contains(rule))
            })
    };
    let isolates = |group_id: &String| {
        cordon_groups.iter().any(|g| {
            &g.id == group_id
                && g.named_as_cordons()
                && crate::isolate::rule_changes(&g.ingress, &ingress) == (vec![], vec![])
                && egress_as_wanted(g)
        })
    };
    let containable: Vec<_> = instance
        .interfaces
        .iter()
        .filter(|i| i.not_containable().is_none())
        .collect();
    let all_isolated = !containable.is_empty()
        && containable.iter().all(|i| {
            standing(i, cordon_groups) == Standing::Isolated && i.groups.iter().all(isolates)
        });
    all_isolated.then(|| {
        let first = containable[0];
        format!(
            "{} already carries Cordon's isolation group {}: the instance is already quarantined",
            first.id, first.groups[0]
        )
    })
}

/// With Session Manager on, the rules its endpoints need in each VPC whose isolation group
/// holds rules of their shape: read only then, so a capture pays for it only where there is
/// something to check. A VPC whose endpoints cannot be read gets none: its rules of that
/// shape count as openings, and the instance is contained again.
async fn session_rules_for(
    ec2: &impl Ec2,
    cordon_groups: &[SecurityGroup],
    access: crate::isolate::Access<'_>,
) -> BTreeMap<String, Vec<SgRule>> {
    let mut rules = BTreeMap::new();
    if !access.session_manager {
        return rules;
    }
    for group in cordon_groups {
        let shaped = group.role == Some(GroupRole::Isolation)
            && group.egress.iter().any(crate::session::is_session_rule);
        if !shaped || rules.contains_key(&group.vpc_id) {
            continue;
        }
        if let Ok(endpoints) = ec2.session_endpoints(&group.vpc_id).await {
            rules.insert(
                group.vpc_id.clone(),
                crate::session::rules_for(crate::session::usable(&endpoints)),
            );
        }
    }
    rules
}

/// Where the record's tags go.
enum Kept {
    OnClaim,
    OnInstance,
    /// No claim to carry them (its name is taken by a group that is not one), and the roles
    /// may not write them on the instance: the execution alone keeps the record.
    Nowhere,
}

/// The record of an instance whose isolation was cut short: the recorded originals (from the
/// `cordon:state:*` tags) for every interface Cordon had already moved, the current groups
/// for those it had not. An interface on a Cordon group with no recorded originals keeps
/// only its other groups (the record cannot say more), with a warning: restore then leaves
/// it isolated rather than guess.
pub fn resumed_interfaces(
    instance: &Instance,
    cordon_groups: &[SecurityGroup],
    tagged: Option<&CapturedState>,
) -> (Vec<crate::ec2::NetworkInterface>, Vec<StepError>) {
    let cordon_ids: Vec<&String> = cordon_groups.iter().map(|g| &g.id).collect();
    let mut warnings = Vec::new();
    let interfaces = instance
        .interfaces
        .iter()
        .map(|live| {
            if standing(live, cordon_groups) == Standing::Original {
                return live.clone();
            }
            let recorded = tagged.and_then(|r| r.interfaces.iter().find(|i| i.id == live.id));
            match recorded {
                // The live names are of Cordon's groups: the original groups' names are not
                // known any more, and the page shows their ids alone.
                Some(recorded) => crate::ec2::NetworkInterface {
                    groups: recorded.groups.clone(),
                    group_names: names_of(live, &recorded.groups),
                    conntrack: recorded.conntrack,
                    ..live.clone()
                },
                None => {
                    let own: Vec<String> = live
                        .groups
                        .iter()
                        .filter(|g| !cordon_ids.contains(g))
                        .cloned()
                        .collect();
                    warnings.push(StepError {
                        error: "Cordon.CorruptRecord".into(),
                        cause: format!(
                            "{} is on Cordon's groups ({}) and no record of its original groups was found; recorded as {}, so restore cannot give it back what it had",
                            live.id,
                            live.groups.join(", "),
                            if own.is_empty() { "no group".to_string() } else { own.join(", ") }
                        ),
                    });
                    crate::ec2::NetworkInterface {
                        group_names: names_of(live, &own),
                        groups: own,
                        ..live.clone()
                    }
                }
            }
        })
        .collect();
    (interfaces, warnings)
}

/// The names `live` reports for `groups`.
fn names_of(
    live: &crate::ec2::NetworkInterface,
    groups: &[String],
) -> std::collections::BTreeMap<String, String> {
    live.group_names
        .iter()
        .filter(|(id, _)| groups.contains(id))
        .map(|(id, name)| (id.clone(), name.clone()))
        .collect()
}

/// How capture makes its first calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The reads all at once: the shortest path, when nothing says EC2's
    /// buckets are short.
    AtOnce,
    /// One after another, each call only once the one before it went through (Cordon's groups,
    /// the description, the attributes, the claim): a step retried, after a throttled or
    /// unavailable EC2 as a rule.
    /// Made at once, four reads on three buckets must all go through together; in a burst one
    /// of them is throttled, the others' tokens are spent for nothing, and the retry starts
    /// all four again, so the buckets drain while few captures complete. One after another,
    /// a throttled call costs no other bucket a token.
    OneAfterAnother,
}

impl Pace {
    /// The pace of the capture step's attempt `retry_count` (`$$.State.RetryCount`; None when
    /// the caller does not say, as `cordon isolate` and a definition before it do).
    pub fn of_attempt(retry_count: Option<u32>) -> Pace {
        match retry_count {
            Some(retries) if retries > 0 => Pace::OneAfterAnother,
            _ => Pace::AtOnce,
        }
    }

    /// The pace of the capture step whose input is `input` (its `retry_count`, when the
    /// definition hands it; an input that does not parse is taken at the first attempt's pace,
    /// and the step itself then says what is wrong with it).
    pub fn of_input(input: &serde_json::Value) -> Pace {
        let retry_count = crate::steps::unwrap_capture_input(input)
            .ok()
            .and_then(|input| input.retry_count);
        Pace::of_attempt(retry_count)
    }
}

/// Captures `instance_id`. Nothing is changed on the instance, and nothing at all when it is
/// exempt, gone, or already quarantined. An `owner` (the execution) claims the instance with a
/// group that carries the record, so that of several executions for one instance only one goes
/// on; without one the record goes on the instance's own tags.
pub async fn capture(
    ec2: &impl Ec2,
    instance_id: &str,
    finding: Option<FindingSummary>,
    owner: Option<&str>,
    now: &str,
) -> Result<CaptureOutput> {
    Ok(capture_seeing(
        ec2,
        instance_id,
        finding,
        owner,
        now,
        Pace::AtOnce,
        &Config::default(),
        // `cordon isolate` runs on a person's credentials, which may not make seals: a
        // record a person could seal would be trusted everywhere Cordon restores.
        &Unsealed,
    )
    .await?
    .0)
}

/// What a capture read that isolating in the same process need not read again.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Cordon's groups in the instance's VPCs (none when the capture stopped before them).
    pub groups: Vec<SecurityGroup>,
    /// The instance as the capture found it.
    pub instance: Option<Instance>,
}

/// Capture's first calls, as they answered.
struct FirstReads {
    instance: Result<Instance>,
    /// Cordon's groups in the VPC the finding names, or in every VPC when it names none.
    groups_near: Result<Vec<SecurityGroup>>,
    /// The instance's attributes (None: not read yet, and read only if the record needs them).
    termination_protection: Option<Result<bool>>,
    shutdown_behavior: Option<Result<String>>,
}

/// Cordon's groups in `vpc_id`, or in every VPC of the region when there is none: one VPC's
/// groups are a small answer whatever a burst has claimed elsewhere in the region (a
/// thousand claims are a thousand groups, and more than one page).
async fn cordon_groups_near(ec2: &impl Ec2, vpc_id: Option<&str>) -> Result<Vec<SecurityGroup>> {
    match vpc_id {
        Some(vpc_id) => ec2.cordon_groups(&[vpc_id.to_string()]).await,
        None => ec2.cordon_groups_anywhere().await,
    }
}

/// The reads, all at once.
async fn read_at_once(ec2: &impl Ec2, instance_id: &str, named_vpc: Option<&str>) -> FirstReads {
    let (instance, termination_protection, shutdown_behavior, groups_near) = tokio::join!(
        ec2.describe_instance(instance_id),
        ec2.termination_protection(instance_id),
        ec2.shutdown_behavior(instance_id),
        cordon_groups_near(ec2, named_vpc),
    );
    FirstReads {
        instance,
        groups_near,
        termination_protection: Some(termination_protection),
        shutdown_behavior: Some(shutdown_behavior),
    }
}

/// The reads one after another ([`Pace::OneAfterAnother`]): Cordon's groups (the largest
/// bucket), then the description. A failure stops the calls at once. The attributes wait
/// until the record needs them.
async fn read_one_after_another(
    ec2: &impl Ec2,
    instance_id: &str,
    named_vpc: Option<&str>,
) -> Result<FirstReads> {
    let groups = cordon_groups_near(ec2, named_vpc).await?;
    Ok(FirstReads {
        instance: Ok(ec2.describe_instance(instance_id).await?),
        groups_near: Ok(groups),
        termination_protection: None,
        shutdown_behavior: None,
    })
}

/// The record kept of `instance_id`, on its claim among `cordon_groups` or on the instance;
/// a record that cannot be read is a warning, and none. With the stack's record key, only a
/// record whose seal verifies is used: a resumed capture copies it into the execution's own
/// record, which the approved restore trusts, so a forged one would choose the groups the
/// instance is given back. Without a key (`cordon isolate`) nothing can be checked, and the
/// tags are taken as they are, as the caller's own `cordon restore` would.
async fn kept_record_of(
    instance: &Instance,
    cordon_groups: &[SecurityGroup],
    seal: &impl Seal,
    now: chrono::DateTime<chrono::Utc>,
    warnings: &mut Vec<StepError>,
) -> Option<CapturedState> {
    let claim = claim::claim_in(cordon_groups, &instance.id);
    let trust_unverified = !seal.has_key();
    match vetted_record(
        seal,
        trust_unverified,
        &instance.id,
        claim.as_ref(),
        &instance.tags,
        now,
    )
    .await
    {
        Ok(vetted) => {
            warnings.extend(vetted.refused.iter().map(|refused| StepError {
                error: "Cordon.RecordRefused".into(),
                cause: format!(
                    "the record on {} ({}) was not used: {}",
                    refused.resource, refused.record, refused.reason
                ),
            }));
            vetted.record
        }
        // KMS (or EC2) not answering must not hold back finishing an isolation: the record
        // is taken as missing, and restore leaves those interfaces isolated rather than guess.
        Err(error) => {
            warnings.push(error.to_report());
            None
        }
    }
}

/// The warning for a record with no room in tags.
fn no_room(error: CordonError) -> StepError {
    StepError {
        error: error.error_name().into(),
        cause: format!("{error}; the record is only in this step's output, so restore through the workflow or keep the output for `cordon restore`"),
    }
}

/// The record's seal at `place`, as a tag to write beside its chunks: none when `seal` writes
/// unsealed, or, with a warning, when KMS could not make it. Containment does not wait for
/// KMS: an unsealed record is still the record, and a break-glass restore says it is one.
async fn seal_tag(
    seal: &impl Seal,
    place: Place<'_>,
    record: &CapturedState,
    warnings: &mut Vec<StepError>,
) -> Option<(String, String)> {
    let message = state_message(place, &record.instance_id, &state_text(record));
    match seal.seal(&message).await {
        Ok(sealed) => sealed.map(|value| (STATE_SEAL_TAG.to_string(), value)),
        Err(error) => {
            warnings.push(StepError {
                error: "Cordon.RecordUnsealed".into(),
                cause: format!("the record of {} was written without its seal ({error}): `cordon restore` will refuse it unless told --trust-unverified; the execution's own record is whole", record.instance_id),
            });
            None
        }
    }
}

/// Writes `record` as the instance's own `cordon:state:*` tags (sealed when `seal` has a key),
/// dropping an older record's chunks and seal. Returns whether it is there; no room is a
/// warning.
async fn record_on_instance(
    ec2: &impl Ec2,
    instance: &Instance,
    record: &CapturedState,
    seal: &impl Seal,
    warnings: &mut Vec<StepError>,
) -> Result<bool> {
    let mut tags = state_tags(record);
    tags.extend(seal_tag(seal, Place::Instance, record, warnings).await);
    let old_keys = state_record_keys(&instance.tags);
    match check_tag_room(&instance.id, &instance.tags, &tags, &old_keys) {
        Ok(()) => {
            ec2.create_tags(&instance.id, &tags).await?;
            let stale: Vec<String> = old_keys
                .into_iter()
                .filter(|key| !tags.iter().any(|(new, _)| new == key))
                .collect();
            if !stale.is_empty() {
                ec2.delete_tags(&instance.id, &stale).await?;
            }
            Ok(true)
        }
        Err(error @ CordonError::TagQuotaExceeded { .. }) => {
            warnings.push(no_room(error));
            Ok(false)
        }
        Err(other) => Err(other),
    }
}

/// [`capture`], also giving what it read (Cordon's groups in the instance's VPCs and the
/// instance), so that isolating in the same process need not read them again.
// Each argument is a port, a key or a fact of this attempt: bundling them would hide which.
#[allow(clippy::too_many_arguments)]
pub async fn capture_seeing(
    ec2: &impl Ec2,
    instance_id: &str,
    finding: Option<FindingSummary>,
    owner: Option<&str>,
    now: &str,
    pace: Pace,
    config: &Config,
    seal: &impl Seal,
) -> Result<(CaptureOutput, Seen)> {
    let policy = &config.policy;
    // Report-only: no claim (which carries the record) and no record tags.
    let report_only = config.mode == Mode::ReportOnly;
    let owner = owner.filter(|_| !report_only);
    let now_utc = chrono::DateTime::parse_from_rfc3339(now)
        .map(|at| at.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now());
    // The protection flag and Cordon's groups need no answer from the description: all are
    // read at once, so the claim with the record is the second round trip and the swaps the
    // third and fourth. The finding's VPC (checked against the description below) keeps the
    // read of Cordon's groups to one VPC.
    let named_vpc = finding.as_ref().and_then(|f| f.vpc_id.clone());
    let FirstReads {
        instance,
        groups_near,
        termination_protection,
        shutdown_behavior,
    } = match pace {
        Pace::AtOnce => read_at_once(ec2, instance_id, named_vpc.as_deref()).await,
        Pace::OneAfterAnother => {
            read_one_after_another(ec2, instance_id, named_vpc.as_deref()).await?
        }
    };
    let instance = instance?;
    let skip = |reason: String| {
        Ok((
            CaptureOutput::skipped(Some(instance_id.into()), finding.clone(), reason),
            Seen::default(),
        ))
    };
    if let Some(reason) = policy.exemptions.reason(instance_id, &instance.tags) {
        return skip(reason);
    }
    // The instance's own VPCs, whatever the finding named. The finding's VPC was in scope
    // (triage skipped it otherwise): an interface elsewhere may be one the attacker attached
    // to slip out of the scope, so the execution fails, loudly, rather than skip.
    if let Some(reason) = policy
        .scope
        .outside_vpcs(instance.interfaces.iter().map(|i| i.vpc_id.as_str()))
    {
        return Err(CordonError::NotContainable(format!(
            "instance {instance_id} has an interface outside Cordon's scope: {reason}; contain it by hand (cordon isolate) or widen CORDON_VPCS"
        )));
    }
    if matches!(instance.state.as_str(), "terminated" | "shutting-down") {
        return skip(format!(
            "instance {instance_id} is {}: nothing to contain",
            instance.state
        ));
    }
    if instance.interfaces.is_empty() {
        return skip(format!("instance {instance_id} has no network interface"));
    }
    let vpc_ids = instance.vpc_ids();
    // The finding named one VPC and the instance is (also) in another: its groups there too.
    let groups = match (groups_near, named_vpc.as_deref()) {
        (Ok(_), Some(named)) if vpc_ids.iter().any(|vpc| vpc != named) => {
            ec2.cordon_groups(&vpc_ids).await
        }
        (groups, _) => groups,
    };
    let cordon_groups: Vec<SecurityGroup> = groups?
        .into_iter()
        .filter(|group| vpc_ids.contains(&group.vpc_id))
        .collect();
    let session_rules = session_rules_for(ec2, &cordon_groups, config.access()).await;
    if let Some(evidence) =
        quarantine_evidence(&instance, &cordon_groups, config.access(), &session_rules)
    {
        let mut warnings = Vec::new();
        let record = kept_record_of(&instance, &cordon_groups, seal, now_utc, &mut warnings).await;
        let output =
            CaptureOutput::already_quarantined(instance_id, finding, evidence, record, warnings);
        return Ok((
            output,
            Seen {
                groups: cordon_groups,
                instance: Some(instance),
            },
        ));
    }

    // An isolation cut short (some interface on a Cordon group, not all isolated): the
    // originals are in the record Cordon kept before it changed anything.
    let mut warnings = Vec::new();
    let cut_short = instance
        .interfaces
        .iter()
        .any(|i| standing(i, &cordon_groups) != Standing::Original);
    let tagged = if cut_short {
        kept_record_of(&instance, &cordon_groups, seal, now_utc, &mut warnings).await
    } else {
        None
    };
    let (interfaces, resume_warnings) = if cut_short {
        resumed_interfaces(&instance, &cordon_groups, tagged.as_ref())
    } else {
        (instance.interfaces.clone(), Vec::new())
    };
    warnings.extend(resume_warnings);

    let record = CapturedState {
        version: RECORD_VERSION,
        instance_id: instance_id.to_string(),
        finding_id: finding.as_ref().map(|f| f.id.clone()),
        finding_type: finding.as_ref().map(|f| f.finding_type.clone()),
        captured_at: now.to_string(),
        instance_state: instance.state.clone(),
        // Resumed: Cordon may already have turned protection on and the shutdown behavior to
        // stop; the originals are the kept record's.
        termination_protection: match &tagged {
            Some(tagged) => tagged.termination_protection,
            None => match termination_protection {
                Some(read) => read?,
                None => ec2.termination_protection(instance_id).await?,
            },
        },
        shutdown_behavior: match &tagged {
            Some(tagged) => tagged.shutdown_behavior.clone(),
            None => Some(match shutdown_behavior {
                Some(read) => read?,
                None => ec2.shutdown_behavior(instance_id).await?,
            }),
        },
        interfaces,
    };

    // The execution keeps the record whatever happens; the tags are the copy that break-glass
    // `cordon restore` reads. No room for them must not stop containment: a warning.
    let tags_written = match owner {
        // The claim carries the record, in the call that makes it.
        Some(owner) => {
            let seen = claim::claim_in(&cordon_groups, instance_id);
            // The claim seen is where the record goes; a new one is made in the first VPC.
            let vpc_id = seen
                .as_ref()
                .map_or(vpc_ids[0].clone(), |claim| claim.vpc_id.clone());
            let vpc_id = vpc_id.as_str();
            let place = Place::Claim { vpc_id, owner };
            let mut sealed = state_tags(&record);
            sealed.extend(seal_tag(seal, place, &record, &mut warnings).await);
            let record_tags = match claim::record_room(instance_id, sealed) {
                Ok(tags) => tags,
                Err(error @ CordonError::TagQuotaExceeded { .. }) => {
                    warnings.push(no_room(error));
                    Vec::new()
                }
                Err(other) => return Err(other),
            };
            let taken = claim::take(
                ec2,
                vpc_id,
                instance_id,
                owner,
                seen.clone(),
                &record_tags,
                now_utc,
            )
            .await;
            let (taken, kept) = match taken {
                // A member role of a release before the claim kept the record refuses the
                // record's keys on a group (its StackSet not updated yet): claim without them
                // and keep the record on the instance, as that release did.
                Err(CordonError::AccessDenied { .. }) if !record_tags.is_empty() => {
                    warnings.push(StepError {
                        error: "Cordon.MemberRoleOutdated".into(),
                        cause: format!("the role Cordon acts through refused the record's tags on the claim of {instance_id}; the record went on the instance instead. Update the member-role StackSet to this release"),
                    });
                    let without = claim::take(ec2, vpc_id, instance_id, owner, seen, &[], now_utc);
                    (without.await?, Kept::OnInstance)
                }
                taken => (taken?, Kept::OnClaim),
            };
            let (holder, kept) = match taken {
                claim::Taken::Ours => (None, kept),
                claim::Taken::HeldBy(holder) => (Some(holder), kept),
                // Containing without a claim is what is left: the claim only keeps two
                // executions of one instance apart, and holding the instance back for a group
                // anyone could make would be failing open.
                //
                // Only on a retried attempt: the group may be another execution's claim whose
                // tags, given in the call that made it, EC2 does not show yet. Containing beside
                // that execution would make two approval requests and a restore that deletes
                // the other's claim. The retry, after the definition's backoff, reads it again.
                claim::Taken::NameTaken { group_id } if pace == Pace::AtOnce => {
                    return Err(CordonError::Unavailable {
                        operation: "CreateSecurityGroup".into(),
                        message: format!(
                            "{group_id} holds the name {} in {vpc_id} and shows no Cordon tags yet; read again",
                            claim::group_name(instance_id)
                        ),
                    });
                }
                claim::Taken::NameTaken { group_id } => {
                    warnings.push(StepError {
                        error: "Cordon.ClaimNameTaken".into(),
                        cause: format!(
                            "{group_id} in {vpc_id} is named {} but is not Cordon's claim (someone who may create security groups there made it): {instance_id} is contained without a claim, and its record is kept in this execution only, so break-glass `cordon restore` finds none in tags. Find out who created {group_id}",
                            claim::group_name(instance_id)
                        ),
                    });
                    // A record the role may write on the instance goes there still.
                    let kept = match kept {
                        Kept::OnInstance => Kept::OnInstance,
                        _ => Kept::Nowhere,
                    };
                    (None, kept)
                }
            };
            if let Some(holder) = holder {
                let output = CaptureOutput::already_quarantined(
                    instance_id,
                    finding,
                    format!(
                        "execution {} claimed {instance_id} at {} and is containing it; this one leaves it to that execution",
                        holder.owner, holder.claimed_at
                    ),
                    None,
                    Vec::new(),
                );
                return Ok((
                    output,
                    Seen {
                        groups: cordon_groups,
                        instance: Some(instance),
                    },
                ));
            }
            match kept {
                Kept::Nowhere => false,
                Kept::OnClaim => !record_tags.is_empty(),
                Kept::OnInstance => {
                    record_on_instance(ec2, &instance, &record, seal, &mut warnings).await?
                }
            }
        }
        None if report_only => false,
        // No claim (`cordon isolate`, or a definition that names no execution): the record
        // goes on the instance, as it did before claims kept it.
        None => record_on_instance(ec2, &instance, &record, seal, &mut warnings).await?,
    };
    let output = CaptureOutput {
        status: if report_only {
            CaptureStatus::ReportOnly
        } else {
            CaptureStatus::Captured
        },
        reason: if report_only {
            format!(
                "report-only: read {} network interface(s) of {instance_id} and would record them (cordon:state tags) before containing it; nothing was changed",
                record.interfaces.len()
            )
        } else if cut_short {
            format!(
                "{instance_id}'s isolation was cut short (an interface is on a Cordon group but not isolated); recorded its {} interface(s) from the record tags to finish it",
                record.interfaces.len()
            )
        } else {
            format!(
                "recorded {} network interface(s) of {instance_id}",
                record.interfaces.len()
            )
        },
        instance_id: Some(instance_id.into()),
        finding,
        record: Some(record),
        tags_written,
        warnings,
        approval_timeout_seconds: None,
        approvals_required: None,
        execution_started_at: None,
        // Cordon's conversion and isolation groups (no claims: one per quarantined instance).
        view: (!cut_short).then(|| CaptureView {
            groups: cordon_groups
                .iter()
                .filter(|group| group.role.is_some())
                // Their names stay: the isolation step knows Cordon's groups by them.
                .map(|group| SecurityGroup {
                    tags: Vec::new(),
                    ..group.clone()
                })
                .collect(),
            lifecycle: instance.lifecycle.clone(),
        }),
    };
    Ok((
        output,
        Seen {
            groups: cordon_groups,
            instance: Some(instance),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{block_on, FakeEc2};
    use crate::record::state_from_tags;

    const NOW: &str = "2026-11-29T14:00:00.000Z";

    #[test]
    fn without_a_claim_capture_writes_the_record_on_the_instance() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| s.protection.insert("i-00000001".into(), true));
        let output = block_on(capture(&ec2, "i-00000001", None, None, NOW)).unwrap();
        assert_eq!(output.status, CaptureStatus::Captured);
        let record = output.record.unwrap();
        assert_eq!(record.interfaces[0].groups, ["sg-app", "sg-ssh"]);
        assert_eq!(record.interfaces[0].ipv6, ["2001:db8:1::5"]);
        assert!(record.termination_protection);
        assert!(output.tags_written);
        let tags = ec2.with(|s| s.instances["i-00000001"].tags.clone());
        assert_eq!(state_from_tags("i-00000001", &tags).unwrap(), Some(record));
        // Capture changes nothing but tags.
        assert_eq!(ec2.interface_groups("eni-1"), ["sg-app", "sg-ssh"]);
        assert_eq!(
            ec2.calls(),
            [
                // These four at once: protection and shutdown behavior are two attributes.
                "DescribeInstances",
                "DescribeInstanceAttribute",
                "DescribeInstanceAttribute",
                "DescribeSecurityGroups",
                "CreateTags"
            ]
        );
    }

    #[test]
    fn an_instance_carrying_cordon_groups_is_already_quarantined_and_nothing_is_recorded() {
        let ec2 = FakeEc2::standard();
        let first = block_on(capture(&ec2, "i-00000001", None, None, NOW)).unwrap();
        let isolation =
            block_on(ec2.create_cordon_group("vpc-1", GroupRole::Isolation, None)).unwrap();
        ec2.with(|s| {
            // As isolation leaves it: EC2's default egress rule revoked.
            s.groups.get_mut(&isolation.id).unwrap().egress.clear();
            s.instances.get_mut("i-00000001").unwrap().interfaces[0].groups =
                vec![isolation.id.clone()]
        });
        let tags_before = ec2.with(|s| s.instances["i-00000001"].tags.clone());
        ec2.clear_calls();

        let second = block_on(capture(
            &ec2,
            "i-00000001",
            None,
            None,
            "2026-11-30T00:00:00.000Z",
        ))
        .unwrap();
        assert_eq!(second.status, CaptureStatus::AlreadyQuarantined);
        assert!(second.reason.contains(&isolation.id), "{}", second.reason);
        // The true originals, not the isolation group, are what it hands on.
        assert_eq!(second.record, first.record);
        assert_eq!(
            ec2.with(|s| s.instances["i-00000001"].tags.clone()),
            tags_before
        );
        assert!(!ec2.calls().iter().any(|c| c == "CreateTags"));
    }

    #[test]
    fn of_two_executions_for_one_instance_only_the_first_captures() {
        let ec2 = FakeEc2::standard();
        let first = block_on(capture(&ec2, "i-00000001", None, Some("exec-a"), NOW)).unwrap();
        assert_eq!(first.status, CaptureStatus::Captured);
        let tags_after_first = ec2.with(|s| s.instances["i-00000001"].tags.clone());
        ec2.clear_calls();

        let second = block_on(capture(&ec2, "i-00000001", None, Some("exec-b"), NOW)).unwrap();
        assert_eq!(second.status, CaptureStatus::AlreadyQuarantined);
        assert!(second.reason.contains("exec-a"), "{}", second.reason);
        assert!(!ec2.calls().iter().any(|c| c == "CreateTags"));
        assert_eq!(
            ec2.with(|s| s.instances["i-00000001"].tags.clone()),
            tags_after_first
        );
        // The first one's retry of the same step goes on and records the same originals.
        let retry = block_on(capture(&ec2, "i-00000001", None, Some("exec-a"), NOW)).unwrap();
        assert_eq!(retry.status, CaptureStatus::Captured);
        assert_eq!(retry.record, first.record);
    }

    fn throttled(operation: &str) -> CordonError {
        CordonError::Throttled {
            operation: operation.into(),
            message: "Request limit exceeded.".into(),
        }
    }

    fn finding_in(vpc_id: &str) -> FindingSummary {
        serde_json::from_value(serde_json::json!({
            "id": "f-1", "finding_type": "Backdoor:EC2/C&CActivity.B", "severity": 8.0,
            "account_id": null, "region": null, "remote_addresses": [], "vpc_id": vpc_id,
        }))
        .unwrap()
    }

    /// A capture by `owner` of the standard instance (in vpc-1), from a finding naming `vpc_id`.
    fn capture_named(
        ec2: &FakeEc2,
        owner: &str,
        vpc_id: &str,
        pace: Pace,
    ) -> Result<CaptureOutput> {
        block_on(capture_seeing(
            ec2,
            "i-00000001",
            Some(finding_in(vpc_id)),
            Some(owner),
            NOW,
            pace,
            &tag_exempting(),
            &crate::seal::Unsealed,
        ))
        .map(|(output, _)| output)
    }

    fn capture_at(ec2: &FakeEc2, owner: &str, pace: Pace) -> Result<CaptureOutput> {
        capture_named(ec2, owner, "vpc-1", pace)
    }

    fn claims_of(ec2: &FakeEc2, owner: &str) -> usize {
        ec2.with(|s| {
            s.groups
                .values()
                .filter(|g| {
                    g.tags
                        .iter()
                        .any(|(k, v)| k == claim::OWNER_TAG && v == owner)
                })
                .count()
        })
    }

    #[test]
    fn a_retried_capture_goes_one_call_after_another_and_the_first_attempt_at_once() {
        assert_eq!(Pace::of_attempt(Some(0)), Pace::AtOnce);
        // `cordon isolate`, and a definition that does not pass the count.
        assert_eq!(Pace::of_attempt(None), Pace::AtOnce);
        assert_eq!(Pace::of_attempt(Some(1)), Pace::OneAfterAnother);
        assert_eq!(Pace::of_attempt(Some(19)), Pace::OneAfterAnother);
    }

    /// The claim, which carries the record, as a rule: its `cordon:state:*` tags read back.
    fn claim_record(ec2: &FakeEc2, owner: &str) -> Option<CapturedState> {
        let groups = ec2.with(|s| s.groups.values().cloned().collect::<Vec<_>>());
        let claim = claim::claim_in(&groups, "i-00000001").filter(|c| c.owner == owner)?;
        state_from_tags("i-00000001", &claim.record_tags).unwrap()
    }

    #[test]
    fn an_execution_keeps_the_record_on_its_claim_in_the_call_that_makes_it() {
        let ec2 = FakeEc2::standard();
        let instance_tags = ec2.with(|s| s.instances["i-00000001"].tags.clone());
        let captured = capture_at(&ec2, "exec-a", Pace::AtOnce).unwrap();
        assert_eq!(captured.status, CaptureStatus::Captured);
        assert!(captured.tags_written);
        assert_eq!(claim_record(&ec2, "exec-a"), captured.record);
        // No CreateTags on the way to isolation, and the instance's own tags as they were.
        assert_eq!(
            ec2.calls(),
            [
                "DescribeInstances",
                "DescribeInstanceAttribute",
                "DescribeInstanceAttribute",
                "DescribeSecurityGroups",
                "CreateSecurityGroup"
            ]
        );
        assert_eq!(
            ec2.with(|s| s.instances["i-00000001"].tags.clone()),
            instance_tags
        );
    }

    #[test]
    fn a_retried_capture_spends_no_token_past_a_throttled_call() {
        let ec2 = FakeEc2::standard();
        // The first attempt, at once: the description is throttled through the SDK's attempts.
        // Nothing is written before the instance has been read: no claim to find or remove.
        ec2.fail_next("DescribeInstances", throttled("DescribeInstances"));
        let error = capture_at(&ec2, "exec-a", Pace::AtOnce).unwrap_err();
        assert_eq!(error.error_name(), "Cordon.Throttled");
        assert_eq!(claims_of(&ec2, "exec-a"), 0);
        assert!(!ec2.calls().iter().any(|c| c == "CreateSecurityGroup"));

        // A retry: Cordon's groups are read first, and a throttled description stops it there.
        ec2.clear_calls();
        ec2.fail_next("DescribeInstances", throttled("DescribeInstances"));
        capture_at(&ec2, "exec-a", Pace::OneAfterAnother).unwrap_err();
        assert_eq!(ec2.calls(), ["DescribeSecurityGroups", "DescribeInstances"]);

        // The next retry goes through and claims with the record.
        ec2.clear_calls();
        let captured = capture_at(&ec2, "exec-a", Pace::OneAfterAnother).unwrap();
        assert_eq!(captured.status, CaptureStatus::Captured);
        assert_eq!(
            ec2.calls(),
            [
                "DescribeSecurityGroups",
                "DescribeInstances",
                "DescribeInstanceAttribute",
                "DescribeInstanceAttribute",
                "CreateSecurityGroup"
            ]
        );
        assert_eq!(claims_of(&ec2, "exec-a"), 1);
        assert_eq!(claim_record(&ec2, "exec-a"), captured.record);
    }

    #[test]
    fn a_throttled_claim_is_retried_and_another_execution_s_claim_is_left_to_it() {
        let ec2 = FakeEc2::standard();
        ec2.fail_next("CreateSecurityGroup", throttled("CreateSecurityGroup"));
        let error = capture_at(&ec2, "exec-a", Pace::OneAfterAnother).unwrap_err();
        assert_eq!(error.error_name(), "Cordon.Throttled");
        assert_eq!(claims_of(&ec2, "exec-a"), 0);
        // Another execution claims meanwhile: this one's retry leaves the instance to it.
        assert_eq!(
            capture_at(&ec2, "exec-b", Pace::AtOnce).unwrap().status,
            CaptureStatus::Captured
        );
        let left = capture_at(&ec2, "exec-a", Pace::OneAfterAnother).unwrap();
        assert_eq!(left.status, CaptureStatus::AlreadyQuarantined);
        assert!(left.reason.contains("exec-b"), "{}", left.reason);
        assert_eq!(claims_of(&ec2, "exec-a"), 0);
    }

    #[test]
    fn a_retry_whose_claim_went_through_unanswered_keeps_the_record_it_made() {
        let ec2 = FakeEc2::standard();
        let first = capture_at(&ec2, "exec-a", Pace::AtOnce).unwrap();
        ec2.clear_calls();
        let retry = block_on(capture_seeing(
            &ec2,
            "i-00000001",
            Some(finding_in("vpc-1")),
            Some("exec-a"),
            "2026-11-29T14:00:05.000Z",
            Pace::OneAfterAnother,
            &tag_exempting(),
            &crate::seal::Unsealed,
        ))
        .unwrap()
        .0;
        assert_eq!(retry.status, CaptureStatus::Captured);
        assert!(retry.tags_written);
        assert!(!ec2
            .calls()
            .iter()
            .any(|c| c == "CreateSecurityGroup" || c == "CreateTags"));
        assert_eq!(claim_record(&ec2, "exec-a"), first.record);
    }

    #[test]
    fn a_member_role_from_before_records_on_claims_gets_the_record_on_the_instance() {
        let ec2 = FakeEc2::standard();
        // Its conditions allow the claim's own keys only.
        ec2.fail_next(
            "CreateSecurityGroup",
            CordonError::AccessDenied {
                operation: "CreateSecurityGroup".into(),
                message: "You are not authorized to perform this operation.".into(),
            },
        );
        let captured = capture_at(&ec2, "exec-a", Pace::AtOnce).unwrap();
        assert_eq!(captured.status, CaptureStatus::Captured);
        assert!(captured.tags_written);
        assert_eq!(captured.warnings[0].error, "Cordon.MemberRoleOutdated");
        assert_eq!(claims_of(&ec2, "exec-a"), 1);
        assert_eq!(claim_record(&ec2, "exec-a"), None);
        let tags = ec2.with(|s| s.instances["i-00000001"].tags.clone());
        assert_eq!(
            state_from_tags("i-00000001", &tags).unwrap(),
            captured.record
        );
    }

    #[test]
    fn a_lapsed_claim_taken_over_carries_the_new_record_and_no_chunk_of_the_old() {
        let ec2 = FakeEc2::standard();
        capture_at(&ec2, "exec-a", Pace::AtOnce).unwrap();
        // exec-a's record made longer than the next one, as by more interfaces then.
        ec2.with(|s| {
            let claim = s
                .groups
                .values_mut()
                .find(|g| {
                    g.tags
                        .iter()
                        .any(|(k, v)| k == claim::OWNER_TAG && v == "exec-a")
                })
                .unwrap();
            claim.tags.push(("cordon:state:9".into(), "old".into()));
        });
        let later = block_on(capture_seeing(
            &ec2,
            "i-00000001",
            Some(finding_in("vpc-1")),
            Some("exec-b"),
            "2026-11-29T15:00:00.000Z",
            Pace::AtOnce,
            &tag_exempting(),
            &crate::seal::Unsealed,
        ))
        .unwrap()
        .0;
        assert_eq!(later.status, CaptureStatus::Captured);
        assert_eq!(claims_of(&ec2, "exec-b"), 1);
        assert_eq!(claim_record(&ec2, "exec-b"), later.record);
    }

    #[test]
    fn an_isolation_cut_short_is_finished_from_the_record_its_claim_keeps() {
        let ec2 = FakeEc2::standard();
        let first = capture_at(&ec2, "exec-a", Pace::AtOnce).unwrap();
        let conversion =
            block_on(ec2.create_cordon_group("vpc-1", GroupRole::Conversion, None)).unwrap();
        ec2.with(|s| {
            s.instances.get_mut("i-00000001").unwrap().interfaces[0].groups =
                vec![conversion.id.clone()];
        });
        // After exec-a's lease, a later finding's execution finishes what exec-a began.
        let (resumed, _) = block_on(capture_seeing(
            &ec2,
            "i-00000001",
            Some(finding_in("vpc-1")),
            Some("exec-b"),
            "2026-11-29T15:00:00.000Z",
            Pace::AtOnce,
            &tag_exempting(),
            &crate::seal::Unsealed,
        ))
        .unwrap();
        assert!(resumed.reason.contains("cut short"), "{}", resumed.reason);
        let record = resumed.record.unwrap();
        assert_eq!(record.interfaces[0].groups, ["sg-app", "sg-ssh"]);
        assert_eq!(record.interfaces, first.record.unwrap().interfaces);
        assert_eq!(claim_record(&ec2, "exec-b"), Some(record));
        // And once isolated, a duplicate hands on the claim's record.
        let isolation =
            block_on(ec2.create_cordon_group("vpc-1", GroupRole::Isolation, None)).unwrap();
        ec2.with(|s| {
            s.groups.get_mut(&isolation.id).unwrap().egress.clear();
            s.instances.get_mut("i-00000001").unwrap().interfaces[0].groups =
                vec![isolation.id.clone()];
        });
        let duplicate = capture_at(&ec2, "exec-c", Pace::AtOnce).unwrap();
        assert_eq!(duplicate.status, CaptureStatus::AlreadyQuarantined);
        assert_eq!(duplicate.record, claim_record(&ec2, "exec-b"));
    }

    /// Whoever may make groups in a VPC Cordon has not used yet makes one named and tagged as
    /// Cordon's isolation group, with rules of their own (egress anywhere), and puts the
    /// instance on it: a finding still contains it.
    #[test]
    fn a_look_alike_isolation_group_is_no_evidence_of_quarantine() {
        let ec2 = FakeEc2::standard();
        let look_alike =
            block_on(ec2.create_cordon_group("vpc-1", GroupRole::Isolation, None)).unwrap();
        assert!(!look_alike.egress.is_empty(), "EC2's default egress rule");
        ec2.with(|s| {
            s.instances.get_mut("i-00000001").unwrap().interfaces[0].groups =
                vec![look_alike.id.clone()];
        });
        let output = capture_at(&ec2, "exec-a", Pace::AtOnce).unwrap();
        assert_ne!(
            output.status,
            CaptureStatus::AlreadyQuarantined,
            "{}",
            output.reason
        );
        // And once its rules are Cordon's (the isolation step sets them), it is evidence.
        ec2.with(|s| s.groups.get_mut(&look_alike.id).unwrap().egress.clear());
        let later = capture_at(&ec2, "exec-b", Pace::AtOnce).unwrap();
        assert_eq!(later.status, CaptureStatus::AlreadyQuarantined);
    }

    /// With Session Manager on, a look-alike isolation group (Cordon's name and tag, made by
    /// someone else) holding HTTPS to the attacker's address is no evidence of a quarantine;
    /// Cordon's own group with the endpoints' rules is. Capture reads the endpoints for that.
    #[test]
    fn with_session_manager_only_the_endpoints_rules_count_as_isolating() {
        // A world of its own for each case: a capture that contains claims the instance, and
        // the next would end held by that claim whatever the group holds.
        let capture = |egress: &str, both_endpoints: bool| {
            let ec2 = FakeEc2::standard();
            ec2.with_session_endpoints();
            if !both_endpoints {
                ec2.with(|s| s.session_endpoints.get_mut("vpc-1").unwrap().truncate(1));
            }
            let isolation =
                block_on(ec2.create_cordon_group("vpc-1", GroupRole::Isolation, None)).unwrap();
            ec2.with(|s| {
                s.groups.get_mut(&isolation.id).unwrap().egress = vec![crate::ec2::SgRule::https(
                    crate::ec2::Peer::Ipv4(egress.into()),
                )];
                s.instances.get_mut("i-00000001").unwrap().interfaces[0].groups =
                    vec![isolation.id.clone()];
            });
            let config = Config {
                session_manager: true,
                ..Config::default()
            };
            block_on(capture_seeing(
                &ec2,
                "i-00000001",
                Some(finding_in("vpc-1")),
                Some("exec-a"),
                NOW,
                Pace::AtOnce,
                &config,
                &crate::seal::Unsealed,
            ))
            .map(|(output, _)| output)
            .unwrap()
        };
        let quarantined = |output: &CaptureOutput| {
            output.status == CaptureStatus::AlreadyQuarantined
                && output
                    .reason
                    .contains("already carries Cordon's isolation group")
        };
        // The endpoints' own rule: quarantined.
        assert!(quarantined(&capture("10.0.2.10/32", true)));
        // The attacker's address: contained again.
        let output = capture("203.0.113.9/32", true);
        assert_eq!(output.status, CaptureStatus::Captured, "{}", output.reason);
        // An endpoint alone opens nothing, so its address counts for nothing either.
        let output = capture("10.0.2.10/32", false);
        assert_eq!(output.status, CaptureStatus::Captured, "{}", output.reason);
    }

    /// With Session Manager on, the isolation group's HTTPS rules to single addresses are the
    /// isolation step's to check against the endpoints: the instance on it is quarantined. With
    /// it off, such a rule is an opening, and the instance is contained again.
    #[test]
    fn a_session_rule_counts_as_isolating_only_with_session_manager_on() {
        let ec2 = FakeEc2::standard();
        let isolation =
            block_on(ec2.create_cordon_group("vpc-1", GroupRole::Isolation, None)).unwrap();
        let mut group = isolation.clone();
        group.egress = vec![crate::ec2::SgRule::https(crate::ec2::Peer::Ipv4(
            "10.0.2.10/32".into(),
        ))];
        let mut instance = ec2.with(|s| s.instances["i-00000001"].clone());
        instance.interfaces[0].groups = vec![isolation.id.clone()];
        let on = crate::isolate::Access {
            forensic: None,
            session_manager: true,
        };
        let endpoints = BTreeMap::from([("vpc-1".to_string(), group.egress.clone())]);
        let groups = std::slice::from_ref(&group);
        assert!(quarantine_evidence(&instance, groups, on, &endpoints).is_some());
        let off = crate::isolate::Access::default();
        assert!(quarantine_evidence(&instance, groups, off, &endpoints).is_none());
        // The same shape to an address that is no endpoint (or with the endpoints unread) is
        // someone's way out, and the instance is contained again.
        assert!(quarantine_evidence(&instance, groups, on, &BTreeMap::new()).is_none());
        group.egress = vec![crate::ec2::SgRule::https(crate::ec2::Peer::Ipv4(
            "203.0.113.9/32".into(),
        ))];
        let groups = std::slice::from_ref(&group);
        assert!(quarantine_evidence(&instance, groups, on, &endpoints).is_none());
        // Any other egress is an opening whatever the setting.
        group.egress = vec![crate::ec2::SgRule::https(crate::ec2::Peer::Ipv4(
            "0.0.0.0/0".into(),
        ))];
        let groups = std::slice::from_ref(&group);
        assert!(quarantine_evidence(&instance, groups, on, &endpoints).is_none());
    }

    /// Whoever may create security groups in the VPC (the instance's own role, perhaps) makes
    /// a group named as the instance's claim before any finding, without Cordon's tags, which
    /// the tag guard SCP keeps to Cordon's roles: the finding's execution still contains it,
    /// without a claim, and says so. Before, it could not take the claim and failed.
    #[test]
    fn a_group_that_takes_the_claims_name_holds_nothing_back() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| {
            s.groups.insert(
                "sg-squatter".into(),
                SecurityGroup {
                    id: "sg-squatter".into(),
                    vpc_id: "vpc-1".into(),
                    name: claim::group_name("i-00000001"),
                    role: None,
                    ingress: vec![],
                    egress: vec![],
                    tags: vec![],
                },
            )
        });
        // A first attempt cannot tell it from a claim whose tags EC2 does not show yet: it
        // reads again on its retry.
        let first = capture_at(&ec2, "exec-a", Pace::AtOnce).unwrap_err();
        assert_eq!(first.error_name(), "Cordon.Unavailable", "{first}");
        let output = capture_at(&ec2, "exec-a", Pace::OneAfterAnother).unwrap();
        assert_eq!(output.status, CaptureStatus::Captured, "{}", output.reason);
        assert!(output.record.is_some());
        assert!(!output.tags_written);
        let warning = output
            .warnings
            .iter()
            .find(|w| w.error == "Cordon.ClaimNameTaken")
            .expect("the execution says it has no claim");
        assert!(warning.cause.contains("sg-squatter"), "{}", warning.cause);
        // The squatter's group is left as it was, and nothing went on the instance.
        assert!(ec2.with(|s| s.groups["sg-squatter"].tags.is_empty()));
        assert!(!ec2.with(|s| s.instances["i-00000001"]
            .tags
            .iter()
            .any(|(k, _)| k.starts_with("cordon:"))));
    }

    /// Whoever may tag a group of the VPC tags an application's group as the instance's
    /// claim, held by an execution that does not exist, with a fresh time: the finding's
    /// execution still claims and contains it.
    #[test]
    fn a_group_only_tagged_as_the_instances_claim_holds_nothing_back() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| {
            s.groups
                .get_mut("sg-app")
                .unwrap()
                .tags
                .extend(claim::claim_tags(
                    "i-00000001",
                    "exec-x",
                    "2026-11-29T13:59:00.000Z",
                ))
        });
        let output = capture_at(&ec2, "exec-a", Pace::AtOnce).unwrap();
        assert_eq!(output.status, CaptureStatus::Captured, "{}", output.reason);
        assert_eq!(claims_of(&ec2, "exec-a"), 1);
    }

    /// The stack's `ExemptTagKey` set to `cordon:exempt`.
    fn tag_exempting() -> Config {
        let mut config = Config::default();
        config.policy.exemptions.tag_key = Some(crate::policy::EXEMPT_TAG.into());
        config
    }

    fn make_exempt(ec2: &FakeEc2) {
        ec2.with(|s| {
            s.instances
                .get_mut("i-00000001")
                .unwrap()
                .tags
                .push(("cordon:exempt".into(), "true".into()))
        });
    }

    #[test]
    fn an_exempt_instance_is_never_claimed() {
        for pace in [Pace::AtOnce, Pace::OneAfterAnother] {
            let ec2 = FakeEc2::standard();
            make_exempt(&ec2);
            let skipped = capture_at(&ec2, "exec-a", pace).unwrap();
            assert_eq!(skipped.status, CaptureStatus::Skipped);
            assert!(
                ec2.calls().iter().all(|c| c.starts_with("Describe")),
                "{pace:?}: {:?}",
                ec2.calls()
            );
            assert_eq!(claims_of(&ec2, "exec-a"), 0);
        }
    }

    #[test]
    fn exempt_terminated_and_missing_instances_change_nothing() {
        let ec2 = FakeEc2::standard();
        make_exempt(&ec2);
        // Only when the stack names the key: the instance's own role may tag it.
        let not_named = block_on(capture(&ec2, "i-00000001", None, None, NOW)).unwrap();
        assert_eq!(not_named.status, CaptureStatus::Captured);
        let ec2 = FakeEc2::standard();
        make_exempt(&ec2);
        let (exempt, _) = block_on(capture_seeing(
            &ec2,
            "i-00000001",
            None,
            None,
            NOW,
            Pace::AtOnce,
            &tag_exempting(),
            &crate::seal::Unsealed,
        ))
        .unwrap();
        assert_eq!(exempt.status, CaptureStatus::Skipped);
        assert!(exempt.reason.contains("cordon:exempt"));
        assert!(ec2.with(|s| s.instances["i-00000001"].interfaces[0].groups.len() == 2));

        let ec2 = FakeEc2::standard();
        ec2.with(|s| s.instances.get_mut("i-00000001").unwrap().state = "terminated".into());
        let gone = block_on(capture(&ec2, "i-00000001", None, None, NOW)).unwrap();
        assert_eq!(gone.status, CaptureStatus::Skipped);
        assert!(gone.reason.contains("terminated"));

        let missing = block_on(capture(&ec2, "i-00000404", None, None, NOW)).unwrap_err();
        assert_eq!(missing.error_name(), "Cordon.InstanceNotFound");
        assert!(!ec2.calls().iter().any(|c| c == "CreateTags"));
    }

    #[test]
    fn a_full_tag_set_is_a_warning_not_a_refusal_to_contain() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| {
            let tags = &mut s.instances.get_mut("i-00000001").unwrap().tags;
            tags.extend((0..49).map(|n| (format!("team:{n}"), "x".into())));
        });
        let output = block_on(capture(&ec2, "i-00000001", None, None, NOW)).unwrap();
        assert_eq!(output.status, CaptureStatus::Captured);
        assert!(!output.tags_written);
        assert_eq!(output.warnings[0].error, "Cordon.TagQuotaExceeded");
        assert!(output.record.is_some());
    }

    #[test]
    fn a_stale_longer_record_leaves_no_chunk_behind() {
        let ec2 = FakeEc2::standard();
        ec2.with(|s| {
            let tags = &mut s.instances.get_mut("i-00000001").unwrap().tags;
            for n in 0..4 {
                tags.push((format!("cordon:state:{n}"), "old".into()));
            }
        });
        let output = block_on(capture(&ec2, "i-00000001", None, None, NOW)).unwrap();
        let tags = ec2.with(|s| s.instances["i-00000001"].tags.clone());
        assert_eq!(state_from_tags("i-00000001", &tags).unwrap(), output.record);
    }

    #[test]
    fn an_interface_left_on_the_conversion_group_is_an_isolation_to_finish_not_a_quarantine() {
        let ec2 = FakeEc2::standard();
        let first = block_on(capture(&ec2, "i-00000001", None, None, NOW)).unwrap();
        let conversion =
            block_on(ec2.create_cordon_group("vpc-1", GroupRole::Conversion, None)).unwrap();
        ec2.with(|s| {
            s.instances.get_mut("i-00000001").unwrap().interfaces[0].groups =
                vec![conversion.id.clone()];
            s.protection.insert("i-00000001".into(), true);
        });
        let again = block_on(capture(&ec2, "i-00000001", None, None, NOW)).unwrap();
        assert_eq!(again.status, CaptureStatus::Captured, "{}", again.reason);
        assert!(again.reason.contains("cut short"), "{}", again.reason);
        // The originals come from the record tags, not from the conversion group.
        let record = again.record.unwrap();
        assert_eq!(record.interfaces[0].groups, ["sg-app", "sg-ssh"]);
        assert_eq!(record, first.record.unwrap());
    }

    #[test]
    fn an_interface_on_cordon_groups_without_a_record_keeps_only_its_own_groups_and_says_so() {
        let ec2 = FakeEc2::standard();
        let conversion =
            block_on(ec2.create_cordon_group("vpc-1", GroupRole::Conversion, None)).unwrap();
        ec2.with(|s| {
            s.instances.get_mut("i-00000001").unwrap().interfaces[0].groups =
                vec![conversion.id.clone(), "sg-app".into()];
        });
        let output = block_on(capture(&ec2, "i-00000001", None, None, NOW)).unwrap();
        assert_eq!(output.status, CaptureStatus::Captured);
        assert_eq!(output.record.unwrap().interfaces[0].groups, ["sg-app"]);
        assert!(output.warnings[0]
            .cause
            .contains("no record of its original groups"));
    }

    #[test]
    fn standing_tells_isolated_from_incomplete() {
        let group = |id: &str, role| SecurityGroup {
            id: id.into(),
            vpc_id: "vpc-1".into(),
            name: id.into(),
            role: Some(role),
            ingress: vec![],
            egress: vec![],
            tags: vec![],
        };
        let cordon = [
            group("sg-c", GroupRole::Conversion),
            group("sg-i", GroupRole::Isolation),
        ];
        let on = |groups: &[&str]| crate::ec2::NetworkInterface {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(standing(&on(&["sg-app"]), &cordon), Standing::Original);
        assert_eq!(standing(&on(&["sg-i"]), &cordon), Standing::Isolated);
        assert_eq!(
            standing(&on(&["sg-c"]), &cordon),
            Standing::Incomplete("sg-c".into())
        );
        assert_eq!(
            standing(&on(&["sg-i", "sg-app"]), &cordon),
            Standing::Incomplete("sg-i".into())
        );
    }

    /// In a burst, a region holds a claim group per instance: capture reads only the VPC the
    /// finding names, and the instance's own VPCs when it is elsewhere.
    #[test]
    fn capture_reads_the_groups_of_the_vpc_the_finding_names_only() {
        let reads = |named: Option<&str>, pace: Pace| {
            let ec2 = FakeEc2::standard();
            let finding = named.map(finding_in);
            let (output, _) = block_on(capture_seeing(
                &ec2,
                "i-00000001",
                finding,
                Some("exec-a"),
                NOW,
                pace,
                &Config::default(),
                &crate::seal::Unsealed,
            ))
            .unwrap();
            assert_eq!(output.status, CaptureStatus::Captured);
            ec2.with(|s| s.group_reads.clone())
        };
        let vpc = |id: &str| Some(vec![id.to_string()]);
        for pace in [Pace::AtOnce, Pace::OneAfterAnother] {
            assert_eq!(reads(Some("vpc-1"), pace), [vpc("vpc-1")], "{pace:?}");
            assert_eq!(reads(None, pace), [None], "{pace:?}");
            assert_eq!(
                reads(Some("vpc-0000beef"), pace),
                [vpc("vpc-0000beef"), vpc("vpc-1")],
                "{pace:?}"
            );
        }
    }

    #[test]
    fn a_record_written_before_the_new_fields_still_reads() {
        // A v1 record as the first release wrote it, into `cordon:state:0`.
        let old = r#"{"version":1,"instance_id":"i-00000001","finding_id":null,"finding_type":null,"captured_at":"2026-11-29T14:00:00.000Z","instance_state":"running","termination_protection":false,"interfaces":[{"id":"eni-1","subnet_id":"subnet-a","vpc_id":"vpc-1","groups":["sg-app"],"private_ipv4":["10.0.1.5"],"ipv6":[]}]}"#;
        let tags = vec![("cordon:state:0".to_string(), old.to_string())];
        let record = state_from_tags("i-00000001", &tags).unwrap().unwrap();
        assert_eq!(record.shutdown_behavior, None);
        assert_eq!(record.interfaces[0].conntrack, None);
        assert!(record.interfaces[0].ipv4_prefixes.is_empty());
    }
}
