//! The Herald node: Push Kit v3 REST API, device gateway and background work, served by
//! axum. The caller binds the socket and chooses the shutdown trigger:
//! [`Herald::prepare`] then [`Herald::run`] (tests bind port 0).
//!
//! Invariant: only this crate knows HTTP and WebSocket; policy lives in `herald-core`.

pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod delivery;
pub mod gateway;
pub mod ids;
pub mod keys;
pub mod policy;
pub mod receipts;
pub mod registry;
pub mod state;
pub mod web;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use herald_core::{Clock, SystemClock};
use herald_store::Store;
use herald_store::sqlite::{Durability, SqliteStore};
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

/// A prepared node: store open, bootstrap done, socket bound, not yet serving.
#[derive(Debug)]
pub struct Herald {
    state: Shared,
    images: Arc<api::images::ImageVerifier>,
    listener: TcpListener,
    bootstrap: Option<BootstrapInfo>,
}

/// The process-wide Prometheus recorder (metrics macros write to one global recorder).
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

impl Herald {
    /// Open the store in `config.data_dir`, bootstrap it on first start, and build the
    /// node around `listener`. `clock` is the time every policy reads.
    pub async fn prepare(
        listener: TcpListener,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Herald, ServerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let durability = match config.sqlite_synchronous.as_str() {
            "full" => Durability::Full,
            "normal" => Durability::Normal,
            other => {
                return Err(ServerError::Config(format!(
                    "sqlite_synchronous must be \"full\" or \"normal\", not {other:?}"
                )));
            }
        };
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
            config.data_dir.join(DATABASE_FILE),
            durability,
        )?);
        let public_url = if config.public_url.is_empty() {
            let mut addr = listener.local_addr()?;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        } else {
            config.public_url.trim_end_matches('/').to_owned()
        };
        let bootstrap = bootstrap::ensure(
            store.as_ref(),
            &config.data_dir,
            &public_url,
            clock.now_ms(),
        )
        .await?;
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
            rates: Default::default(),
            config,
            public_url,
            jwt: auth::JwtVerifier::new(store.clone(), clock.clone()),
            store,
            clock,
            tokens: Default::default(),
            apps: Default::default(),
            registry: Default::default(),
            shutdown: CancellationToken::new(),
            metrics: metrics_handle(),
        });
        Ok(Herald {
            state,
            images,
            listener,
            bootstrap,
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
        let dispatcher = tokio::spawn(receipts::run(state.clone()));
        let app = router(state.clone(), self.images);
        let serve_token = token.clone();
        let server = axum::serve(self.listener, app).with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = serve_token.cancelled() => {}
            }
            serve_token.cancel();
        });
        tracing::info!(url = %state.public_url, "Herald is serving.");
        let grace = Duration::from_secs(state.config.shutdown_grace_secs);
        let served = async {
            server.await?;
            Ok::<_, std::io::Error>(())
        };
        let result = tokio::select! {
            r = served => r,
            _ = async { token.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("Graceful shutdown timed out; dropping remaining requests.");
                Ok(())
            }
        };
        // Give device connections a moment to send their close frames.
        let deadline = tokio::time::Instant::now() + grace;
        while !state.registry.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sweeper.abort();
        // The dispatcher stops on the shutdown token and records the batches it has on
        // the wire before the store closes.
        token.cancel();
        let _ = dispatcher.await;
        state.store.close().await;
        tracing::info!("Herald stopped.");
        result.map_err(ServerError::Io)
    }
}

/// Build the HTTP router.
pub fn router(state: Shared, images: Arc<api::images::ImageVerifier>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
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
        .route(web::DEVICE_PATH, get(web::device_page))
        .route(web::SDK_PATH, get(web::sdk_js))
        .route(web::CONSOLE_PATH, get(web::console_page))
        .fallback(not_found)
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn metrics_text(State(state): State<Shared>) -> impl IntoResponse {
    match &state.metrics {
        Some(h) => (StatusCode::OK, h.render()),
        None => (
            StatusCode::NOT_FOUND,
            String::from("metrics are not enabled"),
        ),
    }
}

async fn openapi() -> impl IntoResponse {
    use utoipa::OpenApi;
    axum::Json(api::admin::AdminApi::openapi())
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            serde_json::json!({"code": "80100001", "msg": "No such endpoint.", "requestId": ""}),
        ),
    )
}

/// Expire queued messages whose TTL ended, so their fate is recorded.
async fn expiry_sweeper(state: Shared) {
    let mut tick =
        tokio::time::interval(Duration::from_secs(state.config.expiry_sweep_secs.max(1)));
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = state.clock.now_ms();
        state.quotas.forget_before(state.calendar.day(now));
        match state.store.expire_due(now).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("herald_messages_expired_total").increment(n);
                tracing::debug!(expired = n, "Expired queued messages.");
            }
            Err(e) => tracing::error!(error = %e, "Expiry sweep failed."),
        }
    }
}
