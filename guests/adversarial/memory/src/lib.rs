//! Adversarial guest `memory`: `complete` grows memory without bound (1 MiB chunks of non-zero bytes).

use tamma_guest_sdk::{
    export_provider, Capabilities, CompletionRequest, CompletionResponse, Config, ModelInfo,
    Provider, ProviderError,
};

struct Adversary;

impl Provider for Adversary {
    fn initialize(_config: Config) -> Result<Self, ProviderError> {
        Ok(Adversary)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::from_models(vec![ModelInfo::new("adversary-1", 8192, 4096)])
    }

    fn complete(
        &mut self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        let _ = request;
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let chunk = vec![0xA5u8; 1 << 20];
            hoard.push(core::hint::black_box(chunk));
            core::hint::black_box(&hoard);
        }
    }
}

export_provider!(Adversary);
