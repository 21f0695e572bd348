//! The per-token decision of a send, as pure functions: may this token get this message
//! (shape, ownership, push-type rights, the silent downgrade), and which quotas does it
//! take (MARKETING, widgets, IM background, Live View rules, device-level control).
//!
//! No I/O: the server loads what a request needs (token records, app rights and limits,
//! counters) and hands it in; counters are taken through a [`Ledger`] so that the caller
//! decides how they are held (in memory, reserved until the request is stored).

use herald_proto::push::TokenFailure;

use crate::live::{self, LiveDecision, LiveRate, LiveViewState};
use crate::quota::{AppLimits, Counter, CounterKey, IM_BACKGROUND_PER_HOUR};
use crate::rights::{GrantedRights, Right};
use crate::send::{LiveView, ParsedSend, Payload, PushType};
use crate::{Category, ReceiptCode, token};

/// What the policy knows about the app a token belongs to.
#[derive(Debug, Clone)]
pub struct AppPolicy {
    pub rights: std::sync::Arc<GrantedRights>,
    pub limits: AppLimits,
}

/// Whose a known token is.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub project_id: &'a str,
    pub client_id: &'a str,
    pub device_id: &'a str,
}

/// The decision for one token before quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Refused in the answer (`illegalTokens`), never stored.
    Fail(TokenFailure),
    /// Accepted in the answer but dropped with this receipt (unknown token → 5).
    Drop(ReceiptCode),
    /// May be delivered, subject to quotas.
    Admit(Admitted),
}

/// How an admitted token gets the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// The effective category, for notifications (after any downgrade to MARKETING).
    pub category: Option<Category>,
    /// The effective `backgroundMode`, for background messages.
    pub background_mode: Option<u8>,
}

/// Checks that need no quota: shape, push-type rules, ownership, rights. `recipient` is
/// the token's owner when the token is known; `app` that owner's policy.
pub fn admit(
    project_id: &str,
    parsed: &ParsedSend,
    token: &str,
    recipient: Option<Recipient<'_>>,
    app: Option<&AppPolicy>,
) -> Admission {
    if !token::is_well_formed(token) {
        return Admission::Fail(TokenFailure::TokenFormatError);
    }
    let requested = parsed.payload.category();
    if requested == Some(Category::PlayVoice) && parsed.push_type != PushType::Voice {
        return Admission::Fail(TokenFailure::NotSupportPlayVoice);
    }
    let Some(recipient) = recipient else {
        return Admission::Drop(ReceiptCode::TOKEN_INVALID);
    };
    if recipient.project_id != project_id {
        return Admission::Fail(TokenFailure::NoRight);
    }
    let Some(app) = app else {
        return Admission::Drop(ReceiptCode::TOKEN_INVALID);
    };
    if let Some(failure) = missing_type_right(&parsed.payload, &app.rights) {
        return Admission::Fail(failure);
    }
    let category = requested.map(|c| app.rights.effective_category(c));
    let background_mode = matches!(parsed.payload, Payload::Background(_)).then(|| {
        // Without the right, an IM background message is sent as a normal one.
        u8::from(parsed.options.im_background && app.rights.has(&Right::ImBackground))
    });
    Admission::Admit(Admitted {
        category,
        background_mode,
    })
}

/// The right a push type needs and the app lacks, as the per-token failure to report.
pub fn missing_type_right(payload: &Payload, rights: &GrantedRights) -> Option<TokenFailure> {
    let (right, failure) = match payload {
        Payload::Badge(_) => (Right::Category(Category::Im), TokenFailure::NoPushTypeRight),
        Payload::Voice { .. } => (
            Right::Category(Category::PlayVoice),
            TokenFailure::NoPushTypeRight,
        ),
        Payload::Voip { .. } => (Right::VoipCall, TokenFailure::NoPushTypeRight),
        Payload::LiveView(l) => (
            Right::LiveView(l.event.clone()),
            TokenFailure::NoRightToSendThisLiveNotificationEvent,
        ),
        Payload::Alert(_) | Payload::Form(_) | Payload::Background(_) => return None,
    };
    (!rights.has(&right)).then_some(failure)
}

/// Holds counters while a request is decided: take one unit if fewer than `limit` are
/// used, or give one back. The server's implementation reserves in memory and commits
/// the reservation with the request.
pub trait Ledger {
    fn try_take(&mut self, key: &CounterKey, limit: u32) -> bool;
    fn give_back(&mut self, key: &CounterKey);
}

/// What the quota decisions of one request share.
#[derive(Debug, Clone, Copy)]
pub struct QuotaContext<'a> {
    pub parsed: &'a ParsedSend,
    /// The quota day of `now` (see [`crate::quota::QuotaCalendar`]).
    pub day: i32,
    pub now: i64,
    /// Refreshes per widget per device per day.
    pub widget_daily_limit: u32,
}

/// A counter one delivery may take, the limit it is checked against and the receipt
/// code past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub key: CounterKey,
    pub limit: u32,
    pub code: ReceiptCode,
}

/// Take every charge in order, or none: on the first that does not fit, the ones already
/// taken are given back and its receipt code is returned. The one rule for a delivery's
/// quotas, wherever its counters are held (the server's memory, or the store, which
/// applies it again when it commits the delivery, so that nodes sharing a store cannot
/// together pass a limit).
pub fn take_all(charges: &[Charge], ledger: &mut impl Ledger) -> Result<(), ReceiptCode> {
    for (i, c) in charges.iter().enumerate() {
        if !ledger.try_take(&c.key, c.limit) {
            for taken in &charges[..i] {
                ledger.give_back(&taken.key);
            }
            return Err(c.code);
        }
    }
    Ok(())
}

impl QuotaContext<'_> {
    /// Every counter a delivery to `r` may touch (to load them before deciding).
    pub fn counter_keys(&self, r: &Recipient<'_>) -> Vec<CounterKey> {
        let mut keys: Vec<CounterKey> = self
            .type_counters(r)
            .into_iter()
            .map(|(_, key)| key)
            .collect();
        keys.push(self.device_total_key(r));
        keys
    }

    fn device_total_key(&self, r: &Recipient<'_>) -> CounterKey {
        CounterKey::per_device(Counter::DeviceTotal, r.client_id, r.device_id, self.day)
    }

    /// The push-type counters of one delivery: the MARKETING quota (not for test
    /// messages), a widget's daily refreshes, IM background messages per hour.
    fn type_counters(&self, r: &Recipient<'_>) -> Vec<(Counter, CounterKey)> {
        let (client, device, day) = (r.client_id, r.device_id, self.day);
        match &self.parsed.payload {
            Payload::Alert(_) if !self.parsed.options.test => vec![(
                Counter::Marketing,
                CounterKey::per_device(Counter::Marketing, client, device, day),
            )],
            Payload::Form(f) => vec![(
                Counter::Widget,
                CounterKey::per_device_item(Counter::Widget, client, device, f.form_id, day),
            )],
            Payload::Background(_) if self.parsed.options.im_background => vec![(
                Counter::ImBackgroundHour,
                CounterKey::per_device_item(
                    Counter::ImBackgroundHour,
                    client,
                    device,
                    self.now.div_euclid(3_600_000),
                    day,
                ),
            )],
            _ => Vec::new(),
        }
    }

    /// The charges one admitted delivery takes, in order: its push type's counter (when
    /// it applies to the effective category or mode), then device-level control.
    pub fn charges(&self, r: &Recipient<'_>, a: &Admitted, limits: &AppLimits) -> Vec<Charge> {
        let mut out = Vec::with_capacity(2);
        for (counter, key) in self.type_counters(r) {
            let (applies, limit, code) = match counter {
                // Only notifications shown as MARKETING count towards its quota.
                Counter::Marketing => (
                    a.category == Some(Category::Marketing),
                    limits.marketing_per_day,
                    ReceiptCode::FREQUENCY_LIMIT,
                ),
                Counter::Widget => (true, self.widget_daily_limit, ReceiptCode::WIDGET_LIMIT),
                // Only messages that stayed IM background messages count per hour.
                Counter::ImBackgroundHour => (
                    a.background_mode == Some(1),
                    IM_BACKGROUND_PER_HOUR,
                    ReceiptCode::FREQUENCY_LIMIT,
                ),
                Counter::DeviceTotal | Counter::TestMessages => {
                    (true, u32::MAX, ReceiptCode::DEVICE_CONTROL)
                }
            };
            if applies {
                out.push(Charge { key, limit, code });
            }
        }
        out.push(Charge {
            key: self.device_total_key(r),
            limit: limits.device_daily_total,
            code: ReceiptCode::DEVICE_CONTROL,
        });
        out
    }

    /// Take every charge of one delivery, or none: on the first that does not fit, the
    /// ones already taken are given back and its receipt code is returned.
    pub fn take_quotas(
        &self,
        r: &Recipient<'_>,
        a: &Admitted,
        limits: &AppLimits,
        ledger: &mut impl Ledger,
    ) -> Result<(), ReceiptCode> {
        take_all(&self.charges(r, a, limits), ledger)
    }

    /// A Live View operation for one device: state rules (155/156/265/268/269), the
    /// per-activity rate (256), then the quotas. `state` changes only when the operation
    /// is accepted (or an unknown id gets blocked).
    #[allow(clippy::too_many_arguments)]
    pub fn decide_live_view(
        &self,
        r: &Recipient<'_>,
        a: &Admitted,
        op: &LiveView,
        limits: &AppLimits,
        state: &mut Option<LiveViewState>,
        rate: &mut LiveRate,
        ledger: &mut impl Ledger,
    ) -> Result<(), ReceiptCode> {
        match live::decide(state.as_ref(), op, self.now) {
            LiveDecision::Reject(code, new_state) => {
                if let Some(s) = new_state {
                    *state = Some(s);
                }
                Err(code)
            }
            LiveDecision::Accept(next) => {
                if !rate.try_take(&op.event, self.now) {
                    return Err(ReceiptCode::FREQUENCY_LIMIT);
                }
                self.take_quotas(r, a, limits, ledger)?;
                *state = Some(next);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::send::parse_send;

    #[derive(Default)]
    struct Counts(HashMap<CounterKey, u32>);

    impl Ledger for Counts {
        fn try_take(&mut self, key: &CounterKey, limit: u32) -> bool {
            let n = self.0.entry(key.clone()).or_insert(0);
            if *n >= limit {
                return false;
            }
            *n += 1;
            true
        }
        fn give_back(&mut self, key: &CounterKey) {
            if let Some(n) = self.0.get_mut(key) {
                *n = n.saturating_sub(1);
            }
        }
    }

    const TOKEN: &str = "MAMzLg8xOTk4AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn parsed(category: &str) -> ParsedSend {
        let body = serde_json::json!({
            "payload": {"notification": {"category": category, "title": "t", "body": "b",
                "clickAction": {"actionType": 0}}},
            "target": {"token": [TOKEN]},
        });
        parse_send(PushType::Alert, body.to_string().as_bytes()).expect("valid body")
    }

    fn app(rights: &[Right]) -> AppPolicy {
        AppPolicy {
            rights: Arc::new(GrantedRights::new(rights.iter().cloned())),
            limits: AppLimits {
                marketing_per_day: 2,
                device_daily_total: 3,
                send_rate_per_sec: 10,
            },
        }
    }

    const WHO: Recipient<'static> = Recipient {
        project_id: "p",
        client_id: "c",
        device_id: "d",
    };

    #[test]
    fn unknown_tokens_drop_and_foreign_ones_fail() {
        let p = parsed("IM");
        assert_eq!(
            admit("p", &p, TOKEN, None, None),
            Admission::Drop(ReceiptCode::TOKEN_INVALID)
        );
        let foreign = Recipient {
            project_id: "other",
            ..WHO
        };
        assert_eq!(
            admit("p", &p, TOKEN, Some(foreign), Some(&app(&[]))),
            Admission::Fail(TokenFailure::NoRight)
        );
        assert_eq!(
            admit("p", &p, "short", Some(WHO), Some(&app(&[]))),
            Admission::Fail(TokenFailure::TokenFormatError)
        );
    }

    #[test]
    fn an_ungranted_category_is_downgraded_never_upgraded() {
        let p = parsed("IM");
        let Admission::Admit(a) = admit("p", &p, TOKEN, Some(WHO), Some(&app(&[]))) else {
            panic!("admitted");
        };
        assert_eq!(a.category, Some(Category::Marketing));
        let granted = app(&[Right::Category(Category::Im)]);
        let Admission::Admit(a) = admit("p", &p, TOKEN, Some(WHO), Some(&granted)) else {
            panic!("admitted");
        };
        assert_eq!(a.category, Some(Category::Im));
        let m = parsed("MARKETING");
        let Admission::Admit(a) = admit("p", &m, TOKEN, Some(WHO), Some(&granted)) else {
            panic!("admitted");
        };
        assert_eq!(a.category, Some(Category::Marketing));
    }

    #[test]
    fn quotas_stop_at_their_limits_and_take_all_or_nothing() {
        let p = parsed("MARKETING");
        let ctx = QuotaContext {
            parsed: &p,
            day: 1,
            now: 0,
            widget_daily_limit: 5,
        };
        let policy = app(&[]);
        let a = Admitted {
            category: Some(Category::Marketing),
            background_mode: None,
        };
        let mut ledger = Counts::default();
        assert_eq!(
            ctx.take_quotas(&WHO, &a, &policy.limits, &mut ledger),
            Ok(())
        );
        assert_eq!(
            ctx.take_quotas(&WHO, &a, &policy.limits, &mut ledger),
            Ok(())
        );
        assert_eq!(
            ctx.take_quotas(&WHO, &a, &policy.limits, &mut ledger),
            Err(ReceiptCode::FREQUENCY_LIMIT)
        );
        // The failed attempt gave back nothing it had not taken: device total is at 2.
        let total = CounterKey::per_device(Counter::DeviceTotal, "c", "d", 1);
        assert_eq!(ledger.0.get(&total), Some(&2));
        // An S&C notification skips the MARKETING counter but hits device control at 3.
        let im = Admitted {
            category: Some(Category::Im),
            background_mode: None,
        };
        assert_eq!(
            ctx.take_quotas(&WHO, &im, &policy.limits, &mut ledger),
            Ok(())
        );
        assert_eq!(
            ctx.take_quotas(&WHO, &im, &policy.limits, &mut ledger),
            Err(ReceiptCode::DEVICE_CONTROL)
        );
    }
}
