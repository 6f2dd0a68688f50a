//! The plugin directory: each plugin is `NAME.wasm` with its manifest `NAME.toml`
//! beside it (see [`super::manifest`]).
//!
//! Checks, in order, before anything is loaded; a plugin failing one is skipped
//! with a problem naming the check, and the others load:
//!
//! 1. `manifest` — it parses and every field is valid (its name is the file name);
//! 2. `component` — `NAME.wasm` exists (or, with the manifest's `component =
//!    "oci://…"`, does not: the component is pulled when it is loaded, its
//!    digest checked as the configuration file's are, and steps 3-4 are the
//!    registry's digest);
//! 3. `size` — the component is at most `discovery.max_plugin_bytes`;
//! 4. `sha256` — the component's SHA-256 is the manifest's (a file still being
//!    written fails here and is retried on the next round);
//! 5. `secret` — secrets the configuration file grants it resolve;
//! 6. registration — the component satisfies the provider world
//!    (`INVALID_COMPONENT`) and initializes.
//!
//! The component registered is the exact bytes that were hashed, so a file
//! replaced between the check and the load cannot slip through.
//!
//! A plugin is removed by deleting its manifest. A `.wasm` without a manifest
//! is reported and ignored. Files starting with `.` are ignored (use them for
//! writing, then rename into place).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{Check, PluginGrant, Problem};
use crate::registry::{ComponentSource, Origin};
use tamma_sandbox::egress::{EgressLimits, EgressPolicy};
use tamma_sandbox::settings::ProviderSettings;

use super::env::Environment;
use super::manifest::PluginManifest;
use super::{fingerprint, resolve_secrets, secret_hosts, secrets_digest, Candidate, Claim};

/// What the plugin directory holds.
pub(crate) struct PluginScan {
    pub claims: Vec<(String, Claim)>,
    /// Directory-level problems.
    pub problems: Vec<Problem>,
    /// The directory could not be read: keep every plugin provider as it is.
    pub unreadable: bool,
}

/// What the configuration file says about plugins.
pub(crate) struct Grants<'a> {
    pub grants: &'a BTreeMap<String, PluginGrant>,
    pub invalid: &'a BTreeSet<String>,
    /// Directory secret files are relative to.
    pub base_dir: &'a Path,
    pub env: &'a Environment,
}

pub(crate) fn scan(dir: &Path, max_bytes: u64, grants: &Grants<'_>) -> PluginScan {
    let mut out = PluginScan {
        claims: Vec::new(),
        problems: Vec::new(),
        unreadable: false,
    };
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            out.unreadable = true;
            out.problems.push(Problem::new(
                dir.display().to_string(),
                None,
                Check::Io,
                format!("cannot read the plugin directory: {e}"),
            ));
            return out;
        }
    };
    let mut manifests = BTreeSet::new();
    let mut wasms = BTreeSet::new();
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".toml") {
            manifests.insert(stem.to_string());
        } else if let Some(stem) = name.strip_suffix(".wasm") {
            wasms.insert(stem.to_string());
        }
    }
    for stem in &manifests {
        out.claims
            .push((stem.clone(), plugin(dir, stem, max_bytes, grants)));
    }
    for stem in wasms.difference(&manifests) {
        out.claims.push((
            stem.clone(),
            Claim::Ignored {
                origin: Origin::Plugin,
                location: dir.join(format!("{stem}.wasm")).display().to_string(),
                problems: vec![Problem::new(
                    format!("{stem}.wasm"),
                    None,
                    Check::Manifest,
                    format!("no manifest {stem}.toml beside it; the component is not loaded"),
                )],
            },
        ));
    }
    out
}

fn plugin(dir: &Path, stem: &str, max_bytes: u64, grants: &Grants<'_>) -> Claim {
    let wasm_path = dir.join(format!("{stem}.wasm"));
    let location = wasm_path.display().to_string();
    let wasm_name = format!("{stem}.wasm");
    let invalid = |problems: Vec<Problem>| Claim::Invalid {
        origin: Origin::Plugin,
        location: location.clone(),
        problems,
    };
    let one = |check: Check, msg: String| vec![Problem::new(wasm_name.clone(), None, check, msg)];

    // 1. The manifest.
    let manifest = match PluginManifest::read(&dir.join(format!("{stem}.toml"))) {
        Ok(m) => m,
        Err(problems) => return invalid(problems),
    };
    // The operator's grant.
    if grants.invalid.contains(stem) {
        return invalid(vec![Problem::new(
            format!("plugins.{stem}"),
            None,
            Check::Schema,
            "the configuration file's entry for this plugin has problems (see them above); not loaded",
        )]);
    }
    let default_grant = PluginGrant::default();
    let grant = grants.grants.get(stem).unwrap_or(&default_grant);
    if !grant.enabled {
        return Claim::Disabled {
            origin: Origin::Plugin,
            location,
        };
    }
    // 2-4. The component: present, small enough, the manifest's; or in a registry.
    let (source, component_id) = match &manifest.component {
        Some(reference) => {
            if wasm_path.exists() {
                return invalid(one(
                    Check::Component,
                    format!("both {wasm_name} and the manifest's component = {reference:?} name the component; keep one"),
                ));
            }
            match super::file::oci_source(
                reference,
                grant.registry_credentials.as_ref(),
                &["plugins", stem],
                grants.base_dir,
                grants.env,
            ) {
                Ok(oci) => (ComponentSource::Oci(oci), reference.clone()),
                Err(problems) => return invalid(problems),
            }
        }
        None => match local_component(&wasm_path, &manifest, max_bytes) {
            Ok((bytes, sha)) => (ComponentSource::Bytes(Arc::from(bytes)), sha),
            Err((check, msg)) => return invalid(one(check, msg)),
        },
    };
    // 5. Settings: the manifest's, then the operator's grant.
    let mut config = manifest.config.clone();
    config.extend(grant.config.clone());
    let limits = grant
        .limits
        .clone()
        .or_else(|| manifest.limits.clone())
        .unwrap_or_default();
    let mut hosts = manifest.allowed_hosts.clone();
    for h in &grant.allowed_hosts {
        if !hosts.contains(h) {
            hosts.push(h.clone());
        }
    }
    let secrets = match resolve_secrets(
        &grant.secrets,
        grants.env,
        grants.base_dir,
        &["plugins", stem, "secrets"],
    ) {
        Ok(s) => s,
        Err(problems) => return invalid(problems),
    };
    let digest = secrets_digest(&secrets);
    let bound = secret_hosts(&grant.secrets, None);
    let egress = match EgressPolicy::try_new(hosts.clone(), secrets, EgressLimits::default())
        .and_then(|e| e.with_secret_hosts(bound.clone()))
    {
        Ok(e) => e,
        Err(e) => {
            return invalid(
                e.problems
                    .into_iter()
                    .map(|m| Problem::new(format!("plugins.{stem}"), None, Check::Host, m))
                    .collect(),
            )
        }
    };
    let config: Vec<(String, String)> = config.into_iter().collect();
    // `NAME.wasm.minisig` beside the component, if the author signed it; an
    // unreadable one is as if absent (`[trust]` then decides). A pulled
    // component's signature comes with it (its OCI manifest's annotation).
    let signature = match source {
        ComponentSource::Oci(_) => None,
        _ => crate::trust::signature_beside(&wasm_path).ok().flatten(),
    };
    let fp = fingerprint(&serde_json::json!({
        "origin": "plugin",
        "sha256": component_id,
        "signature": signature.as_deref().map(super::secret_digest),
        "version": manifest.version,
        "config": config,
        "limits": limits,
        "hosts": hosts,
        "secrets": digest,
        "secret_hosts": bound,
    }));
    Claim::Ready(Box::new(Candidate {
        name: stem.to_string(),
        origin: Origin::Plugin,
        // Where the component comes from: the file, or the registry reference.
        location: manifest.component.clone().unwrap_or(location),
        source,
        settings: ProviderSettings {
            config,
            limits,
            egress,
        },
        version: Some(manifest.version),
        signature,
        fingerprint: fp,
    }))
}

/// `NAME.wasm`'s bytes and SHA-256, checked against the manifest (steps 2-4).
fn local_component(
    wasm_path: &Path,
    manifest: &PluginManifest,
    max_bytes: u64,
) -> Result<(Vec<u8>, String), (Check, String)> {
    let bytes = match read_capped(wasm_path, max_bytes) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err((
                Check::Size,
                format!(
                    "the component is larger than discovery.max_plugin_bytes ({max_bytes} bytes)"
                ),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = wasm_path.file_name().unwrap_or_default().to_string_lossy();
            return Err((Check::Component, format!("{name} is missing")));
        }
        Err(e) => {
            return Err((
                Check::Component,
                format!("cannot read {}: {e}", wasm_path.display()),
            ))
        }
    };
    let sha = hex::encode(Sha256::digest(&bytes));
    if sha != manifest.sha256 {
        return Err((
            Check::Sha256,
            format!(
                "SHA-256 is {sha} but the manifest says {} (a file still being written is retried on the next round)",
                manifest.sha256
            ),
        ));
    }
    Ok((bytes, sha))
}

/// The file's bytes, `None` when it is larger than `max` (read at most `max + 1`).
pub(crate) fn read_capped(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() > max {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}
