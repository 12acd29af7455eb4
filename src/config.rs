//! Daemon configuration (`almanac.toml`): database, campaigns directory, listen
//! address, secrets, logging, planner cadence, the demo clock, and the sections
//! each domain module owns the type of (`[http]`, `[geo]`, `[frequency]`,
//! `[channels.<name>]`, `[dispatcher]`). Every table rejects unknown keys, and every error names the
//! file, line and column. `deploy/almanac.toml` documents every key; a test parses
//! it with [`Config::load`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use crate::duration;

/// The configuration used when `almanac run` gets no `--config`: SQLite file
/// `almanac.db` in the working directory, `campaigns/`, the bundled sample
/// members, the `log` channel, loopback port 9464.
pub const EMBEDDED_DEFAULT: &str = r#"
database = "sqlite:almanac.db"
campaigns_dir = "campaigns"
members_file = "data/sample-members.jsonl"
listen = "127.0.0.1:9464"

[channels.log]
type = "log"
"#;

/// Configuration errors; each names the file and, for syntax and type errors, the
/// line and column.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Syntax error, unknown key or wrong type.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// File path.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// Byte range in the file, when the parser gave one.
        span: Option<Range<usize>>,
        /// What was wrong and what was expected.
        message: String,
    },
    /// Values that parsed but make no sense: every one of them, each with its place.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        /// File path.
        path: String,
        /// Each out-of-range or inconsistent value.
        problems: Vec<Problem>,
    },
}

/// One value of `almanac.toml` that parsed but is out of range or inconsistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `dispatcher.max_unrecorded`.
    pub key: String,
    /// 1-based line of the value (of its table when the key is absent).
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// Byte range of the value in the file, when it is written there.
    pub span: Option<Range<usize>>,
    /// What was wrong and what was expected.
    pub message: String,
}

fn render_problems(path: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{path}:{}:{}: {}: {}", p.line, p.column, p.key, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `almanac.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Store URL: `sqlite:PATH` (created if missing) or `postgres://…`.
    #[serde(default = "default_database")]
    pub database: String,
    /// Directory of campaign files (`*.toml`), watched for changes.
    #[serde(default = "default_campaigns_dir")]
    pub campaigns_dir: PathBuf,
    /// Member file (CSV or JSONL) upserted at start; optional.
    #[serde(default)]
    pub members_file: Option<PathBuf>,
    /// Address of the HTTP server (`/metrics`, health, admin API, WeChat callback).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Environment variable holding the admin API bearer token.
    #[serde(default = "default_admin_token_env")]
    pub admin_token_env: String,
    /// systemd credential (`LoadCredential=`) holding the admin token; preferred
    /// over the environment variable when present.
    #[serde(default = "default_admin_token_credential")]
    pub admin_token_credential: String,
    /// Log format: `plain` (journald) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// How long a graceful stop waits for in-flight pushes.
    #[serde(default = "default_shutdown_grace", deserialize_with = "shutdown_grace")]
    pub shutdown_grace: Duration,
    /// The HTTP listeners' limits and the optional admin listener (owned by `http`).
    #[serde(default)]
    pub http: crate::http::HttpSettings,
    /// Planner cadence.
    #[serde(default)]
    pub planner: PlannerConfig,
    /// Ledger retention.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The WeChat server callback (`/wechat/callback`).
    #[serde(default)]
    pub wechat_callback: crate::http::wechat::CallbackConfig,
    /// Place resolution settings (owned by `geo`).
    #[serde(default)]
    pub geo: crate::geo::GeoConfig,
    /// Global frequency cap across campaigns (owned by `timing`); absent: no cap.
    #[serde(default)]
    pub frequency: Option<crate::timing::GlobalCap>,
    /// Delivery channels by name (owned by `delivery`).
    #[serde(default)]
    pub channels: BTreeMap<String, crate::delivery::ChannelConfig>,
    /// Dispatcher batch, concurrency and lease (owned by `delivery`).
    #[serde(default)]
    pub dispatcher: crate::delivery::dispatcher::DispatcherSettings,
    /// A faster-than-real clock for demonstrations; absent in production.
    #[serde(default)]
    pub demo: Option<DemoConfig>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines without timestamps' noise beyond what journald adds.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// `[planner]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerConfig {
    /// How far ahead (on the daemon's clock) due sends are written to the ledger.
    #[serde(default = "default_horizon", deserialize_with = "horizon")]
    pub horizon: Duration,
    /// How often (real time) the planner runs.
    #[serde(default = "default_tick", deserialize_with = "tick")]
    pub tick: Duration,
    /// Members read per page.
    #[serde(default = "default_batch")]
    pub batch: i64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self { horizon: default_horizon(), tick: default_tick(), batch: default_batch() }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished ledger rows (sent, dead, skipped, holdout) older than this are deleted.
    #[serde(default = "default_retention", deserialize_with = "retention")]
    pub ledger: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { ledger: default_retention() }
    }
}

/// `[demo]`: a clock that starts at `start` and runs `speed` times real time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Virtual start instant (a TOML offset date-time).
    #[serde(deserialize_with = "instant")]
    pub start: DateTime<Utc>,
    /// Speed-up over real time (≥ 1).
    pub speed: f64,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The embedded default (see [`EMBEDDED_DEFAULT`]).
    pub fn embedded_default() -> Config {
        Self::parse(EMBEDDED_DEFAULT, "<embedded default>")
            .expect("the embedded default configuration is valid (tested)")
    }

    /// Parses and validates configuration text; `name` is used in errors.
    pub fn parse(text: &str, name: &str) -> Result<Config> {
        let (config, problems) = Self::parse_with_problems(text, name)?;
        if !problems.is_empty() {
            return Err(Error::Invalid { path: name.to_owned(), problems });
        }
        Ok(config)
    }

    /// Parses configuration text and lists every value out of range or
    /// inconsistent instead of refusing it ([`Config::parse`] refuses it), so that
    /// `almanac check` can go on to check the rest. `Err` on syntax errors, unknown
    /// keys and wrong types (the first one).
    pub fn parse_with_problems(text: &str, name: &str) -> Result<(Config, Vec<Problem>)> {
        let config: Config = toml::from_str(text).map_err(|error| {
            let span = error.span();
            let (line, column) =
                span.as_ref().map(|span| line_column(text, span.start)).unwrap_or((1, 1));
            Error::Parse {
                path: name.to_owned(),
                line,
                column,
                span,
                message: error.message().trim().to_owned(),
            }
        })?;
        let problems = config.problems(text);
        Ok((config, problems))
    }

    /// Every value out of range or inconsistent, located in `text` (the file the
    /// configuration was parsed from). Nothing is clamped silently.
    fn problems(&self, text: &str) -> Vec<Problem> {
        let mut found = Vec::new();
        let mut push = |key: &[&str], message: String| found.push(locate(text, key, message));
        if self.planner.tick.is_zero() {
            push(&["planner", "tick"], "must be longer than zero".into());
        }
        if self.planner.horizon.is_zero() {
            push(&["planner", "horizon"], "must be longer than zero".into());
        }
        if self.planner.batch <= 0 {
            push(&["planner", "batch"], "must be a positive number of members".into());
        }
        if self.shutdown_grace.is_zero() {
            push(&["shutdown_grace"], "must be longer than zero".into());
        }
        if self.retention.ledger.is_zero() {
            push(&["retention", "ledger"], "must be longer than zero".into());
        }
        if let Some(cap) = &self.frequency {
            if cap.max == 0 {
                push(&["frequency", "max"], "must be at least 1 push".into());
            }
            if cap.per.is_zero() {
                push(&["frequency", "per"], "must be longer than zero".into());
            }
        }
        if let Some(demo) = &self.demo
            && !(demo.speed.is_finite() && demo.speed >= 1.0)
        {
            push(&["demo", "speed"], "must be a number ≥ 1".into());
        }
        for (key, message) in self.http.problems(self.listen) {
            push(&["http", key], message);
        }
        for (key, message) in self.dispatcher.problems() {
            push(&["dispatcher", key], message);
        }
        if self.channels.is_empty() {
            push(&["channels"], "define at least one [channels.<name>] table".into());
        }
        for (name, channel) in &self.channels {
            for (key, message) in channel.problems() {
                push(&["channels", name.as_str(), key], message);
            }
        }
        found
    }
}

/// A [`Problem`] at `key` in `text`: the value's place, or else the nearest table
/// written in the file that holds it (a default value is not written anywhere).
pub fn locate(text: &str, key: &[&str], message: String) -> Problem {
    let span = (1..=key.len()).rev().find_map(|len| value_span(text, &key[..len]));
    let (line, column) = span.as_ref().map_or((1, 1), |span| line_column(text, span.start));
    let exact = value_span(text, key);
    Problem { key: key.join("."), line, column, span: exact.or(span), message }
}

/// Byte range of the value at the dotted `key` (`["dispatcher", "batch"]`) in the
/// TOML `text`, if it is written there.
pub fn value_span(text: &str, key: &[&str]) -> Option<Range<usize>> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let (last, parents) = key.split_last()?;
    let mut table = root.get_ref();
    for part in parents {
        match table.get(*part)?.get_ref() {
            toml::de::DeValue::Table(inner) => table = inner,
            _ => return None,
        }
    }
    Some(table.get(*last)?.span())
}

/// 1-based line and character column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn shutdown_grace<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    duration::deserialize(deserializer, duration::MAX_SHUTDOWN_GRACE)
}

fn horizon<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    duration::deserialize(deserializer, duration::MAX_HORIZON)
}

/// The planner's cadence: its scheduler counts whole seconds (a shorter or
/// fractional period would be truncated, `500ms` to never), so whole seconds it is.
fn tick<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let tick = duration::deserialize(deserializer, duration::MAX_TICK)?;
    if tick < Duration::from_secs(1) || tick.subsec_nanos() != 0 {
        return Err(serde::de::Error::custom(format!(
            "is {}: the planner runs on whole seconds, expected at least 1s in whole seconds \
             (e.g. `1s`, `30s`, `5m`)",
            duration::format(tick)
        )));
    }
    Ok(tick)
}

fn retention<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    duration::deserialize(deserializer, duration::MAX_RETENTION)
}

fn instant<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let value = toml::value::Datetime::deserialize(deserializer)?;
    if value.offset.is_none() || value.time.is_none() {
        return Err(serde::de::Error::custom(
            "expected an offset date-time such as 2027-08-01T00:00:00Z",
        ));
    }
    DateTime::parse_from_rfc3339(&value.to_string())
        .map(|instant| instant.to_utc())
        .map_err(|error| serde::de::Error::custom(format!("invalid date-time: {error}")))
}

fn default_database() -> String {
    "sqlite:almanac.db".into()
}
fn default_campaigns_dir() -> PathBuf {
    "campaigns".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_admin_token_env() -> String {
    "ALMANAC_ADMIN_TOKEN".into()
}
fn default_admin_token_credential() -> String {
    "admin-token".into()
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_horizon() -> Duration {
    Duration::from_secs(3600)
}
fn default_tick() -> Duration {
    Duration::from_secs(30)
}
fn default_batch() -> i64 {
    1000
}
fn default_retention() -> Duration {
    Duration::from_secs(90 * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let config = Config::embedded_default();
        assert_eq!(config.database, "sqlite:almanac.db");
        assert_eq!(config.listen.port(), 9464);
        assert!(config.listen.ip().is_loopback());
        assert!(config.channels.contains_key("log"));
        assert_eq!(config.planner.tick, Duration::from_secs(30));
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = "database = \"sqlite:x.db\"\n[planner]\nhorizon = \"1h\"\n  tik = \"5s\"\n";
        let error = Config::parse(text, "a.toml").unwrap_err().to_string();
        assert!(error.starts_with("a.toml:4:3: unknown field `tik`"), "{error}");
        assert!(error.contains("expected"), "{error}");
    }

    #[test]
    fn bad_duration_points_at_the_value() {
        let text = "[channels.log]\ntype = \"log\"\n[planner]\ntick = \"5 parsecs\"\n";
        let error = Config::parse(text, "a.toml").unwrap_err().to_string();
        assert!(error.starts_with("a.toml:4:8: unknown unit ` parsecs`"), "{error}");
    }

    #[test]
    fn demo_needs_an_offset_date_time() {
        let base = "[channels.log]\ntype = \"log\"\n[demo]\nspeed = 10.0\n";
        let ok = Config::parse(&format!("{base}start = 2027-08-01T00:00:00Z\n"), "a").unwrap();
        assert_eq!(ok.demo.unwrap().start.to_rfc3339(), "2027-08-01T00:00:00+00:00");
        let error = Config::parse(&format!("{base}start = 2027-08-01\n"), "a").unwrap_err();
        assert!(error.to_string().starts_with("a:5:9: expected an offset date-time"), "{error}");
    }

    #[test]
    fn durations_take_the_shared_grammar_and_their_bound() {
        let base = "[channels.log]\ntype = \"log\"\n[planner]\n";
        let parse = |planner: &str| Config::parse(&format!("{base}{planner}"), "a.toml");
        let config = parse("horizon = \"1d12h\"\ntick = \"1m30s\"\n").unwrap();
        assert_eq!(config.planner.horizon, Duration::from_secs(36 * 3600));
        assert_eq!(config.planner.tick, Duration::from_secs(90));
        // The planner's scheduler counts whole seconds: 500ms would never tick.
        for bad in ["500ms", "1s500ms", "0s"] {
            let error = parse(&format!("tick = \"{bad}\"\n")).unwrap_err().to_string();
            assert!(error.starts_with("a.toml:4:8: "), "{error}");
            assert!(error.contains("expected at least 1s in whole seconds"), "{bad}: {error}");
        }
        let error = parse("tick = \"9999999999999d\"\n").unwrap_err().to_string();
        assert!(error.starts_with("a.toml:4:8: "), "{error}");
        assert!(error.contains("longer than the maximum, 1h"), "{error}");
        let error = parse("horizon = \"8d\"\n").unwrap_err().to_string();
        assert!(error.contains("longer than the maximum, 7d"), "{error}");
    }

    #[test]
    fn callback_settings_name_the_key_and_what_is_expected() {
        let base = "[channels.log]\ntype = \"log\"\n[wechat_callback]\n";
        let parse = |callback: &str| Config::parse(&format!("{base}{callback}"), "a.toml");
        let config =
            parse("mode = \"safe\"\napp_id = \"wx1\"\nmax_clock_skew = \"90s\"\n").unwrap();
        assert_eq!(config.wechat_callback.mode, crate::http::wechat::Mode::Safe);
        assert_eq!(config.wechat_callback.max_clock_skew, Duration::from_secs(90));
        assert_eq!(
            Config::embedded_default().wechat_callback.max_clock_skew,
            Duration::from_secs(300)
        );
        let error = parse("mode = \"secret\"\n").unwrap_err().to_string();
        assert!(error.starts_with("a.toml:4:8: "), "{error}");
        assert!(error.contains("plaintext") && error.contains("safe"), "{error}");
        let error = parse("max_clock_skew = \"2h\"\n").unwrap_err().to_string();
        assert!(error.contains("longer than the maximum, 1h"), "{error}");
    }

    #[test]
    fn http_keys_parse_with_their_bounds() {
        let base = "[channels.log]\ntype = \"log\"\n[http]\n";
        let parse = |http: &str| Config::parse(&format!("{base}{http}"), "a.toml");
        let config = parse(
            "header_timeout = \"5s\"\nidle_timeout = \"2m\"\nmax_connections = 100\n\
             max_body_bytes = 65536\nadmin_listen = \"127.0.0.1:9465\"\n",
        )
        .unwrap();
        assert_eq!(config.http.header_timeout, Duration::from_secs(5));
        assert_eq!(config.http.idle_timeout, Duration::from_secs(120));
        assert_eq!(config.http.max_connections, 100);
        assert_eq!(config.http.max_body_bytes, 65536);
        assert_eq!(config.http.admin_listen, Some("127.0.0.1:9465".parse().unwrap()));
        let defaults = Config::embedded_default().http;
        assert_eq!(defaults, crate::http::HttpSettings::default());
        assert_eq!(defaults.header_timeout, Duration::from_secs(10));
        assert_eq!(defaults.admin_listen, None);
    }

    #[test]
    fn malformed_http_values_name_their_key() {
        let base = "[channels.log]\ntype = \"log\"\n[http]\n";
        let error =
            |http: &str| Config::parse(&format!("{base}{http}"), "a.toml").unwrap_err().to_string();
        let text = error("header_timeout = \"ten seconds\"\n");
        assert!(text.starts_with("a.toml:4:18: "), "{text}");
        let text = error("header_timeout = \"6m\"\n");
        assert!(text.contains("longer than the maximum, 5m"), "{text}");
        let text = error("idle_timeout = \"2h\"\n");
        assert!(text.starts_with("a.toml:4:16: ") && text.contains("1h"), "{text}");
        let text = error("max_connections = -1\n");
        assert!(text.starts_with("a.toml:4:19: "), "{text}");
        let text = error("max_connections = 0\n");
        assert_eq!(text, "a.toml:4:19: http.max_connections: is 0, expected 1 to 1000000");
        let text = error("max_body_bytes = 100\n");
        assert!(
            text.starts_with("a.toml:4:18: http.max_body_bytes: is 100, expected 1024"),
            "{text}"
        );
        let text = error("admin_listen = \"localhost\"\n");
        assert!(text.starts_with("a.toml:4:16: invalid socket address"), "{text}");
        let text = error("admin_listen = \"127.0.0.1:9464\"\n");
        assert!(
            text.starts_with("a.toml:4:16: http.admin_listen: is 127.0.0.1:9464, the same"),
            "{text}"
        );
        let text = error("max_conections = 10\n");
        assert!(text.starts_with("a.toml:4:1: unknown field `max_conections`"), "{text}");
    }
}
