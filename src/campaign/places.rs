//! The gazetteer as a [`PlaceNames`] checker: `almanac check` validates audience
//! cities and provinces and `unresolved = { city = … }` against the bundled
//! gazetteer of [`crate::geo`].

use super::PlaceNames;
use crate::geo::Geo;

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
        // A name several cities share is an error naming each and how to pick one.
        self.lookup_city(name, None).map(|_| ()).map_err(|error| error.to_string())
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
