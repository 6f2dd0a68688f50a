//! The OpenAI chat-completions wire format: request bodies, responses, stream
//! events and error bodies, translated to and from the provider contract.
//!
//! Nothing here touches WASI, so it is unit-tested on the host:
//! `cargo test -p tamma-guest-openai`.

use std::collections::VecDeque;

use serde_json::{json, Map, Value};
use tamma_guest_sdk::http::{status_error, ByteSource, SseReader};
use tamma_guest_sdk::{
    ChunkStream, CompletionRequest, CompletionResponse, FinishReason, Message, ModelInfo,
    ProviderError, Role, StreamChunk, ToolCall, ToolCallDelta, Usage,
};

/// Longest piece of an upstream error body quoted in a message.
const QUOTE_MAX: usize = 300;

/// Options of one chat request that do not come from the request itself.
pub struct BodyOptions<'a> {
    /// The model to ask (the request's, or the configured default).
    pub model: &'a str,
    /// Whether to ask for an SSE stream.
    pub stream: bool,
    /// Whether to ask for a usage chunk at the end of a stream
    /// (`stream_options.include_usage`); some older servers reject the field.
    pub stream_usage: bool,
}

/// The JSON body of `POST {base}/chat/completions`.
pub fn chat_body(req: &CompletionRequest, opts: &BodyOptions<'_>) -> Result<Value, ProviderError> {
    if req.messages.is_empty() {
        return Err(ProviderError::invalid_request(
            "the conversation has no messages",
        ));
    }
    let messages = req
        .messages
        .iter()
        .map(message_json)
        .collect::<Result<Vec<_>, _>>()?;
    let mut body = Map::new();
    body.insert("model".into(), json!(opts.model));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(n) = req.max_tokens {
        // `max_tokens` rather than the newer `max_completion_tokens`: every
        // OpenAI-compatible server (vLLM, llama.cpp, Ollama, OpenRouter) knows it.
        body.insert("max_tokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), f32_json(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), f32_json(p));
    }
    if !req.stop.is_empty() {
        body.insert("stop".into(), json!(req.stop));
    }
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                Ok(json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": schema_json(&t.name, &t.parameters_schema)?,
                    }
                }))
            })
            .collect::<Result<Vec<_>, ProviderError>>()?;
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(user) = req.metadata("user").or_else(|| req.metadata("user_id")) {
        body.insert("user".into(), json!(user));
    }
    body.insert("stream".into(), json!(opts.stream));
    if opts.stream && opts.stream_usage {
        body.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    Ok(Value::Object(body))
}

/// An `f32` as the JSON number a person would write: `0.7f32` is `0.7`, not
/// `0.699999988079071` (what a plain widening to `f64` gives).
fn f32_json(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// A tool's JSON Schema, parsed; an empty schema means "no arguments".
pub fn schema_json(tool: &str, schema: &str) -> Result<Value, ProviderError> {
    if schema.trim().is_empty() {
        return Ok(json!({ "type": "object", "properties": {} }));
    }
    serde_json::from_str(schema).map_err(|e| {
        ProviderError::invalid_request(format!(
            "tool `{tool}`: parameters-schema is not valid JSON: {e}"
        ))
    })
}

fn message_json(m: &Message) -> Result<Value, ProviderError> {
    let mut o = Map::new();
    o.insert("role".into(), json!(m.role.name()));
    match m.role {
        Role::Assistant if !m.tool_calls.is_empty() => {
            // OpenAI wants `null`, not "", for an assistant turn that only calls tools.
            let content = if m.content.is_empty() {
                Value::Null
            } else {
                json!(m.content)
            };
            o.insert("content".into(), content);
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "type": "function",
                        "function": { "name": c.name, "arguments": c.arguments },
                    })
                })
                .collect();
            o.insert("tool_calls".into(), Value::Array(calls));
        }
        Role::Tool => {
            let id = m.tool_call_id.as_deref().ok_or_else(|| {
                ProviderError::invalid_request("a tool message needs the tool-call-id it answers")
            })?;
            o.insert("tool_call_id".into(), json!(id));
            o.insert("content".into(), json!(m.content));
        }
        _ => {
            o.insert("content".into(), json!(m.content));
        }
    }
    if let Some(name) = &m.name {
        if m.role != Role::Tool {
            o.insert("name".into(), json!(name));
        }
    }
    Ok(Value::Object(o))
}

/// OpenAI's `finish_reason` (unknown values, e.g. vendor extensions, count as `stop`).
pub fn finish_reason(s: &str) -> FinishReason {
    match s {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

pub(crate) fn u32_at(v: &Value, key: &str) -> Option<u32> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|n| n.min(u32::MAX as u64) as u32)
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// OpenAI's `usage` object.
pub fn usage(u: &Value) -> Usage {
    let input = u32_at(u, "prompt_tokens").unwrap_or(0);
    let output = u32_at(u, "completion_tokens").unwrap_or(0);
    let mut usage = Usage::from_counts(input, output);
    if let Some(total) = u32_at(u, "total_tokens") {
        usage.total_tokens = total;
    }
    usage.cache_read_tokens = u
        .get("prompt_tokens_details")
        .and_then(|d| u32_at(d, "cached_tokens"));
    usage
}

pub(crate) fn parse_json(body: &[u8], what: &str) -> Result<Value, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::provider(format!(
            "malformed {what} from upstream ({e}): {}",
            quote(&String::from_utf8_lossy(body))
        ))
    })
}

fn quote(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() <= QUOTE_MAX {
        format!("`{t}`")
    } else {
        let head: String = t.chars().take(QUOTE_MAX).collect();
        format!("`{head}…`")
    }
}

/// A non-streamed chat completion. `requested_model` fills in a missing `model`.
pub fn parse_completion(
    body: &[u8],
    requested_model: &str,
) -> Result<CompletionResponse, ProviderError> {
    let v = parse_json(body, "completion")?;
    // Some proxies (OpenRouter among them) report failures in a 200 body.
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(in_band_error(err));
    }
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| ProviderError::provider("upstream completion has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let content = str_at(message, "content").unwrap_or("").to_string();
    let tool_calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    let f = c.get("function").unwrap_or(&Value::Null);
                    ToolCall {
                        id: str_at(c, "id").unwrap_or("").to_string(),
                        name: str_at(f, "name").unwrap_or("").to_string(),
                        arguments: match f.get("arguments") {
                            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                            // Some servers send the arguments as an object.
                            Some(o @ Value::Object(_)) => o.to_string(),
                            _ => "{}".to_string(),
                        },
                    }
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let finish = match str_at(choice, "finish_reason") {
        Some(r) => finish_reason(r),
        None if !tool_calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    Ok(CompletionResponse {
        id: str_at(&v, "id").unwrap_or("").to_string(),
        model: str_at(&v, "model").unwrap_or(requested_model).to_string(),
        content,
        tool_calls,
        finish_reason: finish,
        usage: v.get("usage").map(usage).unwrap_or_else(Usage::zero),
    })
}

/// The message, `code` and `type` of an OpenAI-style error body
/// (`{"error":{"message","type","param","code"}}`); servers that answer with
/// something else get their text quoted.
fn error_parts(body: &[u8]) -> (String, Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(body);
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (quote(&text), None, None);
    };
    let err = v.get("error").unwrap_or(&v);
    if let Some(s) = err.as_str() {
        // `{"error": "text"}` (llama.cpp and friends).
        return (s.to_string(), None, None);
    }
    let message = str_at(err, "message")
        .or_else(|| str_at(&v, "message"))
        .or_else(|| str_at(&v, "detail"))
        .map(String::from)
        .unwrap_or_else(|| quote(&text));
    let code = match err.get("code") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    (message, code, str_at(err, "type").map(String::from))
}

fn is_context_error(code: Option<&str>, message: &str) -> bool {
    if code == Some("context_length_exceeded") {
        return true;
    }
    let m = message.to_ascii_lowercase();
    [
        "context length",
        "context_length",
        "maximum context",
        "context window",
        "context size",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// The provider error for a non-2xx answer, from its status, `retry-after` and body.
pub fn error_from_status(status: u16, retry_after_ms: Option<u64>, body: &[u8]) -> ProviderError {
    let (message, code, kind) = error_parts(body);
    let code_s = code.as_deref();
    let quota =
        code_s == Some("insufficient_quota") || kind.as_deref() == Some("insufficient_quota");
    match status {
        400 | 413 | 422 if is_context_error(code_s, &message) => {
            ProviderError::context_too_long(format!("HTTP {status}: {message}"))
        }
        // 402 is how OpenRouter and some gateways say "out of credit".
        402 => ProviderError::quota_exceeded(format!("HTTP 402: {message}")),
        429 if quota => ProviderError::quota_exceeded(format!("HTTP 429: {message}")),
        404 => {
            let about_model =
                code_s == Some("model_not_found") || message.to_ascii_lowercase().contains("model");
            if about_model {
                ProviderError::model_not_found(format!("HTTP 404: {message}"))
            } else {
                // A 404 that does not mention a model is almost always a wrong base_url.
                ProviderError::provider(format!(
                    "HTTP 404 (is base_url right? it should end in /v1): {message}"
                ))
            }
        }
        _ => status_error(status, message, retry_after_ms),
    }
}

/// The provider error for an error reported inside a 200 answer or a stream event
/// (`{"error":{...}}`): classified by its `code`/`type` (a numeric code is an HTTP
/// status, as vLLM sends it).
pub fn in_band_error(err: &Value) -> ProviderError {
    let body = json!({ "error": err }).to_string();
    let (message, code, kind) = error_parts(body.as_bytes());
    if let Some(status) = code.as_deref().and_then(|c| c.parse::<u16>().ok()) {
        return error_from_status(status, None, body.as_bytes());
    }
    let tag = code.as_deref().or(kind.as_deref()).unwrap_or("");
    let msg = format!(
        "upstream error{}: {message}",
        if tag.is_empty() {
            String::new()
        } else {
            format!(" ({tag})")
        }
    );
    match tag {
        "context_length_exceeded" => ProviderError::context_too_long(msg),
        "insufficient_quota" => ProviderError::quota_exceeded(msg),
        "rate_limit_exceeded" | "rate_limit_error" | "tokens" | "requests" => {
            ProviderError::rate_limited(msg, None)
        }
        "invalid_api_key" | "authentication_error" => ProviderError::invalid_api_key(msg),
        "model_not_found" => ProviderError::model_not_found(msg),
        "server_error" | "service_unavailable" | "overloaded_error" | "api_error" => {
            ProviderError::service_unavailable(msg)
        }
        "invalid_request_error" if is_context_error(None, &message) => {
            ProviderError::context_too_long(msg)
        }
        "invalid_request_error" => ProviderError::invalid_request(msg),
        _ if is_context_error(None, &message) => ProviderError::context_too_long(msg),
        _ => ProviderError::provider(msg),
    }
}

/// `GET {base}/models` → model infos. OpenAI lists ids only; OpenRouter adds
/// `context_length` and `top_provider.max_completion_tokens`, vLLM `max_model_len`.
pub fn parse_models(body: &[u8]) -> Result<Vec<ModelInfo>, ProviderError> {
    let v = parse_json(body, "model list")?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::provider("upstream model list has no `data` array"))?;
    Ok(data
        .iter()
        .filter_map(|m| {
            let id = str_at(m, "id")?;
            let mut info = model_info(id, None, None);
            if let Some(ctx) = u32_at(m, "context_length").or_else(|| u32_at(m, "max_model_len")) {
                info.context_window = ctx;
                info.max_output_tokens = info.max_output_tokens.min(ctx);
            }
            if let Some(out) = m
                .get("top_provider")
                .and_then(|t| u32_at(t, "max_completion_tokens"))
            {
                info.max_output_tokens = out;
            }
            if let Some(name) = str_at(m, "name") {
                info.name = name.to_string();
            }
            Some(info)
        })
        .collect())
}

/// What is known about a model id; unknown ids get `default_context` /
/// `default_output` (or 128k / 16k).
pub fn model_info(
    id: &str,
    default_context: Option<u32>,
    default_output: Option<u32>,
) -> ModelInfo {
    let (ctx, out) = match id {
        m if m.starts_with("gpt-4.1") => (1_047_576, 32_768),
        m if m.starts_with("gpt-4o") => (128_000, 16_384),
        m if m.starts_with("o3") || m.starts_with("o4") => (200_000, 100_000),
        m if m.starts_with("gpt-3.5") => (16_385, 4_096),
        _ => (
            default_context.unwrap_or(128_000),
            default_output.unwrap_or(16_384),
        ),
    };
    let mut info = ModelInfo::new(id, ctx, out);
    info.supports_tools = true;
    info
}

/// What one stream event did.
enum Step {
    /// Chunks to hand out (possibly none: a keep-alive, a role-only delta).
    Chunks(Vec<StreamChunk>),
    /// `data: [DONE]`: these are the last chunks.
    Done(Vec<StreamChunk>),
}

/// Turns the `data:` payloads of an OpenAI stream into chunks.
///
/// Text and tool-call fragments are handed out as they arrive. The finish reason is
/// held back until `[DONE]`, because with `include_usage` the usage comes in a
/// separate chunk after it (with empty `choices`); the final chunk then carries both,
/// so consumers find finish reason and usage together on the last chunk.
#[derive(Default)]
pub struct StreamState {
    id: String,
    model: String,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    saw_tool_calls: bool,
}

impl StreamState {
    /// A state for a stream answering `model` (until the upstream names its own).
    pub fn new(model: &str) -> Self {
        StreamState {
            model: model.to_string(),
            ..StreamState::default()
        }
    }

    fn on_data(&mut self, data: &str) -> Result<Step, ProviderError> {
        if data.trim() == "[DONE]" {
            let finish = self.finish.take().unwrap_or(if self.saw_tool_calls {
                FinishReason::ToolCalls
            } else {
                FinishReason::Stop
            });
            let usage = self.usage.take().unwrap_or_else(Usage::zero);
            let last = StreamChunk::text(&self.id, &self.model, "").finish(finish, usage);
            return Ok(Step::Done(vec![last]));
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::provider(format!(
                "malformed stream event from upstream ({e}): {}",
                quote(data)
            ))
        })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(in_band_error(err));
        }
        if let Some(id) = str_at(&v, "id").filter(|s| !s.is_empty()) {
            self.id = id.to_string();
        }
        if let Some(model) = str_at(&v, "model").filter(|s| !s.is_empty()) {
            self.model = model.to_string();
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage(u));
        }
        let mut out = Vec::new();
        let choices = v.get("choices").and_then(Value::as_array);
        // Only the first choice: the contract has one answer per request (`n` is
        // never sent).
        let Some(choice) = choices.and_then(|c| {
            c.iter()
                .find(|ch| ch.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        }) else {
            return Ok(Step::Chunks(out));
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        let text = str_at(delta, "content").unwrap_or("");
        let mut deltas = Vec::new();
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for (pos, c) in calls.iter().enumerate() {
                let f = c.get("function").unwrap_or(&Value::Null);
                deltas.push(ToolCallDelta {
                    // `index` is required by OpenAI; a server that omits it gets
                    // the fragment's position, which is right for one call per chunk.
                    index: u32_at(c, "index").unwrap_or(pos as u32),
                    id: str_at(c, "id").map(String::from),
                    name: str_at(f, "name").map(String::from),
                    arguments_delta: str_at(f, "arguments").unwrap_or("").to_string(),
                });
            }
        }
        if !deltas.is_empty() {
            self.saw_tool_calls = true;
        }
        if !text.is_empty() || !deltas.is_empty() {
            let mut chunk = StreamChunk::text(&self.id, &self.model, text);
            chunk.tool_call_deltas = deltas;
            out.push(chunk);
        }
        if let Some(r) = str_at(choice, "finish_reason") {
            self.finish = Some(finish_reason(r));
        }
        Ok(Step::Chunks(out))
    }
}

/// A streamed chat completion read from SSE events. Ends with `Ok(None)` only after
/// `data: [DONE]`; a body that ends before it is a `provider-error`, never a
/// silent, possibly truncated success.
pub struct ChatStream<S: ByteSource> {
    events: SseReader<S>,
    state: StreamState,
    ready: VecDeque<StreamChunk>,
    done: bool,
}

impl<S: ByteSource> ChatStream<S> {
    /// A stream over `events`, answering `model`.
    pub fn new(events: SseReader<S>, model: &str) -> Self {
        ChatStream {
            events,
            state: StreamState::new(model),
            ready: VecDeque::new(),
            done: false,
        }
    }
}

impl<S: ByteSource + 'static> ChunkStream for ChatStream<S> {
    fn next(&mut self) -> Result<Option<StreamChunk>, ProviderError> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Ok(Some(c));
            }
            if self.done {
                return Ok(None);
            }
            let Some(ev) = self.events.next_event()? else {
                return Err(ProviderError::provider(
                    "upstream stream ended before `data: [DONE]`: the answer may be truncated",
                ));
            };
            // OpenAI sends unnamed events only; an `error` event is what some
            // compatible servers send instead of an in-band error object.
            if ev.event == "error" {
                let v: Value =
                    serde_json::from_str(&ev.data).unwrap_or(Value::String(ev.data.clone()));
                return Err(in_band_error(v.get("error").unwrap_or(&v)));
            }
            match self.state.on_data(&ev.data)? {
                Step::Chunks(c) => self.ready.extend(c),
                Step::Done(c) => {
                    self.ready.extend(c);
                    self.done = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_guest_sdk::{collect_stream, ErrorCode, ToolDefinition};

    fn req() -> CompletionRequest {
        CompletionRequest::new(
            "gpt-x",
            vec![Message::system("be brief"), Message::user("hi")],
        )
    }

    fn opts(stream: bool) -> BodyOptions<'static> {
        BodyOptions {
            model: "gpt-x",
            stream,
            stream_usage: true,
        }
    }

    #[test]
    fn body_has_the_openai_shape() {
        let mut r = req();
        r.max_tokens = Some(50);
        r.temperature = Some(0.7);
        r.stop = vec!["END".into()];
        r.tools = vec![ToolDefinition {
            name: "get_weather".into(),
            description: "Weather for a city".into(),
            parameters_schema: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#
                .into(),
        }];
        r.messages.push(Message {
            role: Role::Assistant,
            content: String::new(),
            name: None,
            tool_call_id: None,
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Oslo\"}".into(),
            }],
        });
        r.messages.push(Message {
            role: Role::Tool,
            content: "sunny".into(),
            name: None,
            tool_call_id: Some("call_1".into()),
            tool_calls: vec![],
        });
        r.metadata = vec![("user".into(), "u-1".into())];
        let b = chat_body(&r, &opts(true)).unwrap();
        assert_eq!(b["model"], "gpt-x");
        assert_eq!(
            b["messages"][0],
            json!({"role":"system","content":"be brief"})
        );
        assert_eq!(b["messages"][2]["content"], Value::Null);
        assert_eq!(
            b["messages"][2]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(b["messages"][2]["tool_calls"][0]["type"], "function");
        assert_eq!(
            b["messages"][3],
            json!({"role":"tool","tool_call_id":"call_1","content":"sunny"})
        );
        assert_eq!(b["max_tokens"], 50);
        assert_eq!(b["temperature"].to_string(), "0.7");
        assert_eq!(b["stop"], json!(["END"]));
        assert_eq!(b["tools"][0]["type"], "function");
        assert_eq!(
            b["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["user"], "u-1");
        let b = chat_body(&req(), &opts(false)).unwrap();
        assert_eq!(b["stream"], false);
        assert!(b.get("stream_options").is_none() && b.get("tools").is_none());
    }

    #[test]
    fn body_rejects_bad_input() {
        let mut r = req();
        r.tools = vec![ToolDefinition {
            name: "t".into(),
            description: String::new(),
            parameters_schema: "{nope".into(),
        }];
        assert_eq!(
            chat_body(&r, &opts(false)).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let mut r = req();
        r.messages.push(Message::new(Role::Tool, "x"));
        let e = chat_body(&r, &opts(false)).unwrap_err();
        assert!(e.message.contains("tool-call-id"));
        let r = CompletionRequest::new("m", vec![]);
        assert_eq!(
            chat_body(&r, &opts(false)).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let mut r = req();
        r.tools = vec![ToolDefinition {
            name: "t".into(),
            description: String::new(),
            parameters_schema: "".into(),
        }];
        assert_eq!(
            chat_body(&r, &opts(false)).unwrap()["tools"][0]["function"]["parameters"]["type"],
            "object"
        );
    }

    #[test]
    fn parses_a_completion_with_tool_calls_and_usage() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-x-2024",
            "choices":[{"index":0,"message":{"role":"assistant","content":null,
              "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
              "finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        let r = parse_completion(body, "gpt-x").unwrap();
        assert_eq!(r.id, "chatcmpl-1");
        assert_eq!(r.model, "gpt-x-2024");
        assert_eq!(r.content, "");
        assert_eq!(r.tool_calls[0].arguments, "{\"a\":1}");
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            (
                r.usage.input_tokens,
                r.usage.output_tokens,
                r.usage.total_tokens
            ),
            (10, 5, 15)
        );
        assert_eq!(r.usage.cache_read_tokens, Some(4));
    }

    #[test]
    fn malformed_and_error_bodies() {
        let e = parse_completion(b"{\"id\": \"x\", \"choices\": [", "m").unwrap_err();
        assert_eq!(e.code, ErrorCode::ProviderError);
        assert!(e.message.contains("malformed"));
        let e = parse_completion(b"{\"choices\": []}", "m").unwrap_err();
        assert!(e.message.contains("no choices"));
        let e = parse_completion(
            br#"{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}"#,
            "m",
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimitExceeded);
    }

    fn err(status: u16, retry: Option<u64>, body: &str) -> ProviderError {
        error_from_status(status, retry, body.as_bytes())
    }

    #[test]
    fn status_mapping() {
        let e = err(
            401,
            None,
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        );
        assert_eq!((e.code, e.retryable), (ErrorCode::InvalidApiKey, false));
        assert!(e.message.contains("Incorrect API key"));
        assert_eq!(err(403, None, "forbidden").code, ErrorCode::InvalidApiKey);
        let e = err(
            404,
            None,
            r#"{"error":{"message":"The model `nope` does not exist","code":"model_not_found"}}"#,
        );
        assert_eq!(e.code, ErrorCode::ModelNotFound);
        let e = err(404, None, "404 page not found");
        assert_eq!(e.code, ErrorCode::ProviderError);
        assert!(e.message.contains("base_url"));
        let e = err(
            429,
            Some(1500),
            r#"{"error":{"message":"slow down","code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(
            (e.code, e.retryable, e.retry_after_ms),
            (ErrorCode::RateLimitExceeded, true, Some(1500))
        );
        let e = err(
            429,
            None,
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        );
        assert_eq!((e.code, e.retryable), (ErrorCode::QuotaExceeded, false));
        let e = err(
            400,
            None,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.code, ErrorCode::ContextTooLong);
        let e = err(
            400,
            None,
            r#"{"object":"error","message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","code":400}"#,
        );
        assert_eq!(e.code, ErrorCode::ContextTooLong, "vLLM's shape");
        let e = err(
            400,
            None,
            r#"{"error":{"message":"Invalid value for 'temperature'","code":null}}"#,
        );
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let e = err(503, Some(2000), "<html>Bad gateway</html>");
        assert_eq!(
            (e.code, e.retryable, e.retry_after_ms),
            (ErrorCode::ServiceUnavailable, true, Some(2000))
        );
        assert!(e.message.contains("Bad gateway"));
        assert_eq!(err(402, None, "{}").code, ErrorCode::QuotaExceeded);
        assert_eq!(
            err(500, None, r#"{"error":"llama.cpp says no"}"#).message,
            "upstream answered HTTP 500: llama.cpp says no"
        );
    }

    #[test]
    fn models_list() {
        let body = br#"{"object":"list","data":[{"id":"gpt-4o","object":"model"},{"id":"meta/llama","context_length":8192,"name":"Llama","top_provider":{"max_completion_tokens":2048}},{"id":"local","max_model_len":4096},{"object":"model"}]}"#;
        let m = parse_models(body).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[0].context_window, m[0].max_output_tokens),
            (128_000, 16_384)
        );
        assert_eq!(
            (
                m[1].name.as_str(),
                m[1].context_window,
                m[1].max_output_tokens
            ),
            ("Llama", 8192, 2048)
        );
        assert_eq!((m[2].context_window, m[2].max_output_tokens), (4096, 4096));
        assert!(m.iter().all(|m| m.supports_tools && m.supports_streaming));
        assert!(parse_models(b"{}").is_err());
    }

    fn stream_of(text: &str) -> ChatStream<VecDeque<Vec<u8>>> {
        // Split into small pieces so events straddle reads.
        let pieces: VecDeque<Vec<u8>> = text.as_bytes().chunks(7).map(|c| c.to_vec()).collect();
        ChatStream::new(SseReader::new(pieces), "gpt-x")
    }

    const TOOL_STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let me check\"}}]}\n\n",
        ": keep-alive\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Oslo\\\"}\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":9,\"total_tokens\":16}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn stream_reassembles_tool_calls_and_ends_with_finish_and_usage() {
        let mut s = stream_of(TOOL_STREAM);
        let mut chunks = Vec::new();
        while let Some(c) = s.next().unwrap() {
            chunks.push(c);
        }
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c.finish_reason.is_none() && c.usage.is_none()));
        let last = chunks.last().unwrap();
        assert_eq!(last.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(last.usage.map(|u| u.total_tokens), Some(16));
        assert_eq!(
            chunks[1].tool_call_deltas[0].name.as_deref(),
            Some("get_weather")
        );
        let r = collect_stream(&mut stream_of(TOOL_STREAM)).unwrap();
        assert_eq!(r.content, "Let me check");
        assert_eq!(r.id, "c1");
        assert_eq!(r.tool_calls.len(), 2);
        assert_eq!(
            (r.tool_calls[0].id.as_str(), r.tool_calls[0].name.as_str()),
            ("call_a", "get_weather")
        );
        assert_eq!(r.tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
        assert_eq!(r.tool_calls[1].arguments, "{}");
        assert!(s.next().unwrap().is_none(), "stays ended");
    }

    #[test]
    fn stream_cut_before_done_is_an_error() {
        let cut = TOOL_STREAM.replace("data: [DONE]\n\n", "");
        let e = collect_stream(&mut stream_of(&cut)).unwrap_err();
        assert_eq!(e.code, ErrorCode::ProviderError);
        assert!(e.message.contains("[DONE]"));
        let e = collect_stream(&mut stream_of("")).unwrap_err();
        assert!(e.message.contains("[DONE]"));
    }

    #[test]
    fn stream_errors_in_band_and_malformed() {
        let text = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n";
        let e = collect_stream(&mut stream_of(text)).unwrap_err();
        assert_eq!((e.code, e.retryable), (ErrorCode::ServiceUnavailable, true));
        let e = collect_stream(&mut stream_of("data: {\"choices\": [\n\n")).unwrap_err();
        assert!(e.message.contains("malformed stream event"));
        let e = collect_stream(&mut stream_of("event: error\ndata: {\"error\":{\"message\":\"ctx\",\"code\":\"context_length_exceeded\"}}\n\n")).unwrap_err();
        assert_eq!(e.code, ErrorCode::ContextTooLong);
    }

    #[test]
    fn stream_without_usage_still_finishes() {
        let text = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]";
        let r = collect_stream(&mut stream_of(text)).unwrap();
        assert_eq!(r.content, "hi");
        assert_eq!(r.finish_reason, FinishReason::Length);
        assert_eq!(r.usage.total_tokens, 0);
        assert_eq!(r.model, "gpt-x");
    }
}
