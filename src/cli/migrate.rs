//! `almanac migrate`.

use std::process::ExitCode;

/// Arguments of `almanac migrate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `almanac migrate`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("almanac migrate is not built yet")
}
