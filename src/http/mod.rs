//! HTTP: `/metrics`, `/healthz`, `/readyz`, the admin API under `/v1` (bearer
//! token, see [`admin`]), the WeChat server callback ([`wechat`]), and at `/` a
//! plain-text index of the endpoints the listener serves. One axum
//! router on one listener (loopback by default), or with `[http] admin_listen`
//! two: [`admin_router`] there and [`public_router`] on `listen`. Each listener
//! runs [`server::serve`] (timeouts, connection table, body limit) and stops on
//! the daemon's cancellation token after everything else has drained.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::daemon::LiveCampaigns;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::{Consent, Store};

pub mod admin;
pub mod server;
pub mod wechat;

pub use server::{HttpSettings, Limits, serve};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The store.
    pub store: Store,
    /// The campaigns currently running.
    pub campaigns: Arc<LiveCampaigns>,
    /// The admin bearer token; `None` disables the admin API (every call 401).
    pub admin_token: Option<Secret>,
    /// The WeChat callback's token, mode and key; `None` disables the callback (503).
    pub callback: Option<Arc<wechat::Callback>>,
    /// The daemon's clock.
    pub clock: Arc<dyn Clock>,
    /// Place knowledge, with the `[geo]` settings applied.
    pub geo: &'static crate::geo::Geo,
    /// Failures the daemon runs through (planning, recording): `/readyz` reports them.
    pub health: Arc<crate::health::Health>,
}

impl AppState {
    /// Applies a callback event to the member with this openid.
    pub async fn apply_callback(
        &self,
        openid: &str,
        action: wechat::Action,
        at: DateTime<Utc>,
    ) -> crate::store::Result<wechat::Applied> {
        let Some(member_id) = self.store.member_id_by_openid(openid).await? else {
            return Ok(wechat::Applied::NotAMember);
        };
        let consent = match action {
            wechat::Action::Interaction => {
                self.store.touch_interaction(member_id, at).await?;
                return Ok(wechat::Applied::Yes);
            }
            wechat::Action::OptIn => {
                self.store.touch_interaction(member_id, at).await?;
                Consent::OptedIn
            }
            wechat::Action::OptOut => Consent::OptedOut,
        };
        if !self.store.set_consent(member_id, consent, at).await? {
            return Ok(wechat::Applied::OutOfOrder);
        }
        match consent {
            Consent::OptedOut => {
                tracing::info!(member_id, "Member unsubscribed on WeChat; opted out.");
            }
            Consent::OptedIn => {
                tracing::info!(member_id, "Member subscribed on WeChat; opted back in.");
            }
        }
        Ok(wechat::Applied::Yes)
    }
}

/// The router with every endpoint (one listener).
pub fn router(state: AppState) -> Router {
    health(Router::new(), &[Part::Metrics, Part::Callback, Part::Admin])
        .route("/metrics", get(metrics))
        .route("/wechat/callback", get(wechat::verify_url).post(wechat::event))
        .nest("/v1", admin::router(state.clone()))
        .with_state(state)
}

/// The `listen` router when `admin_listen` is set: the WeChat callback and health.
pub fn public_router(state: AppState) -> Router {
    health(Router::new(), &[Part::Callback])
        .route("/wechat/callback", get(wechat::verify_url).post(wechat::event))
        .with_state(state)
}

/// The `admin_listen` router: the admin API, `/metrics` and health.
pub fn admin_router(state: AppState) -> Router {
    health(Router::new(), &[Part::Metrics, Part::Admin])
        .route("/metrics", get(metrics))
        .nest("/v1", admin::router(state.clone()))
        .with_state(state)
}

/// Health, and the index of `parts` (health always included) at `/`.
fn health(router: Router<AppState>, parts: &[Part]) -> Router<AppState> {
    let index = index(parts);
    router
        .route("/", get(move || async move { index }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
}

/// A group of endpoints a listener may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Health,
    Metrics,
    Callback,
    Admin,
}

/// Every endpoint: its group, methods, path and what it is for.
const ENDPOINTS: &[(Part, &str, &str, &str)] = &[
    (Part::Health, "GET", "/healthz", "liveness: \"ok\" while the process serves HTTP"),
    (Part::Health, "GET", "/readyz", "readiness: 200, or 503 with each problem"),
    (Part::Metrics, "GET", "/metrics", "Prometheus metrics"),
    (Part::Callback, "GET POST", "/wechat/callback", "WeChat server URL check and events"),
    (Part::Admin, "GET", "/v1/campaigns", "campaigns, their state and ledger counts"),
    (Part::Admin, "POST", "/v1/campaigns/{id}/pause", "pause a campaign (audited)"),
    (Part::Admin, "POST", "/v1/campaigns/{id}/resume", "resume a campaign (audited)"),
    (Part::Admin, "GET", "/v1/audit?limit=N&since=RFC3339", "the audit log, newest first"),
    (Part::Admin, "GET PUT DELETE", "/v1/members/{external_id}", "show, upsert, forget a member"),
];

/// The plain-text index page of a listener serving `parts`.
fn index(parts: &[Part]) -> String {
    let mut text =
        format!("almanac {} (revision {})\n\n", crate::metrics::VERSION, crate::metrics::REVISION);
    for (part, methods, path, what) in ENDPOINTS {
        if *part == Part::Health || parts.contains(part) {
            text.push_str(&format!("{methods:<15} {path:<32} {what}\n"));
        }
    }
    if parts.contains(&Part::Admin) {
        text.push_str("\n/v1 needs Authorization: Bearer <admin token>.\n");
    }
    text
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
        .into_response()
}

/// How long `/readyz` waits for the store's `SELECT 1` before answering 503.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

async fn readyz(State(state): State<AppState>) -> Response {
    if !state.campaigns.is_loaded() {
        return (StatusCode::SERVICE_UNAVAILABLE, "campaigns not loaded\n").into_response();
    }
    let problems = state.health.problems();
    if !problems.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n").into_response();
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => "ready\n".into_response(),
        Ok(Err(error)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("store unreachable: {error}\n"))
                .into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store did not answer within {READY_TIMEOUT:?}\n"),
        )
            .into_response(),
    }
}

/// Compares two secrets in time independent of where they differ and of their
/// lengths (both are hashed first).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_lists_what_the_listener_serves() {
        let public = index(&[Part::Callback]);
        assert!(public.contains("/wechat/callback") && public.contains("/readyz"), "{public}");
        assert!(!public.contains("/v1/") && !public.contains("/metrics"), "{public}");
        let admin = index(&[Part::Metrics, Part::Admin]);
        assert!(admin.contains("/v1/audit") && admin.contains("/metrics"), "{admin}");
        assert!(!admin.contains("/wechat/callback"), "{admin}");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"token2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
