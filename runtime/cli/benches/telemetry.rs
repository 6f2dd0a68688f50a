//! The cost of trace export: `tamma serve` → the built-in echo provider, the
//! same load twice in one run, once with traces off (the default: no layer is
//! installed) and once exporting every span (sampler always on) over OTLP/HTTP
//! to the tests' real receiver (tests/otlp/receiver.py, the official
//! `opentelemetry-proto` decoding each batch).
//!
//! The real binary, as an operator runs it; the figure is the server process's
//! CPU time (user + system, from /proc) per request, which is what tracing
//! costs, whatever the machine's other load does to wall time. Goal: on ≤ 1.10 ×
//! off. Printed as `bench: <name> <value> <unit>`; never asserted.

// Benchmarks: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tamma_test_support::client::Conn;

const REQUESTS: usize = 4000;
const CONNECTIONS: usize = 4;

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// User + system CPU seconds of `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // CLK_TCK is 100 on every Linux this runs on.
    ticks / 100.0
}

struct Child2(Child);

impl Drop for Child2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn receiver(out: &std::path::Path) -> (Child2, u16) {
    let venv = root().join("target/py-test-venv/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let mut child = Command::new(python)
        .arg(root().join("tests/otlp/receiver.py"))
        .arg(out)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the OTLP receiver starts (make target/py-test-venv/.installed)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("receiver said {line:?} (is opentelemetry-proto installed?)"));
    (Child2(child), port)
}

fn serve(envs: &[(&str, String)]) -> (Child2, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tamma"));
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") || k.starts_with("TAMMA_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(
            "TAMMA_CACHE_DIR",
            std::env::temp_dir().join("tamma-bench-cache"),
        )
        .env("TAMMA_LOG", "warn")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = Some(rest.trim().parse().unwrap());
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (
        Child2(child),
        addr.expect("tamma serve printed its address"),
    )
}

const BODY: &str = r#"{"model":"echo/echo-1","messages":[{"role":"user","content":"hi"}]}"#;

async fn load(addr: SocketAddr, requests: usize) {
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await.unwrap();
            for _ in 0..requests / CONNECTIONS {
                let r = conn
                    .send(
                        "POST",
                        "/v1/chat/completions",
                        &[
                            ("content-type", "application/json"),
                            (
                                "traceparent",
                                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                            ),
                        ],
                        Some(BODY.as_bytes().to_vec()),
                    )
                    .await
                    .unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// CPU µs and wall µs per request of one server under the load.
async fn measure(envs: &[(&str, String)]) -> (f64, f64) {
    let (child, addr) = serve(envs);
    let deadline = Instant::now() + Duration::from_secs(60);
    while tamma_test_support::client::get(addr, "/readyz")
        .await
        .map(|r| r.status)
        .unwrap_or(0)
        != 200
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Warm-up: instances, connections, the exporter's first batch.
    load(addr, 400).await;
    let pid = child.0.id();
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    load(addr, REQUESTS).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let n = (REQUESTS / CONNECTIONS * CONNECTIONS) as f64;
    (cpu / n * 1e6, wall / n * 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test` runs benches as tests: nothing to do.
    }
    let dir = tempfile::tempdir().unwrap();
    let (_receiver, port) = receiver(&dir.path().join("spans.jsonl"));
    let on = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_TRACES_SAMPLER", "always_on".to_string()),
    ];
    // Alternate, twice each, so a change of the machine's load hits both.
    let mut off_cpu = Vec::new();
    let mut on_cpu = Vec::new();
    let mut off_wall = Vec::new();
    let mut on_wall = Vec::new();
    for _ in 0..2 {
        let (c, w) = measure(&[]).await;
        off_cpu.push(c);
        off_wall.push(w);
        let (c, w) = measure(&on).await;
        on_cpu.push(c);
        on_wall.push(w);
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    print("telemetry_off_cpu_per_request", min(&off_cpu), "us");
    print("telemetry_on_cpu_per_request", min(&on_cpu), "us");
    print(
        "telemetry_on_vs_off_cpu",
        min(&on_cpu) / min(&off_cpu),
        "ratio",
    );
    print("telemetry_off_latency", min(&off_wall), "us");
    print("telemetry_on_latency", min(&on_wall), "us");
    let spans = std::fs::read_to_string(dir.path().join("spans.jsonl"))
        .unwrap_or_default()
        .lines()
        .count();
    print("telemetry_spans_exported", spans as f64, "spans");
}
