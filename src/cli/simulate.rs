//! `almanac simulate`.

use std::process::ExitCode;

/// Arguments of `almanac simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `almanac simulate`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("almanac simulate is not built yet")
}
