//! The HTTP listener's limits on the real `almanac run` binary: a thousand idle
//! sockets do not lock out `/metrics` (with the open-file limit systemd gives a
//! unit by default, and with a full connection table), a slow-loris request is
//! closed after `[http] header_timeout`, a stalled body after `idle_timeout`, a
//! body over `max_body_bytes` gets 413, and `admin_listen` moves the admin API and
//! `/metrics` to a listener of their own.

#[path = "daemon/support.rs"]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{ADMIN_TOKEN, CALLBACK_TOKEN, Daemon};

/// Idle connections the lock-out tests hold open.
const IDLE: usize = 1100;

/// A daemon with the `log` channel, no campaigns, no members and `http` as its
/// `[http]` table (none when empty: every default).
fn config(http: &str) -> String {
    let http = if http.is_empty() { String::new() } else { format!("[http]\n{http}\n\n") };
    format!(
        "database = \"sqlite:almanac.db\"\ncampaigns_dir = \"campaigns\"\n\
         listen = \"127.0.0.1:0\"\n\n{http}[channels.log]\ntype = \"log\"\n"
    )
}

/// Raises this process's soft open-file limit to its hard limit (the test holds
/// more than a thousand sockets) and checks there is room for them.
fn room_for_idle_sockets() {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(limit >= IDLE as u64 + 100, "the open-file limit ({limit}) is too low for this test");
}

/// `count` connections that never send a byte.
fn idle_sockets(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|error| panic!("idle connection {i}: {error}"))
        })
        .collect()
}

/// `GET path` on a fresh connection, answered within `within`: the status and
/// how long the answer took, or what went wrong.
fn timed_get(addr: SocketAddr, path: &str, within: Duration) -> Result<(u16, Duration), String> {
    let start = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&addr, within).map_err(|error| format!("connect: {error}"))?;
    stream.set_read_timeout(Some(within)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|error| format!("write: {error}"))?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|error| format!("no answer: {error}"))?;
    let elapsed = start.elapsed();
    let status = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
    if elapsed > within {
        return Err(format!("answered {status} after {elapsed:?}"));
    }
    Ok((status, elapsed))
}

/// Writes `request` and reads the whole answer (until the server closes); the
/// status and the body.
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned();
    (status, body)
}

/// Waits until the server closes `stream` (EOF or reset), calling `between`
/// every 100 ms meanwhile; how long that took. Panics after `deadline`.
fn wait_closed(
    stream: &mut TcpStream,
    deadline: Duration,
    mut between: impl FnMut(&mut TcpStream),
) -> Duration {
    let start = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buffer = [0u8; 1024];
    while start.elapsed() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                between(stream)
            }
            Err(_) => return start.elapsed(),
        }
    }
    panic!("the server kept the connection open for {deadline:?}");
}

/// One sample of the daemon's `/metrics` on `addr`.
fn metric(addr: SocketAddr, sample: &str) -> f64 {
    let (status, body) = support::http(addr, "GET", "/metrics", &[], "");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[test]
fn metrics_answers_within_a_second_while_1100_idle_connections_are_open() {
    room_for_idle_sockets();
    // As systemd starts a unit without LimitNOFILE=: a soft limit of 1024 below a
    // higher hard limit. The daemon raises its soft limit to the hard one.
    let daemon = Daemon::start_with_nofile(&config(""), &[], "", Some((1024, None)));
    let idle = idle_sockets(daemon.addr, IDLE);
    let (status, took) = timed_get(daemon.addr, "/metrics", Duration::from_secs(1))
        .unwrap_or_else(|error| panic!("/metrics with {IDLE} idle connections: {error}"));
    assert_eq!(status, 200);
    eprintln!("/metrics answered in {took:?} with {IDLE} idle connections open");
    for path in ["/readyz", "/healthz"] {
        let (status, _) = timed_get(daemon.addr, path, Duration::from_secs(1)).unwrap();
        assert_eq!(status, 200, "{path}");
    }
    let open = metric(daemon.addr, "almanac_http_connections{listener=\"listen\"}");
    assert!(open >= IDLE as f64, "almanac_http_connections = {open}");
    drop(idle);
}

#[test]
fn a_daemon_held_to_1024_files_still_answers_with_1100_idle_connections() {
    room_for_idle_sockets();
    // A hard limit of 1024 cannot be raised: the connection table is sized below
    // it, and a new connection closes the oldest idle one.
    let daemon = Daemon::start_with_nofile(&config(""), &[], "", Some((1024, Some(1024))));
    let idle = idle_sockets(daemon.addr, IDLE);
    let (status, took) = timed_get(daemon.addr, "/metrics", Duration::from_secs(1))
        .unwrap_or_else(|error| panic!("/metrics with {IDLE} idle connections: {error}"));
    assert_eq!(status, 200);
    eprintln!("/metrics answered in {took:?} under a 1024-file limit, {IDLE} idle connections");
    assert!(daemon.log().contains("open-file limit"), "{}", daemon.log());
    drop(idle);
}

#[test]
fn a_full_connection_table_closes_the_oldest_idle_connection() {
    room_for_idle_sockets();
    let daemon = Daemon::start(&config("max_connections = 100"), &[], "");
    let mut idle = idle_sockets(daemon.addr, IDLE);
    let (status, took) = timed_get(daemon.addr, "/metrics", Duration::from_secs(1))
        .unwrap_or_else(|error| panic!("/metrics with a full connection table: {error}"));
    assert_eq!(status, 200);
    eprintln!("/metrics answered in {took:?} with max_connections = 100 and {IDLE} idle sockets");
    let open = metric(daemon.addr, "almanac_http_connections{listener=\"listen\"}");
    assert!(open <= 100.0, "almanac_http_connections = {open}");
    let evicted = "almanac_http_connections_closed_total{listener=\"listen\",reason=\"evicted\"}";
    assert!(metric(daemon.addr, evicted) >= (IDLE - 100) as f64);
    // The first idle connection was the oldest: it is closed.
    wait_closed(&mut idle[0], Duration::from_secs(5), |_| {});
}

#[test]
fn a_slow_loris_is_closed_after_the_header_timeout() {
    let daemon = Daemon::start(&config("header_timeout = \"1s\""), &[], "");
    let mut stream = TcpStream::connect(daemon.addr).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: almanac\r\n").unwrap();
    // One more header line every 100 ms: the head is never complete.
    let mut line = 0;
    let took = wait_closed(&mut stream, Duration::from_secs(10), |stream| {
        line += 1;
        let _ = stream.write_all(format!("X-Slow-{line}: 1\r\n").as_bytes());
    });
    eprintln!("slow-loris connection closed after {took:?} (header_timeout = 1s)");
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    let closed =
        "almanac_http_connections_closed_total{listener=\"listen\",reason=\"header_timeout\"}";
    assert_eq!(metric(daemon.addr, closed), 1.0);
    // A connection that says nothing at all is closed the same way.
    let mut silent = TcpStream::connect(daemon.addr).unwrap();
    let took = wait_closed(&mut silent, Duration::from_secs(10), |_| {});
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
}

#[test]
fn a_stalled_body_is_closed_after_the_idle_timeout() {
    let daemon = Daemon::start(&config("idle_timeout = \"1s\""), &[], "");
    let mut stream = TcpStream::connect(daemon.addr).unwrap();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let head = format!(
        "PUT /v1/members/m1 HTTP/1.1\r\nHost: almanac\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"external_id\""
    );
    stream.write_all(head.as_bytes()).unwrap();
    let took = wait_closed(&mut stream, Duration::from_secs(10), |_| {});
    eprintln!("stalled upload closed after {took:?} (idle_timeout = 1s)");
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    let closed =
        "almanac_http_connections_closed_total{listener=\"listen\",reason=\"idle_timeout\"}";
    assert_eq!(metric(daemon.addr, closed), 1.0);
}

#[test]
fn a_body_over_the_limit_gets_413() {
    let daemon = Daemon::start(&config(""), &[], "");
    // 100 MB announced: refused from the header, before any of it is read.
    let head = format!(
        "PUT /v1/members/m1 HTTP/1.1\r\nHost: almanac\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{{\"external_id\":"
    );
    let (status, body) = exchange(daemon.addr, head.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_body_bytes = 1048576"), "{body}");
    let head = "POST /wechat/callback?signature=x&timestamp=1&nonce=2 HTTP/1.1\r\nHost: almanac\r\n\
                Content-Length: 104857600\r\n\r\n<xml>";
    let (status, body) = exchange(daemon.addr, head.as_bytes());
    assert_eq!(status, 413, "{body}");
    let rejected =
        "almanac_http_rejected_total{endpoint=\"wechat_callback\",reason=\"body_too_large\"}";
    assert_eq!(metric(daemon.addr, rejected), 1.0);

    // A chunked body announces no length: it is cut off at the limit.
    let daemon = Daemon::start(&config("max_body_bytes = 4096"), &[], "");
    let member =
        format!("{{\"external_id\":\"m1\",\"name\":\"{}\",\"city\":\"Harbin\"}}", "x".repeat(8192));
    let request = format!(
        "PUT /v1/members/m1 HTTP/1.1\r\nHost: almanac\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{member}\r\n0\r\n\r\n",
        member.len()
    );
    let (status, body) = exchange(daemon.addr, request.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_body_bytes = 4096"), "{body}");
    // Under the limit the same call goes through.
    let member = r#"{"external_id":"m1","name":"会员","city":"Harbin"}"#;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (status, body) = daemon.http(
        "PUT",
        "/v1/members/m1",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        member,
    );
    assert_eq!(status, 201, "{body}");
}

#[test]
fn admin_listen_serves_the_admin_api_and_metrics_apart_from_the_callback() {
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let daemon = Daemon::start(&config(&format!("admin_listen = \"{admin_port}\"")), &[], "");
    let public = daemon.addr;
    let admin = admin_port;
    assert_ne!(public, admin);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let get = |addr, path: &str| support::http(addr, "GET", path, &[("Authorization", &auth)], "");

    // The admin listener: the admin API, /metrics and health.
    assert_eq!(get(admin, "/v1/campaigns").0, 200);
    assert_eq!(get(admin, "/metrics").0, 200);
    assert_eq!(get(admin, "/healthz").0, 200);
    assert_eq!(get(admin, "/readyz").0, 200);
    assert_eq!(get(admin, "/wechat/callback").0, 404);

    // The public listener: the callback and health, nothing else.
    assert_eq!(get(public, "/v1/campaigns").0, 404);
    assert_eq!(get(public, "/metrics").0, 404);
    assert_eq!(get(public, "/healthz").0, 200);
    assert_eq!(get(public, "/readyz").0, 200);
    let signature = almanac::http::wechat::signature(CALLBACK_TOKEN, "1700000000", "42");
    let path = format!(
        "/wechat/callback?signature={signature}&timestamp=1700000000&nonce=42&echostr=hello"
    );
    let (status, body) = get(public, &path);
    assert_eq!((status, body.as_str()), (200, "hello"));

    // Each listener has its own connections gauge.
    let exposition = get(admin, "/metrics").1;
    assert!(exposition.contains("almanac_http_connections{listener=\"admin_listen\"}"));
    assert!(exposition.contains("almanac_http_connections{listener=\"listen\"}"));
}
