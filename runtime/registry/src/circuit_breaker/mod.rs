//! Per-provider circuit breaker: `Closed → Open → HalfOpen → Closed`.
//!
//! A provider that keeps failing is cut off for a while instead of being hammered
//! with calls that will fail anyway (and tie up a sandbox each). After
//! `recovery_timeout` a limited number of probe calls are let through; if they
//! succeed the breaker closes, if one fails it opens again.
//!
//! This module does not decide which errors are failures. The caller records the
//! outcome on the [`Permit`] it got from [`CircuitBreaker::try_acquire`]; it should
//! count errors that say the provider is unhealthy (traps, timeouts, transport
//! errors) and not errors the caller caused (bad request, auth, cancellation).
//!
//! Two ways to decide that a provider is failing (`mode`):
//! - `count` (the default): `failure_threshold` failures within
//!   `monitoring_period`, whatever the traffic. Right for the low traffic most
//!   providers see (a few calls a minute), where a rate over a handful of calls
//!   means little; wrong at high traffic, where 5 failures in 60 s at 100 req/s
//!   is a 0.08 % failure rate.
//! - `rate`: `failure_rate_threshold` percent of the calls finished within
//!   `monitoring_period` failed, judged only once `minimum_calls` calls are in
//!   the window (resilience4j's `failureRateThreshold` + `minimumNumberOfCalls`).
//!   Calls are counted in a bucketed window ([`rate_window`]).
//!
//! The default stays `count`: it is what existing configurations mean, and a
//! rate mode with a minimum number of calls never opens for a provider that
//! gets fewer calls than that per window, however often they fail.
//!
//! Design notes:
//! - Failures are counted in a sliding `monitoring_period` window. A success while
//!   closed does *not* reset earlier failures: a provider failing every other
//!   call is unhealthy, and a reset-on-success counter would never trip on it.
//! - Every state change starts a new *generation*. A permit only affects the
//!   generation it was issued in; outcomes from older permits (a call that began
//!   while closed and finished after the breaker opened, or a probe that finished
//!   after another probe already decided) are ignored. Their information is stale:
//!   the breaker has already acted on newer evidence.
//! - `Open → HalfOpen` happens lazily, on the first `try_acquire` after the
//!   recovery timeout; there is no timer task. Until then `state()` says `Open`.
//! - Transition callbacks run after the state lock is released, in the order the
//!   transitions happened, and may call back into the breaker.
//!
//! Hand-written on purpose: the maintained Rust breakers (`failsafe`,
//! `tower`'s retry/limit layers) wrap a future and decide success themselves;
//! this one needs a permit whose outcome the registry settles later (a stream
//! is judged when it ends, a cancelled call counts neither way), stale-generation
//! filtering, an injectable clock for exact tests, and events on every transition.

mod rate_window;

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tamma_sandbox::time::millis;

use serde::{Deserialize, Serialize};

use rate_window::RateWindow;

/// How long a caller rejected in half-open (all probe slots busy) is told to
/// wait. A probe's outcome arrives within one call's latency, so a short hint
/// lets callers notice the breaker closing soon without spinning on it. Capped
/// by `recovery_timeout` so a breaker tuned for fast recovery is not slowed.
pub const HALF_OPEN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Most failures (`failure_threshold`) or calls (`minimum_calls`) a breaker may
/// count before it judges.
pub const MAX_BREAKER_CALLS: u32 = 1_000_000;
/// Most probes in flight (`half_open_max_probes`) and successes needed
/// (`success_threshold`) while half-open.
pub const MAX_BREAKER_PROBES: u32 = 1_000;
/// Longest `monitoring_period_ms` and `recovery_timeout_ms`: a day.
pub const MAX_BREAKER_PERIOD_MS: u64 = crate::registry_config::MAX_PERIOD_MS;

/// Every `[circuit_breaker]` field's accepted range (`mode` aside).
pub const BREAKER_BOUNDS: &[crate::config::bounds::Bound] = &[
    ("failure_threshold", 1, MAX_BREAKER_CALLS as u64),
    ("monitoring_period_ms", 1, MAX_BREAKER_PERIOD_MS),
    ("recovery_timeout_ms", 1, MAX_BREAKER_PERIOD_MS),
    ("half_open_max_probes", 1, MAX_BREAKER_PROBES as u64),
    ("success_threshold", 1, MAX_BREAKER_PROBES as u64),
    ("failure_rate_threshold", 1, 100),
    ("minimum_calls", 1, MAX_BREAKER_CALLS as u64),
];

/// Tuning for one breaker. Serialized with durations as integer milliseconds
/// (`monitoring_period_ms`, `recovery_timeout_ms`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Failures within `monitoring_period` that open the breaker (at most 10^6).
    #[schemars(range(min = 1, max = MAX_BREAKER_CALLS))]
    pub failure_threshold: u32,
    /// Failures older than this are forgotten (at most a day).
    #[serde(
        rename = "monitoring_period_ms",
        with = "tamma_sandbox::time::serde_ms::whole"
    )]
    #[schemars(with = "u64", range(min = 1, max = MAX_BREAKER_PERIOD_MS))]
    pub monitoring_period: Duration,
    /// How long the breaker stays open before probes are allowed (at most a day).
    #[serde(
        rename = "recovery_timeout_ms",
        with = "tamma_sandbox::time::serde_ms::whole"
    )]
    #[schemars(with = "u64", range(min = 1, max = MAX_BREAKER_PERIOD_MS))]
    pub recovery_timeout: Duration,
    /// Probe calls allowed in flight at once while half-open (at most 1 000).
    #[schemars(range(min = 1, max = MAX_BREAKER_PROBES))]
    pub half_open_max_probes: u32,
    /// Successful probes needed to close the breaker (at most 1 000).
    #[schemars(range(min = 1, max = MAX_BREAKER_PROBES))]
    pub success_threshold: u32,
    /// How the breaker decides to open: `count` (default) or `rate`.
    pub mode: BreakerMode,
    /// Rate mode: percentage (1–100) of failed calls in the window that opens
    /// the breaker. Default 50.
    #[schemars(range(min = 1, max = 100))]
    pub failure_rate_threshold: u8,
    /// Rate mode: calls finished in the window before the rate is judged.
    /// Default 20; at most 10^6.
    #[schemars(range(min = 1, max = MAX_BREAKER_CALLS))]
    pub minimum_calls: u32,
}

/// What opens a breaker.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerMode {
    /// `failure_threshold` failures within `monitoring_period`.
    #[default]
    Count,
    /// `failure_rate_threshold` % of at least `minimum_calls` calls within
    /// `monitoring_period`.
    Rate,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            monitoring_period: Duration::from_secs(60),
            recovery_timeout: Duration::from_secs(30),
            half_open_max_probes: 1,
            success_threshold: 1,
            mode: BreakerMode::Count,
            failure_rate_threshold: 50,
            minimum_calls: 20,
        }
    }
}

impl CircuitBreakerConfig {
    /// Every problem with this config, so an operator fixes them in one go.
    /// Empty means valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = crate::config::bounds::check("", BREAKER_BOUNDS, |f| {
            Some(match f {
                "failure_threshold" => self.failure_threshold.into(),
                "monitoring_period_ms" => millis(self.monitoring_period),
                "recovery_timeout_ms" => millis(self.recovery_timeout),
                "half_open_max_probes" => self.half_open_max_probes.into(),
                "success_threshold" => self.success_threshold.into(),
                "failure_rate_threshold" => self.failure_rate_threshold.into(),
                _ => self.minimum_calls.into(),
            })
        });
        if self.success_threshold > self.half_open_max_probes {
            problems.push(format!(
                "success_threshold ({}) must not exceed half_open_max_probes ({})",
                self.success_threshold, self.half_open_max_probes
            ));
        }
        problems
    }

    /// Zero counts would make the breaker trip on nothing or never let a probe
    /// through; clamp them so a bad config degrades instead of wedging a provider.
    fn normalized(mut self) -> Self {
        self.failure_threshold = self.failure_threshold.max(1);
        self.half_open_max_probes = self.half_open_max_probes.max(1);
        self.success_threshold = self.success_threshold.max(1);
        self.failure_rate_threshold = self.failure_rate_threshold.clamp(1, 100);
        self.minimum_calls = self.minimum_calls.max(1);
        self
    }
}

/// Time source, injectable so tests are exact and never sleep.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real, monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to. Share it via `Arc` between the test
/// and the breaker.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    /// A clock standing at the real now, until advanced.
    pub fn new() -> Self {
        Self {
            now: Mutex::new(Instant::now()),
        }
    }

    /// Move the clock forward by `by` (saturating at the far future).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(next) = now.checked_add(by) {
            *now = next;
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    /// Calls flow; failures are counted.
    Closed,
    /// Calls are refused until the recovery timeout has passed.
    Open,
    /// A limited number of probe calls decide whether to close or open again.
    HalfOpen,
}

impl CircuitState {
    /// Kebab-case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The breaker refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// While open: time until probes are allowed. While half-open with every
    /// probe slot busy: [`HALF_OPEN_RETRY_AFTER`] capped by `recovery_timeout`.
    pub retry_after: Duration,
    /// `Open` or `HalfOpen`.
    pub state: CircuitState,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker is {}; retry after {} ms",
            self.state,
            millis(self.retry_after)
        )
    }
}

impl std::error::Error for Rejected {}

/// Point-in-time view for status endpoints and logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CircuitSnapshot {
    /// The state (`Open` until the first call after the recovery timeout).
    pub state: CircuitState,
    /// `count` or `rate`.
    pub mode: BreakerMode,
    /// Failures still inside the monitoring window (cleared when the breaker closes).
    pub recent_failures: u32,
    /// Rate mode: calls finished inside the monitoring window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_calls: Option<u64>,
    /// Failures in the window that open the breaker.
    pub failure_threshold: u32,
    /// How long ago the breaker opened; `Some` only while open.
    #[serde(
        rename = "opened_ago_ms",
        serialize_with = "tamma_sandbox::time::serde_ms::opt"
    )]
    pub opened_ago: Option<Duration>,
    /// Time until probes are allowed; `Some` only while open (zero once due).
    #[serde(
        rename = "retry_after_ms",
        serialize_with = "tamma_sandbox::time::serde_ms::opt"
    )]
    pub retry_after: Option<Duration>,
    /// Probe calls running now; non-zero only while half-open.
    pub probes_in_flight: u32,
    /// Probe calls that succeeded in this half-open spell.
    pub probe_successes: u32,
    /// How many times the breaker has opened since it was created.
    pub times_opened: u64,
}

type TransitionCallback = Box<dyn Fn(CircuitState, CircuitState) + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { since: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

impl Phase {
    fn state(self) -> CircuitState {
        match self {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { .. } => CircuitState::Open,
            Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Cancelled,
}

struct State {
    phase: Phase,
    generation: u64,
    /// Count mode: failure times, oldest first; never longer than `failure_threshold`.
    failures: VecDeque<Instant>,
    /// Rate mode: calls and failures of the window.
    window: RateWindow,
    times_opened: u64,
    /// Transitions not yet handed to the callback.
    pending: VecDeque<(CircuitState, CircuitState)>,
    /// Some thread is draining `pending`; others just enqueue. This keeps
    /// callback order equal to transition order without holding any lock
    /// while the callback runs.
    dispatching: bool,
}

struct Shared {
    config: CircuitBreakerConfig,
    clock: Arc<dyn Clock>,
    on_transition: Option<TransitionCallback>,
    state: Mutex<State>,
}

/// One breaker per provider. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.shared.config)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl CircuitBreaker {
    /// An invalid config is clamped (counts to at least 1) and logged rather
    /// than rejected; call [`CircuitBreakerConfig::validate`] first to refuse it.
    pub fn new(config: CircuitBreakerConfig, clock: Arc<dyn Clock>) -> Self {
        Self::build(config, clock, None)
    }

    /// Like [`new`](Self::new), with `on_transition(from, to)` called after every
    /// state change. It runs outside the breaker's lock, possibly on the thread
    /// of a later transition, and may call back into the breaker.
    pub fn with_on_transition(
        config: CircuitBreakerConfig,
        clock: Arc<dyn Clock>,
        on_transition: impl Fn(CircuitState, CircuitState) + Send + Sync + 'static,
    ) -> Self {
        Self::build(config, clock, Some(Box::new(on_transition)))
    }

    fn build(
        config: CircuitBreakerConfig,
        clock: Arc<dyn Clock>,
        on_transition: Option<TransitionCallback>,
    ) -> Self {
        let problems = config.validate();
        if !problems.is_empty() {
            tracing::warn!(?problems, "invalid circuit breaker config; clamping");
        }
        let config = config.normalized();
        let capacity = match config.mode {
            BreakerMode::Count => usize::try_from(config.failure_threshold)
                .unwrap_or(usize::MAX)
                .min(1024),
            BreakerMode::Rate => 0,
        };
        let window = RateWindow::new(config.monitoring_period, clock.now());
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    phase: Phase::Closed,
                    generation: 0,
                    failures: VecDeque::with_capacity(capacity),
                    window,
                    times_opened: 0,
                    pending: VecDeque::new(),
                    dispatching: false,
                }),
                config,
                clock,
                on_transition,
            }),
        }
    }

    /// The effective (clamped) config.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.shared.config
    }

    /// Ask to make a call. The returned permit must be resolved with
    /// [`Permit::success`] / [`Permit::failure`]; dropping it counts as neither.
    pub fn try_acquire(&self) -> Result<Permit, Rejected> {
        let shared = &self.shared;
        let cfg = &shared.config;
        let mut st = shared.lock();
        let now = shared.clock.now();
        let result = match st.phase {
            Phase::Closed => Ok(false),
            Phase::Open { since } => {
                let elapsed = now.saturating_duration_since(since);
                if elapsed >= cfg.recovery_timeout {
                    shared.transition(
                        &mut st,
                        Phase::HalfOpen {
                            in_flight: 1,
                            successes: 0,
                        },
                    );
                    Ok(true)
                } else {
                    Err(Rejected {
                        retry_after: cfg.recovery_timeout - elapsed,
                        state: CircuitState::Open,
                    })
                }
            }
            Phase::HalfOpen {
                ref mut in_flight, ..
            } => {
                if *in_flight < cfg.half_open_max_probes {
                    *in_flight += 1;
                    Ok(true)
                } else {
                    Err(Rejected {
                        retry_after: HALF_OPEN_RETRY_AFTER.min(cfg.recovery_timeout),
                        state: CircuitState::HalfOpen,
                    })
                }
            }
        };
        let generation = st.generation;
        shared.unlock_and_notify(st);
        result.map(|probe| Permit {
            shared: Arc::clone(&self.shared),
            generation,
            probe,
            settled: false,
        })
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        self.shared.lock().phase.state()
    }

    /// A point-in-time view (failures outside the window are dropped first).
    pub fn snapshot(&self) -> CircuitSnapshot {
        let shared = &self.shared;
        let cfg = &shared.config;
        let mut st = shared.lock();
        let now = shared.clock.now();
        prune(&mut st.failures, now, cfg.monitoring_period);
        let (opened_ago, retry_after) = match st.phase {
            Phase::Open { since } => {
                let ago = now.saturating_duration_since(since);
                (Some(ago), Some(cfg.recovery_timeout.saturating_sub(ago)))
            }
            _ => (None, None),
        };
        let (probes_in_flight, probe_successes) = match st.phase {
            Phase::HalfOpen {
                in_flight,
                successes,
            } => (in_flight, successes),
            _ => (0, 0),
        };
        let (recent_failures, recent_calls) = match cfg.mode {
            BreakerMode::Count => (st.failures.len() as u64, None),
            BreakerMode::Rate => {
                let (calls, failures) = st.window.totals(now);
                (failures, Some(calls))
            }
        };
        CircuitSnapshot {
            state: st.phase.state(),
            mode: cfg.mode,
            recent_failures: u32::try_from(recent_failures).unwrap_or(u32::MAX),
            recent_calls,
            failure_threshold: cfg.failure_threshold,
            opened_ago,
            retry_after,
            probes_in_flight,
            probe_successes,
            times_opened: st.times_opened,
        }
    }

    /// Back to a fresh closed breaker (e.g. the provider was restarted). Permits
    /// issued before the reset are ignored: they describe the old instance.
    pub fn reset(&self) {
        let shared = &self.shared;
        let mut st = shared.lock();
        st.failures.clear();
        st.window.clear();
        if st.phase == Phase::Closed {
            // No visible transition, but in-flight results are still stale.
            st.generation = st.generation.wrapping_add(1);
        } else {
            shared.transition(&mut st, Phase::Closed);
        }
        shared.unlock_and_notify(st);
    }
}

fn prune(failures: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while let Some(&oldest) = failures.front() {
        if now.saturating_duration_since(oldest) > window {
            failures.pop_front();
        } else {
            break;
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves State consistent before anything that
        // could panic, so a poisoned lock still holds usable state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn transition(&self, st: &mut State, to: Phase) {
        let from = st.phase.state();
        st.phase = to;
        st.generation = st.generation.wrapping_add(1);
        match to {
            Phase::Closed => {
                st.failures.clear();
                st.window.clear();
            }
            Phase::Open { .. } => st.times_opened += 1,
            Phase::HalfOpen { .. } => {}
        }
        if self.on_transition.is_some() {
            st.pending.push_back((from, to.state()));
        }
    }

    fn record(&self, generation: u64, outcome: Outcome) {
        let cfg = &self.config;
        let mut st = self.lock();
        if st.generation != generation {
            return;
        }
        let now = self.clock.now();
        // A matching generation means the phase is the one the permit was
        // issued in: closed permits see Closed, probes see HalfOpen.
        match st.phase {
            Phase::Closed if cfg.mode == BreakerMode::Rate => {
                if outcome != Outcome::Cancelled {
                    let failed = outcome == Outcome::Failure;
                    st.window.record(now, failed);
                    let (calls, failures) = st.window.totals(now);
                    if failed
                        && calls >= u64::from(cfg.minimum_calls)
                        && failures * 100 >= u64::from(cfg.failure_rate_threshold) * calls
                    {
                        self.transition(&mut st, Phase::Open { since: now });
                    }
                }
            }
            Phase::Closed => {
                if outcome == Outcome::Failure {
                    prune(&mut st.failures, now, cfg.monitoring_period);
                    st.failures.push_back(now);
                    let threshold = usize::try_from(cfg.failure_threshold).unwrap_or(usize::MAX);
                    while st.failures.len() > threshold {
                        st.failures.pop_front();
                    }
                    if st.failures.len() >= threshold {
                        self.transition(&mut st, Phase::Open { since: now });
                    }
                }
            }
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                let in_flight = in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Success if successes + 1 >= cfg.success_threshold => {
                        self.transition(&mut st, Phase::Closed);
                    }
                    Outcome::Success => {
                        st.phase = Phase::HalfOpen {
                            in_flight,
                            successes: successes + 1,
                        };
                    }
                    Outcome::Failure => {
                        self.transition(&mut st, Phase::Open { since: now });
                    }
                    Outcome::Cancelled => {
                        st.phase = Phase::HalfOpen {
                            in_flight,
                            successes,
                        };
                    }
                }
            }
            Phase::Open { .. } => {}
        }
        self.unlock_and_notify(st);
    }

    fn unlock_and_notify(&self, mut st: MutexGuard<'_, State>) {
        let Some(callback) = self.on_transition.as_ref() else {
            return;
        };
        if st.dispatching || st.pending.is_empty() {
            return;
        }
        st.dispatching = true;
        drop(st);

        // If the callback panics, hand dispatching back so later transitions
        // (and the ones still queued) are delivered by the next caller.
        struct Dispatching<'a>(&'a Shared, bool);
        impl Drop for Dispatching<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.lock().dispatching = false;
                }
            }
        }
        let mut guard = Dispatching(self, true);
        loop {
            let next = {
                let mut st = self.lock();
                match st.pending.pop_front() {
                    Some(t) => t,
                    None => {
                        // Cleared under the same lock that found the queue
                        // empty, so no enqueued transition can be stranded.
                        st.dispatching = false;
                        break;
                    }
                }
            };
            callback(next.0, next.1);
        }
        guard.1 = false;
    }
}

/// Permission for one call. Owns a handle to the breaker (no borrow), so it can
/// be held across awaits and moved between tasks.
#[must_use = "record the outcome with success() or failure(); dropping counts as neither"]
pub struct Permit {
    shared: Arc<Shared>,
    generation: u64,
    probe: bool,
    settled: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("generation", &self.generation)
            .field("probe", &self.probe)
            .finish()
    }
}

impl Permit {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded.
    pub fn success(mut self) {
        self.settle(Outcome::Success);
    }

    /// The call failed in a way that says the provider is unhealthy.
    pub fn failure(mut self) {
        self.settle(Outcome::Failure);
    }

    /// `success()` if `ok`, else `failure()`.
    pub fn record(self, ok: bool) {
        if ok {
            self.success()
        } else {
            self.failure()
        }
    }

    fn settle(&mut self, outcome: Outcome) {
        if !self.settled {
            self.settled = true;
            self.shared.record(self.generation, outcome);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // A cancelled call says nothing about the provider's health, but a
        // probe must give its slot back or half-open would wedge.
        self.settle(Outcome::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::OnceLock;

    const MS: Duration = Duration::from_millis(1);

    fn cfg(
        threshold: u32,
        period_ms: u64,
        recovery_ms: u64,
        probes: u32,
        successes: u32,
    ) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_threshold: threshold,
            monitoring_period: MS * period_ms as u32,
            recovery_timeout: MS * recovery_ms as u32,
            half_open_max_probes: probes,
            success_threshold: successes,
            ..CircuitBreakerConfig::default()
        }
    }

    fn breaker(config: CircuitBreakerConfig) -> (CircuitBreaker, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        (CircuitBreaker::new(config, clock.clone()), clock)
    }

    fn fail(b: &CircuitBreaker) {
        b.try_acquire().unwrap().failure();
    }

    fn trip(b: &CircuitBreaker) {
        for _ in 0..b.config().failure_threshold {
            fail(b);
        }
        assert_eq!(b.state(), CircuitState::Open);
    }

    type Log = Arc<Mutex<Vec<(CircuitState, CircuitState)>>>;

    fn recording() -> (Log, impl Fn(CircuitState, CircuitState) + Send + Sync) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        (log, move |from, to| sink.lock().unwrap().push((from, to)))
    }

    #[test]
    fn permit_and_breaker_are_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        fn assert_send<T: Send + 'static>() {}
        assert_send_sync::<CircuitBreaker>();
        assert_send::<Permit>();
    }

    #[test]
    fn opens_after_threshold_within_window() {
        let (b, clock) = breaker(cfg(3, 1000, 500, 1, 1));
        fail(&b);
        clock.advance(MS * 400);
        fail(&b);
        b.try_acquire().unwrap().success(); // does not reset the window
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.snapshot().recent_failures, 2);
        clock.advance(MS * 600); // first failure is exactly 1000 ms old: still counted
        fail(&b);
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.snapshot().times_opened, 1);
    }

    #[test]
    fn failures_spread_beyond_window_do_not_open() {
        let (b, clock) = breaker(cfg(3, 1000, 500, 1, 1));
        for _ in 0..20 {
            fail(&b);
            clock.advance(MS * 501); // at most two failures ever share a window
        }
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.snapshot().recent_failures, 1);
        clock.advance(MS * 2000);
        assert_eq!(b.snapshot().recent_failures, 0);
    }

    #[test]
    fn open_rejects_with_remaining_recovery_time() {
        let (b, clock) = breaker(cfg(1, 1000, 500, 1, 1));
        trip(&b);
        let r = b.try_acquire().unwrap_err();
        assert_eq!(
            r,
            Rejected {
                retry_after: MS * 500,
                state: CircuitState::Open
            }
        );
        clock.advance(MS * 120);
        assert_eq!(b.try_acquire().unwrap_err().retry_after, MS * 380);
        let snap = b.snapshot();
        assert_eq!(snap.opened_ago, Some(MS * 120));
        assert_eq!(snap.retry_after, Some(MS * 380));
        clock.advance(MS * 379);
        assert_eq!(b.try_acquire().unwrap_err().retry_after, MS);
        assert!(r.to_string().contains("retry after 500 ms"));
    }

    #[test]
    fn after_recovery_only_max_probes_run_concurrently() {
        let (b, clock) = breaker(cfg(1, 1000, 500, 2, 2));
        trip(&b);
        clock.advance(MS * 500);
        assert_eq!(b.state(), CircuitState::Open, "half-open is entered lazily");
        let p1 = b.try_acquire().unwrap();
        assert!(p1.is_probe());
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let p2 = b.try_acquire().unwrap();
        let r = b.try_acquire().unwrap_err();
        assert_eq!(r.state, CircuitState::HalfOpen);
        assert_eq!(r.retry_after, MS * 500, "capped by recovery_timeout");
        assert_eq!(b.snapshot().probes_in_flight, 2);
        p1.success();
        assert_eq!(b.state(), CircuitState::HalfOpen, "needs two successes");
        let p3 = b.try_acquire().unwrap(); // p1's slot is free again
        assert!(b.try_acquire().is_err());
        p2.success();
        assert_eq!(b.state(), CircuitState::Closed);
        p3.failure(); // stale probe from the closed-out half-open generation
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.snapshot().recent_failures, 0);
    }

    #[test]
    fn half_open_rejection_uses_one_second_hint() {
        let (b, clock) = breaker(CircuitBreakerConfig::default());
        trip(&b);
        clock.advance(Duration::from_secs(30));
        let _probe = b.try_acquire().unwrap();
        assert_eq!(
            b.try_acquire().unwrap_err().retry_after,
            HALF_OPEN_RETRY_AFTER
        );
    }

    #[test]
    fn probe_success_closes_and_clears_window() {
        let (b, clock) = breaker(cfg(2, 10_000, 500, 1, 1));
        trip(&b);
        clock.advance(MS * 500);
        b.try_acquire().unwrap().success();
        let snap = b.snapshot();
        assert_eq!(snap.state, CircuitState::Closed);
        assert_eq!(snap.recent_failures, 0);
        fail(&b);
        assert_eq!(
            b.state(),
            CircuitState::Closed,
            "old failures were forgotten"
        );
    }

    #[test]
    fn probe_failure_reopens_and_restarts_timer() {
        let (b, clock) = breaker(cfg(1, 1000, 500, 1, 1));
        trip(&b);
        clock.advance(MS * 700);
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.try_acquire().unwrap_err().retry_after, MS * 500);
        clock.advance(MS * 499);
        assert!(b.try_acquire().is_err());
        clock.advance(MS);
        assert!(b.try_acquire().unwrap().is_probe());
        assert_eq!(b.snapshot().times_opened, 2);
    }

    #[test]
    fn dropped_probe_frees_slot_without_counting() {
        let (b, clock) = breaker(cfg(1, 1000, 500, 1, 1));
        trip(&b);
        clock.advance(MS * 500);
        let probe = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        drop(probe);
        let snap = b.snapshot();
        assert_eq!(
            (snap.state, snap.probes_in_flight, snap.probe_successes),
            (CircuitState::HalfOpen, 0, 0)
        );
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn dropped_closed_permit_counts_as_nothing() {
        let (b, _clock) = breaker(cfg(1, 1000, 500, 1, 1));
        for _ in 0..10 {
            drop(b.try_acquire().unwrap());
        }
        assert_eq!(b.snapshot().recent_failures, 0);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn stale_permits_are_ignored() {
        let (b, clock) = breaker(cfg(2, 1000, 500, 1, 1));
        let stale_fail = b.try_acquire().unwrap();
        let stale_ok = b.try_acquire().unwrap();
        let stale_late = b.try_acquire().unwrap();
        trip(&b);
        stale_fail.failure();
        stale_ok.success();
        let snap = b.snapshot();
        assert_eq!(snap.state, CircuitState::Open);
        assert_eq!(snap.opened_ago, Some(Duration::ZERO), "timer not restarted");
        assert_eq!(snap.times_opened, 1);

        clock.advance(MS * 500);
        let probe = b.try_acquire().unwrap();
        stale_late.failure(); // closed-generation failure arriving in half-open
        assert_eq!(b.state(), CircuitState::HalfOpen);
        probe.success();
        assert_eq!(b.state(), CircuitState::Closed);

        let before_reset = b.try_acquire().unwrap();
        b.reset();
        before_reset.failure();
        assert_eq!(b.snapshot().recent_failures, 0);
    }

    #[test]
    fn reset_returns_to_closed() {
        let (log, cb) = recording();
        let clock = Arc::new(ManualClock::new());
        let b = CircuitBreaker::with_on_transition(cfg(1, 1000, 500, 1, 1), clock, cb);
        b.reset(); // already closed: no transition reported
        trip(&b);
        b.reset();
        assert_eq!(b.state(), CircuitState::Closed);
        assert!(b.try_acquire().is_ok());
        assert_eq!(
            *log.lock().unwrap(),
            vec![
                (CircuitState::Closed, CircuitState::Open),
                (CircuitState::Open, CircuitState::Closed)
            ]
        );
    }

    #[test]
    fn transition_callback_sequence() {
        let (log, cb) = recording();
        let clock = Arc::new(ManualClock::new());
        let b = CircuitBreaker::with_on_transition(cfg(2, 1000, 500, 1, 1), clock.clone(), cb);
        trip(&b);
        clock.advance(MS * 500);
        b.try_acquire().unwrap().success();
        use CircuitState::*;
        assert_eq!(
            *log.lock().unwrap(),
            vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
        );
    }

    #[test]
    fn callback_reentrancy_does_not_deadlock() {
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let slot: Arc<OnceLock<CircuitBreaker>> = Arc::new(OnceLock::new());
            let log = Arc::new(Mutex::new(Vec::new()));
            let (slot2, log2) = (slot.clone(), log.clone());
            let clock = Arc::new(ManualClock::new());
            let b = CircuitBreaker::with_on_transition(
                cfg(1, 1000, 500, 1, 1),
                clock,
                move |from, to| {
                    log2.lock().unwrap().push((from, to));
                    let Some(b) = slot2.get() else { return };
                    let _ = b.snapshot();
                    let _ = b.state();
                    if to == CircuitState::Open {
                        b.reset(); // a transition from inside the callback
                        b.try_acquire().unwrap().success();
                    }
                },
            );
            assert!(slot.set(b.clone()).is_ok());
            fail(&b);
            let _ = done_tx.send((b.state(), log.lock().unwrap().clone()));
        });
        let (state, log) = done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("deadlocked");
        use CircuitState::*;
        assert_eq!(state, Closed);
        assert_eq!(log, vec![(Closed, Open), (Open, Closed)]);
    }

    #[test]
    fn panicking_callback_does_not_wedge_dispatch() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c2 = calls.clone();
        let clock = Arc::new(ManualClock::new());
        let b =
            CircuitBreaker::with_on_transition(cfg(1, 1000, 500, 1, 1), clock, move |from, to| {
                c2.lock().unwrap().push((from, to));
                if to == CircuitState::Open {
                    panic!("callback bug");
                }
            });
        let b2 = b.clone();
        assert!(std::thread::spawn(move || fail(&b2)).join().is_err());
        b.reset();
        use CircuitState::*;
        assert_eq!(*calls.lock().unwrap(), vec![(Closed, Open), (Open, Closed)]);
    }

    fn rate(percent: u8, minimum: u32) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            mode: BreakerMode::Rate,
            failure_rate_threshold: percent,
            minimum_calls: minimum,
            failure_threshold: 1,
            ..cfg(1, 10_000, 1_000, 1, 1)
        }
    }

    fn succeed(b: &CircuitBreaker) {
        b.try_acquire().unwrap().success();
    }

    /// The case count mode gets wrong: at high traffic a small failure rate
    /// (here 1 %) never opens a rate-mode breaker, though it is far more than
    /// `failure_threshold` failures.
    #[test]
    fn rate_mode_ignores_a_low_failure_rate_at_high_traffic() {
        let (b, clock) = breaker(rate(50, 20));
        for i in 0..1_000 {
            if i % 100 == 0 {
                fail(&b);
            } else {
                succeed(&b);
            }
            clock.advance(MS * 5);
        }
        assert_eq!(b.state(), CircuitState::Closed);
        let snap = b.snapshot();
        assert_eq!(snap.mode, BreakerMode::Rate);
        assert!(snap.recent_calls.is_some_and(|c| c > 0), "{snap:?}");
        // The same failures in count mode (threshold 5) would have opened.
        let (count, clock) = breaker(cfg(5, 10_000, 1_000, 1, 1));
        for i in 0..1_000 {
            let Ok(p) = count.try_acquire() else { break };
            if i % 100 == 0 {
                p.failure();
            } else {
                p.success();
            }
            clock.advance(MS * 5);
        }
        assert_eq!(count.state(), CircuitState::Open);
    }

    #[test]
    fn rate_mode_opens_at_the_threshold_once_enough_calls_are_in() {
        let (b, _clock) = breaker(rate(50, 10));
        // Below the minimum: nine failures in nine calls do not open it.
        for _ in 0..9 {
            fail(&b);
        }
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.snapshot().recent_failures, 9);
        // The tenth call is a failure: 10 of 10, over 50 %.
        fail(&b);
        assert_eq!(b.state(), CircuitState::Open);

        // 49 % stays closed, 50 % opens.
        let (b, _clock) = breaker(rate(50, 100));
        for _ in 0..51 {
            succeed(&b);
        }
        for _ in 0..49 {
            fail(&b);
        }
        assert_eq!(b.state(), CircuitState::Closed);
        succeed(&b);
        fail(&b);
        // 50 failures of 102 calls: 49 %.
        assert_eq!(b.state(), CircuitState::Closed);
        fail(&b);
        fail(&b);
        // 52 of 104: 50 %.
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn rate_mode_forgets_old_calls_and_cancellations_count_neither_way() {
        let (b, clock) = breaker(rate(50, 4));
        for _ in 0..3 {
            fail(&b);
        }
        // A window later those failures are gone: three more do not reach four calls.
        clock.advance(MS * 11_000);
        for _ in 0..3 {
            fail(&b);
        }
        assert_eq!(b.state(), CircuitState::Closed);
        drop(b.try_acquire().unwrap());
        assert_eq!(b.snapshot().recent_calls, Some(3));
        fail(&b);
        assert_eq!(b.state(), CircuitState::Open);
        // Half-open → closed starts a fresh window.
        clock.advance(MS * 1_000);
        succeed(&b);
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.snapshot().recent_calls, Some(0));
    }

    #[test]
    fn config_validation_lists_all_problems() {
        assert!(CircuitBreakerConfig::default().validate().is_empty());
        let bad = CircuitBreakerConfig {
            failure_threshold: 0,
            monitoring_period: Duration::ZERO,
            recovery_timeout: Duration::ZERO,
            half_open_max_probes: 0,
            success_threshold: 0,
            mode: BreakerMode::Rate,
            failure_rate_threshold: 0,
            minimum_calls: 0,
        };
        let problems = bad.validate();
        assert_eq!(problems.len(), 7, "{problems:?}");
        for field in [
            "failure_threshold",
            "monitoring_period_ms",
            "recovery_timeout_ms",
            "half_open_max_probes",
            "success_threshold",
            "failure_rate_threshold",
            "minimum_calls",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(field)),
                "{field} missing in {problems:?}"
            );
        }
        let too_many = CircuitBreakerConfig {
            success_threshold: 3,
            half_open_max_probes: 2,
            ..Default::default()
        };
        assert_eq!(too_many.validate().len(), 1);

        // Clamped rather than wedged.
        let b = CircuitBreaker::new(bad, Arc::new(ManualClock::new()));
        assert_eq!(b.config().failure_threshold, 1);
        assert_eq!(b.config().half_open_max_probes, 1);
    }

    #[test]
    fn config_serde_uses_milliseconds_and_defaults() {
        let json = serde_json::to_value(CircuitBreakerConfig::default()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "failure_threshold": 5, "monitoring_period_ms": 60000, "recovery_timeout_ms": 30000,
                "half_open_max_probes": 1, "success_threshold": 1,
                "mode": "count", "failure_rate_threshold": 50, "minimum_calls": 20
            })
        );
        let partial: CircuitBreakerConfig =
            serde_json::from_str(r#"{"recovery_timeout_ms": 1500}"#).unwrap();
        assert_eq!(partial.recovery_timeout, MS * 1500);
        assert_eq!(partial.failure_threshold, 5);
        assert!(
            serde_json::from_str::<CircuitBreakerConfig>(r#"{"recovery_timeout": 1}"#).is_err()
        );
    }

    #[test]
    fn state_and_snapshot_serialize() {
        assert_eq!(
            serde_json::to_string(&CircuitState::HalfOpen).unwrap(),
            r#""half-open""#
        );
        for s in [
            CircuitState::Closed,
            CircuitState::Open,
            CircuitState::HalfOpen,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(
                serde_json::from_value::<CircuitState>(s.as_str().into()).unwrap(),
                s
            );
        }
        let (b, clock) = breaker(cfg(1, 1000, 500, 1, 1));
        trip(&b);
        clock.advance(MS * 200);
        let json = serde_json::to_value(b.snapshot()).unwrap();
        assert_eq!(json["state"], "open");
        assert_eq!(json["opened_ago_ms"], 200);
        assert_eq!(json["retry_after_ms"], 300);
        assert_eq!(json["recent_failures"], 1);
    }

    #[test]
    fn permit_survives_across_await() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (b, _clock) = breaker(cfg(1, 1000, 500, 1, 1));
        let b2 = b.clone();
        rt.block_on(async move {
            let permit = b2.try_acquire().unwrap();
            tokio::task::yield_now().await;
            tokio::spawn(async move { permit.failure() }).await.unwrap();
        });
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn stress_many_threads_stays_consistent() {
        const THREADS: u64 = 8;
        const ITERS: u64 = 10_000;
        let (log, cb) = recording();
        let clock = Arc::new(ManualClock::new());
        let b = CircuitBreaker::with_on_transition(cfg(5, 1000, 100, 3, 2), clock.clone(), cb);
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (b, clock) = (b.clone(), clock.clone());
                std::thread::spawn(move || {
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                    let mut held: Vec<Permit> = Vec::new();
                    let (mut acquired, mut rejected) = (0u64, 0u64);
                    for i in 0..ITERS {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        if i % 10 == 0 {
                            clock.advance(MS);
                        }
                        match b.try_acquire() {
                            Ok(p) => {
                                acquired += 1;
                                held.push(p);
                            }
                            Err(r) => {
                                rejected += 1;
                                assert!(r.retry_after > Duration::ZERO);
                            }
                        }
                        // Settle some held permits, keeping a few in flight so
                        // stale outcomes cross state changes.
                        while held.len() > (rng % 4) as usize {
                            let p = held.swap_remove((rng as usize / 7) % held.len());
                            match (rng >> 20) % 10 {
                                0..=3 => p.failure(),
                                4 => drop(p),
                                _ => p.success(),
                            }
                        }
                    }
                    drop(held);
                    (acquired, rejected)
                })
            })
            .collect();
        let mut totals = (0, 0);
        for h in handles {
            let (a, r) = h.join().expect("worker panicked");
            totals.0 += a;
            totals.1 += r;
        }
        assert_eq!(totals.0 + totals.1, THREADS * ITERS);

        let snap = b.snapshot();
        let log = log.lock().unwrap().clone();
        assert!(snap.times_opened > 0, "stress never tripped the breaker");
        assert!(log.len() > 3);
        let mut expect_from = CircuitState::Closed;
        for &(from, to) in &log {
            assert_eq!(from, expect_from, "broken transition chain: {log:?}");
            assert_ne!(from, to);
            expect_from = to;
        }
        assert_eq!(expect_from, snap.state);
        let opens = log
            .iter()
            .filter(|(_, to)| *to == CircuitState::Open)
            .count() as u64;
        assert_eq!(opens, snap.times_opened);
        assert_eq!(
            snap.probes_in_flight, 0,
            "every permit was settled or dropped"
        );
        assert!(snap.recent_failures <= snap.failure_threshold);
        if snap.state == CircuitState::Closed {
            assert!(snap.recent_failures < snap.failure_threshold);
        }
    }
}
