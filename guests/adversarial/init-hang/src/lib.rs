//! Adversarial guest `init-hang`: `initialize` never returns (sleeps an hour at a time, forever).

use tamma_guest_sdk::{
    export_provider, Capabilities, CompletionRequest, CompletionResponse, Config, ModelInfo,
    Provider, ProviderError,
};

struct Adversary;

impl Provider for Adversary {
    fn initialize(_config: Config) -> Result<Self, ProviderError> {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::from_models(vec![ModelInfo::new("adversary-1", 8192, 4096)])
    }

    fn complete(
        &mut self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        Ok(CompletionResponse::new(
            "init-hang-1",
            request.model,
            "unreachable",
        ))
    }
}

export_provider!(Adversary);
