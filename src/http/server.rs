//! The HTTP listeners' accept loop and its limits (`[http]` in `almanac.toml`):
//! HTTP/1.1 connections served by hyper with a header-read timeout, an idle
//! timeout, a connection table of bounded size per listener, and a request-body
//! limit (413).
//!
//! - **`header_timeout`**: from a connection's accept, or from the end of its
//!   previous response, the client has this long to send a complete request head
//!   (hyper's `header_read_timeout`). Silent sockets and slow-loris heads are
//!   closed by it.
//! - **`idle_timeout`**: a connection that moves no byte either way for this long
//!   is closed (a stalled request body, a client that stops reading its answer).
//! - **`max_connections`**: per listener. When the table is full a new connection
//!   closes the oldest one that has no request in progress; only when every
//!   connection is busy is the new one closed instead. The accept loop never
//!   waits, so a fresh request is always read. The table is also kept below the
//!   process's open-file limit ([`fd_budget`]).
//! - **`max_body_bytes`**: a request body above it is 413 with a message naming
//!   the key, from its `Content-Length` before any of it is read, or once a
//!   chunked body passes it.
//!
//! `almanac_http_connections{listener}` counts open connections and
//! `almanac_http_connections_closed_total{listener,reason}` the ones closed by
//! these limits (`header_timeout`, `idle_timeout`, `evicted`, `refused`).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Deserializer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::duration;
use crate::metrics::Metrics;

/// Largest `max_connections` accepted.
pub const MAX_CONNECTIONS: usize = 1_000_000;
/// Smallest and largest `max_body_bytes` accepted (1 KiB to 1 GiB).
pub const BODY_BYTES: std::ops::RangeInclusive<usize> = 1024..=1 << 30;
/// How long a stop waits for requests in progress (a stalled client must not
/// hold the daemon's stop until `idle_timeout`).
pub const STOP_WAIT: Duration = Duration::from_secs(5);
/// Open files kept out of the connection tables' share of the open-file limit
/// (the store, campaign files, the watcher, outgoing channel connections).
pub const RESERVED_FILES: u64 = 256;

/// The `[http]` table of `almanac.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// How long a client has to send a complete request head, from its
    /// connection's accept or its previous response.
    #[serde(default = "default_header_timeout", deserialize_with = "header_timeout")]
    pub header_timeout: Duration,
    /// How long a connection may move no byte either way.
    #[serde(default = "default_idle_timeout", deserialize_with = "idle_timeout")]
    pub idle_timeout: Duration,
    /// Open connections per listener at most.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request body in bytes; above it, 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// A second listener for the admin API under `/v1` and `/metrics` (and the
    /// health endpoints); when set, `listen` serves only the WeChat callback and
    /// health.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_body_bytes: default_max_body_bytes(),
            admin_listen: None,
        }
    }
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_body_bytes() -> usize {
    1 << 20
}
fn header_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    duration::deserialize(deserializer, duration::MAX_HEADER_TIMEOUT)
}
fn idle_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    duration::deserialize(deserializer, duration::MAX_IDLE_TIMEOUT)
}

impl HttpSettings {
    /// Every value out of range or inconsistent, as (key, message); `listen` is
    /// the main listener's address.
    pub fn problems(&self, listen: SocketAddr) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.header_timeout.is_zero() {
            problems.push(("header_timeout", "must be longer than zero".to_owned()));
        }
        if self.idle_timeout.is_zero() {
            problems.push(("idle_timeout", "must be longer than zero".to_owned()));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            problems.push((
                "max_connections",
                format!("is {}, expected 1 to {MAX_CONNECTIONS}", self.max_connections),
            ));
        }
        if !BODY_BYTES.contains(&self.max_body_bytes) {
            problems.push((
                "max_body_bytes",
                format!(
                    "is {}, expected {} to {} bytes",
                    self.max_body_bytes,
                    BODY_BYTES.start(),
                    BODY_BYTES.end()
                ),
            ));
        }
        if let Some(admin) = self.admin_listen
            && admin == listen
            && admin.port() != 0
        {
            problems.push(("admin_listen", format!("is {admin}, the same address as listen")));
        }
        problems
    }
}

/// How many connections each of `listeners` may hold within the open-file limit
/// `nofile`: `max_connections`, or less when the limit leaves less (after
/// [`RESERVED_FILES`]).
pub fn fd_budget(settings: &HttpSettings, nofile: u64, listeners: usize) -> usize {
    let share = nofile.saturating_sub(RESERVED_FILES) / listeners.max(1) as u64;
    settings.max_connections.min(usize::try_from(share).unwrap_or(usize::MAX)).max(1)
}

/// What one listener enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The listener's name in metrics and logs (`listen`, `admin_listen`).
    pub name: &'static str,
    /// See [`HttpSettings::header_timeout`].
    pub header_timeout: Duration,
    /// See [`HttpSettings::idle_timeout`].
    pub idle_timeout: Duration,
    /// The connection table's size.
    pub max_connections: usize,
    /// See [`HttpSettings::max_body_bytes`].
    pub max_body_bytes: usize,
}

impl Limits {
    /// The limits of `settings` for the listener `name`, holding at most
    /// `max_connections` (see [`fd_budget`]).
    pub fn new(name: &'static str, settings: &HttpSettings, max_connections: usize) -> Self {
        Self {
            name,
            header_timeout: settings.header_timeout,
            idle_timeout: settings.idle_timeout,
            max_connections,
            max_body_bytes: settings.max_body_bytes,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `cancel` fires; then
/// closes idle connections at once and lets the others finish their request
/// within [`STOP_WAIT`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> io::Result<()> {
    let body_check = BodyCheck { limit: limits.max_body_bytes, metrics: metrics.clone() };
    let router = router
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(body_check, limit_body));
    let table = Arc::new(Table::new(limits.name, limits.max_connections, metrics));
    let limits = Arc::new(limits);
    // Each connection's task holds a sender: `recv` ends once every one is gone.
    let (running, mut finished) = tokio::sync::mpsc::channel::<()>(1);
    let mut warned: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // Out of file descriptors (or another resource): free an idle
                    // connection and try again shortly, never waiting long.
                    if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(%error, listener = limits.name, "Accepting a connection failed.");
                        warned = Some(Instant::now());
                    }
                    table.evict_oldest_idle();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = table.admit() else {
            // Every connection is busy with a request: this one is closed.
            drop(stream);
            continue;
        };
        let router = router.clone();
        let limits = limits.clone();
        let cancel = cancel.clone();
        let running = running.clone();
        tokio::spawn(async move {
            serve_connection(stream, admitted, router, limits, cancel).await;
            drop(running);
        });
    }
    drop(running);
    if tokio::time::timeout(STOP_WAIT, finished.recv()).await.is_err() {
        tracing::warn!(
            listener = limits.name,
            "HTTP requests still running at stop; closing them."
        );
    }
    Ok(())
}

/// Errors of one incoming connection (it went away before it was accepted).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    admitted: Admitted,
    router: Router,
    limits: Arc<Limits>,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let conn = admitted.conn.clone();
    let io = TokioIo::new(Tracked { stream, conn: conn.clone() });
    let service = {
        let conn = conn.clone();
        let router = TowerToHyperService::new(router);
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let busy = Busy::start(&conn);
            let response = hyper::service::Service::call(&router, request);
            async move {
                // Busy until the answer's body is written (hyper drops it then).
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    axum::body::Body::new(body.map_frame(move |frame| {
                        let _ = &busy;
                        frame
                    }))
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        let idle_until = conn.last_activity() + limits.idle_timeout;
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    if error.is_timeout() {
                        admitted.closed("header_timeout");
                    } else {
                        tracing::debug!(%error, listener = limits.name, "HTTP connection error.");
                    }
                }
                return;
            }
            _ = conn.evict.cancelled() => return,
            _ = tokio::time::sleep_until(idle_until) => {
                if conn.last_activity() + limits.idle_timeout <= Instant::now() {
                    admitted.closed("idle_timeout");
                    return;
                }
            }
            _ = cancel.cancelled(), if !stopping => {
                if conn.is_idle() {
                    return;
                }
                connection.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    }
}

/// The connection table of one listener, oldest first.
struct Table {
    name: &'static str,
    max: usize,
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
    metrics: Arc<Metrics>,
}

impl Table {
    fn new(name: &'static str, max: usize, metrics: Arc<Metrics>) -> Self {
        metrics.http_connections.with_label_values(&[name]).set(0);
        for reason in ["header_timeout", "idle_timeout", "evicted", "refused"] {
            metrics.http_connections_closed.with_label_values(&[name, reason]);
        }
        Self { name, max, next: AtomicU64::new(0), open: Mutex::new(BTreeMap::new()), metrics }
    }

    fn closed(&self, reason: &str) {
        self.metrics.http_connections_closed.with_label_values(&[self.name, reason]).inc();
    }

    /// A place for a new connection, closing the oldest idle one when the table
    /// is full; `None` (counted as `refused`) when every connection is busy.
    fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = self.open.lock().expect("connection table lock");
        if open.len() >= self.max {
            if !Self::evict_from(&mut open) {
                drop(open);
                self.closed("refused");
                return None;
            }
            self.closed("evicted");
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new());
        open.insert(id, conn.clone());
        self.metrics.http_connections.with_label_values(&[self.name]).set(open.len() as i64);
        Some(Admitted { id, conn, table: self.clone() })
    }

    /// Closes the oldest connection without a request in progress.
    fn evict_oldest_idle(&self) {
        let mut open = self.open.lock().expect("connection table lock");
        if Self::evict_from(&mut open) {
            self.closed("evicted");
            self.metrics.http_connections.with_label_values(&[self.name]).set(open.len() as i64);
        }
    }

    fn evict_from(open: &mut BTreeMap<u64, Arc<Conn>>) -> bool {
        let Some(id) = open.iter().find(|(_, conn)| conn.is_idle()).map(|(id, _)| *id) else {
            return false;
        };
        if let Some(conn) = open.remove(&id) {
            conn.evict.cancel();
        }
        true
    }
}

/// A connection's place in its table; freed when dropped.
struct Admitted {
    id: u64,
    conn: Arc<Conn>,
    table: Arc<Table>,
}

impl Admitted {
    fn closed(&self, reason: &str) {
        self.table.closed(reason);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().expect("connection table lock");
        open.remove(&self.id);
        let gauge = self.table.metrics.http_connections.with_label_values(&[self.table.name]);
        gauge.set(open.len() as i64);
    }
}

/// One connection's state, shared by its task, its I/O and its table.
struct Conn {
    /// Requests in progress.
    busy: AtomicUsize,
    /// When a byte last moved, in milliseconds after `since`.
    last: AtomicU64,
    since: Instant,
    /// Fired when the table closes the connection for a newer one.
    evict: CancellationToken,
}

impl Conn {
    fn new() -> Self {
        Self {
            busy: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            since: Instant::now(),
            evict: CancellationToken::new(),
        }
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    fn touch(&self) {
        let millis = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(millis, Ordering::Relaxed);
    }

    fn last_activity(&self) -> Instant {
        self.since + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// A request in progress on a connection (it is not evicted meanwhile).
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: &Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Self(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, noting when bytes move (for `idle_timeout`).
struct Tracked {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[derive(Clone)]
struct BodyCheck {
    limit: usize,
    metrics: Arc<Metrics>,
}

/// 413 for a request whose `Content-Length` is above the limit, before its body
/// is read; a 413 of an extractor (a chunked body cut off at the limit) gets the
/// same answer.
async fn limit_body(State(check): State<BodyCheck>, request: Request, next: Next) -> Response {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let endpoint = endpoint(request.uri().path());
    if length.is_none_or(|length| length <= check.limit as u64) {
        let response = next.run(request).await;
        if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
            return response;
        }
    }
    check.metrics.rejected_requests.with_label_values(&[endpoint, "body_too_large"]).inc();
    body_too_large(check.limit)
}

/// The `endpoint` label of a path.
fn endpoint(path: &str) -> &'static str {
    if path.starts_with("/v1/") {
        "admin"
    } else if path.starts_with("/wechat/") {
        "wechat_callback"
    } else {
        "other"
    }
}

/// The 413 answer for a body above `limit` bytes.
fn body_too_large(limit: usize) -> Response {
    let message = format!(
        "the request body is larger than the limit of {limit} bytes ([http] max_body_bytes = {limit})"
    );
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONNECTION, "close")],
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9464))
    }

    #[test]
    fn defaults_have_no_problems() {
        assert!(HttpSettings::default().problems(listen()).is_empty());
    }

    #[test]
    fn out_of_range_values_are_named() {
        let settings = HttpSettings {
            header_timeout: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            max_connections: 0,
            max_body_bytes: 10,
            admin_listen: Some(listen()),
        };
        let keys: Vec<&str> = settings.problems(listen()).into_iter().map(|(key, _)| key).collect();
        assert_eq!(
            keys,
            ["header_timeout", "idle_timeout", "max_connections", "max_body_bytes", "admin_listen"]
        );
    }

    #[test]
    fn the_table_fits_the_open_file_limit() {
        let settings = HttpSettings::default();
        assert_eq!(fd_budget(&settings, 65536, 1), 4096);
        assert_eq!(fd_budget(&settings, 1024, 1), 768);
        assert_eq!(fd_budget(&settings, 1024, 2), 384);
        assert_eq!(fd_budget(&settings, 10, 1), 1);
    }

    #[test]
    fn a_full_table_closes_the_oldest_idle_connection_or_refuses() {
        let metrics = Arc::new(Metrics::new());
        let table = Arc::new(Table::new("listen", 2, metrics.clone()));
        let first = table.admit().unwrap();
        let second = table.admit().unwrap();
        let _busy = Busy::start(&first.conn);
        let third = table.admit().unwrap();
        assert!(!first.conn.evict.is_cancelled());
        assert!(second.conn.evict.is_cancelled());
        let _busy_too = Busy::start(&third.conn);
        assert!(table.admit().is_none());
        let closed =
            |reason| metrics.http_connections_closed.with_label_values(&["listen", reason]).get();
        assert_eq!((closed("evicted"), closed("refused")), (1, 1));
        drop(second);
        assert_eq!(metrics.http_connections.with_label_values(&["listen"]).get(), 2);
    }
}
