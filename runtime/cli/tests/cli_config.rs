//! `tamma schema` and `tamma validate`, run as the real binary.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tamma(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args(args)
        .output()
        .expect("tamma runs")
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tamma.toml")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn schema_prints_the_json_schema_of_the_file() {
    let out = tamma(&["schema"]);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for section in [
        "providers",
        "plugins",
        "health",
        "circuit_breaker",
        "lifecycle",
        "discovery",
        "server",
        "trust",
    ] {
        assert!(schema["properties"][section].is_object(), "{section}");
    }
    assert_eq!(schema["additionalProperties"], false);
    let text = stdout(&out);
    for key in [
        "memory_mib",
        "allowed_hosts",
        "auto_refresh_ms",
        "recovery_timeout_ms",
        "env",
        "file",
        "registry_credentials",
        "require_signature",
    ] {
        assert!(text.contains(&format!("\"{key}\"")), "{key}");
    }
    let manifest = tamma(&["schema", "--manifest"]);
    assert!(manifest.status.success());
    assert!(stdout(&manifest).contains("sha256"));
    // `component = "oci://…"` may stand in for `sha256` (and NAME.wasm).
    let m: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    assert!(m["properties"]["component"].is_object(), "{m}");
    assert!(
        !m["required"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("sha256")),
        "{m}"
    );
}

#[test]
fn the_example_file_validates() {
    let out = tamma(&["validate", example().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).starts_with("ok"), "{}", stdout(&out));
    let out = tamma(&["validate", "--json", example().to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["problems"], serde_json::json!([]));
}

#[test]
fn every_problem_is_printed_with_path_and_line_and_the_exit_code_is_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"[providers.openai]
component = "openai"
colour = "red"
[providers.openai.limits]
memory_mib = 100000
[providers.openai.secrets]
api_key = "sk-live-not-shown"

[health]
jitter = 2.0

[unknown_section]
"#,
    )
    .unwrap();
    let out = tamma(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "providers.openai.colour (line 3): unknown key `colour`, expected one of `component`, `enabled`, `config`, `secrets`, `limits`, `allowed_hosts`, `egress`, `registry_credentials`",
            "providers.openai.limits.memory_mib (line 5): must be between 1 and 4096, got 100000",
            "providers.openai.secrets.api_key (line 7): inline secret values are not allowed (the value is not shown); give `{ env = \"VAR\" }` or `{ file = \"/path\" }`",
            "health.jitter (line 10): must be between 0 and 1, got 2",
            "unknown_section (line 12): unknown key `unknown_section`, expected one of `providers`, `plugins`, `health`, `circuit_breaker`, `lifecycle`, `discovery`, `server`, `trust`",
        ],
        "{text}"
    );
    assert!(!text.contains("sk-live") && !String::from_utf8_lossy(&out.stderr).contains("sk-live"));

    let out = tamma(&["validate", "--json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 5);
    assert_eq!(problems[1]["path"], "providers.openai.limits.memory_mib");
    assert_eq!(problems[1]["line"], 5);
    assert_eq!(problems[1]["check"], "range");
}

#[test]
fn json_files_syntax_errors_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("t.json");
    std::fs::write(
        &json,
        "{\n  \"providers\": { \"e\": { \"component\": \"echo\", \"enabled\": \"yes\" } }\n}\n",
    )
    .unwrap();
    let out = tamma(&["validate", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).trim(),
        "providers.e.enabled (line 2): must be a boolean, got a string"
    );

    let toml = dir.path().join("t.toml");
    std::fs::write(&toml, "[providers.e]\ncomponent = \"echo\"\nenabled = \n").unwrap();
    let out = tamma(&["validate", toml.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("(line 3)"), "{}", stdout(&out));

    let out = tamma(&["validate", dir.path().join("nope.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("cannot read"), "{}", stdout(&out));
}
