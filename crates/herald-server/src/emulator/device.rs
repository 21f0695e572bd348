//! A virtual device: one task per device, no socket. It says `hello`, `get_token`, acks
//! and reports through the gateway's session state machine (`gateway/sm.rs`), takes its
//! messages from the registry and the stored queue as a connection does, and decides
//! what to show with the SDK's device rules (`herald_client::device::AppCore`,
//! `route_click`). One app per device.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use herald_client::device::{
    AbilityCallback, AbilityDecl, AppCore, AppFile, ClickRoute, DEFAULT_HOME_ABILITY, Decision,
    ProfileType, RunState, route_click,
};
use herald_proto::device::{
    ClientFrame, DeviceCredential, DeviceMessage, PROTOCOL_VERSION, ReportStatus, ServerFrame,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use super::{InboxRecord, MAX_INBOX, lock};
use crate::gateway::sm::{Identified, Unidentified};
use crate::registry::{Live, Registration};
use crate::state::Shared;

/// Commands waiting for a device's task at most (API calls wait for room).
const COMMANDS: usize = 64;

/// What the user (or the system) does on the device: `POST
/// /emulator/v1/devices/{device_id}/actions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Tap the notification with this `notifyId`: it leaves the shade, `clicked` is
    /// reported, and its `clickAction` starts an ability (answered: the `want`).
    Click { notify_id: i64 },
    /// The app's notification switch in the system settings.
    Settings { enabled: bool },
    /// `bindAppProfileId` (`kind`: 1 HUAWEI ID, 2 the app's own account, the default).
    BindProfile {
        id: String,
        #[serde(default)]
        kind: Option<u8>,
    },
    /// `unbindAppProfileId`.
    UnbindProfile { id: String },
    /// `deleteToken`, then `getToken`: answered with the new token.
    DeleteToken,
    /// The app goes to `foreground`, `background`, or is `stopped`.
    AppState { state: AppRunState },
    /// The device connects (reading its queue) or disconnects.
    Online { online: bool },
}

/// The app's run state as the API names it.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AppRunState {
    Foreground,
    Background,
    Stopped,
}

impl From<AppRunState> for RunState {
    fn from(s: AppRunState) -> RunState {
        match s {
            AppRunState::Foreground => RunState::Foreground,
            AppRunState::Background => RunState::Background,
            AppRunState::Stopped => RunState::Stopped,
        }
    }
}

/// Why an action was refused: an HTTP status and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub axum::http::StatusCode, pub String);

impl Refused {
    fn bad(why: impl Into<String>) -> Self {
        Refused(axum::http::StatusCode::BAD_REQUEST, why.into())
    }

    fn conflict(why: impl Into<String>) -> Self {
        Refused(axum::http::StatusCode::CONFLICT, why.into())
    }

    fn internal() -> Self {
        Refused(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the store failed; see the server log".into(),
        )
    }
}

pub(super) enum Command {
    /// Take everything the device's channels hold, then answer.
    Settle(oneshot::Sender<()>),
    Act(Action, oneshot::Sender<Result<Value, Refused>>),
    /// Disconnect and end the task.
    Stop(oneshot::Sender<()>),
}

/// The API's handle on a device's task, and what was sent to it.
#[derive(Debug)]
pub(super) struct VirtualDevice {
    pub device_id: String,
    commands: mpsc::Sender<Command>,
    inbox: Mutex<VecDeque<InboxRecord>>,
}

impl VirtualDevice {
    pub(super) fn remember(&self, record: InboxRecord) {
        let mut inbox = lock(&self.inbox);
        if inbox.len() >= MAX_INBOX {
            inbox.pop_front();
        }
        inbox.push_back(record);
    }

    pub(super) fn records(&self) -> Vec<InboxRecord> {
        lock(&self.inbox).iter().cloned().collect()
    }

    /// Wait until the device has taken what its channels held (every message routed to
    /// it before this call).
    pub(super) async fn settle(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Settle(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub(super) async fn act(&self, action: Action) -> Result<Value, Refused> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Act(action, tx))
            .await
            .map_err(|_| Refused::conflict("the device has stopped"))?;
        rx.await
            .unwrap_or_else(|_| Err(Refused::conflict("the device has stopped")))
    }

    pub(super) async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// How a new device starts.
#[derive(Debug, Clone)]
pub(super) struct Start {
    pub client_id: String,
    pub permission: bool,
    pub online: bool,
    pub app_state: AppRunState,
    pub abilities: Vec<AbilityDecl>,
}

/// Register a device, get its app's token, start its task. Answers the device and its
/// token, or why not (an unknown app).
pub(super) async fn start(
    app: &Shared,
    start: Start,
) -> Result<(Arc<VirtualDevice>, String), Refused> {
    let known = app
        .apps
        .get(app.store.as_ref(), &start.client_id)
        .await
        .map_err(|_| Refused::internal())?
        .is_some();
    if !known {
        return Err(Refused(
            axum::http::StatusCode::NOT_FOUND,
            format!("no app has client_id {:?}", start.client_id),
        ));
    }
    let (session, frames) = Unidentified
        .on_frame(
            app,
            ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                device: None,
            },
        )
        .await
        .map_err(|_| Refused::internal())?;
    let credential = frames
        .iter()
        .find_map(|f| match serde_json::from_str(f) {
            Ok(ServerFrame::Welcome {
                device_id,
                secret: Some(secret),
                ..
            }) => Some(DeviceCredential {
                id: device_id,
                secret,
            }),
            _ => None,
        })
        .ok_or_else(Refused::internal)?;
    let mut device = Device {
        app: app.clone(),
        credential,
        session,
        client_id: start.client_id.clone(),
        core: AppCore::new(AppFile {
            notifications_enabled: start.permission,
            permission_asked: true,
            ..AppFile::default()
        }),
        abilities: start.abilities,
        reg: None,
    };
    let token = device.get_token().await?;
    // Launched by the user as the SDK's `set_run_state` does: the home ability runs.
    device.set_run_state(start.app_state.into());
    if start.online {
        device.connect().await?;
    }
    let (tx, rx) = mpsc::channel(COMMANDS);
    let handle = Arc::new(VirtualDevice {
        device_id: device.credential.id.clone(),
        commands: tx,
        inbox: Mutex::default(),
    });
    tokio::spawn(device.run(rx));
    Ok((handle, token))
}

/// The device's side, owned by its task.
struct Device {
    app: Shared,
    credential: DeviceCredential,
    session: Identified,
    client_id: String,
    core: AppCore,
    abilities: Vec<AbilityDecl>,
    /// Connected: the registry's channels into this device.
    reg: Option<Registration>,
}

/// What woke the device's task.
enum Wake {
    Command(Option<Command>),
    Live(Box<Live>),
    Resync,
    Kicked,
    Shutdown,
}

impl Device {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let shutdown = self.app.shutdown.clone();
        loop {
            let wake = match &mut self.reg {
                Some(reg) => tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => Wake::Shutdown,
                    c = commands.recv() => Wake::Command(c),
                    Some(l) = reg.urgent_rx.recv() => Wake::Live(l),
                    Some(l) = reg.rx.recv() => Wake::Live(l),
                    _ = reg.resync.notified() => Wake::Resync,
                    _ = reg.kicked.cancelled() => Wake::Kicked,
                },
                None => tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => Wake::Shutdown,
                    c = commands.recv() => Wake::Command(c),
                },
            };
            match wake {
                Wake::Shutdown | Wake::Command(None) => break,
                Wake::Command(Some(Command::Stop(done))) => {
                    self.disconnect();
                    let _ = done.send(());
                    return;
                }
                Wake::Command(Some(Command::Settle(done))) => {
                    self.take_waiting().await;
                    let _ = done.send(());
                }
                Wake::Command(Some(Command::Act(action, reply))) => {
                    let answer = self.act(action).await;
                    let _ = reply.send(answer);
                }
                Wake::Live(live) => self.on_live(&live).await,
                Wake::Resync => {
                    // As a connection does: read the queue once the acks so far are written.
                    let _ = self.app.reports.flush().await.await;
                    self.read_queue().await;
                }
                Wake::Kicked => self.reg = None,
            }
        }
        self.disconnect();
    }

    /// Everything already routed to the device (calls first).
    async fn take_waiting(&mut self) {
        loop {
            let next = match &mut self.reg {
                Some(reg) => reg.urgent_rx.try_recv().or_else(|_| reg.rx.try_recv()).ok(),
                None => None,
            };
            match next {
                Some(live) => self.on_live(&live).await,
                None => return,
            }
        }
    }

    async fn on_live(&mut self, live: &Live) {
        let now = self.app.clock.now_ms();
        if let Some(frame) = self.session.on_live(live, now) {
            self.take_frames(vec![frame]).await;
        }
    }

    async fn read_queue(&mut self) {
        let now = self.app.clock.now_ms();
        match self.app.store.pending(self.session.device, now).await {
            Ok(backlog) => {
                let frames = self.session.on_backlog(backlog);
                self.take_frames(frames).await;
            }
            Err(e) => {
                tracing::error!(error = %e, device_id = %self.credential.id, "Could not read a virtual device's queue.")
            }
        }
    }

    /// What the server sent, as the device's protocol client and SDK take it.
    async fn take_frames(&mut self, frames: Vec<String>) {
        for text in frames {
            match serde_json::from_str::<ServerFrame>(&text) {
                Ok(ServerFrame::Message(m)) => self.on_message(m).await,
                Ok(ServerFrame::Revoke { id, notify_id, .. }) => {
                    self.core.revoke(i64::from(notify_id));
                    self.say(ClientFrame::Ack { ids: vec![id] }).await;
                }
                _ => {}
            }
        }
    }

    /// Ack, decide with the SDK's rules, report what the rules say.
    async fn on_message(&mut self, m: DeviceMessage) {
        self.say(ClientFrame::Ack {
            ids: vec![m.id.clone()],
        })
        .await;
        let now = self.app.clock.now_ms();
        let decision = self.core.decide(&m, now);
        if let Decision::Cache(payload) = &decision {
            self.core.cached_background = Some((payload.clone(), now));
        }
        if let Some((status, code)) = decision.report() {
            self.say(ClientFrame::Report {
                id: m.id,
                status,
                code,
            })
            .await;
        }
    }

    /// A frame to the session, as if it came from the socket; answers are frames.
    async fn say(&mut self, frame: ClientFrame) -> Vec<String> {
        match self.session.on_frame(&self.app, frame).await {
            Ok(frames) => frames,
            Err(close) => {
                tracing::warn!(device_id = %self.credential.id, code = close.code, reason = close.reason, "The session refused a virtual device's frame.");
                Vec::new()
            }
        }
    }

    async fn get_token(&mut self) -> Result<String, Refused> {
        let frames = self
            .say(ClientFrame::GetToken {
                client_id: self.client_id.clone(),
            })
            .await;
        let token = frames
            .iter()
            .find_map(|f| match serde_json::from_str(f) {
                Ok(ServerFrame::Token { token, .. }) => Some(token),
                _ => None,
            })
            .ok_or_else(Refused::internal)?;
        self.core.token_received(&token);
        Ok(token)
    }

    fn set_run_state(&mut self, run: RunState) {
        if self.core.run == RunState::Stopped && run != RunState::Stopped {
            self.core.start_ability(DEFAULT_HOME_ABILITY);
        }
        let now = self.app.clock.now_ms();
        self.core.set_run_state(run, now);
    }

    /// Connect: a `hello` with the credential (a new session number), register in the
    /// registry, then read the stored queue — in that order, as the gateway does.
    async fn connect(&mut self) -> Result<(), Refused> {
        if self.reg.is_some() {
            return Ok(());
        }
        let hello = ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            device: Some(self.credential.clone()),
        };
        let (session, _welcome) = Unidentified
            .on_frame(&self.app, hello)
            .await
            .map_err(|_| Refused::internal())?;
        self.session = session;
        self.reg = Some(self.app.registry.register(
            self.session.device,
            self.app.config.device_queue,
            self.session.session,
        ));
        self.app.tell_others(crate::bus::Control::DeviceClaimed {
            device: self.session.device,
            session: self.session.session,
        });
        self.read_queue().await;
        Ok(())
    }

    fn disconnect(&mut self) {
        if let Some(reg) = self.reg.take() {
            self.app
                .registry
                .unregister(self.session.device, reg.conn_id);
        }
    }

    async fn act(&mut self, action: Action) -> Result<Value, Refused> {
        match action {
            Action::Click { notify_id } => self.click(notify_id).await,
            Action::Settings { enabled } => {
                self.core.file.notifications_enabled = enabled;
                Ok(json!({"enabled": enabled}))
            }
            Action::BindProfile { id, kind } => {
                let kind = ProfileType::try_from(kind.unwrap_or(2))
                    .map_err(|e| Refused::bad(e.to_string()))?;
                self.core
                    .bind_profile(kind, &id)
                    .map_err(|e| Refused::bad(e.to_string()))?;
                Ok(json!({"profiles": self.core.file.profiles}))
            }
            Action::UnbindProfile { id } => {
                self.core
                    .unbind_profile(&id)
                    .map_err(|e| Refused::bad(e.to_string()))?;
                Ok(json!({"profiles": self.core.file.profiles}))
            }
            Action::DeleteToken => {
                self.say(ClientFrame::DeleteToken {
                    client_id: self.client_id.clone(),
                })
                .await;
                self.core.token_deleted();
                let token = self.get_token().await?;
                Ok(json!({"token": token}))
            }
            Action::AppState { state } => {
                self.set_run_state(state.into());
                Ok(json!({"state": state_name(self.core.run)}))
            }
            Action::Online { online } => {
                if online {
                    self.connect().await?;
                } else {
                    self.disconnect();
                }
                Ok(json!({"online": self.reg.is_some()}))
            }
        }
    }

    /// The user taps a notification on the shade (the SDK's `AppHandle::click`).
    async fn click(&mut self, notify_id: i64) -> Result<Value, Refused> {
        let shown = self.core.take_notification(notify_id).ok_or_else(|| {
            Refused(
                axum::http::StatusCode::NOT_FOUND,
                format!("no notification with notifyId {notify_id} on the device's shade"),
            )
        })?;
        let route = route_click(
            shown.notification.get("clickAction"),
            &self.abilities,
            DEFAULT_HOME_ABILITY,
        );
        self.say(ClientFrame::Report {
            id: shown.message_id.clone(),
            status: ReportStatus::Clicked,
            code: None,
        })
        .await;
        Ok(match route {
            ClickRoute::Open { ability, want } => {
                let callback = self.core.start_ability(&ability);
                let now = self.app.clock.now_ms();
                // A background message cached meanwhile is handed to the app now.
                self.core.take_cached_background(now);
                json!({
                    "message_id": shown.message_id,
                    "opened": "ability",
                    "ability": ability,
                    "callback": callback_name(callback),
                    "want": want,
                })
            }
            ClickRoute::Clear => json!({
                "message_id": shown.message_id,
                "opened": "nothing",
                "want": null,
            }),
            ClickRoute::Dial { tel } => json!({
                "message_id": shown.message_id,
                "opened": "dialer",
                "tel": tel,
                "want": null,
            }),
        })
    }
}

fn callback_name(c: AbilityCallback) -> &'static str {
    c.as_str()
}

fn state_name(run: RunState) -> &'static str {
    match run {
        RunState::Foreground => "foreground",
        RunState::Background => "background",
        RunState::Stopped => "stopped",
    }
}
