//! Per-provider sandbox limits and their documented defaults.
//!
//! Every limit can be set per provider (CLI flags, config file, admin API). The
//! defaults suit a network-bound LLM provider: generous wall-clock time (upstream
//! models are slow), a compute budget far above what JSON handling needs, and a
//! memory cap that fits a JavaScript or Python runtime.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits applied to one provider's sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Fuel (roughly: wasm instructions) each guest call may burn. Default 5e9.
    pub fuel: u64,
    /// Linear memory cap per instance, MiB. Default 128.
    pub memory_mib: u64,
    /// Wall-clock deadline of one guest call (each `next()` of a stream counts as one
    /// call), milliseconds. Default 60 000.
    pub timeout_ms: u64,
    /// Deadline of `initialize`, milliseconds. Default 10 000.
    pub init_timeout_ms: u64,
    /// Deadline of `dispose`, milliseconds. Default 2 000.
    pub dispose_timeout_ms: u64,
    /// Instances of this provider that may run at once. Default 4.
    pub max_concurrency: u32,
    /// How long a call waits for a free instance before `OVERLOADED`, milliseconds.
    /// Default 5 000.
    pub queue_timeout_ms: u64,
    /// Largest answer (a whole response, or a stream's total), bytes. Default 4 MiB.
    pub max_response_bytes: u64,
    /// Log bytes (messages plus fields, and stderr) one call may write. Default 64 KiB.
    pub max_log_bytes_per_call: u64,
    /// Log records one call may write. Default 1 000.
    pub max_log_records_per_call: u32,
    /// Table elements per table. Default 20 000.
    pub max_table_elements: u32,
}

/// Smallest and largest accepted values, shared by validation and docs.
pub const MAX_MEMORY_MIB: u64 = 4096;
/// Largest accepted `max_concurrency`.
pub const MAX_CONCURRENCY: u32 = 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 5_000_000_000,
            memory_mib: 128,
            timeout_ms: 60_000,
            init_timeout_ms: 10_000,
            dispose_timeout_ms: 2_000,
            max_concurrency: 4,
            queue_timeout_ms: 5_000,
            max_response_bytes: 4 * 1024 * 1024,
            max_log_bytes_per_call: 64 * 1024,
            max_log_records_per_call: 1_000,
            max_table_elements: 20_000,
        }
    }
}

impl Limits {
    /// Every problem with these limits, as `field: reason` lines (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, field: &str, why: String| {
            if !ok {
                problems.push(format!("{field}: {why}"));
            }
        };
        check(self.fuel > 0, "fuel", "must be at least 1".into());
        check(
            (1..=MAX_MEMORY_MIB).contains(&self.memory_mib),
            "memory_mib",
            format!(
                "must be between 1 and {MAX_MEMORY_MIB}, got {}",
                self.memory_mib
            ),
        );
        check(
            self.timeout_ms > 0,
            "timeout_ms",
            "must be at least 1".into(),
        );
        check(
            self.init_timeout_ms > 0,
            "init_timeout_ms",
            "must be at least 1".into(),
        );
        check(
            self.dispose_timeout_ms > 0,
            "dispose_timeout_ms",
            "must be at least 1".into(),
        );
        check(
            (1..=MAX_CONCURRENCY).contains(&self.max_concurrency),
            "max_concurrency",
            format!(
                "must be between 1 and {MAX_CONCURRENCY}, got {}",
                self.max_concurrency
            ),
        );
        check(
            self.max_response_bytes > 0,
            "max_response_bytes",
            "must be at least 1".into(),
        );
        check(
            self.max_table_elements > 0,
            "max_table_elements",
            "must be at least 1".into(),
        );
        problems
    }

    /// The call deadline as a `Duration`.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    /// The initialize deadline.
    pub fn init_timeout(&self) -> Duration {
        Duration::from_millis(self.init_timeout_ms)
    }
    /// The dispose deadline.
    pub fn dispose_timeout(&self) -> Duration {
        Duration::from_millis(self.dispose_timeout_ms)
    }
    /// The queue wait.
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }
    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize).saturating_mul(1024 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Limits::default().validate().is_empty());
    }

    #[test]
    fn every_problem_is_listed() {
        let l = Limits {
            fuel: 0,
            memory_mib: 0,
            max_concurrency: 0,
            ..Limits::default()
        };
        let p = l.validate();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[1].starts_with("memory_mib:"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<Limits>(r#"{"memory_mb": 3}"#).unwrap_err();
        assert!(err.to_string().contains("memory_mb"));
    }
}
