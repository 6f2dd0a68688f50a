//! The mock's own tests, through a plain hyper HTTP/1 client.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::*;

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Result<Vec<u8>, String>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(self.body.as_ref().expect("body")).expect("json body")
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(self.body.as_ref().expect("body")).into_owned()
    }
    /// `(event name, data)` of each SSE event (a minimal parser: the mock writes
    /// one `event:` and one `data:` line per event).
    fn events(&self) -> Vec<(String, String)> {
        self.text()
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let mut name = "message".to_string();
                let mut data = String::new();
                for line in e.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v.to_string();
                    }
                }
                (name, data)
            })
            .collect()
    }
}

async fn call(
    mock: &MockUpstream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Answer {
    let stream = TcpStream::connect(mock.addr()).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", mock.addr().to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let resp = sender
        .send_request(b.body(Full::new(body)).unwrap())
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .map_err(|e| e.to_string());
    Answer {
        status,
        headers,
        body,
    }
}

/// `POST /v1/chat/completions` (the OpenAI API).
async fn post_chat(mock: &MockUpstream, headers: &[(&str, &str)], body: Value) -> Answer {
    call(mock, "POST", "/v1/chat/completions", headers, body).await
}

/// `POST /v1/messages` (the Anthropic API).
async fn post_messages(mock: &MockUpstream, headers: &[(&str, &str)], body: Value) -> Answer {
    call(mock, "POST", "/v1/messages", headers, body).await
}

/// A `GET` without a body.
async fn get(mock: &MockUpstream, path: &str, headers: &[(&str, &str)]) -> Answer {
    call(mock, "GET", path, headers, Value::Null).await
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({ "model": model, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
            "stream": stream, "stream_options": {"include_usage": true} })
}

fn claude(model: &str, text: &str, stream: bool) -> Value {
    json!({ "model": model, "max_tokens": 100, "system": "be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}], "stream": stream })
}

const ANTHROPIC: &[(&str, &str)] = &[("x-api-key", "k"), ("anthropic-version", "2023-06-01")];

#[tokio::test]
async fn openai_completion_echoes_and_records_the_request() {
    let mock = MockUpstream::start().await;
    let a = post_chat(
        &mock,
        &[("authorization", "Bearer x")],
        chat("gpt-mock", "hello there world", false),
    )
    .await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "hello there world");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
    );
    let r = mock.last_request().unwrap();
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(r.header("Authorization"), Some("Bearer x"));
    assert_eq!(r.json()["model"], "gpt-mock");
}

#[tokio::test]
async fn max_tokens_truncates_with_length() {
    let mock = MockUpstream::start().await;
    let mut body = chat("gpt-mock", "one two three four", false);
    body["max_tokens"] = json!(2);
    let v = post_chat(&mock, &[], body).await.json();
    assert_eq!(v["choices"][0]["message"]["content"], "one two");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn api_key_is_checked_in_each_format() {
    let mock = MockUpstream::start().await;
    mock.expect_api_key("sk-good");
    let a = post_chat(
        &mock,
        &[("authorization", "Bearer sk-bad")],
        chat("gpt-mock", "x", false),
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"]["code"], "invalid_api_key");
    let a = post_chat(
        &mock,
        &[("authorization", "Bearer sk-good")],
        chat("gpt-mock", "x", false),
    )
    .await;
    assert_eq!(a.status, 200);
    let a = post_messages(
        &mock,
        &[("x-api-key", "nope"), ("anthropic-version", "2023-06-01")],
        claude("claude-mock", "x", false),
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"]["type"], "authentication_error");
    let a = post_messages(
        &mock,
        &[
            ("x-api-key", "sk-good"),
            ("anthropic-version", "2023-06-01"),
        ],
        claude("claude-mock", "x", false),
    )
    .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn openai_stream_with_tool_calls_in_fragments_and_usage() {
    let mock = MockUpstream::start().await;
    mock.push_fault_on(
        Route::Chat,
        Fault::ToolCalls(vec![MockToolCall::new(
            "call_1",
            "get_weather",
            r#"{"city":"Oslo"}"#,
        )]),
    );
    let a = post_chat(&mock, &[], chat("gpt-mock", "weather?", true)).await;
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    let events = a.events();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    let mut args = String::new();
    for c in &chunks {
        if let Some(calls) = c["choices"][0]["delta"]["tool_calls"].as_array() {
            assert_eq!(calls[0]["index"], 0);
            args.push_str(calls[0]["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(args, r#"{"city":"Oslo"}"#);
    let n = chunks.len();
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], 0);
    assert_eq!(mock.pending_faults(), 0);
}

#[tokio::test]
async fn anthropic_stream_has_named_events_and_pings() {
    let mock = MockUpstream::start().await;
    let a = post_messages(&mock, ANTHROPIC, claude("claude-mock", "hi there", true)).await;
    let names: Vec<String> = a.events().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(names.iter().filter(|n| *n == "ping").count() >= 2);
    for required in [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "{required} in {names:?}"
        );
    }
    let text: String = a
        .events()
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["delta"]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(text, "hi there");
}

#[tokio::test]
async fn anthropic_validates_like_the_real_api() {
    let mock = MockUpstream::start().await;
    let a = post_messages(
        &mock,
        &[("x-api-key", "k")],
        claude("claude-mock", "x", false),
    )
    .await;
    assert_eq!(a.status, 400, "anthropic-version is required");
    let mut body = claude("claude-mock", "x", false);
    body.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(post_messages(&mock, ANTHROPIC, body).await.status, 400);
    let body = json!({"model": "claude-mock", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]});
    let a = post_messages(&mock, ANTHROPIC, body).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    let a = post_messages(&mock, ANTHROPIC, claude("no-such-model", "x", false)).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn anthropic_message_with_tool_use() {
    let mock = MockUpstream::start().await;
    mock.push_faults(
        Route::Chat,
        vec![
            Fault::Reply("Checking.".into()),
            Fault::ToolCalls(vec![MockToolCall::new("toolu_1", "f", r#"{"a":[1,2]}"#)]),
        ],
    );
    let v = post_messages(&mock, ANTHROPIC, claude("claude-mock", "x", false))
        .await
        .json();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"][0],
        json!({"type": "text", "text": "Checking."})
    );
    assert_eq!(v["content"][1]["input"], json!({"a": [1, 2]}));
}

#[tokio::test]
async fn models_in_both_shapes() {
    let mock = MockUpstream::start().await;
    mock.set_models(["m1", "claude-x-y"]);
    let v = get(&mock, "/v1/models", &[]).await.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["id"], "claude-x-y");
    let v = get(&mock, "/v1/models", ANTHROPIC).await.json();
    assert_eq!(v["data"][1]["display_name"], "Claude X Y");
    assert_eq!(v["has_more"], false);
    let a = get(&mock, "/v1/nothing", &[]).await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn error_faults_carry_retry_headers_and_are_consumed_by_route() {
    let mock = MockUpstream::start().await;
    mock.push_fault_on(Route::Models, Fault::Error(HttpError::new(503)));
    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(429).retry_after("2").retry_after_ms("1500")),
    );
    // The chat request skips the models entry and takes its own.
    let a = post_chat(&mock, &[], chat("gpt-mock", "x", false)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("retry-after"), Some("2"));
    assert_eq!(a.header("retry-after-ms"), Some("1500"));
    assert_eq!(a.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(mock.pending_faults(), 1);
    assert_eq!(get(&mock, "/v1/models", &[]).await.status, 503);
    assert_eq!(get(&mock, "/v1/models", &[]).await.status, 200);
    mock.push_fault(Fault::Error(HttpError::new(529)));
    let a = post_messages(&mock, ANTHROPIC, claude("claude-mock", "x", false)).await;
    assert_eq!(a.status, 529);
    assert_eq!(
        a.json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
}

#[tokio::test]
async fn cut_abort_malformed_and_error_event_streams() {
    let mock = MockUpstream::start().await;
    mock.push_fault(Fault::CutStream { after_events: 2 });
    let a = post_chat(&mock, &[], chat("gpt-mock", "a b c d", true)).await;
    let events = a.events();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|(_, d)| d != "[DONE]"));

    mock.push_fault(Fault::AbortStream { after_events: 2 });
    let a = post_chat(&mock, &[], chat("gpt-mock", "a b c d", true)).await;
    assert!(
        a.body.is_err(),
        "a reset is a transport error, not a clean end"
    );

    mock.push_fault(Fault::MalformedJson);
    let a = post_chat(&mock, &[], chat("gpt-mock", "a b", false)).await;
    assert!(serde_json::from_slice::<Value>(a.body.as_ref().unwrap()).is_err());

    mock.push_fault(Fault::CutStream { after_events: 0 });
    let a = post_chat(&mock, &[], chat("gpt-mock", "a b", false)).await;
    assert!(
        serde_json::from_slice::<Value>(a.body.as_ref().unwrap()).is_err(),
        "half a JSON body"
    );

    mock.push_fault(Fault::ErrorEvent {
        after_events: 3,
        kind: "overloaded_error".into(),
        message: "Overloaded".into(),
    });
    let a = post_messages(&mock, ANTHROPIC, claude("claude-mock", "a b c d", true)).await;
    let events = a.events();
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].0, "error");
    assert!(events[3].1.contains("overloaded_error"));
}

#[tokio::test]
async fn delays_and_huge_bodies() {
    let mock = MockUpstream::start().await;
    mock.push_faults(
        Route::Chat,
        vec![
            Fault::DelayHeaders(Duration::from_millis(200)),
            Fault::DelayChunks(Duration::from_millis(20)),
        ],
    );
    let t = Instant::now();
    let a = post_chat(&mock, &[], chat("gpt-mock", "a b c", true)).await;
    assert!(
        t.elapsed() >= Duration::from_millis(200 + 20 * 5),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(a.events().last().unwrap().1, "[DONE]");

    mock.push_fault(Fault::HugeBody {
        bytes: 3 * 1024 * 1024,
    });
    let v = post_chat(&mock, &[], chat("gpt-mock", "x", false))
        .await
        .json();
    assert_eq!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len(),
        3 * 1024 * 1024
    );
}
