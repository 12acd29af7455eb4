//! Channel pauses: what the dispatcher does when a channel fails as a whole.
//!
//! An account-level error ([`Error::is_account_level`](super::Error::is_account_level):
//! WeChat's IP allow-list, a wrong AppSecret, a token refused right after a refresh,
//! an API the account may not call; a webhook answering 401 or 403) says nothing
//! about the push that met it, so the push goes back to pending uncharged
//! ([`Outcome::Released`]) and the channel is paused: the claimer leaves its rows
//! in the ledger, except one probe row once the probe is due. Probes follow an
//! exponential backoff on the dispatcher's clock ([`PROBE_FIRST`] doubling up to
//! [`PROBE_MAX`]); the first push the channel delivers resumes it. Each change of
//! state is logged once and shown by the `almanac_channel_paused{channel}` gauge.
//!
//! The state is this process's own: each replica pauses, probes and resumes on
//! what its own sends meet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

use crate::metrics::Metrics;
use crate::store::Outcome;

/// The delay before the first probe of a paused channel.
pub const PROBE_FIRST: Duration = Duration::seconds(1);

/// The longest delay between two probes of a paused channel.
pub const PROBE_MAX: Duration = Duration::minutes(5);

/// What the dispatcher may do with a row of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The channel is not paused: send.
    Send,
    /// The channel is paused and this row is its probe: send it and report.
    Probe,
    /// The channel is paused: hand the row back to pending unsent.
    Hold,
}

#[derive(Debug, Clone)]
struct Paused {
    since: DateTime<Utc>,
    reason: String,
    /// Failed attempts since the pause (the one that paused it included).
    failures: u32,
    next_probe: DateTime<Utc>,
    probing: bool,
}

/// The paused channels of one dispatcher.
#[derive(Debug)]
pub struct Pauses {
    paused: Mutex<HashMap<String, Paused>>,
    metrics: Arc<Metrics>,
}

/// The delay before the probe that follows `failures` failed attempts.
fn probe_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    let delay = PROBE_FIRST * (1_i32 << exponent);
    delay.min(PROBE_MAX)
}

impl Pauses {
    /// No channel paused.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { paused: Mutex::default(), metrics }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Paused>> {
        self.paused.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `channel` is paused.
    pub fn is_paused(&self, channel: &str) -> bool {
        self.lock().contains_key(channel)
    }

    /// The channels whose rows a claim at `now` must leave in the ledger: every
    /// paused channel, except one whose probe is due and not yet under way.
    pub fn excluded(&self, now: DateTime<Utc>) -> Vec<String> {
        let paused = self.lock();
        let mut channels: Vec<String> = paused
            .iter()
            .filter(|(_, state)| state.probing || now < state.next_probe)
            .map(|(channel, _)| channel.clone())
            .collect();
        channels.sort();
        channels
    }

    /// What to do at `now` with a claimed row of `channel`: send it, send it as
    /// the channel's probe (at most one at a time, once the probe is due), or
    /// hold it (hand it back unsent).
    pub fn admit(&self, channel: &str, now: DateTime<Utc>) -> Admit {
        let mut paused = self.lock();
        match paused.get_mut(channel) {
            None => Admit::Send,
            Some(state) if !state.probing && state.next_probe <= now => {
                state.probing = true;
                Admit::Probe
            }
            Some(_) => Admit::Hold,
        }
    }

    /// Takes note of the outcome of a row sent as `admitted` at `now`: an
    /// account-level failure ([`Outcome::Released`]) pauses the channel, or, for
    /// a probe, puts the next probe further off; a delivered push resumes it;
    /// any other outcome of a probe leaves it paused, probing again after the
    /// same delay.
    pub fn observe(&self, channel: &str, admitted: Admit, outcome: &Outcome, now: DateTime<Utc>) {
        let mut paused = self.lock();
        match (outcome, paused.get_mut(channel)) {
            (Outcome::Released { reason, .. }, None) => {
                tracing::warn!(
                    channel,
                    reason,
                    next_probe_in_ms = PROBE_FIRST.num_milliseconds(),
                    "Channel paused: it refuses every push (account-level error); its pushes \
                     stay pending and one probe at a time checks it."
                );
                self.metrics.channel_paused.with_label_values(&[channel]).set(1);
                self.metrics.channel_pauses.with_label_values(&[channel, reason]).inc();
                paused.insert(
                    channel.to_owned(),
                    Paused {
                        since: now,
                        reason: reason.clone(),
                        failures: 1,
                        next_probe: now + probe_delay(1),
                        probing: false,
                    },
                );
            }
            (Outcome::Released { reason, .. }, Some(state)) if admitted == Admit::Probe => {
                state.failures = state.failures.saturating_add(1);
                state.next_probe = now + probe_delay(state.failures);
                state.probing = false;
                state.reason.clone_from(reason);
                tracing::debug!(channel, reason, failures = state.failures, "Probe failed.");
            }
            (Outcome::Sent { .. }, Some(state)) => {
                tracing::info!(
                    channel,
                    reason = state.reason,
                    paused_for_s = (now - state.since).num_seconds(),
                    probes_failed = state.failures - 1,
                    "Channel resumed: a push went through; its pending pushes go out again."
                );
                self.metrics.channel_paused.with_label_values(&[channel]).set(0);
                paused.remove(channel);
            }
            (_, Some(state)) if admitted == Admit::Probe => {
                state.next_probe = now + probe_delay(state.failures);
                state.probing = false;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn released() -> Outcome {
        Outcome::Released { id: 1, reason: "wechat_40164".into() }
    }

    fn sent(at: DateTime<Utc>) -> Outcome {
        Outcome::Sent { id: 1, at, provider_id: None }
    }

    fn gauge(metrics: &Metrics) -> i64 {
        metrics.channel_paused.with_label_values(&["wx"]).get()
    }

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let delays: Vec<i64> = (1..=11).map(|n| probe_delay(n).num_seconds()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(probe_delay(u32::MAX), PROBE_MAX);
    }

    #[test]
    fn an_account_level_error_pauses_probes_with_backoff_and_a_delivery_resumes() {
        let clock = ManualClock::new("2027-01-01T00:00:00Z".parse().unwrap());
        let metrics = Arc::new(Metrics::new());
        let pauses = Pauses::new(metrics.clone());
        assert_eq!(pauses.admit("wx", clock.now()), Admit::Send);
        assert!(pauses.excluded(clock.now()).is_empty());

        // Two rows in flight meet the error: one pause, counted once.
        pauses.observe("wx", Admit::Send, &released(), clock.now());
        pauses.observe("wx", Admit::Send, &released(), clock.now());
        assert!(pauses.is_paused("wx"));
        assert_eq!(gauge(&metrics), 1);
        assert_eq!(metrics.channel_pauses.with_label_values(&["wx", "wechat_40164"]).get(), 1);
        assert_eq!(pauses.excluded(clock.now()), ["wx"]);
        assert_eq!(pauses.admit("wx", clock.now()), Admit::Hold);
        assert_eq!(pauses.admit("other", clock.now()), Admit::Send);

        // Probes at +1 s, then 2 s, 4 s after each failure.
        let mut probed_at = Vec::new();
        for _ in 0..3 {
            while pauses.excluded(clock.now()) == ["wx"] {
                clock.advance(Duration::milliseconds(250));
            }
            probed_at.push(clock.now());
            assert_eq!(pauses.admit("wx", clock.now()), Admit::Probe);
            assert_eq!(pauses.admit("wx", clock.now()), Admit::Hold, "one probe at a time");
            assert_eq!(pauses.excluded(clock.now()), ["wx"], "probe under way");
            pauses.observe("wx", Admit::Probe, &released(), clock.now());
        }
        let start: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
        let offsets: Vec<i64> = probed_at.iter().map(|at| (*at - start).num_seconds()).collect();
        assert_eq!(offsets, [1, 3, 7]);
        assert_eq!(gauge(&metrics), 1);

        // A probe that meets a push's own error (a timeout) neither resumes nor
        // backs off further.
        clock.advance(Duration::seconds(8));
        assert_eq!(pauses.admit("wx", clock.now()), Admit::Probe);
        let retry = Outcome::Retry { id: 1, at: clock.now(), error: "timeout".into() };
        pauses.observe("wx", Admit::Probe, &retry, clock.now());
        assert!(pauses.is_paused("wx"));
        clock.advance(Duration::seconds(7));
        assert_eq!(pauses.admit("wx", clock.now()), Admit::Hold);
        clock.advance(Duration::seconds(1));
        assert_eq!(pauses.admit("wx", clock.now()), Admit::Probe);

        pauses.observe("wx", Admit::Probe, &sent(clock.now()), clock.now());
        assert!(!pauses.is_paused("wx"));
        assert_eq!(gauge(&metrics), 0);
        assert_eq!(pauses.admit("wx", clock.now()), Admit::Send);
        assert!(pauses.excluded(clock.now()).is_empty());

        // Paused again later: backoff starts over at one second.
        pauses.observe("wx", Admit::Send, &released(), clock.now());
        assert_eq!(metrics.channel_pauses.with_label_values(&["wx", "wechat_40164"]).get(), 2);
        clock.advance(Duration::seconds(1));
        assert_eq!(pauses.admit("wx", clock.now()), Admit::Probe);
    }
}
