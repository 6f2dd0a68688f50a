//! `tamma serve`'s HTTP server, for real: a server on 127.0.0.1 over real
//! components, driven over real HTTP. Chat completions whole and streamed,
//! models, errors and their statuses, routing and fallback, circuits, mid-stream
//! errors, probes, metrics, limits and graceful shutdown. Needs `make guests`.

mod server_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::*;
use tamma_registry::{Limits, ProviderSettings};
use tamma_server::{ServeOptions, ServerConfig};
use tamma_test_support::client::{self, Conn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn routes(list: &[(&str, &[&str])]) -> BTreeMap<String, RouteConfig> {
    list.iter()
        .map(|(n, t)| (n.to_string(), RouteConfig::ordered(t.iter().copied())))
        .collect()
}

// --- chat completions -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completion_through_echo() {
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    let s = serve(&r, ServerConfig::default()).await;
    let resp = post(
        s.addr(),
        "/v1/chat/completions",
        &chat("echo/echo-1", "hello sandboxed world"),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("x-tamma-provider"), Some("echo"));
    let v = resp.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "echo/echo-1");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "hello sandboxed world"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 6);

    // max_tokens / max_completion_tokens, temperature, top_p, stop (string or array)
    let body = json!({
        "model": "echo/echo-1",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three four"}],
        "max_completion_tokens": 2, "temperature": 0.2, "top_p": 0.5, "stop": ["x", "y"],
    });
    let v = post(s.addr(), "/v1/chat/completions", &body).await.json();
    assert_eq!(v["choices"][0]["message"]["content"], "one two");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let v = post(
        s.addr(),
        "/v1/chat/completions",
        &with(chat("echo/echo-1", "a b c"), "max_tokens", json!(1)),
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["message"]["content"], "a");

    // A bare model id offered by one provider resolves to it.
    let v = post(s.addr(), "/v1/chat/completions", &chat("echo-1", "bare"))
        .await
        .json();
    assert_eq!(v["model"], "echo/echo-1");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chat_completion_through_echo() {
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    let s = serve(&r, ServerConfig::default()).await;
    let body = with(
        with(
            chat("echo/echo-1", "streamed word by word"),
            "stream",
            json!(true),
        ),
        "stream_options",
        json!({"include_usage": true}),
    );
    let mut st = client::post_streaming(s.addr(), "/v1/chat/completions", &body)
        .await
        .unwrap();
    assert_eq!(st.status, 200);
    assert_eq!(st.headers["content-type"], "text/event-stream");
    let (data, end) = st.collect_data().await;
    end.unwrap();
    let (chunks, done, error) = split_stream(&data);
    assert!(done, "ends with [DONE]: {data:?}");
    assert!(error.is_none());
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert_eq!(stream_text(&chunks), "streamed word by word");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "echo/echo-1");
        assert_eq!(c["id"], chunks[0]["id"], "one id per stream");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter(|c| {
            !c["choices"][0]["finish_reason"].is_null()
                && c["choices"].as_array().is_some_and(|a| !a.is_empty())
        })
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(
        usage["choices"],
        json!([]),
        "usage comes in a final chunk without choices"
    );
    assert_eq!(usage["usage"]["completion_tokens"], 4);
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["usage"].is_null()));

    // Without include_usage: no usage chunk, no usage field.
    let body = with(chat("echo/echo-1", "a b"), "stream", json!(true));
    let mut st = client::post_streaming(s.addr(), "/v1/chat/completions", &body)
        .await
        .unwrap();
    let (data, _) = st.collect_data().await;
    let (chunks, done, _) = split_stream(&data);
    assert!(done);
    assert!(chunks
        .iter()
        .all(|c| c.get("usage").is_none() && !c["choices"].as_array().unwrap().is_empty()));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_as_provider_slash_model_with_routes() {
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    r.register(
        "test",
        test_provider(&[("models", "m-a,m-b")], Limits::default()),
    )
    .await
    .unwrap();
    r.register("stopped", echo()).await.unwrap();
    r.stop("stopped").await.unwrap();
    let config = ServerConfig {
        routes: routes(&[("smart", &["test/m-a", "echo/echo-1"])]),
        ..ServerConfig::default()
    };
    let s = serve(&r, config).await;
    let v = get(s.addr(), "/v1/models").await.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "echo/echo-1",
            "echo/echo-embed-1",
            "test/m-a",
            "test/m-b",
            "smart"
        ],
        "ready providers only; chat models, then embedding models"
    );
    assert_eq!(v["data"][1]["tamma"]["kind"], "embedding");
    assert_eq!(v["data"][1]["tamma"]["dimensions"], 8);
    for m in v["data"].as_array().unwrap() {
        assert_eq!(m["object"], "model");
        assert!(m["created"].is_u64());
        assert!(m["owned_by"].is_string());
    }
    let one = get(s.addr(), "/v1/models/test/m-b").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["id"], "test/m-b");
    assert_error(
        &get(s.addr(), "/v1/models/test/nope").await,
        404,
        "model_not_found",
    );
    // A stopped provider is not offered; asking it answers 503.
    let resp = post(
        s.addr(),
        "/v1/chat/completions",
        &chat("stopped/echo-1", "x"),
    )
    .await;
    assert_error(&resp, 503, "provider_stopped");
    s.shutdown().await;
}

// --- errors ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_openai_shape_and_fitting_statuses() {
    let r = registry(100);
    r.register("test", test_provider(&[], limits(300, 2)))
        .await
        .unwrap();
    let s = serve(&r, ServerConfig::default()).await;
    let a = s.addr();
    let ask = |meta: Value| with(chat("test/test-1", "hi"), "metadata", meta);

    let raw = client::request(
        a,
        "POST",
        "/v1/chat/completions",
        &[],
        Some(b"{nope".to_vec()),
    )
    .await
    .unwrap();
    assert_error(&raw, 400, "invalid_request");
    assert_error(
        &post(a, "/v1/chat/completions", &json!({"messages": []})).await,
        400,
        "invalid_request",
    );
    assert_error(
        &post(a, "/v1/chat/completions", &chat("ghost/x", "hi")).await,
        404,
        "model_not_found",
    );
    assert_error(
        &post(a, "/v1/chat/completions", &chat("no-such-model", "hi")).await,
        404,
        "model_not_found",
    );
    assert_error(&get(a, "/v2/whatever").await, 404, "not_found");

    let rl = post(
        a,
        "/v1/chat/completions",
        &ask(json!({"fail": "rate-limit-exceeded", "retry_after_ms": "2500"})),
    )
    .await;
    assert_error(&rl, 429, "rate_limit_exceeded");
    assert_eq!(rl.header("retry-after"), Some("3"));
    assert_eq!(rl.header("retry-after-ms"), Some("2500"));
    assert_eq!(rl.json()["error"]["type"], "rate_limit_error");
    assert_eq!(rl.json()["error"]["provider"], "test");
    for (code, status, oc) in [
        ("invalid-api-key", 401, "invalid_api_key"),
        ("model-not-found", 404, "model_not_found"),
        ("context-too-long", 400, "context_length_exceeded"),
        ("invalid-request", 400, "invalid_request"),
        ("quota-exceeded", 429, "insufficient_quota"),
        ("network-error", 502, "network_error"),
        ("provider-error", 502, "provider_error"),
        ("timeout", 504, "timeout"),
        ("service-unavailable", 503, "service_unavailable"),
    ] {
        let resp = post(a, "/v1/chat/completions", &ask(json!({"fail": code}))).await;
        assert_error(&resp, status, oc);
        assert_eq!(resp.json()["error"]["tamma_code"], "PROVIDER_ERROR");
    }
    // Sandbox failures: a trap is a bad gateway, a call past its deadline a timeout.
    let trap = post(a, "/v1/chat/completions", &ask(json!({"trap": "1"}))).await;
    assert_error(&trap, 502, "trap");
    assert_eq!(trap.json()["error"]["tamma_code"], "TRAP");
    let slow = post(a, "/v1/chat/completions", &ask(json!({"hang_ms": "2000"}))).await;
    assert_error(&slow, 504, "timeout");
    // The same errors when streaming, before the first byte: a plain HTTP error.
    let st = post(
        a,
        "/v1/chat/completions",
        &with(
            ask(json!({"fail": "rate-limit-exceeded"})),
            "stream",
            json!(true),
        ),
    )
    .await;
    assert_error(&st, 429, "rate_limit_exceeded");
    // The provider still serves.
    assert_eq!(
        post(a, "/v1/chat/completions", &chat("test/test-1", "fine"))
            .await
            .json()["choices"][0]["message"]["content"],
        "ok:fine"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_after_the_stream_started_is_an_in_band_error_event_not_a_clean_end() {
    let r = registry(5);
    // Each streamed word costs ~80 bytes of the response cap (its text plus a
    // 64-byte per-chunk overhead): the first chunks pass, then the total goes over.
    let small = Limits {
        max_response_bytes: 300,
        ..Limits::default()
    };
    r.register(
        "tiny",
        echo().with_settings(ProviderSettings::new(vec![], small)),
    )
    .await
    .unwrap();
    let s = serve(&r, ServerConfig::default()).await;
    let body = with(
        chat(
            "tiny/echo-1",
            "one two three four five six seven eight nine ten",
        ),
        "stream",
        json!(true),
    );
    let mut st = client::post_streaming(s.addr(), "/v1/chat/completions", &body)
        .await
        .unwrap();
    assert_eq!(st.status, 200, "the stream had started");
    let (data, _) = st.collect_data().await;
    let (chunks, done, error) = split_stream(&data);
    assert!(!chunks.is_empty(), "some content was sent first: {data:?}");
    assert!(!done, "no [DONE] after an error: {data:?}");
    let error = error.expect("an in-band error event");
    assert_eq!(error["error"]["code"], "response_too_large");
    assert_eq!(error["error"]["type"], "server_error");
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null()),
        "no clean finish"
    );
    s.shutdown().await;
}

// --- routing and fallback ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_falls_through_on_a_retryable_error_before_the_first_byte() {
    let r = registry(100);
    // `fast` gives up after 150 ms; `patient` waits. A request that makes the
    // guest sleep 400 ms times out on the first target and is served by the second.
    r.register("fast", test_provider(&[("reply", "fast")], limits(150, 2)))
        .await
        .unwrap();
    r.register(
        "patient",
        test_provider(&[("reply", "patient")], limits(10_000, 2)),
    )
    .await
    .unwrap();
    let config = ServerConfig {
        routes: routes(&[
            ("smart", &["fast/test-1", "patient/test-1"]),
            ("strict", &["fast/test-1", "patient/test-1"]),
            ("gone-first", &["ghost/test-1", "patient/test-1"]),
        ]),
        ..ServerConfig::default()
    };
    let s = serve(&r, config).await;
    let a = s.addr();
    let slow = |model: &str| with(chat(model, "q"), "metadata", json!({"hang_ms": "400"}));

    let resp = post(a, "/v1/chat/completions", &slow("smart")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-tamma-provider"), Some("patient"));
    assert_eq!(resp.json()["choices"][0]["message"]["content"], "patient:q");
    assert_eq!(resp.json()["model"], "patient/test-1");

    // Streaming: the fallback happens before anything is sent.
    let mut st = client::post_streaming(
        a,
        "/v1/chat/completions",
        &with(slow("smart"), "stream", json!(true)),
    )
    .await
    .unwrap();
    assert_eq!(st.status, 200);
    assert_eq!(st.headers["x-tamma-provider"], "patient");
    let (data, _) = st.collect_data().await;
    let (chunks, done, error) = split_stream(&data);
    assert!(done && error.is_none());
    assert_eq!(stream_text(&chunks), "patient:q");

    // A caller's mistake does not fall through: the first target's answer stands.
    let bad = post(
        a,
        "/v1/chat/completions",
        &with(
            chat("strict", "q"),
            "metadata",
            json!({"fail": "invalid-request"}),
        ),
    )
    .await;
    assert_error(&bad, 400, "invalid_request");
    assert_eq!(bad.json()["error"]["provider"], "fast");

    // A target that is not registered is skipped.
    let resp = post(a, "/v1/chat/completions", &chat("gone-first", "q")).await;
    assert_eq!(resp.header("x-tamma-provider"), Some("patient"));

    // Without a route nothing falls through.
    assert_error(
        &post(a, "/v1/chat/completions", &slow("fast/test-1")).await,
        504,
        "timeout",
    );
    let metrics = get(a, "/metrics").await.text();
    assert!(
        metrics.contains("tamma_route_fallbacks_total{route=\"smart\"} 2"),
        "{metrics}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_circuits_fall_through_and_all_open_is_503_with_retry_after() {
    // One failure opens a breaker, for 60 s.
    let r = registry(1);
    r.register("a", test_provider(&[("reply", "a")], limits(10_000, 2)))
        .await
        .unwrap();
    r.register("b", test_provider(&[("reply", "b")], limits(10_000, 2)))
        .await
        .unwrap();
    let config = ServerConfig {
        routes: routes(&[("pair", &["a/test-1", "b/test-1"])]),
        ..ServerConfig::default()
    };
    let s = serve(&r, config).await;
    let a = s.addr();
    let trap = |model: &str| with(chat(model, "x"), "metadata", json!({"trap": "1"}));

    assert_eq!(
        post(a, "/v1/chat/completions", &trap("a/test-1"))
            .await
            .status,
        502
    );
    // a's circuit is open: the route is served by b at once.
    let started = Instant::now();
    let resp = post(a, "/v1/chat/completions", &chat("pair", "hi")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-tamma-provider"), Some("b"));
    assert!(started.elapsed() < Duration::from_secs(2));
    // Asking a directly: 503 with Retry-After.
    let direct = post(a, "/v1/chat/completions", &chat("a/test-1", "hi")).await;
    assert_error(&direct, 503, "circuit_open");
    let ra: u64 = direct.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&ra), "{ra}");

    // Both open: 503 with Retry-After, streaming or not.
    assert_eq!(
        post(a, "/v1/chat/completions", &trap("b/test-1"))
            .await
            .status,
        502
    );
    for stream in [false, true] {
        let resp = post(
            a,
            "/v1/chat/completions",
            &with(chat("pair", "hi"), "stream", json!(stream)),
        )
        .await;
        assert_error(&resp, 503, "circuit_open");
        assert!(resp.header("retry-after").is_some());
        assert!(resp.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("every provider"));
    }
    let m = get(a, "/metrics").await.text();
    assert!(
        m.contains("tamma_provider_circuit_state{provider=\"a\",state=\"open\"} 1"),
        "{m}"
    );
    s.shutdown().await;
}

// --- probes and metrics -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_follow_discovery_and_providers() {
    let r = registry(5);
    let s = serve_with(&r, ServerConfig::default(), ServeOptions::default()).await;
    let a = s.addr();
    assert_eq!(get(a, "/healthz").await.status, 200);
    let not_yet = get(a, "/readyz").await;
    assert_eq!(not_yet.status, 503);
    assert_eq!(
        not_yet.json()["reason"],
        "provider discovery has not finished"
    );
    s.readiness().mark_discovery_finished();
    let none = get(a, "/readyz").await;
    assert_eq!(none.status, 503);
    assert_eq!(none.json()["reason"], "no provider is ready");
    r.register("echo", echo()).await.unwrap();
    let ok = get(a, "/readyz").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["providers_ready"], json!(["echo"]));
    s.shutdown().await;
}

/// A client that asks for a large answer and never reads it: past
/// `write_stall_timeout_ms` of blocked writes the connection is closed and the
/// request's concurrency slot freed (it used to stay held for as long as the
/// client kept its socket open, so `max_concurrent_requests` such clients took
/// the server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_slot() {
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    let big = tamma_registry::Registration::new(tamma_registry::ComponentSource::File(
        tamma_e2e::guest("adversarial_big_response"),
    ))
    .with_settings(ProviderSettings::new(
        vec![("size_bytes".into(), (24u64 << 20).to_string())],
        Limits {
            memory_mib: 256,
            max_response_bytes: 64 << 20,
            ..Limits::default()
        },
    ));
    r.register("big", big).await.unwrap();
    let mut config = ServerConfig::default();
    config.limits.max_concurrent_requests = 1;
    config.limits.write_stall_timeout_ms = 300;
    let s = serve(&r, config).await;
    let a = s.addr();

    // The attacker: a 4 KiB receive buffer, one request, then it never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut attacker = socket.connect(a).await.unwrap();
    // Streamed: a whole answer is handed to hyper as one frame, which ends the
    // body (and frees the slot) before a byte is written; a stream's body only
    // ends once hyper has written every frame, so only the write deadline
    // frees its slot.
    let body = with(
        chat("big/big-1", "give me everything"),
        "stream",
        json!(true),
    )
    .to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {a}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    attacker.write_all(request.as_bytes()).await.unwrap();
    // Its stream has started (so it holds the only slot) before anyone else
    // asks: read the status line, then never read again.
    let mut status = [0u8; 12];
    attacker.read_exact(&mut status).await.unwrap();
    assert_eq!(
        &status,
        b"HTTP/1.1 200",
        "{}",
        String::from_utf8_lossy(&status)
    );

    // A normal client is served once the stalled connection has been cut off,
    // while the attacker still holds its socket open.
    let mut served = None;
    for _ in 0..200 {
        let resp = post(a, "/v1/chat/completions", &chat("echo/echo-1", "hello")).await;
        if resp.status == 200 {
            served = Some(resp);
            break;
        }
        assert_eq!(resp.status, 429, "{}", resp.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served.is_some(), "the stalled reader kept the only slot");
    // The stall deadline is what freed it (counted once the connection task
    // has ended, so wait for it rather than race it).
    let mut m = String::new();
    for _ in 0..200 {
        m = get(a, "/metrics").await.text();
        if m.contains("tamma_http_rejected_total{reason=\"write_stall\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        m.contains("tamma_http_rejected_total{reason=\"write_stall\"} 1"),
        "{m}"
    );
    drop(attacker);
    s.shutdown().await;
}

/// During the drain (`shutdown_drain_ms`) the listener stays open and `/readyz`
/// answers 503, so a readiness probe sees the drain instead of a refused
/// connection; requests are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_during_the_drain() {
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    let config = ServerConfig {
        shutdown_drain_ms: 1_500,
        ..ServerConfig::default()
    };
    let s = serve(&r, config).await;
    let a = s.addr();
    assert_eq!(get(a, "/readyz").await.status, 200);
    let stopping = tokio::spawn(s.shutdown());
    let mut saw_503 = false;
    for _ in 0..100 {
        let probe = get(a, "/readyz").await;
        if probe.status == 503 {
            assert_eq!(probe.json()["reason"], "shutting down");
            saw_503 = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(saw_503, "/readyz never answered 503 during the drain");
    let served = post(
        a,
        "/v1/chat/completions",
        &chat("echo/echo-1", "still here"),
    )
    .await;
    assert_eq!(served.status, 200, "{}", served.text());
    let report = stopping.await.unwrap();
    assert!(report.drained);
}

/// Between "listening" and the first discovery round's end, a chat request for a
/// model that is not registered yet answers 503 with `Retry-After` (a client
/// cannot tell a 404 from a typo); after it, the same request is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_answers_503_until_discovery_has_finished() {
    let r = registry(5);
    let s = serve_with(&r, ServerConfig::default(), ServeOptions::default()).await;
    let body = json!({ "model": "mock/m1", "messages": [{ "role": "user", "content": "hi" }] });
    let early = post(s.addr(), "/v1/chat/completions", &body).await;
    assert_eq!(early.status, 503, "{}", early.text());
    assert_eq!(early.header("retry-after"), Some("1"));
    assert_eq!(early.json()["error"]["code"], "providers_loading");
    s.readiness().mark_discovery_finished();
    let late = post(s.addr(), "/v1/chat/completions", &body).await;
    assert_eq!(late.status, 404, "{}", late.text());
    assert_eq!(late.json()["error"]["code"], "model_not_found");
    s.shutdown().await;
}

/// A strict-enough reader of the Prometheus text format: every line is a
/// comment (`# HELP`/`# TYPE`) or `name{labels} value`; every sample's family was
/// declared by a `# TYPE` line; histogram buckets are cumulative.
const LATENCY_LES: [&str; 3] = ["0.0005", "10", "+Inf"];

fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().expect("comment names a metric");
            assert!(matches!(kind, "HELP" | "TYPE"), "{line}");
            if kind == "TYPE" {
                let t = parts.next().unwrap();
                assert!(matches!(t, "counter" | "gauge" | "histogram"), "{line}");
                assert!(
                    types.insert(name.to_string(), t.to_string()).is_none(),
                    "TYPE twice: {line}"
                );
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, _value) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label: {line}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        assert!(
            samples.insert(series.to_string(), v).is_none(),
            "duplicate series: {line}"
        );
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_requests_errors_fuel_pool_circuit_and_health() {
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    r.register("test", test_provider(&[], limits(10_000, 2)))
        .await
        .unwrap();
    let s = serve(&r, ServerConfig::default()).await;
    let a = s.addr();
    for _ in 0..3 {
        assert_eq!(
            post(a, "/v1/chat/completions", &chat("echo/echo-1", "hi"))
                .await
                .status,
            200
        );
    }
    let fail = with(
        chat("test/test-1", "x"),
        "metadata",
        json!({"fail": "rate-limit-exceeded"}),
    );
    assert_eq!(post(a, "/v1/chat/completions", &fail).await.status, 429);
    r.check_health("echo").await.unwrap();
    let text = get(a, "/metrics").await;
    assert_eq!(text.status, 200);
    assert!(text
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = parse_prometheus(&text.text());
    let at = |k: &str| *m.get(k).unwrap_or_else(|| panic!("missing {k}"));
    assert_eq!(at("tamma_http_requests_total{endpoint=\"chat_completions\",provider=\"echo\",status=\"200\"}"), 3.0);
    assert_eq!(at("tamma_http_requests_total{endpoint=\"chat_completions\",provider=\"test\",status=\"429\"}"), 1.0);
    assert_eq!(at("tamma_http_request_duration_seconds_count{endpoint=\"chat_completions\",provider=\"echo\",status=\"200\"}"), 3.0);
    assert_eq!(at("tamma_http_request_duration_seconds_bucket{endpoint=\"chat_completions\",provider=\"echo\",status=\"200\",le=\"+Inf\"}"), 3.0);
    assert_eq!(
        at("tamma_http_errors_total{provider=\"test\",code=\"rate_limit_exceeded\"}"),
        1.0
    );
    assert_eq!(at("tamma_provider_calls_total{provider=\"echo\"}"), 3.0);
    assert_eq!(
        at("tamma_provider_errors_total{provider=\"test\",code=\"PROVIDER_ERROR\"}"),
        1.0
    );
    assert_eq!(
        at("tamma_provider_call_duration_seconds_count{provider=\"echo\"}"),
        3.0
    );
    assert!(at("tamma_provider_fuel_used_total{provider=\"echo\"}") > 0.0);
    assert_eq!(at("tamma_provider_pool_in_use{provider=\"echo\"}"), 0.0);
    assert_eq!(at("tamma_provider_pool_waiting{provider=\"echo\"}"), 0.0);
    assert_eq!(
        at("tamma_provider_circuit_state{provider=\"echo\",state=\"closed\"}"),
        1.0
    );
    assert_eq!(
        at("tamma_provider_health{provider=\"echo\",status=\"healthy\"}"),
        1.0
    );
    assert_eq!(
        at("tamma_provider_state{provider=\"echo\",state=\"ready\"}"),
        1.0
    );
    assert_eq!(
        at("tamma_provider_health_checks_total{provider=\"echo\"}"),
        1.0
    );
    assert_eq!(
        at("tamma_egress_refusals_total{provider=\"echo\",reason=\"not_allowed\"}"),
        0.0
    );
    assert!(at("process_resident_memory_bytes") > 0.0);
    // Buckets are cumulative.
    let buckets: Vec<f64> = LATENCY_LES
        .iter()
        .map(|le| {
            at(&format!(
                "tamma_provider_call_duration_seconds_bucket{{provider=\"echo\",le=\"{le}\"}}"
            ))
        })
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(*buckets.last().unwrap(), 3.0);
    s.shutdown().await;
}

// --- limits ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_413_429_and_408() {
    let r = registry(100);
    r.register("test", test_provider(&[], limits(10_000, 4)))
        .await
        .unwrap();
    let config = ServerConfig {
        limits: ServerLimits {
            max_body_bytes: 1024,
            max_concurrent_requests: 1,
            header_read_timeout_ms: 300,
            body_read_timeout_ms: 300,
            ..ServerLimits::default()
        },
        ..ServerConfig::default()
    };
    let s = serve(&r, config).await;
    let a = s.addr();

    // 413: declared, and streamed without a length.
    let big = chat("test/test-1", &"x".repeat(2000));
    assert_error(
        &post(a, "/v1/chat/completions", &big).await,
        413,
        "request_too_large",
    );

    // 429: one request at a time; a second one while the first runs is refused.
    let slow = with(
        chat("test/test-1", "slow"),
        "metadata",
        json!({"hang_ms": "800"}),
    );
    let first = tokio::spawn(async move { post(a, "/v1/chat/completions", &slow).await });
    wait_in_flight(&s, 1).await;
    let refused = post(a, "/v1/chat/completions", &chat("test/test-1", "x")).await;
    assert_error(&refused, 429, "too_many_requests");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Probes are not counted.
    assert_eq!(get(a, "/healthz").await.status, 200);
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(
        post(a, "/v1/chat/completions", &chat("test/test-1", "x"))
            .await
            .status,
        200
    );

    // 408: headers not finished in time.
    let mut tcp = tokio::net::TcpStream::connect(a).await.unwrap();
    tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");

    // 408: body not sent in time.
    let mut tcp = tokio::net::TcpStream::connect(a).await.unwrap();
    tcp.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\n{\"mo",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    // An idle keep-alive connection is closed without a stray 408.
    let mut tcp = tokio::net::TcpStream::connect(a).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));

    let m = get(a, "/metrics").await.text();
    for reason in [
        "body_too_large",
        "concurrency",
        "header_timeout",
        "body_timeout",
    ] {
        assert!(
            m.contains(&format!(
                "tamma_http_rejected_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {m}"
        );
    }
    s.shutdown().await;
}

// --- shutdown -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_requests_and_streams_finish_then_stops_the_registry() {
    let r = registry(100);
    r.register("test", test_provider(&[], limits(10_000, 4)))
        .await
        .unwrap();
    r.register("echo", echo()).await.unwrap();
    let s = serve(&r, ServerConfig::default()).await;
    let a = s.addr();
    let slow = with(
        chat("test/test-1", "late"),
        "metadata",
        json!({"hang_ms": "700"}),
    );
    let running = tokio::spawn(async move { post(a, "/v1/chat/completions", &slow).await });
    let slow_stream = with(
        with(
            chat("test/test-1", "streamed late"),
            "metadata",
            json!({"hang_ms": "700"}),
        ),
        "stream",
        json!(true),
    );
    let streaming = tokio::spawn(async move {
        let mut st = client::post_streaming(a, "/v1/chat/completions", &slow_stream)
            .await
            .unwrap();
        st.collect_data().await
    });
    // A keep-alive connection opened before the shutdown.
    let mut idle = Conn::connect(a).await.unwrap();
    assert_eq!(
        idle.send("GET", "/healthz", &[], None)
            .await
            .unwrap()
            .status,
        200
    );
    wait_in_flight(&s, 2).await;
    let report = s.shutdown().await;
    assert!(report.drained, "{report:?}");
    let done = running.await.unwrap();
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(done.json()["choices"][0]["message"]["content"], "ok:late");
    let (data, end) = streaming.await.unwrap();
    end.unwrap();
    let (chunks, done, error) = split_stream(&data);
    assert!(done && error.is_none(), "{data:?}");
    assert_eq!(stream_text(&chunks), "ok:streamed late");
    assert_eq!(report.registry.clean, ["echo", "test"]);
    assert!(r.is_shutting_down());
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(a).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_call_does_not_harm_the_provider() {
    let r = registry(100);
    // One instance, so the next call reuses the one the vanished client used.
    r.register("test", test_provider(&[], limits(10_000, 1)))
        .await
        .unwrap();
    let s = serve(&r, ServerConfig::default()).await;
    let a = s.addr();
    for stream in [false, true] {
        let body = with(
            with(
                chat("test/test-1", "abandoned"),
                "metadata",
                json!({"hang_ms": "300"}),
            ),
            "stream",
            json!(stream),
        );
        let gone = tokio::spawn(async move { post(a, "/v1/chat/completions", &body).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        gone.abort();
        let _ = gone.await;
        let next = post(a, "/v1/chat/completions", &chat("test/test-1", "next")).await;
        assert_eq!(next.status, 200, "stream={stream}: {}", next.text());
        assert_eq!(next.json()["choices"][0]["message"]["content"], "ok:next");
    }
    let snap = r.snapshot_of("test").unwrap();
    assert_eq!(snap.calls.failures, 0, "{:?}", snap.calls);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_server_refuses_foreign_host_names() {
    // DNS rebinding: a web page's name pointed at 127.0.0.1 arrives in `Host`.
    let r = registry(5);
    let s = serve(&r, ServerConfig::default()).await;
    let body = br#"{"model":"echo/echo-1","messages":[{"role":"user","content":"hi"}]}"#;
    for (host, refused) in [
        ("evil.example", true),
        ("evil.example:8080", true),
        ("127.0.0.1", false),
        ("localhost", false),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(body).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        // Loopback names reach the API (whatever it answers); others never do.
        assert_eq!(text.starts_with("HTTP/1.1 403"), refused, "{host}: {text}");
    }
}
