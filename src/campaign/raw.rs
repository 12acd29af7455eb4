//! The raw serde model of a campaign file: what TOML deserializes into, before any
//! semantic check. Fields that diagnostics point at are [`Spanned`] so errors carry
//! the byte range of the offending value. Every table denies unknown keys. The same
//! types generate the editor JSON Schema (`campaigns/campaign.schema.json`), so the
//! doc comments here are what editors show on hover.
//!
//! Keys the language requires are `Option` here (and required in the schema) so a
//! missing key becomes a precise diagnostic from `validate` instead of a serde error
//! that stops the file. These types are not the domain: `validate` turns them into [`super::Campaign`].

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// A campaign file (`campaigns/*.toml`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "almanac campaign")]
pub struct RawCampaign {
    /// Stable campaign id, unique across all campaign files (letters, digits, `-`, `_`, `.`).
    #[schemars(with = "String")]
    pub id: Option<Spanned<String>>,
    /// Human-readable name.
    #[schemars(with = "String")]
    pub name: Option<Spanned<String>>,
    /// Disabled campaigns are checked but never planned (default true).
    pub enabled: Option<bool>,
    /// First moment the campaign may send (inclusive): a TOML local date
    /// (`2027-06-01`), local date-time (`2027-06-01T09:00:00`, in each member's zone)
    /// or offset date-time (`2027-06-01T09:00:00+08:00`, an absolute instant).
    #[schemars(with = "Option<String>")]
    pub starts: Option<Spanned<toml::value::Datetime>>,
    /// Last moment the campaign may send (exclusive); same forms as `starts`.
    #[schemars(with = "Option<String>")]
    pub ends: Option<Spanned<toml::value::Datetime>>,
    /// Name of a channel defined in `almanac.toml` (`log` is the embedded default).
    #[schemars(with = "String")]
    pub channel: Option<Spanned<String>>,
    /// `service` (default) or `marketing`. WeChat template messages must not carry marketing.
    #[schemars(with = "Option<RawPurpose>")]
    pub purpose: Option<Spanned<RawPurpose>>,
    /// Higher wins when the global frequency cap must drop a send (default 0).
    pub priority: Option<i32>,
    /// BCP-47 tag of the fallback message; must equal the `lang` of some `[[message]]`.
    #[schemars(with = "String")]
    pub default_lang: Option<Spanned<String>>,
    /// Who receives the campaign. Omitted: every member.
    #[serde(default)]
    pub audience: RawAudience,
    /// When each member receives it.
    #[schemars(with = "RawTiming")]
    pub timing: Option<Spanned<RawTiming>>,
    /// Frequency and rate limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// Message variants, one `[[message]]` table each.
    #[serde(default, rename = "message")]
    #[schemars(with = "Vec<RawMessage>")]
    pub messages: Vec<Spanned<RawMessage>>,
}

/// What the campaign is for.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawPurpose {
    /// A service notification.
    Service,
    /// Advertising.
    Marketing,
}

/// `[audience]`: every list is a restriction; an omitted or empty list means "any".
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAudience {
    /// ISO 3166-1 alpha-2 country codes, uppercase (`CN`, `HK`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub countries: Vec<Spanned<String>>,
    /// Province / state names, Chinese or English (`广东省`, `Guangdong`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub provinces: Vec<Spanned<String>>,
    /// City names, Chinese or English (`Harbin`, `广州`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub cities: Vec<Spanned<String>>,
    /// Members within `radius_km` of a point.
    #[schemars(with = "Option<RawNear>")]
    pub near: Option<Spanned<RawNear>>,
    /// Member has at least one of these tags.
    #[serde(default)]
    pub tags_any: Vec<String>,
    /// Member has all of these tags.
    #[serde(default)]
    pub tags_all: Vec<String>,
    /// Member has none of these tags.
    #[serde(default)]
    pub tags_none: Vec<String>,
    /// Member's language starts with one of these BCP-47 tags (`yue`, `zh-Hans`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub languages: Vec<Spanned<String>>,
    /// Share of the audience kept as a control group, `0 <= holdout < 1` (default 0).
    #[schemars(with = "Option<f64>")]
    pub holdout: Option<Spanned<f64>>,
}

/// `near = { lat, lon, radius_km }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNear {
    /// Latitude in degrees, -90..90.
    #[schemars(with = "f64")]
    pub lat: Option<Spanned<f64>>,
    /// Longitude in degrees, -180..180.
    #[schemars(with = "f64")]
    pub lon: Option<Spanned<f64>>,
    /// Radius in kilometres, > 0.
    #[schemars(with = "f64")]
    pub radius_km: Option<Spanned<f64>>,
}

/// `[timing]`: one flat table. `trigger` decides which other keys are required:
/// `once` takes `date` + `local_time`; `cron` takes `cron`; `climate` takes `metric`,
/// `crosses`, `threshold`, `after` and `local_time`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTiming {
    /// `once`, `cron` or `climate`.
    #[schemars(with = "RawTrigger")]
    pub trigger: Option<Spanned<RawTrigger>>,
    /// `once`: the local date, `YYYY-MM-DD`.
    #[schemars(with = "Option<String>")]
    pub date: Option<Spanned<String>>,
    /// `once` and `climate`: local time of day in the member's zone, `HH:MM`.
    #[schemars(with = "Option<String>")]
    pub local_time: Option<Spanned<String>>,
    /// `cron`: a 5-field (`min hour dom month dow`) or 6-field (seconds first)
    /// expression, evaluated in each member's zone.
    #[schemars(with = "Option<String>")]
    pub cron: Option<Spanned<String>>,
    /// `climate`: `mean_temp_c` (°C) or `rel_humidity_pct` (%).
    #[schemars(with = "Option<RawMetric>")]
    pub metric: Option<Spanned<RawMetric>>,
    /// `climate`: `below` or `above`.
    #[schemars(with = "Option<RawCrossing>")]
    pub crosses: Option<Spanned<RawCrossing>>,
    /// `climate`: threshold in the metric's unit (°C: -90..60, %: 0..100).
    #[schemars(with = "Option<f64>")]
    pub threshold: Option<Spanned<f64>>,
    /// `climate`: the crossing is looked for after this day each year, `MM-DD`.
    #[schemars(with = "Option<String>")]
    pub after: Option<Spanned<String>>,
    /// How long an occurrence stays open for late members: `7d`, `12h`, `30m`,
    /// `45s` or a sum such as `1d12h` (default `7d` for `once` and `climate`,
    /// `1h` for `cron`; at most `366d`). A late member gets at most the latest
    /// occurrence.
    #[schemars(with = "Option<DurationText>")]
    pub window: Option<Spanned<String>>,
    /// How long before the campaign was first seen an occurrence may still be
    /// sent (default: none; at most `window`). Without it, loading a campaign
    /// never sends an occurrence that fell due before it was loaded.
    #[schemars(with = "Option<DurationText>")]
    pub catch_up: Option<Spanned<String>>,
    /// Deliver over this long instead of at one instant: each member's push
    /// fires at its own instant in `[due, due + spread)`, a fixed share of the
    /// spread taken from a hash of the campaign id and the member's external id
    /// (a duration, at most `window` and at most `31d`; default: none, all at once).
    #[schemars(with = "Option<DurationText>")]
    pub spread: Option<Spanned<String>>,
    /// Local hours in which nothing is sent; may wrap midnight.
    #[schemars(with = "Option<RawQuietHours>")]
    pub quiet_hours: Option<Spanned<RawQuietHours>>,
    /// Members without a resolved place: `"skip"` (default), `{ city = "Shanghai" }`
    /// or `{ zone = "Asia/Shanghai" }`.
    #[schemars(with = "Option<RawUnresolvedSchema>")]
    pub unresolved: Option<Spanned<toml::Value>>,
}

/// Schema-only shape of a duration: the grammar of [`crate::duration`] as a
/// `pattern`, so editors flag `7 days` or `1.5h` as they are typed.
pub struct DurationText;

impl JsonSchema for DurationText {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": crate::duration::PATTERN,
        })
    }
}

/// The three triggers.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawTrigger {
    /// Once, at `date` + `local_time` in each member's zone.
    Once,
    /// A cron schedule in each member's zone.
    Cron,
    /// When the city's climate normal crosses a threshold after a date, yearly.
    Climate,
}

/// Climate metrics.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawMetric {
    /// Mean air temperature, °C.
    MeanTempC,
    /// Mean relative humidity, %.
    RelHumidityPct,
}

/// Crossing direction.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawCrossing {
    /// From at-or-above to below.
    Below,
    /// From at-or-below to above.
    Above,
}

/// `quiet_hours = { start = "22:00", end = "08:00" }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQuietHours {
    /// Start, `HH:MM`, inclusive.
    #[schemars(with = "String")]
    pub start: Option<Spanned<String>>,
    /// End, `HH:MM`, exclusive; sends inside the quiet hours move here.
    #[schemars(with = "String")]
    pub end: Option<Spanned<String>>,
}

/// Schema-only shape of `unresolved` (validation reads it from a TOML value so its
/// errors can name the exact problem).
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum RawUnresolvedSchema {
    /// `"skip"`.
    Skip(SkipWord),
    /// `{ city = "Shanghai" }`: treat them as living in this gazetteer city.
    City {
        /// A gazetteer city name.
        city: String,
    },
    /// `{ zone = "Asia/Shanghai" }`: treat them as living in this IANA zone.
    Zone {
        /// An IANA time zone.
        zone: String,
    },
}

/// The only string `unresolved` accepts.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipWord {
    /// Skip members without a place.
    Skip,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// At most this many pushes per member over the whole campaign (>= 1).
    #[schemars(with = "Option<u32>")]
    pub per_member: Option<Spanned<i64>>,
    /// Dispatch rate ceiling for this campaign, sends per second (>= 1).
    #[schemars(with = "Option<u32>")]
    pub rate_per_second: Option<Spanned<i64>>,
}

/// One `[[message]]` variant.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMessage {
    /// BCP-47 tag: language[-script][-region], e.g. `yue-Hant`, `zh-Hans`, `en-US`.
    #[schemars(with = "String")]
    pub lang: Option<Spanned<String>>,
    /// minijinja template; variables: see `TEMPLATE_FIELDS` (`{{ name }}`, `{{ city }}`, `{{ attrs.tier }}`).
    #[schemars(with = "String")]
    pub text: Option<Spanned<String>>,
    /// A/B weight among variants of the same `lang` (>= 1, default 1).
    #[schemars(with = "Option<u32>")]
    pub weight: Option<Spanned<i64>>,
    /// Variant label for A/B reporting (default: the variant's index in the file).
    #[schemars(with = "Option<String>")]
    pub label: Option<Spanned<String>>,
}

/// The JSON Schema of campaign files (draft-07, which taplo and most editors read),
/// pretty-printed with a trailing newline. `const` (draft 6+) is written as a
/// one-value `enum` so validators that only know draft 4 still check the values.
pub fn json_schema() -> String {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<RawCampaign>();
    let mut value = serde_json::to_value(&schema).unwrap_or_default();
    const_to_enum(&mut value);
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

fn const_to_enum(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(constant) = map.remove("const") {
                map.insert("enum".to_string(), serde_json::Value::Array(vec![constant]));
            }
            map.values_mut().for_each(const_to_enum);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(const_to_enum),
        _ => {}
    }
}
