//! Campaign files: the TOML language, validation with spans, directory loading and
//! reload diffing.
//!
//! The pipeline is `raw` (serde model with spans, `deny_unknown_fields`, JSON
//! Schema) → `validate` (semantic checks) → `model` (the domain [`Campaign`] every
//! other module consumes). Problems become [`Diagnostic`]s with `file:line:col`,
//! rendered by [`render`] for humans, JSON or GitHub annotations. Entry points:
//! [`load_paths`] (what `almanac check` and the daemon call) and [`diff`] (what
//! changed on reload).

pub mod diagnostic;
pub mod lang;
mod load;
pub mod model;
pub mod places;
pub mod raw;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub use diagnostic::{Diagnostic, Format, Severity, render};
pub use lang::canonical_lang;
pub use model::*;
pub use places::BundledGazetteer;
pub use raw::json_schema;
pub use validate::channel_may_forbid_marketing;

/// Checks place names against a gazetteer. [`crate::geo::Geo`] implements it
/// (`almanac check` passes the bundled one through [`BundledGazetteer`]); without one, city and province names
/// are not checked.
pub trait PlaceNames {
    /// `Ok` when `name` is a known city; otherwise a message, with a did-you-mean
    /// when there is a close name.
    fn check_city(&self, name: &str) -> Result<(), String>;
    /// `Ok` when `name` is a known province or state; otherwise a message, with a
    /// did-you-mean when there is a close name.
    fn check_province(&self, name: &str) -> Result<(), String>;
}

/// Everything loading produced: the valid campaigns and every diagnostic.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Campaigns whose file had no error (for a duplicate id, the first file's).
    pub campaigns: Vec<Campaign>,
    /// Errors and warnings of every file, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// The text of every file that could be read, for snippets.
    pub sources: BTreeMap<PathBuf, String>,
}

impl LoadReport {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    /// Number of diagnostics of a severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == severity).count()
    }

    /// Renders the diagnostics in a format.
    pub fn render(&self, format: Format) -> String {
        render(&self.diagnostics, &self.sources, format)
    }
}

/// Loads campaign files: each path is a file, or a directory whose `*.toml` files
/// are loaded in name order. Every problem of every file is reported; files with
/// errors yield no campaign. `places` checks city and province names when given.
pub fn load_paths(paths: &[PathBuf], places: Option<&dyn PlaceNames>) -> LoadReport {
    load::load_paths(paths, places)
}

/// What changed between two loads, by campaign id (sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignDiff {
    /// Ids only in the new set.
    pub added: Vec<String>,
    /// Ids in both whose file content changed.
    pub changed: Vec<String>,
    /// Ids only in the old set.
    pub removed: Vec<String>,
}

impl CampaignDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Compares two loads (for reload logging): `changed` means the source file's
/// content hash differs.
pub fn diff(old: &[Campaign], new: &[Campaign]) -> CampaignDiff {
    let old_by_id: BTreeMap<&str, &str> =
        old.iter().map(|c| (c.id.as_str(), c.source.content_hash.as_str())).collect();
    let new_by_id: BTreeMap<&str, &str> =
        new.iter().map(|c| (c.id.as_str(), c.source.content_hash.as_str())).collect();
    let ids: BTreeSet<&str> = old_by_id.keys().chain(new_by_id.keys()).copied().collect();
    let mut result = CampaignDiff::default();
    for id in ids {
        match (old_by_id.get(id), new_by_id.get(id)) {
            (None, Some(_)) => result.added.push(id.to_string()),
            (Some(_), None) => result.removed.push(id.to_string()),
            (Some(a), Some(b)) if a != b => result.changed.push(id.to_string()),
            _ => {}
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(id: &str, hash: &str) -> Campaign {
        let report = load_paths(&[PathBuf::from("campaigns/weekly-digest.toml")], None);
        let mut campaign = report.campaigns.into_iter().next().expect("example campaign loads");
        campaign.id = id.to_string();
        campaign.source.content_hash = hash.to_string();
        campaign
    }

    #[test]
    fn diff_reports_added_changed_removed() {
        let old = [campaign("a", "1"), campaign("b", "2"), campaign("c", "3")];
        let new = [campaign("b", "2"), campaign("c", "4"), campaign("d", "5")];
        let result = diff(&old, &new);
        assert_eq!(result.added, ["d"]);
        assert_eq!(result.changed, ["c"]);
        assert_eq!(result.removed, ["a"]);
        assert!(diff(&new, &new).is_empty());
    }

    struct Places;
    impl PlaceNames for Places {
        fn check_city(&self, name: &str) -> Result<(), String> {
            match name {
                "Shanghai" | "Harbin" => Ok(()),
                "Shanghia" => Err("unknown city `Shanghia`; did you mean `Shanghai`?".into()),
                other => Err(format!("unknown city `{other}`")),
            }
        }
        fn check_province(&self, name: &str) -> Result<(), String> {
            match name {
                "Guangdong" => Ok(()),
                other => Err(format!("unknown province `{other}`; did you mean `Guangdong`?")),
            }
        }
    }

    #[test]
    fn place_names_are_checked_through_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("places.toml");
        let text = "id = \"p\"\nname = \"P\"\nchannel = \"log\"\ndefault_lang = \"en\"\n\
                    [audience]\ncities = [\"Harbin\", \"Shanghia\"]\nprovinces = [\"Guangdon\"]\n\
                    [timing]\ntrigger = \"cron\"\ncron = \"0 10 * * MON\"\n\
                    unresolved = { city = \"Nowhere\" }\n\
                    [[message]]\nlang = \"en\"\ntext = \"hi {{ name }}\"\n";
        std::fs::write(&path, text).unwrap();
        let without = load_paths(std::slice::from_ref(&path), None);
        assert!(!without.has_errors(), "{:?}", without.diagnostics);
        let with = load_paths(&[path], Some(&Places));
        let found: Vec<(usize, usize, &str)> =
            with.diagnostics.iter().map(|d| (d.line, d.col, d.message.as_str())).collect();
        assert_eq!(
            found,
            [
                (6, 21, "unknown city `Shanghia`; did you mean `Shanghai`?"),
                (7, 14, "unknown province `Guangdon`; did you mean `Guangdong`?"),
                (11, 14, "unknown city `Nowhere`"),
            ]
        );
        assert!(with.campaigns.is_empty());
    }
}
