//! `echo`: a deterministic provider without network access, used by the demo and
//! the tests. It answers with the last user message (optionally prefixed by the
//! config key `prefix`), counts whitespace-separated words as tokens, honours
//! `max_tokens` by truncating the answer, and streams the answer word by word.
//! Its embedding model `echo-embed-1` gives a deterministic toy vector per input
//! (see [`toy_embedding`]): equal texts get equal vectors, for tests and demos.

use tamma_guest_sdk::{
    debug, export_provider, last_user_message, Capabilities, ChunkStream, CompletionRequest,
    CompletionResponse, Config, EmbeddingModelInfo, EmbeddingRequest, EmbeddingResponse,
    FinishReason, Health, ModelInfo, Provider, ProviderError, StreamChunk, Usage, VecStream,
};

const MODEL: &str = "echo-1";
const EMBED_MODEL: &str = "echo-embed-1";
/// Length of the toy vectors unless the request asks for `dimensions`.
const EMBED_DIMENSIONS: u32 = 8;
/// Longest vector a request may ask for.
const MAX_EMBED_DIMENSIONS: u32 = 4096;

/// A deterministic unit vector for `text`: component `i` comes from the FNV-1a
/// hash of the text and `i`, scaled to [-1, 1], then the vector is normalised.
fn toy_embedding(text: &str, dimensions: u32) -> Vec<f32> {
    let raw: Vec<f32> = (0..dimensions)
        .map(|i| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in text.bytes().chain(i.to_le_bytes()) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return raw;
    }
    raw.into_iter().map(|x| x / norm).collect()
}

struct Echo {
    prefix: String,
    counter: u64,
}

/// The answer to one request, before it is shaped as a response or a stream.
struct Answer {
    id: String,
    model: String,
    words: Vec<String>,
    finish_reason: FinishReason,
    usage: Usage,
}

fn count_words(text: &str) -> u32 {
    text.split_whitespace().count() as u32
}

impl Echo {
    fn answer(&mut self, request: &CompletionRequest) -> Result<Answer, ProviderError> {
        let last = last_user_message(request).ok_or_else(|| {
            ProviderError::invalid_request("the conversation has no user message")
        })?;
        let text = format!("{}{}", self.prefix, last);
        let mut words: Vec<String> = text.split_whitespace().map(String::from).collect();
        let mut finish_reason = FinishReason::Stop;
        if let Some(max) = request.max_tokens {
            if words.len() > max as usize {
                words.truncate(max as usize);
                finish_reason = FinishReason::Length;
            }
        }
        let input: u32 = request
            .messages
            .iter()
            .map(|m| count_words(&m.content))
            .fold(0, u32::saturating_add);
        self.counter += 1;
        let model = if request.model.is_empty() {
            MODEL.to_string()
        } else {
            request.model.clone()
        };
        Ok(Answer {
            id: format!("echo-{}", self.counter),
            model,
            usage: Usage::from_counts(input, words.len() as u32),
            words,
            finish_reason,
        })
    }
}

impl Provider for Echo {
    fn initialize(config: Config) -> Result<Self, ProviderError> {
        Ok(Echo {
            prefix: config.get_or("prefix", "").to_string(),
            counter: 0,
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::from_models(vec![ModelInfo::new(MODEL, 8192, 4096)])
            .with_features(["deterministic"])
    }

    fn complete(
        &mut self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        let a = self.answer(&request)?;
        debug!(
            { "id" => a.id, "model" => a.model },
            "echo answered {} words (finish: {})",
            a.words.len(),
            a.finish_reason.name()
        );
        Ok(CompletionResponse::new(a.id, a.model, a.words.join(" "))
            .with_finish_reason(a.finish_reason)
            .with_usage(a.usage))
    }

    fn stream(
        &mut self,
        request: CompletionRequest,
    ) -> Result<Box<dyn ChunkStream>, ProviderError> {
        let a = self.answer(&request)?;
        let mut chunks: Vec<StreamChunk> = a
            .words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let delta = if i == 0 { w.clone() } else { format!(" {w}") };
                StreamChunk::text(&a.id, &a.model, delta)
            })
            .collect();
        match chunks.last_mut() {
            Some(last) => {
                last.finish_reason = Some(a.finish_reason);
                last.usage = Some(a.usage);
            }
            // An empty answer still ends with one (empty) chunk carrying the finish.
            None => {
                chunks.push(StreamChunk::text(&a.id, &a.model, "").finish(a.finish_reason, a.usage))
            }
        }
        Ok(VecStream::boxed(chunks))
    }

    fn embedding_models(&self) -> Vec<EmbeddingModelInfo> {
        vec![EmbeddingModelInfo::new(EMBED_MODEL, EMBED_DIMENSIONS, 8192)]
    }

    fn embed(&mut self, request: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        let dimensions = request.dimensions.unwrap_or(EMBED_DIMENSIONS);
        if dimensions == 0 || dimensions > MAX_EMBED_DIMENSIONS {
            return Err(ProviderError::invalid_request(format!(
                "dimensions must be between 1 and {MAX_EMBED_DIMENSIONS}, got {dimensions}"
            )));
        }
        let vectors = request
            .inputs
            .iter()
            .map(|text| toy_embedding(text, dimensions))
            .collect();
        let tokens = request
            .inputs
            .iter()
            .map(|t| count_words(t))
            .fold(0, u32::saturating_add);
        let model = if request.model.is_empty() {
            EMBED_MODEL.to_string()
        } else {
            request.model
        };
        Ok(EmbeddingResponse::new(model, vectors, tokens))
    }

    fn health_check(&self) -> Health {
        Health::healthy("echo is ready")
    }
}

export_provider!(Echo);
