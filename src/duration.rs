//! Durations as written in campaign files, `almanac.toml` and on the command
//! line: one grammar, one parser, and the upper bound of every key that takes one.
//!
//! # Grammar
//!
//! One or more `<number><unit>` parts, summed, without spaces: `500ms`, `45s`,
//! `30m`, `12h`, `7d`, `2w`, `1d12h`. Units: `ms` (milliseconds), `s`, `m`
//! (minutes), `h`, `d` (24 hours), `w` (7 days). [`PATTERN`] is the same
//! grammar as a regular expression (the campaign JSON Schema uses it).
//!
//! # Bounds
//!
//! [`parse`] takes the key's maximum, so a file can never hold a duration that
//! overflows date arithmetic or makes the engine plan over centuries. The
//! maxima are the `MAX_*` constants below; README and docs/campaigns.md list them. Whether zero is
//! allowed is the key's own rule (most require longer than zero).

use std::time::Duration;

/// The grammar as a regular expression (anchored).
pub const PATTERN: &str = "^([0-9]+(ms|s|m|h|d|w))+$";

/// The grammar in words, for error messages.
pub const SYNTAX: &str = "`<number><unit>` parts with units ms, s, m, h, d, w \
                          (e.g. `500ms`, `30m`, `12h`, `7d`, `2w`, `1d12h`)";

const DAY: u64 = 86_400;

/// Campaign `window`: how long an occurrence stays open (one year: a climate
/// campaign recurs yearly).
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * DAY);
/// Campaign `catch_up` (also at most the campaign's `window`).
pub const MAX_CATCH_UP: Duration = MAX_WINDOW;
/// Campaign `spread` (also at most the campaign's `window`).
pub const MAX_SPREAD: Duration = Duration::from_secs(31 * DAY);
/// `[frequency] per`, the global cap's period.
pub const MAX_CAP_PERIOD: Duration = Duration::from_secs(31 * DAY);
/// `[planner] horizon`.
pub const MAX_HORIZON: Duration = Duration::from_secs(7 * DAY);
/// `[planner] tick`.
pub const MAX_TICK: Duration = Duration::from_secs(3600);
/// `shutdown_grace`.
pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(3600);
/// `[wechat_callback] max_clock_skew`.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(3600);
/// `[retention] ledger`.
pub const MAX_RETENTION: Duration = Duration::from_secs(3660 * DAY);
/// `[http] header_timeout`.
pub const MAX_HEADER_TIMEOUT: Duration = Duration::from_secs(300);
/// `[http] idle_timeout`.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a text is not a duration within its key's bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Nothing was written.
    #[error("empty duration; expected {SYNTAX}")]
    Empty,
    /// A part does not start with a number (a sign, a space, a letter).
    #[error("`{text}` is not a duration; expected {SYNTAX}")]
    Syntax {
        /// The text as written.
        text: String,
    },
    /// The text ends with a number.
    #[error("`{text}` lacks a unit after `{number}`; expected {SYNTAX}")]
    MissingUnit {
        /// The text as written.
        text: String,
        /// The trailing number.
        number: String,
    },
    /// A unit that is not one of the grammar's.
    #[error("unknown unit `{unit}` in `{text}`; expected {SYNTAX}")]
    UnknownUnit {
        /// The text as written.
        text: String,
        /// The unit as written.
        unit: String,
    },
    /// Longer than the key allows.
    #[error("`{text}` is longer than the maximum, {}", format(*.max))]
    TooLong {
        /// The text as written.
        text: String,
        /// The key's maximum.
        max: Duration,
    },
}

/// Parses `text` (see the module docs for the grammar); longer than `max` is an
/// error naming the maximum.
pub fn parse(text: &str, max: Duration) -> Result<Duration, Error> {
    if text.is_empty() {
        return Err(Error::Empty);
    }
    let too_long = || Error::TooLong { text: text.to_string(), max };
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(Error::Syntax { text: text.to_string() });
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let millis: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "" => {
                return Err(Error::MissingUnit {
                    text: text.to_string(),
                    number: number.to_string(),
                });
            }
            _ => {
                return Err(Error::UnknownUnit { text: text.to_string(), unit: unit.to_string() });
            }
        };
        // More digits than a u128 holds is longer than any maximum.
        let number: u128 = number.parse().map_err(|_| too_long())?;
        total = number
            .checked_mul(millis)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(too_long)?;
        rest = after;
    }
    if total > max.as_millis() {
        return Err(too_long());
    }
    // At most `max`, which is a `Duration`: the millisecond count fits in a u64.
    Ok(Duration::from_millis(u64::try_from(total).map_err(|_| too_long())?))
}

/// [`parse`] into a `chrono::Duration` (campaign keys and the global cap).
pub fn parse_chrono(text: &str, max: Duration) -> Result<chrono::Duration, Error> {
    let duration = parse(text, max)?;
    chrono::Duration::from_std(duration).map_err(|_| Error::TooLong { text: text.to_string(), max })
}

/// A duration in the grammar, largest units first, without weeks: `366d`,
/// `1d12h`, `500ms`, `0s`.
pub fn format(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if millis >= size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

/// Deserializes a duration string at most `max` long (serde's custom error
/// carries the value's position, so TOML errors name its line and column).
pub fn deserialize<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    max: Duration,
) -> Result<Duration, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(deserializer)?;
    parse(&text, max).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = MAX_RETENTION;

    #[test]
    fn the_grammar() {
        let ok = |text: &str| parse(text, LONG).unwrap();
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("45s"), Duration::from_secs(45));
        assert_eq!(ok("30m"), Duration::from_secs(1800));
        assert_eq!(ok("12h"), Duration::from_secs(12 * 3600));
        assert_eq!(ok("7d"), Duration::from_secs(7 * DAY));
        assert_eq!(ok("2w"), Duration::from_secs(14 * DAY));
        assert_eq!(ok("1d12h"), Duration::from_secs(36 * 3600));
        assert_eq!(ok("1h30m15s250ms"), Duration::from_millis(5_415_250));
        assert_eq!(ok("0s"), Duration::ZERO);
        for bad in ["", "7", "d", "-1d", "1.5h", "7 d", " 7d", "7d ", "7y", "1M", "7D", "1d12"] {
            assert!(parse(bad, LONG).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(parse("7y", LONG), Err(Error::UnknownUnit { unit, .. }) if unit == "y"));
        assert!(
            matches!(parse("1d12", LONG), Err(Error::MissingUnit { number, .. }) if number == "12")
        );
    }

    proptest::proptest! {
        /// Every text the schema's pattern matches parses (or is only too long).
        #[test]
        fn every_text_the_pattern_matches_parses(
            text in proptest::string::string_regex(
                PATTERN.trim_start_matches('^').trim_end_matches('$')
            ).unwrap()
        ) {
            let parsed = parse(&text, Duration::MAX);
            proptest::prop_assert!(
                matches!(parsed, Ok(_) | Err(Error::TooLong { .. })),
                "{text:?}: {parsed:?}"
            );
        }
    }

    #[test]
    fn bounds_hold_whatever_the_digits() {
        assert_eq!(parse("366d", MAX_WINDOW), Ok(MAX_WINDOW));
        for huge in [
            "367d",
            "9999999999999s",
            "99999999999999999999999999999999999999999w",
            "1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w1w",
        ] {
            let error = parse(huge, MAX_WINDOW).unwrap_err();
            assert!(matches!(error, Error::TooLong { .. }), "{huge}: {error}");
            assert!(error.to_string().ends_with("longer than the maximum, 366d"), "{error}");
        }
        let digits = "9".repeat(60) + "s";
        assert!(matches!(parse(&digits, MAX_WINDOW), Err(Error::TooLong { .. })));
    }

    #[test]
    fn format_round_trips() {
        for text in ["366d", "1d12h", "500ms", "0s", "1h30m15s250ms", "31d"] {
            assert_eq!(format(parse(text, LONG).unwrap()), text);
        }
    }
}
