//! The fuzz targets' inputs on stable Rust: every file under `fuzz/corpus/<target>/` (the
//! seeds, and every input a fuzzing run found and we kept as a regression) goes through
//! the same function `cargo fuzz` drives (`herald_server::fuzzing`). A panic fails here.

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_input_passes_its_target() {
    for (name, target) in herald_server::fuzzing::TARGETS {
        let dir = corpus_dir(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} panicked on {}", path.display());
            inputs += 1;
        }
        assert!(inputs >= 5, "{name}: a seed corpus of {inputs} inputs");
    }
}

#[test]
fn the_overflowing_jwt_is_in_the_corpus_and_refused() {
    // The seed that found `exp - iat` overflowing: it must stay, and stay harmless.
    let data = std::fs::read(corpus_dir("jwt").join("period_overflow")).unwrap();
    herald_server::fuzzing::jwt(&data);
    // Refused as too long, at any time (not wrapped into a short, valid period).
    use base64::Engine;
    let text = String::from_utf8(data).unwrap();
    let claims = text.trim().split('.').nth(1).expect("a JWT's claims");
    let claims: herald_proto::keyfile::JwtClaims = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    let expected = herald_server::auth::Expected {
        sub_account: &claims.iss,
        token_uri: herald_proto::keyfile::HUAWEI_TOKEN_URI,
    };
    for now in [0, 1_795_000_000, i64::MAX] {
        assert_eq!(
            herald_server::auth::check_claims(&claims, &expected, now),
            Err(herald_server::auth::AuthError::PeriodTooLong)
        );
    }
}
