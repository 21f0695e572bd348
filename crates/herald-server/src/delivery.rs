//! The one place a stored or fresh delivery becomes the frame a device receives, so the
//! live path and the backlog path can never disagree.

use herald_core::Category;
use herald_core::rights::{Reminder, plays_sound};
use herald_proto::device::{self, DeviceMessage};
use serde_json::Value;

/// Apply a delivery's effective category to its frame: the notification shows that
/// category, MARKETING (and PLAY_VOICE's ringtone) drop the custom `sound`, and the frame
/// says how the device reminds the user.
pub fn finish(mut m: DeviceMessage, category: Option<&str>) -> DeviceMessage {
    let Some(category) = category.and_then(|c| c.parse::<Category>().ok()) else {
        return m;
    };
    if let Some(n) = m
        .payload
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
    m.reminder = Some(match Reminder::for_category(category) {
        Reminder::Silent => device::Reminder::Silent,
        Reminder::Alert => device::Reminder::Alert,
    });
    m
}
