//! Every push type and revoke, watched on `herald device --json` as a backend developer
//! would: what a HarmonyOS device would do with each.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{DeviceProc, Server, admin, cli, post_push, read_json, sign_jwt};

const WAIT: Duration = Duration::from_secs(10);

fn grant(boot: &Path, client_id: &str, right: &str) {
    let (ok, body) = admin(
        boot,
        &[
            "rights",
            "grant",
            "--client-id",
            client_id,
            "--category",
            right,
        ],
    );
    assert!(ok, "{body}");
}

struct Backend {
    url: String,
    project: String,
    client_id: String,
    jwt: String,
}

impl Backend {
    fn push(&self, push_type: u8, payload: Value, options: Value, token: &str) -> Value {
        let mut body = json!({"payload": payload, "target": {"token": [token]}});
        if !options.is_null() {
            body["pushOptions"] = options;
        }
        let (s, r) = post_push(
            &self.url,
            &format!("v3/{}/messages:send", self.project),
            &self.jwt,
            push_type,
            &body,
        );
        assert_eq!((s, r["code"].as_str()), (200, Some("80000000")), "{r}");
        r
    }
}

#[test]
fn every_push_type_on_a_herald_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let boot_path = dir.path().join("data/bootstrap.json");
    let boot = server.bootstrap();
    let client_id = boot["client_id"].as_str().unwrap().to_owned();
    for right in ["IM", "VOIP_CALL", "LIVE_VIEW_FLIGHT", "PLAY_VOICE"] {
        grant(&boot_path, &client_id, right);
    }
    let key = read_json(Path::new(boot["service_account_file"].as_str().unwrap()));
    let backend = Backend {
        url: server.url.clone(),
        project: boot["project_id"].as_str().unwrap().to_owned(),
        client_id: client_id.clone(),
        jwt: sign_jwt(&key),
    };
    // The simulated app is in the foreground (the default).
    let device = DeviceProc::start(&server.url, &client_id, &dir.path().join("device"), &[]);
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Widget.
    backend.push(
        1,
        json!({"formId": 1, "version": 2, "moduleName": "entry", "formName": "w",
        "abilityName": "FormAbility", "formData": {"temp": 21}}),
        Value::Null,
        &token,
    );
    let form = device.expect("form", WAIT);
    assert_eq!(
        (form["form_id"].as_i64(), form["version"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(form["form_data"]["temp"], 21);

    // Background, in the foreground: receiveMessage('BACKGROUND').
    backend.push(6, json!({"extraData": "sync"}), Value::Null, &token);
    let m = device.expect("message", WAIT);
    assert_eq!(
        (m["push_type"].as_i64(), m["kind"].as_str()),
        (Some(6), Some("BACKGROUND"))
    );
    assert_eq!(m["data"]["data"], "sync");

    // VoIP: receiveMessage('VoIP').
    backend.push(
        10,
        json!({"extraData": "{\"callId\":\"1\"}"}),
        json!({"ttl": 30}),
        &token,
    );
    let m = device.expect("message", WAIT);
    assert_eq!(
        (m["push_type"].as_i64(), m["kind"].as_str()),
        (Some(10), Some("VoIP"))
    );

    // Text-to-speech in the foreground: receiveMessage('IM').
    backend.push(
        2,
        json!({"extraData": "收款", "notification": {"category": "PLAY_VOICE",
        "title": "t", "body": "b", "clickAction": {"actionType": 0}}}),
        Value::Null,
        &token,
    );
    let m = device.expect("message", WAIT);
    assert_eq!(
        (m["push_type"].as_i64(), m["kind"].as_str()),
        (Some(2), Some("IM"))
    );

    // Live View.
    backend.push(
        7,
        json!({"activityId": 3, "operation": 0, "event": "FLIGHT", "status": "DEPART",
        "version": 1, "activityData": {"notificationData": {"type": 3, "contentTitle": "CA1234"}}}),
        Value::Null,
        &token,
    );
    let lv = device.expect("live_view", WAIT);
    assert_eq!(
        (lv["activity_id"].as_i64(), lv["status"].as_str()),
        (Some(3), Some("DEPART"))
    );
    assert_eq!(lv["state"]["notificationData"]["contentTitle"], "CA1234");

    // Badge.
    backend.push(
        0,
        json!({"notification": {"badge": {"setNum": 4}}}),
        Value::Null,
        &token,
    );
    assert_eq!(device.expect("badge", WAIT)["count"], 4);

    // A notification, then its revoke.
    backend.push(
        0,
        json!({"notification": {"category": "IM", "title": "oops", "body": "b",
        "notifyId": 5, "clickAction": {"actionType": 0}}}),
        Value::Null,
        &token,
    );
    device.expect("notification", WAIT);
    // Revoke with `herald revoke`, signing from the key file as `herald send` does.
    let (ok, printed) = cli(
        &[
            "revoke",
            "--key-file",
            boot["service_account_file"].as_str().unwrap(),
            "--server",
            &server.url,
            "--client-id",
            &client_id,
            "--notify-id",
            "5",
            "--token",
            &token,
        ],
        &dir.path().join("cache"),
    );
    assert!(ok, "{printed}");
    assert_eq!(printed["code"], "80000000");
    assert_eq!(device.expect("revoked", WAIT)["notify_id"], 5);
}

#[test]
fn a_background_app_keeps_the_newest_background_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let boot = server.bootstrap();
    let key = read_json(Path::new(boot["service_account_file"].as_str().unwrap()));
    let backend = Backend {
        url: server.url.clone(),
        project: boot["project_id"].as_str().unwrap().to_owned(),
        client_id: boot["client_id"].as_str().unwrap().to_owned(),
        jwt: sign_jwt(&key),
    };
    let mut device = DeviceProc::start(
        &server.url,
        &backend.client_id,
        &dir.path().join("device"),
        &["--app-state", "background"],
    );
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for d in ["first", "second"] {
        backend.push(6, json!({"extraData": d}), Value::Null, &token);
    }
    // Both reached the device, neither reached the app yet.
    device.expect("cached", WAIT);
    device.expect("cached", WAIT);
    device.command(json!({"cmd": "app", "state": "foreground"}));
    let m = device.expect("message", WAIT);
    assert_eq!(m["data"]["data"], "second");
}

#[test]
fn a_tv_shows_live_view_text_and_proxy_data_fills_the_push_message_table() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let boot_path = dir.path().join("data/bootstrap.json");
    let boot = server.bootstrap();
    let client_id = boot["client_id"].as_str().unwrap().to_owned();
    for right in ["IM", "LIVE_VIEW_TAXI"] {
        grant(&boot_path, &client_id, right);
    }
    let key = read_json(Path::new(boot["service_account_file"].as_str().unwrap()));
    let backend = Backend {
        url: server.url.clone(),
        project: boot["project_id"].as_str().unwrap().to_owned(),
        client_id: client_id.clone(),
        jwt: sign_jwt(&key),
    };
    // A device without Live Views, its app in the background.
    let device = DeviceProc::start(
        &server.url,
        &client_id,
        &dir.path().join("device"),
        &["--live-views", "notifications", "--app-state", "background"],
    );
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    backend.push(
        7,
        json!({"activityId": 3, "operation": 0, "event": "TAXI", "status": "CALLING",
            "title": "Your taxi", "content": "Status: {{status}}",
            "activityData": {"notificationData": {"type": 3, "contentTitle": "Taxi"}}}),
        Value::Null,
        &token,
    );
    let shown = device.expect("notification", WAIT);
    assert_eq!(
        (
            &shown["push_type"],
            &shown["title"],
            &shown["body"],
            &shown["activity_id"]
        ),
        (
            &json!(7),
            &json!("Your taxi"),
            &json!("Status: CALLING"),
            &json!(3)
        )
    );

    backend.push(
        0,
        json!({"notification": {"category": "IM", "title": "t", "body": "b",
            "badge": {"addNum": 3}, "clickAction": {"actionType": 0}}}),
        Value::Null,
        &token,
    );
    assert_eq!(device.expect("badge", WAIT)["count"], 3);

    backend.push(
        6,
        json!({"extraData": "sync", "proxyData": "ENABLE"}),
        Value::Null,
        &token,
    );
    let row = device.expect("proxy_data", WAIT)["row"].clone();
    assert_eq!(
        (&row["id"], &row["push_type"], &row["message"]),
        (&json!(1), &json!(6), &json!("{\"data\":\"sync\"}"))
    );
}
