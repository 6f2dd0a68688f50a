//! Anthropic Messages API benchmark (`make bench`): what translating
//! `/v1/messages` to and from the provider contract costs, against
//! `/v1/chat/completions` in the same run, both through the echo guest (no
//! upstream) on one in-process server.
//!
//! One keep-alive connection, the four requests (chat and messages, whole and
//! streamed) interleaved round by round, so that drift hits all alike. Prints
//! the p50 of each, the ratio messages / chat (goal: ≤ 1.10), and the
//! in-process cost of parsing a request and rendering an answer in each format
//! alone. Printed as `bench: <name> <value> <unit>`; never asserted.

#[path = "../tests/server_support/mod.rs"]
mod server_support;

use std::time::{Duration, Instant};

use serde_json::json;
use server_support::{echo, registry, serve};
use tamma_sandbox::types::{CompletionResponse, FinishReason, Usage};
use tamma_server::anthropic_api::{request, response};
use tamma_server::{openai_api, ServerConfig};
use tamma_test_support::client::Conn;

const ROUNDS: usize = 2_000;
const WARMUP: usize = 200;

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// ns per parse + render, for one format's functions.
fn per_call(mut one: impl FnMut()) -> f64 {
    let n = 50_000;
    for _ in 0..1_000 {
        one();
    }
    let t = Instant::now();
    for _ in 0..n {
        one();
    }
    t.elapsed().as_secs_f64() * 1e9 / n as f64
}

fn micro() {
    let answer = CompletionResponse {
        id: "x".into(),
        model: "echo-1".into(),
        content: "what does translating this request cost".into(),
        tool_calls: vec![],
        finish_reason: FinishReason::Stop,
        usage: Usage {
            input_tokens: 6,
            output_tokens: 6,
            total_tokens: 12,
            ..Usage::default()
        },
    };
    let text = "what does translating this request cost";
    let chat = json!({"model": "echo/echo-1", "max_tokens": 32,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]})
    .to_string();
    let messages = json!({"model": "echo/echo-1", "max_tokens": 32, "system": "be brief",
        "messages": [{"role": "user", "content": text}]})
    .to_string();
    let c = per_call(|| {
        let p = openai_api::parse_chat_request(std::hint::black_box(chat.as_bytes())).unwrap();
        std::hint::black_box(openai_api::completion_json("id", &p.model, 0, &answer).to_string());
    });
    let m = per_call(|| {
        let p = request::parse_messages_request(std::hint::black_box(messages.as_bytes())).unwrap();
        std::hint::black_box(response::message_json("id", &p.model, &answer).to_string());
    });
    print("messages_translate_chat_ns", c, "ns");
    print("messages_translate_messages_ns", m, "ns");
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours skips us.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"messages".contains(a.as_str()))
    {
        return;
    }
    micro();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = registry(1_000);
        r.register("echo", echo()).await.unwrap();
        let s = serve(&r, ServerConfig::default()).await;
        let mut conn = Conn::connect(s.addr()).await.unwrap();
        let text = "what does translating this request cost";
        let chat = json!({"model": "echo/echo-1", "max_tokens": 32,
            "messages": [{"role": "user", "content": text}]});
        let messages = json!({"model": "echo/echo-1", "max_tokens": 32,
            "messages": [{"role": "user", "content": text}]});
        let streamed = |mut v: serde_json::Value| {
            v["stream"] = json!(true);
            v
        };
        let cases = [
            ("chat_whole", "/v1/chat/completions", chat.clone()),
            ("messages_whole", "/v1/messages", messages.clone()),
            ("chat_stream", "/v1/chat/completions", streamed(chat)),
            ("messages_stream", "/v1/messages", streamed(messages)),
        ];
        let bodies: Vec<Vec<u8>> = cases.iter().map(|c| c.2.to_string().into_bytes()).collect();
        let mut samples = vec![Vec::with_capacity(ROUNDS); cases.len()];
        for round in 0..ROUNDS + WARMUP {
            for (i, (name, path, _)) in cases.iter().enumerate() {
                let t = Instant::now();
                let resp = conn
                    .send("POST", path, &[], Some(bodies[i].clone()))
                    .await
                    .unwrap();
                let d = t.elapsed();
                assert_eq!(resp.status, 200, "{name}: {}", resp.text());
                if round >= WARMUP {
                    samples[i].push(d.as_secs_f64() * 1e6);
                }
            }
        }
        let p: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
        for (i, (name, _, _)) in cases.iter().enumerate() {
            print(&format!("messages_echo_{name}_p50"), p[i], "us");
        }
        print("messages_vs_chat_whole_ratio", p[1] / p[0], "x");
        print("messages_vs_chat_stream_ratio", p[3] / p[2], "x");
        tokio::time::timeout(Duration::from_secs(10), s.shutdown())
            .await
            .ok();
    });
}
