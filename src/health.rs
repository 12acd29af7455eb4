//! The daemon's own health beyond reaching the store: failures it keeps running
//! through but must not hide. The planner reports each tick (and each campaign
//! the engine could not plan), the dispatcher each claim of due pushes and each
//! commit of outcomes; `/readyz` answers 503 with every current problem, and the first
//! success clears a problem again.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// A failure that is still going on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failing {
    since: DateTime<Utc>,
    times: u64,
    error: String,
}

#[derive(Debug, Default)]
struct State {
    planning: Option<Failing>,
    claiming: Option<Failing>,
    recording: Option<Failing>,
    /// Campaign id → why the engine could not plan it on the last pass.
    campaigns: BTreeMap<String, String>,
}

/// Shared by the planner, the dispatcher and `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
}

impl Health {
    /// A new, healthy state.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// A planner tick failed (the store, or the planner itself).
    pub fn planning_failed(&self, now: DateTime<Utc>, error: &str) {
        self.with(|state| record(&mut state.planning, now, error));
    }

    /// A planner tick completed.
    pub fn planning_ok(&self) {
        self.with(|state| state.planning = None);
    }

    /// The campaigns the engine could not plan on the last planning pass (empty:
    /// every campaign planned).
    pub fn campaigns_failed(&self, failures: BTreeMap<String, String>) {
        self.with(|state| state.campaigns = failures);
    }

    /// Claiming due pushes failed (a full disk, the store refusing writes): nothing
    /// is sent meanwhile.
    pub fn claiming_failed(&self, now: DateTime<Utc>, error: &str) {
        self.with(|state| record(&mut state.claiming, now, error));
    }

    /// A claim of due pushes went through.
    pub fn claiming_ok(&self) {
        self.with(|state| state.claiming = None);
    }

    /// Committing outcomes failed (it is retried).
    pub fn recording_failed(&self, now: DateTime<Utc>, error: &str) {
        self.with(|state| record(&mut state.recording, now, error));
    }

    /// Outcomes were committed.
    pub fn recording_ok(&self) {
        self.with(|state| state.recording = None);
    }

    /// Every current problem, one line each (empty: healthy).
    pub fn problems(&self) -> Vec<String> {
        self.with(|state| {
            let mut problems = Vec::new();
            if let Some(failing) = &state.planning {
                problems.push(describe("planning", failing));
            }
            if let Some(failing) = &state.claiming {
                problems.push(describe("claiming due pushes", failing));
            }
            if let Some(failing) = &state.recording {
                problems.push(describe("recording outcomes", failing));
            }
            for (campaign, error) in &state.campaigns {
                problems.push(format!("campaign {campaign} cannot be planned: {error}"));
            }
            problems
        })
    }
}

/// What a caught panic said (its `&str` or `String` payload), for a report.
pub fn panic_reason(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

fn record(slot: &mut Option<Failing>, now: DateTime<Utc>, error: &str) {
    match slot {
        Some(failing) => {
            failing.times += 1;
            error.clone_into(&mut failing.error);
        }
        None => *slot = Some(Failing { since: now, times: 1, error: error.to_owned() }),
    }
}

fn describe(what: &str, failing: &Failing) -> String {
    format!(
        "{what} failing since {} ({} time(s)): {}",
        failing.since.format("%Y-%m-%d %H:%M:%S UTC"),
        failing.times,
        failing.error
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_come_and_go() {
        let health = Health::new();
        let now = DateTime::UNIX_EPOCH;
        assert!(health.problems().is_empty());
        health.planning_failed(now, "database is locked");
        health.planning_failed(now, "database is locked");
        health.campaigns_failed(BTreeMap::from([("c1".into(), "overflow".into())]));
        let problems = health.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("planning failing") && problems[0].contains("2 time(s)"));
        assert!(problems[1].contains("campaign c1") && problems[1].contains("overflow"));
        health.planning_ok();
        health.campaigns_failed(BTreeMap::new());
        assert!(health.problems().is_empty());
        health.recording_failed(now, "disk full");
        assert!(health.problems()[0].starts_with("recording outcomes failing"));
        health.recording_ok();
        assert!(health.problems().is_empty());
        health.claiming_failed(now, "database or disk is full");
        assert!(health.problems()[0].starts_with("claiming due pushes failing"));
        health.claiming_ok();
        assert!(health.problems().is_empty());
    }
}
