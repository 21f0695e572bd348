//! `POST /v1/{clientId}/images:verify` and `POST /v2/{projectId}/images:verify`: image
//! pre-verification (reference §1.4). Herald's policy: a well-formed `https` URL passes;
//! with `[images] fetch = true` the image is also downloaded (bounded in size and time)
//! and must be a PNG, JPEG or BMP (widgets: PNG or JPEG) of at most 512 KB.
//!
//! The answer is Push Kit's envelope plus `downloadUrl` (the URL with a `verifyKey`) and
//! `expireTime` (Unix seconds, as a string). Herald accepts image URLs in notifications
//! and widgets whether or not they were verified, so a `downloadUrl` works wherever the
//! plain URL does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use herald_core::send::Rejection;
use herald_proto::Code;
use herald_proto::push::{ImageVerifyRequest, ImageVerifyResponse};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::authorization;
use crate::config::ImagesConfig;
use crate::ids;
use crate::state::Shared;

/// The largest image Push Kit accepts (widget images; reference §2.6).
pub const MAX_IMAGE_BYTES: usize = 512 * 1024;
/// The longest image URL Herald looks at.
const MAX_URL_LEN: usize = 2048;
/// An `images:verify` body is one URL; anything longer is not one.
const MAX_BODY_BYTES: usize = 8 * 1024;
/// Rate-limit windows kept before stale ones are swept (one per app or project).
const MAX_WINDOWS: usize = 10_000;
/// Redirects followed when downloading an image.
const MAX_REDIRECTS: usize = 3;

/// What an image is for, from the `push-type` header (reference §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageUse {
    /// 0: a notification's big icon.
    Notification,
    /// 1: a widget image.
    Widget,
    /// 2: a text-to-speech notification's big icon.
    TextToSpeech,
}

impl ImageUse {
    /// `83010007` for a missing or unknown push-type, `83010004` for a push-type that
    /// carries no images (6, 7, 10).
    pub fn from_header(value: Option<&str>) -> Result<ImageUse, Code> {
        match value.map(str::trim).and_then(|v| v.parse::<i64>().ok()) {
            Some(0) => Ok(ImageUse::Notification),
            Some(1) => Ok(ImageUse::Widget),
            Some(2) => Ok(ImageUse::TextToSpeech),
            Some(6 | 7 | 10) => Err(Code::ImageNotSupported),
            _ => Err(Code::ImagePushTypeInvalid),
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            ImageUse::Notification => 0,
            ImageUse::Widget => 1,
            ImageUse::TextToSpeech => 2,
        }
    }

    /// Notification icons may be PNG, JPG/JPEG or BMP; widget images PNG or JPG/JPEG.
    fn accepts(self, format: ImageFormat) -> bool {
        format != ImageFormat::Bmp || self != ImageUse::Widget
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageFormat {
    Png,
    Jpeg,
    Bmp,
}

/// The format the first bytes announce.
fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"BM") && bytes.len() > 26 {
        Some(ImageFormat::Bmp)
    } else {
        None
    }
}

/// A well-formed `https` URL with a host, or `None`.
pub fn https_url(s: &str) -> Option<reqwest::Url> {
    if s.len() > MAX_URL_LEN || s.chars().any(char::is_whitespace) {
        return None;
    }
    // The URL parser is lenient (`https:///x` becomes `https://x/`); the authority must
    // follow `https://` directly.
    let rest = s
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("https://"))
        .map(|_| &s[8..])?;
    if rest.is_empty() || rest.starts_with(['/', '\\', '?', '#']) {
        return None;
    }
    let url = reqwest::Url::parse(s).ok()?;
    (url.scheme() == "https" && url.host_str().is_some_and(|h| !h.is_empty())).then_some(url)
}

/// The verifier: policy, the download client, the `verifyKey` secret and the per-minute
/// call windows.
pub struct ImageVerifier {
    config: ImagesConfig,
    /// Present only with `fetch = true`.
    http: Option<reqwest::Client>,
    /// Signs `verifyKey`s; random per process (a `downloadUrl` is never required back).
    key: [u8; 32],
    /// (app or project) → (minute, calls in it). A `std` mutex: held for a map lookup
    /// only, never across an await.
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl std::fmt::Debug for ImageVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The `[images]` configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImagesConfigError {
    #[error("images.ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("the image download client: {0}")]
    Client(#[from] reqwest::Error),
}

impl ImageVerifier {
    pub fn new(config: &ImagesConfig) -> Result<ImageVerifier, ImagesConfigError> {
        let http = if config.fetch {
            let mut builder = reqwest::Client::builder()
                .timeout(Duration::from_secs(config.fetch_timeout_secs.max(1)))
                .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
                .https_only(true);
            if let Some(path) = &config.ca_file {
                let ca_error = |reason: String| ImagesConfigError::CaFile {
                    path: path.display().to_string(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| ca_error(e.to_string()))?;
                if certs.is_empty() {
                    return Err(ca_error("no certificate in the file".into()));
                }
                builder = builder.tls_certs_merge(certs);
            }
            Some(builder.build()?)
        } else {
            None
        };
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut key);
        Ok(ImageVerifier {
            config: config.clone(),
            http,
            key,
            windows: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one call for `who` in the minute of `now_ms`; false past the limit.
    fn take_call(&self, who: &str, now_ms: i64) -> bool {
        let minute = now_ms.div_euclid(60_000);
        let Ok(mut windows) = self.windows.lock() else {
            return true;
        };
        if windows.len() >= MAX_WINDOWS && !windows.contains_key(who) {
            windows.retain(|_, (m, _)| *m == minute);
            if windows.len() >= MAX_WINDOWS {
                return false;
            }
        }
        let window = windows.entry(who.to_owned()).or_insert((minute, 0));
        if window.0 != minute {
            *window = (minute, 0);
        }
        if window.1 >= self.config.verify_per_minute {
            return false;
        }
        window.1 += 1;
        true
    }

    /// The `downloadUrl`: the URL with a `verifyKey` binding it to its use and expiry.
    fn download_url(&self, url: &reqwest::Url, use_: ImageUse, expire_secs: i64) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{}\n{expire_secs}\n{url}", use_.as_u8()).as_bytes());
        let verify_key =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let mut out = url.clone();
        out.query_pairs_mut().append_pair("verifyKey", &verify_key);
        out.to_string()
    }

    /// Downloads the image (at most [`MAX_IMAGE_BYTES`]) and checks its format.
    async fn check_download(
        &self,
        http: &reqwest::Client,
        url: &reqwest::Url,
        use_: ImageUse,
    ) -> Result<(), Rejection> {
        let failed = |why: String| {
            tracing::info!(%url, reason = %why, "Image download failed.");
            Rejection::new(
                Code::ImageDownloadFailed,
                Code::ImageDownloadFailed.default_msg(),
            )
        };
        let mut response = http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let too_large = || {
            Rejection::new(
                Code::ImageNotVerified,
                format!(
                    "{} The image is larger than {} KB.",
                    Code::ImageNotVerified.default_msg(),
                    MAX_IMAGE_BYTES / 1024
                ),
            )
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_IMAGE_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        match sniff(&bytes) {
            Some(format) if use_.accepts(format) => Ok(()),
            _ => Err(Rejection::new(
                Code::ImageNotVerified,
                format!(
                    "{} The file is not a {} image.",
                    Code::ImageNotVerified.default_msg(),
                    if use_ == ImageUse::Widget {
                        "PNG or JPEG"
                    } else {
                        "PNG, JPEG or BMP"
                    }
                ),
            )),
        }
    }
}

/// `POST /v1/{clientId}/images:verify`: the JWT's project must own the app.
pub async fn verify_by_app(
    State(app): State<Shared>,
    Extension(verifier): Extension<Arc<ImageVerifier>>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = app.clock.now_ms();
    let request_id = ids::request_id(now);
    let outcome = async {
        let principal = app
            .jwt
            .principal(authorization(&headers))
            .await
            .map_err(|e| Rejection::new(e.code(), e.code().default_msg()))?;
        let owner = app
            .apps
            .get(app.store.as_ref(), &client_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "The store failed during an image verification.");
                Rejection::new(Code::InnerError, Code::InnerError.default_msg())
            })?;
        if owner.is_none_or(|a| a.project_id != principal.project_id) {
            return Err(Rejection::new(
                Code::AuthenticationError,
                Code::AuthenticationError.default_msg(),
            ));
        }
        verify(&verifier, &format!("app:{client_id}"), &headers, body, now).await
    }
    .await;
    answer(outcome, &request_id)
}

/// `POST /v2/{projectId}/images:verify`: the JWT's project must be the path's.
pub async fn verify_by_project(
    State(app): State<Shared>,
    Extension(verifier): Extension<Arc<ImageVerifier>>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = app.clock.now_ms();
    let request_id = ids::request_id(now);
    let outcome = async {
        app.jwt
            .authenticate(authorization(&headers), &project_id)
            .await
            .map_err(|e| Rejection::new(e.code(), e.code().default_msg()))?;
        verify(
            &verifier,
            &format!("project:{project_id}"),
            &headers,
            body,
            now,
        )
        .await
    }
    .await;
    answer(outcome, &request_id)
}

/// After authentication: the rate limit, `push-type`, the body, the URL, the download.
async fn verify(
    verifier: &ImageVerifier,
    who: &str,
    headers: &HeaderMap,
    body: Body,
    now_ms: i64,
) -> Result<Verified, Rejection> {
    if !verifier.take_call(who, now_ms) {
        return Err(code_only(Code::ImageRateExceeded));
    }
    let use_ = ImageUse::from_header(headers.get("push-type").and_then(|v| v.to_str().ok()))
        .map_err(code_only)?;
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| parameter_error("the body is not one imageUrl"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(code_only(Code::ImageBodyEmpty));
    }
    let request: ImageVerifyRequest = serde_json::from_slice(&bytes)
        .map_err(|e| parameter_error(format_args!("body does not match the schema: {e}")))?;
    let image_url = match request.image_url {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(parameter_error("imageUrl must be a string")),
        None => return Err(parameter_error("imageUrl is mandatory")),
    };
    let Some(url) = https_url(&image_url) else {
        return Err(Rejection::new(
            Code::ImageNotVerified,
            format!(
                "{} imageUrl must be a well-formed https URL.",
                Code::ImageNotVerified.default_msg()
            ),
        ));
    };
    if let Some(http) = &verifier.http {
        verifier.check_download(http, &url, use_).await?;
    }
    let expire_secs = now_ms
        .div_euclid(1000)
        .saturating_add(i64::try_from(verifier.config.verified_for_secs).unwrap_or(i64::MAX));
    tracing::info!(%who, push_type = use_.as_u8(), fetched = verifier.http.is_some(), "Image verified.");
    Ok(Verified {
        download_url: verifier.download_url(&url, use_, expire_secs),
        expire_time: expire_secs.to_string(),
    })
}

/// What a passed verification answers besides the envelope.
#[derive(Debug)]
struct Verified {
    download_url: String,
    expire_time: String,
}

fn code_only(code: Code) -> Rejection {
    Rejection::new(code, code.default_msg())
}

fn parameter_error(tip: impl std::fmt::Display) -> Rejection {
    Rejection::new(
        Code::ParameterError,
        format!("Check Parameter Error, {tip}"),
    )
}

fn answer(outcome: Result<Verified, Rejection>, request_id: &str) -> Response {
    let (code, msg, verified) = match outcome {
        Ok(v) => (
            Code::ImageVerified,
            Code::ImageVerified.default_msg().to_owned(),
            Some(v),
        ),
        Err(r) => (r.code, r.msg, None),
    };
    metrics::counter!("herald_images_verify_total", "code" => code.as_str()).increment(1);
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::OK);
    let (download_url, expire_time) = match verified {
        Some(v) => (Some(v.download_url), Some(v.expire_time)),
        None => (None, None),
    };
    let body = ImageVerifyResponse {
        code: code.as_str().to_owned(),
        msg,
        request_id: request_id.to_owned(),
        download_url,
        expire_time,
    };
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_types_map_to_uses_and_codes() {
        assert_eq!(ImageUse::from_header(Some("0")), Ok(ImageUse::Notification));
        assert_eq!(ImageUse::from_header(Some(" 1 ")), Ok(ImageUse::Widget));
        assert_eq!(ImageUse::from_header(Some("2")), Ok(ImageUse::TextToSpeech));
        assert_eq!(
            ImageUse::from_header(Some("6")),
            Err(Code::ImageNotSupported)
        );
        assert_eq!(
            ImageUse::from_header(Some("9")),
            Err(Code::ImagePushTypeInvalid)
        );
        assert_eq!(ImageUse::from_header(None), Err(Code::ImagePushTypeInvalid));
        assert_eq!(
            ImageUse::from_header(Some("x")),
            Err(Code::ImagePushTypeInvalid)
        );
    }

    #[test]
    fn only_well_formed_https_urls_pass() {
        assert!(https_url("https://img.example.test/a.png").is_some());
        assert!(https_url("https://127.0.0.1:8443/a.png?x=1").is_some());
        for bad in [
            "http://img.example.test/a.png",
            "https://",
            "https:///a.png",
            "ftp://x/a.png",
            "img.example.test/a.png",
            "https://img.example.test/a b.png",
            "",
        ] {
            assert!(https_url(bad).is_none(), "{bad:?} passed");
        }
        assert!(https_url(&format!("https://x.test/{}", "a".repeat(MAX_URL_LEN))).is_none());
    }

    #[test]
    fn formats_are_sniffed_and_widgets_take_no_bmp() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageFormat::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
        assert_eq!(
            sniff(&[
                b'B', b'M', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0
            ]),
            Some(ImageFormat::Bmp)
        );
        assert_eq!(sniff(b"GIF89a"), None);
        assert!(!ImageUse::Widget.accepts(ImageFormat::Bmp));
        assert!(ImageUse::Notification.accepts(ImageFormat::Bmp));
    }

    #[test]
    fn calls_are_limited_per_minute_and_key() {
        let v = ImageVerifier::new(&ImagesConfig {
            verify_per_minute: 2,
            ..ImagesConfig::default()
        })
        .unwrap();
        assert!(v.take_call("a", 0));
        assert!(v.take_call("a", 1));
        assert!(!v.take_call("a", 2));
        assert!(v.take_call("b", 3));
        assert!(v.take_call("a", 60_000));
    }

    #[test]
    fn the_download_url_keeps_the_url_and_adds_a_verify_key() {
        let v = ImageVerifier::new(&ImagesConfig::default()).unwrap();
        let url = https_url("https://img.example.test/a.png?size=2").unwrap();
        let d = v.download_url(&url, ImageUse::Notification, 100);
        assert!(
            d.starts_with("https://img.example.test/a.png?size=2&verifyKey="),
            "{d}"
        );
        assert_ne!(d, v.download_url(&url, ImageUse::Widget, 100));
        assert!(https_url(&d).is_some());
    }
}
