//! Environment discovery: API key variables register the matching built-in
//! providers. The environment is injectable ([`Environment::from_map`]) so tests
//! never touch the process environment.
//!
//! | variable | provider name | built-in type | default `base_url` | override |
//! |---|---|---|---|---|
//! | `OPENAI_API_KEY` | `openai` | `openai` | `https://api.openai.com/v1` | `OPENAI_BASE_URL` |
//! | `ANTHROPIC_API_KEY` | `anthropic` | `anthropic` | `https://api.anthropic.com/v1` | `ANTHROPIC_BASE_URL` |
//! | `OPENROUTER_API_KEY` | `openrouter` | `openai` | `https://openrouter.ai/api/v1` | `OPENROUTER_BASE_URL` |
//!
//! The key becomes the secret `api_key` of the provider's egress policy (the
//! built-ins send it as `{{secret:api_key}}`); it is never put in the provider's
//! configuration and never logged. The only allowed host is the base URL's
//! `scheme://host[:port]`. An empty variable counts as unset.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::config::{Check, Problem};
use crate::registry::{ComponentSource, Origin};
use tamma_sandbox::egress::{AllowedHost, EgressLimits, EgressPolicy};
use tamma_sandbox::limits::Limits;
use tamma_sandbox::settings::ProviderSettings;

use super::{fingerprint, Candidate, Claim};

/// Where environment variables are read from. Cheap to clone; clones share the map.
#[derive(Clone, Default)]
pub struct Environment {
    map: Option<Arc<RwLock<BTreeMap<String, String>>>>,
}

impl Environment {
    /// The process environment, read at every discovery round.
    pub fn process() -> Self {
        Environment { map: None }
    }

    /// A fixed set of variables (tests, embedders). [`Environment::set`] changes it.
    pub fn from_map<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Environment {
            map: Some(Arc::new(RwLock::new(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ))),
        }
    }

    /// A variable's value; `None` when unset or not valid UTF-8.
    pub fn get(&self, name: &str) -> Option<String> {
        match &self.map {
            None => std::env::var(name).ok(),
            Some(m) => m
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .cloned(),
        }
    }

    /// A variable's value, `None` when unset or empty.
    pub fn non_empty(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Set a variable of a map environment (returns false for the process
    /// environment, which this never changes).
    pub fn set(&self, name: impl Into<String>, value: impl Into<String>) -> bool {
        match &self.map {
            None => false,
            Some(m) => {
                m.write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.into(), value.into());
                true
            }
        }
    }

    /// Remove a variable of a map environment.
    pub fn remove(&self, name: &str) -> bool {
        match &self.map {
            None => false,
            Some(m) => {
                m.write().unwrap_or_else(|p| p.into_inner()).remove(name);
                true
            }
        }
    }
}

impl fmt::Debug for Environment {
    // Never the values: they include API keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.map {
            None => f.write_str("Environment(process)"),
            Some(m) => f
                .debug_tuple("Environment")
                .field(
                    &m.read()
                        .unwrap_or_else(|p| p.into_inner())
                        .keys()
                        .collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

/// One provider environment discovery knows.
#[derive(Clone, Copy, Debug)]
pub struct EnvProvider {
    /// Registered under this name.
    pub name: &'static str,
    /// The API key variable.
    pub key_var: &'static str,
    /// The base URL override variable.
    pub base_url_var: &'static str,
    /// Built-in provider type.
    pub builtin: &'static str,
    /// `base_url` when not overridden.
    pub default_base_url: &'static str,
}

/// The `base_url` a built-in type uses when its configuration sets none.
pub(crate) fn builtin_default_base_url(builtin: &str) -> Option<&'static str> {
    ENV_PROVIDERS
        .iter()
        .find(|p| p.name == builtin && p.builtin == builtin)
        .map(|p| p.default_base_url)
}

/// The providers environment discovery registers.
pub const ENV_PROVIDERS: &[EnvProvider] = &[
    EnvProvider {
        name: "openai",
        key_var: "OPENAI_API_KEY",
        base_url_var: "OPENAI_BASE_URL",
        builtin: "openai",
        default_base_url: "https://api.openai.com/v1",
    },
    EnvProvider {
        name: "anthropic",
        key_var: "ANTHROPIC_API_KEY",
        base_url_var: "ANTHROPIC_BASE_URL",
        builtin: "anthropic",
        default_base_url: "https://api.anthropic.com/v1",
    },
    EnvProvider {
        name: "openrouter",
        key_var: "OPENROUTER_API_KEY",
        base_url_var: "OPENROUTER_BASE_URL",
        builtin: "openai",
        default_base_url: "https://openrouter.ai/api/v1",
    },
];

/// `scheme://host[:port]` of an http(s) URL, or why not.
pub(crate) fn origin_of_url(url: &str) -> Result<String, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let scheme = uri
        .scheme_str()
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| format!("`{url}` has no scheme (http:// or https://)"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("`{url}`: the scheme must be http or https"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host"))?
        .as_str();
    if authority.contains('@') {
        return Err("a base URL must not carry credentials".to_string());
    }
    let entry = format!("{scheme}://{authority}");
    AllowedHost::parse(&entry).map_err(|why| format!("`{url}`: {why}"))?;
    Ok(entry)
}

/// The claims of environment discovery, one per provider whose key is set.
pub(crate) fn scan(env: &Environment) -> Vec<(String, Claim)> {
    let mut out = Vec::new();
    for p in ENV_PROVIDERS {
        let Some(key) = env.non_empty(p.key_var) else {
            continue;
        };
        let location = format!("env:{}", p.key_var);
        out.push((
            p.name.to_string(),
            claim(p, &key, env.non_empty(p.base_url_var), location),
        ));
    }
    out
}

fn claim(p: &EnvProvider, key: &str, base_url: Option<String>, location: String) -> Claim {
    let invalid = |problems: Vec<Problem>| Claim::Invalid {
        origin: Origin::Environment,
        location: location.clone(),
        problems,
    };
    let base_url = match base_url {
        None => p.default_base_url.to_string(),
        Some(u) => {
            let u = u.trim_end_matches('/').to_string();
            // The Anthropic SDKs take the URL without `/v1`; the built-in wants it.
            if p.builtin == "anthropic" && !u.ends_with("/v1") {
                format!("{u}/v1")
            } else {
                u
            }
        }
    };
    let host = match origin_of_url(&base_url) {
        Ok(h) => h,
        Err(why) => return invalid(vec![Problem::new(p.base_url_var, None, Check::Host, why)]),
    };
    let mut secrets = BTreeMap::new();
    secrets.insert("api_key".to_string(), key.to_string());
    let bound = [("api_key".to_string(), vec![host.clone()])].into();
    let egress = match EgressPolicy::try_new(vec![host.clone()], secrets, EgressLimits::default())
        .and_then(|e| e.with_secret_hosts(bound))
    {
        Ok(e) => e,
        Err(e) => {
            // Messages name the secret, never its value.
            return invalid(
                e.problems
                    .into_iter()
                    .map(|m| Problem::new(p.key_var, None, Check::Secret, m))
                    .collect(),
            );
        }
    };
    let config = vec![("base_url".to_string(), base_url.clone())];
    let limits = Limits::default();
    let fp = fingerprint(&serde_json::json!({
        "origin": "environment",
        "builtin": p.builtin,
        "config": config,
        "limits": limits,
        "hosts": [host],
        "secret": super::secret_digest(key),
    }));
    Claim::Ready(Box::new(Candidate {
        name: p.name.to_string(),
        origin: Origin::Environment,
        location,
        source: ComponentSource::Builtin(p.builtin.to_string()),
        settings: ProviderSettings {
            config,
            limits,
            egress,
        },
        version: None,
        signature: None,
        fingerprint: fp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_urls() {
        assert_eq!(
            origin_of_url("https://api.openai.com/v1").unwrap(),
            "https://api.openai.com"
        );
        assert_eq!(
            origin_of_url("http://127.0.0.1:8080/v1").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin_of_url("HTTP://[::1]:9/x").unwrap(), "http://[::1]:9");
        assert!(origin_of_url("ftp://x").is_err());
        assert!(origin_of_url("https://user:pw@x.com").is_err());
        assert!(origin_of_url("no url").is_err());
    }

    #[test]
    fn debug_never_shows_values() {
        let env = Environment::from_map([("OPENAI_API_KEY", "sk-secret")]);
        let shown = format!("{env:?}");
        assert!(shown.contains("OPENAI_API_KEY") && !shown.contains("sk-secret"));
    }

    #[test]
    fn keys_register_providers_with_the_key_as_a_secret_only() {
        let env = Environment::from_map([
            ("OPENAI_API_KEY", "sk-1"),
            ("OPENROUTER_API_KEY", "or-1"),
            ("ANTHROPIC_API_KEY", ""),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1/"),
        ]);
        let claims = scan(&env);
        let names: Vec<&str> = claims.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["openai", "openrouter"]);
        let Claim::Ready(c) = &claims[0].1 else {
            panic!()
        };
        assert_eq!(
            c.settings.config,
            [(
                "base_url".to_string(),
                "http://127.0.0.1:9999/v1".to_string()
            )]
        );
        assert_eq!(c.settings.egress.allowed_hosts(), ["http://127.0.0.1:9999"]);
        assert_eq!(c.settings.egress.secret_names(), ["api_key"]);
        let Claim::Ready(c) = &claims[1].1 else {
            panic!()
        };
        assert_eq!(c.settings.config[0].1, "https://openrouter.ai/api/v1");
        assert_eq!(c.settings.egress.allowed_hosts(), ["https://openrouter.ai"]);
        assert!(matches!(&c.source, ComponentSource::Builtin(b) if b == "openai"));
    }

    #[test]
    fn anthropic_base_url_gets_v1_like_the_sdks() {
        let env = Environment::from_map([
            ("ANTHROPIC_API_KEY", "k"),
            ("ANTHROPIC_BASE_URL", "http://localhost:8080"),
        ]);
        let Claim::Ready(c) = &scan(&env)[0].1 else {
            panic!()
        };
        assert_eq!(c.settings.config[0].1, "http://localhost:8080/v1");
    }
}
