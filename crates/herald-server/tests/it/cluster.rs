//! Several nodes in one process on one PostgreSQL schema (and one NATS bus): what must
//! hold across nodes. Each test prints SKIPPED and passes without
//! `HERALD_TEST_POSTGRES_URL` (and `HERALD_TEST_NATS_URL` where it needs the bus).

use serde_json::{Value, json};

use crate::helpers::*;

/// The PostgreSQL URL, or `None` after printing that `test` was skipped.
fn postgres(test: &str) -> Option<String> {
    match std::env::var("HERALD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED {test}: HERALD_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// A schema of this test's own, dropped when it goes out of scope.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str, test: &str) -> Schema {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Schema {
            url: url.to_owned(),
            name: format!("herald_it_{test}_{}_{nanos}", std::process::id()),
        }
    }

    /// The `store` setting of every node.
    fn store(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.url, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        crate::readiness::drop_schema(&self.url, &self.name);
    }
}

fn marketing(token: &str, title: &str) -> Value {
    json!({
        "payload": {"notification": {"category": "MARKETING", "title": title, "body": "b",
            "clickAction": {"actionType": 0}}},
        "target": {"token": [token]}
    })
}

/// `(queued, dropped with 256)` among a request's events.
async fn fate(app: &TestApp, request_id: &str) -> (usize, usize) {
    let events = events_of_request(app, request_id).await;
    let queued = events.iter().filter(|(o, _)| o == "queued").count();
    let dropped = events
        .iter()
        .filter(|e| *e == &("dropped".to_owned(), Some(256)))
        .count();
    (queued, dropped)
}

#[tokio::test]
async fn two_nodes_together_give_a_device_two_marketing_messages_a_day() {
    let test = "two_nodes_together_give_a_device_two_marketing_messages_a_day";
    let Some(pg) = postgres(test) else { return };
    let schema = Schema::new(&pg, "quota");
    let a = spawn_app_with(|c| c.store = schema.store()).await;
    let b = spawn_peer(&a).await;
    let (device, token) = device_with_token(&a).await;

    // B reads the device's MARKETING counter (0) and takes one; A then reads 1 and takes
    // the second. B's copy of the counter still says 1: only the store can refuse the
    // third, whichever node it goes through.
    let mut requests = Vec::new();
    for (node, title) in [(&b, "first"), (&a, "second"), (&b, "third"), (&a, "fourth")] {
        requests.push(send_marketing(node, &token, title).await);
    }
    let mut fates = Vec::new();
    for r in &requests {
        fates.push(fate(&a, r).await);
    }
    assert_eq!(fates, [(1, 0), (1, 0), (0, 1), (0, 1)]);

    // Either node's admin API shows a device's usage as the store counts it, though B's
    // own copy of this one's counter says 1.
    let (other, token) = device_with_token(&a).await;
    send_marketing(&b, &token, "one").await;
    send_marketing(&a, &token, "two").await;
    let device_id = other.credential.as_ref().unwrap().id.clone();
    for node in [&b, &a] {
        let admin =
            herald_client::admin::AdminClient::new(&node.url, &node.info.admin_token).unwrap();
        let r = admin
            .get(&format!(
                "/api/v1/apps/{}/quotas?device_id={device_id}",
                node.info.client_id
            ))
            .await
            .unwrap();
        assert_eq!(r.body["device"]["marketing_used"], 2, "{}", r.body);
    }
    drop(device);
}

/// A MARKETING notification through `node`, accepted; its request id.
async fn send_marketing(node: &TestApp, token: &str, title: &str) -> String {
    let (status, body) = node.send(marketing(token, title)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (200, Some("80000000")),
        "{body}"
    );
    body["requestId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_apps_send_rate_is_the_clusters_not_each_nodes() {
    let test = "an_apps_send_rate_is_the_clusters_not_each_nodes";
    let Some(pg) = postgres(test) else { return };
    let schema = Schema::new(&pg, "rate");
    let a = spawn_app_with(|c| c.store = schema.store()).await;
    let b = spawn_peer(&a).await;
    let admin = herald_client::admin::AdminClient::new(&a.url, &a.info.admin_token).unwrap();
    let r = admin
        .patch(
            &format!("/api/v1/apps/{}", a.info.client_id),
            &json!({"send_rate_per_sec": 3, "marketing_per_day": 100}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let (_device, token) = device_with_token(&a).await;

    // Three requests in one second through two nodes are the app's rate; the fourth,
    // through either node, is flow-controlled (each node alone would have let it pass).
    let mut codes = Vec::new();
    for (i, node) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let (status, body) = node.send(marketing(&token, &format!("m{i}"))).await;
        codes.push((status, body["code"].as_str().unwrap().to_owned()));
    }
    let ok = (200, "80000000".to_owned());
    let over = (503, "81000001".to_owned());
    assert_eq!(
        codes,
        [ok.clone(), ok.clone(), ok.clone(), over.clone(), over]
    );

    // The next second has a budget of its own.
    a.clock.advance_secs(1);
    let (status, body) = b.send(marketing(&token, "next second")).await;
    assert_eq!((status, body["code"].as_str()), (200, Some("80000000")));
}

/// The NATS URL, or `None` after printing that `test` was skipped.
fn nats(test: &str) -> Option<String> {
    match std::env::var("HERALD_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED {test}: HERALD_TEST_NATS_URL is not set");
            None
        }
    }
}

/// `(HTTP status, business code)` of a send through `node` signed with `jwt`.
async fn send_with(node: &TestApp, jwt: &str, body: &Value) -> (u16, String) {
    let (status, body) = node
        .send_raw(
            &node.info.project_id,
            Some(format!("Bearer {jwt}")),
            Some("0"),
            serde_json::to_vec(body).unwrap(),
        )
        .await;
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// Send through `node` until the answer is `code`, at most `within`; how long it took.
async fn until_code(
    node: &TestApp,
    jwt: &str,
    body: &Value,
    code: &str,
    within: std::time::Duration,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let (_, got) = send_with(node, jwt, body).await;
        if got == code {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{} still answers {got}, not {code}, after {within:?}",
            node.url
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Two nodes on one schema, with the bus when `bus` is set.
async fn two_nodes(schema: &Schema, bus: Option<&str>) -> (TestApp, TestApp) {
    let store = schema.store();
    let bus = bus.unwrap_or_default().to_owned();
    let a = spawn_app_with(|c| {
        c.store = store;
        c.bus = bus;
    })
    .await;
    // The app may send chat notifications (not MARKETING, 2 a day).
    a.state
        .store
        .change_right(herald_store::RightChange {
            client_id: a.info.client_id.clone(),
            name: "IM".into(),
            action: herald_core::rights::RightAction::Grant,
            reason: None,
            actor: "test".into(),
            at: herald_core::Clock::now_ms(&a.clock),
            ..Default::default()
        })
        .await
        .unwrap()
        .unwrap();
    let b = spawn_peer(&a).await;
    for node in [&a, &b] {
        crate::readiness::wait_ready(node, 200, std::time::Duration::from_secs(15)).await;
    }
    (a, b)
}

async fn revoked_keys_fail_everywhere(a: TestApp, b: TestApp, within: std::time::Duration) {
    let admin = herald_client::admin::AdminClient::new(&a.url, &a.info.admin_token).unwrap();
    let (_device, token) = device_with_token(&a).await;
    let body = notification(&[&token], "n");
    let jwt = a.jwt();
    // Both nodes have verified (and cached) this JWT and its key.
    for node in [&a, &b] {
        assert_eq!(send_with(node, &jwt, &body).await, (200, "80000000".into()));
    }
    let keys = format!("/api/v1/projects/{}/keys", a.info.project_id);
    let key_id = &a.key.key_id;
    let r = admin.delete(&format!("{keys}/{key_id}")).await.unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    // The node that revoked refuses at once, cached JWT or not; the other within a second.
    assert_eq!(send_with(&a, &jwt, &body).await, (401, "80200001".into()));
    let took = until_code(&b, &jwt, &body, "80200001", within).await;
    eprintln!("the other node refused the revoked key after {took:?}");
    let fresh = a.jwt_with(jsonwebtoken::Algorithm::RS256, |_| {});
    for node in [&a, &b] {
        assert_eq!(
            send_with(node, &fresh, &body).await,
            (401, "80200001".into())
        );
    }
    // Listed as revoked; an unknown key, or another project's, is 404.
    let listed = admin.get(&keys).await.unwrap();
    assert_eq!(listed.body[0]["revoked"], true, "{}", listed.body);
    assert!(listed.body[0]["revoked_at"].is_i64(), "{}", listed.body);
    let r = admin.delete(&format!("{keys}/no-such-key")).await.unwrap();
    assert_eq!(r.status, 404);
    let r = admin
        .delete(&format!("/api/v1/projects/other/keys/{key_id}"))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn a_revoked_key_is_refused_by_every_node_within_a_second_without_a_bus() {
    let test = "a_revoked_key_is_refused_by_every_node_within_a_second_without_a_bus";
    let Some(pg) = postgres(test) else { return };
    let schema = Schema::new(&pg, "revoke");
    let (a, b) = two_nodes(&schema, None).await;
    // Nothing tells B: it re-reads the key at least every 500 ms.
    revoked_keys_fail_everywhere(a, b, std::time::Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_by_every_node_at_once_with_the_bus() {
    let test = "a_revoked_key_is_refused_by_every_node_at_once_with_the_bus";
    let (Some(pg), Some(bus)) = (postgres(test), nats(test)) else {
        return;
    };
    let schema = Schema::new(&pg, "revokebus");
    let (a, b) = two_nodes(&schema, Some(&bus)).await;
    // The notice, not the 500 ms re-read, is what makes it this quick.
    revoked_keys_fail_everywhere(a, b, std::time::Duration::from_millis(300)).await;
}

/// The push service switched off through A: B, which had the project's switch in
/// memory, answers 80300002 too, and sends again once it is back on.
async fn the_push_switch_holds_everywhere(a: TestApp, b: TestApp, within: std::time::Duration) {
    let admin = herald_client::admin::AdminClient::new(&a.url, &a.info.admin_token).unwrap();
    let (_device, token) = device_with_token(&a).await;
    let body = notification(&[&token], "n");
    let jwt = a.jwt();
    for node in [&a, &b] {
        assert_eq!(send_with(node, &jwt, &body).await, (200, "80000000".into()));
    }
    let project = format!("/api/v1/projects/{}", a.info.project_id);
    let r = admin
        .patch(&project, &json!({"push_enabled": false}))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(send_with(&a, &jwt, &body).await, (400, "80300002".into()));
    let took = until_code(&b, &jwt, &body, "80300002", within).await;
    eprintln!("the other node refused after {took:?}");
    let r = admin
        .patch(&project, &json!({"push_enabled": true}))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    until_code(&b, &jwt, &body, "80000000", within).await;
}

#[tokio::test]
async fn the_push_switch_reaches_every_node_without_a_bus() {
    let test = "the_push_switch_reaches_every_node_without_a_bus";
    let Some(pg) = postgres(test) else { return };
    let schema = Schema::new(&pg, "switch");
    let (a, b) = two_nodes(&schema, None).await;
    // Without a bus B trusts no cache of shared state: it reads the switch every time.
    the_push_switch_holds_everywhere(a, b, std::time::Duration::from_millis(300)).await;
}

#[tokio::test]
async fn the_push_switch_reaches_every_node_at_once_with_the_bus() {
    let test = "the_push_switch_reaches_every_node_at_once_with_the_bus";
    let (Some(pg), Some(bus)) = (postgres(test), nats(test)) else {
        return;
    };
    let schema = Schema::new(&pg, "switchbus");
    let (a, b) = two_nodes(&schema, Some(&bus)).await;
    // B keeps the switch in memory; the bus notice makes it read it again.
    the_push_switch_holds_everywhere(a, b, std::time::Duration::from_millis(300)).await;
}

/// A device deletes its token on A; sends to it through B are dropped (5) within a
/// second, though B had the token cached.
async fn deleted_tokens_stop_everywhere(a: TestApp, b: TestApp) {
    let (mut device, token) = device_with_token(&a).await;
    let body = notification(&[&token], "n");
    let (_, first) = b.send(body.clone()).await;
    assert_eq!(first["code"], "80000000");
    let request = first["requestId"].as_str().unwrap().to_owned();
    assert_eq!(events_of_request(&b, &request).await[0].0, "queued");
    device
        .send(&herald_proto::device::ClientFrame::DeleteToken {
            client_id: a.info.client_id.clone(),
        })
        .await;
    loop {
        if let herald_proto::device::ServerFrame::TokenDeleted { .. } = device.next().await.unwrap()
        {
            break;
        }
    }
    let started = std::time::Instant::now();
    loop {
        let (_, answer) = b.send(body.clone()).await;
        let request = answer["requestId"].as_str().unwrap().to_owned();
        let events = events_of_request(&b, &request).await;
        if events == [("dropped".to_owned(), Some(5))] {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "B still queues for the deleted token: {events:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    eprintln!(
        "B dropped sends to the deleted token after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_deleted_token_stops_sends_on_every_node_without_a_bus() {
    let test = "a_deleted_token_stops_sends_on_every_node_without_a_bus";
    let Some(pg) = postgres(test) else { return };
    let schema = Schema::new(&pg, "deltok");
    let (a, b) = two_nodes(&schema, None).await;
    deleted_tokens_stop_everywhere(a, b).await;
}

#[tokio::test]
async fn a_deleted_token_stops_sends_on_every_node_with_the_bus() {
    let test = "a_deleted_token_stops_sends_on_every_node_with_the_bus";
    let (Some(pg), Some(bus)) = (postgres(test), nats(test)) else {
        return;
    };
    let schema = Schema::new(&pg, "deltokbus");
    let (a, b) = two_nodes(&schema, Some(&bus)).await;
    deleted_tokens_stop_everywhere(a, b).await;
}

#[tokio::test]
async fn a_device_on_two_nodes_keeps_its_newest_connection_and_gets_each_message_once() {
    let test = "a_device_on_two_nodes_keeps_its_newest_connection_and_gets_each_message_once";
    let (Some(pg), Some(bus)) = (postgres(test), nats(test)) else {
        return;
    };
    let schema = Schema::new(&pg, "stale");
    let (a, b) = two_nodes(&schema, Some(&bus)).await;
    let (mut on_a, token) = device_with_token(&a).await;
    // The same device says hello on B (its connection to A looks alive to A).
    let mut on_b = RawDevice::connect(&b).await;
    on_b.credential = on_a.credential.clone();
    on_b.hello().await;
    let started = std::time::Instant::now();
    assert_eq!(
        on_a.next().await.err(),
        Some(Some(herald_proto::device::close::REPLACED)),
        "A closes the stale connection"
    );
    eprintln!(
        "A closed the stale connection after {:?}",
        started.elapsed()
    );

    // A send through A reaches the device once, on B.
    let (_, answer) = a.send(notification(&[&token], "once")).await;
    assert_eq!(answer["code"], "80000000");
    let m = on_b.message().await;
    assert_eq!(m.payload["notification"]["title"], "once");
    assert_eq!(on_b.frames_before_marker(&b).await, [], "nothing twice");
    on_b.ack(&[&m.id]).await;
    wait_for_state(&b, &m.id, "delivered").await;

    // Back on A, newer again: B closes its connection, and A's is not closed by B's
    // older claim.
    let mut again = RawDevice::connect(&a).await;
    again.credential = on_a.credential.clone();
    again.hello().await;
    assert_eq!(
        on_b.next().await.err(),
        Some(Some(herald_proto::device::close::REPLACED))
    );
    let (_, answer) = b.send(notification(&[&token], "twice")).await;
    assert_eq!(answer["code"], "80000000");
    let m = again.message().await;
    assert_eq!(m.payload["notification"]["title"], "twice");
    assert_eq!(again.frames_before_marker(&a).await, [], "nothing twice");
}

/// A NATS server of the test's own on a free loopback port (never the shared one), that
/// the test stops and starts again on the same port. Killed when dropped.
struct OwnNats {
    port: u16,
    child: Option<std::process::Child>,
}

const NATS_SERVER: &str = "/usr/sbin/nats-server";

impl OwnNats {
    fn start() -> OwnNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut nats = OwnNats { port, child: None };
        nats.restart();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Start it (again) on its port and wait until it accepts connections.
    fn restart(&mut self) {
        let child = std::process::Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kill it (an outage) and wait until it is gone.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node keeps serving its devices while the bus is down, and a message another node
/// accepted meanwhile reaches them once the bus is back, on the same connection. The
/// nodes' metrics time store calls and bus publishes and count each node's devices.
#[tokio::test]
async fn a_node_serves_its_devices_through_a_bus_outage_and_catches_up_after() {
    let test = "a_node_serves_its_devices_through_a_bus_outage_and_catches_up_after";
    let Some(pg) = postgres(test) else { return };
    if !std::path::Path::new(NATS_SERVER).exists() {
        eprintln!("SKIPPED {test}: {NATS_SERVER} is not installed");
        return;
    }
    let mut nats = OwnNats::start();
    let schema = Schema::new(&pg, "outage");
    let (a, b) = two_nodes(&schema, Some(&nats.url())).await;
    let (mut device, token) = device_with_token(&b).await;
    let receive = async |device: &mut RawDevice, title: &str| {
        let m = device.message().await;
        assert_eq!(m.payload["notification"]["title"], title);
        device.ack(&[&m.id]).await;
    };
    let (_, answer) = a.send(notification(&[&token], "before")).await;
    assert_eq!(answer["code"], "80000000");
    receive(&mut device, "before").await;

    nats.stop();
    crate::readiness::wait_ready(&b, 503, std::time::Duration::from_secs(15)).await;
    // B still serves its device: a send through B reaches it at once.
    let (_, answer) = b.send(notification(&[&token], "during, via B")).await;
    assert_eq!(answer["code"], "80000000");
    receive(&mut device, "during, via B").await;
    // A send through A is stored; B cannot hear of it yet. A then stops: the notice it
    // holds for the bus is gone with it, and only B's catching up can bring the message.
    let (_, answer) = a.send(notification(&[&token], "during, via A")).await;
    assert_eq!(answer["code"], "80000000");
    a.stop().await;

    nats.restart();
    let started = std::time::Instant::now();
    crate::readiness::wait_ready(&b, 200, std::time::Duration::from_secs(30)).await;
    eprintln!(
        "B ready again {:?} after the bus came back",
        started.elapsed()
    );
    let m = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match device.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(herald_proto::device::ServerFrame::Message(m)) =
                        serde_json::from_str(t.as_str())
                    {
                        return m;
                    }
                }
                Some(Ok(_)) => continue,
                other => panic!("the device's connection closed: {other:?}"),
            }
        }
    })
    .await
    .expect("the message sent through A during the outage arrives once the bus is back");
    assert_eq!(m.payload["notification"]["title"], "during, via A");
    eprintln!("caught up {:?} after the bus came back", started.elapsed());
    device.ack(&[&m.id]).await;
    let before = device.frames_before_marker(&b).await;
    assert!(before.is_empty(), "{before:?}");
    // Nothing twice: a later send through B (a marker of the same app) comes next.
    let (_, answer) = b.send(notification(&[&token], "after")).await;
    assert_eq!(answer["code"], "80000000");
    let next = tokio::time::timeout(std::time::Duration::from_secs(30), device.message())
        .await
        .expect("the send after the outage arrives");
    assert_eq!(
        next.payload["notification"]["title"], "after",
        "nothing twice"
    );

    let metrics = b
        .http
        .get(format!("{}/metrics", b.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for wanted in [
        "herald_store_call_seconds_bucket{op=\"enqueue\"".to_owned(),
        "herald_bus_publish_seconds_bucket".to_owned(),
        format!(
            "herald_devices_connected{{node_id=\"{}\"}} 1",
            b.state.node_id
        ),
    ] {
        assert!(metrics.contains(&wanted), "{wanted} in:\n{metrics}");
    }
}
