//! Sandbox benchmarks (`make bench`). Each figure is printed as
//! `bench: <name> <value> <unit>`, next to a baseline measured in the same run, and
//! ratios as `bench: <name>_ratio <value> x`. Medians over many iterations; nothing
//! here is asserted — these machines are shared and noisy.

use std::time::{Duration, Instant};

use tamma_e2e::guest_bytes;
use tamma_registry::{Limits, Sandbox};
use tamma_sandbox::compile_cache::{sha256_hex, CacheOutcome, CompileCache};
use tamma_sandbox::engine::{EngineConfig, SandboxEngine};
use tamma_sandbox::types::CompletionRequest;
use tamma_test_support::bench::{instantiate_once, BareInstance};

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn sandbox(pooling: bool, fuel: bool, cache: CompileCache) -> Sandbox {
    let engine = SandboxEngine::new(EngineConfig {
        pooling,
        consume_fuel: fuel,
        pool_instances: 64,
        ..EngineConfig::default()
    })
    .expect("engine");
    if pooling {
        if let tamma_sandbox::engine::AllocatorKind::OnDemand(why) = engine.allocator() {
            eprintln!("note: {why}");
        }
    }
    Sandbox::new(engine, cache).expect("sandbox")
}

/// Time `iters` runs of an expression (which may `.await`), in batches so that
/// timer overhead stays out of sub-microsecond figures; the median per run.
macro_rules! measure {
    ($iters:expr, $batch:expr, $body:expr) => {{
        let (iters, batch): (usize, usize) = ($iters, $batch);
        for _ in 0..batch.max(10) {
            $body;
        }
        let mut samples = Vec::with_capacity(iters / batch);
        for _ in 0..(iters / batch).max(1) {
            let t = Instant::now();
            for _ in 0..batch {
                $body;
            }
            samples.push(t.elapsed() / batch as u32);
        }
        median(samples)
    }};
}

async fn instantiation() {
    let echo = guest_bytes("echo");
    const N: usize = 5_000;
    for (label, pooling) in [("pooling", true), ("on_demand", false)] {
        let sb = sandbox(pooling, true, CompileCache::disabled());
        let loaded = sb.load(&echo).expect("load");
        let t = measure!(
            N,
            10,
            instantiate_once(&sb, &loaded).await.expect("instantiate")
        );
        print(&format!("instantiate_{label}_median"), us(t), "us");
        print(&format!("instantiate_{label}_iters"), N as f64, "count");
    }
}

async fn call_path() {
    let echo = guest_bytes("echo");
    let req = CompletionRequest::prompt("echo-1", "benchmark round trip");
    const N: usize = 20_000;
    for (label, fuel) in [("fuel_on", true), ("fuel_off", false)] {
        let sb = sandbox(true, fuel, CompileCache::disabled());
        let loaded = sb.load(&echo).expect("load");
        let mut bare = BareInstance::new(&sb, &loaded).await.expect("bare");
        let bare_t = measure!(N, 20, bare.complete(&req).await.expect("bare complete"));
        let provider = sb
            .instantiate("echo", &loaded, vec![], Limits::default())
            .await
            .expect("provider");
        let rt_t = measure!(N, 20, provider.complete(&req).await.expect("complete"));
        print(
            &format!("echo_complete_bare_wasmtime_{label}_median"),
            us(bare_t),
            "us",
        );
        print(
            &format!("echo_complete_runtime_{label}_median"),
            us(rt_t),
            "us",
        );
        print(&format!("echo_complete_{label}_iters"), N as f64, "count");
        print(
            &format!("echo_complete_runtime_vs_bare_{label}_ratio"),
            rt_t.as_secs_f64() / bare_t.as_secs_f64(),
            "x",
        );
    }
}

async fn cache_load() {
    let echo = guest_bytes("echo");
    let dir = tempfile::tempdir().expect("tmp");
    let cached = sandbox(true, true, CompileCache::new(dir.path()));
    let uncached = sandbox(true, true, CompileCache::disabled());
    assert_eq!(cached.load(&echo).expect("first").cache, CacheOutcome::Miss);
    const N_COMPILE: usize = 10;
    const N_CACHED: usize = 500;
    // Each load's result is dropped before the next, so every load goes to the
    // disk cache (a live component would be shared in memory instead).
    let compile = measure!(N_COMPILE, 1, drop(uncached.load(&echo).expect("compile")));
    let hit = measure!(N_CACHED, 1, {
        let l = cached.load(&echo).expect("cached");
        debug_assert_eq!(l.cache, CacheOutcome::Hit);
    });
    let hash = measure!(N_CACHED, 1, std::hint::black_box(sha256_hex(&echo)));
    let shared = {
        let _keep = cached.load(&echo).expect("cached");
        measure!(N_CACHED, 1, drop(cached.load(&echo).expect("shared")))
    };
    print("component_compile_median", us(compile) / 1000.0, "ms");
    print("component_compile_iters", N_COMPILE as f64, "count");
    print("component_cached_load_median", us(hit) / 1000.0, "ms");
    print("component_cached_load_iters", N_CACHED as f64, "count");
    print("component_sha256_median", us(hash) / 1000.0, "ms");
    print(
        "component_shared_in_memory_load_median",
        us(shared) / 1000.0,
        "ms",
    );
    print("component_size", echo.len() as f64 / 1024.0, "KiB");
    print(
        "component_compile_vs_cached_ratio",
        compile.as_secs_f64() / hit.as_secs_f64(),
        "x",
    );
}

fn main() {
    // `cargo bench` passes `--bench`; filters are not supported, everything runs.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        instantiation().await;
        call_path().await;
        cache_load().await;
    });
}
