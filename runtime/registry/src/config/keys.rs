//! Client API keys of the gateway and what each may do: `[server.auth]`,
//! `[[server.keys]]` and `[server.limits_store]`.
//!
//! ```toml
//! [server.auth]
//! required = true                 # default: true when keys exist or `listen` is not loopback
//!
//! [[server.keys]]
//! name = "team-a"                 # in logs, metrics and admin answers; the key never is
//! key = { env = "TEAM_A_KEY" }    # or { file = "..." }; or sha256 = "<hex>" instead of `key`
//! models = ["openai/*", "default"]
//! rpm = 600
//! tpm = 200000
//! max_concurrent = 16
//! budget = { tokens = 5000000, period = "month" }
//!
//! [server.limits_store]
//! url = "redis://127.0.0.1:6379/0"   # or { env = "TAMMA_REDIS_URL" }
//! on_error = "allow"                 # or "deny"
//! timeout_ms = 50
//! ```

use serde::{Deserialize, Serialize};

use super::server::{SecretRef, MIN_TOKEN_CHARS};

/// Most requests a minute a key may be given.
pub const MAX_RPM: u64 = 1_000_000_000;
/// Most tokens a minute a key may be given.
pub const MAX_TPM: u64 = 1_000_000_000_000;
/// Most requests of one key at once.
pub const MAX_KEY_CONCURRENT: u32 = 1_000_000;
/// Largest token budget (10^15): the Redis store counts in Lua, whose numbers
/// are exact only up to 2^53.
pub const MAX_BUDGET_TOKENS: u64 = 1_000_000_000_000_000;
/// Longest `[server.limits_store] timeout_ms`: a minute (a request waits this
/// long for the store on every call).
pub const MAX_STORE_TIMEOUT_MS: u64 = 60_000;

/// Every `[[server.keys]]` number's accepted range (when set).
pub const CLIENT_KEY_BOUNDS: &[super::bounds::Bound] = &[
    ("rpm", 1, MAX_RPM),
    ("tpm", 1, MAX_TPM),
    ("max_concurrent", 1, MAX_KEY_CONCURRENT as u64),
];
/// A key's `budget` and its accepted range.
pub const BUDGET_BOUNDS: &[super::bounds::Bound] = &[("tokens", 1, MAX_BUDGET_TOKENS)];
/// `[server.limits_store]`'s accepted range.
pub const LIMITS_STORE_BOUNDS: &[super::bounds::Bound] = &[("timeout_ms", 1, MAX_STORE_TIMEOUT_MS)];

/// `[server.auth]`: whether `/v1` needs a client key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `true`: every `/v1` request needs one of `[[server.keys]]`. `false`: requests
    /// without a known key are served without a policy (anonymous). Unset: required
    /// when any key is configured or the server listens on a non-loopback address.
    /// `tamma serve` on a non-loopback address with no keys refuses to start unless
    /// this is written `false`.
    pub required: Option<bool>,
}

/// One client key and its policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientKey {
    /// The key's name: in logs, metrics and admin answers (the key never is).
    /// Counters (rate limits, budget) belong to the name, so changing a key's
    /// value keeps its usage.
    pub name: String,
    /// Where the key's value comes from (`{ env }` or `{ file }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretRef>,
    /// Instead of `key`: the lowercase hex SHA-256 of the key, so the file holds
    /// no secret (`printf %s "$KEY" | sha256sum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Routes and `<provider>/<model>` globs (`*` matches any run of characters)
    /// the key may use. Unset: every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Requests per minute (a calendar minute, UTC); at most 10^9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_RPM))]
    pub rpm: Option<u64>,
    /// Tokens (input + output, from the answers' usage) per minute; at most 10^12.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_TPM))]
    pub tpm: Option<u64>,
    /// Requests (streams included) served at once, per replica; at most 10^6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_KEY_CONCURRENT))]
    pub max_concurrent: Option<u32>,
    /// Tokens per calendar day or month (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// A token budget per calendar period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Tokens (input + output) per period; at most 10^15.
    #[schemars(range(min = 1, max = MAX_BUDGET_TOKENS))]
    pub tokens: u64,
    /// The period: a calendar day or month, UTC.
    pub period: BudgetPeriod,
}

/// A budget's period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// A calendar day, UTC.
    Day,
    /// A calendar month, UTC.
    Month,
}

impl BudgetPeriod {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }
}

/// `[server.limits_store]`: where rate limits and budgets are counted, so that
/// replicas share them. Without it each replica counts alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsStoreConfig {
    /// `redis://[user:password@]host:port/db` (or `rediss://`), inline or as
    /// `{ env = "..." }` / `{ file = "..." }` (it may hold a password).
    pub url: StoreUrl,
    /// What a request gets when the store does not answer in time.
    #[serde(default)]
    pub on_error: OnStoreError,
    /// How long a request waits for the store, ms. Default 50; at most 60 000.
    #[serde(default = "default_store_timeout_ms")]
    #[schemars(range(min = 1, max = MAX_STORE_TIMEOUT_MS))]
    pub timeout_ms: u64,
}

fn default_store_timeout_ms() -> u64 {
    50
}

/// The store's URL: inline, or a secret reference.
#[derive(Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum StoreUrl {
    /// `url = "redis://..."`
    Inline(String),
    /// `url = { env = "TAMMA_REDIS_URL" }`
    Secret(SecretRef),
}

impl std::fmt::Debug for StoreUrl {
    // A URL may carry a password: show only where it comes from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Inline(_) => f.write_str("Inline(<redacted>)"),
            StoreUrl::Secret(s) => write!(f, "{s:?}"),
        }
    }
}

impl StoreUrl {
    /// The URL. The error names the variable or file, never a value.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            StoreUrl::Inline(u) => Ok(u.clone()),
            StoreUrl::Secret(s) => s.resolve(),
        }
    }
}

/// What a request gets when the limits store fails or is too slow.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Serve it (limits are not enforced while the store is down).
    #[default]
    Allow,
    /// Refuse it (503 `limits_unavailable`).
    Deny,
}

/// Whether `s` is 64 hex digits.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every problem of the keys, auth and store settings, as `server.field: reason`.
pub(crate) fn validate(keys: &[ClientKey], store: Option<&LimitsStoreConfig>, p: &mut Vec<String>) {
    let mut names = std::collections::BTreeSet::new();
    for (i, k) in keys.iter().enumerate() {
        let at = format!("server.keys[{i}]");
        if k.name.trim().is_empty() || k.name.len() > 128 {
            p.push(format!("{at}.name: must be 1-128 characters"));
        } else if !names.insert(k.name.as_str()) {
            p.push(format!("{at}.name: {:?} is used twice", k.name));
        }
        match (&k.key, &k.sha256) {
            (Some(_), Some(_)) => p.push(format!("{at}: give `key` or `sha256`, not both")),
            (None, None) => p.push(format!(
                "{at}: needs `key = {{ env = \"...\" }}` (or `{{ file = \"...\" }}`) or `sha256 = \"<hex>\"`"
            )),
            (None, Some(h)) if !is_sha256_hex(h) => {
                p.push(format!("{at}.sha256: must be 64 hex digits"))
            }
            (Some(SecretRef::Env(n)), None) if n.is_empty() => {
                p.push(format!("{at}.key.env: must name a variable"))
            }
            (Some(SecretRef::File(f)), None) if f.as_os_str().is_empty() => {
                p.push(format!("{at}.key.file: must name a file"))
            }
            (Some(SecretRef::Value(v)), None) if v.chars().count() < MIN_TOKEN_CHARS => p.push(
                format!("{at}.key.value: must be at least {MIN_TOKEN_CHARS} characters"),
            ),
            _ => {}
        }
        if let Some(models) = &k.models {
            for (j, m) in models.iter().enumerate() {
                if m.is_empty() {
                    p.push(format!("{at}.models[{j}]: must not be empty"));
                }
            }
        }
        p.extend(super::bounds::check(
            &format!("{at}."),
            CLIENT_KEY_BOUNDS,
            |f| match f {
                "rpm" => k.rpm,
                "tpm" => k.tpm,
                _ => k.max_concurrent.map(u64::from),
            },
        ));
        if let Some(b) = &k.budget {
            p.extend(super::bounds::check(
                &format!("{at}.budget."),
                BUDGET_BOUNDS,
                |_| Some(b.tokens),
            ));
        }
    }
    if let Some(s) = store {
        p.extend(super::bounds::check(
            "server.limits_store.",
            LIMITS_STORE_BOUNDS,
            |_| Some(s.timeout_ms),
        ));
        match &s.url {
            StoreUrl::Inline(u) if !(u.starts_with("redis://") || u.starts_with("rediss://")) => {
                p.push("server.limits_store.url: must start with redis:// or rediss://".into())
            }
            StoreUrl::Secret(SecretRef::Env(n)) if n.is_empty() => {
                p.push("server.limits_store.url.env: must name a variable".into())
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: serde_json::Value) -> ClientKey {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn problems_name_their_field() {
        let keys = vec![
            key(serde_json::json!({"name": "a", "key": {"value": "short"}})),
            key(serde_json::json!({"name": "a", "sha256": "abc"})),
            key(serde_json::json!({"name": "b"})),
            key(serde_json::json!({"name": "c", "sha256": "0".repeat(64), "rpm": 0})),
        ];
        let store: LimitsStoreConfig =
            serde_json::from_value(serde_json::json!({"url": "http://x", "timeout_ms": 0}))
                .unwrap();
        let mut p = Vec::new();
        validate(&keys, Some(&store), &mut p);
        for want in [
            "server.keys[0].key.value",
            "server.keys[1].name",
            "server.keys[1].sha256",
            "server.keys[2]:",
            "server.keys[3].rpm",
            "server.limits_store.timeout_ms",
            "server.limits_store.url",
        ] {
            assert!(p.iter().any(|e| e.starts_with(want)), "{want}: {p:#?}");
        }
        assert_eq!(p.len(), 7, "{p:#?}");
    }

    #[test]
    fn store_urls_are_inline_or_secret_and_never_printed() {
        let s: LimitsStoreConfig =
            serde_json::from_value(serde_json::json!({"url": "redis://:hunter2@h:1/0"})).unwrap();
        assert_eq!(s.on_error, OnStoreError::Allow);
        assert_eq!(s.timeout_ms, 50);
        assert!(!format!("{s:?}").contains("hunter2"));
        let s: LimitsStoreConfig =
            serde_json::from_value(serde_json::json!({"url": {"env": "X"}, "on_error": "deny"}))
                .unwrap();
        assert_eq!(s.url, StoreUrl::Secret(SecretRef::Env("X".into())));
        assert_eq!(s.on_error, OnStoreError::Deny);
    }
}
