//! The walk over a plan's targets: each attempt, its retries, the fallback to
//! the next target, and what every attempt counted (`tamma_route_attempts_total`,
//! `tamma_route_retries_total`, [`Served::attempts`]).

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use super::{falls_through, ClientWaiting, Plan, Served, Target};
use crate::api_error::ApiError;
use crate::metrics::routes::Outcome;
use crate::AppState;
use tamma_registry::registry::ProviderHandle;
use tamma_sandbox::error::{Error, ErrorCode};
use tamma_sandbox::types::{CompletionRequest, EmbeddingRequest, ProviderErrorCode};

/// A request that can be routed: each target gets a copy naming its own model.
pub(crate) trait ForModel: Clone {
    fn for_model(&self, model: &str) -> Self;
}

impl ForModel for CompletionRequest {
    fn for_model(&self, model: &str) -> Self {
        let mut r = self.clone();
        r.model = model.to_string();
        r
    }
}

impl ForModel for EmbeddingRequest {
    fn for_model(&self, model: &str) -> Self {
        let mut r = self.clone();
        r.model = model.to_string();
        r
    }
}

fn context_too_long(e: &Error) -> bool {
    e.code == ErrorCode::ProviderError
        && e.provider_error
            .as_ref()
            .is_some_and(|p| p.code == ProviderErrorCode::ContextTooLong)
}

/// Refused before any call was made: the next target goes at once.
fn refused(e: &Error) -> bool {
    matches!(
        e.code,
        ErrorCode::CircuitOpen
            | ErrorCode::NotFound
            | ErrorCode::ProviderStopped
            | ErrorCode::Unsupported
    )
}

/// Try `plan`'s targets with `call` until one answers, a caller's mistake ends
/// the request, or the targets run out.
pub(super) async fn run<R, T, F, Fut>(
    state: &AppState,
    plan: &Plan,
    req: &R,
    mut waiting: ClientWaiting,
    mut call: F,
) -> (Served, Result<(Target, T), ApiError>)
where
    R: ForModel,
    F: FnMut(ProviderHandle, R) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let began = Instant::now();
    let route = plan.route.as_deref();
    let retries = route.and_then(|r| r.retries);
    let window_fallback = route.is_some_and(|r| r.context_window_fallback);
    let mut served = Served {
        route: route.map(|r| r.name.clone()),
        ..Served::default()
    };
    let mut last: Option<Error> = None;
    let mut all_open = true;
    let mut soonest: Option<Duration> = None;
    // After a `context-too-long`, only targets with a larger window than this.
    let mut needs_window: Option<u32> = None;
    for (i, t) in plan.targets.iter().enumerate() {
        let handle = state.registry.get(&t.provider);
        if let Some(floor) = needs_window {
            let window = handle
                .as_ref()
                .ok()
                .and_then(|h| h.context_window(&t.model));
            if window.is_none_or(|w| w <= floor) {
                continue;
            }
        }
        if waiting.gone() {
            break;
        }
        let label = route.map(|_| format!("{}/{}", t.provider, t.model));
        let count = |outcome: Outcome| {
            if let (Some(r), Some(l)) = (route, &label) {
                state.metrics.routes.attempt(&r.name, l, outcome);
            }
        };
        served.provider.clone_from(&t.provider);
        served.model.clone_from(&t.model);
        let mut retry = 0u32;
        let e = loop {
            served.attempts += 1;
            let result = match &handle {
                Ok(h) => {
                    let r = req.for_model(&t.model);
                    // One span per attempt (DEBUG: exported traces show each try).
                    let span = tracing::debug_span!(
                        "route_attempt",
                        provider = %t.provider,
                        model = %t.model,
                        attempt = served.attempts,
                    );
                    call(h.clone(), r).instrument(span).await
                }
                Err(e) => Err(e.clone()),
            };
            let e = match result {
                Ok(v) => {
                    count(Outcome::Success);
                    return (served, Ok((t.clone(), v)));
                }
                Err(e) => e,
            };
            if !e.is_provider_failure() {
                break e;
            }
            let Some(wait) = retries
                .and_then(|p| p.wait(retry, e.retry_after, began.elapsed(), fastrand::f64()))
            else {
                break e;
            };
            count(Outcome::Retry);
            if let (Some(r), Some(l)) = (route, &label) {
                state.metrics.routes.retry(&r.name, l);
            }
            tracing::info!(
                model = %plan.requested,
                provider = %t.provider,
                code = %e.code,
                wait_ms = wait.as_millis() as u64,
                retry = retry + 1,
                "retrying the target"
            );
            if !waiting.sleep(wait).await {
                return (served, Err(client_gone()));
            }
            retry += 1;
        };
        if e.code == ErrorCode::CircuitOpen {
            let after = e.retry_after.unwrap_or(Duration::from_secs(1));
            soonest = Some(soonest.map_or(after, |s| s.min(after)));
        } else {
            all_open = false;
        }
        let next_window = window_fallback && context_too_long(&e);
        if !next_window && !falls_through(&e) {
            count(Outcome::Failed);
            return (served, Err(ApiError::from(&e)));
        }
        if next_window {
            let window = handle
                .as_ref()
                .ok()
                .and_then(|h| h.context_window(&t.model));
            needs_window = Some(window.unwrap_or(0).max(needs_window.unwrap_or(0)));
        }
        let has_next = i + 1 < plan.targets.len();
        count(if !has_next {
            Outcome::Failed
        } else if refused(&e) {
            Outcome::Skipped
        } else {
            Outcome::Fallback
        });
        if has_next {
            tracing::info!(
                model = %plan.requested,
                provider = %t.provider,
                code = %e.code,
                next = %plan.targets[i + 1].provider,
                "falling back to the next target"
            );
            state
                .metrics
                .record_fallback(plan.route_name().unwrap_or(&plan.requested));
        }
        last = Some(e);
    }
    let err = match last {
        _ if waiting.gone() => client_gone(),
        Some(_) if all_open && plan.targets.len() > 1 => {
            ApiError::all_circuits_open(&plan.requested, soonest.unwrap_or(Duration::from_secs(1)))
        }
        Some(e) => ApiError::from(&e),
        None => ApiError::model_not_found(format!(
            "the route {:?} has no usable target",
            plan.requested
        )),
    };
    (served, Err(err))
}

/// The answer nobody reads: the client went away before it.
fn client_gone() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "the client went away before an answer",
    )
    .code("client_disconnected")
}
