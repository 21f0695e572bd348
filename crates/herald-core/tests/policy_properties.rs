//! Property tests of the send policy's promises, over any sequence of sends and reports:
//! quotas are never exceeded, a category downgrade never upgrades, a TTL is never
//! extended, and a delivery's state never moves backwards.
//!
//! The checks are models written independently of the policy: they count what was
//! admitted per device and day and compare with the limits, rather than trusting the
//! counters the policy chose to charge.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected by design

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use herald_core::policy::{Admission, AppPolicy, Ledger, QuotaContext, Recipient, admit};
use herald_core::quota::{AppLimits, CounterKey, IM_BACKGROUND_PER_HOUR};
use herald_core::rights::{GrantedRights, Right};
use herald_core::send::{MAX_TTL_SECS, ParsedSend, PushType, parse_send};
use herald_core::{Category, DeliveryState, Outcome, ReceiptCode};
use herald_proto::code::Code;
use proptest::prelude::*;
use serde_json::{Value, json};

const TOKEN: &str = "MAMzLg8xOTk4AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const HOUR_MS: i64 = 3_600_000;

/// Counters as the server holds them: take one unit below the limit, give one back.
#[derive(Debug, Default, Clone)]
struct Counts(HashMap<CounterKey, u32>);

impl Counts {
    /// The units taken (a counter at zero is the same as none).
    fn taken(&self) -> BTreeMap<CounterKey, u32> {
        self.0
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }
}

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

/// What one generated send is.
#[derive(Debug, Clone)]
enum Kind {
    /// push-type 0 with this category; `test` = a test message (no MARKETING quota).
    Alert { category: Category, test: bool },
    /// push-type 1, a refresh of widget `form_id`.
    Form { form_id: u8 },
    /// push-type 6, asking for `backgroundMode: 1` or not.
    Background { im: bool },
}

#[derive(Debug, Clone)]
struct Send {
    kind: Kind,
    device: u8,
    day: i32,
    hour: i64,
}

fn category() -> impl Strategy<Value = Category> {
    (0..Category::ALL.len()).prop_map(|i| Category::ALL[i])
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        // PLAY_VOICE is refused on push-type 0 (a failure, not a delivery).
        (category(), any::<bool>()).prop_map(|(category, test)| Kind::Alert { category, test }),
        (0u8..3).prop_map(|form_id| Kind::Form { form_id }),
        any::<bool>().prop_map(|im| Kind::Background { im }),
    ]
}

fn send() -> impl Strategy<Value = Send> {
    (kind(), 0u8..3, 1i32..3, 0i64..3).prop_map(|(kind, device, day, hour)| Send {
        kind,
        device,
        day,
        hour,
    })
}

/// Any set of rights over the S&C categories and IM background messages.
fn rights() -> impl Strategy<Value = Vec<Right>> {
    let grantable: Vec<Right> = Category::ALL
        .into_iter()
        .filter(|c| c.is_service_and_communication())
        .map(Right::Category)
        .chain([Right::ImBackground])
        .collect();
    proptest::sample::subsequence(grantable.clone(), 0..=grantable.len())
}

fn limits() -> impl Strategy<Value = (AppLimits, u32)> {
    (0u32..6, 0u32..12, 0u32..5).prop_map(|(marketing, total, widget)| {
        (
            AppLimits {
                marketing_per_day: marketing,
                device_daily_total: total,
                send_rate_per_sec: 10,
            },
            widget,
        )
    })
}

fn parsed(kind: &Kind) -> ParsedSend {
    let (push_type, payload, options) = match kind {
        Kind::Alert { category, test } => (
            PushType::Alert,
            json!({"notification": {"category": category.as_str(), "title": "t", "body": "b",
                "clickAction": {"actionType": 0}}}),
            json!({"testMessage": test}),
        ),
        Kind::Form { form_id } => (
            PushType::Form,
            json!({"formId": form_id, "version": 1, "moduleName": "m", "formName": "f",
                "abilityName": "a", "formData": {}}),
            json!({}),
        ),
        Kind::Background { im } => (
            PushType::Background,
            json!({"extraData": "x"}),
            json!({"backgroundMode": u8::from(*im)}),
        ),
    };
    let body = json!({"payload": payload, "target": {"token": [TOKEN]}, "pushOptions": options});
    parse_send(push_type, body.to_string().as_bytes()).unwrap()
}

/// Admitted deliveries per (device, day, …), counted by the model.
#[derive(Debug, Default)]
struct Tally {
    total: BTreeMap<(u8, i32), u32>,
    marketing: BTreeMap<(u8, i32), u32>,
    widget: BTreeMap<(u8, i32, u8), u32>,
    im_background: BTreeMap<(u8, i32, i64), u32>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Over any sequence of sends, per device: admitted messages per day never pass the
    /// device-level total, notifications shown as MARKETING (not test messages) never
    /// pass the MARKETING quota, refreshes of one widget never pass its daily limit, IM
    /// background messages never pass 2 per hour; and a refused delivery takes nothing.
    #[test]
    fn quotas_are_never_exceeded(
        granted in rights(),
        (limits, widget_daily_limit) in limits(),
        sends in proptest::collection::vec(send(), 1..80),
    ) {
        let policy = AppPolicy {
            rights: Arc::new(GrantedRights::new(granted.iter().cloned())),
            limits,
        };
        let mut ledger = Counts::default();
        let mut tally = Tally::default();
        for s in &sends {
            let parsed = parsed(&s.kind);
            let device = format!("device-{}", s.device);
            let who = Recipient { project_id: "p", client_id: "c", device_id: &device };
            let Admission::Admit(admitted) = admit("p", &parsed, TOKEN, Some(who), Some(&policy))
            else {
                continue;
            };
            let ctx = QuotaContext {
                parsed: &parsed,
                day: s.day,
                // The hours of one day, so that the hour counter is tested within days.
                now: i64::from(s.day) * 24 * HOUR_MS + s.hour * HOUR_MS,
                widget_daily_limit,
            };
            let before = ledger.taken();
            if let Err(code) = ctx.take_quotas(&who, &admitted, &policy.limits, &mut ledger) {
                prop_assert_eq!(ledger.taken(), before, "a refused delivery ({}) took a unit", code);
                continue;
            }
            *tally.total.entry((s.device, s.day)).or_default() += 1;
            match &s.kind {
                Kind::Alert { category, test } => {
                    let shown_as_marketing = *category == Category::Marketing
                        || !granted.contains(&Right::Category(*category));
                    if shown_as_marketing && !test {
                        *tally.marketing.entry((s.device, s.day)).or_default() += 1;
                    }
                }
                Kind::Form { form_id } => {
                    *tally.widget.entry((s.device, s.day, *form_id)).or_default() += 1;
                }
                Kind::Background { im } => {
                    if *im && granted.contains(&Right::ImBackground) {
                        *tally.im_background.entry((s.device, s.day, s.hour)).or_default() += 1;
                    }
                }
            }
        }
        for (k, n) in &tally.total {
            prop_assert!(*n <= limits.device_daily_total, "device total {:?}: {}", k, n);
        }
        for (k, n) in &tally.marketing {
            prop_assert!(*n <= limits.marketing_per_day, "MARKETING {:?}: {}", k, n);
        }
        for (k, n) in &tally.widget {
            prop_assert!(*n <= widget_daily_limit, "widget {:?}: {}", k, n);
        }
        for (k, n) in &tally.im_background {
            prop_assert!(*n <= IM_BACKGROUND_PER_HOUR, "IM background {:?}: {}", k, n);
        }
    }

    /// A notification is shown with the category it asked for when the app holds that
    /// category's right, else as MARKETING: never with a category it did not ask for
    /// other than MARKETING, never with one the app lacks. A background message is an
    /// IM background message only when asked for and the right is held.
    #[test]
    fn a_downgrade_never_upgrades(granted in rights(), kind in kind()) {
        let policy = AppPolicy {
            rights: Arc::new(GrantedRights::new(granted.iter().cloned())),
            limits: AppLimits { marketing_per_day: 2, device_daily_total: 3, send_rate_per_sec: 1 },
        };
        let parsed = parsed(&kind);
        let who = Recipient { project_id: "p", client_id: "c", device_id: "d" };
        let admission = admit("p", &parsed, TOKEN, Some(who), Some(&policy));
        match (&kind, admission) {
            (Kind::Alert { category, .. }, Admission::Admit(a)) => {
                let shown = a.category.unwrap();
                prop_assert!(shown == *category || shown == Category::Marketing,
                    "{:?} shown as {:?}", category, shown);
                if shown.is_service_and_communication() {
                    prop_assert!(granted.contains(&Right::Category(shown)),
                        "{:?} shown without its right", shown);
                }
                if granted.contains(&Right::Category(*category)) {
                    prop_assert_eq!(shown, *category, "a granted category was downgraded");
                }
                prop_assert_eq!(a.background_mode, None);
            }
            (Kind::Alert { category, .. }, Admission::Fail(_)) => {
                prop_assert_eq!(*category, Category::PlayVoice, "only PLAY_VOICE fails on type 0");
            }
            (Kind::Background { im }, Admission::Admit(a)) => {
                let expected = u8::from(*im && granted.contains(&Right::ImBackground));
                prop_assert_eq!(a.background_mode, Some(expected));
                prop_assert_eq!(a.category, None);
            }
            (Kind::Form { .. }, Admission::Admit(a)) => {
                prop_assert_eq!((a.category, a.background_mode), (None, None));
            }
            (kind, other) => prop_assert!(false, "{:?} → {:?}", kind, other),
        }
    }

    /// Whatever `ttl` a send carries (a number, the `"Ns"` string form, anything else),
    /// it is refused with 80100004 or kept exactly: never raised to a default or a
    /// maximum, and the message expires exactly that long after it was sent.
    #[test]
    fn a_ttl_is_never_extended(
        ttl in prop_oneof![
            any::<i64>().prop_map(Value::from),
            (-10i64..=i64::from(MAX_TTL_SECS) + 10).prop_map(Value::from),
            (-10i64..=i64::from(MAX_TTL_SECS) + 10).prop_map(|s| Value::from(format!("{s}s"))),
            any::<f64>().prop_map(Value::from),
            "[0-9a-z.-]{0,12}".prop_map(Value::from),
        ],
        sent_at in 0i64..4_000_000_000_000,
    ) {
        let body = json!({"payload": {"notification": {"category": "MARKETING", "title": "t",
            "body": "b", "clickAction": {"actionType": 0}}}, "target": {"token": [TOKEN]},
            "pushOptions": {"ttl": ttl}});
        let asked: Option<i64> = match &ttl {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.strip_suffix('s').unwrap_or(s).parse().ok(),
            _ => None,
        };
        match parse_send(PushType::Alert, body.to_string().as_bytes()) {
            Ok(p) => {
                let asked = asked.unwrap();
                prop_assert_eq!(i64::from(p.options.ttl_secs), asked, "ttl {} changed", ttl);
                prop_assert!(p.options.ttl_secs <= MAX_TTL_SECS);
                prop_assert_eq!(p.options.expires_at(sent_at), sent_at + asked * 1000);
            }
            Err(r) => {
                prop_assert_eq!(r.code, Code::IllegalExpireTime, "ttl {}: {}", ttl, r.msg);
                prop_assert!(
                    asked.is_none_or(|s| !(0..=i64::from(MAX_TTL_SECS)).contains(&s)),
                    "a valid ttl {} was refused", ttl
                );
            }
        }
    }

    /// From any state, under any sequence of outcomes (device reports and the server's
    /// own endings): the state only moves forward along the lifecycle, an ended delivery
    /// never changes, and no outcome is ever recorded twice.
    #[test]
    fn a_delivery_never_moves_backwards(
        start in (0..DeliveryState::ALL.len()).prop_map(|i| DeliveryState::ALL[i]),
        outcomes in proptest::collection::vec(outcome(), 0..30),
    ) {
        let mut state = start;
        let mut recorded: Vec<Outcome> = Vec::new();
        for o in outcomes {
            let moves = state.advance(o);
            if is_final(state) {
                prop_assert!(moves.is_empty(), "ended {:?} moved by {:?}", state, o);
            }
            for m in moves {
                let next = DeliveryState::of(m);
                prop_assert!(rank(next) > rank(state), "{:?} → {:?} by {:?}", state, next, o);
                prop_assert!(!recorded.iter().any(|r| r.name() == m.name()),
                    "{} recorded twice", m.name());
                recorded.push(m);
                state = next;
            }
        }
    }
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Queued),
        Just(Outcome::Delivered),
        Just(Outcome::Shown),
        Just(Outcome::Clicked),
        Just(Outcome::Suppressed(ReceiptCode::NOTIFICATIONS_OFF)),
        Just(Outcome::Suppressed(ReceiptCode::PROFILE_NOT_FOUND)),
        Just(Outcome::Replaced),
        Just(Outcome::Expired),
        Just(Outcome::Revoked),
        Just(Outcome::Dropped(ReceiptCode::TOKEN_INVALID)),
    ]
}

/// A state's place along the lifecycle: `queued → delivered → shown → clicked`, every
/// ending after all of them.
fn rank(s: DeliveryState) -> u8 {
    match s {
        DeliveryState::Queued => 0,
        DeliveryState::Delivered => 1,
        DeliveryState::Shown => 2,
        _ => 3,
    }
}

/// Nothing moves a delivery out of these.
fn is_final(s: DeliveryState) -> bool {
    rank(s) == 3
}
