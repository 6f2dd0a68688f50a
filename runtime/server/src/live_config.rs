//! The `[server]` section as the handlers see it: swapped whole when the
//! configuration file changes, so a request reads one consistent version for its
//! whole life (it takes an `Arc` at the start and keeps it).
//!
//! Some settings are read once, when the server binds and starts its accept loop:
//! the listen address, the connection and concurrency ceilings, the header read
//! timeout, the admin tokens and the limits store. Client keys and their
//! policies are read per request (see `auth::KeyRingCache`). A new file keeps the running values of those and
//! says which ones differ ([`LiveConfig::apply`]); everything else — routes,
//! body limits, timeouts read per request, the shutdown grace — takes effect on
//! the next request.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::ServerConfig;

/// A shared, swappable `[server]` section. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct LiveConfig {
    current: Arc<ArcSwap<ServerConfig>>,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // ServerConfig's Debug never shows a secret (secret references print
        // their source, not their value), so the whole section may be shown.
        f.debug_tuple("LiveConfig")
            .field(&*self.current.load())
            .finish()
    }
}

/// Settings read at bind time: `(name, whether a and b differ)`.
fn restart_only(a: &ServerConfig, b: &ServerConfig) -> Vec<&'static str> {
    [
        ("server.listen", a.listen != b.listen),
        (
            "server.limits.max_concurrent_requests",
            a.limits.max_concurrent_requests != b.limits.max_concurrent_requests,
        ),
        (
            "server.limits.max_connections",
            a.limits.max_connections != b.limits.max_connections,
        ),
        (
            "server.limits.header_read_timeout_ms",
            a.limits.header_read_timeout_ms != b.limits.header_read_timeout_ms,
        ),
        ("server.admin", a.admin != b.admin),
        ("server.limits_store", a.limits_store != b.limits_store),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect()
}

impl LiveConfig {
    /// Start from `config`.
    pub fn new(config: ServerConfig) -> Self {
        LiveConfig {
            current: Arc::new(ArcSwap::from_pointee(config)),
        }
    }

    /// Start from a section already shared.
    pub fn from_arc(config: Arc<ServerConfig>) -> Self {
        LiveConfig {
            current: Arc::new(ArcSwap::new(config)),
        }
    }

    /// The version in effect now. Hold the `Arc` for the whole request so that
    /// it sees one version throughout.
    pub fn load(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Put `next` in effect, keeping the running values of the settings that are
    /// read only at start. Returns the names of those that differ in `next`
    /// (they take effect after a restart); empty when everything applied.
    pub fn apply(&self, mut next: ServerConfig) -> Vec<&'static str> {
        let mut pending = Vec::new();
        self.current.rcu(|cur| {
            pending = restart_only(cur, &next);
            next.listen = cur.listen.clone();
            next.limits.max_concurrent_requests = cur.limits.max_concurrent_requests;
            next.limits.max_connections = cur.limits.max_connections;
            next.limits.header_read_timeout_ms = cur.limits.header_read_timeout_ms;
            next.admin = cur.admin.clone();
            next.limits_store = cur.limits_store.clone();
            Arc::new(next.clone())
        });
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;

    #[test]
    fn apply_swaps_routes_and_keeps_bind_time_settings() {
        let live = LiveConfig::new(ServerConfig::default());
        let before = live.load();
        let mut next = ServerConfig {
            listen: "0.0.0.0:9999".into(),
            ..ServerConfig::default()
        };
        next.routes
            .insert("r".into(), RouteConfig::ordered(["echo/echo-1"]));
        next.limits.max_body_bytes = 7;
        let pending = live.apply(next);
        assert_eq!(pending, vec!["server.listen"]);
        let now = live.load();
        assert!(now.routes.contains_key("r"));
        assert_eq!(now.limits.max_body_bytes, 7);
        assert_eq!(now.listen, before.listen, "listen is bind-time only");
        // A request that took the old version keeps it.
        assert!(before.routes.is_empty());
    }
}
