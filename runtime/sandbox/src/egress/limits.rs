//! Per-provider limits on outbound HTTP (the `egress_limits` of a provider's
//! configuration), their defaults and their validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Per-provider limits on outbound HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct EgressLimits {
    /// TCP connect plus TLS handshake, milliseconds. Default 10 000.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_EGRESS_TIMEOUT_MS)))]
    pub connect_timeout_ms: u64,
    /// From sending the request to receiving the response headers (connecting
    /// included), milliseconds. Default 60 000.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_EGRESS_TIMEOUT_MS)))]
    pub first_byte_timeout_ms: u64,
    /// From sending the request to the end of the response body, milliseconds.
    /// Default 300 000.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_EGRESS_TIMEOUT_MS)))]
    pub total_timeout_ms: u64,
    /// Largest response body, bytes; past it the body stream fails with
    /// `HttpResponseBodySize`. Default 32 MiB.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_RESPONSE_BODY_BYTES)))]
    pub max_response_body_bytes: u64,
    /// Requests of this provider in flight at once (until each response body ends
    /// or is dropped); past it a request fails with `ConnectionLimitReached`.
    /// Default 16.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_CONCURRENT_REQUESTS)))]
    pub max_concurrent_requests: u32,
}

/// Largest accepted `max_concurrent_requests`.
pub const MAX_CONCURRENT_REQUESTS: u32 = 4096;
/// Largest accepted `max_response_body_bytes` (4 GiB).
pub const MAX_RESPONSE_BODY_BYTES: u64 = 4 << 30;
/// Longest accepted egress timeout (each of the three): one hour.
pub const MAX_EGRESS_TIMEOUT_MS: u64 = 3_600_000;

/// Every field's accepted range, `(field, min, max)`: what
/// [`EgressLimits::validate`] checks and the JSON Schema says.
pub const BOUNDS: &[(&str, u64, u64)] = &[
    ("connect_timeout_ms", 1, MAX_EGRESS_TIMEOUT_MS),
    ("first_byte_timeout_ms", 1, MAX_EGRESS_TIMEOUT_MS),
    ("total_timeout_ms", 1, MAX_EGRESS_TIMEOUT_MS),
    ("max_response_body_bytes", 1, MAX_RESPONSE_BODY_BYTES),
    ("max_concurrent_requests", 1, MAX_CONCURRENT_REQUESTS as u64),
];

impl Default for EgressLimits {
    fn default() -> Self {
        EgressLimits {
            connect_timeout_ms: 10_000,
            first_byte_timeout_ms: 60_000,
            total_timeout_ms: 300_000,
            max_response_body_bytes: 32 * 1024 * 1024,
            max_concurrent_requests: 16,
        }
    }
}

impl EgressLimits {
    /// Every problem with these limits, as `field: reason` lines (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut problems: Vec<String> = BOUNDS
            .iter()
            .filter_map(|&(field, min, max)| {
                let v = match field {
                    "connect_timeout_ms" => self.connect_timeout_ms,
                    "first_byte_timeout_ms" => self.first_byte_timeout_ms,
                    "total_timeout_ms" => self.total_timeout_ms,
                    "max_response_body_bytes" => self.max_response_body_bytes,
                    _ => self.max_concurrent_requests.into(),
                };
                (!(min..=max).contains(&v))
                    .then(|| format!("{field}: must be between {min} and {max}, got {v}"))
            })
            .collect();
        let mut check = |ok: bool, field: &str, why: String| {
            if !ok {
                problems.push(format!("{field}: {why}"));
            }
        };
        // The first-byte timeout includes connecting, and the total includes both:
        // a larger inner timeout could never fire.
        check(
            self.connect_timeout_ms <= self.first_byte_timeout_ms,
            "connect_timeout_ms",
            format!(
                "must not exceed first_byte_timeout_ms ({}), got {}",
                self.first_byte_timeout_ms, self.connect_timeout_ms
            ),
        );
        check(
            self.first_byte_timeout_ms <= self.total_timeout_ms,
            "first_byte_timeout_ms",
            format!(
                "must not exceed total_timeout_ms ({}), got {}",
                self.total_timeout_ms, self.first_byte_timeout_ms
            ),
        );
        problems
    }

    /// [`EgressLimits::connect_timeout_ms`] as a duration.
    pub(super) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// [`EgressLimits::first_byte_timeout_ms`] as a duration.
    pub(super) fn first_byte_timeout(&self) -> Duration {
        Duration::from_millis(self.first_byte_timeout_ms)
    }

    /// [`EgressLimits::total_timeout_ms`] as a duration.
    pub(super) fn total_timeout(&self) -> Duration {
        Duration::from_millis(self.total_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_defaults_and_validation() {
        let d = EgressLimits::default();
        assert_eq!(d.connect_timeout_ms, 10_000);
        assert_eq!(d.first_byte_timeout_ms, 60_000);
        assert_eq!(d.total_timeout_ms, 300_000);
        assert_eq!(d.max_response_body_bytes, 32 << 20);
        assert_eq!(d.max_concurrent_requests, 16);
        assert!(d.validate().is_empty());
        let bad = EgressLimits {
            connect_timeout_ms: 0,
            first_byte_timeout_ms: 400_000,
            total_timeout_ms: 300_000,
            max_response_body_bytes: 0,
            max_concurrent_requests: 0,
        };
        let problems = bad.validate();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        let parsed: EgressLimits = serde_json::from_str(r#"{"total_timeout_ms": 5}"#).unwrap();
        assert_eq!(parsed.total_timeout_ms, 5);
        assert_eq!(parsed.connect_timeout_ms, 10_000);
        assert!(serde_json::from_str::<EgressLimits>(r#"{"nope": 1}"#).is_err());
        let huge = EgressLimits {
            connect_timeout_ms: u64::MAX,
            first_byte_timeout_ms: u64::MAX,
            total_timeout_ms: u64::MAX,
            ..EgressLimits::default()
        };
        let problems = huge.validate();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with("connect_timeout_ms: must be between 1 and 3600000"));
    }
}
