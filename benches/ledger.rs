//! The planner's ledger insert on SQLite: `Store::insert_planned` of N rows of
//! one campaign, five thousand per call as the daemon's planner writes them,
//! against SQLite's own insert of the same rows measured in the same run (one
//! `INSERT … SELECT` per five thousand members that builds the same values from
//! the members table inside SQLite, so nothing crosses the driver). Each round
//! uses two fresh files with N members; `ALMANAC_BENCH_ROWS` sets N (default
//! 1,000,000) and `ALMANAC_BENCH_ROUNDS` the rounds (default 3); the verdict is
//! the median ratio, because this machine is shared and a single run moves by
//! tens of percent.

/// The binary's allocator, so that the figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use almanac::store::testing::TestDb;
use almanac::store::{NewSend, SendStatus};
use chrono::{DateTime, Utc};

/// Rows per planner call (the benchmark's `[planner] batch`).
const BATCH: i64 = 5_000;
const CAMPAIGN: &str = "burst-campaign";
const OCCURRENCE: &str = "2026-11-30T10:00";

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// Each row's text is `TEXT_HEAD`, the member id, `TEXT_TAIL`: built the same way
/// in Rust ([`text`]) and inside SQLite (the reference), so both insert the same rows.
const TEXT_HEAD: &str = "亲爱的会员 ";
const TEXT_TAIL: &str = "，天气转凉，您的保湿霜已经准备好了。回复 TD 退订。";

fn text(member_id: i64) -> String {
    format!("{TEXT_HEAD}{member_id}{TEXT_TAIL}")
}

/// A fresh SQLite file holding `rows` members with ids 1..=rows.
async fn database(rows: i64) -> TestDb {
    let db = TestDb::sqlite().await.expect("sqlite");
    db.store
        .execute_raw(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
             INSERT INTO members (id, external_id) SELECT i, 'crm-' || i FROM n"
        ))
        .await
        .expect("members");
    db
}

/// The planner's path: rows built in Rust, inserted by `insert_planned`.
async fn planner(rows: i64, due: DateTime<Utc>) -> Duration {
    let db = database(rows).await;
    let mark = db.store.lead_planner("bench", due, due).await.expect("lease").expect("mark");
    let started = Instant::now();
    let mut inserted = 0;
    for low in (1..=rows).step_by(BATCH as usize) {
        let sends: Vec<NewSend> = (low..(low + BATCH).min(rows + 1))
            .map(|member_id| NewSend {
                campaign_id: CAMPAIGN.into(),
                occurrence: OCCURRENCE.into(),
                member_id,
                due_at: due,
                channel: "webhook".into(),
                lang: if member_id % 5 == 0 { "yue-Hant" } else { "cmn-Hans" }.into(),
                variant: if member_id % 2 == 0 { "A" } else { "B" }.into(),
                text: text(member_id),
                status: SendStatus::Pending,
                reason: None,
            })
            .collect();
        inserted += db.store.insert_planned(&sends, &mark).await.expect("insert");
    }
    let took = started.elapsed();
    assert_eq!(inserted, rows as u64);
    db.cleanup().await.expect("cleanup");
    took
}

/// SQLite's own insert of the same rows (same values, same indexes, same
/// transaction size), built inside SQLite from the members table.
async fn reference(rows: i64, due: DateTime<Utc>) -> Duration {
    let db = database(rows).await;
    let micros = due.timestamp_micros();
    let started = Instant::now();
    for low in (1..=rows).step_by(BATCH as usize) {
        let high = (low + BATCH - 1).min(rows);
        db.store
            .execute_raw(&format!(
                "BEGIN IMMEDIATE; \
                 INSERT INTO sends (campaign_id, occurrence, member_id, due_at, next_attempt_at, \
                   channel, lang, variant, text, status) \
                 SELECT '{CAMPAIGN}', '{OCCURRENCE}', m.id, {micros}, {micros}, 'webhook', \
                   CASE WHEN m.id % 5 = 0 THEN 'yue-Hant' ELSE 'cmn-Hans' END, \
                   CASE WHEN m.id % 2 = 0 THEN 'A' ELSE 'B' END, \
                   '{TEXT_HEAD}' || m.id || '{TEXT_TAIL}', \
                   'pending' \
                 FROM members m WHERE m.id BETWEEN {low} AND {high} ON CONFLICT DO NOTHING; \
                 COMMIT;"
            ))
            .await
            .expect("reference insert");
    }
    let took = started.elapsed();
    db.cleanup().await.expect("cleanup");
    took
}

#[tokio::main]
async fn main() {
    let rows = env_or("ALMANAC_BENCH_ROWS", 1_000_000);
    let rounds = env_or("ALMANAC_BENCH_ROUNDS", 3).max(1);
    let due = Utc::now() + chrono::Duration::hours(1);
    println!("ledger insert, SQLite: {rows} rows of one campaign, {BATCH} per call");
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let own = reference(rows, due).await;
        let ours = planner(rows, due).await;
        let ratio = own.as_secs_f64() / ours.as_secs_f64();
        println!(
            "round {round}: SQLite's INSERT … SELECT {:.2} s, insert_planned {:.2} s \
             ({:.2} µs per row) = {ratio:.2} × SQLite's own rate",
            own.as_secs_f64(),
            ours.as_secs_f64(),
            ours.as_secs_f64() * 1e6 / rows as f64
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median: insert_planned runs at {:.2} × SQLite's own insert",
        ratios[ratios.len() / 2]
    );
}
