//! The notify binary, run as Lambda runs it, logs no task token at any log level. Lambda's
//! Runtime API is served on loopback (the two calls a function makes: next invocation, and its
//! response), AWS is moto's server, and the log level is the most verbose Lambda allows.

use std::process::Stdio;
use std::time::Duration;

use cordon_tests::runtime_api::RuntimeApi;
use serde_json::json;

const TOKEN: &str = "AQCEAAAAKgAAAAMAAAAAAAAAAaBcSECRET+TASK/TOKEN==";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_level_writes_the_task_token_down() {
    let moto = cordon_tests::Moto::start();
    let sdk = moto.sdk_config();
    let topic = aws_sdk_sns::Client::new(&sdk)
        .create_topic()
        .name("cordon-alerts")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let key = cordon::local::create_stack_key(&sdk, "LinkKey")
        .await
        .unwrap();
    let event = json!({
        "kind": "approval_request",
        "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:cordon-quarantine:f-1",
        "task_token": TOKEN,
        "state": {"instance_id": "i-0123456789abcdef0", "approval_timeout_seconds": 3600},
    });
    let api = RuntimeApi::start(Some(event)).await;
    // To a file, read at the end: at TRACE a pipe nobody reads meanwhile fills and blocks it.
    let log_path = std::env::temp_dir().join(format!("cordon-notify-log-{}", std::process::id()));
    let log_file = std::fs::File::create(&log_path).unwrap();

    let mut notify = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify"))
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", api.address.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", "cordon-notify"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            // The most verbose a function can be asked to log, both ways.
            ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
            ("RUST_LOG", "trace"),
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("CORDON_TOPIC_ARN", topic.as_str()),
            ("CORDON_APPROVAL_URL", "http://127.0.0.1:9/approval"),
            ("CORDON_APPROVAL_KEY_ID", key.as_str()),
        ])
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let answer = api.answer(Duration::from_secs(60)).await;
    notify.kill().await.unwrap();
    let log = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
    let _ = std::fs::remove_file(&log_path);
    // It did its work, and logged it.
    let (_, answer) = answer.expect("notify answered the invocation");
    let sent = answer.unwrap_or_else(|error| panic!("{error}\n{log}"));
    assert!(sent["message_id"].is_string(), "{sent}");
    assert!(
        log.contains("notify") && log.contains("approve restore?"),
        "{log}"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains("SECRET+TASK"),
        "{log}"
    );
    // Its metrics are lines of their own, in Embedded Metric Format, as CloudWatch reads them.
    let emf: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .collect();
    let calls = emf
        .iter()
        .find(|doc| doc["Step"] == "notify")
        .unwrap_or_else(|| panic!("no metrics of notify in\n{log}"));
    assert_eq!(calls["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Cordon");
    assert!(calls["AwsCalls"].is_number(), "{calls}");
}
