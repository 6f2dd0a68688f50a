//! Counters in this process: each replica counts alone (the docs say so).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use super::store::{Limits, LimitsStore, Refusal, StoreError, Usage};
use super::windows::Windows;

/// One key's counters, each tagged with the window it counts.
#[derive(Debug, Default)]
struct Counters {
    minute: u64,
    requests: u64,
    tokens: u64,
    period: (u64, &'static str),
    period_tokens: u64,
}

impl Counters {
    /// Reset what belongs to windows that have ended.
    fn roll(&mut self, w: &Windows) {
        if self.minute != w.minute {
            self.minute = w.minute;
            self.requests = 0;
            self.tokens = 0;
        }
        if self.period != (w.period, w.period_kind) {
            self.period = (w.period, w.period_kind);
            self.period_tokens = 0;
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            requests_this_minute: self.requests,
            tokens_this_minute: self.tokens,
            tokens_this_period: self.period_tokens,
        }
    }
}

/// Counters by key name, in memory. A key's lock is held for a few integer
/// operations only; the map's lock only to find (or add) a key.
#[derive(Default)]
pub struct LocalStore {
    keys: Mutex<HashMap<String, Arc<Mutex<Counters>>>>,
}

impl LocalStore {
    fn counters(&self, key: &str) -> Arc<Mutex<Counters>> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = keys.get(key) {
            return c.clone();
        }
        keys.entry(key.to_string()).or_default().clone()
    }

    /// The same as [`LimitsStore::admit`], without a future.
    pub fn admit_now(&self, key: &str, limits: Limits, w: Windows) -> Result<Usage, Refusal> {
        let c = self.counters(key);
        let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
        c.roll(&w);
        if limits.rpm > 0 && c.requests >= limits.rpm {
            return Err(Refusal::Rpm);
        }
        if limits.tpm > 0 && c.tokens >= limits.tpm {
            return Err(Refusal::Tpm);
        }
        if limits.budget > 0 && c.period_tokens >= limits.budget {
            return Err(Refusal::Budget);
        }
        c.requests += 1;
        Ok(c.usage())
    }

    fn charge_now(&self, key: &str, tokens: u64, w: Windows) {
        let c = self.counters(key);
        let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
        c.roll(&w);
        c.tokens = c.tokens.saturating_add(tokens);
        c.period_tokens = c.period_tokens.saturating_add(tokens);
    }

    fn usage_now(&self, key: &str, w: Windows) -> Usage {
        let c = self.counters(key);
        let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
        c.roll(&w);
        c.usage()
    }
}

impl LimitsStore for LocalStore {
    fn admit<'a>(
        &'a self,
        key: &'a str,
        limits: Limits,
        w: Windows,
    ) -> BoxFuture<'a, Result<Result<Usage, Refusal>, StoreError>> {
        let r = self.admit_now(key, limits, w);
        Box::pin(std::future::ready(Ok(r)))
    }

    fn charge<'a>(
        &'a self,
        key: &'a str,
        tokens: u64,
        w: Windows,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.charge_now(key, tokens, w);
        Box::pin(std::future::ready(Ok(())))
    }

    fn usage<'a>(&'a self, key: &'a str, w: Windows) -> BoxFuture<'a, Result<Usage, StoreError>> {
        Box::pin(std::future::ready(Ok(self.usage_now(key, w))))
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_registry::server_config::BudgetPeriod;

    #[test]
    fn limits_hold_within_a_window_and_reset_after_it() {
        let s = LocalStore::default();
        let w = Windows::at(600, BudgetPeriod::Day);
        let l = Limits {
            rpm: 2,
            tpm: 10,
            budget: 15,
        };
        assert!(s.admit_now("k", l, w).is_ok());
        assert!(s.admit_now("k", l, w).is_ok());
        assert_eq!(s.admit_now("k", l, w), Err(Refusal::Rpm));
        assert!(s.admit_now("other", l, w).is_ok(), "keys count apart");
        let next = Windows::at(660, BudgetPeriod::Day);
        s.charge_now("k", 10, next);
        assert_eq!(s.admit_now("k", l, next), Err(Refusal::Tpm));
        let later = Windows::at(720, BudgetPeriod::Day);
        s.charge_now("k", 5, later);
        assert_eq!(s.admit_now("k", l, later), Err(Refusal::Budget));
        assert_eq!(s.usage_now("k", later).tokens_this_period, 15);
        let tomorrow = Windows::at(86_400 + 1, BudgetPeriod::Day);
        assert!(s.admit_now("k", l, tomorrow).is_ok());
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_limit() {
        let s = Arc::new(LocalStore::default());
        let w = Windows::at(600, BudgetPeriod::Month);
        let l = Limits {
            rpm: 1000,
            ..Limits::default()
        };
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..500).filter(|_| s.admit_now("k", l, w).is_ok()).count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, 1000);
    }
}
