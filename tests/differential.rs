//! The differential test: the same campaigns (once, cron, climate; a global cap
//! over two priorities; a campaign rate limit; quiet hours; a holdout) and the
//! same members (the bundled sample file), replayed over five months of virtual
//! time through the real daemon (planner ticks, SQLite ledger, dispatcher, the
//! `log` channel) and through `almanac simulate`, give the same pushes (member,
//! campaign, occurrence, instant, variant) and the same skip reasons, and the
//! global cap drops the same sends.

#[path = "daemon/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Daemon;

const WEEKLY: &str = r#"id = "diff-weekly"
name = "Weekly digest"
channel = "log"
purpose = "service"
default_lang = "zh-Hans"
starts = 2027-08-01T00:00:00+08:00
ends = 2028-01-01T00:00:00+08:00

[audience]
tags_any = ["newsletter", "digest-optin"]

[timing]
trigger = "cron"
cron = "0 9 * * MON"

[limits]
rate_per_second = 2000

[[message]]
lang = "zh-Hans"
text = "{{ name }}，本周精选（{{ local_date }}）。"

[[message]]
lang = "yue-Hant"
text = "{{ name }}，本週精選（{{ local_date }}）。"
"#;

const MOISTURIZER: &str = r#"id = "diff-moisturizer"
name = "Autumn moisturizer"
channel = "log"
purpose = "service"
default_lang = "zh-Hans"
priority = 10

[audience]
countries = ["CN", "HK"]
tags_any = ["skincare"]

[timing]
trigger = "climate"
metric = "mean_temp_c"
crosses = "below"
threshold = 17.0
after = "08-01"
local_time = "10:00"
quiet_hours = { start = "22:00", end = "08:00" }

[limits]
per_member = 1

[[message]]
lang = "yue-Hans"
text = "{{ name }}，天气转干，记得保湿。"

[[message]]
lang = "zh-Hans"
text = "{{ name }}，天气转凉变干，记得保湿。"
"#;

const SALE: &str = r#"id = "diff-sale"
name = "Double tenth sale"
channel = "log"
purpose = "service"
default_lang = "zh-Hans"
priority = 10

[audience]
holdout = 0.1

[timing]
trigger = "once"
date = "2027-10-06"
local_time = "23:00"
quiet_hours = { start = "22:00", end = "08:00" }

[[message]]
lang = "zh-Hans"
label = "A"
weight = 1
text = "{{ name }}，双十大促明天开始。"

[[message]]
lang = "zh-Hans"
label = "B"
weight = 1
text = "{{ name }}，明天起全场八折。"
"#;

const NEW_YEAR: &str = r#"id = "diff-new-year"
name = "New year"
channel = "log"
purpose = "service"
default_lang = "zh-Hans"

[timing]
trigger = "once"
date = "2028-01-02"
local_time = "10:00"

[[message]]
lang = "zh-Hans"
text = "{{ name }}，新年快乐。"
"#;

const CAMPAIGNS: [(&str, &str); 4] = [
    ("weekly.toml", WEEKLY),
    ("moisturizer.toml", MOISTURIZER),
    ("sale.toml", SALE),
    ("new-year.toml", NEW_YEAR),
];

/// A push: (member, campaign, occurrence, due instant, variant).
type Push = (String, String, String, String, String);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample_members() -> String {
    std::fs::read_to_string(root().join("data/sample-members.jsonl")).unwrap()
}

/// RFC 3339 `…Z` to whole seconds, as both sides print it.
fn instant(text: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .to_utc()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[test]
fn the_daemon_sends_what_simulate_promises_over_five_months() {
    let members = sample_members();
    let ids: Vec<String> = members
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["external_id"].as_str().unwrap().to_owned()
        })
        .collect();

    // simulate, from the day the daemon's clock starts.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("campaigns")).unwrap();
    for (name, text) in CAMPAIGNS {
        std::fs::write(dir.path().join("campaigns").join(name), text).unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .args(["simulate", "--from", "2027-07-25", "--to", "2028-01-02", "--format", "jsonl"])
        .args(["--global-cap", "2/7d", "--members"])
        .arg(root().join("data/sample-members.jsonl"))
        .arg(dir.path().join("campaigns"))
        .output()
        .unwrap();
    assert!(output.status.success(), "simulate: {}", String::from_utf8_lossy(&output.stderr));
    let mut lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let summary = lines.pop().unwrap()["summary"].clone();
    let promised: BTreeSet<Push> = lines
        .iter()
        .filter(|fired| fired["holdout"] == false)
        .map(|fired| {
            let index = fired["member_id"].as_u64().unwrap() as usize - 1;
            (
                ids[index].clone(),
                fired["campaign"].as_str().unwrap().to_owned(),
                fired["occurrence"].as_str().unwrap().to_owned(),
                instant(fired["due_at"].as_str().unwrap()),
                fired["variant"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let new_year = promised.iter().filter(|push| push.1 == "diff-new-year").count();
    assert!(new_year > 100, "the last campaign reaches most members: {new_year}");
    for campaign in ["diff-weekly", "diff-moisturizer", "diff-sale"] {
        assert!(promised.iter().any(|push| push.1 == campaign), "simulate sends no {campaign}");
    }
    let promised_skips: BTreeSet<(String, String)> = summary
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(campaign, s)| {
            s["skipped"]
                .as_object()
                .unwrap()
                .keys()
                .map(|reason| (campaign.clone(), reason.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        promised_skips.contains(&("diff-weekly".to_owned(), "global_cap".to_owned())),
        "the cap drops some of the lower-priority weekly pushes: {promised_skips:?}"
    );

    // The daemon: a demo clock from 2027-07-25 at 300 000 times real time (a
    // planner tick is about three and a half virtual days; the horizon is seven).
    let config = r#"database = "sqlite:almanac.db"
campaigns_dir = "campaigns"
members_file = "members.jsonl"
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[planner]
tick = "1s"
horizon = "7d"

[frequency]
max = 2
per = "7d"

[channels.log]
type = "log"

[demo]
start = 2027-07-25T00:00:00Z
speed = 300000.0
"#;
    let mut daemon = Daemon::start(config, &CAMPAIGNS, &members);
    let deadline = Instant::now() + Duration::from_secs(180);
    let sent = loop {
        daemon.drain_notifications();
        let sent = pushes(&daemon);
        let done = sent.iter().filter(|push| push.1 == "diff-new-year").count() >= new_year
            && daemon.metric("almanac_ledger_backlog{status=\"pending\"}") == 0.0
            && daemon.metric("almanac_ledger_backlog{status=\"claimed\"}") == 0.0;
        if done {
            break sent;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not reach 2028-01-02 within 3 minutes ({} pushes):\n{}",
            sent.len(),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let exposition = daemon.http("GET", "/metrics", &[], "").1;
    let capped = ledger_capped(&daemon);
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(30));

    let sent: BTreeSet<Push> = sent.into_iter().collect();
    let missing = per_campaign(promised.difference(&sent));
    let extra = per_campaign(sent.difference(&promised));
    assert!(
        missing.1.is_empty() && extra.1.is_empty(),
        "the daemon and simulate differ ({} promised, {} sent):\nmissing (first 20): {missing:#?}\nextra (first 20): {extra:#?}",
        promised.len(),
        sent.len()
    );

    // The same skip reasons, and the same sends dropped by the global cap.
    let skipped: BTreeSet<(String, String)> = exposition
        .lines()
        .filter(|line| line.starts_with("almanac_plan_skips_total{"))
        .filter(|line| !line.ends_with(" 0"))
        .map(|line| (label(line, "campaign"), label(line, "reason")))
        .collect();
    assert_eq!(skipped, promised_skips, "skip reasons differ");
    let promised_capped: BTreeMap<String, u64> = summary
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(campaign, s)| Some((campaign.clone(), s["skipped"]["global_cap"].as_u64()?)))
        .collect();
    assert_eq!(capped, promised_capped, "the global cap dropped different sends");
}

/// Pushes per campaign, and the first twenty.
fn per_campaign<'a>(
    pushes: impl Iterator<Item = &'a Push>,
) -> (BTreeMap<String, usize>, Vec<&'a Push>) {
    let pushes: Vec<&Push> = pushes.collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for push in &pushes {
        *counts.entry(push.1.clone()).or_default() += 1;
    }
    (counts, pushes.into_iter().take(20).collect())
}

/// The daemon's pushes (the `log` channel's lines on its standard output).
fn pushes(daemon: &Daemon) -> Vec<Push> {
    std::fs::read_to_string(daemon.path("stdout.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|push| {
            (
                push["member"].as_str().unwrap().to_owned(),
                push["campaign"].as_str().unwrap().to_owned(),
                push["occurrence"].as_str().unwrap().to_owned(),
                instant(push["due_at"].as_str().unwrap()),
                push["variant"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn label(line: &str, name: &str) -> String {
    let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    line[start..].split('"').next().unwrap().to_owned()
}

/// Skipped ledger rows with reason `global_cap`, per campaign.
fn ledger_capped(daemon: &Daemon) -> BTreeMap<String, u64> {
    let url = format!("sqlite:{}", daemon.path("almanac.db").display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool =
            sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT campaign_id, COUNT(*) FROM sends \
             WHERE status = 'skipped' AND last_error = 'global_cap' GROUP BY campaign_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.into_iter().map(|(campaign, n)| (campaign, n as u64)).collect()
    })
}
