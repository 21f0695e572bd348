//! The accept loop that serves the router: hyper's HTTP/1 connections with a timer
//! (header-read timeout, which also bounds an idle keep-alive), a deadline on request
//! bodies, an idle timeout on connections that move no bytes, a global connection cap,
//! a per-address connection cap, optional TLS (rustls), and graceful shutdown.
//!
//! It replaces `axum::serve`, which runs hyper without a timer (no header timeout) and
//! without any cap. WebSocket upgrades go through it unchanged: hyper hands the socket
//! to axum's `WebSocketUpgrade`, and the connection's guards travel inside the socket's
//! IO type, so a device socket keeps its slot (global and per-address) for its life.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::DeadlineBody;

use crate::config::Limits;
use crate::limits::{ClientAddr, Guards, Held, client_addr};

/// How the listener serves: the router, the guards, the timeouts and TLS.
#[derive(Clone)]
pub struct Listener {
    pub router: Router,
    pub guards: Arc<Guards>,
    pub tls: Option<TlsAcceptor>,
    pub header_read_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tls", &self.tls.is_some())
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Listener {
    pub fn new(
        router: Router,
        guards: Arc<Guards>,
        limits: &Limits,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        Listener {
            router,
            guards,
            tls,
            header_read_timeout: Duration::from_secs(limits.header_read_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(limits.body_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(limits.http_idle_timeout_secs.max(1)),
            max_connections: limits.max_connections.max(1),
        }
    }

    /// Accept and serve until `stop` is cancelled; then stop accepting, let each
    /// connection finish its request in flight (keep-alive off), and return when all are
    /// done or `grace` has passed (the rest are dropped).
    pub async fn serve(self, listener: TcpListener, stop: CancellationToken, grace: Duration) {
        let this = Arc::new(self);
        // Why a semaphore: a permit per open connection, taken before `accept`, so past
        // the cap new connections wait in the kernel's backlog instead of costing us a
        // task and buffers; the permit travels with the socket (also when upgraded).
        let slots = Arc::new(Semaphore::new(
            this.max_connections.min(Semaphore::MAX_PERMITS),
        ));
        let tracker = TaskTracker::new();
        let hard_stop = CancellationToken::new();
        loop {
            let slot = tokio::select! {
                _ = stop.cancelled() => break,
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: wait a little instead of spinning.
                        tracing::warn!(error = %e, "Could not accept a connection.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let held = match this.guards.hold_connection(peer.ip()) {
                Ok(held) => held,
                Err(_at_capacity) => {
                    metrics::counter!("herald_connections_refused_total", "why" => "per_address")
                        .increment(1);
                    tracing::debug!(%peer, "Too many connections from one address; refusing one.");
                    tracker.spawn(refuse(stream, this.tls.is_none()));
                    continue;
                }
            };
            let guards = ConnGuards::new(slot, held);
            tracker.spawn(this.clone().connection(
                stream,
                peer,
                guards,
                stop.clone(),
                hard_stop.clone(),
            ));
        }
        drop(listener);
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!("Graceful shutdown timed out; dropping remaining requests.");
            hard_stop.cancel();
            tracker.wait().await;
        }
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        guards: ConnGuards,
        stop: CancellationToken,
        hard_stop: CancellationToken,
    ) {
        let activity = Arc::new(Activity::new());
        let io = Tracked {
            inner: stream,
            activity: activity.clone(),
            _guards: guards,
        };
        match &self.tls {
            None => self.http(io, peer, activity, stop, hard_stop).await,
            Some(acceptor) => {
                let handshake = tokio::time::timeout(self.header_read_timeout, acceptor.accept(io));
                let tls = tokio::select! {
                    _ = hard_stop.cancelled() => return,
                    h = handshake => h,
                };
                match tls {
                    Ok(Ok(tls)) => self.http(tls, peer, activity, stop, hard_stop).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed."),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out."),
                }
            }
        }
    }

    async fn http<I>(
        &self,
        io: I,
        peer: SocketAddr,
        activity: Arc<Activity>,
        stop: CancellationToken,
        hard_stop: CancellationToken,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let guards = self.guards.clone();
        let body_timeout = self.body_timeout;
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let client = client_addr(peer.ip(), req.headers(), guards.proxy_header());
            req.extensions_mut().insert(ClientAddr(client));
            let req = req.map(|b| Body::new(DeadlineBody::new(body_timeout, b)));
            let mut router = router.clone();
            async move {
                let resp: Response<Body> = tower_service::Service::call(&mut router, req)
                    .await
                    .unwrap_or_else(|e: Infallible| match e {});
                Ok::<_, Infallible>(resp)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(64 * 1024);
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            let idle_for = activity.idle_for();
            let idle_left = self.idle_timeout.saturating_sub(idle_for);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "Connection ended with an error.");
                    }
                    return;
                }
                _ = stop.cancelled(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = hard_stop.cancelled() => return,
                _ = tokio::time::sleep(idle_left) => {
                    if activity.idle_for() >= self.idle_timeout {
                        metrics::counter!("herald_connections_idle_closed_total").increment(1);
                        tracing::debug!(%peer, "Connection moved no bytes for too long; closing it.");
                        return;
                    }
                }
            }
        }
    }
}

/// Why a refused connection gets an answer at all: a client (or a proxy) that sees a
/// reset cannot tell it from a crash. Plain HTTP only; a TLS client gets the close.
async fn refuse(mut stream: TcpStream, plain: bool) {
    if plain {
        let answer = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 45\r\n\r\ntoo many open connections from this address\r\n";
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer)).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    }
}

/// The slots a connection holds while it is open (and the open-connections gauge).
#[derive(Debug)]
struct ConnGuards {
    _slot: OwnedSemaphorePermit,
    _held: Option<Held>,
}

impl ConnGuards {
    fn new(slot: OwnedSemaphorePermit, held: Option<Held>) -> Self {
        metrics::gauge!("herald_connections_open").increment(1.0);
        ConnGuards {
            _slot: slot,
            _held: held,
        }
    }
}

impl Drop for ConnGuards {
    fn drop(&mut self) {
        metrics::gauge!("herald_connections_open").decrement(1.0);
    }
}

/// When the connection last moved a byte, as milliseconds since it opened.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.opened.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The TCP stream, noting each byte moved and carrying the connection's slots (so an
/// upgraded WebSocket keeps them until it closes).
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
    _guards: ConnGuards,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A rustls acceptor from PEM files: the certificate chain and its private key. HTTP/1.1
/// only (ALPN), as the router speaks.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("tls_cert {}: no certificate in it", cert.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
