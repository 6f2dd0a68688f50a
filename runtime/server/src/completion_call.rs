//! One completion through the gateway, shared by the inbound chat APIs
//! (`/v1/chat/completions` in [`crate::openai_api`], `/v1/messages` in
//! [`crate::anthropic_api`]), so that both give the same guarantees: the body
//! read within the limits, the model resolved by [`routing`] (routes,
//! `<provider>/<model>`, bare ids), the caller admitted by the client limits
//! before any provider is called, retries and fallback before the first byte,
//! tokens charged once, the request counted in the metrics and the access log,
//! and the GenAI attributes on the request's span.
//!
//! What differs between the APIs is only the wire format: each parses its own
//! request into a [`Parsed`] and shapes answers and stream events with its own
//! [`Dialect`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tracing::Instrument as _;

use crate::api_error::ApiError;
use crate::auth;
use crate::client_limits::{self, Ticket};
use crate::metrics::genai::model_label;
use crate::request_tracing::genai;
use crate::routing::{self, Plan, Started};
use crate::{read_body, sse, AppState};
use tamma_sandbox::types::{
    CompletionRequest, CompletionResponse, FinishReason, StreamChunk, Usage,
};

/// A request as an inbound API parsed it.
#[derive(Debug)]
pub struct Parsed<D> {
    /// What the client asked for (a route, `<provider>/<model>` or a bare id).
    pub model: String,
    /// The request for the provider (its `model` is set per target).
    pub request: CompletionRequest,
    /// Answer with server-sent events.
    pub stream: bool,
    /// How to shape the answer (with the request's own options).
    pub dialect: D,
}

/// An inbound API's answer format.
pub trait Dialect: Send + 'static {
    /// The stream writer of this format.
    type Writer: StreamWriter;
    /// The body of a whole answer; `model` is `<provider>/<model>`.
    fn whole(&self, model: &str, resp: &CompletionResponse) -> Value;
    /// A writer for one stream; `model` is `<provider>/<model>`.
    fn writer(self, model: String) -> Self::Writer;
}

/// Shapes one stream's provider chunks into SSE events.
pub trait StreamWriter: Send + 'static {
    /// The events for one provider chunk.
    fn events(&mut self, c: &StreamChunk) -> Vec<sse::Frame>;
    /// The events of a clean end of the provider's stream, terminator included.
    fn end(&mut self) -> Vec<sse::Frame>;
    /// The in-band error event of a stream cut short after its start.
    fn error(&mut self, e: &ApiError) -> sse::Frame;
    /// The usage the provider reported, once it has.
    fn usage(&self) -> Option<Usage>;
}

/// A unique id, `<prefix><24 hex>`: unpredictable across restarts (a random
/// seed), unique within one (a counter).
pub fn unique_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let seed = SEED.get_or_init(std::collections::hash_map::RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = seed.build_hasher();
    h.write_u64(n);
    format!("{prefix}{:016x}{:08x}", h.finish(), n as u32)
}

/// Serve one completion request of an inbound API: `endpoint` is its metrics
/// label, `parse` its request parser. Errors are [`ApiError`] responses (an API
/// with another error shape re-renders them, see `anthropic_api::error_shape`).
pub async fn serve<D: Dialect>(
    state: AppState,
    req: Request<Body>,
    endpoint: &'static str,
    parse: fn(&[u8]) -> Result<Parsed<D>, ApiError>,
) -> Response {
    let started = Instant::now();
    let call = Call {
        state,
        started,
        endpoint,
    };
    let caller = auth::caller_of(&req);
    let access = auth::access_of(&req);
    // One version of the `[server]` section for the whole request: its body
    // limit and its routes come from the same file.
    let config = call.state.config.load();
    let body = match read_body(&call.state, req.into_body(), config.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return call.error("", e),
    };
    let parsed = match parse(&body) {
        Ok(c) => c,
        Err(e) => return call.error("", e),
    };
    let span = tracing::Span::current();
    genai::request(&span, &parsed.model, parsed.stream);
    let plan = match routing::plan(&call.state, &config, &parsed.model) {
        Ok(p) => p,
        Err(e) => return call.error("", e),
    };
    // Client keys: the model must be allowed and the key's limits not spent,
    // before any provider is called.
    let mut ticket = match client_limits::admit_request(&call.state, &caller, &plan, access).await {
        Ok(t) => t,
        Err(e) => return call.error("", e),
    };
    if let Some(a) = ticket.access() {
        a.update(|f| f.stream = parsed.stream);
    }
    if parsed.stream {
        return call.stream(parsed, plan, ticket).await;
    }
    let (served, result) = routing::complete(&call.state, &plan, &parsed.request).await;
    record_attempts(&ticket, &served);
    let mut r = match result {
        Ok((target, resp)) => {
            let label = client_limits::model_label(&call.state, &target.provider, &target.model);
            ticket
                .charge(
                    &target.provider,
                    &label,
                    u64::from(resp.usage.input_tokens),
                    u64::from(resp.usage.output_tokens),
                )
                .await;
            let model = target.served_model(&resp.model);
            genai::target(&span, &target.provider, &model);
            genai::outcome(&span, Some(&resp.usage), Some(resp.finish_reason));
            let body = parsed.dialect.whole(&model, &resp);
            call.state
                .metrics
                .record_request(endpoint, &target.provider, 200, started.elapsed());
            json_answer(body.to_string(), &target.provider)
        }
        Err(e) => {
            let provider = e.provider.clone().unwrap_or_default();
            call.error(&provider, e)
        }
    };
    r.extensions_mut().insert(served);
    r
}

/// The access log names how many provider calls the answer took.
fn record_attempts(ticket: &Ticket, served: &routing::Served) {
    if let Some(a) = ticket.access() {
        let attempts = served.attempts;
        a.update(|f| f.attempts = Some(attempts));
    }
}

/// A streaming client that reads nothing for this long is dropped, so that a
/// stalled reader cannot pin a provider instance (held for the whole stream).
const STALLED_CLIENT: std::time::Duration = std::time::Duration::from_secs(30);

/// Before the first discovery round is done a configured model may just not be
/// registered yet: say so with 503 and `Retry-After` rather than a 404 that a
/// client cannot tell from a typo.
pub(crate) fn while_starting(state: &AppState, e: ApiError) -> ApiError {
    let discovered = state
        .readiness
        .discovery_finished
        .load(std::sync::atomic::Ordering::Acquire);
    if discovered || e.status != StatusCode::NOT_FOUND {
        return e;
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        format!(
            "the server is still loading its providers; retry shortly ({})",
            e.message
        ),
    )
    .code("providers_loading")
    .retry_after(std::time::Duration::from_secs(1))
}

/// A failed request's answer, for every gateway endpoint: the span's error, the
/// request and error metrics, and the 503 while providers are still loading.
pub(crate) fn error_response(
    state: &AppState,
    endpoint: &'static str,
    started: Instant,
    provider: &str,
    e: ApiError,
) -> Response {
    let e = while_starting(state, e);
    let code = e.code.as_deref().unwrap_or(e.kind);
    genai::error(&tracing::Span::current(), code);
    state
        .metrics
        .record_request(endpoint, provider, e.status.as_u16(), started.elapsed());
    state.metrics.record_error(provider, code);
    e.into_response()
}

/// A whole JSON answer, naming the provider that served it (`x-tamma-provider`).
pub(crate) fn json_answer(body: impl IntoResponse, provider: &str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(provider) {
        r.headers_mut().insert("x-tamma-provider", v);
    }
    r
}

/// What every step of one request needs.
#[derive(Clone)]
struct Call {
    state: AppState,
    started: Instant,
    endpoint: &'static str,
}

impl Call {
    fn error(&self, provider: &str, e: ApiError) -> Response {
        error_response(&self.state, self.endpoint, self.started, provider, e)
    }

    async fn stream<D: Dialect>(
        self,
        parsed: Parsed<D>,
        plan: Plan,
        mut ticket: Ticket,
    ) -> Response {
        let state = &self.state;
        // Fallback happens here, before the response is committed: a target's stream
        // is only taken once its first chunk (or its clean end) has arrived.
        let (served, result) = routing::start_stream(state, &plan, &parsed.request).await;
        record_attempts(&ticket, &served);
        let Started {
            target,
            mut stream,
            first,
        } = match result {
            Ok(s) => s,
            Err(e) => {
                let provider = e.provider.clone().unwrap_or_default();
                let mut r = self.error(&provider, e);
                r.extensions_mut().insert(served);
                return r;
            }
        };
        if first.is_some() {
            let label = model_label(
                &state.registry,
                &target.provider,
                &target.model,
                plan.route.is_some(),
            );
            state.metrics.record_time_to_first_token(
                &target.provider,
                label,
                self.started.elapsed(),
            );
        }
        let model = match &first {
            Some(c) if !c.model.is_empty() => format!("{}/{}", target.provider, c.model),
            _ => format!("{}/{}", target.provider, target.model),
        };
        let span = tracing::Span::current();
        genai::target(&span, &target.provider, &model);
        let (tx, mut resp) = sse::frame_channel(32);
        if let Ok(v) = HeaderValue::from_str(&target.provider) {
            resp.headers_mut().insert("x-tamma-provider", v);
        }
        resp.extensions_mut().insert(served);
        let mut writer = parsed.dialect.writer(model);
        // What a stream cut short is charged when its usage never came.
        let prompt_chars: usize = parsed
            .request
            .messages
            .iter()
            .map(|m| m.content.len())
            .sum();
        let label = client_limits::model_label(state, &target.provider, &target.model);
        let call = self.clone();
        // The producer keeps the request's span (its request id) for its logs.
        tokio::spawn(
            async move {
                let provider = target.provider.clone();
                let mut next = first.map(Ok);
                let mut client_gone = false;
                let mut sent_chars = 0usize;
                // Charged once: at the clean end before the terminator (so a client's
                // next request sees it), otherwise when the loop ends.
                let charge = |writer: &D::Writer, sent_chars: usize| match writer.usage() {
                    Some(u) => (u64::from(u.input_tokens), u64::from(u.output_tokens)),
                    None => (
                        client_limits::estimate_tokens(prompt_chars),
                        client_limits::estimate_tokens(sent_chars),
                    ),
                };
                let (mut usage, mut finish) = (None, None);
                loop {
                    let item = match next.take() {
                        Some(i) => i.map(Some),
                        None => stream.next().await,
                    };
                    match item {
                        Ok(Some(chunk)) => {
                            sent_chars += chunk.delta.len();
                            usage = chunk.usage.or(usage);
                            finish = chunk.finish_reason.or(finish);
                            let batch = writer.events(&chunk);
                            if !batch.is_empty()
                                && tx.send_timeout(batch, STALLED_CLIENT).await.is_err()
                            {
                                client_gone = true;
                                break;
                            }
                        }
                        Ok(None) => {
                            genai::outcome(
                                &span,
                                usage.as_ref(),
                                Some(finish.unwrap_or(FinishReason::Stop)),
                            );
                            let (input, output) = charge(&writer, sent_chars);
                            ticket.charge(&provider, &label, input, output).await;
                            if tx.send_timeout(writer.end(), STALLED_CLIENT).await.is_err() {
                                client_gone = true;
                            }
                            break;
                        }
                        Err(e) => {
                            // Mid-stream: an in-band error event and no terminator, so
                            // a client can never take a cut answer for a whole one.
                            let api = ApiError::from(&e);
                            genai::error(&span, api.code.as_deref().unwrap_or(api.kind));
                            call.state
                                .metrics
                                .record_error(&provider, api.code.as_deref().unwrap_or("error"));
                            let _ = tx
                                .send_timeout(vec![writer.error(&api)], STALLED_CLIENT)
                                .await;
                            break;
                        }
                    }
                }
                if client_gone {
                    call.state
                        .metrics
                        .record_error(&provider, "client_disconnected");
                    if let Some(a) = ticket.access() {
                        a.update(|f| f.client_gone = true);
                    }
                }
                let (input, output) = charge(&writer, sent_chars);
                ticket.charge(&provider, &label, input, output).await;
                ticket.release();
                call.state.metrics.record_request(
                    call.endpoint,
                    &provider,
                    200,
                    call.started.elapsed(),
                );
                drop(stream);
            }
            .in_current_span(),
        );
        resp
    }
}
