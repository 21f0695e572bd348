//! Service-account key pairs: RSA-2048 generated with aws-lc, written in Huawei's layout.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A freshly generated key pair, as the two PEM strings Herald needs.
#[derive(Clone)]
pub struct GeneratedKey {
    /// Huawei's exact layout: markers on their own lines, the PKCS#8 base64 body on ONE
    /// line (Huawei's Java demo fails on line-wrapped PEM).
    pub private_key_pem: String,
    /// SPKI PEM, stored so the server can verify JWTs.
    pub public_key_pem: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("public_key_pem", &self.public_key_pem)
            .finish_non_exhaustive()
    }
}

/// Key generation failed inside aws-lc (should not happen).
#[derive(Debug, thiserror::Error)]
#[error("RSA key generation failed")]
pub struct KeyGenError;

/// Generate an RSA-2048 key pair.
pub fn generate() -> Result<GeneratedKey, KeyGenError> {
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyGenError)?;
    let pkcs8: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeyGenError)?;
    let spki: PublicKeyX509Der<'static> = pair.public_key().as_der().map_err(|_| KeyGenError)?;
    Ok(GeneratedKey {
        private_key_pem: format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(pkcs8.as_ref())
        ),
        public_key_pem: wrapped_pem("PUBLIC KEY", spki.as_ref()),
    })
}

/// The public key (SPKI PEM) of a PKCS#8 RSA private key in PEM, as a key file's
/// `private_key` holds it (one line or wrapped); `None` when it is not one.
pub fn public_pem_of(private_key_pem: &str) -> Option<String> {
    let body: String = private_key_pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).ok()?;
    let pair = KeyPair::from_pkcs8(&der).ok()?;
    let spki: PublicKeyX509Der<'static> = pair.public_key().as_der().ok()?;
    Some(wrapped_pem("PUBLIC KEY", spki.as_ref()))
}

/// Standard PEM with 64-column lines (for keys Herald reads itself).
fn wrapped_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_has_huaweis_one_line_layout() {
        let k = generate().unwrap();
        let lines: Vec<&str> = k.private_key_pem.split('\n').collect();
        assert_eq!(lines.len(), 4, "{:?}", k.private_key_pem);
        assert_eq!(lines[0], "-----BEGIN PRIVATE KEY-----");
        assert!(STANDARD.decode(lines[1]).is_ok());
        assert_eq!(lines[2], "-----END PRIVATE KEY-----");
        assert_eq!(lines[3], "");
        assert!(jsonwebtoken::DecodingKey::from_rsa_pem(k.public_key_pem.as_bytes()).is_ok());
        assert!(jsonwebtoken::EncodingKey::from_rsa_pem(k.private_key_pem.as_bytes()).is_ok());
    }

    #[test]
    fn the_public_key_of_a_key_files_private_key_is_the_generated_one() {
        let k = generate().unwrap();
        assert_eq!(public_pem_of(&k.private_key_pem), Some(k.public_key_pem));
        assert_eq!(
            public_pem_of("-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n"),
            None
        );
    }
}
