//! `tamma serve` on a network: two real replicas sharing one real `redis-server`
//! enforce one rpm limit; Redis stopped mid-run makes requests follow
//! `on_error` without hanging; a non-loopback address without keys refuses to
//! start; client keys never reach the logs.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tamma_test_support::client;
use tamma_test_support::redis_server::RedisServer;

mod support;
use support::{command, Served};

const KEY: &str = "fleet-key-0123456789abcdef";
/// Debug logs (the tests read the access lines), and the fleet's client key.
const FLEET_ENV: &[(&str, &str)] = &[("TAMMA_LOG", "debug"), ("TAMMA_FLEET_KEY", KEY)];

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
    let a = Served::with_config(&file, FLEET_ENV);
    let b = Served::with_config(&file, FLEET_ENV);
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
    let a = Served::with_config(&file, FLEET_ENV);
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
    let out = command(&["--listen", "0.0.0.0:0"], &[]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[[server.keys]]"), "{err}");
    assert!(err.contains("required = false"), "{err}");
}
