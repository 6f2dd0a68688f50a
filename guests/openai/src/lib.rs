//! `openai`: the OpenAI chat-completions API, and every server that speaks it
//! (OpenAI, OpenRouter, vLLM, llama.cpp, Ollama, ...), chosen by `base_url`.
//!
//! Config keys (all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `base_url` | `https://api.openai.com/v1` | requests go to `{base_url}/chat/completions` and `{base_url}/models` |
//! | `api_key_secret` | `api_key` | name of the host secret sent as `Authorization: Bearer {{secret:NAME}}`; empty = no `Authorization` header (local servers) |
//! | `models` | `gpt-4o-mini,gpt-4o,gpt-4.1,gpt-4.1-mini` | comma list advertised in `capabilities` |
//! | `default_model` | first of `models` | used when a request names no model |
//! | `context_window`, `max_output_tokens` | 128000, 16384 | limits advertised for models this guest does not know |
//! | `stream_usage` | `true` | ask for a usage chunk at the end of streams (`stream_options.include_usage`); turn off for servers that reject it |
//! | `complete_via_stream` | `false` | implement `complete` over the streaming API and reassemble the answer |
//! | `embedding_models` | `text-embedding-3-small,text-embedding-3-large,text-embedding-ada-002` | comma list of embedding models (`{base_url}/embeddings`); empty = none |
//! | `default_embedding_model` | first of `embedding_models` | used when an embedding request names no model |
//!
//! The API key never enters the guest: a config holding `api_key` is refused, and
//! the header carries a `{{secret:...}}` placeholder that the host replaces when the
//! request leaves the sandbox. Timeouts are the host's (its per-call deadline).

mod embeddings;
mod wire;

use tamma_guest_sdk::http::{self, join_url, Request, Response};
use tamma_guest_sdk::{
    collect_stream, debug, export_provider, Capabilities, ChunkStream, CompletionRequest,
    CompletionResponse, Config, EmbeddingModelInfo, EmbeddingRequest, EmbeddingResponse, Health,
    ModelInfo, Provider, ProviderError,
};

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
const DEFAULT_MODELS: [&str; 4] = ["gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini"];

struct OpenAi {
    base_url: String,
    /// `Authorization` header value (with the secret placeholder), if any.
    authorization: Option<String>,
    models: Vec<ModelInfo>,
    default_model: Option<String>,
    stream_usage: bool,
    complete_via_stream: bool,
    embedding_models: Vec<EmbeddingModelInfo>,
    default_embedding_model: Option<String>,
}

impl OpenAi {
    fn url(&self, path: &str) -> String {
        join_url(&self.base_url, path)
    }

    fn with_auth(&self, req: Request) -> Request {
        match &self.authorization {
            Some(value) => req.header("authorization", value.clone()),
            None => req,
        }
    }

    fn model_for(&self, req: &CompletionRequest) -> Result<String, ProviderError> {
        if !req.model.trim().is_empty() {
            return Ok(req.model.clone());
        }
        self.default_model.clone().ok_or_else(|| {
            ProviderError::invalid_request(
                "the request names no model and no default_model is configured",
            )
        })
    }

    /// `POST /chat/completions`; a non-2xx answer is turned into its error here.
    fn post_chat(
        &self,
        req: &CompletionRequest,
        stream: bool,
    ) -> Result<(Response, String), ProviderError> {
        let model = self.model_for(req)?;
        let body = wire::chat_body(
            req,
            &wire::BodyOptions {
                model: &model,
                stream,
                stream_usage: self.stream_usage,
            },
        )?;
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| ProviderError::provider(format!("encoding the request: {e}")))?;
        debug!({ "model" => model, "stream" => stream }, "POST chat/completions ({} bytes)", bytes.len());
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let resp = self
            .with_auth(Request::post(self.url("chat/completions")))
            .header("accept", accept)
            .json_body(bytes)
            .send()?;
        if !resp.is_success() {
            return Err(error_of(resp));
        }
        Ok((resp, model))
    }
}

impl OpenAi {
    /// `POST /embeddings`.
    fn post_embeddings(&self, req: &EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        let model = if req.model.trim().is_empty() {
            self.default_embedding_model.clone().ok_or_else(|| {
                ProviderError::invalid_request(
                    "the request names no model and no default_embedding_model is configured",
                )
            })?
        } else {
            req.model.clone()
        };
        let bytes = serde_json::to_vec(&embeddings::body(req, &model))
            .map_err(|e| ProviderError::provider(format!("encoding the request: {e}")))?;
        debug!({ "model" => model, "inputs" => req.inputs.len() }, "POST embeddings ({} bytes)", bytes.len());
        let resp = self
            .with_auth(Request::post(self.url("embeddings")))
            .header("accept", "application/json")
            .json_body(bytes)
            .send()?;
        if !resp.is_success() {
            return Err(error_of(resp));
        }
        embeddings::parse(&resp.read_body()?, &model, req.inputs.len())
    }
}

/// The provider error for a non-2xx response (reads its body).
fn error_of(resp: Response) -> ProviderError {
    resp.into_error(wire::error_from_status)
}

impl Provider for OpenAi {
    fn initialize(config: Config) -> Result<Self, ProviderError> {
        let authorization = config.api_key_placeholder()?.map(|p| format!("Bearer {p}"));
        let base_url = config.base_url(DEFAULT_BASE_URL)?;
        let context = config.get_u32("context_window")?;
        let output = config.get_u32("max_output_tokens")?;
        let ids = config
            .get_list("models")
            .unwrap_or_else(|| DEFAULT_MODELS.iter().map(|s| s.to_string()).collect());
        let models: Vec<ModelInfo> = ids
            .iter()
            .map(|id| wire::model_info(id, context, output))
            .collect();
        let default_model = config
            .get("default_model")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .or_else(|| ids.first().cloned());
        let embedding_ids = config.get_list("embedding_models").unwrap_or_else(|| {
            embeddings::DEFAULT_MODELS
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        let default_embedding_model = config
            .get("default_embedding_model")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .or_else(|| embedding_ids.first().cloned());
        Ok(OpenAi {
            embedding_models: embedding_ids
                .iter()
                .map(|id| embeddings::model_info(id))
                .collect(),
            default_embedding_model,
            base_url,
            authorization,
            models,
            default_model,
            stream_usage: config.get_bool("stream_usage")?.unwrap_or(true),
            complete_via_stream: config.get_bool("complete_via_stream")?.unwrap_or(false),
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::from_models(self.models.clone())
            .with_features(["tool-calls", "openai-compatible"])
    }

    fn list_models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let resp = self
            .with_auth(Request::get(self.url("models")))
            .header("accept", "application/json")
            .send()?;
        if !resp.is_success() {
            return Err(error_of(resp));
        }
        wire::parse_models(&resp.read_body()?)
    }

    fn complete(
        &mut self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        if self.complete_via_stream {
            let mut stream = self.stream(request)?;
            return collect_stream(stream.as_mut());
        }
        let (resp, model) = self.post_chat(&request, false)?;
        wire::parse_completion(&resp.read_body()?, &model)
    }

    fn stream(
        &mut self,
        request: CompletionRequest,
    ) -> Result<Box<dyn ChunkStream>, ProviderError> {
        let (resp, model) = self.post_chat(&request, true)?;
        resp.into_chunk_stream(
            |body| wire::parse_completion(body, &model),
            |events| wire::ChatStream::new(events, &model),
        )
    }

    fn embedding_models(&self) -> Vec<EmbeddingModelInfo> {
        self.embedding_models.clone()
    }

    fn embed(&mut self, request: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        self.post_embeddings(&request)
    }

    /// `GET /models`: costs no tokens, and checks reachability and credentials.
    fn health_check(&self) -> Health {
        let sent = self.with_auth(Request::get(self.url("models"))).send();
        http::probe_health("GET /models", sent, |resp| error_of(resp).message)
    }
}

export_provider!(OpenAi);

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_guest_sdk::ErrorCode;

    fn init(entries: &[(&str, &str)]) -> Result<OpenAi, ProviderError> {
        OpenAi::initialize(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn refuses_keys_in_config() {
        let e = init(&[("api_key", "sk-123")]).err().unwrap();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(e.message, "api keys are given as secrets, not config");
        assert!(!e.message.contains("sk-123"));
    }

    #[test]
    fn defaults_and_placeholders() {
        let p = init(&[]).unwrap();
        assert_eq!(p.base_url, DEFAULT_BASE_URL);
        assert_eq!(
            p.authorization.as_deref(),
            Some("Bearer {{secret:api_key}}")
        );
        assert_eq!(p.default_model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(p.url("/models"), "https://api.openai.com/v1/models");
        let p = init(&[
            ("api_key_secret", "openrouter"),
            ("base_url", "http://127.0.0.1:9/v1/"),
            ("models", "a, b"),
        ])
        .unwrap();
        assert_eq!(
            p.authorization.as_deref(),
            Some("Bearer {{secret:openrouter}}")
        );
        assert_eq!(
            p.url("chat/completions"),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        assert_eq!(p.capabilities().models.len(), 2);
        assert!(init(&[("api_key_secret", "")])
            .unwrap()
            .authorization
            .is_none());
        assert!(init(&[("api_key_secret", "x}}{{secret:y")]).is_err());
        assert!(init(&[("base_url", "ftp://x")]).is_err());
        assert!(init(&[("stream_usage", "maybe")]).is_err());
    }
}
