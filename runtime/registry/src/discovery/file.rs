//! Providers declared in the configuration file (`[providers.NAME]`).
//!
//! A valid entry becomes a candidate: its component (a built-in type, or the
//! bytes of its `.wasm` file, read and hashed now so a change of the file is a
//! change of the provider), its configuration, limits, hosts, and its secrets
//! resolved from the environment or from files. An entry with problems claims
//! its name without being loaded: whatever runs under the name keeps running.

use std::sync::Arc;

use crate::config::{
    join_path, Check, ComponentRef, Config, ConfigCheck, Problem, ProviderConfig,
    RegistryCredentials,
};
use crate::oci::{OciCredentials, OciReference};
use crate::registry::{ComponentSource, OciSource, Origin};
use tamma_sandbox::egress::EgressPolicy;
use tamma_sandbox::sandbox::MAX_COMPONENT_BYTES;
use tamma_sandbox::settings::ProviderSettings;

use super::env::Environment;
use super::{fingerprint, resolve_secrets, secret_hosts, secrets_digest, Candidate, Claim};

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The file's claims, and its problems that belong to no provider entry.
pub(crate) fn claims(
    check: &ConfigCheck,
    cfg: &Config,
    env: &Environment,
) -> (Vec<(String, Claim)>, Vec<Problem>) {
    let location = cfg.base_dir.display().to_string();
    let mut out = Vec::new();
    let mut rest: Vec<Problem> = check.problems.clone();
    for name in &check.invalid_providers {
        let prefix = join_path(&["providers", name]);
        let (mine, others): (Vec<Problem>, Vec<Problem>) =
            rest.into_iter().partition(|p| under(&p.path, &prefix));
        rest = others;
        out.push((
            name.clone(),
            Claim::Invalid {
                origin: Origin::Config,
                location: location.clone(),
                problems: mine,
            },
        ));
    }
    for (name, pc) in &cfg.providers {
        out.push((name.clone(), claim(name, pc, cfg, env)));
    }
    (out, rest)
}

fn claim(name: &str, pc: &ProviderConfig, cfg: &Config, env: &Environment) -> Claim {
    let location = cfg.base_dir.display().to_string();
    let invalid = |problems: Vec<Problem>| Claim::Invalid {
        origin: Origin::Config,
        location: location.clone(),
        problems,
    };
    if !pc.enabled {
        return Claim::Disabled {
            origin: Origin::Config,
            location,
        };
    }
    let at = join_path(&["providers", name, "component"]);
    let mut signature = None;
    let (source, component_id) = match pc.component_ref(&cfg.base_dir) {
        ComponentRef::Builtin(b) => (ComponentSource::Builtin(b.clone()), format!("builtin:{b}")),
        ComponentRef::Oci(text) => match oci_source(
            &text,
            pc.registry_credentials.as_ref(),
            &["providers", name],
            &cfg.base_dir,
            env,
        ) {
            Ok(source) => (ComponentSource::Oci(source), text),
            Err(problems) => return invalid(problems),
        },
        ComponentRef::Path(path) => {
            match super::plugins::read_capped(&path, MAX_COMPONENT_BYTES as u64) {
                Ok(Some(bytes)) => {
                    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
                    signature = match crate::trust::signature_beside(&path) {
                        Ok(s) => s,
                        Err(e) => {
                            return invalid(vec![Problem::new(
                                at,
                                None,
                                Check::Component,
                                format!("cannot read {}.minisig: {e}", path.display()),
                            )])
                        }
                    };
                    (
                        ComponentSource::Bytes(Arc::from(bytes)),
                        // A new signature is a new provider too (it may now pass or fail).
                        format!(
                            "sha256:{sha}{}",
                            signature
                                .as_deref()
                                .map(|s| format!(" sig:{}", super::secret_digest(s)))
                                .unwrap_or_default()
                        ),
                    )
                }
                Ok(None) => {
                    return invalid(vec![Problem::new(
                        at,
                        None,
                        Check::Size,
                        format!(
                            "{} is larger than {MAX_COMPONENT_BYTES} bytes",
                            path.display()
                        ),
                    )])
                }
                Err(e) => {
                    return invalid(vec![Problem::new(
                        at,
                        None,
                        Check::Component,
                        format!("cannot read {}: {e}", path.display()),
                    )])
                }
            }
        }
    };
    let secrets = match resolve_secrets(
        &pc.secrets,
        env,
        &cfg.base_dir,
        &["providers", name, "secrets"],
    ) {
        Ok(s) => s,
        Err(problems) => return invalid(problems),
    };
    let digest = secrets_digest(&secrets);
    let builtin_base_url = match &source {
        ComponentSource::Builtin(b) => pc
            .config
            .get("base_url")
            .map(String::as_str)
            .or_else(|| super::env::builtin_default_base_url(b)),
        _ => None,
    };
    let bound = secret_hosts(&pc.secrets, builtin_base_url);
    let egress = match EgressPolicy::try_new(pc.allowed_hosts.clone(), secrets, pc.egress.clone())
        .and_then(|e| e.with_secret_hosts(bound.clone()))
    {
        Ok(e) => e,
        Err(e) => {
            let at = join_path(&["providers", name]);
            return invalid(
                e.problems
                    .into_iter()
                    .map(|m| Problem::new(at.clone(), None, Check::Host, m))
                    .collect(),
            );
        }
    };
    let config: Vec<(String, String)> = pc.config.clone().into_iter().collect();
    let fp = fingerprint(&serde_json::json!({
        "origin": "config",
        "component": component_id,
        "config": config,
        "limits": pc.limits,
        "hosts": pc.allowed_hosts,
        "egress": pc.egress,
        "secrets": digest,
        "secret_hosts": bound,
    }));
    Claim::Ready(Box::new(Candidate {
        name: name.to_string(),
        origin: Origin::Config,
        location,
        source,
        settings: ProviderSettings {
            config,
            limits: pc.limits.clone(),
            egress,
        },
        version: None,
        signature,
        fingerprint: fp,
    }))
}

/// An `oci://` component: the reference parsed and the registry password
/// resolved from its reference (problems name the reference, never a value).
/// `at` is the entry (`providers.NAME` or `plugins.NAME`) problems point to.
pub(super) fn oci_source(
    text: &str,
    registry_credentials: Option<&RegistryCredentials>,
    at: &[&str],
    base_dir: &std::path::Path,
    env: &Environment,
) -> Result<OciSource, Vec<Problem>> {
    let component: Vec<&str> = at.iter().copied().chain(["component"]).collect();
    let reference = OciReference::parse(text).map_err(|e| {
        vec![Problem::new(
            join_path(&component),
            None,
            Check::Component,
            e.message,
        )]
    })?;
    let credentials = match registry_credentials {
        None => None,
        Some(rc) => {
            let spec = crate::config::SecretSpec {
                from: rc.password.clone(),
                hosts: None,
            };
            let refs = std::collections::BTreeMap::from([("password".to_string(), spec)]);
            let path: Vec<&str> = at.iter().copied().chain(["registry_credentials"]).collect();
            let mut resolved = resolve_secrets(&refs, env, base_dir, &path)?;
            let password = resolved.remove("password").unwrap_or_default();
            Some(OciCredentials::new(rc.username.clone(), password))
        }
    };
    Ok(OciSource {
        reference,
        credentials,
    })
}
