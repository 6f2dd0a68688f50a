//! Per-provider metrics, read from the registry at scrape time: calls, errors by
//! code, latency, instance pool, fuel, circuit, health, lifecycle state and
//! egress. The numbers live in the registry (snapshots) and the sandbox (egress
//! counters); a [`Collector`] turns them into families on each scrape instead
//! of copying them into metrics of our own.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::labels::Value;
use tamma_registry::circuit_breaker::CircuitState;
use tamma_registry::registry::{ProviderSnapshot, ProviderState, Registry};
use tamma_registry::stats::LATENCY_BUCKETS;
use tamma_sandbox::types::HealthStatus;

/// `provider="<name>"` plus one more label.
type Labels2 = [(&'static str, Value); 2];
/// `provider="<name>"`.
type Labels1 = [(&'static str, Value); 1];

/// Encodes every provider's metrics from the registry on each scrape.
pub struct ProviderCollector {
    registry: Registry,
}

impl ProviderCollector {
    /// A collector reading `registry`.
    pub fn new(registry: Registry) -> Self {
        ProviderCollector { registry }
    }
}

impl fmt::Debug for ProviderCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProviderCollector")
    }
}

fn provider(name: &str) -> Labels1 {
    [("provider", Value::from(name))]
}

fn provider_and(name: &str, key: &'static str, v: Value) -> Labels2 {
    [("provider", Value::from(name)), (key, v)]
}

/// One family of counters; nothing (not even its descriptor) when empty.
fn counters<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(L, u64)],
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// One family of gauges; nothing when empty.
fn gauges<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(L, u64)],
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// 1 for the current value among `all`, 0 for the others.
fn one_hot<T: PartialEq + Copy>(
    rows: &mut Vec<(Labels2, u64)>,
    name: &str,
    key: &'static str,
    current: T,
    all: &[T],
    as_str: impl Fn(T) -> &'static str,
) {
    for v in all {
        rows.push((
            provider_and(name, key, Value::fixed(as_str(*v))),
            u64::from(current == *v),
        ));
    }
}

/// The latency histogram of one provider's calls. The snapshot's buckets are
/// cumulative; the encoder wants each bucket's own count (and accumulates them
/// again), so the difference is taken, never below zero even if the counters
/// moved while they were read.
fn call_latency(s: &ProviderSnapshot) -> Vec<(f64, u64)> {
    let c = &s.calls;
    let mut out = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
    let mut below = 0u64;
    for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
        let cum = c
            .latency_buckets
            .get(i)
            .copied()
            .unwrap_or(below)
            .max(below);
        out.push((*le, cum - below));
        below = cum;
    }
    // prometheus-client writes a bound of f64::MAX as `+Inf`.
    out.push((f64::MAX, c.calls.saturating_sub(below)));
    out
}

impl Collector for ProviderCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let snaps = self.registry.snapshot();
        let egress = self.registry.egress_counters();

        let mut calls = Vec::new();
        let mut failures = Vec::new();
        let mut errors = Vec::new();
        let mut state = Vec::new();
        let mut health = Vec::new();
        let mut circuit = Vec::new();
        let mut opened = Vec::new();
        let (mut in_use, mut waiting, mut idle, mut max_concurrency) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut fuel, mut overloaded, mut created, mut retired, mut checks) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in &snaps {
            let n = s.name.as_str();
            calls.push((provider(n), s.calls.calls));
            failures.push((provider(n), s.calls.failures));
            for (code, v) in &s.calls.errors {
                errors.push((provider_and(n, "code", Value::from(code.as_str())), *v));
            }
            one_hot(
                &mut state,
                n,
                "state",
                s.state,
                &[
                    ProviderState::Initializing,
                    ProviderState::Ready,
                    ProviderState::Stopped,
                    ProviderState::Error,
                    ProviderState::Disposed,
                ],
                ProviderState::as_str,
            );
            one_hot(
                &mut health,
                n,
                "status",
                s.health,
                &[
                    HealthStatus::Healthy,
                    HealthStatus::Degraded,
                    HealthStatus::Unhealthy,
                ],
                HealthStatus::as_str,
            );
            one_hot(
                &mut circuit,
                n,
                "state",
                s.circuit.state,
                &[
                    CircuitState::Closed,
                    CircuitState::Open,
                    CircuitState::HalfOpen,
                ],
                CircuitState::as_str,
            );
            opened.push((provider(n), s.circuit.times_opened));
            if let Some(pool) = &s.pool {
                in_use.push((provider(n), pool.in_use));
                waiting.push((provider(n), pool.waiting));
                idle.push((provider(n), pool.idle));
                max_concurrency.push((provider(n), u64::from(s.limits.max_concurrency)));
                fuel.push((provider(n), pool.fuel_used));
                overloaded.push((provider(n), pool.overloaded));
                created.push((provider(n), pool.created));
                retired.push((provider(n), pool.retired));
                checks.push((provider(n), pool.health_checks));
            }
        }

        counters(
            &mut enc,
            "tamma_provider_calls",
            "Provider calls finished.",
            &calls,
        )?;
        counters(
            &mut enc,
            "tamma_provider_call_failures",
            "Provider calls that ended in an error.",
            &failures,
        )?;
        counters(
            &mut enc,
            "tamma_provider_errors",
            "Provider call errors, by runtime error code.",
            &errors,
        )?;
        if !snaps.is_empty() {
            let mut m = enc.encode_descriptor(
                "tamma_provider_call_duration_seconds",
                "Provider call latency (a stream: from start to end).",
                None,
                MetricType::Histogram,
            )?;
            for s in &snaps {
                let labels = provider(&s.name);
                m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    s.calls.latency_sum_seconds,
                    s.calls.calls,
                    &call_latency(s),
                    None,
                )?;
            }
        }
        gauges(
            &mut enc,
            "tamma_provider_state",
            "1 for the provider's lifecycle state.",
            &state,
        )?;
        gauges(
            &mut enc,
            "tamma_provider_health",
            "1 for the provider's (debounced) health status.",
            &health,
        )?;
        gauges(
            &mut enc,
            "tamma_provider_circuit_state",
            "1 for the circuit breaker's state.",
            &circuit,
        )?;
        counters(
            &mut enc,
            "tamma_provider_circuit_opened",
            "Times the circuit breaker opened.",
            &opened,
        )?;
        gauges(
            &mut enc,
            "tamma_provider_pool_in_use",
            "Instances running a call now.",
            &in_use,
        )?;
        gauges(
            &mut enc,
            "tamma_provider_pool_waiting",
            "Calls queued for a free instance now.",
            &waiting,
        )?;
        gauges(
            &mut enc,
            "tamma_provider_pool_idle",
            "Idle instances.",
            &idle,
        )?;
        gauges(
            &mut enc,
            "tamma_provider_max_concurrency",
            "Instances that may run at once.",
            &max_concurrency,
        )?;
        counters(
            &mut enc,
            "tamma_provider_fuel_used",
            "Fuel burnt by the current instances' calls.",
            &fuel,
        )?;
        counters(
            &mut enc,
            "tamma_provider_pool_overloaded",
            "Calls refused with OVERLOADED (no instance free in time).",
            &overloaded,
        )?;
        counters(
            &mut enc,
            "tamma_provider_pool_created",
            "Instances created.",
            &created,
        )?;
        counters(
            &mut enc,
            "tamma_provider_pool_retired",
            "Instances thrown away after a trap, timeout or limit.",
            &retired,
        )?;
        counters(
            &mut enc,
            "tamma_provider_health_checks",
            "Health checks run.",
            &checks,
        )?;

        let mut requests = Vec::new();
        let mut refusals = Vec::new();
        for (name, c) in &egress {
            for (outcome, v) in [("sent", c.sent), ("failed", c.failed)] {
                requests.push((provider_and(name, "outcome", Value::fixed(outcome)), v));
            }
            for (reason, v) in [
                ("not_allowed", c.refused_not_allowed),
                ("address_prohibited", c.refused_address_prohibited),
                ("unknown_secret", c.refused_unknown_secret),
                ("concurrency", c.refused_concurrency),
                ("secret_host", c.refused_secret_host),
            ] {
                refusals.push((provider_and(name, "reason", Value::fixed(reason)), v));
            }
        }
        counters(
            &mut enc,
            "tamma_egress_requests",
            "Outbound HTTP requests by outcome.",
            &requests,
        )?;
        counters(
            &mut enc,
            "tamma_egress_refusals",
            "Outbound HTTP requests refused by the egress policy, by reason.",
            &refusals,
        )?;

        let providers = ConstGauge::new(snaps.len() as u64);
        providers.encode(enc.encode_descriptor(
            "tamma_providers",
            "Registered providers.",
            None,
            MetricType::Gauge,
        )?)
    }
}
