//! The process-wide wasmtime engine: compilation settings, the instance allocator,
//! and the epoch ticker that gives guest code a wall clock.
//!
//! One [`SandboxEngine`] serves every provider. It enables fuel (a deterministic
//! compute budget per call) and epoch interruption (wall-clock deadlines); a ticker
//! thread bumps the epoch every [`EngineConfig::epoch_tick`] and stops on its own
//! once the engine is dropped, because it only holds a weak reference.
//!
//! The pooling allocator makes instantiation several times cheaper, but it reserves
//! a large virtual address space up front and fails where that is not available
//! (39-bit address spaces, some emulators, tight `ulimit -v`). We probe it at start
//! and fall back to on-demand allocation with a logged reason.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::{Error, ErrorCode, Result};
use crate::limits::MAX_MEMORY_MIB;

/// The wasmtime version this runtime is built with (reported by `/metrics` as
/// `tamma_build_info`). Written out because wasmtime exports its version only
/// through a hidden internal module; it must follow the `=` pin in the workspace
/// `Cargo.toml`, and a test in `tamma-server` compares it with `Cargo.lock`.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Use the pooling instance allocator when the platform supports it.
    pub pooling: bool,
    /// Component instances the pool holds (all providers together). Default 1 000.
    pub pool_instances: u32,
    /// Largest memory cap any provider may have, MiB; sizes the pool's memory slots.
    pub max_memory_mib: u64,
    /// Count fuel. Turning it off removes the compute budget (benchmarks only).
    pub consume_fuel: bool,
    /// Epoch period: the granularity of wall-clock deadlines for guest code.
    pub epoch_tick: Duration,
    /// Outbound HTTP requests in flight for all providers together (each holds
    /// a connection). Each provider also has its own `max_concurrent_requests`;
    /// this bounds the sum, so many providers cannot together exhaust the
    /// host's sockets or an upstream's connection limit. Default 1 024.
    pub max_outbound_requests: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pooling: true,
            pool_instances: 1_000,
            max_memory_mib: 512,
            consume_fuel: true,
            epoch_tick: Duration::from_millis(5),
            max_outbound_requests: 1_024,
        }
    }
}

/// Which instance allocator the engine ended up with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocatorKind {
    /// The pooling allocator.
    Pooling,
    /// On-demand allocation; the string says why pooling was not used.
    OnDemand(String),
}

/// The process-wide engine with its epoch ticker.
#[derive(Clone)]
pub struct SandboxEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    allocator: AllocatorKind,
    config: EngineConfig,
    ticker_stop: Arc<AtomicBool>,
    /// One permit per outbound request in flight, all providers together.
    outbound: Arc<tokio::sync::Semaphore>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The ticker also exits by itself once every `Engine` clone (Stores hold
        // some) is gone; this just makes it exit promptly.
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for SandboxEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxEngine")
            .field("allocator", &self.inner.allocator)
            .field("config", &self.inner.config)
            .finish()
    }
}

fn base_config(cfg: &EngineConfig) -> Config {
    let mut c = Config::new();
    c.consume_fuel(cfg.consume_fuel);
    c.epoch_interruption(true);
    // Guest backtraces cost ~9 us per trap; the panic message from stderr is what
    // operators read, so keep only a few frames.
    c.wasm_backtrace_max_frames(None);
    c.max_wasm_stack(512 * 1024);
    c.async_stack_size(2 * 1024 * 1024);
    c
}

fn pooling_config(cfg: &EngineConfig) -> PoolingAllocationConfig {
    let n = cfg.pool_instances.max(1);
    let mut p = PoolingAllocationConfig::default();
    // A WASI 0.2 component uses about 3 core instances, 1 memory and 2 tables;
    // leave headroom for components that embed a few more modules.
    p.total_component_instances(n);
    p.total_core_instances(n.saturating_mul(8));
    p.total_memories(n.saturating_mul(2));
    p.total_tables(n.saturating_mul(4));
    p.total_stacks(n);
    p.max_core_instances_per_component(32);
    p.max_memories_per_component(4);
    p.max_tables_per_component(8);
    p.max_memory_size((cfg.max_memory_mib.min(MAX_MEMORY_MIB) as usize) << 20);
    p.table_elements(100_000);
    p.max_component_instance_size(1 << 20);
    // Reset a freed instance's tables with memset rather than a system call, and
    // batch the decommits that remain: instantiation is on every new instance.
    p.table_keep_resident(64 << 10);
    p.decommit_batch_size(16);
    p
}

impl SandboxEngine {
    /// Build an engine; probes the pooling allocator and falls back when it fails.
    pub fn new(cfg: EngineConfig) -> Result<Self> {
        let (engine, allocator) = if cfg.pooling {
            let mut c = base_config(&cfg);
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(&cfg)));
            match Engine::new(&c) {
                Ok(e) => (e, AllocatorKind::Pooling),
                Err(err) => {
                    let why = format!("pooling allocator unavailable: {err:#}");
                    tracing::warn!(reason = %why, "falling back to on-demand instance allocation");
                    (Self::on_demand(&cfg)?, AllocatorKind::OnDemand(why))
                }
            }
        } else {
            (
                Self::on_demand(&cfg)?,
                AllocatorKind::OnDemand("disabled by configuration".into()),
            )
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(&engine, cfg.epoch_tick, ticker_stop.clone())?;
        tracing::debug!(?allocator, "wasmtime engine ready");
        Ok(SandboxEngine {
            inner: Arc::new(Inner {
                engine,
                allocator,
                outbound: Arc::new(tokio::sync::Semaphore::new(
                    cfg.max_outbound_requests.max(1) as usize,
                )),
                config: cfg,
                ticker_stop,
            }),
        })
    }

    fn on_demand(cfg: &EngineConfig) -> Result<Engine> {
        Engine::new(&base_config(cfg))
            .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot build engine: {e:#}")))
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Which allocator is in use.
    pub fn allocator(&self) -> &AllocatorKind {
        &self.inner.allocator
    }

    /// The host-wide budget of outbound requests in flight.
    pub(crate) fn outbound_permits(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.inner.outbound
    }

    /// The settings this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// A stable string identifying compiled-code compatibility (wasmtime version and
    /// every setting that affects codegen); part of the compile-cache key.
    pub fn compatibility_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: deterministic within one build of this binary,
        // which is all the key needs (the wasmtime version is hashed in too).
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        self.inner
            .engine
            .precompile_compatibility_hash()
            .hash(&mut h);
        format!("{:016x}", h.finish())
    }
}

fn spawn_ticker(engine: &Engine, tick: Duration, stop: Arc<AtomicBool>) -> Result<()> {
    let weak = engine.weak();
    thread::Builder::new()
        .name("tamma-epoch".into())
        .spawn(move || loop {
            thread::sleep(tick);
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })
        .map(|_| ())
        .map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("cannot start epoch ticker: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_demand_when_pooling_disabled() {
        let e = SandboxEngine::new(EngineConfig {
            pooling: false,
            ..EngineConfig::default()
        })
        .unwrap();
        assert!(matches!(e.allocator(), AllocatorKind::OnDemand(_)));
    }

    #[test]
    fn pooling_or_reasoned_fallback() {
        let e = SandboxEngine::new(EngineConfig {
            pool_instances: 8,
            ..EngineConfig::default()
        })
        .unwrap();
        match e.allocator() {
            AllocatorKind::Pooling => {}
            AllocatorKind::OnDemand(why) => assert!(why.contains("pooling")),
        }
        assert_eq!(e.compatibility_key(), e.compatibility_key());
        assert_eq!(e.compatibility_key().len(), 16);
    }

    #[test]
    fn ticker_stops_when_engine_dropped() {
        let e = SandboxEngine::new(EngineConfig {
            pooling: false,
            epoch_tick: Duration::from_millis(1),
            ..EngineConfig::default()
        })
        .unwrap();
        let weak = e.engine().weak();
        drop(e);
        // The Engine is freed once our handle is gone: the ticker holds only a weak
        // reference (upgraded for an instant per tick), so nothing keeps it alive.
        let freed = (0..1000).any(|_| {
            if weak.upgrade().is_none() {
                return true;
            }
            thread::sleep(Duration::from_millis(1));
            false
        });
        assert!(freed, "engine kept alive after drop");
    }
}
