//! Live View rules on the server (reference §2.8, §6, §8): which operation is accepted for
//! an activity on one device, and what its state becomes.

use std::collections::VecDeque;

use crate::ReceiptCode;
use crate::payloads::{LiveOp, LiveView};

/// A Live View unseen for this long is gone: later updates find nothing (155).
pub const REMOVED_AFTER_MS: i64 = 4 * 3_600_000;
/// An activity id updated while unknown is blocked this long (265).
pub const BLOCKED_FOR_MS: i64 = 24 * 3_600_000;
/// An activity id cannot be created again over REST within this time (269).
pub const RECREATE_AFTER_MS: i64 = 12 * 3_600_000;

/// What the server knows of one activity on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveViewState {
    pub event: String,
    pub status: Option<String>,
    pub version: Option<u32>,
    /// Created through the REST API (updates must then carry `status`, else 268).
    pub rest_created: bool,
    pub ended: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Updates are refused (265) until then.
    pub blocked_until: Option<i64>,
}

/// Operation timestamps for the per-activity rate limits (memory only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveRate {
    times: VecDeque<i64>,
}

/// Limits per activity per device: (per 5 minutes, per hour).
pub fn rate_limits(event: &str) -> (usize, usize) {
    match event {
        "TAXI" | "SCORE" => (30, 180),
        _ => (10, 60),
    }
}

impl LiveRate {
    /// Record an operation at `now` if both windows have room.
    pub fn try_take(&mut self, event: &str, now: i64) -> bool {
        while self.times.front().is_some_and(|t| *t <= now - 3_600_000) {
            self.times.pop_front();
        }
        let (per_5min, per_hour) = rate_limits(event);
        let recent = self.times.iter().filter(|t| **t > now - 300_000).count();
        if recent >= per_5min || self.times.len() >= per_hour {
            return false;
        }
        self.times.push_back(now);
        true
    }
}

/// The outcome of applying an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveDecision {
    /// Deliver; the activity's state becomes this.
    Accept(LiveViewState),
    /// Drop with this receipt code; the state becomes the second field (e.g. blocked).
    Reject(ReceiptCode, Option<LiveViewState>),
}

/// Apply `op` to the activity's current state (`None` = never seen here).
pub fn decide(current: Option<&LiveViewState>, op: &LiveView, now: i64) -> LiveDecision {
    let live = current.filter(|s| !s.ended && now - s.updated_at < REMOVED_AFTER_MS);
    if let Some(s) = current
        && s.blocked_until.is_some_and(|b| b > now)
    {
        return LiveDecision::Reject(ReceiptCode::LIVE_VIEW_BLOCKED, Some(s.clone()));
    }
    match op.operation {
        LiveOp::Create => {
            let recently_created = current.is_some_and(|s| {
                now - s.created_at < RECREATE_AFTER_MS && s.blocked_until.is_none()
            });
            if live.is_some() || recently_created {
                return LiveDecision::Reject(ReceiptCode::LIVE_VIEW_DUPLICATE, current.cloned());
            }
            LiveDecision::Accept(LiveViewState {
                event: op.event.clone(),
                status: op.status.clone(),
                version: op.version,
                rest_created: true,
                ended: false,
                created_at: now,
                updated_at: now,
                blocked_until: None,
            })
        }
        LiveOp::Update | LiveOp::End => {
            let Some(state) = live else {
                let mut blocked = current.cloned().unwrap_or(LiveViewState {
                    event: op.event.clone(),
                    status: None,
                    version: None,
                    rest_created: false,
                    ended: true,
                    created_at: now,
                    updated_at: now,
                    blocked_until: None,
                });
                blocked.blocked_until = Some(now + BLOCKED_FOR_MS);
                return LiveDecision::Reject(ReceiptCode::LIVE_VIEW_NOT_FOUND, Some(blocked));
            };
            if let (Some(new), Some(old)) = (op.version, state.version)
                && new <= old
            {
                return LiveDecision::Reject(ReceiptCode::LIVE_VIEW_OUT_OF_ORDER, None);
            }
            if op.operation == LiveOp::Update && op.status.is_none() && state.rest_created {
                return LiveDecision::Reject(ReceiptCode::LIVE_VIEW_NO_STATUS, None);
            }
            let mut next = state.clone();
            if op.status.is_some() {
                next.status = op.status.clone();
            }
            if op.version.is_some() {
                next.version = op.version;
            }
            next.ended = op.operation == LiveOp::End;
            next.updated_at = now;
            LiveDecision::Accept(next)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn op(operation: LiveOp, status: Option<&str>, version: Option<u32>) -> LiveView {
        LiveView {
            activity_id: 1,
            operation,
            event: "FLIGHT".into(),
            status: status.map(str::to_owned),
            version,
            mute: true,
            activity_data: Map::new(),
            fallback: Default::default(),
        }
    }

    fn accept(d: LiveDecision) -> LiveViewState {
        match d {
            LiveDecision::Accept(s) => s,
            other => panic!("rejected: {other:?}"),
        }
    }

    fn code(d: LiveDecision) -> u32 {
        match d {
            LiveDecision::Reject(c, _) => c.0,
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn the_lifecycle_of_a_live_view() {
        let s = accept(decide(
            None,
            &op(LiveOp::Create, Some("DEPART"), Some(1)),
            0,
        ));
        assert_eq!(
            code(decide(
                Some(&s),
                &op(LiveOp::Create, Some("DEPART"), Some(2)),
                1
            )),
            269
        );
        assert_eq!(
            code(decide(Some(&s), &op(LiveOp::Update, Some("X"), Some(1)), 1)),
            156
        );
        assert_eq!(
            code(decide(Some(&s), &op(LiveOp::Update, None, Some(2)), 1)),
            268
        );
        let s = accept(decide(
            Some(&s),
            &op(LiveOp::Update, Some("BOARDING"), Some(2)),
            1,
        ));
        assert_eq!(s.status.as_deref(), Some("BOARDING"));
        let s = accept(decide(Some(&s), &op(LiveOp::End, None, Some(3)), 2));
        assert!(s.ended);
        // Updating an ended activity: 155, then blocked for a day (265).
        let LiveDecision::Reject(c, Some(blocked)) =
            decide(Some(&s), &op(LiveOp::Update, Some("X"), Some(4)), 3)
        else {
            panic!()
        };
        assert_eq!(c.0, 155);
        assert_eq!(
            code(decide(
                Some(&blocked),
                &op(LiveOp::Update, Some("X"), Some(5)),
                4
            )),
            265
        );
        assert_eq!(
            code(decide(
                Some(&blocked),
                &op(LiveOp::Create, Some("X"), Some(5)),
                4
            )),
            265
        );
    }

    #[test]
    fn unknown_activities_are_155_and_stale_ones_vanish() {
        assert_eq!(
            code(decide(None, &op(LiveOp::Update, Some("X"), None), 0)),
            155
        );
        let s = accept(decide(None, &op(LiveOp::Create, Some("DEPART"), None), 0));
        assert_eq!(
            code(decide(
                Some(&s),
                &op(LiveOp::Update, Some("X"), None),
                REMOVED_AFTER_MS
            )),
            155
        );
    }

    #[test]
    fn rate_limits_per_activity() {
        let mut r = LiveRate::default();
        assert!((0..10).all(|i| r.try_take("FLIGHT", i)));
        assert!(!r.try_take("FLIGHT", 10), "10 per 5 minutes");
        assert!(r.try_take("FLIGHT", 300_001), "a new 5-minute window");
        let mut taxi = LiveRate::default();
        assert!((0..30).all(|i| taxi.try_take("TAXI", i)));
        assert!(!taxi.try_take("TAXI", 31));
    }
}
