//! `almanac migrate`: applies the embedded migrations of the database's backend.

use std::process::ExitCode;

use anyhow::Context;

use crate::store::Store;

/// The embedded default database.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:almanac.db";

/// Arguments of `almanac migrate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Database URL: `sqlite:FILE` (created if missing) or `postgres://…`.
    #[arg(long, env = "ALMANAC_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database: String,
}

/// Runs `almanac migrate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = Store::connect(&args.database)
            .await
            .with_context(|| format!("migrating {}", redact_url(&args.database)))?;
        let count = store.migrate().await?;
        store.close().await;
        println!("{}: schema up to date ({count} migrations)", redact_url(&args.database));
        Ok(ExitCode::SUCCESS)
    })
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}
