//! The per-section checks: each top-level section, each `[providers.NAME]` and
//! each `[plugins.NAME]` entry checked on its own, turning a document into a
//! [`Config`] (what is usable of it) and every problem found.

use std::collections::BTreeSet;
use std::path::Path;

use super::checker::Checker;
use super::discovery::DiscoveryConfig;
use super::document::Node;
use super::problem::{Check, ConfigCheck};
use super::provider::{is_path, PluginGrant, ProviderConfig, RegistryCredentials, BUILTIN_TYPES};
use super::server::ServerConfig;
use super::Config;
use crate::builtins::Builtins;
use crate::circuit_breaker::CircuitBreakerConfig;
use crate::registry_config::{HealthConfig, LifecycleConfig, RegistryConfig};
use tamma_sandbox::egress::EgressLimits;
use tamma_sandbox::limits::Limits;
use tamma_sandbox::sandbox::MAX_COMPONENT_BYTES;

/// Keys of `[providers.NAME]`.
pub(crate) const PROVIDER_KEYS: &[&str] = &[
    "component",
    "enabled",
    "config",
    "secrets",
    "limits",
    "allowed_hosts",
    "egress",
    "registry_credentials",
];
/// Keys of `[plugins.NAME]`.
pub(crate) const PLUGIN_KEYS: &[&str] = &[
    "enabled",
    "config",
    "secrets",
    "limits",
    "allowed_hosts",
    "registry_credentials",
];
/// Top-level keys.
pub(crate) const TOP_KEYS: &[&str] = &[
    "providers",
    "plugins",
    "health",
    "circuit_breaker",
    "lifecycle",
    "discovery",
    "server",
    "trust",
];

/// Check a whole document: every problem, and the usable part of it.
pub(super) fn check_document(root: &Node, base_dir: &Path, builtins: &Builtins) -> ConfigCheck {
    let mut c = Checker::new(root, builtins);
    let mut config = Config {
        base_dir: base_dir.to_path_buf(),
        ..Config::default()
    };
    let mut file_ok = true;
    let mut invalid_providers = BTreeSet::new();
    let mut invalid_plugins = BTreeSet::new();

    let Some(entries) = c.table(root, &[]) else {
        return ConfigCheck::failed(c.problems);
    };
    for e in entries {
        let before = c.problems.len();
        let path = [e.key.as_str()];
        match e.key.as_str() {
            "providers" => {
                if let Some(list) = c.table(&e.node, &path) {
                    for p in list {
                        let mark = c.problems.len();
                        if let Some(pc) = check_provider(&mut c, &p.key, &p.node, base_dir) {
                            config.providers.insert(p.key.clone(), pc);
                        }
                        if c.problems.len() > mark {
                            invalid_providers.insert(p.key.clone());
                        }
                    }
                } else {
                    file_ok = false;
                }
                continue;
            }
            "plugins" => {
                if let Some(list) = c.table(&e.node, &path) {
                    for p in list {
                        let mark = c.problems.len();
                        if let Some(g) = check_plugin_grant(&mut c, &p.key, &p.node) {
                            config.plugins.insert(p.key.clone(), g);
                        }
                        if c.problems.len() > mark {
                            invalid_plugins.insert(p.key.clone());
                        }
                    }
                } else {
                    file_ok = false;
                }
                continue;
            }
            "health" => {
                let validate =
                    registry_section("health", |rc, v: &HealthConfig| rc.health = v.clone());
                if let Some(v) = c.checked(&e.node, &path, validate) {
                    config.health = v;
                }
            }
            "circuit_breaker" => {
                let validate =
                    registry_section("circuit_breaker", |rc, v: &CircuitBreakerConfig| {
                        rc.circuit_breaker = v.clone()
                    });
                if let Some(v) = c.checked(&e.node, &path, validate) {
                    config.circuit_breaker = v;
                }
            }
            "lifecycle" => {
                let validate = registry_section("lifecycle", |rc, v: &LifecycleConfig| {
                    rc.lifecycle = v.clone()
                });
                if let Some(v) = c.checked(&e.node, &path, validate) {
                    config.lifecycle = v;
                }
            }
            "trust" => {
                if let Some(v) = c.checked(&e.node, &path, crate::trust::TrustConfig::validate) {
                    config.trust = v;
                }
            }
            "discovery" => {
                if let Some(v) = c.checked(&e.node, &path, DiscoveryConfig::validate) {
                    config.discovery = v;
                }
            }
            "server" => {
                let v = c.checked(&e.node, &path, |s: &ServerConfig| {
                    s.validate()
                        .into_iter()
                        .map(|l| l.strip_prefix("server.").map(String::from).unwrap_or(l))
                        .collect()
                });
                if let Some(v) = v {
                    config.server = v;
                }
            }
            other => c.unknown_key(&[], other, TOP_KEYS),
        }
        if c.problems.len() > before {
            file_ok = false;
        }
    }
    let mut problems = c.problems;
    problems.sort_by_key(|p| p.line.unwrap_or(0));
    ConfigCheck {
        config: file_ok.then_some(config),
        problems,
        invalid_providers,
        invalid_plugins,
    }
}

/// The validation of one registry section (`health`, ...): what
/// [`RegistryConfig::validate`] finds in a registry configuration that has the
/// section `set` to the value checked and every other section at its default.
fn registry_section<T>(
    section: &'static str,
    set: impl Fn(&mut RegistryConfig, &T),
) -> impl Fn(&T) -> Vec<String> {
    move |value| {
        let mut rc = RegistryConfig::default();
        set(&mut rc, value);
        let prefix = format!("{section}.");
        rc.validate()
            .into_iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(String::from))
            .collect()
    }
}

/// One `[providers.NAME]` entry; `None` when it has a problem.
fn check_provider(
    c: &mut Checker<'_>,
    name: &str,
    node: &Node,
    base_dir: &Path,
) -> Option<ProviderConfig> {
    let path = ["providers", name];
    let mut ok = true;
    if let Err(e) = crate::registry::validate_name(name) {
        c.push(&path, Check::Name, e.message);
        ok = false;
    }
    let entries = c.table(node, &path)?;
    let mut pc = ProviderConfig::new(String::new());
    let mut has_component = false;
    for e in entries {
        let p = ["providers", name, e.key.as_str()];
        let before = c.problems.len();
        match e.key.as_str() {
            "component" => match e.node.as_str() {
                Some(s) => {
                    has_component = true;
                    pc.component = s.to_string();
                    check_component(c, &p, s, base_dir);
                }
                None => c.push(
                    &p,
                    Check::Schema,
                    format!("must be a string, got {}", e.node.type_name()),
                ),
            },
            "enabled" => match e.node.as_bool() {
                Some(b) => pc.enabled = b,
                None => c.push(
                    &p,
                    Check::Schema,
                    format!("must be a boolean, got {}", e.node.type_name()),
                ),
            },
            "config" => {
                if let Some(m) = c.string_map(&e.node, &p) {
                    for k in m.keys() {
                        if looks_like_secret(k) {
                            let kp = ["providers", name, "config", k.as_str()];
                            c.push(
                                &kp,
                                Check::Secret,
                                format!("`{k}` looks like a secret: give it under [providers.{name}.secrets] as {{ env = \"VAR\" }} or {{ file = \"/path\" }}"),
                            );
                        }
                    }
                    pc.config = m;
                }
            }
            "secrets" => {
                if let Some(s) = c.secrets(&e.node, &p) {
                    pc.secrets = s;
                }
            }
            "limits" => {
                if let Some(l) = c.checked(&e.node, &p, Limits::validate) {
                    pc.limits = l;
                }
            }
            "allowed_hosts" => {
                if let Some(h) = c.allowed_hosts(&e.node, &p) {
                    pc.allowed_hosts = h;
                }
            }
            "egress" => {
                if let Some(l) = c.checked(&e.node, &p, EgressLimits::validate) {
                    pc.egress = l;
                }
            }
            "registry_credentials" => {
                if let Some(r) = c.checked(&e.node, &p, |_: &RegistryCredentials| Vec::new()) {
                    pc.registry_credentials = Some(r);
                }
            }
            other => c.unknown_key(&path, other, PROVIDER_KEYS),
        }
        if c.problems.len() > before {
            ok = false;
        }
    }
    if !has_component && !entries.iter().any(|e| e.key == "component") {
        c.push(
            &path,
            Check::Schema,
            format!(
                "missing key `component`: a built-in provider type ({}) or the path of a .wasm file",
                BUILTIN_TYPES.join(", ")
            ),
        );
        ok = false;
    }
    ok.then_some(pc)
}

/// A provider's `component`: a built-in type of this build, or a `.wasm` file
/// that exists and is not over the size cap.
fn check_component(c: &mut Checker<'_>, path: &[&str], component: &str, base_dir: &Path) {
    if component.is_empty() {
        c.push(path, Check::Component, "must not be empty");
    } else if crate::oci::OciReference::is_oci(component) {
        if let Err(e) = crate::oci::OciReference::parse(component) {
            c.push(path, Check::Component, e.message);
        }
    } else if is_path(component) {
        let file = base_dir.join(component);
        if !component.ends_with(".wasm") {
            c.push(
                path,
                Check::Component,
                format!("`{component}`: a component file must end in .wasm"),
            );
        } else {
            match std::fs::metadata(&file) {
                Ok(m) if m.is_file() => {
                    if m.len() > MAX_COMPONENT_BYTES as u64 {
                        c.push(
                            path,
                            Check::Component,
                            format!(
                                "{} is {} bytes; the limit is {MAX_COMPONENT_BYTES}",
                                file.display(),
                                m.len()
                            ),
                        );
                    }
                }
                Ok(_) => c.push(
                    path,
                    Check::Component,
                    format!("{} is not a file", file.display()),
                ),
                Err(e) => c.push(
                    path,
                    Check::Component,
                    format!("cannot read {}: {e}", file.display()),
                ),
            }
        }
    } else if !c.builtins.contains(component) {
        let have = c.builtins.names();
        let msg = if BUILTIN_TYPES.contains(&component) {
            format!(
                "built-in provider type `{component}` is not in this build (it has: {})",
                have.join(", ")
            )
        } else {
            format!(
                "unknown built-in provider type `{component}` (known: {}); a component file must end in .wasm",
                BUILTIN_TYPES.join(", ")
            )
        };
        c.push(path, Check::Component, msg);
    }
}

/// Configuration keys that are plainly secrets (the built-in providers refuse them too).
fn looks_like_secret(key: &str) -> bool {
    matches!(
        key.to_ascii_lowercase().as_str(),
        "api_key" | "apikey" | "api-key" | "password" | "secret" | "token" | "access_token"
    )
}

/// One `[plugins.NAME]` entry; `None` when it has a problem.
fn check_plugin_grant(c: &mut Checker<'_>, name: &str, node: &Node) -> Option<PluginGrant> {
    let path = ["plugins", name];
    let mut ok = true;
    if let Err(e) = crate::registry::validate_name(name) {
        c.push(&path, Check::Name, e.message);
        ok = false;
    }
    let entries = c.table(node, &path)?;
    let mut g = PluginGrant::default();
    for e in entries {
        let p = ["plugins", name, e.key.as_str()];
        let before = c.problems.len();
        match e.key.as_str() {
            "enabled" => match e.node.as_bool() {
                Some(b) => g.enabled = b,
                None => c.push(
                    &p,
                    Check::Schema,
                    format!("must be a boolean, got {}", e.node.type_name()),
                ),
            },
            "config" => {
                if let Some(m) = c.string_map(&e.node, &p) {
                    g.config = m;
                }
            }
            "secrets" => {
                if let Some(s) = c.secrets(&e.node, &p) {
                    g.secrets = s;
                }
            }
            "limits" => {
                if let Some(l) = c.checked(&e.node, &p, Limits::validate) {
                    g.limits = Some(l);
                }
            }
            "allowed_hosts" => {
                if let Some(h) = c.allowed_hosts(&e.node, &p) {
                    g.allowed_hosts = h;
                }
            }
            "registry_credentials" => {
                if let Some(r) = c.checked(&e.node, &p, |_: &RegistryCredentials| Vec::new()) {
                    g.registry_credentials = Some(r);
                }
            }
            other => c.unknown_key(&path, other, PLUGIN_KEYS),
        }
        if c.problems.len() > before {
            ok = false;
        }
    }
    ok.then_some(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{test_builtins, Format, SecretRef, SecretSpec};

    fn check(text: &str) -> ConfigCheck {
        Config::check_str(
            text,
            Format::Toml,
            Path::new("/cfg"),
            "tamma.toml",
            &test_builtins(),
        )
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c = check("");
        assert!(c.is_ok(), "{:?}", c.problems);
        let cfg = c.config.unwrap();
        assert_eq!(cfg.registry_config(), RegistryConfig::default());
        assert!(cfg.discovery.environment);
    }

    #[test]
    fn every_problem_is_reported_with_path_and_line() {
        let c = check(
            r#"
[health]
interval_ms = "soon"
jitter = 3.0

[providers.bot]
component = "echo"
colour = "blue"

[providers.bot.limits]
memory_mib = 100000
fuel = -1

[providers.bot.secrets]
api_key = "sk-not-shown"
"#,
        );
        let shown: Vec<String> = c.problems.iter().map(|p| p.to_string()).collect();
        let has = |s: &str| shown.iter().any(|p| p.starts_with(s));
        assert!(
            has("health.interval_ms (line 3): invalid type"),
            "{shown:#?}"
        );
        assert!(
            has("providers.bot.colour (line 8): unknown key `colour`"),
            "{shown:#?}"
        );
        assert!(
            has("providers.bot.limits.fuel (line 12): invalid value"),
            "{shown:#?}"
        );
        assert!(
            has("providers.bot.secrets.api_key (line 15): inline secret"),
            "{shown:#?}"
        );
        assert!(!shown.iter().any(|p| p.contains("sk-not-shown")));
        assert!(c.config.is_none(), "a bad [health] makes the file unusable");
        assert!(c.invalid_providers.contains("bot"));
    }

    #[test]
    fn secrets_may_name_their_hosts() {
        let c = check(
            r#"
[providers.bot]
component = "openai"
allowed_hosts = ["https://api.openai.com", "https://telemetry.example.com"]
secrets = { api_key = { env = "OPENAI_API_KEY", hosts = ["https://api.openai.com"] }, org = { file = "org.txt" } }
"#,
        );
        assert!(c.is_ok(), "{:?}", c.problems);
        let cfg = c.config.unwrap();
        let secrets = &cfg.providers["bot"].secrets;
        assert_eq!(
            secrets["api_key"],
            SecretSpec {
                from: SecretRef::Env("OPENAI_API_KEY".into()),
                hosts: Some(vec!["https://api.openai.com".into()]),
            }
        );
        assert_eq!(secrets["org"].hosts, None);

        let c = check(
            "[providers.bot]\ncomponent = \"echo\"\n[providers.bot.secrets]\n\
             a = { env = \"A\", hosts = [] }\nb = { env = \"B\", hosts = [\"ftp://x\"] }\n\
             c = { hosts = [\"https://x.example\"] }\n",
        );
        let shown: Vec<String> = c.problems.iter().map(|p| p.to_string()).collect();
        let has = |s: &str| shown.iter().any(|p| p.starts_with(s));
        assert!(
            has("providers.bot.secrets.a.hosts (line 4): must name at least one host"),
            "{shown:#?}"
        );
        assert!(
            shown
                .iter()
                .any(|p| p.starts_with("providers.bot.secrets.b.hosts") && p.contains("ftp")),
            "{shown:#?}"
        );
        assert!(
            has("providers.bot.secrets.c (line 6): must have exactly one of `env` or `file`"),
            "{shown:#?}"
        );
    }

    #[test]
    fn range_checks_carry_the_path() {
        let c = check(
            "[providers.bot]\ncomponent = \"echo\"\n[providers.bot.limits]\nmemory_mib = 100000\n",
        );
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert_eq!(c.problems[0].path, "providers.bot.limits.memory_mib");
        assert_eq!(c.problems[0].line, Some(4));
        assert_eq!(c.problems[0].check, Check::Range);
        // Provider-level problems leave the rest of the file usable.
        let cfg = c.config.unwrap();
        assert!(cfg.providers.is_empty());
    }

    #[test]
    fn circuit_breaker_problems_map_to_their_field() {
        let c = check("[circuit_breaker]\nhalf_open_max_probes = 1\nsuccess_threshold = 2\n");
        assert_eq!(c.problems[0].path, "circuit_breaker.success_threshold");
        assert_eq!(c.problems[0].line, Some(3));
    }

    #[test]
    fn the_breaker_failure_rate_mode_is_read_and_checked() {
        let c = check(
            "[circuit_breaker]\nmode = \"rate\"\nfailure_rate_threshold = 25\nminimum_calls = 50\n",
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let cb = c.config.unwrap().circuit_breaker;
        assert_eq!(cb.mode, crate::circuit_breaker::BreakerMode::Rate);
        assert_eq!((cb.failure_rate_threshold, cb.minimum_calls), (25, 50));
        let c = check("[circuit_breaker]\nmode = \"rate\"\nfailure_rate_threshold = 101\n");
        assert_eq!(c.problems[0].path, "circuit_breaker.failure_rate_threshold");
        assert_eq!(c.problems[0].line, Some(3));
        let c = check("[circuit_breaker]\nmode = \"ratio\"\n");
        assert_eq!(
            c.problems[0].path, "circuit_breaker.mode",
            "{:?}",
            c.problems
        );
    }

    #[test]
    fn a_root_that_is_not_a_table_makes_the_file_unusable() {
        let c = Config::check_str(
            "[1, 2]",
            Format::Json,
            Path::new("."),
            "t.json",
            &test_builtins(),
        );
        assert!(c.config.is_none());
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert_eq!(c.problems[0].message, "must be a table, got an array");
    }
}
