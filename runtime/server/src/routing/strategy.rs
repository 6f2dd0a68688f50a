//! Which target of a route a request tries first. The strategy picks one; the
//! others follow in the route's order. A target whose circuit is open is never
//! picked first (it stays in the list: when every other target fails, it is
//! asked last and answers at once).

use std::time::Duration;

use crate::config::RouteStrategy;

/// Share of `latency` requests sent to a target other than the fastest, so
/// that a target which got faster (or recovered) is noticed.
pub const EXPLORE_SHARE: f64 = 0.05;

/// What the strategy knows of one target when a request arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// Its circuit is open.
    pub open: bool,
    /// Calls running or queued on its pool.
    pub in_flight: u64,
    /// Moving average of its recent successful latency; `None` before any.
    pub latency: Option<Duration>,
}

/// The first target to try, by `strategy`; `None` keeps the route's order.
/// `weights` has one entry per target or is empty (equal weights); `rng`
/// breaks ties and draws the random picks.
pub fn first(
    strategy: RouteStrategy,
    weights: &[u32],
    probes: &[Probe],
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let eligible = |i: usize| !probes[i].open;
    match strategy {
        RouteStrategy::Ordered => None,
        RouteStrategy::Weighted => {
            let weight = |i: usize| {
                if eligible(i) {
                    u64::from(weights.get(i).copied().unwrap_or(1))
                } else {
                    0
                }
            };
            let total: u64 = (0..probes.len()).map(weight).sum();
            if total == 0 {
                return None;
            }
            let mut r = rng.u64(0..total);
            (0..probes.len()).find(|&i| {
                let w = weight(i);
                if r < w {
                    true
                } else {
                    r -= w;
                    false
                }
            })
        }
        RouteStrategy::LeastBusy => lowest(probes.len(), eligible, |i| probes[i].in_flight, rng),
        RouteStrategy::Latency => {
            // Unmeasured targets rank first, so that each is measured once.
            let key = |i: usize| probes[i].latency.map_or(0, |d| d.as_micros().max(1));
            let best = lowest(probes.len(), eligible, key, rng)?;
            if rng.f64() < EXPLORE_SHARE {
                let others: Vec<usize> = (0..probes.len())
                    .filter(|&i| i != best && eligible(i))
                    .collect();
                if !others.is_empty() {
                    return Some(others[rng.usize(0..others.len())]);
                }
            }
            Some(best)
        }
    }
}

/// The eligible index with the lowest key, ties broken at random (so that equal
/// targets share the load instead of the first taking it all).
fn lowest<K: Ord + Copy>(
    n: usize,
    eligible: impl Fn(usize) -> bool,
    key: impl Fn(usize) -> K,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let min = (0..n).filter(|&i| eligible(i)).map(&key).min()?;
    let tied: Vec<usize> = (0..n).filter(|&i| eligible(i) && key(i) == min).collect();
    match tied.len() {
        1 => Some(tied[0]),
        len => Some(tied[rng.usize(0..len)]),
    }
}

/// The order to try the targets in: `first`, then the others in route order,
/// those whose circuit is open last (they answer at once, so they only cost
/// anything when every other target failed).
pub fn order(probes: &[Probe], first: Option<usize>) -> Vec<usize> {
    let n = probes.len();
    let first = first.filter(|f| *f < n);
    let rest = |open: bool| (0..n).filter(move |&i| Some(i) != first && probes[i].open == open);
    first
        .into_iter()
        .chain(rest(false))
        .chain(rest(true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(strategy: RouteStrategy, weights: &[u32], probes: &[Probe], n: usize) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = vec![0usize; probes.len()];
        for _ in 0..n {
            counts[first(strategy, weights, probes, &mut rng).unwrap()] += 1;
        }
        counts.iter().map(|c| *c as f64 / n as f64).collect()
    }

    #[test]
    fn weighted_picks_follow_the_weights_and_skip_open_circuits() {
        let closed = [Probe::default(); 3];
        let got = shares(RouteStrategy::Weighted, &[3, 1, 1], &closed, 10_000);
        for (share, want) in got.iter().zip([0.6, 0.2, 0.2]) {
            assert!((share - want).abs() < 0.02, "{got:?}");
        }
        let mut open = closed;
        open[0].open = true;
        let got = shares(RouteStrategy::Weighted, &[3, 1, 1], &open, 10_000);
        assert_eq!(got[0], 0.0, "an open circuit is never first: {got:?}");
        assert!((got[1] - 0.5).abs() < 0.02, "{got:?}");
        // A weight of 0 is a fallback only; no weights means equal ones.
        let got = shares(RouteStrategy::Weighted, &[0, 1, 1], &closed, 1_000);
        assert_eq!(got[0], 0.0);
        let got = shares(RouteStrategy::Weighted, &[], &closed, 9_000);
        assert!(got.iter().all(|s| (s - 1.0 / 3.0).abs() < 0.02), "{got:?}");
        // Every circuit open: the route's order stands.
        let all_open = [Probe {
            open: true,
            ..Probe::default()
        }; 3];
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(
            first(RouteStrategy::Weighted, &[3, 1, 1], &all_open, &mut rng),
            None
        );
        assert_eq!(order(&closed, Some(2)), [2, 0, 1]);
        assert_eq!(order(&closed, None), [0, 1, 2]);
        assert_eq!(order(&open, Some(2)), [2, 1, 0], "open circuits last");
        assert_eq!(order(&all_open, None), [0, 1, 2]);
    }

    #[test]
    fn least_busy_takes_the_fewest_in_flight_and_shares_ties() {
        let p = |in_flight, open| Probe {
            in_flight,
            open,
            latency: None,
        };
        let got = shares(
            RouteStrategy::LeastBusy,
            &[],
            &[p(4, false), p(1, false), p(0, true)],
            100,
        );
        assert_eq!(got, [0.0, 1.0, 0.0]);
        let got = shares(
            RouteStrategy::LeastBusy,
            &[],
            &[p(2, false), p(2, false)],
            2_000,
        );
        assert!((got[0] - 0.5).abs() < 0.05, "{got:?}");
    }

    #[test]
    fn latency_prefers_the_fastest_and_keeps_exploring() {
        let p = |ms: u64| Probe {
            latency: Some(Duration::from_millis(ms)),
            ..Probe::default()
        };
        let got = shares(RouteStrategy::Latency, &[], &[p(300), p(20), p(90)], 10_000);
        assert!((got[1] - (1.0 - EXPLORE_SHARE)).abs() < 0.01, "{got:?}");
        assert!(
            got[0] > 0.01 && got[2] > 0.01,
            "the others are explored: {got:?}"
        );
        // An unmeasured target is tried first; an open one never.
        let got = shares(
            RouteStrategy::Latency,
            &[],
            &[p(300), Probe::default()],
            1_000,
        );
        assert!(got[1] > 0.9, "{got:?}");
        let mut fast_open = p(1);
        fast_open.open = true;
        let got = shares(RouteStrategy::Latency, &[], &[p(300), fast_open], 1_000);
        assert_eq!(got, [1.0, 0.0]);
    }
}
