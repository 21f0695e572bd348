//! `spawn_app()` and typed request helpers shared by the integration tests.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_core::{Clock, ManualClock};
use herald_proto::device::{ClientFrame, DeviceCredential, DeviceMessage, ServerFrame};
use herald_proto::keyfile::{HUAWEI_TOKEN_URI, JwtClaims, KeyFile};
use herald_server::state::Shared;
use herald_server::{BootstrapInfo, Config, Herald};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A running server with its own data directory and a manual clock.
pub struct TestApp {
    pub url: String,
    pub info: BootstrapInfo,
    pub key: KeyFile,
    pub clock: ManualClock,
    pub state: Shared,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// The marker app (see [`RawDevice::frames_before_marker`]), made on first use and
    /// kept across restarts.
    marker: Arc<tokio::sync::OnceCell<MarkerApp>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A server whose bootstrap app holds the `IM` right, so tests about delivery can send
/// many notifications (as `IM`) without meeting the MARKETING quota.
pub async fn spawn_app() -> TestApp {
    let app = spawn_bare_app().await;
    app.state
        .store
        .change_right(herald_store::RightChange {
            client_id: app.info.client_id.clone(),
            name: "IM".into(),
            action: herald_core::rights::RightAction::Grant,
            reason: Some("test chat app".into()),
            actor: "test".into(),
            at: herald_core::Clock::now_ms(&app.clock),
            ..Default::default()
        })
        .await
        .expect("store")
        .expect("grant");
    app
}

/// A server exactly as bootstrapped: no rights granted.
pub async fn spawn_bare_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tune: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    start(dir, None, tune).await
}

/// Another node on `first`'s shared store (and bus, if it has one): its own data
/// directory and port, `first`'s clock, project, key and marker app; it finds the store
/// bootstrapped and serves the same project.
pub async fn spawn_peer(first: &TestApp) -> TestApp {
    let store = first.state.config.store.clone();
    let bus = first.state.config.bus.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    start(
        dir,
        Some((
            first.info.clone(),
            first.clock.clone(),
            first.marker.clone(),
        )),
        move |c| {
            c.store = store;
            c.bus = bus;
        },
    )
    .await
}

/// What a restart carries over: the bootstrap, the clock and the marker app.
type Previous = (
    BootstrapInfo,
    ManualClock,
    Arc<tokio::sync::OnceCell<MarkerApp>>,
);

async fn start(
    dir: tempfile::TempDir,
    previous: Option<Previous>,
    tune: impl FnOnce(&mut Config),
) -> TestApp {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        sqlite_synchronous: "normal".into(),
        shutdown_grace_secs: 2,
        ..Config::default()
    };
    tune(&mut config);
    let clock = previous
        .as_ref()
        .map(|(_, c, _)| c.clone())
        .unwrap_or_else(ManualClock::starting_now);
    let marker = previous
        .as_ref()
        .map(|(_, _, m)| m.clone())
        .unwrap_or_default();
    let herald = Herald::prepare(listener, config, Arc::new(clock.clone()))
        .await
        .expect("server prepares");
    let info = match previous {
        Some((info, _, _)) => {
            assert!(
                herald.bootstrap_info().is_none(),
                "a restart does not bootstrap again"
            );
            info
        }
        None => herald.bootstrap_info().expect("first start").clone(),
    };
    let key: KeyFile = serde_json::from_str(
        &std::fs::read_to_string(&info.service_account_file).expect("key file"),
    )
    .expect("key file JSON");
    let url = herald.public_url().to_owned();
    let state = herald.state();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        herald
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
    });
    TestApp {
        url,
        info,
        key,
        clock,
        state,
        dir,
        http: reqwest::Client::new(),
        marker,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    /// A JWT signed from the key file with `alg`, valid for an hour from the app's clock.
    pub fn jwt_with(&self, alg: Algorithm, edit: impl FnOnce(&mut JwtClaims)) -> String {
        let iat = self.clock.now_secs();
        let mut claims = JwtClaims {
            iss: self.key.sub_account.clone(),
            aud: Value::String(HUAWEI_TOKEN_URI.to_owned()),
            iat,
            exp: iat + 3600,
        };
        edit(&mut claims);
        let mut header = Header::new(alg);
        header.kid = Some(self.key.key_id.clone());
        header.typ = Some("JWT".into());
        let key = EncodingKey::from_rsa_pem(self.key.private_key.as_bytes()).expect("key");
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    }

    pub fn jwt(&self) -> String {
        self.jwt_with(Algorithm::PS256, |_| {})
    }

    /// POST a send with the given `Authorization` and `push-type` headers.
    pub async fn send_raw(
        &self,
        project_id: &str,
        authorization: Option<String>,
        push_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/v3/{project_id}/messages:send", self.url))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        if let Some(p) = push_type {
            req = req.header("push-type", p);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("JSON body");
        (status, body)
    }

    /// A well-authenticated push-type 0 send.
    pub async fn send(&self, body: Value) -> (u16, Value) {
        self.send_raw(
            &self.info.project_id,
            Some(format!("Bearer {}", self.jwt())),
            Some("0"),
            serde_json::to_vec(&body).expect("JSON"),
        )
        .await
    }

    /// Graceful shutdown, as on SIGTERM; returns the data directory.
    pub async fn stop(mut self) -> (tempfile::TempDir, BootstrapInfo, ManualClock) {
        self.shut_down().await;
        (self.dir, self.info, self.clock)
    }

    async fn shut_down(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Stop gracefully and start again on the same data directory (and clock).
    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Like `restart`, with the configuration tuned as for `spawn_app_with`.
    pub async fn restart_with(mut self, tune: impl FnOnce(&mut Config)) -> TestApp {
        self.shut_down().await;
        let marker = self.marker.clone();
        let (dir, info, clock) = (self.dir, self.info, self.clock);
        start(dir, Some((info, clock, marker)), tune).await
    }

    /// The marker app, made on first use: a project of its own with an app holding the
    /// `IM` right and a key, so its sends meet none of the quotas or rate limits the
    /// tests set on the bootstrap app.
    async fn marker_app(&self) -> &MarkerApp {
        self.marker
            .get_or_init(|| async {
                let client_id =
                    add_project_with_app(self, MARKER_PROJECT, "9999999999999999999").await;
                self.state
                    .store
                    .change_right(herald_store::RightChange {
                        client_id: client_id.clone(),
                        name: "IM".into(),
                        action: herald_core::rights::RightAction::Grant,
                        reason: Some("markers".into()),
                        actor: "test".into(),
                        at: self.clock.now_ms(),
                        ..Default::default()
                    })
                    .await
                    .expect("store")
                    .expect("grant");
                let created = self
                    .http
                    .post(format!(
                        "{}/api/v1/projects/{MARKER_PROJECT}/keys",
                        self.url
                    ))
                    .bearer_auth(&self.info.admin_token)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(created.status().as_u16(), 201, "the marker app's key");
                MarkerApp {
                    client_id,
                    key: created.json().await.expect("a key file"),
                }
            })
            .await
    }

    /// A JWT from `key` (any project's key file), valid for an hour on the app's clock.
    pub fn jwt_for(&self, key: &KeyFile) -> String {
        let iat = self.clock.now_secs();
        let claims = JwtClaims {
            iss: key.sub_account.clone(),
            aud: Value::String(HUAWEI_TOKEN_URI.to_owned()),
            iat,
            exp: iat + 3600,
        };
        let mut header = Header::new(Algorithm::PS256);
        header.kid = Some(key.key_id.clone());
        let signing = EncodingKey::from_rsa_pem(key.private_key.as_bytes()).expect("key");
        jsonwebtoken::encode(&header, &claims, &signing).expect("sign")
    }

    pub fn ws_url(&self) -> String {
        format!(
            "{}{}",
            self.url.replacen("http", "ws", 1),
            herald_proto::device::WS_PATH
        )
    }
}

/// A chat notification (`IM`) to `tokens`.
pub fn notification(tokens: &[&str], title: &str) -> Value {
    serde_json::json!({
        "payload": {"notification": {
            "category": "IM",
            "title": title,
            "body": "普通通知内容",
            "clickAction": {"actionType": 0, "data": {"k": "v"}}
        }},
        "target": {"token": tokens}
    })
}

/// How long [`RawDevice::next`] waits for a frame: a bound for a failing test only.
const FRAME_WAIT: Duration = Duration::from_secs(30);

/// The marker app's project ([`RawDevice::frames_before_marker`]).
const MARKER_PROJECT: &str = "999999999999999999";
/// Numbers the markers' titles.
static MARKERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The app markers come from, and its key.
#[derive(Debug)]
pub struct MarkerApp {
    client_id: String,
    key: KeyFile,
}

/// A raw protocol-level device for the gateway tests.
pub struct RawDevice {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub credential: Option<DeviceCredential>,
}

impl RawDevice {
    pub async fn connect(app: &TestApp) -> RawDevice {
        let (ws, _) = tokio_tungstenite::connect_async(app.ws_url())
            .await
            .expect("ws connect");
        RawDevice {
            ws,
            credential: None,
        }
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        self.ws
            .send(Message::Text(
                serde_json::to_string(frame).expect("JSON").into(),
            ))
            .await
            .expect("ws send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("ws send");
    }

    /// The next server frame, or `None` when the socket closed (with its close code).
    pub async fn next(&mut self) -> Result<ServerFrame, Option<u16>> {
        loop {
            let msg = tokio::time::timeout(FRAME_WAIT, self.ws.next())
                .await
                .expect("a frame in time");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Ok(serde_json::from_str(t.as_str()).expect("server frame"));
                }
                Some(Ok(Message::Close(c))) => return Err(c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// Every frame the server sends this device before a marker: a notification from
    /// another app on the same device (the marker app, in a project of its own, which no
    /// quota or rate limit of the bootstrap app touches), sent through the API now. The
    /// server sends a device's messages in the order it accepted them, so anything it
    /// sends for an earlier request comes before the marker, however late.
    ///
    /// "Nothing arrives" is `frames_before_marker(app).is_empty()`: it neither waits for
    /// a quiet period nor passes when a frame is merely slow.
    pub async fn frames_before_marker(&mut self, app: &TestApp) -> Vec<ServerFrame> {
        let marker = app.marker_app().await;
        let mut before = Vec::new();
        self.send(&ClientFrame::GetToken {
            client_id: marker.client_id.clone(),
        })
        .await;
        let token = loop {
            match self.next().await.expect("frames until the marker's token") {
                ServerFrame::Token { client_id, token } if client_id == marker.client_id => {
                    break token;
                }
                other => before.push(other),
            }
        };
        let title = format!(
            "marker {}",
            MARKERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let (status, body) = app
            .send_raw(
                MARKER_PROJECT,
                Some(format!("Bearer {}", app.jwt_for(&marker.key))),
                Some("0"),
                serde_json::to_vec(&notification(&[&token], &title)).expect("JSON"),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (200, Some("80000000")),
            "the marker: {body}"
        );
        // A marker that never comes fails the test (after a generous budget), never hangs it.
        let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            loop {
                match self.next().await.expect("frames until the marker") {
                    ServerFrame::Message(m)
                        if m.payload["notification"]["title"] == title.as_str() =>
                    {
                        self.ack(&[&m.id]).await;
                        return;
                    }
                    other => before.push(other),
                }
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "the marker never came; before it: {before:?}"
        );
        before
    }

    /// Register (or re-identify) and return the device id.
    pub async fn hello(&mut self) -> String {
        self.send(&ClientFrame::Hello {
            version: 1,
            device: self.credential.clone(),
        })
        .await;
        match self.next().await.expect("welcome") {
            ServerFrame::Welcome {
                device_id, secret, ..
            } => {
                if let Some(secret) = secret {
                    self.credential = Some(DeviceCredential {
                        id: device_id.clone(),
                        secret,
                    });
                }
                device_id
            }
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn token(&mut self, client_id: &str) -> String {
        self.send(&ClientFrame::GetToken {
            client_id: client_id.to_owned(),
        })
        .await;
        match self.next().await.expect("token") {
            ServerFrame::Token { token, .. } => token,
            other => panic!("expected token, got {other:?}"),
        }
    }

    pub async fn message(&mut self) -> DeviceMessage {
        match self.next().await.expect("message") {
            ServerFrame::Message(m) => m,
            other => panic!("expected message, got {other:?}"),
        }
    }

    pub async fn ack(&mut self, ids: &[&str]) {
        self.send(&ClientFrame::Ack {
            ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        })
        .await;
    }

    /// Report a message shown, as the SDK does after showing it (its receipt, held for
    /// the device's report, is then due).
    pub async fn shown(&mut self, id: &str) {
        self.send(&ClientFrame::Report {
            id: id.to_owned(),
            status: herald_proto::device::ReportStatus::Shown,
            code: None,
        })
        .await;
    }

    /// Connect as if from `client` (an address named in `X-Forwarded-For`, for servers
    /// configured to trust that header); `Err` carries the HTTP status of a refusal.
    pub async fn connect_from(app: &TestApp, client: &str) -> Result<RawDevice, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = app.ws_url().into_client_request().expect("request");
        request
            .headers_mut()
            .insert("x-forwarded-for", client.parse().expect("header value"));
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(RawDevice {
                ws,
                credential: None,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("ws connect: {e}"),
        }
    }

    /// Say hello and return the answer: the welcome's device id or the close code.
    pub async fn try_hello(&mut self) -> Result<String, Option<u16>> {
        self.send(&ClientFrame::Hello {
            version: 1,
            device: self.credential.clone(),
        })
        .await;
        match self.next().await? {
            ServerFrame::Welcome {
                device_id, secret, ..
            } => {
                if let Some(secret) = secret {
                    self.credential = Some(DeviceCredential {
                        id: device_id.clone(),
                        secret,
                    });
                }
                Ok(device_id)
            }
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Reconnect with the same credential.
    pub async fn reconnect(self, app: &TestApp) -> RawDevice {
        let credential = self.credential.clone();
        drop(self);
        let mut d = RawDevice::connect(app).await;
        d.credential = credential;
        d.hello().await;
        d
    }
}

/// A device connected, identified and holding a token for the bootstrap app.
pub async fn device_with_token(app: &TestApp) -> (RawDevice, String) {
    let mut d = RawDevice::connect(app).await;
    d.hello().await;
    let token = d.token(&app.info.client_id).await;
    (d, token)
}

/// How long [`eventually`] waits: generous, because it only bounds a failing test; a
/// passing one returns as soon as the condition holds (a loaded 2-core CI machine may
/// take seconds where a laptop takes milliseconds).
pub const EVENTUALLY: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, for state the server changes asynchronously
/// and offers no notification of (acks and reports are written by a background task;
/// receipts are posted by another). Panics naming `what` after [`EVENTUALLY`].
pub async fn eventually<T, F>(what: &str, mut check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {EVENTUALLY:?}"
        );
        // tidy: poll interval of `eventually`, the one store-polling loop of these tests
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait until the store shows `state` for the message (acks are written asynchronously).
pub async fn wait_for_state(app: &TestApp, message_id: &str, outcome: &str) {
    eventually(
        &format!("message {message_id} reaches {outcome}"),
        || async {
            let events = app
                .state
                .store
                .events_for(message_id)
                .await
                .expect("events");
            events
                .iter()
                .any(|e| e.outcome.name() == outcome)
                .then_some(())
        },
    )
    .await
}

/// Wait until an event of the request (for any token) has `outcome`; returns its code.
pub async fn wait_for_request_outcome(
    app: &TestApp,
    request_id: &str,
    outcome: &str,
) -> Option<u32> {
    eventually(
        &format!("request {request_id} reaches {outcome}"),
        || async {
            events_of_request(app, request_id)
                .await
                .into_iter()
                .find(|(o, _)| o == outcome)
                .map(|(_, code)| code)
        },
    )
    .await
}

/// Create a second project with one app directly in the store; returns its client id.
pub async fn add_project_with_app(app: &TestApp, project_id: &str, client_id: &str) -> String {
    let now = app.clock.now_ms();
    app.state
        .store
        .create_project(herald_store::Project {
            project_id: project_id.into(),
            name: "Other".into(),
            created_at: now,
            push_enabled: true,
        })
        .await
        .expect("project");
    app.state
        .store
        .create_app(herald_store::App {
            client_id: client_id.into(),
            project_id: project_id.into(),
            package_name: "com.example.other".into(),
            name: "Other".into(),
            created_at: now,
            app_category: "other".into(),
            overrides: Default::default(),
        })
        .await
        .expect("app");
    client_id.to_owned()
}

/// `(outcome, code)` of every event of `request_id` for `token`, oldest first (drops
/// included: they have no id an API returns).
pub async fn events_for_token(
    app: &TestApp,
    request_id: &str,
    token: &str,
) -> Vec<(String, Option<u32>)> {
    events_where(app, request_id, Some(token)).await
}

/// (outcome, receipt code) of every event of a request, oldest first.
pub async fn events_of_request(app: &TestApp, request_id: &str) -> Vec<(String, Option<u32>)> {
    events_where(app, request_id, None).await
}

async fn events_where(
    app: &TestApp,
    request_id: &str,
    token: Option<&str>,
) -> Vec<(String, Option<u32>)> {
    app.state
        .store
        .events_of_request(request_id, token)
        .await
        .expect("events")
        .into_iter()
        .map(|e| {
            (
                e.outcome.name().to_owned(),
                e.outcome.receipt_code().map(|c| c.0),
            )
        })
        .collect()
}
