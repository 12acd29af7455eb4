//! The configured channels and one delivery attempt: rate limits (per channel and
//! per campaign, governor), per-channel concurrency, the send itself, and the
//! mapping of its result to a ledger [`Outcome`] with metrics.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use super::config::{ChannelConfig, ProcessSecrets, SecretSource, resolve_secret};
use super::log::LogChannel;
use super::retry::{Decision, RetryPolicy, next_shanghai_midnight};
use super::webhook::WebhookChannel;
use super::wechat::{WechatChannel, WechatSettings};
use super::{Error, Result};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{ClaimedSend, Outcome};

/// One channel implementation.
#[derive(Debug)]
pub enum Channel {
    /// JSON lines on stdout.
    Log(LogChannel),
    /// Signed HTTP POST.
    Webhook(Box<WebhookChannel>),
    /// WeChat Official Account.
    Wechat(Box<WechatChannel>),
}

/// Limits of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Sends per second at most.
    pub rate_per_second: Option<u32>,
    /// Sends in flight at most.
    pub concurrency: Option<usize>,
    /// Retry policy.
    pub retry: RetryPolicy,
}

#[derive(Debug)]
struct Entry {
    channel: Channel,
    limiter: Option<DefaultDirectRateLimiter>,
    slots: Option<Semaphore>,
    retry: RetryPolicy,
}

fn limiter(rate: u32) -> Option<DefaultDirectRateLimiter> {
    NonZeroU32::new(rate).map(|rate| RateLimiter::direct(Quota::per_second(rate)))
}

/// The result of one attempt: the outcome to record, and whether the member must be
/// opted out (WeChat said they refused our messages).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// What to record in the ledger.
    pub outcome: Outcome,
    /// Opt the member out before recording (`Store::opt_out`).
    pub opt_out: bool,
}

/// Every configured channel, by name, plus per-campaign rate limits.
pub struct Channels {
    entries: HashMap<String, Entry>,
    campaign_limits: RwLock<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").field("entries", &self.entries).finish_non_exhaustive()
    }
}

impl Channels {
    /// No channels yet.
    pub fn new(clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        Self { entries: HashMap::new(), campaign_limits: RwLock::default(), clock, metrics }
    }

    /// Builds every channel of `almanac.toml`, reading secrets from the environment
    /// and `$CREDENTIALS_DIRECTORY`.
    pub fn from_config(
        configs: &BTreeMap<String, ChannelConfig>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        Self::from_config_with(configs, clock, metrics, &ProcessSecrets)
    }

    /// [`Channels::from_config`] with an explicit secret source.
    pub fn from_config_with(
        configs: &BTreeMap<String, ChannelConfig>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        secrets: &dyn SecretSource,
    ) -> Result<Self> {
        let mut channels = Self::new(clock, metrics.clone());
        for (name, config) in configs {
            let retry = |max_attempts: Option<u32>, base: Option<u64>, max: Option<u64>| {
                let default = RetryPolicy::default();
                RetryPolicy {
                    max_attempts: max_attempts.unwrap_or(default.max_attempts).max(1),
                    base: base.map_or(default.base, millis),
                    max: max.map_or(default.max, millis),
                    max_retry_after: default.max_retry_after,
                }
            };
            let (channel, limits) = match config {
                ChannelConfig::Log(log) => (
                    Channel::Log(LogChannel::stdout()),
                    ChannelLimits { rate_per_second: log.rate_per_second, ..Default::default() },
                ),
                ChannelConfig::Webhook(hook) => {
                    let secret = resolve_secret(
                        name,
                        hook.secret_env.as_deref(),
                        hook.secret_file.as_deref(),
                        secrets,
                    )?;
                    let channel = WebhookChannel::new(&hook.url, secret, hook.timeout())?;
                    let limits = ChannelLimits {
                        rate_per_second: hook.rate_per_second,
                        concurrency: hook.concurrency,
                        retry: RetryPolicy {
                            max_retry_after: hook
                                .max_retry_after_ms
                                .map_or(RetryPolicy::default().max_retry_after, millis),
                            ..retry(hook.max_attempts, hook.backoff_ms, hook.max_backoff_ms)
                        },
                    };
                    (Channel::Webhook(Box::new(channel)), limits)
                }
                ChannelConfig::Wechat(wechat) => {
                    let secret = resolve_secret(
                        name,
                        wechat.secret_env.as_deref(),
                        wechat.secret_file.as_deref(),
                        secrets,
                    )?
                    .ok_or_else(|| Error::Config {
                        channel: name.clone(),
                        reason: "a wechat channel needs secret_env or secret_file (the AppSecret)"
                            .into(),
                    })?;
                    let settings = WechatSettings {
                        api_base: wechat.api_base.trim_end_matches('/').to_owned(),
                        appid: wechat.appid.clone(),
                        secret,
                        template_id: wechat.template_id.clone(),
                        text_key: wechat.text_key.clone(),
                        url: wechat.url.clone(),
                        daily_quota: wechat.daily_quota,
                        customer_service: wechat.customer_service,
                        timeout: std::time::Duration::from_millis(wechat.timeout_ms),
                    };
                    let limits = ChannelLimits {
                        rate_per_second: wechat.rate_per_second,
                        concurrency: wechat.concurrency,
                        retry: retry(wechat.max_attempts, wechat.backoff_ms, wechat.max_backoff_ms),
                    };
                    (
                        Channel::Wechat(Box::new(WechatChannel::new(settings, metrics.clone())?)),
                        limits,
                    )
                }
            };
            channels.insert(name, channel, limits);
        }
        Ok(channels)
    }

    /// Adds (or replaces) a channel; its `channel_paused` gauge starts at 0.
    pub fn insert(&mut self, name: &str, channel: Channel, limits: ChannelLimits) {
        self.metrics.channel_paused.with_label_values(&[name]).set(0);
        let entry = Entry {
            channel,
            limiter: limits.rate_per_second.and_then(limiter),
            slots: limits.concurrency.filter(|n| *n > 0).map(Semaphore::new),
            retry: limits.retry,
        };
        self.entries.insert(name.to_owned(), entry);
    }

    /// Shares WeChat access tokens with other replicas through `store`
    /// ([`Dispatcher::new`](super::Dispatcher::new) does this).
    pub fn share_tokens(&mut self, store: &crate::store::Store) {
        for entry in self.entries.values_mut() {
            if let Channel::Wechat(wechat) = &mut entry.channel {
                wechat.share_tokens(store.clone());
            }
        }
    }

    /// Refreshes the access token of every WeChat channel that needs it (see
    /// [`WechatChannel::refresh_token`]); returns the failures by channel name.
    pub async fn refresh_tokens(&self, now: DateTime<Utc>) -> Vec<(String, Error)> {
        let mut failures = Vec::new();
        for (name, entry) in &self.entries {
            if let Channel::Wechat(wechat) = &entry.channel
                && let Err(error) = wechat.refresh_token(now).await
            {
                failures.push((name.clone(), error));
            }
        }
        failures
    }

    /// Whether a channel of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Sets the per-campaign rate limits (`limits.rate_per_second` of each campaign);
    /// campaigns absent from `rates` are unlimited. Called at start and on reload; a
    /// campaign whose rate did not change keeps its limiter state.
    pub fn set_campaign_rates(&self, rates: &HashMap<String, u32>) {
        let mut limits = self.campaign_limits.write().expect("campaign limits lock");
        limits.retain(|campaign, (rate, _)| rates.get(campaign) == Some(rate));
        for (campaign, rate) in rates {
            if limits.contains_key(campaign) {
                continue;
            }
            if let Some(limiter) = limiter(*rate) {
                limits.insert(campaign.clone(), (*rate, Arc::new(limiter)));
            }
        }
    }

    /// The campaign's own rate limit (pushes per second), if it has one.
    pub fn campaign_rate(&self, campaign: &str) -> Option<u32> {
        let limits = self.campaign_limits.read().expect("campaign limits lock");
        limits.get(campaign).map(|(rate, _)| *rate)
    }

    /// Whether `campaign` has a rate limit of its own.
    pub fn is_campaign_limited(&self, campaign: &str) -> bool {
        self.campaign_limiter(campaign).is_some()
    }

    /// Waits for the campaign's own rate limit (`limits.rate_per_second`), if it
    /// has one. The dispatcher calls it before a row takes a request slot, so
    /// rows waiting on one campaign's limit hold nothing other campaigns need.
    pub async fn pace_campaign(&self, send: &ClaimedSend) {
        if let Some(limiter) = self.campaign_limiter(&send.campaign_id) {
            self.wait_for(&limiter, &send.channel).await;
        }
    }

    fn campaign_limiter(&self, campaign: &str) -> Option<Arc<DefaultDirectRateLimiter>> {
        let limits = self.campaign_limits.read().expect("campaign limits lock");
        limits.get(campaign).map(|(_, limiter)| limiter.clone())
    }

    async fn wait_for(&self, limiter: &DefaultDirectRateLimiter, channel: &str) {
        if limiter.check().is_err() {
            self.metrics.rate_limit_waits.with_label_values(&[channel]).inc();
            limiter.until_ready().await;
        }
    }

    async fn send(&self, entry: &Entry, send: &ClaimedSend) -> Result<Option<String>> {
        let now = self.clock.now();
        match &entry.channel {
            Channel::Log(log) => log.send(send, now).map(|()| None),
            Channel::Webhook(hook) => hook.send(send, now).await.map(|()| None),
            Channel::Wechat(wechat) => wechat.send(send, now).await.map(|sent| sent.provider_id),
        }
    }

    /// Sends one claimed row through its channel (after waiting for the channel's
    /// rate limiter and a channel slot; the campaign's own limit is
    /// [`Channels::pace_campaign`], before) and decides its outcome.
    /// An account-level error ([`Error::is_account_level`]) gives
    /// [`Outcome::Released`]: the row is not charged an attempt, and the dispatcher
    /// pauses the channel.
    /// Counts `retries`, `dead_letters`, `quota_deferrals`, `rate_limit_waits`,
    /// `channel_latency` and `fire_lateness`; the dispatcher counts `pushes` once the
    /// outcome is committed.
    pub async fn attempt(&self, send: &ClaimedSend) -> Attempt {
        let Some(entry) = self.entries.get(&send.channel) else {
            let error = Error::UnknownChannel(send.channel.clone());
            return self.finish(send, RetryPolicy::default(), Err(error));
        };
        if let Some(limiter) = &entry.limiter {
            self.wait_for(limiter, &send.channel).await;
        }
        let _slot = match &entry.slots {
            Some(slots) => Some(slots.acquire().await.expect("channel semaphore is never closed")),
            None => None,
        };
        let started = std::time::Instant::now();
        let result = self.send(entry, send).await;
        self.metrics
            .channel_latency
            .with_label_values(&[&send.channel])
            .observe(started.elapsed().as_secs_f64());
        self.finish(send, entry.retry, result)
    }

    fn finish(
        &self,
        send: &ClaimedSend,
        retry: RetryPolicy,
        result: Result<Option<String>>,
    ) -> Attempt {
        let now = self.clock.now();
        let (outcome, opt_out) = match result {
            Ok(provider_id) => {
                let lateness = (now - send.due_at).num_milliseconds().max(0) as f64 / 1000.0;
                self.metrics.fire_lateness.observe(lateness);
                (Outcome::Sent { id: send.id, at: now, provider_id }, false)
            }
            Err(error) if error.is_account_level() => {
                (Outcome::Released { id: send.id, reason: error.reason() }, false)
            }
            Err(error) if error.is_quota() => {
                self.metrics.quota_deferrals.with_label_values(&[&send.channel]).inc();
                let at = next_shanghai_midnight(now);
                (Outcome::Retry { id: send.id, at, error: error.reason() }, false)
            }
            Err(error) => {
                if !error.is_retriable() && !error.is_opt_out() && !error.is_skip() {
                    tracing::warn!(
                        %error, campaign = %send.campaign_id, channel = %send.channel,
                        "Push failed permanently."
                    );
                }
                let decision = retry.decide(&error, send.attempts, now, &mut rand::rng());
                match decision {
                    Decision::Retry { at, reason } => {
                        self.metrics.retries.with_label_values(&[&send.channel, &reason]).inc();
                        (Outcome::Retry { id: send.id, at, error: reason }, false)
                    }
                    Decision::Dead { reason, class } => {
                        self.metrics
                            .dead_letters
                            .with_label_values(&[&send.channel, &reason])
                            .inc();
                        self.metrics
                            .dead_letter_classes
                            .with_label_values(&[send.channel.as_str(), class])
                            .inc();
                        (Outcome::Dead { id: send.id, reason }, false)
                    }
                    Decision::OptOut { reason } => (Outcome::Skipped { id: send.id, reason }, true),
                    Decision::Skip { reason } => (Outcome::Skipped { id: send.id, reason }, false),
                }
            }
        };
        Attempt { outcome, opt_out }
    }
}

/// A configured number of milliseconds as a duration (at most a hundred years).
fn millis(ms: u64) -> chrono::Duration {
    chrono::Duration::milliseconds(ms.min(100 * 365 * 86_400_000) as i64)
}
