//! The push client against a one-request in-test HTTP server: URL, headers and body.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use base64::Engine;
use herald_client::sender::{JwtSigner, KeyFile, PushClient, load_key_file};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn key_file() -> KeyFile {
    let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let der = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    serde_json::from_value(serde_json::json!({
        "project_id": "388421841221",
        "key_id": "kid-1",
        "private_key": format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
        "sub_account": "1100001",
        "auth_uri": "https://oauth-login.cloud.huawei.com/oauth2/v3/authorize",
        "token_uri": "https://oauth-login.cloud.huawei.com/oauth2/v3/token",
        "auth_provider_cert_uri": "https://oauth-login.cloud.huawei.com/oauth2/v3/certs",
        "client_cert_uri": "https://oauth-login.cloud.huawei.com/oauth2/v3/x509?client_id=1"
    }))
    .unwrap()
}

/// Accepts one HTTP/1.1 request, answers `status` with `body`, and returns the raw request.
async fn one_shot_server(
    status: u16,
    body: &'static str,
) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if request.len() >= head_end + 4 + length {
                    break;
                }
            }
            assert!(n > 0, "client hung up");
        }
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(response.as_bytes()).await.unwrap();
        String::from_utf8(request).unwrap()
    });
    (base, task)
}

#[tokio::test]
async fn send_posts_the_body_with_bearer_jwt_and_push_type() {
    let (base, server) = one_shot_server(
        200,
        r#"{"code":"80000000","msg":"Success","requestId":"r1"}"#,
    )
    .await;
    let client = PushClient::new(format!("{base}/"), JwtSigner::new(&key_file()).unwrap()).unwrap();
    let body = serde_json::json!({"payload": {"notification": {"title": "t"}}, "target": {"token": ["a"]}});
    let (status, response) = client.send(0, &body).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(response.code, "80000000");
    assert_eq!(response.request_id, "r1");

    let request = server.await.unwrap();
    let lower = request.to_ascii_lowercase();
    assert!(
        request.starts_with("POST /v3/388421841221/messages:send HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(lower.contains("\r\nauthorization: bearer ey"), "{request}");
    assert!(lower.contains("\r\npush-type: 0\r\n"), "{request}");
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n"),
        "{request}"
    );
    let sent: serde_json::Value =
        serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(sent, body);
}

#[tokio::test]
async fn revoke_uses_the_v1_path_and_error_statuses_still_parse() {
    let (base, server) = one_shot_server(
        400,
        r#"{"code":"80300028","msg":"Token app mismatch with specify app.","requestId":"r2"}"#,
    )
    .await;
    let client = PushClient::new(base, JwtSigner::new(&key_file()).unwrap()).unwrap();
    let (status, response) = client
        .revoke(
            "1234567",
            0,
            &serde_json::json!({"notifyId": 1, "token": ["a"]}),
        )
        .await
        .unwrap();
    assert_eq!((status, response.code.as_str()), (400, "80300028"));
    let request = server.await.unwrap();
    assert!(
        request.starts_with("POST /v1/1234567/messages:revoke HTTP/1.1\r\n"),
        "{request}"
    );
}

#[tokio::test]
async fn a_non_push_kit_body_is_an_error() {
    let (base, _server) = one_shot_server(502, "bad gateway").await;
    let client = PushClient::new(base, JwtSigner::new(&key_file()).unwrap()).unwrap();
    let err = client.send(0, &serde_json::json!({})).await.unwrap_err();
    assert!(err.to_string().contains("502"), "{err}");
}

#[test]
fn key_files_load_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    std::fs::write(&path, serde_json::to_vec(&key_file()).unwrap()).unwrap();
    let loaded = load_key_file(&path).unwrap();
    assert_eq!(loaded.key_id, "kid-1");
    assert!(load_key_file(dir.path().join("missing.json")).is_err());
}
