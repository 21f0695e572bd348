//! `herald device`: a simulated device running the Rust SDK's app side. It launches each
//! app once (asking for the notification permission, as an app does on its first start),
//! takes user and app actions as JSON lines on standard input, and prints one line per
//! event (JSON with `--json`).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use herald_client::device::{
    AbilityDecl, AppHandle, ClickOutcome, Device, DeviceConfig, FixedAnswer, LiveViewDisplay,
    NoopAbility, PermissionPrompt, ProfileType, PushError, RunState, SdkEvent,
};
use herald_proto::device::ReportStatus;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Arguments of `herald device`.
#[derive(Debug, clap::Args)]
pub struct DeviceArgs {
    /// Server base URL, as backends use it; several nodes as a comma-separated list
    /// (`URL1,URL2,…`, or the flag repeated): the device starts on the first and moves to
    /// the next when its node dies, with jittered backoff.
    #[arg(
        long = "server",
        value_name = "URL",
        env = "HERALD_SERVER",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub servers: Vec<String>,
    /// An app installed on the device (repeat for several). Commands without a
    /// `client_id` act on the first.
    #[arg(long = "client-id", value_name = "ID", required = true)]
    pub client_ids: Vec<String>,
    /// Where the device keeps its identity, tokens, switches and bindings; the same
    /// directory is the same device.
    #[arg(long, value_name = "DIR", default_value = "./herald-device")]
    pub state_dir: PathBuf,
    /// How the user answers the notification-permission dialog the app shows at launch
    /// (and on `request_permission`): allow (the default), deny, or ask on the terminal.
    /// The dialog is shown at most once per app and device.
    #[arg(long, value_enum, default_value = "allow")]
    pub permission: Permission,
    /// Declare an ability besides the home `EntryAbility`, for `clickAction` type 1:
    /// `NAME[,action=ACTION][,uri=URI]` (repeat for several; applies to every app).
    #[arg(long = "ability", value_name = "SPEC", value_parser = parse_ability)]
    pub abilities: Vec<AbilityDecl>,
    /// Where the simulated app is when the device starts: in the foreground (the
    /// default), in the background, or not running (the first tap is then `onCreate`).
    #[arg(long, value_enum, default_value = "foreground")]
    pub app_state: AppState,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// How the device shows Live Views (push-type 7): as cards (a phone), or as ordinary
    /// notifications of the message's title and content (a device without Live Views,
    /// such as a TV or a PC).
    #[arg(long, value_enum, default_value = "cards")]
    pub live_views: LiveViews,
    /// A PEM file of CA certificates to trust for `https://`/`wss://` besides the system's
    /// (e.g. the `ca.pem` of `herald cert create`).
    #[arg(long, env = "HERALD_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// `--live-views`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LiveViews {
    Cards,
    Notifications,
}

/// `--app-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AppState {
    Foreground,
    Background,
    Stopped,
}

impl From<AppState> for RunState {
    fn from(s: AppState) -> RunState {
        match s {
            AppState::Foreground => RunState::Foreground,
            AppState::Background => RunState::Background,
            AppState::Stopped => RunState::Stopped,
        }
    }
}

/// `--permission`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Permission {
    Allow,
    Deny,
    Ask,
}

fn parse_ability(spec: &str) -> Result<AbilityDecl, String> {
    let mut parts = spec.split(',');
    let name = parts
        .next()
        .filter(|n| !n.is_empty())
        .ok_or("an ability needs a name")?;
    let mut decl = AbilityDecl::new(name);
    for part in parts {
        match part.split_once('=') {
            Some(("action", a)) => decl = decl.action(a),
            Some(("uri", u)) => decl = decl.uri(u),
            _ => return Err(format!("{part:?}: expected action=… or uri=…")),
        }
    }
    Ok(decl)
}

/// A command on standard input.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
enum Cmd {
    Click {
        notify_id: i64,
        client_id: Option<String>,
    },
    RequestPermission {
        client_id: Option<String>,
    },
    Settings {
        enabled: bool,
        client_id: Option<String>,
    },
    BindProfile {
        #[serde(rename = "type")]
        kind: u8,
        id: String,
        client_id: Option<String>,
    },
    UnbindProfile {
        id: String,
        client_id: Option<String>,
    },
    DeleteToken {
        client_id: Option<String>,
    },
    App {
        state: RunState,
        client_id: Option<String>,
    },
}

impl Cmd {
    fn client_id(&self) -> Option<&str> {
        match self {
            Cmd::Click { client_id, .. }
            | Cmd::RequestPermission { client_id }
            | Cmd::Settings { client_id, .. }
            | Cmd::BindProfile { client_id, .. }
            | Cmd::UnbindProfile { client_id, .. }
            | Cmd::DeleteToken { client_id }
            | Cmd::App { client_id, .. } => client_id.as_deref(),
        }
    }
}

/// The permission dialog on the terminal (`/dev/tty`, so that standard input stays free
/// for commands).
#[derive(Debug)]
struct TerminalPrompt;

#[async_trait]
impl PermissionPrompt for TerminalPrompt {
    async fn ask(&self, client_id: &str) -> bool {
        let question = format!("Allow app {client_id} to send you notifications? [y/N] ");
        tokio::task::spawn_blocking(move || ask_tty(&question).unwrap_or(false))
            .await
            .unwrap_or(false)
    }
}

fn ask_tty(question: &str) -> std::io::Result<bool> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    tty.write_all(question.as_bytes())?;
    tty.flush()?;
    let mut answer = String::new();
    std::io::BufReader::new(tty).read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn prompt_for(permission: Permission) -> Arc<dyn PermissionPrompt> {
    match permission {
        Permission::Allow => Arc::new(FixedAnswer(true)),
        Permission::Deny => Arc::new(FixedAnswer(false)),
        Permission::Ask => Arc::new(TerminalPrompt),
    }
}

/// Runs the device until Ctrl-C / SIGTERM (success) or until it stops by itself (failure).
pub async fn run(args: DeviceArgs) -> anyhow::Result<ExitCode> {
    let (device, mut events) = Device::open(DeviceConfig {
        servers: args.servers.clone(),
        state_dir: args.state_dir.clone(),
        client_ids: args.client_ids.clone(),
        ca: super::load_ca(args.ca_file.as_deref())?,
        live_view_display: match args.live_views {
            LiveViews::Cards => LiveViewDisplay::Cards,
            LiveViews::Notifications => LiveViewDisplay::Notifications,
        },
        ..DeviceConfig::default()
    })
    .with_context(|| format!("starting the device in {}", args.state_dir.display()))?;
    let out = Output { json: args.json };
    let prompt = prompt_for(args.permission);
    let apps: Vec<AppHandle> = args.client_ids.iter().map(|id| device.app(id)).collect();
    for app in &apps {
        for decl in &args.abilities {
            app.add_ability(decl.clone(), Arc::new(NoopAbility));
        }
        app.set_run_state(args.app_state.into());
    }
    // First launch: each app asks for the permission once (its result is an event).
    for app in &apps {
        spawn_permission_request(app.clone(), prompt.clone());
    }

    let mut commands = stdin_lines();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let code = loop {
        tokio::select! {
            () = &mut shutdown => break ExitCode::SUCCESS,
            event = events.recv() => match event {
                Some(SdkEvent::Disconnected { reason, will_retry: false }) => {
                    out.event(&SdkEvent::Disconnected { reason, will_retry: false })?;
                    break ExitCode::FAILURE;
                }
                Some(event) => out.event(&event)?,
                None => break ExitCode::FAILURE,
            },
            Some(line) = commands.recv() => {
                on_command(&apps, &prompt, &out, &line).await?;
            }
        }
    };
    device.shutdown().await;
    while let Ok(event) = events.try_recv() {
        out.event(&event)?;
    }
    Ok(code)
}

/// Standard input, line by line, read on a blocking thread. Stops at end of input.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs a permission request on its own task: the dialog may stay open while more
/// commands arrive (a second request then gets 1600013). The SDK prints the outcome.
fn spawn_permission_request(app: AppHandle, prompt: Arc<dyn PermissionPrompt>) {
    tokio::spawn(async move {
        let _ = app.request_enable_notification(prompt.as_ref()).await;
    });
}

async fn on_command(
    apps: &[AppHandle],
    prompt: &Arc<dyn PermissionPrompt>,
    out: &Output,
    line: &str,
) -> anyhow::Result<()> {
    if line.trim().is_empty() {
        return Ok(());
    }
    let cmd: Cmd = match serde_json::from_str(line) {
        Ok(cmd) => cmd,
        Err(e) => return out.command_error("bad_command", None, &format!("{e}: {line}")),
    };
    let app = match cmd.client_id() {
        None => &apps[0],
        Some(id) => match apps.iter().find(|a| a.client_id() == id) {
            Some(app) => app,
            None => {
                return out.command_error(
                    "unknown_app",
                    None,
                    &format!("no app {id} on this device"),
                );
            }
        },
    };
    let result = match cmd {
        Cmd::Click { notify_id, .. } => match app.click(notify_id).await {
            // An opened ability is printed from its SDK event.
            Ok(ClickOutcome::Opened { .. }) => Ok(()),
            Ok(ClickOutcome::Cleared) => out.line(
                json!({"event": "cleared", "client_id": app.client_id(), "notify_id": notify_id}),
                format!("cleared: notification {notify_id}"),
            ).map_err(CommandError::Io),
            Ok(ClickOutcome::Dialed { tel }) => out.line(
                json!({"event": "dialer", "client_id": app.client_id(), "tel": tel}),
                format!("dialer: {}", tel.as_deref().unwrap_or("-")),
            ).map_err(CommandError::Io),
            Err(e) => Err(CommandError::Push(e)),
        },
        Cmd::RequestPermission { .. } => {
            spawn_permission_request(app.clone(), prompt.clone());
            Ok(())
        }
        Cmd::Settings { enabled, .. } => app.set_notification_enabled(enabled).map_err(CommandError::Push),
        Cmd::BindProfile { kind, id, .. } => {
            let bound = match ProfileType::try_from(kind) {
                Ok(kind) => app.bind_app_profile_id(kind, &id).await,
                Err(e) => Err(e),
            };
            bound.map_err(CommandError::Push).and_then(|()| print_profiles(out, app))
        }
        Cmd::UnbindProfile { id, .. } => app
            .unbind_app_profile_id(&id)
            .await
            .map_err(CommandError::Push)
            .and_then(|()| print_profiles(out, app)),
        Cmd::DeleteToken { .. } => {
            // As an app would: delete, then fetch the new token (printed as a token event).
            match app.delete_token().await {
                Ok(()) => app.get_token().await.map(drop).map_err(CommandError::Push),
                Err(e) => Err(CommandError::Push(e)),
            }
        }
        Cmd::App { state, .. } => {
            app.set_run_state(state);
            out.line(
                json!({"event": "app", "client_id": app.client_id(), "state": state}),
                format!("app {}: {state:?}", app.client_id()),
            )
            .map_err(CommandError::Io)
        }
    };
    match result {
        Ok(()) => Ok(()),
        Err(CommandError::Io(e)) => Err(e),
        Err(CommandError::Push(e)) => {
            out.command_error("command_failed", Some(e.code()), &e.to_string())
        }
    }
}

enum CommandError {
    Push(PushError),
    Io(anyhow::Error),
}

fn print_profiles(out: &Output, app: &AppHandle) -> Result<(), CommandError> {
    let profiles = app.profiles();
    let ids: Vec<&str> = profiles.iter().map(|p| p.id.as_str()).collect();
    out.line(
        json!({"event": "profiles", "client_id": app.client_id(), "profiles": profiles}),
        format!("profiles: app {}: {}", app.client_id(), ids.join(", ")),
    )
    .map_err(CommandError::Io)
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

    fn command_error(
        &self,
        code: &str,
        push_code: Option<u32>,
        message: &str,
    ) -> anyhow::Result<()> {
        self.line(
            json!({"event": "error", "code": code, "push_code": push_code, "message": message, "re": "command"}),
            format!("error: {code}: {message}"),
        )
    }

    fn event(&self, event: &SdkEvent) -> anyhow::Result<()> {
        let (object, text) = describe(event);
        self.line(object, text)
    }
}

/// An SDK event as a JSON object and as a line of text.
fn describe(event: &SdkEvent) -> (Value, String) {
    match event {
        SdkEvent::Connected {
            device_id,
            server,
            registered,
        } => (
            json!({"event": "connected", "device_id": device_id, "server": server, "registered": registered}),
            format!(
                "connected: device {device_id} via {server}{}",
                if *registered {
                    " (newly registered)"
                } else {
                    ""
                }
            ),
        ),
        SdkEvent::Disconnected { reason, will_retry } => (
            json!({"event": "disconnected", "reason": reason, "will_retry": will_retry}),
            format!(
                "disconnected: {reason}{}",
                if *will_retry { " (reconnecting)" } else { "" }
            ),
        ),
        SdkEvent::Token {
            client_id,
            token,
            bindings_dropped,
        } => (
            json!({"event": "token", "client_id": client_id, "token": token, "bindings_dropped": bindings_dropped}),
            format!("token: app {client_id}: {token}"),
        ),
        SdkEvent::TokenDeleted { client_id } => (
            json!({"event": "token_deleted", "client_id": client_id}),
            format!("token deleted: app {client_id}"),
        ),
        SdkEvent::Permission {
            client_id,
            enabled,
            code,
        } => (
            json!({"event": "permission", "client_id": client_id, "enabled": enabled, "code": code}),
            format!(
                "permission: app {client_id}: notifications {}{}",
                if *enabled { "on" } else { "off" },
                code.map(|c| format!(" (error {c})")).unwrap_or_default()
            ),
        ),
        SdkEvent::Notification {
            client_id,
            shown,
            replaced,
        } => {
            let n = &shown.notification;
            let reminder = match shown.reminder {
                Some(herald_proto::device::Reminder::Alert) => "alert",
                Some(herald_proto::device::Reminder::Silent) => "silent",
                None => "-",
            };
            let text = format!(
                "notification [{} {reminder}] {}: {}  (app {client_id}, message {}, notify_id {}{}{})",
                n["category"].as_str().unwrap_or("-"),
                n["title"].as_str().unwrap_or(""),
                n["body"].as_str().unwrap_or(""),
                shown.message_id,
                shown
                    .notify_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                if replaced.is_some() {
                    ", replaces an earlier one"
                } else {
                    ""
                },
                if shown.test { ", test" } else { "" },
            );
            (
                json!({
                    "event": "notification",
                    "client_id": client_id,
                    "message_id": shown.message_id,
                    "push_type": shown.push_type,
                    "notify_id": shown.notify_id,
                    "category": n.get("category"),
                    "reminder": shown.reminder,
                    "sound": n.get("sound"),
                    "title": n.get("title"),
                    "body": n.get("body"),
                    "badge": n.get("badge"),
                    "activity_id": n.get("activityId"),
                    "click_action": n.get("clickAction"),
                    "profile_id": n.get("profileId"),
                    "app_message_id": n.get("appMessageId"),
                    "test": shown.test,
                    "replaced": replaced.is_some(),
                    "replaced_message_id": replaced,
                }),
                text,
            )
        }
        SdkEvent::Suppressed {
            client_id,
            message_id,
            push_type,
            receipt,
            reason,
        } => (
            // `code` repeats `receipt` for readers of the earlier event shape.
            json!({"event": "suppressed", "client_id": client_id, "message_id": message_id,
                "push_type": push_type, "receipt": receipt, "code": receipt, "reason": reason}),
            format!(
                "suppressed: message {message_id} for app {client_id}: {reason}{}",
                receipt
                    .map(|r| format!(" (receipt {r})"))
                    .unwrap_or_default()
            ),
        ),
        SdkEvent::Received {
            client_id,
            kind,
            payload,
            handled,
        } => (
            // `receiveMessage(kind)` fired: `data` is PushPayload.data, parsed.
            json!({"event": "message", "client_id": client_id, "message_id": payload.message_id,
                "push_type": payload.push_type, "kind": kind,
                "data": serde_json::from_str::<Value>(&payload.data).unwrap_or_else(|_| json!(payload.data)),
                "handled": handled}),
            format!(
                "receiveMessage('{}'): app {client_id}, push-type {}: {}",
                kind.as_str(),
                payload.push_type,
                payload.data
            ),
        ),
        SdkEvent::Form {
            client_id,
            message_id,
            form_id,
            version,
            form_data,
        } => (
            json!({"event": "form", "client_id": client_id, "message_id": message_id,
                "form_id": form_id, "version": version, "form_data": form_data}),
            format!("widget {form_id} of app {client_id} now at version {version}: {form_data}"),
        ),
        SdkEvent::LiveView {
            client_id,
            message_id,
            activity_id,
            operation,
            state,
        } => (
            json!({"event": "live_view", "client_id": client_id, "message_id": message_id,
                "activity_id": activity_id, "operation": operation, "event_type": state.event,
                "status": state.status, "version": state.version, "ended": state.ended,
                "state": state.activity_data}),
            format!(
                "live view {activity_id} ({}) of app {client_id}: {} {}{}",
                state.event,
                ["created", "updated", "ended"]
                    .get(usize::from(*operation))
                    .unwrap_or(&"changed"),
                state.status.as_deref().unwrap_or("-"),
                if state.ended { " (ended)" } else { "" }
            ),
        ),
        SdkEvent::Cached {
            client_id,
            message_id,
        } => (
            json!({"event": "cached", "client_id": client_id, "message_id": message_id}),
            format!(
                "background message {message_id} of app {client_id} kept until the app comes to the foreground"
            ),
        ),
        SdkEvent::ProxyData { client_id, row } => (
            json!({"event": "proxy_data", "client_id": client_id, "message_id": row.message_id,
                "row": row}),
            format!(
                "background message {} of app {client_id} written to its PushMessage table (row {}): {}",
                row.message_id, row.id, row.message
            ),
        ),
        SdkEvent::Badge { client_id, count } => (
            json!({"event": "badge", "client_id": client_id, "count": count}),
            format!("badge of app {client_id}: {count}"),
        ),
        SdkEvent::Revoked {
            client_id,
            notify_id,
            message_id,
        } => (
            json!({"event": "revoked", "client_id": client_id, "notify_id": notify_id,
                "message_id": message_id}),
            format!("revoked: notification {notify_id} of app {client_id} removed"),
        ),
        SdkEvent::Message(m) => (
            json!({"event": "message", "client_id": m.client_id, "message_id": m.id,
                "push_type": m.push_type, "test": m.test, "payload": m.payload}),
            format!(
                "message: push-type {} for app {} ({}): {}",
                m.push_type, m.client_id, m.id, m.payload
            ),
        ),
        SdkEvent::Report {
            message_id,
            status,
            code,
        } => {
            let status = match status {
                ReportStatus::Shown => "shown",
                ReportStatus::Suppressed => "suppressed",
                ReportStatus::Clicked => "clicked",
            };
            (
                json!({"event": "report", "message_id": message_id, "status": status, "code": code}),
                format!("report: {message_id} {status}"),
            )
        }
        SdkEvent::Ability {
            client_id,
            ability,
            callback,
            want,
        } => (
            json!({"event": "ability", "client_id": client_id, "ability": ability,
                "callback": callback, "want": want}),
            format!(
                "ability: app {client_id}: {ability}.{}(want {})",
                callback.as_str(),
                serde_json::to_string(want).unwrap_or_default()
            ),
        ),
        SdkEvent::Error { code, message, re } => (
            json!({"event": "error", "code": code, "message": message, "re": re}),
            format!("error: {code}: {message}"),
        ),
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
    fn ability_specs_parse() {
        let d =
            parse_ability("Orders,action=com.example.ORDER,uri=https://x.test/o").expect("valid");
        assert_eq!(d.name, "Orders");
        assert_eq!(d.actions, ["com.example.ORDER"]);
        assert_eq!(d.uris, ["https://x.test/o"]);
        assert!(parse_ability("").is_err());
        assert!(parse_ability("X,foo=bar").is_err());
    }

    #[test]
    fn commands_parse() {
        let c: Cmd = serde_json::from_str(r#"{"cmd":"click","notify_id":7}"#).expect("click");
        assert!(matches!(
            c,
            Cmd::Click {
                notify_id: 7,
                client_id: None
            }
        ));
        let c: Cmd = serde_json::from_str(r#"{"cmd":"app","state":"foreground"}"#).expect("app");
        assert!(matches!(
            c,
            Cmd::App {
                state: RunState::Foreground,
                ..
            }
        ));
        let c: Cmd =
            serde_json::from_str(r#"{"cmd":"bind_profile","type":2,"id":"u"}"#).expect("bind");
        assert!(matches!(c, Cmd::BindProfile { kind: 2, .. }));
    }
}
