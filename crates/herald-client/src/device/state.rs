//! The device's state directory: its credential (`device.json`) and the ids of messages it
//! has already seen (`seen.json`). Same directory → same device → same tokens.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use herald_proto::device::DeviceCredential;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// How many message ids a device remembers for de-duplication, by default.
pub const DEFAULT_SEEN_CAPACITY: usize = 10_000;

const DEVICE_FILE: &str = "device.json";
const SEEN_FILE: &str = "seen.json";

/// A state-directory file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// `device.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DeviceFile {
    #[serde(default)]
    credential: Option<DeviceCredential>,
}

/// A directory of small JSON files, each replaced atomically and readable only by the owner.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens `dir`, creating it (mode 0700) if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        create_private_dir(&dir).map_err(|source| StateError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(StateDir { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads `name` as JSON; `None` when the file does not exist.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        let path = self.dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path, source })
    }

    /// Replaces `name` with `value` as JSON (write to a temporary file, fsync, rename).
    pub fn write_json<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), StateError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(value).map_err(|e| io(std::io::Error::other(e)))?;
        let mut file = open_private(&tmp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// The stored credential, if this device has registered.
    pub fn load_credential(&self) -> Result<Option<DeviceCredential>, StateError> {
        Ok(self
            .read_json::<DeviceFile>(DEVICE_FILE)?
            .and_then(|f| f.credential))
    }

    pub fn save_credential(&self, credential: &DeviceCredential) -> Result<(), StateError> {
        self.write_json(
            DEVICE_FILE,
            &DeviceFile {
                credential: Some(credential.clone()),
            },
        )
    }

    /// The remembered message ids. A corrupt `seen.json` is logged and treated as empty:
    /// the cost is at most a duplicate notification.
    pub fn load_seen(&self, capacity: usize) -> Result<SeenIds, StateError> {
        let mut seen = SeenIds::new(capacity);
        match self.read_json::<Vec<String>>(SEEN_FILE) {
            Ok(ids) => ids.into_iter().flatten().for_each(|id| {
                seen.insert(id);
            }),
            Err(StateError::Corrupt { path, source }) => {
                tracing::warn!(path = %path.display(), error = %source, "Seen-message file is corrupt; starting with an empty one.");
            }
            Err(e) => return Err(e),
        }
        Ok(seen)
    }

    pub fn save_seen(&self, seen: &SeenIds) -> Result<(), StateError> {
        self.write_json(SEEN_FILE, &seen.order)
    }
}

/// The most recent message ids, oldest first, bounded: inserting beyond the capacity
/// forgets the oldest.
#[derive(Debug, Clone)]
pub struct SeenIds {
    capacity: usize,
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl SeenIds {
    pub fn new(capacity: usize) -> Self {
        SeenIds {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// Records `id`; returns `false` if it was already there (a duplicate).
    pub fn insert(&mut self, id: String) -> bool {
        if self.set.contains(&id) {
            return false;
        }
        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        self.set.insert(id.clone());
        self.order.push_back(id);
        true
    }

    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
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
    fn seen_ids_drop_duplicates_and_forget_the_oldest() {
        let mut seen = SeenIds::new(2);
        assert!(seen.insert("a".into()));
        assert!(!seen.insert("a".into()));
        assert!(seen.insert("b".into()));
        assert!(seen.insert("c".into()));
        assert!(!seen.contains("a"));
        assert!(seen.contains("b") && seen.contains("c"));
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn credential_and_seen_ids_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("dev")).unwrap();
        assert!(state.load_credential().unwrap().is_none());
        let cred = DeviceCredential {
            id: "d1".into(),
            secret: "s".into(),
        };
        state.save_credential(&cred).unwrap();
        let mut seen = SeenIds::new(10);
        seen.insert("m1".into());
        state.save_seen(&seen).unwrap();

        let reopened = StateDir::open(dir.path().join("dev")).unwrap();
        assert_eq!(reopened.load_credential().unwrap(), Some(cred));
        let seen = reopened.load_seen(10).unwrap();
        assert!(seen.contains("m1"));
    }

    #[test]
    fn a_corrupt_seen_file_starts_empty_but_a_corrupt_device_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        std::fs::write(dir.path().join(SEEN_FILE), "not json").unwrap();
        std::fs::write(dir.path().join(DEVICE_FILE), "not json").unwrap();
        assert!(state.load_seen(10).unwrap().is_empty());
        assert!(matches!(
            state.load_credential(),
            Err(StateError::Corrupt { .. })
        ));
    }
}
