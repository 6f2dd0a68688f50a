//! When to try a target again: full-jitter exponential backoff, the upstream's
//! `retry-after` honoured when it fits, everything within the route's budget.

use std::time::Duration;

use crate::config::RouteRetries;

/// A route's retry settings, as durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries of one target after its first attempt.
    pub attempts: u32,
    /// Shortest backoff.
    pub base: Duration,
    /// Longest backoff.
    pub max: Duration,
    /// No retry wait ends later than this after the request began.
    pub budget: Duration,
}

impl From<&RouteRetries> for RetryPolicy {
    fn from(r: &RouteRetries) -> Self {
        RetryPolicy {
            attempts: r.attempts,
            base: Duration::from_millis(r.base_ms),
            max: Duration::from_millis(r.max_ms.max(r.base_ms)),
            budget: Duration::from_millis(r.budget_ms),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `n` (0 = the first retry): uniform in
    /// `[base, min(max, base * 2^n)]`, `unit` being a uniform draw in `[0, 1)`.
    /// Jitter spreads the retries of many clients hit by the same outage.
    pub fn backoff(&self, n: u32, unit: f64) -> Duration {
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        let spread = ceiling.saturating_sub(self.base);
        self.base + spread.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// How long to wait before retry `n` after a failure, given the upstream's
    /// `retry_after` hint and the time `elapsed` since the request began; `None`
    /// when no retry fits (retries used up, or the wait would end past the
    /// budget): then the next target is tried at once.
    pub fn wait(
        &self,
        n: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
        unit: f64,
    ) -> Option<Duration> {
        if n >= self.attempts {
            return None;
        }
        let wait = retry_after.unwrap_or_else(|| self.backoff(n, unit));
        (elapsed.saturating_add(wait) <= self.budget).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::from(&RouteRetries {
            attempts: 3,
            base_ms: 200,
            max_ms: 2_000,
            budget_ms: 10_000,
        })
    }

    #[test]
    fn backoff_grows_exponentially_within_base_and_max() {
        let p = policy();
        assert_eq!(p.backoff(0, 0.99), Duration::from_millis(200));
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(200));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(400));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(1_600));
        assert_eq!(p.backoff(4, 1.0), Duration::from_millis(2_000), "capped");
        assert_eq!(
            p.backoff(40, 1.0),
            Duration::from_millis(2_000),
            "no overflow"
        );
        let mid = p.backoff(2, 0.5);
        assert!(mid > Duration::from_millis(200) && mid < Duration::from_millis(800));
    }

    #[test]
    fn retry_after_is_honoured_only_within_the_budget() {
        let p = policy();
        let ms = Duration::from_millis;
        assert_eq!(p.wait(0, Some(ms(300)), ms(0), 0.5), Some(ms(300)));
        assert_eq!(p.wait(0, Some(ms(120_000)), ms(0), 0.5), None);
        assert_eq!(p.wait(0, Some(ms(300)), ms(9_800), 0.5), None);
        assert_eq!(p.wait(0, None, ms(0), 0.0), Some(ms(200)));
        assert_eq!(p.wait(3, None, ms(0), 0.0), None, "retries used up");
    }
}
