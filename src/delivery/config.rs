//! Channel configuration: the `[channels.<name>]` tables of `almanac.toml`, tagged
//! by `type = "log" | "webhook" | "wechat"`, and secret references. Secrets are
//! named (`secret_env = "VAR"` or `secret_file = "name"`, relative to systemd's
//! `$CREDENTIALS_DIRECTORY`), never written inline and never logged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Error, Result};

/// One channel, as configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChannelConfig {
    /// One JSON line per push on stdout (demos, dry runs).
    Log(LogConfig),
    /// HTTP POST of a signed JSON body.
    Webhook(WebhookConfig),
    /// WeChat Official Account template (or customer-service) messages.
    Wechat(WechatConfig),
}

/// `type = "log"`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Pushes per second through this channel (unlimited when absent).
    #[serde(default)]
    pub rate_per_second: Option<u32>,
}

/// `type = "webhook"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// Environment variable holding the HMAC secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Credential file holding the HMAC secret (relative to `$CREDENTIALS_DIRECTORY`).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Request timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts before a push is dead-lettered.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay in milliseconds (doubles each attempt, with jitter).
    #[serde(default)]
    pub backoff_ms: Option<u64>,
    /// Longest retry delay in milliseconds.
    #[serde(default)]
    pub max_backoff_ms: Option<u64>,
    /// Longest `Retry-After` honored, in milliseconds (default one hour); a
    /// receiver asking for a longer wait dead-letters the push with the reason
    /// `retry_after_too_long`.
    #[serde(default)]
    pub max_retry_after_ms: Option<u64>,
    /// Pushes per second through this channel (unlimited when absent).
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    /// Requests in flight through this channel at most (the dispatcher's when absent).
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// `type = "wechat"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatConfig {
    /// The Official Account's AppID.
    pub appid: String,
    /// Environment variable holding the AppSecret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Credential file holding the AppSecret (relative to `$CREDENTIALS_DIRECTORY`).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Template id for `message/template/send`.
    pub template_id: String,
    /// The template keyword that carries the rendered text (e.g. `thing1`).
    #[serde(default = "default_text_key")]
    pub text_key: String,
    /// Link opened when the member taps the message.
    #[serde(default)]
    pub url: Option<String>,
    /// API base (`https://api.weixin.qq.com`; a fake in tests).
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Template messages per Asia/Shanghai day; past it, pushes wait for the next day.
    #[serde(default = "default_daily_quota")]
    pub daily_quota: u64,
    /// Send a customer-service text instead of a template when the member's last
    /// interaction is within 48 h.
    #[serde(default = "default_true")]
    pub customer_service: bool,
    /// Request timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts before a push is dead-lettered.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay in milliseconds (doubles each attempt, with jitter).
    #[serde(default)]
    pub backoff_ms: Option<u64>,
    /// Longest retry delay in milliseconds.
    #[serde(default)]
    pub max_backoff_ms: Option<u64>,
    /// Calls per second to WeChat (unlimited when absent).
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    /// Requests in flight at most (the dispatcher's when absent).
    #[serde(default)]
    pub concurrency: Option<usize>,
}

fn default_timeout_ms() -> u64 {
    5_000
}
fn default_text_key() -> String {
    "thing1".into()
}
fn default_api_base() -> String {
    "https://api.weixin.qq.com".into()
}
fn default_daily_quota() -> u64 {
    100_000
}
fn default_true() -> bool {
    true
}

impl ChannelConfig {
    /// The channel's `secret_file` when it is a systemd credential (a relative
    /// name, read from `$CREDENTIALS_DIRECTORY`).
    pub fn credential(&self) -> Option<&Path> {
        let file = match self {
            ChannelConfig::Log(_) => None,
            ChannelConfig::Webhook(hook) => hook.secret_file.as_deref(),
            ChannelConfig::Wechat(wechat) => wechat.secret_file.as_deref(),
        };
        file.filter(|file| file.is_relative())
    }

    /// Values out of range, as `(key, what was expected)`; the keys are those of
    /// the channel's table. Nothing is clamped silently: `almanac check` and the
    /// daemon's configuration loader report each of these.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let (rate, limits) = match self {
            ChannelConfig::Log(log) => (log.rate_per_second, None),
            ChannelConfig::Webhook(hook) => (
                hook.rate_per_second,
                Some((
                    hook.timeout_ms,
                    hook.max_attempts,
                    hook.backoff_ms,
                    hook.max_backoff_ms,
                    hook.concurrency,
                )),
            ),
            ChannelConfig::Wechat(wechat) => (
                wechat.rate_per_second,
                Some((
                    wechat.timeout_ms,
                    wechat.max_attempts,
                    wechat.backoff_ms,
                    wechat.max_backoff_ms,
                    wechat.concurrency,
                )),
            ),
        };
        if rate == Some(0) {
            problems.push((
                "rate_per_second",
                "must be at least 1 (leave it out for no limit)".to_owned(),
            ));
        }
        if let Some((timeout_ms, max_attempts, backoff_ms, max_backoff_ms, concurrency)) = limits {
            if timeout_ms == 0 {
                problems.push(("timeout_ms", "must be at least 1 millisecond".to_owned()));
            }
            if max_attempts == Some(0) {
                problems.push(("max_attempts", "must be at least 1 attempt".to_owned()));
            }
            if concurrency == Some(0) {
                problems.push((
                    "concurrency",
                    "must be at least 1 (leave it out for the dispatcher's)".to_owned(),
                ));
            }
            if let (Some(base), Some(max)) = (backoff_ms, max_backoff_ms)
                && base > max
            {
                problems.push((
                    "backoff_ms",
                    format!("is {base}, above max_backoff_ms = {max}: expected at most that"),
                ));
            }
        }
        if let ChannelConfig::Wechat(wechat) = self
            && wechat.daily_quota == 0
        {
            problems.push(("daily_quota", "must be at least 1 message a day".to_owned()));
        }
        problems
    }
}

impl WebhookConfig {
    /// The timeout as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Where secrets come from: the process environment and systemd's credentials
/// directory. Tests pass their own lookup.
pub trait SecretSource: Send + Sync {
    /// The value of an environment variable.
    fn env(&self, name: &str) -> Option<String>;
    /// `$CREDENTIALS_DIRECTORY`, if set.
    fn credentials_dir(&self) -> Option<PathBuf>;
}

/// Secrets from the real environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessSecrets;

impl SecretSource for ProcessSecrets {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn credentials_dir(&self) -> Option<PathBuf> {
        std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
    }
}

/// Resolves a secret reference. `None` when neither field is set; an error naming
/// the channel and the reference (never the value) when it cannot be read.
pub fn resolve_secret(
    channel: &str,
    secret_env: Option<&str>,
    secret_file: Option<&Path>,
    source: &dyn SecretSource,
) -> Result<Option<String>> {
    let config_error = |reason: String| Error::Config { channel: channel.to_owned(), reason };
    match (secret_env, secret_file) {
        (Some(_), Some(_)) => {
            Err(config_error("set one of secret_env and secret_file, not both".into()))
        }
        (None, None) => Ok(None),
        (Some(var), None) => match source.env(var) {
            Some(value) if !value.trim().is_empty() => Ok(Some(value.trim().to_owned())),
            _ => Err(config_error(format!("environment variable {var} is unset or empty"))),
        },
        (None, Some(file)) => {
            let path = if file.is_absolute() {
                file.to_path_buf()
            } else {
                let dir = source.credentials_dir().ok_or_else(|| {
                    config_error(format!(
                        "secret_file {} is relative but CREDENTIALS_DIRECTORY is unset",
                        file.display()
                    ))
                })?;
                dir.join(file)
            };
            let value = std::fs::read_to_string(&path).map_err(|error| {
                config_error(format!("cannot read secret_file {}: {error}", path.display()))
            })?;
            let value = value.trim();
            if value.is_empty() {
                return Err(config_error(format!("secret_file {} is empty", path.display())));
            }
            Ok(Some(value.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Deserialize)]
    struct File {
        channels: BTreeMap<String, ChannelConfig>,
    }

    #[test]
    fn channels_deserialize_by_type() {
        let text = r#"
[channels.demo]
type = "log"

[channels.crm]
type = "webhook"
url = "http://127.0.0.1:9/hook"
secret_env = "CRM_HOOK_SECRET"
timeout_ms = 800

[channels.wechat-main]
type = "wechat"
appid = "wx123"
secret_file = "wechat-secret"
template_id = "tpl"
daily_quota = 5
"#;
        let file: File = toml::from_str(text).unwrap();
        assert_eq!(file.channels["demo"], ChannelConfig::Log(LogConfig::default()));
        let ChannelConfig::Webhook(hook) = &file.channels["crm"] else { panic!("webhook") };
        assert_eq!(hook.timeout(), Duration::from_millis(800));
        assert_eq!(hook.secret_env.as_deref(), Some("CRM_HOOK_SECRET"));
        let ChannelConfig::Wechat(wechat) = &file.channels["wechat-main"] else { panic!("wechat") };
        assert_eq!(wechat.daily_quota, 5);
        assert_eq!(wechat.api_base, "https://api.weixin.qq.com");
        assert_eq!(wechat.text_key, "thing1");
    }

    #[test]
    fn unknown_fields_and_inline_secrets_are_rejected_with_a_position() {
        let text = "[channels.crm]\ntype = \"webhook\"\nurl = \"http://x\"\nsecret = \"hunter2\"\n";
        let error = toml::from_str::<File>(text).err().expect("must fail").to_string();
        assert!(error.contains("unknown field `secret`"), "{error}");
        assert!(error.contains("line"), "{error}");
        let text = "[channels.x]\ntype = \"sms\"\n";
        let error = toml::from_str::<File>(text).err().expect("must fail").to_string();
        assert!(error.contains("sms"), "{error}");
    }

    struct Fixed(Option<PathBuf>);
    impl SecretSource for Fixed {
        fn env(&self, name: &str) -> Option<String> {
            (name == "SET").then(|| "s3cret\n".to_owned())
        }
        fn credentials_dir(&self) -> Option<PathBuf> {
            self.0.clone()
        }
    }

    #[test]
    fn secrets_resolve_from_env_and_credentials_without_leaking() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook"), "from-file\n").unwrap();
        let source = Fixed(Some(dir.path().to_path_buf()));
        assert_eq!(resolve_secret("c", Some("SET"), None, &source).unwrap().unwrap(), "s3cret");
        let from_file = resolve_secret("c", None, Some(Path::new("hook")), &source).unwrap();
        assert_eq!(from_file.as_deref(), Some("from-file"));
        let error = resolve_secret("c", Some("UNSET"), None, &source).unwrap_err().to_string();
        assert!(error.contains("UNSET") && error.contains("\"c\""), "{error}");
        let error = resolve_secret("c", None, Some(Path::new("hook")), &Fixed(None))
            .unwrap_err()
            .to_string();
        assert!(error.contains("CREDENTIALS_DIRECTORY"), "{error}");
        assert!(resolve_secret("c", Some("SET"), Some(Path::new("x")), &source).is_err());
    }
}
