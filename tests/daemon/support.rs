//! Test support for end-to-end daemon tests: spawns the real `almanac run` in a
//! temporary directory with its own `NOTIFY_SOCKET`, talks HTTP to it over plain
//! TCP, signals it with `kill`, and runs a slow webhook sink.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "test-admin-token-5f2c";
pub const CALLBACK_TOKEN: &str = "testtoken";

/// Makes `JOURNAL_STREAM` of the metadata of the daemon's stderr file.
type JournalStream = dyn FnOnce(&std::fs::Metadata) -> String;

/// A running daemon.
pub struct Daemon {
    child: Child,
    notify: UnixDatagram,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// Every notification received so far.
    pub notifications: Vec<String>,
}

impl Daemon {
    /// Writes `config` (TOML), the campaign files and the member file into a fresh
    /// directory, starts the daemon there and waits for READY=1.
    pub fn start(config: &str, campaigns: &[(&str, &str)], members: &str) -> Daemon {
        Self::start_with_nofile(config, campaigns, members, None)
    }

    /// [`Daemon::start`] with the daemon's open-file limit set first: `(soft,
    /// hard)`, `None` for a limit left as inherited (systemd's default for a unit
    /// without `LimitNOFILE=` is a soft 1024 below a higher hard limit).
    pub fn start_with_nofile(
        config: &str,
        campaigns: &[(&str, &str)],
        members: &str,
        nofile: Option<(u64, Option<u64>)>,
    ) -> Daemon {
        Self::spawn(config, campaigns, members, nofile, None)
    }

    /// [`Daemon::start`] with `JOURNAL_STREAM` set to what `journal_stream` makes of
    /// the metadata of the file the daemon's stderr goes to (systemd sets
    /// `device:inode` of the stream it connected).
    pub fn start_with_journal_stream(
        config: &str,
        campaigns: &[(&str, &str)],
        members: &str,
        journal_stream: impl FnOnce(&std::fs::Metadata) -> String + 'static,
    ) -> Daemon {
        Self::spawn(config, campaigns, members, None, Some(Box::new(journal_stream)))
    }

    fn spawn(
        config: &str,
        campaigns: &[(&str, &str)],
        members: &str,
        nofile: Option<(u64, Option<u64>)>,
        journal_stream: Option<Box<JournalStream>>,
    ) -> Daemon {
        let ulimit = match nofile {
            None => String::new(),
            Some((soft, None)) => format!("ulimit -Sn {soft} && "),
            Some((soft, Some(hard))) => format!("ulimit -Sn {soft} && ulimit -Hn {hard} && "),
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("campaigns")).unwrap();
        for (name, text) in campaigns {
            std::fs::write(dir.path().join("campaigns").join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("members.jsonl"), members).unwrap();
        std::fs::write(dir.path().join("almanac.toml"), config).unwrap();
        let socket_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&socket_path).unwrap();
        notify.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let mut command = Command::new("sh");
        command.env_remove("JOURNAL_STREAM");
        if let Some(stream) = journal_stream {
            command.env("JOURNAL_STREAM", stream(&stderr.metadata().unwrap()));
        }
        // systemd passes WATCHDOG_PID with the service's own pid: `exec` keeps the
        // shell's pid, so `$$` is the daemon's.
        let child = command
            .args(["-c", &format!("{ulimit}WATCHDOG_PID=$$ exec \"$0\" run --config almanac.toml")])
            .arg(env!("CARGO_BIN_EXE_almanac"))
            .current_dir(dir.path())
            .env("NOTIFY_SOCKET", &socket_path)
            .env("ALMANAC_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("ALMANAC_WECHAT_CALLBACK_TOKEN", CALLBACK_TOKEN)
            .env("RUST_LOG", "info")
            .env_remove("CREDENTIALS_DIRECTORY")
            // As systemd sets it for WatchdogSec=1s: pings every half second.
            .env("WATCHDOG_USEC", "1000000")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            child,
            notify,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            notifications: Vec::new(),
        };
        let ready = daemon.wait_notification("READY=1", Duration::from_secs(120));
        let status = ready
            .lines()
            .find_map(|line| line.strip_prefix("STATUS="))
            .unwrap_or_else(|| panic!("READY=1 came without STATUS=: {ready:?}"));
        let addr = status
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("STATUS= does not say where it listens: {status:?}"));
        daemon.addr = addr.parse().unwrap();
        daemon
    }

    /// Waits for a notification containing `needle`; panics with the log after
    /// `timeout`.
    pub fn wait_notification(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut buffer = [0u8; 4096];
        while Instant::now() < deadline {
            match self.notify.recv(&mut buffer) {
                Ok(n) => {
                    let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    self.notifications.push(message.clone());
                    if message.contains(needle) {
                        return message;
                    }
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if let Some(status) = self.child.try_wait().unwrap() {
                        panic!("daemon exited ({status}) before {needle}:\n{}", self.log());
                    }
                }
                Err(error) => panic!("notify socket: {error}"),
            }
        }
        panic!("no {needle} within {timeout:?}; got {:?}\n{}", self.notifications, self.log());
    }

    /// Collects the notifications already queued on the socket.
    pub fn drain_notifications(&mut self) {
        let mut buffer = [0u8; 4096];
        self.notify.set_nonblocking(true).unwrap();
        while let Ok(n) = self.notify.recv(&mut buffer) {
            self.notifications.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
        }
        self.notify.set_nonblocking(false).unwrap();
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").args(["-s", name, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not exit within {timeout:?}:\n{}", self.log());
    }

    /// One HTTP request; returns (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        http(self.addr, method, path, headers, body)
    }

    /// GET with the admin token.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.http("GET", path, &[("Authorization", &auth)], "")
    }

    /// The value of one sample in `/metrics` (0 when absent).
    pub fn metric(&self, sample: &str) -> f64 {
        let (status, body) = self.http("GET", "/metrics", &[], "");
        assert_eq!(status, 200);
        body.lines()
            .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    /// Polls `condition` until it holds; panics with the log after `timeout`.
    pub fn poll(&self, what: &str, timeout: Duration, mut condition: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if condition(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: not within {timeout:?}\n{}", self.log());
    }

    /// Path of a file in the daemon's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces a campaign file atomically (write elsewhere, rename in).
    pub fn write_campaign(&self, name: &str, text: &str) {
        let staging = self.path(&format!(".{name}.tmp"));
        std::fs::write(&staging, text).unwrap();
        std::fs::rename(&staging, self.path("campaigns").join(name)).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP/1.1 client (Connection: close).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status: u16 = status_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut chunked = false;
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body).unwrap();
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A webhook receiver that takes `delay` to answer each push (200), recording each
/// `Idempotency-Key` it acknowledged.
pub struct Sink {
    pub addr: SocketAddr,
    pub acknowledged: Arc<Mutex<Vec<String>>>,
}

impl Sink {
    pub fn start(delay: Duration) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let keys = acknowledged.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let keys = keys.clone();
                std::thread::spawn(move || serve_sink(stream, delay, &keys));
            }
        });
        Sink { addr, acknowledged }
    }

    pub fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }
}

fn serve_sink(stream: TcpStream, delay: Duration, keys: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let (mut length, mut key) = (0usize, None);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "idempotency-key" => key = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        std::thread::sleep(delay);
        // Recorded before answering, so the test never reads the ledger between
        // the daemon seeing the 200 and this list growing.
        if let Some(key) = key {
            keys.lock().unwrap().push(key);
        }
        let response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// `promtool check metrics` on an exposition; `None` when promtool is absent.
pub fn promtool_check_metrics(exposition: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(_) => {
            eprintln!(
                "\n!!! skipped: promtool is not installed here (.ci/run installs it, so CI runs \
                 this check) !!!\n"
            );
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), text))
}

/// Reads the repository file `path`.
pub fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}
