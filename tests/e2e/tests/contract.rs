//! One provider contract, three languages: the same suite runs against the Rust
//! (`echo`), JavaScript (`js_echo`, componentize-js) and Python (`py_echo`,
//! componentize-py) echo providers, through the real sandbox.
//!
//! `contract_suite!` expands the suite into one module per component, so a
//! failure names the language (`contract::js_echo::streams_word_by_word`).
//!
//! The sandbox-limit cases use the echo providers' own misbehaviour (request
//! metadata `spin`="1" loops forever, `grow`="1" allocates without bound) for the
//! JavaScript and Python guests; the Rust echo does not misbehave, so its row uses
//! the adversarial Rust guests `adversarial_loop` / `adversarial_memory`.
//!
//! The JavaScript and Python components are 13–19 MB and take ~15 s each to
//! compile: every test of a process shares one `LoadedComponent` per guest, and
//! the compile cache (target/test-compile-cache) is shared between processes.

use std::time::Duration;

use tamma_e2e::{guest_error, instantiate_loaded};
use tamma_registry::{ErrorCode, Limits, ProviderInstance, ProviderSettings};
use tamma_sandbox::types::{
    CompletionRequest, EmbeddingRequest, FinishReason, HealthStatus, Message, Role,
};

async fn provider_with(
    name: &str,
    config: Vec<(String, String)>,
    limits: Limits,
) -> ProviderInstance {
    instantiate_loaded(name, ProviderSettings::new(config, limits))
        .await
        .unwrap_or_else(|e| panic!("{name} instantiates: {e}"))
}

async fn provider(name: &str) -> ProviderInstance {
    provider_with(name, vec![], Limits::default()).await
}

fn prompt(text: &str) -> CompletionRequest {
    CompletionRequest::prompt("echo-1", text)
}

// ---------------------------------------------------------------------------
// The contract

async fn completes_with_word_usage(name: &str) {
    let p = provider(name).await;
    let mut req = prompt("hello sandbox world");
    req.messages
        .insert(0, Message::new(Role::System, "be brief"));
    let resp = p.complete(&req).await.expect("answer");
    assert_eq!(resp.content, "hello sandbox world");
    assert_eq!(resp.finish_reason, FinishReason::Stop);
    assert_eq!(resp.model, "echo-1");
    assert!(!resp.id.is_empty());
    assert_eq!(resp.usage.input_tokens, 5, "words across all messages");
    assert_eq!(resp.usage.output_tokens, 3);
    assert_eq!(resp.usage.total_tokens, 8);
    assert!(resp.tool_calls.is_empty());
    // The last *user* message is answered, not the last message.
    let mut req = prompt("first question");
    req.messages
        .push(Message::new(Role::Assistant, "an earlier answer"));
    assert_eq!(p.complete(&req).await.unwrap().content, "first question");
}

async fn streams_word_by_word(name: &str) {
    let p = provider(name).await;
    let mut stream = p
        .stream(&prompt("streamed word by word"))
        .await
        .expect("stream starts");
    let mut chunks = Vec::new();
    while let Some(c) = stream.next().await.expect("chunk") {
        chunks.push(c);
    }
    assert_eq!(chunks.len(), 4, "{chunks:?}");
    let deltas: Vec<&str> = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(deltas, ["streamed", " word", " by", " word"]);
    let last = chunks.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    let usage = last.usage.expect("usage on the last chunk");
    assert_eq!((usage.input_tokens, usage.output_tokens), (4, 4));
    assert!(chunks[..3]
        .iter()
        .all(|c| c.finish_reason.is_none() && c.usage.is_none()));
    assert!(chunks
        .iter()
        .all(|c| c.id == chunks[0].id && c.model == "echo-1"));
    // A finished stream returns its instance to the pool.
    let stats = p.pool_stats();
    assert_eq!((stats.retired, stats.in_use), (0, 0), "{stats:?}");
}

async fn max_tokens_ends_with_length(name: &str) {
    let p = provider(name).await;
    let mut req = prompt("one two three four five");
    req.max_tokens = Some(2);
    let resp = p.complete(&req).await.expect("answer");
    assert_eq!(resp.content, "one two");
    assert_eq!(resp.finish_reason, FinishReason::Length);
    assert_eq!(resp.usage.output_tokens, 2);
    // The same when streamed.
    let mut stream = p.stream(&req).await.expect("stream");
    let mut text = String::new();
    let mut finish = None;
    while let Some(c) = stream.next().await.expect("chunk") {
        text.push_str(&c.delta);
        finish = finish.or(c.finish_reason);
    }
    assert_eq!(text, "one two");
    assert_eq!(finish, Some(FinishReason::Length));
    // Under the limit: a natural stop.
    req.max_tokens = Some(10);
    assert_eq!(
        p.complete(&req).await.unwrap().finish_reason,
        FinishReason::Stop
    );
}

async fn lists_models_and_capabilities(name: &str) {
    let p = provider(name).await;
    let caps = p.capabilities().clone();
    assert!(caps.supports_streaming);
    assert!(!caps.supports_tools && !caps.supports_images);
    assert_eq!(caps.features, ["deterministic"]);
    assert_eq!(caps.models.len(), 1);
    assert_eq!(caps.models[0].id, "echo-1");
    assert_eq!(caps.models[0].context_window, 8192);
    assert_eq!(caps.max_context_tokens, 8192);
    let models = p.list_models().await.expect("models");
    assert_eq!(models, caps.models);
}

/// The echo providers' toy embedding, computed here independently (in f64): the
/// FNV-1a hash of the text's bytes and the little-endian component index, the top
/// 24 bits scaled to [-1, 1], then normalised.
fn reference_embedding(text: &str, dimensions: u32) -> Vec<f64> {
    let raw: Vec<f64> = (0..dimensions)
        .map(|i| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in text.bytes().chain(i.to_le_bytes()) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            (h >> 40) as f64 / f64::from(1u32 << 24) * 2.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    raw.into_iter().map(|x| x / norm).collect()
}

async fn embeds_with_embedding_models_listed_apart(name: &str) {
    let p = provider(name).await;
    let caps = p.capabilities().clone();
    assert!(caps.embeddings, "{name} exports tamma:provider/embeddings");
    assert_eq!(caps.embedding_models.len(), 1);
    let m = &caps.embedding_models[0];
    assert_eq!((m.id.as_str(), m.dimensions), ("echo-embed-1", 8));
    assert!(
        caps.models.iter().all(|c| c.id != m.id),
        "embedding models are not chat models"
    );
    let req = EmbeddingRequest {
        model: "echo-embed-1".into(),
        inputs: vec![
            "hello world".into(),
            "something else entirely".into(),
            "hello world".into(),
        ],
        ..Default::default()
    };
    let r = p.embed(&req).await.expect("embeds");
    assert_eq!(r.model, "echo-embed-1");
    assert_eq!(r.vectors.len(), 3, "one vector per input");
    assert_eq!(r.usage.input_tokens, 7, "words across all inputs");
    assert_eq!(r.vectors[0], r.vectors[2], "deterministic");
    assert_ne!(r.vectors[0], r.vectors[1]);
    // The same vectors in every language.
    for (v, text) in r.vectors.iter().zip(&req.inputs) {
        let want = reference_embedding(text, 8);
        assert_eq!(v.len(), 8);
        for (got, want) in v.iter().zip(&want) {
            assert!(
                (f64::from(*got) - want).abs() < 1e-5,
                "{name}: {v:?} vs {want:?}"
            );
        }
    }
    let short = EmbeddingRequest {
        dimensions: Some(3),
        ..req.clone()
    };
    let r = p.embed(&short).await.expect("embeds");
    assert!(r.vectors.iter().all(|v| v.len() == 3));
    let zero = EmbeddingRequest {
        dimensions: Some(0),
        ..req
    };
    let e = p.embed(&zero).await.expect_err("refused");
    assert_eq!(guest_error(&e).0, "invalid-request");
    // A refused request does not cost the instance.
    assert_eq!(p.pool_stats().retired, 0);
}

async fn reports_healthy(name: &str) {
    let p = provider(name).await;
    let health = p
        .health_check(Duration::from_secs(10))
        .await
        .expect("health");
    assert_eq!(health.status, HealthStatus::Healthy);
    assert!(!health.message.is_empty());
}

async fn config_is_passed_to_initialize(name: &str) {
    let p = provider_with(
        name,
        vec![("prefix".into(), "v2: ".into())],
        Limits::default(),
    )
    .await;
    let resp = p.complete(&prompt("hi")).await.expect("answer");
    assert_eq!(resp.content, "v2: hi");
}

async fn empty_conversation_is_an_invalid_request(name: &str) {
    let p = provider(name).await;
    let req = CompletionRequest {
        model: "echo-1".into(),
        ..Default::default()
    };
    for err in [
        p.complete(&req).await.unwrap_err(),
        p.stream(&req).await.err().expect("stream refuses too"),
    ] {
        assert_eq!(err.code, ErrorCode::ProviderError, "{err}");
        let pe = err
            .provider_error
            .as_ref()
            .expect("carries the guest's error");
        assert_eq!(pe.code.as_str(), "invalid-request", "{err}");
        assert!(pe.message.contains("no user message"), "{err}");
        assert!(!pe.retryable);
        assert_eq!(err.provider.as_deref(), Some(name));
    }
    // A provider error is not a trap: the instance is kept and keeps answering.
    assert_eq!(
        p.complete(&prompt("still fine")).await.unwrap().content,
        "still fine"
    );
    assert_eq!(p.pool_stats().retired, 0);
}

// Sandbox limits. Each case first shows that a normal call fits the same limits,
// then that the attack is stopped with the expected code, the instance retired,
// and a fresh instance answers again.

/// The component and request that attack the sandbox for `name`'s row.
fn attacker(name: &str, attack: &str) -> (String, CompletionRequest) {
    match name {
        // The Rust echo does not misbehave; its row uses the adversarial guests.
        "echo" => (
            match attack {
                "spin" => "adversarial_loop",
                _ => "adversarial_memory",
            }
            .to_string(),
            prompt("attack"),
        ),
        _ => (
            name.to_string(),
            prompt("attack").with_metadata(attack, "1"),
        ),
    }
}

async fn expect_stopped(name: &str, attack: &str, limits: Limits, code: ErrorCode) {
    let (target, attack_req) = attacker(name, attack);
    if target == name {
        // The limits leave room for an ordinary call of this runtime.
        let p = provider_with(name, vec![], limits.clone()).await;
        assert_eq!(p.complete(&prompt("fits")).await.unwrap().content, "fits");
    }
    let p = provider_with(&target, vec![], limits).await;
    let err = p
        .complete(&attack_req)
        .await
        .expect_err("the attack is stopped");
    assert_eq!(err.code, code, "{err}");
    assert_eq!(err.provider.as_deref(), Some(target.as_str()));
    let stats = p.pool_stats();
    assert_eq!((stats.retired, stats.in_use), (1, 0), "{stats:?}");
    if target == name {
        // A fresh instance replaces the retired one.
        assert_eq!(p.complete(&prompt("again")).await.unwrap().content, "again");
    }
}

async fn spin_exhausts_fuel(name: &str) {
    // 100M fuel: an echo call of the JS/Python runtimes burns well under 10M.
    let limits = Limits {
        fuel: 100_000_000,
        ..Limits::default()
    };
    expect_stopped(name, "spin", limits, ErrorCode::FuelExhausted).await;
}

async fn spin_with_ample_fuel_times_out(name: &str) {
    let limits = Limits {
        fuel: tamma_sandbox::limits::MAX_FUEL,
        timeout_ms: 500,
        ..Limits::default()
    };
    expect_stopped(name, "spin", limits, ErrorCode::Timeout).await;
}

async fn grow_hits_the_memory_cap(name: &str) {
    // 64 MiB: above the JS and Python runtimes' baseline (they answer under 16 MiB).
    let limits = Limits {
        memory_mib: 64,
        ..Limits::default()
    };
    expect_stopped(name, "grow", limits, ErrorCode::MemoryLimit).await;
}

macro_rules! contract_suite {
    ($($module:ident => $guest:literal),* $(,)?) => {$(
        mod $module {
            const GUEST: &str = $guest;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn completes_with_word_usage() { super::completes_with_word_usage(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn streams_word_by_word() { super::streams_word_by_word(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn max_tokens_ends_with_length() { super::max_tokens_ends_with_length(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lists_models_and_capabilities() { super::lists_models_and_capabilities(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reports_healthy() { super::reports_healthy(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embeds_with_embedding_models_listed_apart() {
                super::embeds_with_embedding_models_listed_apart(GUEST).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn config_is_passed_to_initialize() { super::config_is_passed_to_initialize(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn empty_conversation_is_an_invalid_request() {
                super::empty_conversation_is_an_invalid_request(GUEST).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn spin_exhausts_fuel() { super::spin_exhausts_fuel(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn spin_with_ample_fuel_times_out() { super::spin_with_ample_fuel_times_out(GUEST).await }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn grow_hits_the_memory_cap() { super::grow_hits_the_memory_cap(GUEST).await }
        }
    )*};
}

contract_suite! {
    rust_echo => "echo",
    js_echo => "js_echo",
    py_echo => "py_echo",
}
