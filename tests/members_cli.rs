//! End to end: the real `almanac` binary imports, shows, exports and forgets
//! members in a SQLite file, resolving places with the bundled data.

use std::path::Path;
use std::process::{Command, Output};

fn almanac(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_almanac"))
        .args(args)
        .env_remove("ALMANAC_DATABASE_URL")
        .output()
        .expect("run almanac")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn import_show_export_forget() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("members.db").display());
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/members/malformed.csv");
    let fixture = fixture.to_str().unwrap();

    let migrate = almanac(&["migrate", "--database", &url]);
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));
    assert!(text(&migrate.stdout).contains("schema up to date"));

    let first = almanac(&["members", "import", fixture, "--database", &url]);
    let (stdout, stderr) = (text(&first.stdout), text(&first.stderr));
    assert_eq!(first.status.code(), Some(1), "rejected rows make exit 1: {stdout}{stderr}");
    assert!(stdout.contains("read 12, inserted 5, updated 0, unchanged 0, rejected 7"), "{stdout}");
    for row in [3, 4, 5, 6, 7, 9, 11] {
        assert!(stderr.contains(&format!("malformed.csv: row {row}: ")), "row {row}: {stderr}");
    }
    assert!(!stdout.contains('\u{1b}'), "no progress bar when stdout is not a terminal");

    let again = almanac(&["members", "import", fixture, "--database", &url]);
    assert!(
        text(&again.stdout).contains("read 12, inserted 0, updated 0, unchanged 5, rejected 7"),
        "{}",
        text(&again.stdout)
    );

    let show = almanac(&["members", "show", "m001", "--database", &url]);
    let shown = text(&show.stdout);
    assert!(show.status.success(), "{}", text(&show.stderr));
    assert!(shown.contains("+861****34"), "phone masked: {shown}");
    assert!(
        shown.contains("tz Asia/Shanghai via explicit"),
        "resolved from the stated city: {shown}"
    );

    let export = almanac(&["members", "export", "--format", "jsonl", "--database", &url]);
    assert!(export.status.success());
    let lines: Vec<String> = text(&export.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].contains("\"phone\":\"+8613904511234\""), "{}", lines[0]);

    let forget = almanac(&["members", "forget", "m001", "--database", &url]);
    assert!(forget.status.success(), "{}", text(&forget.stderr));
    let gone = almanac(&["members", "show", "m001", "--database", &url]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(text(&gone.stderr).contains("no member with external id \"m001\""));
    let export = almanac(&["members", "export", "--database", &url]);
    let csv = text(&export.stdout);
    assert_eq!(csv.lines().count(), 5, "header and four members: {csv}");
    assert!(!csv.contains("13904511234") && !csv.contains("张三"));

    let bad_url = almanac(&["members", "show", "m002", "--database", "mysql://x"]);
    assert_eq!(bad_url.status.code(), Some(1));
    assert!(text(&bad_url.stderr).contains("unsupported database URL"));
}

/// Excel's "CSV" on Chinese Windows is GBK: a hint names the encoding and the
/// flag, and `--encoding gb18030` (or `gbk`) imports it.
#[test]
fn a_gbk_csv_gets_a_hint_and_imports_with_its_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("members.db").display());
    let csv = dir.path().join("crm-export.csv");
    let (gbk, _, unmappable) =
        encoding_rs::GBK.encode("external_id,name,city\ng1,张三,哈尔滨\ng2,李四,广州\n");
    assert!(!unmappable);
    std::fs::write(&csv, &gbk).unwrap();
    let csv = csv.to_str().unwrap();

    let output = almanac(&["members", "import", csv, "--database", &url]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("row 1") && stderr.contains("row 2"), "each row is named: {stderr}");
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");
    assert!(stderr.contains("GBK/GB18030") && stderr.contains("--encoding gb18030"), "{stderr}");

    for encoding in ["gb18030", "gbk"] {
        let output =
            almanac(&["members", "import", csv, "--database", &url, "--encoding", encoding]);
        assert!(output.status.success(), "{encoding}: {}", text(&output.stderr));
    }
    let show = almanac(&["members", "show", "g1", "--database", &url]);
    let shown = text(&show.stdout);
    assert!(shown.contains("张三") && shown.contains("哈尔滨"), "decoded: {shown}");

    let output = almanac(&["members", "import", csv, "--database", &url, "--encoding", "latin1"]);
    assert_eq!(output.status.code(), Some(2), "an unknown encoding is a usage error");
    assert!(text(&output.stderr).contains("utf-8, gb18030"), "{}", text(&output.stderr));
}
