//! Kubernetes probes and the metrics endpoint. None of them counts against
//! `max_concurrent_requests`, so a busy server still answers its probes.
//!
//! - `GET /healthz`: 200 while the process serves HTTP at all (liveness; also
//!   during a graceful shutdown, so the kubelet does not kill a draining pod).
//! - `GET /readyz`: 200 once discovery has finished and at least one provider is
//!   ready; 503 before, when none is ready, and from the moment shutdown begins
//!   (readiness: the pod leaves the Service's endpoints).
//! - `GET /metrics`: Prometheus text.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::api_error::ApiError;
use super::openai_api::json_response;
use super::AppState;
use tamma_registry::registry::ProviderState;

/// `GET /healthz`
pub async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

/// `GET /readyz`
pub async fn readyz(State(state): State<AppState>) -> Response {
    let discovered = state.readiness.discovery_finished.load(Ordering::Acquire);
    let shutting_down = *state.shutdown.borrow() || state.registry.is_shutting_down();
    let snaps = state.registry.snapshot();
    let ready: Vec<&str> = snaps
        .iter()
        .filter(|s| s.state == ProviderState::Ready)
        .map(|s| s.name.as_str())
        .collect();
    let (status, why) = if shutting_down {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !discovered {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "provider discovery has not finished",
        )
    } else if ready.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "no provider is ready")
    } else {
        (StatusCode::OK, "ready")
    };
    json_response(
        status,
        &json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "reason": why,
            "providers_ready": ready,
            "providers_registered": snaps.len(),
        }),
    )
}

/// `GET /metrics`
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = match state.metrics.render() {
        Ok(t) => t,
        Err(_) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the metrics could not be encoded",
            )
            .code("internal")
            .into_response()
        }
    };
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
