//! The device client end to end against a scripted in-test server speaking the device protocol.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_client::device::{Device, DeviceConfig, DeviceEvent};
use herald_proto::device::{
    ClientFrame, DeviceCredential, DeviceMessage, PROTOCOL_VERSION, ReportStatus, ServerFrame,
    close,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;

/// Bounds a failing wait only (a passing one returns at once); generous for a loaded
/// 2-core CI machine.
const STEP: Duration = Duration::from_secs(30);

struct FakeServer {
    listener: TcpListener,
}

impl FakeServer {
    async fn bind() -> Self {
        FakeServer {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.listener.local_addr().unwrap())
    }

    async fn accept(&self) -> FakeConn {
        let (tcp, _) = timeout(STEP, self.listener.accept())
            .await
            .expect("device connects")
            .unwrap();
        FakeConn {
            ws: tokio_tungstenite::accept_async(tcp).await.unwrap(),
        }
    }
}

struct FakeConn {
    ws: WebSocketStream<TcpStream>,
}

impl FakeConn {
    async fn recv(&mut self) -> ClientFrame {
        loop {
            let msg = timeout(STEP, self.ws.next())
                .await
                .expect("device sends a frame")
                .expect("socket open")
                .unwrap();
            match msg {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn send(&mut self, frame: ServerFrame) {
        let text = serde_json::to_string(&frame).unwrap();
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// Answers `hello` like a server: registers new devices as `d1` with secret `s1`.
    async fn handshake(&mut self) -> Option<DeviceCredential> {
        let ClientFrame::Hello { version, device } = self.recv().await else {
            panic!("first frame must be hello");
        };
        assert_eq!(version, PROTOCOL_VERSION);
        let secret = device.is_none().then(|| "s1".to_owned());
        self.send(ServerFrame::Welcome {
            version: PROTOCOL_VERSION,
            device_id: "d1".into(),
            secret,
            server_time: 0,
        })
        .await;
        device
    }

    async fn answer_get_token(&mut self) {
        let ClientFrame::GetToken { client_id } = self.recv().await else {
            panic!("expected get_token");
        };
        self.send(ServerFrame::Token {
            token: format!("token-{client_id}"),
            client_id,
        })
        .await;
    }

    async fn acked_ids(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        while ids.len() < n {
            match self.recv().await {
                ClientFrame::Ack { ids: more } => ids.extend(more),
                other => panic!("expected ack, got {other:?}"),
            }
        }
        ids
    }

    async fn close_frame(&mut self) -> Option<CloseFrame> {
        loop {
            match timeout(STEP, self.ws.next()).await.expect("device closes") {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    async fn close_with(mut self, code: u16) {
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: code.into(),
                reason: "test".into(),
            }))
            .await;
    }
}

fn message(id: &str) -> ServerFrame {
    ServerFrame::Message(DeviceMessage {
        id: id.into(),
        client_id: "app1".into(),
        token: "token-app1".into(),
        push_type: 0,
        request_id: "req-1".into(),
        sent_at: 0,
        expires_at: 0,
        payload: serde_json::json!({"notification": {"title": "hi", "notifyId": 7}}),
        test: false,
        bi_tag: None,
        reminder: None,
        background_mode: None,
    })
}

fn config(servers: Vec<String>, state_dir: &std::path::Path) -> DeviceConfig {
    DeviceConfig {
        servers,
        state_dir: state_dir.to_owned(),
        client_ids: vec!["app1".into()],
        ..DeviceConfig::default()
    }
}

async fn next_event(events: &mut mpsc::Receiver<DeviceEvent>) -> DeviceEvent {
    timeout(STEP, events.recv())
        .await
        .expect("an event")
        .expect("device running")
}

#[tokio::test]
async fn registers_dedups_acks_reports_and_closes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::bind().await;
    let (handle, mut events) = Device::start(config(vec![server.base_url()], dir.path())).unwrap();

    let mut conn = server.accept().await;
    assert_eq!(conn.handshake().await, None);
    conn.answer_get_token().await;
    assert!(matches!(
        next_event(&mut events).await,
        DeviceEvent::Connected { device_id, registered: true, .. } if device_id == "d1"
    ));
    // The secret was on disk before the device asked for anything.
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("device.json")).unwrap()).unwrap();
    assert_eq!(saved["credential"]["secret"], "s1");
    assert_eq!(
        next_event(&mut events).await,
        DeviceEvent::Token {
            client_id: "app1".into(),
            token: "token-app1".into()
        }
    );

    conn.send(message("m1")).await;
    conn.send(message("m1")).await;
    // Acks flow without the server sending anything more (they are not held back for a
    // later frame), and only after the seen id is on disk: an ordering, not a duration.
    assert_eq!(conn.acked_ids(2).await, ["m1", "m1"]);
    let seen = std::fs::read_to_string(dir.path().join("seen.json")).unwrap();
    assert!(
        seen.contains("m1"),
        "seen ids are saved before the ack leaves"
    );
    assert!(matches!(next_event(&mut events).await, DeviceEvent::Message(m) if m.id == "m1"));

    handle
        .report("m1", ReportStatus::Shown, None)
        .await
        .unwrap();
    assert_eq!(
        conn.recv().await,
        ClientFrame::Report {
            id: "m1".into(),
            status: ReportStatus::Shown,
            code: None
        }
    );

    let shutdown = tokio::spawn(handle.shutdown());
    let frame = conn.close_frame().await.expect("a close code");
    assert_eq!(u16::from(frame.code), close::NORMAL);
    drop(conn);
    timeout(STEP, shutdown).await.unwrap().unwrap();
    // No duplicate message event was ever emitted: every event up to the end of the
    // stream (the device has stopped, so it ends).
    while let Some(event) = timeout(STEP, events.recv()).await.expect("the stream ends") {
        assert!(!matches!(event, DeviceEvent::Message(_)), "{event:?}");
    }
}

#[tokio::test]
async fn reconnects_with_the_same_identity_and_remembers_seen_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::bind().await;
    let (handle, mut events) = Device::start(config(vec![server.base_url()], dir.path())).unwrap();

    let mut conn = server.accept().await;
    conn.handshake().await;
    conn.answer_get_token().await;
    conn.send(message("m1")).await;
    conn.acked_ids(1).await;
    drop(conn); // the connection breaks without a close frame

    let mut conn = server.accept().await;
    let credential = conn
        .handshake()
        .await
        .expect("hello carries the credential");
    assert_eq!(credential.id, "d1");
    assert_eq!(credential.secret, "s1");
    conn.answer_get_token().await; // tokens are requested again after a reconnect
    conn.send(message("m1")).await; // a redelivery
    conn.send(message("m2")).await;
    assert_eq!(conn.acked_ids(2).await, ["m1", "m2"]);
    handle.shutdown().await;

    let mut messages = Vec::new();
    let mut disconnects = 0;
    while let Some(event) = events.recv().await {
        match event {
            DeviceEvent::Message(m) => messages.push(m.id),
            DeviceEvent::Disconnected { .. } => disconnects += 1,
            _ => {}
        }
    }
    assert_eq!(messages, ["m1", "m2"]);
    assert_eq!(disconnects, 2, "one lost connection, one shutdown");

    // A restart from the same directory is the same device and still knows m1 and m2.
    let (handle, mut events) = Device::start(config(vec![server.base_url()], dir.path())).unwrap();
    let mut conn = server.accept().await;
    assert!(conn.handshake().await.is_some());
    conn.answer_get_token().await;
    conn.send(message("m2")).await;
    conn.send(message("m3")).await;
    assert_eq!(conn.acked_ids(2).await, ["m2", "m3"]);
    handle.shutdown().await;
    let mut messages = Vec::new();
    while let Some(event) = events.recv().await {
        if let DeviceEvent::Message(m) = event {
            messages.push(m.id);
        }
    }
    assert_eq!(messages, ["m3"]);
}

#[tokio::test]
async fn tries_the_next_server_when_one_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let server = FakeServer::bind().await;
    let (handle, mut events) =
        Device::start(config(vec![down, server.base_url()], dir.path())).unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        DeviceEvent::Error { code, .. } if code == "connect_failed"
    ));
    let mut conn = server.accept().await;
    conn.handshake().await;
    assert!(matches!(
        next_event(&mut events).await,
        DeviceEvent::Connected { .. }
    ));
    handle.shutdown().await;
}

#[tokio::test]
async fn being_replaced_stops_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::bind().await;
    let (handle, mut events) = Device::start(config(vec![server.base_url()], dir.path())).unwrap();
    let mut conn = server.accept().await;
    conn.handshake().await;
    conn.answer_get_token().await;
    conn.close_with(close::REPLACED).await;
    loop {
        if let DeviceEvent::Disconnected { will_retry, reason } = next_event(&mut events).await {
            assert!(!will_retry);
            assert!(reason.contains("4004"), "{reason}");
            break;
        }
    }
    // The task has ended: the event channel closes and commands fail.
    assert!(timeout(STEP, events.recv()).await.unwrap().is_none());
    assert!(
        handle
            .report("m1", ReportStatus::Clicked, None)
            .await
            .is_err()
    );
}
