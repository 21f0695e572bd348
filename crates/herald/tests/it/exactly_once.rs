//! Exactly-once, proven across `kill -9`: sustained sends to devices that are online and
//! devices that come and go, the server killed with SIGKILL several times at random
//! moments (right after a device's ack, right after a receipt was answered, right after
//! a send was accepted, or after a random delay) and restarted on the same data.
//!
//! Everything is counted where it lands, before any de-duplication: every `message`
//! frame per id at raw protocol devices (no SDK, so nothing is dropped as a duplicate),
//! every receipt status per (requestId, token) at a real HTTP receiver. Between a kill and
//! the restart the test opens the dead server's store and records what it had made
//! durable: which deliveries were still queued, which receipts still pending. It fails on
//!
//! - a loss: a (requestId, token) answered `80000000` that never reached its device and
//!   was not reported expired (receipt 14) by its TTL;
//! - a message frame sent twice on one connection, or sent again after a kill at which
//!   the store no longer had it queued (its ack was durable);
//! - a receipt posted again after it was acknowledged (the receiver answered `{"code":"0"}`),
//!   unless every kill in between found it still pending in the store (the one window
//!   at-least-once allows: killed between the endpoint's answer and the mark);
//! - an accepted delivery still queued, or a receipt still pending, after the run.
//!
//! `HERALD_SOAK_SECS` (set by `scripts/soak`) runs it for that long instead of the short
//! CI form; `HERALD_SOAK_SEED` replays a run's random choices (the seed is printed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use herald_proto::device::{ClientFrame, DeviceCredential, ReportStatus, ServerFrame};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::process::{Server, admin, read_json, sign_jwt};

/// Devices that reconnect as soon as the server is back.
const ONLINE: usize = 4;
/// Devices that are connected in every other incarnation only (offline in between, so
/// their messages wait in the store across kills).
const INTERMITTENT: usize = 4;
/// Concurrent senders, each sending one request per `PACE`.
const SENDERS: usize = 2;
/// Keeps each intermittent device's queue well under the 120-message offline cap.
const PACE: Duration = Duration::from_millis(30);
/// One send in this many has a 1-second TTL (so some expire while their device is away).
const SHORT_TTL_ONE_IN: u64 = 8;
const SHORT_TTL_SECS: u64 = 1;
/// Kills in the short (CI) form.
const CI_KILLS: usize = 10;
/// Bounds a failing wait only.
const PATIENCE: Duration = Duration::from_secs(60);

/// The server's settings for the run: the per-address limits lifted for this test's
/// many loopback devices, no rate limit in the way, and the timers that end a run
/// (expiry sweep, the wait for a device's report, the receipt batch window) short.
const SERVER_ENV: [(&str, &str); 6] = [
    ("HERALD_LIMITS_EXEMPT", "127.0.0.0/8"),
    ("HERALD_SEND_RATE_PER_SEC", "100000"),
    ("HERALD_DEVICE_DAILY_TOTAL", "10000000"),
    ("HERALD_EXPIRY_SWEEP_SECS", "1"),
    ("HERALD_RECEIPT_REPORT_WAIT_SECS", "2"),
    ("HERALD_RECEIPT_BATCH_WINDOW_MS", "50"),
];

/// What makes the server die in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// Right after a device sent an ack frame.
    AfterAck,
    /// Right after the receiver answered a receipt callback.
    AfterReceipt,
    /// Right after a send was answered `80000000`.
    AfterAccept,
    /// After a random delay.
    Delay,
}

const TRIGGERS: [Trigger; 4] = [
    Trigger::AfterAck,
    Trigger::AfterReceipt,
    Trigger::AfterAccept,
    Trigger::Delay,
];

/// One `message` frame as a device received it.
#[derive(Debug, Clone)]
struct Frame {
    device: usize,
    /// The device's connection number (each connection is to one incarnation).
    connection: u64,
    incarnation: u64,
    /// Its place among the frames of its connection.
    nth: usize,
    id: String,
    request_id: String,
    token: String,
}

/// One status of one receipt callback, as the receiver answered it.
#[derive(Debug, Clone)]
struct Posted {
    incarnation: u64,
    key: (String, String),
    result: u64,
}

/// What happened, as the test saw it.
#[derive(Default)]
struct Record {
    /// (requestId, tokens, short TTL) of every send answered `80000000`.
    accepted: Mutex<Vec<(String, Vec<String>, bool)>>,
    frames: Mutex<Vec<Frame>>,
    posted: Mutex<Vec<Posted>>,
    acks_sent: AtomicU64,
    /// The incarnation receipt posts are attributed to: moved on by the test between a
    /// kill (once the dead server's callback connections are closed) and the restart.
    incarnation: AtomicU64,
    /// Signals for the kill triggers.
    acked: Notify,
    answered: Notify,
    accepted_one: Notify,
}

/// The server's life as devices and senders see it: `Some(incarnation)` while it runs.
type Up = watch::Receiver<Option<u64>>;

#[test]
fn every_accepted_message_arrives_and_every_receipt_is_posted_once_across_kill_9() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let soak = std::env::var("HERALD_SOAK_SECS")
        .ok()
        .map(|s| Duration::from_secs(s.parse().expect("HERALD_SOAK_SECS is a number of seconds")));
    let seed = std::env::var("HERALD_SOAK_SEED")
        .ok()
        .map(|s| s.parse().expect("HERALD_SOAK_SEED is a number"))
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("exactly-once: seed {seed} (HERALD_SOAK_SEED={seed} replays the choices)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(soak, seed));
}

async fn run(soak: Option<Duration>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let record = Arc::new(Record {
        incarnation: AtomicU64::new(1),
        ..Record::default()
    });
    let (receiver_url, open_connections) = start_receiver(record.clone()).await;

    // Incarnation 1: bootstrap, the app's IM right, the receipt configuration, devices.
    let port = free_port();
    let mut server = Some(start_server(&data, port).await);
    let url = format!("http://127.0.0.1:{port}");
    let boot_path = data.join("bootstrap.json");
    let boot = read_json(&boot_path);
    let client_id = boot["client_id"].as_str().unwrap().to_owned();
    let project = boot["project_id"].as_str().unwrap().to_owned();
    let key = read_json(Path::new(boot["service_account_file"].as_str().unwrap()));
    admin_ok(
        &boot_path,
        &[
            "rights",
            "grant",
            "--client-id",
            &client_id,
            "--category",
            "IM",
        ],
    )
    .await;
    admin_ok(&boot_path, &["receipt", "create", "--url", &receiver_url]).await;
    let mut devices = Vec::new();
    for _ in 0..ONLINE + INTERMITTENT {
        devices.push(register(&url, &client_id).await);
    }
    let tokens: Vec<String> = devices.iter().map(|d| d.1.clone()).collect();

    let (up_tx, up) = watch::channel(Some(1u64));
    let (everyone_tx, everyone) = watch::channel(false);
    let (load_tx, load) = watch::channel(true);
    let mut tasks = Vec::new();
    for (i, (credential, _)) in devices.into_iter().enumerate() {
        tasks.push(tokio::spawn(device(
            i,
            credential,
            url.clone(),
            up.clone(),
            everyone.clone(),
            record.clone(),
        )));
    }
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            tokio::spawn(sender(
                format!("{url}/v3/{project}/messages:send"),
                key.clone(),
                tokens.clone(),
                seed.wrapping_add(s as u64 + 1),
                up.clone(),
                load.clone(),
                record.clone(),
            ))
        })
        .collect();

    // The rounds: load, a kill at a chosen moment, the dead store read, a restart.
    let started = Instant::now();
    let mut inspections = Vec::new();
    let mut kills: BTreeMap<String, usize> = BTreeMap::new();
    let mut incarnation = 1u64;
    loop {
        let done = match soak {
            Some(d) => started.elapsed() >= d,
            None => inspections.len() >= CI_KILLS,
        };
        if done {
            break;
        }
        // The kill lands under load: wait until this incarnation has accepted some sends.
        let before = record.accepted.lock().unwrap().len();
        let wanted = rng.random_range(10..80);
        wait_until("sends accepted by the new incarnation", || {
            record.accepted.lock().unwrap().len() >= before + wanted
        })
        .await;
        let trigger = match soak {
            None => TRIGGERS[inspections.len() % TRIGGERS.len()],
            Some(_) => TRIGGERS[rng.random_range(0..TRIGGERS.len())],
        };
        match trigger {
            Trigger::AfterAck => record.acked.notified().await,
            Trigger::AfterReceipt => record.answered.notified().await,
            Trigger::AfterAccept => record.accepted_one.notified().await,
            Trigger::Delay => {
                // tidy: the kill moment itself is what this test randomises
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..800))).await;
            }
        }
        up_tx.send_replace(None);
        kill9(server.take().unwrap()).await;
        *kills.entry(format!("{trigger:?}")).or_default() += 1;

        // Every callback connection of the dead process is closed (so every receipt it
        // posted has been counted, under this incarnation) before its store is read.
        wait_until("the dead server's callback connections to close", || {
            open_connections.load(Ordering::SeqCst) == 0
        })
        .await;
        inspections.push(inspect(&data, incarnation, &record, &inspections).await);

        incarnation += 1;
        record.incarnation.store(incarnation, Ordering::SeqCst);
        server = Some(start_server(&data, port).await);
        up_tx.send_replace(Some(incarnation));
    }

    // The end: no more sends, every device online until everything accepted has arrived
    // (or expired) and every receipt has been acknowledged.
    load_tx.send_replace(false);
    for s in senders {
        s.await.unwrap();
    }
    everyone_tx.send_replace(true);
    let accepted = record.accepted.lock().unwrap().clone();
    // Not a panic when it times out: the verdict below says what is missing.
    let _ = eventually(|| outstanding(&accepted, &record).is_empty()).await;
    // A graceful stop: acks and reports still in the server's queue are written.
    up_tx.send_replace(None);
    let status = server.take().unwrap().terminate();
    assert!(status.success(), "herald serve exited with {status}");
    for t in tasks {
        t.await.unwrap();
    }
    let settled = inspect_settled(&data, &accepted).await;

    let report = judge(&accepted, &record, &inspections, &settled);
    eprintln!(
        "exactly-once: {} kills {kills:?} in {:.1} s; {report}",
        inspections.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
}

/// The dead server's store between a kill and the restart.
#[derive(Debug, Default)]
struct Inspection {
    /// The incarnation that was killed.
    incarnation: u64,
    /// Ids received so far that the store still had queued (a redelivery is allowed).
    queued: HashSet<String>,
    /// Ids received so far that it no longer had queued: never to be sent again.
    settled: HashSet<String>,
    /// Ids received so far that the store does not have at all.
    unknown: HashSet<String>,
    /// Receipts (requestId, token) still pending.
    pending_receipts: HashSet<(String, String)>,
}

async fn open(data: &Path) -> Arc<dyn herald_store::Store> {
    let url = format!(
        "sqlite:{}",
        data.join(herald_server::DATABASE_FILE).display()
    );
    herald_store::open_store(&url, &herald_store::OpenOptions::default())
        .await
        .expect("the dead server's store opens")
}

async fn inspect(
    data: &Path,
    incarnation: u64,
    record: &Record,
    earlier: &[Inspection],
) -> Inspection {
    let store = open(data).await;
    let mut out = Inspection {
        incarnation,
        ..Inspection::default()
    };
    let received: HashSet<String> = record
        .frames
        .lock()
        .unwrap()
        .iter()
        .map(|f| f.id.clone())
        .collect();
    for id in received {
        // States only move forward: an id settled at an earlier kill stays settled.
        if earlier.iter().any(|i| i.settled.contains(&id)) {
            out.settled.insert(id);
            continue;
        }
        if earlier.iter().any(|i| i.unknown.contains(&id)) {
            continue;
        }
        let events = store.events_for(&id).await.expect("events");
        match events.last().map(|e| e.outcome.name()) {
            Some("queued") => out.queued.insert(id),
            Some(_) => out.settled.insert(id),
            // Sent to a device, yet not in the store after the kill: it was never
            // committed (a device must only get what is durable).
            None => out.unknown.insert(id),
        };
    }
    for due in store
        .due_receipts(i64::MAX, 1_000_000)
        .await
        .expect("receipts")
    {
        for r in due.receipts {
            out.pending_receipts.insert((r.request_id, r.token));
        }
    }
    store.close().await;
    out
}

/// After the graceful stop: every accepted delivery whose store state is still queued
/// (there must be none), and how many receipts are still pending.
#[derive(Debug)]
struct Settled {
    still_queued: Vec<(String, String)>,
    pending_receipts: u64,
}

async fn inspect_settled(data: &Path, accepted: &[(String, Vec<String>, bool)]) -> Settled {
    let store = open(data).await;
    let mut still_queued = Vec::new();
    for (request, tokens, _) in accepted {
        for token in tokens {
            let events = store
                .events_of_request(request, Some(token))
                .await
                .expect("events");
            if events.last().is_none_or(|e| e.outcome.name() == "queued") {
                still_queued.push((request.clone(), token.clone()));
            }
        }
    }
    let pending_receipts = store.pending_receipts().await.expect("receipts");
    store.close().await;
    Settled {
        still_queued,
        pending_receipts,
    }
}

/// Accepted (requestId, token) pairs not yet delivered-or-expired, or without an
/// acknowledged receipt.
fn outstanding(accepted: &[(String, Vec<String>, bool)], record: &Record) -> Vec<String> {
    let delivered: HashSet<(String, String)> = record
        .frames
        .lock()
        .unwrap()
        .iter()
        .map(|f| (f.request_id.clone(), f.token.clone()))
        .collect();
    let receipts: HashMap<(String, String), u64> = record
        .posted
        .lock()
        .unwrap()
        .iter()
        .map(|p| (p.key.clone(), p.result))
        .collect();
    let mut out = Vec::new();
    for (request, tokens, _) in accepted {
        for token in tokens {
            let key = (request.clone(), token.clone());
            let expired = receipts.get(&key) == Some(&14);
            if !delivered.contains(&key) && !expired {
                out.push(format!("{request}/{token}: not delivered"));
            }
            if !receipts.contains_key(&key) {
                out.push(format!("{request}/{token}: no receipt"));
            }
        }
    }
    out
}

/// The verdict, and numbers worth printing.
#[derive(Debug, Default)]
struct Report {
    violations: Vec<String>,
    accepted: usize,
    frames: usize,
    redelivered_after_kill: usize,
    expired: usize,
    posted: usize,
    reposted_in_window: usize,
    acks_sent: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} deliveries accepted, {} message frames ({} sent again after a kill that found \
             them still queued), {} expired by TTL, {} acks sent, {} receipt statuses posted \
             ({} again after a kill that found them still pending)",
            self.accepted,
            self.frames,
            self.redelivered_after_kill,
            self.expired,
            self.acks_sent,
            self.posted,
            self.reposted_in_window
        )
    }
}

fn judge(
    accepted: &[(String, Vec<String>, bool)],
    record: &Record,
    inspections: &[Inspection],
    settled: &Settled,
) -> Report {
    let frames = record.frames.lock().unwrap().clone();
    let posted = record.posted.lock().unwrap().clone();
    let mut r = Report {
        accepted: accepted.iter().map(|a| a.1.len()).sum(),
        frames: frames.len(),
        posted: posted.len(),
        acks_sent: record.acks_sent.load(Ordering::SeqCst),
        ..Report::default()
    };
    let inspection = |incarnation: u64| inspections.iter().find(|i| i.incarnation == incarnation);

    // Frames: once per connection; again on a later connection only if every kill in
    // between found the delivery still queued.
    let mut by_id: HashMap<&str, Vec<&Frame>> = HashMap::new();
    for f in &frames {
        by_id.entry(&f.id).or_default().push(f);
    }
    for (id, seen) in &by_id {
        for pair in seen.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.connection == b.connection && a.device == b.device {
                r.violations.push(format!(
                    "{id} sent twice on one connection of device {} (its frames {} and {})",
                    a.device, a.nth, b.nth
                ));
                continue;
            }
            let allowed = (a.incarnation..b.incarnation)
                .all(|k| inspection(k).is_some_and(|i| i.queued.contains(*id)));
            if b.incarnation > a.incarnation && allowed {
                r.redelivered_after_kill += 1;
            } else {
                r.violations.push(format!(
                    "{id} sent again in incarnation {} after incarnation {} although its ack \
                     was durable (or without a kill in between)",
                    b.incarnation, a.incarnation
                ));
            }
        }
    }

    // Receipts: posted again after an acknowledgement only across kills that all found
    // it still pending.
    let mut by_key: HashMap<&(String, String), Vec<&Posted>> = HashMap::new();
    for p in &posted {
        by_key.entry(&p.key).or_default().push(p);
    }
    for (key, posts) in &by_key {
        for pair in posts.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let allowed = b.incarnation > a.incarnation
                && (a.incarnation..b.incarnation)
                    .all(|k| inspection(k).is_some_and(|i| i.pending_receipts.contains(*key)));
            if allowed {
                r.reposted_in_window += 1;
            } else {
                r.violations.push(format!(
                    "receipt {key:?} posted again in incarnation {} after it was acknowledged \
                     in incarnation {} (results {} then {})",
                    b.incarnation, a.incarnation, a.result, b.result
                ));
            }
        }
    }

    for i in inspections {
        for id in &i.unknown {
            r.violations.push(format!(
                "{id} reached a device but was not in the store after kill {}",
                i.incarnation
            ));
        }
    }

    // Losses, and what the store says at the end.
    let delivered: HashSet<(&str, &str)> = frames
        .iter()
        .map(|f| (f.request_id.as_str(), f.token.as_str()))
        .collect();
    let results: HashMap<&(String, String), HashSet<u64>> = by_key
        .iter()
        .map(|(k, posts)| (*k, posts.iter().map(|p| p.result).collect()))
        .collect();
    for (request, tokens, short) in accepted {
        for token in tokens {
            let key = (request.clone(), token.clone());
            let codes = results.get(&key).cloned().unwrap_or_default();
            let expired = codes.contains(&14);
            r.expired += usize::from(expired);
            if expired && !short {
                r.violations
                    .push(format!("{request}/{token} expired with a TTL of a day"));
            }
            if !delivered.contains(&(request.as_str(), token.as_str())) && !expired {
                r.violations.push(format!(
                    "{request}/{token} answered 80000000 and lost (receipts {codes:?})"
                ));
            }
            if codes.is_empty() {
                r.violations.push(format!("{request}/{token}: no receipt"));
            }
            if codes.len() > 1 {
                r.violations.push(format!(
                    "{request}/{token}: receipts with results {codes:?}"
                ));
            }
        }
    }
    if r.violations.len() > 50 {
        let more = r.violations.len() - 50;
        r.violations.truncate(50);
        r.violations.push(format!("… and {more} more"));
    }
    for (request, token) in &settled.still_queued {
        r.violations.push(format!(
            "{request}/{token} still queued after the run (an ack was lost)"
        ));
    }
    if settled.pending_receipts > 0 {
        r.violations.push(format!(
            "{} receipts still pending after the run",
            settled.pending_receipts
        ));
    }
    r
}

/// A raw protocol device: registered once, then (re)connecting whenever the server is up
/// and it is meant to be online; counts every message frame, acks each at once and
/// reports the first copy shown.
async fn device(
    index: usize,
    credential: DeviceCredential,
    url: String,
    mut up: Up,
    mut everyone: watch::Receiver<bool>,
    record: Arc<Record>,
) {
    let ws_url = format!(
        "{}{}",
        url.replacen("http", "ws", 1),
        herald_proto::device::WS_PATH
    );
    let intermittent = index >= ONLINE;
    let mut connection = 0u64;
    let mut reported = HashSet::new();
    loop {
        // Online while the server is up; an intermittent device only in every other
        // incarnation (and at the end, when everyone is).
        let incarnation = loop {
            let current = *up.borrow_and_update();
            let all = *everyone.borrow_and_update();
            match current {
                Some(inc) if !intermittent || all || (inc + index as u64).is_multiple_of(2) => {
                    break inc;
                }
                None if all => return,
                _ => {}
            }
            tokio::select! {
                changed = up.changed() => if changed.is_err() { return },
                changed = everyone.changed() => if changed.is_err() { return },
            }
        };
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&ws_url).await else {
            // The server went down between the signal and the connect: wait for news.
            let _ = up.changed().await;
            continue;
        };
        let hello = ClientFrame::Hello {
            version: 1,
            device: Some(credential.clone()),
        };
        if ws.send(text(&hello)).await.is_err() {
            continue;
        }
        match ws.next().await {
            Some(Ok(Message::Text(t)))
                if matches!(
                    serde_json::from_str(t.as_str()),
                    Ok(ServerFrame::Welcome { .. })
                ) => {}
            _ => continue,
        }
        // The welcome came from the incarnation the device meant to reach only if the test
        // has not started killing it (it marks the server down first).
        if *up.borrow() != Some(incarnation) {
            continue;
        }
        connection += 1;
        let mut nth = 0;
        // Read until the connection ends: with the server's death, or at the graceful end.
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(t) = frame else { continue };
            let Ok(ServerFrame::Message(m)) = serde_json::from_str(t.as_str()) else {
                continue;
            };
            nth += 1;
            record.frames.lock().unwrap().push(Frame {
                device: index,
                connection,
                incarnation,
                nth,
                id: m.id.clone(),
                request_id: m.request_id.clone(),
                token: m.token.clone(),
            });
            let ack = ClientFrame::Ack {
                ids: vec![m.id.clone()],
            };
            if ws.send(text(&ack)).await.is_err() {
                break;
            }
            record.acks_sent.fetch_add(1, Ordering::SeqCst);
            record.acked.notify_waiters();
            if reported.insert(m.id.clone()) {
                let shown = ClientFrame::Report {
                    id: m.id,
                    status: ReportStatus::Shown,
                    code: None,
                };
                if ws.send(text(&shown)).await.is_err() {
                    break;
                }
            }
        }
    }
}

fn text(frame: &ClientFrame) -> Message {
    Message::Text(serde_json::to_string(frame).unwrap().into())
}

/// Registers a device with the server and gets its token for the app.
async fn register(url: &str, client_id: &str) -> (DeviceCredential, String) {
    let ws_url = format!(
        "{}{}",
        url.replacen("http", "ws", 1),
        herald_proto::device::WS_PATH
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    ws.send(text(&ClientFrame::Hello {
        version: 1,
        device: None,
    }))
    .await
    .unwrap();
    let mut credential = None;
    ws.send(text(&ClientFrame::GetToken {
        client_id: client_id.to_owned(),
    }))
    .await
    .unwrap();
    loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            panic!("the server closed a registering device");
        };
        match serde_json::from_str(t.as_str()).unwrap() {
            ServerFrame::Welcome {
                device_id, secret, ..
            } => {
                credential = Some(DeviceCredential {
                    id: device_id,
                    secret: secret.expect("a new device gets its secret"),
                });
            }
            ServerFrame::Token { token, .. } => {
                return (credential.expect("welcome before the token"), token);
            }
            other => panic!("unexpected while registering: {other:?}"),
        }
    }
}

/// One backend: a send per `PACE` to one to three random tokens while the load is on,
/// waiting out the server's downtime; records every request answered `80000000`.
async fn sender(
    endpoint: String,
    key: Value,
    tokens: Vec<String>,
    seed: u64,
    mut up: Up,
    load: watch::Receiver<bool>,
    record: Arc<Record>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut jwt = (Instant::now(), sign_jwt(&key));
    let mut tick = tokio::time::interval(PACE);
    let mut n = 0u64;
    while *load.borrow() {
        tick.tick().await;
        if up.borrow_and_update().is_none() {
            let _ = up.changed().await;
            continue;
        }
        if jwt.0.elapsed() > Duration::from_secs(1800) {
            jwt = (Instant::now(), sign_jwt(&key));
        }
        n += 1;
        let count = rng.random_range(1..=3);
        let mut targets: Vec<String> = Vec::new();
        while targets.len() < count {
            let t = &tokens[rng.random_range(0..tokens.len())];
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
        let short = rng.random_range(0..SHORT_TTL_ONE_IN) == 0;
        let mut body = json!({
            "payload": {"notification": {"category": "IM", "title": format!("s{seed}-{n}"),
                "body": "b", "clickAction": {"actionType": 0}}},
            "target": {"token": targets},
        });
        if short {
            body["pushOptions"] = json!({"ttl": SHORT_TTL_SECS});
        }
        let answer = http
            .post(&endpoint)
            .bearer_auth(&jwt.1)
            .header("push-type", "0")
            .json(&body)
            .send()
            .await;
        let Ok(answer) = answer else { continue };
        let Ok(answer) = answer.json::<Value>().await else {
            continue;
        };
        if answer["code"] == "80000000" {
            let request = answer["requestId"].as_str().unwrap().to_owned();
            record
                .accepted
                .lock()
                .unwrap()
                .push((request, targets, short));
            record.accepted_one.notify_waiters();
        }
    }
}

/// The receipt endpoint: an axum server whose connections are counted (so the test knows
/// when a killed server's callbacks have all been read). Returns its URL and the count.
async fn start_receiver(record: Arc<Record>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/receipts", listener.local_addr().unwrap());
    let open = Arc::new(AtomicUsize::new(0));
    let counting = Counting {
        inner: listener,
        open: open.clone(),
    };
    let app = axum::Router::new()
        .fallback(
            |axum::extract::State(record): axum::extract::State<Arc<Record>>,
             body: axum::body::Bytes| async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let incarnation = record.incarnation.load(Ordering::SeqCst);
                let mut posted = record.posted.lock().unwrap();
                for s in body["statuses"].as_array().cloned().unwrap_or_default() {
                    posted.push(Posted {
                        incarnation,
                        key: (
                            s["requestId"].as_str().unwrap_or_default().to_owned(),
                            s["token"].as_str().unwrap_or_default().to_owned(),
                        ),
                        result: s["deliveryStatus"]["result"].as_u64().unwrap_or(999),
                    });
                }
                drop(posted);
                record.answered.notify_waiters();
                json!({"code": "0", "message": "success"}).to_string()
            },
        )
        .with_state(record);
    tokio::spawn(async move { axum::serve(counting, app).await });
    (url, open)
}

/// A listener whose accepted streams count themselves open until dropped.
struct Counting {
    inner: TcpListener,
    open: Arc<AtomicUsize>,
}

impl axum::serve::Listener for Counting {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            if let Ok((stream, addr)) = self.inner.accept().await {
                self.open.fetch_add(1, Ordering::SeqCst);
                return (
                    Counted {
                        stream,
                        open: self.open.clone(),
                    },
                    addr,
                );
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

struct Counted {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

async fn start_server(data: &Path, port: u16) -> Server {
    let data: PathBuf = data.to_owned();
    tokio::task::spawn_blocking(move || Server::start_with_env(&data, port, &SERVER_ENV))
        .await
        .unwrap()
}

async fn kill9(server: Server) {
    tokio::task::spawn_blocking(move || server.kill9())
        .await
        .unwrap();
}

async fn admin_ok(boot: &Path, args: &[&str]) {
    let (boot, args): (PathBuf, Vec<String>) = (
        boot.to_owned(),
        args.iter().map(|s| (*s).to_owned()).collect(),
    );
    let (ok, out) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        admin(&boot, &args)
    })
    .await
    .unwrap();
    assert!(ok, "herald admin failed: {out}");
}

/// Polls `done` (state spread over tasks and a child process) until it holds.
async fn wait_until(what: &str, done: impl FnMut() -> bool) {
    assert!(eventually(done).await, "{what}: not within {PATIENCE:?}");
}

/// Whether `done` holds within [`PATIENCE`], polled.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        // tidy: polls state that several tasks and a child process change
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}
