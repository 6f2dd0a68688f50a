//! The admin API, `/admin/v1`, behind bearer tokens.
//!
//! | method and path | role | what |
//! |---|---|---|
//! | `GET /admin/v1/providers` | read | every provider's snapshot: `{"providers":[...]}` |
//! | `GET /admin/v1/providers/{name}` | read | one snapshot |
//! | `POST /admin/v1/providers` | admin | register (JSON below); 201 with the snapshot |
//! | `PUT /admin/v1/providers/{name}` | admin | replace it atomically (or register it) |
//! | `DELETE /admin/v1/providers/{name}` | admin | unregister: `{"name","clean"}` |
//! | `POST /admin/v1/providers/{name}/restart` | admin | stop and start with fresh instances |
//! | `POST /admin/v1/providers/{name}/start`, `/stop` | admin | |
//! | `POST /admin/v1/providers/{name}/health-check` | admin | run a health check now |
//! | `GET /admin/v1/events` | read | SSE stream of registry events |
//!
//! Registration body (JSON; the component as base64, a built-in type, or an
//! `oci://` reference; or the raw component with `Content-Type: application/wasm`
//! and the metadata in the query or a header — see `admin_upload`):
//!
//! ```json
//! { "name": "my-provider",
//!   "component_base64": "AGFzbQ0AAQA...",        // or "builtin": "echo"
//!   "version": "1.2.0",
//!   "config": { "base_url": "https://api.example.com/v1" },
//!   "limits": { "max_concurrency": 8 },
//!   "allowed_hosts": ["https://api.example.com"],
//!   "secrets": { "api_key": "sk-..." },
//!   "egress_limits": { "total_timeout_ms": 60000 } }
//! ```
//!
//! Secrets are accepted inline only: letting a caller name the server's own
//! environment variables or files would let an admin token read the server's
//! other secrets out through a provider it controls. No answer ever contains a
//! secret or a configuration value (snapshots carry their names only).
//!
//! Tokens are compared in constant time (SHA-256 of both sides, then a
//! constant-time comparison of the digests, over every configured token).
//! Without tokens the admin API answers 404, unless the server was started with
//! `--dev-admin-without-auth` (loopback listen addresses only).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::middleware::Next;
use axum::response::sse::KeepAlive;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::Instrument as _;

use super::admin_upload::{parse_upload, registration};
use super::api_error::ApiError;
use super::config::AdminRole;
use super::openai_api::json_response;
use super::{sse, AppState};
use tamma_registry::events::Received;

/// A configured token, resolved: only its digest is kept.
#[derive(Clone)]
pub struct ResolvedToken {
    /// The token's name (logged; the token itself never is).
    pub name: String,
    /// What the token may do.
    pub role: AdminRole,
    digest: [u8; 32],
}

impl ResolvedToken {
    /// Keep `value`'s SHA-256 digest, not the value.
    pub fn new(name: String, role: AdminRole, value: &str) -> Self {
        ResolvedToken {
            name,
            role,
            digest: Sha256::digest(value.as_bytes()).into(),
        }
    }
}

/// How the admin API authenticates.
#[derive(Clone)]
pub enum AdminAuth {
    /// No tokens: the admin API does not exist (404).
    Disabled,
    /// Anyone on the (loopback) listen address is admin. Development only.
    DevWithoutAuth,
    /// A bearer token from this list is needed, with a role strong enough.
    Tokens(Arc<Vec<ResolvedToken>>),
}

/// The caller's role, found in constant time over every token.
fn authenticate(tokens: &[ResolvedToken], presented: &str) -> Option<(String, AdminRole)> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found: Option<(String, AdminRole)> = None;
    for t in tokens {
        let eq: bool = t.digest.ct_eq(&digest).into();
        if eq && found.is_none() {
            found = Some((t.name.clone(), t.role));
        }
    }
    found
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: authenticate, then check the role the method needs (GET: read;
/// anything else: admin).
pub async fn auth(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let needed = if req.method() == axum::http::Method::GET {
        AdminRole::Read
    } else {
        AdminRole::Admin
    };
    match &state.admin_auth {
        AdminAuth::Disabled => ApiError::not_found(
            "the admin API is disabled: no tokens are configured ([[server.admin.tokens]])",
        )
        .into_response(),
        AdminAuth::DevWithoutAuth => next.run(req).await,
        AdminAuth::Tokens(tokens) => {
            let Some(presented) = bearer(req.headers()) else {
                return ApiError::unauthorized(
                    "the admin API needs an `Authorization: Bearer <token>` header",
                )
                .into_response();
            };
            match authenticate(tokens, presented) {
                None => {
                    tracing::warn!(path = %req.uri().path(), "admin API: invalid token");
                    ApiError::unauthorized("invalid admin token").into_response()
                }
                Some((name, role)) if role < needed => {
                    tracing::info!(token = %name, path = %req.uri().path(), "admin API: role too weak");
                    ApiError::forbidden(format!(
                        "this token has the {} role; {} {} needs {}",
                        role.as_str(),
                        req.method(),
                        req.uri().path(),
                        needed.as_str()
                    ))
                    .into_response()
                }
                Some((name, _)) => {
                    if req.method() != axum::http::Method::GET {
                        tracing::info!(token = %name, method = %req.method(), path = %req.uri().path(), "admin API call");
                    }
                    next.run(req).await
                }
            }
        }
    }
}

/// The admin routes (nested under `/admin/v1`).
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/providers", get(list).post(register))
        .route(
            "/providers/{name}",
            get(one).put(replace).delete(unregister),
        )
        .route("/providers/{name}/restart", post(restart))
        .route("/providers/{name}/start", post(start))
        .route("/providers/{name}/stop", post(stop))
        .route("/providers/{name}/health-check", post(health_check))
        .route("/events", get(events))
        .route("/keys", get(keys))
        .layer(axum::middleware::from_fn_with_state(state, auth))
}

/// Run a registry operation in a task of its own, so that a client going away
/// cannot cancel it half-way (a guest call dropped mid-way would leave its
/// instance unusable).
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = tamma_sandbox::error::Result<T>> + Send + 'static,
) -> tamma_sandbox::error::Result<T> {
    tokio::spawn(work.in_current_span())
        .await
        .unwrap_or_else(|e| {
            Err(tamma_sandbox::error::Error::new(
                tamma_sandbox::error::ErrorCode::Internal,
                format!("the admin operation failed: {e}"),
            ))
        })
}

/// `GET /admin/v1/keys` (read role): client keys, their policies and usage.
async fn keys(State(state): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        &crate::client_limits::keys_report(&state).await,
    )
}

async fn list(State(state): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({ "providers": state.registry.snapshot() }),
    )
}

async fn one(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match state.registry.snapshot_of(&name) {
        Ok(s) => json_response(StatusCode::OK, &json!(s)),
        Err(e) => ApiError::from(&e).into_response(),
    }
}

async fn register(State(state): State<AppState>, req: Request<Body>) -> Response {
    let result = async {
        let mut u = parse_upload(&state, req).await?;
        let name = u
            .name
            .take()
            .ok_or_else(|| ApiError::bad_request("name is missing").param("name"))?;
        let reg = registration(u)?;
        let registry = state.registry.clone();
        detached(async move { registry.register(&name, reg).await })
            .await
            .map_err(|e| ApiError::from(&e))
    }
    .await;
    match result {
        Ok(snap) => json_response(StatusCode::CREATED, &json!(snap)),
        Err(e) => e.into_response(),
    }
}

async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    let result = async {
        let u = parse_upload(&state, req).await?;
        if u.name.as_deref().is_some_and(|n| n != name) {
            return Err(
                ApiError::bad_request("name in the body differs from the path").param("name"),
            );
        }
        let reg = registration(u)?;
        let (registry, name) = (state.registry.clone(), name.clone());
        // Detached like every other mutation: a client that disconnects must not
        // cancel a replacement half-way through a guest call.
        detached(async move {
            if registry.contains(&name) {
                registry
                    .replace(&name, reg)
                    .await
                    .map(|s| (StatusCode::OK, s))
            } else {
                registry
                    .register(&name, reg)
                    .await
                    .map(|s| (StatusCode::CREATED, s))
            }
        })
        .await
        .map_err(|e| ApiError::from(&e))
    }
    .await;
    match result {
        Ok((status, snap)) => json_response(status, &json!(snap)),
        Err(e) => e.into_response(),
    }
}

async fn unregister(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let (registry, n) = (state.registry.clone(), name.clone());
    match detached(async move { registry.unregister(&n).await }).await {
        Ok(clean) => json_response(StatusCode::OK, &json!({ "name": name, "clean": clean })),
        Err(e) => ApiError::from(&e).into_response(),
    }
}

async fn after_op(state: &AppState, name: &str, r: tamma_sandbox::error::Result<()>) -> Response {
    match r.and_then(|_| state.registry.snapshot_of(name)) {
        Ok(s) => json_response(StatusCode::OK, &json!(s)),
        Err(e) => ApiError::from(&e).into_response(),
    }
}

async fn restart(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let (registry, n) = (state.registry.clone(), name.clone());
    let r = detached(async move { registry.restart(&n).await }).await;
    after_op(&state, &name, r).await
}

async fn start(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let (registry, n) = (state.registry.clone(), name.clone());
    let r = detached(async move { registry.start(&n).await }).await;
    after_op(&state, &name, r).await
}

async fn stop(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let (registry, n) = (state.registry.clone(), name.clone());
    let r = detached(async move { registry.stop(&n).await.map(|_| ()) }).await;
    after_op(&state, &name, r).await
}

async fn health_check(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let (registry, n) = (state.registry.clone(), name.clone());
    match detached(async move { registry.check_health(&n).await }).await {
        Ok(c) => json_response(StatusCode::OK, &json!(c)),
        Err(e) => ApiError::from(&e).into_response(),
    }
}

/// `GET /admin/v1/events`: `event: <type>`, `id: <seq>`, `data: <envelope>`; a
/// subscriber that fell behind gets `event: missed` with `{"missed": n}`. A
/// `: keep-alive` comment after 15 s without an event keeps proxies from closing
/// an idle stream. The stream ends when the server shuts down.
async fn events(State(state): State<AppState>) -> Response {
    let mut sub = state.registry.subscribe();
    let keep_alive = KeepAlive::new()
        .interval(std::time::Duration::from_secs(15))
        .text("keep-alive");
    let (tx, resp) = sse::channel_with_keep_alive(64, keep_alive);
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(
        async move {
            if tx.send(sse::comment("tamma events")).await.is_err() {
                return;
            }
            loop {
                let msg = tokio::select! {
                    r = sub.recv() => match r {
                        Some(Received::Event(env)) => sse::event(
                            env.event.kind(),
                            Some(env.seq),
                            &serde_json::to_string(&env).unwrap_or_default(),
                        ),
                        Some(Received::Missed(n)) => {
                            sse::event("missed", None, &json!({ "missed": n }).to_string())
                        }
                        None => break,
                    },
                    _ = shutdown.wait_for(|s| *s) => break,
                    _ = tx.closed() => break,
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        }
        .in_current_span(),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_exactly() {
        let tokens = vec![
            ResolvedToken::new("ro".into(), AdminRole::Read, "read-token-0123456789"),
            ResolvedToken::new("rw".into(), AdminRole::Admin, "admin-token-0123456789"),
        ];
        assert_eq!(
            authenticate(&tokens, "admin-token-0123456789"),
            Some(("rw".into(), AdminRole::Admin))
        );
        assert_eq!(
            authenticate(&tokens, "read-token-0123456789").map(|t| t.1),
            Some(AdminRole::Read)
        );
        assert_eq!(authenticate(&tokens, "admin-token-012345678"), None);
        assert_eq!(authenticate(&tokens, ""), None);
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
