//! Delivery: everything between a claimed ledger row and the outside world.
//!
//! - [`config`]: the `[channels.<name>]` tables of `almanac.toml` ([`ChannelConfig`]) and
//!   secret references (`secret_env`, `secret_file`; never inline, never logged).
//! - [`channel`]: the configured channels ([`Channels`]), each with its rate limiter,
//!   concurrency limit and retry policy; [`Channels::attempt`] sends one row and turns
//!   the result into a ledger [`Outcome`](crate::store::Outcome).
//! - [`webhook`], [`wechat`], [`log`]: the three channel kinds.
//! - [`pause`]: a channel paused by an account-level error, its probes and resumption.
//! - [`retry`]: backoff with jitter, `Retry-After`, the Asia/Shanghai quota day.
//! - [`dispatcher`]: claims due rows under a lease, sends them with bounded
//!   concurrency, records outcomes in batches, stops gracefully.
//!
//! Stopping safely: a push is in the ledger before it is sent; a row is only marked
//! once the channel answered, and a dispatcher slot is freed only after its outcome is
//! committed, so a crash can resend at most `concurrency` pushes, each with the same
//! `Idempotency-Key` (webhook) or `client_msg_id` (WeChat) as the original.

pub mod channel;
pub mod config;
pub mod dispatcher;
pub mod log;
pub mod pause;
pub mod retry;
pub mod webhook;
pub mod wechat;

pub use channel::{Attempt, Channels};
pub use config::ChannelConfig;
pub use dispatcher::{DispatchStats, Dispatcher, DispatcherConfig, DispatcherHandle};

/// Delivery errors. [`Error::is_retriable`] decides between retry and dead letter;
/// [`Error::reason`] is the bounded vocabulary used in the ledger and in metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request did not complete within the channel's timeout.
    #[error("timeout")]
    Timeout,
    /// The connection failed (refused, reset, DNS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// A non-2xx HTTP status.
    #[error("http status {status}")]
    Http {
        /// The status code.
        status: u16,
        /// The `Retry-After` header, as a delay from the response instant.
        retry_after: Option<chrono::Duration>,
    },
    /// WeChat answered with `errcode != 0` (possibly with HTTP 200).
    #[error("wechat errcode {code}: {message}")]
    WeChat {
        /// `errcode`.
        code: i64,
        /// `errmsg` (changes over time; never branch on it).
        message: String,
    },
    /// Getting a WeChat access token failed with this errcode.
    #[error("wechat access token: errcode {code}: {message}")]
    Token {
        /// `errcode` of `cgi-bin/stable_token`.
        code: i64,
        /// `errmsg`.
        message: String,
    },
    /// A 2xx response whose body could not be understood.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The channel's daily quota is used up; the push waits for the next day.
    #[error("daily quota used up")]
    QuotaExhausted,
    /// The member has no WeChat openid.
    #[error("member has no openid")]
    NoOpenid,
    /// The row names a channel that is not configured.
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    /// A channel's configuration is invalid.
    #[error("channel {channel:?}: {reason}")]
    Config {
        /// Channel name.
        channel: String,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// The ledger could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

/// WeChat codes meaning the member does not want (or cannot get) our messages:
/// 43004 not following, 43019 blacklisted us, 43101 refused the message.
pub const WECHAT_OPT_OUT_CODES: &[i64] = &[43004, 43019, 43101];

/// WeChat codes meaning the access token must be refreshed (40001 invalid or not
/// latest, 40014 invalid, 42001 expired).
pub const WECHAT_TOKEN_CODES: &[i64] = &[40001, 40014, 42001];

/// The classes of dead letters ([`Error::class`]), a label of
/// `almanac_dead_letters_by_class_total`: `credentials` (the channel's secret, token
/// or IP whitelist: every push fails), `config` (a channel or row the daemon cannot
/// use), `rejected` (the provider refused this push: a 4xx, a WeChat errcode),
/// `transient` (retries used up on timeouts, connection errors, 5xx, throttling),
/// `internal` (the ledger).
pub const DEAD_LETTER_CLASSES: &[&str] =
    &["credentials", "config", "rejected", "transient", "internal"];

/// WeChat send codes that fail every push of the account alike: 40164 caller IP
/// not on the allow-list, 41001 access token missing, 48001 API not authorised
/// for the account, and the token codes (40001, 40014, 42001), which reach the
/// dispatcher only when the token fetched again right after was refused too.
pub const WECHAT_ACCOUNT_CODES: &[i64] = &[40164, 41001, 48001, 40001, 40014, 42001];

/// `stable_token` codes that no retry of one push can fix: 40001 and 40125 wrong
/// AppSecret, 40013 invalid AppID, 40164 caller IP not on the allow-list, 41002
/// and 41004 AppID or AppSecret missing, 48001 API not authorised.
pub const WECHAT_TOKEN_ACCOUNT_CODES: &[i64] = &[40001, 40125, 40013, 40164, 41002, 41004, 48001];

impl Error {
    /// Whether the error is the channel's, not the push's: the account or the
    /// receiver refuses every push alike (a WeChat account-level errcode, a
    /// webhook answering 401 or 403). The dispatcher pauses the channel and
    /// leaves the push pending instead of spending an attempt on it.
    pub fn is_account_level(&self) -> bool {
        match self {
            Self::Http { status, .. } => matches!(status, 401 | 403),
            Self::WeChat { code, .. } => WECHAT_ACCOUNT_CODES.contains(code),
            Self::Token { code, .. } => WECHAT_TOKEN_ACCOUNT_CODES.contains(code),
            _ => false,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Timeout
            | Self::Connect(_)
            | Self::InvalidResponse(_)
            | Self::Token { .. }
            | Self::QuotaExhausted => true,
            Self::Http { status, .. } => matches!(status, 408 | 425 | 429 | 500..=599),
            Self::WeChat { code, .. } => {
                matches!(code, -1 | 45009 | 45011 | 45047) || WECHAT_TOKEN_CODES.contains(code)
            }
            Self::NoOpenid | Self::UnknownChannel(_) | Self::Config { .. } | Self::Store(_) => {
                false
            }
        }
    }

    /// Whether the push must wait for the quota day to end (our own count, or
    /// WeChat's 45009 "daily API quota reached").
    pub fn is_quota(&self) -> bool {
        matches!(self, Self::QuotaExhausted | Self::WeChat { code: 45009, .. })
    }

    /// Whether the push cannot go to this member on this channel by design (no
    /// openid): a skip, not a failure.
    pub fn is_skip(&self) -> bool {
        matches!(self, Self::NoOpenid)
    }

    /// The bounded class of a push given up on this error, one of
    /// [`DEAD_LETTER_CLASSES`].
    pub fn class(&self) -> &'static str {
        match self {
            Self::Token { .. } | Self::Http { status: 401 | 403, .. } => "credentials",
            Self::WeChat { code, .. } if WECHAT_TOKEN_CODES.contains(code) => "credentials",
            Self::UnknownChannel(_) | Self::Config { .. } | Self::NoOpenid => "config",
            Self::Store(_) => "internal",
            error if error.is_retriable() => "transient",
            Self::Http { .. } | Self::WeChat { .. } => "rejected",
            Self::Timeout | Self::Connect(_) | Self::InvalidResponse(_) | Self::QuotaExhausted => {
                "transient"
            }
        }
    }

    /// Whether the member refused our messages (opt them out, never push again).
    pub fn is_opt_out(&self) -> bool {
        matches!(self, Self::WeChat { code, .. } if WECHAT_OPT_OUT_CODES.contains(code))
    }

    /// The server's requested delay, if it gave one.
    pub fn retry_after(&self) -> Option<chrono::Duration> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The bounded reason recorded in the ledger and used as a metrics label:
    /// `timeout`, `connect`, `http_<status>`, `wechat_<errcode>`,
    /// `wechat_token_<errcode>`, `invalid_response`, `daily_quota`, `no_openid`, `unknown_channel`,
    /// `config`, `store`.
    pub fn reason(&self) -> String {
        match self {
            Self::Timeout => "timeout".into(),
            Self::Connect(_) => "connect".into(),
            Self::Http { status, .. } => format!("http_{status}"),
            Self::WeChat { code, .. } => format!("wechat_{code}"),
            Self::Token { code, .. } => format!("wechat_token_{code}"),
            Self::InvalidResponse(_) => "invalid_response".into(),
            Self::QuotaExhausted => "daily_quota".into(),
            Self::NoOpenid => "no_openid".into(),
            Self::UnknownChannel(_) => "unknown_channel".into(),
            Self::Config { .. } => "config".into(),
            Self::Store(_) => "store".into(),
        }
    }

    /// Maps a reqwest error to a delivery error (timeouts kept apart).
    pub(crate) fn from_reqwest(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_decode() || error.is_body() {
            Self::InvalidResponse(error.to_string())
        } else {
            Self::Connect(error.to_string())
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_wechat_table() {
        let wechat = |code| Error::WeChat { code, message: String::new() };
        for code in [-1, 40001, 42001, 40014, 45009, 45011, 45047] {
            assert!(wechat(code).is_retriable(), "{code} should be retriable");
        }
        for code in [40003, 40037, 47003, 48001, 43004] {
            assert!(!wechat(code).is_retriable(), "{code} should not be retriable");
        }
        assert!(wechat(43004).is_opt_out() && wechat(43101).is_opt_out());
        assert!(!wechat(45009).is_opt_out());
        assert_eq!(wechat(45009).reason(), "wechat_45009");
    }

    #[test]
    fn dead_letters_fall_into_bounded_classes() {
        let token = Error::Token { code: 40164, message: "invalid ip".into() };
        assert_eq!(token.class(), "credentials");
        let wechat = |code| Error::WeChat { code, message: String::new() };
        assert_eq!(wechat(42001).class(), "credentials");
        assert_eq!(wechat(40037).class(), "rejected");
        assert_eq!(wechat(45011).class(), "transient");
        let http = |status| Error::Http { status, retry_after: None };
        assert_eq!(http(403).class(), "credentials");
        assert_eq!(http(404).class(), "rejected");
        assert_eq!(http(503).class(), "transient");
        assert_eq!(Error::Timeout.class(), "transient");
        assert_eq!(Error::UnknownChannel("x".into()).class(), "config");
        for error in [token, wechat(40037), http(503), Error::UnknownChannel("x".into())] {
            assert!(DEAD_LETTER_CLASSES.contains(&error.class()), "{error}");
        }
        assert!(Error::NoOpenid.is_skip() && !Error::Timeout.is_skip());
    }

    #[test]
    fn account_level_errors_are_the_channels_not_the_pushs() {
        let wechat = |code| Error::WeChat { code, message: String::new() };
        let token = |code| Error::Token { code, message: String::new() };
        let http = |status| Error::Http { status, retry_after: None };
        for code in [40164, 41001, 48001, 40001, 42001] {
            assert!(wechat(code).is_account_level(), "send {code}");
        }
        for code in [40164, 40125, 40013, 40001] {
            assert!(token(code).is_account_level(), "token {code}");
        }
        assert!(http(401).is_account_level() && http(403).is_account_level());
        for error in [
            wechat(-1),
            wechat(40003),
            wechat(43004),
            wechat(45009),
            wechat(47003),
            token(-1),
            token(45009),
            http(404),
            http(500),
            Error::Timeout,
            Error::QuotaExhausted,
        ] {
            assert!(!error.is_account_level(), "{error}");
        }
    }

    #[test]
    fn http_statuses_split_into_transient_and_permanent() {
        let http = |status| Error::Http { status, retry_after: None };
        assert!(http(500).is_retriable() && http(503).is_retriable() && http(429).is_retriable());
        assert!(!http(400).is_retriable() && !http(404).is_retriable());
        assert_eq!(http(500).reason(), "http_500");
        assert!(Error::Timeout.is_retriable());
        assert_eq!(Error::Timeout.reason(), "timeout");
    }
}
