//! `PushClient`: the Push Kit REST calls a backend makes (send, revoke, image verification).

use std::time::Duration;

use herald_proto::push::{ApiResponse, ImageVerifyResponse};
use serde_json::Value;

use super::{JwtSigner, SenderError};
use crate::tls::CaFile;

/// How long one REST call may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls a Push Kit–compatible server (Herald, or Huawei's) on behalf of one service account.
#[derive(Debug)]
pub struct PushClient {
    http: reqwest::Client,
    base_url: String,
    signer: JwtSigner,
}

impl PushClient {
    /// `base_url` is the server's root, e.g. `http://127.0.0.1:8080` (a trailing `/` is fine).
    pub fn new(base_url: impl Into<String>, signer: JwtSigner) -> Result<Self, SenderError> {
        PushClient::trusting(base_url, signer, None)
    }

    /// Like [`PushClient::new`], also trusting a private CA for `https://` servers.
    pub fn trusting(
        base_url: impl Into<String>,
        signer: JwtSigner,
        ca: Option<&CaFile>,
    ) -> Result<Self, SenderError> {
        let http = crate::tls::http_client_builder(ca)?
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        Ok(PushClient {
            http,
            base_url,
            signer,
        })
    }

    pub fn signer(&self) -> &JwtSigner {
        &self.signer
    }

    /// `POST {base}/v3/{project_id}/messages:send`. Returns the HTTP status and the parsed
    /// Push Kit envelope; a non-2xx status with a Push Kit body is *not* an error here.
    pub async fn send(
        &self,
        push_type: u8,
        body: &Value,
    ) -> Result<(u16, ApiResponse), SenderError> {
        let url = format!(
            "{}/v3/{}/messages:send",
            self.base_url,
            self.signer.project_id()
        );
        self.post(&url, push_type, body).await
    }

    /// `POST {base}/v1/{client_id}/messages:revoke`.
    pub async fn revoke(
        &self,
        client_id: &str,
        push_type: u8,
        body: &Value,
    ) -> Result<(u16, ApiResponse), SenderError> {
        let url = format!("{}/v1/{}/messages:revoke", self.base_url, client_id);
        self.post(&url, push_type, body).await
    }

    /// `POST {base}/v1/{client_id}/images:verify` with `{"imageUrl": image_url}`;
    /// `push_type` is what the image is for (0 notification, 1 widget, 2 text-to-speech).
    pub async fn verify_image(
        &self,
        client_id: &str,
        push_type: u8,
        image_url: &str,
    ) -> Result<(u16, ImageVerifyResponse), SenderError> {
        let url = format!("{}/v1/{}/images:verify", self.base_url, client_id);
        let body = serde_json::json!({ "imageUrl": image_url });
        self.post(&url, push_type, &body).await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        push_type: u8,
        body: &Value,
    ) -> Result<(u16, T), SenderError> {
        let jwt = self.signer.token()?;
        let response = self
            .http
            .post(url)
            .bearer_auth(jwt)
            .header("push-type", push_type.to_string())
            .json(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        match serde_json::from_str::<T>(&text) {
            Ok(parsed) => Ok((status, parsed)),
            Err(_) => Err(SenderError::UnexpectedResponse { status, body: text }),
        }
    }
}
