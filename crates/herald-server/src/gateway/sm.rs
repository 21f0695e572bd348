//! The device session as a state machine, with no socket code: `Unidentified` becomes
//! `Identified` on a good `hello`; each method takes a frame and returns the frames to
//! send (or why to close). The socket loop in `gateway/mod.rs` only moves bytes.

use std::collections::{BTreeSet, HashSet};

use herald_core::{Outcome, ReceiptCode};
use herald_proto::device::{
    ClientFrame, DeviceCredential, PROTOCOL_VERSION, ReportStatus, ServerFrame, close,
};
use herald_store::{DeliveryId, DeviceReport, MessageKind, NewDevice, NewToken, StoredDelivery};

use crate::delivery::stored_frame;
use crate::ids;
use crate::registry::{Live, LiveBody};
use crate::state::AppState;

/// Why the server closes a connection: a WebSocket close code and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
}

impl Close {
    pub const fn new(code: u16, reason: &'static str) -> Self {
        Close { code, reason }
    }
}

/// A connection that has not said `hello` yet.
#[derive(Debug, Default)]
pub struct Unidentified;

/// A connection bound to a device.
#[derive(Debug)]
pub struct Identified {
    pub device_id: String,
    /// The server's number for the device.
    pub device: i64,
    /// This connection's hello number (`DeviceAuth::session`): the newest wins across nodes.
    pub session: i64,
    /// Deliveries sent on this connection and not yet acknowledged: the guard against
    /// sending one twice when the backlog and the live channel overlap, and the only ids
    /// an ack may name (an ack for anything else is ignored without a store write).
    /// Bounded by what the connection was sent.
    in_flight: HashSet<DeliveryId>,
    /// Deliveries a read of the stored queue returned on this connection. Their live copy
    /// may come later still (it is queued after the commit the read already saw), maybe
    /// after the device acked the copy the read sent: it is dropped, not sent again. An
    /// entry leaves when its live copy comes; past [`READ_IDS`] the oldest go.
    read: BTreeSet<DeliveryId>,
    /// Reports in the current window, against [`REPORTS_PER_WINDOW`].
    reports: ReportBudget,
}

/// How many reports a connection may send per [`REPORT_WINDOW_MS`] before it is closed
/// as a flood (a real device reports each message it received once or twice).
pub const REPORTS_PER_WINDOW: u32 = 2_000;
pub const REPORT_WINDOW_MS: i64 = 10_000;
/// Ids in one ack frame, at most.
pub const MAX_ACK_IDS: usize = 1_024;
/// Ids a connection remembers from its reads of the stored queue, at most.
const READ_IDS: usize = 4_096;

#[derive(Debug, Default)]
struct ReportBudget {
    window_start: i64,
    used: u32,
}

impl ReportBudget {
    fn take(&mut self, now: i64) -> bool {
        if now - self.window_start >= REPORT_WINDOW_MS {
            self.window_start = now;
            self.used = 0;
        }
        self.used += 1;
        self.used <= REPORTS_PER_WINDOW
    }
}

fn internal(e: impl std::fmt::Display) -> Close {
    tracing::error!(error = %e, "Device session failed on the store.");
    Close::new(close::INTERNAL_ERROR, "internal error")
}

impl Unidentified {
    /// The first frame must be `hello`.
    pub async fn on_frame(
        self,
        app: &AppState,
        frame: ClientFrame,
    ) -> Result<(Identified, Vec<String>), Close> {
        let ClientFrame::Hello { version, device } = frame else {
            return Err(Close::new(close::POLICY_VIOLATION, "hello must come first"));
        };
        if version != PROTOCOL_VERSION {
            return Err(Close::new(
                close::UNSUPPORTED_VERSION,
                "unsupported protocol version",
            ));
        }
        let now = app.clock.now_ms();
        let (device_id, device, session, secret) = match device {
            Some(cred) => {
                let (device, session) = authenticate(app, &cred, now).await?;
                (cred.id, device, session, None)
            }
            None => {
                let device_id = ids::hex_id(32);
                let secret = ids::secret(32);
                let device = app
                    .store
                    .register_device(NewDevice {
                        device_id: device_id.clone(),
                        secret_hash: ids::sha256_hex(&secret),
                        created_at: now,
                    })
                    .await
                    .map_err(internal)?;
                tracing::info!(%device_id, "Device registered.");
                (device_id, device, 0, Some(secret))
            }
        };
        let welcome = ServerFrame::Welcome {
            version: PROTOCOL_VERSION,
            device_id: device_id.clone(),
            secret,
            server_time: now,
        };
        Ok((
            Identified {
                device_id,
                device,
                session,
                in_flight: HashSet::new(),
                read: BTreeSet::new(),
                reports: ReportBudget::default(),
            },
            vec![text(&welcome)],
        ))
    }
}

/// The device's number and this hello's session number.
async fn authenticate(
    app: &AppState,
    cred: &DeviceCredential,
    now: i64,
) -> Result<(i64, i64), Close> {
    let stored = app
        .store
        .device_auth(&cred.id, now)
        .await
        .map_err(internal)?;
    match stored {
        Some(auth) if auth.secret_hash == ids::sha256_hex(&cred.secret) => {
            Ok((auth.device, auth.session))
        }
        _ => Err(Close::new(
            close::BAD_CREDENTIALS,
            "unknown device or secret",
        )),
    }
}

impl Identified {
    /// A frame after `hello`.
    pub async fn on_frame(
        &mut self,
        app: &AppState,
        frame: ClientFrame,
    ) -> Result<Vec<String>, Close> {
        match frame {
            ClientFrame::Hello { .. } => Ok(vec![error(
                "duplicate_hello",
                "already identified",
                "hello",
            )]),
            ClientFrame::GetToken { client_id } => self.get_token(app, client_id).await,
            ClientFrame::DeleteToken { client_id } => self.delete_token(app, client_id).await,
            ClientFrame::Ack { ids } => {
                if ids.len() > MAX_ACK_IDS {
                    return Ok(vec![error(
                        "too_many_ids",
                        "an ack names at most 1024 ids",
                        "ack",
                    )]);
                }
                let now = app.clock.now_ms();
                // Only what this connection sent can be acknowledged by it.
                let acks: Vec<DeviceReport> = ids
                    .iter()
                    .filter_map(|id| id.parse::<DeliveryId>().ok())
                    .filter(|id| self.in_flight.remove(id))
                    .map(|id| DeviceReport {
                        device: self.device,
                        id,
                        outcome: Outcome::Delivered,
                        at: now,
                    })
                    .collect();
                if !app.reports.submit(acks).await {
                    return Err(Close::new(close::GOING_AWAY, "server shutting down"));
                }
                Ok(vec![])
            }
            ClientFrame::Report { id, status, code } => {
                let now = app.clock.now_ms();
                if !self.reports.take(now) {
                    return Err(Close::new(close::POLICY_VIOLATION, "too many reports"));
                }
                let Ok(id) = id.parse::<DeliveryId>() else {
                    return Ok(vec![]);
                };
                let outcome = match status {
                    ReportStatus::Shown => Outcome::Shown,
                    ReportStatus::Clicked => Outcome::Clicked,
                    ReportStatus::Suppressed => Outcome::Suppressed(ReceiptCode(
                        code.unwrap_or(ReceiptCode::NOTIFICATIONS_OFF.0),
                    )),
                };
                // A report implies delivery: the id no longer needs an ack.
                self.in_flight.remove(&id);
                let report = DeviceReport {
                    device: self.device,
                    id,
                    outcome,
                    at: now,
                };
                if !app.reports.submit(vec![report]).await {
                    return Err(Close::new(close::GOING_AWAY, "server shutting down"));
                }
                Ok(vec![])
            }
        }
    }

    async fn get_token(&mut self, app: &AppState, client_id: String) -> Result<Vec<String>, Close> {
        let known = app
            .apps
            .get(app.store.as_ref(), &client_id)
            .await
            .map_err(internal)?
            .is_some();
        let record = if !known {
            None
        } else {
            app.store
                .token_for(
                    self.device,
                    &client_id,
                    NewToken {
                        token: ids::push_token(),
                        created_at: app.clock.now_ms(),
                    },
                )
                .await
                .map_err(internal)?
        };
        let Some(record) = record else {
            return Ok(vec![error(
                "unknown_app",
                "no app has this client_id",
                "get_token",
            )]);
        };
        let token = record.token.clone();
        app.tokens.insert(record);
        Ok(vec![text(&ServerFrame::Token { client_id, token })])
    }

    /// `deleteToken`: the token leaves the store and the cache, so later sends to it are
    /// dropped with receipt 5. Deleting when there is no token is not an error.
    async fn delete_token(
        &mut self,
        app: &AppState,
        client_id: String,
    ) -> Result<Vec<String>, Close> {
        if app
            .apps
            .get(app.store.as_ref(), &client_id)
            .await
            .map_err(internal)?
            .is_none()
        {
            return Ok(vec![error(
                "unknown_app",
                "no app has this client_id",
                "delete_token",
            )]);
        }
        let deleted = app
            .store
            .delete_token(self.device, &client_id, app.clock.now_ms())
            .await
            .map_err(internal)?;
        if let Some(token) = deleted {
            app.tokens.remove(&token);
            app.tell_others(crate::bus::Control::TokenDeleted {
                token: token.clone(),
            });
            tracing::info!(device_id = %self.device_id, %client_id, "Token deleted.");
        }
        Ok(vec![text(&ServerFrame::TokenDeleted { client_id })])
    }

    /// Frames for the stored queue, skipping what this connection already sent. VoIP
    /// calls go first: a call must ring before older notifications are shown.
    pub fn on_backlog(&mut self, backlog: Vec<StoredDelivery>) -> Vec<String> {
        self.read.extend(backlog.iter().map(|d| d.id));
        while self.read.len() > READ_IDS {
            self.read.pop_first();
        }
        let (calls, rest): (Vec<_>, Vec<_>) = backlog
            .into_iter()
            .partition(|d| d.kind == MessageKind::Message && d.push_type == VOIP_PUSH_TYPE);
        calls
            .into_iter()
            .chain(rest)
            .filter(|d| self.in_flight.insert(d.id))
            .filter_map(|d| stored_frame(&d))
            .collect()
    }

    /// The frame of a live message, unless it was already sent or its TTL has ended.
    pub fn on_live(&mut self, live: &Live, now_ms: i64) -> Option<String> {
        if self.read.remove(&live.id) {
            return None;
        }
        let frame = match &live.body {
            LiveBody::Message { prepared, record } => {
                // A message whose TTL is 0 is deliverable in the millisecond it was sent;
                // one whose TTL has ended is never delivered late (a VoIP call that
                // stopped ringing).
                if prepared.expires_at < now_ms {
                    return None;
                }
                prepared.frame(live.id, &record.client_id, &record.token)
            }
            LiveBody::Frame(f) => text(f),
        };
        self.in_flight.insert(live.id).then_some(frame)
    }
}

/// push-type of VoIP calls.
const VOIP_PUSH_TYPE: u8 = 10;

fn text(frame: &ServerFrame) -> String {
    // Serialising plain data into a String cannot fail.
    serde_json::to_string(frame).unwrap_or_default()
}

fn error(code: &str, message: &str, re: &str) -> String {
    text(&ServerFrame::Error {
        code: code.to_owned(),
        message: message.to_owned(),
        re: Some(re.to_owned()),
    })
}

/// The answer to a text frame that is JSON but not a frame this server knows.
pub fn bad_frame(detail: String) -> String {
    text(&ServerFrame::Error {
        code: "bad_frame".to_owned(),
        message: detail,
        re: None,
    })
}
