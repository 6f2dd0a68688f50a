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
    /// Instructions for the model.
    System,
    /// The person asking.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

/// A tool call made by the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Id the tool result refers back to.
    pub id: String,
    /// The tool called.
    pub name: String,
    /// JSON text.
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    #[serde(default)]
    pub content: String,
    /// Optional author name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For a tool result: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Tool calls the assistant made in this message.
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
    /// Name the model calls it by.
    pub name: String,
    /// What it does, for the model.
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
    /// Model id as the provider knows it (empty: its default).
    #[serde(default)]
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Sequences that end generation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
    /// Free-form key/values passed to the provider.
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
    /// A natural end or a stop sequence.
    Stop,
    /// The token limit was reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// The provider filtered the content.
    ContentFilter,
    /// Generation failed.
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
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Generated tokens.
    pub output_tokens: u32,
    /// Input plus output.
    pub total_tokens: u32,
    /// Prompt tokens read from the provider's cache, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<u32>,
    /// Prompt tokens written to the provider's cache, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u32>,
}

/// A whole answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    /// The provider's id for this answer.
    pub id: String,
    /// The model that answered.
    pub model: String,
    /// The answer text.
    pub content: String,
    /// Tool calls the model made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Token accounting.
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
    /// Which tool call of the answer this fragment belongs to.
    pub index: u32,
    /// The call's id (first fragment only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool's name (first fragment only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The next piece of the arguments' JSON text.
    #[serde(default)]
    pub arguments_delta: String,
}

/// One increment of a streamed answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamChunk {
    /// The provider's id for the answer (the same in every chunk).
    pub id: String,
    /// The model that answers.
    pub model: String,
    /// The next piece of text.
    pub delta: String,
    /// Fragments of tool calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_call_deltas: Vec<ToolCallDelta>,
    /// Set on the last chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Token accounting, usually on the last chunk.
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
    /// Model id, as requested.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Context window, tokens.
    pub context_window: u32,
    /// Most tokens one answer can have.
    pub max_output_tokens: u32,
    /// Whether it streams.
    pub supports_streaming: bool,
    /// Whether it accepts images.
    pub supports_images: bool,
    /// Whether it calls tools.
    pub supports_tools: bool,
}

/// What a provider offers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Whether the provider streams.
    pub supports_streaming: bool,
    /// Whether it accepts images.
    pub supports_images: bool,
    /// Whether it calls tools.
    pub supports_tools: bool,
    /// Largest context window of its models, tokens.
    pub max_context_tokens: u32,
    /// Largest answer of its models, tokens.
    pub max_output_tokens: u32,
    /// The models it serves.
    pub models: Vec<ModelInfo>,
    /// Free-form feature names.
    pub features: Vec<String>,
    /// Whether the component exports `tamma:provider/embeddings` (contract 0.2.0).
    #[serde(default)]
    pub embeddings: bool,
    /// Its embedding models, apart from the chat `models` (empty without the export).
    #[serde(default)]
    pub embedding_models: Vec<EmbeddingModelInfo>,
}

/// What one embedding model offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingModelInfo {
    /// Model id, as requested.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Length of its vectors.
    pub dimensions: u32,
    /// Longest input, tokens.
    pub max_input_tokens: u32,
}

/// An embedding request: every input is embedded on its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingRequest {
    /// Model id as the provider knows it.
    #[serde(default)]
    pub model: String,
    /// The texts.
    pub inputs: Vec<String>,
    /// Vector length, for models that can shorten theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// Free-form key/values passed to the provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<(String, String)>,
}

/// Token accounting of an embedding request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    /// Tokens in all inputs.
    pub input_tokens: u32,
    /// Tokens billed.
    pub total_tokens: u32,
}

/// The vectors of one embedding request, in the order of its inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    /// The model that answered.
    pub model: String,
    /// One vector per input.
    pub vectors: Vec<Vec<f32>>,
    /// Token accounting.
    pub usage: EmbeddingUsage,
}

impl EmbeddingResponse {
    /// Bytes the answer occupies, for the response-size cap.
    pub fn payload_bytes(&self) -> usize {
        PER_ITEM_OVERHEAD
            + self.model.len()
            + self
                .vectors
                .iter()
                .map(|v| PER_ITEM_OVERHEAD + v.len() * std::mem::size_of::<f32>())
                .sum::<usize>()
    }
}

/// Coarse health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Serving normally.
    Healthy,
    /// Serving, with problems.
    Degraded,
    /// Not serving.
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
    /// The status.
    pub status: HealthStatus,
    /// Why, in the provider's words.
    pub message: String,
}

/// The guest's classification of its own failure (WIT `error-code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderErrorCode {
    /// The upstream rate limit was hit.
    RateLimitExceeded,
    /// The upstream refused the credentials.
    InvalidApiKey,
    /// No such model upstream.
    ModelNotFound,
    /// The prompt does not fit the model's context window.
    ContextTooLong,
    /// The upstream could not be reached.
    NetworkError,
    /// The upstream did not answer in time.
    Timeout,
    /// The request was malformed for this provider.
    InvalidRequest,
    /// Any other provider failure.
    ProviderError,
    /// The account's quota is spent.
    QuotaExceeded,
    /// The upstream is down or overloaded.
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
    /// Its class.
    pub code: ProviderErrorCode,
    /// What went wrong (no secrets).
    pub message: String,
    /// Whether trying again may succeed.
    pub retryable: bool,
    /// When to try again, if the upstream said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}
