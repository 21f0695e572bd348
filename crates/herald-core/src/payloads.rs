//! The payloads of push-types 1, 2, 6, 7 and 10 (reference §2.5–§2.9), validated.
//!
//! Each parser takes the `payload` JSON object and returns the domain value or a
//! `80100003` rejection with a tip naming the field.

use herald_proto::push;
use serde_json::{Map, Value};

use crate::send::{Notification, Rejection};
use crate::{Category, rights::LIVE_VIEW_EVENTS};

/// Largest `formId` (a Long).
const MAX_FORM_ID: i64 = i64::MAX;
/// Largest widget `version` (2^31 − 1).
const MAX_FORM_VERSION: i64 = 2_147_483_647;
/// Largest integer a widget's `formData` may hold (2^53 − 1).
const MAX_FORM_NUMBER: i64 = 9_007_199_254_740_991;

/// push-type 1: a widget (form) refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct FormUpdate {
    pub form_id: i64,
    /// Must be greater than the device's current version; `0` resets.
    pub version: u32,
    pub module_name: String,
    pub form_name: String,
    pub ability_name: String,
    pub form_data: Map<String, Value>,
    pub images: Vec<FormImage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FormImage {
    pub key_name: String,
    pub url: String,
    /// `true` (default): abort the refresh if the download fails.
    pub require: bool,
}

/// push-type 6: a background (data) message.
#[derive(Debug, Clone, PartialEq)]
pub struct Background {
    pub extra_data: String,
    /// `proxyData: "ENABLE"`: written to the app's RDB when not in the foreground.
    pub proxy: bool,
}

/// Live View operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveOp {
    Create,
    Update,
    End,
}

impl LiveOp {
    pub fn as_u8(self) -> u8 {
        match self {
            LiveOp::Create => 0,
            LiveOp::Update => 1,
            LiveOp::End => 2,
        }
    }
}

/// Events a Live View may be created for over REST (reference §2.8).
pub const LIVE_VIEW_CREATE_EVENTS: [&str; 3] = ["FLIGHT", "TAXI", "TRAIN"];

/// push-type 7: a Live View create, update or end.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveView {
    pub activity_id: i32,
    pub operation: LiveOp,
    pub event: String,
    pub status: Option<String>,
    pub version: Option<u32>,
    pub mute: bool,
    pub activity_data: Map<String, Value>,
    /// `title` and `content`: what a device without Live Views shows as an ordinary
    /// notification instead (`{{status}}` is substituted there).
    pub fallback: LiveFallback,
}

/// The fallback text of a Live View message (both optional).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveFallback {
    pub title: Option<String>,
    pub content: Option<String>,
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn required_string(obj: &Map<String, Value>, name: &str) -> Result<String, Rejection> {
    match field(obj, name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None => Err(Rejection::payload(format!("{name} is mandatory"))),
        Some(_) => Err(Rejection::payload(format!("{name} must be a string"))),
    }
}

fn optional_string(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, Rejection> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::payload(format!("{name} must be a string"))),
    }
}

fn integer(obj: &Map<String, Value>, name: &str) -> Result<Option<i64>, Rejection> {
    match field(obj, name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| Rejection::payload(format!("{name} must be an integer"))),
    }
}

fn object(payload: Value) -> Result<Map<String, Value>, Rejection> {
    match payload {
        Value::Object(m) => Ok(m),
        _ => Err(Rejection::payload("payload must be an object")),
    }
}

/// push-type 1.
pub fn parse_form(payload: Value) -> Result<FormUpdate, Rejection> {
    let p = object(payload)?;
    let form_id =
        integer(&p, "formId")?.ok_or_else(|| Rejection::payload("formId is mandatory"))?;
    if !(0..=MAX_FORM_ID).contains(&form_id) {
        return Err(Rejection::payload("formId must be a non-negative Long"));
    }
    let version =
        integer(&p, "version")?.ok_or_else(|| Rejection::payload("version is mandatory"))?;
    if !(0..=MAX_FORM_VERSION).contains(&version) {
        return Err(Rejection::payload("version ranges from 0 to 2147483647"));
    }
    let form_data = match field(&p, "formData") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(Rejection::payload("formData must be an object")),
        None => return Err(Rejection::payload("formData is mandatory")),
    };
    for (k, v) in &form_data {
        if k.starts_with("datashareproxy://") {
            return Err(Rejection::payload(
                "formData keys must not start with datashareproxy://",
            ));
        }
        check_form_value(k, v)?;
    }
    let images = match field(&p, "images") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > 1 {
                return Err(Rejection::payload("images holds at most 1 element"));
            }
            items
                .iter()
                .map(parse_form_image)
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(Rejection::payload("images must be an array")),
    };
    Ok(FormUpdate {
        form_id,
        version: version as u32,
        module_name: required_string(&p, "moduleName")?,
        form_name: required_string(&p, "formName")?,
        ability_name: required_string(&p, "abilityName")?,
        form_data,
        images,
    })
}

fn check_form_value(key: &str, v: &Value) -> Result<(), Rejection> {
    match v {
        Value::Null => Err(Rejection::payload(format!(
            "formData.{key} must not be null"
        ))),
        Value::Number(n)
            if n.as_i64().is_some_and(|i| i.abs() > MAX_FORM_NUMBER)
                || n.as_u64().is_some_and(|u| u > MAX_FORM_NUMBER as u64) =>
        {
            Err(Rejection::payload(format!("formData.{key} exceeds 2^53-1")))
        }
        Value::Array(items) => items.iter().try_for_each(|i| check_form_value(key, i)),
        Value::Object(m) => m.iter().try_for_each(|(k, i)| check_form_value(k, i)),
        _ => Ok(()),
    }
}

fn parse_form_image(v: &Value) -> Result<FormImage, Rejection> {
    let Value::Object(m) = v else {
        return Err(Rejection::payload("images entries must be objects"));
    };
    let url = required_string(m, "url")?;
    if !url.starts_with("https://") {
        return Err(Rejection::payload("images.url must be an HTTPS URL"));
    }
    let require = match integer(m, "require")? {
        None | Some(1) => true,
        Some(0) => false,
        Some(_) => return Err(Rejection::payload("images.require must be 0 or 1")),
    };
    Ok(FormImage {
        key_name: required_string(m, "keyName")?,
        url,
        require,
    })
}

/// push-type 2: `notification` with `category: PLAY_VOICE`, plus `extraData`.
pub fn parse_voice(payload: Value) -> Result<(Notification, String), Rejection> {
    let p = object(payload)?;
    let extra = required_string(&p, "extraData")?;
    let n: push::Notification = match field(&p, "notification") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            Rejection::payload(format!("notification does not match the schema: {e}"))
        })?,
        None => return Err(Rejection::payload("notification is mandatory")),
    };
    let n = Notification::try_from(n)?;
    if n.category != Category::PlayVoice {
        return Err(Rejection::payload(
            "category must be PLAY_VOICE for push-type 2",
        ));
    }
    Ok((n, extra))
}

/// push-type 6.
pub fn parse_background(payload: Value) -> Result<Background, Rejection> {
    let p = object(payload)?;
    let proxy = match optional_string(&p, "proxyData")?.as_deref() {
        None => false,
        Some("ENABLE") => true,
        Some(_) => return Err(Rejection::payload("proxyData can only be ENABLE")),
    };
    Ok(Background {
        extra_data: required_string(&p, "extraData")?,
        proxy,
    })
}

/// push-type 10.
pub fn parse_voip(payload: Value) -> Result<String, Rejection> {
    required_string(&object(payload)?, "extraData")
}

/// push-type 7.
pub fn parse_live_view(payload: Value) -> Result<LiveView, Rejection> {
    let p = object(payload)?;
    let activity_id =
        integer(&p, "activityId")?.ok_or_else(|| Rejection::payload("activityId is mandatory"))?;
    let activity_id = i32::try_from(activity_id)
        .map_err(|_| Rejection::payload("activityId must be a 32-bit integer"))?;
    let operation = match integer(&p, "operation")? {
        Some(0) => LiveOp::Create,
        Some(1) => LiveOp::Update,
        Some(2) => LiveOp::End,
        Some(_) => return Err(Rejection::payload("operation must be 0, 1 or 2")),
        None => return Err(Rejection::payload("operation is mandatory")),
    };
    let event = required_string(&p, "event")?;
    if !LIVE_VIEW_EVENTS.contains(&event.as_str()) {
        return Err(Rejection::payload(format!(
            "event {event:?} is not a Live View event"
        )));
    }
    if operation == LiveOp::Create && !LIVE_VIEW_CREATE_EVENTS.contains(&event.as_str()) {
        return Err(Rejection::payload(
            "a Live View can be created over REST only for FLIGHT, TAXI or TRAIN",
        ));
    }
    let status = optional_string(&p, "status")?.filter(|s| !s.is_empty());
    if operation == LiveOp::Create && status.is_none() {
        return Err(Rejection::payload(
            "status is mandatory to create a Live View",
        ));
    }
    let version = match integer(&p, "version")? {
        None => None,
        Some(v) if (0..=i64::from(u32::MAX)).contains(&v) => Some(v as u32),
        Some(_) => return Err(Rejection::payload("version must be a non-negative integer")),
    };
    let mute = match field(&p, "mute") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Rejection::payload("mute must be a boolean")),
    };
    let activity_data = match field(&p, "activityData") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(Rejection::payload("activityData must be an object")),
        None => return Err(Rejection::payload("activityData is mandatory")),
    };
    match activity_data.get("notificationData") {
        Some(Value::Object(nd)) => match nd.get("type").and_then(Value::as_i64) {
            Some(3 | 4 | 5 | 7) => {}
            _ => {
                return Err(Rejection::payload(
                    "activityData.notificationData.type must be 3, 4, 5 or 7",
                ));
            }
        },
        _ => {
            return Err(Rejection::payload(
                "activityData.notificationData is mandatory",
            ));
        }
    }
    let fallback = LiveFallback {
        title: optional_string(&p, "title")?.filter(|s| !s.is_empty()),
        content: optional_string(&p, "content")?.filter(|s| !s.is_empty()),
    };
    Ok(LiveView {
        activity_id,
        operation,
        event,
        status,
        version,
        mute,
        activity_data,
        fallback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tip(r: Result<impl std::fmt::Debug, Rejection>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.code, herald_proto::Code::IllegalPayload);
        e.msg
    }

    #[test]
    fn the_reference_widget_example_parses() {
        let f = parse_form(
            json!({"formId":0,"version":922337203,"moduleName":"m","formName":"f",
            "abilityName":"a","formData":{"class":"123"},
            "images":[{"keyName":"hello","url":"https://xxx.png","require":1}]}),
        )
        .unwrap();
        assert_eq!(f.version, 922337203);
        assert!(f.images[0].require);
        assert!(
            tip(parse_form(
                json!({"formId":1,"version":1,"moduleName":"m","formName":"f",
            "abilityName":"a","formData":{"k":null}})
            ))
            .contains("null")
        );
        assert!(
            tip(parse_form(
                json!({"formId":1,"version":1,"moduleName":"m","formName":"f",
            "abilityName":"a","formData":{"datashareproxy://x":1}})
            ))
            .contains("datashareproxy")
        );
        assert!(
            tip(parse_form(
                json!({"formId":1,"version":-1,"moduleName":"m","formName":"f",
            "abilityName":"a","formData":{}})
            ))
            .contains("version")
        );
    }

    #[test]
    fn voice_needs_play_voice_and_extra_data() {
        let n =
            json!({"category":"PLAY_VOICE","title":"t","body":"b","clickAction":{"actionType":0}});
        assert!(parse_voice(json!({"extraData":"x","notification":n})).is_ok());
        assert!(tip(parse_voice(json!({"notification":n}))).contains("extraData"));
        let im = json!({"category":"IM","title":"t","body":"b","clickAction":{"actionType":0}});
        assert!(
            tip(parse_voice(json!({"extraData":"x","notification":im}))).contains("PLAY_VOICE")
        );
    }

    #[test]
    fn background_and_voip() {
        assert!(
            parse_background(json!({"extraData":"x","proxyData":"ENABLE"}))
                .unwrap()
                .proxy
        );
        assert!(
            tip(parse_background(json!({"extraData":"x","proxyData":"YES"}))).contains("proxyData")
        );
        assert_eq!(
            parse_voip(json!({"extraData":"{\"scene\":\"voice\"}"})).unwrap(),
            "{\"scene\":\"voice\"}"
        );
        assert!(tip(parse_voip(json!({}))).contains("extraData"));
    }

    #[test]
    fn live_view_rules() {
        let data = json!({"notificationData":{"type":3,"contentTitle":"Flight"}});
        let ok = parse_live_view(json!({"activityId":1,"operation":0,"event":"FLIGHT",
            "status":"DEPART","activityData":data}))
        .unwrap();
        assert_eq!(ok.operation, LiveOp::Create);
        assert!(ok.mute);
        assert_eq!(ok.fallback, LiveFallback::default());
        let with_text = parse_live_view(json!({"activityId":1,"operation":0,"event":"FLIGHT",
            "status":"DEPART","activityData":data,"title":"Flight CA123","content":"{{status}} at 10:05"}))
        .unwrap();
        assert_eq!(with_text.fallback.title.as_deref(), Some("Flight CA123"));
        assert_eq!(
            with_text.fallback.content.as_deref(),
            Some("{{status}} at 10:05")
        );
        assert!(
            tip(parse_live_view(
                json!({"activityId":1,"operation":1,"event":"TAXI",
            "activityData":data,"title":7})
            ))
            .contains("title")
        );
        assert!(
            tip(parse_live_view(
                json!({"activityId":1,"operation":0,"event":"DELIVERY",
            "status":"X","activityData":data})
            ))
            .contains("FLIGHT, TAXI or TRAIN")
        );
        assert!(
            tip(parse_live_view(
                json!({"activityId":1,"operation":0,"event":"TAXI",
            "activityData":data})
            ))
            .contains("status")
        );
        assert!(
            parse_live_view(json!({"activityId":1,"operation":1,"event":"DELIVERY",
            "activityData":data}))
            .is_ok()
        );
        assert!(
            tip(parse_live_view(
                json!({"activityId":1,"operation":1,"event":"PARTY",
            "activityData":data})
            ))
            .contains("event")
        );
        assert!(
            tip(parse_live_view(
                json!({"activityId":5000000000i64,"operation":1,"event":"TAXI",
            "activityData":data})
            ))
            .contains("32-bit")
        );
    }
}
