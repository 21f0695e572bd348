//! The functions the `cargo fuzz` targets in `fuzz/` call, one per input a stranger (or
//! a key holder) controls; `tests/it/fuzz_corpus.rs` feeds every file of the seed corpus
//! (and every kept crash) to the same functions on stable Rust. Each must return, never
//! panic, and every rejection must carry a code from the one code table.

use base64::Engine;
use herald_core::send::{PushType, Rejection};
use herald_proto::Code;
use herald_proto::device::ClientFrame;
use herald_proto::keyfile::{HUAWEI_TOKEN_URI, JwtClaims};

/// A rejection's code must be one of the table's, with a non-empty `msg`.
fn assert_documented(r: &Rejection) {
    assert!(
        Code::ALL.contains(&r.code),
        "undocumented code {:?}",
        r.code
    );
    assert!(!r.msg.is_empty(), "a rejection without a message");
}

/// `messages:send`: the first byte picks the `push-type` header (a known type or not),
/// the rest is the body, through `PushType::from_header` and `parse_send`.
pub fn send_body(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    const HEADERS: [&str; 8] = ["0", "1", "2", "6", "7", "10", "3", "x"];
    let header = HEADERS[usize::from(selector) % HEADERS.len()];
    let push_type = match PushType::from_header(Some(header)) {
        Ok(p) => p,
        Err(r) => return assert_documented(&r),
    };
    match herald_core::send::parse_send(push_type, body) {
        Ok(parsed) => {
            assert!(!parsed.tokens.is_empty(), "an accepted send names a token");
            // What devices receive must serialise.
            let _ = serde_json::to_vec(&parsed.payload.to_device_json(0)).expect("device JSON");
        }
        Err(r) => assert_documented(&r),
    }
}

/// `messages:revoke`: the body through `parse_revoke`.
pub fn revoke_body(data: &[u8]) {
    match herald_core::revoke::parse_revoke(data) {
        Ok(parsed) => assert!(!parsed.tokens.is_empty()),
        Err(r) => assert_documented(&r),
    }
}

/// The `Authorization` JWT, before its signature is checked: the header through
/// `auth::parse_header`, and the claims segment (as a key holder could sign anything)
/// through `auth::check_claims`.
pub fn jwt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::auth::parse_header(&text);
    let Some(claims) = text.split('.').nth(1) else {
        return;
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims) else {
        return;
    };
    let Ok(claims) = serde_json::from_slice::<JwtClaims>(&json) else {
        return;
    };
    let expected = crate::auth::Expected {
        sub_account: "fuzz",
        token_uri: HUAWEI_TOKEN_URI,
    };
    for now in [0, 1_795_000_000, i64::MIN, i64::MAX] {
        if let Ok(exp) = crate::auth::check_claims(&claims, &expected, now) {
            assert!(exp > now, "an accepted JWT has not expired");
            let period = exp.checked_sub(claims.iat).expect("period fits");
            assert!(period <= crate::auth::MAX_JWT_PERIOD_SECS);
        }
    }
}

/// A device's text frame, as the gateway decodes it (`serde_json` into `ClientFrame`);
/// what decodes must encode and decode to the same frame.
pub fn device_frame(data: &[u8]) {
    if let Ok(frame) = serde_json::from_slice::<ClientFrame>(data) {
        let text = serde_json::to_string(&frame).expect("a frame encodes");
        let again: ClientFrame = serde_json::from_str(&text).expect("an encoded frame decodes");
        assert_eq!(again, frame);
    }
}

/// A fuzz target: takes any bytes, returns or panics.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/*.rs` and the corpus directories name them.
pub const TARGETS: [(&str, Target); 4] = [
    ("send_body", send_body),
    ("revoke_body", revoke_body),
    ("jwt", jwt),
    ("device_frame", device_frame),
];
