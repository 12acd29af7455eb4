//! `almanac run`.

use std::process::ExitCode;

/// Arguments of `almanac run`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `almanac run`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("almanac run is not built yet")
}
