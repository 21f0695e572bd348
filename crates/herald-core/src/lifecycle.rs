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
    /// A background message cached on the device because the app's process is absent.
    pub const CACHED: ReceiptCode = ReceiptCode(27);
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

/// Where one delivery (one message for one token) stands: the compact form the store keeps
/// instead of one event row per transition.
///
/// The order of the live states is the order of the lifecycle: a delivery only ever moves
/// forward (`queued → delivered → shown → clicked`) or ends in one final state. A report
/// that would move it back, or touch an ended delivery, changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryState {
    Queued,
    Delivered,
    Shown,
    Clicked,
    Suppressed,
    Replaced,
    Expired,
    Revoked,
    Dropped,
}

impl DeliveryState {
    /// Every state, in storage-code order.
    pub const ALL: [DeliveryState; 9] = [
        DeliveryState::Queued,
        DeliveryState::Delivered,
        DeliveryState::Shown,
        DeliveryState::Clicked,
        DeliveryState::Suppressed,
        DeliveryState::Replaced,
        DeliveryState::Expired,
        DeliveryState::Revoked,
        DeliveryState::Dropped,
    ];

    /// The small integer the store keeps.
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<DeliveryState> {
        usize::try_from(code)
            .ok()
            .and_then(|i| DeliveryState::ALL.get(i).copied())
    }

    /// The outcome name of the state (`queued`, `delivered`, …).
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Shown => "shown",
            DeliveryState::Clicked => "clicked",
            DeliveryState::Suppressed => "suppressed",
            DeliveryState::Replaced => "replaced",
            DeliveryState::Expired => "expired",
            DeliveryState::Revoked => "revoked",
            DeliveryState::Dropped => "dropped",
        }
    }

    /// Still waiting for the device.
    pub fn is_queued(self) -> bool {
        self == DeliveryState::Queued
    }

    /// The state an outcome leads to.
    pub fn of(outcome: Outcome) -> DeliveryState {
        match outcome {
            Outcome::Queued => DeliveryState::Queued,
            Outcome::Delivered => DeliveryState::Delivered,
            Outcome::Shown => DeliveryState::Shown,
            Outcome::Suppressed(_) => DeliveryState::Suppressed,
            Outcome::Clicked => DeliveryState::Clicked,
            Outcome::Replaced => DeliveryState::Replaced,
            Outcome::Expired => DeliveryState::Expired,
            Outcome::Revoked => DeliveryState::Revoked,
            Outcome::Dropped(_) => DeliveryState::Dropped,
        }
    }

    /// The outcomes that take a delivery from `self` to the state of `to`, oldest first,
    /// or nothing when the move is not forward. A report of `shown` for a queued delivery
    /// implies its delivery: `[Delivered, Shown]`. Device reports never end a delivery the
    /// server already ended (replaced, expired, revoked, dropped), and never repeat.
    pub fn advance(self, to: Outcome) -> Vec<Outcome> {
        use DeliveryState as S;
        let target = DeliveryState::of(to);
        match (self, target) {
            (S::Queued, S::Delivered) => vec![to],
            (S::Queued, S::Shown | S::Suppressed) => vec![Outcome::Delivered, to],
            (S::Queued, S::Clicked) => vec![Outcome::Delivered, Outcome::Shown, to],
            (S::Delivered, S::Shown | S::Suppressed) => vec![to],
            (S::Delivered, S::Clicked) => vec![Outcome::Shown, to],
            (S::Shown, S::Clicked) => vec![to],
            // The server's own endings apply to queued deliveries only.
            (S::Queued, S::Replaced | S::Expired | S::Revoked | S::Dropped) => vec![to],
            // Revoking a shown (not tapped) notification removes it from the screen.
            (S::Delivered | S::Shown, S::Revoked) => vec![to],
            _ => Vec::new(),
        }
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
            assert_eq!(DeliveryState::of(o).name(), o.name());
        }
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::from_code(s.code()), Some(s));
        }
    }

    #[test]
    fn deliveries_only_move_forward() {
        use DeliveryState as S;
        let off = Outcome::Suppressed(ReceiptCode::NOTIFICATIONS_OFF);
        assert_eq!(
            S::Queued.advance(Outcome::Delivered),
            vec![Outcome::Delivered]
        );
        assert_eq!(S::Queued.advance(off), vec![Outcome::Delivered, off]);
        assert_eq!(
            S::Queued.advance(Outcome::Clicked),
            vec![Outcome::Delivered, Outcome::Shown, Outcome::Clicked]
        );
        // Repeats and moves backwards change nothing.
        assert!(S::Delivered.advance(Outcome::Delivered).is_empty());
        assert!(S::Shown.advance(Outcome::Delivered).is_empty());
        assert!(S::Suppressed.advance(off).is_empty());
        assert!(S::Suppressed.advance(Outcome::Shown).is_empty());
        assert!(S::Clicked.advance(Outcome::Shown).is_empty());
        // Ended deliveries stay ended, whatever the device says.
        for ended in [S::Replaced, S::Expired, S::Revoked, S::Dropped] {
            for o in [Outcome::Delivered, Outcome::Shown, Outcome::Clicked, off] {
                assert!(ended.advance(o).is_empty(), "{ended:?} moved by {o:?}");
            }
        }
        // The server ends only queued deliveries, except a revoke of a shown one.
        assert!(S::Delivered.advance(Outcome::Expired).is_empty());
        assert_eq!(S::Shown.advance(Outcome::Revoked), vec![Outcome::Revoked]);
        assert!(S::Clicked.advance(Outcome::Revoked).is_empty());
    }
}
