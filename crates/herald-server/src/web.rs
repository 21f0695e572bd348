//! Pages embedded in the binary from `crates/herald-server/web/` (no build step, nothing
//! fetched at run time): the browser device, `GET /device` (a page that is a real device)
//! with `GET /device/sdk.js` (Herald's JavaScript device SDK), and the console,
//! `GET /console` (each role's part of the work over the admin API).

use axum::http::header;
use axum::response::IntoResponse;

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
