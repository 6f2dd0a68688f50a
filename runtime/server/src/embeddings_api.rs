//! `POST /v1/embeddings`, in OpenAI's shape.
//!
//! `input` is a string or a list of strings; token-id arrays (a list of integers,
//! or of such lists) are refused with 400: the provider contract carries text.
//! `encoding_format` `float` (the default) or `base64` (little-endian `f32`s, what
//! the official SDKs ask for unless told otherwise), `dimensions` and `user` are
//! passed on. Routing, client keys and their limits, circuit breakers, metrics
//! and the access log work as for chat completions; only input tokens are charged.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use super::api_error::ApiError;
use super::auth;
use super::client_limits;
use super::request_tracing::genai;
use super::routing;
use super::{read_body, AppState};
use tamma_sandbox::types::{EmbeddingRequest, EmbeddingResponse};

/// The endpoint's label in `tamma_http_requests_total` and the latency histogram.
const ENDPOINT: &str = "embeddings";

/// Inputs accepted in one request (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;

/// How the vectors are written in the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodingFormat {
    /// JSON arrays of numbers.
    Float,
    /// Base64 of the little-endian `f32` bytes.
    Base64,
}

/// A parsed embeddings request.
#[derive(Debug)]
pub struct EmbeddingsCall {
    /// What the client asked for (`<provider>/<model>`, a route or a bare id).
    pub model: String,
    /// The request for the provider (its `model` is set per target).
    pub request: EmbeddingRequest,
    /// How to write the vectors.
    pub encoding: EncodingFormat,
}

fn bad(msg: impl Into<String>, param: &str) -> ApiError {
    ApiError::bad_request(msg).param(param)
}

fn inputs(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let token_ids = || {
        bad(
            "input: token-id arrays are not supported by this gateway; send the text",
            "input",
        )
    };
    let list = match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(bad("input must not be an empty list", "input"));
            }
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(_) | Value::Array(_) => Err(token_ids()),
                    _ => Err(bad("input must be a string or a list of strings", "input")),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        None | Some(Value::Null) => return Err(bad("you must provide an input", "input")),
        Some(_) => return Err(bad("input must be a string or a list of strings", "input")),
    };
    if list.len() > MAX_INPUTS {
        return Err(bad(
            format!(
                "input holds {} items; at most {MAX_INPUTS} are accepted",
                list.len()
            ),
            "input",
        ));
    }
    if let Some(i) = list.iter().position(|s| s.is_empty()) {
        return Err(bad(format!("input[{i}] must not be empty"), "input"));
    }
    Ok(list)
}

fn dimensions(obj: &Map<String, Value>) -> Result<Option<u32>, ApiError> {
    match obj.get("dimensions") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
            .map(|n| Some(n as u32))
            .ok_or_else(|| bad("dimensions must be a positive integer", "dimensions")),
    }
}

/// Parse an embeddings request body.
pub fn parse_embeddings_request(body: &[u8]) -> Result<EmbeddingsCall, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("you must provide a model parameter", "model"))?
        .to_string();
    let encoding = match obj.get("encoding_format") {
        None | Some(Value::Null) => EncodingFormat::Float,
        Some(Value::String(s)) if s == "float" => EncodingFormat::Float,
        Some(Value::String(s)) if s == "base64" => EncodingFormat::Base64,
        Some(_) => {
            return Err(bad(
                "encoding_format must be \"float\" or \"base64\"",
                "encoding_format",
            ))
        }
    };
    let mut metadata = Vec::new();
    match obj.get("user") {
        None | Some(Value::Null) => {}
        Some(Value::String(u)) => metadata.push(("user".to_string(), u.clone())),
        Some(_) => return Err(bad("user must be a string", "user")),
    }
    Ok(EmbeddingsCall {
        model,
        request: EmbeddingRequest {
            model: String::new(),
            inputs: inputs(obj.get("input"))?,
            dimensions: dimensions(obj)?,
            metadata,
        },
        encoding,
    })
}

/// One vector as OpenAI writes it. `f32`s are serialised as `f32` (shortest
/// form), not widened to `f64` as `serde_json::Value` would.
#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Float(&'a [f32]),
    Base64(String),
}

#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(Serialize)]
struct UsageJson {
    prompt_tokens: u32,
    total_tokens: u32,
}

#[derive(Serialize)]
struct ListJson<'a> {
    object: &'static str,
    data: Vec<Item<'a>>,
    model: &'a str,
    usage: UsageJson,
}

fn base64_of(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The `list` of `embedding` objects, as JSON bytes.
pub fn embeddings_json(model: &str, r: &EmbeddingResponse, encoding: EncodingFormat) -> Vec<u8> {
    let data = r
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| Item {
            object: "embedding",
            index,
            embedding: match encoding {
                EncodingFormat::Float => Vector::Float(v),
                EncodingFormat::Base64 => Vector::Base64(base64_of(v)),
            },
        })
        .collect();
    let list = ListJson {
        object: "list",
        data,
        model,
        usage: UsageJson {
            prompt_tokens: r.usage.input_tokens,
            total_tokens: r.usage.total_tokens.max(r.usage.input_tokens),
        },
    };
    // Serialising plain structs of strings and finite numbers cannot fail.
    serde_json::to_vec(&list).unwrap_or_default()
}

/// An embedding model in `GET /v1/models`: OpenAI's `model` object, with
/// `tamma.kind = "embedding"` and its dimensions (chat models have no `kind`).
pub fn model_json(
    id: &str,
    created: u64,
    owner: &str,
    m: &tamma_sandbox::types::EmbeddingModelInfo,
) -> Value {
    serde_json::json!({
        "id": id,
        "object": "model",
        "created": created,
        "owned_by": owner,
        "tamma": {
            "kind": "embedding",
            "name": m.name,
            "dimensions": m.dimensions,
            "max_input_tokens": m.max_input_tokens,
        },
    })
}

fn non_finite(provider: &str) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::BAD_GATEWAY,
        "server_error",
        "the provider returned a vector with a non-finite number",
    )
    .code("provider_error");
    e.provider = Some(provider.to_string());
    e
}

fn failed(state: &AppState, started: Instant, provider: &str, e: ApiError) -> Response {
    crate::completion_call::error_response(state, ENDPOINT, started, provider, e)
}

/// `POST /v1/embeddings`
pub async fn embeddings(State(state): State<AppState>, req: Request<Body>) -> Response {
    let started = Instant::now();
    let caller = auth::caller_of(&req);
    let access = auth::access_of(&req);
    let config = state.config.load();
    let body = match read_body(&state, req.into_body(), config.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return failed(&state, started, "", e),
    };
    let call = match parse_embeddings_request(&body) {
        Ok(c) => c,
        Err(e) => return failed(&state, started, "", e),
    };
    let span = tracing::Span::current();
    genai::embeddings_request(&span, &call.model);
    let plan = match routing::plan(&state, &config, &call.model) {
        Ok(p) => p,
        Err(e) => return failed(&state, started, "", e),
    };
    let mut ticket = match client_limits::admit_request(&state, &caller, &plan, access).await {
        Ok(t) => t,
        Err(e) => return failed(&state, started, "", e),
    };
    let (served, result) = routing::embed(&state, &plan, &call.request).await;
    if let Some(a) = ticket.access() {
        let attempts = served.attempts;
        a.update(|f| f.attempts = Some(attempts));
    }
    let mut response = match result {
        Ok((target, resp)) if resp.vectors.iter().flatten().any(|x| !x.is_finite()) => failed(
            &state,
            started,
            &target.provider,
            non_finite(&target.provider),
        ),
        Ok((target, resp)) => {
            let label = client_limits::model_label(&state, &target.provider, &target.model);
            ticket
                .charge(
                    &target.provider,
                    &label,
                    u64::from(resp.usage.input_tokens),
                    0,
                )
                .await;
            let model = target.served_model(&resp.model);
            genai::target(&span, &target.provider, &model);
            let body = embeddings_json(&model, &resp, call.encoding);
            state
                .metrics
                .record_request(ENDPOINT, &target.provider, 200, started.elapsed());
            crate::completion_call::json_answer(body, &target.provider)
        }
        Err(e) => {
            let provider = e.provider.clone().unwrap_or_default();
            failed(&state, started, &provider, e)
        }
    };
    response.extensions_mut().insert(served);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_sandbox::types::EmbeddingUsage;

    fn parse(body: &str) -> Result<EmbeddingsCall, ApiError> {
        parse_embeddings_request(body.as_bytes())
    }

    #[test]
    fn one_string_or_a_list_of_strings() {
        let one = parse(r#"{"model":"echo/echo-embed-1","input":"hello world"}"#).unwrap();
        assert_eq!(one.model, "echo/echo-embed-1");
        assert_eq!(one.request.inputs, vec!["hello world"]);
        assert_eq!(one.encoding, EncodingFormat::Float);
        assert_eq!(one.request.dimensions, None);
        let many = parse(
            r#"{"model":"m","input":["a","b"],"encoding_format":"base64","dimensions":256,"user":"u7","extra":1}"#,
        )
        .unwrap();
        assert_eq!(many.request.inputs, vec!["a", "b"]);
        assert_eq!(many.encoding, EncodingFormat::Base64);
        assert_eq!(many.request.dimensions, Some(256));
        assert_eq!(many.request.metadata, vec![("user".into(), "u7".into())]);
    }

    #[test]
    fn token_ids_and_bad_fields_are_400_naming_the_parameter() {
        let cases = [
            (r#"{"model":"m","input":[1,2,3]}"#, "input", "token-id"),
            (r#"{"model":"m","input":[[1,2],[3]]}"#, "input", "token-id"),
            (r#"{"model":"m","input":[]}"#, "input", "empty"),
            (r#"{"model":"m","input":["a",""]}"#, "input", "input[1]"),
            (r#"{"model":"m","input":{"a":1}}"#, "input", "string"),
            (r#"{"model":"m"}"#, "input", "provide an input"),
            (r#"{"input":"x"}"#, "model", "model"),
            (
                r#"{"model":"m","input":"x","encoding_format":"int8"}"#,
                "encoding_format",
                "base64",
            ),
            (
                r#"{"model":"m","input":"x","dimensions":0}"#,
                "dimensions",
                "positive",
            ),
            (
                r#"{"model":"m","input":"x","dimensions":"8"}"#,
                "dimensions",
                "positive",
            ),
            (r#"{"model":"m","input":"x","user":5}"#, "user", "string"),
        ];
        for (body, param, words) in cases {
            let e = parse(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
            assert!(e.message.contains(words), "{body}: {}", e.message);
        }
        assert_eq!(parse("[1]").unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(
            parse("not json").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let too_many = format!(
            r#"{{"model":"m","input":[{}]}}"#,
            vec!["\"x\""; MAX_INPUTS + 1].join(",")
        );
        assert!(parse(&too_many).unwrap_err().message.contains("at most"));
    }

    #[test]
    fn answer_has_openai_shape_in_both_encodings() {
        let r = EmbeddingResponse {
            model: "e".into(),
            vectors: vec![vec![0.1, -2.5], vec![1.0, 0.0]],
            usage: EmbeddingUsage {
                input_tokens: 3,
                total_tokens: 3,
            },
        };
        let v: Value =
            serde_json::from_slice(&embeddings_json("p/e", &r, EncodingFormat::Float)).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "p/e");
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert_eq!(v["usage"]["total_tokens"], 3);
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["object"], "embedding");
        // Written as the f32 it is (0.1, not 0.10000000149011612).
        let text = String::from_utf8(embeddings_json("p/e", &r, EncodingFormat::Float)).unwrap();
        assert!(text.contains("[0.1,-2.5]"), "{text}");
        let b: Value =
            serde_json::from_slice(&embeddings_json("p/e", &r, EncodingFormat::Base64)).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats, vec![0.1, -2.5]);
    }
}
