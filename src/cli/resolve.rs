//! `almanac resolve <phone | city | lat,lon | ip>`: prints the place a hint
//! resolves to (city, province, country, zone, dialect and tag, the 12 monthly
//! mean temperatures, where they come from and whether that source can be
//! checked (`sourced`, `temp_sourced`, `unsourced`), the resolver and its confidence).

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::geo::{Geo, GeoConfig, LocationHints, Resolution};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `almanac resolve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A phone number (`+86 139 0451 1234`, `020-12345678`), a city (`苏州`,
    /// `Suzhou`), coordinates (`45.75,126.65`) or an IP address.
    pub input: String,
    /// Province / state to disambiguate a city name (`江苏`, `Anhui`).
    #[arg(long)]
    pub province: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// A TOML file with a `[geo]`-style table (zones, precedence, climate_overrides).
    #[arg(long)]
    pub geo_config: Option<std::path::PathBuf>,
}

/// What kind of hint the input looks like.
fn hints<'a>(input: &'a str, province: Option<&'a str>) -> LocationHints<'a> {
    let trimmed = input.trim();
    if let Some((lat, lon)) = trimmed.split_once(',')
        && let (Ok(lat), Ok(lon)) = (lat.trim().parse::<f64>(), lon.trim().parse::<f64>())
    {
        return LocationHints { coordinates: Some((lat, lon)), ..Default::default() };
    }
    if trimmed.parse::<std::net::IpAddr>().is_ok() {
        return LocationHints { ip: Some(trimmed), ..Default::default() };
    }
    let phone_like = !trimmed.is_empty()
        && trimmed.chars().any(|c| c.is_ascii_digit())
        && trimmed.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if phone_like {
        LocationHints { phone: Some(trimmed), ..Default::default() }
    } else {
        LocationHints { city: Some(trimmed), province, ..Default::default() }
    }
}

/// Runs `almanac resolve`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let owned;
    let geo: &Geo = match &args.geo_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let config: GeoConfig =
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            owned = Geo::with_config(config)?;
            &owned
        }
        None => Geo::bundled(),
    };
    let hints = hints(&args.input, args.province.as_deref());
    match geo.resolve_detailed(&hints) {
        Ok(resolution) => {
            let value = describe(geo, &resolution);
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&value)?),
                Format::Text => print_text(&value),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            match args.format {
                Format::Json => {
                    println!("{}", json!({ "input": args.input, "error": error.to_string() }))
                }
                Format::Text => eprintln!("error: {}: {error}", args.input),
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// The resolution as JSON (also the source of the text output).
pub fn describe(geo: &Geo, resolution: &Resolution) -> serde_json::Value {
    let place = resolution.place;
    let city = geo.city(place.city);
    let meta = geo.city_meta(place.city);
    let climate = geo.climate(place.city).map(|c| {
        json!({
            "row": c.row.name,
            "distance_km": (f64::from(c.distance_km) * 10.0).round() / 10.0,
            "mean_temp_c": c.row.temp_c,
            "rel_humidity_pct": c.row.rh_pct,
            "period": c.row.period,
            "source": c.row.source,
            "quality": c.row.quality,
            "quality_meaning": c.row.quality.meaning(),
        })
    });
    json!({
        "city": city.name,
        "city_zh": city.name_zh,
        "geonames_id": city.geonames_id,
        "province": city.province,
        "province_zh": city.province_zh,
        "country": city.country,
        "lat": city.lat,
        "lon": city.lon,
        "tz": place.tz.name(),
        "dialect": city.dialect,
        "dialect_note": meta.note,
        "lang_tag": city.lang_tag,
        "source": place.source.as_str(),
        "confidence": (f64::from(place.confidence) * 100.0).round() / 100.0,
        "distance_km": place.distance_km.map(|d| (f64::from(d) * 10.0).round() / 10.0),
        "detail": resolution.detail,
        "skipped": resolution.skipped,
        "climate": climate,
    })
}

fn print_text(v: &serde_json::Value) {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let zh = v["city_zh"].as_str().map(|z| format!(" ({z})")).unwrap_or_default();
    let province =
        if s("province").is_empty() { String::new() } else { format!("{}, ", s("province")) };
    println!("city:       {}{zh}, {province}{}", s("city"), s("country"));
    println!("zone:       {}", s("tz"));
    let dialect = if s("dialect").is_empty() { "-".to_string() } else { s("dialect") };
    let note = if s("dialect_note").is_empty() {
        String::new()
    } else {
        format!(" ({})", s("dialect_note"))
    };
    println!("dialect:    {dialect}, tag {}{note}", s("lang_tag"));
    let distance = v["distance_km"].as_f64().map(|d| format!(", {d} km")).unwrap_or_default();
    println!(
        "source:     {} (confidence {}{distance}): {}",
        s("source"),
        v["confidence"],
        s("detail")
    );
    for reason in v["skipped"].as_array().into_iter().flatten() {
        println!("skipped:    {}", reason.as_str().unwrap_or(""));
    }
    match v["climate"].as_object() {
        Some(c) => {
            let temps: Vec<String> = c["mean_temp_c"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| format!("{:.1}", t.as_f64().unwrap_or(f64::NAN)))
                .collect();
            println!("mean °C:    {}", temps.join(" "));
            println!(
                "climate:    row {} ({} km), period {}; {}",
                c["row"].as_str().unwrap_or(""),
                c["distance_km"],
                c["period"].as_str().unwrap_or(""),
                c["source"].as_str().unwrap_or("")
            );
            println!(
                "quality:    {} ({})",
                c["quality"].as_str().unwrap_or(""),
                c["quality_meaning"].as_str().unwrap_or("")
            );
        }
        None => println!("climate:    no normals row within 300 km"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_inputs() {
        assert!(hints("45.75, 126.65", None).coordinates.is_some());
        assert!(hints("+86 139-0451-1234", None).phone.is_some());
        assert!(hints("10.0.0.1", None).ip.is_some());
        assert!(hints("::1", None).ip.is_some());
        assert_eq!(hints("苏州", Some("江苏")).city, Some("苏州"));
        assert_eq!(hints("Xi'an", None).city, Some("Xi'an"));
    }
}
