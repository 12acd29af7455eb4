//! Storage: members, their cached resolution, campaign state, the delivery ledger
//! with leases, the audit log and the shared WeChat access token, on SQLite (the
//! embedded default) or PostgreSQL (many replicas).
//!
//! CONTRACT (skeleton; the storage work, issue 5, fills it in and keeps these
//! signatures; add methods freely). Every hot-path write takes a batch.

use chrono::{DateTime, Utc};

use crate::members::Member;

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
    /// `Pending`, or `Holdout` for the control group.
    pub status: SendStatus,
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
}

/// The store: one API, two backends.
#[derive(Debug, Clone)]
pub struct Store {
    _private: (),
}

impl Store {
    /// Connects (`sqlite:path` creates the file; `postgres://…`) and migrates.
    pub async fn connect(_url: &str) -> Result<Store> {
        todo!("issue 5")
    }

    /// Inserts or updates members by external id; returns their internal ids.
    pub async fn upsert_members(
        &self,
        _members: &[(Member, Option<crate::geo::Place>)],
    ) -> Result<Vec<i64>> {
        todo!("issue 5")
    }

    /// Streams members in id order: up to `limit` with id > `after`.
    pub async fn members_page(&self, _after: i64, _limit: i64) -> Result<Vec<StoredMember>> {
        todo!("issue 5")
    }

    /// Inserts ledger rows, ignoring ones that exist; returns how many were new.
    pub async fn insert_sends(&self, _sends: &[NewSend]) -> Result<u64> {
        todo!("issue 5")
    }

    /// Claims up to `limit` due rows (pending and due, or claimed with an expired
    /// lease) for `owner` until `now + lease`.
    pub async fn claim_due(
        &self,
        _owner: &str,
        _now: DateTime<Utc>,
        _lease: chrono::Duration,
        _limit: i64,
    ) -> Result<Vec<ClaimedSend>> {
        todo!("issue 5")
    }

    /// Records outcomes of claimed rows in one transaction.
    pub async fn record_outcomes(&self, _outcomes: &[Outcome]) -> Result<()> {
        todo!("issue 5")
    }

    /// Returns every row claimed by `owner` to pending (graceful stop).
    pub async fn release(&self, _owner: &str) -> Result<u64> {
        todo!("issue 5")
    }

    /// Marks a member opted out (by internal id) at `at`; future sends are skipped.
    pub async fn opt_out(&self, _member_id: i64, _at: DateTime<Utc>) -> Result<()> {
        todo!("issue 5")
    }

    /// Row counts by status.
    pub async fn backlog(&self) -> Result<Vec<(SendStatus, i64)>> {
        todo!("issue 5")
    }

    // --- Methods the daemon (issue 7) calls; placeholders until issue 5 lands. ---

    /// Internal id of the member with this WeChat openid.
    pub async fn member_id_by_openid(&self, _openid: &str) -> Result<Option<i64>> {
        todo!("issue 5")
    }

    /// Clears a member's opt-out (WeChat `subscribe`).
    pub async fn opt_in(&self, _member_id: i64) -> Result<()> {
        todo!("issue 5")
    }

    /// Records the member's own last interaction.
    pub async fn record_interaction(&self, _member_id: i64, _at: DateTime<Utc>) -> Result<()> {
        todo!("issue 5")
    }

    /// Ids of paused campaigns.
    pub async fn paused_campaigns(&self) -> Result<std::collections::HashSet<String>> {
        todo!("issue 5")
    }

    /// Pauses or resumes a campaign.
    pub async fn set_paused(
        &self,
        _campaign_id: &str,
        _paused: bool,
        _at: DateTime<Utc>,
    ) -> Result<()> {
        todo!("issue 5")
    }

    /// Ledger row counts by campaign and status.
    pub async fn campaign_counts(&self) -> Result<Vec<(String, SendStatus, i64)>> {
        todo!("issue 5")
    }

    /// Appends to the audit log.
    pub async fn audit(
        &self,
        _actor: &str,
        _action: &str,
        _target: &str,
        _detail: &str,
        _at: DateTime<Utc>,
    ) -> Result<()> {
        todo!("issue 5")
    }

    /// A member by external id.
    pub async fn member_by_external_id(&self, _external_id: &str) -> Result<Option<StoredMember>> {
        todo!("issue 5")
    }

    /// Forgets a member; false when unknown.
    pub async fn delete_member(&self, _external_id: &str) -> Result<bool> {
        todo!("issue 5")
    }

    /// The member's pending and claimed sends, soonest first.
    pub async fn upcoming_sends(&self, _member_id: i64, _limit: i64) -> Result<Vec<ClaimedSend>> {
        todo!("issue 5")
    }

    /// (members, members without a place).
    pub async fn member_counts(&self) -> Result<(i64, i64)> {
        todo!("issue 5")
    }

    /// Deletes finished rows older than `before`.
    pub async fn delete_finished_before(&self, _before: DateTime<Utc>) -> Result<u64> {
        todo!("issue 5")
    }

    /// Closes the pool.
    pub async fn close(&self) {}
}
