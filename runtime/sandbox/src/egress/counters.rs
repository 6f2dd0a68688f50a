//! Egress counters: why requests were refused, and per-provider tallies of
//! sent, failed and refused requests (read by the metrics and admin API).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// No allowed-host entry matches (or the request is malformed / `CONNECT`).
    NotAllowed,
    /// Every address the host resolved to is internal and not explicitly granted.
    AddressProhibited,
    /// A header names a secret the provider does not have (or is malformed).
    UnknownSecret,
    /// The provider already has `max_concurrent_requests` in flight.
    Concurrency,
    /// A header names a secret bound to other hosts than the request's.
    SecretHost,
}

impl RefusalReason {
    /// The reason as words, for the refusal log.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RefusalReason::NotAllowed => "host not allowed",
            RefusalReason::AddressProhibited => "address prohibited",
            RefusalReason::UnknownSecret => "unknown secret",
            RefusalReason::Concurrency => "concurrency limit",
            RefusalReason::SecretHost => "secret bound to another host",
        }
    }
}

/// A snapshot of a provider's egress counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EgressCounters {
    /// Requests that passed every check and were handed to the connection pool.
    pub sent: u64,
    /// Requests that passed the allowlist but failed before a response: name
    /// resolution, connect, TLS, timeout, protocol error.
    pub failed: u64,
    /// Refused: no allowed-host entry matched.
    pub refused_not_allowed: u64,
    /// Refused: resolved only to prohibited addresses.
    pub refused_address_prohibited: u64,
    /// Refused: unknown or malformed secret placeholder.
    pub refused_unknown_secret: u64,
    /// Refused: concurrency limit reached.
    pub refused_concurrency: u64,
    /// Refused: a secret bound to other hosts.
    pub refused_secret_host: u64,
}

impl EgressCounters {
    /// Requests refused, all reasons together.
    pub(super) fn refused(&self) -> u64 {
        self.refused_not_allowed
            + self.refused_address_prohibited
            + self.refused_unknown_secret
            + self.refused_concurrency
            + self.refused_secret_host
    }
}

/// The live counters of one policy, shared by all its clones. Relaxed ordering:
/// each is an independent tally, read only for reporting.
#[derive(Default)]
pub(super) struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    not_allowed: AtomicU64,
    address_prohibited: AtomicU64,
    unknown_secret: AtomicU64,
    concurrency: AtomicU64,
    secret_host: AtomicU64,
}

impl Counters {
    /// Count a request handed to the connection pool.
    pub(super) fn record_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an allowed request that failed before a response.
    pub(super) fn record_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a refusal.
    pub(super) fn record_refused(&self, reason: RefusalReason) {
        let counter = match reason {
            RefusalReason::NotAllowed => &self.not_allowed,
            RefusalReason::AddressProhibited => &self.address_prohibited,
            RefusalReason::UnknownSecret => &self.unknown_secret,
            RefusalReason::Concurrency => &self.concurrency,
            RefusalReason::SecretHost => &self.secret_host,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub(super) fn snapshot(&self) -> EgressCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EgressCounters {
            sent: get(&self.sent),
            failed: get(&self.failed),
            refused_not_allowed: get(&self.not_allowed),
            refused_address_prohibited: get(&self.address_prohibited),
            refused_unknown_secret: get(&self.unknown_secret),
            refused_concurrency: get(&self.concurrency),
            refused_secret_host: get(&self.secret_host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_own_counter() {
        let c = Counters::default();
        c.record_sent();
        c.record_failed();
        c.record_failed();
        for reason in [
            RefusalReason::NotAllowed,
            RefusalReason::AddressProhibited,
            RefusalReason::AddressProhibited,
            RefusalReason::UnknownSecret,
            RefusalReason::Concurrency,
            RefusalReason::SecretHost,
        ] {
            c.record_refused(reason);
        }
        let s = c.snapshot();
        assert_eq!(
            s,
            EgressCounters {
                sent: 1,
                failed: 2,
                refused_not_allowed: 1,
                refused_address_prohibited: 2,
                refused_unknown_secret: 1,
                refused_concurrency: 1,
                refused_secret_host: 1,
            }
        );
        assert_eq!(s.refused(), 6);
    }
}
