//! The PostgreSQL backend: many replicas share one database. Batches travel as
//! arrays (`UNNEST`), so every batch is one statement whatever its size; claims
//! use `FOR UPDATE SKIP LOCKED` so replicas never hand the same row out twice.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

use super::{
    AuditEntry, CampaignState, ClaimedSend, Consent, Error, Exclude, HistoryEntry, MemberCounts,
    NewSend, OutcomeRow, PlannerMark, Resolution, Result, SendRow, StoredMember, StoredMemberFull,
    UpsertKind, WechatToken,
};
use crate::members::Member;

/// Rows per statement for ledger inserts (bounds lock hold times).
const INSERT_CHUNK: usize = 10_000;

const MEMBER_COLUMNS: &str = "id, external_id, openid, name, phone, city, province, lat, lon, \
    ip, lang, tags::text AS tags, attrs::text AS attrs, opted_out_at, last_interaction_at, \
    place_city_id, place_tz, place_source, place_confidence, place_distance_km, \
    unresolved_reason, data_version";

/// What the planner reads ([`super::Store::planning_page`]): the timing engine's
/// fields, NULL for the rest.
const PLANNING_COLUMNS: &str = "id, external_id, NULL::text AS openid, name, \
    NULL::text AS phone, NULL::text AS city, NULL::text AS province, lat, lon, \
    NULL::text AS ip, lang, tags::text AS tags, attrs::text AS attrs, opted_out_at, \
    NULL::timestamptz AS last_interaction_at, place_city_id, place_tz, place_source, \
    place_confidence, place_distance_km, NULL::text AS unresolved_reason, \
    NULL::text AS data_version";

fn member_from_row(row: &PgRow) -> Result<StoredMemberFull> {
    let member = Member {
        external_id: row.try_get("external_id")?,
        openid: row.try_get("openid")?,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        city: row.try_get("city")?,
        province: row.try_get("province")?,
        lat: row.try_get("lat")?,
        lon: row.try_get("lon")?,
        ip: row.try_get("ip")?,
        lang: row.try_get("lang")?,
        tags: super::parse_tags(row.try_get("tags")?)?,
        attrs: super::parse_attrs(row.try_get("attrs")?)?,
        opted_out_at: row.try_get("opted_out_at")?,
        last_interaction_at: row.try_get("last_interaction_at")?,
    };
    let place = super::place_from_columns(
        row.try_get("place_city_id")?,
        row.try_get("place_tz")?,
        row.try_get("place_source")?,
        row.try_get("place_confidence")?,
        row.try_get("place_distance_km")?,
    )?;
    Ok(StoredMemberFull {
        stored: StoredMember {
            id: row.try_get("id")?,
            member,
            place,
            unresolved_reason: row.try_get("unresolved_reason")?,
        },
        data_version: row.try_get("data_version")?,
    })
}

pub(super) async fn members_by_external_ids(
    pool: &PgPool,
    external_ids: &[&str],
) -> Result<Vec<StoredMemberFull>> {
    let rows =
        sqlx::query(&format!("SELECT {MEMBER_COLUMNS} FROM members WHERE external_id = ANY($1)"))
            .bind(external_ids)
            .fetch_all(pool)
            .await?;
    rows.iter().map(member_from_row).collect()
}

pub(super) async fn members_page(
    pool: &PgPool,
    after: i64,
    limit: i64,
    stale_for: Option<&str>,
) -> Result<Vec<StoredMemberFull>> {
    members_page_of(pool, MEMBER_COLUMNS, after, limit, stale_for).await
}

pub(super) async fn planning_page(
    pool: &PgPool,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredMemberFull>> {
    members_page_of(pool, PLANNING_COLUMNS, after, limit, None).await
}

async fn members_page_of(
    pool: &PgPool,
    columns: &str,
    after: i64,
    limit: i64,
    stale_for: Option<&str>,
) -> Result<Vec<StoredMemberFull>> {
    let rows = match stale_for {
        None => {
            sqlx::query(&format!(
                "SELECT {columns} FROM members WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        Some(version) => {
            sqlx::query(&format!(
                "SELECT {columns} FROM members WHERE id > $1 \
                 AND data_version IS DISTINCT FROM $3 ORDER BY id LIMIT $2"
            ))
            .bind(after)
            .bind(limit)
            .bind(version)
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter().map(member_from_row).collect()
}

#[derive(Default)]
struct ResolutionArrays {
    city: Vec<Option<i64>>,
    tz: Vec<Option<&'static str>>,
    source: Vec<Option<&'static str>>,
    confidence: Vec<Option<f64>>,
    distance: Vec<Option<f64>>,
    reason: Vec<Option<String>>,
    version: Vec<Option<String>>,
}

impl ResolutionArrays {
    fn push(&mut self, resolution: &Resolution) {
        let (city, tz, source, confidence, distance) =
            super::place_columns(resolution.place.as_ref());
        self.city.push(city);
        self.tz.push(tz);
        self.source.push(source);
        self.confidence.push(confidence);
        self.distance.push(distance);
        self.reason.push(resolution.unresolved_reason.clone());
        self.version.push(resolution.data_version.clone());
    }
}

/// Upserts members (unique external ids, sorted) in one statement that also
/// says which were inserted, updated (something differed) or unchanged.
pub(super) async fn upsert_members(
    pool: &PgPool,
    members: &[&(Member, Resolution)],
) -> Result<Vec<(String, i64, UpsertKind)>> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    // The batch travels by COPY (the fastest way in) to a per-connection
    // staging table, then one statement upserts from it.
    let mut rows = CopyRows::default();
    rows.data.reserve(members.len() * 256);
    for (member, resolution) in members {
        rows.push(member, resolution);
    }
    let data = rows.data;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS members_stage (external_id text COLLATE \"C\", \
         openid text COLLATE \"C\", \
         name text, phone text, city text, province text, lat float8, lon float8, ip text, \
         lang text, tags text, attrs text, opted_out_at timestamptz, \
         last_interaction_at timestamptz, place_city_id int8, place_tz text, place_source text, \
         place_confidence float8, place_distance_km float8, unresolved_reason text, \
         data_version text) ON COMMIT DELETE ROWS",
    )
    .execute(&mut *tx)
    .await?;
    let mut copy =
        tx.copy_in_raw(&format!("COPY members_stage ({COPY_COLUMNS}) FROM STDIN")).await?;
    copy.send(data.as_bytes()).await?;
    copy.finish().await?;
    let rows = sqlx::query(&format!(
        "WITH v AS MATERIALIZED (SELECT * FROM members_stage), \
         up AS ( \
           INSERT INTO members AS m ({COPY_COLUMNS}) \
           SELECT v.external_id, v.openid, v.name, v.phone, v.city, v.province, v.lat, v.lon, \
             v.ip, v.lang, v.tags::jsonb, v.attrs::jsonb, v.opted_out_at, v.last_interaction_at, \
             v.place_city_id, v.place_tz, v.place_source, v.place_confidence, \
             v.place_distance_km, v.unresolved_reason, v.data_version FROM v \
           ON CONFLICT (external_id) DO UPDATE SET openid = excluded.openid, \
             name = excluded.name, phone = excluded.phone, city = excluded.city, \
             province = excluded.province, lat = excluded.lat, lon = excluded.lon, \
             ip = excluded.ip, lang = excluded.lang, tags = excluded.tags, \
             attrs = excluded.attrs, \
             opted_out_at = CASE WHEN excluded.opted_out_at IS NULL \
               AND m.consent_at IS NOT NULL THEN m.opted_out_at \
               ELSE excluded.opted_out_at END, \
             last_interaction_at = excluded.last_interaction_at, \
             place_city_id = excluded.place_city_id, place_tz = excluded.place_tz, \
             place_source = excluded.place_source, \
             place_confidence = excluded.place_confidence, \
             place_distance_km = excluded.place_distance_km, \
             unresolved_reason = excluded.unresolved_reason, \
             data_version = excluded.data_version, updated_at = now() \
           WHERE (m.openid, m.name, m.phone, m.city, m.province, m.lat, m.lon, m.ip, m.lang, \
             m.tags, m.attrs, m.opted_out_at, m.last_interaction_at, m.place_city_id, \
             m.place_tz, m.place_source, m.place_confidence, m.place_distance_km, \
             m.unresolved_reason, m.data_version) IS DISTINCT FROM (excluded.openid, \
             excluded.name, excluded.phone, excluded.city, excluded.province, excluded.lat, \
             excluded.lon, excluded.ip, excluded.lang, excluded.tags, excluded.attrs, \
             excluded.opted_out_at, excluded.last_interaction_at, excluded.place_city_id, \
             excluded.place_tz, excluded.place_source, excluded.place_confidence, \
             excluded.place_distance_km, excluded.unresolved_reason, excluded.data_version) \
           RETURNING m.external_id, m.id, (m.xmax = 0) AS inserted) \
         SELECT external_id, id, CASE WHEN inserted THEN 0 ELSE 1 END AS kind FROM up \
         UNION ALL \
         SELECT m.external_id, m.id, 2 FROM members m JOIN v ON m.external_id = v.external_id \
         WHERE NOT EXISTS (SELECT 1 FROM up WHERE up.external_id = m.external_id)",
    ))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut written = rows
        .iter()
        .map(|row| {
            let kind = match row.try_get::<i32, _>(2)? {
                0 => UpsertKind::Inserted,
                1 => UpsertKind::Updated,
                _ => UpsertKind::Unchanged,
            };
            Ok((row.try_get(0)?, row.try_get(1)?, kind))
        })
        .collect::<Result<Vec<(String, i64, UpsertKind)>>>()?;
    if written.iter().any(|(_, _, kind)| *kind == UpsertKind::Inserted) {
        analyze_if_grown(pool, "members").await?;
    }
    if written.len() < members.len() {
        // A row another transaction inserted after this statement's snapshot was
        // taken (replicas importing the same file) conflicts, is left unchanged,
        // and is invisible to the final SELECT: read those in a fresh snapshot.
        let seen: std::collections::HashSet<&str> =
            written.iter().map(|(external_id, _, _)| external_id.as_str()).collect();
        let missing: Vec<&String> = members
            .iter()
            .map(|(member, _)| &member.external_id)
            .filter(|id| !seen.contains(id.as_str()))
            .collect();
        let late = sqlx::query("SELECT external_id, id FROM members WHERE external_id = ANY($1)")
            .bind(&missing)
            .fetch_all(pool)
            .await?;
        for row in late {
            written.push((row.try_get(0)?, row.try_get(1)?, UpsertKind::Unchanged));
        }
    }
    Ok(written)
}

/// Columns of a member row as [`CopyRows`] writes them (the staging table's
/// COPY and the upsert, and the bulk load's COPY).
const COPY_COLUMNS: &str = "external_id, openid, name, phone, city, province, lat, lon, ip, \
    lang, tags, attrs, opted_out_at, last_interaction_at, place_city_id, place_tz, \
    place_source, place_confidence, place_distance_km, unresolved_reason, data_version";

/// A first import into an empty `members` table, in one transaction that holds
/// the table exclusively: the secondary indexes and unique constraints are
/// dropped, the rows stream into the table through one COPY, and
/// [`BulkLoad::finish`] removes earlier copies of a repeated external id and
/// rebuilds what was dropped. This is PostgreSQL's own advice for populating a
/// table ("Populating a Database": load first, index after). The caller's task
/// formats each batch ([`BulkLoad::write`]) while a task of its own sends the
/// previous one, so formatting, sending and the server's parsing overlap.
pub(crate) struct BulkLoad {
    to_task: tokio::sync::mpsc::Sender<BulkMessage>,
    /// `None` once joined.
    task: Option<tokio::task::JoinHandle<Result<u64>>>,
    /// Formats the rows (its buffer is handed to the task batch by batch).
    rows: CopyRows,
    /// Hashes of the external ids written so far.
    seen: std::collections::HashSet<u64, foldhash::fast::FixedState>,
    /// Ids seen twice (or whose hash collided: harmless, the DELETE at the end
    /// then finds one row).
    repeated: Vec<String>,
}

/// What the caller hands the bulk load's task: the channel closing without
/// `Finish` (the load was dropped) rolls the load back.
enum BulkMessage {
    /// Rows in COPY text format.
    Rows(String),
    /// The end, with the external ids that were written more than once.
    Finish(Vec<String>),
}

/// Quotes an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Starts a [`BulkLoad`] if `members` is empty, waiting for any other writer of
/// the table to finish; `None` when it holds a member.
pub(super) async fn begin_bulk_load(pool: &PgPool) -> Result<Option<BulkLoad>> {
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE members IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await?;
    let occupied: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM members)").fetch_one(&mut *tx).await?;
    if occupied {
        tx.rollback().await?;
        return Ok(None);
    }
    let constraints: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = 'members'::regclass AND contype = 'u' ORDER BY conname",
    )
    .fetch_all(&mut *tx)
    .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
         WHERE i.indrelid = 'members'::regclass AND NOT i.indisprimary \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
         ORDER BY 1",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut rebuild = Vec::new();
    for (name, definition) in &constraints {
        let name = quote_ident(name);
        sqlx::query(&format!("ALTER TABLE members DROP CONSTRAINT {name}"))
            .execute(&mut *tx)
            .await?;
        rebuild.push(format!("ALTER TABLE members ADD CONSTRAINT {name} {definition}"));
    }
    for (name, definition) in indexes {
        // `regclass::text` is already quoted (and qualified) as needed.
        sqlx::query(&format!("DROP INDEX {name}")).execute(&mut *tx).await?;
        rebuild.push(definition);
    }
    let (to_task, receiver) = tokio::sync::mpsc::channel(2);
    let task = tokio::spawn(run_bulk_load(tx, rebuild, receiver));
    Ok(Some(BulkLoad {
        to_task,
        task: Some(task),
        rows: CopyRows::default(),
        seen: Default::default(),
        repeated: Vec::new(),
    }))
}

/// The bulk load's task: COPies every batch it receives; when the batches end,
/// commits if [`BulkLoad::finish`] asked for it, else rolls everything back.
async fn run_bulk_load(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    rebuild: Vec<String>,
    mut messages: tokio::sync::mpsc::Receiver<BulkMessage>,
) -> Result<u64> {
    let mut copy = tx.copy_in_raw(&format!("COPY members ({COPY_COLUMNS}) FROM STDIN")).await?;
    let repeated = loop {
        match messages.recv().await {
            Some(BulkMessage::Rows(data)) => {
                copy.send(data.as_bytes()).await?;
            }
            Some(BulkMessage::Finish(repeated)) => break repeated,
            None => {
                // Dropped unfinished: the transaction rolls back as `tx` drops.
                copy.abort("bulk load abandoned").await?;
                return Ok(0);
            }
        }
    };
    copy.finish().await?;
    let mut replaced = 0;
    if !repeated.is_empty() {
        replaced = sqlx::query(
            "DELETE FROM members m USING (SELECT external_id, max(id) AS keep FROM members \
             WHERE external_id = ANY($1) GROUP BY external_id) k \
             WHERE m.external_id = k.external_id AND m.id <> k.keep",
        )
        .bind(&repeated)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    // Index builds sort in memory when they can: PostgreSQL's advice for bulk
    // loads too (measured: the external-id index of 1 M members in 0.34 s
    // instead of 0.89 s with the default 64 MB). For this transaction only.
    sqlx::query("SET LOCAL maintenance_work_mem = '256MB'").execute(&mut *tx).await?;
    for statement in &rebuild {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    // Statistics for the planner of the next upsert (the table was empty): the
    // columns it looks members up by, and the row count. All three are unique,
    // so a small sample describes them; autovacuum analyzes the rest later
    // (measured at 1 M members: 0.25 s of the default target down to 0.02 s).
    analyze_sampled(&mut tx, "members (id, external_id, openid)").await?;
    tx.commit().await?;
    Ok(replaced)
}

impl BulkLoad {
    /// Formats one batch and hands it to the load's task.
    pub(super) async fn write(&mut self, rows: Vec<(Member, Resolution)>) -> Result<()> {
        use std::hash::BuildHasher;
        self.rows.data.reserve(rows.len() * 256);
        for (member, resolution) in &rows {
            if !self.seen.insert(self.seen.hasher().hash_one(&member.external_id)) {
                self.repeated.push(member.external_id.clone());
            }
            self.rows.push(member, resolution);
        }
        // Freed here, not on the task that sends.
        drop(rows);
        let data = std::mem::take(&mut self.rows.data);
        self.send(BulkMessage::Rows(data)).await
    }

    /// Ends the rows, rebuilds the indexes and constraints, and commits; returns
    /// how many rows a later row of the same external id replaced.
    pub(super) async fn finish(mut self) -> Result<u64> {
        let repeated = std::mem::take(&mut self.repeated);
        self.send(BulkMessage::Finish(repeated)).await?;
        self.join().await
    }

    async fn send(&mut self, message: BulkMessage) -> Result<()> {
        if self.to_task.send(message).await.is_err() {
            // The task stopped early: its error says why.
            return Err(self.join().await.err().unwrap_or(Error::BulkLoad("stopped early")));
        }
        Ok(())
    }

    async fn join(&mut self) -> Result<u64> {
        let task = self.task.take().ok_or(Error::BulkLoad("already failed"))?;
        task.await.map_err(|_| Error::BulkLoad("its task panicked"))?
    }
}

/// Member rows in COPY text format, appended to `data` (the JSON columns go
/// through one reused scratch buffer).
#[derive(Default)]
struct CopyRows {
    data: String,
    /// Scratch for the JSON columns (escaped into `data` afterwards).
    json: Vec<u8>,
}

impl CopyRows {
    /// Appends one member as a line, in the order of [`COPY_COLUMNS`].
    fn push(&mut self, member: &Member, resolution: &Resolution) {
        let (city, tz, source, confidence, distance) =
            super::place_columns(resolution.place.as_ref());
        self.text(Some(&member.external_id));
        self.text(member.openid.as_deref());
        self.text(member.name.as_deref());
        self.text(member.phone.as_deref());
        self.text(member.city.as_deref());
        self.text(member.province.as_deref());
        self.float(member.lat);
        self.float(member.lon);
        self.text(member.ip.as_deref());
        self.text(member.lang.as_deref());
        self.json(&member.tags, "[]");
        self.json(&member.attrs, "{}");
        self.instant(member.opted_out_at);
        self.instant(member.last_interaction_at);
        self.display(city);
        self.text(tz);
        self.text(source);
        self.float(confidence);
        self.float(distance);
        self.text(resolution.unresolved_reason.as_deref());
        self.text(resolution.data_version.as_deref());
        self.data.pop();
        self.data.push('\n');
    }

    /// A text field: backslash, newline, carriage return and tab escaped, the
    /// runs between them copied whole (the common field has none).
    fn text(&mut self, value: Option<&str>) {
        let Some(value) = value else {
            self.data.push_str("\\N\t");
            return;
        };
        let mut start = 0;
        for (at, byte) in value.bytes().enumerate() {
            let escaped = match byte {
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                _ => continue,
            };
            // Each special byte is ASCII, so `at` is a character boundary.
            self.data.push_str(&value[start..at]);
            self.data.push_str(escaped);
            start = at + 1;
        }
        self.data.push_str(&value[start..]);
        self.data.push('\t');
    }

    /// A JSON column; `fallback` if serializing fails, as `tags_json` /
    /// `attrs_json` do (strings and string maps do not fail).
    fn json(&mut self, value: &impl serde::Serialize, fallback: &str) {
        self.json.clear();
        let mut json = std::mem::take(&mut self.json);
        let text = match serde_json::to_writer(&mut json, value) {
            Ok(()) => std::str::from_utf8(&json).unwrap_or(fallback),
            Err(_) => fallback,
        };
        self.text(Some(text));
        self.json = json;
    }

    fn display(&mut self, value: Option<impl std::fmt::Display>) {
        use std::fmt::Write;
        match value {
            None => self.data.push_str("\\N"),
            Some(value) => {
                let _ = write!(self.data, "{value}");
            }
        }
        self.data.push('\t');
    }

    fn instant(&mut self, value: Option<DateTime<Utc>>) {
        self.display(value.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)));
    }

    fn float(&mut self, value: Option<f64>) {
        use std::fmt::Write;
        match value {
            None => self.data.push_str("\\N"),
            Some(value) if value.is_nan() => self.data.push_str("NaN"),
            Some(value) if value.is_infinite() => {
                self.data.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
            }
            Some(value) => {
                let _ = write!(self.data, "{value:?}");
            }
        }
        self.data.push('\t');
    }
}

pub(super) async fn write_resolutions(pool: &PgPool, rows: &[(i64, Resolution)]) -> Result<()> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut a = ResolutionArrays::default();
    for (id, resolution) in rows {
        ids.push(*id);
        a.push(resolution);
    }
    sqlx::query(
        "UPDATE members SET place_city_id = v.city, place_tz = v.tz, place_source = v.source, \
           place_confidence = v.confidence, place_distance_km = v.distance, \
           unresolved_reason = v.reason, data_version = v.version \
         FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::float8[], \
           $6::float8[], $7::text[], $8::text[]) \
           AS v(id, city, tz, source, confidence, distance, reason, version) \
         WHERE members.id = v.id",
    )
    .bind(&ids)
    .bind(&a.city)
    .bind(&a.tz)
    .bind(&a.source)
    .bind(&a.confidence)
    .bind(&a.distance)
    .bind(&a.reason)
    .bind(&a.version)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn member_id_by_openid(pool: &PgPool, openid: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT id FROM members WHERE openid = $1 ORDER BY id LIMIT 1")
        .bind(openid)
        .fetch_optional(pool)
        .await?)
}

pub(super) async fn set_consent(
    pool: &PgPool,
    member_id: i64,
    consent: Consent,
    at: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE members SET opted_out_at = CASE WHEN $1 THEN $2 END, consent_at = $2, \
         updated_at = now() WHERE id = $3 \
         AND (consent_at IS NULL OR consent_at < $2 OR (consent_at = $2 AND $1))",
    )
    .bind(consent == Consent::OptedOut)
    .bind(at)
    .bind(member_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn claim_callback_signature(
    pool: &PgPool,
    signature: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    sqlx::query("DELETE FROM callback_signatures WHERE expires_at < $1")
        .bind(now)
        .execute(pool)
        .await?;
    let done = sqlx::query(
        "INSERT INTO callback_signatures (signature, expires_at) VALUES ($1, $2) \
         ON CONFLICT (signature) DO NOTHING",
    )
    .bind(signature)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn release_callback_signature(pool: &PgPool, signature: &str) -> Result<()> {
    sqlx::query("DELETE FROM callback_signatures WHERE signature = $1")
        .bind(signature)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn touch_interaction(
    pool: &PgPool,
    member_id: i64,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE members SET last_interaction_at = GREATEST(last_interaction_at, $1) WHERE id = $2",
    )
    .bind(at)
    .bind(member_id)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn forget_member(pool: &PgPool, member_id: i64, secrets: &[String]) -> Result<()> {
    let mut tx = pool.begin().await?;
    // Waits for the planner's inserts in flight; later ones see the member gone.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LEDGER_MEMBERS_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE sends SET member_id = NULL, text = NULL, last_error = CASE \
         WHEN status IN ('pending', 'claimed') THEN 'forgotten' ELSE NULL END, \
         provider_message_id = NULL, lease_owner = NULL, lease_expires_at = NULL, \
         status = CASE WHEN status IN ('pending', 'claimed') THEN 'skipped' ELSE status END \
         WHERE member_id = $1",
    )
    .bind(member_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM members WHERE id = $1").bind(member_id).execute(&mut *tx).await?;
    // Under the exclusive lock, so planner inserts that read the count before
    // check their members again (see `insert_sends`).
    sqlx::query("UPDATE planner_state SET forgotten = forgotten + 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    for secret in secrets {
        sqlx::query(
            "UPDATE audit_log SET target = REPLACE(target, $1, '[erased]'), \
             detail = REPLACE(detail, $1, '[erased]') \
             WHERE strpos(target, $1) > 0 OR strpos(detail, $1) > 0",
        )
        .bind(secret)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn send_row(row: &PgRow) -> Result<SendRow> {
    let status: String = row.try_get("status")?;
    let attempts: i32 = row.try_get("attempts")?;
    Ok(SendRow {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        occurrence: row.try_get("occurrence")?,
        member_id: row.try_get("member_id")?,
        due_at: row.try_get("due_at")?,
        channel: row.try_get("channel")?,
        lang: row.try_get("lang")?,
        variant: row.try_get("variant")?,
        status: status.parse()?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error: row.try_get("last_error")?,
    })
}

pub(super) async fn upcoming_sends(
    pool: &PgPool,
    member_id: i64,
    limit: i64,
) -> Result<Vec<SendRow>> {
    let rows = sqlx::query(
        "SELECT id, campaign_id, occurrence, member_id, due_at, channel, lang, variant, status, \
         attempts, last_error FROM sends WHERE member_id = $1 AND status IN ('pending', 'claimed') \
         ORDER BY due_at, id LIMIT $2",
    )
    .bind(member_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(send_row).collect()
}

pub(super) async fn member_counts(pool: &PgPool) -> Result<MemberCounts> {
    let row =
        sqlx::query("SELECT COUNT(*), COUNT(*) FILTER (WHERE place_city_id IS NULL) FROM members")
            .fetch_one(pool)
            .await?;
    Ok(MemberCounts { total: row.try_get(0)?, unresolved: row.try_get(1)? })
}

/// The advisory lock that keeps ledger rows of a forgotten member out: the
/// planner's inserts hold it shared, [`forget_member`] exclusively (the ledger
/// has no foreign key to `members`; see migration 0004). An insert that starts
/// after a forget sees the member gone and skips its row; a forget waits for the
/// inserts in flight and then nulls their rows too.
const LEDGER_MEMBERS_LOCK: i64 = 0x616c_6d61_6e61_6301;

/// Inserts ledger rows, skipping keys already in the ledger and (unless
/// `forgotten` says no member was forgotten since the caller read its members)
/// rows of members that no longer exist.
///
/// Both guards cost the server nearly as much as the insert itself (200 k rows in
/// `psql`: 14.7 µs per row with both, 8.3 µs with neither; the planner's pattern,
/// two batches of 5 000 at once, 8.2–8.8 → 6.9–8.0 µs per row), and in planning
/// they almost never fire: the engine skips keys it saw in the members' history, and
/// forgets are rare. So each chunk first goes in as a plain `INSERT`: without
/// `ON CONFLICT` (a key already present fails the statement, and the call
/// switches to `ON CONFLICT DO NOTHING` from that chunk on), and without the
/// `EXISTS` probe of `members` while the forget count read after taking the
/// shared lock equals `forgotten` (the planner's mark, read before its pages;
/// see migration 0005: a forget bumps it under the exclusive lock, so a member
/// on a page is still there unless the count moved).
pub(super) async fn insert_sends(
    pool: &PgPool,
    sends: &[&NewSend],
    forgotten: Option<i64>,
) -> Result<u64> {
    let mut inserted = 0;
    let mut conflicts = false;
    for chunk in sends.chunks(INSERT_CHUNK) {
        let mut campaign = Vec::with_capacity(chunk.len());
        let mut occurrence = Vec::with_capacity(chunk.len());
        let mut member = Vec::with_capacity(chunk.len());
        let mut due = Vec::with_capacity(chunk.len());
        let mut channel = Vec::with_capacity(chunk.len());
        let mut lang = Vec::with_capacity(chunk.len());
        let mut variant = Vec::with_capacity(chunk.len());
        let mut text = Vec::with_capacity(chunk.len());
        let mut status = Vec::with_capacity(chunk.len());
        let mut reason = Vec::with_capacity(chunk.len());
        for send in chunk {
            campaign.push(send.campaign_id.as_str());
            occurrence.push(send.occurrence.as_str());
            member.push(send.member_id);
            due.push(send.due_at);
            channel.push(send.channel.as_str());
            lang.push(send.lang.as_str());
            variant.push(send.variant.as_str());
            text.push(send.text.as_str());
            status.push(send.status.as_str());
            reason.push(send.reason);
        }
        loop {
            let mut tx = pool.begin().await?;
            // Taken before the INSERT's snapshot (its own statement): a forget that
            // committed before is seen by the count and by `WHERE EXISTS`.
            sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
                .bind(LEDGER_MEMBERS_LOCK)
                .execute(&mut *tx)
                .await?;
            let members_checked = match forgotten {
                Some(seen) => {
                    let now: i64 =
                        sqlx::query_scalar("SELECT forgotten FROM planner_state WHERE id = 1")
                            .fetch_one(&mut *tx)
                            .await?;
                    now != seen
                }
                None => true,
            };
            let statement = format!(
                "INSERT INTO sends (campaign_id, occurrence, member_id, due_at, \
                   next_attempt_at, channel, lang, variant, text, status, last_error) \
                 SELECT v.campaign_id, v.occurrence, v.member_id, v.due_at, v.due_at, \
                   v.channel, v.lang, v.variant, v.text, v.status, v.reason \
                 FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::timestamptz[], \
                   $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) \
                   AS v(campaign_id, occurrence, member_id, due_at, channel, lang, variant, \
                   text, status, reason) {} {}",
                if members_checked {
                    "WHERE EXISTS (SELECT 1 FROM members m WHERE m.id = v.member_id)"
                } else {
                    ""
                },
                if conflicts { "ON CONFLICT DO NOTHING" } else { "" },
            );
            let result = sqlx::query(&statement)
                .bind(&campaign)
                .bind(&occurrence)
                .bind(&member)
                .bind(&due)
                .bind(&channel)
                .bind(&lang)
                .bind(&variant)
                .bind(&text)
                .bind(&status)
                .bind(&reason)
                .execute(&mut *tx)
                .await;
            match result {
                Ok(done) => {
                    tx.commit().await?;
                    inserted += done.rows_affected();
                    break;
                }
                Err(sqlx::Error::Database(error)) if !conflicts && error.is_unique_violation() => {
                    // Rolled back as `tx` drops; again, skipping present keys.
                    conflicts = true;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
    if inserted > 0 {
        analyze_if_grown(pool, "sends").await?;
    }
    Ok(inserted)
}

/// Table size, in pages, below which statistics are left to autovacuum (2 MiB,
/// about ten thousand ledger rows).
const ANALYZE_MIN_PAGES: i64 = 256;

/// Analyzes `table` (`sends` or `members`, the two the claim joins) when it has at
/// least doubled since its last analysis: a first burst into an empty ledger, a
/// time zone's worth of rows into a small one, members added by upserts (the bulk
/// load analyzes on its own).
///
/// PostgreSQL plans each claim from these statistics. Without them (a new
/// database, or tables that grew tenfold since autovacuum last looked, which it
/// does at most once a minute) it took the due rows for a handful and the members
/// for a few thousand, and planned every claim as a sort of all pending rows or a
/// hash join over both whole tables: 50–125 ms per batch of 1 000 at 50 k rows
/// against 20 ms, and a quarter of the bare client's rate in the dispatch
/// benchmark. The size in pages is read from the file, so the check is exact and
/// immediate (the row counters of `pg_stat_user_tables` lag by a second). The
/// sample is small ([`analyze_sampled`]): the claim's plan needs only proportions.
/// `SKIP_LOCKED` leaves the table alone while autovacuum holds it.
async fn analyze_if_grown(pool: &PgPool, table: &'static str) -> Result<()> {
    let grown: bool = sqlx::query_scalar(
        "SELECT pg_relation_size(c.oid) / current_setting('block_size')::int8 \
           >= GREATEST(2 * c.relpages::int8, $2) \
         FROM pg_class c WHERE c.oid = $1::regclass",
    )
    .bind(table)
    .bind(ANALYZE_MIN_PAGES)
    .fetch_one(pool)
    .await?;
    if grown {
        let mut tx = pool.begin().await?;
        analyze_sampled(&mut tx, &format!("(SKIP_LOCKED) {table}")).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// `ANALYZE <what>` from a small sample (statistics target 10: 3 000 rows instead
/// of 30 000), set for the caller's transaction only.
async fn analyze_sampled(tx: &mut sqlx::PgConnection, what: &str) -> Result<()> {
    sqlx::query("SET LOCAL default_statistics_target = 10").execute(&mut *tx).await?;
    sqlx::query(&format!("ANALYZE {what}")).execute(&mut *tx).await?;
    Ok(())
}

pub(super) async fn claim_due(
    pool: &PgPool,
    owner: &str,
    now: DateTime<Utc>,
    due_by: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
    exclude: &Exclude,
) -> Result<Vec<ClaimedSend>> {
    // One statement: lock due rows no other replica holds, claim them (or skip
    // them when the member opted out), and return what a channel needs. Pending and
    // expired rows are picked by two separate index walks (`sends_pending`,
    // `sends_claimed`) that stop at the limit: one `OR` across both statuses made
    // PostgreSQL scan and sort every pending row on each claim (250 ms per batch
    // at 300k pending rows, against 1.5 ms this way).
    let rows = sqlx::query(
        "WITH due AS ( \
           SELECT id, due_at FROM sends \
           WHERE status = 'pending' AND due_at <= $5 AND next_attempt_at <= $5 \
           AND campaign_id NOT IN (SELECT campaign_id FROM campaign_state WHERE paused) \
           AND NOT (campaign_id = ANY($6::text[])) \
           AND NOT (channel = ANY($7::text[])) \
           ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED), \
         expired AS ( \
           SELECT id, due_at FROM sends \
           WHERE status = 'claimed' AND lease_expires_at < $3 \
           AND campaign_id NOT IN (SELECT campaign_id FROM campaign_state WHERE paused) \
           AND NOT (campaign_id = ANY($6::text[])) \
           AND NOT (channel = ANY($7::text[])) \
           ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED), \
         picked AS ( \
           SELECT id FROM (SELECT id, due_at FROM due UNION ALL SELECT id, due_at FROM expired) u \
           ORDER BY due_at LIMIT $4) \
         UPDATE sends s SET \
           status = CASE WHEN m.opted_out_at IS NULL THEN 'claimed' ELSE 'skipped' END, \
           lease_owner = CASE WHEN m.opted_out_at IS NULL THEN $1 END, \
           lease_expires_at = CASE WHEN m.opted_out_at IS NULL THEN $2::timestamptz END, \
           last_error = CASE WHEN m.opted_out_at IS NULL THEN s.last_error ELSE 'opted_out' END \
         FROM picked p, members m \
         WHERE s.id = p.id AND m.id = s.member_id \
         RETURNING s.id, s.campaign_id, s.occurrence, s.member_id, s.due_at, s.next_attempt_at, \
           s.channel, s.lang, \
           s.variant, s.text, s.attempts, s.status, m.external_id, m.openid, \
           m.last_interaction_at",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(limit)
    .bind(due_by)
    .bind(&exclude.campaigns)
    .bind(&exclude.channels)
    .fetch_all(pool)
    .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        let status: &str = row.try_get("status")?;
        if status != "claimed" {
            continue;
        }
        let attempts: i32 = row.try_get("attempts")?;
        claimed.push(ClaimedSend {
            id: row.try_get("id")?,
            campaign_id: row.try_get("campaign_id")?,
            occurrence: row.try_get("occurrence")?,
            member_id: row.try_get("member_id")?,
            external_id: row.try_get("external_id")?,
            openid: row.try_get("openid")?,
            last_interaction_at: row.try_get("last_interaction_at")?,
            due_at: row.try_get("due_at")?,
            not_before: row.try_get("next_attempt_at")?,
            channel: row.try_get("channel")?,
            lang: row.try_get("lang")?,
            variant: row.try_get("variant")?,
            text: row.try_get::<Option<String>, _>("text")?.unwrap_or_default(),
            attempts: u32::try_from(attempts).unwrap_or(0),
        });
    }
    claimed.sort_by_key(|send| (send.not_before, send.id));
    Ok(claimed)
}

pub(super) async fn record_outcomes(
    pool: &PgPool,
    owner: &str,
    rows: &[OutcomeRow<'_>],
) -> Result<u64> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut status = Vec::with_capacity(rows.len());
    let mut next = Vec::with_capacity(rows.len());
    let mut error = Vec::with_capacity(rows.len());
    let mut provider = Vec::with_capacity(rows.len());
    let mut sent = Vec::with_capacity(rows.len());
    let mut attempt = Vec::with_capacity(rows.len());
    for row in rows {
        ids.push(row.id);
        status.push(row.status);
        next.push(row.next_attempt_at);
        error.push(row.error);
        provider.push(row.provider_id);
        sent.push(row.sent_at);
        attempt.push(row.attempt);
    }
    Ok(sqlx::query(
        "UPDATE sends SET status = v.status, \
           next_attempt_at = COALESCE(v.next_at, sends.next_attempt_at), \
           last_error = COALESCE(v.error, sends.last_error), \
           provider_message_id = COALESCE(v.provider, sends.provider_message_id), \
           sent_at = COALESCE(v.sent_at, sends.sent_at), \
           attempts = sends.attempts + v.attempt, \
           lease_owner = NULL, lease_expires_at = NULL \
         FROM UNNEST($1::int8[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], \
           $6::timestamptz[], $7::int4[]) \
           AS v(id, status, next_at, error, provider, sent_at, attempt) \
         WHERE sends.id = v.id AND sends.status = 'claimed' AND sends.lease_owner = $8",
    )
    .bind(&ids)
    .bind(&status)
    .bind(&next)
    .bind(&error)
    .bind(&provider)
    .bind(&sent)
    .bind(&attempt)
    .bind(owner)
    .execute(pool)
    .await?
    .rows_affected())
}

pub(super) async fn renew_leases(pool: &PgPool, owner: &str, until: DateTime<Utc>) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE sends SET lease_expires_at = $2 WHERE status = 'claimed' AND lease_owner = $1",
    )
    .bind(owner)
    .bind(until)
    .execute(pool)
    .await?
    .rows_affected())
}

pub(super) async fn release(pool: &PgPool, owner: &str) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE sends SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL \
         WHERE status = 'claimed' AND lease_owner = $1",
    )
    .bind(owner)
    .execute(pool)
    .await?
    .rows_affected())
}

pub(super) async fn backlog(pool: &PgPool) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query("SELECT status, COUNT(*) FROM sends GROUP BY status ORDER BY status")
        .fetch_all(pool)
        .await?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
}

pub(super) async fn campaign_backlog(pool: &PgPool) -> Result<Vec<(String, String, i64)>> {
    let rows = sqlx::query(
        "SELECT campaign_id, status, COUNT(*) FROM sends GROUP BY campaign_id, status \
         ORDER BY campaign_id, status",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))).collect()
}

pub(super) async fn send_history(
    pool: &PgPool,
    member_ids: &[i64],
    since: DateTime<Utc>,
) -> Result<Vec<HistoryEntry>> {
    // Streamed: a page's history can be hundreds of thousands of rows, and
    // `fetch_all` would hold every row besides the entries.
    let mut rows = sqlx::query(
        "SELECT campaign_id, member_id, due_at, occurrence, status FROM sends \
         WHERE due_at >= $1 \
           AND member_id = ANY($2) ORDER BY member_id, due_at",
    )
    .bind(since)
    .bind(member_ids)
    .fetch(pool);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await? {
        out.push(HistoryEntry {
            campaign_id: row.try_get(0)?,
            member_id: row.try_get(1)?,
            due_at: row.try_get(2)?,
            occurrence: row.try_get(3)?,
            holdout: row.try_get::<&str, _>(4)? == "holdout",
            skipped: matches!(row.try_get::<&str, _>(4)?, "skipped" | "dead"),
        });
    }
    Ok(out)
}

pub(super) async fn retention(pool: &PgPool, older_than: DateTime<Utc>) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM sends WHERE status IN ('sent', 'dead', 'skipped', 'holdout') AND due_at < $1",
    )
    .bind(older_than)
    .execute(pool)
    .await?
    .rows_affected())
}

pub(super) async fn set_campaign_paused(
    pool: &PgPool,
    campaign_id: &str,
    paused: bool,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO campaign_state (campaign_id, paused) VALUES ($1, $2) \
         ON CONFLICT (campaign_id) DO UPDATE SET paused = excluded.paused, updated_at = now()",
    )
    .bind(campaign_id)
    .bind(paused)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn first_seen(
    pool: &PgPool,
    campaign_ids: &[&str],
    now: DateTime<Utc>,
) -> Result<std::collections::HashMap<String, DateTime<Utc>>> {
    sqlx::query(
        "INSERT INTO campaign_seen (campaign_id, first_seen_at) \
         SELECT id, $2 FROM UNNEST($1::text[]) AS ids(id) \
         ON CONFLICT (campaign_id) DO NOTHING",
    )
    .bind(campaign_ids)
    .bind(now)
    .execute(pool)
    .await?;
    let rows =
        sqlx::query("SELECT campaign_id, first_seen_at FROM campaign_seen").fetch_all(pool).await?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
}

pub(super) async fn set_campaign_hash(
    pool: &PgPool,
    campaign_id: &str,
    content_hash: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO campaign_state (campaign_id, content_hash) VALUES ($1, $2) \
         ON CONFLICT (campaign_id) DO UPDATE SET content_hash = excluded.content_hash, \
         updated_at = now()",
    )
    .bind(campaign_id)
    .bind(content_hash)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn campaign_states(pool: &PgPool) -> Result<Vec<CampaignState>> {
    let rows = sqlx::query(
        "SELECT campaign_id, paused, content_hash FROM campaign_state ORDER BY campaign_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(CampaignState {
                campaign_id: row.try_get(0)?,
                paused: row.try_get(1)?,
                content_hash: row.try_get(2)?,
            })
        })
        .collect()
}

pub(super) async fn audit(
    pool: &PgPool,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO audit_log (actor, action, target, detail) VALUES ($1, $2, $3, $4)")
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn audit_log(
    pool: &PgPool,
    since: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<AuditEntry>> {
    let rows = sqlx::query(
        "SELECT at, actor, action, target, detail FROM audit_log \
         WHERE $2::timestamptz IS NULL OR at >= $2 ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(since)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                at: row.try_get(0)?,
                actor: row.try_get(1)?,
                action: row.try_get(2)?,
                target: row.try_get(3)?,
                detail: row.try_get(4)?,
            })
        })
        .collect()
}

pub(super) async fn wechat_token(pool: &PgPool, app_id: &str) -> Result<Option<WechatToken>> {
    let row = sqlx::query("SELECT token, expires_at FROM wechat_tokens WHERE app_id = $1")
        .bind(app_id)
        .fetch_optional(pool)
        .await?;
    row.map(|row| Ok(WechatToken { token: row.try_get(0)?, expires_at: row.try_get(1)? }))
        .transpose()
}

pub(super) async fn put_wechat_token(
    pool: &PgPool,
    app_id: &str,
    token: &str,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO wechat_tokens (app_id, token, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (app_id) DO UPDATE SET token = excluded.token, \
         expires_at = excluded.expires_at",
    )
    .bind(app_id)
    .bind(token)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn lead_planner(
    pool: &PgPool,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<PlannerMark>> {
    let row = sqlx::query(
        "UPDATE planner_state SET owner = $1, lease_expires_at = $3 \
         WHERE id = 1 AND (owner IS NULL OR owner = $1 OR lease_expires_at < $2) \
         RETURNING planned_until, campaigns_hash, generation, forgotten",
    )
    .bind(owner)
    .bind(now)
    .bind(until)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(PlannerMark {
            planned_until: row.try_get(0)?,
            campaigns_hash: row.try_get(1)?,
            generation: row.try_get(2)?,
            forgotten: Some(row.try_get(3)?),
        })
    })
    .transpose()
}

pub(super) async fn finish_planning(
    pool: &PgPool,
    owner: &str,
    mark: Option<&PlannerMark>,
) -> Result<()> {
    let query = match mark {
        Some(mark) => sqlx::query(
            "UPDATE planner_state SET owner = NULL, lease_expires_at = NULL, \
             planned_until = CASE WHEN generation = $4 THEN $2 ELSE planned_until END, \
             campaigns_hash = CASE WHEN generation = $4 THEN $3 ELSE campaigns_hash END \
             WHERE id = 1 AND owner = $1",
        )
        .bind(owner)
        .bind(mark.planned_until)
        .bind(mark.campaigns_hash.as_deref())
        .bind(mark.generation),
        None => sqlx::query(
            "UPDATE planner_state SET owner = NULL, lease_expires_at = NULL \
             WHERE id = 1 AND owner = $1",
        )
        .bind(owner),
    };
    query.execute(pool).await?;
    Ok(())
}

pub(super) async fn forget_planned(pool: &PgPool) -> Result<()> {
    sqlx::query(
        "UPDATE planner_state SET planned_until = NULL, generation = generation + 1 \
         WHERE id = 1",
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn dump_all_text(pool: &PgPool) -> Result<Vec<(String, String)>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
            .fetch_all(pool)
            .await?;
        out.extend(rows.into_iter().map(|row| (table.clone(), row)));
    }
    Ok(out)
}
