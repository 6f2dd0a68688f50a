//! Entry points for benchmarks only (not a stable API): the pieces of the call
//! path measured in isolation, and a bare wasmtime call of the same export to
//! compare the runtime's own overhead against.

use std::sync::Arc;

use wasmtime::Store;

use crate::bindings;
use crate::component::LoadedComponent;
use crate::error::{Error, ErrorCode, Result};
use crate::host::HostState;
use crate::instance::Instance;
use crate::sandbox::Sandbox;
use crate::settings::ProviderSettings;
use crate::types::{CompletionRequest, CompletionResponse};

/// Instantiate one instance from the component's `InstancePre` (a fresh `Store`,
/// no `initialize`), then drop it: what the pool pays for a new instance.
pub async fn instantiate_once(sandbox: &Sandbox, component: &LoadedComponent) -> Result<()> {
    let inst = Instance::instantiate(
        sandbox.engine(),
        component.pre(),
        Arc::from("bench"),
        Arc::new(ProviderSettings::default()),
        Default::default(),
    )
    .await?;
    drop(inst);
    Ok(())
}

/// A store and bindings driven with plain wasmtime calls: no deadline, no budgets
/// re-armed, no error classification, no pool. The baseline for the call path.
pub struct BareInstance {
    store: Store<HostState>,
    bindings: crate::exports::Provider,
}

impl BareInstance {
    /// Instantiate and initialize.
    pub async fn new(sandbox: &Sandbox, component: &LoadedComponent) -> Result<Self> {
        // Budgets are armed once and never re-armed, so make the log budget
        // unlimited: the echo guest logs on every call.
        let mut settings = ProviderSettings::default();
        settings.limits.max_log_records_per_call = u32::MAX;
        settings.limits.max_log_bytes_per_call = u64::MAX;
        let mut store = Store::new(
            sandbox.engine().engine(),
            HostState::new(Arc::from("bench"), &settings),
        );
        if sandbox.engine().config().consume_fuel {
            let _ = store.set_fuel(u64::MAX);
        }
        // The engine has epoch interruption on; a far deadline keeps it out of the way.
        store.set_epoch_deadline(u64::MAX / 2);
        let err = |e: wasmtime::Error| Error::new(ErrorCode::Internal, format!("{e:#}"));
        let bindings = component
            .pre()
            .instantiate_async(&mut store)
            .await
            .map_err(err)?;
        let config = Vec::new();
        crate::exports::api!(bindings, |a| a.call_initialize(&mut store, &config))
            .map_err(err)?
            .map_err(|e| Error::from_provider_error(bindings::provider_error(e)))?;
        Ok(BareInstance { store, bindings })
    }

    /// One `complete` call, converted to host types like the runtime does.
    pub async fn complete(&mut self, req: &CompletionRequest) -> Result<CompletionResponse> {
        let wreq = bindings::request(req);
        let store = &mut self.store;
        let r = crate::exports::api!(self.bindings, |a| a.call_complete(&mut *store, &wreq))
            .map_err(|e| Error::new(ErrorCode::Trap, format!("{e:#}")))?;
        r.map(bindings::response)
            .map_err(|e| Error::from_provider_error(bindings::provider_error(e)))
    }
}
