//! `[providers.NAME]` and `[plugins.NAME]` entries: what a provider is made of
//! (its component, configuration, secret references, limits, hosts) and what
//! the operator grants a plugin from the plugin directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use tamma_sandbox::egress::EgressLimits;
use tamma_sandbox::limits::Limits;

/// Built-in provider types the format knows (a build may lack some).
pub const BUILTIN_TYPES: &[&str] = &["echo", "openai", "anthropic"];

/// One provider declared in the configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A built-in provider type (`echo`, `openai`, `anthropic`), the path of a
    /// `.wasm` component (relative paths are resolved against the file's
    /// directory), or a registry reference
    /// `oci://HOST[:PORT]/REPO:TAG@sha256:DIGEST` (pin the digest: without it a
    /// warning is logged and replicas may run different bytes).
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
    /// (`{{secret:NAME}}`), by reference only: `{ env = "VAR" }` or `{ file = "/path" }`,
    /// optionally with the hosts each may be sent to (`hosts = ["https://api.openai.com"]`).
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSpec>,
    /// Sandbox limits; fields left out keep their defaults.
    #[serde(default)]
    pub limits: Limits,
    /// Hosts the provider may connect to (`https://api.openai.com`, see the egress docs).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Limits on outbound HTTP (timeouts, body size, concurrent requests).
    #[serde(default)]
    pub egress: EgressLimits,
    /// Credentials for the OCI registry an `oci://` component is pulled from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_credentials: Option<RegistryCredentials>,
}

/// `registry_credentials = { username = "ci", password = { env = "REGISTRY_TOKEN" } }`:
/// the password by reference only, like every secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    /// The user name.
    pub username: String,
    /// The password or token: `{ env = "VAR" }` or `{ file = "/path" }`.
    pub password: SecretRef,
}

impl ProviderConfig {
    /// An entry naming `component`, every other field at its default.
    pub(crate) fn new(component: String) -> Self {
        ProviderConfig {
            component,
            enabled: true,
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            limits: Limits::default(),
            allowed_hosts: Vec::new(),
            egress: EgressLimits::default(),
            registry_credentials: None,
        }
    }

    /// The component, with a relative path resolved against `base_dir`.
    pub fn component_ref(&self, base_dir: &Path) -> ComponentRef {
        if crate::oci::OciReference::is_oci(&self.component) {
            ComponentRef::Oci(self.component.clone())
        } else if is_path(&self.component) {
            ComponentRef::Path(base_dir.join(&self.component))
        } else {
            ComponentRef::Builtin(self.component.clone())
        }
    }
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
    /// Secrets, by reference (`{ env = "VAR" }` / `{ file = "/path" }`), optionally
    /// with `hosts`. A plugin has none unless granted here.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSpec>,
    /// Limits replacing the manifest's (which may only lower the defaults).
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Hosts allowed in addition to those the manifest asks for.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Credentials for the OCI registry, when the manifest's `component` is an
    /// `oci://` reference to a registry behind a login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_credentials: Option<RegistryCredentials>,
}

impl Default for PluginGrant {
    fn default() -> Self {
        PluginGrant {
            enabled: true,
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            limits: None,
            allowed_hosts: Vec::new(),
            registry_credentials: None,
        }
    }
}

/// serde's default for `enabled` (serde takes a function, not a value).
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

/// One secret of a provider: where its value comes from and, optionally, the
/// only hosts it may be sent to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretSpec {
    /// Where the value comes from.
    #[serde(flatten)]
    pub from: SecretRef,
    /// The hosts (allowed-host syntax) whose requests may carry it; a placeholder
    /// in a request to any other host is refused before connecting. Left out: the
    /// built-in `openai` / `anthropic` bind it to their `base_url`'s host, any
    /// other component may send it to every host it is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub hosts: Option<Vec<String>>,
}

impl SecretSpec {
    /// A secret from `from`, not bound to hosts.
    pub fn new(from: SecretRef) -> Self {
        SecretSpec { from, hosts: None }
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
    /// A registry reference, `oci://…` (parsed when it is pulled).
    Oci(String),
}

/// Whether `component` names a file (a path) rather than a built-in type.
pub(crate) fn is_path(component: &str) -> bool {
    component.ends_with(".wasm") || component.contains('/') || component.contains('\\')
}
