//! Embeds the built-in provider components (echo, openai, anthropic) into the
//! `tamma` binary when they have been built (`make guests`). Without them the
//! runtime still builds; asking for a missing built-in gives a clear error.

use std::env;
use std::fmt::Write;
use std::path::PathBuf;

const BUILTINS: &[&str] = &["echo", "openai", "anthropic"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    // Guests are built into the workspace's target dir by `make guests`; a build with
    // another CARGO_TARGET_DIR (benchmarks) still finds them there.
    let candidates: Vec<PathBuf> = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([manifest.join("../../target")])
        .map(|t| t.join("wasm32-wasip2/guest"))
        .collect();
    let dir = candidates
        .iter()
        .find(|d| d.join("echo.wasm").exists())
        .unwrap_or(&candidates[0])
        .clone();
    println!("cargo:rerun-if-changed={}", dir.display());
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let mut out =
        String::from("/// Built-in components found at build time: (type name, bytes).\n");
    out.push_str("pub(crate) static EMBEDDED: &[(&str, &[u8])] = &[\n");
    for name in BUILTINS {
        let path = dir.join(format!("{name}.wasm"));
        if path.exists() {
            let path = path.canonicalize().expect("canonical path");
            let _ = writeln!(
                out,
                "    ({name:?}, include_bytes!({:?})),",
                path.display().to_string()
            );
        }
    }
    out.push_str("];\n");
    let dest = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("builtins.rs");
    std::fs::write(dest, out).expect("write builtins.rs");
}
