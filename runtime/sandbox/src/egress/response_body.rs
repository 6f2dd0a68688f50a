//! The response body as the guest sees it: size-capped, under the total and
//! between-bytes timeouts, and holding the provider's concurrency permit until
//! it ends (or is dropped).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::Error as HttpError;

/// The response body as the guest sees it: size-capped, under the total and
/// between-bytes timeouts, holding the concurrency permit until it ends.
pub(super) struct LimitedBody {
    /// `None` once finished or failed: later polls end the stream.
    inner: Option<hyper::body::Incoming>,
    /// Bytes still allowed before the cap.
    remaining: u64,
    /// The cap, for the error.
    limit: u64,
    /// Fires at the total deadline.
    total: Pin<Box<Sleep>>,
    /// The between-bytes timeout and its timer, reset on every frame.
    between_bytes: Option<(Duration, Pin<Box<Sleep>>)>,
    /// The provider's and the host's concurrency permits; `None` once finished.
    permit: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

impl LimitedBody {
    /// Wrap `incoming`: at most `limit` bytes, ending by `total_deadline`, with
    /// no gap longer than `between_bytes` (if any) between frames.
    pub(super) fn new(
        incoming: hyper::body::Incoming,
        limit: u64,
        total_deadline: Instant,
        between_bytes: Option<Duration>,
        permit: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    ) -> Self {
        LimitedBody {
            inner: Some(incoming),
            remaining: limit,
            limit,
            total: Box::pin(tokio::time::sleep_until(total_deadline)),
            between_bytes: between_bytes.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
            permit: Some(permit),
        }
    }

    /// Stop: drop the connection's body (hyper then closes rather than reuses a
    /// half-read connection) and give back the permit.
    fn finish(&mut self) {
        self.inner = None;
        self.permit = None;
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        // A declared length over the cap fails before reading any of it.
        if inner.size_hint().lower() > this.remaining {
            let limit = this.limit;
            this.finish();
            return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(limit)))));
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        let limit = this.limit;
                        this.finish();
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            limit,
                        )))));
                    }
                    this.remaining -= len;
                }
                if let Some((d, sleep)) = this.between_bytes.as_mut() {
                    sleep.as_mut().reset(Instant::now() + *d);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish();
                Poll::Ready(Some(Err(if e.is_incomplete_message() {
                    HttpError::HttpResponseIncomplete
                } else {
                    HttpError::Hyper(e)
                })))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.total.as_mut().poll(cx).is_ready() {
                    this.finish();
                    return Poll::Ready(Some(Err(HttpError::HttpResponseTimeout)));
                }
                if let Some((_, sleep)) = this.between_bytes.as_mut() {
                    if sleep.as_mut().poll(cx).is_ready() {
                        this.finish();
                        return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::test_server::*;
    use crate::egress::EgressLimits;
    use std::sync::Arc;

    #[tokio::test]
    async fn response_body_is_capped() {
        let server = start_server().await;
        let limits = EgressLimits {
            max_response_body_bytes: 4096,
            ..EgressLimits::default()
        };
        let policy = policy_for(server.port, limits);
        // Declared length over the cap, and a chunked body that grows past it.
        for path in ["/big", "/stream"] {
            let req = get(&format!("http://{NAME}:{}{path}", server.port))
                .body(empty())
                .unwrap();
            let response = send_via(&policy, req).await.unwrap();
            let err = body_of(response).await.unwrap_err();
            assert!(
                matches!(err, HttpError::HttpResponseBodySize(Some(4096))),
                "{path}: {err}"
            );
        }
        // Under the cap is fine, and a failed body gave its permit back.
        let req = get(&format!("http://{NAME}:{}/ok", server.port))
            .body(empty())
            .unwrap();
        assert_eq!(
            body_of(send_via(&policy, req).await.unwrap())
                .await
                .unwrap(),
            "hello"
        );
        assert_eq!(policy.inner.in_flight.available_permits(), 16);
    }

    #[tokio::test]
    async fn concurrency_cap_fails_fast_and_frees_on_body_end() {
        let server = start_server().await;
        let limits = EgressLimits {
            max_concurrent_requests: 1,
            ..EgressLimits::default()
        };
        let policy = policy_for(server.port, limits);
        let url = |path: &str| format!("http://{NAME}:{}{path}", server.port);
        let held = send_via(&policy, get(&url("/hold")).body(empty()).unwrap())
            .await
            .unwrap();
        let err = send_via(&policy, get(&url("/ok")).body(empty()).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::ConnectionLimitReached), "{err}");
        assert_eq!(policy.counters().refused_concurrency, 1);
        // Dropping the unfinished body releases the slot.
        drop(held);
        let ok = send_via(&policy, get(&url("/ok")).body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(body_of(ok).await.unwrap(), "hello");
    }

    /// The host-wide budget bounds all providers together: with one permit for
    /// the host, a second provider (its own limit far from reached) is refused
    /// while the first one's response is open, and served once it ends.
    #[tokio::test]
    async fn the_host_wide_budget_spans_providers() {
        let server = start_server().await;
        let host = Arc::new(tokio::sync::Semaphore::new(1));
        let first = policy_for(server.port, EgressLimits::default());
        let second = policy_for(server.port, EgressLimits::default());
        let url = |path: &str| format!("http://{NAME}:{}{path}", server.port);
        let held = send_within(&first, &host, get(&url("/hold")).body(empty()).unwrap())
            .await
            .unwrap();
        let err = send_within(&second, &host, get(&url("/ok")).body(empty()).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::ConnectionLimitReached), "{err}");
        assert_eq!(second.counters().refused_host_concurrency, 1);
        assert_eq!(second.counters().refused_concurrency, 0);
        // The refused request gave its provider permit back at once.
        assert_eq!(second.inner.in_flight.available_permits(), 16);
        drop(held);
        let ok = send_within(&second, &host, get(&url("/ok")).body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(body_of(ok).await.unwrap(), "hello");
        assert_eq!(host.available_permits(), 1);
    }
}
