//! Place knowledge: the bundled gazetteer, resolvers (explicit city, coordinates,
//! phone prefix, IP), climate normals and dialects.
//!
//! CONTRACT (skeleton; the place-knowledge work, issue 3, fills it in and keeps
//! these signatures): [`Geo::bundled`] loads the embedded data once;
//! [`Geo::resolve`] turns a member's location hints into a [`Place`];
//! [`Geo::city`] gives a city's static facts; [`Geo::normal`] the daily
//! interpolated climate normal.

use chrono_tz::Tz;

use crate::campaign::ClimateMetric;

/// Index of a city in the bundled gazetteer (stable within one data version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CityId(pub u32);

/// Static facts about one gazetteer city.
#[derive(Debug, Clone)]
pub struct City {
    /// Stable id across data versions (GeoNames id).
    pub geonames_id: u32,
    /// English / pinyin name (`Harbin`).
    pub name: String,
    /// Chinese name where known (`哈尔滨`).
    pub name_zh: Option<String>,
    /// Province / state, English (`Heilongjiang`).
    pub province: String,
    /// Province / state, Chinese where known (`黑龙江省`).
    pub province_zh: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// IANA zone used for sending (see README: mainland China uses Asia/Shanghai).
    pub tz: Tz,
    /// Population where known.
    pub population: Option<u64>,
    /// Dialect group (`Mandarin (Northeastern)`, `Yue`, ...).
    pub dialect: String,
    /// BCP-47 tag a message variant would use (`cmn-Hans`, `yue-Hant`, `en`).
    pub lang_tag: String,
}

/// How a place was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlaceSource {
    /// The member's stated city.
    Explicit,
    /// Nearest city to the member's coordinates.
    Coordinates,
    /// Where the member's phone number was registered.
    Phone,
    /// IP address geolocation.
    Ip,
    /// The campaign's fallback for unresolved members.
    Fallback,
}

impl PlaceSource {
    /// Stable lowercase name (metrics label, JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Explicit => "explicit",
            Self::Coordinates => "coordinates",
            Self::Phone => "phone",
            Self::Ip => "ip",
            Self::Fallback => "fallback",
        }
    }
}

/// A resolved place: a gazetteer city plus how it was found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    /// The city.
    pub city: CityId,
    /// The zone to send in (the city's, unless overridden).
    pub tz: Tz,
    /// How it was found.
    pub source: PlaceSource,
    /// 0..1.
    pub confidence: f32,
    /// Distance from the input point to the city, km (coordinates resolver).
    pub distance_km: Option<f32>,
}

/// What a member tells us about where they are.
#[derive(Debug, Clone, Default)]
pub struct LocationHints<'a> {
    /// Stated city name (Chinese or English).
    pub city: Option<&'a str>,
    /// Stated province, to disambiguate the city.
    pub province: Option<&'a str>,
    /// Coordinates (lat, lon).
    pub coordinates: Option<(f64, f64)>,
    /// Phone number as written.
    pub phone: Option<&'a str>,
    /// IP address as written.
    pub ip: Option<&'a str>,
}

/// Why no place could be found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResolveError {
    /// No hint at all.
    #[error("no location hint (city, coordinates, phone or IP)")]
    NoHints,
    /// Every hint failed; the reasons, in precedence order.
    #[error("unresolved: {}", .0.join("; "))]
    Unresolved(Vec<String>),
}

/// The bundled place knowledge.
#[derive(Debug)]
pub struct Geo {
    _private: (),
}

impl Geo {
    /// The embedded data, loaded once.
    pub fn bundled() -> &'static Geo {
        todo!("issue 3")
    }

    /// Version of the bundled data (members re-resolve when it changes).
    pub fn data_version(&self) -> &str {
        todo!("issue 3")
    }

    /// Facts about a city.
    pub fn city(&self, _id: CityId) -> &City {
        todo!("issue 3")
    }

    /// Resolves a member's hints with the configured precedence.
    pub fn resolve(&self, _hints: &LocationHints<'_>) -> Result<Place, ResolveError> {
        todo!("issue 3")
    }

    /// Finds a city by name (Chinese, English, alias), optionally within a province.
    pub fn find_city(&self, _name: &str, _province: Option<&str>) -> Result<CityId, ResolveError> {
        todo!("issue 3")
    }

    /// The city's (or nearest row's) normal for a day of year (1..=366), or None
    /// when no climate row lies within 300 km.
    pub fn normal(&self, _city: CityId, _day_of_year: u32, _metric: ClimateMetric) -> Option<f64> {
        todo!("issue 3")
    }

    /// Every city, in id order (synthetic members for `almanac plan`).
    pub fn cities(&self) -> impl Iterator<Item = (CityId, &City)> {
        std::iter::empty()
    }
}
