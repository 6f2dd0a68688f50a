//! Shared by the `server*` tests: a real server on 127.0.0.1 over a registry of
//! real components, and small helpers around the test HTTP client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tamma_e2e::{builtins, guest, sandbox};
use tamma_mock_upstream::MockUpstream;
use tamma_registry::circuit_breaker::CircuitBreakerConfig;
use tamma_registry::{
    ComponentSource, Limits, ProviderSettings, Registration, Registry, RegistryConfig,
};
use tamma_sandbox::egress::EgressPolicy;
use tamma_server::config::ClientKey;
use tamma_server::{RunningServer, ServeOptions, Server, ServerConfig};
use tamma_test_support::client::{self, Response};

#[allow(unused_imports)]
pub use tamma_server::config::{
    AdminConfig, AdminRole, AdminToken, RouteConfig, SecretRef, ServerLimits,
};

pub const READ_TOKEN: &str = "read-token-0123456789abcdef";
pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

/// A registry whose breakers open after `failures` failures and stay open 60 s.
pub fn registry(failures: u32) -> Registry {
    let config = RegistryConfig {
        circuit_breaker: CircuitBreakerConfig {
            failure_threshold: failures,
            recovery_timeout: Duration::from_secs(60),
            ..CircuitBreakerConfig::default()
        },
        ..RegistryConfig::default()
    };
    Registry::with_builtins(sandbox(), config, builtins()).expect("registry")
}

/// The key the `openai` provider presents to the mock upstream.
pub const UPSTREAM_KEY: &str = "sk-upstream-test-4b5a";

/// The `openai` guest against `mock`, offering `models` (comma-separated).
pub fn openai_on(mock: &MockUpstream, models: &str) -> Registration {
    Registration::new(ComponentSource::File(guest("openai"))).with_settings(ProviderSettings {
        config: vec![
            ("base_url".into(), mock.base_url()),
            ("models".into(), models.into()),
        ],
        limits: Limits::default(),
        egress: EgressPolicy::new(
            vec![mock.url()],
            BTreeMap::from([("api_key".to_string(), UPSTREAM_KEY.to_string())]),
        ),
    })
}

/// A config with the route `resilient`: `openai/gpt-mock`, falling back to
/// `echo/echo-1`.
pub fn resilient_route() -> ServerConfig {
    ServerConfig {
        routes: BTreeMap::from([(
            "resilient".to_string(),
            RouteConfig::ordered(["openai/gpt-mock", "echo/echo-1"]),
        )]),
        ..ServerConfig::default()
    }
}

/// A client key `name` with this value and no limits.
pub fn key(name: &str, value: &str) -> ClientKey {
    ClientKey {
        name: name.into(),
        key: Some(SecretRef::Value(value.into())),
        sha256: None,
        models: None,
        rpm: None,
        tpm: None,
        max_concurrent: None,
        budget: None,
    }
}

pub fn echo() -> Registration {
    Registration::new(ComponentSource::File(guest("echo")))
}

/// The test provider with these config keys and limits.
pub fn test_provider(config: &[(&str, &str)], limits: Limits) -> Registration {
    Registration::new(ComponentSource::File(guest("test_provider"))).with_settings(
        ProviderSettings::new(
            config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            limits,
        ),
    )
}

pub fn limits(timeout_ms: u64, max_concurrency: u32) -> Limits {
    Limits {
        timeout_ms,
        max_concurrency,
        ..Limits::default()
    }
}

pub fn admin_config() -> AdminConfig {
    AdminConfig {
        tokens: vec![
            AdminToken {
                name: "reader".into(),
                role: AdminRole::Read,
                token: SecretRef::Value(READ_TOKEN.into()),
            },
            AdminToken {
                name: "operator".into(),
                role: AdminRole::Admin,
                token: SecretRef::Value(ADMIN_TOKEN.into()),
            },
        ],
    }
}

/// Serve `registry` on 127.0.0.1:0 with `config`; discovery counts as finished.
pub async fn serve(registry: &Registry, config: ServerConfig) -> RunningServer {
    serve_with(
        registry,
        config,
        ServeOptions {
            discovery_finished: true,
            ..ServeOptions::default()
        },
    )
    .await
}

pub async fn serve_with(
    registry: &Registry,
    config: ServerConfig,
    options: ServeOptions,
) -> RunningServer {
    Server::bind(
        registry.clone(),
        config,
        Some("127.0.0.1:0".parse().unwrap()),
        options,
    )
    .await
    .expect("server binds")
    .spawn()
}

pub fn chat(model: &str, text: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": text }] })
}

pub fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

pub async fn post(addr: SocketAddr, path: &str, body: &Value) -> Response {
    client::post_json(addr, path, body).await.expect("request")
}

pub async fn get(addr: SocketAddr, path: &str) -> Response {
    client::get(addr, path).await.expect("request")
}

pub async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    client::request(
        addr,
        method,
        path,
        &headers,
        body.map(|b| b.to_string().into_bytes()),
    )
    .await
    .expect("request")
}

/// Assert an OpenAI-shaped error with this status and code.
pub fn assert_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let e = &r.json()["error"];
    assert!(e["message"].is_string(), "{}", r.text());
    assert!(e["type"].is_string(), "{}", r.text());
    assert!(e.get("param").is_some(), "{}", r.text());
    assert_eq!(e["code"], code, "{}", r.text());
}

/// Parse SSE `data:` payloads of a chat stream: (chunks, saw [DONE], error event).
pub fn split_stream(data: &[String]) -> (Vec<Value>, bool, Option<Value>) {
    let mut chunks = Vec::new();
    let mut done = false;
    let mut error = None;
    for d in data {
        if d == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(d).expect("each event is JSON");
        if v.get("error").is_some() {
            error = Some(v);
        } else {
            chunks.push(v);
        }
    }
    (chunks, done, error)
}

/// The text of a stream's content deltas.
pub fn stream_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// Wait until the server is serving at least `n` requests.
pub async fn wait_in_flight(s: &RunningServer, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.metrics().in_flight() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "never {n} requests in flight"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The Python of the test venv (`make test` installs the pinned clients into
/// `target/py-test-venv`), when it can import `module`. Without it, `None` —
/// except in CI, where the client must be there: never skip there.
pub fn python_with(module: &str) -> Option<String> {
    let venv = tamma_e2e::workspace_root().join("target/py-test-venv/bin/python");
    let python = if venv.exists() {
        venv.display().to_string()
    } else {
        "python3".to_string()
    };
    let have = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if have {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the `{module}` Python package is missing"
    );
    eprintln!("skipped: the `{module}` Python package is not installed (make test installs it)");
    None
}

/// Run a Python `script` with `args`; its stdout is one JSON value.
pub async fn run_python(python: String, script: &'static str, args: Vec<String>) -> Value {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .args(&args)
            .output()
            .expect("python runs")
    })
    .await
    .expect("the python task");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}
