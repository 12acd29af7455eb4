//! The webhook channel against a real axum sink: the signature verifies with the
//! documented recipe, the Idempotency-Key is stable across retries, 500 and timeouts
//! retry with backoff, 429 honors Retry-After (seconds and HTTP-date, asserted on a
//! ManualClock), permanent statuses and exhausted attempts dead-letter.

#[path = "common/sink.rs"]
mod sink;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use almanac::clock::{Clock, ManualClock};
use almanac::delivery::config::SecretSource;
use almanac::delivery::{ChannelConfig, Channels};
use almanac::metrics::Metrics;
use almanac::store::{ClaimedSend, Outcome};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sink::{Reply, Sink};

const SECRET: &str = "whsec-test-0123456789";

struct Secrets;
impl SecretSource for Secrets {
    fn env(&self, name: &str) -> Option<String> {
        (name == "HOOK_SECRET").then(|| SECRET.to_owned())
    }
    fn credentials_dir(&self) -> Option<PathBuf> {
        None
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc()
}

struct Rig {
    clock: Arc<ManualClock>,
    metrics: Arc<Metrics>,
    channels: Channels,
}

fn rig(url: &str, extra: &str) -> Rig {
    let text = format!(
        "type = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"HOOK_SECRET\"\n\
         max_attempts = 4\nbackoff_ms = 2000\n{extra}"
    );
    let config: ChannelConfig = toml::from_str(&text).unwrap();
    let configs = BTreeMap::from([("crm".to_owned(), config)]);
    let clock = Arc::new(ManualClock::new(now()));
    let metrics = Arc::new(Metrics::new());
    let channels =
        Channels::from_config_with(&configs, clock.clone(), metrics.clone(), &Secrets).unwrap();
    Rig { clock, metrics, channels }
}

fn send(id: i64) -> ClaimedSend {
    ClaimedSend {
        id,
        campaign_id: "autumn".into(),
        occurrence: "2026-11-22".into(),
        member_id: 1000 + id,
        external_id: format!("crm-{id}"),
        openid: Some(format!("o-{id}")),
        last_interaction_at: None,
        due_at: now() - Duration::seconds(2),
        not_before: now() - Duration::seconds(2),
        channel: "crm".into(),
        lang: "yue".into(),
        variant: "A".into(),
        text: "天氣轉乾，記得保濕。".into(),
        attempts: 0,
    }
}

#[tokio::test]
async fn the_signature_verifies_with_the_documented_recipe() {
    let sink = Sink::accepting().await;
    let rig = rig(&sink.url, "");
    let row = send(1);
    let attempt = rig.channels.attempt(&row).await;
    assert!(matches!(attempt.outcome, Outcome::Sent { at, .. } if at == now()));

    let received = sink.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    let timestamp = request.timestamp.clone().expect("timestamp header");
    assert_eq!(timestamp, now().timestamp().to_string());
    // The receiver's recipe: HMAC-SHA256(secret, timestamp + "." + raw body), hex, "v1=".
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&request.body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(request.signature.as_deref(), Some(expected.as_str()));
    // A tampered body does not verify.
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(b"{}");
    assert_ne!(format!("v1={}", hex::encode(mac.finalize().into_bytes())), expected);

    assert_eq!(request.key, row.idempotency_key());
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["campaign"], "autumn");
    assert_eq!(body["occurrence"], "2026-11-22");
    assert_eq!(body["member"], "crm-1");
    assert_eq!(body["openid"], "o-1");
    assert_eq!(body["lang"], "yue");
    assert_eq!(body["text"], row.text);
    assert_eq!(body["due_at"], serde_json::to_value(row.due_at).unwrap());
    assert_eq!(body["sent_at"], serde_json::to_value(now()).unwrap());
    assert_eq!(rig.metrics.fire_lateness.get_sample_count(), 1);
    assert!((rig.metrics.fire_lateness.get_sample_sum() - 2.0).abs() < 1e-9);
}

#[tokio::test]
async fn server_errors_retry_with_backoff_and_the_same_idempotency_key() {
    let sink =
        Sink::start(|incoming| if incoming.previous < 2 { Reply::Status(500) } else { Reply::Ok })
            .await;
    let rig = rig(&sink.url, "");
    let mut row = send(7);
    for attempt_number in 1..=2_u32 {
        let attempt = rig.channels.attempt(&row).await;
        let Outcome::Retry { at, error, .. } = attempt.outcome else {
            panic!("expected retry, got {:?}", attempt.outcome)
        };
        assert_eq!(error, "http_500");
        // base 2 s doubling, jitter in the upper half.
        let ceiling = Duration::milliseconds(2000 * (1 << (attempt_number - 1)));
        let delay = at - rig.clock.now();
        assert!(delay >= ceiling / 2 && delay <= ceiling, "attempt {attempt_number}: {delay}");
        rig.clock.set(at);
        row.attempts += 1;
    }
    let attempt = rig.channels.attempt(&row).await;
    assert!(matches!(attempt.outcome, Outcome::Sent { .. }));
    let keys: Vec<String> = sink.received().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, vec![row.idempotency_key(); 3]);
    assert_eq!(rig.metrics.retries.with_label_values(&["crm", "http_500"]).get(), 2);
}

#[tokio::test]
async fn too_many_requests_honors_retry_after_seconds_and_dates() {
    let sink = Sink::start(|incoming| match incoming.key.as_str() {
        "autumn:2026-11-22:1001" => Reply::TooMany("42".into()),
        _ => Reply::TooMany("Sun, 22 Nov 2026 10:05:00 GMT".into()),
    })
    .await;
    let rig = rig(&sink.url, "");
    let attempt = rig.channels.attempt(&send(1)).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Retry { at, error, .. } if *at == now() + Duration::seconds(42) && error == "http_429"),
        "{:?}",
        attempt.outcome
    );
    rig.clock.advance(Duration::seconds(10));
    let attempt = rig.channels.attempt(&send(2)).await;
    let five_past = DateTime::parse_from_rfc3339("2026-11-22T10:05:00Z").unwrap().to_utc();
    assert!(
        matches!(&attempt.outcome, Outcome::Retry { at, .. } if *at == five_past),
        "{:?}",
        attempt.outcome
    );
}

#[tokio::test]
async fn a_stalled_request_times_out_and_retries() {
    let sink = Sink::start(|_| Reply::Stall(StdDuration::from_secs(3))).await;
    let rig = rig(&sink.url, "timeout_ms = 200");
    let started = std::time::Instant::now();
    let attempt = rig.channels.attempt(&send(1)).await;
    assert!(started.elapsed() < StdDuration::from_secs(2), "the client gave up at its timeout");
    assert!(
        matches!(&attempt.outcome, Outcome::Retry { error, .. } if error == "timeout"),
        "{:?}",
        attempt.outcome
    );
    assert_eq!(sink.len(), 1);
}

#[tokio::test]
async fn a_receiver_refusing_our_credentials_is_account_level() {
    let sink = Sink::start(|incoming| match incoming.key.as_str() {
        "autumn:2026-11-22:1001" => Reply::Status(401),
        _ => Reply::Status(403),
    })
    .await;
    let rig = rig(&sink.url, "");
    for (row, reason) in [(send(1), "http_401"), (send(2), "http_403")] {
        let attempt = rig.channels.attempt(&row).await;
        assert!(
            matches!(&attempt.outcome, Outcome::Released { reason: r, .. } if r == reason),
            "{:?}",
            attempt.outcome
        );
    }
    assert_eq!(rig.metrics.dead_letters.with_label_values(&["crm", "http_401"]).get(), 0);
}

#[tokio::test]
async fn exhausted_attempts_and_permanent_statuses_are_dead_lettered() {
    let sink = Sink::start(|incoming| match incoming.key.as_str() {
        "autumn:2026-11-22:1001" => Reply::Status(500),
        _ => Reply::Status(410),
    })
    .await;
    let rig = rig(&sink.url, "");
    let mut last = send(1);
    last.attempts = 3; // max_attempts = 4: this is the last one
    let attempt = rig.channels.attempt(&last).await;
    assert!(matches!(&attempt.outcome, Outcome::Dead { reason, .. } if reason == "http_500"));
    let attempt = rig.channels.attempt(&send(2)).await;
    assert!(matches!(&attempt.outcome, Outcome::Dead { reason, .. } if reason == "http_410"));
    let dead = |reason: &str| rig.metrics.dead_letters.with_label_values(&["crm", reason]).get();
    assert_eq!((dead("http_500"), dead("http_410")), (1, 1));
}

#[tokio::test]
async fn a_refused_connection_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let rig = rig(&url, "");
    let attempt = rig.channels.attempt(&send(1)).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Retry { error, .. } if error == "connect"),
        "{:?}",
        attempt.outcome
    );
}

#[tokio::test]
async fn campaign_and_channel_rate_limits_pace_sends() {
    let sink = Sink::accepting().await;
    let rig = rig(&sink.url, "rate_per_second = 1000");
    let rates = std::collections::HashMap::from([("autumn".to_owned(), 20_u32)]);
    rig.channels.set_campaign_rates(&rates);
    let started = std::time::Instant::now();
    for id in 0..40 {
        let row = send(id);
        rig.channels.pace_campaign(&row).await;
        rig.channels.attempt(&row).await;
    }
    // 20/s with a burst of 20: 40 sends need at least ~1 s.
    assert!(started.elapsed() >= StdDuration::from_millis(900), "{:?}", started.elapsed());
    assert!(rig.metrics.rate_limit_waits.with_label_values(&["crm"]).get() >= 19);
    assert_eq!(sink.len(), 40);
}
