//! The JSON lines between `herald-bench` and its `herald-bench fleet` child processes:
//! commands on the child's stdin, events on its stdout (one JSON object per line).

use serde::{Deserialize, Serialize};

/// What a fleet's devices connect to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceTarget {
    /// A Herald node, over the documented device protocol (`docs/protocol.md`).
    Herald { ws_url: String, client_id: String },
    /// The ceiling server: one WebSocket per device at `{ws_url}/{device}`.
    Ceiling { ws_url: String },
    /// An MQTT broker: one client per device subscribed to its own topic at QoS 1.
    Mqtt { host: String, port: u16 },
}

/// Parent → child.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Connect `count` new devices, `concurrency` handshakes at a time.
    Connect {
        target: DeviceTarget,
        count: usize,
        concurrency: usize,
    },
    /// Close every device's socket (after sending its pending acks), keeping what it needs
    /// to come back as the same device.
    Disconnect,
    /// Bring back every disconnected device as itself (Herald: `hello` with its credential).
    Reconnect { concurrency: usize },
    /// Report the counters and latencies since the last collect, and reset them.
    Collect,
    /// Close everything and exit.
    Stop,
}

/// Child → parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Every 100 ms: devices connected so far and messages received since the last collect.
    Tick {
        connected: u64,
        delivered: u64,
    },
    /// `Connect` finished; the devices' addresses (Herald tokens, ceiling ids, MQTT topics)
    /// in the order they connected.
    Connected {
        tokens: Vec<String>,
    },
    Disconnected,
    Reconnected,
    Collected(Collected),
    /// A command failed; the fleet keeps running.
    Failed {
        error: String,
    },
    Stopped,
}

/// What the devices of a fleet saw between two collects.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Collected {
    /// Unique messages received.
    pub delivered: u64,
    /// Messages received again.
    pub duplicates: u64,
    /// Message ids acknowledged to the server.
    pub acks: u64,
    /// Connections that ended without being asked to.
    pub lost: u64,
    /// Microseconds since the Unix epoch of the first and last unique message (0: none).
    pub first_delivery_us: u64,
    pub last_delivery_us: u64,
    /// Send stamp → receipt, one per unique message that carried a stamp.
    pub latencies_us: Vec<u64>,
}

impl Collected {
    /// Adds another fleet's numbers to these.
    pub fn merge(&mut self, other: Collected) {
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.acks += other.acks;
        self.lost += other.lost;
        if other.first_delivery_us != 0
            && (self.first_delivery_us == 0 || other.first_delivery_us < self.first_delivery_us)
        {
            self.first_delivery_us = other.first_delivery_us;
        }
        self.last_delivery_us = self.last_delivery_us.max(other.last_delivery_us);
        self.latencies_us.extend(other.latencies_us);
    }
}

/// The key in a Herald notification's `clickAction.data`, and in ceiling and MQTT payloads,
/// that carries the send time (µs since the Unix epoch).
pub const SENT_AT_KEY: &str = "benchSentUs";
