//! Shared helpers for the end-to-end tests: where the built guest components are,
//! and a sandbox shared by the tests of one process (one engine, as in production).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use tamma_registry::{
    Builtins, Error, ErrorCode, LoadedComponent, ProviderInstance, ProviderSettings, Sandbox,
};
use tamma_sandbox::compile_cache::CompileCache;
use tamma_sandbox::engine::{EngineConfig, SandboxEngine};
use tamma_sandbox::types::{CompletionRequest, StreamChunk, ToolCall, ToolCallDelta};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// Path of a built guest component, e.g. `guest("echo")`. Panics with the command
/// to run when the guests have not been built.
pub fn guest(name: &str) -> PathBuf {
    let path = workspace_root()
        .join("target/wasm32-wasip2/guest")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "guest component {} is missing: run `make guests` first",
        path.display()
    );
    path
}

/// Bytes of a built guest component.
pub fn guest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).expect("guest component is readable")
}

/// The built-in provider types `tamma` embeds (`echo`, `openai`, `anthropic`),
/// read from the built guests, for registries that resolve `builtin` sources.
pub fn builtins() -> Builtins {
    static BUILTINS: OnceLock<Builtins> = OnceLock::new();
    BUILTINS
        .get_or_init(|| {
            Builtins::new(
                ["echo", "openai", "anthropic"].map(|n| (n, bytes::Bytes::from(guest_bytes(n)))),
            )
        })
        .clone()
}

/// Compile cache shared by every test process of a checkout: the JavaScript and
/// Python components take seconds to compile, and each test binary is a process.
pub fn test_cache_dir() -> PathBuf {
    workspace_root().join("target/test-compile-cache")
}

/// One sandbox per test process, as in production (one engine).
pub fn sandbox() -> Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            let dir = test_cache_dir();
            let engine = SandboxEngine::new(EngineConfig {
                pool_instances: 200,
                ..EngineConfig::default()
            })
            .expect("engine");
            Sandbox::new(engine, CompileCache::new(dir)).expect("sandbox")
        })
        .clone()
}

/// The guest component `name`, compiled once per process (concurrent tests wait
/// for the first): the JavaScript and Python components take seconds to compile.
pub fn loaded(name: &str) -> LoadedComponent {
    static LOADED: OnceLock<Mutex<HashMap<String, Arc<OnceLock<LoadedComponent>>>>> =
        OnceLock::new();
    let cell = LOADED
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        sandbox()
            .load_file(&guest(name))
            .unwrap_or_else(|e| panic!("{name} loads: {e}"))
    })
    .clone()
}

/// A provider of the guest `name` (compiled once per process, see [`loaded`]) with
/// `settings`. Needs a multi-thread runtime (the first compile blocks in place).
pub async fn instantiate_loaded(
    name: &str,
    settings: ProviderSettings,
) -> Result<ProviderInstance, Error> {
    let component = tokio::task::block_in_place(|| loaded(name));
    sandbox().instantiate_with(name, &component, settings).await
}

/// A provider of the guest `name`, loaded from its file, with `settings`.
pub async fn load_and_instantiate(
    name: &str,
    settings: ProviderSettings,
) -> Result<ProviderInstance, Error> {
    let sb = sandbox();
    let loaded = sb
        .load_file(&guest(name))
        .unwrap_or_else(|e| panic!("{name} guest loads: {e:?}"));
    sb.instantiate_with(name, &loaded, settings).await
}

/// The guest's own error code (`rate-limit-exceeded`, ...), its retryable flag and
/// retry-after, from a runtime error that must be a provider error.
pub fn guest_error(err: &Error) -> (&'static str, bool, Option<u64>) {
    assert_eq!(err.code, ErrorCode::ProviderError, "{err:?}");
    let pe = err
        .provider_error
        .as_ref()
        .expect("carries the guest's error");
    (pe.code.as_str(), pe.retryable, pe.retry_after_ms)
}

/// The error of a `complete` call that must fail.
pub async fn complete_err(p: &ProviderInstance, req: &CompletionRequest) -> Error {
    p.complete(req).await.expect_err("the call fails")
}

/// Every chunk of a stream until its end, or the chunks so far and the error (also
/// when `stream` itself refuses: no chunks and its error).
pub async fn drain(
    p: &ProviderInstance,
    req: &CompletionRequest,
) -> (Vec<StreamChunk>, Option<Error>) {
    let mut stream = match p.stream(req).await {
        Ok(s) => s,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut chunks = Vec::new();
    loop {
        match stream.next().await {
            Ok(Some(c)) => chunks.push(c),
            Ok(None) => return (chunks, None),
            Err(e) => return (chunks, Some(e)),
        }
    }
}

/// Every chunk of a stream until its end, or the first error.
pub async fn collect(
    p: &ProviderInstance,
    req: &CompletionRequest,
) -> Result<Vec<StreamChunk>, Error> {
    match drain(p, req).await {
        (chunks, None) => Ok(chunks),
        (_, Some(e)) => Err(e),
    }
}

/// The whole tool calls that streamed tool-call deltas add up to, by their index.
pub fn assemble_tool_calls(deltas: &[ToolCallDelta]) -> Vec<ToolCall> {
    let mut calls: Vec<ToolCall> = Vec::new();
    for d in deltas {
        let i = d.index as usize;
        if calls.len() <= i {
            calls.resize(
                i + 1,
                ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                },
            );
        }
        if let Some(id) = &d.id {
            calls[i].id = id.clone();
        }
        if let Some(name) = &d.name {
            calls[i].name = name.clone();
        }
        calls[i].arguments.push_str(&d.arguments_delta);
    }
    calls
}
