//! `almanac audit`: prints the audit log (operator actions: pauses, resumes,
//! member upserts and erasures), newest first, as `GET /v1/audit` returns it.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};

use super::migrate::{DEFAULT_DATABASE_URL, redact_url};
use crate::store::{AUDIT_LIMIT_MAX, AuditEntry, Store};

/// Arguments of `almanac audit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Database URL: `sqlite:FILE` or `postgres://…`.
    #[arg(long, env = "ALMANAC_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database: String,
    /// At most this many entries (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=AUDIT_LIMIT_MAX))]
    pub limit: i64,
    /// Only entries at or after this instant.
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<DateTime<Utc>>,
    /// Print the JSON array of `GET /v1/audit` instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `almanac audit`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let entries = runtime.block_on(async {
        let store = Store::connect(&args.database)
            .await
            .with_context(|| format!("opening {}", redact_url(&args.database)))?;
        let entries = store.audit_log_since(args.since, args.limit).await?;
        store.close().await;
        anyhow::Ok(entries)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print!("{}", table(&entries));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per entry under a header, columns separated by two spaces.
fn table(entries: &[AuditEntry]) -> String {
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|entry| {
            [
                entry.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                entry.actor.clone(),
                entry.action.clone(),
                entry.target.clone(),
                entry.detail.clone(),
            ]
        })
        .collect();
    let header = ["AT", "ACTOR", "ACTION", "TARGET", "DETAIL"].map(str::to_owned);
    let mut widths = header.clone().map(|cell| cell.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> =
            row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}
