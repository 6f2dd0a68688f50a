//! `tamma serve`, the real binary: it answers out of the box, logs as text or JSON,
//! and on SIGTERM finishes the requests it is running and exits 0.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tamma_test_support::client;

mod support;
use support::{chat, guest, Served};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_config_answers_with_echo_and_exits_0_on_sigterm() {
    let mut s = Served::start(&["--listen", "127.0.0.1:0"], &[]);
    assert_ne!(s.addr.port(), 0, "the real port is printed");
    assert_eq!(client::get(s.addr, "/healthz").await.unwrap().status, 200);
    s.wait_ready().await;
    let models = client::get(s.addr, "/v1/models").await.unwrap().json();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "echo/echo-1"),
        "{models}"
    );
    let r = client::post_json(
        s.addr,
        "/v1/chat/completions",
        &chat("echo/echo-1", "out of the box"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "out of the box"
    );
    // The admin API is off without tokens.
    assert_eq!(
        client::get(s.addr, "/admin/v1/providers")
            .await
            .unwrap()
            .status,
        404
    );
    s.sigterm();
    assert_eq!(s.wait(Duration::from_secs(30)), 0);
    let err = s.stderr().join("\n");
    assert!(err.contains("listening on http://127.0.0.1:"), "{err}");
    assert!(err.contains("stopped"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_traffic_finishes_the_running_requests_then_exits_0() {
    let mut s = Served::start(
        &["--listen", "127.0.0.1:0", "--dev-admin-without-auth"],
        &[],
    );
    s.wait_ready().await;
    // A provider that can be made slow, uploaded over the (dev) admin API.
    let upload = json!({
        "name": "slow",
        "component_base64": base64::engine::general_purpose::STANDARD.encode(std::fs::read(guest("test_provider")).unwrap()),
        "limits": {"max_concurrency": 8},
    });
    let reg = client::post_json(s.addr, "/admin/v1/providers", &upload)
        .await
        .unwrap();
    assert_eq!(reg.status, 201, "{}", reg.text());

    let addr = s.addr;
    let mut running = Vec::new();
    for i in 0..6 {
        let stream = i % 2 == 0;
        let mut body = chat("slow/test-1", &format!("request {i}"));
        body["metadata"] = json!({"hang_ms": "1500"});
        body["stream"] = json!(stream);
        running.push(tokio::spawn(async move {
            if stream {
                let mut st = client::post_streaming(addr, "/v1/chat/completions", &body)
                    .await
                    .unwrap();
                let (data, end) = st.collect_data().await;
                let mut text: String = data
                    .iter()
                    .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                    .filter_map(|c| {
                        c["choices"][0]["delta"]["content"]
                            .as_str()
                            .map(String::from)
                    })
                    .collect();
                if data.last().map(String::as_str) == Some("[DONE]") {
                    text.push_str("[DONE]");
                }
                (st.status, text, end.is_ok())
            } else {
                let r = client::post_json(addr, "/v1/chat/completions", &body)
                    .await
                    .unwrap();
                (r.status, r.text(), true)
            }
        }));
    }
    // Echo traffic too, on its own connection, until the server goes away.
    let echo_traffic = tokio::spawn(async move {
        let mut ok = 0;
        loop {
            match client::post_json(addr, "/v1/chat/completions", &chat("echo/echo-1", "x")).await {
                Ok(r) if r.status == 200 => ok += 1,
                _ => return ok,
            }
        }
    });
    // Until the six slow requests are running (echo's may add one).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = client::get(addr, "/metrics").await.unwrap().text();
        let n: f64 = m
            .lines()
            .find_map(|l| l.strip_prefix("tamma_http_in_flight_requests "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if n >= 6.0 {
            break;
        }
        assert!(Instant::now() < deadline, "requests never in flight: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.sigterm();
    let sent = Instant::now();
    for (i, r) in running.into_iter().enumerate() {
        let (status, text, clean) = r.await.unwrap();
        assert_eq!(status, 200, "request {i}: {text}");
        assert!(clean, "request {i}");
        assert!(
            text.contains(&format!("ok:request {i}")),
            "request {i}: {text}"
        );
        if i % 2 == 0 {
            assert!(text.ends_with("[DONE]"), "stream {i} ended cleanly: {text}");
        }
    }
    assert!(echo_traffic.await.unwrap() > 0);
    assert_eq!(s.wait(Duration::from_secs(30)), 0, "{:?}", s.stderr());
    assert!(
        sent.elapsed() >= Duration::from_millis(500),
        "it waited for the running requests"
    );
    let err = s.stderr().join("\n");
    assert!(err.contains("SIGTERM"), "{err}");
    assert!(err.contains("requests drained: true"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let mut s = Served::start(&["--listen", "127.0.0.1:0", "--log-format", "json"], &[]);
    s.wait_ready().await;
    let r = client::post_json(s.addr, "/v1/chat/completions", &chat("echo/echo-1", "hi"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    s.sigterm();
    assert_eq!(s.wait(Duration::from_secs(30)), 0);
    let lines = s.stderr();
    assert!(lines.len() >= 3, "{lines:?}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string(), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("\"listening\"")));
}

#[test]
fn bad_listen_addresses_fail_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "bad usage");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args(["serve", "--listen", &port])
        .env(
            "TAMMA_CACHE_DIR",
            std::env::temp_dir().join("tamma-cli-test-cache"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_declares_providers_routes_and_admin_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tamma.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[providers.echo]
component = "echo"

[providers.slow]
component = "{}"
config = {{ reply = "cfg" }}

[discovery]
environment = false

[server]
shutdown_grace_ms = 5000

[server.limits]
max_body_bytes = 4096

[[server.admin.tokens]]
name = "ops"
role = "admin"
token = {{ env = "TAMMA_TEST_ADMIN_TOKEN" }}

[server.routes.main]
targets = ["slow/test-1", "echo/echo-1"]
"#,
            guest("test_provider").display()
        ),
    )
    .unwrap();
    let mut s = Served::start(
        &[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("TAMMA_TEST_ADMIN_TOKEN", "cli-admin-token-0123456789")],
    );
    s.wait_ready().await;
    let models = client::get(s.addr, "/v1/models").await.unwrap().json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["echo/echo-1", "echo/echo-embed-1", "slow/test-1", "main"],
        "{models}"
    );
    let r = client::post_json(s.addr, "/v1/chat/completions", &chat("main", "hi"))
        .await
        .unwrap();
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "cfg:hi",
        "{}",
        r.text()
    );
    // The route falls through when its first target fails before the first byte.
    let mut body = chat("main", "hi");
    body["metadata"] = json!({"fail": "service-unavailable"});
    let r = client::post_json(s.addr, "/v1/chat/completions", &body)
        .await
        .unwrap();
    assert_eq!(r.header("x-tamma-provider"), Some("echo"), "{}", r.text());
    // [server.limits] applies.
    let big = chat("echo/echo-1", &"x".repeat(5000));
    assert_eq!(
        client::post_json(s.addr, "/v1/chat/completions", &big)
            .await
            .unwrap()
            .status,
        413
    );
    // The admin token comes from the environment.
    assert_eq!(
        client::get(s.addr, "/admin/v1/providers")
            .await
            .unwrap()
            .status,
        401
    );
    let ok = client::request(
        s.addr,
        "GET",
        "/admin/v1/providers",
        &[("authorization", "Bearer cli-admin-token-0123456789")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    assert!(!ok.text().contains("cfg"), "config values are not returned");
    s.sigterm();
    assert_eq!(s.wait(Duration::from_secs(30)), 0);
}

/// SIGTERM while a reload round is adding providers whose `initialize` hangs
/// (each could take its 120 s init timeout, one after another): `/readyz`
/// answers 503 at once, the round is cut off, the listener closes after the
/// drain, and the process exits within drain + grace + shutdown timeout — not
/// after the round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_reload_round_of_hanging_providers_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest("adversarial_init_hang"), dir.path().join("hang.wasm")).unwrap();
    let base = "[lifecycle]\ninit_timeout_ms = 120000\nshutdown_timeout_ms = 2000\n\
                [discovery]\nenvironment = false\nauto_refresh_ms = 50\n\
                [server]\nshutdown_grace_ms = 2000\nshutdown_drain_ms = 1000\n\
                [providers.echo]\ncomponent = \"echo\"\n";
    let cfg = dir.path().join("tamma.toml");
    std::fs::write(&cfg, base).unwrap();
    let mut s = Served::with_config(&cfg, &[]);
    s.wait_ready().await;
    let mut more = base.to_string();
    for i in 1..=3 {
        more.push_str(&format!(
            "[providers.hang{i}]\ncomponent = \"hang.wasm\"\nlimits = {{ init_timeout_ms = 120000 }}\n"
        ));
    }
    let tmp = dir.path().join("tamma.toml.tmp");
    std::fs::write(&tmp, more).unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();
    // The round picks the change up within 50 ms and then compiles and
    // initializes the first hanging provider.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.sigterm();
    // `/readyz` turns 503 (while the drain still accepts), not after the round.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client::get(s.addr, "/readyz")
            .await
            .unwrap_or_else(|e| panic!("/readyz refused before it said 503: {e}"));
        if r.status == 503 {
            break;
        }
        assert_eq!(r.status, 200);
        assert!(
            Instant::now() < deadline,
            "/readyz still 200 after SIGTERM: {:?}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Then the listener closes: no request is accepted after the drain.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client::get(s.addr, "/healthz").await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after the drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // drain 1 s + grace 2 s + shutdown 2 s, with room for a loaded machine;
    // waiting for the round would take minutes.
    assert_eq!(s.wait(Duration::from_secs(20)), 0, "{:?}", s.stderr());
    let err = s.stderr().join("\n");
    assert!(err.contains("discovery round cancelled"), "{err}");
}
