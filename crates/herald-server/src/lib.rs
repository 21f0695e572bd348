//! The Herald node: Push Kit v3 REST API, device gateway and background work, served by
//! axum. The caller binds the socket and chooses the shutdown trigger:
//! [`Herald::prepare`] then [`Herald::run`] (tests bind port 0).
//!
//! Invariant: only this crate knows HTTP and WebSocket; policy lives in `herald-core`.

pub mod acks;
pub mod api;
pub mod auth;
pub mod authz;
pub mod bootstrap;
pub mod bus;
pub mod config;
pub mod delivery;
pub mod emulator;
pub mod fuzzing;
pub mod gateway;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod listener;
pub mod metered;
pub mod policy;
pub mod ready;
pub mod receipts;
pub mod registry;
pub mod state;
pub mod storage;
pub mod web;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use herald_core::{Clock, OffsetClock, SystemClock};
use herald_store::Store;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use bootstrap::BootstrapInfo;
pub use config::Config;
use state::{AppState, Shared};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "herald.db";

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] herald_store::StoreError),
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("config: {0}")]
    Config(String),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// The `node_id` of a node on its own store with no bus (it has no `node-id` file).
pub const LOCAL_NODE: &str = "local";

/// A prepared node: store open, bootstrap done, socket bound, not yet serving.
pub struct Herald {
    state: Shared,
    images: Arc<api::images::ImageVerifier>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    bootstrap: Option<BootstrapInfo>,
    /// Other nodes' notices, consumed by `run`.
    bus_inbox: Option<bus::Inbox>,
}

impl std::fmt::Debug for Herald {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Herald")
            .field("state", &self.state)
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// The process-wide Prometheus recorder (metrics macros write to one global recorder).
/// Durations (`*_seconds`) are histograms with these buckets, so that latencies from
/// several nodes can be added up and their quantiles computed by Prometheus.
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    const SECONDS: [f64; 14] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    ];
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &SECONDS,
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

impl Herald {
    /// Open the store `config.store` names (default: `herald.db` in `config.data_dir`),
    /// connect the bus when `config.bus` is set, bootstrap the store on first start (once
    /// across nodes), and build the node around `listener`. `clock` is the time every
    /// policy reads.
    pub async fn prepare(
        listener: TcpListener,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Herald, ServerError> {
        Herald::prepare_node(listener, config, clock, None).await
    }

    /// Open in emulator mode (`herald serve --emulator`): the clock is the wall clock
    /// plus what `POST /emulator/v1/clock` adds, the `/emulator/v1` API is served, and a
    /// first start uses the ids and key `choices` name.
    pub async fn prepare_emulator(
        listener: TcpListener,
        config: Config,
        choices: bootstrap::Choices,
    ) -> Result<Herald, ServerError> {
        let clock = OffsetClock::new();
        let emulator = Arc::new(emulator::Emulator::new(clock.clone()));
        Herald::prepare_node(listener, config, Arc::new(clock), Some((emulator, choices))).await
    }

    async fn prepare_node(
        listener: TcpListener,
        config: Config,
        clock: Arc<dyn Clock>,
        emulator: Option<(Arc<emulator::Emulator>, bootstrap::Choices)>,
    ) -> Result<Herald, ServerError> {
        let (emulator, choices) = match emulator {
            Some((e, c)) => (Some(e), c),
            None => (None, bootstrap::Choices::default()),
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let target = storage::target_for(&config)?;
        let (bus, bus_inbox) = match config.bus.trim() {
            "" => (None, None),
            url => {
                let node = storage::node_id(&config.data_dir)?;
                let (bus, inbox) = bus::Bus::connect(url, &node)
                    .await
                    .map_err(|e| ServerError::Config(format!("bus: {e}")))?;
                tracing::info!(bus = url, %node, "Bus configured.");
                (Some(bus), Some(inbox))
            }
        };
        let store: Arc<dyn Store> = Arc::new(metered::MeteredStore::new(
            herald_store::open_store(&target.url, &target.options).await?,
        ));
        let node_id = if target.is_shared() || bus.is_some() {
            storage::node_id(&config.data_dir)?
        } else {
            LOCAL_NODE.to_owned()
        };
        let registry = registry::Registry::new(&node_id);
        if target.is_shared() {
            let node = target.options.postgres.node_name.as_deref().unwrap_or("");
            tracing::info!(store = %target.redacted(), node, "Shared store opened.");
        }
        let tls = match config.tls_enabled().map_err(ServerError::Config)? {
            false => None,
            true => Some(
                listener::tls_acceptor(config.tls_cert.as_ref(), config.tls_key.as_ref())
                    .map_err(ServerError::Config)?,
            ),
        };
        let guards = limits::Guards::new(&config.limits).map_err(ServerError::Config)?;
        let jwt_cache_entries = config.limits.jwt_cache_entries;
        let public_url = if config.public_url.is_empty() {
            let mut addr = listener.local_addr()?;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let scheme = if tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{addr}")
        } else {
            config.public_url.trim_end_matches('/').to_owned()
        };
        let bootstrap = bootstrap::ensure_with(
            store.as_ref(),
            &config.data_dir,
            &public_url,
            clock.now_ms(),
            &choices,
        )
        .await?;
        if let Some(emulator) = &emulator {
            // A reused data directory: its bootstrap.json names the app.
            let stored = || {
                let path = config.data_dir.join(bootstrap::BOOTSTRAP_FILE);
                let text = std::fs::read_to_string(path).ok()?;
                serde_json::from_str::<BootstrapInfo>(&text).ok()
            };
            if let Some(info) = bootstrap.clone().or_else(stored) {
                emulator.set_default_client_id(&info.client_id);
            }
        }
        let calendar = herald_core::quota::QuotaCalendar::new(&config.quota_time_zone)
            .map_err(|e| ServerError::Config(e.to_string()))?;
        let limits = herald_core::quota::DefaultLimits {
            device_daily_total: config.device_daily_total,
            send_rate_per_sec: config.send_rate_per_sec,
            test_messages_per_day: config.test_messages_per_day,
        };
        let receipt_http =
            receipts::http_client(Duration::from_secs(config.receipt_timeout_secs.max(1)))
                .map_err(|e| ServerError::Config(format!("receipt HTTP client: {e}")))?;
        let images = Arc::new(
            api::images::ImageVerifier::new(&config.images)
                .map_err(|e| ServerError::Config(e.to_string()))?,
        );
        let state = Arc::new(AppState {
            receipt_wake: store.receipts_queued(),
            receipt_http,
            calendar,
            limits,
            rights: Default::default(),
            quotas: Default::default(),
            live_views: Default::default(),
            rates: policy::RateLimits::new(target.is_shared()),
            config,
            public_url,
            jwt: auth::JwtVerifier::new(
                store.clone(),
                clock.clone(),
                jwt_cache_entries,
                target.is_shared().then_some(auth::KEY_RECHECK),
            ),
            shared_store: target.is_shared(),
            node_id,
            store,
            bus,
            clock,
            tokens: Default::default(),
            apps: Default::default(),
            projects: Default::default(),
            registry,
            shutdown: CancellationToken::new(),
            metrics: metrics_handle(),
            reports: Default::default(),
            guards: Arc::new(guards),
            emulator,
        });
        Ok(Herald {
            state,
            images,
            listener,
            tls,
            bootstrap,
            bus_inbox,
        })
    }

    /// Open with the wall clock.
    pub async fn prepare_with_system_clock(
        listener: TcpListener,
        config: Config,
    ) -> Result<Herald, ServerError> {
        Herald::prepare(listener, config, Arc::new(SystemClock)).await
    }

    /// The bootstrap info, when this start created it.
    pub fn bootstrap_info(&self) -> Option<&BootstrapInfo> {
        self.bootstrap.as_ref()
    }

    /// The base URL backends and devices use.
    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state, for tests that inspect the store.
    pub fn state(&self) -> Shared {
        self.state.clone()
    }

    /// Serve until `shutdown` resolves, then stop accepting, close device connections
    /// with 1001, finish in-flight requests (bounded by `shutdown_grace_secs`) and flush
    /// the store.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = self.state;
        let token = state.shutdown.clone();
        let sweeper = tokio::spawn(expiry_sweeper(state.clone()));
        let pruner = tokio::spawn(pruner(state.clone()));
        let reports = tokio::spawn(acks::run(state.clone()));
        let dispatcher = tokio::spawn(receipts::run(state.clone()));
        let bus_listener = self
            .bus_inbox
            .map(|inbox| tokio::spawn(bus::listen(state.clone(), inbox)));
        let listener = listener::Listener::new(
            router(state.clone(), self.images),
            state.guards.clone(),
            &state.config.limits,
            self.tls,
        );
        // The shutdown trigger cancels the token: the accept loop stops, connections
        // finish their request in flight, device sockets close with 1001.
        let trigger = token.clone();
        let signal = tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = trigger.cancelled() => {}
            }
            trigger.cancel();
        });
        tracing::info!(url = %state.public_url, "Herald is serving.");
        let grace = Duration::from_secs(state.config.shutdown_grace_secs);
        listener.serve(self.listener, token.clone(), grace).await;
        signal.abort();
        // Give device connections a moment to send their close frames.
        let deadline = tokio::time::Instant::now() + grace;
        while !state.registry.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sweeper.abort();
        pruner.abort();
        if let Some(task) = bus_listener {
            task.abort();
        }
        // The dispatcher stops on the shutdown token and records the batches it has on
        // the wire before the store closes.
        token.cancel();
        let _ = dispatcher.await;
        // What devices said before the end is written before the store closes.
        let _ = reports.await;
        state.store.close().await;
        tracing::info!("Herald stopped.");
        Ok(())
    }
}

/// Build the HTTP router.
pub fn router(state: Shared, images: Arc<api::images::ImageVerifier>) -> Router {
    // The emulator API exists only in emulator mode (elsewhere it is the fallback's 404).
    let emulator = match state.emulator {
        Some(_) => emulator::routes(),
        None => Router::new(),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/readyz",
            get(ready::readyz).layer(Extension(ready::Readiness::new())),
        )
        .route("/metrics", get(metrics_text))
        .route("/v3/{project_id}/messages:send", post(api::push::send))
        .route("/v1/{client_id}/messages:revoke", post(api::revoke::revoke))
        .route(
            "/v1/{client_id}/images:verify",
            post(api::images::verify_by_app).layer(Extension(images.clone())),
        )
        .route(
            "/v2/{project_id}/images:verify",
            post(api::images::verify_by_project).layer(Extension(images)),
        )
        .route(herald_proto::device::WS_PATH, get(gateway::upgrade))
        .route("/openapi.json", get(openapi))
        .merge(api::admin::routes())
        .merge(api::console::routes())
        .merge(emulator)
        .merge(web::routes())
        .fallback(not_found)
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// `/metrics` is for the operator's scraper, not the world: it answers addresses in
/// `metrics_allow` (loopback by default) and requests bearing an admin token.
async fn metrics_text(
    State(state): State<Shared>,
    client: limits::ClientAddr,
    headers: HeaderMap,
) -> axum::response::Response {
    if !state.config.metrics_allow.contains(&client.0)
        && !api::principal::bears_admin_token(&state, &headers).await
    {
        return (
            StatusCode::FORBIDDEN,
            "metrics are served to metrics_allow addresses or with an admin token\n",
        )
            .into_response();
    }
    let answer = match &state.metrics {
        Some(h) => (StatusCode::OK, h.render()),
        None => (
            StatusCode::NOT_FOUND,
            String::from("metrics are not enabled"),
        ),
    };
    answer.into_response()
}

async fn openapi(State(state): State<Shared>) -> impl IntoResponse {
    use utoipa::OpenApi;
    let mut doc = api::admin::AdminApi::openapi();
    doc.merge(api::console::ConsoleApi::openapi());
    if state.emulator.is_some() {
        doc.merge(emulator::EmulatorApi::openapi());
    }
    axum::Json(doc)
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            serde_json::json!({"code": "80100001", "msg": "No such endpoint.", "requestId": ""}),
        ),
    )
}

/// Deliveries one expiry write ends at most (a sweep keeps going while there are more).
pub(crate) const EXPIRE_BATCH: usize = 10_000;

/// Delete what is past its retention, a small batch of each kind at a time, so the
/// database levels off under any load and sends never wait long behind a prune.
async fn pruner(state: Shared) {
    let every = Duration::from_secs(state.config.prune_every_secs.max(1));
    let retention = state.config.retention();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = state.clock.now_ms();
        let cutoff_day = state
            .calendar
            .day(now - i64::from(retention.quota_days) * 86_400_000);
        loop {
            match state
                .store
                .prune(&retention, now, cutoff_day, state.config.prune_batch)
                .await
            {
                Ok(p) if p.total() == 0 => break,
                Ok(p) => {
                    metrics::counter!("herald_store_pruned_total").increment(p.total());
                    tracing::debug!(?p, "Pruned records past their retention.");
                    // A full batch means more is waiting; yield to sends between batches.
                    if p.total() < state.config.prune_batch as u64 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "Pruning failed.");
                    break;
                }
            }
        }
        if let Ok(size) = state.store.size_on_disk().await {
            metrics::gauge!("herald_store_bytes").set(size as f64);
        }
    }
}

/// Expire queued messages whose TTL ended, so their fate is recorded: every
/// `expiry_sweep_secs`, and at once whenever a clock moved by hand (tests) jumps.
async fn expiry_sweeper(state: Shared) {
    let mut tick =
        tokio::time::interval(Duration::from_secs(state.config.expiry_sweep_secs.max(1)));
    let mut moves = 0;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
            seen = state.clock.moved_since(moves) => moves = seen,
        }
        let now = state.clock.now_ms();
        state.quotas.forget_before(state.calendar.day(now));
        match state.store.expire_due(now, EXPIRE_BATCH).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("herald_messages_expired_total").increment(n);
                tracing::debug!(expired = n, "Expired queued messages.");
            }
            Err(e) => tracing::error!(error = %e, "Expiry sweep failed."),
        }
    }
}
