//! Delivery receipts (issue "Delivery receipts…"): a real HTTP receiver on port 0 checks
//! the V2 body, the signature, the codes, batching, config choice, retries and restarts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herald_client::admin::AdminClient;
use herald_core::Clock;
use herald_proto::device::{ClientFrame, ReportStatus};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{
    TestApp, add_project_with_app, device_with_token, eventually, notification, spawn_app,
    spawn_app_with, wait_for_state,
};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// `{"code":"0","message":"success"}`
    Success,
    /// HTTP 500.
    ServerError,
    /// HTTP 200 with a non-zero code.
    WrongCode,
}

#[derive(Debug, Clone)]
struct Call {
    path: String,
    callback_id: Option<String>,
    content_type: Option<String>,
    body: Value,
    answer: Answer,
}

#[derive(Clone, Default)]
struct Shared {
    calls: Arc<Mutex<Vec<Call>>>,
    answer: Arc<Mutex<Option<Answer>>>,
}

/// A receipt endpoint, as an app's backend would run it.
struct Receiver {
    base: String,
    shared: Shared,
}

async fn record(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    // Markers (see `marker_receipt`) are always acknowledged.
    let answer = match uri.path().starts_with("/marker") {
        true => Answer::Success,
        false => shared.answer.lock().unwrap().unwrap_or(Answer::Success),
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    shared.calls.lock().unwrap().push(Call {
        path: uri.path().to_owned(),
        callback_id: header("x-huawei-callback-id"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answer,
    });
    match answer {
        Answer::Success => (
            StatusCode::OK,
            json!({"code": "0", "message": "success"}).to_string(),
        ),
        Answer::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "down".into()),
        Answer::WrongCode => (
            StatusCode::OK,
            json!({"code": "1", "message": "busy"}).to_string(),
        ),
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let shared = Shared::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(record)
            .with_state(shared.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { base, shared }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer(&self, a: Answer) {
        *self.shared.answer.lock().unwrap() = Some(a);
    }

    fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    async fn wait_calls(&self, n: usize) -> Vec<Call> {
        eventually(&format!("{n} callbacks"), || async {
            let calls = self.calls();
            (calls.len() >= n).then_some(calls)
        })
        .await
    }

    /// Calls to `path`.
    fn calls_to(&self, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.path == path)
            .collect()
    }

    /// Statuses of callbacks the receiver acknowledged.
    fn acknowledged(&self) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.answer == Answer::Success)
            .flat_map(|c| c.body["statuses"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    async fn wait_acknowledged(&self, n: usize) -> Vec<Value> {
        eventually(&format!("{n} acknowledged statuses"), || async {
            let statuses = self.acknowledged();
            (statuses.len() >= n).then_some(statuses)
        })
        .await
    }
}

/// A receipt that must come after everything the dispatcher posts for what happened
/// earlier: a send to an unknown token (receipt 5) made now, to the config `receipt_id`
/// (whose endpoint is a `/marker…` path, always acknowledged). Waits until the receiver
/// has it. "Nothing more was posted" is then checked on the calls so far: the marker was
/// queued after anything earlier, and the dispatcher posts a config's receipts in order
/// (and a failing config's retry before a later, partial batch of another).
async fn marker_receipt(app: &TestApp, receiver: &Receiver, receipt_id: &Value) {
    let mut body = notification(&[&unknown_tokens(1, 'M')[0]], "marker");
    body["pushOptions"] = json!({"receiptId": receipt_id});
    let (_, resp) = app.send(body).await;
    let request = resp["requestId"].clone();
    eventually("the marker receipt", || async {
        receiver
            .acknowledged()
            .iter()
            .any(|s| s["requestId"] == request)
            .then_some(())
    })
    .await;
}

fn admin(app: &TestApp) -> AdminClient {
    AdminClient::new(&app.url, &app.info.admin_token).unwrap()
}

/// Create a receipt config through the admin API; returns its JSON.
async fn create_config(app: &TestApp, body: Value) -> Value {
    let r = admin(app)
        .post(
            &format!("/api/v1/projects/{}/receipts", app.info.project_id),
            &body,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

/// Tokens of the right shape that belong to no device.
fn unknown_tokens(n: usize, tag: char) -> Vec<String> {
    (0..n).map(|i| format!("{tag}{i:0>111}")).collect()
}

fn request_id(resp: &Value) -> String {
    resp["requestId"].as_str().unwrap().to_owned()
}

/// Let the dispatcher look again (after the test moved the clock).
fn poke(app: &TestApp) {
    app.state.receipt_wake.notify_one();
}

/// The independent check of `X-HUAWEI-CALLBACK-ID`: parse it and recompute the HMAC.
fn verify_signature(header: &str, key: &[u8], username: &str) -> i64 {
    let parts: HashMap<&str, &str> = header
        .split(';')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let timestamp = parts["timestamp"];
    let nonce = parts["nonce"];
    uuid::Uuid::parse_str(nonce).expect("the nonce is a UUID");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{timestamp}{nonce}{username}").as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    // The value itself may contain '=' (Base64 padding): take everything after "value=".
    let value = header.split_once("value=").unwrap().1;
    assert_eq!(value, expected, "signature of {header}");
    timestamp.parse().unwrap()
}

#[tokio::test]
async fn a_delivered_message_is_reported_in_push_kits_v2_format_and_signed() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let secret = STANDARD.encode(b"a 32 byte key for the receipts!!");
    create_config(
        &app,
        json!({"url": receiver.url("/receipts"), "username": "receiver", "secret": secret}),
    )
    .await;
    let (mut d, token) = device_with_token(&app).await;
    let mut body = notification(&[&token], "hello");
    body["pushOptions"] = json!({"biTag": "campaign-7"});
    let (_, resp) = app.send(body).await;
    let m = d.message().await;
    d.ack(&[&m.id]).await;
    d.shown(&m.id).await;

    let calls = receiver.wait_calls(1).await;
    let call = &calls[0];
    assert_eq!(call.path, "/receipts");
    assert_eq!(call.content_type.as_deref(), Some("application/json"));
    let now = app.clock.now_ms();
    assert_eq!(
        call.body,
        json!({"statuses": [{
            "biTag": "campaign-7",
            "pushType": 0,
            "token": token,
            "requestId": request_id(&resp),
            "appPackageName": "com.example.herald.demo",
            "deliveryStatus": {"result": 0, "timestamp": now}
        }]})
    );
    let header = call.callback_id.as_deref().expect("signed");
    let key = STANDARD.decode(&secret).unwrap();
    assert_eq!(verify_signature(header, &key, "receiver"), now);
    // Nothing else comes for this message: once its report is recorded, a later receipt
    // (same config, so posted in order) is the next and last thing the endpoint sees.
    wait_for_state(&app, &m.id, "shown").await;
    let (_, later) = app
        .send(notification(&[&unknown_tokens(1, 'L')[0]], "later"))
        .await;
    let statuses = receiver.wait_acknowledged(2).await;
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(statuses[1]["requestId"], later["requestId"]);
}

#[tokio::test]
async fn a_secret_that_is_not_base64_signs_as_its_bytes_and_no_username_signs_as_empty() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    create_config(
        &app,
        json!({"url": receiver.url("/r"), "secret": "not Base64: plain text!"}),
    )
    .await;
    app.send(notification(&[&unknown_tokens(1, 'S')[0]], "x"))
        .await;
    let calls = receiver.wait_calls(1).await;
    let signed_at = verify_signature(
        calls[0].callback_id.as_deref().unwrap(),
        b"not Base64: plain text!",
        "",
    );
    assert_eq!(signed_at, app.clock.now_ms(), "signed at the server's time");
}

#[tokio::test]
async fn every_fate_gets_its_receipt_code() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    create_config(&app, json!({"url": receiver.url("/all")})).await;
    let (mut d, token) = device_with_token(&app).await;
    let mut expected: Vec<(String, Vec<u64>)> = Vec::new();

    // Unknown token → 5.
    let (_, r) = app
        .send(notification(&[&unknown_tokens(1, 'U')[0]], "ghost"))
        .await;
    expected.push((request_id(&r), vec![5]));

    // Not shown: switch off → 6, profile not bound → 144; one final receipt each (the
    // ack's 0 waited for the device's report and took its code).
    for code in [6, 144] {
        let (_, r) = app.send(notification(&[&token], "suppressed")).await;
        let m = d.message().await;
        d.send(&ClientFrame::Report {
            id: m.id.clone(),
            status: ReportStatus::Suppressed,
            code: Some(code),
        })
        .await;
        expected.push((request_id(&r), vec![u64::from(code)]));
    }

    // collapseKey replacement → 15 for the older, 0 for the newer once acknowledged.
    let mut older = notification(&[&token], "older");
    older["pushOptions"] = json!({"collapseKey": 1});
    let (_, r1) = app.send(older).await;
    d.message().await;
    let mut newer = notification(&[&token], "newer");
    newer["pushOptions"] = json!({"collapseKey": 1});
    let (_, r2) = app.send(newer).await;
    let m = d.message().await;
    d.ack(&[&m.id]).await;
    d.shown(&m.id).await;
    expected.push((request_id(&r1), vec![15]));
    expected.push((request_id(&r2), vec![0]));

    // TTL expiry → 14.
    let mut short = notification(&[&token], "short-lived");
    short["pushOptions"] = json!({"ttl": 60});
    let (_, r) = app.send(short).await;
    d.message().await;
    // The server's own expiry sweep runs when its clock moves; the test never calls it.
    app.clock.advance_secs(61);
    expected.push((request_id(&r), vec![14]));

    // MARKETING quota (2 a day) → 256 for the third.
    let marketing = |title: &str| {
        let mut n = notification(&[&token], title);
        n["payload"]["notification"]["category"] = json!("MARKETING");
        n
    };
    for title in ["m1", "m2"] {
        app.send(marketing(title)).await;
        d.message().await;
    }
    let (_, r) = app.send(marketing("m3")).await;
    expected.push((request_id(&r), vec![256]));

    // Device-level control → 102.
    let patch = admin(&app)
        .patch(
            &format!("/api/v1/apps/{}", app.info.client_id),
            &json!({"device_daily_total": 1}),
        )
        .await
        .unwrap();
    assert_eq!(patch.status, 200);
    let (_, r) = app.send(notification(&[&token], "too many")).await;
    expected.push((request_id(&r), vec![102]));

    let total = expected.iter().map(|(_, c)| c.len()).sum::<usize>();
    let statuses = receiver.wait_acknowledged(total).await;
    let mut by_request: HashMap<String, Vec<u64>> = HashMap::new();
    for s in &statuses {
        let package = s["appPackageName"].as_str().unwrap();
        let result = s["deliveryStatus"]["result"].as_u64().unwrap();
        assert_eq!(
            package,
            if result == 5 {
                ""
            } else {
                "com.example.herald.demo"
            },
            "{s}"
        );
        by_request
            .entry(s["requestId"].as_str().unwrap().to_owned())
            .or_default()
            .push(result);
    }
    for (request, codes) in &expected {
        let mut got = by_request.get(request).cloned().unwrap_or_default();
        got.sort_unstable();
        assert_eq!(&got, codes, "receipts of request {request}");
    }
    assert_eq!(statuses.len(), total, "nothing else is reported");
}

#[tokio::test]
async fn receipts_are_batched_at_most_100_per_callback() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    create_config(&app, json!({"url": receiver.url("/batch")})).await;
    let tokens = unknown_tokens(1000, 'B');
    let (_, resp) = app
        .send(json!({
            "payload": {"notification": {"category": "IM", "title": "t", "body": "b",
                "clickAction": {"actionType": 0}}},
            "target": {"token": tokens}
        }))
        .await;
    assert_eq!(resp["code"], "80000000");
    let more = unknown_tokens(50, 'C');
    app.send(notification(
        &more.iter().map(String::as_str).collect::<Vec<_>>(),
        "fifty",
    ))
    .await;

    let statuses = receiver.wait_acknowledged(1050).await;
    let calls = receiver.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.body["statuses"].as_array().unwrap().len() <= 100)
    );
    assert!(calls.len() >= 11, "{} callbacks", calls.len());
    assert!(
        calls.len() <= 12,
        "full batches are not split: {} callbacks",
        calls.len()
    );
    let distinct: HashSet<&str> = statuses
        .iter()
        .map(|s| s["token"].as_str().unwrap())
        .collect();
    assert_eq!(distinct.len(), 1050, "every token once");
    assert!(statuses.iter().all(|s| s["deliveryStatus"]["result"] == 5));
}

#[tokio::test]
async fn receipt_id_chooses_the_config_and_app_level_beats_project_level() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    create_config(&app, json!({"url": receiver.url("/project-1")})).await;
    let second = create_config(&app, json!({"url": receiver.url("/project-2")})).await;
    create_config(
        &app,
        json!({"url": receiver.url("/app"), "client_id": app.info.client_id}),
    )
    .await;
    let (mut d, token) = device_with_token(&app).await;

    // The app's own config wins for its tokens.
    app.send(notification(&[&token], "to the app")).await;
    let m = d.message().await;
    d.ack(&[&m.id]).await;
    d.shown(&m.id).await;
    // A token of no app only has project-level configs: the oldest.
    let ghost = unknown_tokens(1, 'G');
    app.send(notification(&[&ghost[0]], "ghost")).await;
    // receiptId picks one explicitly.
    let mut chosen = notification(&[&token], "chosen");
    chosen["pushOptions"] = json!({"receiptId": second["receiptId"]});
    app.send(chosen).await;
    let m = d.message().await;
    d.ack(&[&m.id]).await;
    d.shown(&m.id).await;

    receiver.wait_acknowledged(3).await;
    let mut paths: Vec<(String, String)> = receiver
        .calls()
        .iter()
        .flat_map(|c| {
            c.body["statuses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (c.path.clone(), s["token"].as_str().unwrap().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    paths.sort();
    let mut expected = vec![
        ("/app".to_owned(), token.clone()),
        ("/project-1".to_owned(), ghost[0].clone()),
        ("/project-2".to_owned(), token.clone()),
    ];
    expected.sort();
    assert_eq!(paths, expected);
}

#[tokio::test]
async fn failed_callbacks_are_retried_until_the_endpoint_answers_success() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::ServerError);
    create_config(&app, json!({"url": receiver.url("/flaky")})).await;
    let marker = create_config(&app, json!({"url": receiver.url("/marker")})).await;
    let marker = &marker["receiptId"];
    let (_, resp) = app
        .send(notification(&[&unknown_tokens(1, 'R')[0]], "retry me"))
        .await;

    receiver.wait_calls(1).await;
    // Not retried before its backoff ends (the clock has not moved).
    poke(&app);
    marker_receipt(&app, &receiver, marker).await;
    assert_eq!(
        receiver.calls_to("/flaky").len(),
        1,
        "backoff holds the retry"
    );
    let attempts = app.state.store.due_receipts(i64::MAX, 100).await.unwrap();
    assert_eq!(attempts[0].receipts[0].attempts, 1, "{attempts:?}");

    receiver.answer(Answer::WrongCode);
    app.clock.advance_secs(301);
    poke(&app);
    eventually("the second attempt", || async {
        (receiver.calls_to("/flaky").len() == 2).then_some(())
    })
    .await;
    // The dispatcher settles an attempt after the endpoint answered: the next backoff
    // must run from this clock, not from one the test has already moved on.
    eventually("the second attempt settled", || async {
        let due = app.state.store.due_receipts(i64::MAX, 100).await.unwrap();
        (due[0].receipts[0].attempts == 2).then_some(())
    })
    .await;

    receiver.answer(Answer::Success);
    app.clock.advance_secs(301);
    poke(&app);
    let calls = eventually("the third attempt", || async {
        let calls = receiver.calls_to("/flaky");
        (calls.len() == 3).then_some(calls)
    })
    .await;
    assert_eq!(calls[2].answer, Answer::Success);
    assert_eq!(calls[2].body["statuses"][0]["requestId"], resp["requestId"]);
    assert_eq!(
        calls[0].body, calls[2].body,
        "every attempt sends the same statuses"
    );
    assert_ne!(
        calls[0].callback_id, calls[2].callback_id,
        "each attempt is signed afresh"
    );

    // Acknowledged means done.
    app.clock.advance_secs(301);
    poke(&app);
    marker_receipt(&app, &receiver, marker).await;
    assert_eq!(receiver.calls_to("/flaky").len(), 3);
    // The dispatcher marks a receipt sent after the endpoint's answer reached it, so the
    // receiver may have seen the second marker a moment before the store says so.
    eventually(
        "the flaky receipt and the two markers marked sent",
        || async {
            let counts = app.state.store.receipt_counts().await.unwrap();
            (counts == [("sent".to_owned(), 3)]).then_some(())
        },
    )
    .await;
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "herald_receipts_queued_total",
        "herald_receipts_posted_total",
        "herald_receipts_retried_total",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
}

#[tokio::test]
async fn receipts_are_dropped_when_the_endpoint_fails_for_the_whole_retry_window() {
    let app = spawn_app_with(|c| c.receipt_retry_for_secs = 60).await;
    // Nothing listens here: every attempt is a refused connection.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/gone", closed.local_addr().unwrap());
    drop(closed);
    create_config(&app, json!({"url": url})).await;
    app.send(notification(&[&unknown_tokens(1, 'D')[0]], "lost"))
        .await;

    let store = app.state.store.clone();
    let attempts = || async {
        store
            .due_receipts(i64::MAX, 100)
            .await
            .unwrap()
            .first()
            .map(|d| d.receipts[0].attempts)
    };
    eventually("the first attempt failed", || async {
        (attempts().await == Some(1)).then_some(())
    })
    .await;
    app.clock.advance_secs(61);
    poke(&app);
    eventually("the receipt is dropped", || async {
        (app.state.store.receipt_counts().await.unwrap() == [("dropped".to_owned(), 1)])
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn pending_receipts_survive_a_restart_and_are_delivered_once() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::ServerError);
    create_config(&app, json!({"url": receiver.url("/restart")})).await;
    let tokens = unknown_tokens(30, 'P');
    app.send(notification(
        &tokens.iter().map(String::as_str).collect::<Vec<_>>(),
        "pending",
    ))
    .await;
    receiver.wait_calls(1).await;

    // The endpoint recovers while Herald restarts; no clock moves, yet on start the
    // pending receipts are sent at once.
    receiver.answer(Answer::Success);
    let app = app.restart().await;
    let statuses = receiver.wait_acknowledged(30).await;
    let keys: HashSet<(String, String, u64)> = statuses
        .iter()
        .map(|s| {
            (
                s["requestId"].as_str().unwrap().to_owned(),
                s["token"].as_str().unwrap().to_owned(),
                s["deliveryStatus"]["result"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys.len(), 30);

    // Acknowledged receipts are never posted again, not even after another restart: a
    // later receipt to the same endpoint is the next and only thing it sees.
    let app = app.restart().await;
    app.clock.advance_secs(3600);
    poke(&app);
    let (_, later) = app
        .send(notification(&[&unknown_tokens(1, 'L')[0]], "later"))
        .await;
    let statuses = receiver.wait_acknowledged(31).await;
    assert_eq!(statuses.len(), 31, "{statuses:?}");
    assert_eq!(statuses[30]["requestId"], later["requestId"]);
    assert_eq!(
        app.state.store.receipt_counts().await.unwrap(),
        [("sent".to_owned(), 31)]
    );
}

#[tokio::test]
async fn the_admin_api_manages_configs_and_sends_the_test_receipt() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let a = admin(&app);
    let base = format!("/api/v1/projects/{}/receipts", app.info.project_id);

    let created = create_config(
        &app,
        json!({"url": receiver.url("/test"), "username": "ops"}),
    )
    .await;
    let receipt_id = created["receiptId"].as_str().unwrap().to_owned();
    assert_eq!(created["version"], "V2");
    assert_eq!(created["project_id"], app.info.project_id.as_str());
    assert_eq!(created["client_id"], Value::Null);
    let secret = created["secret"].as_str().unwrap();
    assert_eq!(
        STANDARD.decode(secret).unwrap().len(),
        32,
        "a generated secret is Base64 of 32 bytes"
    );

    let listed = a.get(&base).await.unwrap();
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["receiptId"], receipt_id.as_str());
    assert!(listed.body[0].get("secret").is_none(), "shown only once");

    // The test receipt: one fixed status, signed like the others.
    let test = a
        .post(&format!("/api/v1/receipts/{receipt_id}/test"), &json!({}))
        .await
        .unwrap();
    assert_eq!(test.status, 200);
    assert_eq!(test.body["success"], true);
    assert_eq!(test.body["status"], 200);
    let call = &receiver.calls()[0];
    let status = &call.body["statuses"][0];
    assert_eq!(status["token"], herald_proto::receipt::TEST_TOKEN);
    assert_eq!(status["requestId"], herald_proto::receipt::TEST_REQUEST_ID);
    assert_eq!(status["deliveryStatus"]["result"], 0);
    verify_signature(
        call.callback_id.as_deref().unwrap(),
        &STANDARD.decode(secret).unwrap(),
        "ops",
    );
    receiver.answer(Answer::ServerError);
    let test = a
        .post(&format!("/api/v1/receipts/{receipt_id}/test"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        (&test.body["success"], &test.body["status"]),
        (&json!(false), &json!(500))
    );

    // Bad input.
    for (body, status) in [
        (json!({"url": "ftp://example.com/r"}), 400),
        (json!({"url": "not a url"}), 400),
        (json!({"url": "https://example.com/r", "secret": " "}), 400),
        (
            json!({"url": "https://example.com/r", "client_id": "nope"}),
            404,
        ),
    ] {
        let r = a.post(&base, &body).await.unwrap();
        assert_eq!(r.status, status, "{body}: {}", r.body);
    }
    let other = add_project_with_app(&app, "900000000000000001", "900000000000000000001").await;
    let r = a
        .post(
            &base,
            &json!({"url": "https://example.com/r", "client_id": other}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "another project's app");
    let r = a
        .post(
            "/api/v1/projects/nope/receipts",
            &json!({"url": "https://example.com/r"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);

    let deleted = a
        .delete(&format!("/api/v1/receipts/{receipt_id}"))
        .await
        .unwrap();
    assert_eq!(
        (deleted.status, &deleted.body["deleted"]),
        (200, &json!(true))
    );
    let again = a
        .delete(&format!("/api/v1/receipts/{receipt_id}"))
        .await
        .unwrap();
    assert_eq!(again.status, 404);
    let test = a
        .post(&format!("/api/v1/receipts/{receipt_id}/test"), &json!({}))
        .await
        .unwrap();
    assert_eq!(test.status, 404);

    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/projects/{project_id}/receipts",
        "/api/v1/receipts/{receipt_id}",
        "/api/v1/receipts/{receipt_id}/test",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}

#[tokio::test]
async fn https_can_be_required_for_callback_urls() {
    let app = spawn_app_with(|c| c.receipt_require_https = true).await;
    let base = format!("/api/v1/projects/{}/receipts", app.info.project_id);
    let r = admin(&app)
        .post(&base, &json!({"url": "http://127.0.0.1:9/r"}))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let r = admin(&app)
        .post(&base, &json!({"url": "https://receipts.example.com/r"}))
        .await
        .unwrap();
    assert_eq!(r.status, 201);
}

/// Push-types beyond notifications: a widget's receipt carries `formStatus`, Live View
/// rejections carry their codes, and a revoke command (not a message) has no receipt.
#[tokio::test]
async fn widgets_live_views_and_revoke_commands_in_receipts() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    create_config(&app, json!({"url": receiver.url("/r")})).await;
    admin(&app)
        .post(
            &format!(
                "/api/v1/apps/{}/rights/LIVE_VIEW_FLIGHT/grant",
                app.info.client_id
            ),
            &json!({}),
        )
        .await
        .unwrap();
    let (mut d, token) = device_with_token(&app).await;
    let push = |push_type: &'static str, payload: Value| {
        let body = json!({"payload": payload, "target": {"token": [token.clone()]}});
        let app = &app;
        async move {
            let (s, b) = app
                .send_raw(
                    &app.info.project_id,
                    Some(format!("Bearer {}", app.jwt())),
                    Some(push_type),
                    serde_json::to_vec(&body).unwrap(),
                )
                .await;
            assert_eq!(s, 200, "{b}");
            b
        }
    };
    push(
        "1",
        json!({"formId": 4711, "version": 1, "moduleName": "m", "formName": "f",
        "abilityName": "a", "formData": {"k": 1}}),
    )
    .await;
    let m = d.message().await;
    d.ack(&[&m.id]).await;
    d.shown(&m.id).await;
    let widget = receiver.wait_acknowledged(1).await;
    assert_eq!(widget[0]["pushType"], 1);
    assert_eq!(widget[0]["formStatus"]["formId"], 4711);
    assert_eq!(widget[0]["formStatus"]["result"], 0);
    assert!(widget[0].get("deliveryStatus").is_none());

    // An update of an activity never created: 155.
    push(
        "7",
        json!({"activityId": 5, "operation": 1, "event": "FLIGHT", "status": "X",
        "activityData": {"notificationData": {"type": 3}}}),
    )
    .await;
    let statuses = receiver.wait_acknowledged(2).await;
    assert_eq!(statuses[1]["pushType"], 7);
    assert_eq!(statuses[1]["deliveryStatus"]["result"], 155);

    // A revoke after delivery: the device gets a command; only the message has receipts.
    let (_, b) = app
        .send(
            json!({"payload": {"notification": {"category": "IM", "title": "t",
        "body": "b", "notifyId": 9, "clickAction": {"actionType": 0}}},
        "target": {"token": [token]}}),
        )
        .await;
    let m = d.message().await;
    d.ack(&[&m.id]).await;
    d.shown(&m.id).await;
    receiver.wait_acknowledged(3).await;
    let r = app
        .http
        .post(format!(
            "{}/v1/{}/messages:revoke",
            app.url, app.info.client_id
        ))
        .header("Authorization", format!("Bearer {}", app.jwt()))
        .header("push-type", "0")
        .json(&json!({"notifyId": 9, "token": [token]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let command = match d.next().await.unwrap() {
        herald_proto::device::ServerFrame::Revoke { id, notify_id, .. } => {
            assert_eq!(notify_id, 9);
            d.ack(&[&id]).await;
            id
        }
        other => panic!("expected a revoke frame, got {other:?}"),
    };
    // Once the command's ack is recorded, a later receipt is the next one posted.
    wait_for_state(&app, &command, "delivered").await;
    let (_, later) = app
        .send(notification(&[&unknown_tokens(1, 'L')[0]], "later"))
        .await;
    let all = receiver.wait_acknowledged(4).await;
    assert_eq!(all.len(), 4, "no receipt for the revoke command: {all:?}");
    assert_eq!(all[2]["requestId"], b["requestId"]);
    assert_eq!(all[3]["requestId"], later["requestId"]);
}

#[tokio::test]
async fn an_unreported_delivery_gets_0_after_the_wait_and_a_late_report_changes_nothing() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    create_config(&app, json!({"url": receiver.url("/r")})).await;
    let (mut d, token) = device_with_token(&app).await;
    let (_, first) = app.send(notification(&[&token], "acked only")).await;
    let m = d.message().await;
    d.ack(&[&m.id]).await;
    crate::helpers::wait_for_state(&app, &m.id, "delivered").await;
    // A later message the device reports at once: its receipt comes first, proving the
    // acked one is still waiting for its report.
    let (_, second) = app.send(notification(&[&token], "reported")).await;
    let m2 = d.message().await;
    d.shown(&m2.id).await;
    let statuses = receiver.wait_acknowledged(1).await;
    assert_eq!(statuses[0]["requestId"], second["requestId"]);

    // The wait ends: the acked message's 0 is posted, with the time of its delivery.
    let delivered_at = app.clock.now_ms();
    app.clock
        .advance_secs(app.state.config.receipt_report_wait_secs as i64 + 1);
    app.state.receipt_wake.notify_one();
    let statuses = receiver.wait_acknowledged(2).await;
    assert_eq!(statuses[1]["requestId"], first["requestId"]);
    assert_eq!(statuses[1]["deliveryStatus"]["result"], 0);
    assert_eq!(statuses[1]["deliveryStatus"]["timestamp"], delivered_at);

    // A report after the final receipt posts nothing more: a third message's receipt is
    // the next and last thing the endpoint sees.
    d.send(&ClientFrame::Report {
        id: m.id.clone(),
        status: ReportStatus::Suppressed,
        code: Some(6),
    })
    .await;
    let (_, third) = app.send(notification(&[&token], "marker")).await;
    let m3 = d.message().await;
    d.shown(&m3.id).await;
    let statuses = receiver.wait_acknowledged(3).await;
    assert_eq!(statuses[2]["requestId"], third["requestId"]);
    assert_eq!(receiver.acknowledged().len(), 3);
}

/// An endpoint that never answers (it reads the request and holds the connection), or
/// answers its headers and then one byte every 100 ms for ever: it counts connections
/// open at once and when Herald closed one.
#[derive(Clone, Default)]
struct Stuck {
    open: Arc<Mutex<usize>>,
    most_open: Arc<Mutex<usize>>,
    accepted: Arc<Mutex<usize>>,
    closed_after: Arc<Mutex<Vec<Duration>>>,
}

impl Stuck {
    /// Listens on port 0; `trickle`: answer headers, then a byte at a time.
    async fn start(trickle: bool) -> (Stuck, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stuck = Stuck::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/stuck", listener.local_addr().unwrap());
        let s = stuck.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let s = s.clone();
                *s.accepted.lock().unwrap() += 1;
                {
                    let mut open = s.open.lock().unwrap();
                    *open += 1;
                    let mut most = s.most_open.lock().unwrap();
                    *most = (*most).max(*open);
                }
                tokio::spawn(async move {
                    let since = tokio::time::Instant::now();
                    let mut buf = vec![0u8; 64 * 1024];
                    if trickle {
                        let mut head = Vec::new();
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{")
                            .await;
                        // Until Herald hangs up: a write to a closed socket fails.
                        while socket.write_all(b" ").await.is_ok() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    } else {
                        // Read (and ignore) until Herald hangs up.
                        while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                    }
                    *s.open.lock().unwrap() -= 1;
                    s.closed_after.lock().unwrap().push(since.elapsed());
                });
            }
        });
        (stuck, url)
    }
}

/// One endpoint that never answers and one that answers a byte at a time hold up no
/// other configuration: while both have batches on the wire, a healthy endpoint gets
/// each of its receipts within a second and a half; neither stuck endpoint is ever
/// sent a second batch at once (one batch per configuration in flight); and Herald
/// hangs up on both once `receipt_timeout_secs` has passed.
#[tokio::test]
async fn a_hanging_or_slow_endpoint_holds_up_no_other_configuration() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let app = spawn_app_with(|c| c.receipt_timeout_secs = TIMEOUT.as_secs()).await;
    let (hanging, hanging_url) = Stuck::start(false).await;
    let (slow, slow_url) = Stuck::start(true).await;
    let healthy = Receiver::start().await;
    let hanging_id = create_config(&app, json!({"url": hanging_url})).await["receiptId"].clone();
    let slow_id = create_config(&app, json!({"url": slow_url})).await["receiptId"].clone();
    let healthy_id =
        create_config(&app, json!({"url": healthy.url("/ok")})).await["receiptId"].clone();
    let send_to = |receipt_id: Value, tag: char, n: usize| {
        let mut body = notification(
            &unknown_tokens(n, tag)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            "x",
        );
        body["pushOptions"] = json!({"receiptId": receipt_id});
        body
    };

    let started = tokio::time::Instant::now();
    for (id, tag) in [(&hanging_id, 'H'), (&slow_id, 'S')] {
        let (status, resp) = app.send(send_to(id.clone(), tag, 3)).await;
        assert_eq!((status, resp["code"].as_str()), (200, Some("80000000")));
    }
    for _ in 0..500 {
        if *hanging.accepted.lock().unwrap() > 0 && *slow.accepted.lock().unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(*hanging.accepted.lock().unwrap() > 0 && *slow.accepted.lock().unwrap() > 0);

    // While both are stuck: more receipts for them, and three rounds for the healthy one.
    let mut healthy_seen = 0;
    for (round, tag) in ['a', 'b', 'c'].into_iter().enumerate() {
        app.send(send_to(hanging_id.clone(), 'H', 150)).await;
        app.send(send_to(slow_id.clone(), 'S', 150)).await;
        let sent = tokio::time::Instant::now();
        let (status, resp) = app.send(send_to(healthy_id.clone(), tag, 2)).await;
        assert_eq!((status, resp["code"].as_str()), (200, Some("80000000")));
        healthy_seen += 2;
        healthy.wait_acknowledged(healthy_seen).await;
        let took = sent.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "round {round}: the healthy endpoint's receipts took {took:?}"
        );
    }
    assert!(
        started.elapsed() < TIMEOUT,
        "the rounds ran while both stuck batches were on the wire"
    );
    assert_eq!(*hanging.most_open.lock().unwrap(), 1, "one batch in flight");
    assert_eq!(*slow.most_open.lock().unwrap(), 1, "one batch in flight");

    // Herald gives up on each stuck batch after the timeout (with a little slack).
    for (name, stuck) in [("hanging", &hanging), ("slow", &slow)] {
        for _ in 0..800 {
            if !stuck.closed_after.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let closed = stuck.closed_after.lock().unwrap().clone();
        assert!(
            closed
                .first()
                .is_some_and(|d| *d < TIMEOUT + Duration::from_secs(2)),
            "{name}: connections closed after {closed:?}"
        );
    }
    assert_eq!(*hanging.most_open.lock().unwrap(), 1);
    assert_eq!(*slow.most_open.lock().unwrap(), 1);
    // Their receipts are still pending, for a retry after the backoff.
    let counts: HashMap<String, u64> = app
        .state
        .store
        .receipt_counts()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(counts.get("pending"), Some(&906), "{counts:?}");
    assert_eq!(counts.get("sent"), Some(&6), "{counts:?}");
}
