//! The dispatcher over a real store (SQLite, and PostgreSQL when available) and a
//! real HTTP sink: every due row is sent once and marked, future rows wait, retries
//! come back when due, a graceful stop releases what was not started, several
//! dispatchers on one PostgreSQL database share the work without sending anything
//! twice, a WeChat refusal opts the member out for good, and outcomes waiting for
//! their commit hold the unrecorded bound, not the request slots.

#[path = "common/sink.rs"]
mod sink;
#[path = "wechat_fake/mod.rs"]
mod wechat_fake;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use almanac::clock::{Clock, ManualClock, SystemClock};
use almanac::delivery::config::SecretSource;
use almanac::delivery::{ChannelConfig, Channels, DispatchStats, Dispatcher, DispatcherConfig};
use almanac::members::Member;
use almanac::metrics::Metrics;
use almanac::store::testing::TestDb;
use almanac::store::{NewSend, SendStatus, Store};
use chrono::{DateTime, Duration, Utc};
use sink::{Reply, Sink};
use tokio_util::sync::CancellationToken;

struct NoSecrets;
impl SecretSource for NoSecrets {
    fn env(&self, name: &str) -> Option<String> {
        (name == "WECHAT_SECRET").then(|| "secret".to_owned())
    }
    fn credentials_dir(&self) -> Option<PathBuf> {
        None
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc()
}

fn webhook(url: &str, extra: &str) -> BTreeMap<String, ChannelConfig> {
    let text = format!("type = \"webhook\"\nurl = \"{url}\"\ntimeout_ms = 2000\n{extra}");
    BTreeMap::from([("hook".to_owned(), toml::from_str(&text).unwrap())])
}

/// `count` members and one due send each (campaign `c`), due at `due`.
async fn seed(store: &Store, count: usize, campaign: &str, due: DateTime<Utc>) -> Vec<i64> {
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
    let mut ids = Vec::new();
    for chunk in members.chunks(1000) {
        ids.extend(store.upsert_members(chunk).await.unwrap());
    }
    add_sends(store, &ids, campaign, due, "hook").await;
    ids
}

async fn add_sends(store: &Store, ids: &[i64], campaign: &str, due: DateTime<Utc>, channel: &str) {
    let sends: Vec<NewSend> = ids
        .iter()
        .map(|id| NewSend {
            campaign_id: campaign.into(),
            occurrence: "2026-11-22".into(),
            member_id: *id,
            due_at: due,
            channel: channel.into(),
            lang: "zh-Hans".into(),
            variant: "A".into(),
            text: format!("hello {id}"),
            status: SendStatus::Pending,
            reason: None,
        })
        .collect();
    for chunk in sends.chunks(1000) {
        store.insert_sends(chunk).await.unwrap();
    }
}

async fn backlog(store: &Store) -> HashMap<SendStatus, i64> {
    store.backlog().await.unwrap().into_iter().collect()
}

/// Waits (20 s at most) until the ledger holds at least `count` rows in `status`.
async fn wait_for_backlog(store: &Store, status: SendStatus, count: i64) {
    let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
    while backlog(store).await.get(&status).copied().unwrap_or(0) < count {
        assert!(std::time::Instant::now() < deadline, "{:?}", backlog(store).await);
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

fn config(owner: &str, batch: usize, concurrency: usize) -> DispatcherConfig {
    DispatcherConfig {
        owner: owner.into(),
        batch,
        concurrency,
        max_unrecorded: concurrency,
        lease: Duration::seconds(30),
        lookahead: Duration::zero(),
    }
}

fn start(
    store: &Store,
    channels: BTreeMap<String, ChannelConfig>,
    clock: Arc<dyn Clock>,
    config: DispatcherConfig,
) -> (CancellationToken, tokio::task::JoinHandle<DispatchStats>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let channels =
        Channels::from_config_with(&channels, clock.clone(), metrics.clone(), &NoSecrets).unwrap();
    let dispatcher = Dispatcher::new(store.clone(), channels, clock, metrics.clone(), config)
        .with_poll(StdDuration::from_millis(20));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(dispatcher.run(cancel.clone()));
    let task = tokio::spawn(async move { task.await.unwrap().unwrap() });
    (cancel, task, metrics)
}

async fn sends_every_due_row_once(db: TestDb) {
    let store = db.store.clone();
    let sink = Sink::accepting().await;
    seed(&store, 2000, "c", t0() - Duration::seconds(1)).await;
    let late = store
        .upsert_members(&[(Member { external_id: "late".into(), ..Member::default() }, None)])
        .await
        .unwrap();
    add_sends(&store, &late, "c", t0() + Duration::hours(1), "hook").await;

    let clock = Arc::new(ManualClock::new(t0()));
    let (cancel, task, metrics) =
        start(&store, webhook(&sink.url, ""), clock, config("one", 300, 32));
    sink.wait_for("2000 pushes", StdDuration::from_secs(60), |sink| sink.len() >= 2000).await;
    // Wait for the ledger to say so too, then stop.
    wait_for_backlog(&store, SendStatus::Sent, 2000).await;
    cancel.cancel();
    let stats = task.await.unwrap();

    assert_eq!(sink.len(), 2000, "nothing sent twice, the future row not sent");
    assert!(sink.accepted().values().all(|n| *n == 1));
    assert_eq!(stats.sent, 2000);
    assert_eq!(stats.claimed, 2000);
    let rows = backlog(&store).await;
    assert_eq!(rows.get(&SendStatus::Sent), Some(&2000));
    assert_eq!(rows.get(&SendStatus::Pending), Some(&1));
    assert_eq!(rows.get(&SendStatus::Claimed), None);
    assert_eq!(metrics.pushes.with_label_values(&["c", "hook", "sent"]).get(), 2000);
    db.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sends_every_due_row_once() {
    sends_every_due_row_once(TestDb::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sends_every_due_row_once() {
    let Some(db) = TestDb::postgres().await.unwrap() else { return };
    sends_every_due_row_once(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rows_come_back_when_their_retry_is_due() {
    let db = TestDb::sqlite().await.unwrap();
    let store = db.store.clone();
    let sink =
        Sink::start(|incoming| if incoming.previous == 0 { Reply::Status(503) } else { Reply::Ok })
            .await;
    seed(&store, 50, "c", t0()).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (cancel, task, metrics) =
        start(&store, webhook(&sink.url, "backoff_ms = 60000"), clock.clone(), config("r", 20, 8));
    sink.wait_for("50 first attempts", StdDuration::from_secs(30), |sink| sink.len() >= 50).await;
    wait_for_backlog(&store, SendStatus::Pending, 50).await;
    // Nothing comes back before the retry instant...
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(sink.len(), 50);
    // ...and everything does after it.
    clock.advance(Duration::minutes(2));
    sink.wait_for("50 retries", StdDuration::from_secs(30), |sink| sink.len() >= 100).await;
    wait_for_backlog(&store, SendStatus::Sent, 50).await;
    cancel.cancel();
    let stats = task.await.unwrap();
    assert_eq!((stats.retried, stats.sent), (50, 50));
    assert_eq!(metrics.retries.with_label_values(&["hook", "http_503"]).get(), 50);
    assert!(sink.accepted().values().all(|n| *n == 1));
    db.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_finishes_in_flight_and_releases_the_rest() {
    let db = TestDb::sqlite().await.unwrap();
    let store = db.store.clone();
    let sink = Sink::start(|_| Reply::Stall(StdDuration::from_millis(300))).await;
    seed(&store, 200, "c", t0()).await;
    let clock = Arc::new(ManualClock::new(t0()));
    // The stall answers 503 after 300 ms; the timeout is longer, so in-flight pushes
    // finish (as retries) during the drain.
    let (cancel, task, _) = start(&store, webhook(&sink.url, ""), clock, config("g", 50, 4));
    sink.wait_for("4 in flight", StdDuration::from_secs(10), |sink| sink.in_flight() >= 4).await;
    cancel.cancel();
    let stats = task.await.unwrap();
    assert!(stats.retried >= 4, "{stats:?}");
    assert_eq!(stats.retried as usize, sink.len(), "every started push was recorded");
    assert_eq!(stats.released + stats.retried, stats.claimed, "{stats:?}");
    let rows = backlog(&store).await;
    assert_eq!(rows.get(&SendStatus::Claimed), None, "nothing left claimed: {rows:?}");
    assert_eq!(rows.get(&SendStatus::Pending), Some(&200));
    db.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dispatchers_share_work_without_duplicates() {
    let Some(db) = TestDb::postgres().await.unwrap() else { return };
    let sink = Sink::accepting().await;
    seed(&db.store, 3000, "c", t0()).await;
    let mut running = Vec::new();
    for replica in 0..3 {
        let store = Store::connect(&db.url).await.unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        running.push(start(
            &store,
            webhook(&sink.url, ""),
            clock,
            config(&format!("replica-{replica}"), 100, 16),
        ));
    }
    sink.wait_for("3000 pushes", StdDuration::from_secs(60), |sink| sink.len() >= 3000).await;
    wait_for_backlog(&db.store, SendStatus::Sent, 3000).await;
    let mut sent_by_replica = Vec::new();
    for (cancel, task, _) in running {
        cancel.cancel();
        sent_by_replica.push(task.await.unwrap().sent);
    }
    assert_eq!(sent_by_replica.iter().sum::<u64>(), 3000, "{sent_by_replica:?}");
    assert_eq!(sink.len(), 3000);
    assert!(sink.accepted().values().all(|n| *n == 1));
    db.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wechat_refusal_opts_the_member_out_for_good() {
    let db = TestDb::sqlite().await.unwrap();
    let store = db.store.clone();
    let fake = wechat_fake::FakeWechat::start("wxapp", "secret", "tpl").await;
    let ids = store
        .upsert_members(&[
            (
                Member { external_id: "a".into(), openid: Some("o-a".into()), ..Member::default() },
                None,
            ),
            (
                Member { external_id: "b".into(), openid: Some("o-b".into()), ..Member::default() },
                None,
            ),
        ])
        .await
        .unwrap();
    add_sends(&store, &ids, "first", t0(), "wx").await;
    add_sends(&store, &ids, "second", t0() + Duration::hours(1), "wx").await;
    fake.inject_template("o-a", &[43004]);
    let text = format!(
        "type = \"wechat\"\nappid = \"wxapp\"\nsecret_env = \"WECHAT_SECRET\"\ntemplate_id = \"tpl\"\napi_base = \"{}\"\n",
        fake.api_base
    );
    let channels = BTreeMap::from([("wx".to_owned(), toml::from_str(&text).unwrap())]);
    let clock = Arc::new(ManualClock::new(t0()));
    let (cancel, task, _) = start(&store, channels, clock.clone(), config("w", 10, 2));
    let settled = |rows: &HashMap<SendStatus, i64>, sent, skipped| {
        rows.get(&SendStatus::Sent) == Some(&sent)
            && rows.get(&SendStatus::Skipped) == Some(&skipped)
    };
    let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
    while !settled(&backlog(&store).await, 1, 1) {
        assert!(std::time::Instant::now() < deadline, "{:?}", backlog(&store).await);
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let opted = store.get_member("a").await.unwrap().unwrap();
    assert!(opted.member.opted_out_at.is_some(), "43004 opts the member out");
    // The next campaign's row for the refuser is skipped at claim time, never sent.
    clock.advance(Duration::hours(2));
    while !settled(&backlog(&store).await, 2, 2) {
        assert!(std::time::Instant::now() < deadline, "{:?}", backlog(&store).await);
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    cancel.cancel();
    task.await.unwrap();
    let to_a = fake
        .calls_to("/cgi-bin/message/template/send")
        .iter()
        .filter(|c| c.body["touser"] == "o-a")
        .count();
    assert_eq!(to_a, 1, "one refused attempt, never another");
    assert_eq!(fake.delivered().len(), 2);
    db.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_wechat_token_through_the_store() {
    let db = TestDb::sqlite().await.unwrap();
    let fake = wechat_fake::FakeWechat::start("wxapp", "secret", "tpl").await;
    let text = format!(
        "type = \"wechat\"\nappid = \"wxapp\"\nsecret_env = \"WECHAT_SECRET\"\n\
         template_id = \"tpl\"\napi_base = \"{}\"\n",
        fake.api_base
    );
    let configs: BTreeMap<String, ChannelConfig> =
        BTreeMap::from([("wx".to_owned(), toml::from_str(&text).unwrap())]);
    let clock = Arc::new(ManualClock::new(t0()));
    let row = |id: i64| almanac::store::ClaimedSend {
        id,
        campaign_id: "c".into(),
        occurrence: "o".into(),
        member_id: id,
        external_id: format!("m{id}"),
        openid: Some(format!("o{id}")),
        last_interaction_at: None,
        due_at: t0(),
        not_before: t0(),
        channel: "wx".into(),
        lang: "zh-Hans".into(),
        variant: "A".into(),
        text: "hi".into(),
        attempts: 0,
    };
    for replica in 0..2 {
        let metrics = Arc::new(Metrics::new());
        let mut channels =
            Channels::from_config_with(&configs, clock.clone(), metrics, &NoSecrets).unwrap();
        channels.share_tokens(&db.store);
        let outcome = channels.attempt(&row(replica)).await.outcome;
        assert!(matches!(outcome, almanac::store::Outcome::Sent { .. }), "{outcome:?}");
    }
    assert_eq!(fake.calls_to("/cgi-bin/stable_token").len(), 1, "the second replica reused it");
    let stored = db.store.wechat_token("wxapp").await.unwrap().expect("token in the store");
    assert_eq!(stored.expires_at, t0() + Duration::seconds(7200));
    db.cleanup().await.unwrap();
}

/// With a lookahead, rows falling due within it are claimed early (so the claim is
/// not part of their lateness) but held until their instant on the dispatcher's
/// clock: on a manual clock that does not move, nothing goes out early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_claimed_ahead_wait_for_their_instant() {
    let db = TestDb::sqlite().await.unwrap();
    let store = db.store.clone();
    let sink = Sink::accepting().await;
    let due = t0() + Duration::milliseconds(500);
    seed(&store, 100, "c", due).await;
    let later = store
        .upsert_members(&[(Member { external_id: "later".into(), ..Member::default() }, None)])
        .await
        .unwrap();
    add_sends(&store, &later, "c", t0() + Duration::seconds(10), "hook").await;
    let clock = Arc::new(ManualClock::new(t0()));
    let config = DispatcherConfig { lookahead: Duration::seconds(1), ..config("ahead", 40, 16) };
    let (cancel, task, _metrics) = start(&store, webhook(&sink.url, ""), clock.clone(), config);

    // All 100 claimed (batches of 40, one handed over): the sender loop has taken
    // the first batch and holds it, since the claimer could not hand over the
    // third otherwise.
    wait_for_backlog(&store, SendStatus::Claimed, 100).await;
    // Held, not sent: the clock still reads t0, 500 ms before they are due.
    assert_eq!(sink.len(), 0, "nothing sent before its instant");
    assert_eq!(backlog(&store).await.get(&SendStatus::Pending), Some(&1));

    clock.set(due);
    sink.wait_for("100 pushes", StdDuration::from_secs(30), |sink| sink.len() >= 100).await;
    wait_for_backlog(&store, SendStatus::Sent, 100).await;
    cancel.cancel();
    let stats = task.await.unwrap();
    assert_eq!(sink.len(), 100, "the row due in 10 s is beyond the lookahead");
    assert_eq!(stats.sent, 100);
    let rows = backlog(&store).await;
    assert_eq!(rows.get(&SendStatus::Pending), Some(&1));
    assert_eq!(rows.get(&SendStatus::Claimed), None, "released at stop");
    db.cleanup().await.unwrap();
}

/// An outcome waiting for its commit frees its request slot but keeps its place
/// among the unrecorded: with the ledger write-locked, a dispatcher with 2 slots
/// and room for 10 unrecorded sends exactly 10 pushes (not 2: slots come back
/// when a request ends; not 40: a crash must resend at most 10), then the rest
/// once the lock goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_awaiting_commit_hold_the_unrecorded_bound_not_the_slots() {
    use sqlx::Connection;
    let db = TestDb::sqlite().await.unwrap();
    let store = db.store.clone();
    let sink = Sink::accepting().await;
    let due = t0() + Duration::milliseconds(500);
    seed(&store, 40, "c", due).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let config = DispatcherConfig {
        lookahead: Duration::seconds(1),
        max_unrecorded: 10,
        ..config("bound", 40, 2)
    };
    let (cancel, task, _metrics) = start(&store, webhook(&sink.url, ""), clock.clone(), config);
    // Claimed ahead and held until their instant; then the ledger is locked.
    wait_for_backlog(&store, SendStatus::Claimed, 40).await;
    let mut lock = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut lock).await.unwrap();

    clock.set(due);
    sink.wait_for("10 pushes", StdDuration::from_secs(30), |sink| sink.len() >= 10).await;
    // The sink answers at once, so an unbounded dispatcher sends all 40 within
    // milliseconds of the tenth; 300 ms is the window in which it would show.
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(sink.len(), 10, "sent while 10 outcomes could not commit");
    assert_eq!(sink.in_flight(), 0, "every request ended; only their outcomes wait");
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM sends WHERE status = 'sent'")
        .fetch_one(&mut lock)
        .await
        .unwrap();
    assert_eq!(sent, 0, "nothing committed under the lock");

    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    wait_for_backlog(&store, SendStatus::Sent, 40).await;
    cancel.cancel();
    let stats = task.await.unwrap();
    assert_eq!(sink.len(), 40);
    assert!(sink.accepted().values().all(|n| *n == 1), "each sent once");
    assert_eq!(stats.sent, 40);
    db.cleanup().await.unwrap();
}

/// Rows that wait longer than their lease in the dispatcher (behind a slow
/// channel here; a low `rate_per_second` does the same) stay its own: the claimer
/// renews the leases it holds, so no claim (its own next one, or another
/// replica's: the same statement) takes them again, and each is sent once. The
/// clock jumps past the lease while the first push is being answered.
async fn held_rows_keep_their_lease(db: TestDb) {
    let store = db.store.clone();
    let sink = Sink::start(|_| Reply::SlowOk(StdDuration::from_millis(100))).await;
    seed(&store, 20, "c", t0() - Duration::seconds(1)).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (cancel, task, _metrics) =
        start(&store, webhook(&sink.url, ""), clock.clone(), config("holder", 20, 1));
    sink.wait_for("the first push", StdDuration::from_secs(20), |sink| sink.len() >= 1).await;
    // Every lease has expired on the clock; the claimer polls every 20 ms and
    // would take the 19 rows still waiting (and the one in flight) again.
    clock.set(t0() + Duration::seconds(31));
    wait_for_backlog(&store, SendStatus::Sent, 20).await;
    cancel.cancel();
    let stats = task.await.unwrap();
    assert_eq!(stats.claimed, 20, "rows claimed again after their lease: {stats:?}");
    assert_eq!(stats.sent, 20);
    assert_eq!(sink.len(), 20);
    assert!(sink.accepted().values().all(|n| *n == 1), "{:?}", sink.accepted());
    db.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_held_rows_keep_their_lease() {
    held_rows_keep_their_lease(TestDb::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_held_rows_keep_their_lease() {
    let Some(db) = TestDb::postgres().await.unwrap() else { return };
    held_rows_keep_their_lease(db).await;
}

/// A campaign's own rate limit throttles that campaign only: 200 rows of `slow`
/// (10/s) fall due before 200 rows of `fast` (no limit of its own) on a 50/s
/// channel with four request slots. `slow`'s rows wait in its pacer without a
/// slot, so `fast` goes out at the channel's remaining pace instead of queueing
/// behind them (head-of-line blocking sent all of `slow` first, 20 s), and the
/// dispatcher holds a bounded number of `slow`'s rows meanwhile.
async fn a_campaign_rate_limit_throttles_only_that_campaign(db: TestDb) {
    let store = db.store.clone();
    let sink = Sink::accepting().await;
    let ids = seed(&store, 200, "slow", t0() - Duration::seconds(2)).await;
    add_sends(&store, &ids, "fast", t0() - Duration::seconds(1), "hook").await;
    let metrics = Arc::new(Metrics::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let channels = Channels::from_config_with(
        &webhook(&sink.url, "rate_per_second = 50"),
        clock.clone(),
        metrics.clone(),
        &NoSecrets,
    )
    .unwrap();
    let dispatcher =
        Dispatcher::new(store.clone(), channels, clock, metrics.clone(), config("hol", 50, 4))
            .with_poll(StdDuration::from_millis(20));
    dispatcher.handle().set_campaign_rates(&HashMap::from([("slow".to_owned(), 10_u32)]));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(dispatcher.run(cancel.clone()));
    let campaign_of = |key: &str| key.split(':').next().unwrap_or_default().to_owned();
    let fast_sent =
        |sink: &Sink| sink.received().iter().filter(|r| campaign_of(&r.key) == "fast").count();
    sink.wait_for("every fast push", StdDuration::from_secs(60), |sink| fast_sent(sink) >= 200)
        .await;
    let slow_before = sink.received().iter().filter(|r| campaign_of(&r.key) == "slow").count();
    cancel.cancel();
    let stats = task.await.unwrap().unwrap();
    // 200 fast pushes at about 40/s take about 5 s, in which `slow` sends about
    // 10/s (plus its burst); all 200 of `slow` went first before.
    assert!(slow_before <= 100, "{slow_before} slow pushes went out before the fast ones ended");
    assert!(sink.accepted().values().all(|n| *n == 1), "{:?}", sink.accepted());
    // Claimed but not sent: at most the pacer's bound (64) and one batch (50).
    let held = stats.claimed as usize - sink.len();
    assert!(held <= 64 + 50, "the dispatcher held {held} rows of the limited campaign");
    db.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_campaign_rate_limit_throttles_only_that_campaign() {
    a_campaign_rate_limit_throttles_only_that_campaign(TestDb::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_campaign_rate_limit_throttles_only_that_campaign() {
    let Some(db) = TestDb::postgres().await.unwrap() else { return };
    a_campaign_rate_limit_throttles_only_that_campaign(db).await;
}
