//! `POST /v1/embeddings` in OpenAI's wire format, with deterministic vectors.
//!
//! Each input's vector depends only on its text, the model and the length: a
//! seed from the text's bytes, component `i` is `sin(seed + i)`, and the vector is
//! normalised to length 1 (as OpenAI's are). `encoding_format: "base64"` packs the
//! same floats as little-endian `f32`s, which is what the official SDKs ask for
//! by default. Usage counts whitespace-separated words.

use base64::Engine as _;
use serde_json::{json, Value};

/// Embedding models served (others get a 404 `model_not_found`).
pub const EMBEDDING_MODELS: [&str; 3] = [
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
];

/// Inputs accepted in one request, as the real API caps them.
const MAX_INPUTS: usize = 2048;

fn native_dimensions(model: &str) -> usize {
    if model == "text-embedding-3-large" {
        3072
    } else {
        1536
    }
}

/// The deterministic unit vector of `text`.
pub fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let seed = text
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 10_007;
    let raw: Vec<f64> = (0..dimensions)
        .map(|i| ((seed + i as u64) as f64).sin())
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.iter().map(|x| (x / norm) as f32).collect()
}

/// The answer, or `Err((status, message, code))` for a request the real API refuses.
pub fn answer(body: &Value) -> Result<Value, (u16, String, &'static str)> {
    let bad = |m: &str| (400, m.to_string(), "invalid_request_error");
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("model: Field required"))?;
    if !EMBEDDING_MODELS.contains(&model) {
        return Err((
            404,
            format!("The model `{model}` does not exist or you do not have access to it."),
            "model_not_found",
        ));
    }
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("input: this mock accepts strings only"))?,
        _ => return Err(bad("input: Field required")),
    };
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        return Err(bad("input: must hold 1 to 2048 items"));
    }
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => native_dimensions(model),
        Some(_) if model == "text-embedding-ada-002" => {
            return Err(bad("This model does not support specifying dimensions."))
        }
        Some(d) => d
            .as_u64()
            .map(|d| d as usize)
            .filter(|d| (1..=native_dimensions(model)).contains(d))
            .ok_or_else(|| bad("dimensions: out of range"))?,
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(bad(&format!("encoding_format: unknown value `{other}`"))),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let v = vector(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}
