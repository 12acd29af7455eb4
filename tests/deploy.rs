//! The files under `deploy/`: the example configuration parses with the daemon's
//! own loader, the systemd unit passes `systemd-analyze verify` against the built
//! binary, and the alert rules pass `promtool check rules` and their unit tests.

use std::path::Path;
use std::process::Command;

use almanac::config::Config;

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        eprintln!(
            "\n!!! skipped: {tool} is not installed here (.ci/run installs it, so CI runs this) !!!\n"
        );
    }
    found
}

#[test]
fn example_config_parses_with_the_real_loader() {
    let config = Config::load(&deploy("almanac.toml")).unwrap_or_else(|error| panic!("{error}"));
    assert!(config.listen.ip().is_loopback(), "the example must listen on loopback");
    assert_eq!(config.shutdown_grace, std::time::Duration::from_secs(10));
    // As shipped it starts without any secret; the other channels are commented
    // examples (tests/deploy_unit.rs checks them uncommented).
    assert_eq!(config.channels.keys().map(String::as_str).collect::<Vec<_>>(), ["log"]);
    assert!(config.demo.is_none(), "the production example must not run the demo clock");
}

#[test]
fn example_config_documents_every_top_level_key_of_the_embedded_default() {
    let text = std::fs::read_to_string(deploy("almanac.toml")).unwrap();
    for key in [
        "database",
        "campaigns_dir",
        "members_file",
        "listen",
        "admin_token_env",
        "admin_token_credential",
        "log_format",
        "shutdown_grace",
        "[planner]",
        "horizon",
        "tick",
        "[retention]",
        "[wechat_callback]",
        "[geo]",
        "[frequency]",
        "[dispatcher]",
        "[channels.",
        "[demo]",
    ] {
        assert!(text.contains(key), "deploy/almanac.toml does not mention {key}");
    }
}

#[test]
fn systemd_unit_verifies_against_the_built_binary() {
    if !have("systemd-analyze") {
        return;
    }
    let unit = std::fs::read_to_string(deploy("almanac.service")).unwrap();
    for required in [
        "Type=notify",
        "WatchdogSec=",
        "ExecStartPre=/usr/bin/almanac check --config /etc/almanac/almanac.toml",
        "ExecStart=/usr/bin/almanac run --config /etc/almanac/almanac.toml",
        "ExecReload=/usr/bin/almanac check --config /etc/almanac/almanac.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=almanac",
        "StateDirectory=almanac",
        "LoadCredential=admin-token:",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.contains(required), "almanac.service lacks {required}");
    }
    let stop: u64 = unit
        .lines()
        .find_map(|line| line.strip_prefix("TimeoutStopSec="))
        .and_then(|value| value.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec=<n>s");
    let config = Config::load(&deploy("almanac.toml")).unwrap();
    assert!(stop > config.shutdown_grace.as_secs(), "TimeoutStopSec must exceed shutdown_grace");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("almanac.service");
    std::fs::write(&path, unit.replace("/usr/bin/almanac", env!("CARGO_BIN_EXE_almanac"))).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // Unknown keys and bad values are only warnings: any output is a failure.
    assert!(stderr.trim().is_empty(), "systemd-analyze verify complained:\n{stderr}");
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    if !have("promtool") {
        return;
    }
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy("alerts.yml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let test = Command::new("promtool")
        .args(["test", "rules"])
        .arg(deploy("alerts.test.yml"))
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

#[test]
fn dashboard_is_valid_json_with_the_promised_panels() {
    let text = std::fs::read_to_string(deploy("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap())
        .filter_map(|target| target["expr"].as_str())
        .collect();
    for needed in [
        "almanac_pushes_total",
        "almanac_fire_lateness_seconds_bucket",
        "almanac_ledger_rows",
        "almanac_reloads_total",
        "almanac_dead_letters_total",
        "almanac_channel_latency_seconds_bucket",
        "almanac_wechat_token_refreshes_total",
    ] {
        assert!(exprs.iter().any(|expr| expr.contains(needed)), "no panel queries {needed}");
    }
}
