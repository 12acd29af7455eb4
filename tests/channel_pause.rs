//! End-to-end: the real `almanac run` binary against the fake WeChat server with
//! the daemon's IP off the account's allow-list (every call answers 40164). The
//! pushes stay pending (none dead, no attempt charged), `/metrics` shows the
//! channel paused; once the fake answers 0 again the daemon resumes on its own and
//! sends every push exactly once.

#[path = "daemon/support.rs"]
mod support;
#[path = "wechat_fake/mod.rs"]
mod wechat_fake;

use std::collections::BTreeMap;
use std::time::Duration;

use support::Daemon;
use wechat_fake::FakeWechat;

const MEMBERS: usize = 12;
const TEMPLATE_PATH: &str = "/cgi-bin/message/template/send";

const CAMPAIGN: &str = r#"id = "pause-e2e"
name = "Channel pause"
channel = "wx"
purpose = "service"
default_lang = "zh-Hans"

[audience]
countries = ["CN"]

[timing]
trigger = "once"
date = "2027-08-01"
local_time = "10:00"
window = "7d"

[[message]]
lang = "zh-Hans"
text = "{{ name }}，你好。"
"#;

fn members() -> String {
    (1..=MEMBERS)
        .map(|i| {
            format!(
                "{{\"external_id\":\"m{i:03}\",\"name\":\"会员{i}\",\"city\":\"Harbin\",\
                 \"openid\":\"openid-{i}\"}}\n"
            )
        })
        .collect()
}

fn config(api_base: &str, secret_file: &std::path::Path) -> String {
    format!(
        r#"database = "sqlite:almanac.db"
campaigns_dir = "campaigns"
members_file = "members.jsonl"
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[planner]
tick = "1s"
horizon = "1d"

[channels.wx]
type = "wechat"
appid = "wx-app"
secret_file = "{}"
template_id = "tpl-1"
api_base = "{api_base}"
customer_service = false

# 10:00 in Harbin is 02:00Z: due one virtual minute after start, one real second
# at 60x (probe backoff runs on this clock too).
[demo]
start = 2027-08-01T01:59:00Z
speed = 60.0
"#,
        secret_file.display()
    )
}

/// The ledger's rows: status → (rows, attempts summed).
fn ledger(
    runtime: &tokio::runtime::Runtime,
    path: &std::path::Path,
) -> BTreeMap<String, (i64, i64)> {
    let url = format!("sqlite:{}", path.display());
    runtime.block_on(async {
        use sqlx::Row;
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let rows = sqlx::query(
            "SELECT status, COUNT(*), CAST(SUM(attempts) AS INTEGER) FROM sends GROUP BY status",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.iter().map(|row| (row.get(0), (row.get(1), row.get(2)))).collect()
    })
}

#[test]
fn an_account_level_error_pauses_the_channel_and_it_resumes_by_itself() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeWechat::start("wx-app", "app-secret", "tpl-1"));
    fake.refuse_ip(true);
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("wechat-secret");
    std::fs::write(&secret_file, "app-secret").unwrap();

    let daemon =
        Daemon::start(&config(&fake.api_base, &secret_file), &[("c.toml", CAMPAIGN)], &members());
    let paused = "almanac_channel_paused{channel=\"wx\"}";
    let dead = "almanac_pushes_total{campaign=\"pause-e2e\",channel=\"wx\",outcome=\"dead\"}";
    let sent = "almanac_pushes_total{campaign=\"pause-e2e\",channel=\"wx\",outcome=\"sent\"}";

    daemon
        .poll("the channel reported paused", Duration::from_secs(60), |d| d.metric(paused) == 1.0);
    // Let the pushes fall due and the probes back off a few times.
    daemon.poll("every push planned", Duration::from_secs(60), |d| {
        ledger(&runtime, &d.path("almanac.db")).values().map(|(rows, _)| rows).sum::<i64>()
            == MEMBERS as i64
    });
    daemon.poll("several probes refused", Duration::from_secs(60), |_| {
        fake.calls().iter().filter(|call| call.errcode == 40164).count() >= 6
    });
    let rows = ledger(&runtime, &daemon.path("almanac.db"));
    // Pending, but for a probe under way (and the rows claimed with it, on their
    // way back); no attempt charged.
    assert!(
        rows.keys().all(|status| ["pending", "claimed"].contains(&status.as_str())),
        "{rows:?}"
    );
    assert_eq!(rows.values().map(|(count, _)| count).sum::<i64>(), MEMBERS as i64, "{rows:?}");
    assert_eq!(rows.values().map(|(_, attempts)| attempts).sum::<i64>(), 0, "{rows:?}");
    assert_eq!(daemon.metric(dead), 0.0);
    assert_eq!(daemon.metric(paused), 1.0);
    assert!(fake.delivered().is_empty());
    let log = daemon.log();
    assert_eq!(log.matches("Channel paused").count(), 1, "logged once:\n{log}");
    assert!(log.contains("40164"), "{log}");

    fake.refuse_ip(false);
    daemon.poll("every push sent", Duration::from_secs(60), |d| d.metric(sent) == MEMBERS as f64);
    daemon
        .poll("the channel reported resumed", Duration::from_secs(10), |d| d.metric(paused) == 0.0);
    let rows = ledger(&runtime, &daemon.path("almanac.db"));
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["sent"], "{rows:?}");
    let mut delivered: Vec<String> = fake.delivered().into_iter().map(|d| d.touser).collect();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), MEMBERS, "every member once");
    assert_eq!(fake.delivered().len(), MEMBERS, "none twice");
    assert_eq!(fake.duplicates_dropped(), 0);
    assert!(fake.calls_to(TEMPLATE_PATH).iter().any(|call| call.errcode == 0));
    assert_eq!(daemon.metric(dead), 0.0);
    let log = daemon.log();
    assert_eq!(log.matches("Channel resumed").count(), 1, "logged once:\n{log}");
}
