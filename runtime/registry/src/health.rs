//! Health of a provider: the result of each check, and the status that flips only
//! after a run of consecutive agreeing checks (so one slow answer does not mark a
//! provider unhealthy, and one lucky answer does not mark it healthy again).
//!
//! A check calls the guest's `health-check` in the sandbox with its own deadline;
//! a trap, a timeout or an exhausted budget counts as unhealthy. Monitoring (the
//! periodic checks) lives in `monitor.rs`.

use std::time::Duration;

use serde::Serialize;

use tamma_sandbox::error::Error;
use tamma_sandbox::types::{Health, HealthStatus};

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    /// What this check observed.
    pub status: HealthStatus,
    /// The guest's message, or the error that made the check fail.
    pub message: String,
    /// How long the check took.
    #[serde(
        rename = "latency_ms",
        serialize_with = "tamma_sandbox::time::serde_ms::fractional"
    )]
    pub latency: Duration,
    /// When it finished (Unix ms).
    pub at_unix_ms: u64,
}

impl HealthCheck {
    /// Turn a guest answer (or the failure to get one) into a check result.
    pub fn from_result(result: Result<Health, Error>, latency: Duration) -> Self {
        let (status, message) = match result {
            Ok(h) => (h.status, h.message),
            Err(e) => (
                HealthStatus::Unhealthy,
                format!("{}: {}", e.code, e.message),
            ),
        };
        HealthCheck {
            status,
            message,
            latency,
            at_unix_ms: tamma_sandbox::time::now_unix_ms(),
        }
    }
}

/// A provider's health as the registry reports it.
#[derive(Clone, Debug, Serialize)]
pub struct HealthRecord {
    /// The current (debounced) status.
    pub status: HealthStatus,
    /// The message of the check that set it, or of the latest check.
    pub message: String,
    /// The latest check, if any ran.
    pub last_check: Option<HealthCheck>,
    /// Consecutive checks that observed the same status as the latest one.
    pub streak: u32,
}

impl Default for HealthRecord {
    /// A provider that has just initialized successfully counts as healthy (as an
    /// Envoy host does after one successful check at start-up).
    fn default() -> Self {
        HealthRecord {
            status: HealthStatus::Healthy,
            message: "initialized".into(),
            last_check: None,
            streak: 0,
        }
    }
}

impl HealthRecord {
    /// Record a check; returns `Some((from, to))` when the status flips.
    /// Healthy needs `healthy_threshold` consecutive healthy checks; degraded and
    /// unhealthy need `unhealthy_threshold` consecutive checks of that status.
    pub fn observe(
        &mut self,
        check: HealthCheck,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<(HealthStatus, HealthStatus)> {
        let same = self.last_check.as_ref().map(|c| c.status) == Some(check.status);
        self.streak = if same { self.streak + 1 } else { 1 };
        let needed = match check.status {
            HealthStatus::Healthy => healthy_threshold,
            _ => unhealthy_threshold,
        };
        let observed = check.status;
        let message = check.message.clone();
        self.last_check = Some(check);
        if observed != self.status && self.streak >= needed.max(1) {
            let from = self.status;
            self.status = observed;
            self.message = message;
            return Some((from, observed));
        }
        if observed == self.status {
            self.message = message;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_sandbox::error::ErrorCode;

    fn check(status: HealthStatus) -> HealthCheck {
        HealthCheck {
            status,
            message: status.as_str().into(),
            latency: Duration::from_millis(1),
            at_unix_ms: 0,
        }
    }

    #[test]
    fn flips_only_after_the_threshold_of_consecutive_checks() {
        let mut r = HealthRecord::default();
        use HealthStatus::*;
        assert_eq!(r.observe(check(Unhealthy), 2, 3), None);
        assert_eq!(r.observe(check(Unhealthy), 2, 3), None);
        assert_eq!(
            r.observe(check(Unhealthy), 2, 3),
            Some((Healthy, Unhealthy))
        );
        assert_eq!(
            r.observe(check(Unhealthy), 2, 3),
            None,
            "no event without a transition"
        );
        assert_eq!(r.observe(check(Healthy), 2, 3), None);
        assert_eq!(
            r.observe(check(Unhealthy), 2, 3),
            None,
            "a break resets the streak"
        );
        assert_eq!(r.observe(check(Healthy), 2, 3), None);
        assert_eq!(r.observe(check(Healthy), 2, 3), Some((Unhealthy, Healthy)));
        assert_eq!(r.status, Healthy);
    }

    #[test]
    fn degraded_is_its_own_status() {
        let mut r = HealthRecord::default();
        assert_eq!(
            r.observe(check(HealthStatus::Degraded), 1, 1),
            Some((HealthStatus::Healthy, HealthStatus::Degraded))
        );
    }

    #[test]
    fn a_failed_check_is_unhealthy_with_the_error() {
        let c = HealthCheck::from_result(
            Err(Error::new(ErrorCode::Timeout, "too slow")),
            Duration::from_millis(5),
        );
        assert_eq!(c.status, HealthStatus::Unhealthy);
        assert!(c.message.contains("TIMEOUT"));
    }
}
