//! The running daemon sends what `plan` and `simulate` promise: the real
//! `almanac run` binary under a demo clock, with a real SQLite ledger and the
//! `log` channel (one JSON line per push on standard output), against the rules
//! README's rules section states: the catch-up rule, the global cap's
//! priority over its whole period, and the database every subcommand takes.

#[path = "daemon/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Daemon;

/// Members in Harbin (Asia/Shanghai, UTC+8).
fn members(count: usize) -> String {
    (1..=count)
        .map(|i| {
            format!(
                "{{\"external_id\":\"m{i:03}\",\"name\":\"会员{i}\",\"city\":\"Harbin\",\
                 \"openid\":\"openid-{i}\"}}\n"
            )
        })
        .collect()
}

/// A daemon configuration on the `log` channel under a demo clock.
fn config(start: &str, speed: f64, horizon: &str, extra: &str) -> String {
    format!(
        r#"database = "sqlite:almanac.db"
campaigns_dir = "campaigns"
members_file = "members.jsonl"
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[planner]
tick = "1s"
horizon = "{horizon}"

[channels.log]
type = "log"

[demo]
start = {start}
speed = {speed}
{extra}"#
    )
}

fn campaign(id: &str, priority: i32, timing: &str) -> String {
    format!(
        r#"id = "{id}"
name = "Promise {id}"
channel = "log"
purpose = "service"
default_lang = "zh-Hans"
priority = {priority}

[timing]
{timing}

[[message]]
lang = "zh-Hans"
text = "{{{{ name }}}}，{{{{ local_date }}}} 的消息。"
"#
    )
}

/// The pushes the daemon has printed so far.
fn pushes(daemon: &Daemon) -> Vec<Value> {
    std::fs::read_to_string(daemon.path("stdout.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Waits until the pushes satisfy `condition`, reading the daemon's
/// notifications meanwhile as systemd does (a full notification socket blocks
/// the daemon); panics with the daemon's output after `timeout`.
fn wait_pushes(
    daemon: &mut Daemon,
    what: &str,
    timeout: Duration,
    condition: impl Fn(&[Value]) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        daemon.drain_notifications();
        if condition(&pushes(daemon)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = std::fs::read_to_string(daemon.path("stdout.log")).unwrap_or_default();
    panic!("{what}: not within {timeout:?}\nstdout:\n{out}\nstderr:\n{}", daemon.log());
}

/// (campaign, occurrence) → members, of the pushes so far.
fn by_occurrence(pushes: &[Value]) -> BTreeMap<(String, String), Vec<String>> {
    let mut map: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for push in pushes {
        let key = (
            push["campaign"].as_str().unwrap().to_owned(),
            push["occurrence"].as_str().unwrap().to_owned(),
        );
        map.entry(key).or_default().push(push["member"].as_str().unwrap().to_owned());
    }
    map
}

#[test]
fn a_cron_campaign_loaded_late_sends_no_backlog_and_at_most_one_missed_occurrence() {
    // First seen on Thursday 2027-01-07 at 12:00 UTC (20:00 in Harbin).
    let weekly =
        campaign("weekly", 0, "trigger = \"cron\"\ncron = \"0 10 * * MON\"\nwindow = \"7d\"");
    let daily = campaign("daily", 0, "trigger = \"cron\"\ncron = \"0 10 * * *\"\nwindow = \"7d\"");
    let mut daemon = Daemon::start(
        &config("2027-01-07T12:00:00Z", 40_000.0, "2d", ""),
        &[("weekly.toml", &weekly), ("daily.toml", &daily)],
        &members(3),
    );
    // Monday 2027-01-11 10:00 in Harbin is 02:00 UTC: about eight real seconds in.
    wait_pushes(
        &mut daemon,
        "the weekly push of Monday 2027-01-11",
        Duration::from_secs(60),
        |p| {
            by_occurrence(p)
                .get(&("weekly".into(), "2027-01-11T10:00".into()))
                .is_some_and(|m| m.len() == 3)
        },
    );
    let pushes = pushes(&daemon);
    let occurrences = by_occurrence(&pushes);
    // Nothing that fell due before the campaign was first seen (the weekly of
    // 2027-01-04, the dailies of 2027-01-01..07), though both are inside `window`.
    for (campaign, occurrence) in occurrences.keys() {
        assert!(
            occurrence.as_str() >= "2027-01-07T20",
            "{campaign} sent {occurrence}, which fell due before the campaign was first seen:\n{pushes:#?}"
        );
    }
    // Each daily occurrence once per member, from Friday on.
    for day in ["2027-01-08", "2027-01-09", "2027-01-10", "2027-01-11"] {
        let members = &occurrences[&("daily".to_owned(), format!("{day}T10:00"))];
        assert_eq!(members.len(), 3, "daily {day}: {members:?}");
    }
    let weekly: Vec<&String> =
        occurrences.keys().filter(|(c, _)| c == "weekly").map(|(_, o)| o).collect();
    assert_eq!(weekly, ["2027-01-11T10:00"]);
}

#[test]
fn a_member_who_joins_late_gets_only_the_latest_missed_occurrence() {
    // A daily cron with a 7-day window; the daemon starts on 2027-01-01 with no
    // member, and one joins (admin API) on about 2027-01-05: one push of the
    // latest missed day, not four.
    let daily = campaign("daily", 0, "trigger = \"cron\"\ncron = \"0 10 * * *\"\nwindow = \"7d\"");
    let mut daemon = Daemon::start(
        &config("2027-01-01T00:00:00Z", 40_000.0, "1d", ""),
        &[("daily.toml", &daily)],
        "",
    );
    // Let four days pass (about nine real seconds), then add a member.
    let wait_until = Instant::now() + Duration::from_secs_f64(4.3 * 86_400.0 / 40_000.0);
    while Instant::now() < wait_until {
        daemon.drain_notifications();
        std::thread::sleep(Duration::from_millis(100));
    }
    let auth = format!("Bearer {}", support::ADMIN_TOKEN);
    let body = r#"{"external_id":"late-1","name":"迟到","city":"Harbin","openid":"openid-late"}"#;
    let (status, text) = daemon.http(
        "PUT",
        "/v1/members/late-1",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        body,
    );
    assert!((200..300).contains(&status), "PUT member: {status} {text}");
    wait_pushes(&mut daemon, "a push for the late member", Duration::from_secs(30), |p| {
        p.iter().any(|p| p["member"] == "late-1")
    });
    // Give the planner a few more ticks to prove it sends no backlog.
    for _ in 0..15 {
        daemon.drain_notifications();
        std::thread::sleep(Duration::from_millis(100));
    }
    let late: Vec<String> = pushes(&daemon)
        .iter()
        .filter(|p| p["member"] == "late-1")
        .map(|p| p["occurrence"].as_str().unwrap().to_owned())
        .collect();
    let caught_up: Vec<&String> = late.iter().filter(|o| o.as_str() < "2027-01-05T10:00").collect();
    assert!(caught_up.len() <= 1, "more than one missed occurrence sent: {late:?}");
    let unique: BTreeSet<&String> = late.iter().collect();
    assert_eq!(unique.len(), late.len(), "an occurrence sent twice: {late:?}");
}

#[test]
fn the_global_cap_keeps_the_later_higher_priority_push_in_the_daemon() {
    // Cap: one push per member in any 7 days. `promo` (priority 0) is due on
    // 2027-03-01, `alert` (priority 10) on 2027-03-04. The planner sees one day
    // ahead; the engine's decision over the cap's whole period keeps `alert`.
    let promo =
        campaign("promo", 0, "trigger = \"once\"\ndate = \"2027-03-01\"\nlocal_time = \"10:00\"");
    let alert =
        campaign("alert", 10, "trigger = \"once\"\ndate = \"2027-03-04\"\nlocal_time = \"10:00\"");
    let mut daemon = Daemon::start(
        &config("2027-02-27T00:00:00Z", 40_000.0, "1d", "\n[frequency]\nmax = 1\nper = \"7d\"\n"),
        &[("promo.toml", &promo), ("alert.toml", &alert)],
        &members(4),
    );
    wait_pushes(&mut daemon, "the alert pushes", Duration::from_secs(60), |p| {
        by_occurrence(p).get(&("alert".into(), "once".into())).is_some_and(|m| m.len() == 4)
    });
    let occurrences = by_occurrence(&pushes(&daemon));
    assert_eq!(occurrences.get(&("promo".into(), "once".into())), None, "promo was sent");
    // Each dropped push is recorded with its reason, and logged.
    let rows = ledger_rows(&daemon, "promo");
    assert_eq!(rows.len(), 4, "promo rows: {rows:?}");
    for (status, reason) in &rows {
        assert_eq!((status.as_str(), reason.as_deref()), ("skipped", Some("global_cap")));
    }
    assert!(daemon.log().contains("global cap dropped"), "no log line:\n{}", daemon.log());
}

/// (status, last_error) of a campaign's ledger rows, read with the sqlite3 CLI
/// if present, else through the library's store.
fn ledger_rows(daemon: &Daemon, campaign: &str) -> Vec<(String, Option<String>)> {
    let url = format!("sqlite:{}", daemon.path("almanac.db").display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool =
            sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT status, last_error FROM sends WHERE campaign_id = ?1")
                .bind(campaign)
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        rows
    })
}

/// Starts `almanac run` with `args` and `env` in `dir` until it logs that it is
/// ready (or exits); returns its log.
fn start_log(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let log_path = dir.join("run.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_almanac"));
    command
        .arg("run")
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env_remove("ALMANAC_DATABASE_URL")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("almanac is ready") || child.try_wait().unwrap().is_some() {
            break log;
        }
        assert!(Instant::now() < deadline, "not ready within a minute:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    log
}

#[test]
fn run_takes_its_database_from_the_flag_then_the_environment_then_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("campaigns")).unwrap();
    std::fs::write(
        dir.path().join("almanac.toml"),
        "database = \"sqlite:from-config.db\"\ncampaigns_dir = \"campaigns\"\n\
         listen = \"127.0.0.1:0\"\n[channels.log]\ntype = \"log\"\n",
    )
    .unwrap();
    let config = ["--config", "almanac.toml"];

    let log = start_log(dir.path(), &config, &[("ALMANAC_DATABASE_URL", "sqlite:from-env.db")]);
    assert!(log.contains("database=sqlite:from-env.db"), "environment ignored:\n{log}");
    assert!(log.contains("ALMANAC_DATABASE_URL"), "the start line says where it came from:\n{log}");
    assert!(dir.path().join("from-env.db").exists());
    assert!(!dir.path().join("from-config.db").exists(), "the config's database was opened");

    let flag = ["--config", "almanac.toml", "--database", "sqlite:from-flag.db"];
    let log = start_log(dir.path(), &flag, &[("ALMANAC_DATABASE_URL", "sqlite:from-env.db")]);
    assert!(log.contains("database=sqlite:from-flag.db"), "flag ignored:\n{log}");
    assert!(dir.path().join("from-flag.db").exists());

    let log = start_log(dir.path(), &config, &[]);
    assert!(log.contains("database=sqlite:from-config.db"), "config ignored:\n{log}");
    assert!(log.contains("configuration file"), "{log}");
    assert!(dir.path().join("from-config.db").exists());
}
