//! Adversarial guest `log-flood`: `complete` calls the host `log` import forever with 1 KiB messages.

use tamma_guest_sdk::{
    export_provider, Capabilities, CompletionRequest, CompletionResponse, Config, LogLevel,
    ModelInfo, Provider, ProviderError,
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
        let message = "x".repeat(1024);
        let mut n: u64 = 0;
        loop {
            n = n.wrapping_add(1);
            tamma_guest_sdk::log(
                LogLevel::Info,
                &message,
                &[("n".to_string(), n.to_string())],
            );
        }
    }
}

export_provider!(Adversary);
