//! `almanac check` end to end through the real binary: exit codes, output formats,
//! all errors of all files in one run, warnings that do not fail, and the example
//! campaigns.

use std::path::Path;
use std::process::{Command, Output};

fn almanac(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_almanac"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run almanac")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const VALID: &str = r#"id = "ok"
name = "OK"
channel = "log"
default_lang = "en"

[timing]
trigger = "cron"
cron = "0 10 * * MON"

[[message]]
lang = "en"
text = "Hello {{ name }}"
"#;

#[test]
fn example_campaigns_pass() {
    let output = almanac(&["check", "campaigns/"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("0 errors"), "{}", stdout(&output));
    // The default path is `campaigns/`.
    let default = almanac(&["check"]);
    assert_eq!(default.status.code(), Some(0), "{}", stdout(&default));
    assert_eq!(stdout(&default), stdout(&output).replace("campaigns/", "campaigns"));
}

#[test]
fn example_campaigns_declare_the_schema() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns");
    let mut n_examples = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            n_examples += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("#:schema ./campaign.schema.json\n"),
                "{} lacks the taplo schema directive",
                path.display()
            );
        }
    }
    assert!(n_examples >= 4);
}

#[test]
fn usage_errors_exit_2() {
    let missing = almanac(&["check", "campaigns/", "does/not/exist.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does/not/exist.toml"));
    let bad_flag = almanac(&["check", "--bogus"]);
    assert_eq!(bad_flag.status.code(), Some(2));
    let bad_format = almanac(&["check", "--format", "xml", "campaigns/"]);
    assert_eq!(bad_format.status.code(), Some(2));
}

#[test]
fn syntax_and_semantic_errors_in_two_files_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), "id = \"a\"\nname = = \"A\"\n").unwrap();
    std::fs::write(dir.path().join("b.toml"), VALID.replace("0 10 * * MON", "0 10 * * FUNDAY"))
        .unwrap();
    std::fs::write(dir.path().join("c.toml"), VALID.replace("\"ok\"", "\"c\"")).unwrap();
    let output = almanac(&["check", "--format", "json", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let items: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    let found: Vec<(String, u64, u64)> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let file = Path::new(d["file"].as_str().unwrap());
            (
                file.file_name().unwrap().to_string_lossy().into_owned(),
                d["line"].as_u64().unwrap(),
                d["col"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, [("a.toml".to_string(), 2, 8), ("b.toml".to_string(), 8, 8)]);
    assert!(items[0]["message"].as_str().unwrap().contains("TOML syntax error"));
    assert!(items[1]["message"].as_str().unwrap().contains("invalid cron expression"));
}

#[test]
fn github_format_annotates_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, VALID.replace("channel =", "chanel = \"x\"\nchannel =")).unwrap();
    let output = almanac(&["check", "--format", "github", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let expected_prefix = format!(
        "::error file={},line=3,col=1::unknown key `chanel`%0Ahelp: did you mean `channel`?",
        path.display().to_string().replace(':', "%3A").replace(',', "%2C")
    );
    assert!(text.starts_with(&expected_prefix), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn warnings_do_not_fail_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("promo.toml");
    let text =
        VALID.replace("channel = \"log\"", "channel = \"wechat-main\"\npurpose = \"marketing\"");
    std::fs::write(&path, text).unwrap();
    let output = almanac(&["check", "--format", "github", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).starts_with("::warning "), "{}", stdout(&output));
    assert!(stdout(&output).contains("must not carry marketing"));
}

#[test]
fn byte_order_mark_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bom.toml");
    std::fs::write(&path, [b"\xEF\xBB\xBF".as_slice(), VALID.as_bytes()].concat()).unwrap();
    let output = almanac(&["check", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}

#[test]
fn expensive_templates_are_checked_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loops.toml");
    let text = VALID.replace(
        "Hello {{ name }}",
        "{% for a in range(10000) %}{% for b in range(10000) %}{{ name }}{% endfor %}{% endfor %}",
    );
    std::fs::write(&path, text).unwrap();
    let started = std::time::Instant::now();
    let output = almanac(&["check", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn a_file_named_twice_is_checked_once() {
    let output = almanac(&["check", "campaigns/", "campaigns/weekly-digest.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).starts_with("checked 4 files:"), "{}", stdout(&output));
}

/// A file of 16,000 variants of one language: every duplicate is reported, each
/// at its own line and naming the first one's line (the work is linear in the
/// file; `benches/campaigns.rs` times it).
#[test]
fn sixteen_thousand_duplicate_variants_are_each_reported() {
    const VARIANTS: usize = 16_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("duplicates.toml");
    let head = VALID.split("[[message]]").next().unwrap();
    let mut text = head.to_string();
    for _ in 0..VARIANTS {
        text.push_str("[[message]]\nlang = \"en\"\ntext = \"Hello {{ name }}\"\n");
    }
    std::fs::write(&path, &text).unwrap();
    let output = almanac(&["check", "--format", "json", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let diagnostics: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let first_line = head.lines().count() + 2;
    assert_eq!(diagnostics.len(), VARIANTS - 1);
    for (i, d) in diagnostics.iter().enumerate() {
        let message = format!("duplicate message for `en` (first at line {first_line})");
        assert_eq!(d["message"], message.as_str(), "{d}");
        assert_eq!(d["line"], first_line + 3 * (i + 1), "{d}");
        assert_eq!(d["col"], 8, "{d}");
    }
}

#[test]
fn ambiguous_audience_city_is_an_error_with_its_candidates_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("suzhou.toml");
    let with_cities = |cities: &str| {
        VALID.replace("[timing]", &format!("[audience]\ncities = {cities}\n\n[timing]"))
    };
    std::fs::write(&path, with_cities(r#"["Harbin", "Suzhou"]"#)).unwrap();
    let output = almanac(&["check", "--format", "json", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let items: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["severity"], "error", "{items:?}");
    assert_eq!((items[0]["line"].as_u64(), items[0]["col"].as_u64()), (Some(7), Some(21)));
    let message = format!(
        "{} {}",
        items[0]["message"].as_str().unwrap(),
        items[0]["help"].as_str().unwrap_or("")
    );
    for needle in ["Suzhou", "苏州市", "宿州市", "Jiangsu", "Anhui", "\"Suzhou, Jiangsu\""] {
        assert!(message.contains(needle), "{needle} missing from {message}");
    }
    // The forms the message offers are accepted, as are world cities' common names.
    std::fs::write(&path, with_cities(r#"["Suzhou, Jiangsu", "宿州", "苏州市", "New York"]"#))
        .unwrap();
    let output = almanac(&["check", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}
