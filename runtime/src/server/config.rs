//! The `[server]` section of the configuration file.

use serde::{Deserialize, Serialize};

/// Server settings: listen address, limits, admin tokens, routes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {}

impl ServerConfig {
    /// Every problem, as `server.field: reason` (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}
