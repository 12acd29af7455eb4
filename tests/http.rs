//! The HTTP surface on a real SQLite store, served on 127.0.0.1 port 0: member
//! upsert / show / delete through the admin API, pause and resume (audited; the
//! dispatcher's claim skips a paused campaign's rows), and the WeChat callback:
//! opting a member out and back in by the event's time, refusing replayed and
//! stale requests, and safe mode (messages sealed by wechatpy).

#[path = "daemon/support.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use almanac::clock::ManualClock;
use almanac::daemon::{CampaignSet, LiveCampaigns, load_campaigns};
use almanac::geo::Geo;
use almanac::http::wechat::safe_mode::AesKey;
use almanac::http::wechat::{Callback, Mode};
use almanac::http::{AppState, wechat};
use almanac::metrics::Metrics;
use almanac::secret::Secret;
use almanac::store::{NewSend, SendStatus, Store};
use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "admin-secret-token";
const CALLBACK: &str = "cbtoken";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-09-14T02:00:00Z").unwrap().to_utc()
}

struct Server {
    addr: SocketAddr,
    store: Store,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

fn plaintext() -> Callback {
    Callback {
        token: Secret::new(CALLBACK),
        mode: Mode::Plaintext,
        aes: None,
        max_clock_skew: Duration::minutes(5),
    }
}

async fn server() -> Server {
    server_with(plaintext()).await
}

async fn server_with(callback: Callback) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::connect(&format!("sqlite:{}", dir.path().join("a.db").display())).await.unwrap();
    let campaigns = Arc::new(LiveCampaigns::default());
    let dir_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns");
    let loaded = load_campaigns(&dir_path).unwrap_or_else(|errors| panic!("{errors:?}"));
    campaigns.replace(CampaignSet { campaigns: loaded });
    let metrics = Arc::new(Metrics::new());
    let state = AppState {
        metrics: metrics.clone(),
        store: store.clone(),
        campaigns,
        admin_token: Some(Secret::new(TOKEN)),
        callback: Some(Arc::new(callback)),
        clock: Arc::new(ManualClock::new(t0())),
        geo: Geo::bundled(),
        health: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let settings = almanac::http::HttpSettings::default();
    tokio::spawn(almanac::http::serve(
        listener,
        almanac::http::router(state),
        almanac::http::Limits::new("listen", &settings, settings.max_connections),
        metrics.clone(),
        cancel.clone(),
    ));
    Server { addr, store, metrics, cancel, _dir: dir }
}

impl Server {
    async fn call(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (addr, method, path, body) =
            (self.addr, method.to_owned(), path.to_owned(), body.to_owned());
        let (status, text) = tokio::task::spawn_blocking(move || {
            let auth = format!("Bearer {TOKEN}");
            support::http(
                addr,
                &method,
                &path,
                &[("Authorization", &auth), ("Content-Type", "application/json")],
                &body,
            )
        })
        .await
        .unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    async fn callback(&self, event: &str, signature_ok: bool) -> (u16, String) {
        let nonce = NONCE.fetch_add(1, Ordering::Relaxed).to_string();
        let body = event_xml(event, t0());
        self.post_signed(t0(), &nonce, signature_ok, &body).await
    }

    /// POSTs `body` signed (plaintext mode) with this timestamp and nonce.
    async fn post_signed(
        &self,
        sent: DateTime<Utc>,
        nonce: &str,
        signature_ok: bool,
        body: &str,
    ) -> (u16, String) {
        let timestamp = sent.timestamp().to_string();
        let signature = if signature_ok {
            wechat::signature(CALLBACK, &timestamp, nonce)
        } else {
            "f".repeat(40)
        };
        self.post(
            &format!("/wechat/callback?signature={signature}&timestamp={timestamp}&nonce={nonce}"),
            body,
        )
        .await
    }

    async fn post(&self, path: &str, body: &str) -> (u16, String) {
        let (addr, path, body) = (self.addr, path.to_owned(), body.to_owned());
        tokio::task::spawn_blocking(move || support::http(addr, "POST", &path, &[], &body))
            .await
            .unwrap()
    }

    async fn opted_out(&self) -> Option<DateTime<Utc>> {
        self.store.get_member("crm-1").await.unwrap().unwrap().member.opted_out_at
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.metrics.rejected_requests.with_label_values(&["wechat_callback", reason]).get()
    }

    async fn with_member(self) -> Server {
        let member =
            r#"{"external_id":"crm-1","name":"张三","city":"Harbin","openid":"openid-harbin"}"#;
        let (status, body) = self.call("PUT", "/v1/members/crm-1", member).await;
        assert_eq!(status, 201, "{body}");
        self
    }
}

static NONCE: AtomicU64 = AtomicU64::new(1_000_000);

/// A subscribe or unsubscribe event of `openid-harbin` created at `at`.
fn event_xml(event: &str, at: DateTime<Utc>) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\
         <FromUserName><![CDATA[openid-harbin]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[{event}]]></Event></xml>",
        at.timestamp()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_through_the_admin_api() {
    let server = server().await;
    let member = r#"{"external_id":"crm-1","name":"张三","city":"Harbin","openid":"openid-harbin","phone":"+8613800000000"}"#;
    let (status, body) = server.call("PUT", "/v1/members/crm-1", member).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["place"]["city"], "Harbin", "{body}");
    assert_eq!(body["place"]["tz"], "Asia/Shanghai", "{body}");
    assert_eq!(body["place"]["source"], "explicit", "{body}");
    let (status, _) = server.call("PUT", "/v1/members/crm-1", member).await;
    assert_eq!(status, 200, "a second upsert updates");

    let (status, body) = server.call("PUT", "/v1/members/crm-2", member).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("differs from the path"), "{body}");
    let (status, body) = server.call("PUT", "/v1/members/crm-1", "{\"external_id\":").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("expected a member record"), "{body}");
    let (status, body) =
        server.call("PUT", "/v1/members/crm-1", r#"{"external_id":"crm-1","shoe":9}"#).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("shoe"), "{body}");

    let (status, body) = server.call("GET", "/v1/members/crm-1", "").await;
    assert_eq!(status, 200);
    assert_eq!(body["place"]["city_zh"], "哈尔滨市", "{body}");
    assert_eq!(body["place"]["dialect"], "Mandarin (Northeastern)", "{body}");
    assert_eq!(body["upcoming"].as_array().unwrap().len(), 0);

    let (status, _) = server.call("DELETE", "/v1/members/crm-1", "").await;
    assert_eq!(status, 204);
    let (status, _) = server.call("GET", "/v1/members/crm-1", "").await;
    assert_eq!(status, 404);
    let (status, _) = server.call("DELETE", "/v1/members/crm-1", "").await;
    assert_eq!(status, 404);
    server.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_pending_rows_until_resume() {
    let server = server().await;
    let member =
        r#"{"external_id":"crm-1","name":"张三","city":"Harbin","openid":"openid-harbin"}"#;
    let (_, body) = server.call("PUT", "/v1/members/crm-1", member).await;
    let member_id = body["id"].as_i64().unwrap();
    let campaign = "autumn-moisturizer-2027";
    let send = NewSend {
        campaign_id: campaign.into(),
        occurrence: "2027".into(),
        member_id,
        due_at: t0(),
        channel: "log".into(),
        lang: "cmn-Hans".into(),
        variant: "2".into(),
        text: "张三，哈尔滨天气转凉变干，记得保湿。".into(),
        status: SendStatus::Pending,
        reason: None,
    };
    server.store.insert_sends(&[send]).await.unwrap();

    let (status, body) = server.call("POST", &format!("/v1/campaigns/{campaign}/pause"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "paused");
    let (_, list) = server.call("GET", "/v1/campaigns", "").await;
    let entry = list.as_array().unwrap().iter().find(|c| c["id"] == campaign).unwrap().clone();
    assert_eq!(entry["state"], "paused", "{entry}");
    assert_eq!(entry["ledger"]["pending"], 1, "{entry}");

    let later = t0() + Duration::hours(1);
    let claimed = server.store.claim_due("d", later, Duration::minutes(1), 10).await.unwrap();
    assert!(claimed.is_empty(), "a paused campaign's row was claimed");
    let audit = server.store.audit_log(10).await.unwrap();
    assert!(audit.iter().any(|entry| entry.action == "pause" && entry.target == campaign));

    let (status, _) = server.call("POST", &format!("/v1/campaigns/{campaign}/resume"), "").await;
    assert_eq!(status, 200);
    let claimed = server.store.claim_due("d", later, Duration::minutes(1), 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "resume releases the held row");

    let (status, body) = server.call("POST", "/v1/campaigns/no-such/pause", "").await;
    assert_eq!(status, 404, "{body}");
    server.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_unsubscribe_and_subscribe() {
    let server = server().await.with_member().await;

    let (status, _) = server.callback("unsubscribe", false).await;
    assert_eq!(status, 401);
    assert!(server.opted_out().await.is_none(), "a forged event must change nothing");
    assert_eq!(server.rejected("bad_signature"), 1);

    let (status, body) = server.callback("unsubscribe", true).await;
    assert_eq!((status, body.as_str()), (200, "success"));
    assert!(server.opted_out().await.is_some(), "unsubscribe opts the member out");

    let nonce = NONCE.fetch_add(1, Ordering::Relaxed).to_string();
    let later = event_xml("subscribe", t0() + Duration::seconds(30));
    let (status, _) = server.post_signed(t0(), &nonce, true, &later).await;
    assert_eq!(status, 200);
    let stored = server.store.get_member("crm-1").await.unwrap().unwrap();
    assert!(stored.member.opted_out_at.is_none(), "a newer subscribe opts the member back in");
    assert!(stored.member.last_interaction_at.is_some(), "subscribe is an interaction");
    server.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_stale_callbacks_are_refused() {
    let server = server().await.with_member().await;
    let unsubscribe = event_xml("unsubscribe", t0());
    let (status, body) = server.post_signed(t0(), "4711", true, &unsubscribe).await;
    assert_eq!((status, body.as_str()), (200, "success"), "a fresh request is accepted");
    let first = server.opted_out().await;
    assert!(first.is_some());

    // The captured request again, with its body or with another: refused.
    let (status, body) = server.post_signed(t0(), "4711", true, &unsubscribe).await;
    assert_eq!(status, 409, "{body}");
    let subscribe = event_xml("subscribe", t0() + Duration::seconds(1));
    let (status, body) = server.post_signed(t0(), "4711", true, &subscribe).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already received"), "{body}");
    assert_eq!(server.opted_out().await, first, "a replay changes nothing");
    assert_eq!(server.rejected("replayed"), 2);

    // Correctly signed but outside ±5 min of the daemon's clock: a 2013 request,
    // one from six minutes ago and one from six minutes ahead.
    for sent in [
        DateTime::from_timestamp(1_372_307_736, 0).unwrap(),
        t0() - Duration::minutes(6),
        t0() + Duration::minutes(6),
    ] {
        let (status, body) = server.post_signed(sent, "5150", true, &subscribe).await;
        assert_eq!(status, 401, "{sent}: {body}");
        assert!(body.contains("max_clock_skew"), "{body}");
    }
    assert_eq!(server.rejected("stale_timestamp"), 3);
    // Four minutes off is within the window.
    let (status, _) =
        server.post_signed(t0() - Duration::minutes(4), "5150", true, &subscribe).await;
    assert_eq!(status, 200);
    assert_eq!(server.opted_out().await, None, "the fresh, newer subscribe applies");

    // A CreateTime in the future would block every later (un)subscribe: refused.
    let future = event_xml("unsubscribe", t0() + Duration::days(365));
    let (status, body) = server.post_signed(t0(), "6160", true, &future).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("in the future"), "{body}");
    assert_eq!(server.opted_out().await, None);
    server.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_subscribe_arriving_late_is_ignored() {
    let server = server().await.with_member().await;
    let unsubscribed = t0() - Duration::seconds(10);
    let (status, _) =
        server.post_signed(t0(), "1", true, &event_xml("unsubscribe", unsubscribed)).await;
    assert_eq!(status, 200);
    // WeChat's retry of a subscribe made a minute before the unsubscribe.
    let older = event_xml("subscribe", t0() - Duration::minutes(1));
    let (status, body) = server.post_signed(t0(), "2", true, &older).await;
    assert_eq!((status, body.as_str()), (200, "success"), "acknowledged, so WeChat stops");
    assert_eq!(server.opted_out().await, Some(unsubscribed), "the member stays opted out");
    assert_eq!(server.rejected("out_of_order"), 1);
    server.cancel.cancel();
}

/// The EncodingAESKey, AppID and one request as wechatpy 1.8.18 seals it:
/// `WeChatCrypto("cbtoken", KEY, APP_ID).encrypt_message(event_xml("unsubscribe",
/// t0()), "1234567890", t0().timestamp())` with its random string fixed to
/// `0123456789abcdef`.
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APP_ID: &str = "wx5823bf96d3bd56c7";
const SEALED: &str = "Q3stYC6hdFzMh9T8HCvyDLhXrVGtVJLOGCHbvaDClcw2BHzQ87KInr1M4iFc4bOBfMgh5HIQfJJTRh1lN59g17VB5/nWKI4GkPMSwCrqV2YpAa0NFlSzJ7Jz7PjRGlxyf0dUaKeYzE8BrtAXfLqqz7kpRvTKu4tVFnpzqBcVl7ieiBJM6dThXjbmFdgfTYE9RGOwkayu6NxpBpRzD3q6mS39VymDA2bqpeLxDr9I8WiMn4KOkmyNhkLqGzdLuhdIsnhH1XcjqVvR2KOQzPft7kLXspi7z1toc78MEcBed91wrxJIiQOVzn9dzOR79wG10whH84aUGYzLd2e3/0CICQ==";
const SEALED_SIGNATURE: &str = "c0dabb73bb413a8dcb2f8d153b1f06614917fe0d";

fn sealed_mode(mode: Mode) -> Callback {
    Callback {
        mode,
        aes: Some((AesKey::parse(AES_KEY).unwrap(), APP_ID.to_owned())),
        ..plaintext()
    }
}

fn sealed_path(msg_signature: &str, timestamp: i64, nonce: &str) -> String {
    let signature = wechat::signature(CALLBACK, &timestamp.to_string(), nonce);
    format!(
        "/wechat/callback?signature={signature}&timestamp={timestamp}&nonce={nonce}\
         &encrypt_type=aes&msg_signature={msg_signature}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_mode_opens_what_wechat_seals_and_refuses_the_rest() {
    let server = server_with(sealed_mode(Mode::Safe)).await.with_member().await;
    let envelope = format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{SEALED}]]></Encrypt></xml>"
    );
    let path = sealed_path(SEALED_SIGNATURE, t0().timestamp(), "1234567890");

    // The ciphertext changed by one character: the msg_signature no longer holds.
    let tampered = envelope.replacen("Q3st", "Q3su", 1);
    let (status, _) = server.post(&path, &tampered).await;
    assert_eq!(status, 401);
    assert_eq!(server.rejected("bad_signature"), 1);
    // In safe mode a plaintext message is refused, even correctly signed.
    let (status, body) = server.callback("unsubscribe", true).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(server.rejected("unencrypted"), 1);
    assert_eq!(server.opted_out().await, None);

    let (status, body) = server.post(&path, &envelope).await;
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(server.opted_out().await, Some(t0()), "the sealed unsubscribe applied");
    let (status, _) = server.post(&path, &envelope).await;
    assert_eq!(status, 409, "a sealed request replays no more than a plaintext one");

    // Sealed by our side, for another AppID: decrypts, but is not for this account.
    let key = AesKey::parse(AES_KEY).unwrap();
    let foreign = key.seal(&event_xml("subscribe", t0()), "wx0000000000000000", [9; 16]);
    let timestamp = t0().timestamp();
    let signed = wechat::msg_signature(CALLBACK, &timestamp.to_string(), "77", &foreign);
    let (status, body) = server
        .post(
            &sealed_path(&signed, timestamp, "77"),
            &format!("<xml><Encrypt>{foreign}</Encrypt></xml>"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("AppID"), "{body}");
    server.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatible_mode_takes_both_and_plaintext_mode_refuses_sealed() {
    let compatible = server_with(sealed_mode(Mode::Compatible)).await.with_member().await;
    let (status, _) = compatible.callback("unsubscribe", true).await;
    assert_eq!(status, 200, "compatible mode takes a plaintext message");
    let key = AesKey::parse(AES_KEY).unwrap();
    let later = key.seal(&event_xml("subscribe", t0() + Duration::seconds(5)), APP_ID, [3; 16]);
    let timestamp = t0().timestamp();
    let signed = wechat::msg_signature(CALLBACK, &timestamp.to_string(), "88", &later);
    let (status, body) = compatible
        .post(
            &sealed_path(&signed, timestamp, "88"),
            &format!("<xml><Encrypt>{later}</Encrypt></xml>"),
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(compatible.opted_out().await, None, "and a sealed one");
    compatible.cancel.cancel();

    let server = server().await.with_member().await;
    let envelope = format!("<xml><Encrypt><![CDATA[{SEALED}]]></Encrypt></xml>");
    let (status, body) = server
        .post(&sealed_path(SEALED_SIGNATURE, t0().timestamp(), "1234567890"), &envelope)
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no EncodingAESKey"), "{body}");
    server.cancel.cancel();
}
