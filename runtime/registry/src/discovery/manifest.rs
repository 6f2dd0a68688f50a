//! Plugin manifests: `NAME.toml` beside `NAME.wasm` in the plugin directory.
//!
//! ```toml
//! name = "reply-bot"          # must equal NAME (the file name)
//! version = "1.2.0"
//! description = "Answers with a fixed prefix"
//! sha256 = "5f0c…"            # SHA-256 of NAME.wasm, hex
//! allowed_hosts = ["https://api.example.com"]
//!
//! [limits]                    # may only lower the defaults
//! memory_mib = 64
//!
//! [config]                    # default configuration (strings)
//! reply = "hello"
//! ```
//!
//! Instead of `NAME.wasm` beside it, a manifest may name a component in an OCI
//! registry, `component = "oci://HOST[:PORT]/REPO:TAG@sha256:DIGEST"`, pulled as
//! the configuration file's are (cached by digest; the registry login is the
//! operator's `[plugins.NAME.registry_credentials]`). The reference's digest
//! then pins the bytes, so `sha256` is left out.
//!
//! A manifest grants no more than the defaults: limits above the default need
//! the operator's `[plugins.NAME.limits]` in the configuration file, and
//! secrets exist only through `[plugins.NAME.secrets]`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::checker::Checker;
use crate::config::document::{self, Entry};
use crate::config::{Check, Format, Problem};
use tamma_sandbox::limits::Limits;

/// A plugin's manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginManifest {
    /// The provider name; must equal the file name without `.toml`.
    pub name: String,
    /// The plugin's version (shown in the provider's metadata).
    pub version: String,
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// SHA-256 of `NAME.wasm`, 64 hex digits. A component that does not match is
    /// not loaded (it may be half-written) and is retried on the next round.
    /// Required unless `component` names an OCI reference (empty then).
    #[serde(default)]
    pub sha256: String,
    /// `oci://HOST[:PORT]/REPO:TAG@sha256:DIGEST`: the component is pulled from
    /// an OCI registry instead of read from `NAME.wasm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Hosts the plugin may connect to.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Limits; each may only be at or below its default.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Default configuration values (strings).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

const KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "sha256",
    "component",
    "allowed_hosts",
    "limits",
    "config",
];

impl PluginManifest {
    /// Parse and check a manifest's text. `file_name` (e.g. `bot.toml`) is
    /// where problems point and gives the expected name.
    pub fn parse(text: &str, file_name: &str) -> Result<PluginManifest, Vec<Problem>> {
        let expected = file_name.strip_suffix(".toml").unwrap_or(file_name);
        let prefix = |mut p: Problem| {
            p.path = if p.path.is_empty() {
                file_name.to_string()
            } else {
                format!("{file_name}:{}", p.path)
            };
            p
        };
        let root = document::parse(text, Format::Toml).map_err(|errors| {
            errors
                .into_iter()
                .map(|(line, msg)| Problem::new(file_name, line, Check::Manifest, msg))
                .collect::<Vec<_>>()
        })?;
        // A manifest names no built-in components.
        let no_builtins = crate::builtins::Builtins::default();
        let mut c = Checker::new(&root, &no_builtins);
        let mut m = PluginManifest {
            name: String::new(),
            version: String::new(),
            description: String::new(),
            sha256: String::new(),
            component: None,
            allowed_hosts: Vec::new(),
            limits: None,
            config: BTreeMap::new(),
        };
        let Some(entries) = c.table(&root, &[]) else {
            return Err(c.problems.into_iter().map(prefix).collect());
        };
        let string = |c: &mut Checker<'_>, e: &Entry| -> Option<String> {
            match e.node.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    c.push(
                        &[e.key.as_str()],
                        Check::Schema,
                        format!("must be a string, got {}", e.node.type_name()),
                    );
                    None
                }
            }
        };
        for e in entries {
            let p = [e.key.as_str()];
            match e.key.as_str() {
                "name" => {
                    if let Some(s) = string(&mut c, e) {
                        if s != expected {
                            c.push(&p, Check::Name, format!("`{s}` does not match the file name `{file_name}` (expected `{expected}`)"));
                        } else if let Err(err) = crate::registry::validate_name(&s) {
                            c.push(&p, Check::Name, err.message);
                        }
                        m.name = s;
                    }
                }
                "version" => {
                    if let Some(s) = string(&mut c, e) {
                        if s.is_empty() || s.len() > 64 {
                            c.push(&p, Check::Range, "must be 1-64 characters");
                        }
                        m.version = s;
                    }
                }
                "description" => {
                    if let Some(s) = string(&mut c, e) {
                        m.description = s;
                    }
                }
                "sha256" => {
                    if let Some(s) = string(&mut c, e) {
                        let s = s.to_ascii_lowercase();
                        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                            c.push(&p, Check::Schema, "must be 64 hex digits (the SHA-256 of the component)");
                        }
                        m.sha256 = s;
                    }
                }
                "component" => {
                    if let Some(s) = string(&mut c, e) {
                        if !crate::oci::OciReference::is_oci(&s) {
                            c.push(&p, Check::Component, format!("must be an oci://… reference (a local component is {expected}.wasm beside the manifest)"));
                        } else if let Err(err) = crate::oci::OciReference::parse(&s) {
                            c.push(&p, Check::Component, err.message);
                        }
                        m.component = Some(s);
                    }
                }
                "allowed_hosts" => {
                    if let Some(h) = c.allowed_hosts(&e.node, &p) {
                        m.allowed_hosts = h;
                    }
                }
                "limits" => {
                    let v = c.checked(&e.node, &p, |l: &Limits| {
                        let mut lines = l.validate();
                        lines.extend(above_defaults(l));
                        lines
                    });
                    if let Some(l) = v {
                        m.limits = Some(l);
                    }
                }
                "config" => {
                    if let Some(map) = c.string_map(&e.node, &p) {
                        m.config = map;
                    }
                }
                "secrets" => c.push(
                    &p,
                    Check::Secret,
                    format!("a manifest cannot carry secrets; the operator grants them in the configuration file's [plugins.{expected}.secrets]"),
                ),
                other => c.unknown_key(&[], other, KEYS),
            }
        }
        let has = |key: &str| entries.iter().any(|e| e.key == key);
        for required in ["name", "version"] {
            if !has(required) {
                c.push(&[], Check::Schema, format!("missing key `{required}`"));
            }
        }
        match (has("sha256"), has("component")) {
            (false, false) => c.push(
                &[],
                Check::Schema,
                format!("missing key `sha256` (the SHA-256 of {expected}.wasm), or `component = \"oci://…\"`"),
            ),
            (true, true) => c.push(
                &["sha256"],
                Check::Schema,
                "with `component = \"oci://…\"` the reference's @sha256: digest pins the component; remove `sha256`",
            ),
            _ => {}
        }
        if c.problems.is_empty() {
            Ok(m)
        } else {
            let mut problems: Vec<Problem> = c.problems.into_iter().map(prefix).collect();
            for p in &mut problems {
                // Whatever failed inside the manifest, the check that failed is the manifest.
                if p.check != Check::Secret {
                    p.check = Check::Manifest;
                }
            }
            Err(problems)
        }
    }

    /// Read and check a manifest file.
    pub fn read(path: &Path) -> Result<PluginManifest, Vec<Problem>> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Problem::new(
                file_name.clone(),
                None,
                Check::Manifest,
                format!("cannot read {}: {e}", path.display()),
            )]
        })?;
        PluginManifest::parse(&text, &file_name)
    }

    /// The JSON Schema of a manifest.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(PluginManifest)).unwrap_or_default()
    }
}

/// The SHA-256 of a component, as a manifest's `sha256` wants it (lowercase hex).
pub fn component_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A manifest may only lower limits: more than the default is the operator's call.
fn above_defaults(l: &Limits) -> Vec<String> {
    let d = Limits::default();
    let mut out = Vec::new();
    let mut check = |field: &str, v: u64, max: u64| {
        if v > max {
            out.push(format!(
                "{field}: {v} is above the default {max}; a plugin may only lower limits (raise it in the configuration file's [plugins.NAME.limits])"
            ));
        }
    };
    check("fuel", l.fuel, d.fuel);
    check("memory_mib", l.memory_mib, d.memory_mib);
    check("timeout_ms", l.timeout_ms, d.timeout_ms);
    check("init_timeout_ms", l.init_timeout_ms, d.init_timeout_ms);
    check(
        "dispose_timeout_ms",
        l.dispose_timeout_ms,
        d.dispose_timeout_ms,
    );
    check(
        "max_concurrency",
        l.max_concurrency.into(),
        d.max_concurrency.into(),
    );
    check("queue_timeout_ms", l.queue_timeout_ms, d.queue_timeout_ms);
    check(
        "max_response_bytes",
        l.max_response_bytes,
        d.max_response_bytes,
    );
    check(
        "max_log_bytes_per_call",
        l.max_log_bytes_per_call,
        d.max_log_bytes_per_call,
    );
    check(
        "max_log_records_per_call",
        l.max_log_records_per_call.into(),
        d.max_log_records_per_call.into(),
    );
    check(
        "max_table_elements",
        l.max_table_elements.into(),
        d.max_table_elements.into(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn a_good_manifest_parses() {
        let m = PluginManifest::parse(
            &format!(
                "name = \"bot\"\nversion = \"1\"\nsha256 = \"{SHA}\"\n[config]\nreply = \"hi\"\n"
            ),
            "bot.toml",
        )
        .unwrap();
        assert_eq!(m.config["reply"], "hi");
        assert!(m.limits.is_none());
    }

    #[test]
    fn every_problem_is_listed_with_lines() {
        let err = PluginManifest::parse(
            "name = \"other\"\nsha256 = \"xyz\"\ncolour = 1\n[limits]\nmemory_mib = 4096\n[secrets]\nk = 1\n",
            "bot.toml",
        )
        .unwrap_err();
        let shown: Vec<String> = err.iter().map(|p| p.to_string()).collect();
        let has = |s: &str| shown.iter().any(|p| p.starts_with(s));
        assert!(
            has("bot.toml:name (line 1): `other` does not match"),
            "{shown:#?}"
        );
        assert!(has("bot.toml:sha256 (line 2)"), "{shown:#?}");
        assert!(has("bot.toml:colour (line 3): unknown key"), "{shown:#?}");
        assert!(
            has("bot.toml:limits.memory_mib (line 5): 4096 is above the default"),
            "{shown:#?}"
        );
        assert!(
            has("bot.toml:secrets (line 6): a manifest cannot carry secrets"),
            "{shown:#?}"
        );
        assert!(has("bot.toml: missing key `version`"), "{shown:#?}");
    }

    #[test]
    fn a_manifest_may_name_an_oci_component_instead_of_a_sha256() {
        let pinned = format!("oci://127.0.0.1:5000/acme/bot:1@sha256:{}", "a".repeat(64));
        let m = PluginManifest::parse(
            &format!("name = \"bot\"\nversion = \"1\"\ncomponent = \"{pinned}\"\n"),
            "bot.toml",
        )
        .unwrap();
        assert_eq!(m.component.as_deref(), Some(pinned.as_str()));
        let shown = |text: &str| -> Vec<String> {
            PluginManifest::parse(text, "bot.toml")
                .unwrap_err()
                .iter()
                .map(|p| p.to_string())
                .collect()
        };
        let both = shown(&format!(
            "name = \"bot\"\nversion = \"1\"\nsha256 = \"{SHA}\"\ncomponent = \"{pinned}\"\n"
        ));
        assert!(both[0].contains("remove `sha256`"), "{both:?}");
        let path = shown("name = \"bot\"\nversion = \"1\"\ncomponent = \"bot.wasm\"\n");
        assert!(path[0].contains("must be an oci://"), "{path:?}");
        let neither = shown("name = \"bot\"\nversion = \"1\"\n");
        assert!(neither[0].contains("or `component"), "{neither:?}");
    }

    #[test]
    fn a_truncated_manifest_is_a_manifest_problem() {
        let err = PluginManifest::parse("name = \"bot\"\nversion = \"1", "bot.toml").unwrap_err();
        assert_eq!(err[0].check, Check::Manifest);
    }
}
