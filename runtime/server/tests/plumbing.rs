//! The server's plumbing over real HTTP, without providers: request ids, the
//! limits' error bodies and the metrics text.

use tamma_registry::registry::Registry;
use tamma_registry::registry_config::RegistryConfig;
use tamma_sandbox::compile_cache::CompileCache;
use tamma_sandbox::engine::{EngineConfig, SandboxEngine};
use tamma_sandbox::Sandbox;
use tamma_server::config::ServerLimits;
use tamma_server::{ServeOptions, Server, ServerConfig};
use tamma_test_support::client;

async fn serve(config: ServerConfig) -> (tamma_server::RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = SandboxEngine::new(EngineConfig {
        pooling: false,
        ..EngineConfig::default()
    })
    .expect("engine");
    let sandbox = Sandbox::new(engine, CompileCache::new(dir.path())).expect("sandbox");
    let registry = Registry::new(sandbox, RegistryConfig::default()).expect("registry");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let options = ServeOptions {
        discovery_finished: true,
        ..ServeOptions::default()
    };
    let server = Server::with_listener(registry, config, listener, options).expect("server");
    (server.spawn(), dir)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_made_on_every_answer() {
    let (s, _dir) = serve(ServerConfig::default()).await;
    let a = s.addr();
    let own = client::request(a, "GET", "/healthz", &[("x-request-id", "my-id-42")], None)
        .await
        .unwrap();
    assert_eq!(own.status, 200);
    assert_eq!(own.header("x-request-id"), Some("my-id-42"));

    let made = client::get(a, "/healthz").await.unwrap();
    let id = made.header("x-request-id").unwrap().to_string();
    assert!(is_uuid(&id), "{id}");
    let other = client::get(a, "/nowhere").await.unwrap();
    assert_eq!(other.status, 404);
    let other_id = other.header("x-request-id").unwrap();
    assert!(is_uuid(other_id) && other_id != id, "{other_id}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_gets_the_openai_shaped_413_and_is_counted() {
    let config = ServerConfig {
        limits: ServerLimits {
            max_body_bytes: 64,
            ..ServerLimits::default()
        },
        ..ServerConfig::default()
    };
    let (s, _dir) = serve(config).await;
    let a = s.addr();
    let body = format!(
        r#"{{"model":"a/b","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(100)
    );
    let r = client::request(
        a,
        "POST",
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "big-1"),
        ],
        Some(body.into_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("x-request-id"), Some("big-1"));
    let e = &r.json()["error"];
    assert_eq!(e["code"], "request_too_large");
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(
        e["message"],
        "the request body is larger than the limit of 64 bytes"
    );
    let m = client::get(a, "/metrics").await.unwrap().text();
    assert!(
        m.contains("tamma_http_rejected_total{reason=\"body_too_large\"} 1"),
        "{m}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_text_0_0_4_with_build_and_process_metrics() {
    let (s, _dir) = serve(ServerConfig::default()).await;
    let a = s.addr();
    let r = client::get(a, "/metrics").await.unwrap();
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = r.text();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        m.contains(&format!(
            "tamma_build_info{{version=\"{version}\",wasmtime=\"{}\"}} 1\n",
            tamma_sandbox::engine::WASMTIME_VERSION
        )),
        "{m}"
    );
    assert!(
        m.contains("# TYPE tamma_http_connections_total counter\n"),
        "{m}"
    );
    assert!(m.contains("\ntamma_providers 0\n"), "{m}");
    assert!(!m.contains("# EOF") && !m.contains("# UNIT"), "{m}");
    if cfg!(target_os = "linux") {
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let v: f64 = m
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing: {m}"))
                .parse()
                .unwrap();
            assert!(v >= 0.0, "{name} {v}");
        }
    }
    s.shutdown().await;
}
