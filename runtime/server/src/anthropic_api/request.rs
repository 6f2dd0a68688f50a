//! A Messages API request, translated to the provider contract.
//!
//! Read leniently, as Anthropic's API does (unknown fields such as `top_k`,
//! `thinking` or `service_tier` are ignored), with refusals where the contract
//! cannot carry what was asked: image and document blocks, server tools, a
//! `system` role inside `messages` are 400, never silently dropped.
//!
//! - `system`: a string or text blocks, the first (system) message.
//! - `messages[].content`: a string or blocks. `text` joins with a newline;
//!   `tool_use` (assistant) becomes a tool call whose arguments are the `input`
//!   JSON; each `tool_result` (user) becomes a tool message answering its
//!   `tool_use_id`, placed before the turn's text, as the contract (like
//!   OpenAI's format) wants tool answers right after the call. `thinking` and
//!   `redacted_thinking` blocks of earlier turns are dropped: no provider of
//!   the contract can take them back.
//! - `tool_choice`: `auto` as is; `none` sends no tools (what chat does with
//!   `"none"`); `tool` sends only the named tool; `any` sends all of them. The
//!   contract has no "must call a tool" flag, so `any` and `tool` narrow what a
//!   model may call but cannot force it to call one.
//! - `metadata.user_id`: the request metadata `user_id` (the `openai` and
//!   `anthropic` providers pass it upstream as the end user).

use serde_json::{Map, Value};

use crate::api_error::ApiError;
use crate::completion_call::Parsed;
use crate::openai_api::{bad, json_object, model_of, opt_f32, opt_u32};
use tamma_sandbox::types::{CompletionRequest, Message, Role, ToolCall, ToolDefinition};

use super::Messages;

/// Parse a `POST /v1/messages` body.
pub fn parse_messages_request(body: &[u8]) -> Result<Parsed<Messages>, ApiError> {
    let obj = &json_object(body)?;
    let model = model_of(obj, "model: Field required")?;
    // Anthropic requires it; so does this gateway, so a client learns it here.
    let max_tokens = opt_u32(obj, "max_tokens")?
        .ok_or_else(|| bad("max_tokens: Field required", "max_tokens"))?;
    let mut messages = Vec::new();
    if let Some(system) = obj.get("system").filter(|s| !s.is_null()) {
        let text = text_of(system, "system")?;
        if !text.is_empty() {
            messages.push(Message::new(Role::System, text));
        }
    }
    let raw = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages: Field required (an array)", "messages"))?;
    if raw.is_empty() {
        return Err(bad(
            "messages: at least one message is required",
            "messages",
        ));
    }
    for (i, m) in raw.iter().enumerate() {
        turn(m, &format!("messages.{i}"), &mut messages)?;
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream must be a boolean", "stream")),
    };
    Ok(Parsed {
        model,
        request: CompletionRequest {
            model: String::new(),
            messages,
            max_tokens: Some(max_tokens),
            temperature: opt_f32(obj, "temperature", (0.0, 1.0))?,
            top_p: opt_f32(obj, "top_p", (0.0, 1.0))?,
            stop: stop_sequences(obj)?,
            tools: tools(obj)?,
            metadata: metadata(obj)?,
        },
        stream,
        dialect: Messages,
    })
}

/// One turn of `messages`, appended as one or more contract messages.
fn turn(m: &Value, at: &str, out: &mut Vec<Message>) -> Result<(), ApiError> {
    let role = match m.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        other => {
            return Err(bad(
                format!("{at}.role: {other:?} is not one of user, assistant (the system prompt is the top-level `system`)"),
                "messages",
            ))
        }
    };
    let blocks = match m.get("content") {
        Some(Value::String(s)) => {
            out.push(Message::new(role, s.clone()));
            return Ok(());
        }
        Some(Value::Array(b)) => b,
        _ => {
            return Err(bad(
                format!("{at}.content must be a string or an array of content blocks"),
                "messages",
            ))
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("{at}.content.{j}");
        match block_type(b) {
            "text" => push_line(&mut text, block_text(b, &at)?),
            "tool_use" if role == Role::Assistant => calls.push(ToolCall {
                id: str_field(b, "id", &at)?.to_string(),
                name: str_field(b, "name", &at)?.to_string(),
                arguments: match b.get("input") {
                    None | Some(Value::Null) => "{}".into(),
                    Some(input) => input.to_string(),
                },
            }),
            "tool_result" if role == Role::User => {
                let id = str_field(b, "tool_use_id", &at)?;
                let content = match b.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(c) => text_of(c, &format!("{at}.content"))?,
                };
                let mut msg = Message::new(Role::Tool, content);
                msg.tool_call_id = Some(id.to_string());
                out.push(msg);
            }
            "thinking" | "redacted_thinking" if role == Role::Assistant => {}
            other => return Err(unsupported_block(other, role, &at)),
        }
    }
    if !text.is_empty() || !calls.is_empty() || blocks.is_empty() {
        let mut msg = Message::new(role, text);
        msg.tool_calls = calls;
        out.push(msg);
    }
    Ok(())
}

fn unsupported_block(ty: &str, role: Role, at: &str) -> ApiError {
    let why = match ty {
        "image" | "document" | "search_result" => {
            "this gateway carries text only: the provider contract has no images or documents"
        }
        "tool_use" | "thinking" | "redacted_thinking" => "only assistant turns may hold it",
        "tool_result" => "only user turns may hold it",
        _ => "not a content block type this gateway knows",
    };
    bad(
        format!(
            "{at}: content blocks of type {ty:?} are not supported in a {} turn: {why}",
            role_name(role)
        ),
        "messages",
    )
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Assistant => "assistant",
        _ => "user",
    }
}

fn block_type(b: &Value) -> &str {
    b.get("type").and_then(Value::as_str).unwrap_or("")
}

fn str_field<'a>(b: &'a Value, key: &str, at: &str) -> Result<&'a str, ApiError> {
    b.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{at}.{key} must be a string"), "messages"))
}

fn block_text<'a>(b: &'a Value, at: &str) -> Result<&'a str, ApiError> {
    str_field(b, "text", at)
}

fn push_line(out: &mut String, t: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(t);
}

/// A string, or an array of `text` blocks (`system`, a `tool_result`'s content).
fn text_of(v: &Value, at: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut out = String::new();
            for (j, b) in blocks.iter().enumerate() {
                let at = format!("{at}.{j}");
                match block_type(b) {
                    "text" => push_line(&mut out, block_text(b, &at)?),
                    other => return Err(unsupported_block(other, Role::User, &at)),
                }
            }
            Ok(out)
        }
        _ => Err(bad(
            format!("{at} must be a string or an array of text blocks"),
            at,
        )),
    }
}

fn stop_sequences(obj: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    match obj.get("stop_sequences") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str().map(String::from).ok_or_else(|| {
                    bad(
                        "stop_sequences must be an array of strings",
                        "stop_sequences",
                    )
                })
            })
            .collect(),
        Some(_) => Err(bad(
            "stop_sequences must be an array of strings",
            "stop_sequences",
        )),
    }
}

/// `tools`, narrowed by `tool_choice` (see the module comment).
fn tools(obj: &Map<String, Value>) -> Result<Vec<ToolDefinition>, ApiError> {
    let mut tools = Vec::new();
    if let Some(ts) = obj.get("tools").filter(|t| !t.is_null()) {
        let ts = ts
            .as_array()
            .ok_or_else(|| bad("tools must be an array", "tools"))?;
        for (i, t) in ts.iter().enumerate() {
            if let Some(ty) = t.get("type").and_then(Value::as_str) {
                if ty != "custom" {
                    return Err(bad(
                        format!("tools.{i}: server tools ({ty:?}) are not supported by this gateway; define the tool with a name and input_schema"),
                        "tools",
                    ));
                }
            }
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad(format!("tools.{i}.name: Field required"), "tools"))?;
            let schema = t
                .get("input_schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    bad(
                        format!("tools.{i}.input_schema: Field required (a JSON Schema object)"),
                        "tools",
                    )
                })?;
            tools.push(ToolDefinition {
                name: name.to_string(),
                description: t
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                parameters_schema: schema.to_string(),
            });
        }
    }
    let Some(choice) = obj.get("tool_choice").filter(|c| !c.is_null()) else {
        return Ok(tools);
    };
    match choice.get("type").and_then(Value::as_str) {
        Some("auto") | Some("any") => Ok(tools),
        Some("none") => Ok(Vec::new()),
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("tool_choice.name: Field required", "tool_choice"))?;
            tools.retain(|t| t.name == name);
            if tools.is_empty() {
                return Err(bad(
                    format!("tool_choice names the tool {name:?}, which is not in tools"),
                    "tool_choice",
                ));
            }
            Ok(tools)
        }
        other => Err(bad(
            format!("tool_choice.type: {other:?} is not one of auto, any, tool, none"),
            "tool_choice",
        )),
    }
}

fn metadata(obj: &Map<String, Value>) -> Result<Vec<(String, String)>, ApiError> {
    match obj.get("metadata") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => match m.get("user_id") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(u)) => Ok(vec![("user_id".to_string(), u.clone())]),
            Some(_) => Err(bad("metadata.user_id must be a string", "metadata")),
        },
        Some(_) => Err(bad("metadata must be an object", "metadata")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::json;

    fn parse(v: Value) -> Result<Parsed<Messages>, ApiError> {
        parse_messages_request(v.to_string().as_bytes())
    }

    #[test]
    fn translates_the_anthropic_request_shapes() {
        let p = parse(json!({
            "model": "echo/echo-1",
            "max_tokens": 64,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "let me look"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "12C"}]},
                    {"type": "text", "text": "and tomorrow?"}
                ]}
            ],
            "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}},
                      {"name": "other", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.9, "top_k": 5,
            "metadata": {"user_id": "u-1"}, "stream": true
        }))
        .unwrap();
        assert_eq!(p.model, "echo/echo-1");
        assert!(p.stream);
        let r = &p.request;
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::User
            ]
        );
        assert_eq!(r.messages[0].content, "be brief");
        assert_eq!(r.messages[2].content, "let me look");
        assert_eq!(r.messages[2].tool_calls[0].id, "toolu_1");
        assert_eq!(r.messages[2].tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
        assert_eq!(r.messages[3].content, "12C");
        assert_eq!(r.messages[4].content, "and tomorrow?");
        assert_eq!(r.tools.len(), 1, "tool_choice tool narrows the tools");
        assert_eq!(r.tools[0].parameters_schema, r#"{"type":"object"}"#);
        assert_eq!(r.max_tokens, Some(64));
        assert_eq!(r.stop, ["END"]);
        assert_eq!(r.temperature, Some(0.5));
        assert_eq!(r.metadata, [("user_id".to_string(), "u-1".to_string())]);
    }

    #[test]
    fn tool_choice_none_sends_no_tools() {
        let p = parse(json!({
            "model": "a/b", "max_tokens": 1,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "none"}
        }))
        .unwrap();
        assert!(p.request.tools.is_empty());
    }

    #[test]
    fn refuses_what_cannot_be_honoured() {
        let user = |content: Value| json!([{"role": "user", "content": content}]);
        for (body, param) in [
            (
                json!({"max_tokens": 1, "messages": user(json!("x"))}),
                "model",
            ),
            (
                json!({"model": "a/b", "messages": user(json!("x"))}),
                "max_tokens",
            ),
            (
                json!({"model": "a/b", "max_tokens": 0, "messages": user(json!("x"))}),
                "max_tokens",
            ),
            (
                json!({"model": "a/b", "max_tokens": 1, "messages": []}),
                "messages",
            ),
            (
                json!({"model": "a/b", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
                "messages",
            ),
            (
                json!({"model": "a/b", "max_tokens": 1, "messages": user(json!([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]))}),
                "messages",
            ),
            (
                json!({"model": "a/b", "max_tokens": 1, "messages": user(json!([{"type": "document", "source": {}}]))}),
                "messages",
            ),
            (
                json!({"model": "a/b", "max_tokens": 1, "messages": user(json!([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}]))}),
                "messages",
            ),
            (
                json!({"model": "a/b", "max_tokens": 1, "temperature": 1.5, "messages": user(json!("x"))}),
                "temperature",
            ),
            (
                json!({"model": "a/b", "max_tokens": 1, "messages": user(json!("x")), "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools",
            ),
            (
                json!({"model": "a/b", "max_tokens": 1, "messages": user(json!("x")), "tools": [{"name": "f"}]}),
                "tools",
            ),
            (
                json!({"model": "a/b", "max_tokens": 1, "messages": user(json!("x")), "tool_choice": {"type": "tool", "name": "g"}}),
                "tool_choice",
            ),
            (
                json!({"model": "a/b", "max_tokens": 1, "messages": user(json!("x")), "stop_sequences": "END"}),
                "stop_sequences",
            ),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
        assert!(parse_messages_request(b"{not json").is_err());
    }
}
