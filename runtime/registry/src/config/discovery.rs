//! The `[discovery]` section: where else providers come from (environment,
//! plugin directory) and how often sources are re-read.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use tamma_sandbox::sandbox::MAX_COMPONENT_BYTES;

/// Smallest accepted non-zero `auto_refresh_ms`.
pub const MIN_AUTO_REFRESH_MS: u64 = 10;

/// The `[discovery]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Register built-in providers for `OPENAI_API_KEY`, `ANTHROPIC_API_KEY` and
    /// `OPENROUTER_API_KEY`. Default true.
    pub environment: bool,
    /// Directory of plugins (`NAME.wasm` + `NAME.toml`), relative to this file's
    /// directory. Default: none.
    pub plugin_dir: Option<PathBuf>,
    /// How often the file and the plugin directory are re-read, ms; 0 = never
    /// (changes need `tamma` to be told). Default 5 000.
    pub auto_refresh_ms: u64,
    /// Largest plugin component accepted, bytes. Default 64 MiB (the sandbox's maximum).
    pub max_plugin_bytes: u64,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            environment: true,
            plugin_dir: None,
            auto_refresh_ms: 5_000,
            max_plugin_bytes: MAX_COMPONENT_BYTES as u64,
        }
    }
}

impl DiscoveryConfig {
    /// Every problem, as `field: reason` (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.auto_refresh_ms != 0 && self.auto_refresh_ms < MIN_AUTO_REFRESH_MS {
            p.push(format!(
                "auto_refresh_ms: must be 0 (off) or at least {MIN_AUTO_REFRESH_MS}, got {}",
                self.auto_refresh_ms
            ));
        }
        if !(1..=MAX_COMPONENT_BYTES as u64).contains(&self.max_plugin_bytes) {
            p.push(format!(
                "max_plugin_bytes: must be between 1 and {MAX_COMPONENT_BYTES}, got {}",
                self.max_plugin_bytes
            ));
        }
        p
    }

    /// The auto-refresh interval, `None` when off.
    pub fn auto_refresh(&self) -> Option<Duration> {
        (self.auto_refresh_ms > 0).then(|| Duration::from_millis(self.auto_refresh_ms))
    }
}
