//! The one Prometheus registry and every series the daemon exports. Modules get an
//! `Arc<Metrics>` and touch only the fields they own; nothing registers series
//! elsewhere. Labels are bounded: campaign ids and channel names come from
//! configuration, outcomes and reasons are fixed vocabularies; never a member or a
//! city.

use prometheus::core::Collector;
use prometheus::proto::MetricType;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every series, registered in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry served at `/metrics`.
    pub registry: Registry,
    /// Pushes by campaign, channel and outcome (`sent`, `retry`, `dead`, `skipped`).
    pub pushes: IntCounterVec,
    /// Channel call latency by channel.
    pub channel_latency: HistogramVec,
    /// Fire lateness: sent instant minus due instant.
    pub fire_lateness: Histogram,
    /// Ledger rows by status.
    pub ledger_backlog: IntGaugeVec,
    /// Campaigns by state (`active`, `paused`, `disabled`).
    pub campaigns: IntGaugeVec,
    /// Campaign reloads by result (`ok`, `error`).
    pub reloads: IntCounterVec,
    /// Members in the store.
    pub members: IntGauge,
    /// Members without a resolved place.
    pub members_unresolved: IntGauge,
    /// Member resolutions by source (`explicit`, `coordinates`, `phone`, `ip`, `none`).
    pub resolutions: IntCounterVec,
    /// Sends planned into the ledger by campaign.
    pub planned: IntCounterVec,
    /// Members the planner skipped, by campaign and reason.
    pub plan_skips: IntCounterVec,
    /// Planning failures: a campaign the engine could not plan, or (`campaign="*"`)
    /// a whole planner tick.
    pub planning_failures: IntCounterVec,
    /// Retries scheduled by channel and reason.
    pub retries: IntCounterVec,
    /// Dead letters by channel and reason.
    pub dead_letters: IntCounterVec,
    /// Dead letters by channel and reason class (a bounded vocabulary,
    /// [`crate::delivery::DEAD_LETTER_CLASSES`], started at zero: alerts use it).
    pub dead_letter_classes: IntCounterVec,
    /// 1 while a channel is paused by an account-level error, else 0 (every
    /// configured channel is exported from the start).
    pub channel_paused: IntGaugeVec,
    /// Times a channel was paused by an account-level error, by channel and reason.
    pub channel_pauses: IntCounterVec,
    /// Waits on a rate limiter by channel.
    pub rate_limit_waits: IntCounterVec,
    /// Pushes deferred to the next day by a channel's daily quota.
    pub quota_deferrals: IntCounterVec,
    /// WeChat access-token refreshes by result.
    pub token_refreshes: IntCounterVec,
    /// Rejected (or, for `out_of_order`, ignored) inbound requests by endpoint and
    /// reason (`bad_signature`, `replayed`, `stale_timestamp`, `unauthorized`,
    /// `body_too_large`, …).
    pub rejected_requests: IntCounterVec,
    /// Open HTTP connections by listener (`listen`, `admin_listen`).
    pub http_connections: IntGaugeVec,
    /// HTTP connections closed by a limit, by listener and reason
    /// (`header_timeout`, `idle_timeout`, `evicted`, `refused`).
    pub http_connections_closed: IntCounterVec,
    /// Build information (constant 1) with `version` and `revision` (the git
    /// commit it was built from, or `unknown`).
    pub build_info: IntGaugeVec,
}

/// The package version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision the binary was built from (`build.rs`), or `unknown`.
pub const REVISION: &str = env!("ALMANAC_GIT_REVISION");

const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const LATENESS_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

impl Metrics {
    /// A fresh registry with every series (and the process collector on Linux).
    pub fn new() -> Self {
        let registry = Registry::new();
        let pushes = counter(
            &registry,
            "almanac_pushes_total",
            "Pushes by campaign, channel and outcome.",
            &["campaign", "channel", "outcome"],
        );
        let channel_latency = HistogramVec::new(
            HistogramOpts::new("almanac_channel_latency_seconds", "Channel call latency.")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["channel"],
        )
        .expect("valid metric");
        registry.register(Box::new(channel_latency.clone())).expect("unique metric");
        let fire_lateness = Histogram::with_opts(
            HistogramOpts::new(
                "almanac_fire_lateness_seconds",
                "Sent instant minus due instant of each push.",
            )
            .buckets(LATENESS_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry.register(Box::new(fire_lateness.clone())).expect("unique metric");
        let ledger_backlog =
            gauge(&registry, "almanac_ledger_rows", "Ledger rows by status.", &["status"]);
        let campaigns = gauge(&registry, "almanac_campaigns", "Campaigns by state.", &["state"]);
        let reloads =
            counter(&registry, "almanac_reloads_total", "Campaign reloads by result.", &["result"]);
        let members = IntGauge::new("almanac_members", "Members in the store.").expect("valid");
        registry.register(Box::new(members.clone())).expect("unique metric");
        let members_unresolved =
            IntGauge::new("almanac_members_unresolved", "Members without a resolved place.")
                .expect("valid");
        registry.register(Box::new(members_unresolved.clone())).expect("unique metric");
        let resolutions = counter(
            &registry,
            "almanac_resolutions_total",
            "Member resolutions by source.",
            &["source"],
        );
        let planned = counter(
            &registry,
            "almanac_planned_total",
            "Sends planned into the ledger by campaign.",
            &["campaign"],
        );
        let plan_skips = counter(
            &registry,
            "almanac_plan_skips_total",
            "Skip decisions of the planner, by campaign and reason (a member skipped as a \
             whole, e.g. unresolved, is counted on every planning pass that covers them).",
            &["campaign", "reason"],
        );
        let planning_failures = counter(
            &registry,
            "almanac_planning_failures_total",
            "Planning failures: per campaign the engine could not plan (a panic, caught), or \
             campaign=\"*\" for a planner tick that failed (the store, or the planner).",
            &["campaign"],
        );
        let retries = counter(
            &registry,
            "almanac_retries_total",
            "Retries scheduled, by channel and reason.",
            &["channel", "reason"],
        );
        let dead_letters = counter(
            &registry,
            "almanac_dead_letters_total",
            "Pushes given up, by channel and reason.",
            &["channel", "reason"],
        );
        let dead_letter_classes = counter(
            &registry,
            "almanac_dead_letters_by_class_total",
            "Pushes given up, by channel and reason class (credentials, config, rejected, \
             transient, internal).",
            &["channel", "class"],
        );
        let channel_paused = gauge(
            &registry,
            "almanac_channel_paused",
            "1 while the channel is paused by an account-level error (its pushes wait \
             pending while one probe at a time checks it), else 0.",
            &["channel"],
        );
        let channel_pauses = counter(
            &registry,
            "almanac_channel_pauses_total",
            "Channel pauses by an account-level error, by channel and reason (the error).",
            &["channel", "reason"],
        );
        let rate_limit_waits = counter(
            &registry,
            "almanac_rate_limit_waits_total",
            "Waits on a rate limiter, by channel.",
            &["channel"],
        );
        let quota_deferrals = counter(
            &registry,
            "almanac_quota_deferrals_total",
            "Pushes deferred to the next day by a channel's daily quota.",
            &["channel"],
        );
        let token_refreshes = counter(
            &registry,
            "almanac_wechat_token_refreshes_total",
            "WeChat access-token refreshes by result.",
            &["result"],
        );
        let rejected_requests = counter(
            &registry,
            "almanac_http_rejected_total",
            "Rejected (out_of_order: acknowledged but ignored) inbound requests by endpoint and reason.",
            &["endpoint", "reason"],
        );
        let http_connections = gauge(
            &registry,
            "almanac_http_connections",
            "Open HTTP connections by listener.",
            &["listener"],
        );
        let http_connections_closed = counter(
            &registry,
            "almanac_http_connections_closed_total",
            "HTTP connections closed by a limit ([http] in almanac.toml), by listener and reason.",
            &["listener", "reason"],
        );
        let build_info = gauge(
            &registry,
            "almanac_build_info",
            "Build information: the version and the git revision built (or unknown).",
            &["version", "revision"],
        );
        build_info.with_label_values(&[VERSION, REVISION]).set(1);
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("unique metric");
        Self {
            registry,
            pushes,
            channel_latency,
            fire_lateness,
            ledger_backlog,
            campaigns,
            reloads,
            members,
            members_unresolved,
            resolutions,
            planned,
            plan_skips,
            planning_failures,
            retries,
            dead_letters,
            dead_letter_classes,
            channel_paused,
            channel_pauses,
            rate_limit_waits,
            quota_deferrals,
            token_refreshes,
            rejected_requests,
            http_connections,
            http_connections_closed,
            build_info,
        }
    }

    /// The text exposition of every series. Families that have no child yet (a
    /// labelled counter nothing has touched) are still declared with `# HELP` and
    /// `# TYPE`, so dashboards and alerts can rely on every name being exported.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding never fails");
        let mut text = String::from_utf8(buffer).expect("exposition is UTF-8");
        for family in self.collectors().iter().flat_map(|collector| collector.collect()) {
            if family.get_metric().is_empty() {
                let kind = match family.get_field_type() {
                    MetricType::COUNTER => "counter",
                    MetricType::GAUGE => "gauge",
                    MetricType::HISTOGRAM => "histogram",
                    MetricType::SUMMARY => "summary",
                    MetricType::UNTYPED => "untyped",
                };
                let name = family.name();
                let help = family.help().replace('\\', "\\\\").replace('\n', "\\n");
                text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            }
        }
        text
    }

    /// Starts every counter whose label sets are known at zero, so `increase()` and
    /// the alerts on it see the first event: the fixed vocabularies (reload
    /// results, token refresh results, the planner tick's failures), per channel
    /// (dead letters by class, quota deferrals, rate-limit waits, latency) and per
    /// campaign (pushes by outcome, planned sends, planning failures, skips by
    /// reason). Called at start and after each reload with the campaigns and
    /// channels now configured; series of removed campaigns stay (a counter never
    /// goes backwards).
    pub fn init_series<'a>(
        &self,
        campaigns: impl IntoIterator<Item = (&'a str, &'a str)>,
        channels: impl IntoIterator<Item = &'a str>,
    ) {
        for result in ["ok", "error"] {
            self.reloads.with_label_values(&[result]);
            self.token_refreshes.with_label_values(&[result]);
        }
        self.planning_failures.with_label_values(&["*"]);
        for (campaign, channel) in campaigns {
            for outcome in ["sent", "retry", "dead", "skipped"] {
                self.pushes.with_label_values(&[campaign, channel, outcome]);
            }
            self.planned.with_label_values(&[campaign]);
            self.planning_failures.with_label_values(&[campaign]);
            for reason in crate::timing::SkipReason::ALL {
                self.plan_skips.with_label_values(&[campaign, reason.as_str()]);
            }
        }
        for channel in channels {
            self.channel_latency.with_label_values(&[channel]);
            self.quota_deferrals.with_label_values(&[channel]);
            self.rate_limit_waits.with_label_values(&[channel]);
            for class in crate::delivery::DEAD_LETTER_CLASSES {
                self.dead_letter_classes.with_label_values(&[channel, *class]);
            }
        }
    }

    fn collectors(&self) -> [&dyn Collector; 24] {
        [
            &self.pushes,
            &self.channel_latency,
            &self.fire_lateness,
            &self.ledger_backlog,
            &self.campaigns,
            &self.reloads,
            &self.members,
            &self.members_unresolved,
            &self.resolutions,
            &self.planned,
            &self.plan_skips,
            &self.planning_failures,
            &self.retries,
            &self.dead_letters,
            &self.dead_letter_classes,
            &self.channel_paused,
            &self.channel_pauses,
            &self.rate_limit_waits,
            &self.quota_deferrals,
            &self.token_refreshes,
            &self.rejected_requests,
            &self.http_connections,
            &self.http_connections_closed,
            &self.build_info,
        ]
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family() {
        let metrics = Metrics::new();
        metrics.pushes.with_label_values(&["c", "log", "sent"]).inc();
        metrics.fire_lateness.observe(0.2);
        let text = metrics.render();
        for name in [
            "almanac_pushes_total",
            "almanac_fire_lateness_seconds_bucket",
            "almanac_build_info",
            "almanac_members",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn untouched_families_are_declared() {
        let metrics = Metrics::new();
        let text = metrics.render();
        assert!(text.contains("# TYPE almanac_dead_letters_total counter\n"), "{text}");
        assert!(!text.contains("almanac_dead_letters_total{"), "{text}");
        metrics.dead_letters.with_label_values(&["log", "timeout"]).inc();
        let text = metrics.render();
        assert_eq!(text.matches("# TYPE almanac_dead_letters_total counter").count(), 1);
        assert!(text.contains("almanac_dead_letters_total{channel=\"log\",reason=\"timeout\"} 1"));
    }

    #[test]
    fn known_label_sets_start_at_zero() {
        let metrics = Metrics::new();
        metrics.init_series([("rain", "wechat-main")], ["wechat-main"]);
        let text = metrics.render();
        for sample in [
            "almanac_dead_letters_by_class_total{channel=\"wechat-main\",class=\"credentials\"} 0",
            "almanac_wechat_token_refreshes_total{result=\"error\"} 0",
            "almanac_planning_failures_total{campaign=\"*\"} 0",
            "almanac_planning_failures_total{campaign=\"rain\"} 0",
            "almanac_plan_skips_total{campaign=\"rain\",reason=\"no_crossing\"} 0",
            "almanac_quota_deferrals_total{channel=\"wechat-main\"} 0",
        ] {
            assert!(text.contains(sample), "{sample} missing from:\n{text}");
        }
    }
}
