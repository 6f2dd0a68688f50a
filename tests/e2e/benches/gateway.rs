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
//! - `bare_proxy`: the physical-limit baseline — a hyper server and the same
//!   pooled hyper-util client the sandbox's egress uses, forwarding the request
//!   and answer bytes unchanged to the mock, in a process of its own;
//! - `openai`: the gateway → the `openai` guest in the sandbox → egress → the mock;
//! - `openai_by_name`: the same, the upstream named `localhost` (DNS on the path);
//! - `echo`: the gateway → the `echo` guest (no upstream);
//! - `openai_stream` / `bare_proxy_stream`: `"stream": true` through each.
//!
//! and the gateway's added latency (`openai` minus `direct`), and the issue 15
//! ratios against the bare proxy measured in the same run (CPU per request,
//! added p50/p99, requests/s). Printed as `bench: <name> <value> <unit>`; never
//! asserted.

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

// The allocator the `tamma` binary uses, so the gateway measured here is the one
// that ships (the bare proxy gets it too: a fair baseline).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVER_ENV: &str = "TAMMA_GATEWAY_BENCH_UPSTREAM";
const PROXY_ENV: &str = "TAMMA_GATEWAY_BENCH_BARE_PROXY";
/// Measured time per cell; `TAMMA_GATEWAY_BENCH_RUN_MS` makes it longer for a profile.
fn run_time() -> Duration {
    let ms = std::env::var("TAMMA_GATEWAY_BENCH_RUN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_500);
    Duration::from_millis(ms)
}
const WARMUP: Duration = Duration::from_millis(400);

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

// --- server mode ----------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Resolves when the parent closes our stdin: a server mode serves until then.
async fn stdin_closed() {
    let _ = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        while std::io::stdin()
            .read_line(&mut s)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await;
}

fn server_main(upstream: String) {
    let rt = runtime();
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
        // The openai guest against the mock by IP, and the same reaching it by
        // name: `localhost` resolves on every request unless the resolver
        // caches (the IP entry grants the loopback address the name resolves to).
        let port = upstream.rsplit(':').next().unwrap_or_default().to_string();
        let named_url = format!("http://localhost:{port}");
        for (name, base, allowed) in [
            ("openai", upstream.clone(), vec![upstream.clone()]),
            (
                "openai-named",
                named_url.clone(),
                vec![named_url, upstream.clone()],
            ),
        ] {
            let egress = EgressPolicy::try_new(
                allowed,
                BTreeMap::from([("api_key".to_string(), "sk-bench".to_string())]),
                EgressLimits {
                    max_concurrent_requests: 128,
                    ..EgressLimits::default()
                },
            )
            .unwrap();
            let settings = ProviderSettings {
                config: vec![
                    ("base_url".into(), format!("{base}/v1")),
                    ("models".into(), "gpt-mock".into()),
                ],
                limits: limits.clone(),
                egress,
            };
            registry
                .register(
                    name,
                    Registration::new(ComponentSource::File(guest("openai")))
                        .with_settings(settings),
                )
                .await
                .unwrap();
        }
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
        server.run(stdin_closed()).await;
    });
}

// --- bare-proxy mode -------------------------------------------------------------

/// The physical-limit baseline: accept HTTP/1.1 keep-alive connections and
/// forward each request, bytes unchanged and streamed both ways, through one
/// pooled hyper-util client configured like the sandbox's egress pool
/// (`tamma_sandbox::egress::client`). No JSON, no sandbox, no policy: what any
/// reverse proxy in Rust must spend at least.
fn proxy_main(upstream: String) {
    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

    let rt = runtime();
    rt.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .build(connector);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("ADDR {}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        tokio::spawn(async {
            stdin_closed().await;
            std::process::exit(0);
        });
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                        let client = client.clone();
                        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                        let uri: Result<hyper::Uri, _> = format!("{upstream}{path}").parse();
                        async move {
                            *req.uri_mut() = uri.map_err(std::io::Error::other)?;
                            let response =
                                client.request(req).await.map_err(std::io::Error::other)?;
                            Ok::<_, std::io::Error>(
                                response.map(|b| b.map_err(std::io::Error::other).boxed()),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
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
    tokio::time::sleep(run_time()).await;
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

/// Start this bench binary again in a server mode (`env` = `value`); its
/// address is the first line it prints.
fn spawn_server(env: &str, value: &str) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(env, value)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server process starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("ADDR ")
        .expect("the server prints its address")
        .parse()
        .unwrap();
    (child, addr)
}

/// One measured cell's figures.
#[derive(Clone, Copy)]
struct Figures {
    p50: f64,
    p99: f64,
    rps: f64,
    cpu_per_req: f64,
}

/// Context switches (voluntary + involuntary) of all a process's threads: each
/// is a thread going to sleep or being preempted, what cross-task wake-ups cost.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn main() {
    if let Ok(upstream) = std::env::var(SERVER_ENV) {
        server_main(upstream);
        return;
    }
    if let Ok(upstream) = std::env::var(PROXY_ENV) {
        proxy_main(upstream);
        return;
    }
    // `cargo bench` passes `--bench`; a filter argument that is not ours skips us.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"gateway".contains(a.as_str()))
    {
        return;
    }
    let rt = runtime();
    rt.block_on(async {
        let mock = MockUpstream::start().await;
        let (mut gateway_child, gateway) = spawn_server(SERVER_ENV, &mock.url());
        let (mut proxy_child, proxy) = spawn_server(PROXY_ENV, &mock.url());
        let gateway_pid = gateway_child.id();
        let proxy_pid = proxy_child.id();
        let (_, rss_idle, _) = proc_usage(gateway_pid);
        print("gateway_rss_idle", rss_idle as f64 / 1048576.0, "MiB");
        let (_, proxy_rss_idle, _) = proc_usage(proxy_pid);
        print("bare_proxy_rss_idle", proxy_rss_idle as f64 / 1048576.0, "MiB");

        let ask = |model: &str, stream: bool| {
            Arc::new(
                serde_json::json!({
                    "model": model,
                    "messages": [{"role": "user", "content": "how much does the gateway add to this request"}],
                    "max_tokens": 32,
                    "stream": stream,
                })
                .to_string()
                .into_bytes(),
            )
        };
        let mut figures: BTreeMap<(&str, usize), Figures> = BTreeMap::new();
        // For profiling one path: `TAMMA_GATEWAY_BENCH_ONLY=openai` (comma-separated
        // targets) measures only those, with no ratios. Each server prints its pid
        // on stderr for `perf record -p`.
        let only = std::env::var("TAMMA_GATEWAY_BENCH_ONLY").ok();
        eprintln!("gateway pid {gateway_pid}, bare proxy pid {proxy_pid}");
        for c in [1usize, 8, 64] {
            for (target, addr, pid, body) in [
                ("direct", mock.addr(), None, ask("gpt-mock", false)),
                ("bare_proxy", proxy, Some(proxy_pid), ask("gpt-mock", false)),
                ("openai", gateway, Some(gateway_pid), ask("openai/gpt-mock", false)),
                ("openai_by_name", gateway, Some(gateway_pid), ask("openai-named/gpt-mock", false)),
                ("echo", gateway, Some(gateway_pid), ask("echo/echo-1", false)),
                ("bare_proxy_stream", proxy, Some(proxy_pid), ask("gpt-mock", true)),
                ("openai_stream", gateway, Some(gateway_pid), ask("openai/gpt-mock", true)),
            ] {
                if !only.as_ref().is_none_or(|o| o.split(',').any(|t| t == target)) {
                    continue;
                }
                let cpu0 = pid.map_or(0.0, |p| proc_usage(p).0);
                let switches0 = pid.map_or(0, context_switches);
                let cell = load(addr, body, c).await;
                let n = cell.latencies_us.len() as f64;
                let name = format!("gateway_{target}_c{c}");
                let mut f = Figures {
                    p50: pct(&cell.latencies_us, 0.50),
                    p99: pct(&cell.latencies_us, 0.99),
                    rps: n / cell.elapsed.as_secs_f64(),
                    cpu_per_req: f64::NAN,
                };
                print(&format!("{name}_p50"), f.p50, "us");
                print(&format!("{name}_p99"), f.p99, "us");
                print(&format!("{name}_rps"), f.rps, "req/s");
                if let Some(pid) = pid {
                    // The server's own CPU (the mock and the load generator run here).
                    let (cpu1, rss, peak) = proc_usage(pid);
                    f.cpu_per_req = (cpu1 - cpu0) * 1e6 / n.max(1.0);
                    print(&format!("{name}_server_cpu_per_req"), f.cpu_per_req, "us");
                    let switches = context_switches(pid).saturating_sub(switches0);
                    print(&format!("{name}_server_context_switches_per_req"), switches as f64 / n.max(1.0), "switches");
                    print(&format!("{name}_server_rss"), rss as f64 / 1048576.0, "MiB");
                    print(&format!("{name}_server_rss_peak"), peak as f64 / 1048576.0, "MiB");
                }
                if cell.errors > 0 {
                    print(&format!("{name}_errors"), cell.errors as f64, "requests");
                }
                figures.insert((target, c), f);
            }
            if only.is_some() {
                continue;
            }
            let get = |t: &str| figures[&(t, c)];
            let (direct, proxy, openai, echo) =
                (get("direct"), get("bare_proxy"), get("openai"), get("echo"));
            print(&format!("gateway_added_latency_c{c}_p50"), openai.p50 - direct.p50, "us");
            print(&format!("gateway_added_latency_c{c}_p99"), openai.p99 - direct.p99, "us");
            // Issue 15's goals, against the bare proxy of this same run.
            for (label, t, base) in [
                ("openai", openai, proxy),
                ("openai_by_name", get("openai_by_name"), proxy),
                ("openai_stream", get("openai_stream"), get("bare_proxy_stream")),
            ] {
                let n = format!("gateway_{label}_vs_bare_proxy");
                print(&format!("{n}_cpu_ratio_c{c}"), t.cpu_per_req / base.cpu_per_req, "x");
                print(&format!("{n}_added_p50_c{c}"), t.p50 - base.p50, "us");
                print(&format!("{n}_added_p99_c{c}"), t.p99 - base.p99, "us");
                print(&format!("{n}_rps_ratio_c{c}"), t.rps / base.rps, "x");
            }
            print(&format!("gateway_openai_vs_echo_cpu_ratio_c{c}"), openai.cpu_per_req / echo.cpu_per_req, "x");
        }
        drop(gateway_child.stdin.take());
        drop(proxy_child.stdin.take());
        let _ = gateway_child.wait();
        let _ = proxy_child.wait();
    });
}
