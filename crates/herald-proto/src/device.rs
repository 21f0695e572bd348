//! Herald's device protocol, version 1: JSON text frames over one WebSocket per device.
//!
//! `docs/protocol.md` is the prose form of this module; a test in `herald-server` checks
//! that every frame type named here is documented there. Frames are objects with a
//! `type` field. Unknown fields are ignored so that either side can grow.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The path of the WebSocket endpoint, relative to the server's base URL.
pub const WS_PATH: &str = "/device/ws";

/// The largest frame either side may send, in bytes. Push Kit messages are at most 4096
/// bytes of payload; the envelope adds little.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// WebSocket close codes Herald uses (RFC 6455 §7.4.1 plus the 4000–4999 private range).
pub mod close {
    /// Normal closure (server shutting down or client leaving).
    pub const NORMAL: u16 = 1000;
    /// Server going away (graceful shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// A binary frame: the protocol is JSON text only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame that is not valid JSON or not a known frame.
    pub const INVALID_FRAME: u16 = 1007;
    /// A frame sent out of order (e.g. anything before `hello`).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame larger than [`super::MAX_FRAME_BYTES`].
    pub const TOO_BIG: u16 = 1009;
    /// The device id / secret pair was not recognised.
    pub const BAD_CREDENTIALS: u16 = 4001;
    /// The client speaks a protocol version this server does not.
    pub const UNSUPPORTED_VERSION: u16 = 4002;
    /// The server failed internally (e.g. its store); the client should reconnect later.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The client did not say `hello` in time.
    pub const HELLO_TIMEOUT: u16 = 4003;
    /// Another connection identified as the same device; this one is replaced.
    pub const REPLACED: u16 = 4004;
    /// The server is limiting this address (e.g. too many new devices); reconnect after
    /// a backoff.
    pub const TRY_AGAIN_LATER: u16 = 1013;

    /// Every close code above, for documentation checks.
    pub const ALL: [u16; 12] = [
        NORMAL,
        GOING_AWAY,
        UNSUPPORTED_DATA,
        INVALID_FRAME,
        POLICY_VIOLATION,
        TOO_BIG,
        INTERNAL_ERROR,
        BAD_CREDENTIALS,
        UNSUPPORTED_VERSION,
        HELLO_TIMEOUT,
        REPLACED,
        TRY_AGAIN_LATER,
    ];
}

/// Frames a device sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// First frame. Without `device` the server registers a new device and returns its
    /// credential once in `welcome`.
    Hello {
        version: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<DeviceCredential>,
    },
    /// Ask for the push token of one app on this device. Same device and app → same token.
    GetToken { client_id: String },
    /// Delete the app's push token (ArkTS `deleteToken`): sends to it are dropped with
    /// receipt 5 from now on, and the next `get_token` returns a new token.
    DeleteToken { client_id: String },
    /// Acknowledge received messages by id; unacknowledged ones are redelivered after a
    /// reconnect.
    Ack { ids: Vec<String> },
    /// What the device did with a message (shown, suppressed, clicked).
    Report {
        id: String,
        status: ReportStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u32>,
    },
}

/// The credential a device receives at registration and presents on every `hello`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCredential {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for DeviceCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCredential")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Device-side outcomes of a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Shown to the user (or handed to the app).
    Shown,
    /// Not shown; `code` is the Push Kit receipt code (6 switch off, 144 profile mismatch…).
    Suppressed,
    /// Tapped by the user.
    Clicked,
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Answer to `hello`. `secret` is present only when the device was just registered.
    Welcome {
        version: u32,
        device_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        /// Server time, milliseconds since the Unix epoch.
        server_time: i64,
    },
    /// Answer to `get_token`.
    Token { client_id: String, token: String },
    /// Answer to `delete_token`: the app has no token on this device any more.
    TokenDeleted { client_id: String },
    /// A message for one of the device's apps.
    Message(DeviceMessage),
    /// The sender withdrew the notification `notify_id` of this app (`messages:revoke`):
    /// remove it from the notification list unless it was tapped. Acknowledged like a
    /// message, by `id`.
    Revoke {
        id: String,
        client_id: String,
        token: String,
        notify_id: u32,
    },
    /// A request could not be served; the connection stays open.
    Error {
        /// Stable, snake_case reason, e.g. `unknown_app`.
        code: String,
        message: String,
        /// The `type` of the frame this answers, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        re: Option<String>,
    },
}

/// One message for one token, as the device receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceMessage {
    /// Unique per (message, token); the device de-duplicates on it.
    pub id: String,
    pub client_id: String,
    pub token: String,
    pub push_type: u8,
    /// The `requestId` of the send that carried it.
    pub request_id: String,
    /// Milliseconds since the Unix epoch.
    pub sent_at: i64,
    pub expires_at: i64,
    /// The Push Kit payload, normalised (effective category, resolved `notifyId`).
    pub payload: Value,
    #[serde(default)]
    pub test: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bi_tag: Option<String>,
    /// For notifications: how the device reminds the user, decided by the effective
    /// category (`silent` for MARKETING, `alert` for Service & Communication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder: Option<Reminder>,
    /// For background messages (push-type 6): the effective `backgroundMode`; `1` (an IM
    /// background message) only when the app holds the `IM_BACKGROUND` right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_mode: Option<u8>,
}

/// How a notification reminds the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reminder {
    /// Notification centre only, no sound (MARKETING).
    Silent,
    /// Lock screen, banner, sound and vibration (PLAY_VOICE: no ringtone).
    Alert,
}

/// Frame type names, for the protocol-document test.
pub const CLIENT_FRAME_TYPES: [&str; 5] = ["hello", "get_token", "delete_token", "ack", "report"];
/// Frame type names, for the protocol-document test.
pub const SERVER_FRAME_TYPES: [&str; 6] = [
    "welcome",
    "token",
    "token_deleted",
    "message",
    "revoke",
    "error",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_tagged_by_type() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"get_token","client_id":"1"}"#).expect("valid frame");
        assert_eq!(
            f,
            ClientFrame::GetToken {
                client_id: "1".into()
            }
        );
        let s = serde_json::to_value(ServerFrame::Token {
            client_id: "1".into(),
            token: "t".into(),
        })
        .expect("serialises");
        assert_eq!(s["type"], "token");
    }

    #[test]
    fn hello_without_device_registers() {
        let f: ClientFrame = serde_json::from_str(r#"{"type":"hello","version":1}"#).unwrap();
        assert_eq!(
            f,
            ClientFrame::Hello {
                version: 1,
                device: None
            }
        );
    }
}
