//! A fake WeChat Official Account API for tests, speaking the real protocol on
//! 127.0.0.1:0: `POST /cgi-bin/stable_token` (JSON, `force_refresh`, `expires_in`),
//! `POST /cgi-bin/message/template/send?access_token=…` (token checked: unknown →
//! 40001, expired → 42001; `template_id` checked → 40037; `client_msg_id` dedup per
//! openid) and `POST /cgi-bin/message/custom/send`. Error codes are injected per
//! openid. The caller's IP can be taken off the allow-list at run time: every
//! call then answers 40164. Every request is recorded. Include with `#[path = "wechat_fake/mod.rs"]`.
// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Query, State};
use axum::routing::post;
use serde_json::{Value, json};

/// One recorded API call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Path, e.g. `/cgi-bin/message/template/send`.
    pub path: String,
    /// The `access_token` query parameter, if any.
    pub access_token: Option<String>,
    /// The JSON body.
    pub body: Value,
    /// The `errcode` answered.
    pub errcode: i64,
}

/// A message the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// `template` or `custom`.
    pub kind: &'static str,
    /// openid.
    pub touser: String,
    /// The text carried.
    pub text: String,
    /// `client_msg_id` (templates).
    pub client_msg_id: Option<String>,
}

#[derive(Default)]
struct State_ {
    calls: Vec<Call>,
    delivered: Vec<Delivered>,
    duplicates_dropped: usize,
    current_token: Option<String>,
    expired: HashSet<String>,
    issued: usize,
    next_msgid: i64,
    seen: HashMap<(String, String), i64>,
    template_errors: HashMap<String, VecDeque<i64>>,
    custom_errors: HashMap<String, VecDeque<i64>>,
    token_error: Option<i64>,
    ip_refused: bool,
}

struct Shared {
    appid: String,
    secret: String,
    template_id: String,
    expires_in: i64,
    state: Mutex<State_>,
}

/// A running fake.
pub struct FakeWechat {
    /// Base URL to configure as `api_base`.
    pub api_base: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeWechat {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn error(code: i64, message: &str) -> Value {
    json!({ "errcode": code, "errmsg": format!("{message} rid: 6567a1b2-fake") })
}

async fn stable_token(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Json<Value> {
    let mut state = shared.state.lock().unwrap();
    let reply = if state.ip_refused {
        error(40164, "invalid ip 127.0.0.1, not in whitelist")
    } else if body["grant_type"] != "client_credential" {
        error(40002, "invalid grant_type")
    } else if body["appid"] != shared.appid.as_str() {
        error(40013, "invalid appid")
    } else if body["secret"] != shared.secret.as_str() {
        error(40125, "invalid appsecret")
    } else if let Some(code) = state.token_error {
        error(code, "injected")
    } else {
        let force = body["force_refresh"].as_bool().unwrap_or(false);
        let reusable = state.current_token.clone().filter(|t| !force && !state.expired.contains(t));
        let token = match reusable {
            Some(token) => token,
            None => {
                if let Some(old) = state.current_token.take() {
                    state.expired.insert(old);
                }
                state.issued += 1;
                let token = format!("ACCESS_TOKEN_{}_{}", state.issued, "x".repeat(100));
                state.current_token = Some(token.clone());
                token
            }
        };
        json!({ "access_token": token, "expires_in": shared.expires_in })
    };
    let errcode = reply["errcode"].as_i64().unwrap_or(0);
    state.calls.push(Call {
        path: "/cgi-bin/stable_token".into(),
        access_token: None,
        body,
        errcode,
    });
    Json(reply)
}

fn check_token(state: &State_, query: &HashMap<String, String>) -> Option<Value> {
    if state.ip_refused {
        return Some(error(40164, "invalid ip 127.0.0.1, not in whitelist"));
    }
    match query.get("access_token") {
        None => Some(error(41001, "access_token missing")),
        Some(token) if state.expired.contains(token) => Some(error(42001, "access_token expired")),
        Some(token) if state.current_token.as_ref() != Some(token) => Some(error(
            40001,
            "invalid credential, access_token is invalid or not latest, could get access_token by getStableAccessToken",
        )),
        Some(_) => None,
    }
}

async fn template_send(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let mut state = shared.state.lock().unwrap();
    let touser = body["touser"].as_str().unwrap_or_default().to_owned();
    let reply = if let Some(reply) = check_token(&state, &query) {
        reply
    } else if touser.is_empty() {
        error(40003, "invalid openid")
    } else if body["template_id"] != shared.template_id.as_str() {
        error(40037, "invalid template_id")
    } else if body["data"].as_object().is_none_or(|data| data.is_empty()) {
        error(47003, "argument invalid! data invalid")
    } else if let Some(code) = state.template_errors.get_mut(&touser).and_then(VecDeque::pop_front)
    {
        error(code, "injected")
    } else {
        let client_msg_id = body["client_msg_id"].as_str().map(str::to_owned);
        let dedup_key = client_msg_id.clone().map(|id| (touser.clone(), id));
        match dedup_key.as_ref().and_then(|key| state.seen.get(key).copied()) {
            Some(msgid) => {
                state.duplicates_dropped += 1;
                json!({ "errcode": 0, "errmsg": "ok", "msgid": msgid })
            }
            None => {
                state.next_msgid += 1;
                let msgid = 200_228_000 + state.next_msgid;
                if let Some(key) = dedup_key {
                    state.seen.insert(key, msgid);
                }
                let text = body["data"]
                    .as_object()
                    .and_then(|data| data.values().next())
                    .and_then(|field| field["value"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                state.delivered.push(Delivered { kind: "template", touser, text, client_msg_id });
                json!({ "errcode": 0, "errmsg": "ok", "msgid": msgid })
            }
        }
    };
    let errcode = reply["errcode"].as_i64().unwrap_or(0);
    state.calls.push(Call {
        path: "/cgi-bin/message/template/send".into(),
        access_token: query.get("access_token").cloned(),
        body,
        errcode,
    });
    Json(reply)
}

async fn custom_send(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let mut state = shared.state.lock().unwrap();
    let touser = body["touser"].as_str().unwrap_or_default().to_owned();
    let reply = if let Some(reply) = check_token(&state, &query) {
        reply
    } else if body["msgtype"] != "text" || !body["text"]["content"].is_string() {
        error(47001, "data format error")
    } else if let Some(code) = state.custom_errors.get_mut(&touser).and_then(VecDeque::pop_front) {
        error(code, "injected")
    } else {
        let text = body["text"]["content"].as_str().unwrap_or_default().to_owned();
        state.delivered.push(Delivered { kind: "custom", touser, text, client_msg_id: None });
        json!({ "errcode": 0, "errmsg": "ok" })
    };
    let errcode = reply["errcode"].as_i64().unwrap_or(0);
    state.calls.push(Call {
        path: "/cgi-bin/message/custom/send".into(),
        access_token: query.get("access_token").cloned(),
        body,
        errcode,
    });
    Json(reply)
}

impl FakeWechat {
    /// Starts a fake for one account.
    pub async fn start(appid: &str, secret: &str, template_id: &str) -> FakeWechat {
        let shared = Arc::new(Shared {
            appid: appid.into(),
            secret: secret.into(),
            template_id: template_id.into(),
            expires_in: 7200,
            state: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/cgi-bin/stable_token", post(stable_token))
            .route("/cgi-bin/message/template/send", post(template_send))
            .route("/cgi-bin/message/custom/send", post(custom_send))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeWechat { api_base, shared, server }
    }

    /// The next template sends to `openid` answer these codes, in order.
    pub fn inject_template(&self, openid: &str, codes: &[i64]) {
        let mut state = self.shared.state.lock().unwrap();
        state.template_errors.entry(openid.into()).or_default().extend(codes);
    }

    /// The next customer-service sends to `openid` answer these codes, in order.
    pub fn inject_custom(&self, openid: &str, codes: &[i64]) {
        let mut state = self.shared.state.lock().unwrap();
        state.custom_errors.entry(openid.into()).or_default().extend(codes);
    }

    /// `stable_token` answers this errcode from now on.
    pub fn fail_tokens(&self, code: i64) {
        self.shared.state.lock().unwrap().token_error = Some(code);
    }

    /// Takes the caller's IP off the account's allow-list (`true`: every call
    /// answers 40164) or puts it back (`false`).
    pub fn refuse_ip(&self, refused: bool) {
        self.shared.state.lock().unwrap().ip_refused = refused;
    }

    /// The current token expires (calls with it get 42001; a new one is issued).
    pub fn expire_token(&self) {
        let mut state = self.shared.state.lock().unwrap();
        if let Some(token) = state.current_token.take() {
            state.expired.insert(token);
        }
    }

    /// The current token is replaced without notice (calls with it get 40001).
    pub fn rotate_token(&self) {
        let mut state = self.shared.state.lock().unwrap();
        state.issued += 1;
        state.current_token = Some(format!("ROTATED_{}", state.issued));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.state.lock().unwrap().calls.clone()
    }

    /// Calls to one path.
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|call| call.path == path).collect()
    }

    /// Messages accepted.
    pub fn delivered(&self) -> Vec<Delivered> {
        self.shared.state.lock().unwrap().delivered.clone()
    }

    /// Template sends dropped as duplicates of an earlier `client_msg_id`.
    pub fn duplicates_dropped(&self) -> usize {
        self.shared.state.lock().unwrap().duplicates_dropped
    }
}
