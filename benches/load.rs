//! Load harness: the real daemon (`almanac run`, the binary `cargo bench` builds)
//! against a local HTTP sink, with N synthetic members whose push falls due at once
//! (`--scenario burst`: due after a lead the planner uses to fill the ledger, as a
//! campaign planned ahead meets its local 10:00; `--scenario cold`: due before the
//! daemon starts, so planning and sending share the machine), at a steady
//! 5 000 pushes/s (`--scenario steady`: one campaign whose `spread` gives each
//! member an instant of its own, N / 5 000 seconds long) or in lumps of 5 000 per
//! second (`--scenario lumps`: one campaign per second, each at one instant).
//!
//! ```text
//! cargo bench --bench load -- [--members N] [--backend sqlite|postgres]
//!                             [--replicas 1|2] [--scenario burst|cold|steady|lumps]
//!                             [--lead-secs S] [--timeout-secs S]
//! ```
//!
//! Phases, each timed on its own: generate the member file (JSONL, real phone
//! prefixes from `data/phone_cn.tsv` spread over the 31 mainland provinces);
//! import it with `almanac members import`; start the daemon(s) and wait until the
//! ledger holds N rows (planning); wait until the sink has N pushes (delivery).
//! The ceiling: a bare hyper client (the daemon's webhook stack) with the daemon's
//! concurrency posting push-sized bodies to the same sink, once before the daemons
//! start and once after they stop; the better of the two is the reference. Prints planning time,
//! pushes/s and its ratio to the ceiling, fire lateness p50/p99/max (sink receipt
//! vs. the payload's `due_at`), the daemon's peak resident memory (`VmHWM`) and the
//! database size, each with PASS/MISS against its target; exits 1 on any MISS.
//! Child processes are stopped on every exit path (a guard's `Drop`, also on panic).
//! PostgreSQL: `ALMANAC_TEST_PG_URL` or `postgres://postgres@127.0.0.1:5432/test`;
//! each run creates a fresh database and drops it afterwards.

#[path = "common/ceiling.rs"]
mod ceiling;

/// The daemon's allocator, for the sink and the ceiling client too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use almanac::store::Store;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, Utc};
use chrono_tz::Asia::Shanghai;
use serde::Deserialize;

/// Pushes in flight, for the daemon and the ceiling client alike.
const CONCURRENCY: usize = 128;
/// Steady scenario: pushes falling due per second.
const STEADY_RATE: usize = 5000;
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// All due at one instant, `lead` after the daemons start.
    Burst,
    /// All due one second before the daemons start.
    Cold,
    /// [`STEADY_RATE`] due per second, evenly, from `lead` after the daemons start.
    Steady,
    /// [`STEADY_RATE`] due at each whole second, from `lead` after the daemons start.
    Lumps,
}

#[derive(Debug)]
struct Args {
    members: usize,
    backend: Backend,
    replicas: usize,
    scenario: Scenario,
    /// Burst, steady and lumps: from the daemons' start to the first due instant; by
    /// default 10 s plus 50 s per million members (planning's time and a margin).
    lead: Option<Duration>,
    /// Give up on a phase after this long.
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        members: 100_000,
        backend: Backend::Sqlite,
        replicas: 1,
        scenario: Scenario::Burst,
        lead: None,
        timeout: Duration::from_secs(600),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = |name: &str| iter.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            "--members" => {
                args.members = value("--members")?
                    .replace('_', "")
                    .parse()
                    .map_err(|_| "--members: expected a positive number".to_string())?;
            }
            "--backend" => {
                args.backend = match value("--backend")?.as_str() {
                    "sqlite" => Backend::Sqlite,
                    "postgres" => Backend::Postgres,
                    other => return Err(format!("--backend {other}: expected sqlite or postgres")),
                };
            }
            "--replicas" => {
                args.replicas = match value("--replicas")?.as_str() {
                    "1" => 1,
                    "2" => 2,
                    other => return Err(format!("--replicas {other}: expected 1 or 2")),
                };
            }
            "--scenario" => {
                args.scenario = match value("--scenario")?.as_str() {
                    "burst" => Scenario::Burst,
                    "cold" => Scenario::Cold,
                    "steady" => Scenario::Steady,
                    "lumps" => Scenario::Lumps,
                    other => {
                        return Err(format!(
                            "--scenario {other}: expected burst, cold, steady or lumps"
                        ));
                    }
                };
            }
            "--lead-secs" => {
                let secs: u64 = value("--lead-secs")?
                    .parse()
                    .map_err(|_| "--lead-secs: expected a number of seconds".to_string())?;
                args.lead = Some(Duration::from_secs(secs));
            }
            "--timeout-secs" => {
                let secs: u64 = value("--timeout-secs")?
                    .parse()
                    .map_err(|_| "--timeout-secs: expected a number of seconds".to_string())?;
                args.timeout = Duration::from_secs(secs);
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: --members N --backend sqlite|postgres \
                     --replicas 1|2 --scenario burst|cold|steady|lumps [--lead-secs S] \
                     [--timeout-secs S]"
                ));
            }
        }
    }
    if args.members == 0 {
        return Err("--members must be at least 1".into());
    }
    if args.replicas == 2 && args.backend == Backend::Sqlite {
        return Err(
            "--replicas 2 needs --backend postgres (SQLite is one machine, one process)".into()
        );
    }
    Ok(args)
}

// ---------------------------------------------------------------------------
// Members

/// Mobile prefixes (7 digits) of each mainland province, from the bundled data.
fn prefixes_by_province(root: &Path) -> BTreeMap<String, Vec<u32>> {
    let gazetteer = std::fs::read_to_string(root.join("data/gazetteer.tsv")).expect("gazetteer");
    let mut province_of = std::collections::HashMap::new();
    for line in gazetteer.lines().filter(|line| !line.starts_with('#')).skip(1) {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() > 6 && fields[6] == "CN" {
            province_of.insert(fields[0].to_string(), fields[4].to_string());
        }
    }
    let phones = std::fs::read_to_string(root.join("data/phone_cn.tsv")).expect("phone_cn.tsv");
    let mut by_province: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for line in phones.lines().filter(|line| !line.starts_with('#')) {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 4 || fields[0] != "7" || !fields[1].starts_with('1') {
            continue;
        }
        let (Ok(first), Ok(count)) = (fields[1].parse::<u32>(), fields[2].parse::<u32>()) else {
            continue;
        };
        if let Some(province) = province_of.get(fields[3]) {
            let list = by_province.entry(province.clone()).or_default();
            list.extend((first..first + count).take(4));
        }
    }
    by_province
}

/// Writes `count` members as JSONL; member `i` lives in province `i % provinces`,
/// and in the lumps scenario carries the tag of its one-second slice.
fn write_members(path: &Path, count: usize, provinces: &BTreeMap<String, Vec<u32>>, lumps: bool) {
    let lists: Vec<&Vec<u32>> = provinces.values().collect();
    let mut out = BufWriter::new(std::fs::File::create(path).expect("member file"));
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for index in 0..count {
        let list = lists[index % lists.len()];
        let prefix = list[(next() % list.len() as u64) as usize];
        let line = next() % 10_000;
        let tag = if lumps { format!("s{}", index / STEADY_RATE) } else { "all".into() };
        writeln!(
            out,
            r#"{{"external_id":"m{index:08}","openid":"o{index:027}","name":"会员{index}","phone":"+86{prefix}{line:04}","tags":["{tag}"],"attrs":{{"tier":"gold"}}}}"#
        )
        .expect("write member");
    }
    out.flush().expect("flush members");
}

// ---------------------------------------------------------------------------
// Campaigns and configuration

/// A `once` campaign for the members tagged `tag`, due at `due` (Shanghai time),
/// spread over `spread_secs` seconds when given.
fn campaign(id: &str, due: DateTime<Utc>, tag: &str, spread_secs: Option<u64>) -> String {
    let local = due.with_timezone(&Shanghai);
    let spread = spread_secs.map_or(String::new(), |secs| format!("spread = \"{secs}s\"\n"));
    format!(
        r#"id = "{id}"
name = "Load {id}"
channel = "sink"
purpose = "service"
default_lang = "zh-Hans"

[audience]
tags_any = ["{tag}"]

[timing]
trigger = "once"
date = "{date}"
local_time = "{time}"
window = "6h"
{spread}
[[message]]
lang = "zh-Hans"
text = "{{{{ name }}}}，天气转凉变干，记得保湿。"
"#,
        date = local.format("%Y-%m-%d"),
        time = local.format("%H:%M:%S"),
    )
}

fn config(dir: &Path, database: &str, listen: u16, sink: u16) -> String {
    format!(
        r#"database = "{database}"
campaigns_dir = "{campaigns}"
listen = "127.0.0.1:{listen}"
shutdown_grace = "5s"

[planner]
horizon = "1h"
tick = "2s"
batch = 5000

[dispatcher]
batch = 1000
concurrency = {CONCURRENCY}
lease_secs = 60
poll_ms = 20

[channels.sink]
type = "webhook"
url = "http://127.0.0.1:{sink}/push"
timeout_ms = 10000
max_attempts = 3
concurrency = {CONCURRENCY}
"#,
        campaigns = dir.join("campaigns").display(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

// ---------------------------------------------------------------------------
// The sink

#[derive(Default)]
struct Sink {
    pushes: AtomicU64,
    ceiling: AtomicU64,
    record: Mutex<Record>,
}

#[derive(Default)]
struct Record {
    /// Receipt minus `due_at`, milliseconds, one per push.
    lateness_ms: Vec<i64>,
    first: Option<Instant>,
    last: Option<Instant>,
    keys: HashSet<u64>,
}

#[derive(Deserialize)]
struct Payload<'a> {
    due_at: DateTime<Utc>,
    member: &'a str,
    campaign: &'a str,
}

async fn push(State(sink): State<Arc<Sink>>, body: Bytes) -> StatusCode {
    let now = Utc::now();
    let at = Instant::now();
    let Ok(payload) = serde_json::from_slice::<Payload>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let key = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (payload.campaign, payload.member).hash(&mut hasher);
        hasher.finish()
    };
    sink.pushes.fetch_add(1, Ordering::Relaxed);
    let mut record = sink.record.lock().expect("sink record");
    record.lateness_ms.push((now - payload.due_at).num_milliseconds());
    record.first.get_or_insert(at);
    record.last = Some(at);
    record.keys.insert(key);
    StatusCode::OK
}

async fn ceiling(State(sink): State<Arc<Sink>>, body: Bytes) -> StatusCode {
    if body.is_empty() {
        return StatusCode::BAD_REQUEST;
    }
    sink.ceiling.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

/// A push-sized body for the ceiling.
fn ceiling_body() -> Bytes {
    let body = serde_json::to_vec(&almanac::delivery::webhook::Body {
        campaign: "load-burst",
        occurrence: "2026-11-22",
        member: "m00000001",
        openid: Some("o000000000000000000000000001"),
        lang: "zh-Hans",
        variant: "0",
        text: "会员1，天气转凉变干，记得保湿。",
        due_at: Utc::now(),
        sent_at: Utc::now(),
        attempt: 1,
    })
    .expect("body");
    Bytes::from(body)
}

// ---------------------------------------------------------------------------
// Child processes

/// Daemon processes, stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
struct Daemons(Vec<Child>);

impl Daemons {
    fn stop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in &mut self.0 {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        self.0.clear();
    }

    /// A daemon that exited on its own (with its status), if any.
    fn exited(&mut self) -> Option<String> {
        self.0.iter_mut().find_map(|child| match child.try_wait() {
            Ok(Some(status)) => Some(format!("daemon {} exited early: {status}", child.id())),
            _ => None,
        })
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `VmHWM` of a process, bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

// ---------------------------------------------------------------------------
// Databases

/// A fresh database for this run; dropped by [`Database::cleanup`].
struct Database {
    url: String,
    admin_url: Option<String>,
    name: String,
    file: Option<PathBuf>,
}

impl Database {
    async fn create(backend: Backend, dir: &Path) -> Database {
        match backend {
            Backend::Sqlite => {
                let file = dir.join("almanac.db");
                Database {
                    url: format!("sqlite:{}", file.display()),
                    admin_url: None,
                    name: String::new(),
                    file: Some(file),
                }
            }
            Backend::Postgres => {
                let admin_url = std::env::var("ALMANAC_TEST_PG_URL")
                    .ok()
                    .filter(|url| !url.is_empty())
                    .unwrap_or_else(|| DEFAULT_PG_URL.into());
                let name = format!("almanac_load_{}", std::process::id());
                let admin = Store::connect_unmigrated(&admin_url).await.unwrap_or_else(|error| {
                    panic!("PostgreSQL at {admin_url} does not answer: {error}")
                });
                admin.execute_raw(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop");
                admin.execute_raw(&format!("CREATE DATABASE {name}")).await.expect("create db");
                admin.close().await;
                let (base, query) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
                let base = &base[..base.rfind('/').expect("database URL has a path")];
                let url = if query.is_empty() {
                    format!("{base}/{name}")
                } else {
                    format!("{base}/{name}?{query}")
                };
                Database { url, admin_url: Some(admin_url), name, file: None }
            }
        }
    }

    async fn size(&self) -> u64 {
        match &self.file {
            Some(file) => ["", "-wal", "-shm"]
                .iter()
                .filter_map(|suffix| {
                    let mut path = file.clone().into_os_string();
                    path.push(suffix);
                    std::fs::metadata(path).ok().map(|meta| meta.len())
                })
                .sum(),
            None => {
                let url = self.admin_url.as_deref().expect("admin url");
                let pool = sqlx::PgPool::connect(url).await.expect("admin pool");
                let size: i64 = sqlx::query_scalar("SELECT pg_database_size($1)")
                    .bind(&self.name)
                    .fetch_one(&pool)
                    .await
                    .expect("pg_database_size");
                pool.close().await;
                size as u64
            }
        }
    }

    async fn cleanup(&self) {
        if let Some(admin_url) = &self.admin_url
            && let Ok(admin) = Store::connect_unmigrated(admin_url).await
        {
            if let Err(error) = admin
                .execute_raw(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .await
            {
                eprintln!("dropping {}: {error}", self.name);
            }
            admin.close().await;
        }
    }
}

/// The sum of a daemon's `almanac_planned_total` series (0 when unreachable).
async fn planned_metric(client: &reqwest::Client, port: u16) -> u64 {
    let Ok(response) = client.get(format!("http://127.0.0.1:{port}/metrics")).send().await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| line.starts_with("almanac_planned_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn ledger_rows(store: &Store) -> i64 {
    store.backlog().await.map(|rows| rows.iter().map(|(_, count)| count).sum()).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Report

struct Report {
    lines: Vec<String>,
    missed: usize,
}

impl Report {
    fn info(&mut self, name: &str, value: String) {
        self.lines.push(format!("{name:<34} {value}"));
    }
    fn check(&mut self, name: &str, value: String, pass: bool, target: &str) {
        if !pass {
            self.missed += 1;
        }
        let verdict = if pass { "PASS" } else { "MISS" };
        self.lines.push(format!("{name:<34} {value:<34} {verdict} (target {target})"));
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

// ---------------------------------------------------------------------------

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("load: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run(args)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("load: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<usize, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let binary = env!("CARGO_BIN_EXE_almanac");
    let dir = tempfile::tempdir().map_err(|error| format!("temp dir: {error}"))?;
    let n = args.members;
    println!(
        "load: {n} members, {:?}, {} replica(s), {:?} scenario; daemon {binary}",
        args.backend, args.replicas, args.scenario
    );
    let mut report = Report { lines: Vec::new(), missed: 0 };

    // Sink.
    let sink = Arc::new(Sink::default());
    let app = axum::Router::new()
        .route("/push", post(push))
        .route("/ceiling", post(ceiling))
        .with_state(sink.clone());
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|error| error.to_string())?;
    let sink_port = listener.local_addr().map_err(|error| error.to_string())?.port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // Members.
    let started = Instant::now();
    let provinces = prefixes_by_province(&root);
    let members_file = dir.path().join("members.jsonl");
    write_members(&members_file, n, &provinces, args.scenario == Scenario::Lumps);
    report.info(
        "members file",
        format!(
            "{n} rows, {} provinces, {} in {:.2} s",
            provinces.len(),
            mb(std::fs::metadata(&members_file).map(|meta| meta.len()).unwrap_or(0)),
            started.elapsed().as_secs_f64()
        ),
    );

    let database = Database::create(args.backend, dir.path()).await;
    let outcome =
        measure(&args, binary, dir.path(), &database, &members_file, &sink, sink_port, &mut report)
            .await;
    database.cleanup().await;
    server.abort();
    outcome?;

    println!();
    for line in &report.lines {
        println!("{line}");
    }
    println!(
        "machine: {} cores shared with other work; figures are noisy.",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(report.missed)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    binary: &str,
    dir: &Path,
    database: &Database,
    members_file: &Path,
    sink: &Arc<Sink>,
    sink_port: u16,
    report: &mut Report,
) -> Result<(), String> {
    let n = args.members;
    // Import (one process, before any daemon starts).
    let started = Instant::now();
    let status = Command::new(binary)
        .args(["members", "import", "--batch", "5000", "--database", &database.url])
        .arg(members_file)
        .stdout(Stdio::null())
        .status()
        .map_err(|error| format!("running {binary} members import: {error}"))?;
    let import = started.elapsed();
    if !status.success() {
        return Err(format!("almanac members import failed: {status}"));
    }
    report.info(
        "import (almanac members import)",
        format!("{:.2} s, {:.0} members/s", import.as_secs_f64(), n as f64 / import.as_secs_f64()),
    );

    // Campaigns: all due at one instant (burst: after the lead; cold: a second
    // before the daemons start), spread evenly at STEADY_RATE per second (steady)
    // or one slice of STEADY_RATE members at each second (lumps).
    let campaigns = dir.join("campaigns");
    std::fs::create_dir_all(&campaigns).map_err(|error| error.to_string())?;
    let now = Utc::now();
    let lead = args.lead.unwrap_or(Duration::from_secs(10 + (n as u64) / 20_000));
    let lead = chrono::Duration::from_std(lead).map_err(|error| error.to_string())?;
    let first_due = match args.scenario {
        Scenario::Burst | Scenario::Cold => {
            let due = match args.scenario {
                Scenario::Cold => now - chrono::Duration::seconds(1),
                _ => now + lead,
            };
            std::fs::write(
                campaigns.join("load-burst.toml"),
                campaign("load-burst", due, "all", None),
            )
            .map_err(|error| error.to_string())?;
            due
        }
        Scenario::Steady => {
            let due = now + lead;
            let spread = n.div_ceil(STEADY_RATE) as u64;
            std::fs::write(
                campaigns.join("load-steady.toml"),
                campaign("load-steady", due, "all", Some(spread)),
            )
            .map_err(|error| error.to_string())?;
            due
        }
        Scenario::Lumps => {
            let start = now + lead;
            for slice in 0..n.div_ceil(STEADY_RATE) {
                let due = start + chrono::Duration::seconds(slice as i64);
                let id = format!("load-steady-{slice:04}");
                std::fs::write(
                    campaigns.join(format!("{id}.toml")),
                    campaign(&id, due, &format!("s{slice}"), None),
                )
                .map_err(|error| error.to_string())?;
            }
            start
        }
    };

    // Ceiling, on the same sink, before any daemon starts (again after they stop).
    let ceiling_count = n.clamp(20_000, 200_000);
    let ceiling_url = format!("http://127.0.0.1:{sink_port}/ceiling");
    let ceiling_before =
        ceiling::bare_client(&ceiling_url, ceiling_count, CONCURRENCY, ceiling_body()).await;

    // Daemons.
    let mut daemons = Daemons(Vec::new());
    let mut ports = Vec::new();
    let started = Instant::now();
    let started_utc = Utc::now();
    for replica in 0..args.replicas {
        let port = free_port();
        let config_path = dir.join(format!("almanac-{replica}.toml"));
        std::fs::write(&config_path, config(dir, &database.url, port, sink_port))
            .map_err(|error| error.to_string())?;
        let log = std::fs::File::create(dir.join(format!("daemon-{replica}.log")))
            .map_err(|error| error.to_string())?;
        let child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|error| format!("starting {binary} run: {error}"))?;
        daemons.0.push(child);
        ports.push(port);
    }
    let store = Store::connect(&database.url).await.map_err(|error| error.to_string())?;

    // Planning: until the ledger holds N rows. The daemons' `almanac_planned_total`
    // is polled often (cheap); the ledger is counted when it says N, and every 2 s
    // in case the metric lags (a COUNT over a million rows is not free).
    let deadline = started + args.timeout;
    let client = reqwest::Client::new();
    let mut planned = 0;
    let mut last_count = Instant::now();
    while planned < n as i64 {
        if let Some(message) = daemons.exited() {
            return Err(tail_logs(dir, args.replicas, &message));
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut reported = 0;
        for port in &ports {
            reported = reported.max(planned_metric(&client, *port).await);
        }
        if reported >= n as u64 || last_count.elapsed() > Duration::from_secs(2) {
            planned = ledger_rows(&store).await;
            last_count = Instant::now();
        }
    }
    let planning = started.elapsed();
    let plan_rate = planned as f64 / planning.as_secs_f64();
    let (plan_target, plan_name) = match args.backend {
        Backend::Sqlite => (5.0, "≤ 5 s per 1M rows"),
        Backend::Postgres => (8.0, "≤ 8 s per 1M rows"),
    };
    let per_million = planning.as_secs_f64() * 1e6 / n as f64;
    report.check(
        "planning (start → ledger has N)",
        format!("{planned}/{n} rows in {:.2} s ({plan_rate:.0}/s)", planning.as_secs_f64()),
        planned == n as i64 && per_million <= plan_target,
        plan_name,
    );
    if args.scenario != Scenario::Cold {
        // Planned ahead: the figures below are the drain's own only when the
        // ledger was full before the first push fell due.
        let slack =
            (first_due - started_utc).num_milliseconds() as f64 / 1000.0 - planning.as_secs_f64();
        report.info(
            "ledger full before the first due instant",
            if slack >= 0.0 {
                format!("yes, {slack:.1} s before")
            } else {
                format!(
                    "NO, {:.1} s after: sending overlapped planning (raise --lead-secs)",
                    -slack
                )
            },
        );
    }

    // Delivery: until the sink has N pushes (nothing is expected before the
    // first due instant, so the no-progress clock starts there).
    let mut last_count = 0;
    let until_due = (first_due - Utc::now()).to_std().unwrap_or_default();
    let mut last_progress = Instant::now() + until_due;
    loop {
        let count = sink.pushes.load(Ordering::Relaxed);
        if count >= n as u64 {
            break;
        }
        if count != last_count {
            last_count = count;
            last_progress = Instant::now();
        }
        if let Some(message) = daemons.exited() {
            return Err(tail_logs(dir, args.replicas, &message));
        }
        // No progress for 30 s (or past the deadline): report what arrived.
        if Instant::now().saturating_duration_since(last_progress) > Duration::from_secs(30)
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = started.elapsed();
    let peak: Vec<u64> = daemons.0.iter().filter_map(|child| peak_rss(child.id())).collect();
    daemons.stop();
    let db_size = database.size().await;
    store.close().await;

    // Ceiling again, on the same sink, after the daemons stopped; the better of
    // the two is the reference, so background work at either moment (PostgreSQL's
    // autovacuum after a million updates, another tenant) does not flatter us.
    let ceiling_after =
        ceiling::bare_client(&ceiling_url, ceiling_count, CONCURRENCY, ceiling_body()).await;
    let ceiling = ceiling_before.max(ceiling_after);

    let (delivered, unique, drain, mut lateness) = {
        let record = sink.record.lock().expect("sink record");
        let drain = match (record.first, record.last) {
            (Some(first), Some(last)) => last.duration_since(first),
            _ => Duration::ZERO,
        };
        (sink.pushes.load(Ordering::Relaxed), record.keys.len(), drain, record.lateness_ms.clone())
    };
    lateness.sort_unstable();
    let drain_rate = if drain.is_zero() { 0.0 } else { delivered as f64 / drain.as_secs_f64() };
    // A planned-ahead burst starts at its due instant; the others at the start.
    let e2e = match args.scenario {
        Scenario::Burst => {
            total.saturating_sub((first_due - started_utc).to_std().unwrap_or_default())
        }
        _ => total,
    };
    let e2e_rate = delivered as f64 / e2e.as_secs_f64();
    report.info(
        "delivered",
        format!(
            "{delivered}/{n} pushes ({unique} distinct, {} duplicates)",
            delivered - unique as u64
        ),
    );
    let rate_target = match args.backend {
        Backend::Sqlite => 25_000.0,
        Backend::Postgres => 30_000.0,
    };
    if matches!(args.scenario, Scenario::Burst | Scenario::Cold) {
        report.check(
            "drain rate (first → last push)",
            format!("{drain_rate:.0}/s = {:.2} × ceiling", drain_rate / ceiling),
            delivered == n as u64 && drain_rate >= rate_target,
            &format!("≥ {rate_target:.0}/s"),
        );
    } else {
        report.info(
            "drain rate (first → last push)",
            format!("{drain_rate:.0}/s (steady {STEADY_RATE}/s due)"),
        );
    }
    let e2e_name = match args.scenario {
        Scenario::Burst => "end to end (due instant → last)",
        _ => "end to end (daemon start → last)",
    };
    report.info(
        e2e_name,
        format!(
            "{e2e_rate:.0}/s = {:.2} × ceiling in {:.2} s",
            e2e_rate / ceiling,
            e2e.as_secs_f64()
        ),
    );
    report.info(
        "ceiling (bare hyper, same sink)",
        format!(
            "{ceiling:.0}/s, the better of {ceiling_before:.0}/s before the daemons and \
             {ceiling_after:.0}/s after ({ceiling_count} POSTs each, {CONCURRENCY} in flight)"
        ),
    );
    let (p50, p99, max) = (
        percentile(&lateness, 0.5),
        percentile(&lateness, 0.99),
        lateness.last().copied().unwrap_or(0),
    );
    let lateness_text = format!("p50 {p50} ms, p99 {p99} ms, max {max} ms");
    match args.scenario {
        Scenario::Steady => report.check(
            "fire lateness (receipt − due_at)",
            lateness_text,
            delivered == n as u64 && p99 <= 250,
            "p99 ≤ 250 ms",
        ),
        Scenario::Lumps => report.info(
            "fire lateness (receipt − due_at)",
            format!(
                "{lateness_text} ({STEADY_RATE} share each instant: p99 ≈ {STEADY_RATE} ÷ drain rate)"
            ),
        ),
        Scenario::Burst => report.info(
            "fire lateness (receipt − due_at)",
            format!("{lateness_text} (all due at one instant)"),
        ),
        Scenario::Cold => report.info(
            "fire lateness (receipt − due_at)",
            format!(
                "{lateness_text} (all due {:.1} s before the daemon started)",
                (started_utc - first_due).num_milliseconds() as f64 / 1000.0
            ),
        ),
    }
    let mut peak_text = String::new();
    for (replica, bytes) in peak.iter().enumerate() {
        let _ = write!(peak_text, "{}{}", if replica > 0 { ", " } else { "" }, mb(*bytes));
    }
    let worst = peak.iter().copied().max().unwrap_or(0);
    report.check(
        "peak RSS per daemon (VmHWM)",
        peak_text,
        worst > 0 && worst <= 300 * 1_048_576,
        "≤ 300 MB",
    );
    report.info(
        "database size",
        format!("{} ({:.0} bytes per member)", mb(db_size), db_size as f64 / n as f64),
    );
    Ok(())
}

/// The last lines of each daemon's log, for an error message.
fn tail_logs(dir: &Path, replicas: usize, message: &str) -> String {
    let mut text = message.to_string();
    for replica in 0..replicas {
        let log =
            std::fs::read_to_string(dir.join(format!("daemon-{replica}.log"))).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let _ = write!(text, "\n--- daemon-{replica}.log (last lines)");
        for line in &lines[lines.len().saturating_sub(15)..] {
            let _ = write!(text, "\n{line}");
        }
    }
    text
}
