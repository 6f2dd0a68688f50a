//! The runtime's one error type, with stable codes.
//!
//! Every failure that reaches a caller — a sandbox limit, a guest's own provider
//! error, a registry refusal — is an [`Error`] with a [`ErrorCode`] whose string form
//! (`FUEL_EXHAUSTED`, `NOT_FOUND`, ...) is part of the public contract: the CLI prints
//! it, the HTTP APIs return it, and operators alert on it. Messages never contain
//! configuration values, so secrets cannot leak through `Display` or `Debug`.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::types::ProviderError;

/// Stable error codes. The `SCREAMING_SNAKE_CASE` strings are the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    // --- sandbox ---
    /// The call used up its fuel budget (too much computation).
    FuelExhausted,
    /// The guest tried to grow its memory past its cap.
    MemoryLimit,
    /// The call ran past its wall-clock deadline (guest code or a blocking import).
    Timeout,
    /// The guest trapped (panic, unreachable, stack overflow, ...).
    Trap,
    /// The guest's answer is larger than the response cap.
    ResponseTooLarge,
    /// The guest wrote more logs in one call than its cap allows.
    LogLimit,
    /// The bytes are not a component satisfying the `tamma:provider/provider` world.
    InvalidComponent,
    /// The guest returned its own provider error (carried in [`Error::provider_error`]).
    ProviderError,
    /// No instance became free within the queue timeout.
    Overloaded,
    /// A host-side failure not caused by the guest (I/O on the cache, engine set-up).
    Internal,
    /// The provider does not implement the operation (for example embeddings
    /// from a component that does not export `tamma:provider/embeddings`).
    Unsupported,
    // --- registry ---
    /// A provider name that is empty, too long or has characters outside `a-z 0-9 - _ .`.
    InvalidName,
    /// A configuration or limit value that is out of range or malformed.
    InvalidConfig,
    /// A provider with that name is already registered.
    AlreadyExists,
    /// Registration failed; the cause is in the message and [`Error::cause_code`].
    RegistrationFailed,
    /// No provider with that name is registered.
    NotFound,
    /// The provider is registered but stopped.
    ProviderStopped,
    /// The provider's circuit breaker is open; see [`Error::retry_after`].
    CircuitOpen,
    /// The registry is shutting down and takes no new calls.
    ShuttingDown,
}

impl ErrorCode {
    /// The stable string form, e.g. `FUEL_EXHAUSTED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FuelExhausted => "FUEL_EXHAUSTED",
            ErrorCode::MemoryLimit => "MEMORY_LIMIT",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Trap => "TRAP",
            ErrorCode::ResponseTooLarge => "RESPONSE_TOO_LARGE",
            ErrorCode::LogLimit => "LOG_LIMIT",
            ErrorCode::InvalidComponent => "INVALID_COMPONENT",
            ErrorCode::ProviderError => "PROVIDER_ERROR",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::InvalidName => "INVALID_NAME",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::RegistrationFailed => "REGISTRATION_FAILED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::ProviderStopped => "PROVIDER_STOPPED",
            ErrorCode::CircuitOpen => "CIRCUIT_OPEN",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
        }
    }

    /// Whether the instance that produced this error must be thrown away.
    /// A trap poisons the whole `Store` (wasmtime refuses re-entry), and a
    /// cancelled or over-limit call may leave guest state half-updated.
    pub fn retires_instance(self) -> bool {
        matches!(
            self,
            ErrorCode::FuelExhausted
                | ErrorCode::MemoryLimit
                | ErrorCode::Timeout
                | ErrorCode::Trap
                | ErrorCode::ResponseTooLarge
                | ErrorCode::LogLimit
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A structured runtime error: a stable code, the provider it concerns, and a message
/// for people. Never carries configuration values (and so never a secret).
#[derive(Clone, Debug, Serialize)]
pub struct Error {
    /// The stable code.
    pub code: ErrorCode,
    /// The provider concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// What happened, for a person.
    pub message: String,
    /// The guest's own error, for [`ErrorCode::ProviderError`] (and registration
    /// failures caused by one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_error: Option<ProviderError>,
    /// For wrapping codes such as `REGISTRATION_FAILED`: the code of the cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause_code: Option<ErrorCode>,
    /// When the caller may try again (circuit open, rate limits).
    #[serde(
        skip_serializing_if = "Option::is_none",
        rename = "retry_after_ms",
        serialize_with = "crate::time::serde_ms::opt"
    )]
    pub retry_after: Option<Duration>,
}

impl Error {
    /// A new error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            provider: None,
            message: message.into(),
            provider_error: None,
            cause_code: None,
            retry_after: None,
        }
    }

    /// Attach the provider's name.
    pub fn with_provider(mut self, name: impl Into<String>) -> Self {
        self.provider = Some(name.into());
        self
    }

    /// Attach a retry-after hint.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// A guest's own provider error.
    pub fn from_provider_error(err: ProviderError) -> Self {
        let mut e = Error::new(
            ErrorCode::ProviderError,
            format!("{}: {}", err.code.as_str(), err.message),
        );
        e.retry_after = err.retry_after_ms.map(Duration::from_millis);
        e.provider_error = Some(err);
        e
    }

    /// Wrap this error as the cause of another, e.g. `REGISTRATION_FAILED`.
    pub fn wrap(self, code: ErrorCode, context: &str) -> Self {
        Error {
            code,
            message: format!("{context}: {} ({})", self.message, self.code),
            cause_code: Some(self.code),
            ..self
        }
    }

    /// Whether the instance that produced this error must be discarded.
    pub fn retires_instance(&self) -> bool {
        self.code.retires_instance()
    }

    /// Whether this failure says something is wrong with the provider (so it counts
    /// against its circuit breaker and health), as opposed to the caller's own
    /// mistake or the runtime's refusal to call it.
    pub fn is_provider_failure(&self) -> bool {
        match self.code {
            ErrorCode::FuelExhausted
            | ErrorCode::MemoryLimit
            | ErrorCode::Timeout
            | ErrorCode::Trap
            | ErrorCode::ResponseTooLarge
            | ErrorCode::LogLimit => true,
            ErrorCode::ProviderError => self
                .provider_error
                .as_ref()
                .map(|p| p.retryable)
                .unwrap_or(false),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.provider {
            Some(p) => write!(f, "{} [{}]: {}", self.code, p, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ProviderError, ProviderErrorCode};

    #[test]
    fn codes_are_stable_strings() {
        assert_eq!(ErrorCode::FuelExhausted.as_str(), "FUEL_EXHAUSTED");
        assert_eq!(
            ErrorCode::ResponseTooLarge.to_string(),
            "RESPONSE_TOO_LARGE"
        );
        let json = serde_json::to_string(&ErrorCode::CircuitOpen).unwrap();
        assert_eq!(json, "\"CIRCUIT_OPEN\"");
    }

    #[test]
    fn display_names_code_and_provider() {
        let e = Error::new(ErrorCode::Timeout, "call exceeded 5 ms").with_provider("echo");
        assert_eq!(e.to_string(), "TIMEOUT [echo]: call exceeded 5 ms");
    }

    #[test]
    fn retryable_provider_errors_count_as_failures_client_errors_do_not() {
        let retryable = Error::from_provider_error(ProviderError {
            code: ProviderErrorCode::ServiceUnavailable,
            message: "down".into(),
            retryable: true,
            retry_after_ms: Some(1500),
        });
        assert!(retryable.is_provider_failure());
        assert_eq!(retryable.retry_after, Some(Duration::from_millis(1500)));
        let client = Error::from_provider_error(ProviderError {
            code: ProviderErrorCode::InvalidRequest,
            message: "bad".into(),
            retryable: false,
            retry_after_ms: None,
        });
        assert!(!client.is_provider_failure());
        assert!(!client.retires_instance());
        assert!(Error::new(ErrorCode::Trap, "x").retires_instance());
    }

    #[test]
    fn wrap_keeps_cause() {
        let e = Error::new(ErrorCode::Trap, "boom")
            .wrap(ErrorCode::RegistrationFailed, "initialize failed");
        assert_eq!(e.code, ErrorCode::RegistrationFailed);
        assert_eq!(e.cause_code, Some(ErrorCode::Trap));
        assert!(e.message.contains("boom"));
    }
}
