//! A real HTTP sink for delivery tests: an axum server on 127.0.0.1:0 that records
//! every request (idempotency key, signature headers, body) and answers as the
//! test's behavior says (200, a status, 429 with `Retry-After`, or a stall past the
//! client's timeout). Include it with `#[path = "common/sink.rs"] mod sink;`.
// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// How the sink answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 200 OK.
    Ok,
    /// 200 OK after this delay (a slow but healthy receiver).
    SlowOk(Duration),
    /// This status, no `Retry-After`.
    Status(u16),
    /// 429 with this `Retry-After` value.
    TooMany(String),
    /// Wait this long, then 503 (the client times out first).
    Stall(Duration),
}

impl Reply {
    /// The label the sink counts this reply under.
    pub fn label(&self) -> String {
        match self {
            Self::Ok | Self::SlowOk(_) => "ok".into(),
            Self::Status(status) => format!("http_{status}"),
            Self::TooMany(_) => "http_429".into(),
            Self::Stall(_) => "stall".into(),
        }
    }
}

/// What the behavior sees of a request.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// `Idempotency-Key` header (empty when absent).
    pub key: String,
    /// How many requests with this key came before this one.
    pub previous: usize,
    /// Sequence number of this request at the sink (0-based).
    pub seq: u64,
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Received {
    /// `Idempotency-Key`.
    pub key: String,
    /// `X-Almanac-Timestamp`.
    pub timestamp: Option<String>,
    /// `X-Almanac-Signature`.
    pub signature: Option<String>,
    /// Raw body.
    pub body: Bytes,
    /// What the sink answered.
    pub reply: Reply,
    /// When it arrived (test-process monotonic clock).
    pub at: Instant,
}

type Behavior = Arc<dyn Fn(&Incoming) -> Reply + Send + Sync>;

#[derive(Default)]
struct Log {
    received: Vec<Received>,
    per_key: HashMap<String, usize>,
    in_flight: usize,
}

struct Shared {
    behavior: Behavior,
    log: Mutex<Log>,
}

/// A running sink.
pub struct Sink {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let key = header("idempotency-key").unwrap_or_default();
    let (reply, index) = {
        let mut log = shared.log.lock().unwrap();
        let previous = log.per_key.get(&key).copied().unwrap_or(0);
        let seq = log.received.len() as u64;
        let reply = (shared.behavior)(&Incoming { key: key.clone(), previous, seq });
        *log.per_key.entry(key.clone()).or_default() += 1;
        log.in_flight += 1;
        log.received.push(Received {
            key,
            timestamp: header("x-almanac-timestamp"),
            signature: header("x-almanac-signature"),
            body,
            reply: reply.clone(),
            at: Instant::now(),
        });
        (reply, log.received.len() - 1)
    };
    let _ = index;
    let response = match reply {
        Reply::Ok => StatusCode::OK.into_response(),
        Reply::SlowOk(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK.into_response()
        }
        Reply::Status(status) => StatusCode::from_u16(status).unwrap().into_response(),
        Reply::TooMany(after) => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", after)]).into_response()
        }
        Reply::Stall(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    };
    shared.log.lock().unwrap().in_flight -= 1;
    response
}

impl Sink {
    /// Starts a sink answering every request with `behavior`.
    pub async fn start(behavior: impl Fn(&Incoming) -> Reply + Send + Sync + 'static) -> Sink {
        let shared = Arc::new(Shared { behavior: Arc::new(behavior), log: Mutex::default() });
        let app = axum::Router::new().route("/hook", post(hook)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Sink { url, shared, server }
    }

    /// A sink that accepts everything.
    pub async fn accepting() -> Sink {
        Self::start(|_| Reply::Ok).await
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().received.clone()
    }

    /// Number of requests so far.
    pub fn len(&self) -> usize {
        self.shared.log.lock().unwrap().received.len()
    }

    /// Requests being answered right now.
    pub fn in_flight(&self) -> usize {
        self.shared.log.lock().unwrap().in_flight
    }

    /// Idempotency key → number of requests answered 200.
    pub fn accepted(&self) -> HashMap<String, usize> {
        let log = self.shared.log.lock().unwrap();
        let mut accepted = HashMap::new();
        for request in log.received.iter().filter(|r| r.reply.label() == "ok") {
            *accepted.entry(request.key.clone()).or_insert(0) += 1;
        }
        accepted
    }

    /// Reply label (`ok`, `http_500`, `http_429`, `stall`) → count.
    pub fn reply_counts(&self) -> BTreeMap<String, u64> {
        let log = self.shared.log.lock().unwrap();
        let mut counts = BTreeMap::new();
        for request in &log.received {
            *counts.entry(request.reply.label()).or_insert(0) += 1;
        }
        counts
    }

    /// Polls `condition` every 20 ms until it holds; panics with `what` after `limit`.
    pub async fn wait_for(&self, what: &str, limit: Duration, condition: impl Fn(&Sink) -> bool) {
        let deadline = Instant::now() + limit;
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({} received)",
                self.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
