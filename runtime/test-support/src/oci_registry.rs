//! A real OCI registry — Debian's `docker-registry` (CNCF distribution 2.8) — on
//! a free loopback port with its storage in a temporary directory: started by
//! the test, stopped when dropped (or on purpose, to test a registry that went
//! away). `make test` installs the package when it is missing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::local_server::{free_port, kill, loopback, wait_until_listening};

/// A running registry.
pub struct OciRegistry {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl OciRegistry {
    /// Start one, and wait until it accepts connections.
    pub fn start() -> OciRegistry {
        Self::start_with(None)
    }

    /// Start one that asks for basic authentication (an htpasswd file, bcrypt,
    /// written by `htpasswd` from Debian's `apache2-utils`, which `make test`
    /// installs): pulls and pushes need `user` / `password`.
    pub fn start_with_login(user: &str, password: &str) -> OciRegistry {
        Self::start_with(Some((user, password)))
    }

    fn start_with(login: Option<(&str, &str)>) -> OciRegistry {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("tamma-oci-registry-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("registry storage directory");
        let auth = match login {
            None => String::new(),
            Some((user, password)) => {
                let file = dir.join("htpasswd");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect(
                        "htpasswd runs (`make test` installs it: apt-get install -y apache2-utils)",
                    );
                assert!(out.status.success(), "htpasswd failed");
                std::fs::write(&file, &out.stdout).expect("htpasswd file");
                format!(
                    "auth:\n  htpasswd:\n    realm: tamma-test\n    path: {}\n",
                    file.display()
                )
            }
        };
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
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
        wait_until_listening(self.port, "docker-registry");
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// `127.0.0.1:PORT`, as an `oci://` reference's host.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stop it now (SIGKILL: the registry gone without a goodbye).
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
