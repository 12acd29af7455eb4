//! The WeChat Official Account server callback (`/wechat/callback`), plaintext mode.
//!
//! GET is the URL check: `signature` must be the lowercase hex SHA-1 of the sorted
//! concatenation of the token, `timestamp` and `nonce`; the reply echoes `echostr`.
//! POST carries event XML with the same three query parameters, checked the same
//! way: `unsubscribe` opts the member (found by openid) out, `subscribe` opts them
//! back in, and every message or event records the member's last interaction (the
//! 48-hour customer-service window). A bad signature gets 401 and is counted in
//! `almanac_http_rejected_total{endpoint="wechat_callback"}`; a malformed body 400.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha1::{Digest, Sha1};

use super::AppState;

const ENDPOINT: &str = "wechat_callback";

/// The signature WeChat computes: lowercase hex SHA-1 of the sorted concatenation
/// of `token`, `timestamp` and `nonce`.
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat().as_bytes()))
}

/// One inbound message or event, the fields almanac uses (others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inbound {
    /// The Official Account's id.
    pub to_user_name: String,
    /// The member's openid.
    pub from_user_name: String,
    /// Unix seconds.
    pub create_time: i64,
    /// `event`, `text`, `image`, …
    pub msg_type: String,
    /// For `msg_type = "event"`: `subscribe`, `unsubscribe`, `CLICK`, …
    #[serde(default)]
    pub event: Option<String>,
}

/// What an inbound message means for the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Unfollowed: never push again.
    OptOut,
    /// Followed (again): pushes allowed, and an interaction.
    OptIn,
    /// Any other message or event: an interaction.
    Interaction,
}

impl Inbound {
    /// Parses the XML body; the error says what is wrong.
    pub fn parse(body: &str) -> Result<Inbound, String> {
        quick_xml::de::from_str(body).map_err(|error| format!("malformed callback XML: {error}"))
    }

    /// What this message means.
    pub fn action(&self) -> Action {
        match (self.msg_type.as_str(), self.event.as_deref()) {
            ("event", Some("unsubscribe")) => Action::OptOut,
            ("event", Some("subscribe")) => Action::OptIn,
            _ => Action::Interaction,
        }
    }

    /// When WeChat says the message was created.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.create_time, 0)
    }
}

/// Checks the query's signature against the configured token; `Err` is the
/// response to send (counted).
fn verify(state: &AppState, query: &HashMap<String, String>) -> Result<(), Box<Response>> {
    let Some(token) = &state.callback_token else {
        return Err(Box::new(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the WeChat callback is not configured: set the callback token (see almanac.toml \
             [wechat_callback])\n",
            )
                .into_response(),
        ));
    };
    let field = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    let expected = signature(token.expose(), field("timestamp"), field("nonce"));
    if super::constant_time_eq(expected.as_bytes(), field("signature").as_bytes()) {
        Ok(())
    } else {
        state.metrics.rejected_requests.with_label_values(&[ENDPOINT, "bad_signature"]).inc();
        tracing::warn!("Rejected a WeChat callback with a bad signature.");
        Err(Box::new((StatusCode::UNAUTHORIZED, "bad signature\n").into_response()))
    }
}

/// GET: the URL check.
pub async fn verify_url(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = verify(&state, &query) {
        return *response;
    }
    query.get("echostr").cloned().unwrap_or_default().into_response()
}

/// POST: an event or message.
pub async fn event(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    if let Err(response) = verify(&state, &query) {
        return *response;
    }
    let inbound = match Inbound::parse(&body) {
        Ok(inbound) => inbound,
        Err(message) => {
            state.metrics.rejected_requests.with_label_values(&[ENDPOINT, "malformed"]).inc();
            return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response();
        }
    };
    let at = inbound.created_at().unwrap_or_else(|| state.clock.now());
    match state.apply_callback(&inbound.from_user_name, inbound.action(), at).await {
        Ok(true) => {}
        Ok(false) => tracing::info!("WeChat callback for an openid that is not a member; ignored."),
        Err(error) => {
            tracing::error!(%error, "Could not record a WeChat callback event.");
            // 5xx makes WeChat retry, which is what we want when the store is down.
            return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response();
        }
    }
    "success".into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_reference_vector() {
        assert_eq!(
            signature("testtoken", "1700000000", "1234567890"),
            "bd5868e9d0746264d2d435847b90fbee68fcee86"
        );
    }

    #[test]
    fn events_parse_and_map_to_actions() {
        let xml = "<xml><ToUserName><![CDATA[gh_b629c48b653e]]></ToUserName>\
            <FromUserName><![CDATA[ollB4jv7LA3tydjviJp5V9qTU_kA]]></FromUserName>\
            <CreateTime>1372307736</CreateTime><MsgType><![CDATA[event]]></MsgType>\
            <Event><![CDATA[unsubscribe]]></Event><EventKey><![CDATA[]]></EventKey></xml>";
        let inbound = Inbound::parse(xml).unwrap();
        assert_eq!(inbound.from_user_name, "ollB4jv7LA3tydjviJp5V9qTU_kA");
        assert_eq!(inbound.action(), Action::OptOut);
        assert_eq!(inbound.created_at().unwrap().timestamp(), 1_372_307_736);
        let subscribe = xml.replace("unsubscribe", "subscribe");
        assert_eq!(Inbound::parse(&subscribe).unwrap().action(), Action::OptIn);
        let text = "<xml><ToUserName>a</ToUserName><FromUserName>o1</FromUserName>\
            <CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>9</MsgId></xml>";
        assert_eq!(Inbound::parse(text).unwrap().action(), Action::Interaction);
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let error = Inbound::parse("<xml><ToUserName>a</ToUserName></xml>").unwrap_err();
        assert!(error.contains("FromUserName"), "{error}");
        assert!(Inbound::parse("not xml at all").is_err());
    }
}
