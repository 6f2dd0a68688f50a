//! Request ids, the per-request span and the access log, from tower-http.
//!
//! - `x-request-id`: a client's own id is kept, otherwise a UUID v4 is made;
//!   either way it is echoed on the response (errors and streams included).
//! - Every request runs in a `request` span carrying its method, path (never
//!   the query, which a client might fill with a key) and request id, so every
//!   log line of a request, including those of the tasks it spawns, names it.
//! - The access log: one DEBUG event per response (status, latency), target
//!   `tower_http::trace::on_response`. The gateway's own `tamma::access` event
//!   adds endpoint and provider and, for a stream, the time until its end.
//!
//! - Trace context: a W3C `traceparent` (and `tracestate`) on the request makes
//!   the span a child of the caller's span, when traces are exported (the binary
//!   installs the OpenTelemetry layer and the W3C propagator; without them this
//!   is skipped). The span is of kind server; the handler adds the GenAI
//!   attributes ([`genai`]) and names it `chat <model>`.
//!
//! Nothing is logged on failure: error statuses are answers (a provider's 502,
//! a client's 400), not server faults, and they are already in the access log
//! and the metrics.

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use tracing::{Level, Span};

/// The request's span.
fn request_span(req: &Request<Body>) -> Span {
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = tracing::field::Empty,
    );
    if let Some(id) = req.extensions().get::<RequestId>() {
        let value = id.header_value();
        match value.to_str() {
            // Visible ASCII only (what `to_str` accepts): safe in a log line as is.
            Ok(text) => span.record("request_id", text),
            // Anything else is shown escaped.
            Err(_) => span.record("request_id", tracing::field::debug(value)),
        };
    }
    continue_trace(&span, req.headers());
    span
}

/// Make `span` a child of the caller's trace, when the request names one and
/// traces are exported.
fn continue_trace(span: &Span, headers: &axum::http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    // Fails only without an OpenTelemetry layer, when there is nothing to link.
    let _ = span.set_parent(parent);
}

/// The GenAI semantic-convention attributes of a chat request's span
/// (<https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/>). Set as
/// OpenTelemetry attributes, not `tracing` fields: they cost nothing (and stay
/// out of the text log) when traces are off. Never the prompt or the completion.
pub mod genai {
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry::{StringValue, Value};
    use tamma_sandbox::types::{FinishReason, Usage};
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    /// The model the client asked for (a route, `provider/model` or a bare id).
    pub fn request(span: &Span, requested_model: &str, stream: bool) {
        if span.is_disabled() {
            return;
        }
        // The span is already open (entered by the trace layer): rename the
        // OpenTelemetry span itself.
        span.context()
            .span()
            .update_name(format!("chat {requested_model}"));
        span.set_attribute("gen_ai.operation.name", "chat");
        span.set_attribute("gen_ai.request.model", requested_model.to_string());
        span.set_attribute("tamma.stream", stream);
    }

    /// An embeddings request for the model the client asked for.
    pub fn embeddings_request(span: &Span, requested_model: &str) {
        if span.is_disabled() {
            return;
        }
        span.context()
            .span()
            .update_name(format!("embeddings {requested_model}"));
        span.set_attribute("gen_ai.operation.name", "embeddings");
        span.set_attribute("gen_ai.request.model", requested_model.to_string());
    }

    /// The provider and model that answered.
    pub fn target(span: &Span, provider: &str, model: &str) {
        if span.is_disabled() {
            return;
        }
        span.set_attribute("gen_ai.system", provider.to_string());
        span.set_attribute("gen_ai.response.model", model.to_string());
    }

    /// Token counts and finish reason of the answer.
    pub fn outcome(span: &Span, usage: Option<&Usage>, finish: Option<FinishReason>) {
        if span.is_disabled() {
            return;
        }
        if let Some(u) = usage {
            span.set_attribute("gen_ai.usage.input_tokens", i64::from(u.input_tokens));
            span.set_attribute("gen_ai.usage.output_tokens", i64::from(u.output_tokens));
        }
        if let Some(f) = finish {
            span.set_attribute(
                "gen_ai.response.finish_reasons",
                Value::Array(vec![StringValue::from(f.as_str())].into()),
            );
        }
    }

    /// The error class of a failed request (the API error's code or kind).
    pub fn error(span: &Span, kind: &str) {
        if span.is_disabled() {
            return;
        }
        span.set_attribute("error.type", kind.to_string());
        span.set_status(opentelemetry::trace::Status::error(kind.to_string()));
    }
}

/// Wrap `router` in the request id, span and access log layers.
pub fn layer(router: Router) -> Router {
    // `Router::layer` wraps what is there: the last layer added runs first. So a
    // request gets its id, then its span (which shows the id), and the id is
    // copied onto the response on its way out.
    router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::DEBUG)
                        .latency_unit(LatencyUnit::Micros),
                )
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
