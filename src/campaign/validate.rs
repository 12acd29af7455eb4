//! Semantic checks: turns a [`RawCampaign`] into a [`Campaign`], collecting every
//! problem as a [`Diagnostic`] that points at the offending value.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _};
use toml::Spanned;

use super::diagnostic::{Diagnostic, LineIndex, Severity};
use super::lang::canonical_lang;
use super::model::*;
use super::raw::*;
use super::{PlaceNames, TEMPLATE_FIELDS};
use crate::duration::{MAX_CATCH_UP, MAX_SPREAD, MAX_WINDOW};

/// Collects diagnostics for one file.
pub(crate) struct Checker<'a> {
    pub(crate) file: &'a Path,
    pub(crate) source: &'a str,
    /// Line starts of `source`, for every diagnostic's line and column.
    pub(crate) lines: LineIndex,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Keys whose wrong value was already reported and removed: not "missing".
    pub(crate) removed: Vec<String>,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(file: &'a Path, source: &'a str) -> Self {
        let lines = LineIndex::new(source);
        Checker { file, source, lines, diagnostics: Vec::new(), removed: Vec::new() }
    }

    /// The value of a required key, or an error saying it is missing. `table` is
    /// the span of the enclosing table (`None`: the file's top level).
    fn require<'r, T>(
        &mut self,
        value: &'r Option<Spanned<T>>,
        key: &str,
        table: Option<Range<usize>>,
        example: &str,
    ) -> Option<&'r Spanned<T>> {
        if value.is_none() && !self.removed.iter().any(|k| k == key) {
            let message = format!("missing required key `{key}`");
            let diagnostic = match table {
                Some(span) => {
                    let at = self.lines.line_col(self.source, span.start);
                    Diagnostic::at_line_col(
                        Severity::Error,
                        self.file,
                        self.source,
                        span,
                        at,
                        message,
                    )
                }
                None => Diagnostic::whole_file(Severity::Error, self.file, message),
            };
            let help = if example.starts_with("add ") {
                example.to_string()
            } else {
                format!("add `{example}`")
            };
            self.diagnostics.push(diagnostic.with_help(help));
        }
        value.as_ref()
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Error, span, message)
    }

    fn warning(&mut self, span: Range<usize>, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Warning, span, message)
    }

    pub(crate) fn push(
        &mut self,
        severity: Severity,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let at = self.lines.line_col(self.source, span.start);
        let diagnostic =
            Diagnostic::at_line_col(severity, self.file, self.source, span, at, message);
        self.diagnostics.push(diagnostic);
        self.diagnostics.last_mut().expect("just pushed")
    }

    fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    /// The span of a string value's contents (inside the quotes), when the TOML text
    /// holds the string verbatim (no escapes), so offsets into the string map 1:1.
    fn string_body(&self, value: &Spanned<String>) -> Option<usize> {
        let span = value.span();
        let raw = self.source.get(span.clone())?;
        for quote in ["\"\"\"", "'''", "\"", "'"] {
            if let Some(inner) = raw.strip_prefix(quote).and_then(|r| r.strip_suffix(quote)) {
                let mut start = span.start + quote.len();
                let mut inner = inner;
                if quote.len() == 3 {
                    // A newline right after the opening delimiter is trimmed by TOML.
                    if let Some(rest) = inner.strip_prefix('\n') {
                        inner = rest;
                        start += 1;
                    } else if let Some(rest) = inner.strip_prefix("\r\n") {
                        inner = rest;
                        start += 2;
                    }
                }
                return (inner == value.get_ref().as_str()).then_some(start);
            }
        }
        None
    }
}

fn help(diagnostic: &mut Diagnostic, text: impl Into<String>) {
    diagnostic.help = Some(text.into());
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Whether a channel forbids marketing content. Hook: only WeChat template channels
/// do, and channel kinds live in `almanac.toml`; until `check` reads it, every
/// channel except the embedded `log` channel is treated as one that may.
pub fn channel_may_forbid_marketing(channel: &str) -> bool {
    channel != "log"
}

/// Parses `HH:MM` (or `HH:MM:SS`).
fn parse_time(text: &str) -> Option<NaiveTime> {
    let well_formed = text.len() >= 5
        && text.as_bytes()[2] == b':'
        && text.chars().all(|c| c.is_ascii_digit() || c == ':');
    if !well_formed {
        return None;
    }
    NaiveTime::parse_from_str(text, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M:%S"))
        .ok()
}

/// Builds the domain campaign, reporting every problem. Returns `None` when any
/// error was found.
pub(crate) fn validate(
    raw: RawCampaign,
    checker: &mut Checker<'_>,
    places: Option<&dyn PlaceNames>,
) -> Option<Campaign> {
    let id = checker.require(&raw.id, "id", None, "id = \"autumn-moisturizer-2027\"");
    if let Some(id) = id {
        let text = id.get_ref();
        if text.is_empty()
            || !text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            let d = checker.error(id.span(), format!("invalid campaign id \"{text}\""));
            help(d, "use letters, digits, `-`, `_` or `.`, e.g. `autumn-moisturizer-2027`");
        }
    }
    let name = checker.require(&raw.name, "name", None, "name = \"Autumn moisturizer\"");
    if let Some(name) = name
        && name.get_ref().trim().is_empty()
    {
        let d = checker.error(name.span(), "empty campaign name");
        help(d, "give the campaign a human-readable name");
    }
    let channel = checker.require(&raw.channel, "channel", None, "channel = \"log\"");
    if let Some(channel) = channel
        && channel.get_ref().trim().is_empty()
    {
        let d = checker.error(channel.span(), "empty channel name");
        help(d, "name a channel defined in almanac.toml, e.g. `log`");
    }

    let starts = raw.starts.as_ref().and_then(|s| bound(checker, s, "starts"));
    let ends = raw.ends.as_ref().and_then(|s| bound(checker, s, "ends"));
    if let (Some(s), Some(e), Some(ss), Some(es)) = (starts, ends, &raw.starts, &raw.ends)
        && starts_not_before_ends(s, e)
    {
        let d = checker.error(
            ss.span(),
            format!("`starts` ({}) is not before `ends` ({})", ss.get_ref(), es.get_ref()),
        );
        help(d, "`starts` is inclusive and `ends` exclusive: `starts` must come first");
    }

    let purpose = match raw.purpose.as_ref().map(|p| *p.get_ref()) {
        Some(RawPurpose::Marketing) => Purpose::Marketing,
        _ => Purpose::Service,
    };
    if let (Some(p), Some(channel)) = (&raw.purpose, channel)
        && purpose == Purpose::Marketing
        && channel_may_forbid_marketing(channel.get_ref())
    {
        let d = checker.warning(
            p.span(),
            format!(
                "marketing campaign on channel `{}`: WeChat template messages must not carry marketing",
                channel.get_ref()
            ),
        );
        help(
            d,
            "if this channel is a WeChat template channel, use a service notification or another channel",
        );
    }

    let audience = audience(checker, &raw.audience, places);
    let timing = checker
        .require(
            &raw.timing,
            "timing",
            None,
            "add a [timing] table with trigger = \"once\", \"cron\" or \"climate\"",
        )
        .and_then(|t| timing(checker, t, places));
    if let (Some(Timing { trigger: Trigger::Once { at }, .. }), Some(t)) = (&timing, &raw.timing)
        && let Some(date) = &t.get_ref().date
        && !matches!((starts, ends), (Some(s), Some(e)) if starts_not_before_ends(s, e))
    {
        let before_start = starts.is_some_and(|s| starts_not_before_ends(s, Bound::Local(*at)))
            && starts != Some(Bound::Local(*at));
        let after_end = ends.is_some_and(|e| starts_not_before_ends(Bound::Local(*at), e));
        if before_start || after_end {
            let d = checker.error(
                date.span(),
                format!(
                    "the `once` date-time {at} is outside `starts`..`ends`: it would never fire"
                ),
            );
            help(d, "move `date` inside the campaign's bounds, or widen `starts`/`ends`");
        }
    }
    let limits = limits(checker, &raw.limits);
    let default_lang =
        checker.require(&raw.default_lang, "default_lang", None, "default_lang = \"zh-Hans\"");
    let (messages, default_lang) = messages(checker, &raw.messages, default_lang);

    if checker.has_errors() {
        return None;
    }
    Some(Campaign {
        id: id?.get_ref().clone(),
        name: name?.get_ref().clone(),
        enabled: raw.enabled.unwrap_or(true),
        starts,
        ends,
        channel: channel?.get_ref().clone(),
        purpose,
        priority: raw.priority.unwrap_or(0),
        audience: audience?,
        timing: timing?,
        limits,
        messages,
        default_lang: default_lang?,
        source: SourceInfo::default(),
    })
}

fn bound(
    checker: &mut Checker<'_>,
    value: &Spanned<toml::value::Datetime>,
    key: &str,
) -> Option<Bound> {
    let dt = value.get_ref();
    let Some(date) = dt.date else {
        let d = checker.error(value.span(), format!("`{key}` has a time but no date"));
        help(d, "write a date (`2027-06-01`), a local date-time or an offset date-time");
        return None;
    };
    let day = NaiveDate::from_ymd_opt(i32::from(date.year), date.month.into(), date.day.into())?;
    let time = match dt.time {
        Some(t) => NaiveTime::from_hms_nano_opt(
            t.hour.into(),
            t.minute.into(),
            t.second.into(),
            t.nanosecond,
        )?,
        None => NaiveTime::MIN,
    };
    let local = NaiveDateTime::new(day, time);
    match dt.offset {
        None => Some(Bound::Local(local)),
        Some(offset) => {
            let minutes = match offset {
                toml::value::Offset::Z => 0,
                toml::value::Offset::Custom { minutes } => i32::from(minutes),
            };
            let zone = chrono::FixedOffset::east_opt(minutes * 60)?;
            let instant = zone.from_local_datetime(&local).single()?;
            Some(Bound::Instant(instant.to_utc()))
        }
    }
}

/// Whether `starts` is not strictly before `ends`. A local bound is somewhere in
/// UTC-12..UTC+14 depending on the member; with mixed kinds only a certain
/// inversion is reported.
fn starts_not_before_ends(starts: Bound, ends: Bound) -> bool {
    let range = |b: Bound| match b {
        Bound::Instant(i) => (i.naive_utc(), i.naive_utc()),
        Bound::Local(l) => (l - chrono::Duration::hours(14), l + chrono::Duration::hours(12)),
    };
    match (starts, ends) {
        (Bound::Local(s), Bound::Local(e)) => s >= e,
        _ => range(starts).0 >= range(ends).1,
    }
}

fn audience(
    checker: &mut Checker<'_>,
    raw: &RawAudience,
    places: Option<&dyn PlaceNames>,
) -> Option<Audience> {
    for country in &raw.countries {
        let code = country.get_ref();
        if code.len() != 2 || !code.chars().all(|c| c.is_ascii_uppercase()) {
            let upper = code.to_ascii_uppercase();
            let d = checker.error(
                country.span(),
                format!(
                    "`{code}` is not an ISO 3166-1 alpha-2 country code (two uppercase letters)"
                ),
            );
            if upper.len() == 2 && upper.chars().all(|c| c.is_ascii_uppercase()) {
                help(d, format!("write `{upper}`"));
            } else {
                help(d, "e.g. `CN`, `HK`, `TW`, `SG`");
            }
        }
    }
    if let Some(places) = places {
        for city in &raw.cities {
            if let Err(message) = places.check_city(city.get_ref()) {
                checker.error(city.span(), message);
            }
        }
        for province in &raw.provinces {
            if let Err(message) = places.check_province(province.get_ref()) {
                checker.error(province.span(), message);
            }
        }
    }
    for list in [&raw.cities, &raw.provinces] {
        for name in list {
            if name.get_ref().trim().is_empty() {
                checker.error(name.span(), "empty place name");
            }
        }
    }
    let near = raw.near.as_ref().and_then(|spanned| {
        let table = Some(spanned.span());
        let near = spanned.get_ref();
        let lat = checker.require(&near.lat, "lat", table.clone(), "lat = 31.23");
        let lon = checker.require(&near.lon, "lon", table.clone(), "lon = 121.47");
        let radius = checker.require(&near.radius_km, "radius_km", table, "radius_km = 30");
        if let Some(lat) = lat
            && !(-90.0..=90.0).contains(lat.get_ref())
        {
            let d =
                checker.error(lat.span(), format!("latitude {} is outside -90..90", lat.get_ref()));
            help(d, "`lat` is degrees north, e.g. 31.23 for Shanghai");
        }
        if let Some(lon) = lon
            && !(-180.0..=180.0).contains(lon.get_ref())
        {
            let d = checker
                .error(lon.span(), format!("longitude {} is outside -180..180", lon.get_ref()));
            help(d, "`lon` is degrees east, e.g. 121.47 for Shanghai");
        }
        if let Some(radius) = radius
            && (radius.get_ref().is_nan() || *radius.get_ref() <= 0.0)
        {
            let d = checker.error(
                radius.span(),
                format!("`radius_km` must be greater than 0, found {}", radius.get_ref()),
            );
            help(d, "e.g. `radius_km = 30`");
        }
        Some(Near { lat: *lat?.get_ref(), lon: *lon?.get_ref(), radius_km: *radius?.get_ref() })
    });
    let mut languages = Vec::new();
    for lang in &raw.languages {
        match canonical_lang(lang.get_ref()) {
            Ok(tag) => languages.push(tag),
            Err(message) => {
                let d = checker.error(lang.span(), format!("malformed language tag: {message}"));
                help(d, "expected language[-script][-region], e.g. `yue`, `zh-Hans`, `en-US`");
            }
        }
    }
    let holdout = match &raw.holdout {
        Some(h) => {
            let value = *h.get_ref();
            if !(0.0..1.0).contains(&value) {
                let d = checker.error(
                    h.span(),
                    format!("`holdout` must be at least 0 and below 1, found {value}"),
                );
                help(d, "it is a share of the audience, e.g. `holdout = 0.05` for 5%");
            }
            value
        }
        None => 0.0,
    };
    // Errors were reported; `validate` returns no campaign when there are any.
    Some(Audience {
        countries: raw.countries.iter().map(|c| c.get_ref().clone()).collect(),
        provinces: raw.provinces.iter().map(|c| c.get_ref().clone()).collect(),
        cities: raw.cities.iter().map(|c| c.get_ref().clone()).collect(),
        near,
        tags_any: raw.tags_any.clone(),
        tags_all: raw.tags_all.clone(),
        tags_none: raw.tags_none.clone(),
        languages,
        holdout,
    })
}

fn time_of_day(checker: &mut Checker<'_>, value: &Spanned<String>, key: &str) -> Option<NaiveTime> {
    let parsed = parse_time(value.get_ref());
    if parsed.is_none() {
        let d = checker
            .error(value.span(), format!("`{key}` = \"{}\" is not a time of day", value.get_ref()));
        help(d, "expected `HH:MM` on a 24-hour clock, e.g. \"10:00\" or \"20:30\"");
    }
    parsed
}

/// A duration key (`window`, `spread`, ...) that must be longer than zero and
/// at most `max` (the key's bound from [`crate::duration`]); `None` after
/// reporting why not (`example` is the help for a zero or negative one).
fn positive_duration(
    checker: &mut Checker<'_>,
    value: &Spanned<String>,
    key: &str,
    max: std::time::Duration,
    example: &str,
) -> Option<chrono::Duration> {
    use crate::duration::{self, Error};
    match duration::parse_chrono(value.get_ref(), max) {
        Ok(duration) if duration > chrono::Duration::zero() => Some(duration),
        Ok(_) => {
            let d = checker.error(value.span(), format!("`{key}` must be longer than zero"));
            help(d, example);
            None
        }
        Err(error @ Error::TooLong { .. }) => {
            let d = checker.error(value.span(), format!("`{key}` is too long: {error}"));
            help(d, format!("`{key}` may be at most {}", duration::format(max)));
            None
        }
        Err(error) => {
            let d = checker.error(value.span(), format!("invalid `{key}`: {error}"));
            help(d, format!("durations are {}", duration::SYNTAX));
            None
        }
    }
}

fn trigger_name(trigger: RawTrigger) -> &'static str {
    match trigger {
        RawTrigger::Once => "once",
        RawTrigger::Cron => "cron",
        RawTrigger::Climate => "climate",
    }
}

fn timing(
    checker: &mut Checker<'_>,
    raw: &Spanned<RawTiming>,
    places: Option<&dyn PlaceNames>,
) -> Option<Timing> {
    let table_span = raw.span();
    let raw = raw.get_ref();
    let trigger = checker
        .require(
            &raw.trigger,
            "trigger",
            Some(table_span),
            "add trigger = \"once\", \"cron\" or \"climate\"",
        )
        .map(|t| trigger(checker, raw, t));
    let default_window = match raw.trigger.as_ref().map(|t| *t.get_ref()) {
        Some(RawTrigger::Cron) => CRON_DEFAULT_WINDOW,
        _ => DEFAULT_WINDOW,
    };
    let window_text = |raw: &RawTiming| match &raw.window {
        Some(window) => window.get_ref().clone(),
        None => format!("{}h, the default", default_window.num_hours()),
    };
    let window = match &raw.window {
        Some(window) => {
            positive_duration(checker, window, "window", MAX_WINDOW, "e.g. `window = \"7d\"`")
        }
        None => Some(default_window),
    };
    let catch_up = match &raw.catch_up {
        Some(catch_up) => {
            let example = "e.g. `catch_up = \"24h\"`, or remove it to send nothing that fell due \
                           before the campaign was loaded";
            match (positive_duration(checker, catch_up, "catch_up", MAX_CATCH_UP, example), window)
            {
                (Some(duration), Some(window)) if duration > window => {
                    let d = checker.error(
                        catch_up.span(),
                        format!(
                            "`catch_up` ({}) is longer than `window` ({})",
                            catch_up.get_ref(),
                            window_text(raw)
                        ),
                    );
                    help(d, "an occurrence older than `window` is never sent; raise `window` too");
                    None
                }
                (duration, _) => duration,
            }
        }
        None => Some(chrono::Duration::zero()),
    };
    let spread = match &raw.spread {
        Some(spread) => {
            let example = "e.g. `spread = \"10m\"`, or remove it to send all at once";
            match (positive_duration(checker, spread, "spread", MAX_SPREAD, example), window) {
                (Some(duration), Some(window)) if duration > window => {
                    let d = checker.error(
                        spread.span(),
                        format!(
                            "`spread` ({}) is longer than `window` ({})",
                            spread.get_ref(),
                            window_text(raw)
                        ),
                    );
                    help(d, "the last members would be sent after the occurrence closed");
                    None
                }
                (Some(duration), _) => Some(Some(duration)),
                (None, _) => None,
            }
        }
        None => Some(None),
    };

    let quiet_hours = match &raw.quiet_hours {
        Some(quiet) => {
            let q = quiet.get_ref();
            let table = Some(quiet.span());
            let start = checker
                .require(&q.start, "start", table.clone(), "start = \"22:00\"")
                .and_then(|t| time_of_day(checker, t, "quiet_hours.start"));
            let end = checker
                .require(&q.end, "end", table, "end = \"08:00\"")
                .and_then(|t| time_of_day(checker, t, "quiet_hours.end"));
            match (start, end) {
                (Some(start), Some(end)) if start == end => {
                    let d = checker.error(
                        quiet.span(),
                        "`quiet_hours` start and end are equal: the quiet period is empty",
                    );
                    help(
                        d,
                        "e.g. `quiet_hours = { start = \"22:00\", end = \"08:00\" }`, or remove it",
                    );
                    None
                }
                (Some(start), Some(end)) => Some(Some(QuietHours { start, end })),
                _ => None,
            }
        }
        None => Some(None),
    };

    let unresolved = match &raw.unresolved {
        Some(value) => unresolved(checker, value, places),
        None => Some(Unresolved::Skip),
    };

    Some(Timing {
        trigger: trigger??,
        window: window?,
        catch_up: catch_up?,
        spread: spread?,
        quiet_hours: quiet_hours?,
        unresolved: unresolved?,
    })
}

/// Checks the keys `trigger` requires and forbids, then builds it.
fn trigger(
    checker: &mut Checker<'_>,
    raw: &RawTiming,
    spanned_trigger: &Spanned<RawTrigger>,
) -> Option<Trigger> {
    let trigger = *spanned_trigger.get_ref();
    let name = trigger_name(trigger);
    let present: [(&str, Option<Range<usize>>); 7] = [
        ("date", raw.date.as_ref().map(Spanned::span)),
        ("local_time", raw.local_time.as_ref().map(Spanned::span)),
        ("cron", raw.cron.as_ref().map(Spanned::span)),
        ("metric", raw.metric.as_ref().map(Spanned::span)),
        ("crosses", raw.crosses.as_ref().map(Spanned::span)),
        ("threshold", raw.threshold.as_ref().map(Spanned::span)),
        ("after", raw.after.as_ref().map(Spanned::span)),
    ];
    let (required, example): (&[&str], &str) = match trigger {
        RawTrigger::Once => {
            (&["date", "local_time"], "date = \"2027-06-17\"\nlocal_time = \"20:00\"")
        }
        RawTrigger::Cron => (&["cron"], "cron = \"0 10 * * MON\""),
        RawTrigger::Climate => (
            &["metric", "crosses", "threshold", "after", "local_time"],
            "metric = \"mean_temp_c\"\ncrosses = \"below\"\nthreshold = 17.0\nafter = \"07-01\"\nlocal_time = \"10:00\"",
        ),
    };
    let mut ok = true;
    for (key, span) in &present {
        if let Some(span) = span
            && !required.contains(key)
        {
            ok = false;
            let users: Vec<&str> = [
                ("once", ["date", "local_time"].as_slice()),
                ("cron", ["cron"].as_slice()),
                ("climate", ["metric", "crosses", "threshold", "after", "local_time"].as_slice()),
            ]
            .iter()
            .filter(|(_, keys)| keys.contains(key))
            .map(|(t, _)| *t)
            .collect();
            let d =
                checker.error(span.clone(), format!("`{key}` is not used by trigger = \"{name}\""));
            help(
                d,
                format!(
                    "remove `{key}`, or use trigger = \"{}\" (the trigger that takes it)",
                    users.join("\" or \"")
                ),
            );
        }
    }
    let missing: Vec<&str> = required
        .iter()
        .filter(|key| present.iter().any(|(k, span)| k == *key && span.is_none()))
        .filter(|key| !checker.removed.iter().any(|r| r == *key))
        .copied()
        .collect();
    if !missing.is_empty() {
        ok = false;
        let list = missing.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
        let d = checker.error(
            spanned_trigger.span(),
            format!("trigger = \"{name}\" requires {list} in [timing]"),
        );
        help(d, format!("a complete [timing] for this trigger has:\n{example}"));
    }

    let local_time = raw.local_time.as_ref().and_then(|t| time_of_day(checker, t, "local_time"));
    let built = match trigger {
        RawTrigger::Once => {
            let date = raw.date.as_ref().and_then(|date| {
                let parsed = NaiveDate::parse_from_str(date.get_ref(), "%Y-%m-%d").ok();
                if parsed.is_none() {
                    let d = checker.error(
                        date.span(),
                        format!("`date` = \"{}\" is not a calendar date", date.get_ref()),
                    );
                    help(d, "expected `YYYY-MM-DD`, e.g. \"2027-06-17\"");
                }
                parsed
            });
            match (date, local_time) {
                (Some(date), Some(time)) => Some(Trigger::Once { at: date.and_time(time) }),
                _ => None,
            }
        }
        RawTrigger::Cron => raw.cron.as_ref().and_then(|expr| check_cron(checker, expr)),
        RawTrigger::Climate => climate(checker, raw, local_time),
    };
    if ok { built } else { None }
}

fn check_cron(checker: &mut Checker<'_>, expr: &Spanned<String>) -> Option<Trigger> {
    let text = expr.get_ref().trim();
    let fields = text.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        let d = checker.error(
            expr.span(),
            format!("cron expression `{text}` has {fields} fields, expected 5 or 6"),
        );
        help(
            d,
            "5 fields: `minute hour day-of-month month day-of-week`, e.g. \"0 10 * * MON\"; a 6th leading field is seconds",
        );
        return None;
    }
    let parser =
        croner::parser::CronParser::builder().year(croner::parser::Year::Disallowed).build();
    match parser.parse(text) {
        Ok(_) => Some(Trigger::Cron { expr: text.to_string() }),
        Err(error) => {
            let d =
                checker.error(expr.span(), format!("invalid cron expression `{text}`: {error}"));
            help(
                d,
                "fields: [second] minute hour day-of-month month day-of-week, e.g. \"0 10 * * MON\"",
            );
            None
        }
    }
}

fn climate(
    checker: &mut Checker<'_>,
    raw: &RawTiming,
    local_time: Option<NaiveTime>,
) -> Option<Trigger> {
    let metric = raw.metric.as_ref().map(|m| *m.get_ref());
    let crosses = raw.crosses.as_ref().map(|c| *c.get_ref());
    let threshold = raw.threshold.as_ref().and_then(|t| {
        let value = *t.get_ref();
        let (lo, hi, unit) = match metric? {
            RawMetric::MeanTempC => (-90.0, 60.0, "°C (mean_temp_c)"),
            RawMetric::RelHumidityPct => (0.0, 100.0, "% (rel_humidity_pct)"),
        };
        if value.is_nan() || value < lo || value > hi {
            let d = checker.error(
                t.span(),
                format!("threshold {value} is outside the physical range {lo}..{hi} {unit}"),
            );
            help(d, "the threshold is in the metric's unit, e.g. `threshold = 17.0` for 17 °C");
            return None;
        }
        Some(value)
    });
    let after = raw.after.as_ref().and_then(|after| {
        let text = after.get_ref();
        let parsed = (text.len() == 5 && text.as_bytes()[2] == b'-')
            .then(|| NaiveDate::parse_from_str(&format!("2000-{text}"), "%Y-%m-%d").ok())
            .flatten();
        if parsed.is_none() {
            let d =
                checker.error(after.span(), format!("`after` = \"{text}\" is not a month and day"));
            help(d, "expected `MM-DD`, e.g. \"07-01\" for July 1st");
        }
        parsed.map(|d| (chrono::Datelike::month(&d), chrono::Datelike::day(&d)))
    });
    Some(Trigger::Climate {
        metric: match metric? {
            RawMetric::MeanTempC => ClimateMetric::MeanTempC,
            RawMetric::RelHumidityPct => ClimateMetric::RelHumidityPct,
        },
        crosses: match crosses? {
            RawCrossing::Below => Crossing::Below,
            RawCrossing::Above => Crossing::Above,
        },
        threshold: threshold?,
        after: after?,
        local_time: local_time?,
    })
}

fn unresolved(
    checker: &mut Checker<'_>,
    value: &Spanned<toml::Value>,
    places: Option<&dyn PlaceNames>,
) -> Option<Unresolved> {
    let expected =
        "expected `\"skip\"`, `{ city = \"Shanghai\" }` or `{ zone = \"Asia/Shanghai\" }`";
    match value.get_ref() {
        toml::Value::String(word) if word == "skip" => Some(Unresolved::Skip),
        toml::Value::Table(table) if table.len() == 1 => {
            let (key, inner) = table.iter().next()?;
            let Some(text) = inner.as_str() else {
                let d = checker.error(value.span(), format!("`unresolved.{key}` must be a string"));
                help(d, expected);
                return None;
            };
            match key.as_str() {
                "city" => {
                    if let Some(places) = places
                        && let Err(message) = places.check_city(text)
                    {
                        checker.error(value.span(), message);
                        return None;
                    }
                    Some(Unresolved::FallbackCity(text.to_string()))
                }
                "zone" => match chrono_tz::Tz::from_str(text) {
                    Ok(zone) => Some(Unresolved::FallbackZone(zone)),
                    Err(_) => {
                        let d =
                            checker.error(value.span(), format!("unknown IANA time zone `{text}`"));
                        match closest(text, chrono_tz::TZ_VARIANTS.iter().map(|z| z.name())) {
                            Some(best) => help(d, format!("did you mean `{best}`?")),
                            None => {
                                help(d, "e.g. `Asia/Shanghai`, `Asia/Hong_Kong`, `Asia/Taipei`")
                            }
                        }
                        None
                    }
                },
                other => {
                    let d = checker
                        .error(value.span(), format!("unknown key `{other}` in `unresolved`"));
                    match closest(other, ["city", "zone"]) {
                        Some(best) => help(d, format!("did you mean `{best}`? {expected}")),
                        None => help(d, expected),
                    }
                    None
                }
            }
        }
        other => {
            let shown = match other {
                toml::Value::String(s) => format!("\"{s}\""),
                toml::Value::Table(_) => "a table with several keys".to_string(),
                v => format!("a {}", v.type_str()),
            };
            let d = checker.error(value.span(), format!("invalid `unresolved` policy: {shown}"));
            help(d, expected);
            None
        }
    }
}

fn limits(checker: &mut Checker<'_>, raw: &RawLimits) -> Limits {
    let mut check = |value: &Option<Spanned<i64>>, key: &str| -> Option<u32> {
        let v = value.as_ref()?;
        match u32::try_from(*v.get_ref()) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                let d = checker
                    .error(v.span(), format!("`{key}` must be at least 1, found {}", v.get_ref()));
                help(d, format!("remove `{key}` for no limit"));
                None
            }
        }
    };
    Limits {
        per_member: check(&raw.per_member, "per_member"),
        rate_per_second: check(&raw.rate_per_second, "rate_per_second"),
    }
}

fn messages(
    checker: &mut Checker<'_>,
    raw: &[Spanned<RawMessage>],
    default_lang: Option<&Spanned<String>>,
) -> (Vec<Message>, Option<String>) {
    let mut out = Vec::new();
    let mut seen: BTreeMap<(String, Option<String>), Range<usize>> = BTreeMap::new();
    for (index, spanned) in raw.iter().enumerate() {
        let table = Some(spanned.span());
        let message = spanned.get_ref();
        let raw_lang = checker.require(&message.lang, "lang", table.clone(), "lang = \"zh-Hans\"");
        let text = checker.require(&message.text, "text", table, "text = \"{{ name }}，…\"");
        let lang = raw_lang.and_then(|raw_lang| match canonical_lang(raw_lang.get_ref()) {
            Ok(tag) => Some(tag),
            Err(problem) => {
                let d =
                    checker.error(raw_lang.span(), format!("malformed language tag: {problem}"));
                help(d, "expected language[-script][-region], e.g. `yue-Hant`, `zh-Hans`, `en-US`");
                None
            }
        });
        let label = message.label.as_ref().map(|l| l.get_ref().clone());
        if let (Some(lang), Some(raw_lang)) = (&lang, raw_lang) {
            let key = (lang.clone(), label.clone());
            if let Some(first) = seen.get(&key) {
                let (line, _) = checker.lines.line_col(checker.source, first.start);
                let what = match &label {
                    Some(label) => format!("`{lang}` with label `{label}`"),
                    None => format!("`{lang}`"),
                };
                let d = checker.error(
                    raw_lang.span(),
                    format!("duplicate message for {what} (first at line {line})"),
                );
                help(d, "give A/B variants of one language distinct `label`s, or remove one");
            } else {
                seen.insert(key, raw_lang.span());
            }
        }
        let weight = match &message.weight {
            Some(w) => match u32::try_from(*w.get_ref()) {
                Ok(n) if n >= 1 => n,
                _ => {
                    let d = checker.error(
                        w.span(),
                        format!("`weight` must be at least 1, found {}", w.get_ref()),
                    );
                    help(
                        d,
                        "weights are relative shares among variants of one language, default 1",
                    );
                    1
                }
            },
            None => 1,
        };
        if let Some(text) = text {
            check_template(checker, text);
        }
        if let (Some(lang), Some(text)) = (lang, text) {
            out.push(Message {
                lang,
                text: text.get_ref().clone(),
                weight,
                label: label.unwrap_or_else(|| index.to_string()),
            });
        }
    }

    let Some(default_lang) = default_lang else {
        return (out, None);
    };
    let default = match canonical_lang(default_lang.get_ref()) {
        Ok(tag) => tag,
        Err(problem) => {
            let d =
                checker.error(default_lang.span(), format!("malformed language tag: {problem}"));
            help(d, "expected language[-script][-region], e.g. `zh-Hans`");
            return (out, None);
        }
    };
    if raw.is_empty() {
        if !checker.removed.iter().any(|k| k == "message") {
            let d = checker
                .error(default_lang.span(), "no [[message]]: the campaign has nothing to send");
            help(d, format!("add a [[message]] table with lang = \"{default}\" and a text"));
        }
    } else if !out.iter().any(|m| m.lang == default) && raw.len() == out.len() {
        let d = checker.error(
            default_lang.span(),
            format!("no fallback message: no [[message]] has lang = \"{default}\""),
        );
        let langs: BTreeSet<String> = out.iter().map(|m| format!("\"{}\"", m.lang)).collect();
        help(
            d,
            format!(
                "add a [[message]] with lang = \"{default}\", or set default_lang to one of {}",
                langs.into_iter().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    (out, Some(default))
}

/// Instructions a trial render may execute before it is abandoned (no finding).
const TRIAL_RENDER_FUEL: u64 = 50_000;

/// minijinja's global functions, which templates may call (listed once).
fn template_globals() -> &'static HashSet<String> {
    static GLOBALS: std::sync::LazyLock<HashSet<String>> = std::sync::LazyLock::new(|| {
        minijinja::Environment::new().globals().map(|(name, _)| name.to_string()).collect()
    });
    &GLOBALS
}

fn check_template(checker: &mut Checker<'_>, text: &Spanned<String>) {
    let body = checker.string_body(text);
    let mut env = minijinja::Environment::new();
    // The trial render (unknown filters) must stay cheap whatever the template loops over.
    env.set_fuel(Some(TRIAL_RENDER_FUEL));
    let template = match env.template_from_str(text.get_ref()) {
        Ok(template) => template,
        Err(error) => {
            let span = match (body, error.range()) {
                (Some(start), Some(range)) => {
                    start + range.start..start + range.end.max(range.start + 1)
                }
                _ => text.span(),
            };
            let detail = error.detail().unwrap_or("syntax error");
            let d = checker.error(span, format!("template syntax error: {detail}"));
            help(
                d,
                "templates use minijinja (Jinja2) syntax: `{{ name }}`, `{% if city %}…{% endif %}`",
            );
            return;
        }
    };
    let globals = template_globals();
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !TEMPLATE_FIELDS.contains(&v.as_str()) && !globals.contains(v))
        .collect();
    unknown.sort();
    for variable in unknown {
        let span = match body
            .and_then(|start| find_identifier(text.get_ref(), &variable).map(|i| start + i))
        {
            Some(at) => at..at + variable.len(),
            None => text.span(),
        };
        let d =
            checker.error(span, format!("template uses `{variable}`, which is not a member field"));
        let fields = TEMPLATE_FIELDS.join(", ");
        match closest(&variable, TEMPLATE_FIELDS.iter().copied()) {
            Some(best) => help(d, format!("did you mean `{best}`? available: {fields}")),
            None => help(d, format!("available: {fields} (free attributes as `attrs.<key>`)")),
        }
    }
    check_template_names(checker, &template, text, body);
}

/// Filters, tests and functions are looked up when the template runs, so a trial
/// render with sample member fields finds unknown ones (in the branches it takes).
fn check_template_names(
    checker: &mut Checker<'_>,
    template: &minijinja::Template<'_, '_>,
    text: &Spanned<String>,
    body: Option<usize>,
) {
    let mut context: BTreeMap<&str, minijinja::Value> =
        TEMPLATE_FIELDS.iter().map(|field| (*field, minijinja::Value::from(*field))).collect();
    context.insert("attrs", minijinja::Value::from(BTreeMap::<String, String>::new()));
    let Err(error) = template.render(context) else { return };
    use minijinja::ErrorKind;
    if !matches!(
        error.kind(),
        ErrorKind::UnknownFilter
            | ErrorKind::UnknownTest
            | ErrorKind::UnknownFunction
            | ErrorKind::UnknownMethod
    ) {
        return;
    }
    let span = match (body, error.range()) {
        (Some(start), Some(range)) => start + range.start..start + range.end.max(range.start + 1),
        _ => text.span(),
    };
    let d = checker.error(span, format!("template error: {}", error.kind()));
    help(
        d,
        "minijinja's built-in filters include `upper`, `lower`, `title`, `trim`, `default`, `replace`, `truncate`",
    );
}

/// Byte offset of the first whole-word occurrence of `word` inside a `{{ }}` or
/// `{% %}` block of `text`.
fn find_identifier(text: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut search_from = 0;
    while let Some(found) = text[search_from..].find(word) {
        let at = search_from + found;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let in_block = text[..at].rfind("{{").max(text[..at].rfind("{%"))
            > text[..at].rfind("}}").max(text[..at].rfind("%}"));
        if !before.is_some_and(is_ident)
            && !after.is_some_and(is_ident)
            && before != Some('.')
            && in_block
        {
            return Some(at);
        }
        search_from = at + word.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("10:00"), NaiveTime::from_hms_opt(10, 0, 0));
        assert_eq!(parse_time("23:59:30"), NaiveTime::from_hms_opt(23, 59, 30));
        for bad in ["24:00", "9:00", "10h", "10:60", "ten"] {
            assert!(parse_time(bad).is_none(), "{bad} accepted");
        }
    }

    #[test]
    fn identifier_search_skips_literal_text() {
        let text = "nmae {{ nmae }}";
        assert_eq!(find_identifier(text, "nmae"), Some(8));
        assert_eq!(find_identifier("{{ attrs.nmae }} {{ nmae }}", "nmae"), Some(20));
    }
}
