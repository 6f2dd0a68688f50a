//! The provider registry: the single source of truth for every provider in the
//! process, changed at run time without restarts.
//!
//! Consistency rules, relied on by every other part:
//! - A name is *reserved* before a registration starts its slow work (compile,
//!   instantiate, `initialize`), so two concurrent registrations of one name give
//!   exactly one success and one `ALREADY_EXISTS`. A reserved name is invisible to
//!   look-ups and calls: no half-registered provider is ever seen. If registration
//!   fails or its task is cancelled, the reservation is dropped; nothing is left.
//! - `unregister` removes the name first (new calls get `NOT_FOUND` at once), then
//!   lets running calls finish and disposes the instances.
//! - Lifecycle operations on one provider are serialised by its own async lock;
//!   the registry-wide map lock is a `std` lock held only for map operations,
//!   never across an `.await`, so nothing can deadlock on it.
//! - Calls take a snapshot of the provider's current instance; if that instance
//!   was replaced (hot reload, restart) between the snapshot and the call, the call
//!   is retried once on the new one, so a swap never fails a call.

pub mod lifecycle;
mod monitor;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::builtins::Builtins;
use crate::circuit_breaker::{CircuitBreaker, CircuitSnapshot, CircuitState, Clock, SystemClock};
use crate::events::{Event, EventBus, Subscription};
use crate::health::{HealthCheck, HealthRecord};
use monitor::Monitors;
use crate::registry_config::RegistryConfig;
use crate::stats::{CallStats, CallStatsSnapshot};
use tamma_sandbox::error::{Error, ErrorCode, Result};
use tamma_sandbox::limits::Limits;
use tamma_sandbox::provider::{CompletionStream, ProviderInstance};
use tamma_sandbox::sandbox::{LoadedComponent, Sandbox};
use tamma_sandbox::settings::ProviderSettings;
use tamma_sandbox::time::unix_ms;
use tamma_sandbox::types::{
    Capabilities, CompletionRequest, CompletionResponse, HealthStatus, ModelInfo, StreamChunk,
};

/// Where a provider's component comes from.
#[derive(Clone)]
pub enum ComponentSource {
    /// A `.wasm` file on disk.
    File(PathBuf),
    /// Component bytes (uploaded, or read by the caller).
    Bytes(Arc<[u8]>),
    /// A provider type built into the binary (`echo`, `openai`, `anthropic`).
    Builtin(String),
}

impl std::fmt::Debug for ComponentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComponentSource::File(p) => write!(f, "File({})", p.display()),
            ComponentSource::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            ComponentSource::Builtin(n) => write!(f, "Builtin({n})"),
        }
    }
}

/// How a provider came to be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Declared in the configuration file.
    Config,
    /// Found in the plugin directory.
    Plugin,
    /// Registered through the admin API or the library API.
    Api,
    /// Registered by environment discovery (an API key variable).
    Environment,
}

impl Origin {
    /// Lowercase name, as in snapshots and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Plugin => "plugin",
            Origin::Api => "api",
            Origin::Environment => "environment",
        }
    }
}

/// Everything needed to register a provider.
#[derive(Clone, Debug)]
pub struct Registration {
    /// The component.
    pub source: ComponentSource,
    /// Its configuration, limits and egress policy.
    pub settings: ProviderSettings,
    /// How it came to be registered.
    pub origin: Origin,
    /// Its version, when known (plugin manifests carry one).
    pub version: Option<String>,
}

impl Registration {
    /// A registration through the API with default settings.
    pub fn new(source: ComponentSource) -> Self {
        Registration {
            source,
            settings: ProviderSettings::default(),
            origin: Origin::Api,
            version: None,
        }
    }

    /// Set the settings (builder style).
    pub fn with_settings(mut self, settings: ProviderSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Set the origin (builder style).
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }
}

/// Lifecycle state of a registered provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderState {
    /// Creating and initializing instances.
    Initializing,
    /// Serving calls.
    Ready,
    /// Registered, but not serving (`PROVIDER_STOPPED`).
    Stopped,
    /// (Re-)initialization failed; `start` or `restart` tries again.
    Error,
    /// Its instances were disposed; `start` brings it back.
    Disposed,
}

impl ProviderState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderState::Initializing => "initializing",
            ProviderState::Ready => "ready",
            ProviderState::Stopped => "stopped",
            ProviderState::Error => "error",
            ProviderState::Disposed => "disposed",
        }
    }
}

/// Where a provider came from and what it runs.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderMetadata {
    /// How it was registered.
    pub source: Origin,
    /// Its version, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SHA-256 of its component.
    pub component_sha256: String,
    /// Size of its component, bytes.
    pub component_size: usize,
    /// The built-in type, for built-in providers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
}

/// A point-in-time view of one provider. Carries no configuration values and no
/// secrets (only the secrets' names).
#[derive(Clone, Debug, Serialize)]
pub struct ProviderSnapshot {
    pub name: String,
    pub state: ProviderState,
    pub registered_at_unix_ms: u64,
    pub health: HealthStatus,
    pub health_message: String,
    pub last_health_check: Option<HealthCheck>,
    pub circuit: CircuitSnapshot,
    pub capabilities: Capabilities,
    pub metadata: ProviderMetadata,
    pub limits: Limits,
    pub allowed_hosts: Vec<String>,
    pub secret_names: Vec<String>,
    pub config_keys: Vec<String>,
    pub pool: Option<tamma_sandbox::pool::PoolStats>,
    pub calls: CallStatsSnapshot,
}

/// One registered provider.
pub(crate) struct Entry {
    pub(crate) name: String,
    /// Replaced together with the component on hot reload.
    metadata: RwLock<ProviderMetadata>,
    registered_at: SystemTime,
    state: Mutex<ProviderState>,
    /// The running provider; `None` while stopped, disposed or failed.
    current: RwLock<Option<ProviderInstance>>,
    /// What to instantiate on (re)start.
    template: RwLock<(LoadedComponent, ProviderSettings)>,
    capabilities: RwLock<Capabilities>,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) health: Mutex<HealthRecord>,
    pub(crate) stats: CallStats,
    /// Serialises lifecycle operations (start/stop/restart/replace/unregister).
    pub(crate) lifecycle: tokio::sync::Mutex<()>,
    /// Set once unregistered: the entry may still be referenced by running calls.
    removed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // These locks guard plain data updated in single statements; a panic elsewhere
    // cannot leave it half-written, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Entry {
    pub(crate) fn state(&self) -> ProviderState {
        *lock(&self.state)
    }

    pub(crate) fn current(&self) -> Option<ProviderInstance> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_current(&self, inst: Option<ProviderInstance>) -> Option<ProviderInstance> {
        if let Some(i) = &inst {
            *self.capabilities.write().unwrap_or_else(|p| p.into_inner()) =
                i.capabilities().clone();
        }
        std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|p| p.into_inner()),
            inst,
        )
    }

    pub(crate) fn template(&self) -> (LoadedComponent, ProviderSettings) {
        self.template
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_template(&self, component: LoadedComponent, settings: ProviderSettings) {
        *self.template.write().unwrap_or_else(|p| p.into_inner()) = (component, settings);
    }

    pub(crate) fn metadata(&self) -> ProviderMetadata {
        self.metadata
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
    }

    fn snapshot(&self) -> ProviderSnapshot {
        let health = lock(&self.health).clone();
        let (component, settings) = self.template();
        let current = self.current();
        ProviderSnapshot {
            name: self.name.clone(),
            state: self.state(),
            registered_at_unix_ms: unix_ms(self.registered_at),
            health: health.status,
            health_message: health.message,
            last_health_check: health.last_check,
            circuit: self.breaker.snapshot(),
            capabilities: self
                .capabilities
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            metadata: ProviderMetadata {
                component_sha256: component.sha256.clone(),
                component_size: component.size,
                ..self.metadata()
            },
            limits: settings.limits.clone(),
            allowed_hosts: settings.egress.allowed_hosts().to_vec(),
            secret_names: settings
                .egress
                .secret_names()
                .into_iter()
                .map(String::from)
                .collect(),
            config_keys: settings.config.iter().map(|(k, _)| k.clone()).collect(),
            pool: current.map(|c| c.pool_stats()),
            calls: self.stats.snapshot(),
        }
    }
}

enum Slot {
    /// A registration of this name is in progress.
    Reserved,
    Live(Arc<Entry>),
}

pub(crate) struct Inner {
    pub(crate) sandbox: Sandbox,
    pub(crate) config: RegistryConfig,
    pub(crate) clock: Arc<dyn Clock>,
    builtins: Builtins,
    pub(crate) events: EventBus,
    slots: RwLock<HashMap<String, Slot>>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) monitors: Monitors,
}

/// The provider registry. Cheap to clone; every clone is the same registry.
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("providers", &self.names())
            .finish()
    }
}

/// Check a provider name: 1–64 characters of `a-z 0-9 - _ .`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
    let problem = if name.is_empty() {
        Some("must not be empty".to_string())
    } else if name.len() > 64 {
        Some(format!(
            "is {} characters long; the limit is 64",
            name.len()
        ))
    } else {
        name.chars()
            .find(|c| !ok_char(*c))
            .map(|c| format!("contains {c:?}; allowed are a-z, 0-9, '-', '_' and '.'"))
    };
    match problem {
        None => Ok(()),
        Some(p) => {
            // The name is echoed escaped and truncated: it is untrusted input.
            let shown: String = name.chars().take(80).collect();
            Err(Error::new(
                ErrorCode::InvalidName,
                format!("provider name {shown:?} {p}"),
            ))
        }
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
                sandbox,
                config,
                clock,
                builtins,
                events: EventBus::new(),
                slots: RwLock::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
                monitors: Monitors::default(),
            }),
        })
    }

    /// The sandbox providers run in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.inner.sandbox
    }

    /// The built-in provider types [`ComponentSource::Builtin`] names.
    pub fn builtins(&self) -> &Builtins {
        &self.inner.builtins
    }

    /// The registry's settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// Subscribe to registry events.
    pub fn subscribe(&self) -> Subscription {
        self.inner.events.subscribe()
    }

    pub(crate) fn emit(&self, event: Event) {
        self.inner.events.emit(event);
    }

    fn slots_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Slot>> {
        self.inner.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn slots_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Slot>> {
        self.inner.slots.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn entry(&self, name: &str) -> Result<Arc<Entry>> {
        match self.slots_read().get(name) {
            Some(Slot::Live(e)) => Ok(e.clone()),
            _ => Err(not_found(name)),
        }
    }

    pub(crate) fn entries(&self) -> Vec<Arc<Entry>> {
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

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            Err(Error::new(
                ErrorCode::ShuttingDown,
                "the registry is shutting down",
            ))
        } else {
            Ok(())
        }
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
        let settings = self.effective_settings(name, registration.settings)?;
        let reservation = self.reserve(name)?;
        let builtin = match &registration.source {
            ComponentSource::Builtin(t) => Some(t.clone()),
            _ => None,
        };
        let loaded = self.load(registration.source).await.map_err(|e| {
            e.with_provider(name)
                .wrap(ErrorCode::RegistrationFailed, "cannot load component")
        })?;
        let instance = self
            .inner
            .sandbox
            .instantiate_with(name, &loaded, settings.clone())
            .await
            .map_err(|e| e.wrap(ErrorCode::RegistrationFailed, "initialization failed"))?;
        let metadata = ProviderMetadata {
            source: registration.origin,
            version: registration.version,
            component_sha256: loaded.sha256.clone(),
            component_size: loaded.size,
            builtin,
        };
        self.publish(reservation, instance, loaded, settings, metadata)
            .await
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
        let loaded = instance.component().clone();
        let settings = instance.settings().clone();
        let metadata = ProviderMetadata {
            source: origin,
            version,
            component_sha256: loaded.sha256.clone(),
            component_size: loaded.size,
            builtin: None,
        };
        self.publish(reservation, instance, loaded, settings, metadata)
            .await
    }

    /// Check the settings and apply the registry's lifecycle bounds.
    pub(crate) fn effective_settings(
        &self,
        name: &str,
        mut settings: ProviderSettings,
    ) -> Result<ProviderSettings> {
        let mut problems: Vec<String> = settings
            .limits
            .validate()
            .into_iter()
            .map(|p| format!("limits.{p}"))
            .collect();
        let max = self.inner.sandbox.engine().config().max_memory_mib;
        if settings.limits.memory_mib > max {
            problems.push(format!(
                "limits.memory_mib: {} exceeds the engine's maximum of {max}",
                settings.limits.memory_mib
            ));
        }
        for (i, (k, _)) in settings.config.iter().enumerate() {
            if k.is_empty() {
                problems.push(format!("config[{i}]: empty key"));
            }
        }
        if !problems.is_empty() {
            return Err(
                Error::new(ErrorCode::InvalidConfig, problems.join("; ")).with_provider(name)
            );
        }
        let lc = &self.inner.config.lifecycle;
        let l = &mut settings.limits;
        l.init_timeout_ms = l.init_timeout_ms.min(lc.init_timeout_ms);
        l.dispose_timeout_ms = l.dispose_timeout_ms.min(lc.dispose_timeout_ms);
        Ok(settings)
    }

    pub(crate) async fn load(&self, source: ComponentSource) -> Result<LoadedComponent> {
        let sandbox = self.inner.sandbox.clone();
        let builtins = self.inner.builtins.clone();
        // Compiling is CPU-bound (milliseconds to seconds): keep it off the async workers.
        let task = tokio::task::spawn_blocking(move || match source {
            ComponentSource::File(path) => sandbox.load_file(&path),
            ComponentSource::Bytes(bytes) => sandbox.load(&bytes),
            ComponentSource::Builtin(kind) => match builtins.get(&kind) {
                Some(bytes) => sandbox.load(bytes),
                None => Err(Error::new(
                    ErrorCode::InvalidConfig,
                    format!(
                        "no built-in provider type {kind:?}; this build has {:?}",
                        builtins.names()
                    ),
                )),
            },
        });
        task.await.map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("component loading task failed: {e}"),
            )
        })?
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

    async fn publish(
        &self,
        mut reservation: Reservation,
        instance: ProviderInstance,
        component: LoadedComponent,
        settings: ProviderSettings,
        metadata: ProviderMetadata,
    ) -> Result<ProviderSnapshot> {
        let name = reservation.name.clone();
        let entry = Arc::new(self.new_entry(&name, instance, component, settings, metadata));
        {
            let mut slots = self.slots_write();
            if !self.inner.shutting_down.load(Ordering::Acquire) {
                slots.insert(name.clone(), Slot::Live(entry.clone()));
                reservation.armed = false;
            }
        }
        if reservation.armed {
            // Shutdown began while we were initializing: do not publish.
            if let Some(inst) = entry.set_current(None) {
                inst.dispose(inst.limits().dispose_timeout()).await;
            }
            return Err(
                Error::new(ErrorCode::ShuttingDown, "the registry is shutting down")
                    .with_provider(&name),
            );
        }
        self.emit(Event::ProviderRegistered {
            provider: name.clone(),
            source: origin_name(entry.metadata().source),
        });
        tracing::info!(provider = %name, sha256 = %entry.metadata().component_sha256, "provider registered");
        if self.inner.monitors.all_enabled() {
            self.start_monitoring(&name).ok();
        }
        Ok(entry.snapshot())
    }

    fn new_entry(
        &self,
        name: &str,
        instance: ProviderInstance,
        component: LoadedComponent,
        settings: ProviderSettings,
        metadata: ProviderMetadata,
    ) -> Entry {
        let events = self.inner.events.clone();
        let provider = name.to_string();
        let recovery = self.inner.config.circuit_breaker.recovery_timeout;
        let breaker = CircuitBreaker::with_on_transition(
            self.inner.config.circuit_breaker.clone(),
            self.inner.clock.clone(),
            move |_from, to| {
                let provider = provider.clone();
                events.emit(match to {
                    CircuitState::Open => Event::CircuitBreakerOpened {
                        provider,
                        retry_after_ms: recovery.as_millis() as u64,
                    },
                    CircuitState::HalfOpen => Event::CircuitBreakerHalfOpen { provider },
                    CircuitState::Closed => Event::CircuitBreakerClosed { provider },
                });
            },
        );
        Entry {
            name: name.to_string(),
            metadata: RwLock::new(metadata),
            registered_at: SystemTime::now(),
            state: Mutex::new(ProviderState::Ready),
            capabilities: RwLock::new(instance.capabilities().clone()),
            current: RwLock::new(Some(instance)),
            template: RwLock::new((component, settings)),
            breaker,
            health: Mutex::new(HealthRecord::default()),
            stats: CallStats::default(),
            lifecycle: tokio::sync::Mutex::new(()),
            removed: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_state(&self, entry: &Entry, to: ProviderState) {
        let from = std::mem::replace(&mut *lock(&entry.state), to);
        if from != to {
            self.emit(Event::ProviderStateChanged {
                provider: entry.name.clone(),
                from: from.as_str().into(),
                to: to.as_str().into(),
            });
        }
    }

    // -------------------------------------------------------------- unregister

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
        self.inner.monitors.stop(name).await;
        let _guard = entry.lifecycle.lock().await;
        let clean = match entry.set_current(None) {
            Some(inst) => inst.dispose(inst.limits().dispose_timeout()).await,
            None => true,
        };
        self.set_state(&entry, ProviderState::Disposed);
        self.emit(Event::ProviderUnregistered {
            provider: name.to_string(),
        });
        tracing::info!(provider = %name, clean, "provider unregistered");
        Ok(clean)
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
        self.check_open()?;
        let entry = self.entry(name)?;
        let settings = self.effective_settings(name, registration.settings)?;
        let builtin = match &registration.source {
            ComponentSource::Builtin(t) => Some(t.clone()),
            _ => None,
        };
        let loaded = self.load(registration.source).await.map_err(|e| {
            e.with_provider(name)
                .wrap(ErrorCode::RegistrationFailed, "cannot load component")
        })?;
        let fresh = self
            .inner
            .sandbox
            .instantiate_with(name, &loaded, settings.clone())
            .await
            .map_err(|e| e.wrap(ErrorCode::RegistrationFailed, "initialization failed"))?;
        let _guard = entry.lifecycle.lock().await;
        if entry.is_removed() || self.check_open().is_err() {
            fresh.dispose(fresh.limits().dispose_timeout()).await;
            self.check_open()?;
            return Err(not_found(name));
        }
        let metadata = ProviderMetadata {
            source: registration.origin,
            version: registration.version,
            component_sha256: loaded.sha256.clone(),
            component_size: loaded.size,
            builtin,
        };
        *entry.metadata.write().unwrap_or_else(|p| p.into_inner()) = metadata.clone();
        entry.set_template(loaded, settings);
        let old = entry.set_current(Some(fresh));
        self.set_state(&entry, ProviderState::Ready);
        entry.breaker.reset();
        self.emit(Event::ProviderReplaced {
            provider: name.to_string(),
            source: origin_name(metadata.source),
            version: metadata.version.clone(),
            component_sha256: metadata.component_sha256.clone(),
        });
        tracing::info!(provider = %name, sha256 = %metadata.component_sha256, "provider replaced");
        if let Some(old) = old {
            // Running calls finish on the old instances; new ones already use the
            // new instances.
            old.dispose(old.limits().dispose_timeout()).await;
        }
        Ok(entry.snapshot())
    }

    // ----------------------------------------------------------------- look-ups

    /// A handle to call a provider by.
    pub fn get(&self, name: &str) -> Result<ProviderHandle> {
        Ok(ProviderHandle {
            registry: self.clone(),
            entry: self.entry(name)?,
        })
    }

    /// Whether a provider of that name is registered (and visible).
    pub fn contains(&self, name: &str) -> bool {
        matches!(self.slots_read().get(name), Some(Slot::Live(_)))
    }

    /// All registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries().into_iter().map(|e| e.name.clone()).collect()
    }

    /// A snapshot of every registered provider, sorted by name.
    pub fn snapshot(&self) -> Vec<ProviderSnapshot> {
        self.entries().iter().map(|e| e.snapshot()).collect()
    }

    /// Every provider's egress counters, by name (for `/metrics`).
    pub fn egress_counters(&self) -> Vec<(String, tamma_sandbox::egress::EgressCounters)> {
        self.entries()
            .iter()
            .map(|e| (e.name.clone(), e.template().1.egress.counters()))
            .collect()
    }

    /// A snapshot of one provider.
    pub fn snapshot_of(&self, name: &str) -> Result<ProviderSnapshot> {
        Ok(self.entry(name)?.snapshot())
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

fn origin_name(origin: Origin) -> String {
    origin.as_str().to_string()
}

pub(crate) fn not_found(name: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("no provider named {name:?} is registered"),
    )
    .with_provider(name)
}

/// A handle to one registered provider. Calls through it are guarded by the
/// provider's circuit breaker and recorded for health and metrics.
#[derive(Clone)]
pub struct ProviderHandle {
    registry: Registry,
    entry: Arc<Entry>,
}

impl std::fmt::Debug for ProviderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderHandle")
            .field("name", &self.entry.name)
            .finish()
    }
}

/// How a call's outcome counts for the circuit breaker.
fn breaker_outcome(
    permit: crate::circuit_breaker::Permit,
    result: &std::result::Result<(), &Error>,
) {
    match result {
        Ok(()) => permit.success(),
        Err(e) if e.is_provider_failure() => permit.failure(),
        // The caller's own mistake, or the runtime refusing (overload, stop):
        // neither success nor failure of the provider.
        Err(_) => drop(permit),
    }
}

impl ProviderHandle {
    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Its current state.
    pub fn state(&self) -> ProviderState {
        self.entry.state()
    }

    /// Its snapshot.
    pub fn snapshot(&self) -> ProviderSnapshot {
        self.entry.snapshot()
    }

    /// The running instance, or why there is none.
    fn ready_instance(&self) -> Result<ProviderInstance> {
        self.registry.check_open()?;
        if self.entry.is_removed() {
            return Err(not_found(self.name()));
        }
        match (self.entry.state(), self.entry.current()) {
            (ProviderState::Ready, Some(inst)) => Ok(inst),
            (state, _) => Err(Error::new(
                ErrorCode::ProviderStopped,
                format!("provider is {}", state.as_str()),
            )
            .with_provider(self.name())),
        }
    }

    fn acquire(&self) -> Result<crate::circuit_breaker::Permit> {
        self.entry.breaker.try_acquire().map_err(|r| {
            Error::new(
                ErrorCode::CircuitOpen,
                format!("circuit breaker is {}", r.state.as_str()),
            )
            .with_provider(self.name())
            .with_retry_after(r.retry_after)
        })
    }

    /// Run `call` on the current instance, retrying once if the instance was
    /// swapped out (disposed) between taking it and using it.
    async fn guarded<T, F, Fut>(&self, op: &'static str, mut call: F) -> Result<T>
    where
        F: FnMut(ProviderInstance) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            let inst = self.ready_instance()?;
            let permit = self.acquire()?;
            let started = Instant::now();
            let result = call(inst.clone()).await;
            if let Err(e) = &result {
                if inst.is_disposed() && e.code == ErrorCode::ProviderStopped {
                    drop(permit);
                    let swapped = self.entry.current().is_some_and(|c| !c.same_as(&inst));
                    if swapped && attempt == 0 {
                        attempt += 1;
                        continue;
                    }
                    if self.entry.is_removed() {
                        return Err(not_found(self.name()));
                    }
                    return result;
                }
            }
            self.record(op, started, permit, result.as_ref().map(|_| ()));
            return result;
        }
    }

    fn record(
        &self,
        op: &'static str,
        started: Instant,
        permit: crate::circuit_breaker::Permit,
        result: std::result::Result<(), &Error>,
    ) {
        self.entry
            .stats
            .record(started.elapsed(), result.err().map(|e| e.code));
        if let Err(e) = result {
            if e.is_provider_failure() {
                tracing::warn!(provider = %self.name(), op, code = %e.code, "provider call failed");
                self.registry.emit(Event::ProviderError {
                    provider: self.name().to_string(),
                    code: e.code.as_str().to_string(),
                    message: e.message.clone(),
                });
            }
        }
        breaker_outcome(permit, &result);
    }

    /// Produce a whole completion.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<CompletionResponse> {
        self.guarded("complete", |inst| async move { inst.complete(req).await })
            .await
    }

    /// The models the provider serves now.
    pub async fn list_models(&self) -> Result<Vec<ModelInfo>> {
        self.guarded(
            "list_models",
            |inst| async move { inst.list_models().await },
        )
        .await
    }

    /// Start a streamed completion. The breaker records its outcome when it ends.
    pub async fn stream(&self, req: &CompletionRequest) -> Result<ProviderStream> {
        let mut attempt = 0;
        loop {
            let inst = self.ready_instance()?;
            let permit = self.acquire()?;
            let started = Instant::now();
            match inst.stream(req).await {
                Ok(inner) => {
                    return Ok(ProviderStream {
                        inner,
                        handle: self.clone(),
                        permit: Some(permit),
                        started,
                    })
                }
                Err(e)
                    if inst.is_disposed()
                        && e.code == ErrorCode::ProviderStopped
                        && attempt == 0 =>
                {
                    drop(permit);
                    attempt += 1;
                    continue;
                }
                Err(e) => {
                    self.record("stream", started, permit, Err(&e));
                    return Err(e);
                }
            }
        }
    }

    /// Capabilities, as read at the last (re)initialization.
    pub fn capabilities(&self) -> Capabilities {
        self.entry
            .capabilities
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Run a health check now (see [`Registry::check_health`]).
    pub async fn health_check(&self) -> Result<HealthCheck> {
        self.registry.check_health(self.name()).await
    }
}

/// A streamed completion through the registry; records its outcome for the
/// circuit breaker and statistics when it ends. Dropping it early counts as
/// neither success nor failure.
pub struct ProviderStream {
    inner: CompletionStream,
    handle: ProviderHandle,
    permit: Option<crate::circuit_breaker::Permit>,
    started: Instant,
}

impl ProviderStream {
    /// The next chunk, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<StreamChunk>> {
        let r = self.inner.next().await;
        match &r {
            Ok(Some(_)) => {}
            Ok(None) => {
                if let Some(p) = self.permit.take() {
                    self.handle.record("stream", self.started, p, Ok(()));
                }
            }
            Err(e) => {
                if let Some(p) = self.permit.take() {
                    self.handle.record("stream", self.started, p, Err(e));
                }
            }
        }
        r
    }

    /// The provider's name.
    pub fn provider(&self) -> &str {
        self.handle.name()
    }
}
