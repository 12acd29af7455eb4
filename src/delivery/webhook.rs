//! The `webhook` channel: POSTs a JSON body per push with an `Idempotency-Key`
//! (the ledger key, stable across retries, restarts and replicas) and, when a secret
//! is configured, an HMAC-SHA256 signature:
//!
//! ```text
//! X-Almanac-Timestamp: <unix seconds>
//! X-Almanac-Signature: v1=<hex(hmac_sha256(secret, timestamp + "." + body))>
//! ```
//!
//! A receiver recomputes the HMAC over the raw body bytes, compares in constant
//! time, rejects timestamps older than a few minutes, and drops a repeated
//! `Idempotency-Key`.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use sha2::Sha256;

use super::retry::parse_retry_after;
use super::{Error, Result};
use crate::store::ClaimedSend;

/// Header carrying the ledger key.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Header carrying the signing instant (unix seconds).
pub const TIMESTAMP: &str = "X-Almanac-Timestamp";
/// Header carrying `v1=<hex hmac>`.
pub const SIGNATURE: &str = "X-Almanac-Signature";

/// `v1=<hex(hmac_sha256(secret, timestamp + "." + body))>`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header in constant time (what a receiver does).
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_mac) = header.strip_prefix("v1=") else { return false };
    let Ok(given) = hex::decode(hex_mac) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The JSON body of one push (serialized straight from the claimed row, with no
/// intermediate map: this is on the hot path).
#[derive(Debug, Serialize)]
pub struct Body<'a> {
    /// Campaign id.
    pub campaign: &'a str,
    /// Occurrence key (a date, a year, a cron instant).
    pub occurrence: &'a str,
    /// The member's external id.
    pub member: &'a str,
    /// The member's WeChat openid, if known.
    pub openid: Option<&'a str>,
    /// BCP-47 tag of the message variant.
    pub lang: &'a str,
    /// Variant label.
    pub variant: &'a str,
    /// Rendered text.
    pub text: &'a str,
    /// When the push fell due.
    pub due_at: DateTime<Utc>,
    /// When this attempt was made.
    pub sent_at: DateTime<Utc>,
    /// Attempt number, from 1.
    pub attempt: u32,
}

impl<'a> Body<'a> {
    /// The body of `send`'s next attempt, made at `now`.
    pub fn new(send: &'a ClaimedSend, now: DateTime<Utc>) -> Self {
        Self {
            campaign: &send.campaign_id,
            occurrence: &send.occurrence,
            member: &send.external_id,
            openid: send.openid.as_deref(),
            lang: &send.lang,
            variant: &send.variant,
            text: &send.text,
            due_at: send.due_at,
            sent_at: now,
            attempt: send.attempts + 1,
        }
    }
}

/// The HTTP client under the webhook channel: hyper's pooled client over rustls
/// (HTTPS with the Mozilla roots, or plain HTTP).
type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// POSTs pushes to one URL.
///
/// It drives hyper directly rather than through reqwest: reqwest wraps every
/// request in a redirect-following layer and parses the URL again from each
/// response, over a tenth of the daemon's CPU in a 1 M burst profile. A webhook
/// needs neither: redirects are not followed (a 3xx is dead-lettered as
/// `http_3xx`; reqwest re-sent a POST answered 301-303 as a bodiless GET) and the
/// URL is parsed once.
#[derive(Clone)]
pub struct WebhookChannel {
    client: HttpClient,
    uri: http::Uri,
    timeout: Duration,
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed.
        f.debug_struct("WebhookChannel")
            .field("url", &self.uri)
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

impl WebhookChannel {
    /// A channel posting to `url` with `timeout`, signing with `secret` if given.
    pub fn new(url: &str, secret: Option<String>, timeout: Duration) -> Result<Self> {
        let invalid = |reason: &str| Error::Connect(format!("webhook url {url:?}: {reason}"));
        let uri: http::Uri = url.parse().map_err(|error: http::uri::InvalidUri| {
            invalid(&format!("{error}; expected http://host[:port]/path or https://…"))
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(invalid("expected an absolute http:// or https:// URL"));
        }
        let mut http = HttpConnector::new();
        // Small requests on a reused connection: never wait for Nagle.
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client =
            Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(https);
        Ok(Self { client, uri, timeout, secret: secret.map(String::into_bytes) })
    }

    /// Sends one push; `Ok` on a 2xx.
    pub async fn send(&self, send: &ClaimedSend, now: DateTime<Utc>) -> Result<()> {
        let body = serde_json::to_vec(&Body::new(send, now))
            .map_err(|error| Error::InvalidResponse(error.to_string()))?;
        let mut request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY, send.idempotency_key());
        if let Some(secret) = &self.secret {
            let timestamp = now.timestamp().to_string();
            request = request.header(SIGNATURE, sign(secret, &timestamp, &body));
            request = request.header(TIMESTAMP, timestamp);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| Error::Connect(format!("building the request: {error}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                // The chain says what failed (refused, reset, TLS…).
                let mut message = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    message = format!("{message}: {cause}");
                    source = cause.source();
                }
                Error::Connect(message)
            })?;
            let status = response.status();
            if !status.is_success() {
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, now));
                return Err(Error::Http { status: status.as_u16(), retry_after });
            }
            // Read the body so the connection goes back to the pool.
            response
                .into_body()
                .collect()
                .await
                .map_err(|error| Error::InvalidResponse(error.to_string()))?;
            Ok(())
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| Error::Timeout)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector_and_verifies() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        let signature = sign(b"key", "1700000000", br#"{"a":1}"#);
        assert_eq!(
            signature,
            "v1=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
        assert!(verify(b"key", "1700000000", br#"{"a":1}"#, &signature));
        assert!(!verify(b"key", "1700000001", br#"{"a":1}"#, &signature));
        assert!(!verify(b"other", "1700000000", br#"{"a":1}"#, &signature));
        assert!(!verify(b"key", "1700000000", br#"{"a":1}"#, "v2=00"));
    }

    #[test]
    fn a_url_that_is_not_absolute_http_is_refused_with_the_url_named() {
        let timeout = Duration::from_secs(1);
        for url in ["ftp://example.com/hook", "/hook", "example.com/hook", "http://exa mple.com/"] {
            let error = WebhookChannel::new(url, None, timeout).unwrap_err().to_string();
            assert!(error.contains(&format!("{url:?}")), "{error}");
            assert!(error.contains("http://"), "says what was expected: {error}");
        }
        for url in ["http://127.0.0.1:9/hook", "https://hooks.example.com/almanac?k=v"] {
            assert!(WebhookChannel::new(url, None, timeout).is_ok(), "{url}");
        }
    }
}
