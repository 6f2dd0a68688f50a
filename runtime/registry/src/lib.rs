//! Tamma's provider registry: every provider in the process, registered and
//! removed at run time, with its lifecycle, health checks, circuit breaker,
//! events and statistics; the configuration file and provider discovery.
//! Providers run in [`tamma_sandbox`]; this crate knows nothing of HTTP.
//!
//! Module map (each file is about one thing; tests live beside the code):
//!
//! | module | what it is |
//! |---|---|
//! | [`registry`] | the registry: register/unregister/replace, look-ups, snapshots, guarded calls, health monitoring |
//! | [`registry_config`] | the registry's settings (health, breaker, lifecycle) |
//! | [`lifecycle`] | initialize/start/stop/restart/dispose, and graceful shutdown (`registry/lifecycle.rs`) |
//! | [`health`] | health check results and the debounced status |
//! | [`circuit_breaker`] | per-provider circuit breaker with an injectable clock |
//! | [`events`] | registry events and their bus |
//! | [`stats`] | per-provider call counters and latency histogram |
//! | [`builtins`] | the catalogue of provider components built into a binary |
//! | [`config`] | the configuration file: model, loading, validation, JSON Schema |
//! | [`server_config`] | the `[server]` section of the configuration file |
//! | [`discovery`] | providers from the config file, plugin directory and environment; hot reload |
//! | [`oci`] | components pulled from (and pushed to) an OCI registry, pinned by digest, cached beside the compile cache |
//! | [`trust`] | minisign signatures over component bytes, checked against `[trust] keys` |

pub mod builtins;
pub mod circuit_breaker;
pub mod config;
pub mod discovery;
pub mod events;
pub mod health;
pub mod oci;
pub mod registry;
pub mod registry_config;
pub mod stats;
pub mod trust;

/// The `[server]` section, by the path `tamma_server::config` re-exports.
pub use config::server as server_config;

pub use builtins::Builtins;
pub use registry::lifecycle;
pub use registry::{
    ComponentSource, Origin, ProviderHandle, ProviderSnapshot, ProviderState, ProviderStream,
    Registration, Registry,
};
pub use registry_config::RegistryConfig;
// The sandbox types every registry user needs, so one dependency is enough.
pub use tamma_sandbox::{
    CompletionStream, Error, ErrorCode, Limits, LoadedComponent, ProviderInstance,
    ProviderSettings, Result, Sandbox,
};
