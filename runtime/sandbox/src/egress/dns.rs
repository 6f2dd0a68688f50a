//! The default resolver: hickory's stub resolver over the system's DNS
//! configuration (`/etc/resolv.conf`, `/etc/hosts`), whose cache keeps each
//! answer for its TTL.
//!
//! Why not `getaddrinfo`: it has no cache in most containers (no nscd), runs on
//! a blocking thread for every request, and hides the TTL — so a named upstream
//! paid a thread hop and a DNS round trip on every call (issue 15). Caching here
//! loses nothing on safety: the policy checks every address of every answer,
//! cached or not, before connecting to exactly the checked one
//! ([`super::hook`]), so a cached name that starts resolving inward is refused
//! the same way a fresh one is.
//!
//! Hand-written: only the glue. The cache, TTL handling, search domains and the
//! hosts file are hickory's.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_resolver::config::{ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::Resolver as Hickory;

use super::resolver::{ResolveFuture, Resolver, SystemResolver};

/// Longest a positive answer is kept even if its TTL says more: a moved
/// upstream is followed within five minutes.
const MAX_TTL: Duration = Duration::from_secs(300);
/// How long a failed lookup (NXDOMAIN, no records) is remembered.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// A caching resolver. Cheap to clone; clones share one cache. Built on first
/// use, inside the runtime that resolves (hickory's sockets belong to it);
/// where the system configuration cannot be read it falls back to
/// [`SystemResolver`], once, with a warning.
#[derive(Clone, Default)]
pub struct CachingResolver {
    inner: Arc<OnceLock<Option<Arc<Hickory<TokioRuntimeProvider>>>>>,
    config: Option<ResolverConfig>,
}

impl std::fmt::Debug for CachingResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingResolver").finish_non_exhaustive()
    }
}

impl CachingResolver {
    /// The system's configuration (`/etc/resolv.conf`, `/etc/hosts`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Name servers given explicitly (tests, embedders with their own DNS);
    /// the hosts file is not read.
    pub fn with_config(config: ResolverConfig) -> Self {
        Self {
            inner: Arc::default(),
            config: Some(config),
        }
    }

    fn resolver(&self) -> Option<&Arc<Hickory<TokioRuntimeProvider>>> {
        self.inner
            .get_or_init(|| {
                let builder = match &self.config {
                    Some(config) => Ok(Hickory::builder_with_config(
                        config.clone(),
                        TokioRuntimeProvider::default(),
                    )),
                    None => Hickory::builder_tokio(),
                };
                let built = builder.and_then(|mut b| {
                    *b.options_mut() = options(self.config.is_none());
                    b.build()
                });
                match built {
                    Ok(r) => Some(Arc::new(r)),
                    Err(e) => {
                        tracing::warn!(target: "tamma::egress", error = %e, "DNS configuration unreadable; resolving with getaddrinfo, uncached");
                        None
                    }
                }
            })
            .as_ref()
    }
}

fn options(hosts_file: bool) -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.use_hosts_file = if hosts_file {
        ResolveHosts::Always
    } else {
        ResolveHosts::Never
    };
    opts.positive_max_ttl = Some(MAX_TTL);
    opts.negative_max_ttl = Some(NEGATIVE_TTL);
    opts
}

impl Resolver for CachingResolver {
    fn resolve(&self, host: &str, port: u16) -> ResolveFuture {
        let Some(resolver) = self.resolver().cloned() else {
            return SystemResolver.resolve(host, port);
        };
        let host = host.to_owned();
        Box::pin(async move {
            let lookup = resolver
                .lookup_ip(host.as_str())
                .await
                .map_err(io::Error::other)?;
            Ok(lookup.iter().collect::<Vec<IpAddr>>())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hickory_resolver::config::{ConnectionConfig, NameServerConfig};
    use hickory_resolver::proto::op::{Message, MessageType};
    use hickory_resolver::proto::rr::{rdata::A, RData, Record};
    use tokio::net::UdpSocket;

    use super::*;

    /// A real DNS server on a loopback UDP port answering every A query with
    /// `ip` and `ttl`, counting the queries it got.
    async fn dns_server(ip: Ipv4Addr, ttl: u32) -> (SocketAddr, Arc<AtomicUsize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let counted = queries.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
                answer.metadata.message_type = MessageType::Response;
                answer.metadata.recursion_desired = query.metadata.recursion_desired;
                answer.metadata.recursion_available = true;
                for q in &query.queries {
                    answer.add_query(q.clone());
                    if q.query_type() == hickory_resolver::proto::rr::RecordType::A {
                        counted.fetch_add(1, Ordering::SeqCst);
                        answer.add_answer(Record::from_rdata(
                            q.name().clone(),
                            ttl,
                            RData::A(A(ip)),
                        ));
                    }
                }
                let _ = socket.send_to(&answer.to_vec().unwrap(), peer).await;
            }
        });
        (addr, queries)
    }

    fn resolver_for(server: SocketAddr) -> CachingResolver {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let ns = NameServerConfig::new(server.ip(), true, vec![udp]);
        CachingResolver::with_config(ResolverConfig::from_name_servers(vec![ns]))
    }

    #[tokio::test]
    async fn answers_are_cached_for_their_ttl() {
        let ip = Ipv4Addr::new(192, 0, 2, 10);
        let (server, queries) = dns_server(ip, 60).await;
        let resolver = resolver_for(server);
        for _ in 0..5 {
            let ips = resolver.resolve("api.example.test.", 443).await.unwrap();
            assert!(ips.contains(&IpAddr::V4(ip)), "{ips:?}");
        }
        assert_eq!(
            queries.load(Ordering::SeqCst),
            1,
            "one query, four cache hits"
        );
        // Clones share the cache.
        resolver
            .clone()
            .resolve("api.example.test.", 443)
            .await
            .unwrap();
        assert_eq!(queries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_expired_answer_is_asked_again() {
        let (server, queries) = dns_server(Ipv4Addr::new(192, 0, 2, 11), 1).await;
        let resolver = resolver_for(server);
        resolver.resolve("short.example.test.", 443).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        resolver.resolve("short.example.test.", 443).await.unwrap();
        assert_eq!(queries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cached_answer_is_still_checked_before_connecting() {
        use crate::egress::test_server::{empty, get, send_via};
        use crate::egress::EgressPolicy;
        use wasmtime_wasi_http::Error as HttpError;

        // A granted name whose DNS answer points inside.
        let (server, queries) = dns_server(Ipv4Addr::new(10, 0, 0, 1), 60).await;
        let policy = EgressPolicy::new(
            vec!["http://inward.example.test".into()],
            Default::default(),
        )
        .with_resolver(Arc::new(resolver_for(server)));
        for _ in 0..2 {
            let err = send_via(
                &policy,
                get("http://inward.example.test./").body(empty()).unwrap(),
            )
            .await
            .unwrap_err();
            assert!(matches!(err, HttpError::DestinationIpProhibited), "{err}");
        }
        assert_eq!(
            queries.load(Ordering::SeqCst),
            1,
            "the second refusal came from the cache"
        );
        assert_eq!(policy.refused(), 2);
    }

    #[tokio::test]
    async fn the_system_configuration_reads_the_hosts_file() {
        let ips = CachingResolver::new()
            .resolve("localhost", 80)
            .await
            .unwrap();
        assert!(ips.iter().any(|ip| ip.is_loopback()), "{ips:?}");
    }
}
