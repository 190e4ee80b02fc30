//! A witness of every AWS call: a pass-through proxy on loopback, in front of moto, that keeps
//! each call with what IAM would judge it by. Who made it (the worker its user agent names,
//! `app/cordon-<worker>`, and the access key it is signed with, so that calls through an
//! assumed member role are told apart), the service and action, the request's fields, and the
//! tags that the EC2 resources it names carried at that moment (read from moto just before the
//! call is passed on, with the caller's own credentials, so in the caller's account).
//! `tests/tests/end_to_end/iam_calls.rs` judges them against the deployed policies.
//!
//! Every test's moto stands behind one (`cordon_tests::Moto`). With `CORDON_WITNESS_DIR` set
//! (`scripts/test` sets it), each witness also writes its calls there, one JSON line per call,
//! so that the calls of the whole suite are judged once after it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One call, as the witness saw it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Witnessed {
    /// The worker named in the user agent (`capture-state`, ...), or `local` for the test's
    /// own calls and the runner's; None when it names no `cordon-` app.
    pub worker: Option<String>,
    /// The access key id the call is signed with.
    pub access_key: String,
    /// The SigV4 scope's service (`ec2`, `kms`, ...).
    pub service: String,
    /// The operation: the query protocol's `Action`, the JSON protocol's target after the dot,
    /// or `METHOD /path` for a REST call.
    pub action: String,
    /// The query protocol's form fields (`Action` and `Version` left out).
    pub fields: Vec<(String, String)>,
    /// A JSON protocol's body.
    pub json: serde_json::Value,
    /// The tags of every EC2 resource the request names, by id, before the call.
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
    /// The HTTP status moto answered.
    pub status: u16,
    /// Moto's answer, for STS's (the keys of an assumed role) and KMS's CreateKey (which key
    /// the local run made for which purpose).
    pub answer: String,
}

impl Witnessed {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The values of the fields whose names match `prefix` followed by `.N` (the query
    /// protocol's lists: `SecurityGroupId.1`, ...), in order.
    pub fn list(&self, prefix: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(key, _)| {
                key.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
            })
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    calls: Mutex<Vec<Witnessed>>,
    /// Where each call is also written, one JSON line each.
    record: Option<Mutex<std::fs::File>>,
}

/// The running witness; it serves on a thread of its own until the process ends, so that it
/// stands in front of moto for tests with and without a runtime of their own.
pub struct Witness {
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl Witness {
    /// Starts the witness on 127.0.0.1 in front of `upstream` (moto's endpoint), writing its
    /// calls to `record` too, if given.
    pub fn start(upstream: &str, record: Option<PathBuf>) -> Witness {
        let record = record.map(|path| {
            let file = std::fs::File::create(&path)
                .unwrap_or_else(|e| panic!("the witness cannot write {}: {e}", path.display()));
            Mutex::new(file)
        });
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            calls: Mutex::default(),
            record,
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(pass).with_state(shared.clone());
        std::thread::Builder::new()
            .name("witness".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    axum::serve(listener, app).await
                })
            })
            .unwrap();
        Witness { endpoint, shared }
    }

    /// The calls `dir` holds, one list per witness that wrote there (each its own process's
    /// or moto's: member sessions and keys are known within one list only).
    pub fn recorded(dir: &std::path::Path) -> Vec<(String, Vec<Witnessed>)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap();
                let calls = text
                    .lines()
                    // A process killed mid-write leaves its last line cut short.
                    .filter_map(|line| serde_json::from_str(line).ok())
                    .collect();
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                (name, calls)
            })
            .collect()
    }

    /// Every call so far, in the order they were answered.
    pub fn calls(&self) -> Vec<Witnessed> {
        self.shared.calls.lock().unwrap().clone()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `Credential=KEY/DATE/REGION/SERVICE/aws4_request`: the key and the service.
fn credential(headers: &HeaderMap) -> (String, String) {
    let scope = header(headers, "authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split([',', ' ']).next())
        .unwrap_or_default();
    let parts: Vec<&str> = scope.split('/').collect();
    (
        parts.first().unwrap_or(&"").to_string(),
        parts.get(3).unwrap_or(&"").to_string(),
    )
}

/// The worker a user agent names (`app/cordon-<worker>`).
fn worker(headers: &HeaderMap) -> Option<String> {
    header(headers, "user-agent")
        .split_whitespace()
        .find_map(|token| token.strip_prefix("app/cordon-"))
        .map(String::from)
}

/// Whether `value` is an EC2 resource id of a kind whose tags a policy may ask about.
fn is_ec2_id(value: &str) -> bool {
    const KINDS: [&str; 8] = [
        "i-", "eni-", "sg-", "acl-", "subnet-", "vpc-", "vol-", "snap-",
    ];
    KINDS.iter().any(|kind| {
        value
            .strip_prefix(kind)
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()))
    })
}

/// The tags of `ids` as moto holds them now, asked with the caller's own signature headers.
async fn tags_of(
    shared: &Shared,
    headers: &HeaderMap,
    ids: &[String],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut tags: BTreeMap<String, BTreeMap<String, String>> =
        ids.iter().map(|id| (id.clone(), BTreeMap::new())).collect();
    if ids.is_empty() {
        return tags;
    }
    let form = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", "DescribeTags")
            .append_pair("Version", "2016-11-15")
            .append_pair("Filter.1.Name", "resource-id");
        for (n, id) in ids.iter().enumerate() {
            form.append_pair(&format!("Filter.1.Value.{}", n + 1), id);
        }
        form.finish()
    };
    let mut request = shared
        .http
        .post(format!("{}/", shared.upstream))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form);
    for name in ["authorization", "x-amz-security-token", "x-amz-date"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    let text = request.send().await.unwrap().text().await.unwrap();
    for item in text.split("<item>").skip(1) {
        let field = |name: &str| {
            unescape(
                item.split(&format!("<{name}>"))
                    .nth(1)
                    .and_then(|rest| rest.split(&format!("</{name}>")).next())
                    .unwrap_or_default(),
            )
        };
        tags.entry(field("resourceId"))
            .or_default()
            .insert(field("key"), field("value"));
    }
    tags
}

/// XML's five escapes, undone (`&amp;` last, so that an escaped escape stays one).
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

async fn pass(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (access_key, service) = credential(&headers);
    let worker = worker(&headers);
    let target = header(&headers, "x-amz-target");
    let form = header(&headers, "content-type").starts_with("application/x-www-form-urlencoded");
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut action = String::new();
    let mut json = serde_json::Value::Null;
    if form {
        for (key, value) in url::form_urlencoded::parse(&body) {
            match key.as_ref() {
                "Action" => action = value.into_owned(),
                "Version" => {}
                _ => fields.push((key.into_owned(), value.into_owned())),
            }
        }
    } else if !target.is_empty() {
        action = target.rsplit('.').next().unwrap_or_default().to_string();
        json = serde_json::from_slice(&body).unwrap_or_default();
    } else {
        action = format!("{method} {}", uri.path());
        json = serde_json::from_slice(&body).unwrap_or_default();
    }
    let tags = if service == "ec2" && worker.is_some() {
        let mut ids: Vec<String> = fields
            .iter()
            .map(|(_, value)| value.clone())
            .filter(|value| is_ec2_id(value))
            .collect();
        ids.sort();
        ids.dedup();
        tags_of(&shared, &headers, &ids).await
    } else {
        BTreeMap::new()
    };

    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_else(|| uri.path());
    let mut request = shared
        .http
        .request(method, format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &headers {
        if !["host", "content-length", "connection"].contains(&name.as_str()) {
            request = request.header(name, value);
        }
    }
    let answered = match request.send().await {
        Ok(answered) => answered,
        Err(error) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("moto did not answer: {error}"),
            )
                .into_response()
        }
    };
    let status = answered.status();
    let mut reply = Response::builder().status(status.as_u16());
    for (name, value) in answered.headers() {
        if !["content-length", "transfer-encoding", "connection"].contains(&name.as_str()) {
            reply = reply.header(name, value);
        }
    }
    let answer = answered.bytes().await.unwrap_or_default();
    let keep_answer = service == "sts" || (service == "kms" && action == "CreateKey");
    let call = Witnessed {
        answer: if keep_answer {
            String::from_utf8_lossy(&answer).into_owned()
        } else {
            String::new()
        },
        worker,
        access_key,
        service,
        action,
        fields,
        json,
        tags,
        status: status.as_u16(),
    };
    if let Some(record) = &shared.record {
        let mut line = serde_json::to_vec(&call).unwrap();
        line.push(b'\n');
        record.lock().unwrap().write_all(&line).unwrap();
    }
    shared.calls.lock().unwrap().push(call);
    reply.body(axum::body::Body::from(answer)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_ids_are_told_from_other_values() {
        assert!(is_ec2_id("sg-0123abcd"));
        assert!(is_ec2_id("i-0f"));
        assert!(!is_ec2_id("sg-"));
        assert!(!is_ec2_id("cordon-claim-i-0f"));
        assert!(!is_ec2_id("i-xyz"));
    }
}
