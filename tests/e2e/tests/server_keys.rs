//! Client API keys on the gateway, in process over real HTTP on 127.0.0.1 and
//! real components: 401/403, the models filter, rpm, tpm, concurrency, budgets,
//! charging of whole and streamed answers (a client gone mid-stream included),
//! hot reload under load, and no key in any answer or metric.

mod server_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use server_support::*;
use tamma_server::config::{Budget, BudgetPeriod, ClientKey};
use tamma_server::{ServeOptions, Server, ServerConfig};
use tamma_test_support::client::{self, Conn, Response};

const KEY_A: &str = "key-a-0123456789abcdef";
const KEY_B: &str = "key-b-0123456789abcdef";

fn config_with(keys: Vec<ClientKey>) -> ServerConfig {
    ServerConfig {
        keys,
        admin: admin_config(),
        ..ServerConfig::default()
    }
}

async fn call(addr: SocketAddr, headers: &[(&str, &str)], body: &Value) -> Response {
    client::request(
        addr,
        "POST",
        "/v1/chat/completions",
        headers,
        Some(body.to_string().into_bytes()),
    )
    .await
    .expect("request")
}

async fn as_key(addr: SocketAddr, key: &str, body: &Value) -> Response {
    let auth = format!("Bearer {key}");
    call(addr, &[("authorization", &auth)], body).await
}

async fn admin_keys(addr: SocketAddr) -> Value {
    let auth = format!("Bearer {READ_TOKEN}");
    let r = client::request(
        addr,
        "GET",
        "/admin/v1/keys",
        &[("authorization", &auth)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn key_entry<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {report}"))
}

/// Counted windows are calendar minutes: keep a test's requests inside one by
/// starting it early enough in a minute (not a timed assertion: a wait).
async fn start_of_a_minute_window() {
    let s = tamma_sandbox::time::now_unix_secs() % 60;
    if s > 45 {
        tokio::time::sleep(Duration::from_secs(61 - s)).await;
    }
}

async fn echo_server(
    config: ServerConfig,
) -> (tamma_registry::Registry, tamma_server::RunningServer) {
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    let s = serve(&r, config).await;
    (r, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_and_refused_in_openai_shape() {
    let (_r, s) = echo_server(config_with(vec![key("team-a", KEY_A)])).await;
    let body = chat("echo/echo-1", "hello");
    let none = call(s.addr(), &[], &body).await;
    assert_eq!(none.status, 401, "{}", none.text());
    assert_eq!(none.json()["error"]["code"], "invalid_api_key");
    let wrong = as_key(s.addr(), "key-a-0123456789abcdeX", &body).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"]["code"], "invalid_api_key");
    assert!(
        !wrong.text().contains("abcdeX"),
        "the presented key is not echoed"
    );
    let ok = as_key(s.addr(), KEY_A, &body).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.header("x-request-id").is_some());
    let anthropic_style = call(s.addr(), &[("x-api-key", KEY_A)], &body).await;
    assert_eq!(anthropic_style.status, 200, "{}", anthropic_style.text());
    // Probes and metrics stay open.
    assert_eq!(client::get(s.addr(), "/healthz").await.unwrap().status, 200);
    let metrics = client::get(s.addr(), "/metrics").await.unwrap();
    assert_eq!(metrics.status, 200);
    let m = metrics.text();
    assert!(
        m.contains(r#"tamma_key_refusals_total{key="",reason="invalid_api_key"} 2"#),
        "{m}"
    );
    assert!(m.contains(r#"tamma_key_requests_total{key="team-a",provider="echo",model="echo-1",status="200"} 2"#), "{m}");
    assert!(
        m.contains(
            r#"tamma_tokens_total{key="team-a",provider="echo",model="echo-1",kind="output"}"#
        ),
        "{m}"
    );
    // The key appears in no answer, metric or admin answer.
    let report = admin_keys(s.addr()).await.to_string();
    for text in [&m, &report, &none.text(), &wrong.text()] {
        assert!(!text.contains(KEY_A), "{text}");
        assert!(!text.contains(&hex_digest(KEY_A)), "{text}");
    }
    s.shutdown().await;
}

fn hex_digest(v: &str) -> String {
    use std::fmt::Write as _;
    let d = tamma_server::auth::key_ring::digest(v);
    d.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_uses_only_its_models_and_lists_only_them() {
    let mut a = key("team-a", KEY_A);
    a.models = Some(vec!["echo/echo-1".into(), "smart".into()]);
    let mut config = config_with(vec![a, key("team-b", KEY_B)]);
    config
        .routes
        .insert("smart".into(), RouteConfig::ordered(["echo/echo-2"]));
    config
        .routes
        .insert("other".into(), RouteConfig::ordered(["echo/echo-1"]));
    let (_r, s) = echo_server(config).await;
    assert_eq!(
        as_key(s.addr(), KEY_A, &chat("echo/echo-1", "x"))
            .await
            .status,
        200
    );
    assert_eq!(
        as_key(s.addr(), KEY_A, &chat("smart", "x")).await.status,
        200,
        "a route is its own grant"
    );
    let denied = as_key(s.addr(), KEY_A, &chat("echo/echo-2", "x")).await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(denied.json()["error"]["code"], "model_not_allowed");
    let denied_route = as_key(s.addr(), KEY_A, &chat("other", "x")).await;
    assert_eq!(denied_route.status, 403);
    assert_eq!(
        as_key(s.addr(), KEY_B, &chat("echo/echo-2", "x"))
            .await
            .status,
        200,
        "no list: every model"
    );
    let auth = format!("Bearer {KEY_A}");
    let list = client::request(
        s.addr(),
        "GET",
        "/v1/models",
        &[("authorization", &auth)],
        None,
    )
    .await
    .unwrap();
    let mut ids: Vec<String> = list.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["echo/echo-1", "smart"]);
    let one = client::request(
        s.addr(),
        "GET",
        "/v1/models/echo/echo-2",
        &[("authorization", &auth)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(one.status, 404, "a model it may not use is not shown");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_refuses_with_retry_after_once_the_minute_is_spent() {
    start_of_a_minute_window().await;
    let mut a = key("team-a", KEY_A);
    a.rpm = Some(3);
    let (_r, s) = echo_server(config_with(vec![a, key("team-b", KEY_B)])).await;
    for _ in 0..3 {
        assert_eq!(
            as_key(s.addr(), KEY_A, &chat("echo/echo-1", "x"))
                .await
                .status,
            200
        );
    }
    let r = as_key(s.addr(), KEY_A, &chat("echo/echo-1", "x")).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        as_key(s.addr(), KEY_B, &chat("echo/echo-1", "x"))
            .await
            .status,
        200,
        "other keys are not limited"
    );
    let report = admin_keys(s.addr()).await;
    assert_eq!(
        key_entry(&report, "team-a")["usage"]["requests_this_minute"],
        3
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_and_budgets_are_charged_from_whole_and_streamed_answers() {
    start_of_a_minute_window().await;
    let mut a = key("team-a", KEY_A);
    a.tpm = Some(20);
    let mut b = key("team-b", KEY_B);
    b.budget = Some(Budget {
        tokens: 20,
        period: BudgetPeriod::Day,
    });
    let (_r, s) = echo_server(config_with(vec![a, b])).await;
    let text = "one two three four five six seven eight";
    // Whole answers: charged their reported usage.
    let first = as_key(s.addr(), KEY_A, &chat("echo/echo-1", text)).await;
    assert_eq!(first.status, 200);
    let used = first.json()["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used > 0 && used < 20, "{used}");
    let report = admin_keys(s.addr()).await;
    assert_eq!(
        key_entry(&report, "team-a")["usage"]["tokens_this_minute"],
        used
    );
    let mut total = used;
    while total < 20 {
        let r = as_key(s.addr(), KEY_A, &chat("echo/echo-1", text)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        total += r.json()["usage"]["total_tokens"].as_u64().unwrap();
    }
    let r = as_key(s.addr(), KEY_A, &chat("echo/echo-1", text)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    // Streamed answers: charged when they end, before [DONE].
    let mut streamed = 0;
    loop {
        let auth = format!("Bearer {KEY_B}");
        let body = with(
            with(chat("echo/echo-1", text), "stream", json!(true)),
            "stream_options",
            json!({"include_usage": true}),
        );
        let mut st = Conn::connect(s.addr())
            .await
            .unwrap()
            .send_streaming(
                "POST",
                "/v1/chat/completions",
                &[("authorization", &auth)],
                Some(body.to_string().into_bytes()),
            )
            .await
            .unwrap();
        if st.status == 429 {
            break;
        }
        assert_eq!(st.status, 200);
        let (data, _) = st.collect_data().await;
        let usage = data
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find_map(|v| v["usage"]["total_tokens"].as_u64())
            .expect("a usage chunk");
        streamed += usage;
        assert!(streamed < 20 + usage, "refused once the budget was spent");
    }
    assert!(streamed >= 20, "{streamed}");
    let r = as_key(s.addr(), KEY_B, &chat("echo/echo-1", "x")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "insufficient_quota");
    let report = admin_keys(s.addr()).await;
    let b = key_entry(&report, "team-b");
    assert_eq!(b["usage"]["tokens_this_period"], streamed);
    assert_eq!(b["budget_remaining"], 0);
    assert_eq!(b["budget"]["period"], "day");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_is_charged_for_what_it_got() {
    start_of_a_minute_window().await;
    let mut a = key("team-a", KEY_A);
    a.tpm = Some(1_000_000);
    let (_r, s) = echo_server(config_with(vec![a])).await;
    let auth = format!("Bearer {KEY_A}");
    let words: Vec<String> = (0..400).map(|i| format!("w{i}")).collect();
    let body = with(chat("echo/echo-1", &words.join(" ")), "stream", json!(true));
    {
        let mut st = Conn::connect(s.addr())
            .await
            .unwrap()
            .send_streaming(
                "POST",
                "/v1/chat/completions",
                &[("authorization", &auth)],
                Some(body.to_string().into_bytes()),
            )
            .await
            .unwrap();
        assert_eq!(st.status, 200);
        let first = st.next_data().await.unwrap().unwrap();
        assert!(first.contains("chat.completion.chunk"), "{first}");
        // Dropped here: the client goes away mid-stream.
    }
    // The producer notices, ends and charges: wait for it (no timed assertion).
    let mut charged = 0;
    for _ in 0..200 {
        let report = admin_keys(s.addr()).await;
        charged = key_entry(&report, "team-a")["usage"]["tokens_this_minute"]
            .as_u64()
            .unwrap();
        if charged > 0 && key_entry(&report, "team-a")["in_flight"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(charged > 0, "a stream cut short is charged");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_counts_running_requests_per_key() {
    let r = registry(5);
    r.register("slow", test_provider(&[], limits(30_000, 4)))
        .await
        .unwrap();
    let mut a = key("team-a", KEY_A);
    a.max_concurrent = Some(1);
    let s = serve(&r, config_with(vec![a])).await;
    let addr = s.addr();
    let slow = tokio::spawn(async move {
        as_key(
            addr,
            KEY_A,
            &with(
                chat("slow/test-1", "x"),
                "metadata",
                json!({"hang_ms": "1500"}),
            ),
        )
        .await
    });
    let mut running = false;
    for _ in 0..200 {
        if key_entry(&admin_keys(addr).await, "team-a")["in_flight"] == 1 {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(running, "the slow request is running");
    let second = as_key(addr, KEY_A, &chat("slow/test-1", "y")).await;
    assert_eq!(second.status, 429, "{}", second.text());
    assert_eq!(second.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(
        as_key(addr, KEY_A, &chat("slow/test-1", "z")).await.status,
        200,
        "the slot is free again"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_added_changed_and_revoked_take_effect_while_load_runs() {
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    let server = Server::bind(
        r.clone(),
        config_with(vec![key("steady", KEY_A)]),
        Some("127.0.0.1:0".parse().unwrap()),
        ServeOptions {
            discovery_finished: true,
            ..ServeOptions::default()
        },
    )
    .await
    .unwrap();
    let live = server.live_config();
    let s = server.spawn();
    let addr = s.addr();
    // Load with the steady key while the file changes: every request answered 200.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        let served = served.clone();
        load.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await.unwrap();
            let auth = format!("Bearer {KEY_A}");
            let body = chat("echo/echo-1", "steady").to_string().into_bytes();
            while !stop.load(Ordering::Relaxed) {
                let r = conn
                    .send(
                        "POST",
                        "/v1/chat/completions",
                        &[("authorization", &auth)],
                        Some(body.clone()),
                    )
                    .await
                    .unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let b = |value: &str| key("team-b", value);
    let changed = "key-b-changed-0123456789";
    for round in 0..5 {
        // Added.
        live.apply(config_with(vec![key("steady", KEY_A), b(KEY_B)]));
        assert_eq!(
            as_key(addr, KEY_B, &chat("echo/echo-1", "x")).await.status,
            200,
            "round {round}: added"
        );
        // Changed: the old value is refused on its next request, the new one served.
        live.apply(config_with(vec![key("steady", KEY_A), b(changed)]));
        assert_eq!(
            as_key(addr, KEY_B, &chat("echo/echo-1", "x")).await.status,
            401,
            "round {round}: old value"
        );
        assert_eq!(
            as_key(addr, changed, &chat("echo/echo-1", "x"))
                .await
                .status,
            200,
            "round {round}: new value"
        );
        // Revoked.
        live.apply(config_with(vec![key("steady", KEY_A)]));
        assert_eq!(
            as_key(addr, changed, &chat("echo/echo-1", "x"))
                .await
                .status,
            401,
            "round {round}: revoked"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(served.load(Ordering::Relaxed) > 0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_server_without_keys_refuses_to_start() {
    let r = registry(5);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let e = Server::with_listener(
        r.clone(),
        ServerConfig::default(),
        listener,
        ServeOptions::default(),
    )
    .err()
    .expect("refused");
    assert!(e.message.contains("[[server.keys]]"), "{}", e.message);
    assert!(e.message.contains("required = false"), "{}", e.message);
    // Written explicitly: allowed.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let mut open = ServerConfig::default();
    open.auth.required = Some(false);
    assert!(Server::with_listener(r.clone(), open, listener, ServeOptions::default()).is_ok());
    // With a key: allowed.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    assert!(Server::with_listener(
        r,
        config_with(vec![key("a", KEY_A)]),
        listener,
        ServeOptions::default()
    )
    .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_client_sees_openai_errors() {
    let Some(python) = python_with("openai") else {
        return;
    };
    start_of_a_minute_window().await;
    let mut a = key("team-a", KEY_A);
    a.models = Some(vec!["echo/echo-1".into()]);
    let mut limited = key("limited", KEY_B);
    limited.rpm = Some(1);
    let mut broke = key("broke", "key-c-0123456789abcdef");
    broke.budget = Some(Budget {
        tokens: 1,
        period: BudgetPeriod::Month,
    });
    let (_r, s) = echo_server(config_with(vec![a, limited, broke])).await;
    let script = r#"
import json, sys, openai
url = sys.argv[1] + "/v1"
def client(key, **kw):
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, **kw)
msg = [{"role": "user", "content": "hi from python"}]
out = {}
c = client(sys.argv[2])
out["models"] = sorted(m.id for m in c.models.list())
out["content"] = c.chat.completions.create(model="echo/echo-1", messages=msg).choices[0].message.content
try:
    client("wrong-key-0123456789abcdef").chat.completions.create(model="echo/echo-1", messages=msg)
except openai.AuthenticationError as e:
    out["auth"] = [e.status_code, e.code]
try:
    c.chat.completions.create(model="echo/echo-2", messages=msg)
except openai.PermissionDeniedError as e:
    out["permission"] = [e.status_code, e.code]
x = client("not-a-key", default_headers={"x-api-key": sys.argv[2]})
out["x_api_key"] = x.chat.completions.create(model="echo/echo-1", messages=msg).choices[0].message.content
lim = client(sys.argv[3])
lim.chat.completions.create(model="echo/echo-1", messages=msg)
try:
    lim.chat.completions.create(model="echo/echo-1", messages=msg)
except openai.RateLimitError as e:
    out["rpm"] = [e.status_code, e.code]
broke = client(sys.argv[4])
broke.chat.completions.create(model="echo/echo-1", messages=msg)
try:
    broke.chat.completions.create(model="echo/echo-1", messages=msg)
except openai.RateLimitError as e:
    out["budget"] = [e.status_code, e.code]
print(json.dumps(out))
"#;
    let v = run_python(
        python,
        script,
        vec![
            s.url(),
            KEY_A.to_string(),
            KEY_B.to_string(),
            "key-c-0123456789abcdef".to_string(),
        ],
    )
    .await;
    assert_eq!(v["models"], json!(["echo/echo-1"]), "{v}");
    assert!(
        v["content"].as_str().unwrap().contains("hi from python"),
        "{v}"
    );
    assert_eq!(v["auth"], json!([401, "invalid_api_key"]), "{v}");
    assert_eq!(v["permission"], json!([403, "model_not_allowed"]), "{v}");
    assert!(v["x_api_key"].is_string(), "{v}");
    assert_eq!(v["rpm"], json!([429, "rate_limit_exceeded"]), "{v}");
    assert_eq!(v["budget"], json!([429, "insufficient_quota"]), "{v}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_charged_on_one_replica_count_on_another_through_redis() {
    use tamma_server::config::{LimitsStoreConfig, OnStoreError, StoreUrl};
    let redis = tamma_test_support::redis_server::RedisServer::start();
    start_of_a_minute_window().await;
    let mut a = key("team-a", KEY_A);
    a.tpm = Some(10);
    let mut b = key("team-b", KEY_B);
    b.budget = Some(Budget {
        tokens: 10,
        period: BudgetPeriod::Month,
    });
    let mut config = config_with(vec![a, b]);
    config.limits_store = Some(LimitsStoreConfig {
        url: StoreUrl::Inline(redis.url()),
        on_error: OnStoreError::Deny,
        timeout_ms: 2_000,
    });
    let r = registry(5);
    r.register("echo", echo()).await.unwrap();
    let one = serve(&r, config.clone()).await;
    let two = serve(&r, config).await;
    let text = "one two three four five six seven eight nine ten eleven";
    for k in [KEY_A, KEY_B] {
        let first = as_key(one.addr(), k, &chat("echo/echo-1", text)).await;
        assert_eq!(first.status, 200, "{}", first.text());
        assert!(first.json()["usage"]["total_tokens"].as_u64().unwrap() >= 10);
        let second = as_key(two.addr(), k, &chat("echo/echo-1", text)).await;
        assert_eq!(
            second.status,
            429,
            "the other replica sees the charge: {}",
            second.text()
        );
    }
    let report = admin_keys(two.addr()).await;
    assert_eq!(report["store"], "redis");
    let a = key_entry(&report, "team-a");
    assert_eq!(a["usage"]["requests_this_minute"], 1);
    assert!(a["usage"]["tokens_this_minute"].as_u64().unwrap() >= 10);
    assert_eq!(key_entry(&report, "team-b")["budget_remaining"], 0);
    one.shutdown().await;
    two.shutdown().await;
}
