//! Errors of the app-side SDK calls, carrying Push Kit's and Notification Kit's numeric
//! codes so that code written against ArkTS's `BusinessError.code` maps one to one.

/// The numeric codes, as ArkTS reports them.
pub mod codes {
    /// Parameter error (a bad `appProfileId`, an unknown `notifyId`…).
    pub const PARAMETER_ERROR: u32 = 401;
    /// `requestEnableNotification`: the user refused, now or earlier ("Notification disabled").
    pub const NOTIFICATION_DISABLED: u32 = 1_600_004;
    /// `requestEnableNotification`: the permission dialog is already on screen.
    pub const DIALOG_ALREADY_SHOWN: u32 = 1_600_013;
    /// Push Kit: the app identity is illegal (Herald: no app has this client id).
    pub const ILLEGAL_APP_IDENTITY: u32 = 1_000_900_010;
    /// Push Kit: network unavailable (Herald: the device has stopped for good).
    pub const NETWORK_UNAVAILABLE: u32 = 1_000_900_011;
    /// Push Kit: the number of bound accounts has reached the maximum (10).
    pub const TOO_MANY_PROFILES: u32 = 1_000_900_015;
    /// Push Kit: system internal error (Herald: the state directory cannot be written).
    pub const INTERNAL_ERROR: u32 = 1_000_900_001;
}

/// What an [`super::AppHandle`] call can fail with. [`PushError::code`] is the ArkTS code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("401 parameter error: {0}")]
    Parameter(String),
    #[error(
        "1600004 notification disabled: the user refused the permission; guide them to the settings"
    )]
    NotificationDisabled,
    #[error("1600013 a notification dialog box is already displayed")]
    DialogAlreadyShown,
    #[error("1000900010 illegal app identity: {0}")]
    IllegalAppIdentity(String),
    #[error("1000900011 network unavailable: the device has stopped")]
    DeviceStopped,
    #[error("1000900015 the number of bound accounts has reached the maximum (10)")]
    TooManyProfiles,
    #[error("1000900001 internal error: {0}")]
    Internal(String),
}

impl PushError {
    /// The ArkTS `BusinessError.code`.
    pub fn code(&self) -> u32 {
        match self {
            PushError::Parameter(_) => codes::PARAMETER_ERROR,
            PushError::NotificationDisabled => codes::NOTIFICATION_DISABLED,
            PushError::DialogAlreadyShown => codes::DIALOG_ALREADY_SHOWN,
            PushError::IllegalAppIdentity(_) => codes::ILLEGAL_APP_IDENTITY,
            PushError::DeviceStopped => codes::NETWORK_UNAVAILABLE,
            PushError::TooManyProfiles => codes::TOO_MANY_PROFILES,
            PushError::Internal(_) => codes::INTERNAL_ERROR,
        }
    }
}
