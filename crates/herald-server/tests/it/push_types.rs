//! Every push type and revoke ("Every push type, and revoke"), through the real API and a
//! real device: the SDK device (`Phone`) for what a device does, raw frames and the
//! store's events for what the server decides.

use herald_client::admin::AdminClient;
use herald_client::device::{PushKind, RunState, SdkEvent};
use serde_json::{Value, json};

use crate::helpers::{
    RawDevice, TestApp, add_project_with_app, device_with_token, events_for_token, spawn_app,
    spawn_app_with,
};
use crate::sdk::{Phone, phone};

async fn grant(app: &TestApp, right: &str) {
    let r = AdminClient::new(&app.url, &app.info.admin_token)
        .unwrap()
        .post(
            &format!("/api/v1/apps/{}/rights/{right}/grant", app.info.client_id),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

/// POST a send of `push_type` with `payload` (and `options`) to `tokens`.
async fn push(
    app: &TestApp,
    push_type: &str,
    payload: Value,
    options: Value,
    tokens: &[&str],
) -> (u16, Value) {
    let mut body = json!({"payload": payload, "target": {"token": tokens}});
    if !options.is_null() {
        body["pushOptions"] = options;
    }
    app.send_raw(
        &app.info.project_id,
        Some(format!("Bearer {}", app.jwt())),
        Some(push_type),
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

async fn accepted(app: &TestApp, push_type: &str, payload: Value, token: &str) -> String {
    let (s, b) = push(app, push_type, payload, Value::Null, &[token]).await;
    assert_eq!((s, b["code"].as_str()), (200, Some("80000000")), "{b}");
    b["requestId"].as_str().unwrap().to_owned()
}

/// The receipt code the request's message to `token` was dropped with, if it was.
async fn dropped(app: &TestApp, request_id: &str, token: &str) -> Option<u32> {
    events_for_token(app, request_id, token)
        .await
        .into_iter()
        .find(|(outcome, _)| outcome == "dropped")
        .and_then(|(_, code)| code)
}

fn failure_reason(body: &Value) -> String {
    let msg: Value = serde_json::from_str(body["msg"].as_str().unwrap()).unwrap();
    msg["illegalTokens"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone()
}

async fn token_of(p: &Phone) -> String {
    p.app.get_token().await.unwrap()
}

fn form(version: i64) -> Value {
    json!({"formId": 42, "version": version, "moduleName": "entry", "formName": "widget",
        "abilityName": "EntryFormAbility", "formData": {"temperature": version}})
}

#[tokio::test]
async fn widgets_apply_newer_versions_only_and_have_a_daily_limit() {
    let app = spawn_app_with(|c| c.widget_daily_limit = 3).await;
    let mut p = phone(&app).await;
    let token = token_of(&p).await;
    let form_event = |e: &SdkEvent| match e {
        SdkEvent::Form {
            version, form_data, ..
        } => Some((*version, form_data.clone())),
        SdkEvent::Suppressed { message_id, .. } => Some((u32::MAX, json!(message_id))),
        _ => None,
    };
    accepted(&app, "1", form(5), &token).await;
    assert_eq!(p.wait_for(form_event).await, (5, json!({"temperature": 5})));
    accepted(&app, "1", form(3), &token).await;
    let (refused, id) = p.wait_for(form_event).await;
    assert_eq!(refused, u32::MAX, "an older version is not applied");
    // The push report counts it as not shown (151), not as shown.
    let id = id.as_str().unwrap().to_owned();
    crate::helpers::wait_for_state(&app, &id, "suppressed").await;
    assert_eq!(
        app.state
            .store
            .events_for(&id)
            .await
            .unwrap()
            .last()
            .map(|e| e.outcome),
        Some(herald_core::Outcome::Suppressed(herald_core::ReceiptCode(
            151
        )))
    );
    accepted(&app, "1", form(0), &token).await;
    assert_eq!(p.wait_for(form_event).await.0, 0, "version 0 resets");
    let request = accepted(&app, "1", form(9), &token).await;
    assert_eq!(
        dropped(&app, &request, &token).await,
        Some(262),
        "the 4th refresh of the day"
    );

    let (s, b) = push(&app, "1", form(10), Value::Null, &[&token, &token]).await;
    assert_eq!(
        (s, b["code"].as_str(), b["msg"].as_str()),
        (
            400,
            Some("80300010"),
            Some("token count should within 1 and 1.")
        )
    );
}

#[tokio::test]
async fn text_to_speech_needs_its_right_and_play_voice() {
    let app = spawn_app().await;
    let mut p = phone(&app).await;
    p.enable().await;
    let token = token_of(&p).await;
    let tts = json!({"extraData": "收款100元", "notification": {"category": "PLAY_VOICE",
        "title": "Payment", "body": "100", "clickAction": {"actionType": 0}}});
    let (s, b) = push(&app, "2", tts.clone(), Value::Null, &[&token]).await;
    assert_eq!((s, failure_reason(&b).as_str()), (400, "noPushTypeRight"));
    grant(&app, "PLAY_VOICE").await;
    // In the foreground the app's extension gets it (receiveMessage('IM')).
    p.app.set_run_state(RunState::Foreground);
    accepted(&app, "2", tts.clone(), &token).await;
    let (kind, data) = p
        .wait_for(|e| match e {
            SdkEvent::Received { kind, payload, .. } => Some((*kind, payload.data.clone())),
            _ => None,
        })
        .await;
    assert_eq!(kind, PushKind::Im);
    assert!(data.contains("收款100元"));
    // In the background it is shown, alerting without a ringtone.
    p.app.set_run_state(RunState::Background);
    accepted(&app, "2", tts, &token).await;
    let (_, _, n) = p.notification().await;
    assert_eq!(n["category"], "PLAY_VOICE");
    let bad = json!({"extraData": "x", "notification": {"category": "IM", "title": "t", "body": "b",
        "clickAction": {"actionType": 0}}});
    let (s, b) = push(&app, "2", bad, Value::Null, &[&token]).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("80100003")));
}

#[tokio::test]
async fn background_messages_reach_a_foreground_app_or_wait_newest_only() {
    let app = spawn_app().await;
    let mut p = phone(&app).await;
    let token = token_of(&p).await;
    let received = |e: &SdkEvent| match e {
        SdkEvent::Received { kind, payload, .. } => Some((*kind, payload.data.clone())),
        _ => None,
    };
    p.app.set_run_state(RunState::Foreground);
    accepted(&app, "6", json!({"extraData": "now"}), &token).await;
    let (kind, data) = p.wait_for(received).await;
    assert_eq!(kind, PushKind::Background);
    assert!(data.contains("\"now\""));

    p.app.set_run_state(RunState::Background);
    for d in ["old", "newest"] {
        accepted(&app, "6", json!({"extraData": d}), &token).await;
    }
    // Both reach the device and are kept, handed to nobody; then the app comes back, and
    // only the newest is handed over.
    cached_not_received(&mut p).await;
    cached_not_received(&mut p).await;
    p.app.set_run_state(RunState::Foreground);
    let (kind, data) = p.wait_for(received).await;
    assert_eq!(kind, PushKind::Background);
    assert!(data.contains("newest"), "{data}");

    // backgroundMode 1 without IM_BACKGROUND: sent as mode 0, so the device in the
    // background caches it rather than handing it to the app.
    p.app.set_run_state(RunState::Background);
    let (s, b) = push(
        &app,
        "6",
        json!({"extraData": "im"}),
        json!({"backgroundMode": 1}),
        &[&token],
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (200, Some("80000000")), "{b}");
    let request = b["requestId"].as_str().unwrap();
    let stored = events_for_token(&app, request, &token).await;
    assert_eq!(
        stored.first().map(|(o, _)| o.as_str()),
        Some("queued"),
        "{stored:?}"
    );
    cached_not_received(&mut p).await;
    p.app.set_run_state(RunState::Foreground);
    let (kind, data) = p.wait_for(received).await;
    assert_eq!(kind, PushKind::Background, "the cached message, as mode 0");
    assert!(data.contains("\"im\""), "{data}");
    p.app.set_run_state(RunState::Background);
    // With the right: it reaches the app in the background, at most 2 per hour.
    grant(&app, "IM_BACKGROUND").await;
    for i in 0..2 {
        push(
            &app,
            "6",
            json!({"extraData": format!("im{i}")}),
            json!({"backgroundMode": 1}),
            &[&token],
        )
        .await;
        let (kind, _) = p.wait_for(received).await;
        assert_eq!(kind, PushKind::Im);
    }
    let (_, b) = push(
        &app,
        "6",
        json!({"extraData": "im3"}),
        json!({"backgroundMode": 1}),
        &[&token],
    )
    .await;
    assert_eq!(
        dropped(&app, b["requestId"].as_str().unwrap(), &token).await,
        Some(256)
    );
}

/// Waits until the device keeps a background message for later (`Cached`), failing if
/// one reaches the app (`receiveMessage`) instead.
async fn cached_not_received(p: &mut Phone) -> String {
    p.wait_for(|e| match e {
        SdkEvent::Cached { message_id, .. } => Some(message_id.clone()),
        SdkEvent::Received { kind, payload, .. } => {
            panic!(
                "handed to the app instead of kept: {kind:?} {}",
                payload.data
            )
        }
        _ => None,
    })
    .await
}

fn live(op: u8, event: &str, status: Option<&str>, version: Option<u32>) -> Value {
    let mut v = json!({"activityId": 7, "operation": op, "event": event,
        "activityData": {"notificationData": {"type": 3, "contentTitle": format!("op{op}")}}});
    if let Some(s) = status {
        v["status"] = json!(s);
    }
    if let Some(n) = version {
        v["version"] = json!(n);
    }
    v
}

#[tokio::test]
async fn live_views_follow_push_kits_rules() {
    let app = spawn_app().await;
    let mut p = phone(&app).await;
    let token = token_of(&p).await;
    let (s, b) = push(
        &app,
        "7",
        live(0, "TAXI", Some("CALLING"), Some(1)),
        Value::Null,
        &[&token],
    )
    .await;
    assert_eq!(
        (s, failure_reason(&b).as_str()),
        (400, "noRightToSendThisLiveNotificationEvent")
    );
    grant(&app, "LIVE_VIEW_TAXI").await;
    let (s, b) = push(
        &app,
        "7",
        live(0, "DELIVERY", Some("X"), None),
        Value::Null,
        &[&token],
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("80100003")),
        "create only FLIGHT/TAXI/TRAIN"
    );

    let live_event = |e: &SdkEvent| match e {
        SdkEvent::LiveView {
            operation, state, ..
        } => Some((*operation, state.clone())),
        _ => None,
    };
    accepted(&app, "7", live(0, "TAXI", Some("CALLING"), Some(1)), &token).await;
    let (op, state) = p.wait_for(live_event).await;
    assert_eq!((op, state.status.as_deref()), (0, Some("CALLING")));

    let r = accepted(&app, "7", live(0, "TAXI", Some("CALLING"), Some(2)), &token).await;
    assert_eq!(
        dropped(&app, &r, &token).await,
        Some(269),
        "duplicate create"
    );
    let r = accepted(
        &app,
        "7",
        live(1, "TAXI", Some("ARRIVING"), Some(1)),
        &token,
    )
    .await;
    assert_eq!(
        dropped(&app, &r, &token).await,
        Some(156),
        "version not increasing"
    );
    let r = accepted(&app, "7", live(1, "TAXI", None, Some(3)), &token).await;
    assert_eq!(
        dropped(&app, &r, &token).await,
        Some(268),
        "REST-created needs status"
    );

    accepted(
        &app,
        "7",
        live(1, "TAXI", Some("DRIVER_ON_THE_WAY"), Some(4)),
        &token,
    )
    .await;
    let (op, state) = p.wait_for(live_event).await;
    assert_eq!(
        (op, state.status.as_deref()),
        (1, Some("DRIVER_ON_THE_WAY"))
    );
    assert_eq!(
        state.activity_data["notificationData"]["contentTitle"],
        "op1"
    );
    accepted(
        &app,
        "7",
        live(2, "TAXI", Some("COMPLETED"), Some(5)),
        &token,
    )
    .await;
    let (_, state) = p.wait_for(live_event).await;
    assert!(state.ended);

    // An update after the end: 155, then the id is blocked (265).
    let r = accepted(&app, "7", live(1, "TAXI", Some("X"), Some(6)), &token).await;
    assert_eq!(dropped(&app, &r, &token).await, Some(155));
    let r = accepted(&app, "7", live(1, "TAXI", Some("X"), Some(7)), &token).await;
    assert_eq!(dropped(&app, &r, &token).await, Some(265));
    app.clock.advance_secs(24 * 3600 + 1);
    let r = accepted(&app, "7", live(1, "TAXI", Some("X"), Some(8)), &token).await;
    assert_eq!(
        dropped(&app, &r, &token).await,
        Some(155),
        "unblocked a day later, still unknown"
    );
}

#[tokio::test]
async fn live_view_updates_are_rate_limited_per_activity() {
    let app = spawn_app().await;
    grant(&app, "LIVE_VIEW_FLIGHT").await;
    let (_d, token) = device_with_token(&app).await;
    let mut flight = live(0, "FLIGHT", Some("DEPART"), Some(0));
    flight["activityId"] = json!(99);
    accepted(&app, "7", flight.clone(), &token).await;
    let mut last = String::new();
    for v in 1..=10 {
        let mut u = live(1, "FLIGHT", Some("BOARDING"), Some(v));
        u["activityId"] = json!(99);
        last = accepted(&app, "7", u, &token).await;
    }
    assert_eq!(
        dropped(&app, &last, &token).await,
        Some(256),
        "the 11th operation in 5 minutes"
    );
    app.clock.advance_secs(301);
    let mut u = live(1, "FLIGHT", Some("BOARDING"), Some(20));
    u["activityId"] = json!(99);
    let r = accepted(&app, "7", u, &token).await;
    assert_eq!(dropped(&app, &r, &token).await, None);
}

#[tokio::test]
async fn voip_calls_need_their_right_ring_first_and_never_late() {
    let app = spawn_app().await;
    let (d, token) = device_with_token(&app).await;
    let cred = d.credential.clone();
    drop(d);
    let call = json!({"extraData": "{\"scene\": \"voice\"}"});
    let (s, b) = push(&app, "10", call.clone(), json!({"ttl": 30}), &[&token]).await;
    assert_eq!((s, failure_reason(&b).as_str()), (400, "noPushTypeRight"));
    grant(&app, "VOIP_CALL").await;
    // Offline: three notifications, then a call.
    for i in 0..3 {
        app.send(crate::helpers::notification(&[&token], &format!("n{i}")))
            .await;
    }
    push(&app, "10", call.clone(), json!({"ttl": 30}), &[&token]).await;
    let mut d = RawDevice::connect(&app).await;
    d.credential = cred.clone();
    d.hello().await;
    let first = d.message().await;
    assert_eq!(
        first.push_type, 10,
        "the call rings before older notifications"
    );
    let ids: Vec<String> = vec![first.id.clone()];
    for _ in 0..3 {
        assert_eq!(d.message().await.push_type, 0);
    }
    d.ack(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    drop(d);

    // A call whose TTL ended before the device came back never rings.
    push(&app, "10", call, json!({"ttl": 30}), &[&token]).await;
    app.clock.advance_secs(31);
    let mut d = RawDevice::connect(&app).await;
    d.credential = cred;
    d.hello().await;
    // The backlog: the three unacked notifications again, and no call.
    let backlog = d.frames_before_marker(&app).await;
    let types: Vec<u8> = backlog
        .iter()
        .map(|f| match f {
            herald_proto::device::ServerFrame::Message(m) => m.push_type,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(types, [0, 0, 0], "no late call");
}

#[tokio::test]
async fn voip_calls_reach_the_app_as_voip() {
    let app = spawn_app().await;
    grant(&app, "VOIP_CALL").await;
    let mut p = phone(&app).await;
    let token = token_of(&p).await;
    push(
        &app,
        "10",
        json!({"extraData": "{\"callId\":\"c1\"}"}),
        json!({"ttl": 60}),
        &[&token],
    )
    .await;
    let kind = p
        .wait_for(|e| match e {
            SdkEvent::Received { kind, .. } => Some(*kind),
            _ => None,
        })
        .await;
    assert_eq!(kind, PushKind::VoIp);
}

#[tokio::test]
async fn badges_add_and_set() {
    let app = spawn_app().await; // holds IM
    let mut p = phone(&app).await;
    let token = token_of(&p).await;
    let badge = |b: Value| json!({"notification": {"badge": b}});
    let count = |e: &SdkEvent| match e {
        SdkEvent::Badge { count, .. } => Some(*count),
        _ => None,
    };
    accepted(&app, "0", badge(json!({"addNum": 3})), &token).await;
    assert_eq!(p.wait_for(count).await, 3);
    accepted(&app, "0", badge(json!({"addNum": 2})), &token).await;
    assert_eq!(p.wait_for(count).await, 5);
    accepted(&app, "0", badge(json!({"setNum": 1, "addNum": 50})), &token).await;
    assert_eq!(p.wait_for(count).await, 1, "setNum wins");
    let (s, b) = push(
        &app,
        "0",
        badge(json!({"addNum": 0})),
        Value::Null,
        &[&token],
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("80100003")));
}

async fn revoke(app: &TestApp, client_id: &str, push_type: &str, body: Value) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}/v1/{client_id}/messages:revoke", app.url))
        .header("Authorization", format!("Bearer {}", app.jwt()))
        .header("push-type", push_type)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn shown(notify_id: i64, title: &str) -> Value {
    json!({"notification": {"category": "IM", "title": title, "body": "b", "notifyId": notify_id,
        "clickAction": {"actionType": 0}}})
}

#[tokio::test]
async fn revoke_before_delivery_after_display_and_after_tap() {
    let app = spawn_app().await;
    let client = app.info.client_id.clone();

    // Before delivery: the device is offline; the message never arrives.
    let (d, token) = device_with_token(&app).await;
    let cred = d.credential.clone();
    drop(d);
    let request = accepted(&app, "0", shown(77, "to withdraw"), &token).await;
    let (s, b) = revoke(
        &app,
        &client,
        "0",
        json!({"notifyId": 77, "token": [token]}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (200, Some("80000000")), "{b}");
    assert!(
        events_for_token(&app, &request, &token)
            .await
            .iter()
            .any(|(o, _)| o == "revoked")
    );
    let mut d = RawDevice::connect(&app).await;
    d.credential = cred;
    d.hello().await;
    match d.next().await.unwrap() {
        herald_proto::device::ServerFrame::Revoke { notify_id, .. } => assert_eq!(notify_id, 77),
        other => panic!("expected only the revoke command, got {other:?}"),
    }
    assert_eq!(
        d.frames_before_marker(&app).await,
        [],
        "the revoked message is never delivered"
    );
    drop(d);

    // After display: the notification leaves the screen.
    let mut p = phone(&app).await;
    p.enable().await;
    let token = token_of(&p).await;
    accepted(&app, "0", shown(88, "shown then withdrawn"), &token).await;
    p.notification().await;
    revoke(
        &app,
        &client,
        "0",
        json!({"notifyId": 88, "token": [token]}),
    )
    .await;
    let revoked = p
        .wait_for(|e| match e {
            SdkEvent::Revoked { notify_id, .. } => Some(*notify_id),
            _ => None,
        })
        .await;
    assert_eq!(revoked, 88);
    assert!(
        p.app
            .notifications()
            .iter()
            .all(|n| n.notify_id != Some(88))
    );

    // After a tap: unaffected (nothing left to remove).
    accepted(&app, "0", shown(99, "tapped"), &token).await;
    p.notification().await;
    p.app.click(99).await.unwrap();
    revoke(
        &app,
        &client,
        "0",
        json!({"notifyId": 99, "token": [token]}),
    )
    .await;
    accepted(&app, "0", shown(100, "marker"), &token).await;
    let next = p
        .wait_for(|e| match e {
            SdkEvent::Revoked { notify_id, .. } => Some(*notify_id as i64),
            SdkEvent::Notification { shown, .. } => shown.notify_id,
            _ => None,
        })
        .await;
    assert_eq!(next, 100, "no revoked event for a tapped notification");
}

#[tokio::test]
async fn revoke_codes() {
    let app = spawn_app().await;
    let client = app.info.client_id.clone();
    let (_d, token) = device_with_token(&app).await;
    let other_app = add_project_with_app(&app, "444444444444444444", "5555555555555555555").await;
    let mut d2 = RawDevice::connect(&app).await;
    d2.hello().await;
    let foreign = d2.token(&other_app).await;

    let (s, b) = revoke(&app, &client, "1", json!({"notifyId": 1, "token": [token]})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("80100003")),
        "push-type 1 cannot be revoked"
    );
    let (s, b) = revoke(&app, &client, "0", json!({"token": [token]})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("80100003")),
        "notifyId is mandatory"
    );
    let (s, b) = revoke(&app, &client, "0", json!({"notifyId": 1, "token": []})).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("80300010")));
    let (s, b) = revoke(
        &app,
        &client,
        "0",
        json!({"notifyId": 1, "token": [token, foreign]}),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("80300017")),
        "tokens of two apps"
    );
    let (s, b) = revoke(
        &app,
        &client,
        "0",
        json!({"notifyId": 1, "token": [foreign]}),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("80300028")),
        "another app's token"
    );
    let (s, b) = revoke(
        &app,
        &other_app,
        "0",
        json!({"notifyId": 1, "token": [foreign]}),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("80300032")),
        "an app of another project"
    );
    // A well-formed token Herald does not know is accepted, as in a send; a malformed
    // one fails with tokenFormatError.
    let unknown = "U".repeat(120);
    let (s, b) = revoke(
        &app,
        &client,
        "0",
        json!({"notifyId": 1, "token": [token, unknown]}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (200, Some("80000000")));
    let (s, b) = revoke(
        &app,
        &client,
        "0",
        json!({"notifyId": 1, "token": [unknown]}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (200, Some("80000000")));
    let (s, b) = revoke(
        &app,
        &client,
        "0",
        json!({"notifyId": 1, "token": [token, "not a token"]}),
    )
    .await;
    assert_eq!(
        (s, &b["code"], &b["msg"]),
        (
            200,
            &json!("80100020"),
            &json!(
                r#"{"illegalTokens":{"tokenFormatError":["not a token"]},"success":1,"failure":1}"#
            )
        )
    );
    let (s, b) = revoke(
        &app,
        &client,
        "0",
        json!({"notifyId": 1, "token": ["bad", "worse"]}),
    )
    .await;
    assert_eq!(
        (s, &b["code"], &b["msg"]),
        (
            400,
            &json!("80300007"),
            &json!(r#"{"failure":2,"illegalTokens":{"tokenFormatError":["bad","worse"]}}"#)
        )
    );
    let (s, b) = app
        .http
        .post(format!("{}/v1/{client}/messages:revoke", app.url))
        .header("push-type", "0")
        .json(&json!({"notifyId": 1, "token": [token]}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(s, 401);
    let b: Value = b.json().await.unwrap();
    assert_eq!(b["code"], "80200001");
}
