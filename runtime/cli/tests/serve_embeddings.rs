//! `POST /v1/embeddings` on a real `tamma serve`: the official `openai` Python
//! client (pinned in tests/requirements.txt, installed by `make test` into
//! target/py-test-venv) calls `embeddings.create` with one input and a batch, in
//! `float` and `base64`, through the built-in `openai` provider against the mock
//! upstream and through echo; a 0.1.0 component (chat only) answers 400
//! `unsupported`; token-id input is a 400; `/v1/models` lists embedding models
//! apart; the admin snapshot shows the export.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};
use tamma_mock_upstream::MockUpstream;
use tamma_test_support::client;

mod support;
use support::{root, Served};

const KEY: &str = "sk-embeddings-test-91c2";
const ADMIN: &str = "admin-token-for-the-embeddings-test";

fn python() -> Option<PathBuf> {
    let venv = root().join("target/py-test-venv/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let ok = Command::new(&python)
        .args(["-c", "import openai"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "the `openai` Python package is missing (make test installs it)"
        );
        eprintln!("skipped: the `openai` Python package is not installed (make test installs it)");
        return None;
    }
    Some(python)
}

async fn serve(mock: &MockUpstream, dir: &std::path::Path) -> Served {
    let file = dir.join("tamma.toml");
    let fixture = root().join("tests/fixtures/echo-0.1.0.wasm");
    std::fs::write(
        &file,
        format!(
            r#"
[providers.openai]
component = "openai"
allowed_hosts = ["{url}"]
config = {{ base_url = "{base}", models = "gpt-mock" }}
secrets = {{ api_key = {{ env = "TAMMA_TEST_UPSTREAM_KEY" }} }}

[providers.echo]
component = "echo"

[providers.old-echo]
component = "{fixture}"

[[server.admin.tokens]]
name = "reader"
role = "read"
token = {{ value = "{admin}" }}

[discovery]
environment = false
"#,
            url = mock.url(),
            base = mock.base_url(),
            fixture = fixture.display(),
            admin = ADMIN,
        ),
    )
    .unwrap();
    let s = Served::with_config(&file, &[("TAMMA_TEST_UPSTREAM_KEY", KEY)]);
    s.wait_ready().await;
    s
}

async fn post(s: &Served, body: Value) -> (u16, Value) {
    let r = client::post_json(s.addr, "/v1/embeddings", &body)
        .await
        .unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_client_embeds_through_tamma_serve() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let mut s = serve(&mock, dir.path()).await;

    let script = r#"
import base64, json, struct, sys, openai
c = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0)
out = {}
one = c.embeddings.create(model="openai/text-embedding-3-small", input="one input", encoding_format="float")
out["one"] = {"n": len(one.data), "dims": len(one.data[0].embedding), "usage": one.usage.prompt_tokens,
              "total": one.usage.total_tokens, "model": one.model, "first": one.data[0].embedding[:3]}
batch = c.embeddings.create(model="openai/text-embedding-3-small", input=["a b", "c d e", "a b"], dimensions=64, encoding_format="float")
out["batch"] = {"n": len(batch.data), "index": [d.index for d in batch.data],
                "dims": [len(d.embedding) for d in batch.data],
                "same": batch.data[0].embedding == batch.data[2].embedding,
                "differs": batch.data[0].embedding != batch.data[1].embedding,
                "usage": batch.usage.prompt_tokens}
# The client's default: it asks for base64 and decodes it itself.
dflt = c.embeddings.create(model="openai/text-embedding-3-small", input=["one input", "x"])
out["default_b64"] = {"n": len(dflt.data), "first": dflt.data[0].embedding[:3]}
# Explicit base64: the raw base64 strings come back.
raw = c.embeddings.create(model="echo/echo-embed-1", input=["hello world", "hi"], encoding_format="base64")
vec = struct.unpack("<8f", base64.b64decode(raw.data[0].embedding))
out["echo_b64"] = {"n": len(raw.data), "norm": sum(x * x for x in vec), "model": raw.model}
flt = c.embeddings.create(model="echo/echo-embed-1", input="hello world", encoding_format="float")
out["echo_float_matches"] = all(abs(a - b) < 1e-6 for a, b in zip(flt.data[0].embedding, vec))
try:
    c.embeddings.create(model="old-echo/echo-1", input="x")
except openai.BadRequestError as e:
    out["old"] = {"status": e.status_code, "code": e.code}
try:
    c.embeddings.create(model="openai/text-embedding-3-small", input=[[1, 2, 3]])
except openai.BadRequestError as e:
    out["tokens"] = {"status": e.status_code, "param": e.param}
try:
    c.embeddings.create(model="nope/x", input="x")
except openai.NotFoundError as e:
    out["not_found"] = e.status_code
print(json.dumps(out))
"#;
    let url = format!("http://{}", s.addr);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-c", script, &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{:?}",
        String::from_utf8_lossy(&out.stderr),
        s.stderr()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = tamma_mock_upstream::embedding_vector("one input", 1536);
    let close = |got: &Value| {
        got.as_array()
            .unwrap()
            .iter()
            .zip(&want)
            .all(|(g, w)| (g.as_f64().unwrap() - f64::from(*w)).abs() < 1e-6)
    };
    assert_eq!(v["one"]["n"], 1, "{v}");
    assert_eq!(v["one"]["dims"], 1536);
    assert_eq!(v["one"]["usage"], 2);
    assert_eq!(v["one"]["total"], 2);
    assert_eq!(v["one"]["model"], "openai/text-embedding-3-small");
    assert!(close(&v["one"]["first"]), "the upstream's vector: {v}");
    assert_eq!(v["batch"]["n"], 3);
    assert_eq!(v["batch"]["index"], json!([0, 1, 2]));
    assert_eq!(v["batch"]["dims"], json!([64, 64, 64]));
    assert_eq!(v["batch"]["same"], true);
    assert_eq!(v["batch"]["differs"], true);
    assert_eq!(v["batch"]["usage"], 7);
    assert_eq!(v["default_b64"]["n"], 2);
    assert!(
        close(&v["default_b64"]["first"]),
        "base64 decodes to the same floats: {v}"
    );
    assert_eq!(v["echo_b64"]["n"], 2);
    assert_eq!(v["echo_b64"]["model"], "echo/echo-embed-1");
    assert!((v["echo_b64"]["norm"].as_f64().unwrap() - 1.0).abs() < 1e-4);
    assert_eq!(v["echo_float_matches"], true);
    assert_eq!(v["old"]["status"], 400);
    assert_eq!(v["old"]["code"], "unsupported");
    assert_eq!(v["tokens"]["status"], 400);
    assert_eq!(v["tokens"]["param"], "input");
    assert_eq!(v["not_found"], 404);

    // What reached the upstream: floats asked for, the dimensions passed on.
    let upstream: Vec<Value> = mock
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/embeddings")
        .map(|r| r.json())
        .collect();
    assert_eq!(upstream.len(), 3, "{upstream:?}");
    assert!(upstream.iter().all(|b| b["encoding_format"] == "float"));
    assert_eq!(upstream[1]["dimensions"], 64);
    assert_eq!(upstream[1]["model"], "text-embedding-3-small");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_and_admin_show_embedding_models_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let mut s = serve(&mock, dir.path()).await;
    let r = client::get(s.addr, "/v1/models").await.unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let ids: Vec<(&str, Option<&str>)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["tamma"]["kind"].as_str()))
        .collect();
    assert!(
        ids.contains(&("echo/echo-embed-1", Some("embedding"))),
        "{ids:?}"
    );
    assert!(ids.contains(&("echo/echo-1", None)), "{ids:?}");
    assert!(ids.contains(&("openai/text-embedding-3-large", Some("embedding"))));
    assert!(!ids
        .iter()
        .any(|(id, _)| id.starts_with("old-echo/echo-embed")));

    let (status, body) = post(
        &s,
        json!({"model": "echo-embed-1", "input": ["bare", "model id"]}),
    )
    .await;
    assert_eq!(status, 200, "a bare embedding model id routes: {body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["usage"]["prompt_tokens"], 3);

    let auth = format!("Bearer {ADMIN}");
    let r = client::request(
        s.addr,
        "GET",
        "/admin/v1/providers",
        &[("authorization", &auth)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let list = v["providers"].as_array().unwrap().clone();
    let find = |name: &str| list.iter().find(|p| p["name"] == name).unwrap().clone();
    let echo = find("echo");
    assert_eq!(echo["capabilities"]["embeddings"], true, "{echo}");
    assert_eq!(echo["metadata"]["contract_version"], "0.2.0");
    assert_eq!(echo["capabilities"]["embedding_models"][0]["dimensions"], 8);
    let old = find("old-echo");
    assert_eq!(old["capabilities"]["embeddings"], false);
    assert_eq!(old["metadata"]["contract_version"], "0.1.0");

    let r = client::get(s.addr, "/metrics").await.unwrap();
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.lines()
            .any(|l| l.contains("endpoint=\"embeddings\"") && l.contains("status=\"200\"")),
        "embeddings are counted"
    );
    s.stop();
}
