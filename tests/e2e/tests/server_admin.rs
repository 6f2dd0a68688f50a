//! The admin API over real HTTP: authentication and roles, snapshots without
//! secrets, registration by upload while traffic flows, lifecycle operations and
//! the live event stream. Needs `make guests`.

mod server_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use server_support::*;
use tamma_e2e::guest_bytes;
use tamma_server::{ServeOptions, ServerConfig};
use tamma_test_support::client::Conn;

fn with_admin() -> ServerConfig {
    ServerConfig {
        admin: admin_config(),
        ..ServerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_a_token_and_the_right_role() {
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    let s = serve(&r, with_admin()).await;
    let a = s.addr();
    let p = "/admin/v1/providers";

    let none = admin(a, "GET", p, None, None).await;
    assert_error(&none, 401, "unauthorized");
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert_error(
        &admin(a, "GET", p, Some("wrong-token-0123456789abc"), None).await,
        401,
        "unauthorized",
    );
    // A prefix of a valid token is not valid.
    assert_error(
        &admin(a, "GET", p, Some(&READ_TOKEN[..20]), None).await,
        401,
        "unauthorized",
    );

    let list = admin(a, "GET", p, Some(READ_TOKEN), None).await;
    assert_eq!(list.status, 200, "{}", list.text());
    let providers = list.json()["providers"].as_array().unwrap().clone();
    assert_eq!(providers.len(), 1);
    let snap = &providers[0];
    for key in [
        "name",
        "state",
        "health",
        "circuit",
        "capabilities",
        "limits",
        "metadata",
        "pool",
        "calls",
    ] {
        assert!(snap.get(key).is_some(), "snapshot has {key}: {snap}");
    }
    assert_eq!(
        admin(a, "GET", "/admin/v1/providers/echo", Some(READ_TOKEN), None)
            .await
            .json()["state"],
        "ready"
    );
    assert_error(
        &admin(
            a,
            "GET",
            "/admin/v1/providers/ghost",
            Some(READ_TOKEN),
            None,
        )
        .await,
        404,
        "model_not_found",
    );

    // The read role may not change anything.
    for (method, path) in [
        ("DELETE", "/admin/v1/providers/echo"),
        ("POST", "/admin/v1/providers/echo/restart"),
        ("POST", "/admin/v1/providers/echo/health-check"),
        ("POST", "/admin/v1/providers"),
    ] {
        assert_error(
            &admin(a, method, path, Some(READ_TOKEN), Some(&json!({}))).await,
            403,
            "forbidden",
        );
    }
    assert!(r.contains("echo"));

    // The admin role may.
    let hc = admin(
        a,
        "POST",
        "/admin/v1/providers/echo/health-check",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(hc.status, 200, "{}", hc.text());
    assert_eq!(hc.json()["status"], "healthy");
    let rs = admin(
        a,
        "POST",
        "/admin/v1/providers/echo/restart",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(rs.status, 200, "{}", rs.text());
    assert_eq!(rs.json()["state"], "ready");
    let stop = admin(
        a,
        "POST",
        "/admin/v1/providers/echo/stop",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(stop.json()["state"], "stopped");
    assert_eq!(
        post(a, "/v1/chat/completions", &chat("echo/echo-1", "x"))
            .await
            .status,
        503
    );
    let start = admin(
        a,
        "POST",
        "/admin/v1/providers/echo/start",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(start.json()["state"], "ready");
    assert_eq!(
        post(a, "/v1/chat/completions", &chat("echo/echo-1", "x"))
            .await
            .status,
        200
    );
    let del = admin(
        a,
        "DELETE",
        "/admin/v1/providers/echo",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(del.status, 200);
    assert_eq!(del.json(), json!({"name": "echo", "clean": true}));
    assert!(!r.contains("echo"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_admin_api_does_not_exist_unless_the_dev_flag_is_set() {
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    let s = serve(&r, ServerConfig::default()).await;
    assert_error(
        &admin(
            s.addr(),
            "GET",
            "/admin/v1/providers",
            Some(ADMIN_TOKEN),
            None,
        )
        .await,
        404,
        "not_found",
    );
    s.shutdown().await;

    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    let dev = serve_with(
        &r,
        ServerConfig::default(),
        ServeOptions {
            dev_admin_without_auth: true,
            discovery_finished: true,
        },
    )
    .await;
    assert_eq!(
        admin(dev.addr(), "GET", "/admin/v1/providers", None, None)
            .await
            .status,
        200
    );
    dev.shutdown().await;

    // Never on a non-loopback address.
    let err = tamma_server::Server::bind(
        registry(5),
        ServerConfig::default(),
        Some("0.0.0.0:0".parse().unwrap()),
        ServeOptions {
            dev_admin_without_auth: true,
            discovery_finished: true,
        },
    )
    .await
    .err()
    .expect("refused");
    assert!(err.message.contains("loopback"), "{err}");

    // Tokens too short, or from a variable that is not set, are refused at start.
    let mut config = with_admin();
    config.admin.tokens[0].token = SecretRef::Env("TAMMA_TEST_SURELY_UNSET".into());
    let err = tamma_server::Server::bind(
        registry(5),
        config,
        Some("127.0.0.1:0".parse().unwrap()),
        ServeOptions::default(),
    )
    .await
    .err()
    .expect("refused");
    assert!(
        err.message.contains(
            "server.admin.tokens[0].token: environment variable TAMMA_TEST_SURELY_UNSET is not set"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_unregister_by_upload_while_traffic_flows_and_no_secret_comes_back() {
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    let s = serve(&r, with_admin()).await;
    let a = s.addr();

    // Steady traffic to echo on keep-alive connections throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut traffic = Vec::new();
    for _ in 0..2 {
        let (stop, ok) = (stop.clone(), ok.clone());
        traffic.push(tokio::spawn(async move {
            let mut conn = Conn::connect(a).await.unwrap();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let body = chat("echo/echo-1", "steady").to_string().into_bytes();
                let resp = conn
                    .send("POST", "/v1/chat/completions", &[], Some(body))
                    .await
                    .unwrap();
                if resp.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.push(resp.text());
                }
            }
            failures
        }));
    }

    let component = base64::engine::general_purpose::STANDARD.encode(guest_bytes("test_provider"));
    let upload = json!({
        "name": "uploaded",
        "component_base64": component,
        "version": "1.0.0",
        "config": {"reply": "up"},
        "limits": {"max_concurrency": 2},
        "allowed_hosts": ["https://api.example.com"],
        "secrets": {"api_key": "sk-never-returned-7d3f"},
    });
    let reg = admin(
        a,
        "POST",
        "/admin/v1/providers",
        Some(ADMIN_TOKEN),
        Some(&upload),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text());
    assert_eq!(reg.json()["metadata"]["source"], "api");
    assert_eq!(reg.json()["metadata"]["version"], "1.0.0");
    assert_eq!(reg.json()["secret_names"], json!(["api_key"]));
    let again = admin(
        a,
        "POST",
        "/admin/v1/providers",
        Some(ADMIN_TOKEN),
        Some(&upload),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.text());

    let answer = post(a, "/v1/chat/completions", &chat("uploaded/test-1", "hi")).await;
    assert_eq!(answer.json()["choices"][0]["message"]["content"], "up:hi");
    for path in ["/admin/v1/providers", "/admin/v1/providers/uploaded"] {
        let text = admin(a, "GET", path, Some(READ_TOKEN), None).await.text();
        assert!(!text.contains("sk-never-returned"), "{text}");
        assert!(
            !text.contains("\"up\""),
            "config values are not returned: {text}"
        );
        assert!(text.contains("reply"), "config keys are: {text}");
    }

    // Replace it in place (PUT), then a built-in by name.
    let mut replacement = upload.clone();
    replacement["config"] = json!({"reply": "v2"});
    replacement.as_object_mut().unwrap().remove("name");
    let put = admin(
        a,
        "PUT",
        "/admin/v1/providers/uploaded",
        Some(ADMIN_TOKEN),
        Some(&replacement),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        post(a, "/v1/chat/completions", &chat("uploaded/test-1", "hi"))
            .await
            .json()["choices"][0]["message"]["content"],
        "v2:hi"
    );
    let builtin = admin(
        a,
        "POST",
        "/admin/v1/providers",
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "echo2", "builtin": "echo"})),
    )
    .await;
    assert_eq!(builtin.status, 201, "{}", builtin.text());

    // Bad uploads are refused with what is wrong.
    let bad = admin(
        a,
        "POST",
        "/admin/v1/providers",
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "junk", "component_base64": "AAAA"})),
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert_eq!(bad.json()["error"]["tamma_code"], "REGISTRATION_FAILED");
    let bad = admin(
        a,
        "POST",
        "/admin/v1/providers",
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "Bad Name", "builtin": "echo"})),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());

    let del = admin(
        a,
        "DELETE",
        "/admin/v1/providers/uploaded",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(del.status, 200);
    assert_error(
        &post(a, "/v1/chat/completions", &chat("uploaded/test-1", "hi")).await,
        404,
        "model_not_found",
    );
    assert_error(
        &admin(
            a,
            "DELETE",
            "/admin/v1/providers/uploaded",
            Some(ADMIN_TOKEN),
            None,
        )
        .await,
        404,
        "model_not_found",
    );

    stop.store(true, Ordering::Relaxed);
    for t in traffic {
        let failures = t.await.unwrap();
        assert!(failures.is_empty(), "echo traffic failed: {failures:?}");
    }
    assert!(ok.load(Ordering::Relaxed) > 0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_carries_registry_events_live() {
    let r = registry(1);
    r.register("test", test_provider(&[], limits(10_000, 2)))
        .await
        .unwrap();
    let s = serve(&r, with_admin()).await;
    let a = s.addr();
    let mut conn = Conn::connect(a).await.unwrap();
    let auth = format!("Bearer {READ_TOKEN}");
    let mut events = conn
        .send_streaming("GET", "/admin/v1/events", &[("authorization", &auth)], None)
        .await
        .unwrap();
    assert_eq!(events.status, 200);
    assert_eq!(events.headers["content-type"], "text/event-stream");
    // The opening comment: the subscription is live from here.
    let hello = events.next_event().await.unwrap().unwrap();
    assert!(hello.starts_with(':'), "{hello}");

    r.register("echo", echo()).await.unwrap();
    // A trap opens test's breaker (threshold 1).
    let trap = with(chat("test/test-1", "x"), "metadata", json!({"trap": "1"}));
    assert_eq!(post(a, "/v1/chat/completions", &trap).await.status, 502);
    r.unregister("echo").await.unwrap();

    let mut kinds = Vec::new();
    let mut seqs = Vec::new();
    while !kinds.contains(&"provider-unregistered".to_string()) {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next_event())
            .await
            .expect("events arrive")
            .unwrap()
            .unwrap();
        if ev.starts_with(':') {
            continue;
        }
        let lines: Vec<&str> = ev.lines().collect();
        let kind = lines[0].strip_prefix("event: ").unwrap().to_string();
        let id: u64 = lines[1].strip_prefix("id: ").unwrap().parse().unwrap();
        let data: Value = serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], kind.as_str());
        assert_eq!(data["seq"], id);
        seqs.push(id);
        kinds.push(kind);
    }
    for want in [
        "provider-registered",
        "provider-error",
        "circuit-breaker-opened",
        "provider-state-changed",
        "provider-unregistered",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} in {kinds:?}");
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    // Shutdown ends the stream.
    let report = tokio::time::timeout(Duration::from_secs(10), s.shutdown())
        .await
        .expect("event streams do not hold up shutdown");
    assert!(report.drained);
}

/// Secrets uploaded through the admin API are bound to hosts like the file's:
/// `secret_hosts` names them, a built-in's secrets default to its `base_url`'s
/// host, and a binding for a secret the upload does not carry is refused. The
/// snapshot shows the bindings (host entries only, never values).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_secrets_are_bound_to_hosts() {
    let r = registry(5);
    let s = serve(&r, with_admin()).await;
    let a = s.addr();
    let upload = |name: &str, extra: Value| {
        let mut u = json!({
            "name": name,
            "builtin": "openai",
            "config": {"base_url": "http://127.0.0.1:9/v1"},
            "allowed_hosts": ["http://127.0.0.1:9", "https://telemetry.example.com"],
            "secrets": {"api_key": "sk-bound-secret-5b1e"},
        });
        if let Value::Object(m) = extra {
            u.as_object_mut().unwrap().extend(m);
        }
        u
    };
    let p = "/admin/v1/providers";

    let by_default = admin(
        a,
        "POST",
        p,
        Some(ADMIN_TOKEN),
        Some(&upload("d", json!({}))),
    )
    .await;
    assert_eq!(by_default.status, 201, "{}", by_default.text());
    assert_eq!(
        by_default.json()["secret_hosts"],
        json!({"api_key": ["http://127.0.0.1:9"]})
    );

    let explicit = upload(
        "e",
        json!({"secret_hosts": {"api_key": ["https://telemetry.example.com"]}}),
    );
    let explicit = admin(a, "POST", p, Some(ADMIN_TOKEN), Some(&explicit)).await;
    assert_eq!(explicit.status, 201, "{}", explicit.text());
    assert_eq!(
        explicit.json()["secret_hosts"],
        json!({"api_key": ["https://telemetry.example.com"]})
    );

    let unknown = upload(
        "u",
        json!({"secret_hosts": {"other": ["http://127.0.0.1:9"]}}),
    );
    let unknown = admin(a, "POST", p, Some(ADMIN_TOKEN), Some(&unknown)).await;
    assert_eq!(unknown.status, 400, "{}", unknown.text());
    assert!(
        unknown.text().contains("\\\"other\\\""),
        "{}",
        unknown.text()
    );
    assert!(
        !unknown.text().contains("sk-bound-secret"),
        "{}",
        unknown.text()
    );

    let listed = admin(a, "GET", p, Some(READ_TOKEN), None).await.text();
    assert!(!listed.contains("sk-bound-secret"), "{listed}");
    s.shutdown().await;
}
