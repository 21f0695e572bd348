//! The admin API: authentication, OpenAPI, projects, apps, keys, rights history.

use herald_client::admin::AdminClient;
use serde_json::json;

use crate::helpers::{TestApp, device_with_token, notification, spawn_bare_app as spawn_app};

fn admin(app: &TestApp) -> AdminClient {
    AdminClient::new(&app.url, &app.info.admin_token).unwrap()
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_token() {
    let app = spawn_app().await;
    let anonymous = AdminClient::new(&app.url, "wrong").unwrap();
    let r = anonymous.get("/api/v1/projects").await.unwrap();
    assert_eq!(r.status, 401);
    assert!(r.body["error"].is_string());
    let r = admin(&app).get("/api/v1/projects").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0]["project_id"], app.info.project_id.as_str());
}

#[tokio::test]
async fn openapi_document_lists_the_admin_paths() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    for path in [
        "/api/v1/projects",
        "/api/v1/apps/{client_id}",
        "/api/v1/apps/{client_id}/rights/{name}/{action}",
        "/api/v1/apps/{client_id}/quotas",
        "/api/v1/projects/{project_id}/keys",
        "/api/v1/projects/{project_id}",
        "/api/v1/projects/{project_id}/members",
        "/api/v1/projects/{project_id}/members/{username}",
        "/api/v1/projects/{project_id}/audit",
        "/api/v1/me",
        "/api/v1/users",
        "/api/v1/users/me/password",
        "/api/v1/sessions",
        "/api/v1/sessions/current",
        "/api/v1/audit",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}

#[tokio::test]
async fn rights_keep_their_history_and_refuse_invalid_transitions() {
    let app = spawn_app().await;
    let a = admin(&app);
    let base = format!("/api/v1/apps/{}/rights", app.info.client_id);
    let r = a
        .post(
            &format!("{base}/WORK/request"),
            &json!({"reason": "approvals"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (200, Some("requested"))
    );
    let r = a
        .post(
            &format!("{base}/WORK/request"),
            &json!({"scenario": "again"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 409);
    let r = a
        .post(&format!("{base}/IM/request"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "a request names its scenario: {}", r.body);
    let r = a
        .post(
            &format!("{base}/WORK/refuse"),
            &json!({"reason": "not a work app"}),
        )
        .await
        .unwrap();
    assert_eq!(r.body["state"], "refused");
    let r = a
        .post(&format!("{base}/WORK/revoke"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 409, "only a granted right can be revoked");
    let r = a
        .post(&format!("{base}/MARKETING/grant"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "MARKETING needs no right");
    let r = a
        .post(&format!("{base}/LIVE_VIEW_FLIGHT/grant"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.body["state"], "granted");
    let r = a.get(&base).await.unwrap();
    assert_eq!(r.body["granted"], json!(["LIVE_VIEW_FLIGHT"]));
    let actions: Vec<&str> = r.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["request", "refuse", "grant"]);
    assert_eq!(r.body["history"][0]["reason"], "approvals");
    assert_eq!(r.body["history"][0]["actor"], "admin");
    assert!(r.body["available"].as_array().unwrap().len() >= 26);
    let r = a
        .post("/api/v1/apps/nope/rights/IM/grant", &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn projects_apps_and_keys_created_through_the_api_can_send() {
    let app = spawn_app().await;
    let a = admin(&app);
    let p = a
        .post("/api/v1/projects", &json!({"name": "Second"}))
        .await
        .unwrap();
    assert_eq!(p.status, 201);
    let project_id = p.body["project_id"].as_str().unwrap().to_owned();
    let created = a
        .post(
            "/api/v1/apps",
            &json!({"project_id": project_id, "name": "News", "package_name": "com.example.news",
                    "app_category": "news"}),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201);
    assert_eq!(created.body["limits"]["marketing_per_day"], 5);
    let client_id = created.body["client_id"].as_str().unwrap().to_owned();
    let key = a
        .post(&format!("/api/v1/projects/{project_id}/keys"), &json!({}))
        .await
        .unwrap();
    assert_eq!(key.status, 201);
    assert!(
        key.body["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    let listed = a
        .get(&format!("/api/v1/projects/{project_id}/keys"))
        .await
        .unwrap();
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert!(
        listed.body[0].get("private_key").is_none(),
        "the private key is never stored"
    );

    // A device of the new app, and a send signed with the new key.
    let mut d = crate::helpers::RawDevice::connect(&app).await;
    d.hello().await;
    let token = d.token(&client_id).await;
    let key_file: herald_proto::keyfile::KeyFile = serde_json::from_value(key.body).unwrap();
    let signer = herald_client::sender::JwtSigner::new(&key_file).unwrap();
    let client = herald_client::sender::PushClient::new(&app.url, signer).unwrap();
    let (status, resp) = client
        .send(0, &notification(&[&token], "new key"))
        .await
        .unwrap();
    assert_eq!((status, resp.code.as_str()), (200, "80000000"));
    assert_eq!(
        d.message().await.payload["notification"]["title"],
        "new key"
    );

    // The first project's key cannot send to the second project's URL.
    let (s, b) = app
        .send_raw(
            &project_id,
            Some(format!("Bearer {}", app.jwt())),
            Some("0"),
            serde_json::to_vec(&notification(&[&token], "x")).unwrap(),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (401, Some("80200001")));
}

#[tokio::test]
async fn quotas_show_limits_and_usage() {
    let app = spawn_app().await;
    let (d, token) = device_with_token(&app).await;
    app.send(notification(&[&token], "one")).await;
    let device_id = d.credential.clone().unwrap().id;
    let r = admin(&app)
        .get(&format!(
            "/api/v1/apps/{}/quotas?device_id={device_id}",
            app.info.client_id
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["limits"]["marketing_per_day"], 2);
    assert_eq!(r.body["limits"]["device_daily_total"], 3000);
    assert_eq!(r.body["limits"]["send_rate_per_sec"], 6000);
    assert_eq!(r.body["limits"]["test_messages_per_day"], 1000);
    assert_eq!(r.body["device"]["marketing_used"], 1);
    assert_eq!(r.body["device"]["total_used"], 1);
    assert_eq!(r.body["time_zone"], "UTC");
    let r = admin(&app)
        .patch(
            &format!("/api/v1/apps/{}", app.info.client_id),
            &json!({"app_category": "tv"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn a_login_gives_a_working_token_and_a_wrong_password_does_not() {
    let app = spawn_app().await;
    let anonymous = AdminClient::new(&app.url, "none").unwrap();
    let r = anonymous
        .post(
            "/api/v1/sessions",
            &json!({"username": "admin", "password": "wrong"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = anonymous
        .post(
            "/api/v1/sessions",
            &json!({"username": "admin", "password": app.info.admin_password}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let session = AdminClient::new(&app.url, r.body["token"].as_str().unwrap()).unwrap();
    assert_eq!(session.get("/api/v1/projects").await.unwrap().status, 200);
}

#[tokio::test]
async fn the_push_report_counts_every_outcome_with_its_reason() {
    let app = spawn_app().await;
    let (mut d, token) = device_with_token(&app).await;
    // Two MARKETING notifications pass, the third meets the quota; one unknown token.
    for i in 0..3 {
        let mut body = notification(&[&token], &format!("m{i}"));
        body["payload"]["notification"]["category"] = json!("MARKETING");
        app.send(body).await;
    }
    app.send(notification(&[&"U".repeat(120)], "ghost")).await;
    for _ in 0..2 {
        let m = d.message().await;
        d.ack(&[&m.id]).await;
    }
    let a = admin(&app);
    // Acks are written by a background task: wait until the report counts both.
    let report = crate::helpers::eventually("the report counts 2 delivered", || async {
        let report = a.get("/api/v1/report").await.unwrap().body;
        (report["summary"]["delivered"] == 2).then_some(report)
    })
    .await;
    assert_eq!(report["summary"]["sent"], 4, "{report}");
    assert_eq!(report["summary"]["delivered"], 2);
    assert_eq!(report["summary"]["not_delivered"], 2);
    let line = |outcome: &str, code: u32| {
        report["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["outcome"] == outcome && l["code"] == code)
            .map(|l| l["count"].as_u64().unwrap())
    };
    assert_eq!(line("dropped", 256), Some(1), "MARKETING quota");
    assert_eq!(line("dropped", 5), Some(1), "unknown token");
    let by_app = a
        .get(&format!("/api/v1/report?client_id={}", app.info.client_id))
        .await
        .unwrap()
        .body;
    assert_eq!(by_app["summary"]["delivered"], 2);
    let console = app
        .http
        .get(format!("{}/console", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(console.status(), 200);
    assert!(console.text().await.unwrap().contains("push report"));
}
