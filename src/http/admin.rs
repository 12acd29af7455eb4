//! The admin API under `/v1`. Every call needs `Authorization: Bearer <token>`
//! (compared in constant time); without a configured token every call gets 401.
//!
//! - `GET /v1/campaigns`: every loaded campaign with its state and ledger counts.
//! - `POST /v1/campaigns/{id}/pause` and `/resume`: recorded in the audit log. A
//!   paused campaign is not planned, and the dispatcher does not claim its pending
//!   rows (they wait, and go out after `resume` if still within their window).
//! - `GET /v1/audit?limit=N&since=RFC3339`: the audit log, newest first (`limit`
//!   1 to [`AUDIT_LIMIT_MAX`], default 100; `since` an RFC 3339 instant); anything
//!   else in the query is a 400 naming the parameter.
//! - `PUT /v1/members/{external_id}` (body: a member record as JSON) upserts and
//!   resolves the member; `DELETE` forgets them; `GET` shows the member's place and
//!   upcoming sends.

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::AppState;
use crate::geo::Geo;
use crate::members::Member;
use crate::store::{AUDIT_LIMIT_MAX, UpsertKind};

const ACTOR: &str = "admin-api";

/// The `/v1` routes, behind the bearer-token check.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/audit", get(audit_log))
        .route("/campaigns", get(list_campaigns))
        .route("/campaigns/{id}/pause", post(pause))
        .route("/campaigns/{id}/resume", post(resume))
        .route("/members/{external_id}", get(show_member).put(upsert_member).delete(delete_member))
        .layer(middleware::from_fn_with_state(state, require_token))
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let ok = match (&state.admin_token, presented) {
        (Some(token), Some(presented)) => {
            super::constant_time_eq(token.expose().as_bytes(), presented.trim().as_bytes())
        }
        _ => false,
    };
    if ok {
        return next.run(request).await;
    }
    state.metrics.rejected_requests.with_label_values(&["admin", "unauthorized"]).inc();
    let message = if state.admin_token.is_none() {
        "the admin API is disabled: no admin token is configured (admin_token_env / \
         admin_token_credential)"
    } else {
        "missing or wrong bearer token"
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "error": message })),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn store_error(error: crate::store::Error) -> Response {
    tracing::error!(%error, "Admin API store call failed.");
    self::error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
}

/// How many audit entries `GET /v1/audit` returns without `limit`.
const AUDIT_DEFAULT_LIMIT: i64 = 100;

/// `limit` and `since` of `GET /v1/audit`, or the 400 message.
fn audit_query(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<(i64, Option<DateTime<Utc>>), String> {
    let (mut limit, mut since) = (AUDIT_DEFAULT_LIMIT, None);
    let Query(pairs) = query.map_err(|rejection| rejection.body_text())?;
    for (name, value) in pairs {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|limit| (1..=AUDIT_LIMIT_MAX).contains(limit))
                    .ok_or_else(|| {
                        format!(
                            "limit must be a whole number from 1 to {AUDIT_LIMIT_MAX}, not {value:?}"
                        )
                    })?;
            }
            "since" => {
                let at = DateTime::parse_from_rfc3339(&value).map_err(|error| {
                    format!(
                        "since must be an RFC 3339 instant such as 2026-12-01T00:00:00Z, not \
                         {value:?} ({error})"
                    )
                })?;
                since = Some(at.to_utc());
            }
            other => {
                return Err(format!("unknown query parameter {other:?}; expected limit and since"));
            }
        }
    }
    Ok((limit, since))
}

async fn audit_log(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let (limit, since) = match audit_query(query) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match state.store.audit_log_since(since, limit).await {
        Ok(entries) => Json(entries).into_response(),
        Err(error) => store_error(error),
    }
}

#[derive(Debug, Serialize)]
struct CampaignView {
    id: String,
    name: String,
    channel: String,
    state: &'static str,
    file: String,
    ledger: std::collections::BTreeMap<&'static str, i64>,
}

async fn list_campaigns(State(state): State<AppState>) -> Response {
    let set = state.campaigns.current();
    let paused = match crate::daemon::paused_campaigns(&state.store).await {
        Ok(paused) => paused,
        Err(error) => return store_error(error),
    };
    let counts = match state.store.campaign_backlog().await {
        Ok(counts) => counts,
        Err(error) => return store_error(error),
    };
    let views: Vec<CampaignView> = set
        .campaigns
        .iter()
        .map(|campaign| CampaignView {
            id: campaign.id.clone(),
            name: campaign.name.clone(),
            channel: campaign.channel.clone(),
            state: crate::daemon::campaign_state(campaign, &paused),
            file: campaign.source.path.display().to_string(),
            ledger: counts
                .iter()
                .filter(|(id, _, _)| *id == campaign.id)
                .map(|(_, status, count)| (status.as_str(), *count))
                .collect(),
        })
        .collect();
    Json(views).into_response()
}

async fn set_paused(state: AppState, id: String, paused: bool) -> Response {
    if !state.campaigns.current().campaigns.iter().any(|campaign| campaign.id == id) {
        return error(StatusCode::NOT_FOUND, format!("no campaign {id:?} is loaded"));
    }
    let action = if paused { "pause" } else { "resume" };
    if let Err(error) = state.store.set_campaign_paused(&id, paused).await {
        return store_error(error);
    }
    if let Err(error) = state.store.audit(ACTOR, action, &id, "").await {
        return store_error(error);
    }
    tracing::info!(campaign = %id, action, "Campaign state changed through the admin API.");
    Json(json!({ "id": id, "state": if paused { "paused" } else { "active" } })).into_response()
}

async fn pause(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    set_paused(state, id, true).await
}

async fn resume(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    set_paused(state, id, false).await
}

async fn upsert_member(
    State(state): State<AppState>,
    Path(external_id): Path<String>,
    body: Result<Json<Member>, JsonRejection>,
) -> Response {
    let Json(member) = match body {
        Ok(body) => body,
        // Answered by the body limit (`server`), which names the setting.
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return rejection.into_response();
        }
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected a member record as JSON: {}", rejection.body_text()),
            );
        }
    };
    if member.external_id != external_id {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "external_id in the body ({:?}) differs from the path ({external_id:?})",
                member.external_id
            ),
        );
    }
    // The same rule as member files: a wrong field is named, nothing is stored.
    let member = match member.validated() {
        Ok(member) => member,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let geo = state.geo;
    let resolution = crate::daemon::resolve(geo, &state.metrics, &member);
    let place = resolution.place;
    let unresolved = resolution.unresolved_reason.clone();
    let upserted = match state.store.upsert_resolved(&[(member, resolution)]).await {
        Ok(upserted) => upserted,
        Err(error) => return store_error(error),
    };
    let Some(upserted) = upserted.first() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the store returned no id");
    };
    let target = format!("member #{}", upserted.id);
    if let Err(error) = state.store.audit(ACTOR, "upsert_member", &target, "").await {
        return store_error(error);
    }
    let status =
        if upserted.kind == UpsertKind::Inserted { StatusCode::CREATED } else { StatusCode::OK };
    (
        status,
        Json(json!({
            "id": upserted.id,
            "external_id": external_id,
            "place": place.map(|place| place_json(geo, &place)),
            "unresolved": unresolved,
        })),
    )
        .into_response()
}

async fn delete_member(State(state): State<AppState>, Path(external_id): Path<String>) -> Response {
    // The store writes the audit row itself, naming only the internal id.
    match state.store.delete_member(&external_id, ACTOR).await {
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no member {external_id:?}")),
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => store_error(error),
    }
}

async fn show_member(State(state): State<AppState>, Path(external_id): Path<String>) -> Response {
    let stored = match state.store.get_member(&external_id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no member {external_id:?}")),
        Err(error) => return store_error(error),
    };
    let upcoming = match state.store.upcoming_sends(stored.id, 50).await {
        Ok(upcoming) => upcoming,
        Err(error) => return store_error(error),
    };
    let geo = state.geo;
    Json(json!({
        "id": stored.id,
        "external_id": stored.member.external_id,
        "opted_out_at": stored.member.opted_out_at,
        "place": stored.place.map(|place| place_json(geo, &place)),
        "unresolved": stored.unresolved_reason,
        "upcoming": upcoming.iter().map(|send| json!({
            "campaign": send.campaign_id,
            "occurrence": send.occurrence,
            "due_at": send.due_at,
            "channel": send.channel,
            "lang": send.lang,
            "status": send.status.as_str(),
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

fn place_json(geo: &Geo, place: &crate::geo::Place) -> serde_json::Value {
    let city = geo.city(place.city);
    json!({
        "city": city.name,
        "city_zh": city.name_zh,
        "province": city.province,
        "country": city.country,
        "tz": place.tz.name(),
        "dialect": city.dialect,
        "lang": city.lang_tag,
        "source": place.source.as_str(),
        "confidence": place.confidence,
    })
}
