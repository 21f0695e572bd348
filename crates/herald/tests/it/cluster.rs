//! Three `herald serve` processes on one PostgreSQL schema, started at the same moment:
//! one bootstrap, one project served by all three, messages sent through one node reach
//! a device on another. Skipped (and saying so) without `HERALD_TEST_POSTGRES_URL`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{DeviceProc, Server, cli, post_send, read_json, sign_jwt};

/// The PostgreSQL URL the tests may use, or `None` (the test prints SKIPPED).
fn postgres(test: &str) -> Option<String> {
    match std::env::var("HERALD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED {test}: HERALD_TEST_POSTGRES_URL is not set (see README, Tests)");
            None
        }
    }
}

/// A schema of its own for one test, dropped (with `psql`) when it goes out of scope.
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
            name: format!("herald_{test}_{}_{nanos}", std::process::id()),
        }
    }

    /// The store URL for `herald serve --store`.
    fn store_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.url, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let out = std::process::Command::new("psql")
            .arg(&self.url)
            .args([
                "-q",
                "-c",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("could not drop schema {}: {out:?}", self.name);
        }
    }
}

fn notification(token: &str, title: &str) -> Value {
    json!({"payload":{"notification":{"category":"MARKETING","title":title,"body":"b",
        "clickAction":{"actionType":0}}},
        "target":{"token":[token]},
        "pushOptions":{"testMessage":true}})
}

#[test]
fn three_nodes_on_one_postgresql_bootstrap_once_and_serve_one_project() {
    let Some(pg) = postgres("three_nodes_on_one_postgresql_bootstrap_once_and_serve_one_project")
    else {
        return;
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let schema = Schema::new(&pg, "three");
    let store = schema.store_url();
    let dir = tempfile::tempdir().unwrap();

    // Started at the same moment against the same empty schema.
    let nodes: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            Server::launch(
                &dir.path().join(n),
                &["--store", &store],
                &dir.path().join(format!("{n}.log")),
            )
        })
        .collect();
    for node in &nodes {
        node.wait_healthy();
    }

    // Exactly one node bootstrapped; the others said so and serve its project.
    let booted: Vec<usize> = (0..3)
        .filter(|&i| nodes[i].data_dir.join("bootstrap.json").exists())
        .collect();
    assert_eq!(booted.len(), 1, "exactly one bootstrap, got {booted:?}");
    let booter = booted[0];
    for (i, node) in nodes.iter().enumerate() {
        let key_file = node.data_dir.join("service-account.json").exists();
        assert_eq!(
            key_file,
            i == booter,
            "only the bootstrapping node writes the key"
        );
        let log = std::fs::read_to_string(dir.path().join(format!("{}.log", ["a", "b", "c"][i])))
            .unwrap();
        if i != booter {
            assert!(
                log.contains("already bootstrapped"),
                "node {i} says the store was bootstrapped by another: {log}"
            );
        }
        let node_id = std::fs::read_to_string(node.data_dir.join("node-id")).unwrap();
        assert!(node_id.trim().starts_with("node-"), "{node_id}");
    }
    let boot = nodes[booter].bootstrap();
    let key = read_json(std::path::Path::new(
        boot["service_account_file"].as_str().unwrap(),
    ));
    let project = boot["project_id"].as_str().unwrap().to_owned();
    let client_id = boot["client_id"].as_str().unwrap().to_owned();
    let jwt = sign_jwt(&key);

    // A device on node B (any node but A = nodes[0]).
    let (a, b) = (&nodes[0], &nodes[1]);
    let state = dir.path().join("device");
    let device = DeviceProc::start(&b.url, &client_id, &state, &[]);
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Every node accepts a send signed with the one bootstrap's key.
    for (i, node) in nodes.iter().enumerate() {
        let (status, body) = post_send(
            &node.url,
            &project,
            &jwt,
            &notification(&token, &format!("via-{i}")),
        );
        assert_eq!(
            (status, body["code"].as_str()),
            (200, Some("80000000")),
            "node {i}: {body}"
        );
    }
    // And each /readyz says the shared store answers.
    for node in &nodes {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let code = rt.block_on(async {
            reqwest::get(format!("{}/readyz", node.url))
                .await
                .unwrap()
                .status()
                .as_u16()
        });
        assert_eq!(code, 200);
    }

    // Without a bus, node B learns of a message sent through A when the device next
    // reads its queue: on reconnecting to B.
    drop(device);
    let (status, body) = post_send(&a.url, &project, &jwt, &notification(&token, "from-a"));
    assert_eq!((status, body["code"].as_str()), (200, Some("80000000")));
    let device = DeviceProc::start(&b.url, &client_id, &state, &[]);
    // The device on B gets the message sent through A (the wait fails otherwise), the
    // last of its backlog (oldest first).
    let titles: Vec<String> = device
        .until(Duration::from_secs(60), |v| {
            v["event"] == "notification" && v["title"] == "from-a"
        })
        .into_iter()
        .filter(|v| v["event"] == "notification")
        .map(|v| v["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut unique = titles.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), titles.len(), "nothing twice: {titles:?}");
    drop(device);
    drop(nodes);
}

/// The NATS URL the bus tests may use, or `None` (the test prints SKIPPED).
fn nats(test: &str) -> Option<String> {
    match std::env::var("HERALD_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED {test}: HERALD_TEST_NATS_URL is not set (see README, Tests)");
            None
        }
    }
}

/// GET `/readyz` until it answers 200 (the store and the bus are up), at most 20 s.
fn wait_ready(node: &Server) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let code = rt.block_on(async {
            match reqwest::get(format!("{}/readyz", node.url)).await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            }
        });
        if code == 200 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} not ready: {code}",
            node.url
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn with_the_nats_bus_a_device_on_b_gets_a_send_through_a_at_once() {
    let test = "with_the_nats_bus_a_device_on_b_gets_a_send_through_a_at_once";
    let (Some(pg), Some(bus)) = (postgres(test), nats(test)) else {
        return;
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let schema = Schema::new(&pg, "bus");
    let store = schema.store_url();
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            Server::launch(
                &dir.path().join(n),
                &["--store", &store, "--bus", &bus],
                &dir.path().join(format!("{n}.log")),
            )
        })
        .collect();
    for node in &nodes {
        node.wait_healthy();
        wait_ready(node);
    }
    let booter = nodes
        .iter()
        .position(|n| n.data_dir.join("bootstrap.json").exists())
        .expect("one node bootstrapped");
    let boot = nodes[booter].bootstrap();
    let key = read_json(std::path::Path::new(
        boot["service_account_file"].as_str().unwrap(),
    ));
    let project = boot["project_id"].as_str().unwrap().to_owned();
    let client_id = boot["client_id"].as_str().unwrap().to_owned();
    let jwt = sign_jwt(&key);

    let (a, b) = (&nodes[0], &nodes[1]);
    let device = DeviceProc::start(&b.url, &client_id, &dir.path().join("device"), &[]);
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A first send through A reaches the device on B without a reconnection (this one
    // may wait for the bus subscriptions to settle) …
    let (status, body) = post_send(&a.url, &project, &jwt, &notification(&token, "warm-up"));
    assert_eq!((status, body["code"].as_str()), (200, Some("80000000")));
    let got = device.expect("notification", Duration::from_secs(60));
    assert_eq!(got["title"], "warm-up");

    // … and then each one, through A and through C, on the same connection: without the
    // bus, B would hand them over only when the device reconnects. (An ordering, not a
    // duration: a loaded machine may take longer than the usual milliseconds.)
    let mut shown = Vec::new();
    for (i, via) in [(0usize, "a"), (2, "c"), (0, "a-again")] {
        let title = format!("through-{via}");
        let started = std::time::Instant::now();
        let (status, body) =
            post_send(&nodes[i].url, &project, &jwt, &notification(&token, &title));
        assert_eq!((status, body["code"].as_str()), (200, Some("80000000")));
        let before = device.until(Duration::from_secs(60), |v| {
            v["event"] == "notification" && v["title"] == title.as_str()
        });
        assert!(
            before
                .iter()
                .all(|v| v["event"] != "connected" && v["event"] != "disconnected"),
            "{title} came without a reconnection: {before:?}"
        );
        shown.extend(before.into_iter().filter(|v| v["event"] == "notification"));
        eprintln!(
            "{title}: on the device on B {:?} after the send",
            started.elapsed()
        );
    }
    // Nothing twice: no notification came between the ones awaited.
    assert!(shown.is_empty(), "no duplicates: {shown:?}");
    drop(device);
    drop(nodes);
}

/// Three nodes with `--store` and `--bus`, started at once and ready; with the booted
/// node's key file, project and app.
struct Cluster {
    nodes: Vec<Server>,
    key: Value,
    project: String,
    client_id: String,
    admin_token: String,
    dir: tempfile::TempDir,
    _schema: Schema,
}

fn cluster(pg: &str, bus: &str, name: &str) -> Cluster {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let schema = Schema::new(pg, name);
    let store = schema.store_url();
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            Server::launch(
                &dir.path().join(n),
                &["--store", &store, "--bus", bus],
                &dir.path().join(format!("{n}.log")),
            )
        })
        .collect();
    for node in &nodes {
        node.wait_healthy();
        wait_ready(node);
    }
    let booter = nodes
        .iter()
        .position(|n| n.data_dir.join("bootstrap.json").exists())
        .expect("one node bootstrapped");
    let boot = nodes[booter].bootstrap();
    Cluster {
        key: read_json(std::path::Path::new(
            boot["service_account_file"].as_str().unwrap(),
        )),
        project: boot["project_id"].as_str().unwrap().to_owned(),
        client_id: boot["client_id"].as_str().unwrap().to_owned(),
        admin_token: boot["admin_token"].as_str().unwrap().to_owned(),
        nodes,
        dir,
        _schema: schema,
    }
}

fn title(v: &Value) -> String {
    v["title"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_device_whose_node_is_killed_moves_to_the_next_and_misses_nothing() {
    let test = "a_device_whose_node_is_killed_moves_to_the_next_and_misses_nothing";
    let (Some(pg), Some(bus)) = (postgres(test), nats(test)) else {
        return;
    };
    let mut c = cluster(&pg, &bus, "failover");
    let jwt = sign_jwt(&c.key);
    let (a, b, node_c) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let (a_url, c_port) = (a.url.clone(), node_c.port());
    // The device knows B and C, in that order: it starts on B.
    let servers = format!("{},{}", b.url, node_c.url);
    let device = DeviceProc::start(&servers, &c.client_id, &c.dir.path().join("device"), &[]);
    let first = device.expect("connected", Duration::from_secs(20));
    assert!(
        first["server"]
            .as_str()
            .unwrap()
            .contains(&b.port().to_string()),
        "{first}"
    );
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let send = |t: &str| {
        let (status, body) = post_send(&a_url, &c.project, &jwt, &notification(&token, t));
        assert_eq!(
            (status, body["code"].as_str()),
            (200, Some("80000000")),
            "{body}"
        );
    };
    let mut titles = Vec::new();
    for i in 0..3 {
        send(&format!("live-{i}"));
        titles.push(title(
            &device.expect("notification", Duration::from_secs(10)),
        ));
    }

    // B dies without a word; what is sent meanwhile is stored.
    c.nodes.remove(1).kill9();
    let killed = std::time::Instant::now();
    for i in 0..5 {
        send(&format!("queued-{i}"));
    }
    let moved = device.expect("connected", Duration::from_secs(30));
    assert!(
        moved["server"]
            .as_str()
            .unwrap()
            .contains(&c_port.to_string()),
        "the device moved to C: {moved}"
    );
    eprintln!(
        "the device was on C {:?} after B was killed",
        killed.elapsed()
    );
    // Everything queued comes before a marker sent last (nothing twice, nothing late).
    send("marker");
    titles.extend(
        device
            .until(Duration::from_secs(60), |v| {
                v["event"] == "notification" && v["title"] == "marker"
            })
            .iter()
            .filter(|v| v["event"] == "notification")
            .map(title),
    );
    let mut expected: Vec<String> = (0..3)
        .map(|i| format!("live-{i}"))
        .chain((0..5).map(|i| format!("queued-{i}")))
        .collect();
    expected.sort();
    titles.sort();
    assert_eq!(titles, expected, "everything, nothing twice");
}

#[test]
fn a_key_revoked_with_herald_admin_is_refused_by_every_node_within_a_second() {
    let test = "a_key_revoked_with_herald_admin_is_refused_by_every_node_within_a_second";
    let (Some(pg), Some(bus)) = (postgres(test), nats(test)) else {
        return;
    };
    let c = cluster(&pg, &bus, "revoke");
    let jwt = sign_jwt(&c.key);
    let token = "MAMzLg8xOTk4AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let body = notification(token, "n");
    // Every node has verified (and cached) the JWT.
    for node in &c.nodes {
        let (status, answer) = post_send(&node.url, &c.project, &jwt, &body);
        assert_eq!(
            (status, answer["code"].as_str()),
            (200, Some("80000000")),
            "{answer}"
        );
    }
    let key_id = c.key["key_id"].as_str().unwrap();
    let admin = |args: &[&str]| {
        let all: Vec<&str> = [
            "admin",
            "--server",
            &c.nodes[0].url,
            "--token",
            &c.admin_token,
        ]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
        cli(&all, c.dir.path())
    };
    let (ok, out) = admin(&["key", "revoke", "--key-id", key_id]);
    assert!(ok, "{out}");
    assert_eq!(out["revoked"], true, "{out}");
    let revoked = std::time::Instant::now();
    for node in &c.nodes {
        loop {
            let (status, answer) = post_send(&node.url, &c.project, &jwt, &body);
            if (status, answer["code"].as_str()) == (401, Some("80200001")) {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "{} still accepts the revoked key: {answer}",
                node.url
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!(
        "every node refused the key {:?} after its revocation",
        revoked.elapsed()
    );
    let (ok, keys) = admin(&["key", "list", "--project-id", &c.project]);
    assert!(ok, "{keys}");
    assert_eq!(keys[0]["revoked"], true, "{keys}");
    let (ok, _) = admin(&["key", "revoke", "--key-id", "no-such-key"]);
    assert!(!ok, "an unknown key is an error");
}
