//! Running the real `almanac run` binary for delivery end-to-end tests: a member
//! file, a `once` campaign that is due as soon as it is planned, an `almanac.toml`
//! pointing at a webhook sink, processes on their own loopback ports, and
//! `/metrics` scraping. Include with `#[path = "common/almanac_proc.rs"]`.
// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use chrono_tz::Asia::Shanghai;

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `count` members in Harbin, JSON lines.
pub fn members_jsonl(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "{{\"external_id\":\"m{i:06}\",\"name\":\"会员{i}\",\"city\":\"Harbin\",\
                 \"openid\":\"openid-{i}\"}}\n"
            )
        })
        .collect()
}

/// A `once` campaign whose local date-time (Asia/Shanghai, Harbin's zone) was ten
/// minutes ago, inside a one-day window and a one-hour `catch_up` (it fell due
/// before the daemon first saw it): every member is due at once.
pub fn campaign_due_now(id: &str, channel: &str) -> String {
    let local = (Utc::now() - ChronoDuration::minutes(10)).with_timezone(&Shanghai);
    format!(
        r#"id = "{id}"
name = "Delivery end-to-end {id}"
channel = "{channel}"
purpose = "service"
default_lang = "zh-Hans"

[audience]
countries = ["CN"]

[timing]
trigger = "once"
date = "{}"
local_time = "{}"
window = "1d"
catch_up = "1h"

[[message]]
lang = "zh-Hans"
text = "{{{{ name }}}}，天气转凉，记得保湿。"
"#,
        local.format("%Y-%m-%d"),
        local.format("%H:%M"),
    )
}

/// A directory with `campaigns/<id>.toml` and `members.jsonl`.
pub fn workspace(campaign_id: &str, channel: &str, members: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("campaigns")).unwrap();
    std::fs::write(
        dir.path().join("campaigns").join(format!("{campaign_id}.toml")),
        campaign_due_now(campaign_id, channel),
    )
    .unwrap();
    std::fs::write(dir.path().join("members.jsonl"), members_jsonl(members)).unwrap();
    dir
}

/// The `almanac.toml` text for a daemon on `port` posting to `sink_url`.
pub fn config(
    database: &str,
    port: u16,
    sink_url: &str,
    channel_extra: &str,
    dispatcher: &str,
) -> String {
    format!(
        r#"database = "{database}"
campaigns_dir = "campaigns"
members_file = "members.jsonl"
listen = "127.0.0.1:{port}"
shutdown_grace = "5s"

[planner]
tick = "1s"
horizon = "1h"
batch = 2000

[dispatcher]
{dispatcher}

[channels.hook]
type = "webhook"
url = "{sink_url}"
{channel_extra}
"#
    )
}

/// A running `almanac run`.
pub struct Almanac {
    /// The process.
    pub child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// Its working directory.
    pub dir: PathBuf,
    /// Log file name stem.
    pub tag: String,
}

impl Almanac {
    /// Starts `almanac run --config <config_file>` in `dir`, output to `<tag>.log`.
    pub fn spawn(dir: &Path, config_file: &str, port: u16, tag: &str) -> Almanac {
        let log = std::fs::File::create(dir.join(format!("{tag}.log"))).unwrap();
        let out = std::fs::File::create(dir.join(format!("{tag}.out"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_almanac"))
            .args(["run", "--config", config_file])
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .unwrap();
        Almanac {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: dir.to_path_buf(),
            tag: tag.into(),
        }
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.tag))).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("almanac {} exited ({status}):\n{}", self.tag, self.log());
        }
    }

    /// `GET /metrics`.
    pub async fn scrape(&self) -> String {
        let url = format!("http://{}/metrics", self.addr);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    /// Sends a signal by name (`TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").args(["-s", name, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits (polling) for the process to exit; panics with the log after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit within {limit:?}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Almanac {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sum of the samples of `name` whose labels include every `(key, value)`.
pub fn metric_sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let matches = labels
                .iter()
                .all(|(key, wanted)| label_text.contains(&format!("{key}=\"{wanted}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
