//! One access-log line per `/v1` request, at `info` (target `tamma::access`;
//! JSON with `--log-format json`): key name, provider, model, status, tokens,
//! duration, request id, and the routing attempts when known.
//!
//! The line is written when the last holder of the request's [`AccessLog`] lets
//! go of it: the response body (the middleware wraps it) and, for a stream, the
//! task producing it. So a stream's line comes at its end, with the tokens it was
//! charged, also when its client went away. The same moment counts the request
//! in `tamma_key_requests_total`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::metrics::Metrics;

/// What the line says, filled in as the request goes.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    /// The key's name; empty when the request has none.
    pub key: Arc<str>,
    /// The provider that answered; empty when none was chosen.
    pub provider: String,
    /// The model label (bounded: a declared model, a route target, or `other`).
    pub model: String,
    /// The HTTP status answered.
    pub status: u16,
    /// Input tokens charged.
    pub input_tokens: u64,
    /// Output tokens charged.
    pub output_tokens: u64,
    /// Whether the answer was a stream.
    pub stream: bool,
    /// The client went away before the end of the answer.
    pub client_gone: bool,
    /// Targets tried by routing, when it says (wired from routing's response
    /// extension; `None` until then).
    pub attempts: Option<u32>,
}

struct Entry {
    started: Instant,
    endpoint: &'static str,
    request_id: String,
    fields: Mutex<Fields>,
    metrics: Arc<Metrics>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let f = self.fields.get_mut().unwrap_or_else(|p| p.into_inner());
        let duration_ms = self.started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            target: "tamma::access",
            endpoint = self.endpoint,
            request_id = %self.request_id,
            key = %f.key,
            provider = %f.provider,
            model = %f.model,
            status = f.status,
            input_tokens = f.input_tokens,
            output_tokens = f.output_tokens,
            stream = f.stream,
            client_gone = f.client_gone,
            attempts = f.attempts,
            duration_ms,
            "access"
        );
        self.metrics
            .keys
            .record_request(&f.key, &f.provider, &f.model, f.status);
    }
}

/// A request's access-log entry; clones share it, the last one writes it.
#[derive(Clone)]
pub struct AccessLog(Arc<Entry>);

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AccessLog")
            .field(&self.0.request_id)
            .finish()
    }
}

impl AccessLog {
    /// A new entry for a request of `endpoint` with id `request_id`.
    pub fn new(metrics: Arc<Metrics>, endpoint: &'static str, request_id: String) -> Self {
        AccessLog(Arc::new(Entry {
            started: Instant::now(),
            endpoint,
            request_id,
            fields: Mutex::new(Fields::default()),
            metrics,
        }))
    }

    /// Change the fields.
    pub fn update(&self, f: impl FnOnce(&mut Fields)) {
        let mut g = self.0.fields.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    /// A copy of the fields (tests).
    pub fn fields(&self) -> Fields {
        self.0
            .fields
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
