//! The device gateway: the WebSocket endpoint and the socket loop around the session
//! state machine in [`sm`].

pub mod guard;
pub mod sm;

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use herald_proto::device::{ClientFrame, MAX_FRAME_BYTES, close};
use tokio::time::{Instant, timeout};

use crate::state::Shared;
use sm::{Close, Identified, Unidentified};

/// How long a new connection may take to say `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write may block before the device is considered dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /device/ws`: upgrade with buffers sized for 4 KiB messages, not the library's
/// 128 KiB defaults (see `shared/reference/dependencies.md` §3.1). Past the per-address
/// device-socket cap the answer is 429 ([`guard::hold_socket`]); the slot is held for
/// the socket's life.
pub async fn upgrade(
    State(app): State<Shared>,
    client: crate::limits::ClientAddr,
    ws: WebSocketUpgrade,
) -> Response {
    let held = match guard::hold_socket(&app, client) {
        Ok(held) => held,
        Err(refused) => return axum::response::IntoResponse::into_response(refused),
    };
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BATCH)
        .max_write_buffer_size(MAX_FRAME_BYTES * 4)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let _held = held;
            connection(app, socket, client).await
        })
}

/// Bytes read from a device socket at a time. Devices send small frames (acks, reports);
/// a larger frame grows the buffer as it arrives (up to `MAX_FRAME_BYTES`). An idle
/// connection holds this much, so it is kept small: 1 KiB instead of 4.
const READ_BUFFER: usize = 1024;

/// Frames are gathered up to this many bytes before a write to the socket, and a batch is
/// flushed as soon as the frames already waiting have been taken: a device with several
/// messages queued gets them in one `sendto`, a device with one gets it at once. The
/// buffer keeps its capacity, so it is kept small.
const WRITE_BATCH: usize = 2048;
/// Live frames taken from a device's channel for one flush, at most.
const LIVE_BATCH: usize = 32;

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// What the next inbound WebSocket message means to the session.
enum Inbound {
    Frame(ClientFrame),
    /// JSON, but not a frame we know: answered with an error frame.
    Unknown(String),
    /// Ping/pong or other control traffic: proof of life only.
    Alive,
    Close(Close),
    Gone,
}

fn classify(msg: Option<Result<Message, axum::Error>>) -> Inbound {
    match msg {
        None => Inbound::Gone,
        Some(Err(e)) => {
            let text = e.to_string();
            if text.contains("Space limit exceeded") || text.contains("too long") {
                Inbound::Close(Close::new(close::TOO_BIG, "frame too large"))
            } else {
                Inbound::Gone
            }
        }
        Some(Ok(Message::Text(text))) => parse_frame(text.as_str()),
        Some(Ok(Message::Binary(_))) => Inbound::Close(Close::new(
            close::UNSUPPORTED_DATA,
            "binary frames are not supported",
        )),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Alive,
        Some(Ok(Message::Close(_))) => Inbound::Gone,
    }
}

fn parse_frame(text: &str) -> Inbound {
    // The common case (a well-formed frame) in one pass; the rest is parsed again to say
    // what is wrong with it.
    if let Ok(frame) = serde_json::from_str::<ClientFrame>(text) {
        return Inbound::Frame(frame);
    }
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return Inbound::Close(Close::new(close::INVALID_FRAME, "frame is not JSON")),
    };
    if value.get("type").and_then(|t| t.as_str()).is_none() {
        return Inbound::Close(Close::new(
            close::INVALID_FRAME,
            "frame is not an object with a type",
        ));
    }
    match serde_json::from_value::<ClientFrame>(value) {
        Ok(f) => Inbound::Frame(f),
        Err(e) => Inbound::Unknown(e.to_string()),
    }
}

/// Write `frames` (batched, see [`WRITE_BATCH`]) and flush; `false` when the device is gone
/// or stopped reading.
async fn send_frames(sink: &mut Sink, frames: Vec<String>) -> bool {
    if frames.is_empty() {
        return true;
    }
    let write = async {
        for text in frames {
            sink.feed(Message::Text(text.into())).await?;
        }
        sink.flush().await
    };
    matches!(timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

/// The frames of `first` and of whatever else is already waiting in the channel (up to
/// [`LIVE_BATCH`]), for one flush.
fn live_batch(
    session: &mut Identified,
    rx: &mut tokio::sync::mpsc::Receiver<Box<crate::registry::Live>>,
    first: &crate::registry::Live,
    now_ms: i64,
) -> Vec<String> {
    let mut frames = Vec::new();
    frames.extend(session.on_live(first, now_ms));
    while frames.len() < LIVE_BATCH {
        match rx.try_recv() {
            Ok(live) => frames.extend(session.on_live(&live, now_ms)),
            Err(_) => break,
        }
    }
    frames
}

async fn close_with(sink: &mut Sink, c: Close) {
    let frame = CloseFrame {
        code: c.code,
        reason: Utf8Bytes::from_static(c.reason),
    };
    let _ = timeout(WRITE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

async fn connection(app: Shared, socket: WebSocket, client: crate::limits::ClientAddr) {
    let (mut sink, mut stream) = socket.split();
    let hello = async {
        loop {
            match classify(stream.next().await) {
                // Control frames (a client's ping) may precede hello.
                Inbound::Alive => continue,
                other => return other,
            }
        }
    };
    let session = match timeout(HELLO_TIMEOUT, hello).await {
        Err(_) => Err(Close::new(close::HELLO_TIMEOUT, "no hello in time")),
        Ok(Inbound::Frame(f)) => match guard::admit_hello(&app, client, &f) {
            Ok(()) => Unidentified.on_frame(&app, f).await,
            Err(c) => Err(c),
        },
        Ok(Inbound::Close(c)) => Err(c),
        Ok(Inbound::Gone) => return,
        Ok(Inbound::Alive | Inbound::Unknown(_)) => {
            Err(Close::new(close::POLICY_VIOLATION, "hello must come first"))
        }
    };
    let (session, frames) = match session {
        Ok(s) => s,
        Err(c) => {
            close_with(&mut sink, c).await;
            return;
        }
    };
    if !send_frames(&mut sink, frames).await {
        return;
    }
    serve_device(app, session, sink, stream).await;
}

async fn serve_device(app: Shared, mut session: Identified, mut sink: Sink, mut stream: Stream) {
    let device_id = session.device_id.clone();
    let device = session.device;
    let mut reg = app
        .registry
        .register(device, app.config.device_queue, session.session);
    // A connection of this device on another node is older: it closes (newest hello wins).
    app.tell_others(crate::bus::Control::DeviceClaimed {
        device,
        session: session.session,
    });
    tracing::debug!(%device_id, "Device connected.");
    let ping_every = Duration::from_secs(app.config.ping_interval_secs.max(1));
    let idle_limit = Duration::from_secs(app.config.idle_timeout_secs.max(1));
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();

    // Register first, then read the backlog: a message committed in between arrives on
    // both paths, and the session's in-flight set drops the second copy.
    let mut close: Option<Close> = None;
    let mut alive = load_backlog(&app, &mut session, &mut sink).await;
    // The one-shot signals are armed once, not re-created on every turn of the loop
    // (each turn is one message on a busy connection).
    let shutdown = app.shutdown.clone();
    let mut shutting_down = std::pin::pin!(shutdown.cancelled());
    let mut kicked = std::pin::pin!(reg.kicked.cancelled());
    // A resync re-reads the queue once the acks taken so far are written (else the queue
    // still lists what the device acked, and it would be sent twice on this connection);
    // meanwhile the connection goes on serving.
    let mut acks_written: Option<tokio::sync::oneshot::Receiver<()>> = None;
    while alive {
        tokio::select! {
            // In this order: shutdown, replacement, then VoIP calls ahead of other traffic.
            biased;
            _ = &mut shutting_down => {
                close = Some(Close::new(close::GOING_AWAY, "server shutting down"));
                break;
            }
            _ = &mut kicked => {
                close = Some(Close::new(close::REPLACED, "another connection took over"));
                break;
            }
            Some(live) = reg.urgent_rx.recv() => {
                let frames = live_batch(&mut session, &mut reg.urgent_rx, &live, app.clock.now_ms());
                alive = send_frames(&mut sink, frames).await;
            }
            inbound = stream.next() => {
                last_heard = Instant::now();
                match classify(inbound) {
                    Inbound::Frame(f) => match session.on_frame(&app, f).await {
                        Ok(frames) => alive = send_frames(&mut sink, frames).await,
                        Err(c) => { close = Some(c); break; }
                    },
                    Inbound::Unknown(detail) => {
                        alive = send_frames(&mut sink, vec![sm::bad_frame(detail)]).await;
                    }
                    Inbound::Alive => {}
                    Inbound::Close(c) => { close = Some(c); break; }
                    Inbound::Gone => break,
                }
            }
            Some(live) = reg.rx.recv() => {
                let frames = live_batch(&mut session, &mut reg.rx, &live, app.clock.now_ms());
                alive = send_frames(&mut sink, frames).await;
            }
            _ = reg.resync.notified() => {
                acks_written = Some(app.reports.flush().await);
            }
            _ = async { acks_written.as_mut().expect("guarded").await }, if acks_written.is_some() => {
                acks_written = None;
                alive = load_backlog(&app, &mut session, &mut sink).await;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > idle_limit {
                    tracing::debug!(%device_id, "Device silent too long; dropping it.");
                    break;
                }
                alive = timeout(WRITE_TIMEOUT, sink.send(Message::Ping(Default::default())))
                    .await
                    .is_ok_and(|r| r.is_ok());
            }
        }
    }
    app.registry.unregister(device, reg.conn_id);
    if let Some(c) = close {
        close_with(&mut sink, c).await;
    }
    tracing::debug!(%device_id, "Device disconnected.");
}

async fn load_backlog(app: &Shared, session: &mut Identified, sink: &mut Sink) -> bool {
    match app.store.pending(session.device, app.clock.now_ms()).await {
        Ok(backlog) => send_frames(sink, session.on_backlog(backlog)).await,
        Err(e) => {
            tracing::error!(error = %e, device_id = %session.device_id, "Could not read a device's queue.");
            false
        }
    }
}
