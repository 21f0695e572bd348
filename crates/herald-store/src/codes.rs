//! How every engine stores the small enumerations of a delivery (kind, category) as
//! integers, and rebuilds a delivery's lifecycle from its compact row.

use herald_core::{Category, DeliveryState, Outcome, ReceiptCode};

use crate::{DeliveryId, EventRecord, MessageKind};

pub(crate) fn kind_code(kind: MessageKind) -> i64 {
    match kind {
        MessageKind::Message => 0,
        MessageKind::Revoke => 1,
    }
}

pub(crate) fn kind_from(code: i64) -> MessageKind {
    if code == 1 {
        MessageKind::Revoke
    } else {
        MessageKind::Message
    }
}

/// The effective category as stored: its index in [`Category::ALL`].
pub(crate) fn category_code(c: Option<Category>) -> Option<i64> {
    c.and_then(|c| Category::ALL.iter().position(|x| *x == c))
        .map(|i| i as i64)
}

pub(crate) fn category_from(code: Option<i64>) -> Option<Category> {
    code.and_then(|i| usize::try_from(i).ok())
        .and_then(|i| Category::ALL.get(i).copied())
}

/// Rebuild a delivery's lifecycle from its row (the store keeps a state and its times,
/// not one row per transition).
#[allow(clippy::too_many_arguments)]
pub(crate) fn lifecycle(
    id: DeliveryId,
    created_at: i64,
    state: DeliveryState,
    code: Option<u32>,
    delivered_at: Option<i64>,
    shown_at: Option<i64>,
    updated_at: i64,
) -> Vec<EventRecord> {
    let wire = id.to_string();
    let ev = |outcome, at| EventRecord {
        message_id: wire.clone(),
        outcome,
        at,
    };
    let code = code.map(ReceiptCode);
    if state == DeliveryState::Dropped {
        return vec![ev(
            Outcome::Dropped(code.unwrap_or(ReceiptCode::TOKEN_INVALID)),
            updated_at,
        )];
    }
    let mut out = vec![ev(Outcome::Queued, created_at)];
    if let Some(at) = delivered_at {
        out.push(ev(Outcome::Delivered, at));
    }
    match state {
        DeliveryState::Shown | DeliveryState::Clicked => {
            out.push(ev(Outcome::Shown, shown_at.unwrap_or(updated_at)));
        }
        DeliveryState::Suppressed => out.push(ev(
            Outcome::Suppressed(code.unwrap_or(ReceiptCode::NOTIFICATIONS_OFF)),
            shown_at.unwrap_or(updated_at),
        )),
        DeliveryState::Revoked if shown_at.is_some() => {
            out.push(ev(Outcome::Shown, shown_at.unwrap_or(updated_at)));
        }
        _ => {}
    }
    match state {
        DeliveryState::Clicked => out.push(ev(Outcome::Clicked, updated_at)),
        DeliveryState::Replaced => out.push(ev(Outcome::Replaced, updated_at)),
        DeliveryState::Expired => out.push(ev(Outcome::Expired, updated_at)),
        DeliveryState::Revoked => out.push(ev(Outcome::Revoked, updated_at)),
        _ => {}
    }
    out
}
