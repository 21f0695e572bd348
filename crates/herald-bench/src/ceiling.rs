//! `herald-bench ceiling-server`: the ceiling. A WebSocket server that does nothing but
//! write a ~200-byte frame to each connection a request names and read a ~40-byte ack back,
//! with the same socket settings as Herald's gateway (axum ws, 4 KiB read buffer, no write
//! buffer). Whatever Herald does beyond that (auth, policy, durable queueing, receipts) is
//! the difference between the two fan-out rates.
//!
//! Routes: `GET /ws/{device}` (a device connects), `POST /fanout` with
//! `{"seq": n, "ids": [...], "benchSentUs": t}` (one frame to each named device; answers
//! `{"accepted": n}`), `GET /stats` (`{"connections", "acks"}`), `GET /healthz`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use herald_proto::device::MAX_FRAME_BYTES;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Frames waiting for one device, as Herald's per-device queue (`device_queue`) holds them.
const DEVICE_QUEUE: usize = 256;
/// The frame's padding, so that a frame is about 200 bytes like a small notification.
const PAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567";

#[derive(Debug, Default)]
struct Ceiling {
    /// Device → its writer's queue. A std mutex: held for a lookup or insert, never across
    /// an `.await`; one map is fine at the bench's sizes (the ceiling must stay trivial).
    devices: Mutex<HashMap<String, mpsc::Sender<String>>>,
    acks: AtomicU64,
}

/// Serves until the process is killed.
pub async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let state = Arc::new(Ceiling::default());
    let app = Router::new()
        .route("/ws/{device}", get(upgrade))
        .route("/fanout", post(fanout))
        .route("/stats", get(stats))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn upgrade(
    ws: WebSocketUpgrade,
    Path(device): Path<String>,
    State(state): State<Arc<Ceiling>>,
) -> axum::response::Response {
    ws.read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_FRAME_BYTES * 4)
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| connection(state, device, socket))
}

async fn connection(state: Arc<Ceiling>, device: String, socket: WebSocket) {
    let (tx, mut rx) = mpsc::channel::<String>(DEVICE_QUEUE);
    state
        .devices
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(device.clone(), tx);
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                if sink.send(Message::text(frame)).await.is_err() {
                    break;
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(_))) => {
                    state.acks.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
    }
    state
        .devices
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&device);
}

#[derive(Debug, Deserialize)]
struct Fanout {
    seq: u64,
    ids: Vec<String>,
    #[serde(rename = "benchSentUs")]
    sent_us: u64,
}

async fn fanout(State(state): State<Arc<Ceiling>>, Json(request): Json<Fanout>) -> Json<Value> {
    let mut queues = Vec::with_capacity(request.ids.len());
    {
        let devices = state.devices.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, id) in request.ids.iter().enumerate() {
            if let Some(tx) = devices.get(id) {
                queues.push((i, tx.clone()));
            }
        }
    }
    let mut accepted = 0u64;
    for (i, tx) in queues {
        let frame = frame(&format!("{}-{i}", request.seq), request.sent_us);
        // Waits when a device's queue is full, as a bounded queue must.
        if tx.send(frame).await.is_ok() {
            accepted += 1;
        }
    }
    Json(json!({"accepted": accepted}))
}

async fn stats(State(state): State<Arc<Ceiling>>) -> Json<Value> {
    let connections = state
        .devices
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len();
    Json(json!({
        "connections": connections,
        "acks": state.acks.load(Ordering::Relaxed),
    }))
}

/// A frame as the ceiling writes it, for the size check below and the MQTT payloads.
pub fn frame(id: &str, sent_us: u64) -> String {
    format!(r#"{{"id":"{id}","benchSentUs":{sent_us},"pad":"{PAD}"}}"#)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_frame_is_about_200_bytes_and_an_ack_about_40() {
        let frame = super::frame("123456-999", 1_764_000_000_000_000);
        assert!((190..=230).contains(&frame.len()), "{}", frame.len());
        let ack = r#"{"type":"ack","ids":["123456-999"]}"#;
        assert!((30..=50).contains(&ack.len()), "{}", ack.len());
    }
}
