//! Shared server state: the store, the caches that keep the hot paths off the database,
//! the connection registry and the shutdown signal.

use std::sync::Arc;

use std::collections::HashMap;

use dashmap::DashMap;
use herald_core::Clock;
use herald_store::{App, Store, StoreError, TokenRecord};

use crate::acks::DeviceReports;
use tokio_util::sync::CancellationToken;

use crate::auth::JwtVerifier;
use crate::config::Config;
use crate::registry::Registry;

/// Everything handlers share. Cloned as `Arc<AppState>`.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    /// Base URL backends and devices use (no trailing slash).
    pub public_url: String,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub jwt: JwtVerifier,
    pub tokens: TokenCache,
    pub apps: AppCache,
    /// Whether each project's push service is on (`PATCH /api/v1/projects/{id}`).
    pub projects: ProjectSwitches,
    pub registry: Registry,
    pub rights: crate::policy::RightsCache,
    pub quotas: crate::policy::QuotaBook,
    pub live_views: crate::policy::LiveViewBook,
    pub rates: crate::policy::RateLimits,
    pub calendar: herald_core::quota::QuotaCalendar,
    pub limits: herald_core::quota::DefaultLimits,
    /// Cancelled when the server begins to shut down; device connections close on it.
    pub shutdown: CancellationToken,
    /// Wakes the receipt dispatcher: the store signals it after commits that queued
    /// receipts; tests poke it after moving the clock.
    pub receipt_wake: Arc<tokio::sync::Notify>,
    /// The HTTP client for receipt callbacks (dispatcher and `receipt test`).
    pub receipt_http: reqwest::Client,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Acks and reports from every connection, batched into one store write at a time.
    pub reports: DeviceReports,
    /// Per-address limits and the login gate (`limits.rs`, `[limits]`).
    pub guards: Arc<crate::limits::Guards>,
    /// The bus to the other nodes (`bus = "nats://…"`), when there is one.
    pub bus: Option<Arc<crate::bus::Bus>>,
    /// Whether the store is shared with other nodes (PostgreSQL).
    pub shared_store: bool,
    /// This node's name (`DATA_DIR/node-id`; `local` for a node on its own store with
    /// no bus), the `node_id` label of its per-node metrics.
    pub node_id: String,
    /// Emulator mode (`herald serve --emulator`): virtual devices, the clock, faults.
    pub emulator: Option<Arc<crate::emulator::Emulator>>,
}

impl AppState {
    /// Whether what this node caches of shared state (tokens, apps, rights) can be used
    /// without asking the store: always on a store of its own; on a shared store only
    /// while the bus is connected, which tells this node what other nodes changed.
    pub fn caches_trusted(&self) -> bool {
        !self.shared_store || self.bus.as_ref().is_some_and(|b| b.is_connected())
    }

    /// Tell the other nodes (if there is a bus) what their memory must forget.
    pub fn tell_others(&self, what: crate::bus::Control) {
        if let Some(bus) = &self.bus {
            bus.tell(what);
        }
    }

    /// Forget every cached copy of shared state (after the bus was down, when other
    /// nodes' notices may have been missed): read again on next use.
    pub fn forget_shared_caches(&self) {
        self.jwt.forget_keys();
        self.tokens.clear();
        self.apps.clear();
        self.projects.clear();
        self.rights.clear();
    }
}

pub type Shared = Arc<AppState>;

/// Active tokens by token string. The store is the truth; a miss is looked up in one
/// batch per request, never one query per token. Bounded: past its capacity, an
/// arbitrary sixteenth of the entries is forgotten (they are read again on their next use).
#[derive(Debug)]
pub struct TokenCache {
    map: DashMap<String, Arc<TokenRecord>>,
    capacity: usize,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::with_capacity(DEFAULT_TOKEN_CACHE)
    }
}

/// Tokens kept in memory by default (about 300 bytes each).
pub const DEFAULT_TOKEN_CACHE: usize = 1_000_000;

impl TokenCache {
    pub fn with_capacity(capacity: usize) -> Self {
        TokenCache {
            map: DashMap::new(),
            capacity: capacity.max(16),
        }
    }

    /// Make room for new entries when the cache is full.
    fn make_room(&self) {
        if self.map.len() < self.capacity {
            return;
        }
        let victims: Vec<String> = self
            .map
            .iter()
            .take(self.capacity / 16)
            .map(|e| e.key().clone())
            .collect();
        for k in victims {
            self.map.remove(&k);
        }
    }

    /// Resolve `tokens`: cached ones from memory (when `trusted`, see
    /// [`AppState::caches_trusted`]), the rest in one store call.
    pub async fn resolve(
        &self,
        store: &dyn Store,
        tokens: &[&str],
        trusted: bool,
    ) -> Result<Vec<Option<Arc<TokenRecord>>>, StoreError> {
        let mut out: Vec<Option<Arc<TokenRecord>>> = tokens
            .iter()
            .map(|t| {
                trusted
                    .then(|| self.map.get(*t).map(|r| r.clone()))
                    .flatten()
            })
            .collect();
        let missing: Vec<String> = tokens
            .iter()
            .zip(&out)
            .filter(|(_, r)| r.is_none())
            .map(|(t, _)| (*t).to_owned())
            .collect();
        if missing.is_empty() {
            return Ok(out);
        }
        self.make_room();
        let mut found: HashMap<String, Arc<TokenRecord>> = HashMap::new();
        for rec in store.lookup_tokens(&missing).await? {
            let rec = Arc::new(rec);
            self.map.insert(rec.token.clone(), rec.clone());
            found.insert(rec.token.clone(), rec);
        }
        for (slot, t) in out.iter_mut().zip(tokens) {
            if slot.is_none() {
                *slot = found.remove(*t);
            }
        }
        Ok(out)
    }

    pub fn insert(&self, rec: TokenRecord) {
        self.make_room();
        self.map.insert(rec.token.clone(), Arc::new(rec));
    }

    /// Forgets a deleted token, so that the next send looks it up (and misses) in the store.
    pub fn remove(&self, token: &str) {
        self.map.remove(token);
    }

    /// Forget every token.
    pub fn clear(&self) {
        self.map.clear();
    }
}

/// Apps by client id, read through from the store.
#[derive(Debug, Default)]
pub struct AppCache {
    map: DashMap<String, App>,
}

impl AppCache {
    pub async fn get(&self, store: &dyn Store, client_id: &str) -> Result<Option<App>, StoreError> {
        if let Some(app) = self.map.get(client_id) {
            return Ok(Some(app.clone()));
        }
        let app = store.app(client_id).await?;
        if let Some(app) = &app {
            self.map.insert(client_id.to_owned(), app.clone());
        }
        Ok(app)
    }

    /// Forget a cached app after an operator changed it.
    pub fn invalidate(&self, client_id: &str) {
        self.map.remove(client_id);
    }

    /// Forget every app.
    pub fn clear(&self) {
        self.map.clear();
    }
}

/// Whether each project's push service is on, read through from the store; the send and
/// revoke paths ask it on every request. Bounded by the number of projects (operators
/// create them), forgotten when an operator switches one (here or on another node).
#[derive(Debug, Default)]
pub struct ProjectSwitches {
    map: DashMap<String, bool>,
}

impl ProjectSwitches {
    /// Whether `project_id` may send and revoke; an unknown project may (its requests
    /// fail later, as before). Cached copies are used only when `trusted`.
    pub async fn push_enabled(
        &self,
        store: &dyn Store,
        project_id: &str,
        trusted: bool,
    ) -> Result<bool, StoreError> {
        if trusted && let Some(on) = self.map.get(project_id) {
            return Ok(*on);
        }
        let Some(project) = store.project(project_id).await? else {
            return Ok(true);
        };
        self.map.insert(project.project_id, project.push_enabled);
        Ok(project.push_enabled)
    }

    /// Forget one project after an operator switched it.
    pub fn invalidate(&self, project_id: &str) {
        self.map.remove(project_id);
    }

    /// Forget every project.
    pub fn clear(&self) {
        self.map.clear();
    }
}
