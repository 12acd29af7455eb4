//! `almanac plan`: what a campaign will do before anything is sent. Runs the timing
//! engine over a calendar year and groups the due sends per city (or zone, or
//! variant): local date-time, UTC instant, member count and language variant, with
//! totals and skips by reason. Without `--members` it plans one synthetic member per
//! gazetteer city (carrying the campaign's required tags), so a marketer sees the
//! whole map.
//!
//! Also holds the loaders `plan` and `simulate` share (campaign files, member files).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;

use crate::campaign::{self, Campaign};
use crate::clock::{Clock, SystemClock};
use crate::geo::{Geo, LocationHints, Place, PlaceSource};
use crate::members::Member;
use crate::timing::{Engine, EngineConfig, GlobalCap, History, PlanBatch, Recipient};

/// Arguments of `almanac plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Campaign files or directories.
    #[arg(required = true)]
    pub campaigns: Vec<PathBuf>,
    /// Member file (.csv, .jsonl); default: one synthetic member per gazetteer city.
    #[arg(long)]
    pub members: Option<PathBuf>,
    /// Calendar year to plan (UTC); default: the current year.
    #[arg(long)]
    pub year: Option<i32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Grouping of the rows.
    #[arg(long, value_enum, default_value_t = By::City)]
    pub by: By,
    /// A cap across campaigns, `MAX/PERIOD` (`2/7d`), as the daemon's `global_cap`
    /// (needs `--members`: the synthetic members each see one campaign).
    #[arg(long, value_parser = parse_global_cap, requires = "members")]
    pub global_cap: Option<GlobalCap>,
}

/// `MAX/PERIOD` (`2/7d`), as `[frequency] global_cap` of `almanac.toml`.
pub(crate) fn parse_global_cap(text: &str) -> Result<GlobalCap, String> {
    let (max, per) = text
        .split_once('/')
        .ok_or_else(|| format!("expected MAX/PERIOD like 2/7d, found {text:?}"))?;
    let max =
        max.trim().parse().map_err(|_| format!("expected a count before '/', found {max:?}"))?;
    let per = crate::timing::parse_duration(per)?;
    Ok(GlobalCap { max, per })
}

/// Output format of `almanac plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text.
    Table,
    /// One JSON document.
    Json,
    /// CSV with a header row.
    Csv,
}

/// Row grouping of `almanac plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// Per city.
    City,
    /// Per time zone.
    Zone,
    /// Per message variant.
    Variant,
}

/// One row of the plan: sends sharing a campaign, group, occurrence and instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Campaign id.
    pub campaign: String,
    /// City, zone or variant, per `--by`.
    pub group: String,
    /// Occurrence key.
    pub occurrence: String,
    /// Local date-time in the zone.
    pub local: NaiveDateTime,
    /// IANA zone.
    pub tz: String,
    /// The UTC instant.
    pub due_at: DateTime<Utc>,
    /// Language of the variant.
    pub lang: String,
    /// Variant label.
    pub variant: String,
    /// Members due (holdout included).
    pub members: u64,
    /// Of which held out.
    pub holdout: u64,
    /// The text of the first member of the row.
    pub sample_text: String,
}

/// A year's plan for a campaign set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// The year planned.
    pub year: i32,
    /// Rows, by campaign then instant then group.
    pub rows: Vec<Row>,
    /// Sends per campaign (holdout included).
    pub sends: BTreeMap<String, u64>,
    /// Holdout per campaign.
    pub holdout: BTreeMap<String, u64>,
    /// Skips per campaign and reason.
    pub skipped: BTreeMap<String, BTreeMap<String, u64>>,
    /// Members considered.
    pub members: u64,
}

/// Runs `almanac plan`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let geo = Geo::bundled();
    let campaigns = load_campaigns(&args.campaigns)?;
    let year = args.year.unwrap_or_else(|| SystemClock.now().year());
    let plan = match &args.members {
        Some(path) => {
            let members = load_members(path, geo)?;
            let config = EngineConfig { global_cap: args.global_cap };
            let (members, places) = (&members.members, &members.places);
            plan_members(&campaigns, geo, config, members, places, year, args.by)?
        }
        None => plan_synthetic(&campaigns, geo, year, args.by)?,
    };
    let out = match args.format {
        Format::Table => render_table(&plan, args.by),
        Format::Json => serde_json::to_string_pretty(&plan)? + "\n",
        Format::Csv => render_csv(&plan)?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Loads campaign files and directories; diagnostics go to stderr, errors fail.
pub(crate) fn load_campaigns(paths: &[PathBuf]) -> anyhow::Result<Vec<Campaign>> {
    let report = campaign::load_paths(paths, None);
    if !report.diagnostics.is_empty() {
        eprint!("{}", report.render(campaign::Format::Human));
    }
    if report.has_errors() {
        anyhow::bail!("campaign files have errors (see above); run `almanac check`");
    }
    if report.campaigns.is_empty() {
        anyhow::bail!("no campaign found in {}", display_paths(paths));
    }
    Ok(report.campaigns)
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Members read from a file, with their resolved places (`None`: unresolved).
pub(crate) struct LoadedMembers {
    /// The members, in file order.
    pub members: Vec<Member>,
    /// Each member's place.
    pub places: Vec<Option<Place>>,
}

/// Engine recipients for members and their places; member ids are 1-based
/// positions.
pub(crate) fn recipients<'a>(
    members: &'a [Member],
    places: &[Option<Place>],
) -> Vec<Recipient<'a>> {
    members
        .iter()
        .zip(places)
        .enumerate()
        .map(|(index, (member, place))| Recipient {
            member_id: index as i64 + 1,
            member,
            place: *place,
        })
        .collect()
}

/// Reads a member file (bad rows reported on stderr and left out) and resolves
/// each member's place.
pub(crate) fn load_members(path: &Path, geo: &Geo) -> anyhow::Result<LoadedMembers> {
    let rows = crate::members::read_file(path)
        .with_context(|| format!("reading members from {}", path.display()))?;
    let mut loaded = LoadedMembers { members: Vec::new(), places: Vec::new() };
    let mut bad = 0usize;
    for row in rows {
        match row {
            Ok(member) => {
                let hints = LocationHints {
                    city: member.city.as_deref(),
                    province: member.province.as_deref(),
                    coordinates: member.lat.zip(member.lon),
                    phone: member.phone.as_deref(),
                    ip: member.ip.as_deref(),
                };
                loaded.places.push(geo.resolve(&hints).ok());
                loaded.members.push(member);
            }
            Err(error) => {
                bad += 1;
                eprintln!("warning: {error}");
            }
        }
    }
    if bad > 0 {
        eprintln!("warning: {bad} bad member row(s) in {} left out", path.display());
    }
    Ok(loaded)
}

/// The UTC bounds of a calendar year.
pub(crate) fn year_bounds(year: i32) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let start = |y: i32| {
        NaiveDate::from_ymd_opt(y, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .with_context(|| format!("year {y} is out of range"))
    };
    Ok((start(year)?, start(year + 1)?))
}

/// The campaigns with no late-arrival window: a plan shows when each occurrence
/// is due, and last year's occurrences still open must not use up this year's caps.
fn due_only(campaigns: &[Campaign]) -> Vec<Campaign> {
    let mut campaigns = campaigns.to_vec();
    for campaign in &mut campaigns {
        campaign.timing.window = chrono::Duration::zero();
    }
    campaigns
}

/// Plans a year for members read from a file.
pub fn plan_members(
    campaigns: &[Campaign],
    geo: &Geo,
    config: EngineConfig,
    members: &[Member],
    places: &[Option<Place>],
    year: i32,
    by: By,
) -> anyhow::Result<Plan> {
    let (from, to) = year_bounds(year)?;
    let engine = Engine::new(&due_only(campaigns), geo, config)?.with_first_seen(|_| Some(from));
    let recipients = recipients(members, places);
    let batch = engine.plan(&recipients, &History::new(), from, to);
    let mut plan = Plan { year, members: recipients.len() as u64, ..Plan::default() };
    collect(&mut plan, campaigns, geo, batch, by);
    finish(&mut plan);
    Ok(plan)
}

/// Plans a year for one synthetic member per gazetteer city, per campaign (each
/// carries the tags the campaign requires, so tag filters do not hide the map).
pub fn plan_synthetic(
    campaigns: &[Campaign],
    geo: &Geo,
    year: i32,
    by: By,
) -> anyhow::Result<Plan> {
    let (from, to) = year_bounds(year)?;
    let mut plan = Plan { year, ..Plan::default() };
    for campaign in campaigns {
        let engine =
            Engine::new(&due_only(std::slice::from_ref(campaign)), geo, EngineConfig::default())?;
        let audience = &campaign.audience;
        let mut tags: Vec<String> = audience.tags_all.clone();
        tags.extend(audience.tags_any.first().cloned());
        let (members, places): (Vec<Member>, Vec<Option<Place>>) = geo
            .cities()
            .map(|(id, city)| {
                let member = Member {
                    external_id: format!("city-{}", city.geonames_id),
                    name: Some(city.name_zh.clone().unwrap_or_else(|| city.name.clone())),
                    tags: tags.clone(),
                    ..Member::default()
                };
                let place = Place {
                    city: id,
                    tz: city.tz,
                    source: PlaceSource::Explicit,
                    confidence: 1.0,
                    distance_km: None,
                };
                (member, Some(place))
            })
            .unzip();
        let recipients = recipients(&members, &places);
        plan.members = plan.members.max(recipients.len() as u64);
        let batch = engine.plan(&recipients, &History::new(), from, to);
        collect(&mut plan, campaigns, geo, batch, by);
    }
    finish(&mut plan);
    Ok(plan)
}

fn collect(plan: &mut Plan, campaigns: &[Campaign], geo: &Geo, batch: PlanBatch, by: By) {
    // Rows keyed by everything but the counts.
    type Key = (String, String, String, NaiveDateTime, String, DateTime<Utc>, String, String);
    let mut rows: BTreeMap<Key, Row> = BTreeMap::new();
    for send in batch.sends {
        let campaign = campaigns.iter().find(|c| *c.id == *send.campaign_id);
        let variant = campaign
            .and_then(|c| c.messages.get(send.variant))
            .map_or_else(|| send.variant.to_string(), |m| m.label.clone());
        let group = match by {
            By::City => send.city.map_or_else(
                || "(fallback zone)".to_string(),
                |id| {
                    let city = geo.city(id);
                    match &city.name_zh {
                        Some(zh) if !zh.is_empty() => {
                            format!("{} {} ({})", city.name, zh, city.country)
                        }
                        _ => format!("{} ({})", city.name, city.country),
                    }
                },
            ),
            By::Zone => send.tz.name().to_string(),
            By::Variant => format!("{} [{}]", send.lang, variant),
        };
        let key = (
            send.campaign_id.to_string(),
            group.clone(),
            send.occurrence.to_string(),
            send.local,
            send.tz.name().to_string(),
            send.due_at,
            send.lang.to_string(),
            variant.clone(),
        );
        let row = rows.entry(key).or_insert_with(|| Row {
            campaign: send.campaign_id.to_string(),
            group,
            occurrence: send.occurrence.to_string(),
            local: send.local,
            tz: send.tz.name().to_string(),
            due_at: send.due_at,
            lang: send.lang.to_string(),
            variant,
            members: 0,
            holdout: 0,
            sample_text: send.text.clone(),
        });
        row.members += 1;
        row.holdout += u64::from(send.holdout);
        *plan.sends.entry(send.campaign_id.to_string()).or_default() += 1;
        *plan.holdout.entry(send.campaign_id.to_string()).or_default() += u64::from(send.holdout);
    }
    // Per-member skips once per member; per-send skips once per occurrence.
    let mut seen = std::collections::BTreeSet::new();
    for skip in batch.skips {
        if seen.insert((skip.campaign_id.clone(), skip.member_id, skip.occurrence, skip.reason)) {
            *plan
                .skipped
                .entry(skip.campaign_id.to_string())
                .or_default()
                .entry(skip.reason.as_str().to_string())
                .or_default() += 1;
        }
    }
    plan.rows.extend(rows.into_values());
}

fn finish(plan: &mut Plan) {
    plan.rows.sort_by(|a, b| {
        (&a.campaign, a.due_at, &a.group, &a.lang, &a.variant).cmp(&(
            &b.campaign,
            b.due_at,
            &b.group,
            &b.lang,
            &b.variant,
        ))
    });
}

/// Terminal width of a string (CJK and full-width characters count two).
pub(crate) fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| {
            let c = c as u32;
            let wide = (0x1100..=0x115F).contains(&c)
                || (0x2E80..=0x303E).contains(&c)
                || (0x3041..=0x33FF).contains(&c)
                || (0x3400..=0x4DBF).contains(&c)
                || (0x4E00..=0x9FFF).contains(&c)
                || (0xAC00..=0xD7A3).contains(&c)
                || (0xF900..=0xFAFF).contains(&c)
                || (0xFE30..=0xFE4F).contains(&c)
                || (0xFF00..=0xFF60).contains(&c)
                || (0xFFE0..=0xFFE6).contains(&c)
                || (0x20000..=0x3FFFD).contains(&c);
            if wide { 2 } else { 1 }
        })
        .sum()
}

/// `text` padded with spaces to `width` terminal columns.
pub(crate) fn pad(text: &str, width: usize) -> String {
    let mut out = text.to_string();
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(display_width(text))));
    out
}

fn render_table(plan: &Plan, by: By) -> String {
    let header = [
        match by {
            By::City => "city",
            By::Zone => "zone",
            By::Variant => "variant",
        },
        "local time",
        "zone",
        "UTC",
        "members",
        "holdout",
        "lang",
        "variant",
    ];
    let mut out = String::new();
    let campaigns: Vec<&String> = {
        let mut ids: Vec<&String> = plan.rows.iter().map(|r| &r.campaign).collect();
        ids.extend(plan.skipped.keys());
        ids.sort();
        ids.dedup();
        ids
    };
    for campaign in campaigns {
        let rows: Vec<[String; 8]> = plan
            .rows
            .iter()
            .filter(|r| &r.campaign == campaign)
            .map(|r| {
                [
                    r.group.clone(),
                    r.local.format("%Y-%m-%d %H:%M").to_string(),
                    r.tz.clone(),
                    r.due_at.format("%Y-%m-%d %H:%MZ").to_string(),
                    r.members.to_string(),
                    r.holdout.to_string(),
                    r.lang.clone(),
                    r.variant.clone(),
                ]
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| display_width(h)).collect();
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(display_width(cell));
            }
        }
        let _ = writeln!(out, "campaign {campaign}, {}", plan.year);
        let line = |cells: &[String]| {
            let mut line = String::new();
            for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                let numeric = index == 4 || index == 5;
                if numeric {
                    let _ = write!(line, "{}{cell}  ", " ".repeat(width - display_width(cell)));
                } else {
                    let _ = write!(line, "{}  ", pad(cell, *width));
                }
            }
            line.trim_end().to_string()
        };
        let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        let _ = writeln!(out, "{}", line(&header));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row));
        }
        let sends = plan.sends.get(campaign).copied().unwrap_or(0);
        let holdout = plan.holdout.get(campaign).copied().unwrap_or(0);
        let groups = rows.iter().map(|r| &r[0]).collect::<std::collections::BTreeSet<_>>().len();
        let _ = write!(
            out,
            "total: {sends} sends ({holdout} holdout) in {groups} {}",
            match by {
                By::City => "cities",
                By::Zone => "zones",
                By::Variant => "variants",
            }
        );
        if let Some(skipped) = plan.skipped.get(campaign) {
            let reasons: Vec<String> = skipped.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = write!(out, "; skipped: {}", reasons.join(", "));
        }
        let _ = writeln!(out, "\n");
    }
    out
}

fn render_csv(plan: &Plan) -> anyhow::Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "campaign",
        "group",
        "occurrence",
        "local",
        "tz",
        "due_at",
        "lang",
        "variant",
        "members",
        "holdout",
        "sample_text",
    ])?;
    for row in &plan.rows {
        writer.write_record([
            row.campaign.as_str(),
            &row.group,
            &row.occurrence,
            &row.local.format("%Y-%m-%dT%H:%M").to_string(),
            &row.tz,
            &row.due_at.to_rfc3339(),
            &row.lang,
            &row.variant,
            &row.members.to_string(),
            &row.holdout.to_string(),
            &row.sample_text,
        ])?;
    }
    Ok(String::from_utf8(writer.into_inner()?)?)
}
