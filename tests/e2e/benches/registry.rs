//! Registry benchmarks (`make bench`): registration cost as the registry grows,
//! concurrent registrations, memory per idle provider, and what health monitoring
//! costs traffic. Printed as `bench: <name> <value> <unit>`; never asserted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tamma_e2e::guest_bytes;
use tamma_registry::registry_config::HealthConfig;
use tamma_registry::{ComponentSource, Registration, Registry, RegistryConfig, Sandbox};
use tamma_sandbox::compile_cache::CompileCache;
use tamma_sandbox::engine::{EngineConfig, SandboxEngine};
use tamma_sandbox::types::CompletionRequest;

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

fn registry(cache: &std::path::Path, config: RegistryConfig) -> Registry {
    let engine = SandboxEngine::new(EngineConfig {
        pool_instances: 2_500,
        max_memory_mib: 128,
        ..EngineConfig::default()
    })
    .expect("engine");
    let sandbox = Sandbox::new(engine, CompileCache::new(cache)).expect("sandbox");
    Registry::new(sandbox, config).expect("registry")
}

fn echo(bytes: &Arc<[u8]>) -> Registration {
    Registration::new(ComponentSource::Bytes(bytes.clone()))
}

async fn registration(cache: &std::path::Path, bytes: &Arc<[u8]>) {
    let r = registry(cache, RegistryConfig::default());
    // Warm the compile cache: what is measured is registration with a cached component.
    r.register("warm", echo(bytes)).await.expect("warm");
    r.unregister("warm").await.expect("unregister");
    let base_rss = rss_bytes();
    let mut times = Vec::with_capacity(1000);
    for i in 0..1000 {
        let t = Instant::now();
        r.register(&format!("p{i}"), echo(bytes))
            .await
            .expect("register");
        times.push(t.elapsed());
    }
    let rss = rss_bytes();
    for (label, i) in [("1st", 0usize), ("100th", 99), ("1000th", 999)] {
        // Median of a window around the nth registration, for stability.
        let lo = i.saturating_sub(5);
        let hi = (i + 5).min(times.len() - 1);
        let mut w: Vec<Duration> = times[lo..=hi].to_vec();
        w.sort();
        print(
            &format!("register_{label}_ms"),
            w[w.len() / 2].as_secs_f64() * 1e3,
            "ms",
        );
    }
    let mut all = times.clone();
    all.sort();
    print(
        "register_median_ms",
        all[all.len() / 2].as_secs_f64() * 1e3,
        "ms",
    );
    print("register_iters", all.len() as f64, "count");
    print(
        "memory_per_idle_provider_kib",
        rss.saturating_sub(base_rss) as f64 / 1000.0 / 1024.0,
        "KiB",
    );
    print("rss_with_1000_providers_mib", rss as f64 / 1048576.0, "MiB");

    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let r = r.clone();
        let reg = echo(bytes);
        set.spawn(async move { r.register(&format!("c{i}"), reg).await.map(|_| ()) });
    }
    while let Some(res) = set.join_next().await {
        res.expect("join").expect("register");
    }
    print(
        "register_100_concurrent_total_ms",
        t.elapsed().as_secs_f64() * 1e3,
        "ms",
    );
    r.shutdown().await;
}

/// Echo calls per second from 4 tasks for `window`.
async fn throughput(r: &Registry, window: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for t in 0..4 {
        let (r, stop, count) = (r.clone(), stop.clone(), count.clone());
        set.spawn(async move {
            let req = CompletionRequest::prompt("echo-1", "throughput probe");
            let name = format!("t{t}");
            while !stop.load(Ordering::Relaxed) {
                r.complete(&name, &req).await.expect("complete");
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    while set.join_next().await.is_some() {}
    count.load(Ordering::Relaxed) as f64 / window.as_secs_f64()
}

async fn monitoring_cost(cache: &std::path::Path, bytes: &Arc<[u8]>) {
    let config = RegistryConfig {
        health: HealthConfig {
            interval_ms: 1_000,
            ..HealthConfig::default()
        },
        ..RegistryConfig::default()
    };
    let r = registry(cache, config);
    for i in 0..100 {
        r.register(&format!("m{i}"), echo(bytes))
            .await
            .expect("register");
    }
    for t in 0..4 {
        r.register(&format!("t{t}"), echo(bytes))
            .await
            .expect("register");
    }
    let window = Duration::from_secs(3);
    // Interleave runs with and without monitoring so drift hits both alike.
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        off.push(throughput(&r, window).await);
        r.start_monitoring_all();
        on.push(throughput(&r, window).await);
        r.stop_monitoring_all().await;
    }
    off.sort_by(f64::total_cmp);
    on.sort_by(f64::total_cmp);
    let (off, on) = (off[1], on[1]);
    print("echo_calls_per_s_without_monitoring", off, "calls/s");
    print("echo_calls_per_s_with_monitoring_100_at_1s", on, "calls/s");
    print("monitoring_throughput_ratio", on / off, "x");
    r.shutdown().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let cache = tempfile::tempdir().expect("tmp");
    let bytes: Arc<[u8]> = guest_bytes("echo").into();
    rt.block_on(async {
        registration(cache.path(), &bytes).await;
        monitoring_cost(cache.path(), &bytes).await;
    });
}
