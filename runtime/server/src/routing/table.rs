//! The routes of one version of the `[server]` section, parsed once: a request
//! looks its route up here instead of parsing `provider/model` strings. A table
//! belongs to one `Arc<ServerConfig>`; when the section is swapped, the next
//! request builds the table of the new version, and requests that started under
//! the old one keep theirs.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::retry::RetryPolicy;
use super::Target;
use crate::config::{RouteConfig, RouteStrategy, ServerConfig};

/// One route, ready to use.
#[derive(Debug)]
pub struct Route {
    /// Its name.
    pub name: String,
    /// Its targets, in the file's order.
    pub targets: Vec<Target>,
    /// How the first target is picked.
    pub strategy: RouteStrategy,
    /// `weighted`: one per target (or empty: equal).
    pub weights: Vec<u32>,
    /// Retries, if any.
    pub retries: Option<RetryPolicy>,
    /// `context-too-long` moves to a target with a larger window.
    pub context_window_fallback: bool,
}

impl Route {
    fn new(name: &str, c: &RouteConfig) -> Self {
        let targets: Vec<Target> = c.targets.iter().filter_map(|t| Target::parse(t)).collect();
        Route {
            name: name.to_string(),
            targets,
            strategy: c.strategy,
            // Validation makes them match the targets; if they did not, equal
            // weights are the safe reading.
            weights: if c.weights.len() == c.targets.len() {
                c.weights.clone()
            } else {
                Vec::new()
            },
            retries: c.retries.as_ref().map(RetryPolicy::from),
            context_window_fallback: c.context_window_fallback,
        }
    }
}

/// The routes of one version of the section.
pub struct RouteTable {
    source: Arc<ServerConfig>,
    routes: HashMap<String, Arc<Route>>,
}

impl RouteTable {
    fn build(source: Arc<ServerConfig>) -> Self {
        let routes = source
            .routes
            .iter()
            .map(|(name, c)| (name.clone(), Arc::new(Route::new(name, c))))
            .collect();
        RouteTable { source, routes }
    }

    /// The route named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.get(name)
    }
}

/// The table of the section version seen last. Cheap to clone; clones share it.
#[derive(Clone, Default)]
pub struct RouteCache {
    current: Arc<ArcSwapOption<RouteTable>>,
}

impl RouteCache {
    /// The table of `config` (built once per version).
    pub fn table_for(&self, config: &Arc<ServerConfig>) -> Arc<RouteTable> {
        if let Some(t) = self.current.load_full() {
            if Arc::ptr_eq(&t.source, config) {
                return t;
            }
        }
        let table = Arc::new(RouteTable::build(config.clone()));
        self.current.store(Some(table.clone()));
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_per_version() {
        let cache = RouteCache::default();
        let mut c = ServerConfig::default();
        c.routes
            .insert("r".into(), RouteConfig::ordered(["a/x", "b/y"]));
        let v1 = Arc::new(c.clone());
        let t1 = cache.table_for(&v1);
        assert!(Arc::ptr_eq(&t1, &cache.table_for(&v1)), "built once");
        assert_eq!(t1.get("r").unwrap().targets[1].provider, "b");
        c.routes.clear();
        let v2 = Arc::new(c);
        assert!(cache.table_for(&v2).get("r").is_none());
        // A request that holds v1 still finds its route.
        assert!(cache.table_for(&v1).get("r").is_some());
    }
}
