//! Local wall-clock time to UTC instants, with the engine's daylight-saving rules
//! and quiet hours.
//!
//! * A local time that falls in a daylight-saving **gap** (the clocks jump from
//!   02:00 to 03:00) fires at the first valid minute after it (03:00).
//! * A local time that occurs **twice** (the clocks fall back from 02:00 to 01:00)
//!   fires once, at the earlier instant.
//! * A local time inside quiet hours moves to their end (the same day, or the next
//!   day when the quiet hours wrap midnight and the time is in the evening part).

use chrono::{
    DateTime, Duration, LocalResult, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use crate::campaign::QuietHours;

/// The instant a local wall-clock time stands for in `tz`, and the local time it
/// actually fires at (different from `local` only inside a gap).
pub(crate) fn to_instant(tz: Tz, local: NaiveDateTime) -> (DateTime<Utc>, NaiveDateTime) {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => (at.with_timezone(&Utc), local),
        LocalResult::Ambiguous(earlier, _) => (earlier.with_timezone(&Utc), local),
        LocalResult::None => {
            // Walk forward to the first whole minute that exists; gaps are at most a
            // few hours (zones have skipped whole days, so bound the walk to 2 days).
            let mut probe = local.with_second(0).unwrap_or(local) + Duration::minutes(1);
            for _ in 0..(2 * 24 * 60) {
                match tz.from_local_datetime(&probe) {
                    LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => {
                        return (at.with_timezone(&Utc), probe);
                    }
                    LocalResult::None => probe += Duration::minutes(1),
                }
            }
            // Unreachable for real zones; fall back to the offset before the gap.
            let offset = tz.offset_from_utc_datetime(&local);
            let utc = local - Duration::seconds(i64::from(offset.fix().local_minus_utc()));
            (utc.and_utc(), local)
        }
    }
}

/// Whether `time` lies inside the quiet hours (start inclusive, end exclusive).
pub(crate) fn is_quiet(quiet: &QuietHours, time: NaiveTime) -> bool {
    if quiet.start <= quiet.end {
        quiet.start <= time && time < quiet.end
    } else {
        time >= quiet.start || time < quiet.end
    }
}

/// Moves a local time out of the quiet hours, to their end.
pub(crate) fn leave_quiet(quiet: &QuietHours, local: NaiveDateTime) -> NaiveDateTime {
    if !is_quiet(quiet, local.time()) {
        return local;
    }
    let date = if quiet.start > quiet.end && local.time() >= quiet.start {
        local.date().succ_opt().unwrap_or(local.date())
    } else {
        local.date()
    };
    date.and_time(quiet.end)
}

/// The instant and local time a nominal local time fires at in `tz`: quiet hours
/// first, then the daylight-saving rules (and quiet hours again, should a gap push
/// the time into them).
pub(crate) fn fire_at(
    tz: Tz,
    nominal: NaiveDateTime,
    quiet: Option<&QuietHours>,
) -> (DateTime<Utc>, NaiveDateTime) {
    let mut local = nominal;
    for _ in 0..4 {
        if let Some(quiet) = quiet {
            local = leave_quiet(quiet, local);
        }
        let (at, fired) = to_instant(tz, local);
        match quiet {
            Some(quiet) if is_quiet(quiet, fired.time()) && fired != local => local = fired,
            _ => return (at, fired),
        }
    }
    to_instant(tz, local)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use chrono_tz::{America::New_York, Asia::Shanghai, Europe::London};

    use super::*;

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap()
    }

    #[test]
    fn gap_fires_at_first_valid_minute_after() {
        // 2027-03-14 02:30 does not exist in New York (02:00 -> 03:00).
        let (at, fired) = to_instant(New_York, local(2027, 3, 14, 2, 30));
        assert_eq!(fired, local(2027, 3, 14, 3, 0));
        assert_eq!(at.to_rfc3339(), "2027-03-14T07:00:00+00:00");
    }

    #[test]
    fn repeated_hour_fires_at_the_earlier_instant() {
        // 2027-10-31 01:30 happens twice in London (BST then GMT).
        let (at, fired) = to_instant(London, local(2027, 10, 31, 1, 30));
        assert_eq!(fired, local(2027, 10, 31, 1, 30));
        assert_eq!(at.to_rfc3339(), "2027-10-31T00:30:00+00:00");
    }

    #[test]
    fn quiet_hours_wrapping_midnight_move_to_their_end() {
        let quiet = QuietHours {
            start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
        };
        assert_eq!(leave_quiet(&quiet, local(2027, 9, 1, 23, 15)), local(2027, 9, 2, 8, 0));
        assert_eq!(leave_quiet(&quiet, local(2027, 9, 1, 3, 0)), local(2027, 9, 1, 8, 0));
        assert_eq!(leave_quiet(&quiet, local(2027, 9, 1, 10, 0)), local(2027, 9, 1, 10, 0));
        let (at, fired) = fire_at(Shanghai, local(2027, 9, 1, 23, 15), Some(&quiet));
        assert_eq!(fired, local(2027, 9, 2, 8, 0));
        assert_eq!(at.to_rfc3339(), "2027-09-02T00:00:00+00:00");
    }
}
