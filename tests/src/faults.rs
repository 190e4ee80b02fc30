//! A fault-injecting HTTP proxy on loopback, in front of moto. Everything passes through it;
//! only the calls of the services through which Cordon changes an instance and its
//! surroundings are faulted ([`FAULTED_SERVICES`], told apart by their SigV4 credential
//! scope: EC2, Auto Scaling, IAM, Elastic Load Balancing), at a set rate, each fault one of
//! four kinds that these services produce:
//!
//! - throttling: EC2's HTTP 503 `RequestLimitExceeded`, the others' HTTP 400 `Throttling`,
//!   the call not made;
//! - a server error: HTTP 500 `InternalError` (EC2) or `InternalFailure`, the call not made;
//! - a reset before the call: the connection dropped with RST, the call not made;
//! - a lost answer: the call made, then the connection dropped with RST before the answer,
//!   so the client cannot know that it happened (the case idempotency exists for).
//!
//! Every faulted service's call may also be delayed by up to `max_latency`. The proxy counts
//! what it saw, per service, so a test can report the calls made under faults. With
//! `hold_after`, every such call after the first n is held unanswered, so that a test can kill
//! the process making it at that exact point. With [`FaultProxy::model_aws`], EC2 calls
//! instead cost what the modelled AWS says ([`crate::aws_model`]): each action's token bucket
//! and latency. Step Functions, SNS, KMS, DynamoDB, Security Hub,
//! GuardDuty and moto's own API pass through untouched.

/// The services whose calls are faulted, as their SigV4 credential scopes name them.
pub const FAULTED_SERVICES: [&str; 4] = ["ec2", "autoscaling", "iam", "elasticloadbalancing"];

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// Fraction of EC2 calls that fail, spread evenly over the four kinds.
    pub rate: f64,
    /// Each EC2 call is delayed by a uniform 0..=max_latency.
    pub max_latency: Duration,
    pub seed: u64,
    /// Answer this many EC2 calls, then hold every later one unanswered.
    pub hold_after: Option<u64>,
}

impl FaultPlan {
    pub fn none() -> Self {
        FaultPlan {
            rate: 0.0,
            max_latency: Duration::ZERO,
            seed: 1,
            hold_after: None,
        }
    }

    pub fn failing(rate: f64, seed: u64) -> Self {
        FaultPlan {
            rate,
            max_latency: Duration::from_millis(50),
            seed,
            hold_after: None,
        }
    }

    pub fn holding_after(calls: u64) -> Self {
        FaultPlan {
            hold_after: Some(calls),
            ..FaultPlan::none()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Throttle,
    ServerError,
    ResetBefore,
    LostAnswer,
}

/// What the proxy saw, by kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Every call of a faulted service.
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
    pub server_errors: AtomicU64,
    pub resets: AtomicU64,
    pub lost_answers: AtomicU64,
    pub other_calls: AtomicU64,
    pub held: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultTotals {
    /// Every request of a faulted service that reached the proxy, faulted or not.
    pub calls: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub resets: u64,
    /// Calls made on moto whose answer the client never got.
    pub lost_answers: u64,
    /// Every other service's and moto's own API: passed through untouched.
    pub other_calls: u64,
}

impl FaultTotals {
    pub fn faults(&self) -> u64 {
        self.throttled + self.server_errors + self.resets + self.lost_answers
    }
}

impl FaultCounts {
    pub fn totals(&self) -> FaultTotals {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaultTotals {
            calls: get(&self.calls),
            throttled: get(&self.throttled),
            server_errors: get(&self.server_errors),
            resets: get(&self.resets),
            lost_answers: get(&self.lost_answers),
            other_calls: get(&self.other_calls),
        }
    }
}

/// A small xorshift generator: the proxy needs cheap, seedable dice, not cryptography.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    plan: Mutex<FaultPlan>,
    dice: Mutex<Dice>,
    counts: FaultCounts,
    /// Calls of the faulted services, per service.
    by_service: Mutex<std::collections::BTreeMap<String, u64>>,
    /// The faulted services' actions answered, in arrival order.
    actions: Mutex<Vec<String>>,
    /// Every faulted service's call with what the proxy did to it, in the order they ended.
    calls: Mutex<Vec<ProxiedCall>>,
    refusals: Mutex<Vec<Refusal>>,
    /// EC2's modelled costs, when the proxy models AWS.
    model: Mutex<Option<Arc<ModelledEc2>>>,
    /// Calls being made on moto at once. One Python process answers them all: past a few at
    /// once it only answers each more slowly, and calls that time out there are made again on
    /// top of the rest. Beyond this bound a call waits here, as a loaded service answers later.
    upstream_permits: tokio::sync::Semaphore,
}

/// Calls the proxy makes on moto at once; more wait their turn.
const UPSTREAM_CONCURRENCY: usize = 16;

/// The state of the modelled EC2: its token buckets and what they let through.
#[derive(Debug)]
struct ModelledEc2 {
    latency_scale: f64,
    started: Instant,
    buckets: Mutex<crate::aws_model::TokenBuckets>,
    /// Per bucket: the bucket, the calls it let through, the calls it throttled.
    counts: Mutex<std::collections::BTreeMap<String, (crate::aws_model::Bucket, u64, u64)>>,
    /// Calls that moto answered more slowly than the model (their latency is moto's).
    slower_than_modelled: AtomicU64,
}

/// What the modelled EC2's buckets did, per bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketCount {
    pub bucket: String,
    pub figures: crate::aws_model::Bucket,
    pub granted: u64,
    pub throttled: u64,
}

/// EC2 refusing one kind of call, as an SCP (`UnauthorizedOperation`, for good) or a
/// throttled account (`RequestLimitExceeded`, for a while) does: every `action` call with a
/// form field equal to `value` is answered `status` / `code`, `times` times (None: always),
/// and not made.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub action: &'static str,
    pub value: String,
    pub status: &'static str,
    pub code: &'static str,
    pub times: Option<u32>,
}

impl Refusal {
    /// For good, as an explicit deny in a service control policy answers.
    pub fn by_scp(action: &'static str, value: &str) -> Self {
        Refusal {
            action,
            value: value.to_string(),
            status: "403 Forbidden",
            code: "UnauthorizedOperation",
            times: None,
        }
    }

    /// `times` times, as a throttled account answers.
    pub fn throttled(action: &'static str, value: &str, times: u32) -> Self {
        Refusal {
            action,
            value: value.to_string(),
            status: "503 Service Unavailable",
            code: "RequestLimitExceeded",
            times: Some(times),
        }
    }
}

/// One call of a faulted service as the proxy saw it.
#[derive(Debug, Clone)]
pub struct ProxiedCall {
    pub action: String,
    /// The call's form fields, `Action` and `Version` left out.
    pub fields: Vec<(String, String)>,
    /// What the proxy did: `ok`, `throttled`, `500`, `reset` or `lost`.
    pub fault: &'static str,
    /// When the request had arrived whole.
    pub started: Instant,
    /// When the answer was sent on, or the fault given.
    pub finished: Instant,
}

impl ProxiedCall {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The running proxy; it stops with the test's runtime.
pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 in front of `upstream` (moto's endpoint).
    pub async fn start(upstream: &str, plan: FaultPlan) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(UPSTREAM_CONCURRENCY)
                .build()
                .unwrap(),
            plan: Mutex::new(plan),
            dice: Mutex::new(Dice(plan.seed.max(1))),
            counts: FaultCounts::default(),
            by_service: Mutex::new(Default::default()),
            actions: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            model: Mutex::new(None),
            upstream_permits: tokio::sync::Semaphore::new(UPSTREAM_CONCURRENCY),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((client, _)) => {
                        tokio::spawn(connection(client, serving.clone()));
                    }
                    // A connection reset before it was accepted, or no descriptor free for a
                    // moment (a burst of a thousand executions): the listener goes on. Leaving
                    // the loop closed it, and every later call was refused a connection.
                    Err(error) => {
                        eprintln!("fault proxy: accept failed ({error}); accepting again");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        FaultProxy {
            endpoint: format!("http://{address}"),
            shared,
        }
    }

    /// From now on, EC2 calls cost what the modelled AWS says: a call whose action's token
    /// bucket is empty is answered `RequestLimitExceeded` and not made; any other is made on
    /// moto and answered no sooner than its modelled latency x `latency_scale`. The buckets
    /// start full.
    pub fn model_aws(&self, latency_scale: f64) {
        *self.shared.model.lock().unwrap() = Some(Arc::new(ModelledEc2 {
            latency_scale,
            started: Instant::now(),
            buckets: Mutex::new(Default::default()),
            counts: Mutex::new(Default::default()),
            slower_than_modelled: AtomicU64::new(0),
        }));
    }

    /// Per bucket of the modelled EC2, the calls it let through and throttled.
    pub fn bucket_counts(&self) -> Vec<BucketCount> {
        let model = self.shared.model.lock().unwrap().clone();
        let Some(model) = model else {
            return Vec::new();
        };
        let counts = model.counts.lock().unwrap();
        counts
            .iter()
            .map(|(bucket, (figures, granted, throttled))| BucketCount {
                bucket: bucket.clone(),
                figures: *figures,
                granted: *granted,
                throttled: *throttled,
            })
            .collect()
    }

    /// Calls that moto answered more slowly than the modelled latency.
    pub fn slower_than_modelled(&self) -> u64 {
        self.shared
            .model
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |m| m.slower_than_modelled.load(Ordering::Relaxed))
    }

    /// Refuses matching calls from now on.
    pub fn refuse(&self, refusal: Refusal) {
        self.shared.refusals.lock().unwrap().push(refusal);
    }

    /// Changes the plan for calls from now on (e.g. faults only while containing).
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.shared.plan.lock().unwrap() = plan;
    }

    pub fn totals(&self) -> FaultTotals {
        self.shared.counts.totals()
    }

    /// The calls of each faulted service so far.
    pub fn calls_by_service(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.by_service.lock().unwrap().clone()
    }

    /// The faulted services' actions passed to moto so far (held calls are not among them):
    /// EC2's by name, the others' as `service:Action`.
    pub fn actions(&self) -> Vec<String> {
        self.shared.actions.lock().unwrap().clone()
    }

    /// Every EC2 call so far, one line each: what the proxy did (`ok`, `throttled`, `500`,
    /// `reset`, `lost`) and the call's form fields, for diagnosing a failed scenario.
    pub fn trace(&self) -> Vec<String> {
        let mut calls = self.calls();
        calls.sort_by_key(|call| call.started);
        calls
            .iter()
            .map(|call| {
                let fields: Vec<String> = call
                    .fields
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect();
                format!("{} {} {}", call.fault, call.action, fields.join(" "))
            })
            .collect()
    }

    /// Every EC2 call so far, with when it arrived and when it was answered.
    pub fn calls(&self) -> Vec<ProxiedCall> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// Forgets the calls seen so far (the counts stay).
    pub fn clear_calls(&self) {
        self.shared.calls.lock().unwrap().clear();
    }

    /// Waits until an EC2 call is being held.
    pub async fn until_held(&self) {
        while self.shared.counts.held.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The service the call is signed for (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
    fn service(&self) -> Option<&str> {
        let credential = self.header("authorization")?.split("Credential=").nth(1)?;
        let scope = credential.split([',', ' ']).next()?;
        scope.split('/').nth(3)
    }

    fn is_faulted(&self) -> bool {
        self.service()
            .is_some_and(|service| FAULTED_SERVICES.contains(&service))
    }

    fn proxied(&self, fault: Option<Fault>, started: Instant) -> ProxiedCall {
        ProxiedCall {
            action: self.action(),
            fields: url::form_urlencoded::parse(&self.body)
                .filter(|(key, _)| key != "Version" && key != "Action")
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect(),
            fault: match fault {
                None => "ok",
                Some(Fault::Throttle) => "throttled",
                Some(Fault::ServerError) => "500",
                Some(Fault::ResetBefore) => "reset",
                Some(Fault::LostAnswer) => "lost",
            },
            started,
            finished: Instant::now(),
        }
    }

    /// The query protocol's `Action=` form field; for a service other than EC2 prefixed
    /// with it (`autoscaling:EnterStandby`).
    fn action(&self) -> String {
        let action = url::form_urlencoded::parse(&self.body)
            .find(|(key, _)| key == "Action")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        match self.service() {
            Some("ec2") | None => action,
            Some(service) => format!("{service}:{action}"),
        }
    }

    /// This service's answer to a call it refused: EC2's error envelope, or the other query
    /// services' (`ErrorResponse`).
    fn error(&self, status: &str, code: &str, message: &str) -> Vec<u8> {
        if self.service() == Some("ec2") {
            return ec2_error(status, code, message);
        }
        let kind = if status.starts_with('5') {
            "Receiver"
        } else {
            "Sender"
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
        );
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Throttling as this service answers it.
    fn throttled(&self) -> Vec<u8> {
        match self.service() {
            Some("ec2") => ec2_error(
                "503 Service Unavailable",
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ),
            _ => self.error("400 Bad Request", "Throttling", "Rate exceeded"),
        }
    }

    /// An internal error as this service answers it.
    fn internal_error(&self) -> Vec<u8> {
        match self.service() {
            Some("ec2") => ec2_error(
                "500 Internal Server Error",
                "InternalError",
                "An internal error has occurred.",
            ),
            _ => self.error(
                "500 Internal Server Error",
                "InternalFailure",
                "An internal error has occurred.",
            ),
        }
    }
}

/// Reads one HTTP/1.1 request (the SDKs send Content-Length bodies); None at end of stream.
async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn ec2_error(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The refusal that answers this request, if one does (and counts it down).
fn refused(shared: &Shared, request: &Request) -> Option<Refusal> {
    let action = request.action();
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut refusals = shared.refusals.lock().unwrap();
    let at = refusals
        .iter()
        .position(|r| r.action == action && fields.iter().any(|(_, v)| *v == r.value))?;
    let refusal = refusals[at].clone();
    match refusals[at].times.as_mut() {
        Some(1) => {
            refusals.remove(at);
        }
        Some(left) => *left -= 1,
        None => {}
    }
    Some(refusal)
}

/// Drops the connection with a TCP reset, as a failed load balancer or network does.
fn reset(stream: TcpStream) {
    let socket = socket2::SockRef::from(&stream);
    let _ = socket.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn connection(client: TcpStream, shared: Arc<Shared>) {
    let mut reader = BufReader::new(client);
    while let Some(request) = read_request(&mut reader).await {
        let started = Instant::now();
        if let Some(refusal) = request
            .is_faulted()
            .then(|| refused(&shared, &request))
            .flatten()
        {
            let mut call = request.proxied(None, started);
            call.fault = "refused";
            shared.calls.lock().unwrap().push(call);
            let reply = request.error(refusal.status, refusal.code, "refused by the fault proxy");
            if reader.get_mut().write_all(&reply).await.is_err() {
                return;
            }
            continue;
        }
        let model = shared.model.lock().unwrap().clone();
        if let (Some(model), Some("ec2")) = (model, request.service()) {
            if !modelled_call(&shared, &model, &mut reader, &request, started).await {
                return;
            }
            continue;
        }
        let (fault, delay) = if request.is_faulted() {
            let index = shared.counts.calls.fetch_add(1, Ordering::Relaxed) + 1;
            *shared
                .by_service
                .lock()
                .unwrap()
                .entry(request.service().unwrap_or_default().to_string())
                .or_default() += 1;
            let plan = *shared.plan.lock().unwrap();
            if plan.hold_after.is_some_and(|n| index > n) {
                shared.counts.held.fetch_add(1, Ordering::Relaxed);
                // Until the test kills the caller; the proxy dies with the test.
                std::future::pending::<()>().await;
            }
            let mut dice = shared.dice.lock().unwrap();
            let roll = dice.next();
            let fault = (roll < plan.rate).then(|| match (roll / plan.rate * 4.0) as u32 {
                0 => Fault::Throttle,
                1 => Fault::ServerError,
                2 => Fault::ResetBefore,
                _ => Fault::LostAnswer,
            });
            (fault, plan.max_latency.mul_f64(dice.next()))
        } else {
            shared.counts.other_calls.fetch_add(1, Ordering::Relaxed);
            (None, Duration::ZERO)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let counts = &shared.counts;
        let record = |fault| {
            if request.is_faulted() {
                let call = request.proxied(fault, started);
                shared.calls.lock().unwrap().push(call);
            }
        };
        match fault {
            Some(Fault::Throttle) => {
                counts.throttled.fetch_add(1, Ordering::Relaxed);
                let reply = request.throttled();
                record(fault);
                if reader.get_mut().write_all(&reply).await.is_err() {
                    return;
                }
                continue;
            }
            Some(Fault::ServerError) => {
                counts.server_errors.fetch_add(1, Ordering::Relaxed);
                let reply = request.internal_error();
                record(fault);
                if reader.get_mut().write_all(&reply).await.is_err() {
                    return;
                }
                continue;
            }
            Some(Fault::ResetBefore) => {
                counts.resets.fetch_add(1, Ordering::Relaxed);
                record(fault);
                return reset(reader.into_inner());
            }
            Some(Fault::LostAnswer) | None => {}
        }
        if request.is_faulted() {
            shared.actions.lock().unwrap().push(request.action());
        }
        let Some(_turn) = turn_on_moto(&shared, reader.get_ref()).await else {
            return;
        };
        let reply = forward(&shared, &request).await;
        if fault == Some(Fault::LostAnswer) {
            counts.lost_answers.fetch_add(1, Ordering::Relaxed);
            record(fault);
            return reset(reader.into_inner());
        }
        let written = reader.get_mut().write_all(&reply).await;
        record(fault);
        if written.is_err() {
            return;
        }
    }
}

/// One EC2 call on the modelled AWS: throttled when its bucket is empty, else made on moto
/// and answered after its modelled latency. False when the client went away.
async fn modelled_call(
    shared: &Shared,
    model: &ModelledEc2,
    reader: &mut BufReader<TcpStream>,
    request: &Request,
    started: Instant,
) -> bool {
    use crate::aws_model::{bucket_of, latency_of, THROTTLE_ANSWER};
    let call = request.proxied(None, started);
    let action = call.action.clone();
    let (bucket, figures) = bucket_of(&action, &call.fields);
    let granted = model
        .buckets
        .lock()
        .unwrap()
        .take(&bucket, figures, started - model.started);
    {
        let mut counts = model.counts.lock().unwrap();
        let count = counts.entry(bucket).or_insert((figures, 0, 0));
        if granted {
            count.1 += 1;
        } else {
            count.2 += 1;
        }
    }
    shared.counts.calls.fetch_add(1, Ordering::Relaxed);
    *shared
        .by_service
        .lock()
        .unwrap()
        .entry("ec2".to_string())
        .or_default() += 1;
    let scaled = |latency: Duration| latency.mul_f64(model.latency_scale);
    let reply = if granted {
        shared.actions.lock().unwrap().push(action.clone());
        let Some(_turn) = turn_on_moto(shared, reader.get_ref()).await else {
            return false;
        };
        let reply = forward(shared, request).await;
        match scaled(latency_of(&action)).checked_sub(started.elapsed()) {
            Some(left) => tokio::time::sleep(left).await,
            None => {
                model.slower_than_modelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        reply
    } else {
        shared.counts.throttled.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(scaled(THROTTLE_ANSWER)).await;
        request.throttled()
    };
    let written = reader.get_mut().write_all(&reply).await.is_ok();
    let mut call = request.proxied(None, started);
    if !granted {
        call.fault = "throttled";
    }
    shared.calls.lock().unwrap().push(call);
    written
}

/// A turn to make a call on moto, unless the caller gives up first (its SDK's attempt timed
/// out and closed the connection): then None, and the call is not made. Without this, calls
/// nobody waits for any more queued here, each holding its connection, until the process ran
/// out of descriptors.
async fn turn_on_moto<'a>(
    shared: &'a Shared,
    client: &TcpStream,
) -> Option<tokio::sync::SemaphorePermit<'a>> {
    tokio::select! {
        permit = shared.upstream_permits.acquire() => permit.ok(),
        () = closed(client) => None,
    }
}

/// Resolves once the peer has closed `stream`. An HTTP/1.1 client sends nothing more while it
/// waits for its answer, so what it sends then is its end of file.
async fn closed(stream: &TcpStream) {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        // A request sent before the answer (pipelining): not closed.
        Ok(_) => std::future::pending().await,
    }
}

/// Makes the call on moto and renders its answer as HTTP/1.1 bytes.
async fn forward(shared: &Shared, request: &Request) -> Vec<u8> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
    let mut call = shared
        .http
        .request(method, format!("{}{}", shared.upstream, request.path))
        .body(request.body.clone());
    for (name, value) in &request.headers {
        if !["host", "content-length", "connection"]
            .iter()
            .any(|skip| name.eq_ignore_ascii_case(skip))
        {
            call = call.header(name, value);
        }
    }
    let response = match call.send().await {
        Ok(response) => response,
        Err(error) => {
            return ec2_error(
                "502 Bad Gateway",
                "ProxyError",
                &format!("moto did not answer: {error}"),
            )
        }
    };
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        let skip = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|s| name.as_str().eq_ignore_ascii_case(s));
        if !skip {
            head.push_str(&format!(
                "{}: {}\r\n",
                name,
                value.to_str().unwrap_or_default()
            ));
        }
    }
    let body = response.bytes().await.unwrap_or_default();
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dice_spread_faults_over_the_four_kinds_at_the_rate() {
        let mut dice = Dice(7);
        let rate = 0.3;
        let mut kinds = [0u32; 4];
        let mut faulted = 0;
        for _ in 0..100_000 {
            let roll = dice.next();
            if roll < rate {
                faulted += 1;
                kinds[((roll / rate * 4.0) as usize).min(3)] += 1;
            }
        }
        assert!((29_000..31_000).contains(&faulted), "{faulted}");
        for count in kinds {
            assert!((7_000..8_000).contains(&count), "{kinds:?}");
        }
    }
}
