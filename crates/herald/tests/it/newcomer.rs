//! The "Done when" of Herald core, run as a newcomer would.

use std::time::Duration;

use serde_json::json;

use crate::process::{DeviceProc, Server, cli, post_send, read_json, sign_jwt};

#[test]
fn seed_example_signed_by_the_backend_reaches_a_herald_device() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let boot = server.bootstrap();
    for field in [
        "push_api_url",
        "console_url",
        "admin_username",
        "admin_password",
        "admin_token",
        "project_id",
        "client_id",
        "package_name",
        "service_account_file",
    ] {
        assert!(boot[field].is_string(), "bootstrap.json lacks {field}");
    }
    assert_eq!(boot.as_object().unwrap().len(), 9, "exactly these fields");
    let key = read_json(std::path::Path::new(
        boot["service_account_file"].as_str().unwrap(),
    ));
    let pem = key["private_key"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(pem.ends_with("\n-----END PRIVATE KEY-----\n"));
    assert_eq!(pem.lines().count(), 3, "base64 body on one line");

    let client_id = boot["client_id"].as_str().unwrap();
    let mut device = DeviceProc::start(&server.url, client_id, &dir.path().join("device"), &[]);
    let token = device.expect("token", Duration::from_secs(20));
    let token = token["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 112);
    // The seed's request carries `profileId: "111***222"`: Push Kit shows it only when
    // the app has bound that account, so the app binds it first, as after a login.
    device.command(json!({"cmd": "bind_profile", "type": 2, "id": "111***222"}));
    let profiles = device.expect("profiles", Duration::from_secs(10));
    assert_eq!(profiles["profiles"][0]["id"], "111***222");

    // The seed's request, verbatim but for the token.
    let body = json!({
      "payload": {
        "notification": {
          "category": "MARKETING",
          "title": "普通通知标题",
          "body": "普通通知内容",
          "profileId": "111***222",
          "clickAction": { "actionType": 0 }
        }
      },
      "target": { "token": [token] }
    });
    let jwt = sign_jwt(&key);
    let (status, resp) = post_send(
        &server.url,
        boot["project_id"].as_str().unwrap(),
        &jwt,
        &body,
    );
    assert_eq!(
        (status, resp["code"].as_str()),
        (200, Some("80000000")),
        "{resp}"
    );

    let shown = device.expect("notification", Duration::from_secs(10));
    assert_eq!(shown["title"], "普通通知标题");
    assert_eq!(shown["body"], "普通通知内容");
    assert_eq!(shown["category"], "MARKETING");
    assert_eq!(shown["push_type"], 0);
    assert_eq!(shown["click_action"]["actionType"], 0);
    assert!(shown["notify_id"].is_i64());

    // `herald send` does the same from the key file, and exits 0 on 80000000.
    let key_path = boot["service_account_file"].as_str().unwrap();
    let cache = dir.path().join("cache");
    let (ok, printed) = cli(
        &[
            "send",
            "--key-file",
            key_path,
            "--server",
            &server.url,
            "--token",
            &token,
            "--title",
            "from the CLI",
            "--body",
            "sent by herald send",
            "--data",
            r#"{"orderId":"42"}"#,
        ],
        &cache,
    );
    assert!(ok, "{printed}");
    assert_eq!(printed["code"], "80000000");
    let shown = device.expect("notification", Duration::from_secs(10));
    assert_eq!(shown["title"], "from the CLI");
    assert_eq!(shown["click_action"]["data"]["orderId"], "42");

    // A bad token: non-zero exit, the response still printed.
    let (ok, printed) = cli(
        &[
            "send",
            "--key-file",
            key_path,
            "--server",
            &server.url,
            "--token",
            "nope",
            "--title",
            "t",
            "--body",
            "b",
        ],
        &cache,
    );
    assert!(!ok);
    assert_eq!(printed["code"], "80300007");

    // SIGTERM stops the server cleanly.
    assert!(server.terminate().success());
}

#[test]
fn a_denied_permission_suppresses_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let boot = server.bootstrap();
    let key = read_json(std::path::Path::new(
        boot["service_account_file"].as_str().unwrap(),
    ));
    let device = DeviceProc::start(
        &server.url,
        boot["client_id"].as_str().unwrap(),
        &dir.path().join("device"),
        &["--permission", "deny"],
    );
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"payload":{"notification":{"category":"IM","title":"t","body":"b",
        "clickAction":{"actionType":0}}},"target":{"token":[token]}});
    let (status, _) = post_send(
        &server.url,
        boot["project_id"].as_str().unwrap(),
        &sign_jwt(&key),
        &body,
    );
    assert_eq!(status, 200);
    let suppressed = device.expect("suppressed", Duration::from_secs(10));
    assert_eq!(suppressed["code"], 6);
    assert_eq!(suppressed["receipt"], 6);
}

#[test]
fn the_same_state_dir_is_the_same_device_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let client_id = server.bootstrap()["client_id"].as_str().unwrap().to_owned();
    let state = dir.path().join("device");
    let first = DeviceProc::start(&server.url, &client_id, &state, &[]);
    let t1 = first.expect("token", Duration::from_secs(20))["token"].clone();
    drop(first);
    let second = DeviceProc::start(&server.url, &client_id, &state, &[]);
    let t2 = second.expect("token", Duration::from_secs(20))["token"].clone();
    assert_eq!(t1, t2);
    let other = DeviceProc::start(&server.url, &client_id, &dir.path().join("other"), &[]);
    let t3 = other.expect("token", Duration::from_secs(20))["token"].clone();
    assert_ne!(t1, t3);
}
