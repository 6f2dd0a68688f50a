//! Tamma's provider runtime: runs AI providers as untrusted WebAssembly components.
//!
//! Module map (each file is about one thing; tests live beside the code):
//!
//! | module | what it is |
//! |---|---|
//! | [`types`] | host-side data types of the provider contract (`wit/provider.wit`) |
//! | [`error`] | the crate's one error type and its stable codes |
//! | [`limits`] | per-provider sandbox limits and their defaults |
//! | [`engine`] | the process-wide wasmtime engine, allocator probe and epoch ticker |
//! | [`compile_cache`] | on-disk cache of compiled components |
//! | [`sandbox`] | loading, type-checking and instantiating components |
//! | [`settings`] | what shapes one provider's sandbox: config, limits, egress |
//! | [`egress`] | the egress policy and the `wasi:http` send hook |
//! | `bindings` | generated WIT bindings and type conversions (private) |
//! | `host` | per-instance host state: WASI context, log import, limiter (private) |
//! | `instance` | one instance in its own `Store`, with guarded calls (private) |
//! | [`pool`] | a provider's bounded instance pool |
//! | [`provider`] | the handle used to call a loaded provider, and streams |
//! | [`registry`] | the registry: register/unregister, look-ups, snapshots, guarded calls |
//! | [`registry_config`] | the registry's settings (health, breaker, lifecycle) |
//! | [`lifecycle`] | initialize/start/stop/restart/dispose, and graceful shutdown |
//! | [`health`] | health check results and the debounced status |
//! | [`monitor`] | health checks and periodic monitoring tasks |
//! | [`circuit_breaker`] | per-provider circuit breaker with an injectable clock |
//! | [`events`] | registry events and their bus |
//! | [`stats`] | per-provider call counters and latency histogram |
//! | [`builtins`] | provider components embedded in the binary |
//! | [`config`] | the configuration file: model, loading, validation, JSON Schema |
//! | [`discovery`] | providers from the config file, plugin directory and environment; hot reload |
//! | [`server`] | `tamma serve`: OpenAI-compatible gateway, admin API, probes, metrics |
//! | [`cli`] | the `tamma` command line (`cli/`: one file per group of subcommands) |
//! | `bench_support` | entry points for the benchmarks only (hidden, not a stable API) |

pub mod builtins;
pub mod circuit_breaker;
pub mod cli;
pub mod compile_cache;
pub mod config;
pub mod discovery;
pub mod egress;
pub mod engine;
pub mod error;
pub mod events;
pub mod health;
pub mod lifecycle;
pub mod limits;
pub mod monitor;
pub mod pool;
pub mod provider;
pub mod registry;
pub mod registry_config;
pub mod sandbox;
pub mod server;
pub mod settings;
pub mod stats;
pub mod types;

#[doc(hidden)]
pub mod bench_support;

mod bindings;
mod host;
mod instance;

pub use error::{Error, ErrorCode, Result};
pub use limits::Limits;
pub use provider::{CompletionStream, ProviderInstance};
pub use registry::{
    ComponentSource, Origin, ProviderHandle, ProviderState, Registration, Registry,
};
pub use registry_config::RegistryConfig;
pub use sandbox::{LoadedComponent, Sandbox};
pub use settings::ProviderSettings;
