//! `oci://HOST[:PORT]/REPO[:TAG][@sha256:DIGEST]`.

use std::fmt;

use tamma_sandbox::error::{Error, ErrorCode, Result};

/// The scheme prefix that marks a registry reference.
pub const SCHEME: &str = "oci://";

/// A parsed registry reference.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OciReference {
    /// `HOST[:PORT]`.
    pub registry: String,
    /// `REPO` (may have `/`).
    pub repository: String,
    /// The tag, if given.
    pub tag: Option<String>,
    /// `sha256:HEX` of the manifest, if pinned.
    pub digest: Option<String>,
}

impl OciReference {
    /// Whether `s` is meant as a registry reference (starts with `oci://`).
    pub fn is_oci(s: &str) -> bool {
        s.starts_with(SCHEME)
    }

    /// Parse `oci://…`; errors say what is wrong, as `INVALID_CONFIG`.
    pub fn parse(s: &str) -> Result<OciReference> {
        let bad = |why: &str| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("component reference {s:?}: {why} (expected oci://HOST[:PORT]/REPO:TAG@sha256:DIGEST)"),
            )
        };
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("does not start with oci://"))?;
        let (rest, digest) = match rest.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("the digest must be sha256:…"))?;
                if hex.len() != 64
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(bad(
                        "the digest must be sha256: and 64 lowercase hex digits",
                    ));
                }
                (r, Some(d.to_string()))
            }
            None => (rest, None),
        };
        let (registry, path) = rest.split_once('/').ok_or_else(|| bad("no repository"))?;
        if registry.is_empty()
            || !registry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        {
            return Err(bad("the registry host is empty or malformed"));
        }
        // A tag follows the last `:` after the last `/` (a port is before the first `/`).
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_string())),
            _ => (path, None),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'.' | b'_' | b'-')
                    })
            });
        if !repo_ok {
            return Err(bad(
                "the repository must be lowercase a-z 0-9 . _ - parts separated by /",
            ));
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(bad("the tag must be 1-128 of A-Z a-z 0-9 . _ -"));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad("give a tag, a digest, or both"));
        }
        Ok(OciReference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// Whether the reference names its manifest by digest.
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some()
    }

    /// The same reference pinned to `digest`.
    pub fn pinned(&self, digest: &str) -> OciReference {
        OciReference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// The host without the port (for the loopback check).
    pub fn host(&self) -> &str {
        let r = self.registry.as_str();
        if let Some(end) = r.strip_prefix('[').and_then(|x| x.find(']')) {
            return &r[1..=end];
        }
        r.rsplit_once(':').map(|(h, _)| h).unwrap_or(r)
    }

    /// Whether the registry is on this machine (plain HTTP is used only then).
    pub fn is_loopback(&self) -> bool {
        let h = self.host();
        h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }

    /// The `oci-client` form: `HOST/REPO[:TAG][@DIGEST]`.
    pub(super) fn client_reference(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
                d.clone(),
            ),
            (None, Some(d)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            (Some(t), None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
            ),
            (None, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                "latest".into(),
            ),
        }
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OciReference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_host_port_repo_tag_and_digest() {
        let r = OciReference::parse(&format!("oci://127.0.0.1:5000/tamma/echo:1.0@{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "tamma/echo");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.digest.as_deref(), Some(D));
        assert!(r.is_pinned() && r.is_loopback());
        assert_eq!(
            r.to_string(),
            format!("oci://127.0.0.1:5000/tamma/echo:1.0@{D}")
        );
        let r = OciReference::parse("oci://ghcr.io/acme/provider:v2").unwrap();
        assert_eq!(r.host(), "ghcr.io");
        assert!(!r.is_pinned() && !r.is_loopback());
        assert_eq!(
            OciReference::parse("oci://[::1]:5000/x:1").unwrap().host(),
            "::1"
        );
    }

    #[test]
    fn malformed_references_say_why() {
        for (bad, why) in [
            ("oci://host", "no repository"),
            ("oci://host/Repo:1", "lowercase"),
            ("oci://host/repo", "give a tag"),
            ("oci://host/repo:1@sha256:abc", "64 lowercase hex"),
            ("oci://host/repo:1@md5:abc", "sha256"),
            ("oci:///repo:1", "registry host"),
        ] {
            let e = OciReference::parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig);
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
    }
}
