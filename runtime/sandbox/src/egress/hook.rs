//! The `wasi:http` send hook: every outbound request of a guest runs the checks
//! of the [module docs](super) here, in order, and only then goes to the pool.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::address::{classify_ip, AddressClass};
use super::client::{client_for, error_chain, map_client_error};
use super::counters::RefusalReason;
use super::policy::EgressPolicy;
use super::request_body::DrainOnDrop;
use super::response_body::LimitedBody;
use super::secrets::{redact_secrets, substitute_secrets, SecretError};
use super::target::Target;
use super::trace_context;
use tracing::Instrument as _;

/// The `wasi:http` hooks of one instance.
pub(crate) struct EgressHooks {
    /// The provider's name, for the logs.
    provider: Arc<str>,
    /// The provider's policy (shared with its other instances).
    policy: EgressPolicy,
    /// The host-wide budget of outbound requests (shared by every provider).
    host: Arc<Semaphore>,
}

impl EgressHooks {
    /// Hooks sending `provider`'s requests under `policy`, within the host-wide
    /// budget `host`.
    pub(crate) fn new(provider: Arc<str>, policy: EgressPolicy, host: Arc<Semaphore>) -> Self {
        EgressHooks {
            provider,
            policy,
            host,
        }
    }
}

/// The I/O future `wasi:http` pairs with a request or response.
type IoFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = wasmtime_wasi_http::Result<(Response<WasiBody>, IoFuture)>> + Send>
    {
        let policy = self.policy.clone();
        let provider = self.provider.clone();
        let host = self.host.clone();
        // Called from inside the guest's call, so the current span is the
        // provider call's: the egress span is its child. It is a DEBUG span,
        // enabled only when traces are exported (or TAMMA_LOG asks for it).
        let span = trace_context::egress_span(&provider, request.method());
        let mut request = request;
        trace_context::inject(&span, request.headers_mut());
        // A refused or failed request's body is drained rather than dropped, so a
        // guest still writing it sees the HTTP error (see `request_body`).
        let request = request.map(|body| DrainOnDrop::new(body).boxed_unsync());
        Box::new(
            async move {
                let response = send(&policy, &provider, &host, request, options).await;
                trace_context::record_outcome(&response);
                // The pooled client drives connections on tasks of its own, so there is
                // no per-request I/O future to hand back.
                Ok((response?, Box::new(async { Ok(()) }) as IoFuture))
            }
            .instrument(span),
        )
    }
}

/// Log and count a refusal; returns the error for the guest.
fn refuse(
    policy: &EgressPolicy,
    provider: &str,
    target: Option<&Target>,
    reason: RefusalReason,
    detail: &str,
    error: HttpError,
) -> HttpError {
    policy.inner.counters.record_refused(reason);
    let (scheme, host, port) = match target {
        Some(t) => (t.scheme.as_str(), t.host.as_str(), t.port),
        None => ("", "", 0),
    };
    tracing::warn!(
        target: "tamma::egress",
        provider,
        scheme,
        host,
        port,
        reason = reason.as_str(),
        detail,
        "outbound request refused"
    );
    error
}

/// Run every check on `req`, then send it through the pool.
async fn send(
    policy: &EgressPolicy,
    provider: &str,
    host: &Arc<Semaphore>,
    mut req: Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Response<WasiBody>, HttpError> {
    let inner = &policy.inner;
    let limits = &inner.limits;
    let started = Instant::now();
    let total_deadline = started + limits.total_timeout();

    // 1. Allowlist.
    let target = match Target::of(req.uri()) {
        Ok(t) => t,
        Err(why) => {
            return Err(refuse(
                policy,
                provider,
                None,
                RefusalReason::NotAllowed,
                why,
                HttpError::HttpRequestDenied,
            ))
        }
    };
    if req.method() == Method::CONNECT {
        // A tunnel through an allowed host would bypass every other check.
        return Err(refuse(
            policy,
            provider,
            Some(&target),
            RefusalReason::NotAllowed,
            "CONNECT method",
            HttpError::HttpRequestDenied,
        ));
    }
    if !inner.rules.iter().any(|r| r.matches(&target)) {
        return Err(refuse(
            policy,
            provider,
            Some(&target),
            RefusalReason::NotAllowed,
            "no allowed-host entry matches",
            HttpError::HttpRequestDenied,
        ));
    }

    trace_context::record_target(&target);

    // 2. Concurrency: both permits travel with the response body. The host-wide
    // budget is taken after the provider's own, so that a provider at its own
    // limit never holds a host permit it cannot use.
    let permit = |budget: &Arc<Semaphore>, reason, detail| {
        budget.clone().try_acquire_owned().map_err(|_| {
            refuse(
                policy,
                provider,
                Some(&target),
                reason,
                detail,
                HttpError::ConnectionLimitReached,
            )
        })
    };
    let provider_permit = permit(
        &inner.in_flight,
        RefusalReason::Concurrency,
        "max_concurrent_requests in flight",
    )?;
    let host_permit = permit(
        host,
        RefusalReason::HostConcurrency,
        "the host's max_outbound_requests in flight",
    )?;

    // 3. Headers: secrets in, Host from the authority (never the guest's).
    for value in req.headers_mut().values_mut() {
        match substitute_secrets(value, &inner.secrets, &target) {
            Ok(Some(substituted)) => *value = substituted,
            Ok(None) => {}
            Err(e) => {
                let reason = match e {
                    SecretError::WrongHost(_) => RefusalReason::SecretHost,
                    _ => RefusalReason::UnknownSecret,
                };
                return Err(refuse(
                    policy,
                    provider,
                    Some(&target),
                    reason,
                    &e.to_string(),
                    HttpError::HttpRequestDenied,
                ));
            }
        }
    }
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .unwrap_or_default();
    let host_header =
        HeaderValue::from_str(authority).map_err(|_| HttpError::HttpRequestUriInvalid)?;
    req.headers_mut().insert(HOST, host_header);

    // 4. Resolve and check every address; keep the allowed ones.
    let candidates = match target.ip {
        Some(ip) => vec![ip],
        None => {
            let lookup = inner.resolver.resolve(&target.host, target.port);
            match tokio::time::timeout(limits.connect_timeout(), lookup).await {
                Err(_) => {
                    inner.counters.record_failed();
                    return Err(HttpError::DnsTimeout);
                }
                Ok(Err(e)) => {
                    inner.counters.record_failed();
                    tracing::warn!(target: "tamma::egress", provider, host = %target.host, error = %e, "name resolution failed");
                    return Err(HttpError::DnsError {
                        rcode: Some(e.to_string()),
                        info_code: None,
                    });
                }
                Ok(Ok(ips)) => ips,
            }
        }
    };
    if candidates.is_empty() {
        inner.counters.record_failed();
        return Err(HttpError::DestinationNotFound);
    }
    let allowed = |ip: IpAddr| {
        classify_ip(ip) == AddressClass::Public
            || inner.rules.iter().any(|r| r.grants_address(&target, ip))
    };
    let Some(ip) = candidates
        .iter()
        .map(IpAddr::to_canonical)
        .find(|ip| allowed(*ip))
    else {
        let first = candidates[0].to_canonical();
        let detail = format!("{first} is {}", classify_ip(first).as_str());
        return Err(refuse(
            policy,
            provider,
            Some(&target),
            RefusalReason::AddressProhibited,
            &detail,
            HttpError::DestinationIpProhibited,
        ));
    };

    // 5. Send through the pool, pinned to the checked address.
    let addr = SocketAddr::new(ip, target.port);
    let client = client_for(addr, limits.connect_timeout());
    let guest = options.unwrap_or_default();
    let first_byte = guest
        .first_byte_timeout
        .map_or(limits.first_byte_timeout(), |t| {
            t.min(limits.first_byte_timeout())
        });
    let first_byte_deadline = (started + first_byte).min(total_deadline);
    inner.counters.record_sent();
    tracing::debug!(target: "tamma::egress", provider, scheme = target.scheme.as_str(), host = %target.host, port = target.port, %ip, "outbound request");

    let mut response = match tokio::time::timeout_at(first_byte_deadline, client.request(req)).await
    {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            inner.counters.record_failed();
            let mapped = map_client_error(&e);
            tracing::warn!(target: "tamma::egress", provider, host = %target.host, port = target.port, error = %error_chain(&e), "outbound request failed");
            return Err(mapped);
        }
        Err(_) => {
            inner.counters.record_failed();
            let total_fired = first_byte_deadline >= total_deadline;
            tracing::warn!(target: "tamma::egress", provider, host = %target.host, port = target.port, "outbound request timed out before the response headers");
            return Err(if total_fired {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::ConnectionReadTimeout
            });
        }
    };

    // An upstream that reflects request headers must not hand the guest a key.
    redact_secrets(response.headers_mut(), &inner.secrets);

    let between_bytes = guest.between_bytes_timeout.map(|d| {
        // tokio panics on nothing here, but a zero would fail every frame; 1 ns
        // is what wasmtime's own client uses for "effectively zero".
        d.max(Duration::from_nanos(1))
    });
    Ok(response.map(|incoming| {
        LimitedBody::new(
            incoming,
            limits.max_response_body_bytes,
            total_deadline,
            between_bytes,
            (provider_permit, host_permit),
        )
        .boxed_unsync()
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io;
    use std::sync::Mutex;

    use super::*;
    use crate::egress::test_server::*;
    use crate::egress::{EgressLimits, StaticResolver};

    #[tokio::test]
    async fn allowed_request_reaches_server_with_secrets_substituted() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        let req = get(&format!("http://{NAME}:{}/ok", server.port))
            .header("authorization", "Bearer {{secret:api_key}}")
            .header("x-api-key", "{{secret:api_key}}")
            .header("x-plain", "kept")
            .body(empty())
            .unwrap();
        let response = send_via(&policy, req).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(body_of(response).await.unwrap(), "hello");
        let seen = &server.requests()[0];
        assert_eq!(seen["authorization"], "Bearer sk-test-123");
        assert_eq!(seen["x-api-key"], "sk-test-123");
        assert_eq!(seen["x-plain"], "kept");
        assert_eq!(policy.counters().sent, 1);
        assert_eq!(policy.refused(), 0);
    }

    #[tokio::test]
    async fn host_not_granted_is_refused_before_connecting() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        // Resolves to the same server: the allowlist, not DNS, refuses it.
        for uri in [
            format!("http://other.example.test:{}/ok", server.port),
            format!("https://{NAME}:{}/ok", server.port), // wrong scheme
            format!("http://{NAME}:{}/ok", server.port + 1), // wrong port
            format!("http://127.0.0.2:{}/ok", server.port), // IP not granted
        ] {
            let err = send_via(&policy, get(&uri).body(empty()).unwrap())
                .await
                .unwrap_err();
            assert!(matches!(err, HttpError::HttpRequestDenied), "{uri}: {err}");
        }
        let connect = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("http://{NAME}:{}/", server.port))
            .body(empty())
            .unwrap();
        assert!(matches!(
            send_via(&policy, connect).await,
            Err(HttpError::HttpRequestDenied)
        ));
        assert_eq!(server.connections(), 0);
        assert_eq!(policy.counters().refused_not_allowed, 5);
        assert_eq!(policy.refused(), 5);
        assert_eq!(policy.counters().sent, 0);
    }

    #[tokio::test]
    async fn granted_name_resolving_to_loopback_is_prohibited() {
        let server = start_server().await;
        // The name is granted, the address it resolves to is not.
        let policy = EgressPolicy::new(
            vec![format!("http://{NAME}:{}", server.port)],
            BTreeMap::new(),
        )
        .with_resolver(resolver());
        let req = get(&format!("http://{NAME}:{}/ok", server.port))
            .body(empty())
            .unwrap();
        let err = send_via(&policy, req).await.unwrap_err();
        assert!(matches!(err, HttpError::DestinationIpProhibited), "{err}");
        assert_eq!(server.connections(), 0);
        assert_eq!(policy.counters().refused_address_prohibited, 1);

        // Rebinding-style answer with an internal and a granted address: only the
        // granted one is used.
        let policy = EgressPolicy::new(
            vec![
                format!("http://{NAME}:{}", server.port),
                format!("http://127.0.0.1:{}", server.port),
            ],
            BTreeMap::new(),
        )
        .with_resolver(Arc::new(StaticResolver::new().with(
            NAME,
            [
                "169.254.169.254".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
            ],
        )));
        let req = get(&format!("http://{NAME}:{}/ok", server.port))
            .body(empty())
            .unwrap();
        assert_eq!(
            body_of(send_via(&policy, req).await.unwrap())
                .await
                .unwrap(),
            "hello"
        );
    }

    #[tokio::test]
    async fn host_header_comes_from_the_uri() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        let req = get(&format!("http://{NAME}:{}/ok", server.port))
            .header("host", "metadata.internal")
            .body(empty())
            .unwrap();
        body_of(send_via(&policy, req).await.unwrap())
            .await
            .unwrap();
        let seen = &server.requests()[0];
        let hosts: Vec<_> = seen.get_all("host").iter().collect();
        assert_eq!(hosts, [format!("{NAME}:{}", server.port).as_str()]);
    }

    #[tokio::test]
    async fn unknown_secret_is_refused_and_never_sent() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        for value in ["Bearer {{secret:other}}", "{{secret:api_key"] {
            let req = get(&format!("http://{NAME}:{}/ok", server.port))
                .header("authorization", value)
                .body(empty())
                .unwrap();
            let err = send_via(&policy, req).await.unwrap_err();
            assert!(matches!(err, HttpError::HttpRequestDenied), "{err}");
        }
        assert_eq!(server.connections(), 0);
        assert_eq!(policy.counters().refused_unknown_secret, 2);
    }

    #[tokio::test]
    async fn a_secret_bound_to_one_host_is_refused_for_another() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default())
            .with_secret_hosts(
                [(
                    "api_key".to_string(),
                    vec![format!("http://{NAME}:{}", server.port)],
                )]
                .into(),
            )
            .unwrap();
        // Allowed host, but not the one the key is bound to: refused before connecting.
        let req = get(&format!("http://127.0.0.1:{}/ok", server.port))
            .header("x-exfil", "{{secret:api_key}}")
            .body(empty())
            .unwrap();
        let err = send_via(&policy, req).await.unwrap_err();
        assert!(matches!(err, HttpError::HttpRequestDenied), "{err}");
        assert_eq!(server.connections(), 0);
        assert_eq!(policy.counters().refused_secret_host, 1);
        // Its own host still gets it.
        let req = get(&format!("http://{NAME}:{}/ok", server.port))
            .header("authorization", "Bearer {{secret:api_key}}")
            .body(empty())
            .unwrap();
        assert_eq!(send_via(&policy, req).await.unwrap().status(), 200);
        assert_eq!(server.requests()[0]["authorization"], "Bearer sk-test-123");
    }

    #[tokio::test]
    async fn a_reflected_secret_reaches_the_guest_as_its_placeholder() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        let req = get(&format!("http://{NAME}:{}/reflect", server.port))
            .header("authorization", "Bearer {{secret:api_key}}")
            .body(empty())
            .unwrap();
        let response = send_via(&policy, req).await.unwrap();
        // The upstream did see (and echo) the real key ...
        assert_eq!(server.requests()[0]["authorization"], "Bearer sk-test-123");
        // ... the guest sees only the placeholder.
        assert_eq!(
            response.headers()["x-echo-authorization"],
            "Bearer {{secret:api_key}}"
        );
        let all = format!("{:?}", response.headers());
        assert!(!all.contains("sk-test-123"), "{all}");
    }

    #[tokio::test]
    async fn first_byte_timeout_fires() {
        let server = start_server().await;
        let limits = EgressLimits {
            connect_timeout_ms: 100,
            first_byte_timeout_ms: 100,
            ..EgressLimits::default()
        };
        let policy = policy_for(server.port, limits);
        let req = get(&format!("http://{NAME}:{}/slow", server.port))
            .body(empty())
            .unwrap();
        // The server answers only after 300 ms: getting this error (not a
        // response, and not the total timeout's) shows the first-byte timeout
        // fired, without asserting on wall-clock time.
        let err = send_via(&policy, req).await.unwrap_err();
        assert!(matches!(err, HttpError::ConnectionReadTimeout), "{err}");
        assert_eq!(policy.counters().failed, 1);
    }

    #[tokio::test]
    async fn logs_never_hold_secrets_or_headers() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        let url = format!("http://{NAME}:{}/ok", server.port);
        let ok = get(&url)
            .header("authorization", "Bearer {{secret:api_key}}")
            .body(empty())
            .unwrap();
        body_of(send_via(&policy, ok).await.unwrap()).await.unwrap();
        let bad = get(&url)
            .header("authorization", "Bearer {{secret:api_key}}")
            .header("x-other", "{{secret:missing}}")
            .body(empty())
            .unwrap();
        send_via(&policy, bad).await.unwrap_err();

        let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("outbound request refused"), "{logs}");
        assert!(logs.contains("unknown secret"), "{logs}");
        assert!(logs.contains("test-provider"), "{logs}");
        assert!(!logs.contains("sk-test-123"), "{logs}");
        assert!(!logs.contains("Bearer"), "{logs}");
    }
}
