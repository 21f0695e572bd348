//! `herald device` driven through JSON commands on standard input, as an app developer
//! tries Push Kit's client rules without a phone.

use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{DeviceProc, Server, post_send, read_json, sign_jwt};

const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    server: Server,
    key: Value,
    project: String,
    client_id: String,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let boot = server.bootstrap();
    let key = read_json(std::path::Path::new(
        boot["service_account_file"].as_str().unwrap(),
    ));
    Setup {
        project: boot["project_id"].as_str().unwrap().to_owned(),
        client_id: boot["client_id"].as_str().unwrap().to_owned(),
        server,
        key,
        dir,
    }
}

impl Setup {
    fn send(&self, token: &str, notification: Value) {
        // Test messages: exempt from the MARKETING quota of 2 a day these tests would meet.
        let body = json!({"payload": {"notification": notification}, "target": {"token": [token]},
            "pushOptions": {"testMessage": true}});
        let (status, resp) =
            post_send(&self.server.url, &self.project, &sign_jwt(&self.key), &body);
        assert_eq!(
            (status, resp["code"].as_str()),
            (200, Some("80000000")),
            "{resp}"
        );
    }
}

#[test]
fn a_click_starts_the_ability_with_the_data_cold_then_warm() {
    let s = setup();
    let mut device = DeviceProc::start(
        &s.server.url,
        &s.client_id,
        &s.dir.path().join("device"),
        // Not running: the first tap is a cold start.
        &[
            "--ability",
            "OrderAbility,action=com.example.ORDER",
            "--app-state",
            "stopped",
        ],
    );
    let permission = device.expect("permission", Duration::from_secs(20));
    assert_eq!(
        (permission["enabled"].clone(), permission["code"].clone()),
        (json!(true), Value::Null)
    );
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();

    s.send(
        &token,
        json!({"category": "IM", "title": "t", "body": "b", "notifyId": 11,
        "clickAction": {"actionType": 0, "data": {"testKey": "testValue"}}}),
    );
    let shown = device.expect("notification", WAIT);
    assert_eq!(shown["notify_id"], 11);
    device.command(json!({"cmd": "click", "notify_id": 11}));
    let ability = device.expect("ability", WAIT);
    assert_eq!(ability["callback"], "onCreate");
    assert_eq!(ability["ability"], "EntryAbility");
    assert_eq!(ability["want"]["parameters"]["testKey"], "testValue");
    assert!(ability["want"]["action"].is_null() && ability["want"]["uri"].is_null());

    s.send(&token, json!({"category": "IM", "title": "t2", "body": "b", "notifyId": 12,
        "clickAction": {"actionType": 1, "action": "com.example.ORDER", "data": {"orderId": "42"}}}));
    device.expect("notification", WAIT);
    device.command(json!({"cmd": "click", "notify_id": 12}));
    let ability = device.expect("ability", WAIT);
    assert_eq!(ability["ability"], "OrderAbility");
    assert_eq!(ability["callback"], "onCreate");
    assert_eq!(ability["want"]["action"], "com.example.ORDER");
    assert_eq!(ability["want"]["parameters"]["orderId"], "42");

    // The app is running: the home ability gets onNewWant.
    s.send(
        &token,
        json!({"category": "IM", "title": "t3", "body": "b", "notifyId": 13,
        "clickAction": {"actionType": 0, "data": {"testKey": "again"}}}),
    );
    device.expect("notification", WAIT);
    device.command(json!({"cmd": "click", "notify_id": 13}));
    let ability = device.expect("ability", WAIT);
    assert_eq!(ability["callback"], "onNewWant");

    // Stopped, then tapped: a cold start again.
    device.command(json!({"cmd": "app", "state": "stopped"}));
    device.expect("app", WAIT);
    s.send(
        &token,
        json!({"category": "IM", "title": "t4", "body": "b", "notifyId": 14,
        "clickAction": {"actionType": 0}}),
    );
    device.expect("notification", WAIT);
    device.command(json!({"cmd": "click", "notify_id": 14}));
    assert_eq!(device.expect("ability", WAIT)["callback"], "onCreate");

    // A bad command is an error line, not the end of the device.
    device.command(json!({"cmd": "click", "notify_id": 999}));
    let error = device.expect("error", WAIT);
    assert_eq!(error["push_code"], 401);
}

#[test]
fn permission_settings_profiles_and_token_deletion_from_the_command_line() {
    let s = setup();
    let mut device = DeviceProc::start(
        &s.server.url,
        &s.client_id,
        &s.dir.path().join("device"),
        &["--permission", "deny"],
    );
    let permission = device.expect("permission", Duration::from_secs(20));
    assert_eq!(permission["enabled"], false);
    assert_eq!(permission["code"], 1_600_004);
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Asking again shows nothing and is refused again.
    device.command(json!({"cmd": "request_permission"}));
    assert_eq!(device.expect("permission", WAIT)["code"], 1_600_004);

    s.send(
        &token,
        json!({"category": "IM", "title": "t", "body": "b", "clickAction": {"actionType": 0}}),
    );
    let suppressed = device.expect("suppressed", WAIT);
    assert_eq!(suppressed["receipt"], 6);
    assert!(suppressed["reason"].is_string());

    // The user goes to the settings and switches notifications on.
    device.command(json!({"cmd": "settings", "enabled": true}));
    let permission = device.expect("permission", WAIT);
    assert_eq!(
        (permission["enabled"].clone(), permission["code"].clone()),
        (json!(true), Value::Null)
    );

    // profileId: 144 until bound.
    let for_user = json!({"category": "IM", "title": "for you", "body": "b", "profileId": "u-7",
        "clickAction": {"actionType": 0}});
    s.send(&token, for_user.clone());
    assert_eq!(device.expect("suppressed", WAIT)["receipt"], 144);
    device.command(json!({"cmd": "bind_profile", "type": 2, "id": "u-7"}));
    device.expect("profiles", WAIT);
    s.send(&token, for_user.clone());
    assert_eq!(device.expect("notification", WAIT)["title"], "for you");
    device.command(json!({"cmd": "unbind_profile", "id": "u-7"}));
    assert_eq!(device.expect("profiles", WAIT)["profiles"], json!([]));

    // foregroundShow false while in the foreground → receiveMessage('DEFAULT').
    device.command(json!({"cmd": "app", "state": "foreground"}));
    device.expect("app", WAIT);
    s.send(
        &token,
        json!({"category": "IM", "title": "quiet", "body": "b", "foregroundShow": false,
        "clickAction": {"actionType": 0}}),
    );
    let received = device.expect("message", WAIT);
    assert_eq!(received["kind"], "DEFAULT");
    assert_eq!(received["push_type"], 0);

    // delete_token: a new token is printed.
    device.command(json!({"cmd": "delete_token"}));
    device.expect("token_deleted", WAIT);
    let new = device.expect("token", WAIT)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, token);
}
