use std::sync::Mutex;

use super::*;
use crate::lifecycle::status::port::fake::FakeFindings;

const REGION: &str = "us-east-1";
const ADMIN: &str = "111122223333";
const MEMBER: &str = "193043430472";
const FINDING: &str = "46ba0ac2845071e23ccdeb2ae03bfdea";
const DETECTOR: &str = "d4b040365221be2b54a6264dc9a4bc64";

fn arn(region: &str, account: &str, finding: &str) -> String {
    format!("arn:aws:guardduty:{region}:{account}:detector/{DETECTOR}/finding/{finding}")
}

/// One GuardDuty finding as Security Hub holds it (ASFF), after the GuardDuty user guide's
/// "typical finding" sample.
fn asff(id: &str) -> Value {
    json!({
        "SchemaVersion": "2018-10-08",
        "Id": id,
        "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
        "ProductName": "GuardDuty", "CompanyName": "Amazon", "Region": "us-east-1",
        "GeneratorId": format!("arn:aws:guardduty:us-east-1:{MEMBER}:detector/{DETECTOR}"),
        "AwsAccountId": MEMBER,
        "Types": ["TTPs/Initial Access/UnauthorizedAccess:EC2-SSHBruteForce"],
        "UpdatedAt": "2020-09-30T12:14:00.206Z",
        "Severity": {"Product": 2, "Label": "MEDIUM", "Normalized": 40},
        "Title": "199.241.229.197 is performing SSH brute force attacks against i-0c10c2c7863d1a356.",
        "ProductFields": {"aws/guardduty/service/archived": "false"},
        "Resources": [{"Type": "AwsEc2Instance",
            "Id": format!("arn:aws:ec2:us-east-1:{MEMBER}:instance/i-0c10c2c7863d1a356")}],
        "Workflow": {"Status": "NEW"}, "RecordState": "ACTIVE"
    })
}

/// The custom action event, after the Security Hub user guide's sample.
fn event(findings: Vec<Value>) -> Value {
    json!({
        "version": "0",
        "id": "1a1111a1-b22b-3c33-444d-5555e5ee5555",
        "detail-type": "Security Hub Findings - Custom Action",
        "source": "aws.securityhub",
        "account": ADMIN,
        "time": "2019-04-11T18:43:48Z",
        "region": REGION,
        "resources": [format!("arn:aws:securityhub:{REGION}:{ADMIN}:action/custom/CordonContain")],
        "detail": {"actionName": "Cordon: contain", "actionDescription": "Contain the instance",
                   "findings": findings}
    })
}

/// GuardDuty's own record of the finding, as EventBridge would deliver its detail.
fn guard_duty_detail(finding: &str, updated_at: &str) -> Value {
    json!({
        "id": finding, "arn": arn(REGION, MEMBER, finding),
        "type": "UnauthorizedAccess:EC2/SSHBruteForce", "severity": 8,
        "accountId": MEMBER, "region": REGION, "updatedAt": updated_at,
        "resource": {"resourceType": "Instance",
                     "instanceDetails": {"instanceId": "i-0c10c2c7863d1a356"}},
        "service": {"archived": false, "resourceRole": "TARGET",
            "action": {"actionType": "NETWORK_CONNECTION", "networkConnectionAction":
                {"remoteIpDetails": {"ipAddressV4": "199.241.229.197"}}}}
    })
}

fn guard_duty_holding(findings: &[(&str, &str)]) -> FakeFindings {
    let fake = FakeFindings::default();
    fake.with(|s| {
        s.detector = Some("admin-detector".into());
        for (id, updated) in findings {
            s.guard_duty_findings
                .insert(id.to_string(), guard_duty_detail(id, updated));
        }
    });
    fake
}

/// Step Functions as it names executions: a name is used once per state machine; the same
/// name and input while it runs answers the same execution.
#[derive(Default)]
struct FakeExecutions {
    started: Mutex<Vec<(String, String)>>,
    /// Executions that ended without containing, by name, with their status.
    ended_badly: Mutex<Vec<(String, String)>>,
    /// StartExecution refused with this error (throttled, say).
    refusing: Mutex<Option<CordonError>>,
}

impl Executions for FakeExecutions {
    async fn ended_badly(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .ended_badly
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, status)| status.clone()))
    }

    async fn start(&self, name: &str, input: &str) -> Result<Started> {
        if let Some(error) = self.refusing.lock().unwrap().clone() {
            return Err(error);
        }
        let mut started = self.started.lock().unwrap();
        let arn = format!("arn:aws:states:{REGION}:{ADMIN}:execution:cordon:{name}");
        match started.iter().find(|(n, _)| n == name) {
            Some((_, same)) if same == input => Ok(Started::Execution(arn)),
            Some(_) => Ok(Started::AlreadyExists),
            None => {
                started.push((name.to_string(), input.to_string()));
                Ok(Started::Execution(arn))
            }
        }
    }
}

/// One click of the action in this stack's account and region.
async fn click(
    guard_duty: &FakeFindings,
    executions: &FakeExecutions,
    event: &Value,
) -> Vec<Outcome> {
    start_selected(guard_duty, executions, event, ADMIN, REGION)
        .await
        .unwrap()
}

/// The event of a click on the member's finding `FINDING`, of this region.
fn the_finding_selected() -> Value {
    event(vec![asff(&arn(REGION, MEMBER, FINDING))])
}

#[tokio::test]
async fn each_selected_finding_starts_one_execution_of_guard_dutys_own_record() {
    let second = "56ba0ac2845071e23ccdeb2ae03bfdeb";
    let guard_duty = guard_duty_holding(&[
        (FINDING, "2020-09-30T12:14:00.206Z"),
        (second, "2020-10-01T08:00:00.000Z"),
    ]);
    let executions = FakeExecutions::default();
    let selected = event(vec![
        asff(&arn(REGION, MEMBER, FINDING)),
        asff(&arn(REGION, MEMBER, second)),
    ]);

    let outcomes = click(&guard_duty, &executions, &selected).await;

    assert_eq!(
        outcomes.iter().map(|o| o.outcome).collect::<Vec<_>>(),
        ["started", "started"]
    );
    let started = executions.started.lock().unwrap();
    assert_eq!(started.len(), 2);
    // The input is GuardDuty's finding, as EventBridge delivers one, which capture reads.
    let input: Value = serde_json::from_str(&started[0].1).unwrap();
    assert_eq!(input["detail-type"], "GuardDuty Finding");
    assert_eq!(
        input["detail"],
        guard_duty_detail(FINDING, "2020-09-30T12:14:00.206Z")
    );
    let parsed = crate::steps::single_finding(&input).unwrap();
    assert_eq!(parsed.instance_id.as_deref(), Some("i-0c10c2c7863d1a356"));
    assert_eq!(parsed.finding_type, "UnauthorizedAccess:EC2/SSHBruteForce");
    assert_eq!(parsed.account_id.as_deref(), Some(MEMBER));
    assert_eq!(
        started[0].0,
        format!("custom-action-{FINDING}-20200930121400206")
    );
    assert_eq!(
        guard_duty.with(|s| s.calls.clone()),
        [
            "guardduty:ListDetectors",
            "guardduty:GetFindings",
            "guardduty:GetFindings"
        ]
    );
}

#[tokio::test]
async fn a_second_click_starts_nothing_new_and_a_later_update_starts_again() {
    let guard_duty = guard_duty_holding(&[(FINDING, "2020-09-30T12:14:00.206Z")]);
    let executions = FakeExecutions::default();
    let clicked = event(vec![asff(&arn(REGION, MEMBER, FINDING))]);
    let first = click(&guard_duty, &executions, &clicked).await;
    let again = click(&guard_duty, &executions, &clicked).await;
    // While it runs, Step Functions answers the same execution: nothing new is started.
    assert_eq!(again[0].execution, first[0].execution);
    assert_eq!(executions.started.lock().unwrap().len(), 1);

    guard_duty.with(|s| {
        s.guard_duty_findings.insert(
            FINDING.into(),
            guard_duty_detail(FINDING, "2020-10-02T00:00:00.000Z"),
        )
    });
    let later = click(&guard_duty, &executions, &clicked).await;
    assert_eq!(later[0].outcome, "started");
    assert_ne!(later[0].execution, first[0].execution);
}

#[tokio::test]
async fn an_ended_execution_of_the_same_update_is_said_not_started_again() {
    let guard_duty = guard_duty_holding(&[(FINDING, "2020-09-30T12:14:00.206Z")]);
    let executions = FakeExecutions::default();
    let name = format!("custom-action-{FINDING}-20200930121400206");
    executions
        .started
        .lock()
        .unwrap()
        .push((name, "an ended execution's input".into()));
    let outcomes = click(&guard_duty, &executions, &the_finding_selected()).await;
    assert_eq!(outcomes[0].outcome, "already_started");
}

#[tokio::test]
async fn what_is_not_guard_dutys_finding_of_this_region_is_refused_and_starts_nothing() {
    let guard_duty = guard_duty_holding(&[(FINDING, "2020-09-30T12:14:00.206Z")]);
    let executions = FakeExecutions::default();
    let mut other_product = asff(&arn(REGION, MEMBER, FINDING));
    other_product["ProductArn"] =
        json!("arn:aws:securityhub:us-east-1:111122223333:product/111122223333/default");
    let mut other_account = asff(&arn(REGION, MEMBER, FINDING));
    other_account["AwsAccountId"] = json!("999999999999");
    let cases = [
        // Another product's finding (say, imported by anyone allowed BatchImportFindings).
        (other_product, "not GuardDuty's"),
        (asff("arn:aws:securityhub:us-east-1:111122223333:subscription/aws-foundational/v/1.0.0/EC2.2/finding/1"), "not a GuardDuty finding"),
        (asff("arn:aws:guardduty:us-east-1:193043430472:detector/d4b0/finding/../../x"), "not a GuardDuty finding"),
        (asff(&arn("eu-west-1", MEMBER, FINDING)), "Cordon's stack in eu-west-1"),
        (other_account, "is not the account its ARN names"),
        (json!({"Id": 7}), "not a GuardDuty finding"),
    ];
    for (finding, why) in cases {
        let outcomes = click(&guard_duty, &executions, &event(vec![finding.clone()])).await;
        assert_eq!(outcomes[0].outcome, "refused", "{finding}");
        assert!(
            outcomes[0].reason.as_deref().unwrap().contains(why),
            "{outcomes:?}"
        );
    }
    assert!(executions.started.lock().unwrap().is_empty());
    // Nothing was asked of GuardDuty either.
    assert!(guard_duty.with(|s| s.calls.is_empty()));
}

#[tokio::test]
async fn a_finding_guard_duty_does_not_hold_or_answers_otherwise_is_refused() {
    let guard_duty = guard_duty_holding(&[]);
    let executions = FakeExecutions::default();
    let outcomes = click(&guard_duty, &executions, &the_finding_selected()).await;
    assert_eq!(outcomes[0].outcome, "refused");
    assert!(outcomes[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("holds no finding"));

    // An answer about another account than the ARN's is not acted on.
    guard_duty.with(|s| {
        let mut detail = guard_duty_detail(FINDING, "2020-09-30T12:14:00.206Z");
        detail["accountId"] = json!("999999999999");
        s.guard_duty_findings.insert(FINDING.into(), detail);
    });
    let outcomes = click(&guard_duty, &executions, &the_finding_selected()).await;
    assert_eq!(outcomes[0].outcome, "refused");
    assert!(executions.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_event_that_is_not_a_custom_actions_is_refused_whole() {
    let guard_duty = guard_duty_holding(&[]);
    let executions = FakeExecutions::default();
    let mut not_one = event(vec![]);
    not_one["detail-type"] = json!("GuardDuty Finding");
    let too_many = event(
        (0..21)
            .map(|_| asff(&arn(REGION, MEMBER, FINDING)))
            .collect(),
    );
    let mut no_list = event(vec![]);
    no_list["detail"]["findings"] = json!("all of them");
    for bad in [not_one, too_many, no_list] {
        let error = start_selected(&guard_duty, &executions, &bad, ADMIN, REGION)
            .await
            .unwrap_err();
        assert!(matches!(error, CordonError::InvalidInput(_)), "{error}");
    }
    assert!(guard_duty.with(|s| s.calls.is_empty()));
}

#[tokio::test]
async fn without_a_detector_the_account_is_said_not_to_be_the_administrator() {
    let guard_duty = FakeFindings::default();
    let executions = FakeExecutions::default();
    let error = start_selected(
        &guard_duty,
        &executions,
        &the_finding_selected(),
        ADMIN,
        REGION,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("no detector"), "{error}");
}

#[test]
fn execution_names_are_what_step_functions_accepts() {
    for (id, updated) in [
        (FINDING, Some("2020-09-30T12:14:00.206Z")),
        (&"a".repeat(64)[..], Some("2020-09-30T12:14:00.206Z")),
        ("x", None),
    ] {
        let name = execution_name(id, updated);
        assert!(name.len() <= 80, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_finding_whose_execution_failed_can_be_contained_again_by_a_click() {
    let guard_duty = guard_duty_holding(&[(FINDING, "2020-09-30T12:14:00.206Z")]);
    let executions = FakeExecutions::default();
    let clicked = event(vec![asff(&arn(REGION, MEMBER, FINDING))]);
    let first = click(&guard_duty, &executions, &clicked).await;
    let name = format!("custom-action-{FINDING}-20200930121400206");
    // The first execution failed, with another input than a click gives (so StartExecution
    // answers that the name is taken).
    executions.started.lock().unwrap()[0].1 = "ended".into();
    executions
        .ended_badly
        .lock()
        .unwrap()
        .push((name.clone(), "FAILED".into()));
    let again = click(&guard_duty, &executions, &clicked).await;
    assert_eq!(again[0].outcome, "started", "{again:?}");
    assert_ne!(again[0].execution, first[0].execution);
    assert!(again[0]
        .execution
        .as_deref()
        .unwrap()
        .ends_with(&format!("{name}-r2")));

    // After MOST_TRIES failures, the click says so and starts nothing.
    for n in 2..=MOST_TRIES {
        let retry = format!("{name}-r{n}");
        let mut started = executions.started.lock().unwrap();
        match started.iter_mut().find(|(n, _)| *n == retry) {
            Some(existing) => existing.1 = "ended".into(),
            None => started.push((retry.clone(), "ended".into())),
        }
        executions
            .ended_badly
            .lock()
            .unwrap()
            .push((retry, "TIMED_OUT".into()));
    }
    let count = executions.started.lock().unwrap().len();
    let exhausted = click(&guard_duty, &executions, &clicked).await;
    assert_eq!(exhausted[0].outcome, "refused");
    assert!(exhausted[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("ended without containing"));
    assert_eq!(executions.started.lock().unwrap().len(), count);
}

#[tokio::test]
async fn a_finding_aws_did_not_answer_for_makes_the_event_retried() {
    let guard_duty = guard_duty_holding(&[(FINDING, "2020-09-30T12:14:00.206Z")]);
    let executions = FakeExecutions::default();
    *executions.refusing.lock().unwrap() = Some(CordonError::Throttled {
        operation: "Step Functions StartExecution".into(),
        message: "Rate exceeded".into(),
    });
    let outcomes = click(&guard_duty, &executions, &the_finding_selected()).await;
    assert_eq!(outcomes[0].outcome, "failed");
    let error = retry_needed(&outcomes).expect("the event is retried");
    assert!(error.to_string().contains("1 of 1"), "{error}");
    // A refusal is final: retrying would change nothing.
    let refused = click(
        &guard_duty,
        &FakeExecutions::default(),
        &event(vec![asff(&arn("eu-west-1", MEMBER, FINDING))]),
    )
    .await;
    assert!(retry_needed(&refused).is_none());
}
