//! Dispatch throughput end to end (ledger claim → HTTP POST → ledger update) on
//! SQLite and on PostgreSQL, against a local HTTP sink, next to the ceiling: a bare
//! hyper client (`common/ceiling.rs`) posting the same number of requests to the same
//! sink with the same concurrency, in the same run. `ALMANAC_BENCH_N` sets the pushes per run
//! (default 20 000); `ALMANAC_BENCH_ONLY=sqlite|postgres` runs one backend (the
//! ceiling is always measured). PostgreSQL is skipped, loudly, when no server answers.
//!
//! The sink is lean on purpose (an axum handler that counts requests with an
//! `Idempotency-Key` header): the recording sink of the tests spends more CPU per
//! request than the client, and on two cores that would cap both figures.

#[path = "common/ceiling.rs"]
mod ceiling;

/// The binary's allocator, so that the figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use almanac::clock::{Clock, SystemClock};
use almanac::delivery::dispatcher::DispatcherSettings;
use almanac::delivery::webhook::Body;
use almanac::delivery::{ChannelConfig, Channels, Dispatcher, DispatcherConfig};
use almanac::members::Member;
use almanac::metrics::Metrics;
use almanac::store::testing::TestDb;
use almanac::store::{NewSend, SendStatus, Store};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

const CONCURRENCY: usize = 128;
const BATCH: usize = 1000;

/// A loopback HTTP sink that counts the requests carrying an `Idempotency-Key`.
struct Sink {
    url: String,
    count: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Sink {
    async fn start() -> Self {
        async fn push(
            State(count): State<Arc<AtomicUsize>>,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            if body.is_empty() || !headers.contains_key("idempotency-key") {
                return StatusCode::BAD_REQUEST;
            }
            count.fetch_add(1, Ordering::Relaxed);
            StatusCode::OK
        }
        let count = Arc::new(AtomicUsize::new(0));
        let app =
            axum::Router::new().route("/push", axum::routing::post(push)).with_state(count.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/push", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, count, server }
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn seed(store: &Store, count: usize) {
    let members: Vec<(Member, Option<almanac::geo::Place>)> = (0..count)
        .map(|index| {
            let member = Member {
                external_id: format!("m{index}"),
                openid: Some(format!("openid-{index}")),
                ..Member::default()
            };
            (member, None)
        })
        .collect();
    let due = Utc::now() - chrono::Duration::seconds(1);
    for chunk in members.chunks(2000) {
        let ids = store.upsert_members(chunk).await.expect("members");
        let sends: Vec<NewSend> = ids
            .iter()
            .map(|id| NewSend {
                campaign_id: "bench".into(),
                occurrence: "2026-11-22".into(),
                member_id: *id,
                due_at: due,
                channel: "hook".into(),
                lang: "zh-Hans".into(),
                variant: "A".into(),
                text: "天气转凉变干，记得保湿。".into(),
                status: SendStatus::Pending,
                reason: None,
            })
            .collect();
        store.insert_sends(&sends).await.expect("sends");
    }
}

/// A push-sized body for the ceiling.
fn ceiling_body() -> Bytes {
    let body = serde_json::to_vec(&Body {
        campaign: "bench",
        occurrence: "2026-11-22",
        member: "m1",
        openid: Some("openid-1"),
        lang: "zh-Hans",
        variant: "A",
        text: "天气转凉变干，记得保湿。",
        due_at: Utc::now(),
        sent_at: Utc::now(),
        attempt: 1,
    })
    .unwrap();
    Bytes::from(body)
}

async fn dispatch(db: TestDb, count: usize) -> f64 {
    seed(&db.store, count).await;
    let sink = Sink::start().await;
    let text = format!("type = \"webhook\"\nurl = \"{}\"\n", sink.url);
    let configs: BTreeMap<String, ChannelConfig> =
        BTreeMap::from([("hook".to_owned(), toml::from_str(&text).unwrap())]);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::new());
    let channels = Channels::from_config(&configs, clock.clone(), metrics.clone()).unwrap();
    let config = DispatcherConfig {
        owner: "bench".into(),
        batch: BATCH,
        concurrency: CONCURRENCY,
        max_unrecorded: DispatcherSettings::default().max_unrecorded,
        lease: chrono::Duration::seconds(60),
        lookahead: chrono::Duration::zero(),
    };
    let dispatcher = Dispatcher::new(db.store.clone(), channels, clock, metrics, config)
        .with_poll(StdDuration::from_millis(5));
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let run = tokio::spawn(dispatcher.run(cancel.clone()));
    while sink.len() < count {
        tokio::time::sleep(StdDuration::from_millis(2)).await;
    }
    cancel.cancel();
    let stats = run.await.unwrap().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(stats.sent as usize, count, "every push recorded as sent: {stats:?}");
    let _ = db.cleanup().await;
    count as f64 / elapsed.as_secs_f64()
}

fn main() {
    let count: usize =
        std::env::var("ALMANAC_BENCH_N").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let sink = Sink::start().await;
        // Warm up the sink and the client's connections.
        ceiling::bare_client(&sink.url, 2_000, CONCURRENCY, ceiling_body()).await;
        let ceiling = ceiling::bare_client(&sink.url, count, CONCURRENCY, ceiling_body()).await;
        drop(sink);
        println!("dispatch: {count} pushes, concurrency {CONCURRENCY}, batch {BATCH}");
        println!("  bare hyper client (ceiling):   {ceiling:>9.0} req/s");
        let only = std::env::var("ALMANAC_BENCH_ONLY").unwrap_or_default();
        if only != "postgres" {
            let sqlite = dispatch(TestDb::sqlite().await.expect("sqlite"), count).await;
            println!(
                "  dispatcher on SQLite:          {sqlite:>9.0} pushes/s  ({:.0}% of the ceiling)",
                100.0 * sqlite / ceiling
            );
        }
        if only == "sqlite" {
            return;
        }
        match TestDb::postgres().await.expect("postgres") {
            Some(db) => {
                let postgres = dispatch(db, count).await;
                println!(
                    "  dispatcher on PostgreSQL:      {postgres:>9.0} pushes/s  ({:.0}% of the ceiling)",
                    100.0 * postgres / ceiling
                );
            }
            None => println!("  dispatcher on PostgreSQL:      skipped: no PostgreSQL"),
        }
    });
}
