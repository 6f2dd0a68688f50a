//! What routes do with their targets: every attempt by outcome
//! (`tamma_route_attempts_total{route,target,outcome}`) and every retry
//! (`tamma_route_retries_total{route,target}`). Only requests that name a route
//! are counted; the label values come from the configuration, never from a
//! client.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::labels::Value;

/// What became of one attempt.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// It answered (a whole answer, or a stream's first chunk).
    Success,
    /// It failed and the same target is tried again.
    Retry,
    /// It failed and the next target is tried.
    Fallback,
    /// It was refused at once (open circuit, stopped, not registered) and the
    /// next target is tried.
    Skipped,
    /// It failed and the client got the error.
    Failed,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Retry => "retry",
            Outcome::Fallback => "fallback",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Labels of `tamma_route_attempts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Attempt {
    /// The route's name.
    pub route: Value,
    /// `provider/model`.
    pub target: Value,
    /// What became of it.
    pub outcome: Outcome,
}

/// Labels of `tamma_route_retries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteTarget {
    /// The route's name.
    pub route: Value,
    /// `provider/model`.
    pub target: Value,
}

/// The route families.
pub struct RouteMetrics {
    attempts: Family<Attempt, Counter>,
    retries: Family<RouteTarget, Counter>,
}

impl RouteMetrics {
    /// Create the families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let attempts = Family::<Attempt, Counter>::default();
        registry.register(
            "tamma_route_attempts",
            "Provider calls made for requests naming a route, by route, target and outcome (success, retry, fallback, skipped, failed)",
            attempts.clone(),
        );
        let retries = Family::<RouteTarget, Counter>::default();
        registry.register(
            "tamma_route_retries",
            "Times a route tried the same target again after a provider failure",
            retries.clone(),
        );
        RouteMetrics { attempts, retries }
    }

    /// One attempt of `route` on `target`.
    pub fn attempt(&self, route: &str, target: &str, outcome: Outcome) {
        self.attempts
            .get_or_create(&Attempt {
                route: route.into(),
                target: target.into(),
                outcome,
            })
            .inc();
    }

    /// One retry of `route` on `target`.
    pub fn retry(&self, route: &str, target: &str) {
        self.retries
            .get_or_create(&RouteTarget {
                route: route.into(),
                target: target.into(),
            })
            .inc();
    }
}
