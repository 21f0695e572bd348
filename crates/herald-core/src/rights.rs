//! Scenario rights: what an app may send, and the downgrade Push Kit applies without them.
//!
//! Rights are requested by operations (with the scenario they serve), then granted or
//! refused; a granted right can be revoked. Only a granted right counts. A notification
//! whose category the app has no right to is silently sent as `MARKETING`
//! (reference §5: "应用的通知消息将自动归类为资讯营销消息").

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::Category;

/// Live View events (reference §2.8).
pub const LIVE_VIEW_EVENTS: [&str; 11] = [
    "TAXI",
    "DELIVERY",
    "FLIGHT",
    "TRAIN",
    "QUEUE",
    "PICK_UP",
    "SCORE",
    "RENT",
    "TIMER",
    "WORKOUT",
    "NAVIGATION",
];

/// A right an app can hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Right {
    /// Self-classification right for a Service & Communication category.
    Category(Category),
    /// VoIP calls (push-type 10).
    VoipCall,
    /// Live View notifications of one event (push-type 7).
    LiveView(String),
    /// IM background messages (`backgroundMode: 1`).
    ImBackground,
}

impl Right {
    pub fn name(&self) -> String {
        match self {
            Right::Category(c) => c.as_str().to_owned(),
            Right::VoipCall => "VOIP_CALL".to_owned(),
            Right::LiveView(e) => format!("LIVE_VIEW_{e}"),
            Right::ImBackground => "IM_BACKGROUND".to_owned(),
        }
    }

    /// Every right there is, for listings.
    pub fn all() -> Vec<Right> {
        let mut all: Vec<Right> = Category::ALL
            .into_iter()
            .filter(|c| c.is_service_and_communication())
            .map(Right::Category)
            .collect();
        all.push(Right::VoipCall);
        all.extend(
            LIVE_VIEW_EVENTS
                .iter()
                .map(|e| Right::LiveView((*e).to_owned())),
        );
        all.push(Right::ImBackground);
        all
    }
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The name is not a right (`MARKETING` needs none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a right; rights are the Service & Communication categories, VOIP_CALL, LIVE_VIEW_<EVENT> and IM_BACKGROUND"
)]
pub struct UnknownRight(pub String);

impl FromStr for Right {
    type Err = UnknownRight;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownRight(s.to_owned());
        match s {
            "VOIP_CALL" => Ok(Right::VoipCall),
            "IM_BACKGROUND" => Ok(Right::ImBackground),
            _ => {
                if let Some(event) = s.strip_prefix("LIVE_VIEW_") {
                    return LIVE_VIEW_EVENTS
                        .contains(&event)
                        .then(|| Right::LiveView(event.to_owned()))
                        .ok_or_else(unknown);
                }
                match s.parse::<Category>() {
                    Ok(c) if c.is_service_and_communication() => Ok(Right::Category(c)),
                    _ => Err(unknown()),
                }
            }
        }
    }
}

/// Where a right stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RightState {
    Requested,
    Granted,
    Refused,
    Revoked,
}

impl RightState {
    pub fn as_str(self) -> &'static str {
        match self {
            RightState::Requested => "requested",
            RightState::Granted => "granted",
            RightState::Refused => "refused",
            RightState::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<RightState> {
        Some(match s {
            "requested" => RightState::Requested,
            "granted" => RightState::Granted,
            "refused" => RightState::Refused,
            "revoked" => RightState::Revoked,
            _ => return None,
        })
    }
}

/// What an operator does to a right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RightAction {
    #[default]
    Request,
    /// Product confirms the requested scenario matches the category; the right stays
    /// requested (the store records who confirmed).
    Confirm,
    Grant,
    Refuse,
    Revoke,
}

impl RightAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RightAction::Request => "request",
            RightAction::Confirm => "confirm",
            RightAction::Grant => "grant",
            RightAction::Refuse => "refuse",
            RightAction::Revoke => "revoke",
        }
    }

    /// The state after the action, or why it is not allowed from `from`.
    ///
    /// request: from nothing, refused or revoked (a new application); confirm: a
    /// pending request (it stays pending);
    /// grant/refuse: a pending request (grant also directly, for an operator who both
    /// applies and approves); revoke: a granted right.
    pub fn apply(self, from: Option<RightState>) -> Result<RightState, &'static str> {
        use RightState::*;
        match (self, from) {
            (RightAction::Request, None | Some(Refused | Revoked)) => Ok(Requested),
            (RightAction::Request, Some(Requested)) => Err("the right is already requested"),
            (RightAction::Request, Some(Granted)) => Err("the right is already granted"),
            (RightAction::Confirm, Some(Requested)) => Ok(Requested),
            (RightAction::Confirm, _) => Err("only a requested right can be confirmed"),
            (RightAction::Grant, Some(Granted)) => Err("the right is already granted"),
            (RightAction::Grant, _) => Ok(Granted),
            (RightAction::Refuse, Some(Requested)) => Ok(Refused),
            (RightAction::Refuse, _) => Err("only a requested right can be refused"),
            (RightAction::Revoke, Some(Granted)) => Ok(Revoked),
            (RightAction::Revoke, _) => Err("only a granted right can be revoked"),
        }
    }
}

/// The rights an app holds (granted ones only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantedRights(BTreeSet<Right>);

impl GrantedRights {
    pub fn new(rights: impl IntoIterator<Item = Right>) -> Self {
        GrantedRights(rights.into_iter().collect())
    }

    pub fn has(&self, right: &Right) -> bool {
        self.0.contains(right)
    }

    /// The category a notification is shown with: as sent if the app holds its right,
    /// else `MARKETING`.
    pub fn effective_category(&self, requested: Category) -> Category {
        if !requested.is_service_and_communication() || self.has(&Right::Category(requested)) {
            requested
        } else {
            Category::Marketing
        }
    }
}

/// How a notification reminds the user (reference §5's "default reminder").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reminder {
    /// Notification centre only; no sound (MARKETING).
    Silent,
    /// Lock screen, banner, sound and vibration (Service & Communication).
    Alert,
}

impl Reminder {
    pub fn for_category(c: Category) -> Reminder {
        if c.is_service_and_communication() {
            Reminder::Alert
        } else {
            Reminder::Silent
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reminder::Silent => "silent",
            Reminder::Alert => "alert",
        }
    }
}

/// Whether the custom `sound` of a notification is played: never for MARKETING, and
/// `PLAY_VOICE` alerts without a ringtone.
pub fn plays_sound(c: Category) -> bool {
    !matches!(c, Category::Marketing | Category::PlayVoice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_names_round_trip() {
        for r in Right::all() {
            assert_eq!(r.name().parse::<Right>(), Ok(r));
        }
        assert!("MARKETING".parse::<Right>().is_err());
        assert!("LIVE_VIEW_PARTY".parse::<Right>().is_err());
        assert_eq!(Right::all().len(), 13 + 1 + 11 + 1);
    }

    #[test]
    fn ungranted_categories_downgrade_to_marketing() {
        let rights = GrantedRights::new([Right::Category(Category::Im)]);
        assert_eq!(rights.effective_category(Category::Im), Category::Im);
        assert_eq!(
            rights.effective_category(Category::Work),
            Category::Marketing
        );
        assert_eq!(
            rights.effective_category(Category::Marketing),
            Category::Marketing
        );
    }

    #[test]
    fn right_lifecycle() {
        use RightAction::*;
        use RightState::*;
        assert_eq!(Request.apply(None), Ok(Requested));
        assert_eq!(Grant.apply(Some(Requested)), Ok(Granted));
        assert_eq!(Refuse.apply(Some(Requested)), Ok(Refused));
        assert!(Refuse.apply(Some(Granted)).is_err());
        assert_eq!(Revoke.apply(Some(Granted)), Ok(Revoked));
        assert!(Revoke.apply(Some(Requested)).is_err());
        assert_eq!(Request.apply(Some(Revoked)), Ok(Requested));
        assert_eq!(Grant.apply(None), Ok(Granted));
    }

    #[test]
    fn reminders() {
        assert_eq!(
            Reminder::for_category(Category::Marketing),
            Reminder::Silent
        );
        assert_eq!(Reminder::for_category(Category::PlayVoice), Reminder::Alert);
        assert!(!plays_sound(Category::PlayVoice));
        assert!(!plays_sound(Category::Marketing));
        assert!(plays_sound(Category::Im));
    }
}
