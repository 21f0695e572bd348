//! Pages embedded in the binary from `crates/herald-server/web/` (no build step, nothing
//! fetched at run time): the browser device, `GET /device` (a page that is a real device)
//! with `GET /device/sdk.js` (Herald's JavaScript device SDK), and the console,
//! `GET /console` (each role's part of the work over the admin API).

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use sha2::{Digest, Sha256};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::state::Shared;

/// The pages and the SDK, each answered with the security headers: a Content Security
/// Policy that runs only this origin's scripts and the pages' own inline scripts (by
/// hash), no framing (clickjacking), no MIME sniffing, no referrer beyond the origin.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route(DEVICE_PATH, get(device_page))
        .route(SDK_PATH, get(sdk_js))
        .route(CONSOLE_PATH, get(console_page))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            content_security_policy().clone(),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
}

/// The policy, with a `sha256-…` source for each inline `<script>` of the pages
/// (computed once from the embedded HTML, so editing a page cannot break it).
/// `connect-src 'self'` covers the same-origin `ws:`/`wss:` device socket (CSP 3).
pub fn content_security_policy() -> &'static HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| {
        let hashes: Vec<String> = [DEVICE_HTML, CONSOLE_HTML]
            .iter()
            .flat_map(|page| inline_scripts(page))
            .map(|script| {
                let digest = Sha256::digest(script.as_bytes());
                format!(
                    "'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                )
            })
            .collect();
        let policy = format!(
            "default-src 'none'; script-src 'self' {}; style-src 'self' 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data: blob:; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'",
            hashes.join(" ")
        );
        HeaderValue::from_str(&policy)
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"))
    })
}

/// The text of each `<script>` element without a `src` in `html`.
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let tag = &after[..tag_end];
        let body = &after[tag_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !tag.contains("src=") {
            out.push(&body[..close]);
        }
        rest = &body[close..];
    }
    out
}

/// The page: permission, token with a copy button, notification list, on-page ability.
const DEVICE_HTML: &str = include_str!("../web/device.html");
/// The SDK the page loads; usable on its own by any web app.
const SDK_JS: &str = include_str!("../web/sdk.js");

/// The console page.
const CONSOLE_HTML: &str = include_str!("../web/console.html");
/// Path of the console.
pub const CONSOLE_PATH: &str = "/console";

pub async fn console_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CONSOLE_HTML,
    )
}

/// Path of the page.
pub const DEVICE_PATH: &str = "/device";
/// Path of the SDK script.
pub const SDK_PATH: &str = "/device/sdk.js";

pub async fn device_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        DEVICE_HTML,
    )
}

pub async fn sdk_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SDK_JS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inline_script_is_hashed() {
        assert_eq!(inline_scripts(DEVICE_HTML).len(), 1);
        assert_eq!(inline_scripts(CONSOLE_HTML).len(), 1);
        assert_eq!(
            inline_scripts("<script src=\"/a.js\"></script><script>x()</script>"),
            vec!["x()"]
        );
        let csp = content_security_policy().to_str().unwrap();
        assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
        assert!(!csp.contains("unsafe-eval"));
    }
}
