//! What the registry, its handles and its monitor tasks share: the sandbox, the
//! settings, the breaker clock, the built-ins, the event bus and the
//! shutting-down flag.
//!
//! It lives apart from [`Registry`](super::Registry) so that handles and monitor
//! tasks can hold it without depending on the registry itself (the registry
//! depends on them, never the other way round).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::models::ModelIndex;
use crate::builtins::Builtins;
use crate::circuit_breaker::Clock;
use crate::events::{Event, EventBus};
use crate::registry_config::RegistryConfig;
use tamma_sandbox::error::{Error, ErrorCode, Result};
use tamma_sandbox::sandbox::Sandbox;

/// The registry-wide parts. Immutable but for the shutting-down flag.
pub(crate) struct Shared {
    /// The sandbox providers run in.
    pub(crate) sandbox: Sandbox,
    /// The registry's settings (validated).
    pub(crate) config: RegistryConfig,
    /// The clock the circuit breakers use.
    pub(crate) clock: Arc<dyn Clock>,
    /// What [`ComponentSource::Builtin`](super::ComponentSource::Builtin) names.
    pub(crate) builtins: Builtins,
    /// Where registry events go.
    pub(crate) events: EventBus,
    /// Which providers offer which model ids.
    pub(crate) models: Arc<ModelIndex>,
    /// Set once shutdown begins; never cleared.
    shutting_down: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        sandbox: Sandbox,
        config: RegistryConfig,
        clock: Arc<dyn Clock>,
        builtins: Builtins,
    ) -> Self {
        Shared {
            sandbox,
            config,
            clock,
            builtins,
            events: EventBus::new(),
            models: Arc::new(ModelIndex::default()),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        self.events.emit(event);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// `SHUTTING_DOWN` once shutdown has begun.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_shutting_down() {
            Err(Error::new(
                ErrorCode::ShuttingDown,
                "the registry is shutting down",
            ))
        } else {
            Ok(())
        }
    }
}
