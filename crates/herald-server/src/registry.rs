//! Which devices are connected to this node, and the bounded channel into each.
//!
//! Why bounded channels plus a resync signal: a slow device must never hold memory or
//! slow a sender. When a device's channel is full, the message is already durable in the
//! store, so the sender drops the in-memory copy and tells the connection to re-read its
//! queue from the store once it catches up.
//!
//! VoIP calls travel in a second, small channel that the connection always drains first
//! (a call must ring now, not after a backlog of notifications). Channel items are one
//! pointer each: a channel's first block is allocated with the connection, so small items
//! keep an idle connection small.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use herald_proto::device::ServerFrame;
use herald_store::{DeliveryId, TokenRecord};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::delivery::Prepared;

/// A frame (a message or a revoke command) for a connected device.
#[derive(Debug, Clone)]
pub struct Live {
    pub id: DeliveryId,
    pub body: LiveBody,
    /// VoIP calls: delivered ahead of everything else.
    pub urgent: bool,
}

/// What a live frame carries.
#[derive(Debug, Clone)]
pub enum LiveBody {
    /// A message: the part shared by every token of it, serialised once.
    Message {
        prepared: Arc<Prepared>,
        /// The token it goes to (shared with the token cache, not copied per delivery).
        record: Arc<TokenRecord>,
    },
    /// Anything else (revoke commands), as a frame.
    Frame(ServerFrame),
}

/// Capacity of the urgent (VoIP) lane per connection.
const URGENT_CAPACITY: usize = 16;

#[derive(Debug)]
struct ConnHandle {
    conn_id: u64,
    /// The hello's session number (`DeviceAuth::session`).
    session: i64,
    tx: mpsc::Sender<Box<Live>>,
    urgent_tx: mpsc::Sender<Box<Live>>,
    resync: Arc<Notify>,
    kick: CancellationToken,
}

/// What a newly registered connection listens on.
#[derive(Debug)]
pub struct Registration {
    pub conn_id: u64,
    pub rx: mpsc::Receiver<Box<Live>>,
    pub urgent_rx: mpsc::Receiver<Box<Live>>,
    /// Notified when messages were dropped from the channel and must be read from the store.
    pub resync: Arc<Notify>,
    /// Cancelled when another connection takes over this device.
    pub kicked: CancellationToken,
}

/// Connected devices by device number. Bounded by the connections the listener admits.
#[derive(Debug, Default)]
pub struct Registry {
    conns: DashMap<i64, ConnHandle>,
    next_id: AtomicU64,
    /// The node's name, the `node_id` label of its gauge.
    node_id: String,
}

impl Registry {
    /// The registry of the node called `node_id`.
    pub fn new(node_id: &str) -> Self {
        Registry {
            node_id: node_id.to_owned(),
            ..Registry::default()
        }
    }

    /// Register a connection for `device` (its hello numbered `session`), replacing (and
    /// kicking) any earlier one on this node.
    pub fn register(&self, device: i64, capacity: usize, session: i64) -> Registration {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (urgent_tx, urgent_rx) = mpsc::channel(URGENT_CAPACITY);
        let conn_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let resync = Arc::new(Notify::new());
        let kick = CancellationToken::new();
        let old = self.conns.insert(
            device,
            ConnHandle {
                conn_id,
                session,
                tx,
                urgent_tx,
                resync: resync.clone(),
                kick: kick.clone(),
            },
        );
        if let Some(old) = old {
            old.kick.cancel();
        }
        self.count();
        Registration {
            conn_id,
            rx,
            urgent_rx,
            resync,
            kicked: kick,
        }
    }

    /// Close the device's connection here if its hello is older than `session` (the
    /// device said hello again on another node: that connection is the current one, and
    /// this one is stale). Returns whether one was closed.
    pub fn kick_older(&self, device: i64, session: i64) -> bool {
        match self.conns.remove_if(&device, |_, h| h.session < session) {
            Some((_, old)) => {
                old.kick.cancel();
                self.count();
                true
            }
            None => false,
        }
    }

    /// Remove the connection, unless a newer one has already replaced it.
    pub fn unregister(&self, device: i64, conn_id: u64) {
        self.conns.remove_if(&device, |_, h| h.conn_id == conn_id);
        self.count();
    }

    /// Hand a message to the device's connection if it is connected here. Never waits.
    pub fn deliver(&self, device: i64, live: Live) {
        if let Some(h) = self.conns.get(&device) {
            let lane = if live.urgent { &h.urgent_tx } else { &h.tx };
            match lane.try_send(Box::new(live)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("herald_device_channel_overflows_total").increment(1);
                    h.resync.notify_one();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Make the device's connection, if it is on this node, re-read its queue from the
    /// store (another node committed something for it). Returns whether it is here.
    pub fn resync(&self, device: i64) -> bool {
        match self.conns.get(&device) {
            Some(h) => {
                h.resync.notify_one();
                true
            }
            None => false,
        }
    }

    /// [`Registry::resync`] every connection on this node; returns how many.
    pub fn resync_all(&self) -> usize {
        let mut n = 0;
        for h in self.conns.iter() {
            h.resync.notify_one();
            n += 1;
        }
        n
    }

    /// Publish how many devices are connected here (`node_id` tells nodes apart when
    /// several report to one Prometheus).
    fn count(&self) {
        metrics::gauge!("herald_devices_connected", "node_id" => self.node_id.clone())
            .set(self.conns.len() as f64);
    }

    pub fn is_connected(&self, device: i64) -> bool {
        self.conns.contains_key(&device)
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}
