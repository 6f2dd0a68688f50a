//! Loading components: bad input is refused with `INVALID_COMPONENT` and a clear
//! message (never a panic), and the compile cache is reused, verified and rebuilt.

use tamma_e2e::{guest, guest_bytes, sandbox};
use tamma_registry::{ErrorCode, Sandbox};
use tamma_sandbox::compile_cache::{CacheOutcome, CompileCache};

fn invalid(bytes: &[u8]) -> String {
    let err = sandbox().load(bytes).expect_err("refused");
    assert_eq!(err.code, ErrorCode::InvalidComponent, "{err}");
    err.message
}

#[test]
fn a_text_file_is_not_webassembly() {
    let msg = invalid(b"#!/bin/sh\necho this is not wasm\n");
    assert!(msg.contains("not a WebAssembly binary"), "{msg}");
}

#[test]
fn a_core_module_is_not_a_component() {
    let module = wat::parse_str("(module (func (export \"complete\")))").unwrap();
    let msg = invalid(&module);
    assert!(
        msg.contains("core WebAssembly module, not a component"),
        "{msg}"
    );
}

#[test]
fn a_component_for_another_world_names_the_missing_export() {
    let other = wat::parse_str(
        r#"(component
             (core module $m (func (export "run") (result i32) i32.const 0))
             (core instance $i (instantiate $m))
             (func $run (result u32) (canon lift (core func $i "run")))
             (export "run" (func $run)))"#,
    )
    .unwrap();
    let msg = invalid(&other);
    assert!(msg.contains("tamma:provider/provider"), "{msg}");
    assert!(msg.contains("provider-api"), "{msg}");
}

#[test]
fn a_component_importing_an_unknown_interface_is_refused() {
    let other = wat::parse_str(
        r#"(component
             (import "acme:evil/backdoor" (instance (export "open" (func)))))"#,
    )
    .unwrap();
    let msg = invalid(&other);
    assert!(msg.contains("acme:evil/backdoor"), "{msg}");
}

#[test]
fn truncated_bytes_are_refused() {
    let bytes = guest_bytes("echo");
    for cut in [9, bytes.len() / 3, bytes.len() - 1] {
        let msg = invalid(&bytes[..cut]);
        assert!(!msg.is_empty());
    }
    invalid(b"");
    invalid(b"\0asm");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let err = sandbox()
        .load_file(std::path::Path::new("/nonexistent/provider.wasm"))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidComponent);
    assert!(err.message.contains("/nonexistent/provider.wasm"));
}

fn sandbox_with_cache(dir: &std::path::Path) -> Sandbox {
    let base = sandbox();
    Sandbox::new(base.engine().clone(), CompileCache::new(dir)).unwrap()
}

#[test]
fn second_load_hits_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let sb = sandbox_with_cache(dir.path());
    let path = guest("echo");
    assert_eq!(sb.load_file(&path).unwrap().cache, CacheOutcome::Miss);
    assert_eq!(sb.load_file(&path).unwrap().cache, CacheOutcome::Hit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_cache_entry_is_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let sb = sandbox_with_cache(dir.path());
    let bytes = guest_bytes("echo");
    let loaded = sb.load(&bytes).unwrap();
    let entry = sb.cache().entry_path(sb.engine(), &loaded.sha256).unwrap();
    assert!(entry.exists());
    // While a component is loaded, loading it again shares it without reading the
    // cache; drop it so the following loads go to the disk cache.
    assert_eq!(sb.load(&bytes).unwrap().cache, CacheOutcome::Memory);
    drop(loaded);

    // Flip bytes in the middle of the compiled code.
    let mut data = std::fs::read(&entry).unwrap();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&entry, &data).unwrap();
    assert_eq!(sb.load(&bytes).unwrap().cache, CacheOutcome::Rebuilt);

    // Truncate it.
    let len = std::fs::metadata(&entry).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&entry)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_eq!(sb.load(&bytes).unwrap().cache, CacheOutcome::Rebuilt);

    // The rebuilt entry is valid again and the component works.
    let again = sb.load(&bytes).unwrap();
    assert_eq!(again.cache, CacheOutcome::Hit);
    let p = sb
        .instantiate("echo", &again, vec![], Default::default())
        .await
        .unwrap();
    let r = p
        .complete(&tamma_sandbox::types::CompletionRequest::prompt(
            "echo-1",
            "still works",
        ))
        .await
        .unwrap();
    assert_eq!(r.content, "still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_validated_before_anything_runs() {
    let sb = sandbox();
    let loaded = sb.load_file(&guest("echo")).unwrap();
    let limits = tamma_registry::Limits {
        memory_mib: 0,
        max_concurrency: 0,
        ..Default::default()
    };
    let err = sb
        .instantiate("echo", &loaded, vec![], limits)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidConfig);
    assert!(
        err.message.contains("memory_mib") && err.message.contains("max_concurrency"),
        "{err}"
    );
}

/// Every export of `provider-api` by name, each with the wrong type: refused with
/// `INVALID_COMPONENT` before any call (it used to pass loading and fail the
/// first instantiation with `TRAP`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_with_the_wrong_type_is_an_invalid_component() {
    let sb = sandbox();
    let err = match sb.load_file(&guest("adversarial_wrong_types")) {
        Err(e) => e,
        Ok(loaded) => match sb
            .instantiate("wrong-types", &loaded, vec![], Default::default())
            .await
        {
            Ok(_) => panic!("a component with wrongly typed exports was accepted"),
            Err(e) => e,
        },
    };
    assert_eq!(err.code, ErrorCode::InvalidComponent, "{err}");
    assert!(err.message.contains("wrong type"), "{err}");
    assert!(err.message.contains("tamma:provider/provider"), "{err}");
}

/// A small component of very many empty functions (the measured attack: 300 000
/// of them, 2.1 MB, took 22.9 s and 1.8 GiB to compile) is refused before the
/// compiler sees it, naming the limit.
#[test]
fn a_component_of_too_many_functions_is_refused_before_compiling() {
    let funcs = "(func)".repeat(300_000);
    let bytes = wat::parse_str(format!("(component (core module {funcs}))")).unwrap();
    assert!(bytes.len() < 4 * 1024 * 1024, "{}", bytes.len());
    let msg = invalid(&bytes);
    assert!(msg.contains("(max_functions)"), "{msg}");
    assert!(msg.contains("before compiling"), "{msg}");
}

/// The real components, the JavaScript and Python runtimes included, sit far
/// within the structural limits (at most half of each).
#[test]
fn the_built_guests_are_far_within_the_compile_limits() {
    use tamma_sandbox::compile_limits::{check, CompileLimits};
    let limits = CompileLimits::default();
    for name in ["echo", "openai", "anthropic", "js_echo", "py_echo"] {
        let s = check(&guest_bytes(name), &limits).unwrap();
        println!("{name}: {s:?}");
        assert!(s.functions * 2 <= limits.max_functions, "{name}: {s:?}");
        assert!(s.code_bytes * 2 <= limits.max_code_bytes, "{name}: {s:?}");
        assert!(
            s.max_locals * 2 <= limits.max_locals_per_function,
            "{name}: {s:?}"
        );
        assert!(s.types * 2 <= limits.max_types, "{name}: {s:?}");
    }
}
