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
use tokio::sync::{mpsc, oneshot};

use crate::state::Shared;

/// Reports waiting to be written, at most.
pub const QUEUE: usize = 16_384;
/// Reports written in one store call, at most.
pub const BATCH: usize = 4_096;

/// What the queue carries: what a device said, or a connection asking to hear once
/// everything queued before it is written.
#[derive(Debug)]
enum Item {
    Report(DeviceReport),
    Flush(oneshot::Sender<()>),
}

/// The queue connections submit to.
#[derive(Debug)]
pub struct DeviceReports {
    tx: mpsc::Sender<Item>,
    rx: Mutex<Option<mpsc::Receiver<Item>>>,
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
            if self.tx.send(Item::Report(r)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Resolves once every report submitted before this call has been written (or its
    /// write has failed, or the node stopped). A connection about to re-read its device's
    /// queue waits for it: until then the store still lists what the device acked.
    pub async fn flush(&self) -> oneshot::Receiver<()> {
        let (done, written) = oneshot::channel();
        // When the queue is gone, so is `done`: the receiver resolves at once.
        let _ = self.tx.send(Item::Flush(done)).await;
        written
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
        let mut flushes = Vec::new();
        sort(first, &mut batch, &mut flushes);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(item) => sort(item, &mut batch, &mut flushes),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            write(&state, batch).await;
        }
        // Everything queued before these flushes was in this batch or an earlier one.
        flushes.into_iter().for_each(|done| {
            let _ = done.send(());
        });
    }
    // Shutting down: what devices already said is still written.
    rx.close();
    let mut rest = Vec::new();
    let mut flushes = Vec::new();
    while let Ok(item) = rx.try_recv() {
        sort(item, &mut rest, &mut flushes);
    }
    if !rest.is_empty() {
        write(&state, rest).await;
    }
}

fn sort(item: Item, batch: &mut Vec<DeviceReport>, flushes: &mut Vec<oneshot::Sender<()>>) {
    match item {
        Item::Report(r) => batch.push(r),
        Item::Flush(done) => flushes.push(done),
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
