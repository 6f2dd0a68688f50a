//! `tamma_uptime_seconds`, computed at scrape time from the server's start.

use std::fmt;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Encodes the seconds since `started`.
#[derive(Debug)]
pub struct UptimeCollector {
    started: Instant,
}

impl UptimeCollector {
    /// Uptime counted from `started`.
    pub fn new(started: Instant) -> Self {
        UptimeCollector { started }
    }
}

impl Collector for UptimeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        ConstGauge::new(self.started.elapsed().as_secs_f64()).encode(enc.encode_descriptor(
            "tamma_uptime_seconds",
            "Seconds since the server started.",
            None,
            MetricType::Gauge,
        )?)
    }
}
