//! Usage per client key: requests, tokens, refusals, and the limits store's
//! errors. Label values are bounded: key names come from the file, providers
//! from the registry, models from what providers declare or routes name
//! (anything else is `other`), reasons from a fixed list.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::labels::Value;

/// `tamma_key_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyRequest {
    /// The key's name; empty when auth is off or the key was not known.
    pub key: Value,
    /// The provider that answered; empty when none was chosen.
    pub provider: Value,
    /// The model label.
    pub model: Value,
    /// The HTTP status answered.
    pub status: u16,
}

/// `tamma_tokens_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Tokens {
    /// The key's name; empty when auth is off.
    pub key: Value,
    /// The provider that answered.
    pub provider: Value,
    /// The model label.
    pub model: Value,
    /// `input` or `output`.
    pub kind: &'static str,
}

/// `tamma_key_refusals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Refusal {
    /// The key's name; empty for `invalid_api_key`.
    pub key: Value,
    /// `invalid_api_key`, `model_not_allowed`, `rpm`, `tpm`, `concurrency`,
    /// `budget`, `store_unavailable`.
    pub reason: &'static str,
}

/// `tamma_limits_store_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreError {
    /// `admit`, `charge` or `usage`.
    pub op: &'static str,
}

/// The families, registered in the server's registry.
#[derive(Default)]
pub struct KeyMetrics {
    requests: Family<KeyRequest, Counter>,
    tokens: Family<Tokens, Counter>,
    refusals: Family<Refusal, Counter>,
    store_errors: Family<StoreError, Counter>,
}

impl KeyMetrics {
    /// The families, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = KeyMetrics::default();
        registry.register(
            "tamma_key_requests",
            "Requests of the OpenAI API by client key, provider, model and status",
            m.requests.clone(),
        );
        registry.register(
            "tamma_tokens",
            "Tokens charged from the answers' usage, by client key, provider, model and kind (input, output)",
            m.tokens.clone(),
        );
        registry.register(
            "tamma_key_refusals",
            "Requests refused by client auth, model policy or the key's limits, by key and reason",
            m.refusals.clone(),
        );
        registry.register(
            "tamma_limits_store_errors",
            "Limits store calls that failed or timed out, by operation",
            m.store_errors.clone(),
        );
        m
    }

    /// One request answered (its whole body included).
    pub fn record_request(&self, key: &str, provider: &str, model: &str, status: u16) {
        self.requests
            .get_or_create(&KeyRequest {
                key: key.into(),
                provider: provider.into(),
                model: model.into(),
                status,
            })
            .inc();
    }

    /// Tokens charged.
    pub fn record_tokens(&self, key: &str, provider: &str, model: &str, input: u64, output: u64) {
        for (kind, n) in [("input", input), ("output", output)] {
            self.tokens
                .get_or_create(&Tokens {
                    key: key.into(),
                    provider: provider.into(),
                    model: model.into(),
                    kind,
                })
                .inc_by(n);
        }
    }

    /// A refused request.
    pub fn record_refusal(&self, key: &str, reason: &'static str) {
        self.refusals
            .get_or_create(&Refusal {
                key: key.into(),
                reason,
            })
            .inc();
    }

    /// A failed or timed-out store call.
    pub fn record_store_error(&self, op: &'static str) {
        self.store_errors.get_or_create(&StoreError { op }).inc();
    }

    /// Store errors so far, every operation (tests).
    pub fn store_errors(&self) -> u64 {
        ["admit", "charge", "usage"]
            .iter()
            .map(|op| self.store_errors.get_or_create(&StoreError { op }).get())
            .sum()
    }
}
