//! A real OCI registry — Debian's `docker-registry` (CNCF distribution 2.8) — on
//! a free loopback port with its storage in a temporary directory: started by
//! the test, stopped when dropped (or on purpose, to test a registry that went
//! away). `make test` installs the package when it is missing.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry.
pub struct OciRegistry {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl OciRegistry {
    /// Start one, and wait until it accepts connections.
    pub fn start() -> OciRegistry {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("tamma-oci-registry-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("registry storage directory");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            ),
        )
        .expect("registry config");
        let mut r = OciRegistry {
            child: None,
            port,
            dir,
        };
        r.spawn(&config);
        r
    }

    fn spawn(&mut self, config: &std::path::Path) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry runs (`make test` installs it: apt-get install -y docker-registry)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.addr()).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `127.0.0.1:PORT`, as an `oci://` reference's host.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stop it now (SIGKILL: the registry gone without a goodbye).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
