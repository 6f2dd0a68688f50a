//! The provider registry: the single source of truth for every provider in the
//! process, changed at run time without restarts.
//!
//! Consistency rules, relied on by every other part:
//! 1. A name is *reserved* before a registration starts its slow work (compile,
//!    instantiate, `initialize`), so two concurrent registrations of one name give
//!    exactly one success and one `ALREADY_EXISTS`. A reserved name is invisible to
//!    look-ups and calls: no half-registered provider is ever seen. If registration
//!    fails or its task is cancelled, the reservation is dropped; nothing is left.
//! 2. `unregister` removes the name first (new look-ups get `NOT_FOUND` at once)
//!    and marks the entry removed (handles already held get `NOT_FOUND` too), then
//!    lets running calls finish and disposes the instances.
//! 3. Lifecycle operations on one provider are serialised by its own async lock;
//!    the registry-wide map lock is a `std` lock held only for map operations,
//!    never across an `.await`, so nothing can deadlock on it.
//! 4. Everything a lifecycle operation changes about a provider — lifecycle
//!    state, running instance, template (component and settings), capabilities,
//!    metadata, removed flag — is one immutable value behind an atomic pointer,
//!    replaced whole. A reader takes it with one atomic load (no lock, nothing
//!    copied) and sees one version: a snapshot taken during `replace` shows the
//!    old provider or the new one, never a mix. Every change goes through one
//!    function, which also emits `provider-state-changed`. Health, the circuit
//!    breaker and the call counters describe traffic, not the version, and keep
//!    their own synchronisation.
//! 5. Calls take the ready instance from that one load; if the instance was
//!    replaced (hot reload, restart) between the load and the call, the call is
//!    retried once on the new one, so a swap never fails a call.
//!
//! Files, each using only those listed before it (so no two import each other):
//!
//! | file | what |
//! |---|---|
//! | `registration.rs` | what a caller registers: [`ComponentSource`], [`Origin`], [`Registration`], the name rule |
//! | `models.rs` | the model id → providers index, kept by the entries as their capabilities change |
//! | `shared.rs` | what the registry, its handles and monitor tasks share (sandbox, settings, events, shutdown flag) |
//! | `entry.rs` | one provider: its entry and immutable state; [`ProviderState`], [`ProviderSnapshot`] |
//! | `monitor.rs` | health checks of an entry, and the monitor task set |
//! | `prepare.rs` | settings → load → instantiate → metadata, for `register` and `replace` |
//! | `handle.rs` | [`ProviderHandle`] and [`ProviderStream`]: guarded, recorded calls |
//! | `mod.rs` | the [`Registry`]: the map of names, register/unregister/replace, look-ups, monitoring |
//! | [`lifecycle`] | initialize/start/stop/restart/dispose, and graceful shutdown (extends [`Registry`]) |

mod entry;
mod handle;
pub mod lifecycle;
mod models;
mod monitor;
mod prepare;
mod registration;
mod shared;

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::builtins::Builtins;
use crate::circuit_breaker::{Clock, SystemClock};
use crate::events::{Event, EventBus, Subscription};
use crate::health::HealthCheck;
use crate::registry_config::RegistryConfig;
use entry::{not_found, Entry};
use monitor::Monitors;
use prepare::{Plan, Prepared};
use shared::Shared;
use tamma_sandbox::error::{Error, ErrorCode, Result};
use tamma_sandbox::provider::ProviderInstance;
use tamma_sandbox::sandbox::{LoadedComponent, Sandbox};
use tamma_sandbox::settings::ProviderSettings;
use tamma_sandbox::types::{CompletionRequest, CompletionResponse, ModelInfo};

pub use entry::{ProviderMetadata, ProviderSnapshot, ProviderState};
pub use handle::{ProviderHandle, ProviderStream};
pub use registration::{validate_name, ComponentSource, OciSource, Origin, Registration};

enum Slot {
    /// A registration of this name is in progress.
    Reserved,
    Live(Arc<Entry>),
}

struct Inner {
    shared: Arc<Shared>,
    slots: RwLock<HashMap<String, Slot>>,
    monitors: Monitors,
}

/// The provider registry. Cheap to clone; every clone is the same registry.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("providers", &self.names())
            .finish()
    }
}

impl Registry {
    /// A registry on `sandbox` with `config` (validated: `INVALID_CONFIG` lists
    /// every problem).
    pub fn new(sandbox: Sandbox, config: RegistryConfig) -> Result<Self> {
        Self::with_clock(sandbox, config, Arc::new(SystemClock))
    }

    /// As [`Registry::new`], with the clock the circuit breakers use (tests).
    pub fn with_clock(
        sandbox: Sandbox,
        config: RegistryConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        Self::with_parts(sandbox, config, clock, Builtins::default())
    }

    /// As [`Registry::new`], resolving [`ComponentSource::Builtin`] through
    /// `builtins` (the binary's embedded components).
    pub fn with_builtins(
        sandbox: Sandbox,
        config: RegistryConfig,
        builtins: Builtins,
    ) -> Result<Self> {
        Self::with_parts(sandbox, config, Arc::new(SystemClock), builtins)
    }

    /// Every part given: the clock the circuit breakers use, and the built-ins.
    pub fn with_parts(
        sandbox: Sandbox,
        config: RegistryConfig,
        clock: Arc<dyn Clock>,
        builtins: Builtins,
    ) -> Result<Self> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(Error::new(ErrorCode::InvalidConfig, problems.join("; ")));
        }
        Ok(Registry {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared::new(sandbox, config, clock, builtins)),
                slots: RwLock::new(HashMap::new()),
                monitors: Monitors::default(),
            }),
        })
    }

    /// The sandbox providers run in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.shared().sandbox
    }

    /// The built-in provider types [`ComponentSource::Builtin`] names.
    pub fn builtins(&self) -> &Builtins {
        &self.shared().builtins
    }

    /// The registry's settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.shared().config
    }

    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.shared().events
    }

    /// Subscribe to registry events.
    pub fn subscribe(&self) -> Subscription {
        self.shared().events.subscribe()
    }

    pub(crate) fn emit(&self, event: Event) {
        self.shared().emit(event);
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    fn check_open(&self) -> Result<()> {
        self.shared().check_open()
    }

    fn slots_read(&self) -> RwLockReadGuard<'_, HashMap<String, Slot>> {
        // Map operations only, never across an `.await` or a panic point that
        // could leave the map half-changed: a poisoned lock is still usable.
        self.inner.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn slots_write(&self) -> RwLockWriteGuard<'_, HashMap<String, Slot>> {
        self.inner.slots.write().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(&self, name: &str) -> Result<Arc<Entry>> {
        match self.slots_read().get(name) {
            Some(Slot::Live(e)) => Ok(e.clone()),
            _ => Err(not_found(name)),
        }
    }

    fn entries(&self) -> Vec<Arc<Entry>> {
        let mut v: Vec<Arc<Entry>> = self
            .slots_read()
            .values()
            .filter_map(|s| match s {
                Slot::Live(e) => Some(e.clone()),
                Slot::Reserved => None,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    // ---------------------------------------------------------------- register

    /// Validate, load, instantiate and initialize a provider, then make it visible.
    pub async fn register(
        &self,
        name: &str,
        registration: Registration,
    ) -> Result<ProviderSnapshot> {
        self.check_open()?;
        validate_name(name)?;
        let plan = Plan::new(self.shared(), name, registration)?;
        let reservation = self.reserve(name)?;
        let prepared = plan.build(self.shared()).await?;
        self.publish(reservation, prepared).await
    }

    /// Register a provider the caller has already loaded and initialized.
    pub async fn register_instance(
        &self,
        name: &str,
        instance: ProviderInstance,
        origin: Origin,
        version: Option<String>,
    ) -> Result<ProviderSnapshot> {
        self.check_open()?;
        validate_name(name)?;
        let reservation = self.reserve(name)?;
        let prepared = Prepared::from_instance(instance, origin, version);
        self.publish(reservation, prepared).await
    }

    /// Check the settings and apply the registry's lifecycle bounds.
    pub(crate) fn effective_settings(
        &self,
        name: &str,
        settings: ProviderSettings,
    ) -> Result<ProviderSettings> {
        prepare::effective_settings(self.shared(), name, settings)
    }

    /// Load (compile, or find in the cache) a component.
    pub(crate) async fn load(
        &self,
        source: ComponentSource,
        signature: Option<String>,
    ) -> Result<LoadedComponent> {
        prepare::load(self.shared(), source, signature).await
    }

    fn reserve(&self, name: &str) -> Result<Reservation> {
        let mut slots = self.slots_write();
        if slots.contains_key(name) {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("a provider named {name:?} is already registered"),
            )
            .with_provider(name));
        }
        slots.insert(name.to_string(), Slot::Reserved);
        Ok(Reservation {
            registry: self.clone(),
            name: name.to_string(),
            armed: true,
        })
    }

    /// Turn the reservation into a live entry, unless shutdown began meanwhile.
    async fn publish(
        &self,
        mut reservation: Reservation,
        prepared: Prepared,
    ) -> Result<ProviderSnapshot> {
        let name = reservation.name.clone();
        let published = {
            let mut slots = self.slots_write();
            // Checked under the map lock, which shutdown takes (after setting the
            // flag) to list what it must dispose: an entry is either seen by
            // shutdown or never published.
            if self.shared().is_shutting_down() {
                Err(prepared)
            } else {
                let Prepared {
                    template,
                    metadata,
                    instance,
                } = prepared;
                let entry = Arc::new(Entry::new(
                    self.shared(),
                    &name,
                    template,
                    metadata,
                    instance,
                ));
                slots.insert(name.clone(), Slot::Live(entry.clone()));
                reservation.armed = false;
                Ok(entry)
            }
        };
        let entry = match published {
            Ok(entry) => entry,
            Err(prepared) => {
                let inst = prepared.instance;
                inst.dispose(inst.limits().dispose_timeout()).await;
                return Err(
                    Error::new(ErrorCode::ShuttingDown, "the registry is shutting down")
                        .with_provider(&name),
                );
            }
        };
        let metadata = entry.load().metadata.clone();
        self.emit(Event::ProviderRegistered {
            provider: name.clone(),
            source: metadata.source.as_str().to_string(),
        });
        tracing::info!(provider = %name, sha256 = %metadata.component_sha256, "provider registered");
        if self.inner.monitors.all_enabled() {
            self.inner.monitors.start(self.shared(), &entry).ok();
        }
        Ok(entry.snapshot())
    }

    // ------------------------------------------------------ unregister, replace

    /// Remove a provider: new calls get `NOT_FOUND` at once, running calls finish
    /// (up to the dispose timeout, then they are cut off), then `dispose` runs and
    /// the sandbox is freed. Returns whether it stopped cleanly.
    pub async fn unregister(&self, name: &str) -> Result<bool> {
        let entry = {
            let mut slots = self.slots_write();
            match slots.get(name) {
                Some(Slot::Live(_)) => match slots.remove(name) {
                    Some(Slot::Live(e)) => e,
                    _ => return Err(not_found(name)),
                },
                _ => return Err(not_found(name)),
            }
        };
        entry.mark_removed();
        self.inner.monitors.stop_entry(&entry).await;
        let _guard = entry.lifecycle.lock().await;
        Ok(self.finish_unregister(name, &entry).await)
    }

    /// [`Registry::unregister`], only if the provider's origin (where it came
    /// from: the configuration file, the admin API, ...) satisfies `allowed`,
    /// checked under the provider's lifecycle lock — the lock a replacement
    /// (which may change the origin) holds while it takes over. So a provider
    /// that the admin API took over cannot be removed by a caller that decided
    /// to remove it before: the race is closed, not narrowed. `Ok(None)`: the
    /// origin did not satisfy `allowed`, nothing changed.
    pub async fn unregister_if(
        &self,
        name: &str,
        allowed: impl Fn(Origin) -> bool,
    ) -> Result<Option<bool>> {
        let entry = self.entry(name)?;
        let _guard = entry.lifecycle.lock().await;
        if !allowed(entry.load().metadata.source) {
            return Ok(None);
        }
        {
            // Still this entry under this name? An unregister (which removes the
            // slot before taking the lock) or an unregister + register may have
            // got in between.
            let mut slots = self.slots_write();
            match slots.get(name) {
                Some(Slot::Live(e)) if Arc::ptr_eq(e, &entry) && !entry.is_removed() => {
                    slots.remove(name);
                }
                _ => return Err(not_found(name)),
            }
        }
        entry.mark_removed();
        // The health task never takes the lifecycle lock, so stopping it here
        // cannot wait on us.
        self.inner.monitors.stop_entry(&entry).await;
        Ok(Some(self.finish_unregister(name, &entry).await))
    }

    /// The end of an unregistration, under the lifecycle lock: dispose, event, log.
    async fn finish_unregister(&self, name: &str, entry: &Entry) -> bool {
        let clean = entry.halt(ProviderState::Disposed).await;
        self.emit(Event::ProviderUnregistered {
            provider: name.to_string(),
        });
        tracing::info!(provider = %name, clean, "provider unregistered");
        clean
    }

    /// Replace a registered provider with a new component or settings, atomically:
    /// the new one is fully initialized before it takes over, calls already running
    /// finish on the old instances, and new calls go to the new ones. If the new
    /// one fails to load, the old one keeps serving and the error is returned.
    pub async fn replace(
        &self,
        name: &str,
        registration: Registration,
    ) -> Result<ProviderSnapshot> {
        self.replace_inner(name, registration, |_| true)
            .await?
            .ok_or_else(|| not_found(name))
    }

    /// [`Registry::replace`], only if the current version's origin satisfies
    /// `allowed`, checked under the provider's lifecycle lock just before the
    /// new version takes over (and once before it is built, to spare the work).
    /// Discovery replaces only what it owns this way, so an admin takeover
    /// that lands while discovery builds its version always wins. `Ok(None)`:
    /// the origin did not satisfy `allowed`; the new version was disposed and
    /// nothing changed.
    pub async fn replace_if(
        &self,
        name: &str,
        registration: Registration,
        allowed: impl Fn(Origin) -> bool,
    ) -> Result<Option<ProviderSnapshot>> {
        self.replace_inner(name, registration, allowed).await
    }

    async fn replace_inner(
        &self,
        name: &str,
        registration: Registration,
        allowed: impl Fn(Origin) -> bool,
    ) -> Result<Option<ProviderSnapshot>> {
        self.check_open()?;
        let entry = self.entry(name)?;
        if !allowed(entry.load().metadata.source) {
            return Ok(None);
        }
        let prepared = Plan::new(self.shared(), name, registration)?
            .build(self.shared())
            .await?;
        let _guard = entry.lifecycle.lock().await;
        let removed = entry.is_removed() || self.check_open().is_err();
        if removed || !allowed(entry.load().metadata.source) {
            let fresh = prepared.instance;
            fresh.dispose(fresh.limits().dispose_timeout()).await;
            self.check_open()?;
            return if removed {
                Err(not_found(name))
            } else {
                Ok(None)
            };
        }
        let Prepared {
            template,
            metadata,
            instance,
        } = prepared;
        let event = Event::ProviderReplaced {
            provider: name.to_string(),
            source: metadata.source.as_str().to_string(),
            version: metadata.version.clone(),
            component_sha256: metadata.component_sha256.clone(),
        };
        let old = entry.put_version(template, metadata, instance);
        entry.breaker.reset();
        self.emit(event);
        tracing::info!(provider = %name, sha256 = %entry.load().metadata.component_sha256, "provider replaced");
        if let Some(old) = old {
            // Running calls finish on the old instances; new ones already use the
            // new instances.
            old.dispose(old.limits().dispose_timeout()).await;
        }
        Ok(Some(entry.snapshot()))
    }

    // ----------------------------------------------------------------- look-ups

    /// A handle to call a provider by.
    pub fn get(&self, name: &str) -> Result<ProviderHandle> {
        Ok(ProviderHandle::new(
            self.shared().clone(),
            self.entry(name)?,
        ))
    }

    /// Whether a provider of that name is registered (and visible).
    pub fn contains(&self, name: &str) -> bool {
        matches!(self.slots_read().get(name), Some(Slot::Live(_)))
    }

    /// All registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries().into_iter().map(|e| e.name.clone()).collect()
    }

    /// How the provider registered under `name` came to be, `None` when there is
    /// none (discovery leaves providers registered through the API alone).
    pub(crate) fn origin_of(&self, name: &str) -> Option<Origin> {
        self.entry(name).ok().map(|e| e.load().metadata.source)
    }

    /// The providers that offer the model id `model` and are ready to serve,
    /// sorted by name. From the model index: no snapshot is taken.
    pub fn ready_providers_of_model(&self, model: &str) -> Vec<String> {
        let names = self.shared().models.providers_of(model);
        if names.is_empty() {
            return names;
        }
        let slots = self.slots_read();
        names
            .into_iter()
            .filter(|n| match slots.get(n) {
                Some(Slot::Live(e)) => {
                    let s = e.load();
                    s.lifecycle == ProviderState::Ready && !s.removed
                }
                _ => false,
            })
            .collect()
    }

    /// A snapshot of every registered provider, sorted by name.
    pub fn snapshot(&self) -> Vec<ProviderSnapshot> {
        self.entries().iter().map(|e| e.snapshot()).collect()
    }

    /// A snapshot of one provider.
    pub fn snapshot_of(&self, name: &str) -> Result<ProviderSnapshot> {
        Ok(self.entry(name)?.snapshot())
    }

    /// Every provider's egress counters, by name (for `/metrics`).
    pub fn egress_counters(&self) -> Vec<(String, tamma_sandbox::egress::EgressCounters)> {
        self.entries()
            .iter()
            .map(|e| {
                let counters = e.load().template.settings.egress.counters();
                (e.name.clone(), counters)
            })
            .collect()
    }

    // -------------------------------------------------------------------- calls

    /// `complete` on a provider by name.
    pub async fn complete(
        &self,
        name: &str,
        req: &CompletionRequest,
    ) -> Result<CompletionResponse> {
        self.get(name)?.complete(req).await
    }

    /// `stream` on a provider by name.
    pub async fn stream(&self, name: &str, req: &CompletionRequest) -> Result<ProviderStream> {
        self.get(name)?.stream(req).await
    }

    /// `list-models` on a provider by name.
    pub async fn list_models(&self, name: &str) -> Result<Vec<ModelInfo>> {
        self.get(name)?.list_models().await
    }

    // --------------------------------------------------------------- monitoring

    /// Run one health check of a provider now: record it, and emit
    /// `health-status-changed` if the status flips.
    pub async fn check_health(&self, name: &str) -> Result<HealthCheck> {
        let entry = self.entry(name)?;
        Ok(monitor::check(self.shared(), &entry).await)
    }

    /// Monitor one provider (no-op if it already is).
    pub fn start_monitoring(&self, name: &str) -> Result<()> {
        let entry = self.entry(name)?;
        self.inner.monitors.start(self.shared(), &entry)
    }

    /// Monitor every provider, including those registered later.
    pub fn start_monitoring_all(&self) {
        self.inner.monitors.enable_all();
        for entry in self.entries() {
            let _ = self.inner.monitors.start(self.shared(), &entry);
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
}

/// Removes a name's reservation unless registration completed (also when the
/// registering task is cancelled).
struct Reservation {
    registry: Registry,
    name: String,
    armed: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed {
            let mut slots = self.registry.slots_write();
            if matches!(slots.get(&self.name), Some(Slot::Reserved)) {
                slots.remove(&self.name);
            }
        }
    }
}
