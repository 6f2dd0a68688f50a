//! Counters in Redis, shared by every replica.
//!
//! - Admission is one round trip: a Lua script reads the key's minute and period
//!   counters and, when the request may go, increments the minute's request
//!   count (a refused request is not counted). Scripts run atomically, so two
//!   replicas never both take the last request of a minute.
//! - Charging is one `MULTI` (INCRBY + EXPIRE of the minute's and the period's
//!   token counters), after the answer.
//! - Every counter's key names its window (`tamma:{team-a}:rpm:<minute>`) and
//!   expires soon after it ends, so nothing is ever cleaned up by hand. The
//!   braces are a Redis Cluster hash tag: a key's counters share a slot, as a
//!   script touching several keys needs.
//! - The connection is the redis crate's `ConnectionManager` (multiplexed, it
//!   reconnects by itself), made on first use; every call is bounded by
//!   `timeout_ms` by the caller.

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::store::{Limits, LimitsStore, Refusal, StoreError, Usage};
use super::windows::Windows;

/// KEYS: rpm, tpm, budget counters. ARGV: rpm, tpm, budget limits (0: none),
/// the rpm counter's time to live. Returns `{refusal, requests, tokens, period}`,
/// refusal 0 (admitted), 1 (rpm), 2 (tpm), 3 (budget).
const ADMIT: &str = r"
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local r = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
local b = tonumber(redis.call('GET', KEYS[3]) or '0')
if rpm > 0 and r >= rpm then return {1, r, t, b} end
if tpm > 0 and t >= tpm then return {2, r, t, b} end
if budget > 0 and b >= budget then return {3, r, t, b} end
r = redis.call('INCR', KEYS[1])
if r == 1 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return {0, r, t, b}
";

/// A minute's counters live this long past the minute's start, s.
const MINUTE_TTL_SECS: u64 = 120;
/// A period's counter lives this long past the period's end, s.
const PERIOD_GRACE_SECS: u64 = 86_400;

/// The counters' Redis keys.
struct Keys {
    rpm: String,
    tpm: String,
    budget: String,
}

fn keys(name: &str, w: &Windows) -> Keys {
    Keys {
        rpm: format!("tamma:{{{name}}}:rpm:{}", w.minute),
        tpm: format!("tamma:{{{name}}}:tpm:{}", w.minute),
        budget: format!("tamma:{{{name}}}:budget:{}:{}", w.period_kind, w.period),
    }
}

fn err(e: redis::RedisError) -> StoreError {
    // The error names what failed (refused, timed out, a script error), never
    // the URL and its password.
    StoreError(format!("redis: {e}"))
}

/// A Redis limits store.
pub struct RedisStore {
    client: redis::Client,
    config: ConnectionManagerConfig,
    conn: OnceCell<ConnectionManager>,
    admit: redis::Script,
}

impl RedisStore {
    /// A store at `url` (not connected until first used). `timeout` bounds
    /// connecting and each answer.
    pub fn new(url: &str, timeout: std::time::Duration) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("not a Redis URL ({})", e.kind_str()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(1);
        Ok(RedisStore {
            client,
            config,
            conn: OnceCell::new(),
            admit: redis::Script::new(ADMIT),
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        // A first connection that fails (Redis down at start) leaves the cell
        // empty: the next call tries again.
        self.conn
            .get_or_try_init(|| {
                ConnectionManager::new_with_config(self.client.clone(), self.config.clone())
            })
            .await
            .cloned()
            .map_err(err)
    }
}

trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for redis::RedisError {
    fn kind_str(&self) -> String {
        format!("{:?}", self.kind())
    }
}

impl LimitsStore for RedisStore {
    fn admit<'a>(
        &'a self,
        key: &'a str,
        limits: Limits,
        w: Windows,
    ) -> BoxFuture<'a, Result<Result<Usage, Refusal>, StoreError>> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let k = keys(key, &w);
            let (code, requests, tokens, period): (u8, u64, u64, u64) = self
                .admit
                .key(&k.rpm)
                .key(&k.tpm)
                .key(&k.budget)
                .arg(limits.rpm)
                .arg(limits.tpm)
                .arg(limits.budget)
                .arg(MINUTE_TTL_SECS)
                .invoke_async(&mut c)
                .await
                .map_err(err)?;
            let usage = Usage {
                requests_this_minute: requests,
                tokens_this_minute: tokens,
                tokens_this_period: period,
            };
            Ok(match code {
                0 => Ok(usage),
                1 => Err(Refusal::Rpm),
                2 => Err(Refusal::Tpm),
                _ => Err(Refusal::Budget),
            })
        })
    }

    fn charge<'a>(
        &'a self,
        key: &'a str,
        tokens: u64,
        w: Windows,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let k = keys(key, &w);
            let period_ttl = w.period_left_secs.saturating_add(PERIOD_GRACE_SECS);
            let ttl = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
            redis::pipe()
                .atomic()
                .incr(&k.tpm, tokens)
                .ignore()
                .expire(&k.tpm, ttl(MINUTE_TTL_SECS))
                .ignore()
                .incr(&k.budget, tokens)
                .ignore()
                .expire(&k.budget, ttl(period_ttl))
                .ignore()
                .query_async::<()>(&mut c)
                .await
                .map_err(err)
        })
    }

    fn usage<'a>(&'a self, key: &'a str, w: Windows) -> BoxFuture<'a, Result<Usage, StoreError>> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            if key.is_empty() {
                // warm_up: connecting was the point.
                return Ok(Usage::default());
            }
            let k = keys(key, &w);
            let (r, t, b): (Option<u64>, Option<u64>, Option<u64>) = redis::cmd("MGET")
                .arg(&k.rpm)
                .arg(&k.tpm)
                .arg(&k.budget)
                .query_async(&mut c)
                .await
                .map_err(err)?;
            Ok(Usage {
                requests_this_minute: r.unwrap_or(0),
                tokens_this_minute: t.unwrap_or(0),
                tokens_this_period: b.unwrap_or(0),
            })
        })
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
