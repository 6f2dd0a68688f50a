//! Manifests and layers by digest, beside the compile cache
//! (`<cache dir>/oci/sha256/<hex>`). Content-addressed, so an entry is written
//! once and never changes; every read is checked against its digest again, so a
//! corrupted or altered file is a miss (pulled afresh), never loaded.

use std::path::{Path, PathBuf};

use super::layout::sha256_digest;

/// The cache (or none: every pull goes to the registry).
#[derive(Clone, Debug, Default)]
pub struct OciCache {
    dir: Option<PathBuf>,
}

impl OciCache {
    /// A cache under `compile_cache_dir/oci`.
    pub fn beside(compile_cache_dir: Option<&Path>) -> Self {
        OciCache {
            dir: compile_cache_dir.map(|d| d.join("oci")),
        }
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.dir.as_ref()?.join("sha256").join(hex))
    }

    /// The bytes stored under `digest`, if present and still matching it.
    pub fn get(&self, digest: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.path(digest)?).ok()?;
        (sha256_digest(&bytes) == digest).then_some(bytes)
    }

    /// Store `bytes` under `digest` (which the caller has checked). Best effort:
    /// a cache that cannot be written only costs the next pull.
    pub fn put(&self, digest: &str, bytes: &[u8]) {
        let Some(path) = self.path(digest) else {
            return;
        };
        let Some(parent) = path.parent() else { return };
        if std::fs::create_dir_all(parent).is_err() {
            return;
        }
        // Write then rename: a reader never sees half a file.
        let tmp = parent.join(format!(".{}.{}.tmp", std::process::id(), fastrand::u64(..)));
        if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = OciCache::beside(Some(dir.path()));
        let d = sha256_digest(b"component");
        cache.put(&d, b"component");
        assert_eq!(cache.get(&d).as_deref(), Some(&b"component"[..]));
        let path = cache.path(&d).unwrap();
        std::fs::write(&path, b"tampered").unwrap();
        assert_eq!(cache.get(&d), None);
        assert_eq!(OciCache::default().get(&d), None);
    }
}
