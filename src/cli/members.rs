//! `almanac members`: import, export, show and forget members.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::migrate::{DEFAULT_DATABASE_URL, redact_url};
use crate::members::{self, Format, ImportSummary};
use crate::store::Store;

/// Subcommands of `almanac members`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import a member file (.csv with a header, or .jsonl), upserting by external id.
    /// Bad rows are reported with their row number and skipped; exit status 1 when
    /// any row was rejected.
    Import {
        /// The member file.
        file: PathBuf,
        /// Database URL.
        #[arg(long, env = "ALMANAC_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database: String,
        /// Rows per database batch [default: 2000 on SQLite, 10000 on PostgreSQL].
        #[arg(long)]
        batch: Option<usize>,
        /// The file's character encoding (`gbk` is accepted for gb18030).
        #[arg(long, value_enum, default_value = "utf-8")]
        encoding: members::Encoding,
    },
    /// Write every member to stdout (or a file).
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Database URL.
        #[arg(long, env = "ALMANAC_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database: String,
    },
    /// Show one member: record, resolved place, upcoming sends.
    Show {
        /// The member's external id.
        id: String,
        /// Database URL.
        #[arg(long, env = "ALMANAC_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database: String,
    },
    /// Erase one member's personal data (PIPL / GDPR): the member row, its
    /// resolution and its rendered messages; anonymous ledger counts remain.
    Forget {
        /// The member's external id.
        id: String,
        /// Database URL.
        #[arg(long, env = "ALMANAC_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database: String,
    },
}

/// Runs `almanac members`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        match command {
            Command::Import { file, database, batch, encoding } => {
                import(&file, &database, batch, encoding).await
            }
            Command::Export { format, output, database } => {
                let store = connect(&database).await?;
                let count = match &output {
                    Some(path) => {
                        let file = std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?;
                        let mut writer = std::io::BufWriter::new(file);
                        members::export(&store, format, &mut writer).await?
                    }
                    None => {
                        let stdout = std::io::stdout();
                        let mut writer = std::io::BufWriter::new(stdout.lock());
                        members::export(&store, format, &mut writer).await?
                    }
                };
                store.close().await;
                eprintln!("exported {count} members");
                Ok(ExitCode::SUCCESS)
            }
            Command::Show { id, database } => show(&id, &database).await,
            Command::Forget { id, database } => {
                let store = connect(&database).await?;
                let found = store.delete_member(&id, "cli").await?;
                store.close().await;
                if found {
                    println!("forgot member {id}: personal data erased, anonymous counts kept");
                    Ok(ExitCode::SUCCESS)
                } else {
                    eprintln!("error: no member with external id {id:?}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    })
}

async fn connect(url: &str) -> anyhow::Result<Store> {
    Store::connect(url).await.with_context(|| format!("opening {}", redact_url(url)))
}

async fn import(
    file: &std::path::Path,
    database: &str,
    batch: Option<usize>,
    encoding: members::Encoding,
) -> anyhow::Result<ExitCode> {
    let rows = members::read_file_encoded(file, encoding)?;
    let store = connect(database).await?;
    let batch = batch.unwrap_or_else(|| members::default_batch(&store));
    let (resolver, version) = members::geo_resolver(crate::geo::Geo::bundled());
    let progress = std::io::stdout().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let bar = progress.clone();
    let mut on_error = move |error: &members::RowError| {
        let error = crate::redact::mask_phones(&error.to_string());
        match &bar {
            Some(bar) => bar.suspend(|| eprintln!("{error}")),
            None => eprintln!("{error}"),
        }
    };
    let bar = progress.clone();
    let mut on_progress = move |summary: &ImportSummary| {
        if let Some(bar) = &bar {
            bar.set_message(format!(
                "{} read, {} inserted, {} updated, {} unchanged, {} rejected",
                summary.read,
                summary.inserted,
                summary.updated,
                summary.unchanged,
                summary.rejected
            ));
            bar.tick();
        }
    };
    let started = std::time::Instant::now();
    let summary =
        members::import(&store, rows, resolver, &version, batch, &mut on_error, &mut on_progress)
            .await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let counts = store.member_counts().await?;
    store.close().await;
    let seconds = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: read {}, inserted {}, updated {}, unchanged {}, rejected {} ({:.1} s, {:.0} rows/s)",
        file.display(),
        summary.read,
        summary.inserted,
        summary.updated,
        summary.unchanged,
        summary.rejected,
        seconds,
        summary.read as f64 / seconds.max(1e-9),
    )?;
    writeln!(out, "members in database: {} ({} unresolved)", counts.total, counts.unresolved)?;
    Ok(if summary.rejected > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn show(id: &str, database: &str) -> anyhow::Result<ExitCode> {
    let store = connect(database).await?;
    let Some(stored) = store.get_member(id).await? else {
        eprintln!("error: no member with external id {id:?}");
        return Ok(ExitCode::from(1));
    };
    let upcoming = store.upcoming_sends(stored.id, 20).await?;
    store.close().await;
    let member = &stored.member;
    let mut out = std::io::stdout().lock();
    let show = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_string());
    writeln!(out, "external_id          {}", member.external_id)?;
    writeln!(out, "internal id          {}", stored.id)?;
    writeln!(out, "openid               {}", show(&member.openid))?;
    writeln!(out, "name                 {}", show(&member.name))?;
    writeln!(
        out,
        "phone                {}",
        show(&member.phone.as_deref().map(crate::redact::mask_phone))
    )?;
    writeln!(out, "city / province      {} / {}", show(&member.city), show(&member.province))?;
    match member.lat.zip(member.lon) {
        Some((lat, lon)) => writeln!(out, "coordinates          {lat}, {lon}")?,
        None => writeln!(out, "coordinates          -")?,
    }
    writeln!(out, "ip                   {}", show(&member.ip))?;
    writeln!(out, "lang                 {}", show(&member.lang))?;
    writeln!(out, "tags                 {}", member.tags.join(", "))?;
    for (key, value) in &member.attrs {
        writeln!(out, "attrs.{key:<15} {value}")?;
    }
    let instant = |value: Option<chrono::DateTime<chrono::Utc>>| {
        value.map_or_else(|| "-".to_string(), |at| at.to_rfc3339())
    };
    writeln!(out, "opted out            {}", instant(member.opted_out_at))?;
    writeln!(out, "last interaction     {}", instant(member.last_interaction_at))?;
    match (&stored.place, &stored.unresolved_reason) {
        (Some(place), _) => writeln!(
            out,
            "place                city #{} tz {} via {} (confidence {:.2}{})",
            place.city.0,
            place.tz.name(),
            place.source.as_str(),
            place.confidence,
            place.distance_km.map(|km| format!(", {km:.1} km")).unwrap_or_default()
        )?,
        (None, Some(reason)) => writeln!(out, "place                unresolved: {reason}")?,
        (None, None) => writeln!(out, "place                not resolved yet")?,
    }
    writeln!(out, "upcoming sends       {}", upcoming.len())?;
    for send in &upcoming {
        writeln!(
            out,
            "  {}  {} / {}  {} {} variant {}  {}",
            send.due_at.to_rfc3339(),
            send.campaign_id,
            send.occurrence,
            send.channel,
            send.lang,
            send.variant,
            send.status.as_str()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
