//! `tamma run --allow-host URL --secret NAME=ENV_VAR`: the openai provider against
//! the mock upstream (real HTTP on loopback), and the error without the flag.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use tamma_mock_upstream::MockUpstream;

const KEY: &str = "sk-run-egress-test-5d21";

async fn tamma_run(
    args: Vec<String>,
    envs: Vec<(&'static str, &'static str)>,
) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tamma"));
    cmd.arg("run")
        .args(&args)
        .env(
            "TAMMA_CACHE_DIR",
            std::env::temp_dir().join("tamma-cli-test-cache"),
        )
        .envs(envs);
    // The mock upstream answers on this runtime while the process runs.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("tamma runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn openai_args(mock: &MockUpstream) -> Vec<String> {
    let openai = support::guest("openai");
    vec![
        openai.to_str().unwrap().to_string(),
        "--config".into(),
        format!("base_url={}", mock.base_url()),
        "--config".into(),
        "models=gpt-mock".into(),
        "--prompt".into(),
        "hello upstream".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reaches_an_allowed_host_with_a_secret_from_the_environment() {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let mut args = openai_args(&mock);
    args.extend([
        "--allow-host".into(),
        mock.url(),
        "--secret".into(),
        "api_key=TAMMA_RUN_TEST_KEY".into(),
    ]);
    let (code, out, err) = tamma_run(args, vec![("TAMMA_RUN_TEST_KEY", KEY)]).await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.trim().is_empty(), "no answer: {err}");
    assert!(err.contains("finish stop"), "{err}");
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].body_text().contains("hello upstream"));
    // The key reached the upstream but never the output.
    assert!(!out.contains(KEY) && !err.contains(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allow_host_the_error_names_the_flag() {
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let mut args = openai_args(&mock);
    args.extend(["--secret".into(), "api_key=TAMMA_RUN_TEST_KEY".into()]);
    let (code, _, err) = tamma_run(args, vec![("TAMMA_RUN_TEST_KEY", KEY)]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--allow-host"), "{err}");
    assert!(
        err.contains(&mock.url()),
        "the hint suggests the base URL's origin: {err}"
    );
    assert!(mock.requests().is_empty(), "nothing left the sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_whose_variable_is_unset_is_refused_by_name() {
    let mock = MockUpstream::start().await;
    let mut args = openai_args(&mock);
    args.extend([
        "--allow-host".into(),
        mock.url(),
        "--secret".into(),
        "api_key=TAMMA_RUN_TEST_UNSET_VAR".into(),
    ]);
    let (code, _, err) = tamma_run(args, vec![]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("INVALID_CONFIG"), "{err}");
    assert!(err.contains("TAMMA_RUN_TEST_UNSET_VAR is not set"), "{err}");
}
