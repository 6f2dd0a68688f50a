//! `GET /metrics`: Prometheus text format (version 0.0.4).
//!
//! Two sources: the gateway's own counters (HTTP requests by endpoint, provider and
//! status, their latency, rejections by the server's limits, fallbacks), kept here;
//! and, read at scrape time, every provider's snapshot (calls, errors by code,
//! latency, fuel, instance pool, circuit, health, state) and egress counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tamma_registry::circuit_breaker::CircuitState;
use tamma_registry::registry::{ProviderState, Registry};
use tamma_registry::stats::LATENCY_BUCKETS;
use tamma_sandbox::types::HealthStatus;

/// Gateway-side counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, String, u16), Histogram>>,
    errors: Mutex<BTreeMap<(String, String), u64>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    fallbacks: Mutex<BTreeMap<String, u64>>,
    pub(crate) in_flight: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) connections_total: AtomicU64,
}

#[derive(Default, Clone)]
struct Histogram {
    count: u64,
    sum: f64,
    buckets: [u64; LATENCY_BUCKETS.len()],
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
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
        let mut m = lock(&self.requests);
        let h = m
            .entry((endpoint, provider.to_string(), status))
            .or_default();
        h.count += 1;
        h.sum += secs;
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i] += 1;
        }
    }

    /// An error answered to a client (before or during a stream), by code.
    pub fn record_error(&self, provider: &str, code: &str) {
        *lock(&self.errors)
            .entry((provider.to_string(), code.to_string()))
            .or_default() += 1;
    }

    /// A request refused by a server limit (`body_too_large`, `concurrency`,
    /// `header_timeout`, `body_timeout`).
    pub fn record_rejected(&self, reason: &'static str) {
        *lock(&self.rejected).entry(reason).or_default() += 1;
    }

    /// A route fell through from one target to the next.
    pub fn record_fallback(&self, route: &str) {
        *lock(&self.fallbacks).entry(route.to_string()).or_default() += 1;
    }

    /// Requests being served now (OpenAI and admin APIs).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests answered so far (all endpoints), for tests and benches.
    pub fn requests_total(&self) -> u64 {
        lock(&self.requests).values().map(|h| h.count).sum()
    }
}

/// Escape a label value.
fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// Process CPU seconds (user + system) and resident memory bytes, from /proc.
pub fn process_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ is 100 on every Linux ABI in use.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let rss_pages: u64 = f.get(21)?.parse().ok()?;
    Some(((utime + stime) / ticks, rss_pages * 4096))
}

/// Render everything.
pub fn render(metrics: &Metrics, registry: &Registry, uptime: Duration) -> String {
    let mut o = String::with_capacity(16 * 1024);

    // --- gateway ---------------------------------------------------------------
    let requests = lock(&metrics.requests).clone();
    head(
        &mut o,
        "tamma_http_requests_total",
        "counter",
        "HTTP requests answered, by endpoint, provider and status.",
    );
    for ((ep, p, s), h) in &requests {
        let _ = writeln!(
            o,
            "tamma_http_requests_total{{endpoint=\"{ep}\",provider=\"{}\",status=\"{s}\"}} {}",
            esc(p),
            h.count
        );
    }
    head(
        &mut o,
        "tamma_http_request_duration_seconds",
        "histogram",
        "Time to answer HTTP requests (streams: until their end), by endpoint, provider and status.",
    );
    for ((ep, p, s), h) in &requests {
        let labels = format!("endpoint=\"{ep}\",provider=\"{}\",status=\"{s}\"", esc(p));
        let mut cum = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cum += h.buckets[i];
            let _ = writeln!(
                o,
                "tamma_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cum}"
            );
        }
        let _ = writeln!(
            o,
            "tamma_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            o,
            "tamma_http_request_duration_seconds_sum{{{labels}}} {}",
            num(h.sum)
        );
        let _ = writeln!(
            o,
            "tamma_http_request_duration_seconds_count{{{labels}}} {}",
            h.count
        );
    }
    head(
        &mut o,
        "tamma_http_errors_total",
        "counter",
        "Errors answered to clients (before or during a stream), by provider and code.",
    );
    for ((p, c), n) in lock(&metrics.errors).iter() {
        let _ = writeln!(
            o,
            "tamma_http_errors_total{{provider=\"{}\",code=\"{}\"}} {n}",
            esc(p),
            esc(c)
        );
    }
    head(
        &mut o,
        "tamma_http_rejected_total",
        "counter",
        "Requests refused by a server limit, by reason.",
    );
    for (r, n) in lock(&metrics.rejected).iter() {
        let _ = writeln!(o, "tamma_http_rejected_total{{reason=\"{r}\"}} {n}");
    }
    head(
        &mut o,
        "tamma_route_fallbacks_total",
        "counter",
        "Times a route fell through from one target to the next.",
    );
    for (r, n) in lock(&metrics.fallbacks).iter() {
        let _ = writeln!(o, "tamma_route_fallbacks_total{{route=\"{}\"}} {n}", esc(r));
    }
    head(
        &mut o,
        "tamma_http_in_flight_requests",
        "gauge",
        "Requests being served now (limited by max_concurrent_requests).",
    );
    let _ = writeln!(
        o,
        "tamma_http_in_flight_requests {}",
        metrics.in_flight.load(Ordering::Relaxed)
    );
    head(
        &mut o,
        "tamma_http_open_connections",
        "gauge",
        "Open client connections.",
    );
    let _ = writeln!(
        o,
        "tamma_http_open_connections {}",
        metrics.connections.load(Ordering::Relaxed)
    );
    head(
        &mut o,
        "tamma_http_connections_total",
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(
        o,
        "tamma_http_connections_total {}",
        metrics.connections_total.load(Ordering::Relaxed)
    );

    // --- providers -------------------------------------------------------------
    let snaps = registry.snapshot();
    let egress = registry.egress_counters();
    type Line = (String, String); // (labels, value)
    let mut fam: BTreeMap<&'static str, (&'static str, &'static str, Vec<Line>)> = BTreeMap::new();
    let mut put =
        |name: &'static str, kind: &'static str, help: &'static str, l: String, v: String| {
            fam.entry(name)
                .or_insert_with(|| (kind, help, Vec::new()))
                .2
                .push((l, v));
        };
    for s in &snaps {
        let p = format!("provider=\"{}\"", esc(&s.name));
        let c = &s.calls;
        put(
            "tamma_provider_calls_total",
            "counter",
            "Provider calls finished.",
            p.clone(),
            c.calls.to_string(),
        );
        put(
            "tamma_provider_call_failures_total",
            "counter",
            "Provider calls that ended in an error.",
            p.clone(),
            c.failures.to_string(),
        );
        for (code, n) in &c.errors {
            put(
                "tamma_provider_errors_total",
                "counter",
                "Provider call errors, by code.",
                format!("{p},code=\"{}\"", esc(code)),
                n.to_string(),
            );
        }
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            put(
                "tamma_provider_call_duration_seconds",
                "histogram",
                "Provider call latency (a stream: from start to end).",
                format!("{p},le=\"{b}\""),
                c.latency_buckets.get(i).copied().unwrap_or(0).to_string(),
            );
        }
        put(
            "tamma_provider_call_duration_seconds",
            "histogram",
            "",
            format!("{p},le=\"+Inf\""),
            c.calls.to_string(),
        );
        put(
            "tamma_provider_call_duration_seconds",
            "histogram",
            "",
            format!("{p},__suffix=\"sum\""),
            num(c.latency_sum_seconds),
        );
        put(
            "tamma_provider_call_duration_seconds",
            "histogram",
            "",
            format!("{p},__suffix=\"count\""),
            c.calls.to_string(),
        );
        for st in [
            ProviderState::Initializing,
            ProviderState::Ready,
            ProviderState::Stopped,
            ProviderState::Error,
            ProviderState::Disposed,
        ] {
            put(
                "tamma_provider_state",
                "gauge",
                "1 for the provider's lifecycle state.",
                format!("{p},state=\"{}\"", st.as_str()),
                u8::from(s.state == st).to_string(),
            );
        }
        for h in [
            HealthStatus::Healthy,
            HealthStatus::Degraded,
            HealthStatus::Unhealthy,
        ] {
            put(
                "tamma_provider_health",
                "gauge",
                "1 for the provider's (debounced) health status.",
                format!("{p},status=\"{}\"", h.as_str()),
                u8::from(s.health == h).to_string(),
            );
        }
        for cs in [
            CircuitState::Closed,
            CircuitState::Open,
            CircuitState::HalfOpen,
        ] {
            put(
                "tamma_provider_circuit_state",
                "gauge",
                "1 for the circuit breaker's state.",
                format!("{p},state=\"{}\"", cs.as_str()),
                u8::from(s.circuit.state == cs).to_string(),
            );
        }
        put(
            "tamma_provider_circuit_opened_total",
            "counter",
            "Times the circuit breaker opened.",
            p.clone(),
            s.circuit.times_opened.to_string(),
        );
        if let Some(pool) = &s.pool {
            let gauges: [(&'static str, &'static str, u64); 3] = [
                (
                    "tamma_provider_pool_in_use",
                    "Instances running a call now.",
                    pool.in_use,
                ),
                (
                    "tamma_provider_pool_waiting",
                    "Calls queued for a free instance now.",
                    pool.waiting,
                ),
                ("tamma_provider_pool_idle", "Idle instances.", pool.idle),
            ];
            for (name, help, v) in gauges {
                put(name, "gauge", help, p.clone(), v.to_string());
            }
            let counters: [(&'static str, &'static str, u64); 5] = [
                (
                    "tamma_provider_fuel_used_total",
                    "Fuel burnt by the current instances' calls.",
                    pool.fuel_used,
                ),
                (
                    "tamma_provider_pool_overloaded_total",
                    "Calls refused with OVERLOADED (no instance free in time).",
                    pool.overloaded,
                ),
                (
                    "tamma_provider_pool_created_total",
                    "Instances created.",
                    pool.created,
                ),
                (
                    "tamma_provider_pool_retired_total",
                    "Instances thrown away after a trap, timeout or limit.",
                    pool.retired,
                ),
                (
                    "tamma_provider_health_checks_total",
                    "Health checks run.",
                    pool.health_checks,
                ),
            ];
            for (name, help, v) in counters {
                put(name, "counter", help, p.clone(), v.to_string());
            }
            put(
                "tamma_provider_max_concurrency",
                "gauge",
                "Instances that may run at once.",
                p.clone(),
                s.limits.max_concurrency.to_string(),
            );
        }
    }
    for (name, c) in &egress {
        let p = format!("provider=\"{}\"", esc(name));
        put(
            "tamma_egress_requests_total",
            "counter",
            "Outbound HTTP requests by outcome.",
            format!("{p},outcome=\"sent\""),
            c.sent.to_string(),
        );
        put(
            "tamma_egress_requests_total",
            "counter",
            "",
            format!("{p},outcome=\"failed\""),
            c.failed.to_string(),
        );
        for (reason, v) in [
            ("not_allowed", c.refused_not_allowed),
            ("address_prohibited", c.refused_address_prohibited),
            ("unknown_secret", c.refused_unknown_secret),
            ("concurrency", c.refused_concurrency),
        ] {
            put(
                "tamma_egress_refusals_total",
                "counter",
                "Outbound HTTP requests refused by the egress policy, by reason.",
                format!("{p},reason=\"{reason}\""),
                v.to_string(),
            );
        }
    }
    for (name, (kind, help, lines)) in &fam {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        // Histograms: buckets of each series, then its sum and count.
        for (labels, v) in lines {
            if let Some(i) = labels.find(",__suffix=\"") {
                let suffix = &labels[i + 11..labels.len() - 1];
                let _ = writeln!(o, "{name}_{suffix}{{{}}} {v}", &labels[..i]);
            } else if *kind == "histogram" {
                let _ = writeln!(o, "{name}_bucket{{{labels}}} {v}");
            } else {
                let _ = writeln!(o, "{name}{{{labels}}} {v}");
            }
        }
    }
    head(&mut o, "tamma_providers", "gauge", "Registered providers.");
    let _ = writeln!(o, "tamma_providers {}", snaps.len());
    head(
        &mut o,
        "tamma_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    let _ = writeln!(o, "tamma_uptime_seconds {}", num(uptime.as_secs_f64()));
    if let Some((cpu, rss)) = process_usage() {
        head(
            &mut o,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, seconds.",
        );
        let _ = writeln!(o, "process_cpu_seconds_total {}", num(cpu));
        head(
            &mut o,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size, bytes.",
        );
        let _ = writeln!(o, "process_resident_memory_bytes {rss}");
    }
    o
}
