//! Properties of the timing engine over real zones (New York, London, Sydney,
//! Shanghai): local times as requested except in daylight-saving gaps, nothing
//! twice in a repeated hour, quiet hours never violated, per-member and global caps
//! never exceeded; holdout and A/B shares over 100k members, stable across runs.

use std::collections::{BTreeMap, HashMap};

use almanac::campaign::{
    Audience, Campaign, Limits, Message, Purpose, QuietHours, SourceInfo, Timing, Trigger,
    Unresolved,
};
use almanac::geo::Geo;
use almanac::members::Member;
use almanac::timing::{DueSend, Engine, EngineConfig, GlobalCap, History, Recipient, SkipReason};
use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

const ZONES: [Tz; 4] = [
    chrono_tz::America::New_York,
    chrono_tz::Europe::London,
    chrono_tz::Australia::Sydney,
    chrono_tz::Asia::Shanghai,
];

fn campaign(id: &str, trigger: Trigger, tz: Tz) -> Campaign {
    Campaign {
        id: id.to_string(),
        name: id.to_string(),
        enabled: true,
        starts: None,
        ends: None,
        channel: "log".to_string(),
        purpose: Purpose::Service,
        priority: 0,
        audience: Audience::default(),
        timing: Timing {
            trigger,
            window: Duration::zero(),
            catch_up: Duration::zero(),
            spread: None,
            quiet_hours: None,
            unresolved: Unresolved::FallbackZone(tz),
        },
        limits: Limits::default(),
        messages: vec![Message {
            lang: "en".to_string(),
            text: "Hello {{ name }}, {{ local_date }}".to_string(),
            weight: 1,
            label: "0".to_string(),
        }],
        default_lang: "en".to_string(),
        source: SourceInfo::default(),
    }
}

fn member(index: usize) -> Member {
    Member {
        external_id: format!("m-{index:06}"),
        name: Some(format!("Member {index}")),
        ..Member::default()
    }
}

fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc()
}

fn cron_daily(minute: u32, hour: u32) -> Trigger {
    Trigger::Cron { expr: format!("{minute} {hour} * * *") }
}

/// Plans `[from, to)` one day at a time, feeding every send back into the history.
fn replay(
    engine: &Engine<'_>,
    recipients: &[Recipient<'_>],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> (Vec<DueSend>, Vec<SkipReason>) {
    let mut history = History::new();
    let mut sends = Vec::new();
    let mut skips = Vec::new();
    let mut now = from;
    while now < to {
        let batch = engine.plan(recipients, &history, now, now + Duration::days(1));
        for send in batch.sends {
            history.record(&send);
            sends.push(send);
        }
        skips.extend(batch.skips.into_iter().map(|s| s.reason));
        now += Duration::days(1);
    }
    (sends, skips)
}

/// The local time a nominal wall-clock time fires at, by the documented rule.
fn expected_local(tz: Tz, nominal: NaiveDateTime) -> NaiveDateTime {
    let mut probe = nominal;
    loop {
        match tz.from_local_datetime(&probe) {
            LocalResult::None => probe += Duration::minutes(1),
            _ => return probe,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn cron_fires_at_the_local_time_asked_except_in_gaps(
        zone in 0usize..4, hour in 0u32..24, minute in 0u32..60,
    ) {
        let tz = ZONES[zone];
        let geo = Geo::bundled();
        let campaigns = [campaign("daily", cron_daily(minute, hour), tz)];
        let engine = Engine::new(&campaigns, geo, EngineConfig::default()).unwrap();
        let members = [member(1)];
        let recipients = [Recipient { member_id: 1, member: &members[0], place: None }];
        let (from, to) = (utc(2027, 1, 1), utc(2028, 1, 1));
        let batch = engine.plan(&recipients, &History::new(), from, to);
        let mut per_day: BTreeMap<NaiveDate, usize> = BTreeMap::new();
        for send in &batch.sends {
            prop_assert_eq!(send.tz, tz);
            // The instant and the local time agree.
            prop_assert_eq!(send.due_at.with_timezone(&tz).naive_local(), send.local);
            let nominal: NaiveDateTime = send.occurrence.parse::<NaiveDateTime>()
                .or_else(|_| NaiveDateTime::parse_from_str(&send.occurrence, "%Y-%m-%dT%H:%M"))
                .unwrap();
            prop_assert_eq!(nominal.time(), NaiveTime::from_hms_opt(hour, minute, 0).unwrap());
            prop_assert_eq!(send.local, expected_local(tz, nominal));
            // A repeated hour fires at the earlier instant.
            if let LocalResult::Ambiguous(earlier, _) = tz.from_local_datetime(&nominal) {
                prop_assert_eq!(send.due_at, earlier.with_timezone(&Utc));
            }
            *per_day.entry(nominal.date()).or_default() += 1;
        }
        // Exactly once per local day that lies inside the window.
        prop_assert!(per_day.values().all(|n| *n == 1));
        let days = batch.sends.len() as i64;
        prop_assert!((364..=366).contains(&days), "{} occurrences", days);
    }

    #[test]
    fn sub_hourly_cron_never_fires_twice_in_a_repeated_hour(zone in 0usize..4, step in 1u32..30) {
        let tz = ZONES[zone];
        let geo = Geo::bundled();
        let trigger = Trigger::Cron { expr: format!("*/{step} * * * *") };
        let campaigns = [campaign("often", trigger, tz)];
        let engine = Engine::new(&campaigns, geo, EngineConfig::default()).unwrap();
        let members = [member(1)];
        let recipients = [Recipient { member_id: 1, member: &members[0], place: None }];
        // Windows around each zone's 2027 transitions.
        for (from, to) in [
            (utc(2027, 3, 13), utc(2027, 3, 16)),
            (utc(2027, 3, 27), utc(2027, 4, 5)),
            (utc(2027, 10, 1), utc(2027, 10, 5)),
            (utc(2027, 10, 30), utc(2027, 11, 9)),
        ] {
            let batch = engine.plan(&recipients, &History::new(), from, to);
            let mut locals: HashMap<NaiveDateTime, usize> = HashMap::new();
            let mut instants: HashMap<DateTime<Utc>, usize> = HashMap::new();
            for send in &batch.sends {
                *locals.entry(send.local).or_default() += 1;
                *instants.entry(send.due_at).or_default() += 1;
            }
            prop_assert!(locals.values().all(|n| *n == 1), "a local time fired twice");
            prop_assert!(instants.values().all(|n| *n == 1), "an instant fired twice");
        }
    }

    #[test]
    fn quiet_hours_are_never_violated(
        zone in 0usize..4,
        hours in 1u32..6,
        minute in 0u32..60,
        quiet_start in 0u32..24,
        quiet_len in 1u32..12,
    ) {
        let tz = ZONES[zone];
        let geo = Geo::bundled();
        let quiet = QuietHours {
            start: NaiveTime::from_hms_opt(quiet_start, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt((quiet_start + quiet_len) % 24, 30, 0).unwrap(),
        };
        let mut campaign =
            campaign("quiet", Trigger::Cron { expr: format!("{minute} */{hours} * * *") }, tz);
        campaign.timing.quiet_hours = Some(quiet);
        let engine = Engine::new(&[campaign], geo, EngineConfig::default()).unwrap();
        let members = [member(1)];
        let recipients = [Recipient { member_id: 1, member: &members[0], place: None }];
        let batch = engine.plan(&recipients, &History::new(), utc(2027, 3, 1), utc(2027, 4, 15));
        let in_quiet = |t: NaiveTime| if quiet.start <= quiet.end {
            quiet.start <= t && t < quiet.end
        } else {
            t >= quiet.start || t < quiet.end
        };
        prop_assert!(!batch.sends.is_empty());
        for send in &batch.sends {
            prop_assert!(!in_quiet(send.local.time()), "{} is in quiet hours", send.local);
            let nominal = NaiveDateTime::parse_from_str(&send.occurrence, "%Y-%m-%dT%H:%M").unwrap();
            // Either on time (or gap-shifted), or moved to the end of the quiet hours.
            prop_assert!(
                send.local == expected_local(tz, nominal)
                    || send.local.time() == quiet.end
                    || in_quiet(nominal.time()),
                "{} fired at {}", nominal, send.local
            );
            prop_assert!(send.local >= nominal);
        }
        // Nothing dropped silently: every local day has at least one push.
        let days: std::collections::BTreeSet<NaiveDate> =
            batch.sends.iter().map(|s| s.local.date()).collect();
        prop_assert!(days.len() >= 40, "only {} days", days.len());
    }

    #[test]
    fn per_member_and_global_caps_are_never_exceeded(
        zone in 0usize..4,
        caps in proptest::collection::vec((1u32..4, -2i32..3, 0u32..24), 2..4),
        global_max in 1u32..4,
        global_days in 1i64..10,
    ) {
        let tz = ZONES[zone];
        let geo = Geo::bundled();
        let campaigns: Vec<Campaign> = caps
            .iter()
            .enumerate()
            .map(|(index, (per_member, priority, hour))| {
                let mut c = campaign(&format!("c{index}"), cron_daily(0, *hour), tz);
                c.limits.per_member = Some(*per_member);
                c.priority = *priority;
                c
            })
            .collect();
        let cap = GlobalCap { max: global_max, per: Duration::days(global_days) };
        let engine = Engine::new(&campaigns, geo, EngineConfig { global_cap: Some(cap) }).unwrap();
        let members: Vec<Member> = (0..3).map(member).collect();
        let recipients: Vec<Recipient<'_>> = members
            .iter()
            .enumerate()
            .map(|(i, m)| Recipient { member_id: i as i64, member: m, place: None })
            .collect();
        let (sends, skips) = replay(&engine, &recipients, utc(2027, 3, 1), utc(2027, 4, 20));
        for member_id in 0..3i64 {
            let mine: Vec<&DueSend> = sends.iter().filter(|s| s.member_id == member_id).collect();
            for (index, (per_member, _, _)) in caps.iter().enumerate() {
                let id = format!("c{index}");
                let n = mine.iter().filter(|s| *s.campaign_id == *id).count();
                prop_assert!(n as u32 <= *per_member, "{} sent {} > {}", id, n, per_member);
            }
            let mut times: Vec<DateTime<Utc>> = mine.iter().map(|s| s.due_at).collect();
            times.sort();
            for (i, start) in times.iter().enumerate() {
                let in_period = times[i..].iter().filter(|t| **t < *start + cap.per).count();
                prop_assert!(in_period as u32 <= global_max, "{} pushes within {:?}", in_period, cap.per);
            }
            prop_assert!(!mine.is_empty());
        }
        let total_cap: u32 = caps.iter().map(|c| c.0).sum();
        if total_cap > global_max {
            prop_assert!(skips.contains(&SkipReason::GlobalCap) || skips.contains(&SkipReason::PerMemberCap));
        }
    }
}

#[test]
fn global_cap_keeps_the_higher_priority_campaign() {
    let tz = chrono_tz::Asia::Shanghai;
    let geo = Geo::bundled();
    let mut low = campaign("low", cron_daily(0, 9), tz);
    low.priority = 1;
    let mut high = campaign("high", cron_daily(0, 20), tz);
    high.priority = 5;
    let cap = GlobalCap { max: 1, per: Duration::days(1) };
    let engine = Engine::new(&[low, high], geo, EngineConfig { global_cap: Some(cap) }).unwrap();
    let members = [member(1)];
    let recipients = [Recipient { member_id: 1, member: &members[0], place: None }];
    let batch = engine.plan(&recipients, &History::new(), utc(2027, 5, 1), utc(2027, 5, 2));
    let campaigns: Vec<&str> = batch.sends.iter().map(|s| &*s.campaign_id).collect();
    assert_eq!(campaigns, ["high"]);
    assert_eq!(batch.skips.len(), 1);
    assert_eq!(batch.skips[0].reason, SkipReason::GlobalCap);
    assert_eq!(batch.skips[0].reason.as_str(), "global_cap");
}

#[test]
fn unresolved_members_are_skipped_and_counted_never_sent() {
    let geo = Geo::bundled();
    let mut c = campaign("skip-unresolved", cron_daily(0, 10), chrono_tz::UTC);
    c.timing.unresolved = Unresolved::Skip;
    let engine = Engine::new(&[c], geo, EngineConfig::default()).unwrap();
    let members = [member(1), member(2)];
    let recipients: Vec<Recipient<'_>> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Recipient { member_id: i as i64, member: m, place: None })
        .collect();
    let batch = engine.plan(&recipients, &History::new(), utc(2027, 5, 1), utc(2027, 5, 8));
    assert!(batch.sends.is_empty());
    assert_eq!(batch.skips.len(), 2);
    assert!(batch.skips.iter().all(|s| s.reason == SkipReason::Unresolved));
}

#[test]
fn once_trigger_respects_bounds_and_history() {
    let tz = chrono_tz::Europe::London;
    let geo = Geo::bundled();
    let at = NaiveDate::from_ymd_opt(2027, 6, 1).unwrap().and_hms_opt(9, 0, 0).unwrap();
    let c = campaign("launch", Trigger::Once { at }, tz);
    let engine = Engine::new(std::slice::from_ref(&c), geo, EngineConfig::default()).unwrap();
    let members = [member(1)];
    let recipients = [Recipient { member_id: 1, member: &members[0], place: None }];
    let batch = engine.plan(&recipients, &History::new(), utc(2027, 6, 1), utc(2027, 6, 2));
    assert_eq!(batch.sends.len(), 1);
    let send = &batch.sends[0];
    assert_eq!(send.due_at.to_rfc3339(), "2027-06-01T08:00:00+00:00");
    assert_eq!(&*send.occurrence, "once");
    assert_eq!(send.text, "Hello Member 1, 2027-06-01");
    let mut history = History::new();
    history.record(send);
    let again = engine.plan(&recipients, &history, utc(2027, 6, 1), utc(2027, 6, 2));
    assert!(again.sends.is_empty(), "an occurrence already recorded is not planned again");
    let mut ended = c.clone();
    ended.ends = Some(almanac::campaign::Bound::Local(at));
    let engine = Engine::new(&[ended], geo, EngineConfig::default()).unwrap();
    let batch = engine.plan(&recipients, &History::new(), utc(2027, 6, 1), utc(2027, 6, 2));
    assert!(batch.sends.is_empty(), "ends is exclusive, in the member's zone");
}

#[test]
fn strict_templates_skip_members_missing_a_field() {
    let geo = Geo::bundled();
    let c = campaign("named", cron_daily(0, 10), chrono_tz::UTC);
    let engine = Engine::new(&[c], geo, EngineConfig::default()).unwrap();
    let nameless = Member { external_id: "m-x".to_string(), ..Member::default() };
    let recipients = [Recipient { member_id: 7, member: &nameless, place: None }];
    let batch = engine.plan(&recipients, &History::new(), utc(2027, 5, 1), utc(2027, 5, 2));
    assert!(batch.sends.is_empty());
    assert_eq!(batch.skips.len(), 1);
    assert_eq!(batch.skips[0].reason, SkipReason::RenderFailed);
}

#[test]
fn holdout_and_ab_shares_match_the_configuration_and_are_stable() {
    let geo = Geo::bundled();
    let at = NaiveDate::from_ymd_opt(2027, 6, 1).unwrap().and_hms_opt(9, 0, 0).unwrap();
    let mut c = campaign("experiment", Trigger::Once { at }, chrono_tz::Asia::Shanghai);
    c.audience.holdout = 0.05;
    c.messages = vec![
        Message { lang: "en".into(), text: "A {{ name }}".into(), weight: 1, label: "a".into() },
        Message { lang: "en".into(), text: "B {{ name }}".into(), weight: 3, label: "b".into() },
    ];
    let members: Vec<Member> = (0..100_000).map(member).collect();
    let recipients: Vec<Recipient<'_>> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Recipient { member_id: i as i64, member: m, place: None })
        .collect();
    let run = || {
        let engine = Engine::new(std::slice::from_ref(&c), geo, EngineConfig::default()).unwrap();
        engine.plan(&recipients, &History::new(), utc(2027, 5, 31), utc(2027, 6, 2)).sends
    };
    let first = run();
    assert_eq!(first.len(), members.len());
    let holdout = first.iter().filter(|s| s.holdout).count() as f64 / first.len() as f64;
    assert!((holdout - 0.05).abs() < 0.01, "holdout share {holdout}");
    let b = first.iter().filter(|s| s.variant == 1).count() as f64 / first.len() as f64;
    assert!((b - 0.75).abs() < 0.01, "variant b share {b}");
    assert!(first.iter().all(|s| s.text.starts_with(if s.variant == 1 { "B " } else { "A " })));
    let second = run();
    assert_eq!(first, second, "assignment must be identical across runs");
}

/// `spread` gives each member an instant of its own in `[due, due + spread)`:
/// even over the spread, the same instant on every plan, and never inside quiet
/// hours (a share that lands in them moves to their end).
#[test]
fn spread_spreads_members_evenly_stably_and_outside_quiet_hours() {
    let geo = Geo::bundled();
    let tz = chrono_tz::Asia::Shanghai;
    let at = NaiveDate::from_ymd_opt(2027, 6, 1).unwrap().and_hms_opt(21, 50, 0).unwrap();
    let mut c = campaign("spread", Trigger::Once { at }, tz);
    c.timing.window = Duration::hours(12);
    c.timing.spread = Some(Duration::minutes(20));
    let members: Vec<Member> = (0..20_000).map(member).collect();
    let recipients: Vec<Recipient<'_>> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Recipient { member_id: i as i64, member: m, place: None })
        .collect();
    let due = tz.from_local_datetime(&at).unwrap().with_timezone(&Utc);
    let plan = |c: &Campaign| {
        let engine = Engine::new(std::slice::from_ref(c), geo, EngineConfig::default()).unwrap();
        engine.plan(&recipients, &History::new(), utc(2027, 5, 31), utc(2027, 6, 3)).sends
    };

    // Without quiet hours: twenty one-minute buckets, each near a twentieth.
    let sends = plan(&c);
    assert_eq!(sends.len(), members.len());
    let mut buckets = [0usize; 20];
    for send in &sends {
        let offset = send.due_at - due;
        assert!(offset >= Duration::zero() && offset < Duration::minutes(20), "{offset}");
        buckets[offset.num_minutes() as usize] += 1;
        assert_eq!(send.local, at, "the local time names the occurrence, not the member's share");
    }
    assert!(buckets.iter().all(|n| (800..1200).contains(n)), "uneven: {buckets:?}");
    let distinct: std::collections::HashSet<_> = sends.iter().map(|s| s.due_at).collect();
    assert!(distinct.len() > 19_900, "only {} distinct instants", distinct.len());
    assert_eq!(plan(&c), sends, "each member keeps its instant across plans");

    // Quiet from 22:00: the half of the spread after 21:59:59 moves to 08:00.
    c.timing.quiet_hours = Some(QuietHours {
        start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
        end: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
    });
    let quiet = plan(&c);
    let morning = tz
        .from_local_datetime(
            &NaiveDate::from_ymd_opt(2027, 6, 2).unwrap().and_hms_opt(8, 0, 0).unwrap(),
        )
        .unwrap()
        .with_timezone(&Utc);
    let moved = quiet.iter().filter(|s| s.due_at == morning).count();
    for (before, after) in sends.iter().zip(&quiet) {
        let local = after.due_at.with_timezone(&tz).time();
        assert!(
            local < NaiveTime::from_hms_opt(22, 0, 0).unwrap()
                && local >= NaiveTime::from_hms_opt(8, 0, 0).unwrap()
        );
        if before.due_at - due < Duration::minutes(10) {
            assert_eq!(after.due_at, before.due_at);
        } else {
            assert_eq!(after.due_at, morning);
        }
    }
    assert!((9_000..11_000).contains(&moved), "{moved} moved to the morning");
}

/// `h` o'clock UTC on the day.
fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    utc(y, m, d) + Duration::hours(i64::from(h))
}

fn once(y: i32, m: u32, d: u32) -> Trigger {
    Trigger::Once { at: NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(10, 0, 0).unwrap() }
}

#[test]
fn a_late_member_gets_only_the_latest_missed_occurrence() {
    let geo = Geo::bundled();
    let mut daily = campaign("daily", cron_daily(0, 10), chrono_tz::UTC);
    daily.timing.window = Duration::days(7);
    let engine = Engine::new(&[daily], geo, EngineConfig::default()).unwrap();
    let members = [member(1)];
    let recipients = [Recipient { member_id: 1, member: &members[0], place: None }];
    // The member arrives on 2027-01-08 at noon: seven dailies are inside the
    // window, one is sent (the latest, 2027-01-08 10:00), then the next on time.
    let batch = engine.plan(&recipients, &History::new(), at(2027, 1, 8, 12), utc(2027, 1, 10));
    let due: Vec<DateTime<Utc>> = batch.sends.iter().map(|s| s.due_at).collect();
    assert_eq!(due, [at(2027, 1, 8, 10), at(2027, 1, 9, 10)]);
}

#[test]
fn nothing_that_fell_due_before_the_campaign_was_first_seen_unless_it_catches_up() {
    let geo = Geo::bundled();
    let mut weekly =
        campaign("weekly", Trigger::Cron { expr: "0 10 * * MON".into() }, chrono_tz::UTC);
    weekly.timing.window = Duration::days(7);
    let members = [member(1)];
    let recipients = [Recipient { member_id: 1, member: &members[0], place: None }];
    // First seen on Friday 2027-01-08: Monday 2027-01-04 10:00 is inside the
    // window, but fell due before the campaign was seen.
    let friday = utc(2027, 1, 8);
    let plan = |campaign: &Campaign| {
        let engine = Engine::new(std::slice::from_ref(campaign), geo, EngineConfig::default())
            .unwrap()
            .with_first_seen(|_| Some(friday));
        engine.plan(&recipients, &History::new(), friday, utc(2027, 1, 12)).sends
    };
    let sends = plan(&weekly);
    let due: Vec<DateTime<Utc>> = sends.iter().map(|s| s.due_at).collect();
    assert_eq!(due, [at(2027, 1, 11, 10)], "only the next Monday");
    // `catch_up = "4d"` asks for what fell due in the four days before.
    weekly.timing.catch_up = Duration::days(4);
    let due: Vec<DateTime<Utc>> = plan(&weekly).iter().map(|s| s.due_at).collect();
    assert_eq!(due, [at(2027, 1, 4, 10), at(2027, 1, 11, 10)]);
}

#[test]
fn the_global_cap_decides_over_its_whole_period_whatever_the_window() {
    // One push per 7 days; `promo` (priority 0) on 2027-03-01, `alert`
    // (priority 10) on 2027-03-04. Planned a day at a time, `promo` is dropped
    // when its day is planned, because `alert` needs the room three days later.
    let tz = chrono_tz::UTC;
    let geo = Geo::bundled();
    let promo = campaign("promo", once(2027, 3, 1), tz);
    let mut alert = campaign("alert", once(2027, 3, 4), tz);
    alert.priority = 10;
    let cap = GlobalCap { max: 1, per: Duration::days(7) };
    let engine = Engine::new(&[promo, alert], geo, EngineConfig { global_cap: Some(cap) }).unwrap();
    let members = [member(1)];
    let recipients = [Recipient { member_id: 1, member: &members[0], place: None }];
    let mut history = History::new();
    let mut sent = Vec::new();
    let mut capped = Vec::new();
    let mut day = utc(2027, 2, 27);
    while day < utc(2027, 3, 10) {
        let batch = engine.plan(&recipients, &history, day, day + Duration::days(1));
        for send in &batch.capped {
            history.record_capped(send);
            capped.push(send.campaign_id.to_string());
        }
        for send in &batch.sends {
            history.record(send);
            sent.push(send.campaign_id.to_string());
        }
        day += Duration::days(1);
    }
    assert_eq!(sent, ["alert"]);
    assert_eq!(capped, ["promo"], "the drop is reported once, for the ledger");
}

#[test]
fn a_campaign_that_panics_is_reported_and_the_others_are_planned() {
    let geo = Geo::bundled();
    let healthy = campaign("healthy", cron_daily(0, 10), chrono_tz::UTC);
    // A window no bound caught: `from - window` overflows (a panic in the engine).
    let mut broken = campaign("broken", cron_daily(0, 10), chrono_tz::UTC);
    broken.timing.window = Duration::MAX;
    let engine = Engine::new(&[broken, healthy], geo, EngineConfig::default()).unwrap();
    let members = [member(1), member(2)];
    let recipients: Vec<Recipient<'_>> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Recipient { member_id: i as i64, member: m, place: None })
        .collect();
    let batch = engine.plan(&recipients, &History::new(), utc(2027, 5, 1), utc(2027, 5, 3));
    assert_eq!(batch.sends.len(), 4, "two days for two members of the healthy campaign");
    assert!(batch.sends.iter().all(|s| &*s.campaign_id == "healthy"));
    assert_eq!(batch.failures.len(), 1, "{:?}", batch.failures);
    assert_eq!(&*batch.failures[0].0, "broken");
    assert!(batch.failures[0].1.contains("overflow"), "{:?}", batch.failures[0].1);
}

/// A member of `city` (gazetteer name) with an optional language tag.
fn member_in(geo: &Geo, city: &str, lang: Option<&str>) -> (Member, almanac::geo::Place) {
    let id = geo.find_city(city, None).unwrap();
    let place = almanac::geo::Place {
        city: id,
        tz: geo.city(id).tz,
        source: almanac::geo::PlaceSource::Explicit,
        confidence: 1.0,
        distance_km: None,
    };
    let member = Member {
        external_id: format!("{city}-{}", lang.unwrap_or("none")),
        name: Some("M".to_string()),
        lang: lang.map(str::to_string),
        ..Member::default()
    };
    (member, place)
}

/// The variant language each (city, member language) gets from a campaign with
/// these variant tags (the first is the default).
fn chosen_lang(variants: &[&str], city: &str, lang: Option<&str>) -> String {
    let geo = Geo::bundled();
    let mut c = campaign("lang", cron_daily(0, 10), chrono_tz::Asia::Shanghai);
    c.messages = variants
        .iter()
        .map(|tag| Message {
            lang: tag.to_string(),
            text: format!("{tag} {{{{ name }}}}"),
            weight: 1,
            label: tag.to_string(),
        })
        .collect();
    c.default_lang = variants[0].to_string();
    let engine = Engine::new(&[c], geo, EngineConfig::default()).unwrap();
    let (member, place) = member_in(geo, city, lang);
    let recipients = [Recipient { member_id: 1, member: &member, place: Some(place) }];
    let batch = engine.plan(&recipients, &History::new(), utc(2027, 5, 1), utc(2027, 5, 2));
    assert_eq!(batch.sends.len(), 1, "{city} {lang:?}: {:?}", batch.skips);
    batch.sends[0].lang.to_string()
}

#[test]
fn language_fallback_matches_by_language_and_script_not_by_string() {
    let variants = ["zh-Hans", "zh-Hant", "yue-Hant", "en-US"];
    // Member `en` <-> variant `en-US`, before the city's dialect.
    assert_eq!(chosen_lang(&variants, "Harbin", Some("en")), "en-US");
    // Member `en-GB` -> `en-US` (same language, another region) before the city.
    assert_eq!(chosen_lang(&variants, "Harbin", Some("en-GB")), "en-US");
    assert_eq!(chosen_lang(&variants, "Harbin", Some("EN_us")), "en-US");
    // A variant more general than the member's tag: `en-GB` -> `en`.
    assert_eq!(chosen_lang(&["zh-Hans", "en", "en-US"], "Harbin", Some("en-GB")), "en");
    // No member language: the city's dialect, by script. Guangzhou writes
    // Simplified: Traditional Cantonese is not its language, Simplified Chinese is.
    assert_eq!(chosen_lang(&variants, "Guangzhou", None), "zh-Hans");
    assert_eq!(chosen_lang(&variants, "Shenzhen", None), "zh-Hans");
    assert_eq!(chosen_lang(&variants, "Hong Kong", None), "yue-Hant");
    assert_eq!(chosen_lang(&variants, "Taipei", None), "zh-Hant");
    assert_eq!(chosen_lang(&["zh-Hans", "yue-Hant"], "Macau", None), "yue-Hant");
    // Hong Kong without a Cantonese variant: Traditional Chinese, not the default.
    assert_eq!(chosen_lang(&["zh-Hans", "zh-Hant"], "Hong Kong", None), "zh-Hant");
    // A member's `zh` takes the script of where they live.
    assert_eq!(chosen_lang(&["zh-Hans", "zh-Hant"], "Taipei", Some("zh")), "zh-Hant");
    assert_eq!(chosen_lang(&["zh-Hant", "zh-Hans"], "Harbin", Some("zh")), "zh-Hans");
    assert_eq!(chosen_lang(&["zh-Hans", "zh-Hant"], "Harbin", Some("zh-TW")), "zh-Hant");
    // Mandarin is Chinese (`cmn` = `zh`); an exact tag still wins.
    assert_eq!(chosen_lang(&["en", "zh-Hans", "cmn-Hans"], "Harbin", None), "cmn-Hans");
    assert_eq!(chosen_lang(&["en", "zh-Hans"], "Harbin", Some("cmn")), "zh-Hans");
    // Nothing of the member's language or the city's: the default.
    assert_eq!(chosen_lang(&["en-US", "zh-Hant"], "Harbin", Some("fr")), "en-US");
}
