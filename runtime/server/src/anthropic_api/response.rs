//! The whole answer: Anthropic's `message` object.
//!
//! `stop_reason` comes from the contract's finish reason: `stop` → `end_turn`,
//! `length` → `max_tokens`, `tool-calls` → `tool_use` (also when a provider
//! said `stop` but called tools), `content-filter` → `refusal`. The contract
//! does not say whether a stop sequence ended the text (OpenAI-style upstreams
//! report `stop` for both), so `stop_sequence` is `null` and `stop_reason`
//! `end_turn` then. `usage` carries the cache fields, 0 when the provider
//! reports none.

use serde_json::{json, Value};

use crate::completion_call::unique_id;
use tamma_sandbox::types::{CompletionResponse, FinishReason, ToolCall, Usage};

/// A unique message id, `msg_<24 hex>`.
pub fn message_id() -> String {
    unique_id("msg_")
}

/// Anthropic's `stop_reason` for a finish reason; `tools` says whether the
/// answer called tools.
pub fn stop_reason(f: FinishReason, tools: bool) -> &'static str {
    match f {
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        FinishReason::Stop | FinishReason::Error if tools => "tool_use",
        FinishReason::Stop | FinishReason::Error => "end_turn",
    }
}

/// The `usage` object.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens.unwrap_or(0),
        "cache_read_input_tokens": u.cache_read_tokens.unwrap_or(0),
    })
}

/// A tool call's arguments as the `input` object Anthropic clients expect. A
/// provider that sent arguments that are not a JSON object gets them under
/// `_raw` rather than lost.
pub fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "_raw": arguments }),
    }
}

fn tool_use_block(c: &ToolCall) -> Value {
    json!({ "type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(&c.arguments) })
}

/// The `message` object; `model` is `<provider>/<model>`.
pub fn message_json(id: &str, model: &str, r: &CompletionResponse) -> Value {
    let mut content = Vec::with_capacity(1 + r.tool_calls.len());
    if !r.content.is_empty() || r.tool_calls.is_empty() {
        content.push(json!({ "type": "text", "text": r.content }));
    }
    content.extend(r.tool_calls.iter().map(tool_use_block));
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(r.finish_reason, !r.tool_calls.is_empty()),
        "stop_sequence": null,
        "usage": usage_json(&r.usage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_anthropic_shape() {
        let r = CompletionResponse {
            id: "x".into(),
            model: "m".into(),
            content: "hi".into(),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "f".into(),
                arguments: r#"{"a":1}"#.into(),
            }],
            finish_reason: FinishReason::ToolCalls,
            usage: Usage {
                input_tokens: 3,
                output_tokens: 2,
                total_tokens: 5,
                cache_read_tokens: Some(1),
                ..Default::default()
            },
        };
        let v = message_json("msg_1", "p/m", &r);
        assert_eq!(v["type"], "message");
        assert_eq!(v["content"][0], json!({"type": "text", "text": "hi"}));
        assert_eq!(v["content"][1]["type"], "tool_use");
        assert_eq!(v["content"][1]["input"], json!({"a": 1}));
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["stop_sequence"], Value::Null);
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 3, "output_tokens": 2, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1})
        );
    }

    #[test]
    fn stop_reasons_map() {
        assert_eq!(stop_reason(FinishReason::Stop, false), "end_turn");
        assert_eq!(stop_reason(FinishReason::Stop, true), "tool_use");
        assert_eq!(stop_reason(FinishReason::Length, false), "max_tokens");
        assert_eq!(stop_reason(FinishReason::ToolCalls, true), "tool_use");
        assert_eq!(stop_reason(FinishReason::ContentFilter, false), "refusal");
        assert_eq!(tool_input("not json"), json!({"_raw": "not json"}));
        assert_eq!(tool_input(""), json!({}));
    }
}
