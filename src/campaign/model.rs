//! Validated campaign types. A [`Campaign`] can only be built by validation, so the
//! timing engine and the daemon never see an invalid time, zone, cron expression or
//! language tag.

use chrono::{DateTime, NaiveDateTime, NaiveTime, Utc};

/// A validated campaign, ready for the timing engine.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// Stable id, unique across all campaign files.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Disabled campaigns are loaded and checked but never planned.
    pub enabled: bool,
    /// First moment the campaign may send (inclusive).
    pub starts: Option<Bound>,
    /// Last moment the campaign may send (exclusive).
    pub ends: Option<Bound>,
    /// Name of a channel defined in `almanac.toml`.
    pub channel: String,
    /// Service notification or marketing (WeChat templates forbid marketing).
    pub purpose: Purpose,
    /// Higher wins when the global frequency cap must drop a send.
    pub priority: i32,
    /// Who receives it.
    pub audience: Audience,
    /// When each member receives it.
    pub timing: Timing,
    /// Frequency and rate limits.
    pub limits: Limits,
    /// Message variants, by language.
    pub messages: Vec<Message>,
    /// Language of the fallback variant(s): used when no other variant fits.
    pub default_lang: String,
    /// Where it was loaded from, and a hash of the file's bytes (reload diffing).
    pub source: SourceInfo,
}

/// Where a campaign came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceInfo {
    /// Path of the campaign file.
    pub path: std::path::PathBuf,
    /// Hex SHA-256 of the file's bytes.
    pub content_hash: String,
}

/// A start or end bound: an absolute instant, or a local date-time evaluated in
/// each member's own zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// An instant (the TOML value carried an offset).
    Instant(DateTime<Utc>),
    /// A local date-time, in the member's zone.
    Local(NaiveDateTime),
}

/// What the campaign is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Purpose {
    /// Service notification (the only kind WeChat template messages allow).
    #[default]
    Service,
    /// Advertising.
    Marketing,
}

/// Audience filter. Empty lists mean "no restriction".
#[derive(Debug, Clone, Default)]
pub struct Audience {
    /// ISO 3166-1 alpha-2 country codes.
    pub countries: Vec<String>,
    /// Province / state names (Chinese or English), as written.
    pub provinces: Vec<String>,
    /// City names (Chinese or English), as written.
    pub cities: Vec<String>,
    /// Members within a radius of a point.
    pub near: Option<Near>,
    /// Member has at least one of these tags.
    pub tags_any: Vec<String>,
    /// Member has all of these tags.
    pub tags_all: Vec<String>,
    /// Member has none of these tags.
    pub tags_none: Vec<String>,
    /// Member's language (own or dialect tag) starts with one of these BCP-47 tags.
    pub languages: Vec<String>,
    /// Share of the audience kept as a control group (recorded, not sent), 0..1.
    pub holdout: f64,
}

/// A radius around a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Radius, km (> 0).
    pub radius_km: f64,
}

/// The default `window` of a `cron` campaign: late members get at most the
/// latest occurrence, and only if it fell due within the hour (a week-old
/// newsletter is not news).
pub const CRON_DEFAULT_WINDOW: chrono::Duration = chrono::Duration::hours(1);

/// The default `window` of a `once` or `climate` campaign: members who join in
/// the week after still get it.
pub const DEFAULT_WINDOW: chrono::Duration = chrono::Duration::days(7);

/// When members receive the push.
#[derive(Debug, Clone)]
pub struct Timing {
    /// What makes an occurrence.
    pub trigger: Trigger,
    /// How long after its due instant an occurrence stays open for members who
    /// arrive late (joined, resolved, or the daemon was down). Default: 7 days
    /// for `once` and `climate`, [`CRON_DEFAULT_WINDOW`] for `cron`.
    pub window: chrono::Duration,
    /// How long before the campaign was first seen (by the ledger, or before
    /// `simulate --from`) an occurrence may still be sent (zero: never one that
    /// fell due before; at most `window`).
    pub catch_up: chrono::Duration,
    /// Each member's push fires at its own instant in `[due, due + spread)`
    /// (a stable per-member share; at most `window`).
    pub spread: Option<chrono::Duration>,
    /// Local hours in which nothing is sent; a send inside moves to `end`.
    pub quiet_hours: Option<QuietHours>,
    /// What to do with members whose place could not be resolved.
    pub unresolved: Unresolved,
}

/// The three triggers.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// Once, at a local date-time in each member's zone.
    Once {
        /// The local date-time.
        at: NaiveDateTime,
    },
    /// A cron schedule evaluated in each member's zone.
    Cron {
        /// The expression as written (5 or 6 fields).
        expr: String,
    },
    /// The first day after `after` on which the city's daily-interpolated normal
    /// crosses `threshold`, at `local_time`; recurs yearly.
    Climate {
        /// Which normal.
        metric: ClimateMetric,
        /// Direction of the crossing.
        crosses: Crossing,
        /// Threshold in the metric's unit.
        threshold: f64,
        /// Month and day after which the crossing is looked for (each year).
        after: (u32, u32),
        /// Local time of day to send.
        local_time: NaiveTime,
    },
}

/// A monthly climate normal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClimateMetric {
    /// Mean air temperature, °C.
    MeanTempC,
    /// Mean relative humidity, %.
    RelHumidityPct,
}

/// Crossing direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    /// From at-or-above to below the threshold.
    Below,
    /// From at-or-below to above the threshold.
    Above,
}

/// Local quiet hours; may wrap midnight (22:00–08:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Start, inclusive.
    pub start: NaiveTime,
    /// End, exclusive; sends inside move here.
    pub end: NaiveTime,
}

/// Policy for members without a resolved place.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Unresolved {
    /// Skip them (counted with the reason).
    #[default]
    Skip,
    /// Treat them as living in this gazetteer city (name as written).
    FallbackCity(String),
    /// Treat them as living in this IANA zone (no city: climate triggers skip them).
    FallbackZone(chrono_tz::Tz),
}

/// Frequency and rate limits of one campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// At most this many pushes per member over the whole campaign.
    pub per_member: Option<u32>,
    /// Dispatch rate ceiling for this campaign.
    pub rate_per_second: Option<u32>,
}

/// One message variant.
#[derive(Debug, Clone)]
pub struct Message {
    /// Canonical BCP-47 tag (`yue-Hant`, `zh-Hans`, `en`).
    pub lang: String,
    /// minijinja template source.
    pub text: String,
    /// A/B weight among variants of the same `lang` (default 1).
    pub weight: u32,
    /// Optional variant label for A/B reporting (default: index in the file).
    pub label: String,
}

/// The variables a message template may use. The timing engine renders with exactly
/// these (strict undefined); `attrs` is a map of the member's free attributes
/// (`{{ attrs.tier }}`). `almanac check` rejects references to anything else.
pub const TEMPLATE_FIELDS: &[&str] = &[
    "name",
    "external_id",
    "city",
    "city_zh",
    "province",
    "province_zh",
    "country",
    "lang",
    "local_date",
    "attrs",
];
