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
        method = %req.method(),
        path = %req.uri().path(),
        request_id = tracing::field::Empty,
    );
    if let Some(id) = req.extensions().get::<RequestId>() {
        // Debug-formatted: a client's own id is shown quoted and escaped.
        span.record("request_id", tracing::field::debug(id.header_value()));
    }
    span
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
