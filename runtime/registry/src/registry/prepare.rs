//! Turning a [`Registration`] into a provider ready to publish: settings
//! checked and bounded, component loaded, instance initialized, metadata made.
//! `register` and `replace` both go through here; they differ only in what
//! they do with the result.

use super::entry::{ProviderMetadata, Template};
use super::registration::{ComponentSource, Origin, Registration};
use super::shared::Shared;
use crate::oci::OciCache;
use crate::trust::{signature_beside, TrustPolicy};
use tamma_sandbox::error::{Error, ErrorCode, Result};
use tamma_sandbox::provider::ProviderInstance;
use tamma_sandbox::sandbox::LoadedComponent;
use tamma_sandbox::settings::ProviderSettings;

/// A registration whose settings passed the checks: the cheap, synchronous
/// half, done before a name is reserved.
pub(crate) struct Plan {
    name: String,
    registration: Registration,
}

/// A provider loaded and initialized, not yet visible to anyone.
pub(crate) struct Prepared {
    /// What it was made from (for restarts).
    pub(crate) template: Template,
    /// Where it came from and what it runs.
    pub(crate) metadata: ProviderMetadata,
    /// The initialized instance.
    pub(crate) instance: ProviderInstance,
}

impl Plan {
    /// Check `registration`'s settings and apply the registry's bounds.
    pub(crate) fn new(shared: &Shared, name: &str, mut registration: Registration) -> Result<Self> {
        registration.settings = effective_settings(shared, name, registration.settings)?;
        Ok(Plan {
            name: name.to_string(),
            registration,
        })
    }

    /// Load the component and initialize an instance of it (the slow half:
    /// compiling, then the guest's `initialize`).
    pub(crate) async fn build(self, shared: &Shared) -> Result<Prepared> {
        let Plan { name, registration } = self;
        let builtin = registration.source.builtin_type().map(String::from);
        let component = load(shared, registration.source, registration.signature)
            .await
            .map_err(|e| {
                e.with_provider(&name)
                    .wrap(ErrorCode::RegistrationFailed, "cannot load component")
            })?;
        let settings = registration.settings;
        let instance = shared
            .sandbox
            .instantiate_with(&name, &component, settings.clone())
            .await
            .map_err(|e| e.wrap(ErrorCode::RegistrationFailed, "initialization failed"))?;
        let metadata = metadata(
            &component,
            registration.origin,
            registration.version,
            builtin,
        );
        Ok(Prepared {
            template: Template {
                component,
                settings,
            },
            metadata,
            instance,
        })
    }
}

impl Prepared {
    /// A provider the caller has already loaded and initialized.
    pub(crate) fn from_instance(
        instance: ProviderInstance,
        origin: Origin,
        version: Option<String>,
    ) -> Self {
        let component = instance.component().clone();
        let settings = instance.settings().clone();
        Prepared {
            metadata: metadata(&component, origin, version, None),
            template: Template {
                component,
                settings,
            },
            instance,
        }
    }
}

fn metadata(
    component: &LoadedComponent,
    source: Origin,
    version: Option<String>,
    builtin: Option<String>,
) -> ProviderMetadata {
    ProviderMetadata {
        source,
        version,
        component_sha256: component.sha256.clone(),
        component_size: component.size,
        contract_version: component.contract_version(),
        builtin,
    }
}

/// Check the settings (`INVALID_CONFIG` lists every problem) and apply the
/// registry's lifecycle bounds.
pub(crate) fn effective_settings(
    shared: &Shared,
    name: &str,
    mut settings: ProviderSettings,
) -> Result<ProviderSettings> {
    let mut problems: Vec<String> = settings
        .limits
        .validate()
        .into_iter()
        .map(|p| format!("limits.{p}"))
        .collect();
    let max = shared.sandbox.engine().config().max_memory_mib;
    if settings.limits.memory_mib > max {
        problems.push(format!(
            "limits.memory_mib: {} exceeds the engine's maximum of {max}",
            settings.limits.memory_mib
        ));
    }
    for (i, (k, _)) in settings.config.iter().enumerate() {
        if k.is_empty() {
            problems.push(format!("config[{i}]: empty key"));
        }
    }
    if !problems.is_empty() {
        return Err(Error::new(ErrorCode::InvalidConfig, problems.join("; ")).with_provider(name));
    }
    let lc = &shared.config.lifecycle;
    let l = &mut settings.limits;
    l.init_timeout_ms = l.init_timeout_ms.min(lc.init_timeout_ms);
    l.dispose_timeout_ms = l.dispose_timeout_ms.min(lc.dispose_timeout_ms);
    Ok(settings)
}

/// Load (compile, or find in the cache) a component: pulled first when it is in
/// an OCI registry, its signature checked against `[trust]` before any byte of
/// it reaches the compiler (built-in components are part of the binary and
/// need none).
pub(crate) async fn load(
    shared: &Shared,
    source: ComponentSource,
    signature: Option<String>,
) -> Result<LoadedComponent> {
    let sandbox = shared.sandbox.clone();
    let builtins = shared.builtins.clone();
    let trust = TrustPolicy::new(&shared.config.trust)
        .map_err(|p| Error::new(ErrorCode::InvalidConfig, p.join("; ")))?;
    // An OCI component's signature may come with it (the manifest's annotation).
    let (source, checked) = match source {
        ComponentSource::Oci(oci) => {
            let cache = OciCache::beside(sandbox.cache().dir());
            let pulled = crate::oci::pull(&oci.reference, oci.credentials.as_ref(), &cache).await?;
            let signature = signature.clone().or(pulled.signature);
            trust.check(&pulled.bytes, signature.as_deref())?;
            (ComponentSource::Bytes(pulled.bytes), true)
        }
        other => (other, false),
    };
    // Compiling is CPU-bound (milliseconds to seconds): keep it off the async workers.
    let task = tokio::task::spawn_blocking(move || match source {
        ComponentSource::File(path) if trust.is_open() => sandbox.load_file(&path),
        ComponentSource::File(path) => {
            let too_big = std::fs::metadata(&path)
                .is_ok_and(|m| m.len() > tamma_sandbox::sandbox::MAX_COMPONENT_BYTES as u64);
            if too_big {
                return sandbox.load_file(&path);
            }
            let bytes = std::fs::read(&path).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidComponent,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let signature = match signature {
                Some(s) => Some(s),
                None => signature_beside(&path).map_err(|e| {
                    Error::new(
                        ErrorCode::InvalidComponent,
                        format!("cannot read the signature of {}: {e}", path.display()),
                    )
                })?,
            };
            trust.check(&bytes, signature.as_deref())?;
            sandbox.load(&bytes)
        }
        ComponentSource::Bytes(bytes) => {
            if !checked {
                trust.check(&bytes, signature.as_deref())?;
            }
            sandbox.load(&bytes)
        }
        ComponentSource::Oci(_) => Err(Error::new(ErrorCode::Internal, "unresolved OCI source")),
        ComponentSource::Builtin(kind) => match builtins.get(&kind) {
            Some(bytes) => sandbox.load(bytes),
            None => Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "no built-in provider type {kind:?}; this build has {:?}",
                    builtins.names()
                ),
            )),
        },
    });
    task.await.map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("component loading task failed: {e}"),
        )
    })?
}
