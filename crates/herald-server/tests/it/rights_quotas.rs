//! Scenario rights, categories and quotas (issue "Scenario rights…"), through the real API,
//! the admin API and a real device connection.

use herald_client::admin::AdminClient;
use herald_core::Clock;
use herald_proto::device::Reminder;
use serde_json::{Value, json};

use crate::helpers::{
    RawDevice, TestApp, device_with_token, spawn_app_with, spawn_bare_app as spawn_app,
};

fn admin(app: &TestApp) -> AdminClient {
    AdminClient::new(&app.url, &app.info.admin_token).unwrap()
}

async fn right(app: &TestApp, name: &str, action: &str) -> Value {
    let r = admin(app)
        .post(
            &format!("/api/v1/apps/{}/rights/{name}/{action}", app.info.client_id),
            &json!({"reason": "chat messages between users"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn patch_app(app: &TestApp, patch: Value) -> Value {
    let r = admin(app)
        .patch(&format!("/api/v1/apps/{}", app.info.client_id), &patch)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn notification(token: &str, category: &str, title: &str) -> Value {
    json!({
        "payload": {"notification": {"category": category, "title": title, "body": "b",
            "sound": "ring.mp3", "clickAction": {"actionType": 0}}},
        "target": {"token": [token]}
    })
}

/// The receipt code of the request's `dropped` event, if it was dropped.
async fn dropped_code(app: &TestApp, request_id: &str) -> Option<u32> {
    crate::helpers::events_of_request(app, request_id)
        .await
        .into_iter()
        .find(|(outcome, _)| outcome == "dropped")
        .and_then(|(_, code)| code)
}

#[tokio::test]
async fn ungranted_categories_are_downgraded_and_granting_changes_the_next_message() {
    let app = spawn_app().await;
    // Room for every downgraded message below.
    patch_app(&app, json!({"marketing_per_day": 10})).await;
    let (mut d, token) = device_with_token(&app).await;

    let (s, b) = app.send(notification(&token, "IM", "before grant")).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (200, Some("80000000")),
        "downgrade is silent"
    );
    let m = d.message().await;
    assert_eq!(m.payload["notification"]["category"], "MARKETING");
    assert_eq!(m.reminder, Some(Reminder::Silent));
    assert!(
        m.payload["notification"].get("sound").is_none(),
        "MARKETING ignores sound"
    );

    right(&app, "IM", "request").await;
    let (s, _) = app.send(notification(&token, "IM", "requested only")).await;
    assert_eq!(s, 200);
    assert_eq!(
        d.message().await.payload["notification"]["category"],
        "MARKETING"
    );

    let granted = right(&app, "IM", "grant").await;
    assert_eq!(granted["state"], "granted");
    app.send(notification(&token, "IM", "after grant")).await;
    let m = d.message().await;
    assert_eq!(m.payload["notification"]["category"], "IM");
    assert_eq!(m.reminder, Some(Reminder::Alert));
    assert_eq!(m.payload["notification"]["sound"], "ring.mp3");

    // Another S&C category is still downgraded.
    app.send(notification(&token, "WORK", "work")).await;
    assert_eq!(
        d.message().await.payload["notification"]["category"],
        "MARKETING"
    );

    right(&app, "IM", "revoke").await;
    app.send(notification(&token, "IM", "after revoke")).await;
    assert_eq!(
        d.message().await.payload["notification"]["category"],
        "MARKETING"
    );
}

#[tokio::test]
async fn the_third_marketing_message_of_the_day_is_dropped_and_the_next_day_is_fresh() {
    let app = spawn_app().await;
    let (mut d, token) = device_with_token(&app).await;
    for i in 0..2 {
        app.send(notification(&token, "MARKETING", &format!("m{i}")))
            .await;
        d.message().await;
    }
    let (s, b) = app.send(notification(&token, "MARKETING", "third")).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (200, Some("80000000")),
        "quota drops are receipts, not errors"
    );
    assert_eq!(
        d.frames_before_marker(&app).await,
        [],
        "the device never sees a dropped message"
    );
    assert_eq!(
        dropped_code(&app, b["requestId"].as_str().unwrap()).await,
        Some(256)
    );

    app.clock.advance_secs(86_400);
    app.send(notification(&token, "MARKETING", "next day"))
        .await;
    assert_eq!(
        d.message().await.payload["notification"]["title"],
        "next day"
    );
}

#[tokio::test]
async fn news_apps_get_five_marketing_messages() {
    let app = spawn_app().await;
    let body = patch_app(&app, json!({"app_category": "news"})).await;
    assert_eq!(body["limits"]["marketing_per_day"], 5);
    let (mut d, token) = device_with_token(&app).await;
    for i in 0..5 {
        app.send(notification(&token, "MARKETING", &format!("n{i}")))
            .await;
        assert_eq!(
            d.message().await.payload["notification"]["title"],
            format!("n{i}")
        );
    }
    let (_, b) = app.send(notification(&token, "MARKETING", "sixth")).await;
    assert_eq!(d.frames_before_marker(&app).await, []);
    assert_eq!(
        dropped_code(&app, b["requestId"].as_str().unwrap()).await,
        Some(256)
    );
}

#[tokio::test]
async fn test_messages_are_exempt_from_the_category_quota_but_limited_per_project() {
    let app = spawn_app_with(|c| c.test_messages_per_day = 4).await;
    let (mut d, token) = device_with_token(&app).await;
    for i in 0..4 {
        let mut body = notification(&token, "MARKETING", &format!("t{i}"));
        body["pushOptions"] = json!({"testMessage": true});
        let (s, _) = app.send(body).await;
        assert_eq!(s, 200);
        let m = d.message().await;
        assert!(m.test);
    }
    let mut body = notification(&token, "MARKETING", "fifth test");
    body["pushOptions"] = json!({"testMessage": true});
    let (_, b) = app.send(body).await;
    assert_eq!(d.frames_before_marker(&app).await, []);
    assert_eq!(
        dropped_code(&app, b["requestId"].as_str().unwrap()).await,
        Some(256)
    );
    // The marketing quota is untouched by test messages.
    app.send(notification(&token, "MARKETING", "real one"))
        .await;
    assert_eq!(
        d.message().await.payload["notification"]["title"],
        "real one"
    );
}

#[tokio::test]
async fn device_level_control_drops_with_102() {
    let app = spawn_app().await;
    right(&app, "IM", "grant").await;
    patch_app(&app, json!({"device_daily_total": 3})).await;
    let (mut d, token) = device_with_token(&app).await;
    for i in 0..3 {
        app.send(notification(&token, "IM", &format!("im{i}")))
            .await;
        d.message().await;
    }
    let (_, b) = app.send(notification(&token, "IM", "fourth")).await;
    assert_eq!(d.frames_before_marker(&app).await, []);
    assert_eq!(
        dropped_code(&app, b["requestId"].as_str().unwrap()).await,
        Some(102)
    );
    // Back to the default (3000): the next one passes.
    patch_app(&app, json!({"device_daily_total": null})).await;
    app.send(notification(&token, "IM", "after reset")).await;
    assert_eq!(
        d.message().await.payload["notification"]["title"],
        "after reset"
    );
}

#[tokio::test]
async fn a_burst_past_the_send_rate_gets_http_503() {
    let app = spawn_app().await;
    patch_app(&app, json!({"send_rate_per_sec": 5})).await;
    let (mut d, token) = device_with_token(&app).await;
    right(&app, "IM", "grant").await;
    let sends = (0..20).map(|i| app.send(notification(&token, "IM", &format!("b{i}"))));
    let results = futures_util::future::join_all(sends).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        ok, 5,
        "the clock does not move, so exactly the bucket's 5 pass"
    );
    assert_eq!(limited.len(), 15);
    for b in &limited {
        // Push Kit documents only the status; Herald answers with 81000001's shape.
        assert_eq!(b["code"], "81000001", "{b}");
        assert_eq!(b["msg"], "Flow control: request rate exceeded.", "{b}");
        let request = b["requestId"].as_str().unwrap();
        assert_eq!(
            crate::helpers::events_of_request(&app, request).await,
            [],
            "a limited request stores nothing"
        );
    }
    // Exactly the 5 accepted reach the device.
    for _ in 0..5 {
        d.message().await;
    }
    assert_eq!(d.frames_before_marker(&app).await, []);
    // A second later the bucket has refilled.
    app.clock.advance_secs(1);
    let (s, _) = app.send(notification(&token, "IM", "later")).await;
    assert_eq!(s, 200);
    assert_eq!(d.message().await.payload["notification"]["title"], "later");
}

#[tokio::test]
async fn concurrent_sends_never_exceed_the_marketing_quota() {
    let app = spawn_app().await;
    let (mut d, token) = device_with_token(&app).await;
    let sends = (0..40).map(|i| app.send(notification(&token, "MARKETING", &format!("c{i}"))));
    let results = futures_util::future::join_all(sends).await;
    assert!(results.iter().all(|(s, _)| *s == 200));
    let mut dropped = 0;
    for (_, b) in &results {
        if dropped_code(&app, b["requestId"].as_str().unwrap()).await == Some(256) {
            dropped += 1;
        }
    }
    assert_eq!(dropped, 38);
    d.message().await;
    d.message().await;
    assert_eq!(d.frames_before_marker(&app).await, []);
    // The counter survives a restart: still no third message today.
    let app = app.restart().await;
    let (s, b) = app
        .send(notification(&token, "MARKETING", "after restart"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        dropped_code(&app, b["requestId"].as_str().unwrap()).await,
        Some(256)
    );
}

#[tokio::test]
async fn badge_refresh_needs_the_im_right() {
    let app = spawn_app().await;
    let (mut d, token) = device_with_token(&app).await;
    let badge = json!({"payload": {"notification": {"badge": {"addNum": 2}}}, "target": {"token": [token]}});
    let (s, b) = app.send(badge.clone()).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("80300007")));
    assert!(b["msg"].as_str().unwrap().contains("noPushTypeRight"));
    right(&app, "IM", "grant").await;
    let (s, _) = app.send(badge).await;
    assert_eq!(s, 200);
    assert_eq!(
        d.message().await.payload["notification"]["badge"]["addNum"],
        2
    );
}

#[tokio::test]
async fn quotas_count_natural_days_in_the_configured_time_zone() {
    // Start 30 minutes before midnight in Shanghai (16:00 UTC is 00:00 +08:00).
    let app = spawn_app_with(|c| c.quota_time_zone = "Asia/Shanghai".into()).await;
    let now = app.clock.now_ms();
    let day_ms = 86_400_000;
    let shanghai_midnight =
        (now + 8 * 3_600_000).div_euclid(day_ms) * day_ms + day_ms - 8 * 3_600_000;
    app.clock.set_ms(shanghai_midnight - 30 * 60_000);
    let (mut d, token) = device_with_token(&app).await;
    for i in 0..2 {
        app.send(notification(&token, "MARKETING", &format!("late{i}")))
            .await;
        d.message().await;
    }
    app.clock.advance_secs(31 * 60);
    app.send(notification(&token, "MARKETING", "new day in Shanghai"))
        .await;
    assert_eq!(
        d.message().await.payload["notification"]["title"],
        "new day in Shanghai"
    );
}

#[tokio::test]
async fn a_raw_device_is_unaffected_by_another_apps_quota() {
    let app = spawn_app().await;
    let other_project = "555555555555555555";
    let other =
        crate::helpers::add_project_with_app(&app, other_project, "6666666666666666666").await;
    // The other app's backend, with a key of its own project.
    let key = admin(&app)
        .post(
            &format!("/api/v1/projects/{other_project}/keys"),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(key.status, 201, "{}", key.body);
    let other_key: herald_proto::keyfile::KeyFile = serde_json::from_value(key.body).unwrap();
    let mut d = RawDevice::connect(&app).await;
    d.hello().await;
    let t1 = d.token(&app.info.client_id).await;
    let t2 = d.token(&other).await;

    // The other app spends its MARKETING quota on this device: the third is dropped.
    let mut other_requests = Vec::new();
    for i in 0..3 {
        let body = notification(&t2, "MARKETING", &format!("o{i}"));
        let (s, b) = app
            .send_raw(
                other_project,
                Some(format!("Bearer {}", app.jwt_for(&other_key))),
                Some("0"),
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!((s, b["code"].as_str()), (200, Some("80000000")), "{b}");
        other_requests.push(b["requestId"].as_str().unwrap().to_owned());
    }
    assert_eq!(d.message().await.payload["notification"]["title"], "o0");
    assert_eq!(d.message().await.payload["notification"]["title"], "o1");
    assert_eq!(dropped_code(&app, &other_requests[2]).await, Some(256));

    // This app's quota on the same device is untouched: two arrive, the third is dropped.
    let mut requests = Vec::new();
    for i in 0..3 {
        let (_, b) = app
            .send(notification(&t1, "MARKETING", &format!("x{i}")))
            .await;
        requests.push(b["requestId"].as_str().unwrap().to_owned());
    }
    assert_eq!(d.message().await.payload["notification"]["title"], "x0");
    assert_eq!(d.message().await.payload["notification"]["title"], "x1");
    assert_eq!(dropped_code(&app, &requests[0]).await, None);
    assert_eq!(dropped_code(&app, &requests[2]).await, Some(256));
    assert_eq!(d.frames_before_marker(&app).await, []);
}
