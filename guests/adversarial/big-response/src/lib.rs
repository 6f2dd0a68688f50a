//! Adversarial guest `big-response`: `complete` returns `size_bytes` bytes (config, default 16 MiB) of `x`.

use tamma_guest_sdk::{
    export_provider, Capabilities, CompletionRequest, CompletionResponse, Config, ModelInfo,
    Provider, ProviderError,
};

struct Adversary {
    size_bytes: usize,
}

impl Provider for Adversary {
    fn initialize(config: Config) -> Result<Self, ProviderError> {
        let size_bytes = config.get_u64("size_bytes")?.unwrap_or(16 * 1024 * 1024) as usize;
        Ok(Adversary { size_bytes })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::from_models(vec![ModelInfo::new("adversary-1", 8192, 4096)])
    }

    fn complete(
        &mut self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        Ok(CompletionResponse::new(
            "big-1",
            request.model,
            "x".repeat(self.size_bytes),
        ))
    }
}

export_provider!(Adversary);
