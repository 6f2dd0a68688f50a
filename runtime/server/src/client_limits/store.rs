//! Where a key's counters live: this process ([`super::local::LocalStore`]) or a
//! Redis shared by every replica ([`super::redis_store::RedisStore`]), behind one
//! trait so the admission logic does not care which.

use futures_util::future::BoxFuture;

use super::windows::Windows;

/// A key's limits as the store needs them (0 = no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: u64,
    /// Tokens per minute.
    pub tpm: u64,
    /// Tokens per budget period.
    pub budget: u64,
}

/// Why the store refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This minute's requests are spent.
    Rpm,
    /// This minute's tokens are spent.
    Tpm,
    /// The period's budget is spent.
    Budget,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Rpm => "rpm",
            Refusal::Tpm => "tpm",
            Refusal::Budget => "budget",
        }
    }
}

/// A key's counters in the windows in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Requests admitted this minute.
    pub requests_this_minute: u64,
    /// Tokens charged this minute.
    pub tokens_this_minute: u64,
    /// Tokens charged this budget period.
    pub tokens_this_period: u64,
}

/// A store failure (timeouts included). The message never holds the URL.
#[derive(Clone, Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Counting for rate limits and budgets. Implementations are atomic per call:
/// two replicas admitting at once never both take the last request.
pub trait LimitsStore: Send + Sync + 'static {
    /// Count one request of `key` if its rpm allows and its tpm and budget are
    /// not spent; a refused request is not counted.
    fn admit<'a>(
        &'a self,
        key: &'a str,
        limits: Limits,
        w: Windows,
    ) -> BoxFuture<'a, Result<Result<Usage, Refusal>, StoreError>>;

    /// Add `tokens` to `key`'s minute and period.
    fn charge<'a>(
        &'a self,
        key: &'a str,
        tokens: u64,
        w: Windows,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// `key`'s counters now (for the admin API).
    fn usage<'a>(&'a self, key: &'a str, w: Windows) -> BoxFuture<'a, Result<Usage, StoreError>>;

    /// `"local"` or `"redis"`.
    fn kind(&self) -> &'static str;
}
