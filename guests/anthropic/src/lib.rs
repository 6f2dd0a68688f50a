//! `anthropic`: the Anthropic Messages API (`POST {base_url}/messages`).
//!
//! Config keys (all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `base_url` | `https://api.anthropic.com/v1` | requests go to `{base_url}/messages` and `{base_url}/models` |
//! | `api_key_secret` | `api_key` | name of the host secret sent as `x-api-key: {{secret:NAME}}`; empty = no key header (a gateway that adds its own) |
//! | `anthropic_version` | `2023-06-01` | the `anthropic-version` header |
//! | `default_max_tokens` | `1024` | `max_tokens` for requests that set none (the API requires it) |
//! | `models` | `claude-sonnet-4-5,claude-opus-4-1,claude-haiku-4-5,claude-3-5-haiku-latest` | comma list advertised in `capabilities` |
//! | `default_model` | first of `models` | used when a request names no model |
//! | `context_window`, `max_output_tokens` | 200000, 8192 | limits advertised for non-Claude model ids |
//! | `complete_via_stream` | `false` | implement `complete` over the streaming API and reassemble the answer |
//!
//! The API key never enters the guest: a config holding `api_key` is refused, and
//! the header carries a `{{secret:...}}` placeholder that the host replaces when the
//! request leaves the sandbox. Timeouts are the host's (its per-call deadline).

mod wire;

use tamma_guest_sdk::http::{self, join_url, Request, Response};
use tamma_guest_sdk::{
    collect_stream, debug, export_provider, Capabilities, ChunkStream, CompletionRequest,
    CompletionResponse, Config, Health, ModelInfo, Provider, ProviderError,
};

const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";
const DEFAULT_VERSION: &str = "2023-06-01";
const DEFAULT_MAX_TOKENS: u32 = 1024;
const DEFAULT_MODELS: [&str; 4] = [
    "claude-sonnet-4-5",
    "claude-opus-4-1",
    "claude-haiku-4-5",
    "claude-3-5-haiku-latest",
];
/// `GET /models` pages followed at most (1000 models each).
const MAX_MODEL_PAGES: usize = 10;

struct Anthropic {
    base_url: String,
    /// `x-api-key` header value (the secret placeholder), if any.
    api_key_header: Option<String>,
    version: String,
    default_max_tokens: u32,
    models: Vec<ModelInfo>,
    default_model: Option<String>,
    complete_via_stream: bool,
}

impl Anthropic {
    fn url(&self, path: &str) -> String {
        join_url(&self.base_url, path)
    }

    /// A request with the headers every Anthropic call carries.
    fn request(&self, req: Request) -> Request {
        let req = req.header("anthropic-version", self.version.clone());
        match &self.api_key_header {
            Some(v) => req.header("x-api-key", v.clone()),
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

    /// `POST /messages`; a non-2xx answer is turned into its error here.
    fn post_messages(
        &self,
        req: &CompletionRequest,
        stream: bool,
    ) -> Result<(Response, String), ProviderError> {
        let model = self.model_for(req)?;
        let body = wire::messages_body(
            req,
            &wire::BodyOptions {
                model: &model,
                default_max_tokens: self.default_max_tokens,
                stream,
            },
        )?;
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| ProviderError::provider(format!("encoding the request: {e}")))?;
        debug!({ "model" => model, "stream" => stream }, "POST messages ({} bytes)", bytes.len());
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let resp = self
            .request(Request::post(self.url("messages")))
            .header("accept", accept)
            .json_body(bytes)
            .send()?;
        if !resp.is_success() {
            return Err(error_of(resp));
        }
        Ok((resp, model))
    }
}

/// The provider error for a non-2xx response (reads its body).
fn error_of(resp: Response) -> ProviderError {
    resp.into_error(wire::error_from_status)
}

impl Provider for Anthropic {
    fn initialize(config: Config) -> Result<Self, ProviderError> {
        let api_key_header = config.api_key_placeholder()?;
        let base_url = config.base_url(DEFAULT_BASE_URL)?;
        let version = config
            .get_or("anthropic_version", DEFAULT_VERSION)
            .trim()
            .to_string();
        if version.is_empty() {
            return Err(ProviderError::invalid_request(
                "anthropic_version must not be empty",
            ));
        }
        let default_max_tokens = config
            .get_u32("default_max_tokens")?
            .unwrap_or(DEFAULT_MAX_TOKENS);
        if default_max_tokens == 0 {
            return Err(ProviderError::invalid_request(
                "default_max_tokens must be at least 1",
            ));
        }
        let context = config.get_u32("context_window")?;
        let output = config.get_u32("max_output_tokens")?;
        let ids = config
            .get_list("models")
            .unwrap_or_else(|| DEFAULT_MODELS.iter().map(|s| s.to_string()).collect());
        let models = ids
            .iter()
            .map(|id| wire::model_info(id, context, output))
            .collect();
        let default_model = config
            .get("default_model")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .or_else(|| ids.first().cloned());
        Ok(Anthropic {
            base_url,
            api_key_header,
            version,
            default_max_tokens,
            models,
            default_model,
            complete_via_stream: config.get_bool("complete_via_stream")?.unwrap_or(false),
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::from_models(self.models.clone()).with_features(["tool-calls", "prompt-cache"])
    }

    /// `GET /models`, following `has_more` pages.
    fn list_models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_MODEL_PAGES {
            let path = match &after {
                Some(id) => format!("models?limit=1000&after_id={id}"),
                None => "models?limit=1000".to_string(),
            };
            let resp = self.request(Request::get(self.url(&path))).send()?;
            if !resp.is_success() {
                return Err(error_of(resp));
            }
            let (models, next) = wire::parse_models_page(&resp.read_body()?)?;
            all.extend(models);
            match next {
                // Guard against a server repeating the same page forever.
                Some(id) if after.as_deref() != Some(id.as_str()) => after = Some(id),
                _ => break,
            }
        }
        Ok(all)
    }

    fn complete(
        &mut self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        if self.complete_via_stream {
            let mut stream = self.stream(request)?;
            return collect_stream(stream.as_mut());
        }
        let (resp, model) = self.post_messages(&request, false)?;
        wire::parse_message(&resp.read_body()?, &model)
    }

    fn stream(
        &mut self,
        request: CompletionRequest,
    ) -> Result<Box<dyn ChunkStream>, ProviderError> {
        let (resp, model) = self.post_messages(&request, true)?;
        resp.into_chunk_stream(
            |body| wire::parse_message(body, &model),
            |events| wire::MessageStream::new(events, &model),
        )
    }

    /// `GET /models?limit=1`: costs no tokens, checks reachability and the key.
    fn health_check(&self) -> Health {
        let sent = self
            .request(Request::get(self.url("models?limit=1")))
            .send();
        if matches!(&sent, Ok(resp) if resp.status() == 529) {
            return Health::degraded("overloaded (HTTP 529)");
        }
        http::probe_health("GET /models", sent, |resp| error_of(resp).message)
    }
}

export_provider!(Anthropic);

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_guest_sdk::ErrorCode;

    fn init(entries: &[(&str, &str)]) -> Result<Anthropic, ProviderError> {
        Anthropic::initialize(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn refuses_keys_in_config() {
        let e = init(&[("api_key", "sk-ant-123")]).err().unwrap();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(e.message, "api keys are given as secrets, not config");
    }

    #[test]
    fn defaults_and_placeholders() {
        let p = init(&[]).unwrap();
        assert_eq!(p.url("messages"), "https://api.anthropic.com/v1/messages");
        assert_eq!(p.api_key_header.as_deref(), Some("{{secret:api_key}}"));
        assert_eq!(p.version, "2023-06-01");
        assert_eq!(p.default_max_tokens, 1024);
        assert_eq!(p.default_model.as_deref(), Some("claude-sonnet-4-5"));
        let caps = p.capabilities();
        assert_eq!(caps.max_context_tokens, 200_000);
        assert!(caps.supports_tools && caps.supports_streaming);
        let p = init(&[
            ("api_key_secret", "anthropic"),
            ("default_max_tokens", "99"),
            ("models", "claude-mock"),
        ])
        .unwrap();
        assert_eq!(p.api_key_header.as_deref(), Some("{{secret:anthropic}}"));
        assert_eq!(p.default_max_tokens, 99);
        assert_eq!(p.default_model.as_deref(), Some("claude-mock"));
        assert!(init(&[("default_max_tokens", "0")]).is_err());
        assert!(init(&[("default_max_tokens", "lots")]).is_err());
        assert!(init(&[("base_url", "api.anthropic.com")]).is_err());
        assert!(init(&[("api_key_secret", "")])
            .unwrap()
            .api_key_header
            .is_none());
    }
}
