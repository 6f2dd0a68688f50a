//! Routes that keep answering: strategies (weighted, least-busy, latency),
//! retries within a budget against the mock upstream's real 429/503 answers,
//! context-window fallback, and what every attempt leaves in `/metrics`.

mod server_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::*;
use tamma_e2e::guest;
use tamma_mock_upstream::{Fault, HttpError, MockUpstream, Route};
use tamma_registry::{ComponentSource, Limits, ProviderSettings, Registration, Registry};
use tamma_sandbox::egress::EgressPolicy;
use tamma_server::config::{RouteRetries, RouteStrategy};
use tamma_server::ServerConfig;
use tamma_test_support::client;

const KEY: &str = "sk-routing-test-77c1";

/// The `openai` guest against `mock`, advertising `context_window` for its model.
fn openai(mock: &MockUpstream, context_window: u32) -> Registration {
    Registration::new(ComponentSource::File(guest("openai"))).with_settings(ProviderSettings {
        config: vec![
            ("base_url".into(), mock.base_url()),
            ("models".into(), "gpt-mock".into()),
            ("context_window".into(), context_window.to_string()),
        ],
        limits: Limits {
            max_concurrency: 8,
            ..Limits::default()
        },
        egress: EgressPolicy::new(
            vec![mock.url()],
            BTreeMap::from([("api_key".to_string(), KEY.to_string())]),
        ),
    })
}

async fn upstream() -> MockUpstream {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    mock
}

fn route(targets: &[&str], strategy: RouteStrategy) -> RouteConfig {
    RouteConfig {
        strategy,
        ..RouteConfig::ordered(targets.iter().copied())
    }
}

fn retries(attempts: u32, budget_ms: u64) -> Option<RouteRetries> {
    Some(RouteRetries {
        attempts,
        base_ms: 1,
        max_ms: 5,
        budget_ms,
    })
}

fn config(routes: Vec<(&str, RouteConfig)>) -> ServerConfig {
    ServerConfig {
        routes: routes
            .into_iter()
            .map(|(n, r)| (n.to_string(), r))
            .collect(),
        ..ServerConfig::default()
    }
}

/// The value of one sample of `/metrics` (0 when absent).
async fn metric(addr: std::net::SocketAddr, sample: &str) -> f64 {
    let text = get(addr, "/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn provider_of(r: &client::Response) -> String {
    r.header("x-tamma-provider").unwrap_or("").to_string()
}

/// Send `n` requests for `model`, `concurrency` at a time; the providers that
/// answered them (every answer must be a 200).
async fn load(
    addr: std::net::SocketAddr,
    model: &str,
    n: usize,
    concurrency: usize,
) -> BTreeMap<String, usize> {
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(n));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (left, model) = (left.clone(), model.to_string());
        set.spawn(async move {
            let mut seen = Vec::new();
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |l| l.checked_sub(1),
                )
                .is_ok()
            {
                let r = post(addr, "/v1/chat/completions", &chat(&model, "spread me")).await;
                assert_eq!(r.status, 200, "{}", r.text());
                seen.push(provider_of(&r));
            }
            seen
        });
    }
    let mut counts = BTreeMap::new();
    while let Some(seen) = set.join_next().await {
        for p in seen.unwrap() {
            *counts.entry(p).or_insert(0) += 1;
        }
    }
    counts
}

// --- strategies -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_spreads_by_weight_and_never_starts_on_an_open_circuit() {
    let r = registry(1);
    for name in ["e1", "e2", "e3"] {
        r.register(name, echo()).await.unwrap();
    }
    r.register("bad", test_provider(&[], limits(10_000, 4)))
        .await
        .unwrap();
    let mut spread = route(
        &["e1/echo-1", "e2/echo-1", "e3/echo-1"],
        RouteStrategy::Weighted,
    );
    spread.weights = vec![6, 1, 1];
    let mut avoid = route(&["bad/test-1", "e1/echo-1"], RouteStrategy::Weighted);
    avoid.weights = vec![1000, 1];
    let s = serve(&r, config(vec![("spread", spread), ("avoid", avoid)])).await;
    let a = s.addr();

    let counts = load(a, "spread", 160, 4).await;
    let e1 = counts.get("e1").copied().unwrap_or(0);
    assert!(
        e1 > counts.get("e2").copied().unwrap_or(0) * 2
            && e1 > counts.get("e3").copied().unwrap_or(0) * 2,
        "weights 6:1:1 gave {counts:?}"
    );

    // One retryable failure opens `bad`'s circuit (threshold 1).
    let mut fail = chat("bad/test-1", "x");
    fail["metadata"] = json!({"fail": "service-unavailable"});
    assert_ne!(post(a, "/v1/chat/completions", &fail).await.status, 200);
    let counts = load(a, "avoid", 40, 4).await;
    assert_eq!(counts, BTreeMap::from([("e1".to_string(), 40)]));
    let tried = metric(
        a,
        "tamma_route_attempts_total{route=\"avoid\",target=\"bad/test-1\",outcome=\"skipped\"}",
    )
    .await;
    assert_eq!(tried, 0.0, "an open circuit is never tried first");
    assert_eq!(
        metric(
            a,
            "tamma_route_attempts_total{route=\"avoid\",target=\"e1/echo-1\",outcome=\"success\"}"
        )
        .await,
        40.0
    );
    s.shutdown().await;
}

async fn slow_and_fast() -> (MockUpstream, MockUpstream, Registry) {
    let (slow, fast) = (upstream().await, upstream().await);
    slow.set_latency(Some(Duration::from_millis(800)));
    let r = registry(100);
    r.register("slow", openai(&slow, 8192)).await.unwrap();
    r.register("fast", openai(&fast, 8192)).await.unwrap();
    (slow, fast, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_busy_sends_most_requests_to_the_fast_upstream() {
    let (_slow, _fast, r) = slow_and_fast().await;
    let s = serve(
        &r,
        config(vec![(
            "lb",
            route(
                &["slow/gpt-mock", "fast/gpt-mock"],
                RouteStrategy::LeastBusy,
            ),
        )]),
    )
    .await;
    let counts = load(s.addr(), "lb", 64, 8).await;
    let fast = counts.get("fast").copied().unwrap_or(0);
    assert!(
        fast * 3 > 64 * 2,
        "the fast upstream serves most: {counts:?}"
    );
    assert!(counts.get("slow").copied().unwrap_or(0) > 0, "{counts:?}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_prefers_the_fast_upstream_and_still_explores() {
    let (_slow, _fast, r) = slow_and_fast().await;
    let s = serve(
        &r,
        config(vec![(
            "quick",
            route(&["slow/gpt-mock", "fast/gpt-mock"], RouteStrategy::Latency),
        )]),
    )
    .await;
    let counts = load(s.addr(), "quick", 40, 1).await;
    let fast = counts.get("fast").copied().unwrap_or(0);
    assert!(fast >= 30, "{counts:?}");
    assert!(
        counts.get("slow").copied().unwrap_or(0) >= 1,
        "measured once at least: {counts:?}"
    );
    s.shutdown().await;
}

// --- retries ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_503s_then_200_are_retried_away() {
    let mock = upstream().await;
    let r = registry(100);
    r.register("openai", openai(&mock, 8192)).await.unwrap();
    let mut steady = route(&["openai/gpt-mock"], RouteStrategy::Ordered);
    steady.retries = retries(2, 10_000);
    let s = serve(&r, config(vec![("steady", steady)])).await;
    let a = s.addr();
    for _ in 0..2 {
        mock.push_fault_on(Route::Chat, Fault::Error(HttpError::new(503)));
    }
    let resp = post(
        a,
        "/v1/chat/completions",
        &chat("steady", "third time lucky"),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json()["choices"][0]["message"]["content"],
        "third time lucky"
    );
    assert_eq!(provider_of(&resp), "openai");
    assert_eq!(mock.chat_requests(), 3);
    let labels = "route=\"steady\",target=\"openai/gpt-mock\"";
    assert_eq!(
        metric(a, &format!("tamma_route_retries_total{{{labels}}}")).await,
        2.0
    );
    assert_eq!(
        metric(
            a,
            &format!("tamma_route_attempts_total{{{labels},outcome=\"retry\"}}")
        )
        .await,
        2.0
    );
    assert_eq!(
        metric(
            a,
            &format!("tamma_route_attempts_total{{{labels},outcome=\"success\"}}")
        )
        .await,
        1.0
    );
    // Three 503s are one more than the route retries: the client sees the 503.
    for _ in 0..3 {
        mock.push_fault_on(Route::Chat, Fault::Error(HttpError::new(503)));
    }
    let resp = post(a, "/v1/chat/completions", &chat("steady", "no luck")).await;
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(mock.chat_requests(), 6);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_waited_for_within_the_budget_and_skipped_beyond_it() {
    let mock = upstream().await;
    let r = registry(100);
    r.register("openai", openai(&mock, 8192)).await.unwrap();
    r.register("echo", echo()).await.unwrap();
    let mut patient = route(&["openai/gpt-mock", "echo/echo-1"], RouteStrategy::Ordered);
    patient.retries = retries(2, 10_000);
    let s = serve(&r, config(vec![("patient", patient)])).await;
    let a = s.addr();

    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(429).retry_after_ms("300")),
    );
    let t = Instant::now();
    let resp = post(a, "/v1/chat/completions", &chat("patient", "after a pause")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(provider_of(&resp), "openai", "the same target, retried");
    assert_eq!(mock.chat_requests(), 2);

    // 120 s does not fit in a 10 s budget: echo answers at once.
    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(429).retry_after("120")),
    );
    let t = Instant::now();
    let resp = post(a, "/v1/chat/completions", &chat("patient", "elsewhere")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(provider_of(&resp), "echo");
    assert!(t.elapsed() < Duration::from_secs(60), "never waited 120 s");
    assert_eq!(mock.chat_requests(), 3, "not retried");
    let labels = "route=\"patient\",target=\"openai/gpt-mock\"";
    assert_eq!(
        metric(a, &format!("tamma_route_retries_total{{{labels}}}")).await,
        1.0
    );
    assert_eq!(
        metric(
            a,
            &format!("tamma_route_attempts_total{{{labels},outcome=\"fallback\"}}")
        )
        .await,
        1.0
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_mid_stream_is_never_retried() {
    let mock = upstream().await;
    let r = registry(100);
    r.register("openai", openai(&mock, 8192)).await.unwrap();
    r.register("echo", echo()).await.unwrap();
    let mut eager = route(&["openai/gpt-mock", "echo/echo-1"], RouteStrategy::Ordered);
    eager.retries = retries(3, 10_000);
    let s = serve(&r, config(vec![("eager", eager)])).await;
    let a = s.addr();
    mock.push_fault_on(
        Route::Chat,
        Fault::ErrorEvent {
            after_events: 2,
            kind: "server_error".into(),
            message: "upstream fell over".into(),
        },
    );
    let body = with(
        chat("eager", "one two three four five"),
        "stream",
        json!(true),
    );
    let mut st = client::post_streaming(a, "/v1/chat/completions", &body)
        .await
        .unwrap();
    assert_eq!(st.status, 200);
    assert_eq!(st.headers["x-tamma-provider"], "openai");
    let (data, _) = st.collect_data().await;
    let (_, done, error) = split_stream(&data);
    assert!(!done && error.is_some(), "{data:?}");
    assert_eq!(mock.chat_requests(), 1, "no retry after the first byte");
    assert_eq!(
        metric(
            a,
            "tamma_route_retries_total{route=\"eager\",target=\"openai/gpt-mock\"}"
        )
        .await,
        0.0
    );
    // Before the first byte, the stream is retried like a whole answer.
    mock.push_fault_on(Route::Chat, Fault::Error(HttpError::new(503)));
    let mut st = client::post_streaming(a, "/v1/chat/completions", &body)
        .await
        .unwrap();
    assert_eq!(st.headers["x-tamma-provider"], "openai");
    let (data, _) = st.collect_data().await;
    let (chunks, done, error) = split_stream(&data);
    assert!(done && error.is_none(), "{data:?}");
    assert_eq!(stream_text(&chunks), "one two three four five");
    assert_eq!(mock.chat_requests(), 3);
    s.shutdown().await;
}

// --- context window -----------------------------------------------------------------

fn too_long() -> Fault {
    Fault::Error(
        HttpError::new(400)
            .message("This model's maximum context length is 1000 tokens")
            .code("context_length_exceeded"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_too_long_moves_to_a_target_with_a_larger_window() {
    let (small, same, large) = (upstream().await, upstream().await, upstream().await);
    let r = registry(100);
    r.register("small", openai(&small, 1_000)).await.unwrap();
    r.register("same", openai(&same, 1_000)).await.unwrap();
    r.register("large", openai(&large, 200_000)).await.unwrap();
    let targets = ["small/gpt-mock", "same/gpt-mock", "large/gpt-mock"];
    let mut roomy = route(&targets, RouteStrategy::Ordered);
    roomy.context_window_fallback = true;
    let strict = route(&targets, RouteStrategy::Ordered);
    let mut last = route(
        &["large/gpt-mock", "small/gpt-mock"],
        RouteStrategy::Ordered,
    );
    last.context_window_fallback = true;
    let s = serve(
        &r,
        config(vec![("roomy", roomy), ("strict", strict), ("last", last)]),
    )
    .await;
    let a = s.addr();

    small.push_fault_on(Route::Chat, too_long());
    let resp = post(a, "/v1/chat/completions", &chat("roomy", "a long prompt")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(provider_of(&resp), "large");
    assert_eq!(
        (
            small.chat_requests(),
            same.chat_requests(),
            large.chat_requests()
        ),
        (1, 0, 1),
        "a target with the same window is skipped"
    );

    // Without the setting, the client's mistake is answered at once.
    small.push_fault_on(Route::Chat, too_long());
    let resp = post(a, "/v1/chat/completions", &chat("strict", "a long prompt")).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(large.chat_requests(), 1);

    // No larger window left: the context error comes back.
    large.push_fault_on(Route::Chat, too_long());
    let resp = post(a, "/v1/chat/completions", &chat("last", "huge")).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(small.chat_requests(), 2, "the smaller window is not asked");
    let body: Value = resp.json();
    assert!(body["error"]["message"].is_string());
    s.shutdown().await;
}
