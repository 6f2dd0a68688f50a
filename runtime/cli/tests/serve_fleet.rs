//! `tamma serve` on a network: two real replicas sharing one real `redis-server`
//! enforce one rpm limit; Redis stopped mid-run makes requests follow
//! `on_error` without hanging; a non-loopback address without keys refuses to
//! start; client keys never reach the logs.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tamma_test_support::client;
use tamma_test_support::redis_server::RedisServer;

const KEY: &str = "fleet-key-0123456789abcdef";

struct Served {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn command(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tamma"));
    cmd.arg("serve")
        .args([
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env(
            "TAMMA_CACHE_DIR",
            std::env::temp_dir().join("tamma-cli-test-cache"),
        )
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENROUTER_API_KEY")
        .env("TAMMA_LOG", "debug")
        .env("TAMMA_FLEET_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

impl Served {
    fn start(config: &Path) -> Served {
        let mut child = command(config).spawn().expect("tamma serve starts");
        let stderr = Arc::new(Mutex::new(Vec::<String>::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let pipe = child.stderr.take().unwrap();
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(i) = line.find("http://") {
                    let rest = &line[i + 7..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                        .unwrap_or(rest.len());
                    if let Ok(a) = rest[..end].parse::<SocketAddr>() {
                        let _ = tx.send(a);
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no address printed: {:?}", stderr.lock().unwrap()));
        Served {
            child,
            addr,
            stderr,
        }
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client::get(self.addr, "/readyz").await {
                if r.status == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_file(dir: &Path, store: &str, rpm: u64) -> std::path::PathBuf {
    let file = dir.join("tamma.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[providers.echo]
component = "echo"

[discovery]
environment = false

[[server.keys]]
name = "fleet"
key = {{ env = "TAMMA_FLEET_KEY" }}
rpm = {rpm}

{store}
"#
        ),
    )
    .unwrap();
    file
}

async fn ask(addr: SocketAddr) -> client::Response {
    let body = json!({"model": "echo/echo-1", "messages": [{"role": "user", "content": "hi"}]});
    let auth = format!("Bearer {KEY}");
    client::request(
        addr,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth)],
        Some(body.to_string().into_bytes()),
    )
    .await
    .unwrap()
}

fn minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_enforce_one_limit_and_survive_redis_going_away() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let rpm = 20;
    let store = format!(
        "[server.limits_store]\nurl = \"{}\"\non_error = \"allow\"\ntimeout_ms = 200\n",
        redis.url()
    );
    let file = config_file(dir.path(), &store, rpm);
    let a = Served::start(&file);
    let b = Served::start(&file);
    a.wait_ready().await;
    b.wait_ready().await;
    // Calendar minutes are the windows: start early enough in one that 2 × rpm
    // requests fit in it (a wait, not a timed assertion).
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if s > 40 {
        tokio::time::sleep(Duration::from_secs(61 - s)).await;
    }
    let before = minute();
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..2 * rpm {
        let replica = if i % 2 == 0 { a.addr } else { b.addr };
        let r = ask(replica).await;
        match r.status {
            200 => accepted += 1,
            429 => {
                assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
                refused += 1
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    let after = minute();
    if before == after {
        // One window: exactly the limit, whichever replica answered.
        assert_eq!(accepted, rpm, "refused {refused}");
    } else {
        // The requests straddled a minute's edge: each window admits up to rpm.
        assert!((rpm..=2 * rpm).contains(&accepted), "{accepted}");
    }
    // Each replica alone would have let every one of its 20 through: the
    // refusals were counted where they happened.
    let mut rpm_refusals = 0.0;
    for replica in [a.addr, b.addr] {
        let m = client::get(replica, "/metrics").await.unwrap().text();
        rpm_refusals += m
            .lines()
            .filter(|l| l.starts_with("tamma_key_refusals_total{key=\"fleet\",reason=\"rpm\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    assert_eq!(rpm_refusals as u64, refused);

    // Redis goes away: on_error = "allow" serves, none hangs.
    redis.stop();
    for replica in [a.addr, b.addr].repeat(3) {
        let r = tokio::time::timeout(Duration::from_secs(10), ask(replica))
            .await
            .expect("no request hangs while Redis is down");
        assert_eq!(r.status, 200, "on_error = allow: {}", r.text());
    }
    let m = client::get(a.addr, "/metrics").await.unwrap().text();
    let errors: f64 = m
        .lines()
        .filter(|l| l.starts_with("tamma_limits_store_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(errors >= 1.0, "{m}");
    // Logged once per burst, not per request.
    let lines = a.stderr();
    let warned = lines
        .iter()
        .filter(|l| l.contains("the limits store did not answer"))
        .count();
    assert!(
        warned >= 1 && (warned as f64) < errors,
        "{warned} warnings for {errors} errors: {lines:#?}"
    );
    // The key is in no log line; the access log names the key.
    for s in [&a, &b] {
        let lines = s.stderr();
        assert!(lines.iter().all(|l| !l.contains(KEY)), "{lines:#?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("tamma::access") && l.contains("fleet")),
            "{lines:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_on_error_deny_refuses_at_once() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "[server.limits_store]\nurl = \"{}\"\non_error = \"deny\"\ntimeout_ms = 100\n",
        redis.url()
    );
    let file = config_file(dir.path(), &store, 1000);
    let a = Served::start(&file);
    a.wait_ready().await;
    assert_eq!(ask(a.addr).await.status, 200);
    redis.stop();
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(10), ask(a.addr))
            .await
            .expect("no request hangs while Redis is down");
        assert_eq!(r.status, 503, "{}", r.text());
        let v: Value = r.json();
        assert_eq!(v["error"]["code"], "limits_unavailable");
    }
}

#[test]
fn a_non_loopback_address_without_keys_refuses_to_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env(
            "TAMMA_CACHE_DIR",
            std::env::temp_dir().join("tamma-cli-test-cache"),
        )
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENROUTER_API_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[[server.keys]]"), "{err}");
    assert!(err.contains("required = false"), "{err}");
}
