//! SQLite with its disk full (the database capped by `PRAGMA max_page_count`):
//! every write that fails leaves its pooled connection clean, so once space is
//! back (rows deleted) every write path works again without a restart.

use almanac::members::Member;
use almanac::store::{NewSend, SendStatus, Store};
use chrono::{DateTime, Duration, Utc};

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-03-01T02:00:00Z").unwrap().to_utc()
}

fn sends(ids: &[i64], occurrence: &str) -> Vec<NewSend> {
    ids.iter()
        .map(|id| NewSend {
            campaign_id: "c".into(),
            occurrence: occurrence.into(),
            member_id: *id,
            due_at: t0(),
            channel: "log".into(),
            lang: "zh-Hans".into(),
            variant: "0".into(),
            text: "x".repeat(400),
            status: SendStatus::Pending,
            reason: None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recovers_once_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("full.db").display());
    let store = Store::connect_sqlite_capped(&url, 400).await.unwrap();
    let members: Vec<(Member, Option<almanac::geo::Place>)> = (0..200)
        .map(|i| (Member { external_id: format!("m{i}"), ..Member::default() }, None))
        .collect();
    let ids = store.upsert_members(&members).await.unwrap();
    // Fill the ledger until the disk is full.
    let mut occurrence = 0;
    let full = loop {
        occurrence += 1;
        match store.insert_sends(&sends(&ids, &format!("o{occurrence}"))).await {
            Ok(_) => assert!(occurrence < 1000, "never full"),
            Err(error) => break error.to_string(),
        }
    };
    assert!(full.contains("full"), "{full}");
    // Every path keeps failing cleanly while full (several pooled connections).
    for _ in 0..16 {
        assert!(store.insert_sends(&sends(&ids, "more")).await.is_err());
    }
    // Space comes back: another connection (an operator, another process)
    // deletes rows; deleting frees pages without taking new ones.
    let other =
        sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    let deleted = sqlx::query("DELETE FROM sends WHERE occurrence <> 'o1'")
        .execute(&other)
        .await
        .unwrap()
        .rows_affected();
    other.close().await;
    assert!(deleted > 0);
    // The claim path (an UPDATE) works again.
    let claimed = store.claim_due("r", t0(), Duration::minutes(1), 100_000).await.unwrap();
    assert!(!claimed.is_empty());
    let outcomes: Vec<almanac::store::Outcome> = claimed
        .iter()
        .map(|row| almanac::store::Outcome::Sent { id: row.id, at: t0(), provider_id: None })
        .collect();
    store.record_outcomes("r", &outcomes).await.unwrap();
    // Every write path works again, on every pooled connection.
    for round in 0..16 {
        store.insert_sends(&sends(&ids[..10], &format!("after{round}"))).await.unwrap();
        store.upsert_members(&members[..5]).await.unwrap();
    }
    store.close().await;
}
