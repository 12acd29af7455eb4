//! A daemon that keeps failing to plan, or to record outcomes, says so: the real
//! `almanac run` on a SQLite ledger whose tables are taken away under it (renamed
//! by another connection, as a broken migration or an operator's mistake would)
//! counts the failures, answers `/readyz` 503 with the reason, and recovers by
//! itself, 200 again, once the table is back; the push in flight is recorded.

#[path = "daemon/support.rs"]
mod support;

use std::time::Duration;

use support::Daemon;

const CONFIG: &str = r#"database = "sqlite:almanac.db"
campaigns_dir = "campaigns"
members_file = "members.jsonl"
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[planner]
tick = "1s"
horizon = "1h"

[channels.log]
type = "log"
"#;

const CAMPAIGN: &str = r#"id = "daily"
name = "Daily"
channel = "log"
default_lang = "zh-Hans"

[timing]
trigger = "cron"
cron = "0 10 * * *"

[[message]]
lang = "zh-Hans"
text = "早上好"
"#;

/// Runs one statement on the daemon's ledger from another connection; returns
/// the first column of the first row, if any. The daemon may hold the write lock
/// at that moment: the statement is retried until it succeeds, and an error that
/// lasts 30 s fails the test (a rename that silently did not happen would leave
/// the daemon failing for ever).
fn sql(daemon: &Daemon, statement: &str) -> Option<i64> {
    let url = format!("sqlite:{}", daemon.path("almanac.db").display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool =
            sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let row: Option<(i64,)> = loop {
            match sqlx::query_as(statement).fetch_optional(&pool).await {
                Ok(row) => break row,
                Err(error) if std::time::Instant::now() < deadline => {
                    eprintln!("{statement}: {error}; again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("{statement}: {error}"),
            }
        };
        pool.close().await;
        row.map(|(value,)| value)
    })
}

#[test]
fn readyz_is_503_with_the_reason_while_planning_fails_and_200_once_it_recovers() {
    let members = "{\"external_id\":\"m1\",\"name\":\"一\",\"city\":\"Harbin\"}\n";
    let mut daemon = Daemon::start(CONFIG, &[("daily.toml", CAMPAIGN)], members);
    daemon.poll("ready", Duration::from_secs(30), |d| d.http("GET", "/readyz", &[], "").0 == 200);

    sql(&daemon, "ALTER TABLE planner_state RENAME TO planner_state_away");
    let mut body = String::new();
    daemon.poll("/readyz 503", Duration::from_secs(30), |d| {
        let (status, text) = d.http("GET", "/readyz", &[], "");
        body = text;
        status == 503
    });
    assert!(body.contains("planning failing"), "{body}");
    assert!(body.contains("planner_state"), "the reason names the cause: {body}");
    assert!(daemon.metric("almanac_planning_failures_total{campaign=\"*\"}") >= 1.0);
    daemon.drain_notifications();

    sql(&daemon, "ALTER TABLE planner_state_away RENAME TO planner_state");
    daemon.poll("/readyz 200 again", Duration::from_secs(30), |d| {
        d.http("GET", "/readyz", &[], "").0 == 200
    });
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn readyz_is_503_while_outcomes_cannot_be_recorded_and_the_push_is_recorded_after() {
    let sink = support::Sink::start(Duration::from_secs(3));
    let config = CONFIG.replace(
        "[channels.log]\ntype = \"log\"\n",
        &format!("[channels.log]\ntype = \"webhook\"\nurl = \"http://{}/hook\"\n", sink.addr),
    );
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let campaign = format!(
        "id = \"now\"\nname = \"Now\"\nchannel = \"log\"\ndefault_lang = \"zh-Hans\"\n\
         [timing]\ntrigger = \"once\"\ndate = \"{}\"\nlocal_time = \"{}\"\n\
         catch_up = \"1h\"\nwindow = \"1d\"\n[[message]]\nlang = \"zh-Hans\"\ntext = \"现在\"\n",
        now.format("%Y-%m-%d"),
        (now - chrono::Duration::minutes(5)).format("%H:%M"),
    );
    let members = "{\"external_id\":\"m1\",\"name\":\"一\",\"city\":\"Harbin\"}\n";
    let mut daemon = Daemon::start(&config, &[("now.toml", &campaign)], members);
    // The push is claimed and in flight at the sink (which answers in 3 s).
    daemon.poll("the push claimed", Duration::from_secs(30), |d| {
        sql(d, "SELECT COUNT(*) FROM sends WHERE status = 'claimed'") == Some(1)
    });
    sql(&daemon, "ALTER TABLE sends RENAME TO sends_away");
    let mut body = String::new();
    daemon.poll("/readyz 503", Duration::from_secs(30), |d| {
        let (status, text) = d.http("GET", "/readyz", &[], "");
        body = text;
        status == 503 && body.contains("recording outcomes failing")
    });
    assert_eq!(sink.count(), 1, "the sink answered the push");
    sql(&daemon, "ALTER TABLE sends_away RENAME TO sends");
    daemon.poll("/readyz 200 again", Duration::from_secs(30), |d| {
        d.http("GET", "/readyz", &[], "").0 == 200
    });
    assert_eq!(sql(&daemon, "SELECT COUNT(*) FROM sends WHERE status = 'sent'"), Some(1));
    daemon.drain_notifications();
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
}
