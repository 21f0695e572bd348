//! The send path's policy state: app rights, daily quota counters and per-app send
//! rates, cached in memory with the store as the truth.
//!
//! Why counters live in memory: a send to 1000 tokens must not cost 1000 database round
//! trips, and two concurrent sends must never both take the last slot of a quota. Each
//! counter is loaded from the store once (in one batch per request for the keys it
//! misses), then reserved and released atomically under DashMap's per-shard lock. The
//! store takes the same charges again, conditionally, in the transaction that commits
//! the messages (`NewDelivery::charges`): on a shared store another node's sends are
//! invisible here, so the store has the last word, and this node's copy catches up from
//! what each commit reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use herald_core::live::{LiveRate, LiveViewState};
use herald_core::quota::{CounterKey, TokenBucket};
use herald_core::rights::{GrantedRights, Right, RightState};
use herald_store::{LiveViewKey, Store, StoreError};

/// Granted rights per app.
#[derive(Debug, Default)]
pub struct RightsCache {
    map: DashMap<String, Arc<GrantedRights>>,
}

impl RightsCache {
    pub async fn get(
        &self,
        store: &dyn Store,
        client_id: &str,
    ) -> Result<Arc<GrantedRights>, StoreError> {
        if let Some(r) = self.map.get(client_id) {
            return Ok(r.clone());
        }
        let granted = GrantedRights::new(
            store
                .rights(client_id)
                .await?
                .into_iter()
                .filter(|r| r.state == RightState::Granted)
                .filter_map(|r| r.name.parse::<Right>().ok()),
        );
        let granted = Arc::new(granted);
        self.map.insert(client_id.to_owned(), granted.clone());
        Ok(granted)
    }

    /// Forget an app's rights after an operator changed them.
    pub fn invalidate(&self, client_id: &str) {
        self.map.remove(client_id);
    }

    /// Forget every app's rights.
    pub fn clear(&self) {
        self.map.clear();
    }
}

/// Daily counters.
#[derive(Debug, Default)]
pub struct QuotaBook {
    used: DashMap<CounterKey, u32>,
}

/// Counters reserved by one request; released unless committed.
#[derive(Debug, Default)]
pub struct Reservation {
    taken: Vec<CounterKey>,
}

impl QuotaBook {
    /// Make sure every key is in memory, loading the missing ones in one store call.
    pub async fn load(&self, store: &dyn Store, keys: &[CounterKey]) -> Result<(), StoreError> {
        let mut missing: Vec<CounterKey> = keys
            .iter()
            .filter(|k| !self.used.contains_key(*k))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        for (key, used) in store.quota_usage(&missing).await? {
            // A concurrent request may have loaded (and reserved) it meanwhile: keep that.
            self.used.entry(key).or_insert(used);
        }
        Ok(())
    }

    /// Take one unit of `key` if fewer than `limit` are used. The key must be loaded.
    pub fn try_take(&self, key: &CounterKey, limit: u32, into: &mut Reservation) -> bool {
        let mut entry = self.used.entry(key.clone()).or_insert(0);
        if *entry >= limit {
            return false;
        }
        *entry += 1;
        into.taken.push(key.clone());
        true
    }

    /// Give back one unit of `key` taken into `from` (e.g. a later check failed).
    pub fn give_back(&self, key: &CounterKey, from: &mut Reservation) {
        if let Some(i) = from.taken.iter().rposition(|k| k == key) {
            from.taken.remove(i);
            if let Some(mut n) = self.used.get_mut(key) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Undo a whole reservation (its request was not stored).
    pub fn release(&self, r: Reservation) {
        for k in r.taken {
            if let Some(mut n) = self.used.get_mut(&k) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Raise counters to what the store holds after a commit (other nodes sharing the
    /// store count too); never lowers one (this node's requests in flight hold units the
    /// store has not seen yet).
    pub fn catch_up(&self, stored: &[(CounterKey, u32)]) {
        for (key, used) in stored {
            if let Some(mut n) = self.used.get_mut(key)
                && *n < *used
            {
                *n = *used;
            }
        }
    }

    /// Forget counters, so that their next use reads them from the store again (after
    /// the store refused what this node's copy allowed).
    pub fn forget<'a>(&self, keys: impl Iterator<Item = &'a CounterKey>) {
        for key in keys {
            self.used.remove(key);
        }
    }

    /// Current usage of a loaded key (for the admin API).
    pub fn used(&self, key: &CounterKey) -> Option<u32> {
        self.used.get(key).map(|n| *n)
    }

    /// Drop counters of days before `today` (they can no longer be reached).
    pub fn forget_before(&self, today: i32) {
        self.used.retain(|k, _| k.day >= today);
    }

    /// Forget every counter (the emulator's reset emptied the stored ones).
    pub fn clear(&self) {
        self.used.clear();
    }
}

/// Per-app send rates (`send_rate_per_sec`, requests per second).
///
/// On a node's own store, a token bucket per app in memory (one second's burst). On a
/// store shared by several nodes the rate is the cluster's: each calendar second has one
/// budget per app in the store (`QuotaStore::take_send_budget`), and a node takes a slice
/// of it at a time ([`budget_slice`]: a twentieth of the rate, at least 1), so a busy app
/// costs each node about twenty store round trips a second rather than one per request.
/// The nodes together never pass the rate within a second; what a node's last slice
/// leaves unused when the second ends is lost, so the cluster may admit up to a
/// twentieth of the rate less per busy node than the rate allows.
#[derive(Debug)]
pub enum RateLimits {
    Local(DashMap<String, Arc<Mutex<TokenBucket>>>),
    Shared(DashMap<String, Arc<tokio::sync::Mutex<BudgetSlice>>>),
}

/// What a node holds of an app's shared budget for one second.
#[derive(Debug, Default)]
pub struct BudgetSlice {
    second: i64,
    left: u32,
    /// The store had less than a slice left: the second's budget is spent.
    spent: bool,
}

/// How many requests of a shared budget a node takes at once.
pub fn budget_slice(rate: u32) -> u32 {
    (rate / 20).max(1)
}

impl RateLimits {
    /// The kind of limit a node uses: shared when its store is shared by several nodes.
    pub fn new(shared_store: bool) -> Self {
        if shared_store {
            RateLimits::Shared(DashMap::new())
        } else {
            RateLimits::Local(DashMap::new())
        }
    }

    /// Take one request's slot of the app's rate at `now_ms`; `false`: over the rate.
    pub async fn try_take(
        &self,
        store: &dyn Store,
        client_id: &str,
        rate: u32,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        match self {
            RateLimits::Local(buckets) => Ok(take_from_bucket(buckets, client_id, rate, now_ms)),
            RateLimits::Shared(slices) => {
                let slot = slices.entry(client_id.to_owned()).or_default().clone();
                // One fetch per app at a time on this node: requests that find the slice
                // empty while another fetches wait for it (a tokio mutex, held across the
                // store call), then take from the refilled slice.
                let mut slice = slot.lock().await;
                let second = now_ms.div_euclid(1000);
                if slice.second != second {
                    *slice = BudgetSlice {
                        second,
                        left: 0,
                        spent: false,
                    };
                }
                if slice.left == 0 && !slice.spent {
                    let want = budget_slice(rate);
                    let got = store
                        .take_send_budget(client_id, second, want, rate.max(1))
                        .await?;
                    slice.left = got;
                    slice.spent = got < want;
                }
                if slice.left == 0 {
                    return Ok(false);
                }
                slice.left -= 1;
                Ok(true)
            }
        }
    }
}

fn take_from_bucket(
    buckets: &DashMap<String, Arc<Mutex<TokenBucket>>>,
    client_id: &str,
    rate: u32,
    now_ms: i64,
) -> bool {
    let bucket = buckets
        .entry(client_id.to_owned())
        .or_insert_with(|| Arc::new(Mutex::new(TokenBucket::new(rate, now_ms))))
        .clone();
    let Ok(mut b) = bucket.lock() else {
        return true;
    };
    if b.rate() != rate {
        *b = TokenBucket::new(rate, now_ms);
    }
    b.try_take(now_ms)
}

/// Live View state per activity per device, loaded from the store on first use; the
/// per-activity rate windows live in memory only (a restart forgets them).
#[derive(Debug, Default)]
pub struct LiveViewBook {
    map: DashMap<LiveViewKey, LiveEntry>,
}

#[derive(Debug, Default)]
pub struct LiveEntry {
    pub state: Option<LiveViewState>,
    pub rate: LiveRate,
}

impl LiveViewBook {
    /// Make sure every key is in memory, loading the missing ones in one store call.
    pub async fn load(&self, store: &dyn Store, keys: &[LiveViewKey]) -> Result<(), StoreError> {
        let missing: Vec<LiveViewKey> = keys
            .iter()
            .filter(|k| !self.map.contains_key(*k))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let found: HashMap<LiveViewKey, LiveViewState> =
            store.live_views(&missing).await?.into_iter().collect();
        for key in missing {
            let state = found.get(&key).cloned();
            self.map.entry(key).or_insert_with(|| LiveEntry {
                state,
                rate: LiveRate::default(),
            });
        }
        Ok(())
    }

    /// Run `f` on the activity's entry under its shard lock, so that decisions about one
    /// activity never interleave.
    pub fn with_entry<T>(&self, key: &LiveViewKey, f: impl FnOnce(&mut LiveEntry) -> T) -> T {
        let mut entry = self.map.entry(key.clone()).or_default();
        f(&mut entry)
    }

    /// Forget every activity (the emulator's reset emptied the stored states).
    pub fn clear(&self) {
        self.map.clear();
    }

    /// Put back states a request changed but failed to store.
    pub fn restore(&self, previous: Vec<(LiveViewKey, Option<LiveViewState>)>) {
        for (key, state) in previous {
            if let Some(mut e) = self.map.get_mut(&key) {
                e.state = state;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::quota::Counter;

    #[test]
    fn units_are_taken_within_the_limit_given_back_and_caught_up_never_down() {
        let book = QuotaBook::default();
        let key = CounterKey::per_device(Counter::Marketing, "1", "d", 20261201);
        let mut r = Reservation::default();
        assert!(book.try_take(&key, 2, &mut r));
        assert!(book.try_take(&key, 2, &mut r));
        assert!(!book.try_take(&key, 2, &mut r), "the limit holds");
        book.give_back(&key, &mut r);
        assert_eq!(book.used(&key), Some(1));
        // Another node's commits count: raised to the store's count, never lowered.
        book.catch_up(&[(key.clone(), 2)]);
        assert_eq!(book.used(&key), Some(2));
        book.catch_up(&[(key.clone(), 0)]);
        assert_eq!(book.used(&key), Some(2));
        book.release(r);
        assert_eq!(book.used(&key), Some(1));
    }
}
