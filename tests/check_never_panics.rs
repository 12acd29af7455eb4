//! Property test: whatever bytes a campaign file holds, loading it never panics,
//! every diagnostic's line and column match its span, and a file without errors
//! yields exactly one campaign.

use std::path::PathBuf;

use almanac::campaign::{self, Severity};
use proptest::prelude::*;

const VALID: &str = include_str!("../campaigns/autumn-moisturizer.toml");

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, source[start..offset].chars().count() + 1)
}

fn check(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("fuzz.toml");
    std::fs::write(&path, bytes).unwrap();
    let report = campaign::load_paths(std::slice::from_ref(&path), None);
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
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mutated_campaigns_never_panic(
        edits in prop::collection::vec((0..VALID.len(), 0usize..4, "[ -~\\n=\\[\\]{}\"'#.]{0,3}"), 1..4)
    ) {
        let mut bytes = VALID.as_bytes().to_vec();
        for (at, delete, insert) in edits {
            let at = at.min(bytes.len());
            let end = (at + delete).min(bytes.len());
            bytes.splice(at..end, insert.bytes());
        }
        check(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check(&bytes);
    }
}
