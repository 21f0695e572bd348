//! The one table of Push Kit business codes Herald answers with, and their HTTP statuses.
//!
//! Reference: `shared/reference/pushkit-v3.md` §3, §1.3 and §1.4. A code is a JSON *string* on
//! the wire; `msg` is either the table's text or, for per-token failures, a serialised
//! JSON object (see [`crate::push::TokenFailures`]).

use std::fmt;

/// A Push Kit business code, with the HTTP status Herald answers it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 80000000: all tokens accepted.
    Success,
    /// 80100000: some tokens failed; reasons in `msg`.
    PartialSuccess,
    /// 80100001: a request parameter is wrong.
    ParameterError,
    /// 80100003: the message structure is wrong (`msg` carries the tip).
    IllegalPayload,
    /// 80100004: `ttl` is illegal.
    IllegalExpireTime,
    /// 80100020: revoke — some tokens failed.
    RevokePartialSuccess,
    /// 80200001: authentication failed.
    AuthenticationError,
    /// 80200005: the JWT has expired.
    JwtExpired,
    /// 80300002: no permission to send (push service not enabled / project mismatch).
    NoPermission,
    /// 80300007: every token failed; reasons in `msg`.
    AllTokensInvalid,
    /// 80300008: body larger than 4096 bytes, tokens excluded.
    MessageTooLong,
    /// 80300010: token count out of range.
    TokenCountOutOfRange,
    /// 80300017: revoke — tokens of more than one app.
    TokenAppCountExceeded,
    /// 80300028: revoke — token's app is not the URL's app.
    TokenAppMismatch,
    /// 80300029: test-message request rate exceeded.
    TestRequestRateExceeded,
    /// 80300030: more than 10 tokens in a test message.
    TestTokenCountExceeded,
    /// 80300032: no permission to revoke.
    NoRevokePermission,
    /// 80300036: `exp - iat` longer than one day.
    JwtPeriodTooLong,
    /// 81000001: internal error.
    InnerError,
    /// Flow control (HTTP 503). Push Kit documents only the status; the body reuses 81000001's shape.
    FlowControl,
    /// 83010000: `images:verify` — the image passed; `downloadUrl` and `expireTime` follow.
    ImageVerified,
    /// 83010001: `images:verify` — the image did not pass.
    ImageNotVerified,
    /// 83010002: `images:verify` — more than 60 calls a minute for one app or project.
    ImageRateExceeded,
    /// 83010003: `images:verify` — the request body is empty.
    ImageBodyEmpty,
    /// 83010004: `images:verify` — no image policy for this push-type.
    ImageNotSupported,
    /// 83010005: `images:verify` — downloading the image failed.
    ImageDownloadFailed,
    /// 83010007: `images:verify` — the `push-type` header is missing or not 0, 1 or 2.
    ImagePushTypeInvalid,
}

impl Code {
    /// The 8-digit code as Push Kit writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Success => "80000000",
            Code::PartialSuccess => "80100000",
            Code::ParameterError => "80100001",
            Code::IllegalPayload => "80100003",
            Code::IllegalExpireTime => "80100004",
            Code::RevokePartialSuccess => "80100020",
            Code::AuthenticationError => "80200001",
            Code::JwtExpired => "80200005",
            Code::NoPermission => "80300002",
            Code::AllTokensInvalid => "80300007",
            Code::MessageTooLong => "80300008",
            Code::TokenCountOutOfRange => "80300010",
            Code::TokenAppCountExceeded => "80300017",
            Code::TokenAppMismatch => "80300028",
            Code::TestRequestRateExceeded => "80300029",
            Code::TestTokenCountExceeded => "80300030",
            Code::NoRevokePermission => "80300032",
            Code::JwtPeriodTooLong => "80300036",
            Code::InnerError | Code::FlowControl => "81000001",
            Code::ImageVerified => "83010000",
            Code::ImageNotVerified => "83010001",
            Code::ImageRateExceeded => "83010002",
            Code::ImageBodyEmpty => "83010003",
            Code::ImageNotSupported => "83010004",
            Code::ImageDownloadFailed => "83010005",
            Code::ImagePushTypeInvalid => "83010007",
        }
    }

    /// Push Kit's text for the code; `{0}`-style holes are filled by the caller.
    pub fn default_msg(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::PartialSuccess => "Check Parameter Partial Success.",
            Code::ParameterError => "Check Parameter Error.",
            Code::IllegalPayload => "Illegal payload.",
            Code::IllegalExpireTime => "Illegal expire time.",
            Code::RevokePartialSuccess => "Check Parameter Partial Success.",
            Code::AuthenticationError => "Authentication Error.",
            Code::JwtExpired => "Jwt token expired.",
            Code::NoPermission => "No permission to send message to these tmIDs.",
            Code::AllTokensInvalid => "All the tokens are invalid.",
            Code::MessageTooLong => "Push message size is too long.",
            Code::TokenCountOutOfRange => "token count should within 1 and 1000.",
            Code::TokenAppCountExceeded => "Token app count should not exceed 1.",
            Code::TokenAppMismatch => "Token app mismatch with specify app.",
            Code::TestRequestRateExceeded => {
                "When send test message, the api request exceed limit."
            }
            Code::TestTokenCountExceeded => "When send test message, token count exceed limit.",
            Code::NoRevokePermission => "No permission to revoke messages.",
            Code::JwtPeriodTooLong => "JWT expire period over threshold.",
            Code::InnerError => "Inner Error.",
            Code::FlowControl => "Flow control: request rate exceeded.",
            // The reference's success and failure examples write these two without a period.
            Code::ImageVerified => "Verify success",
            Code::ImageDownloadFailed => "Download picture failed",
            Code::ImageNotVerified => "Verify failed.",
            Code::ImageRateExceeded => "The number of sent messages exceeds the limit.",
            Code::ImageBodyEmpty => "Request body is empty.",
            Code::ImageNotSupported => "Send control is not supported.",
            Code::ImagePushTypeInvalid => "The header does not contain valid push-type.",
        }
    }

    /// The HTTP status Herald pairs with the code (reference §3: 400 parameter, 401 auth,
    /// 503 flow control; 200 when at least one token was accepted).
    pub fn http_status(self) -> u16 {
        match self {
            Code::Success
            | Code::PartialSuccess
            | Code::RevokePartialSuccess
            | Code::ImageVerified => 200,
            Code::AuthenticationError | Code::JwtExpired => 401,
            Code::InnerError => 500,
            Code::FlowControl | Code::ImageRateExceeded => 503,
            Code::ParameterError
            | Code::IllegalPayload
            | Code::IllegalExpireTime
            | Code::NoPermission
            | Code::AllTokensInvalid
            | Code::MessageTooLong
            | Code::TokenCountOutOfRange
            | Code::TokenAppCountExceeded
            | Code::TokenAppMismatch
            | Code::TestRequestRateExceeded
            | Code::TestTokenCountExceeded
            | Code::NoRevokePermission
            | Code::JwtPeriodTooLong
            | Code::ImageNotVerified
            | Code::ImageBodyEmpty
            | Code::ImageNotSupported
            | Code::ImageDownloadFailed
            | Code::ImagePushTypeInvalid => 400,
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: [Code; 27] = [
        Code::Success,
        Code::PartialSuccess,
        Code::ParameterError,
        Code::IllegalPayload,
        Code::IllegalExpireTime,
        Code::RevokePartialSuccess,
        Code::AuthenticationError,
        Code::JwtExpired,
        Code::NoPermission,
        Code::AllTokensInvalid,
        Code::MessageTooLong,
        Code::TokenCountOutOfRange,
        Code::TokenAppCountExceeded,
        Code::TokenAppMismatch,
        Code::TestRequestRateExceeded,
        Code::TestTokenCountExceeded,
        Code::NoRevokePermission,
        Code::JwtPeriodTooLong,
        Code::InnerError,
        Code::FlowControl,
        Code::ImageVerified,
        Code::ImageNotVerified,
        Code::ImageRateExceeded,
        Code::ImageBodyEmpty,
        Code::ImageNotSupported,
        Code::ImageDownloadFailed,
        Code::ImagePushTypeInvalid,
    ];
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
