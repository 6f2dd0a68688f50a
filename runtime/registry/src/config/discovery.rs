//! The `[discovery]` section: where else providers come from (environment,
//! plugin directory) and how often sources are re-read.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use tamma_sandbox::sandbox::MAX_COMPONENT_BYTES;

/// Smallest accepted non-zero `auto_refresh_ms`.
pub const MIN_AUTO_REFRESH_MS: u64 = 10;

/// Longest `auto_refresh_ms`: a day.
pub const MAX_AUTO_REFRESH_MS: u64 = crate::registry_config::MAX_PERIOD_MS;
/// Largest `max_plugin_bytes`: the sandbox's component size cap.
const MAX_PLUGIN_BYTES: u64 = MAX_COMPONENT_BYTES as u64;

/// Every `[discovery]` field's accepted range (`auto_refresh_ms` is also 0 or
/// at least [`MIN_AUTO_REFRESH_MS`], which a range cannot say).
pub const DISCOVERY_BOUNDS: &[super::bounds::Bound] = &[
    ("auto_refresh_ms", 0, MAX_AUTO_REFRESH_MS),
    ("max_plugin_bytes", 1, MAX_PLUGIN_BYTES),
];

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
    /// (changes need `tamma` to be told). Default 5 000; otherwise at least 10 and
    /// at most a day.
    #[schemars(range(max = MAX_AUTO_REFRESH_MS))]
    pub auto_refresh_ms: u64,
    /// Largest plugin component accepted, bytes. Default 64 MiB (the sandbox's maximum).
    #[schemars(range(min = 1, max = MAX_PLUGIN_BYTES))]
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
        let mut p = super::bounds::check("", DISCOVERY_BOUNDS, |f| {
            Some(match f {
                "auto_refresh_ms" => self.auto_refresh_ms,
                _ => self.max_plugin_bytes,
            })
        });
        if self.auto_refresh_ms != 0 && self.auto_refresh_ms < MIN_AUTO_REFRESH_MS {
            p.push(format!(
                "auto_refresh_ms: must be 0 (off) or at least {MIN_AUTO_REFRESH_MS}, got {}",
                self.auto_refresh_ms
            ));
        }
        p
    }

    /// The auto-refresh interval, `None` when off.
    pub fn auto_refresh(&self) -> Option<Duration> {
        (self.auto_refresh_ms > 0).then(|| Duration::from_millis(self.auto_refresh_ms))
    }
}
