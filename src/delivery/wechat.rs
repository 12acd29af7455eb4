//! The `wechat` channel: WeChat Official Account messages over the real protocol.
//!
//! - Access token from `POST cgi-bin/stable_token` with `force_refresh=false`: calling
//!   it again does not revoke the token, so replicas never invalidate each other's.
//!   It is cached in memory and in the store (shared by replicas) until five minutes
//!   before `expires_in` runs out, and fetched again (once, then the call is repeated)
//!   when an API answers 40001, 40014 or 42001.
//! - Template message (`cgi-bin/message/template/send`) with `client_msg_id` set from
//!   the ledger key, so WeChat drops a duplicate sent within its window.
//! - Customer-service text (`cgi-bin/message/custom/send`) only when the member's own
//!   last interaction is within 48 hours; if WeChat says the window closed (45015) or
//!   its quota is used (45047), the template is sent instead.
//! - `daily_quota` template messages per Asia/Shanghai day, counted in this process:
//!   past it, [`Error::QuotaExhausted`] (the dispatcher defers to the next midnight).
//!
//! The AppSecret is never logged; `Debug` omits it.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::retry::shanghai_day;
use super::{Error, Result, WECHAT_TOKEN_CODES};
use crate::metrics::Metrics;
use crate::store::{ClaimedSend, Store};

/// A token is fetched again this long before it expires (WeChat renews a stable
/// token five minutes before its end).
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// The customer-service window opened by a member's own message.
pub const CUSTOMER_SERVICE_WINDOW: chrono::Duration = chrono::Duration::hours(48);

/// Settings of one WeChat channel.
#[derive(Clone)]
pub struct WechatSettings {
    /// API base, e.g. `https://api.weixin.qq.com`.
    pub api_base: String,
    /// AppID.
    pub appid: String,
    /// AppSecret.
    pub secret: String,
    /// Template id.
    pub template_id: String,
    /// The template keyword that carries the text.
    pub text_key: String,
    /// Optional link.
    pub url: Option<String>,
    /// Template messages per Asia/Shanghai day.
    pub daily_quota: u64,
    /// Use customer-service messages inside the 48-hour window.
    pub customer_service: bool,
    /// Request timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for WechatSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatSettings")
            .field("api_base", &self.api_base)
            .field("appid", &self.appid)
            .field("template_id", &self.template_id)
            .field("daily_quota", &self.daily_quota)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    refresh_at: DateTime<Utc>,
}

/// A WeChat channel (one Official Account).
#[derive(Debug)]
pub struct WechatChannel {
    settings: WechatSettings,
    client: reqwest::Client,
    metrics: std::sync::Arc<Metrics>,
    token: Mutex<Option<Token>>,
    refresh: tokio::sync::Mutex<()>,
    quota: Mutex<(NaiveDate, u64)>,
    shared: Option<Store>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiResponse {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    #[serde(default)]
    msgid: Option<serde_json::Value>,
}

/// What a successful send returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// WeChat's `msgid`, when it gives one.
    pub provider_id: Option<String>,
}

impl WechatChannel {
    /// A channel for one account.
    pub fn new(settings: WechatSettings, metrics: std::sync::Arc<Metrics>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|error| Error::Connect(error.to_string()))?;
        Ok(Self {
            settings,
            client,
            metrics,
            token: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            quota: Mutex::new((NaiveDate::MIN, 0)),
            shared: None,
        })
    }

    /// Shares the access token with other replicas through `store`.
    pub fn share_tokens(&mut self, store: Store) {
        self.shared = Some(store);
    }

    /// Makes sure a usable access token is cached: fetches (or takes the one another
    /// replica shared) when none is, or when the cached one is within its refresh
    /// margin. The daemon calls this periodically so sends never wait on a fetch.
    pub async fn refresh_token(&self, now: DateTime<Utc>) -> Result<()> {
        self.access_token(now, None).await.map(|_| ())
    }

    /// A token another replica stored, if it is usable and not `stale`.
    async fn stored_token(&self, now: DateTime<Utc>, stale: Option<&str>) -> Option<Token> {
        let store = self.shared.as_ref()?;
        match store.wechat_token(&self.settings.appid).await {
            Ok(Some(stored))
                if Some(stored.token.as_str()) != stale
                    && stored.expires_at - REFRESH_MARGIN > now =>
            {
                Some(Token { value: stored.token, refresh_at: stored.expires_at - REFRESH_MARGIN })
            }
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, "Reading the shared WeChat token failed; fetching one.");
                None
            }
        }
    }

    fn cached_token(&self, now: DateTime<Utc>) -> Option<String> {
        let token = self.token.lock().expect("token lock");
        token.as_ref().filter(|token| token.refresh_at > now).map(|token| token.value.clone())
    }

    /// The current access token, fetched from `stable_token` when none is cached,
    /// when it is about to expire, or when `stale` (a token WeChat just rejected) is
    /// the cached one.
    async fn access_token(&self, now: DateTime<Utc>, stale: Option<&str>) -> Result<String> {
        if let Some(token) = self.cached_token(now).filter(|token| Some(token.as_str()) != stale) {
            return Ok(token);
        }
        let _refreshing = self.refresh.lock().await;
        // Another task may have refreshed while this one waited.
        if let Some(token) = self.cached_token(now).filter(|token| Some(token.as_str()) != stale) {
            return Ok(token);
        }
        let token = match self.stored_token(now, stale).await {
            Some(token) => token,
            None => {
                let result = self.fetch_token(now).await;
                let label = if result.is_ok() { "ok" } else { "error" };
                self.metrics.token_refreshes.with_label_values(&[label]).inc();
                let (token, expires_at) = result?;
                if let Some(store) = &self.shared {
                    let stored = store
                        .put_wechat_token(&self.settings.appid, &token.value, expires_at)
                        .await;
                    if let Err(error) = stored {
                        tracing::warn!(%error, "Sharing the WeChat token failed.");
                    }
                }
                token
            }
        };
        let value = token.value.clone();
        *self.token.lock().expect("token lock") = Some(token);
        Ok(value)
    }

    /// Calls `stable_token`; returns the token and its expiry.
    async fn fetch_token(&self, now: DateTime<Utc>) -> Result<(Token, DateTime<Utc>)> {
        let url = format!("{}/cgi-bin/stable_token", self.settings.api_base);
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": self.settings.appid,
            "secret": self.settings.secret,
            "force_refresh": false,
        });
        let response = self
            .client
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|error| Error::from_reqwest(&error))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Http { status: status.as_u16(), retry_after: None });
        }
        let parsed: TokenResponse =
            response.json().await.map_err(|error| Error::from_reqwest(&error))?;
        match (parsed.errcode, parsed.access_token, parsed.expires_in) {
            (Some(code), _, _) if code != 0 => {
                Err(Error::Token { code, message: parsed.errmsg.unwrap_or_default() })
            }
            (_, Some(value), Some(expires_in)) if !value.is_empty() && expires_in > 0 => {
                // WeChat renews a stable token 5 minutes before it expires; fetch
                // again from then on (or halfway through a short-lived token).
                let margin = (expires_in / 2).min(REFRESH_MARGIN.num_seconds());
                let refresh_at = now + chrono::Duration::seconds(expires_in - margin);
                let expires_at = now + chrono::Duration::seconds(expires_in);
                Ok((Token { value, refresh_at }, expires_at))
            }
            _ => Err(Error::InvalidResponse("stable_token without access_token".into())),
        }
    }

    /// POSTs `body` to `path` with the access token; on a token error, refreshes the
    /// token once and repeats the call.
    async fn call(
        &self,
        path: &str,
        body: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Delivered> {
        let mut token = self.access_token(now, None).await?;
        let mut refreshed = false;
        loop {
            let url = format!("{}{path}?access_token={token}", self.settings.api_base);
            let response = self
                .client
                .post(url)
                .json(body)
                .send()
                .await
                .map_err(|error| Error::from_reqwest(&error))?;
            let status = response.status();
            if !status.is_success() {
                return Err(Error::Http { status: status.as_u16(), retry_after: None });
            }
            let parsed: ApiResponse =
                response.json().await.map_err(|error| Error::from_reqwest(&error))?;
            if parsed.errcode == 0 {
                let provider_id = parsed.msgid.map(|id| match id {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                });
                return Ok(Delivered { provider_id });
            }
            if WECHAT_TOKEN_CODES.contains(&parsed.errcode) && !refreshed {
                refreshed = true;
                token = self.access_token(now, Some(&token)).await?;
                continue;
            }
            return Err(Error::WeChat { code: parsed.errcode, message: parsed.errmsg });
        }
    }

    /// Takes one unit of today's template quota, or says when the quota resets.
    fn reserve_quota(&self, now: DateTime<Utc>) -> Result<()> {
        let today = shanghai_day(now);
        let mut quota = self.quota.lock().expect("quota lock");
        if quota.0 != today {
            *quota = (today, 0);
        }
        if quota.1 >= self.settings.daily_quota {
            return Err(Error::QuotaExhausted);
        }
        quota.1 += 1;
        Ok(())
    }

    /// Sends one push: customer-service text inside the 48-hour window, else the
    /// template message.
    pub async fn send(&self, send: &ClaimedSend, now: DateTime<Utc>) -> Result<Delivered> {
        let openid = send.openid.as_deref().filter(|id| !id.is_empty()).ok_or(Error::NoOpenid)?;
        let in_window = send
            .last_interaction_at
            .is_some_and(|at| at <= now && now - at < CUSTOMER_SERVICE_WINDOW);
        if self.settings.customer_service && in_window {
            let body = serde_json::json!({
                "touser": openid,
                "msgtype": "text",
                "text": { "content": send.text },
            });
            match self.call("/cgi-bin/message/custom/send", &body, now).await {
                Err(Error::WeChat { code: 45015 | 45047, .. }) => {}
                other => return other,
            }
        }
        self.reserve_quota(now)?;
        let mut body = serde_json::json!({
            "touser": openid,
            "template_id": self.settings.template_id,
            "client_msg_id": send.idempotency_key(),
            "data": { self.settings.text_key.clone(): { "value": send.text } },
        });
        if let Some(url) = &self.settings.url {
            body["url"] = serde_json::Value::String(url.clone());
        }
        self.call("/cgi-bin/message/template/send", &body, now).await
    }
}
