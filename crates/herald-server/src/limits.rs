//! What one client address may cost the node: the client address itself (TCP peer or a
//! trusted proxy's header), per-address connection counts, registration and login
//! back-off buckets, and the bound on concurrent password checks. Configured by
//! `[limits]` (see `config.rs` and `docs/SECURITY.md`).
//!
//! Every map here is bounded: connection counters hold only addresses with an open
//! connection (at most `max_connections`), buckets live in an LRU-like `quick_cache`
//! of `tracked_addresses` entries, so a stranger with many addresses can make the node
//! forget old back-offs but never grow its memory.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Cidrs, Limits, canonical_ip};

/// The address a request comes from: the TCP peer, or what the trusted proxy's header
/// says. The listener puts it into every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // A router served by something other than our listener (a test calling `router`
        // directly) has no address: it is nobody, exempt from nothing and trusted for
        // nothing.
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr(IpAddr::V6(Ipv6Addr::UNSPECIFIED))))
    }
}

/// The key per-address limits count under: an IPv4 address, or the /64 an IPv6 address
/// is in (one subscriber usually holds a whole /64, as ntfy's visitor limits assume).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The client address of a request that arrived from `peer`: with a trusted proxy
/// header, the last address in it (the one the proxy itself appended); else `peer`.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, proxy_header: Option<&HeaderName>) -> IpAddr {
    let from_header = proxy_header
        .and_then(|name| headers.get_all(name).iter().next_back())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    canonical_ip(from_header.unwrap_or(peer))
}

/// A leaky bucket kept as one number (GCRA): the "theoretical arrival time" of the next
/// event. `burst` events may come at once, then one per `interval_ms`.
#[derive(Debug, Clone, Copy, Default)]
struct Gcra {
    tat_ms: i64,
}

impl Gcra {
    /// How long until one more event is allowed (0: now).
    fn wait_ms(&self, now_ms: i64, interval_ms: i64, burst: u32) -> i64 {
        let allowance = interval_ms.saturating_mul(i64::from(burst.max(1)));
        (self
            .tat_ms
            .saturating_sub(allowance)
            .saturating_add(interval_ms)
            - now_ms)
            .max(0)
    }

    /// Record one event if allowed; else how long to wait.
    fn take(&mut self, now_ms: i64, interval_ms: i64, burst: u32) -> Result<(), i64> {
        match self.wait_ms(now_ms, interval_ms, burst) {
            0 => {
                self.tat_ms = self.tat_ms.max(now_ms).saturating_add(interval_ms);
                Ok(())
            }
            wait => Err(wait),
        }
    }

    /// Record one event whether or not it was allowed (a failure that happened).
    fn charge(&mut self, now_ms: i64, interval_ms: i64) {
        self.tat_ms = self.tat_ms.max(now_ms).saturating_add(interval_ms);
    }
}

/// Buckets by key, bounded: the least recently used keys are forgotten first.
struct Buckets<K> {
    map: quick_cache::sync::Cache<K, Arc<Mutex<Gcra>>>,
    interval_ms: i64,
    burst: u32,
}

impl<K: Eq + std::hash::Hash + Clone> Buckets<K> {
    fn new(capacity: usize, burst: u32, interval: Duration) -> Self {
        Buckets {
            map: quick_cache::sync::Cache::new(capacity.max(16)),
            interval_ms: i64::try_from(interval.as_millis())
                .unwrap_or(i64::MAX)
                .max(1),
            burst,
        }
    }

    fn bucket(&self, key: &K) -> Arc<Mutex<Gcra>> {
        match self.map.get(key) {
            Some(b) => b,
            None => {
                let b = Arc::new(Mutex::new(Gcra::default()));
                self.map.insert(key.clone(), b.clone());
                b
            }
        }
    }

    /// Wait before the next event of `key` is allowed, without taking it (0: now).
    fn wait_ms(&self, key: &K, now_ms: i64) -> i64 {
        match self.map.get(key) {
            None => 0,
            Some(b) => b
                .lock()
                .map(|g| g.wait_ms(now_ms, self.interval_ms, self.burst))
                .unwrap_or(0),
        }
    }

    fn take(&self, key: &K, now_ms: i64) -> Result<(), i64> {
        let b = self.bucket(key);
        let mut g = b.lock().unwrap_or_else(|p| p.into_inner());
        g.take(now_ms, self.interval_ms, self.burst)
    }

    fn charge(&self, key: &K, now_ms: i64) {
        let b = self.bucket(key);
        let mut g = b.lock().unwrap_or_else(|p| p.into_inner());
        g.charge(now_ms, self.interval_ms);
    }
}

impl<K: Eq + std::hash::Hash + Clone> std::fmt::Debug for Buckets<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buckets")
            .field("tracked", &self.map.len())
            .field("burst", &self.burst)
            .field("interval_ms", &self.interval_ms)
            .finish()
    }
}

/// Open things (connections, device sockets) per address, each held by a [`Held`]
/// guard. An address is in the map only while it holds something.
#[derive(Debug)]
pub struct Counter {
    open: Arc<DashMap<IpAddr, usize>>,
    cap: usize,
}

/// One counted thing; dropping it gives the slot back.
#[derive(Debug)]
pub struct Held {
    open: Arc<DashMap<IpAddr, usize>>,
    key: IpAddr,
}

impl Counter {
    fn new(cap: usize) -> Self {
        Counter {
            open: Arc::new(DashMap::new()),
            cap,
        }
    }

    /// Count one more for `key` unless it already holds `cap`.
    fn try_hold(&self, key: IpAddr) -> Option<Held> {
        // The entry's shard lock makes check-and-increment atomic.
        let mut n = self.open.entry(key).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        drop(n);
        Some(Held {
            open: self.open.clone(),
            key,
        })
    }

    /// Addresses holding something right now.
    pub fn addresses(&self) -> usize {
        self.open.len()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.open.remove_if_mut(&self.key, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// An address already holds as many connections (or device sockets) as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtCapacity;

/// Why a login attempt is not even checked: answer 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after_secs: u64,
}

impl Throttled {
    fn after_ms(ms: i64) -> Throttled {
        Throttled {
            retry_after_secs: u64::try_from(ms).unwrap_or(0).div_ceil(1000).max(1),
        }
    }
}

/// The node's guards, built once from `[limits]`.
#[derive(Debug)]
pub struct Guards {
    exempt: Cidrs,
    proxy_header: Option<HeaderName>,
    connections: Counter,
    device_connections: Counter,
    registrations: Buckets<IpAddr>,
    login_failures: Buckets<IpAddr>,
    user_login_failures: Buckets<String>,
    password_checks: Arc<Semaphore>,
}

impl Guards {
    pub fn new(limits: &Limits) -> Result<Guards, String> {
        for (key, value) in [
            ("max_connections", limits.max_connections),
            ("connections_per_addr", limits.connections_per_addr),
            (
                "device_connections_per_addr",
                limits.device_connections_per_addr,
            ),
            ("login_concurrency", limits.login_concurrency),
            ("jwt_cache_entries", limits.jwt_cache_entries),
            ("tracked_addresses", limits.tracked_addresses),
        ] {
            if value == 0 {
                return Err(format!(
                    "limits.{key} must be at least 1 (0 would refuse everyone)"
                ));
            }
        }
        let proxy_header = match limits.trusted_proxy_header.trim() {
            "" => None,
            name => Some(HeaderName::try_from(name).map_err(|_| {
                format!("limits.trusted_proxy_header {name:?} is not a header name")
            })?),
        };
        let per_hour = limits.registrations_per_hour.max(1);
        Ok(Guards {
            exempt: limits.exempt.clone(),
            proxy_header,
            connections: Counter::new(limits.connections_per_addr),
            device_connections: Counter::new(limits.device_connections_per_addr),
            registrations: Buckets::new(
                limits.tracked_addresses,
                limits.registrations_burst,
                Duration::from_secs(3600) / per_hour,
            ),
            login_failures: Buckets::new(
                limits.tracked_addresses,
                limits.login_failures_burst,
                Duration::from_secs(limits.login_failure_cooldown_secs.max(1)),
            ),
            user_login_failures: Buckets::new(
                1024,
                limits.user_login_failures_burst,
                Duration::from_secs(limits.user_login_failure_cooldown_secs.max(1)),
            ),
            password_checks: Arc::new(Semaphore::new(limits.login_concurrency.max(1))),
        })
    }

    /// The trusted proxy's header, when one is configured.
    pub fn proxy_header(&self) -> Option<&HeaderName> {
        self.proxy_header.as_ref()
    }

    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt.contains(&ip)
    }

    /// A TCP connection from `peer`: `None` when that address holds too many already.
    /// Behind a trusted proxy every connection comes from the proxy, so none is counted
    /// per address (the global cap still holds).
    pub fn hold_connection(&self, peer: IpAddr) -> Result<Option<Held>, AtCapacity> {
        if self.proxy_header.is_some() || self.is_exempt(peer) {
            return Ok(None);
        }
        self.connections
            .try_hold(limit_key(peer))
            .map(Some)
            .ok_or(AtCapacity)
    }

    /// A device WebSocket from `client`, held for the socket's life; `Err` past the cap.
    pub fn hold_device_connection(&self, client: IpAddr) -> Result<Option<Held>, AtCapacity> {
        if self.is_exempt(client) {
            return Ok(None);
        }
        self.device_connections
            .try_hold(limit_key(client))
            .map(Some)
            .ok_or(AtCapacity)
    }

    /// Take one device registration for `client`; `Err` (seconds to wait) past the burst.
    pub fn take_registration(&self, client: IpAddr, now_ms: i64) -> Result<(), Throttled> {
        if self.is_exempt(client) {
            return Ok(());
        }
        self.registrations
            .take(&limit_key(client), now_ms)
            .map_err(Throttled::after_ms)
    }

    /// Whether a login from `client` for `username` may be checked at all: the address
    /// and the user must not be in back-off.
    pub fn login_allowed(
        &self,
        client: IpAddr,
        username: &str,
        now_ms: i64,
    ) -> Result<(), Throttled> {
        let by_addr = if self.is_exempt(client) {
            0
        } else {
            self.login_failures.wait_ms(&limit_key(client), now_ms)
        };
        let by_user = self
            .user_login_failures
            .wait_ms(&username.to_owned(), now_ms);
        match by_addr.max(by_user) {
            0 => Ok(()),
            wait => Err(Throttled::after_ms(wait)),
        }
    }

    /// A failed login: counts against the address and, if it exists, the user.
    pub fn login_failed(&self, client: IpAddr, known_user: Option<&str>, now_ms: i64) {
        if !self.is_exempt(client) {
            self.login_failures.charge(&limit_key(client), now_ms);
        }
        if let Some(user) = known_user {
            self.user_login_failures.charge(&user.to_owned(), now_ms);
        }
    }

    /// A slot for one password check, if one is free right now. The permit must live as
    /// long as the check (move it into the blocking task), not just the request.
    pub fn password_check(&self) -> Option<OwnedSemaphorePermit> {
        self.password_checks.clone().try_acquire_owned().ok()
    }

    /// Addresses with an open connection, and with an open device socket.
    pub fn tracked(&self) -> (usize, usize) {
        (
            self.connections.addresses(),
            self.device_connections.addresses(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_one_per_interval() {
        let mut g = Gcra::default();
        let now = 1_000_000;
        for _ in 0..3 {
            assert_eq!(g.take(now, 1000, 3), Ok(()));
        }
        assert_eq!(g.take(now, 1000, 3), Err(1000));
        assert_eq!(g.take(now + 999, 1000, 3), Err(1));
        assert_eq!(g.take(now + 1000, 1000, 3), Ok(()));
        assert!(g.take(now + 1000, 1000, 3).is_err());
        // Long quiet: the whole burst is back, not more.
        let later = now + 60_000;
        for _ in 0..3 {
            assert_eq!(g.take(later, 1000, 3), Ok(()));
        }
        assert!(g.take(later, 1000, 3).is_err());
    }

    #[test]
    fn counters_give_slots_back_and_forget_idle_addresses() {
        let c = Counter::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = c.try_hold(ip).unwrap();
        let b = c.try_hold(ip).unwrap();
        assert!(c.try_hold(ip).is_none());
        drop(a);
        let a = c.try_hold(ip).unwrap();
        drop((a, b));
        assert_eq!(c.addresses(), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a = limit_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = limit_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(
            limit_key("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_proxy_header_counts_only_when_configured() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.4".parse().unwrap(),
        );
        let name = HeaderName::from_static("x-forwarded-for");
        assert_eq!(client_addr(peer, &headers, None), peer);
        assert_eq!(
            client_addr(peer, &headers, Some(&name)),
            "198.51.100.4".parse::<IpAddr>().unwrap()
        );
        headers.insert("x-forwarded-for", "nonsense".parse().unwrap());
        assert_eq!(client_addr(peer, &headers, Some(&name)), peer);
    }

    #[test]
    fn zero_caps_are_refused() {
        let limits = Limits {
            connections_per_addr: 0,
            ..Limits::default()
        };
        let err = Guards::new(&limits).unwrap_err();
        assert!(err.contains("connections_per_addr"), "{err}");
        assert!(Guards::new(&Limits::default()).is_ok());
    }

    #[test]
    fn bucket_maps_stay_bounded() {
        let b: Buckets<IpAddr> = Buckets::new(100, 1, Duration::from_secs(60));
        for i in 0..10_000u32 {
            b.charge(&IpAddr::from(i.to_be_bytes()), 0);
        }
        assert!(b.map.len() <= 200, "{} entries", b.map.len());
    }
}
