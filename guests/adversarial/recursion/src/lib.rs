//! Adversarial guest `recursion`: `complete` recurses without bound (not a tail call).

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
        let depth = recurse(core::hint::black_box(1));
        Err(ProviderError::provider(format!(
            "unreachable: depth {depth}"
        )))
    }
}

/// Non-tail recursion whose frames cannot be optimised away.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    // Never true in practice; keeps the recursion formally conditional.
    if core::hint::black_box(n) == u64::MAX {
        return 0;
    }
    let mut frame = [0u64; 16];
    frame[(n % 16) as usize] = n;
    let below = recurse(core::hint::black_box(n + 1));
    core::hint::black_box(&frame);
    below.wrapping_add(frame[(n % 16) as usize])
}

export_provider!(Adversary);
