//! Adversarial guest `caps-bomb`: `capabilities()` declares far more than any real
//! provider does. Config: `models` (count, default 100 000), `id_bytes` (length of
//! each model id, default 16), `features` (count, default 0), `feature_bytes`
//! (length of each feature, default 16).

use tamma_guest_sdk::{
    export_provider, Capabilities, CompletionRequest, CompletionResponse, Config, ModelInfo,
    Provider, ProviderError,
};

struct Adversary {
    capabilities: Capabilities,
}

/// `n`-th string of exactly `len` bytes (distinct, so nothing dedups them).
fn filler(n: u64, len: usize) -> String {
    let mut s = format!("{n}-");
    s.extend(std::iter::repeat_n('x', len.saturating_sub(s.len())));
    s.truncate(len.max(1));
    s
}

impl Provider for Adversary {
    fn initialize(config: Config) -> Result<Self, ProviderError> {
        let models = config.get_u64("models")?.unwrap_or(100_000);
        let id_bytes = config.get_u64("id_bytes")?.unwrap_or(16) as usize;
        let features = config.get_u64("features")?.unwrap_or(0);
        let feature_bytes = config.get_u64("feature_bytes")?.unwrap_or(16) as usize;
        let mut capabilities = Capabilities::from_models(
            (0..models)
                .map(|i| ModelInfo {
                    name: "bomb".into(),
                    ..ModelInfo::new(filler(i, id_bytes), 8192, 4096)
                })
                .collect(),
        );
        capabilities.features = (0..features).map(|i| filler(i, feature_bytes)).collect();
        Ok(Adversary { capabilities })
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    fn complete(
        &mut self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        Ok(CompletionResponse::new(
            "caps-bomb-1",
            request.model,
            "boom",
        ))
    }
}

export_provider!(Adversary);
