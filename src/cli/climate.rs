//! `almanac climate`: `import` computes monthly normals for gazetteer cities from
//! the Open-Meteo historical-archive API and writes a CSV that `[geo]
//! climate_overrides` can load over the bundled table.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::geo::{Geo, climate, import};

/// Subcommands of `almanac climate`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compute 1991–2020 monthly normals (ERA5 daily means) for cities and write a CSV.
    Import(ImportArgs),
}

/// Arguments of `almanac climate import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Cities (Chinese or English names, as `almanac resolve` takes them).
    #[arg(long = "city", required = true)]
    pub cities: Vec<String>,
    /// Province to disambiguate every `--city` (e.g. `Anhui` for 宿州 Suzhou).
    #[arg(long)]
    pub province: Option<String>,
    /// The CSV to write (same columns as data/climate_normals.csv).
    #[arg(long)]
    pub out: PathBuf,
    /// Base URL of the archive API (`/v1/archive` is appended).
    #[arg(long, default_value = import::DEFAULT_API_BASE)]
    pub api_base: String,
    /// First year of the period.
    #[arg(long, default_value_t = 1991)]
    pub first_year: i32,
    /// Last year of the period.
    #[arg(long, default_value_t = 2020)]
    pub last_year: i32,
}

/// Runs `almanac climate`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Import(args) => import_cmd(args),
    }
}

fn import_cmd(args: ImportArgs) -> anyhow::Result<ExitCode> {
    if args.first_year > args.last_year || args.first_year < 1940 {
        bail!(
            "--first-year {} .. --last-year {} is not a period the archive covers (1940 on)",
            args.first_year,
            args.last_year
        );
    }
    let geo = Geo::bundled();
    let mut cities = Vec::new();
    for name in &args.cities {
        let id = geo
            .find_city(name, args.province.as_deref())
            .with_context(|| format!("--city {name}"))?;
        cities.push(geo.city(id));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .user_agent(concat!("almanac/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut rows = Vec::new();
    for city in cities {
        let row = runtime
            .block_on(import::import_city(
                &client,
                &args.api_base,
                city,
                args.first_year,
                args.last_year,
            ))
            .with_context(|| format!("importing {}", city.name))?;
        eprintln!("{}: {:?} °C", city.name, row.temp_c);
        rows.push(row);
    }
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    climate::write_csv(&rows, file).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {} rows to {}", rows.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
