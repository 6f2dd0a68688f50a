//! The admin API's registration body, in either of its two forms:
//!
//! - **JSON** (`Content-Type: application/json`, or none): the fields below, with
//!   the component as `component_base64`, a `builtin` type, or a `component`
//!   reference (`oci://HOST/REPO:TAG@sha256:…`).
//! - **Raw** (`Content-Type: application/wasm`): the body is the component itself
//!   (no base64: a third smaller, and nothing has to fit in a shell argument).
//!   The metadata comes from the query string — `name`, `version`,
//!   `allowed_host` (repeatable), `config=KEY=VALUE` (repeatable) — and/or from a
//!   `Tamma-Registration` header holding the JSON fields (everything but the
//!   component; the only place for `secrets`, which never belong in a URL, and
//!   for `signature`, the `.minisig` text with its newlines JSON-escaped).
//!
//! ```text
//! curl --data-binary @provider.wasm -H 'content-type: application/wasm' \
//!   -H "authorization: Bearer $TOKEN" \
//!   'http://127.0.0.1:8080/admin/v1/providers?name=my-provider&version=1.2.0&allowed_host=https://api.example.com'
//! ```

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request};
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;

use super::api_error::ApiError;
use super::{read_body, AppState};
use tamma_registry::oci::OciReference;
use tamma_registry::registry::{ComponentSource, OciSource, Origin, Registration};
use tamma_sandbox::egress::EgressPolicy;
use tamma_sandbox::limits::Limits;
use tamma_sandbox::settings::ProviderSettings;

/// The header carrying a raw upload's JSON metadata.
pub const REGISTRATION_HEADER: &str = "tamma-registration";

/// The registration fields.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    #[serde(default)]
    /// The provider name.
    pub name: Option<String>,
    #[serde(default)]
    component_base64: Option<String>,
    #[serde(default)]
    builtin: Option<String>,
    /// A component reference: `oci://…` (a path is refused: the server's own
    /// files are not the caller's to name).
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    limits: Option<Limits>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    /// The hosts each secret may be sent to (`{"api_key": ["https://api.x.com"]}`);
    /// a built-in's secrets default to its `base_url`'s host, as in the file.
    #[serde(default)]
    secret_hosts: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    egress_limits: Option<tamma_sandbox::egress::EgressLimits>,
    /// A minisign signature of the component (the `.minisig` file's text),
    /// checked against the server's `[trust]` keys.
    #[serde(default)]
    signature: Option<String>,
    /// The body of a raw upload.
    #[serde(skip)]
    raw: Option<Bytes>,
}

/// Read and parse the registration body, JSON or raw.
pub async fn parse_upload(state: &AppState, req: Request<Body>) -> Result<Upload, ApiError> {
    let raw = is_wasm(req.headers());
    let (parts, body) = req.into_parts();
    let body = read_body(state, body, state.config.load().limits.max_upload_bytes).await?;
    if !raw {
        return serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid registration: {e}")));
    }
    let mut u = match parts.headers.get(REGISTRATION_HEADER) {
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                ApiError::bad_request(format!("{REGISTRATION_HEADER} is not visible ASCII"))
            })?;
            serde_json::from_str::<Upload>(text).map_err(|e| {
                ApiError::bad_request(format!("invalid {REGISTRATION_HEADER} header: {e}"))
            })?
        }
        None => Upload::default(),
    };
    if u.component_base64.is_some() || u.builtin.is_some() || u.component.is_some() {
        return Err(ApiError::bad_request(
            "a raw upload's body is the component: the metadata names no other",
        ));
    }
    apply_query(&mut u, parts.uri.query().unwrap_or(""))?;
    u.raw = Some(body);
    Ok(u)
}

fn is_wasm(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/wasm"))
}

/// The query's metadata onto `u`. A field given both here and in the header
/// must agree (two different names would be a caller's mistake worth naming).
fn apply_query(u: &mut Upload, query: &str) -> Result<(), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    for (key, value) in pairs {
        match key.as_str() {
            "name" => set_once(&mut u.name, value, "name")?,
            "version" => set_once(&mut u.version, value, "version")?,
            "allowed_host" => u.allowed_hosts.push(value),
            "config" => {
                let (k, v) = value
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| ApiError::bad_request("config is KEY=VALUE").param("config"))?;
                u.config.insert(k.to_string(), v.to_string());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}` (name, version, allowed_host, config; \
                     the rest goes in the {REGISTRATION_HEADER} header)"
                ))
                .param(other))
            }
        }
    }
    Ok(())
}

fn set_once(slot: &mut Option<String>, value: String, field: &str) -> Result<(), ApiError> {
    match slot {
        Some(old) if *old != value => Err(ApiError::bad_request(format!(
            "{field} differs between the query and the {REGISTRATION_HEADER} header"
        ))
        .param(field)),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// The registration the upload describes.
pub fn registration(u: Upload) -> Result<Registration, ApiError> {
    let bound = tamma_registry::discovery::admin_secret_hosts(
        u.secrets.keys(),
        &u.secret_hosts,
        u.builtin.as_deref(),
        &u.config,
    );
    let source = match (u.raw, u.component_base64, u.builtin, u.component) {
        (Some(bytes), None, None, None) => ComponentSource::Bytes(bytes.to_vec().into()),
        (None, Some(b64), None, None) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    ApiError::bad_request(format!("component_base64 is not base64: {e}"))
                        .param("component_base64")
                })?;
            ComponentSource::Bytes(bytes.into())
        }
        (None, None, Some(b), None) => ComponentSource::Builtin(b),
        (None, None, None, Some(reference)) => component_reference(&reference)?,
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of component_base64, builtin and component",
            ))
        }
    };
    let egress = EgressPolicy::try_new(
        u.allowed_hosts,
        u.secrets,
        u.egress_limits.unwrap_or_default(),
    )
    .and_then(|e| e.with_secret_hosts(bound))
    .map_err(|e| {
        ApiError::bad_request(format!("invalid egress policy: {e}")).param("allowed_hosts")
    })?;
    let settings = ProviderSettings {
        config: u.config.into_iter().collect(),
        limits: u.limits.unwrap_or_default(),
        egress,
    };
    let mut r = Registration::new(source)
        .with_settings(settings)
        .with_origin(Origin::Api);
    r.version = u.version;
    r.signature = u.signature;
    Ok(r)
}

/// A component reference from the API: only registry references (a path would
/// let an admin token load any file the server can read).
fn component_reference(reference: &str) -> Result<ComponentSource, ApiError> {
    if !OciReference::is_oci(reference) {
        return Err(ApiError::bad_request(format!(
            "component `{reference}`: the admin API takes only oci:// references (upload the bytes otherwise)"
        ))
        .param("component"));
    }
    let reference = OciReference::parse(reference)
        .map_err(|e| ApiError::bad_request(e.message).param("component"))?;
    Ok(ComponentSource::Oci(OciSource {
        reference,
        credentials: None,
    }))
}
