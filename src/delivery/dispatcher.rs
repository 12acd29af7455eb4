//! The dispatcher: claims due ledger rows in batches under a lease
//! ([`Store::claim_due`]; `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas share
//! work without coordinating), sends each through its channel with bounded
//! concurrency, and records outcomes in batches ([`Store::record_outcomes`], a
//! group commit of whatever finished while the previous batch was being written).
//!
//! Nothing is sent that is not in the ledger first: the dispatcher only sends rows it
//! claimed. Two bounds govern a push on its way out: a slot (one of `concurrency`) is
//! held while its request is in flight, and a place among the unrecorded (one of
//! `max_unrecorded`, at least `concurrency`) from the send until its outcome is
//! committed. A crash therefore leaves at most `max_unrecorded` pushes sent but not
//! marked; after the lease expires they are claimed again and resent with the same
//! idempotency key. Keeping the two apart lets outcomes commit in large batches
//! without holding the receiver's request slots while they wait.
//!
//! A campaign's own rate limit (`limits.rate_per_second`) throttles that campaign
//! only: its rows wait in a pacer of their own (one task per limited campaign)
//! before they take a place or a slot, and once a pacer holds
//! [`pacer_bound`] rows the claimer leaves that campaign's rows in the ledger
//! until it has drained half of them, so other campaigns' rows are never
//! queued behind it and the dispatcher holds a bounded number of rows.
//!
//! A channel that fails as a whole (an account-level error, see [`pause`](super::pause))
//! is paused: the push that met the error goes back to pending without an
//! attempt counted, the claimer leaves the channel's rows in the ledger, and one
//! probe row at a time, with backoff, checks when it works again.
//!
//! Stopping safely: when the cancellation token fires the dispatcher stops claiming,
//! lets in-flight pushes finish and their outcomes be written (up to the drain
//! timeout, after which they are abandoned), then returns every row it still holds
//! to pending ([`Store::release`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::channel::{Attempt, Channels};
use super::pause::{Admit, Pauses};
use super::{Error, Result};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{ClaimedSend, Consent, Exclude, Outcome, Store};

/// The reason noted on a row handed back unsent because its channel is paused.
pub const CHANNEL_PAUSED: &str = "channel_paused";

/// The longest the dispatcher sleeps (real time) when nothing is due.
pub const MAX_POLL: Duration = Duration::from_millis(200);

/// What the daemon passes to [`Dispatcher::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Lease owner: unique per process (e.g. `host:pid`).
    pub owner: String,
    /// Rows claimed per batch.
    pub batch: usize,
    /// Pushes in flight at most (across channels).
    pub concurrency: usize,
    /// Pushes sent or being sent whose outcome is not yet committed, at most: what
    /// a crash can resend (raised to `concurrency` when below it).
    pub max_unrecorded: usize,
    /// How long a claim holds a row; a replica that dies loses its rows after this.
    pub lease: chrono::Duration,
    /// Rows falling due this far ahead are claimed early and fired at their
    /// instant (zero: claim only what is due).
    pub lookahead: chrono::Duration,
}

/// The `[dispatcher]` table of `almanac.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherSettings {
    /// Rows claimed per batch.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Pushes in flight at most.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Pushes sent whose outcome is not yet committed, at most (at least
    /// `concurrency`): the most a crash can resend.
    #[serde(default = "default_max_unrecorded")]
    pub max_unrecorded: usize,
    /// Lease in seconds; keep it above the time a batch takes through the slowest
    /// rate limit (`2 × batch / rate_per_second`).
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// Poll interval in milliseconds when nothing is due (at most 200).
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Claim rows this many milliseconds before they fall due and fire each at
    /// its instant, so that neither the poll nor the claim's round trip makes a
    /// push late (at most half the lease; 0 turns it off). An opt-out or a pause
    /// that arrives within this time of a claimed push does not stop it.
    #[serde(default = "default_lookahead_ms")]
    pub lookahead_ms: u64,
}

fn default_batch() -> usize {
    500
}
fn default_concurrency() -> usize {
    64
}
fn default_max_unrecorded() -> usize {
    1024
}
fn default_lease_secs() -> u64 {
    60
}
fn default_poll_ms() -> u64 {
    100
}
fn default_lookahead_ms() -> u64 {
    1000
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            batch: default_batch(),
            concurrency: default_concurrency(),
            max_unrecorded: default_max_unrecorded(),
            lease_secs: default_lease_secs(),
            poll_ms: default_poll_ms(),
            lookahead_ms: default_lookahead_ms(),
        }
    }
}

impl DispatcherSettings {
    /// Values out of range, as `(key, what was expected)`; the keys are those of
    /// the `[dispatcher]` table. Nothing is clamped silently: `almanac check` and
    /// the daemon's configuration loader report each of these.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.batch == 0 {
            problems.push(("batch", "must be at least 1 row".to_owned()));
        }
        if self.concurrency == 0 {
            problems.push(("concurrency", "must be at least 1 push in flight".to_owned()));
        }
        if self.max_unrecorded < self.concurrency {
            problems.push((
                "max_unrecorded",
                format!(
                    "is {}, below concurrency = {}: it must be at least concurrency (every \
                     push in flight is unrecorded until its outcome is committed)",
                    self.max_unrecorded, self.concurrency
                ),
            ));
        }
        if self.lease_secs == 0 {
            problems.push(("lease_secs", "must be at least 1 second".to_owned()));
        }
        if !(1..=MAX_POLL.as_millis() as u64).contains(&self.poll_ms) {
            problems.push((
                "poll_ms",
                format!("is {}, expected 1 to {} milliseconds", self.poll_ms, MAX_POLL.as_millis()),
            ));
        }
        if self.lookahead_ms > self.lease_secs.saturating_mul(500) {
            problems.push((
                "lookahead_ms",
                format!(
                    "is {}, more than half the lease (lease_secs = {}): at most {}",
                    self.lookahead_ms,
                    self.lease_secs,
                    self.lease_secs.saturating_mul(500)
                ),
            ));
        }
        problems
    }

    /// The dispatcher configuration for lease owner `owner`.
    pub fn config(&self, owner: impl Into<String>) -> DispatcherConfig {
        let lease_secs = self.lease_secs.max(1);
        // At most half the lease, in milliseconds.
        let lookahead_ms = self.lookahead_ms.min(lease_secs.saturating_mul(500));
        DispatcherConfig {
            owner: owner.into(),
            batch: self.batch.max(1),
            concurrency: self.concurrency.max(1),
            max_unrecorded: self.max_unrecorded,
            lease: chrono::Duration::seconds(lease_secs as i64),
            lookahead: chrono::Duration::milliseconds(lookahead_ms as i64),
        }
    }

    /// The poll interval, capped at [`MAX_POLL`].
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms).clamp(Duration::from_millis(1), MAX_POLL)
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchStats {
    /// Rows claimed.
    pub claimed: u64,
    /// Outcomes recorded as sent.
    pub sent: u64,
    /// Outcomes recorded as retry (quota deferrals included).
    pub retried: u64,
    /// Outcomes recorded as dead.
    pub dead: u64,
    /// Outcomes recorded as skipped (opt-outs).
    pub skipped: u64,
    /// Rows handed back to pending, uncharged, because their channel failed as a
    /// whole or was paused.
    pub paused: u64,
    /// Rows returned to pending at stop.
    pub released: u64,
}

/// What the daemon keeps to talk to a running dispatcher.
#[derive(Debug, Clone)]
pub struct DispatcherHandle {
    channels: Arc<Channels>,
    wake: Arc<Notify>,
}

impl DispatcherHandle {
    /// Replaces the per-campaign rate limits (campaign id → pushes per second);
    /// call it at start and on every reload.
    pub fn set_campaign_rates(&self, rates: &HashMap<String, u32>) {
        self.channels.set_campaign_rates(rates);
    }

    /// Refreshes WeChat access tokens ahead of their expiry; returns the failures
    /// by channel name.
    pub async fn refresh_tokens(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(String, super::Error)> {
        self.channels.refresh_tokens(now).await
    }

    /// Wakes the dispatcher now (the planner just inserted due rows).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Claims, sends and records.
pub struct Dispatcher {
    store: Store,
    channels: Arc<Channels>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    config: DispatcherConfig,
    poll: Duration,
    drain_timeout: Duration,
    wake: Arc<Notify>,
    health: Arc<crate::health::Health>,
    pauses: Arc<Pauses>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.config)
            .field("poll", &self.poll)
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
}

/// One finished attempt on its way to the ledger, holding its place among the
/// unrecorded until its outcome commits.
struct Finished {
    member_id: i64,
    campaign_id: String,
    channel: String,
    attempt: Attempt,
    _unrecorded: OwnedSemaphorePermit,
}

impl Dispatcher {
    /// A dispatcher over `store` and `channels` (see the module docs). WeChat
    /// channels share their access token through `store`.
    pub fn new(
        store: Store,
        mut channels: Channels,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        config: DispatcherConfig,
    ) -> Self {
        channels.share_tokens(&store);
        let concurrency = config.concurrency.max(1);
        let config = DispatcherConfig {
            batch: config.batch.max(1),
            concurrency,
            max_unrecorded: config.max_unrecorded.max(concurrency),
            ..config
        };
        Self {
            store,
            channels: Arc::new(channels),
            clock,
            pauses: Arc::new(Pauses::new(metrics.clone())),
            metrics,
            config,
            poll: Duration::from_millis(default_poll_ms()),
            drain_timeout: Duration::from_secs(10),
            wake: Arc::new(Notify::new()),
            health: Arc::default(),
        }
    }

    /// Reports failing outcome commits to `health` (and their recovery).
    pub fn with_health(mut self, health: Arc<crate::health::Health>) -> Self {
        self.health = health;
        self
    }

    /// Sets the idle poll interval (capped at [`MAX_POLL`]).
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll.clamp(Duration::from_millis(1), MAX_POLL);
        self
    }

    /// Sets how long a stop waits for in-flight pushes (default 10 s).
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// A handle for rate limits and wake-ups; take it before [`Dispatcher::run`].
    pub fn handle(&self) -> DispatcherHandle {
        DispatcherHandle { channels: self.channels.clone(), wake: self.wake.clone() }
    }

    /// Runs until `cancel` fires, then drains and releases (see the module docs).
    pub async fn run(self, cancel: CancellationToken) -> Result<DispatchStats> {
        let owner = self.config.owner.clone();
        tracing::info!(
            owner,
            batch = self.config.batch,
            concurrency = self.config.concurrency,
            max_unrecorded = self.config.max_unrecorded,
            "Dispatcher started."
        );
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        let unrecorded = Arc::new(Semaphore::new(self.config.max_unrecorded));
        let (batches_tx, mut batches) = mpsc::channel::<Vec<ClaimedSend>>(1);
        let saturated = Saturated::default();
        let mut pacers = Pacers::new(self.channels.clone(), saturated.clone(), cancel.clone());
        let (finished_tx, finished) = mpsc::unbounded_channel::<Finished>();
        let give_up = CancellationToken::new();

        let claimer = tokio::spawn(claim_loop(
            Claimer {
                store: self.store.clone(),
                clock: self.clock.clone(),
                config: self.config.clone(),
                poll: self.poll,
                wake: self.wake.clone(),
                saturated,
                pauses: self.pauses.clone(),
                health: self.health.clone(),
            },
            cancel.clone(),
            batches_tx,
        ));
        let recorder = Recorder {
            store: self.store.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            owner: owner.clone(),
            give_up: give_up.clone(),
            health: self.health.clone(),
        };
        let max_batch = self.config.batch.max(self.config.concurrency) * 4;
        let recorder = tokio::spawn(recorder.run(finished, max_batch));

        let mut in_flight = JoinSet::new();
        let dispatch = Dispatch {
            channels: self.channels.clone(),
            pauses: self.pauses.clone(),
            clock: self.clock.clone(),
            slots,
            unrecorded: unrecorded.clone(),
            finished: finished_tx.clone(),
            cancel: cancel.clone(),
        };
        'dispatch: loop {
            let rows = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                row = pacers.ready.recv() => match row {
                    Some(row) => {
                        if !dispatch.spawn(row, &mut in_flight).await {
                            break;
                        }
                        continue;
                    }
                    None => break,
                },
                rows = batches.recv() => match rows {
                    Some(rows) => rows,
                    None => break,
                },
            };
            for row in rows {
                // Claimed up to `lookahead` early: hold it until its instant.
                if !hold_until(&*self.clock, row.not_before, self.poll, &cancel).await {
                    break 'dispatch;
                }
                if self.channels.is_campaign_limited(&row.campaign_id) {
                    pacers.queue(row);
                } else if !dispatch.spawn(row, &mut in_flight).await {
                    break 'dispatch;
                }
            }
        }
        // The recorder ends once every sender of outcomes is gone.
        drop(pacers);
        drop(dispatch);
        drop(batches);
        drop(finished_tx);
        let claimed = claimer.await.unwrap_or_default();

        // Drain: every place comes back once its outcome is committed.
        let permits = u32::try_from(self.config.max_unrecorded).unwrap_or(u32::MAX);
        let drained =
            tokio::time::timeout(self.drain_timeout, unrecorded.acquire_many(permits)).await;
        if drained.is_err() {
            tracing::warn!(
                owner,
                abandoned = in_flight.len(),
                "In-flight pushes did not finish within the drain timeout; abandoning them."
            );
            in_flight.abort_all();
            give_up.cancel();
        }
        while in_flight.join_next().await.is_some() {}
        let mut stats = recorder.await.unwrap_or_default();
        stats.claimed = claimed;
        stats.released = self.store.release(&owner).await?;
        tracing::info!(
            owner,
            claimed = stats.claimed,
            sent = stats.sent,
            released = stats.released,
            "Dispatcher stopped."
        );
        Ok(stats)
    }
}

/// Hands rows to their channel: a place among the unrecorded, a request slot,
/// then one task per row that sends it and passes its outcome to the recorder.
struct Dispatch {
    channels: Arc<Channels>,
    pauses: Arc<Pauses>,
    clock: Arc<dyn Clock>,
    slots: Arc<Semaphore>,
    unrecorded: Arc<Semaphore>,
    finished: mpsc::UnboundedSender<Finished>,
    cancel: CancellationToken,
}

impl Dispatch {
    /// Spawns the row's send once it has a place and a slot; `false` when
    /// cancelled first (the row stays claimed and is released at the end). A
    /// row of a paused channel that is not its probe goes back unsent.
    async fn spawn(&self, row: ClaimedSend, in_flight: &mut JoinSet<()>) -> bool {
        let place = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return false,
            place = self.unrecorded.clone().acquire_owned() => place.expect("never closed"),
        };
        let admitted = self.pauses.admit(&row.channel, self.clock.now());
        if admitted == Admit::Hold {
            let outcome = Outcome::Released { id: row.id, reason: CHANNEL_PAUSED.into() };
            let _ = self.finished.send(Finished {
                member_id: row.member_id,
                campaign_id: row.campaign_id,
                channel: row.channel,
                attempt: Attempt { outcome, opt_out: false },
                _unrecorded: place,
            });
            return true;
        }
        let slot = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return false,
            slot = self.slots.clone().acquire_owned() => slot.expect("slots are never closed"),
        };
        let channels = self.channels.clone();
        let (pauses, clock) = (self.pauses.clone(), self.clock.clone());
        let finished = self.finished.clone();
        in_flight.spawn(async move {
            let attempt = channels.attempt(&row).await;
            drop(slot);
            pauses.observe(&row.channel, admitted, &attempt.outcome, clock.now());
            // The recorder outlives every sender; a send error means it gave up.
            let _ = finished.send(Finished {
                member_id: row.member_id,
                campaign_id: row.campaign_id,
                channel: row.channel,
                attempt,
                _unrecorded: place,
            });
        });
        while in_flight.try_join_next().is_some() {}
        true
    }
}

/// Campaigns whose pacer is full: the claimer leaves their rows in the ledger.
#[derive(Debug, Clone, Default)]
struct Saturated(Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>);

impl Saturated {
    fn set(&self, campaign: &str, full: bool) {
        let mut set = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if full {
            set.insert(campaign.to_owned());
        } else {
            set.remove(campaign);
        }
    }

    fn list(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }
}

/// How many rows a campaign's pacer holds before the claimer stops taking that
/// campaign's rows: two seconds of its rate, at least 64.
fn pacer_bound(rate_per_second: u32) -> usize {
    (rate_per_second as usize).saturating_mul(2).max(64)
}

/// One pacer per rate-limited campaign: a queue (in claim order) and a task that
/// waits for the campaign's limiter, then hands each row back on `ready`.
struct Pacers {
    channels: Arc<Channels>,
    saturated: Saturated,
    cancel: CancellationToken,
    queues: HashMap<String, Pacer>,
    ready_tx: mpsc::Sender<ClaimedSend>,
    ready: mpsc::Receiver<ClaimedSend>,
}

struct Pacer {
    rows: mpsc::UnboundedSender<ClaimedSend>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

impl Pacers {
    fn new(channels: Arc<Channels>, saturated: Saturated, cancel: CancellationToken) -> Self {
        let (ready_tx, ready) = mpsc::channel(64);
        Self { channels, saturated, cancel, queues: HashMap::new(), ready_tx, ready }
    }

    /// Queues a row behind its campaign's rate limit.
    fn queue(&mut self, row: ClaimedSend) {
        use std::sync::atomic::Ordering;
        let campaign = row.campaign_id.clone();
        let bound = pacer_bound(self.channels.campaign_rate(&campaign).unwrap_or(0));
        let pacer = self.queues.entry(campaign.clone()).or_insert_with(|| {
            let (rows, receiver) = mpsc::unbounded_channel();
            let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            tokio::spawn(pace(
                self.channels.clone(),
                receiver,
                queued.clone(),
                self.saturated.clone(),
                self.ready_tx.clone(),
                self.cancel.clone(),
            ));
            Pacer { rows, queued }
        });
        let queued = pacer.queued.fetch_add(1, Ordering::SeqCst) + 1;
        if queued >= bound {
            self.saturated.set(&campaign, true);
        }
        // The pacer only stops on cancellation; a row it never took stays
        // claimed and is released with the others.
        let _ = pacer.rows.send(row);
    }
}

/// A campaign's pacer: waits for the campaign's limit for each row in turn.
async fn pace(
    channels: Arc<Channels>,
    mut rows: mpsc::UnboundedReceiver<ClaimedSend>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    saturated: Saturated,
    ready: mpsc::Sender<ClaimedSend>,
    cancel: CancellationToken,
) {
    use std::sync::atomic::Ordering;
    loop {
        let row = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            row = rows.recv() => match row {
                Some(row) => row,
                None => return,
            },
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = channels.pace_campaign(&row) => {}
        }
        let left = queued.fetch_sub(1, Ordering::SeqCst) - 1;
        let bound = pacer_bound(channels.campaign_rate(&row.campaign_id).unwrap_or(0));
        if left <= bound / 2 {
            saturated.set(&row.campaign_id, false);
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            sent = ready.send(row) => if sent.is_err() { return },
        }
    }
}

/// What the claimer works with.
struct Claimer {
    store: Store,
    clock: Arc<dyn Clock>,
    config: DispatcherConfig,
    poll: Duration,
    wake: Arc<Notify>,
    saturated: Saturated,
    pauses: Arc<Pauses>,
    health: Arc<crate::health::Health>,
}

/// Claims batches and hands them over; sleeps (at most `poll`, or until woken)
/// when nothing is due. Leaves the rows of `saturated` campaigns and of paused
/// channels (but a due probe's) in the ledger.
/// Returns how many rows it claimed.
///
/// It also keeps the rows it holds: every third of a lease (on `clock`) it extends
/// the lease of every row this owner has claimed and not yet recorded, before it
/// claims again and while it waits to hand a batch over. Rows can wait longer
/// than a lease behind a campaign's `rate_per_second` or a slow channel; without
/// the renewal a claim (another replica's, or this one's own next) would take
/// them again and they would be sent twice. A replica that stops renewing (it
/// died, or stalled for two thirds of a lease) loses its rows to the others.
async fn claim_loop(
    claimer: Claimer,
    cancel: CancellationToken,
    batches: mpsc::Sender<Vec<ClaimedSend>>,
) -> u64 {
    let Claimer { store, clock, config, poll, wake, saturated, pauses, health } = claimer;
    let limit = i64::try_from(config.batch).unwrap_or(i64::MAX);
    let mut claimed = 0_u64;
    let mut leases = Leases { renewed: clock.now(), store: &store, config: &config };
    'claiming: while !cancel.is_cancelled() {
        // One instant for both: rows renewed at `now` are not expired at `now`.
        let now = clock.now();
        leases.keep(now).await;
        let exclude = Exclude { campaigns: saturated.list(), channels: pauses.excluded(now) };
        let claim = store.claim_due_within(
            &config.owner,
            now,
            config.lookahead,
            config.lease,
            limit,
            &exclude,
        );
        let rows = match claim.await {
            Ok(rows) => {
                health.claiming_ok();
                rows
            }
            Err(error) => {
                health.claiming_failed(now, &error.to_string());
                tracing::warn!(%error, owner = config.owner, "Claiming due pushes failed.");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(MAX_POLL) => continue,
                }
            }
        };
        claimed += rows.len() as u64;
        if rows.is_empty() {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
            continue;
        }
        // `reserve` can be abandoned without losing the batch, so the wait for the
        // sender keeps renewing.
        loop {
            tokio::select! {
                () = cancel.cancelled() => break 'claiming,
                permit = batches.reserve() => match permit {
                    Ok(permit) => {
                        permit.send(rows);
                        break;
                    }
                    Err(_) => break 'claiming,
                },
                () = tokio::time::sleep(poll) => leases.keep(clock.now()).await,
            }
        }
    }
    claimed
}

/// The claimer's lease renewal (see [`claim_loop`]).
struct Leases<'a> {
    renewed: chrono::DateTime<chrono::Utc>,
    store: &'a Store,
    config: &'a DispatcherConfig,
}

impl Leases<'_> {
    /// Renews this owner's leases (to `now` + a lease) when a third of a lease
    /// has passed since the last renewal; a failure is logged and retried on the
    /// next call.
    async fn keep(&mut self, now: chrono::DateTime<chrono::Utc>) {
        if now - self.renewed < self.config.lease / 3 {
            return;
        }
        match self.store.renew_leases(&self.config.owner, now + self.config.lease).await {
            Ok(_) => self.renewed = now,
            Err(error) => {
                tracing::warn!(%error, owner = self.config.owner, "Renewing leases failed.");
            }
        }
    }
}

/// Waits until `clock` reaches `at` (re-reading the clock at least every `poll`,
/// since a scaled or manual clock may move at its own pace); `false` when
/// `cancel` fired first.
async fn hold_until(
    clock: &dyn Clock,
    at: chrono::DateTime<chrono::Utc>,
    poll: Duration,
    cancel: &CancellationToken,
) -> bool {
    loop {
        let now = clock.now();
        if at <= now {
            return true;
        }
        let wait = clock.real_delay(at - now);
        let wait = if wait.is_zero() { poll } else { wait.min(poll) };
        tokio::select! {
            biased;
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The dispatcher's recorder: writes outcomes by group commit, as `owner`.
struct Recorder {
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    owner: String,
    /// Fired when the drain times out: a failing write stops retrying.
    give_up: CancellationToken,
    health: Arc<crate::health::Health>,
}

impl Recorder {
    /// One commit at a time, each taking whatever finished while the previous one
    /// was being written (up to `max_batch`; the rows are distinct, so their order
    /// does not matter). A push leaves the unrecorded only after its commit.
    ///
    /// One commit at a time, not two overlapping: with a request slot no longer
    /// held through the commit, waiting costs no throughput, and fewer, larger
    /// commits cost the database less per row (a 1 M burst on two PostgreSQL
    /// replicas drained at 34.5-39.5 k/s against 30.8-36.9 k/s with two overlapping).
    async fn run(
        self,
        mut finished: mpsc::UnboundedReceiver<Finished>,
        max_batch: usize,
    ) -> DispatchStats {
        let mut stats = DispatchStats::default();
        let mut buffer: Vec<Finished> = Vec::with_capacity(max_batch);
        while finished.recv_many(&mut buffer, max_batch).await > 0 {
            self.flush(&buffer, &mut stats).await;
            // Frees the batch's places among the unrecorded.
            buffer.clear();
        }
        stats
    }

    /// Commits one batch, then counts it (stats and `pushes`). An abandoned batch
    /// (store down past the drain) stays claimed and is released, or re-claimed
    /// after the lease: never lost.
    async fn flush(&self, buffer: &[Finished], stats: &mut DispatchStats) {
        let opt_outs: Vec<i64> =
            buffer.iter().filter(|done| done.attempt.opt_out).map(|done| done.member_id).collect();
        let outcomes: Vec<Outcome> =
            buffer.iter().map(|done| done.attempt.outcome.clone()).collect();
        let Ok(recorded) = self.write(&opt_outs, &outcomes).await else { return };
        if recorded < outcomes.len() as u64 {
            tracing::warn!(
                owner = self.owner,
                outcomes = outcomes.len(),
                recorded,
                "Some outcomes were not recorded: their rows are no longer this replica's \
                 (the lease expired and another replica claimed them, or the member was \
                 forgotten)."
            );
        }
        for done in buffer {
            let label = match done.attempt.outcome {
                Outcome::Released { .. } => {
                    stats.paused += 1;
                    continue;
                }
                Outcome::Sent { .. } => {
                    stats.sent += 1;
                    "sent"
                }
                Outcome::Retry { .. } => {
                    stats.retried += 1;
                    "retry"
                }
                Outcome::Dead { .. } => {
                    stats.dead += 1;
                    "dead"
                }
                Outcome::Skipped { .. } => {
                    stats.skipped += 1;
                    "skipped"
                }
            };
            let labels = [done.campaign_id.as_str(), &done.channel, label];
            self.metrics.pushes.with_label_values(&labels).inc();
        }
    }

    /// Opts members out, then records the batch; retries while the store is down,
    /// until `give_up`. Returns how many outcomes were recorded.
    async fn write(&self, opt_outs: &[i64], outcomes: &[Outcome]) -> Result<u64> {
        let mut delay = Duration::from_millis(50);
        loop {
            let result = async {
                for member in opt_outs {
                    self.store.set_consent(*member, Consent::OptedOut, self.clock.now()).await?;
                }
                self.store.record_outcomes(&self.owner, outcomes).await
            }
            .await;
            match result {
                Ok(recorded) => {
                    self.health.recording_ok();
                    return Ok(recorded);
                }
                Err(error) => {
                    self.health.recording_failed(self.clock.now(), &error.to_string());
                    tracing::warn!(
                        %error,
                        rows = outcomes.len(),
                        "Recording outcomes failed; retrying."
                    );
                    tokio::select! {
                        () = self.give_up.cancelled() => return Err(Error::Store(error)),
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
