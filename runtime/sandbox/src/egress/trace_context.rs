//! The egress span and W3C trace context on outbound requests.
//!
//! Every guest request gets a child span of the provider call (`egress`, kind
//! client, with the HTTP client attributes of the OpenTelemetry semantic
//! conventions: method, server address and port, response status), and, when
//! traces are exported, a `traceparent` header naming that span, so the upstream
//! continues the caller's trace. What the span never holds: the path, the query,
//! headers or bodies (a guest may put a key in any of them).
//!
//! Zero cost when traces are off: the span is DEBUG, so with the default filter
//! it is disabled and every function here returns at its first check; the
//! propagator is OpenTelemetry's global one, a no-op until the binary installs
//! the W3C one (`tamma serve` does so only when it exports traces).

use http::{HeaderMap, Method, Response};
use opentelemetry::trace::TraceContextExt as _;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::target::Target;

/// The span of one outbound request of `provider`.
pub(super) fn egress_span(provider: &str, method: &Method) -> Span {
    tracing::debug_span!(
        target: "tamma::egress",
        "egress",
        otel.name = method.as_str(),
        otel.kind = "client",
        provider,
        http.request.method = method.as_str(),
        server.address = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// Write `span`'s context into `headers` as `traceparent` (and `tracestate`),
/// replacing whatever the guest sent under those names.
pub(super) fn inject(span: &Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        // No OpenTelemetry layer: nothing to propagate.
        return;
    }
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers))
    });
}

/// The checked target, on the current (egress) span.
pub(super) fn record_target(target: &Target) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    span.record("server.address", target.host.as_str());
    // Numbers as OpenTelemetry integers (a recorded field of a started span
    // would be exported as text).
    span.set_attribute("server.port", i64::from(target.port));
}

/// The response status, or the error's kind, on the current (egress) span.
pub(super) fn record_outcome<B, E: std::fmt::Debug>(outcome: &Result<Response<B>, E>) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    match outcome {
        Ok(r) => {
            span.set_attribute("http.response.status_code", i64::from(r.status().as_u16()));
        }
        // The wasi:http error code names the failure (`HttpRequestDenied`,
        // `DnsTimeout`, …): a fixed set, and never a header or a value.
        Err(e) => {
            span.record("error.type", tracing::field::debug(e));
            span.record("otel.status_code", "error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_injected_without_a_trace_layer() {
        let span = egress_span("p", &Method::POST);
        let mut headers = HeaderMap::new();
        inject(&span, &mut headers);
        assert!(headers.is_empty());
    }
}
