//! A Server-Sent Events (`text/event-stream`) parser, independent of any transport.
//!
//! Both streaming APIs a provider is likely to speak use SSE: OpenAI-compatible
//! servers send unnamed `data:` events ending with `data: [DONE]`, Anthropic sends
//! named events (`event: message_start` ...). The parser follows the WHATWG rules:
//!
//! - lines end with `\n`, `\r\n` or `\r` (a `\r\n` split across two reads is one end);
//! - a line starting with `:` is a comment (servers use them as keep-alives);
//! - `field: value` (one leading space after the colon is dropped), or `field` alone
//!   with an empty value;
//! - `data` lines accumulate, joined by `\n`; `event` sets the type, `id` the last
//!   event id, `retry` the reconnection time; unknown fields are ignored;
//! - a blank line dispatches the event; an event without any `data` line is not
//!   dispatched (its `event` type is forgotten);
//! - a UTF-8 byte order mark at the very start is skipped.
//!
//! One deliberate leniency: [`SseParser::finish`] (end of input) dispatches an event
//! whose blank line never came, instead of dropping it as browsers do. A provider
//! then sees the last event and decides itself whether the stream was complete
//! (it should always check for its protocol's terminator, e.g. `[DONE]`).
//!
//! ```
//! use tamma_guest_sdk::sse::SseParser;
//!
//! let mut p = SseParser::new();
//! let events = p.push(b"event: ping\ndata: {}\n\ndata: a\ndata: b\n\n");
//! assert_eq!(events[0].event, "ping");
//! assert_eq!(events[1].event, "message");
//! assert_eq!(events[1].data, "a\nb");
//! ```

use crate::ProviderError;

/// Largest event (sum of its data lines) or single line accepted, bytes. An upstream
/// that sends more without a line break is broken or hostile; without a cap the
/// guest would grow its buffer until it hits its memory limit and is killed.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// One dispatched server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `"message"` when the event had none.
    pub event: String,
    /// The `data:` lines joined by `\n` (no trailing newline).
    pub data: String,
    /// The last `id:` seen in the stream so far, if any.
    pub id: Option<String>,
    /// The `retry:` field of this event (reconnection time, ms), if any.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// Whether the data is exactly `marker` (after trimming), e.g. `"[DONE]"`.
    pub fn data_is(&self, marker: &str) -> bool {
        self.data.trim() == marker
    }
}

/// Incremental SSE parser: feed it bytes as they arrive with [`push`](Self::push),
/// call [`finish`](Self::finish) at the end of the input.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    /// Still at the very start of the stream (a BOM may follow).
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<u64>,
    max_event_bytes: usize,
    /// Set once a limit was exceeded: the stream cannot be resynchronised.
    failed: Option<String>,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser with the [`DEFAULT_MAX_EVENT_BYTES`] limit.
    pub fn new() -> Self {
        SseParser::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that fails once an event or a line is larger than `max_event_bytes`.
    pub fn with_max_event_bytes(max_event_bytes: usize) -> Self {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            last_id: None,
            retry: None,
            max_event_bytes,
            failed: None,
        }
    }

    /// Feeds bytes; returns the events completed by them, in order.
    ///
    /// Once a size limit is exceeded the parser returns no more events and
    /// [`error`](Self::error) says why; use [`try_push`](Self::try_push) to get it as
    /// a `Result`.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.failed.is_some() {
            return out;
        }
        let mut bytes = bytes;
        if self.at_start && !bytes.is_empty() {
            // The BOM may in theory be split across reads; upstreams send it (if ever)
            // in the first packet, so only a whole BOM in the first chunk is skipped.
            if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
                bytes = rest;
            }
            self.at_start = false;
        }
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => {
                    // Second half of a `\r\n` whose `\r` ended the line already.
                    self.after_cr = false;
                }
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.end_line(&mut out);
                    if self.failed.is_some() {
                        return out;
                    }
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= self.max_event_bytes {
                        self.fail(format!(
                            "server-sent event line longer than {} bytes",
                            self.max_event_bytes
                        ));
                        return out;
                    }
                    self.line.push(b);
                }
            }
        }
        out
    }

    /// [`push`](Self::push), failing with a `provider-error` once a limit is exceeded.
    pub fn try_push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, ProviderError> {
        let events = self.push(bytes);
        match &self.failed {
            Some(why) => Err(ProviderError::provider(why.clone())),
            None => Ok(events),
        }
    }

    /// Ends the input: a last line without a line break is processed, and an event
    /// still waiting for its blank line is dispatched (see the module docs).
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.failed.is_some() {
            return None;
        }
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out);
        }
        // `end_line` of a non-blank line never dispatches, so `out` is empty here.
        debug_assert!(out.is_empty());
        self.dispatch()
    }

    /// Why the parser stopped, when a limit was exceeded.
    pub fn error(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn fail(&mut self, why: String) {
        self.failed = Some(why);
        self.line = Vec::new();
        self.data = String::new();
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if let Some(ev) = self.dispatch() {
                out.push(ev);
            }
            return;
        }
        // Invalid UTF-8 is replaced rather than rejected: the JSON parser downstream
        // reports a precise error if it matters, and a comment with a stray byte
        // should not kill the stream.
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    self.fail(format!(
                        "server-sent event larger than {} bytes",
                        self.max_event_bytes
                    ));
                    return;
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // An id containing NUL is ignored by the spec.
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(ms);
                }
            }
            _ => {} // unknown fields are ignored
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let retry = self.retry.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event: if event.is_empty() {
                "message".to_string()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
            retry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.push(c));
        }
        out.extend(p.finish());
        out
    }

    #[test]
    fn unnamed_data_events_and_done_marker() {
        let evs = parse_all(&[b"data: {\"a\":1}\n\ndata: [DONE]\n\n"]);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event, "message");
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert!(evs[1].data_is("[DONE]"));
    }

    #[test]
    fn named_events_and_comments() {
        let evs = parse_all(&[
            b": keep-alive\n\nevent: message_start\ndata: {}\n\n: hi\nevent: ping\ndata: {\"type\": \"ping\"}\n\n",
        ]);
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert_eq!(evs[0].event, "message_start");
        assert_eq!(evs[1].event, "ping");
        assert_eq!(evs[1].data, "{\"type\": \"ping\"}");
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let evs = parse_all(&[b"data: one\ndata:two\ndata:  three\ndata\n\n"]);
        assert_eq!(evs[0].data, "one\ntwo\n three\n");
    }

    #[test]
    fn every_line_ending_and_split_crlf() {
        let evs = parse_all(&[b"data: a\r", b"\n\r", b"\ndata: b\r\rdata: c\n\n"]);
        let data: Vec<_> = evs.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["a", "b", "c"]);
    }

    #[test]
    fn byte_at_a_time_is_the_same_as_all_at_once() {
        let text: &[u8] =
            b"event: content_block_delta\r\ndata: {\"x\":\"y\"}\r\nid: 7\r\n\r\ndata: z\n\n";
        let whole = parse_all(&[text]);
        let mut p = SseParser::new();
        let mut bytewise = Vec::new();
        for b in text {
            bytewise.extend(p.push(std::slice::from_ref(b)));
        }
        bytewise.extend(p.finish());
        assert_eq!(whole, bytewise);
        assert_eq!(whole[0].id.as_deref(), Some("7"));
        assert_eq!(whole[1].id.as_deref(), Some("7"), "the last id persists");
    }

    #[test]
    fn event_without_data_is_not_dispatched_and_its_type_is_forgotten() {
        let evs = parse_all(&[b"event: lonely\n\ndata: x\n\n"]);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event, "message");
    }

    #[test]
    fn fields_without_colon_and_unknown_fields() {
        let evs = parse_all(&[b"data\nfoo: bar\nretry: 1500\n\n"]);
        assert_eq!(evs[0].data, "");
        assert_eq!(evs[0].retry, Some(1500));
    }

    #[test]
    fn bom_is_skipped() {
        let evs = parse_all(&[b"\xEF\xBB\xBFdata: x\n\n"]);
        assert_eq!(evs[0].data, "x");
    }

    #[test]
    fn finish_dispatches_an_unterminated_last_event() {
        let mut p = SseParser::new();
        assert!(p.push(b"data: [DONE]").is_empty());
        assert_eq!(p.finish().map(|e| e.data), Some("[DONE]".to_string()));
        let mut p = SseParser::new();
        assert!(p.push(b"data: x\n").is_empty());
        assert_eq!(p.finish().map(|e| e.data), Some("x".to_string()));
        let mut p = SseParser::new();
        p.push(b"data: x\n\n");
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn oversized_lines_and_events_fail() {
        let mut p = SseParser::with_max_event_bytes(16);
        assert!(p.try_push(b"data: 0123456789abcdef0123").is_err());
        assert!(p.error().unwrap().contains("longer than 16"));
        assert!(
            p.push(b"\n\ndata: x\n\n").is_empty(),
            "no events after a failure"
        );

        let mut p = SseParser::with_max_event_bytes(16);
        let r = p.try_push(b"data: 0123456789\ndata: 0123456789\n\n");
        assert!(r.unwrap_err().message.contains("larger than 16"));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let evs = parse_all(&[b"data: a\xFFb\n\n"]);
        assert_eq!(evs[0].data, "a\u{FFFD}b");
    }
}
