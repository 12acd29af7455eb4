//! Member import throughput: `members::import` of N synthetic members (a CSV
//! written to a temp file) into SQLite and PostgreSQL, against the raw bulk-insert
//! ceiling of the same database measured in the same run (a multi-row INSERT of
//! the same, already parsed rows into a bare table with the same columns; COPY
//! on PostgreSQL). `ALMANAC_BENCH_MEMBERS` sets N (default 1,000,000). Places are
//! resolved with the bundled geo data, as `almanac members import` does. The
//! ceiling and the new import alternate for `ALMANAC_BENCH_ROUNDS` rounds
//! (default 3) and the verdict is the median ratio, because this machine is
//! shared and a single run moves by tens of percent.

/// The binary's allocator, so that the figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use almanac::geo::Geo;
use almanac::members::{self, ImportSummary, Member, Resolver};
use almanac::store::testing::TestDb;
use sqlx::{Connection, QueryBuilder};

const CITIES: [(&str, &str, f64, f64); 6] = [
    ("哈尔滨", "黑龙江省", 45.75, 126.63),
    ("Guangzhou", "Guangdong", 23.13, 113.26),
    ("上海", "", 31.23, 121.47),
    ("Chengdu", "Sichuan", 30.66, 104.07),
    ("", "", 39.90, 116.40),
    ("", "", 0.0, 0.0),
];

fn write_csv(path: &Path, count: usize) -> std::io::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "external_id,openid,name,phone,city,province,lat,lon,ip,lang,tags,attr.tier")?;
    for n in 0..count {
        let (city, province, lat, lon) = CITIES[n % CITIES.len()];
        let coordinates = if n % 3 == 0 && lat != 0.0 {
            format!("{:.4},{:.4}", lat + (n % 100) as f64 / 1000.0, lon)
        } else {
            ",".to_string()
        };
        let phone = if n % CITIES.len() == 5 { String::new() } else { format!("139{:08}", n) };
        writeln!(
            out,
            "crm-{n:08},oOPENID{n:012}abcdef,Member {n},{phone},{city},{province},{coordinates},\
             ,zh-Hans,skincare;vip,{}",
            ["gold", "silver", ""][n % 3]
        )?;
    }
    out.flush()
}

fn parse_all(path: &Path) -> Vec<Member> {
    members::read_file(path).expect("open").map(|row| row.expect("good row")).collect()
}

const RAW_COLUMNS: &str = "external_id, openid, name, phone, city, province, lat, lon, ip, lang, \
    tags, attrs, opted_out_at, last_interaction_at, place_city_id, place_tz, place_source, \
    place_confidence, place_distance_km, unresolved_reason, data_version";

fn push_raw<'a, DB: sqlx::Database>(
    mut row: sqlx::query_builder::Separated<'_, 'a, DB, &'static str>,
    member: &'a Member,
) where
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<f64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    row.push_bind(&member.external_id)
        .push_bind(member.openid.as_ref())
        .push_bind(member.name.as_ref())
        .push_bind(member.phone.as_ref())
        .push_bind(member.city.as_ref())
        .push_bind(member.province.as_ref())
        .push_bind(member.lat)
        .push_bind(member.lon)
        .push_bind(member.ip.as_ref())
        .push_bind(member.lang.as_ref())
        .push_bind(serde_json::to_string(&member.tags).unwrap())
        .push_bind(serde_json::to_string(&member.attrs).unwrap())
        .push_bind(None::<i64>)
        .push_bind(None::<i64>)
        .push_bind(Some(1i64))
        .push_bind(Some("Asia/Shanghai".to_string()))
        .push_bind(Some("explicit".to_string()))
        .push_bind(Some(1.0f64))
        .push_bind(None::<f64>)
        .push_bind(None::<String>)
        .push_bind(Some("v".to_string()));
}

async fn sqlite_ceiling(url: &str, rows: &[Member]) -> f64 {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    sqlx::query("CREATE TABLE members_raw AS SELECT * FROM members WHERE 0")
        .execute(&pool)
        .await
        .unwrap();
    let started = Instant::now();
    for batch in rows.chunks(members::DEFAULT_BATCH) {
        let mut tx = pool.begin().await.unwrap();
        let rows_per_statement: usize =
            std::env::var("CHUNK").ok().and_then(|v| v.parse().ok()).unwrap_or(32_766 / 21);
        for chunk in batch.chunks(rows_per_statement) {
            let mut query: QueryBuilder<sqlx::Sqlite> =
                QueryBuilder::new(format!("INSERT INTO members_raw ({RAW_COLUMNS}) "));
            query.push_values(chunk, |row, member| {
                let row: sqlx::query_builder::Separated<'_, '_, sqlx::Sqlite, &'static str> = row;
                push_raw(row, member)
            });
            query.build().execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    pool.close().await;
    seconds
}

/// PostgreSQL: a multi-row INSERT of the rows into a bare table (for scale).
async fn pg_insert(url: &str, rows: &[Member]) -> f64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("CREATE TABLE members_raw AS SELECT * FROM members WITH NO DATA")
        .execute(&mut conn)
        .await
        .unwrap();
    // Multi-row INSERT in the import's batch size.
    let started = Instant::now();
    for batch in rows.chunks(members::DEFAULT_BATCH) {
        let mut query: QueryBuilder<sqlx::Postgres> =
            QueryBuilder::new(format!("INSERT INTO members_raw ({RAW_COLUMNS}) "));
        query.push_values(batch, |mut row, member| {
            row.push_bind(&member.external_id)
                .push_bind(member.openid.as_ref())
                .push_bind(member.name.as_ref())
                .push_bind(member.phone.as_ref())
                .push_bind(member.city.as_ref())
                .push_bind(member.province.as_ref())
                .push_bind(member.lat)
                .push_bind(member.lon)
                .push_bind(member.ip.as_ref())
                .push_bind(member.lang.as_ref())
                .push_bind(serde_json::to_value(&member.tags).unwrap())
                .push_bind(serde_json::to_value(&member.attrs).unwrap())
                .push_bind(None::<chrono::DateTime<chrono::Utc>>)
                .push_bind(None::<chrono::DateTime<chrono::Utc>>)
                .push_bind(Some(1i64))
                .push_bind(Some("Asia/Shanghai"))
                .push_bind(Some("explicit"))
                .push_bind(Some(1.0f64))
                .push_bind(None::<f64>)
                .push_bind(None::<String>)
                .push_bind(Some("v"));
        });
        query.build().execute(&mut conn).await.unwrap();
    }
    let insert_seconds = started.elapsed().as_secs_f64();
    conn.close().await.unwrap();
    insert_seconds
}

/// The same rows as CSV for COPY (built once, outside the timing).
fn copy_data(rows: &[Member]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for member in rows {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let float = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        writer
            .write_record([
                member.external_id.clone(),
                text(&member.openid),
                text(&member.name),
                text(&member.phone),
                text(&member.city),
                text(&member.province),
                float(member.lat),
                float(member.lon),
                text(&member.ip),
                text(&member.lang),
                serde_json::to_string(&member.tags).unwrap(),
                serde_json::to_string(&member.attrs).unwrap(),
                String::new(),
                String::new(),
                "1".into(),
                "Asia/Shanghai".into(),
                "explicit".into(),
                "1".into(),
                String::new(),
                String::new(),
                "v".into(),
            ])
            .unwrap();
    }
    writer.into_inner().unwrap()
}

/// Flushes the previous step's dirty pages and WAL (a `CHECKPOINT`, which needs
/// a superuser; skipped otherwise), so that no step pays for the one before.
async fn checkpoint(url: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    if let Err(error) = sqlx::query("CHECKPOINT").execute(&mut conn).await {
        eprintln!("postgres  no CHECKPOINT between steps: {error}");
    }
    conn.close().await.unwrap();
}

/// PostgreSQL's ceiling: COPY of the rows into a bare table.
async fn pg_copy(url: &str, data: &[u8]) -> f64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("CREATE TABLE members_raw AS SELECT * FROM members WITH NO DATA")
        .execute(&mut conn)
        .await
        .unwrap();
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!("COPY members_raw ({RAW_COLUMNS}) FROM STDIN (FORMAT csv)"))
        .await
        .unwrap();
    for chunk in data.chunks(1 << 20) {
        copy.send(chunk).await.unwrap();
    }
    copy.finish().await.unwrap();
    let copy_seconds = started.elapsed().as_secs_f64();
    conn.close().await.unwrap();
    copy_seconds
}

/// The store's upsert alone, on rows already parsed and resolved.
async fn upsert_only(db: &TestDb, rows: &[Member]) -> f64 {
    let resolution = almanac::store::Resolution {
        place: None,
        unresolved_reason: Some("x".into()),
        data_version: Some("v".into()),
    };
    let rows: Vec<(Member, almanac::store::Resolution)> =
        rows.iter().map(|m| (m.clone(), resolution.clone())).collect();
    let started = Instant::now();
    for batch in rows.chunks(members::default_batch(&db.store)) {
        db.store.upsert_resolved(batch).await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

async fn import(
    db: &TestDb,
    path: &Path,
    resolver: &Resolver,
    version: &str,
) -> (ImportSummary, f64) {
    let started = Instant::now();
    let summary = members::import(
        &db.store,
        members::read_file(path).unwrap(),
        resolver.clone(),
        version,
        members::default_batch(&db.store),
        &mut |error| panic!("unexpected bad row: {error}"),
        &mut |_| {},
    )
    .await
    .unwrap();
    (summary, started.elapsed().as_secs_f64())
}

fn line(backend: &str, path: &str, rows: usize, seconds: f64, ratio: Option<f64>) {
    let rate = rows as f64 / seconds;
    let ratio = ratio.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_default();
    println!("{backend:<9} {path:<40} {rows:>9} {seconds:>8.2} {rate:>10.0} {ratio:>8}");
}

fn main() {
    let count: usize = std::env::var("ALMANAC_BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("members.csv");
    write_csv(&path, count).unwrap();
    let (resolver, version) = members::geo_resolver(Geo::bundled());
    let started = Instant::now();
    let parsed = parse_all(&path);
    let parse_seconds = started.elapsed().as_secs_f64();
    assert_eq!(parsed.len(), count);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "members import: {count} synthetic members, bundled geo {version}, batch {} on SQLite, \
         {} on PostgreSQL",
        members::DEFAULT_BATCH,
        members::DEFAULT_BATCH_POSTGRES
    );
    println!(
        "{:<9} {:<40} {:>9} {:>8} {:>10} {:>8}",
        "backend", "path", "rows", "seconds", "rows/s", "of ceil."
    );
    line("-", "read + validate the CSV only", count, parse_seconds, None);
    let only = std::env::var("ALMANAC_BENCH_ONLY").unwrap_or_default();
    runtime.block_on(async {
        if only != "postgres" {
            sqlite_figures(count, &parsed, &path, &resolver, &version).await;
        }
        if only != "sqlite" {
            postgres_figures(count, &parsed, &path, &resolver, &version).await;
        }
    });
}

/// Rounds of (ceiling, new import): `ALMANAC_BENCH_ROUNDS`, default 3. This
/// machine is shared, so one round can be slowed by a neighbour; the verdict is
/// the median of the rounds' ratios.
fn rounds() -> usize {
    std::env::var("ALMANAC_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1)
}

/// Prints the median of the rounds' import/ceiling ratios against the 50 % target.
fn verdict(backend: &str, mut ratios: Vec<f64>) {
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let all: Vec<String> = ratios.iter().map(|r| format!("{:.0}%", r * 100.0)).collect();
    let mark = if median >= 0.5 { "PASS" } else { "MISS" };
    println!(
        "{backend:<9} new import / ceiling, median of {} rounds: {:.0}% (rounds: {}; target \
         50%) {mark}",
        ratios.len(),
        median * 100.0,
        all.join(", ")
    );
}

/// SQLite: rounds of the ceiling and the new import, each on a fresh file; then
/// the unchanged re-import and the upsert alone.
async fn sqlite_figures(
    count: usize,
    parsed: &[Member],
    path: &Path,
    resolver: &Resolver,
    version: &str,
) {
    let mut ratios = Vec::new();
    let mut ceiling = 0.0;
    let mut db: Option<TestDb> = None;
    for _ in 0..rounds() {
        let ceiling_db = TestDb::sqlite().await.unwrap();
        ceiling = sqlite_ceiling(&ceiling_db.url, parsed).await;
        ceiling_db.cleanup().await.unwrap();
        line("sqlite", "multi-row INSERT, bare table (ceiling)", count, ceiling, None);
        if let Some(old) = db.take() {
            old.cleanup().await.unwrap();
        }
        let fresh = TestDb::sqlite().await.unwrap();
        let (summary, seconds) = import(&fresh, path, resolver, version).await;
        assert_eq!(summary.inserted, count as u64);
        line("sqlite", "members import (new: bulk load)", count, seconds, Some(ceiling / seconds));
        ratios.push(ceiling / seconds);
        db = Some(fresh);
    }
    let db = db.expect("one round at least");
    let (summary, seconds) = import(&db, path, resolver, version).await;
    assert_eq!(summary.unchanged, count as u64);
    line("sqlite", "members import again (unchanged)", count, seconds, Some(ceiling / seconds));
    db.cleanup().await.unwrap();
    let db = TestDb::sqlite().await.unwrap();
    let seconds = upsert_only(&db, parsed).await;
    line("sqlite", "upsert only (parsed, resolved)", count, seconds, Some(ceiling / seconds));
    db.cleanup().await.unwrap();
    verdict("sqlite", ratios);
}

/// PostgreSQL: rounds of the COPY ceiling and the new import, each in a fresh
/// schema; then the unchanged re-import, a multi-row INSERT and the upsert alone.
async fn postgres_figures(
    count: usize,
    parsed: &[Member],
    path: &Path,
    resolver: &Resolver,
    version: &str,
) {
    let Some(probe) = TestDb::postgres().await.unwrap() else {
        println!("postgres  skipped: no PostgreSQL");
        return;
    };
    probe.cleanup().await.unwrap();
    let data = copy_data(parsed);
    let mut ratios = Vec::new();
    let mut copy = 0.0;
    let mut db: Option<TestDb> = None;
    for _ in 0..rounds() {
        if let Some(old) = db.take() {
            old.cleanup().await.unwrap();
        }
        let fresh = TestDb::postgres().await.unwrap().unwrap();
        checkpoint(&fresh.url).await;
        copy = pg_copy(&fresh.url, &data).await;
        line("postgres", "COPY, bare table (ceiling)", count, copy, None);
        checkpoint(&fresh.url).await;
        let (summary, seconds) = import(&fresh, path, resolver, version).await;
        assert_eq!(summary.inserted, count as u64);
        line("postgres", "members import (new: bulk load)", count, seconds, Some(copy / seconds));
        ratios.push(copy / seconds);
        db = Some(fresh);
    }
    let db = db.expect("one round at least");
    let (summary, seconds) = import(&db, path, resolver, version).await;
    assert_eq!(summary.unchanged, count as u64);
    line("postgres", "members import again (unchanged)", count, seconds, Some(copy / seconds));
    db.cleanup().await.unwrap();
    let db = TestDb::postgres().await.unwrap().unwrap();
    let insert = pg_insert(&db.url, parsed).await;
    line("postgres", "multi-row INSERT, bare table", count, insert, Some(copy / insert));
    db.cleanup().await.unwrap();
    let db = TestDb::postgres().await.unwrap().unwrap();
    let seconds = upsert_only(&db, parsed).await;
    line("postgres", "upsert only (parsed, resolved)", count, seconds, Some(copy / seconds));
    db.cleanup().await.unwrap();
    verdict("postgres", ratios);
}
