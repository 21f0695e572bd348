//! `GET /readyz`: whether this node can do its work now — its store (and its bus, when it
//! has one) answers. `/healthz` stays a liveness check that never touches either.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::state::Shared;

/// How long one probe's verdict is reused: a load balancer (or a stranger) polling
/// `/readyz` costs the store at most one query per this period.
const VERDICT_FOR: Duration = Duration::from_secs(1);
/// How long the store may take to answer a probe before the node counts as unready.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The last verdict, shared by every `/readyz` request of a node.
#[derive(Debug, Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, Verdict)>>,
}

#[derive(Debug, Clone)]
struct Verdict {
    /// `None` when the store answered, else why it did not.
    store: Option<String>,
    /// `None` when there is no bus or it is connected, else why it is not ready.
    bus: Option<String>,
}

impl Readiness {
    pub fn new() -> Arc<Readiness> {
        Arc::default()
    }

    /// The current verdict: probed at most once per [`VERDICT_FOR`]; concurrent callers
    /// wait for the one probe in flight.
    async fn verdict(&self, state: &Shared) -> Verdict {
        let mut last = self.last.lock().await;
        if let Some((at, verdict)) = last.as_ref()
            && at.elapsed() < VERDICT_FOR
        {
            return verdict.clone();
        }
        let verdict = probe(state).await;
        *last = Some((Instant::now(), verdict.clone()));
        verdict
    }
}

async fn probe(state: &Shared) -> Verdict {
    let store = match tokio::time::timeout(PROBE_TIMEOUT, state.store.is_bootstrapped()).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("unreachable: {e}")),
        Err(_) => Some(format!(
            "unreachable: no answer within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    };
    if let Some(why) = &store {
        tracing::warn!(why = %why, "The store does not answer; /readyz says 503.");
    }
    let bus = match &state.bus {
        Some(bus) if !bus.is_connected() => Some("disconnected".to_owned()),
        _ => None,
    };
    Verdict { store, bus }
}

/// 200 `{"status":"ready","store":"ok","bus":"ok"|"none"}`, or 503 with
/// `"status":"unready"` and what is wrong (`"store":"unreachable: …"`,
/// `"bus":"disconnected"`).
pub async fn readyz(
    State(state): State<Shared>,
    Extension(readiness): Extension<Arc<Readiness>>,
) -> axum::response::Response {
    let verdict = readiness.verdict(&state).await;
    let bus = match (&state.bus, &verdict.bus) {
        (None, _) => "none".to_owned(),
        (Some(_), None) => "ok".to_owned(),
        (Some(_), Some(why)) => why.clone(),
    };
    let ready = verdict.store.is_none() && verdict.bus.is_none();
    let body = json!({
        "status": if ready { "ready" } else { "unready" },
        "store": verdict.store.as_deref().unwrap_or("ok"),
        "bus": bus,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
