//! Property test over campaign files, bounded and deterministic (a fixed seed, so
//! every run tries the same cases; a committed corpus of valid files to mutate:
//! `campaigns/*.toml` and `tests/fixtures/corpus/*.toml`).
//!
//! * Whatever bytes a file holds, loading it as `almanac check` does never panics,
//!   every diagnostic's line and column match its span, and a file without errors
//!   yields exactly one campaign.
//! * Every campaign `check` accepts (each file of the corpus, and each mutation of
//!   one that stays valid) compiles in the timing engine and plans a year, stepped
//!   one day at a time with the history fed back as `almanac simulate` does, for
//!   a few members across climates, zones and languages: no panic (the engine
//!   catches a campaign's panic and reports it in `failures`; the test fails on
//!   it), no occurrence sent twice, `per_member` kept, and the year planned within
//!   [`YEAR_BOUND`].
//!
//! A case that ever fails is added to `tests/fixtures/corpus/` as a file.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use almanac::campaign::{self, Campaign, Severity};
use almanac::geo::{Geo, LocationHints, Place};
use almanac::members::Member;
use almanac::timing::{Engine, EngineConfig, GlobalCap, History, Recipient};
use chrono::{DateTime, NaiveDate};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, RngSeed, TestRunner};

/// Planning one campaign for a year (366 calls, 11 members) takes about 20 ms on
/// a debug build (median of the valid mutations; the slowest corpus file, a
/// six-field cron, about 0.1 s): the bound leaves room for a loaded machine, not
/// for a campaign that makes the engine slow.
const YEAR_BOUND: Duration = Duration::from_secs(2);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The committed corpus: every valid seed file, by path.
static CORPUS: LazyLock<Vec<(PathBuf, Vec<u8>)>> = LazyLock::new(|| {
    let mut files = Vec::new();
    for dir in ["campaigns", "tests/fixtures/corpus"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .expect("corpus directory")
            .map(|entry| entry.expect("corpus entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        paths.sort();
        files.extend(paths.into_iter().map(|path| {
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        }));
    }
    assert!(files.len() >= 8, "the corpus is missing: {files:?}");
    files
});

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, source[start..offset].chars().count() + 1)
}

/// Loads `bytes` as `almanac check` does (place names against the bundled
/// gazetteer), checks the report, and returns the campaign if the file is valid.
fn check(bytes: &[u8]) -> Option<Campaign> {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("fuzz.toml");
    std::fs::write(&path, bytes).unwrap();
    let report =
        campaign::load_paths(std::slice::from_ref(&path), Some(&campaign::BundledGazetteer));
    let source = report.sources.get(&path).expect("source kept");
    for diagnostic in &report.diagnostics {
        if let Some(span) = &diagnostic.span {
            assert!(span.start <= span.end && span.end <= source.len(), "{diagnostic:?}");
            assert!(source.is_char_boundary(span.start), "{diagnostic:?}");
            assert_eq!((diagnostic.line, diagnostic.col), line_col(source, span.start));
        }
    }
    let errors = report.count(Severity::Error);
    assert_eq!(report.campaigns.len(), usize::from(errors == 0), "{:?}", report.diagnostics);
    // Every rendering works.
    for format in [campaign::Format::Human, campaign::Format::Json, campaign::Format::Github] {
        let text = report.render(format);
        assert!(errors == 0 || !text.is_empty());
    }
    report.campaigns.into_iter().next()
}

/// A few members across climates (Harbin to Sydney, Lhasa never warm), zones with
/// and without daylight saving, languages and scripts, tags of the corpus, one
/// opted out, one without a name, one unresolved.
static MEMBERS: LazyLock<Vec<(Member, Option<Place>)>> = LazyLock::new(|| {
    let geo = Geo::bundled();
    let member = |i: usize, city: Option<&str>, lang: Option<&str>, tags: &[&str]| Member {
        external_id: format!("prop-{i:02}"),
        name: (i != 4).then(|| format!("会员{i}")),
        city: city.map(str::to_string),
        lang: lang.map(str::to_string),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        attrs: [("tier".to_string(), "gold".to_string())]
            .into_iter()
            .filter(|_| i.is_multiple_of(2))
            .collect(),
        opted_out_at: (i == 8).then_some(DateTime::UNIX_EPOCH),
        ..Member::default()
    };
    let mut shanghai = member(11, None, Some("zh-Hans"), &["skincare", "vip", "digest-optin"]);
    (shanghai.lat, shanghai.lon) = (Some(31.2304), Some(121.4737));
    let members = vec![
        member(1, Some("Harbin"), None, &["skincare", "vip", "digest-optin"]),
        member(2, Some("Guangzhou"), Some("yue-Hans"), &["skincare", "presale-optin"]),
        member(3, Some("Hong Kong"), Some("yue-Hant-HK"), &["vip", "makeup", "digest-optin"]),
        member(4, Some("Shanghai"), Some("wuu"), &["skincare", "unsubscribed-promo"]),
        member(5, Some("Taipei"), Some("zh"), &["vip", "skincare"]),
        member(6, Some("Lhasa"), Some("cmn-Hans"), &["skincare", "digest-optin"]),
        member(7, Some("London"), Some("en-GB"), &["digest-optin", "vip"]),
        member(8, Some("New York"), Some("en-US"), &["skincare"]),
        member(9, Some("Sydney"), Some("en"), &["skincare", "digest-optin"]),
        member(10, None, None, &["skincare", "vip", "digest-optin"]),
        shanghai,
    ];
    members
        .into_iter()
        .map(|member| {
            let place = geo
                .resolve(&LocationHints {
                    city: member.city.as_deref(),
                    coordinates: member.lat.zip(member.lon),
                    ..LocationHints::default()
                })
                .ok();
            let stated = member.city.is_some() || member.lat.is_some();
            assert_eq!(place.is_some(), stated, "{member:?} resolves as meant");
            (member, place)
        })
        .collect()
});

/// Plans `campaign` for a year from 2027-03-01, one day at a time, with a global
/// cap (so its look-ahead runs too); returns how long planning took.
fn plan_a_year(campaign: &Campaign) -> Duration {
    let geo = Geo::bundled();
    let start =
        NaiveDate::from_ymd_opt(2027, 3, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let end = start + chrono::Duration::days(366);
    let recipients: Vec<Recipient<'_>> = MEMBERS
        .iter()
        .enumerate()
        .map(|(i, (member, place))| Recipient { member_id: i as i64 + 1, member, place: *place })
        .collect();
    let config =
        EngineConfig { global_cap: Some(GlobalCap { max: 3, per: chrono::Duration::days(7) }) };
    let started = Instant::now();
    let engine = Engine::new(std::slice::from_ref(campaign), geo, config)
        .unwrap_or_else(|error| {
            panic!("check accepted {}, the engine rejects it: {error}", campaign.id)
        })
        .with_first_seen(|_| Some(start));
    let mut history = History::new();
    let mut sent: std::collections::HashSet<(i64, String)> = std::collections::HashSet::new();
    let mut from = start;
    while from < end {
        let to = from + chrono::Duration::days(1);
        let batch = engine.plan(&recipients, &history, from, to);
        assert!(
            batch.failures.is_empty(),
            "{}: the engine failed: {:?}",
            campaign.id,
            batch.failures
        );
        for send in &batch.sends {
            assert!(
                sent.insert((send.member_id, send.occurrence.to_string())),
                "{send:?} planned twice"
            );
            history.record(send);
        }
        for send in &batch.capped {
            history.record_capped(send);
        }
        from = to;
    }
    if let Some(cap) = campaign.limits.per_member {
        for id in recipients.iter().map(|recipient| recipient.member_id) {
            let count = sent.iter().filter(|(member, _)| *member == id).count();
            assert!(count <= cap as usize, "member {id}: {count} sends, per_member = {cap}");
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed < YEAR_BOUND, "{}: a year took {elapsed:?}", campaign.id);
    elapsed
}

#[test]
fn every_corpus_file_is_valid_and_plans_a_year() {
    let mut times = Vec::new();
    for (path, bytes) in CORPUS.iter() {
        let campaign = check(bytes).unwrap_or_else(|| panic!("{} is not valid", path.display()));
        times.push((plan_a_year(&campaign), path.as_path()));
    }
    times.sort();
    let (slowest, path): (Duration, &Path) = *times.last().unwrap();
    eprintln!("{} corpus files; slowest year: {slowest:?} ({})", times.len(), path.display());
}

/// The fixed seed and case count: every run tries the same cases; a failure
/// is reproduced by running the test again (and kept by adding its file to the
/// corpus, so no regressions file is written).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x0061_6c6d_616e_6163),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn mutated_campaigns_never_panic_and_valid_ones_plan() {
    let edit = (any::<prop::sample::Index>(), 0usize..4, "[ -~\\n=\\[\\]{}\"'#.]{0,3}");
    let strategy = (any::<prop::sample::Index>(), prop::collection::vec(edit, 1..4));
    let planned = std::sync::Mutex::new(Vec::new());
    let mut runner = TestRunner::new(config(300));
    let result = runner.run(&strategy, |(seed, edits)| {
        let mut bytes = seed.get(&CORPUS[..]).1.clone();
        for (at, delete, insert) in edits {
            let at = at.index(bytes.len() + 1);
            let end = (at + delete).min(bytes.len());
            bytes.splice(at..end, insert.bytes());
        }
        if let Some(campaign) = check(&bytes) {
            let took = plan_a_year(&campaign);
            planned.lock().unwrap().push(took);
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let mut planned = planned.into_inner().unwrap();
    planned.sort();
    eprintln!(
        "300 mutated files, {} valid and planned for a year: median {:?}, slowest {:?}",
        planned.len(),
        planned.get(planned.len() / 2),
        planned.last()
    );
    // Most mutations break a file; enough stay valid for the engine half to mean something.
    assert!(planned.len() >= 30, "only {} mutated files were valid", planned.len());
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check(&bytes);
    }
}
