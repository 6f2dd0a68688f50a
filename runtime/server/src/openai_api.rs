//! The OpenAI-compatible API: `POST /v1/chat/completions` (whole and streamed),
//! `GET /v1/models` and `GET /v1/models/{id}`.
//!
//! Requests are read leniently, as OpenAI's own API does: unknown fields are
//! ignored, `content` may be a string or an array of text parts, `stop` a string or
//! an array, `max_completion_tokens` wins over `max_tokens`. The request's
//! `metadata` object (string values) is passed to the provider as its request
//! metadata. Features the provider contract cannot carry (`n` > 1, images, audio)
//! are refused with 400 rather than silently dropped.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::api_error::ApiError;
use super::auth::Caller;
use super::completion_call::{self, Dialect, Parsed, StreamWriter};
use super::{sse, AppState};
use tamma_registry::registry::ProviderState;
use tamma_sandbox::types::{
    CompletionRequest, CompletionResponse, FinishReason, Message, Role, StreamChunk, ToolCall,
    ToolDefinition, Usage,
};

/// A parsed chat completion request.
#[derive(Debug)]
pub struct ChatRequest {
    /// What the client asked for (`<provider>/<model>` or a route).
    pub model: String,
    /// The request for the provider (its `model` is set per target).
    pub request: CompletionRequest,
    /// `stream`: answer with server-sent events.
    pub stream: bool,
    /// `stream_options.include_usage`: end a stream with a usage chunk.
    pub include_usage: bool,
}

pub(crate) fn bad(msg: impl Into<String>, param: &str) -> ApiError {
    ApiError::bad_request(msg).param(param)
}

fn text_content(v: &Value, at: &str) -> Result<String, ApiError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for (i, part) in parts.iter().enumerate() {
                let ty = part.get("type").and_then(Value::as_str).unwrap_or("");
                match ty {
                    "text" | "input_text" => {
                        let t = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                            bad(format!("{at}[{i}].text must be a string"), at)
                        })?;
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(t);
                    }
                    "refusal" => {}
                    other => {
                        return Err(bad(
                            format!("{at}[{i}]: content parts of type {other:?} are not supported by this gateway (text only)"),
                            at,
                        ))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(bad(
            format!("{at} must be a string or an array of parts"),
            at,
        )),
    }
}

pub(crate) fn opt_f32(
    obj: &Map<String, Value>,
    key: &str,
    range: (f32, f32),
) -> Result<Option<f32>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let f = v
                .as_f64()
                .ok_or_else(|| bad(format!("{key} must be a number"), key))?
                as f32;
            if !(range.0..=range.1).contains(&f) {
                return Err(bad(
                    format!("{key} must be between {} and {}, got {f}", range.0, range.1),
                    key,
                ));
            }
            Ok(Some(f))
        }
    }
}

pub(crate) fn opt_u32(obj: &Map<String, Value>, key: &str) -> Result<Option<u32>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let n = v
                .as_u64()
                .filter(|n| *n >= 1 && *n <= u32::MAX as u64)
                .ok_or_else(|| bad(format!("{key} must be a positive integer"), key))?;
            Ok(Some(n as u32))
        }
    }
}

/// A request body's JSON object (400 when it is not one).
pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// The request's `model`, a non-empty string; `missing` says so otherwise.
pub(crate) fn model_of(obj: &Map<String, Value>, missing: &str) -> Result<String, ApiError> {
    obj.get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .ok_or_else(|| bad(missing, "model"))
}

/// Parse a chat completion request body.
pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let obj = &json_object(body)?;
    let model = model_of(obj, "you must provide a model parameter")?;
    let raw_messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages must be an array", "messages"))?;
    if raw_messages.is_empty() {
        return Err(bad("messages must not be empty", "messages"));
    }
    let mut messages = Vec::with_capacity(raw_messages.len());
    for (i, m) in raw_messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = match m.get("role").and_then(Value::as_str) {
            Some("system") | Some("developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("tool") | Some("function") => Role::Tool,
            other => {
                return Err(bad(
                    format!(
                    "{at}.role: {other:?} is not one of system, developer, user, assistant, tool"
                ),
                    "messages",
                ))
            }
        };
        let content = text_content(
            m.get("content").unwrap_or(&Value::Null),
            &format!("{at}.content"),
        )?;
        let mut msg = Message::new(role, content);
        msg.name = m.get("name").and_then(Value::as_str).map(String::from);
        msg.tool_call_id = m
            .get("tool_call_id")
            .and_then(Value::as_str)
            .map(String::from);
        if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
            for (j, c) in calls.iter().enumerate() {
                let f = c.get("function").ok_or_else(|| {
                    bad(
                        format!("{at}.tool_calls[{j}].function is missing"),
                        "messages",
                    )
                })?;
                msg.tool_calls.push(ToolCall {
                    id: c
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    name: f
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    arguments: match f.get("arguments") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => "{}".into(),
                    },
                });
            }
        }
        messages.push(msg);
    }
    let mut tools = Vec::new();
    let tool_choice_none = obj.get("tool_choice").and_then(Value::as_str) == Some("none");
    if let Some(ts) = obj.get("tools").filter(|t| !t.is_null()) {
        let ts = ts
            .as_array()
            .ok_or_else(|| bad("tools must be an array", "tools"))?;
        for (i, t) in ts.iter().enumerate() {
            let f = t
                .get("function")
                .ok_or_else(|| bad(format!("tools[{i}].function is missing"), "tools"))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad(format!("tools[{i}].function.name is missing"), "tools"))?;
            tools.push(ToolDefinition {
                name: name.to_string(),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                parameters_schema: f
                    .get("parameters")
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "{}".into()),
            });
        }
    }
    if tool_choice_none {
        tools.clear();
    }
    if let Some(n) = obj.get("n").and_then(Value::as_u64) {
        if n != 1 {
            return Err(bad("n must be 1: this gateway returns one choice", "n"));
        }
    }
    let stop = match obj.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad("stop must be a string or an array of strings", "stop"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("stop must be a string or an array of strings", "stop")),
    };
    let mut metadata = Vec::new();
    match obj.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(bad(format!("metadata.{k} must be a string"), "metadata")),
                };
                metadata.push((k.clone(), v));
            }
        }
        Some(_) => return Err(bad("metadata must be an object", "metadata")),
    }
    let max_tokens = match opt_u32(obj, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => opt_u32(obj, "max_tokens")?,
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream must be a boolean", "stream")),
    };
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(ChatRequest {
        model,
        request: CompletionRequest {
            model: String::new(),
            messages,
            max_tokens,
            temperature: opt_f32(obj, "temperature", (0.0, 2.0))?,
            top_p: opt_f32(obj, "top_p", (0.0, 1.0))?,
            stop,
            tools,
            metadata,
        },
        stream,
        include_usage,
    })
}

/// A unique completion id, `chatcmpl-<24 hex>`.
pub(crate) fn completion_id() -> String {
    completion_call::unique_id("chatcmpl-")
}

fn finish_str(f: FinishReason) -> &'static str {
    f.as_str()
}

fn usage_json(u: &Usage) -> Value {
    let mut v = json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens.max(u.input_tokens.saturating_add(u.output_tokens)),
    });
    if let Some(c) = u.cache_read_tokens {
        v["prompt_tokens_details"] = json!({ "cached_tokens": c });
    }
    v
}

fn tool_calls_json(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments },
                })
            })
            .collect(),
    )
}

/// The `chat.completion` object.
pub fn completion_json(id: &str, model: &str, created: u64, r: &CompletionResponse) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if r.content.is_empty() && !r.tool_calls.is_empty() { Value::Null } else { json!(r.content) },
        "refusal": null,
    });
    if !r.tool_calls.is_empty() {
        message["tool_calls"] = tool_calls_json(&r.tool_calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_str(r.finish_reason),
        }],
        "usage": usage_json(&r.usage),
        "system_fingerprint": null,
    })
}

/// Shapes provider chunks into `chat.completion.chunk` events.
pub struct ChunkWriter {
    /// The completion id, the same in every chunk.
    pub id: String,
    /// The `model` of every chunk (`<provider>/<model>`).
    pub model: String,
    /// The `created` of every chunk, Unix seconds.
    pub created: u64,
    /// Add `"usage": null` to every chunk and a usage chunk at the end.
    pub include_usage: bool,
    sent_role: bool,
    /// The finishing chunks have been written.
    pub finished: bool,
    usage: Option<Usage>,
}

impl ChunkWriter {
    /// A writer for one stream, with a fresh completion id.
    pub fn new(model: String, include_usage: bool) -> Self {
        ChunkWriter {
            id: completion_id(),
            model,
            created: tamma_sandbox::time::now_unix_secs(),
            include_usage,
            sent_role: false,
            finished: false,
            usage: None,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// The `data` payloads (JSON) of the SSE events for one provider chunk.
    pub fn events(&mut self, c: &StreamChunk) -> Vec<String> {
        let mut out = Vec::new();
        let has_content = !c.delta.is_empty() || !c.tool_call_deltas.is_empty();
        if has_content || !self.sent_role {
            let mut delta = json!({});
            if !self.sent_role {
                delta["role"] = json!("assistant");
                self.sent_role = true;
            }
            if !c.delta.is_empty() || c.tool_call_deltas.is_empty() {
                delta["content"] = json!(c.delta);
            }
            if !c.tool_call_deltas.is_empty() {
                delta["tool_calls"] = Value::Array(
                    c.tool_call_deltas
                        .iter()
                        .map(|t| {
                            let mut f = json!({ "arguments": t.arguments_delta });
                            if let Some(n) = &t.name {
                                f["name"] = json!(n);
                            }
                            let mut d = json!({ "index": t.index, "function": f });
                            if let Some(id) = &t.id {
                                d["id"] = json!(id);
                                d["type"] = json!("function");
                            }
                            d
                        })
                        .collect(),
                );
            }
            out.push(self.chunk(delta, None).to_string());
        }
        if let Some(u) = c.usage {
            self.usage = Some(u);
        }
        if let Some(f) = c.finish_reason {
            out.extend(self.finish(f));
        }
        out
    }

    /// The usage the provider reported, once it has.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The payloads of the finishing events (finish chunk, usage chunk); once.
    pub fn finish(&mut self, f: FinishReason) -> Vec<String> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let mut out = vec![self.chunk(json!({}), Some(finish_str(f))).to_string()];
        if self.include_usage {
            let u = self.usage.unwrap_or_default();
            let v = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": null,
                "choices": [],
                "usage": usage_json(&u),
            });
            out.push(v.to_string());
        }
        out
    }
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(State(state): State<AppState>, req: Request<Body>) -> Response {
    completion_call::serve(state, req, "chat_completions", |body| {
        let chat = parse_chat_request(body)?;
        Ok(Parsed {
            model: chat.model,
            request: chat.request,
            stream: chat.stream,
            dialect: OpenAiChat {
                include_usage: chat.include_usage,
            },
        })
    })
    .await
}

/// OpenAI's `chat.completion` format, for [`completion_call`].
struct OpenAiChat {
    include_usage: bool,
}

impl Dialect for OpenAiChat {
    type Writer = ChunkWriter;

    fn whole(&self, model: &str, resp: &CompletionResponse) -> Value {
        completion_json(
            &completion_id(),
            model,
            tamma_sandbox::time::now_unix_secs(),
            resp,
        )
    }

    fn writer(self, model: String) -> ChunkWriter {
        ChunkWriter::new(model, self.include_usage)
    }
}

impl StreamWriter for ChunkWriter {
    fn events(&mut self, c: &StreamChunk) -> Vec<sse::Frame> {
        ChunkWriter::events(self, c)
            .iter()
            .map(|json| sse::Frame::data(json))
            .collect()
    }

    fn end(&mut self) -> Vec<sse::Frame> {
        let mut tail: Vec<_> = self
            .finish(FinishReason::Stop)
            .iter()
            .map(|json| sse::Frame::data(json))
            .collect();
        tail.push(sse::Frame::done());
        tail
    }

    fn error(&mut self, e: &ApiError) -> sse::Frame {
        sse::Frame::data(&e.body().to_string())
    }

    fn usage(&self) -> Option<Usage> {
        ChunkWriter::usage(self)
    }
}

/// `GET /v1/models`
pub async fn list_models(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
) -> Response {
    let caller = caller.map(|c| c.0).unwrap_or_default();
    let mut data = Vec::new();
    for s in state.registry.snapshot() {
        if s.state != ProviderState::Ready {
            continue;
        }
        let created = s.registered_at_unix_ms / 1000;
        for m in &s.capabilities.models {
            if !caller.allows_id(&format!("{}/{}", s.name, m.id)) {
                continue;
            }
            data.push(model_json(
                &format!("{}/{}", s.name, m.id),
                created,
                &s.name,
                Some(m),
            ));
        }
        for m in &s.capabilities.embedding_models {
            let id = format!("{}/{}", s.name, m.id);
            if caller.allows_id(&id) {
                data.push(super::embeddings_api::model_json(&id, created, &s.name, m));
            }
        }
    }
    for name in state.config.load().routes.keys() {
        if !caller.allows_id(name) {
            continue;
        }
        data.push(json!({
            "id": name,
            "object": "model",
            "created": state.started_unix,
            "owned_by": "tamma-route",
        }));
    }
    let body = json!({ "object": "list", "data": data });
    state
        .metrics
        .record_request("models", "", 200, std::time::Duration::ZERO);
    json_response(StatusCode::OK, &body)
}

fn model_json(
    id: &str,
    created: u64,
    owner: &str,
    m: Option<&tamma_sandbox::types::ModelInfo>,
) -> Value {
    let mut v = json!({ "id": id, "object": "model", "created": created, "owned_by": owner });
    if let Some(m) = m {
        v["tamma"] = json!({
            "name": m.name,
            "context_window": m.context_window,
            "max_output_tokens": m.max_output_tokens,
            "supports_streaming": m.supports_streaming,
            "supports_tools": m.supports_tools,
            "supports_images": m.supports_images,
        });
    }
    v
}

/// `GET /v1/models/{id}` (the id contains a `/`).
pub async fn get_model(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    Path(id): Path<String>,
) -> Response {
    let caller = caller.map(|c| c.0).unwrap_or_default();
    if !caller.allows_id(&id) {
        // As if it did not exist: a key learns nothing of models it may not use.
        return ApiError::model_not_found(format!("the model {id:?} does not exist"))
            .into_response();
    }
    if state.config.load().routes.contains_key(&id) {
        return json_response(
            StatusCode::OK,
            &json!({ "id": id, "object": "model", "created": state.started_unix, "owned_by": "tamma-route" }),
        );
    }
    if let Some((p, m)) = id.split_once('/') {
        if let Ok(s) = state.registry.snapshot_of(p) {
            if s.state == ProviderState::Ready {
                let created = s.registered_at_unix_ms / 1000;
                if let Some(info) = s.capabilities.models.iter().find(|x| x.id == m) {
                    return json_response(StatusCode::OK, &model_json(&id, created, p, Some(info)));
                }
                // The same object `GET /v1/models` lists for an embedding model.
                if let Some(info) = s.capabilities.embedding_models.iter().find(|x| x.id == m) {
                    return json_response(
                        StatusCode::OK,
                        &super::embeddings_api::model_json(&id, created, p, info),
                    );
                }
            }
        }
    }
    ApiError::model_not_found(format!("the model {id:?} does not exist")).into_response()
}

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_openai_request_shapes() {
        let body = json!({
            "model": "echo/echo-1",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "max_tokens": 5, "max_completion_tokens": 7,
            "temperature": 0.5, "top_p": 0.9, "stop": "END",
            "stream": true, "stream_options": {"include_usage": true},
            "metadata": {"fail": "timeout"},
            "user": "ignored", "seed": 1
        });
        let c = parse_chat_request(body.to_string().as_bytes()).unwrap();
        assert_eq!(c.model, "echo/echo-1");
        assert!(c.stream && c.include_usage);
        let r = &c.request;
        assert_eq!(r.messages.len(), 4);
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[1].content, "a\nb");
        assert_eq!(r.messages[2].tool_calls[0].arguments, "{\"x\":1}");
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(r.tools[0].parameters_schema, "{\"type\":\"object\"}");
        assert_eq!(r.max_tokens, Some(7));
        assert_eq!(r.stop, ["END"]);
        assert_eq!(r.metadata, [("fail".to_string(), "timeout".to_string())]);
    }

    #[test]
    fn refuses_what_cannot_be_honoured() {
        for (body, param) in [
            (
                json!({"messages": [{"role":"user","content":"x"}]}),
                "model",
            ),
            (json!({"model": "a/b", "messages": []}), "messages"),
            (
                json!({"model": "a/b", "messages": [{"role":"wizard","content":"x"}]}),
                "messages",
            ),
            (
                json!({"model": "a/b", "messages": [{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "a/b", "n": 2, "messages": [{"role":"user","content":"x"}]}),
                "n",
            ),
            (
                json!({"model": "a/b", "temperature": 3, "messages": [{"role":"user","content":"x"}]}),
                "temperature",
            ),
            (
                json!({"model": "a/b", "stop": 3, "messages": [{"role":"user","content":"x"}]}),
                "stop",
            ),
        ] {
            let e = parse_chat_request(body.to_string().as_bytes()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
        assert!(parse_chat_request(b"{not json").is_err());
    }

    #[test]
    fn chunks_follow_openai_framing() {
        let mut w = ChunkWriter::new("echo/echo-1".into(), true);
        let c = StreamChunk {
            id: "x".into(),
            model: "echo-1".into(),
            delta: "hi".into(),
            tool_call_deltas: vec![],
            finish_reason: Some(FinishReason::Stop),
            usage: Some(Usage {
                input_tokens: 1,
                output_tokens: 1,
                total_tokens: 2,
                ..Default::default()
            }),
        };
        let evs: Vec<Value> = w
            .events(&c)
            .iter()
            .map(|json| serde_json::from_str(json).unwrap())
            .collect();
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(evs[0]["choices"][0]["delta"]["content"], "hi");
        assert_eq!(evs[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(evs[2]["choices"], json!([]));
        assert_eq!(evs[2]["usage"]["total_tokens"], 2);
        assert!(w.finish(FinishReason::Stop).is_empty(), "finishes once");
    }
}
