//! `tamma new rust|js|python` as a stranger uses it: outside this repository, the
//! project depends on the *packaged* SDK (the unpacked `cargo package` crate, the
//! `npm pack` tarball, the `pip wheel` wheel — the WIT travels inside each),
//! installs its pinned toolchain, builds with one command, passes its own test and
//! answers `tamma run`; `tamma inspect` sees the 0.2.0 world with embeddings.

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

/// A temp directory outside the workspace.
fn outside() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    assert!(!tmp
        .path()
        .starts_with(support::root().canonicalize().unwrap()));
    tmp
}

/// `tamma new LANGUAGE NAME --dir DIR --sdk-path SDK`.
fn tamma_new(language: &str, name: &str, dir: &Path, sdk: &Path) {
    ok(Command::new(env!("CARGO_BIN_EXE_tamma")).args([
        "new",
        language,
        name,
        "--dir",
        dir.to_str().unwrap(),
        "--sdk-path",
        sdk.to_str().unwrap(),
    ]));
}

/// `tamma run` answers with the prompt, and `tamma inspect` sees the current
/// world with its embedding model.
fn answers(wasm: &Path, name: &str, cache: &Path) {
    let tamma = |args: &[&str]| {
        ok(Command::new(env!("CARGO_BIN_EXE_tamma"))
            .env("TAMMA_CACHE_DIR", cache)
            .args(args)
            .arg(wasm))
    };
    let answer = tamma(&["run", "--prompt", "hello stranger", "--config", "prefix=> "]);
    assert!(answer.contains("> hello stranger"), "{answer}");
    let inspect = tamma(&["inspect"]);
    assert!(
        inspect.contains("satisfies tamma:provider/provider@0.2.0"),
        "{inspect}"
    );
    assert!(
        inspect.contains(&format!("embedding model: {name}-embed-1")),
        "{inspect}"
    );
}

#[test]
fn a_new_js_project_installs_the_packed_sdk_tests_builds_and_answers() {
    let tmp = outside();
    // `npm pack` copies the WIT into the tarball (prepack) and removes the copy.
    let out = ok(Command::new("npm")
        .current_dir(support::root().join("guests/js-sdk"))
        .args(["pack", "--pack-destination"])
        .arg(tmp.path()));
    let version = env!("CARGO_PKG_VERSION");
    let tarball = tmp.path().join(format!("tamma-provider-{version}.tgz"));
    assert!(tarball.is_file(), "{out}");
    let project = tmp.path().join("hello-js");
    tamma_new("js", "hello-js", &project, &tarball);
    let npm = |args: &[&str]| {
        ok(Command::new("npm")
            .current_dir(&project)
            .args(args)
            .args(["--no-audit", "--no-fund"]))
    };
    // The toolchain comes from the tarball's exact-version dependencies.
    npm(&["install", "--prefer-offline"]);
    let componentize = project.join("node_modules/@bytecodealliance/componentize-js/package.json");
    let pinned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(componentize).unwrap()).unwrap();
    assert_eq!(pinned["version"], "0.23.0");
    let test = npm(&["test"]);
    assert!(
        test.contains("# pass 2") && test.contains("# fail 0"),
        "{test}"
    );
    npm(&["run", "build"]);
    answers(
        &project.join("dist/hello-js.wasm"),
        "hello-js",
        &tmp.path().join("cache"),
    );
    assert!(
        !support::root().join("guests/js-sdk/wit").exists(),
        "postpack removes the WIT copy"
    );
}

#[test]
fn a_new_python_project_installs_the_sdk_wheel_tests_builds_and_answers() {
    let tmp = outside();
    let project = tmp.path().join("hello-py");
    // A copy of the SDK (the WIT symlink followed), so that building the wheel
    // leaves nothing in the repository.
    let sdk = tmp.path().join("py-sdk");
    ok(Command::new("cp")
        .arg("-rL")
        .arg(support::root().join("guests/py-sdk"))
        .arg(&sdk));
    let wheels = tmp.path().join("wheels");
    let venv_at = |dir: &Path| ok(Command::new("python3").arg("-m").arg("venv").arg(dir));
    let pip = |venv: &Path, args: &[&str]| {
        ok(Command::new(venv.join("bin/pip"))
            .current_dir(tmp.path())
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .args(args))
    };
    let build_venv = tmp.path().join("build-venv");
    venv_at(&build_venv);
    pip(
        &build_venv,
        &[
            "wheel",
            "--quiet",
            "--no-deps",
            sdk.to_str().unwrap(),
            "-w",
            wheels.to_str().unwrap(),
        ],
    );
    let version = env!("CARGO_PKG_VERSION");
    let wheel = wheels.join(format!("tamma_provider-{version}-py3-none-any.whl"));
    assert!(wheel.is_file());
    tamma_new("python", "hello-py", &project, &wheel);
    // The project's own fresh venv installs the wheel and the toolchain it pins.
    let venv = project.join(".venv");
    let bin = |tool: &str| venv.join("bin").join(tool);
    venv_at(&venv);
    let requirements = project.join("requirements.txt");
    pip(
        &venv,
        &["install", "--quiet", "-r", requirements.to_str().unwrap()],
    );
    let show = pip(&venv, &["show", "componentize-py"]);
    assert!(show.contains("Version: 0.25.1"), "{show}");
    let test = ok(Command::new(bin("python"))
        .current_dir(&project)
        .args(["-m", "unittest", "discover", "-s", "tests"]));
    assert!(
        test.contains("Ran 2 tests") && test.contains("OK"),
        "{test}"
    );
    ok(Command::new(bin("tamma-py-build"))
        .current_dir(&project)
        .args(["-o", "dist/hello-py.wasm"]));
    answers(
        &project.join("dist/hello-py.wasm"),
        "hello-py",
        &tmp.path().join("cache"),
    );
}
