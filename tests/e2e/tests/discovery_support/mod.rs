//! Helpers shared by the discovery tests: real files in temporary directories.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tamma_e2e::{builtins, guest_bytes, sandbox};
use tamma_registry::discovery::{component_sha256, Discovery, DiscoveryOptions, Environment};
use tamma_registry::{Registry, RegistryConfig};
use tamma_sandbox::types::CompletionRequest;

pub fn registry() -> Registry {
    Registry::with_builtins(sandbox(), RegistryConfig::default(), builtins()).unwrap()
}

/// Write a file atomically (write beside it, then rename), as deploy tools do.
pub fn atomic_write(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A manifest for `name` whose component has `bytes`.
pub fn manifest(name: &str, version: &str, bytes: &[u8], config: &[(&str, &str)]) -> String {
    let mut m = format!(
        "name = \"{name}\"\nversion = \"{version}\"\ndescription = \"test plugin\"\nsha256 = \"{}\"\n",
        component_sha256(bytes)
    );
    if !config.is_empty() {
        m.push_str("[config]\n");
        for (k, v) in config {
            m.push_str(&format!("{k} = \"{v}\"\n"));
        }
    }
    m
}

/// Install plugin `name` running guest `guest` (`echo`, `test_provider`): the
/// component first, then its manifest, each atomically.
pub fn install_plugin(dir: &Path, name: &str, guest: &str, version: &str, config: &[(&str, &str)]) {
    let bytes = guest_bytes(guest);
    atomic_write(&dir.join(format!("{name}.wasm")), &bytes);
    atomic_write(
        &dir.join(format!("{name}.toml")),
        manifest(name, version, &bytes, config).as_bytes(),
    );
}

/// A plugin answering `<tag>:<prompt>`, alternating guests with `i` so that the
/// component itself changes too (echo with a prefix, test_provider with a reply).
pub fn install_tagged(dir: &Path, name: &str, i: usize, tag: &str) {
    let prefix = format!("{tag}:");
    if i.is_multiple_of(2) {
        install_plugin(
            dir,
            name,
            "test_provider",
            &format!("1.0.{i}"),
            &[("reply", tag)],
        );
    } else {
        install_plugin(
            dir,
            name,
            "echo",
            &format!("1.0.{i}"),
            &[("prefix", &prefix)],
        );
    }
}

pub fn options(
    config: Option<&Path>,
    plugins: Option<&Path>,
    env: &[(&str, &str)],
) -> DiscoveryOptions {
    let mut o = DiscoveryOptions::new().env(Environment::from_map(env.iter().copied()));
    if let Some(c) = config {
        o = o.config_file(c);
    }
    if let Some(p) = plugins {
        o = o.plugin_dir(p);
    }
    o
}

pub fn discovery(config: Option<&Path>, plugins: Option<&Path>, env: &[(&str, &str)]) -> Discovery {
    Discovery::new(registry(), options(config, plugins, env))
}

pub fn ask(text: &str) -> CompletionRequest {
    CompletionRequest::prompt("", text)
}

pub async fn answer(d: &Discovery, name: &str, prompt: &str) -> String {
    d.registry()
        .complete(name, &ask(prompt))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .content
}

/// Wait (bounded) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}
