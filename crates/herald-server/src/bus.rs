//! The NATS bus between nodes: after a send or a revoke is committed, the node that took
//! it tells every other node which devices have something new queued; a node holding one
//! of those devices makes its connection re-read the device's queue from the store.
//! Besides, on [`CONTROL_SUBJECT`], nodes tell each other what their caches must forget
//! ([`Control`]: a revoked key, a deleted token, a changed app or its rights) and which
//! connection of a device is the newest (the others close theirs).
//!
//! Every node subscribes to one subject, [`SUBJECT`], and keeps no map of which node
//! holds which device: a notice names device numbers, and each node looks them up in its
//! own registry (a hash lookup per device). The store stays the only truth — a notice
//! carries no message, so a lost notice loses nothing: the device reads its queue on its
//! next connection, and every node re-reads the queues of all its devices after the bus
//! comes back from an outage.

use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::state::Shared;

/// The one subject every node publishes notices on and listens to.
pub const SUBJECT: &str = "herald.deliver";
/// The subject of [`Control`] notices.
pub const CONTROL_SUBJECT: &str = "herald.control";
/// Device numbers per notice (a notice stays far below NATS' 1 MiB payload limit).
const DEVICES_PER_NOTICE: usize = 4_096;
/// Notices waiting to be published; past this, a notice is dropped and counted (the
/// messages are stored; their devices get them when they next read their queue).
const OUTBOX: usize = 4_096;

/// A bus URL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus URL {0:?} is not nats://host:port")]
    Url(String),
    #[error("NATS: {0}")]
    Nats(String),
}

/// "These devices have something new queued": published after a commit.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Notice {
    /// The node that committed it (it has already handed the messages to its own
    /// connections, so it ignores its own notices).
    pub from: String,
    /// Device numbers.
    pub devices: Vec<i64>,
}

/// What one node tells the others about shared state that their memory holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Control {
    /// A service-account key was revoked: forget it and every JWT it signed.
    KeyRevoked { key_id: String },
    /// A device deleted its token: forget it (sends to it are dropped with 5).
    TokenDeleted { token: String },
    /// An operator changed an app (category, limits): read it again.
    AppChanged { client_id: String },
    /// An operator changed an app's rights: read them again.
    RightsChanged { client_id: String },
    /// An operator switched a project's push service on or off: read it again.
    ProjectChanged { project_id: String },
    /// The device said hello on the sender's node with this session number (the
    /// store's count of its hellos): a node holding an older connection closes it.
    DeviceClaimed { device: i64, session: i64 },
}

/// A [`Control`] with the node that sent it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ControlNotice {
    pub from: String,
    #[serde(flatten)]
    pub what: Control,
}

/// What the publisher task sends, in order.
#[derive(Debug)]
enum Outgoing {
    Deliver(Vec<i64>),
    Control(Control),
}

/// This node's side of the bus.
#[derive(Debug)]
pub struct Bus {
    client: async_nats::Client,
    node: String,
    outbox: mpsc::Sender<Outgoing>,
}

/// What [`listen`] consumes: the subscriptions and the bus's reconnections.
#[derive(Debug)]
pub struct Inbox {
    subscriber: async_nats::Subscriber,
    control: async_nats::Subscriber,
    reconnected: mpsc::Receiver<()>,
}

impl Bus {
    /// Connect to `url` (`nats://host:port`) as `node`, subscribe to [`SUBJECT`], and
    /// start the publisher. An unreachable server is retried in the background (the node
    /// starts, and `/readyz` answers 503 until the bus is up).
    pub async fn connect(url: &str, node: &str) -> Result<(Arc<Bus>, Inbox), BusError> {
        let url = url.trim();
        if !(url.starts_with("nats://") || url.starts_with("tls://")) {
            return Err(BusError::Url(url.to_owned()));
        }
        let (reconnect_tx, reconnected) = mpsc::channel(1);
        let client = async_nats::ConnectOptions::new()
            .name(format!("herald {node}"))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let reconnect_tx = reconnect_tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("The NATS bus is connected.");
                            let _ = reconnect_tx.try_send(());
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("The NATS bus is disconnected; retrying.");
                        }
                        other => tracing::debug!(event = %other, "NATS event."),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| BusError::Nats(e.to_string()))?;
        let subscriber = client
            .subscribe(SUBJECT)
            .await
            .map_err(|e| BusError::Nats(e.to_string()))?;
        let control = client
            .subscribe(CONTROL_SUBJECT)
            .await
            .map_err(|e| BusError::Nats(e.to_string()))?;
        let (outbox, rx) = mpsc::channel(OUTBOX);
        tokio::spawn(publish(client.clone(), node.to_owned(), rx));
        Ok((
            Arc::new(Bus {
                client,
                node: node.to_owned(),
                outbox,
            }),
            Inbox {
                subscriber,
                control,
                reconnected,
            },
        ))
    }

    /// Tell the other nodes that `devices` have something new queued. Never waits.
    pub fn announce(&self, devices: Vec<i64>) {
        if devices.is_empty() {
            return;
        }
        if self.outbox.try_send(Outgoing::Deliver(devices)).is_err() {
            metrics::counter!("herald_bus_notices_dropped_total").increment(1);
        }
    }

    /// Tell the other nodes what their memory must forget or close. Never waits.
    pub fn tell(&self, what: Control) {
        if self.outbox.try_send(Outgoing::Control(what)).is_err() {
            metrics::counter!("herald_bus_notices_dropped_total").increment(1);
        }
    }

    /// Whether the bus is connected now (for `/readyz`).
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn node(&self) -> &str {
        &self.node
    }
}

/// Publish queued notices in order, chunked; a failure is logged and counted.
async fn publish(client: async_nats::Client, node: String, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        let payloads: Vec<(&str, serde_json::Result<Vec<u8>>)> = match out {
            Outgoing::Deliver(devices) => devices
                .chunks(DEVICES_PER_NOTICE)
                .map(|chunk| {
                    let notice = Notice {
                        from: node.clone(),
                        devices: chunk.to_vec(),
                    };
                    (SUBJECT, serde_json::to_vec(&notice))
                })
                .collect(),
            Outgoing::Control(what) => {
                let notice = ControlNotice {
                    from: node.clone(),
                    what,
                };
                vec![(CONTROL_SUBJECT, serde_json::to_vec(&notice))]
            }
        };
        for (subject, payload) in payloads {
            let Ok(payload) = payload else {
                continue;
            };
            let started = std::time::Instant::now();
            match client.publish(subject, payload.into()).await {
                Ok(()) => {
                    metrics::counter!("herald_bus_notices_published_total").increment(1);
                    metrics::histogram!("herald_bus_publish_seconds")
                        .record(started.elapsed().as_secs_f64());
                }
                Err(e) => {
                    metrics::counter!("herald_bus_notices_dropped_total").increment(1);
                    tracing::warn!(error = %e, "Could not publish a notice on the bus.");
                }
            }
        }
    }
}

/// Apply another node's [`Control`] to this node.
fn apply(app: &Shared, what: Control) {
    match what {
        Control::KeyRevoked { key_id } => app.jwt.forget_key(&key_id),
        Control::TokenDeleted { token } => app.tokens.remove(&token),
        Control::AppChanged { client_id } => app.apps.invalidate(&client_id),
        Control::RightsChanged { client_id } => app.rights.invalidate(&client_id),
        Control::ProjectChanged { project_id } => app.projects.invalidate(&project_id),
        Control::DeviceClaimed { device, session } => {
            if app.registry.kick_older(device, session) {
                tracing::debug!(
                    device,
                    "A newer connection of a device is on another node; closing this one."
                );
            }
        }
    }
}

/// Apply other nodes' notices to this node's connections until the node shuts down;
/// after every (re)connection of the bus, every connected device re-reads its queue
/// (notices published during an outage are lost, the messages are not).
pub async fn listen(app: Shared, inbox: Inbox) {
    let Inbox {
        mut subscriber,
        mut control,
        mut reconnected,
    } = inbox;
    let node = app
        .bus
        .as_ref()
        .map(|b| b.node().to_owned())
        .unwrap_or_default();
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => break,
            Some(()) = reconnected.recv() => {
                // Notices published while this node was off the bus are lost (at the
                // start, no device is connected yet: this costs nothing): what they
                // would have made it forget, it forgets whole.
                app.forget_shared_caches();
                let n = app.registry.resync_all();
                if n > 0 {
                    tracing::info!(devices = n, "The bus is back; connected devices re-read their queues.");
                }
            }
            message = subscriber.next() => {
                let Some(message) = message else { break };
                let notice: Notice = match serde_json::from_slice(&message.payload) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "Ignoring a malformed notice on the bus.");
                        continue;
                    }
                };
                if notice.from == node {
                    continue;
                }
                metrics::counter!("herald_bus_notices_received_total").increment(1);
                for device in notice.devices {
                    app.registry.resync(device);
                }
            }
            message = control.next() => {
                let Some(message) = message else { break };
                match serde_json::from_slice::<ControlNotice>(&message.payload) {
                    Ok(n) if n.from == node => {}
                    Ok(n) => {
                        metrics::counter!("herald_bus_notices_received_total").increment(1);
                        apply(&app, n.what);
                    }
                    Err(e) => tracing::warn!(error = %e, "Ignoring a malformed control notice on the bus."),
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests panic on the unexpected by design
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_nats_urls_are_taken() {
        assert!(matches!(
            Bus::connect("http://127.0.0.1:4222", "n").await,
            Err(BusError::Url(_))
        ));
    }

    #[test]
    fn a_notice_is_small_json() {
        let n = Notice {
            from: "node-1".into(),
            devices: vec![1, 2],
        };
        let text = serde_json::to_string(&n).unwrap();
        assert_eq!(text, r#"{"from":"node-1","devices":[1,2]}"#);
        assert_eq!(serde_json::from_str::<Notice>(&text).unwrap(), n);
        let c = ControlNotice {
            from: "node-1".into(),
            what: Control::DeviceClaimed {
                device: 7,
                session: 3,
            },
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(
            text,
            r#"{"from":"node-1","kind":"device_claimed","device":7,"session":3}"#
        );
        assert_eq!(serde_json::from_str::<ControlNotice>(&text).unwrap(), c);
    }
}
