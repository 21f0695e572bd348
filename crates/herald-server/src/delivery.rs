//! The one place a message becomes the frame a device receives, for the live path and
//! the backlog path alike: [`prepare`] applies the effective category and serialises
//! everything the tokens of a message share, once; [`Prepared::frame`] adds the
//! per-delivery fields (id, app, token) around it for each device.

use herald_core::Category;
use herald_core::rights::{Reminder, plays_sound};
use herald_proto::device::{self, ServerFrame};
use herald_store::{DeliveryId, StoredDelivery};
use serde::Serialize;
use serde_json::Value;

/// What every token of a message shares.
#[derive(Debug, Clone)]
pub struct MessageTemplate<'a> {
    pub request_id: &'a str,
    pub push_type: u8,
    pub sent_at: i64,
    pub expires_at: i64,
    /// The normalised Push Kit payload.
    pub payload: &'a Value,
    pub test: bool,
    pub bi_tag: Option<&'a str>,
}

/// A message frame without its per-delivery fields, serialised once.
#[derive(Debug)]
pub struct Prepared {
    /// The frame's JSON from its first shared field to the closing brace.
    tail: String,
    pub expires_at: i64,
}

/// The frame's shared fields, in the order `DeviceMessage` serialises them.
#[derive(Serialize)]
struct Tail<'a> {
    push_type: u8,
    request_id: &'a str,
    sent_at: i64,
    expires_at: i64,
    payload: &'a Value,
    test: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    bi_tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reminder: Option<device::Reminder>,
    #[serde(skip_serializing_if = "Option::is_none")]
    background_mode: Option<u8>,
}

/// Apply a delivery's effective category to the payload: the notification shows that
/// category, MARKETING (and PLAY_VOICE's ringtone) drop the custom `sound`; returns how
/// the device reminds the user.
fn apply_category(payload: &mut Value, category: Option<Category>) -> Option<device::Reminder> {
    let category = category?;
    if let Some(n) = payload
        .get_mut("notification")
        .and_then(Value::as_object_mut)
    {
        n.insert(
            "category".into(),
            Value::String(category.as_str().to_owned()),
        );
        if !plays_sound(category) {
            n.remove("sound");
            n.remove("soundDuration");
        }
    }
    Some(match Reminder::for_category(category) {
        Reminder::Silent => device::Reminder::Silent,
        Reminder::Alert => device::Reminder::Alert,
    })
}

/// Serialise what the tokens of a message with this effective category and background
/// mode share.
pub fn prepare(
    t: &MessageTemplate<'_>,
    category: Option<Category>,
    background_mode: Option<u8>,
) -> Prepared {
    let mut payload = t.payload.clone();
    let reminder = apply_category(&mut payload, category);
    let tail = Tail {
        push_type: t.push_type,
        request_id: t.request_id,
        sent_at: t.sent_at,
        expires_at: t.expires_at,
        payload: &payload,
        test: t.test,
        bi_tag: t.bi_tag,
        reminder,
        background_mode,
    };
    // Serialising plain data into a String cannot fail.
    let json = serde_json::to_string(&tail).unwrap_or_else(|_| "{}".to_owned());
    Prepared {
        tail: json.strip_prefix('{').unwrap_or(&json).to_owned(),
        expires_at: t.expires_at,
    }
}

/// Append `s` as a JSON string. Tokens and client ids need no escaping, so the common
/// case is a plain copy; serde_json escapes exactly the bytes checked here.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned()));
    }
}

impl Prepared {
    /// The `message` frame for one delivery.
    pub fn frame(&self, id: DeliveryId, client_id: &str, token: &str) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(80 + client_id.len() + token.len() + self.tail.len());
        out.push_str(r#"{"type":"message","id":""#);
        // Writing into a String cannot fail.
        let _ = write!(out, "{id}");
        out.push_str(r#"","client_id":"#);
        push_json_str(&mut out, client_id);
        out.push_str(r#","token":"#);
        push_json_str(&mut out, token);
        out.push(',');
        out.push_str(&self.tail);
        out
    }
}

/// The frame text of a stored delivery: a revoke command or a message.
pub fn stored_frame(d: &StoredDelivery) -> Option<String> {
    if d.kind == herald_store::MessageKind::Revoke {
        let frame = ServerFrame::Revoke {
            id: d.id.to_string(),
            client_id: d.client_id.clone(),
            token: d.token.clone(),
            notify_id: d.notify_id.unwrap_or_default(),
        };
        return serde_json::to_string(&frame).ok();
    }
    let payload: Value = match serde_json::from_str(&d.payload) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, message_id = %d.id, "Stored payload is not JSON.");
            return None;
        }
    };
    let template = MessageTemplate {
        request_id: &d.request_id,
        push_type: d.push_type,
        sent_at: d.created_at,
        expires_at: d.expires_at,
        payload: &payload,
        test: d.test,
        bi_tag: d.bi_tag.as_deref(),
    };
    Some(prepare(&template, d.category, d.background_mode).frame(d.id, &d.client_id, &d.token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::device::DeviceMessage;

    #[test]
    fn a_prepared_frame_is_the_frame_serde_would_write() {
        let payload = serde_json::json!({"notification": {"title": "t\"q", "body": "b",
            "category": "IM", "sound": "/raw/ring.mp3", "notifyId": 7}});
        let t = MessageTemplate {
            request_id: "1764403200000123456",
            push_type: 0,
            sent_at: 10,
            expires_at: 20,
            payload: &payload,
            test: true,
            bi_tag: Some("tag"),
        };
        let id = DeliveryId {
            message: 12,
            token: 34,
        };
        let text =
            prepare(&t, Some(Category::Marketing), None).frame(id, "100", "tok\u{e9}n\"\\\n");
        let parsed: ServerFrame = serde_json::from_str(&text).expect("a valid frame");
        let mut expected_payload = payload.clone();
        let n = expected_payload["notification"]
            .as_object_mut()
            .expect("object");
        n.insert("category".into(), "MARKETING".into());
        n.remove("sound");
        assert_eq!(
            parsed,
            ServerFrame::Message(DeviceMessage {
                id: "12.34".into(),
                client_id: "100".into(),
                token: "tok\u{e9}n\"\\\n".into(),
                push_type: 0,
                request_id: "1764403200000123456".into(),
                sent_at: 10,
                expires_at: 20,
                payload: expected_payload,
                test: true,
                bi_tag: Some("tag".into()),
                reminder: Some(device::Reminder::Silent),
                background_mode: None,
            })
        );
    }
}
