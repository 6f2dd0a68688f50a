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
    /// Fuel (roughly: wasm instructions) each guest call may burn. Default 5e9;
    /// at most 10^14, more than the longest call deadline can burn.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_FUEL)))]
    pub fuel: u64,
    /// Linear memory cap per instance, MiB. Default 128.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_MEMORY_MIB)))]
    pub memory_mib: u64,
    /// Wall-clock deadline of one guest call (each `next()` of a stream counts as one
    /// call), milliseconds. Default 60 000.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_TIMEOUT_MS)))]
    pub timeout_ms: u64,
    /// Deadline of `initialize`, milliseconds. Default 10 000.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_PHASE_TIMEOUT_MS)))]
    pub init_timeout_ms: u64,
    /// Deadline of `dispose`, milliseconds. Default 2 000.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_PHASE_TIMEOUT_MS)))]
    pub dispose_timeout_ms: u64,
    /// Instances of this provider that may run at once. Default 4.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_CONCURRENCY)))]
    pub max_concurrency: u32,
    /// How long a call waits for a free instance before `OVERLOADED`, milliseconds.
    /// Default 5 000.
    #[cfg_attr(feature = "schema", schemars(range(max = MAX_PHASE_TIMEOUT_MS)))]
    pub queue_timeout_ms: u64,
    /// Largest answer (a whole response, or a stream's total), bytes. Default 4 MiB.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_RESPONSE_BYTES)))]
    pub max_response_bytes: u64,
    /// Log bytes (messages plus fields, and stderr) one call may write. Default 64 KiB.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_LOG_BYTES_PER_CALL)))]
    pub max_log_bytes_per_call: u64,
    /// Log records one call may write. Default 1 000.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_LOG_RECORDS_PER_CALL)))]
    pub max_log_records_per_call: u32,
    /// Table elements per table. Default 20 000.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_TABLE_ELEMENTS)))]
    pub max_table_elements: u32,
    /// Calls an instance serves before it is replaced by a fresh one (0: no
    /// limit, the default). Like wasmCloud's `max_invocations`: a guest that
    /// leaks a little on every call is recycled before it reaches its memory cap
    /// and fails a request. A whole stream counts as one call.
    #[cfg_attr(feature = "schema", schemars(range(max = MAX_CALLS_PER_INSTANCE)))]
    pub max_calls_per_instance: u64,
}

/// Largest accepted `fuel` (10^14): a guest burns a few 10^9 a second at most,
/// so even an hour-long call (`MAX_TIMEOUT_MS`) is stopped by its deadline
/// first; a larger value is nonsense (or `u64::MAX` meaning "off", which fuel
/// never is).
pub const MAX_FUEL: u64 = 100_000_000_000_000;
/// Smallest and largest accepted values, shared by validation and docs.
pub const MAX_MEMORY_MIB: u64 = 4096;
/// Largest accepted `max_concurrency`.
pub const MAX_CONCURRENCY: u32 = 1024;
/// Longest accepted call deadline (`timeout_ms`): one hour.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Longest accepted `init_timeout_ms`, `dispose_timeout_ms` and
/// `queue_timeout_ms`: ten minutes.
pub const MAX_PHASE_TIMEOUT_MS: u64 = 600_000;
/// Largest accepted `max_response_bytes` (1 GiB).
pub const MAX_RESPONSE_BYTES: u64 = 1 << 30;
/// Largest accepted `max_log_bytes_per_call` (16 MiB).
pub const MAX_LOG_BYTES_PER_CALL: u64 = 16 << 20;
/// Largest accepted `max_log_records_per_call`.
pub const MAX_LOG_RECORDS_PER_CALL: u32 = 1_000_000;
/// Largest accepted `max_table_elements`.
pub const MAX_TABLE_ELEMENTS: u32 = 10_000_000;

/// Largest accepted `max_calls_per_instance` (10^12).
pub const MAX_CALLS_PER_INSTANCE: u64 = 1_000_000_000_000;

/// Every field's accepted range, `(field, min, max)`: what [`Limits::validate`]
/// checks and the JSON Schema says (`minimum` / `maximum`). A `max_log_*` of 0
/// would make every log call trap, so they start at 1 too; `queue_timeout_ms` may
/// be 0 (refuse at once when every instance is busy).
pub const BOUNDS: &[(&str, u64, u64)] = &[
    ("fuel", 1, MAX_FUEL),
    ("memory_mib", 1, MAX_MEMORY_MIB),
    ("timeout_ms", 1, MAX_TIMEOUT_MS),
    ("init_timeout_ms", 1, MAX_PHASE_TIMEOUT_MS),
    ("dispose_timeout_ms", 1, MAX_PHASE_TIMEOUT_MS),
    ("max_concurrency", 1, MAX_CONCURRENCY as u64),
    ("queue_timeout_ms", 0, MAX_PHASE_TIMEOUT_MS),
    ("max_response_bytes", 1, MAX_RESPONSE_BYTES),
    ("max_log_bytes_per_call", 1, MAX_LOG_BYTES_PER_CALL),
    (
        "max_log_records_per_call",
        1,
        MAX_LOG_RECORDS_PER_CALL as u64,
    ),
    ("max_table_elements", 1, MAX_TABLE_ELEMENTS as u64),
    ("max_calls_per_instance", 0, MAX_CALLS_PER_INSTANCE),
];

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
            max_calls_per_instance: 0,
        }
    }
}

impl Limits {
    /// Every problem with these limits, as `field: reason` lines (empty when valid).
    /// Each field has an upper bound (see [`BOUNDS`]) so that nonsense such as
    /// `u64::MAX` is caught by `tamma validate`, not discovered at run time.
    pub fn validate(&self) -> Vec<String> {
        let value = |field: &str| -> u64 {
            match field {
                "fuel" => self.fuel,
                "memory_mib" => self.memory_mib,
                "timeout_ms" => self.timeout_ms,
                "init_timeout_ms" => self.init_timeout_ms,
                "dispose_timeout_ms" => self.dispose_timeout_ms,
                "max_concurrency" => self.max_concurrency.into(),
                "queue_timeout_ms" => self.queue_timeout_ms,
                "max_response_bytes" => self.max_response_bytes,
                "max_log_bytes_per_call" => self.max_log_bytes_per_call,
                "max_log_records_per_call" => self.max_log_records_per_call.into(),
                "max_table_elements" => self.max_table_elements.into(),
                _ => self.max_calls_per_instance,
            }
        };
        BOUNDS
            .iter()
            .filter_map(|&(field, min, max)| {
                let v = value(field);
                (!(min..=max).contains(&v))
                    .then(|| format!("{field}: must be between {min} and {max}, got {v}"))
            })
            .collect()
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
            fuel: MAX_FUEL + 1,
            memory_mib: 0,
            max_concurrency: 0,
            ..Limits::default()
        };
        let p = l.validate();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[1].starts_with("memory_mib:"));
    }

    #[test]
    fn log_caps_and_huge_values_are_refused() {
        let l = Limits {
            max_log_bytes_per_call: 0,
            max_log_records_per_call: 0,
            timeout_ms: u64::MAX,
            init_timeout_ms: u64::MAX,
            dispose_timeout_ms: u64::MAX,
            queue_timeout_ms: u64::MAX,
            max_response_bytes: u64::MAX,
            max_table_elements: u32::MAX,
            ..Limits::default()
        };
        let p = l.validate();
        for field in [
            "timeout_ms",
            "init_timeout_ms",
            "dispose_timeout_ms",
            "queue_timeout_ms",
            "max_response_bytes",
            "max_log_bytes_per_call",
            "max_log_records_per_call",
            "max_table_elements",
        ] {
            assert!(
                p.iter()
                    .any(|m| m.starts_with(&format!("{field}: must be between"))),
                "{field}: {p:?}"
            );
        }
        assert_eq!(p.len(), 8, "{p:?}");
        // Zero is a valid queue wait (refuse at once).
        let zero_wait = Limits {
            queue_timeout_ms: 0,
            ..Limits::default()
        };
        assert!(zero_wait.validate().is_empty());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<Limits>(r#"{"memory_mb": 3}"#).unwrap_err();
        assert!(err.to_string().contains("memory_mb"));
    }
}
