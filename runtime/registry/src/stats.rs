//! Per-provider call statistics: counts, errors by code and a latency histogram
//! (Prometheus-style cumulative buckets), updated lock-free on every call except
//! for the error map, which is touched only on failures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use tamma_sandbox::error::ErrorCode;

/// Upper bounds of the latency buckets, seconds.
///
/// They reach 600 s: past every default deadline (a call's 60 s, the egress
/// first byte's 60 s and total 300 s), so a call cut off by a timeout still
/// lands in a finite bucket and its quantiles stay readable.
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
];

/// Counters of one provider's calls.
#[derive(Debug, Default)]
pub struct CallStats {
    calls: AtomicU64,
    failures: AtomicU64,
    latency_sum_us: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Moving average of successful call latency, µs; 0 before the first.
    latency_ewma_us: AtomicU64,
}

/// Weight of the newest sample in the moving average: 1/4, so that a few calls
/// are enough to notice a target that slowed down or recovered.
const EWMA_SHIFT: u32 = 2;

/// A point-in-time copy of [`CallStats`].
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CallStatsSnapshot {
    /// Calls finished (successful or not).
    pub calls: u64,
    /// Calls that ended in an error.
    pub failures: u64,
    /// Errors by code.
    pub errors: BTreeMap<String, u64>,
    /// Sum of call latencies, seconds.
    pub latency_sum_seconds: f64,
    /// Calls whose latency was ≤ each bound of [`LATENCY_BUCKETS`] (cumulative).
    pub latency_buckets: Vec<u64>,
}

impl CallStats {
    /// Record a finished call.
    pub fn record(&self, latency: Duration, error: Option<ErrorCode>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(code) = error {
            self.failures.fetch_add(1, Ordering::Relaxed);
            *self
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(code.as_str())
                .or_default() += 1;
        }
    }

    /// Fold a successful call's latency into the moving average.
    pub fn observe_success_latency(&self, latency: Duration) {
        let sample = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = self
            .latency_ewma_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else if sample >= old {
                    old + ((sample - old) >> EWMA_SHIFT)
                } else {
                    (old - ((old - sample) >> EWMA_SHIFT)).max(1)
                })
            });
    }

    /// The moving average of successful call latency; `None` before the first.
    pub fn latency_ewma(&self) -> Option<Duration> {
        match self.latency_ewma_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Copy the counters.
    pub fn snapshot(&self) -> CallStatsSnapshot {
        let mut cumulative = 0;
        let latency_buckets = self
            .buckets
            .iter()
            .map(|b| {
                cumulative += b.load(Ordering::Relaxed);
                cumulative
            })
            .collect();
        CallStatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            errors: self
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            latency_sum_seconds: self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            latency_buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_average_follows_recent_calls() {
        let s = CallStats::default();
        assert_eq!(s.latency_ewma(), None);
        s.observe_success_latency(Duration::from_millis(100));
        assert_eq!(s.latency_ewma(), Some(Duration::from_millis(100)));
        for _ in 0..40 {
            s.observe_success_latency(Duration::from_millis(10));
        }
        let now = s.latency_ewma().unwrap();
        assert!(now < Duration::from_millis(11), "{now:?}");
        s.observe_success_latency(Duration::from_millis(50));
        assert!(s.latency_ewma().unwrap() > now);
    }

    #[test]
    fn buckets_are_cumulative_and_errors_counted_by_code() {
        let s = CallStats::default();
        s.record(Duration::from_micros(300), None);
        s.record(Duration::from_millis(30), Some(ErrorCode::Timeout));
        s.record(Duration::from_secs(120), Some(ErrorCode::Timeout));
        s.record(Duration::from_secs(900), Some(ErrorCode::Timeout));
        let snap = s.snapshot();
        assert_eq!(snap.calls, 4);
        assert_eq!(snap.failures, 3);
        assert_eq!(snap.errors.get("TIMEOUT"), Some(&3));
        assert_eq!(snap.latency_buckets[0], 1);
        assert_eq!(snap.latency_buckets[6], 2, "≤ 50 ms");
        let at_120 = LATENCY_BUCKETS.iter().position(|b| *b == 120.0).unwrap();
        assert_eq!(snap.latency_buckets[at_120], 3, "a 120 s call has a bucket");
        assert_eq!(
            *snap.latency_buckets.last().unwrap(),
            3,
            "900 s is beyond the last bucket (600 s)"
        );
    }
}
