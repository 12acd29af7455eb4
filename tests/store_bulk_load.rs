//! Bulk loads (`Store::begin_bulk_load`): the first import into an empty members
//! table on PostgreSQL COPies rows straight into the table with its secondary
//! indexes and unique constraints dropped, and rebuilds them at the end. These
//! tests hold it to what an upsert would have left: the same indexes, the last
//! row of a repeated external id, nothing at all when it does not finish, and
//! no bulk load at all into a table that holds a member. On SQLite a bulk load
//! is plain INSERTs batch by batch, falling back to upserts at the first
//! external id that exists.

#[macro_use]
#[path = "common/backends.rs"]
mod backends;

use std::time::{Duration, Instant};

use almanac::members::{self, ImportSummary, Member, RowError};
use almanac::store::testing::TestDb;
use almanac::store::{Resolution, UpsertKind, Written};
use sqlx::Connection;

fn member(n: u32, name: &str) -> (Member, Resolution) {
    let member = Member {
        external_id: format!("crm-{n:05}"),
        openid: Some(format!("oOPENID{n:05}")),
        name: Some(name.to_string()),
        phone: Some(format!("+86139045{n:05}")),
        tags: vec!["vip".into(), "tab\there".into()],
        ..Member::default()
    };
    let resolution = Resolution {
        place: None,
        unresolved_reason: Some("no location hint".into()),
        data_version: Some("v1".into()),
    };
    (member, resolution)
}

/// Every index of `members` (constraints' indexes included) as PostgreSQL
/// would recreate it.
async fn index_definitions(url: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let definitions = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'members' \
         AND schemaname = current_schema() ORDER BY indexname",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    definitions
}

/// Waits until another session is waiting for a lock (the second bulk load).
async fn wait_for_lock_waiter(url: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE 'LOCK TABLE members%')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting {
            break;
        }
        assert!(Instant::now() < deadline, "the second bulk load never waited for the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_bulk_load_rebuilds_indexes_and_keeps_the_last_row() {
    let Some(db) = TestDb::postgres().await.expect("postgres") else {
        return;
    };
    let before = index_definitions(&db.url).await;
    assert!(before.iter().any(|d| d.contains("UNIQUE") && d.contains("external_id")), "{before:?}");

    let mut load = db.store.begin_bulk_load().await.unwrap().expect("members is empty");
    load.write(vec![member(1, "a"), member(2, "b"), member(3, "c, first")]).await.unwrap();
    load.write(vec![member(3, "c\\second\r\n\tend"), member(4, "d")]).await.unwrap();

    // A second load waits for the first, then finds the table occupied.
    let second = tokio::spawn({
        let store = db.store.clone();
        async move { store.begin_bulk_load().await.map(|load| load.is_some()) }
    });
    wait_for_lock_waiter(&db.url).await;
    assert!(!second.is_finished());
    assert_eq!(load.finish().await.unwrap(), 1, "one earlier row of crm-00003 replaced");
    assert!(!second.await.unwrap().unwrap(), "no bulk load into a table that holds members");

    assert_eq!(index_definitions(&db.url).await, before, "every index rebuilt as it was");
    assert_eq!(db.store.member_counts().await.unwrap().total, 4);
    let third = db.store.get_member("crm-00003").await.unwrap().unwrap();
    assert_eq!(third.member.name.as_deref(), Some("c\\second\r\n\tend"), "the later row wins");
    assert_eq!(third.member.tags, vec!["vip".to_string(), "tab\there".to_string()]);
    assert_eq!(third.unresolved_reason.as_deref(), Some("no location hint"));

    // The unique constraint is back: an upsert finds the loaded rows.
    let again = db.store.upsert_resolved(&[member(1, "a"), member(2, "b, edited")]).await.unwrap();
    let kinds: Vec<UpsertKind> = again.iter().map(|up| up.kind).collect();
    assert_eq!(kinds, [UpsertKind::Unchanged, UpsertKind::Updated]);
    assert!(
        db.store
            .execute_raw("INSERT INTO members (external_id) VALUES ('crm-00004')")
            .await
            .is_err(),
        "external_id is unique again"
    );
    db.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_unfinished_bulk_load_leaves_nothing() {
    let Some(db) = TestDb::postgres().await.expect("postgres") else {
        return;
    };
    let before = index_definitions(&db.url).await;
    let mut load = db.store.begin_bulk_load().await.unwrap().expect("members is empty");
    load.write(vec![member(1, "a"), member(2, "b")]).await.unwrap();
    drop(load);
    assert_eq!(db.store.member_counts().await.unwrap().total, 0);
    assert_eq!(index_definitions(&db.url).await, before);
    // The table is still empty, so the next import may bulk load again.
    let load = db.store.begin_bulk_load().await.unwrap().expect("still empty");
    assert_eq!(load.finish().await.unwrap(), 0);
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn sqlite_bulk_load_inserts_then_falls_back_to_upserts() {
    let db = TestDb::sqlite().await.unwrap();
    let mut load = db.store.begin_bulk_load().await.unwrap().expect("members is empty");
    let first = load.write(vec![member(1, "a"), member(2, "b")]).await.unwrap();
    assert_eq!(first, Written { inserted: 2, ..Written::default() });
    // Each batch commits on its own: the rows are there already.
    assert_eq!(db.store.member_counts().await.unwrap().total, 2);
    // A batch that meets an existing external id is upserted instead, whole.
    let second = load.write(vec![member(3, "c"), member(1, "a"), member(2, "b, edited")]).await;
    assert_eq!(second.unwrap(), Written { inserted: 1, updated: 1, unchanged: 1 });
    let third = load.write(vec![member(4, "d")]).await.unwrap();
    assert_eq!(third, Written { inserted: 1, ..Written::default() });
    assert_eq!(load.finish().await.unwrap(), 0);
    assert_eq!(db.store.member_counts().await.unwrap().total, 4);
    let edited = db.store.get_member("crm-00002").await.unwrap().unwrap();
    assert_eq!(edited.member.name.as_deref(), Some("b, edited"));
    assert!(db.store.begin_bulk_load().await.unwrap().is_none(), "members is not empty");
    db.cleanup().await.unwrap();
}

/// `members::import` of rows with an external id repeated across batches: the
/// summary counts it as an update whichever path the backend takes, and the
/// later row is the one stored.
async fn import_counts_a_repeated_id_as_an_update(db: &TestDb) {
    let rows: Vec<Result<Member, RowError>> = [1, 2, 3, 4, 2, 5]
        .into_iter()
        .enumerate()
        .map(|(row, n)| Ok(member(n, &format!("row {row}")).0))
        .collect();
    let summary = members::import(
        &db.store,
        Box::new(rows.into_iter()),
        std::sync::Arc::new(|_: &Member| Err("no location hint".to_string())),
        "v1",
        3,
        &mut |error| panic!("unexpected bad row {error}"),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        summary,
        ImportSummary { read: 6, inserted: 5, updated: 1, unchanged: 0, rejected: 0 }
    );
    let stored = db.store.get_member("crm-00002").await.unwrap().unwrap();
    assert_eq!(stored.member.name.as_deref(), Some("row 4"));
    assert_eq!(db.store.member_counts().await.unwrap().total, 5);
}

both_backends!(import_counts_a_repeated_id_as_an_update);
