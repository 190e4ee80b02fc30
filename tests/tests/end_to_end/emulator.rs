//! What the local runner relies on in the emulator, held to Step Functions' behaviour.
//!
//! The runner turns each worker's `lambda:invoke` into a `.waitForTaskToken` callback and
//! answers it; the state's Retry must then run the worker again for every attempt, as Step
//! Functions re-invokes a Lambda function. moto 5.2.5 reuses the token across retries and
//! hands every retry the first answer at once; `scripts/moto_server.py` fixes that, and this
//! test fails against moto without it (`MOTO_SERVER=.venv/bin/moto_server`).

use std::time::Duration;

use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType};
use cordon_tests::Moto;
use serde_json::{json, Value};

/// One callback task that retries `Transient` once, then a Succeed; a Catch says if it gave up.
fn definition() -> Value {
    json!({
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {
                    "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:worker",
                    "Payload": {"token.$": "$$.Task.Token"}
                },
                "Retry": [{"ErrorEquals": ["Transient"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "GaveUp"}],
                "Next": "Done"
            },
            "GaveUp": {"Type": "Fail", "Error": "GaveUp"},
            "Done": {"Type": "Succeed"}
        }
    })
}

async fn history(sfn: &aws_sdk_sfn::Client, execution: &str) -> Vec<HistoryEvent> {
    sfn.get_execution_history()
        .execution_arn(execution)
        .send()
        .await
        .unwrap()
        .events()
        .to_vec()
}

/// Waits for the `n`th TaskScheduled event and returns its token.
async fn nth_token(sfn: &aws_sdk_sfn::Client, execution: &str, n: usize) -> String {
    for _ in 0..100 {
        let tokens: Vec<String> = history(sfn, execution)
            .await
            .iter()
            .filter_map(|e| e.task_scheduled_event_details())
            .map(|d| {
                let parameters: Value = serde_json::from_str(d.parameters()).unwrap();
                parameters["Payload"]["token"].as_str().unwrap().to_string()
            })
            .collect();
        if let Some(token) = tokens.get(n - 1) {
            return token.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kinds: Vec<String> = history(sfn, execution)
        .await
        .iter()
        .map(|e| format!("{:?}", e.r#type()))
        .collect();
    panic!("no attempt {n} was scheduled within 10 s: {kinds:?}");
}

#[tokio::test]
async fn a_retried_callback_task_waits_for_its_own_answer() {
    let moto = Moto::start();
    reqwest::Client::new()
        .post(format!("{}/moto-api/config", moto.endpoint))
        .body(
            json!({"stepfunctions": {"execute_state_machine": true}, "lambda": {"use_docker": false}})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let sfn = aws_sdk_sfn::Client::new(&cordon::local::emulator_config(&moto.endpoint));
    let machine = sfn
        .create_state_machine()
        .name("retry-probe")
        .definition(definition().to_string())
        .role_arn("arn:aws:iam::123456789012:role/probe")
        .send()
        .await
        .unwrap();
    let execution = sfn
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .input("{}")
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_string();

    let first = nth_token(&sfn, &execution, 1).await;
    sfn.send_task_failure()
        .task_token(&first)
        .error("Transient")
        .send()
        .await
        .unwrap();
    // The retry is a new attempt: it must wait for an answer of its own, however long the
    // worker takes, and not take the first attempt's failure again.
    let second = nth_token(&sfn, &execution, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sfn.send_task_success()
        .task_token(&second)
        .output(json!({"Payload": {"status": "done"}}).to_string())
        .send()
        .await
        .unwrap();

    let mut kinds = Vec::new();
    for _ in 0..100 {
        kinds = history(&sfn, &execution)
            .await
            .iter()
            .map(|e| e.r#type().clone())
            .collect();
        if kinds.iter().any(|k| {
            matches!(
                k,
                HistoryEventType::ExecutionSucceeded | HistoryEventType::ExecutionFailed
            )
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count = |kind: HistoryEventType| kinds.iter().filter(|k| **k == kind).count();
    assert_ne!(first, second, "each attempt has a token of its own");
    assert_eq!(
        (
            count(HistoryEventType::TaskScheduled),
            count(HistoryEventType::TaskFailed),
            count(HistoryEventType::TaskSucceeded),
            count(HistoryEventType::ExecutionSucceeded)
        ),
        (2, 1, 1, 1),
        "one failed attempt, then one that took its own answer: {kinds:?}"
    );
}
