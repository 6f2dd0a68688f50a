//! The Anthropic Messages API inbound (`POST /v1/messages`), in process over
//! real HTTP on 127.0.0.1: served by `echo` and by the `openai` guest against
//! `tamma-mock-upstream` (so the request and the answer are translated both
//! ways), the wire format of whole answers and streams (event order, in-band
//! errors), errors in Anthropic's shape (refusals, unknown models, client keys,
//! upstream errors), and — when the `anthropic` Python package is installed —
//! the official Anthropic client against it, unchanged.

mod server_support;

use std::net::SocketAddr;

use serde_json::{json, Value};
use server_support::*;
use tamma_mock_upstream::{Fault, HttpError, MockToolCall, MockUpstream, Route};
use tamma_registry::Registry;
use tamma_server::{RunningServer, ServerConfig};
use tamma_test_support::client::{self, Response, Streaming};

const KEY_A: &str = "key-a-0123456789abcdef";
const KEY_B: &str = "key-b-0123456789abcdef";

/// A server over the echo provider alone.
async fn echo_only(config: ServerConfig) -> (Registry, RunningServer) {
    let r = registry(100);
    r.register("echo", echo()).await.unwrap();
    let s = serve(&r, config).await;
    (r, s)
}

async fn setup() -> (MockUpstream, Registry) {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(UPSTREAM_KEY);
    let r = registry(100);
    r.register("openai", openai_on(&mock, "gpt-mock"))
        .await
        .unwrap();
    r.register("echo", echo()).await.unwrap();
    (mock, r)
}

fn message(model: &str, text: &str) -> Value {
    json!({ "model": model, "max_tokens": 64, "messages": [{ "role": "user", "content": text }] })
}

/// `POST /v1/messages` with the headers an Anthropic SDK sends.
async fn messages(addr: SocketAddr, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut h = vec![
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "tools-2024-04-04"),
    ];
    h.extend_from_slice(headers);
    client::request(
        addr,
        "POST",
        "/v1/messages",
        &h,
        Some(body.to_string().into_bytes()),
    )
    .await
    .expect("request")
}

/// Every SSE event of a stream as (event name, data JSON).
async fn events(st: &mut Streaming) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while let Some(ev) = st.next_event().await {
        let ev = ev.expect("the stream ends cleanly");
        let name = ev.lines().find_map(|l| l.strip_prefix("event: "));
        let data = ev.lines().find_map(|l| l.strip_prefix("data: "));
        let (Some(name), Some(data)) = (name, data) else {
            panic!("an event with a name and data: {ev:?}")
        };
        let v: Value = serde_json::from_str(data).expect("data is JSON");
        assert_eq!(v["type"], name, "the data's type is the event's name");
        out.push((name.to_string(), v));
    }
    out
}

async fn stream(addr: SocketAddr, body: &Value) -> (Streaming, Vec<(String, Value)>) {
    let mut st = client::post_streaming(
        addr,
        "/v1/messages",
        &with(body.clone(), "stream", json!(true)),
    )
    .await
    .unwrap();
    assert_eq!(st.status, 200);
    assert_eq!(st.headers["content-type"], "text/event-stream");
    let evs = events(&mut st).await;
    (st, evs)
}

fn names(evs: &[(String, Value)]) -> Vec<&str> {
    evs.iter().map(|(n, _)| n.as_str()).collect()
}

fn text_of(evs: &[(String, Value)]) -> String {
    evs.iter()
        .filter(|(_, v)| v["delta"]["type"] == "text_delta")
        .map(|(_, v)| v["delta"]["text"].as_str().unwrap())
        .collect()
}

/// An error in Anthropic's shape, with this status and `error.type`.
fn assert_anthropic_error(r: &Response, status: u16, ty: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], ty, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_whole_and_streamed_through_echo_and_openai() {
    let (_mock, r) = setup().await;
    let s = serve(&r, ServerConfig::default()).await;
    let a = s.addr();
    for model in ["echo/echo-1", "openai/gpt-mock"] {
        let mut body = message(model, "one two three");
        body["system"] = json!([{"type": "text", "text": "be brief"}]);
        let resp = messages(a, &[], &body).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let v = resp.json();
        assert!(v["id"].as_str().unwrap().starts_with("msg_"), "{v}");
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["model"], model);
        assert_eq!(
            v["content"],
            json!([{"type": "text", "text": "one two three"}]),
            "{v}"
        );
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["stop_sequence"], Value::Null);
        let u = &v["usage"];
        assert!(u["output_tokens"].as_u64().unwrap() > 0, "{v}");
        assert!(u["input_tokens"].is_u64(), "{v}");
        assert_eq!(u["cache_read_input_tokens"], 0);
        assert_eq!(u["cache_creation_input_tokens"], 0);

        let (st, evs) = stream(a, &body).await;
        assert_eq!(
            st.headers["x-tamma-provider"],
            model.split('/').next().unwrap()
        );
        let n = names(&evs);
        assert_eq!(
            &n[..3],
            ["message_start", "content_block_start", "ping"],
            "{n:?}"
        );
        assert_eq!(
            &n[n.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"],
            "{n:?}"
        );
        assert!(
            n[3..n.len() - 3]
                .iter()
                .all(|e| *e == "content_block_delta"),
            "{n:?}"
        );
        let start = &evs[0].1["message"];
        assert_eq!(start["model"], model);
        assert_eq!(start["content"], json!([]));
        assert_eq!(
            evs[1].1["content_block"],
            json!({"type": "text", "text": ""})
        );
        assert_eq!(text_of(&evs), "one two three");
        let delta = &evs[evs.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert!(
            delta["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{delta}"
        );
    }
    // The metrics count the endpoint by name.
    let m = get(a, "/metrics").await.text();
    assert!(m.contains("endpoint=\"messages\""), "{m}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_unknown_models_are_errors_in_anthropic_shape() {
    let (_r, s) = echo_only(ServerConfig::default()).await;
    let a = s.addr();
    let image = json!({
        "model": "echo/echo-1", "max_tokens": 8,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
        ]}]
    });
    let resp = messages(a, &[], &image).await;
    assert_anthropic_error(&resp, 400, "invalid_request_error");
    assert!(resp.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("image"));
    let mut no_max = message("echo/echo-1", "x");
    no_max.as_object_mut().unwrap().remove("max_tokens");
    assert_anthropic_error(
        &messages(a, &[], &no_max).await,
        400,
        "invalid_request_error",
    );
    assert_anthropic_error(
        &messages(a, &[], &json!("not an object")).await,
        400,
        "invalid_request_error",
    );
    // Refused before any event: the same status, also for a stream.
    assert_anthropic_error(
        &messages(a, &[], &with(image, "stream", json!(true))).await,
        400,
        "invalid_request_error",
    );
    let nf = messages(a, &[], &message("nope/x", "x")).await;
    assert_anthropic_error(&nf, 404, "not_found_error");
    // Not served yet, and said so in Anthropic's shape.
    let ct = client::post_json(a, "/v1/messages/count_tokens", &message("echo/echo-1", "x"))
        .await
        .unwrap();
    assert_anthropic_error(&ct, 404, "not_found_error");
    // The chat endpoint keeps OpenAI's shape.
    assert_error(
        &post(a, "/v1/chat/completions", &chat("nope/x", "x")).await,
        404,
        "model_not_found",
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keys_are_read_from_x_api_key_and_refuse_in_anthropic_shape() {
    let mut a_key = key("team-a", KEY_A);
    a_key.models = Some(vec!["echo/echo-1".into()]);
    let mut limited = key("limited", KEY_B);
    limited.rpm = Some(1);
    let (_r, s) = echo_only(ServerConfig {
        keys: vec![a_key, limited],
        ..ServerConfig::default()
    })
    .await;
    let a = s.addr();
    let body = message("echo/echo-1", "hi");
    assert_anthropic_error(&messages(a, &[], &body).await, 401, "authentication_error");
    assert_anthropic_error(
        &messages(a, &[("x-api-key", "wrong-key-0123456789abcdef")], &body).await,
        401,
        "authentication_error",
    );
    let ok = messages(a, &[("x-api-key", KEY_A)], &body).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_anthropic_error(
        &messages(a, &[("x-api-key", KEY_A)], &message("echo/echo-2", "hi")).await,
        403,
        "permission_error",
    );
    assert_eq!(
        messages(a, &[("x-api-key", KEY_B)], &body).await.status,
        200
    );
    let rl = messages(a, &[("x-api-key", KEY_B)], &body).await;
    assert_anthropic_error(&rl, 429, "rate_limit_error");
    assert!(rl.header("retry-after").is_some());
    s.shutdown().await;
}

/// The mock's answer: a call of `get_weather` for Oslo, with this id.
fn weather_call(id: &str) -> Fault {
    let args = json!({"city": "Oslo"}).to_string();
    Fault::ToolCalls(vec![MockToolCall::new(id, "get_weather", &args)])
}

fn weather_tools() -> Value {
    json!([{
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_use_round_trip_through_the_openai_provider() {
    let (mock, r) = setup().await;
    let s = serve(&r, ServerConfig::default()).await;
    let a = s.addr();
    let mut ask = message("openai/gpt-mock", "weather in Oslo?");
    ask["tools"] = weather_tools();
    ask["tool_choice"] = json!({"type": "auto"});
    ask["metadata"] = json!({"user_id": "u-42"});
    ask["stop_sequences"] = json!(["END"]);

    mock.push_fault_on(Route::Chat, weather_call("call_a"));
    let v = messages(a, &[], &ask).await.json();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    assert_eq!(
        v["content"],
        json!([{"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Oslo"}}]),
        "{v}"
    );
    let sent = mock.last_request().unwrap().json();
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );
    assert_eq!(sent["user"], "u-42");
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["max_tokens"], 64);

    // Streamed: the arguments arrive as input_json_delta fragments.
    mock.push_fault_on(Route::Chat, weather_call("call_a"));
    let (_, evs) = stream(a, &ask).await;
    let start = evs
        .iter()
        .find(|(n, v)| n == "content_block_start" && v["content_block"]["type"] == "tool_use")
        .unwrap_or_else(|| panic!("a tool_use block: {evs:?}"));
    assert_eq!(start.1["content_block"]["id"], "call_a");
    assert_eq!(start.1["content_block"]["name"], "get_weather");
    let index = start.1["index"].clone();
    let json_text: String = evs
        .iter()
        .filter(|(_, v)| v["delta"]["type"] == "input_json_delta")
        .map(|(_, v)| {
            assert_eq!(v["index"], index);
            v["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json_text).unwrap(),
        json!({"city": "Oslo"})
    );
    assert_eq!(evs[evs.len() - 2].1["delta"]["stop_reason"], "tool_use");

    // The tool's result goes back upstream as a tool message.
    let follow = json!({
        "model": "openai/gpt-mock", "max_tokens": 64, "tools": weather_tools(),
        "messages": [
            {"role": "user", "content": "weather in Oslo?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_a", "content": "sunny"}]}
        ]
    });
    let v = messages(a, &[], &follow).await.json();
    assert_eq!(v["content"][0]["text"], "sunny", "{v}");
    let sent = mock.last_request().unwrap().json();
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], "call_a");
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Oslo"}"#
    );
    assert_eq!(sent["messages"][2]["role"], "tool");
    assert_eq!(sent["messages"][2]["tool_call_id"], "call_a");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_map_fall_back_before_the_first_byte_and_are_in_band_after() {
    let (mock, r) = setup().await;
    let s = serve(&r, resilient_route()).await;
    let a = s.addr();

    // Before the first byte: the route falls back, whole and streamed.
    mock.push_fault_on(Route::Chat, Fault::Error(HttpError::new(503)));
    let v = messages(a, &[], &message("resilient", "fallback works")).await;
    assert_eq!(v.header("x-tamma-provider"), Some("echo"));
    assert_eq!(v.json()["content"][0]["text"], "fallback works");
    mock.push_fault_on(Route::Chat, Fault::Error(HttpError::new(503)));
    let (st, evs) = stream(a, &message("resilient", "fallback works")).await;
    assert_eq!(st.headers["x-tamma-provider"], "echo");
    assert_eq!(text_of(&evs), "fallback works");

    // Asked directly: the status and the retry hint come through, in Anthropic's shape.
    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(429).retry_after("7")),
    );
    let rl = messages(a, &[], &message("openai/gpt-mock", "x")).await;
    assert_anthropic_error(&rl, 429, "rate_limit_error");
    assert_eq!(rl.header("retry-after"), Some("7"));
    assert_eq!(rl.json()["error"]["provider"], "openai");

    // After the start: an in-band error event, and no message_stop.
    mock.push_faults(
        Route::Chat,
        vec![
            Fault::DelayChunks(std::time::Duration::from_millis(30)),
            Fault::ErrorEvent {
                after_events: 3,
                kind: "server_error".into(),
                message: "upstream broke".into(),
            },
        ],
    );
    let (st, evs) = stream(
        a,
        &message("resilient", "one two three four five six seven"),
    )
    .await;
    assert_eq!(st.headers["x-tamma-provider"], "openai");
    let n = names(&evs);
    assert_eq!(n[0], "message_start", "{n:?}");
    assert_eq!(*n.last().unwrap(), "error", "{n:?}");
    assert!(!n.contains(&"message_stop"), "{n:?}");
    let e = &evs.last().unwrap().1["error"];
    assert!(e["type"].is_string() && e["message"].is_string(), "{e}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_anthropic_python_client_works_unchanged() {
    let Some(python) = python_with("anthropic") else {
        return;
    };
    let (mock, r) = setup().await;
    // In the order the script calls the upstream: a 429, then a tool call.
    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(429).retry_after("1")),
    );
    mock.push_fault_on(Route::Chat, weather_call("call_py"));
    let s = serve(&r, ServerConfig::default()).await;
    let script = r#"
import json, sys, anthropic
c = anthropic.Anthropic(base_url=sys.argv[1], api_key="unused", max_retries=0)
out = {}
m = c.messages.create(model="echo/echo-1", max_tokens=32, system="be brief",
                      messages=[{"role": "user", "content": "hi from python"}])
out["content"] = m.content[0].text
out["stop_reason"] = m.stop_reason
out["usage"] = [m.usage.input_tokens, m.usage.output_tokens]
with c.messages.stream(model="echo/echo-1", max_tokens=32,
                       messages=[{"role": "user", "content": "streamed to python"}]) as st:
    out["text_stream"] = "".join(st.text_stream)
    final = st.get_final_message()
out["final"] = [final.content[0].text, final.stop_reason, final.usage.output_tokens]
tools = [{"name": "get_weather", "description": "weather",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
ask = [{"role": "user", "content": "weather in Oslo?"}]
try:
    c.messages.create(model="openai/gpt-mock", max_tokens=8, messages=ask)
except anthropic.RateLimitError as e:
    out["rate_limit"] = [e.status_code, e.body["error"]["type"]]
t = c.messages.create(model="openai/gpt-mock", max_tokens=32, tools=tools, messages=ask)
use = [b for b in t.content if b.type == "tool_use"][0]
out["tool_use"] = [t.stop_reason, use.id, use.name, use.input]
back = c.messages.create(model="openai/gpt-mock", max_tokens=32, tools=tools, messages=ask + [
    {"role": "assistant", "content": [b.model_dump() for b in t.content]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
])
out["tool_result"] = back.content[0].text
try:
    c.messages.create(model="nope/x", max_tokens=8, messages=ask)
except anthropic.NotFoundError as e:
    out["not_found"] = [e.status_code, e.body["error"]["type"]]
try:
    c.messages.create(model="echo/echo-1", max_tokens=8, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}])
except anthropic.BadRequestError as e:
    out["image"] = [e.status_code, isinstance(e, anthropic.APIStatusError)]
print(json.dumps(out))
"#;
    let v = run_python(python, script, vec![s.url()]).await;
    assert_eq!(v["content"], "hi from python", "{v}");
    assert_eq!(v["stop_reason"], "end_turn", "{v}");
    assert!(v["usage"][1].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["text_stream"], "streamed to python", "{v}");
    assert_eq!(v["final"][0], "streamed to python", "{v}");
    assert_eq!(v["final"][1], "end_turn", "{v}");
    assert!(v["final"][2].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        v["tool_use"],
        json!(["tool_use", "call_py", "get_weather", {"city": "Oslo"}]),
        "{v}"
    );
    assert_eq!(v["tool_result"], "sunny", "{v}");
    assert_eq!(v["not_found"], json!([404, "not_found_error"]), "{v}");
    assert_eq!(v["rate_limit"], json!([429, "rate_limit_error"]), "{v}");
    assert_eq!(v["image"], json!([400, true]), "{v}");
    s.shutdown().await;
}
