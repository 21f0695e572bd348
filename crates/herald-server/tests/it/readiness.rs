//! `/readyz` answers 503 while the store does not answer and 200 again once it does;
//! `/healthz` stays 200 throughout (liveness only).

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::helpers::*;

async fn status(app: &TestApp, path: &str) -> u16 {
    app.http
        .get(format!("{}{path}", app.url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Poll `/readyz` until it answers `want` (verdicts are reused for a second).
pub async fn wait_ready(app: &TestApp, want: u16, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = status(app, "/readyz").await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz still answers {got}, not {want}, after {within:?}"
        );
        // tidy: /readyz has no change notification (its verdict is reused for a second)
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_is_503_once_the_store_is_gone() {
    let app = spawn_app().await;
    assert_eq!(status(&app, "/readyz").await, 200);
    let body: serde_json::Value = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ready");
    // A closed store refuses every call, as an unreachable one does.
    app.state.store.close().await;
    wait_ready(&app, 503, Duration::from_secs(30)).await;
    assert_eq!(
        status(&app, "/healthz").await,
        200,
        "liveness is not readiness"
    );
}

/// A loopback TCP proxy to PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    target: String,
    tasks: Option<JoinSet<()>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut proxy = Proxy {
            port,
            target,
            tasks: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let target = self.target.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Close the listener and every connection through it.
    async fn cut(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.shutdown().await;
        }
    }

    async fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

#[tokio::test]
async fn readyz_follows_postgresql_going_away_and_coming_back() {
    let Ok(pg) = std::env::var("HERALD_TEST_POSTGRES_URL") else {
        eprintln!(
            "SKIPPED readyz_follows_postgresql_going_away_and_coming_back: HERALD_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let mut proxy = Proxy::start(host_port(&pg)).await;
    let schema = format!("herald_readyz_{}", std::process::id());
    let via_proxy = pg.replacen(&host_port(&pg), &format!("127.0.0.1:{}", proxy.port), 1);
    let sep = if via_proxy.contains('?') { '&' } else { '?' };
    let store = format!("{via_proxy}{sep}schema={schema}");
    let app = spawn_app_with(|c| c.store = store).await;
    assert_eq!(status(&app, "/readyz").await, 200);

    proxy.cut().await;
    wait_ready(&app, 503, Duration::from_secs(15)).await;
    assert_eq!(
        status(&app, "/healthz").await,
        200,
        "liveness is not readiness"
    );

    proxy.restore().await;
    wait_ready(&app, 200, Duration::from_secs(15)).await;

    app.stop().await;
    drop_schema(&pg, &schema);
}

/// Drop a test schema with `psql` (the test has no PostgreSQL client of its own).
///
/// It runs while the test's runtime is blocked (a `Drop`, or the test's last line), so
/// the in-process nodes' connections cannot finish what they were doing: a transaction
/// one of them had open when the test ended (a receipt claim, say) would hold its locks
/// and make `DROP SCHEMA` wait forever. So the sessions holding locks in this schema
/// (only this test's nodes use it) are ended first, and the drop gives up after a bound.
pub fn drop_schema(url: &str, schema: &str) {
    let end_holders = format!(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
         JOIN pg_class c ON c.oid = l.relation \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = '{schema}' AND l.pid <> pg_backend_pid()"
    );
    let out = std::process::Command::new("psql")
        .arg(url)
        .args([
            "-q",
            "-o",
            "/dev/null",
            "-c",
            &end_holders,
            "-c",
            "SET lock_timeout = '10s'",
            "-c",
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        other => eprintln!("could not drop schema {schema}: {other:?}"),
    }
}

#[tokio::test]
async fn readyz_follows_the_nats_bus_going_away_and_coming_back() {
    let Ok(nats) = std::env::var("HERALD_TEST_NATS_URL") else {
        eprintln!(
            "SKIPPED readyz_follows_the_nats_bus_going_away_and_coming_back: HERALD_TEST_NATS_URL is not set"
        );
        return;
    };
    let mut proxy = Proxy::start(host_port(&nats)).await;
    let bus = format!("nats://127.0.0.1:{}", proxy.port);
    let app = spawn_app_with(|c| c.bus = bus).await;
    wait_ready(&app, 200, Duration::from_secs(15)).await;

    proxy.cut().await;
    wait_ready(&app, 503, Duration::from_secs(15)).await;
    let body: serde_json::Value = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["bus"], "disconnected", "{body}");
    assert_eq!(body["store"], "ok", "{body}");
    assert_eq!(
        status(&app, "/healthz").await,
        200,
        "liveness is not readiness"
    );

    proxy.restore().await;
    wait_ready(&app, 200, Duration::from_secs(20)).await;
    app.stop().await;
}
