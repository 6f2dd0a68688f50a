//! Providers in Rust, JavaScript and Python side by side (`make bench`): cold
//! compile, load from the compile cache, instantiation and the echo round trip of
//! each language's echo provider, all in one run. Printed as
//! `bench: <name> <value> <unit>`, with ratios against the Rust provider.

use std::time::{Duration, Instant};

use tamma_e2e::guest_bytes;
use tamma_registry::{Limits, Sandbox};
use tamma_sandbox::compile_cache::{CacheOutcome, CompileCache};
use tamma_sandbox::engine::{EngineConfig, SandboxEngine};
use tamma_sandbox::types::CompletionRequest;
use tamma_test_support::bench::instantiate_once;

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Figures {
    compile: Duration,
    cached_load: Duration,
    instantiate: Duration,
    round_trip: Duration,
}

async fn measure(lang: &str, component: &str, iters: usize) -> Figures {
    let bytes = guest_bytes(component);
    let dir = tempfile::tempdir().expect("tmp");
    let engine = SandboxEngine::new(EngineConfig {
        pool_instances: 64,
        ..EngineConfig::default()
    })
    .expect("engine");
    let sb = Sandbox::new(engine, CompileCache::new(dir.path())).expect("sandbox");

    // Cold: an empty compile cache, so this load compiles (and stores) it.
    let t = Instant::now();
    let first = sb.load(&bytes).expect("compile");
    let compile = t.elapsed();
    assert_eq!(first.cache, CacheOutcome::Miss);
    drop(first);

    let mut loads = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let l = sb.load(&bytes).expect("cached");
        loads.push(t.elapsed());
        assert_eq!(l.cache, CacheOutcome::Hit);
    }
    let loaded = sb.load(&bytes).expect("cached");

    let mut inst = Vec::new();
    for _ in 0..iters.min(500) {
        let t = Instant::now();
        instantiate_once(&sb, &loaded).await.expect("instantiate");
        inst.push(t.elapsed());
    }

    let provider = sb
        .instantiate(lang, &loaded, vec![], Limits::default())
        .await
        .expect("provider");
    let req = CompletionRequest::prompt("echo-1", "benchmark round trip");
    let mut calls = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        provider.complete(&req).await.expect("complete");
        calls.push(t.elapsed());
    }
    let f = Figures {
        compile,
        cached_load: median(loads),
        instantiate: median(inst),
        round_trip: median(calls),
    };
    print(
        &format!("{lang}_component_size"),
        bytes.len() as f64 / 1048576.0,
        "MiB",
    );
    print(
        &format!("{lang}_cold_compile"),
        f.compile.as_secs_f64() * 1e3,
        "ms",
    );
    print(
        &format!("{lang}_cached_load_median"),
        f.cached_load.as_secs_f64() * 1e3,
        "ms",
    );
    print(
        &format!("{lang}_instantiate_median"),
        f.instantiate.as_secs_f64() * 1e6,
        "us",
    );
    print(
        &format!("{lang}_echo_round_trip_median"),
        f.round_trip.as_secs_f64() * 1e6,
        "us",
    );
    print(&format!("{lang}_iters"), iters as f64, "count");
    f
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let rust = measure("rust", "echo", 5_000).await;
        for (lang, component) in [("js", "js_echo"), ("python", "py_echo")] {
            let f = measure(lang, component, 500).await;
            let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
            print(
                &format!("{lang}_vs_rust_cold_compile_ratio"),
                ratio(f.compile, rust.compile),
                "x",
            );
            print(
                &format!("{lang}_vs_rust_cached_load_ratio"),
                ratio(f.cached_load, rust.cached_load),
                "x",
            );
            print(
                &format!("{lang}_vs_rust_instantiate_ratio"),
                ratio(f.instantiate, rust.instantiate),
                "x",
            );
            print(
                &format!("{lang}_vs_rust_echo_round_trip_ratio"),
                ratio(f.round_trip, rust.round_trip),
                "x",
            );
        }
    });
}
