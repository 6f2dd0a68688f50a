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

/// One sandbox per test process, with its compile cache in a private temp dir.
pub fn sandbox() -> Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("tamma-test-cache")
                .tempdir()
                .expect("temp dir")
                .keep();
            let engine = SandboxEngine::new(EngineConfig {
                pool_instances: 200,
                ..EngineConfig::default()
            })
            .expect("engine");
            Sandbox::new(engine, CompileCache::new(dir)).expect("sandbox")
        })
        .clone()
}
