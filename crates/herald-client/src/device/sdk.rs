//! The app side of a device, shaped like ArkTS's `pushService` and `notificationManager`:
//! one [`Device`] (one connection for several apps) and an [`AppHandle`] per app with
//! `get_token`, `delete_token`, `bind_app_profile_id`, `receive_message`,
//! `request_enable_notification`, tap handling through [`Ability`]s, and the rules of
//! [`super::apps`] applied to every message before the app or the screen sees it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use herald_core::{Clock, SystemClock};
use herald_proto::device::{DeviceMessage, ReportStatus};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::ability::{
    Ability, AbilityCallback, AbilityDecl, ClickRoute, DEFAULT_HOME_ABILITY, NoopAbility, Want,
    route_click,
};
use super::apps::{
    AppCore, AppFile, Decision, LiveViewDisplay, PermissionGate, Profile, ProfileType, ProxyRow,
    PushKind, PushPayload, RunState, ShownNotification,
};
use super::error::PushError;
use super::{Command, DeviceConfig, DeviceError, DeviceEvent, DeviceHandle, StateDir};

/// The per-app state file in the device's state directory.
pub const APPS_FILE: &str = "apps.json";
/// Events buffered for the observer. When it falls this far behind, events are dropped
/// (with a warning) rather than stalling message handling: the events are a view, the
/// state itself stays queryable through [`AppHandle`].
const SDK_EVENT_CAPACITY: usize = 1024;

/// The user's side of the permission dialog and the settings page; the embedding program
/// implements it (a terminal prompt, a test's scripted answer…).
#[async_trait]
pub trait PermissionPrompt: Send + Sync {
    /// The dialog "Allow <app> to send notifications?"; `true` for allow.
    async fn ask(&self, client_id: &str) -> bool;
    /// The settings page, opened with the switch at `enabled`; returns where the user
    /// leaves it. By default the user changes nothing.
    async fn settings(&self, _client_id: &str, enabled: bool) -> bool {
        enabled
    }
}

/// A prompt that always answers the same, in the dialog and on the settings page.
#[derive(Debug, Clone, Copy)]
pub struct FixedAnswer(pub bool);

#[async_trait]
impl PermissionPrompt for FixedAnswer {
    async fn ask(&self, _client_id: &str) -> bool {
        self.0
    }
    async fn settings(&self, _client_id: &str, _enabled: bool) -> bool {
        self.0
    }
}

/// What the device's system side did, for an observer (a simulator's output, a test).
#[derive(Debug, Clone, PartialEq)]
pub enum SdkEvent {
    Connected {
        device_id: String,
        server: String,
        registered: bool,
    },
    Disconnected {
        reason: String,
        will_retry: bool,
    },
    /// A token from the server; `bindings_dropped` when it differs from the last one.
    Token {
        client_id: String,
        token: String,
        bindings_dropped: bool,
    },
    TokenDeleted {
        client_id: String,
    },
    /// The outcome of a permission request (`code` 1600004/1600013 on refusal) or of
    /// the user changing the switch in the settings (`code` `None`).
    Permission {
        client_id: String,
        enabled: bool,
        code: Option<u32>,
    },
    /// A notification went on screen.
    Notification {
        client_id: String,
        shown: ShownNotification,
        /// The message id of the notification it replaced (same `notifyId`).
        replaced: Option<String>,
    },
    /// A message was not shown; `receipt` is what the server was told (none for an
    /// `appMessageId` repeat, which is simply not shown).
    Suppressed {
        client_id: String,
        message_id: String,
        push_type: u8,
        receipt: Option<u32>,
        reason: String,
    },
    /// A message went to `receiveMessage(kind)`; `handled` is false when the app
    /// registered no callback for that kind.
    Received {
        client_id: String,
        kind: PushKind,
        payload: PushPayload,
        handled: bool,
    },
    /// A background message arrived while the app was away: kept (newest only, 7 days)
    /// until the app comes to the foreground.
    Cached {
        client_id: String,
        message_id: String,
    },
    /// A background message with `proxyData: "ENABLE"` arrived while the app was away:
    /// Push Kit wrote it into the app's `PushMessage` table (see
    /// [`AppHandle::push_messages`]).
    ProxyData {
        client_id: String,
        row: ProxyRow,
    },
    /// A widget (form) applied a refresh.
    Form {
        client_id: String,
        message_id: String,
        form_id: i64,
        version: u32,
        form_data: Value,
    },
    /// A Live View changed; `state` is what the device now shows.
    LiveView {
        client_id: String,
        message_id: String,
        activity_id: i64,
        operation: u8,
        state: super::apps::LiveViewState,
    },
    /// The app's badge now shows `count`.
    Badge {
        client_id: String,
        count: u32,
    },
    /// The sender withdrew a notification that was on screen.
    Revoked {
        client_id: String,
        notify_id: u32,
        message_id: String,
    },
    /// A push type the SDK does not model, passed through.
    Message(DeviceMessage),
    /// What the device reported to the server about a message.
    Report {
        message_id: String,
        status: ReportStatus,
        code: Option<u32>,
    },
    /// A tap started or resumed an ability.
    Ability {
        client_id: String,
        ability: String,
        callback: AbilityCallback,
        want: Want,
    },
    Error {
        code: String,
        message: String,
        re: Option<String>,
    },
}

/// What a tap did.
#[derive(Debug, Clone, PartialEq)]
pub enum ClickOutcome {
    Opened {
        ability: String,
        callback: AbilityCallback,
        want: Want,
    },
    /// `actionType` 3: the notification was cleared.
    Cleared,
    /// `actionType` 5: the dialer opened.
    Dialed { tel: Option<String> },
}

type Receiver = Arc<dyn Fn(PushPayload) + Send + Sync>;

/// One app's state plus what the SDK needs to answer its calls.
struct Slot {
    core: AppCore,
    /// The token the server confirmed on this connection's lifetime.
    confirmed_token: Option<String>,
    token_waiters: Vec<oneshot::Sender<Result<String, PushError>>>,
    delete_waiters: Vec<oneshot::Sender<Result<(), PushError>>>,
    receivers: HashMap<PushKind, Receiver>,
    home: (String, Arc<dyn Ability>),
    abilities: Vec<(AbilityDecl, Arc<dyn Ability>)>,
}

impl Slot {
    fn new(file: AppFile) -> Self {
        Slot {
            core: AppCore::new(file),
            confirmed_token: None,
            token_waiters: Vec::new(),
            delete_waiters: Vec::new(),
            receivers: HashMap::new(),
            home: (DEFAULT_HOME_ABILITY.to_owned(), Arc::new(NoopAbility)),
            abilities: Vec::new(),
        }
    }

    fn ability(&self, name: &str) -> Arc<dyn Ability> {
        if self.home.0 == name {
            return self.home.1.clone();
        }
        self.abilities
            .iter()
            .find(|(d, _)| d.name == name)
            .map_or_else(|| self.home.1.clone(), |(_, a)| a.clone())
    }

    fn fail_waiters(&mut self, error: &PushError) {
        for w in self.token_waiters.drain(..) {
            let _ = w.send(Err(error.clone()));
        }
        for w in self.delete_waiters.drain(..) {
            let _ = w.send(Err(error.clone()));
        }
    }
}

struct Apps {
    slots: HashMap<String, Slot>,
    /// How this device shows Live Views; every app's rules read it.
    live_view_display: LiveViewDisplay,
    /// The device stopped for good: calls that need the server fail at once.
    stopped: bool,
}

impl Apps {
    fn slot(&mut self, client_id: &str) -> &mut Slot {
        self.slots.entry(client_id.to_owned()).or_insert_with(|| {
            let mut slot = Slot::new(AppFile::default());
            slot.core.live_view_display = self.live_view_display;
            slot
        })
    }
}

/// Shared between the handles and the pump task. The mutex is a std one: it guards plain
/// data, is never held across an `.await`, and app callbacks run after it is released.
struct Inner {
    apps: Mutex<Apps>,
    state: StateDir,
    clock: Arc<dyn Clock>,
    /// Unbounded on purpose: the pump must never wait on the device task while that task
    /// waits on the pump (both channels full). Commands are one per message at most.
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::Sender<SdkEvent>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Apps> {
        // A panic in another thread while holding the lock leaves plain data behind.
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: SdkEvent) {
        match self.events.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                tracing::warn!(?event, "Observer is not keeping up; event dropped.");
            }
        }
    }

    fn command(&self, command: Command) {
        // Fails only when the device task is gone; callers learn that from `stopped`.
        let _ = self.commands.send(command);
    }

    fn report(&self, message_id: &str, status: ReportStatus, code: Option<u32>) {
        self.command(Command::Report {
            id: message_id.to_owned(),
            status,
            code,
        });
        self.emit(SdkEvent::Report {
            message_id: message_id.to_owned(),
            status,
            code,
        });
    }

    /// Writes `apps.json` (called with the lock held, so writes are ordered).
    fn persist(&self, apps: &Apps) -> Result<(), PushError> {
        let files: BTreeMap<&str, &AppFile> = apps
            .slots
            .iter()
            .map(|(id, s)| (id.as_str(), &s.core.file))
            .collect();
        self.state.write_json(APPS_FILE, &files).map_err(|e| {
            tracing::warn!(error = %e, "Cannot save the apps' state.");
            PushError::Internal(e.to_string())
        })
    }

    /// Calls the app's `receiveMessage(kind)` callback, if any.
    fn hand_over(&self, client_id: &str, kind: PushKind, payload: PushPayload) -> bool {
        let receiver = self
            .lock()
            .slots
            .get(client_id)
            .and_then(|s| s.receivers.get(&kind).cloned());
        let handled = receiver.is_some();
        if let Some(r) = receiver {
            r(payload.clone());
        }
        self.emit(SdkEvent::Received {
            client_id: client_id.to_owned(),
            kind,
            payload,
            handled,
        });
        handled
    }
}

/// A device with Push Kit's client semantics. Dropping it stops the device.
pub struct Device {
    inner: Arc<Inner>,
    handle: DeviceHandle,
    pump: JoinHandle<()>,
    forwarder: JoinHandle<()>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("state_dir", &self.inner.state.path())
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Starts a device on the current tokio runtime, with the wall clock. The receiver
    /// gets [`SdkEvent`]s; drop it if nobody watches.
    pub fn open(config: DeviceConfig) -> Result<(Device, mpsc::Receiver<SdkEvent>), DeviceError> {
        Device::open_with_clock(config, Arc::new(SystemClock))
    }

    /// As [`Device::open`], reading time (for `appMessageId`'s 24 hours) from `clock`.
    pub fn open_with_clock(
        config: DeviceConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Device, mpsc::Receiver<SdkEvent>), DeviceError> {
        let state = StateDir::open(&config.state_dir)?;
        let files: BTreeMap<String, AppFile> = state.read_json(APPS_FILE)?.unwrap_or_default();
        let mut slots: HashMap<String, Slot> = files
            .into_iter()
            .map(|(id, file)| (id, Slot::new(file)))
            .collect();
        for id in &config.client_ids {
            slots
                .entry(id.clone())
                .or_insert_with(|| Slot::new(AppFile::default()));
        }
        let live_view_display = config.live_view_display;
        for slot in slots.values_mut() {
            slot.core.live_view_display = live_view_display;
        }
        let (handle, low_events) = Device::start(config)?;
        let (event_tx, event_rx) = mpsc::channel(SDK_EVENT_CAPACITY);
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            apps: Mutex::new(Apps {
                slots,
                live_view_display,
                stopped: false,
            }),
            state,
            clock,
            commands: command_tx,
            events: event_tx,
        });
        let forwarder = tokio::spawn(forward_commands(command_rx, handle.commands.clone()));
        let pump = tokio::spawn(pump(inner.clone(), low_events));
        Ok((
            Device {
                inner,
                handle,
                pump,
                forwarder,
            },
            event_rx,
        ))
    }

    /// The handle of one app (installing it on the device if it is new). Its token is
    /// requested by [`AppHandle::get_token`].
    pub fn app(&self, client_id: impl Into<String>) -> AppHandle {
        let client_id = client_id.into();
        self.inner.lock().slot(&client_id);
        AppHandle {
            client_id,
            inner: self.inner.clone(),
        }
    }

    /// Closes the connection and waits for the device's tasks to end.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
        let _ = self.pump.await;
        self.forwarder.abort();
    }
}

/// Passes SDK commands to the device task in order, waiting when its channel is full.
async fn forward_commands(mut rx: mpsc::UnboundedReceiver<Command>, tx: mpsc::Sender<Command>) {
    while let Some(command) = rx.recv().await {
        if tx.send(command).await.is_err() {
            return;
        }
    }
}

/// Reads the protocol client's events and applies the app-side rules to them.
async fn pump(inner: Arc<Inner>, mut events: mpsc::Receiver<DeviceEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            DeviceEvent::Connected {
                device_id,
                server,
                registered,
            } => inner.emit(SdkEvent::Connected {
                device_id,
                server,
                registered,
            }),
            DeviceEvent::Token { client_id, token } => on_token(&inner, client_id, token),
            DeviceEvent::TokenDeleted { client_id } => on_token_deleted(&inner, client_id),
            DeviceEvent::Message(message) => on_message(&inner, message),
            DeviceEvent::Revoke {
                client_id,
                notify_id,
            } => on_revoke(&inner, client_id, notify_id),
            DeviceEvent::Error { code, message, re } => {
                if code == "unknown_app" {
                    let error = PushError::IllegalAppIdentity(message.clone());
                    let mut apps = inner.lock();
                    for slot in apps.slots.values_mut() {
                        // The error frame does not say which app: every app still waiting
                        // for the server learns it (in practice, the one just installed).
                        if slot.confirmed_token.is_none() || !slot.delete_waiters.is_empty() {
                            slot.fail_waiters(&error);
                        }
                    }
                }
                inner.emit(SdkEvent::Error { code, message, re });
            }
            DeviceEvent::Disconnected { reason, will_retry } => {
                if !will_retry {
                    stop(&inner);
                } else {
                    for slot in inner.lock().slots.values_mut() {
                        slot.confirmed_token = None;
                    }
                }
                inner.emit(SdkEvent::Disconnected { reason, will_retry });
            }
        }
    }
    stop(&inner);
}

fn stop(inner: &Inner) {
    let mut apps = inner.lock();
    apps.stopped = true;
    for slot in apps.slots.values_mut() {
        slot.fail_waiters(&PushError::DeviceStopped);
    }
}

fn on_token(inner: &Inner, client_id: String, token: String) {
    let bindings_dropped = {
        let mut apps = inner.lock();
        let slot = apps.slot(&client_id);
        let dropped = slot.core.token_received(&token);
        slot.confirmed_token = Some(token.clone());
        for w in slot.token_waiters.drain(..) {
            let _ = w.send(Ok(token.clone()));
        }
        let _ = inner.persist(&apps);
        dropped
    };
    inner.emit(SdkEvent::Token {
        client_id,
        token,
        bindings_dropped,
    });
}

fn on_token_deleted(inner: &Inner, client_id: String) {
    {
        let mut apps = inner.lock();
        let slot = apps.slot(&client_id);
        slot.core.token_deleted();
        slot.confirmed_token = None;
        for w in slot.delete_waiters.drain(..) {
            let _ = w.send(Ok(()));
        }
        let _ = inner.persist(&apps);
    }
    inner.emit(SdkEvent::TokenDeleted { client_id });
}

/// `messages:revoke` reached the device: the notification leaves the screen if it is
/// there (tapped ones already left and are unaffected).
fn on_revoke(inner: &Inner, client_id: String, notify_id: u32) {
    let removed = inner
        .lock()
        .slot(&client_id)
        .core
        .revoke(i64::from(notify_id));
    if let Some(shown) = removed {
        inner.emit(SdkEvent::Revoked {
            client_id,
            notify_id,
            message_id: shown.message_id,
        });
    }
}

fn on_message(inner: &Inner, message: DeviceMessage) {
    let now = inner.clock.now_ms();
    let (decision, badge) = {
        let mut apps = inner.lock();
        let slot = apps.slot(&message.client_id);
        let decision = slot.core.decide(&message, now);
        if let Decision::Cache(payload) = &decision {
            slot.core.cached_background = Some((payload.clone(), now));
        }
        // A shown notification with a `badge` changed the app's badge.
        let badge = match &decision {
            Decision::Show { shown, .. } if shown.notification.get("badge").is_some() => {
                Some(slot.core.badge)
            }
            _ => None,
        };
        if matches!(decision, Decision::Show { .. } | Decision::ProxyWrite(_)) {
            // appMessageId records and the PushMessage table survive a restart.
            let _ = inner.persist(&apps);
        }
        (decision, badge)
    };
    let client_id = message.client_id.clone();
    // What the server hears, decided by the rules (`Decision::report`), after the event.
    let report = decision.report();
    match decision {
        Decision::Show { shown, replaced } => {
            inner.emit(SdkEvent::Notification {
                client_id: client_id.clone(),
                shown,
                replaced,
            });
            if let Some(count) = badge {
                inner.emit(SdkEvent::Badge { client_id, count });
            }
        }
        Decision::ProxyWrite(row) => {
            inner.emit(SdkEvent::ProxyData { client_id, row });
        }
        Decision::Suppress { receipt, reason } => {
            inner.emit(SdkEvent::Suppressed {
                client_id,
                message_id: message.id.clone(),
                push_type: message.push_type,
                receipt,
                reason: reason.to_owned(),
            });
        }
        Decision::ToApp { kind, payload } => {
            inner.hand_over(&client_id, kind, payload);
        }
        Decision::Cache(_) => {
            inner.emit(SdkEvent::Cached {
                client_id,
                message_id: message.id.clone(),
            });
        }
        Decision::Form {
            form_id,
            version,
            form_data,
        } => {
            inner.emit(SdkEvent::Form {
                client_id,
                message_id: message.id.clone(),
                form_id,
                version,
                form_data,
            });
        }
        Decision::LiveView {
            activity_id,
            operation,
            state,
        } => {
            inner.emit(SdkEvent::LiveView {
                client_id,
                message_id: message.id.clone(),
                activity_id,
                operation,
                state,
            });
        }
        Decision::Badge { count } => {
            inner.emit(SdkEvent::Badge { client_id, count });
        }
        Decision::PassThrough => {
            inner.emit(SdkEvent::Message(message.clone()));
        }
    }
    if let Some((status, code)) = report {
        inner.report(&message.id, status, code);
    }
}

/// One app on the device, with ArkTS's `pushService` / `notificationManager` calls.
#[derive(Clone)]
pub struct AppHandle {
    client_id: String,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppHandle")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl AppHandle {
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Runs `f` on this app's slot under the lock.
    fn with_slot<T>(&self, f: impl FnOnce(&mut Slot) -> T) -> T {
        f(self.inner.lock().slot(&self.client_id))
    }

    /// Runs `f` on the slot, then persists `apps.json` if `f` succeeded.
    fn change<T>(&self, f: impl FnOnce(&mut Slot) -> Result<T, PushError>) -> Result<T, PushError> {
        let mut apps = self.inner.lock();
        let out = f(apps.slot(&self.client_id))?;
        self.inner.persist(&apps)?;
        Ok(out)
    }

    /// `pushService.getToken()`: the app's token, waiting for the server when it has not
    /// confirmed one on this connection yet. Same device and app → same token, until
    /// [`AppHandle::delete_token`].
    pub async fn get_token(&self) -> Result<String, PushError> {
        let rx = {
            let mut apps = self.inner.lock();
            if apps.stopped {
                return Err(PushError::DeviceStopped);
            }
            let slot = apps.slot(&self.client_id);
            if let Some(token) = &slot.confirmed_token {
                return Ok(token.clone());
            }
            let (tx, rx) = oneshot::channel();
            slot.token_waiters.push(tx);
            rx
        };
        self.inner.command(Command::AddApp(self.client_id.clone()));
        rx.await.unwrap_or(Err(PushError::DeviceStopped))
    }

    /// `pushService.deleteToken()`: the server invalidates the token (later sends to it
    /// are dropped with receipt 5), the bindings go, and the next
    /// [`AppHandle::get_token`] returns a new token.
    pub async fn delete_token(&self) -> Result<(), PushError> {
        let rx = {
            let mut apps = self.inner.lock();
            if apps.stopped {
                return Err(PushError::DeviceStopped);
            }
            let (tx, rx) = oneshot::channel();
            apps.slot(&self.client_id).delete_waiters.push(tx);
            rx
        };
        self.inner
            .command(Command::DeleteToken(self.client_id.clone()));
        rx.await.unwrap_or(Err(PushError::DeviceStopped))
    }

    /// `pushService.bindAppProfileId(type, id)`: at most 10 per app (1000900015 past
    /// that). Notifications whose `profileId` matches no bound id are not shown (144).
    pub async fn bind_app_profile_id(&self, kind: ProfileType, id: &str) -> Result<(), PushError> {
        self.change(|s| s.core.bind_profile(kind, id))
    }

    /// `pushService.unbindAppProfileId(id)`.
    pub async fn unbind_app_profile_id(&self, id: &str) -> Result<(), PushError> {
        self.change(|s| s.core.unbind_profile(id))
    }

    /// The bound accounts.
    pub fn profiles(&self) -> Vec<Profile> {
        self.with_slot(|s| s.core.file.profiles.clone())
    }

    /// `pushService.receiveMessage(kind, …)`: `callback` gets the messages of that kind
    /// (it replaces an earlier one). It runs on the SDK's task: keep it quick.
    pub fn receive_message(
        &self,
        kind: PushKind,
        callback: impl Fn(PushPayload) + Send + Sync + 'static,
    ) {
        self.with_slot(|s| {
            s.receivers.insert(kind, Arc::new(callback));
        });
    }

    /// `notificationManager.requestEnableNotification()`: the switch is off until the
    /// user allows it. The dialog (`prompt`) is shown at most once per app: a refusal
    /// returns 1600004, and so does every later call without showing anything (guide the
    /// user to the settings, [`AppHandle::open_notification_settings`]); a call while the
    /// dialog is open returns 1600013.
    pub async fn request_enable_notification(
        &self,
        prompt: &dyn PermissionPrompt,
    ) -> Result<(), PushError> {
        let gate = self.with_slot(|s| s.core.begin_permission_request());
        let result = match gate {
            Ok(PermissionGate::AlreadyEnabled) => Ok(()),
            Err(e) => Err(e),
            Ok(PermissionGate::Ask) => {
                let allowed = prompt.ask(&self.client_id).await;
                self.change(|s| Ok(s.core.finish_permission_request(allowed)))
                    .and_then(|r| r)
            }
        };
        self.inner.emit(SdkEvent::Permission {
            client_id: self.client_id.clone(),
            enabled: self.is_enabled_now(),
            code: result.as_ref().err().map(PushError::code),
        });
        result
    }

    /// `notificationManager.isNotificationEnabled()`.
    pub async fn is_notification_enabled(&self) -> bool {
        self.is_enabled_now()
    }

    fn is_enabled_now(&self) -> bool {
        self.with_slot(|s| s.core.file.notifications_enabled)
    }

    /// `openNotificationSettings()`: the settings page opens and the user leaves the
    /// switch where `page` says.
    pub async fn open_notification_settings(
        &self,
        page: &dyn PermissionPrompt,
    ) -> Result<(), PushError> {
        let current = self.is_enabled_now();
        let enabled = page.settings(&self.client_id, current).await;
        self.set_notification_enabled(enabled)
    }

    /// The user flips the app's switch in the system settings.
    pub fn set_notification_enabled(&self, enabled: bool) -> Result<(), PushError> {
        self.change(|s| {
            s.core.file.notifications_enabled = enabled;
            Ok(())
        })?;
        self.inner.emit(SdkEvent::Permission {
            client_id: self.client_id.clone(),
            enabled,
            code: None,
        });
        Ok(())
    }

    /// Declares the home (entry) ability; by default a no-op `EntryAbility`.
    pub fn set_home_ability(&self, name: impl Into<String>, ability: Arc<dyn Ability>) {
        let name = name.into();
        self.with_slot(|s| s.home = (name, ability));
    }

    /// Declares another ability with the `skills` a `clickAction` of type 1 may match.
    pub fn add_ability(&self, decl: AbilityDecl, ability: Arc<dyn Ability>) {
        self.with_slot(|s| {
            s.abilities.retain(|(d, _)| d.name != decl.name);
            s.abilities.push((decl, ability));
        });
    }

    pub fn run_state(&self) -> RunState {
        self.with_slot(|s| s.core.run)
    }

    /// The app starts, goes to the background, comes back, or is stopped. Coming to the
    /// foreground hands over a background message cached meanwhile.
    pub fn set_run_state(&self, run: RunState) {
        let now = self.inner.clock.now_ms();
        let cached = self.with_slot(|s| {
            // An app launched by the user (not by a tap) starts its home ability: a later
            // tap that opens home finds it running (onNewWant).
            if s.core.run == RunState::Stopped && run != RunState::Stopped {
                let home = s.home.0.clone();
                s.core.start_ability(&home);
            }
            s.core.set_run_state(run, now)
        });
        if let Some(payload) = cached {
            self.inner
                .hand_over(&self.client_id, PushKind::Background, payload);
        }
    }

    /// The notifications on screen, oldest first.
    pub fn notifications(&self) -> Vec<ShownNotification> {
        self.with_slot(|s| s.core.shade.iter().cloned().collect())
    }

    /// The app's badge number.
    pub fn badge(&self) -> u32 {
        self.with_slot(|s| s.core.badge)
    }

    /// The rows of the app's `datashareproxy://{bundleName}/PushMessage` table, oldest
    /// first: background messages sent with `proxyData: "ENABLE"` while the app was away.
    pub fn push_messages(&self) -> Vec<ProxyRow> {
        self.with_slot(|s| s.core.file.push_messages.iter().cloned().collect())
    }

    /// The user taps the notification with `notify_id`: it leaves the screen, `clicked`
    /// is reported, and its `clickAction` starts an ability — `on_create` on a cold
    /// start, `on_new_want` when that ability is already running.
    pub async fn click(&self, notify_id: i64) -> Result<ClickOutcome, PushError> {
        let (shown, route, started) = {
            let mut apps = self.inner.lock();
            let slot = apps.slot(&self.client_id);
            let shown = slot.core.take_notification(notify_id).ok_or_else(|| {
                PushError::Parameter(format!(
                    "no notification with notifyId {notify_id} on screen"
                ))
            })?;
            let decls: Vec<AbilityDecl> = slot.abilities.iter().map(|(d, _)| d.clone()).collect();
            let route = route_click(shown.notification.get("clickAction"), &decls, &slot.home.0);
            let started = match &route {
                ClickRoute::Open { ability, .. } => {
                    let callback = slot.core.start_ability(ability);
                    let cached = slot.core.take_cached_background(self.inner.clock.now_ms());
                    Some((callback, slot.ability(ability), cached))
                }
                _ => None,
            };
            (shown, route, started)
        };
        self.inner
            .report(&shown.message_id, ReportStatus::Clicked, None);
        match (route, started) {
            (ClickRoute::Open { ability, want }, Some((callback, target, cached))) => {
                match callback {
                    AbilityCallback::OnCreate => target.on_create(&want),
                    AbilityCallback::OnNewWant => target.on_new_want(&want),
                }
                self.inner.emit(SdkEvent::Ability {
                    client_id: self.client_id.clone(),
                    ability: ability.clone(),
                    callback,
                    want: want.clone(),
                });
                if let Some(payload) = cached {
                    self.inner
                        .hand_over(&self.client_id, PushKind::Background, payload);
                }
                Ok(ClickOutcome::Opened {
                    ability,
                    callback,
                    want,
                })
            }
            (ClickRoute::Dial { tel }, _) => Ok(ClickOutcome::Dialed { tel }),
            _ => Ok(ClickOutcome::Cleared),
        }
    }

    /// The `notification` object of a shown notification, for display.
    pub fn notification(&self, notify_id: i64) -> Option<Value> {
        self.with_slot(|s| {
            s.core
                .shade
                .iter()
                .rev()
                .find(|n| n.notify_id == Some(notify_id))
                .map(|n| n.notification.clone())
        })
    }
}
