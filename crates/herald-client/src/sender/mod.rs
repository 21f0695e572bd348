//! The backend side of Push Kit: load a service-account key file, sign JWTs, call the REST API.

mod cache;
mod http;
mod jwt;

use std::path::{Path, PathBuf};

pub use cache::{CachedJwt, JwtDiskCache};
pub use herald_proto::keyfile::KeyFile;
pub use http::PushClient;
pub use jwt::{JwtSigner, SigningAlgorithm};

/// Everything that can go wrong on the sending side.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("cannot read key file {path}: {source}")]
    ReadKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is not a Push Kit service-account key: {source}")]
    ParseKeyFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the key file's private_key is not a usable RSA key: {0}")]
    BadPrivateKey(jsonwebtoken::errors::Error),
    #[error("cannot sign the JWT: {0}")]
    Sign(jsonwebtoken::errors::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("server answered HTTP {status} with a body that is not a Push Kit response: {body}")]
    UnexpectedResponse { status: u16, body: String },
}

/// Reads and parses a service-account key file.
///
/// (A free function rather than `KeyFile::load`: `herald-proto` does no I/O, and its types
/// cannot get inherent methods from this crate.)
pub fn load_key_file(path: impl AsRef<Path>) -> Result<KeyFile, SenderError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| SenderError::ReadKeyFile {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| SenderError::ParseKeyFile {
        path: path.to_owned(),
        source,
    })
}
