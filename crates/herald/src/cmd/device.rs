//! `herald device`: a simulated device that registers, fetches tokens, shows notifications
//! and reports what it did, printing one line per event (JSON with `--json`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use herald_client::device::{Device, DeviceConfig, DeviceEvent, DeviceHandle, StateDir};
use herald_proto::device::{DeviceMessage, ReportStatus};
use herald_proto::push::{AlertPayload, Notification};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The file in the state directory holding the user's notification-permission answers.
const PERMISSIONS_FILE: &str = "permissions.json";
/// Push Kit receipt code for "notifications switched off by the user".
const CODE_SWITCHED_OFF: u32 = 6;
/// Notifications kept per app for `notifyId` replacement; older ones are forgotten.
const MAX_NOTIFICATIONS_PER_APP: usize = 500;

/// Arguments of `herald device`.
#[derive(Debug, clap::Args)]
pub struct DeviceArgs {
    /// Server base URL, as backends use it (repeat for fallbacks).
    #[arg(
        long = "server",
        value_name = "URL",
        env = "HERALD_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub servers: Vec<String>,
    /// An app installed on the device (repeat for several).
    #[arg(long = "client-id", value_name = "ID", required = true)]
    pub client_ids: Vec<String>,
    /// Where the device keeps its identity; the same directory is the same device.
    #[arg(long, value_name = "DIR", default_value = "./herald-device")]
    pub state_dir: PathBuf,
    /// The user's answer to the notification-permission prompt. Asked at first launch
    /// (answer: allow unless given); remembered in the state directory afterwards.
    #[arg(long, value_enum)]
    pub permission: Option<Permission>,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--permission`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Allow,
    Deny,
}

/// Runs the device until Ctrl-C / SIGTERM (success) or until it stops by itself (failure).
pub async fn run(args: DeviceArgs) -> anyhow::Result<ExitCode> {
    let state = StateDir::open(&args.state_dir)
        .with_context(|| format!("opening {}", args.state_dir.display()))?;
    let permissions = settle_permissions(&state, &args.client_ids, args.permission)?;
    let (handle, mut events) = Device::start(DeviceConfig {
        servers: args.servers.clone(),
        state_dir: args.state_dir.clone(),
        client_ids: args.client_ids.clone(),
        ..DeviceConfig::default()
    })?;
    let mut screen = Screen {
        out: Output { json: args.json },
        permissions,
        shade: NotificationShade::default(),
    };

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            event = events.recv() => match event {
                Some(event) => screen.on_event(&handle, event).await?,
                // The device stopped by itself; its last event said why.
                None => return Ok(ExitCode::FAILURE),
            },
        }
    }
    handle.shutdown().await;
    while let Some(event) = events.recv().await {
        screen.print_event_only(&event)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Decides each app's permission: the flag wins (and is remembered), else the remembered
/// answer, else the first-launch default, allow.
fn settle_permissions(
    state: &StateDir,
    client_ids: &[String],
    flag: Option<Permission>,
) -> anyhow::Result<HashMap<String, Permission>> {
    let mut stored: BTreeMap<String, Permission> =
        state.read_json(PERMISSIONS_FILE)?.unwrap_or_default();
    let before = stored.clone();
    for client_id in client_ids {
        match flag {
            Some(answer) => {
                stored.insert(client_id.clone(), answer);
            }
            None => {
                stored.entry(client_id.clone()).or_insert(Permission::Allow);
            }
        }
    }
    if stored != before {
        state.write_json(PERMISSIONS_FILE, &stored)?;
    }
    Ok(client_ids
        .iter()
        .map(|id| (id.clone(), stored[id]))
        .collect())
}

/// The notifications currently on screen, per app, for `notifyId` replacement.
#[derive(Debug, Default)]
struct NotificationShade {
    apps: HashMap<String, VecDeque<(Option<i64>, String)>>,
}

impl NotificationShade {
    /// Shows a notification; returns whether it replaced one with the same `notifyId`.
    fn show(&mut self, client_id: &str, notify_id: Option<i64>, message_id: &str) -> bool {
        let list = self.apps.entry(client_id.to_owned()).or_default();
        let earlier = notify_id.and_then(|n| list.iter().position(|(id, _)| *id == Some(n)));
        if let Some(i) = earlier {
            list.remove(i);
        }
        if list.len() >= MAX_NOTIFICATIONS_PER_APP {
            list.pop_front();
        }
        list.push_back((notify_id, message_id.to_owned()));
        earlier.is_some()
    }
}

struct Screen {
    out: Output,
    permissions: HashMap<String, Permission>,
    shade: NotificationShade,
}

impl Screen {
    async fn on_event(&mut self, handle: &DeviceHandle, event: DeviceEvent) -> anyhow::Result<()> {
        let DeviceEvent::Message(message) = event else {
            return self.print_event_only(&event);
        };
        let notification = (message.push_type == 0)
            .then(|| serde_json::from_value::<AlertPayload>(message.payload.clone()).ok())
            .flatten()
            .and_then(|p| p.notification);
        let (status, code) = match notification {
            Some(_) if self.permissions.get(&message.client_id) == Some(&Permission::Deny) => {
                self.out.line(
                    json!({
                        "event": "suppressed",
                        "client_id": message.client_id,
                        "message_id": message.id,
                        "push_type": message.push_type,
                        "code": CODE_SWITCHED_OFF,
                        "reason": "notifications denied by the user",
                    }),
                    format!(
                        "suppressed: message {} for app {} (notifications denied, code {CODE_SWITCHED_OFF})",
                        message.id, message.client_id
                    ),
                )?;
                (ReportStatus::Suppressed, Some(CODE_SWITCHED_OFF))
            }
            Some(notification) => {
                self.show_notification(&message, &notification)?;
                (ReportStatus::Shown, None)
            }
            None => {
                self.out.line(
                    json!({
                        "event": "message",
                        "client_id": message.client_id,
                        "message_id": message.id,
                        "push_type": message.push_type,
                        "test": message.test,
                        "payload": message.payload,
                    }),
                    format!(
                        "message: push-type {} for app {} ({}): {}",
                        message.push_type, message.client_id, message.id, message.payload
                    ),
                )?;
                (ReportStatus::Shown, None)
            }
        };
        if handle.report(&message.id, status, code).await.is_ok() {
            let status_name = match status {
                ReportStatus::Shown => "shown",
                ReportStatus::Suppressed => "suppressed",
                ReportStatus::Clicked => "clicked",
            };
            self.out.line(
                json!({"event": "report", "message_id": message.id, "status": status_name, "code": code}),
                format!("report: {} {status_name}", message.id),
            )?;
        }
        Ok(())
    }

    fn show_notification(
        &mut self,
        message: &DeviceMessage,
        n: &Notification,
    ) -> anyhow::Result<()> {
        let replaced = self
            .shade
            .show(&message.client_id, n.notify_id, &message.id);
        let reminder = match message.reminder {
            Some(herald_proto::device::Reminder::Alert) => "alert",
            Some(herald_proto::device::Reminder::Silent) => "silent",
            None => "-",
        };
        let text = format!(
            "notification [{} {reminder}] {}: {}  (app {}, message {}, notify_id {}{}{})",
            n.category.as_deref().unwrap_or("-"),
            n.title.as_deref().unwrap_or(""),
            n.body.as_deref().unwrap_or(""),
            message.client_id,
            message.id,
            n.notify_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            if replaced {
                ", replaces an earlier one"
            } else {
                ""
            },
            if message.test { ", test" } else { "" },
        );
        self.out.line(
            json!({
                "event": "notification",
                "client_id": message.client_id,
                "message_id": message.id,
                "push_type": message.push_type,
                "notify_id": n.notify_id,
                "category": n.category,
                "reminder": message.reminder,
                "sound": n.sound,
                "title": n.title,
                "body": n.body,
                "click_action": n.click_action,
                "test": message.test,
                "replaced": replaced,
            }),
            text,
        )
    }

    /// Prints every event except messages, which need the handle to report.
    fn print_event_only(&mut self, event: &DeviceEvent) -> anyhow::Result<()> {
        match event {
            DeviceEvent::Connected {
                device_id,
                server,
                registered,
            } => self.out.line(
                json!({"event": "connected", "device_id": device_id, "server": server, "registered": registered}),
                format!(
                    "connected: device {device_id} via {server}{}",
                    if *registered { " (newly registered)" } else { "" }
                ),
            ),
            DeviceEvent::Token { client_id, token } => self.out.line(
                json!({"event": "token", "client_id": client_id, "token": token}),
                format!("token: app {client_id}: {token}"),
            ),
            DeviceEvent::Error { code, message, re } => self.out.line(
                json!({"event": "error", "code": code, "message": message, "re": re}),
                format!("error: {code}: {message}"),
            ),
            DeviceEvent::Disconnected { reason, will_retry } => self.out.line(
                json!({"event": "disconnected", "reason": reason, "will_retry": will_retry}),
                format!(
                    "disconnected: {reason}{}",
                    if *will_retry { " (reconnecting)" } else { "" }
                ),
            ),
            DeviceEvent::Message(m) => self.out.line(
                json!({"event": "message", "message_id": m.id, "client_id": m.client_id, "push_type": m.push_type}),
                format!("message: {} for app {} (not shown)", m.id, m.client_id),
            ),
        }
    }
}

/// Writes one line per event to stdout, flushed at once so that a reading process sees it.
struct Output {
    json: bool,
}

impl Output {
    fn line(&self, object: Value, text: String) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{object}")?;
        } else {
            writeln!(stdout, "{text}")?;
        }
        stdout.flush()?;
        Ok(())
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_notify_id_replaces_within_one_app_only() {
        let mut shade = NotificationShade::default();
        assert!(!shade.show("a", Some(1), "m1"));
        assert!(shade.show("a", Some(1), "m2"));
        assert!(!shade.show("b", Some(1), "m3"));
        assert!(!shade.show("a", None, "m4"));
        assert!(!shade.show("a", None, "m5"));
    }

    #[test]
    fn permission_is_asked_once_and_remembered() {
        let dir =
            std::env::temp_dir().join(format!("herald-permission-test-{}", std::process::id()));
        let state = StateDir::open(&dir).expect("state dir");
        let apps = vec!["app".to_owned()];
        let first = settle_permissions(&state, &apps, Some(Permission::Deny)).expect("settle");
        assert_eq!(first["app"], Permission::Deny);
        let later = settle_permissions(&state, &apps, None).expect("settle");
        assert_eq!(later["app"], Permission::Deny);
        let fresh = settle_permissions(&state, &["other".to_owned()], None).expect("settle");
        assert_eq!(fresh["other"], Permission::Allow);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
