//! The shell completions (bash, zsh, fish) and man pages the Debian package
//! installs, under `deploy/completions/` and `deploy/man/`, are generated from the
//! clap definitions (clap_complete, clap_mangen) and must match them: this test
//! regenerates them and fails on any difference. After changing the command line,
//! run `ALMANAC_WRITE_ASSETS=1 cargo nextest run --test cli_assets` and commit the
//! result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use almanac::cli::Cli;
use clap::CommandFactory as _;
use clap_complete::Shell;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every generated file, by its path under `deploy/`.
fn generated() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (shell, name) in
        [(Shell::Bash, "almanac.bash"), (Shell::Zsh, "_almanac"), (Shell::Fish, "almanac.fish")]
    {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "almanac", &mut text);
        files.insert(format!("completions/{name}"), text);
    }
    let dir = tempfile::tempdir().unwrap();
    clap_mangen::generate_to(Cli::command(), dir.path()).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.insert(format!("man/{name}"), std::fs::read(&path).unwrap());
    }
    files
}

fn committed() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in ["completions", "man"] {
        let Ok(entries) = std::fs::read_dir(deploy().join(dir)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(format!("{dir}/{name}"), std::fs::read(&path).unwrap());
        }
    }
    files
}

#[test]
fn completions_and_man_pages_match_the_command_line() {
    let generated = generated();
    if std::env::var_os("ALMANAC_WRITE_ASSETS").is_some() {
        for dir in ["completions", "man"] {
            let _ = std::fs::remove_dir_all(deploy().join(dir));
            std::fs::create_dir_all(deploy().join(dir)).unwrap();
        }
        for (name, text) in &generated {
            std::fs::write(deploy().join(name), text).unwrap();
        }
    }
    let committed = committed();
    let stale: Vec<&String> = generated
        .keys()
        .chain(committed.keys())
        .filter(|name| generated.get(*name) != committed.get(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "deploy/ differs from the command line in {stale:?}: run \
         `ALMANAC_WRITE_ASSETS=1 cargo nextest run --test cli_assets` and commit deploy/"
    );
    // Each subcommand has its page, and the hidden parts of clap do not leak.
    for page in ["man/almanac.1", "man/almanac-run.1", "man/almanac-check.1"] {
        assert!(generated.contains_key(page), "{page}");
    }
    let bash = String::from_utf8_lossy(&generated["completions/almanac.bash"]);
    assert!(bash.contains("complete -F _almanac"), "{bash}");
    assert!(bash.contains("--config"), "{bash}");
}
