//! What an operator sees of the real binary: every counter with known labels
//! exported at 0 before its first event (and again for campaigns a reload adds),
//! journald priority prefixes on stderr, the index page, `almanac_build_info`, and
//! the audit log through `GET /v1/audit` and `almanac audit`.

#[path = "daemon/support.rs"]
mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use support::{ADMIN_TOKEN, Daemon};

const CONFIG: &str = r#"
database = "sqlite:almanac.db"
campaigns_dir = "campaigns"
listen = "127.0.0.1:0"
[channels.log]
type = "log"
"#;

fn campaign(id: &str) -> String {
    format!(
        r#"id = "{id}"
name = "Operations {id}"
channel = "log"
purpose = "service"
default_lang = "zh-Hans"

[audience]
countries = ["CN"]

[timing]
trigger = "once"
date = "2031-08-01"
local_time = "10:00"

[[message]]
lang = "zh-Hans"
text = "你好。"
"#
    )
}

/// The value of the sample line `sample` (name and labels exactly as exported).
fn sample(exposition: &str, sample: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .map(|value| value.trim().parse().unwrap())
}

#[test]
fn counters_of_known_label_sets_are_exported_at_zero_before_their_first_event() {
    let daemon = Daemon::start(CONFIG, &[("ops-a.toml", &campaign("ops-a"))], "");
    let (status, exposition) = daemon.http("GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    let mut expected = vec![
        r#"almanac_wechat_token_refreshes_total{result="error"}"#.to_owned(),
        r#"almanac_wechat_token_refreshes_total{result="ok"}"#.to_owned(),
        r#"almanac_planning_failures_total{campaign="*"}"#.to_owned(),
        r#"almanac_planning_failures_total{campaign="ops-a"}"#.to_owned(),
        r#"almanac_pushes_total{campaign="ops-a",channel="log",outcome="dead"}"#.to_owned(),
        r#"almanac_quota_deferrals_total{channel="log"}"#.to_owned(),
        r#"almanac_reloads_total{result="error"}"#.to_owned(),
    ];
    for class in ["credentials", "config", "rejected", "transient", "internal"] {
        expected.push(format!(
            r#"almanac_dead_letters_by_class_total{{channel="log",class="{class}"}}"#
        ));
    }
    for series in &expected {
        assert_eq!(sample(&exposition, series), Some(0.0), "{series} not at 0 in:\n{exposition}");
    }
    if let Some((ok, report)) = support::promtool_check_metrics(&exposition) {
        assert!(ok, "promtool check metrics:\n{report}");
    }

    // A campaign added by a reload gets its series at 0 as well.
    daemon.write_campaign("ops-b.toml", &campaign("ops-b"));
    daemon.signal("HUP");
    let added = r#"almanac_planning_failures_total{campaign="ops-b"}"#;
    daemon.poll("ops-b's series after the reload", Duration::from_secs(30), |daemon| {
        let (_, exposition) = daemon.http("GET", "/metrics", &[], "");
        sample(&exposition, added) == Some(0.0)
            && sample(&exposition, r#"almanac_reloads_total{result="ok"}"#) == Some(1.0)
    });
}

#[test]
fn build_info_and_the_index_page_name_version_and_revision() {
    let daemon = Daemon::start(CONFIG, &[], "");
    let revision = env!("ALMANAC_GIT_REVISION");
    let in_git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .is_ok_and(|out| out.status.success());
    if in_git && std::env::var_os("ALMANAC_GIT_REVISION").is_none() {
        assert_ne!(revision, "unknown", "built in a git checkout");
        assert!(revision.bytes().all(|b| b.is_ascii_hexdigit()), "{revision}");
    }
    let info = format!(
        r#"almanac_build_info{{revision="{revision}",version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(daemon.metric(&info), 1.0, "{info}");

    let (status, index) = daemon.http("GET", "/", &[], "");
    assert_eq!(status, 200);
    assert!(
        index.starts_with(&format!("almanac {} (revision {revision})", env!("CARGO_PKG_VERSION"))),
        "{index}"
    );
    for path in
        ["/healthz", "/readyz", "/metrics", "/wechat/callback", "/v1/campaigns", "/v1/audit"]
    {
        assert!(index.contains(&format!(" {path}")), "{path} missing from the index:\n{index}");
    }
}

fn admin_post(daemon: &Daemon, path: &str) -> (u16, String) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    daemon.http("POST", path, &[("Authorization", &auth)], "")
}

fn audit_json(daemon: &Daemon, query: &str) -> Vec<serde_json::Value> {
    let (status, body) = daemon.admin_get(&format!("/v1/audit{query}"));
    assert_eq!(status, 200, "{query}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn almanac(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_almanac"))
        .args(args)
        .env_remove("ALMANAC_DATABASE_URL")
        .output()
        .unwrap()
}

#[test]
fn the_audit_log_through_the_admin_api_and_the_cli() {
    let daemon = Daemon::start(CONFIG, &[("ops-a.toml", &campaign("ops-a"))], "");
    assert_eq!(admin_post(&daemon, "/v1/campaigns/ops-a/pause").0, 200);
    assert_eq!(admin_post(&daemon, "/v1/campaigns/ops-a/resume").0, 200);

    let all = audit_json(&daemon, "");
    let actions: Vec<&str> = all.iter().map(|entry| entry["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["resume", "pause"], "newest first: {all:?}");
    assert_eq!(all[0]["actor"], "admin-api");
    assert_eq!(all[0]["target"], "ops-a");
    let at = all[1]["at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(at).unwrap();

    let newest = audit_json(&daemon, "?limit=1");
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["action"], "resume");
    let since_pause = audit_json(&daemon, &format!("?since={}", at.replace('+', "%2B")));
    assert_eq!(since_pause.len(), 2, "{since_pause:?}");
    assert!(audit_json(&daemon, "?since=2999-01-01T00:00:00Z&limit=5").is_empty());

    for (query, needle) in [
        ("?limit=0", "limit must be a whole number from 1 to 1000"),
        ("?limit=1001", "limit must be a whole number from 1 to 1000"),
        ("?limit=ten", "not \"ten\""),
        ("?limit=", "limit must be"),
        ("?since=yesterday", "since must be an RFC 3339 instant"),
        ("?since=2026-12-01", "since must be an RFC 3339 instant"),
        ("?until=2026-12-01T00:00:00Z", "unknown query parameter \"until\""),
    ] {
        let (status, body) = daemon.admin_get(&format!("/v1/audit{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(needle), "{query}: {message}");
    }
    let (status, _) = daemon.http("GET", "/v1/audit", &[], "");
    assert_eq!(status, 401, "the audit log needs the admin token");

    // The CLI reads the same log from the database.
    let database = format!("sqlite:{}", daemon.path("almanac.db").display());
    let out = almanac(&["audit", "--database", &database, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, all);

    let out = almanac(&["audit", "--database", &database, "--limit", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("AT ") && lines[0].contains("ACTION"), "{table}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[1..], ["admin-api", "resume", "ops-a"], "{table}");

    for (args, needle) in [
        (&["--limit", "0"][..], "--limit"),
        (&["--limit", "x"][..], "--limit"),
        (&["--since", "yesterday"][..], "--since"),
    ] {
        let mut full = vec!["audit", "--database", &database];
        full.extend_from_slice(args);
        let out = almanac(&full);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// A configuration that logs a WARN at start (no admin token).
const WARNING_CONFIG: &str = r#"
database = "sqlite:almanac.db"
campaigns_dir = "campaigns"
listen = "127.0.0.1:0"
admin_token_env = "ALMANAC_TEST_UNSET_TOKEN"
[channels.log]
type = "log"
"#;

fn line<'a>(log: &'a str, needle: &str) -> &'a str {
    log.lines().find(|line| line.contains(needle)).unwrap_or_else(|| panic!("{needle}:\n{log}"))
}

#[test]
fn under_journald_each_line_carries_its_syslog_priority() {
    let daemon = Daemon::start_with_journal_stream(WARNING_CONFIG, &[], "", |stderr| {
        format!("{}:{}", stderr.dev(), stderr.ino())
    });
    let log = daemon.log();
    let warning = line(&log, "No admin token configured");
    assert!(warning.starts_with("<4>") && warning.contains("WARN"), "{warning}");
    let info = line(&log, "Starting almanac.");
    assert!(info.starts_with("<6>") && info.contains("INFO"), "{info}");
    assert!(log.lines().all(|line| line.starts_with('<')), "{log}");

    // JSON lines get the prefix too; journald strips it and stores the JSON.
    let json = format!("log_format = \"json\"\n{WARNING_CONFIG}");
    let daemon = Daemon::start_with_journal_stream(&json, &[], "", |stderr| {
        format!("{}:{}", stderr.dev(), stderr.ino())
    });
    let log = daemon.log();
    let warning = line(&log, "No admin token configured");
    let object: serde_json::Value = serde_json::from_str(warning.strip_prefix("<4>").unwrap())
        .unwrap_or_else(|error| panic!("{error}: {warning}"));
    assert_eq!(object["level"], "WARN", "{warning}");
    assert!(line(&log, "Starting almanac.").starts_with("<6>{"), "{log}");
}

#[test]
fn without_journald_lines_have_no_prefix() {
    // JOURNAL_STREAM of another stream (a child whose stderr was redirected).
    let other = Daemon::start_with_journal_stream(WARNING_CONFIG, &[], "", |stderr| {
        format!("{}:{}", stderr.dev(), stderr.ino() + 1)
    });
    let unset = Daemon::start(WARNING_CONFIG, &[], "");
    for daemon in [other, unset] {
        let log = daemon.log();
        let warning = line(&log, "No admin token configured");
        assert!(warning.trim_start().starts_with("WARN"), "{warning}");
        assert!(!log.lines().any(|line| line.starts_with('<')), "{log}");
    }
}
