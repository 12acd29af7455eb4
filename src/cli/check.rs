//! `almanac check [PATH...]`: validates campaign files and reports every problem of
//! every file. Exit 0 when all are valid (warnings allowed), 1 when any has an
//! error, 2 on usage errors (nonexistent path, bad flag).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::campaign::{self, Format, Severity};

/// Output format of `almanac check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Source snippets with carets (and a summary line).
    #[default]
    Human,
    /// A JSON array of diagnostics.
    Json,
    /// GitHub Actions annotations: `::error file=…,line=…,col=…::message`.
    Github,
}

/// Arguments of `almanac check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Campaign files or directories (their `*.toml` files).
    #[arg(default_value = "campaigns")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

/// Runs `almanac check`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let missing: Vec<&PathBuf> = args.paths.iter().filter(|p| !p.exists()).collect();
    if !missing.is_empty() {
        for path in missing {
            eprintln!("error: {}: no such file or directory", path.display());
        }
        return Ok(ExitCode::from(2));
    }
    let report = campaign::load_paths(&args.paths, Some(&campaign::BundledGazetteer));
    let format = match args.format {
        OutputFormat::Human => Format::Human,
        OutputFormat::Json => Format::Json,
        OutputFormat::Github => Format::Github,
    };
    let mut out = if format == Format::Human {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        campaign::diagnostic::render_human(&report.diagnostics, &report.sources, color)
    } else {
        report.render(format)
    };
    if format == Format::Human {
        let files = report.sources.len();
        let errors = report.count(Severity::Error);
        let warnings = report.count(Severity::Warning);
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        out.push_str(&format!(
            "checked {}: {}, {}; {} valid\n",
            plural(files, "file"),
            plural(errors, "error"),
            plural(warnings, "warning"),
            plural(report.campaigns.len(), "campaign"),
        ));
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(if report.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
