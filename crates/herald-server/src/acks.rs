//! Acks and reports from every device connection, applied in batches: one store write per
//! batch, not one per message.
//!
//! Why one bounded queue for all connections: a write per ack would cost the writer a job
//! per message received. Connections hand what their devices said to this queue (waiting
//! when it is full, which stops them reading their socket — backpressure on the device
//! that floods, not on senders, whose writes never pass through here); one task drains up
//! to [`BATCH`] at a time into `record_device_reports`.

use std::sync::Mutex;

use herald_store::DeviceReport;
use tokio::sync::mpsc;

use crate::state::Shared;

/// Reports waiting to be written, at most.
pub const QUEUE: usize = 16_384;
/// Reports written in one store call, at most.
pub const BATCH: usize = 4_096;

/// The queue connections submit to.
#[derive(Debug)]
pub struct DeviceReports {
    tx: mpsc::Sender<DeviceReport>,
    rx: Mutex<Option<mpsc::Receiver<DeviceReport>>>,
}

impl Default for DeviceReports {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        DeviceReports {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl DeviceReports {
    /// Queue what a device said; waits while the queue is full. `false` once the node
    /// is shutting down.
    pub async fn submit(&self, reports: Vec<DeviceReport>) -> bool {
        for r in reports {
            if self.tx.send(r).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Drain the queue into the store until shutdown, then write what is left.
pub async fn run(state: Shared) {
    let Some(mut rx) = state.reports.rx.lock().ok().and_then(|mut r| r.take()) else {
        return;
    };
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = state.shutdown.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        write(&state, batch).await;
    }
    // Shutting down: what devices already said is still written.
    rx.close();
    let mut rest = Vec::new();
    while let Ok(r) = rx.try_recv() {
        rest.push(r);
    }
    if !rest.is_empty() {
        write(&state, rest).await;
    }
}

async fn write(state: &Shared, batch: Vec<DeviceReport>) {
    let n = batch.len();
    match state.store.record_device_reports(batch).await {
        Ok(moved) => {
            metrics::counter!("herald_device_reports_total").increment(n as u64);
            metrics::counter!("herald_device_reports_applied_total").increment(moved);
        }
        Err(e) => tracing::error!(error = %e, reports = n, "Could not record device reports."),
    }
}
