//! A real `redis-server` on a free loopback port, for the tests of the shared
//! limits store: started by the test, stopped when dropped (or on purpose, to
//! test what happens when Redis goes away). `make test` installs the Debian
//! package `redis-server` when it is missing.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use crate::local_server::{free_port, kill, loopback, wait_until_listening};

/// A running `redis-server` with no persistence.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Start one, and wait until it accepts connections.
    pub fn start() -> RedisServer {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (`make test` installs it: apt-get install -y redis-server)");
        let s = RedisServer {
            child: Some(child),
            port,
        };
        wait_until_listening(port, "redis-server");
        s
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stop it now (SIGKILL: Redis gone without a goodbye).
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
