//! A real `tamma serve` process for the CLI's integration tests: started with only
//! the environment a test gives it, its address read from the line it prints, its
//! stderr kept for assertions, killed when dropped.

// Each test file uses part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tamma_test_support::client;

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A built guest component (`make guests`).
pub fn guest(name: &str) -> PathBuf {
    let p = root()
        .join("target/wasm32-wasip2/guest")
        .join(format!("{name}.wasm"));
    assert!(p.exists(), "{} missing: run `make guests`", p.display());
    p
}

/// A one-message chat completion request.
pub fn chat(model: &str, text: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": text }] })
}

/// `tamma serve ARGS` with `envs` and nothing of the machine's own `TAMMA_*`,
/// `OTEL_*` or `*_API_KEY` variables (no real provider may be discovered, no
/// trace exported by accident); the compile cache is shared by the tests.
pub fn command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tamma"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TAMMA_") || k.starts_with("OTEL_") || k.ends_with("_API_KEY") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("serve")
        .args(args)
        .env(
            "TAMMA_CACHE_DIR",
            std::env::temp_dir().join("tamma-cli-test-cache"),
        )
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A running `tamma serve`.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// Start `tamma serve ARGS` (see [`command`]) and wait for its address.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Served {
        Served::spawn(command(args, envs))
    }

    /// `tamma serve --config FILE --listen 127.0.0.1:0`.
    pub fn with_config(config: &Path, envs: &[(&str, &str)]) -> Served {
        let file = config.to_str().expect("a UTF-8 path");
        Served::start(&["--config", file, "--listen", "127.0.0.1:0"], envs)
    }

    /// Spawn `cmd` and wait for the address it prints.
    pub fn spawn(mut cmd: Command) -> Served {
        let mut child = cmd.spawn().expect("tamma serve starts");
        let stderr = Arc::new(Mutex::new(Vec::<String>::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let pipe = child.stderr.take().expect("stderr is piped");
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

    /// Until `/readyz` answers 200 (at most a minute).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client::get(self.addr, "/readyz").await {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "never ready: {:?}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Send SIGTERM.
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok);
    }

    /// Wait for the exit; its code. Killed, and the test failed, past `within`.
    pub fn wait(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return s.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("did not exit in {within:?}: {:?}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit code (within a minute).
    pub fn stop(&mut self) -> i32 {
        self.sigterm();
        self.wait(Duration::from_secs(60))
    }

    /// Every stderr line so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
