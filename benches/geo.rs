//! Place-knowledge throughput and start-up cost: phone resolutions/s and
//! coordinate resolutions/s on one core, the embedded data's size, its load
//! time and the resident memory it adds (VmRSS before/after).
//!
//! Run: `cargo bench --bench geo`. References measured in the same run: a plain
//! `HashMap` lookup of the same strings, and a linear scan for the nearest city.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use almanac::geo::{Geo, LocationHints};

fn vm_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `f` over the inputs repeatedly for about `budget`; returns operations per second.
fn rate<T>(inputs: &[T], budget: Duration, mut f: impl FnMut(&T)) -> f64 {
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < budget {
        for x in inputs {
            f(x);
        }
        ops += inputs.len() as u64;
    }
    ops as f64 / start.elapsed().as_secs_f64()
}

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn main() {
    let rss_before = vm_rss_kb();
    let start = Instant::now();
    let geo = Geo::bundled();
    let load = start.elapsed();
    let rss_after = vm_rss_kb();
    println!("embedded data: {:.2} MB", Geo::embedded_bytes() as f64 / 1e6);
    println!(
        "load: {:.1} ms ({} cities, {} phone prefixes), target < 50 ms",
        load.as_secs_f64() * 1e3,
        geo.cities().count(),
        geo.phone_prefix_count()
    );
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        println!(
            "resident: {:.1} MB before, {:.1} MB after load (+{:.1} MB), target < 30 MB",
            b as f64 / 1024.0,
            a as f64 / 1024.0,
            a.saturating_sub(b) as f64 / 1024.0
        );
    }

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let prefixes = ["139", "138", "186", "150", "133", "177", "199", "131"];
    let phones: Vec<String> = (0..10_000)
        .map(|_| {
            let p = prefixes[(rng.next() % prefixes.len() as u64) as usize];
            format!("+86 {p}{:08}", rng.next() % 100_000_000)
        })
        .collect();
    let budget = Duration::from_millis(1500);
    let phone_rate = rate(&phones, budget, |p| {
        black_box(
            geo.resolve(&LocationHints { phone: Some(black_box(p)), ..Default::default() }).is_ok(),
        );
    });
    let reference: HashMap<u64, u32> =
        phones.iter().enumerate().map(|(i, p)| (hash(p), i as u32)).collect();
    let hash_rate = rate(&phones, budget, |p| {
        black_box(reference.get(&hash(black_box(p))));
    });
    println!(
        "phone: {:.2} M resolutions/s (target >= 2 M/s); reference hash-map lookup {:.2} M/s; ratio {:.2}",
        phone_rate / 1e6,
        hash_rate / 1e6,
        phone_rate / hash_rate
    );

    let points: Vec<(f64, f64)> = (0..10_000)
        .map(|_| {
            (20.0 + (rng.next() % 2500) as f64 / 100.0, 100.0 + (rng.next() % 2500) as f64 / 100.0)
        })
        .collect();
    let coord_rate = rate(&points, budget, |&(lat, lon)| {
        let hints = LocationHints {
            coordinates: Some((black_box(lat), black_box(lon))),
            ..Default::default()
        };
        black_box(geo.resolve(&hints).is_ok());
    });
    let brute = points[..200].to_vec();
    let brute_rate = rate(&brute, Duration::from_millis(300), |&(lat, lon)| {
        black_box(
            geo.cities()
                .map(|(_, c)| (c.lat - lat).powi(2) + (c.lon - lon).powi(2))
                .fold(f64::MAX, f64::min),
        );
    });
    println!(
        "coordinates: {:.0} k resolutions/s (target >= 500 k/s); reference linear scan {:.1} k/s; ratio {:.0}x",
        coord_rate / 1e3,
        brute_rate / 1e3,
        coord_rate / brute_rate
    );
}
