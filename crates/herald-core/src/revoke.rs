//! The `messages:revoke` body (reference §1.3): `{"notifyId": N, "token": [...]}` parsed
//! and validated in Push Kit's order (schema → 4096-byte size without tokens → token
//! count → `notifyId`), before anything touches storage.

use herald_proto::Code;
use herald_proto::push::RevokeRequest;

use crate::send::{MAX_NOTIFY_ID, MAX_TOKENS, Rejection, check_body_size, check_token_count};

/// A validated revoke: the notification id and the tokens, as sent (duplicates kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRevoke {
    pub notify_id: u32,
    pub tokens: Vec<String>,
}

/// Parse and validate a revoke body.
pub fn parse_revoke(body: &[u8]) -> Result<ParsedRevoke, Rejection> {
    let request: RevokeRequest = serde_json::from_slice(body).map_err(|e| {
        Rejection::new(
            Code::ParameterError,
            format!("Check Parameter Error, body does not match the schema: {e}"),
        )
    })?;
    let tokens = request.token.unwrap_or_default();
    check_body_size(body.len(), &tokens)?;
    check_token_count(tokens.len(), MAX_TOKENS)?;
    let notify_id = match request.notify_id {
        Some(id @ 0..=MAX_NOTIFY_ID) => u32::try_from(id).map_err(|_| {
            Rejection::payload(format!("notifyId must be within 0 and {MAX_NOTIFY_ID}"))
        })?,
        Some(_) => {
            return Err(Rejection::payload(format!(
                "notifyId must be within 0 and {MAX_NOTIFY_ID}"
            )));
        }
        None => return Err(Rejection::payload("notifyId is mandatory")),
    };
    Ok(ParsedRevoke { notify_id, tokens })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_bodies() {
        let ok = parse_revoke(br#"{"notifyId": 7, "token": ["a"]}"#).unwrap();
        assert_eq!(ok.notify_id, 7);
        assert_eq!(ok.tokens, vec!["a".to_owned()]);
        let code = |b: &[u8]| parse_revoke(b).unwrap_err().code;
        assert_eq!(code(b"[]"), Code::ParameterError);
        assert_eq!(code(br#"{"notifyId": 7}"#), Code::TokenCountOutOfRange);
        assert_eq!(code(br#"{"token": ["a"]}"#), Code::IllegalPayload);
        assert_eq!(
            code(br#"{"notifyId": -1, "token": ["a"]}"#),
            Code::IllegalPayload
        );
        assert_eq!(
            code(br#"{"notifyId": 2147483648, "token": ["a"]}"#),
            Code::IllegalPayload
        );
    }
}
