//! The registry's settings: health monitoring, circuit breaker and lifecycle, with
//! documented defaults and validation that lists every problem at once.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::circuit_breaker::CircuitBreakerConfig;
use crate::config::bounds::{check, Bound};

/// Longest `health.interval_ms` and breaker period: a day.
pub const MAX_PERIOD_MS: u64 = 86_400_000;
/// Longest `health.timeout_ms`, `lifecycle.init_timeout_ms` and
/// `lifecycle.dispose_timeout_ms`: ten minutes (the sandbox's own phase limit).
pub const MAX_STEP_TIMEOUT_MS: u64 = tamma_sandbox::limits::MAX_PHASE_TIMEOUT_MS;
/// Longest `lifecycle.shutdown_timeout_ms`: an hour.
pub const MAX_SHUTDOWN_TIMEOUT_MS: u64 = 3_600_000;
/// Most consecutive checks a health threshold may ask for.
pub const MAX_HEALTH_THRESHOLD: u32 = 1_000;

/// Every `[health]` field's accepted range (`jitter`, a fraction, is checked apart).
pub const HEALTH_BOUNDS: &[Bound] = &[
    ("interval_ms", 1, MAX_PERIOD_MS),
    ("timeout_ms", 1, MAX_STEP_TIMEOUT_MS),
    ("healthy_threshold", 1, MAX_HEALTH_THRESHOLD as u64),
    ("unhealthy_threshold", 1, MAX_HEALTH_THRESHOLD as u64),
];

/// Every `[lifecycle]` field's accepted range.
pub const LIFECYCLE_BOUNDS: &[Bound] = &[
    ("init_timeout_ms", 1, MAX_STEP_TIMEOUT_MS),
    ("dispose_timeout_ms", 1, MAX_STEP_TIMEOUT_MS),
    ("shutdown_timeout_ms", 1, MAX_SHUTDOWN_TIMEOUT_MS),
];

/// Health monitoring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Time between checks of one provider, ms. Default 30 000; at most a day.
    #[schemars(range(min = 1, max = MAX_PERIOD_MS))]
    pub interval_ms: u64,
    /// Deadline of one check, ms. Default 5 000; at most 600 000.
    #[schemars(range(min = 1, max = MAX_STEP_TIMEOUT_MS))]
    pub timeout_ms: u64,
    /// Random spread added to each interval, as a fraction of it (0–1), so that
    /// providers registered together are not all checked at once. Default 0.1.
    pub jitter: f64,
    /// Consecutive healthy checks before an unhealthy provider counts as healthy.
    /// Default 1; at most 1 000.
    #[schemars(range(min = 1, max = MAX_HEALTH_THRESHOLD))]
    pub healthy_threshold: u32,
    /// Consecutive failed checks before a healthy provider counts as unhealthy.
    /// Default 3; at most 1 000.
    #[schemars(range(min = 1, max = MAX_HEALTH_THRESHOLD))]
    pub unhealthy_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_ms: 30_000,
            timeout_ms: 5_000,
            jitter: 0.1,
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        }
    }
}

impl HealthConfig {
    /// Interval as a Duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    /// Timeout as a Duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Lifecycle step deadlines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Most time `initialize` may take (a provider's own limit may be lower), ms.
    /// Default 10 000; at most 600 000.
    #[schemars(range(min = 1, max = MAX_STEP_TIMEOUT_MS))]
    pub init_timeout_ms: u64,
    /// Most time `dispose` may take, and how long running calls are awaited before
    /// it (a provider's own limit may be lower), ms. Default 5 000; at most 600 000.
    #[schemars(range(min = 1, max = MAX_STEP_TIMEOUT_MS))]
    pub dispose_timeout_ms: u64,
    /// Bound of a whole graceful shutdown, ms. Default 30 000; at most an hour.
    #[schemars(range(min = 1, max = MAX_SHUTDOWN_TIMEOUT_MS))]
    pub shutdown_timeout_ms: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            init_timeout_ms: 10_000,
            dispose_timeout_ms: 5_000,
            shutdown_timeout_ms: 30_000,
        }
    }
}

impl LifecycleConfig {
    /// Shutdown bound as a Duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
    /// Dispose bound as a Duration.
    pub fn dispose_timeout(&self) -> Duration {
        Duration::from_millis(self.dispose_timeout_ms)
    }
}

/// All registry settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Health monitoring.
    pub health: HealthConfig,
    /// Circuit breaker, one per provider.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Lifecycle deadlines.
    pub lifecycle: LifecycleConfig,
    /// Signatures components must carry (`[trust]`).
    pub trust: crate::trust::TrustConfig,
}

impl RegistryConfig {
    /// Every problem, as `section.field: reason` (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let h = &self.health;
        p.extend(check("health.", HEALTH_BOUNDS, |f| {
            Some(match f {
                "interval_ms" => h.interval_ms,
                "timeout_ms" => h.timeout_ms,
                "healthy_threshold" => h.healthy_threshold.into(),
                _ => h.unhealthy_threshold.into(),
            })
        }));
        if !(0.0..=1.0).contains(&h.jitter) {
            p.push(format!(
                "health.jitter: must be between 0 and 1, got {}",
                h.jitter
            ));
        }
        p.extend(
            self.circuit_breaker
                .validate()
                .into_iter()
                .map(|e| format!("circuit_breaker.{e}")),
        );
        let l = &self.lifecycle;
        p.extend(check("lifecycle.", LIFECYCLE_BOUNDS, |f| {
            Some(match f {
                "init_timeout_ms" => l.init_timeout_ms,
                "dispose_timeout_ms" => l.dispose_timeout_ms,
                _ => l.shutdown_timeout_ms,
            })
        }));
        p.extend(self.trust.validate());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values_hold() {
        let c = RegistryConfig::default();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.lifecycle.shutdown_timeout(), Duration::from_secs(30));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut c = RegistryConfig::default();
        c.health.interval_ms = 0;
        c.health.jitter = 2.0;
        c.lifecycle.shutdown_timeout_ms = 0;
        c.circuit_breaker.failure_threshold = 0;
        let p = c.validate();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p.iter().any(|e| e.starts_with("health.interval_ms")));
        assert!(p.iter().any(|e| e.starts_with("health.jitter")));
        assert!(p
            .iter()
            .any(|e| e.starts_with("lifecycle.shutdown_timeout_ms")));
        assert!(p.iter().any(|e| e.starts_with("circuit_breaker.")));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e =
            serde_json::from_str::<RegistryConfig>(r#"{"health":{"intervall_ms":5}}"#).unwrap_err();
        assert!(e.to_string().contains("intervall_ms"));
    }
}
