//! The HTTP server behind `tamma serve`: OpenAI-compatible gateway, admin API,
//! health probes and metrics.
//!
//! | file | what |
//! |---|---|
//! | [`config`] | the `[server]` section of the config file (defined by `tamma-registry`, which reads the file) |
//! | [`openai_api`] | `POST /v1/chat/completions`, `GET /v1/models[/{id}]` |
//! | [`embeddings_api`] | `POST /v1/embeddings` (OpenAI's shape, float or base64) |
//! | [`anthropic_api`] | `POST /v1/messages` (Anthropic's Messages API), errors in Anthropic's shape |
//! | [`completion_call`] | one completion as both chat APIs serve it: body, routing, limits, fallback, charge, metrics, stream producer |
//! | [`routing`] | which provider answers: strategies, retries, fallback between a route's targets |
//! | [`auth`] | client API keys for `/v1`: the key ring, models a key may use, 401/403 |
//! | [`client_limits`] | per-key rpm, tpm, concurrency and budgets; local or Redis counters |
//! | [`access_log`] | one access-log line per `/v1` request |
//! | [`admin`] | `/admin/v1`: providers, registration, lifecycle, events; bearer auth |
//! | [`admin_upload`] | the registration body: JSON (base64, built-in, `oci://` reference) or the raw component with its metadata in the query / a header |
//! | [`probes`] | `/healthz`, `/readyz`, `/metrics` |
//! | [`metrics`] | metric families (`genai`: time to first token by model), collectors and the Prometheus text |
//! | [`live_config`] | the `[server]` section swapped whole when the file changes |
//! | [`limits`] | concurrency, body size and body time limits |
//! | [`host_guard`] | loopback servers answer loopback `Host` names only |
//! | [`request_tracing`] | `x-request-id`, the per-request span (`traceparent` continued, GenAI attributes), the access log |
//! | [`sse`] | server-sent events |
//! | [`api_error`] | errors (OpenAI's shape, Anthropic's rendering) and the status mapping |
//!
//! The server is stateless apart from the registry it serves: run as many
//! replicas as needed behind a load balancer (see `docs/deployment.md`).
//!
//! Shutdown ([`Server::run`] with a shutdown future, e.g. SIGTERM): stop accepting,
//! mark not ready, end event streams, let running requests (streams included)
//! finish within `shutdown_grace_ms`, then shut the registry down gracefully.

// Error answers are built on the cold path, once per failed request: their size
// (an OpenAI error body's fields) does not matter, boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod access_log;
pub mod admin;
pub mod admin_upload;
pub mod anthropic_api;
pub mod api_error;
pub mod auth;
pub mod client_limits;
pub mod completion_call;
pub mod embeddings_api;
pub use tamma_registry::server_config as config;
pub mod host_guard;
pub mod limits;
pub mod live_config;
pub mod metrics;
pub mod openai_api;
pub mod probes;
pub mod request_tracing;
pub mod routing;
pub mod sse;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

pub use config::ServerConfig;
pub(crate) use limits::read_body;

use admin::{AdminAuth, ResolvedToken};
use api_error::ApiError;
pub use live_config::LiveConfig;
use metrics::Metrics;
use tamma_registry::lifecycle::ShutdownReport;
use tamma_registry::registry::Registry;
use tamma_sandbox::error::{Error, ErrorCode, Result};

/// Whether provider discovery has finished (one of `/readyz`'s conditions).
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    pub(crate) discovery_finished: Arc<AtomicBool>,
}

impl Readiness {
    /// Discovery is done: `/readyz` answers 200 once a provider is ready.
    pub fn mark_discovery_finished(&self) {
        self.discovery_finished.store(true, Ordering::Release);
    }
}

/// Options that are not part of the config file.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Serve the admin API without tokens. Refused unless the listen address is
    /// a loopback one and no tokens are configured. Development only.
    pub dev_admin_without_auth: bool,
    /// Consider discovery finished from the start (callers that register their
    /// providers before serving).
    pub discovery_finished: bool,
}

/// What the handlers share: one allocation behind an `Arc`, so the clones axum
/// makes per request (the `State` extractor, each `from_fn_with_state` layer)
/// are one reference-count bump each instead of a dozen (the issue 15 profile
/// had cloning and dropping the flat struct at ~2 % of the gateway's CPU).
/// Fields are read through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;
    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct SharedState {
    /// The providers served.
    pub registry: Registry,
    /// The `[server]` section, swapped whole when the configuration file changes.
    pub config: LiveConfig,
    /// The routes of the section version seen last, parsed.
    pub routes: routing::RouteCache,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// Whether discovery has finished (for `/readyz`).
    pub readiness: Readiness,
    pub(crate) admin_auth: AdminAuth,
    pub(crate) limiter: Arc<Semaphore>,
    /// Turns `true` when shutdown begins.
    pub shutdown: watch::Receiver<bool>,
    /// When the server was set up (uptime).
    pub started: Instant,
    /// The same moment, Unix seconds (the `created` of route models).
    pub started_unix: u64,
    /// Bound to a loopback address: only loopback `Host` names are answered.
    pub loopback_only: bool,
    /// The client keys of the section in force.
    pub keys: Arc<auth::KeyRingCache>,
    /// Per-key limits and their counters.
    pub client_limits: Arc<client_limits::ClientLimits>,
}

/// What a server run did.
#[derive(Clone, Debug, Serialize)]
pub struct ServeReport {
    /// Every running request finished within the grace period.
    pub drained: bool,
    /// The registry's graceful shutdown.
    pub registry: ShutdownReport,
}

/// A bound server, not yet serving.
pub struct Server {
    state: AppState,
    listener: TcpListener,
    shutdown_tx: watch::Sender<bool>,
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

impl Server {
    /// Bind `config.listen` (or `listen`, when given) and prepare to serve.
    pub async fn bind(
        registry: Registry,
        config: ServerConfig,
        listen: Option<SocketAddr>,
        options: ServeOptions,
    ) -> Result<Server> {
        let addr = match listen {
            Some(a) => a,
            None => config
                .listen_addr()
                .map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("server.listen: {e}")))?,
        };
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::new(ErrorCode::Internal, format!("cannot listen on {addr}: {e}"))
        })?;
        Self::with_listener(registry, config, listener, options)
    }

    /// Serve on an already bound listener.
    pub fn with_listener(
        registry: Registry,
        config: ServerConfig,
        listener: TcpListener,
        options: ServeOptions,
    ) -> Result<Server> {
        let mut problems: Vec<String> = config
            .validate()
            .into_iter()
            // The listener is already bound: its address is what counts.
            .filter(|p| !p.starts_with("server.listen"))
            .collect();
        let mut tokens = Vec::new();
        for (i, t) in config.admin.tokens.iter().enumerate() {
            match t.token.resolve() {
                Ok(v) if v.chars().count() < config::MIN_TOKEN_CHARS => problems.push(format!(
                    "server.admin.tokens[{i}].token: must be at least {} characters",
                    config::MIN_TOKEN_CHARS
                )),
                Ok(v) => tokens.push(ResolvedToken::new(t.name.clone(), t.role, &v)),
                Err(e) => problems.push(format!("server.admin.tokens[{i}].token: {e}")),
            }
        }
        let local = listener.local_addr().map_err(|e| {
            Error::new(ErrorCode::Internal, format!("listener has no address: {e}"))
        })?;
        let admin_auth = if !tokens.is_empty() {
            if options.dev_admin_without_auth {
                tracing::warn!("--dev-admin-without-auth ignored: admin tokens are configured");
            }
            AdminAuth::Tokens(Arc::new(tokens))
        } else if options.dev_admin_without_auth {
            if !is_loopback(&local) {
                problems.push(format!(
                    "--dev-admin-without-auth is only allowed on a loopback address, not {local}"
                ));
            }
            tracing::warn!("the admin API is open without authentication (development mode)");
            AdminAuth::DevWithoutAuth
        } else {
            AdminAuth::Disabled
        };
        let config = Arc::new(config);
        let keys = auth::KeyRingCache::new(config.clone(), is_loopback(&local));
        let ring = keys.get(&config);
        problems.extend(ring.problems.iter().cloned());
        if !is_loopback(&local) && ring.policies.is_empty() && config.auth.required != Some(false) {
            problems.push(format!(
                "{local} is not a loopback address and no client keys are configured, so anyone who reaches it could spend the providers' keys: add one ([[server.keys]] name = \"team-a\", key = {{ env = \"TEAM_A_KEY\" }}), or write `[server.auth] required = false` to serve without keys"
            ));
        }
        let started = Instant::now();
        let metrics = Arc::new(Metrics::new(registry.clone(), started));
        let client_limits = match client_limits::ClientLimits::new(&config, metrics.clone()) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                problems.push(e);
                return Err(Error::new(ErrorCode::InvalidConfig, problems.join("; ")));
            }
        };
        if !problems.is_empty() {
            return Err(Error::new(ErrorCode::InvalidConfig, problems.join("; ")));
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let readiness = Readiness::default();
        if options.discovery_finished {
            readiness.mark_discovery_finished();
        }
        let state = AppState(Arc::new(SharedState {
            metrics,
            registry,
            limiter: Arc::new(Semaphore::new(
                config.limits.max_concurrent_requests as usize,
            )),
            config: LiveConfig::from_arc(config),
            routes: routing::RouteCache::default(),
            readiness,
            admin_auth,
            shutdown: shutdown_rx,
            started,
            started_unix: tamma_sandbox::time::now_unix_secs(),
            loopback_only: is_loopback(&local),
            keys: Arc::new(keys),
            client_limits,
        }));
        Ok(Server {
            state,
            listener,
            shutdown_tx,
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The readiness flag, to mark discovery finished.
    pub fn readiness(&self) -> Readiness {
        self.state.readiness.clone()
    }

    /// The live `[server]` section: [`LiveConfig::apply`] a newer file's section
    /// to change routes and per-request limits while serving.
    pub fn live_config(&self) -> LiveConfig {
        self.state.config.clone()
    }

    /// The gateway counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// The router (without the connection-level limits), for in-process use.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serve until `shutdown` completes, then shut down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> ServeReport {
        let Server {
            state,
            listener,
            shutdown_tx,
        } = self;
        let limits = state.config.load().limits.clone();
        if state.client_limits.store_kind() != "local" {
            let l = state.client_limits.clone();
            tokio::spawn(async move { l.warm_up().await });
        }
        let svc = TowerToHyperService::new(router(state.clone()));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
            .keep_alive(true);
        let conn_limit = Arc::new(Semaphore::new(limits.max_connections as usize));
        let write_stall = Duration::from_millis(limits.write_stall_timeout_ms);
        let graceful = GracefulShutdown::new();
        let metrics = state.metrics.clone();
        // The drain, the Kubernetes way: on the signal `/readyz` turns 503 at once,
        // but the listener stays open for `shutdown_drain_ms` so probes see the 503
        // (and requests still routed here are served) before connections are refused.
        let drain = Duration::from_millis(state.config.load().shutdown_drain_ms);
        let tx = &shutdown_tx;
        let shutdown = async move {
            shutdown.await;
            let _ = tx.send(true);
            if !drain.is_zero() {
                tracing::info!(
                    drain_ms = drain.as_millis() as u64,
                    "shutting down: /readyz answers 503; still accepting during the drain"
                );
                tokio::time::sleep(drain).await;
            }
        };
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                p = conn_limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = &mut shutdown => break,
            };
            let (stream, _peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let (stream, spare) = keep_spare(stream);
            let Some(stream) = stream else { continue };
            let partial = Arc::new(AtomicBool::new(false));
            let io = TokioIo::new(Tracked {
                inner: stream,
                partial: partial.clone(),
                stall_limit: write_stall,
                stalled: None,
            });
            let conn = graceful.watch(http.serve_connection(io, svc.clone()));
            metrics.connection_opened();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    if e.is_timeout() && partial.load(Ordering::Acquire) {
                        // A client that started a request but did not finish its
                        // headers in time: say so before closing.
                        metrics.record_rejected("header_timeout");
                        if let Some(spare) = spare {
                            write_408(spare).await;
                        }
                    } else if write_stalled(&e) {
                        metrics.record_rejected("write_stall");
                        tracing::debug!("closed a connection whose client stopped reading");
                    } else {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                metrics.connection_closed();
                drop(permit);
            });
        }
        drop(listener);
        tracing::info!("shutting down: no longer accepting connections");
        let _ = shutdown_tx.send(true);
        let grace = Duration::from_millis(state.config.load().shutdown_grace_ms);
        let drained = tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "requests still running after the grace period are cut off"
            );
        }
        let registry = state.registry.shutdown().await;
        ServeReport { drained, registry }
    }

    /// Serve in a task of its own (tests, embedding).
    pub fn spawn(self) -> RunningServer {
        let addr = self.local_addr();
        let readiness = self.readiness();
        let metrics = self.metrics();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            let _ = rx.await;
        }));
        RunningServer {
            addr,
            readiness,
            metrics,
            trigger: Some(tx),
            task,
        }
    }
}

/// Serve `registry` on `listener` until `shutdown` completes; then stop accepting,
/// let running requests finish and shut the registry down.
pub async fn serve(
    registry: Registry,
    config: ServerConfig,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<ServeReport> {
    let server = Server::with_listener(registry, config, listener, options)?;
    Ok(server.run(shutdown).await)
}

/// A server running in a task.
pub struct RunningServer {
    addr: SocketAddr,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    trigger: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<ServeReport>,
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The readiness flag, to mark discovery finished.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Begin the graceful shutdown and wait for it.
    pub async fn shutdown(mut self) -> ServeReport {
        if let Some(t) = self.trigger.take() {
            let _ = t.send(());
        }
        (&mut self.task).await.expect("server task")
    }
}

/// The routes.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(openai_api::chat_completions))
        .route("/v1/embeddings", post(embeddings_api::embeddings))
        .route("/v1/messages", post(anthropic_api::messages))
        .route("/v1/models", get(openai_api::list_models))
        .route("/v1/models/{*id}", get(openai_api::get_model))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ));
    let api = Router::new()
        .merge(v1)
        .nest("/admin/v1", admin::router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host_guard::guard,
        ));
    let routes = Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics))
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        // Outermost, so that every error on an Anthropic path is re-rendered.
        .layer(axum::middleware::from_fn(anthropic_api::error_shape))
        .with_state(state);
    request_tracing::layer(routes)
}

/// A second handle on the socket, to answer 408 after hyper gave up on it.
fn keep_spare(stream: TcpStream) -> (Option<TcpStream>, Option<std::net::TcpStream>) {
    match stream.into_std() {
        Ok(std) => {
            let spare = std.try_clone().ok();
            (TcpStream::from_std(std).ok(), spare)
        }
        Err(_) => (None, None),
    }
}

async fn write_408(spare: std::net::TcpStream) {
    let Ok(mut s) = TcpStream::from_std(spare) else {
        return;
    };
    let body = ApiError::request_timeout("request headers")
        .body()
        .to_string();
    let resp = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = s.write_all(resp.as_bytes()).await;
        let _ = s.shutdown().await;
    })
    .await;
}

/// A socket that remembers whether bytes were read since the last write: a
/// header timeout with bytes pending is a slow client (408), without is an idle
/// keep-alive connection (closed silently). It also bounds how long a write may
/// stay blocked: hyper's HTTP/1 server has no write timeout, and a response body
/// (which holds the request's concurrency slot) that a client never reads would
/// otherwise stay in flight for as long as the client keeps its socket open.
struct Tracked {
    inner: TcpStream,
    partial: Arc<AtomicBool>,
    /// How long a write may stay blocked (`write_stall_timeout_ms`).
    stall_limit: Duration,
    /// Running while writes are blocked; cleared by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The error a stalled write ends its connection with.
const WRITE_STALL: &str = "the client stopped reading its response";

impl Tracked {
    /// Account for one write attempt: progress resets the stall timer, a blocked
    /// write arms it, and a write blocked past the limit fails the connection.
    fn progress(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        match &r {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.partial.store(false, Ordering::Release);
                self.stalled = None;
            }
            Poll::Pending => {
                let limit = self.stall_limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        WRITE_STALL,
                    )));
                }
            }
            _ => {}
        }
        r
    }
}

/// Whether a connection ended because its client stopped reading.
fn write_stalled(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.to_string() == WRITE_STALL {
            return true;
        }
        source = s.source();
    }
    false
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.partial.store(true, Ordering::Release);
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
