//! One sandboxed instance: a `Store` of its own with its limits, and the guarded
//! entry points into the guest.
//!
//! Every call into the guest goes through the `guarded!` macro, which arms the
//! call's budgets (fuel, wall-clock deadline, log volume), runs the call under a
//! tokio deadline, and turns any failure into a structured [`Error`]. Two deadlines
//! cooperate: the epoch callback stops guest *code* at the deadline (it also yields
//! to the executor every tick, so a spinning guest never starves a tokio worker),
//! and the tokio deadline stops a guest *blocked in a host import*, which epochs
//! cannot interrupt. Either way, and after any trap, the instance is marked
//! retired: wasmtime refuses to re-enter a trapped store, and a cancelled call may
//! leave guest state half-updated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use wasmtime::component::ResourceAny;
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings;
use crate::capability_limits;
use crate::engine::SandboxEngine;
use crate::error::{Error, ErrorCode, Result};
use crate::exports::{api, Provider, ProviderPre};
use crate::host::HostState;
use crate::limits::Limits;
use crate::settings::ProviderSettings;
use crate::types;

/// Cuts off every running call of a provider at once (used when it is disposed
/// while calls still hang): guest code sees it at the next epoch tick, a call
/// blocked in a host import through the notification.
#[derive(Debug, Default)]
pub(crate) struct KillSwitch {
    killed: AtomicBool,
    notify: Notify,
}

impl KillSwitch {
    pub(crate) fn trigger(&self) {
        self.killed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_triggered(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Resolves once triggered.
    async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Register before checking the flag so a trigger in between is not missed.
        notified.as_mut().enable();
        if self.is_triggered() {
            return;
        }
        notified.await;
    }
}

/// Run one guest call with the instance's budgets and a deadline. A macro rather
/// than a method taking a closure, so the call can borrow the store and the
/// bindings (disjoint fields) while the future stays `Send` without boxing.
macro_rules! guarded {
    ($self:ident, $what:expr, $timeout:expr, |$s:ident, $b:ident| $call:expr) => {{
        let timeout: Duration = $timeout;
        let deadline = $self.begin(timeout)?;
        let outcome = {
            let $s = &mut $self.store;
            #[allow(unused_variables)]
            let $b = &$self.bindings;
            // The tokio deadline is the backstop for time blocked in host imports;
            // it trails the epoch deadline by a few ticks so that guest code stuck
            // in a loop is reported by the epoch callback, which knows it was guest code.
            // `async move` keeps temporaries of `$call` alive for the whole call.
            let call =
                tokio::time::timeout_at(
                    (deadline + $self.grace).into(),
                    async move { $call.await },
                );
            tokio::select! {
                biased;
                r = call => Some(r),
                _ = $self.kill.wait() => None,
            }
        };
        $self.end($what, timeout, outcome)
    }};
}

/// An instantiated provider in its own store.
pub(crate) struct Instance {
    store: Store<HostState>,
    bindings: Provider,
    settings: Arc<ProviderSettings>,
    fuel_enabled: bool,
    /// The provider's kill switch.
    kill: Arc<KillSwitch>,
    /// How far the tokio backstop trails the epoch deadline.
    grace: Duration,
    /// Set once the instance must not be used again.
    pub(crate) retired: bool,
    /// Fuel burnt by the last call (0 when fuel is off).
    pub(crate) last_fuel_used: u64,
    /// Fuel burnt since the pool last collected it (a lease may make several calls).
    pub(crate) fuel_unreported: u64,
}

impl Instance {
    /// Instantiate from a pre-linked component. Does not call `initialize`.
    pub(crate) async fn instantiate(
        engine: &SandboxEngine,
        pre: &ProviderPre,
        provider: Arc<str>,
        settings: Arc<ProviderSettings>,
        kill: Arc<KillSwitch>,
    ) -> Result<Self> {
        let limits = &settings.limits;
        let mut store = Store::new(engine.engine(), HostState::new(provider, &settings));
        store.limiter(|s| &mut s.limiter);
        let switch = kill.clone();
        store.epoch_deadline_callback(move |ctx| {
            if switch.is_triggered() || Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let fuel_enabled = engine.config().consume_fuel;
        let deadline = Instant::now() + limits.init_timeout();
        arm(&mut store, fuel_enabled, limits, deadline);
        let result =
            tokio::time::timeout_at(deadline.into(), pre.instantiate_async(&mut store)).await;
        let bindings = match result {
            Ok(Ok(b)) => b,
            Ok(Err(e)) if wrong_export_type(&e) => {
                return Err(Error::new(
                    ErrorCode::InvalidComponent,
                    format!(
                        "component does not satisfy the tamma:provider/provider world: an export \
                         has the right name but the wrong type: {}",
                        format!("{e:#}").replace('\n', " ")
                    ),
                ));
            }
            Ok(Err(e)) => {
                return Err(classify(e, store.data(), limits, "instantiate"));
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorCode::Timeout,
                    format!("instantiation exceeded {} ms", limits.init_timeout_ms),
                ))
            }
        };
        Ok(Instance {
            store,
            bindings,
            settings,
            fuel_enabled,
            kill,
            grace: engine.config().epoch_tick * 4,
            retired: false,
            last_fuel_used: 0,
            fuel_unreported: 0,
        })
    }

    /// Arm the budgets of one guest call; returns its deadline.
    fn begin(&mut self, timeout: Duration) -> Result<Instant> {
        if self.retired {
            return Err(Error::new(ErrorCode::Internal, "instance is retired"));
        }
        if self.kill.is_triggered() {
            self.retired = true;
            return Err(cut_off());
        }
        let deadline = Instant::now() + timeout;
        arm(
            &mut self.store,
            self.fuel_enabled,
            &self.settings.limits,
            deadline,
        );
        // Retired until the call completes: if the caller drops the call future
        // half-way (a client disconnects), `end` never runs, and an instance left
        // mid-call must not go back to the pool (wasmtime would refuse to re-enter it).
        self.retired = true;
        Ok(deadline)
    }

    /// Account for a finished (or timed-out) guest call and classify its failure.
    fn end<T>(
        &mut self,
        what: &'static str,
        timeout: Duration,
        outcome: Option<std::result::Result<wasmtime::Result<T>, tokio::time::error::Elapsed>>,
    ) -> Result<T> {
        self.last_fuel_used = if self.fuel_enabled {
            self.settings
                .limits
                .fuel
                .saturating_sub(self.store.get_fuel().unwrap_or(0))
        } else {
            0
        };
        self.fuel_unreported += self.last_fuel_used;
        let Some(outcome) = outcome else {
            self.retired = true;
            return Err(cut_off());
        };
        match outcome {
            Ok(Ok(v)) => {
                self.retired = false;
                Ok(v)
            }
            Ok(Err(_)) if self.kill.is_triggered() => {
                self.retired = true;
                Err(cut_off())
            }
            Ok(Err(e)) => {
                self.retired = true;
                Err(classify(e, self.store.data(), &self.settings.limits, what))
            }
            Err(_) => {
                self.retired = true;
                Err(Error::new(
                    ErrorCode::Timeout,
                    format!(
                        "{what} exceeded its {} ms deadline while blocked in a host call",
                        timeout.as_millis()
                    ),
                ))
            }
        }
    }

    // `&Vec` because that is what the generated binding takes.
    #[allow(clippy::ptr_arg)]
    pub(crate) async fn initialize(&mut self, config: &Vec<(String, String)>) -> Result<()> {
        let timeout = self.settings.limits.init_timeout();
        let r = guarded!(self, "initialize", timeout, |s, b| async move {
            api!(b, |a| a.call_initialize(s, config))
        })?;
        r.map_err(|e| Error::from_provider_error(bindings::provider_error(e)))
    }

    /// The guest's declared capabilities, bounded while lifting and checked right
    /// after (`capability_limits`); past a limit `REGISTRATION_FAILED` naming it.
    pub(crate) async fn capabilities(&mut self) -> Result<types::Capabilities> {
        let timeout = self.settings.limits.timeout();
        let normal = self.store.hostcall_fuel();
        self.store.set_hostcall_fuel(capability_limits::LIFT_BUDGET);
        let r = self.declared_capabilities(timeout).await;
        self.store.set_hostcall_fuel(normal);
        let refused = |message: String| Error::new(ErrorCode::RegistrationFailed, message);
        let c = match r {
            Err(e) if capability_limits::lift_budget_exhausted(&e.message) => {
                return Err(refused(capability_limits::lift_budget_message(
                    "capabilities",
                )))
            }
            r => r?,
        };
        if let Err(message) = capability_limits::check_capabilities(&c) {
            // A huge declaration leaves a huge guest heap behind: start fresh.
            self.retired = true;
            return Err(refused(message));
        }
        Ok(c)
    }

    /// `capabilities()` and, for a component exporting `embeddings`, its
    /// embedding models, as declared (bounded by the caller).
    async fn declared_capabilities(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<types::Capabilities> {
        let c = guarded!(self, "capabilities", timeout, |s, b| async move {
            api!(b, |a| a.call_capabilities(s))
        })?;
        let mut caps = bindings::capabilities(c);
        if self.bindings.embeddings.is_some() {
            caps.embeddings = true;
            let models = guarded!(self, "embedding-models", timeout, |s, b| async move {
                match &b.embeddings {
                    Some(e) => e.call_models(s).await,
                    None => Ok(Vec::new()),
                }
            })?;
            caps.embedding_models = models.into_iter().map(bindings::embedding_model).collect();
        }
        Ok(caps)
    }

    /// The guest's `list-models`, bounded like its capabilities; past a limit
    /// `RESPONSE_TOO_LARGE` naming it.
    pub(crate) async fn list_models(&mut self) -> Result<Vec<types::ModelInfo>> {
        let timeout = self.settings.limits.timeout();
        let normal = self.store.hostcall_fuel();
        self.store.set_hostcall_fuel(capability_limits::LIFT_BUDGET);
        let r = guarded!(self, "list-models", timeout, |s, b| async move {
            api!(b, |a| a.call_list_models(s))
        });
        self.store.set_hostcall_fuel(normal);
        let too_many = |message: String| Error::new(ErrorCode::ResponseTooLarge, message);
        let r = match r {
            Err(e) if capability_limits::lift_budget_exhausted(&e.message) => {
                return Err(too_many(capability_limits::lift_budget_message(
                    "list-models",
                )))
            }
            r => r?,
        };
        let models: Vec<types::ModelInfo> = r
            .map(|v| v.into_iter().map(bindings::model).collect())
            .map_err(|e| Error::from_provider_error(bindings::provider_error(e)))?;
        if let Err(message) = capability_limits::check_models(&models, "list-models") {
            self.retired = true;
            return Err(too_many(message));
        }
        Ok(models)
    }

    pub(crate) async fn complete(
        &mut self,
        req: &types::CompletionRequest,
    ) -> Result<types::CompletionResponse> {
        let timeout = self.settings.limits.timeout();
        let wreq = bindings::request(req);
        let r = guarded!(self, "complete", timeout, |s, b| async move {
            api!(b, |a| a.call_complete(s, &wreq))
        })?;
        let resp = r
            .map(bindings::response)
            .map_err(|e| Error::from_provider_error(bindings::provider_error(e)))?;
        let size = resp.payload_bytes() as u64;
        if size > self.settings.limits.max_response_bytes {
            // The guest is fine, but its memory now holds a huge answer: start fresh.
            self.retired = true;
            return Err(too_large(size, self.settings.limits.max_response_bytes));
        }
        Ok(resp)
    }

    /// Embed every input (`embeddings.embed`); a component without the export
    /// answers `UNSUPPORTED` without a guest call.
    pub(crate) async fn embed(
        &mut self,
        req: &types::EmbeddingRequest,
    ) -> Result<types::EmbeddingResponse> {
        if self.bindings.embeddings.is_none() {
            return Err(unsupported_embeddings());
        }
        let timeout = self.settings.limits.timeout();
        let wreq = bindings::embedding_request(req);
        let r = guarded!(self, "embed", timeout, |s, b| async move {
            match &b.embeddings {
                Some(e) => e.call_embed(s, &wreq).await,
                None => Err(wasmtime::format_err!("no embeddings export")),
            }
        })?;
        let resp = r
            .map(bindings::embedding_response)
            .map_err(|e| Error::from_provider_error(bindings::provider_error(e)))?;
        let size = resp.payload_bytes() as u64;
        if size > self.settings.limits.max_response_bytes {
            self.retired = true;
            return Err(too_large(size, self.settings.limits.max_response_bytes));
        }
        if resp.vectors.len() != req.inputs.len() {
            return Err(Error::new(
                ErrorCode::ProviderError,
                format!(
                    "embed returned {} vectors for {} inputs",
                    resp.vectors.len(),
                    req.inputs.len()
                ),
            ));
        }
        Ok(resp)
    }

    pub(crate) async fn stream_start(
        &mut self,
        req: &types::CompletionRequest,
    ) -> Result<ResourceAny> {
        let timeout = self.settings.limits.timeout();
        let wreq = bindings::request(req);
        let r = guarded!(self, "stream", timeout, |s, b| async move {
            api!(b, |a| a.call_stream(s, &wreq))
        })?;
        r.map_err(|e| Error::from_provider_error(bindings::provider_error(e)))
    }

    pub(crate) async fn stream_next(
        &mut self,
        handle: ResourceAny,
    ) -> Result<Option<types::StreamChunk>> {
        let timeout = self.settings.limits.timeout();
        let r = guarded!(self, "stream-next", timeout, |s, b| async move {
            api!(b, |a| a.completion_stream().call_next(s, handle))
        })?;
        r.map(|c| c.map(bindings::chunk))
            .map_err(|e| Error::from_provider_error(bindings::provider_error(e)))
    }

    /// Drop the guest-side stream resource so the instance can be reused.
    pub(crate) async fn stream_close(&mut self, handle: ResourceAny) -> Result<()> {
        let timeout = self.settings.limits.timeout();
        guarded!(self, "stream-close", timeout, |s, b| handle
            .resource_drop_async(s))
    }

    pub(crate) async fn health_check(&mut self, timeout: Duration) -> Result<types::Health> {
        let h = guarded!(self, "health-check", timeout, |s, b| async move {
            api!(b, |a| a.call_health_check(s))
        })?;
        Ok(bindings::health(h))
    }

    pub(crate) async fn dispose(&mut self) -> Result<()> {
        let timeout = self.settings.limits.dispose_timeout();
        let r = guarded!(self, "dispose", timeout, |s, b| async move {
            api!(b, |a| a.call_dispose(s))
        });
        // No call follows dispose on this instance.
        self.retired = true;
        r
    }

    /// Mark the response cap exceeded for a stream (its total is tracked by the caller).
    pub(crate) fn retire(&mut self) {
        self.retired = true;
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.settings.limits
    }
}

fn arm(store: &mut Store<HostState>, fuel: bool, limits: &Limits, deadline: Instant) {
    if fuel {
        // Cannot fail: fuel is enabled on the engine when `fuel` is true.
        let _ = store.set_fuel(limits.fuel);
    }
    store.set_epoch_deadline(1);
    let data = store.data_mut();
    data.begin_call(deadline);
    data.limiter.memory_limit_hit = false;
    data.log_limit_hit = false;
}

/// The error of an embedding call to a provider that does not export `embeddings`.
pub(crate) fn unsupported_embeddings() -> Error {
    Error::new(
        ErrorCode::Unsupported,
        "the provider does not export tamma:provider/embeddings (it serves chat only)",
    )
}

/// Whether instantiation failed because an export's type differs from the
/// world's. The generated bindings check each export's type (`get_typed_func`)
/// only when an instance is made, not when the component is type-checked
/// against the linker, so this is where a right-name-wrong-type component shows;
/// the first instance is made at registration, before any call. wasmtime gives
/// the failure no type of its own, so its context text is matched (a test,
/// `export_with_the_wrong_type_is_an_invalid_component`, fails if it changes).
fn wrong_export_type(e: &wasmtime::Error) -> bool {
    e.chain()
        .any(|c| c.to_string() == "failed to convert function to given type")
}

fn cut_off() -> Error {
    Error::new(
        ErrorCode::ShuttingDown,
        "call cut off: the provider was disposed while it was still running",
    )
}

pub(crate) fn too_large(size: u64, cap: u64) -> Error {
    Error::new(
        ErrorCode::ResponseTooLarge,
        format!("response of {size} bytes exceeds the cap of {cap} bytes"),
    )
}

/// Turn a failed guest call into a structured error. The host state is consulted
/// first because a memory-cap or log-cap stop surfaces as a generic trap.
fn classify(err: wasmtime::Error, state: &HostState, limits: &Limits, what: &str) -> Error {
    if state.limiter.memory_limit_hit {
        return Error::new(
            ErrorCode::MemoryLimit,
            format!(
                "{what}: guest tried to grow its memory past the cap of {} MiB",
                limits.memory_mib
            ),
        );
    }
    if state.log_limit_hit {
        return Error::new(
            ErrorCode::LogLimit,
            format!(
                "{what}: guest exceeded the log cap of {} bytes / {} records per call",
                limits.max_log_bytes_per_call, limits.max_log_records_per_call
            ),
        );
    }
    if err
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        // Not the guest's fault: the engine's instance pool is full.
        return Error::new(
            ErrorCode::Overloaded,
            format!("{what}: the engine's instance pool is full ({err})"),
        );
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Error::new(
            ErrorCode::FuelExhausted,
            format!(
                "{what}: guest used its whole fuel budget of {}",
                limits.fuel
            ),
        ),
        Some(Trap::Interrupt) => Error::new(
            ErrorCode::Timeout,
            format!(
                "{what}: guest code ran past its {} ms deadline",
                limits.timeout_ms
            ),
        ),
        Some(Trap::StackOverflow) => Error::new(
            ErrorCode::Trap,
            format!("{what}: guest trapped: call stack exhausted (unbounded recursion?)"),
        ),
        Some(trap) => match state.panic_message() {
            Some(msg) => Error::new(ErrorCode::Trap, format!("{what}: guest panicked: {msg}")),
            None => Error::new(ErrorCode::Trap, format!("{what}: guest trapped: {trap}")),
        },
        None => {
            let detail = match state.stderr_tail() {
                Some(tail) => format!("{err:#}; stderr: {tail}"),
                None => format!("{err:#}"),
            };
            Error::new(ErrorCode::Trap, format!("{what}: {detail}"))
        }
    }
}
