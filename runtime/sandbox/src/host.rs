//! The per-instance host state that lives inside each wasmtime `Store`, and the host
//! side of the guest's imports.
//!
//! The WASI context grants nothing: no preopened directories, no environment
//! variables, no arguments, no sockets, and stdin is empty. Rust's standard library
//! (and the JS and Python runtimes) import `wasi:cli` and `wasi:filesystem`
//! unconditionally, so those interfaces are linked — they simply find nothing.
//! stdout/stderr go to small in-memory buffers: a panic message is printed to
//! stderr before the guest aborts, and [`HostState::panic_message`] recovers it.
//! Outbound HTTP goes through [`EgressHooks`] (see `egress.rs`), which refuses
//! every request to a host the provider's egress policy does not grant.

use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::host::{self as wit_host, LogLevel};
use crate::egress::EgressHooks;
use crate::limits::Limits;
use crate::settings::ProviderSettings;

/// Bytes of stdout and of stderr an instance may write over its whole life. Writes
/// past this fail in the guest (Rust's `eprintln!` then panics, retiring the instance).
const STDIO_CAPACITY: usize = 64 * 1024;

/// Live resource handles (streams, pollables, HTTP objects) one instance may hold.
const MAX_RESOURCES: usize = 10_000;
/// Bytes of one `wasi:http` fields object (a header block).
const MAX_HTTP_FIELDS_BYTES: usize = 64 * 1024;
/// Bytes one `wasi:random` call may ask for.
const MAX_RANDOM_BYTES: u64 = 1024 * 1024;

/// State held by each instance's `Store`.
pub(crate) struct HostState {
    provider: std::sync::Arc<str>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: EgressHooks,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    stderr: MemoryOutputPipe,
    /// Wall-clock deadline of the call in progress; read by the epoch callback.
    pub(crate) deadline: Instant,
    /// Log budget of the call in progress.
    log_bytes_left: u64,
    log_records_left: u32,
    /// Set when the log cap stopped the call, so the trap is reported as `LOG_LIMIT`.
    pub(crate) log_limit_hit: bool,
    max_log_bytes: u64,
    max_log_records: u32,
}

impl HostState {
    pub(crate) fn new(provider: std::sync::Arc<str>, settings: &ProviderSettings) -> Self {
        let limits = &settings.limits;
        let hooks = EgressHooks::new(provider.clone(), settings.egress.clone());
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stdout(MemoryOutputPipe::new(STDIO_CAPACITY))
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        // Host-side memory a guest can make the host hold is capped too, not only
        // its linear memory: resource handles (streams, pollables, fields) and the
        // size of one HTTP header block.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_HTTP_FIELDS_BYTES);
        HostState {
            provider,
            wasi,
            http,
            hooks,
            table,
            limiter: Limiter::new(limits),
            stderr,
            deadline: Instant::now(),
            log_bytes_left: limits.max_log_bytes_per_call,
            log_records_left: limits.max_log_records_per_call,
            log_limit_hit: false,
            max_log_bytes: limits.max_log_bytes_per_call,
            max_log_records: limits.max_log_records_per_call,
        }
    }

    /// Arm the per-call budgets before entering the guest.
    pub(crate) fn begin_call(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.log_bytes_left = self.max_log_bytes;
        self.log_records_left = self.max_log_records;
    }

    /// The guest's panic message, if it printed one to stderr before trapping.
    /// Rust prints `thread '…' panicked at file:line:col:\n<message>\nnote: …`.
    pub(crate) fn panic_message(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let start = text.rfind("panicked at ")?;
        let after = &text[start..];
        let body = after
            .split_once('\n')
            .map(|(_, rest)| rest)
            .unwrap_or(after);
        let msg = body.split("\nnote:").next().unwrap_or(body).trim();
        (!msg.is_empty()).then(|| msg.chars().take(1024).collect())
    }

    /// Anything the guest wrote to stderr, trimmed, for diagnostics of other traps.
    pub(crate) fn stderr_tail(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return None;
        }
        let tail: String = trimmed.chars().rev().take(512).collect();
        Some(tail.chars().rev().collect())
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Memory/table/instance caps for one `Store`. Wraps wasmtime's [`StoreLimits`] and
/// remembers whether the memory cap was what stopped the guest, because the trap
/// raised by `trap_on_grow_failure` is not a `wasmtime::Trap` code.
pub(crate) struct Limiter {
    inner: StoreLimits,
    memory_cap: usize,
    /// Bytes of all linear memories together: the cap is per instance, so a
    /// component with several memories cannot multiply it.
    memory_total: usize,
    pub(crate) memory_limit_hit: bool,
}

impl Limiter {
    fn new(limits: &Limits) -> Self {
        Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes())
                .table_elements(limits.max_table_elements as usize)
                .instances(32)
                .tables(32)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
            memory_cap: limits.memory_bytes(),
            memory_total: 0,
            memory_limit_hit: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_total
            .saturating_add(desired.saturating_sub(current));
        if desired > self.memory_cap || total > self.memory_cap {
            self.memory_limit_hit = true;
            // Refused like any failed grow (trap_on_grow_failure turns it into a trap).
            return Err(wasmtime::Error::msg("forcing trap when growing memory"));
        }
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_total = total;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// A guest's log message as the host logs it: at most 4096 characters, control
/// characters (newlines included) escaped as `\n`, `\u{1b}`, ….
pub(crate) fn sanitize_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(4096));
    for c in message.chars().take(4096) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A guest's log fields as one JSON object (later keys win, as in a map).
pub(crate) fn guest_fields_json(fields: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Error raised inside `log` when the per-call cap is exceeded; it traps the guest.
#[derive(Debug)]
pub(crate) struct LogLimitExceeded;

impl std::fmt::Display for LogLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("log volume cap exceeded")
    }
}

impl std::error::Error for LogLimitExceeded {}

impl wit_host::Host for HostState {
    fn log(
        &mut self,
        level: LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let size = message.len() as u64
            + fields
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum::<u64>();
        if self.log_records_left == 0 || size > self.log_bytes_left {
            self.log_limit_hit = true;
            return Err(wasmtime::Error::new(LogLimitExceeded));
        }
        self.log_records_left -= 1;
        self.log_bytes_left -= size;
        // Guest text is untrusted. The message is truncated and its control
        // characters escaped, so a guest cannot forge host log lines in the text
        // format; it is passed as a format argument, never as the format string.
        // The fields become one JSON object (serde_json escapes them), which the
        // JSON log format embeds as an object: `"fields": {"k": "v"}`.
        let message = sanitize_message(&message);
        let fields = guest_fields_json(&fields);
        let provider = &*self.provider;
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "tamma::guest", provider, guest = true, fields = %fields, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "tamma::guest", provider, guest = true, fields = %fields, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "tamma::guest", provider, guest = true, fields = %fields, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "tamma::guest", provider, guest = true, fields = %fields, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "tamma::guest", provider, guest = true, fields = %fields, "{message}")
            }
        }
        Ok(())
    }
}

/// The 0.1.0 `host` import: the same function, with its own `log-level` type.
impl crate::bindings::v0_1::tamma::provider::host::Host for HostState {
    fn log(
        &mut self,
        level: crate::bindings::v0_1::tamma::provider::host::LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        use crate::bindings::v0_1::tamma::provider::host::LogLevel as V01;
        let level = match level {
            V01::Trace => LogLevel::Trace,
            V01::Debug => LogLevel::Debug,
            V01::Info => LogLevel::Info,
            V01::Warn => LogLevel::Warn,
            V01::Error => LogLevel::Error,
        };
        wit_host::Host::log(self, level, message, fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn guest_log_text_cannot_forge_lines_and_fields_are_an_object() {
        let m = sanitize_message("one\ntwo\u{1b}[31m");
        assert!(!m.contains('\n') && !m.contains('\u{1b}'), "{m}");
        assert_eq!(m, "one\\ntwo\\u{1b}[31m");
        assert_eq!(sanitize_message(&"x".repeat(5000)).len(), 4096);
        let f: serde_json::Value = serde_json::from_str(&guest_fields_json(&[
            ("k".into(), "v \"quoted\"\n".into()),
            ("n".into(), "1".into()),
        ]))
        .unwrap();
        assert_eq!(f, serde_json::json!({"k": "v \"quoted\"\n", "n": "1"}));
        assert_eq!(guest_fields_json(&[]), "{}");
    }

    #[test]
    fn log_cap_trips_and_resets_per_call() {
        let limits = Limits {
            max_log_bytes_per_call: 10,
            max_log_records_per_call: 2,
            ..Limits::default()
        };
        let settings = ProviderSettings {
            limits,
            ..ProviderSettings::default()
        };
        let mut s = HostState::new(Arc::from("p"), &settings);
        s.begin_call(Instant::now());
        wit_host::Host::log(&mut s, LogLevel::Info, "12345".into(), vec![]).unwrap();
        assert!(wit_host::Host::log(&mut s, LogLevel::Info, "123456".into(), vec![]).is_err());
        assert!(s.log_limit_hit);
        s.begin_call(Instant::now());
        wit_host::Host::log(&mut s, LogLevel::Info, "1".into(), vec![]).unwrap();
        wit_host::Host::log(&mut s, LogLevel::Info, "2".into(), vec![]).unwrap();
        assert!(wit_host::Host::log(&mut s, LogLevel::Info, "3".into(), vec![]).is_err());
    }
}
