//! Timing-engine throughput: one climate campaign over 1M in-memory members,
//! planned in batches of 10k as the daemon streams them. Prints members/s for a
//! planner tick (a one-day window: few members due) and for a whole season (every
//! member due, text rendered), next to a trivial loop that only touches each member
//! in the same run, so the ratio means something on a noisy machine.
//!
//! `cargo bench --bench engine` (ALMANAC_BENCH_MEMBERS overrides the 1M).

use std::hint::black_box;
use std::time::Instant;

use almanac::campaign::{
    Audience, Campaign, ClimateMetric, Crossing, Limits, Message, Purpose, QuietHours, SourceInfo,
    Timing, Trigger, Unresolved,
};
use almanac::geo::{Geo, Place, PlaceSource};
use almanac::members::Member;
use almanac::timing::{Engine, EngineConfig, History, Recipient};
use chrono::{Duration, NaiveDate, NaiveTime};

const BATCH: usize = 10_000;

fn moisturizer() -> Campaign {
    let message = |lang: &str, text: &str| Message {
        lang: lang.to_string(),
        text: text.to_string(),
        weight: 1,
        label: lang.to_string(),
    };
    Campaign {
        id: "autumn-moisturizer-2027".to_string(),
        name: "Autumn moisturizer".to_string(),
        enabled: true,
        starts: None,
        ends: None,
        channel: "log".to_string(),
        purpose: Purpose::Service,
        priority: 0,
        audience: Audience {
            countries: vec!["CN".to_string(), "HK".to_string()],
            tags_any: vec!["skincare".to_string()],
            holdout: 0.05,
            ..Audience::default()
        },
        timing: Timing {
            trigger: Trigger::Climate {
                metric: ClimateMetric::MeanTempC,
                crosses: Crossing::Below,
                threshold: 17.0,
                after: (7, 1),
                local_time: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
            },
            window: Duration::days(7),
            catch_up: Duration::zero(),
            spread: None,
            quiet_hours: Some(QuietHours {
                start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
                end: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            }),
            unresolved: Unresolved::Skip,
        },
        limits: Limits { per_member: Some(1), rate_per_second: None },
        messages: vec![
            message("yue-Hant", "{{ name }}，天氣轉乾，記得保濕。"),
            message("yue-Hans", "{{ name }}，天气转干，记得保湿。"),
            message("zh-Hans", "{{ name }}，天气转凉变干，记得保湿。"),
        ],
        default_lang: "zh-Hans".to_string(),
        source: SourceInfo::default(),
    }
}

fn main() {
    let n: usize = std::env::var("ALMANAC_BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let geo = Geo::bundled();
    let cities: Vec<Place> = geo
        .cities()
        .filter(|(_, city)| city.country == "CN" || city.country == "HK")
        .map(|(id, city)| Place {
            city: id,
            tz: city.tz,
            source: PlaceSource::Explicit,
            confidence: 1.0,
            distance_km: None,
        })
        .collect();
    assert!(!cities.is_empty(), "the gazetteer has no CN/HK city");
    let langs = [None, None, None, Some("zh-Hans"), Some("yue-Hant-HK"), None, Some("en")];
    let members: Vec<Member> = (0..n)
        .map(|i| Member {
            external_id: format!("crm-{i:08}"),
            name: Some(format!("会员{i}")),
            lang: langs[i % langs.len()].map(str::to_string),
            tags: if i % 4 == 0 { vec![] } else { vec!["skincare".to_string()] },
            ..Member::default()
        })
        .collect();
    let recipients: Vec<Recipient<'_>> = members
        .iter()
        .enumerate()
        .map(|(i, member)| Recipient {
            member_id: i as i64,
            member,
            place: Some(cities[(i * 7919) % cities.len()]),
        })
        .collect();
    let engine = Engine::new(&[moisturizer()], geo, EngineConfig::default()).expect("compiles");
    let history = History::new();
    let day =
        |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();

    // Reference: a loop that only touches each member.
    let started = Instant::now();
    let mut touched = 0usize;
    for recipient in &recipients {
        touched += recipient.member.external_id.len()
            + recipient.member.tags.len()
            + recipient.place.map_or(0, |p| p.city.0 as usize);
    }
    black_box(touched);
    let reference = n as f64 / started.elapsed().as_secs_f64();

    // Warm the per-(campaign, city, year) crossing cache, as a running daemon has.
    black_box(engine.plan(
        &recipients[..BATCH.min(n)],
        &history,
        day(2027, 9, 10),
        day(2027, 9, 11),
    ));

    let measure = |from, to| {
        let started = Instant::now();
        let mut sends = 0usize;
        let mut skips = 0usize;
        for batch in recipients.chunks(BATCH) {
            let planned = engine.plan(batch, &history, from, to);
            sends += planned.sends.len();
            skips += planned.skips.len();
            black_box(&planned);
        }
        (n as f64 / started.elapsed().as_secs_f64(), sends, skips)
    };
    let (tick, tick_sends, _) = measure(day(2027, 9, 10), day(2027, 9, 11));
    let (season, season_sends, season_skips) = measure(day(2027, 7, 1), day(2028, 7, 1));

    println!(
        "members: {n} (batches of {BATCH}), one climate campaign, {} CN/HK cities",
        cities.len()
    );
    println!("reference (touch each member):   {:>14.0} members/s", reference);
    println!(
        "engine, one-day tick window:      {:>14.0} members/s  ({tick_sends} due)  ratio to reference {:.3}",
        tick,
        tick / reference
    );
    println!(
        "engine, whole season (rendered):  {:>14.0} members/s  ({season_sends} due, {season_skips} skipped)  ratio {:.3}",
        season,
        season / reference
    );
    println!(
        "target >= 1,000,000 members/s on one core: tick {}",
        if tick >= 1_000_000.0 { "met" } else { "NOT met" }
    );
}
