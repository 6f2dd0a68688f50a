//! Start-up of `tamma serve` to its first answered request, with a warm compile
//! cache (`make bench`). The real binary is spawned as an operator would; the time
//! runs from spawn to the first `200` for a chat completion through the built-in
//! echo provider. Printed as `bench: <name> <value> <unit>`; never asserted.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn print(name: &str, value: f64, unit: &str) {
    println!("bench: {name} {value:.3} {unit}");
}

/// One request over a fresh connection; returns the status code.
fn chat(addr: &str) -> Option<u16> {
    let body = r#"{"model":"echo/echo-1","messages":[{"role":"user","content":"hi"}]}"#;
    let mut s = TcpStream::connect(addr).ok()?;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

fn start_once(cache: &std::path::Path) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TAMMA_CACHE_DIR", cache)
        .env("TAMMA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tamma serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut addr = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = Some(rest.trim().to_string());
            break;
        }
    }
    // Keep draining stderr so the server never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let addr = addr.expect("tamma serve printed its address");
    let answered = loop {
        if chat(&addr) == Some(200) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no answer in 30 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    answered
}

fn main() {
    let cache = std::env::temp_dir().join("tamma-startup-bench-cache");
    start_once(&cache); // warms the compile cache
    let mut runs: Vec<Duration> = (0..7).map(|_| start_once(&cache)).collect();
    runs.sort();
    print(
        "serve_startup_to_first_answer_median",
        runs[runs.len() / 2].as_secs_f64() * 1e3,
        "ms",
    );
    print(
        "serve_startup_to_first_answer_min",
        runs[0].as_secs_f64() * 1e3,
        "ms",
    );
    print("serve_startup_iters", runs.len() as f64, "count");
}
