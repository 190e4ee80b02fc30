//! A local Lambda Runtime API: the three calls a custom runtime makes, so that a worker's
//! binary runs here as it runs in Lambda (the benchmark's cold starts, the log tests). It hands out one event on the first `next`, takes
//! the answer, and holds every later `next` (the process is then measured and killed). It
//! notes when the first `next` arrived: the end of the bootstrap's cold start.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

/// What the bootstrap answered: its response, or the error it reported.
pub type Answer = Result<Value, String>;

#[derive(Default)]
struct Shared {
    event: Mutex<Option<Value>>,
    first_next: Mutex<Option<Instant>>,
    answer: Mutex<Option<(Instant, Answer)>>,
}

pub struct RuntimeApi {
    /// `host:port`, as `AWS_LAMBDA_RUNTIME_API` wants it.
    pub address: String,
    shared: Arc<Shared>,
}

const PREFIX: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    /// Serves on a free loopback port; `event` is handed to the first `next` (None: hold it).
    pub async fn start(event: Option<Value>) -> RuntimeApi {
        let shared = Arc::new(Shared {
            event: Mutex::new(event),
            ..Shared::default()
        });
        let app = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/invocation/{{id}}/response"),
                post(response),
            )
            .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(error))
            .route(&format!("{PREFIX}/init/error"), post(error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        RuntimeApi { address, shared }
    }

    /// When the first `next` arrived, waiting up to `limit` for it.
    pub async fn first_next(&self, limit: Duration) -> Option<Instant> {
        let until = Instant::now() + limit;
        loop {
            if let Some(at) = *self.shared.first_next.lock().unwrap() {
                return Some(at);
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The answer and when it arrived, waiting up to `limit` for it.
    pub async fn answer(&self, limit: Duration) -> Option<(Instant, Answer)> {
        let until = Instant::now() + limit;
        loop {
            if let Some(answer) = self.shared.answer.lock().unwrap().clone() {
                return Some(answer);
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> (StatusCode, HeaderMap, String) {
    shared
        .first_next
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    let event = shared.event.lock().unwrap().take();
    let Some(event) = event else {
        // Lambda freezes an idle environment; here it waits until it is killed.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        // The EC2 workers' Lambda timeout: a worker starts no work its deadline would cut.
        + u128::from(cordon_core::aws::EC2_WORKER_TIMEOUT_SECONDS) * 1000;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    };
    set("lambda-runtime-aws-request-id", "request-1".into());
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:cordon-worker".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".into(),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, event.to_string())
}

async fn response(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *shared.answer.lock().unwrap() = Some((Instant::now(), Ok(value)));
    StatusCode::ACCEPTED
}

async fn error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let text = String::from_utf8_lossy(&body).into_owned();
    *shared.answer.lock().unwrap() = Some((Instant::now(), Err(text)));
    StatusCode::ACCEPTED
}
