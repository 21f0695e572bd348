//! The receipt dispatcher: drains the store's receipt outbox to the apps' callback URLs,
//! Push Kit's V2 format, signed with `X-HUAWEI-CALLBACK-ID`.
//!
//! Receipts are not made here: the store queues one, in the same transaction, for every
//! lifecycle event that has a receipt code. This task only moves them: it reads due
//! rows (≤ 100 per config), sends a config's batch once it is full or has waited
//! `receipt_batch_window_ms`, marks the rows sent on `{"code":"0"}`, and otherwise
//! reschedules them with exponential backoff and jitter (`herald_core::receipt`) until
//! `receipt_retry_for_secs`, when they are dropped and logged.
//!
//! Concurrency: one task per config in flight at a time (a slow endpoint delays only its
//! own receipts; batches to one endpoint stay in order), all in one `JoinSet` that
//! shutdown waits for, so an acknowledged batch is marked sent before the store closes.
//! A batch is marked sent only after the endpoint answered, so a crash between the two
//! can post it again (at-least-once); once marked, it is never posted again.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herald_core::receipt::{ReceiptFate, RetryPolicy};
use herald_proto::receipt::{
    CALLBACK_ID_HEADER, MAX_STATUSES, ReceiptBody, ReceiptStatus, StatusIds, is_success_answer,
};
use herald_store::{DueReceipts, PendingReceipt, ReceiptConfig};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::state::Shared;

/// How often the dispatcher looks for due retries when nothing wakes it.
const TICK: Duration = Duration::from_secs(1);
/// Most bytes of an endpoint's answer that are read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How often the pending-receipts gauge is refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(5);

/// A new configuration's secret: Base64 of 32 random bytes (the decoded bytes are the key).
pub fn generate_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill(&mut key[..]);
    STANDARD.encode(key)
}

/// The HMAC key of a secret. As Push Kit does for new configurations, the secret is
/// Base64-decoded; a secret that is not valid Base64 (standard alphabet) is used as its
/// UTF-8 bytes, as Push Kit does for old ones.
pub fn hmac_key(secret: &str) -> Vec<u8> {
    STANDARD
        .decode(secret)
        .ok()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `Base64(HMAC-SHA256(key, timestamp + nonce + userName))`.
pub fn signature(secret: &str, timestamp: i64, nonce: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&hmac_key(secret)).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(nonce.as_bytes());
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The `X-HUAWEI-CALLBACK-ID` value for one callback.
pub fn callback_id(config: &ReceiptConfig, timestamp: i64, nonce: &str) -> String {
    let username = config.username.as_deref().unwrap_or("");
    format!(
        "timestamp={timestamp};nonce={nonce};value={}",
        signature(&config.secret, timestamp, nonce, username)
    )
}

/// The HTTP client for callbacks: a timeout, no redirects (an endpoint answers itself).
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// What an endpoint made of one callback.
#[derive(Debug, Clone)]
pub struct PostOutcome {
    /// HTTP 2xx with `{"code":"0"}`.
    pub success: bool,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The answer body (at most 64 KiB, lossy UTF-8), or the transport error.
    pub body: String,
}

/// POST one V2 body to the config's URL, signed at `now_ms`.
pub async fn post(
    http: &reqwest::Client,
    config: &ReceiptConfig,
    body: &ReceiptBody,
    now_ms: i64,
) -> PostOutcome {
    let nonce = uuid::Uuid::new_v4().to_string();
    let sent = http
        .post(&config.url)
        .header(CALLBACK_ID_HEADER, callback_id(config, now_ms, &nonce))
        .json(body)
        .send()
        .await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            return PostOutcome {
                success: false,
                status: None,
                body: e.to_string(),
            };
        }
    };
    let status = resp.status();
    let mut answer = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if answer.len() < MAX_ANSWER_BYTES => answer.extend_from_slice(&chunk),
            Ok(Some(_)) | Ok(None) => break,
            Err(e) => {
                return PostOutcome {
                    success: false,
                    status: Some(status.as_u16()),
                    body: e.to_string(),
                };
            }
        }
    }
    answer.truncate(MAX_ANSWER_BYTES);
    PostOutcome {
        success: status.is_success() && is_success_answer(&answer),
        status: Some(status.as_u16()),
        body: String::from_utf8_lossy(&answer).into_owned(),
    }
}

/// The wire status of one outbox row.
pub fn status_of(r: &PendingReceipt) -> ReceiptStatus {
    ReceiptStatus::new(
        r.push_type,
        r.form_id,
        r.result,
        r.at,
        StatusIds {
            bi_tag: r.bi_tag.clone(),
            token: r.token.clone(),
            request_id: r.request_id.clone(),
            app_package_name: r.app_package_name.clone(),
        },
    )
}

/// The retry policy from the configuration.
pub fn retry_policy(state: &Shared) -> RetryPolicy {
    RetryPolicy {
        base_ms: 1_000,
        cap_ms: (state.config.receipt_retry_cap_secs.max(1) * 1_000) as i64,
        retry_for_ms: (state.config.receipt_retry_for_secs * 1_000) as i64,
    }
}

/// A config's batch is done: how long to leave the config alone (after a failure).
#[derive(Debug)]
struct Finished {
    receipt_id: String,
    blocked_until: Option<i64>,
}

/// The dispatcher's memory; the store holds everything that must survive a restart.
struct Dispatcher {
    state: Shared,
    policy: RetryPolicy,
    window: Duration,
    tasks: JoinSet<Finished>,
    /// Configs with a batch on the wire.
    in_flight: HashSet<String>,
    /// Configs whose endpoint failed, left alone until then (clock ms). Their other due
    /// receipts would only fail too.
    blocked_until: HashMap<String, i64>,
    /// When a config's not-yet-full batch was first seen (the batch window runs from it).
    partial_since: HashMap<String, Instant>,
    gauge_at: Option<Instant>,
    /// Emulator mode: the resets seen (a reset forgets the endpoints' backoff too).
    resets_seen: u64,
}

/// Run until shutdown, then wait for batches on the wire (bounded by the callback
/// timeout and the shutdown grace) so that what an endpoint acknowledged is recorded.
pub async fn run(state: Shared) {
    let now = state.clock.now_ms();
    // On start, pending receipts are sent at once, whatever their backoff said.
    match state.store.retry_pending_receipts_now(now).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            receipts = n,
            "Pending receipts are due again after a restart."
        ),
        Err(e) => tracing::error!(error = %e, "Could not reschedule pending receipts."),
    }
    let mut d = Dispatcher {
        policy: retry_policy(&state),
        window: Duration::from_millis(state.config.receipt_batch_window_ms),
        state,
        tasks: JoinSet::new(),
        in_flight: HashSet::new(),
        blocked_until: HashMap::new(),
        partial_since: HashMap::new(),
        gauge_at: None,
        resets_seen: 0,
    };
    let wake = d.state.receipt_wake.clone();
    loop {
        let next_wake = d.pass().await;
        let sleep_until = next_wake.unwrap_or_else(|| Instant::now() + TICK);
        tokio::select! {
            _ = d.state.shutdown.cancelled() => break,
            _ = wake.notified() => {}
            Some(done) = d.tasks.join_next(), if !d.tasks.is_empty() => d.finished(done),
            _ = tokio::time::sleep_until(sleep_until) => {}
        }
        while let Some(done) = d.tasks.try_join_next() {
            d.finished(done);
        }
    }
    // Bounded by the shutdown grace too: an unfinished batch stays pending and is sent
    // again after the restart.
    let config = &d.state.config;
    let limit = Duration::from_secs(
        (config.receipt_timeout_secs + 1).min(config.shutdown_grace_secs.max(1)),
    );
    let drain = async { while d.tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limit, drain).await.is_err() {
        tracing::warn!("Receipt callbacks still running at shutdown; they will be sent again.");
    }
}

impl Dispatcher {
    fn finished(&mut self, done: Result<Finished, tokio::task::JoinError>) {
        match done {
            Ok(f) => {
                if let Some(until) = f.blocked_until {
                    self.blocked_until.insert(f.receipt_id.clone(), until);
                }
                self.in_flight.remove(&f.receipt_id);
            }
            Err(e) => {
                // A panicked task leaves its config marked in flight: forget all marks
                // rather than starve a config; its rows are still pending in the store.
                tracing::error!(error = %e, "A receipt task failed.");
                self.in_flight.clear();
            }
        }
    }

    /// Start every batch that is ready; returns when a waiting partial batch will be.
    async fn pass(&mut self) -> Option<Instant> {
        self.refresh_gauge().await;
        if let Some(emulator) = &self.state.emulator
            && emulator.resets() != self.resets_seen
        {
            // Between an emulated backend's tests, an endpoint that failed in one test
            // holds up nothing in the next.
            self.resets_seen = emulator.resets();
            self.blocked_until.clear();
            self.partial_since.clear();
        }
        let now = self.state.clock.now_ms();
        let due = match self.state.store.due_receipts(now, MAX_STATUSES).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "Could not read due receipts.");
                return None;
            }
        };
        let due_ids: HashSet<&str> = due.iter().map(|d| d.config.receipt_id.as_str()).collect();
        self.partial_since
            .retain(|id, _| due_ids.contains(id.as_str()));
        let mut next_wake: Option<Instant> = None;
        for batch in due {
            let id = batch.config.receipt_id.clone();
            if self.in_flight.contains(&id) {
                continue;
            }
            match self.blocked_until.get(&id) {
                Some(until) if *until > now => continue,
                Some(_) => {
                    self.blocked_until.remove(&id);
                }
                None => {}
            }
            if batch.receipts.len() < MAX_STATUSES {
                let since = *self
                    .partial_since
                    .entry(id.clone())
                    .or_insert_with(Instant::now);
                let ready_at = since + self.window;
                if Instant::now() < ready_at {
                    next_wake = Some(next_wake.map_or(ready_at, |w| w.min(ready_at)));
                    continue;
                }
            }
            self.partial_since.remove(&id);
            self.in_flight.insert(id);
            self.tasks
                .spawn(deliver(self.state.clone(), self.policy, batch));
        }
        next_wake
    }

    async fn refresh_gauge(&mut self) {
        if self.gauge_at.is_some_and(|at| at.elapsed() < GAUGE_EVERY) {
            return;
        }
        self.gauge_at = Some(Instant::now());
        if let Ok(n) = self.state.store.pending_receipts().await {
            metrics::gauge!("herald_receipts_pending").set(n as f64);
        }
    }
}

/// Post one batch and record its fate.
async fn deliver(state: Shared, policy: RetryPolicy, batch: DueReceipts) -> Finished {
    let DueReceipts { config, receipts } = batch;
    let body = ReceiptBody {
        statuses: receipts.iter().map(status_of).collect(),
    };
    let outcome = post(&state.receipt_http, &config, &body, state.clock.now_ms()).await;
    let now = state.clock.now_ms();
    if let Some(emulator) = &state.emulator {
        emulator.log_receipt(&config, &body, &outcome, now);
    }
    let n = receipts.len() as u64;
    let receipt_id = config.receipt_id.clone();
    if outcome.success {
        let fates: Vec<(i64, ReceiptFate)> =
            receipts.iter().map(|r| (r.id, ReceiptFate::Sent)).collect();
        if let Err(e) = state.store.settle_receipts(&fates, now).await {
            tracing::error!(error = %e, %receipt_id, "Could not mark receipts sent; they will be sent again.");
        }
        metrics::counter!("herald_receipts_posted_total").increment(n);
        tracing::debug!(%receipt_id, statuses = n, "Receipts delivered.");
        return Finished {
            receipt_id,
            blocked_until: None,
        };
    }

    // One jitter for the whole batch keeps it together for the next try.
    let jitter: f64 = rand::rng().random();
    let fates: Vec<(i64, ReceiptFate)> = receipts
        .iter()
        .map(|r| {
            (
                r.id,
                policy.after_failure(r.attempts + 1, r.created_at, now, jitter),
            )
        })
        .collect();
    let dropped = fates
        .iter()
        .filter(|(_, f)| *f == ReceiptFate::Dropped)
        .count() as u64;
    let retried = n - dropped;
    if let Err(e) = state.store.settle_receipts(&fates, now).await {
        tracing::error!(error = %e, %receipt_id, "Could not reschedule receipts.");
    }
    let status = outcome.status.map(|s| s.to_string()).unwrap_or_default();
    if retried > 0 {
        metrics::counter!("herald_receipts_retried_total").increment(retried);
        tracing::warn!(%receipt_id, url = %config.url, %status, answer = %outcome.body, statuses = retried, "Receipt callback failed; will retry.");
    }
    if dropped > 0 {
        metrics::counter!("herald_receipts_dropped_total").increment(dropped);
        tracing::error!(%receipt_id, url = %config.url, %status, answer = %outcome.body, statuses = dropped, "Receipts dropped: the endpoint failed for the whole retry window.");
    }
    let attempts = receipts.iter().map(|r| r.attempts + 1).max().unwrap_or(1);
    Finished {
        receipt_id,
        blocked_until: Some(now + policy.delay_ms(attempts, jitter)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_base64_keys_of_32_bytes() {
        let s = generate_secret();
        assert_eq!(hmac_key(&s).len(), 32);
        assert_ne!(s, generate_secret());
    }

    #[test]
    fn secrets_that_are_not_base64_are_used_as_bytes() {
        assert_eq!(hmac_key("not base64!"), b"not base64!");
        assert_eq!(hmac_key("c2VjcmV0"), b"secret");
    }

    #[test]
    fn signature_matches_an_independent_computation() {
        // Python: base64(hmac.new(b"Jefe", b"1697741455082" + nonce + b"receiver", sha256)).
        let nonce = "3f1c0d6e-0000-4000-8000-000000000000";
        assert_eq!(
            signature("SmVmZQ==", 1697741455082, nonce, "receiver"),
            "2nAMRA49dVc/DT/gt8Mwc+2T5g3TC73yByHGOGGygwM="
        );
    }
}
