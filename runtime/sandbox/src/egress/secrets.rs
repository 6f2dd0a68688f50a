//! Secrets: values the host substitutes for `{{secret:NAME}}` placeholders in
//! a request's header values, so keys never enter guest memory.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use http::header::HeaderValue;

/// A secret value (an API key). Its `Debug` is `[redacted]`, and it has no
/// `Display`, so it cannot end up in a log or an error by accident.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The value itself; only for writing it into an outgoing header.
    fn expose(&self) -> &str {
        &self.0
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
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Unknown(name) => write!(f, "unknown secret {name:?}"),
            SecretError::Malformed => f.write_str("malformed {{secret:NAME}} placeholder"),
            SecretError::NotHeaderSafe(name) => {
                write!(f, "secret {name:?} is not a valid header value")
            }
        }
    }
}

/// Where `needle` first occurs in `haystack`. Header values are short, so the
/// naive scan is as good as a substring-search crate here.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Replace every `{{secret:NAME}}` in `value`. `Ok(None)` when there is none.
pub(super) fn substitute_secrets(
    value: &HeaderValue,
    secrets: &BTreeMap<String, Secret>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_substitution_and_redaction() {
        let secrets: BTreeMap<String, Secret> = [
            ("api_key".to_string(), Secret::new("sk-123")),
            ("org".to_string(), Secret::new("org-9")),
        ]
        .into();
        let sub = |v: &str| substitute_secrets(&HeaderValue::from_str(v).unwrap(), &secrets);
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
        let err =
            substitute_secrets(&HeaderValue::from_static("{{secret:bad}}"), &secrets).unwrap_err();
        assert_eq!(err, SecretError::NotHeaderSafe("bad".into()));
        // The error names the secret, never its value.
        assert!(!err.to_string().contains("a\nb"), "{err}");
    }
}
