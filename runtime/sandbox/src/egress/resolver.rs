//! Name resolution: the policy asks a [`Resolver`] for a host's addresses and
//! then checks every one, so a resolver decides only what a name means, never
//! what may be reached.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;

/// What [`Resolver::resolve`] returns.
pub type ResolveFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// Turns a host name into addresses. Injectable so tests (and embedders with
/// their own DNS) can decide what a name means; every address it returns is
/// still checked by the policy.
pub trait Resolver: Send + Sync + 'static {
    /// Addresses of `host` (a DNS name, never an IP literal), for `port`.
    fn resolve(&self, host: &str, port: u16) -> ResolveFuture;
}

/// The system resolver (`getaddrinfo`, via `tokio::net::lookup_host`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> ResolveFuture {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), port)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// A fixed name → addresses table; unknown names fail to resolve.
#[derive(Clone, Debug, Default)]
pub struct StaticResolver {
    entries: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `host` (case-insensitive) to `ips`.
    pub fn with(mut self, host: &str, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.entries
            .insert(host.to_ascii_lowercase(), ips.into_iter().collect());
        self
    }
}

impl Resolver for StaticResolver {
    fn resolve(&self, host: &str, _port: u16) -> ResolveFuture {
        let result = self
            .entries
            .get(&host.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "name not in table"));
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[tokio::test]
    async fn static_resolver_is_case_insensitive_and_refuses_unknown_names() {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let resolver = StaticResolver::new().with("API.Example.test", [ip]);
        assert_eq!(
            resolver.resolve("api.example.TEST", 443).await.unwrap(),
            [ip]
        );
        let err = resolver.resolve("other.test", 443).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
