//! A compiled, type-checked component: what the sandbox loads once and
//! instantiates any number of times. Apart from [`crate::sandbox`] (which makes
//! them) and [`crate::provider`] (which runs them), so neither imports the other.

use std::sync::Arc;

use wasmtime::component::Component;

use crate::compile_cache::CacheOutcome;
use crate::exports::{ContractVersion, ProviderPre};

/// The compiled code and its pre-linked instance template.
pub(crate) struct Compiled {
    pub(crate) pre: ProviderPre,
    pub(crate) component: Component,
}

/// A compiled, type-checked component, ready to instantiate any number of times.
#[derive(Clone)]
pub struct LoadedComponent {
    pub(crate) compiled: Arc<Compiled>,
    /// Hex SHA-256 of the component bytes.
    pub sha256: String,
    /// Whether the compiled code came from the cache (or was already in memory).
    pub cache: CacheOutcome,
    /// Size of the component, bytes.
    pub size: usize,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("sha256", &self.sha256)
            .field("cache", &self.cache)
            .field("size", &self.size)
            .finish()
    }
}

impl LoadedComponent {
    /// The compiled component.
    pub fn component(&self) -> &Component {
        &self.compiled.component
    }

    /// The contract version the component was built against.
    pub fn contract_version(&self) -> ContractVersion {
        self.compiled.pre.version()
    }

    /// Whether it exports `tamma:provider/embeddings`.
    pub fn exports_embeddings(&self) -> bool {
        self.compiled.pre.has_embeddings()
    }

    pub(crate) fn pre(&self) -> &ProviderPre {
        &self.compiled.pre
    }
}
