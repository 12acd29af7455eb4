//! `almanac simulate`: replays the timing engine over a virtual clock. A
//! [`ManualClock`] steps through the window one day at a time; each step plans
//! `[now, now + 1 day)`, prints every push as it fires (local time, city, masked
//! member, language, rendered text) and feeds it back into the history, so caps
//! and already-sent occurrences behave as in the daemon. Ends with a summary per
//! campaign: sent, holdout, skipped by reason. Deterministic: the same inputs
//! print the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use crate::campaign::Campaign;
use crate::clock::{Clock, ManualClock};
use crate::geo::Geo;
use crate::members::Member;
use crate::timing::{DueSend, Engine, EngineConfig, GlobalCap, History, Recipient, SkipReason};

use super::plan::{load_campaigns, load_members, pad, parse_global_cap, recipients};

/// Arguments of `almanac simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// First day (UTC), `YYYY-MM-DD`.
    #[arg(long)]
    pub from: NaiveDate,
    /// Last day (UTC, inclusive), `YYYY-MM-DD`.
    #[arg(long)]
    pub to: NaiveDate,
    /// Member file (.csv, .jsonl).
    #[arg(long, default_value = "data/sample-members.jsonl")]
    pub members: PathBuf,
    /// A cap across campaigns, `MAX/PERIOD` (`2/7d`), as the daemon's `global_cap`.
    #[arg(long, value_parser = parse_global_cap)]
    pub global_cap: Option<GlobalCap>,
    /// Output: human-readable lines, or one JSON object per push then a summary.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Campaign files or directories.
    #[arg(default_value = "campaigns")]
    pub campaigns: Vec<PathBuf>,
}

/// Output format of `almanac simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per push, then the summary.
    Text,
    /// One JSON object per push, then `{"summary": ...}`.
    Jsonl,
}

/// One push as `simulate` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Fired {
    /// UTC instant.
    pub due_at: String,
    /// Local date-time.
    pub local: String,
    /// Zone.
    pub tz: String,
    /// City (English name), if known.
    pub city: Option<String>,
    /// City (Chinese name), if known.
    pub city_zh: Option<String>,
    /// Campaign id.
    pub campaign: String,
    /// Occurrence key.
    pub occurrence: String,
    /// The member's id in this run (1-based position in the member file).
    pub member_id: i64,
    /// Masked external id.
    pub member: String,
    /// Masked phone number.
    pub phone: Option<String>,
    /// Variant language.
    pub lang: String,
    /// Variant label.
    pub variant: String,
    /// Rendered text.
    pub text: String,
    /// Held out (recorded, not sent).
    pub holdout: bool,
}

/// Per-campaign outcome of a simulation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CampaignSummary {
    /// Pushes sent.
    pub sent: u64,
    /// Pushes held out.
    pub holdout: u64,
    /// Members skipped, by reason (each member and occurrence once; a send that a
    /// later day delivered is not counted as skipped).
    pub skipped: BTreeMap<String, u64>,
}

/// Everything a simulation produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Simulation {
    /// Pushes in firing order.
    pub fired: Vec<Fired>,
    /// Per campaign.
    pub summary: BTreeMap<String, CampaignSummary>,
}

/// Runs `almanac simulate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.to < args.from {
        anyhow::bail!("--to {} is before --from {}", args.to, args.from);
    }
    let geo = Geo::bundled();
    let campaigns = load_campaigns(&args.campaigns)?;
    let loaded = load_members(&args.members, geo)?;
    let config = EngineConfig { global_cap: args.global_cap };
    let recipients = recipients(&loaded.members, &loaded.places);
    let simulation = simulate(&campaigns, geo, config, &recipients, args.from, args.to)?;
    let out = match args.format {
        Format::Text => render_text(&simulation),
        Format::Jsonl => render_jsonl(&simulation)?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Replays `[from, to]` (whole UTC days) day by day on a [`ManualClock`].
pub fn simulate(
    campaigns: &[Campaign],
    geo: &Geo,
    config: EngineConfig,
    recipients: &[Recipient<'_>],
    from: NaiveDate,
    to: NaiveDate,
) -> anyhow::Result<Simulation> {
    let start = from.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    // As a daemon that first sees the campaigns at `--from`: nothing that fell
    // due before is sent (unless a campaign's `catch_up` asks for it).
    let engine = Engine::new(campaigns, geo, config)?.with_first_seen(|_| Some(start));
    let end = to.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc() + Duration::days(1);
    let clock = ManualClock::new(start);
    let mut history = History::new();
    let mut simulation = Simulation::default();
    for campaign in campaigns.iter().filter(|c| c.enabled) {
        simulation.summary.entry(campaign.id.clone()).or_default();
    }
    type SkipKey = (Arc<str>, i64, Option<Arc<str>>, SkipReason);
    let mut skips: BTreeSet<SkipKey> = BTreeSet::new();
    let mut delivered: BTreeSet<(Arc<str>, i64, Arc<str>)> = BTreeSet::new();
    while clock.now() < end {
        let now = clock.now();
        let step_end = (now + Duration::days(1)).min(end);
        let mut batch = engine.plan(recipients, &history, now, step_end);
        batch.sends.sort_by(|a, b| {
            (a.due_at, &a.campaign_id, &recipients[index(a)].member.external_id).cmp(&(
                b.due_at,
                &b.campaign_id,
                &recipients[index(b)].member.external_id,
            ))
        });
        for send in &batch.sends {
            history.record(send);
            delivered.insert((send.campaign_id.clone(), send.member_id, send.occurrence.clone()));
            let summary = simulation.summary.entry(send.campaign_id.to_string()).or_default();
            if send.holdout {
                summary.holdout += 1;
            } else {
                summary.sent += 1;
            }
            let member = recipients[index(send)].member;
            simulation.fired.push(fired(send, member, campaigns, geo));
        }
        for send in &batch.capped {
            history.record_capped(send);
        }
        for skip in batch.skips {
            skips.insert((skip.campaign_id, skip.member_id, skip.occurrence, skip.reason));
        }
        clock.set(step_end);
    }
    for (campaign, member_id, occurrence, reason) in skips {
        if let Some(occurrence) = &occurrence
            && delivered.contains(&(campaign.clone(), member_id, occurrence.clone()))
        {
            continue;
        }
        let summary = simulation.summary.entry(campaign.to_string()).or_default();
        *summary.skipped.entry(reason.as_str().to_string()).or_default() += 1;
    }
    Ok(simulation)
}

fn index(send: &DueSend) -> usize {
    (send.member_id - 1) as usize
}

fn fired(send: &DueSend, member: &Member, campaigns: &[Campaign], geo: &Geo) -> Fired {
    let city = send.city.map(|id| geo.city(id));
    let variant = campaigns
        .iter()
        .find(|c| *c.id == *send.campaign_id)
        .and_then(|c| c.messages.get(send.variant))
        .map_or_else(|| send.variant.to_string(), |m| m.label.clone());
    Fired {
        due_at: send.due_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        local: send.local.format("%Y-%m-%d %H:%M").to_string(),
        tz: send.tz.name().to_string(),
        city: city.map(|c| c.name.clone()),
        city_zh: city.and_then(|c| c.name_zh.clone()).filter(|n| !n.is_empty()),
        campaign: send.campaign_id.to_string(),
        occurrence: send.occurrence.to_string(),
        member_id: send.member_id,
        member: mask_id(&member.external_id),
        phone: member.phone.as_deref().map(crate::redact::mask_phone),
        lang: send.lang.to_string(),
        variant,
        text: send.text.clone(),
        holdout: send.holdout,
    }
}

/// An external id with its middle masked: `crm-00042` → `crm***42`.
pub fn mask_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 4 {
        return "*".repeat(chars.len());
    }
    let keep_start = chars.len() / 3;
    let start: String = chars[..keep_start].iter().collect();
    let end: String = chars[chars.len() - 2..].iter().collect();
    format!("{start}{}{end}", "*".repeat(chars.len() - keep_start - 2))
}

fn render_text(simulation: &Simulation) -> String {
    let mut out = String::new();
    for fired in &simulation.fired {
        let city = match (&fired.city, &fired.city_zh) {
            (Some(en), Some(zh)) => format!("{en} {zh}"),
            (Some(en), None) => en.clone(),
            _ => "-".to_string(),
        };
        let who = match &fired.phone {
            Some(phone) => format!("{} {phone}", fired.member),
            None => fired.member.clone(),
        };
        let _ = writeln!(
            out,
            "{} {}  {}  {}  {}  {}  {}{}",
            fired.local,
            pad(&fired.tz, 16),
            pad(&city, 22),
            pad(&who, 28),
            pad(&fired.lang, 11),
            fired.campaign,
            if fired.holdout { "[holdout] " } else { "" },
            fired.text,
        );
    }
    let _ = writeln!(out, "\nsummary");
    for (campaign, summary) in &simulation.summary {
        let skipped: u64 = summary.skipped.values().sum();
        let _ = write!(
            out,
            "{campaign}: sent {}, holdout {}, skipped {skipped}",
            summary.sent, summary.holdout
        );
        if !summary.skipped.is_empty() {
            let reasons: Vec<String> =
                summary.skipped.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = write!(out, " ({})", reasons.join(", "));
        }
        out.push('\n');
    }
    out
}

fn render_jsonl(simulation: &Simulation) -> anyhow::Result<String> {
    let mut out = String::new();
    for fired in &simulation.fired {
        out.push_str(&serde_json::to_string(fired)?);
        out.push('\n');
    }
    out.push_str(&serde_json::to_string(&serde_json::json!({ "summary": simulation.summary }))?);
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_masked() {
        assert_eq!(mask_id("crm-00042"), "crm****42");
        assert_eq!(mask_id("abc"), "***");
    }
}
