//! Every metric name that the shipped Grafana dashboard or the alert rules query is
//! one the running daemon exports: the test starts the real binary, scrapes
//! `/metrics`, and compares.

#[path = "daemon/support.rs"]
mod support;

use std::collections::BTreeSet;

use support::Daemon;

/// Metric names (`almanac_…`, `process_…`) mentioned in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (text[i..].starts_with("almanac_") || text[i..].starts_with("process_")) {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |n| i + n);
            names.insert(text[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// Names the exposition declares or samples, with `_bucket`/`_sum`/`_count` of
/// histograms.
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
            names.insert(name.to_owned());
            if kind == "histogram" || kind == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

#[test]
fn dashboard_and_alerts_query_only_exported_metrics() {
    let config = r#"
database = "sqlite:almanac.db"
campaigns_dir = "campaigns"
listen = "127.0.0.1:0"
[channels.log]
type = "log"
"#;
    let daemon = Daemon::start(config, &[], "");
    let (status, exposition) = daemon.http("GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    let exported = exported(&exposition);

    let dashboard: serde_json::Value =
        serde_json::from_str(&support::repo_file("deploy/grafana-dashboard.json")).unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(names_in(target["expr"].as_str().unwrap()));
        }
    }
    let from_dashboard = queried.len();
    queried.extend(names_in(&support::repo_file("deploy/alerts.yml")));
    assert!(from_dashboard >= 10, "the dashboard queries too few metrics: {queried:?}");

    let missing: Vec<&String> = queried.iter().filter(|name| !exported.contains(*name)).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}\nexported: {exported:?}");
}

#[test]
fn name_extraction_finds_histogram_suffixes() {
    let names = names_in(
        "histogram_quantile(0.99, sum by (le) (rate(almanac_fire_lateness_seconds_bucket[5m])))",
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["almanac_fire_lateness_seconds_bucket"]);
    let exported = exported("# TYPE almanac_x histogram\nalmanac_x_bucket{le=\"1\"} 0\n");
    assert!(exported.contains("almanac_x_count"));
}
