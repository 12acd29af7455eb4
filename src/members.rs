//! Member records and member files (CSV / JSONL): the shape a CRM feeds in, shared
//! by `almanac members import`, the admin API, and `plan`/`simulate --members`.
//!
//! CONTRACT (skeleton; the storage work, issue 5, fills in the reader and keeps
//! these signatures).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One member as the CRM describes it. `external_id` is the CRM's key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The CRM's id (unique).
    pub external_id: String,
    /// WeChat openid for the brand's Official Account.
    #[serde(default)]
    pub openid: Option<String>,
    /// Display name used in templates.
    #[serde(default)]
    pub name: Option<String>,
    /// Phone, normalized to E.164 on import.
    #[serde(default)]
    pub phone: Option<String>,
    /// Stated city.
    #[serde(default)]
    pub city: Option<String>,
    /// Stated province (disambiguates the city).
    #[serde(default)]
    pub province: Option<String>,
    /// Latitude.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub lon: Option<f64>,
    /// Last known IP address.
    #[serde(default)]
    pub ip: Option<String>,
    /// The member's own language (BCP-47).
    #[serde(default)]
    pub lang: Option<String>,
    /// Tags for audience filters.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free attributes, usable in templates as `attrs.<key>`.
    #[serde(default)]
    pub attrs: BTreeMap<String, String>,
    /// When the member opted out (unsubscribed), if they did.
    #[serde(default)]
    pub opted_out_at: Option<DateTime<Utc>>,
    /// The member's own last interaction (WeChat callback events).
    #[serde(default)]
    pub last_interaction_at: Option<DateTime<Utc>>,
}

/// A bad row in a member file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: row {row}: {reason}")]
pub struct RowError {
    /// File name.
    pub file: String,
    /// 1-based data row number (the CSV header is not a row).
    pub row: u64,
    /// What was wrong and what was expected.
    pub reason: String,
}

/// Errors that stop reading a file altogether.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Neither `.csv` nor `.jsonl`/`.ndjson`.
    #[error("{0}: unknown member file format (expected .csv, .jsonl or .ndjson)")]
    Format(String),
}

/// Streams a member file (format by extension), yielding each row or its error.
pub fn read_file(
    _path: &Path,
) -> Result<Box<dyn Iterator<Item = Result<Member, RowError>> + Send>, Error> {
    todo!("issue 5")
}

/// Resolves a member's hints with the bundled place knowledge; the reason on failure.
pub fn resolve_with_geo(
    geo: &crate::geo::Geo,
    member: &Member,
) -> Result<crate::geo::Place, String> {
    let hints = crate::geo::LocationHints {
        city: member.city.as_deref(),
        province: member.province.as_deref(),
        coordinates: member.lat.zip(member.lon),
        phone: member.phone.as_deref(),
        ip: member.ip.as_deref(),
    };
    geo.resolve(&hints).map_err(|error| error.to_string())
}
