//! `GET /metrics`: Prometheus text format (version 0.0.4).
//!
//! Built on prometheus-client, with one [`Registry`] per server (not a global:
//! tests and embedders run several servers in one process). Two sources:
//! the gateway's own families (HTTP requests by endpoint, provider and status,
//! their latency, rejections by the server's limits, fallbacks, connections),
//! updated as requests are answered; and collectors that read, at scrape time,
//! every provider's snapshot and egress counters ([`providers`]), the uptime
//! ([`uptime`]) and, on Linux, the process ([`process`]).
//!
//! prometheus-client writes OpenMetrics; [`text_format`] turns that into the
//! 0.0.4 text this endpoint has always served.

pub mod genai;
pub mod keys;
pub mod labels;
#[cfg(target_os = "linux")]
pub mod process;
pub mod providers;
pub mod routes;
pub mod text_format;
pub mod uptime;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use tamma_registry::registry::Registry as ProviderRegistry;
use tamma_registry::stats::LATENCY_BUCKETS;
use tamma_sandbox::engine::WASMTIME_VERSION;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The server's metrics: its own families and the collectors, in one registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<labels::Request, Counter>,
    durations: Family<labels::Request, Histogram, fn() -> Histogram>,
    errors: Family<labels::ApiError, Counter>,
    rejected: Family<labels::Rejection, Counter>,
    fallbacks: Family<labels::Route, Counter>,
    in_flight: Gauge,
    connections: Gauge,
    connections_total: Counter,
    /// Route attempts and retries.
    pub routes: routes::RouteMetrics,
    genai: genai::GenAiMetrics,
    /// Requests answered, all endpoints: a family cannot be summed.
    answered: AtomicU64,
    /// Usage per client key (`keys.rs`).
    pub keys: keys::KeyMetrics,
}

impl Metrics {
    /// Metrics for a server that serves `providers` and started at `started`.
    pub fn new(providers: ProviderRegistry, started: Instant) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<labels::Request, Counter>::default();
        registry.register(
            "tamma_http_requests",
            "HTTP requests answered, by endpoint, provider and status",
            requests.clone(),
        );
        let durations: Family<labels::Request, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "tamma_http_request_duration_seconds",
            "Time to answer HTTP requests (streams: until their end), by endpoint, provider and status",
            durations.clone(),
        );
        let errors = Family::<labels::ApiError, Counter>::default();
        registry.register(
            "tamma_http_errors",
            "Errors answered to clients (before or during a stream), by provider and code",
            errors.clone(),
        );
        let rejected = Family::<labels::Rejection, Counter>::default();
        registry.register(
            "tamma_http_rejected",
            "Requests refused by a server limit, by reason",
            rejected.clone(),
        );
        let fallbacks = Family::<labels::Route, Counter>::default();
        registry.register(
            "tamma_route_fallbacks",
            "Times a route fell through from one target to the next",
            fallbacks.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "tamma_http_in_flight_requests",
            "Requests being served now (limited by max_concurrent_requests)",
            in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "tamma_http_open_connections",
            "Open client connections",
            connections.clone(),
        );
        let connections_total = Counter::default();
        registry.register(
            "tamma_http_connections",
            "Client connections accepted",
            connections_total.clone(),
        );
        let routes = routes::RouteMetrics::register(&mut registry);
        let build = Family::<labels::BuildInfo, Gauge>::default();
        build
            .get_or_create(&labels::BuildInfo {
                version: env!("CARGO_PKG_VERSION"),
                wasmtime: WASMTIME_VERSION,
            })
            .set(1);
        registry.register(
            "tamma_build_info",
            "1, labelled with the tamma version and the wasmtime version it runs on",
            build,
        );
        let keys = keys::KeyMetrics::register(&mut registry);
        let genai = genai::GenAiMetrics::register(&mut registry);
        registry.register_collector(Box::new(providers::ProviderCollector::new(providers)));
        registry.register_collector(Box::new(uptime::UptimeCollector::new(started)));
        #[cfg(target_os = "linux")]
        registry.register_collector(Box::new(process::ProcessCollector));
        Metrics {
            registry,
            requests,
            durations,
            errors,
            rejected,
            fallbacks,
            in_flight,
            connections,
            connections_total,
            routes,
            genai,
            answered: AtomicU64::new(0),
            keys,
        }
    }

    /// One answered request of `endpoint` (e.g. `chat_completions`), served by
    /// `provider` (empty when none was chosen), with its status and latency.
    pub fn record_request(&self, endpoint: &'static str, provider: &str, status: u16, d: Duration) {
        let secs = d.as_secs_f64();
        tracing::debug!(
            target: "tamma::access",
            endpoint,
            provider,
            status,
            latency_ms = secs * 1e3,
            "request answered"
        );
        let labels = labels::Request {
            endpoint,
            provider: provider.into(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(secs);
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// A stream's first chunk arrived `d` after its request; `model` is already
    /// bounded ([`genai::model_label`]).
    pub fn record_time_to_first_token(&self, provider: &str, model: &str, d: Duration) {
        self.genai.record_time_to_first_token(provider, model, d);
    }

    /// An error answered to a client (before or during a stream), by code.
    pub fn record_error(&self, provider: &str, code: &str) {
        self.errors
            .get_or_create(&labels::ApiError {
                provider: provider.into(),
                code: code.into(),
            })
            .inc();
    }

    /// A request refused by a server limit (`body_too_large`, `concurrency`,
    /// `header_timeout`, `body_timeout`).
    pub fn record_rejected(&self, reason: &'static str) {
        self.rejected
            .get_or_create(&labels::Rejection { reason })
            .inc();
    }

    /// A route fell through from one target to the next.
    pub fn record_fallback(&self, route: &str) {
        self.fallbacks
            .get_or_create(&labels::Route {
                route: route.into(),
            })
            .inc();
    }

    /// A request of the OpenAI or admin API started being served.
    pub(crate) fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A request counted by [`Metrics::request_started`] is done (its response
    /// body included).
    pub(crate) fn request_finished(&self) {
        self.in_flight.dec();
    }

    /// A client connection was accepted.
    pub(crate) fn connection_opened(&self) {
        self.connections.inc();
        self.connections_total.inc();
    }

    /// A client connection closed.
    pub(crate) fn connection_closed(&self) {
        self.connections.dec();
    }

    /// Requests being served now (OpenAI and admin APIs).
    pub fn in_flight(&self) -> u64 {
        u64::try_from(self.in_flight.get()).unwrap_or(0)
    }

    /// Requests answered so far (all endpoints), for tests and benches.
    pub fn requests_total(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Everything, as Prometheus text 0.0.4.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut open_metrics = String::with_capacity(16 * 1024);
        encode_registry(&mut open_metrics, &self.registry)?;
        Ok(text_format::to_text_0_0_4(&open_metrics))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wasmtime_version_matches_the_lock_file() {
        let lock = include_str!("../../../../Cargo.lock");
        let pinned = lock
            .split("[[package]]")
            .find(|p| p.contains("\nname = \"wasmtime\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .expect("wasmtime in Cargo.lock");
        assert_eq!(pinned, super::WASMTIME_VERSION);
    }
}
