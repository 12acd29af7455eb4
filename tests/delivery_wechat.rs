//! The WeChat channel against a fake WeChat server that speaks the real protocol:
//! stable tokens (cached, refreshed on 40001/42001), template sends with
//! `client_msg_id`, customer-service messages inside the 48-hour window, and every
//! mapped error code, asserting the ledger outcome and what the fake received.

#[path = "wechat_fake/mod.rs"]
mod wechat_fake;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use almanac::clock::{Clock, ManualClock};
use almanac::delivery::config::SecretSource;
use almanac::delivery::{ChannelConfig, Channels};
use almanac::metrics::Metrics;
use almanac::store::{ClaimedSend, Outcome};
use chrono::{DateTime, Duration, Utc};
use wechat_fake::FakeWechat;

const APPID: &str = "wx0123456789abcdef";
const SECRET: &str = "app-secret-never-logged";
const TEMPLATE: &str = "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY";

struct Secrets;
impl SecretSource for Secrets {
    fn env(&self, name: &str) -> Option<String> {
        (name == "WECHAT_SECRET").then(|| SECRET.to_owned())
    }
    fn credentials_dir(&self) -> Option<PathBuf> {
        None
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc()
}

struct Rig {
    fake: FakeWechat,
    clock: Arc<ManualClock>,
    metrics: Arc<Metrics>,
    channels: Channels,
}

async fn rig_with(extra: &str) -> Rig {
    let fake = FakeWechat::start(APPID, SECRET, TEMPLATE).await;
    let text = format!(
        "type = \"wechat\"\nappid = \"{APPID}\"\nsecret_env = \"WECHAT_SECRET\"\n\
         template_id = \"{TEMPLATE}\"\napi_base = \"{}\"\ntimeout_ms = 2000\n{extra}",
        fake.api_base
    );
    let config: ChannelConfig = toml::from_str(&text).unwrap();
    let configs = BTreeMap::from([("wechat-main".to_owned(), config)]);
    let clock = Arc::new(ManualClock::new(now()));
    let metrics = Arc::new(Metrics::new());
    let channels =
        Channels::from_config_with(&configs, clock.clone(), metrics.clone(), &Secrets).unwrap();
    Rig { fake, clock, metrics, channels }
}

async fn rig() -> Rig {
    rig_with("").await
}

fn send(id: i64, openid: &str) -> ClaimedSend {
    ClaimedSend {
        id,
        campaign_id: "autumn-moisturizer-2027".into(),
        occurrence: "2026-11-22".into(),
        member_id: id,
        external_id: format!("crm-{id}"),
        openid: Some(openid.into()),
        last_interaction_at: None,
        due_at: now() - Duration::seconds(1),
        not_before: now() - Duration::seconds(1),
        channel: "wechat-main".into(),
        lang: "zh-Hans".into(),
        variant: "A".into(),
        text: format!("天气转凉变干，记得保湿 {id}"),
        attempts: 0,
    }
}

const TEMPLATE_PATH: &str = "/cgi-bin/message/template/send";
const TOKEN_PATH: &str = "/cgi-bin/stable_token";
const CUSTOM_PATH: &str = "/cgi-bin/message/custom/send";

#[tokio::test]
async fn template_sends_reuse_one_stable_token_and_carry_client_msg_id() {
    let rig = rig().await;
    let mut provider_ids = Vec::new();
    for id in 1..=3 {
        let row = send(id, &format!("openid-{id}"));
        let attempt = rig.channels.attempt(&row).await;
        let Outcome::Sent { id: sent_id, at, provider_id } = attempt.outcome else {
            panic!("expected sent, got {:?}", attempt.outcome)
        };
        assert_eq!((sent_id, at), (id, now()));
        provider_ids.push(provider_id.expect("msgid"));
    }
    assert_eq!(provider_ids.len(), 3);
    assert!(provider_ids.windows(2).all(|pair| pair[0] != pair[1]));

    let tokens = rig.fake.calls_to(TOKEN_PATH);
    assert_eq!(tokens.len(), 1, "the token is cached");
    let body = &tokens[0].body;
    assert_eq!(body["grant_type"], "client_credential");
    assert_eq!(body["appid"], APPID);
    assert_eq!(body["secret"], SECRET);
    assert_eq!(body["force_refresh"], false);

    let sends = rig.fake.calls_to(TEMPLATE_PATH);
    assert_eq!(sends.len(), 3);
    for (index, call) in sends.iter().enumerate() {
        let row = send(index as i64 + 1, "x");
        assert_eq!(call.errcode, 0);
        assert_eq!(call.body["touser"], format!("openid-{}", index + 1));
        assert_eq!(call.body["template_id"], TEMPLATE);
        assert_eq!(call.body["client_msg_id"], row.idempotency_key());
        assert_eq!(call.body["data"]["thing1"]["value"], row.text);
        assert!(call.access_token.as_deref().unwrap().starts_with("ACCESS_TOKEN_1_"));
    }
    assert_eq!(rig.metrics.token_refreshes.with_label_values(&["ok"]).get(), 1);
}

#[tokio::test]
async fn expired_and_rotated_tokens_are_refreshed_and_the_call_repeated() {
    let rig = rig().await;
    assert!(matches!(rig.channels.attempt(&send(1, "o1")).await.outcome, Outcome::Sent { .. }));
    rig.fake.expire_token();
    assert!(matches!(rig.channels.attempt(&send(2, "o2")).await.outcome, Outcome::Sent { .. }));
    rig.fake.rotate_token();
    assert!(matches!(rig.channels.attempt(&send(3, "o3")).await.outcome, Outcome::Sent { .. }));

    let codes: Vec<i64> = rig.fake.calls_to(TEMPLATE_PATH).iter().map(|c| c.errcode).collect();
    assert_eq!(codes, [0, 42001, 0, 40001, 0]);
    assert_eq!(rig.fake.calls_to(TOKEN_PATH).len(), 3);
    assert_eq!(rig.fake.delivered().len(), 3);
    assert_eq!(rig.metrics.token_refreshes.with_label_values(&["ok"]).get(), 3);
}

#[tokio::test]
async fn tokens_are_fetched_again_before_they_expire() {
    let rig = rig().await;
    rig.channels.attempt(&send(1, "o1")).await;
    rig.clock.advance(Duration::seconds(7200 - 301));
    rig.channels.attempt(&send(2, "o2")).await;
    assert_eq!(rig.fake.calls_to(TOKEN_PATH).len(), 1, "still valid: reused");
    rig.clock.advance(Duration::seconds(2));
    rig.channels.attempt(&send(3, "o3")).await;
    assert_eq!(rig.fake.calls_to(TOKEN_PATH).len(), 2, "within 5 minutes of expiry: fetched");
    // force_refresh=false gives back the same (still valid) token: no rejected call.
    assert!(rig.fake.calls_to(TEMPLATE_PATH).iter().all(|call| call.errcode == 0));
}

#[tokio::test]
async fn periodic_refresh_keeps_a_token_ready_before_sends_need_it() {
    let rig = rig().await;
    assert!(rig.channels.refresh_tokens(rig.clock.now()).await.is_empty());
    assert_eq!(rig.fake.calls_to(TOKEN_PATH).len(), 1, "fetched before any send");
    assert!(rig.channels.refresh_tokens(rig.clock.now()).await.is_empty());
    assert_eq!(rig.fake.calls_to(TOKEN_PATH).len(), 1, "still fresh: not fetched again");
    rig.channels.attempt(&send(1, "o1")).await;
    assert_eq!(rig.fake.calls_to(TOKEN_PATH).len(), 1, "the send used the refreshed token");
    rig.clock.advance(Duration::seconds(7200 - 299));
    assert!(rig.channels.refresh_tokens(rig.clock.now()).await.is_empty());
    assert_eq!(rig.fake.calls_to(TOKEN_PATH).len(), 2, "within 5 minutes of expiry: refreshed");
    rig.fake.fail_tokens(40013);
    rig.clock.advance(Duration::seconds(7200));
    let failures = rig.channels.refresh_tokens(rig.clock.now()).await;
    assert_eq!(failures.len(), 1, "a failed refresh is reported: {failures:?}");
    assert_eq!(failures[0].0, "wechat-main");
}

#[tokio::test]
async fn refusals_opt_the_member_out_and_skip() {
    let rig = rig().await;
    for (id, code) in [(1, 43004), (2, 43101), (3, 43019)] {
        let openid = format!("refuser-{id}");
        rig.fake.inject_template(&openid, &[code]);
        let attempt = rig.channels.attempt(&send(id, &openid)).await;
        assert!(attempt.opt_out, "{code} must opt out");
        let Outcome::Skipped { reason, .. } = attempt.outcome else {
            panic!("{code}: expected skipped, got {:?}", attempt.outcome)
        };
        assert_eq!(reason, format!("wechat_{code}"));
    }
    assert!(rig.fake.delivered().is_empty());
}

#[tokio::test]
async fn busy_and_rate_limits_retry_later() {
    let rig = rig().await;
    for (id, code) in [(1, -1), (2, 45047), (3, 45011)] {
        let openid = format!("limited-{id}");
        rig.fake.inject_template(&openid, &[code]);
        let attempt = rig.channels.attempt(&send(id, &openid)).await;
        assert!(!attempt.opt_out);
        let Outcome::Retry { at, error, .. } = attempt.outcome else {
            panic!("{code}: expected retry, got {:?}", attempt.outcome)
        };
        assert_eq!(error, format!("wechat_{code}"));
        if code == 45011 {
            assert_eq!(at, now() + Duration::seconds(60), "minute quota: next minute");
        } else {
            // First retry: base 1 s with jitter in its upper half.
            assert!(
                at >= now() + Duration::milliseconds(500) && at <= now() + Duration::seconds(1)
            );
        }
    }
    let retries =
        |reason: &str| rig.metrics.retries.with_label_values(&["wechat-main", reason]).get();
    assert_eq!((retries("wechat_-1"), retries("wechat_45047")), (1, 1));
}

#[tokio::test]
async fn busy_past_max_attempts_is_dead_lettered() {
    let rig = rig_with("max_attempts = 3").await;
    rig.fake.inject_template("busy", &[-1]);
    let mut row = send(1, "busy");
    row.attempts = 2;
    let attempt = rig.channels.attempt(&row).await;
    assert!(matches!(&attempt.outcome, Outcome::Dead { reason, .. } if reason == "wechat_-1"));
    assert_eq!(rig.metrics.dead_letters.with_label_values(&["wechat-main", "wechat_-1"]).get(), 1);
}

#[tokio::test]
async fn server_daily_quota_defers_to_shanghai_midnight() {
    let rig = rig().await;
    rig.fake.inject_template("q", &[45009]);
    let attempt = rig.channels.attempt(&send(1, "q")).await;
    let midnight = DateTime::parse_from_rfc3339("2026-11-22T16:00:00Z").unwrap().to_utc();
    assert!(
        matches!(&attempt.outcome, Outcome::Retry { at, error, .. } if *at == midnight && error == "wechat_45009"),
        "{:?}",
        attempt.outcome
    );
    assert_eq!(rig.metrics.quota_deferrals.with_label_values(&["wechat-main"]).get(), 1);
}

#[tokio::test]
async fn own_daily_quota_defers_without_calling_wechat_then_resets() {
    let rig = rig_with("daily_quota = 2").await;
    for id in 1..=2 {
        assert!(matches!(rig.channels.attempt(&send(id, "m")).await.outcome, Outcome::Sent { .. }));
    }
    let attempt = rig.channels.attempt(&send(3, "m")).await;
    let midnight = DateTime::parse_from_rfc3339("2026-11-22T16:00:00Z").unwrap().to_utc();
    assert!(
        matches!(&attempt.outcome, Outcome::Retry { at, error, .. } if *at == midnight && error == "daily_quota"),
        "{:?}",
        attempt.outcome
    );
    assert_eq!(rig.fake.calls_to(TEMPLATE_PATH).len(), 2, "the third never reached WeChat");
    assert_eq!(rig.metrics.quota_deferrals.with_label_values(&["wechat-main"]).get(), 1);
    rig.clock.set(midnight);
    assert!(matches!(rig.channels.attempt(&send(3, "m")).await.outcome, Outcome::Sent { .. }));
}

#[tokio::test]
async fn other_codes_are_dead_lettered_with_the_code() {
    let rig = rig().await;
    rig.fake.inject_template("bad-args", &[47003]);
    let attempt = rig.channels.attempt(&send(1, "bad-args")).await;
    assert!(matches!(&attempt.outcome, Outcome::Dead { reason, .. } if reason == "wechat_47003"));
    assert!(!attempt.opt_out);
    let class = |class| rig.metrics.dead_letter_classes.with_label_values(&["wechat-main", class]);
    assert_eq!(class("rejected").get(), 1);

    // A member without an openid is skipped, not dead-lettered, and stays opted in.
    let mut no_openid = send(2, "");
    no_openid.openid = None;
    let attempt = rig.channels.attempt(&no_openid).await;
    assert!(matches!(&attempt.outcome, Outcome::Skipped { reason, .. } if reason == "no_openid"));
    assert!(!attempt.opt_out);
    assert_eq!(rig.metrics.dead_letters.with_label_values(&["wechat-main", "no_openid"]).get(), 0);
    assert_eq!(class("config").get(), 0);

    // A template id the account does not have: WeChat answers 40037.
    let wrong = rig_with("").await;
    let text = format!(
        "type = \"wechat\"\nappid = \"{APPID}\"\nsecret_env = \"WECHAT_SECRET\"\n\
         template_id = \"not-a-template\"\napi_base = \"{}\"\n",
        wrong.fake.api_base
    );
    let configs = BTreeMap::from([("wechat-main".to_owned(), toml::from_str(&text).unwrap())]);
    let channels =
        Channels::from_config_with(&configs, wrong.clock.clone(), wrong.metrics.clone(), &Secrets)
            .unwrap();
    let attempt = channels.attempt(&send(3, "o3")).await;
    assert!(matches!(&attempt.outcome, Outcome::Dead { reason, .. } if reason == "wechat_40037"));
    assert_eq!(wrong.fake.calls_to(TEMPLATE_PATH)[0].errcode, 40037);
}

#[tokio::test]
async fn a_transient_token_failure_retries_rather_than_burning_the_push() {
    let rig = rig().await;
    rig.fake.fail_tokens(-1);
    let attempt = rig.channels.attempt(&send(1, "o1")).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Retry { error, .. } if error == "wechat_token_-1"),
        "{:?}",
        attempt.outcome
    );
    assert!(rig.fake.calls_to(TEMPLATE_PATH).is_empty());
    assert_eq!(rig.metrics.token_refreshes.with_label_values(&["error"]).get(), 1);

    // Its last attempt dead-letters it as a credentials failure (an alert pages on it):
    // the token never came.
    let mut last = send(2, "o2");
    last.attempts = 100;
    let attempt = rig.channels.attempt(&last).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Dead { reason, .. } if reason == "wechat_token_-1"),
        "{:?}",
        attempt.outcome
    );
    let classes = &rig.metrics.dead_letter_classes;
    assert_eq!(classes.with_label_values(&["wechat-main", "credentials"]).get(), 1);
    assert_eq!(classes.with_label_values(&["wechat-main", "transient"]).get(), 0);
}

#[tokio::test]
async fn account_level_errors_hand_the_push_back_uncharged() {
    let rig = rig().await;
    // The token itself is refused: the IP is not on the allow-list.
    rig.fake.refuse_ip(true);
    let attempt = rig.channels.attempt(&send(1, "o1")).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Released { reason, .. } if reason == "wechat_token_40164"),
        "{:?}",
        attempt.outcome
    );
    // A token in hand, then the send refused for the whole account.
    rig.fake.refuse_ip(false);
    assert!(matches!(rig.channels.attempt(&send(2, "o2")).await.outcome, Outcome::Sent { .. }));
    rig.fake.refuse_ip(true);
    let attempt = rig.channels.attempt(&send(3, "o3")).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Released { reason, .. } if reason == "wechat_40164"),
        "{:?}",
        attempt.outcome
    );
    rig.fake.refuse_ip(false);
    rig.fake.inject_template("o4", &[48001]);
    let attempt = rig.channels.attempt(&send(4, "o4")).await;
    assert!(matches!(&attempt.outcome, Outcome::Released { .. }), "{:?}", attempt.outcome);
    assert_eq!(
        rig.metrics.dead_letters.with_label_values(&["wechat-main", "wechat_48001"]).get(),
        0
    );
}

#[tokio::test]
async fn a_resent_push_is_dropped_by_client_msg_id() {
    let rig = rig().await;
    let row = send(1, "dup");
    let first = rig.channels.attempt(&row).await.outcome;
    let again = rig.channels.attempt(&row).await.outcome; // e.g. after a crash before commit
    let (Outcome::Sent { provider_id: a, .. }, Outcome::Sent { provider_id: b, .. }) =
        (first, again)
    else {
        panic!("both attempts report sent")
    };
    assert_eq!(a, b, "WeChat answers the original msgid");
    assert_eq!(rig.fake.delivered().len(), 1);
    assert_eq!(rig.fake.duplicates_dropped(), 1);
}

#[tokio::test]
async fn customer_service_inside_48_hours_else_template() {
    let rig = rig().await;
    let mut recent = send(1, "recent");
    recent.last_interaction_at = Some(now() - Duration::hours(47));
    let mut stale = send(2, "stale");
    stale.last_interaction_at = Some(now() - Duration::hours(49));
    let mut closed = send(3, "closed");
    closed.last_interaction_at = Some(now() - Duration::hours(1));
    rig.fake.inject_custom("closed", &[45015]);
    for row in [&recent, &stale, &closed] {
        let outcome = rig.channels.attempt(row).await.outcome;
        assert!(matches!(outcome, Outcome::Sent { .. }), "{outcome:?}");
    }
    let kinds: HashMap<String, &str> =
        rig.fake.delivered().into_iter().map(|d| (d.touser, d.kind)).collect();
    assert_eq!(kinds["recent"], "custom");
    assert_eq!(kinds["stale"], "template");
    assert_eq!(kinds["closed"], "template", "window closed (45015): fall back to the template");
    let custom = rig.fake.calls_to(CUSTOM_PATH);
    assert_eq!(custom.len(), 2);
    assert_eq!(custom[0].body["text"]["content"], recent.text);
}
