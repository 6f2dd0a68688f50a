//! Lifecycle of registered providers — initialize, start, stop, restart, dispose,
//! for one provider and for all — and the registry's graceful shutdown.
//!
//! Operations on one provider are serialised by its lifecycle lock, so a restart
//! racing an unregister cannot leave an instance behind. A stopped provider keeps
//! its registration and answers `PROVIDER_STOPPED`; `start` and `restart` create
//! fresh instances from the stored component and re-initialize them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::events::Event;
use crate::registry::{Entry, ProviderState, Registry};
use tamma_sandbox::error::Result;

/// What a graceful shutdown did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ShutdownReport {
    /// Providers whose running calls finished and whose instances were disposed.
    pub clean: Vec<String>,
    /// Providers that had to be cut off (a call or `dispose` hung past its
    /// timeout, or the shutdown timeout ran out).
    pub forced: Vec<String>,
    /// How long the shutdown took, ms.
    pub elapsed_ms: u64,
}

impl Registry {
    /// Create and initialize the provider's instances if it has none (state
    /// `stopped`, `error` or `disposed`); a no-op when it is ready.
    pub async fn initialize(&self, name: &str) -> Result<()> {
        let entry = self.entry(name)?;
        let _g = entry.lifecycle.lock().await;
        self.initialize_locked(&entry).await
    }

    async fn initialize_locked(&self, entry: &Arc<Entry>) -> Result<()> {
        self.check_open()?;
        if entry.is_removed() {
            return Err(crate::registry::not_found(&entry.name));
        }
        if entry.state() == ProviderState::Ready && entry.current().is_some() {
            return Ok(());
        }
        self.set_state(entry, ProviderState::Initializing);
        let (component, settings) = entry.template();
        match self
            .inner
            .sandbox
            .instantiate_with(&entry.name, &component, settings)
            .await
        {
            Ok(inst) => {
                // Shutdown or unregister may have run while we were initializing
                // (shutdown does not wait forever for this lock): do not revive it.
                if let Err(e) = self.check_open().and_then(|()| {
                    if entry.is_removed() {
                        Err(crate::registry::not_found(&entry.name))
                    } else {
                        Ok(())
                    }
                }) {
                    inst.dispose(inst.limits().dispose_timeout()).await;
                    return Err(e);
                }
                entry.set_current(Some(inst));
                self.set_state(entry, ProviderState::Ready);
                Ok(())
            }
            Err(e) => {
                self.set_state(entry, ProviderState::Error);
                self.emit(Event::ProviderError {
                    provider: entry.name.clone(),
                    code: e.code.as_str().into(),
                    message: e.message.clone(),
                });
                Err(e)
            }
        }
    }

    /// Make a stopped, failed or disposed provider serve again.
    pub async fn start(&self, name: &str) -> Result<()> {
        self.initialize(name).await
    }

    /// Stop serving: new calls get `PROVIDER_STOPPED`, running calls finish (up to
    /// the dispose timeout), instances are disposed. Returns whether it was clean.
    pub async fn stop(&self, name: &str) -> Result<bool> {
        self.halt(name, ProviderState::Stopped).await
    }

    /// Dispose the provider's instances; it stays registered in state `disposed`.
    pub async fn dispose(&self, name: &str) -> Result<bool> {
        self.halt(name, ProviderState::Disposed).await
    }

    async fn halt(&self, name: &str, to: ProviderState) -> Result<bool> {
        let entry = self.entry(name)?;
        let _g = entry.lifecycle.lock().await;
        Ok(self.halt_locked(&entry, to).await)
    }

    async fn halt_locked(&self, entry: &Arc<Entry>, to: ProviderState) -> bool {
        // State first: new calls are refused before the instances go away.
        self.set_state(entry, to);
        match entry.set_current(None) {
            Some(inst) => inst.dispose(inst.limits().dispose_timeout()).await,
            None => true,
        }
    }

    /// Stop, then start with fresh instances, re-initialized; the circuit breaker
    /// starts closed again.
    pub async fn restart(&self, name: &str) -> Result<()> {
        let entry = self.entry(name)?;
        let _g = entry.lifecycle.lock().await;
        self.halt_locked(&entry, ProviderState::Stopped).await;
        entry.breaker.reset();
        self.initialize_locked(&entry).await
    }

    async fn for_all<F, Fut, T>(&self, op: F) -> Vec<(String, Result<T>)>
    where
        F: Fn(Registry, String) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let mut set = tokio::task::JoinSet::new();
        for name in self.names() {
            let fut = op(self.clone(), name.clone());
            set.spawn(async move { (name, fut.await) });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(pair) = r {
                out.push(pair);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// [`Registry::initialize`] every provider, in parallel.
    pub async fn initialize_all(&self) -> Vec<(String, Result<()>)> {
        self.for_all(|r, n| async move { r.initialize(&n).await })
            .await
    }
    /// [`Registry::start`] every provider, in parallel.
    pub async fn start_all(&self) -> Vec<(String, Result<()>)> {
        self.for_all(|r, n| async move { r.start(&n).await }).await
    }
    /// [`Registry::stop`] every provider, in parallel.
    pub async fn stop_all(&self) -> Vec<(String, Result<bool>)> {
        self.for_all(|r, n| async move { r.stop(&n).await }).await
    }
    /// [`Registry::restart`] every provider, in parallel.
    pub async fn restart_all(&self) -> Vec<(String, Result<()>)> {
        self.for_all(|r, n| async move { r.restart(&n).await })
            .await
    }
    /// [`Registry::dispose`] every provider, in parallel.
    pub async fn dispose_all(&self) -> Vec<(String, Result<bool>)> {
        self.for_all(|r, n| async move { r.dispose(&n).await })
            .await
    }

    /// Graceful shutdown within the configured shutdown timeout.
    pub async fn shutdown(&self) -> ShutdownReport {
        self.shutdown_within(self.inner.config.lifecycle.shutdown_timeout())
            .await
    }

    /// Stop health monitoring, refuse new calls, let running calls finish, and
    /// dispose every provider in parallel — each bounded by its dispose timeout,
    /// the whole by `timeout`. A guest that hangs is cut off by the sandbox, and
    /// this returns in time regardless, reporting which providers were forced.
    pub async fn shutdown_within(&self, timeout: Duration) -> ShutdownReport {
        let started = Instant::now();
        self.inner.shutting_down.store(true, Ordering::Release);
        self.stop_monitoring_all().await;
        let entries = self.entries();
        let finished: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
        let mut set = tokio::task::JoinSet::new();
        for entry in entries.iter().cloned() {
            let registry = self.clone();
            let finished = finished.clone();
            set.spawn(async move {
                // A lifecycle operation stuck on this provider must not hold up
                // the shutdown: take the lock if it comes within the dispose time.
                let wait = entry
                    .template()
                    .1
                    .limits
                    .dispose_timeout()
                    .min(registry.inner.config.lifecycle.dispose_timeout());
                let _g = tokio::time::timeout(wait, entry.lifecycle.lock())
                    .await
                    .ok();
                let clean = registry.halt_locked(&entry, ProviderState::Disposed).await;
                finished
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((entry.name.clone(), clean));
            });
        }
        let all_done = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(timeout.saturating_sub(started.elapsed()), all_done)
            .await
            .is_err()
        {
            set.abort_all();
        }
        let finished = finished.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut report = ShutdownReport::default();
        for entry in &entries {
            match finished.iter().find(|(n, _)| *n == entry.name) {
                Some((n, true)) => report.clean.push(n.clone()),
                _ => report.forced.push(entry.name.clone()),
            }
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            clean = report.clean.len(),
            forced = report.forced.len(),
            elapsed_ms = report.elapsed_ms,
            "registry shut down"
        );
        report
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }
}
