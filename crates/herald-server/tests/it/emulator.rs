//! Emulator mode (issue "Emulator mode"): every `/emulator/v1` endpoint through real
//! HTTP against a server started with `Herald::prepare_emulator`, sends signed with the
//! service-account key as a backend signs them; and a normal server answers 404 there.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::StatusCode;
use herald_proto::keyfile::{HUAWEI_TOKEN_URI, JwtClaims, KeyFile};
use herald_server::bootstrap::Choices;
use herald_server::state::Shared;
use herald_server::{BootstrapInfo, Config, Herald};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{eventually, spawn_app};

/// A server in emulator mode, and a backend's view of it.
struct Emu {
    url: String,
    info: BootstrapInfo,
    key: KeyFile,
    state: Shared,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Emu {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn spawn_emulator() -> Emu {
    spawn_emulator_with(Choices::default()).await
}

async fn spawn_emulator_with(choices: Choices) -> Emu {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        sqlite_synchronous: "normal".into(),
        shutdown_grace_secs: 2,
        ..Config::default()
    };
    let herald = Herald::prepare_emulator(listener, config, choices)
        .await
        .unwrap();
    let info = herald.bootstrap_info().unwrap().clone();
    let key: KeyFile =
        serde_json::from_str(&std::fs::read_to_string(&info.service_account_file).unwrap())
            .unwrap();
    let url = herald.public_url().to_owned();
    let state = herald.state();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        herald
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Emu {
        url,
        info,
        key,
        state,
        http: reqwest::Client::new(),
        _dir: dir,
        stop: Some(stop),
    }
}

impl Emu {
    /// An emulator API call with the admin token.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/emulator/v1{path}", self.url))
            .bearer_auth(&self.info.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// A new device: its id and token.
    async fn device(&self, body: Value) -> (String, String) {
        let (status, d) = self.post("/devices", body).await;
        assert_eq!(status, 201, "{d}");
        (
            d["device_id"].as_str().unwrap().to_owned(),
            d["token"].as_str().unwrap().to_owned(),
        )
    }

    async fn inbox(&self, device: &str) -> Vec<Value> {
        let (status, b) = self.get(&format!("/devices/{device}/inbox")).await;
        assert_eq!(status, 200, "{b}");
        b["items"].as_array().unwrap().clone()
    }

    async fn act(&self, device: &str, action: Value) -> (u16, Value) {
        self.post(&format!("/devices/{device}/actions"), action)
            .await
    }

    async fn advance(&self, secs: i64) -> Value {
        let (status, b) = self.post("/clock", json!({"advance_secs": secs})).await;
        assert_eq!(status, 200, "{b}");
        b
    }

    /// A JWT as a backend signs it, `iat` from Herald's clock (the backend's clock is
    /// under the test's control too).
    fn jwt(&self) -> String {
        let iat = self.state.clock.now_secs();
        let claims = JwtClaims {
            iss: self.key.sub_account.clone(),
            aud: Value::String(HUAWEI_TOKEN_URI.to_owned()),
            iat,
            exp: iat + 3600,
        };
        let mut header = Header::new(Algorithm::PS256);
        header.kid = Some(self.key.key_id.clone());
        let key = EncodingKey::from_rsa_pem(self.key.private_key.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    /// A Push Kit send: HTTP status, and the body (null when there is none).
    async fn send_with(&self, jwt: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!(
                "{}/v3/{}/messages:send",
                self.url, self.info.project_id
            ))
            .bearer_auth(jwt)
            .header("push-type", "0")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn send(&self, body: Value) -> (u16, Value) {
        self.send_with(&self.jwt(), body).await
    }
}

fn notify(token: &str, notify_id: i64, extra: Value) -> Value {
    let mut n = json!({
        "category": "MARKETING",
        "title": "Order shipped",
        "body": "Your parcel is on its way",
        "notifyId": notify_id,
        "clickAction": {"actionType": 1, "action": "com.example.ORDER", "data": {"order": "42"}},
    });
    if let (Some(n), Some(extra)) = (n.as_object_mut(), extra.as_object()) {
        n.extend(extra.clone());
    }
    json!({"payload": {"notification": n}, "target": {"token": [token]}})
}

fn states(inbox: &[Value]) -> Vec<(String, Value)> {
    inbox
        .iter()
        .map(|i| {
            (
                i["state"].as_str().unwrap().to_owned(),
                i["receipt"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_normal_serve_answers_404_under_emulator_v1_and_documents_none_of_it() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::POST, "/emulator/v1/devices"),
        (reqwest::Method::GET, "/emulator/v1/receipts"),
        (reqwest::Method::POST, "/emulator/v1/clock"),
        (reqwest::Method::DELETE, "/emulator/v1/state"),
    ] {
        let resp = http
            .request(method, format!("{}{path}", app.url))
            .bearer_auth(&app.info.admin_token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let doc: Value = http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths.keys().all(|p| !p.starts_with("/emulator")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn the_emulator_api_needs_the_admin_token_and_is_in_the_openapi_document() {
    let emu = spawn_emulator().await;
    let resp = emu
        .http
        .post(format!("{}/emulator/v1/devices", emu.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = emu
        .http
        .delete(format!("{}/emulator/v1/state", emu.url))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let doc: Value = emu
        .http
        .get(format!("{}/openapi.json", emu.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/emulator/v1/devices",
        "/emulator/v1/devices/{device_id}/inbox",
        "/emulator/v1/devices/{device_id}/actions",
        "/emulator/v1/clock",
        "/emulator/v1/faults",
        "/emulator/v1/receipts",
        "/emulator/v1/state",
        "/api/v1/projects",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
}

#[tokio::test]
async fn a_device_shows_a_notification_and_a_click_answers_the_want_its_ability_receives() {
    let emu = spawn_emulator().await;
    let (device, token) = emu
        .device(json!({
            "client_id": emu.info.client_id,
            "permission": "allow",
            "online": true,
            "abilities": [{"name": "OrderAbility", "actions": ["com.example.ORDER"]}],
        }))
        .await;
    let body = notify(&token, 7, json!({"category": "IM"}));
    let (status, answer) = emu.send(body.clone()).await;
    assert_eq!((status, answer["code"].as_str()), (200, Some("80000000")));
    let inbox = emu.inbox(&device).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let item = &inbox[0];
    assert_eq!(item["state"], "shown");
    assert_eq!(item["receipt"], 0);
    assert_eq!(item["request_id"], answer["requestId"]);
    assert_eq!(item["notify_id"], 7);
    assert_eq!(item["push_type"], 0);
    // Without the IM right the notification was downgraded.
    assert_eq!(item["category"], "MARKETING");
    assert_eq!(item["payload"], body["payload"], "as the backend sent it");
    assert!(item["message_id"].as_str().unwrap().contains('.'));

    // The tap opens the declared ability, cold (it was not running).
    let (status, click) = emu
        .act(&device, json!({"action": "click", "notify_id": 7}))
        .await;
    assert_eq!(status, 200, "{click}");
    assert_eq!(click["ability"], "OrderAbility");
    assert_eq!(click["callback"], "onCreate");
    assert_eq!(click["want"]["parameters"], json!({"order": "42"}));
    assert_eq!(click["want"]["action"], "com.example.ORDER");
    assert_eq!(
        states(&emu.inbox(&device).await),
        [("clicked".into(), json!(0))]
    );
    // The notification left the shade: a second tap finds nothing.
    let (status, _) = emu
        .act(&device, json!({"action": "click", "notify_id": 7}))
        .await;
    assert_eq!(status, 404);
    // A second notification opens the running ability: onNewWant.
    emu.send(notify(&token, 8, json!({}))).await;
    let (_, click) = emu
        .act(&device, json!({"action": "click", "notify_id": 8}))
        .await;
    assert_eq!(click["callback"], "onNewWant", "{click}");
}

#[tokio::test]
async fn switch_off_suppresses_with_6_until_the_user_turns_it_on() {
    let emu = spawn_emulator().await;
    let (device, token) = emu.device(json!({"permission": "deny"})).await;
    emu.send(notify(&token, 1, json!({}))).await;
    assert_eq!(
        states(&emu.inbox(&device).await),
        [("suppressed".into(), json!(6))]
    );
    let (status, _) = emu
        .act(&device, json!({"action": "settings", "enabled": true}))
        .await;
    assert_eq!(status, 200);
    emu.send(notify(&token, 2, json!({}))).await;
    assert_eq!(
        states(&emu.inbox(&device).await),
        [("suppressed".into(), json!(6)), ("shown".into(), json!(0))]
    );
}

#[tokio::test]
async fn profiles_tokens_app_state_and_bad_actions() {
    let emu = spawn_emulator().await;
    let (device, token) = emu.device(json!({})).await;
    // A profileId the device has not bound is not shown (144); once bound, it is.
    emu.send(notify(&token, 1, json!({"profileId": "user-1"})))
        .await;
    let (status, _) = emu
        .act(&device, json!({"action": "bind_profile", "id": "user-1"}))
        .await;
    assert_eq!(status, 200);
    emu.send(notify(&token, 2, json!({"profileId": "user-1"})))
        .await;
    assert_eq!(
        states(&emu.inbox(&device).await),
        [
            ("suppressed".into(), json!(144)),
            ("shown".into(), json!(0))
        ]
    );
    // (Two MARKETING notifications a day: the rest of the test is on the next day.)
    emu.advance(86_400).await;
    // deleteToken answers the new token; sends to the old one are dropped with 5.
    let (status, answer) = emu.act(&device, json!({"action": "delete_token"})).await;
    assert_eq!(status, 200, "{answer}");
    let new = answer["token"].as_str().unwrap().to_owned();
    assert_ne!(new, token);
    emu.send(notify(&token, 3, json!({}))).await;
    emu.send(notify(&new, 4, json!({}))).await;
    let inbox = emu.inbox(&device).await;
    assert_eq!(
        states(&inbox[2..]),
        [("dropped".into(), json!(5)), ("shown".into(), json!(0))]
    );
    assert_eq!(inbox[3]["token"], new.as_str());
    // In the foreground an extension message goes to the app, in the background it is
    // a notification (both shown as far as the server hears).
    let (status, answer) = emu
        .act(
            &device,
            json!({"action": "app_state", "state": "background"}),
        )
        .await;
    assert_eq!(
        (status, answer["state"].as_str()),
        (200, Some("background"))
    );
    for bad in [
        json!({"action": "fly"}),
        json!({"action": "click"}),
        json!({"action": "app_state", "state": "asleep"}),
        json!({"action": "bind_profile", "id": ""}),
    ] {
        let (status, b) = emu.act(&device, bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {b}");
        assert!(b["error"].is_string());
    }
    let (status, _) = emu
        .act(
            "no-such-device",
            json!({"action": "online", "online": true}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = emu.post("/devices", json!({"client_id": "123"})).await;
    assert_eq!(status, 404, "no such app");
    let (status, _) = emu.post("/devices", json!({"permission": "maybe"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_offline_device_queues_expires_after_its_ttl_and_gets_the_rest_when_online() {
    let emu = spawn_emulator().await;
    let (device, token) = emu.device(json!({"online": false})).await;
    let mut short = notify(&token, 1, json!({}));
    short["pushOptions"] = json!({"ttl": "60s"});
    emu.send(short).await;
    emu.send(notify(&token, 2, json!({}))).await;
    assert_eq!(
        states(&emu.inbox(&device).await),
        [
            ("queued".into(), Value::Null),
            ("queued".into(), Value::Null)
        ]
    );
    let before = emu.get("/clock").await.1;
    let after = emu.advance(61).await;
    assert!(after["now_ms"].as_i64().unwrap() >= before["now_ms"].as_i64().unwrap() + 61_000);
    assert_eq!(after["offset_secs"], 61);
    // Expired by the time the clock call answered, receipt 14.
    assert_eq!(
        states(&emu.inbox(&device).await),
        [
            ("expired".into(), json!(14)),
            ("queued".into(), Value::Null)
        ]
    );
    let (status, b) = emu
        .act(&device, json!({"action": "online", "online": true}))
        .await;
    assert_eq!((status, b["online"].as_bool()), (200, Some(true)));
    assert_eq!(
        states(&emu.inbox(&device).await),
        [("expired".into(), json!(14)), ("shown".into(), json!(0))]
    );
    let (status, _) = emu.post("/clock", json!({"advance_secs": -1})).await;
    assert_eq!(status, 400, "the clock never goes back");
}

#[tokio::test]
async fn the_marketing_quota_is_reached_with_256_and_resets_the_next_day() {
    let emu = spawn_emulator().await;
    let (device, token) = emu.device(json!({})).await;
    for id in 1..=3 {
        emu.send(notify(&token, id, json!({"category": "MARKETING"})))
            .await;
    }
    assert_eq!(
        states(&emu.inbox(&device).await),
        [
            ("shown".into(), json!(0)),
            ("shown".into(), json!(0)),
            ("dropped".into(), json!(256))
        ]
    );
    // A JWT signed before the jump has expired by Herald's clock after it.
    let old_jwt = emu.jwt();
    emu.advance(86_400).await;
    let (status, answer) = emu.send_with(&old_jwt, notify(&token, 4, json!({}))).await;
    assert_eq!(answer["code"], "80200005", "{status} {answer}");
    let (_, answer) = emu.send(notify(&token, 4, json!({}))).await;
    assert_eq!(answer["code"], "80000000");
    let inbox = emu.inbox(&device).await;
    assert_eq!(
        inbox.len(),
        4,
        "the faulted and refused sends are not in it"
    );
    assert_eq!(states(&inbox[3..]), [("shown".into(), json!(0))]);
}

#[tokio::test]
async fn faults_answer_the_next_sends_as_push_kit_does_and_store_nothing() {
    let emu = spawn_emulator().await;
    let (device, token) = emu.device(json!({})).await;
    let (_, other) = emu.device(json!({})).await;
    let (status, b) = emu
        .post("/faults", json!({"code": "81000001", "count": 2}))
        .await;
    assert_eq!(status, 201, "{b}");
    for _ in 0..2 {
        let (status, answer) = emu.send(notify(&token, 1, json!({}))).await;
        assert_eq!((status, answer["code"].as_str()), (500, Some("81000001")));
        assert!(answer["requestId"].is_string());
    }
    assert!(
        emu.inbox(&device).await.is_empty(),
        "a faulted send stores nothing"
    );
    // A token's fault answers only the sends that include it.
    emu.post(
        "/faults",
        json!({"code": "80300007", "count": 1, "token": token}),
    )
    .await;
    let (_, answer) = emu.send(notify(&other, 2, json!({}))).await;
    assert_eq!(answer["code"], "80000000");
    let (status, answer) = emu.send(notify(&token, 3, json!({}))).await;
    assert_eq!(answer["code"], "80300007", "{status} {answer}");
    let msg: Value = serde_json::from_str(answer["msg"].as_str().unwrap()).unwrap();
    assert_eq!(msg["illegalTokens"]["tokenFormatError"], json!([token]));
    // A bare HTTP status.
    emu.post("/faults", json!({"http_status": 503, "count": 1}))
        .await;
    let (status, answer) = emu.send(notify(&token, 4, json!({}))).await;
    assert_eq!((status, answer), (503, Value::Null));
    // Then the real thing again.
    assert_eq!(emu.get("/faults").await.1["faults"], json!([]));
    let (_, answer) = emu.send(notify(&token, 5, json!({}))).await;
    assert_eq!(answer["code"], "80000000");
    assert_eq!(
        states(&emu.inbox(&device).await),
        [("shown".into(), json!(0))]
    );
    for bad in [
        json!({"code": "12345678"}),
        json!({"code": "80000000"}),
        json!({"http_status": 200}),
        json!({"code": "81000001", "http_status": 503}),
        json!({"code": "81000001", "count": 0}),
        json!({}),
    ] {
        let (status, _) = emu.post("/faults", bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
    }
}

/// A receipt endpoint that fails its first call and accepts the rest.
async fn flaky_receiver() -> (String, Arc<Mutex<u32>>) {
    let calls = Arc::new(Mutex::new(0u32));
    let seen = calls.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/receipts", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            let mut n = seen.lock().unwrap();
            *n += 1;
            if *n == 1 {
                (StatusCode::INTERNAL_SERVER_ERROR, "busy".to_owned())
            } else {
                (StatusCode::OK, json!({"code": "0"}).to_string())
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

#[tokio::test]
async fn the_receipt_log_shows_every_attempt_with_the_endpoints_answer() {
    let emu = spawn_emulator().await;
    let (url, _calls) = flaky_receiver().await;
    let resp = emu
        .http
        .post(format!(
            "{}/api/v1/projects/{}/receipts",
            emu.url, emu.info.project_id
        ))
        .bearer_auth(&emu.info.admin_token)
        .json(&json!({"url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (device, token) = emu.device(json!({"permission": "deny"})).await;
    emu.send(notify(&token, 1, json!({}))).await;
    assert_eq!(
        states(&emu.inbox(&device).await),
        [("suppressed".into(), json!(6))]
    );
    let first = eventually("the first attempt is logged", || async {
        let items = emu.get("/receipts").await.1["items"].clone();
        (!items.as_array().unwrap().is_empty()).then_some(items)
    })
    .await;
    assert_eq!(first[0]["status"], 500);
    assert_eq!(first[0]["success"], false);
    assert_eq!(first[0]["answer"], "busy");
    assert_eq!(first[0]["url"], url.as_str());
    let status = &first[0]["body"]["statuses"][0];
    assert_eq!(status["deliveryStatus"]["result"], 6, "{status}");
    assert_eq!(status["token"], token.as_str());
    // The retry is due after its backoff on Herald's clock: move it.
    emu.advance(120).await;
    let items = eventually("the retry is logged", || async {
        let items = emu.get("/receipts").await.1["items"].clone();
        (items.as_array().unwrap().len() >= 2).then_some(items)
    })
    .await;
    assert_eq!(items[1]["status"], 200);
    assert_eq!(items[1]["success"], true);
    assert_eq!(
        items[1]["body"]["statuses"][0]["deliveryStatus"]["result"],
        6
    );
}

#[tokio::test]
async fn a_reset_forgets_devices_messages_quotas_and_faults_but_keeps_project_app_and_key() {
    let emu = spawn_emulator().await;
    let (device, token) = emu.device(json!({})).await;
    for id in 1..=3 {
        emu.send(notify(&token, id, json!({}))).await;
    }
    emu.post("/faults", json!({"code": "81000001", "count": 5}))
        .await;
    let started = Instant::now();
    let (status, _) = emu.call(reqwest::Method::DELETE, "/state", None).await;
    let took = started.elapsed();
    assert_eq!(status, 204);
    eprintln!("reset answered in {took:?}");
    let (status, _) = emu.get(&format!("/devices/{device}/inbox")).await;
    assert_eq!(status, 404, "the device is gone");
    assert_eq!(emu.get("/faults").await.1["faults"], json!([]));
    assert!(
        emu.state
            .store
            .lookup_tokens(std::slice::from_ref(&token))
            .await
            .unwrap()
            .is_empty()
    );
    // The same key and app serve a new device, whose MARKETING quota starts afresh.
    let (device, token) = emu.device(json!({})).await;
    for id in 1..=2 {
        let (_, answer) = emu.send(notify(&token, id, json!({}))).await;
        assert_eq!(answer["code"], "80000000");
    }
    assert_eq!(
        states(&emu.inbox(&device).await),
        [("shown".into(), json!(0)), ("shown".into(), json!(0))]
    );
}

#[tokio::test]
async fn a_revoked_notification_leaves_the_device() {
    let emu = spawn_emulator().await;
    let (device, token) = emu.device(json!({})).await;
    emu.send(notify(&token, 9, json!({}))).await;
    let resp = emu
        .http
        .post(format!(
            "{}/v1/{}/messages:revoke",
            emu.url, emu.info.client_id
        ))
        .bearer_auth(emu.jwt())
        .header("push-type", "0")
        .json(&json!({"notifyId": 9, "token": [token]}))
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["code"], "80000000", "{answer}");
    assert_eq!(
        states(&emu.inbox(&device).await),
        [("revoked".into(), json!(0))]
    );
    let (status, _) = emu
        .act(&device, json!({"action": "click", "notify_id": 9}))
        .await;
    assert_eq!(status, 404, "not on the shade any more");
}

#[tokio::test]
async fn a_given_key_project_and_client_id_are_served() {
    let key = herald_server::keys::generate().unwrap();
    let given = KeyFile {
        project_id: "101".into(),
        key_id: "fixedkey".into(),
        private_key: key.private_key_pem,
        sub_account: "202".into(),
        auth_uri: "https://oauth-login.cloud.huawei.com/oauth2/v3/authorize".into(),
        token_uri: HUAWEI_TOKEN_URI.into(),
        auth_provider_cert_uri: "https://oauth-login.cloud.huawei.com/oauth2/v3/certs".into(),
        client_cert_uri: "https://oauth-login.cloud.huawei.com/oauth2/v3/x509?client_id=".into(),
    };
    let emu = spawn_emulator_with(Choices {
        project_id: Some("101".into()),
        client_id: Some("303".into()),
        key_file: Some(given.clone()),
    })
    .await;
    assert_eq!(
        (emu.info.project_id.as_str(), emu.info.client_id.as_str()),
        ("101", "303")
    );
    assert_eq!(emu.key.key_id, "fixedkey");
    assert_eq!(emu.key.private_key, given.private_key);
    let (device, token) = emu.device(json!({})).await;
    let (_, answer) = emu.send(notify(&token, 1, json!({}))).await;
    assert_eq!(answer["code"], "80000000");
    assert_eq!(emu.inbox(&device).await.len(), 1);
    // A project id that is not the key's is refused before anything is written.
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = Herald::prepare_emulator(
        listener,
        Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        },
        Choices {
            project_id: Some("999".into()),
            client_id: None,
            key_file: Some(given),
        },
    )
    .await;
    let err = refused.err().unwrap().to_string();
    assert!(err.contains("differs from the key file"), "{err}");
}

#[tokio::test]
async fn a_queued_message_with_the_same_collapse_key_is_replaced_with_15() {
    let emu = spawn_emulator().await;
    let (device, token) = emu.device(json!({"online": false})).await;
    for id in 1..=2 {
        let mut body = notify(&token, id, json!({}));
        body["pushOptions"] = json!({"collapseKey": 1});
        emu.send(body).await;
    }
    assert_eq!(
        states(&emu.inbox(&device).await),
        [
            ("replaced".into(), json!(15)),
            ("queued".into(), Value::Null)
        ]
    );
    emu.act(&device, json!({"action": "online", "online": true}))
        .await;
    assert_eq!(
        states(&emu.inbox(&device).await),
        [("replaced".into(), json!(15)), ("shown".into(), json!(0))]
    );
}
