//! Lifecycle of registered providers — initialize, start, stop, restart, dispose,
//! for one provider and for all — and the registry's graceful shutdown.
//!
//! Operations on one provider are serialised by its lifecycle lock, so a restart
//! racing an unregister cannot leave an instance behind. A stopped provider keeps
//! its registration and answers `PROVIDER_STOPPED`; `start` and `restart` create
//! fresh instances from the stored component and re-initialize them.
//!
//! Each transition is one swap of the provider's state (rule 4 of the registry),
//! so stopping refuses new calls and takes the instance away in the same step.
//! Shutdown waits for a provider's lifecycle lock only up to its dispose timeout
//! and then halts it regardless; the state's read-copy-update keeps such an
//! unserialised write from losing, or being lost by, a concurrent one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::entry::{not_found, Entry, ProviderState};
use super::Registry;
use crate::events::Event;
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

    async fn initialize_locked(&self, entry: &Entry) -> Result<()> {
        self.check_open()?;
        let template = {
            let state = entry.load();
            if state.removed {
                return Err(not_found(&entry.name));
            }
            if state.lifecycle == ProviderState::Ready && state.current.is_some() {
                return Ok(());
            }
            state.template.clone()
        };
        entry.set_lifecycle(ProviderState::Initializing);
        let made = self
            .shared()
            .sandbox
            .instantiate_with(&entry.name, &template.component, template.settings.clone())
            .await;
        match made {
            Ok(inst) => {
                // Shutdown or unregister may have run while we were initializing
                // (shutdown does not wait forever for this lock): do not revive it.
                let open = self.check_open().and_then(|()| {
                    if entry.is_removed() {
                        Err(not_found(&entry.name))
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = open {
                    inst.dispose(inst.limits().dispose_timeout()).await;
                    return Err(e);
                }
                if let Some(old) = entry.put_instance(inst) {
                    // Not expected (only a ready provider has an instance), but an
                    // instance displaced is never left undisposed.
                    old.dispose(old.limits().dispose_timeout()).await;
                }
                Ok(())
            }
            Err(e) => {
                entry.set_lifecycle(ProviderState::Error);
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
        Ok(entry.halt(to).await)
    }

    /// Stop, then start with fresh instances, re-initialized; the circuit breaker
    /// starts closed again.
    pub async fn restart(&self, name: &str) -> Result<()> {
        let entry = self.entry(name)?;
        let _g = entry.lifecycle.lock().await;
        entry.halt(ProviderState::Stopped).await;
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
        self.shutdown_within(self.config().lifecycle.shutdown_timeout())
            .await
    }

    /// Stop health monitoring, refuse new calls, let running calls finish, and
    /// dispose every provider in parallel — each bounded by its dispose timeout,
    /// the whole by `timeout`. A guest that hangs is cut off by the sandbox, and
    /// this returns in time regardless, reporting which providers were forced.
    pub async fn shutdown_within(&self, timeout: Duration) -> ShutdownReport {
        let started = Instant::now();
        self.shared().begin_shutdown();
        self.stop_monitoring_all().await;
        let entries = self.entries();
        let finished: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
        let mut set = tokio::task::JoinSet::new();
        for entry in entries.iter().cloned() {
            let dispose_bound = self.config().lifecycle.dispose_timeout();
            let finished = finished.clone();
            set.spawn(async move {
                // A lifecycle operation stuck on this provider must not hold up
                // the shutdown: take the lock if it comes within the dispose time.
                let wait = entry
                    .load()
                    .template
                    .settings
                    .limits
                    .dispose_timeout()
                    .min(dispose_bound);
                let _g = tokio::time::timeout(wait, entry.lifecycle.lock())
                    .await
                    .ok();
                let clean = entry.halt(ProviderState::Disposed).await;
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
        self.shared().is_shutting_down()
    }
}
