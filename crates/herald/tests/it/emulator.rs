//! `herald serve --emulator` as a backend's CI starts it: a throwaway data directory
//! named on stderr (and deleted on exit), a start well under a second, the emulator API,
//! and `--key-file`, `--project-id`, `--client-id` making a run's configuration the same
//! as the last one's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use crate::process::{Server, herald, post_send, read_json, sign_jwt};

/// The path after `label` on a line of the emulator's banner in `log`.
fn banner_path(log: &Path, label: &str) -> PathBuf {
    let text = std::fs::read_to_string(log).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label} line in:\n{text}"));
    PathBuf::from(line.trim_start()[label.len()..].trim())
}

/// An emulator API call with the admin token: (status, JSON body or null).
fn emulator_call(url: &str, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let req = match method {
            "POST" => client.post(format!("{url}/emulator/v1{path}")).json(&body),
            "DELETE" => client.delete(format!("{url}/emulator/v1{path}")),
            _ => client.get(format!("{url}/emulator/v1{path}")),
        };
        let resp = req.bearer_auth(token).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn herald_serve_emulator_starts_fast_on_a_throwaway_directory_and_reuses_a_given_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("first.log");
    let started = Instant::now();
    let server = Server::launch_args(&["--emulator"], &log);
    server.wait_healthy();
    let ready = started.elapsed();
    eprintln!("herald serve --emulator answered /healthz after {ready:?}");
    let bootstrap_file = banner_path(&log, "bootstrap");
    let data = bootstrap_file.parent().unwrap().to_owned();
    assert!(
        data.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("herald-emulator-"),
        "{data:?}"
    );
    let boot = read_json(&bootstrap_file);
    let token = boot["admin_token"].as_str().unwrap();
    let (status, device) = emulator_call(&server.url, token, "POST", "/devices", json!({}));
    assert_eq!(status, 201, "{device}");
    // Keep the key file for the second run, as a CI configuration would.
    let key_path = dir.path().join("ci-key.json");
    std::fs::copy(boot["service_account_file"].as_str().unwrap(), &key_path).unwrap();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        !data.exists(),
        "the throwaway directory {data:?} is deleted on exit"
    );

    // The same key, project and a chosen client id: a backend configured once keeps
    // working run after run.
    let key = read_json(&key_path);
    let project = key["project_id"].as_str().unwrap();
    let log = dir.path().join("second.log");
    let server = Server::launch_args(
        &[
            "--emulator",
            "--key-file",
            key_path.to_str().unwrap(),
            "--project-id",
            project,
            "--client-id",
            "7777777",
        ],
        &log,
    );
    server.wait_healthy();
    let boot = read_json(&banner_path(&log, "bootstrap"));
    assert_eq!(boot["project_id"], project);
    assert_eq!(boot["client_id"], "7777777");
    let token = boot["admin_token"].as_str().unwrap();
    let (_, device) = emulator_call(&server.url, token, "POST", "/devices", json!({}));
    let body = json!({
        "payload": {"notification": {"category": "MARKETING", "title": "t", "body": "b",
                                     "clickAction": {"actionType": 0}}},
        "target": {"token": [device["token"]]},
    });
    let (status, answer) = post_send(&server.url, project, &sign_jwt(&key), &body);
    assert_eq!(
        (status, answer["code"].as_str()),
        (200, Some("80000000")),
        "{answer}"
    );
    let (_, inbox) = emulator_call(
        &server.url,
        token,
        "GET",
        &format!("/devices/{}/inbox", device["device_id"].as_str().unwrap()),
        Value::Null,
    );
    assert_eq!(inbox["items"][0]["state"], "shown", "{inbox}");
    let (status, _) = emulator_call(&server.url, token, "DELETE", "/state", Value::Null);
    assert_eq!(status, 204);
    assert!(server.terminate().success());
}

#[test]
fn emulator_flags_need_emulator_and_a_readable_key() {
    let out = herald()
        .args(["serve", "--project-id", "1", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--emulator"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    std::fs::write(
        &key,
        json!({
            "project_id": "101", "key_id": "k", "sub_account": "s",
            "private_key": "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n",
            "auth_uri": "a", "token_uri": "t", "auth_provider_cert_uri": "c", "client_cert_uri": "x",
        })
        .to_string(),
    )
    .unwrap();
    let out = herald()
        .args([
            "serve",
            "--emulator",
            "--listen",
            "127.0.0.1:0",
            "--key-file",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PKCS#8"), "{err}");
}
