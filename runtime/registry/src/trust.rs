//! Signature checks: minisign (Ed25519) signatures over a component's bytes,
//! against the keys of the configuration's `[trust]` section.
//!
//! - `keys`: minisign public keys (the base64 line of a `minisign.pub` file,
//!   `RW…`), each known by its key id (the 16 hex digits `minisign` prints).
//! - `require_signature = true`: a component with no signature, or one by a key
//!   not listed, or one that does not verify, fails registration
//!   (`INVALID_COMPONENT`, the message naming the key id). Off, a signature
//!   present is still checked when its key is listed (a wrong one fails), and
//!   an unsigned component loads.
//!
//! Where the signature comes from: a component file's `FILE.minisig` beside it
//! (what `minisign -Sm FILE` writes), the manifest annotation of an OCI
//! artifact (`tamma push` puts `FILE.minisig` there), or the admin API's
//! `signature` field. Built-in components are part of the `tamma` binary and
//! need none. Only prehashed signatures (minisign's default since 0.8) are
//! accepted.

use base64::Engine as _;
use minisign_verify::{PublicKey, Signature};
use serde::{Deserialize, Serialize};

use tamma_sandbox::error::{Error, ErrorCode, Result};

/// The `[trust]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Trusted minisign public keys (the base64 line of `minisign.pub`, `RW…`).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Refuse components that are not signed by one of `keys`.
    #[serde(default)]
    pub require_signature: bool,
}

/// The parsed keys and the rule.
#[derive(Clone, Default)]
pub struct TrustPolicy {
    keys: Vec<(String, PublicKey)>,
    require_signature: bool,
}

impl std::fmt::Debug for TrustPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustPolicy")
            .field("key_ids", &self.key_ids())
            .field("require_signature", &self.require_signature)
            .finish()
    }
}

/// minisign's key id: bytes 2..10 of the decoded key or signature, shown as
/// minisign shows it (a little-endian u64, upper-case hex).
fn key_id(decoded: &[u8]) -> Option<String> {
    let id = decoded.get(2..10)?;
    Some(id.iter().rev().map(|b| format!("{b:02X}")).collect())
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

impl TrustConfig {
    /// Every problem with the section (a key that does not parse), by index.
    pub fn validate(&self) -> Vec<String> {
        match TrustPolicy::new(self) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }
}

impl TrustPolicy {
    /// Parse the section's keys; problems name the key by index.
    pub fn new(config: &TrustConfig) -> std::result::Result<Self, Vec<String>> {
        let mut keys = Vec::new();
        let mut problems = Vec::new();
        for (i, text) in config.keys.iter().enumerate() {
            // The whole `.pub` file's text works as well as its key line.
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
                .unwrap_or("");
            match (PublicKey::from_base64(line), decode_b64(line).as_deref().and_then(key_id)) {
                (Ok(pk), Some(id)) => keys.push((id, pk)),
                _ => problems.push(format!(
                    "trust.keys[{i}]: not a minisign public key (expected the base64 line of minisign.pub, RW…)"
                )),
            }
        }
        if config.require_signature && config.keys.is_empty() {
            problems
                .push("trust.require_signature: true needs at least one key in trust.keys".into());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(TrustPolicy {
            keys,
            require_signature: config.require_signature,
        })
    }

    /// The trusted key ids.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// Whether nothing is checked at all.
    pub fn is_open(&self) -> bool {
        self.keys.is_empty() && !self.require_signature
    }

    /// Check `bytes` against `signature` (a `.minisig` file's text). Returns the
    /// key id that signed it, or `None` for an unsigned component where that
    /// is allowed.
    pub fn check(&self, bytes: &[u8], signature: Option<&str>) -> Result<Option<String>> {
        let trusted = || self.key_ids().join(", ");
        let Some(text) = signature else {
            if self.require_signature {
                return Err(invalid(format!(
                    "the component is not signed; [trust] require_signature = true needs a minisign \
                     signature by one of the trusted keys ({})",
                    trusted()
                )));
            }
            return Ok(None);
        };
        let sig = Signature::decode(text)
            .map_err(|_| invalid("the signature is not a minisign signature (.minisig)".into()))?;
        let sig_id = text
            .lines()
            .nth(1)
            .and_then(decode_b64)
            .as_deref()
            .and_then(key_id)
            .unwrap_or_else(|| "?".into());
        let Some((id, key)) = self.keys.iter().find(|(id, _)| *id == sig_id) else {
            if self.require_signature {
                return Err(invalid(format!(
                    "the component is signed by key id {sig_id}, which is not a trusted key ({})",
                    trusted()
                )));
            }
            // Not required and not ours: nothing to check it against.
            return Ok(None);
        };
        key.verify(bytes, &sig, false).map_err(|e| {
            invalid(match e {
                minisign_verify::Error::UnexpectedAlgorithm => format!(
                    "the signature by key id {id} is a legacy (non-prehashed) one; sign again with a current minisign"
                ),
                _ => format!(
                    "the signature by key id {id} does not verify: the component's bytes are not the ones that were signed"
                ),
            })
        })?;
        Ok(Some(id.clone()))
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidComponent, message)
}

/// The `.minisig` beside a component file, if there is one (`FILE.minisig`).
pub fn signature_beside(path: &std::path::Path) -> std::io::Result<Option<String>> {
    let mut p = path.as_os_str().to_owned();
    p.push(".minisig");
    match std::fs::read_to_string(std::path::PathBuf::from(p)) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
