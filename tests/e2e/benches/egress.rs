//! What the sandbox and the egress hook add to an upstream call (`make bench`): the
//! `openai` guest calling the mock upstream through `wasi:http` and the egress
//! policy, against the same request sent by a plain Rust HTTP client (keep-alive
//! hyper connections), both at concurrency 8, interleaved in one run. Printed as
//! `bench: <name> <value> <unit>`; never asserted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tamma_e2e::{guest, sandbox};
use tamma_mock_upstream::MockUpstream;
use tamma_registry::{Limits, ProviderInstance, ProviderSettings};
use tamma_sandbox::egress::EgressPolicy;
use tamma_sandbox::types::CompletionRequest;
use tamma_test_support::client::Conn;

const CONCURRENCY: usize = 8;
const PER_TASK: usize = 300;

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn direct(mock: &MockUpstream, body: Arc<Vec<u8>>) -> Vec<f64> {
    let addr = mock.addr();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let body = body.clone();
        set.spawn(async move {
            let mut conn = Conn::connect(addr).await.expect("connect");
            let mut lat = Vec::with_capacity(PER_TASK);
            for _ in 0..PER_TASK {
                let t = Instant::now();
                let r = conn
                    .send(
                        "POST",
                        "/v1/chat/completions",
                        &[("authorization", "Bearer sk-bench")],
                        Some(body.to_vec()),
                    )
                    .await
                    .expect("direct request");
                assert_eq!(r.status, 200);
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.expect("task"));
    }
    all
}

async fn sandboxed(provider: &ProviderInstance) -> Vec<f64> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let provider = provider.clone();
        set.spawn(async move {
            let req = CompletionRequest::prompt("gpt-bench", "measure the egress path");
            let mut lat = Vec::with_capacity(PER_TASK);
            for _ in 0..PER_TASK {
                let t = Instant::now();
                provider.complete(&req).await.expect("sandboxed request");
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.expect("task"));
    }
    all
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let mock = MockUpstream::start().await;
        mock.set_models(["gpt-bench"]);
        let mut secrets = BTreeMap::new();
        secrets.insert("api_key".to_string(), "sk-bench".to_string());
        let settings = ProviderSettings {
            config: vec![("base_url".into(), mock.base_url())],
            limits: Limits {
                max_concurrency: CONCURRENCY as u32,
                ..Limits::default()
            },
            egress: EgressPolicy::new(vec![mock.url()], secrets),
        };
        let sb = sandbox();
        let loaded = sb.load_file(&guest("openai")).expect("openai guest");
        let provider = sb
            .instantiate_with("openai", &loaded, settings)
            .await
            .expect("provider");
        // The body the guest sends, so both paths ask the upstream the same thing.
        provider
            .complete(&CompletionRequest::prompt(
                "gpt-bench",
                "measure the egress path",
            ))
            .await
            .expect("warm-up");
        let body = Arc::new(mock.last_request().expect("recorded").body);

        let (mut d, mut s) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            d.extend(direct(&mock, body.clone()).await);
            s.extend(sandboxed(&provider).await);
            mock.take_requests();
        }
        d.sort_by(f64::total_cmp);
        s.sort_by(f64::total_cmp);
        let (d50, d99) = (percentile(&d, 0.5), percentile(&d, 0.99));
        let (s50, s99) = (percentile(&s, 0.5), percentile(&s, 0.99));
        print("egress_direct_c8_p50", d50, "us");
        print("egress_direct_c8_p99", d99, "us");
        print("egress_sandboxed_c8_p50", s50, "us");
        print("egress_sandboxed_c8_p99", s99, "us");
        print("egress_added_c8_p50", s50 - d50, "us");
        print("egress_added_c8_p99", s99 - d99, "us");
        print("egress_requests_each", d.len() as f64, "count");
        print("egress_sandboxed_vs_direct_p50_ratio", s50 / d50, "x");
    });
}
