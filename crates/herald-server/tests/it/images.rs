//! `images:verify` (v1 by app, v2 by project): every code, pinned by snapshots; the
//! download check against a real HTTPS image server on loopback; and a verified
//! `downloadUrl` accepted in a notification, a text-to-speech message and a widget.

use std::sync::Arc;

use insta::assert_json_snapshot;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{RawDevice, TestApp, spawn_app, spawn_app_with};

macro_rules! snapshot {
    ($name:expr, $status:expr, $body:expr) => {
        assert_json_snapshot!($name, json!({"status": $status, "body": $body}), {
            ".body.requestId" => "[requestId]",
            ".body.expireTime" => "[expireTime]",
            ".body.downloadUrl" => insta::dynamic_redaction(|value, _| {
                let url = value.as_str().unwrap_or_default();
                let (base, key) = url.split_once("verifyKey=").expect("a verifyKey");
                assert!(key.len() >= 40, "a real signature: {key}");
                format!("{base}verifyKey=[verifyKey]")
            }),
        });
    };
}

/// `POST {url}/{version}/{id}/images:verify` with the app's JWT.
async fn verify(
    app: &TestApp,
    path: &str,
    push_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{}{path}", app.url))
        .bearer_auth(app.jwt())
        .header("Content-Type", "application/json; charset=UTF-8")
        .body(body);
    if let Some(p) = push_type {
        req = req.header("push-type", p);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

fn by_app(app: &TestApp) -> String {
    format!("/v1/{}/images:verify", app.info.client_id)
}

fn by_project(app: &TestApp) -> String {
    format!("/v2/{}/images:verify", app.info.project_id)
}

fn image(url: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "imageUrl": url })).unwrap()
}

#[tokio::test]
async fn a_well_formed_https_url_passes_with_a_download_url_and_expire_time() {
    let app = spawn_app().await;
    let url = "https://img.example.test/icons/order.png";
    let (status, body) = verify(&app, &by_app(&app), Some("0"), image(url)).await;
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["code", "msg", "requestId", "downloadUrl", "expireTime"],
        "the reference example's keys, in its order"
    );
    let expire: i64 = body["expireTime"].as_str().unwrap().parse().unwrap();
    assert_eq!(expire, herald_core::Clock::now_secs(&app.clock) + 86_400);
    snapshot!("83010000_verified_by_app", status, body);

    let (status, body) = verify(&app, &by_project(&app), Some("1"), image(url)).await;
    snapshot!("83010000_verified_by_project", status, body);
}

#[tokio::test]
async fn failures_have_their_codes() {
    let app = spawn_app().await;
    let path = by_app(&app);
    let (status, body) = verify(
        &app,
        &path,
        Some("0"),
        image("http://img.example.test/a.png"),
    )
    .await;
    snapshot!("83010001_not_https", status, body);
    let (status, body) = verify(&app, &path, Some("0"), "").await;
    snapshot!("83010003_empty_body", status, body);
    let (status, body) = verify(&app, &path, Some("6"), image("https://x.test/a.png")).await;
    snapshot!("83010004_background_has_no_images", status, body);
    let (status, body) = verify(&app, &path, None, image("https://x.test/a.png")).await;
    snapshot!("83010007_no_push_type", status, body);
    let (status, body) = verify(&app, &path, Some("0"), "{\"imageUrl\": 7}").await;
    snapshot!("80100001_image_url_not_a_string", status, body);
    let (status, body) = verify(&app, &path, Some("0"), "not json").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("80100001")));

    // The JWT's project must own the app (v1) or be the path's project (v2).
    let (status, body) = verify(
        &app,
        "/v1/999999999/images:verify",
        Some("0"),
        image("https://x.test/a.png"),
    )
    .await;
    snapshot!("80200001_app_of_another_project", status, body);
    let (status, body) = verify(
        &app,
        "/v2/999999999/images:verify",
        Some("0"),
        image("https://x.test/a.png"),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("80200001")));
    let resp = app
        .http
        .post(format!("{}{}", app.url, by_app(&app)))
        .header("push-type", "0")
        .body(image("https://x.test/a.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn more_than_sixty_calls_a_minute_is_83010002_until_the_next_minute() {
    let app = spawn_app().await;
    let path = by_app(&app);
    for _ in 0..60 {
        let (_, body) = verify(&app, &path, Some("0"), image("https://x.test/a.png")).await;
        assert_eq!(body["code"], "83010000");
    }
    let (status, body) = verify(&app, &path, Some("0"), image("https://x.test/a.png")).await;
    snapshot!("83010002_rate_exceeded", status, body);
    // The project's own window is separate from the app's.
    let (_, body) = verify(
        &app,
        &by_project(&app),
        Some("0"),
        image("https://x.test/a.png"),
    )
    .await;
    assert_eq!(body["code"], "83010000");
    app.clock.advance_secs(60);
    let (_, body) = verify(&app, &path, Some("0"), image("https://x.test/a.png")).await;
    assert_eq!(body["code"], "83010000");
}

#[tokio::test]
async fn a_download_url_is_accepted_in_notifications_and_widgets() {
    let app = spawn_app().await;
    let mut device = RawDevice::connect(&app).await;
    device.hello().await;
    let token = device.token(&app.info.client_id).await;
    let (_, icon) = verify(
        &app,
        &by_app(&app),
        Some("0"),
        image("https://img.example.test/a.png"),
    )
    .await;
    let icon = icon["downloadUrl"].as_str().unwrap().to_owned();
    let (status, body) = app
        .send(json!({
            "payload": {"notification": {"category": "IM", "title": "t", "body": "b",
                "image": icon, "clickAction": {"actionType": 0}}},
            "target": {"token": [token]}
        }))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (200, Some("80000000")),
        "{body}"
    );
    let shown = device.message().await;
    assert_eq!(shown.payload["notification"]["image"], json!(icon));

    let (_, widget) = verify(
        &app,
        &by_app(&app),
        Some("1"),
        image("https://img.example.test/w.png"),
    )
    .await;
    let widget = widget["downloadUrl"].as_str().unwrap().to_owned();
    let (status, body) = app
        .send_raw(
            &app.info.project_id,
            Some(format!("Bearer {}", app.jwt())),
            Some("1"),
            serde_json::to_vec(&json!({
                "payload": {"formId": 1, "version": 1, "moduleName": "entry", "formName": "widget",
                    "abilityName": "EntryFormAbility", "formData": {"k": "v"},
                    "images": [{"keyName": "pic", "url": widget, "require": 1}]},
                "target": {"token": [token]}
            }))
            .unwrap(),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (200, Some("80000000")),
        "{body}"
    );
    let form = device.message().await;
    assert_eq!(form.payload["images"][0]["url"], json!(widget));
}

/// A loopback HTTPS server answering `GET /ok.png`, `/big.png`, `/note.txt` and 404.
struct ImageServer {
    url: String,
    ca_file: tempfile::NamedTempFile,
}

async fn image_server() -> ImageServer {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::default();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), ca_cert.pem()).unwrap();

    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let png = |len: usize| {
                    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
                    b.resize(len, 0);
                    b
                };
                let (status, body) = match path.as_str() {
                    "/ok.png" => ("200 OK", png(2048)),
                    "/big.png" => ("200 OK", png(600 * 1024)),
                    "/note.txt" => ("200 OK", b"just text".to_vec()),
                    _ => ("404 Not Found", Vec::new()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    ImageServer { url, ca_file }
}

#[tokio::test]
async fn with_fetch_on_the_image_is_downloaded_and_checked() {
    let server = image_server().await;
    let ca = server.ca_file.path().to_owned();
    let app = spawn_app_with(move |c| {
        c.images.fetch = true;
        c.images.ca_file = Some(ca);
    })
    .await;
    let path = by_app(&app);
    let ok = format!("{}/ok.png", server.url);
    let (status, body) = verify(&app, &path, Some("0"), image(&ok)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (200, Some("83010000")),
        "{body}"
    );
    assert!(
        body["downloadUrl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{ok}?verifyKey="))
    );

    let (status, body) = verify(
        &app,
        &path,
        Some("0"),
        image(&format!("{}/big.png", server.url)),
    )
    .await;
    snapshot!("83010001_larger_than_512_kb", status, body);
    let (status, body) = verify(
        &app,
        &path,
        Some("1"),
        image(&format!("{}/note.txt", server.url)),
    )
    .await;
    snapshot!("83010001_not_an_image", status, body);
    let (status, body) = verify(
        &app,
        &path,
        Some("0"),
        image(&format!("{}/missing.png", server.url)),
    )
    .await;
    snapshot!("83010005_download_failed", status, body);
    // Nothing listens there: the connection is refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("https://{}/a.png", closed.local_addr().unwrap());
    drop(closed);
    let (_, body) = verify(&app, &path, Some("0"), image(&dead)).await;
    assert_eq!(body["code"], "83010005");
}

#[tokio::test]
async fn the_rust_sdk_verifies_an_image() {
    use herald_client::sender::{JwtSigner, PushClient};
    let app = spawn_app().await;
    let client = PushClient::new(&app.url, JwtSigner::new(&app.key).unwrap()).unwrap();
    let (status, answer) = client
        .verify_image(&app.info.client_id, 1, "https://img.example.test/w.png")
        .await
        .unwrap();
    assert_eq!((status, answer.code.as_str()), (200, "83010000"));
    assert!(
        answer
            .download_url
            .unwrap()
            .starts_with("https://img.example.test/w.png?verifyKey=")
    );
    let (status, answer) = client
        .verify_image(&app.info.client_id, 0, "ftp://img.example.test/w.png")
        .await
        .unwrap();
    assert_eq!((status, answer.code.as_str()), (400, "83010001"));
    assert_eq!(answer.download_url, None);
}
