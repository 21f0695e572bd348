//! Faults (issue 13): a full disk, simulated with SQLite's `max_page_count` on the
//! writer's connection (`herald_store::sqlite::fault`, a test-only feature), while
//! sends run against a device that is offline.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_server::DATABASE_FILE;
use herald_store::sqlite::fault::cap_growth;
use serde_json::Value;

use crate::helpers::{RawDevice, TestApp, device_with_token, notification, spawn_app};

/// A notification of about 3 KiB (so that a few pages fill quickly), titled `title`.
fn bulky(token: &str, title: &str) -> Value {
    let mut body = notification(&[token], title);
    body["payload"]["notification"]["body"] = Value::from(format!("{title}:{}", "x".repeat(3000)));
    body
}

/// Every send answers within 10 s, with `80000000` or `81000001`; returns the code.
async fn send_one(app: &TestApp, token: &str, title: &str) -> String {
    let (status, resp) =
        tokio::time::timeout(Duration::from_secs(10), app.send(bulky(token, title)))
            .await
            .unwrap_or_else(|_| panic!("{title}: no answer within 10 s"));
    let code = resp["code"].as_str().unwrap_or_default().to_owned();
    match code.as_str() {
        "80000000" => assert_eq!(status, 200, "{resp}"),
        "81000001" => assert_eq!(status, 500, "{resp}"),
        _ => panic!("{title}: {status} {resp}"),
    }
    code
}

async fn healthy(app: &TestApp) -> bool {
    app.http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The disk fills while sends run: each send answers `81000001` or `80000000` (no
/// panic, no hang; several at once too); the server keeps answering; once space comes
/// back the next send is accepted without a restart (the writer lived through it); and
/// the device, back online, gets every accepted message exactly once, intact, and none
/// that was refused. The database passes `PRAGMA integrity_check`.
#[tokio::test]
async fn a_full_disk_answers_81000001_loses_nothing_accepted_and_recovers_by_itself() {
    let app = spawn_app().await;
    let (device, token) = device_with_token(&app).await;
    let credential = device.credential.clone();
    drop(device);
    let mut accepted: Vec<String> = Vec::new();
    for i in 0..10 {
        let title = format!("before-{i}");
        assert_eq!(send_one(&app, &token, &title).await, "80000000");
        accepted.push(title);
    }

    let db = app.dir.path().join(DATABASE_FILE);
    cap_growth(&db, Some(12));
    let mut refused = Vec::new();
    let mut n = 0;
    while refused.len() < 5 {
        assert!(
            n < 100,
            "the disk never filled: {} accepted",
            accepted.len()
        );
        let title = format!("during-{n}");
        match send_one(&app, &token, &title).await.as_str() {
            "80000000" => accepted.push(title),
            _ => refused.push(title),
        }
        n += 1;
    }
    // Several at once: they share the writer's transactions.
    let titles: Vec<String> = (0..8).map(|i| format!("burst-{i}")).collect();
    let codes =
        futures_util::future::join_all(titles.iter().map(|t| send_one(&app, &token, t))).await;
    for (title, code) in titles.into_iter().zip(codes) {
        match code.as_str() {
            "80000000" => accepted.push(title),
            _ => refused.push(title),
        }
    }
    assert!(
        healthy(&app).await,
        "the server answers while its disk is full"
    );

    // Space comes back: the very next send is accepted.
    cap_growth(&db, None);
    for i in 0..5 {
        let title = format!("after-{i}");
        assert_eq!(send_one(&app, &token, &title).await, "80000000", "{title}");
        accepted.push(title);
    }
    assert!(
        accepted.len() < 120,
        "within the offline cache of one token"
    );

    // The device comes back and gets exactly what was accepted.
    let mut device = RawDevice::connect(&app).await;
    device.credential = credential;
    device.hello().await;
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    while received.values().sum::<usize>() < accepted.len() {
        let m = device.message().await;
        let n = &m.payload["notification"];
        let title = n["title"].as_str().unwrap().to_owned();
        assert_eq!(
            n["body"].as_str().unwrap(),
            format!("{title}:{}", "x".repeat(3000)),
            "intact"
        );
        *received.entry(title).or_default() += 1;
    }
    assert_eq!(device.frames_before_marker(&app).await, [], "nothing more");
    let mut expected: Vec<String> = accepted.clone();
    expected.sort();
    assert_eq!(received.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(
        received.values().all(|n| *n == 1),
        "each once: {received:?}"
    );

    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    app.stop().await;
}
