//! One registered provider: its [`Entry`], the immutable [`EntryState`] it
//! swaps whole, and the public views of it ([`ProviderState`],
//! [`ProviderMetadata`], [`ProviderSnapshot`]).
//!
//! Everything that changes when a provider is started, stopped, restarted,
//! replaced or removed — lifecycle state, running instance, template,
//! capabilities, metadata, the removed flag — is one [`EntryState`] behind an
//! [`ArcSwap`]. Readers take it with one atomic load and see one version;
//! writers build the next value from the current one and swap it in. Health,
//! the circuit breaker and the call counters describe traffic rather than the
//! version, are updated by every call or check, and keep their own
//! synchronisation.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use arc_swap::{ArcSwap, Guard};
use serde::Serialize;

use super::models::{next_entry_id, ModelIndex};
use super::registration::Origin;
use super::shared::Shared;
use crate::circuit_breaker::{CircuitBreaker, CircuitSnapshot, CircuitState};
use crate::events::{Event, EventBus};
use crate::health::{HealthCheck, HealthRecord};
use crate::stats::{CallStats, CallStatsSnapshot};
use tamma_sandbox::error::{Error, ErrorCode, Result};
use tamma_sandbox::limits::Limits;
use tamma_sandbox::pool::PoolStats;
use tamma_sandbox::provider::ProviderInstance;
use tamma_sandbox::sandbox::LoadedComponent;
use tamma_sandbox::settings::ProviderSettings;
use tamma_sandbox::time::unix_ms;
use tamma_sandbox::types::{Capabilities, HealthStatus};

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
    /// The `tamma:provider` version its component was built against.
    pub contract_version: tamma_sandbox::ContractVersion,
    /// The built-in type, for built-in providers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
}

/// A point-in-time view of one provider. Carries no configuration values and no
/// secrets (only the secrets' names).
#[derive(Clone, Debug, Serialize)]
pub struct ProviderSnapshot {
    /// The provider's name.
    pub name: String,
    /// Its lifecycle state.
    pub state: ProviderState,
    /// When it was registered (Unix ms; a `replace` keeps it).
    pub registered_at_unix_ms: u64,
    /// Its debounced health status.
    pub health: HealthStatus,
    /// The message that goes with `health`.
    pub health_message: String,
    /// The latest health check, if any ran.
    pub last_health_check: Option<HealthCheck>,
    /// Its circuit breaker.
    pub circuit: CircuitSnapshot,
    /// Capabilities, as read at the last (re)initialization (shared, not copied).
    pub capabilities: Arc<Capabilities>,
    /// Where it came from and what it runs.
    pub metadata: ProviderMetadata,
    /// The sandbox limits in force.
    pub limits: Limits,
    /// Hosts it may reach.
    pub allowed_hosts: Vec<String>,
    /// Names of the secrets it was given (never their values).
    pub secret_names: Vec<String>,
    /// Keys of its configuration (never the values).
    pub config_keys: Vec<String>,
    /// Its instance pool, while it has running instances.
    pub pool: Option<PoolStats>,
    /// Its call counters.
    pub calls: CallStatsSnapshot,
}

/// What a provider's instances are made from on (re)start.
pub(crate) struct Template {
    /// The compiled component.
    pub(crate) component: LoadedComponent,
    /// Its effective settings (limits already bounded by the registry's).
    pub(crate) settings: ProviderSettings,
}

/// One consistent version of a provider. Never changed in place: every change
/// builds a new value (cheap: the big parts are shared `Arc`s) and swaps it in.
#[derive(Clone)]
pub(crate) struct EntryState {
    /// The lifecycle state.
    pub(crate) lifecycle: ProviderState,
    /// The running provider; `None` while stopped, disposed or failed.
    pub(crate) current: Option<ProviderInstance>,
    /// What to instantiate on (re)start.
    pub(crate) template: Arc<Template>,
    /// Capabilities of the last instance (kept while there is none).
    pub(crate) capabilities: Arc<Capabilities>,
    /// Where it came from; replaced together with the template.
    pub(crate) metadata: Arc<ProviderMetadata>,
    /// Unregistered: handles still holding the entry get `NOT_FOUND`.
    pub(crate) removed: bool,
}

impl EntryState {
    /// The instance to call, or why there is none.
    pub(crate) fn ready(&self, name: &str) -> Result<&ProviderInstance> {
        if self.removed {
            return Err(not_found(name));
        }
        match (self.lifecycle, &self.current) {
            (ProviderState::Ready, Some(inst)) => Ok(inst),
            (state, _) => Err(Error::new(
                ErrorCode::ProviderStopped,
                format!("provider is {}", state.as_str()),
            )
            .with_provider(name)),
        }
    }
}

/// One registered provider.
pub(crate) struct Entry {
    /// The name it is registered under (never changes).
    pub(crate) name: String,
    /// Process-unique: tells this entry from a later one of the same name.
    id: u64,
    /// The registry's model index, told when the capabilities change.
    models: Arc<ModelIndex>,
    registered_at: SystemTime,
    state: ArcSwap<EntryState>,
    /// Guards its calls.
    pub(crate) breaker: CircuitBreaker,
    /// Written by health checks only. Its own lock rather than part of the
    /// state: a check's read-modify-write of the streak runs outside the
    /// lifecycle lock, concurrently with other checks, and nothing on the call
    /// path reads it.
    health: Mutex<HealthRecord>,
    /// Its call counters.
    pub(crate) stats: CallStats,
    /// Serialises lifecycle operations (start/stop/restart/replace/unregister).
    pub(crate) lifecycle: tokio::sync::Mutex<()>,
    events: EventBus,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The health record is updated in single statements; a panic elsewhere
    // cannot leave it half-written, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Entry {
    /// A provider serving on `instance`, its breaker wired to the event bus.
    pub(crate) fn new(
        shared: &Shared,
        name: &str,
        template: Template,
        metadata: ProviderMetadata,
        instance: ProviderInstance,
    ) -> Self {
        let events = shared.events.clone();
        let provider = name.to_string();
        let recovery = shared.config.circuit_breaker.recovery_timeout;
        let breaker = CircuitBreaker::with_on_transition(
            shared.config.circuit_breaker.clone(),
            shared.clock.clone(),
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
        let state = EntryState {
            lifecycle: ProviderState::Ready,
            capabilities: Arc::new(instance.capabilities().clone()),
            current: Some(instance),
            template: Arc::new(template),
            metadata: Arc::new(metadata),
            removed: false,
        };
        let entry = Entry {
            name: name.to_string(),
            id: next_entry_id(),
            models: shared.models.clone(),
            registered_at: SystemTime::now(),
            state: ArcSwap::from_pointee(state),
            breaker,
            health: Mutex::new(HealthRecord::default()),
            stats: CallStats::default(),
            lifecycle: tokio::sync::Mutex::new(()),
            events: shared.events.clone(),
        };
        entry.refresh_models();
        entry
    }

    /// Tell the model index what this entry offers now (nothing once removed).
    fn refresh_models(&self) {
        self.models.refresh(self.id, &self.name, || {
            let s = self.state.load();
            // Embedding models too: a bare model id routes `/v1/embeddings` as it
            // routes chat.
            (!s.removed).then(|| {
                let caps = &s.capabilities;
                let chat = caps.models.iter().map(|m| m.id.clone());
                chat.chain(caps.embedding_models.iter().map(|m| m.id.clone()))
                    .collect()
            })
        });
    }

    /// The current version: one atomic load, no lock, no copy. Hold the guard
    /// briefly (clone what must outlive an `.await`).
    pub(crate) fn load(&self) -> Guard<Arc<EntryState>> {
        self.state.load()
    }

    /// Whether it was unregistered.
    pub(crate) fn is_removed(&self) -> bool {
        self.load().removed
    }

    /// Swap in the state `f` makes of the current one; returns the previous
    /// state. A read-copy-update: if another writer got in between (only
    /// shutdown writes without the lifecycle lock), `f` runs again on its result,
    /// so no write is lost. Emits `provider-state-changed` when the lifecycle
    /// state changes — the one place that does.
    fn update(&self, f: impl Fn(&EntryState) -> EntryState) -> Arc<EntryState> {
        let mut next = None;
        let prev = self.state.rcu(|cur| {
            let n = Arc::new(f(cur));
            next = Some(n.clone());
            n
        });
        if let Some(next) = next {
            if !Arc::ptr_eq(&prev.capabilities, &next.capabilities) || prev.removed != next.removed
            {
                self.refresh_models();
            }
            if prev.lifecycle != next.lifecycle {
                self.events.emit(Event::ProviderStateChanged {
                    provider: self.name.clone(),
                    from: prev.lifecycle.as_str().into(),
                    to: next.lifecycle.as_str().into(),
                });
            }
        }
        prev
    }

    /// Move to `to`, keeping everything else.
    pub(crate) fn set_lifecycle(&self, to: ProviderState) {
        self.update(|s| EntryState {
            lifecycle: to,
            ..s.clone()
        });
    }

    /// Move to `to` and take the running instance out, in one step: no call can
    /// see the new state with the old instance or the other way round.
    pub(crate) fn take_instance(&self, to: ProviderState) -> Option<ProviderInstance> {
        self.update(|s| EntryState {
            lifecycle: to,
            current: None,
            ..s.clone()
        })
        .current
        .clone()
    }

    /// Serve on `instance` (state `ready`); returns the instance it displaced.
    pub(crate) fn put_instance(&self, instance: ProviderInstance) -> Option<ProviderInstance> {
        let capabilities = Arc::new(instance.capabilities().clone());
        self.update(|s| EntryState {
            lifecycle: ProviderState::Ready,
            current: Some(instance.clone()),
            capabilities: capabilities.clone(),
            ..s.clone()
        })
        .current
        .clone()
    }

    /// Switch to a new version — template, metadata and instance together —
    /// serving (state `ready`); returns the instance it displaced.
    pub(crate) fn put_version(
        &self,
        template: Template,
        metadata: ProviderMetadata,
        instance: ProviderInstance,
    ) -> Option<ProviderInstance> {
        let template = Arc::new(template);
        let metadata = Arc::new(metadata);
        let capabilities = Arc::new(instance.capabilities().clone());
        self.update(|s| EntryState {
            lifecycle: ProviderState::Ready,
            current: Some(instance.clone()),
            template: template.clone(),
            capabilities: capabilities.clone(),
            metadata: metadata.clone(),
            removed: s.removed,
        })
        .current
        .clone()
    }

    /// Mark it unregistered (handles still holding it get `NOT_FOUND`).
    pub(crate) fn mark_removed(&self) {
        self.update(|s| EntryState {
            removed: true,
            ..s.clone()
        });
    }

    /// Move to `to` (new calls are refused at once), then let running calls
    /// finish and dispose the instance, each bounded by the dispose timeout.
    /// Returns whether it stopped cleanly.
    pub(crate) async fn halt(&self, to: ProviderState) -> bool {
        match self.take_instance(to) {
            Some(inst) => inst.dispose(inst.limits().dispose_timeout()).await,
            None => true,
        }
    }

    /// Record a health check; `Some((from, to))` when the status flips.
    pub(crate) fn observe_health(
        &self,
        check: HealthCheck,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<(HealthStatus, HealthStatus)> {
        lock(&self.health).observe(check, healthy_threshold, unhealthy_threshold)
    }

    /// The public view: one version of the provider (from one load), with its
    /// health, breaker and counters as they are now.
    pub(crate) fn snapshot(&self) -> ProviderSnapshot {
        let state = self.state.load_full();
        let health = lock(&self.health).clone();
        let settings = &state.template.settings;
        ProviderSnapshot {
            name: self.name.clone(),
            state: state.lifecycle,
            registered_at_unix_ms: unix_ms(self.registered_at),
            health: health.status,
            health_message: health.message,
            last_health_check: health.last_check,
            circuit: self.breaker.snapshot(),
            capabilities: state.capabilities.clone(),
            metadata: (*state.metadata).clone(),
            limits: settings.limits.clone(),
            allowed_hosts: settings.egress.allowed_hosts().to_vec(),
            secret_names: settings
                .egress
                .secret_names()
                .into_iter()
                .map(String::from)
                .collect(),
            config_keys: settings.config.iter().map(|(k, _)| k.clone()).collect(),
            pool: state.current.as_ref().map(|c| c.pool_stats()),
            calls: self.stats.snapshot(),
        }
    }
}

/// `NOT_FOUND` for a name that is not (or no longer) registered.
pub(crate) fn not_found(name: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("no provider named {name:?} is registered"),
    )
    .with_provider(name)
}
