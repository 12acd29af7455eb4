//! The `log` channel: one JSON line per push on stdout (or a writer the caller
//! gives). The embedded default, for demos and dry runs. It never fails a push
//! unless the writer does.

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::{Error, Result};
use crate::store::ClaimedSend;

/// Where log lines go.
pub type Sink = Arc<Mutex<dyn Write + Send>>;

/// Writes each push as a JSON line.
#[derive(Clone)]
pub struct LogChannel {
    out: Sink,
}

impl std::fmt::Debug for LogChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogChannel").finish_non_exhaustive()
    }
}

impl Default for LogChannel {
    fn default() -> Self {
        Self::stdout()
    }
}

impl LogChannel {
    /// A channel writing to stdout.
    pub fn stdout() -> Self {
        Self { out: Arc::new(Mutex::new(std::io::stdout())) }
    }

    /// A channel writing to `out` (tests).
    pub fn with_writer(out: Sink) -> Self {
        Self { out }
    }

    /// Writes one line for `send`.
    pub fn send(&self, send: &ClaimedSend, now: DateTime<Utc>) -> Result<()> {
        let line = serde_json::json!({
            "channel": send.channel,
            "campaign": send.campaign_id,
            "occurrence": send.occurrence,
            "member": send.external_id,
            "openid": send.openid,
            "lang": send.lang,
            "variant": send.variant,
            "text": send.text,
            "due_at": send.due_at,
            "sent_at": now,
            "idempotency_key": send.idempotency_key(),
        });
        let mut out = self.out.lock().map_err(|_| Error::Connect("log writer poisoned".into()))?;
        writeln!(out, "{line}").map_err(|error| Error::Connect(error.to_string()))?;
        out.flush().map_err(|error| Error::Connect(error.to_string()))
    }
}
