//! Service-account JWT authentication: every rejection and its business code.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use insta::assert_json_snapshot;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::helpers::{TestApp, device_with_token, notification, spawn_app};

async fn send_with(app: &TestApp, authorization: Option<String>, token: &str) -> (u16, Value) {
    app.send_raw(
        &app.info.project_id,
        authorization,
        Some("0"),
        serde_json::to_vec(&notification(&[token], "auth")).unwrap(),
    )
    .await
}

fn bearer(jwt: String) -> Option<String> {
    Some(format!("Bearer {jwt}"))
}

#[tokio::test]
async fn ps256_and_rs256_are_accepted_with_either_audience() {
    let app = spawn_app().await;
    let (_d, token) = device_with_token(&app).await;
    for alg in [Algorithm::PS256, Algorithm::RS256] {
        let (s, b) = send_with(&app, bearer(app.jwt_with(alg, |_| {})), &token).await;
        assert_eq!((s, b["code"].as_str()), (200, Some("80000000")), "{alg:?}");
    }
    let own_aud = app.key.token_uri.clone();
    let jwt = app.jwt_with(Algorithm::PS256, |c| c.aud = json!(own_aud));
    let (s, _) = send_with(&app, bearer(jwt), &token).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn rejections() {
    let app = spawn_app().await;
    let (_d, token) = device_with_token(&app).await;
    let code = |b: &Value| b["code"].as_str().unwrap().to_owned();

    let (s, b) = send_with(&app, None, &token).await;
    assert_json_snapshot!("80200001_missing_header", json!({"status": s, "body": b}), {".body.requestId" => "[requestId]"});

    let (s, b) = send_with(&app, Some(app.jwt()), &token).await; // no "Bearer "
    assert_eq!((s, code(&b)), (401, "80200001".into()));

    let (s, b) = send_with(&app, bearer("not.a.jwt".into()), &token).await;
    assert_eq!((s, code(&b)), (401, "80200001".into()), "garbage");

    // Bad signature: flip a character of the signature.
    let jwt = app.jwt();
    let mut bad = jwt.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    let (s, b) = send_with(&app, bearer(bad), &token).await;
    assert_eq!((s, code(&b)), (401, "80200001".into()), "bad signature");

    // alg: none.
    let parts: Vec<&str> = jwt.split('.').collect();
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg":"none","typ":"JWT","kid": app.key.key_id}).to_string());
    let none = format!("{header}.{}.", parts[1]);
    let (s, b) = send_with(&app, bearer(none), &token).await;
    assert_eq!((s, code(&b)), (401, "80200001".into()), "alg none");

    // Unknown kid: re-sign with a header naming another key.
    let unknown_kid = {
        let mut header = jsonwebtoken::Header::new(Algorithm::PS256);
        header.kid = Some("0000".into());
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(app.key.private_key.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let (s, b) = send_with(&app, bearer(unknown_kid), &token).await;
    assert_eq!((s, code(&b)), (401, "80200001".into()), "unknown kid");

    // Wrong iss and wrong aud.
    let (s, b) = send_with(
        &app,
        bearer(app.jwt_with(Algorithm::PS256, |c| c.iss = "someone".into())),
        &token,
    )
    .await;
    assert_eq!((s, code(&b)), (401, "80200001".into()), "iss");
    let (s, b) = send_with(
        &app,
        bearer(app.jwt_with(Algorithm::PS256, |c| c.aud = json!("https://example.com"))),
        &token,
    )
    .await;
    assert_eq!((s, code(&b)), (401, "80200001".into()), "aud");

    // JWT of this project used on another project's URL.
    let (s, b) = app
        .send_raw(
            "123456789012345678",
            bearer(app.jwt()),
            Some("0"),
            serde_json::to_vec(&notification(&[&token], "x")).unwrap(),
        )
        .await;
    assert_eq!((s, code(&b)), (401, "80200001".into()), "project");

    // Expired.
    let expired = app.jwt_with(Algorithm::PS256, |c| {
        c.iat -= 7200;
        c.exp = c.iat + 3600;
    });
    let (s, b) = send_with(&app, bearer(expired), &token).await;
    assert_json_snapshot!("80200005_expired", json!({"status": s, "body": b}), {".body.requestId" => "[requestId]"});

    // Longer than a day.
    let long = app.jwt_with(Algorithm::PS256, |c| c.exp = c.iat + 86_401);
    let (s, b) = send_with(&app, bearer(long), &token).await;
    assert_json_snapshot!("80300036_period_too_long", json!({"status": s, "body": b}), {".body.requestId" => "[requestId]"});
}

#[tokio::test]
async fn a_cached_jwt_still_expires() {
    let app = spawn_app().await;
    let (_d, token) = device_with_token(&app).await;
    let jwt = app.jwt();
    let (s, _) = send_with(&app, bearer(jwt.clone()), &token).await;
    assert_eq!(s, 200);
    app.clock.advance_secs(3601);
    let (s, b) = send_with(&app, bearer(jwt), &token).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("80200005")));
}
