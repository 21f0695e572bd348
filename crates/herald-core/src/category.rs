//! Notification categories: the 13 Service & Communication ones and `MARKETING` (reference §5).

use std::fmt;
use std::str::FromStr;

/// A notification's self-classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Im,
    Voip,
    MissCall,
    Travel,
    Health,
    Work,
    Account,
    Express,
    Finance,
    DeviceReminder,
    Mail,
    PlayVoice,
    Subscription,
    Marketing,
}

impl Category {
    pub const ALL: [Category; 14] = [
        Category::Im,
        Category::Voip,
        Category::MissCall,
        Category::Travel,
        Category::Health,
        Category::Work,
        Category::Account,
        Category::Express,
        Category::Finance,
        Category::DeviceReminder,
        Category::Mail,
        Category::PlayVoice,
        Category::Subscription,
        Category::Marketing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Im => "IM",
            Category::Voip => "VOIP",
            Category::MissCall => "MISS_CALL",
            Category::Travel => "TRAVEL",
            Category::Health => "HEALTH",
            Category::Work => "WORK",
            Category::Account => "ACCOUNT",
            Category::Express => "EXPRESS",
            Category::Finance => "FINANCE",
            Category::DeviceReminder => "DEVICE_REMINDER",
            Category::Mail => "MAIL",
            Category::PlayVoice => "PLAY_VOICE",
            Category::Subscription => "SUBSCRIPTION",
            Category::Marketing => "MARKETING",
        }
    }

    /// Service & Communication categories alert; `MARKETING` is silent.
    pub fn is_service_and_communication(self) -> bool {
        self != Category::Marketing
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The category string is not one Push Kit knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown category {0:?}")]
pub struct UnknownCategory(pub String);

impl FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCategory(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>(), Ok(c));
        }
        assert!("marketing".parse::<Category>().is_err());
    }
}
