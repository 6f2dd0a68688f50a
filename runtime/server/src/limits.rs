//! Request limits: concurrent requests (429), body size (413), body read time
//! (408). The header read timeout (408) lives in the connection loop (`lib.rs`).
//!
//! Hand-written on purpose; the tower and tower-http layers were weighed:
//! - `RequestBodyLimitLayer` answers 413 with its own plain body and cannot
//!   count the rejection; axum's `DefaultBodyLimit` only bounds axum's own
//!   extractors, which the handlers do not use. Bodies are read through
//!   [`read_body`] instead: `http_body_util::Limited` does the counting, and the
//!   answer is the OpenAI-shaped 413 naming the limit, counted as
//!   `body_too_large`, for a declared and a streamed length alike.
//! - `RequestBodyTimeoutLayer` restarts its clock at every frame, so a client
//!   dripping a byte at a time never trips it; `TimeoutLayer` times the whole
//!   response, which would cut long completions and streams. The body read
//!   timeout here bounds the whole body, answers 408 and counts `body_timeout`.
//! - tower's `ConcurrencyLimitLayer` queues instead of refusing, and frees its
//!   permit when the handler returns; here the 429 is immediate and a stream
//!   holds its permit until its last byte ([`Guarded`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;

use super::api_error::ApiError;
use super::metrics::Metrics;
use super::AppState;

/// Decrements the in-flight gauge and frees the concurrency permit when the
/// response body is done (a stream holds it until its end).
struct InFlight {
    _permit: tokio::sync::OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.request_finished();
    }
}

/// Middleware for the OpenAI and admin APIs.
pub async fn guard(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let path = req.uri().path();
    let limit = if path.starts_with("/admin/") {
        state.config.load().limits.max_upload_bytes
    } else {
        state.config.load().limits.max_body_bytes
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        state.metrics.record_rejected("body_too_large");
        return ApiError::too_large(limit).into_response();
    }
    // The event stream is long-lived and authenticated: not counted.
    if path == "/admin/v1/events" {
        return next.run(req).await;
    }
    let permit = match state.limiter.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            state.metrics.record_rejected("concurrency");
            return ApiError::too_many_requests(state.config.load().limits.max_concurrent_requests)
                .into_response();
        }
    };
    state.metrics.request_started();
    let guard = InFlight {
        _permit: permit,
        metrics: state.metrics.clone(),
    };
    hold_until_done(next.run(req).await, guard)
}

/// The response with `keep` riding on its body: dropped only when the body is
/// done (written or abandoned), so a stream holds it to its end. Everything
/// else is forwarded, so a `Content-Length` survives. Used for the concurrency
/// permit here and for the access log (`auth::guard`).
pub(crate) fn hold_until_done<T: Send + Unpin + 'static>(resp: Response, keep: T) -> Response {
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::new(Holding {
            inner: body,
            _keep: keep,
        }),
    )
}

struct Holding<T> {
    inner: Body,
    _keep: T,
}

impl<T: Unpin> http_body::Body for Holding<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Read a request body within `limit` bytes and the body read timeout.
pub async fn read_body(state: &AppState, body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let timeout = Duration::from_millis(state.config.load().limits.body_read_timeout_ms);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => {
            state.metrics.record_rejected("body_timeout");
            Err(ApiError::request_timeout("request body"))
        }
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                state.metrics.record_rejected("body_too_large");
                Err(ApiError::too_large(limit))
            } else {
                Err(ApiError::bad_request(format!(
                    "cannot read the request body: {e}"
                )))
            }
        }
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}
