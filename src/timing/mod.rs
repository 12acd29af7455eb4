//! The pure timing engine: given campaigns, resolved members (with their send
//! history) and a window `[from, to)`, every due send with its instant, local time,
//! message variant and rendered text. It never reads the wall clock: the daemon
//! passes windows from its clock, `almanac simulate` from a virtual one.
//!
//! # Use
//!
//! [`Engine::new`] compiles a campaign set once (templates, cron expressions,
//! audience names, variant groups); [`Engine::plan`] then takes one batch of
//! [`Recipient`]s at a time (the daemon streams members in batches) with their
//! [`History`] and returns a [`PlanBatch`]: the [`DueSend`]s and the
//! [`Skip`]s (members of the audience who could not be sent, with a reason).
//!
//! # Triggers and time
//!
//! Every local time is evaluated in the member's own zone (`Place::tz`):
//!
//! * `once`: the local date-time; occurrence key `once`.
//! * `cron`: the expression (5 fields, or 6 with seconds) is matched against the
//!   member's local wall clock; occurrence key = the nominal local date-time
//!   (`2027-03-14T02:30`).
//! * `climate`: the first day after `after` (searched over the following 366
//!   days) on which the city's daily-interpolated normal crosses the threshold
//!   (the day before at-or-above and the day itself below, for `below`), at
//!   `local_time`; occurrence key = the year of `after` (`2027`), so it recurs
//!   yearly. Crossing days are computed once per (campaign, year, climate row) and
//!   cached: every city using a row (its own, or the nearest) shares its normals.
//!
//! Daylight saving: a local time in a **gap** (clocks jump forward) fires at the
//! first valid minute after it (02:30 → 03:00); several nominal times that land on
//! the same instant fire once. A local time that happens **twice** (clocks fall
//! back) fires once, at the earlier instant. Quiet hours move a send to their end
//! (local), never drop it. A campaign's `spread` then adds each member's own share
//! of it to the instant (elapsed time; the share comes from `hash`, so it is the
//! same on every plan), moving it out of quiet hours again if it lands in them;
//! the occurrence key and [`DueSend::local`] stay the occurrence's.
//!
//! An occurrence is due in `[from, to)` when its instant (after quiet hours) lies
//! in `[from - window, to)`: the campaign's `window` keeps it open for members who
//! arrive late, so a due send's `due_at` may be before `from` (send it now). The
//! [`History`] removes occurrences already recorded. `starts`/`ends` bound the
//! instant (`Bound::Local` in the member's zone).
//!
//! # Limits
//!
//! `limits.per_member` counts the member's history for the campaign plus the sends
//! of this batch. The optional [`GlobalCap`] bounds a member's pushes across all
//! campaigns in any rolling period; when it must drop sends, higher `priority`
//! wins (then the earlier send, then the campaign id). Holdout sends are recorded
//! but reach nobody, so they count for `per_member` and not for the global cap.
//!
//! # Skips
//!
//! Members of a campaign's audience who get no push are returned as [`Skip`]s with
//! a [`SkipReason`]. `unresolved` and `no_climate` concern the member as a whole
//! and come back on every call that covers the member (they will never be sent
//! until their place changes); `opted_out` when an occurrence is due; the others
//! (`no_variant`, `render_failed`, `per_member_cap`, `global_cap`) once per due
//! occurrence. Members outside the audience are not skips.
//!
//! # Experiments
//!
//! `audience.holdout` and A/B `weight`s are assigned by a fixed hash of the
//! campaign id and the member's external id (see `hash`), identical across runs
//! and replicas.
//!
//! # Language
//!
//! The variant is chosen in this order (`lang.rs` has the matching rules):
//! 1. the member's own language (`Member::lang`);
//! 2. for a Chinese language (`yue`, `wuu`, …), its written standard `zh` in the
//!    same script;
//! 3. the city's dialect tag (`City::lang_tag`);
//! 4. its written standard (`yue-Hans` → `zh-Hans`);
//! 5. the campaign's `default_lang`.
//!
//! A variant fits a tag when the language (`cmn` ≡ `zh`) and the script agree; a
//! tag without a script has CLDR's likely one, a member's tag without a region
//! that of the member's country (`zh` in Taipei is `zh-Hant`). Among fitting
//! variants: the same tag as written, the same up to `cmn` ≡ `zh`, a more general
//! one (`en` for `en-GB`), a more specific one (`en-US` for `en`), another region
//! (`en-US` for `en-GB`), ties in file order. So Guangzhou (`yue-Hans`) never gets
//! a `yue-Hant` variant and Taipei (`cmn-Hant`) never a `zh-Hans` one, unless it
//! is the default. Variants of the same tag form an A/B group split by `weight`.
//! Templates render with exactly
//! [`crate::campaign::TEMPLATE_FIELDS`], strict about undefined values; a field
//! the member lacks (no name, no Chinese city name) is undefined, so a template
//! using it fails to render and the member is skipped with `render_failed`.

mod hash;
mod lang;
mod local;

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use minijinja::value::{Enumerator, Object, Value};
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::campaign::{Bound, Campaign, ClimateMetric, Crossing, QuietHours, Trigger, Unresolved};
use crate::geo::{City, CityId, ClimateRow, Geo, Place, name_key};
use crate::members::Member;

/// Errors compiling a campaign set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A message template does not compile.
    #[error("campaign {campaign}: message {index} ({lang}): {source}")]
    Template {
        /// Campaign id.
        campaign: String,
        /// Index of the message in the file.
        index: usize,
        /// The message's language.
        lang: String,
        /// The template error.
        #[source]
        source: minijinja::Error,
    },
    /// A cron expression does not parse.
    #[error("campaign {campaign}: cron expression {expr:?}: {reason}")]
    Cron {
        /// Campaign id.
        campaign: String,
        /// The expression.
        expr: String,
        /// The parser's reason.
        reason: String,
    },
    /// A city named in the audience or the unresolved policy is not in the gazetteer.
    #[error("campaign {campaign}: {what}: unknown city {name:?}: {source}")]
    UnknownCity {
        /// Campaign id.
        campaign: String,
        /// Where the name appeared.
        what: &'static str,
        /// The name as written.
        name: String,
        /// The gazetteer's reason.
        #[source]
        source: crate::geo::ResolveError,
    },
}

impl Error {
    /// The campaign the error is about.
    pub fn campaign(&self) -> &str {
        match self {
            Self::Template { campaign, .. }
            | Self::Cron { campaign, .. }
            | Self::UnknownCity { campaign, .. } => campaign,
        }
    }
}

/// A cap on each member's pushes across all campaigns, in any rolling period
/// (`[timing.global_cap]` of the daemon config: `max = 2`, `per = "7d"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalCap {
    /// At most this many pushes...
    pub max: u32,
    /// ...in any period this long (`"7d"`, `"36h"`, `"1d12h"`, `"2w"`; at most 31 days).
    #[serde(with = "duration_text")]
    pub per: Duration,
}

/// Engine settings from the daemon config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineConfig {
    /// The cap across campaigns, if any.
    pub global_cap: Option<GlobalCap>,
}

/// One member to plan for: the store's id, the CRM record and the resolved place
/// (`None` when unresolved; the campaign's `unresolved` policy decides).
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// The store's member id (history and ledger key).
    pub member_id: i64,
    /// The member.
    pub member: &'a Member,
    /// The resolved place.
    pub place: Option<Place>,
}

/// One push already recorded for a member (sent, planned, or held out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastSend {
    /// Campaign id.
    pub campaign_id: Arc<str>,
    /// Occurrence key.
    pub occurrence: Arc<str>,
    /// Due instant.
    pub at: DateTime<Utc>,
    /// Recorded for the control group, not sent.
    pub holdout: bool,
    /// Decided but not sent (skipped by a cap, dead-lettered): the occurrence
    /// is settled, and it counts for no cap.
    pub skipped: bool,
}

impl PastSend {
    /// Whether it counts for `limits.per_member` (holdouts do).
    fn counts_for_campaign(&self) -> bool {
        !self.skipped
    }

    /// Whether it counts for the global cap (holdouts reach nobody: they do not).
    fn counts_for_global_cap(&self) -> bool {
        !self.skipped && !self.holdout
    }
}

/// Members' recorded pushes, for caps and to skip occurrences already recorded.
/// The daemon fills it from the ledger for each batch; `simulate` feeds each
/// planned send back with [`History::record`].
#[derive(Debug, Clone, Default)]
pub struct History {
    by_member: HashMap<i64, Vec<PastSend>>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a recorded push.
    pub fn insert(&mut self, member_id: i64, send: PastSend) {
        self.by_member.entry(member_id).or_default().push(send);
    }

    /// Records a planned send (as the ledger would).
    pub fn record(&mut self, send: &DueSend) {
        self.record_as(send, false);
    }

    /// Records a send the global cap dropped (as the ledger does: a skipped row
    /// that settles the occurrence and counts for no cap).
    pub fn record_capped(&mut self, send: &DueSend) {
        self.record_as(send, true);
    }

    fn record_as(&mut self, send: &DueSend, skipped: bool) {
        self.insert(
            send.member_id,
            PastSend {
                campaign_id: send.campaign_id.clone(),
                occurrence: send.occurrence.clone(),
                at: send.due_at,
                holdout: send.holdout,
                skipped,
            },
        );
    }

    /// The member's recorded pushes.
    pub fn sends(&self, member_id: i64) -> &[PastSend] {
        if self.by_member.is_empty() {
            return &[];
        }
        self.by_member.get(&member_id).map_or(&[], Vec::as_slice)
    }
}

/// A push that is due.
#[derive(Debug, Clone, PartialEq)]
pub struct DueSend {
    /// Campaign id.
    pub campaign_id: Arc<str>,
    /// The store's member id.
    pub member_id: i64,
    /// Occurrence key (ledger key with campaign and member).
    pub occurrence: Arc<str>,
    /// When to send (may precede the window's start within the campaign's `window`).
    pub due_at: DateTime<Utc>,
    /// The occurrence's instant on the member's wall clock (before any `spread`).
    pub local: NaiveDateTime,
    /// The member's zone.
    pub tz: Tz,
    /// The member's city, when resolved (or the fallback city).
    pub city: Option<CityId>,
    /// Language of the chosen variant.
    pub lang: Arc<str>,
    /// Index of the chosen variant in `Campaign::messages`.
    pub variant: usize,
    /// The rendered message.
    pub text: String,
    /// In the control group: recorded, not sent.
    pub holdout: bool,
}

/// Why a member of the audience gets no push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// No resolved place and the campaign's policy is `skip` (or the campaign
    /// filters by place and only a fallback zone is known).
    Unresolved,
    /// Climate trigger, but the city has no climate normals nearby (or only a
    /// fallback zone is known).
    NoClimate,
    /// Climate trigger, but the city's normal never crosses the threshold in the
    /// season (Lhasa never reaches 17 °C, Sanya never drops below it).
    NoCrossing,
    /// The member opted out.
    OptedOut,
    /// No message variant fits the member's language and there is no default.
    NoVariant,
    /// The template failed to render for this member (an undefined field).
    RenderFailed,
    /// `limits.per_member` reached.
    PerMemberCap,
    /// The global cap across campaigns dropped this send (lower priority).
    GlobalCap,
}

impl SkipReason {
    /// Every reason, in a stable order.
    pub const ALL: [SkipReason; 8] = [
        Self::Unresolved,
        Self::NoClimate,
        Self::NoCrossing,
        Self::OptedOut,
        Self::NoVariant,
        Self::RenderFailed,
        Self::PerMemberCap,
        Self::GlobalCap,
    ];

    /// Stable snake-case name (metrics label, JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unresolved => "unresolved",
            Self::NoClimate => "no_climate",
            Self::NoCrossing => "no_crossing",
            Self::OptedOut => "opted_out",
            Self::NoVariant => "no_variant",
            Self::RenderFailed => "render_failed",
            Self::PerMemberCap => "per_member_cap",
            Self::GlobalCap => "global_cap",
        }
    }
}

/// A member of a campaign's audience who gets no push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// Campaign id.
    pub campaign_id: Arc<str>,
    /// The store's member id.
    pub member_id: i64,
    /// The occurrence, for skips of one send (caps, variant, render); `None` for
    /// skips of the member as a whole (unresolved, no climate, opted out).
    pub occurrence: Option<Arc<str>>,
    /// Why.
    pub reason: SkipReason,
}

/// The engine's answer for one batch of recipients.
#[derive(Debug, Clone, Default)]
pub struct PlanBatch {
    /// Due sends, in recipient order, then by instant and campaign id.
    pub sends: Vec<DueSend>,
    /// Skipped audience members, in recipient order.
    pub skips: Vec<Skip>,
    /// The sends the global cap dropped (each also a [`Skip`] with
    /// [`SkipReason::GlobalCap`]): the daemon records them as skipped ledger
    /// rows, `simulate` with [`History::record_capped`], so the decision is
    /// final and the next window does not revisit it.
    pub capped: Vec<DueSend>,
    /// Campaigns that failed (panicked) in this call, with the reason: they
    /// planned nothing in it; the other campaigns were planned as usual.
    pub failures: Vec<(Arc<str>, String)>,
}

impl PlanBatch {
    fn fail(&mut self, campaign: &Arc<str>, panic: &(dyn std::any::Any + Send)) {
        let reason = crate::health::panic_reason(panic);
        self.failures.push((campaign.clone(), reason));
    }
}

/// A compiled campaign set. Build once per set ([`Engine::new`]); plan any number
/// of batches and windows, from any number of threads.
#[derive(Debug)]
pub struct Engine<'g> {
    geo: &'g Geo,
    config: EngineConfig,
    campaigns: Vec<Compiled>,
    /// Template values per city, built on first use.
    city_values: Vec<OnceLock<Arc<CityValues>>>,
    /// Each city's dialect tag, parsed on first use.
    city_tags: Vec<OnceLock<Arc<lang::Tag>>>,
}

#[derive(Debug)]
struct Compiled {
    id: Arc<str>,
    campaign: Campaign,
    trigger: CompiledTrigger,
    templates: Environment<'static>,
    template_names: Vec<String>,
    uses_attrs: bool,
    groups: Vec<VariantGroup>,
    /// The groups' tags, for matching (lang.rs).
    tags: lang::Variants,
    default_group: Option<usize>,
    countries: Vec<String>,
    provinces: Vec<String>,
    cities: Option<HashSet<CityId>>,
    languages: Vec<String>,
    fallback: Fallback,
    holdout_seed: hash::Seed,
    variant_seed: hash::Seed,
    spread_seed: hash::Seed,
    once_key: Arc<str>,
    /// When the ledger (or `simulate --from`) first saw the campaign: nothing
    /// that fell due more than `timing.catch_up` before is planned.
    first_seen: Option<DateTime<Utc>>,
    /// Crossing day per season year, per climate row (lazily filled).
    crossings: Mutex<HashMap<i32, CrossingTable>>,
}

/// One season year's crossing day per climate row (`Geo::climate_rows`, about a
/// hundred, where a table per city would hold thousands), filled on first use.
type CrossingTable = Arc<[OnceLock<Option<NaiveDate>>]>;

#[derive(Debug)]
enum CompiledTrigger {
    Once(NaiveDateTime),
    Cron(Box<croner::Cron>),
    Climate {
        metric: ClimateMetric,
        crosses: Crossing,
        threshold: f64,
        after: (u32, u32),
        local_time: chrono::NaiveTime,
    },
}

#[derive(Debug)]
enum Fallback {
    Skip,
    City(CityId),
    Zone(Tz),
}

#[derive(Debug)]
struct VariantGroup {
    /// The tag as written, normalized.
    tag: String,
    lang: Arc<str>,
    lang_value: Value,
    /// (message index, cumulative weight)
    variants: Vec<(usize, u64)>,
    total: u64,
}

/// A send that falls due after the window, seen only so the global cap can
/// keep room for it when it has the higher priority.
#[derive(Debug, Clone, Copy)]
struct Ahead {
    priority: i32,
    due: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Occ {
    key: Arc<str>,
    /// `YYYY-MM-DD` of `local`, ready for templates.
    local_date: Value,
    local: NaiveDateTime,
    due: DateTime<Utc>,
}

/// A member's own instant in an occurrence's `spread`: `share` (in `[0, 1)`) of
/// the way through, in elapsed time; a quiet hour it lands in moves it to their
/// end, as for the occurrence itself.
fn spread_out(
    due: DateTime<Utc>,
    spread: chrono::Duration,
    share: f64,
    tz: Tz,
    quiet: Option<&QuietHours>,
) -> DateTime<Utc> {
    let micros = spread.num_microseconds().unwrap_or(i64::MAX) as f64 * share;
    let due = due + chrono::Duration::microseconds(micros as i64);
    let wall = due.with_timezone(&tz).naive_local();
    match quiet {
        Some(quiet) if local::is_quiet(quiet, wall.time()) => {
            local::fire_at(tz, wall, Some(quiet)).0
        }
        _ => due,
    }
}

/// What one plan call knows about a campaign in one city (computed lazily).
#[derive(Debug, Clone)]
struct CityPlan {
    eligible: bool,
    no_climate: bool,
    /// Climate seasons (occurrence keys) starting in `[from, to)` without a crossing.
    no_crossing: Arc<[Arc<str>]>,
    occs: Arc<[Occ]>,
    /// The city's dialect tag.
    tag: Arc<lang::Tag>,
    /// The variant group for members without a language of their own.
    group: Option<usize>,
}

/// Per plan call, per campaign.
struct CampaignCtx<'e> {
    compiled: &'e Compiled,
    /// Occurrences due in `[lo, hi)` are computed: `lo` is the window's start
    /// less the campaign's `window` (never before `first_seen - catch_up`),
    /// `hi` the window's end plus the global cap's period (the look-ahead).
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    /// The window `[from, to)`: an occurrence due before `from` is late (only
    /// the latest one is kept), one due at or after `to` is only looked ahead.
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// The cities of this call's members (only those: a call holds no table
    /// over the whole gazetteer per campaign).
    city_plans: foldhash::HashMap<CityId, CityPlan>,
    zones: HashMap<Tz, Arc<[Occ]>>,
    city_zones: HashMap<(CityId, Tz), Arc<[Occ]>>,
    crossings: Vec<(i32, CrossingTable)>,
}

impl<'g> Engine<'g> {
    /// Compiles a campaign set (disabled campaigns are kept but never planned).
    pub fn new(campaigns: &[Campaign], geo: &'g Geo, config: EngineConfig) -> Result<Self, Error> {
        let n_cities = geo.cities().map(|(id, _)| id.0 as usize + 1).max().unwrap_or(0);
        let campaigns =
            campaigns.iter().map(|c| compile(c, geo)).collect::<Result<Vec<_>, Error>>()?;
        let city_values = (0..n_cities).map(|_| OnceLock::new()).collect();
        let city_tags = (0..n_cities).map(|_| OnceLock::new()).collect();
        Ok(Self { geo, config, campaigns, city_values, city_tags })
    }

    /// Sets when each campaign was first seen (by the ledger, or the start of a
    /// simulation): an occurrence that fell due before that, less the campaign's
    /// `catch_up`, is never planned. Campaigns `first_seen` gives `None` for are
    /// not bounded (the engine alone does not know when it was loaded).
    #[must_use]
    pub fn with_first_seen(mut self, first_seen: impl Fn(&str) -> Option<DateTime<Utc>>) -> Self {
        for compiled in &mut self.campaigns {
            compiled.first_seen = first_seen(&compiled.id);
        }
        self
    }

    /// The compiled campaigns, in the order given.
    pub fn campaigns(&self) -> impl Iterator<Item = &Campaign> {
        self.campaigns.iter().map(|c| &c.campaign)
    }

    /// Every due send for `recipients` in `[from, to)` (see the module docs for
    /// windows, caps and skips).
    pub fn plan(
        &self,
        recipients: &[Recipient<'_>],
        history: &History,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> PlanBatch {
        let mut batch = PlanBatch::default();
        // A campaign that panics (a bug, or a value no bound caught) is planned no
        // further in this call and reported in `failures`; the others go on.
        let mut ctxs: Vec<Option<CampaignCtx<'_>>> = self
            .campaigns
            .iter()
            .filter(|c| c.campaign.enabled)
            .map(|compiled| {
                let ctx =
                    std::panic::catch_unwind(AssertUnwindSafe(|| self.context(compiled, from, to)));
                ctx.map_err(|panic| batch.fail(&compiled.id, &*panic)).ok()
            })
            .collect();
        let mut scratch = Scratch::default();
        for recipient in recipients {
            let mut start = batch.sends.len();
            let mut member_lang = MemberLang::new(recipient.member);
            scratch.ahead.clear();
            for slot in &mut ctxs {
                let Some(ctx) = slot else { continue };
                let planned = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    self.plan_member(
                        ctx,
                        recipient,
                        &mut member_lang,
                        history,
                        &mut batch,
                        &mut scratch.ahead,
                    );
                }));
                if let Err(panic) = planned {
                    let id = ctx.compiled.id.clone();
                    batch.fail(&id, &*panic);
                    start -=
                        batch.sends[..start].iter().filter(|send| send.campaign_id == id).count();
                    batch.sends.retain(|send| send.campaign_id != id);
                    batch.skips.retain(|skip| skip.campaign_id != id);
                    batch.capped.retain(|send| send.campaign_id != id);
                    *slot = None;
                }
            }
            if let Some(cap) = self.config.global_cap
                && batch.sends.len() > start
            {
                self.apply_global_cap(cap, recipient, history, start, &mut batch, &mut scratch);
            }
        }
        batch
    }

    fn context<'e>(
        &'e self,
        compiled: &'e Compiled,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> CampaignCtx<'e> {
        let timing = &compiled.campaign.timing;
        let mut lo = from - timing.window.max(Duration::zero());
        if let Some(seen) = compiled.first_seen {
            lo = lo.max(seen - timing.catch_up.max(Duration::zero()));
        }
        // The global cap decides over its whole period: sends up to one period
        // after the window are computed (not planned) so a later, higher-priority
        // send keeps its room (the same decision whatever the window).
        let hi = to + self.config.global_cap.map_or(Duration::zero(), |cap| cap.per);
        let mut crossings = Vec::new();
        if matches!(compiled.trigger, CompiledTrigger::Climate { .. }) {
            let mut cache = compiled.crossings.lock().unwrap_or_else(|e| e.into_inner());
            for year in (lo.year() - 2)..=to.year() {
                let table = cache
                    .entry(year)
                    .or_insert_with(|| {
                        self.geo.climate_rows().iter().map(|_| OnceLock::new()).collect()
                    })
                    .clone();
                crossings.push((year, table));
            }
        }
        CampaignCtx {
            compiled,
            lo,
            hi,
            from,
            to,
            city_plans: foldhash::HashMap::default(),
            zones: HashMap::new(),
            city_zones: HashMap::new(),
            crossings,
        }
    }

    fn plan_member(
        &self,
        ctx: &mut CampaignCtx<'_>,
        recipient: &Recipient<'_>,
        member_lang: &mut MemberLang,
        history: &History,
        batch: &mut PlanBatch,
        ahead: &mut Vec<Ahead>,
    ) {
        let compiled = ctx.compiled;
        let audience = &compiled.campaign.audience;
        let member = recipient.member;
        if !tags_match(audience, &member.tags) {
            return;
        }
        let skip = |batch: &mut PlanBatch, reason| {
            batch.skips.push(Skip {
                campaign_id: compiled.id.clone(),
                member_id: recipient.member_id,
                occurrence: None,
                reason,
            });
        };
        // Where the member is: a city (resolved or fallback), a fallback zone, or nowhere.
        let (city_id, tz) = match (recipient.place, &compiled.fallback) {
            (Some(place), _) => (Some(place.city), place.tz),
            (None, Fallback::City(city)) => (Some(*city), self.geo.city(*city).tz),
            (None, Fallback::Zone(tz)) => (None, *tz),
            (None, Fallback::Skip) => return skip(batch, SkipReason::Unresolved),
        };
        let city = city_id.map(|id| self.geo.city(id));
        let (occs, city_tag) = match (city_id, city) {
            (Some(city_id), Some(city)) => {
                let plan = self.city_plan(ctx, city_id);
                if !plan.eligible {
                    return;
                }
                if let Some(near) = audience.near {
                    let (lat, lon) = match (member.lat, member.lon) {
                        (Some(lat), Some(lon)) => (lat, lon),
                        _ => (city.lat, city.lon),
                    };
                    if haversine_km(lat, lon, near.lat, near.lon) > near.radius_km {
                        return;
                    }
                }
                if !compiled.languages.is_empty()
                    && !compiled.language_ok(
                        member_lang.get(Some(&city.country)).map_or(&plan.tag.key, |t| &t.key),
                    )
                {
                    return;
                }
                if plan.no_climate {
                    return skip(batch, SkipReason::NoClimate);
                }
                for season in plan.no_crossing.iter() {
                    batch.skips.push(Skip {
                        campaign_id: compiled.id.clone(),
                        member_id: recipient.member_id,
                        occurrence: Some(season.clone()),
                        reason: SkipReason::NoCrossing,
                    });
                }
                let (occs, tag) = (plan.occs.clone(), Some((plan.tag.clone(), plan.group)));
                if tz == city.tz {
                    (occs, tag)
                } else {
                    (self.city_zone_occs(ctx, city_id, tz), tag)
                }
            }
            _ => {
                if has_place_filter(audience) {
                    return skip(batch, SkipReason::Unresolved);
                }
                if !compiled.languages.is_empty()
                    && let Some(tag) = member_lang.get(None)
                    && !compiled.language_ok(&tag.key)
                {
                    return;
                }
                if matches!(compiled.trigger, CompiledTrigger::Climate { .. }) {
                    return skip(batch, SkipReason::NoClimate);
                }
                (self.zone_occs(ctx, tz), None)
            }
        };
        if occs.is_empty() {
            return;
        }
        if member.opted_out_at.is_some() {
            return skip(batch, SkipReason::OptedOut);
        }
        let past = history.sends(recipient.member_id);
        let mut counted = past
            .iter()
            .filter(|p| *p.campaign_id == *compiled.id && p.counts_for_campaign())
            .count() as u64;
        // The member's language, then the city's dialect, then the default (lang.rs).
        let group = match (member_lang.get(city.map(|c| c.country.as_str())), city_tag) {
            (None, Some((_, group))) => group,
            (member_tag, city_tag) => {
                compiled.group_for(member_tag, city_tag.as_ref().map(|(tag, _)| &**tag))
            }
        };
        for occ in occs.iter() {
            if past.iter().any(|p| *p.campaign_id == *compiled.id && p.occurrence == occ.key) {
                continue;
            }
            if occ.due >= ctx.to {
                // Looked ahead for the global cap only (decided in its own window):
                // what would be sent then, without skips or rendering.
                let capped = compiled
                    .campaign
                    .limits
                    .per_member
                    .is_some_and(|cap| counted >= u64::from(cap));
                if capped || group.is_none() {
                    continue;
                }
                counted += 1;
                let holdout = audience.holdout > 0.0
                    && compiled.holdout_seed.unit(&member.external_id) < audience.holdout;
                if !holdout {
                    let due = self.spread_due(compiled, occ.due, tz, &member.external_id);
                    ahead.push(Ahead { priority: compiled.campaign.priority, due });
                }
                continue;
            }
            let occ_skip = |batch: &mut PlanBatch, reason| {
                batch.skips.push(Skip {
                    campaign_id: compiled.id.clone(),
                    member_id: recipient.member_id,
                    occurrence: Some(occ.key.clone()),
                    reason,
                });
            };
            if let Some(cap) = compiled.campaign.limits.per_member
                && counted >= u64::from(cap)
            {
                occ_skip(batch, SkipReason::PerMemberCap);
                continue;
            }
            let Some(group) = group.map(|g| &compiled.groups[g]) else {
                occ_skip(batch, SkipReason::NoVariant);
                continue;
            };
            let variant = group.pick(compiled.variant_seed.hash(&member.external_id));
            let context = RenderContext {
                name: member.name.as_deref().map(Value::from),
                external_id: Value::from(member.external_id.as_str()),
                city: city_id.map(|id| self.city_values(id)),
                lang: group.lang_value.clone(),
                local_date: occ.local_date.clone(),
                attrs: compiled.uses_attrs.then(|| Value::from_serialize(&member.attrs)),
            };
            let Ok(text) = compiled.render(variant, Value::from_object(context)) else {
                occ_skip(batch, SkipReason::RenderFailed);
                continue;
            };
            let holdout = audience.holdout > 0.0
                && compiled.holdout_seed.unit(&member.external_id) < audience.holdout;
            counted += 1;
            let due_at = self.spread_due(compiled, occ.due, tz, &member.external_id);
            batch.sends.push(DueSend {
                campaign_id: compiled.id.clone(),
                member_id: recipient.member_id,
                occurrence: occ.key.clone(),
                due_at,
                local: occ.local,
                tz,
                city: city_id,
                lang: group.lang.clone(),
                variant,
                text,
                holdout,
            });
        }
    }

    /// The member's own instant for an occurrence due at `due` (its share of
    /// the campaign's `spread`, if any).
    fn spread_due(
        &self,
        compiled: &Compiled,
        due: DateTime<Utc>,
        tz: Tz,
        external_id: &str,
    ) -> DateTime<Utc> {
        let timing = &compiled.campaign.timing;
        match timing.spread {
            Some(spread) => {
                let share = compiled.spread_seed.unit(external_id);
                spread_out(due, spread, share, tz, timing.quiet_hours.as_ref())
            }
            None => due,
        }
    }

    fn city_values(&self, id: CityId) -> Arc<CityValues> {
        match self.city_values.get(id.0 as usize) {
            Some(slot) => slot.get_or_init(|| Arc::new(CityValues::new(self.geo.city(id)))).clone(),
            None => Arc::new(CityValues::new(self.geo.city(id))),
        }
    }

    fn city_tag(&self, id: CityId, city: &City) -> Arc<lang::Tag> {
        let tag = || Arc::new(lang::Tag::new(&city.lang_tag, Some(&city.country)));
        match self.city_tags.get(id.0 as usize) {
            Some(slot) => slot.get_or_init(tag).clone(),
            None => tag(),
        }
    }

    /// The campaign's facts for a city in this call, computed on first use.
    fn city_plan<'c>(&self, ctx: &'c mut CampaignCtx<'_>, id: CityId) -> &'c CityPlan {
        if !ctx.city_plans.contains_key(&id) {
            let plan = self.compute_city_plan(ctx, id);
            ctx.city_plans.insert(id, plan);
        }
        &ctx.city_plans[&id]
    }

    fn compute_city_plan(&self, ctx: &mut CampaignCtx<'_>, id: CityId) -> CityPlan {
        let compiled = ctx.compiled;
        let city = self.geo.city(id);
        let tag = self.city_tag(id, city);
        let group = compiled.group_for(None, Some(&tag));
        let eligible = compiled.city_eligible(id, city);
        let no_climate = match &compiled.trigger {
            CompiledTrigger::Climate { metric, .. } => {
                eligible && self.geo.normal(id, 1, *metric).is_none()
            }
            _ => false,
        };
        let (occs, no_crossing) = if !eligible || no_climate {
            (Arc::from(Vec::new()), Arc::from(Vec::new()))
        } else if matches!(compiled.trigger, CompiledTrigger::Climate { .. }) {
            (self.climate_occs(ctx, id, city.tz), self.seasons_without_crossing(ctx, id, city.tz))
        } else {
            (self.zone_occs(ctx, city.tz), Arc::from(Vec::new()))
        };
        CityPlan { eligible, no_climate, no_crossing, occs, tag, group }
    }

    fn city_zone_occs(&self, ctx: &mut CampaignCtx<'_>, id: CityId, tz: Tz) -> Arc<[Occ]> {
        if !matches!(ctx.compiled.trigger, CompiledTrigger::Climate { .. }) {
            return self.zone_occs(ctx, tz);
        }
        if let Some(occs) = ctx.city_zones.get(&(id, tz)) {
            return occs.clone();
        }
        let occs = self.climate_occs(ctx, id, tz);
        ctx.city_zones.insert((id, tz), occs.clone());
        occs
    }

    /// Once and cron occurrences in one zone, computed once per call.
    fn zone_occs(&self, ctx: &mut CampaignCtx<'_>, tz: Tz) -> Arc<[Occ]> {
        if let Some(occs) = ctx.zones.get(&tz) {
            return occs.clone();
        }
        let compiled = ctx.compiled;
        let quiet = compiled.campaign.timing.quiet_hours.as_ref();
        let mut occs = Vec::new();
        match &compiled.trigger {
            CompiledTrigger::Once(at) => {
                let (due, local) = local::fire_at(tz, *at, quiet);
                if ctx.lo <= due && due < ctx.hi && compiled.in_bounds(tz, due) {
                    occs.push(Occ {
                        key: compiled.once_key.clone(),
                        local_date: date_value(local),
                        local,
                        due,
                    });
                }
            }
            CompiledTrigger::Cron(cron) => {
                let first = ctx.lo.with_timezone(&tz).naive_local() - Duration::days(2);
                let last = ctx.hi.with_timezone(&tz).naive_local() + Duration::days(1);
                let mut nominal = first;
                let mut inclusive = true;
                let mut last_due: Option<DateTime<Utc>> = None;
                while occs.len() < MAX_OCCURRENCES_PER_ZONE {
                    let Ok(next) = cron.find_next_occurrence(&nominal.and_utc(), inclusive) else {
                        break;
                    };
                    nominal = next.naive_utc();
                    inclusive = false;
                    if nominal >= last {
                        break;
                    }
                    let (due, local) = local::fire_at(tz, nominal, quiet);
                    // Gap-shifted and quiet-shifted times landing on one instant fire once.
                    if last_due.is_some_and(|last| due <= last) {
                        continue;
                    }
                    last_due = Some(due);
                    if ctx.lo <= due && due < ctx.hi && compiled.in_bounds(tz, due) {
                        let key = if nominal.and_utc().timestamp() % 60 == 0 {
                            nominal.format("%Y-%m-%dT%H:%M").to_string()
                        } else {
                            nominal.format("%Y-%m-%dT%H:%M:%S").to_string()
                        };
                        occs.push(Occ {
                            key: Arc::from(key),
                            local_date: date_value(local),
                            local,
                            due,
                        });
                    }
                }
            }
            CompiledTrigger::Climate { .. } => {}
        }
        let occs: Arc<[Occ]> = Arc::from(latest_late_only(occs, ctx.from));
        ctx.zones.insert(tz, occs.clone());
        occs
    }

    /// Climate occurrences of one city in one zone.
    fn climate_occs(&self, ctx: &CampaignCtx<'_>, id: CityId, tz: Tz) -> Arc<[Occ]> {
        let compiled = ctx.compiled;
        let CompiledTrigger::Climate { local_time, .. } = &compiled.trigger else {
            return Arc::from(Vec::new());
        };
        let quiet = compiled.campaign.timing.quiet_hours.as_ref();
        let mut occs = Vec::new();
        for (year, table) in &ctx.crossings {
            let Some(day) = self.season_crossing(compiled, id, *year, table) else { continue };
            let (due, local) = local::fire_at(tz, day.and_time(*local_time), quiet);
            if ctx.lo <= due && due < ctx.hi && compiled.in_bounds(tz, due) {
                occs.push(Occ {
                    key: Arc::from(year.to_string()),
                    local_date: date_value(local),
                    local,
                    due,
                });
            }
        }
        Arc::from(latest_late_only(occs, ctx.from))
    }

    /// A season's crossing day in a city, cached in the campaign's table under
    /// the city's climate row.
    fn season_crossing(
        &self,
        compiled: &Compiled,
        id: CityId,
        year: i32,
        table: &CrossingTable,
    ) -> Option<NaiveDate> {
        let CompiledTrigger::Climate { metric, crosses, threshold, after, .. } = &compiled.trigger
        else {
            return None;
        };
        let climate = self.geo.climate(id)?;
        let compute = || crossing_day(climate.row, year, *metric, *crosses, *threshold, *after);
        match table.get(climate.index) {
            Some(slot) => *slot.get_or_init(compute),
            None => compute(),
        }
    }

    /// The seasons of a city whose search starts (`after` at `local_time`) in
    /// `[from, to)` and finds no crossing: reported once each, as skips.
    fn seasons_without_crossing(
        &self,
        ctx: &CampaignCtx<'_>,
        id: CityId,
        tz: Tz,
    ) -> Arc<[Arc<str>]> {
        let compiled = ctx.compiled;
        let CompiledTrigger::Climate { after, local_time, .. } = &compiled.trigger else {
            return Arc::from(Vec::new());
        };
        let mut seasons = Vec::new();
        for (year, table) in &ctx.crossings {
            let Some(start) = NaiveDate::from_ymd_opt(*year, after.0, after.1)
                .or_else(|| NaiveDate::from_ymd_opt(*year, after.0, after.1.saturating_sub(1)))
            else {
                continue;
            };
            let (at, _) = local::fire_at(tz, start.and_time(*local_time), None);
            if ctx.from <= at
                && at < ctx.to
                && compiled.in_bounds(tz, at)
                && self.season_crossing(compiled, id, *year, table).is_none()
            {
                seasons.push(Arc::from(year.to_string()));
            }
        }
        Arc::from(seasons)
    }

    /// Drops the member's sends that would break the global cap, deciding over
    /// the cap's whole period: the window's sends (`batch.sends[start..]`) and the
    /// ones looked ahead (`scratch.ahead`) are kept in order of priority (higher
    /// first), then instant, then campaign and occurrence, each only if it still
    /// fits beside the member's recorded pushes and the sends kept before it. A
    /// dropped send becomes a [`SkipReason::GlobalCap`] skip and a `capped` entry.
    fn apply_global_cap(
        &self,
        cap: GlobalCap,
        recipient: &Recipient<'_>,
        history: &History,
        start: usize,
        batch: &mut PlanBatch,
        scratch: &mut Scratch,
    ) {
        let sends = &batch.sends[start..];
        let priority = |send: &DueSend| {
            self.campaigns
                .iter()
                .find(|c| c.id == send.campaign_id)
                .map_or(0, |c| c.campaign.priority)
        };
        // Candidates: `i < sends.len()` is a send of the window, the rest look ahead.
        let ahead = &scratch.ahead;
        let key = |i: usize| match sends.get(i) {
            Some(send) => (priority(send), send.due_at),
            None => (ahead[i - sends.len()].priority, ahead[i - sends.len()].due),
        };
        scratch.order.clear();
        scratch.order.extend((0..sends.len()).filter(|&i| !sends[i].holdout));
        scratch.order.extend(sends.len()..sends.len() + ahead.len());
        scratch.order.sort_by(|&a, &b| {
            let ((pa, da), (pb, db)) = (key(a), key(b));
            pb.cmp(&pa).then(da.cmp(&db)).then_with(|| match (sends.get(a), sends.get(b)) {
                (Some(a), Some(b)) => {
                    a.campaign_id.cmp(&b.campaign_id).then(a.occurrence.cmp(&b.occurrence))
                }
                _ => a.cmp(&b),
            })
        });
        scratch.times.clear();
        scratch.times.extend(
            history
                .sends(recipient.member_id)
                .iter()
                .filter(|p| p.counts_for_global_cap())
                .map(|p| p.at),
        );
        scratch.times.sort_unstable();
        scratch.keep.clear();
        scratch.keep.resize(sends.len(), true);
        for &index in &scratch.order {
            let at = key(index).1;
            if fits(&scratch.times, at, cap) {
                let position = scratch.times.partition_point(|t| *t <= at);
                scratch.times.insert(position, at);
            } else if index < sends.len() {
                scratch.keep[index] = false;
            }
        }
        if scratch.keep.iter().all(|k| *k) {
            return;
        }
        let tail: Vec<DueSend> = batch.sends.drain(start..).collect();
        for (send, keep) in tail.into_iter().zip(scratch.keep.iter()) {
            if *keep {
                batch.sends.push(send);
            } else {
                batch.skips.push(Skip {
                    campaign_id: send.campaign_id.clone(),
                    member_id: send.member_id,
                    occurrence: Some(send.occurrence.clone()),
                    reason: SkipReason::GlobalCap,
                });
                batch.capped.push(send);
            }
        }
    }
}

/// A member's own language tag, parsed only when a campaign needs it (most
/// members are not due in most windows), for the country they are in (a tag
/// without a region takes that country's likely script).
#[derive(Debug)]
struct MemberLang<'m> {
    lang: Option<&'m str>,
    parsed: Option<(Option<String>, lang::Tag)>,
}

impl<'m> MemberLang<'m> {
    fn new(member: &'m Member) -> Self {
        Self { lang: member.lang.as_deref().filter(|l| !l.trim().is_empty()), parsed: None }
    }

    fn get(&mut self, country: Option<&str>) -> Option<&lang::Tag> {
        let lang = self.lang?;
        if self.parsed.as_ref().is_none_or(|(parsed, _)| parsed.as_deref() != country) {
            self.parsed = Some((country.map(str::to_string), lang::Tag::new(lang, country)));
        }
        self.parsed.as_ref().map(|(_, tag)| tag)
    }
}

/// The catch-up rule: of the occurrences that fell due before the window's
/// start (`from`), only the latest is kept; a member who arrives late gets at
/// most one missed push per campaign, never a backlog. `occs` is in due order.
fn latest_late_only(mut occs: Vec<Occ>, from: DateTime<Utc>) -> Vec<Occ> {
    let late = occs.partition_point(|occ| occ.due < from);
    if late > 1 {
        occs.drain(..late - 1);
    }
    occs
}

/// Bound on one zone's cron occurrences per call (a per-second cron over a year
/// would otherwise hold millions).
const MAX_OCCURRENCES_PER_ZONE: usize = 100_000;

#[derive(Debug, Default)]
struct Scratch {
    /// The member's sends looked ahead (global cap).
    ahead: Vec<Ahead>,
    order: Vec<usize>,
    times: Vec<DateTime<Utc>>,
    keep: Vec<bool>,
}

/// Whether one more push at `at` keeps every rolling period of `cap.per` at or
/// under `cap.max` pushes, given the member's other pushes (`sorted`).
fn fits(sorted: &[DateTime<Utc>], at: DateTime<Utc>, cap: GlobalCap) -> bool {
    // Only periods containing `at` can grow; the fullest starts at a push in
    // (at - per, at] or at `at` itself.
    let starts = sorted.iter().copied().filter(|t| *t > at - cap.per && *t <= at);
    std::iter::once(at).chain(starts).all(|start| {
        let end = start + cap.per;
        let others = sorted.iter().filter(|t| **t >= start && **t < end).count();
        others < cap.max as usize
    })
}

/// The first day after `after` in season `year` on which the row's normal crosses.
fn crossing_day(
    row: &ClimateRow,
    year: i32,
    metric: ClimateMetric,
    crosses: Crossing,
    threshold: f64,
    after: (u32, u32),
) -> Option<NaiveDate> {
    let start = NaiveDate::from_ymd_opt(year, after.0, after.1)
        .or_else(|| NaiveDate::from_ymd_opt(year, after.0, after.1.saturating_sub(1)))?;
    let mut previous = row.normal(start.ordinal(), metric)?;
    let mut day = start;
    for _ in 0..366 {
        day = day.succ_opt()?;
        let value = row.normal(day.ordinal(), metric)?;
        let crossed = match crosses {
            Crossing::Below => previous >= threshold && value < threshold,
            Crossing::Above => previous <= threshold && value > threshold,
        };
        if crossed {
            return Some(day);
        }
        previous = value;
    }
    None
}

fn tags_match(audience: &crate::campaign::Audience, tags: &[String]) -> bool {
    let has = |tag: &String| tags.iter().any(|t| t == tag);
    (audience.tags_any.is_empty() || audience.tags_any.iter().any(has))
        && audience.tags_all.iter().all(has)
        && !audience.tags_none.iter().any(has)
}

fn has_place_filter(audience: &crate::campaign::Audience) -> bool {
    !audience.countries.is_empty()
        || !audience.provinces.is_empty()
        || !audience.cities.is_empty()
        || audience.near.is_some()
}

/// Great-circle distance, km.
fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0088;
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let d_phi = (lat2 - lat1).to_radians();
    let d_lambda = (lon2 - lon1).to_radians();
    let a = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

/// A province name reduced for matching: lowercase, without the administrative
/// suffix (`黑龙江省` → `黑龙江`, `Guangdong Province` → `guangdong`).
fn province_key(name: &str) -> String {
    const SUFFIXES: &[&str] = &[
        "维吾尔自治区",
        "壮族自治区",
        "回族自治区",
        "特别行政区",
        "自治区",
        "省",
        "市",
        " province",
        " sheng",
        " shi",
        " sar",
    ];
    let mut key = name.trim().to_lowercase();
    for suffix in SUFFIXES {
        if let Some(stripped) = key.strip_suffix(suffix)
            && !stripped.is_empty()
        {
            key = stripped.trim().to_string();
            break;
        }
    }
    name_key(&key)
}

fn compile(campaign: &Campaign, geo: &Geo) -> Result<Compiled, Error> {
    let id: Arc<str> = Arc::from(campaign.id.as_str());
    let trigger = match &campaign.timing.trigger {
        Trigger::Once { at } => CompiledTrigger::Once(*at),
        Trigger::Cron { expr } => {
            let parser = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Optional)
                .build();
            let cron = parser.parse(expr).map_err(|error| Error::Cron {
                campaign: campaign.id.clone(),
                expr: expr.clone(),
                reason: error.to_string(),
            })?;
            CompiledTrigger::Cron(Box::new(cron))
        }
        Trigger::Climate { metric, crosses, threshold, after, local_time } => {
            CompiledTrigger::Climate {
                metric: *metric,
                crosses: *crosses,
                threshold: *threshold,
                after: *after,
                local_time: *local_time,
            }
        }
    };
    let mut templates = Environment::new();
    templates.set_undefined_behavior(UndefinedBehavior::Strict);
    let mut groups: Vec<VariantGroup> = Vec::new();
    let mut tags = lang::Variants::default();
    for (index, message) in campaign.messages.iter().enumerate() {
        templates.add_template_owned(index.to_string(), message.text.clone()).map_err(
            |source| Error::Template {
                campaign: campaign.id.clone(),
                index,
                lang: message.lang.clone(),
                source,
            },
        )?;
        let tag = lang::normalize(&message.lang);
        let group = match groups.iter().position(|g| g.tag == tag) {
            Some(group) => group,
            None => {
                tags.push(&tag);
                groups.push(VariantGroup {
                    tag,
                    lang: Arc::from(message.lang.as_str()),
                    lang_value: Value::from(message.lang.as_str()),
                    variants: Vec::new(),
                    total: 0,
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[group];
        group.total += u64::from(message.weight);
        group.variants.push((index, group.total));
    }
    let mut compiled = Compiled {
        id: id.clone(),
        campaign: campaign.clone(),
        trigger,
        template_names: (0..campaign.messages.len()).map(|i| i.to_string()).collect(),
        uses_attrs: campaign.messages.iter().any(|m| m.text.contains("attrs")),
        templates,
        groups,
        tags,
        default_group: None,
        countries: campaign.audience.countries.iter().map(|c| c.trim().to_uppercase()).collect(),
        provinces: campaign.audience.provinces.iter().map(|p| province_key(p)).collect(),
        cities: None,
        languages: campaign.audience.languages.iter().map(|l| lang::key(l)).collect(),
        fallback: Fallback::Skip,
        holdout_seed: hash::Seed::new(&campaign.id, "holdout"),
        variant_seed: hash::Seed::new(&campaign.id, "variant"),
        spread_seed: hash::Seed::new(&campaign.id, "spread"),
        once_key: Arc::from("once"),
        first_seen: None,
        crossings: Mutex::new(HashMap::new()),
    };
    compiled.default_group = compiled.tags.best(&lang::Tag::new(&campaign.default_lang, None));
    if !campaign.audience.cities.is_empty() {
        let mut cities = HashSet::new();
        for name in &campaign.audience.cities {
            // `check` reports a shared name (Suzhou) as an error; so does this.
            let (city, _) = geo.lookup_city(name, None).map_err(|error| Error::UnknownCity {
                campaign: campaign.id.clone(),
                what: "audience.cities",
                name: name.clone(),
                source: crate::geo::ResolveError::Unresolved(vec![error.to_string()]),
            })?;
            cities.insert(city);
        }
        compiled.cities = Some(cities);
    }
    compiled.fallback = match &campaign.timing.unresolved {
        Unresolved::Skip => Fallback::Skip,
        Unresolved::FallbackZone(tz) => Fallback::Zone(*tz),
        Unresolved::FallbackCity(name) => {
            Fallback::City(geo.find_city(name, None).map_err(|source| Error::UnknownCity {
                campaign: campaign.id.clone(),
                what: "timing.unresolved",
                name: name.clone(),
                source,
            })?)
        }
    };
    Ok(compiled)
}

impl Compiled {
    /// The variant group for a member's language and the city's dialect tag,
    /// else the default (see `lang`).
    fn group_for(&self, member: Option<&lang::Tag>, city: Option<&lang::Tag>) -> Option<usize> {
        self.tags.choose(member, city).or(self.default_group)
    }

    fn language_ok(&self, key: &str) -> bool {
        self.languages.is_empty() || self.languages.iter().any(|l| lang::has_prefix(key, l))
    }

    fn city_eligible(&self, id: CityId, city: &City) -> bool {
        (self.countries.is_empty()
            || self.countries.iter().any(|c| c.eq_ignore_ascii_case(&city.country)))
            && (self.provinces.is_empty() || {
                let en = province_key(&city.province);
                let zh = city.province_zh.as_deref().map(province_key);
                self.provinces.iter().any(|p| *p == en || zh.as_deref() == Some(p.as_str()))
            })
            && self.cities.as_ref().is_none_or(|cities| cities.contains(&id))
    }

    fn in_bounds(&self, tz: Tz, due: DateTime<Utc>) -> bool {
        let instant = |bound: &Bound| match bound {
            Bound::Instant(at) => *at,
            Bound::Local(local) => local::to_instant(tz, *local).0,
        };
        self.campaign.starts.as_ref().is_none_or(|b| due >= instant(b))
            && self.campaign.ends.as_ref().is_none_or(|b| due < instant(b))
    }

    fn render(&self, variant: usize, context: Value) -> Result<String, minijinja::Error> {
        self.templates.get_template(&self.template_names[variant])?.render(context)
    }
}

impl VariantGroup {
    /// The variant for a member's hash, by weight.
    fn pick(&self, hash: u64) -> usize {
        if self.total == 0 {
            return self.variants[(hash % self.variants.len() as u64) as usize].0;
        }
        let point = hash % self.total;
        self.variants.iter().find(|(_, cumulative)| point < *cumulative).map_or(0, |(i, _)| *i)
    }
}

fn date_value(local: NaiveDateTime) -> Value {
    Value::from(local.date().format("%Y-%m-%d").to_string())
}

/// A city's template fields, built once per city and shared by every render.
#[derive(Debug)]
struct CityValues {
    city: Value,
    city_zh: Option<Value>,
    province: Value,
    province_zh: Option<Value>,
    country: Value,
}

impl CityValues {
    fn new(city: &City) -> Self {
        let text = |s: &str| (!s.is_empty()).then(|| Value::from(s));
        Self {
            city: Value::from(city.name.as_str()),
            city_zh: city.name_zh.as_deref().and_then(text),
            province: Value::from(city.province.as_str()),
            province_zh: city.province_zh.as_deref().and_then(text),
            country: Value::from(city.country.as_str()),
        }
    }
}

/// Exactly the template fields of [`crate::campaign::TEMPLATE_FIELDS`]; a value
/// the member or city lacks is undefined, so strict templates fail on it.
#[derive(Debug)]
struct RenderContext {
    name: Option<Value>,
    external_id: Value,
    city: Option<Arc<CityValues>>,
    lang: Value,
    local_date: Value,
    attrs: Option<Value>,
}

impl Object for RenderContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let city = self.city.as_deref();
        match key.as_str()? {
            "name" => self.name.clone(),
            "external_id" => Some(self.external_id.clone()),
            "city" => city.map(|c| c.city.clone()),
            "city_zh" => city.and_then(|c| c.city_zh.clone()),
            "province" => city.map(|c| c.province.clone()),
            "province_zh" => city.and_then(|c| c.province_zh.clone()),
            "country" => city.map(|c| c.country.clone()),
            "lang" => Some(self.lang.clone()),
            "local_date" => Some(self.local_date.clone()),
            "attrs" => self.attrs.clone(),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(crate::campaign::TEMPLATE_FIELDS)
    }
}

/// Parses a global cap period (`per`, `--global-cap MAX/PER`): the shared
/// duration grammar ([`crate::duration`]), longer than zero, at most
/// [`crate::duration::MAX_CAP_PERIOD`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match crate::duration::parse_chrono(text, crate::duration::MAX_CAP_PERIOD) {
        Ok(per) if per > Duration::zero() => Ok(per),
        Ok(_) => Err(format!("the global cap's period must be longer than zero, found {text:?}")),
        Err(error) => Err(error.to_string()),
    }
}

/// The global cap's period as text in the daemon config.
mod duration_text {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let text = crate::duration::format(value.to_std().unwrap_or_default());
        serializer.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_cap_reads_from_the_daemon_config() {
        let cap: GlobalCap = toml::from_str("max = 2\nper = \"7d\"").unwrap();
        assert_eq!(cap, GlobalCap { max: 2, per: Duration::days(7) });
        let unknown = toml::from_str::<GlobalCap>("max = 2\nper = \"7d\"\nburst = 1").unwrap_err();
        assert!(unknown.to_string().contains("unknown field `burst`"), "{unknown}");
        let unit = toml::from_str::<GlobalCap>("max = 2\nper = \"7y\"").unwrap_err();
        assert!(unit.to_string().contains("unknown unit `y`"), "{unit}");
        assert_eq!(parse_duration("36h"), Ok(Duration::hours(36)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::hours(36)));
        assert!(parse_duration("0d").is_err());
        let long = parse_duration("9999999999999w").unwrap_err();
        assert!(long.contains("longer than the maximum, 31d"), "{long}");
    }

    #[test]
    fn rolling_cap_counts_every_period_containing_the_new_push() {
        let t = |h: i64| DateTime::<Utc>::UNIX_EPOCH + Duration::hours(h);
        let cap = GlobalCap { max: 2, per: Duration::hours(24) };
        assert!(fits(&[t(0)], t(10), cap));
        assert!(!fits(&[t(0), t(5)], t(10), cap));
        // 0 and 30 are 30 h apart; 20 shares a day with each of them, but only with one at a time.
        assert!(fits(&[t(0), t(30)], t(20), cap));
        assert!(!fits(&[t(0), t(20), t(30)], t(25), cap));
        assert!(fits(&[t(0), t(5)], t(24), cap));
    }

    #[test]
    fn haversine_harbin_to_guangzhou() {
        let km = haversine_km(45.75, 126.65, 23.1167, 113.25);
        assert!((km - 2800.0).abs() < 60.0, "{km}");
    }

    #[test]
    fn province_names_match_in_either_language() {
        assert_eq!(province_key("黑龙江省"), province_key("黑龙江"));
        assert_eq!(province_key("Guangdong Province"), province_key("guangdong"));
        assert_eq!(province_key("广西壮族自治区"), province_key("广西"));
    }
}
