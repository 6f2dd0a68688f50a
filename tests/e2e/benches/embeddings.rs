//! Embeddings benchmark (`make bench`): `POST /v1/embeddings` of 16 inputs
//! through the gateway and the `openai` guest (sandbox → egress → the mock
//! upstream), against the same request to the mock upstream directly, in the
//! same run. One keep-alive connection each, requests interleaved round by
//! round so that drift hits both alike; 1536-dimension vectors, `float` on the
//! client side (the gateway re-encodes the guest's floats). Prints p50 and p99 of
//! each, the added p50 and the ratio. Printed as `bench: <name> <value> <unit>`;
//! never asserted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tamma_e2e::{guest, sandbox};
use tamma_mock_upstream::MockUpstream;
use tamma_registry::{
    ComponentSource, Limits, ProviderSettings, Registration, Registry, RegistryConfig,
};
use tamma_sandbox::egress::EgressPolicy;
use tamma_server::{ServeOptions, Server, ServerConfig};
use tamma_test_support::client::Conn;

const ROUNDS: usize = 1_000;
const WARMUP: usize = 100;
const INPUTS: usize = 16;

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mock = MockUpstream::start().await;
        let registry = Registry::new(sandbox(), RegistryConfig::default()).unwrap();
        registry
            .register(
                "openai",
                Registration::new(ComponentSource::File(guest("openai"))).with_settings(
                    ProviderSettings {
                        config: vec![("base_url".into(), mock.base_url())],
                        limits: Limits {
                            max_concurrency: 4,
                            ..Limits::default()
                        },
                        egress: EgressPolicy::new(
                            vec![mock.url()],
                            BTreeMap::from([("api_key".to_string(), "sk-bench".to_string())]),
                        ),
                    },
                ),
            )
            .await
            .unwrap();
        let server = Server::bind(
            registry.clone(),
            ServerConfig::default(),
            Some("127.0.0.1:0".parse().unwrap()),
            ServeOptions {
                discovery_finished: true,
                ..ServeOptions::default()
            },
        )
        .await
        .unwrap()
        .spawn();
        let inputs: Vec<String> = (0..INPUTS)
            .map(|i| format!("benchmark input number {i} with a few words of text"))
            .collect();
        let body = |model: &str| {
            serde_json::json!({"model": model, "input": inputs, "encoding_format": "float"})
                .to_string()
                .into_bytes()
        };
        let targets = [
            ("direct", mock.addr(), body("text-embedding-3-small")),
            (
                "gateway",
                server.addr(),
                body("openai/text-embedding-3-small"),
            ),
        ];
        let mut conns = Vec::new();
        for (_, addr, _) in &targets {
            conns.push(Conn::connect(*addr).await.unwrap());
        }
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); targets.len()];
        for round in 0..ROUNDS + WARMUP {
            for (i, conn) in conns.iter_mut().enumerate() {
                let (name, _, body) = &targets[i];
                let t = Instant::now();
                let r = conn
                    .send(
                        "POST",
                        "/v1/embeddings",
                        &[("content-type", "application/json")],
                        Some(body.clone()),
                    )
                    .await
                    .unwrap();
                let d = t.elapsed();
                assert_eq!(r.status, 200, "{name}: {}", r.text());
                if round >= WARMUP {
                    samples[i].push(d.as_secs_f64() * 1e6);
                }
            }
        }
        for s in &mut samples {
            s.sort_by(|a, b| a.total_cmp(b));
        }
        let (direct, gateway) = (&samples[0], &samples[1]);
        print("embeddings16_direct_p50", pct(direct, 0.5), "us");
        print("embeddings16_direct_p99", pct(direct, 0.99), "us");
        print("embeddings16_openai_p50", pct(gateway, 0.5), "us");
        print("embeddings16_openai_p99", pct(gateway, 0.99), "us");
        print(
            "embeddings16_openai_added_p50",
            pct(gateway, 0.5) - pct(direct, 0.5),
            "us",
        );
        print(
            "embeddings16_openai_vs_direct_p50",
            pct(gateway, 0.5) / pct(direct, 0.5),
            "ratio",
        );
        tokio::time::timeout(Duration::from_secs(10), server.shutdown())
            .await
            .ok();
    });
}
