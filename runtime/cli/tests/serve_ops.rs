//! `tamma serve` as an operator runs it: JSON log lines a machine reads, the
//! serve flags from the environment, `/metrics` and the alert rules through
//! `promtool`, and traces exported to a real OTLP receiver (the official
//! `opentelemetry-proto` package decoding what the exporter sent), with the
//! caller's `traceparent` continued up to the upstream.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tamma_mock_upstream::MockUpstream;
use tamma_test_support::client;

mod support;
use support::{chat, guest, root, Served};

/// promtool from Debian's `prometheus` package (`make test` installs it).
fn promtool() -> &'static str {
    let ok = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "promtool is missing: `apt-get install prometheus` (make test does it)"
    );
    "promtool"
}

/// Every string inside `v` (recursively), with its path.
fn strings<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((path, s)),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                strings(x, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                strings(x, format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// A value that is a Rust `Debug` rendering of a list or a struct rather than
/// JSON: `["a", "b"]` or `Name { field: … }` inside a string.
fn looks_like_debug(s: &str) -> bool {
    let t = s.trim_start();
    t.starts_with('[')
        || t.starts_with('{')
        || s.contains(" { ")
        || (s.len() >= 2 && s.starts_with('"') && s.ends_with('"'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_env_fallbacks_metrics_and_rules_are_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tamma.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[providers.echo]
component = "echo"

[providers.slow]
component = "{}"

[providers.broken]
component = "does-not-exist.wasm"

[discovery]
environment = false

[server.routes.main]
targets = ["slow/test-1", "echo/echo-1"]
"#,
            guest("test_provider").display()
        ),
    )
    .unwrap();
    // Config, address (a name) and format from the environment alone.
    let mut s = Served::start(
        &[],
        &[
            ("TAMMA_CONFIG", file.to_str().unwrap()),
            ("TAMMA_LISTEN", "localhost:0"),
            ("TAMMA_LOG_FORMAT", "json"),
        ],
    );
    assert!(s.addr.ip().is_loopback(), "{}", s.addr);
    s.wait_ready().await;
    let a = s.addr;
    let r = client::post_json(a, "/v1/chat/completions", &chat("echo/echo-1", "hi"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // A guest log line (the test provider logs when asked to change its health).
    let mut body = chat("slow/test-1", "hi");
    body["metadata"] = json!({"set_health": "healthy"});
    let r = client::post_json(a, "/v1/chat/completions", &body)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // A stream, through a route (time to first token, with the model label).
    let mut body = chat("main", "streamed");
    body["stream"] = json!(true);
    let r = client::post_json(a, "/v1/chat/completions", &body)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // A model nobody configured: counted, never a new series.
    let r = client::post_json(a, "/v1/chat/completions", &chat("echo/made-up", "x"))
        .await
        .unwrap();
    assert!(r.status < 500, "{}", r.text());
    assert_eq!(
        client::post_json(a, "/v1/chat/completions", &chat("nobody/x", "x"))
            .await
            .unwrap()
            .status,
        404
    );

    // /metrics after traffic passes promtool, and has the families operators chart.
    let metrics = client::get(a, "/metrics").await.unwrap().text();
    let path = dir.path().join("metrics.txt");
    std::fs::write(&path, &metrics).unwrap();
    let out = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "tamma_build_info{",
        "process_start_time_seconds ",
        r#"tamma_time_to_first_token_seconds_count{provider="slow",model="test-1"} 1"#,
        r#"le="600""#,
    ] {
        assert!(metrics.contains(needle), "{needle} not in:\n{metrics}");
    }
    assert!(
        !metrics.contains("made-up"),
        "unconfigured model in /metrics"
    );

    // The alert rules pass promtool, and the rules and the dashboard chart
    // only metrics that exist (tamma_tokens_total comes with client API keys).
    let rules = root().join("deploy/prometheus/alerts.yaml");
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // What is served: the families in /metrics now, and those the server
    // defines that have no series yet (a rejection counter before any rejection).
    let base = |n: &str| {
        ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|s| n.strip_suffix(s))
            .unwrap_or(n)
            .to_string()
    };
    let mut served: BTreeSet<String> = metric_names(&metrics).iter().map(|n| base(n)).collect();
    for f in std::fs::read_dir(root().join("runtime/server/src/metrics")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        served.extend(metric_names(&text).iter().map(|n| base(n)));
    }
    let dashboard =
        std::fs::read_to_string(root().join("deploy/grafana/tamma-dashboard.json")).unwrap();
    let dashboard_json: Value = serde_json::from_str(&dashboard).unwrap();
    assert!(dashboard_json["panels"].as_array().unwrap().len() >= 8);
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    for text in [&dashboard, &rules_text] {
        for name in metric_names(text) {
            assert!(
                served.contains(&base(&name)) || name == "tamma_tokens_total",
                "{name} is charted but not served"
            );
        }
    }

    assert_eq!(s.stop(), 0);
    let lines = s.stderr();
    assert!(lines.len() >= 5, "{lines:?}");
    let mut parsed = Vec::new();
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(
            v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{l}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{l}");
        assert!(v["level"].is_string(), "{l}");
        let mut all = Vec::new();
        strings(&v, String::new(), &mut all);
        for (at, text) in all {
            if at == ".message" {
                continue;
            }
            assert!(!looks_like_debug(text), "{at} is a Debug string: {l}");
        }
        parsed.push(v);
    }
    let find = |message: &str| parsed.iter().find(|v| v["message"] == message);
    assert!(find("listening").is_some(), "{lines:?}");
    let ready = find("ready").unwrap_or_else(|| panic!("{lines:?}"));
    assert!(ready["providers"].is_array(), "{ready}");
    let guest_line = parsed
        .iter()
        .find(|v| v["guest"] == true)
        .unwrap_or_else(|| panic!("no guest line: {lines:?}"));
    assert_eq!(guest_line["provider"], "slow", "{guest_line}");
    assert_eq!(
        guest_line["message"], "health set to healthy",
        "{guest_line}"
    );
    assert!(guest_line["fields"].is_object(), "{guest_line}");
    assert_eq!(guest_line["level"], "INFO", "{guest_line}");
    // The broken entry is reported once, not once per layer.
    let broken = lines
        .iter()
        .filter(|l| l.contains("does-not-exist"))
        .count();
    assert_eq!(broken, 1, "{lines:?}");
}

/// `tamma_…` metric names in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("tamma_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let before = start.checked_sub(1).map(|j| b[j]);
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    // The dashboard's uid, not a metric.
    out.remove("tamma_gateway");
    out
}

/// The test venv's Python, with `opentelemetry-proto` (`make test` installs it).
fn python_with_otlp() -> PathBuf {
    let venv = root().join("target/py-test-venv/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let ok = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "opentelemetry-proto is missing: run `make target/py-test-venv/.installed`"
    );
    python
}

struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> Receiver {
        let out = dir.join("spans.jsonl");
        let mut child = Command::new(python_with_otlp())
            .arg(root().join("tests/otlp/receiver.py"))
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("receiver said {line:?}"));
        Receiver { child, port, out }
    }

    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Wait until `done` holds for the spans received so far.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "{what}: {spans:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const KEY: &str = "sk-otel-test-upstream-31f9";
const SERVER: i64 = 2;
const CLIENT: i64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_continue_the_callers_traceparent_up_to_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path());
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let file = dir.path().join("tamma.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[providers.openai]
component = "openai"
allowed_hosts = ["{url}"]
config = {{ base_url = "{base}", models = "gpt-mock" }}
secrets = {{ api_key = {{ env = "TAMMA_TEST_UPSTREAM_KEY" }} }}

[discovery]
environment = false
"#,
            url = mock.url(),
            base = mock.base_url(),
        ),
    )
    .unwrap();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let mut s = Served::start(
        &[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        &[
            ("TAMMA_TEST_UPSTREAM_KEY", KEY),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "tamma-under-test"),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            // Export quickly rather than every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    s.wait_ready().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let r = client::request(
        s.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("traceparent", &traceparent),
        ],
        Some(
            chat("openai/gpt-mock", "a secret prompt 7f3a")
                .to_string()
                .into_bytes(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let usage = r.json()["usage"].clone();

    // The upstream got the trace, with the egress span as its parent.
    let upstream = mock.last_request().unwrap();
    let sent = upstream
        .header("traceparent")
        .unwrap_or_else(|| panic!("no traceparent upstream"))
        .to_string();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(parts[1], trace_id, "{sent}");
    assert_ne!(
        parts[2], caller_span,
        "the upstream's parent is tamma's span"
    );
    let egress_id = parts[2].to_string();

    let spans = receiver
        .wait_for("the request, call and egress spans", |spans| {
            let ours: Vec<&Value> = spans.iter().filter(|s| s["trace_id"] == trace_id).collect();
            ours.iter().any(|s| s["kind"] == SERVER)
                && ours.iter().any(|s| s["span_id"] == egress_id.as_str())
                && ours.iter().any(|s| s["name"] == "provider_call")
        })
        .await;
    let ours: Vec<&Value> = spans.iter().filter(|s| s["trace_id"] == trace_id).collect();
    let by_id: BTreeMap<&str, &Value> = ours
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), *s))
        .collect();
    let request = ours.iter().find(|s| s["kind"] == SERVER).unwrap();
    assert_eq!(request["parent_span_id"], caller_span, "{request}");
    assert_eq!(request["service"], "tamma-under-test", "{request}");
    assert_eq!(request["name"], "chat openai/gpt-mock", "{request}");
    let attrs = &request["attributes"];
    assert_eq!(attrs["gen_ai.operation.name"], "chat", "{request}");
    assert_eq!(attrs["gen_ai.system"], "openai", "{request}");
    assert_eq!(
        attrs["gen_ai.request.model"], "openai/gpt-mock",
        "{request}"
    );
    assert_eq!(
        attrs["gen_ai.usage.input_tokens"], usage["prompt_tokens"],
        "{request}"
    );
    assert_eq!(
        attrs["gen_ai.usage.output_tokens"], usage["completion_tokens"],
        "{request}"
    );
    assert_eq!(
        attrs["gen_ai.response.finish_reasons"],
        json!(["stop"]),
        "{request}"
    );

    // The egress span: a client span under the guest call, under the request.
    let egress = by_id[egress_id.as_str()];
    assert_eq!(egress["kind"], CLIENT, "{egress}");
    assert_eq!(
        egress["attributes"]["http.request.method"], "POST",
        "{egress}"
    );
    assert_eq!(
        egress["attributes"]["http.response.status_code"], 200,
        "{egress}"
    );
    assert_eq!(
        egress["attributes"]["server.address"], "127.0.0.1",
        "{egress}"
    );
    let call = by_id[egress["parent_span_id"].as_str().unwrap()];
    assert_eq!(call["name"], "provider_call", "{call}");
    assert!(
        call["attributes"]["fuel_used"].as_i64().unwrap() > 0,
        "{call}"
    );
    assert!(
        ["new", "reused"].contains(&call["attributes"]["instance"].as_str().unwrap()),
        "{call}"
    );
    // The call hangs under the request (through the routing attempt).
    let mut up = call;
    let mut hops = 0;
    while up["kind"] != SERVER {
        up = by_id[up["parent_span_id"].as_str().unwrap()];
        hops += 1;
        assert!(hops < 5, "{ours:#?}");
    }
    assert!(
        ours.iter().any(|s| s["name"] == "route_attempt"),
        "{ours:#?}"
    );
    // Exactly one egress span per upstream request.
    let egress_spans = ours.iter().filter(|s| s["kind"] == CLIENT).count();
    let traced_upstream = mock
        .requests()
        .iter()
        .filter(|r| {
            r.header("traceparent")
                .is_some_and(|t| t.contains(trace_id))
        })
        .count();
    assert_eq!(egress_spans, traced_upstream, "{ours:#?}");

    // No prompt, completion or key in any exported span.
    let everything = std::fs::read_to_string(&receiver.out).unwrap();
    for secret in [KEY, "a secret prompt 7f3a"] {
        assert!(!everything.contains(secret), "{secret} was exported");
    }

    // The log lines of the request carry its trace id.
    assert_eq!(s.stop(), 0);
    let lines = s.stderr();
    for l in &lines {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

#[test]
fn a_grpc_protocol_or_https_endpoint_is_refused_at_start() {
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector.example:4318",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tamma"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{err}");
    }
}
