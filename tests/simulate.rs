//! Golden test of `almanac simulate` (the real binary): the autumn moisturizer
//! over Aug–Dec 2027 on the bundled sample members reaches Harbin in September and
//! Guangzhou in December, at 10:00 local, in Mandarin and Cantonese; Hong Kong gets
//! Traditional-script Cantonese; the output is byte-for-byte deterministic.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The campaign file on main, else the fixture copy of it.
fn moisturizer() -> PathBuf {
    let on_main = root().join("campaigns/autumn-moisturizer.toml");
    if on_main.exists() { on_main } else { root().join("tests/fixtures/autumn-moisturizer.toml") }
}

fn simulate(campaign: &Path, from: &str, to: &str, format: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .current_dir(root())
        .args(["simulate", "--from", from, "--to", to, "--format", format])
        .arg(campaign)
        .output()
        .expect("run almanac simulate");
    assert!(
        output.status.success(),
        "almanac simulate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn pushes(jsonl: &str) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> =
        jsonl.lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect();
    let summary = lines.pop().expect("a summary line");
    assert!(summary.get("summary").is_some(), "last line is the summary: {summary}");
    (lines, summary)
}

fn in_city<'a>(pushes: &'a [Value], city: &str) -> Vec<&'a Value> {
    pushes.iter().filter(|p| p["city"] == city).collect()
}

#[test]
fn moisturizer_reaches_harbin_in_september_and_guangzhou_in_december() {
    let out = simulate(&moisturizer(), "2027-08-01", "2027-12-31", "jsonl");
    let (pushes, summary) = pushes(&out);

    let harbin = in_city(&pushes, "Harbin");
    assert!(harbin.len() >= 10, "Harbin pushes: {}", harbin.len());
    for push in &harbin {
        let local = push["local"].as_str().unwrap();
        assert!(local.starts_with("2027-09-") && local.ends_with(" 10:00"), "Harbin at {local}");
        assert_eq!(push["tz"], "Asia/Shanghai");
        let lang = push["lang"].as_str().unwrap();
        assert!(lang == "cmn-Hans" || lang == "zh-Hans", "Harbin in {lang}");
        assert!(push["text"].as_str().unwrap().contains("保湿"), "{push}");
    }

    let guangzhou = in_city(&pushes, "Guangzhou");
    assert!(guangzhou.len() >= 10, "Guangzhou pushes: {}", guangzhou.len());
    for push in &guangzhou {
        let local = push["local"].as_str().unwrap();
        assert!(local.starts_with("2027-12-") && local.ends_with(" 10:00"), "Guangzhou at {local}");
        assert_eq!(push["tz"], "Asia/Shanghai");
        assert!(push["lang"].as_str().unwrap().starts_with("yue"), "{push}");
    }
    // One push per member: the campaign's per_member = 1.
    let mut members: Vec<i64> = pushes.iter().map(|p| p["member_id"].as_i64().unwrap()).collect();
    let total = members.len();
    members.sort();
    members.dedup();
    assert_eq!(members.len(), total, "a member got the moisturizer twice");

    // Phones never in full; unresolved members counted, not sent.
    for push in &pushes {
        if let Some(phone) = push["phone"].as_str() {
            assert!(phone.contains("****"), "unmasked phone {phone}");
        }
    }
    let campaign = &summary["summary"]["autumn-moisturizer-2027"];
    assert_eq!(
        campaign["sent"].as_u64().unwrap() + campaign["holdout"].as_u64().unwrap(),
        pushes.len() as u64
    );
    assert!(campaign["skipped"]["unresolved"].as_u64().unwrap_or(0) >= 1, "{summary}");
}

#[test]
fn hong_kong_gets_traditional_cantonese() {
    // Hong Kong's normal crosses 17 °C around the turn of the year: replay to January.
    let out = simulate(&moisturizer(), "2027-08-01", "2028-01-31", "jsonl");
    let (pushes, _) = pushes(&out);
    let hong_kong = in_city(&pushes, "Hong Kong");
    assert!(!hong_kong.is_empty(), "no push to Hong Kong");
    for push in &hong_kong {
        assert_eq!(push["lang"], "yue-Hant", "{push}");
        assert_eq!(push["tz"], "Asia/Hong_Kong");
        assert!(push["local"].as_str().unwrap().ends_with(" 10:00"));
        assert!(push["text"].as_str().unwrap().contains("保濕"), "{push}");
    }
}

#[test]
fn simulate_is_deterministic() {
    let first = simulate(&moisturizer(), "2027-08-01", "2027-12-31", "text");
    let second = simulate(&moisturizer(), "2027-08-01", "2027-12-31", "text");
    assert_eq!(first, second);
    assert!(first.contains("summary\nautumn-moisturizer-2027: sent "), "{first}");
    assert!(!first.contains("+8613"), "a phone number printed in full");
}

/// A weekly campaign simulated from a Friday: the Monday before fell due before
/// the simulation saw the campaign, so it is not printed (it was, dated
/// 2027-01-04, when the window reached back over it).
#[test]
fn simulate_from_a_friday_prints_nothing_that_fell_due_before() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weekly.toml");
    std::fs::write(
        &file,
        r#"id = "weekly"
name = "Weekly"
channel = "log"
default_lang = "zh-Hans"

[timing]
trigger = "cron"
cron = "0 10 * * MON"
window = "7d"

[[message]]
lang = "zh-Hans"
text = "{{ local_date }}"
"#,
    )
    .unwrap();
    let out = simulate(&file, "2027-01-08", "2027-01-12", "jsonl");
    let (pushes, _) = pushes(&out);
    assert!(!pushes.is_empty(), "Monday 2027-01-11 is sent");
    for push in &pushes {
        let local = push["local"].as_str().unwrap();
        assert!(local >= "2027-01-08", "a push dated {local}, before --from 2027-01-08");
        assert_eq!(push["occurrence"], "2027-01-11T10:00");
    }
}
