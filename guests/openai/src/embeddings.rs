//! OpenAI's `POST /embeddings` wire format: the request body, and the answer
//! turned into one vector per input.
//!
//! The guest always asks the upstream for `encoding_format: "float"`: the host
//! encodes base64 for clients that ask for it, so the guest handles one shape.

use serde_json::{json, Value};
use tamma_guest_sdk::{
    EmbeddingModelInfo, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, ProviderError,
};

use crate::wire::{parse_json, u32_at};

/// Models advertised when the config names none.
pub const DEFAULT_MODELS: [&str; 3] = [
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
];

/// What is known about an embedding model id (unknown ids: 1536 dimensions).
pub fn model_info(id: &str) -> EmbeddingModelInfo {
    let dimensions = match id {
        "text-embedding-3-large" => 3072,
        _ => 1536,
    };
    EmbeddingModelInfo::new(id, dimensions, 8191)
}

/// The JSON body of `POST /embeddings`.
pub fn body(req: &EmbeddingRequest, model: &str) -> Value {
    let mut body = json!({
        "model": model,
        "input": req.inputs,
        "encoding_format": "float",
    });
    if let Some(d) = req.dimensions {
        body["dimensions"] = json!(d);
    }
    if let Some((_, user)) = req.metadata.iter().find(|(k, _)| k == "user") {
        body["user"] = json!(user);
    }
    body
}

/// The vectors of an answer, ordered by each item's `index` (the API does not
/// promise the order of `data`).
pub fn parse(body: &[u8], model: &str, inputs: usize) -> Result<EmbeddingResponse, ProviderError> {
    let v = parse_json(body, "embeddings answer")?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::provider("embeddings answer has no `data` list"))?;
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for item in data {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < inputs)
            .ok_or_else(|| {
                ProviderError::provider("embeddings item has a missing or bad `index`")
            })?;
        let floats = item
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ProviderError::provider("embeddings item has no `embedding` list of numbers")
            })?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| ProviderError::provider("embeddings item holds a non-number"))?;
        vectors[index] = Some(floats);
    }
    let vectors = vectors
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ProviderError::provider("embeddings answer lacks a vector for an input"))?;
    let usage = v.get("usage").cloned().unwrap_or(Value::Null);
    let input_tokens = u32_at(&usage, "prompt_tokens").unwrap_or(0);
    Ok(EmbeddingResponse {
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(model)
            .to_string(),
        vectors,
        usage: EmbeddingUsage {
            input_tokens,
            total_tokens: u32_at(&usage, "total_tokens").unwrap_or(input_tokens),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_asks_for_floats_and_passes_dimensions() {
        let req = EmbeddingRequest {
            model: String::new(),
            inputs: vec!["a".into(), "b".into()],
            dimensions: Some(256),
            metadata: vec![("user".into(), "u1".into())],
        };
        let b = body(&req, "text-embedding-3-small");
        assert_eq!(b["input"], json!(["a", "b"]));
        assert_eq!(b["encoding_format"], "float");
        assert_eq!(b["dimensions"], 256);
        assert_eq!(b["user"], "u1");
    }

    #[test]
    fn parse_orders_by_index_and_checks_every_input() {
        let answer = br#"{"object":"list","model":"m","usage":{"prompt_tokens":3,"total_tokens":3},
            "data":[{"object":"embedding","index":1,"embedding":[0.5]},
                    {"object":"embedding","index":0,"embedding":[0.25]}]}"#;
        let r = parse(answer, "x", 2).unwrap();
        assert_eq!(r.vectors, vec![vec![0.25], vec![0.5]]);
        assert_eq!(r.usage.input_tokens, 3);
        assert_eq!(r.model, "m");
        assert!(parse(answer, "x", 3).is_err());
        assert!(parse(br#"{"data":[{"index":0,"embedding":["x"]}]}"#, "x", 1).is_err());
        assert!(parse(b"not json", "x", 1).is_err());
    }
}
