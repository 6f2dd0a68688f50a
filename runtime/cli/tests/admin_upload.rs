//! The admin API's raw upload: the documented `curl --data-binary @FILE` command
//! (`Content-Type: application/wasm`, metadata in the query and the
//! `Tamma-Registration` header) registers a JavaScript component of many MB,
//! which the base64-in-a-shell-argument command could not.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use support::{chat, guest, Served};
use tamma_test_support::client;

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_js_component_uploads_with_curl_data_binary() {
    let js = guest("js_echo");
    let size = std::fs::metadata(&js).unwrap().len();
    assert!(size > 5_000_000, "a JS component is large: {size}");
    let mut s = Served::start(
        &["--listen", "127.0.0.1:0", "--dev-admin-without-auth"],
        &[],
    );
    s.wait_ready().await;
    let url = format!(
        "http://{}/admin/v1/providers?name=js-echo&version=1.2.0&config=greeting%3Dhi",
        s.addr
    );
    let (status, body) = curl(&[
        "--data-binary",
        &format!("@{}", js.display()),
        "-H",
        "content-type: application/wasm",
        "-H",
        r#"tamma-registration: {"limits": {"max_concurrency": 2}}"#,
        &url,
    ]);
    assert_eq!(status, 201, "{body}");
    let snap: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(snap["name"], "js-echo");
    assert_eq!(snap["metadata"]["version"], "1.2.0", "{snap}");
    assert_eq!(snap["metadata"]["component_size"], size, "{snap}");

    let model = format!(
        "js-echo/{}",
        snap["capabilities"]["models"][0]["id"].as_str().unwrap()
    );
    let r = client::post_json(s.addr, "/v1/chat/completions", &chat(&model, "raw upload"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("raw upload"), "{}", r.text());

    // Replacing works the same way (PUT), and bad metadata is named.
    let put = format!("http://{}/admin/v1/providers/js-echo?version=1.2.1", s.addr);
    let (status, body) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", js.display()),
        "-H",
        "content-type: application/wasm",
        &put,
    ]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1.2.1"), "{body}");
    let bad = format!("http://{}/admin/v1/providers?name=x&colour=red", s.addr);
    let (status, body) = curl(&[
        "--data-binary",
        &format!("@{}", js.display()),
        "-H",
        "content-type: application/wasm",
        &bad,
    ]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("colour"), "{body}");
    s.stop();
}
