//! The `tamma` binary, run as a user would.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn tamma() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tamma"));
    c.env(
        "TAMMA_CACHE_DIR",
        std::env::temp_dir().join("tamma-cli-test-cache"),
    );
    c
}

fn guest(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm32-wasip2/guest")
        .join(format!("{name}.wasm"));
    assert!(p.exists(), "{} missing: run `make guests`", p.display());
    p
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = tamma().args(args).output().expect("tamma runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_prints_the_answer() {
    let echo = guest("echo");
    let (code, out, err) = run(&[
        "run",
        echo.to_str().unwrap(),
        "--prompt",
        "hello from the cli",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "hello from the cli");
    assert!(err.contains("finish stop"), "{err}");
}

#[test]
fn run_streams_and_emits_json_chunks() {
    let echo = guest("echo");
    let (code, out, _) = run(&[
        "run",
        echo.to_str().unwrap(),
        "--stream",
        "--prompt",
        "a b c",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "a b c");
    let (code, out, _) = run(&[
        "run",
        echo.to_str().unwrap(),
        "--stream",
        "--json",
        "--prompt",
        "a b",
    ]);
    assert_eq!(code, 0);
    let chunks: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1]["finish_reason"], "stop");
}

#[test]
fn run_with_a_request_file_and_max_tokens() {
    let echo = guest("echo");
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("req.json");
    std::fs::write(
        &req,
        r#"{"model":"echo-1","messages":[{"role":"user","content":"one two three"}],"max_tokens":2}"#,
    )
    .unwrap();
    let (code, out, _) = run(&[
        "run",
        echo.to_str().unwrap(),
        "--request",
        req.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["content"], "one two");
    assert_eq!(v["finish_reason"], "length");
}

#[test]
fn failures_print_the_structured_error_and_exit_non_zero() {
    let looping = guest("adversarial_loop");
    let (code, out, _) = run(&[
        "run",
        looping.to_str().unwrap(),
        "--fuel",
        "1000000",
        "--json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["code"], "FUEL_EXHAUSTED");
    assert_eq!(v["error"]["provider"], "adversarial_loop");

    let (code, _, err) = run(&["run", "/etc/hostname"]);
    assert_eq!(code, 1);
    assert!(err.contains("INVALID_COMPONENT"), "{err}");

    let (code, _, err) = run(&[
        "run",
        guest("echo").to_str().unwrap(),
        "--config",
        "novalue",
    ]);
    assert_eq!(code, 2, "usage errors exit 2");
    assert!(err.contains("KEY=VALUE"), "{err}");
}

#[test]
fn inspect_reports_the_world_and_capabilities() {
    let (code, out, _) = run(&["inspect", guest("echo").to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["satisfies_world"], "tamma:provider/provider@0.2.0");
    assert_eq!(v["contract_version"], "0.2.0");
    assert_eq!(v["embeddings"], true);
    assert_eq!(v["capabilities"]["models"][0]["id"], "echo-1");
    assert_eq!(
        v["capabilities"]["embedding_models"][0]["id"],
        "echo-embed-1"
    );
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn inspect_shows_a_0_1_component_without_embeddings() {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/echo-0.1.0.wasm");
    let (code, out, _) = run(&["inspect", fixture.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["satisfies_world"], "tamma:provider/provider@0.1.0");
    assert_eq!(v["embeddings"], false);
    assert_eq!(v["capabilities"]["embedding_models"], serde_json::json!([]));
    let (code, text, _) = run(&["inspect", fixture.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(text.contains("embeddings: not exported"), "{text}");
}

#[test]
fn every_subcommand_has_help() {
    for sub in [&["--help"][..], &["run", "--help"], &["inspect", "--help"]] {
        let (code, out, _) = run(sub);
        assert_eq!(code, 0);
        assert!(out.contains("Usage"), "{out}");
    }
}

/// Guest text never reaches the terminal raw: a guest that answers (or fails)
/// with a newline and `ESC[2J` could forge output lines or clear the screen.
#[test]
fn run_escapes_control_characters_from_the_guest() {
    let echo = guest("echo");
    let (code, out, err) = run(&[
        "run",
        echo.to_str().unwrap(),
        "--prompt",
        "line one\nline two\x1b[2J\r",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\x1b') && !out.contains('\r'), "{out:?}");
    // (echo answers with the prompt's words joined by spaces)
    assert!(out.contains("two\\u{1b}[2J"), "{out:?}");

    // An error message written by the guest (it quotes the configured value).
    let test_provider = guest("test_provider");
    let (code, out, err) = run(&[
        "run",
        test_provider.to_str().unwrap(),
        "--config",
        "init_fail=x\n[ok] forged line\x1b[2J",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(!err.contains('\x1b'), "{err:?}");
    assert!(
        !err.lines().any(|l| l.starts_with("[ok] forged line")),
        "{err:?}"
    );
    assert!(err.contains("x\\u{a}[ok] forged line\\u{1b}[2J"), "{err:?}");
}
