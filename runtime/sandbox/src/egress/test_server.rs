//! Test fixtures shared by the hook, body, pool and connect tests: a real
//! HTTP/1.1 server on loopback and a policy granting it.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, WasiBody, WasiHttpHooks};

use super::{EgressHooks, EgressLimits, EgressPolicy, Resolver, StaticResolver};

type TestBody = UnsyncBoxBody<Bytes, Infallible>;

pub(super) struct TestServer {
    pub(super) port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<http::HeaderMap>>>,
}

impl TestServer {
    pub(super) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    pub(super) fn requests(&self) -> Vec<http::HeaderMap> {
        self.requests.lock().unwrap().clone()
    }
}

/// An HTTP/1.1 server on 127.0.0.1:0 that counts connections, records request
/// headers and answers by path.
pub(super) async fn start_server() -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (conns, reqs) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            conns.fetch_add(1, Ordering::SeqCst);
            let reqs = reqs.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let reqs = reqs.clone();
                    async move { Ok::<_, Infallible>(answer(req, reqs).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TestServer {
        port,
        connections,
        requests,
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    requests: Arc<Mutex<Vec<http::HeaderMap>>>,
) -> Response<TestBody> {
    requests.lock().unwrap().push(req.headers().clone());
    if req.uri().path() == "/reflect" {
        // Like an upstream that echoes request headers back.
        let mut response = Response::new(Full::new(Bytes::from_static(b"echo")).boxed_unsync());
        for (name, value) in req.headers() {
            if let Ok(echo) = http::HeaderName::try_from(format!("x-echo-{name}")) {
                response.headers_mut().insert(echo, value.clone());
            }
        }
        return response;
    }
    let full = |b: &'static [u8]| Full::new(Bytes::from_static(b)).boxed_unsync();
    let body = match req.uri().path() {
        "/big" => Full::new(Bytes::from(vec![b'x'; 64 * 1024])).boxed_unsync(),
        "/stream" | "/hold" => {
            // No Content-Length: chunked, so the cap has to count.
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes>::new(1);
            let hold = req.uri().path() == "/hold";
            tokio::spawn(async move {
                for _ in 0..if hold { 1 } else { 8 } {
                    if tx.send_data(Bytes::from(vec![b'y'; 1024])).await.is_err() {
                        return;
                    }
                }
                if hold {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
            body.boxed_unsync()
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            full(b"late")
        }
        _ => full(b"hello"),
    };
    Response::new(body)
}

pub(super) const NAME: &str = "api.example.test";

pub(super) fn resolver() -> Arc<dyn Resolver> {
    Arc::new(
        StaticResolver::new()
            .with(NAME, [IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .with("other.example.test", [IpAddr::V4(Ipv4Addr::LOCALHOST)]),
    )
}

/// A policy granting `api.example.test:port` *and* 127.0.0.1:port (the IP
/// grant is what lets the name reach loopback).
pub(super) fn policy_for(port: u16, limits: EgressLimits) -> EgressPolicy {
    EgressPolicy::try_new(
        vec![
            format!("http://{NAME}:{port}"),
            format!("http://127.0.0.1:{port}"),
        ],
        [("api_key".to_string(), "sk-test-123".to_string())].into(),
        limits,
    )
    .unwrap()
    .with_resolver(resolver())
}

pub(super) fn empty() -> WasiBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(super) fn get(uri: &str) -> http::request::Builder {
    Request::builder().method(Method::GET).uri(uri)
}

pub(super) async fn send_via(
    policy: &EgressPolicy,
    req: Request<WasiBody>,
) -> Result<Response<WasiBody>, HttpError> {
    let mut hooks = EgressHooks::new(Arc::from("test-provider"), policy.clone());
    let fut = hooks.send_request(req, None, Box::new(async { Ok(()) }));
    Pin::from(fut).await.map(|(response, _io)| response)
}

pub(super) async fn body_of(response: Response<WasiBody>) -> Result<Bytes, HttpError> {
    Ok(response.into_body().collect().await?.to_bytes())
}
