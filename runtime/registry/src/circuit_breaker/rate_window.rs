//! Calls and failures over a sliding time window, for the breaker's
//! failure-rate mode.
//!
//! The window is cut into [`BUCKETS`] buckets of `period / BUCKETS`; a call lands
//! in the bucket of its time, and the totals sum the buckets still inside the
//! window. Memory is fixed whatever the traffic (at 10 000 calls/s a list of
//! call times would hold 600 000 entries for a one-minute window); the price is
//! that the window's edge moves in steps of one bucket, which is what
//! resilience4j's time-based window does too.
//!
//! Hand-written: a ring of ten counters is smaller than any crate's API for it.

use std::time::{Duration, Instant};

/// Buckets per window.
pub(super) const BUCKETS: usize = 10;

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket-width slice of time since `origin` this bucket counts.
    slice: u64,
    calls: u64,
    failures: u64,
}

/// Calls and failures of the last `period`.
#[derive(Debug)]
pub(super) struct RateWindow {
    buckets: [Bucket; BUCKETS],
    width: Duration,
    origin: Instant,
}

impl RateWindow {
    pub(super) fn new(period: Duration, origin: Instant) -> Self {
        // At least 1 ms per bucket, so a tiny period cannot divide by zero.
        let width = (period / BUCKETS as u32).max(Duration::from_millis(1));
        RateWindow {
            buckets: [Bucket::default(); BUCKETS],
            width,
            origin,
        }
    }

    fn slice(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / self.width.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Count one finished call.
    pub(super) fn record(&mut self, now: Instant, failed: bool) {
        let slice = self.slice(now);
        let b = &mut self.buckets[(slice % BUCKETS as u64) as usize];
        if b.slice != slice || (b.calls == 0 && b.failures == 0) {
            *b = Bucket {
                slice,
                calls: 0,
                failures: 0,
            };
        }
        b.calls += 1;
        b.failures += u64::from(failed);
    }

    /// `(calls, failures)` inside the window at `now`.
    pub(super) fn totals(&self, now: Instant) -> (u64, u64) {
        let current = self.slice(now);
        self.buckets
            .iter()
            .filter(|b| current.saturating_sub(b.slice) < BUCKETS as u64 && b.slice <= current)
            .fold((0, 0), |(c, f), b| (c + b.calls, f + b.failures))
    }

    /// Forget everything (the breaker closed or was reset).
    pub(super) fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_inside_the_window_and_forgets_outside_it() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(Duration::from_secs(10), t0);
        for i in 0..10u64 {
            w.record(t0 + Duration::from_millis(i * 100), i % 2 == 0);
        }
        assert_eq!(w.totals(t0 + Duration::from_secs(1)), (10, 5));
        // 9.5 s later the first bucket (0–1 s) is still inside a 10 s window...
        assert_eq!(w.totals(t0 + Duration::from_millis(9_500)), (10, 5));
        // ...and gone once its slice is ten buckets old.
        assert_eq!(w.totals(t0 + Duration::from_secs(10)), (0, 0));
        // A bucket reused after the window wrapped starts from zero.
        w.record(t0 + Duration::from_secs(10), true);
        assert_eq!(w.totals(t0 + Duration::from_secs(10)), (1, 1));
        w.clear();
        assert_eq!(w.totals(t0 + Duration::from_secs(10)), (0, 0));
    }
}
