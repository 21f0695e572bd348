//! Parsing a `messages:send` request into validated domain types (reference §2, §3, §10).
//!
//! The order of checks mirrors Push Kit's observed precedence: `push-type` header → JSON
//! shape → body size (tokens excluded) → token count → options → payload schema. Per-token
//! checks (format, ownership) happen later, with the token index at hand.

use std::str::FromStr;

use herald_proto::Code;
use herald_proto::push::{self, SendRequest};
use serde_json::Value;

use crate::Category;
pub use crate::payloads::{Background, FormImage, FormUpdate, LiveOp, LiveView};
use crate::payloads::{parse_background, parse_form, parse_live_view, parse_voice, parse_voip};

/// Largest body Push Kit accepts, tokens excluded.
pub const MAX_BODY_BYTES: usize = 4096;
/// Most tokens in one request.
pub const MAX_TOKENS: usize = 1000;
/// Most tokens in one test request.
pub const MAX_TEST_TOKENS: usize = 10;
/// Default offline cache time.
pub const DEFAULT_TTL_SECS: u32 = 86_400;
/// Longest offline cache time (15 days).
pub const MAX_TTL_SECS: u32 = 1_296_000;

/// A request rejected as a whole, with the business code and `msg` to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {msg}")]
pub struct Rejection {
    pub code: Code,
    pub msg: String,
}

impl Rejection {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Rejection {
            code,
            msg: msg.into(),
        }
    }

    /// `80100003 "Illegal payload, <tip>"`.
    pub fn payload(tip: impl std::fmt::Display) -> Self {
        Rejection::new(Code::IllegalPayload, format!("Illegal payload, {tip}"))
    }

    fn parameter(tip: impl std::fmt::Display) -> Self {
        Rejection::new(
            Code::ParameterError,
            format!("Check Parameter Error, {tip}"),
        )
    }
}

/// The `push-type` header values of Push Kit v3 (reference §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushType {
    Alert,
    Form,
    Voice,
    Background,
    LiveView,
    Voip,
}

impl PushType {
    pub fn as_u8(self) -> u8 {
        match self {
            PushType::Alert => 0,
            PushType::Form => 1,
            PushType::Voice => 2,
            PushType::Background => 6,
            PushType::LiveView => 7,
            PushType::Voip => 10,
        }
    }

    /// Parse the header value; a missing or unknown value is `80100003`.
    pub fn from_header(value: Option<&str>) -> Result<PushType, Rejection> {
        let invalid = || Rejection::payload("The header does not contain valid push-type");
        match value.map(str::trim).ok_or_else(invalid)? {
            "0" => Ok(PushType::Alert),
            "1" => Ok(PushType::Form),
            "2" => Ok(PushType::Voice),
            "6" => Ok(PushType::Background),
            "7" => Ok(PushType::LiveView),
            "10" => Ok(PushType::Voip),
            _ => Err(invalid()),
        }
    }
}

/// `pushOptions`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOptions {
    pub ttl_secs: u32,
    /// `None` = cache all (`-1`); `Some(k)` = keep only the newest queued message of group `k`.
    pub collapse_key: Option<u8>,
    pub bi_tag: Option<String>,
    pub receipt_id: Option<String>,
    pub test: bool,
    /// push-type 6 only: `1` = IM background message (needs `IM_BACKGROUND`, ≤ 2/hour).
    pub im_background: bool,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            ttl_secs: DEFAULT_TTL_SECS,
            collapse_key: None,
            bi_tag: None,
            receipt_id: None,
            test: false,
            im_background: false,
        }
    }
}

impl SendOptions {
    /// The instant (ms) a message sent at `sent_at_ms` stops being deliverable: exactly
    /// its TTL later, never more (a TTL is only ever shortened, never extended).
    pub fn expires_at(&self, sent_at_ms: i64) -> i64 {
        sent_at_ms.saturating_add(i64::from(self.ttl_secs) * 1000)
    }
}

/// A parsed send request: what to send, to which token strings, how.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSend {
    pub push_type: PushType,
    pub tokens: Vec<String>,
    pub options: SendOptions,
    pub payload: Payload,
}

/// The payload, per push type.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// push-type 0 with a displayable notification.
    Alert(Box<Notification>),
    /// push-type 0 with only `notification.badge`: a badge refresh (needs the IM right).
    Badge(BadgeChange),
    /// push-type 1: a widget refresh.
    Form(Box<FormUpdate>),
    /// push-type 2: a text-to-speech notification (`PLAY_VOICE`) with its extension data.
    Voice {
        notification: Box<Notification>,
        extra_data: String,
    },
    /// push-type 6: a background message.
    Background(Background),
    /// push-type 7: a Live View operation.
    LiveView(Box<LiveView>),
    /// push-type 10: a VoIP call.
    Voip { extra_data: String },
}

impl Payload {
    /// The notification's category, for payloads that have one.
    pub fn category(&self) -> Option<Category> {
        match self {
            Payload::Alert(n) => Some(n.category),
            Payload::Voice { notification, .. } => Some(notification.category),
            _ => None,
        }
    }

    /// The notification shown, for the push types that show one.
    pub fn notification(&self) -> Option<&Notification> {
        match self {
            Payload::Alert(n)
            | Payload::Voice {
                notification: n, ..
            } => Some(n),
            _ => None,
        }
    }

    /// The payload as devices receive it: Push Kit's shape, normalised (a notification
    /// gets its resolved `notifyId`).
    pub fn to_device_json(&self, notify_id: NotifyId) -> Value {
        use serde_json::json;
        match self {
            Payload::Alert(n) => json!({ "notification": n.to_wire(notify_id) }),
            Payload::Badge(b) => json!({ "notification": { "badge": match b {
                BadgeChange::Add(n) => json!({ "addNum": n }),
                BadgeChange::Set(n) => json!({ "setNum": n }),
            }}}),
            Payload::Voice {
                notification,
                extra_data,
            } => json!({
                "notification": notification.to_wire(notify_id),
                "extraData": extra_data,
            }),
            Payload::Form(f) => json!({
                "formId": f.form_id,
                "version": f.version,
                "moduleName": f.module_name,
                "formName": f.form_name,
                "abilityName": f.ability_name,
                "formData": f.form_data,
                "images": f.images.iter().map(|i| json!({
                    "keyName": i.key_name, "url": i.url, "require": u8::from(i.require),
                })).collect::<Vec<_>>(),
            }),
            Payload::Background(b) => {
                let mut v = json!({ "extraData": b.extra_data });
                if b.proxy {
                    v["proxyData"] = json!("ENABLE");
                }
                v
            }
            Payload::LiveView(l) => {
                let mut v = json!({
                    "activityId": l.activity_id,
                    "operation": l.operation.as_u8(),
                    "event": l.event,
                    "status": l.status,
                    "version": l.version,
                    "mute": l.mute,
                    "activityData": l.activity_data,
                });
                if let Some(title) = &l.fallback.title {
                    v["title"] = json!(title);
                }
                if let Some(content) = &l.fallback.content {
                    v["content"] = json!(content);
                }
                v
            }
            Payload::Voip { extra_data } => json!({ "extraData": extra_data }),
        }
    }
}

/// The `notifyId` a notification displays under.
pub type NotifyId = u32;
/// Largest `notifyId` (2^31 − 1).
pub const MAX_NOTIFY_ID: i64 = 2_147_483_647;

/// `actionType` of a tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickTarget {
    /// 0: the app's home (entry) ability.
    Home,
    /// 1: the ability whose `skills.actions` or `uris` match.
    Ability {
        action: Option<String>,
        uri: Option<String>,
    },
}

/// A validated `ClickAction`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickAction {
    pub target: ClickTarget,
    pub data: Option<serde_json::Map<String, Value>>,
}

/// `style` of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Style {
    Normal,
    /// 1 (deprecated): big text.
    BigText {
        big_title: String,
        big_body: String,
    },
    /// 3: inbox, up to three lines.
    Inbox(Vec<String>),
}

/// A validated badge change: `set` wins over `add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadgeChange {
    Add(u8),
    Set(u8),
}

/// A validated `Notification` (reference §2.4).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub category: Category,
    pub title: String,
    pub body: String,
    pub image: Option<String>,
    pub style: Style,
    /// `None` when absent or `-1`: the server assigns one.
    pub notify_id: Option<NotifyId>,
    pub app_message_id: Option<String>,
    pub profile_id: Option<String>,
    pub click_action: ClickAction,
    pub badge: Option<BadgeChange>,
    pub sound: Option<String>,
    pub sound_duration: Option<u8>,
    pub foreground_show: bool,
}

impl Notification {
    /// The wire form forwarded to devices: Push Kit's camelCase shape with the effective
    /// category and the resolved `notifyId`.
    pub fn to_wire(&self, notify_id: NotifyId) -> push::Notification {
        let (big_title, big_body, inbox) = match &self.style {
            Style::Normal => (None, None, None),
            Style::BigText {
                big_title,
                big_body,
            } => (Some(big_title.clone()), Some(big_body.clone()), None),
            Style::Inbox(lines) => (None, None, Some(lines.clone())),
        };
        let (action_type, action, uri) = match &self.click_action.target {
            ClickTarget::Home => (0, None, None),
            ClickTarget::Ability { action, uri } => (1, action.clone(), uri.clone()),
        };
        push::Notification {
            category: Some(self.category.as_str().to_owned()),
            title: Some(self.title.clone()),
            body: Some(self.body.clone()),
            image: self.image.clone(),
            style: Some(match self.style {
                Style::Normal => 0,
                Style::BigText { .. } => 1,
                Style::Inbox(_) => 3,
            }),
            big_title,
            big_body,
            notify_id: Some(i64::from(notify_id)),
            app_message_id: self.app_message_id.clone(),
            profile_id: self.profile_id.clone(),
            inbox_content: inbox,
            click_action: Some(push::ClickAction {
                action_type: Some(action_type),
                action,
                uri,
                data: self.click_action.data.clone(),
            }),
            badge: self.badge.map(|b| match b {
                BadgeChange::Add(n) => push::Badge {
                    add_num: Some(i64::from(n)),
                    set_num: None,
                },
                BadgeChange::Set(n) => push::Badge {
                    add_num: None,
                    set_num: Some(i64::from(n)),
                },
            }),
            sound: self.sound.clone(),
            sound_duration: self.sound_duration.map(i64::from),
            foreground_show: Some(self.foreground_show),
        }
    }
}

/// Parse and validate a whole send request body.
pub fn parse_send(push_type: PushType, body: &[u8]) -> Result<ParsedSend, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::parameter(format!("body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Rejection::parameter("body must be a JSON object"));
    }
    let request: SendRequest = serde_json::from_value(value)
        .map_err(|e| Rejection::parameter(format!("body does not match the schema: {e}")))?;

    let tokens = request
        .target
        .and_then(|t| t.token)
        .ok_or_else(|| Rejection::parameter("target.token is mandatory"))?;
    check_body_size(body.len(), &tokens)?;
    // A widget refresh goes to exactly one token.
    let max_tokens = if push_type == PushType::Form {
        1
    } else {
        MAX_TOKENS
    };
    check_token_count(tokens.len(), max_tokens)?;
    let mut options = parse_options(request.push_options.unwrap_or_default())?;
    // collapseKey only applies to notifications (0) and text-to-speech (2);
    // backgroundMode only to background messages (6).
    if !matches!(push_type, PushType::Alert | PushType::Voice) {
        options.collapse_key = None;
    }
    if push_type != PushType::Background {
        options.im_background = false;
    }
    if options.test && tokens.len() > MAX_TEST_TOKENS {
        return Err(Rejection::new(
            Code::TestTokenCountExceeded,
            Code::TestTokenCountExceeded.default_msg(),
        ));
    }
    let payload = request
        .payload
        .ok_or_else(|| Rejection::payload("payload is mandatory"))?;
    let payload = match push_type {
        PushType::Alert => parse_alert(payload)?,
        PushType::Form => Payload::Form(Box::new(parse_form(payload)?)),
        PushType::Voice => {
            let (notification, extra_data) = parse_voice(payload)?;
            Payload::Voice {
                notification: Box::new(notification),
                extra_data,
            }
        }
        PushType::Background => Payload::Background(parse_background(payload)?),
        PushType::LiveView => Payload::LiveView(Box::new(parse_live_view(payload)?)),
        PushType::Voip => Payload::Voip {
            extra_data: parse_voip(payload)?,
        },
    };
    Ok(ParsedSend {
        push_type,
        tokens,
        options,
        payload,
    })
}

/// The largest raw body worth reading: 4096 bytes of message plus the most tokens of the
/// longest well-formed shape. Anything larger is `80300008` without parsing.
pub const MAX_RAW_BODY: usize = MAX_BODY_BYTES + MAX_TOKENS * (crate::token::MAX_TOKEN_LEN + 3);

/// The 4096-byte limit applies to the body without the token strings (and their quotes
/// and separators). Shared by send and revoke.
pub fn check_body_size(body_len: usize, tokens: &[String]) -> Result<(), Rejection> {
    let token_bytes: usize = tokens.iter().map(|t| t.len() + 3).sum();
    if body_len.saturating_sub(token_bytes) > MAX_BODY_BYTES {
        return Err(Rejection::new(
            Code::MessageTooLong,
            Code::MessageTooLong.default_msg(),
        ));
    }
    Ok(())
}

/// `80300010` unless `1 <= count <= max`. Shared by send and revoke.
pub fn check_token_count(count: usize, max: usize) -> Result<(), Rejection> {
    if count == 0 || count > max {
        return Err(Rejection::new(
            Code::TokenCountOutOfRange,
            format!("token count should within 1 and {max}."),
        ));
    }
    Ok(())
}

fn parse_options(o: push::PushOptions) -> Result<SendOptions, Rejection> {
    let ttl_secs = match o.ttl {
        None | Some(Value::Null) => DEFAULT_TTL_SECS,
        Some(v) => parse_ttl(&v)?,
    };
    let collapse_key = match o.collapse_key {
        None | Some(-1) => None,
        Some(k @ 0..=100) => Some(k as u8),
        Some(k) => {
            return Err(Rejection::parameter(format!(
                "collapseKey must be -1 or within 0 and 100, got {k}"
            )));
        }
    };
    if let Some(tag) = &o.bi_tag
        && tag.len() > 64
    {
        return Err(Rejection::parameter("biTag must be at most 64 bytes"));
    }
    let im_background = match o.background_mode {
        None | Some(0) => false,
        Some(1) => true,
        Some(m) => {
            return Err(Rejection::parameter(format!(
                "backgroundMode must be 0 or 1, got {m}"
            )));
        }
    };
    Ok(SendOptions {
        ttl_secs,
        collapse_key,
        bi_tag: o.bi_tag.filter(|t| !t.is_empty()),
        receipt_id: o.receipt_id.filter(|r| !r.is_empty()),
        test: o.test_message.unwrap_or(false),
        im_background,
    })
}

/// `ttl` is an integer number of seconds in `0..=1296000`; Push Kit's v1 `"86400s"` string
/// form is accepted too. Anything else is `80100004`.
fn parse_ttl(v: &Value) -> Result<u32, Rejection> {
    let illegal = || {
        Rejection::new(
            Code::IllegalExpireTime,
            Code::IllegalExpireTime.default_msg(),
        )
    };
    let secs = match v {
        Value::Number(n) => n.as_i64().ok_or_else(illegal)?,
        Value::String(s) => s
            .strip_suffix('s')
            .unwrap_or(s)
            .parse::<i64>()
            .map_err(|_| illegal())?,
        _ => return Err(illegal()),
    };
    if !(0..=i64::from(MAX_TTL_SECS)).contains(&secs) {
        return Err(illegal());
    }
    Ok(secs as u32)
}

fn parse_alert(payload: Value) -> Result<Payload, Rejection> {
    let alert: push::AlertPayload = serde_json::from_value(payload)
        .map_err(|e| Rejection::payload(format!("notification does not match the schema: {e}")))?;
    let n = alert
        .notification
        .ok_or_else(|| Rejection::payload("notification is mandatory"))?;
    if is_badge_only(&n) {
        let badge = n
            .badge
            .map(parse_badge)
            .transpose()?
            .flatten()
            .ok_or_else(|| Rejection::payload("badge needs addNum or setNum"))?;
        return Ok(Payload::Badge(badge));
    }
    Notification::try_from(n).map(|n| Payload::Alert(Box::new(n)))
}

/// A `BadgePayload`: `badge` and nothing a displayed notification needs.
fn is_badge_only(n: &push::Notification) -> bool {
    n.badge.is_some()
        && n.category.is_none()
        && n.title.is_none()
        && n.body.is_none()
        && n.click_action.is_none()
}

fn required_text(value: Option<String>, field: &str) -> Result<String, Rejection> {
    match value {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(Rejection::payload(format!("{field} is mandatory"))),
    }
}

fn check_max_chars(value: &Option<String>, field: &str, max: usize) -> Result<(), Rejection> {
    match value {
        Some(s) if s.chars().count() > max => Err(Rejection::payload(format!(
            "{field} must be at most {max} characters"
        ))),
        _ => Ok(()),
    }
}

impl TryFrom<push::Notification> for Notification {
    type Error = Rejection;

    fn try_from(n: push::Notification) -> Result<Self, Rejection> {
        let category_name = n
            .category
            .ok_or_else(|| Rejection::payload("category is mandatory"))?;
        let category = Category::from_str(&category_name).map_err(|_| {
            Rejection::payload(format!(
                "category {category_name:?} is not a valid category"
            ))
        })?;
        let title = required_text(n.title, "title")?;
        let body = required_text(n.body, "body")?;
        if let Some(image) = &n.image
            && !image.starts_with("https://")
        {
            return Err(Rejection::payload("image must be an HTTPS URL"));
        }
        let style = match n.style.unwrap_or(0) {
            0 => Style::Normal,
            1 => Style::BigText {
                big_title: required_text(n.big_title, "bigTitle")?,
                big_body: required_text(n.big_body, "bigBody")?,
            },
            3 => {
                let lines = n.inbox_content.filter(|l| !l.is_empty()).ok_or_else(|| {
                    Rejection::payload("inboxContent is mandatory when style is 3")
                })?;
                if lines.len() > 3 {
                    return Err(Rejection::payload("inboxContent has at most 3 entries"));
                }
                if lines.iter().any(|l| l.chars().count() > 1024) {
                    return Err(Rejection::payload(
                        "each inboxContent entry must be at most 1024 characters",
                    ));
                }
                Style::Inbox(lines)
            }
            other => {
                return Err(Rejection::payload(format!(
                    "style must be 0, 1 or 3, got {other}"
                )));
            }
        };
        let notify_id = match n.notify_id {
            None | Some(-1) => None,
            Some(id @ 0..=MAX_NOTIFY_ID) => Some(id as NotifyId),
            Some(id) => {
                return Err(Rejection::payload(format!(
                    "notifyId must be -1 or within 0 and {MAX_NOTIFY_ID}, got {id}"
                )));
            }
        };
        if let Some(id) = &n.app_message_id
            && !is_valid_app_message_id(id)
        {
            return Err(Rejection::payload(
                "appMessageId must be 1 to 64 characters of [A-Za-z0-9+/=-_ ]",
            ));
        }
        check_max_chars(&n.profile_id, "profileId", 64)?;
        let click_action = parse_click_action(n.click_action)?;
        let badge = n.badge.map(parse_badge).transpose()?.flatten();
        let sound_duration = match (n.sound_duration, &n.sound) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(Rejection::payload("soundDuration requires sound"));
            }
            (Some(d @ 1..=60), Some(_)) => Some(d as u8),
            (Some(d), Some(_)) => {
                return Err(Rejection::payload(format!(
                    "soundDuration ranges from 1 to 60, got {d}"
                )));
            }
        };
        Ok(Notification {
            category,
            title,
            body,
            image: n.image,
            style,
            notify_id,
            app_message_id: n.app_message_id,
            profile_id: n.profile_id.filter(|p| !p.is_empty()),
            click_action,
            badge,
            sound: n.sound.filter(|s| !s.is_empty()),
            sound_duration,
            foreground_show: n.foreground_show.unwrap_or(true),
        })
    }
}

fn is_valid_app_message_id(id: &str) -> bool {
    (1..=64).contains(&id.chars().count())
        && id.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '+' | '/' | '=' | '-' | '_')
                || c.is_whitespace()
        })
}

fn parse_click_action(c: Option<push::ClickAction>) -> Result<ClickAction, Rejection> {
    let c = c.ok_or_else(|| Rejection::payload("clickAction is mandatory"))?;
    let target = match c.action_type {
        None => return Err(Rejection::payload("clickAction.actionType is mandatory")),
        Some(0) => ClickTarget::Home,
        Some(1) => {
            let action = c.action.filter(|a| !a.is_empty());
            let uri = c.uri.filter(|u| !u.is_empty());
            if action.is_none() && uri.is_none() {
                return Err(Rejection::payload(
                    "clickAction.action or clickAction.uri is mandatory when actionType is 1",
                ));
            }
            ClickTarget::Ability { action, uri }
        }
        Some(other) => {
            return Err(Rejection::payload(format!(
                "clickAction.actionType must be 0 or 1 for this push-type, got {other}"
            )));
        }
    };
    Ok(ClickAction {
        target,
        data: c.data,
    })
}

fn parse_badge(b: push::Badge) -> Result<Option<BadgeChange>, Rejection> {
    if let Some(n) = b.set_num
        && !(0..=99).contains(&n)
    {
        return Err(Rejection::payload("badge setNum value ranges from 0 to 99"));
    }
    if let Some(n) = b.add_num
        && !(1..=99).contains(&n)
    {
        return Err(Rejection::payload("badge addNum value ranges from 1 to 99"));
    }
    Ok(match (b.set_num, b.add_num) {
        (Some(n), _) => Some(BadgeChange::Set(n as u8)),
        (None, Some(n)) => Some(BadgeChange::Add(n as u8)),
        (None, None) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token() -> String {
        "T".repeat(120)
    }

    fn body(notification: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "payload": {"notification": notification},
            "target": {"token": [token()]}
        }))
        .unwrap()
    }

    fn seed_notification() -> Value {
        json!({"category":"MARKETING","title":"普通通知标题","body":"普通通知内容",
               "profileId":"111***222","clickAction":{"actionType":0}})
    }

    #[test]
    fn the_seed_example_parses() {
        let p = parse_send(PushType::Alert, &body(seed_notification())).unwrap();
        let Payload::Alert(n) = &p.payload else {
            panic!("an alert")
        };
        assert_eq!(n.category, Category::Marketing);
        assert_eq!(n.click_action.target, ClickTarget::Home);
        assert_eq!(p.options.ttl_secs, DEFAULT_TTL_SECS);
        assert_eq!(p.tokens, vec![token()]);
    }

    #[test]
    fn every_push_type_parses_its_reference_example() {
        let t = token();
        let cases = [
            (
                PushType::Form,
                json!({"formId":0,"version":922337203,"moduleName":"m","formName":"f",
                "abilityName":"a","formData":{"class":"123"}}),
            ),
            (
                PushType::Voice,
                json!({"extraData":"Extension extra data","notification":{
                "category":"PLAY_VOICE","title":"t","body":"b","clickAction":{"actionType":0}}}),
            ),
            (PushType::Background, json!({"extraData":"携带的数据"})),
            (
                PushType::LiveView,
                json!({"activityId":1,"operation":0,"event":"TAXI","status":"CALLING",
                "activityData":{"notificationData":{"type":4}}}),
            ),
            (
                PushType::Voip,
                json!({"extraData":"{\"scene\": \"voice\"}"}),
            ),
        ];
        for (pt, payload) in cases {
            let b =
                serde_json::to_vec(&json!({"payload": payload, "target": {"token": [t]}})).unwrap();
            assert!(parse_send(pt, &b).is_ok(), "{pt:?}");
        }
        let two = serde_json::to_vec(&json!({"payload": {"formId":0,"version":1,"moduleName":"m",
            "formName":"f","abilityName":"a","formData":{}}, "target": {"token": [t, t]}}))
        .unwrap();
        let r = parse_send(PushType::Form, &two).unwrap_err();
        assert_eq!(
            (r.code, r.msg.as_str()),
            (
                Code::TokenCountOutOfRange,
                "token count should within 1 and 1."
            )
        );
        let bg = serde_json::to_vec(
            &json!({"payload": {"extraData":"x"}, "target": {"token": [t]},
            "pushOptions": {"backgroundMode": 1, "collapseKey": 3}}),
        )
        .unwrap();
        let p = parse_send(PushType::Background, &bg).unwrap();
        assert!(p.options.im_background);
        assert_eq!(
            p.options.collapse_key, None,
            "collapseKey applies to 0 and 2 only"
        );
    }

    #[test]
    fn push_type_header() {
        assert_eq!(PushType::from_header(Some("0")), Ok(PushType::Alert));
        for bad in [None, Some(""), Some("3"), Some("x")] {
            assert_eq!(
                PushType::from_header(bad).unwrap_err().code,
                Code::IllegalPayload
            );
        }
    }

    fn rejection(v: Value) -> Rejection {
        parse_send(PushType::Alert, &serde_json::to_vec(&v).unwrap()).unwrap_err()
    }

    #[test]
    fn codes_for_bad_requests() {
        assert_eq!(
            parse_send(PushType::Alert, b"{not json").unwrap_err().code,
            Code::ParameterError
        );
        assert_eq!(
            rejection(json!({"payload":{}, "target":{"token":[]}})).code,
            Code::TokenCountOutOfRange
        );
        let many: Vec<String> = (0..1001).map(|_| token()).collect();
        assert_eq!(
            rejection(json!({"payload":{}, "target":{"token":many}})).code,
            Code::TokenCountOutOfRange
        );
        let mut n = seed_notification();
        n["body"] = json!("x".repeat(5000));
        assert_eq!(
            parse_send(PushType::Alert, &body(n)).unwrap_err().code,
            Code::MessageTooLong
        );
        assert_eq!(
            rejection(json!({"payload":{"notification":seed_notification()},
                "target":{"token":[token()]}, "pushOptions":{"ttl":1296001}}))
            .code,
            Code::IllegalExpireTime
        );
        assert_eq!(
            rejection(json!({"payload":{"notification":seed_notification()},
                "target":{"token":[token()]}, "pushOptions":{"ttl":-1}}))
            .code,
            Code::IllegalExpireTime
        );
        let ten: Vec<String> = (0..11).map(|_| token()).collect();
        assert_eq!(
            rejection(json!({"payload":{"notification":seed_notification()},
                "target":{"token":ten}, "pushOptions":{"testMessage":true}}))
            .code,
            Code::TestTokenCountExceeded
        );
    }

    #[test]
    fn tokens_do_not_count_towards_the_size_limit() {
        let tokens: Vec<String> = (0..1000).map(|_| token()).collect();
        let b = serde_json::to_vec(&json!({"payload":{"notification":seed_notification()},
            "target":{"token":tokens}}))
        .unwrap();
        assert!(b.len() > 100_000);
        assert!(parse_send(PushType::Alert, &b).is_ok());
    }

    #[test]
    fn notification_schema() {
        let cases = [
            (
                json!({"title":"t","body":"b","clickAction":{"actionType":0}}),
                "category",
            ),
            (
                json!({"category":"NOPE","title":"t","body":"b","clickAction":{"actionType":0}}),
                "category",
            ),
            (
                json!({"category":"IM","body":"b","clickAction":{"actionType":0}}),
                "title",
            ),
            (
                json!({"category":"IM","title":"t","body":"b"}),
                "clickAction",
            ),
            (
                json!({"category":"IM","title":"t","body":"b","clickAction":{"actionType":1}}),
                "action",
            ),
            (
                json!({"category":"IM","title":"t","body":"b","clickAction":{"actionType":5}}),
                "actionType",
            ),
            (
                json!({"category":"IM","title":"t","body":"b","clickAction":{"actionType":0},"style":3}),
                "inboxContent",
            ),
            (
                json!({"category":"IM","title":"t","body":"b","clickAction":{"actionType":0},"notifyId":2147483648i64}),
                "notifyId",
            ),
            (
                json!({"category":"IM","title":"t","body":"b","clickAction":{"actionType":0},"badge":{"addNum":100}}),
                "addNum",
            ),
            (
                json!({"category":"IM","title":"t","body":"b","clickAction":{"actionType":0},"image":"http://x/y.png"}),
                "HTTPS",
            ),
            (
                json!({"category":"IM","title":"t","body":"b","clickAction":{"actionType":0},"appMessageId":"a!"}),
                "appMessageId",
            ),
            (
                json!({"category":"IM","title":"t","body":"b","clickAction":{"actionType":0},"soundDuration":5}),
                "sound",
            ),
            (
                json!({"category":"IM","title":5,"body":"b","clickAction":{"actionType":0}}),
                "schema",
            ),
        ];
        for (n, needle) in cases {
            let r = parse_send(PushType::Alert, &body(n.clone())).unwrap_err();
            assert_eq!(r.code, Code::IllegalPayload, "{n}");
            assert!(r.msg.contains(needle), "{n}: {}", r.msg);
        }
    }

    #[test]
    fn badge_only_is_a_badge_payload() {
        let p = parse_send(
            PushType::Alert,
            &body(json!({"badge":{"setNum":3,"addNum":1}})),
        )
        .unwrap();
        assert_eq!(p.payload, Payload::Badge(BadgeChange::Set(3)));
        let r = parse_send(PushType::Alert, &body(json!({"badge":{}}))).unwrap_err();
        assert_eq!(r.code, Code::IllegalPayload);
    }

    #[test]
    fn wire_form_keeps_fields_and_resolves_notify_id() {
        let mut n = seed_notification();
        n["clickAction"] = json!({"actionType":1,"action":"com.x.open","data":{"k":"v"}});
        n["badge"] = json!({"addNum":1,"setNum":3});
        let p = parse_send(PushType::Alert, &body(n)).unwrap();
        let Payload::Alert(n) = &p.payload else {
            panic!("an alert")
        };
        let w = n.to_wire(42);
        assert_eq!(w.notify_id, Some(42));
        assert_eq!(w.badge.unwrap().set_num, Some(3));
        let c = w.click_action.unwrap();
        assert_eq!(c.action_type, Some(1));
        assert_eq!(c.data.unwrap()["k"], "v");
    }
}
