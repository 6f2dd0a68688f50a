//! The OpenAI-compatible providers in JavaScript (`js_openai`) and Python
//! (`py_openai`) against the mock upstream, through the real sandbox and its
//! egress policy: the same suite for both (`openai_suite!`).
//!
//! Every request leaves the guest with `Authorization: Bearer {{secret:NAME}}`;
//! the host substitutes the secret, and the mock only accepts the real key, so a
//! passing test proves the key never had to be inside the guest.

use std::collections::BTreeMap;
use std::time::Duration;

use tamma_e2e::{collect, instantiate_loaded};
use tamma_mock_upstream::{Fault, HttpError, MockToolCall, MockUpstream, Route, DEFAULT_MODELS};
use tamma_registry::{Error, ErrorCode, Limits, ProviderInstance, ProviderSettings};
use tamma_sandbox::egress::EgressPolicy;
use tamma_sandbox::types::{CompletionRequest, FinishReason, HealthStatus};

const KEY: &str = "sk-test-contract";

/// A mock that wants `KEY`, and the provider `name` granted exactly that mock,
/// with the secret under `secret_name` (config `api_key_secret` when not the
/// default).
async fn setup_with(name: &str, secret_name: &str) -> (MockUpstream, ProviderInstance) {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let mut config = vec![("base_url".to_string(), mock.base_url())];
    if secret_name != "api_key" {
        config.push(("api_key_secret".into(), secret_name.into()));
    }
    let secrets = BTreeMap::from([(secret_name.to_string(), KEY.to_string())]);
    let settings = ProviderSettings {
        config,
        limits: Limits::default(),
        egress: EgressPolicy::new(vec![mock.url()], secrets),
    };
    let p = instantiate_loaded(name, settings)
        .await
        .unwrap_or_else(|e| panic!("{name} instantiates: {e}"));
    (mock, p)
}

async fn setup(name: &str) -> (MockUpstream, ProviderInstance) {
    setup_with(name, "api_key").await
}

fn prompt(text: &str) -> CompletionRequest {
    CompletionRequest::prompt("gpt-mock", text)
}

fn provider_code(err: &Error) -> &str {
    assert_eq!(err.code, ErrorCode::ProviderError, "{err}");
    err.provider_error
        .as_ref()
        .expect("carries the guest's error")
        .code
        .as_str()
}

// ---------------------------------------------------------------------------

async fn completes_with_the_secret_added_by_the_host(name: &str) {
    let (mock, p) = setup(name).await;
    let resp = p
        .complete(&prompt("hello mock world"))
        .await
        .expect("answer");
    assert_eq!(resp.content, "hello mock world");
    assert_eq!(resp.finish_reason, FinishReason::Stop);
    assert_eq!(resp.model, "gpt-mock");
    assert_eq!((resp.usage.input_tokens, resp.usage.output_tokens), (3, 3));
    let req = mock.last_request().expect("the mock was called");
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let body = req.json();
    assert_eq!(body["model"], "gpt-mock");
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(body["messages"][0]["content"], "hello mock world");
    assert!(body.get("stream").is_none(), "{body}");
}

async fn secret_name_is_configurable(name: &str) {
    let (mock, p) = setup_with(name, "openai_key").await;
    assert_eq!(
        p.complete(&prompt("hi")).await.expect("answer").content,
        "hi"
    );
    assert_eq!(
        mock.last_request().unwrap().header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

async fn streams_server_sent_events(name: &str) {
    let (mock, p) = setup(name).await;
    let chunks = collect(&p, &prompt("stream these four words"))
        .await
        .expect("stream");
    assert!(chunks.len() >= 4, "{chunks:?}");
    let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(text, "stream these four words");
    let last = chunks.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    let usage = last
        .usage
        .expect("usage (include_usage) merged into the last chunk");
    assert_eq!((usage.input_tokens, usage.output_tokens), (4, 4));
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c.finish_reason.is_none()));
    let body = mock.last_request().unwrap().json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(p.pool_stats().retired, 0);
}

async fn max_tokens_ends_with_length(name: &str) {
    let (mock, p) = setup(name).await;
    let mut req = prompt("one two three four five");
    req.max_tokens = Some(2);
    let resp = p.complete(&req).await.expect("answer");
    assert_eq!(resp.content, "one two");
    assert_eq!(resp.finish_reason, FinishReason::Length);
    assert_eq!(mock.last_request().unwrap().json()["max_tokens"], 2);
    let chunks = collect(&p, &req).await.expect("stream");
    assert_eq!(
        chunks.last().unwrap().finish_reason,
        Some(FinishReason::Length)
    );
}

async fn tool_calls_complete_and_stream(name: &str) {
    let (mock, p) = setup(name).await;
    let call = || MockToolCall::new("call_1", "get_weather", r#"{"city":"Paris"}"#);
    mock.push_fault_on(Route::Chat, Fault::ToolCalls(vec![call()]));
    let resp = p.complete(&prompt("weather?")).await.expect("answer");
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
    assert_eq!(resp.tool_calls.len(), 1);
    assert_eq!(resp.tool_calls[0].name, "get_weather");
    assert_eq!(resp.tool_calls[0].arguments, r#"{"city":"Paris"}"#);

    mock.push_fault_on(Route::Chat, Fault::ToolCalls(vec![call()]));
    let chunks = collect(&p, &prompt("weather?")).await.expect("stream");
    let deltas: Vec<_> = chunks
        .iter()
        .flat_map(|c| c.tool_call_deltas.clone())
        .collect();
    assert!(!deltas.is_empty(), "{chunks:?}");
    assert_eq!(deltas[0].id.as_deref(), Some("call_1"));
    assert_eq!(deltas[0].name.as_deref(), Some("get_weather"));
    let args: String = deltas.iter().map(|d| d.arguments_delta.as_str()).collect();
    assert_eq!(args, r#"{"city":"Paris"}"#);
    assert_eq!(
        chunks.last().unwrap().finish_reason,
        Some(FinishReason::ToolCalls)
    );
}

async fn lists_models_from_the_upstream(name: &str) {
    let (mock, p) = setup(name).await;
    let ids: Vec<String> = p
        .list_models()
        .await
        .expect("models")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, DEFAULT_MODELS);
    let req = mock.last_request().unwrap();
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("GET", "/v1/models")
    );
}

async fn health_check_spends_no_tokens(name: &str) {
    let (mock, p) = setup(name).await;
    let health = p
        .health_check(Duration::from_secs(10))
        .await
        .expect("health");
    assert_eq!(health.status, HealthStatus::Healthy, "{}", health.message);
    // A refused key makes it unhealthy; an overloaded upstream degraded.
    mock.push_fault_on(Route::Models, Fault::Error(HttpError::new(401)));
    let health = p
        .health_check(Duration::from_secs(10))
        .await
        .expect("health");
    assert_eq!(health.status, HealthStatus::Unhealthy, "{}", health.message);
    mock.push_fault_on(Route::Models, Fault::Error(HttpError::new(503)));
    let health = p
        .health_check(Duration::from_secs(10))
        .await
        .expect("health");
    assert_eq!(health.status, HealthStatus::Degraded, "{}", health.message);
    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests
        .iter()
        .all(|r| r.method == "GET" && r.path == "/v1/models"));
}

async fn upstream_errors_map_to_provider_error_codes(name: &str) {
    let (mock, p) = setup(name).await;
    let cases = [
        (HttpError::new(401), "invalid-api-key", false),
        (
            HttpError::new(429).retry_after_ms("1500"),
            "rate-limit-exceeded",
            true,
        ),
        (
            HttpError::new(429).code("insufficient_quota"),
            "quota-exceeded",
            false,
        ),
        (
            HttpError::new(400).code("context_length_exceeded"),
            "context-too-long",
            false,
        ),
        (HttpError::new(400), "invalid-request", false),
        (HttpError::new(503), "service-unavailable", true),
    ];
    for (fault, code, retryable) in cases {
        mock.push_fault_on(Route::Chat, Fault::Error(fault.clone()));
        let err = p.complete(&prompt("hi")).await.expect_err("upstream error");
        assert_eq!(provider_code(&err), code, "{fault:?}: {err}");
        let pe = err.provider_error.as_ref().unwrap();
        assert_eq!(pe.retryable, retryable, "{fault:?}: {err}");
        if fault.retry_after_ms.is_some() {
            assert_eq!(pe.retry_after_ms, Some(1500), "{err}");
        }
        assert!(!pe.message.contains(KEY));
    }
    // An unknown model (the mock's 404).
    let err = p
        .complete(&CompletionRequest::prompt("no-such-model", "hi"))
        .await
        .unwrap_err();
    assert_eq!(provider_code(&err), "model-not-found", "{err}");
    // The same mapping when a stream is refused before its first chunk.
    mock.push_fault_on(Route::Chat, Fault::Error(HttpError::new(429)));
    let err = p.stream(&prompt("hi")).await.err().expect("stream refused");
    assert_eq!(provider_code(&err), "rate-limit-exceeded", "{err}");
    // Provider errors do not cost instances.
    assert_eq!(p.pool_stats().retired, 0);
}

async fn stream_failures_part_way_are_errors(name: &str) {
    let (mock, p) = setup(name).await;
    // An in-band error event.
    mock.push_fault_on(
        Route::Chat,
        Fault::ErrorEvent {
            after_events: 2,
            kind: "server_error".into(),
            message: "upstream fell over".into(),
        },
    );
    let err = collect(&p, &prompt("a b c d e f"))
        .await
        .expect_err("error event");
    assert_eq!(err.code, ErrorCode::ProviderError, "{err}");
    assert!(err.to_string().contains("upstream fell over"), "{err}");
    // A clean end of the body before `[DONE]` and the finish reason.
    mock.push_fault_on(Route::Chat, Fault::CutStream { after_events: 2 });
    let err = collect(&p, &prompt("a b c d e f"))
        .await
        .expect_err("cut stream");
    assert_eq!(provider_code(&err), "network-error", "{err}");
    // Malformed JSON.
    mock.push_fault_on(Route::Chat, Fault::MalformedJson);
    let err = p.complete(&prompt("hi")).await.expect_err("bad JSON");
    assert_eq!(provider_code(&err), "provider-error", "{err}");
    // Still serving.
    assert_eq!(p.complete(&prompt("fine")).await.unwrap().content, "fine");
}

async fn ungranted_host_is_a_network_error(name: &str) {
    // Granted nothing: the egress policy refuses before any connection.
    let mock = MockUpstream::start().await;
    let settings = ProviderSettings::new(
        vec![("base_url".into(), mock.base_url())],
        Limits::default(),
    );
    let p = instantiate_loaded(name, settings)
        .await
        .expect("instantiates");
    let err = p.list_models().await.expect_err("refused");
    assert_eq!(provider_code(&err), "network-error", "{err}");
    assert!(err.provider_error.as_ref().unwrap().retryable);
    assert!(mock.requests().is_empty());
    let health = p
        .health_check(Duration::from_secs(10))
        .await
        .expect("health");
    assert_eq!(health.status, HealthStatus::Unhealthy);
}

macro_rules! openai_suite {
    ($($module:ident => $guest:literal),* $(,)?) => {$(
        mod $module {
            const GUEST: &str = $guest;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn completes_with_the_secret_added_by_the_host() {
                super::completes_with_the_secret_added_by_the_host(GUEST).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn secret_name_is_configurable() { super::secret_name_is_configurable(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn streams_server_sent_events() { super::streams_server_sent_events(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn max_tokens_ends_with_length() { super::max_tokens_ends_with_length(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tool_calls_complete_and_stream() { super::tool_calls_complete_and_stream(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lists_models_from_the_upstream() { super::lists_models_from_the_upstream(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn health_check_spends_no_tokens() { super::health_check_spends_no_tokens(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn upstream_errors_map_to_provider_error_codes() {
                super::upstream_errors_map_to_provider_error_codes(GUEST).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stream_failures_part_way_are_errors() {
                super::stream_failures_part_way_are_errors(GUEST).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ungranted_host_is_a_network_error() {
                super::ungranted_host_is_a_network_error(GUEST).await
            }
        }
    )*};
}

openai_suite! {
    js_openai => "js_openai",
    py_openai => "py_openai",
}

/// A POST whose request fails below HTTP (refused by the egress policy, or the
/// connection refused) must be a retryable `network-error`, not a trap.
async fn failed_post_is_a_network_error(name: &str) {
    for (grant, why) in [
        (vec![], "not granted"),
        (vec!["http://127.0.0.1:9".to_string()], "nothing listens"),
    ] {
        let settings = ProviderSettings {
            config: vec![("base_url".into(), "http://127.0.0.1:9/v1".into())],
            limits: Limits::default(),
            egress: EgressPolicy::new(grant, BTreeMap::new()),
        };
        let p = instantiate_loaded(name, settings).await.unwrap();
        let err = p.complete(&prompt("hi")).await.expect_err(why);
        assert_eq!(provider_code(&err), "network-error", "{why}: {err}");
        assert_eq!(p.pool_stats().retired, 0, "{why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_openai_failed_post_is_a_network_error() {
    failed_post_is_a_network_error("py_openai").await
}

// componentize-js (StarlingMonkey) aborts if the host drops a request body while
// it is still writing it; the egress hook now drains such bodies (DrainOnDrop),
// so a refused or failed POST is a `network-error` like in every other language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_openai_failed_post_is_a_network_error() {
    failed_post_is_a_network_error("js_openai").await
}
