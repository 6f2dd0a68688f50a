//! The Anthropic Messages wire format: request bodies, responses, named stream
//! events and error bodies, translated to and from the provider contract.
//!
//! Nothing here touches WASI, so it is unit-tested on the host:
//! `cargo test -p tamma-guest-anthropic`.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Map, Value};
use tamma_guest_sdk::http::{status_error, ByteSource, SseReader};
use tamma_guest_sdk::sse::SseEvent;
use tamma_guest_sdk::{
    ChunkStream, CompletionRequest, CompletionResponse, FinishReason, ModelInfo, ProviderError,
    Role, StreamChunk, ToolCall, ToolCallDelta, Usage,
};

/// Longest piece of an upstream body quoted in a message.
const QUOTE_MAX: usize = 300;

/// Options of one request that do not come from the request itself.
pub struct BodyOptions<'a> {
    /// The model to ask.
    pub model: &'a str,
    /// `max_tokens` when the request sets none (the API requires it).
    pub default_max_tokens: u32,
    /// Whether to ask for an SSE stream.
    pub stream: bool,
}

/// The JSON body of `POST {base}/messages`.
///
/// System messages become the top-level `system` field (joined by a blank line);
/// an assistant's tool calls become `tool_use` blocks; `tool` messages become
/// `tool_result` blocks in a `user` turn; consecutive turns of one role are merged,
/// because the API wants all results of one assistant turn in the next user turn.
pub fn messages_body(
    req: &CompletionRequest,
    opts: &BodyOptions<'_>,
) -> Result<Value, ProviderError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        let (role, blocks) = match m.role {
            Role::System => {
                if !m.content.is_empty() {
                    system.push(m.content.as_str());
                }
                continue;
            }
            Role::User => ("user", text_block(&m.content)),
            Role::Assistant => {
                let mut blocks = text_block(&m.content);
                for c in &m.tool_calls {
                    let input = tool_input(&c.name, &c.arguments)?;
                    blocks.push(
                        json!({ "type": "tool_use", "id": c.id, "name": c.name, "input": input }),
                    );
                }
                ("assistant", blocks)
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().ok_or_else(|| {
                    ProviderError::invalid_request(
                        "a tool message needs the tool-call-id it answers",
                    )
                })?;
                (
                    "user",
                    vec![json!({ "type": "tool_result", "tool_use_id": id, "content": m.content })],
                )
            }
        };
        if blocks.is_empty() {
            // The API refuses empty text blocks; an empty message carries nothing.
            continue;
        }
        match turns.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    if turns.is_empty() {
        return Err(ProviderError::invalid_request(
            "the conversation has no user or assistant content",
        ));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(opts.model));
    body.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(opts.default_max_tokens)),
    );
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(role, content)| json!({ "role": role, "content": content }))
                .collect(),
        ),
    );
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), f32_json(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), f32_json(p));
    }
    if !req.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(req.stop));
    }
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                let mut tool = json!({ "name": t.name, "input_schema": schema_json(&t.name, &t.parameters_schema)? });
                if !t.description.is_empty() {
                    tool["description"] = json!(t.description);
                }
                Ok(tool)
            })
            .collect::<Result<Vec<_>, ProviderError>>()?;
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(user) = req.metadata("user_id").or_else(|| req.metadata("user")) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    if opts.stream {
        body.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(body))
}

fn text_block(text: &str) -> Vec<Value> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![json!({ "type": "text", "text": text })]
    }
}

/// A tool call's arguments as the JSON object `tool_use.input` must be.
fn tool_input(tool: &str, arguments: &str) -> Result<Value, ProviderError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_str(arguments).map_err(|e| {
        ProviderError::invalid_request(format!(
            "tool call `{tool}`: arguments are not valid JSON: {e}"
        ))
    })?;
    if !v.is_object() {
        return Err(ProviderError::invalid_request(format!(
            "tool call `{tool}`: arguments must be a JSON object"
        )));
    }
    Ok(v)
}

/// A tool's JSON Schema, parsed; an empty schema means "no arguments".
fn schema_json(tool: &str, schema: &str) -> Result<Value, ProviderError> {
    if schema.trim().is_empty() {
        return Ok(json!({ "type": "object", "properties": {} }));
    }
    serde_json::from_str(schema).map_err(|e| {
        ProviderError::invalid_request(format!(
            "tool `{tool}`: parameters-schema is not valid JSON: {e}"
        ))
    })
}

/// `0.7f32` as `0.7`, not `0.699999988079071`.
fn f32_json(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn u32_at(v: &Value, key: &str) -> Option<u32> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|n| n.min(u32::MAX as u64) as u32)
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
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

fn parse_json(body: &[u8], what: &str) -> Result<Value, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::provider(format!(
            "malformed {what} from upstream ({e}): {}",
            quote(&String::from_utf8_lossy(body))
        ))
    })
}

/// Anthropic's `stop_reason`.
pub fn stop_reason(s: &str) -> FinishReason {
    match s {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        // end_turn, stop_sequence, pause_turn and anything new.
        _ => FinishReason::Stop,
    }
}

/// Token counts as Anthropic reports them. Its `input_tokens` excludes prompt-cache
/// reads and writes; the contract's `input-tokens` is the whole prompt, so they are
/// added back (and also reported separately).
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    input: u32,
    output: u32,
    cache_read: Option<u32>,
    cache_write: Option<u32>,
}

impl Counts {
    /// Updates from a `usage` object; absent fields keep their value (the stream's
    /// `message_delta` usage is cumulative and usually carries `output_tokens` only).
    fn update(&mut self, u: &Value) {
        if let Some(n) = u32_at(u, "input_tokens") {
            self.input = n;
        }
        if let Some(n) = u32_at(u, "output_tokens") {
            self.output = n;
        }
        if let Some(n) = u32_at(u, "cache_read_input_tokens") {
            self.cache_read = Some(n);
        }
        if let Some(n) = u32_at(u, "cache_creation_input_tokens") {
            self.cache_write = Some(n);
        }
    }

    fn usage(&self) -> Usage {
        let input = self
            .input
            .saturating_add(self.cache_read.unwrap_or(0))
            .saturating_add(self.cache_write.unwrap_or(0));
        let mut u = Usage::from_counts(input, self.output);
        u.cache_read_tokens = self.cache_read;
        u.cache_write_tokens = self.cache_write;
        u
    }
}

/// A non-streamed `message`.
pub fn parse_message(
    body: &[u8],
    requested_model: &str,
) -> Result<CompletionResponse, ProviderError> {
    let v = parse_json(body, "message")?;
    if str_at(&v, "type") == Some("error") {
        return Err(in_band_error(v.get("error").unwrap_or(&Value::Null)));
    }
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::provider("upstream message has no `content` array"))?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for b in blocks {
        match str_at(b, "type") {
            Some("text") => content.push_str(str_at(b, "text").unwrap_or("")),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: str_at(b, "id").unwrap_or("").to_string(),
                name: str_at(b, "name").unwrap_or("").to_string(),
                arguments: b
                    .get("input")
                    .map_or_else(|| "{}".to_string(), Value::to_string),
            }),
            // thinking, redacted_thinking, server tool blocks: not in the contract.
            _ => {}
        }
    }
    let finish = match str_at(&v, "stop_reason") {
        Some(r) => stop_reason(r),
        None if !tool_calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    let mut counts = Counts::default();
    if let Some(u) = v.get("usage") {
        counts.update(u);
    }
    Ok(CompletionResponse {
        id: str_at(&v, "id").unwrap_or("").to_string(),
        model: str_at(&v, "model").unwrap_or(requested_model).to_string(),
        content,
        tool_calls,
        finish_reason: finish,
        usage: counts.usage(),
    })
}

fn is_context_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("prompt is too long") || m.contains("context window") || m.contains("context length")
}

fn is_credit_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("credit balance") || m.contains("billing")
}

/// The error `type` and message of `{"type":"error","error":{"type","message"}}`;
/// other bodies get their text quoted.
fn error_parts(body: &[u8]) -> (Option<String>, String) {
    let text = String::from_utf8_lossy(body);
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let err = v.get("error").unwrap_or(&v);
            let kind = str_at(err, "type").map(String::from);
            let message = str_at(err, "message")
                .map(String::from)
                .unwrap_or_else(|| quote(&text));
            (kind, message)
        }
        Err(_) => (None, quote(&text)),
    }
}

/// The provider error for a non-2xx answer.
pub fn error_from_status(status: u16, retry_after_ms: Option<u64>, body: &[u8]) -> ProviderError {
    let (kind, message) = error_parts(body);
    let detail = match &kind {
        Some(k) => format!("{k}: {message}"),
        None => message.clone(),
    };
    match status {
        400 if is_context_error(&message) => {
            ProviderError::context_too_long(format!("HTTP 400: {detail}"))
        }
        400 | 402 if is_credit_error(&message) || kind.as_deref() == Some("billing_error") => {
            ProviderError::quota_exceeded(format!("HTTP {status}: {detail}"))
        }
        404 if kind.as_deref() == Some("not_found_error")
            && message.to_ascii_lowercase().contains("model") =>
        {
            ProviderError::model_not_found(format!("HTTP 404: {detail}"))
        }
        404 => ProviderError::provider(format!(
            "HTTP 404 (is base_url right? it should end in /v1): {detail}"
        )),
        413 => ProviderError::invalid_request(format!("HTTP 413, request too large: {detail}")),
        // 529 is Anthropic's "overloaded": temporary, worth retrying.
        529 => ProviderError::service_unavailable(format!("HTTP 529: {detail}"))
            .with_retry_after_ms(retry_after_ms),
        _ => status_error(status, detail, retry_after_ms),
    }
}

/// The provider error for an `error` object inside a 200 body or an `error` event.
pub fn in_band_error(err: &Value) -> ProviderError {
    let kind = str_at(err, "type").unwrap_or("");
    let message = str_at(err, "message").unwrap_or("(no message)");
    let msg = format!("upstream error ({kind}): {message}");
    match kind {
        "overloaded_error" | "api_error" => ProviderError::service_unavailable(msg),
        "rate_limit_error" => ProviderError::rate_limited(msg, None),
        "authentication_error" | "permission_error" => ProviderError::invalid_api_key(msg),
        "not_found_error" => ProviderError::model_not_found(msg),
        "timeout_error" => ProviderError::timeout(msg),
        "billing_error" => ProviderError::quota_exceeded(msg),
        "invalid_request_error" if is_context_error(message) => {
            ProviderError::context_too_long(msg)
        }
        "invalid_request_error" | "request_too_large" => ProviderError::invalid_request(msg),
        _ => ProviderError::provider(msg),
    }
}

/// One page of `GET {base}/models`: the models, and the id to continue after when
/// `has_more`.
pub fn parse_models_page(body: &[u8]) -> Result<(Vec<ModelInfo>, Option<String>), ProviderError> {
    let v = parse_json(body, "model list")?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::provider("upstream model list has no `data` array"))?;
    let models = data
        .iter()
        .filter_map(|m| {
            let id = str_at(m, "id")?;
            let mut info = model_info(id, None, None);
            if let Some(name) = str_at(m, "display_name") {
                info.name = name.to_string();
            }
            Some(info)
        })
        .collect();
    let next = if v.get("has_more").and_then(Value::as_bool) == Some(true) {
        str_at(&v, "last_id").map(String::from)
    } else {
        None
    };
    Ok((models, next))
}

/// What is known about a model id; every Claude model has a 200k context, output
/// limits differ by family. Unknown ids get the defaults given (or 200k / 8192).
pub fn model_info(
    id: &str,
    default_context: Option<u32>,
    default_output: Option<u32>,
) -> ModelInfo {
    let out = if id.contains("opus-4") {
        32_000
    } else if id.contains("sonnet-4") || id.contains("haiku-4") || id.contains("3-7-sonnet") {
        64_000
    } else if id.starts_with("claude") {
        8_192
    } else {
        default_output.unwrap_or(8_192)
    };
    let ctx = if id.starts_with("claude") {
        200_000
    } else {
        default_context.unwrap_or(200_000)
    };
    let mut info = ModelInfo::new(id, ctx, out);
    info.supports_tools = true;
    info
}

/// A streamed message read from named SSE events. Ends with `Ok(None)` only after
/// `message_stop`; a body that ends before it is a `provider-error`, an `error`
/// event is mapped like an error body, `ping`s and unknown events are skipped (the
/// API reserves the right to add event types).
pub struct MessageStream<S: ByteSource> {
    events: SseReader<S>,
    id: String,
    model: String,
    counts: Counts,
    stop: Option<FinishReason>,
    /// Content-block index → position among this message's tool calls: the
    /// contract numbers tool calls, Anthropic numbers all blocks (text included).
    tool_blocks: BTreeMap<u64, u32>,
    ready: VecDeque<StreamChunk>,
    done: bool,
}

impl<S: ByteSource> MessageStream<S> {
    /// A stream over `events`, answering `model` (until `message_start` names it).
    pub fn new(events: SseReader<S>, model: &str) -> Self {
        MessageStream {
            events,
            id: String::new(),
            model: model.to_string(),
            counts: Counts::default(),
            stop: None,
            tool_blocks: BTreeMap::new(),
            ready: VecDeque::new(),
            done: false,
        }
    }

    fn chunk(&self, text: &str) -> StreamChunk {
        StreamChunk::text(&self.id, &self.model, text)
    }

    fn tool_delta(&self, block: u64, d: ToolCallDelta) -> Result<StreamChunk, ProviderError> {
        let index = *self.tool_blocks.get(&block).ok_or_else(|| {
            ProviderError::provider(format!(
                "stream sent tool input for block {block}, which is not a tool_use block"
            ))
        })?;
        let mut c = self.chunk("");
        c.tool_call_deltas = vec![ToolCallDelta { index, ..d }];
        Ok(c)
    }

    fn on_event(&mut self, ev: &SseEvent) -> Result<(), ProviderError> {
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| {
            ProviderError::provider(format!(
                "malformed `{}` event from upstream ({e}): {}",
                ev.event,
                quote(&ev.data)
            ))
        })?;
        // Events are named; the data's `type` says the same, and is the fallback
        // for a server that leaves out the `event:` line.
        let kind = if ev.event == "message" {
            str_at(&v, "type").unwrap_or("")
        } else {
            ev.event.as_str()
        };
        match kind {
            "ping" => {}
            "error" => return Err(in_band_error(v.get("error").unwrap_or(&v))),
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                if let Some(id) = str_at(m, "id") {
                    self.id = id.to_string();
                }
                if let Some(model) = str_at(m, "model") {
                    self.model = model.to_string();
                }
                if let Some(u) = m.get("usage") {
                    self.counts.update(u);
                }
            }
            "content_block_start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = v.get("content_block").unwrap_or(&Value::Null);
                match str_at(block, "type") {
                    Some("tool_use") => {
                        let position = self.tool_blocks.len() as u32;
                        self.tool_blocks.insert(index, position);
                        let c = self.tool_delta(
                            index,
                            ToolCallDelta {
                                index: position,
                                id: str_at(block, "id").map(String::from),
                                name: str_at(block, "name").map(String::from),
                                arguments_delta: String::new(),
                            },
                        )?;
                        self.ready.push_back(c);
                    }
                    Some("text") => {
                        let text = str_at(block, "text").unwrap_or("");
                        if !text.is_empty() {
                            self.ready.push_back(self.chunk(text));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let d = v.get("delta").unwrap_or(&Value::Null);
                match str_at(d, "type") {
                    Some("text_delta") => {
                        let text = str_at(d, "text").unwrap_or("");
                        if !text.is_empty() {
                            self.ready.push_back(self.chunk(text));
                        }
                    }
                    Some("input_json_delta") => {
                        let part = str_at(d, "partial_json").unwrap_or("");
                        // The API opens each tool block with an empty fragment.
                        if !part.is_empty() {
                            let c = self.tool_delta(
                                index,
                                ToolCallDelta {
                                    index: 0,
                                    id: None,
                                    name: None,
                                    arguments_delta: part.to_string(),
                                },
                            )?;
                            self.ready.push_back(c);
                        }
                    }
                    // thinking_delta, signature_delta, citations_delta: not in the contract.
                    _ => {}
                }
            }
            "content_block_stop" => {}
            "message_delta" => {
                if let Some(r) = v.get("delta").and_then(|d| str_at(d, "stop_reason")) {
                    self.stop = Some(stop_reason(r));
                }
                if let Some(u) = v.get("usage") {
                    self.counts.update(u);
                }
            }
            "message_stop" => {
                let finish = self.stop.unwrap_or(if self.tool_blocks.is_empty() {
                    FinishReason::Stop
                } else {
                    FinishReason::ToolCalls
                });
                let last = self.chunk("").finish(finish, self.counts.usage());
                self.ready.push_back(last);
                self.done = true;
            }
            _ => {}
        }
        Ok(())
    }
}

impl<S: ByteSource + 'static> ChunkStream for MessageStream<S> {
    fn next(&mut self) -> Result<Option<StreamChunk>, ProviderError> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Ok(Some(c));
            }
            if self.done {
                return Ok(None);
            }
            match self.events.next_event()? {
                Some(ev) => self.on_event(&ev)?,
                None => {
                    return Err(ProviderError::provider(
                        "upstream stream ended before `message_stop`: the answer may be truncated",
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_guest_sdk::{collect_stream, ErrorCode, Message, ToolDefinition};

    fn opts(stream: bool) -> BodyOptions<'static> {
        BodyOptions {
            model: "claude-x",
            default_max_tokens: 1024,
            stream,
        }
    }

    #[test]
    fn body_moves_system_out_and_merges_tool_results() {
        let mut r = CompletionRequest::new(
            "claude-x",
            vec![
                Message::system("rule one"),
                Message::system("rule two"),
                Message::user("weather in Oslo and Rome?"),
            ],
        );
        r.messages.push(Message {
            role: Role::Assistant,
            content: "Checking.".into(),
            name: None,
            tool_call_id: None,
            tool_calls: vec![
                ToolCall {
                    id: "toolu_1".into(),
                    name: "w".into(),
                    arguments: "{\"city\":\"Oslo\"}".into(),
                },
                ToolCall {
                    id: "toolu_2".into(),
                    name: "w".into(),
                    arguments: "".into(),
                },
            ],
        });
        for (id, out) in [("toolu_1", "sunny"), ("toolu_2", "rain")] {
            r.messages.push(Message {
                role: Role::Tool,
                content: out.into(),
                name: None,
                tool_call_id: Some(id.into()),
                tool_calls: vec![],
            });
        }
        r.tools = vec![ToolDefinition {
            name: "w".into(),
            description: "weather".into(),
            parameters_schema: "{\"type\":\"object\"}".into(),
        }];
        r.stop = vec!["###".into()];
        r.temperature = Some(0.2);
        r.metadata = vec![("user_id".into(), "u1".into())];
        let b = messages_body(&r, &opts(true)).unwrap();
        assert_eq!(b["system"], "rule one\n\nrule two");
        assert_eq!(b["max_tokens"], 1024);
        let msgs = b["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(
            msgs[0],
            json!({"role":"user","content":[{"type":"text","text":"weather in Oslo and Rome?"}]})
        );
        assert_eq!(
            msgs[1]["content"][1],
            json!({"type":"tool_use","id":"toolu_1","name":"w","input":{"city":"Oslo"}})
        );
        assert_eq!(msgs[1]["content"][2]["input"], json!({}));
        assert_eq!(msgs[2]["role"], "user");
        assert_eq!(
            msgs[2]["content"][1],
            json!({"type":"tool_result","tool_use_id":"toolu_2","content":"rain"})
        );
        assert_eq!(
            b["tools"][0],
            json!({"name":"w","description":"weather","input_schema":{"type":"object"}})
        );
        assert_eq!(b["stop_sequences"], json!(["###"]));
        assert_eq!(b["temperature"].to_string(), "0.2");
        assert_eq!(b["metadata"]["user_id"], "u1");
        assert_eq!(b["stream"], true);
        let mut r2 = r.clone();
        r2.max_tokens = Some(7);
        let b = messages_body(&r2, &opts(false)).unwrap();
        assert_eq!(b["max_tokens"], 7);
        assert!(b.get("stream").is_none());
    }

    #[test]
    fn body_rejects_bad_input() {
        let only_system = CompletionRequest::new("m", vec![Message::system("x")]);
        assert_eq!(
            messages_body(&only_system, &opts(false)).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let mut r = CompletionRequest::new("m", vec![Message::user("x")]);
        r.messages.push(Message {
            role: Role::Assistant,
            content: String::new(),
            name: None,
            tool_call_id: None,
            tool_calls: vec![ToolCall {
                id: "t".into(),
                name: "f".into(),
                arguments: "[1]".into(),
            }],
        });
        assert!(messages_body(&r, &opts(false))
            .unwrap_err()
            .message
            .contains("JSON object"));
        let r = CompletionRequest::new("m", vec![Message::new(Role::Tool, "x")]);
        assert!(messages_body(&r, &opts(false))
            .unwrap_err()
            .message
            .contains("tool-call-id"));
    }

    #[test]
    fn parses_a_message_with_tool_use_and_cache_usage() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x-1",
            "content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"Let me look."},
                       {"type":"tool_use","id":"toolu_1","name":"w","input":{"city":"Oslo"}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":10,"output_tokens":20,"cache_read_input_tokens":100,"cache_creation_input_tokens":5}}"#;
        let r = parse_message(body, "claude-x").unwrap();
        assert_eq!(
            (r.id.as_str(), r.model.as_str(), r.content.as_str()),
            ("msg_1", "claude-x-1", "Let me look.")
        );
        assert_eq!(r.tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            (
                r.usage.input_tokens,
                r.usage.output_tokens,
                r.usage.total_tokens
            ),
            (115, 20, 135)
        );
        assert_eq!(
            (r.usage.cache_read_tokens, r.usage.cache_write_tokens),
            (Some(100), Some(5))
        );
        for (reason, finish) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
        ] {
            let body =
                json!({"id":"m","content":[{"type":"text","text":"x"}],"stop_reason":reason})
                    .to_string();
            assert_eq!(
                parse_message(body.as_bytes(), "m").unwrap().finish_reason,
                finish
            );
        }
        assert!(parse_message(b"{\"id\":", "m")
            .unwrap_err()
            .message
            .contains("malformed"));
        let e = parse_message(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            "m",
        )
        .unwrap_err();
        assert_eq!((e.code, e.retryable), (ErrorCode::ServiceUnavailable, true));
    }

    fn err(status: u16, retry: Option<u64>, kind: &str, message: &str) -> ProviderError {
        let body = json!({"type":"error","error":{"type":kind,"message":message}}).to_string();
        error_from_status(status, retry, body.as_bytes())
    }

    #[test]
    fn status_mapping() {
        assert_eq!(
            err(401, None, "authentication_error", "invalid x-api-key").code,
            ErrorCode::InvalidApiKey
        );
        assert_eq!(
            err(403, None, "permission_error", "no").code,
            ErrorCode::InvalidApiKey
        );
        assert_eq!(
            err(404, None, "not_found_error", "model: claude-nope").code,
            ErrorCode::ModelNotFound
        );
        assert_eq!(
            err(404, None, "not_found_error", "Not found").code,
            ErrorCode::ProviderError
        );
        let e = err(429, Some(3000), "rate_limit_error", "slow down");
        assert_eq!(
            (e.code, e.retryable, e.retry_after_ms),
            (ErrorCode::RateLimitExceeded, true, Some(3000))
        );
        let e = err(529, None, "overloaded_error", "Overloaded");
        assert_eq!((e.code, e.retryable), (ErrorCode::ServiceUnavailable, true));
        assert!(e.message.contains("overloaded_error: Overloaded"));
        assert_eq!(
            err(500, None, "api_error", "x").code,
            ErrorCode::ServiceUnavailable
        );
        assert_eq!(
            err(
                400,
                None,
                "invalid_request_error",
                "prompt is too long: 210000 tokens > 200000 maximum"
            )
            .code,
            ErrorCode::ContextTooLong
        );
        assert_eq!(
            err(
                400,
                None,
                "invalid_request_error",
                "Your credit balance is too low"
            )
            .code,
            ErrorCode::QuotaExceeded
        );
        assert_eq!(
            err(
                400,
                None,
                "invalid_request_error",
                "max_tokens: Field required"
            )
            .code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(413, None, "request_too_large", "too big").code,
            ErrorCode::InvalidRequest
        );
        let e = error_from_status(502, None, b"<html>bad gateway</html>");
        assert_eq!(e.code, ErrorCode::ServiceUnavailable);
        assert!(e.message.contains("bad gateway"));
    }

    #[test]
    fn models_pages() {
        let (m, next) = parse_models_page(br#"{"data":[{"type":"model","id":"claude-sonnet-4-5","display_name":"Claude Sonnet 4.5"},{"id":"claude-3-5-haiku-latest"}],"has_more":true,"last_id":"claude-3-5-haiku-latest"}"#).unwrap();
        assert_eq!(m[0].name, "Claude Sonnet 4.5");
        assert_eq!(
            (m[0].context_window, m[0].max_output_tokens),
            (200_000, 64_000)
        );
        assert_eq!(m[1].max_output_tokens, 8_192);
        assert_eq!(next.as_deref(), Some("claude-3-5-haiku-latest"));
        let (_, next) = parse_models_page(br#"{"data":[],"has_more":false}"#).unwrap();
        assert!(next.is_none());
        assert!(parse_models_page(b"[]").is_err());
    }

    fn ev(name: &str, data: Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    fn tool_stream() -> String {
        [
            ev("message_start", json!({"type":"message_start","message":{"id":"msg_1","model":"claude-x","content":[],"usage":{"input_tokens":12,"output_tokens":1}}})),
            ev("ping", json!({"type":"ping"})),
            ev("content_block_start", json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})),
            ev("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me "}})),
            ev("ping", json!({"type":"ping"})),
            ev("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"check."}})),
            ev("content_block_stop", json!({"type":"content_block_stop","index":0})),
            ev("content_block_start", json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"w","input":{}}})),
            ev("content_block_delta", json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}})),
            ev("content_block_delta", json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Os"}})),
            ev("content_block_delta", json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"lo\"}"}})),
            ev("content_block_stop", json!({"type":"content_block_stop","index":1})),
            ev("future_event", json!({"type":"future_event"})),
            ev("message_delta", json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":30}})),
            ev("message_stop", json!({"type":"message_stop"})),
        ]
        .concat()
    }

    fn stream_of(text: &str) -> MessageStream<VecDeque<Vec<u8>>> {
        let pieces: VecDeque<Vec<u8>> = text.as_bytes().chunks(11).map(|c| c.to_vec()).collect();
        MessageStream::new(SseReader::new(pieces), "claude-x")
    }

    #[test]
    fn stream_maps_blocks_to_text_and_tool_call_deltas() {
        let mut s = stream_of(&tool_stream());
        let mut chunks = Vec::new();
        while let Some(c) = s.next().unwrap() {
            chunks.push(c);
        }
        let tool: Vec<_> = chunks
            .iter()
            .flat_map(|c| c.tool_call_deltas.clone())
            .collect();
        assert!(tool.iter().all(|d| d.index == 0), "block 1 is tool call 0");
        assert_eq!(tool[0].id.as_deref(), Some("toolu_1"));
        let last = chunks.last().unwrap();
        assert_eq!(last.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(
            last.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((12, 30))
        );
        assert!(chunks.iter().all(|c| c.id == "msg_1"));
        let r = collect_stream(&mut stream_of(&tool_stream())).unwrap();
        assert_eq!(r.content, "Let me check.");
        assert_eq!(r.tool_calls.len(), 1);
        assert_eq!(r.tool_calls[0].arguments, "{\"city\": \"Oslo\"}");
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    }

    #[test]
    fn stream_errors() {
        let cut = tool_stream().replace(&ev("message_stop", json!({"type":"message_stop"})), "");
        let e = collect_stream(&mut stream_of(&cut)).unwrap_err();
        assert!(e.message.contains("message_stop"));
        let mid = [
            ev("message_start", json!({"type":"message_start","message":{"id":"m","model":"x","usage":{"input_tokens":1}}})),
            ev("error", json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})),
        ]
        .concat();
        let e = collect_stream(&mut stream_of(&mid)).unwrap_err();
        assert_eq!((e.code, e.retryable), (ErrorCode::ServiceUnavailable, true));
        let e = collect_stream(&mut stream_of(
            "event: content_block_delta\ndata: {\"type\": \n\n",
        ))
        .unwrap_err();
        assert!(e.message.contains("malformed `content_block_delta`"));
        let stray = ev(
            "content_block_delta",
            json!({"index":3,"delta":{"type":"input_json_delta","partial_json":"{"}}),
        );
        assert_eq!(
            collect_stream(&mut stream_of(&stray)).unwrap_err().code,
            ErrorCode::ProviderError
        );
    }

    #[test]
    fn unnamed_events_fall_back_to_the_data_type() {
        let text = "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\ndata: {\"type\":\"message_stop\"}\n\n";
        let r = collect_stream(&mut stream_of(text)).unwrap();
        assert_eq!((r.id.as_str(), r.finish_reason), ("m", FinishReason::Stop));
    }
}
