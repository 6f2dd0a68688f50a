//! A component file → a registry, in the Wasm OCI artifact layout; returns the
//! manifest digest to pin.

use http::HeaderValue;
use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use tamma_sandbox::error::{Error, ErrorCode, Result};

use super::client::{client_for, pull_error};
use super::credentials::OciCredentials;
use super::layout::{config_blob, manifest, sha256_digest};
use super::reference::OciReference;

/// Push `component` (and its `.minisig` text, as a manifest annotation) to
/// `reference` (which names a tag, not a digest). Returns `sha256:…` of the
/// manifest: `reference` pinned to it is what replicas should name.
pub async fn push(
    component: &[u8],
    signature: Option<&str>,
    reference: &OciReference,
    credentials: Option<&OciCredentials>,
) -> Result<String> {
    if reference.digest.is_some() || reference.tag.is_none() {
        return Err(Error::new(
            ErrorCode::InvalidConfig,
            format!("{reference}: push to a tag (oci://HOST/REPO:TAG); the digest is what the push prints"),
        ));
    }
    let client = client_for(reference);
    let image = reference.client_reference();
    let auth = OciCredentials::auth(credentials);
    client
        .auth(&image, &auth, oci_client::RegistryOperation::Push)
        .await
        .map_err(|e| pull_error(reference, "authenticating", e))?;
    let layer_digest = sha256_digest(component);
    client
        .push_blob(&image, component, &layer_digest)
        .await
        .map_err(|e| pull_error(reference, "pushing the component layer", e))?;
    let config = config_blob(&layer_digest);
    client
        .push_blob(&image, &config, &sha256_digest(&config))
        .await
        .map_err(|e| pull_error(reference, "pushing the config", e))?;
    let m = manifest(&layer_digest, component.len(), &config, signature);
    let body = serde_json::to_vec(&m)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("manifest encoding: {e}")))?;
    let digest = sha256_digest(&body);
    client
        .push_manifest_raw(&image, body, HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE))
        .await
        .map_err(|e| pull_error(reference, "pushing the manifest", e))?;
    Ok(digest)
}
