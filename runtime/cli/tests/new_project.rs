//! `tamma new rust` as a stranger uses it: outside this repository, the project
//! depends on the *packaged* SDK (`cargo package -p tamma-guest-sdk`, unpacked —
//! the WIT travels inside it), builds with one command, passes its own test and
//! answers `tamma run`.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// `cargo package -p tamma-guest-sdk`, unpacked into `dir`; the crate's directory.
fn packaged_sdk(dir: &Path) -> std::path::PathBuf {
    let root = support::root();
    ok(Command::new(env!("CARGO")).current_dir(&root).args([
        "package",
        "-p",
        "tamma-guest-sdk",
        "--no-verify",
        "--allow-dirty",
        "--offline",
    ]));
    let version = env!("CARGO_PKG_VERSION");
    let file = root.join(format!("target/package/tamma-guest-sdk-{version}.crate"));
    ok(Command::new("tar").arg("xzf").arg(&file).arg("-C").arg(dir));
    let sdk = dir.join(format!("tamma-guest-sdk-{version}"));
    assert!(
        sdk.join("wit/provider.wit").is_file(),
        "the WIT travels in the crate"
    );
    sdk
}

#[test]
fn a_new_rust_project_builds_from_the_packaged_sdk_tests_and_answers() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(!tmp
        .path()
        .starts_with(support::root().canonicalize().unwrap()));
    let sdk = packaged_sdk(tmp.path());
    let project = tmp.path().join("hello-provider");
    ok(Command::new(env!("CARGO_BIN_EXE_tamma")).args([
        "new",
        "rust",
        "hello-provider",
        "--dir",
        project.to_str().unwrap(),
        "--sdk-path",
        sdk.to_str().unwrap(),
    ]));
    // The one build command, and the project's own test.
    let cargo = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO"));
        c.current_dir(&project)
            .args(args)
            .env_remove("CARGO_TARGET_DIR");
        ok(&mut c)
    };
    cargo(&[
        "build",
        "--offline",
        "--target",
        "wasm32-wasip2",
        "--release",
    ]);
    let test = cargo(&["test", "--offline"]);
    assert!(test.contains("test result: ok. 1 passed"), "{test}");
    let wasm = project.join("target/wasm32-wasip2/release/hello_provider.wasm");
    let answer = ok(Command::new(env!("CARGO_BIN_EXE_tamma"))
        .env("TAMMA_CACHE_DIR", tmp.path().join("cache"))
        .args(["run", wasm.to_str().unwrap(), "--prompt", "hello stranger"]));
    assert!(answer.contains("hello stranger"), "{answer}");
    // An existing, non-empty directory is not overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args([
            "new",
            "rust",
            "hello-provider",
            "--dir",
            project.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("ALREADY_EXISTS"));
}
