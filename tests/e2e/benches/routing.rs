//! Routing benchmarks (`make bench`): what a 3-target weighted route adds to a
//! request over naming one provider, and what resolving a bare model id costs
//! with 1 000 registered providers against 1 (the model index keeps it flat;
//! the snapshot the router used to take is printed beside it). Baselines are
//! measured in the same run. Printed as `bench: <name> <value> <unit>`; never
//! asserted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tamma_e2e::guest_bytes;
use tamma_registry::registry::ProviderState;
use tamma_registry::{
    ComponentSource, Limits, ProviderSettings, Registration, Registry, RegistryConfig, Sandbox,
};
use tamma_sandbox::compile_cache::CompileCache;
use tamma_sandbox::engine::{EngineConfig, SandboxEngine};
use tamma_server::config::{RouteConfig, RouteStrategy, ServerLimits};
use tamma_server::{routing, ServeOptions, Server, ServerConfig};
use tamma_test_support::client::Conn;

const RUN: Duration = Duration::from_millis(2_000);
const WARMUP: Duration = Duration::from_millis(300);

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

fn registry(cache: &std::path::Path) -> Registry {
    let engine = SandboxEngine::new(EngineConfig {
        pool_instances: 2_500,
        max_memory_mib: 128,
        ..EngineConfig::default()
    })
    .expect("engine");
    let sandbox = Sandbox::new(engine, CompileCache::new(cache)).expect("sandbox");
    Registry::new(sandbox, RegistryConfig::default()).expect("registry")
}

fn component(bytes: &Arc<[u8]>, config: Vec<(String, String)>) -> Registration {
    Registration::new(ComponentSource::Bytes(bytes.clone())).with_settings(ProviderSettings::new(
        config,
        Limits {
            max_concurrency: 16,
            ..Limits::default()
        },
    ))
}

/// Mean µs per request for `model` from `concurrency` keep-alive connections.
async fn per_request_us(addr: SocketAddr, model: &str, concurrency: usize) -> f64 {
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "route me"}],
    })
    .to_string()
    .into_bytes();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (stop, measuring, body) = (stop.clone(), measuring.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await.expect("connect");
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = conn
                    .send("POST", "/v1/chat/completions", &[], Some(body.clone()))
                    .await
                    .expect("request");
                assert_eq!(r.status, 200, "{}", r.text());
                if measuring.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                }
            }
            n
        }));
    }
    tokio::time::sleep(WARMUP).await;
    measuring.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(RUN).await;
    measuring.store(false, std::sync::atomic::Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    elapsed.as_secs_f64() * 1e6 * concurrency as f64 / total.max(1) as f64
}

async fn weighted_route_overhead(cache: &std::path::Path) {
    let echo: Arc<[u8]> = guest_bytes("echo").into();
    let r = registry(cache);
    for name in ["e1", "e2", "e3"] {
        r.register(name, component(&echo, vec![]))
            .await
            .expect("register");
    }
    let route = RouteConfig {
        strategy: RouteStrategy::Weighted,
        weights: vec![3, 1, 1],
        ..RouteConfig::ordered(["e1/echo-1", "e2/echo-1", "e3/echo-1"])
    };
    let config = ServerConfig {
        routes: BTreeMap::from([("w".to_string(), route)]),
        limits: ServerLimits {
            max_concurrent_requests: 1024,
            ..ServerLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = Server::bind(
        r.clone(),
        config,
        Some("127.0.0.1:0".parse().expect("addr")),
        ServeOptions {
            discovery_finished: true,
            ..ServeOptions::default()
        },
    )
    .await
    .expect("bind")
    .spawn();
    for concurrency in [1usize, 8] {
        // Interleaved, twice each, so that drift hits both alike.
        let mut single = Vec::new();
        let mut routed = Vec::new();
        for _ in 0..2 {
            single.push(per_request_us(server.addr(), "e1/echo-1", concurrency).await);
            routed.push(per_request_us(server.addr(), "w", concurrency).await);
        }
        let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let (s, w) = (best(&single), best(&routed));
        print(&format!("route_single_c{concurrency}_us"), s, "us");
        print(&format!("route_weighted3_c{concurrency}_us"), w, "us");
        print(
            &format!("route_weighted3_extra_c{concurrency}_us"),
            w - s,
            "us",
        );
        print(
            &format!("route_weighted3_vs_single_c{concurrency}_ratio"),
            w / s,
            "x",
        );
    }
    server.shutdown().await;
}

/// ns per call of `f`, over `iters` calls.
fn ns_per(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() * 1e9 / f64::from(iters)
}

/// The resolution the router did before the model index: a snapshot of every
/// provider, filtered.
fn resolve_by_snapshot(r: &Registry, model: &str) -> usize {
    r.snapshot()
        .into_iter()
        .filter(|s| s.state == ProviderState::Ready)
        .filter(|s| s.capabilities.models.iter().any(|m| m.id == model))
        .count()
}

async fn bare_model_resolution(cache: &std::path::Path) {
    let test: Arc<[u8]> = guest_bytes("test_provider").into();
    let r = registry(cache);
    let one_model = |i: usize| vec![("models".to_string(), format!("m{i}"))];
    r.register("p0", component(&test, one_model(0)))
        .await
        .expect("register");
    let index_1 = ns_per(200_000, || {
        std::hint::black_box(routing::resolve_model(&r, "m0").is_ok());
    });
    let snapshot_1 = ns_per(20_000, || {
        std::hint::black_box(resolve_by_snapshot(&r, "m0"));
    });
    for i in 1..1000 {
        r.register(&format!("p{i}"), component(&test, one_model(i)))
            .await
            .expect("register");
    }
    let index_1000 = ns_per(200_000, || {
        std::hint::black_box(routing::resolve_model(&r, "m500").is_ok());
    });
    let snapshot_1000 = ns_per(200, || {
        std::hint::black_box(resolve_by_snapshot(&r, "m500"));
    });
    print("resolve_bare_model_1_ns", index_1, "ns");
    print("resolve_bare_model_1000_ns", index_1000, "ns");
    print(
        "resolve_bare_model_1000_vs_1_ratio",
        index_1000 / index_1,
        "x",
    );
    print("resolve_by_snapshot_1_ns", snapshot_1, "ns");
    print("resolve_by_snapshot_1000_ns", snapshot_1000, "ns");
    print(
        "resolve_snapshot_vs_index_1000_ratio",
        snapshot_1000 / index_1000,
        "x",
    );
    r.shutdown().await;
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours skips us.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"routing".contains(a.as_str()))
    {
        return;
    }
    let cache = tempfile::tempdir().expect("cache dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        weighted_route_overhead(cache.path()).await;
        bare_model_resolution(cache.path()).await;
    });
}
