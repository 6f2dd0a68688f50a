//! Health checks and periodic health monitoring of registered providers.
//!
//! A check runs the guest's `health-check` in the sandbox with the configured
//! timeout, on an idle instance or a dedicated probe instance — never queued behind
//! traffic, and counted apart from it. Monitoring runs one task per provider,
//! sleeping the interval plus jitter between checks; `health-status-changed` is
//! emitted only when the debounced status flips. Stopping monitoring aborts and
//! awaits the tasks, so none is left behind.
//!
//! This module works on entries and knows nothing of the
//! [`Registry`](super::Registry): the registry finds the entry by name and
//! hands it here, and a monitor task holds its entry, ending once the entry is
//! unregistered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::task::JoinHandle;

use super::entry::Entry;
use super::shared::Shared;
use crate::events::Event;
use crate::health::HealthCheck;
use tamma_sandbox::error::Result;

/// Run one health check of `entry` now: record it, and emit
/// `health-status-changed` if the status flips.
pub(crate) async fn check(shared: &Shared, entry: &Entry) -> HealthCheck {
    let h = &shared.config.health;
    let started = Instant::now();
    let instance = entry.load().ready(&entry.name).cloned();
    let result = match instance {
        Ok(inst) => inst.health_check(h.timeout()).await,
        Err(e) => Err(e),
    };
    let check = HealthCheck::from_result(result, started.elapsed());
    let flipped = entry.observe_health(check.clone(), h.healthy_threshold, h.unhealthy_threshold);
    if let Some((from, to)) = flipped {
        tracing::info!(provider = %entry.name, from = from.as_str(), to = to.as_str(), "health status changed");
        shared.emit(Event::HealthStatusChanged {
            provider: entry.name.clone(),
            from: from.as_str().into(),
            to: to.as_str().into(),
            message: check.message.clone(),
        });
    }
    check
}

/// Check `entry` every interval (plus jitter) until it is unregistered.
async fn watch(shared: Arc<Shared>, entry: Arc<Entry>) {
    let h = shared.config.health.clone();
    loop {
        let spread = h.interval().mul_f64(h.jitter * fastrand::f64());
        tokio::time::sleep(h.interval() + spread).await;
        if entry.is_removed() {
            return;
        }
        check(&shared, &entry).await;
    }
}

/// One provider's monitor task, and the entry it watches (a provider
/// registered again under the same name is a different entry).
struct Watch {
    entry: Arc<Entry>,
    task: JoinHandle<()>,
}

impl Watch {
    async fn end(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The running monitor tasks, by provider name.
#[derive(Default)]
pub(crate) struct Monitors {
    tasks: Mutex<HashMap<String, Watch>>,
    /// When set, newly registered providers are monitored too.
    all: AtomicBool,
}

impl Monitors {
    fn tasks(&self) -> MutexGuard<'_, HashMap<String, Watch>> {
        // Map operations only, in single statements: a poisoned lock is still usable.
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether every provider, including those registered later, is monitored.
    pub(crate) fn all_enabled(&self) -> bool {
        self.all.load(Ordering::Acquire)
    }

    /// Monitor providers registered from now on too.
    pub(crate) fn enable_all(&self) {
        self.all.store(true, Ordering::Release);
    }

    /// Monitor `entry` (no-op if it already is).
    pub(crate) fn start(&self, shared: &Arc<Shared>, entry: &Arc<Entry>) -> Result<()> {
        let mut tasks = self.tasks();
        // Checked under the tasks lock, which `stop_all` (run by shutdown after it
        // set the flag) also takes: no monitor can start after shutdown stopped
        // them all.
        shared.check_open()?;
        if let Some(w) = tasks.get(&entry.name) {
            if Arc::ptr_eq(&w.entry, entry) && !w.task.is_finished() {
                return Ok(());
            }
        }
        let task = tokio::spawn(watch(shared.clone(), entry.clone()));
        let old = tasks.insert(
            entry.name.clone(),
            Watch {
                entry: entry.clone(),
                task,
            },
        );
        if let Some(old) = old {
            // A finished task, or the watch of an unregistered namesake.
            old.task.abort();
        }
        Ok(())
    }

    /// Stop one provider's monitor; its task has ended when this returns.
    pub(crate) async fn stop(&self, name: &str) {
        let watch = self.tasks().remove(name);
        if let Some(w) = watch {
            w.end().await;
        }
    }

    /// Stop the monitor of `entry` only, not that of a namesake registered
    /// since; its task has ended when this returns.
    pub(crate) async fn stop_entry(&self, entry: &Arc<Entry>) {
        let watch = {
            let mut tasks = self.tasks();
            match tasks.get(&entry.name) {
                Some(w) if Arc::ptr_eq(&w.entry, entry) => tasks.remove(&entry.name),
                _ => None,
            }
        };
        if let Some(w) = watch {
            w.end().await;
        }
    }

    /// Stop every monitor, and stop monitoring new providers; every task has
    /// ended when this returns.
    pub(crate) async fn stop_all(&self) {
        self.all.store(false, Ordering::Release);
        let watches: Vec<Watch> = self.tasks().drain().map(|(_, w)| w).collect();
        for w in watches {
            w.end().await;
        }
    }

    /// Names being monitored, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tasks().keys().cloned().collect();
        v.sort();
        v
    }
}
