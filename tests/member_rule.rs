//! One member rule for every way in: the admin API of the real daemon refuses
//! each invalid field with the importer's own words and stores nothing; on
//! PostgreSQL a value the server would refuse (a NUL character) is a row error
//! before the COPY, so the good rows of the file land, and a daemon whose member
//! file holds such a row starts.

#[path = "daemon/support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use almanac::members::{Format, read};
use almanac::store::testing::TestDb;
use support::{ADMIN_TOKEN, Daemon};

const CONFIG: &str = r#"database = "sqlite:almanac.db"
campaigns_dir = "campaigns"
members_file = "members.jsonl"
listen = "127.0.0.1:0"

[channels.log]
type = "log"
"#;

/// Invalid member records (JSON), one field wrong in each.
fn invalid_members() -> Vec<(&'static str, String)> {
    let long_name = "名".repeat(40_000);
    vec![
        ("lat out of range", r#"{"external_id":"x","lat":1000.0,"lon":126.6}"#.to_owned()),
        ("lat without lon", r#"{"external_id":"x","lat":45.7}"#.to_owned()),
        ("malformed phone", r#"{"external_id":"x","phone":"not a phone"}"#.to_owned()),
        ("oversize name", format!(r#"{{"external_id":"x","name":"{long_name}"}}"#)),
        ("NUL in name", r#"{"external_id":"x","name":"a\u0000b"}"#.to_owned()),
        ("NUL in a tag", r#"{"external_id":"x","tags":["ok","b\u0000d"]}"#.to_owned()),
        ("NUL in an attribute", r#"{"external_id":"x","attrs":{"tier":"g\u0000ld"}}"#.to_owned()),
        (
            "instant out of range",
            r#"{"external_id":"x","opted_out_at":"-0001-01-01T00:00:00Z"}"#.to_owned(),
        ),
    ]
}

/// The importer's reason for one JSON line.
fn importer_reason(line: &str) -> String {
    let bytes = format!("{line}\n").into_bytes();
    let mut rows = read(std::io::Cursor::new(bytes), Format::Jsonl, "members.jsonl").unwrap();
    match rows.next().unwrap() {
        Ok(member) => panic!("the importer accepted {member:?}"),
        Err(error) => error.reason,
    }
}

#[test]
fn the_admin_api_refuses_each_invalid_field_as_the_importer_does() {
    let daemon = Daemon::start(CONFIG, &[], "");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    for (what, body) in invalid_members() {
        let reason = importer_reason(&body);
        let (status, text) = daemon.http("PUT", "/v1/members/x", &headers, &body);
        assert_eq!(status, 400, "{what}: {text}");
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["error"], reason.as_str(), "{what}: the API and the importer differ");
        let (status, _) = daemon.http("GET", "/v1/members/x", &headers, "");
        assert_eq!(status, 404, "{what}: the invalid member was stored");
    }
    // A valid one still goes in (its phone normalized as the importer does).
    let body = r#"{"external_id":"x","phone":"139 0451 1234","city":"Harbin"}"#;
    let (status, text) = daemon.http("PUT", "/v1/members/x", &headers, body);
    assert_eq!(status, 201, "{text}");
    let (status, text) = daemon.http("GET", "/v1/members/x", &headers, "");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Harbin"), "{text}");
}

/// 25,000 good rows with one NUL row in the middle.
fn member_file_with_a_nul_row(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::new();
    for i in 0..25_000 {
        text.push_str(&format!(
            "{{\"external_id\":\"m{i:05}\",\"name\":\"会员\",\"city\":\"Harbin\"}}\n"
        ));
        if i == 12_000 {
            text.push_str("{\"external_id\":\"nul\",\"name\":\"bad\\u0000name\"}\n");
        }
    }
    let path = dir.join("members.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn postgres_import_with_a_nul_row_lands_every_good_row() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let Some(db) = runtime.block_on(TestDb::postgres()).unwrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = member_file_with_a_nul_row(dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .args(["members", "import"])
        .arg(&file)
        .args(["--database", &db.url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "one bad row: exit 1\n{stderr}");
    assert!(stderr.contains("row 12002") && stderr.contains("NUL"), "{stderr}");
    let counts = runtime.block_on(db.store.member_counts()).unwrap();
    assert_eq!(counts.total, 25_000, "{stderr}");
    runtime.block_on(db.cleanup()).unwrap();
}

#[test]
fn postgres_daemon_starts_with_a_nul_row_in_its_member_file() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let Some(db) = runtime.block_on(TestDb::postgres()).unwrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = member_file_with_a_nul_row(dir.path());
    let members = std::fs::read_to_string(file).unwrap();
    let config = CONFIG.replace("sqlite:almanac.db", &db.url);
    let mut daemon = Daemon::start(&config, &[], &members);
    daemon.poll("ready", Duration::from_secs(60), |d| d.http("GET", "/readyz", &[], "").0 == 200);
    assert!(daemon.log().contains("imported=25000 bad=1"), "{}", daemon.log());
    assert!(daemon.log().contains("NUL"), "the bad row is reported: {}", daemon.log());
    daemon.drain_notifications();
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
    runtime.block_on(db.cleanup()).unwrap();
}

/// Malformed phone numbers in the spellings CRMs export, each with the digits
/// `0451` and `7777` in the middle, which a masked phone never shows.
const MALFORMED_PHONES: [&str; 6] = [
    "139 0451 77771",
    "+86-139-0451-7777-9",
    "(0451) 8888 7777 99",
    "139.0451.7777x",
    "0086 139 0451 77 7 12",
    "1390451777712345678",
];

/// Fails when `text` shows a phone's middle digits.
fn assert_no_phone_digits(what: &str, text: &str) {
    for line in text.lines() {
        assert!(!line.contains("0451") && !line.contains("7777"), "{what} shows a phone: {line}");
    }
}

#[test]
fn no_log_line_shows_a_malformed_phone() {
    let members: String = MALFORMED_PHONES
        .iter()
        .enumerate()
        .map(|(i, phone)| {
            format!("{{\"external_id\":\"p{i}\",\"city\":\"Harbin\",\"phone\":\"{phone}\"}}\n")
        })
        .collect();
    let mut daemon = Daemon::start(CONFIG, &[], &members);
    // The admin API too: the refusal names the field, not the number.
    let auth = format!("Bearer {ADMIN_TOKEN}");
    for phone in MALFORMED_PHONES {
        let body = format!("{{\"external_id\":\"api\",\"phone\":\"{phone}\"}}");
        let (status, text) = daemon.http(
            "PUT",
            "/v1/members/api",
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(status, 400, "{phone}: {text}");
        assert!(text.contains("phone"), "{text}");
        assert_no_phone_digits("the admin API's answer", &text);
    }
    daemon.drain_notifications();
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success(), "{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("bad=6"), "the bad rows are reported: {log}");
    assert!(log.contains("139****71"), "a bad phone is named, masked: {log}");
    assert_no_phone_digits("the daemon's log", &log);
    let stdout = std::fs::read_to_string(daemon.path("stdout.log")).unwrap_or_default();
    assert_no_phone_digits("the daemon's stdout", &stdout);

    // And `almanac members import` of the same rows as CSV.
    let csv: String = std::iter::once("external_id,city,phone\n".to_owned())
        .chain(MALFORMED_PHONES.iter().enumerate().map(|(i, p)| format!("c{i},Harbin,\"{p}\"\n")))
        .collect();
    std::fs::write(daemon.path("members.csv"), csv).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .current_dir(daemon.dir.path())
        .args(["members", "import", "members.csv", "--database", "sqlite:import.db"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("phone"), "each bad row is named: {text}");
    assert_no_phone_digits("members import", &text);
}
