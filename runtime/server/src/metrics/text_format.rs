//! prometheus-client writes OpenMetrics text; `/metrics` has always answered the
//! Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), which scrapers,
//! `promtool check metrics` and our dashboards read. The two differ in three
//! places only, and this pass rewrites exactly those:
//!
//! - a counter's `# HELP`/`# TYPE` name: OpenMetrics names the family
//!   (`foo`, samples `foo_total`), 0.0.4 names the sample (`foo_total`);
//! - a histogram bucket's `le`: prometheus-client writes it first and as the
//!   canonical float (`10.0`); our series have always had it last and in the
//!   shortest form (`10`), as the Go client writes them (a different `le`
//!   string is a different series to Prometheus 2, and tests and dashboards
//!   name the series);
//! - `# UNIT` and `# EOF` lines exist only in OpenMetrics.
//!
//! Kept by hand: prometheus-client has no 0.0.4 encoder, and the `prometheus`
//! crate that has one would mean a second, global-registry metrics library.
//! Only the counter, gauge and histogram types are used here; the rewrite relies
//! on prometheus-client writing `# HELP` right before `# TYPE`, and `le` as a
//! bucket's first label.

/// Rewrite prometheus-client's OpenMetrics text (without `# EOF`) as text 0.0.4.
pub fn to_text_0_0_4(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len() + 512);
    let mut help: Option<&str> = None;
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.rsplit_once(' ').unwrap_or((rest, "untyped"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", kind),
                "unknown" => ("", "untyped"),
                other => ("", other),
            };
            if let Some(h) = help.take() {
                let text = h
                    .strip_prefix(name)
                    .and_then(|t| t.strip_prefix(' '))
                    .unwrap_or("");
                push_line(&mut out, &["# HELP ", name, suffix, " ", text]);
            }
            push_line(&mut out, &["# TYPE ", name, suffix, " ", kind]);
            continue;
        }
        if line.starts_with('#') {
            // `# UNIT`, `# EOF`: OpenMetrics only.
            continue;
        }
        match bucket_with_le_last(line) {
            Some(bucket) => push_line(&mut out, &[&bucket]),
            None => push_line(&mut out, &[line]),
        }
    }
    out
}

fn push_line(out: &mut String, parts: &[&str]) {
    for p in parts {
        out.push_str(p);
    }
    out.push('\n');
}

/// A `_bucket` sample with its `le` moved last and written in its shortest
/// form (`{le="10.0",p="e"} 2` → `{p="e",le="10"} 2`); `None` when the line is
/// not a bucket. prometheus-client writes `le` first (we use no constant
/// labels), so its place is known and a label value cannot be mistaken for it.
fn bucket_with_le_last(line: &str) -> Option<String> {
    let open = line.find('{')?;
    let (name, rest) = line.split_at(open);
    if !name.ends_with("_bucket") {
        return None;
    }
    let rest = rest.strip_prefix("{le=\"")?;
    let quote = rest.find('"')?;
    let (le, rest) = (&rest[..quote], &rest[quote + 1..]);
    let le = match le.parse::<f64>() {
        // Rust's `Display` for f64 is the shortest form that reads back the same.
        Ok(v) if v.is_finite() => format!("{v}"),
        _ => le.to_string(),
    };
    let (others, value) = match rest.strip_prefix(',') {
        Some(r) => {
            let close = r.rfind('}')?;
            (&r[..close], &r[close + 1..])
        }
        None => ("", rest.strip_prefix('}')?),
    };
    let sep = if others.is_empty() { "" } else { "," };
    Some(format!("{name}{{{others}{sep}le=\"{le}\"}}{value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_counters_buckets_and_drops_openmetrics_lines() {
        let om = "# HELP a_requests Requests.\n\
                  # TYPE a_requests counter\n\
                  a_requests_total{x=\"le=\\\"1.0\"} 3\n\
                  # HELP a_seconds Latency.\n\
                  # TYPE a_seconds histogram\n\
                  # UNIT a_seconds seconds\n\
                  a_seconds_sum{p=\"e\"} 0.5\n\
                  a_seconds_count{p=\"e\"} 2\n\
                  a_seconds_bucket{le=\"0.0005\",p=\"e\"} 1\n\
                  a_seconds_bucket{le=\"10.0\",p=\"e,le=\\\"1.0\"} 2\n\
                  a_seconds_bucket{le=\"+Inf\",p=\"e\"} 2\n\
                  b_bucket{le=\"1.0\"} 0\n\
                  # HELP g A gauge.\n\
                  # TYPE g gauge\n\
                  g 1.0\n\
                  # EOF\n";
        let expected = "# HELP a_requests_total Requests.\n\
                        # TYPE a_requests_total counter\n\
                        a_requests_total{x=\"le=\\\"1.0\"} 3\n\
                        # HELP a_seconds Latency.\n\
                        # TYPE a_seconds histogram\n\
                        a_seconds_sum{p=\"e\"} 0.5\n\
                        a_seconds_count{p=\"e\"} 2\n\
                        a_seconds_bucket{p=\"e\",le=\"0.0005\"} 1\n\
                        a_seconds_bucket{p=\"e,le=\\\"1.0\",le=\"10\"} 2\n\
                        a_seconds_bucket{p=\"e\",le=\"+Inf\"} 2\n\
                        b_bucket{le=\"1\"} 0\n\
                        # HELP g A gauge.\n\
                        # TYPE g gauge\n\
                        g 1.0\n";
        assert_eq!(to_text_0_0_4(om), expected);
    }
}
