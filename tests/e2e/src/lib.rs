//! Shared helpers for the end-to-end tests: where the built guest components are,
//! and a sandbox shared by the tests of one process (one engine, as in production).

use std::path::PathBuf;
use std::sync::OnceLock;

use tamma_runtime::compile_cache::CompileCache;
use tamma_runtime::engine::{EngineConfig, SandboxEngine};
use tamma_runtime::Sandbox;

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
