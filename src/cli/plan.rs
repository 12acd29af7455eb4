//! `almanac plan`.

use std::process::ExitCode;

/// Arguments of `almanac plan`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `almanac plan`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("almanac plan is not built yet")
}
