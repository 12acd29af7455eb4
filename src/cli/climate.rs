//! `almanac climate`.

use std::process::ExitCode;

/// Subcommands of `almanac climate`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Runs `almanac climate`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {}
}
