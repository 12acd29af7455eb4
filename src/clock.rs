//! Time sources. No module reads the wall clock directly: the daemon passes a
//! [`SystemClock`] (or, for the demo, a [`ScaledClock`] that runs faster than real
//! time), and tests and `almanac simulate` pass a [`ManualClock`].

use std::sync::Mutex;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};

/// A source of the current instant, and the mapping from this clock's durations
/// to real waiting time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant on this clock.
    fn now(&self) -> DateTime<Utc>;
    /// How long to really wait for `delay` to pass on this clock.
    fn real_delay(&self, delay: Duration) -> StdDuration;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn real_delay(&self, delay: Duration) -> StdDuration {
        delay.to_std().unwrap_or_default()
    }
}

/// A clock that only moves when told to (tests, `simulate`).
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }
    /// Moves the clock to `to` (never backwards).
    pub fn set(&self, to: DateTime<Utc>) {
        let mut now = self.0.lock().expect("clock lock");
        if to > *now {
            *now = to;
        }
    }
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().expect("clock lock");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
    fn real_delay(&self, _delay: Duration) -> StdDuration {
        StdDuration::ZERO
    }
}

/// A clock that starts at a chosen virtual instant and runs `speed` times faster
/// than real time (the demo: a season in a couple of minutes).
#[derive(Debug)]
pub struct ScaledClock {
    real_start: DateTime<Utc>,
    virtual_start: DateTime<Utc>,
    speed: f64,
    real: Box<dyn RealNow>,
}

/// Where a [`ScaledClock`] reads real time from (the system clock in the daemon).
pub trait RealNow: Send + Sync + std::fmt::Debug + 'static {
    /// The real current instant.
    fn real_now(&self) -> DateTime<Utc>;
}

impl RealNow for SystemClock {
    fn real_now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

impl ScaledClock {
    /// A clock that reads `virtual_start` now and runs `speed` times real time.
    pub fn new(real: impl RealNow, virtual_start: DateTime<Utc>, speed: f64) -> Self {
        let real_start = real.real_now();
        Self { real_start, virtual_start, speed: speed.max(1.0), real: Box::new(real) }
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.real.real_now() - self.real_start;
        let scaled_ms = (elapsed.num_milliseconds() as f64 * self.speed) as i64;
        self.virtual_start + Duration::milliseconds(scaled_ms)
    }
    fn real_delay(&self, delay: Duration) -> StdDuration {
        let ms = (delay.num_milliseconds().max(0) as f64 / self.speed) as u64;
        StdDuration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct FixedReal(Mutex<DateTime<Utc>>);
    impl RealNow for std::sync::Arc<FixedReal> {
        fn real_now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    #[test]
    fn scaled_clock_runs_faster_than_real_time() {
        let t0 = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap().to_utc();
        let real = std::sync::Arc::new(FixedReal(Mutex::new(t0)));
        let virt = DateTime::parse_from_rfc3339("2027-08-01T00:00:00Z").unwrap().to_utc();
        let clock = ScaledClock::new(real.clone(), virt, 3600.0);
        assert_eq!(clock.now(), virt);
        *real.0.lock().unwrap() = t0 + Duration::seconds(2);
        assert_eq!(clock.now(), virt + Duration::hours(2));
        assert_eq!(clock.real_delay(Duration::hours(1)), StdDuration::from_secs(1));
    }

    #[test]
    fn manual_clock_never_goes_backwards() {
        let t0 = DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z").unwrap().to_utc();
        let clock = ManualClock::new(t0);
        clock.set(t0 - Duration::hours(1));
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::minutes(5));
        assert_eq!(clock.now(), t0 + Duration::minutes(5));
    }
}
