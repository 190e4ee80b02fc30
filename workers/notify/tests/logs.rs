//! The notify binary, run as Lambda runs it, logs no task token at any log level. Lambda's
//! Runtime API is served on loopback (the two calls a function makes: next invocation, and its
//! response), AWS is moto's server, and the log level is the most verbose Lambda allows.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const TOKEN: &str = "AQCEAAAAKgAAAAMAAAAAAAAAAaBcSECRET+TASK/TOKEN==";

/// Serves one invocation of `event`; what the function answers arrives on the channel as
/// (path, body).
async fn runtime_api(event: Value) -> (String, mpsc::UnboundedReceiver<(String, String)>) {
    let (answers, answered) = mpsc::unbounded_channel();
    let served = Arc::new(AtomicBool::new(false));
    let app = axum::Router::new()
        .route(
            "/2018-06-01/runtime/invocation/next",
            get(move || {
                let (served, event) = (served.clone(), event.clone());
                async move {
                    if served.swap(true, Ordering::SeqCst) {
                        // One invocation only: the function waits here until it is stopped.
                        std::future::pending::<()>().await;
                    }
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                        + 60_000;
                    let mut headers = HeaderMap::new();
                    for (name, value) in [
                        ("lambda-runtime-aws-request-id", "request-1".to_string()),
                        ("lambda-runtime-deadline-ms", deadline.to_string()),
                        (
                            "lambda-runtime-invoked-function-arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:cordon-notify".into(),
                        ),
                    ] {
                        headers.insert(name, HeaderValue::from_str(&value).unwrap());
                    }
                    (headers, event.to_string())
                }
            }),
        )
        .route(
            "/2018-06-01/{*path}",
            post(move |Path(path): Path<String>, body: String| {
                let answers = answers.clone();
                async move {
                    let _ = answers.send((path, body));
                    StatusCode::ACCEPTED
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, answered)
}

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
    let key = cordon::local::create_hmac_key(&sdk, "link key")
        .await
        .unwrap();
    let event = json!({
        "kind": "approval_request",
        "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:cordon-quarantine:f-1",
        "task_token": TOKEN,
        "state": {"instance_id": "i-0123456789abcdef0", "approval_timeout_seconds": 3600},
    });
    let (api, mut answered) = runtime_api(event).await;
    // To a file, read at the end: at TRACE a pipe nobody reads meanwhile fills and blocks it.
    let log_path = std::env::temp_dir().join(format!("cordon-notify-log-{}", std::process::id()));
    let log_file = std::fs::File::create(&log_path).unwrap();

    let mut notify = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify"))
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", api.as_str()),
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
    let (path, body) = tokio::time::timeout(Duration::from_secs(60), answered.recv())
        .await
        .expect("notify answered the invocation")
        .unwrap();
    notify.kill().await.unwrap();
    let log = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
    let _ = std::fs::remove_file(&log_path);
    assert_eq!(
        path, "runtime/invocation/request-1/response",
        "{body}\n{log}"
    );
    // It did its work, and logged it.
    assert!(body.contains("message_id"), "{body}");
    assert!(
        log.contains("notify") && log.contains("approve restore?"),
        "{log}"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains("SECRET+TASK"),
        "{log}"
    );
}
