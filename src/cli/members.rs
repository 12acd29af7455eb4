//! `almanac members`.

use std::process::ExitCode;

/// Subcommands of `almanac members`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Runs `almanac members`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {}
}
