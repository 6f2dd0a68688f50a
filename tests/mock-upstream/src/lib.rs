//! `tamma-mock-upstream`: a real HTTP/1.1 server on `127.0.0.1` that speaks the
//! OpenAI chat-completions and Anthropic Messages wire formats, for tests of
//! provider guests through the real sandbox and its egress path.
//!
//! ```ignore
//! let mock = MockUpstream::start().await;           // port 0; mock.addr(), mock.base_url()
//! mock.expect_api_key("sk-test");                    // wrong/missing key -> 401 in the API's format
//! mock.push_fault(Fault::Error(HttpError::new(429).retry_after_ms("1500")));
//! // ... run the guest against mock.base_url() ("http://127.0.0.1:PORT/v1") ...
//! let req = mock.last_request().unwrap();            // method, path, headers, body
//! assert_eq!(req.header("authorization"), Some("Bearer sk-test"));
//! ```
//!
//! # Endpoints
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI `chat.completion`, or with `"stream": true` SSE `chat.completion.chunk`s ending in `data: [DONE]` (a usage chunk with empty `choices` first when `stream_options.include_usage`) |
//! | `POST /v1/messages` | Anthropic `message`, or with `"stream": true` named SSE events `message_start`, `ping`, `content_block_start/delta/stop` (text and `input_json_delta`), `message_delta`, `message_stop` |
//! | `POST /v1/embeddings` | OpenAI `list` of `embedding`s, one per input (a string or a list of strings), deterministic unit vectors (module `embeddings`), `encoding_format` `float` or `base64`, `dimensions` honoured (not for `text-embedding-ada-002`), usage in words; models [`EMBEDDING_MODELS`] |
//! | `GET /v1/models` | Anthropic's shape (`{data:[{type,id,display_name,created_at}],has_more,...}`) when the request carries `x-api-key` or `anthropic-version`, else OpenAI's (`{object:"list",data:[{id,object,created,owned_by}]}`) |
//!
//! # Answers
//!
//! Deterministic: the reply is the text of the last message (for Anthropic, its
//! text blocks and tool results joined), split into word pieces when streamed;
//! `max_tokens` truncates it to that many words (finish `length` / `max_tokens`).
//! Usage counts whitespace-separated words: every message (and the system prompt)
//! in, the reply out. A model that is not in [`MockUpstream::set_models`] (default
//! [`DEFAULT_MODELS`]) gets a 404 in the API's format. Anthropic requests without
//! `anthropic-version` or `max_tokens`, or with a `system` role inside `messages`,
//! get the 400 the real API gives; so do OpenAI requests without `messages`.
//!
//! # Latency
//!
//! [`MockUpstream::set_latency`] delays every chat answer (a slow upstream next
//! to a fast one, for load-balancing tests).
//!
//! # Faults
//!
//! Tests queue [`Fault`]s; each queued entry is consumed by the next request whose
//! [`Route`] matches (requests that match no entry are answered normally). Several
//! faults can be combined in one entry with [`MockUpstream::push_faults`] (e.g. a
//! delay between chunks *and* a cut). Error bodies are rendered in the format of the
//! API the request was for. Every request is recorded *before* any fault applies.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Models the mock serves unless [`MockUpstream::set_models`] says otherwise.
pub const DEFAULT_MODELS: [&str; 4] = [
    "gpt-mock",
    "gpt-mock-mini",
    "claude-mock",
    "claude-mock-haiku",
];

/// Which requests a queued fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Any request.
    Any,
    /// `POST /v1/chat/completions` and `POST /v1/messages`.
    Chat,
    /// `GET /v1/models` (list-models and health checks).
    Models,
    /// `POST /v1/embeddings`.
    Embeddings,
}

/// An HTTP error answer, rendered in the API's error format:
/// OpenAI `{"error":{"message","type","param","code"}}`, Anthropic
/// `{"type":"error","error":{"type","message"}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    /// Status code.
    pub status: u16,
    /// `error.message`; a default per status when `None`.
    pub message: Option<String>,
    /// OpenAI `error.code` / Anthropic `error.type`; a default per status when `None`.
    pub code: Option<String>,
    /// `retry-after` header value (seconds or an HTTP-date), verbatim.
    pub retry_after: Option<String>,
    /// `retry-after-ms` header value, verbatim.
    pub retry_after_ms: Option<String>,
}

impl HttpError {
    /// An error with this status and default message/code.
    pub fn new(status: u16) -> Self {
        HttpError {
            status,
            message: None,
            code: None,
            retry_after: None,
            retry_after_ms: None,
        }
    }

    /// Sets the message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets the code (OpenAI `code`, Anthropic error `type`).
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Adds a `retry-after` header.
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    /// Adds a `retry-after-ms` header.
    pub fn retry_after_ms(mut self, value: impl Into<String>) -> Self {
        self.retry_after_ms = Some(value.into());
        self
    }
}

/// A tool call the mock answers with (see [`Fault::ToolCalls`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockToolCall {
    /// Call id (`call_...` / `toolu_...`).
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as JSON text; streamed in fragments of [`ARGUMENT_FRAGMENT_CHARS`].
    pub arguments: String,
}

/// Characters per streamed tool-argument fragment: small, so that a guest has to
/// reassemble keys and values split across events.
pub const ARGUMENT_FRAGMENT_CHARS: usize = 4;

impl MockToolCall {
    /// A tool call.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        MockToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

/// One thing to do to a request. Stream faults count *events* (SSE events sent,
/// including the first role/`message_start` event and pings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP error (in the API's error format) instead of a reply.
    Error(HttpError),
    /// Wait this long before sending the response headers.
    DelayHeaders(Duration),
    /// Wait this long before each stream event (and between the two halves of a
    /// non-streamed body).
    DelayChunks(Duration),
    /// Stream: end the body cleanly after this many events, before the terminator
    /// (`[DONE]` / `message_stop`). Non-streamed: the JSON body cut in half.
    CutStream {
        /// Events sent before the cut.
        after_events: usize,
    },
    /// Stream: reset the connection after this many events (a transport error, not
    /// a clean end). Non-streamed: half the body, then the reset.
    AbortStream {
        /// Events sent before the reset.
        after_events: usize,
    },
    /// Non-streamed: a JSON body that does not parse. Stream: the first content
    /// event carries JSON that does not parse.
    MalformedJson,
    /// Stream: after this many events, an in-band error event, and the end.
    /// OpenAI: `data: {"error":{"message","type":kind,...}}`; Anthropic:
    /// `event: error` / `{"type":"error","error":{"type":kind,"message"}}`.
    ErrorEvent {
        /// Events sent before the error.
        after_events: usize,
        /// Error type, e.g. `server_error`, `overloaded_error`.
        kind: String,
        /// Error message.
        message: String,
    },
    /// A reply of this many bytes (a valid answer, just huge; streamed as 16 KiB
    /// pieces).
    HugeBody {
        /// Reply size, bytes.
        bytes: usize,
    },
    /// Answer with this text instead of the echo.
    Reply(String),
    /// Answer with these tool calls (after the reply text, if [`Fault::Reply`] is
    /// also given; otherwise with no text); streamed as argument fragments.
    ToolCalls(Vec<MockToolCall>),
}

/// A request as the mock received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The faults of one queued entry, merged.
#[derive(Clone, Debug, Default)]
struct Plan {
    error: Option<HttpError>,
    delay_headers: Option<Duration>,
    delay_chunks: Option<Duration>,
    cut_after: Option<usize>,
    abort_after: Option<usize>,
    malformed: bool,
    error_event: Option<(usize, String, String)>,
    huge: Option<usize>,
    reply: Option<String>,
    tool_calls: Option<Vec<MockToolCall>>,
}

impl Plan {
    fn from_faults(faults: Vec<Fault>) -> Plan {
        let mut p = Plan::default();
        for f in faults {
            match f {
                Fault::Error(e) => p.error = Some(e),
                Fault::DelayHeaders(d) => p.delay_headers = Some(d),
                Fault::DelayChunks(d) => p.delay_chunks = Some(d),
                Fault::CutStream { after_events } => p.cut_after = Some(after_events),
                Fault::AbortStream { after_events } => p.abort_after = Some(after_events),
                Fault::MalformedJson => p.malformed = true,
                Fault::ErrorEvent {
                    after_events,
                    kind,
                    message,
                } => p.error_event = Some((after_events, kind, message)),
                Fault::HugeBody { bytes } => p.huge = Some(bytes),
                Fault::Reply(r) => p.reply = Some(r),
                Fault::ToolCalls(c) => p.tool_calls = Some(c),
            }
        }
        p
    }
}

#[derive(Default)]
struct Shared {
    faults: Mutex<VecDeque<(Route, Plan)>>,
    requests: Mutex<Vec<RecordedRequest>>,
    api_key: Mutex<Option<String>>,
    models: Mutex<Vec<String>>,
    counter: Mutex<u64>,
    /// Added before the headers of every chat answer (a slow upstream).
    latency: Mutex<Option<Duration>>,
}

/// Locks, ignoring poisoning: a panicking test thread must not cascade into every
/// later request of the mock.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running mock server. Dropping it stops accepting connections.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl MockUpstream {
    /// Starts a server on `127.0.0.1:0` on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime, or when no loopback port can be bound.
    pub async fn start() -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("mock upstream: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("mock upstream: local address");
        let shared = Arc::new(Shared::default());
        *lock(&shared.models) = DEFAULT_MODELS.iter().map(|s| s.to_string()).collect();
        let state = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // Without it, Nagle's algorithm holds a response's last segment
                // until the client's delayed ACK (~40 ms per request).
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    // Connection errors (a client going away, an injected reset) are
                    // part of the tests, not failures of the mock.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MockUpstream {
            addr,
            shared,
            accept,
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (what an egress policy grants).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1` (a provider's `base_url`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// From now on, requests must carry this key (`Authorization: Bearer KEY` for
    /// OpenAI routes, `x-api-key: KEY` for Anthropic ones) or get a 401.
    pub fn expect_api_key(&self, key: impl Into<String>) {
        *lock(&self.shared.api_key) = Some(key.into());
    }

    /// The models served (listed by `/v1/models`; others get a 404 on chat routes).
    pub fn set_models<S: Into<String>>(&self, models: impl IntoIterator<Item = S>) {
        *lock(&self.shared.models) = models.into_iter().map(Into::into).collect();
    }

    /// Queues a fault for the next request of any route.
    pub fn push_fault(&self, fault: Fault) {
        self.push_faults(Route::Any, vec![fault]);
    }

    /// Queues a fault for the next request on `route`.
    pub fn push_fault_on(&self, route: Route, fault: Fault) {
        self.push_faults(route, vec![fault]);
    }

    /// Queues several faults applied together to the next request on `route`.
    pub fn push_faults(&self, route: Route, faults: Vec<Fault>) {
        lock(&self.shared.faults).push_back((route, Plan::from_faults(faults)));
    }

    /// Queued entries not consumed yet.
    pub fn pending_faults(&self) -> usize {
        lock(&self.shared.faults).len()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.requests).last().cloned()
    }

    /// Removes and returns the recorded requests.
    pub fn take_requests(&self) -> Vec<RecordedRequest> {
        std::mem::take(&mut *lock(&self.shared.requests))
    }

    /// From now on, wait this long before the headers of every chat answer
    /// (a slow upstream; queued faults still apply on top). `None` for none.
    pub fn set_latency(&self, latency: Option<Duration>) {
        *lock(&self.shared.latency) = latency;
    }

    /// Chat requests received so far (`POST /v1/chat/completions` and
    /// `POST /v1/messages`).
    pub fn chat_requests(&self) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| {
                r.method == "POST"
                    && (r.path.starts_with("/v1/chat/completions")
                        || r.path.starts_with("/v1/messages"))
            })
            .count()
    }
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

/// A response body fed by a channel: lets the mock pace events, stop cleanly
/// (sender dropped: a proper end of the chunked body) or reset the connection
/// (an `Err` frame makes hyper abort it).
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

type Resp = hyper::Response<ChannelBody>;

mod embeddings;
pub use embeddings::{vector as embedding_vector, EMBEDDING_MODELS};

/// What the body task sends, in order.
enum Piece {
    Bytes(Bytes),
    Reset,
}

fn response(
    status: u16,
    content_type: &str,
    headers: &[(&str, String)],
    pieces: Vec<Piece>,
    delay: Option<Duration>,
) -> Resp {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        for piece in pieces {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let item = match piece {
                Piece::Bytes(b) => Ok(b),
                Piece::Reset => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected reset",
                )),
            };
            if tx.send(item).await.is_err() {
                return; // the client went away
            }
        }
    });
    let mut builder = hyper::Response::builder()
        .status(status)
        .header("content-type", content_type);
    for (k, v) in headers {
        builder = builder.header(*k, v.as_str());
    }
    builder.body(ChannelBody { rx }).unwrap_or_else(|_| {
        hyper::Response::new(ChannelBody {
            rx: mpsc::channel(1).1,
        })
    })
}

fn json_response(status: u16, body: &Value, headers: &[(&str, String)]) -> Resp {
    response(
        status,
        "application/json",
        headers,
        vec![Piece::Bytes(Bytes::from(body.to_string()))],
        None,
    )
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

async fn handle(state: Arc<Shared>, req: hyper::Request<Incoming>) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| parts.uri.path().to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    lock(&state.requests).push(recorded.clone());

    let path = parts.uri.path();
    let route = match (parts.method.as_str(), path) {
        ("POST", "/v1/chat/completions") | ("POST", "/v1/messages") => Route::Chat,
        ("GET", "/v1/models") => Route::Models,
        ("POST", "/v1/embeddings") => Route::Embeddings,
        _ => Route::Any,
    };
    let api = if path == "/v1/messages"
        || (route == Route::Models
            && (recorded.header("x-api-key").is_some()
                || recorded.header("anthropic-version").is_some()))
    {
        Api::Anthropic
    } else {
        Api::OpenAi
    };
    let plan = {
        let mut faults = lock(&state.faults);
        let pos = faults
            .iter()
            .position(|(r, _)| *r == Route::Any || (*r == route && route != Route::Any));
        pos.and_then(|i| faults.remove(i))
            .map(|(_, p)| p)
            .unwrap_or_default()
    };
    let latency = *lock(&state.latency);
    if let (Some(d), Route::Chat) = (latency, route) {
        tokio::time::sleep(d).await;
    }
    if let Some(d) = plan.delay_headers {
        tokio::time::sleep(d).await;
    }
    if let Some(e) = &plan.error {
        return Ok(error_response(api, e));
    }
    if let Some(resp) = check_auth(&state, api, &recorded) {
        return Ok(resp);
    }
    let resp = match route {
        Route::Models => models_response(&state, api, &plan),
        Route::Chat => chat_response(&state, api, &recorded, &plan),
        Route::Embeddings => match embeddings::answer(&recorded.json()) {
            Ok(body) => json_response(200, &body, &[]),
            Err((status, message, code)) => {
                error_response(api, &HttpError::new(status).message(message).code(code))
            }
        },
        Route::Any => {
            let msg = format!("Unknown request URL: {} {}", parts.method, path);
            error_response(api, &HttpError::new(404).message(msg).code("unknown_url"))
        }
    };
    Ok(resp)
}

fn default_message(status: u16) -> &'static str {
    match status {
        400 => "Bad request",
        401 => "Incorrect API key provided",
        403 => "Permission denied",
        404 => "Not found",
        429 => "Rate limit reached for requests",
        500 => "The server had an error while processing your request",
        503 => "The engine is currently overloaded, please try again later",
        529 => "Overloaded",
        _ => "Error",
    }
}

fn error_response(api: Api, e: &HttpError) -> Resp {
    let message = e
        .message
        .clone()
        .unwrap_or_else(|| default_message(e.status).to_string());
    let body = match api {
        Api::OpenAi => {
            let kind = match e.status {
                429 => "requests",
                500..=599 => "server_error",
                _ => "invalid_request_error",
            };
            let code = e.code.clone().map(Value::String).unwrap_or(match e.status {
                401 => json!("invalid_api_key"),
                429 => json!("rate_limit_exceeded"),
                _ => Value::Null,
            });
            json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
        }
        Api::Anthropic => {
            let kind = e.code.clone().unwrap_or_else(|| {
                match e.status {
                    400 => "invalid_request_error",
                    401 => "authentication_error",
                    403 => "permission_error",
                    404 => "not_found_error",
                    413 => "request_too_large",
                    429 => "rate_limit_error",
                    529 => "overloaded_error",
                    _ => "api_error",
                }
                .to_string()
            });
            json!({ "type": "error", "error": { "type": kind, "message": message } })
        }
    };
    let mut headers = Vec::new();
    if let Some(v) = &e.retry_after {
        headers.push(("retry-after", v.clone()));
    }
    if let Some(v) = &e.retry_after_ms {
        headers.push(("retry-after-ms", v.clone()));
    }
    json_response(e.status, &body, &headers)
}

fn check_auth(state: &Shared, api: Api, req: &RecordedRequest) -> Option<Resp> {
    let expected = lock(&state.api_key).clone()?;
    let ok = match api {
        Api::OpenAi => req.header("authorization") == Some(&format!("Bearer {expected}")),
        Api::Anthropic => req.header("x-api-key") == Some(expected.as_str()),
    };
    if ok {
        return None;
    }
    let msg = match api {
        Api::OpenAi => "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        Api::Anthropic => "invalid x-api-key",
    };
    Some(error_response(api, &HttpError::new(401).message(msg)))
}

fn models_response(state: &Shared, api: Api, plan: &Plan) -> Resp {
    if plan.malformed {
        return response(
            200,
            "application/json",
            &[],
            vec![Piece::Bytes(Bytes::from_static(b"{\"data\": [{\"id\": "))],
            None,
        );
    }
    let models = lock(&state.models).clone();
    let body = match api {
        Api::OpenAi => json!({
            "object": "list",
            "data": models.iter().map(|id| json!({
                "id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock",
            })).collect::<Vec<_>>(),
        }),
        Api::Anthropic => json!({
            "data": models.iter().map(|id| json!({
                "type": "model", "id": id, "display_name": display_name(id),
                "created_at": "2025-01-01T00:00:00Z",
            })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": models.first(),
            "last_id": models.last(),
        }),
    };
    json_response(200, &body, &[])
}

/// `claude-mock-haiku` → `Claude Mock Haiku`.
fn display_name(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------

/// The answer to one chat request, before it is put in a wire format.
struct Answer {
    id: String,
    model: String,
    /// Reply text in the pieces it is streamed in.
    pieces: Vec<String>,
    tool_calls: Vec<MockToolCall>,
    truncated: bool,
    input_tokens: u64,
    output_tokens: u64,
}

impl Answer {
    fn text(&self) -> String {
        self.pieces.concat()
    }
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Text of a message's `content` (a string, or Anthropic/OpenAI content blocks).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                Some("tool_result") => content_text(b.get("content").unwrap_or(&Value::Null)),
                _ => String::new(),
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn bad_request(api: Api, message: &str) -> Resp {
    error_response(api, &HttpError::new(400).message(message))
}

fn chat_response(state: &Shared, api: Api, req: &RecordedRequest, plan: &Plan) -> Resp {
    let body = req.json();
    if body.is_null() {
        return bad_request(api, "We could not parse the JSON body of your request.");
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return bad_request(api, "messages: Field required");
    };
    if api == Api::Anthropic {
        if req.header("anthropic-version").is_none() {
            return bad_request(api, "anthropic-version: header is required");
        }
        if body.get("max_tokens").and_then(Value::as_u64).is_none() {
            return bad_request(api, "max_tokens: Field required");
        }
        if messages
            .iter()
            .any(|m| m.get("role").and_then(Value::as_str) == Some("system"))
        {
            return bad_request(
                api,
                "messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role.",
            );
        }
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !lock(&state.models).contains(&model) {
        let e = match api {
            Api::OpenAi => HttpError::new(404)
                .message(format!(
                    "The model `{model}` does not exist or you do not have access to it."
                ))
                .code("model_not_found"),
            Api::Anthropic => HttpError::new(404).message(format!("model: {model}")),
        };
        return error_response(api, &e);
    }
    let last = messages
        .last()
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let system_words = body
        .get("system")
        .map(|s| words(&content_text(s)))
        .unwrap_or(0);
    let input_tokens = system_words
        + messages
            .iter()
            .map(|m| words(&content_text(m.get("content").unwrap_or(&Value::Null))))
            .sum::<u64>();
    let mut pieces: Vec<String> = match (&plan.huge, &plan.reply, &plan.tool_calls) {
        (Some(n), _, _) => {
            let text = "x".repeat(*n);
            text.as_bytes()
                .chunks(16 * 1024)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect()
        }
        (None, Some(r), _) => r.split_inclusive(' ').map(String::from).collect(),
        (None, None, Some(_)) => Vec::new(),
        (None, None, None) => last.split_inclusive(' ').map(String::from).collect(),
    };
    let mut truncated = false;
    if let Some(max) = body.get("max_tokens").and_then(Value::as_u64) {
        if plan.huge.is_none() && pieces.len() as u64 > max {
            pieces.truncate(max as usize);
            if let Some(last) = pieces.last_mut() {
                *last = last.trim_end().to_string();
            }
            truncated = true;
        }
    }
    let n = {
        let mut c = lock(&state.counter);
        *c += 1;
        *c
    };
    let answer = Answer {
        id: match api {
            Api::OpenAi => format!("chatcmpl-mock-{n}"),
            Api::Anthropic => format!("msg_mock_{n}"),
        },
        model,
        output_tokens: pieces.iter().map(|p| words(p)).sum(),
        pieces,
        tool_calls: plan.tool_calls.clone().unwrap_or_default(),
        truncated,
        input_tokens,
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let value = match api {
            Api::OpenAi => openai_completion(&answer),
            Api::Anthropic => anthropic_message(&answer),
        };
        return whole_body(value.to_string(), plan);
    }
    let events = match api {
        Api::OpenAi => {
            let include_usage = body
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            openai_events(&answer, include_usage)
        }
        Api::Anthropic => anthropic_events(&answer),
    };
    sse_body(api, events, plan)
}

/// A non-streamed body with the plan's body faults applied.
fn whole_body(text: String, plan: &Plan) -> Resp {
    let bytes = Bytes::from(text);
    let half = bytes.slice(..bytes.len() / 2);
    let pieces = if plan.malformed {
        vec![Piece::Bytes(Bytes::from_static(
            b"{\"id\": \"chatcmpl-broken\", \"choices\": [{\"message\": ",
        ))]
    } else if plan.abort_after.is_some() {
        vec![Piece::Bytes(half), Piece::Reset]
    } else if plan.cut_after.is_some() {
        vec![Piece::Bytes(half)]
    } else if plan.delay_chunks.is_some() {
        vec![
            Piece::Bytes(half),
            Piece::Bytes(bytes.slice(bytes.len() / 2..)),
        ]
    } else {
        vec![Piece::Bytes(bytes)]
    };
    response(200, "application/json", &[], pieces, plan.delay_chunks)
}

/// An SSE body: `events` are whole events (with their blank line), and the plan's
/// stream faults decide how many are sent and how it ends.
fn sse_body(api: Api, mut events: Vec<String>, plan: &Plan) -> Resp {
    if plan.malformed {
        // The first event is the role / message_start; break the next one.
        let i = 1.min(events.len().saturating_sub(1));
        events[i] = match api {
            Api::OpenAi => "data: {\"id\": \"chatcmpl-broken\", \"choices\": [{\"delta\": \n\n".to_string(),
            Api::Anthropic => "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\n\n".to_string(),
        };
    }
    let mut reset = false;
    if let Some((n, kind, message)) = &plan.error_event {
        events.truncate(*n);
        events.push(match api {
            Api::OpenAi => sse(None, &json!({ "error": { "message": message, "type": kind, "param": null, "code": null } })),
            Api::Anthropic => sse(Some("error"), &json!({ "type": "error", "error": { "type": kind, "message": message } })),
        });
    }
    if let Some(n) = plan.cut_after {
        events.truncate(n);
    }
    if let Some(n) = plan.abort_after {
        events.truncate(n);
        reset = true;
    }
    let mut pieces: Vec<Piece> = events
        .into_iter()
        .map(|e| Piece::Bytes(Bytes::from(e)))
        .collect();
    if reset {
        pieces.push(Piece::Reset);
    }
    response(
        200,
        "text/event-stream",
        &[("cache-control", "no-cache".to_string())],
        pieces,
        plan.delay_chunks,
    )
}

fn sse(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

fn fragments(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars
        .chunks(ARGUMENT_FRAGMENT_CHARS)
        .map(|c| c.iter().collect())
        .collect()
}

fn openai_finish(a: &Answer) -> &'static str {
    if !a.tool_calls.is_empty() {
        "tool_calls"
    } else if a.truncated {
        "length"
    } else {
        "stop"
    }
}

fn openai_usage(a: &Answer) -> Value {
    json!({
        "prompt_tokens": a.input_tokens,
        "completion_tokens": a.output_tokens,
        "total_tokens": a.input_tokens + a.output_tokens,
    })
}

fn openai_completion(a: &Answer) -> Value {
    let text = a.text();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !a.tool_calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null,
    });
    if !a.tool_calls.is_empty() {
        message["tool_calls"] = a
            .tool_calls
            .iter()
            .map(|c| json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } }))
            .collect();
    }
    json!({
        "id": a.id,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": a.model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": openai_finish(a) }],
        "usage": openai_usage(a),
    })
}

fn openai_events(a: &Answer, include_usage: bool) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": a.id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": a.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        if include_usage {
            // With include_usage, every chunk but the last carries `usage: null`.
            c["usage"] = Value::Null;
        }
        sse(None, &c)
    };
    let mut events = vec![chunk(
        json!({ "role": "assistant", "content": "", "refusal": null }),
        Value::Null,
    )];
    for p in &a.pieces {
        events.push(chunk(json!({ "content": p }), Value::Null));
    }
    for (i, call) in a.tool_calls.iter().enumerate() {
        events.push(chunk(
            json!({ "tool_calls": [{ "index": i, "id": call.id, "type": "function", "function": { "name": call.name, "arguments": "" } }] }),
            Value::Null,
        ));
        for f in fragments(&call.arguments) {
            events.push(chunk(
                json!({ "tool_calls": [{ "index": i, "function": { "arguments": f } }] }),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!(openai_finish(a))));
    if include_usage {
        events.push(sse(
            None,
            &json!({
                "id": a.id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": a.model,
                "choices": [], "usage": openai_usage(a),
            }),
        ));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

fn anthropic_stop(a: &Answer) -> &'static str {
    if !a.tool_calls.is_empty() {
        "tool_use"
    } else if a.truncated {
        "max_tokens"
    } else {
        "end_turn"
    }
}

fn anthropic_message(a: &Answer) -> Value {
    let mut content = Vec::new();
    let text = a.text();
    if !text.is_empty() || a.tool_calls.is_empty() {
        content.push(json!({ "type": "text", "text": text }));
    }
    for c in &a.tool_calls {
        let input: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
        content.push(json!({ "type": "tool_use", "id": c.id, "name": c.name, "input": input }));
    }
    json!({
        "id": a.id, "type": "message", "role": "assistant", "model": a.model,
        "content": content,
        "stop_reason": anthropic_stop(a), "stop_sequence": null,
        "usage": { "input_tokens": a.input_tokens, "output_tokens": a.output_tokens,
                   "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 },
    })
}

fn anthropic_events(a: &Answer) -> Vec<String> {
    let mut events = vec![
        sse(
            Some("message_start"),
            &json!({ "type": "message_start", "message": {
                "id": a.id, "type": "message", "role": "assistant", "model": a.model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": { "input_tokens": a.input_tokens, "output_tokens": 1,
                           "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 },
            }}),
        ),
        sse(Some("ping"), &json!({ "type": "ping" })),
    ];
    let mut index = 0;
    let text_block = !a.pieces.is_empty() || a.tool_calls.is_empty();
    if text_block {
        events.push(sse(
            Some("content_block_start"),
            &json!({ "type": "content_block_start", "index": index, "content_block": { "type": "text", "text": "" } }),
        ));
        for (i, p) in a.pieces.iter().enumerate() {
            events.push(sse(
                Some("content_block_delta"),
                &json!({ "type": "content_block_delta", "index": index, "delta": { "type": "text_delta", "text": p } }),
            ));
            if i == 0 {
                // Pings arrive anywhere, including between deltas of one block.
                events.push(sse(Some("ping"), &json!({ "type": "ping" })));
            }
        }
        events.push(sse(
            Some("content_block_stop"),
            &json!({ "type": "content_block_stop", "index": index }),
        ));
        index += 1;
    }
    for c in &a.tool_calls {
        events.push(sse(
            Some("content_block_start"),
            &json!({ "type": "content_block_start", "index": index,
                     "content_block": { "type": "tool_use", "id": c.id, "name": c.name, "input": {} } }),
        ));
        // The real API opens with an empty fragment.
        events.push(sse(
            Some("content_block_delta"),
            &json!({ "type": "content_block_delta", "index": index, "delta": { "type": "input_json_delta", "partial_json": "" } }),
        ));
        for f in fragments(&c.arguments) {
            events.push(sse(
                Some("content_block_delta"),
                &json!({ "type": "content_block_delta", "index": index, "delta": { "type": "input_json_delta", "partial_json": f } }),
            ));
        }
        events.push(sse(
            Some("content_block_stop"),
            &json!({ "type": "content_block_stop", "index": index }),
        ));
        index += 1;
    }
    events.push(sse(
        Some("message_delta"),
        &json!({ "type": "message_delta", "delta": { "stop_reason": anthropic_stop(a), "stop_sequence": null },
                 "usage": { "output_tokens": a.output_tokens } }),
    ));
    events.push(sse(
        Some("message_stop"),
        &json!({ "type": "message_stop" }),
    ));
    events
}

#[cfg(test)]
mod tests;
