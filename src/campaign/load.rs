//! Reading campaign files: bytes → UTF-8 text → TOML syntax → the raw serde model →
//! validation, collecting every diagnostic of every file. A file with any error
//! yields no campaign; the others still load.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use sha2::{Digest as _, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, Severity};
use super::raw::RawCampaign;
use super::validate::{Checker, closest, validate};
use super::{Campaign, LoadReport, PlaceNames, SourceInfo};

/// How many wrong keys/values of one file are reported before giving up on it.
const MAX_SERDE_ERRORS: usize = 50;

/// What one file produced.
pub(crate) struct FileOutcome {
    /// The campaign and the span of its `id` value, when the file is valid.
    pub(crate) campaign: Option<(Campaign, Range<usize>)>,
    /// Every finding.
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// The text shown in snippets, when the file could be read.
    pub(crate) source: Option<String>,
}

/// Expands `paths` (files, or directories whose `*.toml` files are taken, sorted)
/// and loads every file.
pub(crate) fn load_paths(paths: &[PathBuf], places: Option<&dyn PlaceNames>) -> LoadReport {
    let mut report = LoadReport::default();
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match list_toml_files(path) {
                Ok(found) if found.is_empty() => report.diagnostics.push(
                    Diagnostic::whole_file(
                        Severity::Warning,
                        path,
                        "directory holds no campaign files (*.toml)",
                    )
                    .with_help("campaign files end in `.toml`"),
                ),
                Ok(found) => files.extend(found),
                Err(error) => report.diagnostics.push(Diagnostic::whole_file(
                    Severity::Error,
                    path,
                    format!("cannot read directory: {error}"),
                )),
            }
        } else {
            files.push(path.clone());
        }
    }
    // A file named twice (directly and through its directory) is loaded once.
    let mut seen = std::collections::HashSet::new();
    files.retain(|file| seen.insert(std::fs::canonicalize(file).unwrap_or_else(|_| file.clone())));

    let mut first_ids: HashMap<String, (PathBuf, usize, usize)> = HashMap::new();
    for file in files {
        let outcome = load_file(&file, places);
        report.diagnostics.extend(outcome.diagnostics);
        if let Some((campaign, id_span)) = outcome.campaign {
            let source = outcome.source.as_deref().unwrap_or_default();
            let here = Diagnostic::at(Severity::Error, &file, source, id_span, "");
            match first_ids.get(&campaign.id) {
                Some((first, line, col)) => {
                    report.diagnostics.push(Diagnostic {
                        message: format!(
                            "duplicate campaign id `{}`: already used by {}:{line}:{col}",
                            campaign.id,
                            first.display()
                        ),
                        help: Some("campaign ids must be unique across all campaign files".into()),
                        ..here
                    });
                }
                None => {
                    first_ids.insert(campaign.id.clone(), (file.clone(), here.line, here.col));
                    report.campaigns.push(campaign);
                }
            }
        }
        if let Some(source) = outcome.source {
            report.sources.insert(file, source);
        }
    }
    report
}

fn list_toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads one file.
pub(crate) fn load_file(path: &Path, places: Option<&dyn PlaceNames>) -> FileOutcome {
    let mut outcome = FileOutcome { campaign: None, diagnostics: Vec::new(), source: None };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            outcome.diagnostics.push(Diagnostic::whole_file(
                Severity::Error,
                path,
                format!("cannot read campaign file: {error}"),
            ));
            return outcome;
        }
    };
    let content_hash = hex::encode(Sha256::digest(&bytes));
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let source = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(error) => {
            let at = error.valid_up_to();
            let lossy = String::from_utf8_lossy(bytes).into_owned();
            outcome.diagnostics.push(
                Diagnostic::at(
                    Severity::Error,
                    path,
                    &lossy,
                    at..at + '\u{FFFD}'.len_utf8(),
                    format!("file is not valid UTF-8 (byte 0x{:02X} at offset {at})", bytes[at]),
                )
                .with_help("TOML files must be UTF-8: re-save the file as UTF-8"),
            );
            outcome.source = Some(lossy);
            return outcome;
        }
    };

    let mut checker = Checker::new(path, &source);
    if source.trim().is_empty() {
        checker.diagnostics.push(
            Diagnostic::whole_file(Severity::Error, path, "empty campaign file").with_help(
                "a campaign needs `id`, `name`, `channel`, `default_lang`, a [timing] table and at least one [[message]]",
            ),
        );
    } else if let Some(raw) = parse(&mut checker) {
        let id_span = raw.id.as_ref().map(Spanned::span).unwrap_or_default();
        if let Some(mut campaign) = validate(raw, &mut checker, places) {
            campaign.source = SourceInfo { path: path.to_path_buf(), content_hash };
            outcome.campaign = Some((campaign, id_span));
        }
    }
    outcome.diagnostics = checker.diagnostics;
    // Report in file order; whole-file findings (no span) first.
    outcome.diagnostics.sort_by_key(|d| d.span.as_ref().map(|s| s.start));
    outcome.source = Some(source);
    outcome
}

/// TOML syntax, then the raw model. Every syntax error is reported; then each wrong
/// key or value is reported and removed, and deserialization retried, so one run
/// shows them all.
fn parse(checker: &mut Checker<'_>) -> Option<RawCampaign> {
    let source = checker.source;
    let (mut root, errors) = DeTable::parse_recoverable(source);
    if !errors.is_empty() {
        let mut lines_seen = std::collections::HashSet::new();
        for error in errors {
            let span = error.span().unwrap_or(0..0);
            // The recovering parser often reports a mistake twice on its line
            // (`name = = "x"`); the first report is the useful one.
            let (line, _) = checker.lines.line_col(source, span.start);
            if !lines_seen.insert(line) {
                continue;
            }
            let message = error.message().trim().replace('\n', "; ");
            checker.push(Severity::Error, span, format!("TOML syntax error: {message}")).help =
                Some("see https://toml.io/en/v1.0.0 for the syntax".to_string());
        }
        return None;
    }
    root.get_mut().make_owned();
    for _ in 0..MAX_SERDE_ERRORS {
        let error = match RawCampaign::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(raw) => return Some(raw),
            Err(error) => error,
        };
        let message = error.message().to_string();
        if let Some(field) = between_backticks(&message, "missing field `")
            && checker.removed.iter().any(|k| k == field)
        {
            // Its value was wrong and already reported.
            return None;
        }
        let span = error.span();
        let (text, help) = explain(&message);
        checker.push(Severity::Error, span.clone().unwrap_or(0..0), text).help = help;
        let span = span?;
        match remove_at(root.get_mut(), span.start) {
            Some(key) => checker.removed.push(key),
            None => return None,
        }
    }
    None
}

/// Removes the innermost key/value entry whose key or value covers `offset`;
/// returns the removed key. Tables are searched whatever their span (a `[header]`
/// table's span does not cover its body).
fn remove_at(table: &mut DeTable<'_>, offset: usize) -> Option<String> {
    let mut target = None;
    for (key, value) in table.iter_mut() {
        if let Some(removed) = remove_in_value(value, offset) {
            return Some(removed);
        }
        if key.span().contains(&offset) || value.span().contains(&offset) {
            target = Some(key.clone());
        }
    }
    let key = target?;
    table.remove(&key);
    Some(key.into_inner().into_owned())
}

fn remove_in_value(value: &mut Spanned<DeValue<'_>>, offset: usize) -> Option<String> {
    match value.get_mut() {
        DeValue::Table(table) => remove_at(table, offset),
        DeValue::Array(array) => array.iter_mut().find_map(|item| match item.get_mut() {
            DeValue::Table(table) => remove_at(table, offset),
            _ => None,
        }),
        _ => None,
    }
}

fn between_backticks<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    Some(&rest[..rest.find('`')?])
}

/// All backticked words after `expected`.
fn expected_words(message: &str) -> Vec<&str> {
    let Some(at) = message.find("expected") else { return Vec::new() };
    message[at..].split('`').skip(1).step_by(2).collect()
}

/// Rewrites serde's messages into the words campaign authors use, with a
/// did-you-mean where there is a list of candidates.
fn explain(message: &str) -> (String, Option<String>) {
    let suggest = |word: &str, kind: &str| {
        let candidates = expected_words(message);
        let list = candidates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
        let help = match closest(word, candidates.iter().copied()) {
            Some(best) => format!("did you mean `{best}`? expected one of {list}"),
            None if list.is_empty() => format!("this {kind} takes no keys"),
            None => format!("expected one of {list}"),
        };
        Some(help)
    };
    if let Some(field) = between_backticks(message, "unknown field `") {
        return (format!("unknown key `{field}`"), suggest(field, "table"));
    }
    if let Some(variant) = between_backticks(message, "unknown variant `") {
        return (format!("unknown value \"{variant}\""), suggest(variant, "value"));
    }
    if let Some(field) = between_backticks(message, "missing field `") {
        let help = match field {
            "timing" => "add a [timing] table with a `trigger` (\"once\", \"cron\" or \"climate\")"
                .to_string(),
            "trigger" => "add `trigger = \"once\"`, `\"cron\"` or `\"climate\"`".to_string(),
            _ => format!("add `{field} = …`"),
        };
        return (format!("missing required key `{field}`"), Some(help));
    }
    if let Some(rest) = message.strip_prefix("invalid value: integer `") {
        let number = rest.split('`').next().unwrap_or_default();
        let expected = rest.rsplit("expected ").next().unwrap_or_default();
        let range = match expected.trim() {
            "i32" => "-2147483648..2147483647",
            "u32" => "0..4294967295",
            _ => "the allowed range",
        };
        return (format!("integer {number} is out of range: expected {range}"), None);
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "another type"));
        let expected = match expected.trim() {
            "i32" | "i64" | "u32" | "u64" => "an integer",
            "f64" | "f32" => "a number",
            "a boolean" | "bool" => "a boolean (`true` or `false`)",
            "a string" => "a string",
            "a sequence" => "an array",
            "a TOML datetime" | "a datetime" => "a TOML date or date-time, unquoted (`2027-06-01`)",
            other if other.starts_with("struct ") || other.starts_with("a map") => "a table",
            other if other.starts_with("enum ") => "a string",
            other => other,
        };
        let found = found.replace("sequence", "array").replace("map", "table");
        return (format!("wrong type: found {found}, expected {expected}"), None);
    }
    (message.trim().to_string(), None)
}
