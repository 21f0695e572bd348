//! Push Kit's delivery-receipt callback (reference §6): the V2 body Herald POSTs to an
//! app's receipt endpoint, the signature header, the expected answer and the test receipt.

use serde::{Deserialize, Serialize};

/// The signature header: `timestamp=<ms>;nonce=<uuid>;value=<Base64(HMAC-SHA256)>`.
pub const CALLBACK_ID_HEADER: &str = "X-HUAWEI-CALLBACK-ID";
/// Most statuses in one callback.
pub const MAX_STATUSES: usize = 100;
/// The only receipt version Herald speaks (scenario messages require V2).
pub const VERSION: &str = "V2";

/// The token of the fixed test receipt (`receipt test`); no real token looks like it.
pub const TEST_TOKEN: &str = "HERALD_TEST_RECEIPT_TOKEN";
/// The `requestId` of the fixed test receipt.
pub const TEST_REQUEST_ID: &str = "000000000000000000000";
/// The `biTag` of the fixed test receipt.
pub const TEST_BI_TAG: &str = "herald-test-receipt";

/// A V2 callback body: up to [`MAX_STATUSES`] statuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    pub statuses: Vec<ReceiptStatus>,
}

/// The fate of one message for one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptStatus {
    /// `pushOptions.biTag`, empty when not set.
    pub bi_tag: String,
    pub push_type: u8,
    pub token: String,
    /// The `requestId` of the send response.
    pub request_id: String,
    /// The app's package name, empty when the token belongs to no known app.
    pub app_package_name: String,
    /// Every push type but widgets (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_status: Option<DeliveryStatus>,
    /// Widgets (push type 1) instead of `deliveryStatus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_status: Option<FormStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStatus {
    /// The receipt code (0 delivered, 5 token invalid, 6 not shown …).
    pub result: u32,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FormStatus {
    pub form_id: i64,
    pub result: u32,
    pub timestamp: i64,
}

impl ReceiptStatus {
    /// A status for `push_type`: widgets carry `formStatus`, the rest `deliveryStatus`.
    pub fn new(
        push_type: u8,
        form_id: Option<i64>,
        result: u32,
        timestamp: i64,
        ids: StatusIds,
    ) -> ReceiptStatus {
        let (delivery_status, form_status) = if push_type == 1 {
            let form_id = form_id.unwrap_or(0);
            (
                None,
                Some(FormStatus {
                    form_id,
                    result,
                    timestamp,
                }),
            )
        } else {
            (Some(DeliveryStatus { result, timestamp }), None)
        };
        ReceiptStatus {
            bi_tag: ids.bi_tag,
            push_type,
            token: ids.token,
            request_id: ids.request_id,
            app_package_name: ids.app_package_name,
            delivery_status,
            form_status,
        }
    }
}

/// The identifying strings of a status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusIds {
    pub bi_tag: String,
    pub token: String,
    pub request_id: String,
    pub app_package_name: String,
}

/// The fixed test receipt sent by `receipt test`: one delivered status with
/// [`TEST_TOKEN`], [`TEST_REQUEST_ID`] and [`TEST_BI_TAG`].
pub fn test_body(app_package_name: &str, timestamp: i64) -> ReceiptBody {
    ReceiptBody {
        statuses: vec![ReceiptStatus::new(
            0,
            None,
            0,
            timestamp,
            StatusIds {
                bi_tag: TEST_BI_TAG.to_owned(),
                token: TEST_TOKEN.to_owned(),
                request_id: TEST_REQUEST_ID.to_owned(),
                app_package_name: app_package_name.to_owned(),
            },
        )],
    }
}

/// Whether a receipt endpoint's answer body means success: `{"code":"0", …}` (a numeric
/// `0` is accepted too).
pub fn is_success_answer(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    match &v["code"] {
        serde_json::Value::String(s) => s == "0",
        serde_json::Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_body_matches_the_reference_shape() {
        let s = ReceiptStatus::new(
            0,
            None,
            0,
            1697741455082,
            StatusIds {
                bi_tag: "bi".into(),
                token: "tok".into(),
                request_id: "1698021701".into(),
                app_package_name: "com.x".into(),
            },
        );
        let json = serde_json::to_string(&ReceiptBody { statuses: vec![s] }).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"statuses":[{"biTag":"bi","pushType":0,"token":"tok","requestId":"1698021701","appPackageName":"com.x","deliveryStatus":{"result":0,"timestamp":1697741455082}}]}"#
        );
    }

    #[test]
    fn widgets_carry_form_status() {
        let s = ReceiptStatus::new(1, Some(10086), 0, 5, StatusIds::default());
        let v = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(
            v["formStatus"],
            serde_json::json!({"formId": 10086, "result": 0, "timestamp": 5})
        );
        assert!(v.get("deliveryStatus").is_none());
    }

    #[test]
    fn only_code_zero_is_success() {
        assert!(is_success_answer(br#"{"code":"0","message":"success"}"#));
        assert!(is_success_answer(br#"{"code":0}"#));
        assert!(!is_success_answer(br#"{"code":"1"}"#));
        assert!(!is_success_answer(b"ok"));
        assert!(!is_success_answer(b"{}"));
    }
}
