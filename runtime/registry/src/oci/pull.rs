//! A reference → the component's bytes and its signature, verified: the
//! manifest against the pinned digest, the layer against the manifest.

use std::sync::Arc;

use oci_client::manifest::{OciImageManifest, OCI_IMAGE_MEDIA_TYPE};
use tamma_sandbox::error::{Error, ErrorCode, Result};
use tamma_sandbox::sandbox::MAX_COMPONENT_BYTES;

use super::cache::OciCache;
use super::capped_writer::CappedWriter;
use super::client::{client_for, pull_error};
use super::credentials::OciCredentials;
use super::layout::{component_layer, sha256_digest, SIGNATURE_ANNOTATION};
use super::reference::OciReference;

/// A pulled component.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// The component's bytes.
    pub bytes: Arc<[u8]>,
    /// The manifest's digest (what to pin).
    pub manifest_digest: String,
    /// The `.minisig` text from the manifest, if it carries one.
    pub signature: Option<String>,
    /// Whether nothing had to come from the registry.
    pub from_cache: bool,
}

/// Pull `reference`. A pinned reference whose manifest and layer are in `cache`
/// needs no registry at all (so a replica restarts while the registry is down);
/// an unpinned one always asks the registry which manifest its tag names now.
pub async fn pull(
    reference: &OciReference,
    credentials: Option<&OciCredentials>,
    cache: &OciCache,
) -> Result<Pulled> {
    if let Some(digest) = &reference.digest {
        if let Some(hit) = from_cache(reference, digest, cache)? {
            return Ok(hit);
        }
    } else {
        tracing::warn!(
            target: "tamma::oci",
            reference = %reference,
            "component reference is not pinned by digest: replicas may run different bytes; pin it with @sha256:…"
        );
    }
    let client = client_for(reference);
    let image = reference.client_reference();
    let auth = OciCredentials::auth(credentials);
    let (raw, digest) = client
        .pull_manifest_raw(&image, &auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|e| pull_error(reference, "pulling the manifest", e))?;
    // oci-client checks the body against a digest in the reference; check again
    // here, where it is this module's promise.
    let actual = sha256_digest(&raw);
    if let Some(pinned) = &reference.digest {
        if &actual != pinned {
            return Err(mismatch(reference, "manifest", pinned, &actual));
        }
    }
    if digest != actual {
        tracing::debug!(target: "tamma::oci", reference = %reference, "registry's digest header differs from the manifest's own hash");
    }
    let manifest = parse_manifest(reference, &raw)?;
    let layer = component_layer(&manifest)
        .ok_or_else(|| no_layer(reference))?
        .clone();
    if layer.size < 0 || layer.size as u64 > MAX_COMPONENT_BYTES as u64 {
        return Err(Error::new(
            ErrorCode::InvalidComponent,
            format!(
                "{reference}: the component layer is {} bytes; the limit is {MAX_COMPONENT_BYTES}",
                layer.size
            ),
        ));
    }
    let bytes = match cache.get(&layer.digest) {
        Some(b) => b,
        None => {
            // Cut the download at the declared size (already checked against
            // the limit) rather than discover an oversized layer at the end.
            let mut sink = CappedWriter::new(layer.size as usize);
            let pulled = client.pull_blob(&image, &layer, &mut sink).await;
            if let Err(e) = pulled {
                if sink.overflowed {
                    return Err(Error::new(
                        ErrorCode::InvalidComponent,
                        format!(
                            "{reference}: the component layer is larger than its declared {} bytes",
                            layer.size
                        ),
                    ));
                }
                return Err(pull_error(reference, "pulling the component layer", e));
            }
            let out = sink.bytes;
            let got = sha256_digest(&out);
            if got != layer.digest {
                return Err(mismatch(reference, "component layer", &layer.digest, &got));
            }
            cache.put(&layer.digest, &out);
            out
        }
    };
    cache.put(&actual, &raw);
    Ok(Pulled {
        bytes: bytes.into(),
        signature: signature(&manifest),
        manifest_digest: actual,
        from_cache: false,
    })
}

fn from_cache(reference: &OciReference, digest: &str, cache: &OciCache) -> Result<Option<Pulled>> {
    let Some(raw) = cache.get(digest) else {
        return Ok(None);
    };
    let manifest = parse_manifest(reference, &raw)?;
    let layer = component_layer(&manifest).ok_or_else(|| no_layer(reference))?;
    Ok(cache.get(&layer.digest).map(|bytes| Pulled {
        bytes: bytes.into(),
        manifest_digest: digest.to_string(),
        signature: signature(&manifest),
        from_cache: true,
    }))
}

fn parse_manifest(reference: &OciReference, raw: &[u8]) -> Result<OciImageManifest> {
    serde_json::from_slice(raw).map_err(|e| {
        Error::new(
            ErrorCode::InvalidComponent,
            format!("{reference}: the manifest is not an OCI image manifest: {e}"),
        )
    })
}

fn signature(manifest: &OciImageManifest) -> Option<String> {
    manifest
        .annotations
        .as_ref()
        .and_then(|a| a.get(SIGNATURE_ANNOTATION))
        .cloned()
}

fn no_layer(reference: &OciReference) -> Error {
    Error::new(
        ErrorCode::InvalidComponent,
        format!(
            "{reference}: the manifest has no application/wasm layer (is it a Wasm component artifact?)"
        ),
    )
}

fn mismatch(reference: &OciReference, what: &str, expected: &str, actual: &str) -> Error {
    Error::new(
        ErrorCode::InvalidComponent,
        format!(
            "{reference}: {what} digest mismatch: expected {expected}, got {actual}; not loaded"
        ),
    )
}
