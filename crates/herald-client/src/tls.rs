//! Trusting a private certificate authority (`--ca-file`): one PEM file of CA certificates,
//! trusted in addition to the system's roots by the device's `wss://` connection
//! (tokio-tungstenite with a rustls connector) and by the sender's and admin's HTTPS
//! clients (reqwest).
//!
//! The rustls crypto provider is the process default; binaries install it (see `lib.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA file {path} holds no PEM certificate ({reason})")]
    NoCertificate { path: PathBuf, reason: String },
    #[error("CA file {path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
}

/// The certificates of a private CA, read once; cheap to clone.
#[derive(Debug, Clone)]
pub struct CaFile {
    path: PathBuf,
    pem: Arc<[u8]>,
    certs: Arc<[CertificateDer<'static>]>,
}

impl CaFile {
    /// Reads every `CERTIFICATE` block of a PEM file (at least one).
    pub fn load(path: impl AsRef<Path>) -> Result<CaFile, TlsError> {
        let path = path.as_ref().to_owned();
        let pem = std::fs::read(&path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::NoCertificate {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path,
                reason: "no BEGIN CERTIFICATE block".into(),
            });
        }
        Ok(CaFile {
            path,
            pem: pem.into(),
            certs: certs.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's certificates in DER.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// A rustls client configuration trusting the system's roots and this CA (for `wss://`).
    pub fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        // The system store may be missing or partly unreadable; the CA alone still works.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for cert in self.certs.iter() {
            roots.add(cert.clone()).map_err(|e| self.unusable(e))?;
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// Adds the CA to a reqwest client's roots (merged with the system's).
    pub fn trust_in(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TlsError> {
        let certs =
            reqwest::Certificate::from_pem_bundle(&self.pem).map_err(|e| self.unusable(e))?;
        Ok(builder.tls_certs_merge(certs))
    }

    fn unusable(&self, e: impl std::fmt::Display) -> TlsError {
        TlsError::Unusable {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

/// A reqwest client builder that trusts `ca` when there is one.
pub fn http_client_builder(ca: Option<&CaFile>) -> Result<reqwest::ClientBuilder, TlsError> {
    let builder = reqwest::Client::builder();
    match ca {
        Some(ca) => ca.trust_in(builder),
        None => Ok(builder),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_PEM: &str = "this is not a certificate\n";

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, NOT_PEM).unwrap();
        let e = CaFile::load(&path).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        let e = CaFile::load(dir.path().join("missing.pem")).unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
    }
}
