//! On-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes milliseconds for a small Rust guest
//! and 15+ seconds for a JavaScript or Python runtime; loading the compiled artifact
//! takes a fraction of a millisecond. Entries are keyed by the component's SHA-256
//! and the engine's compatibility key (wasmtime version + codegen settings), so a
//! different engine never picks up a foreign artifact.
//!
//! Deserializing native code trusts its bytes, so each entry carries a SHA-256 of
//! its payload, verified before use: a truncated or corrupted file is discarded and
//! rebuilt, never loaded. Entries are written to a temporary file and renamed into
//! place, so a crash mid-write leaves no half-written entry under a valid name.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::engine::SandboxEngine;
use crate::error::{Error, ErrorCode, Result};

const MAGIC: &[u8; 8] = b"TAMMACC1";
const HEADER: usize = MAGIC.len() + 32;

/// What happened when a component was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Not cached: compiled, then stored.
    Miss,
    /// A cache entry existed but failed verification: discarded, compiled, stored.
    Rebuilt,
    /// Caching is off: compiled.
    Disabled,
    /// The same component was already loaded in this process: shared, not reloaded.
    Memory,
}

/// The compile cache; cheap to clone.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CompileCache {
            dir: Some(dir.into()),
        }
    }

    /// No caching: every load compiles.
    pub fn disabled() -> Self {
        CompileCache { dir: None }
    }

    /// `$TAMMA_CACHE_DIR`, else `$XDG_CACHE_HOME/tamma`, else `~/.cache/tamma`, else
    /// a directory under the system temp dir.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("TAMMA_CACHE_DIR") {
            return PathBuf::from(d);
        }
        if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(d).join("tamma");
        }
        if let Some(h) = std::env::var_os("HOME") {
            return PathBuf::from(h).join(".cache").join("tamma");
        }
        // Per user, so another account on the machine cannot plant entries.
        let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
        std::env::temp_dir().join(format!("tamma-cache-{user}"))
    }

    /// The cache directory, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Path of the entry for a component hash under an engine.
    pub fn entry_path(&self, engine: &SandboxEngine, sha256: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}-{}.cwasm", engine.compatibility_key())))
    }

    /// Load the compiled form of `bytes` (whose SHA-256 is `sha256`) from the cache,
    /// or compile and store it. Cache I/O failures never fail the load: the
    /// component is compiled and the problem logged.
    pub fn load_or_compile(
        &self,
        engine: &SandboxEngine,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, CacheOutcome)> {
        // The one `unsafe` of the runtime (the workspace denies it elsewhere):
        // loading native code that wasmtime compiled earlier.
        #![allow(unsafe_code)]
        let Some(path) = self.entry_path(engine, sha256) else {
            return Ok((compile(engine, bytes)?, CacheOutcome::Disabled));
        };
        if let Some(dir) = path.parent().filter(|d| d.exists()) {
            // Its entries are loaded as native code: whoever can write the
            // directory can run code in this process.
            untrusted_dir(dir).map_or(Ok(()), |why| {
                Err(Error::new(
                    ErrorCode::InvalidConfig,
                    format!(
                        "refusing the compile cache {}: {why}; make it private (chmod 700, \
                         owned by this user) or choose another (TAMMA_CACHE_DIR, --cache-dir)",
                        dir.display()
                    ),
                ))
            })?;
        }
        let mut outcome = CacheOutcome::Miss;
        match fs::read(&path) {
            Ok(entry) => match verified_payload(&entry) {
                Some(payload) => {
                    // SAFETY: the payload was produced by `Component::serialize` with an
                    // engine of the same compatibility key (it is in the file name) and
                    // its SHA-256 matches the one written beside it, so these are the
                    // exact bytes wasmtime produced. wasmtime re-checks its own header.
                    match unsafe { Component::deserialize(engine.engine(), payload) } {
                        Ok(c) => return Ok((c, CacheOutcome::Hit)),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "compile cache entry rejected by wasmtime; rebuilding");
                            outcome = CacheOutcome::Rebuilt;
                        }
                    }
                }
                None => {
                    tracing::warn!(path = %path.display(), "corrupt compile cache entry; rebuilding");
                    outcome = CacheOutcome::Rebuilt;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read compile cache entry")
            }
        }
        if outcome == CacheOutcome::Rebuilt {
            let _ = fs::remove_file(&path);
        }
        let component = compile(engine, bytes)?;
        if let Err(e) = store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compile cache entry");
        }
        Ok((component, outcome))
    }
}

fn compile(engine: &SandboxEngine, bytes: &[u8]) -> Result<Component> {
    Component::new(engine.engine(), bytes).map_err(|e| {
        Error::new(
            ErrorCode::InvalidComponent,
            format!(
                "component does not compile: {}",
                first_line(&format!("{e:#}"))
            ),
        )
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn verified_payload(entry: &[u8]) -> Option<&[u8]> {
    if entry.len() < HEADER || &entry[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (digest, payload) = entry[MAGIC.len()..].split_at(32);
    (Sha256::digest(payload).as_slice() == digest).then_some(payload)
}

fn store(path: &Path, component: &Component) -> std::io::Result<()> {
    let payload = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(MAGIC)?;
    tmp.1.write_all(&Sha256::digest(&payload))?;
    tmp.1.write_all(&payload)?;
    tmp.1.sync_all()?;
    drop(tmp.1);
    fs::rename(&tmp.0, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp.0);
    })
}

/// Entries are native code loaded without further checks by wasmtime: the cache
/// directory is created readable and writable by its owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)
    }
}

/// Why `dir` must not be trusted with native code, if it must not: writable by
/// group or others, or owned by another user.
fn untrusted_dir(dir: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = match fs::metadata(dir) {
            Ok(m) => m,
            Err(e) => return Some(format!("cannot inspect it ({e})")),
        };
        if let Some(why) = unsafe_mode(meta.mode()) {
            return Some(why);
        }
        if let Some(me) = effective_uid() {
            if meta.uid() != me {
                return Some(format!(
                    "it is owned by uid {}, not by this process's uid {me}",
                    meta.uid()
                ));
            }
        }
        None
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// A directory mode that lets anyone but its owner write entries.
fn unsafe_mode(mode: u32) -> Option<String> {
    (mode & 0o022 != 0)
        .then(|| format!("it is group- or world-writable (mode {:o})", mode & 0o7777))
}

/// The process's effective uid, from `/proc/self/status` (Linux; std has no
/// call for it and the check is not worth a libc binding). `None` elsewhere:
/// only the mode is checked then.
#[cfg(unix)]
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A uniquely named temporary file beside the final entry (same filesystem, so the
/// rename is atomic).
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        ".tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn a_directory_others_can_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(unsafe_mode(0o40700), None);
        assert_eq!(unsafe_mode(0o40755), None);
        assert!(unsafe_mode(0o40775)
            .unwrap()
            .contains("group- or world-writable"));
        assert!(unsafe_mode(0o41777).is_some());
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(untrusted_dir(dir.path()), None);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(untrusted_dir(dir.path()).unwrap().contains("mode 777"));
        assert_eq!(effective_uid().is_some(), cfg!(target_os = "linux"));
    }

    #[test]
    fn payload_verification_rejects_tampering() {
        let payload = b"compiled code".to_vec();
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(&Sha256::digest(&payload));
        entry.extend_from_slice(&payload);
        assert_eq!(verified_payload(&entry), Some(&payload[..]));
        let mut flipped = entry.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(verified_payload(&flipped), None);
        assert_eq!(verified_payload(&entry[..entry.len() - 3]), None);
        assert_eq!(verified_payload(b"TAMMA"), None);
    }
}
