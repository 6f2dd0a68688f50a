//! Convenience constructors on the generated WIT types.

use crate::{
    Capabilities, CompletionRequest, CompletionResponse, EmbeddingModelInfo, EmbeddingResponse,
    EmbeddingUsage, FinishReason, Health, HealthStatus, Message, ModelInfo, Role, StreamChunk,
    ToolCall, ToolCallDelta, Usage,
};

/// The content of the last `user` message of the request, if any.
pub fn last_user_message(request: &CompletionRequest) -> Option<&str> {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
}

impl Usage {
    /// Usage with `total = input + output` (saturating) and no cache counts.
    pub fn from_counts(input_tokens: u32, output_tokens: u32) -> Self {
        Usage {
            input_tokens,
            output_tokens,
            total_tokens: input_tokens.saturating_add(output_tokens),
            cache_read_tokens: None,
            cache_write_tokens: None,
        }
    }

    /// All counts zero.
    pub fn zero() -> Self {
        Usage::from_counts(0, 0)
    }
}

impl Role {
    /// The WIT name: `system`, `user`, `assistant` or `tool`.
    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

impl Message {
    /// A message with the given role and text, and no name or tool data.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            name: None,
            tool_call_id: None,
            tool_calls: Vec::new(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Message::new(Role::System, content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Message::new(Role::User, content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message::new(Role::Assistant, content)
    }
}

impl CompletionRequest {
    /// A request for `model` with `messages` and every option unset.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        CompletionRequest {
            model: model.into(),
            messages,
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: Vec::new(),
            tools: Vec::new(),
            metadata: Vec::new(),
        }
    }

    /// The value of metadata `key` (the last one if repeated).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The content of the last `user` message; see [`last_user_message`].
    pub fn last_user_message(&self) -> Option<&str> {
        last_user_message(self)
    }
}

impl CompletionResponse {
    /// A response with `content`, finish reason `stop`, zero usage and no tool calls.
    /// Adjust with the `with_*` methods.
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        CompletionResponse {
            id: id.into(),
            model: model.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: Usage::zero(),
        }
    }

    /// Sets the usage.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// Sets the finish reason.
    pub fn with_finish_reason(mut self, finish_reason: FinishReason) -> Self {
        self.finish_reason = finish_reason;
        self
    }

    /// Sets the tool calls (and does not change the finish reason).
    pub fn with_tool_calls(mut self, tool_calls: Vec<ToolCall>) -> Self {
        self.tool_calls = tool_calls;
        self
    }
}

impl StreamChunk {
    /// A chunk carrying text only (no finish reason, no usage).
    pub fn text(id: impl Into<String>, model: impl Into<String>, delta: impl Into<String>) -> Self {
        StreamChunk {
            id: id.into(),
            model: model.into(),
            delta: delta.into(),
            tool_call_deltas: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }

    /// Marks this chunk as the last one: sets the finish reason and usage.
    pub fn finish(mut self, finish_reason: FinishReason, usage: Usage) -> Self {
        self.finish_reason = Some(finish_reason);
        self.usage = Some(usage);
        self
    }

    /// One chunk holding a whole response: the content as delta, each tool call as a
    /// complete tool-call delta, and the finish reason and usage.
    pub fn from_response(response: CompletionResponse) -> Self {
        let tool_call_deltas = response
            .tool_calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| ToolCallDelta {
                index: i as u32,
                id: Some(c.id),
                name: Some(c.name),
                arguments_delta: c.arguments,
            })
            .collect();
        StreamChunk {
            id: response.id,
            model: response.model,
            delta: response.content,
            tool_call_deltas,
            finish_reason: Some(response.finish_reason),
            usage: Some(response.usage),
        }
    }
}

impl ModelInfo {
    /// A text model named after its id, with streaming on and images/tools off.
    pub fn new(id: impl Into<String>, context_window: u32, max_output_tokens: u32) -> Self {
        let id = id.into();
        ModelInfo {
            name: id.clone(),
            id,
            context_window,
            max_output_tokens,
            supports_streaming: true,
            supports_images: false,
            supports_tools: false,
        }
    }
}

impl Capabilities {
    /// No models, no features, nothing supported.
    pub fn empty() -> Self {
        Capabilities {
            supports_streaming: false,
            supports_images: false,
            supports_tools: false,
            max_context_tokens: 0,
            max_output_tokens: 0,
            models: Vec::new(),
            features: Vec::new(),
        }
    }

    /// Capabilities summarising `models`: each flag is true when any model has it, the
    /// token limits are the largest among the models. No features.
    pub fn from_models(models: Vec<ModelInfo>) -> Self {
        Capabilities {
            supports_streaming: models.iter().any(|m| m.supports_streaming),
            supports_images: models.iter().any(|m| m.supports_images),
            supports_tools: models.iter().any(|m| m.supports_tools),
            max_context_tokens: models.iter().map(|m| m.context_window).max().unwrap_or(0),
            max_output_tokens: models
                .iter()
                .map(|m| m.max_output_tokens)
                .max()
                .unwrap_or(0),
            models,
            features: Vec::new(),
        }
    }

    /// Sets the named features.
    pub fn with_features<S: Into<String>>(mut self, features: impl IntoIterator<Item = S>) -> Self {
        self.features = features.into_iter().map(Into::into).collect();
        self
    }
}

impl HealthStatus {
    /// The WIT name: `healthy`, `degraded` or `unhealthy`.
    pub fn name(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    /// Parses a WIT name (case-insensitive).
    pub fn from_name(name: &str) -> Option<HealthStatus> {
        match name.trim().to_ascii_lowercase().as_str() {
            "healthy" => Some(HealthStatus::Healthy),
            "degraded" => Some(HealthStatus::Degraded),
            "unhealthy" => Some(HealthStatus::Unhealthy),
            _ => None,
        }
    }
}

impl Health {
    /// A health report.
    pub fn new(status: HealthStatus, message: impl Into<String>) -> Self {
        Health {
            status,
            message: message.into(),
        }
    }

    /// `healthy` with a message.
    pub fn healthy(message: impl Into<String>) -> Self {
        Health::new(HealthStatus::Healthy, message)
    }

    /// `degraded` with a message.
    pub fn degraded(message: impl Into<String>) -> Self {
        Health::new(HealthStatus::Degraded, message)
    }

    /// `unhealthy` with a message.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Health::new(HealthStatus::Unhealthy, message)
    }
}

impl FinishReason {
    /// The WIT name, e.g. `tool-calls`.
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool-calls",
            FinishReason::ContentFilter => "content-filter",
            FinishReason::Error => "error",
        }
    }
}

impl EmbeddingModelInfo {
    /// A model with its id as its name.
    pub fn new(id: impl Into<String>, dimensions: u32, max_input_tokens: u32) -> Self {
        let id = id.into();
        EmbeddingModelInfo {
            name: id.clone(),
            id,
            dimensions,
            max_input_tokens,
        }
    }
}

impl EmbeddingResponse {
    /// An answer with `input_tokens` counted as the total too.
    pub fn new(model: impl Into<String>, vectors: Vec<Vec<f32>>, input_tokens: u32) -> Self {
        EmbeddingResponse {
            model: model.into(),
            vectors,
            usage: EmbeddingUsage {
                input_tokens,
                total_tokens: input_tokens,
            },
        }
    }
}
