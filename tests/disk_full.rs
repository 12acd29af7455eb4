//! A real full disk under the real daemon: the SQLite ledger on a small tmpfs
//! that a ballast file fills to the last byte. Every write fails with ENOSPC;
//! `/readyz` answers 503 with the reason; once the ballast is deleted the daemon
//! recovers by itself (no pooled connection is left inside a transaction), 200
//! again, and the push planned late still goes out.
//!
//! Mounting a tmpfs needs root (as CI runs); elsewhere the test says
//! `skipped: cannot mount a tmpfs` and passes.

#[path = "daemon/support.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::Daemon;

const CAMPAIGN: &str = r#"id = "daily"
name = "Daily"
channel = "log"
default_lang = "zh-Hans"

[timing]
trigger = "cron"
cron = "0 10 * * *"

[[message]]
lang = "zh-Hans"
text = "早上好，{{ name }}"
"#;

/// A tmpfs mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|error| error.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Writes a file until the file system is full; returns its path and size.
fn fill(dir: &Path) -> (PathBuf, u64) {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(error) if error.raw_os_error() == Some(28) => break,
            Err(error) => panic!("filling the tmpfs: {error}"),
        }
    }
    // A last partial block, byte by byte.
    while let Ok(1) = file.write(&[0]) {
        written += 1;
    }
    let _ = file.sync_all();
    (path, written)
}

#[test]
fn a_full_disk_makes_readyz_503_and_the_daemon_recovers_when_space_is_back() {
    let tmpfs = match Tmpfs::mount("8m") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs ({why}); this test needs root");
            return;
        }
    };
    // 10:00 in Harbin is 02:00Z: planned at start, due twelve real seconds later
    // at 10x, when the disk is full.
    let config = format!(
        r#"database = "sqlite:{}/almanac.db"
campaigns_dir = "campaigns"
members_file = "members.jsonl"
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[planner]
tick = "1s"
horizon = "1h"

[channels.log]
type = "log"

[demo]
start = 2027-03-01T01:58:00Z
speed = 10.0
"#,
        tmpfs.path().display()
    );
    let members: String = (1..=20)
        .map(|i| format!("{{\"external_id\":\"m{i}\",\"name\":\"会员{i}\",\"city\":\"Harbin\"}}\n"))
        .collect();
    let mut daemon = Daemon::start(&config, &[("daily.toml", CAMPAIGN)], &members);
    let (ballast, size) = fill(tmpfs.path());
    assert!(size > 0, "the tmpfs had room for the ballast");

    let mut body = String::new();
    daemon.poll("/readyz 503 while the disk is full", Duration::from_secs(60), |d| {
        let (status, text) = d.http("GET", "/readyz", &[], "");
        body = text;
        status == 503
    });
    assert!(body.contains("failing since"), "{body}");
    assert!(body.contains("database or disk is full"), "the reason says why: {body}");
    daemon.drain_notifications();

    std::fs::remove_file(&ballast).unwrap();
    daemon.poll("/readyz 200 once space is back", Duration::from_secs(60), |d| {
        d.http("GET", "/readyz", &[], "").0 == 200
    });
    daemon.drain_notifications();
    let sent = "almanac_pushes_total{campaign=\"daily\",channel=\"log\",outcome=\"sent\"}";
    daemon.poll("every member's push sent", Duration::from_secs(60), |d| d.metric(sent) >= 20.0);
    assert_eq!(daemon.metric(sent), 20.0, "each push once");
    daemon.drain_notifications();
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success(), "{}", daemon.log());
}
