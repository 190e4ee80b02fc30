//! The workers' logs. Lambda's log level (`AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`) applies to
//! Cordon's own code only: every other crate is held at INFO whatever is asked, because below
//! it they log what the workers must never write down. The Lambda runtime traces each raw
//! event (notify's carries the approval task's token), and the AWS SDK traces each request it
//! sends (bodies included). Per-crate directives in `RUST_LOG` are ignored for the same reason.

use std::str::FromStr;

use lambda_runtime::tracing::subscriber::{self, filter::LevelFilter, EnvFilter};

/// The crates whose logs follow the requested level: the core and the worker binaries.
const OWN_CRATES: &[&str] = &[
    "cordon_core",
    "capture_state",
    "isolate_sg",
    "block_nacl",
    "notify",
    "restore",
    "approval",
    "hold_asg",
    "cut_credentials",
    "snapshot_volumes",
    "deregister_targets",
    "custom_action",
];

/// The filter for a requested level (`None` or unreadable: INFO).
pub fn filter(requested: Option<&str>) -> EnvFilter {
    let level = requested
        .map(str::trim)
        .and_then(|text| {
            // Lambda's levels include FATAL, which tracing calls ERROR.
            if text.eq_ignore_ascii_case("fatal") {
                Some(LevelFilter::ERROR)
            } else {
                LevelFilter::from_str(text).ok()
            }
        })
        .unwrap_or(LevelFilter::INFO);
    // More verbose levels compare greater: the others get INFO at most.
    let others = level.min(LevelFilter::INFO);
    OWN_CRATES.iter().fold(
        EnvFilter::default().add_directive(others.into()),
        |filter, krate| {
            filter.add_directive(
                format!("{krate}={level}")
                    .parse()
                    .expect("a crate name and a level make a directive"),
            )
        },
    )
}

/// Installs the workers' subscriber on stdout, JSON when Lambda's log format asks for it.
pub fn init() {
    let requested = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter(requested.as_deref()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_at(requested: Option<&str>) -> String {
        let written = Written::default();
        let sink = written.clone();
        let subscriber = subscriber::fmt()
            .with_env_filter(filter(requested))
            .with_writer(move || sink.clone())
            .finish();
        ::tracing::subscriber::with_default(subscriber, || {
            // What the runtime and the SDK write below INFO (their targets, as in
            // lambda_runtime 1.5's api_response layer and the SDK's orchestrator).
            tracing::trace!(target: "lambda_runtime::layers::api_response",
                body = r#"{"task_token": "SECRET-TOKEN"}"#, "raw JSON event received from Lambda");
            tracing::debug!(target: "aws_smithy_runtime::client::orchestrator",
                request = "Action=Publish&Message=SECRET-LINK", "send");
            tracing::info!(target: "lambda_runtime::runtime", "runtime info");
            tracing::debug!(target: "cordon_core::isolate", "cordon debug");
            tracing::trace!(target: "notify", "notify trace");
        });
        let text = String::from_utf8(written.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn no_level_lets_another_crate_log_below_info() {
        for requested in ["trace", "TRACE", "debug", "trace,lambda_runtime=trace"] {
            let logged = logged_at(Some(requested));
            assert!(!logged.contains("SECRET"), "{requested}: {logged}");
            assert!(logged.contains("runtime info"), "{requested}: {logged}");
        }
        let logged = logged_at(Some("trace"));
        assert!(
            logged.contains("cordon debug") && logged.contains("notify trace"),
            "{logged}"
        );
        for requested in [None, Some("info"), Some("nonsense")] {
            let logged = logged_at(requested);
            assert!(!logged.contains("cordon debug"), "{requested:?}: {logged}");
            assert!(logged.contains("runtime info"), "{requested:?}: {logged}");
        }
        for quiet in ["error", "FATAL"] {
            assert!(!logged_at(Some(quiet)).contains("runtime info"), "{quiet}");
        }
    }
}
