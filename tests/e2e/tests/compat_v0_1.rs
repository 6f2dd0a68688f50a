//! Components built against `tamma:provider@0.1.0` keep working on a host whose
//! contract is 0.2.0. `tests/fixtures/echo-0.1.0.wasm` is the echo provider as
//! built before 0.2.0 existed (its exports are `provider-api@0.1.0`, its imports
//! `host@0.1.0` and `types@0.1.0`); it must register, complete and stream
//! unchanged, and answer embeddings with `UNSUPPORTED` without a guest call.

use tamma_e2e::{builtins, sandbox, workspace_root};
use tamma_registry::circuit_breaker::CircuitState;
use tamma_registry::{
    ComponentSource, ErrorCode, ProviderState, Registration, Registry, RegistryConfig,
};
use tamma_sandbox::types::{CompletionRequest, EmbeddingRequest, FinishReason};
use tamma_sandbox::ContractVersion;

fn fixture() -> std::path::PathBuf {
    workspace_root().join("tests/fixtures/echo-0.1.0.wasm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_is_detected_as_0_1_without_embeddings() {
    let loaded = sandbox()
        .load_file(&fixture())
        .expect("the 0.1.0 fixture loads");
    assert_eq!(loaded.contract_version(), ContractVersion::V0_1);
    assert!(!loaded.exports_embeddings());
    // Today's echo, by contrast, is a 0.2.0 component with embeddings.
    let current = tamma_e2e::loaded("echo");
    assert_eq!(current.contract_version(), ContractVersion::V0_2);
    assert!(current.exports_embeddings());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_registers_completes_and_streams() {
    let registry =
        Registry::with_builtins(sandbox(), RegistryConfig::default(), builtins()).unwrap();
    let snap = registry
        .register(
            "old-echo",
            Registration::new(ComponentSource::File(fixture())),
        )
        .await
        .expect("registers");
    assert_eq!(snap.state, ProviderState::Ready);
    assert_eq!(snap.metadata.contract_version, ContractVersion::V0_1);
    assert!(!snap.capabilities.embeddings);
    assert!(snap.capabilities.embedding_models.is_empty());
    assert_eq!(snap.capabilities.models[0].id, "echo-1");
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["metadata"]["contract_version"], "0.1.0");
    assert_eq!(json["capabilities"]["embeddings"], false);

    let h = registry.get("old-echo").unwrap();
    let resp = h
        .complete(&CompletionRequest::prompt(
            "echo-1",
            "still served unchanged",
        ))
        .await
        .expect("completes");
    assert_eq!(resp.content, "still served unchanged");
    assert_eq!(resp.finish_reason, FinishReason::Stop);
    assert_eq!(resp.usage.output_tokens, 3);

    let mut stream = h
        .stream(&CompletionRequest::prompt(
            "echo-1",
            "streamed word by word",
        ))
        .await
        .expect("stream starts");
    let mut text = String::new();
    let mut chunks = 0;
    let mut last = None;
    while let Some(c) = stream.next().await.expect("chunk") {
        text.push_str(&c.delta);
        chunks += 1;
        last = c.finish_reason;
    }
    assert_eq!(text, "streamed word by word");
    assert_eq!(chunks, 4);
    assert_eq!(last, Some(FinishReason::Stop));

    // Logging through the 0.1.0 `host` import works too (echo logs at debug on
    // every answer; a missing import would have failed instantiation above).
    let e = h
        .embed(&EmbeddingRequest {
            inputs: vec!["x".into()],
            ..EmbeddingRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unsupported);
    assert_eq!(e.provider.as_deref(), Some("old-echo"));
    let after = registry.get("old-echo").unwrap().snapshot();
    assert_eq!(
        after.circuit.state,
        CircuitState::Closed,
        "not the provider's failure"
    );
    assert_eq!(after.circuit.recent_failures, 0);
    assert_eq!(after.calls.failures, 0, "refused before any call");
    registry.shutdown().await;
}
