//! OpenTelemetry traces for `tamma serve`: OTLP over HTTP/protobuf, configured
//! by the standard `OTEL_*` variables, off unless an endpoint is set.
//!
//! On when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set (and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`
//! says otherwise). The SDK and the exporter read the rest themselves:
//! `OTEL_SERVICE_NAME` (default here: `tamma`), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` / `_ARG` (default: parent-based, always on),
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`.
//! Off, nothing is installed: no layer, no propagator, no thread.
//!
//! What is exported: the request span (kind server, GenAI attributes), a span
//! per routing attempt, per guest call (fuel, instance reused or new) and per
//! egress request (kind client; the upstream receives its `traceparent`), and
//! WARN/ERROR events as span events. Never a prompt, a completion, a header or
//! a secret: the spans carry names, sizes, codes and counts only.
//!
//! The HTTP client is a small hyper one (below) rather than the exporter's
//! default reqwest: hyper is already in the binary, and the SDK's batch thread
//! runs its export futures on an executor of its own, so each request is
//! handed to the server's tokio runtime and awaited there.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::Layer as _;

use crate::logging::BoxedLayer;

/// The exporter, kept so that [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Export what is still buffered, then stop the batch thread. Call it with
    /// the tokio runtime still running (the exports run on it).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: trace export did not shut down cleanly: {e}");
        }
    }
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// Whether the environment asks for trace export.
pub fn wanted() -> bool {
    (env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        && !env_is("OTEL_SDK_DISABLED", "true")
        && !env_is("OTEL_TRACES_EXPORTER", "none")
}

/// The protocol the environment asks for; only `http/protobuf` is built in.
fn check_protocol() -> Result<(), String> {
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(p) = std::env::var(var) {
            let p = p.trim();
            if !p.is_empty() && p != "http/protobuf" {
                return Err(format!(
                    "{var}={p:?}: this build exports OTLP over http/protobuf only"
                ));
            }
            return Ok(());
        }
    }
    Ok(())
}

/// The endpoint must be plain HTTP (a local collector or agent): TLS towards a
/// remote collector is the collector's job here, and saying so beats a silent
/// failure on every export.
fn check_endpoint() -> Result<(), String> {
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        if let Ok(e) = std::env::var(var) {
            let e = e.trim();
            if e.is_empty() {
                continue;
            }
            if !e.starts_with("http://") {
                return Err(format!(
                    "{var}={e:?}: the OTLP endpoint must be an http:// URL (run a collector beside tamma for TLS)"
                ));
            }
            return Ok(());
        }
    }
    Ok(())
}

/// Set up trace export from the environment. `Ok(None)` when it is off. Must
/// run inside the tokio runtime the exports will use.
pub fn from_env() -> Result<Option<(Telemetry, BoxedLayer)>, String> {
    if !wanted() {
        return Ok(None);
    }
    check_protocol()?;
    check_endpoint()?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "trace export needs the async runtime".to_string())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(TokioHyperClient::new(runtime))
        .build()
        .map_err(|e| format!("cannot set up the OTLP exporter: {e}"))?;
    let mut resource = Resource::builder();
    if !env_set("OTEL_SERVICE_NAME")
        && !std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="))
    {
        resource = resource.with_service_name("tamma");
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("tamma");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_tracked_inactivity(false)
        // Spans of our own crates at DEBUG and above (request, routing attempt,
        // guest call, egress); of events only warnings and errors, as span events.
        .with_filter(filter_fn(|meta| {
            if meta.is_span() {
                *meta.level() <= Level::DEBUG && meta.target().starts_with("tamma")
            } else {
                *meta.level() <= Level::WARN
            }
        }))
        .boxed();
    Ok(Some((Telemetry { provider }, layer)))
}

/// The trace and span ids of a span, when it is exported (for the JSON log).
pub fn ids(ext: &tracing_subscriber::registry::Extensions<'_>) -> Option<(String, String)> {
    let data = ext.get::<tracing_opentelemetry::OtelData>()?;
    let trace_id = data.trace_id()?;
    let span_id = data.span_id()?;
    Some((trace_id.to_string(), span_id.to_string()))
}

/// An OTLP HTTP client on hyper, run on the server's tokio runtime.
struct TokioHyperClient {
    runtime: tokio::runtime::Handle,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl TokioHyperClient {
    fn new(runtime: tokio::runtime::Handle) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        TokioHyperClient { runtime, client }
    }
}

impl fmt::Debug for TokioHyperClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokioHyperClient")
    }
}

/// Upper bound of one export, whatever OTEL_EXPORTER_OTLP_TIMEOUT says: the
/// batch thread waits for it.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpClient for TokioHyperClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let request = request.map(Full::new);
            let response = tokio::time::timeout(EXPORT_TIMEOUT, client.request(request))
                .await
                .map_err(|_| HttpError::from("OTLP export timed out"))?
                .map_err(|e| HttpError::from(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = tokio::time::timeout(EXPORT_TIMEOUT, body.collect())
                .await
                .map_err(|_| HttpError::from("OTLP export timed out"))?
                .map_err(|e| HttpError::from(e.to_string()))?
                .to_bytes();
            if !parts.status.is_success() {
                return Err(HttpError::from(format!(
                    "the OTLP endpoint answered {}",
                    parts.status
                )));
            }
            Ok(Response::from_parts(parts, body))
        });
        Box::pin(async move {
            task.await
                .map_err(|e| HttpError::from(format!("OTLP export task failed: {e}")))?
        })
    }
}
