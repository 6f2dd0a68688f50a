//! [`ProviderHandle`], the way calls reach a registered provider, and
//! [`ProviderStream`], a streamed completion through it.
//!
//! Every call goes through [`ProviderHandle::call`]: take the ready instance
//! (one atomic load of the entry's state) and a circuit-breaker permit, run the
//! call, and retry once if the instance was swapped out under it. Outcomes are
//! recorded in the provider's statistics, reported as `provider-error` events
//! when the provider is at fault, and settled with the breaker.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::entry::{not_found, Entry, ProviderSnapshot, ProviderState};
use super::monitor;
use super::shared::Shared;
use crate::circuit_breaker::Permit;
use crate::events::Event;
use crate::health::HealthCheck;
use tamma_sandbox::error::{Error, ErrorCode, Result};
use tamma_sandbox::provider::{CompletionStream, ProviderInstance};
use tamma_sandbox::types::{
    Capabilities, CompletionRequest, CompletionResponse, EmbeddingRequest, EmbeddingResponse,
    ModelInfo, StreamChunk,
};

/// A handle to one registered provider. Calls through it are guarded by the
/// provider's circuit breaker and recorded for health and metrics. Cheap to
/// clone; it keeps working across `replace` and `restart`, and answers
/// `NOT_FOUND` once the provider is unregistered.
#[derive(Clone)]
pub struct ProviderHandle {
    shared: Arc<Shared>,
    entry: Arc<Entry>,
}

impl std::fmt::Debug for ProviderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderHandle")
            .field("name", &self.entry.name)
            .finish()
    }
}

/// A call that ran and returned a value, with the permit it ran under, still
/// to be settled (at once for whole answers, at the end for streams).
struct Called<T> {
    value: T,
    permit: Permit,
    started: Instant,
}

/// How a call's outcome counts for the circuit breaker.
fn breaker_outcome(permit: Permit, result: &std::result::Result<(), &Error>) {
    match result {
        Ok(()) => permit.success(),
        Err(e) if e.is_provider_failure() => permit.failure(),
        // The caller's own mistake, or the runtime refusing (overload, stop):
        // neither success nor failure of the provider.
        Err(_) => drop(permit),
    }
}

impl ProviderHandle {
    pub(crate) fn new(shared: Arc<Shared>, entry: Arc<Entry>) -> Self {
        ProviderHandle { shared, entry }
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Its current state.
    pub fn state(&self) -> ProviderState {
        self.entry.load().lifecycle
    }

    /// Its snapshot.
    pub fn snapshot(&self) -> ProviderSnapshot {
        self.entry.snapshot()
    }

    /// Capabilities, as read at the last (re)initialization (shared, not copied).
    pub fn capabilities(&self) -> Arc<Capabilities> {
        self.entry.load().capabilities.clone()
    }

    /// Calls running or queued on its instance pool now (0 when it has none).
    /// No lock: the router reads it for every request of a `least-busy` route.
    pub fn in_flight(&self) -> u64 {
        self.entry
            .load()
            .current
            .as_ref()
            .map_or(0, |i| i.in_flight())
    }

    /// The moving average of its recent successful call latency (streams:
    /// until their end); `None` before its first success.
    pub fn latency_ewma(&self) -> Option<std::time::Duration> {
        self.entry.stats.latency_ewma()
    }

    /// Whether its circuit is open now (calls are refused until the recovery
    /// timeout admits a probe).
    pub fn circuit_open(&self) -> bool {
        self.entry.breaker.state() == crate::circuit_breaker::CircuitState::Open
    }

    /// The context window of `model` as its capabilities advertise it; `None`
    /// when the provider does not list the model.
    pub fn context_window(&self, model: &str) -> Option<u32> {
        self.entry
            .load()
            .capabilities
            .models
            .iter()
            .find(|m| m.id == model)
            .map(|m| m.context_window)
    }

    /// Run a health check now (see [`Registry::check_health`](super::Registry::check_health)).
    pub async fn health_check(&self) -> Result<HealthCheck> {
        if self.entry.is_removed() {
            return Err(not_found(self.name()));
        }
        Ok(monitor::check(&self.shared, &self.entry).await)
    }

    /// Produce a whole completion.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<CompletionResponse> {
        let c = self
            .call("complete", |inst| async move { inst.complete(req).await })
            .await?;
        self.record("complete", c.started, c.permit, Ok(()));
        Ok(c.value)
    }

    /// Embed the request's inputs, with the same guarantees as `complete` (breaker,
    /// statistics, swap retry; fuel, deadline and pool in the sandbox). A provider
    /// that does not export embeddings answers `UNSUPPORTED` without a breaker
    /// permit: asking it is the caller's mistake, not the provider's failure.
    pub async fn embed(&self, req: &EmbeddingRequest) -> Result<EmbeddingResponse> {
        if !self.ready_instance()?.capabilities().embeddings {
            return Err(tamma_sandbox::error::Error::new(
                ErrorCode::Unsupported,
                "the provider does not export tamma:provider/embeddings (it serves chat only)",
            )
            .with_provider(self.name()));
        }
        let c = self
            .call("embed", |inst| async move { inst.embed(req).await })
            .await?;
        self.record("embed", c.started, c.permit, Ok(()));
        Ok(c.value)
    }

    /// The models the provider serves now.
    pub async fn list_models(&self) -> Result<Vec<ModelInfo>> {
        let c = self
            .call(
                "list_models",
                |inst| async move { inst.list_models().await },
            )
            .await?;
        self.record("list_models", c.started, c.permit, Ok(()));
        Ok(c.value)
    }

    /// Start a streamed completion. The breaker records its outcome when it ends.
    pub async fn stream(&self, req: &CompletionRequest) -> Result<ProviderStream> {
        let c = self
            .call("stream", |inst| async move { inst.stream(req).await })
            .await?;
        Ok(ProviderStream {
            inner: c.value,
            handle: self.clone(),
            permit: Some(c.permit),
            started: c.started,
        })
    }

    /// The running instance, or why there is none.
    fn ready_instance(&self) -> Result<ProviderInstance> {
        self.shared.check_open()?;
        self.entry.load().ready(self.name()).cloned()
    }

    fn acquire(&self) -> Result<Permit> {
        self.entry.breaker.try_acquire().map_err(|r| {
            Error::new(
                ErrorCode::CircuitOpen,
                format!("circuit breaker is {}", r.state.as_str()),
            )
            .with_provider(self.name())
            .with_retry_after(r.retry_after)
        })
    }

    /// Run `call` on the ready instance under a breaker permit. If the instance
    /// was disposed under the call because it was swapped out (hot reload,
    /// restart), run it once more on the new one, so a swap never fails a call.
    /// Errors are recorded here (a refusal before the call ran is not); a value
    /// comes back with its permit for the caller to settle.
    async fn call<T, F, Fut>(&self, op: &'static str, mut call: F) -> Result<Called<T>>
    where
        F: FnMut(ProviderInstance) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut retried = false;
        loop {
            let inst = self.ready_instance()?;
            let permit = self.acquire()?;
            let started = Instant::now();
            match call(inst.clone()).await {
                Ok(value) => {
                    return Ok(Called {
                        value,
                        permit,
                        started,
                    })
                }
                Err(e) if inst.is_disposed() && e.code == ErrorCode::ProviderStopped => {
                    // Cut off by a swap, stop or unregister: not the provider's
                    // doing, so neither recorded nor counted by the breaker.
                    drop(permit);
                    let state = self.entry.load();
                    if state.removed {
                        return Err(not_found(self.name()));
                    }
                    let swapped = state.current.as_ref().is_some_and(|c| !c.same_as(&inst));
                    if swapped && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(e);
                }
                Err(e) => {
                    self.record(op, started, permit, Err(&e));
                    return Err(e);
                }
            }
        }
    }

    /// Count a finished call in the statistics, report a provider failure, and
    /// settle its permit.
    fn record(
        &self,
        op: &'static str,
        started: Instant,
        permit: Permit,
        result: std::result::Result<(), &Error>,
    ) {
        let elapsed = started.elapsed();
        self.entry
            .stats
            .record(elapsed, result.err().map(|e| e.code));
        if result.is_ok() {
            self.entry.stats.observe_success_latency(elapsed);
        }
        if let Err(e) = result {
            if e.is_provider_failure() {
                tracing::warn!(provider = %self.name(), op, code = %e.code, "provider call failed");
                self.shared.emit(Event::ProviderError {
                    provider: self.name().to_string(),
                    code: e.code.as_str().to_string(),
                    message: e.message.clone(),
                });
            }
        }
        breaker_outcome(permit, &result);
    }
}

/// A streamed completion through the registry; records its outcome for the
/// circuit breaker and statistics when it ends. Dropping it early counts as
/// neither success nor failure.
pub struct ProviderStream {
    inner: CompletionStream,
    handle: ProviderHandle,
    permit: Option<Permit>,
    started: Instant,
}

impl ProviderStream {
    /// The next chunk, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<StreamChunk>> {
        let r = self.inner.next().await;
        let outcome = match &r {
            Ok(Some(_)) => None,
            Ok(None) => Some(Ok(())),
            Err(e) => Some(Err(e)),
        };
        if let Some(outcome) = outcome {
            if let Some(p) = self.permit.take() {
                self.handle.record("stream", self.started, p, outcome);
            }
        }
        r
    }

    /// The provider's name.
    pub fn provider(&self) -> &str {
        self.handle.name()
    }
}
