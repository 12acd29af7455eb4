//! Monthly climate normals (`data/climate_normals.csv` and override files) and
//! their daily interpolation: a periodic cubic (Catmull–Rom) through the
//! mid-month values, so the curve passes through every published monthly mean.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::GeoError;
use crate::campaign::ClimateMetric;

/// One row of monthly normals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClimateRow {
    /// GeoNames id of the city (or station's city) the row belongs to.
    pub geonames_id: u32,
    /// City name, for people.
    pub name: String,
    /// ISO country code.
    pub country: String,
    /// Latitude of the station / grid point.
    pub lat: f64,
    /// Longitude of the station / grid point.
    pub lon: f64,
    /// Monthly mean temperatures, °C, January first.
    pub temp_c: [f64; 12],
    /// Monthly mean relative humidity, %, January first; `None` when unknown.
    pub rh_pct: Option<[f64; 12]>,
    /// Averaging period (`1991-2020`).
    pub period: String,
    /// Where the values come from.
    pub source: String,
    /// Quality / uncertainty note.
    pub quality: String,
}

/// The CSV header every normals file uses.
pub const HEADER: [&str; 32] = [
    "geonames_id",
    "name",
    "country",
    "lat",
    "lon",
    "t01",
    "t02",
    "t03",
    "t04",
    "t05",
    "t06",
    "t07",
    "t08",
    "t09",
    "t10",
    "t11",
    "t12",
    "rh01",
    "rh02",
    "rh03",
    "rh04",
    "rh05",
    "rh06",
    "rh07",
    "rh08",
    "rh09",
    "rh10",
    "rh11",
    "rh12",
    "period",
    "source",
    "quality",
];

/// Parses a normals CSV. `file` names it in errors.
pub fn parse_csv(text: &str, file: &str) -> Result<Vec<ClimateRow>, GeoError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let bad =
        |line: usize, message: String| GeoError::Climate { file: file.to_string(), line, message };
    let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    if headers.iter().ne(HEADER.iter().copied()) {
        return Err(bad(1, format!("expected the header {}", HEADER.join(","))));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record
            .map_err(|e| bad(e.position().map_or(0, |p| p.line() as usize), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let num = |i: usize| -> Result<f64, GeoError> {
            let field = record.get(i).unwrap_or("");
            field.trim().parse::<f64>().map_err(|_| {
                bad(
                    line,
                    format!("column {} ({}): expected a number, found {field:?}", i + 1, HEADER[i]),
                )
            })
        };
        let text = |i: usize| record.get(i).unwrap_or("").to_string();
        let geonames_id = record.get(0).unwrap_or("").trim().parse::<u32>().map_err(|_| {
            bad(
                line,
                format!(
                    "column 1 (geonames_id): expected a GeoNames id, found {:?}",
                    record.get(0).unwrap_or("")
                ),
            )
        })?;
        let mut temp_c = [0.0; 12];
        for (m, t) in temp_c.iter_mut().enumerate() {
            *t = num(5 + m)?;
            if !(-60.0..=50.0).contains(t) {
                return Err(bad(
                    line,
                    format!("column {} ({}): {t} °C is not a monthly mean", 6 + m, HEADER[5 + m]),
                ));
            }
        }
        let rh_pct = if (17..29).all(|i| record.get(i).is_some_and(|f| f.trim().is_empty())) {
            None
        } else {
            let mut rh = [0.0; 12];
            for (m, h) in rh.iter_mut().enumerate() {
                *h = num(17 + m)?;
                if !(0.0..=100.0).contains(h) {
                    return Err(bad(
                        line,
                        format!("column {} ({}): {h} % is not a humidity", 18 + m, HEADER[17 + m]),
                    ));
                }
            }
            Some(rh)
        };
        rows.push(ClimateRow {
            geonames_id,
            name: text(1),
            country: text(2),
            lat: num(3)?,
            lon: num(4)?,
            temp_c,
            rh_pct,
            period: text(29),
            source: text(30),
            quality: text(31),
        });
    }
    Ok(rows)
}

/// Reads a normals CSV from disk.
pub fn read_csv(path: &Path) -> Result<Vec<ClimateRow>, GeoError> {
    let text = std::fs::read_to_string(path).map_err(|e| GeoError::Climate {
        file: path.display().to_string(),
        line: 0,
        message: e.to_string(),
    })?;
    parse_csv(&text, &path.display().to_string())
}

/// Writes rows as CSV with [`HEADER`].
pub fn write_csv(rows: &[ClimateRow], out: impl std::io::Write) -> std::io::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(HEADER)?;
    for row in rows {
        let mut fields = vec![
            row.geonames_id.to_string(),
            row.name.clone(),
            row.country.clone(),
            format!("{:.5}", row.lat),
            format!("{:.5}", row.lon),
        ];
        fields.extend(row.temp_c.iter().map(|t| format!("{t:.1}")));
        match row.rh_pct {
            Some(rh) => fields.extend(rh.iter().map(|h| format!("{h:.0}"))),
            None => fields.extend(std::iter::repeat_n(String::new(), 12)),
        }
        fields.extend([row.period.clone(), row.source.clone(), row.quality.clone()]);
        writer.write_record(&fields)?;
    }
    writer.flush()
}

/// Days in each month of a common year.
const MONTH_DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// Mid-month positions (days since 1 January 00:00, common year).
fn mid_month(m: usize) -> f64 {
    let start: u32 = MONTH_DAYS[..m].iter().sum();
    f64::from(start) + f64::from(MONTH_DAYS[m]) / 2.0
}

impl ClimateRow {
    /// The row's normal for a day of year (1..=366), or `None` for relative
    /// humidity when the row has none.
    pub fn normal(&self, day_of_year: u32, metric: ClimateMetric) -> Option<f64> {
        match metric {
            ClimateMetric::MeanTempC => Some(interpolate(&self.temp_c, day_of_year)),
            ClimateMetric::RelHumidityPct => {
                self.rh_pct.as_ref().map(|rh| interpolate(rh, day_of_year))
            }
        }
    }
}

/// Interpolates monthly values to a day of year (1..=366; 366 is treated as
/// 31 December) with a periodic Catmull–Rom spline through the mid-month values.
pub fn interpolate(monthly: &[f64; 12], day_of_year: u32) -> f64 {
    let day = day_of_year.clamp(1, 365);
    // Noon of the day, in days since 1 January 00:00.
    let t = f64::from(day) - 0.5;
    // Find the segment [mid(i), mid(i+1)] containing t, periodically.
    let (i, t0, t1) = (0..12)
        .map(|i| {
            let t0 = mid_month(i);
            let t1 = if i == 11 { mid_month(0) + 365.0 } else { mid_month(i + 1) };
            (i, t0, t1)
        })
        .find(|&(_, t0, t1)| t >= t0 && t < t1)
        .unwrap_or((11, mid_month(11) - 365.0, mid_month(0)));
    let p = |k: isize| monthly[(i as isize + k).rem_euclid(12) as usize];
    let (p0, p1, p2, p3) = (p(-1), p(0), p(1), p(2));
    let u = (t - t0) / (t1 - t0);
    let u2 = u * u;
    let u3 = u2 * u;
    0.5 * ((2.0 * p1)
        + (-p0 + p2) * u
        + (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3) * u2
        + (-p0 + 3.0 * p1 - 3.0 * p2 + p3) * u3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_through_mid_month_values_and_wraps() {
        let monthly = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 30.0, 20.0, 10.0, 5.0, 3.0, 2.0];
        // 15 July (day 196) noon is 195.5, July's mid-month is 181 + 15.5 = 196.5: close, not exact.
        let jan_mid_day = 16; // noon of 16 Jan = 15.5 = mid-January
        assert!((interpolate(&monthly, jan_mid_day) - 1.0).abs() < 1e-9);
        // Continuous across the year end.
        let dec31 = interpolate(&monthly, 365);
        let jan1 = interpolate(&monthly, 1);
        assert!((dec31 - jan1).abs() < 0.2, "{dec31} vs {jan1}");
        assert_eq!(interpolate(&monthly, 366), dec31);
    }

    #[test]
    fn rejects_bad_rows_with_line_and_column() {
        let header = HEADER.join(",");
        let row = "1,X,CN,1,2,a,0,0,0,0,0,0,0,0,0,0,0,,,,,,,,,,,,,p,s,q";
        let error = parse_csv(&format!("{header}\n{row}\n"), "x.csv").unwrap_err().to_string();
        assert!(
            error.contains("x.csv") && error.contains("line 2") && error.contains("t01"),
            "{error}"
        );
        let error = parse_csv("a,b\n", "y.csv").unwrap_err().to_string();
        assert!(error.contains("expected the header"), "{error}");
    }
}
