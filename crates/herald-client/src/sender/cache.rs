//! The on-disk JWT cache that lets consecutive `herald send` runs reuse one JWT for its hour.
//!
//! A JWT is a bearer credential for an hour, so the file is created with mode 0600 in a
//! 0700 directory. Every cache error is logged and otherwise ignored: the cache only saves
//! a signature.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A signed JWT together with what it was signed for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedJwt {
    pub key_id: String,
    pub sub_account: String,
    pub aud: String,
    pub alg: String,
    pub iat: i64,
    pub exp: i64,
    pub jwt: String,
}

impl std::fmt::Debug for CachedJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedJwt")
            .field("key_id", &self.key_id)
            .field("sub_account", &self.sub_account)
            .field("aud", &self.aud)
            .field("alg", &self.alg)
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .field("jwt", &"<redacted>")
            .finish()
    }
}

/// One cache file, holding the last JWT signed with one key.
#[derive(Debug, Clone)]
pub struct JwtDiskCache {
    path: PathBuf,
}

impl JwtDiskCache {
    /// A cache in an explicit file.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        JwtDiskCache { path: path.into() }
    }

    /// `$XDG_CACHE_HOME/herald/jwt-<key_id>`, or `$HOME/.cache/herald/jwt-<key_id>`; `None`
    /// when neither variable is set.
    pub fn default_for(key_id: &str) -> Option<Self> {
        Self::default_in(
            key_id,
            non_empty_env("XDG_CACHE_HOME").as_deref(),
            non_empty_env("HOME").as_deref(),
        )
    }

    /// [`JwtDiskCache::default_for`] with the two variables' values given.
    pub fn default_in(
        key_id: &str,
        xdg_cache_home: Option<&str>,
        home: Option<&str>,
    ) -> Option<Self> {
        let base = xdg_cache_home
            .map(PathBuf::from)
            .or_else(|| home.map(|home| Path::new(home).join(".cache")))?;
        Some(Self::at(
            base.join("herald")
                .join(format!("jwt-{}", file_name_safe(key_id))),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached entry, if the file exists and parses.
    pub fn load(&self) -> Option<CachedJwt> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "JWT cache unreadable; ignoring it.");
                return None;
            }
        };
        serde_json::from_str(&text)
            .inspect_err(|e| {
                tracing::debug!(path = %self.path.display(), error = %e, "JWT cache corrupt; ignoring it.");
            })
            .ok()
    }

    /// Replaces the cached entry; failures are logged at debug level and ignored.
    pub fn store(&self, entry: &CachedJwt) {
        if let Err(e) = self.try_store(entry) {
            tracing::debug!(path = %self.path.display(), error = %e, "Cannot write the JWT cache; ignoring.");
        }
    }

    fn try_store(&self, entry: &CachedJwt) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        // Write a sibling file and rename it over the old one, so that a concurrent
        // `herald send` never reads half a file.
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let mut file = open_private(&tmp)?;
        file.write_all(&serde_json::to_vec(entry).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Key ids come from a file the user supplied; keep them from escaping the cache directory.
fn file_name_safe(key_id: &str) -> String {
    key_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn key_ids_cannot_escape_the_cache_directory() {
        assert_eq!(file_name_safe("../../etc/passwd"), "______etc_passwd");
        assert_eq!(file_name_safe("abc-DEF_1"), "abc-DEF_1");
    }
}
