//! The device side: a simulated HarmonyOS device speaking Herald's device protocol over
//! WebSocket (persistent identity, de-duplication, acks, reconnects), and on top of it the
//! app side with Push Kit's client semantics (`docs/app-developers.md`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use herald_client::device::{Device, DeviceConfig, FixedAnswer, ProfileType, SdkEvent};
//! let (device, mut events) = Device::open(DeviceConfig {
//!     servers: vec!["http://127.0.0.1:8080".into()],
//!     state_dir: "./herald-device".into(),
//!     client_ids: vec!["1234567".into()],
//!     ..DeviceConfig::default()
//! })?;
//! let app = device.app("1234567");
//! app.request_enable_notification(&FixedAnswer(true)).await?;
//! let token = app.get_token().await?; // hand it to the backend
//! app.bind_app_profile_id(ProfileType::Application, "111***222").await?;
//! while let Some(event) = events.recv().await {
//!     if let SdkEvent::Notification { shown, .. } = event {
//!         if let Some(notify_id) = shown.notify_id {
//!             app.click(notify_id).await?; // the user taps it
//!         }
//!     }
//! }
//! # let _ = token;
//! device.shutdown().await;
//! # Ok(()) }
//! ```

mod ability;
mod apps;
mod backoff;
mod connection;
mod error;
mod machine;
mod sdk;
mod state;
mod url;

use std::path::PathBuf;
use std::time::Duration;

use herald_proto::device::{DeviceMessage, ReportStatus};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use ability::{
    Ability, AbilityCallback, AbilityDecl, ClickRoute, DEFAULT_HOME_ABILITY, NoopAbility, Want,
    route_click,
};
pub use apps::{
    APP_MESSAGE_ID_WINDOW_MS, AppCore, AppFile, Decision, LiveViewDisplay, MAX_PROFILES,
    MAX_PROXY_ROWS, PermissionGate, Profile, ProfileType, ProxyRow, PushKind, PushPayload,
    RECEIPT_PROFILE_MISMATCH, RECEIPT_SWITCH_OFF, RunState, ShownNotification,
};
pub use backoff::{Backoff, BackoffConfig};
pub use error::{PushError, codes};
pub use herald_proto::device::DeviceCredential;
pub use sdk::{
    APPS_FILE, AppHandle, ClickOutcome, Device, FixedAnswer, PermissionPrompt, SdkEvent,
};
pub use state::{DEFAULT_SEEN_CAPACITY, SeenIds, StateDir, StateError};
pub use url::{BadServerUrl, ws_url};

/// Events buffered for the embedder before the device stops reading its socket. Bounded so
/// that an embedder that stops listening applies back-pressure instead of growing memory.
const EVENT_CHANNEL_CAPACITY: usize = 256;
/// Commands (reports, token requests) buffered for the device task.
const COMMAND_CHANNEL_CAPACITY: usize = 64;

/// How to run a device.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Server base URLs (`http(s)://…`, as backends use) or WebSocket URLs, tried in turn.
    pub servers: Vec<String>,
    /// Where the device keeps its identity and seen message ids.
    pub state_dir: PathBuf,
    /// Apps installed on the device: a token is requested for each after every connect.
    pub client_ids: Vec<String>,
    pub backoff: BackoffConfig,
    /// How many message ids to remember for de-duplication.
    pub seen_capacity: usize,
    /// How long acks are gathered into one frame before being sent.
    pub ack_delay: Duration,
    /// A private CA trusted for `wss://` servers, besides the system's roots.
    pub ca: Option<crate::tls::CaFile>,
    /// How the device shows Live Views: as cards, or (a device without them) as ordinary
    /// notifications of their `title` and `content`.
    pub live_view_display: LiveViewDisplay,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            servers: vec!["http://127.0.0.1:8080".into()],
            state_dir: PathBuf::from("herald-device"),
            client_ids: Vec::new(),
            backoff: BackoffConfig::default(),
            seen_capacity: DEFAULT_SEEN_CAPACITY,
            ack_delay: Duration::from_millis(20),
            ca: None,
            live_view_display: LiveViewDisplay::default(),
        }
    }
}

/// What the device tells its embedder.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent {
    /// The server welcomed the device. `registered` is true on the very first connection.
    Connected {
        device_id: String,
        server: String,
        registered: bool,
    },
    /// The push token of one app.
    Token { client_id: String, token: String },
    /// The server deleted the app's token (answer to [`DeviceHandle::delete_token`]).
    TokenDeleted { client_id: String },
    /// A new message (duplicates are acked and not reported).
    Message(DeviceMessage),
    /// The sender withdrew notification `notify_id` of the app (`messages:revoke`).
    Revoke { client_id: String, notify_id: u32 },
    /// An `error` frame from the server (`code` is the server's), or a local problem
    /// (`code` is `connect_failed`, `protocol`, `state`, …). The device keeps going.
    Error {
        code: String,
        message: String,
        re: Option<String>,
    },
    /// The connection is gone. With `will_retry: false` the device has stopped for good
    /// (shutdown, credential rejected, replaced by another connection, unusable state dir).
    Disconnected { reason: String, will_retry: bool },
}

/// Starting a device failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("no server URL given")]
    NoServers,
    #[error(transparent)]
    BadServerUrl(#[from] BadServerUrl),
    #[error("device state: {0}")]
    State(#[from] StateError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("the device has stopped")]
    Stopped,
}

impl Device {
    /// The protocol client alone, without the app-side rules: loads the device's state
    /// and spawns its task on the current tokio runtime. [`Device::open`] builds the SDK
    /// on top of it.
    pub fn start(
        config: DeviceConfig,
    ) -> Result<(DeviceHandle, mpsc::Receiver<DeviceEvent>), DeviceError> {
        if config.servers.is_empty() {
            return Err(DeviceError::NoServers);
        }
        let urls = config
            .servers
            .iter()
            .map(|s| ws_url(s))
            .collect::<Result<Vec<_>, _>>()?;
        let connector = match &config.ca {
            Some(ca) => Some(tokio_tungstenite::Connector::Rustls(ca.rustls_config()?)),
            None => None,
        };
        let state = StateDir::open(&config.state_dir)?;
        let credential = state.load_credential()?;
        let seen = state.load_seen(config.seen_capacity)?;
        let machine = machine::Machine::new(credential, config.client_ids.clone(), seen);

        let (event_tx, event_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let (command_tx, command_rx) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
        let runner = connection::Runner::new(connection::RunnerParts {
            urls,
            state,
            machine,
            events: event_tx,
            commands: command_rx,
            backoff: Backoff::new(config.backoff),
            ack_delay: config.ack_delay,
            connector,
        });
        let task = tokio::spawn(runner.run());
        Ok((
            DeviceHandle {
                commands: command_tx,
                task,
            },
            event_rx,
        ))
    }
}

#[derive(Debug)]
pub(crate) enum Command {
    Report {
        id: String,
        status: ReportStatus,
        code: Option<u32>,
    },
    AddApp(String),
    DeleteToken(String),
    Shutdown,
}

/// Controls a running device. Dropping it also stops the device (with a close frame),
/// without waiting.
#[derive(Debug)]
pub struct DeviceHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl DeviceHandle {
    /// Tells the server what became of a message. Sent at once when connected, otherwise
    /// after the next welcome.
    pub async fn report(
        &self,
        message_id: impl Into<String>,
        status: ReportStatus,
        code: Option<u32>,
    ) -> Result<(), DeviceError> {
        self.command(Command::Report {
            id: message_id.into(),
            status,
            code,
        })
        .await
    }

    /// Installs another app: its token arrives as a [`DeviceEvent::Token`].
    pub async fn add_app(&self, client_id: impl Into<String>) -> Result<(), DeviceError> {
        self.command(Command::AddApp(client_id.into())).await
    }

    /// Asks the server to delete the app's token; [`DeviceEvent::TokenDeleted`] follows.
    /// Made offline, the request goes out after the next welcome.
    pub async fn delete_token(&self, client_id: impl Into<String>) -> Result<(), DeviceError> {
        self.command(Command::DeleteToken(client_id.into())).await
    }

    /// Closes the connection with a normal close frame and waits for the task to end.
    pub async fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown).await;
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "Device task failed.");
        }
    }

    async fn command(&self, command: Command) -> Result<(), DeviceError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| DeviceError::Stopped)
    }
}
