//! Secrets (issue 13): a whole run — the bootstrap, an admin login, a new service-account
//! key, receipt configurations with their secrets, a device, sends signed with JWTs from
//! both keys, receipts posted — with the server, the device and the CLI logging at
//! `debug`. Afterwards no log holds any secret the run created, and the database holds
//! no private key and no bearer secret in clear: the admin token, the session token and
//! the device secret only as SHA-256 hashes, the password only as an argon2 hash. (A
//! receipt configuration's secret is the key its callbacks are signed with, so it is
//! kept; docs/SECURITY.md says so.)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::process::{DeviceProc, Server, herald, post_send, read_json, sign_jwt};

/// The base64 body of a PEM private key (its one middle line).
fn pem_body(key_file: &Value) -> String {
    let pem = key_file["private_key"].as_str().unwrap();
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!body.is_empty());
    body.concat()
}

/// Enough of a secret to recognise it (48 random characters never occur by chance),
/// also where a long one is cut: a log line's end, a database page's.
fn fragment(secret: &str) -> &str {
    let end = (0..=secret.len().min(48))
        .rev()
        .find(|i| secret.is_char_boundary(*i))
        .unwrap_or(0);
    &secret[..end]
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Run `herald ARGS…` logging at `debug` into `log`; its standard output as JSON.
fn logged_cli(args: &[&str], log: &Path, cache_home: &Path) -> Value {
    let out = herald()
        .env("HERALD_LOG", "debug")
        .env("XDG_CACHE_HOME", cache_home)
        .args(args)
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .output()
        .unwrap();
    assert!(out.status.success(), "herald {args:?} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A receipt endpoint: the `X-HUAWEI-CALLBACK-ID` of every callback it acknowledged.
fn start_receiver(rt: &tokio::runtime::Runtime) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/receipts", listener.local_addr().unwrap());
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let record = record.clone();
        async move {
            if let Some(id) = headers.get("x-huawei-callback-id") {
                record
                    .lock()
                    .unwrap()
                    .push(id.to_str().unwrap_or_default().to_owned());
            }
            (StatusCode::OK, json!({"code": "0"}).to_string())
        }
    });
    rt.spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[test]
fn no_secret_reaches_a_log_or_the_database_in_clear() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (receiver_url, callbacks) = start_receiver(&rt);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let server = Server::launch_logging("debug", &data, &[], &logs.join("server.log"));
    server.wait_healthy();
    let boot = server.bootstrap();
    let field = |name: &str| boot[name].as_str().unwrap().to_owned();
    let (project, client_id) = (field("project_id"), field("client_id"));
    let first_key = read_json(Path::new(&field("service_account_file")));
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, bearer: Option<&str>, body: Value| {
        rt.block_on(async {
            let mut req = http.request(method, format!("{}{path}", server.url));
            if let Some(token) = bearer {
                req = req.bearer_auth(token);
            }
            let resp = req.json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        })
    };

    // The admin logs in with the bootstrap password, and makes a second key.
    let (status, session) = call(
        reqwest::Method::POST,
        "/api/v1/sessions",
        None,
        json!({"username": field("admin_username"), "password": field("admin_password")}),
    );
    assert_eq!(status, 201, "{session}");
    let session_token = session["token"].as_str().unwrap().to_owned();
    let (status, second_key) = call(
        reqwest::Method::POST,
        &format!("/api/v1/projects/{project}/keys"),
        Some(&session_token),
        json!({}),
    );
    assert_eq!(status, 201, "{second_key}");
    let (status, granted) = call(
        reqwest::Method::POST,
        &format!("/api/v1/apps/{client_id}/rights/IM/grant"),
        Some(&session_token),
        json!({"reason": "a chat app"}),
    );
    assert_eq!(status, 200, "{granted}");

    // A user made through the CLI signs in to the console: a cookie session and its
    // CSRF token (the cookie's value is the session's secret).
    let user_password = "olga's own password, 7!";
    let created = logged_cli(
        &[
            "admin",
            "--bootstrap",
            data.join("bootstrap.json").to_str().unwrap(),
            "user",
            "create",
            "--username",
            "olga",
            "--password",
            user_password,
        ],
        &logs.join("admin-user.log"),
        &dir.path().join("cache"),
    );
    assert_eq!(created["username"], "olga");
    let (cookie_token, csrf_token) = rt.block_on(async {
        let resp = http
            .post(format!("{}/api/v1/sessions", server.url))
            .json(&json!({"username": "olga", "password": user_password, "cookie": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find_map(|c| {
                c.split(';')
                    .next()
                    .and_then(|kv| kv.strip_prefix("herald_session="))
                    .map(str::to_owned)
            })
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        (cookie, body["csrf_token"].as_str().unwrap().to_owned())
    });

    // Two receipt configurations: one with the operator's secret (through the CLI),
    // one with a secret Herald generates (through the API).
    let chosen_secret = "an operator's own receipt secret, 42!";
    let cache = dir.path().join("cache");
    let created = logged_cli(
        &[
            "admin",
            "--bootstrap",
            data.join("bootstrap.json").to_str().unwrap(),
            "receipt",
            "create",
            "--url",
            &receiver_url,
            "--secret",
            chosen_secret,
        ],
        &logs.join("admin.log"),
        &cache,
    );
    let chosen_id = created["receiptId"].as_str().unwrap().to_owned();
    let (status, generated) = call(
        reqwest::Method::POST,
        &format!("/api/v1/projects/{project}/receipts"),
        Some(&field("admin_token")),
        json!({"url": receiver_url}),
    );
    assert_eq!(status, 201, "{generated}");
    let generated_secret = generated["secret"].as_str().unwrap().to_owned();
    let generated_id = generated["receiptId"].as_str().unwrap().to_owned();

    // A device registers and takes a token.
    let state = dir.path().join("device");
    let device =
        DeviceProc::start_logged(&server.url, &client_id, &state, &logs.join("device.log"));
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let device_secret = read_json(&state.join("device.json"))["credential"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    // Sends signed with each key, each receipt to one configuration; one by `herald send`.
    let mut jwts = Vec::new();
    for (key, receipt_id) in [(&first_key, &chosen_id), (&second_key, &generated_id)] {
        let jwt = sign_jwt(key);
        let body = json!({"payload": {"notification": {"category": "IM", "title": "t",
            "body": "b", "clickAction": {"actionType": 0}}}, "target": {"token": [token]},
            "pushOptions": {"receiptId": receipt_id}});
        let (status, resp) = post_send(&server.url, &project, &jwt, &body);
        assert_eq!((status, resp["code"].as_str()), (200, Some("80000000")));
        device.expect("notification", Duration::from_secs(10));
        jwts.push(jwt);
    }
    let key_path = dir.path().join("second-key.json");
    std::fs::write(&key_path, second_key.to_string()).unwrap();
    let sent = logged_cli(
        &[
            "send",
            "--key-file",
            key_path.to_str().unwrap(),
            "--server",
            &server.url,
            "--token",
            &token,
            "--title",
            "from the CLI",
            "--body",
            "b",
        ],
        &logs.join("send.log"),
        &cache,
    );
    assert_eq!(sent["code"], "80000000");
    device.expect("notification", Duration::from_secs(10));
    // Each configuration signs at least one callback.
    let deadline = Instant::now() + Duration::from_secs(30);
    while callbacks.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "no receipts arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(device);
    assert!(server.terminate().success());

    // Never stored in clear, never logged.
    let mut kept_hidden: Vec<(&str, String)> = vec![
        ("the admin password", field("admin_password")),
        ("the admin token", field("admin_token")),
        ("the session token", session_token.clone()),
        ("the bootstrap private key", pem_body(&first_key)),
        ("the second private key", pem_body(&second_key)),
        ("the first JWT", jwts[0].clone()),
        ("the second JWT", jwts[1].clone()),
        ("the device secret", device_secret.clone()),
        ("a user's password", user_password.to_owned()),
        ("the console session cookie", cookie_token.clone()),
        ("the console CSRF token", csrf_token.clone()),
    ];
    // `herald send` signed its own and keeps it in its cache.
    let cached = cache
        .join("herald")
        .join(format!("jwt-{}", second_key["key_id"].as_str().unwrap()));
    jwts.push(read_json(&cached)["jwt"].as_str().unwrap().to_owned());
    kept_hidden.push(("the JWT of herald send", jwts[2].clone()));
    // A JWT's signature alone is a secret too (a log that cut the token short).
    for jwt in &jwts {
        kept_hidden.push((
            "a JWT signature",
            jwt.rsplit('.').next().unwrap().to_owned(),
        ));
    }
    // Stored (callbacks are signed with them), never logged.
    let receipt_secrets = [
        ("the chosen receipt secret", chosen_secret.to_owned()),
        ("the generated receipt secret", generated_secret),
    ];

    let mut log_files: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    log_files.sort();
    assert_eq!(
        log_files.len(),
        5,
        "server, device, two admin and send logs"
    );
    for path in &log_files {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.contains("DEBUG"),
            "{} was not written at debug level",
            path.display()
        );
        for (what, secret) in kept_hidden.iter().chain(&receipt_secrets) {
            assert!(
                !text.contains(fragment(secret)),
                "{what} is in {}",
                path.display()
            );
        }
    }

    // At rest: the database files hold no bearer secret and no private key in clear.
    let mut stored = Vec::new();
    for name in ["herald.db", "herald.db-wal", "herald.db-shm"] {
        if let Ok(bytes) = std::fs::read(data.join(name)) {
            stored.extend_from_slice(&bytes);
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    for (what, secret) in &kept_hidden {
        assert!(
            !stored.contains(fragment(secret)),
            "{what} is stored in clear"
        );
    }
    assert!(!stored.contains("PRIVATE KEY"), "a private key is stored");
    for (what, secret) in [
        ("the admin token", field("admin_token")),
        ("the session token", session_token),
        ("the device secret", device_secret),
        ("the console session cookie", cookie_token),
        ("the console CSRF token", csrf_token),
    ] {
        assert!(
            stored.contains(&sha256_hex(&secret)),
            "{what} is not stored as its SHA-256 hash"
        );
    }
    assert!(stored.contains("$argon2id$"), "the password's argon2 hash");
}
