//! `almanac check [--config FILE] [PATH...]`: validates campaign files and reports
//! every problem of every file. With `--config` it validates the deployment as
//! `almanac run --config FILE` loads it: the configuration (every out-of-range
//! value), the secrets, member file and `[geo]` files it names, and the campaigns
//! (PATHs, else its `campaigns_dir`) against its channels, so the unit's
//! `ExecStartPre=` and `ExecReload=` refuse what the daemon would refuse. Exit 0
//! when all are valid (warnings allowed), 1 when any has an error, 2 on usage
//! errors (nonexistent path, bad flag).

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::campaign::{self, Diagnostic, Format, Severity};
use crate::config::{self, Config};
use crate::delivery::Channels;
use crate::geo::Geo;
use crate::metrics::Metrics;

/// Output format of `almanac check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Source snippets with carets (and a summary line).
    #[default]
    Human,
    /// A JSON array of diagnostics.
    Json,
    /// GitHub Actions annotations: `::error file=…,line=…,col=…::message`.
    Github,
}

/// Arguments of `almanac check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Campaign files or directories (their `*.toml` files) [default: the
    /// configuration's `campaigns_dir` with --config, else `campaigns`].
    pub paths: Vec<PathBuf>,
    /// The daemon's configuration: also check it as `almanac run --config FILE`
    /// loads it (every out-of-range value, the secrets it names, its member file and
    /// `[geo]` files) and the campaigns against its channels.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

/// Runs `almanac check`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let missing: Vec<&PathBuf> =
        args.paths.iter().chain(&args.config).filter(|p| !p.exists()).collect();
    if !missing.is_empty() {
        for path in missing {
            eprintln!("error: {}: no such file or directory", path.display());
        }
        return Ok(ExitCode::from(2));
    }
    let mut diagnostics = Vec::new();
    let mut sources = BTreeMap::new();
    let deployment = args.config.as_deref().and_then(|path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let deployment = check_config(path, &text, &mut diagnostics);
        sources.insert(path.to_path_buf(), text);
        deployment
    });
    let paths = match (&deployment, args.paths.is_empty(), &args.config) {
        (_, false, _) => args.paths.clone(),
        (Some((config, _)), true, _) => vec![config.campaigns_dir.clone()],
        // The configuration did not load: its campaigns directory is unknown.
        (None, true, Some(_)) => Vec::new(),
        (None, true, None) => vec![PathBuf::from("campaigns")],
    };
    let mut report = if paths.is_empty() {
        campaign::LoadReport::default()
    } else {
        campaign::load_paths(&paths, Some(&campaign::BundledGazetteer))
    };
    if let Some((config, geo)) = &deployment {
        report.diagnostics.extend(crate::daemon::check_against(&report.campaigns, config, geo));
    }
    diagnostics.append(&mut report.diagnostics);
    report.diagnostics = diagnostics;
    report.sources.append(&mut sources);

    let format = match args.format {
        OutputFormat::Human => Format::Human,
        OutputFormat::Json => Format::Json,
        OutputFormat::Github => Format::Github,
    };
    let mut out = if format == Format::Human {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        campaign::diagnostic::render_human(&report.diagnostics, &report.sources, color)
    } else {
        report.render(format)
    };
    if format == Format::Human {
        let files = report.sources.len();
        let errors = report.count(Severity::Error);
        let warnings = report.count(Severity::Warning);
        let failed: HashSet<&Path> = report
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.file.as_path())
            .collect();
        let valid =
            report.campaigns.iter().filter(|c| !failed.contains(c.source.path.as_path())).count();
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        out.push_str(&format!(
            "checked {}: {}, {}; {} valid\n",
            plural(files, "file"),
            plural(errors, "error"),
            plural(warnings, "warning"),
            plural(valid, "campaign"),
        ));
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(if report.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Checks the configuration at `path` (text `text`) as the daemon loads it at
/// start, adding a diagnostic for every problem. Returns the configuration and its
/// place data when they load, for checking the campaigns against them.
fn check_config(
    path: &Path,
    text: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<(Config, &'static Geo)> {
    let error = |span: Option<std::ops::Range<usize>>, line, col, message: String| match span {
        Some(span) => Diagnostic::at(Severity::Error, path, text, span, message),
        None => Diagnostic { line, col, ..Diagnostic::whole_file(Severity::Error, path, message) },
    };
    let config = match Config::parse_with_problems(text, &path.display().to_string()) {
        Ok((config, problems)) => {
            for problem in problems {
                let message = format!("{}: {}", problem.key, problem.message);
                diagnostics.push(error(problem.span, problem.line, problem.column, message));
            }
            config
        }
        Err(config::Error::Parse { line, column, span, message, .. }) => {
            diagnostics.push(error(span, line, column, message));
            return None;
        }
        Err(other) => {
            diagnostics.push(Diagnostic::whole_file(Severity::Error, path, other.to_string()));
            return None;
        }
    };
    let at = |severity, key: &[&str], message| located(path, text, severity, key, message);
    if let Some(file) = &config.members_file
        && let Err(io) = std::fs::File::open(file)
    {
        diagnostics.push(at(
            Severity::Error,
            &["members_file"],
            format!("cannot read the member file {}: {io}", file.display()),
        ));
    }
    let callback = &config.wechat_callback;
    let secrets: [(&[&str], &str, &str); 3] = [
        (&["admin_token_credential"], &config.admin_token_env, &config.admin_token_credential),
        (&["wechat_callback", "token_credential"], &callback.token_env, &callback.token_credential),
        (
            &["wechat_callback", "encoding_aes_key_credential"],
            &callback.encoding_aes_key_env,
            &callback.encoding_aes_key_credential,
        ),
    ];
    let mut secrets_read = true;
    for (key, env, credential) in secrets {
        if let Err(problem) = crate::secret::read_secret(env, credential) {
            diagnostics.push(at(Severity::Error, key, problem.to_string()));
            secrets_read = false;
        }
    }
    if secrets_read && let Err(problem) = crate::http::wechat::Callback::from_config(callback) {
        diagnostics.push(at(Severity::Error, &["wechat_callback", "mode"], problem.to_string()));
    }
    // Each channel on its own, so that every channel's problem is reported.
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
    let metrics = Arc::new(Metrics::new());
    let under_systemd = std::env::var_os("CREDENTIALS_DIRECTORY").is_some();
    for (name, channel) in &config.channels {
        if let Some(credential) = channel.credential()
            && !under_systemd
        {
            // Run by hand: the unit's credentials are not here to read.
            diagnostics.push(at(
                Severity::Warning,
                &["channels", name, "secret_file"],
                format!(
                    "channel {name:?}: secret_file {} is a systemd credential and \
                     CREDENTIALS_DIRECTORY is unset: not checked here (the unit's \
                     ExecStartPre= checks it)",
                    credential.display()
                ),
            ));
            continue;
        }
        let one = BTreeMap::from([(name.clone(), channel.clone())]);
        if let Err(problem) = Channels::from_config(&one, clock.clone(), metrics.clone()) {
            let key = ["secret_file", "secret_env", "url"]
                .into_iter()
                .find(|key| config::value_span(text, &["channels", name, key]).is_some())
                .unwrap_or("type");
            diagnostics.push(at(Severity::Error, &["channels", name, key], problem.to_string()));
        }
    }
    let geo = match crate::daemon::geo_for(&config) {
        Ok(geo) => geo,
        Err(problem) => {
            diagnostics.push(at(Severity::Error, &["geo"], format!("[geo]: {problem}")));
            Geo::bundled()
        }
    };
    if crate::secret::read_secret(&config.admin_token_env, &config.admin_token_credential)
        .is_ok_and(|token| token.is_none())
    {
        let message = if under_systemd {
            format!(
                "no admin token (credential {:?} or ${}): the admin API will answer 401",
                config.admin_token_credential, config.admin_token_env
            )
        } else {
            format!(
                "no admin token in ${} and CREDENTIALS_DIRECTORY is unset: the credential {:?} \
                 is not checked here; without a token the admin API answers 401",
                config.admin_token_env, config.admin_token_credential
            )
        };
        diagnostics.push(at(Severity::Warning, &["admin_token_credential"], message));
    }
    Some((config, geo))
}

/// A diagnostic about the configuration value at `key` (its table when the key is
/// not written in `text`).
fn located(
    path: &Path,
    text: &str,
    severity: Severity,
    key: &[&str],
    message: String,
) -> Diagnostic {
    let problem = config::locate(text, key, message);
    match problem.span {
        Some(span) => Diagnostic::at(severity, path, text, span, problem.message),
        None => Diagnostic {
            line: problem.line,
            col: problem.column,
            ..Diagnostic::whole_file(severity, path, problem.message)
        },
    }
}
