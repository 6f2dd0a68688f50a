//! The configuration file: its model, loading, validation and JSON Schema.
//!
//! One file (TOML, or JSON when its name ends in `.json`) declares providers and
//! the registry's settings. The format is documented in `docs/configuration.md`
//! and `examples/tamma.toml`; `tamma schema` prints the JSON Schema generated
//! from the types below.
//!
//! Module map (one concern per file):
//!
//! | module | what it is |
//! |---|---|
//! | `mod.rs` | the [`Config`] model (the whole file) and the re-exports |
//! | `provider` | `[providers.NAME]` and `[plugins.NAME]` entries, secret references, components |
//! | `discovery` | the `[discovery]` section |
//! | [`server`] | the `[server]` section (also `tamma_registry::server_config`) |
//! | `keys` | `[server.auth]`, `[[server.keys]]`, `[server.limits_store]` (re-exported from [`server`]) |
//! | `load` | reading a file or a text: [`Format`], [`Config::load`], [`Config::check_file`] |
//! | `problem` | what checking reports: [`Check`], [`Problem`], [`ConfigCheck`] |
//! | `document` | the parsed TOML or JSON document that remembers the line of every key and value |
//! | `checker` | the `Checker`: problem collection and typed readers over the document |
//! | `redact` | keeping values (maybe secrets) out of serde's messages |
//! | [`bounds`] | the accepted range of every numeric setting (one table per section), checked by validation and stated in the schema |
//! | `validate` | the per-section checks that turn a document into a [`Config`] |
//! | `schema` | [`Config::json_schema`] |
//!
//! # Validation
//!
//! The file is first parsed into a document that remembers the line of every key
//! and value; then each section, each provider and each field is checked on its
//! own, so *every* problem is reported at once, each with its path
//! (`providers.openai.limits.memory_mib`) and line:
//!
//! - syntax errors (in TOML all of them, the parser recovers; in JSON the first);
//! - unknown keys and wrong types (serde, field by field);
//! - out-of-range values (the types' own `validate()`, prefixed with the path);
//! - provider names, components (a built-in type, or a `.wasm` file that
//!   exists), allowed-host syntax, secret references (never inline values).
//!
//! Problems are split in two: file-level ones (syntax, a bad `[health]`, an
//! unknown top-level key) make the whole file unusable; a problem inside one
//! `[providers.NAME]` or `[plugins.NAME]` entry only disables that entry
//! ([`ConfigCheck::invalid_providers`]), so discovery can load the others and
//! keep the previous version of the bad one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::circuit_breaker::CircuitBreakerConfig;
use crate::registry_config::{HealthConfig, LifecycleConfig, RegistryConfig};

pub mod bounds;
pub(crate) mod checker;
mod discovery;
pub(crate) mod document;
mod keys;
mod load;
mod problem;
mod provider;
mod redact;
mod schema;
pub mod server;
mod validate;

pub use discovery::{DiscoveryConfig, MIN_AUTO_REFRESH_MS};
pub use load::Format;
pub(crate) use problem::join_path;
pub use problem::{Check, ConfigCheck, Problem};
pub use provider::{
    ComponentRef, PluginGrant, ProviderConfig, RegistryCredentials, SecretRef, SecretSpec,
    BUILTIN_TYPES,
};
use server::ServerConfig;

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(title = "Tamma configuration file")]
pub struct Config {
    /// Providers, by name (the table key: 1-64 of `a-z 0-9 - _ .`).
    pub providers: BTreeMap<String, ProviderConfig>,
    /// What the operator grants to plugins found in the plugin directory, by
    /// plugin name: configuration, secrets, limits, extra hosts, or `enabled = false`.
    pub plugins: BTreeMap<String, PluginGrant>,
    /// Health monitoring (the registry's).
    pub health: HealthConfig,
    /// Circuit breaker, one per provider (the registry's).
    pub circuit_breaker: CircuitBreakerConfig,
    /// Lifecycle deadlines (the registry's).
    pub lifecycle: LifecycleConfig,
    /// Where else providers come from, and how often sources are re-read.
    pub discovery: DiscoveryConfig,
    /// `tamma serve`: the gateway and admin API.
    pub server: ServerConfig,
    /// Which signatures components must carry (the registry's).
    pub trust: crate::trust::TrustConfig,
    /// Directory relative paths are resolved against (the file's own directory).
    #[serde(skip)]
    #[schemars(skip)]
    pub base_dir: PathBuf,
}

impl Config {
    /// The registry's settings from this file.
    pub fn registry_config(&self) -> RegistryConfig {
        RegistryConfig {
            health: self.health.clone(),
            circuit_breaker: self.circuit_breaker.clone(),
            lifecycle: self.lifecycle.clone(),
            trust: self.trust.clone(),
        }
    }

    /// `path` resolved against the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The plugin directory, resolved.
    pub fn plugin_dir(&self) -> Option<PathBuf> {
        self.discovery
            .plugin_dir
            .as_deref()
            .map(|p| self.resolve(p))
    }
}

/// The catalogue `tamma` builds with, for the tests of this module (the bytes
/// are never read here).
#[cfg(test)]
pub(crate) fn test_builtins() -> crate::builtins::Builtins {
    static EMBEDDED: &[(&str, &[u8])] = &[("echo", b""), ("openai", b""), ("anthropic", b"")];
    crate::builtins::Builtins::from_static(EMBEDDED)
}
