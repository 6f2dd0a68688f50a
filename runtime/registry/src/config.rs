//! The configuration file: its model, loading, validation and JSON Schema.
//!
//! One file (TOML, or JSON when its name ends in `.json`) declares providers and
//! the registry's settings. The format is documented in `docs/configuration.md`
//! and `examples/tamma.toml`; `tamma schema` prints the JSON Schema generated
//! from the types below.
//!
//! # Validation
//!
//! The file is first parsed into a document that remembers the line of every key
//! and value ([`doc`]); then each section, each provider and each field is checked
//! on its own, so *every* problem is reported at once, each with its path
//! (`providers.openai.limits.memory_mib`) and line:
//!
//! - syntax errors (all of them, when the parser can recover);
//! - unknown keys and wrong types (serde, field by field);
//! - out-of-range values (the types' own `validate()`, prefixed with the path);
//! - provider names, components (a built-in type, or a `.wasm` file that
//!   exists), allowed-host syntax, secret references (never inline values).
//!
//! Problems are split in two: file-level ones (syntax, a bad `[health]`, an
//! unknown top-level key) make the whole file unusable; a problem inside one
//! `[providers.NAME]` or `[plugins.NAME]` entry only disables that entry
//! ([`ConfigCheck::invalid_providers`]), so discovery can load the others and
//! keep the previous version of the bad one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::builtins::Builtins;
use crate::circuit_breaker::CircuitBreakerConfig;
use crate::registry_config::{HealthConfig, LifecycleConfig, RegistryConfig};
use crate::server_config::ServerConfig;
use tamma_sandbox::egress::{AllowedHost, EgressLimits};
use tamma_sandbox::error::{Error, ErrorCode};
use tamma_sandbox::limits::Limits;
use tamma_sandbox::sandbox::MAX_COMPONENT_BYTES;

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(title = "Tamma configuration file")]
pub struct Config {
    /// Providers, by name (the table key: 1-64 of `a-z 0-9 - _ .`).
    pub providers: BTreeMap<String, ProviderConfig>,
    /// What the operator grants to plugins found in the plugin directory, by
    /// plugin name: configuration, secrets, limits, extra hosts, or `enabled = false`.
    pub plugins: BTreeMap<String, PluginGrant>,
    /// Health monitoring (the registry's).
    pub health: HealthConfig,
    /// Circuit breaker, one per provider (the registry's).
    pub circuit_breaker: CircuitBreakerConfig,
    /// Lifecycle deadlines (the registry's).
    pub lifecycle: LifecycleConfig,
    /// Where else providers come from, and how often sources are re-read.
    pub discovery: DiscoveryConfig,
    /// `tamma serve`: the gateway and admin API.
    pub server: ServerConfig,
    /// Directory relative paths are resolved against (the file's own directory).
    #[serde(skip)]
    #[schemars(skip)]
    pub base_dir: PathBuf,
}

/// One provider declared in the configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A built-in provider type (`echo`, `openai`, `anthropic`) or the path of a
    /// `.wasm` component (relative paths are resolved against the file's directory).
    pub component: String,
    /// Whether to register it. `false` also keeps lower-precedence sources
    /// (plugin directory, environment) from registering a provider of this name.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Configuration passed to the provider's `initialize` (strings only). Never
    /// secrets: those go under `secrets`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets the host substitutes into the provider's outbound requests
    /// (`{{secret:NAME}}`), by reference only: `{ env = "VAR" }` or `{ file = "/path" }`.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Sandbox limits; fields left out keep their defaults.
    #[serde(default)]
    pub limits: Limits,
    /// Hosts the provider may connect to (`https://api.openai.com`, see the egress docs).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Limits on outbound HTTP (timeouts, body size, concurrent requests).
    #[serde(default)]
    pub egress: EgressLimits,
}

/// What the configuration file grants to a plugin from the plugin directory. A
/// plugin gets nothing beyond its manifest unless granted here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginGrant {
    /// `false` keeps the plugin from loading.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Configuration values; they override the manifest's defaults key by key.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets, by reference (`{ env = "VAR" }` / `{ file = "/path" }`). A
    /// plugin has none unless granted here.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Limits replacing the manifest's (which may only lower the defaults).
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Hosts allowed in addition to those the manifest asks for.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl Default for PluginGrant {
    fn default() -> Self {
        PluginGrant {
            enabled: true,
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            limits: None,
            allowed_hosts: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Where a secret's value comes from. Values are never written in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum SecretRef {
    /// An environment variable of the `tamma` process.
    #[serde(rename = "env")]
    Env(String),
    /// A file (e.g. `/run/secrets/key`); one trailing newline is ignored.
    #[serde(rename = "file")]
    File(PathBuf),
}

/// The `[discovery]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Register built-in providers for `OPENAI_API_KEY`, `ANTHROPIC_API_KEY` and
    /// `OPENROUTER_API_KEY`. Default true.
    pub environment: bool,
    /// Directory of plugins (`NAME.wasm` + `NAME.toml`), relative to this file's
    /// directory. Default: none.
    pub plugin_dir: Option<PathBuf>,
    /// How often the file and the plugin directory are re-read, ms; 0 = never
    /// (changes need `tamma` to be told). Default 5 000.
    pub auto_refresh_ms: u64,
    /// Largest plugin component accepted, bytes. Default 64 MiB (the sandbox's maximum).
    pub max_plugin_bytes: u64,
}

/// Smallest accepted non-zero `auto_refresh_ms`.
pub const MIN_AUTO_REFRESH_MS: u64 = 10;

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            environment: true,
            plugin_dir: None,
            auto_refresh_ms: 5_000,
            max_plugin_bytes: MAX_COMPONENT_BYTES as u64,
        }
    }
}

impl DiscoveryConfig {
    /// Every problem, as `field: reason` (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.auto_refresh_ms != 0 && self.auto_refresh_ms < MIN_AUTO_REFRESH_MS {
            p.push(format!(
                "auto_refresh_ms: must be 0 (off) or at least {MIN_AUTO_REFRESH_MS}, got {}",
                self.auto_refresh_ms
            ));
        }
        if !(1..=MAX_COMPONENT_BYTES as u64).contains(&self.max_plugin_bytes) {
            p.push(format!(
                "max_plugin_bytes: must be between 1 and {MAX_COMPONENT_BYTES}, got {}",
                self.max_plugin_bytes
            ));
        }
        p
    }

    /// The auto-refresh interval, `None` when off.
    pub fn auto_refresh(&self) -> Option<std::time::Duration> {
        (self.auto_refresh_ms > 0).then(|| std::time::Duration::from_millis(self.auto_refresh_ms))
    }
}

/// A provider's component, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComponentRef {
    /// A built-in provider type.
    Builtin(String),
    /// A component file (absolute, or relative to the working directory when the
    /// configuration did not come from a file).
    Path(PathBuf),
}

/// Whether `component` names a file (a path) rather than a built-in type.
fn is_path(component: &str) -> bool {
    component.ends_with(".wasm") || component.contains('/') || component.contains('\\')
}

impl ProviderConfig {
    /// The component, with a relative path resolved against `base_dir`.
    pub fn component_ref(&self, base_dir: &Path) -> ComponentRef {
        if is_path(&self.component) {
            ComponentRef::Path(base_dir.join(&self.component))
        } else {
            ComponentRef::Builtin(self.component.clone())
        }
    }
}

impl Config {
    /// The registry's settings from this file.
    pub fn registry_config(&self) -> RegistryConfig {
        RegistryConfig {
            health: self.health.clone(),
            circuit_breaker: self.circuit_breaker.clone(),
            lifecycle: self.lifecycle.clone(),
        }
    }

    /// `path` resolved against the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The plugin directory, resolved.
    pub fn plugin_dir(&self) -> Option<PathBuf> {
        self.discovery
            .plugin_dir
            .as_deref()
            .map(|p| self.resolve(p))
    }

    /// The JSON Schema of the file, generated from these types.
    pub fn json_schema() -> serde_json::Value {
        let schema = schemars::schema_for!(Config);
        let mut value = serde_json::to_value(schema).unwrap_or_default();
        // Provider names follow the registry's rule.
        for table in ["providers", "plugins"] {
            if let Some(obj) = value
                .pointer_mut(&format!("/properties/{table}"))
                .and_then(|v| v.as_object_mut())
            {
                obj.insert(
                    "propertyNames".into(),
                    serde_json::json!({ "pattern": "^[a-z0-9._-]{1,64}$" }),
                );
            }
        }
        value
    }

    /// Load and check a file strictly: any problem is an `INVALID_CONFIG` error
    /// listing every one (`path (line N): message`).
    pub fn load(path: &Path, builtins: &Builtins) -> tamma_sandbox::error::Result<Config> {
        let check = Config::check_file(path, builtins);
        match (check.config, check.problems.is_empty()) {
            (Some(config), true) => Ok(config),
            _ => Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "{}: {}",
                    path.display(),
                    check
                        .problems
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )),
        }
    }

    /// Read and check a file (TOML, or JSON when it ends in `.json`).
    pub fn check_file(path: &Path, builtins: &Builtins) -> ConfigCheck {
        match std::fs::read(path) {
            Ok(bytes) => Config::check_bytes(&bytes, path, builtins),
            Err(e) => ConfigCheck::failed(Problem::new(
                display_path(path),
                None,
                Check::Io,
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }

    /// Check the contents of a file named `path` (used for the format and for
    /// resolving relative paths; not read).
    pub fn check_bytes(bytes: &[u8], path: &Path, builtins: &Builtins) -> ConfigCheck {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                return ConfigCheck::failed(Problem::new(
                    display_path(path),
                    Some(line_of(bytes, e.valid_up_to())),
                    Check::Syntax,
                    "the file is not valid UTF-8".to_string(),
                ))
            }
        };
        let format = Format::of(path);
        let base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        Config::check_str(text, format, &base_dir, &display_path(path), builtins)
    }

    /// Check a configuration text. `origin` names it in syntax problems.
    pub fn check_str(
        text: &str,
        format: Format,
        base_dir: &Path,
        origin: &str,
        builtins: &Builtins,
    ) -> ConfigCheck {
        let root = match doc::parse(text, format) {
            Ok(root) => root,
            Err(errors) => {
                return ConfigCheck {
                    config: None,
                    problems: errors
                        .into_iter()
                        .map(|(line, msg)| {
                            Problem::new(origin.to_string(), line, Check::Syntax, msg)
                        })
                        .collect(),
                    invalid_providers: BTreeSet::new(),
                    invalid_plugins: BTreeSet::new(),
                }
            }
        };
        check_document(&root, base_dir, builtins)
    }
}

/// The file's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// TOML (the default).
    Toml,
    /// JSON (files ending in `.json`).
    Json,
}

impl Format {
    /// By extension: `.json` is JSON, anything else TOML.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Toml,
        }
    }
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}

// ---------------------------------------------------------------------------
// Problems
// ---------------------------------------------------------------------------

/// Which check a problem comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The file cannot be read.
    Io,
    /// The file does not parse.
    Syntax,
    /// An unknown key, a wrong type, a missing required key.
    Schema,
    /// A value out of its range.
    Range,
    /// A bad provider name.
    Name,
    /// A component that is missing, unknown, or does not satisfy the provider world.
    Component,
    /// An inline secret, or a secret reference that cannot be resolved.
    Secret,
    /// A malformed allowed host.
    Host,
    /// A plugin manifest that is missing or invalid.
    Manifest,
    /// A plugin component over the size cap.
    Size,
    /// A plugin component whose SHA-256 does not match its manifest.
    Sha256,
    /// A discovered provider hidden by a higher-precedence source.
    Shadowed,
    /// A name already taken by a provider that discovery does not own.
    Conflict,
    /// Registration or replacement failed (initialize, limits, ...).
    Load,
    /// A setting that only takes effect after a restart.
    Restart,
}

/// One problem: where (a dotted path and, when known, a line) and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Dotted path (`providers.openai.limits.memory_mib`), or a file name.
    pub path: String,
    /// 1-based line in the file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Which check failed.
    pub check: Check,
    /// What is wrong. Never holds a secret value.
    pub message: String,
}

impl Problem {
    /// A problem.
    pub fn new(
        path: impl Into<String>,
        line: Option<usize>,
        check: Check,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            path: path.into(),
            line,
            check,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// The outcome of checking a configuration.
#[derive(Clone, Debug)]
pub struct ConfigCheck {
    /// The configuration, `None` when the file cannot be used at all (syntax,
    /// or a problem outside the provider entries). Entries with problems are
    /// left out of `providers` / `plugins` (see `invalid_*`).
    pub config: Option<Config>,
    /// Every problem, in line order.
    pub problems: Vec<Problem>,
    /// `[providers.NAME]` entries that have problems.
    pub invalid_providers: BTreeSet<String>,
    /// `[plugins.NAME]` entries that have problems.
    pub invalid_plugins: BTreeSet<String>,
}

impl ConfigCheck {
    fn failed(problem: Problem) -> Self {
        ConfigCheck {
            config: None,
            problems: vec![problem],
            invalid_providers: BTreeSet::new(),
            invalid_plugins: BTreeSet::new(),
        }
    }

    /// Whether there is no problem at all.
    pub fn is_ok(&self) -> bool {
        self.config.is_some() && self.problems.is_empty()
    }
}

/// Join path segments with dots, quoting segments that hold a dot (as TOML does).
pub(crate) fn join_path(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|s| {
            if s.is_empty()
                || s.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            {
                format!("{s:?}")
            } else {
                s.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

// ---------------------------------------------------------------------------
// The line-remembering document
// ---------------------------------------------------------------------------

/// A parsed TOML or JSON document that remembers where each key and value is.
pub(crate) mod doc {
    use super::{line_of, Format};

    /// A value and the line it starts on.
    #[derive(Clone, Debug)]
    pub(crate) struct Node {
        pub line: usize,
        pub kind: Kind,
    }

    #[derive(Clone, Debug)]
    pub(crate) enum Kind {
        Table(Vec<Entry>),
        Array(Vec<Node>),
        Scalar(serde_json::Value),
    }

    /// A key, its line, its value.
    #[derive(Clone, Debug)]
    pub(crate) struct Entry {
        pub key: String,
        pub line: usize,
        pub node: Node,
    }

    impl Node {
        pub fn entries(&self) -> Option<&[Entry]> {
            match &self.kind {
                Kind::Table(e) => Some(e),
                _ => None,
            }
        }

        pub fn get(&self, key: &str) -> Option<&Entry> {
            self.entries()?.iter().rev().find(|e| e.key == key)
        }

        /// The line of the deepest key of `path` that exists.
        pub fn locate(&self, path: &[&str]) -> Option<usize> {
            let mut node = self;
            let mut line = None;
            for seg in path {
                if let Kind::Array(items) = &node.kind {
                    match seg
                        .strip_prefix('[')
                        .and_then(|s| s.strip_suffix(']'))
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| items.get(i))
                    {
                        Some(item) => {
                            line = Some(item.line);
                            node = item;
                            continue;
                        }
                        None => break,
                    }
                }
                match node.get(seg) {
                    Some(e) => {
                        line = Some(e.line);
                        node = &e.node;
                    }
                    None => break,
                }
            }
            line
        }

        pub fn type_name(&self) -> &'static str {
            match &self.kind {
                Kind::Table(_) => "a table",
                Kind::Array(_) => "an array",
                Kind::Scalar(serde_json::Value::String(_)) => "a string",
                Kind::Scalar(serde_json::Value::Bool(_)) => "a boolean",
                Kind::Scalar(serde_json::Value::Number(n)) if n.is_f64() => "a float",
                Kind::Scalar(serde_json::Value::Number(_)) => "an integer",
                Kind::Scalar(serde_json::Value::Null) => "null",
                Kind::Scalar(_) => "a value",
            }
        }

        pub fn as_str(&self) -> Option<&str> {
            match &self.kind {
                Kind::Scalar(serde_json::Value::String(s)) => Some(s),
                _ => None,
            }
        }

        pub fn to_json(&self) -> serde_json::Value {
            match &self.kind {
                Kind::Scalar(v) => v.clone(),
                Kind::Array(items) => items.iter().map(Node::to_json).collect(),
                Kind::Table(entries) => serde_json::Value::Object(
                    entries
                        .iter()
                        .map(|e| (e.key.clone(), e.node.to_json()))
                        .collect(),
                ),
            }
        }
    }

    /// Parse, or every syntax error found as (line, message).
    pub(crate) fn parse(text: &str, format: Format) -> Result<Node, Vec<(Option<usize>, String)>> {
        match format {
            Format::Toml => parse_toml(text),
            Format::Json => parse_json(text).map_err(|e| vec![e]),
        }
    }

    fn parse_toml(text: &str) -> Result<Node, Vec<(Option<usize>, String)>> {
        use toml::de::{DeTable, DeValue};
        let (root, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            return Err(errors
                .iter()
                .map(|e| {
                    (
                        e.span().map(|s| line_of(text.as_bytes(), s.start)),
                        e.message().trim().to_string(),
                    )
                })
                .collect());
        }
        fn value(text: &str, v: &toml::Spanned<DeValue<'_>>) -> Node {
            let line = line_of(text.as_bytes(), v.span().start);
            let scalar = |j: serde_json::Value| Node {
                line,
                kind: Kind::Scalar(j),
            };
            match v.get_ref() {
                DeValue::String(s) => scalar(serde_json::Value::String(s.to_string())),
                DeValue::Integer(i) => {
                    let n = i64::from_str_radix(i.as_str(), i.radix())
                        .map(serde_json::Value::from)
                        .or_else(|_| {
                            u64::from_str_radix(i.as_str(), i.radix()).map(serde_json::Value::from)
                        })
                        .unwrap_or_else(|_| serde_json::Value::String(i.to_string()));
                    scalar(n)
                }
                DeValue::Float(f) => scalar(
                    f.as_str()
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(serde_json::Value::Number)
                        .unwrap_or_else(|| serde_json::Value::String(f.as_str().to_string())),
                ),
                DeValue::Boolean(b) => scalar(serde_json::Value::Bool(*b)),
                DeValue::Datetime(d) => scalar(serde_json::Value::String(d.to_string())),
                DeValue::Array(items) => Node {
                    line,
                    kind: Kind::Array(items.iter().map(|i| value(text, i)).collect()),
                },
                DeValue::Table(t) => table(text, t, line),
            }
        }
        fn table(text: &str, t: &DeTable<'_>, line: usize) -> Node {
            let mut entries: Vec<Entry> = t
                .iter()
                .map(|(k, v)| Entry {
                    key: k.get_ref().to_string(),
                    line: line_of(text.as_bytes(), k.span().start),
                    node: value(text, v),
                })
                .collect();
            entries.sort_by_key(|e| e.line);
            Node {
                line,
                kind: Kind::Table(entries),
            }
        }
        Ok(table(text, root.get_ref(), 1))
    }

    fn parse_json(text: &str) -> Result<Node, (Option<usize>, String)> {
        // serde_json first, for its precise messages; then a small walker that
        // only records lines (the text is known to be valid JSON by then).
        if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
            let msg = e.to_string();
            let msg = msg
                .rsplit_once(" at line ")
                .map(|(m, _)| m.to_string())
                .unwrap_or(msg);
            return Err((Some(e.line()), msg));
        }
        let mut w = Walker {
            s: text.as_bytes(),
            text,
            i: 0,
            line: 1,
        };
        w.value()
            .ok_or((None, "unexpected JSON structure".to_string()))
    }

    struct Walker<'a> {
        s: &'a [u8],
        text: &'a str,
        i: usize,
        line: usize,
    }

    impl Walker<'_> {
        fn ws(&mut self) {
            while let Some(&b) = self.s.get(self.i) {
                match b {
                    b'\n' => self.line += 1,
                    b' ' | b'\t' | b'\r' => {}
                    _ => break,
                }
                self.i += 1;
            }
        }

        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        fn string(&mut self) -> Option<String> {
            let start = self.i;
            self.i += 1;
            while let Some(&b) = self.s.get(self.i) {
                match b {
                    b'\\' => self.i += 2,
                    b'"' => {
                        self.i += 1;
                        return serde_json::from_str(&self.text[start..self.i]).ok();
                    }
                    _ => self.i += 1,
                }
            }
            None
        }

        fn value(&mut self) -> Option<Node> {
            self.ws();
            let line = self.line;
            match self.peek()? {
                b'{' => {
                    self.i += 1;
                    let mut entries = Vec::new();
                    loop {
                        self.ws();
                        match self.peek()? {
                            b'}' => {
                                self.i += 1;
                                break;
                            }
                            b',' => {
                                self.i += 1;
                                continue;
                            }
                            _ => {}
                        }
                        let key_line = self.line;
                        let key = self.string()?;
                        self.ws();
                        if self.peek()? != b':' {
                            return None;
                        }
                        self.i += 1;
                        let node = self.value()?;
                        entries.push(Entry {
                            key,
                            line: key_line,
                            node,
                        });
                    }
                    Some(Node {
                        line,
                        kind: Kind::Table(entries),
                    })
                }
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    loop {
                        self.ws();
                        match self.peek()? {
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            b',' => {
                                self.i += 1;
                                continue;
                            }
                            _ => items.push(self.value()?),
                        }
                    }
                    Some(Node {
                        line,
                        kind: Kind::Array(items),
                    })
                }
                b'"' => Some(Node {
                    line,
                    kind: Kind::Scalar(serde_json::Value::String(self.string()?)),
                }),
                _ => {
                    let start = self.i;
                    while let Some(&b) = self.s.get(self.i) {
                        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.') {
                            self.i += 1;
                        } else {
                            break;
                        }
                    }
                    let v: serde_json::Value =
                        serde_json::from_str(&self.text[start..self.i]).ok()?;
                    Some(Node {
                        line,
                        kind: Kind::Scalar(v),
                    })
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------

use doc::{Kind, Node};

/// Collects problems against one document.
pub(crate) struct Checker<'a> {
    pub root: &'a Node,
    pub problems: Vec<Problem>,
    /// What `component = "<type>"` may name.
    pub builtins: &'a Builtins,
}

impl<'a> Checker<'a> {
    pub fn new(root: &'a Node, builtins: &'a Builtins) -> Self {
        Checker {
            root,
            builtins,
            problems: Vec::new(),
        }
    }

    pub fn push(&mut self, path: &[&str], check: Check, message: impl Into<String>) {
        self.problems.push(Problem::new(
            join_path(path),
            self.root.locate(path),
            check,
            message,
        ));
    }

    /// `node` must be a table; else a problem and `None`.
    pub fn table<'n>(&mut self, node: &'n Node, path: &[&str]) -> Option<&'n [doc::Entry]> {
        match node.entries() {
            Some(e) => Some(e),
            None => {
                self.push(
                    path,
                    Check::Schema,
                    format!("must be a table, got {}", node.type_name()),
                );
                None
            }
        }
    }

    /// Deserialize a section whose type has defaults for every field (on
    /// failure each key is tried on its own, so every bad key is reported), then
    /// range-check it (`validate`, lines relative to the section). The range checks also run on the keys that deserialized
    /// when others did not, so one run reports both kinds.
    pub fn checked<T: DeserializeOwned>(
        &mut self,
        node: &Node,
        path: &[&str],
        validate: impl Fn(&T) -> Vec<String>,
    ) -> Option<T> {
        let entries = self.table(node, path)?;
        let before = self.problems.len();
        let value = match serde_json::from_value::<T>(node.to_json()) {
            Ok(v) => Some(v),
            Err(whole) => {
                let mut good = serde_json::Map::new();
                for e in entries {
                    let one = serde_json::json!({ e.key.clone(): e.node.to_json() });
                    match serde_json::from_value::<T>(one) {
                        Ok(_) => {
                            good.insert(e.key.clone(), e.node.to_json());
                        }
                        Err(err) => {
                            let mut p = path.to_vec();
                            p.push(&e.key);
                            self.push(&p, Check::Schema, clean_serde(&err.to_string()));
                        }
                    }
                }
                if self.problems.len() == before {
                    self.push(path, Check::Schema, clean_serde(&whole.to_string()));
                }
                serde_json::from_value::<T>(serde_json::Value::Object(good)).ok()
            }
        };
        if let Some(v) = &value {
            self.validated(path, validate(v));
        }
        value.filter(|_| self.problems.len() == before)
    }

    /// Map `validate()` lines (`field: reason`, `a.b: reason` or `field reason`)
    /// to problems under `path`.
    pub fn validated(&mut self, path: &[&str], lines: Vec<String>) {
        for l in lines {
            let ident_len = l
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(l.len());
            let (ident, rest) = l.split_at(ident_len);
            let mut full: Vec<&str> = path.to_vec();
            full.extend(ident.split('.').filter(|s| !s.is_empty()));
            let message = match rest.strip_prefix(':') {
                Some(m) => m.trim().to_string(),
                None => l.clone(),
            };
            self.push(&full, Check::Range, message);
        }
    }

    /// A map of string to string (`config` tables), every bad value reported.
    pub fn string_map(&mut self, node: &Node, path: &[&str]) -> Option<BTreeMap<String, String>> {
        let entries = self.table(node, path)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for e in entries {
            let mut p = path.to_vec();
            p.push(&e.key);
            if e.key.is_empty() {
                self.push(&p, Check::Schema, "empty key");
                ok = false;
            }
            match e.node.as_str() {
                Some(s) => {
                    out.insert(e.key.clone(), s.to_string());
                }
                None => {
                    self.push(
                        &p,
                        Check::Schema,
                        format!("must be a string, got {} (quote it)", e.node.type_name()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// An array of strings.
    pub fn string_list(&mut self, node: &Node, path: &[&str]) -> Option<Vec<String>> {
        let Kind::Array(items) = &node.kind else {
            self.push(
                path,
                Check::Schema,
                format!("must be an array of strings, got {}", node.type_name()),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s.to_string()),
                None => {
                    let idx = format!("[{i}]");
                    let mut p = path.to_vec();
                    p.push(&idx);
                    self.push(
                        &p,
                        Check::Schema,
                        format!("must be a string, got {}", item.type_name()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Allowed hosts: strings in the egress syntax.
    pub fn allowed_hosts(&mut self, node: &Node, path: &[&str]) -> Option<Vec<String>> {
        let hosts = self.string_list(node, path)?;
        let mut ok = true;
        for (i, h) in hosts.iter().enumerate() {
            if let Err(why) = AllowedHost::parse(h) {
                let idx = format!("[{i}]");
                let mut p = path.to_vec();
                p.push(&idx);
                self.push(&p, Check::Host, format!("`{h}`: {why}"));
                ok = false;
            }
        }
        ok.then_some(hosts)
    }

    /// Secret references. Values are never echoed.
    pub fn secrets(&mut self, node: &Node, path: &[&str]) -> Option<BTreeMap<String, SecretRef>> {
        let entries = self.table(node, path)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for e in entries {
            let mut p = path.to_vec();
            p.push(&e.key);
            if !valid_secret_name(&e.key) {
                self.push(
                    &p,
                    Check::Secret,
                    "secret names are 1-128 of A-Z a-z 0-9 _ - .",
                );
                ok = false;
            }
            match self.secret_ref(&e.node, &p) {
                Some(r) => {
                    out.insert(e.key.clone(), r);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn secret_ref(&mut self, node: &Node, path: &[&str]) -> Option<SecretRef> {
        const HOW: &str = "give `{ env = \"VAR\" }` or `{ file = \"/path\" }`";
        let Some(entries) = node.entries() else {
            let msg = if node.as_str().is_some() {
                format!("inline secret values are not allowed (the value is not shown); {HOW}")
            } else {
                format!("must be a table, got {}; {HOW}", node.type_name())
            };
            self.push(path, Check::Secret, msg);
            return None;
        };
        if entries.len() != 1 {
            self.push(
                path,
                Check::Secret,
                format!("must have exactly one of `env` or `file`; {HOW}"),
            );
            return None;
        }
        let e = &entries[0];
        let mut p = path.to_vec();
        p.push(&e.key);
        let Some(v) = e.node.as_str() else {
            self.push(
                &p,
                Check::Secret,
                format!("must be a string, got {}", e.node.type_name()),
            );
            return None;
        };
        match e.key.as_str() {
            "env" => {
                let valid = !v.is_empty()
                    && !v.starts_with(|c: char| c.is_ascii_digit())
                    && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    self.push(
                        &p,
                        Check::Secret,
                        format!("`{v}` is not an environment variable name"),
                    );
                    return None;
                }
                Some(SecretRef::Env(v.to_string()))
            }
            "file" if !v.is_empty() => Some(SecretRef::File(PathBuf::from(v))),
            "file" => {
                self.push(&p, Check::Secret, "must not be empty");
                None
            }
            other => {
                self.push(&p, Check::Secret, format!("unknown key `{other}`; {HOW}"));
                None
            }
        }
    }

    /// Unknown keys of a hand-checked table.
    pub fn unknown_key(&mut self, path: &[&str], key: &str, expected: &[&str]) {
        let mut p = path.to_vec();
        p.push(key);
        self.push(
            &p,
            Check::Schema,
            format!(
                "unknown key `{key}`, expected one of {}",
                expected
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
}

/// Same rule as the egress policy's.
pub(crate) fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// serde_json messages, with "field" spoken as "key".
fn clean_serde(msg: &str) -> String {
    redact_values(
        &msg.replace("unknown field", "unknown key")
            .replace("missing field", "missing key"),
    )
}

/// Drop the offending *values* serde quotes in its messages (`unknown variant
/// `sk-…``, `invalid type: string "…"`): a value in the wrong place may be a
/// secret, such as an admin token written inline. Key names are kept.
fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(pos) = [
        "variant ",
        "string ",
        "integer ",
        "floating point ",
        "char ",
    ]
    .iter()
    .filter_map(|m| rest.find(m).map(|i| i + m.len()))
    .min()
    {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        let close = match rest.chars().next() {
            Some('`') => '`',
            Some('"') => '"',
            _ => continue,
        };
        match rest[1..].find(close) {
            Some(end) => {
                out.push_str("(value hidden)");
                rest = &rest[end + 2..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// Keys of `[providers.NAME]`.
pub(crate) const PROVIDER_KEYS: &[&str] = &[
    "component",
    "enabled",
    "config",
    "secrets",
    "limits",
    "allowed_hosts",
    "egress",
];
/// Keys of `[plugins.NAME]`.
pub(crate) const PLUGIN_KEYS: &[&str] =
    &["enabled", "config", "secrets", "limits", "allowed_hosts"];
/// Top-level keys.
pub(crate) const TOP_KEYS: &[&str] = &[
    "providers",
    "plugins",
    "health",
    "circuit_breaker",
    "lifecycle",
    "discovery",
    "server",
];

fn check_document(root: &Node, base_dir: &Path, builtins: &Builtins) -> ConfigCheck {
    let mut c = Checker::new(root, builtins);
    let mut config = Config {
        base_dir: base_dir.to_path_buf(),
        ..Config::default()
    };
    let mut file_ok = true;
    let mut invalid_providers = BTreeSet::new();
    let mut invalid_plugins = BTreeSet::new();

    let Some(entries) = c.table(root, &[]) else {
        return ConfigCheck {
            config: None,
            problems: c.problems,
            invalid_providers,
            invalid_plugins,
        };
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

/// `RegistryConfig::validate` lines of one section, relative to it.
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
    let mut pc = ProviderConfig {
        component: String::new(),
        enabled: true,
        config: BTreeMap::new(),
        secrets: BTreeMap::new(),
        limits: Limits::default(),
        allowed_hosts: Vec::new(),
        egress: EgressLimits::default(),
    };
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
            "enabled" => match &e.node.kind {
                Kind::Scalar(serde_json::Value::Bool(b)) => pc.enabled = *b,
                _ => c.push(
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

/// Built-in provider types the format knows (a build may lack some).
pub const BUILTIN_TYPES: &[&str] = &["echo", "openai", "anthropic"];

fn check_component(c: &mut Checker<'_>, path: &[&str], component: &str, base_dir: &Path) {
    if component.is_empty() {
        c.push(path, Check::Component, "must not be empty");
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
            "enabled" => match &e.node.kind {
                Kind::Scalar(serde_json::Value::Bool(b)) => g.enabled = *b,
                _ => c.push(
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
            other => c.unknown_key(&path, other, PLUGIN_KEYS),
        }
        if c.problems.len() > before {
            ok = false;
        }
    }
    ok.then_some(g)
}

#[cfg(test)]
mod redaction_tests {
    use super::redact_values;

    #[test]
    fn values_in_serde_messages_are_hidden_keys_are_kept() {
        assert_eq!(
            redact_values("unknown variant `sk-secret-123`, expected one of `env`, `file`"),
            "unknown variant (value hidden), expected one of `env`, `file`"
        );
        assert_eq!(
            redact_values("invalid type: string \"hunter2\", expected a table"),
            "invalid type: string (value hidden), expected a table"
        );
        assert_eq!(redact_values("unknown key `listn`"), "unknown key `listn`");
        assert_eq!(
            redact_values("invalid type: integer `42`"),
            "invalid type: integer (value hidden)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalogue `tamma` builds with (the bytes are never read here).
    fn builtins() -> Builtins {
        static EMBEDDED: &[(&str, &[u8])] = &[("echo", b""), ("openai", b""), ("anthropic", b"")];
        Builtins::from_static(EMBEDDED)
    }

    fn check(text: &str) -> ConfigCheck {
        Config::check_str(
            text,
            Format::Toml,
            Path::new("/cfg"),
            "tamma.toml",
            &builtins(),
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
    fn syntax_errors_have_lines() {
        let c = check("[providers.a]\ncomponent = \n");
        assert_eq!(c.problems[0].check, Check::Syntax);
        assert_eq!(c.problems[0].line, Some(2));
    }

    #[test]
    fn json_is_accepted_with_lines() {
        let text = "{\n  \"providers\": {\n    \"bot\": {\n      \"component\": \"echo\",\n      \"limits\": { \"memory_mib\": 0 }\n    }\n  }\n}\n";
        let c = Config::check_str(text, Format::Json, Path::new("."), "t.json", &builtins());
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert_eq!(c.problems[0].path, "providers.bot.limits.memory_mib");
        assert_eq!(c.problems[0].line, Some(5));
        let bad = Config::check_str(
            "{\n \"a\": ,\n}",
            Format::Json,
            Path::new("."),
            "t.json",
            &builtins(),
        );
        assert_eq!(bad.problems[0].line, Some(2));
    }

    #[test]
    fn names_with_dots_are_quoted_in_paths() {
        assert_eq!(
            join_path(&["providers", "a.b", "limits"]),
            "providers.\"a.b\".limits"
        );
    }

    #[test]
    fn the_schema_covers_every_section() {
        let s = Config::json_schema();
        let props = s["properties"].as_object().unwrap();
        let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
        keys.sort();
        let mut want = TOP_KEYS.to_vec();
        want.sort();
        assert_eq!(keys, want);
        let text = s.to_string();
        for k in PROVIDER_KEYS.iter().chain(PLUGIN_KEYS) {
            assert!(text.contains(&format!("\"{k}\"")), "{k}");
        }
        assert!(text.contains("monitoring_period_ms"));
    }
}
