//! Provider discovery: the configuration file, the plugin directory and the
//! environment, kept in step with the registry while the process runs.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Discovery`]: one round (scan every source, then apply the differences), reports, validation |
//! | [`file`](mod@file) | providers declared in the configuration file |
//! | `plugins.rs` | the plugin directory and its checks |
//! | [`manifest`] | plugin manifests |
//! | [`env`](mod@env) | API-key environment variables, and the injectable [`Environment`] |
//! | `reload.rs` | auto-refresh (polling) |
//!
//! # Precedence
//!
//! A name claimed by several sources goes to the first of: **configuration
//! file > plugin directory > environment**. The file is the operator's explicit
//! word (`enabled = false` there also keeps a plugin or a key variable from
//! registering that name); a plugin is an explicit act of installing something;
//! a key variable is the most implicit. The losers are reported as `shadowed`.
//!
//! # Rounds
//!
//! Each round (`discover_all`, `refresh`, or a tick of auto-refresh) reads every
//! source, decides what each provider should be, and applies the differences:
//! new → `register`, changed → `replace` (atomic: the new version initializes
//! before it takes over, running calls finish on the old one), gone →
//! `unregister`. What counts as "changed" is a fingerprint of the component's
//! bytes (or built-in type), configuration, limits, hosts and secret values.
//!
//! Failures never spread: a source that cannot be read, a file that does not
//! parse, a provider entry with problems, or a plugin that is half-written keeps
//! whatever was running under that name, and is reported (log, a
//! `provider-error` event, and the round's [`RefreshReport`]). A failed
//! version is not retried until it changes. Discovery only ever touches
//! providers it registered itself: a name registered through the API is left
//! alone (`conflict`), and a provider of ours that someone unregistered is not
//! brought back until its source changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Check, Config, ConfigCheck, Problem, SecretRef, SecretSpec};
use crate::events::Event;
use crate::registry::{ComponentSource, Origin, Registration, Registry};
use tamma_sandbox::error::{Error, ErrorCode};
use tamma_sandbox::settings::ProviderSettings;

pub mod env;
pub mod file;
pub mod manifest;
mod plugins;
mod reload;

pub use env::{EnvProvider, Environment, ENV_PROVIDERS};
pub use manifest::{component_sha256, PluginManifest};

// ---------------------------------------------------------------------------
// What sources want
// ---------------------------------------------------------------------------

/// A provider a source wants registered, ready to register.
pub(crate) struct Candidate {
    pub name: String,
    pub origin: Origin,
    pub location: String,
    pub source: ComponentSource,
    pub settings: ProviderSettings,
    pub version: Option<String>,
    /// The `.minisig` beside the component file, if any.
    pub signature: Option<String>,
    pub fingerprint: String,
}

/// What one source says about one name.
pub(crate) enum Claim {
    /// Register (or keep) this.
    Ready(Box<Candidate>),
    /// Declared, but unusable now: whatever runs under the name keeps running.
    Invalid {
        origin: Origin,
        location: String,
        problems: Vec<Problem>,
    },
    /// Declared with `enabled = false`: not registered, and lower sources may not take the name.
    Disabled { origin: Origin, location: String },
    /// Seen but claims nothing (a `.wasm` without a manifest).
    Ignored {
        origin: Origin,
        location: String,
        problems: Vec<Problem>,
    },
}

impl Claim {
    fn origin(&self) -> Origin {
        match self {
            Claim::Ready(c) => c.origin,
            Claim::Invalid { origin, .. }
            | Claim::Disabled { origin, .. }
            | Claim::Ignored { origin, .. } => *origin,
        }
    }

    fn location(&self) -> &str {
        match self {
            Claim::Ready(c) => &c.location,
            Claim::Invalid { location, .. }
            | Claim::Disabled { location, .. }
            | Claim::Ignored { location, .. } => location,
        }
    }

    fn report(&self, name: &str) -> ProviderReport {
        let (status, problems) = match self {
            Claim::Ready(_) => (ProviderStatus::Ok, Vec::new()),
            Claim::Invalid { problems, .. } | Claim::Ignored { problems, .. } => {
                (ProviderStatus::Invalid, problems.clone())
            }
            Claim::Disabled { .. } => (ProviderStatus::Disabled, Vec::new()),
        };
        ProviderReport {
            name: name.to_string(),
            source: self.origin(),
            location: self.location().to_string(),
            status,
            problems,
        }
    }
}

/// A stable digest of a JSON description of a provider.
pub(crate) fn fingerprint(v: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// A digest standing for a secret's value in fingerprints (never shown anywhere).
pub(crate) fn secret_digest(value: &str) -> String {
    hex::encode(Sha256::digest(format!("tamma-secret\0{value}").as_bytes()))
}

pub(crate) fn secrets_digest(secrets: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    secrets
        .iter()
        .map(|(k, v)| (k.clone(), secret_digest(v)))
        .collect()
}

/// Resolve secret references; problems name the reference, never a value.
pub(crate) fn resolve_secrets(
    refs: &BTreeMap<String, SecretSpec>,
    env: &Environment,
    base_dir: &Path,
    path: &[&str],
) -> Result<BTreeMap<String, String>, Vec<Problem>> {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, spec) in refs {
        let mut p = path.to_vec();
        p.push(name);
        let at = crate::config::join_path(&p);
        match &spec.from {
            SecretRef::Env(var) => match env.non_empty(var) {
                Some(v) => {
                    out.insert(name.clone(), v);
                }
                None => problems.push(Problem::new(
                    at,
                    None,
                    Check::Secret,
                    format!("environment variable {var} is not set"),
                )),
            },
            SecretRef::File(file) => {
                let file = base_dir.join(file);
                match std::fs::read_to_string(&file) {
                    Ok(v) => {
                        let v = v
                            .strip_suffix('\n')
                            .map(|v| v.strip_suffix('\r').unwrap_or(v))
                            .unwrap_or(&v);
                        if v.is_empty() {
                            problems.push(Problem::new(
                                at,
                                None,
                                Check::Secret,
                                format!("{} is empty", file.display()),
                            ));
                        } else {
                            out.insert(name.clone(), v.to_string());
                        }
                    }
                    Err(e) => problems.push(Problem::new(
                        at,
                        None,
                        Check::Secret,
                        format!("cannot read {}: {e}", file.display()),
                    )),
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The hosts each secret is bound to: those configured and, when the component
/// is a built-in with a `base_url` (`builtin_base_url`), that URL's origin for
/// the secrets left unbound — a built-in only ever talks to its base URL.
/// The hosts each of `secrets` may be sent to, for a provider registered
/// through the admin API: its explicit binding in `explicit`, else, for a
/// built-in provider, the origin of its `base_url` (from `config`, or the
/// built-in's default) — the same rule as the configuration file. A secret
/// with neither stays unbound (sent to any allowed host).
pub fn admin_secret_hosts<'a>(
    secrets: impl IntoIterator<Item = &'a String>,
    explicit: &BTreeMap<String, Vec<String>>,
    builtin: Option<&str>,
    config: &BTreeMap<String, String>,
) -> BTreeMap<String, Vec<String>> {
    let base_url = builtin.and_then(|b| {
        config
            .get("base_url")
            .map(String::as_str)
            .or_else(|| env::builtin_default_base_url(b))
    });
    let default = base_url.and_then(|u| env::origin_of_url(u).ok());
    let mut out = explicit.clone();
    for name in secrets {
        if !out.contains_key(name) {
            if let Some(d) = &default {
                out.insert(name.clone(), vec![d.clone()]);
            }
        }
    }
    out
}

pub(crate) fn secret_hosts(
    refs: &BTreeMap<String, SecretSpec>,
    builtin_base_url: Option<&str>,
) -> BTreeMap<String, Vec<String>> {
    let default = builtin_base_url.and_then(|u| env::origin_of_url(u).ok());
    refs.iter()
        .filter_map(|(name, spec)| {
            let hosts = spec
                .hosts
                .clone()
                .or_else(|| default.clone().map(|d| vec![d]))?;
            Some((name.clone(), hosts))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------

/// Where a discovered provider stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderStatus {
    /// Valid: registered (or would be).
    Ok,
    /// Has problems: not loaded (a previous working version keeps running).
    Invalid,
    /// `enabled = false`.
    Disabled,
    /// A higher-precedence source declares the same name.
    Shadowed,
}

/// One discovered provider: where it comes from and whether it is usable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProviderReport {
    /// Provider name.
    pub name: String,
    /// Which source.
    pub source: Origin,
    /// The file (config file, plugin component) or variable (`env:OPENAI_API_KEY`).
    pub location: String,
    /// Usable or why not.
    pub status: ProviderStatus,
    /// Every problem (empty when ok).
    pub problems: Vec<Problem>,
}

impl ProviderReport {
    /// Whether it is (or would be) registered.
    pub fn ok(&self) -> bool {
        self.status == ProviderStatus::Ok
    }
}

/// What [`Discovery::validate_discovered_providers`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ValidationReport {
    /// One entry per discovered provider (and per shadowed or ignored one), by name.
    pub providers: Vec<ProviderReport>,
    /// Problems of whole sources (a file that does not parse, an unreadable directory).
    pub problems: Vec<Problem>,
}

impl ValidationReport {
    /// Whether everything discovered is usable.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
            && self
                .providers
                .iter()
                .all(|p| matches!(p.status, ProviderStatus::Ok | ProviderStatus::Disabled))
    }

    /// The report of one provider (the winning source's, when shadowed ones exist).
    pub fn get(&self, name: &str) -> Option<&ProviderReport> {
        self.providers
            .iter()
            .find(|p| p.name == name && p.status != ProviderStatus::Shadowed)
            .or_else(|| self.providers.iter().find(|p| p.name == name))
    }
}

/// What one discovery round changed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RefreshReport {
    /// Newly registered.
    pub registered: Vec<String>,
    /// Replaced by a new version.
    pub replaced: Vec<String>,
    /// Removed (gone from their source, or disabled).
    pub unregistered: Vec<String>,
    /// Discovered providers not loaded this round, with why; a previous working
    /// version, if any, keeps running.
    pub failed: Vec<ProviderReport>,
    /// Providers hidden by a higher-precedence source.
    pub shadowed: Vec<ProviderReport>,
    /// Problems of whole sources, and settings that need a restart.
    pub problems: Vec<Problem>,
    /// The round was cut off by [`Discovery::cancel_rounds`] (shutdown): what
    /// it had not finished was dropped, never published.
    pub cancelled: bool,
}

impl RefreshReport {
    /// Whether the round changed the registry.
    pub fn changed(&self) -> bool {
        !(self.registered.is_empty() && self.replaced.is_empty() && self.unregistered.is_empty())
    }

    /// The report of a round cut off by [`Discovery::cancel_rounds`].
    fn cut_off() -> Self {
        RefreshReport {
            cancelled: true,
            ..RefreshReport::default()
        }
    }

    /// The failure report of one provider.
    pub fn failure(&self, name: &str) -> Option<&ProviderReport> {
        self.failed.iter().find(|p| p.name == name)
    }
}

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/// Where discovery looks. Fields left `None` come from the configuration
/// file's `[discovery]` section (or its defaults).
#[derive(Clone, Debug, Default)]
pub struct DiscoveryOptions {
    /// The configuration file (TOML, or JSON by extension).
    pub config_file: Option<PathBuf>,
    /// The plugin directory (overrides `discovery.plugin_dir`).
    pub plugin_dir: Option<PathBuf>,
    /// Environment discovery on/off (overrides `discovery.environment`; default on).
    pub environment: Option<bool>,
    /// Plugin size cap, bytes (overrides `discovery.max_plugin_bytes`).
    pub max_plugin_bytes: Option<u64>,
    /// Where variables come from: API keys, and `{ env = "VAR" }` secrets.
    pub env: Environment,
}

impl DiscoveryOptions {
    /// Nothing but the process environment.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set the configuration file.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }
    /// Set the plugin directory.
    pub fn plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugin_dir = Some(dir.into());
        self
    }
    /// Turn environment discovery on or off.
    pub fn environment(mut self, on: bool) -> Self {
        self.environment = Some(on);
        self
    }
    /// Use this environment instead of the process's.
    pub fn env(mut self, env: Environment) -> Self {
        self.env = env;
        self
    }
}

// ---------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------

/// Keeps a registry in step with the configuration file, the plugin directory
/// and the environment. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    options: DiscoveryOptions,
    state: tokio::sync::Mutex<State>,
    last_report: Mutex<Option<RefreshReport>>,
    refresher: Mutex<Option<reload::Refresher>>,
    /// The last usable configuration file, for whoever applies its live parts
    /// (`tamma serve` swaps its `[server]` section in).
    config_tx: tokio::sync::watch::Sender<Option<Arc<Config>>>,
    /// Set once by [`Discovery::cancel_rounds`]: the round in progress stops at
    /// its next await and no other starts.
    cancelled: tokio::sync::watch::Sender<bool>,
}

/// How [`Discovery::install`] puts a candidate into the registry.
#[derive(Clone, Copy)]
enum Install {
    /// A name the registry does not hold yet.
    Register,
    /// A name discovery already owns, at another fingerprint.
    Replace,
}

/// A provider discovery registered.
#[derive(Clone, Debug)]
struct Owned {
    origin: Origin,
    fingerprint: String,
}

#[derive(Default)]
struct State {
    owned: BTreeMap<String, Owned>,
    /// The fingerprint that failed to register/replace, per name: not retried until it changes.
    failed: HashMap<String, (String, ProviderReport)>,
    /// Ours, but unregistered by someone else: not brought back while unchanged.
    tombstones: HashMap<String, String>,
    /// The last configuration file check that was usable.
    last_good: Option<ConfigCheck>,
    /// What was last logged / emitted per key, so a standing problem is reported once.
    reported: HashMap<String, String>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("options", &self.inner.options)
            .finish()
    }
}

/// Everything the sources say, after precedence.
struct Scan {
    claims: BTreeMap<String, Claim>,
    shadowed: Vec<ProviderReport>,
    ignored: Vec<ProviderReport>,
    problems: Vec<Problem>,
    /// Sources that could not be read: their providers are kept as they are.
    keep: Vec<Origin>,
    /// The configuration file's check, when usable.
    good: Option<ConfigCheck>,
}

impl Discovery {
    /// Discovery for `registry` (nothing happens until a round runs).
    pub fn new(registry: Registry, options: DiscoveryOptions) -> Self {
        Discovery {
            inner: Arc::new(Inner {
                registry,
                options,
                state: tokio::sync::Mutex::new(State::default()),
                last_report: Mutex::new(None),
                refresher: Mutex::new(None),
                config_tx: tokio::sync::watch::Sender::new(None),
                cancelled: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The options.
    pub fn options(&self) -> &DiscoveryOptions {
        &self.inner.options
    }

    /// Register every provider the sources declare (the first round).
    pub async fn discover_all(&self) -> RefreshReport {
        self.refresh().await
    }

    /// One round: read every source and apply the differences. After
    /// [`Discovery::cancel_rounds`] it returns at once (`cancelled`).
    pub async fn refresh(&self) -> RefreshReport {
        let mut cancelled = self.inner.cancelled.subscribe();
        if *cancelled.borrow_and_update() {
            return RefreshReport::cut_off();
        }
        tokio::select! {
            report = self.round() => report,
            _ = cancelled.wait_for(|c| *c) => {
                tracing::info!(target: "tamma::discovery", "discovery round cancelled");
                RefreshReport::cut_off()
            }
        }
    }

    /// Cut off the round in progress (at its next await: a provider being
    /// loaded or initialized is dropped, never published; its reserved name is
    /// freed) and refuse every later one, so that a shutdown never waits for
    /// providers that are still coming up — a round registers them one after
    /// another, each up to its `init_timeout_ms`. For shutdown: it cannot be
    /// undone.
    pub fn cancel_rounds(&self) {
        self.inner.cancelled.send_replace(true);
    }

    /// Whether [`Discovery::cancel_rounds`] was called.
    pub fn is_cancelled(&self) -> bool {
        *self.inner.cancelled.borrow()
    }

    async fn round(&self) -> RefreshReport {
        let mut state = self.inner.state.lock().await;
        let last_good = state.last_good.clone();
        let scan = self.scan(last_good).await;
        if let Some(good) = &scan.good {
            state.last_good = Some(good.clone());
            if let Some(cfg) = &good.config {
                // Only a real change wakes the watchers: an unchanged file re-read
                // every few seconds must not look like a reload.
                self.inner.config_tx.send_if_modified(|current| {
                    if current.as_deref() == Some(cfg) {
                        false
                    } else {
                        *current = Some(Arc::new(cfg.clone()));
                        true
                    }
                });
            }
        }
        let report = self.apply(&mut state, scan).await;
        *self
            .inner
            .last_report
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
        report
    }

    /// The report of the last round.
    pub fn last_report(&self) -> Option<RefreshReport> {
        self.inner
            .last_report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last usable configuration file (`None` before one was read).
    pub async fn config(&self) -> Option<Config> {
        self.inner
            .state
            .lock()
            .await
            .last_good
            .as_ref()
            .and_then(|c| c.config.clone())
    }

    /// The last usable configuration file, updated after every round in which it
    /// changed. `None` until a file was read.
    pub fn watch_config(&self) -> tokio::sync::watch::Receiver<Option<Arc<Config>>> {
        self.inner.config_tx.subscribe()
    }

    /// Providers discovery registered and still owns, with their source.
    pub async fn owned(&self) -> Vec<(String, Origin)> {
        self.inner
            .state
            .lock()
            .await
            .owned
            .iter()
            .map(|(n, o)| (n.clone(), o.origin))
            .collect()
    }

    /// Check every discovered provider without registering anything: source
    /// problems, precedence, and for each usable one its settings and whether
    /// its component satisfies the provider world.
    pub async fn validate_discovered_providers(&self) -> ValidationReport {
        let scan = self.scan(None).await;
        let registry = &self.inner.registry;
        let mut providers = Vec::new();
        for (name, claim) in scan.claims {
            let mut report = claim.report(&name);
            if let Claim::Ready(c) = claim {
                let mut problems = Vec::new();
                if registry.origin_of(&name) == Some(Origin::Api) {
                    problems.push(conflict_problem(&name));
                }
                if let Err(e) = registry.effective_settings(&name, c.settings.clone()) {
                    problems.push(Problem::new(name.clone(), None, Check::Range, e.message));
                }
                if let Err(e) = registry.load(c.source, c.signature).await {
                    problems.push(error_problem(&name, &e));
                }
                if !problems.is_empty() {
                    report.status = ProviderStatus::Invalid;
                    report.problems = problems;
                }
            }
            providers.push(report);
        }
        providers.extend(scan.shadowed);
        providers.extend(scan.ignored);
        providers.sort_by(|a, b| a.name.cmp(&b.name));
        ValidationReport {
            providers,
            problems: scan.problems,
        }
    }

    /// Read every source (blocking file IO, off the async workers).
    async fn scan(&self, last_good: Option<ConfigCheck>) -> Scan {
        let options = self.inner.options.clone();
        let registry_config = self.inner.registry.config().clone();
        let builtins = self.inner.registry.builtins().clone();
        tokio::task::spawn_blocking(move || {
            scan_sources(&options, last_good, &registry_config, &builtins)
        })
        .await
        .unwrap_or_else(|e| Scan {
            claims: BTreeMap::new(),
            shadowed: Vec::new(),
            ignored: Vec::new(),
            problems: vec![Problem::new(
                "discovery",
                None,
                Check::Io,
                format!("scan failed: {e}"),
            )],
            keep: vec![Origin::Config, Origin::Plugin, Origin::Environment],
            good: None,
        })
    }

    /// Apply a scan to the registry.
    async fn apply(&self, state: &mut State, scan: Scan) -> RefreshReport {
        let registry = self.inner.registry.clone();
        let mut report = RefreshReport {
            shadowed: scan.shadowed,
            problems: scan.problems,
            ..RefreshReport::default()
        };
        for p in &report.problems {
            self.once(state, &format!("source:{}", p.path), &p.to_string(), || {
                tracing::warn!(target: "tamma::discovery", problem = %p, "discovery source problem");
            });
        }
        // Forget providers of ours that someone else removed or replaced.
        let gone: Vec<String> = state
            .owned
            .keys()
            .filter(|n| !matches!(registry.origin_of(n), Some(o) if o != Origin::Api))
            .cloned()
            .collect();
        for name in gone {
            if let Some(o) = state.owned.remove(&name) {
                tracing::info!(target: "tamma::discovery", provider = %name, "provider was removed outside discovery; not re-registering it until its source changes");
                state.tombstones.insert(name, o.fingerprint);
            }
        }
        let mut names: BTreeSet<String> = scan.claims.keys().cloned().collect();
        names.extend(state.owned.keys().cloned());
        let mut claims = scan.claims;
        for name in names {
            let claim = claims.remove(&name);
            let absent = claim.is_none();
            let owned = state.owned.get(&name).cloned();
            match claim {
                Some(Claim::Ready(c)) => {
                    if state.tombstones.get(&name) == Some(&c.fingerprint) {
                        continue;
                    }
                    state.tombstones.remove(&name);
                    if let Some((fp, failure)) = state.failed.get(&name) {
                        if *fp == c.fingerprint {
                            report.failed.push(failure.clone());
                            continue;
                        }
                    }
                    match owned {
                        Some(o) if o.fingerprint == c.fingerprint => {
                            // Unchanged. A failure of an earlier version is history now.
                            state.failed.remove(&name);
                            state.reported.remove(&name);
                        }
                        Some(_) => self.install(state, &mut report, *c, Install::Replace).await,
                        None => {
                            if registry.contains(&name) {
                                let failure = ProviderReport {
                                    problems: vec![conflict_problem(&name)],
                                    status: ProviderStatus::Invalid,
                                    ..Claim::Ready(c).report(&name)
                                };
                                self.failure(state, &mut report, failure, None);
                            } else {
                                self.install(state, &mut report, *c, Install::Register)
                                    .await;
                            }
                        }
                    }
                }
                Some(claim @ Claim::Invalid { .. }) => {
                    let failure = claim.report(&name);
                    self.failure(state, &mut report, failure, None);
                }
                Some(Claim::Disabled { .. }) | None | Some(Claim::Ignored { .. }) => {
                    state.tombstones.remove(&name);
                    state.failed.remove(&name);
                    let Some(o) = owned else { continue };
                    if absent && scan.keep.contains(&o.origin) {
                        continue; // its source could not be read: keep it
                    }
                    state.owned.remove(&name);
                    state.reported.remove(&name);
                    // Ownership was checked at the start of the round; the admin API
                    // may have taken the name over since (installs take seconds):
                    // the registry checks it again under the provider's lifecycle
                    // lock, which a takeover holds while it swaps.
                    match registry.unregister_if(&name, discovery_owns).await {
                        Ok(None) => {}
                        Ok(Some(_)) => {
                            tracing::info!(target: "tamma::discovery", provider = %name, source = ?o.origin, "provider removed");
                            report.unregistered.push(name);
                        }
                        Err(e) if e.code == ErrorCode::NotFound => {}
                        Err(e) => {
                            tracing::warn!(target: "tamma::discovery", provider = %name, error = %e, "cannot unregister provider");
                        }
                    }
                }
            }
        }
        for r in scan.ignored {
            let text = r
                .problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            self.once(state, &format!("ignored:{}", r.location), &text, || {
                tracing::warn!(target: "tamma::discovery", location = %r.location, problems = %text, "ignored");
            });
        }
        report
    }

    /// Registers `c` as a new provider or replaces the one under its name: on success
    /// discovery owns it, on failure it is remembered (by fingerprint) and reported.
    async fn install(
        &self,
        state: &mut State,
        report: &mut RefreshReport,
        c: Candidate,
        how: Install,
    ) {
        let name = c.name.clone();
        let base = ProviderReport {
            name: name.clone(),
            source: c.origin,
            location: c.location.clone(),
            status: ProviderStatus::Ok,
            problems: Vec::new(),
        };
        let fp = c.fingerprint.clone();
        let origin = c.origin;
        let registration = Registration {
            source: c.source,
            settings: c.settings,
            origin,
            version: c.version,
            signature: c.signature,
        };
        let registry = &self.inner.registry;
        let result = match how {
            Install::Register => registry.register(&name, registration).await.map(Some),
            // Only while it is still ours: checked under the provider's lifecycle
            // lock, so an admin takeover that lands while this version builds wins.
            Install::Replace => {
                registry
                    .replace_if(&name, registration, discovery_owns)
                    .await
            }
        };
        match result {
            Ok(None) => {
                // Taken over through the admin API since this round began: not ours.
                state.owned.remove(&name);
            }
            Ok(Some(_)) => {
                match how {
                    Install::Register => {
                        tracing::info!(target: "tamma::discovery", provider = %name, source = ?origin, location = %base.location, "provider registered");
                    }
                    Install::Replace => {
                        tracing::info!(target: "tamma::discovery", provider = %name, source = ?origin, location = %base.location, "provider replaced");
                    }
                }
                state.owned.insert(
                    name.clone(),
                    Owned {
                        origin,
                        fingerprint: fp,
                    },
                );
                state.failed.remove(&name);
                state.reported.remove(&name);
                match how {
                    Install::Register => report.registered.push(name),
                    Install::Replace => report.replaced.push(name),
                }
            }
            Err(e) => {
                let failure = ProviderReport {
                    status: ProviderStatus::Invalid,
                    problems: vec![error_problem(&name, &e)],
                    ..base
                };
                state.failed.insert(name.clone(), (fp, failure.clone()));
                self.failure(state, report, failure, Some(&e));
            }
        }
    }

    /// Record a failure: in the report always; logged and emitted once per distinct problem.
    fn failure(
        &self,
        state: &mut State,
        report: &mut RefreshReport,
        failure: ProviderReport,
        error: Option<&Error>,
    ) {
        let text = failure
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let kept = state.owned.contains_key(&failure.name);
        self.once(state, &failure.name, &text, || {
            tracing::warn!(
                target: "tamma::discovery",
                provider = %failure.name,
                source = ?failure.source,
                location = %failure.location,
                kept_previous_version = kept,
                problems = %text,
                "discovered provider not loaded"
            );
            let code = error.map(|e| e.code).unwrap_or(ErrorCode::InvalidConfig);
            self.inner.registry.emit(Event::ProviderError {
                provider: failure.name.clone(),
                code: code.as_str().to_string(),
                message: format!(
                    "{} ({}){}",
                    text,
                    failure.location,
                    if kept {
                        "; the previous version keeps running"
                    } else {
                        ""
                    }
                ),
            });
        });
        report.failed.push(failure);
    }

    fn once(&self, state: &mut State, key: &str, text: &str, f: impl FnOnce()) {
        if state.reported.get(key).map(String::as_str) != Some(text) {
            state.reported.insert(key.to_string(), text.to_string());
            f();
        }
    }
}

/// Whether a provider of this origin is discovery's to replace or remove:
/// anything but what the admin or library API registered.
fn discovery_owns(origin: Origin) -> bool {
    origin != Origin::Api
}

fn conflict_problem(name: &str) -> Problem {
    Problem::new(
        name,
        None,
        Check::Conflict,
        format!(
            "a provider named {name:?} was registered through the API; discovery leaves it alone"
        ),
    )
}

fn error_problem(name: &str, e: &Error) -> Problem {
    let code = e.cause_code.unwrap_or(e.code);
    let check = if code == ErrorCode::InvalidComponent {
        Check::Component
    } else {
        Check::Load
    };
    Problem::new(name, None, check, format!("{}: {}", e.code, e.message))
}

// ---------------------------------------------------------------------------
// Scanning
// ---------------------------------------------------------------------------

fn scan_sources(
    options: &DiscoveryOptions,
    last_good: Option<ConfigCheck>,
    registry_config: &crate::registry_config::RegistryConfig,
    builtins: &crate::builtins::Builtins,
) -> Scan {
    let mut problems = Vec::new();
    let mut keep = Vec::new();
    let env = &options.env;

    // 1. The configuration file: this round's check if usable, else the last usable one.
    let mut good = None;
    let effective: Option<ConfigCheck> = match &options.config_file {
        None => None,
        Some(path) => {
            let check = Config::check_file(path, builtins);
            if check.config.is_some() {
                good = Some(check.clone());
                Some(check)
            } else {
                problems.extend(check.problems);
                if last_good.is_none() {
                    keep.push(Origin::Config);
                } else {
                    problems.push(Problem::new(
                        path.display().to_string(),
                        None,
                        Check::Syntax,
                        "the file is not usable; the last good version of it stays in effect",
                    ));
                }
                last_good
            }
        }
    };
    let mut file_claims = Vec::new();
    let config = effective.as_ref().and_then(|c| c.config.clone());
    if let (Some(check), Some(cfg)) = (&effective, &config) {
        let (claims, file_problems) = file::claims(check, cfg, env);
        file_claims = claims;
        problems.extend(file_problems);
        let rc = cfg.registry_config();
        for (section, changed) in [
            ("health", rc.health != registry_config.health),
            (
                "circuit_breaker",
                rc.circuit_breaker != registry_config.circuit_breaker,
            ),
            ("lifecycle", rc.lifecycle != registry_config.lifecycle),
            ("trust", rc.trust != registry_config.trust),
        ] {
            if changed {
                problems.push(Problem::new(
                    section,
                    None,
                    Check::Restart,
                    "differs from the running registry's settings; it takes effect after a restart",
                ));
            }
        }
    }

    // 2. The plugin directory.
    let mut plugin_claims = Vec::new();
    let plugin_dir = options
        .plugin_dir
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.plugin_dir()));
    if let Some(dir) = plugin_dir {
        let max = options
            .max_plugin_bytes
            .or(config.as_ref().map(|c| c.discovery.max_plugin_bytes))
            .unwrap_or(tamma_sandbox::sandbox::MAX_COMPONENT_BYTES as u64);
        let empty_grants = BTreeMap::new();
        let invalid = effective
            .as_ref()
            .map(|c| c.invalid_plugins.clone())
            .unwrap_or_default();
        let base_dir = config
            .as_ref()
            .map(|c| c.base_dir.clone())
            .unwrap_or_else(|| PathBuf::from("."));
        let grants = plugins::Grants {
            grants: config.as_ref().map(|c| &c.plugins).unwrap_or(&empty_grants),
            invalid: &invalid,
            base_dir: &base_dir,
            env,
        };
        let s = plugins::scan(&dir, max, &grants);
        if s.unreadable {
            keep.push(Origin::Plugin);
        }
        problems.extend(s.problems);
        plugin_claims = s.claims;
    }

    // 3. The environment.
    let env_on = options
        .environment
        .or(config.as_ref().map(|c| c.discovery.environment))
        .unwrap_or(true);
    let env_claims = if env_on { env::scan(env) } else { Vec::new() };

    // Precedence: file > plugins > environment.
    let mut claims: BTreeMap<String, Claim> = BTreeMap::new();
    let mut shadowed = Vec::new();
    let mut ignored = Vec::new();
    for (name, claim) in file_claims
        .into_iter()
        .chain(plugin_claims)
        .chain(env_claims)
    {
        if matches!(claim, Claim::Ignored { .. }) {
            ignored.push(claim.report(&name));
            continue;
        }
        match claims.get(&name) {
            Some(winner) => {
                let mut r = claim.report(&name);
                r.status = ProviderStatus::Shadowed;
                r.problems.insert(
                    0,
                    Problem::new(
                        name.clone(),
                        None,
                        Check::Shadowed,
                        format!(
                            "the {} ({}) declares {name:?} too and takes precedence",
                            winner.origin().describe(),
                            winner.location()
                        ),
                    ),
                );
                shadowed.push(r);
            }
            None => {
                claims.insert(name, claim);
            }
        }
    }
    shadowed.sort_by(|a, b| a.name.cmp(&b.name));
    Scan {
        claims,
        shadowed,
        ignored,
        problems,
        keep,
        good,
    }
}

#[cfg(test)]
mod secret_host_tests {
    use super::*;

    #[test]
    fn built_ins_bind_unbound_secrets_to_their_base_url() {
        let refs: BTreeMap<String, SecretSpec> = [
            (
                "api_key".to_string(),
                SecretSpec::new(SecretRef::Env("OPENAI_API_KEY".into())),
            ),
            (
                "org".to_string(),
                SecretSpec {
                    from: SecretRef::Env("ORG".into()),
                    hosts: Some(vec!["https://org.example.com".into()]),
                },
            ),
        ]
        .into();
        let base = env::builtin_default_base_url("openai");
        assert_eq!(base, Some("https://api.openai.com/v1"));
        let bound = secret_hosts(&refs, base);
        assert_eq!(bound["api_key"], ["https://api.openai.com"]);
        // Given hosts win over the default.
        assert_eq!(bound["org"], ["https://org.example.com"]);
        // A component that is not a built-in binds only what it was told to.
        let bound = secret_hosts(&refs, None);
        assert!(!bound.contains_key("api_key"));
        assert_eq!(bound["org"], ["https://org.example.com"]);
        assert_eq!(env::builtin_default_base_url("echo"), None);
    }
}
