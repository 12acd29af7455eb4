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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_line_per_push() {
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let channel = LogChannel::with_writer(buffer.clone());
        let due = DateTime::parse_from_rfc3339("2027-09-14T02:00:00Z").unwrap().to_utc();
        let send = ClaimedSend {
            id: 1,
            campaign_id: "autumn".into(),
            occurrence: "2027-09-14".into(),
            member_id: 9,
            external_id: "crm-9".into(),
            openid: None,
            last_interaction_at: None,
            due_at: due,
            not_before: due,
            channel: "log".into(),
            lang: "zh-Hans".into(),
            variant: "A".into(),
            text: "记得保湿".into(),
            attempts: 0,
        };
        channel.send(&send, due).unwrap();
        channel.send(&send, due).unwrap();
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["member"], "crm-9");
        assert_eq!(line["text"], "记得保湿");
        assert_eq!(line["idempotency_key"], "autumn:2027-09-14:9");
    }
}
