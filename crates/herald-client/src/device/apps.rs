//! What the device keeps per app, and Push Kit's client-side rules over it, with no I/O:
//! the notification switch and its permission dialog, bound `profileId`s, the run state,
//! the notification shade (`notifyId` replacement), `appMessageId` de-duplication for
//! 24 hours, which `receiveMessage` kind a message goes to (reference §2.4, §7), and the
//! state the other push types change: the badge (badge refreshes and the `badge` of a
//! shown notification), widgets (newer versions only), Live Views (or, on a device
//! without them, their `title`/`content` as an ordinary notification), the cached
//! background message or, with `proxyData: "ENABLE"`, the app's `PushMessage` table, and
//! revoked notifications.

use std::collections::{BTreeMap, VecDeque};

use herald_proto::device::{DeviceMessage, ReportStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::PushError;

/// At most this many `profileId`s are bound per app (Push Kit: 1000900015 past it).
pub const MAX_PROFILES: usize = 10;
/// `appMessageId` de-duplication window.
pub const APP_MESSAGE_ID_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// Notifications kept per app in the shade; the oldest go first.
pub const MAX_SHADE: usize = 500;
/// The longest `appProfileId` Push Kit accepts.
const MAX_PROFILE_ID_LEN: usize = 64;

/// Receipt code: notification switch off.
pub const RECEIPT_SWITCH_OFF: u32 = 6;
/// Receipt code: `profileId` does not match a bound account.
pub const RECEIPT_PROFILE_MISMATCH: u32 = 144;
/// A background message cached while the app is away is kept this long.
pub const BACKGROUND_CACHE_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// The badge shows at most this number.
pub const MAX_BADGE: u32 = 99;
/// Rows kept in an app's `PushMessage` table (`proxyData`); the oldest go first.
pub const MAX_PROXY_ROWS: usize = 1000;

/// How a device shows Live Views (push-type 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveViewDisplay {
    /// As Live View cards (phones, tablets).
    #[default]
    Cards,
    /// As ordinary notifications with the message's `title` and `content` (devices
    /// without Live Views: TV, PC/2in1).
    Notifications,
}

/// A row Push Kit writes into the app's `datashareproxy://{bundleName}/PushMessage`
/// table for a background message with `proxyData: "ENABLE"` while the app is away
/// (reference §2.7; the unused `field1`…`field5` columns are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyRow {
    pub id: u64,
    pub message_id: String,
    pub push_type: u8,
    pub message_action: u8,
    /// `{"data": extraData}` as JSON text.
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub create_time: i64,
}

/// A widget (form) as the device shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormState {
    pub version: u32,
    pub form_data: Value,
}

/// A Live View as the device shows it: the latest status and merged `activityData`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveViewState {
    pub event: String,
    pub status: Option<String>,
    pub version: Option<u64>,
    pub activity_data: Value,
    pub ended: bool,
}

/// `pushCommon.AppProfileType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum ProfileType {
    /// `PROFILE_TYPE_OS_DISTRIBUTED_ACCOUNT = 1` (HUAWEI ID).
    HuaweiId = 1,
    /// `PROFILE_TYPE_APPLICATION_ACCOUNT = 2` (the app's own account).
    Application = 2,
}

impl From<ProfileType> for u8 {
    fn from(t: ProfileType) -> u8 {
        t as u8
    }
}

impl TryFrom<u8> for ProfileType {
    type Error = PushError;
    fn try_from(v: u8) -> Result<Self, PushError> {
        match v {
            1 => Ok(ProfileType::HuaweiId),
            2 => Ok(ProfileType::Application),
            other => Err(PushError::Parameter(format!(
                "appProfileType must be 1 or 2, not {other}"
            ))),
        }
    }
}

/// `receiveMessage`'s push types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PushKind {
    /// Notifications with `foregroundShow: false` while the app is in the foreground.
    #[serde(rename = "DEFAULT")]
    Default,
    /// Extension (push-type 2) messages while the app is in the foreground.
    #[serde(rename = "IM")]
    Im,
    /// VoIP calls (push-type 10).
    #[serde(rename = "VoIP")]
    VoIp,
    /// Background messages (push-type 6), while the app is in the foreground.
    #[serde(rename = "BACKGROUND")]
    Background,
}

impl PushKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::Default => "DEFAULT",
            PushKind::Im => "IM",
            PushKind::VoIp => "VoIP",
            PushKind::Background => "BACKGROUND",
        }
    }

    /// `PushPayload.type` for a message received under this kind.
    fn payload_type(self) -> &'static str {
        match self {
            PushKind::Default => "ALERT",
            other => other.as_str(),
        }
    }
}

impl std::str::FromStr for PushKind {
    type Err = PushError;
    fn from_str(s: &str) -> Result<Self, PushError> {
        match s {
            "DEFAULT" => Ok(PushKind::Default),
            "IM" => Ok(PushKind::Im),
            "VoIP" => Ok(PushKind::VoIp),
            "BACKGROUND" => Ok(PushKind::Background),
            other => Err(PushError::Parameter(format!("unknown push type {other:?}"))),
        }
    }
}

/// `pushCommon.PushPayload`: `type` and `data`, a JSON string shaped as on HarmonyOS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushPayload {
    #[serde(rename = "type")]
    pub kind: String,
    pub data: String,
    /// Herald's message id (not in ArkTS; handy for logs and tests).
    #[serde(rename = "messageId")]
    pub message_id: String,
    /// The push-type the message was sent with (not in ArkTS).
    #[serde(rename = "pushType", default)]
    pub push_type: u8,
}

/// Whether the app runs, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    #[default]
    Stopped,
    Background,
    Foreground,
}

/// One bound account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(rename = "type")]
    pub kind: ProfileType,
    pub id: String,
}

/// A notification on screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShownNotification {
    pub message_id: String,
    pub notify_id: Option<i64>,
    pub push_type: u8,
    pub test: bool,
    /// The `notification` object as received (title, body, clickAction…).
    pub notification: Value,
    /// How the device reminds the user (from the effective category).
    pub reminder: Option<herald_proto::device::Reminder>,
}

/// What the device persists per app in `apps.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppFile {
    /// The app's notification switch; off until the user allows it.
    #[serde(default)]
    pub notifications_enabled: bool,
    /// Whether the permission dialog has been shown (it is shown at most once).
    #[serde(default)]
    pub permission_asked: bool,
    /// The last token the server gave; bindings are dropped when it changes.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// `appMessageId` → when a notification with it was first shown (ms).
    #[serde(default)]
    pub app_message_ids: BTreeMap<String, i64>,
    /// The app's `PushMessage` table (`proxyData`), oldest first, at most
    /// [`MAX_PROXY_ROWS`].
    #[serde(default)]
    pub push_messages: VecDeque<ProxyRow>,
}

/// What to do with a received message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Put on screen; `replaced` is the message id it replaced (same `notifyId`).
    Show {
        shown: ShownNotification,
        replaced: Option<String>,
    },
    /// Not shown; report `suppressed` with `receipt` when there is one.
    Suppress {
        receipt: Option<u32>,
        reason: &'static str,
    },
    /// Hand to the app's `receiveMessage(kind)` callback.
    ToApp {
        kind: PushKind,
        payload: PushPayload,
    },
    /// A background message while the app is not in the foreground: kept (newest only)
    /// and handed over when the app comes to the foreground.
    Cache(PushPayload),
    /// A background message with `proxyData: "ENABLE"` while the app is not in the
    /// foreground: written into the app's `PushMessage` table.
    ProxyWrite(ProxyRow),
    /// A widget refresh applied (its version was newer, or 0).
    Form {
        form_id: i64,
        version: u32,
        form_data: Value,
    },
    /// A Live View created, updated or ended; `state` is what the device now shows.
    LiveView {
        activity_id: i64,
        operation: u8,
        state: LiveViewState,
    },
    /// The app's badge changed to `count`.
    Badge { count: u32 },
    /// A push type this device does not model: passed through.
    PassThrough,
}

impl Decision {
    /// What the device reports to the server about a message it decided this way: shown
    /// (which covers handed to the app, applied and written), suppressed with the receipt
    /// code, or nothing (a repeat within the `appMessageId` window is not reported).
    pub fn report(&self) -> Option<(ReportStatus, Option<u32>)> {
        match self {
            Decision::Suppress {
                receipt: Some(code),
                ..
            } => Some((ReportStatus::Suppressed, Some(*code))),
            Decision::Suppress { receipt: None, .. } => None,
            // Push Kit's receipt 27: the app's process is absent, the message is cached.
            Decision::Cache(_) => Some((ReportStatus::Suppressed, Some(27))),
            Decision::Show { .. }
            | Decision::ProxyWrite(_)
            | Decision::ToApp { .. }
            | Decision::Form { .. }
            | Decision::LiveView { .. }
            | Decision::Badge { .. }
            | Decision::PassThrough => Some((ReportStatus::Shown, None)),
        }
    }
}

/// How a permission request ended without asking the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionGate {
    /// The switch is on: nothing to ask.
    AlreadyEnabled,
    /// Ask the user now (the dialog is marked open).
    Ask,
}

/// One app on the device: persisted part plus the session part.
#[derive(Debug, Clone, Default)]
pub struct AppCore {
    pub file: AppFile,
    pub prompt_open: bool,
    pub run: RunState,
    /// Abilities created since the app last started (for onCreate vs onNewWant).
    pub created: Vec<String>,
    pub shade: VecDeque<ShownNotification>,
    /// The newest background message received while the app was away, and when.
    pub cached_background: Option<(PushPayload, i64)>,
    pub badge: u32,
    pub forms: BTreeMap<i64, FormState>,
    pub live_views: BTreeMap<i64, LiveViewState>,
    /// How this device shows Live Views (a property of the device, not the app).
    pub live_view_display: LiveViewDisplay,
}

impl AppCore {
    pub fn new(file: AppFile) -> Self {
        AppCore {
            file,
            ..AppCore::default()
        }
    }

    /// `requestEnableNotification`, up to asking: on → nothing to ask; dialog open →
    /// 1600013; asked before (and off) → 1600004 without a dialog; else ask.
    pub fn begin_permission_request(&mut self) -> Result<PermissionGate, PushError> {
        if self.file.notifications_enabled {
            return Ok(PermissionGate::AlreadyEnabled);
        }
        if self.prompt_open {
            return Err(PushError::DialogAlreadyShown);
        }
        if self.file.permission_asked {
            return Err(PushError::NotificationDisabled);
        }
        self.prompt_open = true;
        Ok(PermissionGate::Ask)
    }

    /// The user answered the dialog.
    pub fn finish_permission_request(&mut self, allowed: bool) -> Result<(), PushError> {
        self.prompt_open = false;
        self.file.permission_asked = true;
        self.file.notifications_enabled = allowed;
        if allowed {
            Ok(())
        } else {
            Err(PushError::NotificationDisabled)
        }
    }

    /// `bindAppProfileId`: at most [`MAX_PROFILES`]; binding a bound id again updates it.
    pub fn bind_profile(&mut self, kind: ProfileType, id: &str) -> Result<(), PushError> {
        if id.is_empty() || id.chars().count() > MAX_PROFILE_ID_LEN {
            return Err(PushError::Parameter(
                "appProfileId must be 1 to 64 characters".into(),
            ));
        }
        if let Some(p) = self.file.profiles.iter_mut().find(|p| p.id == id) {
            p.kind = kind;
            return Ok(());
        }
        if self.file.profiles.len() >= MAX_PROFILES {
            return Err(PushError::TooManyProfiles);
        }
        self.file.profiles.push(Profile {
            kind,
            id: id.to_owned(),
        });
        Ok(())
    }

    /// `unbindAppProfileId`; unbinding an id that is not bound is not an error.
    pub fn unbind_profile(&mut self, id: &str) -> Result<(), PushError> {
        if id.is_empty() {
            return Err(PushError::Parameter(
                "appProfileId must not be empty".into(),
            ));
        }
        self.file.profiles.retain(|p| p.id != id);
        Ok(())
    }

    /// A token arrived from the server; returns whether it differs from the last one
    /// (in which case the bindings were dropped, as Push Kit drops them).
    pub fn token_received(&mut self, token: &str) -> bool {
        let changed = self.file.token.as_deref().is_some_and(|t| t != token);
        if changed {
            self.file.profiles.clear();
        }
        self.file.token = Some(token.to_owned());
        changed
    }

    /// The server deleted the token: the next one is new, so bindings go now.
    pub fn token_deleted(&mut self) {
        self.file.token = None;
        self.file.profiles.clear();
    }

    /// Applies Push Kit's client rules to a message, in this order: a background or VoIP
    /// message goes to the app; a notification that is a repeat of a shown `appMessageId`
    /// within 24 h is dropped; a `profileId` that matches no bound account → 144;
    /// `foregroundShow: false` in the foreground → `receiveMessage('DEFAULT')` (the
    /// switch does not apply: nothing is displayed); switch off → 6; else shown, replacing
    /// a notification with the same `notifyId`.
    pub fn decide(&mut self, m: &DeviceMessage, now_ms: i64) -> Decision {
        let notification = m.payload.get("notification").filter(|n| n.is_object());
        match (m.push_type, notification) {
            // An IM background message reaches the app's process even in the background.
            (6, _) if m.background_mode == Some(1) && self.run != RunState::Stopped => {
                Decision::ToApp {
                    kind: PushKind::Im,
                    payload: data_payload(PushKind::Im, m, None),
                }
            }
            (6, _) => {
                let payload = data_payload(PushKind::Background, m, None);
                if self.run == RunState::Foreground {
                    Decision::ToApp {
                        kind: PushKind::Background,
                        payload,
                    }
                } else if m.payload.get("proxyData").and_then(Value::as_str) == Some("ENABLE") {
                    Decision::ProxyWrite(self.write_proxy_row(m, now_ms))
                } else {
                    Decision::Cache(payload)
                }
            }
            (1, _) => self.apply_form(&m.payload),
            (7, _) if self.live_view_display == LiveViewDisplay::Notifications => {
                self.live_view_as_notification(m, now_ms)
            }
            (7, _) => self.apply_live_view(&m.payload),
            (0, Some(n)) if n.get("title").is_none() && n.get("badge").is_some() => {
                self.apply_badge(n);
                Decision::Badge { count: self.badge }
            }
            (10, _) => Decision::ToApp {
                kind: PushKind::VoIp,
                payload: data_payload(PushKind::VoIp, m, None),
            },
            (2, Some(n)) if self.run == RunState::Foreground => Decision::ToApp {
                kind: PushKind::Im,
                payload: data_payload(PushKind::Im, m, Some(n)),
            },
            (0 | 2, Some(n)) => self.decide_notification(m, n, now_ms),
            _ => Decision::PassThrough,
        }
    }

    fn decide_notification(&mut self, m: &DeviceMessage, n: &Value, now_ms: i64) -> Decision {
        self.file
            .app_message_ids
            .retain(|_, at| now_ms - *at < APP_MESSAGE_ID_WINDOW_MS);
        let app_message_id = n.get("appMessageId").and_then(Value::as_str);
        if app_message_id.is_some_and(|id| self.file.app_message_ids.contains_key(id)) {
            return Decision::Suppress {
                receipt: None,
                reason: "duplicate appMessageId within 24 hours",
            };
        }
        if let Some(profile) = n.get("profileId").and_then(Value::as_str)
            && !self.file.profiles.iter().any(|p| p.id == profile)
        {
            return Decision::Suppress {
                receipt: Some(RECEIPT_PROFILE_MISMATCH),
                reason: "profileId does not match a bound account",
            };
        }
        let foreground_show = n
            .get("foregroundShow")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if !foreground_show && self.run == RunState::Foreground {
            return Decision::ToApp {
                kind: PushKind::Default,
                payload: data_payload(PushKind::Default, m, Some(n)),
            };
        }
        if !self.file.notifications_enabled {
            return Decision::Suppress {
                receipt: Some(RECEIPT_SWITCH_OFF),
                reason: "notification switch is off",
            };
        }
        if let Some(id) = app_message_id {
            self.file.app_message_ids.insert(id.to_owned(), now_ms);
        }
        let notify_id = n.get("notifyId").and_then(Value::as_i64);
        let replaced = notify_id
            .and_then(|id| self.shade.iter().position(|s| s.notify_id == Some(id)))
            .and_then(|i| self.shade.remove(i))
            .map(|s| s.message_id);
        if self.shade.len() >= MAX_SHADE {
            self.shade.pop_front();
        }
        let shown = ShownNotification {
            message_id: m.id.clone(),
            notify_id,
            push_type: m.push_type,
            test: m.test,
            notification: n.clone(),
            reminder: m.reminder,
        };
        self.shade.push_back(shown.clone());
        // A badge beside title and body changes the app's badge as the notification
        // is published.
        if n.get("badge").is_some_and(Value::is_object) {
            self.apply_badge(n);
        }
        Decision::Show { shown, replaced }
    }

    /// Writes a background message into the app's `PushMessage` table.
    fn write_proxy_row(&mut self, m: &DeviceMessage, now_ms: i64) -> ProxyRow {
        let extra = m
            .payload
            .get("extraData")
            .and_then(Value::as_str)
            .unwrap_or("");
        let rows = &mut self.file.push_messages;
        let row = ProxyRow {
            id: rows.back().map_or(1, |r| r.id + 1),
            message_id: m.id.clone(),
            push_type: m.push_type,
            message_action: 0,
            message: json!({ "data": extra }).to_string(),
            create_time: now_ms,
        };
        if rows.len() >= MAX_PROXY_ROWS {
            rows.pop_front();
        }
        rows.push_back(row.clone());
        row
    }

    /// On a device without Live Views, a Live View message is an ordinary notification
    /// of its `title` and `content` (`{{status}}` substituted), replacing the one shown
    /// for the same `activityId`. Without either there is nothing to show; ending the
    /// activity without them only takes its notification away.
    fn live_view_as_notification(&mut self, m: &DeviceMessage, now_ms: i64) -> Decision {
        let p = &m.payload;
        let activity_id = p["activityId"].as_i64().unwrap_or_default();
        let status = p["status"].as_str().unwrap_or("");
        let text = |key: &str| {
            p.get(key)
                .and_then(Value::as_str)
                .map(|s| s.replace("{{status}}", status))
        };
        let (title, content) = (text("title"), text("content"));
        let previous = self
            .shade
            .iter()
            .position(|s| s.push_type == 7 && s.notification["activityId"] == json!(activity_id))
            .and_then(|i| self.shade.remove(i))
            .map(|s| s.message_id);
        if title.is_none() && content.is_none() {
            return Decision::Suppress {
                receipt: None,
                reason: if previous.is_some() {
                    "Live View ended or updated without title or content: its notification was removed"
                } else {
                    "this device shows Live Views as notifications and the message has no title or content"
                },
            };
        }
        let mut notification = json!({
            "title": title.unwrap_or_default(),
            "body": content.unwrap_or_default(),
            "activityId": activity_id,
            "clickAction": {"actionType": 0},
        });
        if let Some(ca) = p["activityData"]["notificationData"].get("clickAction") {
            notification["clickAction"] = ca.clone();
        }
        match self.decide_notification(m, &notification, now_ms) {
            Decision::Show { shown, replaced } => Decision::Show {
                shown,
                replaced: replaced.or(previous),
            },
            other => other,
        }
    }

    /// `setNum` sets the badge, `addNum` adds to it (capped at 99).
    fn apply_badge(&mut self, n: &Value) {
        let badge = &n["badge"];
        if let Some(set) = badge.get("setNum").and_then(Value::as_u64) {
            self.badge = (set as u32).min(MAX_BADGE);
        } else if let Some(add) = badge.get("addNum").and_then(Value::as_u64) {
            self.badge = (self.badge + add as u32).min(MAX_BADGE);
        }
    }

    /// A widget applies a refresh only when its version is newer (`0` resets).
    fn apply_form(&mut self, p: &Value) -> Decision {
        let form_id = p["formId"].as_i64().unwrap_or_default();
        let version = p["version"].as_u64().unwrap_or_default() as u32;
        let current = self.forms.get(&form_id).map(|f| f.version);
        if version != 0 && current.is_some_and(|c| version <= c) {
            // Not shown: reported with Push Kit's nearest code, 151 ("not shown").
            return Decision::Suppress {
                receipt: Some(151),
                reason: "widget version is not newer than the one shown",
            };
        }
        let form_data = p["formData"].clone();
        self.forms.insert(
            form_id,
            FormState {
                version,
                form_data: form_data.clone(),
            },
        );
        Decision::Form {
            form_id,
            version,
            form_data,
        }
    }

    /// A Live View keeps its latest status and the merge of every `activityData`.
    fn apply_live_view(&mut self, p: &Value) -> Decision {
        let activity_id = p["activityId"].as_i64().unwrap_or_default();
        let operation = p["operation"].as_u64().unwrap_or_default() as u8;
        let state = self
            .live_views
            .entry(activity_id)
            .or_insert_with(|| LiveViewState {
                event: p["event"].as_str().unwrap_or_default().to_owned(),
                status: None,
                version: None,
                activity_data: json!({}),
                ended: false,
            });
        if operation == 0 {
            state.activity_data = json!({});
            state.ended = false;
        }
        if let Some(status) = p["status"].as_str() {
            state.status = Some(status.to_owned());
        }
        if let Some(v) = p["version"].as_u64() {
            state.version = Some(v);
        }
        merge(&mut state.activity_data, &p["activityData"]);
        state.ended = operation == 2;
        Decision::LiveView {
            activity_id,
            operation,
            state: state.clone(),
        }
    }

    /// `messages:revoke`: the notification with `notify_id` leaves the screen (a tapped
    /// one already left it and is unaffected).
    pub fn revoke(&mut self, notify_id: i64) -> Option<ShownNotification> {
        let i = self
            .shade
            .iter()
            .rposition(|s| s.notify_id == Some(notify_id))?;
        self.shade.remove(i)
    }

    /// Takes the newest notification with `notify_id` off the shade (a tap).
    pub fn take_notification(&mut self, notify_id: i64) -> Option<ShownNotification> {
        let i = self
            .shade
            .iter()
            .rposition(|s| s.notify_id == Some(notify_id))?;
        self.shade.remove(i)
    }

    /// The app starts or resumes `ability` because of a tap; which callback runs.
    pub fn start_ability(&mut self, ability: &str) -> crate::device::AbilityCallback {
        self.run = RunState::Foreground;
        if self.created.iter().any(|a| a == ability) {
            crate::device::AbilityCallback::OnNewWant
        } else {
            self.created.push(ability.to_owned());
            crate::device::AbilityCallback::OnCreate
        }
    }

    /// The app's run state changes; stopping forgets its abilities. Coming to the
    /// foreground returns the cached background message to hand over, unless it is
    /// older than 7 days.
    pub fn set_run_state(&mut self, run: RunState, now_ms: i64) -> Option<PushPayload> {
        self.run = run;
        match run {
            RunState::Stopped => {
                self.created.clear();
                None
            }
            RunState::Foreground => self.take_cached_background(now_ms),
            RunState::Background => None,
        }
    }

    /// The cached background message, unless it is older than 7 days.
    pub fn take_cached_background(&mut self, now_ms: i64) -> Option<PushPayload> {
        self.cached_background
            .take()
            .filter(|(_, at)| now_ms - at < BACKGROUND_CACHE_MS)
            .map(|(p, _)| p)
    }
}

/// Merge `patch` into `target` key by key (objects recursively); Live View updates
/// carry only what changed.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) if !p.is_null() => *t = p.clone(),
        _ => {}
    }
}

/// `PushPayload.data` as HarmonyOS builds it: `{"data": extraData, "header": {"token"}}`
/// plus `messageAction` and `notification` for notification-carrying kinds.
fn data_payload(kind: PushKind, m: &DeviceMessage, notification: Option<&Value>) -> PushPayload {
    let extra = m
        .payload
        .get("extraData")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut data = json!({"data": extra, "header": {"token": m.token}});
    if let Some(n) = notification {
        data["messageAction"] = json!(0);
        data["notification"] = n.clone();
    }
    PushPayload {
        kind: kind.payload_type().to_owned(),
        data: data.to_string(),
        message_id: m.id.clone(),
        push_type: m.push_type,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn msg(id: &str, push_type: u8, payload: Value) -> DeviceMessage {
        DeviceMessage {
            id: id.into(),
            client_id: "app".into(),
            token: "tok".into(),
            push_type,
            request_id: "r".into(),
            sent_at: 0,
            expires_at: i64::MAX,
            payload,
            test: false,
            bi_tag: None,
            reminder: None,
            background_mode: None,
        }
    }

    fn note(extra: Value) -> Value {
        let mut n =
            json!({"title": "t", "body": "b", "notifyId": 1, "clickAction": {"actionType": 0}});
        if let (Some(n), Some(extra)) = (n.as_object_mut(), extra.as_object()) {
            n.extend(extra.clone());
        }
        json!({"notification": n})
    }

    fn enabled() -> AppCore {
        AppCore::new(AppFile {
            notifications_enabled: true,
            permission_asked: true,
            ..AppFile::default()
        })
    }

    #[test]
    fn a_badge_beside_title_and_body_changes_the_badge_when_shown() {
        let mut app = enabled();
        app.badge = 3;
        let d = app.decide(&msg("m1", 0, note(json!({"badge": {"addNum": 2}}))), 0);
        assert!(matches!(d, Decision::Show { .. }));
        assert_eq!(app.badge, 5);
        app.decide(
            &msg(
                "m2",
                0,
                note(json!({"notifyId": 2, "badge": {"setNum": 1, "addNum": 9}})),
            ),
            0,
        );
        assert_eq!(app.badge, 1, "setNum wins");
        app.decide(&msg("m3", 0, note(json!({"notifyId": 3}))), 0);
        assert_eq!(app.badge, 1, "no badge, no change");
        let mut off = AppCore::default();
        off.decide(&msg("m4", 0, note(json!({"badge": {"addNum": 2}}))), 0);
        assert_eq!(off.badge, 0, "a notification not shown changes nothing");
    }

    #[test]
    fn proxy_data_writes_the_push_message_table_while_the_app_is_away() {
        let mut app = enabled();
        app.run = RunState::Background;
        let bg = |id: &str, proxy: bool| {
            let mut p = json!({"extraData": format!("data of {id}")});
            if proxy {
                p["proxyData"] = json!("ENABLE");
            }
            msg(id, 6, p)
        };
        let Decision::ProxyWrite(row) = app.decide(&bg("m1", true), 1_000) else {
            panic!("expected a PushMessage row");
        };
        assert_eq!(
            (row.id, row.push_type, row.message_action, row.create_time),
            (1, 6, 0, 1_000)
        );
        assert_eq!(row.message, r#"{"data":"data of m1"}"#);
        assert!(matches!(app.decide(&bg("m2", true), 2_000), Decision::ProxyWrite(r) if r.id == 2));
        assert_eq!(
            app.file.push_messages.len(),
            2,
            "every row is kept, not only the newest"
        );
        assert!(matches!(
            app.decide(&bg("m3", false), 3_000),
            Decision::Cache(_)
        ));
        app.run = RunState::Foreground;
        assert!(matches!(
            app.decide(&bg("m4", true), 4_000),
            Decision::ToApp {
                kind: PushKind::Background,
                ..
            }
        ));
        app.run = RunState::Background;
        for i in 0..MAX_PROXY_ROWS {
            app.decide(&bg(&format!("x{i}"), true), 5_000);
        }
        assert_eq!(app.file.push_messages.len(), MAX_PROXY_ROWS);
        assert_eq!(app.file.push_messages[0].message_id, "x0");
    }

    #[test]
    fn without_live_views_title_and_content_are_a_notification() {
        let mut app = enabled();
        app.live_view_display = LiveViewDisplay::Notifications;
        let live = |id: &str, op: u8, status: &str, text: bool| {
            let mut p = json!({"activityId": 7, "operation": op, "event": "TAXI",
                "status": status, "activityData": {"notificationData": {"type": 3}}});
            if text {
                p["title"] = json!("Your taxi");
                p["content"] = json!("Driver: {{status}}");
            }
            msg(id, 7, p)
        };
        let Decision::Show { shown, replaced } = app.decide(&live("m1", 0, "CALLING", true), 0)
        else {
            panic!("expected a notification");
        };
        assert_eq!(shown.notification["title"], "Your taxi");
        assert_eq!(shown.notification["body"], "Driver: CALLING");
        assert_eq!(replaced, None);
        let Decision::Show { shown, replaced } =
            app.decide(&live("m2", 1, "DRIVER_ON_THE_WAY", true), 0)
        else {
            panic!("expected a notification");
        };
        assert_eq!(shown.notification["body"], "Driver: DRIVER_ON_THE_WAY");
        assert_eq!(
            replaced.as_deref(),
            Some("m1"),
            "one notification per activity"
        );
        assert_eq!(app.shade.len(), 1);
        assert!(
            app.live_views.is_empty(),
            "no Live View card on this device"
        );
        assert!(matches!(
            app.decide(&live("m3", 2, "COMPLETED", false), 0),
            Decision::Suppress { receipt: None, .. }
        ));
        assert!(
            app.shade.is_empty(),
            "ending without text takes the notification away"
        );
        let mut off = AppCore {
            live_view_display: LiveViewDisplay::Notifications,
            ..AppCore::default()
        };
        assert!(matches!(
            off.decide(&live("m4", 0, "CALLING", true), 0),
            Decision::Suppress {
                receipt: Some(6),
                ..
            }
        ));
    }

    #[test]
    fn permission_dialog_rules() {
        let mut app = AppCore::default();
        assert_eq!(app.begin_permission_request(), Ok(PermissionGate::Ask));
        assert_eq!(
            app.begin_permission_request(),
            Err(PushError::DialogAlreadyShown)
        );
        assert_eq!(
            app.finish_permission_request(false),
            Err(PushError::NotificationDisabled)
        );
        assert_eq!(
            app.begin_permission_request(),
            Err(PushError::NotificationDisabled)
        );
        app.file.notifications_enabled = true; // the user went to the settings
        assert_eq!(
            app.begin_permission_request(),
            Ok(PermissionGate::AlreadyEnabled)
        );
    }

    #[test]
    fn switch_off_is_6_and_profile_mismatch_is_144() {
        let mut app = AppCore::default();
        assert!(matches!(
            app.decide(&msg("m1", 0, note(json!({}))), 0),
            Decision::Suppress {
                receipt: Some(6),
                ..
            }
        ));
        let mut app = enabled();
        let with_profile = note(json!({"profileId": "u1"}));
        assert!(matches!(
            app.decide(&msg("m2", 0, with_profile.clone()), 0),
            Decision::Suppress {
                receipt: Some(144),
                ..
            }
        ));
        app.bind_profile(ProfileType::Application, "u1").unwrap();
        assert!(matches!(
            app.decide(&msg("m3", 0, with_profile), 0),
            Decision::Show { .. }
        ));
    }

    #[test]
    fn at_most_ten_profiles_and_a_new_token_drops_them() {
        let mut app = AppCore::default();
        for i in 0..MAX_PROFILES {
            app.bind_profile(ProfileType::Application, &format!("u{i}"))
                .unwrap();
        }
        assert_eq!(
            app.bind_profile(ProfileType::Application, "u10"),
            Err(PushError::TooManyProfiles)
        );
        app.bind_profile(ProfileType::HuaweiId, "u3").unwrap();
        assert!(!app.token_received("t1"));
        assert_eq!(app.file.profiles.len(), MAX_PROFILES);
        assert!(app.token_received("t2"));
        assert!(app.file.profiles.is_empty());
    }

    #[test]
    fn app_message_id_deduplicates_for_24_hours_and_notify_id_replaces() {
        let mut app = enabled();
        let n = note(json!({"appMessageId": "a1", "notifyId": 7}));
        assert!(matches!(
            app.decide(&msg("m1", 0, n.clone()), 0),
            Decision::Show { replaced: None, .. }
        ));
        assert!(matches!(
            app.decide(&msg("m2", 0, n.clone()), APP_MESSAGE_ID_WINDOW_MS - 1),
            Decision::Suppress { receipt: None, .. }
        ));
        match app.decide(&msg("m3", 0, n), APP_MESSAGE_ID_WINDOW_MS) {
            Decision::Show { replaced, .. } => assert_eq!(replaced.as_deref(), Some("m1")),
            other => panic!("{other:?}"),
        }
        assert_eq!(app.shade.len(), 1);
    }

    #[test]
    fn kinds_follow_the_run_state() {
        let mut app = enabled();
        let hidden = note(json!({"foregroundShow": false}));
        assert!(matches!(
            app.decide(&msg("m1", 0, hidden.clone()), 0),
            Decision::Show { .. }
        ));
        app.set_run_state(RunState::Foreground, 0);
        match app.decide(&msg("m2", 0, hidden), 0) {
            Decision::ToApp { kind, payload } => {
                assert_eq!(kind, PushKind::Default);
                assert_eq!(payload.kind, "ALERT");
                let data: Value = serde_json::from_str(&payload.data).unwrap();
                assert_eq!(data["header"]["token"], "tok");
                assert_eq!(data["notification"]["title"], "t");
            }
            other => panic!("{other:?}"),
        }
        let bg = json!({"extraData": "x"});
        assert!(matches!(
            app.decide(&msg("m3", 6, bg.clone()), 0),
            Decision::ToApp {
                kind: PushKind::Background,
                ..
            }
        ));
        app.set_run_state(RunState::Background, 0);
        assert!(matches!(
            app.decide(&msg("m4", 6, bg), 0),
            Decision::Cache(_)
        ));
        assert!(matches!(
            app.decide(&msg("m5", 10, json!({"extraData": "call"})), 0),
            Decision::ToApp {
                kind: PushKind::VoIp,
                ..
            }
        ));
        assert!(matches!(
            app.decide(&msg("m6", 2, note(json!({}))), 0),
            Decision::Show { .. }
        ));
        app.set_run_state(RunState::Foreground, 0);
        assert!(matches!(
            app.decide(&msg("m7", 2, note(json!({}))), 0),
            Decision::ToApp {
                kind: PushKind::Im,
                ..
            }
        ));
    }

    #[test]
    fn cold_then_warm_start() {
        let mut app = AppCore::default();
        assert_eq!(
            app.start_ability("Home"),
            crate::device::AbilityCallback::OnCreate
        );
        assert_eq!(
            app.start_ability("Home"),
            crate::device::AbilityCallback::OnNewWant
        );
        assert_eq!(
            app.start_ability("Other"),
            crate::device::AbilityCallback::OnCreate
        );
        app.set_run_state(RunState::Stopped, 0);
        assert_eq!(
            app.start_ability("Home"),
            crate::device::AbilityCallback::OnCreate
        );
    }
}
