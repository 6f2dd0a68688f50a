//! Helpers for the tests and benchmarks of the runtime's crates; not a stable API
//! and never a dependency of the runtime itself.
//!
//! | module | what it is |
//! |---|---|
//! | [`client`] | a small HTTP/1.1 client over one keep-alive connection |
//! | [`redis_server`] | a real `redis-server` on a free loopback port |
//! | [`oci_registry`] | a real OCI registry (`docker-registry`, distribution 2.8) on a free loopback port |
//! | [`local_server`] | what those two share: a free port, waiting until it listens, SIGKILL |
//! | [`bench`] | sandbox entry points measured in isolation, and a bare wasmtime baseline |

#![allow(missing_docs)]

pub mod client;
pub mod local_server;
pub mod oci_registry;
pub mod redis_server;

pub use tamma_sandbox::bench_support as bench;
