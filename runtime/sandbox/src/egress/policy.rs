//! The policy: one provider's allowed hosts, secrets, limits, resolver,
//! concurrency budget and counters, built (and validated) from its
//! configuration. The checks themselves run in the send hook.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use http::header::HeaderValue;
use tokio::sync::Semaphore;

use super::allowlist::{parse_allowed_hosts, AllowedHost};
use super::config_error::EgressConfigError;
use super::counters::{Counters, EgressCounters};
use super::dns::CachingResolver;
use super::limits::{EgressLimits, MAX_CONCURRENT_REQUESTS};
use super::resolver::Resolver;
use super::secrets::{valid_secret_name, Secret};

/// A provider's egress policy: allowed hosts, the secrets the host substitutes
/// into its requests, limits, and counters. Cheap to clone; clones share the
/// counters and the concurrency budget (one policy per provider, shared by all
/// its instances).
#[derive(Clone)]
pub struct EgressPolicy {
    pub(super) inner: Arc<PolicyInner>,
}

/// What clones of one [`EgressPolicy`] share.
pub(super) struct PolicyInner {
    /// The entries as configured (for display; `rules` is what is enforced).
    pub(super) allowed_hosts: Vec<String>,
    /// The entries that parsed.
    pub(super) rules: Vec<AllowedHost>,
    /// Secrets by name, for placeholder substitution.
    pub(super) secrets: BTreeMap<String, Secret>,
    /// Timeouts, body cap and concurrency.
    pub(super) limits: EgressLimits,
    /// How host names become addresses (each then checked).
    pub(super) resolver: Arc<dyn Resolver>,
    /// One permit per request in flight, `max_concurrent_requests` in all.
    pub(super) in_flight: Arc<Semaphore>,
    /// Sent, failed and refused tallies.
    pub(super) counters: Counters,
}

impl Default for EgressPolicy {
    /// Deny everything.
    fn default() -> Self {
        EgressPolicy::new(Vec::new(), BTreeMap::new())
    }
}

impl EgressPolicy {
    /// A policy allowing `allowed_hosts` (syntax in the module docs), with named
    /// secrets and default [`EgressLimits`]. Lenient: a malformed entry grants
    /// nothing and is logged; use [`EgressPolicy::try_new`] to reject it instead.
    pub fn new(allowed_hosts: Vec<String>, secrets: BTreeMap<String, String>) -> Self {
        let rules = allowed_hosts
            .iter()
            .filter_map(|entry| match AllowedHost::parse(entry) {
                Ok(rule) => Some(rule),
                Err(why) => {
                    tracing::warn!(target: "tamma::egress", entry = %entry, %why, "ignoring malformed allowed host");
                    None
                }
            })
            .collect();
        Self::build(
            allowed_hosts,
            rules,
            secrets,
            EgressLimits::default(),
            Arc::new(CachingResolver::new()),
        )
    }

    /// A policy with explicit limits; fails listing every malformed entry,
    /// invalid secret name or value (by name), and invalid limit.
    pub fn try_new(
        allowed_hosts: Vec<String>,
        secrets: BTreeMap<String, String>,
        limits: EgressLimits,
    ) -> Result<Self, EgressConfigError> {
        let mut problems = Vec::new();
        let rules = match parse_allowed_hosts(&allowed_hosts) {
            Ok(rules) => rules,
            Err(e) => {
                problems.extend(e.problems);
                Vec::new()
            }
        };
        for (name, value) in &secrets {
            if !valid_secret_name(name) {
                problems.push(format!(
                    "secret {name:?}: names are 1-128 of A-Z a-z 0-9 _ - ."
                ));
            }
            // Never echo the value: say what is wrong with it, not what it is.
            if HeaderValue::from_str(value).is_err() {
                problems.push(format!(
                    "secret {name:?}: value has characters not allowed in an HTTP header"
                ));
            }
        }
        problems.extend(limits.validate().into_iter().map(|p| format!("limits.{p}")));
        if !problems.is_empty() {
            return Err(EgressConfigError { problems });
        }
        Ok(Self::build(
            allowed_hosts,
            rules,
            secrets,
            limits,
            Arc::new(CachingResolver::new()),
        ))
    }

    /// The same policy with secrets bound to hosts: the secret `name` is then
    /// substituted only in requests to one of its entries (allowed-host syntax);
    /// a placeholder bound elsewhere is refused before connecting (counted as
    /// `secret_host`). Secrets not named keep going to any allowed host. Fails
    /// naming every unknown secret, empty list and malformed entry. Counters and
    /// the concurrency budget start afresh: call this while building the policy.
    pub fn with_secret_hosts(
        self,
        bindings: BTreeMap<String, Vec<String>>,
    ) -> Result<Self, EgressConfigError> {
        if bindings.is_empty() {
            return Ok(self);
        }
        let inner = &self.inner;
        let mut secrets = inner.secrets.clone();
        let mut problems = Vec::new();
        for (name, hosts) in bindings {
            let Some(secret) = secrets.get_mut(&name) else {
                problems.push(format!(
                    "secret {name:?}: hosts given for a secret the provider does not have"
                ));
                continue;
            };
            if hosts.is_empty() {
                problems.push(format!(
                    "secret {name:?}: hosts must name at least one host"
                ));
                continue;
            }
            match parse_allowed_hosts(&hosts) {
                Ok(rules) => *secret = secret.clone().bound_to(rules, hosts),
                Err(e) => problems.extend(
                    e.problems
                        .into_iter()
                        .map(|p| format!("secret {name:?}: hosts: {p}")),
                ),
            }
        }
        if !problems.is_empty() {
            return Err(EgressConfigError { problems });
        }
        Ok(EgressPolicy {
            inner: Arc::new(PolicyInner {
                allowed_hosts: inner.allowed_hosts.clone(),
                rules: inner.rules.clone(),
                secrets,
                limits: inner.limits.clone(),
                resolver: inner.resolver.clone(),
                in_flight: Arc::new(Semaphore::new(
                    inner.limits.max_concurrent_requests as usize,
                )),
                counters: Counters::default(),
            }),
        })
    }

    /// The same policy resolving names with `resolver`. Counters and the
    /// concurrency budget start afresh: call this while building the policy.
    pub fn with_resolver(self, resolver: Arc<dyn Resolver>) -> Self {
        let inner = &self.inner;
        EgressPolicy {
            inner: Arc::new(PolicyInner {
                allowed_hosts: inner.allowed_hosts.clone(),
                rules: inner.rules.clone(),
                secrets: inner.secrets.clone(),
                limits: inner.limits.clone(),
                resolver,
                in_flight: Arc::new(Semaphore::new(
                    inner.limits.max_concurrent_requests as usize,
                )),
                counters: Counters::default(),
            }),
        }
    }

    fn build(
        allowed_hosts: Vec<String>,
        rules: Vec<AllowedHost>,
        secrets: BTreeMap<String, String>,
        limits: EgressLimits,
        resolver: Arc<dyn Resolver>,
    ) -> Self {
        // `new` cannot fail; clamp so a zero never wedges every request.
        let permits = limits
            .max_concurrent_requests
            .clamp(1, MAX_CONCURRENT_REQUESTS) as usize;
        EgressPolicy {
            inner: Arc::new(PolicyInner {
                allowed_hosts,
                rules,
                secrets: secrets
                    .into_iter()
                    .map(|(k, v)| (k, Secret::new(v)))
                    .collect(),
                limits,
                resolver,
                in_flight: Arc::new(Semaphore::new(permits)),
                counters: Counters::default(),
            }),
        }
    }

    /// The allowed hosts, as given.
    pub fn allowed_hosts(&self) -> &[String] {
        &self.inner.allowed_hosts
    }

    /// Names of the secrets (never their values).
    pub fn secret_names(&self) -> Vec<&str> {
        self.inner.secrets.keys().map(String::as_str).collect()
    }

    /// The hosts each secret bound to hosts may be sent to (names and host
    /// entries only, never values).
    pub fn secret_hosts(&self) -> BTreeMap<&str, &[String]> {
        self.inner
            .secrets
            .iter()
            .filter_map(|(name, s)| Some((name.as_str(), s.hosts()?)))
            .collect()
    }

    /// The limits.
    pub fn limits(&self) -> &EgressLimits {
        &self.inner.limits
    }

    /// Requests refused so far, all reasons together.
    pub fn refused(&self) -> u64 {
        self.counters().refused()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> EgressCounters {
        self.inner.counters.snapshot()
    }
}

impl fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressPolicy")
            .field("allowed_hosts", &self.inner.allowed_hosts)
            .field("secrets", &self.secret_names())
            .field("limits", &self.inner.limits)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_constructor_drops_malformed_entries() {
        let mixed = vec!["https://ok.example.com".to_string(), "nope".to_string()];
        // Nothing is granted by a bad entry, but it is still shown as configured.
        let p = EgressPolicy::new(mixed.clone(), BTreeMap::new());
        assert_eq!(p.inner.rules.len(), 1);
        assert_eq!(p.allowed_hosts(), mixed);
        // The strict one refuses it.
        let err =
            EgressPolicy::try_new(mixed, BTreeMap::new(), EgressLimits::default()).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
    }

    #[test]
    fn secrets_are_named_but_never_shown() {
        let policy = EgressPolicy::new(vec![], [("api_key".into(), "sk-123".into())].into());
        let debug = format!("{policy:?}");
        assert!(
            debug.contains("api_key") && !debug.contains("sk-123"),
            "{debug}"
        );
        assert_eq!(policy.secret_names(), ["api_key"]);

        // Config errors name the secret, never the value.
        let err = EgressPolicy::try_new(
            vec![],
            [("bad name".into(), "sk-\n123".into())].into(),
            EgressLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(!err.to_string().contains("sk-"), "{err}");
    }

    #[test]
    fn limits_are_validated_and_zero_concurrency_never_wedges() {
        let limits = EgressLimits {
            max_concurrent_requests: 0,
            ..EgressLimits::default()
        };
        let err = EgressPolicy::try_new(vec![], BTreeMap::new(), limits.clone()).unwrap_err();
        assert_eq!(
            err.problems,
            ["limits.max_concurrent_requests: must be between 1 and 4096, got 0"]
        );
        // `build` (behind the infallible constructors) clamps instead.
        let p = EgressPolicy::build(
            vec![],
            vec![],
            BTreeMap::new(),
            limits,
            Arc::new(CachingResolver::new()),
        );
        assert_eq!(p.inner.in_flight.available_permits(), 1);
    }
}
