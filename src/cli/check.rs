//! `almanac check`.

use std::process::ExitCode;

/// Arguments of `almanac check`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `almanac check`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("almanac check is not built yet")
}
