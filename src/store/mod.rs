//! Storage: members, their cached resolution, campaign state, the delivery ledger
//! with leases, the audit log and the shared WeChat access token, on SQLite (the
//! embedded default) or PostgreSQL (many replicas).
//!
//! CONTRACT (skeleton; the storage work, issue 5, fills it in and keeps these
//! signatures; add methods freely). Every hot-path write takes a batch.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::geo::{CityId, Geo, Place, PlaceSource};
use crate::members::Member;

mod postgres;
mod sqlite;
pub mod testing;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Database error.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Migration error.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names no supported backend.
    #[error("unsupported database URL {0:?} (expected sqlite:… or postgres://…)")]
    Url(String),
    /// A bulk load stopped (the database error, if any, came first).
    #[error("bulk load: {0}")]
    BulkLoad(&'static str),
    /// The SQLite file could not be created.
    #[error("creating {path}: {source}")]
    Create {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A stored value could not be decoded (a corrupt or hand-edited row).
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A member as stored: the CRM record plus our internal id and cached place.
#[derive(Debug, Clone)]
pub struct StoredMember {
    /// Internal id (ledger key).
    pub id: i64,
    /// The record.
    pub member: Member,
    /// Cached resolution, if resolved with the current data version.
    pub place: Option<crate::geo::Place>,
    /// Why resolution failed, if it did.
    pub unresolved_reason: Option<String>,
}

/// A member's consent to pushes, as a subscribe or unsubscribe changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Pushes allowed (followed the Official Account again).
    OptedIn,
    /// Never push (unfollowed, or a channel said the member refused).
    OptedOut,
}

/// Status of a ledger row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendStatus {
    /// Waiting for its due instant (or its retry instant).
    Pending,
    /// Claimed by a dispatcher under a lease.
    Claimed,
    /// Accepted by the channel.
    Sent,
    /// Gave up; `last_error` says why.
    Dead,
    /// Control group: recorded, never sent.
    Holdout,
    /// Dropped before sending (opted out, capped), with the reason.
    Skipped,
}

impl SendStatus {
    /// Stable lowercase name (DB column, metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Claimed => "claimed",
            Self::Sent => "sent",
            Self::Dead => "dead",
            Self::Holdout => "holdout",
            Self::Skipped => "skipped",
        }
    }
}

/// A row to insert into the ledger (planning). Unique on
/// (campaign_id, occurrence, member_id): inserting it twice is a no-op.
#[derive(Debug, Clone)]
pub struct NewSend {
    /// Campaign.
    pub campaign_id: String,
    /// Occurrence key (e.g. `2027-09-14` for a climate trigger).
    pub occurrence: String,
    /// Member (internal id).
    pub member_id: i64,
    /// When it is due.
    pub due_at: DateTime<Utc>,
    /// Channel name.
    pub channel: String,
    /// Language of the chosen variant.
    pub lang: String,
    /// Variant label (A/B).
    pub variant: String,
    /// Rendered text.
    pub text: String,
    /// `Pending`, `Holdout` for the control group, or `Skipped` for a send the
    /// planner decided not to make (with its `reason`).
    pub status: SendStatus,
    /// Why a `Skipped` row is skipped (its `last_error`: `global_cap`); `None`
    /// for the others.
    pub reason: Option<&'static str>,
}

/// A claimed row, with what a channel needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedSend {
    /// Ledger row id.
    pub id: i64,
    /// Campaign.
    pub campaign_id: String,
    /// Occurrence key.
    pub occurrence: String,
    /// Member internal id.
    pub member_id: i64,
    /// Member external id.
    pub external_id: String,
    /// WeChat openid.
    pub openid: Option<String>,
    /// Member's last own interaction (WeChat 48-hour window).
    pub last_interaction_at: Option<DateTime<Utc>>,
    /// Due instant.
    pub due_at: DateTime<Utc>,
    /// Not to be sent before this instant (the due instant, or a retry's): a row
    /// claimed ahead ([`Store::claim_due_within`]) waits for it.
    pub not_before: DateTime<Utc>,
    /// Channel name.
    pub channel: String,
    /// Language.
    pub lang: String,
    /// Variant label.
    pub variant: String,
    /// Rendered text.
    pub text: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

impl ClaimedSend {
    /// The idempotency key: stable across retries, restarts and replicas.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.campaign_id, self.occurrence, self.member_id)
    }
}

/// What happened to a claimed row.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Accepted by the channel.
    Sent {
        /// Ledger row id.
        id: i64,
        /// When.
        at: DateTime<Utc>,
        /// Provider's message id, if any.
        provider_id: Option<String>,
    },
    /// Try again at `at`.
    Retry {
        /// Ledger row id.
        id: i64,
        /// Next attempt.
        at: DateTime<Utc>,
        /// Why.
        error: String,
    },
    /// Give up.
    Dead {
        /// Ledger row id.
        id: i64,
        /// Why.
        reason: String,
    },
    /// Not sent (member opted out, daily quota wait is a Retry), with the reason.
    Skipped {
        /// Ledger row id.
        id: i64,
        /// Why.
        reason: String,
    },
    /// Not attempted as far as the push is concerned: its channel failed as a
    /// whole (an account-level error), so the row goes back to pending as it was
    /// (`attempts` and `next_attempt_at` unchanged), noting the reason.
    Released {
        /// Ledger row id.
        id: i64,
        /// Why.
        reason: String,
    },
}

/// Rows a claim leaves in the ledger ([`Store::claim_due_within`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclude {
    /// Campaigns whose rows stay pending (the dispatcher holds enough of them).
    pub campaigns: Vec<String>,
    /// Channels whose rows stay pending (the channel is paused).
    pub channels: Vec<String>,
}

impl FromStr for SendStatus {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Ok(match text {
            "pending" => Self::Pending,
            "claimed" => Self::Claimed,
            "sent" => Self::Sent,
            "dead" => Self::Dead,
            "holdout" => Self::Holdout,
            "skipped" => Self::Skipped,
            other => {
                return Err(Error::Corrupt {
                    table: "sends",
                    reason: format!("unknown status {other:?}"),
                });
            }
        })
    }
}

/// A member's cached resolution as written by import and [`Store::reresolve_stale`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolution {
    /// The place, when resolution succeeded.
    pub place: Option<Place>,
    /// Why resolution failed, when it did.
    pub unresolved_reason: Option<String>,
    /// The geo data version that produced it (`None`: unknown, re-resolved at next start).
    pub data_version: Option<String>,
}

/// What an upsert did to one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertKind {
    /// A new member.
    Inserted,
    /// An existing member whose record or resolution changed.
    Updated,
    /// An existing member, identical.
    Unchanged,
}

/// Result of upserting one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    /// Internal id.
    pub id: i64,
    /// What happened.
    pub kind: UpsertKind,
}

/// A campaign's operational state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignState {
    /// Campaign id.
    pub campaign_id: String,
    /// Paused by an operator.
    pub paused: bool,
    /// Content hash of the last loaded file, if recorded.
    pub content_hash: Option<String>,
}

/// A ledger row as shown to operators (`members show`, admin API).
#[derive(Debug, Clone, PartialEq)]
pub struct SendRow {
    /// Ledger row id.
    pub id: i64,
    /// Campaign.
    pub campaign_id: String,
    /// Occurrence key.
    pub occurrence: String,
    /// Member internal id (`None` once the member was forgotten).
    pub member_id: Option<i64>,
    /// Due instant.
    pub due_at: DateTime<Utc>,
    /// Channel name.
    pub channel: String,
    /// Language.
    pub lang: String,
    /// Variant label.
    pub variant: String,
    /// Status.
    pub status: SendStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Last error or skip reason.
    pub last_error: Option<String>,
}

/// A past or planned send, for frequency caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Campaign.
    pub campaign_id: String,
    /// Member internal id.
    pub member_id: i64,
    /// Due instant.
    pub due_at: DateTime<Utc>,
    /// Occurrence key (the planner skips occurrences already recorded).
    pub occurrence: String,
    /// A control-group row (counts for `per_member`, not for the global cap).
    pub holdout: bool,
    /// Settled without a send (skipped, dead): the occurrence is decided and
    /// counts for no cap.
    pub skipped: bool,
}

/// Member totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberCounts {
    /// All members.
    pub total: i64,
    /// Members without a place.
    pub unresolved: i64,
}

/// The most audit entries one read returns (`GET /v1/audit`, `almanac audit`).
pub const AUDIT_LIMIT_MAX: i64 = 1000;

/// One audit log entry (serialized as the admin API and `almanac audit --json`
/// show it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who (operator, token name, `cli`).
    pub actor: String,
    /// What (`pause`, `forget`, ...).
    pub action: String,
    /// On what.
    pub target: String,
    /// Details (no personal data).
    pub detail: String,
}

/// How far the ledger is planned, and with which campaign set (shared by replicas;
/// see [`Store::lead_planner`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlannerMark {
    /// Every send due before this instant is in the ledger (`None`: plan from now).
    pub planned_until: Option<DateTime<Utc>>,
    /// A digest of the campaigns the window was planned with.
    pub campaigns_hash: Option<String>,
    /// Bumped by [`Store::forget_planned`]: a mark read before members changed is
    /// not recorded by [`Store::finish_planning`] (the lease is still released).
    pub generation: i64,
    /// Members forgotten so far, where the backend counts them (PostgreSQL):
    /// [`Store::insert_planned`] skips its per-row membership check while the
    /// count is unchanged. `None` on SQLite, which always checks.
    pub forgotten: Option<i64>,
}

/// A cached WeChat access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WechatToken {
    /// The token (a secret: never log it).
    pub token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// SQLite file (one process).
    Sqlite,
    /// PostgreSQL (many replicas).
    Postgres,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An import into an empty members table ([`Store::begin_bulk_load`]).
pub struct BulkLoad {
    store: Store,
    kind: BulkKind,
}

enum BulkKind {
    /// One transaction, COPY, indexes rebuilt at the end.
    Postgres(postgres::BulkLoad),
    /// Plain INSERTs, a transaction per batch, until an external id exists
    /// (`upserting`): from then on, upserts.
    Sqlite { pool: sqlx::SqlitePool, upserting: bool },
}

/// How a batch of a [`BulkLoad`] was written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// New members.
    pub inserted: u64,
    /// Existing members that changed.
    pub updated: u64,
    /// Existing members, identical.
    pub unchanged: u64,
}

impl Written {
    /// Counts what [`Store::upsert_resolved`] did.
    pub fn of(upserted: &[Upserted]) -> Written {
        let mut written = Written::default();
        for upserted in upserted {
            match upserted.kind {
                UpsertKind::Inserted => written.inserted += 1,
                UpsertKind::Updated => written.updated += 1,
                UpsertKind::Unchanged => written.unchanged += 1,
            }
        }
        written
    }
}

impl BulkLoad {
    /// Writes a batch of members with their resolution. On PostgreSQL an
    /// external id written again replaces the earlier row when the load
    /// finishes (and counts as inserted until then: see [`BulkLoad::finish`]).
    pub async fn write(&mut self, rows: Vec<(Member, Resolution)>) -> Result<Written> {
        let count = rows.len() as u64;
        match &mut self.kind {
            BulkKind::Postgres(load) => load.write(rows).await?,
            BulkKind::Sqlite { pool, upserting } => {
                if *upserting || !sqlite::insert_new_members(pool, &rows).await? {
                    *upserting = true;
                    return Ok(Written::of(&self.store.upsert_resolved(&rows).await?));
                }
            }
        }
        Ok(Written { inserted: count, ..Written::default() })
    }

    /// Ends the load (PostgreSQL: rebuilds the indexes and commits); returns
    /// how many rows counted as inserted were replaced by a later row of the
    /// same external id. The next planner tick plans from now.
    pub async fn finish(self) -> Result<u64> {
        let replaced = match self.kind {
            BulkKind::Postgres(load) => load.finish().await?,
            BulkKind::Sqlite { .. } => 0,
        };
        self.store.forget_planned().await?;
        Ok(replaced)
    }
}

/// The store: one API, two backends.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// Runs `$body` with `$pool` bound to the backend's pool and `$module` to its SQL module.
macro_rules! dispatch {
    ($self:expr, |$pool:ident, $module:ident| $body:expr) => {
        match &$self.backend {
            Backend::Sqlite($pool) => {
                use sqlite as $module;
                $body
            }
            Backend::Postgres($pool) => {
                use postgres as $module;
                $body
            }
        }
    };
}

/// Creates the SQLite file at `path` readable by its owner only (0600) when it
/// does not exist yet; SQLite gives its `-wal` and `-shm` files the same mode.
fn create_private(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(Error::Create { path: path.display().to_string(), source }),
    }
}

/// Rows per batch when re-resolving stale members.
const RERESOLVE_BATCH: i64 = 2000;

impl Store {
    /// Connects (`sqlite:path` creates the file; `postgres://…`) and migrates.
    pub async fn connect(url: &str) -> Result<Store> {
        let store = Self::connect_unmigrated(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without applying migrations.
    pub async fn connect_unmigrated(url: &str) -> Result<Store> {
        Self::connect_with_pages(url, None).await
    }

    /// [`Store::connect`] on SQLite with every connection's database capped at
    /// `max_pages` pages (`PRAGMA max_page_count`): a full disk, reproducibly.
    pub async fn connect_sqlite_capped(url: &str, max_pages: u32) -> Result<Store> {
        let store = Self::connect_with_pages(url, Some(max_pages)).await?;
        store.migrate().await?;
        Ok(store)
    }

    async fn connect_with_pages(url: &str, max_pages: Option<u32>) -> Result<Store> {
        let backend = if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            // `secure_delete`: deleted rows (a forgotten member) are overwritten
            // with zeros, not left in free space.
            let mut options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30))
                .pragma("secure_delete", "ON");
            if let Some(pages) = max_pages {
                options = options.pragma("max_page_count", pages.to_string());
            }
            if !memory {
                create_private(options.get_filename())?;
                options = options
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal);
            }
            let mut pool = SqlitePoolOptions::new()
                .max_connections(if memory { 1 } else { 8 })
                .min_connections(if memory { 1 } else { 0 })
                .idle_timeout(if memory { None } else { Some(Duration::from_secs(600)) })
                .max_lifetime(if memory { None } else { Some(Duration::from_secs(1800)) });
            if !memory {
                // A connection whose transaction failed to commit or roll back (a
                // full disk: SQLite may already have rolled it back itself) is
                // closed, never handed out again still inside a transaction. (An
                // in-memory database lives only as long as its one connection.)
                pool = pool.after_release(|connection, _| {
                    Box::pin(async move {
                        use sqlx::Connection as _;
                        Ok(!connection.is_in_transaction())
                    })
                });
            }
            let pool = pool.connect_with(options).await?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await?;
            Backend::Postgres(pool)
        } else {
            return Err(Error::Url(url.to_string()));
        };
        Ok(Store { backend })
    }

    /// Applies the embedded migrations of this backend; returns how many exist.
    pub async fn migrate(&self) -> Result<usize> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let migrator = sqlx::migrate!("migrations/sqlite");
                migrator.run(pool).await?;
                Ok(migrator.iter().count())
            }
            Backend::Postgres(pool) => {
                let migrator = sqlx::migrate!("migrations/postgres");
                migrator.run(pool).await?;
                Ok(migrator.iter().count())
            }
        }
    }

    /// Runs one SQL statement without parameters (administration, tests).
    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        Ok(match &self.backend {
            Backend::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await?.rows_affected(),
            Backend::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await?.rows_affected(),
        })
    }

    /// One round trip to the database (`SELECT 1`): the readiness probe.
    pub async fn ping(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Backend::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Closes every connection (checkpoints the SQLite WAL).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    // ---- members ---------------------------------------------------------------

    /// Inserts or updates members by external id; returns their internal ids.
    /// The places are stored without a data version, so [`Store::reresolve_stale`]
    /// resolves them again with the bundled data.
    pub async fn upsert_members(&self, members: &[(Member, Option<Place>)]) -> Result<Vec<i64>> {
        let rows: Vec<(Member, Resolution)> = members
            .iter()
            .map(|(member, place)| {
                (member.clone(), Resolution { place: *place, ..Resolution::default() })
            })
            .collect();
        Ok(self.upsert_resolved(&rows).await?.into_iter().map(|up| up.id).collect())
    }

    /// Inserts or updates members with their resolution, by external id; says
    /// for each (in input order) whether it was inserted, updated or unchanged.
    /// A later duplicate of an external id in the same batch wins.
    pub async fn upsert_resolved(&self, rows: &[(Member, Resolution)]) -> Result<Vec<Upserted>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // Instants are stored with microsecond precision: compare them that way.
        let truncated: Vec<(Member, Resolution)>;
        let rows = if rows.iter().any(|(member, _)| has_sub_micros(member)) {
            truncated = rows
                .iter()
                .map(|(member, resolution)| (truncate_instants(member.clone()), resolution.clone()))
                .collect();
            &truncated
        } else {
            rows
        };
        // The last occurrence of each external id is the one written; every
        // writer locks rows in external id order (no deadlocks between imports).
        let mut last = std::collections::HashMap::new();
        for (index, (member, _)) in rows.iter().enumerate() {
            last.insert(member.external_id.as_str(), index);
        }
        let mut unique: Vec<&(Member, Resolution)> =
            last.values().map(|&index| &rows[index]).collect();
        unique.sort_by(|a, b| a.0.external_id.cmp(&b.0.external_id));
        let written =
            dispatch!(self, |pool, backend| backend::upsert_members(pool, &unique).await?);
        if written.iter().any(|(_, _, kind)| *kind != UpsertKind::Unchanged) {
            // New or changed members are planned from now on the next tick, also
            // inside the window a running daemon already planned.
            self.forget_planned().await?;
        }
        let outcome: std::collections::HashMap<&str, Upserted> = written
            .iter()
            .map(|(external_id, id, kind)| {
                (external_id.as_str(), Upserted { id: *id, kind: *kind })
            })
            .collect();
        rows.iter()
            .map(|(member, _)| {
                outcome.get(member.external_id.as_str()).copied().ok_or_else(|| Error::Corrupt {
                    table: "members",
                    reason: format!("upsert returned no id for {:?}", member.external_id),
                })
            })
            .collect()
    }

    /// Starts a bulk load when `members` is empty, `None` otherwise. On
    /// PostgreSQL (after waiting for any other writer of the table) it holds
    /// `members` exclusively until [`BulkLoad::finish`] commits, and is all or
    /// nothing: dropped unfinished, it rolls back. On SQLite each batch is a
    /// plain INSERT in a transaction of its own, and the load falls back to
    /// upserts at the first external id that exists.
    pub async fn begin_bulk_load(&self) -> Result<Option<BulkLoad>> {
        let kind = match &self.backend {
            Backend::Postgres(pool) => match postgres::begin_bulk_load(pool).await? {
                Some(load) => BulkKind::Postgres(load),
                None => return Ok(None),
            },
            Backend::Sqlite(pool) => {
                if !self.members_page(0, 1).await?.is_empty() {
                    return Ok(None);
                }
                BulkKind::Sqlite { pool: pool.clone(), upserting: false }
            }
        };
        Ok(Some(BulkLoad { store: self.clone(), kind }))
    }

    /// Streams members in id order: up to `limit` with id > `after`.
    pub async fn members_page(&self, after: i64, limit: i64) -> Result<Vec<StoredMember>> {
        let rows = dispatch!(self, |pool, backend| backend::members_page(pool, after, limit, None)
            .await?);
        Ok(rows.into_iter().map(|row| row.stored).collect())
    }

    /// Like [`Store::members_page`], reading only what the timing engine uses:
    /// `openid`, `phone`, `city`, `province`, `ip`, `last_interaction_at` and
    /// `unresolved_reason` come back empty (the planner's hot path; a field the
    /// engine starts to read must be added to the backends' planning columns).
    pub async fn planning_page(&self, after: i64, limit: i64) -> Result<Vec<StoredMember>> {
        let rows =
            dispatch!(self, |pool, backend| backend::planning_page(pool, after, limit).await?);
        Ok(rows.into_iter().map(|row| row.stored).collect())
    }

    /// A member by external id.
    pub async fn get_member(&self, external_id: &str) -> Result<Option<StoredMember>> {
        let rows =
            dispatch!(self, |pool, backend| backend::members_by_external_ids(pool, &[external_id])
                .await?);
        Ok(rows.into_iter().next().map(|row| row.stored))
    }

    /// A member's internal id by WeChat openid.
    pub async fn member_id_by_openid(&self, openid: &str) -> Result<Option<i64>> {
        dispatch!(self, |pool, backend| backend::member_id_by_openid(pool, openid).await)
    }

    /// Records a change of the member's consent that happened at `at` (a WeChat
    /// subscribe or unsubscribe by its `CreateTime`, a channel's refusal). It
    /// applies only when newer than the last change recorded (an opt-out wins a
    /// tie), so an older event arriving late does not undo a newer one; returns
    /// whether it applied.
    pub async fn set_consent(
        &self,
        member_id: i64,
        consent: Consent,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        dispatch!(self, |pool, backend| backend::set_consent(pool, member_id, consent, at).await)
    }

    /// Accepts a verified callback signature once: `false` when it was already
    /// seen (a replay). Remembered until `expires_at`; entries past it are
    /// removed on the way (`now`).
    pub async fn claim_callback_signature(
        &self,
        signature: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        dispatch!(self, |pool, backend| backend::claim_callback_signature(
            pool, signature, expires_at, now
        )
        .await)
    }

    /// Forgets a claimed signature, so that the sender's retry of a request that
    /// could not be applied is accepted.
    pub async fn release_callback_signature(&self, signature: &str) -> Result<()> {
        dispatch!(self, |pool, backend| backend::release_callback_signature(pool, signature).await)
    }

    /// Records the member's own interaction at `at` (opens the WeChat 48-hour window).
    pub async fn touch_interaction(&self, member_id: i64, at: DateTime<Utc>) -> Result<()> {
        dispatch!(self, |pool, backend| backend::touch_interaction(pool, member_id, at).await)
    }

    /// Forgets a member (PIPL / GDPR erasure): deletes the member row and its
    /// resolution; in the ledger removes the member reference, rendered text,
    /// errors and provider ids so only anonymous counts by campaign and status
    /// remain; redacts the member's identifiers from the audit log; and writes an
    /// audit row naming only the internal id. Returns false when no such member.
    pub async fn delete_member(&self, external_id: &str, actor: &str) -> Result<bool> {
        let Some(member) = self.get_member(external_id).await? else {
            return Ok(false);
        };
        let mut secrets: Vec<String> = [
            Some(member.member.external_id.clone()),
            member.member.openid.clone(),
            member.member.phone.clone(),
            member.member.name.clone(),
        ]
        .into_iter()
        .flatten()
        .filter(|value| value.chars().count() >= 3)
        .collect();
        secrets.sort();
        secrets.dedup();
        dispatch!(self, |pool, backend| backend::forget_member(pool, member.id, &secrets).await?);
        self.audit(actor, "forget", &format!("member #{}", member.id), "member erased").await?;
        Ok(true)
    }

    /// The member's next ledger rows (pending, claimed) by due instant.
    pub async fn upcoming_sends(&self, member_id: i64, limit: i64) -> Result<Vec<SendRow>> {
        dispatch!(self, |pool, backend| backend::upcoming_sends(pool, member_id, limit).await)
    }

    /// Total and unresolved member counts.
    pub async fn member_counts(&self) -> Result<MemberCounts> {
        dispatch!(self, |pool, backend| backend::member_counts(pool).await)
    }

    /// Re-resolves members whose cached resolution came from another data version
    /// (or none), in batches; returns how many were re-resolved.
    pub async fn reresolve_stale(&self, geo: &Geo) -> Result<u64> {
        let version = geo.data_version().to_string();
        self.reresolve_stale_with(&version, &|member| crate::members::resolve_with_geo(geo, member))
            .await
    }

    /// [`Store::reresolve_stale`] with any resolver (tests, tools).
    pub async fn reresolve_stale_with(
        &self,
        data_version: &str,
        resolver: &(dyn Fn(&Member) -> Result<Place, String> + Sync),
    ) -> Result<u64> {
        let mut after = 0;
        let mut total = 0;
        loop {
            let page = dispatch!(self, |pool, backend| backend::members_page(
                pool,
                after,
                RERESOLVE_BATCH,
                Some(data_version)
            )
            .await?);
            let Some(last) = page.last() else { break };
            after = last.stored.id;
            let updates: Vec<(i64, Resolution)> = page
                .iter()
                .map(|row| {
                    let resolution = match resolver(&row.stored.member) {
                        Ok(place) => Resolution {
                            place: Some(place),
                            unresolved_reason: None,
                            data_version: Some(data_version.to_string()),
                        },
                        Err(reason) => Resolution {
                            place: None,
                            unresolved_reason: Some(reason),
                            data_version: Some(data_version.to_string()),
                        },
                    };
                    (row.stored.id, resolution)
                })
                .collect();
            dispatch!(self, |pool, backend| backend::write_resolutions(pool, &updates).await?);
            total += updates.len() as u64;
        }
        Ok(total)
    }

    // ---- ledger ----------------------------------------------------------------

    /// Inserts ledger rows, ignoring ones that exist; returns how many were new.
    /// Rows for members that no longer exist are dropped.
    pub async fn insert_sends(&self, sends: &[NewSend]) -> Result<u64> {
        self.insert_sorted(sends, None).await
    }

    /// [`Store::insert_sends`] for the planner, whose members were read after
    /// `mark` was taken (by [`Store::lead_planner`]): while no member has been
    /// forgotten since, PostgreSQL need not check each row's member.
    pub async fn insert_planned(&self, sends: &[NewSend], mark: &PlannerMark) -> Result<u64> {
        self.insert_sorted(sends, mark.forgotten).await
    }

    async fn insert_sorted(&self, sends: &[NewSend], forgotten: Option<i64>) -> Result<u64> {
        if sends.is_empty() {
            return Ok(0);
        }
        // One lock order for every writer (the ledger key's): no deadlocks
        // between racing planners.
        let mut sorted: Vec<&NewSend> = sends.iter().collect();
        sorted.sort_by(|a, b| {
            (a.member_id, a.campaign_id.as_str(), a.occurrence.as_str()).cmp(&(
                b.member_id,
                b.campaign_id.as_str(),
                b.occurrence.as_str(),
            ))
        });
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::insert_sends(pool, &sorted).await,
            Backend::Postgres(pool) => postgres::insert_sends(pool, &sorted, forgotten).await,
        }
    }

    /// Claims up to `limit` due rows (pending and due, or claimed with an expired
    /// lease) for `owner` until `now + lease`. Rows of members who opted out are
    /// marked skipped (`opted_out`) instead and not returned.
    pub async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedSend>> {
        self.claim_due_within(
            owner,
            now,
            chrono::Duration::zero(),
            lease,
            limit,
            &Exclude::default(),
        )
        .await
    }

    /// [`Store::claim_due`], also taking pending rows that fall due (first
    /// attempt or retry) within `ahead` of `now`, in order of
    /// [`ClaimedSend::not_before`]: the dispatcher holds them and fires each at
    /// its instant, so the claim's round trip is not part of its lateness. Leases
    /// still expire against `now` only. Rows of the campaigns and channels in
    /// `exclude` are left alone (the dispatcher already holds enough of a
    /// campaign's rows: they wait for its rate limit; a paused channel's rows
    /// wait for it to resume).
    pub async fn claim_due_within(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        ahead: chrono::Duration,
        lease: chrono::Duration,
        limit: i64,
        exclude: &Exclude,
    ) -> Result<Vec<ClaimedSend>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let due_by = now + ahead.max(chrono::Duration::zero());
        dispatch!(self, |pool, backend| backend::claim_due(
            pool,
            owner,
            now,
            due_by,
            now + lease,
            limit,
            exclude
        )
        .await)
    }

    /// Records, in one transaction, the outcomes of rows `owner` claimed, and
    /// returns how many it recorded. A row `owner` no longer holds is left as it
    /// is: its lease expired and another claim took it (that owner records its
    /// own outcome, and `attempts` counts once), or `forget` erased it.
    pub async fn record_outcomes(&self, owner: &str, outcomes: &[Outcome]) -> Result<u64> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let rows: Vec<OutcomeRow<'_>> = outcomes.iter().map(OutcomeRow::from).collect();
        dispatch!(self, |pool, backend| backend::record_outcomes(pool, owner, &rows).await)
    }

    /// Extends the lease of every row `owner` holds to `until` (a dispatcher whose
    /// rows wait longer than a lease, behind a rate limit or a slow channel, keeps
    /// them: no other claim, its own included, takes them while it lives).
    pub async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> Result<u64> {
        dispatch!(self, |pool, backend| backend::renew_leases(pool, owner, until).await)
    }

    /// Returns every row claimed by `owner` to pending (graceful stop).
    pub async fn release(&self, owner: &str) -> Result<u64> {
        dispatch!(self, |pool, backend| backend::release(pool, owner).await)
    }

    /// Row counts by status.
    pub async fn backlog(&self) -> Result<Vec<(SendStatus, i64)>> {
        let rows = dispatch!(self, |pool, backend| backend::backlog(pool).await?);
        rows.into_iter().map(|(status, count)| Ok((status.parse::<SendStatus>()?, count))).collect()
    }

    /// Row counts by campaign and status (admin API).
    pub async fn campaign_backlog(&self) -> Result<Vec<(String, SendStatus, i64)>> {
        let rows = dispatch!(self, |pool, backend| backend::campaign_backlog(pool).await?);
        rows.into_iter()
            .map(|(campaign, status, count)| Ok((campaign, status.parse::<SendStatus>()?, count)))
            .collect()
    }

    /// Every row of these members due at or after `since` (frequency caps,
    /// occurrences already recorded or decided: skipped and dead rows settle an
    /// occurrence and count for no cap).
    pub async fn send_history(
        &self,
        member_ids: &[i64],
        since: DateTime<Utc>,
    ) -> Result<Vec<HistoryEntry>> {
        if member_ids.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, |pool, backend| backend::send_history(pool, member_ids, since).await)
    }

    /// Deletes finished ledger rows (sent, dead, skipped, holdout) due before
    /// `older_than`; returns how many.
    pub async fn retention(&self, older_than: DateTime<Utc>) -> Result<u64> {
        dispatch!(self, |pool, backend| backend::retention(pool, older_than).await)
    }

    // ---- campaigns, audit, tokens ---------------------------------------------------

    /// Pauses or resumes a campaign.
    pub async fn set_campaign_paused(&self, campaign_id: &str, paused: bool) -> Result<()> {
        dispatch!(self, |pool, backend| backend::set_campaign_paused(pool, campaign_id, paused)
            .await)
    }

    /// When this ledger first saw each of `campaign_ids`, recording `now` for the
    /// ones it had not seen (replicas agree: the first to record wins).
    pub async fn first_seen(
        &self,
        campaign_ids: &[&str],
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<String, DateTime<Utc>>> {
        dispatch!(self, |pool, backend| backend::first_seen(pool, campaign_ids, now).await)
    }

    /// Records the content hash of a campaign's last loaded file.
    pub async fn set_campaign_hash(&self, campaign_id: &str, content_hash: &str) -> Result<()> {
        dispatch!(self, |pool, backend| backend::set_campaign_hash(pool, campaign_id, content_hash)
            .await)
    }

    /// Every campaign's state, by id.
    pub async fn campaign_states(&self) -> Result<Vec<CampaignState>> {
        dispatch!(self, |pool, backend| backend::campaign_states(pool).await)
    }

    /// Appends an operator action to the audit log (never put personal data in it).
    pub async fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) -> Result<()> {
        dispatch!(self, |pool, backend| backend::audit(pool, actor, action, target, detail).await)
    }

    /// The most recent audit entries, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        self.audit_log_since(None, limit).await
    }

    /// The most recent audit entries at or after `since` (all when `None`), newest
    /// first, at most `limit`.
    pub async fn audit_log_since(
        &self,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        dispatch!(self, |pool, backend| backend::audit_log(pool, since, limit).await)
    }

    /// The cached WeChat access token of an app id.
    pub async fn wechat_token(&self, app_id: &str) -> Result<Option<WechatToken>> {
        dispatch!(self, |pool, backend| backend::wechat_token(pool, app_id).await)
    }

    /// Stores the WeChat access token of an app id (shared by replicas).
    pub async fn put_wechat_token(
        &self,
        app_id: &str,
        token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        dispatch!(self, |pool, backend| backend::put_wechat_token(pool, app_id, token, expires_at)
            .await)
    }

    // ---- planner lease ----------------------------------------------------------

    /// Takes (or renews) the planner lease for `owner` until `until`, unless another
    /// replica holds one that has not expired at `now`; returns the shared mark when
    /// the lease is `owner`'s. One replica plans at a time, so replicas do not each
    /// read and plan every member.
    pub async fn lead_planner(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<PlannerMark>> {
        dispatch!(self, |pool, backend| backend::lead_planner(pool, owner, now, until).await)
    }

    /// Releases `owner`'s planner lease, recording `mark` when given (a replica
    /// that lost its lease changes nothing).
    pub async fn finish_planning(&self, owner: &str, mark: Option<&PlannerMark>) -> Result<()> {
        dispatch!(self, |pool, backend| backend::finish_planning(pool, owner, mark).await)
    }

    /// Forgets how far the ledger is planned: the next planner tick plans every
    /// member from now (done after members are added or changed).
    pub async fn forget_planned(&self) -> Result<()> {
        dispatch!(self, |pool, backend| backend::forget_planned(pool).await)
    }

    /// Every column of every table as text, for erasure checks: (table, row as text).
    pub async fn dump_all_text(&self) -> Result<Vec<(String, String)>> {
        dispatch!(self, |pool, backend| backend::dump_all_text(pool).await)
    }
}

fn has_sub_micros(member: &Member) -> bool {
    [member.opted_out_at, member.last_interaction_at]
        .into_iter()
        .flatten()
        .any(|at| at.timestamp_subsec_nanos() % 1000 != 0)
}

/// Drops sub-microsecond digits, which neither backend stores.
pub(crate) fn truncate_instants(mut member: Member) -> Member {
    use chrono::SubsecRound;
    member.opted_out_at = member.opted_out_at.map(|at| at.trunc_subsecs(6));
    member.last_interaction_at = member.last_interaction_at.map(|at| at.trunc_subsecs(6));
    member
}

/// A stored member plus what upserts compare (the data version).
#[derive(Debug, Clone)]
struct StoredMemberFull {
    stored: StoredMember,
    data_version: Option<String>,
}

impl StoredMemberFull {
    fn same_as(&self, member: &Member, resolution: &Resolution) -> bool {
        self.stored.member == *member
            && self.stored.place == resolution.place
            && self.stored.unresolved_reason == resolution.unresolved_reason
            && self.data_version == resolution.data_version
    }
}

/// An outcome flattened to the columns it writes.
#[derive(Debug)]
struct OutcomeRow<'a> {
    id: i64,
    status: &'static str,
    next_attempt_at: Option<DateTime<Utc>>,
    error: Option<&'a str>,
    provider_id: Option<&'a str>,
    sent_at: Option<DateTime<Utc>>,
    attempt: i32,
}

impl<'a> From<&'a Outcome> for OutcomeRow<'a> {
    fn from(outcome: &'a Outcome) -> Self {
        let blank = OutcomeRow {
            id: 0,
            status: "",
            next_attempt_at: None,
            error: None,
            provider_id: None,
            sent_at: None,
            attempt: 1,
        };
        match outcome {
            Outcome::Sent { id, at, provider_id } => OutcomeRow {
                id: *id,
                status: SendStatus::Sent.as_str(),
                provider_id: provider_id.as_deref(),
                sent_at: Some(*at),
                ..blank
            },
            Outcome::Retry { id, at, error } => OutcomeRow {
                id: *id,
                status: SendStatus::Pending.as_str(),
                next_attempt_at: Some(*at),
                error: Some(error),
                ..blank
            },
            Outcome::Dead { id, reason } => OutcomeRow {
                id: *id,
                status: SendStatus::Dead.as_str(),
                error: Some(reason),
                ..blank
            },
            Outcome::Skipped { id, reason } => OutcomeRow {
                id: *id,
                status: SendStatus::Skipped.as_str(),
                error: Some(reason),
                attempt: 0,
                ..blank
            },
            Outcome::Released { id, reason } => OutcomeRow {
                id: *id,
                status: SendStatus::Pending.as_str(),
                error: Some(reason),
                attempt: 0,
                ..blank
            },
        }
    }
}

/// Flattened place columns: (city id, tz, source, confidence, distance).
type PlaceColumns =
    (Option<i64>, Option<&'static str>, Option<&'static str>, Option<f64>, Option<f64>);

fn place_columns(place: Option<&Place>) -> PlaceColumns {
    match place {
        None => (None, None, None, None, None),
        Some(place) => (
            Some(i64::from(place.city.0)),
            Some(place.tz.name()),
            Some(place.source.as_str()),
            Some(f64::from(place.confidence)),
            place.distance_km.map(f64::from),
        ),
    }
}

fn place_from_columns(
    city: Option<i64>,
    tz: Option<String>,
    source: Option<String>,
    confidence: Option<f64>,
    distance: Option<f64>,
) -> Result<Option<Place>> {
    let (Some(city), Some(tz), Some(source)) = (city, tz, source) else {
        return Ok(None);
    };
    let corrupt = |reason: String| Error::Corrupt { table: "members", reason };
    let city = u32::try_from(city).map_err(|_| corrupt(format!("city id {city} out of range")))?;
    let tz: chrono_tz::Tz = tz.parse().map_err(|_| corrupt(format!("unknown time zone {tz:?}")))?;
    let source = match source.as_str() {
        "explicit" => PlaceSource::Explicit,
        "coordinates" => PlaceSource::Coordinates,
        "phone" => PlaceSource::Phone,
        "ip" => PlaceSource::Ip,
        "fallback" => PlaceSource::Fallback,
        other => return Err(corrupt(format!("unknown place source {other:?}"))),
    };
    #[allow(clippy::cast_possible_truncation)] // stored from an f32
    Ok(Some(Place {
        city: CityId(city),
        tz,
        source,
        confidence: confidence.unwrap_or(0.0) as f32,
        distance_km: distance.map(|d| d as f32),
    }))
}

fn tags_json(member: &Member) -> String {
    serde_json::to_string(&member.tags).unwrap_or_else(|_| "[]".to_string())
}

fn attrs_json(member: &Member) -> String {
    serde_json::to_string(&member.attrs).unwrap_or_else(|_| "{}".to_string())
}

fn parse_tags(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|e| Error::Corrupt { table: "members", reason: format!("tags: {e}") })
}

fn parse_attrs(text: &str) -> Result<std::collections::BTreeMap<String, String>> {
    serde_json::from_str(text)
        .map_err(|e| Error::Corrupt { table: "members", reason: format!("attrs: {e}") })
}
