//! The Anthropic Messages API, inbound: `POST /v1/messages` (whole and
//! streamed), served by any provider. Requests are translated to the
//! provider contract's [`CompletionRequest`](tamma_sandbox::types::CompletionRequest),
//! answers and stream chunks back to Anthropic's JSON and event sequence; the
//! call itself (routing, limits, retries, fallback, metrics, access log) is
//! [`completion_call`]'s, the same as `/v1/chat/completions`.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the handler and the layer that renders errors in Anthropic's shape |
//! | [`request`] | the request: `system`, content blocks, tools, `tool_choice`, refusals |
//! | [`response`] | the whole `message` object, `stop_reason`, `usage` |
//! | [`stream`] | the event sequence of `stream: true` |
//!
//! `POST /v1/messages/count_tokens` is not served (404, in Anthropic's shape):
//! the provider contract has no token counting.

pub mod request;
pub mod response;
pub mod stream;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Request};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use crate::api_error::ApiError;
use crate::completion_call::{self, Dialect};
use crate::AppState;
use tamma_sandbox::types::CompletionResponse;

/// `POST /v1/messages`. `anthropic-version` and `anthropic-beta` are accepted
/// and not needed: the format served is the one those SDKs speak today.
pub async fn messages(State(state): State<AppState>, req: Request<Body>) -> Response {
    completion_call::serve(state, req, "messages", request::parse_messages_request).await
}

/// Anthropic's `message` format, for [`completion_call`].
#[derive(Debug, Default)]
pub struct Messages;

impl Dialect for Messages {
    type Writer = stream::EventWriter;

    fn whole(&self, model: &str, resp: &CompletionResponse) -> Value {
        response::message_json(&response::message_id(), model, resp)
    }

    fn writer(self, model: String) -> stream::EventWriter {
        stream::EventWriter::new(model)
    }
}

/// Whether `path` is one of the Anthropic API's.
fn is_anthropic(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/")
}

/// Layer over the whole router: an error answered on an Anthropic path (by the
/// handler, the auth guard, the limits, the host guard or the fallback) is
/// re-rendered in Anthropic's shape, with its status and headers unchanged. One
/// error model ([`ApiError`]), two renderings; other paths pass untouched.
pub async fn error_shape(req: Request<Body>, next: Next) -> Response {
    if !is_anthropic(req.uri().path()) {
        return next.run(req).await;
    }
    let resp = next.run(req).await;
    let Some(e) = resp.extensions().get::<ApiError>() else {
        return resp;
    };
    let body = e.anthropic_body().to_string();
    let (mut parts, old) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // The old body holds the request's concurrency permit and access log
    // until the answer is written: keep it alive as long as the new one.
    crate::limits::hold_until_done(Response::from_parts(parts, Body::from(body)), old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_messages_paths_are_anthropic() {
        assert!(is_anthropic("/v1/messages"));
        assert!(is_anthropic("/v1/messages/count_tokens"));
        assert!(!is_anthropic("/v1/messagesx"));
        assert!(!is_anthropic("/v1/chat/completions"));
    }
}
