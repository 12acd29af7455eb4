//! Member files: the streamed reader's row errors, and imports into both
//! backends (every good row imported, every bad one reported with its row
//! number, a second import changes nothing).

#[macro_use]
#[path = "common/backends.rs"]
mod backends;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use almanac::geo::{CityId, Place, PlaceSource};
use almanac::members::{self, Format, ImportSummary, Member, Resolver, RowError};
use almanac::store::testing::TestDb;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/members").join(name)
}

/// Reads a whole file: the good members and (row, reason) of the bad rows.
fn read_all(path: &Path) -> (Vec<Member>, Vec<(u64, String)>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for row in members::read_file(path).expect("open") {
        match row {
            Ok(member) => good.push(member),
            Err(RowError { row, reason, file }) => {
                assert_eq!(file, path.display().to_string());
                bad.push((row, reason));
            }
        }
    }
    (good, bad)
}

fn assert_reason(bad: &[(u64, String)], row: u64, needle: &str) {
    let reason = bad
        .iter()
        .find(|(r, _)| *r == row)
        .map(|(_, reason)| reason.as_str())
        .unwrap_or_else(|| panic!("row {row} not reported; reported: {bad:?}"));
    assert!(reason.contains(needle), "row {row}: {reason:?} should mention {needle:?}");
}

#[test]
fn csv_reports_every_bad_row_with_its_number() {
    let (good, bad) = read_all(&fixture("malformed.csv"));
    let ids: Vec<&str> = good.iter().map(|m| m.external_id.as_str()).collect();
    assert_eq!(ids, vec!["m001", "m002", "m007", "m009", "m011"]);
    let rows: Vec<u64> = bad.iter().map(|(row, _)| *row).collect();
    assert_eq!(rows, vec![3, 4, 5, 6, 7, 9, 11], "{bad:#?}");
    assert_reason(&bad, 3, "bad phone");
    assert_reason(&bad, 4, "bad coordinates: lat \"abc\"");
    assert_reason(&bad, 5, "broken CSV quoting");
    assert_reason(&bad, 6, "bad coordinates");
    assert_reason(&bad, 7, "duplicate external_id \"m001\" (first at row 1)");
    assert_reason(&bad, 9, "expected 13 fields, found 12");
    assert_reason(&bad, 11, "broken CSV quoting");

    let first = &good[0];
    assert_eq!(first.phone.as_deref(), Some("+8613904511234"));
    assert_eq!(first.name.as_deref(), Some("张三"));
    assert_eq!(first.city.as_deref(), Some("哈尔滨"));
    assert_eq!((first.lat, first.lon), (Some(45.75), Some(126.63)));
    assert_eq!(first.tags, vec!["skincare", "vip"]);
    assert_eq!(first.attrs.get("tier").map(String::as_str), Some("gold"));
    let second = &good[1];
    assert_eq!(second.name.as_deref(), Some("Li, Lei"));
    assert_eq!(second.phone.as_deref(), Some("+8613800138000"));
    assert_eq!(second.attrs.get("segment").map(String::as_str), Some("new"));
    assert_eq!(good[2].name.as_deref(), Some("Sun \"Jr\""));
    assert_eq!(good[2].phone.as_deref(), Some("+861065529988"));
    assert_eq!(good[3].phone.as_deref(), Some("+8618612345678"));
    assert_eq!(good[4].phone.as_deref(), Some("+442079460958"));
}

#[test]
fn jsonl_reports_wrong_types_and_broken_lines() {
    let (good, bad) = read_all(&fixture("malformed.jsonl"));
    let ids: Vec<&str> = good.iter().map(|m| m.external_id.as_str()).collect();
    assert_eq!(ids, vec!["j001", "j008"]);
    let rows: Vec<u64> = bad.iter().map(|(row, _)| *row).collect();
    assert_eq!(rows, vec![2, 3, 4, 5, 6, 7, 8, 10, 11], "{bad:#?}");
    // A wrong value names its field.
    assert_reason(&bad, 2, "field `phone`");
    assert_reason(&bad, 2, "expected a string");
    assert_reason(&bad, 3, "field `lat`");
    assert_reason(&bad, 3, "expected f64");
    assert_reason(&bad, 4, "field `tags`");
    assert_reason(&bad, 4, "expected a sequence");
    assert_reason(&bad, 5, "field `attrs.tier`");
    assert_reason(&bad, 6, "unknown field `unknown`");
    assert_reason(&bad, 7, "broken JSON");
    assert_reason(&bad, 8, "duplicate external_id \"j001\" (first at row 1)");
    assert_reason(&bad, 10, "give both lat and lon");
    assert_reason(&bad, 11, "bad phone");
    assert_eq!(good[1].phone.as_deref(), Some("+8613800138000"));
    assert!(good[1].opted_out_at.is_some());
}

#[test]
fn oversize_fields_are_rejected_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "external_id,name,phone").unwrap();
    writeln!(file, "a1,Ann,13800138000").unwrap();
    writeln!(file, "a2,{},13800138001", "x".repeat(10 * 1024 * 1024)).unwrap(); // 10 MB
    writeln!(file, "a3,{},13800138002", "y".repeat(70 * 1024)).unwrap(); // 70 KiB
    writeln!(file, "a4,Dan,13800138003").unwrap();
    drop(file);
    let (good, bad) = read_all(&path);
    let ids: Vec<&str> = good.iter().map(|m| m.external_id.as_str()).collect();
    assert_eq!(ids, vec!["a1", "a4"]);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_reason(&bad, 2, "oversize field");
    assert_reason(&bad, 3, "oversize field: name is 71680 bytes");
}

#[test]
fn unusable_files_fail_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("members.xlsx");
    std::fs::write(&unknown, "x").unwrap();
    let error = members::read_file(&unknown).err().expect("unknown extension");
    assert!(error.to_string().contains("unknown member file format"), "{error}");

    let typo = dir.path().join("typo.csv");
    std::fs::write(&typo, "external_id,phnoe\n1,2\n").unwrap();
    let error = members::read_file(&typo).err().expect("unknown column");
    let message = error.to_string();
    assert!(message.contains("line 1 (header): unknown column \"phnoe\""), "{message}");
    assert!(message.contains("did you mean \"phone\""), "{message}");

    let missing = members::read_file(&dir.path().join("missing.csv")).err().expect("missing");
    assert!(missing.to_string().contains("missing.csv"), "{missing}");
}

fn test_resolver() -> Resolver {
    Arc::new(|member: &Member| match member.city.as_deref() {
        Some(city) => Ok(Place {
            city: CityId(u32::try_from(city.len()).unwrap()),
            tz: chrono_tz::Asia::Shanghai,
            source: PlaceSource::Explicit,
            confidence: 1.0,
            distance_km: None,
        }),
        None => Err("no location hint".to_string()),
    })
}

async fn import_file(db: &TestDb, path: &Path, batch: usize) -> (ImportSummary, Vec<u64>) {
    let rows = members::read_file(path).unwrap();
    let mut errors = Vec::new();
    let mut progress_calls = 0;
    let summary = members::import(
        &db.store,
        rows,
        test_resolver(),
        "test-1",
        batch,
        &mut |error: &RowError| errors.push(error.row),
        &mut |_: &ImportSummary| progress_calls += 1,
    )
    .await
    .expect("import");
    assert!(progress_calls >= 1);
    (summary, errors)
}

async fn import_is_idempotent(db: &TestDb) {
    let csv = fixture("malformed.csv");
    let (first, errors) = import_file(db, &csv, 3).await;
    assert_eq!(errors, vec![3, 4, 5, 6, 7, 9, 11], "reported in file order");
    assert_eq!(
        first,
        ImportSummary { read: 12, inserted: 5, updated: 0, unchanged: 0, rejected: 7 }
    );
    let (second, _) = import_file(db, &csv, 1000).await;
    assert_eq!(
        second,
        ImportSummary { read: 12, inserted: 0, updated: 0, unchanged: 5, rejected: 7 }
    );
    let (jsonl, errors) = import_file(db, &fixture("malformed.jsonl"), 4).await;
    assert_eq!(errors.len(), 9);
    assert_eq!(jsonl.inserted, 2);

    let counts = db.store.member_counts().await.unwrap();
    assert_eq!((counts.total, counts.unresolved), (7, 3));
    let harbin = db.store.get_member("m001").await.unwrap().unwrap();
    assert_eq!(harbin.place.map(|p| p.city), Some(CityId(9)), "resolved at import");
    let unresolved = db.store.get_member("m007").await.unwrap().unwrap();
    assert_eq!(unresolved.unresolved_reason.as_deref(), Some("no location hint"));
    // Resolved with the current data version: nothing is stale.
    let stale = db.store.reresolve_stale_with("test-1", &|_| Err("unused".into())).await.unwrap();
    assert_eq!(stale, 0);

    // An edited row is an update.
    let dir = tempfile::tempdir().unwrap();
    let edited = dir.path().join("edited.csv");
    std::fs::write(&edited, "external_id,phone,city\nm001,13904511234,哈尔滨\nm100,,\n").unwrap();
    let (third, _) = import_file(db, &edited, 10).await;
    assert_eq!(
        third,
        ImportSummary { read: 2, inserted: 1, updated: 1, unchanged: 0, rejected: 0 }
    );
}

async fn export_round_trips(db: &TestDb) {
    import_file(db, &fixture("malformed.csv"), 100).await;
    import_file(db, &fixture("malformed.jsonl"), 100).await;
    let dir = tempfile::tempdir().unwrap();
    for (format, name) in [(Format::Csv, "out.csv"), (Format::Jsonl, "out.jsonl")] {
        let path = dir.path().join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        let count = members::export(&db.store, format, &mut file).await.unwrap();
        drop(file);
        assert_eq!(count, 7);
        let (good, bad) = read_all(&path);
        assert!(bad.is_empty(), "{name}: {bad:?}");
        let mut page = db.store.members_page(0, 100).await.unwrap();
        page.sort_by_key(|m| m.id);
        let stored: Vec<Member> = page.into_iter().map(|m| m.member).collect();
        assert_eq!(good, stored, "{name} reads back as stored");
    }
}

both_backends!(import_is_idempotent, export_round_trips);
