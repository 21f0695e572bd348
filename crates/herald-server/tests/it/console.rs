//! The console's endpoints over real HTTP: test devices and test messages (through the
//! real send path, to a real WebSocket device), the integration checklist ticked from
//! real events, and the report's funnel, series and not-shown reasons.

use herald_client::admin::AdminClient;
use herald_proto::device::{ClientFrame, ReportStatus};
use serde_json::{Value, json};

use crate::helpers::{
    RawDevice, TestApp, add_project_with_app, device_with_token, eventually, notification,
    spawn_app, spawn_bare_app, wait_for_state,
};

fn admin(app: &TestApp) -> AdminClient {
    AdminClient::new(&app.url, &app.info.admin_token).unwrap()
}

async fn register(app: &TestApp, client_id: &str, token: &str) -> (u16, Value) {
    let r = admin(app)
        .post(
            &format!("/api/v1/apps/{client_id}/test-devices"),
            &json!({"token": token, "name": "lab phone"}),
        )
        .await
        .unwrap();
    (r.status, r.body)
}

async fn test_message(app: &TestApp, client_id: &str, body: Value) -> (u16, Value) {
    let r = admin(app)
        .post(&format!("/api/v1/apps/{client_id}/test-messages"), &body)
        .await
        .unwrap();
    (r.status, r.body)
}

#[tokio::test]
async fn a_test_message_reaches_a_registered_test_device_and_nothing_else() {
    let app = spawn_bare_app().await;
    let client = app.info.client_id.clone();
    let (mut device, token) = device_with_token(&app).await;

    // Not registered yet: refused, whoever's token it is.
    let (status, body) = test_message(
        &app,
        &client,
        json!({"token": token, "title": "Hi", "body": "there"}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("test devices"));

    // Registering: a token the app does not have is refused; a real one is kept once.
    let (status, _) = register(&app, &client, "not-a-token").await;
    assert_eq!(status, 400);
    let (status, added) = register(&app, &client, &token).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["token"], token.as_str());
    assert_eq!(added["added_by"], app.info.admin_username.as_str());
    let (status, again) = register(&app, &client, &token).await;
    assert_eq!((status, &again["id"]), (200, &added["id"]));
    let listed = admin(&app)
        .get(&format!("/api/v1/apps/{client}/test-devices"))
        .await
        .unwrap();
    assert_eq!(listed.body.as_array().unwrap().len(), 1);

    // Sent through the real send path: the device gets a test message.
    let (status, sent) = test_message(
        &app,
        &client,
        json!({"test_device_id": added["id"], "title": "Hello from the console",
               "body": "It works", "data": {"screen": "inbox"}}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["code"], "80000000", "{sent}");
    assert_eq!(sent["request"]["pushOptions"]["testMessage"], true);
    assert_eq!(sent["request"]["target"]["token"][0], token.as_str());
    assert_eq!(
        sent["request"]["payload"]["notification"]["clickAction"]["data"]["screen"],
        "inbox"
    );
    let url = format!("/v3/{}/messages:send", app.info.project_id);
    assert!(sent["url"].as_str().unwrap().ends_with(&url), "{sent}");
    let curl = sent["curl"].as_str().unwrap();
    for part in [
        "curl -X POST",
        &url,
        "Bearer <JWT>",
        "push-type: 0",
        "\"testMessage\": true",
    ] {
        assert!(curl.contains(part), "{part} not in {curl}");
    }
    let m = device.message().await;
    assert!(m.test);
    assert_eq!(m.request_id, sent["requestId"].as_str().unwrap());
    assert_eq!(m.payload["notification"]["title"], "Hello from the console");

    // It counts like any test message: the project's daily test budget and the report.
    let quotas = admin(&app)
        .get(&format!("/api/v1/apps/{client}/quotas"))
        .await
        .unwrap();
    assert_eq!(quotas.body["test_messages_used"], 1);
    let report = admin(&app)
        .get(&format!("/api/v1/report?client_id={client}"))
        .await
        .unwrap();
    assert_eq!(
        report.body["funnel"][0],
        json!({"stage": "sent", "count": 1})
    );

    // With the project's push service off, the send path answers 80300002.
    let off = admin(&app)
        .patch(
            &format!("/api/v1/projects/{}", app.info.project_id),
            &json!({"push_enabled": false}),
        )
        .await
        .unwrap();
    assert_eq!(off.status, 200, "{}", off.body);
    let (status, refused) = test_message(
        &app,
        &client,
        json!({"test_device_id": added["id"], "title": "t", "body": "b"}),
    )
    .await;
    assert_eq!((status, refused["code"].as_str()), (200, Some("80300002")));
    admin(&app)
        .patch(
            &format!("/api/v1/projects/{}", app.info.project_id),
            &json!({"push_enabled": true}),
        )
        .await
        .unwrap();

    // Another device of the same app, and a test device of another app: refused.
    let (_other_device, other_token) = device_with_token(&app).await;
    let (status, _) = test_message(
        &app,
        &client,
        json!({"token": other_token, "title": "Hi", "body": "there"}),
    )
    .await;
    assert_eq!(status, 403);
    let elsewhere = add_project_with_app(&app, "999", "888").await;
    let mut d = RawDevice::connect(&app).await;
    d.hello().await;
    let foreign = d.token(&elsewhere).await;
    assert_eq!(register(&app, &elsewhere, &foreign).await.0, 201);
    assert_eq!(
        register(&app, &client, &foreign).await.0,
        400,
        "not this app's token"
    );
    let (status, _) = test_message(
        &app,
        &client,
        json!({"token": foreign, "title": "Hi", "body": "there"}),
    )
    .await;
    assert_eq!(status, 403, "another app's test device");

    // Bad input has its sentence; a removed test device gets nothing more.
    let (status, body) = test_message(
        &app,
        &client,
        json!({"test_device_id": added["id"], "title": " ", "body": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = test_message(
        &app,
        &client,
        json!({"test_device_id": added["id"], "title": "x", "body": "x", "data": [1]}),
    )
    .await;
    assert_eq!(status, 400);
    let id = added["id"].as_str().unwrap();
    let gone = admin(&app)
        .delete(&format!("/api/v1/apps/{client}/test-devices/{id}"))
        .await
        .unwrap();
    assert_eq!(gone.status, 204);
    let gone = admin(&app)
        .delete(&format!("/api/v1/apps/{client}/test-devices/{id}"))
        .await
        .unwrap();
    assert_eq!(gone.status, 404);
    let (status, _) = test_message(
        &app,
        &client,
        json!({"test_device_id": id, "title": "x", "body": "x"}),
    )
    .await;
    assert_eq!(status, 403);
    let unknown_app = admin(&app)
        .get("/api/v1/apps/123/test-devices")
        .await
        .unwrap();
    assert_eq!(unknown_app.status, 404);
}

/// The checklist item `id`: (done, at).
fn item(checklist: &Value, id: &str) -> (bool, Option<i64>) {
    let found = checklist["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("{id} missing in {checklist}"));
    (found["done"].as_bool().unwrap(), found["at"].as_i64())
}

#[tokio::test]
async fn the_checklist_is_ticked_from_what_happened() {
    let app = spawn_bare_app().await;
    let a = admin(&app);
    let client = app.info.client_id.clone();
    let path = format!("/api/v1/projects/{}/checklist", app.info.project_id);
    let checklist = || async { a.get(&path).await.unwrap().body };

    let fresh = checklist().await;
    let roles: Vec<(&str, &str)> = fresh["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles.len(), 12);
    assert!(roles.contains(&("right_confirmed", "product")));
    assert!(roles.contains(&("first_send", "backend_developer")));
    assert!(roles.contains(&("device_token", "app_developer")));
    assert!(item(&fresh, "key_created").0, "the bootstrap made a key");
    for id in [
        "right_requested",
        "right_granted",
        "first_send",
        "test_device_registered",
        "device_token",
        "permission_granted",
        "click_reported",
    ] {
        assert_eq!(item(&fresh, id), (false, None), "{id}");
    }

    // Operations asks for IM and gets it; an app developer's device gets a token, is
    // registered, gets a test message, shows it, and the user taps it.
    for action in ["request", "grant"] {
        let r = a
            .post(
                &format!("/api/v1/apps/{client}/rights/IM/{action}"),
                &json!({"reason": "chat"}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (mut device, token) = device_with_token(&app).await;
    let added = register(&app, &client, &token).await.1;
    let (_, sent) = test_message(
        &app,
        &client,
        json!({"test_device_id": added["id"], "title": "t", "body": "b"}),
    )
    .await;
    assert_eq!(sent["code"], "80000000", "{sent}");
    let m = device.message().await;
    device.ack(&[&m.id]).await;
    device.shown(&m.id).await;
    device
        .send(&ClientFrame::Report {
            id: m.id.clone(),
            status: ReportStatus::Clicked,
            code: None,
        })
        .await;
    wait_for_state(&app, &m.id, "clicked").await;

    let now = herald_core::Clock::now_ms(&app.clock);
    let hour_start = now - now.rem_euclid(3_600_000);
    let done = eventually("the checklist shows the click", || async {
        let c = checklist().await;
        item(&c, "click_reported").0.then_some(c)
    })
    .await;
    assert_eq!(item(&done, "right_requested"), (true, Some(now)));
    assert_eq!(item(&done, "right_granted"), (true, Some(now)));
    assert_eq!(item(&done, "device_token"), (true, Some(now)));
    assert_eq!(item(&done, "test_device_registered"), (true, Some(now)));
    assert_eq!(item(&done, "first_send"), (true, Some(hour_start)));
    assert_eq!(item(&done, "permission_granted"), (true, Some(hour_start)));
    assert_eq!(item(&done, "click_reported"), (true, Some(hour_start)));
    assert_eq!(item(&done, "right_confirmed"), (false, None));
    assert_eq!(item(&done, "receipt_answered"), (false, None));

    assert_eq!(
        a.get("/api/v1/projects/404/checklist")
            .await
            .unwrap()
            .status,
        404
    );
}

#[tokio::test]
async fn the_report_has_a_funnel_a_series_and_every_reason_not_shown() {
    let app = spawn_app().await;
    let a = admin(&app);
    let (mut device, token) = device_with_token(&app).await;
    // Two hours ago: one IM notification, delivered and shown; one unknown token.
    let ghost = "A".repeat(112);
    let mut body = notification(&[&token, &ghost], "Two hours ago");
    body["payload"]["notification"]["category"] = json!("IM");
    let (status, sent) = app.send(body).await;
    assert_eq!(status, 200, "{sent}");
    let m = device.message().await;
    device.ack(&[&m.id]).await;
    device.shown(&m.id).await;
    wait_for_state(&app, &m.id, "shown").await;
    app.clock.advance_secs(2 * 3600);

    let project = &app.info.project_id;
    let r = a
        .get(&format!("/api/v1/report?project_id={project}"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.body;
    assert_eq!(
        b["funnel"],
        json!([
            {"stage": "sent", "count": 2},
            {"stage": "delivered", "count": 1},
            {"stage": "shown", "count": 1},
            {"stage": "clicked", "count": 0}
        ])
    );
    assert_eq!(b["summary"]["sent"], 2, "the fields of before stay");
    let s = &b["series"];
    assert_eq!(
        (s["period"].as_str(), s["bucket"].as_str()),
        (Some("day"), Some("hour"))
    );
    assert_eq!(s["starts"].as_array().unwrap().len(), 24);
    assert_eq!(s["labels"].as_array().unwrap().len(), 24);
    let mut expected = vec![0; 24];
    expected[21] = 2;
    assert_eq!(
        s["total"]["sent"],
        json!(expected),
        "two hours before the last bucket"
    );
    expected[21] = 1;
    assert_eq!(s["total"]["shown"], json!(expected));
    let im = s["by_category"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == "IM")
        .unwrap_or_else(|| panic!("no IM line: {s}"));
    assert_eq!(im["shown"], json!(expected));
    let alert = s["by_push_type"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == "0")
        .unwrap();
    assert_eq!(alert["delivered"], json!(expected));

    let reasons = b["not_shown"].as_array().unwrap();
    let reason = |outcome: &str, code: Option<u32>| {
        reasons
            .iter()
            .find(|x| x["outcome"] == outcome && x["code"] == json!(code))
            .unwrap_or_else(|| panic!("{outcome}/{code:?} missing in {reasons:?}"))
            .clone()
    };
    assert_eq!(reason("dropped", Some(5))["count"], 1);
    assert_eq!(reasons[0]["code"], 5, "most frequent first");
    for (outcome, code) in [
        ("suppressed", Some(6)),
        ("dropped", Some(256)),
        ("replaced", Some(15)),
        ("expired", Some(14)),
        ("revoked", None),
    ] {
        let x = reason(outcome, code);
        assert_eq!(x["count"], 0);
        assert!(!x["meaning"].as_str().unwrap().is_empty());
    }

    let month = a
        .get(&format!("/api/v1/report?project_id={project}&period=month"))
        .await
        .unwrap();
    let s = &month.body["series"];
    assert_eq!(s["bucket"], "day");
    let days = s["starts"].as_array().unwrap().len();
    assert!((30..=31).contains(&days), "{days} days");
    let sent: u64 = s["total"]["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sent, 2);
    let bad = a.get("/api/v1/report?period=year").await.unwrap();
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn the_console_paths_and_report_fields_are_in_the_openapi_document() {
    let app = spawn_bare_app().await;
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, method) in [
        ("/api/v1/apps/{client_id}/test-devices", "get"),
        ("/api/v1/apps/{client_id}/test-devices", "post"),
        ("/api/v1/apps/{client_id}/test-devices/{id}", "delete"),
        ("/api/v1/apps/{client_id}/test-messages", "post"),
        ("/api/v1/projects/{project_id}/checklist", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
    }
    let report = &doc["components"]["schemas"]["ReportView"]["properties"];
    for field in ["summary", "lines", "funnel", "series", "not_shown"] {
        assert!(report[field].is_object(), "ReportView.{field} missing");
    }
    let params = doc["paths"]["/api/v1/report"]["get"]["parameters"]
        .as_array()
        .unwrap();
    assert!(params.iter().any(|p| p["name"] == "period"));
}

/// A user with `role` in the bootstrap project, signed in with a bearer session.
async fn member(app: &TestApp, username: &str, role: &str) -> AdminClient {
    let password = format!("secret-{username}-123");
    let a = admin(app);
    let r = a
        .post(
            "/api/v1/users",
            &json!({"username": username, "password": password}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let r = a
        .post(
            &format!("/api/v1/projects/{}/members", app.info.project_id),
            &json!({"username": username, "role": role}),
        )
        .await
        .unwrap();
    assert!(r.is_success(), "{}", r.body);
    let session: Value = app
        .http
        .post(format!("{}/api/v1/sessions", app.url))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    AdminClient::new(&app.url, session["token"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn an_app_developer_sends_a_test_message_alone_and_product_may_not() {
    let app = spawn_bare_app().await;
    let client = app.info.client_id.clone();
    let developer = member(&app, "dev", "app_developer").await;
    let product = member(&app, "paula", "product").await;
    let (mut device, token) = device_with_token(&app).await;

    let r = developer
        .post(
            &format!("/api/v1/apps/{client}/test-devices"),
            &json!({"token": token}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["added_by"], "dev");
    let r = developer
        .post(
            &format!("/api/v1/apps/{client}/test-messages"),
            &json!({"token": token, "title": "Mine", "body": "alone"}),
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.body["code"].as_str()), (200, Some("80000000")));
    assert_eq!(
        device.message().await.payload["notification"]["title"],
        "Mine"
    );

    // Product reads the project, but registers and sends nothing.
    for (path, body) in [
        ("test-devices", json!({"token": token})),
        (
            "test-messages",
            json!({"token": token, "title": "t", "body": "b"}),
        ),
    ] {
        let r = product
            .post(&format!("/api/v1/apps/{client}/{path}"), &body)
            .await
            .unwrap();
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        let why = r.body["error"].as_str().unwrap();
        assert!(
            why.starts_with("your role in this project is product; only ")
                && why.contains("app_developer"),
            "{why}"
        );
    }
    let checklist = product
        .get(&format!(
            "/api/v1/projects/{}/checklist",
            app.info.project_id
        ))
        .await
        .unwrap();
    assert_eq!(checklist.status, 200);
    assert!(item(&checklist.body, "test_device_registered").0);
}
