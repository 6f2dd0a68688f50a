//! Gateway benchmark (`make bench`): what `tamma serve` adds over calling the
//! upstream directly, and what the echo provider costs with no upstream at all.
//!
//! The gateway runs in a process of its own (this bench binary, re-executed in
//! server mode), so its CPU time and memory are measured apart from the load
//! generator and the mock upstream, which run here. The load generator is a
//! closed loop: N keep-alive connections, each sending its next request when the
//! previous answer has arrived, for a fixed time. For each of concurrency 1, 8 and
//! 64 it prints p50/p99 latency, requests/s, the gateway's CPU time per request and
//! its resident memory, for three targets:
//!
//! - `direct`: the mock upstream itself (`POST /v1/chat/completions`);
//! - `openai`: the gateway → the `openai` guest in the sandbox → egress → the mock;
//! - `echo`: the gateway → the `echo` guest (no upstream).
//!
//! and the gateway's added latency (`openai` minus `direct`). Printed as
//! `bench: <name> <value> <unit>`; never asserted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tamma_e2e::{guest, sandbox};
use tamma_mock_upstream::MockUpstream;
use tamma_registry::{
    ComponentSource, Limits, ProviderSettings, Registration, Registry, RegistryConfig,
};
use tamma_sandbox::egress::{EgressLimits, EgressPolicy};
use tamma_server::config::ServerLimits;
use tamma_server::{ServeOptions, Server, ServerConfig};
use tamma_test_support::client::Conn;

const SERVER_ENV: &str = "TAMMA_GATEWAY_BENCH_UPSTREAM";
const RUN: Duration = Duration::from_millis(2_500);
const WARMUP: Duration = Duration::from_millis(400);

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

// --- server mode ----------------------------------------------------------------

fn server_main(upstream: String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let registry = Registry::new(sandbox(), RegistryConfig::default()).unwrap();
        let limits = Limits {
            max_concurrency: 64,
            ..Limits::default()
        };
        registry
            .register(
                "echo",
                Registration::new(ComponentSource::File(guest("echo")))
                    .with_settings(ProviderSettings::new(vec![], limits.clone())),
            )
            .await
            .unwrap();
        let egress = EgressPolicy::try_new(
            vec![upstream.clone()],
            BTreeMap::from([("api_key".to_string(), "sk-bench".to_string())]),
            EgressLimits {
                max_concurrent_requests: 128,
                ..EgressLimits::default()
            },
        )
        .unwrap();
        registry
            .register(
                "openai",
                Registration::new(ComponentSource::File(guest("openai"))).with_settings(
                    ProviderSettings {
                        config: vec![
                            ("base_url".into(), format!("{upstream}/v1")),
                            ("models".into(), "gpt-mock".into()),
                        ],
                        limits,
                        egress,
                    },
                ),
            )
            .await
            .unwrap();
        let config = ServerConfig {
            limits: ServerLimits {
                max_concurrent_requests: 1024,
                ..ServerLimits::default()
            },
            ..ServerConfig::default()
        };
        let server = Server::bind(
            registry,
            config,
            Some("127.0.0.1:0".parse().unwrap()),
            ServeOptions {
                discovery_finished: true,
                ..ServeOptions::default()
            },
        )
        .await
        .unwrap();
        println!("ADDR {}", server.local_addr());
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes our stdin.
        server
            .run(async {
                let _ = tokio::task::spawn_blocking(|| {
                    let mut s = String::new();
                    while std::io::stdin()
                        .read_line(&mut s)
                        .map(|n| n > 0)
                        .unwrap_or(false)
                    {}
                })
                .await;
            })
            .await;
    });
}

// --- the load generator ---------------------------------------------------------

struct Cell {
    latencies_us: Vec<f64>,
    errors: u64,
    elapsed: Duration,
}

async fn load(addr: SocketAddr, body: Arc<Vec<u8>>, concurrency: usize) -> Cell {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (stop, measuring, body) = (stop.clone(), measuring.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await.expect("connect");
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = match conn
                    .send("POST", "/v1/chat/completions", &[], Some(body.to_vec()))
                    .await
                {
                    Ok(r) => r.status == 200,
                    Err(_) => {
                        conn = Conn::connect(addr).await.expect("reconnect");
                        false
                    }
                };
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                    } else {
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(WARMUP).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(RUN).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut cell = Cell {
        latencies_us: Vec::new(),
        errors: 0,
        elapsed,
    };
    for t in tasks {
        let (l, e) = t.await.unwrap();
        cell.latencies_us.extend(l);
        cell.errors += e;
    }
    cell.latencies_us.sort_by(|a, b| a.partial_cmp(b).unwrap());
    cell
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// (CPU seconds, resident bytes, peak resident bytes) of a process.
fn proc_usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let cpu = stat
        .rfind(')')
        .map(|i| {
            let f: Vec<&str> = stat[i + 2..].split_whitespace().collect();
            let u: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let s: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            (u + s) / 100.0
        })
        .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (cpu, kb("VmRSS:"), kb("VmHWM:"))
}

fn main() {
    if let Ok(upstream) = std::env::var(SERVER_ENV) {
        server_main(upstream);
        return;
    }
    // `cargo bench` passes `--bench`; a filter argument that is not ours skips us.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"gateway".contains(a.as_str()))
    {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mock = MockUpstream::start().await;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(SERVER_ENV, mock.url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gateway process starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let gateway: SocketAddr = line
            .trim()
            .strip_prefix("ADDR ")
            .expect("the gateway prints its address")
            .parse()
            .unwrap();
        let pid = child.id();
        let (_, rss_idle, _) = proc_usage(pid);
        print("gateway_rss_idle", rss_idle as f64 / 1048576.0, "MiB");

        let ask = |model: &str| {
            Arc::new(
                serde_json::json!({
                    "model": model,
                    "messages": [{"role": "user", "content": "how much does the gateway add to this request"}],
                    "max_tokens": 32,
                })
                .to_string()
                .into_bytes(),
            )
        };
        let mut p50s: BTreeMap<(String, usize), (f64, f64)> = BTreeMap::new();
        for c in [1usize, 8, 64] {
            for (target, addr, body) in [
                ("direct", mock.addr(), ask("gpt-mock")),
                ("openai", gateway, ask("openai/gpt-mock")),
                ("echo", gateway, ask("echo/echo-1")),
            ] {
                let (cpu0, _, _) = proc_usage(pid);
                let cell = load(addr, body, c).await;
                let (cpu1, rss, peak) = proc_usage(pid);
                let n = cell.latencies_us.len() as f64;
                let name = format!("gateway_{target}_c{c}");
                let p50 = pct(&cell.latencies_us, 0.50);
                let p99 = pct(&cell.latencies_us, 0.99);
                print(&format!("{name}_p50"), p50, "us");
                print(&format!("{name}_p99"), p99, "us");
                print(&format!("{name}_rps"), n / cell.elapsed.as_secs_f64(), "req/s");
                if target != "direct" {
                    // The gateway's own CPU (the mock and the load generator run here).
                    print(&format!("{name}_server_cpu_per_req"), (cpu1 - cpu0) * 1e6 / n.max(1.0), "us");
                    print(&format!("{name}_server_rss"), rss as f64 / 1048576.0, "MiB");
                    print(&format!("{name}_server_rss_peak"), peak as f64 / 1048576.0, "MiB");
                }
                if cell.errors > 0 {
                    print(&format!("{name}_errors"), cell.errors as f64, "requests");
                }
                p50s.insert((target.to_string(), c), (p50, p99));
            }
            let d = p50s[&("direct".to_string(), c)];
            let g = p50s[&("openai".to_string(), c)];
            print(&format!("gateway_added_latency_c{c}_p50"), g.0 - d.0, "us");
            print(&format!("gateway_added_latency_c{c}_p99"), g.1 - d.1, "us");
        }
        drop(child.stdin.take());
        let _ = child.wait();
    });
}
