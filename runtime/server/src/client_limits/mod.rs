//! Per-key limits: requests per minute, tokens per minute, requests at once and
//! a token budget per calendar day or month.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`ClientLimits`]: admission before any provider is called, the [`Ticket`] that charges usage |
//! | [`store`] | the [`store::LimitsStore`] trait: where rpm, tpm and budgets are counted |
//! | [`local`] | counters in this process (each replica counts alone) |
//! | [`redis_store`] | counters in Redis, shared by every replica |
//! | [`windows`] | the UTC minute, day and month windows |
//!
//! Requests at once (`max_concurrent`) are always counted in this process: a
//! permit held across replicas would be lost with the replica that held it.
//!
//! Tokens are charged from the usage each answer reports, when it completes (a
//! stream: when it ends, also when its client went away, then from what was
//! sent). A request is refused before any provider is called when the key's
//! minute or budget is already spent; the answer that spends it is served whole,
//! so a key may overshoot by one answer's tokens.

pub mod local;
pub mod redis_store;
pub mod store;
pub mod windows;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;

use crate::access_log::AccessLog;
use crate::api_error::ApiError;
use crate::auth::KeyPolicy;
use crate::config::{BudgetPeriod, OnStoreError, ServerConfig};
use crate::metrics::Metrics;
use store::{Limits, LimitsStore, Refusal, StoreError, Usage};
use windows::Windows;

/// Store errors are logged at most once per this interval (with the count since).
const STORE_ERROR_LOG_INTERVAL_MS: u64 = 10_000;

/// Admission and charging for every key.
pub struct ClientLimits {
    store: Arc<dyn LimitsStore>,
    on_error: OnStoreError,
    timeout: Duration,
    in_flight: Mutex<HashMap<Arc<str>, Arc<AtomicU32>>>,
    metrics: Arc<Metrics>,
    last_error_log_ms: AtomicU64,
    errors_since_log: AtomicU64,
}

impl std::fmt::Debug for ClientLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLimits")
            .field("store", &self.store.kind())
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

fn limits_of(p: &KeyPolicy) -> Limits {
    Limits {
        rpm: p.rpm.unwrap_or(0),
        tpm: p.tpm.unwrap_or(0),
        budget: p.budget.as_ref().map(|b| b.tokens).unwrap_or(0),
    }
}

fn period_of(p: &KeyPolicy) -> BudgetPeriod {
    p.budget
        .as_ref()
        .map(|b| b.period)
        .unwrap_or(BudgetPeriod::Month)
}

/// 429 `rate_limit_exceeded`.
fn rate_limited(message: String, retry_after_secs: u64) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
        .code("rate_limit_exceeded")
        .retry_after(Duration::from_secs(retry_after_secs.max(1)))
}

impl ClientLimits {
    /// The limits of `config`'s keys, counted where `[server.limits_store]` says.
    /// The store is read once, at start.
    pub fn new(config: &ServerConfig, metrics: Arc<Metrics>) -> Result<Self, String> {
        let (store, on_error, timeout): (Arc<dyn LimitsStore>, _, _) = match &config.limits_store {
            None => (
                Arc::new(local::LocalStore::default()),
                OnStoreError::Allow,
                Duration::from_secs(1),
            ),
            Some(s) => {
                let url = s
                    .url
                    .resolve()
                    .map_err(|e| format!("server.limits_store.url: {e}"))?;
                let timeout = Duration::from_millis(s.timeout_ms);
                let store = redis_store::RedisStore::new(&url, timeout)
                    .map_err(|e| format!("server.limits_store.url: {e}"))?;
                (Arc::new(store), s.on_error, timeout)
            }
        };
        Ok(ClientLimits {
            store,
            on_error,
            timeout,
            in_flight: Mutex::new(HashMap::new()),
            metrics,
            last_error_log_ms: AtomicU64::new(0),
            errors_since_log: AtomicU64::new(0),
        })
    }

    /// `"local"` or `"redis"`.
    pub fn store_kind(&self) -> &'static str {
        self.store.kind()
    }

    /// Connect to the store ahead of the first request (no-op for the local one).
    pub async fn warm_up(&self) {
        let w = Windows::now(BudgetPeriod::Month);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.store.usage("", w)).await;
    }

    fn store_error(&self, op: &'static str, e: &StoreError) {
        self.metrics.keys.record_store_error(op);
        let n = self.errors_since_log.fetch_add(1, Ordering::Relaxed) + 1;
        let now = tamma_sandbox::time::now_unix_ms();
        let last = self.last_error_log_ms.load(Ordering::Relaxed);
        // Once per burst: the first error, then at most one line per interval.
        if now.saturating_sub(last) >= STORE_ERROR_LOG_INTERVAL_MS
            && self
                .last_error_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.errors_since_log.store(0, Ordering::Relaxed);
            tracing::warn!(
                store = self.store.kind(),
                op,
                error = %e,
                errors = n,
                on_error = ?self.on_error,
                "the limits store did not answer; requests follow on_error"
            );
        }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let r = match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        };
        if let Err(e) = &r {
            self.store_error(op, e);
        }
        r
    }

    fn concurrency(&self, name: &Arc<str>) -> Arc<AtomicU32> {
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(name.clone()).or_default().clone()
    }

    /// Admit a request of `policy`'s key (`None`: no key, nothing to limit), or
    /// say why not. Call before any provider is.
    pub async fn admit(
        self: &Arc<Self>,
        policy: Option<&Arc<KeyPolicy>>,
        access: Option<AccessLog>,
    ) -> Result<Ticket, ApiError> {
        let Some(policy) = policy else {
            return Ok(Ticket {
                limits: self.clone(),
                policy: None,
                held: None,
                access,
                charged: false,
            });
        };
        let name = &policy.name;
        let held = match policy.max_concurrent {
            Some(max) => {
                let c = self.concurrency(name);
                if c.fetch_add(1, Ordering::AcqRel) >= max {
                    c.fetch_sub(1, Ordering::AcqRel);
                    self.metrics.keys.record_refusal(name, "concurrency");
                    return Err(rate_limited(
                        format!("the key {name:?} is already running {max} requests (max_concurrent); retry when one ends"),
                        1,
                    ));
                }
                Some(Held(c))
            }
            None => None,
        };
        let limits = limits_of(policy);
        let windows = Windows::now(period_of(policy));
        if limits != Limits::default() {
            match self
                .timed("admit", self.store.admit(name, limits, windows))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(refusal)) => {
                    self.metrics.keys.record_refusal(name, refusal.as_str());
                    return Err(match refusal {
                        Refusal::Rpm => rate_limited(
                            format!(
                                "the key {name:?} has used its {} requests this minute (rpm)",
                                limits.rpm
                            ),
                            windows.minute_left_secs,
                        ),
                        Refusal::Tpm => rate_limited(
                            format!(
                                "the key {name:?} has used its {} tokens this minute (tpm)",
                                limits.tpm
                            ),
                            windows.minute_left_secs,
                        ),
                        Refusal::Budget => ApiError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "insufficient_quota",
                            format!(
                                "the key {name:?} has spent its budget of {} tokens this {}",
                                limits.budget, windows.period_kind
                            ),
                        )
                        .code("insufficient_quota")
                        .retry_after(Duration::from_secs(windows.period_left_secs)),
                    });
                }
                Err(_) if self.on_error == OnStoreError::Deny => {
                    self.metrics.keys.record_refusal(name, "store_unavailable");
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "server_error",
                        "the limits store is not answering; retry shortly",
                    )
                    .code("limits_unavailable")
                    .retry_after(Duration::from_secs(1)));
                }
                Err(_) => {}
            }
        }
        Ok(Ticket {
            limits: self.clone(),
            policy: Some(policy.clone()),
            held,
            access,
            charged: false,
        })
    }

    /// A key's counters now (admin API); `None` when the store did not answer.
    pub async fn usage(&self, policy: &KeyPolicy) -> (Option<Usage>, u32) {
        let in_flight = self.concurrency(&policy.name).load(Ordering::Acquire);
        let w = Windows::now(period_of(policy));
        let usage = self
            .timed("usage", self.store.usage(&policy.name, w))
            .await
            .ok();
        (usage, in_flight)
    }
}

/// A `max_concurrent` slot, freed on drop.
struct Held(Arc<AtomicU32>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An admitted request: holds its key's concurrency slot until dropped, and
/// charges the tokens of its answer once.
pub struct Ticket {
    limits: Arc<ClientLimits>,
    policy: Option<Arc<KeyPolicy>>,
    held: Option<Held>,
    access: Option<AccessLog>,
    charged: bool,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("key", &self.policy.as_ref().map(|p| p.name.clone()))
            .field("charged", &self.charged)
            .finish_non_exhaustive()
    }
}

impl Ticket {
    /// The key's name (empty without a key).
    pub fn key_name(&self) -> &str {
        self.policy.as_ref().map(|p| &*p.name).unwrap_or("")
    }

    /// Charge an answer's tokens (once; later calls do nothing), count them in
    /// `tamma_tokens_total` and the access log. `model` is the bounded label.
    pub async fn charge(&mut self, provider: &str, model: &str, input: u64, output: u64) {
        if self.charged {
            return;
        }
        self.charged = true;
        let key = self.key_name().to_string();
        self.limits
            .metrics
            .keys
            .record_tokens(&key, provider, model, input, output);
        if let Some(a) = &self.access {
            a.update(|f| {
                f.provider = provider.to_string();
                f.model = model.to_string();
                f.input_tokens = input;
                f.output_tokens = output;
            });
        }
        let Some(policy) = &self.policy else { return };
        let total = input.saturating_add(output);
        let limited = policy.tpm.is_some() || policy.budget.is_some();
        if total == 0 || !limited {
            return;
        }
        // Tokens land in the window in force when they are known (a long stream
        // counts in the minute it ended).
        let store = self.limits.store.clone();
        let w = Windows::now(period_of(policy));
        let _ = self
            .limits
            .timed("charge", store.charge(&policy.name, total, w))
            .await;
    }

    /// The request's access log.
    pub fn access(&self) -> Option<&AccessLog> {
        self.access.as_ref()
    }

    /// Release the concurrency slot now (the ticket may live on in a stream task).
    pub fn release(&mut self) {
        self.held = None;
    }
}

/// Authorize the model and admit a chat request of `caller`, before any
/// provider is called: 403 `model_not_allowed`, 429 for a spent limit.
pub async fn admit_request(
    state: &crate::AppState,
    caller: &crate::auth::Caller,
    plan: &crate::routing::Plan,
    access: Option<AccessLog>,
) -> Result<Ticket, ApiError> {
    if let Err(e) = caller.authorize(plan) {
        state
            .metrics
            .keys
            .record_refusal(caller.name(), "model_not_allowed");
        return Err(e);
    }
    state
        .client_limits
        .admit(caller.policy.as_ref(), access)
        .await
}

/// The `model` label of usage metrics: the model when the provider declares it
/// or a configured route names it, `other` otherwise, so that a client cannot
/// grow a family without bound by sending made-up model names.
pub fn model_label(state: &crate::AppState, provider: &str, model: &str) -> String {
    // A route's targets are configured models: the same bounded set as the
    // latency and time-to-first-token families use.
    let routed = state.config.load().routes.values().any(|r| {
        r.targets
            .iter()
            .any(|t| t.split_once('/') == Some((provider, model)))
    });
    crate::metrics::genai::model_label(&state.registry, provider, model, routed).to_string()
}

/// A token estimate for text whose usage was never reported (a stream cut
/// short): about four characters a token, as OpenAI's own rule of thumb says.
pub fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// `GET /admin/v1/keys`: each key's name, policy, usage in the windows in force
/// and budget left; never the key or its digest.
pub async fn keys_report(state: &crate::AppState) -> serde_json::Value {
    let config = state.config.load();
    let ring = state.keys.get(&config);
    let mut keys = Vec::with_capacity(ring.policies.len());
    for p in &ring.policies {
        let (usage, in_flight) = state.client_limits.usage(p).await;
        let budget_remaining = match (&p.budget, &usage) {
            (Some(b), Some(u)) => Some(b.tokens.saturating_sub(u.tokens_this_period)),
            _ => None,
        };
        keys.push(serde_json::json!({
            "name": &*p.name,
            "models": p.models,
            "rpm": p.rpm,
            "tpm": p.tpm,
            "max_concurrent": p.max_concurrent,
            "budget": p.budget.as_ref().map(|b| serde_json::json!({"tokens": b.tokens, "period": b.period.as_str()})),
            "usage": usage.map(|u| serde_json::json!({
                "requests_this_minute": u.requests_this_minute,
                "tokens_this_minute": u.tokens_this_minute,
                "tokens_this_period": u.tokens_this_period,
            })),
            "in_flight": in_flight,
            "budget_remaining": budget_remaining,
        }));
    }
    serde_json::json!({
        "auth_required": ring.required,
        "store": state.client_limits.store_kind(),
        "keys": keys,
        "problems": ring.problems,
    })
}
