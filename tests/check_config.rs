//! `almanac check --config FILE [PATHS]` through the real binary: the deployment
//! as `almanac run --config FILE` loads it. Every problem of the configuration in
//! one run (out-of-range values are reported, not clamped), the secrets it names,
//! the campaigns against its channels, and the daemon refusing what check refuses.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A campaign on channel `channel` that `almanac check` alone accepts.
fn campaign(channel: &str) -> String {
    format!(
        r#"id = "digest"
name = "Digest"
channel = "{channel}"
default_lang = "en"

[timing]
trigger = "cron"
cron = "0 10 * * MON"

[[message]]
lang = "en"
text = "Hello {{{{ name }}}}"
"#
    )
}

/// A configuration with a `log` channel and a webhook reading its secret from
/// the credential `hook-secret`; `extra` goes at the top level first.
fn config(extra: &str) -> String {
    format!(
        r#"database = "sqlite:almanac.db"
campaigns_dir = "campaigns"
{extra}

[channels.log]
type = "log"

[channels.hook]
type = "webhook"
url = "http://127.0.0.1:9/push"
secret_file = "hook-secret"
"#
    )
}

/// A deployment directory: `almanac.toml`, `campaigns/digest.toml` on
/// `channel`, and `credentials/hook-secret`.
fn deployment(config_text: &str, channel: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("almanac.toml"), config_text).unwrap();
    std::fs::create_dir(dir.path().join("campaigns")).unwrap();
    std::fs::write(dir.path().join("campaigns/digest.toml"), campaign(channel)).unwrap();
    std::fs::create_dir(dir.path().join("credentials")).unwrap();
    std::fs::write(dir.path().join("credentials/hook-secret"), "s3cret\n").unwrap();
    dir
}

/// `almanac <args>` in `dir` with `CREDENTIALS_DIRECTORY=<dir>/credentials`.
fn almanac(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_almanac"))
        .current_dir(dir)
        .args(args)
        .env("CREDENTIALS_DIRECTORY", dir.join("credentials"))
        .env("NO_COLOR", "1")
        .env_remove("ALMANAC_ADMIN_TOKEN")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run almanac")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_valid_deployment_passes_and_checks_the_configured_campaigns_dir() {
    let dir = deployment(&config(""), "hook");
    let output = almanac(dir.path(), &["check", "--config", "almanac.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    // The configuration and the one campaign of its campaigns_dir.
    assert!(text(&output).contains("checked 2 files: 0 errors"), "{}", text(&output));
    assert!(text(&output).contains("1 campaign valid"), "{}", text(&output));
}

#[test]
fn every_configuration_problem_is_reported_at_once_with_its_place() {
    let bad = config(
        "members_file = \"missing.jsonl\"\n\n[dispatcher]\nconcurrency = 100\nmax_unrecorded = 10\n\
         poll_ms = 1000\n",
    )
    .replace("secret_file = \"hook-secret\"", "secret_file = \"no-such-secret\"\nmax_attempts = 0");
    let dir = deployment(&bad, "hook");
    let output = almanac(dir.path(), &["check", "--config", "almanac.toml", "--format", "github"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let out = text(&output);
    for expected in [
        "file=almanac.toml,line=7,col=18::dispatcher.max_unrecorded: is 10, below concurrency = 100",
        "file=almanac.toml,line=8,col=11::dispatcher.poll_ms: is 1000, expected 1 to 200",
        "file=almanac.toml,line=18,col=16::channels.hook.max_attempts: must be at least 1",
        "file=almanac.toml,line=3,col=16::cannot read the member file missing.jsonl",
        "file=almanac.toml,line=17,col=15::channel \"hook\": cannot read secret_file",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert_eq!(out.lines().filter(|line| line.starts_with("::error")).count(), 5, "{out}");
}

#[test]
fn a_campaign_on_an_undefined_channel_fails_check_with_the_config() {
    let dir = deployment(&config(""), "crm");
    // Alone, the campaign file is valid...
    let alone = almanac(dir.path(), &["check", "campaigns"]);
    assert_eq!(alone.status.code(), Some(0), "{}", text(&alone));
    // ...but this deployment does not define its channel, and the daemon would refuse it.
    let output = almanac(dir.path(), &["check", "--config", "almanac.toml", "campaigns"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let out = text(&output);
    assert!(
        out.contains(
            "campaign \"digest\" uses channel \"crm\", which almanac.toml does not define \
             (configured: hook, log)"
        ),
        "{out}"
    );
    assert!(out.contains("campaigns/digest.toml:3:11"), "{out}");
}

#[test]
fn secrets_must_be_present_readable_and_not_empty() {
    let dir = deployment(&config(""), "hook");
    std::fs::write(dir.path().join("credentials/hook-secret"), "\n").unwrap();
    std::fs::write(dir.path().join("credentials/admin-token"), "").unwrap();
    let output = almanac(dir.path(), &["check", "--config", "almanac.toml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let out = text(&output);
    assert!(out.contains("secret_file") && out.contains("hook-secret is empty"), "{out}");
    assert!(out.contains("secret admin-token: credential file"), "{out}");

    std::fs::write(dir.path().join("credentials/hook-secret"), "s3cret").unwrap();
    std::fs::remove_file(dir.path().join("credentials/admin-token")).unwrap();
    let outside = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .current_dir(dir.path())
        .args(["check", "--config", "almanac.toml"])
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    // Run by hand, outside the unit: the credentials cannot be read, so they are
    // warned about, not failed (the unit's ExecStartPre= checks them).
    assert_eq!(outside.status.code(), Some(0), "{}", text(&outside));
    assert!(
        text(&outside).contains(
            "warning: channel \"hook\": secret_file hook-secret is a systemd credential and \
             CREDENTIALS_DIRECTORY is unset: not checked here"
        ),
        "{}",
        text(&outside)
    );
}

#[test]
fn the_daemon_refuses_what_check_refuses() {
    let bad = config(
        "listen = \"127.0.0.1:0\"\n\n[dispatcher]\nconcurrency = 100\nmax_unrecorded = 10\n",
    );
    let dir = deployment(&bad, "hook");
    let check = almanac(dir.path(), &["check", "--config", "almanac.toml"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    let mut run = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .current_dir(dir.path())
        .args(["run", "--config", "almanac.toml"])
        .env("CREDENTIALS_DIRECTORY", dir.path().join("credentials"))
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            run.kill().unwrap();
            panic!("the daemon started with max_unrecorded below concurrency");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::io::read_to_string(run.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("almanac.toml:7:18: dispatcher.max_unrecorded: is 10, below concurrency"),
        "{stderr}"
    );
}

#[test]
fn safe_mode_needs_a_well_formed_encoding_aes_key() {
    let safe = config("\n[wechat_callback]\nmode = \"safe\"\napp_id = \"wx5823bf96d3bd56c7\"\n");
    let dir = deployment(&safe, "hook");
    std::fs::write(dir.path().join("credentials/wechat-callback-token"), "cbtoken\n").unwrap();
    let output = almanac(dir.path(), &["check", "--config", "almanac.toml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let out = text(&output);
    assert!(out.contains("almanac.toml:5:8"), "points at mode: {out}");
    assert!(out.contains("needs the EncodingAESKey"), "{out}");

    std::fs::write(dir.path().join("credentials/wechat-encoding-aes-key"), "too-short\n").unwrap();
    let out = text(&almanac(dir.path(), &["check", "--config", "almanac.toml"]));
    assert!(out.contains("43 characters") && out.contains("it has 9"), "{out}");

    let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    std::fs::write(dir.path().join("credentials/wechat-encoding-aes-key"), key).unwrap();
    let output = almanac(dir.path(), &["check", "--config", "almanac.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
}
