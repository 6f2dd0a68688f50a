//! The Wasm OCI artifact layout (CNCF TAG Runtime's "Wasm OCI Artifact", the one
//! wasmCloud, Spin and `wkg` write): an image manifest whose config has media type
//! `application/vnd.wasm.config.v0+json` and whose one layer is the component,
//! `application/wasm`. The older `application/vnd.wasm.content.layer.v1+wasm`
//! layer (wasm-to-oci) is read too.

use std::collections::BTreeMap;

use oci_client::manifest::{OciDescriptor, OciImageManifest, OCI_IMAGE_MEDIA_TYPE};
use sha2::{Digest, Sha256};

/// The component layer's media type.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The config's media type.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The manifest annotation holding a minisign signature of the component
/// (the `.minisig` file's text).
pub const SIGNATURE_ANNOTATION: &str = "dev.tamma.signature.minisign";

/// `sha256:HEX` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The component's layer in a manifest.
pub fn component_layer(manifest: &OciImageManifest) -> Option<&OciDescriptor> {
    manifest.layers.iter().find(|l| {
        l.media_type == WASM_LAYER_MEDIA_TYPE
            || l.media_type == oci_client::manifest::WASM_LAYER_MEDIA_TYPE
    })
}

/// The config blob: what the layout asks for (architecture, os, the layer digests).
pub fn config_blob(layer_digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
    }))
    .unwrap_or_default()
}

/// The manifest for a component of `size` bytes with `layer_digest`, its config,
/// and the signature (if any) as an annotation.
pub fn manifest(
    layer_digest: &str,
    size: usize,
    config: &[u8],
    signature: Option<&str>,
) -> OciImageManifest {
    let annotations =
        signature.map(|s| BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), s.to_string())]));
    OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        config: OciDescriptor {
            media_type: WASM_CONFIG_MEDIA_TYPE.to_string(),
            digest: sha256_digest(config),
            size: config.len() as i64,
            ..OciDescriptor::default()
        },
        layers: vec![OciDescriptor {
            media_type: WASM_LAYER_MEDIA_TYPE.to_string(),
            digest: layer_digest.to_string(),
            size: size as i64,
            ..OciDescriptor::default()
        }],
        subject: None,
        artifact_type: None,
        annotations,
    }
}
