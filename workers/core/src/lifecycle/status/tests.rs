use super::port::fake::{FakeFindings, HubFinding};
use super::*;
use crate::fake::block_on;
use crate::lifecycle::port::fake::FakeLedger;
use crate::lifecycle::Release;
use serde_json::json;

const ARN: &str = "arn:aws:guardduty:eu-west-1:111122223333:detector/12abc34d567e8fa901bc2d34e56789f0/finding/f-1";
const EXECUTION: &str = "arn:aws:states:eu-west-1:111122223333:execution:cordon-quarantine:one";

fn summary(arn: Option<&str>) -> FindingSummary {
    serde_json::from_value(json!({
        "id": "f-1", "finding_type": "Backdoor:EC2/C&CActivity.B", "severity": 8.0,
        "account_id": "111122223333", "region": "eu-west-1", "remote_addresses": [],
        "arn": arn,
    }))
    .unwrap()
}

fn state(restore_status: Option<&str>) -> WorkflowState {
    WorkflowState::from_value(&json!({
        "status": "captured", "reason": "r", "instance_id": "i-00000001", "tags_written": true,
        "warnings": [], "finding": summary(Some(ARN)), "record": null,
        "restore": restore_status.map(|status| json!({"status": status})),
    }))
}

fn hub_holding_the_finding() -> FakeFindings {
    let fake = FakeFindings::default();
    fake.with(|s| {
        s.hub_findings.insert(
            ARN.into(),
            HubFinding {
                product_arn: "arn:aws:securityhub:eu-west-1::product/aws/guardduty".into(),
                status: "NEW".into(),
                notes: vec![],
            },
        );
        s.detector = Some("admindetector".into());
    });
    fake
}

/// The ledger as the restore left it: this execution's release of the finding.
fn ledger_with_release() -> FakeLedger {
    let ledger = FakeLedger::default();
    ledger.with(|s| {
        s.releases.insert(
            "f-1".into(),
            Release {
                finding_id: "f-1".into(),
                instance_id: "i-00000001".into(),
                released_at: "2026-12-05T10:00:00Z".into(),
                execution: EXECUTION.into(),
                archived_by_cordon: false,
            },
        )
    });
    ledger
}

fn hub_status(fake: &FakeFindings) -> String {
    fake.with(|s| s.hub_findings[ARN].status.clone())
}

#[test]
fn the_arn_must_be_guardduty_s_for_this_finding_in_its_account_and_region() {
    let finding = finding_arn(&summary(Some(ARN))).unwrap();
    assert_eq!(finding.finding_id, "f-1");
    assert_eq!(
        finding.product_arn(),
        "arn:aws:securityhub:eu-west-1::product/aws/guardduty"
    );
    let gov = ARN.replace("arn:aws:", "arn:aws-us-gov:");
    assert_eq!(
        finding_arn(&summary(Some(&gov))).unwrap().product_arn(),
        "arn:aws-us-gov:securityhub:eu-west-1::product/aws/guardduty"
    );
    for (arn, why) in [
        (None, "carries no ARN"),
        (
            Some(ARN.replace("guardduty", "securityhub")),
            "not a GuardDuty finding's",
        ),
        (
            Some(ARN.replace("eu-west-1", "us-east-1")),
            "not of the finding's region",
        ),
        (
            Some(ARN.replace("111122223333", "444455556666")),
            "not of the finding's account",
        ),
        (
            Some(ARN.replace("finding/f-1", "finding/f-2")),
            "not this finding's",
        ),
        (
            Some(ARN.replace("detector/", "detector/../")),
            "does not name a detector's finding",
        ),
        (Some(ARN.replace("arn:aws:", "arn:evil:")), "not an AWS ARN"),
        (Some("f-1".to_string()), "not an ARN"),
    ] {
        let error = finding_arn(&summary(arn.as_deref())).unwrap_err();
        assert!(error.contains(why), "{arn:?}: {error}");
    }
}

#[test]
fn a_finding_that_names_no_account_or_region_is_not_followed() {
    // EC2 would act in Cordon's own account and region; Security Hub must not act elsewhere.
    for field in ["account_id", "region"] {
        let mut value = serde_json::to_value(summary(Some(ARN))).unwrap();
        value[field] = json!(null);
        let error = finding_arn(&serde_json::from_value(value).unwrap()).unwrap_err();
        assert!(
            error.contains("is not of the finding's"),
            "{field}: {error}"
        );
    }
}

#[test]
fn notified_on_containment_resolved_with_a_note_only_on_a_release() {
    let update = |kind, restore| workflow_update(kind, &state(restore), EXECUTION);
    // No note on NOTIFIED: Security Hub keeps one note, and the analysts' stays until release.
    assert_eq!(
        update(MessageKind::ApprovalRequest, None).unwrap(),
        (WorkflowStatus::Notified, None)
    );
    assert_eq!(
        update(MessageKind::Failed, None).unwrap(),
        (WorkflowStatus::Notified, None)
    );
    for released in ["restored", "drift", "not_isolated"] {
        let (status, note) = update(MessageKind::Restored, Some(released)).unwrap();
        assert_eq!(status, WorkflowStatus::Resolved);
        let note = note.unwrap();
        assert!(
            note.contains("i-00000001") && note.contains(EXECUTION),
            "{note}"
        );
    }
    assert!(update(MessageKind::Restored, Some("failed")).is_none());
    assert!(update(MessageKind::KeptIsolated, None).is_none());
    assert!(update(MessageKind::SecondApprovalRequest, None).is_none());
    // Security Hub refuses a note over 512 characters: a long execution name is cut.
    let long = format!("{EXECUTION}{}", "x".repeat(600));
    let (_, note) =
        workflow_update(MessageKind::Restored, &state(Some("restored")), &long).unwrap();
    assert_eq!(note.unwrap().chars().count(), NOTE_MAX_CHARS);
}

#[test]
fn the_finding_follows_the_quarantine_in_security_hub_and_is_archived_only_if_asked() {
    let (fake, ledger) = (hub_holding_the_finding(), ledger_with_release());
    let follow_as = |settings, kind, restore| {
        block_on(follow(
            &fake,
            &fake,
            Some(&ledger),
            settings,
            kind,
            &state(restore),
            EXECUTION,
        ))
    };
    let lines = follow_as(Settings::default(), MessageKind::ApprovalRequest, None);
    assert_eq!(hub_status(&fake), "NOTIFIED", "{lines:?}");
    assert_eq!(lines, ["Security Hub: workflow status NOTIFIED"]);
    assert!(fake.with(|s| s.hub_findings[ARN].notes.is_empty()));

    let lines = follow_as(Settings::default(), MessageKind::Restored, Some("restored"));
    assert_eq!(hub_status(&fake), "RESOLVED", "{lines:?}");
    assert!(fake.with(|s| s.hub_findings[ARN].notes[0].contains("restored exactly i-00000001")));
    assert!(fake.with(|s| s.archived.is_empty()), "archived unasked");
    assert!(!ledger.with(|s| s.releases["f-1"].archived_by_cordon));

    let archiving = Settings {
        security_hub: false,
        archive_on_restore: true,
        ..Settings::default()
    };
    let calls_before = fake.with(|s| s.calls.len());
    let lines = follow_as(archiving, MessageKind::Restored, Some("restored"));
    assert_eq!(fake.with(|s| s.archived.clone()), ["f-1"], "{lines:?}");
    assert_eq!(
        fake.with(|s| s.calls[calls_before..].to_vec()),
        ["guardduty:ListDetectors", "guardduty:ArchiveFindings"],
        "Security Hub left alone when turned off"
    );
    // The ledger noted it first: an archived update with new activity is still contained.
    assert!(ledger.with(|s| s.releases["f-1"].archived_by_cordon));
    // Never archived on containment.
    follow_as(archiving, MessageKind::ApprovalRequest, None);
    assert_eq!(fake.with(|s| s.archived.len()), 1);
}

/// Report-only changes nothing outside EC2 either: not after a report-only capture, whatever
/// the email (a failure too), and not on a report-only stack before capture could say so.
#[test]
fn report_only_leaves_the_finding_as_it_is() {
    let (fake, ledger) = (hub_holding_the_finding(), ledger_with_release());
    let mut planned = state(None);
    planned.capture.status = crate::capture::CaptureStatus::ReportOnly;
    for kind in [
        MessageKind::ReportOnly,
        MessageKind::Failed,
        MessageKind::ApprovalRequest,
    ] {
        assert!(
            workflow_update(kind, &planned, EXECUTION).is_none(),
            "{kind:?}"
        );
    }
    let report_only_stack = Settings {
        report_only: true,
        ..Settings::default()
    };
    let lines = block_on(follow(
        &fake,
        &fake,
        Some(&ledger),
        report_only_stack,
        MessageKind::Failed,
        &state(None),
        EXECUTION,
    ));
    assert_eq!(lines, ["report-only: the finding is left as it is"]);
    assert!(fake.with(|s| s.calls.is_empty()), "Security Hub was called");
    assert_eq!(hub_status(&fake), "NEW");
    let read = Settings::from_lookup(|name| (name == "CORDON_MODE").then(|| "report-only".into()));
    assert!(read.unwrap().report_only);
}

#[test]
fn a_finding_is_archived_only_once_the_ledger_notes_it() {
    let fake = hub_holding_the_finding();
    let archiving = Settings {
        security_hub: false,
        archive_on_restore: true,
        ..Settings::default()
    };
    let restored = state(Some("restored"));
    // No ledger, or no release of it by this execution (a later one replaced it): an archive
    // would hide its later activity from the policy, so nothing is archived.
    let lines = block_on(follow(
        &fake,
        &fake,
        None::<&FakeLedger>,
        archiving,
        MessageKind::Restored,
        &restored,
        EXECUTION,
    ));
    assert!(lines[0].contains("no release ledger"), "{lines:?}");
    let replaced = ledger_with_release();
    replaced.with(|s| s.releases.get_mut("f-1").unwrap().execution = "arn:later".into());
    let lines = block_on(follow(
        &fake,
        &fake,
        Some(&replaced),
        archiving,
        MessageKind::Restored,
        &restored,
        EXECUTION,
    ));
    assert!(lines[0].contains("a later one replaced it"), "{lines:?}");
    assert!(fake.with(|s| s.archived.is_empty()));
    assert!(fake.with(|s| !s.calls.iter().any(|c| c.starts_with("guardduty:"))));
}

#[test]
fn whatever_security_hub_or_guardduty_answer_the_step_goes_on_and_says_why() {
    let both = Settings {
        security_hub: true,
        archive_on_restore: true,
        ..Settings::default()
    };
    let ledger = ledger_with_release();
    let restored = state(Some("restored"));
    let fake = FakeFindings::default();
    let run = |kind, state: &WorkflowState| {
        block_on(follow(
            &fake,
            &fake,
            Some(&ledger),
            both,
            kind,
            state,
            EXECUTION,
        ))
    };
    // Not yet imported (GuardDuty sends findings within about 5 minutes).
    let lines = run(MessageKind::ApprovalRequest, &state(None));
    assert!(
        lines[0].contains("does not hold the finding yet"),
        "{lines:?}"
    );
    // Security Hub not enabled; no detector; a member account.
    fake.with(|s| s.hub_disabled = true);
    let lines = run(MessageKind::Restored, &restored);
    assert!(lines[0].contains("InvalidAccessException"), "{lines:?}");
    assert!(
        lines[1].contains("has no detector in eu-west-1"),
        "{lines:?}"
    );
    fake.with(|s| {
        s.detector = Some("memberdetector".into());
        s.member = true;
    });
    let lines = run(MessageKind::Restored, &restored);
    assert!(
        lines[1].contains("not archived") && lines[1].contains("Member accounts"),
        "{lines:?}"
    );
    assert!(fake.with(|s| s.archived.is_empty()));
    // Throttled through every attempt.
    fake.with(|s| {
        s.failing.insert(
            "securityhub:BatchUpdateFindings".into(),
            CordonError::Throttled {
                operation: "BatchUpdateFindings".into(),
                message: "Rate exceeded".into(),
            },
        )
    });
    let lines = run(MessageKind::ApprovalRequest, &state(None));
    assert!(lines[0].contains("throttled"), "{lines:?}");
}

#[test]
fn a_finding_whose_arn_is_not_its_own_is_not_touched() {
    let fake = hub_holding_the_finding();
    let mut value = serde_json::to_value(state(Some("restored"))).unwrap();
    value["finding"]["arn"] = json!(ARN.replace("111122223333", "444455556666"));
    let state = WorkflowState::from_value(&value);
    let both = Settings {
        security_hub: true,
        archive_on_restore: true,
        ..Settings::default()
    };
    let ledger = ledger_with_release();
    let lines = block_on(follow(
        &fake,
        &fake,
        Some(&ledger),
        both,
        MessageKind::Restored,
        &state,
        EXECUTION,
    ));
    assert!(
        lines[0].starts_with("finding not followed: the finding's ARN"),
        "{lines:?}"
    );
    assert!(fake.with(|s| s.calls.is_empty()));
}

#[test]
fn the_settings_are_true_or_false_and_default_to_security_hub_only() {
    assert_eq!(
        Settings::from_lookup(|_| None).unwrap(),
        Settings::default()
    );
    let set = Settings::from_lookup(|name| match name {
        "CORDON_SECURITY_HUB_WORKFLOW" => Some("false".into()),
        "CORDON_ARCHIVE_ON_RESTORE" => Some("true".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        set,
        Settings {
            security_hub: false,
            archive_on_restore: true,
            report_only: false,
        }
    );
    let error = Settings::from_lookup(|name| {
        (name == "CORDON_ARCHIVE_ON_RESTORE").then(|| "yes".to_string())
    })
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("CORDON_ARCHIVE_ON_RESTORE is \"yes\""),
        "{error}"
    );
}

/// What `GetFindings` answers, in the SDK's types, read as Cordon reads an EventBridge
/// finding: the custom action starts executions from it.
#[test]
fn a_finding_from_get_findings_reads_as_eventbridge_delivers_it() {
    use aws_sdk_guardduty::types::{
        AccessKeyDetails, Action, Finding as Gd, InstanceDetails, NetworkConnectionAction,
        PortProbeAction, PortProbeDetail, RemoteIpDetails, Resource, Service, Tag,
    };
    let remote = |ip: &str| RemoteIpDetails::builder().ip_address_v4(ip).build();
    let finding = Gd::builder()
        .id("46ba0ac2845071e23ccdeb2ae03bfdea")
        .arn(ARN)
        .account_id("111122223333")
        .region("eu-west-1")
        .partition("aws")
        .schema_version("2.0")
        .r#type("Backdoor:EC2/C&CActivity.B")
        .severity(8.0)
        .created_at("2026-12-01T10:00:00.000Z")
        .updated_at("2026-12-01T11:00:00.000Z")
        .resource(
            Resource::builder()
                .resource_type("Instance")
                .instance_details(
                    InstanceDetails::builder()
                        .instance_id("i-0123456789abcdef0")
                        .tags(Tag::builder().key("team").value("web").build())
                        .build(),
                )
                .access_key_details(AccessKeyDetails::builder().user_name("web-role").build())
                .build(),
        )
        .service(
            Service::builder()
                .archived(true)
                .resource_role("ACTOR")
                .event_first_seen("2026-12-01T09:00:00.000Z")
                .event_last_seen("2026-12-01T10:30:00.000Z")
                .action(
                    Action::builder()
                        .action_type("NETWORK_CONNECTION")
                        .network_connection_action(
                            NetworkConnectionAction::builder()
                                .remote_ip_details(remote("198.51.100.7"))
                                .build(),
                        )
                        .port_probe_action(
                            PortProbeAction::builder()
                                .port_probe_details(
                                    PortProbeDetail::builder()
                                        .remote_ip_details(remote("203.0.113.9"))
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build();
    let detail = super::aws::as_event_detail(&finding);
    let event =
        json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": detail});
    let parsed = crate::steps::single_finding(&event).unwrap();
    assert_eq!(parsed.id, "46ba0ac2845071e23ccdeb2ae03bfdea");
    assert_eq!(parsed.finding_type, "Backdoor:EC2/C&CActivity.B");
    assert_eq!(parsed.severity, 8.0);
    assert_eq!(parsed.account_id.as_deref(), Some("111122223333"));
    assert_eq!(parsed.region.as_deref(), Some("eu-west-1"));
    assert_eq!(parsed.instance_id.as_deref(), Some("i-0123456789abcdef0"));
    assert_eq!(parsed.arn.as_deref(), Some(ARN));
    assert!(parsed.archived);
    assert_eq!(parsed.resource_role.as_deref(), Some("ACTOR"));
    assert_eq!(
        parsed.remote_addresses,
        [
            "198.51.100.7".parse::<std::net::IpAddr>().unwrap(),
            "203.0.113.9".parse().unwrap()
        ]
    );
    assert_eq!(
        parsed.last_seen.as_deref().map(|t| &t[..16]),
        Some("2026-12-01T10:30")
    );
    assert!(parsed.updated_at.is_some());
    assert_eq!(parsed.instance_tags.len(), 1);
    // Absent fields are left out, as EventBridge leaves them out, never sent as null.
    assert!(!detail.to_string().contains("null"), "{detail}");
}
