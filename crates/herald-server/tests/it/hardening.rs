//! Hostile clients, one test per hole (issue 13): login floods, registration floods,
//! too many sockets from one address, slow and silent clients, TLS, JWT edge cases,
//! security headers and `/metrics`. Each fails on a server without the guard.
//!
//! Timeouts (header read, body, idle) are hyper's and tokio's real timers, so those
//! tests wait about a second of real time; back-off windows move with the ManualClock.

use std::time::{Duration, Instant};

use herald_server::config::Cidrs;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{RawDevice, TestApp, spawn_app, spawn_app_with};

const PROXY_HEADER: &str = "x-forwarded-for";

fn behind_proxy(c: &mut herald_server::Config) {
    c.limits.trusted_proxy_header = PROXY_HEADER.into();
}

async fn login(app: &TestApp, from: &str, password: &str) -> (StatusCode, Option<String>) {
    let resp = app
        .http
        .post(format!("{}/api/v1/sessions", app.url))
        .header(PROXY_HEADER, from)
        .json(&json!({"username": app.info.admin_username, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status(), retry_after)
}

/// Hole: every login ran argon2 (~19 MiB) on its own blocking thread, unbounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_flood_runs_only_a_few_password_checks_and_answers_the_rest_429() {
    let app = spawn_app_with(|c| {
        behind_proxy(c);
        c.limits.login_concurrency = 1;
        // Isolate the concurrency bound from the back-offs.
        c.limits.login_failures_burst = 1000;
        c.limits.user_login_failures_burst = 1000;
    })
    .await;
    let flood: Vec<_> = (0..24)
        .map(|i| {
            let http = app.http.clone();
            let url = format!("{}/api/v1/sessions", app.url);
            let user = app.info.admin_username.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let resp = http
                    .post(url)
                    .header(PROXY_HEADER, format!("198.51.100.{i}"))
                    .json(&json!({"username": user, "password": "wrong"}))
                    .send()
                    .await
                    .unwrap();
                let retry = resp.headers().contains_key("retry-after");
                (resp.status(), retry, started.elapsed())
            })
        })
        .collect();
    let mut refused = 0;
    let mut throttled = 0;
    for f in flood {
        let (status, retry, _took) = f.await.unwrap();
        match status {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry, "a 429 says when to come back");
                throttled += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused >= 1, "some attempts were checked");
    // Each check takes tens of milliseconds; the 24 attempts arrive within a few, so
    // most find the one slot taken (a lower bound that holds on a loaded machine too).
    assert!(
        throttled >= 4,
        "with one check at a time, simultaneous attempts are turned away unchecked ({throttled} were, {refused} checked)"
    );
    // The real admin still gets in once the flood is over.
    let (status, _) = login(&app, "192.0.2.1", &app.info.admin_password).await;
    assert_eq!(status, StatusCode::CREATED);
}

/// Hole: unlimited password guesses per address and per user.
#[tokio::test]
async fn failed_logins_back_off_per_address_and_per_user() {
    let app = spawn_app_with(|c| {
        behind_proxy(c);
        c.limits.login_failures_burst = 3;
        c.limits.login_failure_cooldown_secs = 60;
        c.limits.user_login_failures_burst = 100;
    })
    .await;
    let password = app.info.admin_password.clone();
    for _ in 0..3 {
        assert_eq!(
            login(&app, "203.0.113.5", "guess").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password is not checked while the address is in back-off.
    let (status, retry) = login(&app, "203.0.113.5", &password).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another address is unaffected.
    assert_eq!(
        login(&app, "203.0.113.6", &password).await.0,
        StatusCode::CREATED
    );
    // The back-off ends.
    app.clock.advance_secs(60);
    assert_eq!(
        login(&app, "203.0.113.5", &password).await.0,
        StatusCode::CREATED
    );

    // Per user: guesses spread over many addresses still slow down.
    let app = spawn_app_with(|c| {
        behind_proxy(c);
        c.limits.login_failures_burst = 100;
        c.limits.user_login_failures_burst = 3;
        c.limits.user_login_failure_cooldown_secs = 15;
    })
    .await;
    for i in 0..3 {
        let from = format!("192.0.2.{i}");
        assert_eq!(
            login(&app, &from, "guess").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, _) = login(&app, "192.0.2.77", &app.info.admin_password).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance_secs(15);
    let (status, _) = login(&app, "192.0.2.77", &app.info.admin_password).await;
    assert_eq!(status, StatusCode::CREATED);
}

/// Hole: anyone who reached the gateway could register unlimited devices.
#[tokio::test]
async fn device_registrations_are_limited_per_address() {
    let app = spawn_app_with(|c| {
        behind_proxy(c);
        c.limits.registrations_burst = 3;
        c.limits.registrations_per_hour = 60;
    })
    .await;
    let mut first = None;
    for _ in 0..3 {
        let mut d = RawDevice::connect_from(&app, "198.51.100.20")
            .await
            .unwrap();
        d.try_hello().await.expect("registered");
        first.get_or_insert(d.credential.clone());
    }
    let mut d = RawDevice::connect_from(&app, "198.51.100.20")
        .await
        .unwrap();
    assert_eq!(
        d.try_hello().await,
        Err(Some(herald_proto::device::close::TRY_AGAIN_LATER)),
        "the fourth new device from one address is told to come back later"
    );
    // A known device from the same address still gets in.
    let mut known = RawDevice::connect_from(&app, "198.51.100.20")
        .await
        .unwrap();
    known.credential = first.unwrap();
    known
        .try_hello()
        .await
        .expect("a registered device re-identifies");
    // Another address may register.
    let mut other = RawDevice::connect_from(&app, "198.51.100.21")
        .await
        .unwrap();
    other.try_hello().await.expect("registered");
    // One more per minute (60 an hour).
    app.clock.advance_secs(60);
    let mut later = RawDevice::connect_from(&app, "198.51.100.20")
        .await
        .unwrap();
    later
        .try_hello()
        .await
        .expect("registered after the refill");
}

/// Without `trusted_proxy_header`, a client naming other addresses in the header is
/// still counted as itself.
#[tokio::test]
async fn the_proxy_header_is_ignored_unless_configured() {
    let app = spawn_app_with(|c| c.limits.registrations_burst = 2).await;
    for i in 0..2 {
        let mut d = RawDevice::connect_from(&app, &format!("198.51.100.{i}"))
            .await
            .unwrap();
        d.try_hello().await.expect("registered");
    }
    let mut d = RawDevice::connect_from(&app, "198.51.100.99")
        .await
        .unwrap();
    assert_eq!(
        d.try_hello().await,
        Err(Some(herald_proto::device::close::TRY_AGAIN_LATER))
    );
}

/// Hole: no cap on device sockets per address.
#[tokio::test]
async fn device_sockets_are_capped_per_address_unless_exempt() {
    let app = spawn_app_with(|c| {
        behind_proxy(c);
        c.limits.device_connections_per_addr = 2;
        c.limits.exempt = "192.0.2.0/24".parse().unwrap();
    })
    .await;
    let mut a = RawDevice::connect_from(&app, "198.51.100.30")
        .await
        .unwrap();
    a.try_hello().await.unwrap();
    let mut b = RawDevice::connect_from(&app, "198.51.100.30")
        .await
        .unwrap();
    b.try_hello().await.unwrap();
    assert_eq!(
        RawDevice::connect_from(&app, "198.51.100.30").await.err(),
        Some(429)
    );
    // An exempt network is not counted.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut d = RawDevice::connect_from(&app, "192.0.2.9").await.unwrap();
        d.try_hello().await.unwrap();
        held.push(d);
    }
    // Closing one gives its slot back.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match RawDevice::connect_from(&app, "198.51.100.30").await {
            Ok(_) => break,
            Err(429) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(s) => panic!("the slot never came back ({s})"),
        }
    }
}

/// A raw TCP connection to the app.
async fn tcp(app: &TestApp) -> TcpStream {
    let addr = app.url.trim_start_matches("http://");
    TcpStream::connect(addr).await.unwrap()
}

/// Read until the peer closes (or `limit` passes); how long that took and what came.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection was still open after {limit:?}: {}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&got).into_owned(),
    )
}

/// Hole: no header-read timeout (slowloris holds a socket for ever).
#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let app = spawn_app_with(|c| c.limits.header_read_timeout_secs = 1).await;
    let mut s = tcp(&app).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (took, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

/// Hole: no body timeout (a body trickled in, or never sent, held a request for ever).
#[tokio::test]
async fn a_body_that_never_arrives_is_cut_off() {
    let app = spawn_app_with(|c| c.limits.body_timeout_secs = 1).await;
    let mut s = tcp(&app).await;
    let head = "POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"user";
    s.write_all(head.as_bytes()).await.unwrap();
    let (took, answer) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a client error or a close, not a success: {answer}"
    );

    // The Push Kit API says what happened in its own terms.
    let mut s = tcp(&app).await;
    let head = format!(
        "POST /v3/{}/messages:send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\npush-type: 0\r\nContent-Type: application/json\r\nContent-Length: 200\r\nConnection: close\r\n\r\n{{\"payload",
        app.info.project_id,
        app.jwt()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (_, answer) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(answer.contains("80100001"), "{answer}");
}

/// Hole: a connection that moves nothing (here: opens and never speaks, with a long
/// header timeout) was kept for ever.
#[tokio::test]
async fn a_connection_that_moves_no_bytes_is_closed() {
    let app = spawn_app_with(|c| {
        c.limits.header_read_timeout_secs = 30;
        c.limits.http_idle_timeout_secs = 1;
    })
    .await;
    let mut s = tcp(&app).await;
    let (took, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

/// Hole: no cap on connections, per address or in all.
#[tokio::test]
async fn connections_are_capped_per_address_and_in_all() {
    let app = spawn_app_with(|c| c.limits.connections_per_addr = 3).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(tcp(&app).await);
    }
    let mut fourth = tcp(&app).await;
    let (_, answer) = read_until_closed(&mut fourth, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    drop(open);

    let app = spawn_app_with(|c| c.limits.max_connections = 2).await;
    let a = tcp(&app).await;
    let b = tcp(&app).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    let healthz = format!("{}/healthz", app.url);
    assert!(
        http.get(&healthz).send().await.is_err(),
        "a third connection waits while two are open"
    );
    drop((a, b));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(
        http.get(&healthz)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

/// Graceful shutdown through the new accept loop: a request in flight finishes, device
/// sockets close with 1001, new connections are refused.
#[tokio::test]
async fn shutdown_closes_devices_with_1001_and_stops_accepting() {
    let app = spawn_app().await;
    let mut d = RawDevice::connect(&app).await;
    d.hello().await;
    let url = app.url.clone();
    app.stop().await;
    assert_eq!(
        d.next().await.err(),
        Some(Some(herald_proto::device::close::GOING_AWAY))
    );
    assert!(reqwest::get(format!("{url}/healthz")).await.is_err());
}

/// Hole: no security headers on the pages.
#[tokio::test]
async fn pages_carry_security_headers() {
    let app = spawn_app().await;
    for path in ["/console", "/device", "/device/sdk.js"] {
        let resp = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        let csp = h
            .get("content-security-policy")
            .expect(path)
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("'unsafe-eval'"), "{csp}");
        assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
        assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
        assert!(h.contains_key("referrer-policy"));
    }
}

/// Hole: `/metrics` was open to anyone.
#[tokio::test]
async fn metrics_are_for_allowed_addresses_and_admins_only() {
    // Default: loopback may scrape.
    let app = spawn_app().await;
    let resp = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let app = spawn_app_with(|c| c.metrics_allow = Cidrs::default()).await;
    let url = format!("{}/metrics", app.url);
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 403);
    let resp = app
        .http
        .get(&url)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = app
        .http
        .get(&url)
        .bearer_auth(&app.info.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Hole: `exp - iat` without overflow checks; a key holder's JWT could live for ever
/// (and a debug build panicked in the handler).
#[tokio::test]
async fn a_jwt_whose_period_overflows_is_refused() {
    let app = spawn_app().await;
    let jwt = app.jwt_with(jsonwebtoken::Algorithm::PS256, |c| {
        c.iat = i64::MIN + 10;
        c.exp = i64::MAX;
    });
    let body = serde_json::to_vec(&crate::helpers::notification(&["t"], "x")).unwrap();
    let (status, answer) = app
        .send_raw(
            &app.info.project_id,
            Some(format!("Bearer {jwt}")),
            Some("0"),
            body,
        )
        .await;
    assert_eq!(answer["code"], "80300036", "{status} {answer}");
}

/// Hole: the verified-JWT cache grew without bound (and scanned itself once large).
#[tokio::test]
async fn the_jwt_cache_stays_within_its_bound() {
    let app = spawn_app_with(|c| c.limits.jwt_cache_entries = 32).await;
    let mut last = String::new();
    for i in 0..200 {
        last = app.jwt_with(jsonwebtoken::Algorithm::RS256, |c| c.exp = c.iat + 3600 + i);
        let header = format!("Bearer {last}");
        app.state
            .jwt
            .principal(Some(&header))
            .await
            .expect("valid JWT");
    }
    assert!(
        app.state.jwt.cached() <= 64,
        "{} cached JWTs for a bound of 32",
        app.state.jwt.cached()
    );
    // Still a cache: the last one is remembered and served.
    let header = format!("Bearer {last}");
    app.state.jwt.principal(Some(&header)).await.unwrap();
}

/// Request ids of concurrent sends never collide (they were ms + 7 random digits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_get_distinct_request_ids() {
    let app = spawn_app().await;
    let (_device, token) = crate::helpers::device_with_token(&app).await;
    let jwt = format!("Bearer {}", app.jwt());
    let sends: Vec<_> = (0..64)
        .map(|i| {
            let http = app.http.clone();
            let url = format!("{}/v3/{}/messages:send", app.url, app.info.project_id);
            let body = crate::helpers::notification(&[&token], &format!("n{i}"));
            let jwt = jwt.clone();
            tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .header("Authorization", jwt)
                    .header("push-type", "0")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                resp.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for s in sends {
        let answer = s.await.unwrap();
        assert_eq!(answer["code"], "80000000", "{answer}");
        let id = answer["requestId"].as_str().unwrap().to_owned();
        assert_eq!(id.len(), 20);
        assert!(ids.insert(id), "duplicate requestId");
    }
}
