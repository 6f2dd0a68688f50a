//! The registry's settings: health monitoring, circuit breaker and lifecycle, with
//! documented defaults and validation that lists every problem at once.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::circuit_breaker::CircuitBreakerConfig;

/// Health monitoring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Time between checks of one provider, ms. Default 30 000.
    pub interval_ms: u64,
    /// Deadline of one check, ms. Default 5 000.
    pub timeout_ms: u64,
    /// Random spread added to each interval, as a fraction of it (0–1), so that
    /// providers registered together are not all checked at once. Default 0.1.
    pub jitter: f64,
    /// Consecutive healthy checks before an unhealthy provider counts as healthy. Default 1.
    pub healthy_threshold: u32,
    /// Consecutive failed checks before a healthy provider counts as unhealthy. Default 3.
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
    /// Most time `initialize` may take (a provider's own limit may be lower), ms. Default 10 000.
    pub init_timeout_ms: u64,
    /// Most time `dispose` may take, and how long running calls are awaited before
    /// it (a provider's own limit may be lower), ms. Default 5 000.
    pub dispose_timeout_ms: u64,
    /// Bound of a whole graceful shutdown, ms. Default 30 000.
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
        if h.interval_ms == 0 {
            p.push("health.interval_ms: must be at least 1".to_string());
        }
        if h.timeout_ms == 0 {
            p.push("health.timeout_ms: must be at least 1".to_string());
        }
        if !(0.0..=1.0).contains(&h.jitter) {
            p.push(format!(
                "health.jitter: must be between 0 and 1, got {}",
                h.jitter
            ));
        }
        if h.healthy_threshold == 0 {
            p.push("health.healthy_threshold: must be at least 1".to_string());
        }
        if h.unhealthy_threshold == 0 {
            p.push("health.unhealthy_threshold: must be at least 1".to_string());
        }
        p.extend(
            self.circuit_breaker
                .validate()
                .into_iter()
                .map(|e| format!("circuit_breaker.{e}")),
        );
        let l = &self.lifecycle;
        for (name, v) in [
            ("init_timeout_ms", l.init_timeout_ms),
            ("dispose_timeout_ms", l.dispose_timeout_ms),
            ("shutdown_timeout_ms", l.shutdown_timeout_ms),
        ] {
            if v == 0 {
                p.push(format!("lifecycle.{name}: must be at least 1"));
            }
        }
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
