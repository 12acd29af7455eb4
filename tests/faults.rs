//! Fault test: the real `almanac run` against a sink that fails 30 % of requests
//! with 500, 10 % with 429 + `Retry-After: 1`, and stalls 5 % past the channel's
//! timeout. Every push ends sent or dead-lettered with its reason, and the daemon's
//! own counters (scraped from `/metrics`) equal the sink's counts.

#[path = "common/almanac_proc.rs"]
mod almanac_proc;
#[path = "common/sink.rs"]
mod sink;

use std::collections::HashMap;
use std::time::Duration;

use almanac_proc::{Almanac, config, free_port, metric_sum, workspace};
use sink::{Incoming, Reply, Sink};

const MEMBERS: usize = 2_000;
const MAX_ATTEMPTS: usize = 4;

/// A deterministic per-attempt draw in 0..100 (FNV-1a of key and attempt).
fn draw(incoming: &Incoming) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in incoming.key.bytes().chain(incoming.previous.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % 100
}

fn faulty(incoming: &Incoming) -> Reply {
    match draw(incoming) {
        0..30 => Reply::Status(500),
        30..40 => Reply::TooMany("1".into()),
        40..45 => Reply::Stall(Duration::from_secs(4)),
        _ => Reply::Ok,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_push_ends_sent_or_dead_and_the_counters_match_the_sink() {
    let sink = Sink::start(faulty).await;
    let dir = workspace("faults", "hook", MEMBERS);
    let port = free_port();
    let text = config(
        "sqlite:almanac.db",
        port,
        &sink.url,
        &format!(
            "timeout_ms = 1500\nmax_attempts = {MAX_ATTEMPTS}\nbackoff_ms = 100\nmax_backoff_ms = 800"
        ),
        "batch = 200\nconcurrency = 64\nlease_secs = 10\npoll_ms = 50",
    );
    std::fs::write(dir.path().join("almanac.toml"), text).unwrap();
    let mut daemon = Almanac::spawn(dir.path(), "almanac.toml", port, "faults");

    // Done when every push is sent or dead, by the daemon's own count.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let exposition = loop {
        daemon.assert_running();
        if let Ok(response) = reqwest::get(format!("http://{}/metrics", daemon.addr)).await {
            let text = response.text().await.unwrap();
            let finished = metric_sum(&text, "almanac_pushes_total", &[("outcome", "sent")])
                + metric_sum(&text, "almanac_pushes_total", &[("outcome", "dead")]);
            if finished as usize >= MEMBERS {
                break text;
            }
        }
        assert!(std::time::Instant::now() < deadline, "not finished:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).await.success(), "{}", daemon.log());

    // The sink's view: per key, its replies in order.
    let mut replies: HashMap<String, Vec<String>> = HashMap::new();
    for request in sink.received() {
        replies.entry(request.key.clone()).or_default().push(request.reply.label());
    }
    assert_eq!(replies.len(), MEMBERS, "every push was attempted");
    let mut sent = 0;
    let mut dead: HashMap<String, usize> = HashMap::new();
    for (key, labels) in &replies {
        let oks = labels.iter().filter(|label| *label == "ok").count();
        assert!(oks <= 1, "{key} accepted twice: {labels:?}");
        if oks == 1 {
            assert_eq!(labels.last().unwrap(), "ok", "{key}: nothing after success: {labels:?}");
            sent += 1;
        } else {
            assert_eq!(labels.len(), MAX_ATTEMPTS, "{key} gave up early or late: {labels:?}");
            let reason = match labels.last().unwrap().as_str() {
                "stall" => "timeout".to_owned(),
                other => other.to_owned(),
            };
            *dead.entry(reason).or_default() += 1;
        }
    }
    let counts = sink.reply_counts();
    let count = |label: &str| counts.get(label).copied().unwrap_or(0) as f64;
    let metric = |name: &str, labels: &[(&str, &str)]| metric_sum(&exposition, name, labels);

    assert_eq!(metric("almanac_pushes_total", &[("outcome", "sent")]), sent as f64);
    assert_eq!(count("ok"), sent as f64);
    for (reason, sink_label) in
        [("http_500", "http_500"), ("http_429", "http_429"), ("timeout", "stall")]
    {
        let retried = metric("almanac_retries_total", &[("channel", "hook"), ("reason", reason)]);
        let died = metric("almanac_dead_letters_total", &[("channel", "hook"), ("reason", reason)]);
        assert_eq!(retried + died, count(sink_label), "{reason}: retries {retried} + dead {died}");
        assert_eq!(died, dead.get(reason).copied().unwrap_or(0) as f64, "{reason} dead letters");
    }
    let dead_total: usize = dead.values().sum();
    assert_eq!(metric("almanac_pushes_total", &[("outcome", "dead")]), dead_total as f64);
    assert_eq!(sent + dead_total, MEMBERS);
    assert!(dead_total > 0 && count("http_429") > 0.0 && count("stall") > 0.0, "{counts:?}");
    eprintln!("faults: sink {counts:?}; sent {sent}, dead {dead:?}");
}
