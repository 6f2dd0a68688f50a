//! Egress policy: the single chokepoint for a provider's outbound HTTP.
//!
//! Every `wasi:http` request a guest sends passes through [`EgressHooks`]. With an
//! empty policy (the default) every request is refused before any connection is
//! made, and the refusal is logged and counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wasmtime_wasi_http::WasiHttpHooks;

/// A provider's egress policy: allowed hosts and the secrets the host substitutes
/// into its requests. Cheap to clone.
#[derive(Clone, Default)]
pub struct EgressPolicy {
    inner: Arc<PolicyInner>,
}

#[derive(Default)]
struct PolicyInner {
    allowed_hosts: Vec<String>,
    secrets: BTreeMap<String, String>,
    refused: AtomicU64,
}

impl EgressPolicy {
    /// A policy allowing `allowed_hosts` (`scheme://host[:port]`, `*.example.com`),
    /// with named secrets.
    pub fn new(allowed_hosts: Vec<String>, secrets: BTreeMap<String, String>) -> Self {
        EgressPolicy {
            inner: Arc::new(PolicyInner {
                allowed_hosts,
                secrets,
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// The allowed hosts.
    pub fn allowed_hosts(&self) -> &[String] {
        &self.inner.allowed_hosts
    }

    /// Names of the secrets (never their values).
    pub fn secret_names(&self) -> Vec<&str> {
        self.inner.secrets.keys().map(String::as_str).collect()
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressPolicy")
            .field("allowed_hosts", &self.inner.allowed_hosts)
            .field("secrets", &self.secret_names())
            .finish()
    }
}

/// The `wasi:http` hooks of one instance.
pub(crate) struct EgressHooks {
    provider: Arc<str>,
    policy: EgressPolicy,
}

impl EgressHooks {
    pub(crate) fn new(provider: Arc<str>, policy: EgressPolicy) -> Self {
        EgressHooks { provider, policy }
    }
}

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        self.policy.inner.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(provider = %self.provider, %authority, "outbound request refused: host not granted");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
