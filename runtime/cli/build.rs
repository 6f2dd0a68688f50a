//! Embeds the built-in provider components (echo, openai, anthropic) into the
//! `tamma` binary when they have been built (`make guests`). Without them the
//! binary still builds; asking for a missing built-in gives a clear error.
//!
//! Only the three embedded files are watched, never the guest directory (where
//! every guest build touches something), so `make demo` after `make test`
//! rebuilds nothing, and a changed component relinks only this binary: the
//! sandbox, registry and server crates do not embed it and stay fresh. Cargo
//! watches by modification time; a guest rebuilt with identical bytes still
//! recompiles this (small) crate, since cargo has no stable content-hash check.

use std::env;
use std::fmt::Write;
use std::path::{Path, PathBuf};

const BUILTINS: &[&str] = &["echo", "openai", "anthropic"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    // Guests are built into the workspace's target dir by `make guests`; a build with
    // another CARGO_TARGET_DIR (benchmarks) still finds them there.
    let candidates: Vec<PathBuf> = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([manifest.join("../../target")])
        .map(|t| t.join("wasm32-wasip2/guest"))
        .collect();
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let dir = candidates.iter().find(|d| d.join("echo.wasm").exists());
    let mut out =
        String::from("/// Built-in components found at build time: (type name, bytes).\n");
    out.push_str("pub(crate) static EMBEDDED: &[(&str, &[u8])] = &[\n");
    match dir {
        Some(dir) => {
            for name in BUILTINS {
                let src = dir.join(format!("{name}.wasm"));
                println!("cargo:rerun-if-changed={}", src.display());
                if let Ok(path) = src.canonicalize() {
                    let path = path.display().to_string();
                    let _ = writeln!(out, "    ({name:?}, include_bytes!({path:?})),");
                }
            }
        }
        // No guests yet: watch for them to appear (this reruns on every build
        // until `make guests` has run, which is the point).
        None => {
            for d in &candidates {
                println!("cargo:rerun-if-changed={}", d.join("echo.wasm").display());
            }
        }
    }
    out.push_str("];\n");
    write_if_changed(&out_dir.join("builtins.rs"), out.as_bytes());
}

/// Write only when the contents differ: the generated file's modification time
/// is what rustc's dep-info compares.
fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        std::fs::write(path, bytes).expect("write into OUT_DIR");
    }
}
