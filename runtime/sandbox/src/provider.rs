//! A loaded, initialized provider: the handle callers use to run completions.
//!
//! [`ProviderInstance`] is cheap to clone and safe to share between tasks; each call
//! borrows an instance from the provider's pool for its duration. Every call runs
//! in a `tracing` span named for the operation with the provider's name.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use wasmtime::component::ResourceAny;

use crate::component::LoadedComponent;
use crate::error::{Error, Result};
use crate::instance::too_large;
use crate::limits::Limits;
use crate::pool::{InstancePool, Lease, PoolStats};
use crate::settings::ProviderSettings;
use crate::types::{
    Capabilities, CompletionRequest, CompletionResponse, EmbeddingRequest, EmbeddingResponse,
    Health, ModelInfo, StreamChunk,
};

/// A provider running in the sandbox.
#[derive(Clone)]
pub struct ProviderInstance {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Arc<InstancePool>,
    capabilities: Capabilities,
    component: LoadedComponent,
}

impl std::fmt::Debug for ProviderInstance {
    // Configuration values are deliberately absent: they may hold secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderInstance")
            .field("name", &self.name())
            .field("sha256", &self.inner.component.sha256)
            .finish_non_exhaustive()
    }
}

impl ProviderInstance {
    pub(crate) fn new(
        pool: Arc<InstancePool>,
        capabilities: Capabilities,
        component: LoadedComponent,
    ) -> Self {
        ProviderInstance {
            inner: Arc::new(Inner {
                pool,
                capabilities,
                component,
            }),
        }
    }

    /// The component it runs (to create fresh instances on restart).
    pub fn component(&self) -> &LoadedComponent {
        &self.inner.component
    }

    /// Its settings.
    pub fn settings(&self) -> &ProviderSettings {
        &self.inner.pool.settings
    }

    /// Whether two handles refer to the same running provider (not a replacement).
    pub fn same_as(&self, other: &ProviderInstance) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.inner.pool.name
    }

    /// Capabilities read at load time.
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// SHA-256 of the component.
    pub fn component_sha256(&self) -> &str {
        &self.inner.component.sha256
    }

    /// The sandbox limits in force.
    pub fn limits(&self) -> &Limits {
        self.inner.pool.limits()
    }

    /// Pool counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pool.stats()
    }

    /// Calls running or queued for an instance now (cheap: no lock).
    pub fn in_flight(&self) -> u64 {
        self.inner.pool.in_flight()
    }

    fn tag(&self, e: Error) -> Error {
        e.with_provider(self.name())
    }

    async fn lease(&self) -> Result<Lease> {
        self.inner.pool.acquire().await.map_err(|e| self.tag(e))
    }

    /// Produce a whole completion.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<CompletionResponse> {
        let span = call_span(self.name(), "complete");
        async {
            let mut lease = self.lease().await?;
            let out = lease
                .instance()
                .complete(req)
                .await
                .map_err(|e| self.tag(e));
            record_fuel(lease.instance().last_fuel_used);
            out
        }
        .instrument(span)
        .await
    }

    /// Embed the request's inputs. A provider without the `embeddings` export
    /// answers `UNSUPPORTED` before any instance is taken from the pool.
    pub async fn embed(&self, req: &EmbeddingRequest) -> Result<EmbeddingResponse> {
        if !self.inner.capabilities.embeddings {
            return Err(self.tag(crate::instance::unsupported_embeddings()));
        }
        let span = call_span(self.name(), "embed");
        async {
            let mut lease = self.lease().await?;
            let out = lease.instance().embed(req).await.map_err(|e| self.tag(e));
            record_fuel(lease.instance().last_fuel_used);
            out
        }
        .instrument(span)
        .await
    }

    /// Start a streamed completion. The stream holds one instance until it ends.
    pub async fn stream(&self, req: &CompletionRequest) -> Result<CompletionStream> {
        let span = call_span(self.name(), "stream");
        async {
            let mut lease = self.lease().await?;
            let started = lease.instance().stream_start(req).await;
            record_fuel(lease.instance().last_fuel_used);
            let handle = started.map_err(|e| self.tag(e))?;
            Ok(CompletionStream {
                lease: Some(lease),
                handle,
                bytes: 0,
                in_call: false,
                provider: self.clone(),
                span: tracing::Span::current(),
            })
        }
        .instrument(span)
        .await
    }

    /// The models the provider serves now.
    pub async fn list_models(&self) -> Result<Vec<ModelInfo>> {
        let span =
            tracing::debug_span!("provider_call", provider = %self.name(), op = "list_models");
        async {
            let mut lease = self.lease().await?;
            lease
                .instance()
                .list_models()
                .await
                .map_err(|e| self.tag(e))
        }
        .instrument(span)
        .await
    }

    /// Ask the guest for its health, bounded by `timeout`. Never waits for a
    /// traffic slot: it uses an idle instance or a dedicated probe instance.
    pub async fn health_check(&self, timeout: Duration) -> Result<Health> {
        let span =
            tracing::debug_span!("provider_call", provider = %self.name(), op = "health_check");
        self.inner
            .pool
            .health_check(timeout)
            .instrument(span)
            .await
            .map_err(|e| self.tag(e))
    }

    /// Refuse new calls, let running ones finish (up to `wait`), then call `dispose`
    /// on every instance. Returns true when everything stopped cleanly.
    pub async fn dispose(&self, wait: Duration) -> bool {
        let span = tracing::debug_span!("provider_call", provider = %self.name(), op = "dispose");
        self.inner.pool.close(wait).instrument(span).await
    }

    /// Whether `dispose` has started.
    pub fn is_disposed(&self) -> bool {
        self.inner.pool.is_closed()
    }
}

/// The span of one guest call: a child of the caller's (a request's, in the
/// gateway), with the instance (`reused` or `new`, recorded by the pool) and the
/// fuel the call burnt. DEBUG: enabled when traces are exported or TAMMA_LOG asks.
fn call_span(provider: &str, op: &'static str) -> tracing::Span {
    tracing::debug_span!(
        "provider_call",
        provider,
        op,
        instance = tracing::field::Empty,
    )
}

/// The fuel of the call just made, on the current (call) span, as an
/// OpenTelemetry integer (a `tracing` field recorded on a started span would be
/// exported as text).
fn record_fuel(fuel: u64) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.set_attribute("fuel_used", i64::try_from(fuel).unwrap_or(i64::MAX));
    }
}

/// A streamed completion in progress. Call [`CompletionStream::next`] until it
/// returns `Ok(None)` or an error.
///
/// Dropped early (the client left), it keeps its instance when no guest code was
/// running — between two `next()` calls the guest is idle, so its stream
/// resource is closed in the background (bounded by `dispose_timeout_ms`) and
/// the instance goes back to the pool. Dropped while a `next()` was cut off
/// mid-call, the instance is retired: its guest stopped at an arbitrary point.
/// Both cases are counted (`PoolStats::streams_left_kept` / `_retired`).
pub struct CompletionStream {
    lease: Option<Lease>,
    handle: ResourceAny,
    bytes: u64,
    /// A `next()` is awaiting the guest (set only across that await).
    in_call: bool,
    provider: ProviderInstance,
    span: tracing::Span,
}

impl CompletionStream {
    /// The next chunk, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<StreamChunk>> {
        let Some(lease) = self.lease.as_mut() else {
            return Ok(None);
        };
        let handle = self.handle;
        self.in_call = true;
        let result = lease
            .instance()
            .stream_next(handle)
            .instrument(self.span.clone())
            .await;
        self.in_call = false;
        match result {
            Ok(Some(chunk)) => {
                self.bytes += chunk.payload_bytes() as u64;
                let cap = lease.instance().limits().max_response_bytes;
                if self.bytes > cap {
                    lease.instance().retire();
                    self.lease = None;
                    return Err(self.provider.tag(too_large(self.bytes, cap)));
                }
                Ok(Some(chunk))
            }
            Ok(None) => {
                self.finish().await;
                Ok(None)
            }
            Err(e) => {
                if !e.retires_instance() {
                    self.finish().await;
                }
                self.lease = None;
                Err(self.provider.tag(e))
            }
        }
    }

    /// Release the guest's stream resource and give the instance back.
    async fn finish(&mut self) {
        if let Some(mut lease) = self.lease.take() {
            // A failure here retires the instance; the caller's result stands.
            let _ = lease.instance().stream_close(self.handle).await;
        }
    }
}

/// A lease whose instance is retired if it is dropped while still held here.
struct RetireOnDrop(Option<Lease>);

impl Drop for RetireOnDrop {
    fn drop(&mut self) {
        if let Some(lease) = self.0.as_mut() {
            lease.instance().retire();
        }
    }
}

impl Drop for CompletionStream {
    fn drop(&mut self) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(rt) if !self.in_call => {
                let handle = self.handle;
                let span = self.span.clone();
                rt.spawn(
                    async move {
                        // Retires the instance if this task is dropped before the
                        // close finished (runtime shutdown): it would be mid-call.
                        let mut closing = RetireOnDrop(Some(lease));
                        if let Some(lease) = closing.0.as_mut() {
                            let within = lease.instance().limits().dispose_timeout();
                            // A failure retires the instance (the guarded call marks it).
                            let closed = lease.instance().stream_close_within(handle, within).await;
                            lease.count_stream_left(closed.is_ok());
                        }
                        drop(closing.0.take());
                    }
                    .instrument(span),
                );
            }
            _ => {
                lease.instance().retire();
                lease.count_stream_left(false);
            }
        }
    }
}
