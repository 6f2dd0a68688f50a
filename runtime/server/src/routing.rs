//! Which provider answers a request, and fallback between a route's targets.
//!
//! A request's `model` is resolved in this order:
//! 1. a route name from `[server.routes]`: its targets, in order;
//! 2. `<provider>/<model>`: that provider, asked for `<model>`;
//! 3. a bare model id offered by exactly one ready provider: that provider.
//!
//! A target is skipped — the next one is tried — when its circuit is open, it is
//! overloaded, stopped or gone, or it fails with a provider failure (a trap, a
//! limit, a timeout, a retryable guest error) *before anything was sent to the
//! client*: a whole answer is only sent once it is complete, and a stream only
//! once its first chunk has arrived. A caller's mistake (a bad request, a context
//! too long) is answered at once: another target would refuse it too. When every
//! target's circuit is open the answer is 503 with `Retry-After` (the soonest
//! moment one of them admits a probe).

use std::future::Future;
use std::time::Duration;

use tracing::Instrument as _;

use super::api_error::ApiError;
use super::AppState;
use tamma_registry::registry::{ProviderHandle, ProviderState, ProviderStream};
use tamma_sandbox::error::{Error, ErrorCode};
use tamma_sandbox::types::{CompletionRequest, CompletionResponse, StreamChunk};

/// One provider and model to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The provider's registered name.
    pub provider: String,
    /// The model id the provider is asked for.
    pub model: String,
}

/// The targets for one request.
#[derive(Clone, Debug)]
pub struct Plan {
    /// What the client asked for.
    pub requested: String,
    /// The route's name, when it was one.
    pub route: Option<String>,
    /// Who to try, in order.
    pub targets: Vec<Target>,
}

fn split_target(s: &str) -> Option<Target> {
    let (p, m) = s.split_once('/')?;
    if p.is_empty() || m.is_empty() {
        return None;
    }
    Some(Target {
        provider: p.to_string(),
        model: m.to_string(),
    })
}

/// Resolve a request's `model`.
pub fn plan(state: &AppState, model: &str) -> Result<Plan, ApiError> {
    if let Some(route) = state.config.load().routes.get(model) {
        return Ok(Plan {
            requested: model.to_string(),
            route: Some(model.to_string()),
            targets: route
                .targets
                .iter()
                .filter_map(|t| split_target(t))
                .collect(),
        });
    }
    if let Some(t) = split_target(model) {
        if !state.registry.contains(&t.provider) {
            return Err(ApiError::model_not_found(format!(
                "the model {model:?} does not exist: no provider named {:?} is registered (GET /v1/models lists the models)",
                t.provider
            )));
        }
        return Ok(Plan {
            requested: model.to_string(),
            route: None,
            targets: vec![t],
        });
    }
    let offering: Vec<String> = state
        .registry
        .snapshot()
        .into_iter()
        .filter(|s| s.state == ProviderState::Ready)
        .filter(|s| s.capabilities.models.iter().any(|m| m.id == model))
        .map(|s| s.name)
        .collect();
    match offering.as_slice() {
        [one] => Ok(Plan {
            requested: model.to_string(),
            route: None,
            targets: vec![Target {
                provider: one.clone(),
                model: model.to_string(),
            }],
        }),
        [] => Err(ApiError::model_not_found(format!(
            "the model {model:?} does not exist: name it <provider>/<model> or as a configured route (GET /v1/models lists them)"
        ))),
        many => Err(ApiError::bad_request(format!(
            "the model {model:?} is offered by several providers ({}): name it <provider>/{model}",
            many.join(", ")
        ))
        .param("model")),
    }
}

/// Whether the next target may be tried after this error.
pub fn falls_through(e: &Error) -> bool {
    e.is_provider_failure()
        || matches!(
            e.code,
            ErrorCode::CircuitOpen
                | ErrorCode::Overloaded
                | ErrorCode::ProviderStopped
                | ErrorCode::NotFound
        )
}

async fn try_targets<T, F, Fut>(
    state: &AppState,
    plan: &Plan,
    req: &CompletionRequest,
    mut call: F,
) -> Result<(Target, T), ApiError>
where
    F: FnMut(ProviderHandle, CompletionRequest) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut last: Option<Error> = None;
    let mut all_open = true;
    let mut soonest: Option<Duration> = None;
    for (i, t) in plan.targets.iter().enumerate() {
        let result = match state.registry.get(&t.provider) {
            Ok(h) => {
                let mut r = req.clone();
                r.model = t.model.clone();
                // One span per attempt (DEBUG: exported traces show each try).
                let attempt = tracing::debug_span!("route_attempt", provider = %t.provider, model = %t.model, attempt = i);
                call(h, r).instrument(attempt).await
            }
            Err(e) => Err(e),
        };
        let e = match result {
            Ok(v) => return Ok((t.clone(), v)),
            Err(e) => e,
        };
        if e.code == ErrorCode::CircuitOpen {
            let after = e.retry_after.unwrap_or(Duration::from_secs(1));
            soonest = Some(soonest.map_or(after, |s| s.min(after)));
        } else {
            all_open = false;
        }
        if !falls_through(&e) {
            return Err(ApiError::from(&e));
        }
        if i + 1 < plan.targets.len() {
            tracing::info!(
                model = %plan.requested,
                provider = %t.provider,
                code = %e.code,
                next = %plan.targets[i + 1].provider,
                "falling back to the next target"
            );
            state
                .metrics
                .record_fallback(plan.route.as_deref().unwrap_or(&plan.requested));
        }
        last = Some(e);
    }
    match last {
        Some(_) if all_open && plan.targets.len() > 1 => Err(ApiError::all_circuits_open(
            &plan.requested,
            soonest.unwrap_or(Duration::from_secs(1)),
        )),
        Some(e) => Err(ApiError::from(&e)),
        None => Err(ApiError::model_not_found(format!(
            "the route {:?} has no usable target",
            plan.requested
        ))),
    }
}

/// Run the guest calls in a task of their own. A client that goes away drops
/// the request's future; dropping a guest call half-way would leave its instance
/// unusable ("cannot enter component instance") for the next caller, so the
/// calls always run to their end (bounded by the provider's own deadlines) and
/// only their result is thrown away.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work.in_current_span())
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("the provider call failed: {e}"),
            )
            .code("internal"))
        })
}

/// A whole completion, with fallback.
pub async fn complete(
    state: &AppState,
    plan: &Plan,
    req: &CompletionRequest,
) -> Result<(Target, CompletionResponse), ApiError> {
    let (state, plan, req) = (state.clone(), plan.clone(), req.clone());
    detached(async move {
        try_targets(
            &state,
            &plan,
            &req,
            |h, r| async move { h.complete(&r).await },
        )
        .await
    })
    .await
}

/// A stream that has produced its first chunk (or ended cleanly without one).
pub struct Started {
    /// The target whose stream this is.
    pub target: Target,
    /// The rest of the stream.
    pub stream: ProviderStream,
    /// Its first chunk, `None` when it ended cleanly without one.
    pub first: Option<StreamChunk>,
}

/// Start a stream, with fallback until its first chunk.
pub async fn start_stream(
    state: &AppState,
    plan: &Plan,
    req: &CompletionRequest,
) -> Result<Started, ApiError> {
    let (state, plan, req) = (state.clone(), plan.clone(), req.clone());
    let (target, (stream, first)) = detached(async move {
        try_targets(&state, &plan, &req, |h, r| async move {
            let mut s = h.stream(&r).await?;
            let first = s.next().await?;
            Ok((s, first))
        })
        .await
    })
    .await?;
    Ok(Started {
        target,
        stream,
        first,
    })
}
