//! Command-line interface: one file per subcommand. `main.rs` calls [`main`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod audit;
pub mod check;
pub mod climate;
pub mod members;
pub mod migrate;
pub mod plan;
pub mod resolve;
pub mod run;
pub mod simulate;

/// almanac: geo-targeted, climate-timed, dialect-localized pushes.
#[derive(Debug, Parser)]
#[command(name = "almanac", version, about)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run(run::Args),
    /// Check campaign files; with --config, the whole deployment (exit 0 valid, 1 errors, 2 usage).
    Check(check::Args),
    /// Show who gets what, when, in which language.
    Plan(plan::Args),
    /// Replay the engine over a virtual clock.
    Simulate(simulate::Args),
    /// Resolve a phone number, city, coordinates or IP to a place.
    Resolve(resolve::Args),
    /// Import, export, show and forget members.
    #[command(subcommand)]
    Members(members::Command),
    /// Apply database migrations.
    Migrate(migrate::Args),
    /// Climate normals: import from Open-Meteo.
    #[command(subcommand)]
    Climate(climate::Command),
    /// Print the audit log (pauses, resumes, member changes), newest first.
    Audit(audit::Args),
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Resolve(args) => resolve::run(args),
        Command::Members(command) => members::run(command),
        Command::Migrate(args) => migrate::run(args),
        Command::Climate(command) => climate::run(command),
        Command::Audit(args) => audit::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
