//! Diagnostics about campaign files (errors and warnings with `file:line:col`) and
//! their three renderings: human (codespan-reporting snippets with a caret), JSON,
//! and GitHub Actions workflow commands for pull-request annotations.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file is rejected.
    Error,
    /// Reported; the file is still accepted.
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file it is about.
    pub file: PathBuf,
    /// 1-based line (1 when the finding is about the whole file).
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// Byte range in the file's text, when the finding points at something.
    pub span: Option<Range<usize>>,
    /// What is wrong, and what was expected.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at a byte range of `source` (line and column computed from it).
    pub fn at(
        severity: Severity,
        file: &Path,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let (line, col) = line_col(source, span.start.min(source.len()));
        Self::at_line_col(severity, file, source, span, (line, col), message)
    }

    /// [`Diagnostic::at`] with the line and column already known (from a [`LineIndex`]).
    pub(crate) fn at_line_col(
        severity: Severity,
        file: &Path,
        source: &str,
        span: Range<usize>,
        (line, col): (usize, usize),
        message: impl Into<String>,
    ) -> Self {
        let start = span.start.min(source.len());
        let end = span.end.clamp(start, source.len());
        Diagnostic {
            severity,
            file: file.to_path_buf(),
            line,
            col,
            span: Some(start..end),
            message: message.into(),
            help: None,
        }
    }

    /// A diagnostic about a whole file (no snippet), at line 1, column 1.
    pub fn whole_file(severity: Severity, file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            file: file.to_path_buf(),
            line: 1,
            col: 1,
            span: None,
            message: message.into(),
            help: None,
        }
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// 1-based line and character column of a byte offset (a scan of the text up
/// to it: for many offsets of one text, use a [`LineIndex`]).
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(&source[..floor_char_boundary(source, offset)]).line_col(source, offset)
}

/// The largest char boundary at or before `offset` (clamped to the text).
fn floor_char_boundary(source: &str, offset: usize) -> usize {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Where each line of one text starts, so the line and column of any offset take
/// a binary search instead of a scan of the text (a file with thousands of
/// findings stays linear).
#[derive(Debug)]
pub(crate) struct LineIndex {
    /// Byte offset of each line's start, and whether the line is ASCII (its
    /// column is then a byte difference).
    lines: Vec<(usize, bool)>,
}

impl LineIndex {
    pub(crate) fn new(source: &str) -> Self {
        let mut lines = Vec::new();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', source.as_bytes()).chain([source.len()]) {
            lines.push((start, source.as_bytes()[start..end].is_ascii()));
            start = end + 1;
        }
        LineIndex { lines }
    }

    /// 1-based line and character column of a byte offset of the text indexed.
    pub(crate) fn line_col(&self, source: &str, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(source, offset);
        let line = self.lines.partition_point(|(start, _)| *start <= offset).max(1);
        let (start, ascii) = self.lines[line - 1];
        let col = if ascii { offset - start } else { source[start..offset].chars().count() };
        (line, col + 1)
    }
}

/// Output formats of `almanac check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Source snippets with carets.
    #[default]
    Human,
    /// One JSON array of objects.
    Json,
    /// GitHub Actions `::error file=…,line=…,col=…::message` lines.
    Github,
}

/// Renders diagnostics. `sources` maps each file to its text so the human format
/// can show snippets; files missing from it are rendered without a snippet.
pub fn render(
    diagnostics: &[Diagnostic],
    sources: &BTreeMap<PathBuf, String>,
    format: Format,
) -> String {
    match format {
        Format::Human => render_human(diagnostics, sources, false),
        Format::Json => render_json(diagnostics),
        Format::Github => render_github(diagnostics),
    }
}

/// The human format, with ANSI colors when `color` is set (for a terminal).
pub fn render_human(
    diagnostics: &[Diagnostic],
    sources: &BTreeMap<PathBuf, String>,
    color: bool,
) -> String {
    let mut files = SimpleFiles::new();
    let mut ids = BTreeMap::new();
    for (path, text) in sources {
        ids.insert(path.clone(), files.add(path.display().to_string(), text.as_str()));
    }
    let config = term::Config::default();
    let mut out = String::new();
    for diagnostic in diagnostics {
        let mut cs = match diagnostic.severity {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
        }
        .with_message(&diagnostic.message);
        if let Some(help) = &diagnostic.help {
            cs = cs.with_notes(vec![format!("help: {help}")]);
        }
        let rendered = match (&diagnostic.span, ids.get(&diagnostic.file)) {
            (Some(span), Some(&id)) => {
                let cs = cs.with_labels(vec![Label::primary(id, span.clone())]);
                if color {
                    let mut buffer = term::termcolor::Buffer::ansi();
                    term::emit_to_write_style(&mut buffer, &config, &files, &cs)
                        .ok()
                        .and_then(|()| String::from_utf8(buffer.into_inner()).ok())
                } else {
                    term::emit_into_string(&config, &files, &cs).ok()
                }
            }
            _ => None,
        };
        match rendered {
            Some(text) => out.push_str(&text),
            None => {
                let _ = writeln!(
                    out,
                    "{}: {}\n  ┌─ {}:{}:{}",
                    diagnostic.severity.as_str(),
                    diagnostic.message,
                    diagnostic.file.display(),
                    diagnostic.line,
                    diagnostic.col
                );
                if let Some(help) = &diagnostic.help {
                    let _ = writeln!(out, "  = help: {help}");
                }
                out.push('\n');
            }
        }
    }
    out
}

fn render_json(diagnostics: &[Diagnostic]) -> String {
    let items: Vec<serde_json::Value> = diagnostics
        .iter()
        .map(|d| {
            serde_json::json!({
                "severity": d.severity.as_str(),
                "file": d.file.display().to_string(),
                "line": d.line,
                "col": d.col,
                "message": d.message,
                "help": d.help,
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".to_string());
    text.push('\n');
    text
}

fn render_github(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        let _ = writeln!(
            out,
            "::{} file={},line={},col={}::{}",
            d.severity.as_str(),
            escape_property(&d.file.display().to_string()),
            d.line,
            d.col,
            escape_data(&message)
        );
    }
    out
}

/// Escapes a workflow-command message (GitHub's `escapeData`).
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a workflow-command property (GitHub's `escapeProperty`).
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let source = "a = 1\nname = \"天气\" x\n";
        let offset = source.find('x').unwrap();
        assert_eq!(line_col(source, offset), (2, 13));
        assert_eq!(line_col(source, 0), (1, 1));
        let index = LineIndex::new(source);
        for offset in 0..=source.len() + 2 {
            let before = &source[..floor_char_boundary(source, offset)];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let expected = (line, before[start..].chars().count() + 1);
            assert_eq!(index.line_col(source, offset), expected, "offset {offset}");
        }
    }

    #[test]
    fn github_escapes() {
        let d = Diagnostic::whole_file(Severity::Error, Path::new("a,b:c.toml"), "50%\nbad")
            .with_help("fix");
        let text = render(&[d], &BTreeMap::new(), Format::Github);
        assert_eq!(text, "::error file=a%2Cb%3Ac.toml,line=1,col=1::50%25%0Abad%0Ahelp: fix\n");
    }
}
