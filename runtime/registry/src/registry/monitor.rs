//! Health checks and periodic health monitoring of registered providers.
//!
//! A check runs the guest's `health-check` in the sandbox with the configured
//! timeout, on an idle instance or a dedicated probe instance — never queued behind
//! traffic, and counted apart from it. Monitoring runs one task per provider,
//! sleeping the interval plus jitter between checks; `health-status-changed` is
//! emitted only when the debounced status flips. Stopping monitoring aborts and
//! awaits the tasks, so none is left behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::task::JoinHandle;

use crate::events::Event;
use crate::health::HealthCheck;
use crate::registry::{ProviderState, Registry};
use tamma_sandbox::error::{Error, ErrorCode, Result};

/// The running monitor tasks.
#[derive(Default)]
pub(crate) struct Monitors {
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
    /// When set, newly registered providers are monitored too.
    all: AtomicBool,
}

impl Monitors {
    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn all_enabled(&self) -> bool {
        self.all.load(Ordering::Acquire)
    }

    /// Stop one provider's monitor and wait until its task has ended.
    pub(crate) async fn stop(&self, name: &str) {
        let task = self.tasks().remove(name);
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }

    async fn stop_all(&self) {
        self.all.store(false, Ordering::Release);
        let tasks: Vec<JoinHandle<()>> = self.tasks().drain().map(|(_, t)| t).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    /// Names being monitored.
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tasks().keys().cloned().collect();
        v.sort();
        v
    }
}

/// A small, fast pseudo-random source for jitter (not for anything secret).
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl Registry {
    /// Run one health check of a provider now: record it, and emit
    /// `health-status-changed` if the status flips.
    pub async fn check_health(&self, name: &str) -> Result<HealthCheck> {
        let entry = self.entry(name)?;
        let timeout = self.inner.config.health.timeout();
        let started = Instant::now();
        let result = match (entry.state(), entry.current()) {
            (ProviderState::Ready, Some(inst)) => inst.health_check(timeout).await,
            (state, _) => Err(Error::new(
                ErrorCode::ProviderStopped,
                format!("provider is {}", state.as_str()),
            )),
        };
        let check = HealthCheck::from_result(result, started.elapsed());
        let h = &self.inner.config.health;
        let flipped = entry
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(check.clone(), h.healthy_threshold, h.unhealthy_threshold);
        if let Some((from, to)) = flipped {
            tracing::info!(provider = %name, from = from.as_str(), to = to.as_str(), "health status changed");
            self.emit(Event::HealthStatusChanged {
                provider: name.to_string(),
                from: from.as_str().into(),
                to: to.as_str().into(),
                message: check.message.clone(),
            });
        }
        Ok(check)
    }

    /// Monitor one provider (no-op if it already is).
    pub fn start_monitoring(&self, name: &str) -> Result<()> {
        self.entry(name)?;
        let mut tasks = self.inner.monitors.tasks();
        // Checked under the tasks lock, which shutdown's stop_monitoring_all also
        // takes: no monitor can start after shutdown stopped them all.
        self.check_open()?;
        if tasks.get(name).is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        let registry = self.clone();
        let provider = name.to_string();
        let task = tokio::spawn(async move { registry.monitor_loop(provider).await });
        tasks.insert(name.to_string(), task);
        Ok(())
    }

    /// Monitor every provider, including those registered later.
    pub fn start_monitoring_all(&self) {
        self.inner.monitors.all.store(true, Ordering::Release);
        for name in self.names() {
            let _ = self.start_monitoring(&name);
        }
    }

    /// Stop monitoring one provider; its task has ended when this returns.
    pub async fn stop_monitoring(&self, name: &str) {
        self.inner.monitors.stop(name).await;
    }

    /// Stop all monitoring; every task has ended when this returns.
    pub async fn stop_monitoring_all(&self) {
        self.inner.monitors.stop_all().await;
    }

    /// Names of the providers being monitored.
    pub fn monitored(&self) -> Vec<String> {
        self.inner.monitors.names()
    }

    async fn monitor_loop(self, name: String) {
        let h = self.inner.config.health.clone();
        loop {
            let spread = h.interval().mul_f64(h.jitter * jitter_fraction());
            tokio::time::sleep(h.interval() + spread).await;
            match self.check_health(&name).await {
                Ok(_) => {}
                // Unregistered: the monitor ends with its provider.
                Err(e) if e.code == ErrorCode::NotFound => return,
                Err(e) => tracing::debug!(provider = %name, error = %e, "health check not run"),
            }
        }
    }
}
