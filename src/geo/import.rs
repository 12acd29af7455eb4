//! `almanac climate import`: monthly normals for a gazetteer city computed from
//! the Open-Meteo historical-archive API (ERA5 daily mean temperature and
//! relative humidity), written as rows of `data/climate_normals.csv`'s shape.
//! Its rows are `sourced`: the archive answers the same request with the same figures.

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

use super::climate::Quality;
use super::{City, ClimateRow};

/// The public archive endpoint's base (the path `/v1/archive` is appended).
pub const DEFAULT_API_BASE: &str = "https://archive-api.open-meteo.com";

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The request could not be sent or the body not read.
    #[error("request to {url} failed: {source}")]
    Http {
        /// The URL (no secrets: the API takes none here).
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The API answered with an error.
    #[error("Open-Meteo answered HTTP {status}: {reason}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's `reason`, or the body.
        reason: String,
    },
    /// The body is not the archive API's JSON.
    #[error("unexpected response from {url}: {message}")]
    Format {
        /// The URL.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// Too few days with values in a month.
    #[error("{city}: month {month} has values on only {have} of {want} days")]
    Gaps {
        /// City name.
        city: String,
        /// 1..=12.
        month: usize,
        /// Days with a value.
        have: usize,
        /// Days in the period.
        want: usize,
    },
}

#[derive(Debug, Deserialize)]
struct ArchiveResponse {
    daily: Daily,
}

#[derive(Debug, Deserialize)]
struct Daily {
    time: Vec<String>,
    temperature_2m_mean: Vec<Option<f64>>,
    relative_humidity_2m_mean: Vec<Option<f64>>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    reason: String,
}

/// The archive request URL for a city and period.
pub fn request_url(api_base: &str, city: &City, first_year: i32, last_year: i32) -> String {
    format!(
        "{}/v1/archive?latitude={:.4}&longitude={:.4}&start_date={first_year}-01-01&end_date={last_year}-12-31\
         &daily=temperature_2m_mean,relative_humidity_2m_mean&timezone={}&models=era5",
        api_base.trim_end_matches('/'),
        city.lat,
        city.lon,
        city.tz.name()
    )
}

/// Fetches the daily series and averages it into monthly normals.
pub async fn import_city(
    client: &reqwest::Client,
    api_base: &str,
    city: &City,
    first_year: i32,
    last_year: i32,
) -> Result<ClimateRow, ImportError> {
    let url = request_url(api_base, city, first_year, last_year);
    let http = |source| ImportError::Http { url: url.clone(), source };
    let response = client.get(&url).send().await.map_err(http)?;
    let status = response.status();
    let body = response.text().await.map_err(http)?;
    if !status.is_success() {
        let reason = serde_json::from_str::<ApiError>(&body).map(|e| e.reason).unwrap_or(body);
        return Err(ImportError::Api { status: status.as_u16(), reason });
    }
    let parsed: ArchiveResponse = serde_json::from_str(&body)
        .map_err(|e| ImportError::Format { url: url.clone(), message: e.to_string() })?;
    let (temp_c, rh_pct) = monthly_means(&parsed.daily).map_err(|e| match e {
        MeansError::Format(message) => ImportError::Format { url: url.clone(), message },
        MeansError::Gaps { month, have, want } => {
            ImportError::Gaps { city: city.name.clone(), month, have, want }
        }
    })?;
    Ok(ClimateRow {
        geonames_id: city.geonames_id,
        name: city.name.clone(),
        country: city.country.clone(),
        lat: city.lat,
        lon: city.lon,
        temp_c,
        rh_pct: Some(rh_pct),
        period: format!("{first_year}-{last_year}"),
        source: "Open-Meteo historical archive (ERA5 reanalysis daily means; CC BY 4.0) at the city's \
                 coordinates; a ~25 km grid cell, not a station: expect 0.5-2 C and several % RH off \
                 station normals"
            .into(),
        quality: Quality::Sourced,
    })
}

enum MeansError {
    Format(String),
    Gaps { month: usize, have: usize, want: usize },
}

/// Monthly means over all years; each month needs values on 90 % of its days.
fn monthly_means(daily: &Daily) -> Result<([f64; 12], [f64; 12]), MeansError> {
    let n = daily.time.len();
    if daily.temperature_2m_mean.len() != n || daily.relative_humidity_2m_mean.len() != n {
        return Err(MeansError::Format("daily arrays differ in length".into()));
    }
    let mut sum_t = [0.0; 12];
    let mut sum_h = [0.0; 12];
    let mut have = [0usize; 12];
    let mut days = [0usize; 12];
    for (i, day) in daily.time.iter().enumerate() {
        let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| {
            MeansError::Format(format!("daily.time[{i}] = {day:?} is not a yyyy-mm-dd date"))
        })?;
        let m = date.month0() as usize;
        days[m] += 1;
        if let (Some(t), Some(h)) =
            (daily.temperature_2m_mean[i], daily.relative_humidity_2m_mean[i])
        {
            sum_t[m] += t;
            sum_h[m] += h;
            have[m] += 1;
        }
    }
    let mut temp = [0.0; 12];
    let mut rh = [0.0; 12];
    for m in 0..12 {
        if days[m] == 0 || have[m] * 10 < days[m] * 9 {
            return Err(MeansError::Gaps { month: m + 1, have: have[m], want: days[m] });
        }
        temp[m] = (sum_t[m] / have[m] as f64 * 10.0).round() / 10.0;
        rh[m] = (sum_h[m] / have[m] as f64).round();
    }
    Ok((temp, rh))
}
