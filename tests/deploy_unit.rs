//! The shipped unit (`deploy/almanac.service`) and the shipped configuration
//! (`deploy/almanac.toml`) start together. The test reads the unit's `[Service]`
//! section and does what systemd would: a credentials directory holding every
//! `LoadCredential=` the unit declares, the `StateDirectory=` as working directory,
//! each `ExecStartPre=` (must succeed), then `ExecStart=` with a `NOTIFY_SOCKET`
//! until READY=1, then each `ExecReload=` (with `$MAINPID`) until the daemon is
//! ready again, then SIGTERM. The files live under a temporary root: `/etc/almanac`
//! and `/var/lib/almanac` in the unit and in the configuration map below it, as an
//! operator would point the configuration at other directories; the listen port
//! is a free one.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

/// The `[Service]` settings the test acts on, in order.
#[derive(Debug, Default)]
struct Service {
    exec_start_pre: Vec<String>,
    exec_start: String,
    exec_reload: Vec<String>,
    /// `(id, path)` of each `LoadCredential=`.
    credentials: Vec<(String, String)>,
    state_directory: String,
}

fn service(unit: &str) -> Service {
    let mut service = Service::default();
    let mut section = "";
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[Service]" || line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("bad unit line {line}"));
        let value = value.to_owned();
        match key {
            "ExecStartPre" => service.exec_start_pre.push(value),
            "ExecStart" => service.exec_start = value,
            "ExecReload" => service.exec_reload.push(value),
            "StateDirectory" => service.state_directory = value,
            "LoadCredential" => {
                let (id, path) = value.split_once(':').expect("LoadCredential=ID:PATH");
                service.credentials.push((id.to_owned(), path.to_owned()));
            }
            _ => {}
        }
    }
    service
}

/// The unit's and the configuration's absolute paths, below `root`.
struct Root(PathBuf);

impl Root {
    fn map(&self, text: &str) -> String {
        let root = self.0.display().to_string();
        text.replace("/etc/almanac", &format!("{root}/etc/almanac"))
            .replace("/var/lib/almanac", &format!("{root}/var/lib/almanac"))
    }

    /// A command line of the unit: the almanac binary is the one built here.
    fn command(&self, line: &str) -> Command {
        let mut words = line.split_whitespace().map(|word| self.map(word));
        let program = words.next().expect("a command");
        let program = if program.ends_with("/almanac") {
            env!("CARGO_BIN_EXE_almanac").into()
        } else {
            program
        };
        let mut command = Command::new(program);
        command.args(words);
        command
    }
}

#[test]
fn every_secret_the_shipped_config_names_is_a_credential_of_the_unit() {
    let unit = service(&std::fs::read_to_string(deploy("almanac.service")).unwrap());
    let declared: Vec<&str> = unit.credentials.iter().map(|(id, _)| id.as_str()).collect();
    let config = std::fs::read_to_string(deploy("almanac.toml")).unwrap();
    // Every credential name, in active lines and in commented-out examples alike.
    let named: Vec<&str> = config
        .lines()
        .map(|line| line.trim_start_matches(['#', ' ']))
        .filter(|line| {
            line.starts_with("secret_file =")
                || line.starts_with("admin_token_credential =")
                || line.starts_with("token_credential =")
        })
        .filter_map(|line| line.split('"').nth(1))
        .collect();
    assert!(named.len() >= 4, "{named:?}");
    for name in named {
        assert!(declared.contains(&name), "the unit does not load credential {name}: {declared:?}");
    }
}

/// `deploy/almanac.toml` with its commented `[channels.<name>]` examples
/// uncommented, as an operator enables them.
fn with_channel_examples(config: &str) -> String {
    let mut out = String::new();
    let mut in_example = false;
    for line in config.lines() {
        if line.starts_with("# [channels.") {
            in_example = true;
        } else if line.is_empty() {
            in_example = false;
        }
        out.push_str(if in_example { line.trim_start_matches("# ") } else { line });
        out.push('\n');
    }
    out
}

#[test]
fn the_commented_channel_examples_pass_check_with_the_unit_credentials() {
    let unit = service(&std::fs::read_to_string(deploy("almanac.service")).unwrap());
    let config = with_channel_examples(&std::fs::read_to_string(deploy("almanac.toml")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let root = Root(dir.path().join("root"));
    std::fs::create_dir_all(root.0.join("etc/almanac/campaigns")).unwrap();
    std::fs::write(root.0.join("etc/almanac/almanac.toml"), root.map(&config)).unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    for (id, _) in &unit.credentials {
        std::fs::write(credentials.join(id), format!("test-{id}\n")).unwrap();
    }
    let check = |credentials: &Path| {
        let mut command = root.command(&unit.exec_start_pre[0]);
        command.env("CREDENTIALS_DIRECTORY", credentials).env("NO_COLOR", "1");
        let output = command.output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.code(), text)
    };
    let (code, text) = check(&credentials);
    assert_eq!(code, Some(0), "{text}");
    let loaded = almanac::config::Config::load(&root.0.join("etc/almanac/almanac.toml")).unwrap();
    assert_eq!(
        loaded.channels.keys().map(String::as_str).collect::<Vec<_>>(),
        ["crm-hook", "log", "wechat-main"]
    );
    // Without the channel secrets, the check (ExecStartPre=) refuses to start.
    std::fs::remove_file(credentials.join("crm-hook-secret")).unwrap();
    let (code, text) = check(&credentials);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cannot read secret_file") && text.contains("crm-hook-secret"), "{text}");
}

#[test]
fn the_shipped_unit_starts_the_shipped_config_and_reloads() {
    let unit_text = std::fs::read_to_string(deploy("almanac.service")).unwrap();
    let unit = service(&unit_text);
    let dir = tempfile::tempdir().unwrap();
    let root = Root(dir.path().join("root"));

    // What the package installs, and the state directory systemd creates.
    let etc = root.0.join("etc/almanac");
    std::fs::create_dir_all(etc.join("campaigns")).unwrap();
    let state = root.0.join("var/lib").join(&unit.state_directory);
    std::fs::create_dir_all(&state).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = std::fs::read_to_string(deploy("almanac.toml")).unwrap();
    assert!(config.contains("listen = \"127.0.0.1:9464\""));
    let config = root.map(&config).replace("127.0.0.1:9464", &format!("127.0.0.1:{port}"));
    std::fs::write(etc.join("almanac.toml"), config).unwrap();

    // The credentials systemd would copy in, one file per LoadCredential= id.
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    for (id, _) in &unit.credentials {
        std::fs::write(credentials.join(id), format!("test-{id}\n")).unwrap();
    }
    let socket_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&socket_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let systemd = |mut command: Command| {
        command
            .current_dir(&state)
            .env("CREDENTIALS_DIRECTORY", &credentials)
            .env_remove("ALMANAC_ADMIN_TOKEN")
            .env_remove("ALMANAC_WECHAT_CALLBACK_TOKEN")
            .env_remove("NOTIFY_SOCKET")
            .env("NO_COLOR", "1");
        command
    };

    assert!(!unit.exec_start_pre.is_empty(), "the unit checks before it starts");
    for line in &unit.exec_start_pre {
        let output = systemd(root.command(line)).output().unwrap();
        assert!(
            output.status.success(),
            "ExecStartPre={line} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let log = dir.path().join("daemon.log");
    let mut start = systemd(root.command(&unit.exec_start));
    start
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut daemon = Daemon { child: start.spawn().unwrap(), notify, log };
    daemon.wait_for("READY=1");
    let pid = daemon.child.id().to_string();

    // `systemctl reload`: every ExecReload= in order, each must succeed.
    for line in &unit.exec_reload {
        let output = systemd(root.command(&line.replace("$MAINPID", &pid))).output().unwrap();
        assert!(
            output.status.success(),
            "ExecReload={line} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    daemon.wait_for("RELOADING=1");
    daemon.wait_for("READY=1");
    assert!(daemon.log().contains("Campaigns reloaded."), "{}", daemon.log());

    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}:\n{}", daemon.log());
}

/// The daemon started as `ExecStart=`, with its notification socket.
struct Daemon {
    child: Child,
    notify: UnixDatagram,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (60 s at most) for a notification containing `needle`.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buffer = [0u8; 4096];
        while Instant::now() < deadline {
            match self.notify.recv(&mut buffer) {
                Ok(n) if String::from_utf8_lossy(&buffer[..n]).contains(needle) => return,
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if let Some(status) = self.child.try_wait().unwrap() {
                        panic!("the daemon exited ({status}) before {needle}:\n{}", self.log());
                    }
                }
                Err(error) => panic!("notify socket: {error}"),
            }
        }
        panic!("no {needle} within 60 s:\n{}", self.log());
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
