//! Secrets: values the host substitutes for `{{secret:NAME}}` placeholders in
//! a request's header values, so keys never enter guest memory.
//!
//! A secret may be bound to hosts: its placeholder is then substituted only in
//! requests to one of them (a provider allowed `api.vendor.com` and
//! `telemetry.vendor.com` cannot take the key to the second). And a secret value
//! an upstream reflects in its *response headers* is put back as its
//! placeholder before the guest sees them. Response *bodies* are not scanned:
//! an upstream that echoes the key in a body hands it to the guest.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderValue};

use super::allowlist::AllowedHost;
use super::target::Target;

/// A secret value (an API key), and the hosts it may be sent to (`None`: any
/// host the provider is allowed). Its `Debug` is `[redacted]`, and it has no
/// `Display`, so it cannot end up in a log or an error by accident.
#[derive(Clone)]
pub struct Secret {
    value: Arc<str>,
    hosts: Option<Arc<[AllowedHost]>>,
    /// `hosts` as configured, for display.
    host_entries: Option<Arc<[String]>>,
}

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret {
            value: value.into(),
            hosts: None,
            host_entries: None,
        }
    }

    /// The same secret, sent only to requests matching one of `hosts` (parsed
    /// from `entries`).
    pub(super) fn bound_to(self, hosts: Vec<AllowedHost>, entries: Vec<String>) -> Self {
        Secret {
            hosts: Some(hosts.into()),
            host_entries: Some(entries.into()),
            ..self
        }
    }

    /// The hosts it is bound to, as configured (`None`: any allowed host).
    pub fn hosts(&self) -> Option<&[String]> {
        self.host_entries.as_deref()
    }

    /// Whether it may be written into a request to `target`.
    fn may_go_to(&self, target: &Target) -> bool {
        self.hosts
            .as_ref()
            .is_none_or(|hosts| hosts.iter().any(|h| h.matches(target)))
    }

    /// The value itself; only for writing it into an outgoing header.
    fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

const PLACEHOLDER_OPEN: &[u8] = b"{{secret:";
const PLACEHOLDER_CLOSE: &[u8] = b"}}";

/// Whether `name` may name a secret: 1-128 of `A-Z a-z 0-9 _ - .` (what a
/// placeholder can carry without ambiguity).
pub(super) fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Why a header's placeholders could not be substituted. Holds names only.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SecretError {
    /// The placeholder names a secret the provider does not have.
    Unknown(String),
    /// An unclosed placeholder, or one whose name is not a valid secret name.
    Malformed,
    /// Substituting the named secret made an invalid header value.
    NotHeaderSafe(String),
    /// The named secret is bound to hosts this request is not going to.
    WrongHost(String),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Unknown(name) => write!(f, "unknown secret {name:?}"),
            SecretError::Malformed => f.write_str("malformed {{secret:NAME}} placeholder"),
            SecretError::NotHeaderSafe(name) => {
                write!(f, "secret {name:?} is not a valid header value")
            }
            SecretError::WrongHost(name) => {
                write!(f, "secret {name:?} is not bound to this host")
            }
        }
    }
}

/// Where `needle` first occurs in `haystack`. Header values are short, so the
/// naive scan is as good as a substring-search crate here.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Replace every `{{secret:NAME}}` in `value` of a request to `target`.
/// `Ok(None)` when there is none.
pub(super) fn substitute_secrets(
    value: &HeaderValue,
    secrets: &BTreeMap<String, Secret>,
    target: &Target,
) -> Result<Option<HeaderValue>, SecretError> {
    let bytes = value.as_bytes();
    if find(bytes, PLACEHOLDER_OPEN).is_none() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut rest = bytes;
    let mut last_name = String::new();
    while let Some(start) = find(rest, PLACEHOLDER_OPEN) {
        out.extend_from_slice(&rest[..start]);
        let after = &rest[start + PLACEHOLDER_OPEN.len()..];
        let end = find(after, PLACEHOLDER_CLOSE).ok_or(SecretError::Malformed)?;
        let name = std::str::from_utf8(&after[..end])
            .ok()
            .filter(|n| valid_secret_name(n))
            .ok_or(SecretError::Malformed)?;
        let secret = secrets
            .get(name)
            .ok_or_else(|| SecretError::Unknown(name.to_owned()))?;
        if !secret.may_go_to(target) {
            return Err(SecretError::WrongHost(name.to_owned()));
        }
        out.extend_from_slice(secret.expose().as_bytes());
        last_name = name.to_owned();
        rest = &after[end + PLACEHOLDER_CLOSE.len()..];
    }
    out.extend_from_slice(rest);
    let mut value =
        HeaderValue::from_bytes(&out).map_err(|_| SecretError::NotHeaderSafe(last_name))?;
    // Keeps it out of HPACK tables and makes `HeaderValue`'s Debug say "Sensitive".
    value.set_sensitive(true);
    Ok(Some(value))
}

/// Put back the placeholder of every secret value found in `headers` (an
/// upstream's response, before the guest sees it). Values shorter than four
/// bytes are left alone: they would match ordinary header text.
pub(super) fn redact_secrets(headers: &mut HeaderMap, secrets: &BTreeMap<String, Secret>) {
    let secrets: Vec<(&str, &[u8])> = secrets
        .iter()
        .map(|(name, s)| (name.as_str(), s.expose().as_bytes()))
        .filter(|(_, v)| v.len() >= 4)
        .collect();
    if secrets.is_empty() {
        return;
    }
    for value in headers.values_mut() {
        let mut bytes = value.as_bytes().to_vec();
        let mut changed = false;
        for (name, secret) in &secrets {
            while let Some(at) = find(&bytes, secret) {
                let placeholder = format!("{{{{secret:{name}}}}}");
                bytes.splice(at..at + secret.len(), placeholder.bytes());
                changed = true;
            }
        }
        if changed {
            // The placeholder is plain ASCII, so the value stays a valid header;
            // should it not, drop the value rather than pass the secret on.
            *value = HeaderValue::from_bytes(&bytes)
                .unwrap_or_else(|_| HeaderValue::from_static("{{secret:redacted}}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Target {
        Target::of(&uri.parse().unwrap()).unwrap()
    }

    #[test]
    fn secret_substitution_and_redaction() {
        let secrets: BTreeMap<String, Secret> = [
            ("api_key".to_string(), Secret::new("sk-123")),
            ("org".to_string(), Secret::new("org-9")),
        ]
        .into();
        let to = target("https://api.example.com/");
        let sub = |v: &str| substitute_secrets(&HeaderValue::from_str(v).unwrap(), &secrets, &to);
        assert_eq!(sub("plain").unwrap(), None);
        let v = sub("Bearer {{secret:api_key}}").unwrap().unwrap();
        assert_eq!(v.as_bytes(), b"Bearer sk-123");
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("sk-123"));
        assert_eq!(
            sub("{{secret:api_key}}/{{secret:org}}")
                .unwrap()
                .unwrap()
                .as_bytes(),
            b"sk-123/org-9"
        );
        assert_eq!(
            sub("{{secret:nope}}"),
            Err(SecretError::Unknown("nope".into()))
        );
        assert_eq!(sub("{{secret:api_key"), Err(SecretError::Malformed));
        assert_eq!(sub("{{secret:a b}}"), Err(SecretError::Malformed));

        assert_eq!(format!("{:?}", Secret::new("sk-123")), "[redacted]");
    }

    #[test]
    fn substituted_values_must_stay_valid_headers() {
        let secrets: BTreeMap<String, Secret> = [("bad".to_string(), Secret::new("a\nb"))].into();
        let to = target("https://api.example.com/");
        let err = substitute_secrets(&HeaderValue::from_static("{{secret:bad}}"), &secrets, &to)
            .unwrap_err();
        assert_eq!(err, SecretError::NotHeaderSafe("bad".into()));
        // The error names the secret, never its value.
        assert!(!err.to_string().contains("a\nb"), "{err}");
    }

    #[test]
    fn a_bound_secret_goes_only_to_its_hosts() {
        let bound = Secret::new("sk-123").bound_to(
            vec![AllowedHost::parse("https://api.example.com").unwrap()],
            vec!["https://api.example.com".into()],
        );
        let secrets: BTreeMap<String, Secret> = [("api_key".to_string(), bound)].into();
        let v = HeaderValue::from_static("Bearer {{secret:api_key}}");
        let ok = substitute_secrets(&v, &secrets, &target("https://api.example.com/v1"));
        assert_eq!(ok.unwrap().unwrap().as_bytes(), b"Bearer sk-123");
        for other in [
            "https://telemetry.example.com/",
            "http://api.example.com/",
            "https://api.example.com:8443/",
        ] {
            assert_eq!(
                substitute_secrets(&v, &secrets, &target(other)),
                Err(SecretError::WrongHost("api_key".into())),
                "{other}"
            );
        }
    }

    #[test]
    fn reflected_secrets_are_put_back_as_placeholders() {
        let secrets: BTreeMap<String, Secret> = [
            ("api_key".to_string(), Secret::new("sk-123")),
            ("tiny".to_string(), Secret::new("a")),
        ]
        .into();
        let mut headers = HeaderMap::new();
        headers.insert("x-echo", HeaderValue::from_static("Bearer sk-123, sk-123"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        redact_secrets(&mut headers, &secrets);
        assert_eq!(
            headers["x-echo"],
            "Bearer {{secret:api_key}}, {{secret:api_key}}"
        );
        assert_eq!(headers["content-type"], "application/json");
    }
}
