//! `almanac run`: reads the configuration, sets up logging and the runtime, and
//! hands over to [`crate::daemon::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::config::{Config, DemoConfig};
use crate::daemon;

/// Arguments of `almanac run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (default: the embedded default: SQLite `almanac.db`,
    /// `campaigns/`, the sample members, the `log` channel, 127.0.0.1:9464).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL: `sqlite:FILE` or `postgres://…`. Wins over the configuration
    /// file's `database`, as for every other subcommand [default: the
    /// configuration's `database`, else `sqlite:almanac.db`].
    #[arg(long, env = "ALMANAC_DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,
    /// Demo: a fresh ledger (`almanac-demo.db`) and a clock that starts on
    /// 2027-08-01 and runs 150,000 times faster than real time.
    #[arg(long)]
    pub demo: bool,
    /// With --demo: the virtual start instant.
    #[arg(long, value_name = "RFC3339", requires = "demo", default_value = "2027-08-01T00:00:00Z")]
    pub demo_start: DateTime<Utc>,
    /// With --demo: how many times faster than real time.
    #[arg(long, value_name = "FACTOR", requires = "demo", default_value_t = 150_000.0)]
    pub demo_speed: f64,
}

/// Runs `almanac run`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (mut config, source) = match &args.config {
        Some(path) => (Config::load(path)?, path.display().to_string()),
        None => (Config::embedded_default(), "embedded default".to_owned()),
    };
    // One rule for every subcommand: --database, then ALMANAC_DATABASE_URL (clap
    // reads both into `args.database`), then the configuration file, then the
    // embedded default.
    let database_source = match &args.database {
        Some(url) => {
            config.database = url.clone();
            "--database or ALMANAC_DATABASE_URL"
        }
        None if args.config.is_some() => "configuration file",
        None if args.demo => "demo",
        None => "embedded default",
    };
    if args.demo {
        demo(&mut config, &args)?;
    }
    crate::logging::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let options = daemon::Options {
        config,
        config_source: source,
        database_source: database_source.to_owned(),
    };
    runtime.block_on(daemon::run(options))?;
    Ok(ExitCode::SUCCESS)
}

/// The demo overrides: a fresh SQLite ledger (unless a database was named), the
/// scaled clock, a one-second planner tick over a horizon of at least three
/// (virtual) days.
fn demo(config: &mut Config, args: &Args) -> anyhow::Result<()> {
    if args.config.is_none() && args.database.is_none() {
        let path = "almanac-demo.db";
        for file in [path.to_owned(), format!("{path}-wal"), format!("{path}-shm")] {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => anyhow::bail!("removing the previous demo ledger {file}: {error}"),
            }
        }
        config.database = format!("sqlite:{path}");
    }
    let speed = args.demo_speed.max(1.0);
    config.demo = Some(DemoConfig { start: args.demo_start, speed });
    config.planner.tick = std::time::Duration::from_secs(1);
    // A configured horizon longer than three days is kept: at high speeds a
    // one-second tick is several virtual days.
    config.planner.horizon = config.planner.horizon.max(std::time::Duration::from_secs(3 * 86_400));
    Ok(())
}
