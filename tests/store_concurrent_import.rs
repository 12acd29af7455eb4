//! Replicas importing the same member file at once (each daemon imports its
//! `members_file` at start): every upsert must return every member's id, whichever
//! transaction inserted the row.

use std::collections::BTreeMap;

use almanac::members::Member;
use almanac::store::testing::TestDb;
use almanac::store::{Resolution, UpsertKind};

const ROWS: usize = 500;
const TASKS: usize = 4;

/// The same `ROWS` members of `round`, in an order that differs per task.
fn batch(round: usize, task: usize) -> Vec<(Member, Resolution)> {
    (0..ROWS)
        .map(|i| {
            let n = (i * 7 + task * 131) % ROWS;
            let member = Member {
                external_id: format!("round{round}-crm-{n:05}"),
                name: Some(format!("member {n}")),
                ..Member::default()
            };
            (member, Resolution::default())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_imports_of_the_same_rows_return_every_id() {
    let Some(db) = TestDb::postgres().await.expect("postgres") else {
        return;
    };
    for round in 0..5 {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = db.store.clone();
                let rows = batch(round, task);
                tokio::spawn(async move { (store.upsert_resolved(&rows).await, rows) })
            })
            .collect();
        let mut id_of: BTreeMap<String, i64> = BTreeMap::new();
        let mut inserted = 0;
        for task in tasks {
            let (upserted, rows) = task.await.expect("task");
            let upserted = upserted.expect("every upsert returns every id");
            assert_eq!(upserted.len(), ROWS);
            for ((member, _), row) in rows.iter().zip(&upserted) {
                // All tasks agree on each member's id.
                let id = *id_of.entry(member.external_id.clone()).or_insert(row.id);
                assert_eq!(id, row.id, "{}", member.external_id);
                inserted += usize::from(row.kind == UpsertKind::Inserted);
            }
        }
        assert_eq!(id_of.len(), ROWS);
        assert_eq!(inserted, ROWS, "each row inserted exactly once across the racing tasks");
    }
    assert_eq!(db.store.member_counts().await.unwrap().total, 5 * ROWS as i64);
    db.cleanup().await.expect("cleanup");
}
