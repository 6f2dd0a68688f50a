//! Adversarial guest `big-response`: `complete` returns `size_bytes` bytes (config, default 16 MiB) of `x`.

use adversary::sdk::{CompletionRequest, CompletionResponse, Config, ProviderError};

fn attack(
    config: &Config,
    request: CompletionRequest,
) -> Result<CompletionResponse, ProviderError> {
    let size = config.get_u64("size_bytes")?.unwrap_or(16 * 1024 * 1024) as usize;
    Ok(CompletionResponse::new(
        "big-1",
        request.model,
        "x".repeat(size),
    ))
}

adversary::adversary!(attack);
