//! The echo provider and the guest SDK's defaults, through the real sandbox.

use std::time::Duration;

use tamma_e2e::{guest, sandbox};
use tamma_registry::{Limits, ProviderInstance};
use tamma_sandbox::types::{CompletionRequest, FinishReason, HealthStatus, Message, Role};

async fn load(name: &str, config: Vec<(String, String)>) -> ProviderInstance {
    let sb = sandbox();
    let loaded = sb.load_file(&guest(name)).expect("loads");
    sb.instantiate(name, &loaded, config, Limits::default())
        .await
        .expect("instantiates")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_completes_with_word_usage() {
    let echo = load("echo", vec![]).await;
    let mut req = CompletionRequest::prompt("echo-1", "hello sandbox world");
    req.messages
        .insert(0, Message::new(Role::System, "be brief"));
    let resp = echo.complete(&req).await.expect("answer");
    assert_eq!(resp.content, "hello sandbox world");
    assert_eq!(resp.finish_reason, FinishReason::Stop);
    assert_eq!(resp.usage.input_tokens, 5, "words across all messages");
    assert_eq!(resp.usage.output_tokens, 3);
    assert_eq!(resp.usage.total_tokens, 8);
    assert_eq!(resp.model, "echo-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_honours_max_tokens() {
    let echo = load("echo", vec![]).await;
    let mut req = CompletionRequest::prompt("echo-1", "one two three four five");
    req.max_tokens = Some(2);
    let resp = echo.complete(&req).await.expect("answer");
    assert_eq!(resp.content, "one two");
    assert_eq!(resp.finish_reason, FinishReason::Length);
    assert_eq!(resp.usage.output_tokens, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_streams_word_by_word() {
    let echo = load("echo", vec![]).await;
    let req = CompletionRequest::prompt("echo-1", "streamed word by word");
    let mut stream = echo.stream(&req).await.expect("stream starts");
    let mut chunks = Vec::new();
    while let Some(c) = stream.next().await.expect("chunk") {
        chunks.push(c);
    }
    assert_eq!(chunks.len(), 4, "{chunks:?}");
    let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(text, "streamed word by word");
    let last = chunks.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    assert_eq!(last.usage.map(|u| u.output_tokens), Some(4));
    assert!(chunks[..3].iter().all(|c| c.finish_reason.is_none()));
    // A finished stream returns its instance to the pool: nothing was retired.
    assert_eq!(echo.pool_stats().retired, 0);
    assert_eq!(echo.pool_stats().in_use, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_rejects_empty_conversation_with_a_provider_error() {
    let echo = load("echo", vec![]).await;
    let req = CompletionRequest {
        model: "echo-1".into(),
        ..Default::default()
    };
    let err = echo.complete(&req).await.unwrap_err();
    assert_eq!(err.code, tamma_registry::ErrorCode::ProviderError);
    let pe = err.provider_error.expect("carries the guest's error");
    assert_eq!(pe.code.as_str(), "invalid-request");
    assert!(!pe.retryable);
    assert_eq!(err.provider.as_deref(), Some("echo"));
    // A provider error is not a trap: the instance is reused.
    assert_eq!(echo.pool_stats().retired, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_capabilities_models_health_and_prefix_config() {
    let echo = load("echo", vec![("prefix".into(), "v2: ".into())]).await;
    let caps = echo.capabilities();
    assert!(caps.supports_streaming);
    assert_eq!(caps.models[0].id, "echo-1");
    let models = echo.list_models().await.expect("models");
    assert_eq!(models, caps.models);
    let health = echo
        .health_check(Duration::from_secs(5))
        .await
        .expect("health");
    assert_eq!(health.status, HealthStatus::Healthy);
    let resp = echo
        .complete(&CompletionRequest::prompt("echo-1", "hi"))
        .await
        .expect("answer");
    assert_eq!(resp.content, "v2: hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_defaults_stream_one_chunk_and_list_models_from_capabilities() {
    // test-provider implements only `complete`: `stream` and `list-models` come
    // from the SDK's defaults.
    let p = load("test_provider", vec![("models".into(), "a-1,b-2".into())]).await;
    let mut stream = p
        .stream(&CompletionRequest::prompt("a-1", "ping"))
        .await
        .expect("stream");
    let first = stream.next().await.expect("chunk").expect("one chunk");
    assert_eq!(first.delta, "ok:ping");
    assert_eq!(first.finish_reason, Some(FinishReason::Stop));
    assert!(first.usage.is_some());
    assert!(stream.next().await.expect("end").is_none());
    let ids: Vec<String> = p
        .list_models()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, ["a-1", "b-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_a_bounded_pool() {
    let sb = sandbox();
    let loaded = sb.load_file(&guest("echo")).unwrap();
    let limits = Limits {
        max_concurrency: 3,
        ..Limits::default()
    };
    let echo = sb
        .instantiate("echo", &loaded, vec![], limits)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let echo = echo.clone();
        tasks.push(tokio::spawn(async move {
            let text = format!("message number {i}");
            let r = echo
                .complete(&CompletionRequest::prompt("echo-1", &text))
                .await
                .unwrap();
            assert_eq!(r.content, text);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = echo.pool_stats();
    assert!(stats.created <= 3, "{stats:?}");
    assert_eq!(stats.in_use, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_default_embed_says_not_supported() {
    // `test_provider` keeps the SDK's defaults: it exports `embeddings` (every
    // SDK-built component does) but lists no embedding model and refuses.
    let p = load("test_provider", vec![]).await;
    assert!(p.capabilities().embeddings);
    assert!(p.capabilities().embedding_models.is_empty());
    let req = tamma_sandbox::types::EmbeddingRequest {
        model: "test-1".into(),
        inputs: vec!["x".into()],
        ..Default::default()
    };
    let e = p.embed(&req).await.expect_err("not supported");
    let (code, retryable, _) = tamma_e2e::guest_error(&e);
    assert_eq!(code, "invalid-request");
    assert!(!retryable);
    assert!(
        e.provider_error
            .as_ref()
            .unwrap()
            .message
            .contains("not supported"),
        "{e:?}"
    );
}
