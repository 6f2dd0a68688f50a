//! A provider's bounded pool of instances.
//!
//! At most `max_concurrency` instances of a provider run at once; a semaphore in
//! front of the pool gives back-pressure, and a caller that waits longer than
//! `queue_timeout` gets `OVERLOADED`. Instances are created lazily (instantiate +
//! `initialize`) and reused; a retired one (trap, timeout, cap) is dropped and the
//! next caller gets a fresh one from the `InstancePre`.
//!
//! Hand-written on purpose: generic pools (`deadpool`, `bb8`) are built for
//! connections and decide reuse when an object is returned; here the call
//! decides: an instance whose call trapped, timed out or was cancelled mid-flight
//! is retired before it can be returned (its `Store` is dead or suspect), health
//! checks use a spare probe instance that never takes a traffic slot, and the
//! pool's counters feed the registry's snapshots.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::engine::SandboxEngine;
use crate::error::{Error, ErrorCode, Result};
use crate::exports::ProviderPre;
use crate::instance::{Instance, KillSwitch};
use crate::limits::Limits;
use crate::settings::ProviderSettings;
use crate::types::Health;

/// Counters of one pool, for metrics and snapshots.
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    created: AtomicU64,
    retired: AtomicU64,
    in_use: AtomicU64,
    waiting: AtomicU64,
    overloaded: AtomicU64,
    fuel_used: AtomicU64,
    health_checks: AtomicU64,
}

/// A point-in-time view of a pool.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PoolStats {
    /// Instances created over the pool's life.
    pub created: u64,
    /// Instances discarded after a trap, timeout or cap.
    pub retired: u64,
    /// Instances running a call now.
    pub in_use: u64,
    /// Callers waiting for an instance now.
    pub waiting: u64,
    /// Calls refused with `OVERLOADED`.
    pub overloaded: u64,
    /// Idle instances ready for reuse.
    pub idle: u64,
    /// Fuel burnt by all calls.
    pub fuel_used: u64,
    /// Health checks run (counted apart from traffic).
    pub health_checks: u64,
}

pub(crate) struct InstancePool {
    pub(crate) name: Arc<str>,
    engine: SandboxEngine,
    pre: ProviderPre,
    pub(crate) settings: Arc<ProviderSettings>,
    idle: Mutex<Vec<Instance>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
    kill: Arc<KillSwitch>,
    counters: PoolCounters,
    /// A spare instance for health checks when every pooled one is busy, so a
    /// check never queues behind traffic nor takes a traffic slot.
    probe: tokio::sync::Mutex<Option<Instance>>,
}

impl InstancePool {
    pub(crate) fn new(
        name: Arc<str>,
        engine: SandboxEngine,
        pre: ProviderPre,
        settings: ProviderSettings,
    ) -> Arc<Self> {
        Arc::new(InstancePool {
            permits: Arc::new(Semaphore::new(settings.limits.max_concurrency as usize)),
            name,
            engine,
            pre,
            settings: Arc::new(settings),
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            kill: Arc::new(KillSwitch::default()),
            counters: PoolCounters::default(),
            probe: tokio::sync::Mutex::new(None),
        })
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Instance>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh instance, instantiated and initialized.
    pub(crate) async fn spawn(&self) -> Result<Instance> {
        let mut inst = Instance::instantiate(
            &self.engine,
            &self.pre,
            self.name.clone(),
            self.settings.clone(),
            self.kill.clone(),
        )
        .await?;
        inst.initialize(&self.settings.config).await?;
        self.counters.created.fetch_add(1, Ordering::Relaxed);
        Ok(inst)
    }

    /// Put an instance into the idle list (used to keep the one created at
    /// registration warm); a retired one is dropped and counted.
    pub(crate) fn put_idle(&self, inst: Instance) {
        if inst.retired {
            self.counters.retired.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut idle = self.idle();
        // A closed pool has already disposed its idle instances; a full one has
        // no use for more.
        if !self.is_closed() && idle.len() < self.limits().max_concurrency as usize {
            idle.push(inst);
        }
    }

    /// Run the guest's health check without waiting for capacity: on an idle
    /// instance when one is free, else on the dedicated probe instance.
    pub(crate) async fn health_check(&self, timeout: std::time::Duration) -> Result<Health> {
        if self.is_closed() {
            return Err(Error::new(
                ErrorCode::ProviderStopped,
                "provider is shutting down",
            ));
        }
        self.counters.health_checks.fetch_add(1, Ordering::Relaxed);
        // An idle instance only with a free traffic slot (taken without waiting), so
        // the check neither grows the pool past max_concurrency nor escapes `close`.
        if let Ok(_permit) = self.permits.try_acquire() {
            let idle = self.idle().pop();
            if let Some(mut inst) = idle {
                let r = inst.health_check(timeout).await;
                self.put_idle(inst);
                return r;
            }
        }
        let Ok(mut probe) = self.probe.try_lock() else {
            return Err(Error::new(
                ErrorCode::Overloaded,
                "a health check is already running",
            ));
        };
        if probe.as_ref().is_none_or(|i| i.retired) {
            if probe.take().is_some() {
                self.counters.retired.fetch_add(1, Ordering::Relaxed);
            }
            *probe = Some(self.spawn().await?);
        }
        match probe.as_mut() {
            Some(inst) => inst.health_check(timeout).await,
            None => Err(Error::new(ErrorCode::Internal, "probe instance missing")),
        }
    }

    /// Wait for capacity, then lend an idle instance or a new one.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Lease> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorCode::ProviderStopped,
                "provider is shutting down",
            ));
        }
        // A guard, so a caller that gives up while queued is not counted forever.
        let waiting = Waiting::new(&self.counters.waiting);
        let waited = tokio::time::timeout(
            self.limits().queue_timeout(),
            self.permits.clone().acquire_owned(),
        )
        .await;
        drop(waiting);
        let permit = match waited {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => {
                return Err(Error::new(
                    ErrorCode::ProviderStopped,
                    "provider is shutting down",
                ))
            }
            Err(_) => {
                self.counters.overloaded.fetch_add(1, Ordering::Relaxed);
                return Err(Error::new(
                    ErrorCode::Overloaded,
                    format!(
                        "no instance free within {} ms (max_concurrency {})",
                        self.limits().queue_timeout_ms,
                        self.limits().max_concurrency
                    ),
                ));
            }
        };
        // `close` may have begun while we queued: never spawn into a closed pool.
        if self.is_closed() {
            return Err(Error::new(
                ErrorCode::ProviderStopped,
                "provider is shutting down",
            ));
        }
        let reused = self.idle().pop();
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("instance", if reused.is_some() { "reused" } else { "new" });
        }
        let inst = match reused {
            Some(i) => i,
            None => self.spawn().await?,
        };
        self.counters.in_use.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            inst: Some(inst),
            pool: self.clone(),
            _permit: permit,
        })
    }

    /// Refuse new calls, wait (up to `wait`) for running ones — cutting off those
    /// still running then — and `dispose` every idle instance, each bounded by the
    /// dispose timeout. Returns whether everything stopped cleanly.
    pub(crate) async fn close(&self, wait: std::time::Duration) -> bool {
        self.closed.store(true, Ordering::Release);
        let all = self.limits().max_concurrency;
        let drained = tokio::time::timeout(wait, self.permits.acquire_many(all))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false);
        if !drained {
            tracing::warn!(provider = %self.name, "calls still running at dispose; cutting them off");
            self.kill.trigger();
        }
        self.permits.close();
        let mut instances: Vec<Instance> = std::mem::take(&mut *self.idle());
        if let Ok(mut probe) = self.probe.try_lock() {
            instances.extend(probe.take());
        }
        // Dispose in parallel: each is bounded by the dispose timeout, so the whole
        // step is too.
        let mut set = tokio::task::JoinSet::new();
        for mut inst in instances {
            set.spawn(async move { inst.dispose().await });
        }
        let mut clean = drained;
        while let Some(joined) = set.join_next().await {
            if let Ok(Err(e)) | Err(e) =
                joined.map_err(|j| Error::new(ErrorCode::Internal, j.to_string()))
            {
                tracing::warn!(provider = %self.name, code = %e.code, error = %e.message, "dispose failed");
                clean = false;
            }
        }
        clean
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.settings.limits
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Calls running or waiting for an instance now (two atomic loads, no lock:
    /// read by the router on every request of a `least-busy` route).
    pub(crate) fn in_flight(&self) -> u64 {
        let c = &self.counters;
        c.in_use.load(Ordering::Relaxed) + c.waiting.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let c = &self.counters;
        PoolStats {
            created: c.created.load(Ordering::Relaxed),
            retired: c.retired.load(Ordering::Relaxed),
            in_use: c.in_use.load(Ordering::Relaxed),
            waiting: c.waiting.load(Ordering::Relaxed),
            overloaded: c.overloaded.load(Ordering::Relaxed),
            idle: self.idle().len() as u64,
            fuel_used: c.fuel_used.load(Ordering::Relaxed),
            health_checks: c.health_checks.load(Ordering::Relaxed),
        }
    }
}

/// Counts a queued caller for as long as it exists.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An instance on loan; returned to the pool on drop unless it was retired.
pub(crate) struct Lease {
    inst: Option<Instance>,
    pool: Arc<InstancePool>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    pub(crate) fn instance(&mut self) -> &mut Instance {
        // Always Some until Drop.
        self.inst
            .as_mut()
            .expect("lease holds its instance until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let c = &self.pool.counters;
        c.in_use.fetch_sub(1, Ordering::Relaxed);
        if let Some(mut inst) = self.inst.take() {
            c.fuel_used
                .fetch_add(std::mem::take(&mut inst.fuel_unreported), Ordering::Relaxed);
            self.pool.put_idle(inst);
        }
    }
}
