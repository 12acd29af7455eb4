//! Crash test: the real `almanac run` dispatching 20 000 pushes to a local webhook
//! sink is killed with SIGKILL mid-run and restarted on the same SQLite ledger. The
//! sink ends with every push; every duplicate carries the same Idempotency-Key as
//! its original, and there are no more of them than requests in flight at the
//! kill: pushes the sink had received whose outcome the ledger had not recorded
//! (read from the ledger between the kill and the restart), themselves at most
//! `max_unrecorded`.

#[path = "common/almanac_proc.rs"]
mod almanac_proc;
#[path = "common/sink.rs"]
mod sink;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use almanac_proc::{Almanac, config, free_port, workspace};
use sink::{Reply, Sink};

const MEMBERS: usize = 20_000;
const CONCURRENCY: usize = 32;
/// Sent and not yet recorded, at most: what a crash may resend.
const MAX_UNRECORDED: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_nothing_and_resends_only_what_was_in_flight() {
    // A slow receiver: `CONCURRENCY` requests are in flight at any moment, so the
    // kill lands with pushes sent but not yet marked.
    let sink = Sink::start(|_| Reply::SlowOk(Duration::from_millis(20))).await;
    let dir = workspace("crash", "hook", MEMBERS);
    let write_config = |port: u16| {
        let text = config(
            "sqlite:almanac.db",
            port,
            &sink.url,
            "timeout_ms = 5000",
            &format!(
                "batch = 200\nconcurrency = {CONCURRENCY}\nmax_unrecorded = {MAX_UNRECORDED}\n\
                 lease_secs = 3\npoll_ms = 50"
            ),
        );
        std::fs::write(dir.path().join("almanac.toml"), text).unwrap();
    };
    let port = free_port();
    write_config(port);

    let mut first = Almanac::spawn(dir.path(), "almanac.toml", port, "first");
    let limit = Duration::from_secs(180);
    let deadline = std::time::Instant::now() + limit;
    while sink.len() < MEMBERS / 4 {
        first.assert_running();
        assert!(std::time::Instant::now() < deadline, "no progress:\n{}", first.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answering_at_kill = sink.in_flight();
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10)).await;
    // In flight at the kill, as the dispatcher counts them: sent (the sink has
    // them) and not recorded (the ledger does not say sent). Every one is sent
    // again after the restart; nothing else is.
    let recorded = sent_in_ledger(&dir.path().join("almanac.db")).await;
    let at_kill = sink.len();
    assert!(at_kill < MEMBERS, "killed mid-run ({at_kill} of {MEMBERS} already sent)");
    let in_flight_at_kill = at_kill - recorded;
    assert!(
        in_flight_at_kill <= MAX_UNRECORDED,
        "{in_flight_at_kill} pushes sent and not recorded, more than max_unrecorded \
         ({MAX_UNRECORDED})"
    );

    let port = free_port();
    write_config(port);
    let mut second = Almanac::spawn(dir.path(), "almanac.toml", port, "second");
    let deadline = std::time::Instant::now() + limit;
    while sink.accepted().len() < MEMBERS {
        second.assert_running();
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {MEMBERS} after restart:\n{}",
            sink.accepted().len(),
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let anything else in flight land, then stop gracefully.
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.signal("TERM");
    assert!(second.wait_exit(Duration::from_secs(30)).await.success(), "{}", second.log());

    let received = sink.received();
    // Every push arrived, keyed by its ledger key; one key per (campaign, member).
    let mut key_of_member: HashMap<String, HashSet<String>> = HashMap::new();
    for request in &received {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let member = format!("{}/{}", body["campaign"], body["member"]);
        key_of_member.entry(member).or_default().insert(request.key.clone());
    }
    assert_eq!(key_of_member.len(), MEMBERS, "every member got the push");
    assert!(
        key_of_member.values().all(|keys| keys.len() == 1),
        "a duplicate carries the same Idempotency-Key as its original"
    );
    let duplicates = received.len() - MEMBERS;
    assert!(
        duplicates <= in_flight_at_kill,
        "{duplicates} duplicates, more than the {in_flight_at_kill} pushes in flight at the kill"
    );
    eprintln!(
        "crash: killed after {at_kill} requests, {recorded} recorded as sent; in flight: \
         {in_flight_at_kill} (of which {answering_at_kill} still being answered by the sink); \
         {duplicates} duplicate(s) after restart"
    );
}

/// Rows the ledger at `path` records as sent.
async fn sent_in_ledger(path: &std::path::Path) -> usize {
    let url = format!("sqlite:{}", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM sends WHERE status = 'sent'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    usize::try_from(sent).unwrap()
}
