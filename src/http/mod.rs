//! HTTP: `/metrics`, `/healthz`, `/readyz`, the admin API under `/v1` (bearer
//! token, see [`admin`]), and the WeChat server callback ([`wechat`]). One axum
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
use crate::config::Secret;
use crate::daemon::LiveCampaigns;
use crate::metrics::Metrics;
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
            wechat::Action::OptOut => Some(Consent::OptedOut),
            wechat::Action::OptIn => Some(Consent::OptedIn),
            wechat::Action::Interaction => None,
        };
        if action != wechat::Action::OptOut {
            self.store.touch_interaction(member_id, at).await?;
        }
        let Some(consent) = consent else {
            return Ok(wechat::Applied::Yes);
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
    health(Router::new())
        .route("/metrics", get(metrics))
        .route("/wechat/callback", get(wechat::verify_url).post(wechat::event))
        .nest("/v1", admin::router(state.clone()))
        .with_state(state)
}

/// The `listen` router when `admin_listen` is set: the WeChat callback and health.
pub fn public_router(state: AppState) -> Router {
    health(Router::new())
        .route("/wechat/callback", get(wechat::verify_url).post(wechat::event))
        .with_state(state)
}

/// The `admin_listen` router: the admin API, `/metrics` and health.
pub fn admin_router(state: AppState) -> Router {
    health(Router::new())
        .route("/metrics", get(metrics))
        .nest("/v1", admin::router(state.clone()))
        .with_state(state)
}

fn health(router: Router<AppState>) -> Router<AppState> {
    router.route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(readyz))
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
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"token2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
