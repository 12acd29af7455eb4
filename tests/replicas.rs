//! Replica test on PostgreSQL: three `almanac run` processes, started together,
//! share one ledger of 30 000 pushes (the first imports the member file; all three
//! plan the same campaign, which is idempotent, and claim with `FOR UPDATE SKIP
//! LOCKED`). Every push reaches the sink exactly once.

#[path = "common/almanac_proc.rs"]
mod almanac_proc;
#[path = "common/sink.rs"]
mod sink;

use std::time::Duration;

use almanac::store::testing::TestDb;
use almanac_proc::{Almanac, config, free_port, metric_sum, workspace};
use sink::Sink;

const MEMBERS: usize = 30_000;
const REPLICAS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_send_every_push_exactly_once() {
    let Some(db) = TestDb::postgres().await.unwrap() else { return };
    let sink = Sink::accepting().await;
    let dir = workspace("replicas", "hook", MEMBERS);
    let mut replicas = Vec::new();
    for replica in 0..REPLICAS {
        let port = free_port();
        let file = format!("almanac-{replica}.toml");
        let mut text = config(
            &db.url,
            port,
            &sink.url,
            "timeout_ms = 5000",
            "batch = 500\nconcurrency = 32\nlease_secs = 30\npoll_ms = 50",
        );
        if replica > 0 {
            // One importer; the others find the members in the shared database.
            text = text.replace("members_file = \"members.jsonl\"\n", "");
        }
        std::fs::write(dir.path().join(&file), text).unwrap();
        replicas.push(Almanac::spawn(dir.path(), &file, port, &format!("replica-{replica}")));
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while sink.accepted().len() < MEMBERS {
        for replica in &mut replicas {
            replica.assert_running();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {MEMBERS} pushes:\n{}",
            sink.accepted().len(),
            replicas[0].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every replica's outcomes reach the ledger and its counters.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut per_replica = Vec::new();
    loop {
        per_replica.clear();
        for replica in &replicas {
            let text = replica.scrape().await;
            per_replica.push(metric_sum(&text, "almanac_pushes_total", &[("outcome", "sent")]));
        }
        if per_replica.iter().sum::<f64>() as usize >= MEMBERS {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "sent per replica: {per_replica:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for replica in &replicas {
        replica.signal("TERM");
    }
    for replica in &mut replicas {
        assert!(replica.wait_exit(Duration::from_secs(30)).await.success(), "{}", replica.log());
    }

    assert_eq!(sink.len(), MEMBERS, "no push sent twice");
    assert!(sink.accepted().values().all(|count| *count == 1));
    assert_eq!(per_replica.iter().sum::<f64>() as usize, MEMBERS, "{per_replica:?}");
    assert!(
        per_replica.iter().filter(|sent| **sent > 0.0).count() >= 2,
        "the work was shared: {per_replica:?}"
    );
    eprintln!("replicas: sent per replica {per_replica:?}");
    db.cleanup().await.unwrap();
}
