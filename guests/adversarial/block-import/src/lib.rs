//! Adversarial guest `block-import`: `complete` blocks inside a host import (a one-hour `wasi:clocks` poll).

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
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Err(ProviderError::provider("slept for an hour"))
    }
}

export_provider!(Adversary);
