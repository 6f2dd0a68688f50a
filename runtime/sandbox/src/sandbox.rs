//! Loading components into the sandbox: validation, compilation (through the
//! compile cache), type-checking against the `tamma:provider/provider` world, and
//! creating a provider's instance pool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use wasmtime::component::{Component, HasSelf, Linker};

use crate::bindings::{host, v0_1};
use crate::compile_cache::{sha256_hex, CacheOutcome, CompileCache};
use crate::compile_limits::{self, CompileLimits};
use crate::component::Compiled;
use crate::exports::ProviderPre;
// Made here, defined apart (see `component`); also named from here.
pub use crate::component::LoadedComponent;
use crate::engine::SandboxEngine;
use crate::error::{Error, ErrorCode, Result};
use crate::host::HostState;
use crate::limits::Limits;
use crate::pool::InstancePool;
use crate::provider::ProviderInstance;
use crate::settings::ProviderSettings;

/// Largest component file accepted, bytes (the JS and Python runtimes are ~20 MB).
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

/// The engine, the linker with every host import, and the compile cache.
#[derive(Clone)]
pub struct Sandbox {
    engine: SandboxEngine,
    linker: Arc<Linker<HostState>>,
    cache: CompileCache,
    /// Structural limits checked before compiling.
    compile_limits: CompileLimits,
    /// Components already in memory, by SHA-256: a thousand providers running one
    /// component share one copy of its compiled code (a few hundred KiB each
    /// otherwise). Weak, so unregistering the last user frees the code.
    loaded: Arc<Mutex<HashMap<String, Weak<Compiled>>>>,
}

impl Sandbox {
    /// A sandbox on `engine` with `cache`.
    pub fn new(engine: SandboxEngine, cache: CompileCache) -> Result<Self> {
        let mut linker = Linker::<HostState>::new(engine.engine());
        let link_err = |e: wasmtime::Error| {
            Error::new(ErrorCode::Internal, format!("linking host imports: {e:#}"))
        };
        // All of WASI 0.2 is linked so that components built by ordinary toolchains
        // (whose standard libraries import cli/filesystem/sockets) instantiate; the
        // `WasiCtx` in `HostState` grants none of it.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link_err)?;
        // `host` at both contract versions: wasmtime matches 0.1.x and 0.2.x imports
        // as different interfaces.
        host::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(link_err)?;
        v0_1::tamma::provider::host::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(link_err)?;
        Ok(Sandbox {
            engine,
            linker: Arc::new(linker),
            cache,
            compile_limits: CompileLimits::default(),
            loaded: Arc::default(),
        })
    }

    /// The same sandbox checking `limits` before it compiles a component.
    pub fn with_compile_limits(mut self, limits: CompileLimits) -> Self {
        self.compile_limits = limits;
        self
    }

    /// The engine.
    pub fn engine(&self) -> &SandboxEngine {
        &self.engine
    }

    /// The compile cache.
    pub fn cache(&self) -> &CompileCache {
        &self.cache
    }

    /// Read and load a component file.
    pub fn load_file(&self, path: &Path) -> Result<LoadedComponent> {
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::new(
                ErrorCode::InvalidComponent,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        if meta.len() > MAX_COMPONENT_BYTES as u64 {
            return Err(too_big(meta.len() as usize));
        }
        let bytes = std::fs::read(path).map_err(|e| {
            Error::new(
                ErrorCode::InvalidComponent,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        self.load(&bytes)
    }

    /// Validate, compile (or load from the cache) and type-check a component.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedComponent> {
        check_header(bytes)?;
        let sha256 = sha256_hex(bytes);
        let in_memory = self.loaded().get(&sha256).and_then(Weak::upgrade);
        if let Some(compiled) = in_memory {
            return Ok(LoadedComponent {
                compiled,
                sha256,
                cache: CacheOutcome::Memory,
                size: bytes.len(),
            });
        }
        // Before the compiler sees it: compile time and memory grow with its
        // structure, which the size cap alone does not bound.
        compile_limits::check(bytes, &self.compile_limits)?;
        let (component, cache) = self.cache.load_or_compile(&self.engine, bytes, &sha256)?;
        let pre = self.type_check(&component)?;
        let compiled = Arc::new(Compiled { pre, component });
        {
            let mut loaded = self.loaded();
            loaded.retain(|_, w| w.strong_count() > 0);
            loaded.insert(sha256.clone(), Arc::downgrade(&compiled));
        }
        Ok(LoadedComponent {
            compiled,
            sha256,
            cache,
            size: bytes.len(),
        })
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Compiled>>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Check that a compiled component's imports are all provided by the host and
    /// that it exports `tamma:provider/provider-api` with the expected types.
    fn type_check(&self, component: &Component) -> Result<ProviderPre> {
        let invalid = |e: wasmtime::Error| {
            Error::new(
                ErrorCode::InvalidComponent,
                format!(
                    "component does not satisfy the tamma:provider/provider world: {}",
                    format!("{e:#}").replace('\n', " ")
                ),
            )
        };
        let instance_pre = self.linker.instantiate_pre(component).map_err(invalid)?;
        ProviderPre::new(instance_pre).map_err(invalid)
    }

    /// [`Sandbox::instantiate_with`] with a configuration and limits and no network.
    pub async fn instantiate(
        &self,
        name: &str,
        component: &LoadedComponent,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<ProviderInstance> {
        self.instantiate_with(name, component, ProviderSettings::new(config, limits))
            .await
    }

    /// Create a provider from a loaded component: validate the limits, build its
    /// pool, create and initialize one instance, and read its capabilities.
    pub async fn instantiate_with(
        &self,
        name: &str,
        component: &LoadedComponent,
        settings: ProviderSettings,
    ) -> Result<ProviderInstance> {
        let limits = &settings.limits;
        let mut problems = limits.validate();
        let max = self.engine.config().max_memory_mib;
        if limits.memory_mib > max {
            problems.push(format!(
                "memory_mib: {} exceeds the engine's maximum of {max}",
                limits.memory_mib
            ));
        }
        if !problems.is_empty() {
            return Err(
                Error::new(ErrorCode::InvalidConfig, problems.join("; ")).with_provider(name)
            );
        }
        let pool = InstancePool::new(
            Arc::from(name),
            self.engine.clone(),
            component.pre().clone(),
            settings,
        );
        let mut first = pool.spawn().await.map_err(|e| e.with_provider(name))?;
        let caps = first
            .capabilities()
            .await
            .map_err(|e| e.with_provider(name))?;
        pool.put_idle(first);
        Ok(ProviderInstance::new(pool, caps, component.clone()))
    }
}

fn too_big(size: usize) -> Error {
    Error::new(
        ErrorCode::InvalidComponent,
        format!("component is {size} bytes; the limit is {MAX_COMPONENT_BYTES}"),
    )
}

/// Reject what is obviously not a component before handing bytes to the compiler,
/// with a message that says what it is instead.
fn check_header(bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_COMPONENT_BYTES {
        return Err(too_big(bytes.len()));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(Error::new(
            ErrorCode::InvalidComponent,
            "not a WebAssembly binary (missing the \\0asm header)",
        ));
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(Error::new(
            ErrorCode::InvalidComponent,
            "this is a core WebAssembly module, not a component: build for wasm32-wasip2 \
             (or wrap it with `wasm-tools component new`)",
        )),
        v => Err(Error::new(
            ErrorCode::InvalidComponent,
            format!("unsupported WebAssembly version/layer {v:02x?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_name_the_problem() {
        assert!(check_header(b"hello world")
            .unwrap_err()
            .message
            .contains("not a WebAssembly"));
        let core = b"\0asm\x01\0\0\0";
        assert!(check_header(core)
            .unwrap_err()
            .message
            .contains("core WebAssembly module"));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert_eq!(
            check_header(b"\0as").unwrap_err().code,
            ErrorCode::InvalidComponent
        );
    }
}
