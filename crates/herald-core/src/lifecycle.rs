//! One lifecycle for every (message, token): the outcomes receipts, reports and revoke read.
//!
//! ```text
//! accepted ─▶ queued ─▶ delivered ─▶ shown ─▶ clicked
//!    │          │           └──▶ suppressed (switch off → 6, profile mismatch → 144)
//!    │          ├──▶ replaced (collapseKey → 15)
//!    │          ├──▶ revoked (messages:revoke)
//!    │          └──▶ expired (TTL)
//!    └──▶ dropped (invalid token → 5, quota → 256, device control → 102)
//! ```

use std::fmt;

/// A Push Kit receipt status code (reference §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReceiptCode(pub u32);

impl ReceiptCode {
    pub const DELIVERED: ReceiptCode = ReceiptCode(0);
    pub const APP_UNINSTALLED: ReceiptCode = ReceiptCode(2);
    pub const TOKEN_INVALID: ReceiptCode = ReceiptCode(5);
    pub const NOTIFICATIONS_OFF: ReceiptCode = ReceiptCode(6);
    pub const OFFLINE_CONTROL: ReceiptCode = ReceiptCode(15);
    /// TTL ended before delivery. Push Kit publishes no code for this; Herald reports
    /// 14 ("other error"), documented in `docs/protocol.md`.
    pub const EXPIRED: ReceiptCode = ReceiptCode(14);
    pub const DEVICE_CONTROL: ReceiptCode = ReceiptCode(102);
    pub const PROFILE_NOT_FOUND: ReceiptCode = ReceiptCode(144);
    pub const LIVE_VIEW_NOT_FOUND: ReceiptCode = ReceiptCode(155);
    pub const LIVE_VIEW_OUT_OF_ORDER: ReceiptCode = ReceiptCode(156);
    pub const FREQUENCY_LIMIT: ReceiptCode = ReceiptCode(256);
    pub const WIDGET_LIMIT: ReceiptCode = ReceiptCode(262);
    pub const LIVE_VIEW_BLOCKED: ReceiptCode = ReceiptCode(265);
    pub const LIVE_VIEW_NO_STATUS: ReceiptCode = ReceiptCode(268);
    pub const LIVE_VIEW_DUPLICATE: ReceiptCode = ReceiptCode(269);
}

impl fmt::Display for ReceiptCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What happened to one (message, token) pair. Stored as events; never invented elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Durably queued for the device.
    Queued,
    /// The device acknowledged it.
    Delivered,
    /// The device showed it (or handed it to the app).
    Shown,
    /// The device did not show it, with the receipt code saying why.
    Suppressed(ReceiptCode),
    /// The user tapped it.
    Clicked,
    /// A newer message with the same `collapseKey` took its place before delivery.
    Replaced,
    /// The TTL ended before delivery.
    Expired,
    /// Withdrawn by the sender (`messages:revoke`) before it was delivered or tapped.
    Revoked,
    /// Never queued, with the receipt code saying why.
    Dropped(ReceiptCode),
}

impl Outcome {
    /// The stable name stored and reported.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Delivered => "delivered",
            Outcome::Shown => "shown",
            Outcome::Suppressed(_) => "suppressed",
            Outcome::Clicked => "clicked",
            Outcome::Replaced => "replaced",
            Outcome::Expired => "expired",
            Outcome::Revoked => "revoked",
            Outcome::Dropped(_) => "dropped",
        }
    }

    /// The receipt code Push Kit would report for this outcome, if it reports one.
    pub fn receipt_code(self) -> Option<ReceiptCode> {
        match self {
            Outcome::Delivered => Some(ReceiptCode::DELIVERED),
            Outcome::Suppressed(c) | Outcome::Dropped(c) => Some(c),
            Outcome::Replaced => Some(ReceiptCode::OFFLINE_CONTROL),
            Outcome::Expired => Some(ReceiptCode::EXPIRED),
            Outcome::Queued | Outcome::Shown | Outcome::Clicked | Outcome::Revoked => None,
        }
    }

    /// Rebuild from the stored name and code.
    pub fn from_parts(name: &str, code: Option<u32>) -> Option<Outcome> {
        let code = code.map(ReceiptCode);
        Some(match (name, code) {
            ("queued", _) => Outcome::Queued,
            ("delivered", _) => Outcome::Delivered,
            ("shown", _) => Outcome::Shown,
            ("suppressed", Some(c)) => Outcome::Suppressed(c),
            ("clicked", _) => Outcome::Clicked,
            ("replaced", _) => Outcome::Replaced,
            ("expired", _) => Outcome::Expired,
            ("revoked", _) => Outcome::Revoked,
            ("dropped", Some(c)) => Outcome::Dropped(c),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_storage_form() {
        for o in [
            Outcome::Queued,
            Outcome::Delivered,
            Outcome::Shown,
            Outcome::Suppressed(ReceiptCode::NOTIFICATIONS_OFF),
            Outcome::Clicked,
            Outcome::Replaced,
            Outcome::Expired,
            Outcome::Revoked,
            Outcome::Dropped(ReceiptCode::TOKEN_INVALID),
        ] {
            let code = o.receipt_code().map(|c| c.0);
            assert_eq!(Outcome::from_parts(o.name(), code), Some(o));
        }
    }
}
