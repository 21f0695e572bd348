//! TLS (issue 12 item 2, server side): with `tls_cert`/`tls_key`, the Push Kit API, the
//! admin API, the console and the device gateway are served over rustls only, and the
//! bootstrap writes `https://` URLs. The certificate is made in the test with `rcgen`.

use futures_util::{SinkExt, StreamExt};
use herald_proto::device::{ClientFrame, ServerFrame};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{notification, spawn_app_with};

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
fn certificate(dir: &std::path::Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_pem = made.cert.pem();
    let cert = dir.join("server.pem");
    let key = dir.join("server-key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert_pem, cert, key)
}

#[tokio::test]
async fn everything_is_served_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (cert_pem, cert, key) = certificate(certs.path());
    let mut app = spawn_app_with(|c| {
        c.tls_cert = cert.display().to_string();
        c.tls_key = key.display().to_string();
    })
    .await;
    assert!(app.url.starts_with("https://127.0.0.1:"), "{}", app.url);
    assert!(
        app.info.push_api_url.starts_with("https://"),
        "{}",
        app.info.push_api_url
    );
    assert!(
        app.info.console_url.starts_with("https://"),
        "{}",
        app.info.console_url
    );

    // A client that does not trust the certificate is refused; plain HTTP gets nothing.
    assert!(reqwest::get(format!("{}/healthz", app.url)).await.is_err());
    let plain = app.url.replacen("https://", "http://", 1);
    assert!(
        reqwest::Client::new()
            .get(format!("{plain}/healthz"))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .is_err()
    );

    // A client that trusts it reaches every listener.
    app.http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let health = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let console = app
        .http
        .get(format!("{}/console", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(console.status(), 200);
    let projects = app
        .http
        .get(format!("{}/api/v1/projects", app.url))
        .bearer_auth(&app.info.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(projects.status(), 200);
    // Over TLS the console's session cookie is `Secure` (the CSRF cookie too).
    let login = app
        .http
        .post(format!("{}/api/v1/sessions", app.url))
        .json(&serde_json::json!({"username": "admin", "password": app.info.admin_password, "cookie": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 201);
    let cookies: Vec<&str> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for c in cookies {
        assert!(c.contains("; Secure"), "{c}");
    }

    // The device gateway over wss://, then a send over https:// that reaches it.
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from(made_der(&cert_pem));
    roots.add(der).unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let addr = app.url.trim_start_matches("https://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let ws_url = format!("wss://{addr}{}", herald_proto::device::WS_PATH);
    let (mut ws, _) = tokio_tungstenite::client_async(ws_url, stream)
        .await
        .unwrap();
    let mut send = async |frame: ClientFrame| {
        ws.send(Message::Text(serde_json::to_string(&frame).unwrap().into()))
            .await
            .unwrap();
    };
    send(ClientFrame::Hello {
        version: 1,
        device: None,
    })
    .await;
    send(ClientFrame::GetToken {
        client_id: app.info.client_id.clone(),
    })
    .await;
    let mut frames = Vec::new();
    let token = loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            match serde_json::from_str::<ServerFrame>(t.as_str()).unwrap() {
                ServerFrame::Token { token, .. } => break token,
                other => frames.push(other),
            }
        }
    };
    assert!(
        matches!(frames.first(), Some(ServerFrame::Welcome { .. })),
        "{frames:?}"
    );
    let (status, answer) = app.send(notification(&[&token], "over TLS")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (200, Some("80000000")),
        "{answer}"
    );
    let delivered = loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg
            && let ServerFrame::Message(m) =
                serde_json::from_str::<ServerFrame>(t.as_str()).unwrap()
        {
            break m;
        }
    };
    assert_eq!(delivered.token, token);
}

/// The DER bytes of a PEM certificate.
fn made_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn tls_needs_both_files_and_readable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = herald_server::Config {
        data_dir: dir.path().join("data"),
        tls_cert: dir.path().join("missing.pem").display().to_string(),
        ..Default::default()
    };
    let err = herald_server::Herald::prepare_with_system_clock(listener, config)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("together"), "{err}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = herald_server::Config {
        data_dir: dir.path().join("data"),
        tls_cert: dir.path().join("missing.pem").display().to_string(),
        tls_key: dir.path().join("missing-key.pem").display().to_string(),
        ..Default::default()
    };
    let err = herald_server::Herald::prepare_with_system_clock(listener, config)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tls_cert"), "{err}");
}

/// A client that opens a TCP connection to the TLS port and never says hello is cut
/// off after `header_read_timeout_secs`, like a slow HTTP client.
#[tokio::test]
async fn a_tls_handshake_that_never_comes_is_cut_off() {
    use tokio::io::AsyncReadExt;
    let certs = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificate(certs.path());
    let app = spawn_app_with(|c| {
        c.tls_cert = cert.display().to_string();
        c.tls_key = key.display().to_string();
        c.limits.header_read_timeout_secs = 1;
        c.limits.http_idle_timeout_secs = 60;
    })
    .await;
    let addr = app.url.trim_start_matches("https://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed within 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
}
