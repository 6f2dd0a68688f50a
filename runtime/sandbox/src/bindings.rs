//! Host bindings generated from the WIT, and conversions between the generated
//! types and the serde types of [`crate::types`].
//!
//! Two versions of the contract are bound: `wit/` (`tamma:provider@0.2.0`, the
//! current one) and `wit/compat/0.1.0/` (the first release, kept so components built
//! against it keep loading). Their interface names differ (`…/provider-api@0.1.0` vs
//! `@0.2.0`), and wasmtime treats 0.1 and 0.2 as incompatible tracks, so each version
//! needs its own export look-ups and its own `host` import. The *types* are the same:
//! the 0.1.0 bindings reuse the 0.2.0 `types` module (`with`), so one set of
//! conversions below serves both, and wasmtime's structural type check at
//! instantiation still verifies every 0.1.0 component against its own types.
//! Which exports a component has is decided in [`crate::exports`].

use crate::types as t;

/// `tamma:provider@0.2.0` (`wit/`).
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tamma:provider/provider",
        // `log` can trap (log-volume cap), so it returns `wasmtime::Result`.
        imports: { default: trappable },
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        },
    });
}

/// `tamma:provider@0.1.0` (`wit/compat/0.1.0/`), with the 0.2.0 data types.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/compat/0.1.0",
        world: "tamma:provider/provider",
        imports: { default: trappable },
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "tamma:provider/types@0.1.0": crate::bindings::v0_2::tamma::provider::types,
        },
    });
}

pub(crate) use v0_2::exports::tamma::provider::embeddings as wit_embeddings;
pub(crate) use v0_2::tamma::provider::host;
pub(crate) use v0_2::tamma::provider::types as wit;

// ---- host → guest ----

fn role(r: t::Role) -> wit::Role {
    match r {
        t::Role::System => wit::Role::System,
        t::Role::User => wit::Role::User,
        t::Role::Assistant => wit::Role::Assistant,
        t::Role::Tool => wit::Role::Tool,
    }
}

fn tool_call_in(c: &t::ToolCall) -> wit::ToolCall {
    wit::ToolCall {
        id: c.id.clone(),
        name: c.name.clone(),
        arguments: c.arguments.clone(),
    }
}

pub(crate) fn request(r: &t::CompletionRequest) -> wit::CompletionRequest {
    wit::CompletionRequest {
        model: r.model.clone(),
        messages: r
            .messages
            .iter()
            .map(|m| wit::Message {
                role: role(m.role),
                content: m.content.clone(),
                name: m.name.clone(),
                tool_call_id: m.tool_call_id.clone(),
                tool_calls: m.tool_calls.iter().map(tool_call_in).collect(),
            })
            .collect(),
        max_tokens: r.max_tokens,
        temperature: r.temperature,
        top_p: r.top_p,
        stop: r.stop.clone(),
        tools: r
            .tools
            .iter()
            .map(|d| wit::ToolDefinition {
                name: d.name.clone(),
                description: d.description.clone(),
                parameters_schema: d.parameters_schema.clone(),
            })
            .collect(),
        metadata: r.metadata.clone(),
    }
}

// ---- guest → host ----

fn finish(f: wit::FinishReason) -> t::FinishReason {
    match f {
        wit::FinishReason::Stop => t::FinishReason::Stop,
        wit::FinishReason::Length => t::FinishReason::Length,
        wit::FinishReason::ToolCalls => t::FinishReason::ToolCalls,
        wit::FinishReason::ContentFilter => t::FinishReason::ContentFilter,
        wit::FinishReason::Error => t::FinishReason::Error,
    }
}

fn usage(u: wit::Usage) -> t::Usage {
    t::Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        total_tokens: u.total_tokens,
        cache_read_tokens: u.cache_read_tokens,
        cache_write_tokens: u.cache_write_tokens,
    }
}

fn tool_call_out(c: wit::ToolCall) -> t::ToolCall {
    t::ToolCall {
        id: c.id,
        name: c.name,
        arguments: c.arguments,
    }
}

pub(crate) fn response(r: wit::CompletionResponse) -> t::CompletionResponse {
    t::CompletionResponse {
        id: r.id,
        model: r.model,
        content: r.content,
        tool_calls: r.tool_calls.into_iter().map(tool_call_out).collect(),
        finish_reason: finish(r.finish_reason),
        usage: usage(r.usage),
    }
}

pub(crate) fn chunk(c: wit::StreamChunk) -> t::StreamChunk {
    t::StreamChunk {
        id: c.id,
        model: c.model,
        delta: c.delta,
        tool_call_deltas: c
            .tool_call_deltas
            .into_iter()
            .map(|d| t::ToolCallDelta {
                index: d.index,
                id: d.id,
                name: d.name,
                arguments_delta: d.arguments_delta,
            })
            .collect(),
        finish_reason: c.finish_reason.map(finish),
        usage: c.usage.map(usage),
    }
}

pub(crate) fn model(m: wit::ModelInfo) -> t::ModelInfo {
    t::ModelInfo {
        id: m.id,
        name: m.name,
        context_window: m.context_window,
        max_output_tokens: m.max_output_tokens,
        supports_streaming: m.supports_streaming,
        supports_images: m.supports_images,
        supports_tools: m.supports_tools,
    }
}

pub(crate) fn capabilities(c: wit::Capabilities) -> t::Capabilities {
    t::Capabilities {
        supports_streaming: c.supports_streaming,
        supports_images: c.supports_images,
        supports_tools: c.supports_tools,
        max_context_tokens: c.max_context_tokens,
        max_output_tokens: c.max_output_tokens,
        models: c.models.into_iter().map(model).collect(),
        features: c.features,
        // Filled from the `embeddings` export, when there is one (`Instance::capabilities`).
        embeddings: false,
        embedding_models: Vec::new(),
    }
}

/// Longest guest-written message kept (errors, health): these travel into logs,
/// events and HTTP answers, so a guest must not be able to make them huge.
const MAX_MESSAGE_CHARS: usize = 4096;

fn bounded(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_CHARS {
        let cut = (0..=MAX_MESSAGE_CHARS)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

pub(crate) fn health(h: wit::Health) -> t::Health {
    t::Health {
        status: match h.status {
            wit::HealthStatus::Healthy => t::HealthStatus::Healthy,
            wit::HealthStatus::Degraded => t::HealthStatus::Degraded,
            wit::HealthStatus::Unhealthy => t::HealthStatus::Unhealthy,
        },
        message: bounded(h.message),
    }
}

pub(crate) fn provider_error(e: wit::ProviderError) -> t::ProviderError {
    use t::ProviderErrorCode as C;
    t::ProviderError {
        code: match e.code {
            wit::ErrorCode::RateLimitExceeded => C::RateLimitExceeded,
            wit::ErrorCode::InvalidApiKey => C::InvalidApiKey,
            wit::ErrorCode::ModelNotFound => C::ModelNotFound,
            wit::ErrorCode::ContextTooLong => C::ContextTooLong,
            wit::ErrorCode::NetworkError => C::NetworkError,
            wit::ErrorCode::Timeout => C::Timeout,
            wit::ErrorCode::InvalidRequest => C::InvalidRequest,
            wit::ErrorCode::ProviderError => C::ProviderError,
            wit::ErrorCode::QuotaExceeded => C::QuotaExceeded,
            wit::ErrorCode::ServiceUnavailable => C::ServiceUnavailable,
        },
        message: bounded(e.message),
        retryable: e.retryable,
        retry_after_ms: e.retry_after_ms,
    }
}

// ---- embeddings ----

pub(crate) fn embedding_request(r: &t::EmbeddingRequest) -> wit_embeddings::EmbeddingRequest {
    wit_embeddings::EmbeddingRequest {
        model: r.model.clone(),
        inputs: r.inputs.clone(),
        dimensions: r.dimensions,
        metadata: r.metadata.clone(),
    }
}

pub(crate) fn embedding_response(r: wit_embeddings::EmbeddingResponse) -> t::EmbeddingResponse {
    t::EmbeddingResponse {
        model: r.model,
        vectors: r.vectors,
        usage: t::EmbeddingUsage {
            input_tokens: r.usage.input_tokens,
            total_tokens: r.usage.total_tokens,
        },
    }
}

pub(crate) fn embedding_model(m: wit_embeddings::EmbeddingModelInfo) -> t::EmbeddingModelInfo {
    t::EmbeddingModelInfo {
        id: m.id,
        name: m.name,
        dimensions: m.dimensions,
        max_input_tokens: m.max_input_tokens,
    }
}
