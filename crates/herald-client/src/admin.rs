//! `AdminClient`: the admin API (`/api/v1/...`) for operators' tools and tests.

use std::time::Duration;

use serde_json::Value;

/// Admin API failures that are not answers (transport errors, non-JSON bodies).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered HTTP {status} with a body that is not JSON: {body}")]
    NotJson { status: u16, body: String },
}

/// An HTTP status and the JSON the server answered.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminResponse {
    pub status: u16,
    pub body: Value,
}

impl AdminResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Talks to one server's admin API with one admin token.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl AdminClient {
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Result<Self, AdminError> {
        AdminClient::trusting(base_url, token, None)
    }

    /// Like [`AdminClient::new`], also trusting a private CA for `https://` servers.
    pub fn trusting(
        base_url: impl Into<String>,
        token: impl Into<String>,
        ca: Option<&crate::tls::CaFile>,
    ) -> Result<Self, AdminError> {
        Ok(AdminClient {
            http: crate::tls::http_client_builder(ca)?
                .timeout(Duration::from_secs(30))
                .build()?,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            token: token.into(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<AdminResponse, AdminError> {
        self.call(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<AdminResponse, AdminError> {
        self.call(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<AdminResponse, AdminError> {
        self.call(self.http.patch(self.url(path)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<AdminResponse, AdminError> {
        self.call(self.http.delete(self.url(path))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<AdminResponse, AdminError> {
        let resp = req.bearer_auth(&self.token).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        // An answer without a body (204 No Content) is `null`.
        if text.trim().is_empty() {
            return Ok(AdminResponse {
                status,
                body: Value::Null,
            });
        }
        let body = serde_json::from_str(&text).map_err(|_| AdminError::NotJson {
            status,
            body: text.chars().take(500).collect(),
        })?;
        Ok(AdminResponse { status, body })
    }
}
