//! The HTTP surface on a real SQLite store, served on 127.0.0.1 port 0: member
//! upsert / show / delete through the admin API, pause and resume (audited; the
//! dispatcher's claim skips a paused campaign's rows), and the WeChat callback
//! opting a member out and back in.

#[path = "daemon/support.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use almanac::clock::ManualClock;
use almanac::config::Secret;
use almanac::daemon::{CampaignSet, LiveCampaigns, load_campaigns};
use almanac::geo::Geo;
use almanac::http::{AppState, wechat};
use almanac::metrics::Metrics;
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

async fn server() -> Server {
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
        callback_token: Some(Secret::new(CALLBACK)),
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
        let (timestamp, nonce) = ("1789000000", "42");
        let signature = if signature_ok {
            wechat::signature(CALLBACK, timestamp, nonce)
        } else {
            "f".repeat(40)
        };
        let path =
            format!("/wechat/callback?signature={signature}&timestamp={timestamp}&nonce={nonce}");
        let body = format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\
             <FromUserName><![CDATA[openid-harbin]]></FromUserName>\
             <CreateTime>1789000000</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[{event}]]></Event></xml>"
        );
        let addr = self.addr;
        tokio::task::spawn_blocking(move || support::http(addr, "POST", &path, &[], &body))
            .await
            .unwrap()
    }
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
    let server = server().await;
    let member =
        r#"{"external_id":"crm-1","name":"张三","city":"Harbin","openid":"openid-harbin"}"#;
    server.call("PUT", "/v1/members/crm-1", member).await;

    let (status, _) = server.callback("unsubscribe", false).await;
    assert_eq!(status, 401);
    let stored = server.store.get_member("crm-1").await.unwrap().unwrap();
    assert!(stored.member.opted_out_at.is_none(), "a forged event must change nothing");
    let rejected = server
        .metrics
        .rejected_requests
        .with_label_values(&["wechat_callback", "bad_signature"])
        .get();
    assert_eq!(rejected, 1);

    let (status, body) = server.callback("unsubscribe", true).await;
    assert_eq!((status, body.as_str()), (200, "success"));
    let stored = server.store.get_member("crm-1").await.unwrap().unwrap();
    assert!(stored.member.opted_out_at.is_some(), "unsubscribe opts the member out");

    let (status, _) = server.callback("subscribe", true).await;
    assert_eq!(status, 200);
    let stored = server.store.get_member("crm-1").await.unwrap().unwrap();
    assert!(stored.member.opted_out_at.is_none(), "subscribe opts the member back in");
    assert!(stored.member.last_interaction_at.is_some(), "subscribe is an interaction");
    server.cancel.cancel();
}
