//! The SQLite backend: one process, a WAL-mode file. Instants are stored as
//! INTEGER microseconds since the Unix epoch so they sort and compare as numbers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{
    AuditEntry, CampaignState, ClaimedSend, Consent, Error, Exclude, HistoryEntry, MemberCounts,
    NewSend, OutcomeRow, PlannerMark, Resolution, Result, SendRow, StoredMember, StoredMemberFull,
    UpsertKind, WechatToken,
};
use crate::members::Member;

/// SQLite's default limit on bound parameters per statement.
const MAX_BINDS: usize = 32_766;

/// Rows per multi-row statement. Far below what [`MAX_BINDS`] allows: measured
/// (benches/import.rs), statements of a few hundred rows insert 3–4× faster than
/// ones near the bind limit, and repeat the same SQL so the prepared statement
/// is reused.
const ROWS_PER_STATEMENT: usize = 250;

/// Rows per statement for `columns` bound columns.
const fn rows_per_statement(columns: usize) -> usize {
    let by_binds = MAX_BINDS / columns;
    if by_binds < ROWS_PER_STATEMENT { by_binds } else { ROWS_PER_STATEMENT }
}

/// The database's clock, in microseconds (bookkeeping columns only).
const NOW_MICROS: &str = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)";

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn instant(value: i64, table: &'static str) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| Error::Corrupt { table, reason: format!("instant {value} out of range") })
}

fn opt_instant(value: Option<i64>, table: &'static str) -> Result<Option<DateTime<Utc>>> {
    value.map(|v| instant(v, table)).transpose()
}

const MEMBER_COLUMNS: &str = "id, external_id, openid, name, phone, city, province, lat, lon, \
    ip, lang, tags, attrs, opted_out_at, last_interaction_at, place_city_id, place_tz, \
    place_source, place_confidence, place_distance_km, unresolved_reason, data_version";

fn member_from_row(row: &SqliteRow) -> Result<StoredMemberFull> {
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
        opted_out_at: opt_instant(row.try_get("opted_out_at")?, "members")?,
        last_interaction_at: opt_instant(row.try_get("last_interaction_at")?, "members")?,
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
    pool: &SqlitePool,
    external_ids: &[&str],
) -> Result<Vec<StoredMemberFull>> {
    let mut out = Vec::with_capacity(external_ids.len());
    for chunk in external_ids.chunks(rows_per_statement(1)) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {MEMBER_COLUMNS} FROM members WHERE external_id IN ("
        ));
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(")");
        for row in query.build().fetch_all(pool).await? {
            out.push(member_from_row(&row)?);
        }
    }
    Ok(out)
}

pub(super) async fn members_page(
    pool: &SqlitePool,
    after: i64,
    limit: i64,
    stale_for: Option<&str>,
) -> Result<Vec<StoredMemberFull>> {
    let sql = match stale_for {
        None => format!("SELECT {MEMBER_COLUMNS} FROM members WHERE id > ?1 ORDER BY id LIMIT ?2"),
        Some(_) => format!(
            "SELECT {MEMBER_COLUMNS} FROM members WHERE id > ?1 \
             AND (data_version IS NULL OR data_version <> ?3) ORDER BY id LIMIT ?2"
        ),
    };
    let rows = sqlx::query(&sql).bind(after).bind(limit).bind(stale_for).fetch_all(pool).await?;
    rows.iter().map(member_from_row).collect()
}

/// What the planner reads ([`super::Store::planning_page`]): the timing engine's
/// fields of one page of members, as one JSON array of arrays built by SQLite.
/// sqlx's SQLite driver copies every value of every row and hands rows over one
/// by one from its worker thread (measured: 6.4 µs per member row, against about
/// 1 µs for SQLite itself); one document per page crosses once and parses at
/// serde_json's speed. `tags` and `attrs` are stored as JSON and embedded as is;
/// REAL columns go through `printf('%!.17g')`, since SQLite's own JSON keeps only
/// 15 significant digits and 17 round-trip every f64.
const PLANNING_PAGE: &str = concat!(
    "SELECT json_group_array(json_array(id, external_id, name, ",
    "iif(lat IS NULL, NULL, json(printf('%!.17g', lat))), ",
    "iif(lon IS NULL, NULL, json(printf('%!.17g', lon))), ",
    "lang, json(tags), json(attrs), opted_out_at, place_city_id, place_tz, place_source, ",
    "iif(place_confidence IS NULL, NULL, json(printf('%!.17g', place_confidence))), ",
    "iif(place_distance_km IS NULL, NULL, json(printf('%!.17g', place_distance_km)))",
    ") ORDER BY id) FROM (SELECT * FROM members WHERE id > ?1 ORDER BY id LIMIT ?2)"
);

/// One element of a [`PLANNING_PAGE`] document: serde reads a struct from a JSON
/// array field by field, so the fields are in the query's column order.
#[derive(serde::Deserialize)]
struct PlanningRow {
    id: i64,
    external_id: String,
    name: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    lang: Option<String>,
    tags: Vec<String>,
    attrs: std::collections::BTreeMap<String, String>,
    opted_out_at: Option<i64>,
    city: Option<i64>,
    tz: Option<String>,
    source: Option<String>,
    confidence: Option<f64>,
    distance: Option<f64>,
}

pub(super) async fn planning_page(
    pool: &SqlitePool,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredMemberFull>> {
    let document: String =
        sqlx::query_scalar(PLANNING_PAGE).bind(after).bind(limit).fetch_one(pool).await?;
    let rows: Vec<PlanningRow> = serde_json::from_str(&document).map_err(|error| {
        Error::Corrupt { table: "members", reason: format!("planning page: {error}") }
    })?;
    rows.into_iter()
        .map(|row| {
            let member = Member {
                external_id: row.external_id,
                name: row.name,
                lat: row.lat,
                lon: row.lon,
                lang: row.lang,
                tags: row.tags,
                attrs: row.attrs,
                opted_out_at: opt_instant(row.opted_out_at, "members")?,
                ..Member::default()
            };
            let place = super::place_from_columns(
                row.city,
                row.tz,
                row.source,
                row.confidence,
                row.distance,
            )?;
            Ok(StoredMemberFull {
                stored: StoredMember { id: row.id, member, place, unresolved_reason: None },
                data_version: None,
            })
        })
        .collect()
}

/// Upserts members (unique external ids, sorted): compares with what is stored
/// and writes only new and changed rows.
pub(super) async fn upsert_members(
    pool: &SqlitePool,
    rows: &[&(Member, Resolution)],
) -> Result<Vec<(String, i64, UpsertKind)>> {
    let ids: Vec<&str> = rows.iter().map(|(member, _)| member.external_id.as_str()).collect();
    let existing: HashMap<String, StoredMemberFull> = members_by_external_ids(pool, &ids)
        .await?
        .into_iter()
        .map(|row| (row.stored.member.external_id.clone(), row))
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    let mut to_write = Vec::new();
    for row in rows {
        match existing.get(&row.0.external_id) {
            Some(old) if old.same_as(&row.0, &row.1) => {
                out.push((row.0.external_id.clone(), old.stored.id, UpsertKind::Unchanged));
            }
            _ => to_write.push(*row),
        }
    }
    for (external_id, id) in write_members(pool, &to_write, true).await? {
        let kind = if existing.contains_key(&external_id) {
            UpsertKind::Updated
        } else {
            UpsertKind::Inserted
        };
        out.push((external_id, id, kind));
    }
    Ok(out)
}

/// Columns written per member row.
const MEMBER_WRITE_COLUMNS: usize = 21;

/// Inserts members that must all be new, in one transaction: a plain INSERT
/// (no lookup, no RETURNING), the fast path of an import into an empty table.
/// `Ok(false)`, with nothing written, when an external id already exists (or
/// repeats within `rows`).
pub(super) async fn insert_new_members(
    pool: &SqlitePool,
    rows: &[(Member, Resolution)],
) -> Result<bool> {
    let rows: Vec<&(Member, Resolution)> = rows.iter().collect();
    match write_members(pool, &rows, false).await {
        Ok(_) => Ok(true),
        Err(Error::Db(sqlx::Error::Database(error))) if error.is_unique_violation() => Ok(false),
        Err(error) => Err(error),
    }
}

/// Writes members in one transaction: upserted by external id, returning each
/// one's id, or (`upsert` false) plainly inserted, returning nothing.
async fn write_members(
    pool: &SqlitePool,
    rows: &[&(Member, Resolution)],
    upsert: bool,
) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::with_capacity(rows.len());
    if rows.is_empty() {
        return Ok(out);
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in rows.chunks(rows_per_statement(MEMBER_WRITE_COLUMNS)) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO members (external_id, openid, name, phone, city, province, lat, lon, ip, \
             lang, tags, attrs, opted_out_at, last_interaction_at, place_city_id, place_tz, \
             place_source, place_confidence, place_distance_km, unresolved_reason, data_version) ",
        );
        query.push_values(chunk, |mut row, (member, resolution)| {
            let (city, tz, source, confidence, distance) =
                super::place_columns(resolution.place.as_ref());
            row.push_bind(member.external_id.as_str())
                .push_bind(member.openid.as_deref())
                .push_bind(member.name.as_deref())
                .push_bind(member.phone.as_deref())
                .push_bind(member.city.as_deref())
                .push_bind(member.province.as_deref())
                .push_bind(member.lat)
                .push_bind(member.lon)
                .push_bind(member.ip.as_deref())
                .push_bind(member.lang.as_deref())
                .push_bind(super::tags_json(member))
                .push_bind(super::attrs_json(member))
                .push_bind(member.opted_out_at.map(micros))
                .push_bind(member.last_interaction_at.map(micros))
                .push_bind(city)
                .push_bind(tz)
                .push_bind(source)
                .push_bind(confidence)
                .push_bind(distance)
                .push_bind(resolution.unresolved_reason.as_deref())
                .push_bind(resolution.data_version.as_deref());
        });
        if !upsert {
            query.build().execute(&mut *tx).await?;
            continue;
        }
        query.push(format!(
            " ON CONFLICT (external_id) DO UPDATE SET openid = excluded.openid, \
             name = excluded.name, phone = excluded.phone, city = excluded.city, \
             province = excluded.province, lat = excluded.lat, lon = excluded.lon, \
             ip = excluded.ip, lang = excluded.lang, tags = excluded.tags, attrs = excluded.attrs, \
             opted_out_at = CASE WHEN excluded.opted_out_at IS NULL \
               AND members.consent_at IS NOT NULL THEN members.opted_out_at \
               ELSE excluded.opted_out_at END, \
             last_interaction_at = excluded.last_interaction_at, \
             place_city_id = excluded.place_city_id, place_tz = excluded.place_tz, \
             place_source = excluded.place_source, place_confidence = excluded.place_confidence, \
             place_distance_km = excluded.place_distance_km, \
             unresolved_reason = excluded.unresolved_reason, data_version = excluded.data_version, \
             updated_at = {NOW_MICROS} RETURNING external_id, id"
        ));
        for row in query.build().fetch_all(&mut *tx).await? {
            out.push((row.try_get(0)?, row.try_get(1)?));
        }
    }
    tx.commit().await?;
    Ok(out)
}

pub(super) async fn write_resolutions(pool: &SqlitePool, rows: &[(i64, Resolution)]) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in rows.chunks(rows_per_statement(8)) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "UPDATE members SET place_city_id = v.column2, place_tz = v.column3, \
             place_source = v.column4, place_confidence = v.column5, \
             place_distance_km = v.column6, unresolved_reason = v.column7, \
             data_version = v.column8 FROM (",
        );
        query.push_values(chunk, |mut row, (id, resolution)| {
            let (city, tz, source, confidence, distance) =
                super::place_columns(resolution.place.as_ref());
            row.push_bind(*id)
                .push_bind(city)
                .push_bind(tz)
                .push_bind(source)
                .push_bind(confidence)
                .push_bind(distance)
                .push_bind(resolution.unresolved_reason.as_deref())
                .push_bind(resolution.data_version.as_deref());
        });
        query.push(") AS v WHERE members.id = v.column1");
        query.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn member_id_by_openid(pool: &SqlitePool, openid: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT id FROM members WHERE openid = ?1 ORDER BY id LIMIT 1")
        .bind(openid)
        .fetch_optional(pool)
        .await?)
}

pub(super) async fn set_consent(
    pool: &SqlitePool,
    member_id: i64,
    consent: Consent,
    at: DateTime<Utc>,
) -> Result<bool> {
    let opted_out = consent == Consent::OptedOut;
    let done = sqlx::query(&format!(
        "UPDATE members SET opted_out_at = CASE WHEN ?1 THEN ?2 END, consent_at = ?2, \
         updated_at = {NOW_MICROS} WHERE id = ?3 \
         AND (consent_at IS NULL OR consent_at < ?2 OR (consent_at = ?2 AND ?1))"
    ))
    .bind(opted_out)
    .bind(micros(at))
    .bind(member_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn claim_callback_signature(
    pool: &SqlitePool,
    signature: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    sqlx::query("DELETE FROM callback_signatures WHERE expires_at < ?1")
        .bind(micros(now))
        .execute(pool)
        .await?;
    let done = sqlx::query(
        "INSERT INTO callback_signatures (signature, expires_at) VALUES (?1, ?2) \
         ON CONFLICT (signature) DO NOTHING",
    )
    .bind(signature)
    .bind(micros(expires_at))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn release_callback_signature(pool: &SqlitePool, signature: &str) -> Result<()> {
    sqlx::query("DELETE FROM callback_signatures WHERE signature = ?1")
        .bind(signature)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn touch_interaction(
    pool: &SqlitePool,
    member_id: i64,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE members SET last_interaction_at = MAX(COALESCE(last_interaction_at, ?1), ?1) \
         WHERE id = ?2",
    )
    .bind(micros(at))
    .bind(member_id)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn forget_member(
    pool: &SqlitePool,
    member_id: i64,
    secrets: &[String],
) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "UPDATE sends SET member_id = NULL, text = NULL, last_error = CASE \
         WHEN status IN ('pending', 'claimed') THEN 'forgotten' ELSE NULL END, \
         provider_message_id = NULL, lease_owner = NULL, lease_expires_at = NULL, \
         status = CASE WHEN status IN ('pending', 'claimed') THEN 'skipped' ELSE status END \
         WHERE member_id = ?1",
    )
    .bind(member_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM members WHERE id = ?1").bind(member_id).execute(&mut *tx).await?;
    for secret in secrets {
        sqlx::query(
            "UPDATE audit_log SET target = REPLACE(target, ?1, '[erased]'), \
             detail = REPLACE(detail, ?1, '[erased]') \
             WHERE instr(target, ?1) > 0 OR instr(detail, ?1) > 0",
        )
        .bind(secret)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    // `secure_delete` zeroed the rows in the pages, but the WAL still holds the
    // pages as they were before: copy it back and truncate it to nothing.
    let (busy, _, _): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(pool).await?;
    if busy != 0 {
        tracing::warn!(
            "A reader kept the WAL from being truncated after erasing a member; the erased \
             bytes stay in the -wal file until the next checkpoint."
        );
    }
    Ok(())
}

fn send_row(row: &SqliteRow) -> Result<SendRow> {
    let status: String = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(SendRow {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        occurrence: row.try_get("occurrence")?,
        member_id: row.try_get("member_id")?,
        due_at: instant(row.try_get("due_at")?, "sends")?,
        channel: row.try_get("channel")?,
        lang: row.try_get("lang")?,
        variant: row.try_get("variant")?,
        status: status.parse()?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error: row.try_get("last_error")?,
    })
}

pub(super) async fn upcoming_sends(
    pool: &SqlitePool,
    member_id: i64,
    limit: i64,
) -> Result<Vec<SendRow>> {
    let rows = sqlx::query(
        "SELECT id, campaign_id, occurrence, member_id, due_at, channel, lang, variant, status, \
         attempts, last_error FROM sends WHERE member_id = ?1 AND status IN ('pending', 'claimed') \
         ORDER BY due_at, id LIMIT ?2",
    )
    .bind(member_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(send_row).collect()
}

pub(super) async fn member_counts(pool: &SqlitePool) -> Result<MemberCounts> {
    let row = sqlx::query(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN place_city_id IS NULL THEN 1 ELSE 0 END), 0) \
         FROM members",
    )
    .fetch_one(pool)
    .await?;
    Ok(MemberCounts { total: row.try_get(0)?, unresolved: row.try_get(1)? })
}

/// The ledger columns a batch's rows mostly share (campaign, occurrence,
/// channel, language, variant, status, skip reason): a statement binds each distinct tuple
/// once and each row binds only its own columns and the tuple's index.
type SharedColumns<'a> = [&'a str; 7];

/// Columns bound per distinct [`SharedColumns`] tuple (its index and the seven).
const SHARED_COLUMNS: usize = 8;

/// Columns bound per ledger row (tuple index, member, due time, text).
const OWN_COLUMNS: usize = 4;

/// Inserts ledger rows, skipping keys already present and rows whose member is
/// gone. Each statement is `WITH shared AS (VALUES …) INSERT … SELECT … FROM
/// (VALUES …) AS v CROSS JOIN shared`: binding the shared columns once per
/// distinct tuple instead of once per row cut the insert of 1 M rows of one
/// campaign from 3.6 s to 3.1–3.5 s (measured, five thousand per batch). `CROSS
/// JOIN` keeps the rows' `VALUES` a co-routine (a plain join materialized it).
pub(super) async fn insert_sends(pool: &SqlitePool, sends: &[&NewSend]) -> Result<u64> {
    let mut inserted = 0;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in sends.chunks(rows_per_statement(SHARED_COLUMNS + OWN_COLUMNS)) {
        let mut shared: Vec<SharedColumns<'_>> = Vec::new();
        let tuple_of: Vec<i64> = chunk
            .iter()
            .map(|send| {
                let tuple = [
                    send.campaign_id.as_str(),
                    send.occurrence.as_str(),
                    send.channel.as_str(),
                    send.lang.as_str(),
                    send.variant.as_str(),
                    send.status.as_str(),
                    send.reason.unwrap_or(""),
                ];
                let index = shared.iter().position(|known| *known == tuple).unwrap_or_else(|| {
                    shared.push(tuple);
                    shared.len() - 1
                });
                index as i64
            })
            .collect();
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new("WITH shared AS (");
        query.push_values(shared.iter().zip(0_i64..), |mut row, (tuple, index)| {
            row.push_bind(index);
            for column in tuple {
                row.push_bind(*column);
            }
        });
        query.push(
            ") INSERT INTO sends (campaign_id, occurrence, member_id, due_at, next_attempt_at, \
             channel, lang, variant, text, status, last_error) \
             SELECT s.column2, s.column3, v.column2, v.column3, v.column3, s.column4, s.column5, \
             s.column6, v.column4, s.column7, NULLIF(s.column8, '') FROM (",
        );
        query.push_values(chunk.iter().zip(&tuple_of), |mut row, (send, tuple)| {
            row.push_bind(*tuple)
                .push_bind(send.member_id)
                .push_bind(micros(send.due_at))
                .push_bind(send.text.as_str());
        });
        query.push(
            ") AS v CROSS JOIN shared s ON s.column1 = v.column1 \
             WHERE EXISTS (SELECT 1 FROM members m WHERE m.id = v.column2) \
             ON CONFLICT DO NOTHING",
        );
        inserted += query.build().execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(inserted)
}

pub(super) async fn claim_due(
    pool: &SqlitePool,
    owner: &str,
    now: DateTime<Utc>,
    due_by: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
    exclude: &Exclude,
) -> Result<Vec<ClaimedSend>> {
    // One statement, so one write transaction. Members who opted out (or were
    // forgotten) get their rows skipped instead of claimed. `INDEXED BY`: without
    // statistics SQLite preferred an equality index on `status` (dropped since),
    // reading every pending row and sorting them on each claim (O(ledger) per
    // batch, seconds at 1M rows, holding the write lock); the partial indexes walk
    // due order and stop at the limit.
    let rows = sqlx::query(
        "UPDATE sends SET \
           status = CASE WHEN m.opted_out_at IS NULL THEN 'claimed' ELSE 'skipped' END, \
           lease_owner = CASE WHEN m.opted_out_at IS NULL THEN ?1 END, \
           lease_expires_at = CASE WHEN m.opted_out_at IS NULL THEN ?2 END, \
           last_error = CASE WHEN m.opted_out_at IS NULL THEN sends.last_error \
                        ELSE 'opted_out' END \
         FROM members m \
         WHERE m.id = sends.member_id AND sends.id IN ( \
           SELECT id FROM ( \
             SELECT id, due_at FROM (SELECT id, due_at FROM sends INDEXED BY sends_pending \
               WHERE status = 'pending' AND due_at <= ?5 AND next_attempt_at <= ?5 \
                 AND campaign_id NOT IN (SELECT campaign_id FROM campaign_state WHERE paused) \
                 AND campaign_id NOT IN (SELECT value FROM json_each(?6)) \
                 AND channel NOT IN (SELECT value FROM json_each(?7)) \
               ORDER BY due_at LIMIT ?4) \
             UNION ALL \
             SELECT id, due_at FROM (SELECT id, due_at FROM sends INDEXED BY sends_claimed \
               WHERE status = 'claimed' AND lease_expires_at < ?3 \
                 AND campaign_id NOT IN (SELECT campaign_id FROM campaign_state WHERE paused) \
                 AND campaign_id NOT IN (SELECT value FROM json_each(?6)) \
                 AND channel NOT IN (SELECT value FROM json_each(?7)) \
               ORDER BY due_at LIMIT ?4) \
           ) ORDER BY due_at LIMIT ?4) \
         RETURNING id, campaign_id, occurrence, member_id, due_at, next_attempt_at, channel, lang, \
           variant, text, attempts, status, \
           (SELECT external_id FROM members WHERE members.id = sends.member_id) AS external_id, \
           (SELECT openid FROM members WHERE members.id = sends.member_id) AS openid, \
           (SELECT last_interaction_at FROM members WHERE members.id = sends.member_id) \
             AS last_interaction_at",
    )
    .bind(owner)
    .bind(micros(lease_until))
    .bind(micros(now))
    .bind(limit)
    .bind(micros(due_by))
    .bind(serde_json::Value::from(exclude.campaigns.clone()).to_string())
    .bind(serde_json::Value::from(exclude.channels.clone()).to_string())
    .fetch_all(pool)
    .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        let status: &str = row.try_get("status")?;
        if status != "claimed" {
            continue;
        }
        let attempts: i64 = row.try_get("attempts")?;
        claimed.push(ClaimedSend {
            id: row.try_get("id")?,
            campaign_id: row.try_get("campaign_id")?,
            occurrence: row.try_get("occurrence")?,
            member_id: row.try_get("member_id")?,
            external_id: row.try_get("external_id")?,
            openid: row.try_get("openid")?,
            last_interaction_at: opt_instant(row.try_get("last_interaction_at")?, "members")?,
            due_at: instant(row.try_get("due_at")?, "sends")?,
            not_before: instant(row.try_get("next_attempt_at")?, "sends")?,
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
    pool: &SqlitePool,
    owner: &str,
    rows: &[OutcomeRow<'_>],
) -> Result<u64> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut recorded = 0;
    // One row fewer leaves room for the owner's bind.
    for chunk in rows.chunks(rows_per_statement(7) - 1) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "UPDATE sends SET status = v.column2, \
             next_attempt_at = COALESCE(v.column3, sends.next_attempt_at), \
             last_error = COALESCE(v.column4, sends.last_error), \
             provider_message_id = COALESCE(v.column5, sends.provider_message_id), \
             sent_at = COALESCE(v.column6, sends.sent_at), \
             attempts = sends.attempts + v.column7, \
             lease_owner = NULL, lease_expires_at = NULL FROM (",
        );
        query.push_values(chunk, |mut row, outcome| {
            row.push_bind(outcome.id)
                .push_bind(outcome.status)
                .push_bind(outcome.next_attempt_at.map(micros))
                .push_bind(outcome.error)
                .push_bind(outcome.provider_id)
                .push_bind(outcome.sent_at.map(micros))
                .push_bind(outcome.attempt);
        });
        query.push(
            ") AS v WHERE sends.id = v.column1 AND sends.status = 'claimed' \
             AND sends.lease_owner = ",
        );
        query.push_bind(owner);
        recorded += query.build().execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(recorded)
}

pub(super) async fn renew_leases(
    pool: &SqlitePool,
    owner: &str,
    until: DateTime<Utc>,
) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE sends INDEXED BY sends_claimed SET lease_expires_at = ?2 \
         WHERE status = 'claimed' AND lease_owner = ?1",
    )
    .bind(owner)
    .bind(micros(until))
    .execute(pool)
    .await?
    .rows_affected())
}

pub(super) async fn release(pool: &SqlitePool, owner: &str) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE sends SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL \
         WHERE status = 'claimed' AND lease_owner = ?1",
    )
    .bind(owner)
    .execute(pool)
    .await?
    .rows_affected())
}

pub(super) async fn backlog(pool: &SqlitePool) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query("SELECT status, COUNT(*) FROM sends GROUP BY status ORDER BY status")
        .fetch_all(pool)
        .await?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
}

pub(super) async fn campaign_backlog(pool: &SqlitePool) -> Result<Vec<(String, String, i64)>> {
    let rows = sqlx::query(
        "SELECT campaign_id, status, COUNT(*) FROM sends GROUP BY campaign_id, status \
         ORDER BY campaign_id, status",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))).collect()
}

pub(super) async fn send_history(
    pool: &SqlitePool,
    member_ids: &[i64],
    since: DateTime<Utc>,
) -> Result<Vec<HistoryEntry>> {
    // `INDEXED BY`: without statistics SQLite picked an index on `status` (dropped
    // since) for the status list and visited every live ledger row per statement
    // (the planner calls this for every page of members, so planning went
    // quadratic in the ledger's size). The ledger key leads with the member
    // (migration 0004), so its index is the member's history.
    // Ends in `due_at >= `: each caller binds `since` next.
    const SELECT_HISTORY: &str = "SELECT campaign_id, member_id, due_at, occurrence, status \
        FROM sends INDEXED BY sends_key \
        WHERE due_at >= ";
    let entry = |row: &SqliteRow| -> Result<HistoryEntry> {
        Ok(HistoryEntry {
            campaign_id: row.try_get(0)?,
            member_id: row.try_get(1)?,
            due_at: instant(row.try_get(2)?, "sends")?,
            occurrence: row.try_get(3)?,
            holdout: row.try_get::<&str, _>(4)? == "holdout",
            skipped: matches!(row.try_get::<&str, _>(4)?, "skipped" | "dead"),
        })
    };
    let (Some(&low), Some(&high)) = (member_ids.iter().min(), member_ids.iter().max()) else {
        return Ok(Vec::new());
    };
    // A dense set of ids (the planner's page: consecutive members) is one range
    // scan of the index, filtered here, instead of a statement per 250 ids.
    if high - low < 2 * member_ids.len() as i64 {
        let wanted: std::collections::HashSet<i64> = member_ids.iter().copied().collect();
        let sql = format!(
            "{SELECT_HISTORY} ?1 AND member_id BETWEEN ?2 AND ?3 ORDER BY member_id, due_at"
        );
        // Streamed: a page's history can be hundreds of thousands of rows, and
        // `fetch_all` would hold every row's copied values besides the entries.
        let mut rows = sqlx::query(&sql).bind(micros(since)).bind(low).bind(high).fetch(pool);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await? {
            if row.try_get::<i64, _>(1).is_ok_and(|id| wanted.contains(&id)) {
                out.push(entry(&row)?);
            }
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for chunk in member_ids.chunks(rows_per_statement(1)) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(SELECT_HISTORY);
        query.push_bind(micros(since)).push(" AND member_id IN (");
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(") ORDER BY member_id, due_at");
        let mut rows = query.build().fetch(pool);
        while let Some(row) = rows.try_next().await? {
            out.push(entry(&row)?);
        }
    }
    Ok(out)
}

pub(super) async fn retention(pool: &SqlitePool, older_than: DateTime<Utc>) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM sends WHERE status IN ('sent', 'dead', 'skipped', 'holdout') AND due_at < ?1",
    )
    .bind(micros(older_than))
    .execute(pool)
    .await?
    .rows_affected())
}

pub(super) async fn set_campaign_paused(
    pool: &SqlitePool,
    campaign_id: &str,
    paused: bool,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO campaign_state (campaign_id, paused) VALUES (?1, ?2) \
         ON CONFLICT (campaign_id) DO UPDATE SET paused = excluded.paused, \
         updated_at = {NOW_MICROS}"
    ))
    .bind(campaign_id)
    .bind(paused)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn first_seen(
    pool: &SqlitePool,
    campaign_ids: &[&str],
    now: DateTime<Utc>,
) -> Result<std::collections::HashMap<String, DateTime<Utc>>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for id in campaign_ids {
        sqlx::query(
            "INSERT INTO campaign_seen (campaign_id, first_seen_at) VALUES (?1, ?2) \
             ON CONFLICT (campaign_id) DO NOTHING",
        )
        .bind(id)
        .bind(micros(now))
        .execute(&mut *tx)
        .await?;
    }
    let rows = sqlx::query("SELECT campaign_id, first_seen_at FROM campaign_seen")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, instant(row.try_get(1)?, "campaign_seen")?)))
        .collect()
}

pub(super) async fn set_campaign_hash(
    pool: &SqlitePool,
    campaign_id: &str,
    content_hash: &str,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO campaign_state (campaign_id, content_hash) VALUES (?1, ?2) \
         ON CONFLICT (campaign_id) DO UPDATE SET content_hash = excluded.content_hash, \
         updated_at = {NOW_MICROS}"
    ))
    .bind(campaign_id)
    .bind(content_hash)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn campaign_states(pool: &SqlitePool) -> Result<Vec<CampaignState>> {
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
    pool: &SqlitePool,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO audit_log (actor, action, target, detail) VALUES (?1, ?2, ?3, ?4)")
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn audit_log(
    pool: &SqlitePool,
    since: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<AuditEntry>> {
    let rows = sqlx::query(
        "SELECT at, actor, action, target, detail FROM audit_log \
         WHERE ?2 IS NULL OR at >= ?2 ORDER BY id DESC LIMIT ?1",
    )
    .bind(limit)
    .bind(since.map(micros))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                at: instant(row.try_get(0)?, "audit_log")?,
                actor: row.try_get(1)?,
                action: row.try_get(2)?,
                target: row.try_get(3)?,
                detail: row.try_get(4)?,
            })
        })
        .collect()
}

pub(super) async fn wechat_token(pool: &SqlitePool, app_id: &str) -> Result<Option<WechatToken>> {
    let row = sqlx::query("SELECT token, expires_at FROM wechat_tokens WHERE app_id = ?1")
        .bind(app_id)
        .fetch_optional(pool)
        .await?;
    row.map(|row| {
        Ok(WechatToken {
            token: row.try_get(0)?,
            expires_at: instant(row.try_get(1)?, "wechat_tokens")?,
        })
    })
    .transpose()
}

pub(super) async fn put_wechat_token(
    pool: &SqlitePool,
    app_id: &str,
    token: &str,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO wechat_tokens (app_id, token, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (app_id) DO UPDATE SET token = excluded.token, \
         expires_at = excluded.expires_at",
    )
    .bind(app_id)
    .bind(token)
    .bind(micros(expires_at))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn lead_planner(
    pool: &SqlitePool,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<PlannerMark>> {
    let row = sqlx::query(
        "UPDATE planner_state SET owner = ?1, lease_expires_at = ?3 \
         WHERE id = 1 AND (owner IS NULL OR owner = ?1 OR lease_expires_at < ?2) \
         RETURNING planned_until, campaigns_hash, generation",
    )
    .bind(owner)
    .bind(micros(now))
    .bind(micros(until))
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(PlannerMark {
            planned_until: opt_instant(row.try_get(0)?, "planner_state")?,
            campaigns_hash: row.try_get(1)?,
            generation: row.try_get(2)?,
            forgotten: None,
        })
    })
    .transpose()
}

pub(super) async fn finish_planning(
    pool: &SqlitePool,
    owner: &str,
    mark: Option<&PlannerMark>,
) -> Result<()> {
    let query = match mark {
        Some(mark) => sqlx::query(
            "UPDATE planner_state SET owner = NULL, lease_expires_at = NULL, \
             planned_until = CASE WHEN generation = ?4 THEN ?2 ELSE planned_until END, \
             campaigns_hash = CASE WHEN generation = ?4 THEN ?3 ELSE campaigns_hash END \
             WHERE id = 1 AND owner = ?1",
        )
        .bind(owner)
        .bind(mark.planned_until.map(micros))
        .bind(mark.campaigns_hash.as_deref())
        .bind(mark.generation),
        None => sqlx::query(
            "UPDATE planner_state SET owner = NULL, lease_expires_at = NULL \
             WHERE id = 1 AND owner = ?1",
        )
        .bind(owner),
    };
    query.execute(pool).await?;
    Ok(())
}

pub(super) async fn forget_planned(pool: &SqlitePool) -> Result<()> {
    sqlx::query(
        "UPDATE planner_state SET planned_until = NULL, generation = generation + 1 \
         WHERE id = 1",
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn dump_all_text(pool: &SqlitePool) -> Result<Vec<(String, String)>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for table in tables {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
                .bind(&table)
                .fetch_all(pool)
                .await?;
        let concat = columns
            .iter()
            .map(|column| {
                format!(
                    "COALESCE(CASE WHEN typeof(\"{column}\") = 'blob' THEN hex(\"{column}\") \
                     ELSE CAST(\"{column}\" AS TEXT) END, '')"
                )
            })
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {concat} FROM \"{table}\""))
            .fetch_all(pool)
            .await?;
        out.extend(rows.into_iter().map(|row| (table.clone(), row)));
    }
    Ok(out)
}
