//! The `anthropic` guest through the real sandbox, the real egress path (allowlist
//! and secret substitution) and a real HTTP server speaking the Anthropic Messages
//! wire format (`tamma-mock-upstream`). Needs `make guests`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use tamma_e2e::{assemble_tool_calls, complete_err, drain, guest_error, load_and_instantiate};
use tamma_mock_upstream::{Fault, HttpError, MockToolCall, MockUpstream, Route};
use tamma_registry::{Error, Limits, ProviderInstance, ProviderSettings};
use tamma_sandbox::egress::EgressPolicy;
use tamma_sandbox::types::{
    CompletionRequest, FinishReason, HealthStatus, Message, Role, ToolCall, ToolDefinition,
};

const KEY: &str = "sk-ant-test-a1b2c3d4";
const MODEL: &str = "claude-mock";

fn secrets() -> BTreeMap<String, String> {
    BTreeMap::from([("api_key".to_string(), KEY.to_string())])
}

fn base_config(mock: &MockUpstream) -> Vec<(String, String)> {
    vec![
        ("base_url".into(), mock.base_url()),
        ("models".into(), "claude-mock,claude-mock-haiku".into()),
    ]
}

async fn start_with(
    config: Vec<(String, String)>,
    egress: EgressPolicy,
) -> Result<ProviderInstance, Error> {
    load_and_instantiate(
        "anthropic",
        ProviderSettings {
            config,
            limits: Limits::default(),
            egress,
        },
    )
    .await
}

async fn anthropic(mock: &MockUpstream, extra: &[(&str, &str)]) -> ProviderInstance {
    let mut config = base_config(mock);
    config.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    start_with(config, EgressPolicy::new(vec![mock.url()], secrets()))
        .await
        .expect("instantiates")
}

fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters_schema: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.into(),
    }
}

fn tool_calls() -> Vec<MockToolCall> {
    vec![
        MockToolCall::new(
            "toolu_a",
            "get_weather",
            r#"{"city":"Oslo","unit":"celsius"}"#,
        ),
        MockToolCall::new("toolu_b", "get_weather", r#"{"city":"Rome"}"#),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_with_the_real_key_version_header_and_top_level_system() {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let p = anthropic(&mock, &[("default_max_tokens", "321")]).await;
    let mut req = CompletionRequest::prompt(MODEL, "hello from the sandbox");
    req.messages
        .insert(0, Message::new(Role::System, "be brief"));
    let resp = p.complete(&req).await.expect("answer");
    assert_eq!(resp.content, "hello from the sandbox");
    assert!(resp.id.starts_with("msg_mock_"));
    assert_eq!(resp.model, MODEL);
    assert_eq!(resp.finish_reason, FinishReason::Stop);
    assert_eq!((resp.usage.input_tokens, resp.usage.output_tokens), (6, 4));

    let sent = mock.last_request().expect("sent");
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None);
    assert!(sent.headers.iter().all(|(_, v)| !v.contains("{{secret")));
    let body = sent.json();
    assert_eq!(body["system"], "be brief");
    assert_eq!(body["max_tokens"], 321, "the configured default");
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hello from the sandbox"}]}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_config_is_refused_and_a_wrong_key_is_invalid_api_key() {
    let mock = MockUpstream::start().await;
    let mut config = base_config(&mock);
    config.push(("api_key".into(), KEY.into()));
    let err = start_with(config, EgressPolicy::new(vec![mock.url()], secrets()))
        .await
        .expect_err("refused");
    let text = format!("{err:?} {err}");
    assert!(
        text.contains("api keys are given as secrets, not config"),
        "{text}"
    );
    assert!(!text.contains(KEY));

    mock.expect_api_key("sk-ant-other");
    let p = anthropic(&mock, &[]).await;
    let err = complete_err(&p, &CompletionRequest::prompt(MODEL, "hi")).await;
    assert_eq!(guest_error(&err), ("invalid-api-key", false, None));
    let health = p.health_check(Duration::from_secs(10)).await.unwrap();
    assert_eq!(health.status, HealthStatus::Unhealthy);
    assert!(
        health.message.contains("invalid x-api-key"),
        "{}",
        health.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_map_to_provider_errors() {
    let mock = MockUpstream::start().await;
    let p = anthropic(&mock, &[]).await;
    let req = CompletionRequest::prompt(MODEL, "hi");

    let err = complete_err(&p, &CompletionRequest::prompt("claude-nope", "hi")).await;
    assert_eq!(guest_error(&err), ("model-not-found", false, None));

    mock.push_fault_on(Route::Chat, Fault::Error(HttpError::new(529)));
    let err = complete_err(&p, &req).await;
    assert_eq!(guest_error(&err), ("service-unavailable", true, None));
    assert!(err.message.contains("overloaded_error"), "{}", err.message);

    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(429).retry_after("3")),
    );
    assert_eq!(
        guest_error(&complete_err(&p, &req).await),
        ("rate-limit-exceeded", true, Some(3000))
    );

    mock.push_fault_on(Route::Chat, Fault::Error(HttpError::new(500)));
    assert_eq!(
        guest_error(&complete_err(&p, &req).await),
        ("service-unavailable", true, None)
    );

    mock.push_fault_on(
        Route::Chat,
        Fault::Error(
            HttpError::new(400).message("prompt is too long: 210000 tokens > 200000 maximum"),
        ),
    );
    assert_eq!(
        guest_error(&complete_err(&p, &req).await),
        ("context-too-long", false, None)
    );

    mock.push_fault_on(
        Route::Chat,
        Fault::Error(HttpError::new(400).message("temperature: must be <= 1")),
    );
    assert_eq!(
        guest_error(&complete_err(&p, &req).await),
        ("invalid-request", false, None)
    );

    mock.push_fault_on(Route::Chat, Fault::MalformedJson);
    assert_eq!(
        guest_error(&complete_err(&p, &req).await).0,
        "provider-error"
    );
    assert_eq!(p.pool_stats().retired, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_named_events_with_pings_into_deltas_and_final_usage() {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let p = anthropic(&mock, &[]).await;
    let (chunks, err) = drain(
        &p,
        &CompletionRequest::prompt(MODEL, "streamed word by word"),
    )
    .await;
    assert!(err.is_none(), "{err:?}");
    let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(text, "streamed word by word");
    assert!(chunks.len() >= 5, "{chunks:?}");
    let last = chunks.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    let usage = last.usage.expect("usage");
    assert_eq!((usage.input_tokens, usage.output_tokens), (4, 4));
    assert!(chunks
        .iter()
        .all(|c| c.id.starts_with("msg_mock_") && c.model == MODEL));
    assert_eq!(mock.last_request().unwrap().json()["stream"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tool_use_becomes_indexed_tool_call_deltas() {
    let mock = MockUpstream::start().await;
    let p = anthropic(&mock, &[]).await;
    let mut req = CompletionRequest::prompt(MODEL, "weather in Oslo and Rome?");
    req.tools = vec![weather_tool()];
    mock.push_faults(
        Route::Chat,
        vec![
            Fault::Reply("Checking.".into()),
            Fault::ToolCalls(tool_calls()),
        ],
    );
    let (chunks, err) = drain(&p, &req).await;
    assert!(err.is_none(), "{err:?}");
    let deltas: Vec<_> = chunks
        .iter()
        .flat_map(|c| c.tool_call_deltas.clone())
        .collect();
    // Content block 1 and 2 (after the text block 0) are tool calls 0 and 1.
    let calls = assemble_tool_calls(&deltas);
    assert!(
        deltas.iter().filter(|d| d.index == 0).count() > 3,
        "fragments: {deltas:?}"
    );
    assert_eq!(
        (calls[0].id.as_str(), calls[0].name.as_str()),
        ("toolu_a", "get_weather")
    );
    assert_eq!(calls[0].arguments, r#"{"city":"Oslo","unit":"celsius"}"#);
    assert_eq!(calls[1].arguments, r#"{"city":"Rome"}"#);
    let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(text, "Checking.");
    assert_eq!(
        chunks.last().unwrap().finish_reason,
        Some(FinishReason::ToolCalls)
    );
    let body = mock.last_request().unwrap().json();
    assert_eq!(body["tools"][0]["name"], "get_weather");
    assert_eq!(
        body["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_returns_tool_use_whole_and_over_a_stream() {
    let mock = MockUpstream::start().await;
    let mut req = CompletionRequest::prompt(MODEL, "weather?");
    req.tools = vec![weather_tool()];
    for via_stream in ["false", "true"] {
        let p = anthropic(&mock, &[("complete_via_stream", via_stream)]).await;
        mock.push_fault_on(Route::Chat, Fault::ToolCalls(tool_calls()));
        let resp = p.complete(&req).await.expect("answer");
        assert_eq!(
            resp.finish_reason,
            FinishReason::ToolCalls,
            "via stream: {via_stream}"
        );
        assert_eq!(resp.content, "");
        assert_eq!(resp.tool_calls.len(), 2);
        assert_eq!(resp.tool_calls[1].id, "toolu_b");
        let args: serde_json::Value = serde_json::from_str(&resp.tool_calls[0].arguments).unwrap();
        assert_eq!(args, json!({"city": "Oslo", "unit": "celsius"}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_results_go_back_as_tool_result_blocks() {
    let mock = MockUpstream::start().await;
    let p = anthropic(&mock, &[]).await;
    let mut req = CompletionRequest::prompt(MODEL, "weather in Oslo and Rome?");
    req.messages.push(Message {
        role: Role::Assistant,
        content: "Checking.".into(),
        name: None,
        tool_call_id: None,
        tool_calls: vec![
            ToolCall {
                id: "toolu_a".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Oslo"}"#.into(),
            },
            ToolCall {
                id: "toolu_b".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Rome"}"#.into(),
            },
        ],
    });
    for (id, out) in [("toolu_a", "sunny"), ("toolu_b", "rain")] {
        req.messages.push(Message {
            role: Role::Tool,
            content: out.into(),
            name: None,
            tool_call_id: Some(id.into()),
            tool_calls: vec![],
        });
    }
    let resp = p.complete(&req).await.expect("answer");
    assert_eq!(
        resp.content, "sunny rain",
        "the mock echoes the tool results"
    );
    let body = mock.last_request().unwrap().json();
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "both results in one user turn: {msgs:?}");
    assert_eq!(
        msgs[1]["content"][1],
        json!({"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Oslo"}})
    );
    assert_eq!(msgs[2]["role"], "user");
    assert_eq!(
        msgs[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"})
    );
    assert_eq!(msgs[2]["content"][1]["tool_use_id"], "toolu_b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_faults_are_errors() {
    let mock = MockUpstream::start().await;
    let p = anthropic(&mock, &[]).await;
    let req = CompletionRequest::prompt(MODEL, "a b c d e f");

    // Cut before message_stop (here: after a few deltas): never a silent success.
    mock.push_fault_on(Route::Chat, Fault::CutStream { after_events: 6 });
    let (chunks, err) = drain(&p, &req).await;
    let err = err.expect("fails");
    assert_eq!(guest_error(&err), ("provider-error", false, None));
    assert!(err.message.contains("message_stop"), "{}", err.message);
    assert!(!chunks.is_empty() && chunks.iter().all(|c| c.finish_reason.is_none()));

    // An `error` event mid-stream.
    mock.push_fault_on(
        Route::Chat,
        Fault::ErrorEvent {
            after_events: 5,
            kind: "overloaded_error".into(),
            message: "Overloaded".into(),
        },
    );
    let (_, err) = drain(&p, &req).await;
    let err = err.expect("fails");
    assert_eq!(guest_error(&err), ("service-unavailable", true, None));
    assert!(err.message.contains("Overloaded"));

    mock.push_fault_on(Route::Chat, Fault::MalformedJson);
    let (_, err) = drain(&p, &req).await;
    assert_eq!(guest_error(&err.expect("fails")).0, "provider-error");

    mock.push_fault_on(Route::Chat, Fault::AbortStream { after_events: 4 });
    let (_, err) = drain(&p, &req).await;
    let (code, retryable, _) = guest_error(&err.expect("fails"));
    assert_eq!((code, retryable), ("network-error", true));

    mock.push_fault_on(Route::Chat, Fault::Error(HttpError::new(529)));
    let err = p.stream(&req).await.err().expect("refused");
    assert_eq!(guest_error(&err), ("service-unavailable", true, None));

    // Slow chunks are fine.
    mock.push_fault_on(Route::Chat, Fault::DelayChunks(Duration::from_millis(20)));
    let (chunks, err) = drain(&p, &req).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        chunks.iter().map(|c| c.delta.as_str()).collect::<String>(),
        "a b c d e f"
    );
    assert_eq!(p.pool_stats().retired, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_maps_to_length() {
    let mock = MockUpstream::start().await;
    let p = anthropic(&mock, &[]).await;
    let mut req = CompletionRequest::prompt(MODEL, "one two three four five");
    req.max_tokens = Some(3);
    let resp = p.complete(&req).await.expect("answer");
    assert_eq!(
        (resp.content.as_str(), resp.finish_reason),
        ("one two three", FinishReason::Length)
    );
    assert_eq!(mock.last_request().unwrap().json()["max_tokens"], 3);
    let (chunks, _) = drain(&p, &req).await;
    assert_eq!(
        chunks.last().unwrap().finish_reason,
        Some(FinishReason::Length)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_models_and_health_use_get_models() {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    mock.set_models(["claude-mock", "claude-mock-haiku"]);
    let p = anthropic(&mock, &[]).await;
    let models = p.list_models().await.expect("models");
    let got: Vec<(&str, &str)> = models
        .iter()
        .map(|m| (m.id.as_str(), m.name.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("claude-mock", "Claude Mock"),
            ("claude-mock-haiku", "Claude Mock Haiku")
        ]
    );
    let sent = mock.last_request().unwrap();
    assert_eq!(sent.method, "GET");
    assert!(sent.path.starts_with("/v1/models"), "{}", sent.path);
    assert_eq!(sent.header("x-api-key"), Some(KEY));

    let check = || p.health_check(Duration::from_secs(10));
    assert_eq!(check().await.unwrap().status, HealthStatus::Healthy);
    mock.push_fault_on(Route::Models, Fault::Error(HttpError::new(529)));
    assert_eq!(check().await.unwrap().status, HealthStatus::Degraded);
    mock.push_fault_on(Route::Models, Fault::Error(HttpError::new(500)));
    assert_eq!(check().await.unwrap().status, HealthStatus::Unhealthy);
    assert!(
        mock.requests().iter().all(|r| r.method == "GET"),
        "no tokens spent"
    );
}
