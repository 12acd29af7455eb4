//! The gazetteer as a [`PlaceNames`] checker: `almanac check` validates audience
//! cities and provinces and `unresolved = { city = … }` against the bundled
//! gazetteer of [`crate::geo`].

use super::PlaceNames;
use crate::geo::{CityLookupError, Geo};

/// The bundled gazetteer, loaded on first use: checking files that name no place
/// does not pay for loading it.
#[derive(Debug, Clone, Copy, Default)]
pub struct BundledGazetteer;

impl PlaceNames for BundledGazetteer {
    fn check_city(&self, name: &str) -> Result<(), String> {
        Geo::bundled().check_city(name)
    }

    fn check_province(&self, name: &str) -> Result<(), String> {
        Geo::bundled().check_province(name)
    }
}

impl PlaceNames for Geo {
    fn check_city(&self, name: &str) -> Result<(), String> {
        match self.lookup_city(name, None) {
            // A name several cities share is still a city name: the audience
            // matches members of any of them.
            Ok(_) | Err(CityLookupError::Ambiguous { .. }) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
    }

    fn check_province(&self, name: &str) -> Result<(), String> {
        if self.is_province(name) {
            return Ok(());
        }
        let suggestions = self.suggest_province(name);
        Err(match suggestions.as_slice() {
            [] => format!("unknown province {name:?}"),
            _ => format!("unknown province {name:?}; did you mean {}?", suggestions.join(" or ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_gazetteer_checks_names() {
        let geo = Geo::bundled();
        assert!(geo.check_city("Harbin").is_ok());
        assert!(geo.check_city("广州").is_ok());
        let error = geo.check_city("Shanghia").unwrap_err();
        assert!(error.contains("Shanghai"), "{error}");
        assert!(geo.check_province("Guangdong").is_ok());
        assert!(geo.check_province("Atlantis").is_err());
    }
}
