//! End-to-end: the real `almanac run` binary under a demo clock, with a real
//! SQLite ledger, a slow webhook sink, a `NOTIFY_SOCKET`, real signals and real
//! HTTP. One daemon goes through its whole life: readiness, `/metrics` accepted by
//! `promtool`, health, admin auth, WeChat callback signatures, reload on SIGHUP and
//! on a file change, a broken file keeping the old campaigns, and a graceful stop
//! on SIGTERM that loses no push and leaves nothing claimed.

#[path = "daemon/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{CALLBACK_TOKEN, Daemon, Sink};

const MEMBERS: usize = 40;

fn campaign(id: &str) -> String {
    format!(
        r#"id = "{id}"
name = "End-to-end {id}"
channel = "sink"
purpose = "service"
default_lang = "zh-Hans"

[audience]
countries = ["CN"]

[timing]
trigger = "once"
date = "2027-08-01"
local_time = "10:00"
window = "7d"
# e2e-b is added at run time, after 10:00: it catches up what fell due before it was loaded.
catch_up = "1d"

[[message]]
lang = "zh-Hans"
text = "{{{{ name }}}}，你好。"
"#
    )
}

fn members() -> String {
    (1..=MEMBERS)
        .map(|i| {
            format!(
                "{{\"external_id\":\"m{i:03}\",\"name\":\"会员{i}\",\"city\":\"Harbin\",\
                 \"openid\":\"openid-{i}\",\"tags\":[\"skincare\"]}}\n"
            )
        })
        .collect()
}

fn config(sink: &Sink) -> String {
    format!(
        r#"database = "sqlite:almanac.db"
campaigns_dir = "campaigns"
members_file = "members.jsonl"
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[planner]
tick = "1s"
horizon = "1d"

[channels.sink]
type = "webhook"
url = "http://{}/hook"
concurrency = 1
timeout_ms = 5000

# 10:00 in Harbin (Asia/Shanghai) is 02:00Z: due one virtual minute after start,
# one real second at 60x.
[demo]
start = 2027-08-01T01:59:00Z
speed = 60.0
"#,
        sink.addr
    )
}

fn campaign_ids(daemon: &Daemon) -> Vec<String> {
    let (status, body) = daemon.admin_get("/v1/campaigns");
    assert_eq!(status, 200, "{body}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    list.iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn daemon_lifecycle() {
    let sink = Sink::start(Duration::from_millis(400));
    let mut daemon =
        Daemon::start(&config(&sink), &[("e2e-a.toml", &campaign("e2e-a"))], &members());

    // /metrics is a valid exposition.
    let (status, exposition) = daemon.http("GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(exposition.contains("almanac_build_info"), "{exposition}");
    if let Some((ok, report)) = support::promtool_check_metrics(&exposition) {
        assert!(ok, "promtool check metrics rejected /metrics:\n{report}\n{exposition}");
    }
    assert_eq!(daemon.http("GET", "/healthz", &[], "").0, 200);
    let (status, body) = daemon.http("GET", "/readyz", &[], "");
    assert_eq!(status, 200, "{body}");
    assert!(daemon.metric("almanac_members") >= MEMBERS as f64);

    // Admin API: no token, a wrong token, the right one.
    let (status, _) = daemon.http("GET", "/v1/campaigns", &[], "");
    assert_eq!(status, 401);
    let (status, _) =
        daemon.http("POST", "/v1/campaigns/e2e-a/pause", &[("Authorization", "Bearer nope")], "");
    assert_eq!(status, 401);
    assert_eq!(
        daemon.metric("almanac_http_rejected_total{endpoint=\"admin\",reason=\"unauthorized\"}"),
        2.0
    );
    assert_eq!(campaign_ids(&daemon), ["e2e-a"]);

    // WeChat callback: a bad signature is refused and counted; a good one verifies.
    let xml = "<xml><ToUserName>gh</ToUserName><FromUserName>openid-1</FromUserName>\
               <CreateTime>1785542400</CreateTime><MsgType>event</MsgType>\
               <Event>unsubscribe</Event></xml>";
    let (status, _) = daemon.http(
        "POST",
        "/wechat/callback?signature=0000&timestamp=1700000000&nonce=1234567890",
        &[("Content-Type", "text/xml")],
        xml,
    );
    assert_eq!(status, 401);
    assert_eq!(
        daemon.metric(
            "almanac_http_rejected_total{endpoint=\"wechat_callback\",reason=\"bad_signature\"}"
        ),
        1.0
    );
    let good = almanac::http::wechat::signature(CALLBACK_TOKEN, "1700000000", "1234567890");
    let (status, body) = daemon.http(
        "GET",
        &format!(
            "/wechat/callback?signature={good}&timestamp=1700000000&nonce=1234567890&echostr=e42"
        ),
        &[],
        "",
    );
    assert_eq!((status, body.as_str()), (200, "e42"));
    // A correctly signed event from 2023 (a captured request replayed) is refused:
    // its timestamp is outside max_clock_skew of the daemon's clock.
    let (status, body) = daemon.http(
        "POST",
        &format!("/wechat/callback?signature={good}&timestamp=1700000000&nonce=1234567890"),
        &[],
        xml,
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("max_clock_skew"), "{body}");
    assert_eq!(
        daemon.metric(
            "almanac_http_rejected_total{endpoint=\"wechat_callback\",reason=\"stale_timestamp\"}"
        ),
        1.0
    );

    // The watchdog is fed.
    daemon.wait_notification("WATCHDOG=1", Duration::from_secs(10));

    // Reload on SIGHUP, with RELOADING=1 (and MONOTONIC_USEC) then READY=1.
    daemon.signal("HUP");
    let reloading = daemon.wait_notification("RELOADING=1", Duration::from_secs(30));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    daemon.wait_notification("READY=1", Duration::from_secs(30));
    daemon.poll("reload counted", Duration::from_secs(10), |d| {
        d.metric("almanac_reloads_total{result=\"ok\"}") >= 1.0
    });

    // Reload on a file change.
    daemon.write_campaign("e2e-b.toml", &campaign("e2e-b"));
    daemon.poll("new campaign picked up", Duration::from_secs(30), |d| {
        campaign_ids(d) == ["e2e-a", "e2e-b"]
    });
    let ok_reloads = daemon.metric("almanac_reloads_total{result=\"ok\"}");
    assert!(ok_reloads >= 2.0, "{ok_reloads}");

    // A broken file is reported; the previous campaigns keep running.
    daemon.write_campaign("e2e-c.toml", "id = \"e2e-c\"\nname = [unclosed\n");
    daemon.poll("broken reload counted", Duration::from_secs(30), |d| {
        d.metric("almanac_reloads_total{result=\"error\"}") >= 1.0
    });
    assert_eq!(campaign_ids(&daemon), ["e2e-a", "e2e-b"]);
    assert!(daemon.log().contains("e2e-c.toml:2:"), "no file:line in the log:\n{}", daemon.log());

    // The new campaign is planned for every member (the next planner tick).
    daemon.poll("e2e-b planned", Duration::from_secs(30), |d| {
        d.metric("almanac_planned_total{campaign=\"e2e-b\"}") >= MEMBERS as f64
    });

    // Pushes are flowing (slowly) when SIGTERM arrives.
    daemon.poll("first pushes acknowledged", Duration::from_secs(60), |_| sink.count() >= 3);
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}:\n{}", daemon.log());
    daemon.drain_notifications();
    assert!(
        daemon.notifications.iter().any(|n| n.contains("STOPPING=1")),
        "{:?}",
        daemon.notifications
    );

    // The ledger: nothing claimed, nothing lost.
    let rows = ledger(&daemon.path("almanac.db"));
    let by_status = rows.iter().fold(BTreeMap::<&str, usize>::new(), |mut acc, row| {
        *acc.entry(row.3.as_str()).or_default() += 1;
        acc
    });
    assert!(!by_status.contains_key("claimed"), "{by_status:?}");
    assert!(by_status.keys().all(|status| ["sent", "pending"].contains(status)), "{by_status:?}");
    // Both campaigns planned for every member.
    assert_eq!(rows.len(), 2 * MEMBERS, "{by_status:?}");
    let acknowledged = sink.acknowledged.lock().unwrap().clone();
    assert!(!acknowledged.is_empty());
    let distinct: std::collections::BTreeSet<&String> = acknowledged.iter().collect();
    assert_eq!(distinct.len(), acknowledged.len(), "a push was delivered twice: {acknowledged:?}");
    for key in &acknowledged {
        let row = rows
            .iter()
            .find(|(campaign, occurrence, member, _)| {
                format!("{campaign}:{occurrence}:{member}") == *key
            })
            .unwrap_or_else(|| panic!("acknowledged push {key} is not in the ledger"));
        assert_eq!(row.3, "sent", "push {key} was acknowledged but is {}", row.3);
    }
    assert_eq!(by_status.get("sent").copied().unwrap_or(0), acknowledged.len());
}

fn ledger(path: &std::path::Path) -> Vec<(String, String, i64, String)> {
    let url = format!("sqlite:{}", path.display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Row;
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let rows = sqlx::query("SELECT campaign_id, occurrence, member_id, status FROM sends")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.iter().map(|row| (row.get(0), row.get(1), row.get(2), row.get(3))).collect()
    })
}

/// A climate campaign whose crossing never happens in two of three cities: the
/// planner counts those members as `no_crossing` skips.
#[test]
fn climate_crossings_that_never_happen_are_counted_skips() {
    let sink = Sink::start(Duration::from_millis(1));
    let campaign = r#"id = "cool-down"
name = "Cool-down"
channel = "sink"
purpose = "service"
default_lang = "zh-Hans"

[timing]
trigger = "climate"
metric = "mean_temp_c"
crosses = "below"
threshold = 17.0
after = "07-01"
local_time = "10:00"
window = "7d"

[[message]]
lang = "zh-Hans"
text = "{{ name }}，天气转凉。"
"#;
    let members: String = [("lhasa", "拉萨"), ("sanya", "Sanya"), ("harbin", "Harbin")]
        .iter()
        .flat_map(|(id, city)| {
            (1..=3).map(move |i| {
                format!("{{\"external_id\":\"{id}-{i}\",\"name\":\"会员\",\"city\":\"{city}\"}}\n")
            })
        })
        .collect();
    // The season's search starts at 10:00 on 1 July in Beijing time, 02:00Z.
    let config = config(&sink).replace("2027-08-01T01:59:00Z", "2027-07-01T01:59:00Z");
    let mut daemon = Daemon::start(&config, &[("cool-down.toml", campaign)], &members);
    let sample = "almanac_plan_skips_total{campaign=\"cool-down\",reason=\"no_crossing\"}";
    // The watchdog pings must be read (a full NOTIFY_SOCKET blocks the daemon).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while daemon.metric(sample) < 6.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no_crossing skips not counted:\n{}",
            daemon.log()
        );
        daemon.drain_notifications();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(daemon.metric(sample), 6.0, "one skip per member and season");
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(20)).success(), "{}", daemon.log());
}
