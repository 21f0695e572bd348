//! Deriving the device WebSocket URL from the http(s) base URL that backends use.

use herald_proto::device::WS_PATH;

/// A server URL that cannot be turned into a WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server URL {url:?} must start with http://, https://, ws:// or wss://")]
pub struct BadServerUrl {
    pub url: String,
}

/// `http://h:p/base` → `ws://h:p/base/device/ws`; `https` → `wss`. A `ws://` or `wss://`
/// URL is taken to be the endpoint itself and returned unchanged. Query strings and
/// fragments of an http(s) URL are dropped.
pub fn ws_url(server: &str) -> Result<String, BadServerUrl> {
    let server = server.trim();
    let bad = || BadServerUrl {
        url: server.to_owned(),
    };
    let (scheme, rest) = server.split_once("://").ok_or_else(bad)?;
    let ws_scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "wss" => return Ok(server.to_owned()),
        "http" => "ws",
        "https" => "wss",
        _ => return Err(bad()),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad());
    }
    Ok(format!("{ws_scheme}://{rest}{WS_PATH}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn http_becomes_ws_and_gets_the_device_path() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/device/ws"
        );
        assert_eq!(
            ws_url("http://127.0.0.1:8080/").unwrap(),
            "ws://127.0.0.1:8080/device/ws"
        );
    }

    #[test]
    fn https_becomes_wss_and_keeps_the_base_path() {
        assert_eq!(
            ws_url("https://push.example.com/herald/").unwrap(),
            "wss://push.example.com/herald/device/ws"
        );
        assert_eq!(
            ws_url("HTTPS://push.example.com/a/b?x=1#f").unwrap(),
            "wss://push.example.com/a/b/device/ws"
        );
    }

    #[test]
    fn websocket_urls_are_taken_as_they_are() {
        assert_eq!(
            ws_url("ws://10.0.0.1:9000/custom").unwrap(),
            "ws://10.0.0.1:9000/custom"
        );
    }

    #[test]
    fn other_schemes_and_missing_hosts_are_rejected() {
        assert!(ws_url("ftp://example.com").is_err());
        assert!(ws_url("example.com:8080").is_err());
        assert!(ws_url("http://").is_err());
        assert!(ws_url("http:///path").is_err());
    }
}
