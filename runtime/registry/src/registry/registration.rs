//! What a caller hands the registry to register a provider: where its component
//! comes from, its settings, how it came to be registered, and the rule for its
//! name.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use tamma_sandbox::error::{Error, ErrorCode, Result};
use tamma_sandbox::settings::ProviderSettings;

/// Where a provider's component comes from.
#[derive(Clone)]
pub enum ComponentSource {
    /// A `.wasm` file on disk.
    File(PathBuf),
    /// Component bytes (uploaded, or read by the caller).
    Bytes(Arc<[u8]>),
    /// A provider type built into the binary (`echo`, `openai`, `anthropic`).
    Builtin(String),
    /// A component in an OCI registry, pulled (or found in the cache by digest)
    /// when it is loaded.
    Oci(OciSource),
}

/// Where in an OCI registry a component is, and how to log in there.
#[derive(Clone, Debug)]
pub struct OciSource {
    /// `oci://HOST/REPO:TAG@sha256:…`
    pub reference: crate::oci::OciReference,
    /// Registry credentials, if it needs them (redacted in `Debug`).
    pub credentials: Option<crate::oci::OciCredentials>,
}

impl ComponentSource {
    /// The built-in type, for [`ComponentSource::Builtin`].
    pub fn builtin_type(&self) -> Option<&str> {
        match self {
            ComponentSource::Builtin(t) => Some(t),
            _ => None,
        }
    }
}

impl std::fmt::Debug for ComponentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComponentSource::File(p) => write!(f, "File({})", p.display()),
            ComponentSource::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            ComponentSource::Builtin(n) => write!(f, "Builtin({n})"),
            ComponentSource::Oci(o) => write!(f, "Oci({})", o.reference),
        }
    }
}

/// How a provider came to be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Declared in the configuration file.
    Config,
    /// Found in the plugin directory.
    Plugin,
    /// Registered through the admin API or the library API.
    Api,
    /// Registered by environment discovery (an API key variable).
    Environment,
}

impl Origin {
    /// Lowercase name, as in snapshots and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Plugin => "plugin",
            Origin::Api => "api",
            Origin::Environment => "environment",
        }
    }

    /// The source in words, for messages to people ("the plugin directory
    /// declares it too").
    pub fn describe(self) -> &'static str {
        match self {
            Origin::Config => "configuration file",
            Origin::Plugin => "plugin directory",
            Origin::Environment => "environment",
            Origin::Api => "API",
        }
    }
}

/// Everything needed to register a provider.
#[derive(Clone, Debug)]
pub struct Registration {
    /// The component.
    pub source: ComponentSource,
    /// Its configuration, limits and egress policy.
    pub settings: ProviderSettings,
    /// How it came to be registered.
    pub origin: Origin,
    /// Its version, when known (plugin manifests carry one).
    pub version: Option<String>,
    /// A minisign signature of the component's bytes (a `.minisig` file's
    /// text), checked against the registry's `[trust]` keys. A component from
    /// an OCI registry brings its own (the manifest's annotation) when this is
    /// `None`.
    pub signature: Option<String>,
}

impl Registration {
    /// A registration through the API with default settings.
    pub fn new(source: ComponentSource) -> Self {
        Registration {
            source,
            settings: ProviderSettings::default(),
            origin: Origin::Api,
            version: None,
            signature: None,
        }
    }

    /// Set the settings (builder style).
    pub fn with_settings(mut self, settings: ProviderSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Set the origin (builder style).
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }
}

/// Check a provider name: 1–64 characters of `a-z 0-9 - _ .`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
    let problem = if name.is_empty() {
        Some("must not be empty".to_string())
    } else if name.len() > 64 {
        Some(format!(
            "is {} characters long; the limit is 64",
            name.len()
        ))
    } else {
        name.chars()
            .find(|c| !ok_char(*c))
            .map(|c| format!("contains {c:?}; allowed are a-z, 0-9, '-', '_' and '.'"))
    };
    match problem {
        None => Ok(()),
        Some(p) => {
            // The name is echoed escaped and truncated: it is untrusted input.
            let shown: String = name.chars().take(80).collect();
            Err(Error::new(
                ErrorCode::InvalidName,
                format!("provider name {shown:?} {p}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        assert!(validate_name("open-ai_2.x").is_ok());
        for bad in ["", "Upper", "sp ace", &"x".repeat(65)] {
            let e = validate_name(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidName, "{bad:?}");
        }
    }

    #[test]
    fn origins_have_a_tag_and_words() {
        assert_eq!(Origin::Plugin.as_str(), "plugin");
        assert_eq!(Origin::Plugin.describe(), "plugin directory");
        assert_eq!(Origin::Api.describe(), "API");
        assert_eq!(
            ComponentSource::Builtin("echo".into()).builtin_type(),
            Some("echo")
        );
        assert_eq!(ComponentSource::File("x".into()).builtin_type(), None);
    }
}
