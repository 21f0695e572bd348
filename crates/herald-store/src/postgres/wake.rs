//! Waking the receipt dispatchers of other nodes: after a commit that queued receipts, a
//! node sends `NOTIFY` on the store's channel, and every node listens on it with one
//! connection of its own and wakes its dispatcher. Only a hint: dispatchers also poll
//! every second, so a lost notification costs at most that.
//!
//! Why throttled: PostgreSQL serialises the commits of transactions that notify, so the
//! notification is sent outside the sending transaction, at most every
//! [`ANNOUNCE_EVERY`] per node, from a task of its own (never delaying the send path).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

/// At most one notification per node this often.
pub const ANNOUNCE_EVERY: Duration = Duration::from_millis(200);
/// A lost listening connection is made again after this long.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// One store's channel: what it sends on, and how it listens.
pub(crate) struct Wake {
    config: tokio_postgres::Config,
    channel: String,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last notification sent (0: none yet).
    last_ms: AtomicU64,
}

impl Wake {
    /// The channel of the store in `schema` (each schema is its own store).
    pub(crate) fn new(config: tokio_postgres::Config, schema: Option<&str>) -> Wake {
        // Identifiers are at most 63 bytes; schema names are checked to be ASCII.
        let mut channel = format!("herald_receipts_{}", schema.unwrap_or("default"));
        channel.truncate(63);
        Wake {
            config,
            channel,
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Notify the other nodes, unless this node did less than [`ANNOUNCE_EVERY`] ago.
    pub(crate) fn announce(&self, pool: &Pool) {
        let now = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let every = u64::try_from(ANNOUNCE_EVERY.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < every {
            return;
        }
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another commit is announcing right now
        }
        let (pool, channel) = (pool.clone(), self.channel.clone());
        tokio::spawn(async move {
            let sent = match pool.get().await {
                Ok(client) => client
                    .execute("SELECT pg_notify($1, '')", &[&channel])
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                tracing::debug!(error = %e, "Could not wake the other nodes' receipt dispatchers.");
            }
        });
    }

    /// Listen on the channel until aborted, waking `notify` on every notification;
    /// reconnects after a lost connection.
    pub(crate) fn listen(&self, notify: Arc<Notify>) -> tokio::task::JoinHandle<()> {
        let (config, channel) = (self.config.clone(), self.channel.clone());
        tokio::spawn(async move {
            loop {
                match listen_once(&config, &channel, &notify).await {
                    Ok(()) => tracing::debug!("The receipt wake-up connection closed."),
                    Err(e) => tracing::debug!(error = %e, "The receipt wake-up connection failed."),
                }
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        })
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    channel: &str,
    notify: &Notify,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The connection only moves while it is polled, so LISTEN runs alongside the loop.
    let listen = format!("LISTEN \"{channel}\"");
    let subscribe = client.batch_execute(&listen);
    tokio::pin!(subscribe);
    let mut subscribed = false;
    loop {
        tokio::select! {
            done = &mut subscribe, if !subscribed => {
                done?;
                subscribed = true;
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => notify.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }
}
