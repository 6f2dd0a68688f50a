//! Constructors for [`ProviderError`] and helpers on [`ErrorCode`].

use crate::{ErrorCode, ProviderError};

impl ErrorCode {
    /// Every error code, in WIT order.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::RateLimitExceeded,
        ErrorCode::InvalidApiKey,
        ErrorCode::ModelNotFound,
        ErrorCode::ContextTooLong,
        ErrorCode::NetworkError,
        ErrorCode::Timeout,
        ErrorCode::InvalidRequest,
        ErrorCode::ProviderError,
        ErrorCode::QuotaExceeded,
        ErrorCode::ServiceUnavailable,
    ];

    /// The WIT name of the code, e.g. `"rate-limit-exceeded"`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::RateLimitExceeded => "rate-limit-exceeded",
            ErrorCode::InvalidApiKey => "invalid-api-key",
            ErrorCode::ModelNotFound => "model-not-found",
            ErrorCode::ContextTooLong => "context-too-long",
            ErrorCode::NetworkError => "network-error",
            ErrorCode::Timeout => "timeout",
            ErrorCode::InvalidRequest => "invalid-request",
            ErrorCode::ProviderError => "provider-error",
            ErrorCode::QuotaExceeded => "quota-exceeded",
            ErrorCode::ServiceUnavailable => "service-unavailable",
        }
    }

    /// Parses a WIT name (`"service-unavailable"`); `_` is accepted for `-`, case is
    /// ignored.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        let n = name.trim().to_ascii_lowercase().replace('_', "-");
        ErrorCode::ALL.into_iter().find(|c| c.name() == n)
    }

    /// Whether a failure of this kind is worth retrying by default: rate limits,
    /// network errors, timeouts and unavailable services.
    pub fn default_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimitExceeded
                | ErrorCode::NetworkError
                | ErrorCode::Timeout
                | ErrorCode::ServiceUnavailable
        )
    }
}

impl ProviderError {
    /// An error with an explicit code and retry flag.
    pub fn new(code: ErrorCode, message: impl Into<String>, retryable: bool) -> Self {
        ProviderError {
            code,
            message: message.into(),
            retryable,
            retry_after_ms: None,
        }
    }

    /// An error whose `retryable` flag follows [`ErrorCode::default_retryable`].
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        ProviderError::new(code, message, code.default_retryable())
    }

    /// Sets `retry-after-ms`.
    pub fn with_retry_after_ms(mut self, retry_after_ms: Option<u64>) -> Self {
        self.retry_after_ms = retry_after_ms;
        self
    }

    /// Overrides `retryable`.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// `rate-limit-exceeded`, retryable, optionally after `retry_after_ms`.
    pub fn rate_limited(message: impl Into<String>, retry_after_ms: Option<u64>) -> Self {
        ProviderError::from_code(ErrorCode::RateLimitExceeded, message)
            .with_retry_after_ms(retry_after_ms)
    }

    /// `invalid-api-key`, not retryable.
    pub fn invalid_api_key(message: impl Into<String>) -> Self {
        ProviderError::from_code(ErrorCode::InvalidApiKey, message)
    }

    /// `model-not-found`, not retryable.
    pub fn model_not_found(message: impl Into<String>) -> Self {
        ProviderError::from_code(ErrorCode::ModelNotFound, message)
    }

    /// `context-too-long`, not retryable.
    pub fn context_too_long(message: impl Into<String>) -> Self {
        ProviderError::from_code(ErrorCode::ContextTooLong, message)
    }

    /// `network-error`, retryable.
    pub fn network(message: impl Into<String>) -> Self {
        ProviderError::from_code(ErrorCode::NetworkError, message)
    }

    /// `timeout`, retryable.
    pub fn timeout(message: impl Into<String>) -> Self {
        ProviderError::from_code(ErrorCode::Timeout, message)
    }

    /// The default answer of [`Provider::embed`](crate::Provider::embed):
    /// `invalid-request`, "embeddings are not supported by this provider".
    pub fn embeddings_not_supported() -> Self {
        ProviderError::invalid_request("embeddings are not supported by this provider")
    }

    /// `invalid-request` (the caller's mistake), not retryable.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        ProviderError::from_code(ErrorCode::InvalidRequest, message)
    }

    /// `provider-error` (generic provider-side failure), not retryable.
    pub fn provider(message: impl Into<String>) -> Self {
        ProviderError::from_code(ErrorCode::ProviderError, message)
    }

    /// `quota-exceeded`, not retryable.
    pub fn quota_exceeded(message: impl Into<String>) -> Self {
        ProviderError::from_code(ErrorCode::QuotaExceeded, message)
    }

    /// `service-unavailable`, retryable.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        ProviderError::from_code(ErrorCode::ServiceUnavailable, message)
    }

    /// The error returned for calls made before `initialize` (or after `dispose`).
    pub fn not_initialized() -> Self {
        ProviderError::provider("not initialized")
    }
}
