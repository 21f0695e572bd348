//! Push Kit v3 REST JSON: the send and revoke request bodies and the response envelope.
//!
//! DTOs here are deliberately permissive (numbers are `i64`, enums are strings) so that a
//! bad value reaches `herald-core`'s validation and gets Push Kit's business code with a
//! precise tip, instead of a generic deserialisation error. Unknown fields are ignored,
//! as Push Kit does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Code;

/// `POST /v3/{projectId}/messages:send` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    /// Shape depends on the `push-type` header; parsed by core per type.
    pub payload: Option<Value>,
    pub target: Option<Target>,
    pub push_options: Option<PushOptions>,
}

/// `target`: v3 knows only tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Target {
    pub token: Option<Vec<String>>,
}

/// `pushOptions` (reference §2.2).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushOptions {
    pub test_message: Option<bool>,
    pub ttl: Option<Value>,
    pub bi_tag: Option<String>,
    pub receipt_id: Option<String>,
    pub collapse_key: Option<i64>,
    pub background_mode: Option<i64>,
}

/// `payload` of push-type 0: `{"notification": {...}}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AlertPayload {
    pub notification: Option<Notification>,
}

/// `Notification` (reference §2.4). Also the shape forwarded to devices, normalised.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub big_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub big_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox_content: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub click_action: Option<ClickAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub badge: Option<Badge>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sound: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sound_duration: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub foreground_show: Option<bool>,
}

/// `ClickAction` (reference §2.4.1).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClickAction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_type: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
}

/// `Badge`: `addNum` 1..99, `setNum` 0..99 (`setNum` wins).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Badge {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_num: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_num: Option<i64>,
}

/// `POST /v1/{clientId}/messages:revoke` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeRequest {
    pub notify_id: Option<i64>,
    pub token: Option<Vec<String>>,
}

/// The response envelope of every Push Kit endpoint: `code` is a string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResponse {
    pub code: String,
    pub msg: String,
    pub request_id: String,
}

impl ApiResponse {
    pub fn new(code: Code, msg: impl Into<String>, request_id: impl Into<String>) -> Self {
        ApiResponse {
            code: code.as_str().to_owned(),
            msg: msg.into(),
            request_id: request_id.into(),
        }
    }
}

/// `POST /v1/{clientId}/images:verify` and `/v2/{projectId}/images:verify` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageVerifyRequest {
    pub image_url: Option<Value>,
}

/// The `images:verify` answer: the envelope, plus `downloadUrl` and `expireTime` (Unix
/// seconds, a string) on `83010000` — in the reference example's key order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageVerifyResponse {
    pub code: String,
    pub msg: String,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<String>,
}

/// Per-token failure reasons (the keys of `illegalTokens`, reference §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TokenFailure {
    TokenFormatError,
    NoRight,
    NoPushTypeRight,
    NotSupportPlayVoice,
    NoRightToSendThisLiveNotificationEvent,
    AppinfoError,
}

/// What `msg` holds, serialised, when tokens fail. Some failed (80100000, 80100020):
/// `{"illegalTokens":{reason:[tokens]},"success":n,"failure":n}`; all failed (80300007):
/// `{"failure":n,"illegalTokens":{reason:[tokens]}}` — each as the reference's example
/// writes it, key order included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenFailures {
    pub illegal_tokens: BTreeMap<TokenFailure, Vec<String>>,
    #[serde(default)]
    pub success: usize,
    pub failure: usize,
}

/// The all-failed shape of [`TokenFailures`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AllFailed<'a> {
    failure: usize,
    illegal_tokens: &'a BTreeMap<TokenFailure, Vec<String>>,
}

impl TokenFailures {
    pub fn add(&mut self, reason: TokenFailure, token: impl Into<String>) {
        self.illegal_tokens
            .entry(reason)
            .or_default()
            .push(token.into());
        self.failure += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.failure == 0
    }

    /// The `msg` string: the object serialised into JSON text, in the all-failed shape
    /// when no token succeeded.
    pub fn to_msg(&self) -> String {
        let text = if self.success == 0 {
            serde_json::to_string(&AllFailed {
                failure: self.failure,
                illegal_tokens: &self.illegal_tokens,
            })
        } else {
            serde_json::to_string(self)
        };
        text.unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_failures_serialise_as_push_kit_does() {
        let mut f = TokenFailures {
            success: 1,
            ..Default::default()
        };
        f.add(TokenFailure::TokenFormatError, "abc");
        assert_eq!(
            f.to_msg(),
            r#"{"illegalTokens":{"tokenFormatError":["abc"]},"success":1,"failure":1}"#
        );
    }

    #[test]
    fn all_failed_is_written_as_the_reference_example() {
        let mut f = TokenFailures::default();
        f.add(TokenFailure::NoRight, "a");
        f.add(TokenFailure::NoRight, "b");
        assert_eq!(
            f.to_msg(),
            r#"{"failure":2,"illegalTokens":{"noRight":["a","b"]}}"#
        );
        let back: TokenFailures = serde_json::from_str(&f.to_msg()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn image_verify_success_keeps_the_example_key_order() {
        let r = ImageVerifyResponse {
            code: "83010000".into(),
            msg: "Verify success".into(),
            request_id: "1".into(),
            download_url: Some("https://x/y.png?verifyKey=k".into()),
            expire_time: Some("1689911616".into()),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"code":"83010000","msg":"Verify success","requestId":"1","downloadUrl":"https://x/y.png?verifyKey=k","expireTime":"1689911616"}"#
        );
    }

    #[test]
    fn response_code_is_a_string() {
        let r = ApiResponse::new(Code::Success, "Success", "1");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["code"], "80000000");
        assert_eq!(v["requestId"], "1");
    }
}
