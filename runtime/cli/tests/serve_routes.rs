//! Routes that change while `tamma serve` runs: the real binary, its config
//! file rewritten under it (discovery re-reads it), real HTTP load.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tamma_test_support::client;

mod support;
use support::{chat, Served};

/// Write `text` to `file` atomically (a temporary file renamed over it), as the
/// docs advise.
fn write_atomically(file: &Path, text: &str) {
    let tmp: PathBuf = file.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

const PROVIDERS: &str = r#"
[providers.e0]
component = "echo"

[providers.e1]
component = "echo"

[providers.e2]
component = "echo"

[discovery]
environment = false
auto_refresh_ms = 20
"#;

/// Version `v` of the route `r`: two of the three providers, chosen by `v`,
/// asked for the model `v<v>` (echo answers with the model it was asked for),
/// with a strategy that changes too.
fn version(v: usize) -> String {
    let strategy = ["ordered", "weighted", "least-busy", "latency"][v % 4];
    let weights = if strategy == "weighted" {
        "weights = [2, 1]\n"
    } else {
        ""
    };
    format!(
        "{PROVIDERS}\n[server.routes.r]\ntargets = [\"e{}/v{v}\", \"e{}/v{v}\"]\nstrategy = \"{strategy}\"\n{weights}",
        v % 3,
        (v + 1) % 3
    )
}

/// `(provider, version)` of an answer's `model` (`e1/v7` → `("e1", 7)`).
fn served(answer: &Value) -> (String, usize) {
    let model = answer["model"].as_str().unwrap_or_default();
    let (p, v) = model.split_once("/v").unwrap_or_else(|| panic!("{answer}"));
    (p.to_string(), v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_rewritten_under_load_never_fail_and_never_mix_versions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tamma.toml");
    write_atomically(&file, &version(0));
    let s = Served::with_config(&file, &[]);
    s.wait_ready().await;
    let addr = s.addr;

    // The newest version known to be in effect, and the newest written.
    let applied = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (applied, written, stop) = (applied.clone(), written.clone(), stop.clone());
        load.spawn(async move {
            let mut answers = 0usize;
            let mut conn = client::Conn::connect(addr).await.unwrap();
            while !stop.load(Ordering::Acquire) {
                let lo = applied.load(Ordering::Acquire);
                let body = chat("r", "under load").to_string().into_bytes();
                let r = conn
                    .send("POST", "/v1/chat/completions", &[], Some(body))
                    .await
                    .unwrap();
                let hi = written.load(Ordering::Acquire);
                assert_eq!(r.status, 200, "{}", r.text());
                let (provider, v) = served(&r.json());
                assert!(
                    (lo..=hi).contains(&v),
                    "served by version {v}, outside the versions {lo}..={hi} in effect during the request"
                );
                let targets = [format!("e{}", v % 3), format!("e{}", (v + 1) % 3)];
                assert!(
                    targets.contains(&provider),
                    "{provider} is not a target of version {v} ({targets:?})"
                );
                answers += 1;
            }
            answers
        });
    }

    for v in 1..=20 {
        written.store(v, Ordering::Release);
        write_atomically(&file, &version(v));
        // Wait until the server answers with version v.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = client::post_json(addr, "/v1/chat/completions", &chat("r", "probe"))
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            if served(&r.json()).1 == v {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "version {v} never took effect: {:?}",
                s.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        applied.store(v, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::Release);
    let mut total = 0;
    while let Some(n) = load.join_next().await {
        total += n.unwrap();
    }
    assert!(total >= 20, "the load ran ({total} answers)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_added_to_the_file_answers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tamma.toml");
    write_atomically(&file, PROVIDERS);
    let s = Served::with_config(&file, &[]);
    s.wait_ready().await;
    let r = client::post_json(s.addr, "/v1/chat/completions", &chat("added", "hi"))
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());

    write_atomically(
        &file,
        &format!("{PROVIDERS}\n[server.routes.added]\ntargets = [\"e2/echo-1\"]\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client::post_json(s.addr, "/v1/chat/completions", &chat("added", "hi"))
            .await
            .unwrap();
        if r.status == 200 {
            assert_eq!(r.header("x-tamma-provider"), Some("e2"));
            assert_eq!(r.json()["choices"][0]["message"]["content"], "hi");
            break;
        }
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(
            Instant::now() < deadline,
            "the new route never answered: {:?}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let models = client::get(s.addr, "/v1/models").await.unwrap().json();
    assert!(models["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "added"));
}
