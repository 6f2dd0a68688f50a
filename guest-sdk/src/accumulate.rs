//! Folding a stream of chunks back into one whole response.
//!
//! Useful for a provider whose `complete` is implemented over its streaming API
//! (some servers only stream, and long generations over a non-streamed request can
//! hit idle timeouts on proxies), and for tests.

use std::collections::BTreeMap;

use crate::{
    ChunkStream, CompletionResponse, FinishReason, ProviderError, StreamChunk, ToolCall, Usage,
};

/// Accumulates [`StreamChunk`]s: text deltas are appended, tool-call deltas are
/// grouped by `index` (the first `id`/`name` seen wins, `arguments-delta`s are
/// concatenated), the last finish reason and usage seen win.
#[derive(Clone, Debug, Default)]
pub struct StreamAccumulator {
    id: String,
    model: String,
    content: String,
    tool_calls: BTreeMap<u32, ToolCall>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        StreamAccumulator::default()
    }

    /// Adds one chunk.
    pub fn push(&mut self, chunk: &StreamChunk) {
        if self.id.is_empty() {
            self.id.clone_from(&chunk.id);
        }
        if self.model.is_empty() {
            self.model.clone_from(&chunk.model);
        }
        self.content.push_str(&chunk.delta);
        for d in &chunk.tool_call_deltas {
            let call = self.tool_calls.entry(d.index).or_insert_with(|| ToolCall {
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
            if let Some(id) = &d.id {
                if call.id.is_empty() {
                    call.id.clone_from(id);
                }
            }
            if let Some(name) = &d.name {
                if call.name.is_empty() {
                    call.name.clone_from(name);
                }
            }
            call.arguments.push_str(&d.arguments_delta);
        }
        if chunk.finish_reason.is_some() {
            self.finish_reason = chunk.finish_reason;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
    }

    /// The whole response. Tool calls come in `index` order; a call whose arguments
    /// never arrived gets `{}` (the WIT promises a JSON text). Without a finish
    /// reason in the stream it is `tool-calls` when there are tool calls, else `stop`;
    /// without usage, zero usage.
    pub fn finish(self) -> CompletionResponse {
        let tool_calls: Vec<ToolCall> = self
            .tool_calls
            .into_values()
            .map(|mut c| {
                if c.arguments.trim().is_empty() {
                    c.arguments = "{}".to_string();
                }
                c
            })
            .collect();
        let finish_reason = self.finish_reason.unwrap_or(if tool_calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        });
        CompletionResponse {
            id: self.id,
            model: self.model,
            content: self.content,
            tool_calls,
            finish_reason,
            usage: self.usage.unwrap_or_else(Usage::zero),
        }
    }
}

/// Drains `stream` into one response (see [`StreamAccumulator`]); the first error
/// ends it.
pub fn collect_stream(stream: &mut dyn ChunkStream) -> Result<CompletionResponse, ProviderError> {
    let mut acc = StreamAccumulator::new();
    while let Some(chunk) = stream.next()? {
        acc.push(&chunk);
    }
    Ok(acc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ToolCallDelta, VecStream};

    fn delta(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> ToolCallDelta {
        ToolCallDelta {
            index,
            id: id.map(String::from),
            name: name.map(String::from),
            arguments_delta: args.to_string(),
        }
    }

    #[test]
    fn reassembles_text_and_interleaved_tool_calls() {
        let mut c1 = StreamChunk::text("r1", "m", "Hel");
        c1.tool_call_deltas = vec![
            delta(1, Some("b"), Some("two"), ""),
            delta(0, Some("a"), Some("one"), "{\"x\""),
        ];
        let mut c2 = StreamChunk::text("", "", "lo");
        c2.tool_call_deltas = vec![delta(0, None, None, ":1}"), delta(1, None, None, "")];
        let c3 = StreamChunk::text("r1", "m", "")
            .finish(FinishReason::ToolCalls, Usage::from_counts(3, 4));
        let mut s = VecStream::new(vec![c1, c2, c3]);
        let r = collect_stream(&mut s).unwrap();
        assert_eq!(
            (r.id.as_str(), r.model.as_str(), r.content.as_str()),
            ("r1", "m", "Hello")
        );
        assert_eq!(r.tool_calls.len(), 2);
        assert_eq!(
            (r.tool_calls[0].id.as_str(), r.tool_calls[0].name.as_str()),
            ("a", "one")
        );
        assert_eq!(r.tool_calls[0].arguments, "{\"x\":1}");
        assert_eq!(
            r.tool_calls[1].arguments, "{}",
            "empty arguments become {{}}"
        );
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!(r.usage.total_tokens, 7);
    }

    #[test]
    fn defaults_without_finish_or_usage() {
        let mut acc = StreamAccumulator::new();
        acc.push(&StreamChunk::text("i", "m", "x"));
        let r = acc.finish();
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(r.usage.total_tokens, 0);
        let mut acc = StreamAccumulator::new();
        let mut c = StreamChunk::text("i", "m", "");
        c.tool_call_deltas = vec![delta(0, Some("t"), Some("f"), "{}")];
        acc.push(&c);
        assert_eq!(acc.finish().finish_reason, FinishReason::ToolCalls);
    }

    #[test]
    fn errors_stop_collection() {
        let mut n = 0;
        let mut s = crate::FnStream(move || {
            n += 1;
            if n == 1 {
                Ok(Some(StreamChunk::text("i", "m", "x")))
            } else {
                Err(ProviderError::provider("cut"))
            }
        });
        assert_eq!(collect_stream(&mut s).unwrap_err().message, "cut");
    }
}
