//! Client keys benchmark (`make bench`): what auth and per-key limits add to a
//! request, against the same request without auth in the same run.
//!
//! Three in-process servers over one registry (the echo guest, no upstream):
//! no keys; a key with rpm, tpm, budget and max_concurrent counted locally; and
//! the same key counted in a real `redis-server` on loopback (skipped when
//! `redis-server` is not installed). One keep-alive connection each, requests
//! interleaved round by round so that drift hits all three alike. Prints p50
//! latency of each, the added p50 cost of each against no auth, and the
//! in-process cost of a key look-up plus a local admission alone. Printed as
//! `bench: <name> <value> <unit>`; never asserted. Goals: local ≤ 5 µs, Redis
//! ≤ 150 µs p50.

use std::time::{Duration, Instant};

use tamma_e2e::{guest, sandbox};
use tamma_registry::{
    ComponentSource, Limits, ProviderSettings, Registration, Registry, RegistryConfig,
};
use tamma_server::client_limits::local::LocalStore;
use tamma_server::client_limits::store::Limits as KeyLimits;
use tamma_server::client_limits::windows::Windows;
use tamma_server::config::{
    Budget, BudgetPeriod, ClientKey, LimitsStoreConfig, OnStoreError, SecretRef, ServerConfig,
    StoreUrl,
};
use tamma_server::{ServeOptions, Server};
use tamma_test_support::client::Conn;
use tamma_test_support::redis_server::RedisServer;

const KEY: &str = "bench-key-0123456789abcdef";
const ROUNDS: usize = 3_000;

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

fn keyed(store: Option<LimitsStoreConfig>) -> ServerConfig {
    ServerConfig {
        keys: vec![ClientKey {
            name: "bench".into(),
            key: Some(SecretRef::Value(KEY.into())),
            sha256: None,
            models: Some(vec!["echo/*".into()]),
            rpm: Some(u64::MAX / 2),
            tpm: Some(u64::MAX / 2),
            max_concurrent: Some(1_000),
            budget: Some(Budget {
                tokens: u64::MAX / 2,
                period: BudgetPeriod::Month,
            }),
        }],
        limits_store: store,
        ..ServerConfig::default()
    }
}

fn p50(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn micro_local() -> f64 {
    let config = keyed(None);
    let ring = tamma_server::auth::KeyRing::build(&config, true);
    let store = LocalStore::default();
    let limits = KeyLimits {
        rpm: u64::MAX / 2,
        tpm: u64::MAX / 2,
        budget: u64::MAX / 2,
    };
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        let p = ring.lookup(std::hint::black_box(KEY)).unwrap();
        let w = Windows::now(BudgetPeriod::Month);
        let _ = std::hint::black_box(store.admit_now(&p.name, limits, w));
    }
    t.elapsed().as_secs_f64() * 1e9 / n as f64
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    print("auth_local_lookup_admit", micro_local(), "ns");
    let redis = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
        .then(RedisServer::start);
    rt.block_on(async move {
        let registry = Registry::new(sandbox(), RegistryConfig::default()).unwrap();
        registry
            .register(
                "echo",
                Registration::new(ComponentSource::File(guest("echo"))).with_settings(
                    ProviderSettings::new(
                        vec![],
                        Limits {
                            max_concurrency: 8,
                            ..Limits::default()
                        },
                    ),
                ),
            )
            .await
            .unwrap();
        let mut configs = vec![("none", ServerConfig::default()), ("local", keyed(None))];
        if let Some(r) = &redis {
            configs.push((
                "redis",
                keyed(Some(LimitsStoreConfig {
                    url: StoreUrl::Inline(r.url()),
                    on_error: OnStoreError::Deny,
                    timeout_ms: 1_000,
                })),
            ));
        }
        let mut servers = Vec::new();
        let mut conns = Vec::new();
        for (_, c) in &configs {
            let s = Server::bind(
                registry.clone(),
                c.clone(),
                Some("127.0.0.1:0".parse().unwrap()),
                ServeOptions {
                    discovery_finished: true,
                    ..ServeOptions::default()
                },
            )
            .await
            .unwrap()
            .spawn();
            conns.push(Conn::connect(s.addr()).await.unwrap());
            servers.push(s);
        }
        let body = serde_json::json!({"model": "echo/echo-1", "messages": [{"role": "user", "content": "bench"}]})
            .to_string()
            .into_bytes();
        let auth = format!("Bearer {KEY}");
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); configs.len()];
        for round in 0..ROUNDS + 200 {
            for (i, conn) in conns.iter_mut().enumerate() {
                let t = Instant::now();
                let r = conn
                    .send("POST", "/v1/chat/completions", &[("authorization", &auth)], Some(body.clone()))
                    .await
                    .unwrap();
                let d = t.elapsed();
                assert_eq!(r.status, 200, "{}: {}", configs[i].0, r.text());
                if round >= 200 {
                    samples[i].push(d.as_secs_f64() * 1e6);
                }
            }
        }
        let base = p50(&mut samples[0]);
        print("auth_none_p50", base, "us");
        for (i, (name, _)) in configs.iter().enumerate().skip(1) {
            let p = p50(&mut samples[i]);
            print(&format!("auth_{name}_p50"), p, "us");
            print(&format!("auth_{name}_added_p50"), p - base, "us");
        }
        if redis.is_none() {
            eprintln!("auth_redis skipped: redis-server is not installed");
        }
        for s in servers {
            tokio::time::timeout(Duration::from_secs(10), s.shutdown())
                .await
                .ok();
        }
    });
}
