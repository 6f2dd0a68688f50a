//! The gateway in front of a real provider: the `openai` guest, in the sandbox,
//! through the egress path, against `tamma-mock-upstream` (a real HTTP server
//! speaking OpenAI's wire format). Tool calls, an upstream error before the
//! first byte (fallback) and mid-stream (an in-band error event), and — when the
//! `openai` Python package is installed — the official client against it.

mod server_support;

use serde_json::{json, Value};
use server_support::*;
use tamma_mock_upstream::{Fault, HttpError, MockToolCall, MockUpstream, Route};
use tamma_registry::Registry;
use tamma_server::ServerConfig;
use tamma_test_support::client;

const KEY: &str = UPSTREAM_KEY;

async fn setup(failures: u32) -> (MockUpstream, Registry) {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let r = registry(failures);
    r.register("openai", openai_on(&mock, "gpt-mock,gpt-mock-mini"))
        .await
        .unwrap();
    r.register("echo", echo()).await.unwrap();
    (mock, r)
}

fn weather_tool() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_streams_and_tool_calls_through_the_openai_provider() {
    let (mock, r) = setup(5).await;
    let s = serve(&r, ServerConfig::default()).await;
    let a = s.addr();

    let resp = post(
        a,
        "/v1/chat/completions",
        &chat("openai/gpt-mock", "through the sandbox"),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["choices"][0]["message"]["content"], "through the sandbox");
    assert_eq!(v["model"], "openai/gpt-mock");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let upstream = mock.last_request().unwrap();
    assert_eq!(
        upstream.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(upstream.json()["model"], "gpt-mock");

    let body = with(
        with(
            chat("openai/gpt-mock", "streamed from upstream"),
            "stream",
            json!(true),
        ),
        "stream_options",
        json!({"include_usage": true}),
    );
    let mut st = client::post_streaming(a, "/v1/chat/completions", &body)
        .await
        .unwrap();
    let (data, end) = st.collect_data().await;
    end.unwrap();
    let (chunks, done, error) = split_stream(&data);
    assert!(done && error.is_none(), "{data:?}");
    assert_eq!(stream_text(&chunks), "streamed from upstream");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);

    // Tool calls, whole and streamed (arguments arrive in fragments).
    let calls = vec![MockToolCall::new(
        "call_a",
        "get_weather",
        r#"{"city":"Oslo"}"#,
    )];
    mock.push_fault_on(Route::Chat, Fault::ToolCalls(calls.clone()));
    let ask = with(
        chat("openai/gpt-mock", "weather in Oslo?"),
        "tools",
        weather_tool(),
    );
    let v = post(a, "/v1/chat/completions", &ask).await.json();
    let m = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    assert_eq!(m["tool_calls"][0]["id"], "call_a");
    assert_eq!(m["tool_calls"][0]["type"], "function");
    assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        m["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Oslo"}"#
    );
    let sent = mock.last_request().unwrap().json();
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");

    mock.push_fault_on(Route::Chat, Fault::ToolCalls(calls));
    let mut st = client::post_streaming(
        a,
        "/v1/chat/completions",
        &with(ask.clone(), "stream", json!(true)),
    )
    .await
    .unwrap();
    let (data, _) = st.collect_data().await;
    let (chunks, done, _) = split_stream(&data);
    assert!(done);
    let mut args = String::new();
    let mut name = None;
    for c in &chunks {
        if let Some(tc) = c["choices"][0]["delta"]["tool_calls"].as_array() {
            assert_eq!(tc[0]["index"], 0);
            if let Some(n) = tc[0]["function"]["name"].as_str() {
                name = Some(n.to_string());
                assert_eq!(tc[0]["id"], "call_a");
            }
            args.push_str(tc[0]["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    assert_eq!(args, r#"{"city":"Oslo"}"#);
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));

    // Tool results go back upstream.
    let follow = json!({
        "model": "openai/gpt-mock",
        "messages": [
            {"role": "user", "content": "weather in Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"}
        ],
        "tools": weather_tool(),
    });
    let v = post(a, "/v1/chat/completions", &follow).await.json();
    assert_eq!(v["choices"][0]["message"]["content"], "sunny");
    let sent = mock.last_request().unwrap().json();
    assert_eq!(sent["messages"][2]["tool_call_id"], "call_a");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failure_before_the_first_byte_falls_back_and_mid_stream_is_an_error_event() {
    let (mock, r) = setup(100).await;
    let s = serve(&r, resilient_route()).await;
    let a = s.addr();

    // 503 upstream: retryable, nothing sent yet: echo answers.
    for stream in [false, true] {
        mock.push_fault_on(Route::Chat, Fault::Error(HttpError::new(503)));
        let body = with(chat("resilient", "fallback works"), "stream", json!(stream));
        let mut st = client::post_streaming(a, "/v1/chat/completions", &body)
            .await
            .unwrap();
        assert_eq!(st.status, 200);
        assert_eq!(st.headers["x-tamma-provider"], "echo", "stream={stream}");
        let (data, _) = st.collect_data().await;
        let text = if stream {
            stream_text(&split_stream(&data).0)
        } else {
            String::new()
        };
        if stream {
            assert_eq!(text, "fallback works");
        }
    }
    assert_eq!(mock.pending_faults(), 0);

    // 429 upstream, asked directly: the status and the retry hint come through.
    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(429).retry_after("7")),
    );
    let rl = post(a, "/v1/chat/completions", &chat("openai/gpt-mock", "x")).await;
    assert_error(&rl, 429, "rate_limit_exceeded");
    assert_eq!(rl.header("retry-after"), Some("7"));

    // Mid-stream: an upstream error event after some content is passed on as an
    // in-band error, never as a clean end — and the route does not switch
    // providers once the answer has started.
    for fault in [
        Fault::ErrorEvent {
            after_events: 3,
            kind: "server_error".into(),
            message: "upstream broke".into(),
        },
        Fault::AbortStream { after_events: 3 },
    ] {
        // Events spaced out, so the first chunk is surely through before the failure.
        mock.push_faults(
            Route::Chat,
            vec![
                Fault::DelayChunks(std::time::Duration::from_millis(30)),
                fault,
            ],
        );
        let body = with(
            chat("resilient", "one two three four five six seven"),
            "stream",
            json!(true),
        );
        let mut st = client::post_streaming(a, "/v1/chat/completions", &body)
            .await
            .unwrap();
        assert_eq!(st.status, 200);
        let who = st.headers["x-tamma-provider"].to_str().unwrap().to_string();
        if who != "openai" {
            panic!("served by {who}: {:?}", st.collect_data().await);
        }
        let (data, _) = st.collect_data().await;
        let (chunks, done, error) = split_stream(&data);
        assert!(
            !stream_text(&chunks).is_empty(),
            "content came first: {data:?}"
        );
        assert!(!done, "no [DONE]: {data:?}");
        let e = error.unwrap_or_else(|| panic!("an error event: {data:?}"));
        assert!(
            e["error"]["message"].is_string() && e["error"]["type"].is_string(),
            "{e}"
        );
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_client_works_unchanged() {
    let Some(python) = python_with("openai") else {
        return;
    };
    let (_mock, r) = setup(5).await;
    let s = serve(&r, ServerConfig::default()).await;
    let script = r#"
import json, sys, openai
c = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0)
out = {}
out["models"] = sorted(m.id for m in c.models.list())
r = c.chat.completions.create(model="echo/echo-1", messages=[{"role": "user", "content": "hi from python"}], max_tokens=10)
out["content"] = r.choices[0].message.content
out["usage"] = r.usage.total_tokens
parts = []
usage = None
for ch in c.chat.completions.create(model="openai/gpt-mock", messages=[{"role": "user", "content": "streamed to python"}], stream=True, stream_options={"include_usage": True}):
    if ch.choices and ch.choices[0].delta.content:
        parts.append(ch.choices[0].delta.content)
    if ch.usage:
        usage = ch.usage.completion_tokens
out["stream"] = "".join(parts)
out["stream_usage"] = usage
try:
    c.chat.completions.create(model="nope/x", messages=[{"role": "user", "content": "x"}])
except openai.NotFoundError as e:
    out["not_found"] = e.status_code
    out["code"] = e.code
print(json.dumps(out))
"#;
    let v = run_python(python, script, vec![s.url()]).await;
    assert!(
        v["models"]
            .as_array()
            .unwrap()
            .contains(&json!("openai/gpt-mock")),
        "{v}"
    );
    assert_eq!(v["content"], "hi from python");
    assert_eq!(v["usage"], 6);
    assert_eq!(v["stream"], "streamed to python");
    assert_eq!(v["stream_usage"], 3);
    assert_eq!(v["not_found"], 404);
    assert_eq!(v["code"], "model_not_found");
    s.shutdown().await;
}
