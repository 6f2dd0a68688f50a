//! Host-side data types of the provider contract.
//!
//! They mirror `wit/provider.wit` one to one, but are plain Rust with serde so that
//! the CLI (`--request FILE.json`, `--json`), the HTTP server and tests can use them
//! without touching wasmtime. `bindings.rs` converts between these and the generated
//! component types.

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A tool call made by the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text.
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

impl Message {
    /// A plain user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message::new(Role::User, content)
    }

    /// A message with a role and text.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            name: None,
            tool_call_id: None,
            tool_calls: Vec::new(),
        }
    }
}

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema text.
    #[serde(default = "empty_object")]
    pub parameters_schema: String,
}

fn empty_object() -> String {
    "{}".to_string()
}

/// A completion request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<(String, String)>,
}

impl CompletionRequest {
    /// A request with one user message.
    pub fn prompt(model: impl Into<String>, text: impl Into<String>) -> Self {
        CompletionRequest {
            model: model.into(),
            messages: vec![Message::user(text)],
            ..Default::default()
        }
    }

    /// Add a metadata key/value (builder style).
    pub fn with_metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.to_string(), value.to_string()));
        self
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Error,
}

impl FinishReason {
    /// OpenAI-style string.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Error => "error",
        }
    }
}

/// Token accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub total_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u32>,
}

/// A whole answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    pub id: String,
    pub model: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
}

/// Bytes counted for each chunk and each tool call (or fragment) on top of their
/// text, so that a stream of empty chunks still reaches the response-size cap.
pub const PER_ITEM_OVERHEAD: usize = 64;

impl CompletionResponse {
    /// Bytes the answer occupies, for the response-size cap.
    pub fn payload_bytes(&self) -> usize {
        PER_ITEM_OVERHEAD
            + self.tool_calls.len() * PER_ITEM_OVERHEAD
            + self.id.len()
            + self.model.len()
            + self.content.len()
            + self
                .tool_calls
                .iter()
                .map(|t| t.id.len() + t.name.len() + t.arguments.len())
                .sum::<usize>()
    }
}

/// A fragment of a tool call inside a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments_delta: String,
}

/// One increment of a streamed answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamChunk {
    pub id: String,
    pub model: String,
    pub delta: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_call_deltas: Vec<ToolCallDelta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl StreamChunk {
    /// Bytes the chunk occupies, for the response-size cap.
    pub fn payload_bytes(&self) -> usize {
        PER_ITEM_OVERHEAD
            + self.tool_call_deltas.len() * PER_ITEM_OVERHEAD
            + self.id.len()
            + self.model.len()
            + self.delta.len()
            + self
                .tool_call_deltas
                .iter()
                .map(|t| {
                    t.id.as_ref().map_or(0, String::len)
                        + t.name.as_ref().map_or(0, String::len)
                        + t.arguments_delta.len()
                })
                .sum::<usize>()
    }
}

/// What one model offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub name: String,
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub supports_streaming: bool,
    pub supports_images: bool,
    pub supports_tools: bool,
}

/// What a provider offers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub supports_streaming: bool,
    pub supports_images: bool,
    pub supports_tools: bool,
    pub max_context_tokens: u32,
    pub max_output_tokens: u32,
    pub models: Vec<ModelInfo>,
    pub features: Vec<String>,
}

/// Coarse health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

impl HealthStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// A provider's own health report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub message: String,
}

/// The guest's classification of its own failure (WIT `error-code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderErrorCode {
    RateLimitExceeded,
    InvalidApiKey,
    ModelNotFound,
    ContextTooLong,
    NetworkError,
    Timeout,
    InvalidRequest,
    ProviderError,
    QuotaExceeded,
    ServiceUnavailable,
}

impl ProviderErrorCode {
    /// The WIT (kebab-case) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderErrorCode::RateLimitExceeded => "rate-limit-exceeded",
            ProviderErrorCode::InvalidApiKey => "invalid-api-key",
            ProviderErrorCode::ModelNotFound => "model-not-found",
            ProviderErrorCode::ContextTooLong => "context-too-long",
            ProviderErrorCode::NetworkError => "network-error",
            ProviderErrorCode::Timeout => "timeout",
            ProviderErrorCode::InvalidRequest => "invalid-request",
            ProviderErrorCode::ProviderError => "provider-error",
            ProviderErrorCode::QuotaExceeded => "quota-exceeded",
            ProviderErrorCode::ServiceUnavailable => "service-unavailable",
        }
    }
}

/// A failure reported by the guest itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderError {
    pub code: ProviderErrorCode,
    pub message: String,
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}
