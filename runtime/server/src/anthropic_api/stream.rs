//! `stream: true`: provider chunks as Anthropic's event sequence.
//!
//! `message_start` (usage 0: the contract reports usage at the end), then per
//! content block `content_block_start`, `content_block_delta`s (`text_delta`,
//! or `input_json_delta` with a tool call's argument fragments) and
//! `content_block_stop`, a `ping` after the first block's start, then
//! `message_delta` (stop reason and usage) and `message_stop`. A new block
//! starts whenever the provider switches between text and a tool call, with
//! indexes counted across both kinds, as Anthropic's are. The closing events
//! wait for the provider's clean end, because usage often comes after the
//! finish reason. An error after the start is an `event: error` and nothing
//! after it, so a client never takes a cut answer for a whole one.

use serde_json::{json, Value};

use super::response::{stop_reason, usage_json};
use crate::api_error::ApiError;
use crate::completion_call::{unique_id, StreamWriter};
use crate::sse::Frame;
use tamma_sandbox::types::{FinishReason, StreamChunk, Usage};

/// The content block being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool call, by the contract's tool-call index.
    Tool(u32),
}

/// Shapes one stream.
#[derive(Debug)]
pub struct EventWriter {
    id: String,
    model: String,
    started: bool,
    open: Option<Block>,
    /// Blocks started so far (the next block's index).
    blocks: u32,
    tools: bool,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

fn ev(name: &'static str, v: &Value) -> Frame {
    Frame::event(name, &v.to_string())
}

/// A JSON string literal (quoted, escaped) for the hand-written hot events.
fn quoted(s: &str) -> String {
    // A `&str` always serializes.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

impl EventWriter {
    /// A writer for one stream, with a fresh message id.
    pub fn new(model: String) -> Self {
        EventWriter {
            id: super::response::message_id(),
            model,
            started: false,
            open: None,
            blocks: 0,
            tools: false,
            finish: None,
            usage: None,
        }
    }

    fn start(&mut self, out: &mut Vec<Frame>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(ev(
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": usage_json(&Usage::default()),
                },
            }),
        ));
    }

    fn close(&mut self, out: &mut Vec<Frame>) {
        if self.open.take().is_some() {
            // The per-event events are written by hand rather than through a
            // `serde_json::Value`: they are most of a short answer's cost.
            out.push(Frame::event(
                "content_block_stop",
                &format!(
                    r#"{{"type":"content_block_stop","index":{}}}"#,
                    self.blocks - 1
                ),
            ));
        }
    }

    /// Make `block` the open one (closing another), starting it with `first`.
    fn open(&mut self, block: Block, first: impl FnOnce() -> Value, out: &mut Vec<Frame>) {
        if self.open == Some(block) {
            return;
        }
        self.close(out);
        out.push(ev(
            "content_block_start",
            &json!({ "type": "content_block_start", "index": self.blocks, "content_block": first() }),
        ));
        if self.blocks == 0 {
            out.push(Frame::event("ping", r#"{"type":"ping"}"#));
        }
        self.blocks += 1;
        self.open = Some(block);
    }

    /// A `content_block_delta` of `kind` (`text_delta`, `input_json_delta`)
    /// whose `field` is `text`.
    fn delta(&self, kind: &str, field: &str, text: &str, out: &mut Vec<Frame>) {
        out.push(Frame::event("content_block_delta", &format!(
                r#"{{"type":"content_block_delta","index":{},"delta":{{"type":"{kind}","{field}":{}}}}}"#,
                self.blocks - 1,
                quoted(text)
            ),
        ));
    }
}

impl StreamWriter for EventWriter {
    fn events(&mut self, c: &StreamChunk) -> Vec<Frame> {
        let mut out = Vec::with_capacity(4);
        self.start(&mut out);
        if !c.delta.is_empty() {
            self.open(
                Block::Text,
                || json!({ "type": "text", "text": "" }),
                &mut out,
            );
            self.delta("text_delta", "text", &c.delta, &mut out);
        }
        for t in &c.tool_call_deltas {
            self.tools = true;
            let first = || {
                json!({
                    "type": "tool_use",
                    "id": t.id.clone().unwrap_or_else(|| unique_id("toolu_")),
                    "name": t.name.clone().unwrap_or_default(),
                    "input": {},
                })
            };
            self.open(Block::Tool(t.index), first, &mut out);
            if !t.arguments_delta.is_empty() {
                self.delta(
                    "input_json_delta",
                    "partial_json",
                    &t.arguments_delta,
                    &mut out,
                );
            }
        }
        self.usage = c.usage.or(self.usage);
        self.finish = c.finish_reason.or(self.finish);
        out
    }

    fn end(&mut self) -> Vec<Frame> {
        let mut out = Vec::with_capacity(3);
        self.start(&mut out);
        if self.blocks == 0 {
            // As a whole answer without content has one empty text block.
            self.open(
                Block::Text,
                || json!({ "type": "text", "text": "" }),
                &mut out,
            );
        }
        self.close(&mut out);
        let finish = self.finish.unwrap_or(FinishReason::Stop);
        out.push(ev(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": { "stop_reason": stop_reason(finish, self.tools), "stop_sequence": null },
                "usage": usage_json(&self.usage.unwrap_or_default()),
            }),
        ));
        out.push(Frame::event("message_stop", r#"{"type":"message_stop"}"#));
        out
    }

    fn error(&mut self, e: &ApiError) -> Frame {
        ev("error", &e.anthropic_body())
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse;
    use http_body_util::BodyExt;
    use tamma_sandbox::types::ToolCallDelta;

    fn chunk(delta: &str, tools: Vec<ToolCallDelta>) -> StreamChunk {
        StreamChunk {
            id: "x".into(),
            model: "m".into(),
            delta: delta.into(),
            tool_call_deltas: tools,
            finish_reason: None,
            usage: None,
        }
    }

    /// The (event, data) pairs as a client reads them off the wire.
    async fn wire(events: Vec<Frame>) -> Vec<(String, Value)> {
        let (tx, resp) = sse::frame_channel(64);
        tx.send(events).await.unwrap();
        drop(tx);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        text.split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let name = f.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
                let data = f.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                (name.to_string(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    #[tokio::test]
    async fn text_then_tool_call_in_anthropic_order() {
        let mut w = EventWriter::new("p/m".into());
        let mut evs = w.events(&chunk("hel", vec![]));
        evs.extend(w.events(&chunk("lo", vec![])));
        let tool = |id: Option<&str>, args: &str| ToolCallDelta {
            index: 0,
            id: id.map(String::from),
            name: id.map(|_| "f".to_string()),
            arguments_delta: args.into(),
        };
        evs.extend(w.events(&chunk("", vec![tool(Some("call_1"), "{\"a\"")])));
        let mut last = chunk("", vec![tool(None, ":1}")]);
        last.finish_reason = Some(FinishReason::ToolCalls);
        last.usage = Some(Usage {
            input_tokens: 4,
            output_tokens: 2,
            total_tokens: 6,
            ..Default::default()
        });
        evs.extend(w.events(&last));
        evs.extend(w.end());
        let got = wire(evs).await;
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (name, data) in &got {
            assert_eq!(data["type"], name.as_str());
        }
        assert_eq!(got[0].1["message"]["model"], "p/m");
        assert_eq!(
            got[3].1["delta"],
            json!({"type": "text_delta", "text": "hel"})
        );
        assert_eq!(got[6].1["index"], 1);
        assert_eq!(got[6].1["content_block"]["id"], "call_1");
        assert_eq!(got[6].1["content_block"]["name"], "f");
        assert_eq!(got[8].1["delta"]["type"], "input_json_delta");
        assert_eq!(got[8].1["delta"]["partial_json"], ":1}");
        assert_eq!(got[10].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(got[10].1["usage"]["output_tokens"], 2);
    }

    #[tokio::test]
    async fn an_empty_stream_still_has_one_block_and_an_error_is_in_band() {
        let mut w = EventWriter::new("p/m".into());
        let names: Vec<String> = wire(w.end()).await.into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let e = ApiError::bad_request("no");
        let got = wire(vec![w.error(&e)]).await;
        assert_eq!(got[0].0, "error");
        assert_eq!(got[0].1["error"]["type"], "invalid_request_error");
    }
}
