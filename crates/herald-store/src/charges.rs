//! Quotas enforced where they are kept: the one rule both engines use to take a
//! request's counters in the transaction that stores it.
//!
//! A node decides quotas from counters it holds in memory, which another node sharing the
//! store cannot see; so the store takes them again when it commits. Each engine raises
//! every counter the request charges with one conditional increment per counter (`used +
//! n` only while it stays within the limit), then [`settle`] applies
//! [`herald_core::policy::take_all`] per delivery against what the increments took:
//! a delivery whose counter did not fit is dropped with that charge's code, and the
//! units its other counters took are given back before the commit. Two requests for
//! one counter serialise on its row (PostgreSQL) or on the writer (SQLite), so the
//! limit holds across any number of nodes.
//!
//! A counter is charged at most once per request in practice (a device has one active
//! token per app, and a request's tokens are distinct); should one be charged `n > 1`
//! times and only part of `n` fit, all its deliveries are dropped (never too many sent).

use std::collections::{BTreeMap, HashMap};

use herald_core::ReceiptCode;
use herald_core::policy::{Ledger, take_all};
use herald_core::quota::CounterKey;

use crate::Enqueue;

/// One counter a request charges: how many units, within which limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyCharge {
    pub key: CounterKey,
    /// The stored name (`CounterKey`'s text form).
    pub name: String,
    pub n: u32,
    pub limit: u32,
}

impl KeyCharge {
    /// Whether the increment can be tried at all (`n` units fit an empty counter).
    pub fn can_fit(&self) -> bool {
        self.n <= self.limit
    }
}

/// Every counter `batch` charges (its own and its deliveries'), summed per counter and
/// in key order (the order engines lock them in). Of two limits for one counter, the
/// smaller holds.
pub(crate) fn key_charges(batch: &Enqueue) -> Vec<KeyCharge> {
    let mut by_key: BTreeMap<&CounterKey, (u32, u32)> = BTreeMap::new();
    let all = batch
        .charges
        .iter()
        .chain(batch.deliveries.iter().flat_map(|d| d.charges.iter()));
    for c in all {
        let e = by_key.entry(&c.key).or_insert((0, c.limit));
        e.0 = e.0.saturating_add(1);
        e.1 = e.1.min(c.limit);
    }
    let mut out: Vec<KeyCharge> = by_key
        .into_iter()
        .map(|(key, (n, limit))| KeyCharge {
            name: key.to_string(),
            key: key.clone(),
            n,
            limit,
        })
        .collect();
    // Locked in the order of the stored names (what the database compares).
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What became of a request's charges.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Per delivery of the batch (same index): the code it is dropped with, if refused.
    pub refused: Vec<Option<ReceiptCode>>,
    /// Units the increments took that the request does not keep, per stored name.
    pub give_back: Vec<(String, u32)>,
    /// Every charged counter as the commit leaves it (see `EnqueueResult::counters`).
    pub counters: Vec<(CounterKey, u32)>,
}

/// The units one request's increments took, handed out to its charges in order.
struct Taken<'a> {
    /// Units still available per counter (what its increment took).
    left: HashMap<&'a CounterKey, u32>,
    /// Units given back per counter.
    returned: HashMap<CounterKey, u32>,
}

impl Ledger for Taken<'_> {
    fn try_take(&mut self, key: &CounterKey, _limit: u32) -> bool {
        match self.left.get_mut(key) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    fn give_back(&mut self, key: &CounterKey) {
        *self.returned.entry(key.clone()).or_insert(0) += 1;
    }
}

/// Settle `batch` given what the increments did: `used_after[name]` is a counter's stored
/// count after its increment, absent when the increment did not fit.
pub(crate) fn settle(
    batch: &Enqueue,
    keys: &[KeyCharge],
    used_after: &HashMap<String, u32>,
) -> Settled {
    let mut taken = Taken {
        left: keys
            .iter()
            .filter(|k| used_after.contains_key(&k.name))
            .map(|k| (&k.key, k.n))
            .collect(),
        returned: HashMap::new(),
    };
    let refused: Vec<Option<ReceiptCode>> = match take_all(&batch.charges, &mut taken) {
        Err(code) => vec![Some(code); batch.deliveries.len()],
        Ok(()) => batch
            .deliveries
            .iter()
            .map(|d| take_all(&d.charges, &mut taken).err())
            .collect(),
    };
    let mut give_back = Vec::new();
    let mut counters = Vec::with_capacity(keys.len());
    for k in keys {
        match used_after.get(&k.name) {
            Some(&used) => {
                // Units handed to no kept charge: never taken (a refused request leaves
                // every unit) or given back by a delivery refused on another counter.
                let unused = taken.left.get(&k.key).copied().unwrap_or(0)
                    + taken.returned.get(&k.key).copied().unwrap_or(0);
                if unused > 0 {
                    give_back.push((k.name.clone(), unused));
                }
                counters.push((k.key.clone(), used.saturating_sub(unused)));
            }
            None => counters.push((k.key.clone(), k.limit)),
        }
    }
    Settled {
        refused,
        give_back,
        counters,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use herald_core::policy::Charge;
    use herald_core::quota::Counter;

    use super::*;
    use crate::{MessageKind, NewDelivery, NewMessage};

    fn key(counter: Counter, device: &str) -> CounterKey {
        CounterKey::per_device(counter, "c", device, 20270101)
    }

    fn charge(counter: Counter, device: &str, limit: u32, code: u32) -> Charge {
        Charge {
            key: key(counter, device),
            limit,
            code: ReceiptCode(code),
        }
    }

    fn delivery(token: i64, charges: Vec<Charge>) -> NewDelivery {
        NewDelivery {
            token,
            device: token,
            client_id: "c".into(),
            category: None,
            background_mode: None,
            offline: false,
            charges,
        }
    }

    fn batch(charges: Vec<Charge>, deliveries: Vec<NewDelivery>) -> Enqueue {
        Enqueue {
            message: NewMessage {
                request_id: "r".into(),
                project_id: "p".into(),
                push_type: 0,
                kind: MessageKind::Message,
                payload: "{}".into(),
                bi_tag: None,
                receipt_id: None,
                test: false,
                created_at: 0,
                expires_at: 1,
                collapse_key: None,
                notify_id: None,
                form_id: None,
                receipt_hold_ms: None,
            },
            deliveries,
            drops: vec![],
            charges,
            live_views: vec![],
        }
    }

    #[test]
    fn a_full_counter_drops_its_delivery_and_returns_what_the_others_took() {
        let b = batch(
            vec![],
            vec![
                delivery(
                    1,
                    vec![
                        charge(Counter::Marketing, "d1", 2, 256),
                        charge(Counter::DeviceTotal, "d1", 10, 102),
                    ],
                ),
                delivery(
                    2,
                    vec![
                        charge(Counter::Marketing, "d2", 2, 256),
                        charge(Counter::DeviceTotal, "d2", 10, 102),
                    ],
                ),
            ],
        );
        let keys = key_charges(&b);
        assert_eq!(keys.len(), 4);
        assert!(keys.windows(2).all(|w| w[0].name < w[1].name));
        // d1's MARKETING counter was full; everything else fitted.
        let used: HashMap<String, u32> = keys
            .iter()
            .filter(|k| k.key != key(Counter::Marketing, "d1"))
            .map(|k| (k.name.clone(), 1))
            .collect();
        let s = settle(&b, &keys, &used);
        assert_eq!(s.refused, vec![Some(ReceiptCode(256)), None]);
        // d1's device total is not kept: given back.
        assert_eq!(
            s.give_back,
            vec![(key(Counter::DeviceTotal, "d1").to_string(), 1)]
        );
        assert!(s.counters.contains(&(key(Counter::Marketing, "d1"), 2)));
        assert!(s.counters.contains(&(key(Counter::DeviceTotal, "d1"), 0)));
        assert!(s.counters.contains(&(key(Counter::Marketing, "d2"), 1)));
    }

    #[test]
    fn a_full_request_counter_drops_every_delivery_and_keeps_nothing() {
        let test = Charge {
            key: CounterKey::per_project(Counter::TestMessages, "p", 20270101),
            limit: 1000,
            code: ReceiptCode(256),
        };
        let b = batch(
            vec![test],
            vec![delivery(
                1,
                vec![charge(Counter::DeviceTotal, "d1", 10, 102)],
            )],
        );
        let keys = key_charges(&b);
        let used: HashMap<String, u32> = keys
            .iter()
            .filter(|k| k.key.counter == Counter::DeviceTotal)
            .map(|k| (k.name.clone(), 3))
            .collect();
        let s = settle(&b, &keys, &used);
        assert_eq!(s.refused, vec![Some(ReceiptCode(256))]);
        assert_eq!(
            s.give_back,
            vec![(key(Counter::DeviceTotal, "d1").to_string(), 1)]
        );
    }
}
