//! Receipts through the binary: `herald admin receipt …` configures a receiver in this
//! test process, then `kill -9` lands while receipts are pending; after the restart every
//! status arrives, and none that was acknowledged arrives twice.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::process::{Server, admin, post_send, sign_jwt};

/// Acknowledged statuses (requestId, token, result), and whether to fail callbacks.
#[derive(Clone, Default)]
struct Receiver {
    acknowledged: Arc<Mutex<Vec<(String, String, u64)>>>,
    failed_calls: Arc<Mutex<usize>>,
    failing: Arc<AtomicBool>,
}

async fn receive(State(r): State<Receiver>, body: Bytes) -> (StatusCode, String) {
    if r.failing.load(Ordering::SeqCst) {
        *r.failed_calls.lock().unwrap() += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "busy".into());
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut acknowledged = r.acknowledged.lock().unwrap();
    for s in body["statuses"].as_array().cloned().unwrap_or_default() {
        acknowledged.push((
            s["requestId"].as_str().unwrap_or_default().to_owned(),
            s["token"].as_str().unwrap_or_default().to_owned(),
            s["deliveryStatus"]["result"].as_u64().unwrap_or(999),
        ));
    }
    (
        StatusCode::OK,
        json!({"code": "0", "message": "success"}).to_string(),
    )
}

impl Receiver {
    fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    fn wait_for(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "expected {n} acknowledged statuses, got {}",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn ghost_send(server: &Server, project: &str, jwt: &str, tag: char, n: usize) -> String {
    let tokens: Vec<String> = (0..n).map(|i| format!("{tag}{i:0>111}")).collect();
    let (status, body) = post_send(
        &server.url,
        project,
        jwt,
        &json!({"payload":{"notification":{"category":"MARKETING","title":"t","body":"b",
            "clickAction":{"actionType":0}}},"target":{"token":tokens}}),
    );
    assert_eq!((status, body["code"].as_str()), (200, Some("80000000")));
    body["requestId"].as_str().unwrap().to_owned()
}

#[test]
fn receipts_pending_at_kill_9_arrive_after_restart_and_none_twice() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = Receiver::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let receiver_url = format!("http://{}/receipts", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(receiver.clone());
    rt.spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let port = server.port();
    let boot_path = data.join("bootstrap.json");
    let boot = server.bootstrap();
    let project = boot["project_id"].as_str().unwrap().to_owned();
    let key = crate::process::read_json(Path::new(boot["service_account_file"].as_str().unwrap()));
    let jwt = sign_jwt(&key);

    let (ok, created) = admin(
        &boot_path,
        &[
            "receipt",
            "create",
            "--url",
            &receiver_url,
            "--username",
            "ops",
        ],
    );
    assert!(ok, "{created}");
    let receipt_id = created["receiptId"].as_str().unwrap().to_owned();
    assert!(created["secret"].as_str().is_some_and(|s| !s.is_empty()));
    let (ok, listed) = admin(&boot_path, &["receipt", "list"]);
    assert!(ok);
    assert_eq!(listed[0]["receiptId"], receipt_id.as_str());
    let (ok, tested) = admin(
        &boot_path,
        &["receipt", "test", "--receipt-id", &receipt_id],
    );
    assert!(ok && tested["success"] == true, "{tested}");
    receiver.wait_for(1, Duration::from_secs(10));

    // Acknowledged before the crash.
    ghost_send(&server, &project, &jwt, 'A', 20);
    receiver.wait_for(21, Duration::from_secs(20));
    // Let the dispatcher record the acknowledgement.
    std::thread::sleep(Duration::from_secs(1));

    // Pending at the crash: the endpoint fails, then Herald is killed.
    receiver.failing.store(true, Ordering::SeqCst);
    for tag in ['B', 'C', 'D'] {
        ghost_send(&server, &project, &jwt, tag, 30);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while *receiver.failed_calls.lock().unwrap() == 0 {
        assert!(Instant::now() < deadline, "no callback was attempted");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();

    // The endpoint recovers; Herald restarts and sends what is pending at once.
    receiver.failing.store(false, Ordering::SeqCst);
    let server = Server::start_on(&data, port);
    receiver.wait_for(111, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let acknowledged = receiver.acknowledged.lock().unwrap().clone();
    let mut seen: HashMap<(String, String, u64), usize> = HashMap::new();
    for k in acknowledged.iter().cloned() {
        *seen.entry(k).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "acknowledged twice: {twice:?}");
    assert_eq!(
        seen.len(),
        111,
        "the test receipt, 20 before and 90 after the crash"
    );
    assert!(seen.keys().filter(|k| k.2 == 5).count() == 110);
    drop(server);
}
