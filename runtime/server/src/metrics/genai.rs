//! Model-level families: `tamma_time_to_first_token_seconds{provider,model}`.
//!
//! The `model` label has bounded cardinality: it is a model the provider
//! advertises (its capabilities) or one a configured route names; anything else
//! a client typed is counted as `other`, so a client cannot mint series.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::labels::Value;
use tamma_registry::registry::Registry as ProviderRegistry;

/// Bounds of the time-to-first-token buckets, seconds: fine below a second,
/// where streams start, and up to the longest default deadline (300 s).
pub const TTFT_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The label value for a model no configuration names.
pub const OTHER_MODEL: &str = "other";

/// `{provider, model}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// The provider that answered.
    pub provider: Value,
    /// The model it was asked for (bounded, see the module docs).
    pub model: Value,
}

fn ttft_histogram() -> Histogram {
    Histogram::new(TTFT_BUCKETS)
}

/// The families of this file.
pub struct GenAiMetrics {
    ttft: Family<ModelLabels, Histogram, fn() -> Histogram>,
}

impl GenAiMetrics {
    /// Create the families and register them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let ttft: Family<ModelLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(ttft_histogram);
        registry.register(
            "tamma_time_to_first_token_seconds",
            "Time from a streamed chat request's arrival to its first chunk (fallback included), by provider and model",
            ttft.clone(),
        );
        GenAiMetrics { ttft }
    }

    /// A stream's first chunk arrived `d` after its request.
    pub fn record_time_to_first_token(&self, provider: &str, model: &str, d: Duration) {
        self.ttft
            .get_or_create(&ModelLabels {
                provider: provider.into(),
                model: model.into(),
            })
            .observe(d.as_secs_f64());
    }
}

/// The `model` label for `model` served by `provider`: the model itself when the
/// provider advertises it or a configured route named it (`from_route`), else
/// [`OTHER_MODEL`].
pub fn model_label<'a>(
    providers: &ProviderRegistry,
    provider: &str,
    model: &'a str,
    from_route: bool,
) -> &'a str {
    if from_route {
        return model;
    }
    let advertised = providers
        .get(provider)
        .map(|h| h.capabilities().models.iter().any(|m| m.id == model))
        .unwrap_or(false);
    if advertised {
        model
    } else {
        OTHER_MODEL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode_registry;

    #[test]
    fn time_to_first_token_is_a_histogram_by_provider_and_model() {
        let mut registry = Registry::default();
        let m = GenAiMetrics::register(&mut registry);
        m.record_time_to_first_token("echo", "echo-1", Duration::from_millis(30));
        let mut out = String::new();
        encode_registry(&mut out, &registry).unwrap();
        assert!(
            out.contains(r#"tamma_time_to_first_token_seconds_bucket{le="0.05",provider="echo",model="echo-1"} 1"#)
                || out.contains(r#"tamma_time_to_first_token_seconds_bucket{provider="echo",model="echo-1",le="0.05"} 1"#),
            "{out}"
        );
        assert!(out.contains(r#"le="600.0""#), "{out}");
    }
}
