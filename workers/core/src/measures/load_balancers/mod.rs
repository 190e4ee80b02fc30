//! Load balancers: an instance registered in target groups of its own (not through its Auto
//! Scaling group, whose standby takes it out of the group's) keeps receiving health checks and,
//! when every target of a group is unhealthy, traffic: a load balancer fails open. So it is
//! deregistered from every instance target group of its VPCs it is registered in, each with
//! its ports recorded first on the target group itself (`cordon:<instance-id>` =
//! `80+8080/<captured at>/m1:...`, sealed with the record key over the ports, the group, the
//! instance and the containment: whoever may tag a target group cannot write one that a
//! restore relies on); restore registers it again on exactly those ports and drops the record.
//! A target group's tag value takes letters, numbers, spaces and `_ . : / = + - @` only (no
//! comma, no semicolon): the record is written in those. Beside isolation (a branch of the Contain state): deregistration drains
//! connections for the group's deregistration delay, which isolation must not wait for.

pub mod aws;
pub mod port;

use serde::{Deserialize, Serialize};

use super::auto_scaling::AutoScaling;
use super::{Measure, MeasureStatus, Phase};
use crate::ec2::Ec2;
use crate::error::{Result, StepError};
use crate::seal::{check, target_group_message, RecordTrouble, Seal, Verdict};
pub use port::{LoadBalancing, LoadBalancingProvider, TargetGroup};

pub const MEASURE: Measure = Measure {
    id: "load_balancers",
    state: "DeregisterFromTargetGroups",
    title: "load balancer targets",
    actions: &[
        (Phase::Apply, "ec2:DescribeInstances"),
        (Phase::Apply, "autoscaling:DescribeAutoScalingInstances"),
        (Phase::Apply, "autoscaling:DescribeAutoScalingGroups"),
        (Phase::Apply, "elasticloadbalancing:DescribeTargetGroups"),
        (Phase::Apply, "elasticloadbalancing:DescribeTargetHealth"),
        (Phase::Apply, "elasticloadbalancing:DescribeTags"),
        (Phase::Apply, "kms:VerifyMac"),
        (Phase::Apply, "kms:GenerateMac"),
        (Phase::Apply, "elasticloadbalancing:AddTags"),
        (Phase::Apply, "elasticloadbalancing:DeregisterTargets"),
        (Phase::Restore, "ec2:DescribeInstances"),
        (Phase::Restore, "elasticloadbalancing:DescribeTargetGroups"),
        (Phase::Restore, "elasticloadbalancing:DescribeTags"),
        (Phase::Restore, "kms:VerifyMac"),
        (Phase::Restore, "elasticloadbalancing:RegisterTargets"),
        (Phase::Restore, "elasticloadbalancing:RemoveTags"),
    ],
};

/// The record's tag on a target group: `cordon:<instance-id>`.
pub fn record_key(instance_id: &str) -> String {
    format!("cordon:{instance_id}")
}

/// What separates the ports in a record: `80+8080`.
const PORT_SEPARATOR: char = '+';
/// What separates the ports, the containment's time and the seal.
const PART_SEPARATOR: char = '/';

/// The ports as the record holds them (and its seal covers): `80+8080`.
pub fn record_value(ports: &[i32]) -> String {
    ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(&PORT_SEPARATOR.to_string())
}

/// The ports as a person reads them: `80,8080`.
fn listed(ports: &[i32]) -> String {
    ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// What seals a record: when the containment that wrote it captured the instance, and the MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub captured_at: String,
    pub seal: String,
}

/// The record's whole tag value: the ports, then the containment's time and the seal (none:
/// `cordon isolate`, whose caller may not seal, or a seal KMS would not make).
pub fn sealed_value(ports: &[i32], sealed: Option<&Sealed>) -> String {
    match sealed {
        Some(Sealed { captured_at, seal }) => format!(
            "{}{PART_SEPARATOR}{captured_at}{PART_SEPARATOR}{seal}",
            record_value(ports)
        ),
        None => record_value(ports),
    }
}

/// The ports a record's tag value holds, and what seals it; None when the ports are not a list
/// of ports, or the rest is not a time and a seal.
pub fn parse_record(value: &str) -> Option<(Vec<i32>, Option<Sealed>)> {
    let mut parts = value.split(PART_SEPARATOR);
    let ports = ports_of(parts.next()?)?;
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => Some((ports, None)),
        (Some(captured_at), Some(seal), None) => Some((
            ports,
            Some(Sealed {
                captured_at: captured_at.to_string(),
                seal: seal.to_string(),
            }),
        )),
        _ => None,
    }
}

/// The ports of a record (its seal left off); None when it is not a list of ports
/// (1..=65535).
pub fn ports_of(value: &str) -> Option<Vec<i32>> {
    value
        .split(PORT_SEPARATOR)
        .map(|p| {
            p.trim()
                .parse::<i32>()
                .ok()
                .filter(|p| (1..=65535).contains(p))
        })
        .collect()
}

/// One target group the instance was taken out of, and its ports there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub target_group: String,
    pub ports: Vec<i32>,
}

/// The target groups an instance of `vpcs` can be registered in on its own: instance groups
/// of those VPCs, except its Auto Scaling group's (standby takes it out of those, and returning
/// to service puts it back).
pub fn candidates(
    groups: Vec<TargetGroup>,
    vpcs: &[String],
    of_its_group: &[String],
) -> Vec<String> {
    groups
        .into_iter()
        .filter(|g| {
            g.target_type == "instance"
                && vpcs.contains(&g.vpc_id)
                && !of_its_group.contains(&g.arn)
        })
        .map(|g| g.arn)
        .collect()
}

/// A record as a target group's tag holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub registration: Registration,
    pub sealed: Option<Sealed>,
}

/// How a reader tells the records it may rely on: those whose seal verifies under `key`, or,
/// with `trust_unverified`, any.
pub struct Vouch<'a, S> {
    pub key: &'a S,
    pub trust_unverified: bool,
}

// By hand: derived, they would ask the key to be Copy too.
impl<S> Clone for Vouch<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Vouch<'_, S> {}

/// A record relied on: where, and when the containment that wrote it captured the instance
/// (None: relied on unsealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relied {
    pub registration: Registration,
    pub captured_at: Option<String>,
}

/// Splits `records` into those `vouch` relies on and those it refuses (or, with
/// `trust_unverified`, uses although they do not verify: the second list, then). KMS not
/// answering is an error, for the caller's retry: it says nothing about the record.
async fn vet(
    vouch: Vouch<'_, impl Seal>,
    instance_id: &str,
    records: Vec<GroupRecord>,
) -> Result<(Vec<Relied>, Vec<RecordTrouble>)> {
    let (mut relied, mut troubles) = (Vec::new(), Vec::new());
    for GroupRecord {
        registration,
        sealed,
    } in records
    {
        let verdict = match &sealed {
            None => Verdict::Unsealed,
            Some(Sealed { captured_at, seal }) => {
                let message = target_group_message(
                    &registration.target_group,
                    instance_id,
                    captured_at,
                    &record_value(&registration.ports),
                );
                check(vouch.key, &message, Some(seal)).await
            }
        };
        let captured_at = sealed.map(|sealed| sealed.captured_at);
        let trouble = RecordTrouble {
            resource: registration.target_group.clone(),
            record: record_key(instance_id),
            reason: verdict.reason(),
        };
        match verdict {
            Verdict::Verified => relied.push(Relied {
                registration,
                captured_at,
            }),
            Verdict::Unverifiable {
                transient: true, ..
            } => {
                return Err(
                    verdict.unavailable(&format!("the record on {}", registration.target_group))
                )
            }
            _ if vouch.trust_unverified => {
                relied.push(Relied {
                    registration,
                    captured_at: None,
                });
                troubles.push(trouble);
            }
            _ => troubles.push(trouble),
        }
    }
    Ok((relied, troubles))
}

/// What the measure did, or found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub instance_id: String,
    pub status: MeasureStatus,
    /// The target groups it is out of, with its ports there (recorded on each group).
    pub deregistered: Vec<Registration>,
    pub notes: Vec<String>,
    pub errors: Vec<StepError>,
}

fn short(arn: &str) -> &str {
    // arn:...:targetgroup/NAME/ID
    arn.split('/').nth(1).unwrap_or(arn)
}

impl Report {
    /// One line for the email and the page.
    pub fn line(&self) -> String {
        let mut line = self
            .deregistered
            .iter()
            .map(|r| {
                format!(
                    "out of target group {} (ports {})",
                    short(&r.target_group),
                    listed(&r.ports)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        for note in &self.notes {
            if !line.is_empty() {
                line.push_str("; ");
            }
            line.push_str(note);
        }
        line
    }
}

/// The records of `instance_id` on these target groups (every 20, as DescribeTags takes them),
/// and the groups whose record does not read (not a list of ports, or not a time and a seal
/// after them).
async fn records_on(
    elb: &impl LoadBalancing,
    groups: &[String],
    instance_id: &str,
) -> Result<(Vec<GroupRecord>, Vec<String>)> {
    let key = record_key(instance_id);
    let (mut found, mut unreadable) = (Vec::new(), Vec::new());
    for batch in groups.chunks(20) {
        for (group, tags) in elb.tags(batch).await? {
            if let Some((_, value)) = tags.iter().find(|(k, _)| *k == key) {
                match parse_record(value) {
                    Some((ports, sealed)) => found.push(GroupRecord {
                        registration: Registration {
                            target_group: group,
                            ports,
                        },
                        sealed,
                    }),
                    None => unreadable.push(group),
                }
            }
        }
    }
    Ok((found, unreadable))
}

/// The target groups the instance may be a target of on its own account ([`candidates`]),
/// from what [`deregister`] and its report-only [`plan_only`] both read first.
async fn candidate_groups(
    ec2: &impl Ec2,
    autoscaling: &impl AutoScaling,
    elb: &impl LoadBalancing,
    instance_id: &str,
) -> Result<Vec<String>> {
    let (instance, membership, groups) = tokio::join!(
        ec2.describe_instance(instance_id),
        autoscaling.membership(instance_id),
        elb.target_groups()
    );
    let (instance, membership, groups) = (instance?, membership?, groups?);
    let of_its_group = match membership {
        Some(membership) => autoscaling.group(&membership.group).await?.target_groups,
        None => Vec::new(),
    };
    Ok(candidates(groups, &instance.vpc_ids(), &of_its_group))
}

/// Takes `instance_id` out of the target groups it is registered in on its own: each group's
/// ports recorded on it first, sealed under `seal` for this containment (its capture at
/// `captured_at`), then deregistered. A group refusing is reported and the others go on;
/// throttling and no answer fail the step for a retry, which finds the records Cordon wrote.
pub async fn deregister(
    ec2: &impl Ec2,
    autoscaling: &impl AutoScaling,
    elb: &impl LoadBalancing,
    instance_id: &str,
    seal: &impl Seal,
    captured_at: &str,
) -> Result<Report> {
    let candidates = candidate_groups(ec2, autoscaling, elb, instance_id).await?;
    let mut report = Report {
        instance_id: instance_id.to_string(),
        status: MeasureStatus::Done,
        deregistered: Vec::new(),
        notes: Vec::new(),
        errors: Vec::new(),
    };
    // Cordon took the instance out of these already: a retry of this containment, or an
    // earlier one never given back, which this one gives back. A record Cordon did not seal
    // (planted before the finding) is not taken: it would have the approved restore register
    // the instance wherever its writer chose. Without a key (`cordon isolate`), no record is
    // sealed, and every one is taken as before.
    let (found, _) = records_on(elb, &candidates, instance_id).await?;
    let vouch = Vouch {
        key: seal,
        trust_unverified: !seal.has_key(),
    };
    let (recorded, refused) = vet(vouch, instance_id, found).await?;
    for earlier in &recorded {
        if let Some(at) = earlier
            .captured_at
            .as_deref()
            .filter(|at| *at != captured_at)
        {
            report.notes.push(format!(
                "{} (ports {}) was left by an earlier containment (captured {at}) and never given back: this one gives it back",
                short(&earlier.registration.target_group),
                listed(&earlier.registration.ports)
            ));
        }
    }
    report.deregistered = recorded.into_iter().map(|r| r.registration).collect();
    if seal.has_key() {
        for trouble in &refused {
            report.notes.push(format!(
                "{}'s {} tag is not a record Cordon sealed ({}): left as it is unless the instance is registered there",
                short(&trouble.resource),
                trouble.record,
                trouble.reason
            ));
        }
    }
    for group in &candidates {
        let ports = elb.registered_ports(group, instance_id).await?;
        if ports.is_empty() {
            continue;
        }
        let mut all: Vec<i32> = report
            .deregistered
            .iter()
            .find(|r| r.target_group == *group)
            .map(|r| r.ports.clone())
            .unwrap_or_default();
        for port in &ports {
            if !all.contains(port) {
                all.push(*port);
            }
        }
        // The record first: a deregistration without it could not be given back.
        let message = target_group_message(group, instance_id, captured_at, &record_value(&all));
        let sealed = match seal.seal(&message).await {
            Ok(sealed) => sealed.map(|seal| Sealed {
                captured_at: captured_at.to_string(),
                seal,
            }),
            Err(error) if error.is_transient() => return Err(error),
            // The approved restore goes by the step's own output; only a break-glass restore
            // reads the record, and it is told so.
            Err(error) => {
                report.notes.push(format!(
                    "the record on {} was written without its seal ({error}): `cordon restore` registers the instance there again only if told --trust-unverified",
                    short(group)
                ));
                None
            }
        };
        let value = sealed_value(&all, sealed.as_ref());
        if let Err(error) = elb
            .add_tags(group, &[(record_key(instance_id), value)])
            .await
        {
            if error.is_transient() {
                return Err(error);
            }
            report.errors.push(error.to_report());
            continue;
        }
        if let Err(error) = elb.deregister(group, instance_id, &ports).await {
            // A retry of a call whose answer was lost finds the targets gone (moto answers it
            // `InvalidTarget`): what counts is whether the instance is still registered there.
            match elb.registered_ports(group, instance_id).await {
                Ok(still) if !still.iter().any(|port| ports.contains(port)) => {}
                _ if error.is_transient() => return Err(error),
                _ => {
                    report.errors.push(error.to_report());
                    continue;
                }
            }
        }
        report.deregistered.retain(|r| r.target_group != *group);
        report.deregistered.push(Registration {
            target_group: group.clone(),
            ports: all,
        });
    }
    if report.deregistered.is_empty() && report.errors.is_empty() {
        report.status = MeasureStatus::NotApplicable;
        report
            .notes
            .push("registered in no target group of its own".into());
    } else if !report.errors.is_empty() {
        report.status = MeasureStatus::Partial;
    } else {
        report
            .notes
            .push("each group drains its connections for its deregistration delay".into());
    }
    Ok(report)
}

/// What [`deregister`] would do, in report-only mode: the same reads; no record, no
/// deregistration.
pub async fn plan_only(
    ec2: &impl Ec2,
    autoscaling: &impl AutoScaling,
    elb: &impl LoadBalancing,
    instance_id: &str,
) -> Result<Report> {
    let mut notes = Vec::new();
    for group in candidate_groups(ec2, autoscaling, elb, instance_id).await? {
        let ports = elb.registered_ports(&group, instance_id).await?;
        if !ports.is_empty() {
            notes.push(format!(
                "would deregister it from {} (ports {}), after recording them on the group",
                short(&group),
                ports
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let status = if notes.is_empty() {
        notes.push("registered in no target group of its own".into());
        MeasureStatus::NotApplicable
    } else {
        MeasureStatus::ReportOnly
    };
    Ok(Report {
        instance_id: instance_id.to_string(),
        status,
        deregistered: Vec::new(),
        notes,
        errors: Vec::new(),
    })
}

/// What restore did with the target groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub registered: Vec<Registration>,
    pub notes: Vec<String>,
    /// Records not used, and why (a seal that does not verify, or none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RecordTrouble>,
    /// Records used although they do not verify (break glass, `--trust-unverified`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unverified: Vec<RecordTrouble>,
}

impl RestoreReport {
    /// One line for the restored email.
    pub fn line(&self) -> String {
        let mut line = format!(
            "  Load balancers: back in {}",
            self.registered
                .iter()
                .map(|r| format!("{} (ports {})", short(&r.target_group), listed(&r.ports)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for note in &self.notes {
            line.push_str("; ");
            line.push_str(note);
        }
        line
    }
}

/// The target groups of the instance's VPCs that record it, and those whose record is not a
/// list of ports (`cordon status` shows them; restore gives them back where they verify).
pub async fn recorded(
    ec2: &impl Ec2,
    elb: &impl LoadBalancing,
    instance_id: &str,
) -> Result<(Vec<GroupRecord>, Vec<String>)> {
    let (instance, groups) = tokio::join!(ec2.describe_instance(instance_id), elb.target_groups());
    let (instance, groups) = (instance?, groups?);
    let candidates = candidates(groups, &instance.vpc_ids(), &[]);
    records_on(elb, &candidates, instance_id).await
}

/// Where a restore takes the target groups to register the instance in again from.
pub enum Source<'a, S> {
    /// The execution's own record of where its branch took the instance out, which no tag can
    /// change: exactly that, on those ports.
    Branch(&'a [Registration]),
    /// The groups' records (the branch failed, or break glass), each only where `vouch`
    /// relies on it: a record Cordon sealed, this containment's or an earlier one's never
    /// given back.
    Tags(Vouch<'a, S>),
}

/// What a restore registers the instance in again, from `source`; every group whose tag names
/// the instance but that is not registered from is named in `notes`. Whoever may tag a target
/// group could otherwise have a restore put the instance in any instance group of its VPCs.
pub async fn registrations_to_restore(
    instance_id: &str,
    source: Source<'_, impl Seal>,
    tagged: Vec<GroupRecord>,
    report: &mut RestoreReport,
) -> Result<Vec<Registration>> {
    match source {
        Source::Branch(known) => {
            for record in &tagged {
                let group = &record.registration.target_group;
                if !known.iter().any(|k| k.target_group == *group) {
                    report.notes.push(format!(
                        "{}'s {} tag names the instance, but this execution did not take it out of that group: not registered there, the tag left as it is",
                        short(group),
                        record_key(instance_id)
                    ));
                }
            }
            Ok(known.to_vec())
        }
        Source::Tags(vouch) => {
            let (relied, troubles) = vet(vouch, instance_id, tagged).await?;
            let relied = relied.into_iter().map(|r| r.registration).collect();
            if vouch.trust_unverified {
                report.unverified = troubles;
                return Ok(relied);
            }
            for trouble in &troubles {
                report.notes.push(format!(
                    "{}'s {} tag was not used ({}): not registered there, the tag left as it is",
                    short(&trouble.resource),
                    trouble.record,
                    trouble.reason
                ));
            }
            report.refused = troubles;
            Ok(relied)
        }
    }
}

/// Registers `instance_id` again where `source` says it was taken out (see
/// [`registrations_to_restore`]), then drops each group's record. None when there is nothing
/// to register. Call it after the network and the Auto Scaling group are given back.
pub async fn restore(
    ec2: &impl Ec2,
    elb: &impl LoadBalancing,
    instance_id: &str,
    source: Source<'_, impl Seal>,
) -> Result<Option<RestoreReport>> {
    let (tagged, unreadable) = recorded(ec2, elb, instance_id).await?;
    let mut report = RestoreReport {
        registered: Vec::new(),
        notes: unreadable
            .iter()
            .map(|g| {
                format!(
                    "{}'s {} tag is not a record Cordon writes (not a list of ports, or not a time and a seal after it): left as it is",
                    short(g),
                    record_key(instance_id)
                )
            })
            .collect(),
        refused: Vec::new(),
        unverified: Vec::new(),
    };
    let records = registrations_to_restore(instance_id, source, tagged, &mut report).await?;
    if records.is_empty() && report.notes.is_empty() {
        return Ok(None);
    }
    for record in records {
        match elb
            .register(&record.target_group, instance_id, &record.ports)
            .await
        {
            Ok(()) => {}
            Err(error) if error.is_transient() => return Err(error),
            // The group changed meanwhile (another type, another VPC): left with its record.
            Err(error) => {
                report.notes.push(format!(
                    "not registered again in {} ({}): left as it is, its record kept",
                    short(&record.target_group),
                    error
                ));
                continue;
            }
        }
        elb.remove_tags(&record.target_group, &[record_key(instance_id)])
            .await?;
        report.registered.push(record);
    }
    Ok(Some(report))
}

/// The deregistration step: in the finding's account and region, for an instance the capture
/// recorded.
pub async fn deregister_step(
    ec2_in: &impl crate::ec2::Ec2Provider,
    autoscaling_in: &impl super::auto_scaling::AutoScalingProvider,
    elb_in: &impl LoadBalancingProvider,
    seal: &impl Seal,
    capture: &crate::capture::CaptureOutput,
) -> Result<Report> {
    let record = crate::steps::record_of(capture)?;
    let target = crate::steps::target_of(capture);
    let ec2 = ec2_in.ec2_for(&target).await?;
    let autoscaling = autoscaling_in.autoscaling_for(&target).await?;
    let elb = elb_in.load_balancing_for(&target).await?;
    if capture.status == crate::capture::CaptureStatus::ReportOnly {
        use crate::report_only::ReadOnly;
        let (ec2, autoscaling, elb) = (ReadOnly(&ec2), ReadOnly(&autoscaling), ReadOnly(&elb));
        return plan_only(&ec2, &autoscaling, &elb, &record.instance_id).await;
    }
    deregister(
        &ec2,
        &autoscaling,
        &elb,
        &record.instance_id,
        seal,
        &record.captured_at,
    )
    .await
}

#[cfg(test)]
mod tests;
