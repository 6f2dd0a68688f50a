//! The process-wide connection pool: one hyper-util client per checked address,
//! and the mapping of its errors to `wasi:http` error codes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::connect::{ConnectError, PinnedConnector};

/// A client whose every connection goes to one checked address.
type PooledClient = Client<PinnedConnector, WasiBody>;

/// One pooled client per (checked address, connect timeout). Inside a client,
/// hyper-util pools by (scheme, authority), so the effective pool key is
/// (ip, port, connect timeout, scheme, host). Connect timeouts come from the
/// policy (not the guest), so in practice there is one client per address.
static CLIENTS: LazyLock<Mutex<HashMap<(SocketAddr, Duration), PooledClient>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Bound on distinct pooled clients: past it the map is emptied (in-flight
/// requests keep their clones; only idle connections are dropped). DNS rotation
/// across many addresses would otherwise grow the map forever.
const MAX_CLIENTS: usize = 1024;

/// The pooled client for `addr`, made on first use.
pub(super) fn client_for(addr: SocketAddr, connect_timeout: Duration) -> PooledClient {
    let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    let key = (addr, connect_timeout);
    if clients.len() >= MAX_CLIENTS && !clients.contains_key(&key) {
        clients.clear();
    }
    clients
        .entry(key)
        .or_insert_with(|| {
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(32)
                .build(PinnedConnector::new(addr, connect_timeout))
        })
        .clone()
}

/// `e` and its sources, `: `-separated, for the log.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Turn a pooled-client error into the closest `wasi:http` error code.
pub(super) fn map_client_error(e: &hyper_util::client::legacy::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if let Some(c) = cause.downcast_ref::<ConnectError>() {
            return c.to_http_error();
        }
        if let Some(h) = cause.downcast_ref::<hyper::Error>() {
            return if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                HttpError::ConnectionTerminated
            } else if h.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::HttpProtocolError
            };
        }
        source = cause.source();
    }
    if e.is_connect() {
        HttpError::ConnectionRefused
    } else {
        HttpError::HttpProtocolError
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use wasmtime_wasi_http::Error as HttpError;

    use crate::egress::test_server::*;
    use crate::egress::{EgressLimits, EgressPolicy};

    #[tokio::test]
    async fn connections_are_reused_but_not_across_a_refusing_policy() {
        let server = start_server().await;
        let policy = policy_for(server.port, EgressLimits::default());
        let url = format!("http://{NAME}:{}/ok", server.port);
        for _ in 0..2 {
            let response = send_via(&policy, get(&url).body(empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(body_of(response).await.unwrap(), "hello");
            // Let the pool take the connection back (a spawned task does it).
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(server.connections(), 1);
        assert_eq!(server.requests().len(), 2);

        // Another provider granted the name but not the loopback address: the
        // idle pooled connection to 127.0.0.1 must not serve it.
        let other = EgressPolicy::new(
            vec![format!("http://{NAME}:{}", server.port)],
            BTreeMap::new(),
        )
        .with_resolver(resolver());
        let err = send_via(&other, get(&url).body(empty()).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::DestinationIpProhibited), "{err}");
        assert_eq!(server.requests().len(), 2);
    }
}
