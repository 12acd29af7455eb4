//! `almanac climate import` against a local server that answers in the
//! Open-Meteo archive API's JSON; the CSV it writes overrides the bundled table.

use std::collections::HashMap;
use std::process::Command;

use almanac::campaign::ClimateMetric;
use almanac::geo::{Geo, GeoConfig};
use axum::Json;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{Datelike, NaiveDate};
use serde_json::json;

/// A synthetic daily series whose monthly means are known: temperature =
/// 2 × month − 10 (+ a ±3 °C wiggle that averages out within each month's
/// pairs of days), humidity = 40 + month; one missing day per January.
async fn archive(Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    for key in ["latitude", "longitude", "start_date", "end_date", "daily", "timezone"] {
        if !q.contains_key(key) {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": true, "reason": format!("missing {key}")})),
            );
        }
    }
    if q["daily"] != "temperature_2m_mean,relative_humidity_2m_mean"
        || q.get("models").map(String::as_str) != Some("era5")
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": true, "reason": "Cannot initialize WeatherVariable"})),
        );
    }
    if q["latitude"].starts_with("-") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": true, "reason": "test: southern hemisphere refused"})),
        );
    }
    let start = NaiveDate::parse_from_str(&q["start_date"], "%Y-%m-%d").unwrap();
    let end = NaiveDate::parse_from_str(&q["end_date"], "%Y-%m-%d").unwrap();
    let (mut time, mut temp, mut rh) = (Vec::new(), Vec::new(), Vec::new());
    let mut day = start;
    while day <= end {
        let m = f64::from(day.month());
        time.push(day.format("%Y-%m-%d").to_string());
        if day.month() == 1 && day.day() == 31 {
            temp.push(None);
            rh.push(None);
        } else {
            // Days 1–28 wiggle ±3 in pairs; later days carry the plain mean.
            let wiggle = if day.day() <= 28 {
                if day.day().is_multiple_of(2) { 3.0 } else { -3.0 }
            } else {
                0.0
            };
            temp.push(Some(2.0 * m - 10.0 + wiggle));
            rh.push(Some(40.0 + m));
        }
        day = day.succ_opt().unwrap();
    }
    (
        StatusCode::OK,
        Json(json!({
            "latitude": q["latitude"], "longitude": q["longitude"], "generationtime_ms": 0.1,
            "utc_offset_seconds": 28800, "timezone": q["timezone"], "timezone_abbreviation": "CST", "elevation": 151.0,
            "daily_units": {"time": "iso8601", "temperature_2m_mean": "°C", "relative_humidity_2m_mean": "%"},
            "daily": {"time": time, "temperature_2m_mean": temp, "relative_humidity_2m_mean": rh},
        })),
    )
}

fn serve() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route("/v1/archive", axum::routing::get(archive));
            axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

#[test]
fn import_writes_monthly_means_that_override_the_bundled_table() {
    let base = serve();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("era5.csv");
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .args([
            "climate",
            "import",
            "--city",
            "哈尔滨",
            "--city",
            "Suzhou",
            "--province",
            "Jiangsu",
        ])
        .args(["--first-year", "2001", "--last-year", "2003", "--api-base", &base, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    // `--province Jiangsu` applies to every city: Harbin is not in Jiangsu.
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("哈尔滨"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .args(["climate", "import", "--city", "哈尔滨", "--city", "Guangzhou"])
        .args(["--first-year", "2001", "--last-year", "2003", "--api-base", &base, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows = almanac::geo::climate::read_csv(&out).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].name, "Harbin");
    assert_eq!(rows[0].period, "2001-2003");
    for (m, t) in rows[0].temp_c.iter().enumerate() {
        let expected = 2.0 * (m as f64 + 1.0) - 10.0;
        assert!((t - expected).abs() < 0.05, "month {}: {t} vs {expected}", m + 1);
    }
    assert_eq!(rows[0].rh_pct.unwrap()[6], 47.0);
    // The archive can be asked again for the same figures: a checkable source.
    assert_eq!(serde_json::to_value(&rows[0]).unwrap()["quality"], "sourced");
    assert!(rows[0].source.contains("Open-Meteo"), "{}", rows[0].source);

    let config = GeoConfig { climate_overrides: Some(out.clone()), ..GeoConfig::default() };
    let geo = Geo::with_config(config).unwrap();
    let harbin = geo.find_city("Harbin", None).unwrap();
    assert_eq!(geo.climate(harbin).unwrap().row.period, "2001-2003");
    // Mid-July (day 196) follows the imported curve (≈ 4 °C), not Harbin's bundled 23.7 °C.
    let july = geo.normal(harbin, 196, ClimateMetric::MeanTempC).unwrap();
    assert!((july - 4.0).abs() < 0.5, "{july}");
    assert!(Geo::bundled().normal(harbin, 196, ClimateMetric::MeanTempC).unwrap() > 20.0);
}

#[test]
fn api_errors_are_reported_with_the_reason() {
    let base = serve();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.csv");
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .args([
            "climate",
            "import",
            "--city",
            "Sydney",
            "--api-base",
            &base,
            "--first-year",
            "2001",
            "--last-year",
            "2001",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HTTP 400") && stderr.contains("southern hemisphere refused"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn an_override_row_with_an_unknown_quality_names_file_line_and_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let bundled = include_str!("../data/climate_normals.csv");
    let header = bundled.lines().next().unwrap();
    let row = |name: &str| bundled.lines().find(|l| l.contains(&format!(",{name},"))).unwrap();
    let (tianjin, harbin) = (row("Tianjin"), row("Harbin"));
    // Line 3 carries a free-text quality note instead of one of the three words.
    let (rest, _) = harbin.rsplit_once(',').unwrap();
    let csv = format!("{header}\n{tianjin}\n{rest},medium: +-1 C\n");
    let overrides = dir.path().join("overrides.csv");
    std::fs::write(&overrides, csv).unwrap();
    let config = dir.path().join("geo.toml");
    std::fs::write(&config, format!("climate_overrides = {:?}\n", overrides.display().to_string()))
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .args(["resolve", "Harbin", "--geo-config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        stderr.contains("overrides.csv, line 3")
            && stderr.contains("quality")
            && stderr.contains("sourced, temp_sourced, unsourced")
            && stderr.contains("medium: +-1 C"),
        "{stderr}"
    );
}
