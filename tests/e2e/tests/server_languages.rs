//! The gateway's inbound APIs served by providers in every guest language: the
//! Rust `echo`, the JavaScript `js_echo` (componentize-js) and the Python
//! `py_echo` (componentize-py), in process over real HTTP on 127.0.0.1. Each
//! answers `POST /v1/messages` whole and streamed in Anthropic's shape and
//! `POST /v1/embeddings` in OpenAI's, and the JS and Python answers are the
//! Rust one's (same text, same events, same vectors): the contract, not the
//! language, decides what a client sees.

mod server_support;

use std::net::SocketAddr;

use serde_json::{json, Value};
use server_support::*;
use tamma_e2e::guest;
use tamma_registry::{ComponentSource, Registration};
use tamma_server::ServerConfig;
use tamma_test_support::client;

const PROVIDERS: [(&str, &str); 3] = [
    ("echo", "echo"),
    ("js-echo", "js_echo"),
    ("py-echo", "py_echo"),
];

/// `POST /v1/messages` as an Anthropic SDK sends it.
async fn messages(addr: SocketAddr, body: &Value) -> client::Response {
    client::request(
        addr,
        "POST",
        "/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        Some(body.to_string().into_bytes()),
    )
    .await
    .expect("request")
}

/// A streamed `/v1/messages`: (event names, the text of the deltas, the
/// `message_delta`'s stop reason).
async fn streamed(addr: SocketAddr, body: &Value) -> (Vec<String>, String, Value) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let mut st = client::post_streaming(addr, "/v1/messages", &body)
        .await
        .unwrap();
    assert_eq!(st.status, 200);
    assert_eq!(st.headers["content-type"], "text/event-stream");
    let (mut names, mut text, mut stop) = (Vec::new(), String::new(), Value::Null);
    while let Some(ev) = st.next_event().await {
        let ev = ev.expect("the stream ends cleanly");
        let name = ev.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
        let data = ev.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let v: Value = serde_json::from_str(data).expect("data is JSON");
        assert_eq!(v["type"], name, "the data's type is the event's name");
        if v["delta"]["type"] == "text_delta" {
            text.push_str(v["delta"]["text"].as_str().unwrap());
        }
        if name == "message_delta" {
            stop = v["delta"]["stop_reason"].clone();
        }
        names.push(name.to_string());
    }
    (names, text, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_embeddings_through_the_rust_js_and_python_echo() {
    let r = registry(100);
    for (name, file) in PROVIDERS {
        r.register(name, Registration::new(ComponentSource::File(guest(file))))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let s = serve(&r, ServerConfig::default()).await;
    let a = s.addr();
    let body = |p: &str| {
        json!({
            "model": format!("{p}/echo-1"),
            "max_tokens": 64,
            "system": "be brief",
            "messages": [{"role": "user", "content": "one two three"}],
        })
    };
    let embed =
        |p: &str| json!({"model": format!("{p}/echo-embed-1"), "input": ["hello world", "hi"]});

    let mut answers = Vec::new();
    for (p, _) in PROVIDERS {
        let whole = messages(a, &body(p)).await;
        assert_eq!(whole.status, 200, "{p}: {}", whole.text());
        let mut v = whole.json();
        assert_eq!(v["type"], "message", "{p}: {v}");
        assert_eq!(v["model"], format!("{p}/echo-1"));
        assert_eq!(
            v["content"],
            json!([{"type": "text", "text": "one two three"}]),
            "{p}: {v}"
        );
        assert_eq!(v["stop_reason"], "end_turn", "{p}: {v}");
        assert!(
            v["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{p}: {v}"
        );
        // Compared across languages below, without what is unique per answer.
        v["id"] = Value::Null;
        v["model"] = Value::Null;

        let (names, text, stop) = streamed(a, &body(p)).await;
        assert_eq!(text, "one two three", "{p}: {names:?}");
        assert_eq!(stop, "end_turn", "{p}");
        assert_eq!(
            names[..3],
            ["message_start", "content_block_start", "ping"],
            "{p}: {names:?}"
        );
        assert_eq!(
            names[names.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"],
            "{p}: {names:?}"
        );

        let e = client::post_json(a, "/v1/embeddings", &embed(p))
            .await
            .unwrap();
        assert_eq!(e.status, 200, "{p}: {}", e.text());
        let mut ev = e.json();
        assert_eq!(ev["object"], "list", "{p}: {ev}");
        assert_eq!(ev["model"], format!("{p}/echo-embed-1"));
        let data = ev["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "{p}: {ev}");
        assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 8);
        assert_ne!(data[0]["embedding"], data[1]["embedding"], "{p}");
        ev["model"] = Value::Null;
        answers.push((p, v, names, ev));
    }
    let (_, rust_whole, rust_events, rust_vectors) = &answers[0];
    for (p, whole, events, vectors) in &answers[1..] {
        assert_eq!(whole, rust_whole, "{p}'s whole answer is echo's");
        assert_eq!(events, rust_events, "{p}'s events are echo's");
        assert_eq!(
            vectors["usage"], rust_vectors["usage"],
            "{p}'s usage is echo's"
        );
        // The same vectors up to the last float bit (JS and Python compute in
        // f64 before the contract's f32).
        let floats = |v: &Value| -> Vec<f64> {
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|d| d["embedding"].as_array().unwrap().clone())
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (got, want) = (floats(vectors), floats(rust_vectors));
        assert_eq!(got.len(), want.len(), "{p}");
        assert!(
            got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-6),
            "{p}'s vectors are echo's: {got:?} vs {want:?}"
        );
    }
    s.shutdown().await;
}
