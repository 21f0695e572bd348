//! `herald-bench fleet`: one child process holding up to ~18,000 simulated devices, driven
//! over JSON lines on stdin/stdout (`wire.rs`). The parent spreads a run's devices over as
//! many of these as the open-file limit needs, so that the load generator's sockets never
//! share a process (or a file-descriptor budget) with the server under test.
//!
//! The devices are bare loops, not the SDK: a Herald device does hello / get_token and acks
//! every message in batches gathered for 20 ms as the SDK does, without the SDK's
//! de-duplication file and its fsync per batch (that disk work would dominate at thousands of
//! devices). A ceiling device reads a ~200-byte frame and answers a ~40-byte ack at once. An
//! MQTT device is a rumqttc client with a persistent session subscribed to its own topic at
//! QoS 1 (rumqttc answers PUBACK).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use herald_proto::device::{
    ClientFrame, DeviceCredential, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerFrame,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::procfs::now_us;
use crate::wire::{Collected, Command, DeviceTarget, Event, SENT_AT_KEY};

type Socket = WebSocketStream<TcpStream>;

/// Acks are gathered this long before one `ack` frame goes out, as the SDK does.
const ACK_DELAY: Duration = Duration::from_millis(20);
/// Connect plus handshake may take this long per device.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the parent hears the live counters.
const TICK: Duration = Duration::from_millis(100);
/// Events waiting for stdout. The writer only falls behind if the parent stops reading;
/// a bound keeps that from growing without limit (ticks then wait their turn).
const EVENT_BACKLOG: usize = 64;
/// Requests queued inside one MQTT device's client (it only subscribes and disconnects).
const MQTT_REQUEST_CAPACITY: usize = 4;

/// What every device of this fleet reports, shared by all device tasks.
#[derive(Debug, Default)]
struct Counters {
    connected: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    acks: AtomicU64,
    lost: AtomicU64,
    first_delivery_us: AtomicU64,
    last_delivery_us: AtomicU64,
    /// A std mutex: held for one `push`, never across an `.await`.
    latencies_us: Mutex<Vec<u64>>,
}

impl Counters {
    fn record(&self, sent_us: Option<u64>) {
        let now = now_us();
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let _ =
            self.first_delivery_us
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_delivery_us.fetch_max(now, Ordering::Relaxed);
        if let Some(sent) = sent_us {
            self.latencies_us
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(now.saturating_sub(sent));
        }
    }

    /// Everything since the last collect; the counters start again from zero.
    fn collect(&self) -> Collected {
        Collected {
            delivered: self.delivered.swap(0, Ordering::Relaxed),
            duplicates: self.duplicates.swap(0, Ordering::Relaxed),
            acks: self.acks.swap(0, Ordering::Relaxed),
            lost: self.lost.swap(0, Ordering::Relaxed),
            first_delivery_us: self.first_delivery_us.swap(0, Ordering::Relaxed),
            last_delivery_us: self.last_delivery_us.swap(0, Ordering::Relaxed),
            latencies_us: std::mem::take(
                &mut *self
                    .latencies_us
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            ),
        }
    }
}

/// The fleet's devices and how to stop them.
#[derive(Debug)]
struct Fleet {
    /// This fleet's number among the run's fleets: device names and source addresses.
    index: usize,
    counters: Arc<Counters>,
    target: Option<DeviceTarget>,
    /// Herald devices' identities, to come back as themselves after `Disconnect`.
    credentials: Vec<DeviceCredential>,
    names: Vec<String>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Runs the fleet until `Stop` or the end of stdin.
pub async fn run(index: usize) -> anyhow::Result<()> {
    let (events, mut outbox) = mpsc::channel::<Event>(EVENT_BACKLOG);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(event) = outbox.recv().await {
            let Ok(mut line) = serde_json::to_string(&event) else {
                continue;
            };
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let mut fleet = Fleet {
        index,
        counters: Arc::new(Counters::default()),
        target: None,
        credentials: Vec::new(),
        names: Vec::new(),
        stop: watch::channel(false).0,
        tasks: JoinSet::new(),
    };
    let ticker = tokio::spawn(tick(fleet.counters.clone(), events.clone()));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let command: Command = match serde_json::from_str(&line) {
            Ok(c) => c,
            Err(e) => {
                let _ = events
                    .send(Event::Failed {
                        error: format!("unreadable command: {e}"),
                    })
                    .await;
                continue;
            }
        };
        let stopping = matches!(command, Command::Stop);
        let event = match fleet.handle(command).await {
            Ok(event) => event,
            Err(e) => Event::Failed {
                error: format!("{e:#}"),
            },
        };
        let _ = events.send(event).await;
        if stopping {
            break;
        }
    }
    fleet.close_all().await;
    ticker.abort();
    drop(events);
    let _ = writer.await;
    Ok(())
}

async fn tick(counters: Arc<Counters>, events: mpsc::Sender<Event>) {
    let mut interval = tokio::time::interval(TICK);
    loop {
        interval.tick().await;
        let event = Event::Tick {
            connected: counters.connected.load(Ordering::Relaxed),
            delivered: counters.delivered.load(Ordering::Relaxed),
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

impl Fleet {
    async fn handle(&mut self, command: Command) -> anyhow::Result<Event> {
        match command {
            Command::Connect {
                target,
                count,
                concurrency,
            } => {
                self.target = Some(target.clone());
                let tokens = self.connect(&target, count, concurrency).await?;
                Ok(Event::Connected { tokens })
            }
            Command::Disconnect => {
                self.close_all().await;
                Ok(Event::Disconnected)
            }
            Command::Reconnect { concurrency } => {
                self.reconnect(concurrency).await?;
                Ok(Event::Reconnected)
            }
            Command::Collect => Ok(Event::Collected(self.counters.collect())),
            Command::Stop => {
                self.close_all().await;
                Ok(Event::Stopped)
            }
        }
    }

    /// Tells every device to send its last acks and close, and waits for them.
    async fn close_all(&mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.stop = watch::channel(false).0;
        self.counters.connected.store(0, Ordering::Relaxed);
    }

    async fn connect(
        &mut self,
        target: &DeviceTarget,
        count: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<String>> {
        let first = self.names.len();
        let names: Vec<String> = (first..first + count)
            .map(|i| format!("f{}d{i}", self.index))
            .collect();
        let source = source_address(self.index);
        let mut tokens = Vec::with_capacity(count);
        self.names.extend(names.iter().cloned());
        let mut handshakes = futures_util::stream::iter(names)
            .map(|name| connect_one(target, name, source, None))
            .buffered(concurrency.max(1));
        while let Some(device) = handshakes.next().await {
            let device = device?;
            tokens.push(device.address.clone());
            if let Some(credential) = device.credential.clone() {
                self.credentials.push(credential);
            }
            self.adopt(device);
        }
        Ok(tokens)
    }

    async fn reconnect(&mut self, concurrency: usize) -> anyhow::Result<()> {
        let Some(target) = self.target.clone() else {
            bail!("no devices to reconnect");
        };
        let source = source_address(self.index);
        let credentials = self.credentials.clone();
        let names = self.names.clone();
        let mut handshakes = futures_util::stream::iter(names.into_iter().enumerate())
            .map(|(i, name)| connect_one(&target, name, source, credentials.get(i).cloned()))
            .buffer_unordered(concurrency.max(1));
        while let Some(device) = handshakes.next().await {
            self.adopt(device?);
        }
        Ok(())
    }

    fn adopt(&mut self, device: Connected) {
        self.counters.connected.fetch_add(1, Ordering::Relaxed);
        let (counters, stop) = (self.counters.clone(), self.stop.subscribe());
        match device.link {
            Link::Herald(socket) => self.tasks.spawn(herald_device(socket, counters, stop)),
            Link::Ceiling(socket) => self.tasks.spawn(ceiling_device(socket, counters, stop)),
            Link::Mqtt(mqtt) => self.tasks.spawn(mqtt_device(mqtt, counters, stop)),
        };
    }
}

/// The loopback address this fleet's sockets leave from: one per fleet, so that the
/// ~28,000 ephemeral ports of one (source, destination) pair bound only one fleet.
fn source_address(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + (index % 250) as u8))
}

/// A device that finished its handshake.
struct Connected {
    /// What a sender addresses it by: Herald token, ceiling id, MQTT topic.
    address: String,
    credential: Option<DeviceCredential>,
    link: Link,
}

enum Link {
    Herald(Socket),
    Ceiling(Socket),
    Mqtt(Box<MqttLink>),
}

struct MqttLink {
    client: rumqttc::AsyncClient,
    events: rumqttc::EventLoop,
}

async fn connect_one(
    target: &DeviceTarget,
    name: String,
    source: IpAddr,
    credential: Option<DeviceCredential>,
) -> anyhow::Result<Connected> {
    let work = async {
        match target {
            DeviceTarget::Herald { ws_url, client_id } => {
                herald_handshake(ws_url, client_id, source, credential).await
            }
            DeviceTarget::Ceiling { ws_url } => {
                let socket = ws_connect(&format!("{ws_url}/{name}"), source).await?;
                Ok(Connected {
                    address: name,
                    credential: None,
                    link: Link::Ceiling(socket),
                })
            }
            DeviceTarget::Mqtt { host, port } => mqtt_connect(host, *port, name).await,
        }
    };
    timeout(HANDSHAKE_TIMEOUT, work)
        .await
        .context("device handshake timed out")?
}

/// A WebSocket from `source` (when the server is on loopback) with the SDK's small buffers.
async fn ws_connect(url: &str, source: IpAddr) -> anyhow::Result<Socket> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("bad URL {url}"))?;
    if parsed.scheme() != "ws" {
        bail!("the bench's devices speak ws:// only (loopback), not {url}");
    }
    let host = parsed.host_str().context("no host")?;
    let port = parsed.port_or_known_default().context("no port")?;
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .with_context(|| format!("cannot resolve {host}"))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if addr.ip().is_loopback() && addr.is_ipv4() {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(websocket_config()))
            .await
            .with_context(|| format!("WebSocket handshake with {url}"))?;
    Ok(ws)
}

/// Registers a device (`hello` without a credential) and asks for its token, or comes back
/// as a known device (`hello` with its credential; its backlog then follows `welcome`).
async fn herald_handshake(
    ws_url: &str,
    client_id: &str,
    source: IpAddr,
    credential: Option<DeviceCredential>,
) -> anyhow::Result<Connected> {
    let mut socket = ws_connect(ws_url, source).await?;
    let returning = credential.clone();
    send(
        &mut socket,
        &ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            device: credential,
        },
    )
    .await?;
    let is_new = returning.is_none();
    let credential = match next_frame(&mut socket).await? {
        ServerFrame::Welcome {
            device_id, secret, ..
        } => match (returning, secret) {
            (Some(known), _) => known,
            (None, Some(secret)) => DeviceCredential {
                id: device_id,
                secret,
            },
            (None, None) => bail!("a new device's welcome carried no secret"),
        },
        other => bail!("expected welcome, got {other:?}"),
    };
    // A returning device asks for no token: the bench has it already, and the answer
    // would arrive among the backlog's messages.
    let address = if is_new {
        send(
            &mut socket,
            &ClientFrame::GetToken {
                client_id: client_id.to_owned(),
            },
        )
        .await?;
        match next_frame(&mut socket).await? {
            ServerFrame::Token { token, .. } => token,
            other => bail!("expected a token, got {other:?}"),
        }
    } else {
        String::new()
    };
    Ok(Connected {
        address,
        credential: Some(credential),
        link: Link::Herald(socket),
    })
}

/// One Herald device's life after its handshake: record and ack messages until told to stop.
async fn herald_device(
    mut socket: Socket,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    // Ids seen on this device, for counting redeliveries.
    let mut seen: HashSet<String> = HashSet::new();
    let mut acks: Vec<String> = Vec::new();
    let mut ack_at: Option<Instant> = None;
    loop {
        let ack_due = async {
            match ack_at {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => {
                let _ = flush_acks(&mut socket, &mut acks, &counters).await;
                let _ = socket.close(None).await;
                return;
            }
            () = ack_due => {
                ack_at = None;
                if flush_acks(&mut socket, &mut acks, &counters).await.is_err() {
                    counters.lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            incoming = socket.next() => {
                let Some(text) = text_of(incoming, &counters) else { return };
                let Some(text) = text else { continue };
                let Ok(ServerFrame::Message(message)) = serde_json::from_str(&text) else {
                    continue;
                };
                if seen.insert(message.id.clone()) {
                    counters.record(herald_sent_at(&message.payload));
                } else {
                    counters.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                acks.push(message.id);
                ack_at.get_or_insert_with(|| Instant::now() + ACK_DELAY);
            }
        }
    }
}

/// A text frame's text (`Some(None)`: another frame, keep reading); `None` when the
/// connection ended, which counts as lost.
fn text_of(
    incoming: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    counters: &Counters,
) -> Option<Option<String>> {
    match incoming {
        Some(Ok(Message::Text(text))) => Some(Some(text.as_str().to_owned())),
        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            None
        }
        Some(Ok(_)) => Some(None), // pings are answered by tungstenite
    }
}

/// The send time the bench put into a Herald notification's `clickAction.data`.
fn herald_sent_at(payload: &serde_json::Value) -> Option<u64> {
    payload
        .pointer("/notification/clickAction/data")?
        .get(SENT_AT_KEY)?
        .as_u64()
}

async fn flush_acks(
    socket: &mut Socket,
    acks: &mut Vec<String>,
    counters: &Counters,
) -> anyhow::Result<()> {
    if acks.is_empty() {
        return Ok(());
    }
    let ids = std::mem::take(acks);
    let n = ids.len() as u64;
    send(socket, &ClientFrame::Ack { ids }).await?;
    counters.acks.fetch_add(n, Ordering::Relaxed);
    Ok(())
}

/// The ceiling's payload: a message id and the send stamp (the rest is padding).
#[derive(serde::Deserialize)]
struct CeilingMessage {
    id: String,
    #[serde(rename = "benchSentUs")]
    sent_us: Option<u64>,
}

/// One ceiling device: read a frame, record it, answer a ~40-byte ack at once.
async fn ceiling_device(
    mut socket: Socket,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = socket.close(None).await;
                return;
            }
            incoming = socket.next() => {
                let Some(text) = text_of(incoming, &counters) else { return };
                let Some(text) = text else { continue };
                let Ok(message) = serde_json::from_str::<CeilingMessage>(&text) else {
                    continue;
                };
                if seen.insert(message.id.clone()) {
                    counters.record(message.sent_us);
                } else {
                    counters.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                let ack = format!(r#"{{"type":"ack","ids":["{}"]}}"#, message.id);
                if socket.send(Message::text(ack)).await.is_err() {
                    counters.lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                counters.acks.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Connects an MQTT device with a persistent session and subscribes it to its topic;
/// returns once the broker has confirmed the subscription.
async fn mqtt_connect(host: &str, port: u16, name: String) -> anyhow::Result<Connected> {
    let topic = format!("d/{name}");
    let mut options = rumqttc::MqttOptions::new(name, host, port);
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(60))
        .set_request_channel_capacity(MQTT_REQUEST_CAPACITY);
    let (client, mut events) = rumqttc::AsyncClient::new(options, MQTT_REQUEST_CAPACITY);
    client
        .subscribe(topic.clone(), rumqttc::QoS::AtLeastOnce)
        .await
        .context("queueing the subscription")?;
    loop {
        match events
            .poll()
            .await
            .context("connecting to the MQTT broker")?
        {
            rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => break,
            rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))
                if ack.code != rumqttc::ConnectReturnCode::Success =>
            {
                bail!("the broker refused the connection: {:?}", ack.code)
            }
            _ => {}
        }
    }
    Ok(Connected {
        address: topic,
        credential: None,
        link: Link::Mqtt(Box::new(MqttLink { client, events })),
    })
}

/// One MQTT device: poll its client, recording every publish (rumqttc sends the PUBACK).
async fn mqtt_device(
    link: Box<MqttLink>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let MqttLink { client, mut events } = *link;
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = client.disconnect().await;
                // Let the DISCONNECT leave before the socket is dropped.
                let _ = timeout(Duration::from_millis(300), async {
                    while events.poll().await.is_ok() {}
                }).await;
                return;
            }
            event = events.poll() => match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                    let Ok(message) = serde_json::from_slice::<CeilingMessage>(&publish.payload) else {
                        continue;
                    };
                    if seen.insert(message.id) {
                        counters.record(message.sent_us);
                    } else {
                        counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    counters.acks.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => {
                    counters.lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

async fn send(socket: &mut Socket, frame: &ClientFrame) -> anyhow::Result<()> {
    socket
        .send(Message::text(serde_json::to_string(frame)?))
        .await?;
    Ok(())
}

async fn next_frame(socket: &mut Socket) -> anyhow::Result<ServerFrame> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(text.as_str())?),
            Some(Ok(Message::Close(frame))) => bail!("server closed the connection: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection closed"),
        }
    }
}

/// The same small buffers as the SDK's device (a 4 KiB read buffer, no write buffer, a
/// bounded backlog): thousands of sockets in one process must stay cheap.
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_FRAME_BYTES)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}
