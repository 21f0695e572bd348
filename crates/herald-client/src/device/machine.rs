//! The device protocol as a state machine with no socket code: frames in, effects out.
//!
//! The socket loop (`connection.rs`) feeds it server frames and connection changes and
//! carries out the [`Effect`]s it returns, in order. What outlives one connection (the
//! credential, the seen ids, acks and reports not yet sent) lives here too.

use std::collections::VecDeque;

use herald_proto::device::{
    ClientFrame, DeviceCredential, DeviceMessage, PROTOCOL_VERSION, ReportStatus, ServerFrame,
};

use super::DeviceEvent;
use super::state::SeenIds;

/// Reports queued while offline beyond this many are dropped, oldest first.
const MAX_QUEUED_REPORTS: usize = 1_000;

/// What the socket loop must do, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Persist the credential. Comes first, before anything else the welcome triggers: a
    /// device that loses its secret loses its identity and its tokens.
    SaveCredential(DeviceCredential),
    Send(ClientFrame),
    Emit(DeviceEvent),
}

/// The server broke the protocol; the connection should be dropped and retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol violation: {0}")]
pub(crate) struct ProtocolViolation(pub String);

/// Acks to send now; if `persist_seen`, save the seen ids *before* sending them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AckBatch {
    pub frame: ClientFrame,
    pub persist_seen: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Session {
    Offline,
    AwaitingWelcome,
    Ready { device_id: String },
}

#[derive(Debug)]
pub(crate) struct Machine {
    credential: Option<DeviceCredential>,
    client_ids: Vec<String>,
    seen: SeenIds,
    seen_dirty: bool,
    pending_acks: Vec<String>,
    queued_reports: VecDeque<ClientFrame>,
    /// `delete_token` requests made offline; sent after the next welcome, before the
    /// `get_token`s, so that the server answers with a fresh token.
    queued_deletes: Vec<String>,
    session: Session,
}

impl Machine {
    pub fn new(
        credential: Option<DeviceCredential>,
        client_ids: Vec<String>,
        seen: SeenIds,
    ) -> Self {
        Machine {
            credential,
            client_ids,
            seen,
            seen_dirty: false,
            pending_acks: Vec::new(),
            queued_reports: VecDeque::new(),
            queued_deletes: Vec::new(),
            session: Session::Offline,
        }
    }

    /// A socket is open: the `hello` to send first.
    pub fn on_connected(&mut self) -> ClientFrame {
        self.session = Session::AwaitingWelcome;
        self.pending_acks.clear();
        ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            device: self.credential.clone(),
        }
    }

    /// The socket is gone. Unsent acks are dropped: the server redelivers unacked
    /// messages, and the seen ids turn the redelivery into a bare ack.
    pub fn on_disconnected(&mut self) {
        self.session = Session::Offline;
        self.pending_acks.clear();
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.session, Session::Ready { .. })
    }

    pub fn seen(&self) -> &SeenIds {
        &self.seen
    }

    pub fn seen_is_dirty(&self) -> bool {
        self.seen_dirty
    }

    pub fn mark_seen_persisted(&mut self) {
        self.seen_dirty = false;
    }

    pub fn on_frame(
        &mut self,
        frame: ServerFrame,
        server: &str,
    ) -> Result<Vec<Effect>, ProtocolViolation> {
        match (&self.session, frame) {
            (
                Session::AwaitingWelcome,
                ServerFrame::Welcome {
                    version,
                    device_id,
                    secret,
                    ..
                },
            ) => self.on_welcome(version, device_id, secret, server),
            (_, ServerFrame::Error { code, message, re }) => {
                Ok(vec![Effect::Emit(DeviceEvent::Error { code, message, re })])
            }
            (Session::Ready { .. }, ServerFrame::Token { client_id, token }) => {
                Ok(vec![Effect::Emit(DeviceEvent::Token { client_id, token })])
            }
            (Session::Ready { .. }, ServerFrame::TokenDeleted { client_id }) => {
                Ok(vec![Effect::Emit(DeviceEvent::TokenDeleted { client_id })])
            }
            (Session::Ready { .. }, ServerFrame::Message(message)) => Ok(self.on_message(message)),
            (
                Session::Ready { .. },
                ServerFrame::Revoke {
                    id,
                    client_id,
                    notify_id,
                    ..
                },
            ) => Ok(self.on_revoke(id, client_id, notify_id)),
            (Session::Ready { .. }, ServerFrame::Welcome { .. }) => {
                Err(ProtocolViolation("a second welcome".into()))
            }
            (Session::AwaitingWelcome, other) => Err(ProtocolViolation(format!(
                "{} before welcome",
                frame_type(&other)
            ))),
            (Session::Offline, other) => Err(ProtocolViolation(format!(
                "{} while offline",
                frame_type(&other)
            ))),
        }
    }

    fn on_welcome(
        &mut self,
        version: u32,
        device_id: String,
        secret: Option<String>,
        server: &str,
    ) -> Result<Vec<Effect>, ProtocolViolation> {
        if version != PROTOCOL_VERSION {
            return Err(ProtocolViolation(format!(
                "server speaks protocol version {version}, this device {PROTOCOL_VERSION}"
            )));
        }
        let mut effects = Vec::new();
        let registered = match (secret, &self.credential) {
            (Some(secret), _) => {
                let credential = DeviceCredential {
                    id: device_id.clone(),
                    secret,
                };
                self.credential = Some(credential.clone());
                effects.push(Effect::SaveCredential(credential));
                true
            }
            (None, Some(known)) if known.id == device_id => false,
            (None, Some(known)) => {
                return Err(ProtocolViolation(format!(
                    "welcome for device {device_id}, but this is device {}",
                    known.id
                )));
            }
            (None, None) => {
                return Err(ProtocolViolation(
                    "welcome for a new device without its secret".into(),
                ));
            }
        };
        self.session = Session::Ready {
            device_id: device_id.clone(),
        };
        effects.push(Effect::Emit(DeviceEvent::Connected {
            device_id,
            server: server.to_owned(),
            registered,
        }));
        effects.extend(
            self.queued_deletes
                .drain(..)
                .map(|client_id| Effect::Send(ClientFrame::DeleteToken { client_id })),
        );
        effects.extend(self.client_ids.iter().map(|client_id| {
            Effect::Send(ClientFrame::GetToken {
                client_id: client_id.clone(),
            })
        }));
        effects.extend(self.queued_reports.drain(..).map(Effect::Send));
        Ok(effects)
    }

    fn on_message(&mut self, message: DeviceMessage) -> Vec<Effect> {
        self.pending_acks.push(message.id.clone());
        if !self.seen.insert(message.id.clone()) {
            tracing::debug!(message_id = %message.id, "Duplicate message dropped.");
            return Vec::new();
        }
        self.seen_dirty = true;
        vec![Effect::Emit(DeviceEvent::Message(message))]
    }

    /// A revoke command: acked and de-duplicated like a message.
    fn on_revoke(&mut self, id: String, client_id: String, notify_id: u32) -> Vec<Effect> {
        self.pending_acks.push(id.clone());
        if !self.seen.insert(id) {
            return Vec::new();
        }
        self.seen_dirty = true;
        vec![Effect::Emit(DeviceEvent::Revoke {
            client_id,
            notify_id,
        })]
    }

    pub fn has_pending_acks(&self) -> bool {
        !self.pending_acks.is_empty()
    }

    /// The acks gathered since the last call, as one frame.
    pub fn take_acks(&mut self) -> Option<AckBatch> {
        if self.pending_acks.is_empty() || !self.is_ready() {
            return None;
        }
        Some(AckBatch {
            frame: ClientFrame::Ack {
                ids: std::mem::take(&mut self.pending_acks),
            },
            persist_seen: self.seen_dirty,
        })
    }

    /// A report from the embedder: the frame to send now, or `None` if it was queued
    /// until the next welcome.
    pub fn report(
        &mut self,
        id: String,
        status: ReportStatus,
        code: Option<u32>,
    ) -> Option<ClientFrame> {
        let frame = ClientFrame::Report { id, status, code };
        if self.is_ready() {
            return Some(frame);
        }
        if self.queued_reports.len() >= MAX_QUEUED_REPORTS {
            self.queued_reports.pop_front();
        }
        self.queued_reports.push_back(frame);
        None
    }

    /// Adds an app to the device: the `get_token` to send now, or `None` if it goes out
    /// with the next welcome. Tokens are requested again after every reconnect.
    pub fn add_app(&mut self, client_id: String) -> Option<ClientFrame> {
        if !self.client_ids.contains(&client_id) {
            self.client_ids.push(client_id.clone());
        }
        self.is_ready()
            .then_some(ClientFrame::GetToken { client_id })
    }

    /// Deletes an app's token: the frame to send now, or `None` if it goes out with the
    /// next welcome (before that welcome's `get_token`s).
    pub fn delete_token(&mut self, client_id: String) -> Option<ClientFrame> {
        if self.is_ready() {
            return Some(ClientFrame::DeleteToken { client_id });
        }
        if !self.queued_deletes.contains(&client_id) {
            self.queued_deletes.push(client_id);
        }
        None
    }
}

fn frame_type(frame: &ServerFrame) -> &'static str {
    match frame {
        ServerFrame::Welcome { .. } => "welcome",
        ServerFrame::Token { .. } => "token",
        ServerFrame::TokenDeleted { .. } => "token_deleted",
        ServerFrame::Message(_) => "message",
        ServerFrame::Revoke { .. } => "revoke",
        ServerFrame::Error { .. } => "error",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn welcome(device_id: &str, secret: Option<&str>) -> ServerFrame {
        ServerFrame::Welcome {
            version: PROTOCOL_VERSION,
            device_id: device_id.into(),
            secret: secret.map(Into::into),
            server_time: 0,
        }
    }

    fn message(id: &str) -> ServerFrame {
        ServerFrame::Message(DeviceMessage {
            id: id.into(),
            client_id: "app".into(),
            token: "tok".into(),
            push_type: 0,
            request_id: "r".into(),
            sent_at: 0,
            expires_at: 0,
            payload: serde_json::json!({}),
            test: false,
            bi_tag: None,
            reminder: None,
            background_mode: None,
        })
    }

    fn ready_machine() -> Machine {
        let mut m = Machine::new(None, vec!["app".into()], SeenIds::new(10));
        m.on_connected();
        m.on_frame(welcome("d1", Some("s1")), "ws://x").unwrap();
        m
    }

    #[test]
    fn registration_saves_the_secret_before_anything_else() {
        let mut m = Machine::new(None, vec!["a".into(), "b".into()], SeenIds::new(10));
        assert_eq!(
            m.on_connected(),
            ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                device: None
            }
        );
        let effects = m.on_frame(welcome("d1", Some("s1")), "ws://x").unwrap();
        let credential = DeviceCredential {
            id: "d1".into(),
            secret: "s1".into(),
        };
        assert_eq!(effects[0], Effect::SaveCredential(credential.clone()));
        assert!(matches!(
            &effects[1],
            Effect::Emit(DeviceEvent::Connected {
                registered: true,
                ..
            })
        ));
        assert_eq!(
            effects[2..],
            [
                Effect::Send(ClientFrame::GetToken {
                    client_id: "a".into()
                }),
                Effect::Send(ClientFrame::GetToken {
                    client_id: "b".into()
                }),
            ]
        );
        // The next connection presents the credential.
        m.on_disconnected();
        assert_eq!(
            m.on_connected(),
            ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                device: Some(credential)
            }
        );
    }

    #[test]
    fn a_welcome_for_another_device_is_a_violation() {
        let cred = DeviceCredential {
            id: "d1".into(),
            secret: "s".into(),
        };
        let mut m = Machine::new(Some(cred), vec![], SeenIds::new(10));
        m.on_connected();
        assert!(m.on_frame(welcome("d2", None), "ws://x").is_err());
        m.on_connected();
        assert!(m.on_frame(welcome("d1", None), "ws://x").is_ok());
    }

    #[test]
    fn messages_before_welcome_are_a_violation() {
        let mut m = Machine::new(None, vec![], SeenIds::new(10));
        m.on_connected();
        assert!(m.on_frame(message("m1"), "ws://x").is_err());
    }

    #[test]
    fn duplicates_are_acked_but_emitted_once() {
        let mut m = ready_machine();
        let first = m.on_frame(message("m1"), "ws://x").unwrap();
        assert!(matches!(&first[..], [Effect::Emit(DeviceEvent::Message(msg))] if msg.id == "m1"));
        let second = m.on_frame(message("m1"), "ws://x").unwrap();
        assert!(second.is_empty());
        let batch = m.take_acks().unwrap();
        assert_eq!(
            batch.frame,
            ClientFrame::Ack {
                ids: vec!["m1".into(), "m1".into()]
            }
        );
        assert!(batch.persist_seen);
        m.mark_seen_persisted();
        assert!(m.take_acks().is_none());

        // A redelivery after a reconnect is acked and not emitted, and needs no persisting.
        m.on_disconnected();
        m.on_connected();
        m.on_frame(welcome("d1", None), "ws://x").unwrap();
        assert!(m.on_frame(message("m1"), "ws://x").unwrap().is_empty());
        assert!(!m.take_acks().unwrap().persist_seen);
    }

    #[test]
    fn reports_made_offline_go_out_after_the_next_welcome() {
        let mut m = ready_machine();
        m.on_disconnected();
        assert!(m.report("m1".into(), ReportStatus::Shown, None).is_none());
        m.on_connected();
        let effects = m.on_frame(welcome("d1", None), "ws://x").unwrap();
        assert_eq!(
            effects.last(),
            Some(&Effect::Send(ClientFrame::Report {
                id: "m1".into(),
                status: ReportStatus::Shown,
                code: None
            }))
        );
        assert!(m.report("m2".into(), ReportStatus::Clicked, None).is_some());
    }
}
