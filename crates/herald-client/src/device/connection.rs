//! The device task: connect, run one session as a `select!` over socket, commands, the ack
//! timer and the ping timer, and reconnect with backoff over the server list.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_proto::device::{ClientFrame, MAX_FRAME_BYTES, ServerFrame, close};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::machine::{Effect, Machine};
use super::{Backoff, Command, DeviceEvent, StateDir};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opening the TCP/TLS/WebSocket connection may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The server must answer `hello` within this.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// The device pings this often, so that a dead connection is noticed even when idle…
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// …and gives up on a connection it has heard nothing on (not even a pong) for this long.
const SILENCE_LIMIT: Duration = Duration::from_secs(75);
/// After sending a close frame, wait at most this long for the server's.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Device frames are small; a 4 KiB read buffer keeps many simulated devices cheap.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// How one session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The embedder asked to stop (or dropped the handle).
    Shutdown,
    /// Retrying cannot help.
    Fatal(String),
    /// Try again after a backoff.
    Lost(String),
    /// No connection was made (already reported as an error event); try again after a backoff.
    ConnectFailed,
}

pub(crate) struct RunnerParts {
    pub urls: Vec<String>,
    pub state: StateDir,
    pub machine: Machine,
    pub events: mpsc::Sender<DeviceEvent>,
    pub commands: mpsc::Receiver<Command>,
    pub backoff: Backoff,
    pub ack_delay: Duration,
    /// TLS for `wss://` with a private CA; `None` uses the system's roots.
    pub connector: Option<tokio_tungstenite::Connector>,
}

pub(crate) struct Runner {
    parts: RunnerParts,
}

impl Runner {
    pub fn new(parts: RunnerParts) -> Self {
        Runner { parts }
    }

    pub async fn run(mut self) {
        let urls = self.parts.urls.clone();
        for url in urls.iter().cycle() {
            let end = match self
                .until_shutdown(connect(url.clone(), self.parts.connector.clone()))
                .await
            {
                None => SessionEnd::Shutdown,
                Some(Ok(socket)) => self.session(socket, url).await,
                Some(Err(message)) => {
                    self.emit_error("connect_failed", message).await;
                    SessionEnd::ConnectFailed
                }
            };
            self.parts.machine.on_disconnected();
            self.persist_seen();
            match end {
                SessionEnd::Shutdown => {
                    self.emit(DeviceEvent::Disconnected {
                        reason: "shutdown".into(),
                        will_retry: false,
                    })
                    .await;
                    return;
                }
                SessionEnd::Fatal(reason) => {
                    tracing::warn!(%url, %reason, "Device stopped.");
                    self.emit(DeviceEvent::Disconnected {
                        reason,
                        will_retry: false,
                    })
                    .await;
                    return;
                }
                SessionEnd::ConnectFailed => {}
                SessionEnd::Lost(reason) => {
                    tracing::info!(%url, %reason, "Device disconnected; reconnecting.");
                    self.emit(DeviceEvent::Disconnected {
                        reason,
                        will_retry: true,
                    })
                    .await;
                }
            }
            let delay = self.parts.backoff.next_delay();
            if self.until_shutdown(sleep(delay)).await.is_none() {
                self.emit(DeviceEvent::Disconnected {
                    reason: "shutdown".into(),
                    will_retry: false,
                })
                .await;
                return;
            }
        }
    }

    /// Drives `fut` while serving commands; `None` if a shutdown came first.
    async fn until_shutdown<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                command = self.parts.commands.recv() => match command {
                    None | Some(Command::Shutdown) => return None,
                    Some(other) => {
                        // Offline: the machine queues it until the next welcome.
                        let _ = self.parts.machine_command(other);
                    }
                },
            }
        }
    }

    async fn session(&mut self, mut socket: Socket, url: &str) -> SessionEnd {
        let hello = self.parts.machine.on_connected();
        if let Err(e) = send(&mut socket, &hello).await {
            return SessionEnd::Lost(format!("sending hello failed: {e}"));
        }
        let welcome_deadline = Instant::now() + WELCOME_TIMEOUT;
        let mut ack_deadline: Option<Instant> = None;
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);

        loop {
            let ack_due = async {
                match ack_deadline {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let ready = self.parts.machine.is_ready();
            tokio::select! {
                command = self.parts.commands.recv() => match command {
                    None | Some(Command::Shutdown) => {
                        self.flush_acks(&mut socket).await;
                        close_socket(socket).await;
                        return SessionEnd::Shutdown;
                    }
                    Some(other) => {
                        // Acks first: a report should never reach the server before the
                        // ack of the message it is about.
                        if let Some(end) = self.flush_acks(&mut socket).await {
                            return end;
                        }
                        if let Some(frame) = self.parts.machine_command(other)
                            && let Err(e) = send(&mut socket, &frame).await
                        {
                            return SessionEnd::Lost(format!("send failed: {e}"));
                        }
                    }
                },
                incoming = socket.next() => {
                    last_heard = Instant::now();
                    let text = match incoming {
                        None => return SessionEnd::Lost("connection closed".into()),
                        Some(Err(e)) => return SessionEnd::Lost(format!("connection error: {e}")),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(frame))) => return classify_close(frame),
                        Some(Ok(Message::Binary(_))) => {
                            tracing::warn!(%url, "Ignoring a binary frame.");
                            continue;
                        }
                        Some(Ok(_)) => continue, // ping/pong: answered by tungstenite
                    };
                    if let Some(end) = self.on_text(&mut socket, text.as_str(), url).await {
                        return end;
                    }
                    if ack_deadline.is_none() && self.parts.machine.has_pending_acks() {
                        ack_deadline = Some(Instant::now() + self.parts.ack_delay);
                    }
                },
                () = ack_due => {
                    ack_deadline = None;
                    if let Some(end) = self.flush_acks(&mut socket).await {
                        return end;
                    }
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > SILENCE_LIMIT {
                        return SessionEnd::Lost("server silent".into());
                    }
                    if let Err(e) = socket.send(Message::Ping(Vec::new().into())).await {
                        return SessionEnd::Lost(format!("ping failed: {e}"));
                    }
                },
                () = sleep_until(welcome_deadline), if !ready => {
                    return SessionEnd::Lost("no welcome from the server".into());
                },
            }
        }
    }

    /// Handles one text frame; `Some` ends the session.
    async fn on_text(&mut self, socket: &mut Socket, text: &str, url: &str) -> Option<SessionEnd> {
        let frame = match serde_json::from_str::<ServerFrame>(text) {
            Ok(frame) => frame,
            Err(e) => {
                // Unknown frame types may be a newer server's; skip them rather than drop
                // the connection.
                tracing::warn!(%url, error = %e, "Ignoring a frame this device does not understand.");
                return None;
            }
        };
        let effects = match self.parts.machine.on_frame(frame, url) {
            Ok(effects) => effects,
            Err(violation) => {
                let reason = violation.to_string();
                self.emit_error("protocol", reason.clone()).await;
                close_with(socket, close::POLICY_VIOLATION).await;
                return Some(SessionEnd::Lost(reason));
            }
        };
        for effect in effects {
            match effect {
                Effect::SaveCredential(credential) => {
                    if let Err(e) = self.parts.state.save_credential(&credential) {
                        // Going on would register a new device on every restart.
                        let reason = format!("cannot save the device credential: {e}");
                        self.emit_error("state", reason.clone()).await;
                        close_with(socket, close::NORMAL).await;
                        return Some(SessionEnd::Fatal(reason));
                    }
                }
                Effect::Send(frame) => {
                    if let Err(e) = send(socket, &frame).await {
                        return Some(SessionEnd::Lost(format!("send failed: {e}")));
                    }
                }
                Effect::Emit(event) => {
                    if matches!(event, DeviceEvent::Connected { .. }) {
                        self.parts.backoff.reset();
                    }
                    self.emit(event).await;
                }
            }
        }
        None
    }

    /// Persists new seen ids, then sends the gathered acks; `Some` ends the session.
    async fn flush_acks(&mut self, socket: &mut Socket) -> Option<SessionEnd> {
        let batch = self.parts.machine.take_acks()?;
        if batch.persist_seen {
            self.persist_seen();
        }
        match send(socket, &batch.frame).await {
            Ok(()) => None,
            Err(e) => Some(SessionEnd::Lost(format!("send failed: {e}"))),
        }
    }

    /// Writes `seen.json` if it changed. Synchronous on purpose: the file is small (≤ ~0.5 MB
    /// at the default capacity) and must be on disk before the acks leave.
    fn persist_seen(&mut self) {
        if !self.parts.machine.seen_is_dirty() {
            return;
        }
        match self.parts.state.save_seen(self.parts.machine.seen()) {
            Ok(()) => self.parts.machine.mark_seen_persisted(),
            Err(e) => tracing::warn!(error = %e, "Cannot save seen message ids."),
        }
    }

    async fn emit(&self, event: DeviceEvent) {
        // A closed receiver means the embedder no longer listens; the device still acks.
        let _ = self.parts.events.send(event).await;
    }

    async fn emit_error(&self, code: &str, message: String) {
        self.emit(DeviceEvent::Error {
            code: code.to_owned(),
            message,
            re: None,
        })
        .await;
    }
}

impl RunnerParts {
    /// Applies an embedder command to the machine: the frame to send now, if any.
    fn machine_command(&mut self, command: Command) -> Option<ClientFrame> {
        match command {
            Command::Report { id, status, code } => self.machine.report(id, status, code),
            Command::AddApp(client_id) => self.machine.add_app(client_id),
            Command::DeleteToken(client_id) => self.machine.delete_token(client_id),
            Command::Shutdown => None,
        }
    }
}

/// Buffers sized for many simulated devices in one process: a 4 KiB read buffer, frames
/// written straight through, and a bounded write backlog (tungstenite's defaults are a
/// 128 KiB read buffer per socket and an unbounded backlog).
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_FRAME_BYTES)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

async fn connect(
    url: String,
    connector: Option<tokio_tungstenite::Connector>,
) -> Result<Socket, String> {
    let attempt = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        Some(websocket_config()),
        true,
        connector,
    );
    match timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(e)) => Err(format!("{url}: {e}")),
        Err(_) => Err(format!("{url}: timed out after {CONNECT_TIMEOUT:?}")),
    }
}

async fn send(socket: &mut Socket, frame: &ClientFrame) -> Result<(), String> {
    let text = serde_json::to_string(frame).map_err(|e| e.to_string())?;
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| e.to_string())
}

/// Close codes after which reconnecting cannot help.
fn classify_close(frame: Option<CloseFrame>) -> SessionEnd {
    let Some(frame) = frame else {
        return SessionEnd::Lost("server closed the connection".into());
    };
    let code = u16::from(frame.code);
    let reason = format!("server closed with {code}: {}", frame.reason);
    match code {
        close::BAD_CREDENTIALS => SessionEnd::Fatal(format!(
            "{reason} (the server does not know this device; remove the state directory to register anew)"
        )),
        close::UNSUPPORTED_VERSION | close::REPLACED => SessionEnd::Fatal(reason),
        _ => SessionEnd::Lost(reason),
    }
}

async fn close_with(socket: &mut Socket, code: u16) {
    let _ = socket
        .close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        }))
        .await;
}

/// Sends a normal close frame and waits briefly for the server's answer.
async fn close_socket(mut socket: Socket) {
    close_with(&mut socket, close::NORMAL).await;
    let _ = timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}
