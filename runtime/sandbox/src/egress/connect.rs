//! Connecting: TLS by rustls with the webpki roots, over a TCP connection to
//! exactly the address the policy checked (never a second resolution, so no DNS
//! rebinding window), with the ALPN result reported to hyper-util.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use wasmtime_wasi_http::Error as HttpError;

/// The one TLS client configuration: webpki roots, ring, ALPN `h2` then
/// `http/1.1`.
static TLS_CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    // An explicit provider: `ClientConfig::builder()` panics if another crate in
    // the build turns on a second rustls backend.
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
});

/// Connects to one fixed, already-checked address whatever the URI's host
/// resolves to; the URI's host is used only for TLS (SNI and certificate name).
#[derive(Clone)]
pub(super) struct PinnedConnector {
    /// The checked address every connection goes to.
    addr: SocketAddr,
    /// Bound on TCP connect plus TLS handshake.
    connect_timeout: Duration,
}

impl PinnedConnector {
    /// A connector to `addr`, giving up after `connect_timeout`.
    pub(super) fn new(addr: SocketAddr, connect_timeout: Duration) -> Self {
        PinnedConnector {
            addr,
            connect_timeout,
        }
    }
}

impl tower_service::Service<Uri> for PinnedConnector {
    type Response = PinnedConnection;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<PinnedConnection, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let addr = self.addr;
        let timeout = self.connect_timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connect(addr, uri)).await {
                Ok(result) => result,
                Err(_) => Err(ConnectError::Timeout),
            }
        })
    }
}

/// Open TCP to `addr`, then TLS for `uri`'s host when the scheme is `https`.
async fn connect(addr: SocketAddr, uri: Uri) -> Result<PinnedConnection, ConnectError> {
    let tcp = TcpStream::connect(addr).await.map_err(ConnectError::Tcp)?;
    // Requests are small and latency-bound; Nagle only adds delay.
    let _ = tcp.set_nodelay(true);
    if uri.scheme_str() != Some("https") {
        return Ok(PinnedConnection {
            io: TokioIo::new(Stream::Plain(tcp)),
            h2: false,
        });
    }
    let host = uri.host().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::from(ip),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| ConnectError::BadServerName)?,
    };
    let tls = tokio_rustls::TlsConnector::from(TLS_CONFIG.clone())
        .connect(name, tcp)
        .await
        .map_err(ConnectError::Tls)?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    Ok(PinnedConnection {
        io: TokioIo::new(Stream::Tls(Box::new(tls))),
        h2,
    })
}

/// Why connecting failed (kept as a type so the error chain can be mapped to a
/// `wasi:http` code after hyper-util wraps it).
#[derive(Debug)]
pub(super) enum ConnectError {
    /// TCP connect plus TLS handshake took longer than the connect timeout.
    Timeout,
    /// The TCP connect failed.
    Tcp(io::Error),
    /// The TLS handshake failed (certificate, alert, protocol).
    Tls(io::Error),
    /// The URI's host is not a valid TLS server name.
    BadServerName,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Tcp(e) => write!(f, "TCP connect failed: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            ConnectError::BadServerName => f.write_str("host is not a valid TLS server name"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl ConnectError {
    /// The closest `wasi:http` error code.
    pub(super) fn to_http_error(&self) -> HttpError {
        match self {
            ConnectError::Timeout => HttpError::ConnectionTimeout,
            ConnectError::Tcp(e) => match e.kind() {
                io::ErrorKind::TimedOut => HttpError::ConnectionTimeout,
                io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
                    HttpError::DestinationUnavailable
                }
                _ => HttpError::ConnectionRefused,
            },
            ConnectError::Tls(e) => {
                match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(_)) => HttpError::TlsCertificateError,
                    Some(rustls::Error::AlertReceived(alert)) => HttpError::TlsAlertReceived {
                        alert_id: Some(u8::from(*alert)),
                        alert_message: Some(format!("{alert:?}")),
                    },
                    _ => HttpError::TlsProtocolError,
                }
            }
            ConnectError::BadServerName => HttpError::TlsProtocolError,
        }
    }
}

/// A plain or TLS stream, so one connection type serves both schemes.
enum Stream {
    /// `http`.
    Plain(TcpStream),
    /// `https`.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection as hyper-util wants it: hyper I/O traits plus ALPN metadata.
pub(super) struct PinnedConnection {
    /// The stream, adapted to hyper's I/O traits.
    io: TokioIo<Stream>,
    /// Whether ALPN chose HTTP/2.
    h2: bool,
}

impl Connection for PinnedConnection {
    fn connected(&self) -> Connected {
        if self.h2 {
            Connected::new().negotiated_h2()
        } else {
            Connected::new()
        }
    }
}

impl hyper::rt::Read for PinnedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for PinnedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use wasmtime_wasi_http::Error as HttpError;

    use crate::egress::test_server::*;
    use crate::egress::{EgressLimits, EgressPolicy};

    /// A throwaway self-signed certificate for `api.example.test` (made with
    /// `openssl req -x509 -newkey ec ...`); not a secret, trusted by nothing.
    const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBqjCCAVCgAwIBAgIUFb1e43CU83EMkTwD9tIgrxPZHBUwCgYIKoZIzj0EAwIw\n\
GzEZMBcGA1UEAwwQYXBpLmV4YW1wbGUudGVzdDAgFw0yNjExMjYxOTU5MDFaGA8y\n\
MTI2MTEwMjE5NTkwMVowGzEZMBcGA1UEAwwQYXBpLmV4YW1wbGUudGVzdDBZMBMG\n\
ByqGSM49AgEGCCqGSM49AwEHA0IABJWVTnGv4Me3LGSIAZ7pvbdmOpbQBTorDj7x\n\
W+r/uAMzd21KDArvOJGnIxT19bFlZd0iB4g8eqLHuZRqZkoNuO+jcDBuMB0GA1Ud\n\
DgQWBBSmQQbpqrGhIpi5eSd6suuneJF21jAfBgNVHSMEGDAWgBSmQQbpqrGhIpi5\n\
eSd6suuneJF21jAPBgNVHRMBAf8EBTADAQH/MBsGA1UdEQQUMBKCEGFwaS5leGFt\n\
cGxlLnRlc3QwCgYIKoZIzj0EAwIDSAAwRQIhANWW4GP0JF97XTS/juOXK5M9I1DP\n\
qaiWy1kxwR+ObucIAiAsYF9iEzqzxrSI7X3c8TiF/rOFuVAMwQ0uu6Ay70RyAA==\n\
-----END CERTIFICATE-----";
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgsdy5HKSI20gQgdRc\n\
YBdhfHotBXoLkxY7kFC5wFjHg+ahRANCAASVlU5xr+DHtyxkiAGe6b23ZjqW0AU6\n\
Kw4+8Vvq/7gDM3dtSgwK7ziRpyMU9fWxZWXdIgeIPHqix7mUamZKDbjv\n\
-----END PRIVATE KEY-----";

    #[tokio::test]
    async fn https_sends_sni_and_alpn_and_rejects_untrusted_certificates() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let cert = CertificateDer::from_pem_slice(TEST_CERT.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hello_tx, hello_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
            let start = acceptor.await.unwrap();
            let hello = start.client_hello();
            let sni = hello.server_name().map(str::to_owned);
            let alpn: Vec<Vec<u8>> = hello
                .alpn()
                .map(|a| a.map(<[u8]>::to_vec).collect())
                .unwrap_or_default();
            let _ = hello_tx.send((sni, alpn));
            // The client aborts: our certificate is not in the webpki roots.
            let _ = start.into_stream(config).await;
        });

        let policy = EgressPolicy::try_new(
            vec![
                format!("https://{NAME}:{port}"),
                format!("https://127.0.0.1:{port}"),
            ],
            BTreeMap::new(),
            EgressLimits::default(),
        )
        .unwrap()
        .with_resolver(resolver());
        let req = get(&format!("https://{NAME}:{port}/v1"))
            .body(empty())
            .unwrap();
        let err = send_via(&policy, req).await.unwrap_err();
        assert!(matches!(err, HttpError::TlsCertificateError), "{err}");
        let (sni, alpn) = hello_rx.await.unwrap();
        // SNI is the granted name, not the pinned address.
        assert_eq!(sni.as_deref(), Some(NAME));
        assert_eq!(alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(policy.counters().failed, 1);
    }
}
