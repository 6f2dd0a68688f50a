//! The client keys in force, derived from the current `[server]` section and
//! rebuilt whenever that section is swapped (a key added, changed or revoked in
//! the file is in effect on the next request).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::config::{Budget, ClientKey, SecretRef, ServerConfig, MIN_TOKEN_CHARS};

/// A key's policy. Its value is gone: only the digest, in the ring's map, is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPolicy {
    /// The key's name.
    pub name: Arc<str>,
    /// Route names and `<provider>/<model>` globs; `None`: every model.
    pub models: Option<Vec<String>>,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Requests at once, per replica.
    pub max_concurrent: Option<u32>,
    /// Tokens per calendar period.
    pub budget: Option<Budget>,
}

impl KeyPolicy {
    fn from_config(k: &ClientKey) -> Self {
        KeyPolicy {
            name: Arc::from(k.name.as_str()),
            models: k.models.clone(),
            rpm: k.rpm,
            tpm: k.tpm,
            max_concurrent: k.max_concurrent,
            budget: k.budget.clone(),
        }
    }
}

/// The keys of one version of the `[server]` section.
#[derive(Default)]
pub struct KeyRing {
    /// By the SHA-256 of the key. A presented key is hashed and looked up: plain
    /// keys are never compared, and the map's comparison of digests tells an
    /// attacker nothing about any key.
    by_digest: HashMap<[u8; 32], Arc<KeyPolicy>>,
    /// Every configured key that resolved, in file order (admin answers).
    pub policies: Vec<Arc<KeyPolicy>>,
    /// Requests without a known key are refused.
    pub required: bool,
    /// Keys that could not be resolved (`server.keys[i].key: reason`).
    pub problems: Vec<String>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("policies", &self.policies)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

fn resolve_digest(k: &ClientKey) -> Result<[u8; 32], String> {
    if let Some(hex_digest) = &k.sha256 {
        let mut d = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut d)
            .map_err(|_| "sha256: must be 64 hex digits".to_string())?;
        return Ok(d);
    }
    let secret: &SecretRef = k.key.as_ref().ok_or("needs `key` or `sha256`")?;
    let v = secret.resolve().map_err(|e| format!("key: {e}"))?;
    if v.chars().count() < MIN_TOKEN_CHARS {
        return Err(format!(
            "key: must be at least {MIN_TOKEN_CHARS} characters"
        ));
    }
    Ok(Sha256::digest(v.as_bytes()).into())
}

/// The SHA-256 of a presented key.
pub fn digest(presented: &str) -> [u8; 32] {
    Sha256::digest(presented.as_bytes()).into()
}

impl KeyRing {
    /// The ring of `config`; `loopback`: the server is bound to a loopback address.
    pub fn build(config: &ServerConfig, loopback: bool) -> KeyRing {
        let mut ring = KeyRing {
            required: config
                .auth
                .required
                .unwrap_or(!config.keys.is_empty() || !loopback),
            ..KeyRing::default()
        };
        for (i, k) in config.keys.iter().enumerate() {
            match resolve_digest(k) {
                Ok(d) => {
                    let p = Arc::new(KeyPolicy::from_config(k));
                    if ring.by_digest.insert(d, p.clone()).is_some() {
                        ring.problems.push(format!(
                            "server.keys[{i}]: the same key as another entry (each key must be different)"
                        ));
                    }
                    ring.policies.push(p);
                }
                Err(e) => ring.problems.push(format!("server.keys[{i}].{e}")),
            }
        }
        ring
    }

    /// The policy of a presented key, if it is one of the ring's.
    pub fn lookup(&self, presented: &str) -> Option<&Arc<KeyPolicy>> {
        self.by_digest.get(&digest(presented))
    }
}

/// The ring of the section in force, rebuilt when the section changes (compared
/// by pointer: a new version of the file is a new `Arc`).
pub struct KeyRingCache {
    current: ArcSwap<(Arc<ServerConfig>, Arc<KeyRing>)>,
    loopback: bool,
}

impl KeyRingCache {
    /// A cache starting from `config`.
    pub fn new(config: Arc<ServerConfig>, loopback: bool) -> Self {
        let ring = Arc::new(KeyRing::build(&config, loopback));
        KeyRingCache {
            current: ArcSwap::from_pointee((config, ring)),
            loopback,
        }
    }

    /// The ring of `config` (the version a request holds).
    pub fn get(&self, config: &Arc<ServerConfig>) -> Arc<KeyRing> {
        let cur = self.current.load();
        if Arc::ptr_eq(&cur.0, config) {
            return cur.1.clone();
        }
        let ring = Arc::new(KeyRing::build(config, self.loopback));
        for p in &ring.problems {
            tracing::warn!(problem = %p, "a client key is not in effect");
        }
        tracing::info!(
            keys = ring.policies.len(),
            required = ring.required,
            "client keys reloaded"
        );
        self.current.store(Arc::new((config.clone(), ring.clone())));
        ring
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: serde_json::Value) -> ServerConfig {
        serde_json::from_value(serde_json::json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn keys_are_found_by_digest_and_never_printed() {
        let c = config(serde_json::json!([
            {"name": "a", "key": {"value": "key-a-0123456789abcdef"}, "rpm": 5},
            {"name": "b", "sha256": hex::encode(digest("key-b-0123456789abcdef"))},
            {"name": "c", "key": {"env": "TAMMA_SURELY_UNSET_KEY_VAR"}}
        ]));
        let ring = KeyRing::build(&c, true);
        assert!(ring.required, "keys configured: required by default");
        assert_eq!(&*ring.lookup("key-a-0123456789abcdef").unwrap().name, "a");
        assert_eq!(&*ring.lookup("key-b-0123456789abcdef").unwrap().name, "b");
        assert!(ring.lookup("key-a-0123456789abcdeX").is_none());
        assert_eq!(ring.problems.len(), 1);
        assert!(ring.problems[0].contains("TAMMA_SURELY_UNSET_KEY_VAR"));
        let shown = format!("{ring:?} {c:?}");
        assert!(!shown.contains("key-a-0123"), "{shown}");
    }

    #[test]
    fn required_defaults_to_keys_or_non_loopback() {
        let none = ServerConfig::default();
        assert!(!KeyRing::build(&none, true).required);
        assert!(KeyRing::build(&none, false).required);
        let mut off = ServerConfig::default();
        off.auth.required = Some(false);
        assert!(!KeyRing::build(&off, false).required);
    }

    #[test]
    fn the_cache_follows_the_section() {
        let first = Arc::new(config(serde_json::json!([
            {"name": "a", "key": {"value": "key-a-0123456789abcdef"}}
        ])));
        let cache = KeyRingCache::new(first.clone(), true);
        assert!(cache.get(&first).lookup("key-a-0123456789abcdef").is_some());
        let second = Arc::new(config(serde_json::json!([
            {"name": "a", "key": {"value": "key-a-changed-456789abcdef"}}
        ])));
        let ring = cache.get(&second);
        assert!(
            ring.lookup("key-a-0123456789abcdef").is_none(),
            "old value revoked"
        );
        assert!(ring.lookup("key-a-changed-456789abcdef").is_some());
    }
}
