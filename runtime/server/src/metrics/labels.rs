//! Label sets of the gateway's metric families, and label values escaped for the
//! text format.

use std::borrow::Cow;
use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// A label value, escaped as the text format wants (`\\`, `\"`, `\n`).
///
/// prometheus-client writes label values verbatim, so a route name or provider
/// name holding a quote would otherwise break the whole exposition. Kept by
/// hand because the escaping is three characters and no crate offers it alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct Value(Cow<'static, str>);

impl Value {
    /// A value that is known at compile time (no copy).
    pub const fn fixed(v: &'static str) -> Self {
        Value(Cow::Borrowed(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value(Cow::Owned(v.to_string()))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value(Cow::Owned(v))
    }
}

impl EncodeLabelValue for Value {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// `tamma_http_requests_total` and `tamma_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Request {
    /// `chat_completions`, `messages`, `models`.
    pub endpoint: &'static str,
    /// The provider that answered; empty when none was chosen.
    pub provider: Value,
    /// The HTTP status answered.
    pub status: u16,
}

/// `tamma_http_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiError {
    /// The provider that failed; empty when none was chosen.
    pub provider: Value,
    /// The OpenAI-shaped error code answered.
    pub code: Value,
}

/// `tamma_http_rejected_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Rejection {
    /// Which server limit refused the request.
    pub reason: &'static str,
}

/// `tamma_route_fallbacks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    /// The route (or requested model) that fell through.
    pub route: Value,
}

/// `tamma_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildInfo {
    /// This crate's version.
    pub version: &'static str,
    /// The wasmtime version the sandbox runs on.
    pub wasmtime: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode_registry;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    #[test]
    fn values_are_escaped() {
        let family = Family::<Route, Counter>::default();
        let mut registry = Registry::default();
        registry.register("r", "r", family.clone());
        family
            .get_or_create(&Route {
                route: "a\"b\\c\nd".into(),
            })
            .inc();
        let mut out = String::new();
        encode_registry(&mut out, &registry).unwrap();
        assert!(out.contains(r#"r_total{route="a\"b\\c\nd"} 1"#), "{out}");
    }
}
