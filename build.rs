//! Rebuilds when the embedded SQL migrations change (`sqlx::migrate!` embeds them),
//! and sets `ALMANAC_GIT_REVISION` (the `revision` of `almanac_build_info` and of
//! the HTTP index page): the variable itself when set (a packager building from a
//! tarball), else `git rev-parse --short HEAD`, else `unknown`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=ALMANAC_GIT_REVISION");
    let revision = std::env::var("ALMANAC_GIT_REVISION")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ALMANAC_GIT_REVISION={}", revision.trim());
    // A new commit moves HEAD or the branch it names (loose or packed).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]).map(PathBuf::from)
            && path.exists()
        {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// One line of git's output, or `None` without git or outside a repository.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.trim();
    (output.status.success() && !line.is_empty()).then(|| line.to_owned())
}
