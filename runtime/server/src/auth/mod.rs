//! Client API keys for `/v1`: who is calling, and which models they may use.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the `/v1` middleware ([`guard`]): find the key, refuse 401, start the access log |
//! | [`key_ring`] | the keys in force, derived from the current `[server]` section |
//! | [`models`] | route names and `<provider>/<model>` globs a key may use |
//!
//! A key is presented as `Authorization: Bearer <key>` (OpenAI clients) or
//! `x-api-key: <key>` (Anthropic clients). Probes and `/metrics` are not behind
//! this; the admin API has its own tokens.

pub mod key_ring;
pub mod models;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::RequestId;

pub use key_ring::{KeyPolicy, KeyRing, KeyRingCache};

use crate::access_log::AccessLog;
use crate::api_error::ApiError;
use crate::routing::Plan;
use crate::AppState;

/// Who is calling: the key's policy, or none (auth not required and no known key).
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The key's policy.
    pub policy: Option<Arc<KeyPolicy>>,
}

impl Caller {
    /// The key's name; empty without a key.
    pub fn name(&self) -> &str {
        self.policy.as_ref().map(|p| &*p.name).unwrap_or("")
    }

    /// Whether the caller may use the model id (`GET /v1/models`).
    pub fn allows_id(&self, id: &str) -> bool {
        match self.policy.as_ref().and_then(|p| p.models.as_ref()) {
            None => true,
            Some(m) => models::allows_id(m, id),
        }
    }

    /// 403 `model_not_allowed` unless the caller may use what `plan` resolved to.
    pub fn authorize(&self, plan: &Plan) -> Result<(), ApiError> {
        match self.policy.as_ref().and_then(|p| p.models.as_ref()) {
            None => Ok(()),
            Some(m) if models::allows_plan(m, plan) => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                format!(
                    "the key {:?} may not use the model {:?} (GET /v1/models lists those it may)",
                    self.name(),
                    plan.requested
                ),
            )
            .code("model_not_allowed")
            .param("model")),
        }
    }
}

/// The keys a request presents: `Authorization: Bearer` (OpenAI clients), then
/// `x-api-key` (Anthropic clients). A client may send both (an OpenAI client
/// given an `x-api-key` header still sends its own bearer): either may match.
pub fn presented_keys(headers: &HeaderMap) -> [Option<&str>; 2] {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty());
    let api_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty());
    [bearer, api_key]
}

/// 401 `invalid_api_key`, in OpenAI's shape (the presented value is never echoed).
fn invalid_api_key(presented: bool) -> ApiError {
    let message = if presented {
        "invalid API key: it is not one of this gateway's keys"
    } else {
        "this gateway needs an API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`"
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
        .code("invalid_api_key")
}

fn endpoint_of(path: &str) -> &'static str {
    if path == "/v1/chat/completions" {
        "chat_completions"
    } else if path == "/v1/messages" {
        "messages"
    } else if path.starts_with("/v1/models") {
        "models"
    } else {
        "other"
    }
}

/// Middleware for `/v1`: find the caller's key (401 when one is required and
/// none is valid), make it and the access log available to the handler as
/// request extensions, and keep the access log alive until the body is done.
pub async fn guard(State(state): State<AppState>, mut req: Request<Body>, next: Next) -> Response {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("")
        .to_string();
    let access = AccessLog::new(
        state.metrics.clone(),
        endpoint_of(req.uri().path()),
        request_id,
    );
    let config = state.config.load();
    let ring = state.keys.get(&config);
    let presented = presented_keys(req.headers());
    let policy = presented
        .iter()
        .flatten()
        .find_map(|k| ring.lookup(k))
        .cloned();
    if policy.is_none() && ring.required {
        state.metrics.keys.record_refusal("", "invalid_api_key");
        let resp = invalid_api_key(presented.iter().any(Option::is_some)).into_response();
        access.update(|f| f.status = resp.status().as_u16());
        return resp;
    }
    let caller = Caller { policy };
    access.update(|f| {
        f.key = caller
            .policy
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_else(|| Arc::from(""))
    });
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(access.clone());
    let resp = next.run(req).await;
    access.update(|f| {
        f.status = resp.status().as_u16();
        if f.provider.is_empty() {
            if let Some(p) = resp
                .headers()
                .get("x-tamma-provider")
                .and_then(|v| v.to_str().ok())
            {
                f.provider = p.to_string();
            }
        }
    });
    // The access-log line is written when the body is done.
    crate::limits::hold_until_done(resp, access)
}

/// The caller of a request that went through [`guard`] (none otherwise).
pub fn caller_of(req: &Request<Body>) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_default()
}

/// The access log of a request that went through [`guard`].
pub fn access_of(req: &Request<Body>) -> Option<AccessLog> {
    req.extensions().get::<AccessLog>().cloned()
}
