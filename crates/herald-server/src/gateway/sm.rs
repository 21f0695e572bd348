//! The device session as a state machine, with no socket code: `Unidentified` becomes
//! `Identified` on a good `hello`; each method takes a frame and returns the frames to
//! send (or why to close). The socket loop in `gateway/mod.rs` only moves bytes.

use std::collections::HashSet;

use herald_core::{Outcome, ReceiptCode};
use herald_proto::device::{
    ClientFrame, DeviceCredential, DeviceMessage, PROTOCOL_VERSION, ReportStatus, ServerFrame,
    close,
};
use herald_store::{NewDevice, NewToken, Report, StoredDelivery, TokenRecord};

use crate::ids;
use crate::registry::Live;
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
    /// Messages sent on this connection and not yet acknowledged: the guard against
    /// sending a message twice when the backlog and the live channel overlap.
    in_flight: HashSet<String>,
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
    ) -> Result<(Identified, Vec<ServerFrame>), Close> {
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
        let (device_id, secret) = match device {
            Some(cred) => (authenticate(app, cred).await?, None),
            None => {
                let device_id = ids::hex_id(32);
                let secret = ids::secret(32);
                app.store
                    .register_device(NewDevice {
                        device_id: device_id.clone(),
                        secret_hash: ids::sha256_hex(&secret),
                        created_at: now,
                    })
                    .await
                    .map_err(internal)?;
                tracing::info!(%device_id, "Device registered.");
                (device_id, Some(secret))
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
                in_flight: HashSet::new(),
            },
            vec![welcome],
        ))
    }
}

async fn authenticate(app: &AppState, cred: DeviceCredential) -> Result<String, Close> {
    let stored = app
        .store
        .device_secret_hash(&cred.id)
        .await
        .map_err(internal)?;
    match stored {
        Some(hash) if hash == ids::sha256_hex(&cred.secret) => Ok(cred.id),
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
    ) -> Result<Vec<ServerFrame>, Close> {
        match frame {
            ClientFrame::Hello { .. } => Ok(vec![error(
                "duplicate_hello",
                "already identified",
                "hello",
            )]),
            ClientFrame::GetToken { client_id } => self.get_token(app, client_id).await,
            ClientFrame::DeleteToken { client_id } => self.delete_token(app, client_id).await,
            ClientFrame::Ack { ids } => {
                for id in &ids {
                    self.in_flight.remove(id);
                }
                let store = app.store.clone();
                let device_id = self.device_id.clone();
                let now = app.clock.now_ms();
                // Acks need not hold up the socket: the store orders nothing by them.
                tokio::spawn(async move {
                    if let Err(e) = store.ack(&device_id, &ids, now).await {
                        tracing::error!(error = %e, %device_id, "Could not record acks.");
                    }
                });
                Ok(vec![])
            }
            ClientFrame::Report { id, status, code } => {
                let outcome = match status {
                    ReportStatus::Shown => Outcome::Shown,
                    ReportStatus::Clicked => Outcome::Clicked,
                    ReportStatus::Suppressed => Outcome::Suppressed(ReceiptCode(
                        code.unwrap_or(ReceiptCode::NOTIFICATIONS_OFF.0),
                    )),
                };
                let report = Report {
                    message_id: id,
                    outcome,
                    at: app.clock.now_ms(),
                };
                let store = app.store.clone();
                let device_id = self.device_id.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.record_reports(&device_id, &[report]).await {
                        tracing::error!(error = %e, %device_id, "Could not record a report.");
                    }
                });
                Ok(vec![])
            }
        }
    }

    async fn get_token(
        &mut self,
        app: &AppState,
        client_id: String,
    ) -> Result<Vec<ServerFrame>, Close> {
        let Some(found) = app
            .apps
            .get(app.store.as_ref(), &client_id)
            .await
            .map_err(internal)?
        else {
            return Ok(vec![error(
                "unknown_app",
                "no app has this client_id",
                "get_token",
            )]);
        };
        let token = app
            .store
            .token_for(
                &self.device_id,
                &client_id,
                NewToken {
                    token: ids::push_token(),
                    created_at: app.clock.now_ms(),
                },
            )
            .await
            .map_err(internal)?;
        app.tokens.insert(TokenRecord {
            token: token.clone(),
            device_id: self.device_id.clone(),
            client_id: client_id.clone(),
            project_id: found.project_id,
        });
        Ok(vec![ServerFrame::Token { client_id, token }])
    }

    /// `deleteToken`: the token leaves the store and the cache, so later sends to it are
    /// dropped with receipt 5. Deleting when there is no token is not an error.
    async fn delete_token(
        &mut self,
        app: &AppState,
        client_id: String,
    ) -> Result<Vec<ServerFrame>, Close> {
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
            .delete_token(&self.device_id, &client_id, app.clock.now_ms())
            .await
            .map_err(internal)?;
        if let Some(token) = deleted {
            app.tokens.remove(&token);
            tracing::info!(device_id = %self.device_id, %client_id, "Token deleted.");
        }
        Ok(vec![ServerFrame::TokenDeleted { client_id }])
    }

    /// Frames for the stored queue, skipping what this connection already sent. VoIP
    /// calls go first: a call must ring before older notifications are shown.
    pub fn on_backlog(&mut self, backlog: Vec<StoredDelivery>) -> Vec<ServerFrame> {
        let (calls, rest): (Vec<_>, Vec<_>) = backlog
            .into_iter()
            .partition(|d| d.kind == "message" && d.push_type == VOIP_PUSH_TYPE);
        calls
            .into_iter()
            .chain(rest)
            .filter_map(|d| {
                let frame = stored_to_frame(d)?;
                self.in_flight
                    .insert(frame_id(&frame).to_owned())
                    .then_some(frame)
            })
            .collect()
    }

    /// A frame for a live message, unless it was already sent or its TTL has ended.
    pub fn on_live(&mut self, live: Live, now_ms: i64) -> Option<ServerFrame> {
        // A message whose TTL is 0 is deliverable in the millisecond it was sent; one
        // whose TTL has ended is never delivered late (a VoIP call that stopped ringing).
        if let ServerFrame::Message(m) = &live.frame
            && m.expires_at < now_ms
        {
            return None;
        }
        self.in_flight
            .insert(frame_id(&live.frame).to_owned())
            .then_some(live.frame)
    }
}

/// push-type of VoIP calls.
const VOIP_PUSH_TYPE: u8 = 10;

/// The id a device acks a frame by.
fn frame_id(frame: &ServerFrame) -> &str {
    match frame {
        ServerFrame::Message(m) => &m.id,
        ServerFrame::Revoke { id, .. } => id,
        _ => "",
    }
}

/// The frame a stored delivery becomes: a revoke command or a message.
pub fn stored_to_frame(d: StoredDelivery) -> Option<ServerFrame> {
    if d.kind == "revoke" {
        return Some(ServerFrame::Revoke {
            id: d.message_id,
            client_id: d.client_id,
            token: d.token,
            notify_id: d.notify_id.unwrap_or_default(),
        });
    }
    stored_to_message(d).map(ServerFrame::Message)
}

fn stored_to_message(d: StoredDelivery) -> Option<DeviceMessage> {
    let payload = match serde_json::from_str(&d.payload) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, message_id = %d.message_id, "Stored payload is not JSON.");
            return None;
        }
    };
    let category = d.category;
    let background_mode = d.background_mode;
    let message = DeviceMessage {
        id: d.message_id,
        client_id: d.client_id,
        token: d.token,
        push_type: d.push_type,
        request_id: d.request_id,
        sent_at: d.created_at,
        expires_at: d.expires_at,
        payload,
        test: d.test,
        bi_tag: d.bi_tag,
        reminder: None,
        background_mode,
    };
    Some(crate::delivery::finish(message, category.as_deref()))
}

fn error(code: &str, message: &str, re: &str) -> ServerFrame {
    ServerFrame::Error {
        code: code.to_owned(),
        message: message.to_owned(),
        re: Some(re.to_owned()),
    }
}

/// The answer to a text frame that is JSON but not a frame this server knows.
pub fn bad_frame(detail: String) -> ServerFrame {
    ServerFrame::Error {
        code: "bad_frame".to_owned(),
        message: detail,
        re: None,
    }
}
