//! The WeChat Official Account server callback (`/wechat/callback`), in the
//! account's plaintext, compatible or safe mode.
//!
//! GET is the URL check: `signature` must be the lowercase hex SHA-1 of the sorted
//! concatenation of the token, `timestamp` and `nonce`; the reply echoes
//! `echostr`. POST carries event XML. In plaintext mode the same three query
//! parameters are checked the same way, which authenticates the sender but not
//! the body; in safe mode (`encrypt_type=aes`, see [`safe_mode`]) the body is
//! encrypted and `msg_signature` also covers the ciphertext. Compatible mode
//! accepts both.
//!
//! A POST is applied once: its `timestamp` must be within `max_clock_skew` of the
//! daemon's clock, and its verified signature is claimed in the store (shared by
//! replicas) until the timestamp leaves that window, so a captured request
//! replays neither now nor later. `unsubscribe` opts the member (found by
//! openid) out, `subscribe` opts them back in, each by the event's `CreateTime`:
//! an older event arriving after a newer one changes nothing. Every message or
//! event records the member's last interaction (the 48-hour customer-service
//! window). Refusals are counted in
//! `almanac_http_rejected_total{endpoint="wechat_callback", reason}`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use sha1::{Digest, Sha1};

use super::AppState;
use crate::secret::{Secret, read_secret};

pub mod safe_mode;

const ENDPOINT: &str = "wechat_callback";

/// The Official Account's message encryption mode (its server configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Bodies in clear; the signature covers token, timestamp and nonce only.
    #[default]
    Plaintext,
    /// Either form is accepted (WeChat sends both while an account switches).
    Compatible,
    /// Bodies encrypted; plaintext bodies are refused.
    Safe,
}

/// Why the callback settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A secret could not be read.
    #[error(transparent)]
    Secret(#[from] crate::secret::Error),
    /// Compatible or safe mode without the key or AppID it needs.
    #[error(
        "[wechat_callback] mode = \"{mode}\" needs the EncodingAESKey (credential \
         {credential:?} or ${env}) and app_id"
    )]
    MissingKey {
        /// The mode asked for.
        mode: &'static str,
        /// The key's credential name.
        credential: String,
        /// The key's environment variable.
        env: String,
    },
    /// The key is malformed.
    #[error("[wechat_callback] {0}")]
    Key(#[from] safe_mode::Error),
}

/// `[wechat_callback]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackConfig {
    /// Environment variable holding the token set in the Official Account's server
    /// configuration.
    #[serde(default = "default_callback_token_env")]
    pub token_env: String,
    /// systemd credential holding that token (preferred when present).
    #[serde(default = "default_callback_token_credential")]
    pub token_credential: String,
    /// The account's message encryption mode: `plaintext`, `compatible` or `safe`.
    #[serde(default)]
    pub mode: Mode,
    /// The Official Account's AppID (safe-mode messages are sealed for it).
    #[serde(default)]
    pub app_id: Option<String>,
    /// Environment variable holding the EncodingAESKey (compatible and safe modes).
    #[serde(default = "default_aes_key_env")]
    pub encoding_aes_key_env: String,
    /// systemd credential holding the EncodingAESKey (preferred when present).
    #[serde(default = "default_aes_key_credential")]
    pub encoding_aes_key_credential: String,
    /// How far a callback's `timestamp` may be from the daemon's clock; older or
    /// newer requests are refused as replays.
    #[serde(default = "default_max_clock_skew", deserialize_with = "max_clock_skew")]
    pub max_clock_skew: Duration,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            token_env: default_callback_token_env(),
            token_credential: default_callback_token_credential(),
            mode: Default::default(),
            app_id: None,
            encoding_aes_key_env: default_aes_key_env(),
            encoding_aes_key_credential: default_aes_key_credential(),
            max_clock_skew: default_max_clock_skew(),
        }
    }
}

fn default_callback_token_env() -> String {
    "ALMANAC_WECHAT_CALLBACK_TOKEN".into()
}

fn default_callback_token_credential() -> String {
    "wechat-callback-token".into()
}

fn default_aes_key_env() -> String {
    "ALMANAC_WECHAT_ENCODING_AES_KEY".into()
}

fn default_aes_key_credential() -> String {
    "wechat-encoding-aes-key".into()
}

fn default_max_clock_skew() -> Duration {
    Duration::from_secs(300)
}

fn max_clock_skew<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    crate::duration::deserialize(deserializer, crate::duration::MAX_CLOCK_SKEW)
}

/// The callback's verified settings.
#[derive(Debug, Clone)]
pub struct Callback {
    /// The token of the Official Account's server configuration.
    pub token: Secret,
    /// Which bodies are accepted.
    pub mode: Mode,
    /// The EncodingAESKey and the AppID it seals for (compatible and safe modes).
    pub aes: Option<(safe_mode::AesKey, String)>,
    /// How far a request's `timestamp` may be from the daemon's clock.
    pub max_clock_skew: chrono::Duration,
}

impl Callback {
    /// Reads the secrets `config` names; `Ok(None)` when no token is set (the
    /// callback answers 503).
    pub fn from_config(config: &CallbackConfig) -> Result<Option<Callback>, Error> {
        let Some(token) = read_secret(&config.token_env, &config.token_credential)? else {
            return Ok(None);
        };
        let key = read_secret(&config.encoding_aes_key_env, &config.encoding_aes_key_credential)?;
        let aes = match (key, &config.app_id) {
            (Some(key), Some(app_id)) => {
                Some((safe_mode::AesKey::parse(key.expose())?, app_id.clone()))
            }
            _ if config.mode == Mode::Plaintext => None,
            _ => {
                return Err(Error::MissingKey {
                    mode: if config.mode == Mode::Safe { "safe" } else { "compatible" },
                    credential: config.encoding_aes_key_credential.clone(),
                    env: config.encoding_aes_key_env.clone(),
                });
            }
        };
        let max_clock_skew =
            chrono::Duration::from_std(config.max_clock_skew).unwrap_or(chrono::Duration::MAX);
        Ok(Some(Callback { token, mode: config.mode, aes, max_clock_skew }))
    }
}

/// The signature WeChat computes: lowercase hex SHA-1 of the sorted concatenation
/// of `token`, `timestamp` and `nonce` (plaintext mode), and also the encrypted
/// payload (safe mode's `msg_signature`).
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    signature_of(&mut [token, timestamp, nonce])
}

/// Safe mode's `msg_signature`: [`signature`] with the `<Encrypt>` payload added.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    signature_of(&mut [token, timestamp, nonce, encrypt])
}

fn signature_of(parts: &mut [&str]) -> String {
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

/// A safe-mode body: the encrypted message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    encrypt: String,
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

/// A refusal: the status, the counted reason and the text sent back.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal { status, reason, message: message.into() }
    }

    fn respond(self, state: &AppState) -> Response {
        state.metrics.rejected_requests.with_label_values(&[ENDPOINT, self.reason]).inc();
        tracing::warn!(reason = self.reason, "Refused a WeChat callback: {}", self.message);
        (self.status, format!("{}\n", self.message)).into_response()
    }
}

fn not_configured() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the WeChat callback is not configured: set the callback token (see almanac.toml \
         [wechat_callback])\n",
    )
        .into_response()
}

fn field<'a>(query: &'a HashMap<String, String>, name: &str) -> &'a str {
    query.get(name).map(String::as_str).unwrap_or_default()
}

/// `expected` if the query parameter `name` carries it (compared in constant
/// time), else the counted `bad_signature` refusal.
fn check_signature(
    query: &HashMap<String, String>,
    name: &str,
    expected: String,
) -> Result<String, Refusal> {
    if super::constant_time_eq(expected.as_bytes(), field(query, name).as_bytes()) {
        Ok(expected)
    } else {
        Err(Refusal::new(StatusCode::UNAUTHORIZED, "bad_signature", "bad signature"))
    }
}

/// The plaintext-mode `signature` of the query (token, timestamp, nonce), checked.
fn check_query_signature(
    callback: &Callback,
    query: &HashMap<String, String>,
) -> Result<String, Refusal> {
    let expected =
        signature(callback.token.expose(), field(query, "timestamp"), field(query, "nonce"));
    check_signature(query, "signature", expected)
}

/// GET: the URL check (answering it changes nothing, so no replay guard).
pub async fn verify_url(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(callback) = &state.callback else {
        return not_configured();
    };
    if let Err(refusal) = check_query_signature(callback, &query) {
        return refusal.respond(&state);
    }
    field(&query, "echostr").to_owned().into_response()
}

/// A POST that passed every check: the message and the signature it was
/// accepted under.
struct Verified {
    inbound: Inbound,
    signature: String,
    created_at: DateTime<Utc>,
}

/// Checks a POST: mode, signature, timestamp window, message; then claims the
/// signature so that the request is applied once.
async fn verify_event(
    state: &AppState,
    callback: &Callback,
    query: &HashMap<String, String>,
    body: &str,
) -> Result<Verified, Refusal> {
    let (timestamp, nonce) = (field(query, "timestamp"), field(query, "nonce"));
    let encrypted = field(query, "encrypt_type") == "aes";
    let (message, signature) = match (encrypted, callback.mode, &callback.aes) {
        (false, Mode::Safe, _) => {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unencrypted",
                "mode = \"safe\": plaintext messages are refused",
            ));
        }
        (false, _, _) => (body.to_owned(), check_query_signature(callback, query)?),
        (true, _, None) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "encrypted",
                "an encrypted (safe mode) message, but no EncodingAESKey and app_id are \
                 configured",
            ));
        }
        (true, _, Some((key, app_id))) => {
            let envelope: Envelope = quick_xml::de::from_str(body).map_err(|error| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    format!("malformed safe-mode XML: {error}"),
                )
            })?;
            let expected =
                msg_signature(callback.token.expose(), timestamp, nonce, &envelope.encrypt);
            let signature = check_signature(query, "msg_signature", expected)?;
            let message = key.open(&envelope.encrypt, app_id).map_err(|error| {
                Refusal::new(StatusCode::BAD_REQUEST, "undecryptable", error.to_string())
            })?;
            (message, signature)
        }
    };
    let now = state.clock.now();
    let skew = callback.max_clock_skew;
    let sent = timestamp
        .parse::<i64>()
        .ok()
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
        .filter(|sent| (*sent - now).abs() <= skew)
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "stale_timestamp",
                format!(
                    "timestamp {timestamp:?} is not within {} of now (max_clock_skew)",
                    crate::duration::format(skew.to_std().unwrap_or_default())
                ),
            )
        })?;
    let inbound = Inbound::parse(&message)
        .map_err(|message| Refusal::new(StatusCode::BAD_REQUEST, "malformed", message))?;
    let created_at = inbound.created_at().filter(|at| *at <= now + skew).ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("CreateTime {} is in the future", inbound.create_time),
        )
    })?;
    match state.store.claim_callback_signature(&signature, sent + skew, now).await {
        Ok(true) => Ok(Verified { inbound, signature, created_at }),
        Ok(false) => Err(Refusal::new(
            StatusCode::CONFLICT,
            "replayed",
            "this request was already received (same timestamp, nonce and signature)",
        )),
        Err(error) => {
            tracing::error!(%error, "Could not check a WeChat callback for replay.");
            Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "store", "store unavailable"))
        }
    }
}

/// POST: an event or message.
pub async fn event(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    let Some(callback) = state.callback.clone() else {
        return not_configured();
    };
    let verified = match verify_event(&state, &callback, &query, &body).await {
        Ok(verified) => verified,
        Err(refusal) => return refusal.respond(&state),
    };
    let Verified { inbound, signature, created_at } = verified;
    match state.apply_callback(&inbound.from_user_name, inbound.action(), created_at).await {
        Ok(Applied::Yes) => {}
        Ok(Applied::NotAMember) => {
            tracing::info!("WeChat callback for an openid that is not a member; ignored.");
        }
        Ok(Applied::OutOfOrder) => {
            state.metrics.rejected_requests.with_label_values(&[ENDPOINT, "out_of_order"]).inc();
            tracing::info!(
                create_time = inbound.create_time,
                "WeChat (un)subscribe older than the member's last consent change; ignored."
            );
        }
        Err(error) => {
            tracing::error!(%error, "Could not record a WeChat callback event.");
            if let Err(error) = state.store.release_callback_signature(&signature).await {
                tracing::warn!(%error, "Could not release the callback's signature for a retry.");
            }
            // 5xx makes WeChat retry, which is what we want when the store is down.
            return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response();
        }
    }
    "success".into_response()
}

/// What applying a callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The member's consent or interaction was recorded.
    Yes,
    /// No member has this openid.
    NotAMember,
    /// A (un)subscribe older than the member's last consent change: ignored.
    OutOfOrder,
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
