//! Emulator mode (`herald serve --emulator`): what a backend's own test suite needs to
//! drive Herald over HTTP — virtual devices living inside the server, a clock it can move
//! forward, Push Kit failures on demand, and a log of the receipts posted. The API
//! (`/emulator/v1/...`, [`api`]) exists only in this mode.
//!
//! Nothing here is a parallel model: a virtual device speaks to the gateway's session
//! state machine (`gateway/sm.rs`) as a socket connection would, and applies the SDK's
//! own device rules (`herald_client::device::AppCore`), so its acks and reports go
//! through `acks.rs` and the store exactly like a real device's. An inbox is read back
//! from the store's lifecycle of each delivery.

pub mod api;
mod device;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_core::OffsetClock;
use herald_core::send::ParsedSend;
use herald_proto::Code;
use herald_proto::push::{TokenFailure, TokenFailures};
use herald_store::ReceiptConfig;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

pub use api::{EmulatorApi, routes};
pub use device::Action;

/// Virtual devices at most (each is a task and a registry entry).
pub const MAX_DEVICES: usize = 10_000;
/// Tokens remembered (a device's first, and each `delete_token` gives one more).
pub const MAX_TOKENS: usize = 4 * MAX_DEVICES;
/// Messages remembered per device inbox; the oldest go first.
pub const MAX_INBOX: usize = 1_000;
/// Faults waiting at most.
pub const MAX_FAULTS: usize = 100;
/// Receipt attempts remembered; the oldest go first.
pub const MAX_RECEIPT_LOG: usize = 1_000;
/// A fault answers at most this many sends.
pub const MAX_FAULT_COUNT: u32 = 10_000;

/// The emulator's state, shared by the API, the send path (faults, inboxes) and the
/// receipt dispatcher (its log). Every collection is bounded (see the constants).
///
/// Why std mutexes: each guards plain data for a few map operations and is never held
/// across an `.await`.
#[derive(Debug)]
pub struct Emulator {
    /// Herald's clock in this mode: the wall clock plus what `POST /emulator/v1/clock`
    /// added.
    pub clock: OffsetClock,
    /// The app `POST /emulator/v1/devices` installs when the body names none (the
    /// bootstrap app, when this start made it).
    default_client_id: OnceLock<String>,
    devices: Mutex<HashMap<String, Arc<device::VirtualDevice>>>,
    /// Every token a virtual device was given (deleted ones too, so later sends to them
    /// show as dropped) → its device id.
    tokens: Mutex<HashMap<String, String>>,
    faults: Mutex<VecDeque<Fault>>,
    receipts: Mutex<VecDeque<ReceiptAttempt>>,
    /// How many resets there were (the receipt dispatcher forgets its backoffs on one).
    resets: AtomicU64,
    /// Emulator API calls hold it shared, a reset alone (a tokio lock: held across the
    /// calls' awaits).
    gate: tokio::sync::RwLock<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Emulator {
    pub fn new(clock: OffsetClock) -> Self {
        Emulator {
            clock,
            default_client_id: OnceLock::new(),
            devices: Mutex::default(),
            tokens: Mutex::default(),
            faults: Mutex::default(),
            receipts: Mutex::default(),
            resets: AtomicU64::new(0),
            gate: tokio::sync::RwLock::new(()),
        }
    }

    /// How many times `DELETE /emulator/v1/state` ran.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::SeqCst)
    }

    /// The app virtual devices install by default.
    pub fn set_default_client_id(&self, client_id: &str) {
        let _ = self.default_client_id.set(client_id.to_owned());
    }

    fn device(&self, device_id: &str) -> Option<Arc<device::VirtualDevice>> {
        lock(&self.devices).get(device_id).cloned()
    }

    fn remember_token(&self, token: &str, device_id: &str) {
        lock(&self.tokens).insert(token.to_owned(), device_id.to_owned());
    }

    /// Whether another token may be handed out (see [`MAX_TOKENS`]).
    fn has_room_for_a_token(&self) -> bool {
        lock(&self.tokens).len() < MAX_TOKENS
    }

    /// The next fault for a send to `tokens`, counted down: a fault naming a token
    /// answers the sends that include it, one naming none answers any send. Oldest first.
    pub fn take_fault(&self, tokens: &[String]) -> Option<FaultAnswer> {
        let mut faults = lock(&self.faults);
        let i = faults.iter().position(|f| match &f.token {
            Some(t) => tokens.iter().any(|x| x == t),
            None => true,
        })?;
        let fault = &mut faults[i];
        fault.left -= 1;
        let answer = match fault.kind {
            FaultKind::Status(status) => FaultAnswer::Status(status),
            FaultKind::Code(code) => FaultAnswer::Business {
                code,
                msg: fault_msg(code, fault.token.as_deref(), tokens),
            },
        };
        if fault.left == 0 {
            faults.remove(i);
        }
        metrics::counter!("herald_emulator_faults_answered_total").increment(1);
        Some(answer)
    }

    /// Remember what an accepted send carried to virtual devices' tokens, for their
    /// inboxes (what became of it is read from the store).
    pub fn record_send(&self, sent: SentMessage<'_>) {
        let tokens = lock(&self.tokens);
        let devices = lock(&self.devices);
        let payload = serde_json::from_slice::<Value>(sent.body)
            .ok()
            .and_then(|mut v| v.get_mut("payload").map(Value::take))
            .unwrap_or(Value::Null);
        let mut seen = std::collections::HashSet::new();
        for token in &sent.parsed.tokens {
            if !seen.insert(token.as_str()) {
                continue;
            }
            let Some(device) = tokens.get(token).and_then(|d| devices.get(d)) else {
                continue;
            };
            let category = sent
                .categories
                .iter()
                .find(|(t, _)| t == token)
                .and_then(|(_, c)| c.map(|c| c.as_str().to_owned()));
            device.remember(InboxRecord {
                request_id: sent.request_id.to_owned(),
                token: token.clone(),
                push_type: sent.parsed.push_type.as_u8(),
                notify_id: sent.notify_id,
                category,
                payload: payload.clone(),
            });
        }
    }

    /// Log one receipt callback attempt (the dispatcher calls this after every post).
    pub fn log_receipt(
        &self,
        config: &ReceiptConfig,
        body: &impl Serialize,
        outcome: &crate::receipts::PostOutcome,
        at: i64,
    ) {
        let mut log = lock(&self.receipts);
        if log.len() >= MAX_RECEIPT_LOG {
            log.pop_front();
        }
        log.push_back(ReceiptAttempt {
            at,
            receipt_id: config.receipt_id.clone(),
            url: config.url.clone(),
            body: serde_json::to_value(body).unwrap_or(Value::Null),
            status: outcome.status,
            answer: outcome.body.clone(),
            success: outcome.success,
        });
    }
}

/// What [`Emulator::record_send`] needs from the send path.
#[derive(Debug)]
pub struct SentMessage<'a> {
    pub request_id: &'a str,
    /// The request body as the backend sent it.
    pub body: &'a [u8],
    pub parsed: &'a ParsedSend,
    /// The `notifyId` the message carries (sent, or chosen by Herald), for notifications.
    pub notify_id: Option<u32>,
    /// Each admitted token's effective category (after any downgrade).
    pub categories: &'a [(String, Option<herald_core::Category>)],
}

/// The `msg` of a faulted answer: Push Kit's per-token shape for the codes that carry
/// one (the faulted token, or every token of the send, as `tokenFormatError`), else the
/// code's own text.
fn fault_msg(code: Code, token: Option<&str>, tokens: &[String]) -> String {
    match code {
        Code::AllTokensInvalid | Code::PartialSuccess => {
            let mut failures = TokenFailures::default();
            for t in tokens {
                if token.is_none_or(|f| f == t) {
                    failures.add(TokenFailure::TokenFormatError, t.clone());
                } else {
                    failures.success += 1;
                }
            }
            failures.to_msg()
        }
        other => other.default_msg().to_owned(),
    }
}

/// How a faulted send is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAnswer {
    /// Push Kit's envelope with this code, its HTTP status and `msg`.
    Business { code: Code, msg: String },
    /// This HTTP status with an empty body.
    Status(u16),
}

impl FaultAnswer {
    pub fn response(self, request_id: &str) -> Response {
        match self {
            FaultAnswer::Business { code, msg } => crate::api::respond(code, msg, request_id),
            FaultAnswer::Status(status) => StatusCode::from_u16(status)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
                .into_response(),
        }
    }
}

/// A fault waiting for sends.
#[derive(Debug, Clone)]
struct Fault {
    kind: FaultKind,
    /// Sends it still answers (> 0).
    left: u32,
    token: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum FaultKind {
    Code(Code),
    Status(u16),
}

/// One message in a device's inbox as recorded at send time.
#[derive(Debug, Clone)]
struct InboxRecord {
    request_id: String,
    token: String,
    push_type: u8,
    notify_id: Option<u32>,
    category: Option<String>,
    payload: Value,
}

/// One receipt callback attempt and the endpoint's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptAttempt {
    /// When it was posted (Herald's clock, ms since the Unix epoch).
    pub at: i64,
    pub receipt_id: String,
    pub url: String,
    /// The V2 body posted (`{"statuses": [...]}`).
    #[schema(value_type = Object)]
    pub body: Value,
    /// The endpoint's HTTP status; null when it did not answer.
    pub status: Option<u16>,
    /// The endpoint's answer body (at most 64 KiB), or why there was none.
    pub answer: String,
    /// Whether the endpoint accepted it (2xx with `{"code":"0"}`); if not, it is retried.
    pub success: bool,
}
