//! Nothing answered `80000000` is lost across `kill -9` of the server.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::process::{DeviceProc, Server, read_json, sign_jwt};

const SENDS: usize = 100;

#[test]
fn everything_accepted_before_kill_9_is_delivered_after_restart() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let port = server.port();
    let boot = server.bootstrap();
    let key = read_json(std::path::Path::new(
        boot["service_account_file"].as_str().unwrap(),
    ));
    let project = boot["project_id"].as_str().unwrap().to_owned();
    let client_id = boot["client_id"].as_str().unwrap().to_owned();
    let state = dir.path().join("device");

    // Get a token, then take the device offline so messages queue on the server.
    let device = DeviceProc::start(&server.url, &client_id, &state, &[]);
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(device);

    // Fire sends concurrently and kill the server while they are in flight.
    let jwt = sign_jwt(&key);
    let url = server.url.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let accepted: Vec<String> = rt.block_on(async {
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        for i in 0..SENDS {
            let (client, url, project, jwt, token) = (
                client.clone(),
                url.clone(),
                project.clone(),
                jwt.clone(),
                token.clone(),
            );
            tasks.push(tokio::spawn(async move {
                // Stagger so that some requests are still coming when the kill lands.
                tokio::time::sleep(Duration::from_millis(i as u64 * 3)).await;
                let body = json!({"payload":{"notification":{"category":"MARKETING",
                    "title":format!("m{i}"),"body":"b","clickAction":{"actionType":0}}},
                    "target":{"token":[token]},
                    // Test messages are exempt from the MARKETING quota; the device's
                    // offline cache (120) is above SENDS.
                    "pushOptions":{"testMessage":true}});
                let resp = client
                    .post(format!("{url}/v3/{project}/messages:send"))
                    .header("Authorization", format!("Bearer {jwt}"))
                    .header("push-type", "0")
                    .json(&body)
                    .send()
                    .await
                    .ok()?;
                let v: serde_json::Value = resp.json().await.ok()?;
                (v["code"] == "80000000").then(|| format!("m{i}"))
            }));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        server.kill9();
        let mut accepted = Vec::new();
        for t in tasks {
            if let Ok(Some(title)) = t.await {
                accepted.push(title);
            }
        }
        accepted
    });
    assert!(
        !accepted.is_empty(),
        "some sends were accepted before the kill"
    );
    assert!(
        accepted.len() < SENDS,
        "the kill landed while sends were in flight"
    );

    let server = Server::start_on(&data, port);
    let device = DeviceProc::start(&server.url, &client_id, &state, &[]);
    let shown: HashSet<String> = device
        .collect(
            "notification",
            Duration::from_secs(3),
            Duration::from_secs(60),
        )
        .into_iter()
        .map(|v| v["title"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&String> = accepted.iter().filter(|t| !shown.contains(*t)).collect();
    assert!(lost.is_empty(), "accepted but lost after kill -9: {lost:?}");
    eprintln!(
        "accepted {} of {SENDS} before kill -9; all {} delivered after restart",
        accepted.len(),
        shown.len()
    );
}
