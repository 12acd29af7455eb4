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
