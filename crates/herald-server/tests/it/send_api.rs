//! The send API's wire contract: every business code, pinned by snapshots.

use insta::assert_json_snapshot;
use serde_json::json;

use crate::helpers::{RawDevice, add_project_with_app, device_with_token, notification, spawn_app};

/// Replace token strings inside `msg` (they are random per run).
fn redact_tokens(mut body: serde_json::Value, tokens: &[&str]) -> serde_json::Value {
    if let Some(msg) = body["msg"].as_str() {
        let mut msg = msg.to_owned();
        for t in tokens {
            msg = msg.replace(t, "[token]");
        }
        body["msg"] = json!(msg);
    }
    body
}

macro_rules! snapshot {
    ($name:expr, $status:expr, $body:expr) => {
        assert_json_snapshot!($name, json!({"status": $status, "body": $body}), {
            ".body.requestId" => "[requestId]"
        });
    };
}

#[tokio::test]
async fn success_is_80000000_with_a_string_code() {
    let app = spawn_app().await;
    let (mut d, token) = device_with_token(&app).await;
    let (status, body) = app.send(notification(&[&token], "hi")).await;
    assert!(body["code"].is_string());
    assert!(body["requestId"].as_str().is_some_and(|r| !r.is_empty()));
    // What the server did: the message is stored, and the device gets it.
    let events = crate::helpers::events_of_request(&app, body["requestId"].as_str().unwrap()).await;
    assert_eq!(
        events.first(),
        Some(&("queued".to_owned(), None)),
        "{events:?}"
    );
    let m = d.message().await;
    assert_eq!(m.request_id, body["requestId"].as_str().unwrap());
    assert_eq!(m.payload["notification"]["title"], "hi");
    snapshot!("80000000_success", status, body);
}

/// The store failing under a send (here: closed) is `81000001` with Push Kit's message
/// only; the cause is logged, never answered.
#[tokio::test]
async fn a_store_failure_is_81000001_and_names_no_cause() {
    let app = spawn_app().await;
    let (_d, token) = device_with_token(&app).await;
    app.state.store.close().await;
    let (status, body) = app.send(notification(&[&token], "hi")).await;
    snapshot!("81000001_store_failed", status, body);
}

#[tokio::test]
async fn partial_success_lists_bad_tokens_in_msg() {
    let app = spawn_app().await;
    let (_d, token) = device_with_token(&app).await;
    let (status, body) = app.send(notification(&[&token, "bad token"], "hi")).await;
    let msg: serde_json::Value =
        serde_json::from_str(body["msg"].as_str().unwrap()).expect("msg is serialised JSON");
    assert_eq!(msg["success"], 1);
    assert_eq!(msg["failure"], 1);
    snapshot!("80100000_partial_success", status, body);
}

#[tokio::test]
async fn all_tokens_invalid_is_80300007() {
    let app = spawn_app().await;
    let (status, body) = app.send(notification(&["short", "also bad"], "hi")).await;
    snapshot!("80300007_all_tokens_invalid", status, body);
}

#[tokio::test]
async fn another_projects_token_is_no_right() {
    let app = spawn_app().await;
    let other = add_project_with_app(&app, "222222222222222222", "3333333333333333333").await;
    let mut d = RawDevice::connect(&app).await;
    d.hello().await;
    let foreign = d.token(&other).await;
    let (_d2, own) = device_with_token(&app).await;

    let (status, body) = app.send(notification(&[&foreign], "hi")).await;
    snapshot!(
        "80300007_no_right",
        status,
        redact_tokens(body, &[&foreign])
    );
    let (status, body) = app.send(notification(&[&own, &foreign], "hi")).await;
    assert_eq!((status, body["code"].as_str()), (200, Some("80100000")));
}

#[tokio::test]
async fn parameter_and_payload_errors() {
    let app = spawn_app().await;
    let (_d, token) = device_with_token(&app).await;
    let auth = Some(format!("Bearer {}", app.jwt()));
    let pid = app.info.project_id.clone();

    let (s, b) = app
        .send_raw(&pid, auth.clone(), Some("0"), "{not json")
        .await;
    snapshot!("80100001_malformed_json", s, b);

    let (s, b) = app
        .send_raw(
            &pid,
            auth.clone(),
            Some("0"),
            r#"{"payload":{},"target":{"token":"x"}}"#,
        )
        .await;
    snapshot!("80100001_wrong_type", s, b);

    let (s, b) = app
        .send_raw(
            &pid,
            auth.clone(),
            None,
            serde_json::to_vec(&notification(&[&token], "t")).unwrap(),
        )
        .await;
    snapshot!("80100003_missing_push_type", s, b);

    let (s, b) = app
        .send_raw(
            &pid,
            auth.clone(),
            Some("42"),
            serde_json::to_vec(&notification(&[&token], "t")).unwrap(),
        )
        .await;
    snapshot!("80100003_unknown_push_type", s, b);

    let mut body = notification(&[&token], "t");
    body["payload"]["notification"]["clickAction"] = json!({"actionType": 9});
    let (s, b) = app.send(body).await;
    snapshot!("80100003_bad_click_action", s, b);

    let mut body = notification(&[&token], "t");
    body["payload"]["notification"]["category"] = json!("NOT_A_CATEGORY");
    let (s, b) = app.send(body).await;
    snapshot!("80100003_unknown_category", s, b);

    let mut body = notification(&[&token], "t");
    body["pushOptions"] = json!({"ttl": 1_296_001});
    let (s, b) = app.send(body).await;
    snapshot!("80100004_ttl_too_long", s, b);

    let body = notification(&[&token], &"x".repeat(5000));
    let (s, b) = app.send(body).await;
    snapshot!("80300008_too_long", s, b);

    let many: Vec<String> = (0..1001).map(|_| token.clone()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (s, b) = app.send(notification(&many, "t")).await;
    snapshot!("80300010_too_many_tokens", s, b);

    let (s, b) = app.send(notification(&[], "t")).await;
    snapshot!("80300010_no_tokens", s, b);

    let eleven: Vec<&str> = (0..11).map(|_| token.as_str()).collect();
    let mut body = notification(&eleven, "t");
    body["pushOptions"] = json!({"testMessage": true});
    let (s, b) = app.send(body).await;
    snapshot!("80300030_too_many_test_tokens", s, b);

    let mut body = notification(&[&token], "t");
    body["payload"]["notification"]["category"] = json!("PLAY_VOICE");
    let (s, b) = app.send(body).await;
    snapshot!(
        "80300007_play_voice_on_push_type_0",
        s,
        redact_tokens(b, &[&token])
    );
}

#[tokio::test]
async fn a_thousand_tokens_are_accepted_and_tokens_do_not_count_towards_4096() {
    let app = spawn_app().await;
    let (_d, token) = device_with_token(&app).await;
    let mut tokens = vec![token];
    // 999 well-formed tokens nobody holds: accepted (their fate is receipt 5).
    tokens.extend((0..999).map(|i| format!("{i:0>120}")));
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let (status, body) = app.send(notification(&tokens, "bulk")).await;
    assert_eq!((status, body["code"].as_str()), (200, Some("80000000")));
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let app = spawn_app().await;
    let r = app
        .http
        .post(format!("{}/v2/x/messages:send", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
