//! Memory at scale of configuration: N generated campaign files (default 1,000,
//! the shapes of `campaigns/*.toml`: seven in ten climate triggers on either
//! metric and direction, the rest cron, `once` and `near`; four to six language
//! variants each, one A/B pair), measured two ways.
//!
//! * **In process**: the files are loaded as the daemon loads them
//!   (`daemon::load_campaigns`, then `daemon::check_against`, which compiles an
//!   engine), compiled once more as the planner does, and planned for the bundled
//!   sample members from 2027-08-01 in three-day windows (the demo's horizon) for
//!   `--days` (default 365; 0 skips planning). Prints
//!   the process's `VmHWM` (peak resident) after each phase and the growth over
//!   the baseline (bundled data and members loaded) per campaign.
//! * **The daemon**: `almanac run --demo` (each `--daemon BINARY`, default the one
//!   `cargo bench` builds) on the same files, the bundled sample members and a
//!   fresh SQLite ledger; `VmHWM` and `VmRSS` of the process when it reports ready
//!   and after `--run-secs` of demo time (150,000× real time: 60 s is about 104
//!   virtual days of planning and sending). Several binaries run one after the
//!   other on the same files, so a before/after ratio comes from one run.
//!
//! ```text
//! cargo bench --bench campaigns -- [--campaigns N] [--days D] [--run-secs S]
//!                                  [--daemon BINARY]... [--no-daemon]
//! ```
//!
//! The target: 1,000 campaigns keep the daemon under 300 MB (docs/performance.md).

/// The daemon's allocator, so the in-process figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use almanac::config::Config;
use almanac::geo::{Geo, LocationHints};
use almanac::members::Member;
use almanac::timing::{Engine, EngineConfig, History, Recipient};
use chrono::{TimeZone, Utc};

const TARGET_MB: f64 = 300.0;

#[derive(Debug)]
struct Args {
    campaigns: usize,
    run_secs: u64,
    days: i64,
    daemons: Vec<PathBuf>,
    no_daemon: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args =
        Args { campaigns: 1000, run_secs: 60, days: 365, daemons: Vec::new(), no_daemon: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--campaigns" => {
                args.campaigns = value("--campaigns")?.parse().map_err(|e| format!("{e}"))?;
            }
            "--run-secs" => {
                args.run_secs = value("--run-secs")?.parse().map_err(|e| format!("{e}"))?;
            }
            "--days" => args.days = value("--days")?.parse().map_err(|e| format!("{e}"))?,
            "--daemon" => args.daemons.push(PathBuf::from(value("--daemon")?)),
            "--no-daemon" => args.no_daemon = true,
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.daemons.is_empty() {
        args.daemons.push(PathBuf::from(env!("CARGO_BIN_EXE_almanac")));
    }
    Ok(args)
}

// ---------------------------------------------------------------------------
// Campaign files

const VARIANTS: &[(&str, &str)] = &[
    ("yue-Hant", "{{ name }}，{{ city_zh }}天氣轉乾，記得保濕。"),
    ("yue-Hans", "{{ name }}，{{ city_zh }}天气转干，记得保湿。"),
    ("cmn-Hans", "{{ name }}，{{ city_zh }}天气转凉变干，记得保湿。"),
    ("wuu-Hans", "{{ name }}，天气转凉哉，记得保湿。"),
    ("en", "{{ name }}, the weather in {{ city }} is turning: time to moisturize."),
];

/// Campaign `i` of the generated set: a valid file (the bench checks it loads).
fn campaign(i: usize) -> String {
    let mut text = format!(
        "id = \"scale-{i:05}\"\nname = \"Scale {i}\"\nchannel = \"log\"\ndefault_lang = \"zh-Hans\"\n\
         priority = {}\n\n[audience]\n",
        i % 7
    );
    if i.is_multiple_of(3) {
        text.push_str("countries = [\"CN\", \"HK\"]\n");
    }
    text.push_str(["tags_any = [\"skincare\"]\n", "tags_any = [\"makeup\"]\n", ""][i % 3]);
    let timing = match i % 10 {
        0..=6 => {
            let (metric, threshold) = if i.is_multiple_of(2) {
                ("mean_temp_c", 5 + (i % 20))
            } else {
                ("rel_humidity_pct", 40 + (i % 40))
            };
            format!(
                "trigger = \"climate\"\nmetric = \"{metric}\"\ncrosses = \"{}\"\nthreshold = {threshold}.0\n\
                 after = \"{:02}-01\"\nlocal_time = \"10:00\"\nwindow = \"7d\"\n\
                 quiet_hours = {{ start = \"22:00\", end = \"08:00\" }}\n",
                if i % 4 < 2 { "below" } else { "above" },
                1 + i % 12,
            )
        }
        7 => format!(
            "trigger = \"cron\"\ncron = \"0 {} * * {}\"\nwindow = \"12h\"\n\
             unresolved = {{ zone = \"Asia/Shanghai\" }}\n",
            8 + i % 12,
            ["MON", "WED", "FRI", "SUN"][i % 4]
        ),
        8 => format!(
            "trigger = \"once\"\ndate = \"2027-{:02}-{:02}\"\nlocal_time = \"20:00\"\nwindow = \"4h\"\n",
            1 + i % 12,
            1 + i % 28
        ),
        _ => format!(
            "trigger = \"once\"\ndate = \"2027-{:02}-18\"\nlocal_time = \"11:00\"\nwindow = \"1d\"\n",
            1 + i % 12
        ),
    };
    if i % 10 == 9 {
        text.push_str("near = { lat = 31.2304, lon = 121.4737, radius_km = 30 }\n");
    }
    text.push_str("\n[timing]\n");
    text.push_str(&timing);
    text.push_str("\n[limits]\nper_member = 1\n");
    // 4 to 6 variants: the default (an A/B pair), then some of the others.
    text.push_str(
        "\n[[message]]\nlang = \"zh-Hans\"\nlabel = \"a\"\ntext = \"{{ name }}，天气转凉变干，记得保湿。\"\n\
         \n[[message]]\nlang = \"zh-Hans\"\nlabel = \"b\"\ntext = \"{{ name }}，换季了，记得保湿。\"\n",
    );
    for (lang, template) in VARIANTS.iter().cycle().skip(i % VARIANTS.len()).take(2 + i % 3) {
        text.push_str(&format!("\n[[message]]\nlang = \"{lang}\"\ntext = \"{template}\"\n"));
    }
    text
}

fn write_campaigns(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).expect("campaigns dir");
    for i in 0..n {
        std::fs::write(dir.join(format!("scale-{i:05}.toml")), campaign(i))
            .expect("write campaign");
    }
}

// ---------------------------------------------------------------------------
// Memory

/// `VmHWM` and `VmRSS` of a process (`self` or a pid), bytes.
fn memory(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn verdict(bytes: u64) -> &'static str {
    if mb(bytes) <= TARGET_MB { "PASS" } else { "MISS" }
}

// ---------------------------------------------------------------------------
// In process

fn in_process(campaigns_dir: &Path, n: usize, days: i64, root: &Path) {
    let geo = Geo::bundled();
    let members: Vec<Member> = almanac::members::read_file(&root.join("data/sample-members.jsonl"))
        .expect("sample members")
        .filter_map(Result::ok)
        .collect();
    let places: Vec<_> = members
        .iter()
        .map(|member| {
            geo.resolve(&LocationHints {
                city: member.city.as_deref(),
                province: member.province.as_deref(),
                coordinates: member.lat.zip(member.lon),
                phone: member.phone.as_deref(),
                ip: member.ip.as_deref(),
            })
            .ok()
        })
        .collect();
    let recipients: Vec<Recipient<'_>> = members
        .iter()
        .zip(&places)
        .enumerate()
        .map(|(i, (member, place))| Recipient { member_id: i as i64 + 1, member, place: *place })
        .collect();
    let (base, _) = memory("self").expect("/proc/self/status");
    println!(
        "in process: baseline (bundled data, {} members) VmHWM {:.1} MB",
        members.len(),
        mb(base)
    );
    let report = |phase: &str, started: Instant| {
        let (hwm, rss) = memory("self").expect("/proc/self/status");
        println!(
            "  {phase:<44} VmHWM {:>7.1} MB  VmRSS {:>7.1} MB  (+{:.1} MB, {:.1} kB per campaign; {:.2} s)",
            mb(hwm),
            mb(rss),
            mb(hwm - base),
            (hwm - base) as f64 / n as f64 / 1e3,
            started.elapsed().as_secs_f64()
        );
    };

    let started = Instant::now();
    let campaigns =
        almanac::daemon::load_campaigns(campaigns_dir).expect("generated campaigns load");
    assert_eq!(campaigns.len(), n, "every generated campaign loads");
    report("load (daemon::load_campaigns)", started);
    let started = Instant::now();
    let errors = almanac::daemon::check_against(&campaigns, &Config::embedded_default(), geo);
    assert!(errors.is_empty(), "{errors:?}");
    report("check against the daemon (compiles an engine)", started);
    let started = Instant::now();
    let engine = Engine::new(&campaigns, geo, EngineConfig::default()).expect("compiles");
    report("the planner's engine", started);
    let started = Instant::now();
    let history = History::new();
    let mut from = Utc.with_ymd_and_hms(2027, 8, 1, 0, 0, 0).unwrap();
    let end = from + chrono::Duration::days(days);
    let mut sends = 0usize;
    while from < end {
        let to = from + chrono::Duration::days(3);
        sends += engine.plan(&recipients, &history, from, to).sends.len();
        from = to;
    }
    report(&format!("{days} days planned in 3-day windows ({sends} sends)"), started);
    let (hwm, _) = memory("self").expect("/proc/self/status");
    println!("  growth over the baseline: {:.1} MB for {n} campaigns", mb(hwm - base));
}

// ---------------------------------------------------------------------------
// The daemon

/// Stops the daemon (SIGTERM, then SIGKILL after 10 s) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.0.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.0.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.wait();
    }
}

fn daemon(binary: &Path, campaigns_dir: &Path, dir: &Path, root: &Path, run_secs: u64) -> bool {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let database = dir.join("demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    let config = dir.join("almanac.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"sqlite:{}\"\ncampaigns_dir = \"{}\"\nmembers_file = \"{}\"\n\
             listen = \"127.0.0.1:{port}\"\n\n[channels.log]\ntype = \"log\"\n",
            database.display(),
            campaigns_dir.display(),
            root.join("data/sample-members.jsonl").display(),
        ),
    )
    .expect("write config");
    let started = Instant::now();
    let child = Command::new(binary)
        .args(["run", "--demo", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
    let mut daemon = Daemon(child);
    let pid = daemon.0.id().to_string();
    let stderr = daemon.0.stderr.take().expect("stderr piped");
    // The log is read on a thread of its own (a full pipe would stall the daemon).
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("almanac is ready") {
                let _ = ready_tx.send(());
            }
            tail.push(line);
            if tail.len() > 20 {
                tail.remove(0);
            }
        }
        tail
    });
    if ready.recv_timeout(Duration::from_secs(120)).is_err() {
        drop(daemon);
        let tail = reader.join().unwrap_or_default();
        println!("  {}: not ready within 120 s; log tail:\n{}", binary.display(), tail.join("\n"));
        return false;
    }
    let ready_at = started.elapsed();
    let (ready_hwm, ready_rss) = memory(&pid).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(run_secs);
    let mut last = (ready_hwm, ready_rss);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        if !matches!(daemon.0.try_wait(), Ok(None)) {
            println!("  {}: exited early", binary.display());
            return false;
        }
        last = memory(&pid).unwrap_or(last);
    }
    drop(daemon);
    let _ = reader.join();
    println!("daemon {} (run --demo):", binary.display());
    println!(
        "  ready after {:.1} s:        VmHWM {:>7.1} MB  VmRSS {:>7.1} MB  {}",
        ready_at.as_secs_f64(),
        mb(ready_hwm),
        mb(ready_rss),
        verdict(ready_hwm)
    );
    println!(
        "  after {run_secs} s of demo time: VmHWM {:>7.1} MB  VmRSS {:>7.1} MB  {}",
        mb(last.0),
        mb(last.1),
        verdict(last.0)
    );
    mb(last.0) <= TARGET_MB
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("campaigns: {message}");
            return ExitCode::from(2);
        }
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    let campaigns_dir = dir.path().join("campaigns");
    write_campaigns(&campaigns_dir, args.campaigns);
    println!(
        "campaigns: {} generated files, {} climate; {} cores; {}",
        args.campaigns,
        (0..args.campaigns).filter(|i| i % 10 < 7).count(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        Utc::now().date_naive(),
    );
    in_process(&campaigns_dir, args.campaigns, args.days, &root);
    let mut pass = true;
    if !args.no_daemon {
        for binary in &args.daemons {
            pass &= daemon(binary, &campaigns_dir, dir.path(), &root, args.run_secs);
        }
    }
    if pass { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
