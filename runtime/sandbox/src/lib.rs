//! Tamma's sandbox: runs one AI provider as an untrusted WebAssembly component,
//! each instance in its own `Store` with fuel, a memory cap, a wall-clock
//! deadline, no files, no environment, and network only to the hosts it was
//! granted. Knows nothing of registries, configuration files or HTTP servers.
//!
//! Module map (each file is about one thing; tests live beside the code):
//!
//! | module | what it is |
//! |---|---|
//! | [`types`] | host-side data types of the provider contract (`wit/provider.wit`) |
//! | [`capability_limits`] | bounds on what a guest may declare in `capabilities()` / `list-models` |
//! | [`error`] | the runtime's one error type and its stable codes |
//! | [`limits`] | per-provider sandbox limits and their defaults |
//! | [`engine`] | the process-wide wasmtime engine, allocator probe and epoch ticker |
//! | [`compile_cache`] | on-disk cache of compiled components |
//! | [`compile_limits`] | structural limits (functions, code bytes, locals, types) checked before compiling |
//! | [`component`] | a compiled, type-checked component ready to instantiate |
//! | [`sandbox`] | loading, type-checking and instantiating components |
//! | [`settings`] | what shapes one provider's sandbox: config, limits, egress |
//! | [`egress`] | the egress policy, the `wasi:http` send hook, the egress span and `traceparent` |
//! | `bindings` | generated WIT bindings (contract 0.2.0 and 0.1.0) and type conversions (private) |
//! | [`exports`] | which contract version and optional interfaces a component exports; per-version calls |
//! | `host` | per-instance host state: WASI context, log import, limiter (private) |
//! | `instance` | one instance in its own `Store`, with guarded calls (private) |
//! | [`pool`] | a provider's bounded instance pool |
//! | [`provider`] | the handle used to call a loaded provider, and streams |
//! | `bench_support` | entry points for the benchmarks only (feature `bench`, not a stable API) |

pub mod capability_limits;
pub mod compile_cache;
pub mod compile_limits;
pub mod component;
pub mod egress;
pub mod engine;
pub mod error;
pub mod exports;
pub mod limits;
pub mod pool;
pub mod provider;
pub mod sandbox;
pub mod settings;
pub mod time;
pub mod types;

#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench_support;

mod bindings;
mod host;
mod instance;

pub use component::LoadedComponent;
pub use error::{Error, ErrorCode, Result};
pub use exports::ContractVersion;
pub use limits::Limits;
pub use provider::{CompletionStream, ProviderInstance};
pub use sandbox::Sandbox;
pub use settings::ProviderSettings;
