//! `almanac resolve`.

use std::process::ExitCode;

/// Arguments of `almanac resolve`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `almanac resolve`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("almanac resolve is not built yet")
}
