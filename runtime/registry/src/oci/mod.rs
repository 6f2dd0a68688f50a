//! Components from an OCI registry: `component = "oci://HOST[:PORT]/REPO:TAG@sha256:DIGEST"`.
//!
//! | file | what |
//! |---|---|
//! | `reference` | parsing `oci://` references; pinned (by manifest digest) or not |
//! | `layout` | the Wasm OCI artifact layout (one `application/wasm` layer, a `application/vnd.wasm.config.v0+json` config), as wasmCloud, Spin and `wkg` write it |
//! | `client` | the `oci-client` client: plain HTTP for loopback registries only, errors mapped onto the runtime's codes |
//! | `cache` | manifests and layers by digest, beside the compile cache |
//! | `capped_writer` | the download buffer that refuses bytes past the layer's declared size |
//! | `pull` | a reference → the component's bytes (and its signature), verified |
//! | `push` | a component file → a registry, returning the digest to pin |
//! | `credentials` | registry credentials; the password is a secret (redacted `Debug`, never logged) |
//!
//! What a pinned reference promises: the manifest fetched is the one whose
//! SHA-256 is the pinned digest, and the layer is the one that manifest names
//! (its SHA-256 checked too), so every replica pulling the same reference runs
//! the same bytes. Anything else is `INVALID_COMPONENT` and is never loaded.
//!
//! A signature travels in the manifest, as the annotation
//! [`SIGNATURE_ANNOTATION`] holding the `.minisig` file's text (covered by the
//! manifest digest; verified against the component bytes by `trust`).

mod cache;
mod capped_writer;
mod client;
mod credentials;
mod layout;
mod pull;
mod push;
mod reference;

pub use cache::OciCache;
pub use credentials::OciCredentials;
pub use layout::{SIGNATURE_ANNOTATION, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};
pub use pull::{pull, Pulled};
pub use push::push;
pub use reference::OciReference;
