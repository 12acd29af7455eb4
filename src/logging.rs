//! Log output on stderr: plain lines (no timestamps when not on a terminal:
//! journald stamps them) or JSON. Under journald, when `JOURNAL_STREAM` names the
//! very stream stderr is (its `device:inode`, as systemd documents), every line
//! starts with its syslog priority, `<3>` ERROR, `<4>` WARN, `<6>` INFO, `<7>`
//! DEBUG and TRACE, which journald parses (`SyslogLevelPrefix=yes`, the default)
//! so that `journalctl -p warning` finds warnings and errors. Elsewhere lines are
//! unchanged.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Installs the global subscriber (`RUST_LOG`, else info with the scheduler's and
/// sqlx's chatter at warn).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,tokio_cron_scheduler=warn,sqlx=warn")
    });
    let journal = stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json if journal => builder.json().map_event_format(Prefixed).init(),
        LogFormat::Json => builder.json().init(),
        // journald stamps every line itself.
        LogFormat::Plain if journal => builder
            .with_target(false)
            .with_ansi(false)
            .without_time()
            .map_event_format(Prefixed)
            .init(),
        LogFormat::Plain if std::io::stderr().is_terminal() => builder.with_target(false).init(),
        LogFormat::Plain => builder.with_target(false).with_ansi(false).without_time().init(),
    }
}

/// Whether `journal_stream` (the value of `JOURNAL_STREAM`) is `device:inode` of
/// this process's stderr.
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((device, inode)) = journal_stream.and_then(parse_journal_stream) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(metadata) => metadata.dev() == device && metadata.ino() == inode,
        Err(_) => false,
    }
}

/// `device:inode`, both decimal.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.trim().split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

/// The syslog priority journald reads from a `<N>` line prefix.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// An event format that puts the event's `<N>` priority before each of its lines
/// (a multi-line message keeps its priority on every line).
struct Prefixed<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut text = String::new();
        self.0.format_event(ctx, Writer::new(&mut text), event)?;
        let priority = priority(*event.metadata().level());
        for line in text.split_inclusive('\n') {
            write!(writer, "<{priority}>{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8:12345\n"), Some((8, 12345)));
        for bad in ["", "8", ":1", "8:", "a:1", "8:1:2"] {
            assert_eq!(parse_journal_stream(bad), None, "{bad:?}");
        }
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("not a stream")));
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(
            [Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE].map(priority),
            [3, 4, 6, 7, 7]
        );
    }
}
