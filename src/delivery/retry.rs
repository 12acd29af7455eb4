//! Retry scheduling: exponential backoff with jitter, `Retry-After` (seconds or
//! HTTP-date), `max_attempts`, and the Asia/Shanghai day boundary that WeChat's
//! daily quotas reset on. Pure functions of the instant they are given.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use rand::Rng;

use super::Error;

/// How a channel retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (the first one included) before dead-lettering.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with each attempt.
    pub base: Duration,
    /// Longest delay between attempts.
    pub max: Duration,
    /// Longest `Retry-After` honored; a longer one dead-letters the push
    /// (`retry_after_too_long`) instead of parking it for years.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::seconds(1),
            max: Duration::hours(1),
            max_retry_after: Duration::hours(1),
        }
    }
}

/// The reason a push is dead-lettered when its receiver asks for a wait longer
/// than [`RetryPolicy::max_retry_after`].
pub const RETRY_AFTER_TOO_LONG: &str = "retry_after_too_long";

/// What to do with a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Try again at this instant.
    Retry {
        /// Next attempt.
        at: DateTime<Utc>,
        /// Bounded reason.
        reason: String,
    },
    /// Give up, with the reason.
    Dead {
        /// Bounded reason.
        reason: String,
        /// One of [`super::DEAD_LETTER_CLASSES`].
        class: &'static str,
    },
    /// The push cannot go to this member by design (no openid): skip it.
    Skip {
        /// Bounded reason.
        reason: String,
    },
    /// The member refused our messages: opt out and skip.
    OptOut {
        /// Bounded reason.
        reason: String,
    },
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1 for the first retry): `base ×
    /// 2^(attempt-1)`, capped at `max`, then drawn uniformly from its upper half
    /// (jitter spreads a burst of failures apart).
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let base_ms = self.base.num_milliseconds().max(1);
        let ceiling_ms = base_ms.saturating_mul(1_i64 << exponent).min(self.max.num_milliseconds());
        let ceiling_ms = ceiling_ms.max(1);
        let floor_ms = ceiling_ms / 2;
        Duration::milliseconds(rng.random_range(floor_ms..=ceiling_ms))
    }

    /// Decides what follows a failed attempt. `attempts_before` is the number of
    /// attempts made before the one that failed.
    pub fn decide(
        &self,
        error: &Error,
        attempts_before: u32,
        now: DateTime<Utc>,
        rng: &mut impl Rng,
    ) -> Decision {
        let reason = error.reason();
        if error.is_opt_out() {
            return Decision::OptOut { reason };
        }
        if error.is_skip() {
            return Decision::Skip { reason };
        }
        let attempts = attempts_before.saturating_add(1);
        if !error.is_retriable() || attempts >= self.max_attempts {
            return Decision::Dead { reason, class: error.class() };
        }
        let delay = match (error, error.retry_after()) {
            (Error::WeChat { code: 45011, .. }, _) => Duration::seconds(60),
            (_, Some(asked)) if asked > self.max_retry_after => {
                return Decision::Dead { reason: RETRY_AFTER_TOO_LONG.into(), class: "transient" };
            }
            (_, Some(asked)) => asked,
            (_, None) => self.backoff(attempts, rng),
        };
        Decision::Retry { at: now + delay, reason }
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date, relative to `now`
/// (a date in the past means "now").
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Any number of digits: a value past i64 is "forever", not "absent".
        let seconds = value.parse::<i64>().unwrap_or(i64::MAX);
        return Some(Duration::try_seconds(seconds).unwrap_or(Duration::MAX));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.to_utc();
    Some((at - now).max(Duration::zero()))
}

/// The next midnight in Asia/Shanghai strictly after `now` (WeChat quotas reset then).
pub fn next_shanghai_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = now.with_timezone(&Shanghai).date_naive() + Duration::days(1);
    // China has no daylight-saving time, so local midnight always exists once.
    Shanghai
        .from_local_datetime(&tomorrow.and_time(NaiveTime::MIN))
        .earliest()
        .map(|local| local.to_utc())
        .unwrap_or(now + Duration::days(1))
}

/// The Asia/Shanghai calendar date of `now` (the quota day).
pub fn shanghai_day(now: DateTime<Utc>) -> chrono::NaiveDate {
    now.with_timezone(&Shanghai).date_naive()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn backoff_doubles_within_its_jitter_band_and_caps() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::seconds(1),
            max: Duration::seconds(30),
            max_retry_after: Duration::hours(1),
        };
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=8 {
            let ceiling = (1_i64 << (attempt - 1)).min(30) * 1000;
            for _ in 0..50 {
                let delay = policy.backoff(attempt, &mut rng).num_milliseconds();
                assert!(delay >= ceiling / 2 && delay <= ceiling, "{attempt}: {delay}");
            }
        }
        let draws: std::collections::HashSet<_> =
            (0..20).map(|_| policy.backoff(3, &mut rng)).collect();
        assert!(draws.len() > 1, "jitter must vary the delay");
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = at("2026-11-22T10:00:00Z");
        assert_eq!(parse_retry_after("120", now), Some(Duration::seconds(120)));
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:00:30 GMT", now),
            Some(Duration::seconds(30))
        );
        assert_eq!(parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now), Some(Duration::zero()));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("4294967295", now), Some(Duration::seconds(4_294_967_295)));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(Duration::MAX));
    }

    #[test]
    fn a_retry_after_past_the_cap_dead_letters() {
        let policy = RetryPolicy::default();
        let now = at("2026-11-22T10:00:00Z");
        let mut rng = StdRng::seed_from_u64(1);
        let asked =
            |seconds| Error::Http { status: 429, retry_after: Some(Duration::seconds(seconds)) };
        assert_eq!(
            policy.decide(&asked(4_294_967_295), 0, now, &mut rng),
            Decision::Dead { reason: RETRY_AFTER_TOO_LONG.into(), class: "transient" }
        );
        let forever = Error::Http { status: 503, retry_after: Some(Duration::MAX) };
        assert!(matches!(policy.decide(&forever, 0, now, &mut rng), Decision::Dead { .. }));
        assert_eq!(
            policy.decide(&asked(3600), 0, now, &mut rng),
            Decision::Retry { at: now + Duration::hours(1), reason: "http_429".into() }
        );
    }

    #[test]
    fn decisions_retry_then_die_and_honor_retry_after() {
        let policy = RetryPolicy::default();
        let now = at("2026-11-22T10:00:00Z");
        let mut rng = StdRng::seed_from_u64(1);
        let throttled = Error::Http { status: 429, retry_after: Some(Duration::seconds(42)) };
        assert_eq!(
            policy.decide(&throttled, 0, now, &mut rng),
            Decision::Retry { at: now + Duration::seconds(42), reason: "http_429".into() }
        );
        let failed = Error::Http { status: 500, retry_after: None };
        assert!(matches!(policy.decide(&failed, 3, now, &mut rng), Decision::Retry { .. }));
        assert_eq!(
            policy.decide(&failed, 4, now, &mut rng),
            Decision::Dead { reason: "http_500".into(), class: "transient" }
        );
        let bad = Error::Http { status: 400, retry_after: None };
        assert_eq!(
            policy.decide(&bad, 0, now, &mut rng),
            Decision::Dead { reason: "http_400".into(), class: "rejected" }
        );
        let refused = Error::WeChat { code: 43004, message: String::new() };
        assert_eq!(
            policy.decide(&refused, 0, now, &mut rng),
            Decision::OptOut { reason: "wechat_43004".into() }
        );
    }

    #[test]
    fn shanghai_midnight_is_16_utc() {
        assert_eq!(next_shanghai_midnight(at("2026-11-22T10:00:00Z")), at("2026-11-22T16:00:00Z"));
        assert_eq!(next_shanghai_midnight(at("2026-11-22T16:00:00Z")), at("2026-11-23T16:00:00Z"));
        assert_eq!(next_shanghai_midnight(at("2026-11-22T15:59:59Z")), at("2026-11-22T16:00:00Z"));
    }
}
