//! Golden tests of `almanac check` diagnostics: every `*.toml` file (and every
//! directory) under `tests/fixtures/campaigns/` is checked by the real binary and
//! its exit code and output compared with the sibling `<case>.expected`.
//! Regenerate with `UPDATE_GOLDEN=1 cargo nextest run check_fixtures`, then review
//! each golden by eye: the line and column must point at the right token.

use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: &str = "tests/fixtures/campaigns";

fn cases() -> Vec<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(root.join(FIXTURES)).expect("fixtures directory") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("UTF-8 name").to_string();
        let stem = match name.strip_suffix(".toml") {
            Some(stem) if path.is_file() => stem.to_string(),
            _ if path.is_dir() => name.clone(),
            _ => continue,
        };
        // Relative paths keep the goldens independent of where the repository lives.
        let relative = PathBuf::from(FIXTURES).join(&name);
        cases.push((relative, PathBuf::from(FIXTURES).join(format!("{stem}.expected"))));
    }
    cases.sort();
    cases
}

fn run_check(path: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_almanac"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", "--format", "human"])
        .arg(path)
        .output()
        .expect("run almanac check");
    let code = output.status.code().expect("exit code");
    format!(
        "exit: {code}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn check_fixtures_match_goldens() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases = cases();
    assert!(cases.len() >= 30, "only {} fixtures", cases.len());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (input, expected_path) in &cases {
        let actual = run_check(input);
        let expected_file = root.join(expected_path);
        if update {
            std::fs::write(&expected_file, &actual).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "--- {} differs from {}:\n{actual}\n--- expected:\n{expected}",
                input.display(),
                expected_path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} goldens differ (regenerate with `UPDATE_GOLDEN=1 cargo nextest run check_fixtures` and review):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_malformed_fixture_fails_the_check() {
    // Fixtures named for a warning-only situation are the exception.
    for (input, _) in cases() {
        let output = run_check(&input);
        let name = input.file_name().unwrap().to_string_lossy().to_string();
        let expected = if name == "no-campaign-files" { "exit: 0\n" } else { "exit: 1\n" };
        assert!(output.starts_with(expected), "{name}: {output}");
    }
}
