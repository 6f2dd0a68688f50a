//! The `openai` guest through the real sandbox, the real egress path (allowlist and
//! secret substitution) and a real HTTP server speaking the OpenAI wire format
//! (`tamma-mock-upstream`). Needs `make guests`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tamma_e2e::{assemble_tool_calls, complete_err, drain, guest_error, load_and_instantiate};
use tamma_mock_upstream::{Fault, HttpError, MockToolCall, MockUpstream, Route};
use tamma_registry::{Error, ErrorCode, Limits, ProviderInstance, ProviderSettings};
use tamma_sandbox::egress::EgressPolicy;
use tamma_sandbox::types::{
    CompletionRequest, FinishReason, HealthStatus, Message, Role, ToolCall, ToolDefinition,
};

const KEY: &str = "sk-test-5f1e2d3c4b5a";
const MODEL: &str = "gpt-mock";

fn secrets() -> BTreeMap<String, String> {
    BTreeMap::from([("api_key".to_string(), KEY.to_string())])
}

fn base_config(mock: &MockUpstream) -> Vec<(String, String)> {
    vec![
        ("base_url".into(), mock.base_url()),
        ("models".into(), "gpt-mock,gpt-mock-mini".into()),
    ]
}

async fn start_with(
    config: Vec<(String, String)>,
    egress: EgressPolicy,
    limits: Limits,
) -> Result<ProviderInstance, Error> {
    load_and_instantiate(
        "openai",
        ProviderSettings {
            config,
            limits,
            egress,
        },
    )
    .await
}

/// The guest against `mock`, granted exactly the mock's origin, with the test key.
async fn openai(mock: &MockUpstream, extra: &[(&str, &str)]) -> ProviderInstance {
    let mut config = base_config(mock);
    config.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    start_with(
        config,
        EgressPolicy::new(vec![mock.url()], secrets()),
        Limits::default(),
    )
    .await
    .expect("instantiates")
}

fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters_schema:
            r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#
                .into(),
    }
}

fn tool_calls() -> Vec<MockToolCall> {
    vec![
        MockToolCall::new(
            "call_a",
            "get_weather",
            r#"{"city":"Oslo","unit":"celsius"}"#,
        ),
        MockToolCall::new("call_b", "get_weather", r#"{"city":"Rome"}"#),
    ]
}

// --- the happy path and the key ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_and_the_upstream_gets_the_real_key_the_guest_never_saw() {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let config = base_config(&mock);
    assert!(
        config
            .iter()
            .all(|(k, v)| k != "api_key" && !v.contains(KEY)),
        "the guest's config holds no key"
    );
    let p = openai(&mock, &[]).await;
    let mut req = CompletionRequest::prompt(MODEL, "hello from the sandbox");
    req.messages
        .insert(0, Message::new(Role::System, "be brief"));
    req.temperature = Some(0.2);
    let resp = p.complete(&req).await.expect("answer");
    assert_eq!(resp.content, "hello from the sandbox");
    assert_eq!(resp.model, MODEL);
    assert!(resp.id.starts_with("chatcmpl-mock-"));
    assert_eq!(resp.finish_reason, FinishReason::Stop);
    assert_eq!(
        (
            resp.usage.input_tokens,
            resp.usage.output_tokens,
            resp.usage.total_tokens
        ),
        (6, 4, 10)
    );

    let sent = mock.last_request().expect("the upstream got the request");
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(
        sent.headers.iter().all(|(_, v)| !v.contains("{{secret")),
        "no placeholder leaves the host: {:?}",
        sent.headers
    );
    assert_eq!(sent.header("content-type"), Some("application/json"));
    let body = sent.json();
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "hello from the sandbox");
    assert_eq!(body["temperature"].to_string(), "0.2");
    assert_eq!(body["stream"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_config_is_refused_at_initialize() {
    let mock = MockUpstream::start().await;
    let mut config = base_config(&mock);
    config.push(("api_key".into(), KEY.into()));
    let err = start_with(
        config,
        EgressPolicy::new(vec![mock.url()], secrets()),
        Limits::default(),
    )
    .await
    .expect_err("refused");
    let text = format!("{err:?} {err}");
    assert!(
        text.contains("api keys are given as secrets, not config"),
        "{text}"
    );
    assert!(
        !text.contains(KEY),
        "the refusal does not echo the key: {text}"
    );
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_invalid_api_key_and_unhealthy() {
    let mock = MockUpstream::start().await;
    mock.expect_api_key("sk-some-other-key");
    let p = openai(&mock, &[]).await;
    let err = complete_err(&p, &CompletionRequest::prompt(MODEL, "hi")).await;
    assert_eq!(guest_error(&err), ("invalid-api-key", false, None));
    assert!(err.message.contains("Incorrect API key"), "{}", err.message);
    let health = p
        .health_check(Duration::from_secs(10))
        .await
        .expect("health");
    assert_eq!(health.status, HealthStatus::Unhealthy);
    assert!(
        health.message.contains("credentials refused"),
        "{}",
        health.message
    );
}

// --- error mapping ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_is_model_not_found() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let err = complete_err(&p, &CompletionRequest::prompt("gpt-nope", "hi")).await;
    assert_eq!(guest_error(&err), ("model-not-found", false, None));
    assert!(err.message.contains("gpt-nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_carry_retry_after_from_either_header() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let req = CompletionRequest::prompt(MODEL, "hi");

    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(429).retry_after_ms("1500").retry_after("9")),
    );
    let err = complete_err(&p, &req).await;
    assert_eq!(
        guest_error(&err),
        ("rate-limit-exceeded", true, Some(1500)),
        "retry-after-ms wins"
    );
    assert_eq!(err.retry_after, Some(Duration::from_millis(1500)));

    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(429).retry_after("2")),
    );
    assert_eq!(
        guest_error(&complete_err(&p, &req).await),
        ("rate-limit-exceeded", true, Some(2000))
    );

    mock.push_fault_on(Route::Chat, Fault::Error(HttpError::new(429)));
    assert_eq!(
        guest_error(&complete_err(&p, &req).await),
        ("rate-limit-exceeded", true, None)
    );

    // A 429 about quota is not worth retrying.
    mock.push_fault_on(
        Route::Chat,
        Fault::Error(
            HttpError::new(429)
                .code("insufficient_quota")
                .message("You exceeded your current quota"),
        ),
    );
    assert_eq!(
        guest_error(&complete_err(&p, &req).await),
        ("quota-exceeded", false, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_context_too_long_or_invalid_request() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let req = CompletionRequest::prompt(MODEL, "hi");
    mock.push_fault_on(
        Route::Chat,
        Fault::Error(
            HttpError::new(400)
                .code("context_length_exceeded")
                .message("This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."),
        ),
    );
    assert_eq!(
        guest_error(&complete_err(&p, &req).await),
        ("context-too-long", false, None)
    );
    // A server that only says it in words (vLLM, llama.cpp) is understood too.
    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(400).message("the request exceeds the available context size")),
    );
    assert_eq!(
        guest_error(&complete_err(&p, &req).await).0,
        "context-too-long"
    );
    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(400).message("Invalid value for 'temperature'")),
    );
    let err = complete_err(&p, &req).await;
    assert_eq!(guest_error(&err), ("invalid-request", false, None));
    assert!(err.message.contains("temperature"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retryable_service_unavailable() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let req = CompletionRequest::prompt(MODEL, "hi");
    for status in [500, 502, 503] {
        mock.push_fault_on(
            Route::Chat,
            Fault::Error(HttpError::new(status).retry_after("1")),
        );
        let err = complete_err(&p, &req).await;
        assert_eq!(
            guest_error(&err),
            ("service-unavailable", true, Some(1000)),
            "{status}"
        );
    }
    // The same instance keeps serving: provider errors do not retire it.
    assert_eq!(p.complete(&req).await.expect("recovers").content, "hi");
    assert_eq!(p.pool_stats().retired, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_truncated_and_reset_bodies_are_errors() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let req = CompletionRequest::prompt(MODEL, "some words here");

    mock.push_fault_on(Route::Chat, Fault::MalformedJson);
    let err = complete_err(&p, &req).await;
    assert_eq!(guest_error(&err), ("provider-error", false, None));
    assert!(
        err.message.contains("malformed completion"),
        "{}",
        err.message
    );

    mock.push_fault_on(Route::Chat, Fault::CutStream { after_events: 0 });
    assert_eq!(
        guest_error(&complete_err(&p, &req).await).0,
        "provider-error"
    );

    mock.push_fault_on(Route::Chat, Fault::AbortStream { after_events: 0 });
    let (code, retryable, _) = guest_error(&complete_err(&p, &req).await);
    assert_eq!(
        (code, retryable),
        ("network-error", true),
        "a reset is a transport failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies_fail_clearly_instead_of_exhausting_memory() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let req = CompletionRequest::prompt(MODEL, "hi");
    // Whole body past the guest's read cap (8 MiB): a provider error, not a trap.
    mock.push_fault_on(
        Route::Chat,
        Fault::HugeBody {
            bytes: 12 * 1024 * 1024,
        },
    );
    let err = complete_err(&p, &req).await;
    assert_eq!(guest_error(&err).0, "provider-error");
    assert!(err.message.contains("larger than"), "{}", err.message);
    // A stream past the host's response cap (4 MiB) is stopped by the host.
    mock.push_fault_on(
        Route::Chat,
        Fault::HugeBody {
            bytes: 6 * 1024 * 1024,
        },
    );
    let (_, err) = drain(&p, &req).await;
    let err = err.expect("the stream is stopped");
    assert_eq!(err.code, ErrorCode::ResponseTooLarge, "{err:?}");
    // And the provider still serves.
    assert_eq!(p.complete(&req).await.expect("serves").content, "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_outside_the_policy_is_refused_before_any_connection() {
    let mock = MockUpstream::start().await;
    let other = MockUpstream::start().await;
    // Granted only the other server: the request to `mock` never leaves the host.
    let p = start_with(
        base_config(&mock),
        EgressPolicy::new(vec![other.url()], secrets()),
        Limits::default(),
    )
    .await
    .expect("instantiates");
    let err = complete_err(&p, &CompletionRequest::prompt(MODEL, "hi")).await;
    let (code, retryable, _) = guest_error(&err);
    assert_eq!(
        (code, retryable),
        ("network-error", false),
        "{}",
        err.message
    );
    assert!(err.message.contains("egress policy"), "{}", err.message);
    assert!(mock.requests().is_empty() && other.requests().is_empty());
    let health = p
        .health_check(Duration::from_secs(10))
        .await
        .expect("health");
    assert_eq!(health.status, HealthStatus::Unhealthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_is_a_retryable_network_error() {
    let mock = MockUpstream::start().await;
    let url = mock.url();
    let config = base_config(&mock);
    drop(mock); // nothing listens on the port any more
    tokio::time::sleep(Duration::from_millis(50)).await;
    let p = start_with(
        config,
        EgressPolicy::new(vec![url], secrets()),
        Limits::default(),
    )
    .await
    .expect("instantiates");
    let err = complete_err(&p, &CompletionRequest::prompt(MODEL, "hi")).await;
    let (code, retryable, _) = guest_error(&err);
    assert_eq!(
        (code, retryable),
        ("network-error", true),
        "{}",
        err.message
    );
}

// --- latency -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_before_headers_and_between_chunks_is_waited_out() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    mock.push_faults(
        Route::Chat,
        vec![
            Fault::DelayHeaders(Duration::from_millis(300)),
            Fault::DelayChunks(Duration::from_millis(30)),
        ],
    );
    let t = Instant::now();
    let (chunks, err) = drain(&p, &CompletionRequest::prompt(MODEL, "one two three")).await;
    assert!(err.is_none(), "{err:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(300 + 30 * 5),
        "{:?}",
        t.elapsed()
    );
    let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(text, "one two three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_slower_than_the_call_deadline_is_cut_by_the_host() {
    let mock = MockUpstream::start().await;
    let limits = Limits {
        timeout_ms: 1_000,
        ..Limits::default()
    };
    let p = start_with(
        base_config(&mock),
        EgressPolicy::new(vec![mock.url()], secrets()),
        limits,
    )
    .await
    .expect("instantiates");
    mock.push_fault_on(Route::Chat, Fault::DelayHeaders(Duration::from_secs(5)));
    let t = Instant::now();
    let err = complete_err(&p, &CompletionRequest::prompt(MODEL, "hi")).await;
    assert_eq!(err.code, ErrorCode::Timeout, "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

// --- streaming -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_deltas_and_ends_with_finish_reason_and_usage() {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let p = openai(&mock, &[]).await;
    let (chunks, err) = drain(
        &p,
        &CompletionRequest::prompt(MODEL, "streamed word by word"),
    )
    .await;
    assert!(err.is_none(), "{err:?}");
    assert!(chunks.len() >= 4, "{chunks:?}");
    let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(text, "streamed word by word");
    let last = chunks.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    let usage = last.usage.expect("usage on the last chunk");
    assert_eq!((usage.input_tokens, usage.output_tokens), (4, 4));
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c.finish_reason.is_none()));
    assert!(chunks.iter().all(|c| c.id.starts_with("chatcmpl-mock-")));
    let body = mock.last_request().unwrap().json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(
        mock.last_request().unwrap().header("accept"),
        Some("text/event-stream")
    );
    assert_eq!(p.pool_stats().retired, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tool_calls_arrive_as_fragments_that_reassemble() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let mut req = CompletionRequest::prompt(MODEL, "weather in Oslo and Rome?");
    req.tools = vec![weather_tool()];
    mock.push_fault_on(Route::Chat, Fault::ToolCalls(tool_calls()));
    let (chunks, err) = drain(&p, &req).await;
    assert!(err.is_none(), "{err:?}");
    let deltas: Vec<_> = chunks
        .iter()
        .flat_map(|c| c.tool_call_deltas.clone())
        .collect();
    let calls = assemble_tool_calls(&deltas);
    assert!(
        deltas
            .iter()
            .filter(|d| d.index == 0 && !d.arguments_delta.is_empty())
            .count()
            > 3,
        "arguments arrive in fragments: {deltas:?}"
    );
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].id.as_str(), calls[0].name.as_str()),
        ("call_a", "get_weather")
    );
    assert_eq!(calls[0].arguments, r#"{"city":"Oslo","unit":"celsius"}"#);
    assert_eq!(calls[1].arguments, r#"{"city":"Rome"}"#);
    assert_eq!(
        chunks.last().unwrap().finish_reason,
        Some(FinishReason::ToolCalls)
    );
    // The tool reached the upstream in OpenAI's shape.
    let body = mock.last_request().unwrap().json();
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"][0],
        "city"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_returns_tool_calls_whole_and_over_a_stream() {
    let mock = MockUpstream::start().await;
    let mut req = CompletionRequest::prompt(MODEL, "weather?");
    req.tools = vec![weather_tool()];
    for via_stream in ["false", "true"] {
        let p = openai(&mock, &[("complete_via_stream", via_stream)]).await;
        mock.push_faults(
            Route::Chat,
            vec![
                Fault::Reply("Checking both.".into()),
                Fault::ToolCalls(tool_calls()),
            ],
        );
        let resp = p.complete(&req).await.expect("answer");
        assert_eq!(resp.content, "Checking both.", "via stream: {via_stream}");
        assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
        assert_eq!(resp.tool_calls.len(), 2);
        assert_eq!(resp.tool_calls[0].id, "call_a");
        assert_eq!(
            resp.tool_calls[0].arguments,
            r#"{"city":"Oslo","unit":"celsius"}"#
        );
        assert_eq!(resp.tool_calls[1].name, "get_weather");
        assert_eq!(
            mock.last_request().unwrap().json()["stream"],
            via_stream == "true"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_results_go_back_in_openai_shape() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let mut req = CompletionRequest::prompt(MODEL, "weather in Oslo?");
    req.tools = vec![weather_tool()];
    req.messages.push(Message {
        role: Role::Assistant,
        content: String::new(),
        name: None,
        tool_call_id: None,
        tool_calls: vec![ToolCall {
            id: "call_a".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Oslo"}"#.into(),
        }],
    });
    req.messages.push(Message {
        role: Role::Tool,
        content: "sunny, 21 C".into(),
        name: None,
        tool_call_id: Some("call_a".into()),
        tool_calls: vec![],
    });
    let resp = p.complete(&req).await.expect("answer");
    assert_eq!(
        resp.content, "sunny, 21 C",
        "the mock echoes the last message"
    );
    let body = mock.last_request().unwrap().json();
    assert_eq!(body["messages"][1]["content"], serde_json::Value::Null);
    assert_eq!(
        body["messages"][1]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Oslo"}"#
    );
    assert_eq!(
        body["messages"][2],
        serde_json::json!({"role": "tool", "tool_call_id": "call_a", "content": "sunny, 21 C"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_before_done_is_an_error_not_a_short_answer() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    mock.push_fault_on(Route::Chat, Fault::CutStream { after_events: 3 });
    let (chunks, err) = drain(&p, &CompletionRequest::prompt(MODEL, "a b c d e f")).await;
    let err = err.expect("a cut stream fails");
    assert_eq!(guest_error(&err), ("provider-error", false, None));
    assert!(err.message.contains("[DONE]"), "{}", err.message);
    assert_eq!(
        chunks.len(),
        2,
        "what arrived before the cut was delivered: {chunks:?}"
    );
    assert!(chunks.iter().all(|c| c.finish_reason.is_none()));

    // complete over a cut stream fails the same way.
    let p = openai(&mock, &[("complete_via_stream", "true")]).await;
    mock.push_fault_on(Route::Chat, Fault::CutStream { after_events: 3 });
    let err = complete_err(&p, &CompletionRequest::prompt(MODEL, "a b c d e f")).await;
    assert_eq!(guest_error(&err).0, "provider-error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_resets_in_band_errors_and_malformed_events_are_errors() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let req = CompletionRequest::prompt(MODEL, "a b c d e f");

    mock.push_fault_on(Route::Chat, Fault::AbortStream { after_events: 2 });
    let (_, err) = drain(&p, &req).await;
    let (code, retryable, _) = guest_error(&err.expect("fails"));
    assert_eq!((code, retryable), ("network-error", true));

    mock.push_fault_on(
        Route::Chat,
        Fault::ErrorEvent {
            after_events: 2,
            kind: "server_error".into(),
            message: "The server had an error".into(),
        },
    );
    let (chunks, err) = drain(&p, &req).await;
    let err = err.expect("fails");
    assert_eq!(guest_error(&err), ("service-unavailable", true, None));
    assert!(err.message.contains("The server had an error"));
    assert_eq!(chunks.len(), 1);

    mock.push_fault_on(Route::Chat, Fault::MalformedJson);
    let (_, err) = drain(&p, &req).await;
    let err = err.expect("fails");
    assert_eq!(guest_error(&err).0, "provider-error");
    assert!(
        err.message.contains("malformed stream event"),
        "{}",
        err.message
    );

    // Errors before the stream starts come from `stream` itself.
    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(429).retry_after_ms("250")),
    );
    let err = p.stream(&req).await.err().expect("refused");
    assert_eq!(guest_error(&err), ("rate-limit-exceeded", true, Some(250)));
    assert_eq!(
        p.pool_stats().retired,
        0,
        "guest errors never retire an instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_is_sent_and_length_is_reported() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let mut req = CompletionRequest::prompt(MODEL, "one two three four five");
    req.max_tokens = Some(2);
    let resp = p.complete(&req).await.expect("answer");
    assert_eq!(
        (resp.content.as_str(), resp.finish_reason),
        ("one two", FinishReason::Length)
    );
    assert_eq!(mock.last_request().unwrap().json()["max_tokens"], 2);
    let (chunks, _) = drain(&p, &req).await;
    assert_eq!(
        chunks.last().unwrap().finish_reason,
        Some(FinishReason::Length)
    );
}

// --- models and health --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_models_comes_from_the_upstream() {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    mock.set_models(["gpt-mock", "gpt-mock-mini", "local-llama"]);
    let p = openai(&mock, &[]).await;
    let ids: Vec<String> = p
        .list_models()
        .await
        .expect("models")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, ["gpt-mock", "gpt-mock-mini", "local-llama"]);
    let sent = mock.last_request().unwrap();
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    // Capabilities come from config, without a request.
    let caps: Vec<&str> = p
        .capabilities()
        .models
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(caps, ["gpt-mock", "gpt-mock-mini"]);

    mock.push_fault_on(Route::Models, Fault::MalformedJson);
    assert_eq!(
        guest_error(&p.list_models().await.unwrap_err()).0,
        "provider-error"
    );
    mock.push_fault_on(Route::Models, Fault::Error(HttpError::new(401)));
    assert_eq!(
        guest_error(&p.list_models().await.unwrap_err()).0,
        "invalid-api-key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_cost_no_tokens() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let check = || p.health_check(Duration::from_secs(10));
    assert_eq!(check().await.unwrap().status, HealthStatus::Healthy);
    mock.push_fault_on(Route::Models, Fault::Error(HttpError::new(503)));
    assert_eq!(check().await.unwrap().status, HealthStatus::Unhealthy);
    mock.push_fault_on(Route::Models, Fault::Error(HttpError::new(429)));
    assert_eq!(check().await.unwrap().status, HealthStatus::Degraded);
    mock.push_fault_on(Route::Models, Fault::Error(HttpError::new(403)));
    assert_eq!(check().await.unwrap().status, HealthStatus::Unhealthy);
    assert!(
        mock.requests()
            .iter()
            .all(|r| r.method == "GET" && r.path == "/v1/models"),
        "health never asks for a completion"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_name_is_configurable_and_auth_can_be_off() {
    let mock = MockUpstream::start().await;
    let req = CompletionRequest::prompt(MODEL, "hi");
    // A secret under another name.
    let named = BTreeMap::from([("openrouter".to_string(), "sk-or-xyz".to_string())]);
    let mut config = base_config(&mock);
    config.push(("api_key_secret".into(), "openrouter".into()));
    let p = start_with(
        config,
        EgressPolicy::new(vec![mock.url()], named),
        Limits::default(),
    )
    .await
    .expect("instantiates");
    p.complete(&req).await.expect("answer");
    assert_eq!(
        mock.last_request().unwrap().header("authorization"),
        Some("Bearer sk-or-xyz")
    );

    // A placeholder naming a secret the provider does not have: the host refuses to
    // send it rather than leak the placeholder (or nothing) upstream.
    let before = mock.requests().len();
    let mut config = base_config(&mock);
    config.push(("api_key_secret".into(), "missing".into()));
    let p = start_with(
        config,
        EgressPolicy::new(vec![mock.url()], secrets()),
        Limits::default(),
    )
    .await
    .expect("instantiates");
    let err = complete_err(&p, &req).await;
    assert_eq!(guest_error(&err).0, "network-error", "{}", err.message);
    assert_eq!(
        mock.requests().len(),
        before,
        "nothing reached the upstream"
    );

    // Local servers without auth: no Authorization header at all.
    let mut config = base_config(&mock);
    config.push(("api_key_secret".into(), String::new()));
    let p = start_with(
        config,
        EgressPolicy::new(vec![mock.url()], BTreeMap::new()),
        Limits::default(),
    )
    .await
    .expect("instantiates");
    p.complete(&req).await.expect("answer");
    assert_eq!(mock.last_request().unwrap().header("authorization"), None);
}

// --- clients leaving a stream ----------------------------------------------------

/// Waits (without a timed assertion) for the background close of an
/// abandoned stream to be counted.
async fn wait_for_left(p: &ProviderInstance) -> tamma_sandbox::pool::PoolStats {
    for _ in 0..500 {
        let s = p.pool_stats();
        if s.streams_left_kept + s.streams_left_retired > 0 {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.pool_stats()
}

/// A client that leaves *between* two chunks ran no guest code at that moment:
/// the stream is closed and the instance kept (64 clients leaving at once used
/// to throw 57 instances away). One that leaves while `next()` runs in the guest
/// retires the instance. Each case is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_left_between_chunks_keeps_its_instance_and_mid_call_retires_it() {
    let mock = MockUpstream::start().await;
    let p = openai(&mock, &[]).await;
    let req = CompletionRequest::prompt(MODEL, "one two three four five");

    let mut stream = p.stream(&req).await.unwrap();
    assert!(stream.next().await.unwrap().is_some());
    let created = p.pool_stats().created;
    drop(stream);
    let s = wait_for_left(&p).await;
    assert_eq!(
        (s.streams_left_kept, s.streams_left_retired),
        (1, 0),
        "{s:?}"
    );
    assert_eq!(s.retired, 0, "{s:?}");
    // The kept instance serves the next call: nothing new was created.
    let (chunks, err) = drain(&p, &req).await;
    assert!(err.is_none(), "{err:?}");
    assert!(!chunks.is_empty());
    assert_eq!(p.pool_stats().created, created);

    // Mid-call: the upstream pauses between chunks, so the guest is inside
    // `next()` (reading its response) when the caller gives up.
    mock.push_fault_on(
        Route::Chat,
        Fault::DelayChunks(Duration::from_millis(2_000)),
    );
    let mut stream = p.stream(&req).await.unwrap();
    let cut = tokio::time::timeout(Duration::from_millis(200), async {
        while stream.next().await.unwrap().is_some() {}
    })
    .await;
    assert!(
        cut.is_err(),
        "the stream should still be waiting on the upstream"
    );
    drop(stream);
    let s = p.pool_stats();
    assert_eq!(
        (s.streams_left_kept, s.streams_left_retired),
        (1, 1),
        "{s:?}"
    );
    assert_eq!(s.retired, 1, "{s:?}");
}
