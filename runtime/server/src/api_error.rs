//! HTTP errors in OpenAI's shape, `{"error":{"message","type","param","code"}}`,
//! and the mapping from the runtime's [`ErrorCode`]s and the guests'
//! [`ProviderErrorCode`]s to HTTP statuses.
//!
//! | cause | status | `type` | `code` |
//! |---|---|---|---|
//! | malformed request, `INVALID_CONFIG`, guest `invalid-request` | 400 | `invalid_request_error` | `invalid_request` |
//! | guest `context-too-long` | 400 | `invalid_request_error` | `context_length_exceeded` |
//! | guest `invalid-api-key` (the provider's own key was refused upstream) | 401 | `authentication_error` | `invalid_api_key` |
//! | admin API without a valid token / with too weak a role | 401 / 403 | `authentication_error` / `permission_error` | |
//! | unknown model or provider, `NOT_FOUND`, guest `model-not-found` | 404 | `invalid_request_error` | `model_not_found` |
//! | body or header not sent in time | 408 | `invalid_request_error` | `request_timeout` |
//! | body larger than `max_body_bytes` | 413 | `invalid_request_error` | `request_too_large` |
//! | guest `rate-limit-exceeded` | 429 | `rate_limit_error` | `rate_limit_exceeded` |
//! | guest `quota-exceeded` | 429 | `insufficient_quota` | `insufficient_quota` |
//! | `OVERLOADED` (no instance free in time), `max_concurrent_requests` reached | 429 | `rate_limit_error` | `overloaded` / `too_many_requests` |
//! | `TRAP`, `FUEL_EXHAUSTED`, `MEMORY_LIMIT`, `RESPONSE_TOO_LARGE`, `LOG_LIMIT`, guest `provider-error`, `network-error` | 502 | `server_error` | lowercase runtime code / guest code |
//! | `CIRCUIT_OPEN` (with `Retry-After`), `PROVIDER_STOPPED`, `SHUTTING_DOWN`, guest `service-unavailable` | 503 | `server_error` | |
//! | `TIMEOUT`, guest `timeout` | 504 | `server_error` | `timeout` |
//! | `INTERNAL` | 500 | `server_error` | `internal` |
//!
//! Every error body also carries `tamma_code` (the runtime's stable code) and,
//! when known, `provider`. A retry hint becomes `Retry-After` (seconds, rounded
//! up) and `retry-after-ms`.
//!
//! The same error is rendered in Anthropic's shape for `/v1/messages`
//! ([`ApiError::anthropic_body`]): same status, `{"type":"error","error":{"type",
//! "message"}}`, with the `type` named by the status (the Anthropic SDKs pick
//! their exception by status, as the OpenAI ones do):
//!
//! | status | Anthropic `type` |
//! |---|---|
//! | 400, 408, 409, 422 | `invalid_request_error` |
//! | 401 | `authentication_error` |
//! | 403 | `permission_error` |
//! | 404 | `not_found_error` |
//! | 413 | `request_too_large` |
//! | 429 | `rate_limit_error` |
//! | 503 | `overloaded_error` |
//! | other 5xx | `api_error` |
//!
//! An error response carries its [`ApiError`] as a response extension, so that
//! a layer can re-render it in another API's shape.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use tamma_sandbox::error::{Error, ErrorCode};
use tamma_sandbox::types::ProviderErrorCode;

/// An error answer.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// OpenAI's `message`, for people.
    pub message: String,
    /// OpenAI's `type`.
    pub kind: &'static str,
    /// OpenAI's `code`.
    pub code: Option<String>,
    /// OpenAI's `param`.
    pub param: Option<String>,
    /// The runtime's code, when the error came from the runtime.
    pub tamma_code: Option<&'static str>,
    /// The provider that failed, when one was chosen (`x-tamma-provider`).
    pub provider: Option<String>,
    /// When to retry (`Retry-After`, `retry-after-ms`).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with a status, OpenAI `type` and message; nothing else set.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
            tamma_code: None,
            provider: None,
            retry_after: None,
        }
    }

    /// Set OpenAI's `code`.
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Set OpenAI's `param`, the request field at fault.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Set the retry hint.
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).code("invalid_request")
    }

    /// 404 for an unknown model.
    pub fn model_not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
            .code("model_not_found")
            .param("model")
    }

    /// 404 for an unknown path.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).code("not_found")
    }

    /// 413.
    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
        .code("request_too_large")
    }

    /// 408.
    pub fn request_timeout(what: &str) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!("the client did not send the {what} in time"),
        )
        .code("request_timeout")
    }

    /// 429 for the server-wide concurrency limit.
    pub fn too_many_requests(limit: u32) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!("the server is already serving {limit} requests; retry shortly"),
        )
        .code("too_many_requests")
        .retry_after(Duration::from_secs(1))
    }

    /// 401 for the admin API.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message).code("unauthorized")
    }

    /// 403 for the admin API.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message).code("forbidden")
    }

    /// 503 when every target of a request has its circuit open.
    pub fn all_circuits_open(model: &str, retry_after: Duration) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!("every provider for {model:?} has its circuit breaker open"),
        )
        .code("circuit_open")
        .retry_after(retry_after.max(Duration::from_millis(1)));
        e.tamma_code = Some(ErrorCode::CircuitOpen.as_str());
        e
    }

    /// The JSON body (`{"error":{...}}`), also used for in-band stream errors.
    pub fn body(&self) -> serde_json::Value {
        let mut inner = json!({
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        });
        if let Some(c) = self.tamma_code {
            inner["tamma_code"] = json!(c);
        }
        if let Some(p) = &self.provider {
            inner["provider"] = json!(p);
        }
        json!({ "error": inner })
    }

    /// Anthropic's error `type` for this error's status.
    pub fn anthropic_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The JSON body in Anthropic's shape (`{"type":"error","error":{...}}`),
    /// also used for in-band stream errors. The OpenAI `code`, the runtime's
    /// code and the provider ride along: Anthropic clients ignore unknown fields.
    pub fn anthropic_body(&self) -> serde_json::Value {
        let mut inner = json!({
            "type": self.anthropic_type(),
            "message": self.message,
        });
        if let Some(c) = &self.code {
            inner["code"] = json!(c);
        }
        if let Some(c) = self.tamma_code {
            inner["tamma_code"] = json!(c);
        }
        if let Some(p) = &self.provider {
            inner["provider"] = json!(p);
        }
        json!({ "type": "error", "error": inner })
    }
}

impl From<&Error> for ApiError {
    fn from(e: &Error) -> Self {
        use StatusCode as S;
        let lower = e.code.as_str().to_ascii_lowercase();
        let (status, kind, code): (StatusCode, &'static str, String) = match e.code {
            ErrorCode::InvalidConfig | ErrorCode::InvalidName => (
                S::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request".into(),
            ),
            ErrorCode::NotFound => (
                S::NOT_FOUND,
                "invalid_request_error",
                "model_not_found".into(),
            ),
            ErrorCode::AlreadyExists => (S::CONFLICT, "invalid_request_error", lower),
            ErrorCode::InvalidComponent | ErrorCode::RegistrationFailed => {
                (S::UNPROCESSABLE_ENTITY, "invalid_request_error", lower)
            }
            ErrorCode::Overloaded => (S::TOO_MANY_REQUESTS, "rate_limit_error", lower),
            ErrorCode::Timeout => (S::GATEWAY_TIMEOUT, "server_error", lower),
            ErrorCode::CircuitOpen | ErrorCode::ProviderStopped | ErrorCode::ShuttingDown => {
                (S::SERVICE_UNAVAILABLE, "server_error", lower)
            }
            ErrorCode::FuelExhausted
            | ErrorCode::MemoryLimit
            | ErrorCode::Trap
            | ErrorCode::ResponseTooLarge
            | ErrorCode::LogLimit => (S::BAD_GATEWAY, "server_error", lower),
            ErrorCode::Internal => (S::INTERNAL_SERVER_ERROR, "server_error", lower),
            // Asking a chat-only provider for embeddings: the caller's choice of model.
            ErrorCode::Unsupported => (S::BAD_REQUEST, "invalid_request_error", lower),
            ErrorCode::ProviderError => match &e.provider_error {
                Some(pe) => provider_error_status(pe.code),
                None => (S::BAD_GATEWAY, "server_error", "provider_error".into()),
            },
        };
        let message = match (&e.provider_error, e.code) {
            (Some(pe), ErrorCode::ProviderError) => pe.message.clone(),
            _ => e.message.clone(),
        };
        let mut out = ApiError::new(status, kind, message).code(code);
        if status == S::NOT_FOUND {
            out.param = Some("model".into());
        }
        out.tamma_code = Some(e.code.as_str());
        out.provider = e.provider.clone();
        out.retry_after = e.retry_after;
        if e.code == ErrorCode::Overloaded && out.retry_after.is_none() {
            out.retry_after = Some(Duration::from_secs(1));
        }
        out
    }
}

fn provider_error_status(code: ProviderErrorCode) -> (StatusCode, &'static str, String) {
    use ProviderErrorCode as P;
    use StatusCode as S;
    let (s, t, c) = match code {
        P::RateLimitExceeded => (
            S::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limit_exceeded",
        ),
        P::QuotaExceeded => (
            S::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "insufficient_quota",
        ),
        P::InvalidApiKey => (S::UNAUTHORIZED, "authentication_error", "invalid_api_key"),
        P::ModelNotFound => (S::NOT_FOUND, "invalid_request_error", "model_not_found"),
        P::ContextTooLong => (
            S::BAD_REQUEST,
            "invalid_request_error",
            "context_length_exceeded",
        ),
        P::InvalidRequest => (S::BAD_REQUEST, "invalid_request_error", "invalid_request"),
        P::NetworkError => (S::BAD_GATEWAY, "server_error", "network_error"),
        P::ProviderError => (S::BAD_GATEWAY, "server_error", "provider_error"),
        P::Timeout => (S::GATEWAY_TIMEOUT, "server_error", "timeout"),
        P::ServiceUnavailable => (
            S::SERVICE_UNAVAILABLE,
            "server_error",
            "service_unavailable",
        ),
    };
    (s, t, c.to_string())
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::from(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(after) = self.retry_after {
            let secs = after.as_millis().div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&after.as_millis().to_string()) {
                h.insert("retry-after-ms", v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED && self.code.as_deref() == Some("unauthorized") {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(p) = &self.provider {
            if let Ok(v) = HeaderValue::from_str(p) {
                h.insert("x-tamma-provider", v);
            }
        }
        resp.extensions_mut().insert(self);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_sandbox::types::ProviderError;

    fn pe(code: ProviderErrorCode) -> Error {
        Error::from_provider_error(ProviderError {
            code,
            message: "upstream said no".into(),
            retryable: false,
            retry_after_ms: Some(1500),
        })
    }

    #[test]
    fn runtime_codes_map_to_statuses() {
        let cases = [
            (ErrorCode::NotFound, 404),
            (ErrorCode::Overloaded, 429),
            (ErrorCode::Timeout, 504),
            (ErrorCode::CircuitOpen, 503),
            (ErrorCode::Trap, 502),
            (ErrorCode::FuelExhausted, 502),
            (ErrorCode::Internal, 500),
            (ErrorCode::InvalidConfig, 400),
            (ErrorCode::ShuttingDown, 503),
            (ErrorCode::Unsupported, 400),
        ];
        for (code, status) in cases {
            let a = ApiError::from(Error::new(code, "x"));
            assert_eq!(a.status.as_u16(), status, "{code}");
            assert_eq!(a.tamma_code, Some(code.as_str()));
        }
    }

    #[test]
    fn provider_codes_map_to_statuses_with_retry_after() {
        let cases = [
            (
                ProviderErrorCode::RateLimitExceeded,
                429,
                "rate_limit_exceeded",
            ),
            (ProviderErrorCode::QuotaExceeded, 429, "insufficient_quota"),
            (ProviderErrorCode::InvalidApiKey, 401, "invalid_api_key"),
            (ProviderErrorCode::ModelNotFound, 404, "model_not_found"),
            (
                ProviderErrorCode::ContextTooLong,
                400,
                "context_length_exceeded",
            ),
            (ProviderErrorCode::InvalidRequest, 400, "invalid_request"),
            (ProviderErrorCode::NetworkError, 502, "network_error"),
            (ProviderErrorCode::ProviderError, 502, "provider_error"),
            (ProviderErrorCode::Timeout, 504, "timeout"),
            (
                ProviderErrorCode::ServiceUnavailable,
                503,
                "service_unavailable",
            ),
        ];
        for (code, status, oc) in cases {
            let a = ApiError::from(pe(code));
            assert_eq!(a.status.as_u16(), status, "{code:?}");
            assert_eq!(a.code.as_deref(), Some(oc));
            assert_eq!(a.message, "upstream said no");
            let r = a.into_response();
            assert_eq!(r.headers()["retry-after"], "2");
            assert_eq!(r.headers()["retry-after-ms"], "1500");
        }
    }

    #[test]
    fn body_has_openai_shape() {
        let b = ApiError::model_not_found("no such model").body();
        let e = &b["error"];
        assert_eq!(e["message"], "no such model");
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["param"], "model");
        assert_eq!(e["code"], "model_not_found");
    }

    #[test]
    fn anthropic_body_names_the_type_by_status() {
        let cases = [
            (ApiError::bad_request("x"), "invalid_request_error"),
            (ApiError::unauthorized("x"), "authentication_error"),
            (ApiError::forbidden("x"), "permission_error"),
            (ApiError::model_not_found("x"), "not_found_error"),
            (ApiError::too_large(1), "request_too_large"),
            (ApiError::too_many_requests(1), "rate_limit_error"),
            (
                ApiError::from(pe(ProviderErrorCode::ServiceUnavailable)),
                "overloaded_error",
            ),
            (
                ApiError::from(pe(ProviderErrorCode::ProviderError)),
                "api_error",
            ),
            (ApiError::from(pe(ProviderErrorCode::Timeout)), "api_error"),
        ];
        for (e, ty) in cases {
            let b = e.anthropic_body();
            assert_eq!(b["type"], "error");
            assert_eq!(b["error"]["type"], ty, "{}", e.status);
            assert_eq!(b["error"]["message"], e.message);
        }
    }
}
