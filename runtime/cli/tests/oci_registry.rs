//! Components from a real OCI registry (Debian's `docker-registry`, distribution
//! 2.8, on loopback): `tamma push` prints the pinned reference, `tamma serve`
//! registers it by digest and answers; a wrong digest is refused; a registry
//! that went away keeps the last good version on reload; signatures with
//! `[trust] require_signature = true` (signed by `minisign`, Debian's package).
//! A registry behind a login (htpasswd, bcrypt) pulls with `registry_credentials`;
//! wrong credentials are a clear error that never shows the password. A plugin
//! manifest's `component = "oci://…"` is pulled the same way.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{chat, guest, Served};
use tamma_test_support::client;
use tamma_test_support::oci_registry::OciRegistry;

fn tamma(args: &[&str]) -> (i32, String, String) {
    tamma_env(args, &[])
}

/// `tamma push FILE oci://…:TAG`; the pinned reference it prints.
fn push(file: &Path, reference: &str) -> String {
    let (code, out, err) = tamma(&["push", file.to_str().unwrap(), reference]);
    assert_eq!(code, 0, "{err}");
    let pinned = out.trim().to_string();
    assert!(
        pinned.starts_with(&format!("{reference}@sha256:")),
        "{pinned}"
    );
    assert!(err.contains("digest sha256:"), "{err}");
    pinned
}

fn write_config(dir: &Path, component: &str, extra: &str) -> PathBuf {
    let file = dir.join("tamma.toml");
    std::fs::write(
        &file,
        format!(
            "[providers.pulled]\ncomponent = \"{component}\"\n\n[discovery]\nenvironment = false\nauto_refresh_ms = 50\n{extra}"
        ),
    )
    .unwrap();
    file
}

/// `tamma serve` on `config` with a compile (and OCI) cache of its own.
fn serve(config: &Path, cache: &Path) -> Served {
    Served::with_config(config, &[("TAMMA_CACHE_DIR", cache.to_str().unwrap())])
}

async fn answer(s: &Served, text: &str) -> (u16, String) {
    let r = client::post_json(s.addr, "/v1/chat/completions", &chat("pulled/echo", text))
        .await
        .unwrap();
    (r.status, r.text())
}

async fn until(what: &str, s: &Served, mut f: impl FnMut(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f(&s.stderr()) {
        assert!(Instant::now() < deadline, "never {what}: {:?}", s.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_component_is_served_by_digest_and_survives_the_registry_going_away() {
    let mut registry = OciRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let base = format!("oci://{}/tamma/echo", registry.host());
    let v1 = push(&guest("echo"), &format!("{base}:1"));

    let config = write_config(dir.path(), &v1, "");
    let mut s = serve(&config, &cache);
    s.wait_ready().await;
    let (status, body) = answer(&s, "from the registry").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("from the registry"), "{body}");
    // Cached by digest beside the compile cache.
    let cached = std::fs::read_dir(cache.join("oci/sha256")).unwrap().count();
    assert!(cached >= 2, "manifest and layer cached: {cached}");

    // A second version is pushed, the registry goes away, the file names v2.
    let v2 = push(&guest("test_provider"), &format!("{base}:2"));
    assert_ne!(v1, v2);
    registry.stop();
    write_config(dir.path(), &v2, "");
    until("reported the unreachable registry", &s, |lines| {
        lines.iter().any(|l| {
            l.contains("cannot reach the registry") && l.contains("kept_previous_version=true")
        })
    })
    .await;
    let (status, body) = answer(&s, "still v1").await;
    assert_eq!(status, 200, "the last good version keeps serving: {body}");
    assert!(body.contains("still v1"), "{body}");
    s.stop();

    // A restart with the registry still down: v1 comes from the cache.
    write_config(dir.path(), &v1, "");
    let mut s = serve(&config, &cache);
    s.wait_ready().await;
    let (status, body) = answer(&s, "from the cache").await;
    assert_eq!(status, 200, "{body}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_digest_is_refused_and_never_loaded() {
    let registry = OciRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("oci://{}/tamma/echo", registry.host());
    push(&guest("echo"), &format!("{base}:1"));
    let wrong = format!("{base}:1@sha256:{}", "ab".repeat(32));
    let mut s = Served::start(
        &["--listen", "127.0.0.1:0", "--dev-admin-without-auth"],
        &[("TAMMA_CACHE_DIR", dir.path().to_str().unwrap())],
    );
    s.wait_ready().await;
    let r = client::post_json(
        s.addr,
        "/admin/v1/providers",
        &json!({ "name": "pulled", "component": wrong }),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("INVALID_COMPONENT"), "{}", r.text());
    assert!(r.text().contains("pinned digest"), "{}", r.text());
    let gone = client::get(s.addr, "/admin/v1/providers/pulled")
        .await
        .unwrap();
    assert_eq!(gone.status, 404);
    // A malformed reference is the caller's mistake, said so.
    let r = client::post_json(
        s.addr,
        "/admin/v1/providers",
        &json!({ "name": "pulled", "component": format!("{base}@sha256:short") }),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    s.stop();
}

/// A passwordless minisign key pair in `dir`: the public key's base64 line.
fn keypair(dir: &Path) -> (PathBuf, String) {
    let (pk, sk) = (dir.join("minisign.pub"), dir.join("minisign.key"));
    let ok = Command::new("minisign")
        .args(["-G", "-W", "-f", "-p"])
        .arg(&pk)
        .arg("-s")
        .arg(&sk)
        .output()
        .expect("minisign runs (`make test` installs it)")
        .status
        .success();
    assert!(ok);
    let text = std::fs::read_to_string(&pk).unwrap();
    (sk, text.lines().nth(1).unwrap().trim().to_string())
}

fn sign(sk: &Path, file: &Path) {
    let ok = Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(sk)
        .arg("-m")
        .arg(file)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_require_signature_only_a_correctly_signed_component_registers() {
    let registry = OciRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let (sk, public) = keypair(dir.path());
    let base = format!("oci://{}/tamma/echo", registry.host());

    let signed = dir.path().join("signed.wasm");
    std::fs::copy(guest("echo"), &signed).unwrap();
    sign(&sk, &signed);
    let signed_ref = push(&signed, &format!("{base}:signed"));

    let unsigned = dir.path().join("unsigned.wasm");
    std::fs::copy(guest("echo"), &unsigned).unwrap();
    let unsigned_ref = push(&unsigned, &format!("{base}:unsigned"));

    // Tampered: another component carrying the echo component's signature.
    let (code, tampered_ref, err) = tamma(&[
        "push",
        guest("test_provider").to_str().unwrap(),
        &format!("{base}:tampered"),
        "--signature",
        dir.path().join("signed.wasm.minisig").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let tampered_ref = tampered_ref.trim().to_string();

    let trust = format!("\n[trust]\nkeys = [\"{public}\"]\nrequire_signature = true\n");
    let key_id = {
        let pk = std::fs::read_to_string(dir.path().join("minisign.pub")).unwrap();
        pk.lines()
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    for (reference, ok, why) in [
        (&signed_ref, true, ""),
        (&unsigned_ref, false, "is not signed"),
        (&tampered_ref, false, "does not verify"),
    ] {
        let config = write_config(dir.path(), reference, &trust);
        let cache = tempfile::tempdir().unwrap();
        let mut s = serve(&config, cache.path());
        if ok {
            s.wait_ready().await;
            let (status, body) = answer(&s, "signed?").await;
            assert_eq!(status, 200, "{body}");
        } else {
            until("refused the signature", &s, |lines| {
                lines.iter().any(|l| l.contains(why) && l.contains(&key_id))
            })
            .await;
            let (status, body) = answer(&s, "signed?").await;
            assert_ne!(status, 200, "{reference} must not load: {body}");
        }
        s.stop();
    }
}

/// `tamma` with extra environment variables.
fn tamma_env(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("tamma runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_with_a_login_pulls_with_credentials_and_never_shows_the_password() {
    const PASSWORD: &str = "Fleet-pw-7c1e90ab";
    const WRONG: &str = "Wrong-pw-44d2e1f0";
    let registry = OciRegistry::start_with_login("fleet", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("oci://{}/tamma/echo:locked", registry.host());
    let echo = guest("echo");
    let file = echo.to_str().unwrap();
    let push_args = [
        "push",
        file,
        &reference,
        "--username",
        "fleet",
        "--password-env",
        "REGISTRY_PW",
    ];

    // Anonymous and wrong pushes are refused, clearly, without the password.
    let (code, _, err) = tamma(&["push", file, &reference]);
    assert_ne!(code, 0, "an anonymous push must fail: {err}");
    assert!(err.contains("refused the credentials"), "{err}");
    let (code, _, err) = tamma_env(&push_args, &[("REGISTRY_PW", WRONG)]);
    assert_ne!(code, 0, "a wrong password must fail: {err}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(!err.contains(WRONG), "the password leaked: {err}");

    let (code, out, err) = tamma_env(&push_args, &[("REGISTRY_PW", PASSWORD)]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
    let pinned = out.trim().to_string();
    assert!(
        pinned.starts_with(&format!("{reference}@sha256:")),
        "{pinned}"
    );

    // `tamma serve` pulls with `registry_credentials = { …, password = { env } }`.
    let creds =
        "registry_credentials = { username = \"fleet\", password = { env = \"REGISTRY_PW\" } }\n";
    let file = dir.path().join("tamma.toml");
    let toml = format!(
        "[providers.pulled]\ncomponent = \"{pinned}\"\n{creds}\n[discovery]\nenvironment = false\nauto_refresh_ms = 50\n"
    );
    std::fs::write(&file, &toml).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut s = Served::with_config(
        &file,
        &[
            ("TAMMA_CACHE_DIR", cache.path().to_str().unwrap()),
            ("REGISTRY_PW", PASSWORD),
        ],
    );
    s.wait_ready().await;
    let (status, body) = answer(&s, "behind a login").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("behind a login"), "{body}");
    s.stop();
    let lines = s.stderr().join("\n");
    assert!(!lines.contains(PASSWORD), "the password leaked: {lines}");

    // Wrong credentials (and an empty cache): a clear error, no password.
    let cache = tempfile::tempdir().unwrap();
    let mut s = Served::with_config(
        &file,
        &[
            ("TAMMA_CACHE_DIR", cache.path().to_str().unwrap()),
            ("REGISTRY_PW", WRONG),
        ],
    );
    until("refused the credentials", &s, |lines| {
        lines.iter().any(|l| l.contains("refused the credentials"))
    })
    .await;
    let (status, body) = answer(&s, "locked out").await;
    assert_ne!(status, 200, "nothing may load: {body}");
    assert!(!body.contains(WRONG), "{body}");
    s.stop();
    let lines = s.stderr().join("\n");
    assert!(!lines.contains(WRONG), "the password leaked: {lines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_registers_an_oci_reference_and_refuses_a_path() {
    let registry = OciRegistry::start();
    let pinned = push(
        &guest("echo"),
        &format!("oci://{}/tamma/echo:admin", registry.host()),
    );
    let cache = tempfile::tempdir().unwrap();
    let s = Served::start(
        &["--listen", "127.0.0.1:0", "--dev-admin-without-auth"],
        &[("TAMMA_CACHE_DIR", cache.path().to_str().unwrap())],
    );
    s.wait_ready().await;

    let r = client::post_json(
        s.addr,
        "/admin/v1/providers",
        &json!({ "name": "remote", "component": pinned }),
    )
    .await
    .unwrap();
    assert!(r.status / 100 == 2, "{} {}", r.status, r.text());
    let r = client::post_json(
        s.addr,
        "/v1/chat/completions",
        &chat("remote/echo", "via admin"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("via admin"), "{}", r.text());

    // A file path would let an admin token load any file the server can read.
    let r = client::post_json(
        s.addr,
        "/admin/v1/providers",
        &json!({ "name": "local", "component": guest("echo").to_str().unwrap() }),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("only oci://"), "{}", r.text());
    // A malformed reference is a 400 naming the field, and nothing is lost.
    let r = client::post_json(
        s.addr,
        "/admin/v1/providers",
        &json!({ "name": "remote", "component": "oci://" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let r = client::post_json(
        s.addr,
        "/v1/chat/completions",
        &chat("remote/echo", "still"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_manifest_names_its_component_by_oci_reference() {
    const PASSWORD: &str = "Plugin-pw-5b07e3c2";
    let registry = OciRegistry::start_with_login("fleet", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("oci://{}/tamma/bot:1", registry.host());
    let (code, out, err) = tamma_env(
        &[
            "push",
            guest("echo").to_str().unwrap(),
            &reference,
            "--username",
            "fleet",
            "--password-env",
            "REGISTRY_PW",
        ],
        &[("REGISTRY_PW", PASSWORD)],
    );
    assert_eq!(code, 0, "{err}");
    let pinned = out.trim().to_string();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    // No bot.wasm: the manifest names the component in the registry.
    std::fs::write(
        plugins.join("bot.toml"),
        format!("name = \"bot\"\nversion = \"1.0.0\"\ncomponent = \"{pinned}\"\n[config]\nprefix = \"bot: \"\n"),
    )
    .unwrap();
    let file = dir.path().join("tamma.toml");
    std::fs::write(
        &file,
        format!(
            "[discovery]\nenvironment = false\nauto_refresh_ms = 50\nplugin_dir = {:?}\n\n\
             [plugins.bot]\nregistry_credentials = {{ username = \"fleet\", password = {{ env = \"REGISTRY_PW\" }} }}\n",
            plugins.to_str().unwrap()
        ),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let mut s = Served::with_config(
        &file,
        &[
            ("TAMMA_CACHE_DIR", cache.to_str().unwrap()),
            ("REGISTRY_PW", PASSWORD),
        ],
    );
    s.wait_ready().await;
    let r = client::post_json(
        s.addr,
        "/v1/chat/completions",
        &chat("bot/echo", "pulled plugin"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("bot: pulled plugin"), "{}", r.text());

    // A wrong digest in the manifest is refused, and the pinned version keeps serving.
    let wrong = format!("{reference}@sha256:{}", "0".repeat(64));
    std::fs::write(
        plugins.join("bot.toml"),
        format!("name = \"bot\"\nversion = \"1.0.1\"\ncomponent = \"{wrong}\"\n"),
    )
    .unwrap();
    until("refused the wrong digest", &s, |lines| {
        lines
            .iter()
            .any(|l| l.contains("pinned digest") && l.contains("kept_previous_version=true"))
    })
    .await;
    let r = client::post_json(
        s.addr,
        "/v1/chat/completions",
        &chat("bot/echo", "still pinned"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // A bot.wasm beside an oci:// manifest: two components for one name, refused.
    std::fs::copy(guest("echo"), plugins.join("bot.wasm")).unwrap();
    std::fs::write(
        plugins.join("bot.toml"),
        format!("name = \"bot\"\nversion = \"1.0.2\"\ncomponent = \"{pinned}\"\n"),
    )
    .unwrap();
    until("refused two components for one name", &s, |lines| {
        lines
            .iter()
            .any(|l| l.contains("name the component; keep one"))
    })
    .await;
    s.stop();
    let lines = s.stderr().join("\n");
    assert!(!lines.contains(PASSWORD), "the password leaked: {lines}");
}
