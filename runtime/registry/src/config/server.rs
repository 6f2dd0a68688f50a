//! The `[server]` section of the configuration file: what `tamma serve` reads
//! (listen address, request limits, admin tokens, routes). Also reachable as
//! `tamma_registry::server_config`, the path `tamma_server::config` re-exports.
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:8080"          # `tamma serve --listen` overrides it
//! shutdown_grace_ms = 30000
//!
//! [server.limits]
//! max_body_bytes = 8388608
//! max_concurrent_requests = 512
//!
//! [[server.admin.tokens]]
//! name = "ops"
//! role = "admin"                   # or "read"
//! token = { env = "TAMMA_ADMIN_TOKEN" }   # or { file = "/run/secrets/admin" } or { value = "..." }
//!
//! [server.routes.smart]
//! targets = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]
//! strategy = "weighted"            # ordered (default) | weighted | least-busy | latency
//! weights = [3, 1]
//! retries = { attempts = 2, base_ms = 200, max_ms = 2000, budget_ms = 10000 }
//! context_window_fallback = true
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use super::keys::{
    AuthConfig, Budget, BudgetPeriod, ClientKey, LimitsStoreConfig, OnStoreError, StoreUrl,
};

/// Default listen address: loopback only, so a bare `tamma serve` is not exposed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Shortest accepted admin token, characters.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Server settings: listen address, limits, admin tokens, routes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, `IP:PORT`. Default `127.0.0.1:8080`; `--listen` overrides it.
    pub listen: String,
    /// Request limits.
    pub limits: ServerLimits,
    /// The admin API (`/admin/v1`): its tokens. No tokens, no admin API.
    pub admin: AdminConfig,
    /// Named routes: a request whose `model` is a route name tries the route's
    /// targets (`<provider>/<model>`), the first picked by the route's strategy.
    pub routes: BTreeMap<String, RouteConfig>,
    /// After SIGTERM/SIGINT, how long running requests may take to finish before
    /// they are cut off, ms. Default 30 000; at most an hour. (The registry's own
    /// shutdown follows, bounded by `registry.lifecycle.shutdown_timeout_ms`.)
    #[schemars(range(min = 1, max = MAX_SHUTDOWN_GRACE_MS))]
    pub shutdown_grace_ms: u64,
    /// After SIGTERM/SIGINT and before the listener closes, how long the server
    /// keeps accepting and serving while `/readyz` answers 503, ms, so that load
    /// balancers and Kubernetes readiness probes see the drain instead of refused
    /// connections. Default 0 (close at once); under Kubernetes give it the probe's
    /// `periodSeconds × failureThreshold` or more. At most 600 000.
    #[schemars(range(max = MAX_SHUTDOWN_DRAIN_MS))]
    pub shutdown_drain_ms: u64,
    /// Whether `/v1` needs a client key (`[server.auth]`).
    pub auth: AuthConfig,
    /// Client API keys and their policies (`[[server.keys]]`).
    pub keys: Vec<ClientKey>,
    /// Where rate limits and budgets are counted so that replicas share them
    /// (`[server.limits_store]`). Unset: each replica counts alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits_store: Option<LimitsStoreConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.to_string(),
            limits: ServerLimits::default(),
            admin: AdminConfig::default(),
            routes: BTreeMap::new(),
            shutdown_grace_ms: 30_000,
            shutdown_drain_ms: 0,
            auth: AuthConfig::default(),
            keys: Vec::new(),
            limits_store: None,
        }
    }
}

/// Limits applied to every HTTP request; beyond them the server answers 413, 408
/// or 429 at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Largest request body of the OpenAI API, bytes (413 beyond). Default 8 MiB.
    #[schemars(range(min = 1, max = 1_073_741_824))]
    pub max_body_bytes: u64,
    /// Largest admin upload (a component in JSON, base64), bytes. Default 64 MiB.
    #[schemars(range(min = 1, max = 1_073_741_824))]
    pub max_upload_bytes: u64,
    /// Time a client has to send a request's headers, ms (408 beyond). Also closes
    /// idle keep-alive connections. Default 10 000.
    #[schemars(range(min = 1, max = 600_000))]
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a request's body, ms (408 beyond). Default 30 000.
    #[schemars(range(min = 1, max = 3_600_000))]
    pub body_read_timeout_ms: u64,
    /// Requests served at once by the OpenAI and admin APIs (a stream counts until
    /// it ends); beyond it, 429. Probes and metrics are not counted. Default 512.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_concurrent_requests: u32,
    /// Open connections at once; further connections wait in the listen backlog.
    /// Default 4 096.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_connections: u32,
    /// How long the server's writes to a client may stay blocked (the client does
    /// not read its response or stream), ms; past it the connection is closed and
    /// its request's concurrency slot freed. Default 30 000.
    #[schemars(range(min = 1, max = 3_600_000))]
    pub write_stall_timeout_ms: u64,
    /// Outbound HTTP requests (upstream connections in use) in flight for all
    /// providers together; each provider's own `egress.max_concurrent_requests`
    /// still applies. Past it a guest's request fails at once
    /// (`tamma_egress_refusals_total{reason="host_concurrency"}`). Read at start.
    /// Default 1 024.
    #[schemars(range(min = 1, max = 65_536))]
    pub max_outbound_requests: u32,
}

/// Longest `shutdown_grace_ms`: an hour.
pub const MAX_SHUTDOWN_GRACE_MS: u64 = 3_600_000;
/// Longest `shutdown_drain_ms`: ten minutes.
pub const MAX_SHUTDOWN_DRAIN_MS: u64 = 600_000;

/// The `[server]` section's own numeric fields and their accepted ranges.
pub const SERVER_BOUNDS: &[super::bounds::Bound] = &[
    ("shutdown_grace_ms", 1, MAX_SHUTDOWN_GRACE_MS),
    ("shutdown_drain_ms", 0, MAX_SHUTDOWN_DRAIN_MS),
];

/// Every `[server.limits]` field's accepted range, `(field, min, max)`: what
/// validation checks and the JSON Schema says.
pub const SERVER_LIMIT_BOUNDS: &[super::bounds::Bound] = &[
    ("max_body_bytes", 1, 1 << 30),
    ("max_upload_bytes", 1, 1 << 30),
    ("header_read_timeout_ms", 1, 600_000),
    ("body_read_timeout_ms", 1, 3_600_000),
    ("max_concurrent_requests", 1, 1_000_000),
    ("max_connections", 1, 1_000_000),
    ("write_stall_timeout_ms", 1, 3_600_000),
    ("max_outbound_requests", 1, 65_536),
];

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 8 * 1024 * 1024,
            max_upload_bytes: 64 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_concurrent_requests: 512,
            max_connections: 4_096,
            write_stall_timeout_ms: 30_000,
            max_outbound_requests: 1_024,
        }
    }
}

/// The admin API's settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer tokens and their roles.
    pub tokens: Vec<AdminToken>,
}

/// What a token may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    /// Read providers, their snapshots and the event stream.
    Read,
    /// Everything `read` may, plus register, unregister, restart, start, stop
    /// and run health checks.
    Admin,
}

impl AdminRole {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Read => "read",
            AdminRole::Admin => "admin",
        }
    }
}

/// One admin bearer token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// A name for logs (never the token itself).
    pub name: String,
    /// What the token may do.
    pub role: AdminRole,
    /// Where the token's value comes from.
    pub token: SecretRef,
}

/// A secret value by reference: an environment variable, a file (trailing
/// whitespace trimmed), or inline (for tests; avoid in real files).
#[derive(Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    /// `{ env = "NAME" }`
    Env(String),
    /// `{ file = "/run/secrets/name" }`
    File(PathBuf),
    /// `{ value = "..." }`
    Value(String),
}

impl std::fmt::Debug for SecretRef {
    // Never the inline value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "Env({n})"),
            SecretRef::File(p) => write!(f, "File({})", p.display()),
            SecretRef::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl SecretRef {
    /// Read the value. The error names the variable or file, never a value.
    pub fn resolve(&self) -> Result<String, String> {
        let v = match self {
            SecretRef::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set"))?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .trim_end()
                .to_string(),
            SecretRef::Value(v) => v.clone(),
        };
        if v.is_empty() {
            return Err("is empty".into());
        }
        Ok(v)
    }
}

/// A named route.
///
/// ```toml
/// [server.routes.default]
/// targets = ["openai-a/gpt-4o-mini", "openai-b/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]
/// strategy = "weighted"
/// weights = [3, 1, 1]
/// retries = { attempts = 2, base_ms = 200, max_ms = 2000, budget_ms = 10000 }
/// context_window_fallback = true
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `<provider>/<model>` targets. The strategy picks the first one to try;
    /// the rest follow in this order. A target whose circuit is open, or that
    /// fails with a provider failure before the answer started, falls through to
    /// the next.
    pub targets: Vec<String>,
    /// How the first target is picked. Default `ordered`.
    #[serde(default)]
    pub strategy: RouteStrategy,
    /// `weighted` only: one weight per target (0 = never first, only a
    /// fallback). Default: equal weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<u32>,
    /// Retries of a target on a provider failure before the next one is tried.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RouteRetries>,
    /// A target that answers `context-too-long` hands the request to the next
    /// target whose model has a larger context window (from its capabilities).
    /// Default false: the client gets the 400.
    #[serde(default)]
    pub context_window_fallback: bool,
}

impl RouteConfig {
    /// An `ordered` route over `targets`, without retries.
    pub fn ordered<S: Into<String>>(targets: impl IntoIterator<Item = S>) -> Self {
        RouteConfig {
            targets: targets.into_iter().map(Into::into).collect(),
            ..RouteConfig::default()
        }
    }
}

/// How a route picks the first target of a request.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RouteStrategy {
    /// The targets in their order (the default).
    #[default]
    Ordered,
    /// At random by `weights`, then the rest in order.
    Weighted,
    /// The target with the fewest calls in flight, then the rest in order.
    LeastBusy,
    /// The lowest moving average of recent successful latency (a small share
    /// of requests explores the others), then the rest in order.
    Latency,
}

impl RouteStrategy {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteStrategy::Ordered => "ordered",
            RouteStrategy::Weighted => "weighted",
            RouteStrategy::LeastBusy => "least-busy",
            RouteStrategy::Latency => "latency",
        }
    }
}

/// Most retries of one target a route may ask for.
pub const MAX_ROUTE_RETRIES: u32 = 5;
/// Longest retry budget, ms.
pub const MAX_RETRY_BUDGET_MS: u64 = 600_000;
/// Most targets in one route.
pub const MAX_ROUTE_TARGETS: usize = 64;

/// Every `retries` field's accepted range (`max_ms` must also be at least
/// `base_ms`).
pub const ROUTE_RETRY_BOUNDS: &[super::bounds::Bound] = &[
    ("attempts", 0, MAX_ROUTE_RETRIES as u64),
    ("base_ms", 1, MAX_RETRY_BUDGET_MS),
    ("max_ms", 1, MAX_RETRY_BUDGET_MS),
    ("budget_ms", 1, MAX_RETRY_BUDGET_MS),
];

/// Retries of a route's targets: on a provider failure (trap, sandbox limit,
/// timeout, retryable guest error such as an upstream 429/503) before the first
/// byte reached the client, the same target is tried again after a full-jitter
/// exponential backoff, or after the upstream's `retry-after` when it fits in
/// what is left of the budget; otherwise the next target is tried at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RouteRetries {
    /// Retries of one target after its first attempt (0-5). Default 2.
    #[schemars(range(max = MAX_ROUTE_RETRIES))]
    pub attempts: u32,
    /// Shortest backoff, ms. Default 200; at most 600 000.
    #[schemars(range(min = 1, max = MAX_RETRY_BUDGET_MS))]
    pub base_ms: u64,
    /// Longest backoff, ms (the n-th retry waits at random between `base_ms`
    /// and `min(max_ms, base_ms * 2^n)`). Default 2 000; at most 600 000.
    #[schemars(range(min = 1, max = MAX_RETRY_BUDGET_MS))]
    pub max_ms: u64,
    /// Time from the start of the request after which no retry starts, ms
    /// (fallback to the next target still does). Default 10 000; at most 600 000.
    #[schemars(range(min = 1, max = MAX_RETRY_BUDGET_MS))]
    pub budget_ms: u64,
}

impl Default for RouteRetries {
    fn default() -> Self {
        RouteRetries {
            attempts: 2,
            base_ms: 200,
            max_ms: 2_000,
            budget_ms: 10_000,
        }
    }
}

impl ServerConfig {
    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen
            .parse()
            .map_err(|e| format!("{:?} is not IP:PORT ({e})", self.listen))
    }

    /// Every problem, as `server.field: reason` (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = self.listen_addr() {
            p.push(format!("server.listen: {e}"));
        }
        p.extend(super::bounds::check("server.", SERVER_BOUNDS, |f| {
            Some(match f {
                "shutdown_grace_ms" => self.shutdown_grace_ms,
                _ => self.shutdown_drain_ms,
            })
        }));
        let l = &self.limits;
        p.extend(super::bounds::check(
            "server.limits.",
            SERVER_LIMIT_BOUNDS,
            |f| {
                Some(match f {
                    "max_body_bytes" => l.max_body_bytes,
                    "max_upload_bytes" => l.max_upload_bytes,
                    "header_read_timeout_ms" => l.header_read_timeout_ms,
                    "body_read_timeout_ms" => l.body_read_timeout_ms,
                    "max_concurrent_requests" => l.max_concurrent_requests.into(),
                    "max_connections" => l.max_connections.into(),
                    "write_stall_timeout_ms" => l.write_stall_timeout_ms,
                    _ => l.max_outbound_requests.into(),
                })
            },
        ));
        let mut names = std::collections::BTreeSet::new();
        for (i, t) in self.admin.tokens.iter().enumerate() {
            let at = format!("server.admin.tokens[{i}]");
            if t.name.trim().is_empty() {
                p.push(format!("{at}.name: must not be empty"));
            } else if !names.insert(t.name.as_str()) {
                p.push(format!("{at}.name: {:?} is used twice", t.name));
            }
            match &t.token {
                SecretRef::Env(n) if n.is_empty() => {
                    p.push(format!("{at}.token.env: must name a variable"))
                }
                SecretRef::File(f) if f.as_os_str().is_empty() => {
                    p.push(format!("{at}.token.file: must name a file"))
                }
                SecretRef::Value(v) if v.chars().count() < MIN_TOKEN_CHARS => p.push(format!(
                    "{at}.token.value: must be at least {MIN_TOKEN_CHARS} characters"
                )),
                _ => {}
            }
        }
        super::keys::validate(&self.keys, self.limits_store.as_ref(), &mut p);
        for (name, route) in &self.routes {
            let at = format!("server.routes.{name}");
            if name.is_empty() || name.contains('/') || name.len() > 128 {
                p.push(format!(
                    "{at}: a route name must be 1-128 characters without '/' (so it cannot be mistaken for <provider>/<model>)"
                ));
            }
            if route.targets.is_empty() {
                p.push(format!("{at}.targets: must list at least one target"));
            }
            if route.targets.len() > MAX_ROUTE_TARGETS {
                p.push(format!(
                    "{at}.targets: at most {MAX_ROUTE_TARGETS} targets, got {}",
                    route.targets.len()
                ));
            }
            p.extend(route_problems(&at, route));
            for (i, t) in route.targets.iter().enumerate() {
                match t.split_once('/') {
                    Some((prov, model)) if !model.is_empty() => {
                        if let Err(e) = crate::registry::validate_name(prov) {
                            p.push(format!("{at}.targets[{i}]: {}", e.message));
                        }
                    }
                    _ => p.push(format!(
                        "{at}.targets[{i}]: {t:?} is not <provider>/<model>"
                    )),
                }
            }
        }
        p
    }
}

/// The problems of a route's strategy, weights and retries.
fn route_problems(at: &str, route: &RouteConfig) -> Vec<String> {
    let mut p = Vec::new();
    if !route.weights.is_empty() {
        if route.strategy != RouteStrategy::Weighted {
            p.push(format!(
                "{at}.weights: only a \"weighted\" route has weights (this one is {:?})",
                route.strategy.as_str()
            ));
        } else if route.weights.len() != route.targets.len() {
            p.push(format!(
                "{at}.weights: one weight per target: {} targets, {} weights",
                route.targets.len(),
                route.weights.len()
            ));
        } else if route.weights.iter().all(|w| *w == 0) {
            p.push(format!("{at}.weights: at least one weight must be above 0"));
        } else if route.weights.iter().any(|w| *w > 1_000_000) {
            p.push(format!("{at}.weights: each weight must be at most 1000000"));
        }
    }
    if let Some(r) = &route.retries {
        let at = format!("{at}.retries");
        p.extend(super::bounds::check(
            &format!("{at}."),
            ROUTE_RETRY_BOUNDS,
            |f| {
                Some(match f {
                    "attempts" => r.attempts.into(),
                    "base_ms" => r.base_ms,
                    "max_ms" => r.max_ms,
                    _ => r.budget_ms,
                })
            },
        ));
        if r.max_ms < r.base_ms {
            p.push(format!(
                "{at}.max_ms: must be at least base_ms ({}), got {}",
                r.base_ms, r.max_ms
            ));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = ServerConfig::default();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.listen_addr().unwrap().to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn server_limits_have_upper_bounds() {
        let c: ServerConfig = serde_json::from_value(serde_json::json!({
            "limits": {
                "max_body_bytes": u64::MAX, "max_upload_bytes": u64::MAX,
                "header_read_timeout_ms": u64::MAX, "body_read_timeout_ms": u64::MAX,
                "max_concurrent_requests": u32::MAX, "max_connections": u32::MAX,
                "write_stall_timeout_ms": u64::MAX, "max_outbound_requests": u32::MAX
            }
        }))
        .unwrap();
        let p = c.validate();
        for (field, _, max) in SERVER_LIMIT_BOUNDS {
            let want = format!("server.limits.{field}: must be between 1 and {max}");
            assert!(p.iter().any(|e| e.starts_with(&want)), "{want}: {p:#?}");
        }
        assert_eq!(p.len(), SERVER_LIMIT_BOUNDS.len(), "{p:#?}");
        // The schema says the same.
        let schema = serde_json::to_value(schemars::schema_for!(ServerLimits)).unwrap();
        let props = &schema["properties"];
        for (field, min, max) in SERVER_LIMIT_BOUNDS {
            assert_eq!(props[field]["minimum"], *min, "{field}");
            assert_eq!(props[field]["maximum"], *max, "{field}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let c: ServerConfig = serde_json::from_value(serde_json::json!({
            "listen": "localhost",
            "limits": {"max_body_bytes": 0},
            "admin": {"tokens": [
                {"name": "a", "role": "admin", "token": {"value": "short"}},
                {"name": "a", "role": "read", "token": {"env": ""}}
            ]},
            "routes": {"bad/name": {"targets": []}, "ok": {"targets": ["nomodel", "Bad/x"]}}
        }))
        .unwrap();
        let p = c.validate();
        for want in [
            "server.listen",
            "server.limits.max_body_bytes",
            "server.admin.tokens[0].token.value",
            "server.admin.tokens[1].name",
            "server.admin.tokens[1].token.env",
            "server.routes.bad/name:",
            "server.routes.bad/name.targets",
            "server.routes.ok.targets[0]",
            "server.routes.ok.targets[1]",
        ] {
            assert!(p.iter().any(|e| e.starts_with(want)), "{want}: {p:#?}");
        }
        assert_eq!(p.len(), 9, "{p:#?}");
    }

    #[test]
    fn route_strategies_weights_and_retries_are_checked() {
        let c: ServerConfig = serde_json::from_value(serde_json::json!({
            "routes": {
                "ok": {"targets": ["a/x", "b/y", "c/z"], "strategy": "weighted", "weights": [3, 1, 1],
                       "retries": {"attempts": 2, "base_ms": 200, "max_ms": 2000, "budget_ms": 10000},
                       "context_window_fallback": true},
                "busy": {"targets": ["a/x", "b/y"], "strategy": "least-busy", "retries": {}},
                "fast": {"targets": ["a/x"], "strategy": "latency"},
                "w_len": {"targets": ["a/x", "b/y"], "strategy": "weighted", "weights": [1]},
                "w_zero": {"targets": ["a/x"], "strategy": "weighted", "weights": [0]},
                "w_strategy": {"targets": ["a/x"], "weights": [1]},
                "r_bad": {"targets": ["a/x"], "retries": {"attempts": 9, "base_ms": 0, "max_ms": 0, "budget_ms": 0}}
            }
        }))
        .unwrap();
        assert_eq!(c.routes["busy"].retries, Some(RouteRetries::default()));
        assert_eq!(c.routes["ok"].strategy, RouteStrategy::Weighted);
        let p = c.validate();
        for want in [
            "server.routes.w_len.weights: one weight per target",
            "server.routes.w_zero.weights: at least one",
            "server.routes.w_strategy.weights: only a \"weighted\"",
            "server.routes.r_bad.retries.attempts",
            "server.routes.r_bad.retries.base_ms",
            "server.routes.r_bad.retries.max_ms",
            "server.routes.r_bad.retries.budget_ms",
        ] {
            assert!(p.iter().any(|e| e.starts_with(want)), "{want}: {p:#?}");
        }
        assert_eq!(p.len(), 7, "{p:#?}");
        let e = serde_json::from_value::<RouteConfig>(
            serde_json::json!({"targets": ["a/x"], "strategy": "round-robin"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("round-robin"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_and_secrets_not_printed() {
        let e = serde_json::from_str::<ServerConfig>(r#"{"limits":{"max_body":1}}"#).unwrap_err();
        assert!(e.to_string().contains("max_body"));
        let t: AdminToken = serde_json::from_str(
            r#"{"name":"x","role":"read","token":{"value":"super-secret-value-123"}}"#,
        )
        .unwrap();
        assert!(!format!("{t:?}").contains("super-secret"));
        assert_eq!(t.token.resolve().unwrap(), "super-secret-value-123");
        assert!(SecretRef::Env("TAMMA_SURELY_UNSET_VAR".into())
            .resolve()
            .unwrap_err()
            .contains("TAMMA_SURELY_UNSET_VAR"));
    }
}
