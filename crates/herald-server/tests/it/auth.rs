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

    // Bad signature: one bit of the signature's first byte flipped, re-encoded. (Changing
    // the last base64 character instead only touches padding bits one time in four, so
    // the decoder, not the signature check, would be what rejects it.)
    let jwt = app.jwt();
    let (signed, signature) = jwt.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
    sig[0] ^= 1;
    let bad = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&sig));
    let (s, b) = send_with(&app, bearer(bad), &token).await;
    assert_eq!((s, code(&b)), (401, "80200001".into()), "bad signature");
    // The untouched JWT passes: the flip, not something else, was refused.
    let (s, _) = send_with(&app, bearer(jwt.clone()), &token).await;
    assert_eq!(s, 200);

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

/// A JWT with claims `edit`ed from a fresh valid set, signed with `key` (PKCS#8 PEM)
/// under the header `kid`.
fn signed_with(app: &TestApp, key_pem: &str, kid: &str, edit: impl FnOnce(&mut Value)) -> String {
    let now = herald_core::Clock::now_secs(&app.clock);
    let mut claims = json!({"iss": app.key.sub_account, "aud": app.key.token_uri,
        "iat": now, "exp": now + 3600});
    edit(&mut claims);
    let mut header = jsonwebtoken::Header::new(Algorithm::PS256);
    header.kid = Some(kid.to_owned());
    header.typ = Some("JWT".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn a_jwt_signed_with_another_key_under_a_valid_kid_is_refused() {
    let app = spawn_app().await;
    let (_d, token) = device_with_token(&app).await;
    let stranger = herald_server::keys::generate().unwrap();
    let forged = signed_with(&app, &stranger.private_key_pem, &app.key.key_id, |_| {});
    let (s, b) = send_with(&app, bearer(forged), &token).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("80200001")), "{b}");
    // The same claims and kid signed with the account's own key pass.
    let genuine = signed_with(&app, &app.key.private_key, &app.key.key_id, |_| {});
    let (s, b) = send_with(&app, bearer(genuine), &token).await;
    assert_eq!((s, b["code"].as_str()), (200, Some("80000000")), "{b}");
}

#[tokio::test]
async fn iat_in_the_future_is_refused_past_five_minutes_of_skew() {
    let app = spawn_app().await;
    let (_d, token) = device_with_token(&app).await;
    let at = |skew: i64| {
        app.jwt_with(Algorithm::PS256, |c| {
            c.iat += skew;
            c.exp = c.iat + 3600;
        })
    };
    let (s, b) = send_with(&app, bearer(at(300)), &token).await;
    assert_eq!((s, b["code"].as_str()), (200, Some("80000000")), "{b}");
    let (s, b) = send_with(&app, bearer(at(301)), &token).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("80200001")), "{b}");
    let (s, b) = send_with(&app, bearer(at(86_400)), &token).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("80200001")), "{b}");
}

#[tokio::test]
async fn a_jwt_may_live_exactly_one_day_and_not_a_second_more() {
    let app = spawn_app().await;
    let (_d, token) = device_with_token(&app).await;
    let day = app.jwt_with(Algorithm::PS256, |c| c.exp = c.iat + 86_400);
    let (s, b) = send_with(&app, bearer(day.clone()), &token).await;
    assert_eq!((s, b["code"].as_str()), (200, Some("80000000")), "{b}");
    let longer = app.jwt_with(Algorithm::PS256, |c| c.exp = c.iat + 86_401);
    let (s, b) = send_with(&app, bearer(longer), &token).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("80300036")), "{b}");
    // The one-day JWT is good until its last second, and expired at it.
    app.clock.advance_secs(86_399);
    let (s, b) = send_with(&app, bearer(day.clone()), &token).await;
    assert_eq!((s, b["code"].as_str()), (200, Some("80000000")), "{b}");
    app.clock.advance_secs(1);
    let (s, b) = send_with(&app, bearer(day), &token).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("80200005")), "{b}");
}
