//! The supervisor behind `almanac run`: connects the store, imports the member
//! file, loads campaigns, then runs the planner (driven by tokio-cron-scheduler),
//! the dispatcher and the HTTP server under one cancellation tree.
//!
//! - **Planner**: every `planner.tick` (real time, also under the demo clock) it
//!   streams members page by page through the timing engine for the window
//!   `[last_planned, now + horizon)` on the daemon's clock and writes due sends to
//!   the ledger (idempotent: unique per campaign, occurrence and member). A tick
//!   plans only once a quarter of the horizon is unplanned (or the campaigns
//!   changed), so a million members are not re-read every tick; reading, planning
//!   and inserting overlap page by page. Member
//!   local instants come from the timing engine (chrono-tz), never from
//!   tokio-cron-scheduler's time-zone jobs, which fix a zone's UTC offset when the
//!   job is created. Paused campaigns are not planned.
//! - **Reload**: SIGHUP or a (debounced) change in the campaigns directory reloads
//!   every campaign file at once; a broken file is reported with `file:line:col`
//!   and the previous set keeps running; the diff is logged.
//! - **systemd**: READY=1 once the store and campaigns are loaded, RELOADING=1 /
//!   READY=1 (with MONOTONIC_USEC) around reloads, STOPPING=1, WATCHDOG=1 pings
//!   when `WatchdogSec=` is set, STATUS= with counts.
//! - **Stopping safely**: SIGTERM or SIGINT stops the planner first, then the
//!   dispatcher stops claiming and finishes or releases its in-flight rows within
//!   `shutdown_grace`, then the HTTP server stops; exit 0. A second signal exits at
//!   once (status 1).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::campaign::{Campaign, Diagnostic, Severity};
use crate::clock::{Clock, ScaledClock, SystemClock};
use crate::config::Config;
use crate::delivery::{Channels, Dispatcher, DispatcherHandle};
use crate::geo::{CityId, Geo};
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::secret::read_secret;
use crate::store::{NewSend, PlannerMark, Resolution, SendStatus, Store};
use crate::timing::{Engine, EngineConfig, History, PastSend, Recipient};

/// Errors that stop the daemon (before or while starting).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration or secrets.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// The WeChat callback's settings.
    #[error(transparent)]
    Callback(#[from] crate::http::wechat::Error),
    /// A secret the configuration names.
    #[error(transparent)]
    Secret(#[from] crate::secret::Error),
    /// The store.
    #[error("store")]
    Store(#[from] crate::store::Error),
    /// Campaign files did not load at start (each line a `file:line:col` error).
    #[error("campaigns did not load:\n{0}")]
    Campaigns(String),
    /// The member file.
    #[error("member file")]
    Members(#[from] crate::members::Error),
    /// Listening, signals, watching.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The `[geo]` settings.
    #[error("[geo]")]
    Geo(#[from] crate::geo::GeoError),
    /// Channels.
    #[error("channels")]
    Delivery(#[from] crate::delivery::Error),
    /// The job scheduler.
    #[error("scheduler")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The campaigns currently running; swapped whole on reload.
#[derive(Debug, Default)]
pub struct CampaignSet {
    /// Every loaded campaign (enabled or not).
    pub campaigns: Vec<Campaign>,
}

/// The live campaign set shared by the planner and the HTTP server.
#[derive(Debug, Default)]
pub struct LiveCampaigns {
    current: RwLock<Arc<CampaignSet>>,
    loaded: AtomicBool,
}

impl LiveCampaigns {
    /// The current set.
    pub fn current(&self) -> Arc<CampaignSet> {
        self.current.read().expect("campaign set lock").clone()
    }
    /// Whether a set has been loaded (readiness).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }
    /// Swaps in a new set (start, reload) and marks the daemon loaded.
    pub fn replace(&self, set: CampaignSet) {
        *self.current.write().expect("campaign set lock") = Arc::new(set);
        self.loaded.store(true, Ordering::Release);
    }
}

/// A campaign's state label (`active`, `paused`, `disabled`), as in metrics and
/// the admin API.
pub fn campaign_state(campaign: &Campaign, paused: &HashSet<String>) -> &'static str {
    if !campaign.enabled {
        "disabled"
    } else if paused.contains(&campaign.id) {
        "paused"
    } else {
        "active"
    }
}

/// Ids of the campaigns an operator paused.
pub async fn paused_campaigns(store: &Store) -> Result<HashSet<String>, crate::store::Error> {
    Ok(store
        .campaign_states()
        .await?
        .into_iter()
        .filter(|state| state.paused)
        .map(|state| state.campaign_id)
        .collect())
}

/// Resolves a member's place with the bundled data, counting the source.
pub fn resolve(geo: &Geo, metrics: &Metrics, member: &crate::members::Member) -> Resolution {
    let resolved = crate::members::resolve_with_geo(geo, member);
    let source = resolved.as_ref().map_or("none", |place| place.source.as_str());
    metrics.resolutions.with_label_values(&[source]).inc();
    let (place, unresolved_reason) = match resolved {
        Ok(place) => (Some(place), None),
        Err(reason) => (None, Some(reason)),
    };
    Resolution { place, unresolved_reason, data_version: Some(geo.data_version().to_owned()) }
}

/// Sends a systemd notification; silently nothing outside systemd.
///
/// The send happens on a thread of its own: `sd_notify` blocks while the
/// notification socket's queue is full (a manager that does not read it), and
/// that must never stall the runtime's workers. Up to 64 notifications wait;
/// beyond that they are dropped (a watchdog ping or a status line is superseded
/// by the next one anyway).
fn notify(states: &[NotifyState<'_>]) {
    static SENDER: OnceLock<std::sync::mpsc::SyncSender<Vec<String>>> = OnceLock::new();
    let sender = SENDER.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<String>>(64);
        let spawned = std::thread::Builder::new().name("sd-notify".into()).spawn(move || {
            for states in receiver {
                let states: Vec<NotifyState<'_>> =
                    states.iter().map(|state| NotifyState::Custom(state)).collect();
                if let Err(error) = sd_notify::notify(false, &states) {
                    tracing::debug!(%error, "sd_notify failed.");
                }
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "Cannot start the sd_notify thread; notifications are off.");
        }
        sender
    });
    let states = states.iter().map(ToString::to_string).collect();
    if sender.try_send(states).is_err() {
        tracing::debug!("The notification queue is full; dropping a notification.");
    }
}

/// Loads every campaign file under `dir`; `Err` lists each error as
/// `file:line:col: message` (warnings are logged).
pub fn load_campaigns(dir: &Path) -> Result<Vec<Campaign>, Vec<String>> {
    let report = crate::campaign::load_paths(&[dir.to_path_buf()], None);
    let mut errors = Vec::new();
    for diagnostic in &report.diagnostics {
        match diagnostic.severity {
            Severity::Error => errors.push(diagnostic_line(diagnostic)),
            Severity::Warning => tracing::warn!("{}", diagnostic_line(diagnostic)),
        }
    }
    if errors.is_empty() { Ok(report.campaigns) } else { Err(errors) }
}

/// `file:line:col: severity: message`, as the daemon logs a diagnostic.
pub fn diagnostic_line(diagnostic: &Diagnostic) -> String {
    format!(
        "{}:{}:{}: {}: {}",
        diagnostic.file.display(),
        diagnostic.line,
        diagnostic.col,
        diagnostic.severity.as_str(),
        diagnostic.message
    )
}

/// Checks a freshly loaded campaign set against this daemon: every channel a
/// campaign names is configured, and the timing engine compiles it (templates,
/// cron expressions, audience cities). Each problem is an error about the
/// campaign's file (at its `channel` value when that is the problem). `almanac
/// check --config` runs the same check.
pub fn check_against(
    campaigns: &[Campaign],
    config: &Config,
    geo: &'static Geo,
) -> Vec<Diagnostic> {
    let configured = config.channels.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut errors: Vec<Diagnostic> = campaigns
        .iter()
        .filter(|campaign| !config.channels.contains_key(&campaign.channel))
        .map(|campaign| {
            let path = &campaign.source.path;
            let message = format!(
                "campaign {:?} uses channel {:?}, which almanac.toml does not define \
                 (configured: {configured})",
                campaign.id, campaign.channel,
            );
            let text = std::fs::read_to_string(path).unwrap_or_default();
            match crate::config::value_span(&text, &["channel"]) {
                Some(span) => Diagnostic::at(Severity::Error, path, &text, span, message),
                None => Diagnostic::whole_file(Severity::Error, path, message),
            }
        })
        .collect();
    if let Err(error) = Engine::new(campaigns, geo, engine_config(config)) {
        let file = campaigns
            .iter()
            .find(|campaign| campaign.id == error.campaign())
            .map(|campaign| campaign.source.path.clone())
            .unwrap_or_else(|| config.campaigns_dir.clone());
        errors.push(Diagnostic::whole_file(Severity::Error, &file, error.to_string()));
    }
    errors
}

/// The place data for `config`: the bundled data, or the bundled data with the
/// `[geo]` settings (built once and kept for the life of the process, like the
/// bundled data).
pub fn geo_for(config: &Config) -> Result<&'static Geo, crate::geo::GeoError> {
    if config.geo == crate::geo::GeoConfig::default() {
        Ok(Geo::bundled())
    } else {
        Ok(Box::leak(Box::new(Geo::with_config(config.geo.clone())?)))
    }
}

/// [`load_campaigns`] then [`check_against`]: what start and reload accept.
fn load_and_check(config: &Config, geo: &'static Geo) -> Result<Vec<Campaign>, Vec<String>> {
    let campaigns = load_campaigns(&config.campaigns_dir)?;
    let errors = check_against(&campaigns, config, geo);
    if errors.is_empty() {
        Ok(campaigns)
    } else {
        Err(errors.iter().map(diagnostic_line).collect())
    }
}

fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig { global_cap: config.frequency }
}

/// Per-campaign dispatch rate limits (campaign id → pushes per second).
fn campaign_rates(campaigns: &[Campaign]) -> HashMap<String, u32> {
    campaigns
        .iter()
        .filter_map(|campaign| Some((campaign.id.clone(), campaign.limits.rate_per_second?)))
        .collect()
}

/// The engine compiled for one campaign set minus its paused campaigns.
struct Compiled {
    set: Arc<CampaignSet>,
    paused: HashSet<String>,
    engine: Engine<'static>,
    /// Digest of what the engine plans with (active campaigns' content, engine
    /// settings, bundled data version): a window planned with another digest is
    /// planned again.
    hash: String,
    /// Campaigns the engine could not compile (id → why): left out, the others
    /// plan.
    rejected: BTreeMap<String, String>,
}

/// Everything the periodic jobs share.
struct Core {
    /// Planning failures, for `/readyz`.
    health: Arc<crate::health::Health>,
    config: Config,
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    geo: &'static Geo,
    campaigns: Arc<LiveCampaigns>,
    dispatcher: DispatcherHandle,
    /// The HTTP server's bound address (reported in STATUS=).
    listen: std::net::SocketAddr,
    /// The admin listener's bound address, when there is one (STATUS=).
    admin_listen: Option<std::net::SocketAddr>,
    /// The last compiled engine (rebuilt when the set or the paused ids change).
    compiled: std::sync::Mutex<Option<Arc<Compiled>>>,
    /// Held while a planner tick runs (shutdown waits for it).
    planner: tokio::sync::Mutex<()>,
    planner_cancel: CancellationToken,
    /// This process's name in the planner lease (`host:pid`, as the dispatcher's).
    owner: String,
}

/// What one tick planned, for the log and the metrics: sends per (campaign,
/// local time, city, zone, language). Counted per send with no formatting or
/// allocation (an `Arc` clone); turned into text once per tick ([`log_summary`]).
type Summary = HashMap<(Arc<str>, NaiveDateTime, Option<CityId>, Tz, Arc<str>), usize>;

impl Core {
    /// The engine for `set` without the `paused` campaigns, if compiled already.
    fn cached(&self, set: &Arc<CampaignSet>, paused: &HashSet<String>) -> Option<Arc<Compiled>> {
        let cache = self.compiled.lock().expect("engine cache lock");
        cache
            .as_ref()
            .filter(|compiled| Arc::ptr_eq(&compiled.set, set) && compiled.paused == *paused)
            .cloned()
    }

    /// The engine for `set` without the `paused` campaigns (cached), each
    /// campaign bounded by when the ledger first saw it (recorded now for new
    /// ones).
    async fn compiled(
        &self,
        set: &Arc<CampaignSet>,
        paused: &HashSet<String>,
        now: DateTime<Utc>,
    ) -> Result<Arc<Compiled>, crate::store::Error> {
        if let Some(compiled) = self.cached(set, paused) {
            return Ok(compiled);
        }
        let ids: Vec<&str> = set.campaigns.iter().map(|campaign| campaign.id.as_str()).collect();
        let seen = self.store.first_seen(&ids, now).await?;
        Ok(self.compile(set, paused, &seen))
    }

    fn compile(
        &self,
        set: &Arc<CampaignSet>,
        paused: &HashSet<String>,
        seen: &HashMap<String, DateTime<Utc>>,
    ) -> Arc<Compiled> {
        let mut active: Vec<Campaign> = set
            .campaigns
            .iter()
            .filter(|campaign| !paused.contains(&campaign.id))
            .cloned()
            .collect();
        let config = engine_config(&self.config);
        // A campaign the engine rejects is left out (and reported), not the set.
        let mut rejected = BTreeMap::new();
        let engine = loop {
            match Engine::new(&active, self.geo, config) {
                Ok(engine) => break engine.with_first_seen(|id| seen.get(id).copied()),
                Err(error) => {
                    let id = error.campaign().to_owned();
                    self.metrics.planning_failures.with_label_values(&[&id]).inc();
                    tracing::error!(campaign = %id, %error, "The timing engine rejected a campaign; \
                        it is not planned, the others are.");
                    active.retain(|campaign| campaign.id != id);
                    rejected.insert(id, error.to_string());
                }
            }
        };
        self.health.campaigns_failed(rejected.clone());
        let hash = {
            use sha2::Digest;
            let mut digest = sha2::Sha256::new();
            digest.update(format!("{config:?}\0{}\0", self.geo.data_version()));
            let mut sources: Vec<(&str, &str)> = active
                .iter()
                .map(|campaign| (campaign.id.as_str(), campaign.source.content_hash.as_str()))
                .collect();
            sources.sort_unstable();
            for (id, content) in sources {
                let seen = seen.get(id).map(DateTime::timestamp_micros);
                digest.update(format!("{id}\0{content}\0{seen:?}\0"));
            }
            hex::encode(digest.finalize())
        };
        let compiled =
            Arc::new(Compiled { set: set.clone(), paused: paused.clone(), engine, hash, rejected });
        *self.compiled.lock().expect("engine cache lock") = Some(compiled.clone());
        compiled
    }

    /// One planner tick, its failure (an error, or a panic caught here) counted,
    /// logged and reported to `/readyz` until a tick succeeds again.
    async fn tick(self: Arc<Self>) {
        let core = self.clone();
        let error = match tokio::spawn(async move { core.plan_tick().await }).await {
            Ok(Ok(_)) => {
                self.health.planning_ok();
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(join) if join.is_panic() => {
                let reason = crate::health::panic_reason(&*join.into_panic());
                format!("the planner panicked: {reason}")
            }
            Err(join) => join.to_string(),
        };
        self.metrics.planning_failures.with_label_values(&["*"]).inc();
        self.health.planning_failed(self.clock.now(), &error);
        tracing::error!(%error, "Planner tick failed; retrying next tick.");
    }

    /// One planner tick: unless another replica holds the planner lease, plan
    /// `[planned_until, now + horizon)` for every active campaign, member page by
    /// member page, write the due sends, and record the new `planned_until`.
    async fn plan_tick(&self) -> Result<u64, crate::store::Error> {
        let Ok(_running) = self.planner.try_lock() else {
            tracing::debug!("Planner tick skipped: the previous one is still running.");
            return Ok(0);
        };
        let now = self.clock.now();
        let horizon = chrono::Duration::from_std(self.config.planner.horizon)
            .unwrap_or(chrono::Duration::hours(1));
        let paused = paused_campaigns(&self.store).await?;
        let set = self.campaigns.current();
        let compiled = self.compiled(&set, &paused, now).await?;
        let lease = PlannerLease {
            owner: self.owner.clone(),
            clock: self.clock.clone(),
            length: horizon / REPLAN_FRACTION,
        };
        let Some(mark) = lease.renew(&self.store).await? else {
            tracing::debug!("Planner tick skipped: another replica is planning.");
            return Ok(0);
        };
        let planned = match window_to_plan(&mark, &compiled.hash, now, horizon) {
            Some((from, to)) => self
                .plan_window(&set, &compiled, &lease, &mark, from, to)
                .await
                .map(|n| n.map(|n| (n, to))),
            None => Ok(None),
        };
        let mark = match &planned {
            Ok(Some((_, to))) => Some(PlannerMark {
                planned_until: Some(*to),
                campaigns_hash: Some(compiled.hash.clone()),
                generation: mark.generation,
                forgotten: mark.forgotten,
            }),
            _ => None,
        };
        self.store.finish_planning(&self.owner, mark.as_ref()).await?;
        Ok(planned?.map_or(0, |(inserted, _)| inserted))
    }

    /// Plans `[from, to)`; `None` when cancelled before the last page (the next
    /// run re-plans idempotently).
    async fn plan_window(
        &self,
        set: &CampaignSet,
        compiled: &Compiled,
        lease: &PlannerLease,
        mark: &PlannerMark,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<u64>, crate::store::Error> {
        let by_id: HashMap<&str, &Campaign> =
            set.campaigns.iter().map(|campaign| (campaign.id.as_str(), campaign)).collect();
        let mut summary = Summary::new();
        let mut capped: BTreeMap<Arc<str>, usize> = BTreeMap::new();
        let mut failed: BTreeMap<String, String> = compiled.rejected.clone();
        // Three stages overlap: the reader fetches the next page of members and their
        // history while the engine plans this one and the writer inserts the last
        // one (pages are disjoint member sets, so reading a page's history before
        // the previous page is written changes nothing).
        let (pages_tx, mut pages) = tokio::sync::mpsc::channel(PIPELINE_DEPTH);
        let reader = tokio::spawn(read_pages(
            self.store.clone(),
            self.config.planner.batch,
            lease.clone(),
            self.planner_cancel.clone(),
            pages_tx,
        ));
        let (rows_tx, rows) = tokio::sync::mpsc::channel(PIPELINE_DEPTH);
        // The mark was read before the first page: its forget count tells the
        // writer whether every page's members still exist.
        let writer = tokio::spawn(write_rows(self.store.clone(), mark.clone(), rows));
        while let Some((page, history)) = pages.recv().await {
            let sends = {
                let recipients: Vec<Recipient<'_>> = page
                    .iter()
                    .map(|stored| Recipient {
                        member_id: stored.id,
                        member: &stored.member,
                        place: stored.place,
                    })
                    .collect();
                let batch = compiled.engine.plan(&recipients, &history, from, to);
                for (campaign, reason) in &batch.failures {
                    if !failed.contains_key(&**campaign) {
                        self.metrics.planning_failures.with_label_values(&[campaign]).inc();
                        tracing::error!(
                            campaign = %campaign,
                            error = %reason,
                            "The timing engine failed on a campaign; it is not planned, the \
                             others are."
                        );
                        failed.insert(campaign.to_string(), reason.clone());
                    }
                }
                for skip in &batch.skips {
                    self.metrics
                        .plan_skips
                        .with_label_values(&[&skip.campaign_id, skip.reason.as_str()])
                        .inc();
                }
                self.to_ledger_rows(&by_id, batch, &mut summary, &mut capped)
            };
            if !sends.is_empty() && rows_tx.send(sends).await.is_err() {
                // The writer failed; its error is reported below.
                break;
            }
        }
        drop(pages);
        drop(rows_tx);
        let complete = joined(reader.await)?;
        let inserted = joined(writer.await)?;
        self.health.campaigns_failed(failed);
        for (campaign, count) in summary_counts(&summary) {
            self.metrics.planned.with_label_values(&[campaign]).inc_by(count as u64);
        }
        if !complete {
            return Ok(None);
        }
        for (campaign, count) in &capped {
            tracing::info!(
                campaign = %campaign,
                sends = count,
                "The global cap dropped sends of a lower-priority campaign (recorded as skipped, \
                 reason global_cap)."
            );
        }
        if inserted > 0 {
            self.dispatcher.wake();
            self.log_summary(&summary);
            tracing::info!(
                from = %from.format("%Y-%m-%d %H:%M"),
                to = %to.format("%Y-%m-%d %H:%M"),
                inserted,
                "Planned sends into the ledger."
            );
        }
        Ok(Some(inserted))
    }

    /// Logs what a tick planned: per campaign and local time, the largest cities.
    fn log_summary(&self, summary: &Summary) {
        let mut by_time: BTreeMap<(&str, NaiveDateTime), BTreeMap<String, usize>> = BTreeMap::new();
        for ((campaign, local, city, tz, lang), count) in summary {
            let city =
                city.map_or_else(|| tz.name().to_owned(), |city| self.geo.city(city).name.clone());
            *by_time
                .entry((campaign, *local))
                .or_default()
                .entry(format!("{city} ({lang})"))
                .or_default() += count;
        }
        for ((campaign, local), cities) in by_time.iter().take(20) {
            let members: usize = cities.values().sum();
            let mut by_size: Vec<(&String, &usize)> = cities.iter().collect();
            by_size.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let mut list: Vec<String> =
                by_size.iter().take(6).map(|(city, n)| format!("{city} {n}")).collect();
            if by_size.len() > 6 {
                list.push(format!("{} more cities", by_size.len() - 6));
            }
            tracing::info!(
                "Planned {campaign} for {members} member(s) at {} local time: {}.",
                local.format("%Y-%m-%d %H:%M"),
                list.join(", ")
            );
        }
    }

    /// Turns the engine's due sends into ledger rows, counting them for the log;
    /// the sends the global cap dropped become skipped rows (reason
    /// `global_cap`), so the decision is recorded and final.
    fn to_ledger_rows(
        &self,
        by_id: &HashMap<&str, &Campaign>,
        batch: crate::timing::PlanBatch,
        summary: &mut Summary,
        capped: &mut BTreeMap<Arc<str>, usize>,
    ) -> Vec<NewSend> {
        let mut rows: Vec<NewSend> = batch
            .capped
            .into_iter()
            .filter_map(|send| {
                let campaign = by_id.get(&*send.campaign_id)?;
                *capped.entry(send.campaign_id.clone()).or_default() += 1;
                Some(NewSend {
                    campaign_id: campaign.id.clone(),
                    occurrence: send.occurrence.to_string(),
                    member_id: send.member_id,
                    due_at: send.due_at,
                    channel: campaign.channel.clone(),
                    lang: send.lang.to_string(),
                    variant: String::new(),
                    text: String::new(),
                    status: SendStatus::Skipped,
                    reason: Some(crate::timing::SkipReason::GlobalCap.as_str()),
                })
            })
            .collect();
        rows.extend(batch.sends.into_iter().filter_map(|send| {
            let campaign = by_id.get(&*send.campaign_id)?;
            let variant = campaign
                .messages
                .get(send.variant)
                .map_or_else(|| send.variant.to_string(), |message| message.label.clone());
            let lang = send.lang.to_string();
            *summary
                .entry((send.campaign_id, send.local, send.city, send.tz, send.lang))
                .or_default() += 1;
            Some(NewSend {
                campaign_id: campaign.id.clone(),
                occurrence: send.occurrence.to_string(),
                member_id: send.member_id,
                due_at: send.due_at,
                channel: campaign.channel.clone(),
                lang,
                variant,
                text: send.text,
                status: if send.holdout { SendStatus::Holdout } else { SendStatus::Pending },
                reason: None,
            })
        }));
        rows
    }

    /// Refreshes the ledger, campaign and member gauges; returns a STATUS= line.
    async fn refresh_gauges(&self) -> Result<String, crate::store::Error> {
        let backlog = self.store.backlog().await?;
        for status in ALL_STATUSES {
            let count = backlog.iter().find(|(s, _)| *s == status).map_or(0, |(_, count)| *count);
            self.metrics.ledger_backlog.with_label_values(&[status.as_str()]).set(count);
        }
        let paused = paused_campaigns(&self.store).await?;
        let set = self.campaigns.current();
        let mut by_state: BTreeMap<&str, i64> =
            [("active", 0), ("paused", 0), ("disabled", 0)].into_iter().collect();
        for campaign in &set.campaigns {
            *by_state.entry(campaign_state(campaign, &paused)).or_default() += 1;
        }
        for (state, count) in &by_state {
            self.metrics.campaigns.with_label_values(&[state]).set(*count);
        }
        let counts = self.store.member_counts().await?;
        let members = counts.total;
        self.metrics.members.set(counts.total);
        self.metrics.members_unresolved.set(counts.unresolved);
        let pending = backlog
            .iter()
            .find(|(status, _)| *status == SendStatus::Pending)
            .map_or(0, |(_, count)| *count);
        let admin =
            self.admin_listen.map(|admin| format!("admin on {admin}; ")).unwrap_or_default();
        Ok(format!(
            "listening on {}; {admin}{} active, {} paused campaigns; {members} members; {pending} \
             pending sends",
            self.listen, by_state["active"], by_state["paused"]
        ))
    }

    /// Reloads campaign files; the old set keeps running if any file is broken.
    fn reload(&self, why: &str) {
        notify(&reload_states());
        tracing::info!(why, dir = %self.config.campaigns_dir.display(), "Reloading campaigns.");
        let loaded = load_and_check(&self.config, self.geo);
        match loaded {
            Ok(campaigns) => {
                let old = self.campaigns.current();
                let diff = crate::campaign::diff(&old.campaigns, &campaigns);
                tracing::info!(
                    added = ?diff.added,
                    changed = ?diff.changed,
                    removed = ?diff.removed,
                    total = campaigns.len(),
                    "Campaigns reloaded."
                );
                self.dispatcher.set_campaign_rates(&campaign_rates(&campaigns));
                self.metrics.init_series(
                    campaigns.iter().map(|c| (c.id.as_str(), c.channel.as_str())),
                    self.config.channels.keys().map(String::as_str),
                );
                self.campaigns.replace(CampaignSet { campaigns });
                self.metrics.reloads.with_label_values(&["ok"]).inc();
            }
            Err(errors) => {
                for error in &errors {
                    tracing::error!("{error}");
                }
                tracing::error!(
                    errors = errors.len(),
                    "Campaign reload failed; the previous campaigns keep running."
                );
                self.metrics.reloads.with_label_values(&["error"]).inc();
            }
        }
        notify(&[NotifyState::Ready]);
    }
}

/// A tick plans once more than `1 / REPLAN_FRACTION` of the horizon is unplanned,
/// so everything due before `now + 3/4 horizon` is always in the ledger.
const REPLAN_FRACTION: i32 = 4;

/// The window a tick plans given the shared `mark`, the digest of the campaigns it
/// would plan with, and its clock; `None` when at least three quarters of the
/// horizon is planned ahead with the same digest (reading every member again to
/// plan a few more seconds would cost a full pass over the members table on
/// every tick).
fn window_to_plan(
    mark: &PlannerMark,
    digest: &str,
    now: DateTime<Utc>,
    horizon: chrono::Duration,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let same_set = mark.campaigns_hash.as_deref() == Some(digest);
    let from = match mark.planned_until {
        // Planned ahead with these campaigns: go on from there. After downtime
        // (`last` in the past) plan from now: the engine still looks back each
        // campaign's `window`, so what fell due while no daemon ran goes out if it
        // is still in its window, and nothing older does.
        Some(last) if same_set && last <= now + horizon => last.max(now),
        // New or changed campaigns (or a resume), nothing recorded, or the clock
        // went back (a demo rerun): plan from now again; the ledger's unique key
        // and the history make re-planning harmless.
        _ => now,
    };
    let to = now + horizon;
    // Planning from now always covers the whole horizon, so only a window that goes
    // on from the mark can be short enough to skip.
    (to - from >= horizon / REPLAN_FRACTION).then_some((from, to))
}

/// The planner lease this process takes in the store for one tick.
#[derive(Clone)]
struct PlannerLease {
    owner: String,
    clock: Arc<dyn Clock>,
    /// How long a replica that died while planning blocks the others.
    length: chrono::Duration,
}

impl PlannerLease {
    /// Takes or renews the lease; the shared mark when it is ours.
    async fn renew(&self, store: &Store) -> Result<Option<PlannerMark>, crate::store::Error> {
        let now = self.clock.now();
        store.lead_planner(&self.owner, now, now + self.length).await
    }
}

/// Pages (and ledger row batches) buffered between the planner's stages.
const PIPELINE_DEPTH: usize = 2;

/// The planner's first stage: member pages in id order, each with its members'
/// send history. Returns `false` when cancelled before the last page.
async fn read_pages(
    store: Store,
    batch: i64,
    lease: PlannerLease,
    cancel: CancellationToken,
    pages: tokio::sync::mpsc::Sender<(Vec<crate::store::StoredMember>, History)>,
) -> Result<bool, crate::store::Error> {
    let mut after = 0;
    // The tick took the lease just before; renew it once half of it has passed
    // (a write per page would queue behind the dispatcher's on SQLite).
    let mut renewed = lease.clock.now();
    loop {
        if cancel.is_cancelled() {
            return Ok(false);
        }
        let now = lease.clock.now();
        if now - renewed >= lease.length / 2 {
            if lease.renew(&store).await?.is_none() {
                // Held too long (a stall): another replica took over; harmless,
                // since planning is idempotent, but one planner is enough.
                tracing::warn!("Planner lease lost to another replica; stopping this tick.");
                return Ok(false);
            }
            renewed = now;
        }
        let page = store.planning_page(after, batch).await?;
        let Some(last) = page.last() else { return Ok(true) };
        after = last.id;
        let ids: Vec<i64> = page.iter().map(|member| member.id).collect();
        let mut history = History::new();
        // The engine needs every recorded row (`per_member` counts a member's whole
        // history for a campaign, and an occurrence key such as `once` or a
        // climate season's year never repeats however long ago it was recorded),
        // so the rows are not bounded in time; their strings are shared instead
        // (a page's rows repeat a few campaign ids and occurrence keys).
        let mut strings: HashSet<Arc<str>> = HashSet::new();
        let mut shared = |text: String| -> Arc<str> {
            if let Some(known) = strings.get(text.as_str()) {
                return known.clone();
            }
            let text: Arc<str> = text.into();
            strings.insert(text.clone());
            text
        };
        for entry in store.send_history(&ids, DateTime::UNIX_EPOCH).await? {
            history.insert(
                entry.member_id,
                PastSend {
                    campaign_id: shared(entry.campaign_id),
                    occurrence: shared(entry.occurrence),
                    at: entry.due_at,
                    holdout: entry.holdout,
                    skipped: entry.skipped,
                },
            );
        }
        if pages.send((page, history)).await.is_err() {
            // The planner stopped (the writer failed).
            return Ok(false);
        }
    }
}

/// The planner's last stage: inserts ledger rows batch by batch; returns how many
/// were new. On PostgreSQL two batches are inserted at once, each on its own
/// connection (the server's insert is the slowest stage, and batches are
/// disjoint member sets); SQLite has one writer, so one at a time.
async fn write_rows(
    store: Store,
    mark: PlannerMark,
    mut rows: tokio::sync::mpsc::Receiver<Vec<NewSend>>,
) -> Result<u64, crate::store::Error> {
    let parallel = match store.kind() {
        crate::store::BackendKind::Postgres => 2,
        crate::store::BackendKind::Sqlite => 1,
    };
    let mut inserted = 0;
    let mut running = JoinSet::new();
    while let Some(sends) = rows.recv().await {
        if running.len() >= parallel
            && let Some(done) = running.join_next().await
        {
            inserted += joined(done)?;
        }
        let (store, mark) = (store.clone(), mark.clone());
        running.spawn(async move { store.insert_planned(&sends, &mark).await });
    }
    while let Some(done) = running.join_next().await {
        inserted += joined(done)?;
    }
    Ok(inserted)
}

/// A stage's result; a stage that panicked panics the planner, as if inline.
fn joined<T>(result: Result<T, tokio::task::JoinError>) -> T {
    result.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}

/// Planned sends per campaign, from a tick's summary.
fn summary_counts(summary: &Summary) -> BTreeMap<&str, usize> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for ((campaign, ..), count) in summary {
        *counts.entry(campaign).or_default() += count;
    }
    counts
}

fn reload_states() -> Vec<NotifyState<'static>> {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(monotonic) = NotifyState::monotonic_usec_now() {
        states.push(monotonic);
    }
    states
}

/// How often (real time) WeChat access tokens are checked and refreshed ahead of
/// their expiry; tokens last two hours and are renewed in their last five minutes.
const TOKEN_REFRESH_PERIOD: Duration = Duration::from_secs(60);

const ALL_STATUSES: [SendStatus; 6] = [
    SendStatus::Pending,
    SendStatus::Claimed,
    SendStatus::Sent,
    SendStatus::Dead,
    SendStatus::Holdout,
    SendStatus::Skipped,
];

/// Upserts the member file, resolving each member's place; bad rows are reported
/// (phones masked) and skipped.
async fn import_members(
    store: &Store,
    geo: &Geo,
    metrics: &Metrics,
    path: &Path,
) -> Result<(), Error> {
    let rows = crate::members::read_file(path)?;
    let (mut imported, mut bad) = (0usize, 0usize);
    let size = crate::members::default_batch(store);
    let mut batch = Vec::with_capacity(size);
    for row in rows {
        match row {
            Ok(member) => {
                let resolution = resolve(geo, metrics, &member);
                batch.push((member, resolution));
                if batch.len() == size {
                    imported += store.upsert_resolved(&batch).await?.len();
                    batch.clear();
                }
            }
            Err(error) => {
                bad += 1;
                tracing::warn!("{}", crate::redact::mask_phones(&error.to_string()));
            }
        }
    }
    if !batch.is_empty() {
        imported += store.upsert_resolved(&batch).await?.len();
    }
    tracing::info!(file = %path.display(), imported, bad, "Imported the member file.");
    Ok(())
}

/// How the daemon was asked to run.
#[derive(Debug)]
pub struct Options {
    /// The configuration.
    pub config: Config,
    /// Where it came from (for messages).
    pub config_source: String,
    /// Where the database URL came from (flag or environment, configuration
    /// file, demo, embedded default), for the start line.
    pub database_source: String,
}

/// Runs the daemon until SIGTERM/SIGINT; `Ok` after a graceful stop.
pub async fn run(options: Options) -> Result<(), Error> {
    let Options { config, config_source, database_source } = options;
    // Signals first: SIGHUP's default action would kill us before we are ready.
    let mut sigterm = signal(SignalKind::terminate()).map_err(io("installing SIGTERM handler"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io("installing SIGINT handler"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(io("installing SIGHUP handler"))?;

    let clock: Arc<dyn Clock> = match &config.demo {
        Some(demo) => {
            tracing::info!(
                start = %demo.start, speed = demo.speed,
                "Demo clock: virtual time runs faster than real time."
            );
            Arc::new(ScaledClock::new(SystemClock, demo.start, demo.speed))
        }
        None => Arc::new(SystemClock),
    };
    let metrics = Arc::new(Metrics::new());
    let geo = geo_for(&config)?;
    tracing::info!(
        config = %config_source,
        database = %redact_url(&config.database),
        database_from = %database_source,
        "Starting almanac."
    );
    let store = Store::connect(&config.database).await?;
    if let Some(file) = &config.members_file {
        import_members(&store, geo, &metrics, file).await?;
    }
    let campaigns = Arc::new(LiveCampaigns::default());
    let loaded = load_and_check(&config, geo);
    match loaded {
        Ok(loaded) => {
            tracing::info!(
                dir = %config.campaigns_dir.display(), campaigns = loaded.len(),
                "Campaigns loaded."
            );
            metrics.init_series(
                loaded.iter().map(|c| (c.id.as_str(), c.channel.as_str())),
                config.channels.keys().map(String::as_str),
            );
            campaigns.replace(CampaignSet { campaigns: loaded });
        }
        Err(errors) => return Err(Error::Campaigns(errors.join("\n"))),
    }
    let admin_token = read_secret(&config.admin_token_env, &config.admin_token_credential)?;
    if admin_token.is_none() {
        tracing::warn!(
            env = %config.admin_token_env,
            "No admin token configured: the admin API answers 401 to every call."
        );
    }
    let callback =
        crate::http::wechat::Callback::from_config(&config.wechat_callback)?.map(Arc::new);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(io(format!("listening on {}", config.listen)))?;
    let local = listener.local_addr().map_err(io("reading the listen address"))?;
    let admin_listener = match config.http.admin_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(io(format!("listening on {address} ([http] admin_listen)")))?,
        ),
        None => None,
    };
    let admin_local = admin_listener
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()
        .map_err(io("reading the admin_listen address"))?;
    match admin_local {
        Some(admin) => {
            tracing::info!(address = %local, "HTTP server listening (/healthz, /readyz, /wechat/callback).");
            tracing::info!(address = %admin, "Admin HTTP server listening (/metrics, /healthz, /readyz, /v1).");
        }
        None => {
            tracing::info!(address = %local, "HTTP server listening (/metrics, /healthz, /readyz, /v1, /wechat/callback).")
        }
    }
    let listeners = 1 + usize::from(admin_listener.is_some());
    let max_connections = connection_budget(&config.http, listeners);

    let root = CancellationToken::new();
    let http_cancel = root.child_token();
    let dispatch_cancel = root.child_token();
    let dispatch_cancel_for_task = dispatch_cancel.clone();
    let mut channels = Channels::from_config(&config.channels, clock.clone(), metrics.clone())?;
    channels.share_tokens(&store);
    let owner = format!("{}:{}", hostname(), std::process::id());
    let mut dispatch_settings = config.dispatcher.clone();
    if let Some(demo) = &config.demo {
        // Leases are measured on the daemon's clock: under the demo clock keep them
        // as long in real time as configured, or in-flight rows would expire and be
        // claimed again.
        dispatch_settings.lease_secs = (dispatch_settings.lease_secs as f64 * demo.speed) as u64;
    }
    let health = Arc::new(crate::health::Health::new());
    let dispatcher = Dispatcher::new(
        store.clone(),
        channels,
        clock.clone(),
        metrics.clone(),
        dispatch_settings.config(owner.clone()),
    )
    .with_poll(dispatch_settings.poll())
    .with_drain_timeout(config.shutdown_grace)
    .with_health(health.clone());
    let dispatcher_handle = dispatcher.handle();
    dispatcher_handle.set_campaign_rates(&campaign_rates(&campaigns.current().campaigns));
    let core = Arc::new(Core {
        health: health.clone(),
        config: config.clone(),
        store: store.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        geo,
        campaigns: campaigns.clone(),
        dispatcher: dispatcher_handle,
        listen: local,
        admin_listen: admin_local,
        compiled: std::sync::Mutex::new(None),
        planner: tokio::sync::Mutex::new(()),
        planner_cancel: root.child_token(),
        owner: owner.clone(),
    });

    let mut tasks = JoinSet::new();
    let state = AppState {
        metrics: metrics.clone(),
        store: store.clone(),
        campaigns: campaigns.clone(),
        admin_token,
        callback,
        clock: clock.clone(),
        geo,
        health,
    };
    let limits = |name| crate::http::Limits::new(name, &config.http, max_connections);
    match admin_listener {
        Some(admin_listener) => {
            tasks.spawn(crate::http::serve(
                listener,
                crate::http::public_router(state.clone()),
                limits("listen"),
                metrics.clone(),
                http_cancel.clone(),
            ));
            tasks.spawn(crate::http::serve(
                admin_listener,
                crate::http::admin_router(state),
                limits("admin_listen"),
                metrics.clone(),
                http_cancel.clone(),
            ));
        }
        None => {
            tasks.spawn(crate::http::serve(
                listener,
                crate::http::router(state),
                limits("listen"),
                metrics.clone(),
                http_cancel.clone(),
            ));
        }
    }
    let dispatcher = tokio::spawn(async move {
        // The dispatcher logs its own figures when it stops.
        if let Err(error) = dispatcher.run(dispatch_cancel_for_task).await {
            tracing::error!(%error, "The dispatcher failed.");
        }
    });

    // The periodic work.
    let mut scheduler = tokio_cron_scheduler::JobScheduler::new().await?;
    scheduler
        .add(repeated(config.planner.tick, core.clone(), |core| async move { core.tick().await })?)
        .await?;
    scheduler
        .add(repeated(gauge_period(&config), core.clone(), |core| async move {
            match core.refresh_gauges().await {
                Ok(status) => notify(&[NotifyState::Status(&status)]),
                Err(error) => tracing::warn!(%error, "Refreshing gauges failed."),
            }
        })?)
        .await?;
    scheduler
        .add(repeated(TOKEN_REFRESH_PERIOD, core.clone(), |core| async move {
            for (channel, error) in core.dispatcher.refresh_tokens(core.clock.now()).await {
                tracing::warn!(%error, channel, "Refreshing the WeChat access token failed.");
            }
        })?)
        .await?;
    scheduler
        .add(repeated(Duration::from_secs(3600), core.clone(), |core| async move {
            let retention = chrono::Duration::from_std(core.config.retention.ledger)
                .unwrap_or(chrono::Duration::days(90));
            match core.store.retention(core.clock.now() - retention).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "Ledger retention removed old rows."),
                Err(error) => tracing::warn!(%error, "Ledger retention failed."),
            }
        })?)
        .await?;
    // The first planner tick now, in the background (a large member base must not
    // hold up READY=1 and systemd's start timeout; the gauges, counted meanwhile,
    // are part of READY's status), then every `planner.tick`.
    let first_tick = core.clone();
    tokio::spawn(async move { first_tick.tick().await });
    let status = core.refresh_gauges().await?;
    scheduler.start().await?;

    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<()>(1);
    let _watcher = watch_campaigns(&config.campaigns_dir, reload_tx)?;

    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    tracing::info!("almanac is ready.");

    let mut watchdog_usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    let mut watchdog_tick = tokio::time::interval(if watchdog {
        Duration::from_micros(watchdog_usec / 2)
    } else {
        Duration::from_secs(3600)
    });

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping."); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping."); break; }
            _ = sighup.recv() => core.reload("SIGHUP"),
            Some(()) = reload_rx.recv() => core.reload("campaign files changed"),
            _ = watchdog_tick.tick(), if watchdog => notify(&[NotifyState::Watchdog]),
            Some(result) = tasks.join_next() => {
                // The HTTP server only returns on error before cancellation.
                tracing::error!(?result, "The HTTP server stopped unexpectedly; stopping.");
                break;
            }
        }
    }

    // The last one goes out now, not behind the queue, from a thread of its own:
    // a manager that does not read its socket must not hold the stop (the send
    // blocks while the socket's queue is full; the thread ends with the process).
    let stopping = std::thread::Builder::new().name("sd-notify-stopping".into()).spawn(|| {
        if let Err(error) = sd_notify::notify(false, &[NotifyState::Stopping]) {
            tracing::debug!(%error, "sd_notify failed.");
        }
    });
    if let Err(error) = stopping {
        tracing::debug!(%error, "Cannot start a thread to send STOPPING=1.");
    }
    let grace = config.shutdown_grace;
    let drain = async {
        // 1. The producer first.
        if let Err(error) = scheduler.shutdown().await {
            tracing::warn!(%error, "Stopping the scheduler failed.");
        }
        core.planner_cancel.cancel();
        let _ = core.planner.lock().await;
        tracing::info!("Planner stopped.");
        // 2. Stop claiming; finish or release in-flight pushes.
        dispatch_cancel.cancel();
        if let Err(error) = dispatcher.await {
            tracing::error!(%error, "The dispatcher task failed.");
        }
    };
    tokio::select! {
        result = tokio::time::timeout(grace + Duration::from_secs(2), drain) => {
            if result.is_err() {
                tracing::warn!(grace = ?grace, "Grace period over; releasing what is still claimed.");
            }
        }
        _ = sigterm.recv() => second_signal(),
        _ = sigint.recv() => second_signal(),
    }
    // 3. The HTTP server last (metrics stay scrapeable while draining).
    http_cancel.cancel();
    root.cancel();
    while tasks.join_next().await.is_some() {}
    store.close().await;
    tracing::info!("almanac stopped.");
    Ok(())
}

/// Raises the soft open-file limit to the hard one (every HTTP connection is a
/// file; systemd's default soft limit is 1024) and returns how many connections
/// each of `listeners` may hold: `[http] max_connections`, lowered with a warning
/// when the limit leaves less room.
fn connection_budget(settings: &crate::http::HttpSettings, listeners: usize) -> usize {
    let before = rlimit::Resource::NOFILE.get().map(|(soft, _)| soft).ok();
    // No call at all when the soft limit is the hard one already (as the unit
    // sets it): setrlimit is outside the unit's system-call filter.
    let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(nofile) => nofile,
        Err(error) => {
            tracing::warn!(%error, "Cannot raise the open-file limit.");
            before.unwrap_or(1024)
        }
    };
    if let Some(before) = before
        && nofile > before
    {
        tracing::info!(from = before, to = nofile, "Raised the open-file limit.");
    }
    let budget = crate::http::server::fd_budget(settings, nofile, listeners);
    if budget < settings.max_connections {
        tracing::warn!(
            nofile,
            max_connections = settings.max_connections,
            per_listener = budget,
            "The open-file limit leaves room for fewer HTTP connections than \
             [http] max_connections; the connection table is smaller (raise LimitNOFILE=)."
        );
    }
    budget
}

fn second_signal() -> ! {
    tracing::warn!("Second signal: exiting immediately.");
    std::process::exit(1)
}

fn gauge_period(config: &Config) -> Duration {
    if config.demo.is_some() { Duration::from_secs(1) } else { Duration::from_secs(10) }
}

/// A tokio-cron-scheduler job that runs `body(core)` every `period`.
fn repeated<F, Fut>(
    period: Duration,
    core: Arc<Core>,
    body: F,
) -> Result<tokio_cron_scheduler::Job, tokio_cron_scheduler::JobSchedulerError>
where
    F: Fn(Arc<Core>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let body = Arc::new(body);
    tokio_cron_scheduler::Job::new_repeated_async(period, move |_id, _scheduler| {
        let core = core.clone();
        let body = body.clone();
        Box::pin(async move {
            if !core.planner_cancel.is_cancelled() {
                body(core).await;
            }
        })
    })
}

/// This machine's name, for the dispatcher's lease owner.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "almanac".to_owned())
}

/// Watches the campaigns directory; each debounced batch of changes to a
/// `.toml` file asks for one reload.
fn watch_campaigns(dir: &Path, reload: tokio::sync::mpsc::Sender<()>) -> Result<impl Drop, Error> {
    use notify_debouncer_full::notify::RecursiveMode;
    let mut debouncer = notify_debouncer_full::new_debouncer(
        Duration::from_millis(300),
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            let relevant = match result {
                Ok(events) => events.iter().any(|event| {
                    !event.kind.is_access() && event.paths.iter().any(|path| is_campaign_file(path))
                }),
                Err(_) => true,
            };
            if relevant {
                // A full channel already holds a pending reload: that is enough.
                let _ = reload.try_send(());
            }
        },
    )
    .map_err(|error| Error::Io { what: "watching campaigns".into(), source: to_io(error) })?;
    debouncer.watch(dir, RecursiveMode::Recursive).map_err(|error| Error::Io {
        what: format!("watching {}", dir.display()),
        source: to_io(error),
    })?;
    Ok(debouncer)
}

fn is_campaign_file(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "toml")
}

fn to_io(error: notify_debouncer_full::notify::Error) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

/// The database URL without a password.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + chrono::Duration::minutes(minutes)
    }

    fn mark(planned_until: Option<i64>, digest: &str) -> PlannerMark {
        PlannerMark {
            planned_until: planned_until.map(at),
            campaigns_hash: Some(digest.into()),
            generation: 0,
            forgotten: None,
        }
    }

    #[test]
    fn window_to_plan_follows_the_mark() {
        let hour = chrono::Duration::hours(1);
        let full = Some((at(0), at(60)));
        assert_eq!(window_to_plan(&PlannerMark::default(), "d", at(0), hour), full, "fresh");
        assert_eq!(window_to_plan(&mark(None, "d"), "d", at(0), hour), full, "members changed");
        assert_eq!(window_to_plan(&mark(Some(60), "d"), "d", at(0), hour), None, "just planned");
        assert_eq!(
            window_to_plan(&mark(Some(48), "d"), "d", at(0), hour),
            None,
            "12 min unplanned"
        );
        assert_eq!(
            window_to_plan(&mark(Some(40), "d"), "d", at(0), hour),
            Some((at(40), at(60))),
            "20 min unplanned: plan them"
        );
        assert_eq!(
            window_to_plan(&mark(Some(60), "other"), "d", at(0), hour),
            full,
            "new campaigns"
        );
        assert_eq!(
            window_to_plan(&mark(Some(-300), "d"), "d", at(0), hour),
            full,
            "after downtime"
        );
        assert_eq!(
            window_to_plan(&mark(Some(600), "d"), "d", at(0), hour),
            full,
            "clock went back"
        );
    }

    #[test]
    fn ticks_keep_three_quarters_of_the_horizon_planned() {
        let horizon = chrono::Duration::minutes(60);
        let mut shared = PlannerMark::default();
        let mut passes = 0;
        for tick in 0..(6 * 60 * 2) {
            let now = at(0) + chrono::Duration::seconds(30 * tick);
            if let Some((from, to)) = window_to_plan(&shared, "d", now, horizon) {
                assert!(shared.planned_until.is_none_or(|last| from <= last), "no gap at {now}");
                shared = PlannerMark { planned_until: Some(to), ..mark(None, "d") };
                passes += 1;
            }
            let ahead = shared.planned_until.unwrap() - now;
            assert!(ahead >= horizon * 3 / 4, "only {ahead} planned ahead at {now}");
        }
        // Six hours of 30 s ticks (0:00 to 5:59:30): a pass over the members every
        // 15 minutes (0:00, 0:15, … 5:45), not one per tick.
        assert_eq!(passes, 6 * 4);
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite:almanac.db"), "sqlite:almanac.db");
    }
}
