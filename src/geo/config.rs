//! `[geo]` section of `almanac.toml`: resolver precedence, time-zone overrides,
//! the coordinate resolver's radius and an optional climate-normals override file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::PlaceSource;

/// One resolver, as named in `precedence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolver {
    /// The member's stated city.
    Explicit,
    /// Nearest city to the member's coordinates.
    Coordinates,
    /// The phone number's prefix.
    Phone,
    /// IP geolocation (no data bundled; always reports why).
    Ip,
}

impl Resolver {
    /// The [`PlaceSource`] this resolver produces.
    pub fn source(self) -> PlaceSource {
        match self {
            Self::Explicit => PlaceSource::Explicit,
            Self::Coordinates => PlaceSource::Coordinates,
            Self::Phone => PlaceSource::Phone,
            Self::Ip => PlaceSource::Ip,
        }
    }
}

/// Place-knowledge configuration (`[geo]` in `almanac.toml`).
///
/// ```toml
/// [geo]
/// precedence = ["explicit", "coordinates", "phone", "ip"]
/// max_coordinate_distance_km = 300.0
/// climate_overrides = "climate/era5.csv"
/// [geo.zones]
/// "Xinjiang" = "Asia/Urumqi"   # a province (English or Chinese), a city name or a GeoNames id
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoConfig {
    /// Order in which resolvers are tried; the first that succeeds wins.
    pub precedence: Vec<Resolver>,
    /// Time-zone overrides. Keys: a GeoNames id, a city name or a province name
    /// (English or Chinese), most specific first. Values: IANA zone names.
    /// Without an override every mainland city sends in `Asia/Shanghai` (Beijing time).
    pub zones: BTreeMap<String, String>,
    /// The coordinate resolver gives up beyond this distance to the nearest city.
    pub max_coordinate_distance_km: f64,
    /// A CSV with the columns of `data/climate_normals.csv` (e.g. written by
    /// `almanac climate import`) whose rows replace or add to the bundled ones.
    pub climate_overrides: Option<PathBuf>,
}

impl Default for GeoConfig {
    fn default() -> Self {
        Self {
            precedence: vec![
                Resolver::Explicit,
                Resolver::Coordinates,
                Resolver::Phone,
                Resolver::Ip,
            ],
            zones: BTreeMap::new(),
            max_coordinate_distance_km: 300.0,
            climate_overrides: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_fields() {
        let config: GeoConfig = toml::from_str(
            "precedence = [\"phone\", \"explicit\"]\nmax_coordinate_distance_km = 50.0\n[zones]\nXinjiang = \"Asia/Urumqi\"\n",
        )
        .unwrap();
        assert_eq!(config.precedence, vec![Resolver::Phone, Resolver::Explicit]);
        assert_eq!(config.zones.get("Xinjiang").map(String::as_str), Some("Asia/Urumqi"));
        assert_eq!(config.max_coordinate_distance_km, 50.0);
        let error = toml::from_str::<GeoConfig>("precedance = []").unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
        let error = toml::from_str::<GeoConfig>("precedence = [\"gps\"]").unwrap_err();
        assert!(error.to_string().contains("unknown variant"), "{error}");
    }
}
