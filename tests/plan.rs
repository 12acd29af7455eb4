//! `almanac plan` (the real binary): the moisturizer's map per city over the whole
//! gazetteer, and over the sample members grouped per variant.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn moisturizer() -> PathBuf {
    let on_main = root().join("campaigns/autumn-moisturizer.toml");
    if on_main.exists() { on_main } else { root().join("tests/fixtures/autumn-moisturizer.toml") }
}

fn plan(extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .current_dir(root())
        .arg("plan")
        .arg(moisturizer())
        .args(["--year", "2027"])
        .args(extra)
        .output()
        .expect("run almanac plan");
    assert!(
        output.status.success(),
        "almanac plan failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

fn row<'a>(plan: &'a Value, group_prefix: &str) -> &'a Value {
    plan["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"].as_str().unwrap().starts_with(group_prefix))
        .unwrap_or_else(|| panic!("no row for {group_prefix}"))
}

#[test]
fn plan_shows_each_city_at_its_own_date_and_variant() {
    let plan: Value = serde_json::from_str(&plan(&["--format", "json"])).unwrap();
    let harbin = row(&plan, "Harbin ");
    assert!(harbin["local"].as_str().unwrap().starts_with("2027-09-"), "{harbin}");
    assert!(harbin["local"].as_str().unwrap().ends_with("T10:00:00"), "{harbin}");
    assert!(harbin["due_at"].as_str().unwrap().ends_with("T02:00:00Z"), "{harbin}");
    assert_eq!(harbin["lang"], "cmn-Hans");
    let guangzhou = row(&plan, "Guangzhou ");
    assert!(guangzhou["local"].as_str().unwrap().starts_with("2027-12-"), "{guangzhou}");
    assert_eq!(guangzhou["lang"], "yue-Hans");
    let sends: u64 =
        plan["rows"].as_array().unwrap().iter().map(|r| r["members"].as_u64().unwrap()).sum();
    assert_eq!(sends, plan["sends"]["autumn-moisturizer-2027"].as_u64().unwrap());
}

#[test]
fn plan_over_members_by_variant_adds_up() {
    let plan: Value = serde_json::from_str(&plan(&[
        "--members",
        "data/sample-members.jsonl",
        "--by",
        "variant",
        "--format",
        "json",
    ]))
    .unwrap();
    let rows = plan["rows"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["group"].as_str().unwrap().starts_with("yue-Hans")));
    assert!(rows.iter().any(|r| r["group"].as_str().unwrap().starts_with("cmn-Hans")));
    let members: u64 = rows.iter().map(|r| r["members"].as_u64().unwrap()).sum();
    assert!(members > 0);
    assert!(members <= plan["members"].as_u64().unwrap());

    let table = plan_table();
    assert!(table.contains("campaign autumn-moisturizer-2027, 2027"), "{table}");
    assert!(table.contains("total: "), "{table}");
}

fn plan_table() -> String {
    plan(&["--members", "data/sample-members.jsonl"])
}

#[test]
fn plan_csv_has_a_header_and_one_line_per_row() {
    let csv = plan(&["--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "campaign,group,occurrence,local,tz,due_at,lang,variant,members,holdout,sample_text"
    );
    assert!(lines.count() > 10);
}

/// `plan --global-cap` applies the daemon's cap across campaigns: two campaigns
/// a day apart under one push per week keep the higher priority one.
#[test]
fn plan_applies_the_global_cap_by_priority() {
    let dir = tempfile::tempdir().unwrap();
    for (id, date, priority) in [("promo", "2027-03-01", 0), ("alert", "2027-03-02", 10)] {
        std::fs::write(
            dir.path().join(format!("{id}.toml")),
            format!(
                "id = \"{id}\"\nname = \"{id}\"\nchannel = \"log\"\ndefault_lang = \"zh-Hans\"\n\
                 priority = {priority}\n[timing]\ntrigger = \"once\"\ndate = \"{date}\"\n\
                 local_time = \"10:00\"\n[[message]]\nlang = \"zh-Hans\"\ntext = \"hi\"\n"
            ),
        )
        .unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .current_dir(root())
        .arg("plan")
        .arg(dir.path())
        .args(["--year", "2027", "--format", "json", "--global-cap", "1/7d"])
        .args(["--members", "data/sample-members.jsonl"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(plan["sends"]["alert"].as_u64().unwrap() > 0, "{}", plan["sends"]);
    assert_eq!(plan["sends"].get("promo"), None, "{}", plan["sends"]);
    assert!(plan["skipped"]["promo"]["global_cap"].as_u64().unwrap() > 0, "{}", plan["skipped"]);
}

/// `almanac plan --format json` of one campaign file over 2027.
fn plan_file(path: &std::path::Path) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .current_dir(root())
        .arg("plan")
        .arg(path)
        .args(["--year", "2027", "--format", "json"])
        .output()
        .expect("run almanac plan");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn example_campaigns_write_simplified_on_the_mainland_and_traditional_in_hk_mo_tw() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("campaigns"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    let mut wrong = Vec::new();
    let mut regions_seen = std::collections::BTreeSet::new();
    for file in &files {
        let plan = plan_file(file);
        let rows = plan["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{} plans nothing", file.display());
        for row in rows {
            let group = row["group"].as_str().unwrap();
            let lang = row["lang"].as_str().unwrap();
            // Groups read "Harbin 哈尔滨市 (CN)".
            let country = group.rsplit('(').next().unwrap().trim_end_matches(')');
            let script = match country {
                "CN" => "hans",
                "HK" | "MO" | "TW" => "hant",
                _ => continue,
            };
            regions_seen.insert(country.to_string());
            let has_script = lang.to_ascii_lowercase().split('-').any(|s| s == script);
            if !has_script {
                wrong.push(format!("{}: {group} gets {lang}", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{} rows in the wrong script:\n{}", wrong.len(), wrong.join("\n"));
    for region in ["CN", "HK", "MO", "TW"] {
        assert!(regions_seen.contains(region), "no example campaign reaches {region}");
    }
}

#[test]
fn climate_crossings_that_never_happen_are_skips_not_silence() {
    // Lhasa never reaches 17 °C and Sanya never drops below it.
    let plan: Value = serde_json::from_str(&plan(&["--format", "json"])).unwrap();
    let skipped = &plan["skipped"]["autumn-moisturizer-2027"];
    let no_crossing = skipped["no_crossing"].as_u64().unwrap_or(0);
    assert!(no_crossing >= 2, "skips: {skipped}");
    assert!(plan["rows"].as_array().unwrap().iter().all(|r| {
        let group = r["group"].as_str().unwrap();
        !group.starts_with("Lhasa ") && !group.starts_with("Sanya ")
    }));

    // The same through `simulate`, for members living there.
    let dir = tempfile::tempdir().unwrap();
    let members = dir.path().join("members.jsonl");
    std::fs::write(
        &members,
        r#"{"external_id":"lhasa","name":"L","city":"拉萨","tags":["skincare"]}
{"external_id":"sanya","name":"S","city":"Sanya","tags":["skincare"]}
{"external_id":"harbin","name":"H","city":"Harbin","tags":["skincare"]}
"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .current_dir(root())
        .args(["simulate", "--from", "2027-06-01", "--to", "2027-12-31", "--format", "jsonl"])
        .arg("--members")
        .arg(&members)
        .arg(moisturizer())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let last = String::from_utf8(output.stdout).unwrap().lines().last().unwrap().to_string();
    let summary: Value = serde_json::from_str(&last).unwrap();
    let campaign = &summary["summary"]["autumn-moisturizer-2027"];
    assert_eq!(campaign["skipped"]["no_crossing"], 2, "{summary}");
    assert_eq!(campaign["sent"], 1, "{summary}");
}
