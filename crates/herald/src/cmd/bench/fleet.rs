//! The simulated devices of `herald bench`: a bare hello / get_token / ack loop per socket,
//! so that thousands fit in one process and the numbers measure the server, not the SDK.
//!
//! `herald_client::device::Device` would do the same with reconnects, de-duplication files
//! and an fsync of `seen.json` per ack batch; at thousands of devices that disk work would
//! dominate what the benchmark measures. This loop keeps only a socket, a small set of
//! message ids and the acks not yet sent.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use herald_proto::device::{ClientFrame, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerFrame};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The key in `clickAction.data` that carries the send time (µs since the bench's epoch).
pub const SENT_AT_KEY: &str = "benchSentUs";
/// Acks are gathered this long before one `ack` frame goes out, as the SDK does.
const ACK_DELAY: Duration = Duration::from_millis(20);
/// Connect, hello and get_token together may take this long per device.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every device reports, shared by all device tasks.
#[derive(Debug)]
pub struct Received {
    epoch: Instant,
    /// Unique messages received.
    delivered: AtomicU64,
    /// Messages received again (redelivery after an overflow, say).
    duplicates: AtomicU64,
    /// Message ids acked.
    acks_sent: AtomicU64,
    /// Connections that ended before the bench stopped them.
    lost: AtomicU64,
    /// Microseconds from "send request issued" to "device received", one per unique message.
    /// A std mutex: it is held for one `push`, never across an `.await`.
    latencies_us: Mutex<Vec<u64>>,
    /// Microseconds since `epoch` of the last unique message.
    last_delivery_us: AtomicU64,
}

impl Received {
    pub fn new(epoch: Instant, expected: usize) -> Self {
        Received {
            epoch,
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            acks_sent: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            latencies_us: Mutex::new(Vec::with_capacity(expected)),
            last_delivery_us: AtomicU64::new(0),
        }
    }

    /// Microseconds since the bench's epoch: the clock senders and devices share.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    pub fn acks_sent(&self) -> u64 {
        self.acks_sent.load(Ordering::Relaxed)
    }

    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    pub fn last_delivery_us(&self) -> u64 {
        self.last_delivery_us.load(Ordering::Relaxed)
    }

    /// Takes the latencies recorded so far.
    pub fn take_latencies(&self) -> Vec<u64> {
        std::mem::take(
            &mut *self
                .latencies_us
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn record(&self, sent_us: Option<u64>) {
        let now = self.now_us();
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_delivery_us.fetch_max(now, Ordering::Relaxed);
        if let Some(sent) = sent_us {
            self.latencies_us
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(now.saturating_sub(sent));
        }
    }
}

/// Connected devices, each with its token for the benchmarked app.
#[derive(Debug)]
pub struct Fleet {
    pub tokens: Vec<String>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Where and as which app the devices connect.
#[derive(Debug, Clone)]
pub struct FleetTarget {
    pub ws_url: String,
    pub client_id: String,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            tokens: Vec::new(),
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
        }
    }
}

impl Fleet {
    /// Adopts a device connected by [`handshake`]: it receives and acks from now on.
    pub fn adopt(&mut self, socket: Socket, token: String, received: &Arc<Received>) {
        self.tokens.push(token);
        self.tasks
            .spawn(receive(socket, received.clone(), self.stop.subscribe()));
    }

    /// Tells every device to send its last acks and close, and waits for them.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Connects a new device (`hello` without a credential registers it), then asks for its
/// token. Free of `&mut Fleet` so that the connect phase can run many at once.
pub async fn handshake(target: &FleetTarget) -> anyhow::Result<(Socket, String)> {
    timeout(HANDSHAKE_TIMEOUT, handshake_unbounded(target))
        .await
        .context("device handshake timed out")?
}

async fn handshake_unbounded(target: &FleetTarget) -> anyhow::Result<(Socket, String)> {
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(
        &target.ws_url,
        Some(websocket_config()),
        true,
    )
    .await
    .with_context(|| format!("connecting to {}", target.ws_url))?;
    send(
        &mut socket,
        &ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            device: None,
        },
    )
    .await?;
    match next_frame(&mut socket).await? {
        ServerFrame::Welcome { .. } => {}
        other => bail!("expected welcome, got {other:?}"),
    }
    send(
        &mut socket,
        &ClientFrame::GetToken {
            client_id: target.client_id.clone(),
        },
    )
    .await?;
    match next_frame(&mut socket).await? {
        ServerFrame::Token { token, .. } => Ok((socket, token)),
        other => bail!("expected a token, got {other:?}"),
    }
}

/// One device's life after its token: record and ack messages until told to stop.
async fn receive(mut socket: Socket, received: Arc<Received>, mut stop: watch::Receiver<bool>) {
    // Ids seen on this device, for counting redeliveries; a device gets messages / devices.
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
                let _ = flush_acks(&mut socket, &mut acks, &received).await;
                let _ = socket.close(None).await;
                return;
            }
            () = ack_due => {
                ack_at = None;
                if flush_acks(&mut socket, &mut acks, &received).await.is_err() {
                    received.lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            incoming = socket.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        received.lost.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Some(Ok(_)) => continue, // pings are answered by tungstenite
                };
                let Ok(ServerFrame::Message(message)) = serde_json::from_str(text.as_str()) else {
                    continue;
                };
                if seen.insert(message.id.clone()) {
                    received.record(sent_at_us(&message.payload));
                } else {
                    received.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                acks.push(message.id);
                ack_at.get_or_insert_with(|| Instant::now() + ACK_DELAY);
            }
        }
    }
}

/// The send time the bench put into `clickAction.data`.
fn sent_at_us(payload: &serde_json::Value) -> Option<u64> {
    payload
        .pointer("/notification/clickAction/data")?
        .get(SENT_AT_KEY)?
        .as_u64()
}

async fn flush_acks(
    socket: &mut Socket,
    acks: &mut Vec<String>,
    received: &Received,
) -> anyhow::Result<()> {
    if acks.is_empty() {
        return Ok(());
    }
    let ids = std::mem::take(acks);
    let n = ids.len() as u64;
    send(socket, &ClientFrame::Ack { ids }).await?;
    received.acks_sent.fetch_add(n, Ordering::Relaxed);
    Ok(())
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
