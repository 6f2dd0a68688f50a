//! Which provider answers a request: resolution, load balancing, retries and
//! fallback between a route's targets.
//!
//! A request's `model` is resolved in this order ([`plan`]):
//! 1. a route name from `[server.routes]`: its targets, the first picked by the
//!    route's strategy ([`strategy`]), the others in the route's order;
//! 2. `<provider>/<model>`: that provider, asked for `<model>`;
//! 3. a bare model id offered by exactly one ready provider (the registry's
//!    model index, no snapshot): that provider.
//!
//! The plan comes from the one `Arc<ServerConfig>` the request took when it
//! arrived: a configuration swap mid-request changes nothing for it.
//!
//! A target is skipped — the next one is tried — when its circuit is open, it is
//! overloaded, stopped or gone, or it fails with a provider failure (a trap, a
//! limit, a timeout, a retryable guest error) *before anything was sent to the
//! client*: a whole answer is only sent once it is complete, and a stream only
//! once its first chunk has arrived. On a provider failure a route with
//! `retries` first tries the same target again ([`retry`]). A caller's mistake
//! (a bad request) is answered at once: another target would refuse it too —
//! except `context-too-long` on a route with `context_window_fallback`, which
//! moves to the next target whose model has a larger context window. When
//! every target's circuit is open the answer is 503 with `Retry-After` (the
//! soonest moment one of them admits a probe).
//!
//! | file | what |
//! |---|---|
//! | `table.rs` | the routes of one config version, parsed once ([`RouteCache`]) |
//! | `strategy.rs` | which target goes first: ordered, weighted, least-busy, latency |
//! | `retry.rs` | backoff, `retry-after` and the budget |
//! | `attempts.rs` | the walk over a plan's targets: attempts, retries, fallback, metrics |

mod attempts;
pub mod retry;
pub mod strategy;
pub mod table;

use std::future::Future;
use std::sync::Arc;

use tracing::Instrument as _;

use super::api_error::ApiError;
use super::AppState;
use crate::config::{RouteStrategy, ServerConfig};
use tamma_registry::registry::{ProviderStream, Registry};
use tamma_sandbox::error::{Error, ErrorCode};
use tamma_sandbox::types::{
    CompletionRequest, CompletionResponse, EmbeddingRequest, EmbeddingResponse, StreamChunk,
};

pub use table::{Route, RouteCache, RouteTable};

/// One provider and model to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The provider's registered name.
    pub provider: String,
    /// The model id the provider is asked for.
    pub model: String,
}

impl Target {
    /// The `<provider>/<model>` an answer is labelled with: the model the provider
    /// says it used, else the one it was asked for.
    pub fn served_model(&self, answered: &str) -> String {
        let model = if answered.is_empty() {
            &self.model
        } else {
            answered
        };
        format!("{}/{model}", self.provider)
    }

    /// `<provider>/<model>`, both parts non-empty.
    pub fn parse(s: &str) -> Option<Target> {
        let (p, m) = s.split_once('/')?;
        if p.is_empty() || m.is_empty() {
            return None;
        }
        Some(Target {
            provider: p.to_string(),
            model: m.to_string(),
        })
    }
}

/// The targets for one request.
#[derive(Clone, Debug)]
pub struct Plan {
    /// What the client asked for.
    pub requested: String,
    /// The route, when the request named one (its settings: retries, context
    /// window fallback).
    pub route: Option<Arc<Route>>,
    /// Who to try, in order (the strategy's pick first).
    pub targets: Vec<Target>,
}

impl Plan {
    /// The route's name, when it was one.
    pub fn route_name(&self) -> Option<&str> {
        self.route.as_deref().map(|r| r.name.as_str())
    }

    fn direct(requested: &str, target: Target) -> Plan {
        Plan {
            requested: requested.to_string(),
            route: None,
            targets: vec![target],
        }
    }
}

/// Who served a request, for the access log and the response headers: put in
/// the response's extensions by the chat completions handler (answers and
/// errors alike, once routing ran).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// The route, when the request named one.
    pub route: Option<String>,
    /// The provider that answered, or (on an error) the last one tried; empty
    /// when none was.
    pub provider: String,
    /// The model it was asked for.
    pub model: String,
    /// Provider calls made: 1 + retries + fallbacks (a target refused at once,
    /// e.g. with an open circuit, counts too).
    pub attempts: u32,
}

/// Resolve a request's `model` against `config`, the version of the `[server]`
/// section the request holds for its whole life.
pub fn plan(state: &AppState, config: &Arc<ServerConfig>, model: &str) -> Result<Plan, ApiError> {
    if let Some(route) = state.routes.table_for(config).get(model) {
        return Ok(route_plan(&state.registry, model, route.clone()));
    }
    if let Some(t) = Target::parse(model) {
        if !state.registry.contains(&t.provider) {
            return Err(ApiError::model_not_found(format!(
                "the model {model:?} does not exist: no provider named {:?} is registered (GET /v1/models lists the models)",
                t.provider
            )));
        }
        return Ok(Plan::direct(model, t));
    }
    resolve_model(&state.registry, model).map(|t| Plan::direct(model, t))
}

/// A bare model id: the one ready provider that offers it.
pub fn resolve_model(registry: &Registry, model: &str) -> Result<Target, ApiError> {
    let mut offering = registry.ready_providers_of_model(model);
    match offering.len() {
        1 => Ok(Target {
            provider: offering.swap_remove(0),
            model: model.to_string(),
        }),
        0 => Err(ApiError::model_not_found(format!(
            "the model {model:?} does not exist: name it <provider>/<model> or as a configured route (GET /v1/models lists them)"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "the model {model:?} is offered by several providers ({}): name it <provider>/{model}",
            offering.join(", ")
        ))
        .param("model")),
    }
}

/// A route's targets in the order this request tries them.
fn route_plan(registry: &Registry, requested: &str, route: Arc<Route>) -> Plan {
    let order = match route.strategy {
        // Nothing to measure: no look-ups (an open circuit answers at once).
        RouteStrategy::Ordered => (0..route.targets.len()).collect(),
        strategy => {
            let probes: Vec<strategy::Probe> = route
                .targets
                .iter()
                .map(|t| match registry.get(&t.provider) {
                    Ok(h) => strategy::Probe {
                        open: h.circuit_open(),
                        in_flight: if strategy == RouteStrategy::LeastBusy {
                            h.in_flight()
                        } else {
                            0
                        },
                        latency: if strategy == RouteStrategy::Latency {
                            h.latency_ewma()
                        } else {
                            None
                        },
                    },
                    // Not registered: never first (it answers NOT_FOUND at once).
                    Err(_) => strategy::Probe {
                        open: true,
                        ..strategy::Probe::default()
                    },
                })
                .collect();
            let mut rng = fastrand::Rng::new();
            let first = strategy::first(strategy, &route.weights, &probes, &mut rng);
            strategy::order(&probes, first)
        }
    };
    let targets = order
        .into_iter()
        .map(|i| route.targets[i].clone())
        .collect();
    Plan {
        requested: requested.to_string(),
        route: Some(route),
        targets,
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
                // A route may mix chat-only and embedding providers.
                | ErrorCode::Unsupported
        )
}

/// Whether the client is still waiting: the request's future holds the sender
/// of this channel, so it closes when a client that went away drops it. Retries
/// and fallbacks stop then (a call already running is left to finish).
pub(crate) struct ClientWaiting {
    rx: tokio::sync::oneshot::Receiver<()>,
    gone: bool,
}

impl ClientWaiting {
    /// Whether the client went away.
    pub(crate) fn gone(&mut self) -> bool {
        if !self.gone {
            self.gone = matches!(
                self.rx.try_recv(),
                Err(tokio::sync::oneshot::error::TryRecvError::Closed)
            );
        }
        self.gone
    }

    /// Sleep `d`; `false` when the client went away meanwhile.
    pub(crate) async fn sleep(&mut self, d: std::time::Duration) -> bool {
        if self.gone() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = &mut self.rx => {
                self.gone = true;
                false
            }
        }
    }
}

/// Run the guest calls in a task of their own. A client that goes away drops
/// the request's future; dropping a guest call half-way would leave its instance
/// unusable ("cannot enter component instance") for the next caller, so the
/// calls always run to their end (bounded by the provider's own deadlines) and
/// only their result is thrown away; no further attempt starts.
async fn detached<T, F, Fut>(work: F) -> (Served, Result<T, ApiError>)
where
    T: Send + 'static,
    F: FnOnce(ClientWaiting) -> Fut,
    Fut: Future<Output = (Served, Result<T, ApiError>)> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let waiting = ClientWaiting { rx, gone: false };
    let joined = tokio::spawn(work(waiting).in_current_span()).await;
    drop(tx);
    joined.unwrap_or_else(|e| {
        (
            Served::default(),
            Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("the provider call failed: {e}"),
            )
            .code("internal")),
        )
    })
}

/// A whole completion, with retries and fallback; who served it (or was tried
/// last) comes back either way.
pub async fn complete(
    state: &AppState,
    plan: &Plan,
    req: &CompletionRequest,
) -> (Served, Result<(Target, CompletionResponse), ApiError>) {
    let (state, plan, req) = (state.clone(), plan.clone(), req.clone());
    detached(move |waiting| async move {
        attempts::run(&state, &plan, &req, waiting, |h, r| async move {
            h.complete(&r).await
        })
        .await
    })
    .await
}

/// Embeddings, with retries and fallback as for a whole completion.
pub async fn embed(
    state: &AppState,
    plan: &Plan,
    req: &EmbeddingRequest,
) -> (Served, Result<(Target, EmbeddingResponse), ApiError>) {
    let (state, plan, req) = (state.clone(), plan.clone(), req.clone());
    detached(move |waiting| async move {
        attempts::run(&state, &plan, &req, waiting, |h, r| async move {
            h.embed(&r).await
        })
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

/// Start a stream, with retries and fallback until its first chunk; once a
/// chunk has reached the client, nothing is retried.
pub async fn start_stream(
    state: &AppState,
    plan: &Plan,
    req: &CompletionRequest,
) -> (Served, Result<Started, ApiError>) {
    let (state, plan, req) = (state.clone(), plan.clone(), req.clone());
    let (served, result) = detached(move |waiting| async move {
        attempts::run(&state, &plan, &req, waiting, |h, r| async move {
            let mut s = h.stream(&r).await?;
            let first = s.next().await?;
            Ok((s, first))
        })
        .await
    })
    .await;
    let result = result.map(|(target, (stream, first))| Started {
        target,
        stream,
        first,
    });
    (served, result)
}
