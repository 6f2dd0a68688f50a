//! The `oci-client` client, and its errors mapped onto the runtime's codes.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::Client;

use tamma_sandbox::error::{Error, ErrorCode};

use super::reference::OciReference;

/// A client for `reference`'s registry: HTTPS (rustls, webpki roots), except a
/// registry on loopback, which is spoken to in plain HTTP (as Docker does for
/// `localhost`): nothing leaves the machine then, and a local test or cache
/// registry rarely has a certificate.
pub(super) fn client_for(reference: &OciReference) -> Client {
    let protocol = if reference.is_loopback() {
        ClientProtocol::HttpsExcept(vec![reference.registry.clone()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..ClientConfig::default()
    })
}

/// `e` as a runtime error about `reference`. A digest that does not match, or a
/// pinned manifest the registry does not have, is `INVALID_COMPONENT`; a
/// registry that cannot be reached or refuses is `INTERNAL` (a host-side I/O
/// failure, not the component's). Messages carry the reference and the
/// registry's own words, never credentials (they travel only in headers).
pub(super) fn pull_error(reference: &OciReference, what: &str, e: OciDistributionError) -> Error {
    use OciDistributionError as E;
    match &e {
        E::DigestError(d) => Error::new(
            ErrorCode::InvalidComponent,
            format!("{reference}: {what}: digest mismatch ({d}); not loaded"),
        ),
        E::ImageManifestNotFoundError(_) => not_found(reference, what),
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                matches!(
                    x.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) =>
        {
            not_found(reference, what)
        }
        E::ServerError { code: 404, .. } => not_found(reference, what),
        // An anonymous push comes back as a bare 401 `ServerError`: the same answer.
        E::AuthenticationFailure(_)
        | E::UnauthorizedError { .. }
        | E::ServerError {
            code: 401 | 403, ..
        } => Error::new(
            ErrorCode::Internal,
            format!(
                "{reference}: {what}: the registry refused the credentials (or none were given)"
            ),
        ),
        E::RequestError(re) => Error::new(
            ErrorCode::Internal,
            format!(
                "{reference}: {what}: cannot reach the registry {}: {}",
                reference.registry,
                chain(re)
            ),
        ),
        _ => Error::new(ErrorCode::Internal, format!("{reference}: {what}: {e}")),
    }
}

fn not_found(reference: &OciReference, what: &str) -> Error {
    let hint = if reference.is_pinned() {
        " (is the pinned digest right? `tamma push` prints it)"
    } else {
        ""
    };
    Error::new(
        ErrorCode::InvalidComponent,
        format!("{reference}: {what}: the registry has no such manifest{hint}; not loaded"),
    )
}

/// An error and its sources on one line ("error sending request: connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
