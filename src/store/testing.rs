//! Fresh, isolated databases for tests (this crate's and every module's): a
//! temporary SQLite file, or a uniquely named schema in the PostgreSQL server
//! named by `ALMANAC_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Each [`TestDb`] is its own database, so tests run in parallel.

use std::path::PathBuf;

use super::{Result, Store};

/// The environment variable naming the test PostgreSQL server.
pub const PG_URL_VAR: &str = "ALMANAC_TEST_PG_URL";

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A migrated store on a database of its own.
#[derive(Debug)]
pub struct TestDb {
    /// The store.
    pub store: Store,
    /// Its URL (connect again to get a second, independent pool).
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    File(PathBuf),
    Schema { admin_url: String, schema: String },
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}_{:016x}", std::process::id(), rand::random::<u64>())
}

impl TestDb {
    /// A temporary SQLite file.
    pub async fn sqlite() -> Result<TestDb> {
        let path = std::env::temp_dir().join(format!("{}.db", unique_name("almanac_test")));
        let url = format!("sqlite:{}", path.display());
        let store = Store::connect(&url).await?;
        Ok(TestDb { store, url, cleanup: Cleanup::File(path) })
    }

    /// A fresh schema on the test PostgreSQL server, or `None` (with a loud
    /// `skipped: no PostgreSQL` on stderr) when `ALMANAC_TEST_PG_URL` is unset and
    /// no server answers at the default URL. When the variable is set, a server
    /// that does not answer is an error.
    pub async fn postgres() -> Result<Option<TestDb>> {
        let (admin_url, required) = match std::env::var(PG_URL_VAR) {
            Ok(url) if !url.is_empty() => (url, true),
            _ => (DEFAULT_PG_URL.to_string(), false),
        };
        let admin = match Store::connect_unmigrated(&admin_url).await {
            Ok(store) => store,
            Err(error) if !required => {
                eprintln!("skipped: no PostgreSQL ({admin_url}: {error})");
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let schema = unique_name("almanac_test");
        admin.execute_raw(&format!("CREATE SCHEMA {schema}")).await?;
        admin.close().await;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
        let store = Store::connect(&url).await?;
        Ok(Some(TestDb { store, url, cleanup: Cleanup::Schema { admin_url, schema } }))
    }

    /// Closes the store and removes the database (file or schema).
    pub async fn cleanup(self) -> Result<()> {
        self.store.close().await;
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::Schema { admin_url, schema } => {
                let admin = Store::connect_unmigrated(admin_url).await?;
                admin.execute_raw(&format!("DROP SCHEMA {schema} CASCADE")).await?;
                admin.close().await;
            }
        }
        Ok(())
    }
}
