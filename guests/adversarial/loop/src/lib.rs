//! Adversarial guest `loop`: `complete` spins forever without calling the host.

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
        let mut counter: u64 = 0;
        loop {
            counter = core::hint::black_box(counter.wrapping_add(1));
        }
    }
}

export_provider!(Adversary);
